"""Raw data sources. Each reader returns every row it read, in a fixed order, untouched, as
frames of at most a chosen number of rows: files (CSV, TSV, JSONL, parquet) are read as the
frames are asked for, so memory holds one frame, not the file; the small sources (embedded,
aclImdb, Hugging Face) are read whole and handed out in frames all the same.

A source is one of: the IMDB reviews or Rotten Tomatoes sentences shipped in `movie-reviews`;
a local CSV, TSV, JSONL or parquet file; a folder in the aclImdb layout; a Hugging Face
`datasets` id; an http(s) URL checked against its sha256 and downloaded once into a cache,
within a byte cap and a deadline (its credentials in a header from the environment, never in
the URL: bertpipe.config.URL_AUTH_ENV).

Readers keep bad rows (validation sets them aside with a reason) but fail on a file that
cannot be parsed, naming the file, the line and the fix. Bytes that are not UTF-8 are read
with errors="surrogateescape", so validation can quarantine exactly the rows that hold them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertpipe.artifacts import atomic_dir, atomic_path, file_digest, jsonl_objects
from bertpipe.config import URL_AUTH_ENV, IngestParams
from bertpipe.embedded import movie_reviews_csv
from bertpipe.errors import BertpipeError
from bertpipe.redact import mask_url

log = logging.getLogger(__name__)

RAW_COLUMNS = ["source_row", "location", "source_split", "text", "label"]
CHUNK_ROWS = 50_000  # rows per frame unless the caller asks for another size
SENTIMENT_NAMES = {"0": "negative", "1": "positive"}
ACLIMDB_NAMES = {"neg": "negative", "pos": "positive"}
ACLIMDB_IGNORED = {"unsup"}  # unlabelled reviews
DOWNLOAD_TIMEOUT_S = 60
# The csv module refuses fields over 128 KiB by default; a long review is a normal row (tokenize
# cuts it), so a field may be as long as the platform allows.
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
URL_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".tgz": "aclimdb", ".tar": "aclimdb"}


class SourceError(BertpipeError, ValueError):
    """The source cannot be read; the message names the file, line or column and the fix."""


# A row as readers yield it: (source_row, location, source_split, text, label).
Row = tuple[int, str, str, Any, Any]


@dataclass(frozen=True)
class RawTable:
    """Every row of a source, in frames with RAW_COLUMNS; label_map renames raw labels to class names.

    read(n) reads the source from its start again each time it is called, n rows a frame; a file
    that cannot be parsed fails there, naming the line, when the reading reaches it.
    """

    read: Callable[[int], Iterator[pd.DataFrame]]
    describe: str  # for messages: the file, folder, dataset or URL
    label_map: dict[str, str] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)  # what was read, for meta.json

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        return self.read(rows)

    @property
    def rows(self) -> pd.DataFrame:
        """Every row in one frame: for small sources and tests; ingest reads chunks."""
        parts = list(self.chunks())
        return pd.concat(parts, ignore_index=True) if parts else _frame([])


def _frame(rows: list[Row]) -> pd.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(RAW_COLUMNS)
    return pd.DataFrame({
        "source_row": pd.Series(columns[0], dtype="int64"),
        "location": pd.Series(columns[1], dtype=object),
        "source_split": pd.Series(columns[2], dtype=object),
        # object, not pandas' str dtype: undecodable bytes are kept as lone surrogates
        "text": pd.Series(columns[3], dtype=object),
        "label": pd.Series(columns[4], dtype=object),
    })


def _frames(rows: Iterable[Row], size: int) -> Iterator[pd.DataFrame]:
    """rows cut into frames of size rows (the last one shorter)."""
    rows = iter(rows)
    while part := list(islice(rows, size)):
        yield _frame(part)


def _streamed(rows: Callable[[], Iterable[Row]], describe: str, **kwargs) -> RawTable:
    """A source read from its start on each call of rows(), a frame at a time."""
    return RawTable(lambda size: _frames(rows(), size), describe, **kwargs)


def _whole(rows: list[Row], describe: str, **kwargs) -> RawTable:
    """A source read once, whole, handed out in frames."""
    return RawTable(lambda size: _frames(rows, size), describe, **kwargs)


def _missing_column(key: str, name: str, where: str, columns: list[str]) -> SourceError:
    return SourceError(f"ingest.{key}={name!r}: {where} has no such column; its columns are: "
                       f"{', '.join(map(str, columns)) or '(none)'}; set ingest.{key} to one of them")


def _check_columns(where: str, columns: list[str], text_column: str, label_column: str) -> None:
    for key, name in (("text_column", text_column), ("label_column", label_column)):
        if name not in columns:
            raise _missing_column(key, name, where, columns)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _open_text(path: Path):
    """A text stream of a file (gzip when it ends in .gz), BOM dropped, bad bytes kept as surrogates."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape",
                                newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise SourceError(f"ingest.path={str(path)!r}: no such file; set ingest.path to your data file "
                          "(relative to the repository root)")
    return path


# --- the embedded sources ------------------------------------------------------------------------

def movie_reviews(subset: str) -> pd.DataFrame:
    """One subset ('imdb' or 'rotten_tomatoes') of the CSV in `movie-reviews`: source_row, text, label."""
    df = pd.read_csv(movie_reviews_csv(), dtype={"text": object, "label": "Int64", "source": object},
                     keep_default_na=False, na_values={"label": [""]})
    df.insert(0, "source_row", range(len(df)))  # row number in the CSV, header excluded
    df = df[df["source"] == subset]
    return df[["source_row", "text", "label"]].reset_index(drop=True)


def embedded_origin(subset: str, expected_sha256: str) -> dict[str, str]:
    """Package version and CSV digest of the embedded data, refused unless the digest is the one
    params expect: DVC does not see files inside an installed package, params it does."""
    csv, version = movie_reviews_csv(), importlib.metadata.version("movie-reviews")
    digest = file_digest(csv)
    if digest != expected_sha256.lower():
        raise SourceError(
            f"{csv} (movie-reviews {version}) has sha256 {digest}, but ingest.embedded_sha256="
            f"{expected_sha256!r} in params.yaml: the embedded data changed with the package. To ingest this "
            f"version, set `embedded_sha256: {digest}` in the ingest section (DVC then reruns ingest), or "
            "install the movie-reviews version that has the expected file")
    return {"package": "movie-reviews", "version": version, "file": csv.name, "sha256": digest, "subset": subset}


def read_movie_reviews(subset: str, expected_sha256: str) -> RawTable:
    origin = embedded_origin(subset, expected_sha256)
    df = movie_reviews(subset)
    # The package's own row numbers stay the ids, so both subsets keep theirs.
    rows = [(int(r), f"row {r + 1}", "train", t, None if pd.isna(v) else int(v))
            for r, t, v in zip(df["source_row"], df["text"], df["label"], strict=True)]
    return _whole(rows, f"{movie_reviews_csv()} ({subset})", label_map=SENTIMENT_NAMES, origin=origin)


# --- local files -----------------------------------------------------------------------------------

def _file_origin(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": file_digest(_existing_file(path))}


def read_delimited(path: Path, delimiter: str, text_column: str, label_column: str) -> RawTable:
    """A CSV or TSV file with a header line; fails on a line that cannot be parsed, naming it."""
    origin = _file_origin(path)
    return _streamed(lambda: _delimited_rows(path, delimiter, text_column, label_column), str(path), origin=origin)


def _delimited_rows(path: Path, delimiter: str, text_column: str, label_column: str) -> Iterator[Row]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(CSV_FIELD_LIMIT)
    source_row = 0
    with _open_text(_existing_file(path)) as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        line = 0
        try:
            header = next(reader, None)
            if header is None:
                raise SourceError(f"{path}: the file is empty; a {kind} file needs a header line naming "
                                  f"its columns ({text_column!r} and {label_column!r})")
            _check_columns(str(path), header, text_column, label_column)
            ti, li = header.index(text_column), header.index(label_column)
            line = reader.line_num
            for record in reader:
                start, line = line + 1, reader.line_num
                if not record:  # a blank line holds no row
                    continue
                if len(record) != len(header):
                    sep = "tab" if delimiter == "\t" else repr(delimiter)
                    raise SourceError(f"{path} line {start}: {len(record)} fields where the header has "
                                      f"{len(header)}; quote fields that contain a {sep} or a line break, "
                                      "or fix that line")
                yield source_row, f"line {start}", "train", record[ti], record[li]
                source_row += 1
        except csv.Error as err:
            raise SourceError(f"{path} line {reader.line_num}: cannot be parsed as {kind} ({err}); "
                              "check the quoting on that line (a quote inside a quoted field is written "
                              "twice: \"\")") from None


def read_jsonl(path: Path, text_column: str, label_column: str) -> RawTable:
    """One JSON object per line; fails on a line that is not one, naming it. A column that no line
    holds fails when the reading reaches the end of the file."""
    origin = _file_origin(path)
    return _streamed(lambda: _jsonl_rows(path, text_column, label_column), str(path), origin=origin)


def _jsonl_rows(path: Path, text_column: str, label_column: str) -> Iterator[Row]:
    keys: set[str] = set()
    example = json.dumps({text_column: "...", label_column: "..."})
    with _open_text(_existing_file(path)) as f:
        for source_row, (number, obj) in enumerate(jsonl_objects(f, str(path), example, SourceError)):
            keys.update(obj)
            yield source_row, f"line {number}", "train", _as_text(obj.get(text_column)), obj.get(label_column)
    _check_columns(str(path), sorted(keys), text_column, label_column)


def read_parquet_file(path: Path, text_column: str, label_column: str) -> RawTable:
    try:
        names = pq.read_schema(_existing_file(path)).names
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: cannot be read as parquet ({err}); check that it is a parquet file, "
                          "or set ingest.source to its format (csv, tsv, jsonl)") from None
    _check_columns(str(path), names, text_column, label_column)
    return RawTable(lambda size: _parquet_frames(path, text_column, label_column, size), str(path),
                    origin=_file_origin(path))


def _parquet_frames(path: Path, text_column: str, label_column: str, size: int) -> Iterator[pd.DataFrame]:
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=[text_column, label_column]):
        texts, labels = batch.column(text_column).to_pylist(), batch.column(label_column).to_pylist()
        yield _frame([(start + i, f"row {start + i + 1}", "train", _as_text(t), v)
                      for i, (t, v) in enumerate(zip(texts, labels, strict=True))])
        start += len(texts)


# --- the aclImdb folder layout ------------------------------------------------------------------

def _review_order(path: Path) -> tuple:
    """aclImdb names files <id>_<rating>.txt: numeric id order, then name."""
    head = path.stem.split("_", 1)[0]
    return (0, int(head), path.name) if head.isdigit() else (1, 0, path.name)


def aclimdb_root(path: Path) -> Path:
    """The folder holding train/ (path itself, or a single sub-folder such as aclImdb/)."""
    if (path / "train").is_dir():
        return path
    subs = [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    if len(subs) == 1 and (subs[0] / "train").is_dir():
        return subs[0]
    found = ", ".join(sorted(p.name for p in path.iterdir())) if path.is_dir() else "no such folder"
    raise SourceError(f"ingest.path={str(path)!r}: not an aclImdb folder; expected train/<class>/*.txt "
                      f"inside it (train/pos, train/neg, optionally test/...); found: {found or '(empty)'}")


def read_aclimdb(path: Path) -> RawTable:
    """train/<class>/*.txt and test/<class>/*.txt; the class is the folder name; unsup/ is ignored."""
    root = aclimdb_root(path)
    rows: list[Row] = []
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            continue
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in ACLIMDB_IGNORED)
        if not classes:
            raise SourceError(f"{folder}: no class folders (such as pos/ and neg/) with .txt files; "
                              "each class needs a folder of its own")
        for cls in classes:
            for file in sorted((folder / cls).glob("*.txt"), key=_review_order):
                text = file.read_bytes().decode("utf-8", "surrogateescape")
                rows.append((len(rows), f"{split}/{cls}/{file.name}", split, text, cls))
    return _whole(rows, str(root), label_map=ACLIMDB_NAMES, origin={"path": str(path)})


# --- Hugging Face datasets --------------------------------------------------------------------

def _open_hf_dataset(datasets, p: IngestParams):
    """A DatasetDict: from a folder written by save_to_disk, or by id (the local cache, else the Hub)."""
    local = Path(p.hf_dataset)
    try:
        if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
            return datasets.load_from_disk(str(local))
        # Datasets never run a loading script (datasets>=3 does not by default; 4 cannot).
        return datasets.load_dataset(p.hf_dataset, p.hf_config or None, revision=p.hf_revision or None,
                                     trust_remote_code=False)
    except OSError as err:  # ConnectionError, FileNotFoundError, DatasetNotFoundError
        raise SourceError(
            f"ingest.hf_dataset={p.hf_dataset!r} (config {p.hf_config or 'default'!r}): cannot be loaded: it is "
            f"not in the local cache ({datasets.config.HF_DATASETS_CACHE}) and the Hugging Face Hub cannot be "
            f"reached or does not have it ({type(err).__name__}: {err}). Run the stage once where the Hub can be "
            "reached (it then stays cached), or save the dataset with "
            "datasets.load_dataset(...).save_to_disk(FOLDER) and set ingest.hf_dataset to FOLDER") from err


def read_huggingface(p: IngestParams) -> RawTable:
    try:
        import datasets  # optional: pip install -e ".[hf]"
    except ImportError:
        raise SourceError("ingest.source='huggingface' needs the `datasets` library, which is not installed; "
                          'install it with: pip install -e ".[hf]"') from None
    found = _open_hf_dataset(datasets, p)
    if isinstance(found, datasets.Dataset):  # a single split saved on its own
        found = datasets.DatasetDict({p.hf_split: found})
    wanted = [(p.hf_split, "train")] + ([(p.hf_test_split, "test")] if p.hf_test_split else [])
    rows: list[Row] = []
    label_map = {}
    for name, role in wanted:
        if name not in found:
            key = "hf_split" if role == "train" else "hf_test_split"
            raise SourceError(f"ingest.{key}={name!r}: {p.hf_dataset} has no such split; its splits are: "
                              f"{', '.join(found)}")
        ds = found[name]
        _check_columns(f"{p.hf_dataset} split {name!r}", ds.column_names, p.text_column, p.label_column)
        feature = ds.features[p.label_column]
        if isinstance(feature, datasets.ClassLabel):  # integer ids with names, -1 = unlabelled
            label_map = {str(i): n for i, n in enumerate(feature.names)}
        part = ds.select_columns([p.text_column, p.label_column]).to_dict()
        for i, (text, label) in enumerate(zip(part[p.text_column], part[p.label_column], strict=True)):
            missing = isinstance(feature, datasets.ClassLabel) and label == -1
            rows.append((len(rows), f"{name} row {i + 1}", role, _as_text(text), None if missing else label))
    origin = {"dataset": p.hf_dataset, "config": p.hf_config, "revision": p.hf_revision,
              "splits": [name for name, _ in wanted]}
    return _whole(rows, f"Hugging Face dataset {p.hf_dataset}", label_map=label_map, origin=origin)


# --- http(s) downloads ---------------------------------------------------------------------------

def url_format(url: str, chosen: str) -> str:
    if chosen != "auto":
        return chosen
    name = Path(urllib.parse.urlparse(url).path).name.lower()
    name = name[:-3] if name.endswith(".gz") and not name.endswith(".tar.gz") else name
    suffix = ".tar" if name.endswith(".tar.gz") else Path(name).suffix
    if suffix not in URL_FORMATS:
        raise SourceError(f"ingest.url={mask_url(url)!r}: cannot tell the format from the name; set ingest.url_format "
                          "to one of csv, tsv, jsonl, parquet, aclimdb (a .tar.gz of the aclImdb folders)")
    return URL_FORMATS[suffix]


@dataclass(frozen=True)
class UrlLimits:
    """What one download may take: ingest.url_max_bytes, ingest.url_deadline_s."""

    max_bytes: int
    deadline_s: float


def auth_header() -> tuple[str, str] | None:
    """The header URL_AUTH_ENV names ("Name: value"), or None when unset; its value never shown."""
    raw = os.environ.get(URL_AUTH_ENV, "").strip()
    if not raw:
        return None
    name, sep, value = raw.partition(":")
    if not sep or not name or any(c in name for c in " \t") or any(c in raw for c in "\r\n"):
        raise SourceError(f"{URL_AUTH_ENV} is not one header 'Name: value' (such as 'Authorization: Bearer "
                          "<token>'); fix or unset it")
    return name, value.strip()


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else; URL_AUTH_ENV's header goes along
    only while scheme, host and port stay those of ingest.url."""

    def __init__(self, url: str, header: tuple[str, str] | None):
        self.url, self.header = url, header

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        allowed = ("https",) if old.scheme == "https" else ("http", "https")
        if new.scheme not in allowed:
            raise SourceError(f"ingest.url={mask_url(self.url)!r}: redirected from {old.scheme} to "
                              f"{mask_url(newurl)!r}, which is not {' or '.join(allowed)}; such a redirect is not "
                              "followed. Point ingest.url at an address that serves the file over https")
        out = super().redirect_request(req, fp, code, msg, headers, newurl)
        if out is not None and self.header and (old.scheme, old.netloc) == (new.scheme, new.netloc):
            out.add_unredirected_header(*self.header)
        return out


def _too_big(url: str, limits: UrlLimits, what: str) -> SourceError:
    return SourceError(f"ingest.url={mask_url(url)!r}: {what}, more than ingest.url_max_bytes={limits.max_bytes}; "
                       "raise ingest.url_max_bytes if the file is meant to be this large")


def _stream(response, out: Path, url: str, limits: UrlLimits, deadline: float) -> str:
    """Copy the response body to out, hashing as it goes; its sha256. Stops, raising, as soon as
    the body is larger than limits.max_bytes or the deadline (time.monotonic) has passed."""
    length = response.headers.get("Content-Length")
    if length and length.strip().isdigit() and int(length) > limits.max_bytes:
        raise _too_big(url, limits, f"the server says the file has {int(length)} bytes")
    digest, size = hashlib.sha256(), 0
    with open(out, "wb") as f:
        while block := response.read1(1 << 20):  # what has arrived, up to 1 MiB: no wait for a full block
            size += len(block)
            if size > limits.max_bytes:
                raise _too_big(url, limits, f"more than {limits.max_bytes} bytes received")
            if time.monotonic() > deadline:
                raise SourceError(f"ingest.url={mask_url(url)!r}: not downloaded within ingest.url_deadline_s="
                                  f"{limits.deadline_s:g} s ({size} bytes so far); raise ingest.url_deadline_s, or "
                                  "download the file by hand and point ingest.path at it")
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def download(url: str, sha256: str, cache_dir: Path, limits: UrlLimits) -> Path:
    """The file at url, from the cache when a copy with this sha256 is there, else downloaded once,
    within limits (a temporary file, renamed into place once its digest is the one expected)."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = cache_dir / "downloads" / sha256 / name
    if target.is_file() and file_digest(target) == sha256:
        log.info("using %s (cached copy of %s)", target, mask_url(url))
        return target
    log.info("downloading %s to %s", mask_url(url), target)
    header = auth_header()
    request = urllib.request.Request(url)
    if header:
        request.add_unredirected_header(*header)  # redirects: _Redirects decides
    opener = urllib.request.build_opener(_Redirects(url, header))
    deadline = time.monotonic() + limits.deadline_s
    # The socket timeout bounds each wait; the deadline, checked after each block, the whole.
    timeout = min(DOWNLOAD_TIMEOUT_S, limits.deadline_s)
    try:
        with opener.open(request, timeout=timeout) as response, atomic_path(target) as tmp:
            got = _stream(response, tmp, url, limits, deadline)
            if got != sha256:  # leaving the block by an exception removes the temporary file
                raise SourceError(f"ingest.url={mask_url(url)!r}: the downloaded file has sha256 {got}, but "
                                  f"ingest.sha256 is {sha256}; if the file changed on purpose, set "
                                  "ingest.sha256 to the new value")
    except OSError as err:  # URLError, HTTPError, timeouts
        http = isinstance(err, urllib.error.HTTPError)
        reason = f"HTTP {err.code} {err.reason}" if http else getattr(err, "reason", err)
        raise SourceError(f"ingest.url={mask_url(url)!r}: cannot be downloaded ({reason}); check the address and the "
                          "network, or download the file by hand and point ingest.path at it") from err
    return target


def extract_archive(archive: Path) -> Path:
    """A tar(.gz) unpacked once beside itself; only plain files and folders inside it are written."""
    out = archive.with_name(archive.name + ".d")
    if not out.is_dir():
        try:
            with tarfile.open(archive) as tar, atomic_dir(out) as tmp:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError as err:
            raise SourceError(f"{archive}: cannot be unpacked as a tar archive ({err}); with "
                              "ingest.url_format=aclimdb the URL must point at a .tar.gz of the aclImdb "
                              "folders") from None
    return out


def read_url(p: IngestParams, cache_dir: Path) -> RawTable:
    kind = url_format(p.url, p.url_format)
    path = download(p.url, p.sha256.lower(), cache_dir, UrlLimits(p.url_max_bytes, p.url_deadline_s))
    table = read_aclimdb(extract_archive(path)) if kind == "aclimdb" else read_file(kind, path, p)
    origin = {"url": mask_url(p.url), "sha256": p.sha256, "format": kind}  # meta.json is not a secret store
    return replace(table, describe=f"{mask_url(p.url)} (cached at {path})", origin=origin)


# --- dispatch ----------------------------------------------------------------------------------------

def read_file(kind: str, path: Path, p: IngestParams) -> RawTable:
    if kind == "csv":
        return read_delimited(path, ",", p.text_column, p.label_column)
    if kind == "tsv":
        return read_delimited(path, "\t", p.text_column, p.label_column)
    if kind == "jsonl":
        return read_jsonl(path, p.text_column, p.label_column)
    return read_parquet_file(path, p.text_column, p.label_column)


def load_source(p: IngestParams, cache_dir: Path) -> RawTable:
    """Every row of the source that params name."""
    if p.source in ("imdb", "rotten_tomatoes"):
        table = read_movie_reviews(p.source, p.embedded_sha256)
    elif p.source in ("csv", "tsv", "jsonl", "parquet"):
        table = read_file(p.source, Path(p.path), p)
    elif p.source == "aclimdb":
        table = read_aclimdb(Path(p.path))
    elif p.source == "huggingface":
        table = read_huggingface(p)
    else:
        table = read_url(p, cache_dir)
    table.origin["source"] = p.source
    return table

