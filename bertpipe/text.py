"""Text normalisation, explicit and configurable, shared by ingest and prediction."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")


@dataclass(frozen=True)
class Normalization:
    html_breaks: bool = True  # "<br /><br />" -> newline
    html_entities: bool = True  # "&amp;" -> "&"
    whitespace: bool = True  # collapse runs of spaces, trim
    unicode_nfc: bool = True


def normalize(text: str, norm: Normalization) -> str:
    if norm.unicode_nfc:
        text = unicodedata.normalize("NFC", text)
    if norm.html_breaks:
        text = _BR.sub("\n", text)
    if norm.html_entities:
        text = html.unescape(text)
    if norm.whitespace:
        text = _NEWLINES.sub("\n", _SPACES.sub(" ", text)).strip()
    return text
