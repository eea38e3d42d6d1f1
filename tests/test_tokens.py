import base64
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from bertpipe.artifacts import TokenizedSplit, read_tokenized, write_tokenized
from bertpipe.embedded import embedded_model_dir
from bertpipe.sources import movie_reviews
from bertpipe.text import Normalization, normalize
from bertpipe.tokens import (
    Encoder,
    SpecialLayout,
    TokenFileWriter,
    cut_windows,
    length_stats,
    truncate,
)


def test_truncate_strategies():
    ids = list(range(10))
    assert truncate(ids, 4, "head", 0) == [0, 1, 2, 3]
    assert truncate(ids, 4, "tail", 0) == [6, 7, 8, 9]
    assert truncate(ids, 4, "head_tail", 1) == [0, 7, 8, 9]
    assert truncate(ids, 20, "head_tail", 1) == ids  # short rows stay whole


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_model_dir("embedded:minilm-l6"))


def test_special_layout_of_bert(tokenizer):
    layout = SpecialLayout.probe(tokenizer)
    assert layout.prefix == (tokenizer.cls_token_id,) and layout.suffix == (tokenizer.sep_token_id,)


def test_encode_keeps_head_and_tail_within_max_length(tokenizer):
    text = "start " + "middle " * 300 + "the very end"
    chunk = Encoder(tokenizer, 32, "head_tail", 4).encode([text, "short one"])
    rows, lengths = chunk.rows(), chunk.content_lengths
    long, short = rows
    assert len(long) == 32 and lengths[0] > 300
    words = tokenizer.convert_ids_to_tokens(long.tolist())
    assert words[:2] == ["[CLS]", "start"] and words[-3:] == ["very", "end", "[SEP]"]
    assert tokenizer.decode(short, skip_special_tokens=True) == "short one"
    assert long.dtype == np.int32


def test_length_stats():
    stats = length_stats(np.array([10, 20, 30, 40]), budget=25)
    assert stats["rows"] == 4 and stats["mean_tokens"] == 25 and stats["share_truncated"] == 0.5


EDGE_TEXTS = ["Café naïve RÉSUMÉ", "a\x0bb c\x00d", "tab\there\nnew\rline", "hello [CLS] and [cls] [SEP]",
              "中文字符 mixed", "emoji 😀 ok", "x\x7fy", "[MASK]ed", "A [Pad] b", "", "   ", "UPPER lower 123,456"]


def test_encoder_gives_the_tokenizers_own_ids(tokenizer):
    texts = movie_reviews("imdb")["text"].head(300).tolist() + EDGE_TEXTS
    reference = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert Encoder(tokenizer, 512, "head", 0).content_ids(texts) == reference


@pytest.mark.parametrize("strategy,first,last", [("head", "start", "middle"), ("tail", "middle", "end"),
                                                 ("head_tail", "start", "end")])
def test_encoder_strategies(tokenizer, strategy, first, last):
    chunk = Encoder(tokenizer, 16, strategy, 3).encode(["start " + "middle " * 40 + "end", "short"])
    assert chunk.lengths.tolist() == [16, 3] and chunk.content_lengths.tolist() == [42, 1]
    words = tokenizer.convert_ids_to_tokens(chunk.rows()[0].tolist())
    assert (words[1], words[-2]) == (first, last)
    assert chunk.ids.dtype == np.int32


def test_token_file_writer_matches_safetensors_bytes(tmp_path, tokenizer):
    encoder = Encoder(tokenizer, 32, "head_tail", 8)
    texts = movie_reviews("imdb")["text"].head(50).tolist()
    labels = np.arange(50) % 2
    writer = TokenFileWriter(tmp_path / "chunked.safetensors")
    for start in range(0, 50, 16):  # uneven chunks
        writer.add(encoder.encode(texts[start : start + 16]), labels[start : start + 16])
    writer.close()
    whole = encoder.encode(texts)
    write_tokenized(TokenizedSplit.from_rows(whole.rows(), labels), tmp_path / "whole.safetensors")
    assert (tmp_path / "chunked.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()
    back = read_tokenized(tmp_path / "chunked.safetensors")
    assert len(back) == 50 and back.row(3).tolist() == whole.rows()[3].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.safetensors", "whole.safetensors"]


# --- long texts are cut to windows before normalising and tokenizing ------------------------------

STRATEGIES = [("head", 0), ("tail", 0), ("head_tail", 64)]


@pytest.mark.parametrize("strategy,head", STRATEGIES)
def test_cut_windows_keep_what_truncation_keeps_on_the_longest_reviews(tokenizer, strategy, head):
    reviews = sorted(movie_reviews("imdb")["text"].tolist(), key=len)[-300:]
    norm = Normalization()
    whole = Encoder(tokenizer, 256, strategy, head, cut_chars=0)
    cut = Encoder(tokenizer, 256, strategy, head, cut_chars=100)  # cuts every one of them
    expected = [r.tolist() for r in whole.encode([normalize(t, norm) for t in reviews]).rows()]
    assert [r.tolist() for r in cut.encode(reviews, norm).rows()] == expected  # prediction: raw text
    assert [r.tolist() for r in cut.encode([normalize(t, norm) for t in reviews]).rows()] == expected  # stage


# Words, every kind of whitespace, control and zero-width characters, break tags whole and in
# pieces, entities, combining marks, CJK and punctuation: all that could make a cut differ.
HOSTILE = ["word", "Film", "ÉTÉ", "e\u0301", "\u0301", "unbelievably", "中文", "😀", ",", ".", "'", "-",
           " ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u2003", "\u2028",
           "\u3000", "\x00", "\ufffd", "\u200b", "\ufeff", "<br />", "<br", "/>", ">", "<", "br", "<BR  />",
           "&amp;", "&", "amp;", "&#32;", "&#769;", "&lt;br&gt;", "[SEP]", "a" * 120]


@pytest.fixture(scope="module")
def small_encoders(tokenizer) -> dict:
    """(strategy, head tokens) -> encoders of 16 tokens that never cut and that cut every text."""
    return {(name, head): tuple(Encoder(tokenizer, 16, name, min(head, 5), cut_chars=c) for c in (0, 1))
            for name, head in STRATEGIES}


@given(st.lists(st.sampled_from(HOSTILE), max_size=120).map("".join), st.sampled_from(STRATEGIES),
       st.booleans())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cut_then_tokenize_equals_tokenize_then_truncate(small_encoders, text, strategy, normalise):
    norm = Normalization() if normalise else None
    whole, cut = small_encoders[strategy]
    reference = normalize(text, norm) if norm else text
    assert cut.encode([text], norm).rows()[0].tolist() == whole.encode([reference]).rows()[0].tolist()


# 10 MB each: with spaces, a base64 blob, dots and one long word (none of the last three has whitespace)
TEN_MB = {"spaces": "a fine film " * 900_000,
          "base64": base64.b64encode(random.Random(0).randbytes(7_500_000)).decode(),
          "dotted": "a." * 5_000_000, "one_word": "ab" * 5_000_000}


@pytest.mark.parametrize("kind", TEN_MB)
def test_a_10_mb_text_costs_what_a_long_review_costs(tokenizer, monkeypatch, kind):
    """Only windows within the character budget reach normalisation and the tokenizer; with
    spaces, windows of a few characters per kept token."""
    encoder = Encoder(tokenizer, 256, "head_tail", 64)
    seen = []
    original = encoder.content_ids
    monkeypatch.setattr(encoder, "content_ids", lambda texts: seen.extend(map(len, texts)) or original(texts))
    row = encoder.encode([TEN_MB[kind]], Normalization()).rows()[0]
    assert sum(seen) <= (16 * 256 if kind == "spaces" else 2 * (encoder.head_max + encoder.tail_max))
    words = tokenizer.convert_ids_to_tokens(row.tolist())
    if kind == "one_word":  # a word of over 100 characters is one [UNK], in each window as in the whole
        assert words == ["[CLS]", "[UNK]", "[UNK]", "[SEP]"]
    else:
        assert len(row) == 256
        assert words[:3] == {"spaces": ["[CLS]", "a", "fine"], "dotted": ["[CLS]", "a", "."]}.get(kind, words[:3])


def test_a_text_without_whitespace_near_its_ends_is_cut_within_the_budget(tokenizer, monkeypatch):
    """The price of bounded work: where an end gives too few tokens in a whole budget (here 50,000
    characters the tokenizer drops), the windows keep what the budget holds."""
    text = "x" * 50_000 + " " + "\x0b" * 50_000 + "end"  # \x0b is dropped by the tokenizer: no cut there
    encoder = Encoder(tokenizer, 16, "tail", 0, cut_chars=1)
    seen = []
    original = encoder.content_ids
    monkeypatch.setattr(encoder, "content_ids", lambda texts: seen.extend(map(len, texts)) or original(texts))
    assert tokenizer.convert_ids_to_tokens(encoder.encode([text]).rows()[0].tolist()) == ["[CLS]", "end", "[SEP]"]
    assert max(seen) == encoder.tail_max and sum(seen) <= 2 * encoder.tail_max  # not the 100,004 characters
    whole = Encoder(tokenizer, 16, "tail", 0, cut_chars=0).encode([text]).rows()[0]
    assert tokenizer.convert_ids_to_tokens(whole.tolist()) == ["[CLS]", "[UNK]", "end", "[SEP]"]


# Texts without whitespace: base64, minified JSON, dotted runs, and tags and entities that a cut at a
# character can split. (One long word is one [UNK] whole, but one per window: the 10 MB test above.)
NO_WHITESPACE = [base64.b64encode(random.Random(1).randbytes(45_000)).decode(),
                 '{"id":17,"tags":["a","b"],"text":"great&amp;fun<br/>"}' * 1_000, "a." * 30_000,
                 "x&nbsp;y&#32;z<br/>e\u0301,\u200b\x00" * 3_000]


@pytest.mark.parametrize("strategy,head", STRATEGIES)
def test_cuts_at_a_character_keep_what_truncation_keeps(tokenizer, strategy, head):
    norm = Normalization()
    whole = Encoder(tokenizer, 128, strategy, head, cut_chars=0)
    cut = Encoder(tokenizer, 128, strategy, head, cut_chars=1)
    expected = [r.tolist() for r in whole.encode([normalize(t, norm) for t in NO_WHITESPACE]).rows()]
    assert [r.tolist() for r in cut.encode(NO_WHITESPACE, norm).rows()] == expected  # prediction: raw text
    assert [r.tolist() for r in cut.encode([normalize(t, norm) for t in NO_WHITESPACE]).rows()] == expected  # stage


@given(st.lists(st.sampled_from([p for p in HOSTILE if not any(c.isspace() for c in p)]), min_size=150,
                max_size=500).map("".join), st.sampled_from(STRATEGIES), st.booleans())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cut_at_a_character_then_tokenize_equals_tokenize_then_truncate(small_encoders, text, strategy, normalise):
    """Long texts of the hostile pieces without whitespace: the windows are cut at a character."""
    norm = Normalization() if normalise else None
    whole, cut = small_encoders[strategy]
    reference = normalize(text, norm) if norm else text
    assert cut.encode([text], norm).rows()[0].tolist() == whole.encode([reference]).rows()[0].tolist()


def test_cut_windows_end_and_start_at_whitespace():
    assert cut_windows("one two three four", 2, 3) == ("one", "four")
    assert cut_windows("one two", 4, 4) is None  # the windows would meet: keep the whole text
    assert cut_windows("one\x0btwo three", 1, 0) == ("one\x0btwo", "")
    assert cut_windows("onetwothree", 3, 0, head_max=5) == ("one", "")  # no whitespace within 5: cut at 3
    assert cut_windows("one two three", 1, 1, head_max=5, tail_max=6) == ("one", "three")
    assert cut_windows("one two three", 1, 1, head_max=5, tail_max=5) == ("one", "e")  # the space is 6 back
