"""Length-grouped batch order and per-batch padding of unpadded token ids."""

from __future__ import annotations

import numpy as np
import torch

from bertpipe.artifacts import TokenizedSplit

PAD_MULTIPLE = 8  # tensor cores and bf16 kernels like lengths that are multiples of 8


def length_grouped_batches(lengths: np.ndarray, batch_size: int, group_batches: int, seed: int) -> list[np.ndarray]:
    """Row indices per batch: shuffled, then sorted by length within groups of batches.

    Reviews of similar length share a batch, so little compute goes to padding, while the
    shuffle of rows and of the batches themselves keeps the order random across groups.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    group = batch_size * group_batches
    batches = []
    for start in range(0, len(perm), group):
        chunk = perm[start : start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for inference: rows sorted by length (longest first), so padding is minimal."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shard(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """This rank's share of the batches; every rank gets the same number of batches."""
    usable = len(batches) - len(batches) % world if len(batches) >= world else len(batches)
    return batches[rank:usable:world]


def collate(split: TokenizedSplit, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the rows to the batch's longest, rounded up to a multiple of PAD_MULTIPLE."""
    seqs = [split.row(int(i)) for i in rows]
    longest = max(len(s) for s in seqs)
    width = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(split.labels[rows].astype(np.int64)),
    }
