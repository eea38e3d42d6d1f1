"""What stages hand each other beside tables and tensors, as typed objects that read and write
themselves, each file stamped with its kind and a schema version.

- DatasetMeta (`meta.json` of ingest, copied by split): class names, normalisation, origin.
- TokenizedMeta (`meta.json` of tokenize): how the ids were made, for train and evaluate.
- CheckpointMeta (`pipeline.json` in a checkpoint folder): what prediction needs beyond the
  Hugging Face files to turn raw text into the ids the model was trained on.

Readers and writers use these classes, never the keys. A file of another schema version, or
of another kind, is refused with an error that names the file and both versions.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bertpipe.artifacts import read_json, recover_dir, write_json
from bertpipe.errors import BertpipeError
from bertpipe.text import Normalization

# split's record of how rows were assigned to splits ({"seed", "key"}), read by lineage.
ASSIGNMENT_FILE = "assignment.json"
SCHEMA_VERSION = 2  # 2: the hub revision of the base model (model_revision, base_model_revision)
C = TypeVar("C", bound="Contract")


class ContractError(BertpipeError, ValueError):
    """A stage's hand-over file is missing, of another kind, or of another schema version."""


@dataclass(frozen=True)
class Contract:
    FILE: ClassVar[str]
    KIND: ClassVar[str]
    PRODUCER: ClassVar[str]  # how to make the file again, for messages

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        write_json(self.to_json(), path)
        return path

    @classmethod
    def read(cls: type[C], folder: str | Path) -> C:
        recover_dir(folder)  # a write of the folder killed between its two renames
        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise ContractError(f"{path}: missing; {folder} is not a complete {cls.KIND} folder: {cls.PRODUCER}")
        raw = read_json(path)
        kind, version = raw.pop("kind", None), raw.pop("schema_version", None)
        if kind != cls.KIND or version != SCHEMA_VERSION:
            raise ContractError(
                f"{path}: a {kind or 'unversioned'} file of schema version {version}, but this code reads "
                f"{cls.KIND} schema version {SCHEMA_VERSION}; it was written by another version of bertpipe: "
                f"{cls.PRODUCER}")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(raw) != names:
            raise ContractError(f"{path}: keys {sorted(set(raw) ^ names)} do not match {cls.KIND} schema version "
                                f"{SCHEMA_VERSION}; the file was edited by hand or is damaged: {cls.PRODUCER}")
        return cls(**raw)


@dataclass(frozen=True)
class DatasetMeta(Contract):
    FILE = "meta.json"
    KIND = "dataset"
    PRODUCER = "rerun ingest (dvc repro ingest)"

    labels: list[str]  # class names in id order
    normalization: dict[str, bool]  # the text normalisation, applied to new texts at prediction too
    source: str
    origin: dict[str, Any] = field(default_factory=dict)  # what was read: file digest, package version...

    def norm(self) -> Normalization:
        return Normalization(**self.normalization)


@dataclass(frozen=True)
class Encoding(Contract):
    """How raw text becomes the ids the model sees, and what the class ids mean: what tokenize
    hands to train and a checkpoint carries to prediction alike."""

    max_length: int
    truncation: str
    head_tokens: int
    pad_token_id: int
    labels: list[str]
    normalization: dict[str, bool]

    def norm(self) -> Normalization:
        return Normalization(**self.normalization)

    def encoding(self) -> dict[str, Any]:
        return copy.deepcopy({f.name: getattr(self, f.name) for f in dataclasses.fields(Encoding)})


@dataclass(frozen=True)
class TokenizedMeta(Encoding):
    FILE = "meta.json"
    KIND = "tokenized"
    PRODUCER = "rerun tokenize (dvc repro tokenize)"

    model: str  # tokenize.model: the base model train fine-tunes, so tokenizer and model agree
    model_revision: str  # tokenize.model_revision: the hub revision of both ('' = none)
    tokenizer: str  # sub-folder holding the tokenizer files


@dataclass(frozen=True)
class CheckpointMeta(Encoding):
    FILE = "pipeline.json"
    KIND = "checkpoint"
    PRODUCER = "train it again (dvc repro train), or use a checkpoint written by this version"

    base_model: str
    base_model_revision: str

    @classmethod
    def from_tokenized(cls, meta: TokenizedMeta) -> CheckpointMeta:
        return cls(base_model=meta.model, base_model_revision=meta.model_revision, **meta.encoding())
