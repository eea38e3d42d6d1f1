"""Reading and writing the artifacts stages hand each other, always atomically.

Every write goes to a temporary name beside the target and is renamed into place when
complete, so a stage killed at any moment leaves either the old output or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside target; rename it onto target when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for target when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(data: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """Write df without the pandas index; same frame gives the same bytes."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=columns)


@dataclass(frozen=True)
class TokenizedSplit:
    """Unpadded token ids of a split: row i is input_ids[offsets[i]:offsets[i + 1]]."""

    input_ids: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    labels: np.ndarray  # (n,) int64

    @classmethod
    def from_rows(cls, rows: list[np.ndarray], labels: np.ndarray) -> TokenizedSplit:
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        ids = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, dtype=np.int32)
        return cls(ids, offsets, np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.input_ids[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, rows: np.ndarray) -> TokenizedSplit:
        return TokenizedSplit.from_rows([self.row(int(i)) for i in rows], self.labels[rows])


def write_tokenized(split: TokenizedSplit, path: str | Path) -> None:
    tensors = {"input_ids": split.input_ids, "offsets": split.offsets, "labels": split.labels}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def read_tokenized(path: str | Path) -> TokenizedSplit:
    t = load_file(str(path))
    return TokenizedSplit(t["input_ids"], t["offsets"], t["labels"])


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonl_objects(lines: Iterable[str], where: str, example: str,
                  error: type[Exception] = ValueError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not one JSON object fails,
    naming where, the line and an example of what it should hold."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{where} line {number}: not valid JSON ({err.msg} at column {err.colno}); each line "
                        f"must hold one JSON object such as {example}") from None
        if not isinstance(obj, dict):
            raise error(f"{where} line {number}: a JSON {type(obj).__name__}, not an object; each line must "
                        f"hold one JSON object such as {example}")
        yield number, obj
