"""End to end: `dvc repro` of a tiny configuration inside a temporary git repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pytest
import yaml

from bertpipe.params import load_yaml
from tests.conftest import copy_project, tiny_train_params, write_params

pytestmark = pytest.mark.slow


def sh(cwd, *cmd: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_bert):
    root = copy_project(tmp_path_factory.mktemp("repo"))
    write_params(root / "params.yaml", **tiny_train_params(tiny_bert))
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "ci@example.com")
    sh(root, "git", "config", "user.name", "ci")
    sh(root, "dvc", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny pipeline")
    return root


def test_dvc_repro_runs_all_stages_then_has_nothing_to_do(repo, monkeypatch):
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = sh(repo, "dvc", "repro")
    assert ran_stages(out) == ["ingest", "split", "tokenize", "train", "evaluate"]
    test_metrics = json.loads((repo / "metrics/test.json").read_text())
    assert test_metrics["rows"] == 32
    assert (repo / "models/best/model.safetensors").exists()
    assert (repo / "metrics/plots/roc.csv").exists()

    lock = load_yaml((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "split", "tokenize", "train", "evaluate"}
    assert ran_stages(sh(repo, "dvc", "repro")) == []  # up to date right after a run

    # `dvc metrics show` and `dvc plots show` read what the pipeline declared.
    shown = sh(repo, "dvc", "metrics", "show", "--json")
    assert "metrics/test.json" in shown and "accuracy" in shown
    sh(repo, "dvc", "plots", "show", "-o", str(repo / "plots_html"))
    assert (repo / "plots_html/index.html").exists()

    # The MLflow run holds train's and evaluate's metrics.
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert "test_accuracy" in run.data.metrics and "best_val_accuracy" in run.data.metrics


def test_changing_a_training_param_reruns_only_train_and_evaluate(repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    sh(repo, "dvc", "repro")
    params = load_yaml((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = 5e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(sh(repo, "dvc", "repro")) == ["train", "evaluate"]


def test_stage_scripts_run_as_modules_with_help(repo):
    for stage in ("ingest", "split", "tokenize", "train", "evaluate"):
        assert "usage" in sh(repo, sys.executable, "-m", f"stages.{stage}", "--help")
