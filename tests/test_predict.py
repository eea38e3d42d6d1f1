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
from bertpipe.text import Normalization
from bertpipe.validation import validate
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
    assert out["predicted_reason"].tolist() == ["", "empty text", ""]  # as ingest would quarantine it
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
    assert [r["reason"] for r in rows] == [None, "empty text", "empty text", None]

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


# Texts ingest quarantines, with its reasons: each normalises to nothing, or holds a lone surrogate.
UNUSABLE = {"\u200b\u200b": "empty after normalisation", "\x00\x00": "only NUL characters",
            "<br /><br />": "empty after normalisation", "&nbsp;": "empty after normalisation",
            "\t \r": "empty text", "bad \ud83d half": "code points that cannot be written as UTF-8 (lone surrogates)"}


def test_texts_ingest_would_quarantine_get_its_reason_and_no_prediction(positive, tmp_path):
    texts = ["a fine film", *UNUSABLE]
    raw = pd.DataFrame({"source_row": range(len(texts)), "text": pd.Series(texts, dtype=object), "label": "pos"})
    ingest = validate(raw, Normalization(), label_names=("pos",))
    assert dict(zip(ingest.quarantined["source_row"], ingest.quarantined["reason"], strict=True)) == {
        i + 1: why for i, why in enumerate(UNUSABLE.values())}  # the reasons are ingest's own
    # ensure_ascii: the lone surrogate travels as the JSON escape \ud83d
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    predict.main(["--model", positive, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")])
    rows = jsonl((tmp_path / "out.jsonl").read_text(encoding="utf-8"))  # UTF-8: the surrogate went out escaped
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == ["positive"] + [None] * len(UNUSABLE)
    assert [r["reason"] for r in rows] == [None, *UNUSABLE.values()]


def test_predicts_own_jsonl_reads_back_row_for_row(positive, tmp_path):
    """Lines end at \\n only: U+2028, \\x1c and \\x0c are inside a text; a \\r before \\n goes."""
    (tmp_path / "in.txt").write_bytes("first\u2028half\r\nx\x1cy\n\x0c page\n\nlast".encode())
    predict.main(["--model", positive, "--input", str(tmp_path / "in.txt"), "--input-format", "lines",
                  "--output", str(tmp_path / "once.jsonl")])
    once = jsonl_lines(tmp_path / "once.jsonl")
    assert [r["text"] for r in once] == ["first\u2028half", "x\x1cy", "\x0c page", "", "last"]
    assert [r["label"] for r in once] == ["positive", "positive", "positive", None, "positive"]
    predict.main(["--model", positive, "--input", str(tmp_path / "once.jsonl"),
                  "--output", str(tmp_path / "twice.jsonl")])
    twice = jsonl_lines(tmp_path / "twice.jsonl")
    assert len(twice) == len(once) and [r["text"] for r in twice] == [r["text"] for r in once]
    assert [r["predicted_label"] for r in twice] == [r["label"] for r in once]  # its own label column stays


def jsonl_lines(path) -> list[dict]:
    """A JSONL file split at \\n only, as predict reads it."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_files_are_read_scored_and_written_a_chunk_at_a_time(positive, tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "CHUNK_ROWS", 3)
    writes = []
    write = predict.RowWriter.write
    monkeypatch.setattr(predict.RowWriter, "write", lambda self, rows: writes.append(len(rows)) or write(self, rows))
    pd.DataFrame({"id": range(8), "text": [f"review {i}" if i != 4 else "" for i in range(8)]}).to_csv(
        tmp_path / "in.csv", index=False)
    predict.main(["--model", positive, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")])
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert writes == [3, 3, 2] and out["id"].tolist() == [str(i) for i in range(8)]
    assert out["label"].tolist() == ["positive"] * 4 + [""] + ["positive"] * 3  # one output row per input row
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n{"text": "d", "extra": 1}\n')
    with pytest.raises(ValueError, match=r"in.jsonl row 4: key 'extra' is in none of the first 3 rows.*write JSONL"):
        predict.main(["--model", positive, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.csv")])
    assert not (tmp_path / "o.csv").exists()  # no half-written output
