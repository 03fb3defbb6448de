"""Evaluation metrics for intent classification with out-of-scope rejection.

Conventions (shared by ``bot eval`` and ``bot bench intent``): a test line whose intent is ``oos`` or
is not among the trained labels is out of scope. A prediction is *rejected* (final answer ``oos``) when
its score is below the threshold, or when the classifier itself predicts ``oos`` (a model trained with
out-of-scope examples has that class). Accuracy counts an out-of-scope line as correct when it is rejected.
Macro-F1 averages the F1 of the test's own intents (``oos`` among them when it has out-of-scope lines): an
intent only predicted (``oos`` for a question declined in a test without out-of-scope lines) counts as the
miss of the line's intent, and is no class of its own, which scikit-learn's default scores 0 and averages
in. One declined question then cost a bot of ten intents about a tenth of its macro-F1, and the figure
averaged more intents at one threshold than at another, or for one model than for another, on one test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

OOS = "oos"


def evaluate(
    true: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[float],
    known: Sequence[str],
    threshold: float | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, in-scope accuracy and out-of-scope detection figures.

    ``predicted`` are the classifier's top intents; ``scores`` their in-scope scores, higher meaning
    more in scope. With ``threshold`` None only ``oos`` predictions are rejected.
    """
    truth, rejected = _truth(true, known), _rejected(predicted, scores, threshold)
    scores_arr = np.asarray(scores, dtype=float)
    final = np.where(rejected, OOS, np.asarray(predicted, dtype=object))
    is_oos = truth == OOS
    in_scope = ~is_oos

    result: dict[str, float | None] = {
        "accuracy": float(np.mean(final == truth)) if len(truth) else 0.0,
        "in_scope_accuracy": float(np.mean(final[in_scope] == truth[in_scope])) if in_scope.any() else None,
        "macro_f1": macro_f1(truth, final),
        # the classes it averages, said: the test's intents, oos one of them where n_oos is not 0
        "macro_f1_intents": len(set(truth)),
        "n": int(len(truth)),
        "n_oos": int(is_oos.sum()),
        "threshold": threshold,
    }
    if is_oos.any():
        tp = int((rejected & is_oos).sum())
        result["oos_recall"] = tp / int(is_oos.sum())
        result["oos_precision"] = tp / int(rejected.sum()) if rejected.any() else None  # none rejected: undefined
        # Out-of-scope is the positive class; a lower in-scope score means more likely out of scope.
        result["auroc"] = float(roc_auc_score(is_oos, -scores_arr)) if in_scope.any() else None
    else:
        result.update(oos_recall=None, oos_precision=None, auroc=None)
    return result


def macro_f1(truth: Sequence[str], final: Sequence[str]) -> float:
    """The mean F1 of the intents ``truth`` has (the module's docstring says why not those only predicted)."""
    return float(f1_score(truth, final, labels=sorted(set(truth)), average="macro", zero_division=0))


def intent_report(truth: Sequence[str], final: Sequence[str]) -> dict[str, Any]:
    """Each intent's precision, recall, F1 and support (``per_intent``: the test's intents and those only
    predicted, of support 0), and apart from them (``summary``) the accuracy and the macro and weighted averages
    over the test's intents, as :func:`macro_f1` takes them. scikit-learn's classification_report keeps both in
    one mapping, where an intent named ``accuracy``, ``macro avg`` or ``weighted avg`` was overwritten by that
    average. Then the :func:`confusions`."""
    labels = sorted(set(truth) | set(final))
    figures = precision_recall_fscore_support(truth, final, labels=labels, zero_division=0)
    per_intent = {label: {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": int(n)}
                  for label, p, r, f, n in zip(labels, *figures)}
    averaged = [row for row in per_intent.values() if row["support"]]
    total = sum(row["support"] for row in averaged)
    keys = ("precision", "recall", "f1-score")
    summary: dict[str, Any] = {
        "accuracy": float(np.mean(np.asarray(truth, dtype=object) == np.asarray(final, dtype=object))),
        "macro avg": {**{k: float(np.mean([row[k] for row in averaged])) for k in keys}, "support": total},
        "weighted avg": {**{k: sum(row[k] * row["support"] for row in averaged) / total for k in keys}, "support": total},
    }
    return {"per_intent": per_intent, "summary": summary, "confusions": confusions(truth, final)}


def confusions(truth: Sequence[str], final: Sequence[str]) -> list[dict[str, Any]]:
    """Each pair of a true intent and another answered in its place, with how many lines, most first: what to
    mend first (the examples of the two to tell apart, or two intents to merge). The confusion matrix shows no
    counts past 30 intents, and a pair's count in the list of errors was the reader's to tally."""
    pairs = Counter((t, f) for t, f in zip(truth, final) if t != f)
    return [{"intent": t, "answered": f, "count": n}
            for (t, f), n in sorted(pairs.items(), key=lambda item: (-item[1], item[0]))]


def auroc_by_kind(true: Sequence[str], scores: Sequence[float], known: Sequence[str],
                  kinds: Sequence[str | None]) -> dict[str, float]:
    """AUROC of all in-scope lines against each kind of out-of-scope line on its own.

    Data sets that mark their out-of-scope lines by kind (BANKING77-OOS: ``id`` for unsupported
    questions from the bot's own domain, ``ood`` for general chatter) say which kind the score
    misses, which one figure over both hides. Out-of-scope lines without a kind are left out.
    """
    truth = _truth(true, known)
    outside = -np.asarray(scores, dtype=float)
    kinds_arr = np.asarray(kinds, dtype=object)
    in_scope = truth != OOS
    result = {}
    for kind in sorted({k for k in kinds if k}):
        of_kind = ~in_scope & (kinds_arr == kind)
        if in_scope.any() and of_kind.any():
            chosen = in_scope | of_kind
            result[kind] = float(roc_auc_score(of_kind[chosen], outside[chosen]))
    return result


def choose_threshold(true: Sequence[str], predicted: Sequence[str], scores: Sequence[float],
                     known: Sequence[str]) -> float:
    """The threshold that maximises accuracy on calibration lines, the lowest one when several tie.

    Candidates are 0 (reject nothing), each calibration score (reject what scores below it) and the
    float just above the highest (reject everything: the best cut when the surest lines are all out of
    scope). With no out-of-scope calibration line, any rejection can only lose accuracy and the answer is 0.

    Not `bot train`'s :func:`~bot.training.calibrate_threshold`, by design: that one cuts the confidence `bot serve`
    compares, counts a wrong answer 1.25 times a right one and takes the middle of the widest gap, for a cut that
    holds on a shop's new questions; this one measures a recipe at the accuracy its test figures report, and
    bench/INTENT.md's figures were made with it. One function for both would move the one or the other.
    """
    truth = _truth(true, known)
    scores_arr = np.asarray(scores, dtype=float)
    accepted_right = (truth == np.asarray(predicted, dtype=object)) & (truth != OOS)
    rejected_anyway = _rejected(predicted, scores, None)
    above_all = np.nextafter(scores_arr.max(initial=0.0), np.inf)
    candidates = np.unique(np.concatenate([[0.0], scores_arr, [above_all]]))
    # Accuracy at threshold t: right in-scope answers scoring >= t, plus out-of-scope lines rejected.
    right = [np.sum(accepted_right & (scores_arr >= t)) + np.sum((truth == OOS) & (rejected_anyway | (scores_arr < t)))
             for t in candidates]
    return float(candidates[int(np.argmax(right))])


def _truth(true: Sequence[str], known: Sequence[str]) -> np.ndarray:
    """True intents, with those the model does not know mapped to ``oos``."""
    known_set = set(known)
    return np.array([t if t in known_set else OOS for t in true], dtype=object)


def _rejected(predicted: Sequence[str], scores: Sequence[float], threshold: float | None) -> np.ndarray:
    by_class = np.asarray(predicted, dtype=object) == OOS
    return by_class | (np.asarray(scores, dtype=float) < threshold) if threshold is not None else by_class


def per_intent_accuracy(true: Sequence[str], final: Sequence[str]) -> dict[str, float]:
    """Recall per true intent: what the promotion gate compares between two models."""
    out: dict[str, list[bool]] = {}
    for t, f in zip(true, final):
        out.setdefault(t, []).append(t == f)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}
