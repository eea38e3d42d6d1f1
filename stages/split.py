"""Split: stratified, seeded train / validation / test tables, with optional per-split caps.

In:  <data>/reviews.parquet (id, text, label) from ingest; params `split`.
Out: <out>/train.parquet, <out>/val.parquet, <out>/test.parquet (same columns);
     <metrics> (rows per split and class).
Ingest keeps each normalised text once, so no text can land in two splits.

Run: python -m stages.split --data data/ingested --out data/split --metrics metrics/split.json
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd
from sklearn.model_selection import train_test_split

from bertpipe.artifacts import read_json, read_parquet, write_json, write_parquet
from bertpipe.config import SplitParams
from bertpipe.logs import setup_logging
from bertpipe.params import PARAMS_FILE, load_section

log = logging.getLogger("split")
SPLITS = ("train", "val", "test")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="ingest output folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for per-split class counts")
    return p.parse_args(argv)


def stratified_cap(df: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most cap rows of df, drawn so each class keeps its share."""
    if cap is None or cap >= len(df):
        return df
    kept, _ = train_test_split(df, train_size=cap, stratify=df["label"], random_state=seed)
    return kept


def split_table(df: pd.DataFrame, p: SplitParams) -> dict[str, pd.DataFrame]:
    rest, test = train_test_split(df, test_size=p.test_fraction, stratify=df["label"], random_state=p.seed)
    val_share = p.val_fraction / (1 - p.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=rest["label"], random_state=p.seed)
    caps = {"train": p.max_train, "val": p.max_val, "test": p.max_test}
    parts = {"train": train, "val": val, "test": test}
    return {name: stratified_cap(parts[name], caps[name], p.seed).reset_index(drop=True) for name in SPLITS}


def class_counts(parts: dict[str, pd.DataFrame], names: list[str]) -> dict:
    return {
        name: {"rows": len(part), **{names[i]: int((part["label"] == i).sum()) for i in range(len(names))}}
        for name, part in parts.items()
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(SplitParams, "split", args.params)
    df = read_parquet(f"{args.data}/reviews.parquet")
    names = read_json(f"{args.data}/meta.json")["labels"]
    too_small = df["label"].value_counts()
    if too_small.min() < 3:
        raise ValueError(f"{args.data}/reviews.parquet: class {names[too_small.idxmin()]!r} has only "
                         f"{too_small.min()} rows; a stratified split needs at least 3 per class")
    parts = split_table(df, params)
    for name, part in parts.items():
        write_parquet(part, f"{args.out}/{name}.parquet")
    counts = class_counts(parts, names)
    write_json(counts, args.metrics)
    log.info("split %d rows: %s", len(df), {k: v["rows"] for k, v in counts.items()})


if __name__ == "__main__":
    setup_logging()
    main()
