"""The split stage: a row's split follows from its text and the seed alone, so splits stay put as
the data grows; class shares hold within one row; caps draw in a stable order; the source's own
test split is kept; no text lands in two splits; the output's bytes depend on the rows alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bertpipe.artifacts import write_parquet
from bertpipe.contracts import DatasetMeta
from stages import split
from tests.conftest import write_params

NAMES = ["negative", "positive"]
SPLITS = ("train", "val", "test")


def reviews(n: int, start: int = 0, test_rows: int = 0, positive_share: float = 0.5) -> pd.DataFrame:
    """n distinct texts with ids start...; the last test_rows come from the source's own test split."""
    ids = range(start, start + n)
    return pd.DataFrame({"id": ids, "text": [f"review {i}" for i in ids],
                         "label": [int((i * positive_share) % 1 < positive_share) for i in ids],
                         "source_split": ["train"] * (n - test_rows) + ["test"] * test_rows})


def ingested(folder, n: int = 0, test_rows: int = 0, positive_share: float = 0.5,
             df: pd.DataFrame | None = None) -> pd.DataFrame:
    df = reviews(n, test_rows=test_rows, positive_share=positive_share) if df is None else df
    write_parquet(df, folder / "reviews.parquet")
    DatasetMeta(labels=NAMES, normalization={}, source="csv").write(folder)
    return df


def run(tmp_path, **split_values) -> tuple[dict[str, pd.DataFrame], dict]:
    values = {"max_train": None, "max_val": None, "max_test": None, **split_values}
    params = write_params(tmp_path / "p.yaml", split=values)
    split.main(["--params", str(params), "--data", str(tmp_path / "ing"), "--out", str(tmp_path / "sp"),
                "--metrics", str(tmp_path / "m.json")])
    parts = {n: pd.read_parquet(tmp_path / f"sp/{n}.parquet") for n in SPLITS}
    return parts, json.loads((tmp_path / "m.json").read_text())


def where(parts: dict[str, pd.DataFrame]) -> dict[int, str]:
    return {i: name for name, part in parts.items() for i in part["id"]}


def assert_stratified(parts: dict[str, pd.DataFrame], shares: dict[str, np.ndarray]) -> None:
    """Each class's rows in each split within one row of its share of the split."""
    for name, part in parts.items():
        counts = np.bincount(part["label"], minlength=2)
        assert np.abs(counts - shares[name] * len(part)).max() < 1, (name, counts, shares[name])


def test_source_test_split_is_kept_when_params_say_so(tmp_path):
    df = ingested(tmp_path / "ing", n=3000, test_rows=1000)
    parts, counts = run(tmp_path, keep_source_test=True, val_fraction=0.1)
    assert sorted(parts["test"]["id"]) == sorted(df["id"][df["source_split"] == "test"])
    assert abs(len(parts["val"]) - 200) < 60  # 10% of the source's 2,000 train rows, by hash (sd 13)
    assert counts["test_is_source_test_split"] is True
    assert list(parts["test"].columns) == ["id", "text", "label"]

    pooled, counts = run(tmp_path, keep_source_test=False, val_fraction=0.1, test_fraction=0.2)
    assert abs(len(pooled["test"]) - 600) < 75 and abs(len(pooled["val"]) - 300) < 55
    assert counts["test_is_source_test_split"] is False
    assert set(pooled["test"]["id"]) != set(parts["test"]["id"])


def test_every_row_lands_in_one_split_or_is_counted_as_left_out(tmp_path):
    df = ingested(tmp_path / "ing", n=2000, test_rows=500, positive_share=0.3)
    for keep in (True, False):
        parts, counts = run(tmp_path, keep_source_test=keep)
        texts = [set(p["text"]) for p in parts.values()]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
        assert sum(len(p) for p in parts.values()) + sum(counts["left_out"].values()) == len(df)
        assert sum(counts["left_out"].values()) < 60  # a few rows past a class's share, no more


def test_class_shares_hold_within_one_row(tmp_path):
    df = ingested(tmp_path / "ing", n=3000, positive_share=0.2)
    parts, _ = run(tmp_path, keep_source_test=False)
    share = np.bincount(df["label"]) / len(df)
    assert_stratified(parts, dict.fromkeys(SPLITS, share))
    capped, _ = run(tmp_path, keep_source_test=False, max_train=101, max_val=33, max_test=50)
    assert [len(capped[n]) for n in SPLITS] == [101, 33, 50]
    assert_stratified(capped, dict.fromkeys(SPLITS, share))


def test_appended_or_removed_rows_never_move_a_row_to_another_split(tmp_path):
    """3,000 rows, then 600 more appended, then 500 of the first removed: every row that stays
    keeps its split, capped or not; a cap never draws a row of another split."""
    base = reviews(3000, positive_share=0.4)
    grown = pd.concat([base, reviews(600, start=3000, positive_share=0.4)], ignore_index=True)
    shrunk = grown.iloc[500:]
    for caps in ({}, {"max_train": 1500, "max_val": 150, "max_test": 400}):
        seen: list[dict[int, str]] = []
        homes: list[dict[int, str]] = []
        for df in (base, grown, shrunk):
            ingested(tmp_path / "ing", df=df)
            parts, _ = run(tmp_path, keep_source_test=False, **caps)
            seen.append(where(parts))
            uncapped, _ = run(tmp_path, keep_source_test=False)
            homes.append(where(uncapped))
        for before, after in zip(seen, seen[1:], strict=False):
            moved = [i for i in set(before) & set(after) if before[i] != after[i]]
            assert moved == []
        for drawn, home in zip(seen, homes, strict=True):  # capped rows come from their own split
            assert all(home.get(i, name) == name for i, name in drawn.items())
    # The cap keeps most of the rows it drew before: a row leaves only for a new row ranked before it.
    kept = len(set(seen[0]) & set(seen[1]))
    assert kept > 0.75 * len(seen[0])


def test_output_depends_on_the_rows_and_seed_alone(tmp_path):
    df = ingested(tmp_path / "ing", n=800)
    run(tmp_path, max_train=300)
    first = {n: (tmp_path / f"sp/{n}.parquet").read_bytes() for n in SPLITS}
    ingested(tmp_path / "ing", df=df.sample(frac=1, random_state=3))  # the same rows in another order
    run(tmp_path, max_train=300)
    assert {n: (tmp_path / f"sp/{n}.parquet").read_bytes() for n in SPLITS} == first
    assert json.loads((tmp_path / "sp/assignment.json").read_text())["seed"] == 42
    other, _ = run(tmp_path, max_train=300, seed=7)  # a new seed is a new draw
    assert where(other) != where({n: pd.read_parquet(pd.io.common.BytesIO(b)) for n, b in first.items()})


@pytest.mark.parametrize("variant", ["REVIEW 3", "review   3", "ｒｅｖｉｅｗ 3"])
def test_texts_with_one_match_key_in_the_input_fail(tmp_path, variant):
    df = reviews(50)
    df.loc[4, "text"] = variant  # case, whitespace, full-width (NFKC) variants of "review 3"
    ingested(tmp_path / "ing", df=df)
    with pytest.raises(ValueError, match=r"reviews\.parquet: 1 texts repeat the match key of another row .*"
                                         r"rerun ingest"):
        run(tmp_path)


@pytest.mark.parametrize("n,values,match", [
    (400, {"max_val": 1}, r"split val: class '(negative|positive)' would have no row .*split.max_val=1.*"
                          r"raise split.max_val"),
    (4, {}, r"class 'negative' has only 2 rows; train, validation and test each need one"),
    (40, {"val_fraction": 0.001, "test_fraction": 0.5}, r"split val: class '\w+' would have no row \(0 of its rows "
                                                         r"are in the val split, no cap"),
])
def test_splits_too_small_for_the_classes_fail_with_the_fix(tmp_path, n, values, match):
    ingested(tmp_path / "ing", n=n)
    with pytest.raises(ValueError, match=match):
        run(tmp_path, keep_source_test=False, **values)
