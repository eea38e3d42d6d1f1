"""Temperature scaling (Guo et al. 2017): class probabilities softmax(logits / T), one scalar T > 0
fitted on the validation split by minimising its log loss. Every logit of a row is divided by the
same T, so their order, the predicted class and accuracy never change; only confidence does.

A checkpoint carries T in its Hugging Face config.json as `calibration_temperature`: save_pretrained
and from_pretrained keep a config attribute they do not know, so T travels with the weights whose
logits it rescales (models/best, the MLflow model's checkpoint artifact, any copy a user re-saves)
and needs no file or schema of its own. A checkpoint without it (written before T existed) reads
as T = 1. Not `temperature`: that is a text-generation setting in transformers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from scipy.special import softmax as _softmax

TEMPERATURE_ATTR = "calibration_temperature"
# The search range of T. Below 0.05 or above 20 the validation split says more about its own
# few rows than about the model; a fit that lands at a bound is logged by train.
T_BOUNDS = (0.05, 20.0)


def temperature_of(config) -> float:
    """The model's T (a transformers config), 1 when it has none (in training, or an older checkpoint)."""
    return float(getattr(config, TEMPERATURE_ATTR, 1.0))


def set_temperature(config, temperature: float) -> None:
    setattr(config, TEMPERATURE_ATTR, float(temperature))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, C) of logits (N, C) divided by temperature, in float64."""
    return _softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (log loss) of the labels under softmax(logits / temperature)."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_BOUNDS minimising nll(logits, labels, T), never worse than T = 1.

    The log loss is convex in 1/T, so it has one minimum along log T: bounded Brent search finds
    it, deterministically, in a few dozen evaluations of an (N, C) log-softmax.
    """
    result = minimize_scalar(lambda u: nll(logits, labels, math.exp(u)), bounds=np.log(T_BOUNDS),
                             method="bounded", options={"xatol": 1e-6})
    fitted = float(math.exp(result.x))
    return fitted if nll(logits, labels, fitted) <= nll(logits, labels, 1.0) else 1.0
