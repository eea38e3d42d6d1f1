"""The MLflow Model Registry helpers: the promotion rule, registration with the `challenger`
alias, and finding the checkpoint behind a local folder or an MLflow URI."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from bertpipe.inference import Classifier
from bertpipe.registry import CHALLENGER, CHAMPION, decide, resolve_checkpoint, set_champion, version_by_alias
from tests.mlops_helpers import constant_checkpoints, log_and_register, model_name


def test_first_model_becomes_champion():
    decision = decide(0.6, None, 0.01, "accuracy")
    assert decision.promote and "first model" in decision.reason


@pytest.mark.parametrize("challenger, champion, margin, promote", [
    (0.91, 0.90, 0.005, True),    # wins by 0.01 > 0.005
    (0.904, 0.90, 0.005, False),  # wins, but by less than the margin
    (0.90, 0.90, 0.0, False),     # a tie never promotes
    (0.80, 0.90, 0.0, False),     # worse
    (-0.30, -0.35, 0.01, True),   # negated log loss: 0.30 beats 0.35
])
def test_challenger_must_beat_champion_by_more_than_the_margin(challenger, champion, margin, promote):
    decision = decide(challenger, champion, margin, "accuracy")
    assert decision.promote is promote
    assert f"{challenger - champion:+.4f}" in decision.reason


@pytest.fixture
def models(store, tmp_path_factory, tiny_bert) -> dict[int, Path]:
    return constant_checkpoints(tmp_path_factory, tiny_bert)


def test_each_registered_version_takes_the_challenger_alias(models, request):
    client, name = MlflowClient(), model_name(request)
    assert version_by_alias(client, name, CHALLENGER) is None  # no such model yet
    first_run = log_and_register(models[0], name)
    first = version_by_alias(client, name, CHALLENGER)
    assert int(first.version) == 1 and first.run_id == first_run and first.tags["run_id"] == first_run
    assert first.tags["git_commit"]
    assert version_by_alias(client, name, CHAMPION) is None  # registering never crowns a champion

    log_and_register(models[1], name)
    assert int(version_by_alias(client, name, CHALLENGER).version) == 2
    set_champion(client, name, "1")
    assert int(version_by_alias(client, name, CHAMPION).version) == 1


def test_resolve_checkpoint_from_a_folder_or_an_mlflow_uri(models, request, tmp_path):
    name = model_name(request)
    assert resolve_checkpoint(str(models[1])) == models[1]
    run_id = log_and_register(models[1], name)
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
