import pandas as pd

from bertpipe.text import Normalization, normalize
from bertpipe.validation import validate


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
    reasons = dict(zip(result.quarantined["source_row"], result.quarantined["reason"]))
    assert reasons == {1: "empty text", 4: "unknown label", 6: "empty text",
                       2: "duplicate text with conflicting labels", 5: "duplicate text with conflicting labels"}


def test_label_names_default_to_sorted_source_values_and_map():
    raw = pd.DataFrame({"source_row": range(3), "text": ["a", "b", "c"], "label": [1, 0, 1]})
    result = validate(raw, Normalization(), label_map={"0": "negative", "1": "positive"})
    assert result.label_names == ("negative", "positive")
    assert result.kept["label"].tolist() == [1, 0, 1]
