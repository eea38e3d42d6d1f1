"""Classification metrics shared by validation during training and the evaluate stage."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

# Confidence intervals of the test metrics: percentile bootstrap over the test rows, seeded, so
# the same predictions give the same interval anywhere.
CI_LEVEL = 0.95
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0
CI_METRICS = ("accuracy", "f1_macro", "roc_auc")
# Resamples go in batches of at most this many (resample, row) cells: memory stays bounded (a
# few times 32 MB) on any test split; up to 4,000 rows the 1000 resamples are one batch.
BOOTSTRAP_CELLS = 4_000_000


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


def confidence_intervals(labels: np.ndarray, probs: np.ndarray, baseline_probs: np.ndarray | None = None,
                         rounds: int = BOOTSTRAP_ROUNDS, level: float = CI_LEVEL,
                         seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """`<metric>_ci_low` / `_ci_high` for accuracy, macro F1 and ROC AUC: the percentile bootstrap
    interval (scipy.stats.bootstrap) over the test rows, at `level`. With baseline_probs (the same
    rows), also the paired interval of the accuracy gain over it (`accuracy_gain_over_baseline_ci_*`):
    each resample scores both on the same rows, so what they share cancels out.

    Vectorised: a batch of resamples is a (resamples, rows) matrix of how often each row was drawn,
    and accuracy, macro F1 and the gain are weighted counts over it, so 1000 resamples of 2,000 rows
    take well under a second, not the 6 s of scikit-learn calls per resample (the metrics
    are the same numbers as those calls give, so the intervals are too; resample_auc)."""
    base_preds = baseline_probs.argmax(1) if baseline_probs is not None else None
    names = [*CI_METRICS, *(["accuracy_gain_over_baseline"] if base_preds is not None else [])]
    if len(labels) < 2:
        return {f"{n}_ci_{end}": float("nan") for n in names for end in ("low", "high")}

    def statistic(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        return resample_metrics(rows.astype(np.int64), labels, probs, base_preds)

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # a resample without a class: NaN AUC
        result = bootstrap((np.arange(len(labels)),), statistic, vectorized=True, n_resamples=rounds,
                           batch=max(1, BOOTSTRAP_CELLS // len(labels)), confidence_level=level,
                           method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(low[i]), float(high[i])
    return out


def resample_metrics(rows: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                     base_preds: np.ndarray | None = None) -> np.ndarray:
    """Accuracy, macro F1, ROC AUC (and the accuracy gain over base_preds) of each resample, a row
    of `rows` (B, n): the (3 or 4, B) array scipy.stats.bootstrap takes from a vectorised statistic."""
    weights, preds, classes = draw_counts(rows, len(labels)), probs.argmax(1), probs.shape[1]
    accuracy = weights @ (labels == preds) / len(labels)
    f1, auc = [], []
    for k in range(classes):
        true, pred = weights @ (labels == k), weights @ (preds == k)
        hits = weights @ ((labels == k) & (preds == k))
        with np.errstate(invalid="ignore", divide="ignore"):  # a class neither true nor predicted: 0
            f1.append(np.where(true + pred > 0, 2.0 * hits / (true + pred), 0.0))
        if classes > 2 or k == 1:  # binary: the positive class's AUC, as roc_auc scores it
            auc.append(resample_auc(weights, labels == k, probs[:, k]))
    values = [accuracy, np.mean(f1, axis=0), auc[0] if classes == 2 else np.mean(auc, axis=0)]
    if base_preds is not None:
        values.append(accuracy - weights @ (labels == base_preds) / len(labels))
    return np.stack(values)


def draw_counts(rows: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n) row indices -> (resamples, n) how often each row was drawn, as floats."""
    offsets = np.arange(rows.shape[0])[:, None] * n
    return np.bincount((rows + offsets).ravel(), minlength=rows.size).reshape(rows.shape).astype(np.float64)


def resample_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of score, `positive` rows against the rest, for each row of weights (B, n): scikit-
    learn's roc_auc_score of the resample, the same floats (its ROC points from the drawn rows'
    distinct scores, the collinear ones dropped, then its trapezoid), without its per-call checks;
    NaN without a positive or a negative."""
    order = np.argsort(score, kind="stable")[::-1]  # descending; the order within ties changes no sum
    ranked, is_pos = score[order], positive[order].astype(np.float64)
    out = np.full(len(weights), np.nan)
    for b, drawn in enumerate(weights[:, order]):
        kept = drawn > 0
        counts, pos, scores = drawn[kept], is_pos[kept], ranked[kept]
        ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the thresholds
        tps = np.cumsum(counts * pos)[ends]
        fps = np.cumsum(counts)[ends] - tps
        if len(fps) > 2:  # roc_curve's drop_intermediate
            corners = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
            fps, tps = fps[corners], tps[corners]
        if fps[-1] > 0 and tps[-1] > 0:
            fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
            out[b] = np.trapezoid(tps / tps[-1], fps / fps[-1])
    return out
