"""Tokenize the same 5,000 default IMDB reviews the tutorial way and the stage's way.

Tutorial way: a Python loop calling the tokenizer once per review, padding to max_length
512, returning tensors. Stage's way: bertpipe.tokens.encode, one batched call per chunk
(the Rust tokenizer's parallel batch encoding), unpadded, head+tail truncation.
Last line: RESULT tokenize_speedup=<tutorial seconds / stage seconds>.

Run: python bench/tokenize_bench.py [--rows 5000]
"""

from __future__ import annotations

import argparse
import logging
import time

from transformers import AutoTokenizer

from bertpipe.embedded import embedded_model_dir
from bertpipe.logs import setup_logging
from bertpipe.sources import movie_reviews
from bertpipe.text import Normalization, normalize
from bertpipe.tokens import SpecialLayout, encode

log = logging.getLogger("tokenize_bench")
MAX_LENGTH = 512
CHUNK = 2000


def tutorial(tokenizer, texts: list[str]) -> int:
    n = 0
    for text in texts:
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        n += int(enc["input_ids"].shape[0])
    return n


def stage_way(tokenizer, texts: list[str]) -> int:
    layout = SpecialLayout.probe(tokenizer)
    n = 0
    for start in range(0, len(texts), CHUNK):
        rows, _ = encode(tokenizer, texts[start : start + CHUNK], layout, MAX_LENGTH, "head_tail", 128)
        n += len(rows)
    return n


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    raw = movie_reviews("imdb").head(args.rows)
    texts = [normalize(t, Normalization()) for t in raw["text"]]
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6"))
    stage_way(tokenizer, texts[:200])  # warm up both paths once
    tutorial(tokenizer, texts[:200])
    t_tutorial = timed(tutorial, tokenizer, texts)
    t_stage = timed(stage_way, tokenizer, texts)
    log.info("%d reviews: tutorial loop %.2fs (%.0f rows/s), stage %.2fs (%.0f rows/s)", len(texts), t_tutorial,
             len(texts) / t_tutorial, t_stage, len(texts) / t_stage)
    print(f"RESULT tokenize_speedup={t_tutorial / t_stage:.2f}")


if __name__ == "__main__":
    setup_logging()
    main()
