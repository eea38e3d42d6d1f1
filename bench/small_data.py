"""Do the default params work on a user's small, imbalanced data? The pipeline's own stages (split,
tokenize, train, evaluate) on a few hundred rows with one class under 10%, with params.yaml's train
values (`defaults`: train.encoder auto, which is frozen on such a rare class), with each value of
train.encoder alone (`finetune`, `frozen`) and with the values before issue 22 (`before`: plain
cross-entropy, selection by accuracy, validation every 250 steps, fine-tuning), each beside the bars
evaluate scores on the same test rows: TF-IDF + logistic regression and the majority class. Macro
F1 is the number that counts here: the majority class has a high accuracy on such data and a low
macro F1. `probe` is the frozen head outside the pipeline (AutoModel and scikit-learn), to compare
the vectors it reads (--probe-pooling): the mean-pooled ones (the pooling all-MiniLM-L6-v2 was
trained with, and `frozen`'s), the [CLS] token's, or the pooler's that the fine-tuned head reads.

Data sets (tools/imbalanced_data.py):
- generated: three classes, the rare one ('mixed') --rare-share of the rows; each review is filler
  words and one word of its class from twenty, so test reviews hold words their class never had
  in the training rows;
- rotten_tomatoes: real Rotten Tomatoes sentences (the embedded data), negatives cut to --rare-share.

The split is the split stage's (10% validation, 20% test), so a few hundred rows leave a test split
of about a hundred and a handful of rare rows: one seed's macro F1 moves by several points, so
--seeds takes several train seeds and the table gives each and their mean.

Run: python bench/small_data.py [--rows 600] [--rare-share 0.08] [--seeds 42,43] [--max-length 64]
     python bench/small_data.py --quick [--model DIR]   # a smoke test in seconds: 200 rows, a tiny BERT
Last line: RESULT <data set>_<recipe>_f1_macro=<mean> ... <data set>_tfidf_f1_macro=<mean>
<data set>_majority_f1_macro=<mean>, for each data set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import yaml  # noqa: E402

from bertpipe.artifacts import write_parquet  # noqa: E402
from bertpipe.contracts import DatasetMeta  # noqa: E402
from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.params import load_yaml  # noqa: E402
from tools.imbalanced_data import (  # noqa: E402
    RT_LABELS,
    THREE_CLASS_LABELS,
    rotten_tomatoes_rare_negative,
    three_class_reviews,
)

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("small_data")
DATASETS = ("generated", "rotten_tomatoes")
# The train values that issue 22 changed, as they were; `defaults` is params.yaml as it is.
RECIPES = {"before": {"class_weights": "none", "metric": "accuracy", "eval_every_steps": 250, "min_steps": 200,
                      "encoder": "finetune"},
           "defaults": {},
           # train.encoder's choices one at a time (defaults: auto, which is both on a rare class)
           "finetune": {"encoder": "finetune"}, "frozen": {"encoder": "frozen"}}
# Not a fine-tuning: the frozen encoder's mean-pooled token vectors (how sentence-transformers
# trained all-MiniLM-L6-v2) into a class-balanced logistic regression, on the same split.
PROBE = "probe"
QUICK = {"rows": 200, "seeds": "42", "max_length": 32}
QUICK_TRAIN = {"min_steps": 24}  # --quick: after each recipe's values, so a smoke test takes seconds


def dataset(name: str, rows: int, rare_share: float, seed: int):
    if name == "generated":
        return three_class_reviews(rows, rare_share, seed, vocabulary="open"), THREE_CLASS_LABELS
    return rotten_tomatoes_rare_negative(rows, rare_share, seed), RT_LABELS


def write_params(path: Path, model: str | None, max_length: int, train: dict) -> Path:
    """params.yaml with the splits uncapped, the tokenize length and model given, train updated."""
    params = load_yaml((ROOT / "params.yaml").read_text())
    params["split"].update({"max_train": None, "max_val": None, "max_test": None})
    params["tokenize"].update({"max_length": max_length, "head_tokens": max_length // 4})
    if model:
        params["tokenize"]["model"] = model
    params["train"].update(train)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def prepare(folder: Path, name: str, args: argparse.Namespace) -> None:
    """The data set as ingest would hand it on, then split and tokenize (the same for every recipe)."""
    from stages import split, tokenize

    df, labels = dataset(name, args.rows, args.rare_share, args.data_seed)
    write_parquet(df, folder / "ingested" / "reviews.parquet")
    DatasetMeta(labels=labels, normalization={}, source="csv").write(folder / "ingested")
    params = str(write_params(folder / "params.yaml", args.model, args.max_length, {}))
    split.main(["--params", params, "--data", str(folder / "ingested"), "--out", str(folder / "split"),
                "--metrics", str(folder / "split.json")])
    tokenize.main(["--params", params, "--data", str(folder / "split"), "--out", str(folder / "tokenized"),
                   "--metrics", str(folder / "tokenize.json")])


def train_and_evaluate(data: Path, out: Path, params: Path) -> dict:
    """train and evaluate in out; the summary of both and the seconds they took."""
    from stages import evaluate, train

    t0 = time.perf_counter()
    common = ["--params", str(params), "--split", str(data / "split"), "--run-file", str(out / "run.json")]
    train.main([*common, "--data", str(data / "tokenized"), "--out", str(out / "best"), "--state", str(out / "resume"),
                "--metrics", str(out / "train.json"), "--details", str(out / "train_details.json"),
                "--curve", str(out / "curve.csv")])
    evaluate.main([*common, "--model", str(out / "best"), "--tokens", str(data / "tokenized"),
                   "--curve", str(out / "curve.csv"), "--metrics", str(out / "test.json"),
                   "--details", str(out / "test_details.json"), "--plots", str(out / "plots"),
                   "--errors", str(out / "errors.csv")])
    trained = json.loads((out / "train_details.json").read_text())
    tested = json.loads((out / "test_details.json").read_text())
    evaluations = sum(1 for line in (out / "curve.csv").read_text().splitlines()[1:] if not line.endswith(","))
    rare = min(tested["per_class"].values(), key=lambda c: c["support"])
    return {"f1_macro": tested["f1_macro"], "accuracy": tested["accuracy"], "rare_recall": rare["recall"],
            "tfidf": tested["baseline_tfidf_logreg_f1_macro"], "majority": tested["baseline_majority_f1_macro"],
            "steps": trained["steps"], "evaluations": evaluations, "best_step": trained["best_step"],
            "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--rare-share", type=float, default=0.08)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the rows drawn or generated")
    parser.add_argument("--seeds", default="42,43", help="train.seed values, comma-separated")
    parser.add_argument("--max-length", type=int, default=64, help="tokenize.max_length")
    parser.add_argument("--model", help="tokenize.model (default: params.yaml's, the embedded MiniLM)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--recipes", default=",".join([*RECIPES, PROBE]))
    parser.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                        help="a train param for every recipe, after the recipe's own (YAML value; repeatable)")
    parser.add_argument("--probe-pooling", choices=("mean", "cls", "pooler"), default="mean",
                        help="the vectors the probe reads (default: mean, as all-MiniLM-L6-v2 was trained)")
    parser.add_argument("--workdir", help="folder for the runs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke test in seconds: {QUICK}, train {QUICK_TRAIN}, a tiny BERT")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    args.train = overrides(args.train)  # a wrong key stops here, not after the data is prepared
    with tempfile.TemporaryDirectory(prefix="small-data-") as scratch:
        work = Path(args.workdir or scratch).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if args.quick and not args.model:
            from tools.tiny_bert import make_tiny_bert

            args.model = str(make_tiny_bert(work / "tiny-bert"))
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        with contextlib.chdir(work):  # MLflow's ./mlruns artifacts go beside its store, not where the bench runs
            results = run_all(work, args)
    report(results)


def overrides(pairs: list[str]) -> dict:
    """--train KEY=VALUE pairs as train params, each value read as YAML (5.0e-5, 400, balanced);
    checked against params.yaml's train keys before any work starts."""
    known = load_yaml((ROOT / "params.yaml").read_text())["train"]
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--train {pair!r}: give KEY=VALUE with a key of params.yaml's train section "
                             f"({', '.join(known)}), e.g. --train learning_rate=5.0e-5")
        out[key] = yaml.safe_load(value)
    return out


def probe(data: Path, model: str | None, max_length: int, pooling: str = "mean") -> dict:
    """Macro F1 on the test split of a balanced logistic regression on the frozen encoder's
    vectors of the training texts (`pooling`: mean over the tokens, the [CLS] token's, or the
    pooler output that the fine-tuned BertForSequenceClassification head reads)."""
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, recall_score
    from transformers import AutoModel, AutoTokenizer

    from bertpipe.modeling import pretrained_kwargs, resolve_model

    t0 = time.perf_counter()
    name = resolve_model(model or load_yaml((ROOT / "params.yaml").read_text())["tokenize"]["model"])
    tokenizer = AutoTokenizer.from_pretrained(name, **pretrained_kwargs(name, ""))
    encoder = AutoModel.from_pretrained(name, **pretrained_kwargs(name, "")).eval()

    def vectors(texts: list[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                batch = tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
                mask = batch["attention_mask"].unsqueeze(-1).float()
                encoded = encoder(**batch)
                hidden = encoded.last_hidden_state
                if pooling == "mean":
                    pooled = (hidden * mask).sum(1) / mask.sum(1)
                elif pooling == "cls":
                    pooled = hidden[:, 0]
                elif (pooled := getattr(encoded, "pooler_output", None)) is None:
                    raise SystemExit(f"--probe-pooling pooler: {name} has no pooler; use mean or cls")
                out.append(pooled.numpy())
        return np.concatenate(out)

    train, test = (pd.read_parquet(data / "split" / f"{s}.parquet") for s in ("train", "test"))
    classifier = LogisticRegression(max_iter=2000, class_weight="balanced")
    predicted = classifier.fit(vectors(train["text"].tolist()), train["label"]).predict(vectors(test["text"].tolist()))
    rare = train["label"].value_counts().idxmin()
    return {"f1_macro": float(f1_score(test["label"], predicted, average="macro")),
            "accuracy": float(accuracy_score(test["label"], predicted)),
            "rare_recall": float(recall_score(test["label"], predicted, labels=[rare], average="macro")),
            "steps": 0, "evaluations": 0, "best_step": 0, "seconds": time.perf_counter() - t0}


def run_all(work: Path, args: argparse.Namespace) -> dict[tuple[str, str], list[dict]]:
    results: dict[tuple[str, str], list[dict]] = {}
    for name in args.datasets.split(","):
        prepare(work / name, name, args)
        for recipe in args.recipes.split(","):
            if recipe == PROBE:  # no seed: the encoder is frozen and the regression deterministic
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                params = write_params(work / name / f"{recipe}-{seed}.yaml", args.model, args.max_length,
                                      {**RECIPES[recipe], **args.train, "seed": seed,
                                       **(QUICK_TRAIN if args.quick else {})})
                one = train_and_evaluate(work / name, work / name / f"{recipe}-{seed}", params)
                log.info("%s %s seed %d: %s", name, recipe, seed, one)
                results.setdefault((name, recipe), []).append({"seed": seed, **one})
        if PROBE in args.recipes.split(","):
            fine_tuned = [r[0] for (n, _), r in results.items() if n == name]  # the bars: the same test rows
            bars = {k: fine_tuned[0][k] if fine_tuned else float("nan") for k in ("tfidf", "majority")}
            one = probe(work / name, args.model, args.max_length, args.probe_pooling)
            log.info("%s %s: %s", name, PROBE, one)
            results[(name, PROBE)] = [{"seed": "-", **one, **bars}]
    return results


def report(results: dict[tuple[str, str], list[dict]]) -> None:
    print(f"{'data set':16} {'recipe':9} {'seed':>4} {'steps':>5} {'evals':>5} {'best':>5} {'macro F1':>8} "
          f"{'rare rec':>8} {'TF-IDF':>7} {'majority':>8} {'seconds':>7}")
    summary = {}
    for (name, recipe), runs in results.items():
        for r in runs:
            print(f"{name:16} {recipe:9} {r['seed']:>4} {r['steps']:>5} {r['evaluations']:>5} {r['best_step']:>5} "
                  f"{r['f1_macro']:8.4f} {r['rare_recall']:8.4f} {r['tfidf']:7.4f} {r['majority']:8.4f} "
                  f"{r['seconds']:7.0f}")
        summary[f"{name}_{recipe}_f1_macro"] = statistics.mean(r["f1_macro"] for r in runs)
        summary[f"{name}_tfidf_f1_macro"] = runs[0]["tfidf"]  # the same rows for every recipe and seed
        summary[f"{name}_majority_f1_macro"] = runs[0]["majority"]
    print("RESULT " + " ".join(f"{k}={v:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    setup_logging()
    main()
