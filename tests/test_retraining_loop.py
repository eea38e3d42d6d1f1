"""The retraining loop, four rounds as a user lives them, with `dvc repro` and the promotion gate
on the real pretrained MiniLM and real movie reviews (the Rotten Tomatoes sentences of the
`movie-reviews` package: short, so a few steps at length 48 learn them well past TF-IDF on the
same 256 rows) in a CSV of the project's own:

1. the first model is trained and promoted;
2. 20% new reviews are appended (the old rows untouched): no old row changes split, none of the
   champion's train or validation rows is in the new test split, and the gate judges (0 or 3, never 5);
3. a training param changes, and the round goes through ci/retrain.sh as CI runs it: `--mode pr`
   retrains and judges as a dry run, the default mode (no flag) is a dry run too and retrains
   nothing more, neither moves an alias, tags a version or pushes; `--mode full` pushes the new
   model to the DVC remote and lets the gate decide;
4. rows are removed: the gate judges.

After each round the gate's summary, the registry's aliases and `models:/<name>@champion` agree."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from bertpipe.config import SplitParams
from bertpipe.embedded import movie_reviews_csv
from bertpipe.lineage import row_hashes
from bertpipe.params import load_section, load_yaml
from bertpipe.registry import CHAMPION, version_by_alias
from stages import split
from tests.conftest import ROOT, copy_project, init_repo, sh, write_params
from tests.mlops_helpers import EXTRA_FILES, mlflow_env, ran_stages

SPLITS = ("train", "val", "test")
CSV = "data/raw/own.csv"
JUDGED = (0, 3)  # promoted, not promoted: the gate judged


def own_reviews(n: int) -> pd.DataFrame:
    """n real movie reviews, both classes mixed (the package's CSV lists them by class)."""
    rows = pd.read_csv(movie_reviews_csv()).query("source == 'rotten_tomatoes'")[["text", "label"]]
    picked = rows.sample(n=n, random_state=0).reset_index(drop=True)
    return picked.assign(label=picked["label"].map({0: "negative", 1: "positive"}))


def project(root: Path, reviews: pd.DataFrame) -> Path:
    root.mkdir(parents=True)
    copy_project(root)
    for name in EXTRA_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    reviews.to_csv(root / CSV, index=False)
    write_params(root / "params.yaml",
                 ingest={"source": "csv", "path": CSV, "label_names": ["negative", "positive"]},
                 split={"keep_source_test": False, "max_train": 256, "max_val": 48, "max_test": 120},
                 tokenize={"model": "embedded:minilm-l6", "max_length": 48, "head_tokens": 16},
                 train={"epochs": 1, "min_steps": 0, "batch_size": 8, "learning_rate": 2e-4, "log_every_steps": 4,
                        "eval_every_steps": 32, "save_every_steps": 32, "precision": "fp32", "group_batches": 2},
                 evaluate={"precision": "fp32"},
                 promote={"min_improvement": 0.0})
    return init_repo(root)


def splits_by_key(root: Path) -> dict[int, str]:
    """Each row of data/split, by its lineage hash, and its split."""
    out = {}
    for name in SPLITS:
        texts = pd.read_parquet(root / f"data/split/{name}.parquet", columns=["text"])["text"].tolist()
        out.update(dict.fromkeys(row_hashes(texts).tolist(), name))
    return out


def home_splits(root: Path) -> dict[int, str]:
    """Every ingested row's home split, the caps lifted: what the capped splits draw from (the
    split stage's own assignment, run in this process)."""
    params = load_section(SplitParams, "split", root / "params.yaml")
    rows, table, _ = split.read_rows(str(root / "data/ingested/reviews.parquet"), params.seed)
    home, _ = split.home_splits(rows, params)
    return dict(zip(row_hashes(table.column("text").to_pylist()).tolist(), home.tolist(), strict=True))


def round_(root: Path, message: str) -> tuple[int, str]:
    """Commit the change, `dvc repro`, run the gate on the commit checked out; then commit the
    new lock file and metrics. The gate's exit status and summary."""
    env = mlflow_env(root)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", message)
    sh(root, "dvc", "repro", env=env)
    gate = sh(root, "python", "-m", "bertpipe.promote", "--run-file", "models/run.json", "--split", "data/split",
              env=env, check=False)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", f"{message}: lock and metrics")
    return gate.returncode, gate.stdout


def registry_state(root: Path, name: str, run_id: str) -> tuple[dict, dict]:
    """The registered model's aliases, and the tags of the version registered for run_id."""
    client = MlflowClient(mlflow_env(root)["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")
    return dict(client.get_registered_model(name).aliases), dict(version.tags)


def round_by_script(root: Path, message: str, name: str) -> tuple[int, str]:
    """A round as CI runs it (ci/retrain.sh), MLflow on its default store (the project's
    sqlite:///mlflow.db, as on a developer's machine): two dry runs, then `--mode full`."""
    gh_summary, gh_output = root.parent / "step_summary.md", root.parent / "output.txt"
    env = {"MLFLOW_TRACKING_URI": None, "DVC_REMOTE_URL": None, "RETRAIN_MODE": None,
           "GITHUB_STEP_SUMMARY": str(gh_summary), "GITHUB_OUTPUT": str(gh_output)}
    remote = root.parent / "bertpipe-dvc-remote"  # the project's default remote, ../../ of .dvc
    sh(root, "git", "commit", "-qam", message)  # the gate refuses uncommitted changes (exit 7)
    aliases_before = dict(MlflowClient(mlflow_env(root)["MLFLOW_TRACKING_URI"]).get_registered_model(name).aliases)

    pr = sh(root, "bash", "ci/retrain.sh", "--mode", "pr", env=env)
    assert ran_stages(pr.stdout) == ["train", "evaluate"]  # a params change retrains
    summary = (root / "retrain_summary.md").read_text()
    assert "(dry run: no alias or tag changed)" in summary and "| majority class (" in summary
    assert re.search(r"\| challenger v\d+ \(run ", summary) and "metrics/test.json" in summary  # dvc metrics diff
    assert gh_output.read_text() in ("gate=would-promote\n", "gate=would-keep\n")
    assert gh_summary.read_text() == summary

    dry = sh(root, "bash", "ci/retrain.sh", env=env)  # no mode: a dry run too
    assert ran_stages(dry.stdout) == []  # nothing changed since: nothing retrained
    assert "(dry run: no alias or tag changed)" in (root / "retrain_summary.md").read_text()
    assert gh_output.read_text().splitlines()[-1] in ("gate=would-promote", "gate=would-keep")
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    aliases, tags = registry_state(root, name, run_id)
    assert aliases == aliases_before and "promotion" not in tags  # nothing moved, nothing tagged
    assert not remote.exists() or not any(remote.rglob("*"))  # and nothing pushed

    full = sh(root, "bash", "ci/retrain.sh", "--mode", "full", env=env)
    assert ran_stages(full.stdout) == []
    verdict = gh_output.read_text().splitlines()[-1]
    assert verdict in ("gate=promoted", "gate=kept")
    aliases, tags = registry_state(root, name, run_id)
    (version,) = MlflowClient(mlflow_env(root)["MLFLOW_TRACKING_URI"]).search_model_versions(f"run_id = '{run_id}'")
    assert str(aliases["challenger"]) == str(version.version)  # the gate points it at what it judged
    lock = load_yaml((root / "dvc.lock").read_text())
    best = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "models/best")
    pushed = {p.name for p in remote.rglob("*") if p.is_file()}
    assert best["md5"][2:] in pushed  # dvc push sent the new model (remote: files/md5/<2>/<rest>)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "--allow-empty", "-m", f"{message}: lock and metrics")
    return {"gate=promoted": 0, "gate=kept": 3}[verdict], (root / "retrain_summary.md").read_text()


def champion_of(root: Path, name: str) -> tuple[int, str]:
    """The champion's version, and the run its `models:/<name>@champion` URI resolves to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_env(root)["MLFLOW_TRACKING_URI"])
        client = MlflowClient()
        version = version_by_alias(client, name, CHAMPION)
        info = mlflow.models.get_model_info(f"models:/{name}@{CHAMPION}")
        return int(version.version), info.run_id


def trained_rows(root: Path) -> set[int]:
    return {h for h, name in splits_by_key(root).items() if name in ("train", "val")}


@pytest.mark.slow
def test_four_rounds_of_retraining_keep_splits_and_are_judged(tmp_path):
    reviews = own_reviews(720)
    root = project(tmp_path / "project", reviews.iloc[:600])
    name = load_yaml((root / "params.yaml").read_text())["train"]["registered_model"]
    history: list[tuple[int, str, dict[int, str], dict[int, str]]] = []
    champion_trained: list[set[int]] = []

    def after(code: str | int, summary: str) -> None:
        history.append((int(code), summary, splits_by_key(root), home_splits(root)))
        version, run_id = champion_of(root, name)
        promoted = re.search(r"\*\*promoted\*\*: challenger v(\d+) \(run (\w{8})\)", summary)
        if promoted:  # the summary's verdict is what the registry holds
            assert int(promoted.group(1)) == version and run_id.startswith(promoted.group(2))
            champion_trained.append(trained_rows(root))
        else:
            assert "**not promoted**" in summary and f"champion v{version} (run {run_id[:8]})" in summary
        # No row the champion learned from is in this round's test split.
        test_rows = {h for h, split in history[-1][2].items() if split == "test"}
        assert not test_rows & champion_trained[-1]

    code, summary = round_(root, "round 1: 600 reviews")
    assert code == 0, summary  # the first model clears both baselines
    after(code, summary)

    pd.concat([reviews.iloc[:600], reviews.iloc[600:]]).to_csv(root / CSV, index=False)  # +20%, old rows as they were
    code, summary = round_(root, "round 2: 120 new reviews")
    assert code in JUDGED, summary
    after(code, summary)

    params = load_yaml((root / "params.yaml").read_text())
    params["train"]["learning_rate"] = 1e-4
    write_params(root / "params.yaml", **{k: v for k, v in params.items() if isinstance(v, dict)})
    code, summary = round_by_script(root, "round 3: learning rate", name)
    assert code in JUDGED, summary
    after(code, summary)

    reviews.iloc[60:].to_csv(root / CSV, index=False)  # 60 of the first reviews removed
    code, summary = round_(root, "round 4: rows removed")
    assert code in JUDGED, summary
    after(code, summary)

    # No row ever changed its home split; the capped splits drew only from their own.
    for (_, _, _, before), (_, _, _, later) in zip(history, history[1:], strict=False):
        common = set(before) & set(later)
        assert len(common) > 400 and all(before[h] == later[h] for h in common)
    for _, _, drawn, homes in history:
        assert all(homes[h] == split for h, split in drawn.items())
    assert np.mean([c == 0 for c, *_ in history]) > 0  # at least the first was promoted
