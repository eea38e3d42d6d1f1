"""Text normalisation: what it removes, that a second pass changes nothing, and that it stays
linear on hostile runs of whitespace (it once took minutes on a text of carriage returns)."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertpipe.text import ZERO_WIDTH, Normalization, normalize

NORM = Normalization()
# Whole break tags, no lone "<" or "&": nested tags and twice-escaped entities are the two
# documented cases where a second pass still changes the text.
PIECES = ["a", "B", "é", "e\u0301", "\u0301", " ", "\t", "\n", "\r", "\x0b", "\x1c", "\x85", "\u00a0",
          "\u2000", "\u2003", "\u2028", "\u3000", "\x00", "<br />", "<BR>", "\u200b", "\u200d", "\ufeff",
          "\u2060", "中", "😀", ".", "/", ">", "&amp;", "&#769;", "&#8203;", "&nbsp;"]


@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
@settings(max_examples=300, deadline=None)
def test_normalize_twice_changes_nothing(text):
    once = normalize(text, NORM)
    assert normalize(once, NORM) == once


def test_zero_width_characters_and_bom_are_removed():
    assert normalize(f"gr{ZERO_WIDTH}eat\ufeff film\u200b", NORM) == "great film"
    assert normalize("a\u200b \u200d b", NORM) == "a b"
    assert normalize("a\u200bb", Normalization(whitespace=False)) == "a\u200bb"  # off with whitespace


def test_whitespace_runs():
    assert normalize("  a \t\u00a0 b <br /><br />c\r\n\r\n d  ", NORM) == "a b\nc\nd"
    assert normalize("a\r\r\rb", NORM) == "a\r\r\rb"  # runs without a newline keep their characters


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        normalize(text, NORM)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("unit", ["\r", "\u2003", " \r", "\t\u2003", "\x0b\n", "<br", "&#", "\u200b \x00é"])
def test_normalize_is_linear_on_hostile_text(unit):
    """A regression guard, not a speed claim: 16x the text costs about 16x the time when linear
    and 256x when quadratic; the bound sits far from both, so a busy machine does not trip it."""
    small, large = unit * (62_500 // len(unit)), unit * (1_000_000 // len(unit))
    assert _seconds(large) < 2.0
    assert _seconds(large) < 48 * max(_seconds(small), 0.002)
