"""Tokenize: the model's fast tokenizer, batched and in chunks; unpadded ids saved as tensors.

In:  <data>/{train,val,test}.parquet and <data>/meta.json (class names, normalisation) from split;
     params `tokenize`.
Out: <out>/{train,val,test}.safetensors (input_ids int32 flat, offsets int64, labels int64),
     <out>/tokenizer/ (the tokenizer, saved for the checkpoint), <out>/meta.json (a TokenizedMeta:
     model, tokenizer, truncation, pad id, class names; read by train), <metrics> (length statistics per split).
Each chunk of `tokenize.chunk_rows` texts is one call to the Rust tokenizer, which encodes it
on all cores; truncation keeps the head, the tail, or both (`tokenize.truncation`). Ids are
written as they come, so memory holds one chunk, not the split.

Run: python -m stages.tokenize --data data/split --out data/tokenized --metrics metrics/tokenize.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm
from transformers import AutoTokenizer

from bertpipe.artifacts import atomic_dir, write_json
from bertpipe.config import TokenizeParams
from bertpipe.contracts import DatasetMeta, TokenizedMeta
from bertpipe.errors import ParamsError
from bertpipe.logs import run_cli
from bertpipe.modeling import pretrained_kwargs, resolve_model
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.tokens import Encoder, TokenFileWriter, length_stats

log = logging.getLogger("tokenize")
SPLITS = ("train", "val", "test")
TOKENIZER_DIR = "tokenizer"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="split output folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", required=True, help="JSON file for length statistics")
    return p.parse_args(argv)


def load_tokenizer(params: TokenizeParams):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(params.model),
                                              **pretrained_kwargs(params.model, params.model_revision))
    if not tokenizer.is_fast:
        raise ParamsError(f"tokenize.model={params.model!r}: has no fast tokenizer; pick a model with tokenizer.json")
    limit = tokenizer.model_max_length
    if limit and params.max_length > limit:
        raise ParamsError(f"tokenize.max_length={params.max_length} in params: above the model's limit "
                          f"of {limit} tokens; set it to {limit} or less")
    return tokenizer


def tokenize_file(path: str, encoder: Encoder, out: Path, chunk_rows: int) -> np.ndarray:
    """Tokenize one parquet file chunk by chunk into out; only one chunk of text and ids is in
    memory at a time. Returns the content length of each row before truncation."""
    file = pq.ParquetFile(path)
    writer = TokenFileWriter(out)
    lengths = []
    with tqdm(total=file.metadata.num_rows, desc=f"tokenize {path}", unit="rows", mininterval=2) as bar:
        for batch in file.iter_batches(batch_size=chunk_rows, columns=["text", "label"]):
            chunk = encoder.encode(batch.column("text").to_pylist())
            writer.add(chunk, batch.column("label").to_numpy())
            lengths.append(chunk.content_lengths)
            bar.update(len(chunk.lengths))
    writer.close()
    return np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_section(TokenizeParams, "tokenize", args.params)
    dataset = DatasetMeta.read(args.data)
    tokenizer = load_tokenizer(params)
    encoder = Encoder(tokenizer, params.max_length, params.truncation, params.head_tokens)

    stats = {}
    with atomic_dir(args.out) as out:
        for name in SPLITS:
            lengths = tokenize_file(f"{args.data}/{name}.parquet", encoder, out / f"{name}.safetensors",
                                    params.chunk_rows)
            stats[name] = length_stats(lengths, encoder.budget)
        tokenizer.save_pretrained(out / TOKENIZER_DIR)
        TokenizedMeta(model=params.model, model_revision=params.model_revision, tokenizer=TOKENIZER_DIR,
                      max_length=params.max_length, truncation=params.truncation, head_tokens=params.head_tokens,
                      pad_token_id=tokenizer.pad_token_id, labels=dataset.labels,
                      normalization=dataset.normalization).write(out)
    write_json(stats, args.metrics)
    log.info("token lengths: %s", stats)


if __name__ == "__main__":
    run_cli(main)
