"""Train: fine-tune a pretrained encoder; keep the best checkpoint by the validation metric.

train.encoder frozen or both (auto: frozen on a rare class of few rows) first fits a linear head on the
pretrained encoder's mean-pooled vectors, a logistic regression run to convergence: the candidate
at step 0, kept unless a fine-tuned checkpoint beats it on validation (frozen: the only one).

In:  <data>/{train,val}.safetensors, <data>/tokenizer/, <data>/meta.json (TokenizedMeta: model,
     truncation, class names, normalisation) from tokenize; <split>/ (texts and data version,
     recorded as the model's lineage: bertpipe.lineage); params `train`.
Out: <out>/ a Hugging Face model folder (safetensors, config with id2label and the calibration
     temperature fitted on validation: bertpipe.calibration, train.calibrate; tokenizer);
     <run-file> (the MLflow run id, for evaluate); <metrics> (headline numbers, a DVC metric);
     <details> (the full summary); <curve> (train loss and learning rate every
     train.log_every_steps, the validation metric at each evaluation; a DVC plot);
     <state>/ the resumable checkpoint (DVC `persist: true`): a killed run started again
     continues from its last save, in the same MLflow run.

Run: python -m stages.train --data data/tokenized --split data/split \
       --out models/best --state models/resume --run-file models/run.json \
       --metrics metrics/train.json --details metrics/details/train.json --curve metrics/train_curve.csv
Several processes: torchrun --nproc-per-node N -m stages.train ... (DDP; rank 0 logs and saves).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm
from transformers import AutoConfig, get_linear_schedule_with_warmup

from bertpipe import distributed as dist
from bertpipe.artifacts import atomic_dir, atomic_path, read_tokenized, write_json
from bertpipe.batching import collate, length_grouped_batches, shard
from bertpipe.calibration import T_BOUNDS, fit_temperature, nll, set_temperature, softmax
from bertpipe.config import TrainParams
from bertpipe.contracts import CheckpointMeta, TokenizedMeta
from bertpipe.errors import ParamsError
from bertpipe.inference import (
    POOLING_ATTR,
    Classifier,
    pooling_of,
    predict_logits,
    predict_vectors,
    save_checkpoint,
)
from bertpipe.lineage import log_lineage, split_digests
from bertpipe.logs import run_cli
from bertpipe.metrics import is_better, selection_value, summary_metrics
from bertpipe.modeling import (
    autocast,
    autocast_dtype,
    frozen_head_fits,
    load_for_fine_tuning,
    pretrained_kwargs,
    register_cpu_attention,
    resolve_model,
)
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.resume import ResumeState, load_state, mark_finished, resume_key, save_state
from bertpipe.tracking import (
    log_classifier,
    log_dataset,
    log_metrics,
    log_params,
    recipe_params,
    recipe_tags,
    run_tags,
    runs_link,
    start_run,
)

log = logging.getLogger("train")
CURVE_COLUMNS = ["step", "train_loss", "learning_rate", "val_metric"]
# train.class_weights / metric `auto`: imbalanced when the largest class has more than this
# many times the rows of the smallest (the default IMDB rows, 2,003 / 1,997, are not).
IMBALANCE_RATIO = 1.5
EVALUATIONS_PER_RUN = 4  # train.eval_every_steps `auto`: the default 500 steps are evaluated every 125
# train.encoder `auto`: frozen when the rows are imbalanced and the smallest class has fewer
# training rows. Fine-tuned on a few dozen rare rows, the model separates them and predicts the
# majority class on new ones; and the validation split holds too few of them to choose between
# the two (`both`) by (bench/README.md, "Small, imbalanced data").
FEW_ROWS = 100
# The frozen head's logistic regression (lbfgs) runs to a tolerance far below scikit-learn's 1e-4,
# so that its weights are the optimum's, not where a loose stop happened to land.
FROZEN_TOL, FROZEN_MAX_ITER = 1e-8, 10_000
# Beside the best checkpoint in the resumable state: the validation logits it was chosen on.
VAL_LOGITS = "val_logits.safetensors"
EXAMPLE_TEXTS = ["A moving, beautifully acted film; I loved every minute.",
                 "Dull plot, wooden acting, and far too long. Skip it."]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE)
    p.add_argument("--data", required=True, help="tokenize output folder")
    p.add_argument("--split", required=True, help="split output folder (texts: the lineage logged with the model)")
    p.add_argument("--out", required=True, help="best checkpoint folder")
    p.add_argument("--state", required=True, help="resumable checkpoint folder (persistent)")
    p.add_argument("--run-file", required=True, help="JSON file naming the MLflow run")
    p.add_argument("--metrics", required=True,
                   help="JSON file of the headline numbers (best validation metric, throughput)")
    p.add_argument("--details", required=True, help="JSON file of the full training summary")
    p.add_argument("--curve", required=True, help="CSV file of loss and validation metric per step")
    return p.parse_args(argv)


def build_model(name: str, revision: str, labels: list[str], device: torch.device):
    # On a CPU, eager attention kept in bf16 (bertpipe.modeling.bf16_eager_attention): SDPA and
    # transformers' eager both run softmax and dropout in fp32 there (bench/train_bench.py).
    attention = "sdpa" if device.type == "cuda" else register_cpu_attention()
    return load_for_fine_tuning(name, len(labels), attn_implementation=attention,
                                id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                                **pretrained_kwargs(name, revision)).to(device)


def build_optimizer(model, p: TrainParams, device: torch.device, total_steps: int):
    # No weight decay on biases and LayerNorm weights, as in the BERT recipe.
    decay = [w for w in model.parameters() if w.ndim >= 2]
    no_decay = [w for w in model.parameters() if w.ndim < 2]
    groups = [{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused kernels (CPU and CUDA), as the Trainer's default adamw_torch_fused.
    optimizer = torch.optim.AdamW(groups, lr=p.learning_rate, fused=True)
    warmup = int(p.warmup_fraction * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> torch.Tensor | None:
    """Loss weight per class: rows / (classes x rows of the class) when balanced, else None."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


def total_steps_for(steps_per_epoch: int, p: TrainParams) -> int:
    # The floor repeats epochs: a few hundred rows otherwise make too few steps to learn from.
    return max(math.ceil(p.epochs * steps_per_epoch), p.min_steps)


def is_imbalanced(labels: np.ndarray, num_classes: int) -> bool:
    """The largest class has more than IMBALANCE_RATIO times the rows of the smallest."""
    counts = np.bincount(labels, minlength=num_classes)
    return bool(counts.max() > IMBALANCE_RATIO * counts.min())


def resolve_auto(p: TrainParams, labels: np.ndarray, num_classes: int, total_steps: int,
                 linear_head: bool) -> TrainParams:
    """The params with each `auto` made concrete from the training labels and the step count:
    imbalanced rows get balanced class weights and selection by macro F1 (plain cross-entropy
    on a rare class settles on never predicting it, and accuracy then rewards that); the
    evaluations are spread over the run, so a short run is not judged at its last step only; a
    rare class of few rows gets the frozen-encoder head instead of fine-tuning, when the model's head is linear."""
    imbalanced = is_imbalanced(labels, num_classes)
    few = imbalanced and int(np.bincount(labels, minlength=num_classes).min()) < FEW_ROWS
    auto = {"class_weights": "balanced" if imbalanced else "none", "metric": "f1_macro" if imbalanced else "accuracy",
            "eval_every_steps": max(1, math.ceil(total_steps / EVALUATIONS_PER_RUN)),
            "encoder": "frozen" if few and linear_head else "finetune"}
    return p.model_copy(update={k: v for k, v in auto.items() if getattr(p, k) == "auto"})


def epoch_batches(train, p: TrainParams, epoch: int) -> list:
    # A new seeded order each epoch; every rank computes the same order and takes its share.
    order = length_grouped_batches(train.lengths, p.batch_size, p.group_batches, p.seed + epoch)
    return shard(order, dist.rank(), dist.world_size())


class Meter:
    """Loss and throughput since the last evaluation, and in total (evaluations excluded)."""

    def __init__(self) -> None:
        self.total_samples, self.total_seconds = 0, 0.0
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.samples, self.tokens, self.padded = 0.0, 0, 0, 0, 0
        self.t0 = time.perf_counter()

    def add(self, loss: float, mask: torch.Tensor) -> None:
        self.loss += loss
        self.samples += mask.shape[0]
        self.tokens += int(mask.sum())
        self.padded += mask.numel()

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        world = dist.world_size()
        return {"samples_per_s": self.samples * world / elapsed, "tokens_per_s": self.tokens * world / elapsed,
                "real_token_share": self.tokens / max(self.padded, 1)}

    def close_window(self) -> dict[str, float]:
        rates = self.rates()
        self.total_samples += self.samples * dist.world_size()
        self.total_seconds += time.perf_counter() - self.t0
        return rates


def optimisation_step(model, group: list[np.ndarray], train, meta: TokenizedMeta, loss_fn, optimizer, scheduler,
                      p: TrainParams, device: torch.device, dtype, meter: Meter) -> float:
    """One optimiser step over a group of grad_accum_steps batches; returns their summed loss.
    bench/train_bench.py times this same function against the Trainer and the tutorial loop."""
    step_loss = 0.0
    for rows in group:
        batch = {k: v.to(device) for k, v in collate(train, rows, meta.pad_token_id).items()}  # (B, T)
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = loss_fn(logits, batch["labels"]) / p.grad_accum_steps
        loss.backward()
        step_loss += loss.item()
        meter.add(loss.item(), batch["attention_mask"])
    torch.nn.utils.clip_grad_norm_(model.parameters(), p.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    p = load_section(TrainParams, "train", args.params)
    dist.init()
    device = dist.device()
    dtype = autocast_dtype(device, p.precision)
    meta = TokenizedMeta.read(args.data)
    train, val = read_tokenized(f"{args.data}/train.safetensors"), read_tokenized(f"{args.data}/val.safetensors")

    steps_per_epoch = max(1, len(epoch_batches(train, p, 0)) // p.grad_accum_steps)
    total_steps = total_steps_for(steps_per_epoch, p)
    linear_head = p.encoder == "finetune" or frozen_head_fits(meta.model, meta.model_revision)
    if p.encoder in ("frozen", "both") and not linear_head:
        raise ParamsError(f"train.encoder={p.encoder} in params.yaml: {meta.model}'s classification head is not one "
                          "linear layer, so it cannot read mean-pooled vectors; set train.encoder to finetune or auto")
    p = resolve_auto(p, train.labels, len(meta.labels), total_steps, linear_head)  # logged, resumed, used as resolved
    total_steps = 0 if p.encoder == "frozen" else total_steps
    inputs = [f"{args.data}/{n}" for n in ("train.safetensors", "val.safetensors", "meta.json")]
    key = resume_key(p.model_dump(), inputs, dist.world_size(), __file__, resolve_model(meta.model), device, dtype)
    state = load_state(args.state, key)

    run = start_run(p.mlflow_experiment, state.run_id) if dist.is_main() else None  # fails fast if unreachable

    torch.manual_seed(p.seed)  # build the model after seeding so the seed controls the new head's init
    model = build_model(meta.model, meta.model_revision, meta.labels, device)
    optimizer, scheduler = build_optimizer(model, p, device, total_steps)
    weights = class_weights(train.labels, len(meta.labels), p.class_weights)
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    if state.step:
        state.restore(model, optimizer, scheduler)
        log.info("resuming at step %d of %d from %s", state.step, total_steps, args.state)
    elif run:
        state.run_id = run.info.run_id
        log_run_inputs(args, p, meta, train, val, total_steps, device, dtype)
    log.info("training %s on %s (%s), %d steps of %d x %d x %d reviews, validation %s every %d steps%s",
             meta.model, device, dtype or torch.float32, total_steps, p.batch_size, dist.world_size(),
             p.grad_accum_steps, p.metric, p.eval_every_steps,
             "" if weights is None else f", class weights {[round(w, 3) for w in weights.tolist()]}")
    if p.encoder in ("frozen", "both") and state.step == 0:
        keep_frozen_candidate(model, train, val, p, device, dtype, meta, state, args, run)
        if total_steps == 0 and dist.is_main():  # frozen: nothing to train, the state marks it done
            save_state(args.state, model, optimizer, scheduler, state)

    ddp_model = dist.wrap(model)
    model.train()
    meter = Meter()
    meter.loss, meter.steps = state.window_loss, state.window_steps
    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", disable=not dist.is_main())
    while state.step < total_steps and not state.stopped:
        batches = epoch_batches(train, p, state.epoch)
        usable = len(batches) - len(batches) % p.grad_accum_steps
        for start in range(state.batch_pos, usable, p.grad_accum_steps):
            step_loss = optimisation_step(ddp_model, batches[start : start + p.grad_accum_steps], train, meta,
                                          loss_fn, optimizer, scheduler, p, device, dtype, meter)
            state.step, state.batch_pos = state.step + 1, start + p.grad_accum_steps
            meter.steps += 1
            state.log_loss, state.log_steps = state.log_loss + step_loss, state.log_steps + 1
            bar.update(1)
            bar.set_postfix(loss=f"{meter.loss / meter.steps:.4f}", samples_s=f"{meter.rates()['samples_per_s']:.1f}")

            last = state.step == total_steps
            evaluating = state.step % p.eval_every_steps == 0 or last
            if state.step % p.log_every_steps == 0 or evaluating:
                log_train_point(state, scheduler.get_last_lr()[0], run)
            if evaluating:
                evaluate_and_keep_best(model, val, p, device, dtype, meta, state, meter, args, run)
            if state.step % p.save_every_steps == 0 or last or state.stopped:
                state.window_loss, state.window_steps = meter.loss, meter.steps
                if dist.is_main():
                    save_state(args.state, model, optimizer, scheduler, state)
                dist.barrier()
            if last or state.stopped:
                break
        else:
            state.epoch, state.batch_pos = state.epoch + 1, 0
    bar.close()

    if dist.is_main():
        finish(args, state, run, total_steps, meter, p, val.labels)
    dist.barrier()
    dist.shutdown()


def fit_frozen_head(model, train, p: TrainParams, device, dtype, meta: TokenizedMeta) -> None:
    """Turn model into a frozen-encoder classifier: its linear `classifier` reads the encoder's
    mean-pooled vectors (config POOLING_ATTR) and is set to an L2 logistic regression fitted to
    convergence on the training rows' vectors, class-weighted as train.class_weights."""
    x = predict_vectors(model, train, p.eval_batch_size, device, dtype, meta.pad_token_id)  # (N, H)
    fit = LogisticRegression(tol=FROZEN_TOL, max_iter=FROZEN_MAX_ITER,
                             class_weight="balanced" if p.class_weights == "balanced" else None).fit(x, train.labels)
    coef, intercept = fit.coef_, fit.intercept_
    if len(fit.classes_) == 2:  # one logit difference: half of it to each class
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    num_classes = model.config.num_labels
    weight, bias = np.zeros((num_classes, x.shape[1])), np.full(num_classes, -30.0)  # a class no row has: never
    weight[fit.classes_], bias[fit.classes_] = coef, intercept
    head = model.classifier
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight).to(head.weight))
        head.bias.copy_(torch.from_numpy(bias).to(head.bias))
    setattr(model.config, POOLING_ATTR, "mean")


def keep_frozen_candidate(model, train, val, p: TrainParams, device, dtype, meta: TokenizedMeta,
                          state: ResumeState, args, run) -> None:
    """Step 0: the frozen-encoder head, scored on validation and kept as the best checkpoint so far;
    then model is put back as it was (its new head, pooled as its class pools) for fine-tuning."""
    t0 = time.perf_counter()
    new_head = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    fit_frozen_head(model, train, p, device, dtype, meta)
    logits = predict_logits(model, val, p.eval_batch_size, device, dtype, meta.pad_token_id)  # (N, C)
    metrics = summary_metrics(val.labels, softmax(logits))
    state.best_value, state.best_step, state.best_metrics = selection_value(p.metric, metrics), 0, metrics
    state.history.append({"step": 0, "val_metric": state.best_value})
    if run:
        log_metrics("val", metrics, step=0)
    if dist.is_main():
        save_best(model, logits, args, meta)
    model.classifier.load_state_dict(new_head)
    delattr(model.config, POOLING_ATTR)
    model.train()
    log.info("step 0: frozen encoder, linear head on mean-pooled vectors of %d rows (%.0f s): val %s=%.4f",
             len(train), time.perf_counter() - t0, p.metric, state.best_value)


def log_run_inputs(args, p: TrainParams, meta: TokenizedMeta, train, val, total_steps: int, device,
                   dtype) -> None:
    log_params({**p.model_dump(), "model": meta.model, "model_revision": meta.model_revision,
                "max_length": meta.max_length, "truncation": meta.truncation, "head_tokens": meta.head_tokens,
                "train_rows": len(train), "val_rows": len(val), "world_size": dist.world_size(),
                "precision_dtype": str(dtype or torch.float32), "total_steps": total_steps})
    # The recipe tag groups this run with the same recipe's runs at other seeds (bertpipe recipes).
    recipe = recipe_params(p.model_dump(), {"model": meta.model, "model_revision": meta.model_revision,
                                            **meta.encoding()}, split_digests(args.split), dist.world_size())
    mlflow.set_tags({**run_tags(str(device)), **recipe_tags(recipe)})
    log_dataset(f"{args.data}/train.safetensors", "train", "training", train.labels, train.lengths)
    log_dataset(f"{args.data}/val.safetensors", "val", "validation", val.labels, val.lengths)


def log_train_point(state: ResumeState, learning_rate: float, run) -> None:
    """One point of the training curve: mean train loss since the previous point, and the
    learning rate; the same step axis in MLflow and in the DVC plot (metrics/train_curve.csv)."""
    loss = state.log_loss / max(state.log_steps, 1)
    state.history.append({"step": state.step, "train_loss": loss, "learning_rate": learning_rate})
    state.log_loss, state.log_steps = 0.0, 0
    if run:
        log_metrics("train", {"loss": loss, "learning_rate": learning_rate}, step=state.step)


def evaluate_and_keep_best(model, val, p: TrainParams, device, dtype, meta: TokenizedMeta, state: ResumeState,
                           meter: Meter, args, run) -> None:
    """Score validation, log it with throughput, save the checkpoint when it is the best so far."""
    rates = meter.close_window()
    logits = predict_logits(model, val, p.eval_batch_size, device, dtype, meta.pad_token_id)  # (N, C)
    metrics = summary_metrics(val.labels, softmax(logits))  # T = 1: selection sees the raw softmax
    model.train()
    value = selection_value(p.metric, metrics)
    state.history[-1]["val_metric"] = value  # log_train_point wrote this step's point just before
    if run:
        log_metrics("val", metrics, step=state.step)
        log_metrics("train", rates, step=state.step)
    best_loss = state.best_metrics.get("log_loss", float("nan"))
    if is_better(value, state.best_value, metrics["log_loss"], best_loss):
        state.best_value, state.best_step, state.best_metrics = value, state.step, metrics
        state.bad_evals = 0
        if dist.is_main():
            save_best(model, logits, args, meta)
    else:
        state.bad_evals += 1
        state.stopped = 0 < p.early_stopping_patience <= state.bad_evals
    log.info("step %d: val %s=%.4f (best %.4f at step %d), %.1f samples/s%s", state.step, p.metric, value,
             state.best_value, state.best_step, rates["samples_per_s"], ", stopping early" if state.stopped else "")
    meter.reset()


def save_best(model, logits: np.ndarray, args, meta: TokenizedMeta) -> None:
    """The best checkpoint so far into the resumable state, with the validation logits it was
    chosen on (for calibrate: no second pass)."""
    with atomic_dir(Path(args.state) / "best") as tmp:
        save_checkpoint(model, f"{args.data}/{meta.tokenizer}", CheckpointMeta.from_tokenized(meta), tmp)
        save_file({"logits": logits}, str(tmp / VAL_LOGITS))


def calibrate(folder: Path, logits: np.ndarray, labels: np.ndarray, p: TrainParams) -> dict[str, float]:
    """Fit the temperature of the checkpoint in folder on its validation logits (N, C) (T = 1 with
    train.calibrate off) and write it into its config.json. Returns T, and the validation log
    loss before and after."""
    fit = {"temperature": 1.0}
    if p.calibrate:
        t = fit_temperature(logits, labels)
        fit = {"temperature": t, "log_loss_uncalibrated": nll(logits, labels),
               "log_loss_calibrated": nll(logits, labels, t)}
        if not T_BOUNDS[0] * 1.01 < t < T_BOUNDS[1] / 1.01:
            log.warning("calibration temperature %.4g is at the edge of its range %s: the %d validation rows "
                        "are too few or too easy to fit it; set train.calibrate=false to keep the raw softmax",
                        t, T_BOUNDS, len(labels))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    set_temperature(config, fit["temperature"])
    config.save_pretrained(folder)
    return fit


def finish(args, state: ResumeState, run, total_steps: int, meter: Meter, p: TrainParams,
           val_labels: np.ndarray) -> None:
    """Publish the best checkpoint with its calibration, log it to MLflow once, and write the summaries."""
    best = Path(args.state) / "best"
    with atomic_dir(args.out) as tmp:
        shutil.copytree(best, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(VAL_LOGITS))
        # T is fitted on the logits of the validation pass that chose the checkpoint.
        fit = calibrate(tmp, load_file(str(best / VAL_LOGITS))["logits"], val_labels, p)
    log.info("calibration: temperature %.4f%s", fit["temperature"],
             f", validation log loss {fit['log_loss_uncalibrated']:.4f} -> {fit['log_loss_calibrated']:.4f}"
             if p.calibrate else " (train.calibrate is off)")
    pooling = pooling_of(AutoConfig.from_pretrained(args.out, trust_remote_code=False))
    summary = {"best_step": state.best_step, "steps": state.step, "total_steps": total_steps,
               "frozen_encoder": pooling == "mean",
               "stopped_early": bool(state.stopped), **{f"best_val_{k}": v for k, v in state.best_metrics.items()},
               **{k if k == "temperature" else f"val_{k}": v for k, v in fit.items()}}
    if meter.total_seconds:  # this process's share of the loop (a resumed run counts only its own)
        summary["train_samples_per_s"] = meter.total_samples / meter.total_seconds
    write_json(summary, args.details)
    # `dvc metrics show` stays narrow: best validation accuracy (and the selection metric), throughput.
    chosen = "log_loss" if p.metric == "neg_log_loss" else p.metric
    headline = dict.fromkeys(["best_val_accuracy", f"best_val_{chosen}", "train_samples_per_s"])
    write_json({k: summary[k] for k in headline if k in summary}, args.metrics)
    curve = pd.DataFrame(state.history, columns=CURVE_COLUMNS)  # val_metric empty between evaluations
    with atomic_path(args.curve) as tmp:
        curve.to_csv(tmp, index=False, float_format="%.6g")
    if run:
        # One-point numbers: the headline ones as metrics (runs table columns), all of them in
        # the summary file; MLflow would draw a one-bar chart for each.
        log_metrics("val", {f"best_{k}": state.best_metrics[k] for k in dict.fromkeys(["accuracy", chosen])})
        log_metrics("val", fit)  # val/temperature, and the log loss before and after it
        mlflow.log_artifact(args.details)
        example_out = Classifier.load(args.out).predict_frame(EXAMPLE_TEXTS)
        lineage = log_lineage(args.split)  # what the gate checks overlap and class names against
        log_classifier(Path(args.out), EXAMPLE_TEXTS, example_out, p.registered_model, lineage)
        mlflow.end_run()
        log.info("runs table, key columns (with `mlflow ui` running): %s", runs_link(run.info.experiment_id))
    write_json({"run_id": state.run_id}, args.run_file)
    mark_finished(args.state)
    log.info("best val at step %d: %s", state.best_step, state.best_metrics)


if __name__ == "__main__":
    run_cli(main)
