"""The errors whose message is the whole story: what went wrong, where, and the fix.

Every command (bertpipe.logs.run_cli) prints a BertpipeError as one `error: ...` line and
exits 1; any other exception is a bug and shows its traceback. The subclasses that stand for
bad values are ValueErrors too, so `except ValueError` around them keeps working.

Imports nothing, so any module can raise these (the served MLflow model included).
"""

from __future__ import annotations


class BertpipeError(Exception):
    """An error whose message says everything: printed as one line, without a traceback."""


class ParamsError(BertpipeError, ValueError):
    """A parameter in params.yaml is missing, unknown, of the wrong type or out of range."""


class DataError(BertpipeError, ValueError):
    """The pipeline's data cannot be used as it is: too few rows of a class, repeated texts,
    splits that disagree with their tokens."""


class InputError(BertpipeError, ValueError):
    """A command's input cannot be used: a file of unknown type or without the text column,
    a model that is neither a checkpoint nor an MLflow model of this project."""
