import numpy as np
import pytest
from transformers import AutoTokenizer

from bertpipe.embedded import embedded_model_dir
from bertpipe.tokens import SpecialLayout, encode, length_stats, truncate


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
    rows, lengths = encode(tokenizer, [text, "short one"], SpecialLayout.probe(tokenizer), 32, "head_tail", 4)
    long, short = rows
    assert len(long) == 32 and lengths[0] > 300
    words = tokenizer.convert_ids_to_tokens(long.tolist())
    assert words[:2] == ["[CLS]", "start"] and words[-3:] == ["very", "end", "[SEP]"]
    assert tokenizer.decode(short, skip_special_tokens=True) == "short one"
    assert long.dtype == np.int32


def test_length_stats():
    stats = length_stats(np.array([10, 20, 30, 40]), budget=25)
    assert stats["rows"] == 4 and stats["mean_tokens"] == 25 and stats["share_truncated"] == 0.5
