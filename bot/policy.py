"""The reply policy: which kind of answer a turn gets.

In order: a request for a human hands off; a confident intent gets its custom action or its template;
otherwise a close enough historical answer is given, if it is about the likeliest intent or about none
in particular; below every threshold the bot says it did not understand, offers the likeliest intents
as buttons and a human, and hands off after repeated misses. When the classifier is unsure and the
closest answer belongs to another intent, the two disagree, and the answer is mostly the wrong one
(docs/architecture.md has the figures, from ``bot eval``, which counts the bot's answers).
A bot may have an ``oos`` intent, examples of what it should not answer: confidently predicted, it
gets its own template if it has one, and the fallback otherwise; it is never offered as a button, nor
is the handoff intent (the button for a person is always there) or an intent in ``fallback.exclude``
(small talk: "Did you mean: Greet?" helps nobody). A message that only acknowledges or thanks ("ok", "thanks 👍"),
unless an intent other than ``oos`` is confidently predicted, gets fallback.acknowledged, which is no miss; one that
only says the answer missed ("不对", "that's wrong") is a miss, whatever is predicted. One of emoji or punctuation
alone ("😭😭", "？？"), unless an intent is confidently predicted, is a miss that asks to put it in words: no
historical answer, and no intents offered.
Whatever it says is in the turn's language (bot/language.py), and a ``multi`` bot gives a historical
answer only in that language. It is a pure function of the analysis and the conversation, so it is
tested without a model.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bot.language import Language, foreign, mostly_written_in, say
from bot.nlu import Analysis
from bot.project import HANDOFF_PAYLOAD, BotConfig
from bot.responses import TEMPLATE_ANSWER, Rendered, Responses
from finetune.metrics import OOS
from retrieval.text import intent_phrase

# The answer index's texts whose language is kept (:func:`_written_in`, :func:`_foreign`): the same few answers come
# back with message after message, and reading each one's language anew, a character at a time, was a quarter of the
# event loop's work per message.
LANGUAGES_KEPT = 4096


@functools.lru_cache(maxsize=LANGUAGES_KEPT)
def _written_in(text: str) -> Language:
    """:func:`~bot.language.mostly_written_in` of an answer's text, read once."""
    return mostly_written_in(text)


@functools.lru_cache(maxsize=LANGUAGES_KEPT)
def _foreign(text: str, language: Language) -> bool:
    """:func:`~bot.language.foreign` of an answer's text, read once for each language."""
    return foreign(text, language)


@dataclass
class Decision:
    """What the bot does with a message (:func:`decide`, or the engine around it): what it says, and what the store
    keeps of the turn."""

    kind: str  # template | action | retrieval | fallback | handoff | resume (back to the bot) | silent (a person has it)
    intent: str | None
    confidence: float
    text: str = ""
    buttons: list[dict[str, str]] = field(default_factory=list)
    action: str | None = None
    retrieval_score: float | None = None
    loop: str | None = None  # the action that asked the customer for a slot, to run again on the answer
    form: str | None = None  # the Rasa form active while ``loop`` waits (an action's ActiveLoop("order_form"))
    reason: str = ""  # why a handoff: requested, fallbacks or action:NAME (shown in the agents' inbox)
    quotes: bool = False  # the text repeats the conversation's values (an action's, a filled template): stored redacted
    custom: list[Any] = field(default_factory=list)  # an action's json_message, a response's custom: for the web chat's page
    reverted: bool = False  # an action took the customer's message back (UserUtteranceReverted): stored with the mark
    restarted: bool = False  # an action started the conversation afresh (Restarted, action_restart): stored so
    # an action's messages one by one, where a text follows a custom payload (in_order): sent in that order
    parts: list[Rendered] = field(default_factory=list)


def intent_threshold(analysis: Analysis, config: BotConfig) -> float:
    """The confidence at or above which the classifier's intent is acted on: ``thresholds.intent``, or, where it is
    auto, the one calibrated for the model that read the message."""
    threshold = config.thresholds.intent
    return analysis.intent_threshold if threshold == "auto" else threshold


def understood(analysis: Analysis, config: BotConfig) -> bool:
    """Whether the classifier is sure enough of its intent to act on it (``thresholds.intent``)."""
    return analysis.prediction.confidence >= intent_threshold(analysis, config)


def misses_reach_handoff(fallbacks_so_far: int, config: BotConfig) -> bool:
    """Whether one more miss (a fallback, or a failed action) hands the conversation to a person."""
    return fallbacks_so_far + 1 >= config.thresholds.fallbacks_before_handoff


def misses_in_a_row(fallbacks_so_far: int, decision: Decision, acknowledged: bool) -> int:
    """The conversation's count of misses in a row after a turn: one more for a miss, none after an answer.
    A message that only acknowledges ("ok", "thanks") leaves the count as it was: it says nothing of whether
    the bot understood the customer, who otherwise, saying "ok" between misses, never got ``fallback.again``
    nor the handoff after ``fallbacks_before_handoff`` misses."""
    if decision.kind == "fallback":
        return fallbacks_so_far + 1
    return fallbacks_so_far if acknowledged else 0


def handing_off(config: BotConfig, responses: Responses, channel: str, language: Language, reason: str,
                values: dict[str, Any], intent: str | None = None, confidence: float = 1.0) -> Decision:
    """A handoff, saying the handoff intent's template (its channel and language variants, its buttons, the
    conversation's ``values`` filled in) where responses.yml has one, as a shop that edits it expects, else
    handoff.message."""
    handoff_intent = config.handoff.intent
    rendered = responses.render(handoff_intent, channel, values, language) if handoff_intent else None
    if rendered is None:
        return Decision("handoff", intent, confidence, say(config.handoff.message, language), reason=reason)
    return Decision("handoff", intent, confidence, rendered.text, rendered.buttons, reason=reason, quotes=rendered.quotes,
                    custom=rendered.custom)


def close_enough(score: float, config: BotConfig) -> bool:
    """Whether a historical answer is close enough to give (``thresholds.retrieval``). A question asked
    word for word scores 1 give or take float32 rounding (0.99999988), so 1.0 means "exact repeats only"."""
    return score >= config.thresholds.retrieval - 1e-6


def decide(
    analysis: Analysis,
    config: BotConfig,
    responses: Responses,
    values: dict[str, Any],
    channel: str,
    fallbacks_so_far: int,
    language: Language = "en",
    intents: Collection[str] | None = None,
    acknowledges: bool = False,
    corrects: bool = False,
    wordless: bool = False,
    unread: bool = False,
) -> Decision:
    """What the bot says to a message, from what the classifier and the answer index made of it (``analysis``): for
    an intent the classifier is sure of, the handoff, its action or its template; else a historical answer close
    enough; else a miss (the fallback, or the handoff after ``fallbacks_before_handoff`` of them in a row).

    ``intents`` are nlu.yml's: a model served after `bot rollback`, or from before an edit of nlu.yml, may
    rank an intent nlu.yml no longer has, whose button would lead to no template nor action, and back here.
    None offers whatever the model ranks. ``acknowledges``: the message only acknowledges or thanks
    (:func:`dialogues.holding.acknowledges`); ``corrects``: it only says the answer before missed
    (:func:`dialogues.holding.says_wrong`); ``wordless``: it holds no word nor number, emoji or punctuation alone
    (:func:`dialogues.holding.wordless`); ``unread``: it is Pinyin typed without its characters and no example of
    nlu.yml's is, so the classifier and the answer index read noise in it ("wo yao tui huo" answered as track_order)."""
    pred = analysis.prediction
    intent, confidence = pred.intent, pred.confidence
    if corrects:
        # "不对", "that's wrong": a miss, whatever the classifier reads in two words (the demo's read "不对" as "ok"
        # and said "glad to help"); no intent of theirs to offer, so it asks to put it another way, or hands off
        return _missed(config, responses, channel, language, values, fallbacks_so_far, None, confidence, [])
    confident = understood(analysis, config) and not unread

    if confident and intent == config.handoff.intent:
        return handing_off(config, responses, channel, language, "requested", values, intent, confidence)
    if confident and intent in config.actions.map:
        return Decision("action", intent, confidence, action=config.actions.map[intent])
    hits = [] if unread else [h for h in analysis.hits
                              if not h.id.startswith(TEMPLATE_ANSWER) or h.text in responses.sent_as_is]
    if config.language == "multi":
        hits = [h for h in hits if _written_in(h.text) == language]
    else:
        hits = [h for h in hits if not _foreign(h.text, language)]
    if acknowledges and (not confident or intent == OOS):
        # "ok", "thanks 👍" that no intent of the shop's answers: no miss, nor "this is not something I can help with".
        return Decision("template", None, confidence, say(config.fallback.acknowledged, language))
    if wordless and not confident:
        # "😭😭", "？？": nothing to read, and what the classifier and the index lean to on signs alone is noise. A small
        # bot gave the closest answer, an unrelated one that looked sure, or "did you mean" unrelated intents; the
        # customer is asked to say it in words, with the person button, a miss (a person after repeated ones).
        return _missed(config, responses, channel, language, values, fallbacks_so_far, None, confidence, [])
    if confident and intent == OOS:
        # Taught that such messages are not the bot's to answer: only an agent's answer to one of them, which
        # a reviewer filed under oos (a question the shop answers without an intent for it), beats declining.
        answered = [h for h in hits if h.intent == OOS]
        if answered and close_enough(answered[0].score, config):
            return Decision("retrieval", OOS, confidence, answered[0].text, retrieval_score=answered[0].score)
        hits = []
    if confident:
        rendered = responses.render(intent, channel, values, language)
        if rendered is not None:
            return Decision("template", intent, confidence, rendered.text, rendered.buttons, quotes=rendered.quotes,
                            custom=rendered.custom)
        # an intent without a template answers from its own history, or from answers of no intent
        hits = [h for h in hits if h.intent in (intent, None)]
    elif hits and (hits[0].intent not in (None, intent) or intent == config.handoff.intent):
        # The closest answer is about another intent than the likeliest one: two guesses, no answer. Nor when
        # the customer may be asking for a person: an answer would not give them one ("I'm connecting you"
        # from the history would promise one who never comes); the fallback's "talk to a person" button does.
        hits = []
    if hits and close_enough(hits[0].score, config):
        # An answer filed under no intent is about the intent the classifier was sure of, else about none: the
        # classifier's unsure lean (oos, often) said nothing of what it answered, in the API, the figures and the log.
        about = hits[0].intent or (intent if confident else None)
        return Decision("retrieval", about, confidence, hits[0].text, retrieval_score=hits[0].score)

    # The handoff intent is the "talk to a person" button already, added last. An intent the classifier was
    # sure of and still got here (its template needs a value the conversation lacks, and no answer of its
    # own is close) would only lead back here from its button.
    hidden = {OOS, config.handoff.intent, *config.fallback.exclude, *([intent] if confident else [])}
    likeliest = [name for name, _ in pred.ranking
                 if name not in hidden and (intents is None or name in intents)][:3]
    return _missed(config, responses, channel, language, values, fallbacks_so_far, intent, confidence, likeliest)


def _missed(config: BotConfig, responses: Responses, channel: str, language: Language, values: dict[str, Any],
           fallbacks_so_far: int, intent: str | None, confidence: float, likeliest: list[str]) -> Decision:
    """A miss: the fallback, offering the ``likeliest`` intents and a person, or the handoff once the misses in a
    row reach ``thresholds.fallbacks_before_handoff``."""
    if misses_reach_handoff(fallbacks_so_far, config):
        return handing_off(config, responses, channel, language, "fallbacks", values, intent, confidence)
    fallback = config.fallback
    buttons = [{"title": _title(config, name, language), "payload": f"/{name}"} for name in likeliest]
    buttons.append({"title": say(fallback.human_button, language), "payload": HANDOFF_PAYLOAD})
    # "Did you mean one of these?" over the person button alone asks about nothing; said twice in a row, it loops.
    text = say(fallback.again if fallbacks_so_far else fallback.message if likeliest else fallback.rephrase, language)
    return Decision("fallback", intent, confidence, text, buttons)


def _title(config: BotConfig, intent: str, language: Language) -> str:
    """A fallback button's title: fallback.titles' in the turn's language, else the intent's name in words."""
    phrase = intent_phrase(intent).capitalize()
    title = config.fallback.titles.get(intent)
    return say(title, language, phrase) if title is not None else phrase
