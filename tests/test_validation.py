import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertpipe import validation
from bertpipe.lineage import row_hashes
from bertpipe.text import Normalization, match_key, normalize
from bertpipe.validation import label_text, prepare, unusable_reason, validate


def test_normalize_html_breaks_entities_whitespace():
    text = "Great&amp;fun.<br /><br />  Really   good\u00a0film "
    assert normalize(text, Normalization()) == "Great&fun.\nReally good film"
    assert normalize(text, Normalization(False, False, False, False)) == text


def test_validate_sets_rows_aside_with_reasons_and_counts_add_up():
    raw = pd.DataFrame({
        "source_row": range(7),
        "text": ["good film", "  ", "bad film", "good film", "so-so", "bad film", None],
        "label": ["pos", "neg", "neg", "pos", "meh", "pos", "neg"],
    })
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    counts = result.counts(len(raw))
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] + counts["duplicates_removed"]
    assert result.kept["text"].tolist() == ["good film"] and result.kept["label"].tolist() == [1]
    assert counts["duplicates_removed"] == 1
    reasons = dict(zip(result.quarantined["source_row"], result.quarantined["reason"], strict=True))
    assert reasons == {1: "empty text", 4: "unknown label", 6: "empty text",
                       2: "duplicate text with conflicting labels", 5: "duplicate text with conflicting labels"}


def test_label_names_default_to_sorted_source_values_and_map():
    raw = pd.DataFrame({"source_row": range(3), "text": ["a", "b", "c"], "label": [1, 0, 1]})
    result = validate(raw, Normalization(), label_map={"0": "negative", "1": "positive"})
    assert result.label_names == ("negative", "positive")
    assert result.kept["label"].tolist() == [1, 0, 1]


def test_undecodable_bytes_are_quarantined_with_their_location():
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # latin-1 byte in a UTF-8 file
    raw = pd.DataFrame({"source_row": [0, 1], "location": ["line 2", "line 3"],
                        "text": pd.Series(["fine film", bad], dtype=object), "label": ["pos", "neg"]})
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    row = result.quarantined.iloc[0]
    assert (row["location"], row["reason"]) == ("line 3", "undecodable bytes (not UTF-8)")
    assert row["text"] == "caf\ufffd au lait"  # shown with the replacement character, writable to parquet
    assert result.kept["text"].tolist() == ["fine film"]


def test_integer_labels_are_ids_into_label_names_and_numbers_are_read_alike():
    raw = pd.DataFrame({"source_row": range(5), "text": list("abcde"), "label": [0, "1", 1.0, " 2 ", None]})
    result = validate(raw, Normalization(), label_names=("neg", "neutral", "pos"))
    assert result.kept["label"].tolist() == [0, 1, 1, 2]
    assert result.quarantined["reason"].tolist() == ["missing label"]
    assert [label_text(v) for v in (3, "3.0", 3.5, True, " x ", "", float("nan"))] == \
        ["3", "3", "3.5", "true", "x", None, None]


def test_many_classes_from_the_data_in_natural_order():
    raw = pd.DataFrame({"source_row": range(4), "text": list("abcd"), "label": ["10", "2", "2", "1"]})
    result = validate(raw, Normalization())
    assert result.label_names == ("1", "2", "10")
    assert result.kept["label"].tolist() == [2, 1, 1, 0]


def test_duplicates_keep_the_copy_in_the_source_test_split():
    raw = pd.DataFrame({"source_row": range(5), "text": ["same", "other", "same", "Same ", "unique"],
                        "label": ["pos", "neg", "pos", "pos", "neg"],
                        "source_split": ["train", "train", "test", "test", "test"]})
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    kept = result.kept.set_index("text")
    assert kept.loc["same", "source_split"] == "test" and kept.loc["same", "id"] == 2
    assert result.kept["id"].tolist() == [1, 2, 4]  # source order; "Same " is "same" by its match key
    counts = result.counts(len(raw))
    assert counts["duplicates_removed"] == 2 and counts["kept_by_source_split"] == {"test": 2, "train": 1}
    assert counts["rows_in"] == counts["kept"] + counts["quarantined"] + counts["duplicates_removed"]


def test_unknown_labels_are_listed_for_the_error_message():
    raw = pd.DataFrame({"source_row": range(4), "text": list("abcd"), "label": ["pos", "neg", "neg", "positive"]})
    result = validate(raw, Normalization(), label_names=("negative", "positive"))
    assert result.unknown_labels() == {"neg": 2, "pos": 1}


MIXED = pd.DataFrame({
    "source_row": range(10),
    "text": ["same", "x", "other", " same\u200b", "x", "", "same", "late", "other", "kept"],
    "label": ["pos", "pos", "neg", "pos", "neg", "pos", "pos", "10", "neg", None],
    "source_split": ["train", "train", "train", "train", "train", "train", "test", "train", "train", "train"],
})


def test_duplicates_and_conflicts_are_found_across_chunks():
    """Row 0 and its copies in later chunks, the test copy (row 6) kept; 'x' conflicts across a
    chunk boundary; a class seen only in the last chunk still takes its place in the names."""
    result = validate(MIXED, Normalization(), chunk_rows=2)
    assert result.label_names == ("10", "neg", "pos")
    assert result.kept["id"].tolist() == [2, 6, 7]
    assert result.kept.set_index("id").loc[6, "source_split"] == "test"
    assert dict(zip(result.quarantined["source_row"], result.quarantined["reason"], strict=True)) == {
        1: "duplicate text with conflicting labels", 4: "duplicate text with conflicting labels",
        5: "empty text", 9: "missing label"}
    counts = result.counts(len(MIXED))
    assert counts["duplicates_removed"] == 3 and counts["kept_by_source_split"] == {"test": 1, "train": 2}


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7])
def test_any_chunk_size_gives_what_one_chunk_gives(chunk_rows):
    whole = validate(MIXED, Normalization(), label_names=("neg", "pos"))
    chunked = validate(MIXED, Normalization(), label_names=("neg", "pos"), chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(chunked.kept, whole.kept)
    pd.testing.assert_frame_equal(chunked.quarantined, whole.quarantined)
    assert chunked.counts(len(MIXED)) == whole.counts(len(MIXED))
    assert chunked.unknown_labels() == whole.unknown_labels() == {"10": 1}


# Variants of one review that lineage (the gate's overlap check) calls one text: case, Unicode
# compatibility forms (NFKC: the "ﬁ" ligature, full-width letters, a no-break space) and whitespace.
VARIANTS = [("Great movie!", "great movie!"), ("a \ufb01lm to see", "a film to see"),
            ("ｇｒｅａｔ ｆｉｌｍ", "great film"), ("so\u00a0good", "so good"), ("tab\tand  spaces ", "tab and spaces"),
            ("line\nbreak", "line break"), ("STRASSE", "straße")]


@pytest.mark.parametrize("first,second", VARIANTS)
def test_texts_lineage_calls_one_are_one_row_after_ingest(first, second):
    raw = pd.DataFrame({"source_row": range(3), "text": [first, second, "another review"],
                        "label": ["pos", "pos", "neg"]})
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    assert result.duplicates_removed == 1 and len(result.kept) == 2
    assert row_hashes([first])[0] == row_hashes([second])[0] != row_hashes(["another review"])[0]
    assert match_key(first) == match_key(second)


@pytest.mark.parametrize("first,second", [("good film", "good films"), ("naïve", "naive"), ("a-b", "a b")])
def test_texts_lineage_tells_apart_stay_two_rows(first, second):
    raw = pd.DataFrame({"source_row": range(2), "text": [first, second], "label": ["pos", "neg"]})
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    assert result.duplicates_removed == 0 and len(result.kept) == 2
    assert row_hashes([first])[0] != row_hashes([second])[0]


def test_variants_with_conflicting_labels_are_quarantined_as_conflicts():
    raw = pd.DataFrame({"source_row": range(2), "text": ["Great movie!", "great  movie!"], "label": ["pos", "neg"]})
    result = validate(raw, Normalization(), label_names=("neg", "pos"))
    assert result.kept.empty and set(result.quarantined["reason"]) == {"duplicate text with conflicting labels"}


# --- one check for every entry point: unusable_reason -------------------------------------------

def ingest_reasons(texts: list[str]) -> list[str]:
    """The reason prepare gives each text by itself ("" = usable)."""
    raw = pd.DataFrame({"source_row": range(len(texts)), "text": pd.Series(texts, dtype=object), "label": "pos"})
    return prepare(raw, Normalization())["reason"].tolist()


LONG = {  # over PROBE_CHARS: decided by the probe, or (nothing to read at the start) normalised whole
    "words after the probe": " " * 5000 + "late words",
    "only break tags": "<br />" * 1000,
    "an entity cut at the probe's end": "&nbsp;" * 1000,  # 4096 = 682 * 6 + 4: the probe ends in "&nbs"
    "NUL, then a word": "\x00" * 5000 + "word",
    "a word, then NUL": "word" + "\x00" * 10_000,
    "zero-width only": "\u200b" * 5000,
    "a surrogate far in": "fine " * 2000 + "\ud800",
}


def test_unusable_reason_is_ingests_reason_for_short_and_long_texts():
    texts = ["good film", "", "   ", "\u200b\u200b", "\x00\x00", "<br /><br />", "&nbsp;", "caf\udce9", "x\ud83d",
             *LONG.values()]
    assert [unusable_reason(t, Normalization()) for t in texts] == ingest_reasons(texts)
    assert [unusable_reason(t, Normalization()) for t in LONG.values()] == [
        "", "empty after normalisation", "empty after normalisation", "", "", "empty after normalisation",
        "code points that cannot be written as UTF-8 (lone surrogates)"]


PROBE_PIECES = ["a", "é", "\u0301", " ", "\n", "\r", "\u2003", "\x00", "\u200b", "\ufeff", "<br />", "<br", " />",
                "<BR>", "&nbsp;", "&nb", "sp;", "&#32;", "&#", "32;", "&#8203;", "&amp", ";", "&", "<", ">"]


@given(st.lists(st.sampled_from(PROBE_PIECES), max_size=60).map("".join))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_probe_decides_as_the_whole_text_does(monkeypatch, text):
    """With a probe of 64 characters, texts of pieces that normalise away, or not, cut anywhere."""
    monkeypatch.setattr(validation, "PROBE_CHARS", 64)
    assert unusable_reason(text, Normalization()) == ingest_reasons([text])[0]
