"""The resumable training checkpoint: weights, optimizer, scheduler, RNG, position, best so far.

It lives in a DVC `persist: true` output, so DVC leaves it alone between runs. A run whose
params and data match a saved, unfinished state continues from it; anything else starts over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from bertpipe.artifacts import atomic_dir, file_digest, read_json, write_json

LAST = "last"  # subfolder with the latest resumable state; "best" holds the best checkpoint


@dataclass
class ResumeState:
    key: str
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


def fingerprint(params: dict, files: list[str], world_size: int) -> str:
    """What must match for a saved state to be continued: params, input bytes, process count."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        h.update(file_digest(f).encode())
    h.update(str(world_size).encode())
    return h.hexdigest()


def load_state(folder: str | Path, key: str) -> ResumeState:
    info = Path(folder) / LAST / "state.json"
    if info.exists():
        saved = read_json(info)
        if saved.get("key") == key and not saved.get("finished"):
            return ResumeState(**{**saved, "folder": str(folder)})
    shutil.rmtree(folder, ignore_errors=True)  # stale or finished: start over, clean
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
