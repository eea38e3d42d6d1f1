"""Small, imbalanced data: class weights, the step floor, the `auto` train params, and the
majority-class baseline."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from bertpipe.artifacts import write_parquet
from bertpipe.baseline import majority_probs
from bertpipe.config import TrainParams
from bertpipe.contracts import DatasetMeta
from bertpipe.metrics import summary_metrics
from bertpipe.params import ParamsError, load_section
from stages import evaluate, split, tokenize, train
from stages.evaluate import baseline_metrics, baseline_warnings
from stages.train import EVALUATIONS_PER_RUN, class_weights, resolve_auto, total_steps_for
from tests.conftest import write_params
from tools.imbalanced_data import THREE_CLASS_LABELS as LABELS
from tools.imbalanced_data import three_class_reviews


def test_balanced_weights_count_each_class_alike():
    weights = class_weights(np.array([0, 0, 0, 0, 0, 0, 1, 1, 2]), 3, "balanced")
    assert weights.tolist() == pytest.approx([9 / 18, 9 / 6, 9 / 3])
    # Each class's total weight is the same: rows of the class x its weight.
    assert (weights * torch.tensor([6.0, 2.0, 1.0])).tolist() == pytest.approx([3.0, 3.0, 3.0])
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_min_steps_is_a_floor_not_a_cap(tmp_path):
    p = load_section(TrainParams, "train", write_params(tmp_path / "p.yaml", train={"epochs": 1, "min_steps": 200}))
    assert total_steps_for(38, p) == 200  # 300 rows in batches of 8
    assert total_steps_for(500, p) == 500  # the default 4,000 rows: unchanged


def test_auto_params_follow_the_class_counts_and_the_step_count(tmp_path):
    p = load_section(TrainParams, "train", write_params(tmp_path / "p.yaml"))
    assert (p.class_weights, p.metric, p.eval_every_steps) == ("auto", "auto", "auto")  # params.yaml's defaults
    rare = resolve_auto(p, np.array([0] * 130 + [1] * 130 + [2] * 20), 3, 200)
    assert (rare.class_weights, rare.metric, rare.eval_every_steps) == ("balanced", "f1_macro", 50)
    # The default IMDB training rows (1,997 negative, 2,003 positive) and their 500 steps: plain
    # cross-entropy and accuracy as before, evaluations at 125, 250, 375, 500 (before: 250, 500).
    imdb = resolve_auto(p, np.array([0] * 1997 + [1] * 2003), 2, 500)
    assert (imdb.class_weights, imdb.metric, imdb.eval_every_steps) == ("none", "accuracy", 125)
    assert 500 // imdb.eval_every_steps == EVALUATIONS_PER_RUN
    assert resolve_auto(p, np.array([0, 1] * 5), 2, 3).eval_every_steps == 1
    assert resolve_auto(p, np.array([0] * 10), 2, 8).class_weights == "balanced"  # a class with no row
    # A value given is kept.
    given = p.model_copy(update={"class_weights": "none", "metric": "roc_auc", "eval_every_steps": 7})
    kept = resolve_auto(given, np.array([0] * 90 + [1] * 10), 2, 200)
    assert (kept.class_weights, kept.metric, kept.eval_every_steps) == ("none", "roc_auc", 7)


@pytest.mark.parametrize("values, match", [
    ({"min_steps": -1}, r"train\.min_steps=-1"),
    ({"class_weights": "inverse"}, r"train\.class_weights.*inverse.*'auto', 'none', 'balanced'"),
    ({"metric": "f1"}, r"train\.metric='f1'.*'auto', 'accuracy'"),
    ({"eval_every_steps": 0}, r"train\.eval_every_steps=0 .*whole number of steps >= 1, or auto"),
    ({"eval_every_steps": "250"}, r"train\.eval_every_steps='250' .*or auto"),
    ({"eval_every_steps": "Auto"}, r"train\.eval_every_steps='Auto'"),
])
def test_bad_small_data_params_fail_at_start(tmp_path, values, match):
    with pytest.raises(ParamsError, match=match):
        load_section(TrainParams, "train", write_params(tmp_path / "p.yaml", train=values))


def test_majority_baseline_predicts_the_most_frequent_training_class():
    probs = majority_probs(np.array([1, 1, 1, 0, 2]), 4, 3)
    assert probs.shape == (4, 3) and probs[0].tolist() == pytest.approx([0.2, 0.6, 0.2])
    metrics = summary_metrics(np.array([1, 1, 0, 2]), probs)
    assert metrics["accuracy"] == 0.5 and metrics["f1_macro"] == pytest.approx((2 / 3) / 3)


def test_warns_for_each_baseline_macro_f1_does_not_beat():
    model = {"accuracy": 0.80, "f1_macro": 0.30}
    bases = {"tfidf_logreg": {"accuracy": 0.85, "f1_macro": 0.60}, "majority": {"accuracy": 0.80, "f1_macro": 0.30}}
    warnings = baseline_warnings(model, bases)
    assert len(warnings) == 2 and "TF-IDF" in warnings[0] and "majority-class" in warnings[1]
    assert "macro F1 0.3000" in warnings[1] and "train.class_weights and train.metric at auto" in warnings[1]
    assert baseline_warnings({"accuracy": 0.9, "f1_macro": 0.7}, bases) == []
    gains = baseline_metrics(model, bases)
    assert gains["baseline_majority_f1_macro"] == 0.30 and gains["f1_macro_gain_over_baseline"] == pytest.approx(-0.3)
    assert gains["accuracy_gain_over_majority"] == pytest.approx(0.0)


def run_pipeline(tmp_path: Path, model: Path, weights: str) -> dict:
    """split -> tokenize -> train -> evaluate on 400 three-class reviews, 8% of them 'mixed'."""
    ingested = tmp_path / "ing"
    write_parquet(three_class_reviews(400, 0.08), ingested / "reviews.parquet")
    DatasetMeta(labels=LABELS, normalization={}, source="csv").write(ingested)
    params = write_params(
        tmp_path / f"{weights}.yaml", split={"max_train": None, "max_val": None, "max_test": None},
        tokenize={"model": str(model), "max_length": 32, "head_tokens": 8},
        train={"epochs": 1, "min_steps": 120, "class_weights": weights, "batch_size": 16,
               "learning_rate": 2e-3, "warmup_fraction": 0.05, "eval_every_steps": 40, "save_every_steps": 1000,
               "metric": "f1_macro", "precision": "fp32"})
    out = tmp_path / weights
    split.main(["--params", str(params), "--data", str(ingested), "--out", str(out / "sp"),
                "--metrics", str(out / "s.json")])
    tokenize.main(["--params", str(params), "--data", str(out / "sp"), "--out", str(out / "tok"),
                   "--metrics", str(out / "t.json")])
    train.main(["--params", str(params), "--data", str(out / "tok"), "--split", str(out / "sp"),
                "--out", str(out / "best"), "--state", str(out / "resume"), "--run-file", str(out / "run.json"),
                "--metrics", str(out / "train.json"), "--details", str(out / "train-details.json"),
                "--curve", str(out / "curve.csv")])
    evaluate.main(["--params", str(params), "--model", str(out / "best"), "--tokens", str(out / "tok"),
                   "--split", str(out / "sp"), "--run-file", str(out / "run.json"), "--curve", str(out / "curve.csv"),
                   "--metrics", str(out / "test.json"), "--details", str(out / "test-details.json"),
                   "--plots", str(out / "plots"), "--errors", str(out / "errors.csv")])
    # The details files: the headline ones (what dvc metrics show prints) hold a few numbers only.
    return {"train": json.loads((out / "train-details.json").read_text()),
            "test": json.loads((out / "test-details.json").read_text()),
            "run_id": json.loads((out / "run.json").read_text())["run_id"]}


def test_balanced_weights_give_the_rare_class_recall(tmp_path, tiny_bert, mlflow_uri, caplog):
    # Measured once with class_weights=none on the same data: 'mixed' recall 0.0, macro F1 0.64.
    result = run_pipeline(tmp_path, tiny_bert, "balanced")
    report = result["test"]
    # 280 training rows in batches of 16 are 18 steps an epoch; the floor makes it 120.
    assert result["train"]["total_steps"] == 120
    rare = report["per_class"]["mixed"]
    assert rare["support"] >= 4 and rare["recall"] > 0
    assert report["baseline_majority_accuracy"] == pytest.approx(report["baseline_majority"]["accuracy"])
    assert report["baseline_majority_f1_macro"] < 0.25  # always 'negative' or 'positive': one class of three
    assert report["f1_macro_gain_over_majority"] == pytest.approx(
        report["f1_macro"] - report["baseline_majority_f1_macro"])
    # The keywords make TF-IDF perfect here (macro F1 1.0), so evaluate warns about that baseline.
    assert "does not beat the TF-IDF + logistic regression baseline" in caplog.text
    logged = mlflow.MlflowClient(mlflow_uri).get_run(result["run_id"]).data
    assert logged.params["class_weights"] == "balanced" and logged.params["min_steps"] == "120"
    assert logged.metrics["test/baseline_majority_f1_macro"] == pytest.approx(report["baseline_majority_f1_macro"])
