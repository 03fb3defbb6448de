"""A character n-gram vote beside the encoder: the words a message is written in, counted as they are.

A fine-tuned sentence encoder places a message by what it means, and it can blur two intents whose
examples mean nearly the same but are told apart by a word: 查询 against 办理, a named product. A
logistic regression over TF-IDF weighted character 1- to 3-grams keeps exactly that evidence, needs
no word segmentation for Chinese, and trains in seconds. Its probabilities are mixed into the
encoder's with a share chosen on held-out examples (the frozen evaluation set of ``bot train``, the
validation file of ``bot bench intent``), and a share of 0 leaves the encoder alone; where no
held-out examples exist there is no n-gram model at all.

The model is kept as safetensors and JSON, like the encoder and its head, never as a pickle: a
model folder should not be able to run code when the bot loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.sparse import csr_matrix
from scipy.special import softmax
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

from finetune.durable import owner_only

NGRAMS = (1, 3)
C = 10.0  # inverse regularisation: the n-grams of a few thousand short messages, fitted firmly
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # the n-gram model's share of the vote never passes the encoder's


class CharNgrams:
    """A multinomial logistic regression over TF-IDF character n-grams, its columns in the labels' order."""

    def __init__(self, vocabulary: list[str], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.vocabulary = vocabulary
        self.idf = idf.astype(np.float32)
        self.coef = coef.astype(np.float32)  # (labels, n-grams)
        self.intercept = intercept.astype(np.float32)
        self._counts = CountVectorizer(analyzer="char", ngram_range=NGRAMS,
                                       vocabulary={gram: i for i, gram in enumerate(vocabulary)})

    @classmethod
    def fit(cls, texts: list[str], targets: list[int], n_labels: int) -> "CharNgrams":
        """Fit on ``texts`` with label indices ``targets``; a label without examples gets no probability."""
        tfidf = TfidfVectorizer(analyzer="char", ngram_range=NGRAMS, sublinear_tf=True)
        features = tfidf.fit_transform(texts)
        coef = np.zeros((n_labels, features.shape[1]), np.float32)
        intercept = np.full(n_labels, -1e4, np.float32)
        classes = sorted(set(targets))
        if len(classes) == 1:
            intercept[classes[0]] = 0.0
        else:
            regression = LogisticRegression(C=C, max_iter=3000).fit(features, targets)
            weights, bias = regression.coef_, regression.intercept_
            if len(classes) == 2:  # one row w, sigmoid(w·x + b): the same as a softmax over -w/2 and w/2
                weights, bias = np.vstack([-weights / 2, weights / 2]), np.concatenate([-bias / 2, bias / 2])
            coef[regression.classes_] = weights
            intercept[regression.classes_] = bias
        vocabulary = [gram for gram, _ in sorted(tfidf.vocabulary_.items(), key=lambda item: item[1])]
        return cls(vocabulary, tfidf.idf_, coef, intercept)

    def features(self, texts: list[str]) -> csr_matrix:
        """TF-IDF rows as ``TfidfVectorizer(sublinear_tf=True)`` makes them, from the stored vocabulary and idf."""
        rows = self._counts.transform(texts).astype(np.float32)  # CSR: the counts of each row's n-grams
        rows.data = (1.0 + np.log(rows.data)) * self.idf[rows.indices]
        inplace_csr_row_normalize_l2(rows)  # what sklearn's normalize runs, without its checks per message
        return rows

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return softmax(self.features(texts) @ self.coef.T + self.intercept, axis=1).astype(np.float32)

    def save(self, folder: Path) -> None:
        save_file({"idf": self.idf, "coef": self.coef, "intercept": self.intercept}, str(folder / "ngrams.safetensors"))
        # The n-grams are pieces of the texts trained on, customers' messages among them: for the bot's owner alone
        # (safetensors makes its files so already).
        with open(folder / "ngrams.json", "w", encoding="utf-8", opener=owner_only) as out:
            out.write(json.dumps(self.vocabulary, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> "CharNgrams":
        arrays = load_file(str(folder / "ngrams.safetensors"))
        vocabulary = json.loads((folder / "ngrams.json").read_text(encoding="utf-8"))
        if arrays["coef"].shape[1] != len(vocabulary) or arrays["idf"].shape != (len(vocabulary),):
            raise ValueError(f"the n-gram arrays do not match the {len(vocabulary)} n-grams of ngrams.json")
        return cls(vocabulary, arrays["idf"], arrays["coef"], arrays["intercept"])


def choose_share(encoder: np.ndarray, ngrams: np.ndarray, targets: list[int]) -> float:
    """The n-gram model's share of the vote that gets most held-out examples right; the smallest among
    equals, so that a vote which changes nothing is not taken."""
    truth = np.asarray(targets)
    right = [int((((1 - s) * encoder + s * ngrams).argmax(axis=1) == truth).sum()) for s in SHARES]
    return SHARES[right.index(max(right))]
