"""Tables too large to hold twice, handled a chunk at a time (ingest, split).

- text_keys: 16-byte keys that stand in for texts when looking for repeats among millions.
- ParquetFrameWriter: a parquet file written piece by piece in row groups of a fixed size, so the
  bytes depend on the rows alone, not on how they were read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Rows per row group of the files ParquetFrameWriter writes: about 50 MB of review text.
ROW_GROUP_ROWS = 50_000


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """(N,) 16-byte keys, the blake2b digest of each text's UTF-8 bytes: equal texts get equal
    keys, and two different texts one key with a chance of about 2**-128 per pair. What finds
    repeated texts among millions without holding the texts."""
    digests = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(digests, dtype="S16")


class ParquetFrameWriter:
    """A parquet file written from frames handed in one after another, in row groups of exactly
    rows_per_group rows (the last one shorter), each written from contiguous columns: the bytes
    depend on the rows alone, not on how they were cut into frames, and rows that fit one group
    give what artifacts.write_parquet gives for them in one frame. Memory holds about one row group.

    Write it inside an atomic_dir or atomic_path block: the file is complete only after close().
    """

    def __init__(self, path: str | Path, schema: pa.Schema, rows_per_group: int = ROW_GROUP_ROWS):
        self.path, self.schema, self.rows_per_group = Path(path), schema, rows_per_group
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, df: pd.DataFrame) -> None:
        """Append df's rows (its columns converted to the schema's types)."""
        self.pending.append(pa.Table.from_pandas(df, schema=self.schema, preserve_index=False))
        self.pending_rows += len(df)
        while self.pending_rows >= self.rows_per_group:
            self._write(self.rows_per_group)

    def _write(self, rows: int) -> None:
        table = pa.concat_tables(self.pending)
        group, rest = table.slice(0, rows).combine_chunks(), table.slice(rows)
        if self.writer is None:  # the first frame's schema: with its pandas metadata, as write_parquet
            self.writer = pq.ParquetWriter(self.path, group.schema, compression="zstd")
        self.writer.write_table(group, row_group_size=max(rows, 1))
        self.pending, self.pending_rows = [rest], len(rest)

    def close(self) -> None:
        if self.pending_rows or self.writer is None:
            if not self.pending:  # no frame at all: an empty table of the schema
                self.pending = [self.schema.empty_table()]
            self._write(self.pending_rows)
        self.writer.close()

    def __enter__(self) -> ParquetFrameWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        elif self.writer is not None:
            self.writer.close()  # leaves an incomplete file, which the atomic block removes
