"""Test accuracy against training rows, for the fine-tuned model and for TF-IDF + logistic
regression trained on the same rows: the picture of what more rows buy that issue 22 asks the
README for (docs/results.md, "Learning curve": the runs, the table, the picture).

A table of runs, one row per run: training rows, seed, the model's and TF-IDF's test accuracy,
its recipe (`default`: the default params but split.max_train; else what differs, written on the
plot), the run's name and id, and where it was measured. `collect` adds the runs of the MLflow experiment whose
names start with a prefix (the experiments queued for the curve, `dvc exp run --queue -n
curve-<rows> ...`), read from the run itself: param train_rows and seed, metrics test/accuracy
and test/baseline_tfidf_logreg_accuracy; a run already in the table is replaced, so collecting
again is safe. Runs measured elsewhere (the full-data run on another machine) stay as they are.
`plot` draws the table: per number of training rows the mean over seeds, a bar from the lowest
to the highest seed, and the seeds' count.

In:  collect: the runs in the tracking store the stages use (MLFLOW_TRACKING_URI, else
     sqlite:///mlflow.db here); plot: the table.
Out: the table (CSV, collect), a PNG (plot).

Run: python tools/learning_curve.py collect --prefix curve- --measured "2-core Intel Xeon (AMX), 2026-12-04"
     python tools/learning_curve.py plot
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bertpipe.artifacts import atomic_path  # noqa: E402
from bertpipe.config import TrainParams  # noqa: E402
from bertpipe.errors import BertpipeError  # noqa: E402
from bertpipe.logs import run_cli  # noqa: E402
from bertpipe.params import PARAMS_FILE, load_section  # noqa: E402
from bertpipe.tracking import configure, metric_key  # noqa: E402

log = logging.getLogger("learning_curve")
TABLE, PICTURE = Path("docs/learning-curve.csv"), Path("docs/learning-curve.png")
COLUMNS = ["train_rows", "seed", "accuracy", "tfidf_accuracy", "recipe", "run_name", "run_id", "measured"]
DEFAULT_RECIPE = "default"  # the recipe column of runs with the default params but split.max_train
MODEL_KEY, TFIDF_KEY = metric_key("test", "accuracy"), metric_key("test", "baseline_tfidf_logreg_accuracy")


class NoRuns(BertpipeError):
    """No run of the experiment has the prefix and test metrics."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect", help="add the experiment's runs named PREFIX... to the table")
    collect.add_argument("--prefix", required=True, help="the run names' prefix (dvc exp run -n)")
    collect.add_argument("--measured", required=True, help="the machine and date, written beside each run")
    collect.add_argument("--experiment", help="the MLflow experiment (default: train.mlflow_experiment)")
    collect.add_argument("--params", type=Path, default=Path(PARAMS_FILE))
    plot = commands.add_parser("plot", help="draw the table")
    plot.add_argument("--out", type=Path, default=PICTURE)
    for command in (collect, plot):
        command.add_argument("--table", type=Path, default=TABLE)
    return parser.parse_args(argv)


def read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"seed": str, "run_id": str})
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise BertpipeError(f"{path}: no column {', '.join(missing)}; its header must be {','.join(COLUMNS)}")
    return table[COLUMNS]


def run_rows(experiment: str, prefix: str, measured: str) -> pd.DataFrame:
    """One row per run of the experiment named prefix...; runs without test metrics are skipped."""
    import mlflow

    from bertpipe.recipes import read_runs
    from bertpipe.redact import mask_url

    rows, skipped = [], 0
    for run in read_runs(experiment):
        if not (run.info.run_name or "").startswith(prefix):
            continue
        metrics, params = run.data.metrics, run.data.params
        if MODEL_KEY not in metrics or TFIDF_KEY not in metrics or "train_rows" not in params:
            skipped += 1
            continue
        rows.append({"train_rows": int(params["train_rows"]), "seed": params.get("seed", "?"),
                     "accuracy": metrics[MODEL_KEY], "tfidf_accuracy": metrics[TFIDF_KEY],
                     "recipe": DEFAULT_RECIPE, "run_name": run.info.run_name, "run_id": run.info.run_id,
                     "measured": measured})
    if not rows:
        store = mask_url(mlflow.get_tracking_uri())
        raise NoRuns(f"no run of experiment '{experiment}' in {store} is named {prefix}... and has test metrics"
                     f" ({skipped} without them): run the experiments first (dvc exp run --queue -n "
                     f"{prefix}<name> ..., dvc queue start), or pass the --prefix of their names")
    log.info("%d runs named %s... (%d without test metrics skipped)", len(rows), prefix, skipped)
    return pd.DataFrame(rows, columns=COLUMNS)


def merged(table: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The table with new's runs added, a run already there replaced; by rows, then seed."""
    kept = table[~table["run_id"].isin(new["run_id"])]
    both = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    return both.sort_values(["train_rows", "seed", "run_name"], kind="stable").reset_index(drop=True)


def write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def by_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per number of training rows: mean, lowest and highest over seeds of both accuracies, in %."""
    grouped = table.groupby("train_rows")
    recipes = grouped["recipe"].agg(lambda r: " / ".join(dict.fromkeys(r)))
    out = pd.DataFrame({"seeds": grouped["seed"].nunique(), "recipe": recipes})
    for column, name in (("accuracy", "model"), ("tfidf_accuracy", "tfidf")):
        for stat in ("mean", "min", "max"):
            out[f"{name}_{stat}"] = grouped[column].agg(stat) * 100
    return out.reset_index()


def plot(table: pd.DataFrame, path: Path) -> Path:
    points = by_rows(table)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lines = (("model", "fine-tuned MiniLM-L6", "o-"), ("tfidf", "TF-IDF + logistic regression", "s--"))
    for name, label, style in lines:
        mean = points[f"{name}_mean"]
        spread = [mean - points[f"{name}_min"], points[f"{name}_max"] - mean]
        ax.errorbar(points["train_rows"], mean, yerr=spread, fmt=style, capsize=3, label=label)
    last = points["train_rows"].max()
    for _, p in points.iterrows():
        other = "" if p["recipe"] == DEFAULT_RECIPE else f"\n{p['recipe']}"
        right = p["train_rows"] == last  # the rightmost label ends at its point, inside the axes
        ax.annotate(f"{p['model_mean']:.1f}%\n({p['seeds']:d} seed{'s' if p['seeds'] > 1 else ''}){other}",
                    (p["train_rows"], p["model_max"]), textcoords="offset points", xytext=(-4 if right else 0, 6),
                    ha="right" if right else "center", fontsize=7)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.25 * (high - low))  # room for the labels above the highest point
    ax.set_xscale("log")
    ax.set_xticks(points["train_rows"], [f"{r:,}" for r in points["train_rows"]])
    ax.minorticks_off()
    ax.set(xlabel="training rows (IMDB reviews)", ylabel="test accuracy, %",
           title="Test accuracy against training rows (mean; bars: lowest to highest seed)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    table = read_table(args.table)
    if args.command == "collect":
        experiment = args.experiment or load_section(TrainParams, "train", args.params).mlflow_experiment
        configure()
        table = merged(table, run_rows(experiment, args.prefix, args.measured))
        write_csv(table, args.table)
        log.info("%s: %d runs", args.table, len(table))
    else:
        if table.empty:
            raise BertpipeError(f"{args.table} has no runs: add them with `python tools/learning_curve.py collect`")
        log.info("%s: %d runs at %d row counts -> %s", args.table, len(table), table["train_rows"].nunique(),
                 plot(table, args.out))


if __name__ == "__main__":
    run_cli(main)
