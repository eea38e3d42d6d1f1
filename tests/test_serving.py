"""The logged MLflow model served by `mlflow models serve` (local environment, 127.0.0.1)
answers a JSON request with labels and class probabilities."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import free_port
from tests.mlops_helpers import constant_checkpoints, log_and_register, model_name

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 30


def wait_until_up(url: str, server: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"mlflow models serve did not answer /ping within {START_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")


def test_mlflow_models_serve_answers_with_labels_and_probabilities(store, tmp_path, tmp_path_factory, tiny_bert,
                                                                   request):
    name = model_name(request)
    log_and_register(constant_checkpoints(tmp_path_factory, tiny_bert)[1], name)  # always positive
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@challenger",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(url, server, log_path)
        body = json.dumps({"dataframe_records": [{"text": "A wonderful film."}, {"text": "Dull, far too long."}]})
        req = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            predictions = json.loads(resp.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        server.wait(timeout=30)
    assert [p["label"] for p in predictions] == ["positive", "positive"]
    for p in predictions:
        assert p["prob_positive"] > 0.99 and p["prob_negative"] + p["prob_positive"] == pytest.approx(1.0)
