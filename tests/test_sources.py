"""Each source kind on small files the tests write, and each kind of unreadable input."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import importlib.metadata
import json
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from bertpipe.artifacts import file_digest
from bertpipe.config import URL_AUTH_ENV, IngestParams
from bertpipe.embedded import movie_reviews_csv
from bertpipe.params import ParamsError, from_mapping, read_yaml
from bertpipe.sources import SourceError, _Redirects, embedded_origin, load_source, url_format
from tests.conftest import ROOT

ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("great, really great", "pos")]


def params(**values) -> IngestParams:
    """The project's ingest section with values overridden (label names from the data)."""
    base = read_yaml(ROOT / "params.yaml")["ingest"]
    return from_mapping(IngestParams, "ingest", {**base, "label_names": [], **values}, "params.yaml")


def load(tmp_path: Path, **values) -> pd.DataFrame:
    return load_source(params(**values), tmp_path / "cache").rows


def write_csv(path: Path, sep: str = ",") -> Path:
    pd.DataFrame({"id": [7, 8, 9], "review": [t for t, _ in ROWS], "sentiment": [lab for _, lab in ROWS],
                  "extra": ["x", "y", "z"]}).to_csv(path, sep=sep, index=False)
    return path


@pytest.mark.parametrize("source,sep,name", [("csv", ",", "r.csv"), ("tsv", "\t", "r.tsv")])
def test_delimited_files_with_configured_columns(tmp_path, source, sep, name):
    path = write_csv(tmp_path / name, sep)
    rows = load(tmp_path, source=source, path=str(path), text_column="review", label_column="sentiment")
    assert rows["text"].tolist() == [t for t, _ in ROWS]
    assert rows["label"].tolist() == ["pos", "neg", "pos"]
    assert rows["location"].tolist() == ["line 2", "line 3", "line 4"]
    assert rows["source_row"].tolist() == [0, 1, 2] and set(rows["source_split"]) == {"train"}


def test_csv_quoted_line_breaks_bom_blank_lines_and_gzip(tmp_path):
    content = '\ufefftext,label\n"two\nlines, quoted",1\n\n"say ""hi""",0\n'
    (tmp_path / "r.csv").write_text(content, encoding="utf-8")
    rows = load(tmp_path, source="csv", path=str(tmp_path / "r.csv"))
    assert rows["text"].tolist() == ["two\nlines, quoted", 'say "hi"']
    assert rows["location"].tolist() == ["line 2", "line 5"]  # where each record starts
    with gzip.open(tmp_path / "r.csv.gz", "wt", encoding="utf-8") as f:
        f.write(content)
    assert load(tmp_path, source="csv", path=str(tmp_path / "r.csv.gz"))["text"].tolist() == rows["text"].tolist()


def test_jsonl_with_extra_keys_and_missing_values(tmp_path):
    lines = [{"text": "a fine film", "label": 1, "user": "u1"}, {"text": "no label here"}, {"text": None, "label": 0}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    rows = load(tmp_path, source="jsonl", path=str(path))
    assert rows["text"].tolist() == ["a fine film", "no label here", None]
    assert rows["label"].tolist() == [1, None, 0]
    assert rows["location"].tolist() == ["line 1", "line 2", "line 4"]


def test_parquet_with_integer_labels(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"body": ["good", "bad"], "y": [1, 0], "other": [0.5, 0.1]}).to_parquet(path)
    rows = load(tmp_path, source="parquet", path=str(path), text_column="body", label_column="y")
    assert rows["text"].tolist() == ["good", "bad"] and rows["label"].tolist() == [1, 0]
    assert rows["location"].tolist() == ["row 1", "row 2"]


def write_aclimdb(root: Path) -> Path:
    for split, cls, name, text in [("train", "pos", "10_9.txt", "great fun"), ("train", "pos", "2_8.txt", "lovely"),
                                   ("train", "neg", "0_1.txt", "awful"), ("test", "pos", "0_10.txt", "superb"),
                                   ("test", "neg", "3_2.txt", "boring"), ("train", "unsup", "5_0.txt", "no label")]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_text(text)
    return root


def test_aclimdb_folder_layout_keeps_test_split_and_ignores_unsup(tmp_path):
    root = write_aclimdb(tmp_path / "data" / "aclImdb")
    table = load_source(params(source="aclimdb", path=str(tmp_path / "data")), tmp_path / "cache")  # parent works
    rows = table.rows
    assert rows["location"].tolist() == ["train/neg/0_1.txt", "train/pos/2_8.txt", "train/pos/10_9.txt",
                                         "test/neg/3_2.txt", "test/pos/0_10.txt"]  # numeric id order
    assert rows["source_split"].tolist() == ["train", "train", "train", "test", "test"]
    assert table.label_map == {"neg": "negative", "pos": "positive"}
    assert "no label" not in rows["text"].tolist()
    assert (root / "train").is_dir()


def test_huggingface_dataset_saved_to_disk(tmp_path):
    import datasets  # the hf extra; .ci/run installs it, so these never skip
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    data = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["fine", "poor", "unlabelled"], "label": [1, 0, -1]},
                                            features=features),
        "test": datasets.Dataset.from_dict({"sentence": ["grand"], "label": [1]}, features=features),
    })
    data.save_to_disk(str(tmp_path / "hf"))
    table = load_source(params(source="huggingface", hf_dataset=str(tmp_path / "hf"), hf_test_split="test",
                               text_column="sentence"), tmp_path / "cache")
    assert table.rows["text"].tolist() == ["fine", "poor", "unlabelled", "grand"]
    assert table.rows["label"].tolist() == [1, 0, None, 1]  # -1 is "no label" in datasets
    assert table.rows["source_split"].tolist() == ["train", "train", "train", "test"]
    assert table.label_map == {"0": "neg", "1": "pos"}
    with pytest.raises(SourceError, match=r"ingest.hf_test_split='validation': .* no such split; its splits are: "
                                          r"train, test"):
        load_source(params(source="huggingface", hf_dataset=str(tmp_path / "hf"), hf_test_split="validation",
                           text_column="sentence"), tmp_path / "cache")


def test_huggingface_offline_and_not_cached_says_so(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no waiting on the network
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceError, match=r"ingest.hf_dataset='no-such-org/no-such-data' .*cannot be loaded: it is "
                                          r"not in the local cache .*save_to_disk"):
        load(tmp_path, source="huggingface", hf_dataset="no-such-org/no-such-data")


def test_huggingface_without_datasets_installed_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(SourceError, match=r"needs the `datasets` library.*pip install -e \"\.\[hf\]\""):
        load(tmp_path, source="huggingface", hf_dataset="stanfordnlp/imdb")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path, handler=None):
    """A local HTTP server for folder (or with handler, a request handler class) on 127.0.0.1,
    stopped when the block ends."""
    handler = handler or functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def no_proxy(monkeypatch) -> None:
    """Requests to the local server go straight to it, whatever proxy the environment sets."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_url_is_checked_downloaded_once_and_read_from_cache(tmp_path, no_proxy):
    site = tmp_path / "site"
    site.mkdir()
    path = write_csv(site / "reviews.csv")
    digest = sha256(path)
    values = dict(source="url", sha256=digest, text_column="review", label_column="sentiment")
    with serve(site) as base:
        rows = load(tmp_path, url=f"{base}/reviews.csv", **values)
        with pytest.raises(SourceError, match=r"the downloaded file has sha256 [0-9a-f]{64}, but ingest.sha256 is "
                                              r"0{64}; if the file changed on purpose"):
            load(tmp_path, **{**values, "sha256": "0" * 64}, url=f"{base}/reviews.csv")
        with pytest.raises(SourceError, match=r"cannot be downloaded \(HTTP 404 File not found\)"):
            load(tmp_path, **{**values, "sha256": "1" * 64}, url=f"{base}/missing.csv")
    assert rows["text"].tolist() == [t for t, _ in ROWS]
    assert (tmp_path / "cache" / "downloads" / digest / "reviews.csv").is_file()
    assert not list((tmp_path / "cache" / "downloads").glob("0*/*"))  # a bad download leaves nothing
    # The server is gone: the cached copy is used.
    again = load(tmp_path, url=f"{base}/reviews.csv", **values)
    assert again["text"].tolist() == rows["text"].tolist()


def test_url_to_an_aclimdb_archive_is_unpacked_once(tmp_path, no_proxy):
    write_aclimdb(tmp_path / "src" / "aclImdb")
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "aclImdb_v1.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    with serve(site) as base:
        rows = load(tmp_path, source="url", url=f"{base}/aclImdb_v1.tar.gz", sha256=sha256(site / "aclImdb_v1.tar.gz"))
    assert len(rows) == 5 and rows["source_split"].tolist().count("test") == 2


class Streaming(Quiet):
    """GET: BODY_BYTES of CSV, BLOCK bytes at a time, each after PAUSE_S; counts what it sent.
    Content-Length only when LENGTH is set (else the body ends when the connection closes)."""

    BODY_BYTES, BLOCK, PAUSE_S, LENGTH = 32 << 20, 64 << 10, 0.0, None
    sent: list[int]
    done: threading.Event

    def do_GET(self) -> None:
        self.send_response(200)
        if self.LENGTH is not None:
            self.send_header("Content-Length", str(self.LENGTH))
        self.end_headers()
        block = b"x" * self.BLOCK
        try:
            while self.sent[0] < self.BODY_BYTES:
                time.sleep(self.PAUSE_S)
                self.wfile.write(block)
                self.sent[0] += len(block)
        except OSError:  # the client hung up
            pass
        finally:
            self.close_connection = True
            self.done.set()


def streaming(**settings) -> type[Streaming]:
    return type("Site", (Streaming,), {"sent": [0], "done": threading.Event(), **settings})


def url_values(base: str, **values) -> dict:
    return {"source": "url", "url": f"{base}/reviews.csv", "sha256": "0" * 64, **values}


def test_url_download_stops_as_soon_as_it_passes_the_byte_cap(tmp_path, no_proxy):
    site = streaming()
    with serve(tmp_path, site) as base:
        with pytest.raises(SourceError, match=r"ingest.url='http://127.0.0.1:\d+/reviews.csv': more than 1048576 "
                                              r"bytes received, more than ingest.url_max_bytes=1048576; raise "
                                              r"ingest.url_max_bytes"):
            load(tmp_path, **url_values(base, url_max_bytes=1 << 20))
        assert site.done.wait(10)
    # Stopped early: what the server got out before the hang-up is the cap and the socket buffers.
    assert site.sent[0] < Streaming.BODY_BYTES // 2
    assert not list((tmp_path / "cache").rglob("*.csv*"))  # no partial file left behind


def test_url_download_refuses_a_declared_length_over_the_cap_before_reading(tmp_path, no_proxy):
    with serve(tmp_path, streaming(LENGTH=Streaming.BODY_BYTES, PAUSE_S=0.01)) as base:
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"the server says the file has 33554432 bytes, more than "
                                              r"ingest.url_max_bytes=1000"):
            load(tmp_path, **url_values(base, url_max_bytes=1000))
        assert time.monotonic() - started < 2  # the whole body takes 5 s to send


def test_url_download_stops_at_its_deadline(tmp_path, no_proxy):
    # 100 bytes every 50 ms: never a stalled read, so only the total deadline stops it (after ~20 s).
    with serve(tmp_path, streaming(BODY_BYTES=40_000, BLOCK=100, PAUSE_S=0.05)) as base:
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"reviews.csv': not downloaded within ingest.url_deadline_s=0.5 s "
                                              r"\(\d+ bytes so far\); raise ingest.url_deadline_s"):
            load(tmp_path, **url_values(base, url_deadline_s=0.5))
        assert time.monotonic() - started < 3


def test_a_redirect_from_https_to_http_is_refused():
    """Checked on the redirect handler itself: a local https server would need a certificate
    that the download trusts, which only a test hook in the download could arrange."""
    url = "https://data.example.org/reviews.csv"
    redirects = _Redirects(url, ("Authorization", "Bearer s3cret"))
    with pytest.raises(SourceError, match=r"ingest.url='https://data.example.org/reviews.csv': redirected from https "
                                          r"to 'http://mirror.example.org/r.csv\?sig=\*\*\*', which is not https"):
        redirects.redirect_request(urllib.request.Request(url), None, 302, "Found", {},
                                   "http://mirror.example.org/r.csv?sig=abc")
    same = redirects.redirect_request(urllib.request.Request(url), None, 302, "Found", {},
                                      "https://data.example.org/v2/reviews.csv")
    other = redirects.redirect_request(urllib.request.Request(url), None, 302, "Found", {},
                                       "https://cdn.example.net/reviews.csv")
    assert same.get_header("Authorization") == "Bearer s3cret"  # the same origin keeps the credential
    assert other.full_url == "https://cdn.example.net/reviews.csv" and not other.has_header("Authorization")


class Redirecting(Quiet):
    """/go?to=<url> redirects there; every request's Authorization header is recorded."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/go?to="):
            self.send_response(302)
            self.send_header("Location", urllib.parse.unquote(self.path[len("/go?to="):]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


def test_the_auth_header_from_the_environment_goes_to_the_url_and_its_own_origin_only(tmp_path, no_proxy,
                                                                                      monkeypatch, caplog):
    path = write_csv(tmp_path / "reviews.csv")
    monkeypatch.setenv(URL_AUTH_ENV, "Authorization: Bearer s3cret")
    handler = type("Site", (Redirecting,), {"seen": []})
    with serve(tmp_path, functools.partial(handler, directory=str(tmp_path))) as base, caplog.at_level("DEBUG"):
        port = base.rsplit(":", 1)[1]
        hops = f"http://localhost:{port}/reviews.csv"  # another host name: another origin
        url = f"{base}/go?to={urllib.parse.quote(f'{base}/go?to={urllib.parse.quote(hops)}')}"
        rows = load(tmp_path, **url_values(base, url=url, sha256=sha256(path), url_format="csv",
                                           text_column="review", label_column="sentiment"))
    assert rows["text"].tolist() == [t for t, _ in ROWS]
    assert [auth for _, auth in handler.seen] == ["Bearer s3cret", "Bearer s3cret", None]
    assert "s3cret" not in caplog.text
    monkeypatch.setenv(URL_AUTH_ENV, "Bearer s3cret")
    with pytest.raises(SourceError, match=rf"{URL_AUTH_ENV} is not one header 'Name: value'") as err:
        load(tmp_path, **url_values(base, url=f"{base}/other.csv"))
    assert "s3cret" not in str(err.value)


def test_url_format_from_the_name():
    assert url_format("https://x.org/a/reviews.csv.gz?raw=1", "auto") == "csv"
    assert url_format("https://x.org/aclImdb_v1.tar.gz", "auto") == "aclimdb"
    assert url_format("https://x.org/data", "jsonl") == "jsonl"
    with pytest.raises(SourceError, match=r"cannot tell the format .*set ingest.url_format"):
        url_format("https://x.org/data", "auto")


@pytest.mark.parametrize("name,content,values,match", [
    ("r.csv", "id,text,label\n1,good,pos\n", {"text_column": "review"},
     r"ingest.text_column='review': .*r\.csv has no such column; its columns are: id, text, label; set "
     r"ingest.text_column to one of them"),
    ("r.csv", "text,label\ngood,pos\nbad,neg,extra\n", {},
     r"r\.csv line 3: 3 fields where the header has 2; quote fields that contain a ','"),
    ("r.csv", 'text,label\n"good" film,pos\n', {}, r"r\.csv line 2: cannot be parsed as CSV"),
    ("r.csv", "", {}, r"r\.csv: the file is empty; a CSV file needs a header line"),
    ("r.tsv", "text\tlabel\ngood\tpos\tx\n", {"source": "tsv"}, r"r\.tsv line 2: 3 fields .*a tab"),
    ("r.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", label: 0}\n', {"source": "jsonl"},
     r"r\.jsonl line 2: not valid JSON \(Expecting property name enclosed in double quotes at column 17\)"),
    ("r.jsonl", '["good", 1]\n', {"source": "jsonl"}, r"r\.jsonl line 1: a JSON list, not an object"),
    ("r.jsonl", '{"review": "good", "label": 1}\n', {"source": "jsonl"},
     r"ingest.text_column='text': .*r\.jsonl has no such column; its columns are: label, review"),
    ("r.parquet", "not parquet", {"source": "parquet"}, r"r\.parquet: cannot be read as parquet"),
])
def test_unreadable_files_name_the_line_or_column_and_the_fix(tmp_path, name, content, values, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(SourceError, match=match):
        load(tmp_path, **{"source": "csv", "path": str(tmp_path / name), **values})


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(SourceError, match=r"ingest.path='.*nope\.csv': no such file"):
        load(tmp_path, source="csv", path=str(tmp_path / "nope.csv"))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("x")
    with pytest.raises(SourceError, match=r"not an aclImdb folder; expected train/<class>/\*\.txt .*found: a\.txt"):
        load(tmp_path, source="aclimdb", path=str(tmp_path / "flat"))


@pytest.mark.parametrize("values,match", [
    ({"source": "csv", "path": ""}, r"ingest.path='' in params.yaml: required with source 'csv': the data file"),
    ({"embedded_sha256": "abc"}, r"ingest.embedded_sha256='abc' .*sha256 \(64 hex digits\) of the CSV in the "
                                 r"movie-reviews package"),
    ({"source": "huggingface"}, r"ingest.hf_dataset='' in params.yaml: required with source 'huggingface'"),
    ({"source": "url", "url": "ftp://x/y.csv", "sha256": "0" * 64}, r"ingest.url='ftp://x/y.csv' .*http"),
    ({"source": "url", "url": "https://x/y.csv", "sha256": "abc"}, r"ingest.sha256='abc' .*64 hex digits"),
    ({"source": "url", "url": "https://me:s3cret@x/y.csv", "sha256": "0" * 64},
     r"ingest.url='https://\*\*\*@x/y.csv' .*credential \(user info\).*set the environment variable "
     r"BERTPIPE_URL_AUTH_HEADER to the header"),
    ({"source": "url", "url": "https://x/y.csv?raw=1&X-Amz-Signature=s3cret", "sha256": "0" * 64},
     r"ingest.url='https://x/y.csv\?raw=\*\*\*&X-Amz-Signature=\*\*\*' .*\(query parameter 'X-Amz-Signature'\)"),
    ({"url_max_bytes": 0}, r"ingest.url_max_bytes=0 .*must be >= 1"),
    ({"url_deadline_s": 0}, r"ingest.url_deadline_s=0 .*must be > 0"),
    ({"source": "excel"}, r"ingest.source='excel' .*must be one of 'imdb', 'rotten_tomatoes', 'csv'"),
    ({"text_column": "t", "label_column": "t"}, r"ingest.label_column='t' .*must differ from text_column"),
    ({"label_names": ["only"]}, r"ingest.label_names=\['only'\] .*at least two classes"),
])
def test_source_params_are_checked_at_start(values, match):
    with pytest.raises(ParamsError, match=match):
        params(**values)


HUGE = "a long review, " * 700_000  # 10.5 MB in one field, far over the csv module's 128 KiB default


@pytest.mark.parametrize("source", ["csv", "tsv", "jsonl", "parquet"])
def test_a_10_mb_text_is_a_normal_row(tmp_path, source):
    frame = pd.DataFrame({"text": ["short", HUGE, "after"], "label": ["pos", "neg", "pos"]})
    path = tmp_path / f"r.{source}"
    if source in ("csv", "tsv"):
        frame.to_csv(path, sep="," if source == "csv" else "\t", index=False)
    elif source == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    rows = load(tmp_path, source=source, path=str(path))
    assert rows["text"].tolist() == ["short", HUGE, "after"] and rows["label"].tolist() == ["pos", "neg", "pos"]
    if source in ("csv", "tsv"):
        assert rows["location"].tolist() == ["line 2", "line 3", "line 4"]


def test_line_numbers_stay_right_after_a_huge_field(tmp_path):
    (tmp_path / "r.csv").write_text(f'text,label\n"{HUGE}",pos\nbad,neg,extra\n')
    with pytest.raises(SourceError, match=r"r\.csv line 3: 3 fields where the header has 2"):
        load(tmp_path, source="csv", path=str(tmp_path / "r.csv"))


def test_file_source_left_at_the_placeholder_folder_names_the_fix(tmp_path):
    with pytest.raises(SourceError, match=r"ingest.path='data/raw': no such file; set ingest.path to your data file"):
        load(tmp_path, source="csv")  # params.yaml's path: the placeholder folder data/raw


def test_embedded_data_records_package_version_and_digest():
    origin = embedded_origin("imdb", params().embedded_sha256)
    assert origin["version"] == importlib.metadata.version("movie-reviews")
    assert origin["sha256"] == file_digest(movie_reviews_csv()) == params().embedded_sha256


def test_changed_embedded_data_is_refused_naming_the_new_digest():
    digest = file_digest(movie_reviews_csv())
    with pytest.raises(SourceError, match=rf"movie-reviews .* has sha256 {digest}, but ingest.embedded_sha256="
                                          rf"'{'0' * 64}'.* set `embedded_sha256: {digest}` in the ingest section"):
        load_source(params(embedded_sha256="0" * 64), Path("unused-cache"))
