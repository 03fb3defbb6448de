"""``bot retrain``: learn from the conversations without ever serving a worse model.

1. Gather: nlu.yml's examples (less the frozen evaluation set), every reviewed label but those giving an
   nlu.yml example another intent, and every agent answer but those in ``bot chat``, redacted unless
   ``privacy.redact`` is off (:mod:`dialogues.export`).
2. Fine-tune: warm-start from the serving model when the intents (by the names `bot relabel` gave them since)
   and the base model are the same and no label it learnt was purged, else from the base model. A label corrected
   since is learnt over the old one: several passes over it, and no pull towards the serving model's answer there.
3. Measure the serving model and the candidate on the frozen evaluation set (generalisation) and on
   the seed examples (forgetting), by top-1 accuracy, which does not depend on where a threshold sits. Both
   are measured as ``bot serve`` runs them: in int8 on a CPU where ``server.inference.quantize`` asks for it,
   whatever device trains the candidate.
4. Gate: the candidate is promoted only if neither overall accuracy falls by more than
   ``learning.max_accuracy_drop`` (0: not at all) and no intent falls by more than
   ``learning.max_intent_drop``. Per-intent figures count only for intents with at least
   ``learning.min_intent_examples`` examples in a set, because one example more or less right in a
   two-example intent would otherwise decide. On the seed set a fall passes while the candidate lost no
   more than ``learning.max_forgotten`` of its examples, in all and within the intent, and they are listed:
   both models were trained on those examples, so the serving model answers nearly all of them and the
   candidate has little to gain there to make up for one, and one seed example the new labels contradict
   would otherwise refuse every later retrain.
5. The candidate's index holds the new agent answers. If the candidate is refused but there are new
   answers, they are added to a copy of the serving version's index, so retrieval still learns.

The gate's verdict and its figures go to the version's ``decision.json``; what came of it (promoted, refused,
or a promotion that failed) to ``models/decisions.jsonl``.
All writing happens in a staging folder under the registry lock: a run that crashes or is killed
leaves ``CURRENT`` and every version as they were. ``bot serve`` notices a new ``CURRENT`` and swaps.
A candidate is promoted only over the version it was gated against: if ``CURRENT`` names another
when the run ends, the candidate is kept but refused, and no index refresh is made.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.nlu import (Answering, Name, Remembered, answer_encoder, as_served, current_names, read_meta, renamed_labels,
                     renamed_prediction, served_in_int8)
from bot.project import Example, Project, model_folder, same_example
from bot.training import (
    DEFAULT_INTENT_THRESHOLD,
    HISTORY_ANSWER,
    answers_for,
    build_index,
    changed_settings,
    check_taught,
    fit,
    frozen_split,
    held_out_texts,
    history_answers,
    history_fingerprint,
    holdout_metrics,
    index_options,
    seed_fingerprint,
    seed_labels,
    train_config,
    write_model,
)
from dialogues.export import (LearnedData, contradicting, learnable, learned_data, learned_from, one_per_message,
                              recent_traffic)
from dialogues.disk import DAMAGED_ADVICE, damaged
from dialogues.review import OOS
from dialogues.store import Purged, Store, StoreError, held_in, open_to_read, read_as_it_is
from finetune.classifier import IntentClassifier, ModelLoadError, Prediction
from finetune.durable import owner_only
from finetune.metrics import per_intent_accuracy
from finetune.registry import Registry, RegistryError, Version, stops_held
from retrieval.index import Answer, AnswerIndex, read_manifest, saved_answers
from retrieval.options import IndexOptions
from retrieval.text import same_text

Say = Callable[[str], None]


@dataclass
class RetrainResult:
    version: str | None  # the version written (candidate or index refresh); None when nothing was new
    promoted: bool
    decision: dict[str, Any]


def measure(classifier: Answering, examples: list[Example]) -> dict[str, Any]:
    """Top-1 accuracy, overall and per intent, and which examples were right."""
    if not examples:
        return {"accuracy": None, "n": 0, "per_intent": {}, "counts": {}, "right": []}
    truth = [e.intent for e in examples]
    predicted = [p.intent for p in classifier.predict([e.text for e in examples])]
    counts: dict[str, int] = {}
    for intent in truth:
        counts[intent] = counts.get(intent, 0) + 1
    right = [t == p for t, p in zip(truth, predicted)]
    return {"accuracy": sum(right) / len(truth), "n": len(truth), "per_intent": per_intent_accuracy(truth, predicted),
            "counts": counts, "right": right}


def gate(serving: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]], max_accuracy_drop: float,
         max_intent_drop: float, min_intent_examples: int, max_forgotten: int = 0,
         forgotten_intents: Iterable[str] = ()) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Why the candidate must not serve (empty: it may), and every intent's drop per evaluation set.
    A fall on the ``seed`` set passes while the seed examples the candidate lost (``forgotten_intents``,
    the intent of each, :func:`forgotten`) number no more than ``max_forgotten``, in all and within the
    intent: counted as lost, not net, so that examples gained elsewhere hide none."""
    reasons: list[str] = []
    drops: dict[str, dict[str, float]] = {}
    lost = Counter(forgotten_intents)
    eps = 1e-9  # figures are ratios of small integers; compare them without float noise
    for name, before in serving.items():
        after = candidate[name]
        if before["accuracy"] is None:
            continue
        seed = name == "seed"
        fall = before["accuracy"] - after["accuracy"]
        if fall > max_accuracy_drop + eps and not (seed and 0 < lost.total() <= max_forgotten):
            reasons.append(f"{name}: accuracy fell from {before['accuracy']:.4f} to {after['accuracy']:.4f}")
        drops[name] = {}
        for intent, value in before["per_intent"].items():
            if before["counts"][intent] < min_intent_examples:
                continue
            drop = value - after["per_intent"].get(intent, 0.0)
            drops[name][intent] = round(drop, 4)
            if drop > max_intent_drop + eps and not (seed and 0 < lost[intent] <= max_forgotten):
                reasons.append(f"{name}: {intent} fell by {drop:.4f} (from {value:.4f}), more than {max_intent_drop:g}")
    return reasons, drops


Measures = dict[str, dict[str, Any]]  # :func:`measure`'s figures on each of the gate's sets, "frozen" and "seed"


def measured(classifier: Answering, seed: list[Example], held: list[Example]) -> Measures:
    """A model's figures on the gate's two sets: the frozen evaluation set and nlu.yml's seed examples."""
    return {"frozen": measure(classifier, held), "seed": measure(classifier, seed)}


@dataclass
class GateSets:
    """The gate's examples, cut by the intents the serving model knows: a model cannot answer an intent it never
    learnt, so one renamed, merged, split or added in nlu.yml since counted every example of it as the serving
    model's mistake, and any candidate gained there what it might lose on the others. The gate compares the two
    models on ``seed`` and ``held`` alone; ``new`` (those intents) is measured on the candidate, for the record."""

    seed: list[Example]
    held: list[Example]
    new: list[str]  # nlu.yml's intents the serving model does not know
    new_seed: list[Example]
    new_held: list[Example]


def gate_sets(known: Iterable[str], seed: list[Example], held: list[Example]) -> GateSets:
    """:class:`GateSets` of nlu.yml's ``seed`` examples and the frozen evaluation set ``held``, for a serving model of
    the intents ``known``."""
    labels = set(known)

    def cut(examples: list[Example]) -> tuple[list[Example], list[Example]]:
        return [e for e in examples if e.intent in labels], [e for e in examples if e.intent not in labels]

    (seed_in, seed_new), (held_in, held_new) = cut(seed), cut(held)
    return GateSets(seed_in, held_in, sorted({e.intent for e in seed_new + held_new}), seed_new, held_new)


class Renamed:
    """The serving model as the bot answers with it: under the names `bot relabel` gave its intents since it was
    trained (:func:`~bot.nlu.current_names`), as ``bot serve``, ``bot chat`` and ``bot eval`` answer. Counted under
    the old name, each answer to a renamed intent was the serving model's mistake, or left the intent uncompared,
    where its customers got the intent's template. Only what the gate reads: ``labels`` and ``predict``."""

    def __init__(self, classifier: Answering, name: Name | None) -> None:
        self.classifier = classifier
        self.name = name

    @property
    def labels(self) -> list[str]:
        return renamed_labels(self.classifier.labels, self.name)

    def predict(self, texts: list[str]) -> list[Prediction]:
        predictions = self.classifier.predict(texts)
        return predictions if self.name is None else [renamed_prediction(p, self.name) for p in predictions]


def measured_as(project: Project) -> str:
    """How the gate's models answered (decision.json's ``measured_as``): "int8" or "float32"."""
    return "int8" if served_in_int8(project) else "float32"


def warm_start(serving: IntentClassifier, name: Name | None, intents: list[str]) -> IntentClassifier | None:
    """What a warm start to ``intents`` (sorted) begins from: the serving model where it learnt them by these names;
    where `bot relabel` renamed or merged some since (``name``, :func:`~bot.nlu.current_names`), a model of its
    encoder with each head row under the current name (:meth:`IntentClassifier.relabelled`), so that a rename keeps
    what the model knows instead of training from the base model; None where the intents differ otherwise (one
    added, split or taken out)."""
    if serving.labels == intents:
        return serving
    if name is None or sorted(renamed_labels(serving.labels, name)) != intents:
        return None
    return serving.relabelled({intent: [old for old in serving.labels if name(old) == intent] for intent in intents})


def intents_changed(known: list[str], project: Project, new: list[str]) -> str:
    """Why a retrain trains from the base model when the intents changed, naming those the serving model knows
    (``known``, by their current names) that nlu.yml lacks and those nlu.yml has that it does not know (``new``):
    where there are both, one may be a rename `bot relabel` was not told of, after which the retrain would warm-start
    and keep what the model learnt. Said before the minutes of training, which Ctrl-C stops."""
    gone = sorted(set(known) - set(project.intents))
    if not (gone and new):
        return "the intents changed"
    return (f"the intents changed: {', '.join(gone)} gone, {', '.join(new)} new; if one is the other renamed or merged, "
            f"stop and run `bot relabel {shlex.quote(str(project.root))} {gone[0]} {new[0]}` first, and the retrain "
            "warm-starts instead")


def not_compared(sets: GateSets, candidate: Answering) -> dict[str, Any]:
    """The intents the gate could not compare and the candidate's figures on their examples (empty: none)."""
    if not sets.new:
        return {}
    return {"intents": sets.new, "candidate": {name: _summary(measure(candidate, examples))
                                               for name, examples in (("frozen", sets.new_held), ("seed", sets.new_seed))}}


def served_threshold(project: Project, meta: Mapping[str, Any]) -> float:
    """The intent threshold a version answers at: bot.yml's number, or the one calibrated for it (``auto``)."""
    threshold = project.config.thresholds.intent
    return float(meta.get("intent_threshold", DEFAULT_INTENT_THRESHOLD) if threshold == "auto" else threshold)


def at_threshold(classifier: Answering, held: list[Example], threshold: float) -> dict[str, Any]:
    """Accuracy on the frozen evaluation set at ``threshold``, a message answered below it counted wrong: the figure
    `bot models` lists and `bot eval` gives, beside the gate's top-1, since a candidate whose calibrated threshold
    moved answers right as often and falls back more."""
    accuracy = holdout_metrics(classifier, held, threshold).get("accuracy")
    return {"accuracy": None if accuracy is None else round(accuracy, 4), "threshold": threshold}


def margins(project: Project) -> dict[str, Any]:
    """bot.yml's gate settings, as a decision records them."""
    return project.config.learning.model_dump(include={"max_accuracy_drop", "max_intent_drop", "min_intent_examples",
                                                      "max_forgotten"})


def verdict(before: Measures, after: Measures, seed: list[Example], margin: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's verdict on a candidate measured ``after`` against the serving model's ``before``, with the
    figures decision.json keeps of it: one function for `bot retrain` and `bot models --explain`, so that the
    engineer who measures a refused candidate again gets what the gate got."""
    lost = forgotten(seed, before["seed"], after["seed"])
    reasons, drops = gate(before, after, margin["max_accuracy_drop"], margin["max_intent_drop"],
                          margin["min_intent_examples"], margin["max_forgotten"], [e["intent"] for e in lost])
    return {"passed": not reasons, "reasons": reasons,
            "figures": {name: {"serving": _summary(before[name]), "candidate": _summary(after[name])} for name in before},
            "intent_drops": drops, "worst_intent_drop": max([0.0, *(d for per in drops.values() for d in per.values())]),
            "forgotten": lost}


def forgotten(seed: list[Example], before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, str]]:
    """The seed examples the serving model answers right and the candidate wrong: labels to check, since
    the new data most often contradicts them."""
    return [{"text": e.text, "intent": e.intent} for e, was, now in zip(seed, before["right"], after["right"])
            if was and not now]


def learned_examples(data: LearnedData, intents: set[str], held_texts: set[str], seed: Mapping[str, str]
                     ) -> tuple[list[Example], dict[str, int], list[dict[str, str]]]:
    """Reviewed labels usable for training (:func:`learnable`), how many were left out and why: repeated
    (a message labelled on another turn too, learnt once), out of scope, contradicting nlu.yml (``seed``,
    :func:`seed_labels`: its example keeps its intent, and the retrain says so instead of learning both), or
    unusable otherwise; and the contradicting ones themselves (:func:`contradicting`)."""
    usable = [Example(r["text"], r["intent"]) for r in learnable(data, intents, held_texts, seed).examples]
    messages = one_per_message(data.examples)
    oos = sum(r["intent"] == OOS and OOS not in intents for r in messages)  # labels no intent of the bot takes
    against = contradicting(data, intents, held_texts, seed)
    return usable, {"labelled": len(usable), "repeated": len(data.examples) - len(messages), "oos": oos,
                    "contradicting": len(against),
                    "unusable": len(messages) - len(usable) - oos - len(against)}, against


def orphaned_labels(data: LearnedData, intents: Iterable[str]) -> dict[str, int]:
    """The labelled messages (one per message, as learnt) whose intent the bot no longer has, by that intent: an
    intent renamed or taken out of nlu.yml since. A retrain cannot learn them, and a reviewer's months of labels
    must not be left out unsaid: :func:`orphaned_advice` says how to keep them."""
    known = set(intents)
    return dict(Counter(r["intent"] for r in one_per_message(data.examples) if r["intent"] not in known | {OOS}))


def orphaned_advice(orphans: Mapping[str, int], root: Path) -> str:
    """What a retrain says of :func:`orphaned_labels`: which, and how to give them an intent nlu.yml has."""
    named = ", ".join(f"{intent} ({n})" for intent, n in sorted(orphans.items(), key=lambda item: -item[1]))
    old = max(orphans, key=orphans.__getitem__)
    return (f"{sum(orphans.values())} labelled message(s) name intents nlu.yml no longer has, and are not learnt: "
            f"{named}. For an intent renamed or merged into another, `bot relabel {shlex.quote(str(root))} {old} "
            "NEW_INTENT` gives "
            "them its name; otherwise `bot review` offers those of them the serving model is unsure of again "
            "(those that fell back, went to a person or were voted down too).")


def agent_answers(data: LearnedData, project: Project | None = None) -> list[Answer]:
    """The agent answers retrieval may show other customers (:func:`learnable`); with ``project``, each filed
    under the intent the bot gives its question (:func:`filed`)."""
    answers = learnable(data, set(), set(), {}).answers
    return [Answer(f"agent:{r['id']}", r["answer"], r["question"], r["intent"], "agent")
            for r in (answers if project is None else filed(answers, project))]


def filed(answers: list[dict[str, Any]], project: Project) -> list[dict[str, Any]]:
    """Agent answers under the intent the bot gives their question, since retrieval gives an answer only for
    the intent predicted (or with none): nlu.yml's where the question is one of its examples (a label giving
    it another intent is not learnt, :func:`~dialogues.export.contradicts`, so the model goes on answering
    nlu.yml's intent there, and the answer would never be given to that question), and none where the label's
    intent was taken out of nlu.yml since (never given, and as the closest answer it kept the others from
    being given)."""
    seed, labels = seed_labels(project), project.labels  # each built from every example: once, not per answer

    def intent(row: dict[str, Any]) -> str | None:
        given = seed.get(same_example(row["question"]), row["intent"])
        return given if given in labels else None

    return [{**r, "intent": intent(r)} for r in answers]


def exported(project: Project, data: LearnedData) -> LearnedData:
    """What ``bot export`` and ``GET /admin/export`` write of ``data``: what a retrain of ``project`` learns."""
    kept = learnable(data, set(project.intents), held_out_texts(project), seed_labels(project))
    return LearnedData(kept.examples, filed(kept.answers, project))


def read_store(project: Project, traffic: bool = True, as_it_is: bool = False) -> tuple[LearnedData, list[str]]:
    """The labels and agent answers (exactly what ``bot export`` writes) and, with ``traffic``, the recent
    customer messages the distillation holds on (none when ``learning.distill`` is off). ``as_it_is``: an older
    deskbot's store is read as it is (:func:`read_as_it_is`), not refused."""
    if not project.db_path.exists():
        return LearnedData([], []), []
    redacted = project.config.privacy.redact
    learning = project.config.learning

    def read(store: Store) -> tuple[LearnedData, list[str]]:
        return (learned_data(store, redacted=redacted),
                recent_traffic(store, learning.distill_messages if traffic and learning.distill > 0 else 0, redacted))

    if as_it_is:
        return read_as_it_is(project.db_path, read)
    store = open_to_read(project.db_path)
    try:
        return read(store)
    finally:
        store.close()


@dataclass
class LabelHistory:
    """What became of the labels the last attempt learnt, as the store tells: ``moved``, :meth:`Store.moved_labels`;
    ``replaced``, :meth:`Store.replaced_labels` (a label given since to a message it learnt, with the intent it
    learnt there)."""

    moved: dict[int, int]
    replaced: dict[int, str]


def label_history(project: Project, through: Mapping[str, float], usable: LearnedData) -> LabelHistory:
    """:class:`LabelHistory` of the bot's store since the attempt that learnt the data ``through`` describes
    (:func:`_through`), for the labels of ``usable`` (:func:`exported`) it learns now; none without a store."""
    if not project.db_path.exists():
        return LabelHistory({}, {})
    store = open_to_read(project.db_path)
    try:
        label, at = int(through.get("label", 0)), through.get("label_at", math.inf)
        replaced = {**relabelled_messages(usable, store.labels_then(label, at), project.config.privacy.redact),
                    **store.replaced_labels(label, at)}
        return LabelHistory(store.moved_labels(), {label: was for label, was in replaced.items()
                                                   if was in project.intents})  # else not learnt
    finally:
        store.close()


def relabelled_messages(usable: LearnedData, then: list[dict[str, Any]], redacted: bool) -> dict[int, str]:
    """The labels of ``usable`` given to a turn unlabelled when the last attempt learnt ``then``
    (:meth:`Store.labels_then`), for a message it learnt on another turn, each with the intent it learnt there: one
    example is learnt per message (:func:`one_per_message`), and a customer sending a learnt message again, labelled
    from the review queue, replaces that message's label as a correction of its own turn does, where counted gone it
    made the retrain train from the base model."""
    in_use = {r["turn_id"] for r in usable.examples}
    learnt = {same_text(r["text"]): r["intent"]  # in label order: the one learnt, as one_per_message keeps
              for r in learned_from([r for r in then if r["turn_id"] not in in_use], [], redacted).examples}
    labelled_then = {r["turn_id"] for r in then}
    return {r["label_id"]: learnt[key] for r in usable.examples
            if r["turn_id"] not in labelled_then and (key := same_text(r["text"])) in learnt}


def replacing(data: LearnedData, history: LabelHistory) -> list[dict[str, Any]]:
    """The labels of ``data`` given since the last attempt to a message it learnt (:meth:`Store.replaced_labels`,
    ``history.replaced``, of an intent it could learn), other than those `bot relabel` moved to a new name."""
    return [r for r in data.examples if r["label_id"] in history.replaced and r["label_id"] not in history.moved]


def corrections(data: LearnedData, history: LabelHistory) -> list[dict[str, Any]]:
    """Of :func:`replacing`, the labels that give their message another intent than the last attempt learnt."""
    return [r for r in replacing(data, history) if history.replaced[r["label_id"]] != r["intent"]]


def _new_since(data: LearnedData, meta: dict[str, Any], history: LabelHistory | None = None) -> dict[str, int]:
    """The labels and agent answers the last attempt did not learn, and how many of the labels it learned
    are gone: purged (``bot purge``: the model must unlearn them too), or unusable now. A label `bot relabel` moved to
    an intent's new name (``history.moved``, :meth:`Store.moved_labels`) from one the last attempt learnt is new, but
    replaces none: it is the same label. So is a label given since to a message the last attempt learnt
    (:func:`replacing`): new, and its message not gone; ``labels_corrected`` counts those of another intent
    (:func:`corrections`). A row is new by its id or by its
    time: after ``bot purge`` deletes the latest rows, SQLite gives the next ones the same ids."""
    through = meta.get("learned_through", {})
    history = history or LabelHistory({}, {})

    def is_new(row: dict[str, Any], id_key: str, kind: str) -> bool:
        return row[id_key] > through.get(kind, 0) or row["created"] > through.get(f"{kind}_at", math.inf)

    def given(label_id: int) -> float:
        """The label a label moved by `bot relabel`, once or more, was first given as; ``inf`` for one not moved."""
        first = math.inf
        while label_id in history.moved:
            first = label_id = history.moved[label_id]
        return first

    fresh = [r for r in data.examples if is_new(r, "label_id", "label")]
    kept = sum(given(r["label_id"]) <= through.get("label", 0) for r in fresh) + len(replacing(data, history))
    learned = through.get("labels", 0)  # counted since this field was written; 0 (none known gone) before
    return {"labels": len(fresh), "answers": sum(is_new(r, "id", "answer") for r in data.answers),
            "labels_gone": max(0, learned - (len(data.examples) - len(fresh)) - kept),
            "labels_corrected": len(corrections(data, history))}


def retrain(project: Project, device: str | None = None, progress: bool = True, force: bool = False,
            say: Say = lambda line: None) -> RetrainResult:
    """Train a candidate from everything learned so far, gate it against the serving model, promote or refuse."""
    registry = Registry(project.models_dir)
    with registry.lock():
        serving_name = registry.current()
        if serving_name is None:
            raise RegistryError(registry.nothing_serving())
        serving_path = registry.path(serving_name)
        # New relative to the last attempt, promoted or refused: the same data would train the same model.
        last = last_finished(registry, serving_name)
        data, traffic = read_store(project)
        usable = exported(project, data)  # what is new is what a retrain learns: not a label or answer it leaves out
        history = label_history(project, last.meta.get("learned_through", {}), usable)
        new = _new_since(usable, last.meta, history)
        seed_changed = last.meta.get("seed") != seed_fingerprint(project)
        base_changed = not same_base(last.meta.get("base_model"), project)  # bot.yml's model.base edited
        settings = changed_settings(last.meta.get("training"), project)  # model.seed edited: the same data trains anew
        # A rollback may serve a version of other intents than nlu.yml's, which the last attempt trained on.
        serving_meta = read_meta(serving_path)  # an index refresh below copies it, the base model with it
        intents_differ = set(serving_meta.get("labels", project.intents)) != set(project.intents)
        answers = agent_answers(data, project)
        gone, history_changed, reindex = index_behind(project, serving_path, answers)
        if gone or history_changed or reindex:
            # Not for one more minute of training: the customers' answers must not be shown while the candidate
            # trains, nor for good if the run then fails, and an answer corrected in history.jsonl is given as it
            # now reads. The classifier stays as it is, and so does what it learnt.
            refreshed = refresh_index(registry, serving_name, answers, project, last.meta.get("learned_through", {}),
                                      rebuild=bool(reindex))
            if gone:
                say(f"{len(gone)} agent answer{'s' if len(gone) > 1 else ''} no longer in the store as indexed (purged, "
                    f"now redacted, about one customer's case, or given in `bot chat`) left the index: {refreshed} serves "
                    f"without them, {serving_name}'s classifier unchanged.")
            if history_changed:
                say(f"history.jsonl or history.csv changed since {serving_name} was indexed: {refreshed} serves their "
                    f"answers as they now read, {serving_name}'s classifier unchanged.")
            if reindex:
                say(f"bot.yml's retrieval settings changed since {serving_name} was indexed ({', '.join(reindex)}): "
                    f"{refreshed} serves an index built with them, {serving_name}'s classifier unchanged.")
            serving_name, serving_path = refreshed, registry.path(refreshed)
        if not (force or seed_changed or base_changed or intents_differ or settings or new["labels"] or new["answers"]
                or new["labels_gone"]):
            unchanged = "nlu.yml, model.base and the training settings are unchanged"
            if gone or history_changed or reindex:  # the index alone changed: said above, and no training follows
                say(f"No candidate trained: no new labels or agent answers since {last.name}, and {unchanged}.")
                return RetrainResult(serving_name, False, {"promoted": False, "serving": serving_name,
                                                           "reasons": ["nothing new"], "index_refresh": serving_name,
                                                           "answers_removed": len(gone)})
            say(f"Nothing new since {last.name}: no new labels or agent answers, and {unchanged}."
                f"{_ways_on(project, last, serving_name)}")
            return RetrainResult(None, False, {"promoted": False, "serving": serving_name, "reasons": ["nothing new"]})
        if settings:
            say(f"bot.yml's training settings changed since {last.name}: {', '.join(settings)}")

        seed, held = frozen_split(project)
        held_texts = {same_text(e.text) for e in held}  # the gate's examples: taught neither labels nor old answers
        learned, label_counts, against = learned_examples(data, set(project.intents), held_texts, seed_labels(project))
        check_taught(project, seed + learned)
        if orphans := orphaned_labels(data, project.intents):
            say(orphaned_advice(orphans, project.root))
        serving = IntentClassifier.load(serving_path / "classifier", device=device)
        answering = Renamed(Remembered(as_served(project, serving)), current_names(project))
        sets = gate_sets(answering.labels, seed, held)
        say(f"Measuring the serving model {serving_name} on {len(sets.held)} frozen and {len(sets.seed)} seed examples"
            + (f" of the intents it knows; not compared, as it does not know them: {', '.join(sets.new)}"
               if sets.new else ""))
        before = measured(answering, sets.seed, sets.held)
        before_cut = at_threshold(answering, sets.held, served_threshold(project, serving_meta))
        train = seed + learned
        # A label the serving model learnt and the store no longer has (purged) must be unlearnt: a warm start
        # would begin from it, keep its answers and half its weights. A corrected one is not gone: the warm start
        # learns the correction over it (train_classifier's corrected). A warm start goes on from
        # the serving model's encoder, so bot.yml's model.base changed since, it would train the old one.
        start = warm_start(serving, answering.name, sorted({e.intent for e in train}))
        same_intents = start is not None
        base = same_base(serving_meta.get("base_model"), project)
        warm = same_intents and base and not new["labels_gone"]
        renamed = ({old: new_name for old in serving.labels if (new_name := answering.name(old)) != old}
                   if warm and start is not serving and answering.name is not None else {})
        why_full = (intents_changed(answering.labels, project, sets.new) if not same_intents
                    else "the base model changed" if not base else f"{new['labels_gone']} label(s) it learnt are gone")
        transfer = [text for text in traffic if same_text(text) not in held_texts] if warm else []
        corrected = [r["text"] for r in corrections(usable, history)] if warm else []
        as_named = f", its {', '.join(f'{old} as {now}' for old, now in renamed.items())}" if renamed else ""
        passes = train_config(project).corrected_passes
        relearnt = (f", {len(corrected)} corrected label(s) learnt {passes}× per pass and not held to "
                    f"{serving_name}'s answer there" if corrected else "")
        how = f"warm start from {serving_name}{as_named}{relearnt}" if warm else f"full: {why_full}"
        say(f"Training a candidate ({how}) on {len(seed)} seed + {len(learned)} labelled examples"
            + (f", keeping {serving_name}'s answers on {len(transfer)} recent messages" if transfer else "")
            + (f", then averaged with {serving_name}'s weights ({share:g} trained)"
               if warm and (share := project.config.learning.interpolate) < 1 else ""))
        indexed = answers_for(project) + answers
        AnswerIndex.check_options(len(indexed), **index_options(project))  # before the minutes of training
        with registry.stage() as staging:
            candidate = fit(project, train, held, device, progress, init_from=start if warm else None, transfer=transfer,
                            corrected=corrected)
            served = Remembered(as_served(project, candidate))
            meta, metrics = write_model(staging, project, candidate, indexed, held, len(train), served)
            judged = verdict(before, measured(served, sets.seed, sets.held), sets.seed, margins(project))
            judged.update(not_compared=not_compared(sets, served), measured_as=measured_as(project),
                          at_threshold={"serving": before_cut, "n": len(sets.held),
                                        "candidate": at_threshold(served, sets.held, served_threshold(project, meta))})
            reasons = judged["reasons"]
            # Read last, just before the commit and promotion: `bot rollback` cannot run while this run holds
            # the lock, but a CURRENT written by hand or by a tool that takes no lock must not be overridden by
            # a candidate gated against what served before it.
            now_serving = registry.current()
            moved = now_serving != serving_name
            if moved:
                reasons.append(f"CURRENT changed from {serving_name} to {now_serving} during this run; the "
                               f"candidate was gated against {serving_name}, so {now_serving} keeps serving "
                               f"(`bot retrain --force` gates a new candidate against it)")
            decision = {
                **judged, "passed": not reasons, "serving": serving_name, "mode": "warm" if warm else "full",
                "warm_renamed": renamed,
                "contradicting": against,
                "data": {"seed_examples": len(seed), **label_counts, "orphaned": orphans, "new_labels": new["labels"],
                         "labels_gone": new["labels_gone"], "labels_corrected": new["labels_corrected"],
                         "corrected_passes": passes if corrected else 1,
                         "transfer_messages": len(transfer),
                         "agent_answers": len(answers), "new_answers": new["answers"], "answers_removed": len(gone),
                         "seed_changed": seed_changed, "settings_changed": settings},
                "margins": margins(project),
            }
            meta.update(mode=decision["mode"], parent=serving_name, learned_through=_through(usable))
            # its owner's alone, as the index is: the labels that contradict nlu.yml are listed with their messages
            with open(staging / "decision.json", "w", encoding="utf-8", opener=owner_only) as out:
                out.write(json.dumps(decision, indent=1, ensure_ascii=False))
            version = registry.commit(staging, meta, metrics)
        decision.update(version=version, promoted=False)  # decision.json holds the verdict; this, what came of it
        if not reasons:
            with stops_held():  # a SIGTERM or Ctrl-C between the two waits for the record
                try:
                    registry.promote(version)
                except RegistryError as exc:  # a full disk: serving_name still serves, and the log says so
                    with suppress(RegistryError):  # the disk that refused CURRENT may refuse this too
                        registry.record({"event": "promotion_failed", "version": version, "serving": serving_name,
                                         "reason": str(exc)})
                    raise
                record_served(registry, version, {"event": "promoted", "version": version, "previous": serving_name})
            decision["promoted"] = True
            return RetrainResult(version, True, decision)
        if new["answers"] and not moved:  # a refresh serves a copy of serving_name, which no longer serves
            decision["index_refresh"] = refresh_index(registry, serving_name, answers, project, _through(usable))
        # Recorded last: a run killed before this point has not run, for the next one (last_finished).
        registry.record({"event": "refused", "version": version, "serving": serving_name, "reasons": reasons,
                         **({"index_refresh": decision["index_refresh"]} if "index_refresh" in decision else {})})
        return RetrainResult(version, False, decision)


def regate(project: Project, name: str, device: str | None = None) -> dict[str, Any]:
    """Candidate ``name`` and the version its gate compared it with, measured again on the frozen evaluation set and
    nlu.yml's seed examples as they are now, and judged by the margins it was judged by: what `bot retrain` printed
    and kept in decision.json (``stored``), unless those sets changed since (``seed_changed``: nlu.yml did), so that
    a refusal can be checked by hand. Nothing is written."""
    registry = Registry(project.models_dir)
    stored = registry.version(name).decision
    if not stored.get("serving"):
        raise RegistryError(f"no promotion gate judged {name} (`bot train` wrote it, or it is an index refresh): "
                            f"`bot models {shlex.quote(str(project.root))}` lists its figures")
    if not (registry.root / stored["serving"]).is_dir():  # deleted since, to free its disk
        raise RegistryError(f"{name} was gated against {stored['serving']}, which is no longer in {registry.root}: "
                            "its figures are in decision.json (`bot models --json`)")
    seed, held = frozen_split(project, write=False)
    serving, candidate = (as_served(project, IntentClassifier.load(registry.path(v) / "classifier", device=device))
                          for v in (stored["serving"], name))
    answering = Renamed(serving, current_names(project))
    sets = gate_sets(answering.labels, seed, held)
    margin = {**margins(project), **stored.get("margins", {})}
    now = verdict(measured(answering, sets.seed, sets.held), measured(candidate, sets.seed, sets.held), sets.seed, margin)
    now.update(not_compared=not_compared(sets, candidate), measured_as=measured_as(project))
    same = (all(now[key] == stored.get(key) for key in ("figures", "intent_drops", "forgotten"))
            and now["not_compared"] == stored.get("not_compared", {})
            and now["measured_as"] == stored.get("measured_as", "float32"))
    seed_changed = read_meta(registry.path(name)).get("seed") != seed_fingerprint(project)
    return {"version": name, "serving": stored["serving"], **now, "margins": margin, "same_as_stored": same,
            "seed_changed": seed_changed, "stored": stored}


def remeasured(project: Project, names: Iterable[str], device: str | None = None) -> dict[str, dict[str, Any] | None]:
    """Each version's accuracy on the frozen evaluation set as it is now, at its intent threshold, answering as `bot
    serve` would serve it (:func:`as_served`, under the names `bot relabel` gave its intents since): the accuracy
    `bot models` lists was measured when the version was made, on the set as it was then, which an intent added or
    an example moved in nlu.yml changes since, so two versions' figures need not compare. None for a version that
    does not load. Nothing is written."""
    registry = Registry(project.models_dir)
    _, held = frozen_split(project, write=False)
    name = current_names(project)
    figures: dict[str, dict[str, Any] | None] = {}
    for version in names:
        path = registry.path(version)
        try:
            classifier = as_served(project, IntentClassifier.load(path / "classifier", device=device))
            threshold = served_threshold(project, read_meta(path))
        except ModelLoadError:
            figures[version] = None
            continue
        figures[version] = {**at_threshold(Renamed(classifier, name), held, threshold), "n": len(held)}
    return figures


def same_base(recorded: str | None, project: Project) -> bool:
    """Whether a version was trained from bot.yml's base model: recorded as bot.yml wrote it, or, by versions
    from before, as the folder it named (whose retrain trained from scratch once for a changed-looking base)."""
    return recorded == project.config.base_model or (
        recorded is not None and model_folder(project.root, recorded) == project.base_model)


def gone_answers(serving_path: Path, answers: list[Answer] | None) -> list[str]:
    """The agent answers the serving index holds that the store no longer has, as it has them: their
    conversation was purged (its ids may since be another answer's), or redaction now finds personal
    data in them. ``answers`` None: the store's are not known (:func:`store_answers`), and none is counted gone."""
    indexed = [a for a in _indexed(serving_path) if a.source == "agent"]
    if answers is None:
        return []
    kept = {(a.id, a.text) for a in answers}
    return [a.id for a in indexed if (a.id, a.text) not in kept]


def _indexed(version: Path) -> list[Answer]:
    """The answers version folder ``version``'s index holds."""
    try:
        return saved_answers(version / "index")
    except (OSError, ValueError, TypeError) as exc:  # missing, cut short, not the format
        raise ModelLoadError(f"{version}: cannot load the answer index: {exc}") from exc


def index_behind(project: Project, version: Path, answers: list[Answer] | None) -> tuple[list[str], bool, list[str]]:
    """What version folder ``version``'s index serves that an index refresh mends, as `bot retrain` and `bot
    rollback` both ask: the agent answers it holds that the store no longer has (:func:`gone_answers`), whether
    history.jsonl or history.csv changed since it was indexed, and bot.yml's retrieval settings it was built
    otherwise (:func:`index_changes`)."""
    history = history_fingerprint(project)
    return (gone_answers(version, answers), read_meta(version).get("history", history) != history,
            index_changes(version, project))


def store_answers(project: Project) -> tuple[list[Answer] | None, StoreError | None]:
    """The agent answers the store has now, as an index holds them; an older deskbot's store read as it is, for
    `bot rollback` in an incident while its older `bot serve` may still run on it. A rollback touches the model
    registry alone and must not need the store: where it cannot be read (too old to have them, :class:`TooOld`;
    written by a newer deskbot, which an incident may have gone back from; damaged) the answers are None, and the
    error says why."""
    try:
        data, _ = read_store(project, traffic=False, as_it_is=True)  # a rollback trains nothing
    except StoreError as exc:
        return None, exc
    except sqlite3.DatabaseError as exc:  # a page spoilt past the schema, met as the answers are read
        why = f"{project.db_path} is damaged ({exc}). {DAMAGED_ADVICE}" if damaged(exc) else f"{project.db_path}: {exc}"
        return None, StoreError(why)
    return agent_answers(data, project), None


def with_index_refreshed(project: Project, registry: Registry, name: str) -> str | None:
    """For ``bot rollback``, under the registry lock: version ``name``'s index may hold agent answers the store
    has lost since (a purged conversation's, or one redaction or :func:`~dialogues.export.about_one_case` now
    leaves out), which serving it would show again, or history answers and retrieval settings since edited
    (:func:`index_behind`). Then a version with its classifier and an index refreshed as `bot retrain` refreshes
    one is made and promoted, and its name returned; else None, and ``name`` serves as it is. A store the answers
    cannot be read from (:func:`store_answers`) leaves those the index holds as they are."""
    answers, _ = store_answers(project)
    _, _, reindex = behind = index_behind(project, registry.path(name), answers)
    if not any(behind):
        return None
    if answers is None:
        answers = [a for a in _indexed(registry.path(name)) if a.source == "agent"]
    # What the next retrain counts as new stays what it would be without the refresh: newer labels are not learnt.
    return refresh_index(registry, name, answers, project, last_finished(registry, name).meta.get("learned_through", {}),
                         rebuild=bool(reindex))


def _ways_on(project: Project, last: Version, serving_name: str) -> str:
    """What a retrain with nothing new adds: when the last version trained does not serve, refused by the gate or
    served no more since a rollback, how to go on, where "nothing new" alone left the admin stuck; else the --force
    that trains all the same, which the message did not name."""
    bot = shlex.quote(str(project.root))  # as a command line takes it: 'my bot'
    if last.passed is False:
        return (f" The gate refused {last.name} ({'; '.join(map(str, last.decision.get('reasons') or []))}): label "
                f"more messages of the intents it names, or serve it as it is with `bot rollback {bot} {last.name}`.")
    if last.name != serving_name:
        return (f" {serving_name} serves since a rollback: `bot rollback {bot} {last.name}` serves "
                f"{last.name} again, and `bot retrain {bot} --force` trains a candidate against {serving_name}.")
    return f" `bot retrain {bot} --force` trains a candidate all the same (the same data, another run)."


def last_finished(registry: Registry, serving_name: str) -> Version:
    """The newest version whose run ended: the serving one, or one whose promotion, refusal or index
    refresh is recorded. A run killed before that (a candidate committed but never promoted, a refusal
    whose index refresh never finished) counts as not run, so the next one learns its data again
    instead of finding "nothing new"."""
    ended = {e.get("version") for e in registry.decisions() if e.get("event") in ("promoted", "refused", "index_refresh")}
    return [v for v in registry.versions() if v.name in ended | {serving_name}][-1]


def refresh_index(registry: Registry, serving_name: str, answers: list[Answer], project: Project,
                  learned_through: dict[str, float], rebuild: bool = False) -> str:
    """A version with the serving classifier unchanged and its index holding ``answers``, the agent answers
    the store has now (new ones added, and those of conversations purged since taken out), and history.jsonl's
    answers as the file now reads. ``learned_through`` is how far the data of the last attempt went
    (:func:`_through`), which the next retrain counts on. With ``rebuild`` the index is built anew, as training
    builds one, with bot.yml's retrieval settings (:func:`index_changes`), instead of changed in place."""
    source = registry.path(serving_name)
    meta = read_meta(source)
    try:
        metrics = json.loads((source / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a damaged version folder: a clear refusal, not a traceback
        raise ModelLoadError(f"{source}: cannot read metrics.json: {exc}") from exc
    with registry.stage() as staging:
        shutil.copytree(source / "classifier", staging / "classifier", copy_function=_link)
        classifier = IntentClassifier.load(staging / "classifier", device="cpu")
        if rebuild:
            index = build_index(classifier, meta["id"], answers_for(project) + answers, project)
        else:
            index = AnswerIndex.load(source / "index", answer_encoder(classifier, meta["id"]))
            index.replace("agent:", answers)
            index.replace(HISTORY_ANSWER, history_answers(project))
        index.save(staging / "index")
        meta.update(parent=serving_name, mode="index_refresh", learned_through=learned_through,
                    history=history_fingerprint(project))
        version = registry.commit(staging, meta, metrics)
    with stops_held():  # a SIGTERM or Ctrl-C between the two waits for the record
        registry.promote(version)
        record_served(registry, version, {"event": "index_refresh", "version": version, "previous": serving_name,
                                          "answers": len(answers)})
    return version


def index_changes(version: Path, project: Project) -> list[str]:
    """bot.yml's retrieval settings that version folder ``version``'s index was built otherwise
    ("retrieval.options.nprobe 8 → 16"): a saved index keeps those it was built with, so an edit applied only
    once a retrain trained a candidate. The device is not among them: the serving machine chooses it at load."""
    built = read_manifest(version / "index")["options"]  # an IndexMismatchError names a damaged one
    wanted = IndexOptions(**index_options(project)).model_dump(exclude={"device"})
    return [f"retrieval.{'' if key == 'index_type' else 'options.'}{key} {built[key]} → {value}"
            for key, value in wanted.items() if key in built and built[key] != value]


def record_served(registry: Registry, version: str, event: dict[str, Any]) -> None:
    """Record ``event``, the promotion of ``version`` just made; a full disk that refuses the line says that
    ``version`` serves all the same: a bare "cannot record the decision" passed for a failed run."""
    try:
        registry.record(event)
    except RegistryError as exc:
        raise RegistryError(f"{version} serves now (models/CURRENT names it), but {exc}") from exc


def _link(src: str, dst: str) -> None:
    """Version folders are never modified, so an unchanged file can be shared instead of copied."""
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def _through(data: LearnedData) -> dict[str, float]:
    """How far an attempt's data went, by id and by time (see :func:`_new_since`)."""
    return {"labels": len(data.examples), "label": max((r["label_id"] for r in data.examples), default=0),
            "answer": max((r["id"] for r in data.answers), default=0),
            "label_at": max((r["created"] for r in data.examples), default=0.0),
            "answer_at": max((r["created"] for r in data.answers), default=0.0)}


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": None if figures["accuracy"] is None else round(figures["accuracy"], 4), "n": figures["n"]}


def trained_at(meta: dict[str, Any]) -> float:
    """When a version was trained (meta.json's ``created``), as a Unix time; one that does not say counts as
    trained at any time. ``created`` is to the second, so this is the end of that second: a conversation begun
    earlier in the same second may be in the version, and is said to be."""
    try:
        return datetime.strptime(meta["created"], "%Y-%m-%dT%H:%M:%S%z").timestamp() + 1
    except (KeyError, TypeError, ValueError):
        return float("inf")


def kept_elsewhere(project: Project, purged: Purged, began: dict[str, float]) -> list[str]:
    """What may still hold the conversations a purge deleted (``began``: when each began), for `bot purge` and the
    server's retention rounds to say alike: the model versions trained since, whose index may hold their agent
    answers and whose weights their labels, and the copies an upgrade kept of the store since; and how to be rid of
    them. Said once for all the conversations that share it (a retention purge's thousands)."""
    versions = Registry(project.models_dir).versions()
    kept_in: Counter[tuple[tuple[str, ...], tuple[str, ...]]] = Counter()  # conversations by what may keep what of them
    for cid, deleted in purged.deleted.items():
        # A version trained since the conversation began may hold its answers in its index and its labels in its
        # weights: the next retrain serves one without them, and each such folder keeps them until it is deleted.
        since = tuple(v.name for v in versions if trained_at(v.meta) >= began.get(cid, float("inf")))
        learned = tuple(what for what, table in (("agent answers", "answer_candidates"), ("labels", "review_labels"))
                        if deleted[table])
        if learned and since:
            kept_in[learned, since] += 1
    lines = []
    it = "it" if len(purged.deleted) == 1 else "them"
    for (learned, since), n in kept_in.items():
        whose, they = ("its", "it") if n == 1 else (f"{n} conversations'", "they")
        lines.append(f"{whose} {' and '.join(learned)} may be in {', '.join(since)}, trained since {they} began: "
                     f"`bot retrain {shlex.quote(str(project.root))}` serves a version without them, and those folders "
                     "under models/ keep them until you delete them")
    # The copies of the store an upgrade kept (dialogues.db.schemaN.bak), and those `bot restore` put aside
    # (dialogues.db.replaced-STAMP, with its -wal), that hold a message of a purged conversation, or cannot be read.
    for pattern, why, until in ((".schema*.bak", "kept at an upgrade", "you will not go back to the deskbot before"),
                                (".replaced-*", "the store `bot restore` replaced", "you will not go back to it")):
        copies = [p for p in project.db_path.parent.glob(f"{project.db_path.name}{pattern}")
                  if not p.name.endswith(("-wal", "-shm")) and held_in(p, purged.deleted) != set()]
        if copies:
            lines.append(f"{', '.join(sorted(p.name for p in copies))}, {why}, may hold {it} too: delete the copy "
                         f"once {until}")
    return lines
