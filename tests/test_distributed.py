"""The same train script under torchrun: 2 CPU processes with the gloo backend (DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
from safetensors.numpy import load_file

from bertpipe.tracking import metric_key
from tests.conftest import ROOT, train_args


def test_torchrun_two_processes_share_the_batches_and_rank0_logs(tmp_path, tokenized, mlflow_uri):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "stages.train", *train_args(tmp_path, tokenized)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    summary = json.loads((tmp_path / "details.json").read_text())
    # 64 train rows in batches of 8 = 8 batches an epoch, 4 per rank; 2 epochs.
    assert summary["total_steps"] == summary["steps"] == 8
    weights = load_file(tmp_path / "best/model.safetensors")
    assert "classifier.weight" in weights and not any(k.startswith("module.") for k in weights)

    run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(mlflow_uri)
    assert client.get_run(run_id).data.params["world_size"] == "2"
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1  # rank 0 alone logs
    loss = client.get_metric_history(run_id, metric_key("train", "loss"))
    assert [m.step for m in loss] == [2, 3, 4, 6, 8]  # log, eval
