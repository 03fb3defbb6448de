"""Evaluation metrics for intent classification with out-of-scope rejection.

Conventions (shared by ``bot eval`` and ``bot bench intent``): a test line whose intent is ``oos`` or
is not among the trained labels is out of scope. A prediction is *rejected* (predicted ``oos``) when
its score is below the threshold. Accuracy counts an out-of-scope line as correct when it is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

OOS = "oos"


def evaluate(
    true: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[float],
    known: Sequence[str],
    threshold: float | None = None,
) -> dict[str, float | None]:
    """Accuracy, macro-F1, in-scope accuracy and out-of-scope detection figures.

    ``predicted`` are the classifier's top intents (never ``oos``); ``scores`` their in-scope scores,
    higher meaning more in scope. With ``threshold`` None nothing is rejected.
    """
    known_set = set(known)
    truth = np.array([t if t in known_set else OOS for t in true], dtype=object)
    scores_arr = np.asarray(scores, dtype=float)
    rejected = scores_arr < threshold if threshold is not None else np.zeros(len(truth), bool)
    final = np.where(rejected, OOS, np.asarray(predicted, dtype=object))
    is_oos = truth == OOS
    in_scope = ~is_oos

    result: dict[str, float | None] = {
        "accuracy": float(np.mean(final == truth)) if len(truth) else 0.0,
        "in_scope_accuracy": float(np.mean(final[in_scope] == truth[in_scope])) if in_scope.any() else None,
        "macro_f1": float(f1_score(truth, final, labels=sorted(set(truth) | set(final)), average="macro", zero_division=0)),
        "n": int(len(truth)),
        "n_oos": int(is_oos.sum()),
        "threshold": threshold,
    }
    if is_oos.any():
        tp = int((rejected & is_oos).sum())
        result["oos_recall"] = tp / int(is_oos.sum())
        result["oos_precision"] = tp / int(rejected.sum()) if rejected.any() else 0.0
        # Out-of-scope is the positive class; a lower in-scope score means more likely out of scope.
        result["auroc"] = float(roc_auc_score(is_oos, -scores_arr)) if in_scope.any() else None
    else:
        result.update(oos_recall=None, oos_precision=None, auroc=None)
    return result


def per_intent_accuracy(true: Sequence[str], final: Sequence[str]) -> dict[str, float]:
    """Recall per true intent: what the promotion gate compares between two models."""
    out: dict[str, list[bool]] = {}
    for t, f in zip(true, final):
        out.setdefault(t, []).append(t == f)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}
