"""What the bot answers to each test question: the reply policy's outcome, as ``bot eval`` reports it.

Intent accuracy says how often the classifier is right, but a customer meets the reply policy's
answer: a template, an action, a historical answer, a handoff, or the fallback's buttons. A wrong
answer costs a customer more than the fallback, which offers the likeliest intents and a person, so
the two are counted apart. Each question is taken as a conversation's first message; actions are
not run (one that asks a question still counts as answering its intent).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

from bot.channels.base import Turn, normalise
from bot.engine import fillable, filling, message_slots, take_validated, template_values, typed_entities
from bot.language import Language, Script
from bot.nlu import Analysis
from bot.policy import Decision, decide, handing_off
from bot.project import Project, button_payloads
from dialogues.holding import acknowledges, asks_for_a_person, says_wrong, wordless
from finetune.evaluation import write_report
from finetune.metrics import OOS

REPORT = "reply_report.json"


def model_questions(rows: list[dict[str, Any]], intents: Iterable[str]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The test lines the model answers and their texts as the server's model sees them (normalised), and
    the lines left out: a button's payload (``/track_order``) selects its intent without the model."""
    payloads = button_payloads(intents)
    seen = [(row, normalise(row["text"])) for row in rows]
    kept = [(row, text) for row, text in seen if text not in payloads]
    return [row for row, _ in kept], [text for _, text in kept], [row["text"] for row, text in seen if text in payloads]


def reply_outcome(decision: Decision, truth: str, labels: list[str], handoff_intent: str | None,
                  unfiled: bool = False, as_worded: bool = False) -> str:
    """``right``, ``wrong`` or ``fallback``. An out-of-scope question (``oos``, or an intent the model does
    not know) is answered right by the fallback or by the ``oos`` intent's own template. A question of an
    intent the model does not know, other than ``oos``, is answered right too by a historical answer filed
    under no intent (``unfiled``): such answers are how a shop answers what none of its intents covers ("do
    you deliver abroad?"), and they were counted wrong. A reply the line's words alone decide (``as_worded``,
    :func:`as_worded`) is right whatever the classifier leant to: it is bot serve's answer to such a message.
    Otherwise a historical answer without
    an intent counts as the classifier's intent, and a handoff after too many fallbacks as a fallback."""
    if as_worded:
        return "right"
    declined = decision.kind == "fallback" or (decision.kind == "handoff" and decision.intent != handoff_intent)
    if truth == OOS or truth not in labels:
        answered = decision.intent == OOS or (unfiled and truth != OOS)
        return "right" if declined or answered else "wrong"
    if declined:
        return "fallback"
    return "right" if decision.intent == truth else "wrong"


def unfiled_answer(decision: Decision, analysis: Analysis) -> bool:
    """Whether the reply is a historical answer filed under no intent, to which the reply policy gives no intent,
    or the classifier's if it was sure: that says nothing of what it answers."""
    return decision.kind == "retrieval" and any(h.intent is None and h.text == decision.text for h in analysis.hits)


def as_worded(decision: Decision, text: str) -> bool:
    """Whether the reply is the one the message's words ask for: ``fallback.acknowledged`` ("All right. If there's
    anything else, just ask.") to a message that only thanks or acknowledges (the reply policy's template of no
    intent, which it gives such a message alone), no miss; or the handoff to one that asks for a person ("转人工")."""
    return ((decision.kind == "template" and decision.intent is None and acknowledges(text))
            or (decision.reason == "requested" and asks_for_a_person(text)))


# What a test line may say of the conversation its question opens, beside "text" and "intent", as bot serve reads it
# from the first message: each key with the types it takes ("metadata": the page's, which sets the slot
# session_started_metadata; "verified_user": the customer the shop's server vouched for; "language" and "script": the
# page's; "slots": those the actions' slot validation sets after the message, as it returns them).
FIRST_MESSAGE: dict[str, tuple[type, ...]] = {"metadata": (dict,), "verified_user": (str,), "language": (str,),
                                              "script": (str,), "slots": (dict,)}


def check_first_message(row: dict[str, Any]) -> None:
    """A ValueError naming what is wrong with a test line's :data:`FIRST_MESSAGE` keys: a mistyped one would be
    scored as a message without it, and its figures taken for those of a message with it."""
    for key, types in FIRST_MESSAGE.items():
        if row.get(key) is not None and not isinstance(row[key], types):
            raise ValueError(f"the {key} must be {'an object' if types == (dict,) else 'text'}, not {row[key]!r}")
    for key, kind in (("language", Language), ("script", Script)):
        if row.get(key) is not None and row[key] not in get_args(kind):
            raise ValueError(f"the {key} must be one of {', '.join(get_args(kind))}, not {row[key]!r}")


def first_message(row: dict[str, Any], text: str) -> Turn:
    """A test line as the web channel gives `bot serve` a conversation's first message (:data:`FIRST_MESSAGE`)."""
    return Turn("eval", text, "web", metadata=row.get("metadata") or {}, language=row.get("language"),
                script=row.get("script"), verified_user=row.get("verified_user") or None)


def evaluate_replies(project: Project, rows: list[dict[str, Any]], texts: list[str], analyses: list[Analysis],
                     labels: list[str], results: Path) -> dict[str, Any]:
    """Counts of right and wrong answers and fallbacks, overall and per reply source, from the serving
    model's ``analyses`` of ``texts`` (``rows``' texts as the engine normalises them); the wrong answers and
    fallbacks go to ``results``/reply_report.json."""
    outcomes: Counter[str] = Counter()
    by_source: dict[str, Counter[str]] = {}
    misses = []
    for row, text, analysis in zip(rows, texts, analyses):
        # As bot serve decides a conversation's first message: "thanks" or "谢谢" that no intent is sure of gets
        # fallback.acknowledged, "不对" a request to put it another way, "😭😭" one for words, "转人工" the handoff.
        # Its template is filled, and its conditions checked, with the values bot serve gives a first message: the
        # line's session metadata, verified user and page language and script (FIRST_MESSAGE), a multi bot's
        # language slot, the Chinese script, the entities it reads in "那789呢" too, the slots the line says the
        # actions' validation set, mid_conversation false.
        slots: dict[str, Any] = {}
        language, _ = message_slots(project.config, slots, first_message(row, text), text)
        entities = filling(typed_entities(project, text), slots)
        slots.update(entities)
        take_validated(slots, entities, row.get("slots") or {})
        if asks_for_a_person(text):  # "talk to a human", "转人工": handed off whatever the classifier read in it
            decision = handing_off(project.config, project.responses, "web", language, "requested",
                                   fillable(project, slots, entities, text), analysis.prediction.intent,
                                   analysis.prediction.confidence)
        else:
            decision = decide(analysis, project.config, project.responses,
                              template_values(project, slots, entities, text, False), "web", 0, language,
                              project.intents, acknowledges(text), says_wrong(text), wordless(text))
        # An unsure historical answer filed under no intent reports none: it counts as the classifier's intent.
        judged = dataclasses.replace(decision, intent=decision.intent or analysis.prediction.intent)
        outcome = reply_outcome(judged, row["intent"], labels, project.config.handoff.intent,
                                unfiled_answer(decision, analysis), as_worded(decision, text))
        outcomes[outcome] += 1
        by_source.setdefault(decision.kind, Counter())[outcome] += 1
        if outcome != "right":
            misses.append({"line": row.get("line"), "text": row["text"], "intent": row["intent"], "outcome": outcome,
                           "source": decision.kind, "answered": decision.intent,
                           "confidence": round(decision.confidence, 4), "reply": decision.text})
    figures = {"right": outcomes["right"], "wrong": outcomes["wrong"], "fallback": outcomes["fallback"],
               "by_source": {kind: dict(counts) for kind, counts in sorted(by_source.items())}}
    results.mkdir(parents=True, exist_ok=True)
    write_report(results / REPORT, {"figures": figures, "misses": misses})
    return figures
