import pytest

from bertpipe.config import IngestParams, SplitParams, TokenizeParams, TrainParams
from bertpipe.params import ParamsError, load_section
from tests.conftest import write_params


def test_defaults_in_params_yaml_load():
    from tests.conftest import ROOT

    for cls, name in ((IngestParams, "ingest"), (SplitParams, "split"), (TokenizeParams, "tokenize"),
                      (TrainParams, "train")):
        assert isinstance(load_section(cls, name, ROOT / "params.yaml"), cls)


def test_values_are_typed_and_frozen(tmp_path):
    p = load_section(SplitParams, "split", write_params(tmp_path / "p.yaml", split={"val_fraction": 0.25}))
    assert p.val_fraction == 0.25 and isinstance(p.seed, int)
    with pytest.raises(AttributeError):
        p.seed = 1  # frozen


@pytest.mark.parametrize("section,values,match", [
    ("split", {"val_fraction": 1.2}, r"split\.val_fraction=1\.2 in .*p\.yaml: must be > 0 and < 1"),
    ("split", {"val_fraction": 0.5, "test_fraction": 0.5}, r"split\.test_fraction=0\.5 .*must be below 1"),
    ("split", {"vall_fraction": 0.1}, r"split\.vall_fraction in .*: unknown key; known keys of split are: .*val_fraction"),
    ("train", {"batch_size": "16"}, r"train\.batch_size='16' .*must be of type int"),
    ("train", {"batch_size": True}, r"train\.batch_size=True .*must be a number"),
    ("train", {"precision": "fp16"}, r"train\.precision='fp16' .*must be one of 'auto', 'bf16', 'fp32'"),
    ("train", {"learning_rate": 0}, r"train\.learning_rate=0\.0 .*must be > 0"),
    ("tokenize", {"truncation": "middle"}, r"tokenize\.truncation='middle' .*must be one of"),
    ("tokenize", {"max_length": 64, "head_tokens": 100}, r"tokenize\.head_tokens=100 .*<= 61"),
])
def test_bad_values_name_key_value_and_fix(tmp_path, section, values, match):
    path = write_params(tmp_path / "p.yaml", **{section: values})
    cls = {"split": SplitParams, "train": TrainParams, "tokenize": TokenizeParams}[section]
    with pytest.raises(ParamsError, match=match):
        load_section(cls, section, path)


def test_missing_section_is_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("split: {}\n")
    with pytest.raises(ParamsError, match=r"no 'train' section"):
        load_section(TrainParams, "train", path)
