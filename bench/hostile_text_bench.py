"""Hostile texts: does normalisation stay linear, and does a 10 MB text cost what a long review costs?

1. Normalisation of runs of carriage returns and em spaces: the former regex (`\\s*\\n\\s*`,
   quadratic on whitespace runs without a newline) against bertpipe.text.normalize, at two
   sizes, so the growth shows (4x the text: ~4x the time when linear, ~16x when quadratic).
2. Prediction's encoding (Encoder.encode with normalisation, as Classifier.predict_proba calls
   it) of a 10 MB text against the longest IMDB review, with the default head+tail truncation.
Each pair runs in turn --repeat times; the median ratio and its spread (min..max) are reported.
Last lines: RESULT <name>=<median ratio>.

Run: python bench/hostile_text_bench.py [--repeat 5]
     python bench/hostile_text_bench.py --quick   # a smoke test in seconds: runs 10x shorter, 2 repeats
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from transformers import AutoTokenizer  # noqa: E402

from bertpipe.embedded import embedded_model_dir  # noqa: E402
from bertpipe.sources import movie_reviews  # noqa: E402
from bertpipe.text import Normalization, normalize  # noqa: E402
from bertpipe.tokens import Encoder  # noqa: E402

FORMER_SIZES = (10_000, 40_000)  # whitespace runs for the former regex: quadratic, so kept short
NOW_SIZES = (1_000_000, 4_000_000)  # and for normalize, 4x apart
# --quick: the same steps in seconds; the 10 MB text stays (encoding cuts it first: it is cheap)
QUICK = {"repeat": 2, "shrink": 10}
_SPACES, _NEWLINES = re.compile(r"[ \t\u00a0]+"), re.compile(r"\s*\n\s*")


def former_whitespace(text: str) -> str:
    """The whitespace step as it was before the fix."""
    return _NEWLINES.sub("\n", _SPACES.sub(" ", text)).strip()


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def paired(repeat: int, a, b) -> tuple[float, float, float, float, float]:
    """Runs a and b in turn; median seconds of each, median ratio a/b, min and max ratio."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(seconds(*a))
        tb.append(seconds(*b))
    ratios = [x / y for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--shrink", type=int, default=1, help="whitespace runs this many times shorter")
    p.add_argument("--quick", action="store_true", help=f"a smoke test in seconds: {QUICK}")
    args = p.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        p.set_defaults(**QUICK)
        args = p.parse_args()
    norm = Normalization()
    for unit in ("\r", "\u2003"):
        for n in (size // args.shrink for size in FORMER_SIZES):
            old, new, ratio, lo, hi = paired(args.repeat, (former_whitespace, unit * n), (normalize, unit * n, norm))
            print(f"{unit!r} x {n:>6}: former {old:.3f}s, now {new * 1e3:.2f}ms, "
                  f"ratio {ratio:.0f} ({lo:.0f}..{hi:.0f})")
        small, large = (unit * (size // args.shrink) for size in NOW_SIZES)
        t4, t1, ratio, lo, hi = paired(args.repeat, (normalize, large, norm), (normalize, small, norm))
        print(f"{unit!r} now: {len(small):,} chars {t1 * 1e3:.0f}ms -> {len(large):,} chars {t4 * 1e3:.0f}ms: "
              f"x{ratio:.1f} ({lo:.1f}..{hi:.1f})")
        print(f"RESULT normalize_4x_growth_{'cr' if unit == chr(13) else 'emspace'}={ratio:.2f}")

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6"))
    encoder = Encoder(tokenizer, 256, "head_tail", 64)
    review = max(movie_reviews("imdb")["text"], key=len)
    huge = ("An odd, very long review. " * 400_000)[:10_000_000]
    t_huge, t_review, ratio, lo, hi = paired(args.repeat, (encoder.encode, [huge], norm),
                                             (encoder.encode, [review], norm))
    print(f"encode 10 MB text {t_huge * 1e3:.1f}ms vs longest review ({len(review)} chars) {t_review * 1e3:.1f}ms: "
          f"ratio {ratio:.2f} ({lo:.2f}..{hi:.2f})")
    print(f"RESULT encode_10mb_vs_long_review={ratio:.2f}")


if __name__ == "__main__":
    main()
