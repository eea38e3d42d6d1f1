"""Evaluate: score the best checkpoint on the test split, beside a TF-IDF baseline.

In:  <model>/ best checkpoint from train; <tokens>/test.safetensors; <split>/{train,test}.parquet
     (texts, for the baseline and the error table); <run-file> (the MLflow run to log into);
     <curve> (training curve, for its picture); params `evaluate`.
Out: <metrics> (the headline numbers for `dvc metrics show`: accuracy, macro F1, ROC AUC, each
     with its 95% bootstrap interval (`_ci_low`, `_ci_high`), calibration error `ece` and
     `ece_uncalibrated` (with the checkpoint's temperature T, and with T = 1), the baselines
     and the gain over TF-IDF with its paired interval); <details> (all of them, plus
     macro precision / recall, log loss (`log_loss`, `log_loss_uncalibrated`), T, per-class
     and by-length metrics, the baseline's own). Every other number is of the calibrated
     probabilities, as predict and the served model give them;
     <plots>/ ROC, precision-recall, confusion and calibration data (DVC plots) and PNGs;
     <errors> the most confidently wrong test reviews (raw user text: a cached DVC output,
     never in git). All of it goes to the same MLflow run as training, and the registered
     model version of that run gets a description with the test metrics.

Run: python -m stages.evaluate --model models/best --tokens data/tokenized --split data/split \
       --run-file models/run.json --curve metrics/train_curve.csv \
       --metrics metrics/test.json --details metrics/details/test.json --plots metrics/plots \
       --errors reports/errors.csv
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve
from transformers import AutoModelForSequenceClassification

from bertpipe import plots
from bertpipe.artifacts import atomic_dir, atomic_path, read_json, read_parquet, read_tokenized, write_json
from bertpipe.baseline import majority_probs, tfidf_logreg_probs
from bertpipe.calibration import softmax, temperature_of
from bertpipe.config import EvaluateParams
from bertpipe.contracts import CheckpointMeta
from bertpipe.errors import DataError
from bertpipe.inference import predict_logits
from bertpipe.logs import run_cli
from bertpipe.metrics import calibration, confidence_intervals, per_class_metrics, summary_metrics
from bertpipe.modeling import autocast_dtype
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.registry import describe_run_versions
from bertpipe.tracking import log_dataset, log_metrics, start_run

log = logging.getLogger("evaluate")
LENGTH_BUCKETS = (0, 100, 200, 400, 10**9)  # review length in words
N_ERRORS = 50
# What `dvc metrics show` prints for evaluate; everything else goes to --details and MLflow.
HEADLINE = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "f1_macro", "f1_macro_ci_low", "f1_macro_ci_high",
            "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "ece", "ece_uncalibrated", "baseline_tfidf_logreg_accuracy",
            "accuracy_gain_over_baseline", "accuracy_gain_over_baseline_ci_low", "accuracy_gain_over_baseline_ci_high",
            "baseline_majority_accuracy", "rows")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True, help="tokenize output folder")
    p.add_argument("--split", required=True, help="split output folder (texts)")
    p.add_argument("--run-file", required=True)
    p.add_argument("--curve", required=True, help="training curve CSV from train")
    p.add_argument("--metrics", required=True, help="JSON file of the headline numbers")
    p.add_argument("--details", required=True, help="JSON file of every test metric")
    p.add_argument("--plots", required=True, help="folder for plot data and pictures")
    p.add_argument("--errors", required=True, help="CSV file of the most confidently wrong test reviews")
    return p.parse_args(argv)


def by_length(words: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> dict:
    out = {}
    for lo, hi in itertools.pairwise(LENGTH_BUCKETS):
        rows = (words >= lo) & (words < hi)
        if rows.any():
            name = f"{lo}-{hi - 1}_words" if hi < 10**9 else f"{lo}+_words"
            out[name] = {"rows": int(rows.sum()), "accuracy": float((probs[rows].argmax(1) == labels[rows]).mean())}
    return out


def curve_tables(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC and precision-recall points, one-vs-rest per class (the positive class when binary)."""
    classes = [1] if len(names) == 2 else range(len(names))
    roc, pr = [], []
    for c in classes:
        fpr, tpr, _ = roc_curve(labels == c, probs[:, c])
        prec, rec, _ = precision_recall_curve(labels == c, probs[:, c])
        roc.append(pd.DataFrame({"class": names[c], "fpr": fpr, "tpr": tpr}))
        pr.append(pd.DataFrame({"class": names[c], "recall": rec, "precision": prec}))
    return pd.concat(roc, ignore_index=True), pd.concat(pr, ignore_index=True)


def confident_errors(test: pd.DataFrame, probs: np.ndarray, names: list[str]) -> pd.DataFrame:
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != test["label"].to_numpy())
    worst = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:N_ERRORS]
    return pd.DataFrame({"id": test["id"].to_numpy()[worst],
                         "actual": [names[i] for i in test["label"].to_numpy()[worst]],
                         "predicted": [names[i] for i in preds[worst]], "confidence": probs[worst, preds[worst]],
                         "text": test["text"].to_numpy()[worst]})


BASELINE_NAMES = {"tfidf_logreg": "the TF-IDF + logistic regression baseline",
                  "majority": "the majority-class baseline (always the most frequent training class)"}


def baseline_metrics(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each baseline's accuracy and macro F1, and the model's gain over it (headline numbers)."""
    out = {}
    for name, base in baselines.items():
        # The TF-IDF gain keeps its first name, accuracy_gain_over_baseline.
        suffix = "baseline" if name == "tfidf_logreg" else name
        for key in ("accuracy", "f1_macro"):
            out[f"baseline_{name}_{key}"] = base[key]
            out[f"{key}_gain_over_{suffix}"] = metrics[key] - base[key]
        for key in ("roc_auc", "ece"):  # beside the model's in the version description; no gain
            if key in base:
                out[f"baseline_{name}_{key}"] = base[key]
    return out


def baseline_warnings(metrics: dict[str, float], baselines: dict[str, dict[str, float]]) -> list[str]:
    """One warning per baseline whose macro F1 the model does not beat."""
    return [f"the model (macro F1 {metrics['f1_macro']:.4f}, accuracy {metrics['accuracy']:.4f}) does not beat "
            f"{BASELINE_NAMES[name]} (macro F1 {base['f1_macro']:.4f}, accuracy {base['accuracy']:.4f}) on the "
            "same rows; on small or imbalanced data keep train.class_weights, train.metric and train.encoder at "
            "auto (balanced class weights and selection by macro F1 when the classes are imbalanced, the frozen "
            "encoder on a rare class of few rows), and try a larger train.min_steps or more rows of the rare classes"
            for name, base in baselines.items() if metrics["f1_macro"] <= base["f1_macro"]]


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(EvaluateParams, "evaluate", args.params)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForSequenceClassification.from_pretrained(args.model, trust_remote_code=False).to(device)
    meta = CheckpointMeta.read(args.model)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    tokens = read_tokenized(f"{args.tokens}/test.safetensors")
    test, train = read_parquet(f"{args.split}/test.parquet"), read_parquet(f"{args.split}/train.parquet")
    if not np.array_equal(test["label"].to_numpy(), tokens.labels):
        raise DataError(f"{args.split}/test.parquet and {args.tokens}/test.safetensors disagree on labels; "
                        "rerun the pipeline (dvc repro) so both come from the same split")

    logits = predict_logits(model, tokens, params.batch_size, device, autocast_dtype(device, params.precision),
                            meta.pad_token_id)
    temperature = temperature_of(model.config)  # 1 for a checkpoint without one
    probs, raw = softmax(logits, temperature), softmax(logits)  # what predict serves; the plain softmax
    labels = tokens.labels
    metrics = summary_metrics(labels, probs)
    metrics["log_loss_uncalibrated"] = summary_metrics(labels, raw)["log_loss"]
    metrics["ece"], reliability = calibration(labels, probs, params.calibration_bins)
    metrics["ece_uncalibrated"], raw_reliability = calibration(labels, raw, params.calibration_bins)
    base_probs = tfidf_logreg_probs(train["text"].tolist(), train["label"].to_numpy(), test["text"].tolist())
    major_probs = majority_probs(train["label"].to_numpy(), len(labels), len(names))
    baselines = {name: {**summary_metrics(labels, p), "ece": calibration(labels, p, params.calibration_bins)[0]}
                 for name, p in (("tfidf_logreg", base_probs), ("majority", major_probs))}
    metrics.update(baseline_metrics(metrics, baselines))
    # 95% intervals (bootstrap over the test rows; the gain's paired with the TF-IDF baseline).
    metrics.update(confidence_intervals(labels, probs, base_probs))
    report = {**metrics, "rows": int(len(labels)), "temperature": temperature,
              "per_class": per_class_metrics(labels, probs, names),
              "by_length": by_length(test["text"].str.split().str.len().to_numpy(), labels, probs),
              **{f"baseline_{name}": values for name, values in baselines.items()}}
    for warning in baseline_warnings(metrics, baselines):
        log.warning(warning)

    roc, pr = curve_tables(labels, probs, names)
    base_roc, base_pr = curve_tables(labels, base_probs, names)
    cm = confusion_matrix(labels, probs.argmax(1), labels=list(range(len(names))))
    history = pd.read_csv(args.curve)
    with atomic_dir(args.plots) as out:
        write_csv(roc, out / "roc.csv")
        write_csv(pr, out / "precision_recall.csv")
        confusion = {"actual": [names[i] for i in labels], "predicted": [names[i] for i in probs.argmax(1)]}
        write_csv(pd.DataFrame(confusion), out / "confusion.csv")
        write_csv(pd.DataFrame(reliability), out / "calibration.csv")
        pngs = [plots.confusion_png(cm, names, out / "confusion.png"),
                plots.curve_png({"model": roc, "tf-idf baseline": base_roc}, "fpr", "tpr", "ROC (test)",
                                out / "roc.png", diagonal=True),
                plots.curve_png({"model": pr, "tf-idf baseline": base_pr}, "recall", "precision",
                                "Precision-recall (test)", out / "precision_recall.png"),
                plots.curve_png({f"model (T = {temperature:.3g})": pd.DataFrame(reliability),
                                 "model, uncalibrated (T = 1)": pd.DataFrame(raw_reliability)},
                                "confidence", "accuracy", "Reliability (test)", out / "calibration.png",
                                diagonal=True),
                plots.training_png(history, "val_metric", out / "training.png")]
    write_csv(confident_errors(test, probs, names), Path(args.errors))
    write_json(report, args.details)
    write_json({k: report[k] for k in HEADLINE if k in report}, args.metrics)

    run_id = read_json(args.run_file)["run_id"]
    with start_run(run_id=run_id):
        log_metrics("test", metrics)
        log_dataset(f"{args.tokens}/test.safetensors", "test", "testing", tokens.labels, tokens.lengths)
        for png in pngs:
            mlflow.log_artifact(str(Path(args.plots) / png.name), artifact_path="plots")
        mlflow.log_artifact(args.errors, artifact_path="plots")
        mlflow.log_artifact(args.details)
    describe_run_versions(run_id)
    log.info("test accuracy %.4f (95%% CI %.4f-%.4f; TF-IDF baseline %.4f, majority class %.4f), macro F1 %.4f "
             "(%.4f, %.4f), ROC AUC %.4f on %d reviews; calibration error %.4f (uncalibrated %.4f, T = %.4f)",
             metrics["accuracy"], metrics["accuracy_ci_low"],
             metrics["accuracy_ci_high"], baselines["tfidf_logreg"]["accuracy"],
             baselines["majority"]["accuracy"], metrics["f1_macro"], baselines["tfidf_logreg"]["f1_macro"],
             baselines["majority"]["f1_macro"], metrics["roc_auc"], len(labels), metrics["ece"],
             metrics["ece_uncalibrated"], temperature)


if __name__ == "__main__":
    run_cli(main)
