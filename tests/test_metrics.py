"""Checkpoint selection: which validation result counts as better."""

import math

from bertpipe.metrics import is_better


def test_a_higher_value_wins_and_the_first_evaluation_always_does():
    assert is_better(0.5, None)
    assert is_better(0.9, 0.8, new_loss=0.9, best_loss=0.1)
    assert not is_better(0.8, 0.9, new_loss=0.1, best_loss=0.9)


def test_a_tie_goes_to_the_lower_validation_log_loss():
    # The quickstart's case: accuracy 0.886 at steps 250 and 500, log loss 0.350 then 0.295.
    assert is_better(0.886, 0.886, new_loss=0.295, best_loss=0.350)
    assert not is_better(0.886, 0.886, new_loss=0.350, best_loss=0.295)
    assert not is_better(0.886, 0.886, new_loss=0.3, best_loss=0.3)  # a full tie keeps the earlier step


def test_nan_never_wins():
    assert not is_better(math.nan, 0.1)
    assert not is_better(0.886, 0.886, new_loss=math.nan, best_loss=0.3)
