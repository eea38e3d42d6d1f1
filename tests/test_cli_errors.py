"""A BertpipeError (or a missing file) prints one `error:` line and exits 1; --verbose or
BERTPIPE_DEBUG=1 add the traceback; any other error always shows it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bertpipe.errors import BertpipeError, DataError, ParamsError
from bertpipe.logs import run_cli
from tests.conftest import ROOT, write_params


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BERTPIPE_DEBUG": "", **env}, check=False)


def test_bad_params_give_one_error_line(tmp_path):
    params = write_params(tmp_path / "p.yaml", ingest={"max_quarantine_fraction": 2})
    args = ("stages.ingest", "--params", str(params), "--out", str(tmp_path / "o"), "--metrics", str(tmp_path / "m"))
    done = cli(*args)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == \
        f"error: ingest.max_quarantine_fraction=2 in {params}: must be >= 0 and <= 1"
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


@pytest.mark.parametrize("err", [BertpipeError("run 1 refused: it is foreign"), ParamsError("split.seed: missing"),
                                 DataError("r.csv: class 'pos' has only 2 rows"), FileNotFoundError("in.csv")])
def test_run_cli_prints_one_line_for_an_error_that_is_the_whole_story(monkeypatch, capsys, err):
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("BERTPIPE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        run_cli(_fails_with(err))
    assert stop.value.code == 1 and capsys.readouterr().err == f"error: {err}\n"


def test_run_cli_masks_credentials_in_the_error_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("BERTPIPE_DEBUG", raising=False)
    with pytest.raises(SystemExit):
        run_cli(_fails_with(BertpipeError("https://user:s3cret@host/data.csv?token=abc cannot be downloaded")))
    assert capsys.readouterr().err == "error: https://***@host/data.csv?token=*** cannot be downloaded\n"


def test_run_cli_keeps_tracebacks_of_unexpected_errors(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("BERTPIPE_DEBUG", raising=False)
    with pytest.raises(KeyError):
        run_cli(_fails_with(KeyError("bug")))
    # A plain ValueError is a bug wherever it is raised: the deliberate ones are BertpipeErrors.
    with pytest.raises(ValueError, match="not a message"):
        run_cli(_fails_with(ValueError("not a message")))
    with pytest.raises(ConnectionError):  # only TrackingServerUnreachable is a message
        run_cli(_fails_with(ConnectionError("reset by peer")))
    monkeypatch.setattr(sys, "argv", ["prog", "--verbose"])
    with pytest.raises(FileNotFoundError):
        run_cli(_fails_with(FileNotFoundError("in.csv")))
    assert sys.argv == ["prog"]  # the flag is the wrapper's, main() never sees it
    assert capsys.readouterr().err == ""


def test_an_unexpected_error_shows_its_traceback_masked():
    code = ("from bertpipe.logs import run_cli\n"
            "def main():\n    raise RuntimeError('bug near https://user:s3cret@host/x')\n"
            "run_cli(main)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BERTPIPE_DEBUG": ""}, check=False)
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "RuntimeError: bug near https://***@host/x"
    assert "s3cret" not in done.stderr


def test_a_misspelt_params_key_in_a_real_stage_is_one_clear_line(tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("  val_fraction:", "  val_fracton:"))
    done = cli("stages.split", "--params", str(params), "--data", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
               "--metrics", str(tmp_path / "m.json"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: split.val_fracton in {params}: unknown key; did you mean 'val_fraction'? Known keys of split are: "
        "keep_source_test, max_test, max_train, max_val, seed, test_fraction, val_fraction"]
    assert not (tmp_path / "o").exists()
