"""The MLflow Model Registry: train registers each new model as a version (no alias); the
promotion gate (bertpipe.promote) judges the version its run produced, points `challenger` at
it and moves `champion` when it wins. Also finds the checkpoint folder behind a model reference
(a local folder or an MLflow URI such as models:/<name>@champion).

What the gate decided is kept in tags, so it holds across runs and machines:
- version tag `promotion`: `promoted`, `rejected`, or `rolled_back` (it was champion and a
  person moved the alias away); a rejected or rolled-back version is never promoted again
  automatically.
- registered model tag `gate.champion_seen`: the champion as the gate last left it; when the
  alias points elsewhere at the next run, a person moved it, and that version was rolled back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ErrorCode

from bertpipe.errors import InputError
from bertpipe.inference import PIPELINE_META

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
CHECKPOINT_ARTIFACT = "checkpoint"  # the artifact key of the checkpoint inside the logged pyfunc model
PROMOTION_TAG = "promotion"
PROMOTED, REJECTED, ROLLED_BACK = "promoted", "rejected", "rolled_back"
NEVER_AGAIN = (REJECTED, ROLLED_BACK)
SEEN_TAG = "gate.champion_seen"


def register_version(model_uri: str, name: str, tags: dict[str, str] | None = None) -> ModelVersion:
    """Register model_uri as a new version of name. No alias moves: a sweep or a branch's
    training adds versions, only the promotion gate points aliases at them."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    log.info("registered %s version %s", name, version.version)
    return version


KEY_PARAMS = ("model", "max_length", "truncation", "train_rows", "epochs", "batch_size", "learning_rate",
              "weight_decay", "warmup_fraction", "seed")
# (metric, the TF-IDF baseline's metric, the majority-class baseline's), named as in the metrics
# files; MLflow's names come from bertpipe.tracking.metric_key.
TEST_ROWS = (("accuracy", "baseline_tfidf_logreg_accuracy", "baseline_majority_accuracy"),
             ("f1_macro", "baseline_tfidf_logreg_f1_macro", "baseline_majority_f1_macro"),
             ("roc_auc", "baseline_tfidf_logreg_roc_auc", "baseline_majority_roc_auc"),
             ("ece", "baseline_tfidf_logreg_ece", "baseline_majority_ece"))


def version_description(run: Run) -> str:
    """Markdown for a model version: the data version, key params, test metrics beside the
    baselines, and the command that reproduces it, all read from the run that trained it."""
    from bertpipe.tracking import metric_key  # here, not at the top: tracking imports this module

    params, tags, logged = run.data.params, run.data.tags, run.data.metrics

    def value(name: str, section: str = "test") -> float | None:
        return logged.get(metric_key(section, name))

    def fmt(name: str, section: str = "test") -> str:
        number = value(name, section)
        return "-" if number is None else f"{number:.4f}"

    def interval(name: str, signed: bool = False) -> str:
        low, high = value(f"{name}_ci_low"), value(f"{name}_ci_high")
        if low is None or high is None:
            return "-"
        return f"{low:+.4f} to {high:+.4f}" if signed else f"{low:.4f}-{high:.4f}"

    commit = tags.get("git_commit", "unknown")
    data = ", ".join(f"{d.dataset.name} `{d.dataset.digest}`" for d in run.inputs.dataset_inputs) or "not recorded"
    exp = tags.get("dvc_exp_name")  # a DVC experiment keeps its own changes in git: never dirty
    dirty = tags.get("git_dirty") == "true" and not exp
    lines = [f"Trained by run `{run.info.run_name}` (`{run.info.run_id}`) at git commit `{commit}`"
             + (" **with uncommitted changes**: the commit alone does not reproduce it." if dirty else "."),
             "", f"**Data** (digests of the tokenized splits): {data}.",
             "", "**Key params**: " + ", ".join(f"{k}={params[k]}" for k in KEY_PARAMS if k in params) + "."]
    if value("accuracy") is not None:
        lines += ["", "**Test metrics** (evaluate):", "",
                  "| metric | model | 95% interval | TF-IDF baseline | majority baseline |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {fmt(name)} | {interval(name)} | {fmt(tfidf) if tfidf else ''} "
                  f"| {fmt(major) if major else ''} |" for name, tfidf, major in TEST_ROWS]
        if (gain := value("accuracy_gain_over_baseline")) is not None:
            lines += ["", f"**Accuracy gain over TF-IDF**: {gain:+.4f} "
                          f"(paired 95% interval {interval('accuracy_gain_over_baseline', signed=True)})."]
    else:
        lines += ["", "**Test metrics**: not yet; the evaluate stage adds them."]
    if value("best_accuracy", "val") is not None:
        lines += ["", f"**Best validation accuracy**: {fmt('best_accuracy', 'val')}."]
    if exp:
        command = f"dvc exp apply {exp} && dvc pull && dvc repro"
    else:
        command = f"git checkout {commit[:12]} && dvc pull && dvc repro"
    return "\n".join(lines + ["", f"**Reproduce**: `{command}`"])


def describe_version(client: MlflowClient, version: ModelVersion) -> None:
    client.update_model_version(version.name, version.version,
                                description=version_description(client.get_run(version.run_id)))


def describe_run_versions(run_id: str) -> None:
    """Rewrite the description of every model version the run registered (evaluate calls this
    after logging the test metrics)."""
    client = MlflowClient()
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        describe_version(client, version)


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version that alias points at, or None when the model or the alias does not exist."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as err:
        if err.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    return client.get_model_version(name, aliases[alias]) if alias in aliases else None


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
    log.info("%s version %s is now @%s", name, version, alias)


def set_champion(client: MlflowClient, name: str, version: str) -> None:
    set_alias(client, name, CHAMPION, version)


def hand_rollback(client: MlflowClient, name: str, champion: ModelVersion | None) -> str | None:
    """The version a person moved `champion` away from since the gate last ran, if any: the
    champion the gate last saw (SEEN_TAG) when the alias now points elsewhere."""
    seen = client.get_registered_model(name).tags.get(SEEN_TAG)
    if seen and (champion is None or str(champion.version) != seen):
        return seen
    return None


def record(client: MlflowClient, name: str, version: str, outcome: str, reason: str) -> None:
    client.set_model_version_tag(name, version, PROMOTION_TAG, outcome)
    client.set_model_version_tag(name, version, f"{PROMOTION_TAG}.reason", reason[:4000])


def remember_champion(client: MlflowClient, name: str) -> None:
    champion = version_by_alias(client, name, CHAMPION)
    client.set_registered_model_tag(name, SEEN_TAG, str(champion.version) if champion else "")


def is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / PIPELINE_META).is_file()


def checkpoint_in_mlflow_model(folder: Path) -> Path:
    """The checkpoint folder inside a downloaded MLflow pyfunc model of this project."""
    flavor = Model.load(str(folder)).flavors.get("python_function", {})
    artifact = flavor.get("artifacts", {}).get(CHECKPOINT_ARTIFACT)
    if not artifact:
        raise InputError(f"{folder}: an MLflow model without a '{CHECKPOINT_ARTIFACT}' artifact; "
                         "expected a model logged by this project's train stage")
    return folder / artifact["path"]


def resolve_checkpoint(model: str, download_dir: str | Path | None = None) -> Path:
    """A checkpoint folder from a local checkpoint, a local MLflow model folder, or an MLflow URI
    (models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model), downloaded when remote."""
    local = Path(model)
    if local.is_dir():
        if is_checkpoint(local):
            return local
        if (local / "MLmodel").is_file():
            return checkpoint_in_mlflow_model(local)
        raise InputError(f"{model}: neither a checkpoint folder (config.json and {PIPELINE_META}, as in "
                         "models/best) nor an MLflow model folder (MLmodel)")
    if "://" not in model and not model.startswith(("models:/", "runs:/")):
        raise FileNotFoundError(f"{model}: no such folder; give a checkpoint folder such as models/best or an "
                                "MLflow URI such as models:/<name>@champion")
    log.info("downloading %s from %s", model, mlflow.get_tracking_uri())
    try:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model,
                                                          dst_path=str(download_dir) if download_dir else None))
    except MlflowException as err:  # no such model, version, alias or run: the user's to fix
        if err.error_code not in (ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)):
            raise
        raise InputError(f"{model}: not in the MLflow store {mlflow.get_tracking_uri()} ({err.message}). An "
                         f"@{CHAMPION} alias exists once the promotion gate promoted a model (python -m "
                         "bertpipe.promote) or a person set it; or give a version (models:/<name>/<version>) "
                         "or a checkpoint folder such as models/best") from None
    return checkpoint_in_mlflow_model(folder)
