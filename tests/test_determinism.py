"""Same inputs and params, same bytes: ingest, split and tokenize, run by hand and by `dvc repro --force`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bertpipe.params import load_yaml
from stages import ingest, split, tokenize
from tests.conftest import copy_project, init_repo, ran_stages, sh, tiny_reviews, write_params

DATA_STAGES = ["ingest", "split", "tokenize"]


def write_source(path: Path, n: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = tiny_reviews(n)
    df["label"] = df["label"].map({0: "neg", 1: "pos"})
    df.to_csv(path, index=False)
    return path


def source_params(path: str, chunk_rows: int = 2000) -> dict:
    return {"ingest": {"source": "csv", "path": path, "label_names": ["neg", "pos"]},
            "split": {"max_train": 60, "max_val": 10, "max_test": None},
            "tokenize": {"max_length": 24, "head_tokens": 6, "chunk_rows": chunk_rows}}


def run_data_stages(params: Path, out: Path) -> None:
    ingest.main(["--params", str(params), "--out", str(out / "ingested"), "--metrics", str(out / "ingest.json")])
    split.main(["--params", str(params), "--data", str(out / "ingested"), "--out", str(out / "split"),
                "--metrics", str(out / "split.json")])
    tokenize.main(["--params", str(params), "--data", str(out / "split"), "--out", str(out / "tokenized"),
                   "--metrics", str(out / "tokenize.json")])


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_runs_write_identical_bytes_whatever_the_chunk_size(tmp_path):
    source = write_source(tmp_path / "reviews.csv")
    params = write_params(tmp_path / "p.yaml", **source_params(str(source)))
    run_data_stages(params, tmp_path / "a")
    run_data_stages(params, tmp_path / "b")
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert "tokenized/train.safetensors" in first and "ingested/quarantine.parquet" in first
    assert first == second
    # Chunking bounds memory; it does not change what is written.
    small = write_params(tmp_path / "small.yaml", **source_params(str(source), chunk_rows=7))
    run_data_stages(small, tmp_path / "c")
    assert file_bytes(tmp_path / "c/tokenized") == file_bytes(tmp_path / "a/tokenized")
    assert not [p for p in (tmp_path / "a").rglob("*") if p.name.startswith(".")]  # no temporary files left


def out_hashes(repo: Path) -> dict[str, str]:
    lock = load_yaml((repo / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for name in DATA_STAGES for out in lock["stages"][name]["outs"]}


@pytest.mark.slow
def test_dvc_repro_force_twice_gives_the_same_hashes_and_new_data_reruns_ingest(tmp_path):
    """The README's own-data recipe: `dvc add` the file, point params at it; dvc.yaml as it is."""
    repo = copy_project(tmp_path)
    write_source(repo / "data/raw/reviews.csv")
    write_params(repo / "params.yaml", **source_params("data/raw/reviews.csv"))
    pipeline = load_yaml((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {name: pipeline["stages"][name] for name in DATA_STAGES}  # no model needed
    pipeline.pop("plots", None)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    init_repo(repo, ("dvc", "add", "-q", "data/raw/reviews.csv"))

    assert ran_stages(sh(repo, "dvc", "repro", "--force", "tokenize").stdout) == DATA_STAGES
    first = out_hashes(repo)
    sh(repo, "dvc", "repro", "--force", "tokenize")
    assert out_hashes(repo) == first
    assert {"data/ingested", "data/split", "data/tokenized", "metrics/tokenize.json"} <= set(first)
    assert "changed" not in sh(repo, "dvc", "status").stdout

    # A new version of the user's file (${ingest.path} is a dep of ingest) reruns the pipeline.
    write_source(repo / "data/raw/reviews.csv", n=100)
    sh(repo, "dvc", "add", "-q", "data/raw/reviews.csv")
    assert ran_stages(sh(repo, "dvc", "repro", "tokenize").stdout) == DATA_STAGES
    assert out_hashes(repo)["data/ingested"] != first["data/ingested"]
