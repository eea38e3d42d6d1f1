"""Raw data sources. Each reader returns every row it read, in a fixed order, untouched.

A source is one of: the IMDB reviews or Rotten Tomatoes sentences shipped in `movie-reviews`;
a local CSV, TSV, JSONL or parquet file; a folder in the aclImdb layout; a Hugging Face
`datasets` id; an http(s) URL checked against its sha256 and downloaded once into a cache.

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
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertpipe.artifacts import atomic_dir, atomic_path, file_digest, jsonl_objects
from bertpipe.config import IngestParams
from bertpipe.embedded import movie_reviews_csv
from bertpipe.redact import mask_url

log = logging.getLogger(__name__)

RAW_COLUMNS = ["source_row", "location", "source_split", "text", "label"]
SENTIMENT_NAMES = {"0": "negative", "1": "positive"}
ACLIMDB_NAMES = {"neg": "negative", "pos": "positive"}
ACLIMDB_IGNORED = {"unsup"}  # unlabelled reviews
DOWNLOAD_TIMEOUT_S = 60
# The csv module refuses fields over 128 KiB by default; a long review is a normal row (tokenize
# cuts it), so a field may be as long as the platform allows.
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
URL_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".tgz": "aclimdb", ".tar": "aclimdb"}


class SourceError(ValueError):
    """The source cannot be read; the message names the file, line or column and the fix."""


@dataclass(frozen=True)
class RawTable:
    """Every row of a source. rows has RAW_COLUMNS; label_map renames raw labels to class names."""

    rows: pd.DataFrame
    describe: str  # for messages: the file, folder, dataset or URL
    label_map: dict[str, str] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)  # what was read, for meta.json


def _frame(rows: list[tuple], describe: str, source_rows: list[int] | None = None, **kwargs) -> RawTable:
    """rows of (location, source_split, text, label) in reading order; source_row counts from 0."""
    df = pd.DataFrame({
        "source_row": pd.Series(range(len(rows)) if source_rows is None else source_rows, dtype="int64"),
        "location": pd.Series([r[0] for r in rows], dtype=object),
        "source_split": pd.Series([r[1] for r in rows], dtype=object),
        # object, not pandas' str dtype: undecodable bytes are kept as lone surrogates
        "text": pd.Series([r[2] for r in rows], dtype=object),
        "label": pd.Series([r[3] for r in rows], dtype=object),
    })
    return RawTable(df, describe, **kwargs)


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
    rows = [(f"row {r + 1}", "train", t, None if pd.isna(v) else int(v))
            for r, t, v in zip(df["source_row"], df["text"], df["label"], strict=True)]
    # The package's own row numbers stay the ids, so both subsets keep theirs.
    return _frame(rows, f"{movie_reviews_csv()} ({subset})", source_rows=df["source_row"].tolist(),
                  label_map=SENTIMENT_NAMES, origin=origin)


# --- local files -----------------------------------------------------------------------------------

def read_delimited(path: Path, delimiter: str, text_column: str, label_column: str) -> RawTable:
    """A CSV or TSV file with a header line; fails on a line that cannot be parsed, naming it."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    rows = []
    csv.field_size_limit(CSV_FIELD_LIMIT)
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
                rows.append((f"line {start}", "train", record[ti], record[li]))
        except csv.Error as err:
            raise SourceError(f"{path} line {reader.line_num}: cannot be parsed as {kind} ({err}); "
                              "check the quoting on that line (a quote inside a quoted field is written "
                              "twice: \"\")") from None
    return _frame(rows, str(path), origin={"path": str(path), "sha256": file_digest(path)})


def read_jsonl(path: Path, text_column: str, label_column: str) -> RawTable:
    """One JSON object per line; fails on a line that is not one, naming it."""
    rows, keys = [], set()
    example = json.dumps({text_column: "...", label_column: "..."})
    with _open_text(_existing_file(path)) as f:
        for number, obj in jsonl_objects(f, str(path), example, SourceError):
            keys.update(obj)
            rows.append((f"line {number}", "train", _as_text(obj.get(text_column)), obj.get(label_column)))
    _check_columns(str(path), sorted(keys), text_column, label_column)
    return _frame(rows, str(path), origin={"path": str(path), "sha256": file_digest(path)})


def read_parquet_file(path: Path, text_column: str, label_column: str) -> RawTable:
    try:
        names = pq.read_schema(_existing_file(path)).names
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: cannot be read as parquet ({err}); check that it is a parquet file, "
                          "or set ingest.source to its format (csv, tsv, jsonl)") from None
    _check_columns(str(path), names, text_column, label_column)
    table = pq.read_table(path, columns=[text_column, label_column])
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    rows = [(f"row {i + 1}", "train", _as_text(t), v) for i, (t, v) in enumerate(zip(texts, labels, strict=True))]
    return _frame(rows, str(path), origin={"path": str(path), "sha256": file_digest(path)})


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
    rows = []
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
                rows.append((f"{split}/{cls}/{file.name}", split, text, cls))
    return _frame(rows, str(root), label_map=ACLIMDB_NAMES, origin={"path": str(path)})


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
    rows, label_map = [], {}
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
            rows.append((f"{name} row {i + 1}", role, _as_text(text), None if missing else label))
    origin = {"dataset": p.hf_dataset, "config": p.hf_config, "revision": p.hf_revision,
              "splits": [name for name, _ in wanted]}
    return _frame(rows, f"Hugging Face dataset {p.hf_dataset}", label_map=label_map, origin=origin)


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


def _stream(response, out: Path) -> str:
    """Copy the response body to out; its sha256."""
    digest = hashlib.sha256()
    with open(out, "wb") as f:
        while block := response.read(1 << 20):
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def download(url: str, sha256: str, cache_dir: Path) -> Path:
    """The file at url, from the cache when a copy with this sha256 is there, else downloaded once."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = cache_dir / "downloads" / sha256 / name
    if target.is_file() and file_digest(target) == sha256:
        log.info("using %s (cached copy of %s)", target, mask_url(url))
        return target
    log.info("downloading %s to %s", mask_url(url), target)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_path(target) as tmp:
            got = _stream(response, tmp)
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
    path = download(p.url, p.sha256.lower(), cache_dir)
    table = read_aclimdb(extract_archive(path)) if kind == "aclimdb" else read_file(kind, path, p)
    origin = {"url": mask_url(p.url), "sha256": p.sha256, "format": kind}  # meta.json is not a secret store
    return RawTable(table.rows, f"{mask_url(p.url)} (cached at {path})", table.label_map, origin)


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

