"""Checkpoint selection (which validation result counts as better) and the test metrics' intervals."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bertpipe.metrics import confidence_intervals, is_better, resample_metrics, roc_auc, summary_metrics


def test_a_higher_value_wins_and_the_first_evaluation_always_does():
    assert is_better(0.5, None)
    assert is_better(0.9, 0.8, new_loss=0.9, best_loss=0.1)
    assert not is_better(0.8, 0.9, new_loss=0.1, best_loss=0.9)


def test_a_tie_goes_to_the_lower_validation_log_loss():
    # The quickstart's case: accuracy 0.886 at steps 250 and 500, log loss 0.350 then 0.295.
    assert is_better(0.886, 0.886, new_loss=0.295, best_loss=0.350)
    assert not is_better(0.886, 0.886, new_loss=0.350, best_loss=0.295)
    assert not is_better(0.886, 0.886, new_loss=0.3, best_loss=0.3)  # a full tie keeps the earlier step


def test_nan_never_wins():
    assert not is_better(math.nan, 0.1)
    assert not is_better(0.886, 0.886, new_loss=math.nan, best_loss=0.3)


def noisy_model(n: int, right: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels, and probabilities right on about `right` of the rows, with confidence that varies."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    correct = rng.random(n) < right
    confidence = 0.5 + 0.5 * rng.random(n)
    positive = np.where(correct == (labels == 1), confidence, 1 - confidence)
    return labels, np.c_[1 - positive, positive]


def test_intervals_hold_the_estimate_shrink_with_rows_and_repeat_exactly():
    labels, probs = noisy_model(400, 0.85, 0)
    ci = confidence_intervals(labels, probs)
    point = summary_metrics(labels, probs)
    for name in ("accuracy", "f1_macro", "roc_auc"):
        assert ci[f"{name}_ci_low"] < point[name] < ci[f"{name}_ci_high"]
    # Accuracy on 400 rows at 0.85: the normal approximation's half width is 1.96 * sqrt(.85 * .15 / 400) = 0.035.
    assert ci["accuracy_ci_high"] - ci["accuracy_ci_low"] == pytest.approx(0.07, abs=0.015)
    assert confidence_intervals(labels, probs) == ci  # seeded: the same interval every time
    more = confidence_intervals(*noisy_model(3600, 0.85, 0), rounds=400)
    assert more["accuracy_ci_high"] - more["accuracy_ci_low"] < (ci["accuracy_ci_high"] - ci["accuracy_ci_low"]) / 2


def test_the_gain_interval_is_paired():
    """A baseline that agrees with the model on most rows: the paired interval of the gain is far
    narrower than the two accuracies' own intervals would suggest."""
    labels, probs = noisy_model(1000, 0.85, 1)
    baseline = probs.copy()
    flip = np.random.default_rng(2).random(1000) < 0.05  # differs on 5% of the rows
    baseline[flip] = baseline[flip][:, ::-1]
    ci = confidence_intervals(labels, probs, baseline, rounds=400)
    gain = (probs.argmax(1) == labels).mean() - (baseline.argmax(1) == labels).mean()
    assert ci["accuracy_gain_over_baseline_ci_low"] < gain < ci["accuracy_gain_over_baseline_ci_high"]
    width = ci["accuracy_gain_over_baseline_ci_high"] - ci["accuracy_gain_over_baseline_ci_low"]
    # Unpaired, the difference of two such accuracies would spread sqrt(2) times one's width.
    assert width < 0.5 * math.sqrt(2) * (ci["accuracy_ci_high"] - ci["accuracy_ci_low"])


def test_a_test_split_without_a_class_gives_no_auc_interval():
    labels, probs = noisy_model(50, 0.8, 3)
    ci = confidence_intervals(np.ones(50, dtype=int), probs, rounds=200)
    assert math.isnan(ci["roc_auc_ci_low"]) and math.isnan(ci["roc_auc_ci_high"])
    assert not math.isnan(ci["accuracy_ci_low"])


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_each_resample_scores_as_scikit_learn_scores_it(classes):
    """The vectorised statistic against one scikit-learn call per resample (what the intervals were
    before), bit for bit, on rounded (tied) probabilities, resamples that miss a class (NaN AUC) and
    one that is the rows themselves: the committed metrics/test.json stays as it was."""
    rng = np.random.default_rng(classes)
    n = 60
    labels = rng.integers(0, classes, n)
    probs = np.round(rng.random((n, classes)), 1) + 0.01
    probs /= probs.sum(1, keepdims=True)
    base = rng.integers(0, classes, n)
    rows = np.vstack([np.arange(n), rng.integers(0, n, (40, n)), np.flatnonzero(labels != 0)[rng.integers(0, 10, n)]])
    got = resample_metrics(rows, labels, probs, base)
    for b, picked in enumerate(rows):
        y, p = labels[picked], probs[picked]
        accuracy = (y == p.argmax(1)).mean()
        f1 = f1_score(y, p.argmax(1), labels=list(range(classes)), average="macro", zero_division=0)
        gain = accuracy - (y == base[picked]).mean()
        auc = roc_auc(y, p)
        assert got[[0, 1, 3], b].tolist() == [accuracy, f1, gain]  # the same floats, so the same intervals
        assert got[2, b] == auc or (np.isnan(got[2, b]) and np.isnan(auc))
    assert np.isnan(got[2, -1]) and not np.isnan(got[2, 0])
