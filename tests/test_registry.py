"""The MLflow Model Registry helpers: registration (lineage tags, no alias), the hand-rollback
record, and finding the checkpoint behind a local folder or an MLflow URI."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from bertpipe.artifacts import read_parquet
from bertpipe.inference import Classifier
from bertpipe.lineage import row_hashes, set_digest
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
from tests.mlops_helpers import (
    constant_checkpoints,
    log_and_register,
    model_name,
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
