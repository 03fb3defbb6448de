"""``bot train``: from a bot folder to a new, versioned, evaluated model.

A stratified tenth of the examples is held out, once, as the frozen evaluation set that measures
this and every later version; the classifier is fine-tuned on the rest; the answer index is built
with the fine-tuned encoder; and the whole version is written to a staging folder that becomes
visible only when complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.evalset import EVALUATION_FILE, MIN_HOLDING_OUT, read_frozen_rows
from bot.language import written_in
from bot.nlu import Answering, Name, Remembered, answer_encoder, as_served, finite_weights
from bot.project import BotConfig, Example, HistoryItem, Project, ProjectError, same_example
from bot.responses import TEMPLATE_ANSWER
from dialogues.export import about_one_case, shareable
from dialogues.redact import redact
from finetune.classifier import IntentClassifier, ModelLoadError
from finetune.evaluation import in_scope_score
from finetune.metrics import evaluate
from finetune.models import DEFAULT_ALIASES, MPNET_ALIASES
from finetune.durable import replaced
from finetune.registry import Registry, RegistryError, stops_held
from finetune.train import TrainConfig, train_classifier
from retrieval.index import Answer, AnswerIndex
from retrieval.text import same_text

HISTORY_ANSWER = "history:"  # the id prefix of a history.jsonl answer in the answer index


@dataclass
class TrainResult:
    version: str
    metrics: dict[str, Any]
    promoted: bool


def split_holdout(examples: list[Example], fraction: float = 0.1, seed: int = 42) -> tuple[list[Example], list[Example]]:
    """Per intent, hold out ``fraction`` of the examples, at least one (none for intents with fewer than
    MIN_HOLDING_OUT)."""
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example.intent].append(example)
    rng = random.Random(seed)
    train, held = [], []
    for intent in sorted(by_intent):
        items = by_intent[intent][:]
        rng.shuffle(items)
        n = max(1, round(len(items) * fraction)) if len(items) >= MIN_HOLDING_OUT else 0  # round() takes 0.5 to 0
        held += items[:n]
        train += items[n:]
    return train, held


def frozen_split(project: Project, write: bool = True) -> tuple[list[Example], list[Example]]:
    """The training examples and the frozen evaluation set, which is chosen once and kept.

    The first training holds out a stratified tenth and writes it to ``models/evaluation.jsonl``;
    every later ``bot train`` and ``bot retrain`` is judged on those same examples, so two versions'
    figures compare like with like. An intent added later gets its own held-out tenth, appended. An
    example moved to another intent in nlu.yml takes its new label here too: the move is a correction,
    and the old label would count the corrected answer as a mistake. Without ``write`` the file is left as it
    is: measuring versions again (``bot models --explain``) changes nothing.
    """
    path = project.models_dir / EVALUATION_FILE
    rows = read_frozen_rows(path)
    labels = {e.text: e.intent for e in project.examples}
    frozen = [Example(r["text"], labels.get(r["text"], r["intent"])) for r in rows]
    covered = {e.intent for e in frozen}
    _, extra = split_holdout([e for e in project.examples if e.intent not in covered], seed=project.config.model.seed)
    relabelled = any(e.intent != r["intent"] for e, r in zip(frozen, rows))
    if write and (extra or relabelled or not path.exists()):
        _write_rows(path, [{"text": e.text, "intent": e.intent} for e in frozen + extra])
    intents = set(project.intents)
    held = [e for e in frozen + extra if e.intent in intents]
    held_texts = {same_example(e.text) for e in held}  # "create Gold account" is "create gold account" to the models
    return [e for e in project.examples if same_example(e.text) not in held_texts], held


def check_taught(project: Project, train: list[Example]) -> None:
    """Refuse training that would leave an intent of nlu.yml out of the model, without a word: every example
    of it in nlu.yml is in the frozen evaluation set, which no training sees (examples removed since it was
    chosen), and no reviewed label teaches it."""
    if untaught := sorted(set(project.intents) - {e.intent for e in train}):
        raise ProjectError(f"nothing to train {', '.join(untaught)} on: every example of theirs in nlu.yml is in the "
                           f"frozen evaluation set ({project.models_dir / EVALUATION_FILE}), which no training sees; "
                           "add examples to nlu.yml")


def held_out_texts(project: Project, key: Callable[[str], str] = same_text) -> set[str]:
    """The texts of the frozen evaluation set as written so far, read without choosing one, as ``key``s: by
    default :func:`~retrieval.text.same_text`'s, what no label or distilled message may teach (a label is a
    reviewer's, on every message with its key, so "cancelling order!" is the frozen "cancelling order")."""
    return {key(r["text"]) for r in read_frozen_rows(project.models_dir / EVALUATION_FILE)}


def seed_labels(project: Project) -> dict[str, str]:
    """nlu.yml's examples as :func:`~retrieval.text.same_example` keys, with their intents: what a review
    label must agree with to be learnt (:func:`~dialogues.export.contradicts`)."""
    return {same_example(e.text): e.intent for e in project.examples}


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write a JSONL file atomically: readers see the old file or the new one, never half of it, also
    after a power cut (the frozen evaluation set cannot be chosen again without losing comparability). For its
    owner alone: its examples are nlu.yml's, which a bot made from a ticket export has from its customers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path, private=True) as out:
        out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def answers_for(project: Project) -> list[Answer]:
    """The historical answers and the templated responses, as retrieval candidates.

    A retrieved answer is sent as it is, to any channel, without buttons, so only the variants that read
    the same everywhere join: no variables, no channel of their own, no buttons, and (but in a ``multi``
    bot, whose policy keeps each answer to its own language) no language other than the bot's. A
    historical answer about one customer's case ("Your order 12345678 has shipped") is left out, as an
    agent's is (:func:`~dialogues.export.about_one_case`): another customer would read it as theirs.
    """
    answers = history_answers(project)
    language = project.config.language
    for intent, variants in project.responses.templates.items():
        for j, variant in enumerate(variants):
            text = variant.as_is()
            if text is not None and (variant.language in (None, language) or language == "multi"):
                answers.append(Answer(f"{TEMPLATE_ANSWER}{intent}:{j}", text, None, intent, "template"))
    return answers


def history_answers(project: Project) -> list[Answer]:
    """history.jsonl's answers as :func:`answers_for` indexes them."""
    return [Answer(f"{HISTORY_ANSWER}{i}", item.answer, item.question, item.intent, "history")
            for i, item in enumerate(project.history)
            if not about_one_case(item.question, item.answer) and not about_one_customer(item)]


def about_one_customer(item: HistoryItem) -> bool:
    """Whether ``item`` is a helpdesk's exported answer (history.csv) that names its customer or holds their
    personal data (an email, a phone number, a greeting by name, an address: :func:`~dialogues.export.shareable`),
    which no other customer may read, as an agent's answer the store keeps is checked. history.jsonl's are the
    shop's own, whose contact details they may give every customer."""
    return item.exported and not shareable(redact(item.question), redact(item.answer))


def history_fingerprint(project: Project) -> str:
    """Identifies history.jsonl's answers, so that a retrain and a served bot know when the file changed since
    a version's index was built: an answer corrected there was given as it was until then. Read from the file's
    items, not from what the index takes of them, which would check each answer at every start."""
    rows = sorted(f"{item.intent}\t{item.question}\t{item.answer}" for item in project.history)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def index_options(project: Project) -> dict[str, Any]:
    """bot.yml's ``retrieval:`` as :class:`AnswerIndex` options."""
    options: dict[str, Any] = dict(project.config.retrieval.options)
    if project.config.retrieval.index_type != "auto":
        options["index_type"] = project.config.retrieval.index_type
    return options


def build_index(classifier: IntentClassifier, model_id: str, answers: list[Answer], project: Project) -> AnswerIndex:
    return AnswerIndex.build(answer_encoder(classifier, model_id), answers, **index_options(project))


DEFAULT_INTENT_THRESHOLD = 0.5
WRONG_ANSWER_COST = 1.25  # what a wrong answer costs, against 1 gained by a right one (see calibrate_threshold)


MIN_CALIBRATION = 10  # held-out examples the threshold's calibration needs (split_holdout: a tenth, rounded)


def calibrate_threshold(confidences: list[float], correct: list[bool]) -> float:
    """The confidence cut that best separates held-out mistakes from correct answers, with the widest margin.

    Confidence scales differ between base models and intent counts (27 intents spread probability
    more than 5), so no fixed number suits every bot. Answering a correct prediction gains 1 and
    withholding a wrong one saves ``WRONG_ANSWER_COST``: a wrong answer misleads the customer, where the
    fallback offers the likeliest intents and a person. Counted alike, the few mistakes in a held-out
    tenth leave cuts a single example apart, and the demo's cut swung between 0.11 and 0.48 over four
    retrains of nearly the same data; at 1.25 those four lie between 0.39 and 0.49, and a 10-shot
    BANKING77 bot keeps its 0.58 (at 1.5 and above it jumps to 0.78, which withholds 11 right answers
    for 12 mistakes; bench/INTENT.md). The weight does not make the cut steady: when the held-out
    mistakes sit among confident right answers, answering everything scores best (0.11 and 0.28 for
    two demo variants), and that is right for questions like the held-out ones, not for questions no
    intent covers, which a held-out tenth does not hold. A shop that weighs wrong answers differently,
    or sees many such questions, fixes ``thresholds.intent``. Among the cuts that score best, the one in the widest gap between
    neighbouring confidences is taken, halfway across it, so that phrasings a little less typical
    than the held-out ones still clear it. Below the least confident held-out answer no confidence
    bounds the gap: halfway down to 0 left a new shop's bot at 0.16, answering off-topic questions ("how
    do I keep my windshield from fogging up" as the weather, at 0.24). There the cut stays at the
    default, or right under that answer when it is less sure than the default (the gap still counts its
    width from 0 when cuts tie). With fewer than ``MIN_CALIBRATION`` held-out examples the default stays
    (``holdout_metrics`` says so).
    """
    if len(confidences) < MIN_CALIBRATION:
        return DEFAULT_INTENT_THRESHOLD
    pairs = sorted(zip(confidences, correct))
    values = [0.0] + [c for c, _ in pairs]
    score = float(sum(ok for _, ok in pairs))  # the cut below every prediction answers them all
    best = (score, values[1] - values[0], min(DEFAULT_INTENT_THRESHOLD, math.floor(values[1] * 10_000) / 10_000))
    for i, (_, ok) in enumerate(pairs, start=1):
        score += -1 if ok else WRONG_ANSWER_COST  # prediction i now falls below the cut
        upper = values[i + 1] if i + 1 < len(values) else 1.0
        if upper > values[i]:  # no cut falls between equal confidences: one threshold answers both
            best = max(best, (score, upper - values[i], readable_cut(values[i], upper)))
    return best[2]


def readable_cut(below: float, above: float) -> float:
    """Halfway between two confidences, to four decimals where those still fall between them: a cut
    rounded down to the confidence under it answers the mistake it was placed to withhold."""
    cut = (below + above) / 2
    rounded = round(cut, 4)
    return rounded if below < rounded <= above else cut


def holdout_metrics(classifier: Answering, held: list[Example], threshold: float | str) -> dict[str, Any]:
    """Figures on the held-out examples, and the calibrated threshold when the bot asks for ``auto``
    (``threshold_calibrated`` false when it had too few examples to calibrate on, and kept the default)."""
    calibrated = {"threshold_calibrated": len(held) >= MIN_CALIBRATION} if threshold == "auto" else {}
    if not held:
        return {"intent_threshold": DEFAULT_INTENT_THRESHOLD if threshold == "auto" else threshold, **calibrated}
    predictions = classifier.predict([e.text for e in held])
    confidences = [p.confidence for p in predictions]
    if threshold == "auto":
        threshold = calibrate_threshold(confidences, [p.intent == e.intent for p, e in zip(predictions, held)])
    # Ranked by the in-scope score, as `bot eval` ranks them: a confident `oos` answer is out of scope.
    metrics = evaluate([e.intent for e in held], [p.intent for p in predictions], [in_scope_score(p) for p in predictions],
                       classifier.labels, float(threshold))
    return {**metrics, "intent_threshold": threshold, **calibrated}


def train_config(project: Project) -> TrainConfig:
    cfg = project.config.model
    return TrainConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                       max_length=cfg.max_length, seed=cfg.seed, class_weights=cfg.class_weights,
                       distill=project.config.learning.distill, interpolate=project.config.learning.interpolate,
                       corrected_passes=project.config.learning.corrected_passes)


def training_settings(project: Project) -> dict[str, Any]:
    """bot.yml's settings that change what training makes of the same data (model.base aside, which a retrain
    checks on its own), by their bot.yml names: each version records them, so that a retrain knows an edited one
    for a change as it knows new data."""
    return _settings(project.config)


def _settings(config: BotConfig) -> dict[str, Any]:
    """:func:`training_settings` of bot.yml's ``config``."""
    model, learning = config.model, config.learning
    return {**{f"model.{key}": value for key, value in model.model_dump(exclude={"base"}).items()},
            **{f"learning.{key}": getattr(learning, key)
               for key in ("distill", "distill_messages", "interpolate", "corrected_passes")},
            CALIBRATED: config.thresholds.intent}


CALIBRATED = "thresholds.intent"  # auto is calibrated by training; a number serves as it is, with no training


def changed_settings(recorded: dict[str, Any] | None, project: Project) -> list[str]:
    """The training settings changed since a version recorded ``recorded`` (:func:`training_settings`), each as
    "model.seed 42 → 7"; none for a version from before they were recorded, whose settings are not known. A setting
    deskbot added since the version was trained (model.class_weights) is taken at its default, how that version
    trained: setting it was no change. thresholds.intent counts only when it became auto: the version's threshold is
    then the number it was trained with, which would serve as if calibrated."""
    if not isinstance(recorded, dict):
        return []
    before = {**_settings(BotConfig()), **recorded}
    return [f"{key} {before[key]} → {value}" for key, value in training_settings(project).items()
            if before[key] != value and (key != CALIBRATED or value == "auto")]


def readable_by_base(project: Project, examples: list[Example]) -> None:
    """Refuse, before the minutes of training, examples mostly in Chinese for one of the English base models:
    ``language: en`` on a Chinese bot trained and promoted a model that understood none of them."""
    base = project.config.base_model
    if base.strip().lower() not in DEFAULT_ALIASES | MPNET_ALIASES:  # the shop's own model may read anything
        return
    chinese = sum(written_in(e.text) == "zh" for e in examples)
    if chinese * 5 > len(examples):
        mend = ("set language: zh, or multi for English and Chinese" if project.config.language == "en" else
                f"set model.base: default, which is the multilingual encoder for language: {project.config.language}")
        raise ProjectError(f"{project.root / 'bot.yml'}: {chinese:,} of the {len(examples):,} examples are in Chinese, "
                           f"which the English model it trains ({base}) cannot read: {mend}")


def fit(project: Project, examples: list[Example], held: list[Example], device: str | None = None,
        progress: bool = True, init_from: IntentClassifier | None = None,
        transfer: list[str] | None = None, corrected: list[str] | None = None) -> IntentClassifier:
    """Fine-tune the bot's classifier on ``examples`` and fit its n-gram vote, whose share the ``held``
    examples choose; ``init_from`` warm-starts from a model with the same intents, which keeps its
    answers on the unlabelled ``transfer`` messages, but on the messages whose label was ``corrected`` since it
    learnt them, which it learns over (see :func:`train_classifier`)."""
    if init_from is None:  # a warm start goes on from the serving model, which read them
        readable_by_base(project, examples)
    texts, intents = [e.text for e in examples], [e.intent for e in examples]
    classifier = train_classifier(texts, intents, project.base_model, train_config(project), device=device,
                                  progress=progress, init_from=init_from, transfer=transfer,
                                  held_out=[e.text for e in held], corrected=corrected or [])
    classifier.fit_ngrams(texts, intents, [e.text for e in held], [e.intent for e in held])
    return classifier


def write_model(staging: Path, project: Project, classifier: IntentClassifier, answers: list[Answer],
                held: list[Example], train_examples: int, served: Remembered | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Save the classifier and its answer index into ``staging``; return the version's meta and metrics, the
    figures and calibrated threshold of the classifier as `bot serve` runs it (:func:`~bot.nlu.as_served`):
    ``served``, where the caller scores it again (the promotion gate), else made here."""
    if not finite_weights(classifier):
        raise ModelLoadError("training diverged: the model's weights are not all numbers (NaN), so nothing was saved; "
                             "train again with a lower model.learning_rate in bot.yml")
    model_id = uuid.uuid4().hex[:12]
    try:
        classifier.save(staging / "classifier")
        build_index(classifier, model_id, answers, project).save(staging / "index")
    except Exception as exc:
        if not out_of_space(exc):
            raise
        raise RegistryError(f"no space left on the disk of {staging.parent} to save the trained model: free some, then "
                            "train again (the serving model is untouched)") from None
    # As served: in int8 the confidences the threshold is calibrated on, and the answers counted, move.
    metrics = holdout_metrics(served or as_served(project, classifier), held, project.config.thresholds.intent)
    metrics.update(train_examples=train_examples, holdout_examples=len(held), frozen_set=frozen_set_digests(held),
                   train_seconds=round(classifier.train_seconds, 1), train_steps=classifier.train_steps,
                   train_passes=classifier.train_passes, ngram_share=classifier.ngram_share)
    meta = {"id": model_id, "base_model": project.config.base_model, "labels": classifier.labels,
            "device": str(classifier.device), "intent_threshold": metrics["intent_threshold"],
            "seed": seed_fingerprint(project), "history": history_fingerprint(project),
            "training": training_settings(project)}
    return meta, metrics


def out_of_space(exc: BaseException) -> bool:
    """Whether saving failed for a full disk: an OSError says so by its number, safetensors and FAISS in words."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def frozen_set_digests(held: list[Example]) -> dict[str, str]:
    """Identifies the frozen evaluation set a version is measured on, intent by intent (metrics.json's
    ``frozen_set``): an intent renamed in nlu.yml, or an example moved to another intent, keeps the set's size but
    changes every version's figure on it."""
    return _summed_digests((e.intent, int(hashlib.sha256(e.text.encode()).hexdigest()[:16], 16)) for e in held)


def measured_on_today_set(metrics: dict[str, Any], held: list[Example], name: Name | None) -> bool:
    """Whether a version's accuracy (``metrics``) was measured on the frozen evaluation set ``held`` as it is today,
    the intents it was measured on by the names `bot relabel` gave them since (``name``), under which the version
    answers them now: a relabelled intent compares, one renamed in nlu.yml alone does not. A version made before
    ``frozen_set`` was kept is judged by the set's size alone."""
    stored = metrics.get("frozen_set")
    if stored is None:
        return metrics.get("holdout_examples") in (None, len(held))
    renamed = _summed_digests((intent if name is None else name(intent), int(digest, 16))
                              for intent, digest in stored.items())
    return renamed == frozen_set_digests(held)


def _summed_digests(hashes: Iterable[tuple[str, int]]) -> dict[str, str]:
    """Each intent's digest: the sum of its examples' hashes, so that two intents `bot relabel` merged add up to the
    merged one's, whatever the order of the examples."""
    sums: dict[str, int] = defaultdict(int)
    for intent, value in hashes:
        sums[intent] = (sums[intent] + value) % 2**64
    return {intent: f"{value:016x}" for intent, value in sorted(sums.items())}


def seed_fingerprint(project: Project) -> str:
    """Identifies nlu.yml's examples, so a retrain knows whether the seed data changed since a version."""
    rows = sorted(f"{e.intent}\t{e.text}" for e in project.examples)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def train_project(project: Project, device: str | None = None, promote: bool = True, progress: bool = True) -> TrainResult:
    registry = Registry(project.models_dir)
    answers = answers_for(project)
    AnswerIndex.check_options(len(answers), **index_options(project))  # before the minutes of training
    with registry.lock():
        train, held = frozen_split(project)
        check_taught(project, train)
        with registry.stage() as staging:
            classifier = fit(project, train, held, device, progress)
            meta, metrics = write_model(staging, project, classifier, answers, held, len(train))
            # The version serving as this one is made: a record of it having served that outlives a lost decisions.jsonl
            serving = registry.readable_current()
            version = registry.commit(staging, {**meta, **({"parent": serving} if serving else {})}, metrics)
        previous = registry.readable_current() if promote else None
        with stops_held():  # a SIGTERM or Ctrl-C between the promotion and its record waits for the record
            if promote:
                registry.promote(version)
            registry.record({"event": "trained", "version": version, "promoted": promote, "previous": previous})
    return TrainResult(version, metrics, promote)
