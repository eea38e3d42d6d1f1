"""MLflow: where runs go, what every run is tagged with, and the logged classifier model."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

import bertpipe
from bertpipe import manifest
from bertpipe.artifacts import file_digest
from bertpipe.params import read_yaml
from bertpipe.redact import PlainError, mask_mapping, mask_text, mask_url, parse_url
from bertpipe.registry import CHECKPOINT_ARTIFACT, describe_version, register_version

log = logging.getLogger(__name__)

REACH_TIMEOUT_S = 10
MODEL_NAME = "model"  # artifact name of the logged classifier inside its run
# The experiment's kind, for MLflow's API and older UIs. MLflow 3.17's UI ignores it: it opens an
# experiment on the GenAI overview unless the URL says workflowType=machine_learning (or the
# browser remembers its GenAI | Model training switch), hence runs_link.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow keys are "<section>/<name>": the UI's charts group a run's metrics by the part before
# the last "/" and sort the groups by name, so the loss curves (train and validation) come
# first, then the one-point test results, then the rest of train and val. The metrics files
# and `dvc metrics show` keep their names; this is the one table between the two.
METRIC_KEYS = {("train", "loss"): "loss/train", ("val", "log_loss"): "loss/val"}
# The runs table's key columns, as an MLflow saved view on the experiment: the UI reads a view
# from the experiment tag mlflow.sharedViewState.<key> when the URL has viewStateShareKey=<key>.
RUNS_VIEW_KEY, RUNS_VIEW_NAME = "bertpipe", "bertpipe: key columns"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
KEY_METRICS = (("test", "accuracy"), ("test", "accuracy_gain_over_baseline"), ("val", "best_accuracy"))
KEY_PARAMS = ("learning_rate", "max_length", "epochs")
# A run's recipe: everything that defines its result except the seed (recipe_params), hashed, so
# that the runs of one recipe at several train.seed are one group (`bertpipe recipes`, the UI's
# Group by). split.seed is not a seed here: it picks other rows, so other test rows too.
RECIPE_TAG, RECIPE_PARAMS_TAG = "recipe", "recipe_params"
SEED_PARAMS = ("seed",)  # train's params that only seed randomness
RECIPE_CHARS = 12  # hex digits of the sha256
MAX_TAG_CHARS = 5000  # MLflow 3 keeps tag values up to 8,000 characters, older servers 5,000
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default
LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "dvc", "pandas", "numpy", "scikit-learn")
# The hashed locks requirements/lock.sh writes, relative to the project root; each pins its torch build.
LOCK_FILES = ("requirements/cpu.lock", "requirements/cuda.lock")


def configure() -> str:
    """Use MLFLOW_TRACKING_URI when set, else MLflow's default (sqlite:///mlflow.db in the cwd).

    A remote server that does not answer fails here, fast, instead of hanging in retries.
    """
    if (root := project_root()) and not os.environ.get("MLFLOW_TRACKING_URI"):
        # A queued `dvc exp run` works in a throwaway copy of the project; DVC_ROOT names the
        # project itself, so its runs land in the project's store, not in the copy's.
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    uri = mlflow.get_tracking_uri()
    if "://" in uri:
        parse_url(uri, "MLFLOW_TRACKING_URI")  # a malformed URI: one clear line, no traceback
    if uri.startswith(("http://", "https://")):
        uri = credentials_out_of_uri(uri)
        # MLflow retries HTTP calls with backoff for minutes by default; keep failures quick.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REACH_TIMEOUT_S))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        check_reachable(uri)
    return uri


def credentials_out_of_uri(uri: str) -> str:
    """The URI without user info, which moves to MLFLOW_TRACKING_USERNAME / _PASSWORD (the same
    basic auth to MLflow), so no MLflow message can print it: not its errors, not "View run at"."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and not parts.query:
        return uri
    # MLflow prints run links to stdout; a query token in the URI would be in them.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if parts.username is None:
        return uri
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", urllib.parse.unquote(parts.username))
    if parts.password is not None:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", urllib.parse.unquote(parts.password))
    clean = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    os.environ["MLFLOW_TRACKING_URI"] = clean
    mlflow.set_tracking_uri(clean)
    log.info("MLFLOW_TRACKING_URI: credentials taken out of the URI into MLFLOW_TRACKING_USERNAME/_PASSWORD")
    return clean


def project_root() -> Path | None:
    """The DVC project a stage runs for (DVC_ROOT, set by dvc repro and dvc exp run), if any."""
    root = os.environ.get("DVC_ROOT")
    return Path(root).resolve() if root else None


class TrackingServerUnreachable(PlainError, ConnectionError):
    """The tracking server in MLFLOW_TRACKING_URI did not answer."""


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    # The health check goes to the server without user info in the URL: credentials travel
    # in MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN, never in a URL that errors may quote.
    parts = parse_url(uri, "MLFLOW_TRACKING_URI")
    health = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="", fragment="").geturl()
    try:
        with urllib.request.urlopen(health.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as err:
        raise TrackingServerUnreachable(
            f"MLflow tracking server {mask_url(uri)} (from MLFLOW_TRACKING_URI) did not answer within "
            f"{timeout:g}s: {mask_text(str(err))}. Start it (mlflow server --host 127.0.0.1 --port 5000), "
            "fix the URI, or unset MLFLOW_TRACKING_URI to use the local sqlite:///mlflow.db"
        ) from None


def pipeline_outputs(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """dvc.lock and the outs, metrics and plots dvc.yaml declares: DVC rewrites them while the
    pipeline runs, so their changes do not make the working tree dirty."""
    path = Path(dvc_yaml)
    if not path.is_file():
        return []
    paths = ["dvc.lock"]
    for stage in (read_yaml(path).get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            paths += [entry if isinstance(entry, str) else next(iter(entry)) for entry in stage.get(kind, [])]
    return paths


def git_state() -> dict[str, str]:
    """The commit, and whether tracked files other than pipeline outputs differ from it."""
    excluded = [f":(exclude){p}" for p in pipeline_outputs()]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[f"version.{lib}"] = version(lib)
        except PackageNotFoundError:
            pass
    return out


def lock_state(root: str | Path = ".") -> dict[str, str]:
    """The lock whose torch pin is the installed torch (torch==2.13.0+cpu: the CPU lock), and its
    sha256: which pinned environment a run's numbers come from. "none" for both when no lock
    under root pins this torch (another torch, or no lock file)."""
    try:
        installed = version("torch")
    except PackageNotFoundError:
        installed = None
    for name in LOCK_FILES:
        path = Path(root) / name
        if installed and path.is_file() and \
                re.search(rf"^torch=={re.escape(installed)}\s", path.read_text(encoding="utf-8"), re.MULTILINE):
            return {"lock_file": name, "lock_sha256": file_digest(path)}
    return {"lock_file": "none", "lock_sha256": "none"}


def run_name() -> str:
    """The DVC experiment's name, else repro-<short commit> (with -dirty for uncommitted changes)."""
    if exp := os.environ.get("DVC_EXP_NAME"):
        return exp
    state = git_state()
    if state["git_commit"] == "unknown":
        return "repro-no-git"
    return f"repro-{state['git_commit'][:7]}" + ("-dirty" if state["git_dirty"] == "true" else "")


def mark_model_training(experiment_id: str) -> None:
    """Tag the experiment as model training (once; a kind set by hand in the UI is kept) and
    save its runs view (key columns, best test accuracy first), which runs_link opens."""
    client = mlflow.MlflowClient()
    tags = client.get_experiment(experiment_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    state = runs_view_state()
    try:
        saved = json.loads(json.loads(tags[VIEW_TAG_PREFIX + RUNS_VIEW_KEY])["state"])
    except (KeyError, TypeError, ValueError):
        saved = None
    if saved != state:  # the view as this code defines it (a renamed metric moves its column)
        now = int(time.time() * 1000)
        envelope = {"name": RUNS_VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
        client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + RUNS_VIEW_KEY, json.dumps(envelope))


def runs_view_state() -> dict:
    """The runs table's state in MLflow 3.17's saved-view format: columns, sort order."""
    columns = [f"metrics.`{metric_key(*m)}`" for m in KEY_METRICS] + [f"params.`{p}`" for p in KEY_PARAMS]
    return {"selectedColumns": columns, "orderByKey": columns[0], "orderByAsc": False}


def runs_link(experiment_id: str, uri: str | None = None) -> str:
    """The address of the experiment's runs table with its key columns: on the tracking server,
    or where `mlflow ui` serves a local store. workflowType=machine_learning: MLflow 3.17's UI
    otherwise opens on its GenAI overview, whatever the experiment's tags."""
    uri = uri or mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(uri)  # no user info, no query: nothing secret in a logged link
        base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path.rstrip('/')}"
    else:
        base = LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}"


def metric_key(section: str, name: str) -> str:
    """The MLflow key of a metric: its section (train, val or test), then its metrics-file name."""
    return METRIC_KEYS.get((section, name), f"{section}/{name}")


def log_metrics(section: str, metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({metric_key(section, k): v for k, v in metrics.items()}, step=step)


def log_params(params: dict) -> None:
    """Log params; a whole-number float as the integer it is (epochs: 1 -> "1", not "1.0")."""
    mlflow.log_params({k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()})


def canonical_json(value) -> str:
    """The one text of a JSON value, on any machine: keys sorted, no spaces, floats as Python's
    shortest round-trip repr (8e-05), NaN refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def flat(mapping: dict, prefix: str) -> dict:
    """{"a": {"b": 1}} -> {"<prefix>a.b": 1}: nested keys as dotted names; lists stay values."""
    out = {}
    for key, value in mapping.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def recipe_params(train: dict, tokenized: dict, rows: dict[str, str], world_size: int) -> dict:
    """What defines a run's result except its seed, as flat dotted keys: train's typed params
    less SEED_PARAMS (train passes them with `auto` resolved), how the ids were made (tokenize's meta.json:
    model, revision, length, truncation, class names, normalisation), the row set of each split
    (lineage digests, so the upstream params and the data version count through the rows they
    select) and the number of processes (train.batch_size is per process)."""
    params = {f"train.{k}": v for k, v in train.items() if k not in SEED_PARAMS}
    params.update(flat(tokenized, "tokenized."))
    params.update({f"rows.{split}": digest for split, digest in rows.items()})
    params["run.world_size"] = world_size
    return params


def recipe_tags(params: dict) -> dict[str, str]:
    """The run tags `recipe` (RECIPE_CHARS hex of the sha256 of params' canonical JSON) and
    `recipe_params` (that JSON, what `bertpipe recipes` compares; left out, with a warning, when
    longer than an MLflow tag value may be)."""
    text = canonical_json(params)
    tags = {RECIPE_TAG: hashlib.sha256(text.encode("utf-8")).hexdigest()[:RECIPE_CHARS]}
    if len(text) <= MAX_TAG_CHARS:
        tags[RECIPE_PARAMS_TAG] = mask_text(text)  # a model given as a URL keeps its credentials out
    else:
        log.warning("recipe params are %d characters, over MLflow's %d for a tag: tagged `%s` only",
                    len(text), MAX_TAG_CHARS, RECIPE_TAG)
    return tags


def run_tags(device: str) -> dict[str, str]:
    tags = {**git_state(), **library_versions(), **lock_state(), "device": device}
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = exp
    return mask_mapping(tags)


def start_run(experiment: str | None = None, run_id: str | None = None) -> mlflow.ActiveRun:
    """Start a new run (named after the DVC experiment when there is one) or reopen run_id."""
    configure()
    if run_id:
        return mlflow.start_run(run_id=run_id, log_system_metrics=True)
    if (root := project_root()) and not os.environ.get("MLFLOW_TRACKING_URI") \
            and mlflow.get_experiment_by_name(experiment) is None:
        # MLflow's default artifact folder is ./mlruns of the cwd: the throwaway copy, in a queue.
        mlflow.create_experiment(experiment, artifact_location=str(root / "mlruns"))
    mark_model_training(mlflow.set_experiment(experiment).experiment_id)
    # System metrics: CPU and memory (psutil), GPU where nvidia-ml-py finds one.
    return mlflow.start_run(run_name=run_name(), log_system_metrics=True)


def log_dataset(path: str | Path, name: str, context: str, labels, lengths) -> None:
    """Record a tokenized split as a run input, its digest taken from the artifact's bytes."""
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice (plain paths and file://), then warns that
        # a local path matches both; it picks the local-file source either way.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways",
                                category=UserWarning)
        dataset = mlflow.data.from_numpy(lengths, targets=labels, source=str(path), name=name,
                                         digest=file_digest(path)[:16])
    mlflow.log_input(dataset, context=context)


def log_classifier(checkpoint: Path, example_texts: list[str], example_output: pd.DataFrame,
                   registered_model: str | None = None, version_tags: dict[str, str] | None = None):
    """Log the checkpoint once as an MLflow pyfunc model with signature and input example;
    with registered_model, register it as a new version of that name (no alias: the promotion
    gate judges versions), tagged with version_tags (lineage: bertpipe.lineage) and the digest
    manifest of the files it carries (bertpipe.manifest), which the model also carries."""
    example = pd.DataFrame({"text": example_texts})
    requirements = [f"{lib}=={version(lib)}" for lib in ("torch", "transformers", "tokenizers", "safetensors",
                                                         "pandas", "numpy", "mlflow")]
    code = Path(bertpipe.__file__).parent
    model_code = code / "mlflow_model.py"  # models from code: no pickle
    files = manifest.digests(manifest.carried_files({CHECKPOINT_ARTIFACT: checkpoint}, [code], model_code))
    with tempfile.TemporaryDirectory(prefix="manifest-") as tmp:
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(model_code),
            artifacts={CHECKPOINT_ARTIFACT: str(checkpoint),
                       manifest.MANIFEST_ARTIFACT: str(manifest.write(Path(tmp), files))},
            code_paths=[str(code)],
            signature=infer_signature(example, example_output),
            input_example=example,
            pip_requirements=requirements,
        )
    if registered_model:
        tags = {"git_commit": git_state()["git_commit"], "run_id": info.run_id, **(version_tags or {}),
                manifest.MANIFEST_TAG: manifest.to_json(files)}
        registered = register_version(info.model_uri, registered_model, mask_mapping(tags))
        describe_version(mlflow.MlflowClient(), registered)  # evaluate adds the test metrics
    return info
