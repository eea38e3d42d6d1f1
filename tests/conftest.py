"""Shared fixtures: a tiny randomly initialised BERT, a tiny labelled dataset, params files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bertpipe.params import load_yaml
from bertpipe.artifacts import write_parquet
from bertpipe.contracts import DatasetMeta

from bertpipe.embedded import embedded_model_dir

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["a wonderful, moving film with great acting", "loved it, brilliant and touching story",
            "superb direction and a delightful cast", "an excellent movie, I would watch it again"]
NEGATIVE = ["a dull, boring film with terrible acting", "hated it, awful and tedious plot",
            "poor direction and a wooden cast", "a bad movie, a complete waste of time"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT of width 32, randomly initialised, with the real MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6")).save_pretrained(folder)
    return folder


def tiny_reviews(n: int = 48) -> pd.DataFrame:
    """n distinct short reviews, half positive (label 1), half negative (label 0)."""
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        base = (POSITIVE if pos else NEGATIVE)[(i // 2) % 4]
        rows.append({"id": i, "text": f"{base} (review number {i}){' and more words' * (i % 7)}", "label": int(pos)})
    return pd.DataFrame(rows)


def write_params(path: Path, **sections) -> Path:
    """params.yaml from the project's defaults with the given sections' keys overridden."""
    params = load_yaml((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def tiny_train_params(model: Path) -> dict:
    return {
        "tokenize": {"model": str(model), "max_length": 64, "head_tokens": 16},
        "train": {"epochs": 2, "min_steps": 0, "batch_size": 8, "learning_rate": 1e-3, "eval_every_steps": 3,
                  "save_every_steps": 2, "precision": "fp32", "group_batches": 2},
        "split": {"max_train": 64, "max_val": 32, "max_test": 32},
    }


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri


def copy_project(dest: Path) -> Path:
    """The tracked project files, for tests that run DVC in a repo of their own."""
    for name in ("stages", "bertpipe", "dvc.yaml", "params.yaml", "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def make_ingested(folder: Path, n: int = 48) -> None:
    """What ingest would write for tiny_reviews(n)."""
    write_parquet(tiny_reviews(n), folder / "reviews.parquet")
    DatasetMeta(labels=["negative", "positive"], normalization={}, source="csv").write(folder)


@pytest.fixture
def tokenized(tmp_path, tiny_bert) -> Path:
    """Ingested, split and tokenized tiny data in tmp_path; returns the params file."""
    return prepare_tokenized(tmp_path, tiny_bert, n=96)


def prepare_tokenized(tmp_path: Path, model: Path, n: int) -> Path:
    """Run ingest's stand-in, split and tokenize on n tiny reviews; returns the params file."""
    from stages import split, tokenize

    make_ingested(tmp_path / "ing", n=n)
    params = write_params(tmp_path / "p.yaml", **tiny_train_params(model))
    split.main(["--params", str(params), "--data", str(tmp_path / "ing"), "--out", str(tmp_path / "sp"),
                "--metrics", str(tmp_path / "s.json")])
    tokenize.main(["--params", str(params), "--data", str(tmp_path / "sp"), "--out", str(tmp_path / "tok"),
                   "--metrics", str(tmp_path / "t.json")])
    return params


def train_args(tmp_path: Path, params: Path, tag: str = "") -> list[str]:
    """Arguments of the train stage on the `tokenized` fixture; outputs named with the tag."""
    out = {name: str(tmp_path / f"{tag}{name}") for name in ("best", "resume", "run.json", "train.json", "curve.csv")}
    return ["--params", str(params), "--data", str(tmp_path / "tok"),
            "--out", out["best"], "--state", out["resume"], "--run-file", out["run.json"],
            "--metrics", out["train.json"], "--curve", out["curve.csv"]]
