"""Each stage's code deps in dvc.yaml are checked against the code: its import closure."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertpipe.codedeps import code_digest, import_closure
from bertpipe.params import read_yaml
from tests.conftest import ROOT

# Left out of every stage's deps on purpose: logging set-up changes how a run reports, not
# what it computes, so an edit there should not rerun the pipeline.
NOT_DEPS = {"bertpipe/logs.py"}
# Code deps that are not imported, with the reason they are deps all the same.
NOT_IMPORTED = {("train", "bertpipe/mlflow_model.py"): "loaded by path as the logged MLflow model's code"}


def stage_deps() -> dict[str, set[str]]:
    stages = read_yaml(ROOT / "dvc.yaml")["stages"]
    return {name: {d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])}
            for name, stage in stages.items()}


@pytest.mark.parametrize("stage", sorted(stage_deps()))
def test_stage_deps_cover_its_import_closure(stage):
    deps = stage_deps()[stage]
    closure = set(import_closure(f"stages/{stage}.py")) - NOT_DEPS
    missing = sorted(closure - deps)
    assert not missing, (f"dvc.yaml stage '{stage}' imports {missing} (directly or through other modules) "
                         f"but does not list them in its deps; add them, or a change there leaves stale outputs")


@pytest.mark.parametrize("stage", sorted(stage_deps()))
def test_stage_code_deps_are_all_imported(stage):
    code = {d for d in stage_deps()[stage] if d.endswith(".py")}
    closure = set(import_closure(f"stages/{stage}.py"))
    extra = sorted(d for d in code - closure if (stage, d) not in NOT_IMPORTED)
    assert not extra, (f"dvc.yaml stage '{stage}' lists {extra} in its deps, which it does not import: a change "
                       f"there reruns it for nothing; remove them, or say why in NOT_IMPORTED")


def write(root: Path, rel: str, text: str = "") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


@pytest.fixture
def tree(tmp_path) -> Path:
    write(tmp_path, "stages/__init__.py")
    write(tmp_path, "stages/run.py", "import os\nfrom bertpipe.a import f\n\n"
                                     "def main():\n    from bertpipe import lazy\n")
    write(tmp_path, "bertpipe/__init__.py")
    write(tmp_path, "bertpipe/a.py", "import torch\nfrom bertpipe.sub.b import g\n")
    write(tmp_path, "bertpipe/sub/__init__.py")
    write(tmp_path, "bertpipe/sub/b.py", "import bertpipe.a\n")  # a cycle
    write(tmp_path, "bertpipe/lazy.py")
    write(tmp_path, "bertpipe/unused.py")
    return tmp_path


def test_closure_follows_project_imports_transitively(tree):
    assert import_closure("stages/run.py", tree) == [
        "bertpipe/__init__.py", "bertpipe/a.py", "bertpipe/lazy.py", "bertpipe/sub/__init__.py",
        "bertpipe/sub/b.py", "stages/__init__.py", "stages/run.py"]


def test_code_digest_changes_with_any_file_of_the_closure_only(tree):
    before = code_digest("stages/run.py", tree)
    write(tree, "bertpipe/unused.py", "x = 1\n")
    assert code_digest("stages/run.py", tree) == before
    write(tree, "bertpipe/sub/b.py", "import bertpipe.a\nY = 2\n")
    assert code_digest("stages/run.py", tree) != before
