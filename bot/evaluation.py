"""What the bot answers to each test question: the reply policy's outcome, as ``bot eval`` reports it.

Intent accuracy says how often the classifier is right, but a customer meets the reply policy's
answer: a template, an action, a historical answer, a handoff, or the fallback's buttons. A wrong
answer costs a customer more than the fallback, which offers the likeliest intents and a person, so
the two are counted apart. Each question is taken as a conversation's first message; actions are
not run (one that asks a question still counts as answering its intent).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.channels.base import normalise
from bot.engine import fillable, filling, keep_language, keep_script, template_values, typed_entities
from bot.language import turn_language
from bot.nlu import Analysis
from bot.policy import Decision, decide, handing_off
from bot.project import Project, button_payloads
from dialogues.holding import acknowledges, asks_for_a_person, says_wrong, wordless
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


def evaluate_replies(project: Project, rows: list[dict[str, Any]], texts: list[str], analyses: list[Analysis],
                     labels: list[str], results: Path) -> dict[str, Any]:
    """Counts of right and wrong answers and fallbacks, overall and per reply source, from the serving
    model's ``analyses`` of ``texts`` (``rows``' texts as the engine normalises them); the wrong answers and
    fallbacks go to ``results``/reply_report.json."""
    outcomes: Counter[str] = Counter()
    by_source: dict[str, Counter[str]] = {}
    misses = []
    for row, text, analysis in zip(rows, texts, analyses):
        language = turn_language(project.config.language, text)
        # As bot serve decides a conversation's first message: "thanks" or "谢谢" that no intent is sure of gets
        # fallback.acknowledged, "不对" a request to put it another way, "😭😭" one for words, "转人工" the handoff.
        # Its template is filled, and its conditions checked, with the values bot serve gives a first message: a
        # multi bot's language slot, the Chinese script, the entities it reads in "那789呢" too, mid_conversation false.
        slots: dict[str, Any] = {}
        keep_language(project.config, slots, language)
        keep_script(project.config, slots, text)
        entities = filling(typed_entities(project, text), slots)
        slots.update(entities)
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
            misses.append({"text": row["text"], "intent": row["intent"], "outcome": outcome, "source": decision.kind,
                           "answered": decision.intent, "confidence": round(decision.confidence, 4),
                           "reply": decision.text})
    figures = {"right": outcomes["right"], "wrong": outcomes["wrong"], "fallback": outcomes["fallback"],
               "by_source": {kind: dict(counts) for kind, counts in sorted(by_source.items())}}
    results.mkdir(parents=True, exist_ok=True)
    (results / REPORT).write_text(json.dumps({"figures": figures, "misses": misses}, indent=1, ensure_ascii=False),
                                  encoding="utf-8")
    return figures
