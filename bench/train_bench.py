"""Train the default model on the same 512 default reviews at max length 512, three ways.

1. tutorial: one tokenizer call per review padded to 512, random order, fp32 (the classic
   recipe); 2. the Hugging Face Trainer: group_by_length, bf16 where the CPU supports it;
3. this project's train stage (stages/train.py: length-grouped batches, padding per batch to
   a multiple of 8, bf16 autocast where supported). Same model, rows, batch size, learning
   rate, warmup and epochs. Throughput is samples per second of the training loop (data
   preparation, model loading and evaluation excluded).
Last line: RESULT speedup_vs_tutorial=<ratio> speedup_vs_trainer=<ratio>.

Run: pip install -e ".[bench]" && python bench/train_bench.py [--rows 512] [--ways ours,trainer,tutorial]
On a GPU: python bench/train_bench.py --gpu-mfu reports tokens/s and model-FLOPs utilisation of
a bert-base-size model (random init) at length 512 in bf16 instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from bertpipe.artifacts import TokenizedSplit, write_tokenized
from bertpipe.contracts import TokenizedMeta
from bertpipe.embedded import embedded_model_dir
from bertpipe.logs import setup_logging
from bertpipe.modeling import autocast_dtype
from bertpipe.params import load_yaml
from bertpipe.sources import movie_reviews
from bertpipe.text import Normalization, normalize
from bertpipe.tokens import Encoder

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("train_bench")
MODEL = "embedded:minilm-l6"
MAX_LENGTH, BATCH, LR, WARMUP, SEED = 512, 16, 5e-5, 0.1, 0


def load_texts(rows: int) -> tuple[list[str], np.ndarray]:
    raw = movie_reviews("imdb").sample(n=rows, random_state=SEED)  # both classes, like a real run
    return [normalize(t, Normalization()) for t in raw["text"]], raw["label"].to_numpy().astype(np.int64)


def fresh_model():
    torch.manual_seed(SEED)
    return AutoModelForSequenceClassification.from_pretrained(str(embedded_model_dir(MODEL)), num_labels=2)


def tutorial(texts: list[str], labels: np.ndarray) -> float:
    """The classic recipe: pad everything to 512, shuffle, fp32. Returns samples/s."""
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir(MODEL)))
    encoded = [tokenizer(t, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
               for t in texts]
    ids = torch.cat([e["input_ids"] for e in encoded])
    mask = torch.cat([e["attention_mask"] for e in encoded])
    data = torch.utils.data.TensorDataset(ids, mask, torch.from_numpy(labels))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(SEED))
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP * len(loader)), len(loader))
    model.train()
    start = time.perf_counter()
    for b_ids, b_mask, b_labels in loader:
        loss = model(input_ids=b_ids, attention_mask=b_mask, labels=b_labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return len(texts) / (time.perf_counter() - start)


def stage_tokens(texts: list[str], labels: np.ndarray) -> TokenizedSplit:
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir(MODEL)))
    return TokenizedSplit.from_rows(Encoder(tokenizer, MAX_LENGTH, "head", 0).encode(texts).rows(), labels)


def hf_trainer(tokens: TokenizedSplit, workdir: Path) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir(MODEL)))
    dataset = [{"input_ids": tokens.row(i).tolist(), "labels": int(tokens.labels[i])} for i in range(len(tokens))]
    bf16 = autocast_dtype(torch.device("cpu"), "auto") is not None
    args = TrainingArguments(output_dir=str(workdir / "trainer"), per_device_train_batch_size=BATCH,
                             learning_rate=LR, warmup_steps=int(WARMUP * -(-len(tokens) // BATCH)),
                             num_train_epochs=1, bf16=bf16,
                             train_sampling_strategy="group_by_length", save_strategy="no", report_to=[],
                             logging_steps=10_000, seed=SEED, use_cpu=not torch.cuda.is_available(),
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=fresh_model(), args=args, train_dataset=dataset,
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    return len(tokens) / (time.perf_counter() - start)


def ours(tokens: TokenizedSplit, workdir: Path) -> float:
    """Run the real train stage on these rows; its summary reports the loop's samples/s."""
    import os

    from stages import train

    data = workdir / "tok"
    data.mkdir(parents=True)
    write_tokenized(tokens, data / "train.safetensors")
    write_tokenized(tokens.subset(np.arange(32)), data / "val.safetensors")
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_dir(MODEL)))
    tokenizer.save_pretrained(data / "tokenizer")
    TokenizedMeta(model=MODEL, model_revision="", tokenizer="tokenizer", max_length=MAX_LENGTH, truncation="head",
                  head_tokens=0,
                  pad_token_id=tokenizer.pad_token_id, labels=["negative", "positive"],
                  normalization={}).write(data)
    params = load_yaml((ROOT / "params.yaml").read_text())
    params["train"].update({"seed": SEED, "epochs": 1, "min_steps": 0, "batch_size": BATCH, "learning_rate": LR,
                            "warmup_fraction": WARMUP, "eval_every_steps": 10_000, "save_every_steps": 10_000})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    train.main(["--params", str(workdir / "params.yaml"), "--data", str(data), "--out", str(workdir / "best"),
                "--state", str(workdir / "state"), "--run-file", str(workdir / "run.json"),
                "--metrics", str(workdir / "train.json"), "--details", str(workdir / "details.json"),
                "--curve", str(workdir / "curve.csv")])
    return json.loads((workdir / "train.json").read_text())["train_samples_per_s"]


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
    parser.add_argument("--ways", default="ours,trainer,tutorial")
    parser.add_argument("--gpu-mfu", action="store_true")
    args = parser.parse_args()
    if args.gpu_mfu:
        return gpu_mfu()
    texts, labels = load_texts(args.rows)
    tokens = stage_tokens(texts, labels)
    ways = args.ways.split(",")
    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "ours" in ways:
            speed["ours"] = ours(tokens, Path(tmp) / "ours")
        if "trainer" in ways:
            speed["trainer"] = hf_trainer(tokens, Path(tmp))
        if "tutorial" in ways:
            speed["tutorial"] = tutorial(texts, labels)
    for way, value in speed.items():
        log.info("%-8s %.2f samples/s", way, value)
    vs = {k: speed["ours"] / speed[k] for k in ("tutorial", "trainer") if k in speed and "ours" in speed}
    print("RESULT " + " ".join(f"speedup_vs_{k}={v:.2f}" for k, v in vs.items()))


if __name__ == "__main__":
    setup_logging()
    main()
