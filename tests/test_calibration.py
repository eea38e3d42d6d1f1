"""Temperature scaling: the fit, that it never changes a predicted class, and the temperature a
checkpoint carries through train's calibrate step, save_pretrained and Classifier.load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from bertpipe.artifacts import TokenizedSplit
from bertpipe.calibration import T_BOUNDS, TEMPERATURE_ATTR, fit_temperature, nll, set_temperature, softmax
from bertpipe.config import TrainParams
from bertpipe.contracts import CheckpointMeta
from bertpipe.inference import Classifier, predict_logits
from bertpipe.params import load_section
from stages import train
from tests.conftest import tiny_reviews, write_params


def sampled(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from their softmax: logits calibrated by construction (T = 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, classes))
    cum = softmax(logits).cumsum(axis=1)
    labels = (rng.random((n, 1)) > cum).sum(axis=1).clip(max=classes - 1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.4, 1.0, 2.5])
def test_the_fit_finds_the_temperature_that_scaled_the_logits(true_t):
    logits, labels = sampled(6000, 3, seed=0)
    # A model whose logits are the calibrated ones times true_t (over-confident when above 1):
    # dividing them by true_t gives back calibrated probabilities.
    fitted = fit_temperature(logits * true_t, labels)
    assert fitted == pytest.approx(true_t, rel=0.06)
    assert fit_temperature(logits * true_t, labels) == fitted  # deterministic


def test_calibration_lowers_the_log_loss_and_never_changes_a_predicted_class():
    logits, labels = sampled(500, 2, seed=1)
    overconfident = logits * 3
    t = fit_temperature(overconfident, labels)
    assert nll(overconfident, labels, t) < nll(overconfident, labels) - 0.05
    for temperature in (t, *T_BOUNDS):
        assert np.array_equal(softmax(overconfident, temperature).argmax(1), overconfident.argmax(1))
    calibrated = softmax(overconfident, t)
    assert np.allclose(calibrated.sum(axis=1), 1) and calibrated.max() < softmax(overconfident).max()


MARGIN = 3.0


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory, tiny_bert):
    """A tiny 2-class checkpoint as versions before temperature scaling wrote them: no temperature.
    The random encoder gives nearly the same output for every text; the head's bias makes the
    logit of `positive` about MARGIN above the other's for all of them."""
    folder = tmp_path_factory.mktemp("old-checkpoint")
    config = BertConfig.from_pretrained(tiny_bert, num_labels=2, id2label={0: "negative", 1: "positive"},
                                        label2id={"negative": 0, "positive": 1})
    torch.manual_seed(3)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, MARGIN]))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    CheckpointMeta(base_model=str(tiny_bert), base_model_revision="", max_length=64, truncation="head_tail",
                   head_tokens=16, pad_token_id=0, normalization={}, labels=["negative", "positive"]).write(folder)
    return folder


def val_split(classifier: Classifier, right_every: int) -> TokenizedSplit:
    """Tiny reviews labelled so that the model is right on all rows but every right_every-th."""
    texts = tiny_reviews(48)["text"].tolist()
    rows = classifier.encoder.encode(texts, classifier.meta.norm()).rows()
    predicted = classifier.predict_proba(texts).argmax(1)
    wrong = np.arange(len(texts)) % right_every == 0
    return TokenizedSplit.from_rows(rows, np.where(wrong, 1 - predicted, predicted))


def train_params(tmp_path, calibrate: bool) -> TrainParams:
    return load_section(TrainParams, "train", write_params(tmp_path / "p.yaml", train={"calibrate": calibrate,
                                                                                      "precision": "fp32"}))


def test_an_old_checkpoint_loads_with_t_1(old_checkpoint):
    assert TEMPERATURE_ATTR not in json.loads((old_checkpoint / "config.json").read_text())
    classifier = Classifier.load(old_checkpoint, precision="fp32")
    split = val_split(classifier, right_every=4)
    logits = predict_logits(classifier.model, split, 8, classifier.device, None, 0)
    assert classifier.temperature == 1.0
    assert np.allclose(classifier.predict_proba(tiny_reviews(48)["text"].tolist()), softmax(logits))


def copy_checkpoint(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder


def test_train_writes_the_fitted_temperature_into_the_checkpoint_and_it_is_applied(tmp_path, old_checkpoint, caplog):
    folder = copy_checkpoint(old_checkpoint, tmp_path / "best")
    before = Classifier.load(old_checkpoint, precision="fp32")
    texts = tiny_reviews(48)["text"].tolist()
    split = val_split(before, right_every=4)
    logits = predict_logits(before.model, split, 8, before.device, None, 0)

    with caplog.at_level(logging.WARNING, logger="train"):
        fit = train.calibrate(folder, logits, split.labels, train_params(tmp_path, calibrate=True))
    t = fit["temperature"]
    # Right on 3 rows in 4 with one margin m on every row: sigmoid(m / T) = 3/4 at T = m / ln 3.
    margin = float((logits[:, 1] - logits[:, 0]).mean())
    assert margin == pytest.approx(MARGIN, abs=0.1) and t == pytest.approx(margin / np.log(3), rel=1e-3)
    assert fit["log_loss_calibrated"] < fit["log_loss_uncalibrated"] and not caplog.records  # inside its range
    assert json.loads((folder / "config.json").read_text())[TEMPERATURE_ATTR] == t
    after = Classifier.load(folder, precision="fp32")  # from_pretrained reads it back
    assert after.temperature == t
    raw, calibrated = before.predict_proba(texts), after.predict_proba(texts)
    assert np.array_equal(raw.argmax(1), calibrated.argmax(1)) and not np.allclose(raw, calibrated)
    assert np.allclose(calibrated, softmax(logits, t))
    # The temperature travels with the weights: a copy re-saved with save_pretrained keeps it.
    after.model.save_pretrained(tmp_path / "copy")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "copy").config.calibration_temperature == t


def test_calibrate_off_writes_t_1_and_a_fit_at_its_bound_warns(tmp_path, old_checkpoint, caplog):
    folder = copy_checkpoint(old_checkpoint, tmp_path / "best")
    config = AutoConfig.from_pretrained(folder)
    set_temperature(config, 3.0)  # an earlier fit: switched off, T goes back to 1
    config.save_pretrained(folder)
    classifier = Classifier.load(old_checkpoint, precision="fp32")
    always_wrong = val_split(classifier, right_every=1)
    logits = predict_logits(classifier.model, always_wrong, 8, classifier.device, None, 0)
    off = train.calibrate(folder, logits, always_wrong.labels, train_params(tmp_path, calibrate=False))
    assert off == {"temperature": 1.0} and Classifier.load(folder).temperature == 1.0
    with caplog.at_level(logging.WARNING, logger="train"):  # always wrong: the flattest softmax fits best
        fit = train.calibrate(folder, logits, always_wrong.labels, train_params(tmp_path, calibrate=True))
    assert fit["temperature"] == pytest.approx(T_BOUNDS[1], rel=1e-3)
    assert "at the edge of its range" in caplog.text and "train.calibrate=false" in caplog.text
