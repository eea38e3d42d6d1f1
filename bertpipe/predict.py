"""Predict: classify raw texts with a trained model.

In:  --model, a checkpoint folder (models/best), an MLflow model folder, or an MLflow URI
     (models:/<name>@champion, models:/<name>/<version>, runs:/<run id>/model) resolved
     against MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); texts as arguments, a CSV
     or JSONL file (--input; '-' for stdin), or stdin with one text per line. Lines end at
     "\n" only (a "\r" before it is dropped), so a text may hold U+2028, \x0c or \x1c.
Out: the same rows, one per input line or row, with the predicted `label`, one `prob_<class>`
     column per class and a `reason` column (prefixed `predicted_` when the input already has
     such a column), as JSONL on stdout, or CSV / JSONL in --output. A row without usable text
     is kept, with empty predictions and the reason: "no text" (a blank JSONL line, no or a null
     text), or why ingest would quarantine the text (bertpipe.validation.unusable_reason: an
     empty line, "&nbsp;", "<br />", NUL characters, undecodable bytes, lone surrogates).
     Rows are read, scored and written CHUNK_ROWS at a time, so any size of input takes the
     memory of one chunk; --output appears only when all of it is written.

Run: python -m bertpipe.predict --model models/best "A wonderful film." "Dull and far too long."
     python -m bertpipe.predict --model models:/imdb-sentiment-classifier@champion \
         --input reviews.csv --output scored.csv
     cat reviews.txt | python -m bertpipe.predict --model models/best > scored.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch

from bertpipe.artifacts import atomic_path, jsonl_objects
from bertpipe.errors import InputError
from bertpipe.inference import PREDICT_BATCH_SIZE, Classifier
from bertpipe.logs import run_cli
from bertpipe.registry import resolve_checkpoint
from bertpipe.text import Normalization
from bertpipe.tracking import configure
from bertpipe.validation import encodable, unusable_reason

log = logging.getLogger("predict")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMATS = ("csv", "jsonl", "lines")
MAX_LISTED = 10  # row numbers named in the warning about rows without text
NO_TEXT = "no text"  # the reason of a row whose text is missing, null or not a string
CHUNK_ROWS = 1024  # rows read, scored and written at a time: 32 batches of PREDICT_BATCH_SIZE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="*", help="texts to classify (else --input, else stdin)")
    p.add_argument("--model", required=True, help="checkpoint folder or MLflow model URI")
    p.add_argument("--input", help="CSV or JSONL file of rows with a text column; '-' reads stdin")
    p.add_argument("--input-format", choices=FORMATS,
                   help="format of --input (default: from its suffix) or of stdin (default: lines)")
    p.add_argument("--output", help="CSV or JSONL file to write (default: stdout, in the input's format or JSONL)")
    p.add_argument("--text-column", default="text", help="column (CSV) or key (JSONL) holding the text")
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast where the hardware computes bf16 (CUDA, CPUs with AMX or "
                        "AVX512-BF16), else fp32")
    args = p.parse_args(argv)
    if args.texts and args.input:
        p.error("give texts as arguments or --input, not both")
    if args.batch_size < 1:
        p.error(f"--batch-size={args.batch_size}: must be >= 1")
    return args


def format_of(path: str, given: str | None, default: str | None = None) -> str:
    if given:
        return given
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower(), default)
    if fmt is None:
        raise InputError(f"{path}: unknown file type; use a .csv or .jsonl name, or say --input-format")
    return fmt


def text_lines(stream: Iterable[str]) -> Iterator[str]:
    """The lines of a stream read with newline="\n": split at "\n" only, one "\r" before it dropped.
    Not str.splitlines, which also splits at U+2028, \x0c, \x1c and five more, all of which a
    text may hold (and predict's own JSONL output does: json.dumps keeps U+2028 as it is)."""
    for line in stream:
        yield line.removesuffix("\n").removesuffix("\r")


@contextmanager
def open_input(args: argparse.Namespace) -> Iterator[tuple[Iterable[str], str, str]]:
    """The input as a stream of text, its format and its name for messages. Bytes that are not
    UTF-8 come through as lone surrogates (as ingest reads them), a row's reason, not a crash."""
    if args.texts:
        yield args.texts, "arguments", "arguments"
    elif args.input and args.input != "-":
        fmt = format_of(args.input, args.input_format)
        with open(args.input, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            yield f, fmt, args.input
    elif (buffer := getattr(sys.stdin, "buffer", None)) is None:  # a text stream without bytes (tests)
        yield sys.stdin, args.input_format or "lines", "stdin"
    else:
        stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="\n")
        try:
            yield stream, args.input_format or "lines", "stdin"
        finally:
            stream.detach()  # sys.stdin's own buffer stays open


def row_chunks(stream: Iterable[str], fmt: str, source: str) -> Iterator[list[dict[str, Any]]]:
    """The rows as dicts, CHUNK_ROWS at a time; CSV cells stay strings so they go out exactly as
    they came in."""
    if fmt == "csv":
        try:
            with pd.read_csv(stream, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS) as reader:
                yield from (frame.to_dict("records") for frame in reader)
        except pd.errors.EmptyDataError:
            raise InputError(f"{source}: empty, not even a header line; a CSV file needs one naming its "
                             "columns, such as: text") from None
        return
    if fmt == "arguments":
        rows: Iterator[dict[str, Any]] = ({"text": text} for text in stream)
    elif fmt == "lines":  # every line is a row, blank ones too, so output lines match input lines
        rows = ({"text": line} for line in text_lines(stream))
    else:  # keep_blank: a blank line is a row without text, kept so the output lines up with the input
        rows = (row for _, row in jsonl_objects(text_lines(stream), source, '{"text": ...}', InputError,
                                                keep_blank=True))
    while chunk := list(islice(rows, CHUNK_ROWS)):
        yield chunk


def check_column(rows: list[dict[str, Any]], column: str, source: str) -> None:
    if rows and not any(column in row for row in rows):
        raise InputError(f"{source}: no '{column}' column (found: {', '.join(map(str, rows[0]))}); "
                         "name the text column with --text-column")


def text_problem(value: Any, norm: Normalization) -> str:
    """Why a row gets no prediction ("" = it gets one): no text, or why ingest would quarantine it."""
    return unusable_reason(value, norm) if isinstance(value, str) else NO_TEXT


def add_predictions(rows: list[dict[str, Any]], column: str, classifier: Classifier, batch_size: int,
                    prefix: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows with the prediction columns (names prefixed), and the positions of the rows that
    have no usable text (their reason filled in, their predictions empty)."""
    names, norm = classifier.label_names, classifier.meta.norm()
    reasons = [text_problem(row.get(column), norm) for row in rows]
    usable = [i for i, why in enumerate(reasons) if not why]
    probs = classifier.predict_proba([rows[i][column] for i in usable], batch_size) if usable else np.zeros((0, 0))
    out = [{**row, **{f"{prefix}{c}": None for c in new_columns(names)}} for row in rows]
    for i, why in enumerate(reasons):
        if why:
            out[i][f"{prefix}reason"] = why
    for i, p in zip(usable, probs, strict=True):
        out[i][f"{prefix}label"] = names[int(p.argmax())]
        for name, value in zip(names, p, strict=True):
            out[i][f"{prefix}prob_{name}"] = float(value)
    return out, [i for i, why in enumerate(reasons) if why]


def new_columns(names: list[str]) -> list[str]:
    return ["label", *(f"prob_{n}" for n in names), "reason"]


class RowWriter:
    """Writes scored rows as they come: JSONL lines, or CSV with the first chunk's columns.
    Lone surrogates (undecodable input bytes, JSON escapes such as \\ud83d) go out as \\udxxx
    escapes, so the output is always UTF-8 and predict's own JSONL reads back as it was."""

    def __init__(self, out: TextIO, fmt: str, source: str):
        self.out, self.fmt, self.source = out, fmt, source
        self.columns: list[str] | None = None
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "csv":
            frame = pd.DataFrame(rows)
            if self.columns is None:
                self.columns = list(frame.columns)
            elif extra := [c for c in frame.columns if c not in self.columns]:
                row = self.rows + 1 + next(i for i, r in enumerate(rows) if extra[0] in r)
                raise InputError(f"{self.source} row {row}: key {extra[0]!r} is in none of the first {CHUNK_ROWS} "
                                 "rows, and CSV output takes its columns from those; write JSONL instead "
                                 "(--output scored.jsonl)")
            text = frame.reindex(columns=self.columns).to_csv(index=False, header=self.rows == 0)
        else:
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        self.out.write(text if encodable(text) else text.encode("utf-8", "backslashreplace").decode("utf-8"))
        self.out.flush()
        self.rows += len(rows)


@contextmanager
def open_output(path: str | None) -> Iterator[TextIO]:
    """--output, written under a temporary name and renamed when complete; else stdout."""
    if path is None:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        yield out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with open_input(args) as (stream, in_fmt, source):
        column = args.text_column if in_fmt in ("csv", "jsonl") else "text"
        out_fmt = format_of(args.output, None) if args.output else ("csv" if in_fmt == "csv" else "jsonl")
        chunks = row_chunks(stream, in_fmt, source)
        first = next(chunks, [])  # read before the model loads, so a bad input fails at once
        check_column(first, column, source)
        if args.model.startswith(("models:/", "runs:/")):
            configure()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
            classifier = Classifier.load(resolve_checkpoint(args.model, tmp), device, args.precision)
        prefix = "predicted_" if first and any(c in first[0] for c in new_columns(classifier.label_names)) else ""
        skipped, listed = 0, []  # rows without a prediction: how many, and the first few numbers
        with open_output(args.output) as out:
            writer = RowWriter(out, out_fmt, source)
            for rows in chain([first] if first else [], chunks):
                scored, unusable = add_predictions(rows, column, classifier, args.batch_size, prefix)
                skipped += len(unusable)
                listed += [str(writer.rows + i + 1) for i in unusable[:MAX_LISTED - len(listed)]]
                writer.write(scored)
    if skipped:
        log.warning("%d of %d rows have no usable text in '%s' and get no prediction (rows %s%s); "
                    "the reason column says why", skipped, writer.rows, column, ", ".join(listed),
                    ", ..." if skipped > MAX_LISTED else "")
    if args.output:
        log.info("wrote %d rows to %s", writer.rows, args.output)


if __name__ == "__main__":
    run_cli(main)
