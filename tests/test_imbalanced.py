"""Small, imbalanced data: class weights, the step floor, the `auto` train params, and the
majority-class baseline."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, BertConfig, RobertaConfig

from bertpipe.artifacts import read_parquet, read_tokenized, write_parquet
from bertpipe.baseline import majority_probs
from bertpipe.batching import collate
from bertpipe.config import TrainParams
from bertpipe.contracts import DatasetMeta
from bertpipe.inference import Classifier
from bertpipe.metrics import summary_metrics
from bertpipe.modeling import frozen_head_fits
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
    rare = resolve_auto(p, np.array([0] * 130 + [1] * 130 + [2] * 20), 3, 200, linear_head=True)
    assert (rare.class_weights, rare.metric, rare.eval_every_steps) == ("balanced", "f1_macro", 50)
    assert rare.encoder == "frozen"  # 20 rare rows: no fine-tuning, the frozen-encoder head
    assert resolve_auto(p, np.array([0] * 130 + [1] * 130 + [2] * 20), 3, 200, linear_head=False).encoder == "finetune"
    assert resolve_auto(p, np.array([0] * 900 + [1] * 100), 2, 200, linear_head=True).encoder == "finetune"
    assert resolve_auto(p, np.array([0] * 40 + [1] * 40), 2, 200, linear_head=True).encoder == "finetune"  # balanced
    # The default IMDB training rows (1,997 negative, 2,003 positive) and their 500 steps: plain
    # cross-entropy and accuracy as before, evaluations at 125, 250, 375, 500 (before: 250, 500).
    imdb = resolve_auto(p, np.array([0] * 1997 + [1] * 2003), 2, 500, linear_head=True)
    assert (imdb.class_weights, imdb.metric, imdb.eval_every_steps, imdb.encoder) == ("none", "accuracy", 125,
                                                                                      "finetune")
    assert 500 // imdb.eval_every_steps == EVALUATIONS_PER_RUN
    assert resolve_auto(p, np.array([0, 1] * 5), 2, 3, linear_head=True).eval_every_steps == 1
    assert resolve_auto(p, np.array([0] * 10), 2, 8, linear_head=True).class_weights == "balanced"  # a class, no row
    # A value given is kept.
    given = p.model_copy(update={"class_weights": "none", "metric": "roc_auc", "eval_every_steps": 7,
                                 "encoder": "frozen"})
    kept = resolve_auto(given, np.array([0] * 90 + [1] * 10), 2, 200, linear_head=True)
    assert (kept.class_weights, kept.metric, kept.eval_every_steps, kept.encoder) == ("none", "roc_auc", 7, "frozen")


@pytest.mark.parametrize("values, match", [
    ({"min_steps": -1}, r"train\.min_steps=-1"),
    ({"class_weights": "inverse"}, r"train\.class_weights.*inverse.*'auto', 'none', 'balanced'"),
    ({"metric": "f1"}, r"train\.metric='f1'.*'auto', 'accuracy'"),
    ({"eval_every_steps": 0}, r"train\.eval_every_steps=0 .*whole number of steps >= 1, or auto"),
    ({"eval_every_steps": "250"}, r"train\.eval_every_steps='250' .*or auto"),
    ({"eval_every_steps": "Auto"}, r"train\.eval_every_steps='Auto'"),
    ({"encoder": "freeze"}, r"train\.encoder='freeze'.*'auto', 'finetune', 'frozen', 'both'"),
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
    assert "macro F1 0.3000" in warnings[1] and "train.metric and train.encoder at auto" in warnings[1]
    assert baseline_warnings({"accuracy": 0.9, "f1_macro": 0.7}, bases) == []
    gains = baseline_metrics(model, bases)
    assert gains["baseline_majority_f1_macro"] == 0.30 and gains["f1_macro_gain_over_baseline"] == pytest.approx(-0.3)
    assert gains["accuracy_gain_over_majority"] == pytest.approx(0.0)


def run_pipeline(tmp_path: Path, model: Path, weights: str, encoder: str = "finetune") -> dict:
    """split -> tokenize -> train -> evaluate on 400 three-class reviews, 8% of them 'mixed'
    (train.encoder finetune: at auto, this rare class of 22 training rows gets the frozen head)."""
    ingested = tmp_path / "ing"
    write_parquet(three_class_reviews(400, 0.08), ingested / "reviews.parquet")
    DatasetMeta(labels=LABELS, normalization={}, source="csv").write(ingested)
    params = write_params(
        tmp_path / f"{weights}-{encoder}.yaml", split={"max_train": None, "max_val": None, "max_test": None},
        tokenize={"model": str(model), "max_length": 32, "head_tokens": 8},
        train={"epochs": 1, "min_steps": 120, "class_weights": weights, "batch_size": 16,
               "learning_rate": 2e-3, "warmup_fraction": 0.05, "eval_every_steps": 40, "save_every_steps": 1000,
               "metric": "f1_macro", "precision": "fp32", "encoder": encoder})
    out = tmp_path / f"{weights}-{encoder}"
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
            "run_id": json.loads((out / "run.json").read_text())["run_id"], "out": out}


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


def mean_vectors(model: Path, tokens: Path) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own BertModel on every row of a tokenized split at once, in fp32: the mean of
    the real tokens' last hidden states (N, H), and the labels."""
    split = read_tokenized(str(tokens))
    batch = collate(split, np.arange(len(split)), 0)
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(model).eval()(input_ids=batch["input_ids"],
                                                         attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy(), split.labels


def test_frozen_encoder_is_a_converged_logistic_regression_on_mean_vectors(tmp_path, tiny_bert, mlflow_uri):
    result = run_pipeline(tmp_path, tiny_bert, "balanced", encoder="frozen")
    out, details = result["out"], result["train"]
    assert details["frozen_encoder"] and (details["steps"], details["total_steps"], details["best_step"]) == (0, 0, 0)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["bertpipe_pooling"] == "mean"
    # The same head, fitted here without the pipeline: a balanced L2 logistic regression on the
    # pretrained encoder's mean vectors of the training rows.
    x, y = mean_vectors(tiny_bert, out / "tok" / "train.safetensors")
    fit = LogisticRegression(tol=1e-8, max_iter=10_000, class_weight="balanced").fit(x, y)
    assert load_file(str(out / "best" / "model.safetensors"))["classifier.weight"].shape == fit.coef_.shape
    # What predict, the served model and the MLflow model answer on raw texts is that head
    # (with the calibration temperature), from the checkpoint with no code of its own.
    test = read_parquet(str(out / "sp" / "test.parquet"))
    x_test, _ = mean_vectors(tiny_bert, out / "tok" / "test.safetensors")
    expected = softmax((x_test @ fit.coef_.T + fit.intercept_) / config["calibration_temperature"], axis=1)
    served = Classifier.load(out / "best", precision="fp32").predict_proba(test["text"].tolist())
    assert served == pytest.approx(expected, abs=2e-3)
    # The MLflow model autocasts to bf16 where the CPU computes it (as the served model does).
    logged = mlflow.pyfunc.load_model(f"runs:/{result['run_id']}/model").predict(test[["text"]])
    assert logged["prob_mixed"].to_numpy() == pytest.approx(expected[:, 2], abs=0.05)
    assert (logged["label"] == [LABELS[i] for i in expected.argmax(1)]).mean() > 0.95
    assert result["test"]["accuracy"] == pytest.approx(float((expected.argmax(1) == test["label"]).mean()))


def test_both_adds_the_frozen_candidate_and_leaves_fine_tuning_as_it_was(tmp_path, tiny_bert, mlflow_uri):
    both = run_pipeline(tmp_path, tiny_bert, "balanced", encoder="both")
    tuned = run_pipeline(tmp_path, tiny_bert, "balanced", encoder="finetune")
    curve, tuned_curve = (pd.read_csv(r["out"] / "curve.csv") for r in (both, tuned))
    assert curve["step"].iloc[0] == 0 and not np.isnan(curve["val_metric"].iloc[0])  # the frozen candidate
    # Every fine-tuning step after it is the one fine-tuning alone takes: same losses, same scores.
    pd.testing.assert_frame_equal(curve.iloc[1:].reset_index(drop=True), tuned_curve)
    frozen, fine_tuned = curve["val_metric"].iloc[0], tuned["train"]["best_val_f1_macro"]
    assert both["train"]["best_val_f1_macro"] == pytest.approx(max(frozen, fine_tuned), abs=1e-6)
    assert both["train"]["frozen_encoder"] == (both["train"]["best_step"] == 0)
    assert not tuned["train"]["frozen_encoder"]


def test_frozen_head_needs_one_linear_layer(tmp_path, tiny_bert):
    assert frozen_head_fits(str(tiny_bert), "")
    small = {"vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32}
    RobertaConfig(**small).save_pretrained(tmp_path / "roberta")  # a dense layer, then the output layer
    BertConfig(**small).save_pretrained(tmp_path / "bert")
    assert not frozen_head_fits(str(tmp_path / "roberta"), "") and frozen_head_fits(str(tmp_path / "bert"), "")
