"""A tiny BERT for smoke runs of the pipeline (the tests, tools/ui_check.py): 2 layers of width 32,
randomly initialised, with the real MiniLM tokenizer of the embedded model. No pytest here, so the
browser check can use it with the `ui` extra alone."""

from __future__ import annotations

from pathlib import Path

from bertpipe.embedded import embedded_model_dir


def make_tiny_bert(folder: Path) -> Path:
    """A 2-layer BERT of width 32, randomly initialised, with the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6")).save_pretrained(folder)
    return folder
