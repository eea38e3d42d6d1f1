"""Split: train / validation / test tables that stay put as the data grows, stratified, capped.

In:  <data>/reviews.parquet (id, text, label, source_split) and <data>/meta.json from ingest;
     params `split`.
Out: <out>/train.parquet, <out>/val.parquet, <out>/test.parquet (id, text, label), <out>/meta.json
     (ingest's, handed on), <out>/assignment.json (the seed and key the rows were assigned by);
     <metrics> (rows per split and class, rows left out of each split and why, where the test
     split came from).

Each row's home split is a pure function of its text and `split.seed`: the row's match key
(bertpipe.text.match_key, the key ingest dedups on and lineage hashes) hashed with blake2b keyed
by the seed gives a number u in [0, 1); u < test_fraction is test, below test_fraction +
val_fraction validation, else train. When the source has its own test split and
`split.keep_source_test` is true, that is the test split, and the source's other rows go to
validation (u < val_fraction) or train. Appending or removing rows therefore never moves a row
to another split, and a champion's training rows never become a later model's test rows.

Within its home split, each class takes its share of the split (largest remainders; the shares
of the rows the split is drawn from), capped by split.max_<split>: a class takes its rows in the
order of their hash, so a cap draws the same rows again when the data grows, and never a row of
another split. A split drawn whole can hold a few more rows of a class than its share; those are
left out and counted in the metrics (`left_out`), as are the rows a cap leaves out. Every split
keeps at least one row of every class, or the stage stops naming the class and the cap. Rows are
written in hash order: the output depends on the rows and the seed alone, not on their order.

Run: python -m stages.split --data data/ingested --out data/split --metrics metrics/split.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertpipe.artifacts import atomic_dir, write_json
from bertpipe.config import SplitParams
from bertpipe.contracts import ASSIGNMENT_FILE, DatasetMeta
from bertpipe.errors import DataError
from bertpipe.logs import run_cli
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.tables import ROW_GROUP_ROWS, ParquetFrameWriter
from bertpipe.text import key_digests, key_hashes

log = logging.getLogger("split")
SPLITS = ("train", "val", "test")
OUT_COLUMNS = ["id", "text", "label"]
OUT_SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.large_string()), ("label", pa.int64())])
KEY = "blake2b-64 of bertpipe.text.match_key, keyed by 'split.seed=<seed>'"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="ingest output folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for per-split class counts")
    return p.parse_args(argv)


def read_rows(path: str, seed: int) -> tuple[pd.DataFrame, pa.Table, int]:
    """The columns the split is drawn on (label, source_split, hash: the seeded key hash; index =
    row position) as a frame, the output columns as an Arrow table, and how many texts repeat an
    earlier one's match key (ingest keeps one row per key, so 0)."""
    table = pq.read_table(path, columns=OUT_COLUMNS)
    texts = table.column("text")
    salt = f"split.seed={seed}".encode()
    hashes, digests = [], []
    for i in range(0, len(texts), ROW_GROUP_ROWS):  # a slice of texts as Python strings at a time
        piece = texts.slice(i, ROW_GROUP_ROWS).to_pylist()
        hashes.append(key_hashes(piece, salt))
        digests.append(key_digests(piece))
    join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # noqa: E731
    digests = join(digests, "S16")
    df = pd.DataFrame({"label": table.column("label").to_numpy(), "source_split": "train",
                       "hash": join(hashes, np.uint64)})
    if "source_split" in pq.read_schema(path).names:  # else a source without splits of its own
        splits = pq.read_table(path, columns=["source_split"], read_dictionary=["source_split"])
        df["source_split"] = splits.column("source_split").to_pandas()  # categorical: a code a row
    return df, table, len(digests) - len(np.unique(digests))


def check_input(df: pd.DataFrame, repeated: int, names: list[str], path: str) -> None:
    if repeated:
        raise DataError(f"{path}: {repeated} texts repeat the match key of another row (bertpipe.text.match_key), "
                        "so one text could land in two splits; ingest keeps one row per key: rerun ingest "
                        "(dvc repro ingest) rather than editing its output")
    counts = df["label"].value_counts().sort_index()
    if counts.min() < 3:
        raise DataError(f"{path}: class {names[counts.idxmin()]!r} has only {counts.min()} rows; train, validation "
                        "and test each need one: add rows, or leave the class out of ingest.label_names")


def home_splits(df: pd.DataFrame, p: SplitParams) -> tuple[pd.Series, bool]:
    """Each row's home split, from its seeded hash alone (and the source's own test split when it
    is kept), and whether test is the source's own test split."""
    u = df["hash"].to_numpy(np.uint64).astype(np.float64) / 2.0**64  # in [0, 1)
    source_test = (df["source_split"] == "test").to_numpy()
    use_source_test = p.keep_source_test and bool(source_test.any())
    if use_source_test:
        home = np.where(source_test, "test", np.where(u < p.val_fraction, "val", "train"))
    else:
        home = np.where(u < p.test_fraction, "test", np.where(u < p.test_fraction + p.val_fraction, "val", "train"))
    return pd.Series(home, index=df.index), use_source_test


def quotas(shares: pd.Series, n: int) -> pd.Series:
    """Rows per class for a split of n rows: each class its share, the odd rows to the largest remainders."""
    exact = shares * n
    quota = np.floor(exact).astype(int)
    quota[(exact - quota).sort_values(ascending=False, kind="stable").index[: n - quota.sum()]] += 1
    return quota


def drawn(rows: pd.DataFrame, shares: pd.Series, cap: int | None, name: str, names: list[str]) -> pd.DataFrame:
    """The rows of one home split that the split takes: each class its share of the split (of at
    most cap rows), its rows taken in hash order."""
    available = rows["label"].value_counts().reindex(shares.index, fill_value=0)
    n = min(len(rows), cap if cap is not None else len(rows))
    present = shares > 0
    if present.any():  # the largest split in which every class has its share
        n = min(n, int(np.floor((available[present] / shares[present]).min())))
    while n > 0 and (quotas(shares, n) > available).any():  # a remainder rounded up past what a class has
        n -= 1
    quota = quotas(shares, max(n, 0))
    cap_words = f"split.max_{name}={cap}" if cap is not None else f"no cap (split.max_{name}=null)"
    for label, k in quota.items():
        if k < 1:
            raise DataError(
                f"split {name}: class {names[label]!r} would have no row ({available[label]} of its rows are in "
                f"the {name} split, {cap_words}, its share {shares[label]:.3g}): raise split.max_{name}, "
                f"add rows of class {names[label]!r}, or change split.val_fraction / split.test_fraction")
    ordered = rows.sort_values("hash", kind="stable")
    rank = ordered.groupby("label", sort=False).cumcount()
    taken = ordered[rank.to_numpy() < ordered["label"].map(quota).to_numpy()]
    return taken  # in hash order


def split_table(df: pd.DataFrame, p: SplitParams,
                names: list[str]) -> tuple[dict[str, pd.DataFrame], bool, pd.Series]:
    """The three splits (df's rows, in the order they are written), whether test is the source's
    own test split, and each row's home split."""
    home, from_source = home_splits(df, p)
    caps = {"train": p.max_train, "val": p.max_val, "test": p.max_test}
    labels = sorted(df["label"].unique())
    if from_source:  # test keeps the source test's class mix; train and val the other rows'
        pools = {"train": home != "test", "val": home != "test", "test": home == "test"}
    else:
        pools = {name: home == home for name in SPLITS}
    parts = {}
    for name in SPLITS:
        shares = df.loc[pools[name], "label"].value_counts(normalize=True).reindex(labels, fill_value=0.0)
        parts[name] = drawn(df[home == name], shares, caps[name], name, names)
    return parts, from_source, home


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


def class_counts(parts: dict[str, pd.DataFrame], home: dict[str, int], names: list[str]) -> dict:
    counts = {
        name: {"rows": len(part), **{names[i]: int((part["label"] == i).sum()) for i in range(len(names))}}
        for name, part in parts.items()
    }
    # Rows whose home is a split that did not take them: its cap, or its class share.
    counts["left_out"] = {name: home[name] - len(part) for name, part in parts.items()}
    return counts


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(SplitParams, "split", args.params)
    path = f"{args.data}/reviews.parquet"
    df, table, repeated = read_rows(path, params.seed)
    dataset = DatasetMeta.read(args.data)
    names = dataset.labels
    check_input(df, repeated, names, path)

    parts, from_source, home = split_table(df, params, names)
    if shared_rows(parts):  # cannot happen: one home split a row; a guard for later changes
        raise RuntimeError("a text landed in two splits; this is a bug in stages/split.py")
    with atomic_dir(args.out) as out:
        for name, part in parts.items():
            write_rows(table, part.index.to_numpy(), out / f"{name}.parquet")
        dataset.write(out)  # handed on to tokenize: class names and normalisation
        write_json({"seed": params.seed, "key": KEY}, out / ASSIGNMENT_FILE)  # for lineage and the gate
    counts = class_counts(parts, home.value_counts().reindex(list(SPLITS), fill_value=0).to_dict(), names)
    write_json({**counts, "test_is_source_test_split": from_source}, args.metrics)
    log.info("split %d rows: %s (test %s; left out by caps and class shares: %s)", len(df),
             {k: v["rows"] for k, v in counts.items() if k in SPLITS},
             "is the source's own test split" if from_source else "drawn by hash", counts["left_out"])


if __name__ == "__main__":
    run_cli(main)
