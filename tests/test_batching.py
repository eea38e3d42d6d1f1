import numpy as np

from bertpipe.artifacts import TokenizedSplit
from bertpipe.batching import collate, length_grouped_batches, shard, sorted_batches


def test_length_grouped_batches_cover_each_row_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    batches = length_grouped_batches(lengths, batch_size=16, group_batches=10, seed=1)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    # Within a batch lengths are close: mean spread far below that of random batches.
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([lengths[b].max() - lengths[b].min() for b in np.array_split(rng.permutation(1000), 63)])
    assert spread < random_spread / 3
    assert [b.tolist() for b in batches] == [b.tolist() for b in length_grouped_batches(lengths, 16, 10, seed=1)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in length_grouped_batches(lengths, 16, 10, seed=2)]


def test_shard_gives_each_rank_an_equal_disjoint_share():
    batches = [np.array([i]) for i in range(11)]
    parts = [shard(batches, r, 2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 5
    assert not {int(b[0]) for b in parts[0]} & {int(b[0]) for b in parts[1]}


def test_collate_pads_to_multiple_of_8_with_mask():
    rows = [np.arange(1, 4, dtype=np.int32), np.arange(1, 11, dtype=np.int32)]
    split = TokenizedSplit.from_rows(rows, np.array([0, 1]))
    batch = collate(split, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [3, 10]
    assert batch["input_ids"][0, 3:].eq(0).all() and batch["labels"].tolist() == [0, 1]


def test_sorted_batches_for_inference_cover_rows():
    lengths = np.array([3, 9, 1, 7, 5])
    batches = sorted_batches(lengths, 2)
    assert np.concatenate(batches).tolist() == [1, 3, 4, 0, 2]
