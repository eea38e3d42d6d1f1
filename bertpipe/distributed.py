"""PyTorch DDP under torchrun, and plain single-process runs with the same calls."""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs)."""
    if is_distributed() and not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank() -> int:
    return tdist.get_rank() if tdist.is_initialized() else 0


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    if not tdist.is_initialized():
        return model
    local = [int(os.environ.get("LOCAL_RANK", "0"))] if torch.cuda.is_available() else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=local)


def barrier() -> None:
    if tdist.is_initialized():
        tdist.barrier()


def shutdown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()
