"""DVC experiments on the tiny project: `dvc exp run -S` and a queued sweep each make exactly
one MLflow run named after the experiment (in the project's own store, also from the temporary
copy a queued experiment runs in), and `dvc exp show` lines up their params and metrics; the
sweep's seeds are one recipe to `bertpipe recipes`."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from bertpipe.tracking import metric_key
from tests.conftest import wait_for_queue
from tests.mlops_helpers import clone_project, ran_stages, reproduced_project, sh

pytestmark = pytest.mark.slow
QUEUE_TIMEOUT_S = 600
# The README's view of experiments: key params and metrics only.
EXP_SHOW = ("dvc", "exp", "show", "--md", "--drop", ".*", "--keep",
            r"Experiment|State|^train\.(learning_rate|epochs|batch_size)$|^(accuracy|f1_macro|roc_auc)$|best_val_accuracy")
# MLflow's default store: sqlite:///mlflow.db of the project (tracking.configure, via DVC_ROOT).
DEFAULT_STORE = {"MLFLOW_TRACKING_URI": None, "DVC_EXP_NAME": None}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert):
    return clone_project(reproduced_project(tmp_path_factory, tiny_bert),
                         tmp_path_factory.mktemp("experiments") / "project")


def runs_named(project, name: str) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imdb-sentiment")
    return client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def exp_show_rows(project) -> dict[str, dict[str, str]]:
    """`dvc exp show` as {experiment name: {column: value}}."""
    lines = [line for line in sh(project, *EXP_SHOW).stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=False))
        name = cells["Experiment"].split("[")[-1].rstrip("]") if "[" in cells["Experiment"] else cells["Experiment"]
        rows[name] = cells
    return rows


def check_one_run(project, name: str, learning_rate: str) -> None:
    runs = runs_named(project, name)
    assert len(runs) == 1, f"experiment {name}: {len(runs)} MLflow runs"
    run = runs[0]
    assert run.data.params["learning_rate"] == learning_rate and run.data.tags["dvc_exp_name"] == name
    assert "val/best_accuracy" in run.data.metrics and "test/accuracy" in run.data.metrics  # train and evaluate
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert f"`dvc exp apply {name} && dvc pull && dvc repro`" in version.description
    assert "uncommitted" not in version.description  # the experiment's own commit holds its changes


def test_exp_run_with_a_param_is_one_mlflow_run_named_after_it(project):
    out = sh(project, "dvc", "exp", "run", "-S", "train.learning_rate=0.002", "-n", "lr-002", env=DEFAULT_STORE)
    assert ran_stages(out.stdout) == ["train", "evaluate"]  # the data stages are unchanged
    check_one_run(project, "lr-002", "0.002")
    row = exp_show_rows(project)["lr-002"]
    assert row["train.learning_rate"] == "0.002" and float(row["accuracy"]) >= 0 and "roc_auc" in row


def test_queued_seeds_run_each_experiment_once_as_one_recipe(project):
    # The README's seed sweep, at two seeds: a comma list makes one experiment per seed (seeds-1,
    # seeds-2), and `bertpipe recipes` sums them up as one recipe beside lr-002's.
    queued = sh(project, "dvc", "exp", "run", "--queue", "-S", "train.learning_rate=0.003", "-S", "train.seed=42,43",
                "-n", "seeds", env=DEFAULT_STORE).stdout
    names = [line.split("'")[1] for line in queued.splitlines() if line.startswith("Queued experiment")]
    assert names == ["seeds-1", "seeds-2"]
    def start() -> None:
        sh(project, "dvc", "queue", "start", "-j", "1", env=DEFAULT_STORE)

    start()
    status = wait_for_queue(lambda: sh(project, "dvc", "queue", "status").stdout, start, QUEUE_TIMEOUT_S)
    states = {cells[1]: cells[-1] for cells in map(str.split, status.splitlines()) if len(cells) > 2}
    assert [states.get(name) for name in names] == ["Success", "Success"], status
    rows = exp_show_rows(project)
    for name in names:
        check_one_run(project, name, "0.003")
        assert rows[name]["train.learning_rate"] == "0.003" and float(rows[name]["accuracy"]) >= 0
    runs = {name: runs_named(project, name)[0] for name in names}
    assert {name: run.data.params["seed"] for name, run in runs.items()} == {"seeds-1": "42", "seeds-2": "43"}
    (recipe,) = {run.data.tags["recipe"] for run in runs.values()}  # the seed alone: one recipe
    assert recipe != runs_named(project, "lr-002")[0].data.tags["recipe"]  # another learning rate: another

    report = json.loads(sh(project, "bertpipe", "recipes", "--json", env=DEFAULT_STORE).stdout)
    found = {r["recipe"]: r for r in report["recipes"]}
    accuracies = [run.data.metrics[metric_key("test", "accuracy")] for run in runs.values()]
    assert found[recipe]["seeds"] == ["42", "43"] and found[recipe]["accuracy"]["mean"] == pytest.approx(
        sum(accuracies) / 2)
    assert found[recipe]["accuracy"]["ci_low"] <= found[recipe]["accuracy"]["mean"] <= found[recipe]["accuracy"][
        "ci_high"]
    assert found[recipe]["differs"]["train.learning_rate"] == 0.003
