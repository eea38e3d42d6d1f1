"""Stage hand-over files: each reads back what it wrote, and refuses a file of another kind or
schema version with an error naming the file and both versions."""

from __future__ import annotations

import json

import pytest

from bertpipe.contracts import SCHEMA_VERSION, CheckpointMeta, ContractError, DatasetMeta, TokenizedMeta

TOKENIZED = TokenizedMeta(model="embedded:minilm-l6", model_revision="", tokenizer="tokenizer", max_length=64,
                          truncation="head_tail", head_tokens=16, pad_token_id=0, labels=["negative", "positive"],
                          normalization={"html_breaks": True})
DATASET = DatasetMeta(labels=["negative", "positive"], normalization={"whitespace": True}, source="csv",
                      origin={"sha256": "ab" * 32})


@pytest.mark.parametrize("meta", [TOKENIZED, DATASET, CheckpointMeta.from_tokenized(TOKENIZED)])
def test_round_trip(tmp_path, meta):
    path = meta.write(tmp_path)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert type(meta).read(tmp_path) == meta


def test_other_schema_version_is_refused_naming_file_and_versions(tmp_path):
    path = TOKENIZED.write(tmp_path)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ContractError, match=rf"{tmp_path}/meta\.json: a tokenized file of schema version "
                                            rf"{SCHEMA_VERSION + 1}, but this code reads tokenized schema version "
                                            rf"{SCHEMA_VERSION}.*rerun tokenize"):
        TokenizedMeta.read(tmp_path)


def test_file_of_another_kind_is_refused(tmp_path):
    DATASET.write(tmp_path)  # ingest's meta.json where tokenize's is expected
    with pytest.raises(ContractError, match=rf"{tmp_path}/meta\.json: a dataset file of schema version "
                                            rf"{SCHEMA_VERSION}, but this code reads tokenized"):
        TokenizedMeta.read(tmp_path)


def test_unversioned_file_is_refused(tmp_path):
    (tmp_path / "pipeline.json").write_text(json.dumps({"base_model": "x", "max_length": 64}))
    with pytest.raises(ContractError, match=r"pipeline\.json: a unversioned file of schema version None, "
                                            rf"but this code reads checkpoint schema version {SCHEMA_VERSION}"):
        CheckpointMeta.read(tmp_path)


def test_missing_file_names_folder_and_producer(tmp_path):
    with pytest.raises(ContractError, match=rf"{tmp_path}/pipeline\.json: missing; {tmp_path} is not a complete "
                                            r"checkpoint folder: train it again"):
        CheckpointMeta.read(tmp_path)


def test_edited_keys_are_refused(tmp_path):
    path = DATASET.write(tmp_path)
    raw = json.loads(path.read_text())
    del raw["origin"]
    path.write_text(json.dumps({**raw, "extra": 1}))
    with pytest.raises(ContractError, match=r"keys \['extra', 'origin'\] do not match dataset schema version"):
        DatasetMeta.read(tmp_path)
