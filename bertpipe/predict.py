"""Predict: classify raw texts with a trained model.

In:  --model, a checkpoint folder (models/best), an MLflow model folder, or an MLflow URI
     (models:/<name>@champion, models:/<name>/<version>, runs:/<run id>/model) resolved
     against MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); texts as arguments, a CSV
     or JSONL file (--input; '-' for stdin), or stdin with one text per line.
Out: the same rows, one per input line or row, with the predicted `label`, one `prob_<class>`
     column per class and a `reason` column (prefixed `predicted_` when the input already has
     such a column), as JSONL on stdout, or CSV / JSONL in --output. A row without text (a
     blank line too) is kept, with empty predictions and the reason.

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bertpipe.artifacts import atomic_path, jsonl_objects
from bertpipe.inference import PREDICT_BATCH_SIZE, Classifier
from bertpipe.logs import run_cli
from bertpipe.registry import resolve_checkpoint
from bertpipe.tracking import configure

log = logging.getLogger("predict")
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMATS = ("csv", "jsonl", "lines")
MAX_LISTED = 10  # row numbers named in the warning about rows without text
NO_TEXT = "no text"  # the reason a row has no prediction


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
        raise ValueError(f"{path}: unknown file type; use a .csv or .jsonl name, or say --input-format")
    return fmt


def parse_rows(text: str, fmt: str, source: str) -> list[dict[str, Any]]:
    """Rows as dicts; CSV cells stay strings so they go out exactly as they came in."""
    if fmt == "lines":  # every line is a row, blank ones too, so output lines match input lines
        return [{"text": line} for line in text.splitlines()]
    if fmt == "csv":
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return frame.to_dict("records")
    # keep_blank: a blank line is a row without text, kept so the output lines up with the input
    return [row for _, row in jsonl_objects(text.splitlines(), source, '{"text": ...}', keep_blank=True)]


def read_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str, str]:
    """The rows to classify, their format and the name of their text column."""
    if args.texts:
        return [{"text": t} for t in args.texts], "lines", "text"
    if args.input and args.input != "-":
        fmt = format_of(args.input, args.input_format)
        text = Path(args.input).read_text(encoding="utf-8")
        source = args.input
    else:
        fmt, text, source = args.input_format or "lines", sys.stdin.read(), "stdin"
    rows = parse_rows(text, fmt, source)
    column = "text" if fmt == "lines" else args.text_column
    if rows and not any(column in row for row in rows):
        raise ValueError(f"{source}: no '{column}' column (found: {', '.join(map(str, rows[0]))}); "
                         "name the text column with --text-column")
    return rows, fmt, column


def usable_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def add_predictions(rows: list[dict[str, Any]], column: str, classifier: Classifier,
                    batch_size: int) -> list[dict[str, Any]]:
    names = classifier.label_names
    new_columns = ["label", *(f"prob_{n}" for n in names), "reason"]
    prefix = "predicted_" if rows and any(c in rows[0] for c in new_columns) else ""
    usable = [i for i, row in enumerate(rows) if usable_text(row.get(column))]
    skipped = sorted(set(range(len(rows))) - set(usable))
    if skipped:
        listed = ", ".join(str(i + 1) for i in skipped[:MAX_LISTED])
        log.warning("%d of %d rows have no text in '%s' and get no prediction (rows %s%s)", len(skipped),
                    len(rows), column, listed, ", ..." if len(skipped) > MAX_LISTED else "")
    probs = classifier.predict_proba([rows[i][column] for i in usable], batch_size) if usable else np.zeros((0, 0))
    out = [{**row, **{f"{prefix}{c}": None for c in new_columns}} for row in rows]
    for i in skipped:
        out[i][f"{prefix}reason"] = NO_TEXT
    for i, p in zip(usable, probs, strict=True):
        out[i][f"{prefix}label"] = names[int(p.argmax())]
        for name, value in zip(names, p, strict=True):
            out[i][f"{prefix}prob_{name}"] = float(value)
    return out


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "csv":
        return pd.DataFrame(rows).to_csv(index=False)
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, in_fmt, column = read_rows(args)
    out_fmt = format_of(args.output, None) if args.output else ("csv" if in_fmt == "csv" else "jsonl")
    if args.model.startswith(("models:/", "runs:/")):
        configure()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        classifier = Classifier.load(resolve_checkpoint(args.model, tmp), device, args.precision)
    scored = add_predictions(rows, column, classifier, args.batch_size)
    if args.output:
        with atomic_path(args.output) as tmp_out:
            tmp_out.write_text(render(scored, out_fmt), encoding="utf-8")
        log.info("wrote %d rows to %s", len(scored), args.output)
    else:
        sys.stdout.write(render(scored, out_fmt))


if __name__ == "__main__":
    run_cli(main)
