"""Tokenize the same 5,000 default IMDB reviews the tutorial way and the stage's way.

Tutorial way: a Python loop calling the tokenizer once per review, padding to max_length
512, returning tensors. Stage's way: bertpipe.tokens.Encoder, as stages/tokenize.py uses it:
chunks of 2,000 reviews, each one batch call to the Rust tokenizer (parallel over the chunk),
unpadded, head+tail truncation to 512 tokens. The two ways run in
turn --repeat times and each keeps its fastest run, so other processes on the machine
disturb the ratio less.
Last line: RESULT tokenize_speedup=<tutorial seconds / stage seconds>.

Run: python bench/tokenize_bench.py [--rows 5000] [--repeat 3]
     python bench/tokenize_bench.py --quick   # 200 reviews, 2 runs: the same paths in seconds
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from transformers import AutoTokenizer  # noqa: E402

from bertpipe.embedded import embedded_model_dir  # noqa: E402
from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.sources import movie_reviews  # noqa: E402
from bertpipe.text import Normalization, normalize  # noqa: E402
from bertpipe.tokens import Encoder  # noqa: E402

log = logging.getLogger("tokenize_bench")
MAX_LENGTH = 512
HEAD_TOKENS = 128
CHUNK = 2000  # the stage's default tokenize.chunk_rows
QUICK = {"rows": 200, "repeat": 2}  # --quick: the same code paths, sizes for a smoke test


def tutorial(tokenizer, texts: list[str]) -> int:
    n = 0
    for text in texts:
        enc = tokenizer(text, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        n += int(enc["input_ids"].shape[0])
    return n


def stage_way(tokenizer, texts: list[str]) -> int:
    encoder = Encoder(tokenizer, MAX_LENGTH, "head_tail", HEAD_TOKENS)
    n = 0
    for start in range(0, len(texts), CHUNK):
        n += len(encoder.encode(texts[start : start + CHUNK]).lengths)
    return n


def timed(fn, *args) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one run."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes for a smoke test: {QUICK}")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    raw = movie_reviews("imdb").head(args.rows)
    texts = [normalize(t, Normalization()) for t in raw["text"]]
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6"))
    stage_way(tokenizer, texts[:200])  # warm up both paths once
    tutorial(tokenizer, texts[:200])
    # Alternate the two ways so both meet the same load from other processes; keep each one's best.
    runs = [(timed(tutorial, tokenizer, texts), timed(stage_way, tokenizer, texts)) for _ in range(args.repeat)]
    t_tutorial, cpu_tutorial = min(r[0] for r in runs)
    t_stage, cpu_stage = min(r[1] for r in runs)
    # CPU seconds show the work apart from the cores: on a busy machine the stage's threads
    # may get no second core, and wall time then hides what parallelism would add.
    log.info("%d reviews, fastest of %d: tutorial loop %.2fs (%.0f rows/s, %.2f CPU s), stage %.2fs "
             "(%.0f rows/s, %.2f CPU s on up to %d cores)", len(texts), args.repeat, t_tutorial,
             len(texts) / t_tutorial, cpu_tutorial, t_stage, len(texts) / t_stage, cpu_stage, os.cpu_count())
    print(f"RESULT tokenize_speedup={t_tutorial / t_stage:.2f}")


if __name__ == "__main__":
    setup_logging()
    main()
