"""The resumable training checkpoint: weights, optimizer, scheduler, RNG, position, best so far.

It lives in a DVC `persist: true` output, so DVC leaves it alone between runs. A run continues a
saved, unfinished state only when everything that shapes the result matches (resume_key: params,
data, process count, code, library versions, base weights, device, precision); anything else
starts over, with a log line naming what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_model, save_model

from bertpipe.artifacts import (
    atomic_dir,
    file_digest,
    read_json,
    recover_dir,
    remove_leftovers,
    write_json,
)
from bertpipe.codedeps import code_digest

log = logging.getLogger(__name__)
LAST = "last"  # subfolder with the latest resumable state; "best" holds the best checkpoint
WEIGHT_FILES = ("*.safetensors", "*.bin")


@dataclass
class ResumeState:
    key: dict[str, str]
    step: int = 0
    epoch: int = 0
    batch_pos: int = 0  # index of the next micro-batch in this epoch's order
    best_value: float | None = None
    best_step: int = 0
    best_metrics: dict = field(default_factory=dict)
    bad_evals: int = 0
    stopped: bool = False
    finished: bool = False
    run_id: str | None = None
    history: list = field(default_factory=list)
    window_loss: float = 0.0  # train loss summed since the last evaluation, for the progress bar
    window_steps: int = 0
    log_loss: float = 0.0  # train loss summed since the last point of the curve
    log_steps: int = 0
    folder: str = ""

    def restore(self, model, optimizer, scheduler) -> None:
        last = Path(self.folder) / LAST
        load_model(model, str(last / "model.safetensors"), device=str(next(model.parameters()).device))
        saved = torch.load(last / "trainer.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng_cpu"])
        if torch.cuda.is_available() and saved.get("rng_cuda"):
            torch.cuda.set_rng_state_all(saved["rng_cuda"])


def resume_key(params: dict, files: list[str], world_size: int, script: str | Path, base_model: str,
               device: torch.device, dtype: torch.dtype | None) -> dict[str, str]:
    """What must match for a saved state to be continued, part by part, so a mismatch can say which."""
    data = hashlib.sha256(b"".join(file_digest(f).encode() for f in files))
    return {"params": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
            "data": data.hexdigest(), "world_size": str(world_size), "code": code_digest(script),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "base_model": weights_digest(base_model), "device": device.type, "precision": str(dtype or torch.float32)}


def _read_saved(info: Path) -> dict | None:
    """The saved state, or None (with a warning naming the file) when it cannot be read."""
    if not info.exists():
        return None
    try:
        saved = read_json(info)
        if not isinstance(saved, dict) or set(saved) - {f.name for f in fields(ResumeState)}:
            raise ValueError("not a saved training state of this version")
        return saved
    except (ValueError, OSError) as err:  # a torn or damaged file (JSONDecodeError is a ValueError)
        log.warning("%s cannot be read (%s); starting training over", info, err)
        return None


def weights_digest(model: str) -> str:
    """sha256 over the weight files of a model folder, or of a hub id's files in the Hugging Face
    cache (fetched now if missing: from_pretrained would fetch them a moment later anyway)."""
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(model, allow_patterns=list(WEIGHT_FILES)))
    files = sorted({p for pattern in WEIGHT_FILES for p in folder.glob(pattern)})
    return hashlib.sha256(b"".join(p.name.encode() + file_digest(p).encode() for p in files)).hexdigest()


def changed_parts(saved: object, key: dict[str, str]) -> list[str]:
    """'part: saved -> now' for each part of key that differs from the saved key."""
    if not isinstance(saved, dict):
        return ["key: one digest, written by an older bertpipe -> parts " + ", ".join(key)]
    return [f"{part}: {saved.get(part)} -> {now}" for part, now in key.items() if saved.get(part) != now]


def load_state(folder: str | Path, key: dict[str, str]) -> ResumeState:
    recover_dir(Path(folder) / LAST)  # a save killed between its two renames
    remove_leftovers(folder)  # temporary folders of a killed save
    saved = _read_saved(Path(folder) / LAST / "state.json")
    if saved is not None and not saved.get("finished"):
        if saved.get("key") == key:
            return ResumeState(**{**saved, "folder": str(folder)})
        log.warning("starting over: the resumable state in %s was saved with other %s", folder,
                    "; ".join(changed_parts(saved.get("key"), key)))
    shutil.rmtree(folder, ignore_errors=True)  # stale, finished or unreadable: start over, clean
    Path(folder).mkdir(parents=True, exist_ok=True)
    return ResumeState(key=key, folder=str(folder))


def save_state(folder: str | Path, model, optimizer, scheduler, state: ResumeState) -> None:
    with atomic_dir(Path(folder) / LAST) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   tmp / "trainer.pt")
        write_json({k: v for k, v in asdict(state).items() if k != "folder"}, tmp / "state.json")


def mark_finished(folder: str | Path) -> None:
    """After the outputs are published: the next run with this state starts over, so the
    weights and optimizer state of the last save are no longer needed (and not cached)."""
    last = Path(folder) / LAST
    write_json({**read_json(last / "state.json"), "finished": True}, last / "state.json")
    for name in ("model.safetensors", "trainer.pt"):
        (last / name).unlink(missing_ok=True)
