"""Row validation for ingested tables: nothing is silently dropped.

Every input row ends up in exactly one place: kept, quarantined (with its source row number
and reason), or removed as an exact duplicate of a kept row. The counts add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bertpipe.text import Normalization, normalize

REASON_EMPTY = "empty text"
REASON_NO_LABEL = "missing label"
REASON_UNKNOWN_LABEL = "unknown label"
REASON_CONFLICT = "duplicate text with conflicting labels"


@dataclass(frozen=True)
class Validated:
    kept: pd.DataFrame  # id, text, label (int index into label_names)
    quarantined: pd.DataFrame  # source_row, text, label, reason
    label_names: tuple[str, ...]
    duplicates_removed: int

    def counts(self, rows_in: int) -> dict:
        reasons = self.quarantined["reason"].value_counts().sort_index()
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
        }


def _natural_key(label: str) -> tuple:
    """Integers in numeric order first ("2" < "10"), then strings alphabetically."""
    try:
        return (0, int(label), "")
    except ValueError:
        return (1, 0, label)


def _label_names(labels: pd.Series, explicit: tuple[str, ...] | None) -> tuple[str, ...]:
    if explicit:
        return tuple(explicit)
    return tuple(sorted(labels.dropna().unique().tolist(), key=_natural_key))


def validate(raw: pd.DataFrame, norm: Normalization,
             label_names: tuple[str, ...] | None = None,
             label_map: dict[str, str] | None = None) -> Validated:
    """raw has columns source_row, text, label (any dtype). Returns the split of its rows.

    label_map renames raw label values (as strings) to names, e.g. {"0": "negative"}.
    """
    df = raw.copy()
    df["text"] = df["text"].map(lambda t: normalize(t, norm) if isinstance(t, str) else "")
    missing = df["label"].isna()
    df["label"] = df["label"].map(lambda v: None if pd.isna(v) else str(v).strip())
    if label_map:
        df["label"] = df["label"].map(lambda v: label_map.get(v, v) if v is not None else None)
    names = _label_names(df["label"], label_names)
    index = {name: i for i, name in enumerate(names)}

    reason = pd.Series("", index=df.index, dtype=object)
    reason[df["text"] == ""] = REASON_EMPTY
    reason[(reason == "") & missing] = REASON_NO_LABEL
    reason[(reason == "") & ~df["label"].isin(list(index))] = REASON_UNKNOWN_LABEL

    ok = df[reason == ""]
    n_labels = ok.groupby("text")["label"].nunique()
    conflicted = ok["text"].map(n_labels) > 1
    reason[conflicted[conflicted].index] = REASON_CONFLICT

    good = df[reason == ""]
    first = ~good.duplicated("text", keep="first")
    kept = good[first]
    kept = pd.DataFrame({
        "id": kept["source_row"].astype("int64").to_numpy(),
        "text": kept["text"].to_numpy(),
        "label": kept["label"].map(index).astype("int64").to_numpy(),
    })
    bad = df[reason != ""]
    quarantined = pd.DataFrame({
        "source_row": bad["source_row"].astype("int64").to_numpy(),
        "text": bad["text"].to_numpy(),
        "label": bad["label"].astype(object).to_numpy(),
        "reason": reason[reason != ""].to_numpy(),
    })
    return Validated(kept, quarantined, names, int((~first).sum()))
