"""Helpers for the registry, promotion, prediction, serving, experiment and remote tests:
checkpoints whose predictions are known in advance, and one tiny DVC project reproduced once
per session that the slower tests clone."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

import mlflow
import pandas as pd
import torch

from bertpipe.artifacts import write_parquet
from bertpipe.contracts import CheckpointMeta, DatasetMeta
from bertpipe.inference import Classifier
from bertpipe.lineage import log_lineage
from bertpipe.tracking import log_classifier
from tests.conftest import (  # noqa: F401 (sh, ran_stages, using_store: also imported from here)
    ROOT,
    copy_project,
    init_repo,
    ran_stages,
    sh,
    tiny_reviews,
    tiny_train_params,
    using_store,
    write_params,
)

LABELS = ["negative", "positive"]
EXAMPLES = ["a wonderful film", "a dull film"]
# Files a project needs beyond copy_project's (init_repo brings the DVC config): the retrain script.
EXTRA_FILES = ("ci/retrain.sh", ".gitignore")


def constant_checkpoint(folder: Path, tiny_bert: Path, favour: int, labels: list[str] = LABELS) -> Path:
    """A tiny BERT classifier that puts ~all probability on class `favour` (an index into
    labels, its class order), whatever the text."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(tiny_bert, num_labels=2, id2label=dict(enumerate(labels)),
                                        label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([-6.0, 6.0] if favour == 1 else [6.0, -6.0]))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    CheckpointMeta(base_model=str(tiny_bert), base_model_revision="", max_length=64, truncation="head_tail",
                   head_tokens=16, pad_token_id=0, normalization={}, labels=list(labels)).write(folder)
    return folder


_SHARED: dict[str, object] = {}


def constant_checkpoints(tmp_path_factory, tiny_bert: Path) -> dict[int, Path]:
    """{0: always negative, 1: always positive}, built once per session."""
    if "checkpoints" not in _SHARED:
        folder = tmp_path_factory.mktemp("constant-models")
        _SHARED["checkpoints"] = {favour: constant_checkpoint(folder / f"always-{favour}", tiny_bert, favour)
                                  for favour in (0, 1)}
    return _SHARED["checkpoints"]


def log_and_register(checkpoint: Path, name: str, experiment: str = "tests", split: Path | None = None) -> str:
    """Log checkpoint as the project's MLflow model in a new run and register it, with the
    lineage of the split folder when one is given (as train does); the run id."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        tags = log_lineage(split) if split else None
        log_classifier(checkpoint, EXAMPLES, Classifier.load(checkpoint).predict_frame(EXAMPLES), name, tags)
    return run.info.run_id


def write_test_split(folder: Path, labels: list[int]) -> Path:
    write_parquet(tiny_reviews(len(labels)).assign(label=labels), folder / "test.parquet")
    return folder


def unseen_reviews(labels: list[int]) -> pd.DataFrame:
    """Reviews in words no tiny_reviews text uses, so a TF-IDF model fitted on those learns
    nothing about them and predicts its training prior."""
    return pd.DataFrame({"id": range(1000, 1000 + len(labels)),
                         "text": [f"zephyr quokka {i} xylophone {i * 7}" for i in range(len(labels))],
                         "label": labels})


def write_gate_split(folder: Path, test_labels: list[int], train_negative: int = 8, train_positive: int = 4,
                     test_rows: pd.DataFrame | None = None) -> Path:
    """A split folder for the promotion gate: train and val from tiny_reviews (mostly negative,
    so both baselines predict negative on unseen text), test of unseen words with test_labels."""
    reviews = tiny_reviews(2 * max(train_negative, train_positive) + 8)
    negative, positive = reviews[reviews["label"] == 0], reviews[reviews["label"] == 1]
    train = pd.concat([negative.iloc[:train_negative], positive.iloc[:train_positive]], ignore_index=True)
    val = pd.concat([negative.iloc[train_negative:train_negative + 2],
                     positive.iloc[train_positive:train_positive + 2]], ignore_index=True)
    write_parquet(train, folder / "train.parquet")
    write_parquet(val, folder / "val.parquet")
    write_parquet(unseen_reviews(test_labels) if test_rows is None else test_rows, folder / "test.parquet")
    DatasetMeta(labels=LABELS, normalization={}, source="csv", origin={"path": "tests"}).write(folder)
    return folder


def new_project(dest: Path, tiny_bert: Path) -> Path:
    """The project's tracked files in a fresh git repo, on the tiny configuration, committed."""
    dest.mkdir(parents=True, exist_ok=True)
    copy_project(dest)
    for name in EXTRA_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    write_params(dest / "params.yaml", **tiny_train_params(tiny_bert))
    return init_repo(dest)


_REPRODUCED: dict[str, Path] = {}


def reproduced_project(tmp_path_factory, tiny_bert: Path) -> Path:
    """A tiny project after one `dvc repro`, committed, its MLflow store in <project>/mlflow.db.

    Built once per session; tests that change it work on a clone (clone_project)."""
    if "path" not in _REPRODUCED:
        root = new_project(tmp_path_factory.mktemp("reproduced") / "project", tiny_bert)
        done = sh(root, "dvc", "repro", env=mlflow_env(root))
        (root.parent / "repro.log").write_text(done.stdout)  # what ran, for the tests that check it
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", "reproduce")
        _REPRODUCED["path"] = root
    return _REPRODUCED["path"]


def mlflow_env(root: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def clone_project(source: Path, dest: Path) -> Path:
    """A git clone of source whose DVC cache is source's and whose MLflow store is a copy of source's."""
    sh(dest.parent, "git", "clone", "-q", str(source), dest.name)
    sh(dest, "git", "config", "user.email", "ci@example.com")
    sh(dest, "git", "config", "user.name", "ci")
    sh(dest, "dvc", "cache", "dir", "--local", str(source / ".dvc/cache"))
    sh(dest, "dvc", "checkout", "-q")
    shutil.copy2(source / "mlflow.db", dest / "mlflow.db")
    return dest


def stored_model(name: str, version: str) -> Path:
    """Where a registered version's files lie in the local store (to tamper with them)."""
    uri = mlflow.MlflowClient().get_model_version_download_uri(name, version)
    return Path(urllib.parse.urlparse(uri).path if uri.startswith("file:") else uri)


def model_name(request) -> str:
    """A registered model name of the test's own, so tests can share one store."""
    return "clf-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
