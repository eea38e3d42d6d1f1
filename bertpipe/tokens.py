"""Tokenizing text into unpadded ids, with head, tail or head+tail truncation, and writing
them chunk by chunk.

The stage (and prediction) encode with the fast tokenizer's Rust backend, a whole chunk per
call, which spreads the chunk over all cores; truncation is applied afterwards because the
tokenizer itself can only keep the head or the tail, not both.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bertpipe.artifacts import atomic_path


@dataclass(frozen=True)
class SpecialLayout:
    """The special tokens the tokenizer puts around one sequence ([CLS] ... [SEP] for BERT)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def probe(cls, tokenizer) -> SpecialLayout:
        with_special = tokenizer("a")["input_ids"]
        content = tokenizer("a", add_special_tokens=False)["input_ids"]
        start = next(i for i in range(len(with_special)) if with_special[i : i + len(content)] == content)
        return cls(tuple(with_special[:start]), tuple(with_special[start + len(content) :]))


def truncate(ids: Sequence[int], budget: int, strategy: str, head_tokens: int) -> list[int]:
    """Keep at most budget content tokens: the first ones (head), last ones (tail) or both."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget :]
    head = min(head_tokens, budget)
    return ids[:head] + ids[len(ids) - (budget - head) :]


def _plain_backend(tokenizer) -> Tokenizer:
    """A copy of the Rust tokenizer with no truncation or padding (tokenizer.json may set both)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


@dataclass(frozen=True)
class EncodedChunk:
    ids: np.ndarray  # (total_tokens,) int32: the rows one after another, special tokens included
    lengths: np.ndarray  # (n,) int64: tokens per row as stored
    content_lengths: np.ndarray  # (n,) int64: content tokens per row before truncation

    def rows(self) -> list[np.ndarray]:
        return np.split(self.ids, np.cumsum(self.lengths)[:-1]) if len(self.lengths) else []


class Encoder:
    """Encodes batches of texts to unpadded ids of at most max_length, special tokens included."""

    def __init__(self, tokenizer, max_length: int, strategy: str, head_tokens: int):
        self.layout = SpecialLayout.probe(tokenizer)
        self.budget = max_length - len(self.layout.prefix) - len(self.layout.suffix)
        self.strategy, self.head_tokens = strategy, head_tokens
        self.backend = _plain_backend(tokenizer)

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens or truncation: one batch call, on all cores."""
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def encode(self, texts: list[str]) -> EncodedChunk:
        content = self.content_ids(texts)
        prefix, suffix = list(self.layout.prefix), list(self.layout.suffix)
        rows = [prefix + truncate(ids, self.budget, self.strategy, self.head_tokens) + suffix for ids in content]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        return EncodedChunk(ids, lengths, np.fromiter(map(len, content), dtype=np.int64, count=len(content)))


class TokenFileWriter:
    """Writes one split's ids (see artifacts.TokenizedSplit) chunk by chunk.

    Ids go to an anonymous scratch file as they come, so memory holds one chunk of ids, not the
    split; close() writes the safetensors file atomically, byte for byte what
    safetensors.numpy.save_file writes for the same arrays.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = tempfile.TemporaryFile(dir=self.path.parent)
        self.lengths: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def add(self, chunk: EncodedChunk, labels: np.ndarray) -> None:
        self.scratch.write(chunk.ids.astype("<i4").tobytes())
        self.lengths.append(chunk.lengths)
        self.labels.append(np.asarray(labels, dtype="<i8"))

    def close(self) -> None:
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype="<i8")
        np.cumsum(lengths, out=offsets[1:])
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, dtype="<i8")
        # safetensors orders tensors by dtype size, then name: labels, offsets (int64), input_ids (int32).
        parts = [("labels", "I64", labels.nbytes), ("offsets", "I64", offsets.nbytes),
                 ("input_ids", "I32", 4 * int(offsets[-1]))]
        header, start = {}, 0
        for name, dtype, size in parts:
            header[name] = {"dtype": dtype, "shape": [size // (8 if dtype == "I64" else 4)],
                            "data_offsets": [start, start + size]}
            start += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw + labels.tobytes() + offsets.tobytes())
            self.scratch.seek(0)
            while block := self.scratch.read(1 << 24):
                f.write(block)
        self.scratch.close()


def length_stats(content_lengths: np.ndarray, budget: int) -> dict[str, float]:
    if len(content_lengths) == 0:
        return {"rows": 0}
    q = np.percentile(content_lengths, [50, 90, 99])
    return {
        "rows": int(len(content_lengths)),
        "mean_tokens": round(float(content_lengths.mean()), 2),
        "p50_tokens": round(float(q[0]), 2),
        "p90_tokens": round(float(q[1]), 2),
        "p99_tokens": round(float(q[2]), 2),
        "share_truncated": round(float((content_lengths > budget).mean()), 4),
    }
