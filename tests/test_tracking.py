"""MLflow against a real `mlflow server` on 127.0.0.1, and a clear failure when none answers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from importlib.metadata import version

import mlflow
import pandas as pd
import pytest

from bertpipe import tracking
from bertpipe.artifacts import file_digest
from bertpipe.tracking import git_state, library_versions, lock_state
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
    assert "val/best_accuracy" in run.data.metrics and "train/tokens_per_s" in run.data.metrics
    assert run.data.tags["version.torch"] and run.data.tags["git_dirty"] in ("true", "false", "unknown")
    assert {k: run.data.tags[k] for k in ("lock_file", "lock_sha256")} == lock_state()  # the lock of this torch
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


def test_lock_state_names_the_lock_of_the_installed_torch_and_its_digest(tmp_path, monkeypatch):
    (tmp_path / "requirements").mkdir()
    cpu, cuda = tmp_path / "requirements/cpu.lock", tmp_path / "requirements/cuda.lock"
    cpu.write_text("numpy==2.4.6 \\\n    --hash=sha256:89cd\ntorch==2.13.0+cpu \\\n    --hash=sha256:6746\n")
    cuda.write_text("torch==2.13.0 \\\n    --hash=sha256:024c\n")
    installed = {"torch": "2.13.0+cpu"}
    monkeypatch.setattr(tracking, "version", lambda lib: installed[lib])
    assert lock_state(tmp_path) == {"lock_file": "requirements/cpu.lock",
                                    "lock_sha256": hashlib.sha256(cpu.read_bytes()).hexdigest()}
    installed["torch"] = "2.13.0"  # PyPI's CUDA build: not the CPU lock's torch==2.13.0+cpu
    assert lock_state(tmp_path) == {"lock_file": "requirements/cuda.lock",
                                    "lock_sha256": hashlib.sha256(cuda.read_bytes()).hexdigest()}
    installed["torch"] = "2.14.1"  # a torch no lock pins
    assert lock_state(tmp_path) == {"lock_file": "none", "lock_sha256": "none"}
    installed["torch"] = "2.13.0+cpu"
    cpu.unlink()
    assert lock_state(tmp_path)["lock_sha256"] == "none"
    assert lock_state(tmp_path / "elsewhere") == {"lock_file": "none", "lock_sha256": "none"}


def test_run_tags_record_the_lock_of_the_project_they_run_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # stages run in the project root
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements/cuda.lock").write_text(f"torch=={version('torch')} \\\n    --hash=sha256:0a1b\n")
    tags = tracking.run_tags("cpu")
    assert (tags["lock_file"], tags["lock_sha256"]) == ("requirements/cuda.lock",
                                                       file_digest(tmp_path / "requirements/cuda.lock"))


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


def test_metric_keys_put_each_metric_in_its_section():
    assert tracking.metric_key("test", "baseline_tfidf_logreg_accuracy") == "test/baseline_tfidf_logreg_accuracy"
    assert tracking.metric_key("val", "accuracy") == "val/accuracy"
    # The loss curves share the section that MLflow's charts sort first (before "test").
    assert tracking.metric_key("train", "loss") == "loss/train" and tracking.metric_key("val", "log_loss") == "loss/val"
    assert sorted(["test", "train", "val", "loss"])[0] == tracking.metric_key("train", "loss").split("/")[0]


def test_runs_link_opens_the_runs_table_with_the_saved_view_and_holds_no_secret():
    link = tracking.runs_link("7", "sqlite:///mlflow.db")
    assert link == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                    "&viewStateShareKey=bertpipe")
    remote = tracking.runs_link("7", "https://alice:s3cret@mlflow.example.com/prefix/?token=abc")
    assert remote.startswith("https://mlflow.example.com/prefix/#/experiments/7/runs?")
    assert "s3cret" not in remote and "abc" not in remote and "alice" not in remote


def test_whole_number_params_are_logged_as_integers(mlflow_uri):
    # An experiment of this store's own: the fluent API may still hold an earlier test's experiment id.
    mlflow.set_tracking_uri(mlflow_uri)
    experiment = mlflow.MlflowClient(mlflow_uri).create_experiment("params")
    with mlflow.start_run(experiment_id=experiment) as run:
        tracking.log_params({"epochs": 1.0, "learning_rate": 5e-05, "warmup_fraction": 0.1, "batch_size": 8})
    params = mlflow.MlflowClient(mlflow_uri).get_run(run.info.run_id).data.params
    assert params == {"epochs": "1", "learning_rate": "5e-05", "warmup_fraction": "0.1", "batch_size": "8"}
