"""Credentials in URLs never reach output: masking, the logging set-up, uncaught errors, the
stdin filter ci/retrain.sh uses, and real commands run against a tracking URI with secrets."""

from __future__ import annotations

import json
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from bertpipe.redact import (
    URL_RE,
    PlainError,
    _mask_rest,
    mask_mapping,
    mask_text,
    mask_url,
    parse_url,
    url_credential,
)
from tests.conftest import ROOT, train_args
from tests.mlops_helpers import sh
from tests.test_sources import no_proxy  # noqa: F401 - a fixture
from tests.test_tracking import free_port, mlflow_server  # noqa: F401 - a fixture

SECRET, TOKEN = "s3cr3t-pa55", "t0ken-value"


@pytest.mark.parametrize("url, masked", [
    (f"https://alice:{SECRET}@mlflow.example.org/api?token={TOKEN}&x=1#top",
     "https://***@mlflow.example.org/api?token=***&x=***#top"),
    (f"http://{SECRET}@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
    (f"s3://bucket/key?X-Amz-Signature={TOKEN}", "s3://bucket/key?X-Amz-Signature=***"),
    ("ssh://me@nas.example.org/srv/dvc", "ssh://***@nas.example.org/srv/dvc"),
    ("https://mlflow.example.org:8443/", "https://mlflow.example.org:8443/"),  # nothing to hide
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("models:/clf@champion", "models:/clf@champion"),  # not a URL with an authority
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize("url, found", [
    ("https://me:pw@h/x.csv", "user info"), ("https://tok@h/x.csv", "user info"),
    *[(f"https://h/x.csv?raw=1&{name}=v", f"query parameter {name!r}") for name in (
        "token", "access_token", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "api_key", "apiKey",
        "key", "sig", "Signature", "password", "client_secret", "private-token", "auth")],
    ("https://h/x.csv?raw=1&dl=0&format=csv&monkey=1&keyword=a&v=2", None), ("https://h/a@b/x.csv", None),
])
def test_url_credential_finds_user_info_and_credential_names_in_the_query(url, found):
    assert url_credential(url) == found


def test_mask_text_finds_every_url_in_a_line_and_mask_mapping_every_value():
    line = f"failed: 'https://u:{SECRET}@h/x' then gs://b/o?sig={TOKEN} (retrying)"
    assert mask_text(line) == "failed: 'https://***@h/x' then gs://b/o?sig=*** (retrying)"
    tags = mask_mapping({"origin": {"url": f"https://h/f.csv?token={TOKEN}"}, "rows": 3})
    assert tags == {"origin": {"url": "https://h/f.csv?token=***"}, "rows": 3}


# Pieces of near-URLs: scheme characters, separators, user info, queries, quotes and word characters
# around them (a scheme must start at a word boundary: not after "_" or "é").
URL_PIECES = ["a", "Z", "1", "_", "é", ".", "+", "-", ":", "/", "//", "://", "s3://", "https://", "@", "?", "=", "&",
              "#", " ", "\n", "'", '"', "<", ">", "`", "u:p@h", "x?token=t", "ab.cd"]


@given(st.lists(st.sampled_from(URL_PIECES), max_size=40).map("".join))
@settings(max_examples=1000, deadline=None)
def test_mask_text_masks_what_the_former_pattern_masked(text):
    """The former mask_text: URL_RE.sub, quadratic on dotted runs; the same output, in linear time."""
    assert mask_text(text) == URL_RE.sub(lambda m: m.group(1) + _mask_rest(m.group(2)), text)


# Each 1 MB: dotted runs (the former pattern: 0.32 s on 16 KB, 4x per doubling), runs of scheme
# characters ending in ":", ":/", ":// " (no rest), and a megabyte of real URLs.
NEAR_URLS = ["a.", "a.:", "ab+", "-a", "a:", "a:/", "a:// ", "1a.", f"https://u:{SECRET}@h/x?t={TOKEN} "]


@pytest.mark.parametrize("unit", NEAR_URLS)
def test_mask_text_is_linear_on_near_urls(unit):
    """A guard against a quadratic pattern, not a speed claim: linear takes ~30 ms a megabyte here,
    quadratic minutes. The 64 KB text goes first, so a quadratic one fails in seconds, not hours."""
    for size in (65_536, 1_048_576):
        text = unit * (size // len(unit))
        start = time.process_time()
        masked = mask_text(text)
        assert time.process_time() - start < 2.0, f"{unit!r} x {size // len(unit)}"
    assert SECRET not in masked and (TOKEN not in masked) and len(masked) <= len(text)


@pytest.mark.parametrize("url, why", [
    (f"http://u:{SECRET}@127.0.0.1:99999", r"not a valid URL \(Port out of range"),
    (f"http://u:{SECRET}@127.0.0.1:port", r"not a valid URL \(Port could not be cast"),
    ("https:///no-host", "not a valid URL: no host name"),
])
def test_a_malformed_uri_is_a_clear_error_that_hides_its_secret(url, why):
    with pytest.raises(PlainError, match=f"MLFLOW_TRACKING_URI='.*' is {why}") as err:
        parse_url(url, "MLFLOW_TRACKING_URI")
    assert SECRET not in str(err.value)


def python(*code_or_args: str, env: dict[str, str | None] | None = None):
    return sh(ROOT, sys.executable, *code_or_args, env=env, check=False)


def test_log_lines_and_uncaught_errors_are_masked():
    done = python("-c", "import logging; from bertpipe.logs import setup_logging; setup_logging(); "
                        f"logging.getLogger('x').warning('remote %s', 'https://u:{SECRET}@h/p?token={TOKEN}'); "
                        f"raise RuntimeError('cannot reach ssh://root:{SECRET}@nas/srv')")
    assert done.returncode == 1
    assert "remote https://***@h/p?token=***" in done.stderr and "ssh://***@nas/srv" in done.stderr
    assert "Traceback" in done.stderr  # an unexpected error keeps its traceback, masked
    assert SECRET not in done.stderr + done.stdout and TOKEN not in done.stderr + done.stdout


def test_the_filter_masks_other_programs_output():
    done = sh(ROOT, "bash", "-c", f"echo 'ERROR: s3://AKIA:{SECRET}@bucket/x?X-Amz-Signature={TOKEN}' | "
                                  f"{sys.executable} -m bertpipe.redact")
    assert done.stdout == "ERROR: s3://***@bucket/x?X-Amz-Signature=***\n"


@pytest.mark.usefixtures("no_proxy")
def test_a_download_url_keeps_its_token_out_of_the_data_version_logs_and_errors(tmp_path, caplog):
    from bertpipe.sources import SourceError, load_source
    from tests.test_sources import params, serve, sha256, write_csv

    site = tmp_path / "site"
    site.mkdir()
    values = {"source": "url", "sha256": sha256(write_csv(site / "reviews.csv")), "text_column": "review",
              "label_column": "sentiment"}
    with serve(site) as base, caplog.at_level("INFO"):
        # A credential's name (token=...) is refused at params check; other query values are masked too.
        table = load_source(params(url=f"{base}/reviews.csv?raw={TOKEN}", **values), tmp_path / "cache")
        with pytest.raises(SourceError, match=r"ingest.url='http://127.0.0.1:\d+/missing.csv\?raw=\*\*\*'"):
            load_source(params(url=f"{base}/missing.csv?raw={TOKEN}", **{**values, "sha256": "1" * 64}),
                        tmp_path / "cache")
    assert table.origin["url"] == f"{base}/reviews.csv?raw=***"  # what DatasetMeta.origin records
    assert "downloading http://127.0.0.1:" in caplog.text and TOKEN not in caplog.text


@pytest.mark.slow
def test_a_tracking_uri_with_credentials_never_appears_in_output(tmp_path, tokenized):
    closed = f"http://mlflow-user:{SECRET}@127.0.0.1:{free_port()}/?token={TOKEN}"
    train = python("-m", "stages.train", *train_args(tmp_path, tokenized), env={"MLFLOW_TRACKING_URI": closed})
    gate = python("-m", "bertpipe.promote", "--params", str(tokenized), "--run-file", str(tmp_path / "run.json"),
                  "--split", str(tmp_path / "sp"), env={"MLFLOW_TRACKING_URI": closed})
    malformed = python("-m", "bertpipe.promote", "--params", str(tokenized), "--run-file", "run.json",
                       "--split", "sp", env={"MLFLOW_TRACKING_URI": f"http://u:{SECRET}@127.0.0.1:port"})
    for done in (train, gate, malformed):
        out = done.stdout + done.stderr
        assert done.returncode == 1 and SECRET not in out and TOKEN not in out, out[-2000:]
        assert "Traceback" not in out  # a clear one-line error
    for done in (train, gate):
        assert "error: MLflow tracking server http://127.0.0.1:" in done.stderr  # the user info moved out
        assert "/?token=*** (from MLFLOW_TRACKING_URI) did not answer" in done.stderr
    assert "error: MLFLOW_TRACKING_URI='http://***@127.0.0.1:port' is not a valid URL" in malformed.stderr


@pytest.mark.slow
def test_training_against_a_server_with_credentials_in_the_uri_never_prints_them(tmp_path, tokenized,
                                                                                mlflow_server):  # noqa: F811
    with_secret = mlflow_server.replace("http://", f"http://trainer:{SECRET}@")
    done = python("-m", "stages.train", *train_args(tmp_path, tokenized), env={"MLFLOW_TRACKING_URI": with_secret})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert SECRET not in out and "trainer:" not in out
    assert "View run" not in out  # MLflow's run link, which would quote a token in the URI, is off
    run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
    assert MlflowClient(mlflow_server).get_run(run_id).data.params["batch_size"] == "8"  # it logged there


def test_the_mlflow_ui_link_stays_readable_and_tokens_beside_it_do_not():
    from bertpipe.tracking import runs_link

    link = runs_link("1")
    assert "workflowType=machine_learning" in link and mask_text(f"open {link}") == f"open {link}"
    assert mask_text(f"{link}&token=abc") == f"{link}&token=***"
