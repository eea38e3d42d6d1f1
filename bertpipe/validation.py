"""Row validation for ingested tables: nothing is silently dropped.

Every input row ends up in exactly one place: kept, quarantined (with its source row number,
location and reason), or removed as a duplicate of a kept row (the same match key,
bertpipe.text.match_key). The counts add up.

Rows are checked a chunk at a time (prepare: normalise, and the reasons a row has by itself).
What depends on the whole source (class names taken from the data, repeated texts, texts with
conflicting labels) is decided from a Ledger of compact facts per row, a 16-byte digest of the
normalised text's match key (bertpipe.text.match_key) and a label code, so a million texts need
not be in memory together; the Decisions then sort each chunk into kept and quarantined rows.
validate() runs the same steps on a frame held whole.

unusable_reason is that check of a text by itself for every other entry point (prediction, the
served model), so that a text ingest would quarantine is refused there too, for the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bertpipe.text import Normalization, key_digests, normalize

REASON_UNDECODABLE = "undecodable bytes (not UTF-8)"
REASON_UNENCODABLE = "code points that cannot be written as UTF-8 (lone surrogates)"
REASON_EMPTY = "empty text"
REASON_NUL = "only NUL characters"
REASON_EMPTY_NORMALIZED = "empty after normalisation"
REASON_NO_LABEL = "missing label"
REASON_UNKNOWN_LABEL = "unknown label"
REASON_CONFLICT = "duplicate text with conflicting labels"
# Codes of the reasons in the per-row arrays; 0 = usable.
REASONS = ("", REASON_UNDECODABLE, REASON_UNENCODABLE, REASON_EMPTY, REASON_NUL, REASON_EMPTY_NORMALIZED,
           REASON_NO_LABEL, REASON_UNKNOWN_LABEL, REASON_CONFLICT)
_CODE = {reason: code for code, reason in enumerate(REASONS)}

# Readers decode with errors="surrogateescape": each byte that is not UTF-8 becomes a lone surrogate.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# Other lone surrogates (a JSON "\ud83d" escape) are the only code points UTF-8 cannot hold.
_UNENCODABLE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")
# A text is checked a slice of this many characters at a time for code points UTF-8 cannot hold
# (encoding is a fast loop in C; the regexes above take ~85 ms on 10 MB).
_ENCODE_SLICE = 1 << 20
# A longer text is usable when its first PROBE_CHARS characters, normalised, hold a character
# that is not whitespace or NUL before their last PROBE_MARGIN_CHARS: a break tag or entity cut
# at the probe's end leaves at most 34 characters there ("&" and a 32-character name, or "<br /")
# that the whole text may not have. Before them the probe normalises as the whole text does.
PROBE_CHARS = 4096
PROBE_MARGIN_CHARS = 40


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


def class_names(labels: list[str], explicit: tuple[str, ...] | None) -> tuple[str, ...]:
    """explicit when given, else the distinct labels in natural order."""
    if explicit:
        return tuple(explicit)
    return tuple(sorted(set(labels), key=_natural_key))


def class_ids(labels: list[str], names: tuple[str, ...]) -> np.ndarray:
    """Class index per label (-1 = not a class). Integer labels are ids into names given as words."""
    index = {name: i for i, name in enumerate(names)}
    by_position = not any(_is_int(n) for n in names)

    def lookup(label: str) -> int:
        if label in index:
            return index[label]
        if by_position and _is_int(label) and 0 <= int(label) < len(names):
            return int(label)
        return -1

    return np.array([lookup(label) for label in labels], dtype=np.int64)


def encodable(text: str) -> bool:
    """Whether text can be written as UTF-8: it holds no lone surrogate."""
    if text.isascii():  # O(1): CPython knows
        return True
    try:
        for start in range(0, len(text), _ENCODE_SLICE):
            text[start:start + _ENCODE_SLICE].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_code_points(value: object) -> str:
    """Why a raw text or label cannot be stored as UTF-8 ("" when it can)."""
    if not isinstance(value, str) or encodable(value):
        return ""
    if _UNDECODABLE.search(value):
        return REASON_UNDECODABLE
    return REASON_UNENCODABLE if _UNENCODABLE.search(value) else ""


def text_reason(raw: object, normalized: str) -> str:
    """Why a text is unusable in itself ("" = usable); raw has no bad code points."""
    if not isinstance(raw, str) or not raw.strip():
        return REASON_EMPTY
    if not _has_text(normalized):
        return REASON_NUL if "\x00" in normalized else REASON_EMPTY_NORMALIZED
    return ""


def _has_text(normalized: str) -> bool:
    return bool(normalized.replace("\x00", "").strip())


def unusable_reason(raw: object, norm: Normalization, normalized: str | None = None) -> str:
    """Why a text is unusable by itself ("" = usable): code points UTF-8 cannot hold, then
    text_reason on the text normalised by norm (normalized: that text, where the caller has it).
    The one check of ingest (prepare), prediction and the served model.

    Without normalized, a text of megabytes costs what its first PROBE_CHARS characters cost
    whenever they hold a word (see PROBE_CHARS); only a text that starts with that many
    characters of whitespace, NUL, zero-width characters or break tags is normalised whole."""
    if not isinstance(raw, str):
        return REASON_EMPTY
    if why := _bad_code_points(raw):
        return why
    if normalized is None:
        if len(raw) > PROBE_CHARS and _has_text(normalize(raw[:PROBE_CHARS], norm)[:-PROBE_MARGIN_CHARS]):
            return ""
        normalized = normalize(raw, norm)
    return text_reason(raw, normalized)


def readable(text: object) -> str:
    """Text that can be written to parquet: undecodable bytes and lone surrogates shown as U+FFFD."""
    if not isinstance(text, str):
        return ""
    text = _UNENCODABLE.sub("\ufffd", text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

def prepare(raw: pd.DataFrame, norm: Normalization, label_map: dict[str, str] | None = None) -> pd.DataFrame:
    """One chunk of raw rows checked row by row. raw has source_row, text, label (any dtype) and
    optionally location, source_split; the result has source_row, location, source_split, text
    (normalised; for rows with bad code points the raw text made readable, as the quarantine shows
    it), label (as text, renamed by label_map; None when missing) and reason (why the row is unusable
    in itself, "" when it is usable so far)."""
    source_row = raw["source_row"].to_numpy().astype("int64")
    raw_texts = raw["text"].tolist()
    labels = [label_text(v) for v in raw["label"]]
    bad = [_bad_code_points(t) or _bad_code_points(v) for t, v in zip(raw_texts, labels, strict=True)]
    texts = [normalize(t, norm) if isinstance(t, str) and not why else ""
             for t, why in zip(raw_texts, bad, strict=True)]
    if label_map:
        labels = [label_map.get(v, v) if v is not None else None for v in labels]
    location = raw["location"].tolist() if "location" in raw else [f"row {r + 1}" for r in source_row]
    source_split = raw["source_split"].tolist() if "source_split" in raw else ["train"] * len(raw)
    return pd.DataFrame({
        "source_row": source_row,
        "location": pd.Series(location, dtype=object),
        "source_split": pd.Series(source_split, dtype=object),
        "text": pd.Series([readable(r) if why else t for r, t, why in zip(raw_texts, texts, bad, strict=True)],
                          dtype=object),
        "label": pd.Series(labels, dtype=object),
        "reason": pd.Series([why or unusable_reason(r, norm, t)
                             for r, t, why in zip(raw_texts, texts, bad, strict=True)], dtype=object),
    })


def _codes(values, table: dict[str, int]) -> np.ndarray:
    """A code per value (its position in table, which grows as new values come); -1 for None."""
    return np.array([-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int32)


class Ledger:
    """What the decisions that span the whole source need of each row, in source order, in about
    25 bytes a row: a digest of the normalised text's match key (bertpipe.text.key_digests: texts
that differ only by case, compatibility forms or whitespace are one text), a label code, a source split code and
    the reason the row is unusable in itself."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []  # S16 per chunk
        self.labels: list[np.ndarray] = []  # codes into label_values, -1 = missing
        self.splits: list[np.ndarray] = []  # codes into split_values
        self.reasons: list[np.ndarray] = []  # codes into REASONS
        self.label_values: dict[str, int] = {}
        self.split_values: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(map(len, self.reasons))

    def add(self, rows: pd.DataFrame) -> None:
        """Note a prepared chunk (see prepare), the one after those noted before."""
        reason = np.array([_CODE[r] for r in rows["reason"]], dtype=np.int8)
        keys = np.zeros(len(rows), dtype="S16")  # unusable rows take part in no comparison
        usable = reason == 0
        keys[usable] = key_digests(rows["text"].to_numpy()[usable])
        self.keys.append(keys)
        self.labels.append(_codes(rows["label"], self.label_values))
        self.splits.append(_codes(rows["source_split"], self.split_values))
        self.reasons.append(reason)

    def decide(self, label_names: tuple[str, ...] | None = None) -> Decisions:
        """Class ids, reasons and the copy kept of each text, for every row noted."""
        join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # noqa: E731
        keys, labels, splits = join(self.keys, "S16"), join(self.labels, np.int32), join(self.splits, np.int32)
        reason = join(self.reasons, np.int8).copy()
        values = list(self.label_values)  # in code order
        names = class_names(values, label_names)
        ids = np.append(class_ids(values, names), -1)[labels]  # code -1 (missing) picks the appended -1
        reason[(reason == 0) & (labels < 0)] = _CODE[REASON_NO_LABEL]
        reason[(reason == 0) & (ids < 0)] = _CODE[REASON_UNKNOWN_LABEL]

        ok = np.flatnonzero(reason == 0)
        _, group = np.unique(keys[ok], return_inverse=True)  # rows with the same text, same group
        pairs = np.unique(group * (len(names) + 1) + ids[ok])  # distinct (group, class id)
        classes = np.bincount(pairs // (len(names) + 1), minlength=group.max(initial=-1) + 1)
        reason[ok[classes[group] > 1]] = _CODE[REASON_CONFLICT]

        # One copy of each text: the one in the source's test split, so that split stays whole; else the first.
        single = classes[group] == 1
        rows, group = ok[single], group[single]
        not_test = splits[rows] != self.split_values.get("test", -1)
        order = np.lexsort((rows, not_test, group))
        first = np.ones(len(order), dtype=bool)
        first[1:] = group[order][1:] != group[order][:-1]
        keep = np.zeros(len(reason), dtype=bool)
        keep[rows[order[first]]] = True
        return Decisions(names, ids, reason, keep, int((~first).sum()), values, labels, list(self.split_values), splits)


@dataclass(frozen=True)
class Decisions:
    """Where each row goes, by its position in source order (the arrays have one entry a row)."""

    label_names: tuple[str, ...]
    ids: np.ndarray  # class id, -1 = none
    reason: np.ndarray  # code into REASONS, 0 = not quarantined
    keep: np.ndarray  # bool: the copy of its text that is kept (not quarantined, not a duplicate)
    duplicates_removed: int
    label_values: list[str]  # label (as text, renamed) by label code
    label_codes: np.ndarray  # -1 = missing
    split_values: list[str]  # source split by split code
    split_codes: np.ndarray

    def counts(self, rows_in: int) -> dict:
        reasons = np.bincount(self.reason, minlength=len(REASONS))
        splits = np.bincount(self.split_codes[self.keep], minlength=len(self.split_values))
        labels = np.bincount(self.ids[self.keep], minlength=len(self.label_names))
        return {
            "rows_in": rows_in,
            "kept": int(self.keep.sum()),
            "quarantined": int((self.reason != 0).sum()),
            "duplicates_removed": self.duplicates_removed,
            "quarantined_by_reason": {REASONS[c]: int(reasons[c]) for c in
                                      sorted(np.flatnonzero(reasons[1:]) + 1, key=REASONS.__getitem__)},
            "kept_by_label": {name: int(labels[i]) for i, name in enumerate(self.label_names)},
            "kept_by_source_split": {self.split_values[c]: int(splits[c]) for c in
                                     sorted(np.flatnonzero(splits), key=self.split_values.__getitem__)},
        }

    def unknown_labels(self, top: int = 5) -> dict[str, int]:
        """The most frequent label values that are not a class, with their row counts."""
        codes = self.label_codes[self.reason == _CODE[REASON_UNKNOWN_LABEL]]
        found = np.bincount(codes, minlength=len(self.label_values))
        counts = sorted(((self.label_values[c], int(found[c])) for c in np.flatnonzero(found)),
                        key=lambda kv: (-kv[1], kv[0]))
        return dict(counts[:top])

    def kept(self, rows: pd.DataFrame, start: int) -> pd.DataFrame:
        """The kept rows of a prepared chunk (see prepare) at positions start...: id, text, label (class
        id), source_split."""
        at = slice(start, start + len(rows))
        keep = self.keep[at]
        return pd.DataFrame({
            "id": rows["source_row"].to_numpy()[keep].astype("int64"),
            "text": pd.array(rows["text"].to_numpy()[keep], dtype=str),
            "label": self.ids[at][keep],
            "source_split": pd.array(rows["source_split"].to_numpy()[keep], dtype=str),
        })

    def quarantined(self, rows: pd.DataFrame, start: int) -> pd.DataFrame:
        """The quarantined rows of a prepared chunk at positions start...: source_row, location,
        source_split, text, label (as read, or None), reason."""
        at = slice(start, start + len(rows))
        bad = self.reason[at] != 0
        return pd.DataFrame({
            "source_row": rows["source_row"].to_numpy()[bad].astype("int64"),
            "location": pd.array(rows["location"].to_numpy()[bad], dtype=str),
            "source_split": pd.array(rows["source_split"].to_numpy()[bad], dtype=str),
            "text": pd.array(rows["text"].to_numpy()[bad], dtype=str),
            "label": pd.array([readable(v) if isinstance(v, str) else None for v in rows["label"].to_numpy()[bad]],
                              dtype=str),  # missing: NaN, null in parquet
            "reason": pd.array([REASONS[c] for c in self.reason[at][bad]], dtype=str),
        })


@dataclass(frozen=True)
class Validated:
    kept: pd.DataFrame  # id, text, label (index into label_names), source_split
    quarantined: pd.DataFrame  # source_row, location, source_split, text, label, reason
    decisions: Decisions

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.decisions.label_names

    @property
    def duplicates_removed(self) -> int:
        return self.decisions.duplicates_removed

    def counts(self, rows_in: int) -> dict:
        return self.decisions.counts(rows_in)

    def unknown_labels(self, top: int = 5) -> dict[str, int]:
        return self.decisions.unknown_labels(top)


def validate(raw: pd.DataFrame, norm: Normalization,
             label_names: tuple[str, ...] | None = None,
             label_map: dict[str, str] | None = None, chunk_rows: int | None = None) -> Validated:
    """A frame held whole, checked chunk_rows rows at a time (all at once by default) by the steps
    ingest takes on a source read in chunks. raw has columns source_row, text, label (any dtype)
    and optionally location, source_split.

    label_map renames raw label values (as text) to class names, e.g. {"0": "negative"}.
    """
    size = chunk_rows or max(len(raw), 1)
    chunks = [prepare(raw.iloc[i:i + size], norm, label_map) for i in range(0, len(raw), size)]
    chunks = chunks or [prepare(raw, norm, label_map)]
    ledger = Ledger()
    for chunk in chunks:
        ledger.add(chunk)
    decisions = ledger.decide(label_names)
    starts = np.cumsum([0] + [len(c) for c in chunks])
    kept = pd.concat([decisions.kept(c, s) for c, s in zip(chunks, starts, strict=False)], ignore_index=True)
    quarantined = pd.concat([decisions.quarantined(c, s) for c, s in zip(chunks, starts, strict=False)],
                            ignore_index=True)
    return Validated(kept, quarantined, decisions)
