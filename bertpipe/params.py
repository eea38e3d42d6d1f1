"""Typed, frozen parameter sections read from params.yaml.

Each stage loads only its own section. params.yaml is the one source of values: the
sections' pydantic models (bertpipe.config) hold types, ranges and meaning, no defaults, so a
missing key, an unknown key, a wrong type or an out-of-range value fails at start with one line
naming the file, the key, the value and the fix (ParamsError).

YAML is read as YAML 1.2 (ruamel.yaml, DVC's own YAML library), the dialect DVC writes with
`dvc exp run -S`: `5e-05`, `1e-4` and `.5` are numbers, not strings as PyYAML's YAML 1.1 reads them.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bertpipe.errors import ParamsError

PARAMS_FILE = "params.yaml"
# Bounds of a Field (ge=, gt=, ...) as they read in a message.
BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
          (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="))

M = TypeVar("M", bound=BaseModel)

__all__ = ["PARAMS_FILE", "InvalidValue", "ParamsError", "from_mapping", "load_section", "load_yaml", "read_yaml"]


class InvalidValue(ValueError):
    """Raised by a section's model validator (a rule across keys); from_mapping adds the section and file."""

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"{key}={value!r}: {why}")
        self.key, self.value, self.why = key, value, why


def load_yaml(text: str) -> Any:
    """YAML 1.2 with safe types only (no Python objects), as DVC writes it."""
    return YAML(typ="safe", pure=True).load(text)


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8")) or {}
    except YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err}); fix the syntax at the line it names") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def from_mapping(cls: type[M], section: str, raw: dict[str, Any], path: str | Path) -> M:
    """The section model cls built from raw, or a ParamsError naming the file, key, value and fix."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{section} in {path}: expected a mapping of keys, got {raw!r}")
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(describe(cls, section, raw, err, path)) from None


def load_section(cls: type[M], section: str, path: str | Path = PARAMS_FILE) -> M:
    data = read_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: no '{section}' section; add one (see docs/reference.md, Parameters)")
    return from_mapping(cls, section, data[section], path)


def describe(cls: type[BaseModel], section: str, raw: dict[str, Any], err: ValidationError,
             path: str | Path) -> str:
    """One line for a failed validation: the first problem in full, the keys of any others after it.

    Unknown keys come first: a misspelt key is also reported missing under its right name."""
    errors = err.errors()
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return unknown_key(cls, section, unknown, path)
    problems: dict[str, str] = {}  # key -> message; one per key (a list reports each bad item)
    for error in errors:
        key, message = explain(cls, section, raw, error, path)
        problems.setdefault(key, message)
    first, *others = problems
    also = f" (also wrong: {', '.join(f'{section}.{k}' for k in others)})" if others else ""
    return problems[first] + also


def unknown_key(cls: type[BaseModel], section: str, unknown: list[str], path: str | Path) -> str:
    known = sorted(cls.model_fields)
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"did you mean '{close[0]}'? Known" if close else "known"
    also = f" (also unknown: {', '.join(unknown[1:])})" if unknown[1:] else ""
    return f"{section}.{unknown[0]} in {path}: unknown key; {hint} keys of {section} are: {', '.join(known)}{also}"


def explain(cls: type[BaseModel], section: str, raw: dict[str, Any], error: ErrorDetails,
            path: str | Path) -> tuple[str, str]:
    """(key, `section.key=value in path: why`) for one pydantic error."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidValue):  # a rule across keys, from a model validator
        return cause.key, f"{section}.{cause.key}={cause.value!r} in {path}: {cause.why}"
    key = str(error["loc"][0])
    if error["type"] == "missing":
        return key, (f"{section}.{key} in {path}: missing; add `{key}: <value>` to the {section} section "
                     f"(docs/reference.md, Parameters, says what it means)")
    why = str(cause) if isinstance(cause, ValueError) else reason(cls, key, error)
    return key, f"{section}.{key}={raw.get(key)!r} in {path}: {why}"


def reason(cls: type[BaseModel], key: str, error: ErrorDetails) -> str:
    """What the value must be, in params.yaml's terms (YAML values, not Python types)."""
    kind, value = error["type"], error["input"]
    field = cls.model_fields[key]
    if kind in ("int_type", "float_type"):
        want = ("int" if kind == "int_type" else "float") + (" or null" if is_optional(field.annotation) else "")
        if isinstance(value, bool):
            return f"must be a number ({want}), not true or false"
        if isinstance(value, str):
            return f"must be of type {want}, not text: write the number without quotes"
        if isinstance(value, float) and value.is_integer():
            return f"must be of type int: a whole number such as {int(value)}, without a decimal point or exponent"
        return f"must be of type {want}"
    if kind == "finite_number":
        return "must be a finite number, not .nan or .inf"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "string_type":
        if len(error["loc"]) == 1:
            return "must be of type str (text)"
        return f"must be a list of text values; item {int(error['loc'][1]) + 1} ({value!r}) is not: quote it"
    if kind in ("tuple_type", "list_type"):
        return "must be a list, such as [a, b] ([] for none)"
    if kind == "literal_error":
        choices = [str(c) for c in typing.get_args(field.annotation)]
        close = difflib.get_close_matches(str(value), choices, n=1)
        return f"must be one of {', '.join(map(repr, choices))}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"must be {bounds(field.metadata)}"
    return error["msg"][0].lower() + error["msg"][1:]


def is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def bounds(metadata: list[Any]) -> str:
    """`> 0 and < 1` from a Field's constraints."""
    found = [f"{sign} {getattr(m, attr)}" for kind, attr, sign in BOUNDS for m in metadata if isinstance(m, kind)]
    return " and ".join(found)
