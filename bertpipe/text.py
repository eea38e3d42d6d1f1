"""Text normalisation, explicit and configurable, shared by ingest and prediction.

Every step is linear in the text's length (no pattern here can backtrack over a run of
whitespace), so a hostile text of megabytes costs what its size costs, no more.

What `whitespace` does: zero-width characters (U+200B zero width space, U+200C zero width
non-joiner, U+200D zero width joiner, U+2060 word joiner, U+FEFF byte order mark) are removed,
so texts that differ only by them are duplicates; a run of whitespace that holds a line break
becomes one newline; other runs of spaces, tabs and no-break spaces become one space; the
text is trimmed. Nothing else is removed (control characters such as NUL stay; the
tokenizer drops them, and validation quarantines texts made only of them).

`match_key` is the one identity of a text across the pipeline: ingest keeps one row per key,
split assigns a row to train, validation or test from the key's hash, and lineage (what the
promotion gate checks overlap on) hashes the key. Texts that differ only by case, by Unicode
compatibility forms ("ﬁlm" / "film", full-width letters) or by whitespace have one key.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_ZERO_WIDTH = re.compile(f"[{ZERO_WIDTH}]+")
# Each maximal run of whitespace is matched once, from its first character: linear.
_WHITESPACE_RUN = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class Normalization:
    html_breaks: bool = True  # "<br /><br />" -> newline
    html_entities: bool = True  # "&amp;" -> "&"
    whitespace: bool = True  # drop zero-width characters, collapse runs of spaces, trim
    unicode_nfc: bool = True


def _collapse(run: re.Match) -> str:
    """A run of whitespace: one newline when it holds one, else its spaces and tabs as one space."""
    text = run.group()
    return "\n" if "\n" in text else _SPACES.sub(" ", text)


def normalize(text: str, norm: Normalization) -> str:
    """The steps in an order that makes a second pass change nothing (NFC after unescaping and
    after zero-width characters are gone), except on text escaped twice ("&amp;lt;" is
    unescaped once) or break tags nested in break tags ("<br<br>>")."""
    if norm.html_breaks:
        text = _BR.sub("\n", text)
    if norm.html_entities:
        text = html.unescape(text)
    if norm.whitespace and not text.isascii():  # O(1) test; the scan costs ~30 ns a character
        text = _ZERO_WIDTH.sub("", text)
    if norm.unicode_nfc:
        text = unicodedata.normalize("NFC", text)
    if norm.whitespace:
        text = _WHITESPACE_RUN.sub(_collapse, text).strip()
    return text


def match_key(text: str) -> str:
    """A text's identity: Unicode NFKC, runs of whitespace as one space, trimmed, case folded.
    Linear in the text's length."""
    return _WHITESPACE_RUN.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def key_hashes(texts: Iterable[str], salt: bytes = b"") -> np.ndarray:
    """(N,) uint64: the first 8 bytes (little-endian) of blake2b of each text's match_key, keyed
    by salt when given (split: the seed). Unsalted, these are lineage's row hashes."""
    def one(text: str) -> bytes:
        return hashlib.blake2b(match_key(text).encode("utf-8", "surrogatepass"), digest_size=8, key=salt).digest()
    return np.frombuffer(b"".join(one(t) for t in texts), dtype="<u8").astype(np.uint64)


def key_digests(texts: Iterable[str]) -> np.ndarray:
    """(N,) 16-byte blake2b digests of each text's match_key: what ingest finds repeats with
    among millions of rows (a chance of about 2**-128 per pair that two keys collide)."""
    digests = b"".join(hashlib.blake2b(match_key(t).encode("utf-8", "surrogatepass"), digest_size=16).digest()
                       for t in texts)
    return np.frombuffer(digests, dtype="S16")
