"""MLflow against a real `mlflow server` on 127.0.0.1, and a clear failure when none answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest

from bertpipe.tracking import git_state, library_versions
from stages import train
from tests.conftest import free_port, train_args, wait_for_health


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(uri, proc, "mlflow server", lambda: proc.stderr.read()[-2000:])
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("DVC_EXP_NAME", raising=False)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_train_logs_to_a_remote_tracking_server(tmp_path, tokenized, mlflow_server):
    train.main(train_args(tmp_path, tokenized))
    run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.data.params["batch_size"] == "8"
    assert "best_val_accuracy" in run.data.metrics and "tokens_per_s" in run.data.metrics
    assert run.data.tags["version.torch"] and run.data.tags["git_dirty"] in ("true", "false", "unknown")
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "val"} and len(inputs["train"].dataset.digest) == 16
    assert (tmp_path / "server-artifacts").exists()  # the model went through the server's artifact proxy
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert list(model.predict(pd.DataFrame({"text": ["fine film"]})).columns)[0] == "label"


def test_unreachable_tracking_server_fails_fast_with_a_clear_message(tmp_path, tokenized, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"MLflow tracking server http://127\.0\.0\.1:\d+ .*did not answer"):
        train.main(train_args(tmp_path, tokenized))
    assert time.monotonic() - start < 30


def test_run_tags_name_versions_and_git_state():
    assert "version.transformers" in library_versions()
    assert set(git_state()) == {"git_commit", "git_dirty"}


def test_run_name_marks_a_dirty_tree_but_not_pipeline_outputs(tmp_path, monkeypatch):
    from bertpipe.tracking import run_name

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: x\n    metrics:\n      - metrics/m.json:\n"
                                       "          cache: false\n")
    for name in ("dvc.lock", "params.yaml", "metrics/m.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("a: 1\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "c"]):
        subprocess.run(["git", *cmd], check=True)
    sha = git_state()["git_commit"][:7]
    (tmp_path / "dvc.lock").write_text("a: 2\n")  # DVC rewrites these while the pipeline runs
    (tmp_path / "metrics/m.json").write_text("a: 2\n")
    assert run_name() == f"repro-{sha}"
    (tmp_path / "params.yaml").write_text("a: 2\n")  # an uncommitted change of a param
    assert run_name() == f"repro-{sha}-dirty"
    monkeypatch.setenv("DVC_EXP_NAME", "lr-5e-5")
    assert run_name() == "lr-5e-5"
