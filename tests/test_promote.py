"""The promotion gate: it judges the model of the run in the run file, refuses foreign runs and
overlapping rows, compares classes by name, needs a paired test and both baselines beaten,
and respects what was rejected or rolled back by hand.

The models put ~all probability on one class whatever the text. The test split has 12
positive and 4 negative reviews in words the train rows never use, and the train rows are
mostly negative, so both baselines (majority class, TF-IDF) predict negative: accuracy 0.25.
Always positive scores 0.75; always negative 0.25."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.stats import binomtest

from bertpipe import promote
from bertpipe.artifacts import write_parquet
from bertpipe.config import PromoteParams
from bertpipe.contracts import ASSIGNMENT_FILE
from bertpipe.manifest import MANIFEST_TAG
from bertpipe.params import ParamsError
from bertpipe.promote import Scored, decide, mcnemar
from bertpipe.registry import CHALLENGER, CHAMPION, set_champion, version_by_alias
from tests.conftest import sh, write_params
from tests.mlops_helpers import (
    constant_checkpoint,
    constant_checkpoints,
    log_and_register,
    model_name,
    stored_model,
    unseen_reviews,
    write_gate_split,
)

NEGATIVE, POSITIVE = 0, 1
TEST_LABELS = [1] * 12 + [0] * 4
EXPERIMENT = "gate-tests"


class Gate:
    """One registered model name, its split folder, and the gate run against them."""

    def __init__(self, name: str, folder: Path, models: dict[int, Path]):
        self.name, self.folder, self.models = name, folder, models
        self.split = write_gate_split(folder / "split", TEST_LABELS)
        self.run_file = folder / "run.json"

    def train(self, checkpoint: Path, split: Path | None = None, experiment: str = EXPERIMENT) -> str:
        """What train does: log and register the model with its lineage, write the run file."""
        run_id = log_and_register(checkpoint, self.name, experiment, split=split or self.split)
        self.run_file.write_text(json.dumps({"run_id": run_id}))
        return run_id

    def run(self, *extra: str, check_commit: bool = False, **promote_params) -> int:
        """The gate on the run file; these runs are logged outside a git checkout, so the commit
        check is waived (--allow-foreign-commit) unless check_commit."""
        params = write_params(self.folder / "params.yaml",
                              train={"registered_model": self.name, "mlflow_experiment": EXPERIMENT},
                              promote={"metric": "accuracy", "min_improvement": 0.0, "confidence": 0.95,
                                       **promote_params})
        waive = [] if check_commit else ["--allow-foreign-commit"]
        return promote.main(["--params", str(params), "--run-file", str(self.run_file),
                             "--split", str(self.split), *waive, *extra])

    def alias(self, alias: str) -> int | None:
        version = version_by_alias(MlflowClient(), self.name, alias)
        return int(version.version) if version else None

    def tag(self, version: int) -> str | None:
        return MlflowClient().get_model_version(self.name, str(version)).tags.get("promotion")


@pytest.fixture
def gate(store, tmp_path, tmp_path_factory, tiny_bert, request) -> Gate:
    return Gate(model_name(request), tmp_path, constant_checkpoints(tmp_path_factory, tiny_bert))


def test_the_first_model_must_clear_the_baselines(gate, capsys):
    gate.train(gate.models[NEGATIVE])  # v1: 0.25, no better than predicting the majority class
    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) is None
    out = capsys.readouterr().out
    assert "**not promoted**" in out and "does not beat the majority class (negative) baseline (0.2500)" in out
    assert gate.tag(1) == "rejected" and gate.alias(CHALLENGER) == 1

    gate.train(gate.models[POSITIVE])  # v2: 0.75
    assert gate.run() == promote.PROMOTED and gate.alias(CHAMPION) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"## Promotion gate: {gate.name}\n") and "no champion yet, and it beats both baselines" in out
    assert "| majority class (negative) | 0.2500 |" in out and "| TF-IDF + logistic regression | 0.2500 |" in out
    assert "| accuracy (gate) | - | 0.7500 | - |" in out and "### dvc metrics diff" in out
    assert "16 rows (digest " in out and ", the test split the challenger was trained beside)" in out
    assert gate.tag(2) == "promoted"

    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) == 2  # the same run again
    assert "already the champion" in capsys.readouterr().out


def test_a_significantly_better_challenger_takes_over(gate, capsys):
    gate.train(gate.models[NEGATIVE])
    set_champion(MlflowClient(), gate.name, "1")  # a champion set by hand: the gate never judged it
    gate.train(gate.models[POSITIVE])
    assert gate.run() == promote.PROMOTED and gate.alias(CHAMPION) == 2
    out = capsys.readouterr().out
    p = binomtest(12, 16, 0.5, alternative="greater").pvalue  # 0.0384
    assert f"challenger is right on 12, the champion on 4; p = {p:.4g}, below 0.05" in out
    assert "| accuracy (gate) | 0.2500 | 0.7500 | +0.5000 |" in out
    assert f"| {CHAMPION} v1 (run " in out and f"| {CHALLENGER} v2 (run " in out
    # The paired interval of the gain: 16 rows, each +1 or -1 for the challenger, 12 of them +1.
    gain = re.search(r"\*\*Accuracy gain over the champion\*\*: \+0\.5000, paired 95% bootstrap interval "
                     r"([+-][\d.]+) to ([+-][\d.]+) \(1000 resamples of the 16 rows\)", out)
    assert gain and -0.1 < float(gain.group(1)) < 0.5 < float(gain.group(2)) <= 1.0


def test_the_gate_refuses_a_version_whose_files_or_tag_changed_after_registration(gate, capsys):
    gate.train(gate.models[POSITIVE])
    weights = stored_model(gate.name, "1") / "artifacts" / gate.models[POSITIVE].name / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit of one weight
    assert gate.run() == promote.RUN_REFUSED and gate.alias(CHAMPION) is None and gate.tag(1) is None
    out = capsys.readouterr().out
    assert f"**refused**: {CHALLENGER} {gate.name} v1 (" in out
    assert f"is not the model that was registered: artifacts/{gate.models[POSITIVE].name}/model.safetensors has " \
           "sha256 " in out
    weights.write_bytes(original)
    client = MlflowClient()
    tag = client.get_model_version(gate.name, "1").tags[MANIFEST_TAG]
    forged = tag.replace('"mlflow_model.py":"', '"mlflow_model.py":"0')  # another digest for one file
    client.set_model_version_tag(gate.name, "1", MANIFEST_TAG, forged)
    assert gate.run() == promote.RUN_REFUSED
    assert f"the manifest.json inside the artifact differs from its '{MANIFEST_TAG}' tag: mlflow_model.py has " \
           "sha256 " in capsys.readouterr().out
    client.set_model_version_tag(gate.name, "1", MANIFEST_TAG, tag)  # as registered: judged
    assert gate.run() == promote.PROMOTED and gate.alias(CHAMPION) == 1


def test_equal_models_are_not_promoted(gate, capsys):
    gate.train(gate.models[POSITIVE])
    assert gate.run() == promote.PROMOTED
    gate.train(gate.models[POSITIVE])  # v2: the same predictions; the old margin rule let ties through noise
    assert gate.run(min_improvement=0.0) == promote.KEPT and gate.alias(CHAMPION) == 1
    out = capsys.readouterr().out
    assert "on the 0 rows where the models disagree" in out and "not significantly better" in out
    assert gate.tag(2) == "rejected"


def test_confidence_comes_from_params_and_a_dry_run_changes_nothing(gate, capsys):
    gate.train(gate.models[NEGATIVE])
    set_champion(MlflowClient(), gate.name, "1")
    gate.train(gate.models[POSITIVE])
    assert gate.run("--dry-run", confidence=0.99) == promote.KEPT  # p = 0.0384 is not below 0.01
    out = capsys.readouterr().out
    assert "(dry run: no alias or tag changed)" in out and "**would not be promoted**" in out
    assert gate.run("--dry-run") == promote.PROMOTED and "**would be promoted**" in capsys.readouterr().out
    assert gate.alias(CHAMPION) == 1 and gate.alias(CHALLENGER) is None and gate.tag(2) is None
    assert gate.run() == promote.PROMOTED and gate.alias(CHAMPION) == 2


def test_a_hand_rollback_is_respected(gate, capsys):
    gate.train(gate.models[NEGATIVE])
    set_champion(MlflowClient(), gate.name, "1")
    gate.train(gate.models[POSITIVE])
    assert gate.run() == promote.PROMOTED and gate.alias(CHAMPION) == 2
    set_champion(MlflowClient(), gate.name, "1")  # a person rolls v2 back
    capsys.readouterr()
    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) == 1  # the same run would win again
    assert "rolled back by hand before, and such a version is never promoted again" in capsys.readouterr().out
    assert gate.tag(2) == "rolled_back"
    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) == 1  # and stays so


def test_a_rejected_version_is_never_promoted_again(gate, capsys):
    gate.train(gate.models[NEGATIVE])
    set_champion(MlflowClient(), gate.name, "1")
    gate.train(gate.models[POSITIVE])
    assert gate.run(confidence=0.99) == promote.KEPT and gate.tag(2) == "rejected"
    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) == 1  # it would pass at 0.95 now
    assert "rejected by the gate before" in capsys.readouterr().out


def test_foreign_or_missing_runs_are_refused(gate, capsys, tmp_path):
    assert gate.run() == promote.RUN_REFUSED
    assert "run.json: missing; train writes it" in capsys.readouterr().out

    gate.run_file.write_text(json.dumps({"run_id": "0" * 32}))
    assert gate.run() == promote.RUN_REFUSED
    assert f"run {'0' * 32} (from {gate.run_file}) is not in the tracking store" in capsys.readouterr().out

    run_id = gate.train(gate.models[POSITIVE], experiment="someone-elses-sweep")
    assert gate.run() == promote.RUN_REFUSED
    assert f"run {run_id} (from {gate.run_file}) belongs to experiment 'someone-elses-sweep', not " \
           f"train.mlflow_experiment='{EXPERIMENT}'" in capsys.readouterr().out

    other = Gate(gate.name + "-other", tmp_path / "other", gate.models)
    run_id = other.train(gate.models[POSITIVE])
    gate.run_file.write_text(other.run_file.read_text())
    assert gate.run() == promote.RUN_REFUSED
    assert f"registered no version of '{gate.name}' (train.registered_model); it registered " \
           f"['{other.name}']" in capsys.readouterr().out
    assert gate.alias(CHAMPION) is None and other.alias(CHAMPION) is None


def test_rows_either_model_learned_from_are_refused(gate, capsys, tmp_path):
    test_rows = unseen_reviews(TEST_LABELS)
    leaky = write_gate_split(tmp_path / "leaky", TEST_LABELS)  # its train split holds 3 of the rows to score
    train = pd.concat([pd.read_parquet(leaky / "train.parquet"), test_rows.iloc[:3]], ignore_index=True)
    write_parquet(train, leaky / "train.parquet")
    gate.train(gate.models[POSITIVE], split=leaky)
    assert gate.run() == promote.OVERLAP and gate.alias(CHAMPION) is None and gate.alias(CHALLENGER) is None
    assert "3 of the 16 rows to score are in the train split and 0 in the validation split of challenger " \
           f"{gate.name} v1" in capsys.readouterr().out

    # A champion that validated on them: texts that differ only in case and spacing still match.
    leaky_val = write_gate_split(tmp_path / "leaky-val", TEST_LABELS)
    val = test_rows.iloc[:2].assign(text=lambda d: ("  " + d["text"].str.upper()))
    write_parquet(val, leaky_val / "val.parquet")
    gate.train(gate.models[NEGATIVE], split=leaky_val)
    set_champion(MlflowClient(), gate.name, "2")
    gate.train(gate.models[POSITIVE])
    assert gate.run() == promote.OVERLAP and gate.alias(CHAMPION) == 2
    assert f"0 of the 16 rows to score are in the train split and 2 in the validation split of champion " \
           f"{gate.name} v2" \
           in capsys.readouterr().out


def test_a_run_from_uncommitted_changes_or_another_commit_is_refused(gate, capsys, tmp_path, monkeypatch):
    run_id = gate.train(gate.models[POSITIVE])
    client = MlflowClient()
    assert gate.run(check_commit=True) == promote.FOREIGN_COMMIT  # no git tags: not trained in a checkout
    assert f"run {run_id} recorded no git commit or working tree state" in capsys.readouterr().out
    checkout = tmp_path / "checkout"  # where the gate runs: a git checkout with one commit
    checkout.mkdir()
    sh(checkout, "git", "init", "-q")
    sh(checkout, "git", "commit", "-q", "--allow-empty", "-m", "one")
    monkeypatch.chdir(checkout)
    head = promote.head_commit()
    assert len(head) == 40
    for commit, dirty, why in [(head, "true", f"was trained at commit {head[:12]} with uncommitted changes"),
                               ("f" * 40, "false", f"was trained at commit {'f' * 12}, not at the commit checked "
                                                   f"out here ({head[:12]})")]:
        client.set_tag(run_id, "git_commit", commit)
        client.set_tag(run_id, "git_dirty", dirty)
        assert gate.run(check_commit=True) == promote.FOREIGN_COMMIT
        assert why in capsys.readouterr().out and gate.alias(CHAMPION) is None
    assert gate.run("--allow-foreign-commit", check_commit=True) == promote.PROMOTED
    assert f"trained at commit `{'f' * 12}` (clean; checked out here: {head[:12]}) — judged anyway " \
           "(--allow-foreign-commit)" in capsys.readouterr().out
    client.set_tag(run_id, "git_commit", head)  # trained from the commit checked out here, clean
    gate.train(gate.models[POSITIVE])
    client.set_tag(json.loads(gate.run_file.read_text())["run_id"], "git_commit", head)
    client.set_tag(json.loads(gate.run_file.read_text())["run_id"], "git_dirty", "false")
    assert gate.run(check_commit=True) == promote.KEPT  # judged: the same predictions as the champion
    assert f"trained at commit `{head[:12]}` (clean; the commit checked out here)" in capsys.readouterr().out

    # A DVC experiment trains with edited params on its baseline commit; applied and committed, the
    # baseline is an ancestor of HEAD and the run is judged. An experiment on a foreign commit is not.
    exp_run = json.loads(gate.run_file.read_text())["run_id"]
    sh(checkout, "git", "commit", "-q", "--allow-empty", "-m", "dvc exp apply, committed")
    for key, value in {"git_commit": head, "git_dirty": "true", "dvc_exp_name": "lucky-lr"}.items():
        client.set_tag(exp_run, key, value)
    assert gate.run(check_commit=True) == promote.KEPT
    assert f"trained by DVC experiment `lucky-lr` on commit `{head[:12]}`, an ancestor of the commit checked out " \
           "here" in capsys.readouterr().out
    client.set_tag(exp_run, "git_commit", "e" * 40)
    assert gate.run(check_commit=True) == promote.FOREIGN_COMMIT
    capsys.readouterr()


def test_a_metric_that_is_not_a_number_is_refused(gate, capsys, tmp_path):
    """roc_auc of a test split that holds one class is NaN, and NaN <= x is false: it must not promote."""
    gate.split = write_gate_split(tmp_path / "one-class", [POSITIVE] * 16)
    gate.train(gate.models[POSITIVE])
    assert gate.run(metric="roc_auc") == promote.INCOMPARABLE and gate.alias(CHAMPION) is None
    assert "promote.metric=roc_auc is nan for challenger v1" in capsys.readouterr().out


def test_a_changed_split_seed_is_named_not_a_generic_overlap(gate, capsys, tmp_path):
    old = write_gate_split(tmp_path / "seed-42", TEST_LABELS)  # the champion's split: 3 of today's test rows in train
    train = pd.concat([pd.read_parquet(old / "train.parquet"), unseen_reviews(TEST_LABELS).iloc[:3]],
                      ignore_index=True)
    write_parquet(train, old / "train.parquet")
    (old / ASSIGNMENT_FILE).write_text(json.dumps({"seed": 42}))
    (gate.split / ASSIGNMENT_FILE).write_text(json.dumps({"seed": 43}))
    gate.train(gate.models[NEGATIVE], split=old)
    set_champion(MlflowClient(), gate.name, "1")
    gate.train(gate.models[POSITIVE])
    assert gate.run() == promote.OVERLAP and gate.alias(CHAMPION) == 1
    out = capsys.readouterr().out
    assert f"split.seed changed from 42 (champion {gate.name} v1" in out and "to 43: a deliberate reshuffle" in out
    assert "Set split.seed back to 42" in out


def test_a_reversed_class_order_is_compared_by_name(gate, capsys, tmp_path, tiny_bert):
    # Class 0 is "positive" in this model: by index it would score 0.25, by name 0.75.
    reversed_positive = constant_checkpoint(tmp_path / "reversed", tiny_bert, 0, ["positive", "negative"])
    gate.train(reversed_positive)
    assert gate.run() == promote.PROMOTED
    assert "| accuracy (gate) | - | 0.7500 | - |" in capsys.readouterr().out
    gate.train(gate.models[POSITIVE])  # the same predictions in the usual order: a tie, not a landslide
    assert gate.run() == promote.KEPT and gate.alias(CHAMPION) == 1
    out = capsys.readouterr().out
    assert "| accuracy (gate) | 0.7500 | 0.7500 | +0.0000 |" in out and "on the 0 rows where the models disagree" in out


def test_other_class_names_or_no_lineage_cannot_be_compared(gate, capsys, tmp_path, tiny_bert):
    gate.train(constant_checkpoint(tmp_path / "stars", tiny_bert, 1, ["bad", "good"]))
    assert gate.run() == promote.INCOMPARABLE
    assert "predicts the classes ['bad', 'good'], but the rows to score are labelled ['negative', " \
           "'positive']" in capsys.readouterr().out

    run_id = log_and_register(gate.models[POSITIVE], gate.name, EXPERIMENT)  # no lineage, as before this change
    gate.run_file.write_text(json.dumps({"run_id": run_id}))
    assert gate.run() == promote.INCOMPARABLE
    assert f"challenger {gate.name} v2 (run {run_id}) has no lineage" in capsys.readouterr().out


def test_bad_promote_params_fail_at_start(gate):
    with pytest.raises(ParamsError, match=r"promote.confidence=1.0 in .*params.yaml: must be >= 0.5 and < 1"):
        gate.run(confidence=1.0)
    with pytest.raises(ParamsError, match=r"promote.min_improvement=-0.1 in .*params.yaml: must be >= 0"):
        gate.run(min_improvement=-0.1)


# --- the decision rules, without a registry ---------------------------------------------------------

PARAMS = PromoteParams(metric="accuracy", min_improvement=0.01, confidence=0.95)


def model(correct: list[bool], label: str = "m") -> Scored:
    right = np.array(correct)
    return Scored(label, {"accuracy": float(right.mean())}, right)


def test_mcnemar_counts_only_the_rows_where_the_models_disagree():
    challenger = np.array([True] * 10 + [True, False] * 5)
    champion = np.array([True] * 10 + [False] * 10)
    assert mcnemar(challenger, champion) == (5, 0, pytest.approx(0.5**5))
    assert mcnemar(champion, champion) == (0, 0, 1.0)


@pytest.mark.parametrize("history, why", [("rejected", "rejected by the gate before"),
                                          ("rolled_back", "rolled back by hand before")])
def test_history_comes_first(history, why):
    decision = decide(PARAMS, model([True] * 20), None, [], history)
    assert not decision.promote and why in decision.reason


def test_significant_but_within_the_margin_is_not_promoted():
    champion = model([False] * 6 + [True] * 994)
    challenger = model([True] * 1000)  # 6 wins, 0 losses: p = 0.0156, but +0.006 < 0.01
    decision = decide(PARAMS, challenger, champion, [model([True] * 500 + [False] * 500)], None)
    assert not decision.promote and "does not beat the margin 0.01" in decision.reason
    assert "p = 0.01562, below 0.05" in decision.test


# --- one set of numbers ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_gate_scores_a_model_as_evaluate_did(tmp_path_factory, tiny_bert, tmp_path, monkeypatch):
    """The numbers the gate reports for the project's model are evaluate's (metrics/details/test.json), exactly."""
    import torch

    from bertpipe.artifacts import read_json
    from bertpipe.config import EvaluateParams, TrainParams
    from bertpipe.modeling import autocast_dtype
    from bertpipe.params import load_section
    from tests.mlops_helpers import reproduced_project

    project = reproduced_project(tmp_path_factory, tiny_bert)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    train = load_section(TrainParams, "train", project / "params.yaml")
    e = load_section(EvaluateParams, "evaluate", project / "params.yaml")
    version = promote.challenger_of_run(MlflowClient(), project / "models/run.json", train.registered_model,
                                        train.mlflow_experiment)
    rows = promote.load_rows_to_score(project / "data/split")
    gate = promote.score_model(train.registered_model, version, CHALLENGER, rows, e, tmp_path)
    evaluate = read_json(project / "metrics/details/test.json")
    assert {k: gate.metrics[k] for k in promote.SHOWN_METRICS} == {k: evaluate[k] for k in promote.SHOWN_METRICS}

    if autocast_dtype(torch.device("cpu"), e.precision) is not None:  # this machine autocasts to bf16
        fp32 = promote.score_model(train.registered_model, version, CHALLENGER, rows,
                                   e.model_copy(update={"precision": "fp32"}), tmp_path / "fp32")
        assert fp32.metrics["log_loss"] != evaluate["log_loss"]  # the old gate's fp32 gave other numbers
