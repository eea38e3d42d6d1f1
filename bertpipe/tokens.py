"""Tokenizing text into unpadded ids, with head, tail or head+tail truncation, and writing
them chunk by chunk.

The stage (and prediction) encode with the fast tokenizer's Rust backend, a whole chunk per
call, which spreads the chunk over all cores; truncation is applied afterwards because the
tokenizer itself can only keep the head or the tail, not both.

Every text costs bounded work, whatever its characters. A text far longer than the model can
use (a hostile 10 MB one) is first cut by characters to a head and a tail window (cut_windows),
each at most a character budget: CUT_CHARS_PER_TOKEN per token it must give (at least half of
CUT_MIN_CHARS). Widening included, the tokenizer is given at most twice the budgets' characters
(about 2 x CUT_MIN_CHARS with the defaults), whatever the text's length or characters
(bench/hostile_text_bench.py). The windows keep exactly the tokens head, tail or head+tail
truncation keeps:

- where there is whitespace within the budget, they are cut where whitespace starts or ends,
  and a BERT-style pre-tokenizer splits on whitespace, so the tokens on one side of such a cut
  do not depend on the other side;
- where there is none (a base64 blob, minified JSON, one long word), they are cut at a
  character, which changes only the tokens of the word (and of a break tag or entity) that the
  cut splits: at most one per character of a word the tokenizer splits (max_input_chars_per_word,
  100 for BERT; a longer word is one [UNK] either way) and a few more; such a window must give
  that many tokens beyond those it keeps.

A window that gives too few tokens is widened, doubling each time (linear overall), up to the
budget. Only a text that gives fewer tokens than truncation keeps in a whole budget at an end
(more than CUT_CHARS_PER_TOKEN characters per token there: a megabyte of one word or of
characters the tokenizer drops) keeps fewer tokens than truncation of the whole text would.
Tokenizers whose pre-tokenizer does not split on whitespace (byte-level BPE, sentencepiece)
are cut to the budget at a character, without that guarantee.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers

from bertpipe.artifacts import atomic_path
from bertpipe.text import Normalization, normalize

# Texts over this many characters per budget token, and over CUT_MIN_CHARS, are cut before
# normalising and tokenizing: longer than any IMDB review (13,704 characters), so the length
# statistics of real data stay exact, while a 10 MB text costs what a long review costs. A
# window holds at most CUT_CHARS_PER_TOKEN characters per token it must give, and at least
# CUT_MIN_CHARS // 2 (its budget): both windows together hold no more than a text of the default
# cut length that is tokenized whole.
CUT_CHARS_PER_TOKEN = 64
CUT_MIN_CHARS = 32_768
# A cut text's first windows hold this many characters per token they must give (English
# averages about 4.5 per BERT token); a window that gives too few is widened.
WINDOW_CHARS_PER_TOKEN = 8
# Windows are cut at whitespace that both normalisation and the BERT normalizer keep as
# whitespace (not \x0b, \x1c or \x85, which the tokenizer drops, gluing their neighbours).
_CUT = re.compile("[ \t\n\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
# Normalisation turns "<br />" into a newline, and that tag spans whitespace: a window cut inside
# it gives up to two tokens ("<", "br" or "/", ">") at its cut end that the whole text does not
# have. A window must therefore give this many tokens beyond those it keeps.
CUT_MARGIN_TOKENS = 2
# A window cut at a character (no whitespace within the budget) must give, beyond those it keeps,
# the tokens of the word the cut splits (at most max_input_chars_per_word) and this many more: a
# break tag ("<", "br", "/") or an entity ("&", "#", "32", ";") that the cut splits.
HARD_CUT_MARGIN_TOKENS = 4
# Pre-tokenizers that split on whitespace, so that cutting there keeps the tokens of each side.
_SPLITS_ON_WHITESPACE = (pre_tokenizers.BertPreTokenizer, pre_tokenizers.Whitespace,
                         pre_tokenizers.WhitespaceSplit)


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


def head_cut(text: str, at_least: int, at_most: int | None = None) -> int | None:
    """End of the shortest head window of at least at_least characters, cut at whitespace; with
    at_most, whitespace only up to there, else a cut at at_least itself. None: no cut (keep all)."""
    found = _CUT.search(text, at_least, len(text) if at_most is None else at_most)
    if found:
        return found.start()
    return at_least if at_most is not None and at_least < len(text) else None


def tail_cut(text: str, at_least: int, at_most: int | None = None) -> int | None:
    """Start of the shortest tail window of at least at_least characters, cut at whitespace; with
    at_most, whitespace only up to that many characters, else a cut at at_least itself. None: no
    cut (keep all).

    Searches backwards in blocks that double, so the cost follows the window, not the text."""
    end, size = len(text) - at_least, 1024
    floor = 0 if at_most is None else max(0, len(text) - at_most)
    while end > floor:
        start = max(floor, end - size)
        last = None
        for last in _CUT.finditer(text, start, end):  # noqa: B007 - the loop keeps the last match
            pass
        if last is not None:
            return last.end()
        if start == floor:
            break
        size *= 2
    return end if at_most is not None and end > 0 else None


def cut_windows(text: str, head_chars: int, tail_chars: int, head_max: int | None = None,
                tail_max: int | None = None) -> tuple[str, str] | None:
    """A head window of at least head_chars characters and a tail window of at least tail_chars
    (either may be 0: empty), each ending or starting at a safe cut, or with head_max / tail_max at
    a character when no whitespace is within that many (see head_cut, tail_cut); None when they
    would meet."""
    end = head_cut(text, head_chars, head_max) if head_chars else 0
    if end is None:
        return None
    start = tail_cut(text, tail_chars, tail_max) if tail_chars else len(text)
    if start is None or start <= end:
        return None
    return text[:end], text[start:]


def _hard_cut(text: str, at: int) -> bool:
    """Whether a window edge at `at` is cut at a character rather than next to whitespace."""
    return 0 < at < len(text) and not (_CUT.match(text, at) or _CUT.match(text, at - 1))


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
    """Encodes batches of texts to unpadded ids of at most max_length, special tokens included.

    Texts over cut_chars characters are cut to windows first (see the module docstring); their
    content length is then the tokens of the windows, a lower bound. cut_chars=0: never cut."""

    def __init__(self, tokenizer, max_length: int, strategy: str, head_tokens: int,
                 cut_chars: int | None = None):
        self.layout = SpecialLayout.probe(tokenizer)
        self.budget = max_length - len(self.layout.prefix) - len(self.layout.suffix)
        self.strategy, self.head_tokens = strategy, head_tokens
        self.backend = _plain_backend(tokenizer)
        self.head_need = {"head": self.budget, "tail": 0}.get(strategy, min(head_tokens, self.budget))
        self.tail_need = self.budget - self.head_need
        # Other pre-tokenizers (byte-level BPE, sentencepiece) glue a space to the next word: their
        # windows are the whole budget, cut at a character, without the guarantee.
        self.exact_cuts = isinstance(self.backend.pre_tokenizer, _SPLITS_ON_WHITESPACE)
        self.cut_chars = max(CUT_CHARS_PER_TOKEN * self.budget, CUT_MIN_CHARS) if cut_chars is None else cut_chars
        self.head_max, self.tail_max = (max(CUT_CHARS_PER_TOKEN * n, CUT_MIN_CHARS // 2) if n else 0
                                        for n in (self.head_need, self.tail_need))
        # A word the tokenizer splits gives at most one token per character (a longer one: [UNK]).
        word_chars = getattr(self.backend.model, "max_input_chars_per_word", 100)
        self.hard_margin = word_chars + HARD_CUT_MARGIN_TOKENS

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens or truncation: one batch call, on all cores."""
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def windows(self, text: str, head_chars: int, tail_chars: int) -> tuple[str, str] | None:
        """text's head and tail windows of at least these sizes, within the budget (cut_windows)."""
        if self.exact_cuts:
            return cut_windows(text, head_chars, tail_chars, self.head_max, self.tail_max)
        return None if head_chars + tail_chars >= len(text) else (text[:head_chars], text[len(text) - tail_chars:])

    def _wider(self, chars: int, ids: list[int], need: int, hard: bool, most: int) -> int:
        """The next size of a window of `chars` that gave `ids`: itself when they are enough or it is
        as wide as the budget allows, else at least double, or at once what its tokens per character
        suggest (a 10 MB word gives one token in any window: straight to the budget)."""
        want = need + (self.hard_margin if hard else CUT_MARGIN_TOKENS)
        if need == 0 or len(ids) >= want or chars >= most:
            return chars
        return min(most, max(2 * chars, chars * want // max(len(ids), 1)))

    def kept_ids(self, texts: list[str], norm: Normalization | None = None) -> tuple[list[list[int]], list[int]]:
        """Content ids of each text (normalised first when norm is given), long texts already cut
        to what truncation keeps; and each text's content length (a lower bound for cut texts)."""
        prepare = (lambda t: normalize(t, norm)) if norm else (lambda t: t)
        content: list[list[int]] = [[] for _ in texts]
        lengths = [0] * len(texts)
        # Window sizes in characters, head and tail, of each text still to cut.
        first = ((WINDOW_CHARS_PER_TOKEN * self.head_need, WINDOW_CHARS_PER_TOKEN * self.tail_need)
                 if self.exact_cuts else (self.head_max, self.tail_max))
        pending = {i: first for i, t in enumerate(texts) if self.cut_chars and len(t) > self.cut_chars}
        whole = [i for i in range(len(texts)) if i not in pending]
        while whole or pending:
            windows = {i: self.windows(texts[i], *chars) for i, chars in pending.items()}
            whole += [i for i, w in windows.items() if w is None]
            cut = [i for i, w in windows.items() if w is not None]
            ids = self.content_ids([prepare(texts[i]) for i in whole] +
                                   [prepare(piece) for i in cut for piece in windows[i]])
            for i, row in zip(whole, ids, strict=False):  # ids: the whole texts first, then the windows
                content[i], lengths[i] = row, len(row)
            heads, tails = ids[len(whole)::2], ids[len(whole) + 1::2]
            widen = {}
            for i, head, tail in zip(cut, heads, tails, strict=True):
                (h, t), text = pending[i], texts[i]
                end, start = len(windows[i][0]), len(text) - len(windows[i][1])
                wider = (self._wider(h, head, self.head_need, _hard_cut(text, end), self.head_max),
                         self._wider(t, tail, self.tail_need, _hard_cut(text, start), self.tail_max))
                if wider == (h, t):  # enough tokens, or windows as wide as the budget allows
                    content[i] = head[:self.head_need] + tail[len(tail) - self.tail_need:]
                    lengths[i] = len(head) + len(tail)
                else:  # a window gave too few tokens: widen it
                    widen[i] = wider
            whole, pending = [], widen
        return content, lengths

    def encode(self, texts: list[str], norm: Normalization | None = None) -> EncodedChunk:
        content, content_lengths = self.kept_ids(texts, norm)
        prefix, suffix = list(self.layout.prefix), list(self.layout.suffix)
        rows = [prefix + truncate(ids, self.budget, self.strategy, self.head_tokens) + suffix for ids in content]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        return EncodedChunk(ids, lengths, np.asarray(content_lengths, dtype=np.int64))


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
