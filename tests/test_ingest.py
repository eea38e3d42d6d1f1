"""The ingest stage on small files: quarantine with reasons, counts that add up, clear failures."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bertpipe.contracts import DatasetMeta
from stages import ingest
from tests.conftest import write_params

GOOD = [("a wonderful film", "pos"), ("a dull film", "neg"), ("great acting", "pos"), ("poor plot", "neg"),
        ("loved it", "pos"), ("hated it", "neg")]


def write_csv(path, rows: list[tuple[str, str]], extra: bytes = b"") -> None:
    lines = [b"id,review,stars,sentiment"]
    lines += [f'{i},"{text}",5,{label}'.encode() for i, (text, label) in enumerate(rows)]
    path.write_bytes(b"\n".join(lines) + b"\n" + extra)


def run(tmp_path, **ingest_values) -> dict:
    params = write_params(tmp_path / "params.yaml", ingest={"source": "csv", "path": str(tmp_path / "r.csv"),
                                                            "text_column": "review", "label_column": "sentiment",
                                                            "label_names": ["neg", "pos"], **ingest_values})
    ingest.main(["--params", str(params), "--out", str(tmp_path / "ing"), "--metrics", str(tmp_path / "m.json"),
                 "--cache-dir", str(tmp_path / "cache")])
    return json.loads((tmp_path / "m.json").read_text())


def test_every_row_is_kept_quarantined_or_counted_as_duplicate(tmp_path):
    bad = [("", "pos"), ("no label at all", ""), ("labelled oddly", "meh"), ("a wonderful film", "pos"),
           ("same text", "pos"), ("same   text", "neg")]
    write_csv(tmp_path / "r.csv", GOOD + bad, extra=b'99,"caf\xe9 cr\xe8me",5,pos\n')
    counts = run(tmp_path, max_quarantine_fraction=0.5)
    assert counts["rows_in"] == 13
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] + counts["duplicates_removed"]
    assert (counts["kept"], counts["quarantined"], counts["duplicates_removed"]) == (6, 6, 1)
    q = pd.read_parquet(tmp_path / "ing/quarantine.parquet")
    assert dict(zip(q["location"], q["reason"], strict=True)) == {
        "line 8": "empty text", "line 9": "missing label", "line 10": "unknown label",
        "line 12": "duplicate text with conflicting labels", "line 13": "duplicate text with conflicting labels",
        "line 14": "undecodable bytes (not UTF-8)"}
    assert q["source_row"].tolist() == [6, 7, 8, 10, 11, 12]
    assert counts["quarantined_by_reason"]["undecodable bytes (not UTF-8)"] == 1
    kept = pd.read_parquet(tmp_path / "ing/reviews.parquet")
    assert list(kept.columns) == ["id", "text", "label", "source_split"]
    assert kept["text"].is_unique and kept["label"].tolist() == [1, 0, 1, 0, 1, 0]
    meta = DatasetMeta.read(tmp_path / "ing")
    assert meta.labels == ["neg", "pos"] and meta.source == "csv"
    assert meta.origin["path"].endswith("r.csv") and len(meta.origin["sha256"]) == 64
    assert meta.normalization == {"html_breaks": True, "html_entities": True, "whitespace": True,
                                     "unicode_nfc": True}


def test_label_order_from_params_travels_to_meta(tmp_path):
    rows = [(f"text number {i}", ["bad", "okay", "good"][i % 3]) for i in range(9)]
    write_csv(tmp_path / "r.csv", rows)
    run(tmp_path, label_names=["bad", "okay", "good"])
    meta = DatasetMeta.read(tmp_path / "ing")
    kept = pd.read_parquet(tmp_path / "ing/reviews.parquet")
    assert meta.labels == ["bad", "okay", "good"]  # train turns this into the model's id2label
    assert kept["label"].tolist() == [0, 1, 2] * 3


def test_too_many_quarantined_rows_fail_naming_the_labels_and_the_fix(tmp_path):
    write_csv(tmp_path / "r.csv", GOOD)
    with pytest.raises(ValueError, match=r"6 of 6 rows \(100\.0%\) of .*r\.csv were quarantined .*more than "
                                         r"ingest.max_quarantine_fraction=0\.05\. Labels that are not a class of "
                                         r"ingest.label_names=\['negative', 'positive'\]: 'neg' \(3 rows\), 'pos' "
                                         r"\(3 rows\); set ingest.label_names .*First rows set aside: line 2 "
                                         r"\(unknown label\)"):
        run(tmp_path, label_names=["negative", "positive"])
    assert not (tmp_path / "ing").exists()  # nothing half-written


def test_fewer_than_two_classes_fail(tmp_path):
    write_csv(tmp_path / "r.csv", [(text, "pos") for text, _ in GOOD])
    with pytest.raises(ValueError, match=r"fewer than two classes remain after validation of .*r\.csv: "
                                         r"\{'neg': 0, 'pos': 6\}.*check ingest.label_column='sentiment'"):
        run(tmp_path)


def test_hostile_texts_are_quarantined_with_their_own_reasons(tmp_path):
    """Lone surrogates (valid JSON escapes), NUL-only and empty-after-normalisation texts are set
    aside, zero-width characters do not hide duplicates, a 10 MB text is a normal row."""
    lines = [json.dumps({"review": t, "sentiment": lab}) for t, lab in GOOD]
    lines += ['{"review": "broken emoji \\ud83d here", "sentiment": "pos"}',  # a lone high surrogate
              '{"review": "fine", "sentiment": "\\udfff"}',  # ... in a label
              json.dumps({"review": "\x00\x00 \x00", "sentiment": "neg"}),
              json.dumps({"review": "<br /><br />\u200b&nbsp;", "sentiment": "pos"}),
              json.dumps({"review": "\ufeffa wonder\u200bful film\u200d", "sentiment": "pos"}),  # duplicate of line 1
              json.dumps({"review": "huge " * 2_100_000, "sentiment": "neg"})]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts = run(tmp_path, source="jsonl", path=str(tmp_path / "r.jsonl"), max_quarantine_fraction=0.5)
    assert counts["rows_in"] == 12
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] + counts["duplicates_removed"]
    assert (counts["kept"], counts["quarantined"], counts["duplicates_removed"]) == (7, 4, 1)
    q = pd.read_parquet(tmp_path / "ing/quarantine.parquet")
    assert dict(zip(q["location"], q["reason"], strict=True)) == {
        "line 7": "code points that cannot be written as UTF-8 (lone surrogates)",
        "line 8": "code points that cannot be written as UTF-8 (lone surrogates)",
        "line 9": "only NUL characters", "line 10": "empty after normalisation"}
    assert q["text"].tolist()[0] == "broken emoji \ufffd here"
    kept = pd.read_parquet(tmp_path / "ing/reviews.parquet")
    assert len(kept["text"].iloc[-1]) == len("huge " * 2_100_000) - 1


def test_chunks_of_two_rows_give_the_same_bytes_as_one_chunk(tmp_path, monkeypatch):
    """Duplicates and conflicting labels whose copies lie in different chunks are found all the same."""
    more = [("a wonderful film", "pos"), ("poor   plot", "pos"), ("loved it", "pos"), ("", "neg")]
    write_csv(tmp_path / "r.csv", GOOD + more)
    outputs = []
    for chunk_rows in (2, ingest.CHUNK_ROWS):
        monkeypatch.setattr(ingest, "CHUNK_ROWS", chunk_rows)
        counts = run(tmp_path, max_quarantine_fraction=0.5)
        files = sorted(p.name for p in (tmp_path / "ing").iterdir())
        outputs.append((counts, {name: (tmp_path / "ing" / name).read_bytes() for name in files}))
    assert outputs[0] == outputs[1]
    counts, files = outputs[0]
    assert sorted(files) == ["meta.json", "quarantine.parquet", "reviews.parquet"]  # no scratch file left
    assert (counts["kept"], counts["quarantined"], counts["duplicates_removed"]) == (5, 3, 2)
    q = pd.read_parquet(tmp_path / "ing/quarantine.parquet")
    assert dict(zip(q["location"], q["reason"], strict=True)) == {
        "line 5": "duplicate text with conflicting labels", "line 9": "duplicate text with conflicting labels",
        "line 11": "empty text"}


def test_the_test_split_copy_is_kept_when_it_comes_chunks_later(tmp_path, monkeypatch):
    for split, cls, name, text in [("train", "pos", "1_9.txt", "same review"), ("train", "pos", "2_9.txt", "fine"),
                                   ("train", "neg", "3_2.txt", "awful"), ("train", "neg", "4_2.txt", "dull"),
                                   ("test", "neg", "5_1.txt", "boring"), ("test", "pos", "6_8.txt", "same  review")]:
        (tmp_path / "acl" / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "acl" / split / cls / name).write_text(text)
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    counts = run(tmp_path, source="aclimdb", path=str(tmp_path / "acl"), label_names=[])
    kept = pd.read_parquet(tmp_path / "ing/reviews.parquet")
    assert counts["duplicates_removed"] == 1 and counts["kept_by_source_split"] == {"test": 2, "train": 3}
    assert kept.loc[kept["text"] == "same review", ["id", "source_split"]].values.tolist() == [[5, "test"]]
    assert kept["id"].tolist() == [0, 1, 3, 4, 5]  # source order: train/neg, train/pos, test/neg, test/pos
