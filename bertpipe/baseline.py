"""The bars a fine-tuned transformer must clear: TF-IDF features and logistic regression, and
the majority class (what a model that learned nothing from the text scores)."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


def tfidf_logreg_probs(train_texts: list[str], train_labels: np.ndarray, test_texts: list[str],
                       seed: int = 0) -> np.ndarray:
    """Fit on the train rows, return class probabilities (N, C) for the test rows."""
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_df=0.95, sublinear_tf=True, strip_accents="unicode"),
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed),
    )
    model.fit(train_texts, train_labels)
    return model.predict_proba(test_texts)


def majority_probs(train_labels: np.ndarray, rows: int, num_classes: int) -> np.ndarray:
    """Every row gets the training class shares (N, C): it predicts the most frequent class."""
    shares = np.bincount(train_labels, minlength=num_classes) / max(len(train_labels), 1)
    return np.tile(shares, (rows, 1))
