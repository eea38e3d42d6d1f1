"""Promotion gate: judge the model this run trained against the `champion` and two baselines on
the same test rows, and move `champion` to it only when it wins by a paired test.

The challenger is the model version registered from the MLflow run that train recorded in
<run-file> (models/run.json), never whatever an alias points at now. The gate refuses a run
that is missing, of another experiment, or registered no version of train.registered_model; a
version whose files differ from the digest manifest registered with it (bertpipe.manifest);
a run trained from uncommitted changes or from another commit than the one checked out here
(unless --allow-foreign-commit; a DVC experiment's run is judged when its baseline commit is an
ancestor of HEAD, as after `dvc exp apply` and a commit); a model that trained or validated on a scored row (after a
change of split.seed, it says so); classes that do not match by name; a promote.metric that is
not a number on these rows (roc_auc of a test split that lacks a class). It
scores as evaluate does (same inference path, evaluate.batch_size and evaluate.precision),
compares predictions by class name, and promotes when:
- the challenger beats the majority class and TF-IDF + logistic regression (both fitted on
  <split>/train.parquet) on promote.metric, on the same rows (the first model too), and
- there is no champion, or McNemar's exact test says the challenger is more often right than
  the champion where they disagree (p below 1 - promote.confidence) and its promote.metric is
  higher by more than promote.min_improvement, and
- it was never rejected, nor rolled back by hand (registry tags: bertpipe.registry).

In:  <run-file>; <split>/{train,test}.parquet and meta.json; params `promote`, `evaluate` and
     `train` (registered_model, mlflow_experiment); the MLflow registry (MLFLOW_TRACKING_URI).
Out: a markdown summary on stdout (the models and baselines side by side, the test, the
     decision and why, `dvc metrics diff`); unless --dry-run, the aliases and tags it decided.
Exit: 0 promoted (with --dry-run: would be); 3 not promoted; 4 run refused (or a version's files
      differ from its manifest); 5 overlapping
      rows refused; 6 models not comparable (class names, lineage, a metric that is not a
      number); 7 the run's commit refused (uncommitted changes, another commit); anything else
      an error.

Run: bertpipe promote --run-file models/run.json --split data/split [--dry-run]
     (`python -m bertpipe.promote` takes the same arguments.)
"""

from __future__ import annotations

import argparse
import logging
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from scipy.stats import binomtest

from bertpipe import manifest, registry
from bertpipe.artifacts import read_json, read_parquet
from bertpipe.baseline import tfidf_logreg_probs
from bertpipe.config import EvaluateParams, PromoteParams, TrainParams
from bertpipe.contracts import DatasetMeta
from bertpipe.errors import BertpipeError
from bertpipe.inference import Classifier
from bertpipe.lineage import SPLIT_SEED_TAG, TAG, LineageError, load_rows, row_hashes, set_digest, split_seed
from bertpipe.logs import run_cli
from bertpipe.metrics import BOOTSTRAP_ROUNDS, CI_LEVEL, confidence_intervals, selection_value, summary_metrics
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.redact import mask_url
from bertpipe.registry import CHALLENGER, CHAMPION
from bertpipe.tracking import configure

log = logging.getLogger("promote")
PROMOTED, KEPT, RUN_REFUSED, OVERLAP, INCOMPARABLE, FOREIGN_COMMIT = 0, 3, 4, 5, 6, 7  # exit codes
SHOWN_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "log_loss")


class RunRefused(BertpipeError):
    """The run in the run file is missing or foreign: the gate does not know what to judge."""


class Incomparable(BertpipeError):
    """The models cannot be compared on these rows: other class names, or no lineage."""


class OverlapRefused(BertpipeError):
    """A model trained or validated on rows the gate would score."""


class CommitRefused(BertpipeError):
    """The run was trained from uncommitted changes, or from another commit than this checkout's."""


class MetricUndefined(Incomparable):
    """promote.metric is not a number for a model or baseline on the rows to score."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--run-file", required=True, help="train's run file (models/run.json): the challenger's run")
    p.add_argument("--split", required=True, help="split output folder; its test.parquet is scored")
    p.add_argument("--dry-run", action="store_true",
                   help="judge and print the summary, but move no alias and set no tag (pull requests)")
    p.add_argument("--allow-foreign-commit", action="store_true",
                   help="judge a run trained from uncommitted changes or another commit than HEAD "
                        "(the summary says so)")
    p.add_argument("--diff-rev", default=None,
                   help="git revision to diff the workspace's metrics against (dvc metrics diff; default HEAD)")
    return p.parse_args(argv)


# --- which model to judge ----------------------------------------------------------------------

def challenger_of_run(client: MlflowClient, run_file: Path, name: str, experiment: str) -> ModelVersion:
    """The version of `name` registered from the run in run_file; refused when foreign."""
    if not run_file.is_file():
        raise RunRefused(f"{run_file}: missing; train writes it with the MLflow run of the model it "
                         "trained: run the pipeline first (dvc repro, or dvc pull)")
    run_id = read_json(run_file).get("run_id")
    if not run_id:
        raise RunRefused(f"{run_file}: names no run_id; it is not train's run file: rerun train (dvc repro train)")
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RunRefused(f"run {run_id} (from {run_file}) is not in the tracking store "
                         f"{mask_url(mlflow.get_tracking_uri())}: it was trained against another store; "
                         "set MLFLOW_TRACKING_URI to the store train used, or retrain (dvc repro train)") from None
    run_experiment = client.get_experiment(run.info.experiment_id).name
    if run_experiment != experiment:
        raise RunRefused(f"run {run_id} (from {run_file}) belongs to experiment '{run_experiment}', not "
                         f"train.mlflow_experiment='{experiment}': it is not this pipeline's model")
    registered = client.search_model_versions(f"run_id = '{run_id}'")
    mine = [v for v in registered if v.name == name]
    if not mine:
        others = sorted({v.name for v in registered})
        raise RunRefused(f"run {run_id} (from {run_file}) registered no version of '{name}' "
                         f"(train.registered_model){f'; it registered {others}' if others else ''}: "
                         "retrain with this registered model name (dvc repro train)")
    return max(mine, key=lambda v: int(v.version))


@dataclass(frozen=True)
class Provenance:
    commit: str  # the run's git commit ("unknown" when it recorded none)
    dirty: str  # "true", "false" or "unknown"
    head: str  # this checkout's commit
    allowed: bool  # judged although foreign (--allow-foreign-commit)
    experiment: str = ""  # the DVC experiment that trained it, if one did

    def words(self) -> str:
        if self.experiment:
            return (f"trained by DVC experiment `{self.experiment}` on commit `{self.commit[:12]}`, an ancestor of "
                    f"the commit checked out here ({self.head[:12]}): the experiment's own changes are kept in git "
                    "by DVC (dvc exp apply)")
        state = {"false": "clean", "true": "with uncommitted changes"}.get(self.dirty, "working tree state unknown")
        where = "the commit checked out here" if self.commit == self.head else f"checked out here: {self.head[:12]}"
        text = f"trained at commit `{self.commit[:12]}` ({state}; {where})"
        return text + (" — judged anyway (--allow-foreign-commit)" if self.allowed else "")


def is_ancestor(commit: str, of: str = "HEAD") -> bool:
    done = subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], capture_output=True, check=False)
    return done.returncode == 0


def head_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def check_commit(client: MlflowClient, version: ModelVersion, allow: bool) -> Provenance:
    """Refuse a run trained from uncommitted changes, or from a commit other than HEAD here: a run
    of a feature branch or a dirty tree, logged to the shared server, is not the default branch's."""
    tags = client.get_run(version.run_id).data.tags
    found = Provenance(tags.get("git_commit", "unknown"), tags.get("git_dirty", "unknown"), head_commit(), allow)
    experiment = tags.get("dvc_exp_name", "")
    if experiment and found.commit != "unknown" and found.head != "unknown" and is_ancestor(found.commit):
        # `dvc exp run -S` trains with edited params on its baseline commit; DVC keeps the
        # experiment's changes in git, and `dvc exp apply` + commit lands them on top of it.
        return Provenance(found.commit, found.dirty, found.head, allow, experiment)
    problem = None
    if found.commit == "unknown" or found.dirty == "unknown":
        problem = "recorded no git commit or working tree state (it was not trained in a git checkout)"
    elif found.dirty == "true":
        problem = f"was trained at commit {found.commit[:12]} with uncommitted changes"
    elif found.commit != found.head:
        problem = (f"was trained at commit {found.commit[:12]}, not at the commit checked out here "
                   f"({found.head[:12] if found.head != 'unknown' else 'no git checkout'})")
    if problem and not allow:
        raise CommitRefused(f"run {version.run_id} {problem}: the gate promotes only a model trained from the "
                            "committed code it runs beside. Commit and retrain (dvc repro), check out that commit, "
                            "or pass --allow-foreign-commit to judge it anyway")
    if problem:
        log.warning("judging run %s although it %s (--allow-foreign-commit)", version.run_id, problem)
    return found


# --- the rows, and what each model saw -----------------------------------------------------------

@dataclass(frozen=True)
class Rows:
    texts: list[str]
    labels: np.ndarray  # ids into names
    names: list[str]  # the split's class names, in id order
    hashes: np.ndarray
    seed: int | None = None  # the split.seed the split folder was assigned by


def load_rows_to_score(split: Path) -> Rows:
    path = split / "test.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no test split; run the pipeline first (dvc pull, or dvc repro)")
    test = read_parquet(path, columns=["text", "label"])
    texts = test["text"].tolist()
    return Rows(texts, test["label"].to_numpy(), DatasetMeta.read(split).labels, row_hashes(texts),
                split_seed(split))


def check_overlap(name: str, version: ModelVersion, role: str, rows: Rows, tmp: Path) -> None:
    """Refuse when the model's run trained or validated on any of the rows to score."""
    what = f"{role} {name} v{version.version} (run {version.run_id})"
    seen = load_rows(version.run_id, what, tmp / f"lineage-{version.version}")
    counts = {split: int(np.isin(rows.hashes, seen.loc[seen["split"] == split, "hash"].to_numpy(np.uint64)).sum())
              for split in ("train", "val")}
    if not any(counts.values()):
        return
    before = version.tags.get(SPLIT_SEED_TAG)
    if before is not None and rows.seed is not None and int(before) != rows.seed:
        raise OverlapRefused(
            f"split.seed changed from {before} ({what} was split with it) to {rows.seed}: a deliberate reshuffle, "
            f"so {counts['train']} of the {len(rows.texts)} test rows are in its train split and {counts['val']} in "
            f"its validation split, and the two models cannot be judged on one test split. Set split.seed back to "
            f"{before} to judge against it, or, meaning to start over with the new split, move @{CHAMPION} by hand "
            "(MLflow UI, or bertpipe.registry)")
    raise OverlapRefused(f"{counts['train']} of the {len(rows.texts)} rows to score are in the train split and "
                         f"{counts['val']} in the validation split of {what}; a model cannot be judged on "
                         "rows it learned from: score on a test split neither model trained or validated on")


# --- scoring ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scored:
    label: str  # as shown in the summary
    metrics: dict[str, float]
    correct: np.ndarray  # (N,) bool
    probs: np.ndarray | None = None  # (N, C) in the split's class order


def by_name(probs: np.ndarray, model_names: list[str], names: list[str], what: str) -> np.ndarray:
    """probs (N, C) in the model's class order, reordered into the split's, matched by class name."""
    if sorted(model_names) != sorted(names):
        raise Incomparable(f"{what} predicts the classes {model_names}, but the rows to score are labelled "
                           f"{names}; the gate compares by class name and cannot match these")
    return probs[:, [model_names.index(n) for n in names]]


def scored(label: str, probs: np.ndarray, rows: Rows) -> Scored:
    return Scored(label, summary_metrics(rows.labels, probs), probs.argmax(1) == rows.labels, probs)


def score_model(name: str, version: ModelVersion, role: str, rows: Rows, e: EvaluateParams, tmp: Path) -> Scored:
    """Score a registered version as evaluate scores models/best: same batches, same precision."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = registry.resolve_checkpoint(f"models:/{name}/{version.version}", tmp / f"model-{version.version}")
    what = f"{role} {name} v{version.version}"
    if not manifest.check_registered(manifest.model_root(folder), version.tags.get(manifest.MANIFEST_TAG), what):
        log.warning("%s was registered before digest manifests: its files are not checked", what)
    classifier = Classifier.load(folder, device, e.precision)
    classifier.workers = 1  # as evaluate scores: one thread of batches, so the sums add up in the same order
    log.info("scoring %s %s v%s on %d rows", role, name, version.version, len(rows.texts))
    probs = classifier.predict_proba(rows.texts, e.batch_size)
    probs = by_name(probs, classifier.label_names, rows.names, f"{role} {name} v{version.version}")
    return scored(f"{role} v{version.version} (run {(version.run_id or '?')[:8]})", probs, rows)


def baselines(split: Path, rows: Rows) -> list[Scored]:
    """The majority class of the train rows, and TF-IDF + logistic regression fitted on them."""
    train = read_parquet(split / "train.parquet", columns=["text", "label"])
    prior = np.bincount(train["label"].to_numpy(), minlength=len(rows.names)) / len(train)
    majority = rows.names[int(prior.argmax())]
    tfidf = tfidf_logreg_probs(train["text"].tolist(), train["label"].to_numpy(), rows.texts)
    full = np.zeros((len(rows.texts), len(rows.names)))
    full[:, np.unique(train["label"].to_numpy())] = tfidf  # columns of classes the train rows lack stay 0
    return [scored(f"majority class ({majority})", np.tile(prior, (len(rows.texts), 1)), rows),
            scored("TF-IDF + logistic regression", full, rows)]


# --- the decision ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    test: str = ""  # the paired test, in words, when it ran


def mcnemar(challenger: np.ndarray, champion: np.ndarray) -> tuple[int, int, float]:
    """(rows only the challenger got right, rows only the champion got right, one-sided p-value)."""
    wins, losses = int((challenger & ~champion).sum()), int((~challenger & champion).sum())
    p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    return wins, losses, float(p)


def decide(p: PromoteParams, challenger: Scored, champion: Scored | None, floors: list[Scored],
           history: str | None) -> Decision:
    """The rules, in order; history is the challenger's earlier outcome (registry.NEVER_AGAIN)."""
    if history in registry.NEVER_AGAIN:
        words = "rejected by the gate" if history == registry.REJECTED else "rolled back by hand"
        return Decision(False, f"it was {words} before, and such a version is never promoted again "
                               "automatically (move the alias by hand if you mean it)")
    value = selection_value(p.metric, challenger.metrics)
    for scored_ in [challenger, *([champion] if champion else []), *floors]:
        if not math.isfinite(selection_value(p.metric, scored_.metrics)):
            raise MetricUndefined(
                f"promote.metric={p.metric} is {selection_value(p.metric, scored_.metrics)} for {scored_.label} on "
                f"these {len(scored_.correct)} test rows (roc_auc needs every class among them; a cap or a small "
                "test split can leave one out): the gate does not compare a number that is not one. Choose "
                "another promote.metric, or a test split with every class (split.max_test)")
    for floor in floors:
        if value <= selection_value(p.metric, floor.metrics):
            return Decision(False, f"{p.metric} {value:.4f} does not beat the {floor.label} baseline "
                                   f"({selection_value(p.metric, floor.metrics):.4f}) on the same rows")
    if champion is None:
        return Decision(True, f"no champion yet, and it beats both baselines ({p.metric} {value:.4f})")
    wins, losses, pvalue = mcnemar(challenger.correct, champion.correct)
    alpha = 1 - p.confidence
    test = (f"McNemar's exact test (one-sided) on the {wins + losses} rows where the models disagree: the "
            f"challenger is right on {wins}, the champion on {losses}; p = {pvalue:.4g}, "
            f"{'below' if pvalue < alpha else 'not below'} {alpha:.4g} (promote.confidence {p.confidence:g})")
    gain = value - selection_value(p.metric, champion.metrics)
    if pvalue >= alpha:
        return Decision(False, f"not significantly better than the champion (p = {pvalue:.4g} >= {alpha:.4g}; "
                               f"{p.metric} {gain:+.4f})", test)
    if gain <= p.min_improvement:
        return Decision(False, f"{p.metric} {gain:+.4f} does not beat the margin {p.min_improvement:g}", test)
    return Decision(True, f"significantly better than the champion (p = {pvalue:.4g} < {alpha:.4g}) and "
                          f"{p.metric} {gain:+.4f} beats the margin {p.min_improvement:g}", test)


# --- the summary -----------------------------------------------------------------------------------

def metrics_diff(rev: str | None) -> str:
    """`dvc metrics diff --md` (rev, or HEAD, against the workspace); a failure is reported, not hidden."""
    if not any((folder / ".dvc").is_dir() for folder in (Path.cwd(), *Path.cwd().parents)):
        return "Not run: the current folder is not in a DVC project."
    cmd = ["dvc", "metrics", "diff", "--md", *([rev] if rev else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("%s failed: %s", " ".join(cmd), done.stderr.strip())
        return f"`{' '.join(cmd)}` failed: {last}"
    return done.stdout.strip() or "No metric changed."


def verdict(decision: Decision, dry_run: bool) -> str:
    if dry_run:
        return "would be promoted" if decision.promote else "would not be promoted"
    return "promoted" if decision.promote else "not promoted"


def summary(name: str, p: PromoteParams, challenger: Scored, champion: Scored | None, floors: list[Scored],
            decision: Decision, rows: Rows, own_test: bool, dry_run: bool, diff: str,
            provenance: Provenance | None = None) -> str:
    lines = [f"## Promotion gate: {name}{' (dry run: no alias or tag changed)' if dry_run else ''}", "",
             f"**{verdict(decision, dry_run)}**: {challenger.label}: {decision.reason}.", "",
             *([f"**Commit**: the challenger was {provenance.words()}.", ""] if provenance else []),
             (f"| metric ({len(rows.texts)} test rows) | {champion.label if champion else f'{CHAMPION} (none yet)'} "
              f"| {challenger.label} | change |"), "|---|---:|---:|---:|"]
    for metric in SHOWN_METRICS:
        new = challenger.metrics[metric]
        old = champion.metrics[metric] if champion else None
        old_text, change = ("-", "-") if old is None else (f"{old:.4f}", f"{new - old:+.4f}")
        mark = " (gate)" if metric == p.metric or (metric == "log_loss" and p.metric == "neg_log_loss") else ""
        lines.append(f"| {metric}{mark} | {old_text} | {new:.4f} | {change} |")
    lines += ["", f"| baseline, on the same rows | {p.metric} |", "|---|---:|"]
    lines += [f"| {f.label} | {selection_value(p.metric, f.metrics):.4f} |" for f in floors]
    lines += ["", f"**Paired test**: {decision.test or 'not run (no champion to compare with, or refused first)'}.",
              *gain_interval(challenger, champion, rows),
              "", (f"**Rows**: {len(rows.texts)} rows (digest {set_digest(rows.hashes)[:12]}, "
                   f"{'the' if own_test else 'not the'} test split the challenger was trained beside), none of "
                   "them trained or validated on by either model; classes compared by name."),
              "", "### dvc metrics diff", "", diff, ""]
    return "\n".join(lines)


def gain_interval(challenger: Scored, champion: Scored | None, rows: Rows) -> list[str]:
    """The challenger's accuracy gain over the champion with its paired 95% bootstrap interval."""
    if champion is None or challenger.probs is None or champion.probs is None:
        return []
    ci = confidence_intervals(rows.labels, challenger.probs, champion.probs)
    gain = challenger.metrics["accuracy"] - champion.metrics["accuracy"]
    return ["", f"**Accuracy gain over the champion**: {gain:+.4f}, paired {CI_LEVEL:.0%} bootstrap interval "
                f"{ci['accuracy_gain_over_baseline_ci_low']:+.4f} to {ci['accuracy_gain_over_baseline_ci_high']:+.4f} "
                f"({BOOTSTRAP_ROUNDS} resamples of the {len(rows.texts)} rows)."]


def refusal(name: str, err: Exception) -> str:
    return f"## Promotion gate: {name}\n\n**refused**: {err}\n"


# --- main ------------------------------------------------------------------------------------------

def apply(client: MlflowClient, name: str, version: str, decision: Decision, judged: bool) -> None:
    """Write the decision to the registry; judged is False when the version keeps an earlier
    outcome (already champion, or rejected / rolled back before: why stays as it was)."""
    registry.set_alias(client, name, CHALLENGER, version)
    if judged:
        if decision.promote:
            registry.set_champion(client, name, version)
        registry.record(client, name, version, registry.PROMOTED if decision.promote else registry.REJECTED,
                        decision.reason)
    registry.remember_champion(client, name)


def judge(args: argparse.Namespace, client: MlflowClient, name: str, experiment: str, p: PromoteParams,
          e: EvaluateParams, tmp: Path) -> int:
    challenger_version = challenger_of_run(client, Path(args.run_file), name, experiment)
    provenance = check_commit(client, challenger_version, args.allow_foreign_commit)
    champion_version = registry.version_by_alias(client, name, CHAMPION)
    rolled_back = registry.hand_rollback(client, name, champion_version)
    if rolled_back and not args.dry_run:
        registry.record(client, name, rolled_back, registry.ROLLED_BACK,
                        f"a person moved @{CHAMPION} away from it")
    rows = load_rows_to_score(Path(args.split))
    same = champion_version is not None and str(champion_version.version) == str(challenger_version.version)
    check_overlap(name, challenger_version, CHALLENGER, rows, tmp)
    if champion_version is not None and not same:
        check_overlap(name, champion_version, CHAMPION, rows, tmp)

    challenger = score_model(name, challenger_version, CHALLENGER, rows, e, tmp)
    champion = None
    if champion_version is not None:
        champion = Scored(f"{CHAMPION}: the same version", challenger.metrics, challenger.correct,
                          challenger.probs) if same \
            else score_model(name, champion_version, CHAMPION, rows, e, tmp)
    floors = baselines(Path(args.split), rows)
    history = registry.ROLLED_BACK if rolled_back == str(challenger_version.version) else \
        challenger_version.tags.get(registry.PROMOTION_TAG)
    if same:
        decision = Decision(False, f"it is already the {CHAMPION}")
    else:
        decision = decide(p, challenger, champion, floors, history)
    if not args.dry_run:
        apply(client, name, str(challenger_version.version), decision, judged=not same and
              history not in registry.NEVER_AGAIN)
    own_test = challenger_version.tags.get(f"{TAG}test_digest") == set_digest(rows.hashes)
    print(summary(name, p, challenger, champion, floors, decision, rows, own_test, args.dry_run,
                  metrics_diff(args.diff_rev), provenance))
    log.info("%s: %s", verdict(decision, args.dry_run), decision.reason)
    return PROMOTED if decision.promote else KEPT


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = load_section(PromoteParams, "promote", args.params)
    e = load_section(EvaluateParams, "evaluate", args.params)
    train = load_section(TrainParams, "train", args.params)
    configure()
    name = train.registered_model
    refusals = {RunRefused: RUN_REFUSED, OverlapRefused: OVERLAP, Incomparable: INCOMPARABLE,
                MetricUndefined: INCOMPARABLE, LineageError: INCOMPARABLE, CommitRefused: FOREIGN_COMMIT,
                manifest.ManifestMismatch: RUN_REFUSED}
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        try:
            return judge(args, MlflowClient(), name, train.mlflow_experiment, p, e, Path(tmp))
        except tuple(refusals) as err:
            print(refusal(name, err))
            log.error("refused: %s", err)
            return refusals[type(err)]


if __name__ == "__main__":
    run_cli(main)
