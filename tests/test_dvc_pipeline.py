"""End to end: `dvc repro` of a tiny configuration inside a temporary git repo (the session's
shared pipeline run, `reproduced`; tests that change it work on a clone)."""

from __future__ import annotations

import json
import sys

import mlflow
import pytest
import yaml

from bertpipe.params import load_yaml
from tests.conftest import ROOT, ran_stages, sh
from tests.mlops_helpers import clone_project

pytestmark = pytest.mark.slow
STAGES = ["ingest", "split", "tokenize", "train", "evaluate"]


@pytest.fixture
def repo(reproduced, tmp_path):
    return clone_project(reproduced, tmp_path / "project")


def test_dvc_repro_runs_all_stages_then_has_nothing_to_do(reproduced, repo):
    assert ran_stages((reproduced.parent / "repro.log").read_text()) == STAGES
    test_metrics = json.loads((repo / "metrics/test.json").read_text())
    assert test_metrics["rows"] == 32
    assert (repo / "models/best/model.safetensors").exists()
    assert (repo / "metrics/plots/roc.csv").exists()
    lock = load_yaml((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert ran_stages(sh(repo, "dvc", "repro").stdout) == []  # up to date, in a clone too

    # `dvc metrics show` and `dvc plots show` read what the pipeline declared.
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "metrics/test.json" in shown and "accuracy" in shown
    sh(repo, "dvc", "plots", "show", "-o", str(repo / "plots_html"))
    assert (repo / "plots_html/index.html").exists()

    # The MLflow run holds train's and evaluate's metrics.
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    run = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert "test/accuracy" in run.data.metrics and "val/best_accuracy" in run.data.metrics


def test_changing_a_training_param_reruns_only_train_and_evaluate(repo):
    params = load_yaml((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = 5e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", "DVC_EXP_NAME": None}
    assert ran_stages(sh(repo, "dvc", "repro", env=env).stdout) == ["train", "evaluate"]


def test_stage_scripts_run_as_modules_with_help():
    for stage in STAGES:
        assert "usage" in sh(ROOT, sys.executable, "-m", f"stages.{stage}", "--help").stdout
