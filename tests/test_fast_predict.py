"""The prediction fast path (Classifier): precision chosen from the hardware, SDPA attention,
length-sorted batches that still come back in the input order."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from bertpipe import modeling
from bertpipe.contracts import CheckpointMeta
from bertpipe.inference import Classifier, intra_op_threads, worker_batch_size
from tests.conftest import tiny_reviews


@pytest.fixture(autouse=True)
def two_intra_op_threads():
    """Two torch threads, whatever the suite's workers were given (tests/conftest.py): the thread
    checks below would pass vacuously with a process default of one."""
    with intra_op_threads(2):
        yield


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, tiny_bert):
    """A tiny BERT classifier with a random head, so different texts get different probabilities."""
    folder = tmp_path_factory.mktemp("random-classifier")
    config = BertConfig.from_pretrained(tiny_bert, num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                                        label2id={"a": 0, "b": 1, "c": 2})
    torch.manual_seed(1)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    CheckpointMeta(base_model=str(tiny_bert), base_model_revision="", max_length=64, truncation="head_tail",
                   head_tokens=16, pad_token_id=0, normalization={}, labels=["a", "b", "c"]).write(folder)
    return folder


def test_precision_follows_the_hardware(random_checkpoint, monkeypatch):
    monkeypatch.setattr(modeling, "cpu_has_bf16", lambda: True)
    fast = Classifier.load(random_checkpoint)
    assert fast.dtype == torch.bfloat16 and fast.model.config._attn_implementation == "sdpa"
    assert Classifier.load(random_checkpoint, precision="fp32").dtype is None
    monkeypatch.setattr(modeling, "cpu_has_bf16", lambda: False)  # emulated bf16 would be slower
    assert Classifier.load(random_checkpoint).dtype is None


@pytest.mark.parametrize("workers", [1, 3])
def test_sorted_batches_come_back_in_input_order(random_checkpoint, workers):
    texts = tiny_reviews(20)["text"].tolist()
    classifier = replace(Classifier.load(random_checkpoint, precision="fp32"), workers=workers)
    threads = torch.get_num_threads()
    together = classifier.predict_proba(texts, batch_size=4)  # 5 batches sorted by length, over the workers
    assert torch.get_num_threads() == threads  # the workers' one intra-op thread each is undone
    one_by_one = np.concatenate([classifier.predict_proba([t], batch_size=1) for t in texts])
    assert together.shape == (20, 3) and np.allclose(together.sum(axis=1), 1)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert len({round(float(p), 6) for p in together[:, 0]}) > 10  # the texts really differ


def test_concurrent_calls_score_with_the_settings_fixed_at_load(random_checkpoint):
    """As the scoring server calls: from many request threads at once. Each gets what one call alone
    gets, no call changes torch's thread settings, and a thread started afterwards still gets the
    process default (a per-call set_num_threads(1) once left it at 1 for later requests)."""
    threads = torch.get_num_threads()
    classifier = replace(Classifier.load(random_checkpoint, precision="fp32"), workers=2)
    texts = tiny_reviews(24)["text"].tolist()
    alone = classifier.predict_proba(texts, batch_size=4)
    with ThreadPoolExecutor(8) as callers:
        together = list(callers.map(lambda _: classifier.predict_proba(texts, batch_size=4), range(16)))
    for probs in together:
        np.testing.assert_allclose(probs, alone, atol=1e-6)
    assert torch.get_num_threads() == threads
    assert {classifier.pool.submit(torch.get_num_threads).result() for _ in range(4)} == {1}  # fixed at load
    with ThreadPoolExecutor(1) as later:
        assert later.submit(torch.get_num_threads).result() == threads


def test_small_calls_are_shared_out_evenly_over_the_workers():
    assert worker_batch_size(100, 32, 2) == 13  # 8 batches: 4 per worker, not 64 texts against 36
    assert worker_batch_size(1000, 32, 2) == 32  # enough batches already: the size as asked
    assert worker_batch_size(3, 32, 2) == 1
    assert worker_batch_size(100, 32, 1) == 32  # one worker (evaluate, promote): the size as asked


def test_a_worker_error_stops_the_others_and_reaches_the_caller(random_checkpoint, monkeypatch):
    classifier = replace(Classifier.load(random_checkpoint, precision="fp32"), workers=2)
    calls, forward = [], classifier.model.forward

    def first_batch_fails(*args, **kwargs):  # the first batch fails at once, the others take 50 ms
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("forward failed")
        time.sleep(0.05)
        return forward(*args, **kwargs)
    monkeypatch.setattr(classifier.model, "forward", first_batch_fails)
    with pytest.raises(RuntimeError, match="forward failed"):
        classifier.predict_proba(tiny_reviews(20)["text"].tolist(), batch_size=1)  # 20 batches
    assert len(calls) <= 2  # the failing batch and at most the one the other worker had begun


def test_bf16_stays_close_to_fp32(random_checkpoint):
    texts = tiny_reviews(20)["text"].tolist()
    fp32 = Classifier.load(random_checkpoint, precision="fp32").predict_proba(texts)
    bf16 = Classifier.load(random_checkpoint, precision="bf16").predict_proba(texts)
    assert np.abs(bf16 - fp32).max() < 0.02
