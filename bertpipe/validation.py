"""Row validation for ingested tables: nothing is silently dropped.

Every input row ends up in exactly one place: kept, quarantined (with its source row number,
location and reason), or removed as an exact duplicate of a kept row. The counts add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bertpipe.text import Normalization, normalize

REASON_UNDECODABLE = "undecodable bytes (not UTF-8)"
REASON_UNENCODABLE = "code points that cannot be written as UTF-8 (lone surrogates)"
REASON_EMPTY = "empty text"
REASON_NUL = "only NUL characters"
REASON_EMPTY_NORMALIZED = "empty after normalisation"
REASON_NO_LABEL = "missing label"
REASON_UNKNOWN_LABEL = "unknown label"
REASON_CONFLICT = "duplicate text with conflicting labels"

# Readers decode with errors="surrogateescape": each byte that is not UTF-8 becomes a lone surrogate.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# Other lone surrogates (a JSON "\ud83d" escape) are the only code points UTF-8 cannot hold.
_UNENCODABLE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


@dataclass(frozen=True)
class Validated:
    kept: pd.DataFrame  # id, text, label (index into label_names), source_split
    quarantined: pd.DataFrame  # source_row, location, source_split, text, label, reason
    label_names: tuple[str, ...]
    duplicates_removed: int

    def counts(self, rows_in: int) -> dict:
        reasons = self.quarantined["reason"].value_counts().sort_index()
        splits = self.kept["source_split"].value_counts().sort_index()
        return {
            "rows_in": rows_in,
            "kept": len(self.kept),
            "quarantined": len(self.quarantined),
            "duplicates_removed": self.duplicates_removed,
            "quarantined_by_reason": {str(k): int(v) for k, v in reasons.items()},
            "kept_by_label": {
                self.label_names[i]: int((self.kept["label"] == i).sum())
                for i in range(len(self.label_names))
            },
            "kept_by_source_split": {str(k): int(v) for k, v in splits.items()},
        }

    def unknown_labels(self, top: int = 5) -> dict[str, int]:
        """The most frequent label values that are not a class, with their row counts."""
        rows = self.quarantined[self.quarantined["reason"] == REASON_UNKNOWN_LABEL]
        counts = sorted(rows["label"].value_counts().items(), key=lambda kv: (-kv[1], str(kv[0])))
        return {str(k): int(v) for k, v in counts[:top]}


def label_text(value: Any) -> str | None:
    """A raw label as text: None when missing, integers without decimals (1, 1.0, "1" -> "1")."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if _INTEGRAL.fullmatch(text):
        return str(int(text.split(".")[0]))
    return text or None


def _is_int(label: str) -> bool:
    return label.lstrip("+-").isdigit()


def _natural_key(label: str) -> tuple:
    """Integers in numeric order first ("2" < "10"), then strings alphabetically."""
    return (0, int(label), "") if _is_int(label) else (1, 0, label)


def class_names(labels: pd.Series, explicit: tuple[str, ...] | None) -> tuple[str, ...]:
    if explicit:
        return tuple(explicit)
    return tuple(sorted(labels.dropna().unique().tolist(), key=_natural_key))


def class_ids(labels: pd.Series, names: tuple[str, ...]) -> pd.Series:
    """Class index per label (-1 = not a class). Integer labels are ids into names given as words."""
    index = {name: i for i, name in enumerate(names)}
    by_position = not any(_is_int(n) for n in names)

    def lookup(label: str | None) -> int:
        if not isinstance(label, str):
            return -1
        if label in index:
            return index[label]
        if by_position and _is_int(label) and 0 <= int(label) < len(names):
            return int(label)
        return -1

    return labels.map(lookup).astype("int64")


def _bad_code_points(value: object) -> str:
    """Why a raw text or label cannot be stored as UTF-8 ("" when it can)."""
    if not isinstance(value, str):
        return ""
    if _UNDECODABLE.search(value):
        return REASON_UNDECODABLE
    return REASON_UNENCODABLE if _UNENCODABLE.search(value) else ""


def text_reason(raw: object, normalized: str) -> str:
    """Why a text is unusable in itself ("" = usable); raw has no bad code points."""
    if not isinstance(raw, str) or not raw.strip():
        return REASON_EMPTY
    if not normalized.replace("\x00", "").strip():
        return REASON_NUL if "\x00" in normalized else REASON_EMPTY_NORMALIZED
    return ""


def readable(text: object) -> str:
    """Text that can be written to parquet: undecodable bytes and lone surrogates shown as U+FFFD."""
    if not isinstance(text, str):
        return ""
    text = _UNENCODABLE.sub("\ufffd", text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def reasons(text: pd.Series, labels: pd.Series, ids: pd.Series, text_reasons: pd.Series) -> pd.Series:
    """Why each row is set aside ("" = usable): the first reason that applies, in this order."""
    reason = text_reasons.astype(object).copy()
    reason[(reason == "") & labels.isna()] = REASON_NO_LABEL
    reason[(reason == "") & (ids < 0)] = REASON_UNKNOWN_LABEL
    ok = reason == ""
    n_labels = ids[ok].groupby(text[ok]).nunique()
    reason[ok & (text.map(n_labels) > 1)] = REASON_CONFLICT
    return reason


def keep_one_copy(text: pd.Series, source_split: pd.Series) -> tuple[pd.Index, int]:
    """Index of one row per distinct text, in source order, and how many copies were dropped.

    The copy kept is the one in the source's test split when there is one, so that split stays whole.
    """
    order = pd.DataFrame({"text": text, "not_test": source_split[text.index] != "test"})
    order = order.sort_values("not_test", kind="stable")
    first = ~order.duplicated("text", keep="first")
    return order.index[first.to_numpy()].sort_values(), int((~first).sum())


def validate(raw: pd.DataFrame, norm: Normalization,
             label_names: tuple[str, ...] | None = None,
             label_map: dict[str, str] | None = None) -> Validated:
    """raw has columns source_row, text, label (any dtype) and optionally location, source_split.

    label_map renames raw label values (as text) to class names, e.g. {"0": "negative"}.
    """
    df = raw.reset_index(drop=True)
    location = df["location"] if "location" in df else "row " + (df["source_row"] + 1).astype(str)
    source_split = df["source_split"] if "source_split" in df else pd.Series("train", index=df.index)
    # Lists, not Series.map: pandas would infer its str dtype and turn None into NaN.
    labels = pd.Series([label_text(v) for v in df["label"]], index=df.index, dtype=object)
    bad_code = pd.Series([_bad_code_points(t) or _bad_code_points(v)
                          for t, v in zip(df["text"], labels, strict=True)],
                         index=df.index, dtype=object)
    undecodable = bad_code != ""
    text = pd.Series([normalize(t, norm) if isinstance(t, str) and not bad else ""
                      for t, bad in zip(df["text"], undecodable, strict=True)], index=df.index, dtype=object)
    text_reasons = pd.Series([bad or text_reason(raw, t)
                              for raw, t, bad in zip(df["text"], text, bad_code, strict=True)],
                             index=df.index, dtype=object)
    if label_map:
        labels = pd.Series([label_map.get(v, v) if v is not None else None for v in labels], index=df.index,
                           dtype=object)
    names = class_names(labels, label_names)
    ids = class_ids(labels, names)

    reason = reasons(text, labels, ids, text_reasons)
    keep, removed = keep_one_copy(text[reason == ""], source_split)
    kept = pd.DataFrame({
        "id": df.loc[keep, "source_row"].astype("int64").to_numpy(),
        "text": text[keep].astype(str).to_numpy(),
        "label": ids[keep].to_numpy(),
        "source_split": source_split[keep].astype(str).to_numpy(),
    })
    bad = reason != ""
    quarantined = pd.DataFrame({
        "source_row": df.loc[bad, "source_row"].astype("int64").to_numpy(),
        "location": location[bad].astype(str).to_numpy(),
        "source_split": source_split[bad].astype(str).to_numpy(),
        "text": [readable(r) if u else t for r, t, u in zip(df["text"][bad], text[bad], undecodable[bad], strict=True)],
        "label": pd.array([readable(v) if v is not None else None for v in labels[bad]], dtype=object),
        "reason": reason[bad].astype(str).to_numpy(),
    })
    return Validated(kept, quarantined, names, removed)
