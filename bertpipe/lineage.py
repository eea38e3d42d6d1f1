"""What a model was trained on, recorded with it so the promotion gate can check like with like.

Each row is known by an 8-byte hash of its text's match key (bertpipe.text.match_key: Unicode
NFKC, case folded, whitespace collapsed), the key ingest dedups on and split assigns by, so
trivial re-encodings of one review still match. Train logs, with
the model's MLflow run:
- the artifact `lineage/rows.parquet`: (split, hash) for every train, validation and test row,
  so the gate can tell which rows it scores were trained or validated on;
- the registered version's tags `lineage.*`: a digest of each split's row set (sha256 of the
  sorted hashes: the same rows in any order give the same digest), their sizes, the class
  names, the data version (ingest's DatasetMeta.origin, credentials masked), and the
  `split.seed` the rows were assigned to splits by (`lineage.split_seed`; stages/split.py).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from bertpipe.artifacts import read_json, read_parquet, write_parquet
from bertpipe.contracts import ASSIGNMENT_FILE, DatasetMeta
from bertpipe.errors import BertpipeError
from bertpipe.redact import mask_mapping
from bertpipe.text import key_hashes

SPLITS = ("train", "val", "test")
ARTIFACT_DIR = "lineage"
ROWS_FILE = "rows.parquet"
TAG = "lineage."  # prefix of the registered version's tags
MAX_TAG_CHARS = 4000  # MLflow keeps tag values up to 5000 characters


class LineageError(BertpipeError):
    """A model's lineage is missing or unreadable, so overlap cannot be checked."""


def row_hashes(texts: list[str]) -> np.ndarray:
    """(N,) uint64: the unsalted key hash of each text (bertpipe.text.key_hashes)."""
    return key_hashes(texts)


def set_digest(hashes: np.ndarray) -> str:
    """sha256 (hex) of the sorted row hashes: a row set's identity, whatever its order."""
    return hashlib.sha256(np.sort(hashes.astype(np.uint64)).astype("<u8").tobytes()).hexdigest()


def split_rows(split_dir: str | Path) -> pd.DataFrame:
    """(split, hash) for every row of the split folder's train, val and test tables."""
    parts = [pd.DataFrame({"split": name, "hash": row_hashes(read_parquet(Path(split_dir) / f"{name}.parquet",
                                                                          columns=["text"])["text"].tolist())})
             for name in SPLITS]
    return pd.concat(parts, ignore_index=True)


def split_digests(split_dir: str | Path) -> dict[str, str]:
    """{split: set_digest of its rows} for the split folder's train, val and test tables."""
    rows = split_rows(split_dir)
    return {name: set_digest(rows.loc[rows["split"] == name, "hash"].to_numpy(np.uint64)) for name in SPLITS}


SPLIT_SEED_TAG = f"{TAG}split_seed"


def split_seed(split_dir: str | Path) -> int | None:
    """The split.seed a split folder's rows were assigned by (None: written before it was recorded)."""
    path = Path(split_dir) / ASSIGNMENT_FILE
    return int(read_json(path)["seed"]) if path.is_file() else None


def version_tags(rows: pd.DataFrame, dataset: DatasetMeta, seed: int | None = None) -> dict[str, str]:
    tags = {}
    for name in SPLITS:
        hashes = rows.loc[rows["split"] == name, "hash"].to_numpy(np.uint64)
        tags[f"{TAG}{name}_digest"] = set_digest(hashes)
        tags[f"{TAG}{name}_rows"] = str(len(hashes))
    tags[f"{TAG}labels"] = json.dumps(list(dataset.labels))
    tags[f"{TAG}data_version"] = json.dumps(mask_mapping(dataset.origin), sort_keys=True)[:MAX_TAG_CHARS]
    if seed is not None:
        tags[SPLIT_SEED_TAG] = str(seed)
    return tags


def log_lineage(split_dir: str | Path) -> dict[str, str]:
    """Log the per-row artifact into the active MLflow run; the tags for the registered version."""
    rows = split_rows(split_dir)
    with tempfile.TemporaryDirectory(prefix="lineage-") as tmp:
        write_parquet(rows, Path(tmp) / ROWS_FILE)
        mlflow.log_artifact(str(Path(tmp) / ROWS_FILE), artifact_path=ARTIFACT_DIR)
    return version_tags(rows, DatasetMeta.read(split_dir), split_seed(split_dir))


def load_rows(run_id: str, what: str, dst: str | Path) -> pd.DataFrame:
    """The (split, hash) rows a run's model was trained and validated on; what names it in errors."""
    uri = f"runs:/{run_id}/{ARTIFACT_DIR}/{ROWS_FILE}"
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except (MlflowException, OSError) as err:  # a missing artifact, by store kind
        raise LineageError(f"{what} has no lineage ({uri}: {type(err).__name__}), so the gate cannot check "
                           "that it never saw the rows it is scored on; it was trained before lineage was "
                           "recorded: retrain it (dvc repro), or move the alias by hand") from None
    return read_parquet(path)
