"""The MLflow Model Registry helpers: registration (lineage tags, no alias), the hand-rollback
record, and finding the checkpoint behind a local folder or an MLflow URI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from bertpipe.artifacts import file_digest, read_parquet
from bertpipe.inference import Classifier
from bertpipe.lineage import row_hashes, set_digest
from bertpipe.manifest import MANIFEST_TAG, ManifestMismatch, logged_files
from bertpipe.registry import (
    CHALLENGER,
    CHAMPION,
    hand_rollback,
    remember_champion,
    resolve_checkpoint,
    set_alias,
    set_champion,
    version_by_alias,
)
from tests.conftest import free_port
from tests.mlops_helpers import (
    constant_checkpoints,
    log_and_register,
    model_name,
    stored_model,
    write_gate_split,
)


@pytest.fixture
def models(store, tmp_path_factory, tiny_bert) -> dict[int, Path]:
    return constant_checkpoints(tmp_path_factory, tiny_bert)


def test_registering_moves_no_alias_and_records_the_lineage(models, request, tmp_path):
    client, name = MlflowClient(), model_name(request)
    split = write_gate_split(tmp_path / "split", [1, 0, 1])
    first_run = log_and_register(models[0], name, split=split)
    log_and_register(models[1], name, split=split)
    assert client.get_registered_model(name).aliases == {}  # a sweep or a branch moves nothing
    first = client.get_model_version(name, "1")
    assert first.run_id == first_run and first.tags["run_id"] == first_run and first.tags["git_commit"]
    for part in ("train", "val", "test"):
        texts = read_parquet(split / f"{part}.parquet")["text"].tolist()
        assert first.tags[f"lineage.{part}_digest"] == set_digest(row_hashes(texts))
        assert first.tags[f"lineage.{part}_rows"] == str(len(texts))
    assert json.loads(first.tags["lineage.labels"]) == ["negative", "positive"]
    assert json.loads(first.tags["lineage.data_version"]) == {"path": "tests"}
    rows = read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{first_run}/lineage/rows.parquet",
                                                             dst_path=str(tmp_path / "dl")))
    assert rows["split"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 3}


def test_the_digest_is_of_the_row_set_not_its_order_or_spacing():
    assert set_digest(row_hashes(["A film", "another"])) == set_digest(row_hashes(["another", "  a   FILM "]))
    assert set_digest(row_hashes(["A film"])) != set_digest(row_hashes(["A film", "another"]))


def test_a_hand_moved_champion_is_a_rollback(models, request):
    client, name = MlflowClient(), model_name(request)
    for favour in (0, 1):
        log_and_register(models[favour], name)
    assert hand_rollback(client, name, None) is None  # the gate never ran
    set_champion(client, name, "2")
    remember_champion(client, name)  # what the gate does after each run
    assert hand_rollback(client, name, version_by_alias(client, name, CHAMPION)) is None
    set_champion(client, name, "1")  # a person rolls back
    assert hand_rollback(client, name, version_by_alias(client, name, CHAMPION)) == "2"
    client.delete_registered_model_alias(name, CHAMPION)  # or removes the alias
    assert hand_rollback(client, name, None) == "2"


def test_resolve_checkpoint_from_a_folder_or_an_mlflow_uri(models, request, tmp_path):
    name = model_name(request)
    assert resolve_checkpoint(str(models[1])) == models[1]
    run_id = log_and_register(models[1], name)
    set_alias(MlflowClient(), name, CHALLENGER, "1")
    for i, uri in enumerate((f"models:/{name}@challenger", f"models:/{name}/1", f"runs:/{run_id}/model")):
        folder = resolve_checkpoint(uri, tmp_path / str(i))
        out = Classifier.load(folder).predict_frame(["any text at all"])
        assert out["label"].tolist() == ["positive"] and out["prob_positive"][0] > 0.99
        # A downloaded MLflow model folder works as a local reference too.
        assert resolve_checkpoint(str(folder.parents[1])) == folder


def test_resolve_checkpoint_names_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder; give a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "empty"))


def test_a_missing_alias_or_version_names_the_fix(models, request, tmp_path):
    name = model_name(request)
    log_and_register(models[1], name)  # version 1, no alias
    for uri in (f"models:/{name}@champion", f"models:/{name}/7"):
        with pytest.raises(ValueError, match=rf"models:/{name}.*: not in the MLflow store .*@champion alias exists "
                                             r"once the promotion gate promoted a model"):
            resolve_checkpoint(uri, tmp_path)


def test_registration_records_a_digest_manifest_of_every_file_the_model_carries(models, request):
    name = model_name(request)
    log_and_register(models[1], name)
    tag = json.loads(MlflowClient().get_model_version(name, "1").tags[MANIFEST_TAG])
    files, stored = logged_files(stored_model(name, "1"))
    assert json.loads(stored.read_text()) == tag  # the same in the artifact as in the tag
    assert tag == {key: file_digest(path) for key, path in files.items()}  # every file the model loads
    ckpt = f"artifacts/{models[1].name}"
    assert {f"{ckpt}/model.safetensors", f"{ckpt}/config.json", f"{ckpt}/tokenizer.json", f"{ckpt}/pipeline.json",
            "code/bertpipe/inference.py", "code/bertpipe/manifest.py", "mlflow_model.py"} <= set(tag)


@pytest.mark.parametrize("change, match", [
    (lambda ckpt: (ckpt / "config.json").write_text((ckpt / "config.json").read_text() + " "),
     r"artifacts/always-1/config.json has sha256 [0-9a-f]{12}\.\.\., the manifest says [0-9a-f]{12}"),
    (lambda ckpt: (ckpt.parents[1] / "code/bertpipe/extra.py").write_text("print('hi')\n"),
     r"code/bertpipe/extra.py is not in the manifest \(a file added after registration\)"),
], ids=["config changed", "code added"])
def test_the_served_model_refuses_to_load_files_that_changed_naming_the_file(models, request, tmp_path,
                                                                             change, match):
    name = model_name(request)
    log_and_register(models[1], name)
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "dl")))
    served = mlflow.pyfunc.load_model(str(folder))  # as it was registered: loads and answers
    assert served.predict(pd.DataFrame({"text": ["any text"]}))["label"].tolist() == ["positive"]
    change(folder / "artifacts" / models[1].name)
    with pytest.raises(ManifestMismatch, match=rf"{re.escape(str(folder))}\) is not the model that was "
                                               rf"registered: {match}"):
        mlflow.pyfunc.load_model(str(folder))


@pytest.mark.slow
def test_mlflow_models_serve_refuses_to_start_on_a_changed_model(models, request, tmp_path):
    """The real server runs the artifact's own code (code/ first on sys.path): it checks too."""
    log_and_register(models[1], model_name(request))
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{model_name(request)}/1", dst_path=str(tmp_path)))
    code = folder / "code/bertpipe/inference.py"
    code.write_text(code.read_text() + "# changed after registration\n")
    with open(tmp_path / "serve.log", "w+") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(folder),
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(free_port()), "-w", "1"],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = server.wait(timeout=180)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
        out.seek(0)
        log = out.read()
    assert status != 0
    assert "is not the model that was registered: code/bertpipe/inference.py has sha256" in log, log[-3000:]
