"""Atomic writes survive a kill at the points in between: a subprocess is made to exit hard
(BERTPIPE_FAULT) just before a rename, between the two renames of a folder swap, and before
the clean-up; the old output stays readable, leftovers go at the next write, DVC ignores them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertpipe.artifacts import (
    FAULT_ENV,
    FAULT_EXIT,
    atomic_dir,
    atomic_path,
    recover_dir,
    remove_leftovers,
    write_parquet,
)
from bertpipe.contracts import DatasetMeta
from bertpipe.tables import ParquetFrameWriter
from tests.conftest import ROOT


def killed_at(point: str, code: str, cwd: Path) -> None:
    """Run code in a fresh Python that dies at point; check that it did die there."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, FAULT_ENV: point, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == FAULT_EXIT, done.stderr[-2000:]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


WRITE_FILE = """
from bertpipe.artifacts import write_json
write_json({"v": 2}, "out.json")
"""


def test_a_file_write_killed_before_its_rename_leaves_the_old_file(tmp_path):
    (tmp_path / "out.json").write_text('{"v": 1}')
    killed_at("atomic_path:before_rename", WRITE_FILE, tmp_path)
    assert json.loads((tmp_path / "out.json").read_text()) == {"v": 1}
    [leftover] = hidden(tmp_path)
    assert leftover.startswith(".out.json.") and leftover.endswith(".tmp")
    with atomic_path(tmp_path / "out.json") as tmp:  # the next write removes the killed one's leftover
        tmp.write_text('{"v": 3}')
    assert hidden(tmp_path) == [] and json.loads((tmp_path / "out.json").read_text()) == {"v": 3}


WRITE_DIR = """
from bertpipe.contracts import DatasetMeta
from bertpipe.tables import ParquetFrameWriter
from bertpipe.artifacts import atomic_dir
with atomic_dir("data") as out:
    DatasetMeta(labels=["a", "b"], normalization={}, source="new").write(out)
"""


@pytest.mark.parametrize("point,source", [("atomic_dir:before_swap", "old"), ("atomic_dir:between_renames", "old"),
                                          ("atomic_dir:before_cleanup", "new")])
def test_a_folder_swap_killed_at_any_point_is_recovered_by_the_next_read(tmp_path, point, source):
    DatasetMeta(labels=["a", "b"], normalization={}, source="old").write(tmp_path / "data")
    killed_at(point, WRITE_DIR, tmp_path)
    if point == "atomic_dir:between_renames":
        assert not (tmp_path / "data").exists() and ".data.old" in hidden(tmp_path)
    assert DatasetMeta.read(tmp_path / "data").source == source  # the read puts .data.old back first
    assert ".data.old" not in hidden(tmp_path)


def test_the_next_folder_write_recovers_and_removes_leftovers(tmp_path):
    DatasetMeta(labels=["a", "b"], normalization={}, source="old").write(tmp_path / "data")
    killed_at("atomic_dir:between_renames", WRITE_DIR, tmp_path)
    new, old = hidden(tmp_path)  # the old folder moved aside, the new one not yet in place
    assert (new[-4:], old) == (".tmp", ".data.old")
    killed_at("atomic_dir:before_swap", WRITE_DIR, tmp_path)  # this start first puts .data.old back
    assert (tmp_path / "data").is_dir() and new not in hidden(tmp_path) and len(hidden(tmp_path)) == 1
    with atomic_dir(tmp_path / "data") as out:
        (out / "x").write_text("new")
    assert hidden(tmp_path) == [] and (tmp_path / "data" / "x").read_text() == "new"


def test_leftovers_of_live_processes_are_kept(tmp_path):
    mine = tmp_path / f".out.json.{os.getpid()}-abc.tmp"
    mine.write_text("in progress")
    (tmp_path / ".out.json.999999999-abc.tmp").write_text("dead")
    assert [p.name for p in remove_leftovers(tmp_path)] == [".out.json.999999999-abc.tmp"]
    assert mine.exists()
    recover_dir(tmp_path / "nothing")  # nothing to recover: no error


def test_dvc_never_caches_temporary_files():
    done = subprocess.run([sys.executable, "-m", "dvc", "check-ignore", "-d", "models/resume/.last.42-x1y.tmp",
                           "data/ingested/.reviews.parquet.42-x1y.tmp"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.count(".dvcignore") == 2, done.stdout + done.stderr


# --- the resumable training state ---------------------------------------------------------------------

SAVE = """
import sys, torch
from bertpipe.resume import ResumeState, load_state, save_state
torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
state = load_state("resume", "k")
for step in (1, 2):
    state.step = step
    save_state("resume", model, opt, sched, state)
"""


def test_a_save_killed_between_renames_resumes_from_the_save_before(tmp_path):
    killed_at("atomic_dir:between_renames", SAVE, tmp_path)  # dies in the second save
    from bertpipe.resume import load_state

    assert not (tmp_path / "resume/last").exists()
    state = load_state(tmp_path / "resume", "k")
    assert state.step == 1 and (tmp_path / "resume/last/model.safetensors").is_file()
    assert hidden(tmp_path / "resume") == []


def test_a_torn_state_file_starts_over_with_a_warning_naming_it(tmp_path, caplog):
    from bertpipe.resume import load_state

    killed_at("atomic_dir:before_cleanup", SAVE, tmp_path)
    info = tmp_path / "resume/last/state.json"
    info.write_text(info.read_text()[:25])  # torn, as after a power loss without fsync
    state = load_state(tmp_path / "resume", "k")
    assert state.step == 0 and not (tmp_path / "resume/last").exists()
    assert f"{info} cannot be read" in caplog.text and "starting training over" in caplog.text


def test_parquet_written_in_pieces_depends_on_the_rows_alone(tmp_path):
    df = pd.DataFrame({"id": range(10), "text": [f"review {i}" * (i + 1) for i in range(10)]})
    schema = pa.schema([("id", pa.int64()), ("text", pa.large_string())])
    written = []
    for size in (1, 3, 10):
        path = tmp_path / f"pieces-{size}.parquet"
        with ParquetFrameWriter(path, schema, rows_per_group=4) as writer:
            for start in range(0, 10, size):
                writer.add(df.iloc[start:start + size])
        written.append(path.read_bytes())
        groups = pq.ParquetFile(path).metadata
        assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [4, 4, 2]
    assert written[0] == written[1] == written[2]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pieces-1.parquet"), df)
    write_parquet(df, tmp_path / "whole.parquet")  # one row group: what write_parquet writes
    with ParquetFrameWriter(tmp_path / "one.parquet", schema) as writer:
        writer.add(df.iloc[:5])
        writer.add(df.iloc[5:])
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
