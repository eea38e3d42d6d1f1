"""The MLflow pyfunc model, logged as code (MLflow "models from code"), so loading it
unpickles nothing: a DataFrame with a `text` column in; label and class probabilities out.

A request is checked before any text is scored: more than MAX_ROWS_PER_REQUEST rows, a
missing `text` column, or a text that is null, not a string, or that ingest would quarantine
(bertpipe.validation.unusable_reason on the text normalised as the model was trained: empty,
only NUL characters, empty after normalisation such as "&nbsp;" or "<br />", lone surrogates) is
refused with HTTP 400 (INVALID_PARAMETER_VALUE) naming the row and the reason. Long texts are
cut to what the model reads (see bertpipe.tokens), so a 10 MB text costs what a long review
costs, with or without whitespace.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bertpipe.text import Normalization
from bertpipe.validation import unusable_reason

# Rows one request may hold: bounds a request's memory and time (split bigger batches, or use
# `python -m bertpipe.predict --input FILE`, which has no limit).
MAX_ROWS_PER_REQUEST = 1000
# Set by `mlflow models serve` in the process it serves from, and nowhere else
# (mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH).
_SCORING_SERVER_ENV = "__pyfunc_model_path__"


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def checked_texts(model_input, norm: Normalization) -> list[str]:
    """The request's texts, or an MlflowException (HTTP 400) that names the first bad row and why.
    norm: the model's normalisation, so a text is judged as ingest judged its training rows."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise _refuse(f"the request has no 'text' column (columns: {', '.join(map(str, model_input.columns))}); "
                          'send {"dataframe_records": [{"text": "..."}]}')
        texts = model_input["text"].tolist()
    else:
        texts = list(model_input)
    if len(texts) > MAX_ROWS_PER_REQUEST:
        raise _refuse(f"the request has {len(texts)} rows, more than the {MAX_ROWS_PER_REQUEST} one request may "
                      "hold; split it into smaller requests")
    for row, text in enumerate(texts, start=1):
        if text is None or (isinstance(text, float) and pd.isna(text)):
            raise _refuse(f"row {row}: text is null; every row needs a non-empty string")
        if not isinstance(text, str):
            raise _refuse(f"row {row}: text is a {type(text).__name__} ({text!r:.40}), not a string")
        if why := unusable_reason(text, norm):
            raise _refuse(f"row {row}: the text is unusable ({why}), as ingest would quarantine it; "
                          "every row needs a text with something to read")
    return texts


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from bertpipe.inference import Classifier

        if os.environ.get(_SCORING_SERVER_ENV):
            # The server reads a request into pandas strings, arrow-backed by default, which cannot
            # hold a lone surrogate (a JSON "\ud83d"): the request would fail there, a 400 that names
            # no row. Python-backed strings hold it, so checked_texts names the row. Set once, in the
            # server's own process only: a process that loads the model itself keeps its options.
            pd.set_option("mode.string_storage", "python")
        self.classifier = Classifier.load(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.classifier.predict_frame(checked_texts(model_input, self.classifier.meta.norm()))


mlflow.models.set_model(TextClassifierModel())
