"""Tokenizing text into unpadded ids, with head, tail or head+tail truncation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def encode(tokenizer, texts: list[str], layout: SpecialLayout, max_length: int,
           strategy: str, head_tokens: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids per text (special tokens added, at most max_length), and the content lengths before truncation."""
    content = tokenizer(texts, add_special_tokens=False, truncation=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    budget = max_length - len(layout.prefix) - len(layout.suffix)
    rows = [np.asarray(layout.prefix + tuple(truncate(ids, budget, strategy, head_tokens)) + layout.suffix,
                       dtype=np.int32) for ids in content]
    return rows, np.array([len(ids) for ids in content], dtype=np.int64)


def length_stats(content_lengths: np.ndarray, budget: int) -> dict[str, float]:
    if len(content_lengths) == 0:
        return {"rows": 0}
    q = np.percentile(content_lengths, [50, 90, 99])
    return {
        "rows": int(len(content_lengths)),
        "mean_tokens": round(float(content_lengths.mean()), 2),
        "p50_tokens": float(q[0]),
        "p90_tokens": float(q[1]),
        "p99_tokens": float(q[2]),
        "share_truncated": round(float((content_lengths > budget).mean()), 4),
    }
