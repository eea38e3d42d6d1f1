"""Outside code and data stay pinned: models, tokenizers and datasets load with
trust_remote_code=False, a hub model takes tokenize.model_revision, and the revisions are recorded."""

from __future__ import annotations

import json

import pytest

from bertpipe.contracts import CheckpointMeta, DatasetMeta, TokenizedMeta
from bertpipe.modeling import pretrained_kwargs
from stages import tokenize
from tests.conftest import prepare_tokenized, write_params


class Called(Exception):
    """Stops a stand-in loader once it has seen its arguments."""


def recorder(seen: dict):
    def load(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise Called
    return load


def test_a_hub_model_is_read_at_its_revision_without_remote_code(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(tokenize.AutoTokenizer, "from_pretrained", recorder(seen))
    params = write_params(tmp_path / "p.yaml", tokenize={"model": "some-org/some-bert", "model_revision": "a1b2c3"})
    DatasetMeta(labels=["a", "b"], normalization={}, source="csv").write(tmp_path)
    with pytest.raises(Called):
        tokenize.main(["--params", str(params), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                       "--metrics", str(tmp_path / "m.json")])
    assert seen == {"args": ("some-org/some-bert",), "trust_remote_code": False, "revision": "a1b2c3"}


def test_a_revision_for_a_model_that_has_none_is_refused(tmp_path):
    assert pretrained_kwargs("embedded:minilm-l6", "") == {"trust_remote_code": False, "revision": None}
    with pytest.raises(ValueError, match=r"tokenize.model_revision='v1' in params: 'embedded:minilm-l6' is not a "
                                         r"hub model .*set tokenize.model_revision to ''"):
        pretrained_kwargs("embedded:minilm-l6", "v1")
    with pytest.raises(ValueError, match=r"is not a hub model"):
        pretrained_kwargs(str(tmp_path), "main")  # a local folder


def test_the_revision_travels_to_tokenized_meta_and_the_checkpoint(tmp_path, tiny_bert):
    prepare_tokenized(tmp_path, tiny_bert, n=48)
    meta = TokenizedMeta.read(tmp_path / "tok")
    assert meta.model_revision == "" and CheckpointMeta.from_tokenized(meta).base_model_revision == ""
    assert json.loads((tmp_path / "tok/meta.json").read_text())["model_revision"] == ""


def test_a_hub_dataset_is_read_at_its_revision_without_remote_code(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from bertpipe.sources import read_huggingface
    from tests.test_sources import params

    seen = {}
    monkeypatch.setattr(datasets, "load_dataset", recorder(seen))
    with pytest.raises(Called):
        read_huggingface(params(source="huggingface", hf_dataset="org/data", hf_revision="v2.0"))
    assert seen == {"args": ("org/data", None), "revision": "v2.0", "trust_remote_code": False}
