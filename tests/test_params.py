import shutil

import pytest
import yaml
from pydantic import ValidationError

from bertpipe.config import EvaluateParams, IngestParams, SplitParams, TokenizeParams, TrainParams
from bertpipe.params import ParamsError, load_section, load_yaml
from tests.conftest import ROOT, write_params


def test_defaults_in_params_yaml_load():
    for cls, name in ((IngestParams, "ingest"), (SplitParams, "split"), (TokenizeParams, "tokenize"),
                      (TrainParams, "train")):
        assert isinstance(load_section(cls, name, ROOT / "params.yaml"), cls)


def test_values_are_typed_and_frozen(tmp_path):
    p = load_section(SplitParams, "split", write_params(tmp_path / "p.yaml", split={"val_fraction": 0.25}))
    assert p.val_fraction == 0.25 and isinstance(p.seed, int)
    with pytest.raises(ValidationError, match="frozen"):
        p.seed = 1


@pytest.mark.parametrize("section,values,match", [
    ("split", {"val_fraction": 1.2}, r"split\.val_fraction=1\.2 in .*p\.yaml: must be > 0 and < 1"),
    ("split", {"val_fraction": 0.5, "test_fraction": 0.5}, r"split\.test_fraction=0\.5 .*must be below 1"),
    ("split", {"max_val": 0}, r"split\.max_val=0 in .*p\.yaml: must be >= 1$"),
    ("split", {"vall_fraction": 0.1},
     r"split\.vall_fraction in .*p\.yaml: unknown key; did you mean 'val_fraction'\? Known keys of split are: "
     r".*val_fraction"),
    ("split", {"vall_fraction": 0.1, "zzz": 1}, r"split\.vall_fraction in .*unknown key; did you mean .*"
                                                r"\(also unknown: zzz\)$"),
    ("split", {"zzz": 1}, r"split\.zzz in .*unknown key; known keys of split are: keep_source_test, max_test"),
    ("train", {"batch_size": "16"}, r"train\.batch_size='16' .*must be of type int, not text: write the number "
                                    r"without quotes"),
    ("train", {"batch_size": True}, r"train\.batch_size=True .*must be a number \(int\), not true or false"),
    ("train", {"seed": 42.0}, r"train\.seed=42\.0 .*must be of type int: a whole number such as 42, without a "
                              r"decimal point"),
    ("train", {"epochs": float("nan")}, r"train\.epochs=nan .*must be a finite number"),
    ("train", {"precision": "fp16"}, r"train\.precision='fp16' .*must be one of 'auto', 'bf16', 'fp32' "
                                     r"\(did you mean 'bf16'\?\)"),
    ("train", {"learning_rate": 0}, r"train\.learning_rate=0 .*must be > 0 and <= 1"),
    ("train", {"mlflow_experiment": " "}, r"train\.mlflow_experiment=' ' .*must not be empty"),
    ("train", {"batch_size": 0, "epochs": "1"},
     r"train\.epochs='1' .*must be of type float, not text.* \(also wrong: train\.batch_size\)$"),
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


# YAML 1.2 as DVC writes it: PyYAML (YAML 1.1) reads 5e-05 and 1e-4 as strings.
@pytest.mark.parametrize("text,value", [("5e-05", 5e-05), ("1e-4", 1e-4), (".5", 0.5), ("1E-4", 1e-4),
                                        ("2e5", 2e5), ("1.0e+3", 1000.0)])
def test_yaml_1_2_floats_load_as_numbers(text, value):
    loaded = load_yaml(f"x: {text}\n")["x"]
    assert isinstance(loaded, float) and loaded == value


def test_yaml_1_2_integers_with_underscores_and_yes_stays_text():
    assert load_yaml("x: 1_000\n")["x"] == 1000
    assert load_yaml("x: yes\n")["x"] == "yes"  # YAML 1.1 made this True


def test_small_learning_rate_loads_as_float(tmp_path):
    path = tmp_path / "p.yaml"
    text = (ROOT / "params.yaml").read_text().replace("learning_rate: 0.00008", "learning_rate: 5e-05")
    assert "learning_rate: 5e-05" in text
    path.write_text(text)
    assert load_section(TrainParams, "train", path).learning_rate == 5e-05


def test_values_written_by_dvc_set_param_load_with_their_types(tmp_path):
    """`dvc exp run -S` edits params.yaml with dvc.utils.hydra.apply_overrides (ruamel, YAML 1.2):
    the same call here, without running an experiment, then every section still loads."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", path)
    apply_overrides(path, ["train.learning_rate=5e-5", "train.weight_decay=1e-4", "train.epochs=.5",
                           "train.eval_every_steps=1_000", "split.val_fraction=0.05",
                           "ingest.max_quarantine_fraction=0.00001"])
    text = path.read_text()
    assert "learning_rate: 5e-05" in text and "max_quarantine_fraction: 1e-05" in text  # as DVC writes them
    train = load_section(TrainParams, "train", path)
    assert (train.learning_rate, train.weight_decay, train.epochs, train.eval_every_steps) == (5e-05, 1e-4, 0.5, 1000)
    assert isinstance(train.eval_every_steps, int)
    assert load_section(IngestParams, "ingest", path).max_quarantine_fraction == 1e-05
    assert load_section(SplitParams, "split", path).val_fraction == 0.05


@pytest.mark.parametrize("cls,section,key", [(TrainParams, "train", "learning_rate"),
                                             (SplitParams, "split", "max_train"),
                                             (EvaluateParams, "evaluate", "calibration_bins")])
def test_missing_key_names_section_key_and_fix(tmp_path, cls, section, key):
    params = load_yaml((ROOT / "params.yaml").read_text())
    del params[section][key]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=rf"{section}\.{key} in .*p\.yaml: missing; add `{key}: <value>` "
                                          rf"to the {section} section"):
        load_section(cls, section, path)


def readme_exp_runs() -> list[list[str]]:
    """Every `dvc exp run` command of the ```bash blocks of the README and docs/ (the full-data
    presets are in docs/results.md), as words (continuations joined)."""
    import re
    import shlex

    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))))
    runs = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:3] == ["dvc", "exp", "run"]:
                runs.append(words)
    return runs


def test_every_readme_experiment_sets_valid_params(tmp_path):
    """The README's experiments and docs/results.md's presets (the full-data ones take an hour, so
    they are not run here) set keys that exist, with values every stage accepts, as `dvc exp run -S` writes them."""
    from dvc.utils.hydra import apply_overrides

    runs = readme_exp_runs()
    assert len(runs) >= 3, runs  # the experiment, the sweep and the presets
    for words in runs:
        overrides = [words[i + 1].split(",")[0] if "=" in words[i + 1] and "," in words[i + 1].split("=", 1)[1]
                     else words[i + 1] for i, w in enumerate(words) if w == "-S"]  # a sweep: its first value
        path = tmp_path / "params.yaml"
        shutil.copy2(ROOT / "params.yaml", path)
        apply_overrides(path, overrides)
        before, after = load_yaml((ROOT / "params.yaml").read_text()), load_yaml(path.read_text())
        for override in overrides:
            section, key = override.split("=", 1)[0].split(".", 1)
            assert key in before[section], f"{' '.join(words)}: {section}.{key} is not a key of params.yaml"
            assert after[section][key] == load_yaml(override.split("=", 1)[1]), override
        for cls, name in ((IngestParams, "ingest"), (SplitParams, "split"), (TokenizeParams, "tokenize"),
                          (TrainParams, "train"), (EvaluateParams, "evaluate")):
            load_section(cls, name, path)
