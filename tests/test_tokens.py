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


@given(st.lists(st.sampled_from(HOSTILE), max_size=120).map("".join), st.sampled_from(STRATEGIES),
       st.booleans())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_cut_then_tokenize_equals_tokenize_then_truncate(tokenizer, text, strategy, normalise):
    name, head = strategy
    norm = Normalization() if normalise else None
    whole = Encoder(tokenizer, 16, name, min(head, 5), cut_chars=0)
    cut = Encoder(tokenizer, 16, name, min(head, 5), cut_chars=1)
    reference = normalize(text, norm) if norm else text
    assert cut.encode([text], norm).rows()[0].tolist() == whole.encode([reference]).rows()[0].tolist()


def test_a_10_mb_text_costs_what_a_long_review_costs(tokenizer, monkeypatch):
    """Only windows of a few characters per kept token reach normalisation and the tokenizer."""
    encoder = Encoder(tokenizer, 256, "head_tail", 64)
    seen = []
    original = encoder.content_ids
    monkeypatch.setattr(encoder, "content_ids", lambda texts: seen.extend(map(len, texts)) or original(texts))
    text = "a fine film " * 900_000  # 10.8 MB
    row = encoder.encode([text], Normalization()).rows()[0]
    assert len(row) == 256 and sum(seen) < 16 * 256
    assert tokenizer.convert_ids_to_tokens(row.tolist())[:3] == ["[CLS]", "a", "fine"]


def test_texts_without_whitespace_to_cut_at_are_tokenized_whole(tokenizer):
    text = "x" * 50_000 + " " + "\x0b" * 50_000 + "end"  # \x0b is dropped by the tokenizer: no cut there
    encoder = Encoder(tokenizer, 16, "tail", 0, cut_chars=1)
    assert encoder.encode([text]).rows()[0].tolist() == Encoder(tokenizer, 16, "tail", 0, cut_chars=0).encode(
        [text]).rows()[0].tolist()


def test_cut_windows_end_and_start_at_whitespace():
    assert cut_windows("one two three four", 2, 3) == ("one", "four")
    assert cut_windows("one two", 4, 4) is None  # the windows would meet: keep the whole text
    assert cut_windows("one\x0btwo three", 1, 0) == ("one\x0btwo", "")
