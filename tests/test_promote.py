"""The promotion gate: challenger against champion on the same test split, the margin from
params, the markdown summary on stdout, and the exit code.

The models put ~all probability on one class whatever the text, so on a test split of three
positive reviews and one negative their accuracy is known: 0.75 (always positive) or 0.25."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from bertpipe import promote
from bertpipe.params import ParamsError
from bertpipe.registry import CHALLENGER, CHAMPION, version_by_alias
from tests.conftest import write_params
from tests.mlops_helpers import (
    constant_checkpoints,
    log_and_register,
    model_name,
    write_test_split,
)

NEGATIVE, POSITIVE = 0, 1


@pytest.fixture
def gate(store, tmp_path, tmp_path_factory, tiny_bert, request):
    """The two models, and a function that runs the gate for this test's registered model."""
    write_test_split(tmp_path / "split", [1, 1, 1, 0])
    models = constant_checkpoints(tmp_path_factory, tiny_bert)
    name = model_name(request)

    def run(min_improvement: float = 0.1) -> int:
        params = write_params(tmp_path / "params.yaml", train={"registered_model": name},
                              promote={"min_improvement": min_improvement, "metric": "accuracy"})
        return promote.main(["--params", str(params), "--split", str(tmp_path / "split")])

    return models, name, run


def champion(name: str) -> int:
    return int(version_by_alias(MlflowClient(), name, CHAMPION).version)


def test_first_model_is_champion_and_only_a_better_challenger_takes_over(gate, capsys):
    models, name, run = gate
    log_and_register(models[NEGATIVE], name)  # v1, accuracy 0.25
    assert run() == promote.PROMOTED and champion(name) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"## Promotion gate: {name}") and "**promoted**" in out and "no champion yet" in out
    assert "| accuracy (gate) | - | 0.2500 | - |" in out
    assert "### dvc metrics diff" in out

    assert run() == promote.KEPT and champion(name) == 1  # nothing new: v1 is already champion
    assert "already the champion" in capsys.readouterr().out

    log_and_register(models[POSITIVE], name)  # v2, accuracy 0.75
    assert run() == promote.PROMOTED and champion(name) == 2
    out = capsys.readouterr().out
    assert "| accuracy (gate) | 0.2500 | 0.7500 | +0.5000 |" in out
    assert f"{CHAMPION} v1 (run " in out and f"{CHALLENGER} v2 (run " in out

    log_and_register(models[NEGATIVE], name)  # v3, worse than the champion
    assert run() == promote.KEPT and champion(name) == 2
    out = capsys.readouterr().out
    assert "**not promoted**" in out and "| accuracy (gate) | 0.7500 | 0.2500 | -0.5000 |" in out
    assert MlflowClient().get_model_version(name, "3").tags["promotion"] == "rejected"


def test_the_margin_comes_from_params(gate, capsys):
    models, name, run = gate
    log_and_register(models[NEGATIVE], name)
    assert run(min_improvement=0.6) == promote.PROMOTED  # the first model needs no margin
    log_and_register(models[POSITIVE], name)
    assert run(min_improvement=0.6) == promote.KEPT and champion(name) == 1  # +0.5 is not more than 0.6
    assert "does not beat the margin 0.6" in capsys.readouterr().out
    assert run(min_improvement=0.4) == promote.PROMOTED and champion(name) == 2


def test_without_a_challenger_it_says_how_to_get_one(gate):
    _, name, run = gate
    with pytest.raises(LookupError, match=f"no version of registered model '{name}' has the alias @challenger; train"):
        run()


def test_bad_promote_params_fail_at_start(gate):
    _, _, run = gate
    with pytest.raises(ParamsError, match=r"promote.min_improvement=-0.1 in .*params.yaml: must be >= 0"):
        run(min_improvement=-0.1)
