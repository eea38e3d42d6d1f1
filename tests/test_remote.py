"""Data and model versioning: the project's default DVC remote is a folder beside it; `dvc push`,
then a fresh clone and `dvc pull`, restores every output byte for byte, with nothing to rerun."""

from __future__ import annotations

import configparser

import pytest

from bertpipe.params import load_yaml
from tests.conftest import ROOT
from tests.mlops_helpers import clone_project, ran_stages, reproduced_project, sh

pytestmark = pytest.mark.slow
REMOTE_FOLDER = "bertpipe-dvc-remote"


def test_default_remote_is_a_relative_local_folder():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    remote = config["core"]["remote"]
    url = config[f"'remote \"{remote}\"'"]["url"]
    assert url == f"../../{REMOTE_FOLDER}"  # relative to .dvc/: a folder beside the project, no machine's path


def output_files(root) -> dict[str, bytes]:
    """Every file of every output the lock file names, by path relative to root."""
    lock = load_yaml((root / "dvc.lock").read_text())
    files = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path = root / out["path"]
            for f in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
                files[str(f.relative_to(root))] = f.read_bytes()
    return files


def test_push_then_pull_in_a_fresh_clone_restores_every_output(tmp_path_factory, tiny_bert, tmp_path):
    origin = clone_project(reproduced_project(tmp_path_factory, tiny_bert), tmp_path / "origin")
    sh(origin, "dvc", "push")
    remote = tmp_path / REMOTE_FOLDER  # ../../ from origin/.dvc
    assert any(p.is_file() for p in remote.rglob("*"))

    sh(tmp_path, "git", "clone", "-q", str(origin), "fresh")
    fresh = tmp_path / "fresh"
    assert not (fresh / "models/best").exists()
    sh(fresh, "dvc", "pull")
    expected = output_files(origin)
    assert {"data/split/test.parquet", "models/best/model.safetensors", "metrics/test.json"} <= set(expected)
    restored = output_files(fresh)
    assert sorted(restored) == sorted(expected)
    assert [path for path in expected if restored[path] != expected[path]] == []

    assert "Data and pipelines are up to date" in sh(fresh, "dvc", "status").stdout
    assert ran_stages(sh(fresh, "dvc", "repro").stdout) == []
