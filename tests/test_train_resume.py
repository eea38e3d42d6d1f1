"""A train stage killed with SIGKILL and run again ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
from safetensors.numpy import load_file

from tests.conftest import ROOT, tiny_train_params, train_args, write_params


def start_train(tmp_path: Path, params: Path, tag: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stages.train", *train_args(tmp_path, params, tag)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def kill_after_first_save(proc: subprocess.Popen, state: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    info = state / "last" / "state.json"
    while time.monotonic() < deadline and proc.poll() is None:
        if info.exists():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return json.loads(info.read_text())["step"]
        time.sleep(0.005)
    raise AssertionError("train finished or hung before its first resumable save; cannot test the kill")


def without_timing(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "train_samples_per_s"}


def test_killed_train_resumes_to_identical_weights_and_metrics(tmp_path, tokenized, tiny_bert, mlflow_uri):
    settings = tiny_train_params(tiny_bert)
    settings["train"].update(epochs=6)  # 64 train rows, 8 batches an epoch: 48 steps, saved every 2
    params = write_params(tokenized, **settings)
    finish(start_train(tmp_path, params, "straight-"))

    proc = start_train(tmp_path, params, "killed-")
    killed_at = kill_after_first_save(proc, tmp_path / "killed-resume")
    run_before = json.loads((tmp_path / "killed-resume/last/state.json").read_text())["run_id"]
    assert not (tmp_path / "killed-best").exists()  # nothing published half-way
    finish(start_train(tmp_path, params, "killed-"))

    straight = load_file(tmp_path / "straight-best/model.safetensors")
    resumed = load_file(tmp_path / "killed-best/model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all((straight[k] == resumed[k]).all() for k in straight)
    assert without_timing(tmp_path / "killed-train.json") == without_timing(tmp_path / "straight-train.json")
    summary = without_timing(tmp_path / "straight-details.json")
    assert without_timing(tmp_path / "killed-details.json") == summary
    curve = pd.read_csv(tmp_path / "straight-curve.csv")  # a point every 2 steps and at each evaluation
    pd.testing.assert_frame_equal(curve, pd.read_csv(tmp_path / "killed-curve.csv"))

    # The resumed process logged into the run the killed one opened, every step of it.
    run_id = json.loads((tmp_path / "killed-run.json").read_text())["run_id"]
    assert run_id == run_before and killed_at < summary["total_steps"] == 48
    history = mlflow.MlflowClient(mlflow_uri).get_metric_history(run_id, "train_loss")
    assert {m.step for m in history} == set(curve["step"])  # none lost (steps after the last save are redone)
