"""Score the same test reviews with the same checkpoint two ways: this project's prediction
path (bertpipe.inference.Classifier.predict_proba, which the predict CLI and the served MLflow
model call) and `transformers.pipeline("text-classification")` at its best of batch sizes
1, 8 and 32.

The ways run in alternating rounds in one process, so a busy machine slows them alike: round
r hands every way the same r-th slice of the reviews (100 of 1,000 by default), in an order
reversed every other round. Each round gives one ratio (pipeline seconds at its best batch
size that round / our seconds) and the bench reports the median ratio and its spread
(min-max). Agreement is the share of reviews whose
predicted class on our path matches the plain fp32 prediction of the same checkpoint, with
the same text preparation; accuracy is reported for both.

Checkpoint: --model (default models/best) with the test split beside it (data/split/test.parquet);
when there is none, a small checkpoint is fine-tuned from --base-model (default: params.yaml's
tokenize.model) first with the project's own stages (ingest, split, tokenize, train on 1,500
default reviews) in --scratch, and reused from there on the next run with the same params.
Last line: RESULT predict_speedup_vs_pipeline=<median ratio> agreement=<share>.

With --onnx (and with --options) the same checkpoint also runs on ONNX Runtime, exported from
the local folder (nothing is downloaded) into a temporary folder: onnx_fp32 (torch.onnx's dynamo
exporter), onnx_fused (attention, GELU and layer norms fused by onnxruntime's BERT optimizer,
what optimum's ORTOptimizer does; optimum-onnx itself needs transformers < 4.58), onnx_int8
(onnx_fused with dynamic int8 weights) and onnx_fused_intra_op (onnxruntime's own threads
instead of worker threads); see export_onnx. Each gets the same tokens and length-sorted
batches as our path, and is a way in the same rounds: the log gives its time vs ours per round
(median, min-max), accuracy and agreement with the fp32 torch predictions.

Run: python bench/predict_bench.py [--rows 1000] [--rounds 10] [--scratch DIR]
     python bench/predict_bench.py --options   # also time the choices one by one (see build_ways)
     python bench/predict_bench.py --onnx      # also the ONNX Runtime ways (needs the bench extra)
     python bench/predict_bench.py --quick [--model DIR | --base-model DIR] [--scratch DIR]
         # a smoke test: 32 reviews in 2 rounds; a checkpoint fine-tuned for 8 steps on 64 reviews
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bertpipe.artifacts import TokenizedSplit  # noqa: E402
from bertpipe.batching import collate, sorted_batches  # noqa: E402
from bertpipe.inference import PREDICT_BATCH_SIZE, Classifier, run_batches, worker_batch_size  # noqa: E402
from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.modeling import cpu_has_bf16  # noqa: E402
from bertpipe.params import load_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("predict_bench")
PIPELINE_BATCHES = (1, 8, 32)
OPTION_BATCHES = (8, 64)
# The small checkpoint when there is no models/best: the default recipe on fewer rows.
SMALL_RUN = {"split": {"max_train": 1500, "max_val": 200, "max_test": 1000},
             "train": {"eval_every_steps": 100_000, "save_every_steps": 100_000}}
# --quick: 32 test reviews in 2 rounds, and a smoke-test checkpoint: 8 steps of 8 reviews at length 64
QUICK = {"rows": 32, "rounds": 2}
QUICK_RUN = {"split": {"max_train": 64, "max_val": 16, "max_test": 32},
             "tokenize": {"max_length": 64, "head_tokens": 16},
             "train": {"min_steps": 0, "eval_every_steps": 100_000, "save_every_steps": 100_000}}


def finetune_small(scratch: Path, run: dict, base_model: str | None) -> tuple[Path, Path]:
    """A checkpoint trained by the project's stages in scratch with params.yaml updated by run
    (and tokenize.model set to base_model when given); kept for the next run with the same params."""
    best, test = scratch / "best", scratch / "split" / "test.parquet"
    params = load_yaml((ROOT / "params.yaml").read_text())
    for section, values in run.items():
        params[section].update(values)
    if base_model:
        params["tokenize"]["model"] = base_model
    text, p = yaml.safe_dump(params, sort_keys=False), scratch / "params.yaml"
    if (best / "config.json").exists() and test.exists() and p.exists() and p.read_text() == text:
        log.info("reusing the small checkpoint fine-tuned earlier in %s", best)
        return best, test
    from stages import ingest, split, tokenize, train

    log.warning("no checkpoint given and no models/best: fine-tuning a small one from %s first in %s "
                "(default params but %s)", params["tokenize"]["model"], scratch, run)
    p.write_text(text)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{scratch / 'mlflow.db'}")
    common = ["--params", str(p)]
    ingest.main([*common, "--out", str(scratch / "ingested"), "--metrics", str(scratch / "ingest.json")])
    split.main([*common, "--data", str(scratch / "ingested"), "--out", str(scratch / "split"),
                "--metrics", str(scratch / "split.json")])
    tokenize.main([*common, "--data", str(scratch / "split"), "--out", str(scratch / "tokenized"),
                   "--metrics", str(scratch / "tokenize.json")])
    train.main([*common, "--data", str(scratch / "tokenized"), "--split", str(scratch / "split"), "--out", str(best),
                "--state", str(scratch / "resume"), "--run-file", str(scratch / "run.json"), "--metrics",
                str(scratch / "train.json"), "--details", str(scratch / "train_details.json"),
                "--curve", str(scratch / "curve.csv")])
    return best, test


def find_checkpoint(args: argparse.Namespace) -> tuple[Path, Path]:
    model = Path(args.model)
    if (model / "config.json").exists():
        test = Path(args.test)
        if not test.exists():
            raise SystemExit(f"{test}: no test split beside {model}; run the pipeline (dvc repro) or "
                             "name the test split with --test")
        return model, test
    default = "bertpipe-predict-bench-quick" if args.quick else "bertpipe-predict-bench"
    scratch = Path(args.scratch or Path(tempfile.gettempdir()) / default).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(scratch):  # MLflow's ./mlruns artifacts go beside its store, not where the bench runs
        return finetune_small(scratch, QUICK_RUN if args.quick else SMALL_RUN, args.base_model)


def pipeline_way(folder: Path, max_length: int, batch_size: int):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(folder), device=-1)
    label2id = pipe.model.config.label2id

    def run(texts: list[str]) -> np.ndarray:
        out = pipe(texts, batch_size=batch_size, truncation=True, max_length=max_length)
        return np.array([label2id[o["label"]] for o in out])
    return run


def ours_way(classifier: Classifier, batch_size: int = PREDICT_BATCH_SIZE, threads: int | None = None):
    def run(texts: list[str]) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            return classifier.predict_proba(texts, batch_size).argmax(axis=1)
        finally:
            torch.set_num_threads(before)
    return run


def build_ways(folder: Path, options: bool, onnx_dir: Path | None) -> dict:
    """name -> function(texts) -> predicted class ids. 'ours' is the path predict and serving use.

    onnx_dir: where to export the ONNX models (None = no ONNX ways).
    """
    fast = Classifier.load(folder)
    log.info("our path: %s, attention %s, batch size %d", fast.dtype or torch.float32,
             fast.model.config._attn_implementation, PREDICT_BATCH_SIZE)
    ways = {"ours": ours_way(fast)}
    ways.update({f"pipeline_bs{b}": pipeline_way(folder, fast.meta.max_length, b) for b in PIPELINE_BATCHES})
    if options:  # each choice of the fast path undone one at a time
        ways["ours_fp32"] = ours_way(Classifier.load(folder, precision="fp32"))
        eager = Classifier.load(folder)
        eager.model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
        ways["ours_eager"] = ours_way(eager)
        ways["ours_unsorted"] = unsorted_way(fast)
        for b in OPTION_BATCHES:
            ways[f"ours_bs{b}"] = ours_way(fast, b)
        ways["ours_intra_op"] = ours_way(replace(fast, workers=1))  # one worker, ops split over the cores
        ways["ours_1thread"] = ours_way(replace(fast, workers=1), threads=1)
        bf16_weights = Classifier.load(folder, precision="fp32")
        bf16_weights.model = bf16_weights.model.to(torch.bfloat16)  # LayerNorm and softmax in bf16 too
        ways["ours_bf16_weights"] = ours_way(bf16_weights)
    if onnx_dir is not None:
        paths = export_onnx(folder, onnx_dir)
        ways.update({name: onnx_way(fast, path) for name, path in paths.items()})
        ways["onnx_fused_intra_op"] = onnx_way(fast, paths["onnx_fused"], workers=False)
    return ways


def export_onnx(folder: Path, out: Path) -> dict[str, Path]:
    """The fp32 checkpoint as ONNX models, from the local folder only (nothing is downloaded).

    onnx_fp32: torch.onnx.export's default (dynamo) exporter, SDPA attention, run as exported;
    onnx_fused: the legacy TorchScript exporter with eager attention, then onnxruntime's BERT
    graph optimizer fusing attention, GELU and layer norms, which is what optimum's ORTOptimizer
    does (optimum-onnx itself requires transformers < 4.58, and this project is on 5);
    onnx_int8: onnx_fused with the weights of its MatMul and Attention nodes dynamically quantized
    to int8 (onnxruntime.quantization.quantize_dynamic, activations quantized per batch).
    """
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as e:
        raise SystemExit(f"--onnx: {e.name} is not installed; pip install -e \".[bench]\" adds onnx, "
                         "onnxscript and onnxruntime") from e
    names, dims = ["input_ids", "attention_mask"], {0: "batch", 1: "tokens"}
    ids = torch.ones(2, 16, dtype=torch.long)  # an example to trace; batch and length stay dynamic
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    paths = {name: out / f"{name}.onnx" for name in ("onnx_fp32", "onnx_fused", "onnx_int8")}

    sdpa = Classifier.load(folder, precision="fp32").model
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens")
    dynamic = dict.fromkeys(names, {0: batch, 1: tokens})
    with root_level(logging.WARNING):  # onnxscript's graph passes log a line per node at INFO
        torch.onnx.export(sdpa, (), str(paths["onnx_fp32"]), kwargs=example, input_names=names,
                          output_names=["logits"], dynamo=True, dynamic_shapes=dynamic, verbose=False)

    eager = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    traced = out / "traced.onnx"
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer warnings: known, noise here
        warnings.simplefilter("ignore")
        torch.onnx.export(eager, (ids, example["attention_mask"]), str(traced), input_names=names,
                          output_names=["logits"], dynamic_axes=dict.fromkeys(names, dims), dynamo=False,
                          opset_version=17)
    config = eager.config
    fused = optimize_model(str(traced), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=0)
    fused.save_model_to_file(str(paths["onnx_fused"]))
    # The fused contrib ops have no ONNX shape inference: their outputs are float32. The quantizer
    # logs a line per tensor at INFO on the root logger.
    with root_level(logging.WARNING):
        quantize_dynamic(paths["onnx_fused"], paths["onnx_int8"], weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return paths


@contextlib.contextmanager
def root_level(level: int):
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


def onnx_way(classifier: Classifier, path: Path, workers: bool = True):
    """Our path's steps on onnxruntime: the same tokens (the classifier's encoder), the same
    length-sorted batches padded by the same collate. workers=True: one worker thread per torch
    thread scores whole batches off the same shared queue (bertpipe.inference.run_batches) on one
    session with one intra-op thread, as our path does (session.run is thread-safe); False: one
    caller, onnxruntime's own intra-op threads (its default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if workers:
        opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    meta, encoder = classifier.meta, classifier.encoder

    def run(texts: list[str]) -> np.ndarray:
        split = TokenizedSplit.from_rows(encoder.encode(texts, meta.norm()).rows(), np.zeros(len(texts), np.int64))
        n = torch.get_num_threads() if workers else 1
        batches = sorted_batches(split.lengths, worker_batch_size(len(texts), PREDICT_BATCH_SIZE, n))
        preds = np.zeros(len(texts), dtype=np.int64)

        def score(rows: np.ndarray) -> None:
            batch = collate(split, rows, meta.pad_token_id)
            logits = session.run(["logits"], {"input_ids": batch["input_ids"].numpy(),
                                              "attention_mask": batch["attention_mask"].numpy()})[0]
            preds[rows] = logits.argmax(axis=1)

        run_batches(batches, score, n)
        return preds
    return run


def unsorted_way(classifier: Classifier):
    """Batches in input order (no length sorting): one call per batch, so each pads to its own longest."""
    def run(texts: list[str]) -> np.ndarray:
        return np.concatenate([classifier.predict_proba(texts[i : i + PREDICT_BATCH_SIZE]).argmax(axis=1)
                               for i in range(0, len(texts), PREDICT_BATCH_SIZE)])
    return run


def measure(ways: dict, texts: list[str], rounds: int) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds per way per round, and each way's predictions for all texts.

    Round r gives every way the same r-th slice of the texts, in an order reversed every other
    round, so the ways of one round run within seconds of each other under the same load.
    """
    for run in ways.values():
        run(texts[:16])  # warm-up: kernels picked and weights cast once, outside the timing
    seconds = {name: [] for name in ways}
    preds = {name: [] for name in ways}
    for r, rows in enumerate(np.array_split(np.arange(len(texts)), rounds)):
        chunk = [texts[i] for i in rows]
        for name in list(ways) if r % 2 == 0 else list(ways)[::-1]:
            start = time.perf_counter()
            preds[name].append(ways[name](chunk))
            seconds[name].append(time.perf_counter() - start)
        log.info("round %d: %s", r + 1, ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in ways))
    return seconds, {name: np.concatenate(p) for name, p in preds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "best"))
    parser.add_argument("--test", default=str(ROOT / "data" / "split" / "test.parquet"))
    parser.add_argument("--scratch", default=os.environ.get("PREDICT_BENCH_SCRATCH"),
                        help="folder for the small fine-tuned checkpoint (env PREDICT_BENCH_SCRATCH)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="slices of the rows; each way scores each slice")
    parser.add_argument("--options", action="store_true",
                        help="also time each choice of our path undone, and the ONNX ways")
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime ways (see export_onnx)")
    parser.add_argument("--base-model", help="the model the small checkpoint is fine-tuned from when there is no "
                        "--model checkpoint (default: params.yaml's tokenize.model)")
    parser.add_argument("--prepare-only", action="store_true", help="only find or fine-tune the checkpoint")
    parser.add_argument("--quick", action="store_true", help=f"a smoke test in seconds: {QUICK}, and a small "
                        f"checkpoint fine-tuned with {QUICK_RUN}")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    folder, test_file = find_checkpoint(args)
    if args.prepare_only:
        return
    test = pd.read_parquet(test_file).head(args.rows)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    log.info("%d test reviews from %s, checkpoint %s, %d threads, cpu bf16 in hardware: %s", len(texts),
             test_file, folder, torch.get_num_threads(), cpu_has_bf16())
    reference = Classifier.load(folder, precision="fp32").predict_proba(texts).argmax(axis=1)
    with tempfile.TemporaryDirectory(prefix="predict-bench-onnx-") as onnx_dir:  # sessions hold the models
        ways = build_ways(folder, args.options, Path(onnx_dir) if args.onnx or args.options else None)
    seconds, preds = measure(ways, texts, args.rounds)

    pipes = [n for n in seconds if n.startswith("pipeline")]
    ratios = [min(seconds[p][r] for p in pipes) / seconds["ours"][r] for r in range(args.rounds)]
    for name, values in seconds.items():
        vs_ours = [values[r] / seconds["ours"][r] for r in range(args.rounds)]
        log.info("%-14s %7.1f reviews/s (total time), time vs ours median %.2f (%.2f-%.2f), accuracy %.4f, "
                 "agrees with fp32 %.4f", name, len(texts) / sum(values), statistics.median(vs_ours),
                 min(vs_ours), max(vs_ours), (preds[name] == labels).mean(), (preds[name] == reference).mean())
    agreement = float((preds["ours"] == reference).mean())
    log.info("accuracy: ours %.4f, fp32 %.4f (%+.2f points); speedup per round %s",
             (preds["ours"] == labels).mean(), (reference == labels).mean(),
             100 * ((preds["ours"] == labels).mean() - (reference == labels).mean()),
             " ".join(f"{r:.2f}" for r in ratios))
    print(f"speedup median {statistics.median(ratios):.2f} (spread {min(ratios):.2f}-{max(ratios):.2f} over "
          f"{args.rounds} rounds)")
    print(f"RESULT predict_speedup_vs_pipeline={statistics.median(ratios):.2f} agreement={agreement:.4f}")


if __name__ == "__main__":
    setup_logging()
    main()
