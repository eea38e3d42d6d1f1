"""Shared fixtures and plumbing, written once: a tiny randomly initialised BERT, a tiny labelled
dataset, params files, MLflow stores, a shell helper, a free port, the shared pipeline run."""

from __future__ import annotations

import os

# Each pytest-xdist worker gets its share of the cores as torch's OpenMP threads, it and every
# command it starts (DVC stages, the gate, servers): two workers that each run two threads on two
# cores spin against each other. Two tiny trainings side by side took 141 CPU-s each that way and 54
# with one thread each, the same weights (docs/reference.md, "Libraries and why"). Set before
# anything imports torch; a value the caller set stays. One process (-n 0) keeps torch's default.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))
# The `mlflow server`s the tests start run without MLflow 3's job runner (GenAI jobs, which no test
# uses): it starts three more Python processes per server, each importing MLflow.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from bertpipe.artifacts import write_parquet
from bertpipe.contracts import DatasetMeta
from bertpipe.params import load_yaml
from tools.tiny_bert import make_tiny_bert

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["a wonderful, moving film with great acting", "loved it, brilliant and touching story",
            "superb direction and a delightful cast", "an excellent movie, I would watch it again"]
NEGATIVE = ["a dull, boring film with terrible acting", "hated it, awful and tedious plot",
            "poor direction and a wooden cast", "a bad movie, a complete waste of time"]


MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                    "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(autouse=True)
def no_mlflow_state_between_tests() -> Iterator[None]:
    """MLflow keeps process-wide state that outlives a test: active runs, the active experiment,
    and a tracking URI that `mlflow.set_tracking_uri` also writes into MLFLOW_TRACKING_URI. A test
    that leaves them would send a later test's calls to its own store or experiment, so each test
    ends with them cleared and MLflow's variables as they were before it (a module's store stays)."""
    before = {name: os.environ.get(name) for name in MLFLOW_VARIABLES}
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI: restored below
    mlflow.set_registry_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None  # set_experiment's; MLflow has no public reset
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def tiny_reviews(n: int = 48) -> pd.DataFrame:
    """n distinct short reviews, half positive (label 1), half negative (label 0)."""
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        base = (POSITIVE if pos else NEGATIVE)[(i // 2) % 4]
        rows.append({"id": i, "text": f"{base} (review number {i}){' and more words' * (i % 7)}", "label": int(pos)})
    return pd.DataFrame(rows)


def write_params(path: Path, **sections) -> Path:
    """params.yaml from the project's defaults with the given sections' keys overridden."""
    params = load_yaml((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def tiny_train_params(model: Path) -> dict:
    return {
        "tokenize": {"model": str(model), "max_length": 64, "head_tokens": 16},
        "train": {"epochs": 2, "min_steps": 0, "batch_size": 8, "learning_rate": 1e-3, "log_every_steps": 2,
                  "eval_every_steps": 3, "save_every_steps": 2, "precision": "fp32", "group_batches": 2},
        "split": {"max_train": 64, "max_val": 32, "max_test": 32},
    }


# --- MLflow stores ---------------------------------------------------------------------------------

@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A new sqlite store of the test's own in MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri


@pytest.fixture(scope="session")
def shared_store_dir(tmp_path_factory) -> Path:
    """One MLflow store folder (sqlite file and ./mlruns artifacts) for the session: a new store
    spends seconds creating its tables. Tests keep apart by registered model name (model_name)."""
    return tmp_path_factory.mktemp("mlflow-store")


@contextlib.contextmanager
def using_store(folder: Path) -> Iterator[Path]:
    """MLFLOW_TRACKING_URI at folder's store, and folder as the cwd (MLflow's ./mlruns)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        mp.delenv("DVC_EXP_NAME", raising=False)
        mp.chdir(folder)
        yield folder


@pytest.fixture(scope="module")
def store(shared_store_dir) -> Iterator[Path]:
    """The session's shared MLflow store, in use (env and cwd) for the module's tests."""
    with using_store(shared_store_dir) as folder:
        yield folder


# --- processes -------------------------------------------------------------------------------------

def sh(cwd: Path, *cmd: str, env: dict[str, str | None] | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    """Run cmd in cwd with os.environ updated by env (a None value unsets the variable).

    Output goes through files, not pipes: a daemon the command leaves behind (`dvc queue start`'s
    worker) inherits them, and a pipe would keep this call waiting for the daemon to exit."""
    merged = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(cmd, cwd=cwd, env={k: v for k, v in merged.items() if v is not None},
                              stdout=out, stderr=err, check=False).returncode
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
    if check:
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


QUEUE_RESTARTS = 2  # how often a queue whose worker died with experiments left is started again
IDLE_POLLS = 5  # polls in a row with experiments queued and no worker before that counts as dead


def wait_for_queue(status: Callable[[], str], restart: Callable[[], object], timeout_s: float) -> str:
    """Poll `dvc queue status` (status()) until no experiment is queued or running; its last output.

    DVC's filesystem queue broker can lose its worker while experiments are still queued
    (treeverse/dvc#10428, open); the README tells the user to run `dvc queue start` again then,
    and so does this (restart()), at most QUEUE_RESTARTS times."""
    deadline, idle, restarts = time.monotonic() + timeout_s, 0, 0
    while True:
        out = status()
        if not any(word in out for word in ("Queued", "Running")):
            return out
        idle = idle + 1 if "Queued" in out and "Worker status: 0 active, 0 idle" in out else 0
        if idle >= IDLE_POLLS and restarts < QUEUE_RESTARTS:
            restart()
            idle, restarts = 0, restarts + 1
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout_s:g}s:\n{out}"
        time.sleep(3)


def ran_stages(output: str) -> list[str]:
    """The stages `dvc repro` ran, in order, from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, what: str, output: Callable[[], str],
                    timeout_s: float = 120) -> None:
    """Poll an MLflow server's /health until it answers; fail with the end of its output when
    it exits or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{output()}") from None
            time.sleep(0.5)


# --- projects that run DVC -------------------------------------------------------------------------


def copy_project(dest: Path) -> Path:
    """The tracked project files, for tests that run DVC in a repo of their own."""
    for name in ("stages", "bertpipe", "data/raw", "dvc.yaml", "params.yaml", "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    return dest


def init_repo(root: Path, *before_commit: tuple[str, ...]) -> Path:
    """git and DVC initialised in root, before_commit commands run, everything committed."""
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "config", "user.email", "ci@example.com")
    sh(root, "git", "config", "user.name", "ci")
    sh(root, "dvc", "init", "-q", "--force")
    shutil.copy2(ROOT / ".dvc/config", root / ".dvc/config")  # dvc init wrote a blank one; ours has the remote
    for cmd in before_commit:
        sh(root, *cmd)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    return root


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, tiny_bert) -> Path:
    """The shared pipeline run: a tiny project after one `dvc repro`, committed (mlops_helpers)."""
    from tests.mlops_helpers import reproduced_project

    return reproduced_project(tmp_path_factory, tiny_bert)


def make_ingested(folder: Path, n: int = 48) -> None:
    """What ingest would write for tiny_reviews(n)."""
    write_parquet(tiny_reviews(n), folder / "reviews.parquet")
    DatasetMeta(labels=["negative", "positive"], normalization={}, source="csv").write(folder)


@pytest.fixture
def tokenized(tmp_path, tiny_bert) -> Path:
    """Ingested, split and tokenized tiny data in tmp_path; returns the params file. 120 reviews:
    their train split (about 84, by hash) always fills max_train=64."""
    return prepare_tokenized(tmp_path, tiny_bert, n=120)


def prepare_tokenized(tmp_path: Path, model: Path, n: int) -> Path:
    """Run ingest's stand-in, split and tokenize on n tiny reviews; returns the params file."""
    from stages import split, tokenize

    make_ingested(tmp_path / "ing", n=n)
    params = write_params(tmp_path / "p.yaml", **tiny_train_params(model))
    split.main(["--params", str(params), "--data", str(tmp_path / "ing"), "--out", str(tmp_path / "sp"),
                "--metrics", str(tmp_path / "s.json")])
    tokenize.main(["--params", str(params), "--data", str(tmp_path / "sp"), "--out", str(tmp_path / "tok"),
                   "--metrics", str(tmp_path / "t.json")])
    return params


def train_args(tmp_path: Path, params: Path, tag: str = "") -> list[str]:
    """Arguments of the train stage on the `tokenized` fixture; outputs named with the tag."""
    out = {name: str(tmp_path / f"{tag}{name}") for name in ("best", "resume", "run.json", "train.json", "details.json",
                                                        "curve.csv")}
    return ["--params", str(params), "--data", str(tmp_path / "tok"), "--split", str(tmp_path / "sp"),
            "--out", out["best"], "--state", out["resume"], "--run-file", out["run.json"],
            "--metrics", out["train.json"], "--details", out["details.json"], "--curve", out["curve.csv"]]


# The longest test files (minutes each, `--durations`) first, then the other slow ones: the two
# workers (pyproject.toml, addopts) start them early and the short files fill in around them, so
# the run does not end on one long file. Only the order changes; each file's tests stay together.
# xdist hands out files 1 and 2 to the two workers, then 3 and 4: test_readme.py and
# test_dvc_pipeline.py (2 and 4) then share one worker and its session's reproduced tiny project
# (a `dvc repro`, a minute of CPU) instead of building it once on each.
LONGEST_FIRST = ("test_retraining_loop.py", "test_readme.py", "test_bench.py", "test_dvc_pipeline.py",
                 "test_promote.py", "test_remote.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_files = {item.path.name for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(name)
        return (1, 0) if name in slow_files else (2, 0)

    items.sort(key=rank)  # stable: the order within a rank and within a file is pytest's own
