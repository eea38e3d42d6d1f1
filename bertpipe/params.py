"""Typed, frozen parameter sections read from params.yaml.

Each stage loads only its own section. params.yaml is the one source of values: the
sections' classes hold types, ranges and meaning, no defaults, so a missing key, an unknown
key, a wrong type or an out-of-range value fails at start, naming the key, the value and the fix.

YAML is read as YAML 1.2 (ruamel.yaml, DVC's own YAML library), the dialect DVC writes with
`dvc exp run -S`: `5e-05`, `1e-4` and `.5` are numbers, not strings as PyYAML's YAML 1.1 reads them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

PARAMS_FILE = "params.yaml"

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter in params.yaml is missing, unknown or out of range."""


class InvalidValue(ValueError):
    """Raised by a section's __post_init__; from_mapping adds the section and file."""

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"{key}={value!r}: {why}")
        self.key, self.value, self.why = key, value, why


def _fail(section: str, key: str, value: Any, why: str, path: str | Path) -> ParamsError:
    return ParamsError(f"{section}.{key}={value!r} in {path}: {why}")


def _check_type(section: str, key: str, value: Any, hint: Any, path: str | Path) -> Any:
    """Return value converted to the annotated type, or raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(section, key, value, inner[0], path)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise _fail(section, key, value, f"must be one of {choices}", path)
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _fail(section, key, value, "must be a list", path)
        return tuple(_check_type(section, key, v, args[0], path) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # 2e5 or 1.0e+3 written for a count
    if hint is bool and not isinstance(value, bool):
        raise _fail(section, key, value, "must be true or false", path)
    if hint in (int, float) and isinstance(value, bool):
        raise _fail(section, key, value, f"must be a number ({hint.__name__})", path)
    if hint in (int, float, str) and not isinstance(value, hint):
        raise _fail(section, key, value, f"must be of type {hint.__name__}", path)
    return value


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


def from_mapping(cls: type[T], section: str, raw: dict[str, Any], path: str | Path) -> T:
    """Build the dataclass cls from raw, checking keys and types, then its own checks."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{section} in {path}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ParamsError(
            f"{section}.{unknown[0]} in {path}: unknown key; known keys of {section} are: {known}"
        )
    values = {}
    for name in fields:
        if name in raw:
            values[name] = _check_type(section, name, raw[name], hints[name], path)
        else:
            raise ParamsError(f"{section}.{name} in {path}: missing; add `{name}: <value>` to the {section} "
                              f"section (README, Parameters, says what it means)")
    try:
        return cls(**values)
    except InvalidValue as err:  # raised by __post_init__ checks, reworded with the location
        raise _fail(section, err.key, err.value, err.why, path) from None


def load_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    data = read_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: no '{section}' section; add one (see README, Parameters)")
    return from_mapping(cls, section, data[section], path)


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise InvalidValue when value is outside [low, high] (or the open interval)."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise InvalidValue(name, value, f"must be {bounds}")
