"""bench/recipe_search.py: the GPU search trains on exactly the ids the tokenize stage would
write, and one recipe runs end to end (here on the CPU, with a tiny BERT)."""

import importlib.util

import numpy as np
import pytest
from transformers import AutoTokenizer

from bertpipe.artifacts import write_parquet
from bertpipe.sources import movie_reviews
from bertpipe.tokens import Encoder
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("recipe_search", ROOT / "bench" / "recipe_search.py")
recipe_search = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe_search)
ROWS = {"train": 24, "val": 8, "test": 8}


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_bert):
    reviews = movie_reviews("imdb")
    reviews = reviews.iloc[np.argsort(-reviews["text"].str.len().to_numpy())[:40]]  # long: truncation bites
    split, out = tmp_path_factory.mktemp("split"), tmp_path_factory.mktemp("pack")
    start = 0
    for name, n in ROWS.items():
        write_parquet(reviews.iloc[start : start + n][["text", "label"]].reset_index(drop=True),
                      split / f"{name}.parquet")
        start += n
    recipe_search.pack(split, str(tiny_bert), out)
    return split, out


@pytest.mark.parametrize("max_length,head_tokens", [(256, 64), (384, 128)])
def test_rows_are_what_the_tokenize_stage_writes(packed, tiny_bert, max_length, head_tokens):
    import pandas as pd

    split, out = packed
    tokens = dict(np.load(out / "tokens.npz"))
    encoder = Encoder(AutoTokenizer.from_pretrained(tiny_bert), max_length, "head_tail", head_tokens)
    for name in ROWS:
        texts = pd.read_parquet(split / f"{name}.parquet")["text"].tolist()
        stage_rows = [row.tolist() for row in encoder.encode(texts).rows()]
        search = recipe_search.Split(tokens, name, max_length, head_tokens)
        assert search.rows == stage_rows
        assert max(search.lengths) == max_length  # the long reviews were cut


def test_one_recipe_trains_and_is_tested_at_its_best(packed):
    import torch

    _, out = packed
    recipe = dict(name="tiny", max_length=128, head_tokens=32, epochs=2, lr=5e-5, batch_size=8, seed=42)
    result = recipe_search.train_one(dict(np.load(out / "tokens.npz")), out, recipe, torch.device("cpu"))
    assert result["steps"] == 6  # 24 reviews in batches of 8, two epochs
    assert [step for step, _ in result["curve"]] == [6]  # evaluated every 500 steps and at the end
    assert result["best_step"] == 6 and 0 <= result["test"] <= 1 and result["test_loss"] > 0
