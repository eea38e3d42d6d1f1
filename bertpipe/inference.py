"""Running a classifier over token ids or raw texts, and the checkpoint folder it lives in."""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertpipe.artifacts import TokenizedSplit
from bertpipe.batching import collate, sorted_batches
from bertpipe.calibration import softmax, temperature_of
from bertpipe.contracts import CheckpointMeta
from bertpipe.modeling import Precision, autocast, autocast_dtype
from bertpipe.tokens import Encoder

# Beside the Hugging Face files, a checkpoint keeps how its inputs were tokenized.
PIPELINE_META = CheckpointMeta.FILE
# A checkpoint's config.json attribute: what its head reads (pooling_of). save_pretrained and
# from_pretrained keep it as they keep the calibration temperature; plain transformers does not
# read it, so a `mean` checkpoint must be loaded with this module (Classifier, predict, serve).
POOLING_ATTR = "bertpipe_pooling"
PREDICT_BATCH_SIZE = 32  # texts per forward pass on raw texts (bench/predict_bench.py)
BATCHES_PER_WORKER = 4  # the fewest batches each CPU worker gets, so that they finish together


def predict_probs(model, split: TokenizedSplit, batch_size: int, device: torch.device,
                  dtype: torch.dtype | None, pad_id: int, workers: int = 1,
                  pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """Class probabilities (N, C) in the split's row order: softmax(logits / T), T the model's
    calibration temperature (bertpipe.calibration; 1 for a checkpoint without one). Classifier,
    so predict, the served model and the promotion gate, score here; train's validation (T = 1)
    and evaluate (T and T = 1, to report both) take predict_logits and apply it themselves."""
    logits = predict_logits(model, split, batch_size, device, dtype, pad_id, workers, pool)
    return softmax(logits, temperature_of(model.config))


def predict_logits(model, split: TokenizedSplit, batch_size: int, device: torch.device,
                   dtype: torch.dtype | None, pad_id: int, workers: int = 1,
                   pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """Logits (N, C) in float64, in the split's row order.

    workers > 1 (CPU): that many threads score whole batches, each with one intra-op thread,
    taking the next batch from a shared queue (longest first) when done with the last. Ops split
    over threads wait for each other at every step, and on a busy machine one descheduled thread
    stalls them all; whole batches per thread do not wait (bench/predict_bench.py --options).
    The queue and worker_batch_size keep the threads equally busy on small calls too. pool: the
    threads to use (scoring_pool; a Classifier makes its own once), else made for this call.
    """
    model.eval()
    out = np.zeros((len(split), model.config.num_labels), dtype=np.float64)
    batches = sorted_batches(split.lengths, worker_batch_size(len(split), batch_size, workers))

    def score(rows: np.ndarray) -> None:
        batch = collate(split, rows, pad_id)
        logits = forward_logits(model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        out[rows] = logits.double().cpu().numpy()

    # One autocast region per worker: autocast caches the bf16 copies of the weights within a
    # region, so they are cast once rather than once per batch.
    run_batches(batches, score, workers, lambda: _inference_mode(device, dtype), pool)
    return out


def pooling_of(config) -> str:
    """What the model's head reads: `cls` (the model class's own head, a checkpoint without the
    attribute) or `mean` (its linear `classifier` on the mean of the token vectors: train.encoder
    frozen, fitted on the pretrained encoder as it is)."""
    return str(getattr(config, POOLING_ATTR, "cls"))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H) in fp32: the mean of the real (unpadded) tokens' vectors."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)  # (B, T, 1)
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def mean_vectors(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder's mean-pooled token vectors (B, H), what a `mean` head reads."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    return mean_pool(hidden, attention_mask)


def forward_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Logits (B, C): the model's own head, or its classifier on mean-pooled vectors (pooling_of)."""
    if pooling_of(model.config) == "mean":
        head = model.classifier
        return head(mean_vectors(model, input_ids, attention_mask).to(head.weight.dtype))
    return model(input_ids=input_ids, attention_mask=attention_mask).logits


def predict_vectors(model, split: TokenizedSplit, batch_size: int, device: torch.device,
                    dtype: torch.dtype | None, pad_id: int) -> np.ndarray:
    """Mean-pooled encoder vectors (N, H) in float64, in the split's row order (train.encoder frozen)."""
    model.eval()
    out = np.zeros((len(split), model.config.hidden_size), dtype=np.float64)

    def score(rows: np.ndarray) -> None:
        batch = collate(split, rows, pad_id)
        vectors = mean_vectors(model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        out[rows] = vectors.double().cpu().numpy()

    run_batches(sorted_batches(split.lengths, batch_size), score, 1, lambda: _inference_mode(device, dtype))
    return out


@contextmanager
def _inference_mode(device: torch.device, dtype: torch.dtype | None):
    with torch.no_grad(), autocast(device, dtype):
        yield


def run_batches(batches: list[np.ndarray], score: Callable[[np.ndarray], None], workers: int,
                region: Callable[[], AbstractContextManager] = nullcontext,
                pool: ThreadPoolExecutor | None = None) -> None:
    """score(rows) for every batch, in list order, from `workers` threads with one intra-op thread each.

    Each thread takes the next batch off a shared queue when done with its last, so none sits idle
    while another has two batches left (batches longest first: the long ones start first).
    region() is entered once per thread around all of its batches (grad mode and autocast are
    per thread). A worker's error stops the others after their current batch and reaches the caller.
    The threads are pool's (see scoring_pool), else a pool made for this call (benches); calls from
    many threads at once share a pool's threads and settings, and change no setting of their own.
    """
    pending: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for rows in batches:
        pending.put(rows)
    failed = threading.Event()  # one worker's error stops the others after their current batch

    def work() -> None:
        with region():
            while not failed.is_set():
                try:
                    rows = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    score(rows)
                except BaseException:
                    failed.set()
                    raise

    workers = min(workers, len(batches))
    if workers <= 1:
        work()
        return
    own = pool is None
    pool = scoring_pool(workers) if own else pool
    try:
        for done in [pool.submit(work) for _ in range(workers)]:
            done.result()  # raise what a worker raised
    finally:
        if own:
            pool.shutdown()


def scoring_pool(workers: int) -> ThreadPoolExecutor:
    """`workers` threads, started now, each with one intra-op thread for as long as it lives.

    torch's intra-op thread count is the calling thread's (OpenMP's per-thread setting); a new
    thread takes the process default when it first runs an op. So the threads start and take
    their setting while the default is 1, and this thread's is put back before returning: no
    setting changes when they score, whichever thread calls.
    """
    started = threading.Barrier(workers + 1)  # every thread up before the default is put back
    with intra_op_threads(1):
        pool = ThreadPoolExecutor(workers, thread_name_prefix="bertpipe-scoring", initializer=_take_threads)
        for _ in range(workers):
            pool.submit(started.wait)
        started.wait()
    return pool


def _take_threads() -> None:
    torch.get_num_threads()  # a new thread's first torch call fixes its intra-op threads


def worker_batch_size(rows: int, batch_size: int, workers: int) -> int:
    """batch_size, or smaller when a call is too small to give every worker BATCHES_PER_WORKER.

    With 100 texts, two workers and batches of 32, one worker would score 64 texts while the
    other scored 36 and then waited; batches of 13 share the work out evenly.
    """
    if workers <= 1:
        return batch_size
    return max(1, min(batch_size, -(-rows // (workers * BATCHES_PER_WORKER))))


@contextmanager
def intra_op_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_checkpoint(model, tokenizer_dir: str | Path, meta: CheckpointMeta, out: Path) -> None:
    """A Hugging Face model folder: safetensors weights, config with label maps, tokenizer."""
    model.save_pretrained(out, safe_serialization=True)
    for f in Path(tokenizer_dir).iterdir():
        shutil.copy2(f, out / f.name)
    meta.write(out)


@dataclass
class Classifier:
    """A checkpoint loaded for prediction on raw texts.

    The fast path (bench/predict_bench.py measures it against transformers.pipeline): texts
    tokenized in one batch call, batches of similar length (longest first) padded to their own
    longest, on the CPU one worker thread per core scoring whole batches off a shared queue
    (run_batches), SDPA attention, and
    bf16 autocast where the hardware computes bf16 (CUDA, CPUs with AMX or AVX512-BF16);
    precision="fp32" turns the autocast off.

    The worker threads and their one intra-op thread each are fixed when the classifier is made
    (scoring_pool): concurrent predict_proba calls (the scoring server's request threads) share
    them and score with the same settings, and no call changes torch's thread settings.
    """

    model: torch.nn.Module
    encoder: Encoder  # the tokenizer, with the truncation the model was trained with
    meta: CheckpointMeta
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    # CPU threads scoring whole batches; None = torch.get_num_threads() when made (1 on a GPU).
    # Set to 1 later (promote), a call scores in the calling thread.
    workers: int | None = None
    pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        if self.device.type == "cpu" and self.workers > 1:
            self.pool = scoring_pool(self.workers)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | None = None,
             precision: Precision = "auto") -> Classifier:
        device = device or torch.device("cpu")
        model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="sdpa",
                                                                   trust_remote_code=False)
        meta = CheckpointMeta.read(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        encoder = Encoder(tokenizer, meta.max_length, meta.truncation, meta.head_tokens)
        return cls(model.to(device).eval(), encoder, meta, device, autocast_dtype(device, precision))

    @property
    def temperature(self) -> float:
        """The checkpoint's calibration temperature, which predict_proba applies (1: none)."""
        return temperature_of(self.model.config)

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def predict_proba(self, texts: list[str], batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
        """(N, C) in this model's class order."""
        rows = self.encoder.encode(texts, self.meta.norm()).rows()  # long texts cut, then normalised
        split = TokenizedSplit.from_rows(rows, np.zeros(len(rows), dtype=np.int64))
        workers = self.workers if self.pool is not None else 1
        return predict_probs(self.model, split, batch_size, self.device, self.dtype, self.meta.pad_token_id,
                             workers, self.pool)

    def predict_frame(self, texts: list[str]) -> pd.DataFrame:
        """One row per text: the predicted label and a prob_<label> column per class."""
        probs = self.predict_proba(texts)
        names = self.label_names
        out = pd.DataFrame({"label": [names[i] for i in probs.argmax(axis=1)]})
        for i, name in enumerate(names):
            out[f"prob_{name}"] = probs[:, i]
        return out
