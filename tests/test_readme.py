"""The README runs as written: its experiment, sweep, promotion, prediction and serving commands
are taken from its ```bash blocks, word for word, and run in bash on a clone of the tiny
project (tests/mlops_helpers.py), against the project's default MLflow store (sqlite:///mlflow.db).
A README that drifts from the code fails here. Each experiment of the sweep is checked to be one
MLflow run named after it (from the temporary copy a queued one runs in, too), with its own recipe
in `bertpipe recipes` and a registered version whose description reproduces it.

Commands are found by the program they run (`dvc exp run`, `python -m bertpipe.promote`, ...),
not by their position, so rewording the prose around them changes nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from bertpipe.params import read_yaml
from tests.conftest import ROOT, free_port, ran_stages, wait_for_queue
from tests.mlops_helpers import clone_project, reproduced_project

pytestmark = pytest.mark.slow
README = ROOT / "README.md"
QUEUE_TIMEOUT_S = 600
SERVE_TIMEOUT_S = 120
README_PORT = 5001  # the port the README's serving commands use
# The README's commands run with MLflow's default store and no DVC experiment of the caller's.
ENV = {"MLFLOW_TRACKING_URI": None, "DVC_EXP_NAME": None, "no_proxy": "127.0.0.1,localhost",
       "NO_PROXY": "127.0.0.1,localhost"}


def bash_commands(section: str) -> list[str]:
    """The commands of the ```bash blocks under the README heading `## <section>`, one per
    entry, with backslash continuations joined (comments stay: bash ignores them)."""
    text = README.read_text(encoding="utf-8")
    body = re.split(r"^## ", text, flags=re.MULTILINE)
    (chunk,) = [b for b in body if b.startswith(section + "\n")]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", chunk, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line)
    return commands


def the(commands: list[str], program: str) -> list[str]:
    found = [c for c in commands if program in c.split("#")[0]]
    assert found, f"the README has no `{program}` command; this test runs it as written"
    return found


def bash(project: Path, command: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in {**os.environ, **ENV}.items() if v is not None}
    done = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    if check:
        assert done.returncode == 0, f"README command failed: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert) -> Path:
    return clone_project(reproduced_project(tmp_path_factory, tiny_bert),
                         tmp_path_factory.mktemp("readme") / "project")


def learning_rates_by_run_name(project: Path) -> dict[str, float]:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imdb-sentiment")
    return {r.info.run_name: float(r.data.params["learning_rate"])
            for r in client.search_runs([experiment.experiment_id]) if "test/accuracy" in r.data.metrics}


def exp_show_learning_rates(project: Path) -> dict[str, float]:
    """{experiment name: train.learning_rate} from `dvc exp show --json`, all commits."""
    rates: dict[str, float] = {}

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            params = ((node.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
            if node.get("name") and "train" in params:
                rates[node["name"]] = float(params["train"]["learning_rate"])
            for value in node.values():
                walk(value)

    walk(json.loads(bash(project, "dvc exp show --json -A").stdout))
    return rates


def run_sweep(project: Path) -> dict[str, str]:
    """The README's experiment section in order ({command: stdout}); `dvc queue status` is
    polled until no experiment is queued or running."""
    commands = bash_commands("Experiments and sweeps")
    for program in ("dvc exp run -S", "dvc exp run --queue", "dvc queue start", "dvc queue status", "dvc exp show",
                    "dvc exp apply"):
        the(commands, program)
    (start,) = the(commands, "dvc queue start")
    outputs = {}
    for command in commands:
        if command.startswith("dvc queue status"):  # polled, and the queue restarted as the README says
            status = wait_for_queue(lambda c=command: bash(project, c).stdout, lambda: bash(project, start),
                                    QUEUE_TIMEOUT_S)
            assert "Failed" not in status, status
            outputs[command] = status
        else:
            outputs[command] = bash(project, command).stdout
    return outputs


def check_experiment_run(client: MlflowClient, name: str) -> Run:
    """An experiment is one MLflow run named after it, logged by train and evaluate, whose
    registered version's description reproduces it from the experiment's own commit."""
    experiment = client.get_experiment_by_name("imdb-sentiment")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")
    assert len(runs) == 1, f"experiment {name}: {len(runs)} MLflow runs"
    (run,) = runs
    assert run.data.tags["dvc_exp_name"] == name
    assert "val/best_accuracy" in run.data.metrics and "test/accuracy" in run.data.metrics
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert f"`dvc exp apply {name} && dvc pull && dvc repro`" in version.description
    assert "uncommitted" not in version.description  # the experiment's own commit holds its changes
    return run


def test_readme_commands_run_as_written(project, tmp_path):
    # Experiments and a queued sweep, then `dvc exp apply` of the first one, committed and pushed.
    outputs = run_sweep(project)
    (exp_run,) = [out for command, out in outputs.items() if command.startswith("dvc exp run -S")]
    assert ran_stages(exp_run) == ["train", "evaluate"]  # a train param: the data stages are kept
    runs = learning_rates_by_run_name(project)  # finished runs (train and evaluate), by name
    assert runs["lr-5e-5"] == pytest.approx(5e-5)  # one MLflow run per experiment, named after it
    assert sorted(runs.values()).count(2e-5) == 1 and sorted(runs.values()).count(1e-4) == 1  # the queued two
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    swept = {name: check_experiment_run(client, name) for name, rate in runs.items() if rate in (5e-5, 2e-5, 1e-4)}
    assert len({run.data.tags["recipe"] for run in swept.values()}) == 3  # three learning rates: three recipes
    # `bertpipe recipes` as the README runs it: each recipe with its one seed and the params it changes.
    (recipes_out,) = [out for command, out in outputs.items() if command.startswith("bertpipe recipes")]
    for run in swept.values():
        assert run.data.tags["recipe"] in recipes_out, recipes_out
    shown = exp_show_learning_rates(project)
    assert shown["lr-5e-5"] == pytest.approx(5e-5)
    assert {name: rate for name, rate in shown.items() if rate in (2e-5, 1e-4)} == {
        name: rate for name, rate in runs.items() if rate in (2e-5, 1e-4)}  # same names in DVC and MLflow
    (table,) = [out for command, out in outputs.items() if command.startswith("dvc exp show")]
    assert all(name in table for name in shown if name.startswith("lr-") or shown[name] in (2e-5, 1e-4)), table
    assert read_yaml(project / "params.yaml")["train"]["learning_rate"] == pytest.approx(5e-5)  # applied
    assert bash(project, "git status --porcelain --untracked-files=no").stdout == ""  # and committed
    assert "errors.csv" not in bash(project, "git ls-files").stdout  # user data stays out of git

    # The promotion gate: the first challenger becomes champion (exit 0), or the champion stays (3).
    gates = the(bash_commands("Model registry and promotion"), "python -m bertpipe.promote")
    assert any("--dry-run" in gate for gate in gates) and any("--dry-run" not in gate for gate in gates)
    for gate in gates:  # a dry run first, then the real judgement
        done = bash(project, gate, check=False)
        assert done.returncode in (0, 3), f"{gate}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "champion" in done.stdout
    if done.returncode == 3:  # the tiny model lost to a baseline: a person sets the champion, as the README says
        run_id = json.loads((project / "models/run.json").read_text())["run_id"]
        (version,) = client.search_model_versions(f"run_id = '{run_id}'")
        client.set_registered_model_alias(version.name, "champion", version.version)

    # Prediction, on the user's files the README names.
    serving = bash_commands("Serving and prediction")
    (project / "reviews.csv").write_text("text\nA moving film.\nDull and far too long.\n")
    (project / "reviews.txt").write_text("A moving film.\nDull and far too long.\n")
    predict = the(serving, "python -m bertpipe.predict")
    assert len(predict) == 3
    for command in predict:
        out = bash(project, command).stdout
        if "--output" not in command and ">" not in command:
            assert [json.loads(line)["label"] in ("negative", "positive") for line in out.splitlines()] == [True] * 2
    assert set(pd.read_csv(project / "scored.csv").columns) >= {"text", "label", "prob_negative", "prob_positive"}
    assert len((project / "scored.jsonl").read_text().splitlines()) == 2

    # Serving over HTTP and the README's curl request.
    (serve,) = the(serving, "mlflow models serve")
    (request,) = the(serving, "curl ")
    answer = json.loads(serve_and_ask(project, serve, request, tmp_path / "serve.log"))
    assert answer["predictions"][0]["label"] in ("negative", "positive")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def serve_and_ask(project: Path, serve: str, request: str, log_path: Path) -> str:
    """Start the README's server in the background, send its curl request until it answers."""
    if not port_is_free(README_PORT):  # something else holds the README's port: use another, in both
        port = str(free_port())
        serve = serve.replace(f"-p {README_PORT}", f"-p {port}")
        request = request.replace(f":{README_PORT}/", f":{port}/")
    env = {k: v for k, v in {**os.environ, **ENV}.items() if v is not None}
    with open(log_path, "w") as log:
        server = subprocess.Popen(["bash", "-c", serve], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            done = bash(project, request, check=False)
            if done.returncode == 0 and done.stdout.startswith("{"):
                return done.stdout
            assert server.poll() is None, f"{serve} exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{serve} did not answer in {SERVE_TIMEOUT_S}s:\n" \
                                                f"{log_path.read_text()[-3000:]}"
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        server.wait(timeout=30)
