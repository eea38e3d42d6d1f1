"""Reading and writing the artifacts stages hand each other, always atomically.

Every write goes to a temporary name beside the target (`.<name>.<pid>-<random>.tmp`), is
fsync-ed, and is renamed into place when complete; the folder is fsync-ed after the rename. So a
stage killed at any instruction, or a power loss, leaves either the old output or the new one:

- atomic_path: the rename is one step.
- atomic_dir: a folder cannot replace a folder in one step, so the old one is first renamed to
  `.<name>.old`, then the new one into place. A kill between the two leaves `.<name>.old` and no
  target; recover_dir (called by the next write of it, and by readers) puts the old one back.
- Temporary files of a killed run are removed by the next write beside them (remove_leftovers);
  .dvcignore keeps DVC from caching them meanwhile.

BERTPIPE_FAULT=<point> makes the process exit hard at that point (the FAULT_POINTS below), so
that tests can kill a write where a crash hurts most.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
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

from bertpipe.errors import DataError

FAULT_ENV = "BERTPIPE_FAULT"
FAULT_POINTS = ("atomic_path:before_rename", "atomic_dir:before_swap", "atomic_dir:between_renames",
                "atomic_dir:before_cleanup")
FAULT_EXIT = 137  # what a SIGKILL'ed process reports
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.tmp")


def _fault(point: str) -> None:
    """Test hook: die here, without cleanup, as a kill or a power loss would."""
    if os.environ.get(FAULT_ENV) == point:
        os._exit(FAULT_EXIT)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in folder durable (POSIX; other systems cannot open folders)."""
    if os.name == "posix":
        _fsync(folder)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        fsync_dir(Path(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_leftovers(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in folder (those of
    target `name` only, when given); a live process's are left alone. Returns what was removed."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        found = _LEFTOVER.fullmatch(entry.name)
        if found and (name is None or found["name"] == name) and not _alive(int(found["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside target; rename it onto target when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes files private; outputs are ordinary files
        _fsync(tmp_path)
        _fault("atomic_path:before_rename")
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def old_copy(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_dir(target: str | Path) -> None:
    """Finish or undo a folder swap that a kill interrupted: put `.<name>.old` back when the
    target is missing, else remove it (the swap was complete)."""
    target = Path(target)
    old = old_copy(target)
    if not old.is_dir():
        return
    if target.exists():
        shutil.rmtree(old)
    else:
        os.replace(old, target)
        fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for target when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    remove_leftovers(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _fsync_tree(tmp)
        _fault("atomic_dir:before_swap")
        old = old_copy(target)
        if target.exists():
            os.replace(target, old)
            _fault("atomic_dir:between_renames")
        os.replace(tmp, target)
        fsync_dir(target.parent)
        _fault("atomic_dir:before_cleanup")
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


def jsonl_objects(lines: Iterable[str], where: str, example: str, error: type[Exception] = DataError,
                  keep_blank: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line (and an empty object for a blank one with
    keep_blank); a line that is not one JSON object fails, naming where, the line and an example
    of what it should hold."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if keep_blank:
                yield number, {}
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
