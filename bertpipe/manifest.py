"""The digest manifest of a logged model, so that what is served is what was judged.

log_classifier records the sha256 of every file the MLflow model carries that decides its
answers: the checkpoint (weights, config, tokenizer, pipeline.json), the copy of bertpipe/ it
runs (code_paths) and its model code (mlflow_model.py). The manifest travels inside the model as
the artifact `manifest` (artifacts/manifest.json, not listed in itself) and, on registration,
as the version tag `artifact_manifest`. The promotion gate checks tag, stored manifest and files
before it scores a version; the served model checks the stored manifest and the files when it
loads. A difference is refused, naming the file.

Not covered: the files MLflow writes itself when logging (MLmodel, the environment files, the
input example), and __pycache__ folders, which Python writes beside the code when it runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertpipe.artifacts import file_digest
from bertpipe.errors import BertpipeError

MANIFEST_ARTIFACT = "manifest"  # its key among the pyfunc model's artifacts
MANIFEST_FILE = "manifest.json"
MANIFEST_TAG = "artifact_manifest"  # the model version tag: the same mapping as the file
SKIPPED_DIRS = frozenset({"__pycache__"})  # MLflow does not copy them; Python writes them


class ManifestMismatch(BertpipeError):
    """A logged model's files are not those its manifest (or its version tag) lists."""


def _tree(path: Path, key: str) -> dict[str, Path]:
    """{key/relative path: path} for every file under path (or {key: path} for a file)."""
    if not path.is_dir():
        return {key: path}
    return {f"{key}/{p.relative_to(path).as_posix()}": p for p in sorted(path.rglob("*"))
            if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(path).parts)}


def carried_files(artifacts: dict[str, Path], code_paths: list[Path], model_code: Path) -> dict[str, Path]:
    """What mlflow.pyfunc.log_model will put in the model, keyed by the path inside it: an
    artifact goes to artifacts/<its name>, a code path to code/<its name>, the model code file to
    the top. logged_files finds the same keys in the logged model, from its MLmodel."""
    files = {}
    for path in artifacts.values():
        files.update(_tree(path, f"artifacts/{path.name}"))
    for path in code_paths:
        files.update(_tree(path, f"code/{path.name}"))
    files[model_code.name] = model_code
    return files


def digests(files: dict[str, Path]) -> dict[str, str]:
    return {key: file_digest(path) for key, path in sorted(files.items())}


def to_json(manifest: dict[str, str]) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


def write(folder: Path, manifest: dict[str, str]) -> Path:
    path = folder / MANIFEST_FILE
    path.write_text(to_json(manifest) + "\n", encoding="utf-8")
    return path


def model_root(path: Path) -> Path:
    """The logged model folder (the one holding MLmodel) that path is in."""
    for folder in (path, *path.parents):
        if (folder / "MLmodel").is_file():
            return folder
    raise ManifestMismatch(f"{path}: not inside an MLflow model folder (no MLmodel above it)")


def logged_files(root: Path) -> tuple[dict[str, Path], Path | None]:
    """(the covered files of the logged model at root, keyed as carried_files keys them; its stored
    manifest, or None), found where MLflow loads them from: MLmodel's python_function flavor."""
    from mlflow.models import Model  # here: the served model imports this module before mlflow is needed

    conf = Model.load(str(root)).flavors.get("python_function", {})
    files, stored = {}, None
    for name, artifact in conf.get("artifacts", {}).items():
        if name == MANIFEST_ARTIFACT:
            stored = root / artifact["path"]
        else:
            files.update(_tree(root / artifact["path"], artifact["path"]))
    if conf.get("code"):
        files.update(_tree(root / conf["code"], conf["code"]))
    if conf.get("model_code_path"):
        name = Path(conf["model_code_path"]).name
        files[name] = root / name
    return files, stored


def _first_difference(expected: dict[str, str], found: dict[str, str | None]) -> str | None:
    """The first file, in name order, that differs between two manifests, in words; None if none."""
    for key in sorted(expected.keys() | found.keys()):
        want, got = expected.get(key), found.get(key)
        if want == got:
            continue
        if want is None:
            return f"{key} is not in the manifest (a file added after registration)"
        if got is None:
            return f"{key} is missing (the manifest lists it with sha256 {want[:12]}...)"
        return f"{key} has sha256 {got[:12]}..., the manifest says {want[:12]}..."
    return None


def check_files(root: Path, expected: dict[str, str], what: str) -> None:
    """Refuse, naming the file, unless the covered files at root are exactly those of expected."""
    files, _ = logged_files(root)
    found = {key: file_digest(path) if path.is_file() else None for key, path in files.items()}
    if problem := _first_difference(expected, found):
        raise ManifestMismatch(f"{what} ({root}) is not the model that was registered: {problem}. The artifact "
                               "changed after registration; restore it, or train and register the model again")


def read_stored(root: Path, what: str) -> dict[str, str]:
    """The manifest stored inside the logged model at root."""
    _, stored = logged_files(root)
    if stored is None or not stored.is_file():
        raise ManifestMismatch(f"{what} ({root}) has no {MANIFEST_FILE} artifact: it cannot be checked against "
                               "what was registered; train and register the model again")
    return json.loads(stored.read_text(encoding="utf-8"))


def check_loaded(manifest_path: str | Path | None, what: str = "the model") -> None:
    """What the served model runs at load time (load_context): files against the stored manifest."""
    if manifest_path is None:
        raise ManifestMismatch(f"{what} has no '{MANIFEST_ARTIFACT}' artifact: it cannot be checked against "
                               "what was registered; train and register the model again")
    root = model_root(Path(manifest_path))
    check_files(root, read_stored(root, what), what)


def check_registered(root: Path, tag: str | None, what: str) -> bool:
    """What the gate runs before scoring a version: its tag, the stored manifest and the files
    agree. False (nothing to check) for a version with neither: registered before manifests."""
    _, stored = logged_files(root)
    if tag is None and stored is None:
        return False
    if tag is None:
        raise ManifestMismatch(f"{what} has a {MANIFEST_FILE} but no '{MANIFEST_TAG}' version tag: the tag "
                               "recorded at registration was removed; train and register the model again")
    try:
        registered = json.loads(tag)
    except json.JSONDecodeError:
        registered = None
    if not isinstance(registered, dict):
        raise ManifestMismatch(f"{what}: its '{MANIFEST_TAG}' tag is not the JSON mapping registration wrote; "
                               "train and register the model again")
    if problem := _first_difference(registered, read_stored(root, what)):
        raise ManifestMismatch(f"{what}: the {MANIFEST_FILE} inside the artifact differs from its "
                               f"'{MANIFEST_TAG}' tag: {problem}; the artifact changed after registration")
    check_files(root, registered, what)
    return True
