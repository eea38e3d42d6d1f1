"""Tokenizing text into unpadded ids, with head, tail or head+tail truncation, and writing
them chunk by chunk.

The stage (and prediction) encode with the fast tokenizer's Rust backend, a whole chunk per
call, which spreads the chunk over all cores (for BERT tokenizers, plain ASCII text takes a
shortcut to the same ids: see AsciiPath); truncation is applied afterwards because the
tokenizer itself can only keep the head or the tail, not both.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bertpipe.artifacts import atomic_path

# ASCII control characters that BertNormalizer deletes (tab, newline, carriage return it keeps as spaces).
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# BertPreTokenizer on ASCII: runs of letters and digits are words; every other printable
# character is punctuation to BERT and a word of its own; whitespace separates.
_WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
MAX_CACHED_WORDS = 500_000


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


class AsciiPath:
    """A faster route to the same ids for plain ASCII text, when the tokenizer is BERT's.

    BERT's tokenizer normalises (lowercase; accents, Chinese characters and control characters
    need Unicode work), splits words at whitespace and punctuation, and cuts each word into
    WordPiece tokens on its own. For ASCII text without control characters that is str.lower
    and a regex split, and a word's ids never change, so each distinct word is encoded once, by
    the tokenizer's own batch encoding, and looked up after that. Texts holding an added
    token's text ("[CLS]") take the full path. tests/test_tokens.py checks the ids are identical.
    """

    def __init__(self, backend: Tokenizer, config: dict):
        self.backend = backend
        self.lowercase = bool(config["normalizer"]["lowercase"])
        added = [t["content"] for t in config.get("added_tokens", [])]
        self.guarded = sorted({t.lower() for t in added} | set(added))
        self.cache: dict[str, list[int]] = {}

    @classmethod
    def for_backend(cls, backend: Tokenizer) -> AsciiPath | None:
        config = json.loads(backend.to_str())
        norm, pre = config.get("normalizer") or {}, config.get("pre_tokenizer") or {}
        if (norm.get("type") == "BertNormalizer" and norm.get("clean_text") and
                pre.get("type") == "BertPreTokenizer" and config["model"]["type"] == "WordPiece"):
            return cls(backend, config)
        return None

    def words(self, text: str) -> list[str] | None:
        """The words the tokenizer would cut text into, or None when text must take the full path."""
        if not text.isascii() or _ASCII_CONTROL.search(text):
            return None
        text = text.lower() if self.lowercase else text
        if any(t in text for t in self.guarded):
            return None
        return _WORD.findall(text)

    def content_ids(self, texts_words: list[list[str]]) -> list[list[int]]:
        cache = self.cache  # a local reference: another thread may start a new cache meanwhile
        new = set(chain.from_iterable(texts_words)).difference(cache)
        if len(cache) + len(new) > MAX_CACHED_WORDS:  # bound memory on huge vocabularies
            cache = self.cache = {}
            new = set(chain.from_iterable(texts_words))
        new = sorted(new)
        for word, enc in zip(new, self.backend.encode_batch_fast(new, add_special_tokens=False)):
            cache[word] = enc.ids
        get = cache.__getitem__
        return [list(chain.from_iterable(map(get, words))) for words in texts_words]


@dataclass(frozen=True)
class EncodedChunk:
    ids: np.ndarray  # (total_tokens,) int32: the rows one after another, special tokens included
    lengths: np.ndarray  # (n,) int64: tokens per row as stored
    content_lengths: np.ndarray  # (n,) int64: content tokens per row before truncation

    def rows(self) -> list[np.ndarray]:
        return np.split(self.ids, np.cumsum(self.lengths)[:-1]) if len(self.lengths) else []


class Encoder:
    """Encodes batches of texts to unpadded ids of at most max_length, special tokens included."""

    def __init__(self, tokenizer, max_length: int, strategy: str, head_tokens: int, fast_ascii: bool = True):
        self.layout = SpecialLayout.probe(tokenizer)
        self.budget = max_length - len(self.layout.prefix) - len(self.layout.suffix)
        self.strategy, self.head_tokens = strategy, head_tokens
        self.backend = _plain_backend(tokenizer)
        self.ascii = AsciiPath.for_backend(self.backend) if fast_ascii else None

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens or truncation."""
        if self.ascii is None:
            return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        words = [self.ascii.words(t) for t in texts]
        out: list[list[int]] = [[] for _ in texts]
        simple = [i for i, w in enumerate(words) if w is not None]
        for i, ids in zip(simple, self.ascii.content_ids([words[i] for i in simple])):
            out[i] = ids
        rest = [i for i, w in enumerate(words) if w is None]
        for i, enc in zip(rest, self.backend.encode_batch_fast([texts[i] for i in rest], add_special_tokens=False)):
            out[i] = enc.ids
        return out

    def encode(self, texts: list[str]) -> EncodedChunk:
        content = self.content_ids(texts)
        prefix, suffix = list(self.layout.prefix), list(self.layout.suffix)
        rows = [prefix + truncate(ids, self.budget, self.strategy, self.head_tokens) + suffix for ids in content]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        return EncodedChunk(ids, lengths, np.fromiter(map(len, content), dtype=np.int64, count=len(content)))


@functools.lru_cache(maxsize=8)
def _encoder(tokenizer, max_length: int, strategy: str, head_tokens: int) -> Encoder:
    return Encoder(tokenizer, max_length, strategy, head_tokens)  # building one copies the tokenizer


def encode(tokenizer, texts: list[str], layout: SpecialLayout, max_length: int,
           strategy: str, head_tokens: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids per text (special tokens added, at most max_length), and the content lengths before truncation.

    layout is probed again inside; the argument stays for callers written against it.
    """
    chunk = _encoder(tokenizer, max_length, strategy, head_tokens).encode(texts)
    return chunk.rows(), chunk.content_lengths


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
