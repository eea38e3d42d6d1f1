"""Running a classifier over token ids or raw texts, and the checkpoint folder it lives in."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertpipe.artifacts import TokenizedSplit
from bertpipe.batching import collate, sorted_batches
from bertpipe.contracts import CheckpointMeta
from bertpipe.modeling import autocast
from bertpipe.tokens import Encoder

# Beside the Hugging Face files, a checkpoint keeps how its inputs were tokenized.
PIPELINE_META = CheckpointMeta.FILE


@torch.no_grad()
def predict_probs(model, split: TokenizedSplit, batch_size: int, device: torch.device,
                  dtype: torch.dtype | None, pad_id: int) -> np.ndarray:
    """Class probabilities (N, C) in the split's row order."""
    model.eval()
    probs = np.zeros((len(split), model.config.num_labels), dtype=np.float64)
    for rows in sorted_batches(split.lengths, batch_size):
        batch = collate(split, rows, pad_id)
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
        probs[rows] = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    return probs


def save_checkpoint(model, tokenizer_dir: str | Path, meta: CheckpointMeta, out: Path) -> None:
    """A Hugging Face model folder: safetensors weights, config with label maps, tokenizer."""
    model.save_pretrained(out, safe_serialization=True)
    for f in Path(tokenizer_dir).iterdir():
        shutil.copy2(f, out / f.name)
    meta.write(out)


@dataclass
class Classifier:
    """A checkpoint loaded for prediction on raw texts."""

    model: torch.nn.Module
    encoder: Encoder  # the tokenizer, with the truncation the model was trained with
    meta: CheckpointMeta
    device: torch.device

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | None = None) -> Classifier:
        device = device or torch.device("cpu")
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
        model = model.to(device).eval()
        meta = CheckpointMeta.read(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        encoder = Encoder(tokenizer, meta.max_length, meta.truncation, meta.head_tokens)
        return cls(model, encoder, meta, device)

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def predict_proba(self, texts: list[str], batch_size: int = 32, dtype: torch.dtype | None = None) -> np.ndarray:
        """(N, C) in this model's class order; dtype: autocast as evaluate does (None: fp32)."""
        rows = self.encoder.encode(texts, self.meta.norm()).rows()  # long texts cut, then normalised
        split = TokenizedSplit.from_rows(rows, np.zeros(len(rows), dtype=np.int64))
        return predict_probs(self.model, split, batch_size, self.device, dtype, self.meta.pad_token_id)

    def predict_frame(self, texts: list[str]) -> pd.DataFrame:
        """One row per text: the predicted label and a prob_<label> column per class."""
        probs = self.predict_proba(texts)
        names = self.label_names
        out = pd.DataFrame({"label": [names[i] for i in probs.argmax(axis=1)]})
        for i, name in enumerate(names):
            out[f"prob_{name}"] = probs[:, i]
        return out
