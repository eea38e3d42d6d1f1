"""Hostile texts: does normalisation stay linear, and does a 10 MB text cost what a long review
costs, with or without whitespace?

1. Normalisation of runs of carriage returns and em spaces: the former regex (`\\s*\\n\\s*`,
   quadratic on whitespace runs without a newline) against bertpipe.text.normalize, at two
   sizes, so the growth shows (4x the text: ~4x the time when linear, ~16x when quadratic).
2. Four 10 MB texts against the longest IMDB review, with the default head+tail truncation
   (params.yaml: 256 tokens, 64 of them from the head): one with spaces, and three without
   whitespace: one long word ("ab" * 5,000,000), a base64 blob, a dotted run ("a." * 5,000,000).
   - encode: Encoder.encode with normalisation, as Classifier.predict_proba calls it (and, on
     normalised text, the tokenize stage);
   - predict: what predict and the served model do per text: bertpipe.validation.unusable_reason,
     then Classifier.predict_proba (the embedded MiniLM with a random 2-class head: the cost does
     not depend on the head's weights).
   Each pair runs in turn --repeat times: the median ratio and its spread (min..max) are
   reported, and the peak resident memory each call adds (VmHWM, reset before each call; the
   text itself exists before).
Last lines: RESULT <name>=<value>: the ratios' medians (for the texts without whitespace and for
predict, the largest over the texts) and the largest memory growth in MB.

Run: python bench/hostile_text_bench.py [--repeat 5]
     python bench/hostile_text_bench.py --quick   # a smoke test in seconds: runs 10x shorter, 2 repeats
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from bertpipe.contracts import CheckpointMeta  # noqa: E402
from bertpipe.embedded import embedded_model_dir  # noqa: E402
from bertpipe.inference import Classifier  # noqa: E402
from bertpipe.modeling import autocast_dtype  # noqa: E402
from bertpipe.sources import movie_reviews  # noqa: E402
from bertpipe.text import Normalization, normalize  # noqa: E402
from bertpipe.tokens import Encoder  # noqa: E402
from bertpipe.validation import unusable_reason  # noqa: E402

FORMER_SIZES = (10_000, 40_000)  # whitespace runs for the former regex: quadratic, so kept short
NOW_SIZES = (1_000_000, 4_000_000)  # and for normalize, 4x apart
# --quick: the same steps in seconds; the 10 MB text stays (encoding cuts it first: it is cheap)
QUICK = {"repeat": 2, "shrink": 10}
MAX_LENGTH, HEAD_TOKENS = 256, 64  # params.yaml's tokenize section
TEN_MB = 10_000_000
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

    review = max(movie_reviews("imdb")["text"], key=len)
    classifier = random_classifier()
    encoder, norm = classifier.encoder, classifier.meta.norm()
    classifier.predict_proba([review])  # warm-up: what any first call allocates is not the text's
    encode_ratio, predict_ratio, growth = {}, {}, []
    for kind, text in hostile_texts().items():
        given, review_given = tokenized_chars(encoder, text, norm), tokenized_chars(encoder, review, norm)
        print(f"10 MB {kind}: the tokenizer is given {given:,} characters (the longest review: {review_given:,})")
        for name, fn in (("encode", lambda t: encoder.encode([t], norm)),
                         ("predict", lambda t: (unusable_reason(t, norm), classifier.predict_proba([t])))):
            mb = [peak_growth_mb(fn, text) for _ in range(args.repeat)]
            t_huge, t_review, ratio, lo, hi = paired(args.repeat, (fn, text), (fn, review))
            print(f"  {name:7} {t_huge * 1e3:7.1f}ms vs longest review ({len(review)} chars) {t_review * 1e3:6.1f}ms: "
                  f"ratio {ratio:.2f} ({lo:.2f}..{hi:.2f}); peak memory +{statistics.median(mb):.1f} MB "
                  f"({min(mb):.1f}..{max(mb):.1f})")
            (encode_ratio if name == "encode" else predict_ratio)[kind] = ratio
            growth += mb
    # For scale, what encode did with a text without whitespace before the budget: all of it to the tokenizer.
    dotted = "a." * (TEN_MB // 20 // args.shrink)
    start = time.perf_counter()
    mb = peak_growth_mb(encoder.content_ids, [normalize(dotted, norm)])
    print(f"former: a {len(dotted) / 1e6:g} MB dotted text tokenized whole: {time.perf_counter() - start:.2f}s, "
          f"peak memory +{mb:.0f} MB")
    print(f"RESULT encode_10mb_vs_long_review={encode_ratio['spaces']:.2f}")
    print(f"RESULT encode_10mb_no_whitespace_vs_long_review="
          f"{max(v for k, v in encode_ratio.items() if k != 'spaces'):.2f} "
          f"predict_10mb_vs_long_review={max(predict_ratio.values()):.2f} peak_growth_mb_10mb={max(growth):.1f}")


def tokenized_chars(encoder, text: str, norm: Normalization) -> int:
    """How many characters encoding text hands the tokenizer: the work, without the clock's noise."""
    given = []
    original = encoder.content_ids
    encoder.content_ids = lambda texts: given.extend(map(len, texts)) or original(texts)
    try:
        encoder.encode([text], norm)
    finally:
        del encoder.content_ids
    return sum(given)


def hostile_texts() -> dict[str, str]:
    """10 MB each: with spaces, and without whitespace: one long word, base64, a dotted run."""
    return {"spaces": ("An odd, very long review. " * 400_000)[:TEN_MB],
            "one word": "ab" * (TEN_MB // 2),
            "base64": base64.b64encode(random.Random(0).randbytes(TEN_MB * 3 // 4)).decode(),
            "dotted": "a." * (TEN_MB // 2)}


def random_classifier() -> Classifier:
    """The embedded MiniLM with a random 2-class head, made as Classifier.load makes one."""
    base = embedded_model_dir("embedded:minilm-l6")
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(base)
    meta = CheckpointMeta(base_model=str(base), base_model_revision="", max_length=MAX_LENGTH,
                          truncation="head_tail", head_tokens=HEAD_TOKENS, pad_token_id=tokenizer.pad_token_id,
                          normalization={}, labels=["negative", "positive"])
    device = torch.device("cpu")
    return Classifier(model.eval(), Encoder(tokenizer, MAX_LENGTH, "head_tail", HEAD_TOKENS), meta, device,
                      autocast_dtype(device, "auto"))


def peak_growth_mb(fn, *args) -> float:
    """MB of resident memory fn(*args) adds at its peak: the peak (VmHWM) is reset first (Linux);
    elsewhere the Python allocations' peak (tracemalloc), which misses the tokenizer's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        import tracemalloc

        tracemalloc.start()
        fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20
    before = _status_kb("VmRSS")
    fn(*args)
    return max(0, _status_kb("VmHWM") - before) / 1024


def _status_kb(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


if __name__ == "__main__":
    main()
