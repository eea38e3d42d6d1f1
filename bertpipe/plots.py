"""PNG pictures of the evaluation, for MLflow and for people who would rather look than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_png(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(names), 3.5 + 0.4 * len(names)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="actual", title="Confusion matrix (test)")
    return _save(fig, path)


def curve_png(curves: dict[str, pd.DataFrame], x: str, y: str, title: str, path: Path, diagonal: bool = False) -> Path:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, df in curves.items():
        ax.plot(df[x], df[y], label=label)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def training_png(history: pd.DataFrame, metric_col: str, path: Path) -> Path:
    """Train loss and the validation selection metric against the optimizer step."""
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(history["step"], history["train_loss"], c="tab:blue", label="train loss")
    ax1.set(xlabel="step", ylabel="train loss")
    ax2 = ax1.twinx()
    evals = history.dropna(subset=[metric_col])  # the metric exists only on evaluation steps
    ax2.plot(evals["step"], evals[metric_col], c="tab:orange", marker="o", label=metric_col)
    ax2.set_ylabel(metric_col)
    ax1.set_title("Training curve")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.9), fontsize=8)
    return _save(fig, path)
