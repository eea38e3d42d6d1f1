"""Split: stratified, seeded train / validation / test tables, with optional per-split caps.

In:  <data>/reviews.parquet (id, text, label, source_split) and <data>/meta.json from ingest;
     params `split`.
Out: <out>/train.parquet, <out>/val.parquet, <out>/test.parquet (id, text, label), <out>/meta.json
     (ingest's, handed on);
     <metrics> (rows per split and class, and where the test split came from).
When the source has its own test split (aclImdb, Hugging Face), `split.keep_source_test`
chooses whether it is the test split. Ingest keeps each normalised text once; this stage
checks that (on 16-byte keys of the texts), so no text can land in two splits.
The splits are drawn on the label and source split columns alone; the texts stay in Arrow
memory, as read, and each split is written by taking its rows a row group at a time.

Run: python -m stages.split --data data/ingested --out data/split --metrics metrics/split.json
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from bertpipe.artifacts import atomic_dir, write_json
from bertpipe.config import SplitParams
from bertpipe.contracts import DatasetMeta
from bertpipe.logs import run_cli
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.tables import ROW_GROUP_ROWS, ParquetFrameWriter, text_keys

log = logging.getLogger("split")
SPLITS = ("train", "val", "test")
OUT_COLUMNS = ["id", "text", "label"]
OUT_SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.large_string()), ("label", pa.int64())])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="ingest output folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for per-split class counts")
    return p.parse_args(argv)


def read_rows(path: str) -> tuple[pd.DataFrame, pa.Table]:
    """The columns the split is drawn on (label, source_split; index = row position) as a frame,
    and the output columns as an Arrow table."""
    table = pq.read_table(path, columns=OUT_COLUMNS)
    df = pd.DataFrame({"label": table.column("label").to_numpy(), "source_split": "train"})
    if "source_split" in pq.read_schema(path).names:  # else a source without splits of its own
        splits = pq.read_table(path, columns=["source_split"], read_dictionary=["source_split"])
        df["source_split"] = splits.column("source_split").to_pandas()  # categorical: a code a row
    return df, table


def repeated_texts(texts: pa.ChunkedArray) -> int:
    """How many texts repeat an earlier one, compared by text_keys a slice at a time."""
    keys = [text_keys(texts.slice(i, ROW_GROUP_ROWS).to_pylist()) for i in range(0, len(texts), ROW_GROUP_ROWS)]
    keys = np.concatenate(keys) if keys else np.zeros(0, dtype="S16")
    return len(keys) - len(np.unique(keys))


def check_input(df: pd.DataFrame, texts: pa.ChunkedArray, names: list[str], path: str) -> None:
    repeated = repeated_texts(texts)
    if repeated:
        raise ValueError(f"{path}: {repeated} texts occur more than once, so they could land in two splits; "
                         "ingest keeps each normalised text once: rerun ingest (dvc repro ingest) rather "
                         "than editing its output")
    counts = df["label"].value_counts().sort_index()
    if counts.min() < 3:
        raise ValueError(f"{path}: class {names[counts.idxmin()]!r} has only {counts.min()} rows; a stratified "
                         "split needs at least 3 per class: add rows, or leave the class out of "
                         "ingest.label_names")


def stratified(df: pd.DataFrame, fraction: float, seed: int, what: str,
               names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, part): part holds `fraction` of the rows of each class, drawn at random."""
    counts = df["label"].value_counts().sort_index()
    if counts.min() < 2:
        raise ValueError(f"{what}: class {names[counts.idxmin()]!r} has {counts.min()} row; a stratified split "
                         "needs at least 2 per class: add rows, or leave the class out of ingest.label_names")
    n_part = math.ceil(fraction * len(df))
    if min(n_part, len(df) - n_part) < len(counts):
        raise ValueError(f"{what}: a share of {fraction:g} of {len(df)} rows cannot give both parts all "
                         f"{len(counts)} classes; add rows or change split.val_fraction / split.test_fraction")
    rest, part = train_test_split(df, test_size=fraction, stratify=df["label"], random_state=seed)
    return rest, part


def capped(df: pd.DataFrame, cap: int | None, seed: int, name: str) -> pd.DataFrame:
    """At most cap rows of df, each class keeping its share (largest remainders get the odd rows)."""
    if cap is None or cap >= len(df):
        return df
    counts = df["label"].value_counts().sort_index()
    if cap < len(counts):
        raise ValueError(f"split.max_{name}={cap}: fewer rows than the {len(counts)} classes; set it to at "
                         f"least {len(counts)}, or null for no cap")
    exact = counts * cap / len(df)
    quota = exact.astype(int)
    quota[(exact - quota).sort_values(ascending=False, kind="stable").index[: cap - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(df.index[df["label"] == label].to_numpy(), n, replace=False)
              for label, n in quota.items()]
    return df[df.index.isin(np.concatenate(picked))]  # in df's (shuffled) order


def split_table(df: pd.DataFrame, p: SplitParams, names: list[str]) -> tuple[dict[str, pd.DataFrame], bool]:
    """The three splits (df's rows, in the order they are written), and whether test is the
    source's own test split."""
    source_test = df["source_split"] == "test"
    use_source_test = p.keep_source_test and bool(source_test.any())
    if use_source_test:
        pool, test = df[~source_test], df[source_test]
        train, val = stratified(pool, p.val_fraction, p.seed, "the source's train rows", names)
    else:
        rest, test = stratified(df, p.test_fraction, p.seed, "the ingested rows", names)
        val_share = p.val_fraction / (1 - p.test_fraction)
        train, val = stratified(rest, val_share, p.seed, "the rows left for train and val", names)
    caps = {"train": p.max_train, "val": p.max_val, "test": p.max_test}
    parts = {"train": train, "val": val, "test": test}
    parts = {name: capped(parts[name], caps[name], p.seed, name) for name in SPLITS}
    return parts, use_source_test


def shared_rows(parts: dict[str, pd.DataFrame]) -> int:
    """Rows in more than one split (the texts are distinct, so texts in more than one split)."""
    rows = np.concatenate([part.index.to_numpy() for part in parts.values()])
    return len(rows) - len(np.unique(rows))


def write_rows(table: pa.Table, rows: np.ndarray, path: Path) -> None:
    """table's rows at positions rows, in that order, a row group at a time. Each piece is taken
    from the table's record batches one by one: Arrow's take on a chunked table would first copy
    all its text into one."""
    batches = table.to_batches()
    starts = np.cumsum([0] + [len(b) for b in batches])
    with ParquetFrameWriter(path, OUT_SCHEMA) as writer:
        for i in range(0, max(len(rows), 1), ROW_GROUP_ROWS):
            piece = rows[i:i + ROW_GROUP_ROWS]
            batch = np.searchsorted(starts, piece, side="right") - 1
            used = np.unique(batch)
            taken = pa.Table.from_batches([batches[b].take(piece[batch == b] - starts[b]) for b in used],
                                          schema=table.schema)
            order = np.concatenate([np.flatnonzero(batch == b) for b in used]) if len(used) else piece
            writer.add(taken.take(np.argsort(order, kind="stable")).to_pandas())


def class_counts(parts: dict[str, pd.DataFrame], names: list[str]) -> dict:
    return {
        name: {"rows": len(part), **{names[i]: int((part["label"] == i).sum()) for i in range(len(names))}}
        for name, part in parts.items()
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(SplitParams, "split", args.params)
    path = f"{args.data}/reviews.parquet"
    df, table = read_rows(path)
    dataset = DatasetMeta.read(args.data)
    names = dataset.labels
    check_input(df, table.column("text"), names, path)

    parts, from_source = split_table(df, params, names)
    if shared_rows(parts):  # cannot happen after check_input; a guard for later changes
        raise RuntimeError("a text landed in two splits; this is a bug in stages/split.py")
    with atomic_dir(args.out) as out:
        for name, part in parts.items():
            write_rows(table, part.index.to_numpy(), out / f"{name}.parquet")
        dataset.write(out)  # handed on to tokenize: class names and normalisation
    counts = class_counts(parts, names)
    write_json({**counts, "test_is_source_test_split": from_source}, args.metrics)
    log.info("split %d rows: %s (test %s)", len(df), {k: v["rows"] for k, v in counts.items()},
             "is the source's own test split" if from_source else "drawn at random")


if __name__ == "__main__":
    run_cli(main)
