"""The MLflow pyfunc model, logged as code (MLflow "models from code"), so loading it
unpickles nothing: a DataFrame with a `text` column in; label and class probabilities out.
Loading refuses a model whose files differ from the digest manifest it carries, naming the file
(bertpipe.manifest).

A request is checked before any text is scored: more than MAX_ROWS_PER_REQUEST rows, texts of
more UTF-8 bytes together than BERTPIPE_MAX_REQUEST_BYTES (read when the model loads; default
DEFAULT_MAX_REQUEST_BYTES), a missing `text` column, or a text that is null, not a string, or that
ingest would quarantine (bertpipe.validation.unusable_reason on the text normalised as the model
was trained: empty, only NUL characters, empty after normalisation such as "&nbsp;" or "<br />",
lone surrogates) is refused with HTTP 400 (INVALID_PARAMETER_VALUE) naming the row and the
reason. Long texts are cut to what the model reads (see bertpipe.tokens), so a 10 MB text costs
what a long review costs, with or without whitespace.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bertpipe.errors import BertpipeError
from bertpipe.manifest import MANIFEST_ARTIFACT, check_loaded
from bertpipe.text import Normalization
from bertpipe.validation import unusable_reason

# Rows one request may hold: bounds a request's memory and time (split bigger batches, or use
# `python -m bertpipe.predict --input FILE`, which has no limit).
MAX_ROWS_PER_REQUEST = 1000
# The UTF-8 bytes all texts of one request may hold together, unless the environment variable says
# otherwise where the model loads. 16 MiB: 1,000 rows as long as IMDB's longest review (13.7 KB) fit,
# and so does a 10 MB text. The server has read and parsed the whole body by then: cap it in front too
# (docs/reference.md, "Serving limits").
MAX_REQUEST_BYTES_ENV = "BERTPIPE_MAX_REQUEST_BYTES"
DEFAULT_MAX_REQUEST_BYTES = 16 * 2**20
_SIZE_SLICE = 1 << 20  # characters of a non-ASCII text encoded at a time to count its bytes
# Set by `mlflow models serve` in the process it serves from, and nowhere else
# (mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH).
_SCORING_SERVER_ENV = "__pyfunc_model_path__"


def _refuse(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def max_request_bytes() -> int:
    """The byte limit of a request's texts: BERTPIPE_MAX_REQUEST_BYTES, else the default."""
    raw = os.environ.get(MAX_REQUEST_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_REQUEST_BYTES
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if value < 1:
        raise BertpipeError(f"{MAX_REQUEST_BYTES_ENV}={raw!r}: must be a whole number of bytes above 0, e.g. "
                            f"{MAX_REQUEST_BYTES_ENV}={DEFAULT_MAX_REQUEST_BYTES} (16 MiB, the default when unset)")
    return value


def size_over(texts: list, limit: int) -> tuple[int, int] | None:
    """(row, bytes counted by then) as soon as the texts' UTF-8 bytes exceed limit; None if they fit.
    The count is a lower bound of the texts' size up to that row.

    Nothing is joined or copied whole: an ASCII text's length is its size (str.isascii is O(1)),
    a text longer than what is left of the limit is over whatever its characters (each is at least
    one byte), and any other is encoded a slice at a time. Non-strings count 0 (refused by row later).
    """
    total = 0
    for row, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            continue
        if text.isascii() or total + len(text) > limit:
            total += len(text)
        else:
            for start in range(0, len(text), _SIZE_SLICE):
                total += len(text[start : start + _SIZE_SLICE].encode("utf-8", "surrogatepass"))
                if total > limit:
                    break
        if total > limit:
            return row, total
    return None


def checked_texts(model_input, norm: Normalization, max_bytes: int) -> list[str]:
    """The request's texts, or an MlflowException (HTTP 400) that names the first bad row and why.
    norm: the model's normalisation, so a text is judged as ingest judged its training rows;
    max_bytes: the UTF-8 bytes all texts may hold together (max_request_bytes)."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise _refuse(f"the request has no 'text' column (columns: {', '.join(map(str, model_input.columns))}); "
                          'send {"dataframe_records": [{"text": "..."}]}')
        texts = model_input["text"].tolist()
    else:
        texts = list(model_input)
    if len(texts) > MAX_ROWS_PER_REQUEST:
        raise _refuse(f"the request has {len(texts)} rows, more than the {MAX_ROWS_PER_REQUEST} one request may "
                      "hold; split it into smaller requests")
    if over := size_over(texts, max_bytes):
        row, size = over
        raise _refuse(f"the request's texts hold more than the {max_bytes:,} bytes (UTF-8) one request may hold: "
                      f"at least {size:,} bytes by row {row}; split it into smaller requests, or raise the limit with "
                      f"{MAX_REQUEST_BYTES_ENV} where the model loads")
    for row, text in enumerate(texts, start=1):
        if text is None or (isinstance(text, float) and pd.isna(text)):
            raise _refuse(f"row {row}: text is null; every row needs a non-empty string")
        if not isinstance(text, str):
            raise _refuse(f"row {row}: text is a {type(text).__name__} ({text!r:.40}), not a string")
        if why := unusable_reason(text, norm):
            raise _refuse(f"row {row}: the text is unusable ({why}), as ingest would quarantine it; "
                          "every row needs a text with something to read")
    return texts


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from bertpipe.inference import Classifier

        if os.environ.get(_SCORING_SERVER_ENV):
            # The server reads a request into pandas strings, arrow-backed by default, which cannot
            # hold a lone surrogate (a JSON "\ud83d"): the request would fail there, a 400 that names
            # no row. Python-backed strings hold it, so checked_texts names the row. Set once, in the
            # server's own process only: a process that loads the model itself keeps its options.
            pd.set_option("mode.string_storage", "python")
        self.max_request_bytes = max_request_bytes()
        # Served = registered: the files it carries are those its manifest lists (bertpipe.manifest).
        check_loaded(context.artifacts.get(MANIFEST_ARTIFACT))
        self.classifier = Classifier.load(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = checked_texts(model_input, self.classifier.meta.norm(), self.max_request_bytes)
        return self.classifier.predict_frame(texts)


mlflow.models.set_model(TextClassifierModel())
