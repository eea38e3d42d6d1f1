"""Promotion gate: score the registered `challenger` and `champion` on the current test split,
and move `champion` to the challenger only when it wins by more than `promote.min_improvement`
(the first model becomes champion).

In:  params `promote` and `train.registered_model`; <split>/test.parquet (texts and labels);
     the MLflow Model Registry (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
Out: a markdown summary on stdout: the two models side by side, the decision, and
     `dvc metrics diff`. Exit code 0: promoted; 3: champion kept; anything else: an error.

Run: python -m bertpipe.promote --split data/split
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from bertpipe.artifacts import read_parquet
from bertpipe.config import PromoteParams, TrainParams
from bertpipe.inference import Classifier
from bertpipe.logs import run_cli
from bertpipe.metrics import selection_value, summary_metrics
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.registry import (
    CHALLENGER,
    CHAMPION,
    Decision,
    decide,
    resolve_checkpoint,
    set_champion,
    version_by_alias,
)
from bertpipe.tracking import configure

log = logging.getLogger("promote")
PROMOTED, KEPT = 0, 3  # exit codes
SHOWN_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "log_loss")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--split", required=True, help="split output folder; its test.parquet is scored")
    p.add_argument("--diff-rev", default=None,
                   help="git revision to diff the workspace's metrics against (dvc metrics diff; default HEAD)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Scored:
    version: ModelVersion
    metrics: dict[str, float]
    labels: list[str]


def load_test(split: str | Path) -> tuple[list[str], np.ndarray]:
    path = Path(split) / "test.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no test split; run the pipeline first (dvc pull, or dvc repro)")
    test = read_parquet(path, columns=["text", "label"])
    return test["text"].tolist(), test["label"].to_numpy()


def score(name: str, version: ModelVersion, texts: list[str], labels: np.ndarray, batch_size: int) -> Scored:
    """Load version's checkpoint from the registry and score it on the texts."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        classifier = Classifier.load(resolve_checkpoint(f"models:/{name}/{version.version}", tmp), device)
    if labels.max() >= len(classifier.label_names):
        raise ValueError(f"{name} version {version.version} knows {len(classifier.label_names)} classes "
                         f"({classifier.label_names}) but the test split has label {labels.max()}")
    log.info("scoring %s version %s on %d test rows", name, version.version, len(texts))
    return Scored(version, summary_metrics(labels, classifier.predict_proba(texts, batch_size)),
                  classifier.label_names)


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


def version_label(scored: Scored | None) -> str:
    if scored is None:
        return "(none yet)"
    return f"v{scored.version.version} (run {(scored.version.run_id or '?')[:8]})"


def summary(name: str, p: PromoteParams, challenger: Scored, champion: Scored | None, decision: Decision,
            rows: int, diff: str) -> str:
    verdict = "promoted" if decision.promote else "not promoted"
    lines = [f"## Promotion gate: {name}", "",
             f"**{verdict}**: challenger v{challenger.version.version}: {decision.reason}.", "",
             (f"| metric ({rows} test rows) | {CHAMPION} {version_label(champion)} | "
              f"{CHALLENGER} {version_label(challenger)} | change |"),
             "|---|---:|---:|---:|"]
    for metric in SHOWN_METRICS:
        new = challenger.metrics[metric]
        old = champion.metrics[metric] if champion else None
        old_text, change = ("-", "-") if old is None else (f"{old:.4f}", f"{new - old:+.4f}")
        mark = " (gate)" if metric == p.metric or (metric == "log_loss" and p.metric == "neg_log_loss") else ""
        lines.append(f"| {metric}{mark} | {old_text} | {new:.4f} | {change} |")
    lines += ["", "### dvc metrics diff", "", diff, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = load_section(PromoteParams, "promote", args.params)
    name = load_section(TrainParams, "train", args.params).registered_model
    configure()
    client = MlflowClient()
    challenger_version = version_by_alias(client, name, CHALLENGER)
    if challenger_version is None:
        raise LookupError(f"no version of registered model '{name}' has the alias @{CHALLENGER}; train one "
                          "first (dvc repro: train registers each new model as the challenger)")
    champion_version = version_by_alias(client, name, CHAMPION)
    texts, labels = load_test(args.split)

    challenger = score(name, challenger_version, texts, labels, p.batch_size)
    champion = None
    if champion_version is not None and champion_version.version == challenger_version.version:
        champion = challenger
        decision = Decision(False, f"it is already the {CHAMPION}")
    else:
        if champion_version is not None:
            champion = score(name, champion_version, texts, labels, p.batch_size)
            if champion.labels != challenger.labels:
                raise ValueError(f"{name}: champion v{champion_version.version} predicts {champion.labels}, "
                                 f"challenger v{challenger_version.version} predicts {challenger.labels}; they "
                                 f"cannot be compared. Move the alias by hand if intended: MlflowClient()"
                                 f".set_registered_model_alias('{name}', '{CHAMPION}', <version>)")
        decision = decide(selection_value(p.metric, challenger.metrics),
                          selection_value(p.metric, champion.metrics) if champion else None,
                          p.min_improvement, p.metric)
        if decision.promote:
            set_champion(client, name, challenger_version.version)
        client.set_model_version_tag(name, challenger_version.version, "promotion",
                                     "promoted" if decision.promote else "rejected")
    print(summary(name, p, challenger, champion, decision, len(labels), metrics_diff(args.diff_rev)))
    log.info("%s: %s", "promoted" if decision.promote else "champion kept", decision.reason)
    return PROMOTED if decision.promote else KEPT


if __name__ == "__main__":
    run_cli(main)
