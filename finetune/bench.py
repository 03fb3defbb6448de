"""``bot bench intent``: train the project's recipe on a benchmark's train file and measure it on its test file.

What keeps the figures honest:

- The model, the recipe and the rejection threshold see only the train lines (and ``--valid`` lines
  when given). The test file is read for scoring only, after everything has been fixed.
- The threshold maximises accuracy on calibration lines, with the same accuracy definition as the
  test figures. The calibration lines are ``--valid`` when given; otherwise, when train has
  out-of-scope (``oos``) lines, a stratified tenth of train that is then not trained on. When no
  calibration line is out of scope, there is no evidence for any rejection and the threshold is 0.
- ``--shots K`` samples K lines per intent with ``--seed`` before anything else happens.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.project import Example
from bot.training import split_holdout
from finetune.classifier import IntentClassifier, pick_device
from finetune.labelled import read_jsonl
from finetune.metrics import OOS, auroc_by_kind, choose_threshold, evaluate
from finetune.train import TrainConfig, train_classifier


def load_examples(path: Path, fail: Callable[[str], None], intent_name: Callable[[str], str] = str) -> list[Example]:
    """A benchmark file's ``{"text", "intent"}`` lines (other keys are ignored), each intent made by
    ``intent_name`` (as ``read_jsonl``)."""
    return load_test_file(path, fail, intent_name)[0]


def load_test_file(path: Path, fail: Callable[[str], None],
                   intent_name: Callable[[str], str] = str) -> tuple[list[Example], list[str | None]]:
    """A test file's examples and each line's ``oos_type`` (BANKING77-OOS: ``id`` or ``ood`` on out-of-scope
    lines), None where absent; read once, so that a pipe (``--test <(...)``) works as a file does."""
    rows = read_jsonl(path, fail, intent_name)
    return [Example(row["text"], row["intent"]) for row in rows], [row.get("oos_type") for row in rows]


def sample_shots(rows: list[Example], shots: int, seed: int) -> list[Example]:
    """``shots`` lines per intent (all of an intent's lines when it has fewer), drawn with ``seed``.

    Intents are visited in sorted order and the sample keeps the file's order, so the same file,
    ``shots`` and ``seed`` always give the same sample. ``oos`` lines are sampled like any intent.
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_intent[row.intent].append(i)
    chosen: list[int] = []
    for intent in sorted(by_intent):
        indices = by_intent[intent]
        chosen += rng.sample(indices, min(shots, len(indices)))
    return [rows[i] for i in sorted(chosen)]


@dataclass
class Scored:
    """The classifier's decision inputs for some lines: top intent and in-scope score."""

    predicted: list[str]
    scores: list[float]
    seconds: float


def score(classifier: IntentClassifier, texts: list[str]) -> Scored:
    """Top intent (``oos`` when the model learned an out-of-scope class and it wins) and in-scope score.

    The in-scope score is the largest probability of a real intent; it is what the threshold compares.
    """
    started = time.perf_counter()
    probs = classifier.probabilities(texts)
    seconds = time.perf_counter() - started
    in_scope = np.array([label != OOS for label in classifier.labels])
    predicted = [classifier.labels[i] for i in probs.argmax(axis=1)]
    scores = probs[:, in_scope].max(axis=1) if in_scope.any() else np.zeros(len(texts))
    return Scored(predicted, [float(s) for s in scores], seconds)


def run_intent_bench(train: list[Example], test: list[Example], valid: list[Example] | None = None, model: str = "default",
                     shots: int | None = None, seed: int = 42, device: str | None = None,
                     progress: bool = True, oos_types: list[str | None] | None = None) -> dict[str, Any]:
    """Train from scratch on ``train``, choose the threshold without ``test``, and score ``test``.

    ``oos_types``, one per test line, adds ``auroc_by_oos_type`` when any is set: the AUROC against
    each kind of out-of-scope line on its own (see :func:`finetune.metrics.auroc_by_kind`).

    ``train_seconds`` runs from loading the base model to the trained classifier; ``total_seconds``
    adds calibration and scoring the test lines.
    """
    intents = {row.intent for row in train} - {OOS}
    if len(intents) < 2:  # one learned nothing to tell apart; none trained a model that rejects everything
        raise ValueError(f"the training lines name {len(intents)} intent(s) besides {OOS}; a classifier needs two or more")
    started = time.perf_counter()
    if shots is not None:
        train = sample_shots(train, shots, seed)
    if valid is not None:
        fit, calibration = train, valid
    elif any(row.intent == OOS for row in train):
        fit, calibration = split_holdout(train, seed=seed)
    else:
        fit, calibration = train, []
    device = pick_device(device)
    config = TrainConfig(seed=seed)
    classifier = train_classifier([r.text for r in fit], [r.intent for r in fit], model, config,
                                  device=device, progress=progress, held_out=[r.text for r in calibration])
    classifier.fit_ngrams([r.text for r in fit], [r.intent for r in fit],
                          [r.text for r in calibration], [r.intent for r in calibration])
    train_seconds = time.perf_counter() - started
    known = [label for label in classifier.labels if label != OOS]

    threshold = 0.0
    if calibration:
        cal = score(classifier, [r.text for r in calibration])
        threshold = choose_threshold([r.intent for r in calibration], cal.predicted, cal.scores, known)

    scored = score(classifier, [r.text for r in test])
    figures = evaluate([r.intent for r in test], scored.predicted, scored.scores, known, threshold)
    if oos_types and any(oos_types):
        figures["auroc_by_oos_type"] = auroc_by_kind([r.intent for r in test], scored.scores, known, oos_types)
    return {
        **figures,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "examples_per_second_inference": round(len(test) / max(scored.seconds, 1e-9), 1),
        "model": model,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "train_examples": len(fit),
        "calibration_examples": len(calibration),
        "intents": len(known),
        "shots": shots,
        "seed": seed,
        "epochs": config.epochs_for(len(fit)),
        "train_steps": classifier.train_steps,
        "train_passes": classifier.train_passes,
        "few_shot": config.few_shot([r.intent for r in fit]),
        "ngram_share": classifier.ngram_share,
    }
