"""``bot train``: from a bot folder to a new, versioned, evaluated model.

A stratified tenth of the examples is held out to measure the new model and to record its
figures; the classifier is fine-tuned on the rest; the answer index is built with the fine-tuned
encoder; and the whole version is written to a staging folder that becomes visible only when complete.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.nlu import encoder_name
from bot.project import Example, Project
from finetune.classifier import IntentClassifier
from finetune.metrics import evaluate
from finetune.registry import Registry
from finetune.train import TrainConfig, train_classifier
from retrieval.encoder import Encoder
from retrieval.index import Answer, AnswerIndex


@dataclass
class TrainResult:
    version: str
    metrics: dict[str, Any]
    promoted: bool


def split_holdout(examples: list[Example], fraction: float = 0.1, seed: int = 42) -> tuple[list[Example], list[Example]]:
    """Per intent, hold out ``fraction`` of the examples (none for intents with fewer than 5)."""
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(seed)
    train, held = [], []
    for intent in sorted(by_intent):
        items = by_intent[intent][:]
        rng.shuffle(items)
        n = round(len(items) * fraction) if len(items) >= 5 else 0
        held += items[:n]
        train += items[n:]
    return train, held


def answers_for(project: Project) -> list[Answer]:
    """The historical answers and the templated responses, as retrieval candidates."""
    answers = [Answer(f"history:{i}", item.answer, item.question, item.intent, "history")
               for i, item in enumerate(project.history)]
    for intent, variants in project.responses.templates.items():
        for j, variant in enumerate(variants):
            if not variant.variables():
                answers.append(Answer(f"template:{intent}:{j}", variant.text, None, intent, "template"))
    return answers


def build_index(classifier: IntentClassifier, model_id: str, answers: list[Answer], project: Project) -> AnswerIndex:
    encoder = Encoder.from_model(classifier.encoder, name=encoder_name(model_id),
                                 prefixes=(classifier.prefix, classifier.prefix))
    options: dict[str, Any] = dict(project.config.retrieval.options)
    if project.config.retrieval.index_type != "auto":
        options["index_type"] = project.config.retrieval.index_type
    return AnswerIndex.build(encoder, answers, **options)


def holdout_metrics(classifier: IntentClassifier, held: list[Example], threshold: float) -> dict[str, Any]:
    if not held:
        return {}
    predictions = classifier.predict([e.text for e in held])
    return evaluate([e.intent for e in held], [p.intent for p in predictions],
                    [p.confidence for p in predictions], classifier.labels, threshold)


def train_project(project: Project, device: str | None = None, promote: bool = True, progress: bool = True) -> TrainResult:
    cfg = project.config.model
    train, held = split_holdout(project.examples, seed=cfg.seed)
    config = TrainConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                         max_length=cfg.max_length, seed=cfg.seed)
    registry = Registry(project.models_dir)
    model_id = uuid.uuid4().hex[:12]
    with registry.stage() as staging:
        classifier = train_classifier([e.text for e in train], [e.intent for e in train], project.config.base_model,
                                      config, device=device, progress=progress)
        classifier.save(staging / "classifier")
        build_index(classifier, model_id, answers_for(project), project).save(staging / "index")
        metrics = holdout_metrics(classifier, held, project.config.thresholds.intent)
        metrics.update(train_examples=len(train), holdout_examples=len(held),
                       train_seconds=round(getattr(classifier, "train_seconds", 0.0), 1))
        meta = {"id": model_id, "base_model": project.config.base_model, "labels": classifier.labels,
                "device": str(classifier.device)}
        version = registry.commit(staging, meta, metrics)
    if promote:
        registry.promote(version)
    return TrainResult(version, metrics, promote)
