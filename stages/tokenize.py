"""Tokenize: the model's fast tokenizer, batched and in chunks; unpadded ids saved as tensors.

In:  <data>/{train,val,test}.parquet from split; params `tokenize`.
Out: <out>/{train,val,test}.safetensors (input_ids int32 flat, offsets int64, labels int64),
     <out>/tokenizer/ (the tokenizer, saved for the checkpoint), <out>/meta.json (model name
     and truncation settings, read by train), <metrics> (length statistics per split).

Run: python -m stages.tokenize --data data/split --out data/tokenized --metrics metrics/tokenize.json
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm
from transformers import AutoTokenizer

from bertpipe.artifacts import TokenizedSplit, atomic_dir, write_json, write_tokenized
from bertpipe.config import TokenizeParams
from bertpipe.logs import setup_logging
from bertpipe.modeling import resolve_model
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.tokens import SpecialLayout, encode, length_stats

log = logging.getLogger("tokenize")
SPLITS = ("train", "val", "test")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="split output folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for length statistics")
    return p.parse_args(argv)


def load_tokenizer(params: TokenizeParams):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(params.model))
    if not tokenizer.is_fast:
        raise ValueError(f"tokenize.model={params.model!r}: has no fast tokenizer; pick a model with tokenizer.json")
    limit = tokenizer.model_max_length
    if limit and params.max_length > limit:
        raise ValueError(f"tokenize.max_length={params.max_length} in params: above the model's limit "
                         f"of {limit} tokens; set it to {limit} or less")
    return tokenizer


def tokenize_file(path: str, tokenizer, layout: SpecialLayout, p: TokenizeParams) -> tuple[TokenizedSplit, np.ndarray]:
    """Tokenize one parquet file chunk by chunk, so only one chunk of text is in memory."""
    file = pq.ParquetFile(path)
    rows, lengths, labels = [], [], []
    with tqdm(total=file.metadata.num_rows, desc=f"tokenize {path}", unit="rows", mininterval=2) as bar:
        for batch in file.iter_batches(batch_size=p.chunk_rows, columns=["text", "label"]):
            ids, content_lengths = encode(tokenizer, batch.column("text").to_pylist(), layout,
                                          p.max_length, p.truncation, p.head_tokens)
            rows.extend(ids)
            lengths.append(content_lengths)
            labels.append(batch.column("label").to_numpy().astype(np.int64))
            bar.update(len(ids))
    all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return TokenizedSplit.from_rows(rows, all_labels), all_lengths


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(TokenizeParams, "tokenize", args.params)
    tokenizer = load_tokenizer(params)
    layout = SpecialLayout.probe(tokenizer)
    budget = params.max_length - len(layout.prefix) - len(layout.suffix)

    stats = {}
    with atomic_dir(args.out) as out:
        for name in SPLITS:
            split, lengths = tokenize_file(f"{args.data}/{name}.parquet", tokenizer, layout, params)
            write_tokenized(split, out / f"{name}.safetensors")
            stats[name] = length_stats(lengths, budget)
        tokenizer.save_pretrained(out / "tokenizer")
        write_json({"model": params.model, "max_length": params.max_length, "truncation": params.truncation,
                    "head_tokens": params.head_tokens, "pad_token_id": tokenizer.pad_token_id}, out / "meta.json")
    write_json(stats, args.metrics)
    log.info("token lengths: %s", stats)


if __name__ == "__main__":
    setup_logging()
    main()
