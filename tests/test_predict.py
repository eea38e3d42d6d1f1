"""The prediction command: texts as arguments, CSV / JSONL files, stdin; a checkpoint folder
or a registry URI. The models put ~all probability on one class, so every label is known."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from bertpipe import predict
from bertpipe.registry import set_champion
from tests.mlops_helpers import constant_checkpoints, log_and_register, model_name


@pytest.fixture
def positive(store, tmp_path_factory, tiny_bert) -> str:
    """The always-positive checkpoint folder."""
    return str(constant_checkpoints(tmp_path_factory, tiny_bert)[1])


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_texts_as_arguments_give_jsonl_on_stdout(positive, capsys):
    predict.main(["--model", positive, "A wonderful film.", "Dull and far too long."])
    rows = jsonl(capsys.readouterr().out)
    assert [r["text"] for r in rows] == ["A wonderful film.", "Dull and far too long."]
    assert [r["label"] for r in rows] == ["positive", "positive"]
    for r in rows:
        assert r["prob_positive"] > 0.99 and r["prob_negative"] + r["prob_positive"] == pytest.approx(1.0)


def test_csv_in_same_rows_out_with_label_and_probabilities(positive, tmp_path):
    (tmp_path / "in.csv").write_text('id,text,label\n007,"great, really",negative\n008,,positive\n009,awful,negative\n')
    predict.main(["--model", positive, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")])
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    # The input's own `label` column stays; the prediction columns take a prefix instead.
    assert list(out.columns) == ["id", "text", "label", "predicted_label", "predicted_prob_negative",
                                 "predicted_prob_positive", "predicted_reason"]
    assert out["id"].tolist() == ["007", "008", "009"] and out["label"].tolist() == ["negative", "positive", "negative"]
    assert out["predicted_label"].tolist() == ["positive", "", "positive"]  # row 2 has no text: kept, not scored
    assert out["predicted_reason"].tolist() == ["", "no text", ""]
    assert float(out["predicted_prob_positive"][0]) > 0.99


def test_jsonl_file_and_stdin(positive, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.jsonl").write_text('{"text": "fine", "meta": {"k": 1}}\n\n{"text": "bad"}\n')
    predict.main(["--model", positive, "--input", str(tmp_path / "in.jsonl")])
    rows = jsonl(capsys.readouterr().out)  # the blank line stays a row, so output lines match input lines
    assert [r["meta"] for r in rows[:1]] == [{"k": 1}] and [r["label"] for r in rows] == ["positive", None, "positive"]
    assert [r["reason"] for r in rows] == [None, "no text", None]

    monkeypatch.setattr("sys.stdin", io.StringIO("first review\n\n   \nsecond review\n"))
    predict.main(["--model", positive])
    rows = jsonl(capsys.readouterr().out)
    assert [r["text"] for r in rows] == ["first review", "", "   ", "second review"]
    assert [r["label"] for r in rows] == ["positive", None, None, "positive"]
    assert [r["reason"] for r in rows] == [None, "no text", "no text", None]

    monkeypatch.setattr("sys.stdin", io.StringIO("text\nfrom a csv on stdin\n"))
    predict.main(["--model", positive, "--input", "-", "--input-format", "csv"])
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out["label"].tolist() == ["positive"] and out["text"].tolist() == ["from a csv on stdin"]


def test_registry_uri(store, tmp_path_factory, tiny_bert, request, capsys):
    name = model_name(request)
    log_and_register(constant_checkpoints(tmp_path_factory, tiny_bert)[0], name)  # always negative
    set_champion(MlflowClient(), name, "1")
    predict.main(["--model", f"models:/{name}@champion", "a wonderful film"])
    assert jsonl(capsys.readouterr().out)[0]["label"] == "negative"


def test_bad_inputs_say_what_to_do(positive, tmp_path):
    (tmp_path / "in.csv").write_text("review\nsome text\n")
    with pytest.raises(ValueError, match=r"in.csv: no 'text' column \(found: review\); name the text column with"):
        predict.main(["--model", positive, "--input", str(tmp_path / "in.csv")])
    (tmp_path / "in.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"in.jsonl line 2: not valid JSON"):
        predict.main(["--model", positive, "--input", str(tmp_path / "in.jsonl")])
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(ValueError, match=r"in.txt: unknown file type; use a .csv or .jsonl name, or say --input-"):
        predict.main(["--model", positive, "--input", str(tmp_path / "in.txt")])
    with pytest.raises(FileNotFoundError, match="no such folder"):
        predict.main(["--model", str(tmp_path / "nothing-here"), "text"])
    with pytest.raises(SystemExit):
        predict.main(["--model", positive, "--input", str(tmp_path / "in.csv"), "a text too"])
