"""The learning curve (tools/learning_curve.py): `collect` reads a real sqlite store's runs, logged
with the project's own logging functions, into the table, a run collected twice is one row, and
`plot` draws a table, one point per row count with its seeds' spread."""

from __future__ import annotations

import re
import uuid

import mlflow
import pandas as pd
import pytest

from bertpipe import tracking
from tools import learning_curve


def log_run(experiment_id: str, name: str, train_rows: int, seed: int, accuracy: float, tfidf: float | None) -> str:
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        tracking.log_params({"train_rows": train_rows, "seed": seed, "learning_rate": 8e-5})
        metrics = {"accuracy": accuracy} | ({"baseline_tfidf_logreg_accuracy": tfidf} if tfidf is not None else {})
        tracking.log_metrics("test", metrics)
    return run.info.run_id


def test_collect_adds_the_named_runs_once(store, tmp_path):
    experiment = f"curve-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow.create_experiment(experiment)
    first = log_run(experiment_id, "curve-1000-1", 1000, 42, 0.80, 0.78)
    log_run(experiment_id, "curve-1000-2", 1000, 43, 0.82, 0.78)
    log_run(experiment_id, "curve-1000-3", 1000, 44, 0.81, None)  # not evaluated: skipped
    log_run(experiment_id, "other", 4000, 42, 0.88, 0.87)  # not named curve-...
    table = tmp_path / "curve.csv"
    elsewhere = {"train_rows": 21389, "seed": "42", "accuracy": 0.9233, "tfidf_accuracy": 0.9014,
                 "recipe": "length 384", "run_name": "full-data-cpu", "run_id": "elsewhere",
                 "measured": "another machine"}
    pd.DataFrame([elsewhere]).to_csv(table, index=False)
    args = ["collect", "--prefix", "curve-", "--measured", "here", "--experiment", experiment, "--table", str(table)]
    learning_curve.main(args)
    learning_curve.main(args)  # again: the same rows
    got = pd.read_csv(table, dtype={"seed": str})
    assert got["run_name"].tolist() == ["curve-1000-1", "curve-1000-2", "full-data-cpu"]
    assert got["seed"].tolist() == ["42", "43", "42"]
    assert got["measured"].tolist() == ["here", "here", "another machine"]
    assert got.loc[0, "run_id"] == first and got.loc[0, "accuracy"] == 0.8 and got.loc[0, "tfidf_accuracy"] == 0.78
    points = learning_curve.by_rows(got)
    assert points["seeds"].tolist() == [2, 1] and points.loc[0, "model_mean"] == pytest.approx(81.0)
    assert (points.loc[0, "model_min"], points.loc[0, "model_max"]) == pytest.approx((80.0, 82.0))


def test_collect_without_runs_says_how_to_make_them(store, tmp_path):
    experiment = f"curve-{uuid.uuid4().hex[:8]}"
    mlflow.create_experiment(experiment)
    with pytest.raises(learning_curve.NoRuns, match=r"named curve-\.\.\. .*dvc exp run --queue -n curve-"):
        learning_curve.main(["collect", "--prefix", "curve-", "--measured", "here", "--experiment", experiment,
                             "--table", str(tmp_path / "t.csv")])


def test_plot_draws_each_row_count_with_its_seeds(tmp_path):
    table = tmp_path / "curve.csv"
    rows = [{"train_rows": n, "seed": str(seed), "accuracy": acc, "tfidf_accuracy": tfidf, "recipe": recipe,
             "run_name": f"curve-{n}-{seed}", "run_id": f"{n}-{seed}", "measured": "here"}
            for n, seed, acc, tfidf, recipe in [(1000, 42, 0.83, 0.82, "default"),
                                                (1000, 43, 0.85, 0.82, "default"),
                                                (4000, 42, 0.87, 0.87, "default"),
                                                (21389, 42, 0.92, 0.90, "length 384")]]
    pd.DataFrame(rows).to_csv(table, index=False)
    out = tmp_path / "curve.png"
    learning_curve.main(["plot", "--table", str(table), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp*"))
    points = learning_curve.by_rows(learning_curve.read_table(table))
    assert points["seeds"].tolist() == [2, 1, 1] and points["recipe"].tolist() == ["default", "default", "length 384"]


def test_a_table_without_its_columns_names_them(tmp_path):
    (tmp_path / "t.csv").write_text("train_rows,accuracy\n1000,0.8\n")
    with pytest.raises(learning_curve.BertpipeError, match=r"t\.csv: no column .*seed.*header must be"):
        learning_curve.main(["plot", "--table", str(tmp_path / "t.csv")])


def test_the_committed_curve_is_the_one_the_readme_and_results_quote():
    """docs/learning-curve.csv (what the PNG draws) gives the figures README.md and
    docs/results.md write beside the picture: per row count, the mean over three seeds of the
    model and TF-IDF, and in results.md each seed and its gain."""
    from tests.conftest import ROOT

    table = learning_curve.read_table(ROOT / learning_curve.TABLE)
    points = learning_curve.by_rows(table).set_index("train_rows")
    curve = points.loc[[1000, 2000, 4000]]
    assert curve["seeds"].tolist() == [3, 3, 3] and set(curve["recipe"]) == {learning_curve.DEFAULT_RECIPE}
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    quoted = re.search(r"1,000, 2,000 and 4,000 rows give ([\d.]+)%, ([\d.]+)% and ([\d.]+)% against "
                       r"TF-IDF's ([\d.]+)%, ([\d.]+)% and ([\d.]+)%", readme)
    assert quoted, "README.md no longer quotes the learning curve's three means"
    assert [float(x) for x in quoted.groups()] == pytest.approx(
        [*curve["model_mean"].round(2), *curve["tfidf_mean"].round(2)], abs=0.005)
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for rows, runs in table[table["train_rows"].isin([1000, 2000, 4000])].groupby("train_rows"):
        runs = runs.sort_values("seed")
        seeds = " / ".join(f"{a * 100:.2f}%" for a in runs["accuracy"])
        gains = " / ".join(f"{(a - t) * 100:+.2f}"
                           for a, t in zip(runs["accuracy"], runs["tfidf_accuracy"], strict=True))
        row = f"| {rows:,}"
        assert any(line.startswith(row) and seeds in line and gains in line
                   for line in results.splitlines()), f"docs/results.md has no row {row} ... {seeds} ... {gains}"
    assert (ROOT / learning_curve.PICTURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
