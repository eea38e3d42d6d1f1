"""A train stage killed with SIGKILL and run again ends where an uninterrupted run ends; a state
saved by other code, libraries, base weights, device or precision is not continued."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from bertpipe.artifacts import write_json
from bertpipe.resume import LAST, ResumeState, load_state, resume_key
from tests.conftest import ROOT, prepare_tokenized, tiny_train_params, train_args, write_params


def start_train(tmp_path: Path, params: Path, tag: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stages.train", *train_args(tmp_path, params, tag)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def kill_after_first_save(proc: subprocess.Popen, state: Path, timeout: float = 120, old_run: str = "") -> dict:
    """SIGKILL proc once it saved a resumable state (of a run other than old_run); that state."""
    deadline = time.monotonic() + timeout
    info = state / "last" / "state.json"
    while time.monotonic() < deadline and proc.poll() is None:
        if info.exists() and (saved := json.loads(info.read_text()))["run_id"] != old_run:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return saved
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
    saved = kill_after_first_save(proc, tmp_path / "killed-resume")
    killed_at, run_before = saved["step"], saved["run_id"]
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
    history = mlflow.MlflowClient(mlflow_uri).get_metric_history(run_id, "loss/train")
    assert {m.step for m in history} == set(curve["step"])  # none lost (steps after the last save are redone)


def key_for(model: Path, tmp_path: Path, dtype: torch.dtype | None = None) -> dict[str, str]:
    data = tmp_path / "data.bin"
    data.write_bytes(b"tokens")
    return resume_key({"lr": 1e-3}, [str(data)], 1, ROOT / "stages/train.py", str(model), torch.device("cpu"), dtype)


def test_resume_key_has_each_part_and_follows_the_base_weights(tmp_path, tiny_bert):
    model = shutil.copytree(tiny_bert, tmp_path / "model")
    key = key_for(model, tmp_path)
    assert set(key) == {"params", "data", "world_size", "code", "torch", "transformers", "base_model", "device",
                        "precision"}
    assert (key["torch"], key["device"], key["precision"]) == (torch.__version__, "cpu", "torch.float32")
    assert key_for(model, tmp_path, torch.bfloat16) == {**key, "precision": "torch.bfloat16"}
    with open(model / "model.safetensors", "ab") as f:  # other bytes, same names
        f.write(b" ")
    assert key_for(model, tmp_path) == {**key, "base_model": key_for(model, tmp_path)["base_model"]}
    assert key_for(model, tmp_path)["base_model"] != key["base_model"]


def save_unfinished(folder: Path, key: dict[str, str], step: int) -> None:
    write_json({"key": key, "step": step}, folder / LAST / "state.json")


@pytest.mark.parametrize("part,now", [("precision", "torch.bfloat16"), ("device", "cuda"), ("torch", "9.9"),
                                      ("code", "0" * 64), ("base_model", "1" * 64)])
def test_state_of_another_setup_starts_over_naming_the_part(tmp_path, caplog, part, now):
    key = {"params": "p", "code": "c" * 64, "torch": "2.0", "device": "cpu", "precision": "torch.float32",
           "base_model": "b" * 64}
    save_unfinished(tmp_path / "state", key, step=6)
    assert load_state(tmp_path / "state", key).step == 6  # the same setup continues
    with caplog.at_level(logging.WARNING, logger="bertpipe.resume"):
        state = load_state(tmp_path / "state", {**key, part: now})
    assert state.step == 0 and state.key[part] == now and not (tmp_path / "state" / LAST).exists()
    assert f"was saved with other {part}: {key[part]} -> {now}" in caplog.text


def test_state_of_an_older_bertpipe_starts_over(tmp_path, caplog):
    save_unfinished(tmp_path / "state", "0" * 64, step=6)  # one digest, before the key had parts
    with caplog.at_level(logging.WARNING, logger="bertpipe.resume"):
        assert load_state(tmp_path / "state", {"params": "p"}) == ResumeState(key={"params": "p"},
                                                                            folder=str(tmp_path / "state"))
    assert "older bertpipe" in caplog.text


def test_killed_train_with_other_base_weights_starts_over(tmp_path, tiny_bert, mlflow_uri):
    """The same params and data, but the base model's weights changed while the run was down."""
    from transformers import BertConfig, BertModel

    model = shutil.copytree(tiny_bert, tmp_path / "model")
    params = prepare_tokenized(tmp_path, model, n=96)
    first = kill_after_first_save(start_train(tmp_path, params, ""), tmp_path / "resume")
    torch.manual_seed(1)  # tiny_bert was made with seed 0: other weights, same architecture
    BertModel(BertConfig.from_pretrained(model)).save_pretrained(model)

    again = start_train(tmp_path, params, "")
    second = kill_after_first_save(again, tmp_path / "resume", old_run=first["run_id"])
    err = again.stderr.read()
    assert "starting over: the resumable state" in err and "base_model: " in err
    assert "torch: " not in err and "params: " not in err  # only what changed is named
    assert second["run_id"] != first["run_id"]  # a resumed state would have kept the killed run's id
