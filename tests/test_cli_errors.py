"""Expected errors print one `error:` line and exit 1; --verbose or BERTPIPE_DEBUG=1 add the
traceback; unexpected errors always show it."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys

import pytest

from bertpipe.logs import run_cli
from bertpipe.params import check_range
from tests.conftest import ROOT, write_params


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BERTPIPE_DEBUG": "", **env}, check=False)


def test_bad_params_give_one_error_line(tmp_path):
    params = write_params(tmp_path / "p.yaml", ingest={"max_quarantine_fraction": 2})
    args = ("stages.ingest", "--params", str(params), "--out", str(tmp_path / "o"), "--metrics", str(tmp_path / "m"))
    done = cli(*args)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ingest.max_quarantine_fraction=2.0 in ")
    for verbose in (cli(*args, "--verbose"), cli(*args, BERTPIPE_DEBUG="1")):
        assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "ParamsError" in verbose.stderr


def test_missing_input_file_and_unreachable_tracking_server(tmp_path):
    done = cli("bertpipe.predict", "--model", "models/best", "--input", str(tmp_path / "nope.csv"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    missing = tmp_path / "nope.csv"
    assert done.stderr.strip().splitlines()[-1] == f"error: [Errno 2] No such file or directory: '{missing}'"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    done = cli("bertpipe.predict", "--model", "models:/m@champion", "x", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: MLflow tracking server http://127.0.0.1:{port} (from MLFLOW_TRACKING_URI) did not answer" \
        in done.stderr


def _fails_with(err: Exception):
    def main() -> None:
        raise err
    return main


def test_run_cli_keeps_tracebacks_of_unexpected_errors(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("BERTPIPE_DEBUG", raising=False)
    with pytest.raises(KeyError):
        run_cli(_fails_with(KeyError("bug")))
    with pytest.raises(ValueError, match="not ours"):  # a ValueError raised outside bertpipe/ and stages/
        run_cli(_fails_with(ValueError("not ours")))
    with pytest.raises(SystemExit) as stop:
        run_cli(functools.partial(check_range, "epochs", 5, 0, 1))  # raises in bertpipe/params.py
    assert stop.value.code == 1 and capsys.readouterr().err == "error: epochs=5: must be >= 0 and <= 1\n"
    monkeypatch.setattr(sys, "argv", ["prog", "--verbose"])
    with pytest.raises(FileNotFoundError):
        run_cli(_fails_with(FileNotFoundError("in.csv")))
    assert sys.argv == ["prog"]  # the flag is the wrapper's, main() never sees it
