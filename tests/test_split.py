"""The split stage: the source's own test split, no text in two splits, caps that keep class balance."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bertpipe.artifacts import write_parquet
from bertpipe.contracts import DatasetMeta
from stages import split
from tests.conftest import write_params

NAMES = ["negative", "positive"]


def ingested(folder, n: int, test_rows: int = 0, positive_share: float = 0.5) -> pd.DataFrame:
    """n distinct texts; the last test_rows come from the source's own test split."""
    df = pd.DataFrame({"id": range(n), "text": [f"review {i}" for i in range(n)],
                       "label": [int((i * positive_share) % 1 < positive_share) for i in range(n)],
                       "source_split": ["train"] * (n - test_rows) + ["test"] * test_rows})
    write_parquet(df, folder / "reviews.parquet")
    DatasetMeta(labels=NAMES, normalization={}, source="csv").write(folder)
    return df


def run(tmp_path, **split_values) -> tuple[dict[str, pd.DataFrame], dict]:
    values = {"max_train": None, "max_val": None, "max_test": None, **split_values}
    params = write_params(tmp_path / "p.yaml", split=values)
    split.main(["--params", str(params), "--data", str(tmp_path / "ing"), "--out", str(tmp_path / "sp"),
                "--metrics", str(tmp_path / "m.json")])
    parts = {n: pd.read_parquet(tmp_path / f"sp/{n}.parquet") for n in ("train", "val", "test")}
    return parts, json.loads((tmp_path / "m.json").read_text())


def test_source_test_split_is_kept_when_params_say_so(tmp_path):
    df = ingested(tmp_path / "ing", n=300, test_rows=100)
    parts, counts = run(tmp_path, keep_source_test=True, val_fraction=0.1)
    assert sorted(parts["test"]["id"]) == sorted(df["id"][df["source_split"] == "test"])
    assert (len(parts["train"]), len(parts["val"])) == (180, 20)  # val: 10% of the source's train rows
    assert counts["test_is_source_test_split"] is True
    assert list(parts["test"].columns) == ["id", "text", "label"]

    pooled, counts = run(tmp_path, keep_source_test=False, val_fraction=0.1, test_fraction=0.2)
    assert [len(pooled[n]) for n in ("train", "val", "test")] == [210, 30, 60]
    assert counts["test_is_source_test_split"] is False
    assert set(pooled["test"]["id"]) != set(parts["test"]["id"])


def test_no_text_lands_in_two_splits_and_every_row_lands_once(tmp_path):
    df = ingested(tmp_path / "ing", n=500, test_rows=120)
    for keep in (True, False):
        parts, _ = run(tmp_path, keep_source_test=keep)
        texts = [set(p["text"]) for p in parts.values()]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
        assert sorted(pd.concat(parts.values())["id"]) == sorted(df["id"])


def test_caps_keep_class_balance(tmp_path):
    ingested(tmp_path / "ing", n=1000, positive_share=0.25)
    parts, counts = run(tmp_path, max_train=100, max_val=21, max_test=40)
    assert counts["train"] == {"rows": 100, "negative": 75, "positive": 25}
    assert counts["test"] == {"rows": 40, "negative": 30, "positive": 10}
    assert counts["val"]["rows"] == 21 and counts["val"]["positive"] in (5, 6)
    again, _ = run(tmp_path, max_train=100, max_val=21, max_test=40)
    assert again["train"].equals(parts["train"])  # seeded
    other, _ = run(tmp_path, max_train=100, max_val=21, max_test=40, seed=7)
    assert not other["train"]["id"].equals(parts["train"]["id"])


def test_repeated_texts_in_the_input_fail(tmp_path):
    df = ingested(tmp_path / "ing", n=50)
    df.loc[3, "text"] = df.loc[4, "text"]
    write_parquet(df, tmp_path / "ing/reviews.parquet")
    with pytest.raises(ValueError, match=r"reviews\.parquet: 1 texts occur more than once, so they could land in two "
                                         r"splits; .*rerun ingest"):
        run(tmp_path)


@pytest.mark.parametrize("n,values,match", [
    (100, {"max_val": 1}, r"split.max_val=1: fewer rows than the 2 classes; set it to at least 2, or null"),
    (4, {}, r"class 'negative' has only 2 rows; a stratified split needs at least 3 per class"),
    (20, {"val_fraction": 0.02, "test_fraction": 0.5}, r"a share of 0\.04 of 10 rows cannot give both parts all "
                                                        r"2 classes; .*split.val_fraction"),
])
def test_splits_too_small_for_the_classes_fail_with_the_fix(tmp_path, n, values, match):
    ingested(tmp_path / "ing", n=n)
    with pytest.raises(ValueError, match=match):
        run(tmp_path, **values)
