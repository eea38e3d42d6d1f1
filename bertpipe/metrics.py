"""Classification metrics shared by validation during training and the evaluate stage."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary ROC AUC, or macro one-vs-rest for more classes; NaN when a class is absent."""
    if len(np.unique(labels)) < probs.shape[1]:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def summary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline numbers; probs is (N, C) and rows sum to 1."""
    preds = probs.argmax(axis=1)
    classes = list(range(probs.shape[1]))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=classes, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "roc_auc": roc_auc(labels, probs),
        "log_loss": float(log_loss(labels, np.clip(probs, 1e-7, 1.0), labels=classes)),
    }


def per_class_metrics(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    preds = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=list(range(len(names))), zero_division=0)
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])} for i, name in enumerate(names)}


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int) -> tuple[float, list[dict]]:
    """Expected calibration error of the top-class confidence, and the reliability curve."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece, curve = 0.0, []
    for b in range(bins):
        in_bin = which == b
        if not in_bin.any():
            continue
        acc, mean_conf = float(correct[in_bin].mean()), float(conf[in_bin].mean())
        ece += in_bin.mean() * abs(acc - mean_conf)
        curve.append({"bin": b, "confidence": mean_conf, "accuracy": acc, "count": int(in_bin.sum())})
    return float(ece), curve


def is_better(new: float, best: float | None, new_loss: float = float("nan"),
              best_loss: float = float("nan")) -> bool:
    """Higher is better for every selection metric (log loss enters negated); NaN never wins.

    A tie goes to the lower validation log loss: accuracy on a few hundred rows ties often
    (0.886 at two steps of the quickstart), and keeping the earlier step then kept the worse model.
    """
    if best is None:
        return True
    if np.isnan(new) or new < best:
        return False
    return new > best or bool(new_loss < best_loss)


def selection_value(metric: str, metrics: dict[str, float]) -> float:
    return -metrics["log_loss"] if metric == "neg_log_loss" else metrics[metric]
