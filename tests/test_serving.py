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

from bertpipe.errors import BertpipeError
from bertpipe.mlflow_model import (
    DEFAULT_MAX_REQUEST_BYTES,
    MAX_REQUEST_BYTES_ENV,
    MAX_ROWS_PER_REQUEST,
    max_request_bytes,
    size_over,
)
from tests.conftest import free_port
from tests.mlops_helpers import constant_checkpoints, log_and_register

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 30
# The served model's byte limit (BERTPIPE_MAX_REQUEST_BYTES), set where the server starts: above the
# default, with room for the 22 MB request of test_a_10_mb_text_is_answered_quickly.
SERVED_MAX_BYTES = 24_000_000


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


@pytest.fixture(scope="module")
def served(store, tmp_path_factory, tiny_bert) -> str:
    """The always-positive model behind a real `mlflow models serve` on 127.0.0.1; its URL."""
    name = "serving-tests"
    log_and_register(constant_checkpoints(tmp_path_factory, tiny_bert)[1], name)  # always positive
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/1",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, MAX_REQUEST_BYTES_ENV: str(SERVED_MAX_BYTES)})
    try:
        wait_until_up(url, server, log_path)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        server.wait(timeout=30)


def invoke(url: str, records: list, ensure_ascii: bool = True) -> tuple[int, dict]:
    """POST dataframe_records; the HTTP status and the JSON answer. ensure_ascii=False: non-ASCII
    characters go as UTF-8, not as \\u escapes."""
    body = json.dumps({"dataframe_records": records}, ensure_ascii=ensure_ascii).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_mlflow_models_serve_answers_with_labels_and_probabilities(served):
    status, answer = invoke(served, [{"text": "A wonderful film."}, {"text": "Dull, far too long."}])
    predictions = answer["predictions"]
    assert status == 200
    assert [p["label"] for p in predictions] == ["positive", "positive"]
    for p in predictions:
        assert p["prob_positive"] > 0.99 and p["prob_negative"] + p["prob_positive"] == pytest.approx(1.0)


@pytest.mark.parametrize("records,match", [
    ([{"text": "fine"}, {"text": None}], "row 2: text is null"),
    ([{"text": "fine"}, {"text": "ok"}, {"text": 42}], "row 3: text is a int"),
    ([{"text": "   "}], "row 1: the text is unusable (empty text), as ingest would quarantine it"),
    # What ingest quarantines is refused for the same reason: these normalise to nothing.
    ([{"text": "fine"}, {"text": "\u200b\u200b"}], "row 2: the text is unusable (empty after normalisation)"),
    ([{"text": "\x00\x00"}], "row 1: the text is unusable (only NUL characters)"),
    ([{"text": "<br /><br />"}], "row 1: the text is unusable (empty after normalisation)"),
    ([{"text": "&nbsp;"}], "row 1: the text is unusable (empty after normalisation)"),
    # a JSON escape of half a surrogate pair: a 400 naming the row, not a 500 from the tokenizer
    ([{"text": "fine"}, {"text": "bad \ud83d"}],
     "row 2: the text is unusable (code points that cannot be written as UTF-8 (lone surrogates))"),
    ([{"text": "fine"}] * (MAX_ROWS_PER_REQUEST + 1),
     f"{MAX_ROWS_PER_REQUEST + 1} rows, more than the {MAX_ROWS_PER_REQUEST} one request may hold"),
])
def test_bad_requests_are_refused_with_400_naming_the_row(served, records, match):
    status, answer = invoke(served, records)
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert match in answer["message"]


def test_a_10_mb_text_is_answered_quickly(served):
    start = time.monotonic()
    status, answer = invoke(served, [{"text": "far too long and dull " * 500_000}, {"text": "\r" * 1_000_000 + "x"},
                                     {"text": "ab" * 5_000_000}])  # the last: 10 MB without whitespace
    assert status == 200 and [p["label"] for p in answer["predictions"]] == ["positive"] * 3
    assert time.monotonic() - start < REQUEST_TIMEOUT_S  # it once timed out after a minute (504)


def test_a_request_is_capped_in_utf8_bytes_of_all_its_texts(served):
    # "é" is two bytes of UTF-8: these rows hold exactly the limit in bytes, half of it in characters.
    fits = [{"text": "fine"}, {"text": "é" * ((SERVED_MAX_BYTES - 4) // 2)}]
    status, answer = invoke(served, fits, ensure_ascii=False)
    assert status == 200 and [p["label"] for p in answer["predictions"]] == ["positive"] * 2
    status, answer = invoke(served, [*fits, {"text": "x"}], ensure_ascii=False)  # one byte more
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert (  # after MLflow's "Failed to predict data '<the frame>'."
        f"the request's texts hold more than the {SERVED_MAX_BYTES:,} bytes (UTF-8) one request may hold: "
        f"at least {SERVED_MAX_BYTES + 1:,} bytes by row 3; split it into smaller requests, or raise the limit with "
        f"{MAX_REQUEST_BYTES_ENV} where the model loads") in answer["message"]


def test_size_over_stops_at_the_first_row_past_the_limit():
    assert size_over(["ab", "é" * 3, None], 8) is None  # 2 + 6 bytes; a non-string counts nothing
    assert size_over(["ab", "é" * 3, "c", "é" * 10**6], 8) == (3, 9)
    assert size_over(["ab", "é" * 5], 8) == (2, 12)  # encoded: 5 characters could have fitted
    assert size_over(["ab", "é" * 10**7], 8) == (2, 10**7 + 2)  # not encoded: more characters than bytes left
    assert size_over(["\ud83d"], 2) == (1, 3)  # a lone surrogate, as a JSON escape gives it: 3 bytes


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e6", "16MiB", "²"])
def test_a_bad_byte_limit_names_the_variable_and_the_fix(monkeypatch, value):
    monkeypatch.setenv(MAX_REQUEST_BYTES_ENV, value)
    with pytest.raises(BertpipeError, match=rf"^{MAX_REQUEST_BYTES_ENV}='.*': must be a whole number of bytes "
                                            rf"above 0, e.g. {MAX_REQUEST_BYTES_ENV}={DEFAULT_MAX_REQUEST_BYTES} "):
        max_request_bytes()


def test_the_byte_limit_is_the_default_or_the_variable(monkeypatch):
    monkeypatch.delenv(MAX_REQUEST_BYTES_ENV, raising=False)
    assert max_request_bytes() == DEFAULT_MAX_REQUEST_BYTES == 16 * 2**20
    monkeypatch.setenv(MAX_REQUEST_BYTES_ENV, " 1000 ")
    assert max_request_bytes() == 1000
