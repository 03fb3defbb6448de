"""Custom actions through rasa-sdk: in-process from ``actions/``, or a remote action server.

Both paths speak rasa-sdk's own action-call format, so an action written for Rasa runs unchanged.
The result is reduced to what deskbot applies: slot values, a pause or resume (handoff), a
follow-up action, and the messages to show.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import pkgutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yarl import URL

from bot.channels.base import client_session, error_text, load_json
from bot.language import blank
from bot.log_format import Verbatim, as_logged
from bot.project import (REQUESTED_SLOT, SESSION_METADATA, VERIFIED_USER, ActionsConfig, Mistakes, ProjectError,
                         ProjectErrors, config_error, did_you_mean, in_file_order, in_own_words, read_config,
                         written_forms, written_responses)
from bot.responses import MAX_REPLY_CHARS
from dialogues.redact import redact
from dialogues.store import CUSTOM_PLACEHOLDER

if TYPE_CHECKING:
    from rasa_sdk.executor import ActionExecutor

    from bot.project import BotConfig, Project

log = logging.getLogger("deskbot")
MAX_ACTION_THREADS = 32  # in-process actions running at once, hung ones included; more wait for a thread
ACTIONS_LOOP_CLOSE_S = 2.0  # at shutdown, how long the async actions' loop has to cancel what runs on it and close
HELD_LOOP_S = 0.5  # an async actions' loop that has not come round for this long is held by a blocking call
MAX_ANSWER_BYTES = 1 << 20  # an action server's answer; a runaway one must not fill the store or a chat
# The version an action call gives as Rasa's: the rasa-sdk deskbot runs its own actions with. rasa-sdk's server warns
# when its major and minor differ ("might not be compatible"), which a fixed "3.10.0" made it do with every other one.
RASA_SDK_VERSION = version("rasa-sdk")
# The conversation an action's tracker holds: the events of its latest turns (a customer's message, a reply; up to
# five events each), so that an action call in a long conversation costs what one in a short conversation does
TRACKER_TURNS = 20
# The rasa-sdk events deskbot applies (SlotSet, ConversationPaused and Resumed, FollowupAction, AllSlotsReset,
# Restarted, SessionStarted, SessionEnded, BotUttered, ActionReverted, UserUtteranceReverted, and an ActiveLoop(None)),
# and ActionExecuted, which only a follow-up's tracker lists, as Rasa's does; any other (an ActiveLoop naming a form) is
# logged as ignored, and a ReminderScheduled each on its own (:func:`_unkept_reminders`).
APPLIED_EVENTS = {"slot", "pause", "resume", "followup", "reset_slots", "restart", "session_started", "session_ended",
                  "bot", "undo", "rewind", "action"}
# The events after which Rasa's tracker starts afresh: its slots, a pause and a follow-up before them forgotten
FRESH_STARTS = {"restart", "session_started"}
# ReminderScheduled and ReminderCancelled: deskbot keeps no reminders, so a cancel has nothing to cancel, as in Rasa
# once a reminder has run
REMINDER_EVENTS = {"reminder", "cancel_reminder"}
# Rasa's own actions, which a FollowupAction may name: each ends the turn. deskbot does what
# action_listen, the two restarts and action_deactivate_loop mean; the others are Rasa's fallback and
# form machinery, for which deskbot has its own ways, so it logs that it skipped them.
RASA_RESTARTS = {"action_restart", "action_session_start"}
RASA_ACTIONS = RASA_RESTARTS | {
    "action_listen", "action_deactivate_loop", "action_default_fallback", "action_revert_fallback_events",
    "action_default_ask_affirmation", "action_default_ask_rephrase", "action_two_stage_fallback",
    "action_unlikely_intent", "action_back", "action_extract_slots"}
# Rasa's validation action, run after each message (a ValidationAction's name), as its forms run validate_<form>
RASA_VALIDATION = "action_validate_slot_mappings"
LIST_AGAIN_AFTER_S = 60.0  # how long an action server that did not list its actions is left before it is asked again


class ActionError(Exception):
    """An action failed, timed out or is unknown; the turn falls back instead of hanging."""


class ActionTimeout(ActionError):
    """An action ran out of time: unlike a failure, what it was doing may still get done (a plain ``def run``
    cannot be stopped), so the customer is not simply told to try again."""


@dataclass
class ActionResult:
    messages: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    paused: bool = False  # the last of ConversationPaused and ConversationResumed was a pause
    followup: str | None = None
    # AllSlotsReset, Restarted, SessionStarted or SessionEnded cleared the conversation's slots before ``slots``
    # were set
    reset: bool = False
    # UserUtteranceReverted: the customer's message is forgotten, the slots it filled and the action waiting for an
    # answer as they were before it, and ``slots`` set after that
    rewound: bool = False
    # ActiveLoop(None) after the last requested_slot it set: the action waits for no answer, as Rasa's form deactivates
    loop_ended: bool = False
    # Restarted or SessionStarted (FRESH_STARTS): later trackers start after it, as Rasa's do
    started_afresh: bool = False
    # the form its last ActiveLoop named (ActiveLoop("order_form")), unless a later one ended it: active while an
    # action waits for an answer, as the trackers' active loop
    form: str | None = None
    # every event it returned, as rasa-sdk's dicts: a follow-up's tracker holds them, as Rasa's does
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_response(cls, payload: Any, action: str | None = None,
                      forms: Collection[str] = ()) -> "ActionResult":
        """What an action's answer ``payload`` asks for. ``action``: its name, which the errors and warnings
        give, as a bot may have many; ``forms``: those deskbot runs (bot.yml's ``actions.forms``), which an
        ``ActiveLoop`` may start without a warning."""
        who = f"action {action!r}" if action else "an action"
        try:  # a JSON escape or a Python string may hold half of a surrogate pair, which no store or socket writes
            json.dumps(payload, ensure_ascii=False, default=repr).encode("utf-8")
        except UnicodeEncodeError:
            raise ActionError(f"{who}: not valid Unicode: its answer holds half of a surrogate pair") from None
        except (TypeError, ValueError, RecursionError):
            pass  # not JSON (a tuple key), circular or nested too deep: the checks below refuse it in their words
        try:
            answer = _Answer.model_validate(payload if payload is not None else {})
            # A BotUttered among the events is shown after the action's messages, as Rasa sends it
            said = [*answer.responses, *(_Message.model_validate({**(e.data or {}), "text": e.text})
                                         for e in answer.events if e.event == "bot")]
        except ValidationError as exc:  # an action server is the shop's code, or a proxy in front of it
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            # redacted as a reply is stored: deskbot's own checks quote the value they refuse, often the customer's
            raise ActionError(f"{who}: not a rasa-sdk action answer: {where + ': ' if where else ''}"
                              f"{redact(in_own_words(error))}") from None
        result = cls(messages=[m.model_dump(exclude_none=True) for m in said],
                     events=[e.model_dump(exclude_unset=True) for e in answer.events])
        if ignored := sorted({e.event for e in answer.events if e.event != "active_loop"} - APPLIED_EVENTS
                             - REMINDER_EVENTS):
            log.warning("%s returned %s events, which deskbot does not apply (it applies %s)", who, ", ".join(ignored),
                        ", ".join(sorted(APPLIED_EVENTS)))
        _unkept_reminders(who, answer.events)
        _unrun_forms(who, answer.events, forms)
        for event in answer.events:
            if event.event == "slot":
                result.slots[event.name] = event.value
                result.loop_ended = result.loop_ended and event.name != REQUESTED_SLOT
            elif _ends_loop(event):
                result.loop_ended, result.form = True, None
            elif event.event == "active_loop":
                result.loop_ended, result.form = False, event.name
            elif event.event == "pause":
                result.paused = True
            elif event.event == "resume":
                result.paused = False
            elif event.event == "followup":
                result.followup = event.name
            elif event.event in ("undo", "rewind"):  # ActionReverted undoes what the action did before it, as in Rasa
                result.slots.clear()
                result.paused, result.followup, result.reset, result.loop_ended = False, None, False, False
                result.started_afresh, result.form = False, None
                result.rewound = result.rewound or event.event == "rewind"
            elif event.event in ("reset_slots", "session_ended", *FRESH_STARTS):
                result.slots.clear()
                result.reset = True
                if event.event in FRESH_STARTS:  # they forget the pause, the follow-up and the form too, as in Rasa
                    result.paused, result.followup, result.started_afresh, result.form = False, None, True, None
        return result


def _ends_loop(event: _Event) -> bool:
    """Whether ``event`` is Rasa's ``ActiveLoop(None)``, which ends the wait for an answer to the action's question."""
    return event.event == "active_loop" and event.name is None


def _unrun_forms(who: str, events: list[_Event], forms: Collection[str]) -> None:
    """Warn of each ``ActiveLoop`` among ``events`` naming a form that bot.yml's ``actions.forms`` lacks, with what
    deskbot does with it: Rasa runs the form from its domain, which deskbot does not read, so a shop moving a Rasa bot
    would otherwise not know why nothing asked for the form's slots."""
    for form in sorted({event.name for event in events if event.event == "active_loop" and event.name} - set(forms)):
        log.warning("%s activated the form %r, which deskbot does not run: bot.yml's actions.forms does not name it "
                    "with its required_slots. It stays the trackers' active_loop while the action waits for the slot "
                    "it requested (requested_slot), which runs it again with the answer, validated first by "
                    "validate_<the action's name> (docs/learning.md, Custom actions)", who, form)


def _unkept_reminders(who: str, events: list[_Event]) -> None:
    """Warn of each ReminderScheduled among ``events``, naming the intent that will never run and when it was due:
    Rasa runs a reminder's intent in its conversation at its time; deskbot keeps no reminders, and "reminder
    events were not applied" left a shop to find out which of its follow-ups never came."""
    for event in (e for e in events if e.event == "reminder"):
        extra = event.model_extra or {}
        log.warning("%s scheduled a reminder%s of intent %r for %s, which will not run: deskbot keeps no reminders "
                    "(docs/learning.md, Custom actions)", who, f" {event.name!r}" if event.name else "",
                    extra.get("intent"), extra.get("date_time"))


class _Button(BaseModel):
    model_config = ConfigDict(extra="allow")
    title: str
    payload: str

    @model_validator(mode="after")
    def _stored_as_json(self) -> "_Button":
        """A button is stored with its reply and sent as JSON: a value that is none (a date) failed the
        store, and the customer's message with it."""
        try:
            json.dumps(self.model_dump(), allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"button {self.title!r} carries a value that is not JSON: {self.model_extra!r}") from None
        return self


def _answerable_buttons(buttons: Any) -> Any:
    """A button the customer cannot click (a ``web_url`` button has a url and no payload) or cannot read
    (a blank title, which Slack refuses with the whole message) is left out, with a warning, rather than
    throwing away what the action did and said."""
    if not isinstance(buttons, list):
        return buttons
    kept = [b for b in buttons if isinstance(b, dict) and isinstance(b.get("payload"), str)
            and isinstance(b.get("title"), str) and not blank(b["title"])]
    if len(kept) < len(buttons):
        log.warning("an action's button without a payload or a title was left out: %s",
                    redact(repr([b for b in buttons if b not in kept])))  # it may quote the customer, as a reply may
    return kept


class _Element(BaseModel):
    """One of a message's ``elements`` (a carousel's card), which Rasa's channels that draw no carousel show as its
    title and subtitle, with its buttons."""

    model_config = ConfigDict(extra="allow")  # its image_url, its default_action: for a channel that draws it
    title: str | None = None
    subtitle: str | None = None
    buttons: list[_Button] = Field(default_factory=list)

    _answerable = field_validator("buttons", mode="before")(_answerable_buttons)


class _Message(BaseModel):
    """One of the messages an action sends (``dispatcher.utter_message``)."""

    model_config = ConfigDict(extra="allow")  # a named response's values (order_id=...) ride along
    text: str | None = Field(None, max_length=MAX_REPLY_CHARS)  # as long as an agent's reply may be
    buttons: list[_Button] | None = None
    quick_replies: list[_Button] | None = None  # buttons, as Rasa's channels show them where they have none of their own
    elements: list[_Element] | None = None
    response: str | None = None

    _answerable = field_validator("buttons", "quick_replies", mode="before")(_answerable_buttons)

    @field_validator("elements", mode="before")
    @classmethod
    def _cards(cls, elements: Any) -> Any:
        """An element that is no card (a platform's own format) is left out, with a warning, as an unanswerable
        button is, rather than throwing away what the action did and said."""
        if not isinstance(elements, list):
            return elements
        if dropped := [e for e in elements if not isinstance(e, dict)]:
            log.warning("an action's elements that are no card were left out: %s", redact(repr(dropped)))
        return [e for e in elements if isinstance(e, dict)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    event: str
    name: str | None = None
    value: Any = None
    text: str | None = None  # a BotUttered's message: its text, and its buttons or image in its data
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _needs_a_name(self) -> "_Event":
        if self.event in ("slot", "followup") and not self.name:
            raise ValueError(f"a {self.event!r} event needs a name")
        if self.event == "slot" and self.name == REQUESTED_SLOT and not isinstance(self.value, (str, type(None))):
            raise ValueError(f"{REQUESTED_SLOT} names the slot the action asks for: set it to a slot's name, or to "
                             f"None when it asks nothing, not {type(self.value).__name__} {self.value!r}")
        if self.event == "slot":  # slots are stored and sent as JSON, as a Rasa tracker store keeps them
            try:
                json.dumps(self.value, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"slot {self.name!r} is set to {type(self.value).__name__} {self.value!r}, "
                                 "which is not a JSON value; set it to text or a number") from None
        return self


class _Answer(BaseModel):
    """rasa-sdk's answer to ``POST /webhook``, the parts deskbot applies checked before any is."""

    model_config = ConfigDict(extra="allow")
    events: list[_Event] = Field(default_factory=list)
    responses: list[_Message] = Field(default_factory=list)


def action_call(name: str, sender_id: str, text: str, intent: str, confidence: float,
                ranking: list[tuple[str, float]], slots: dict[str, Any], entities: Iterable[dict[str, Any]],
                domain: dict[str, Any] | None, channel: str, metadata: dict[str, Any],
                earlier: Sequence[dict[str, Any]] = (), past: Sequence[dict[str, Any]] = (),
                waiting: str | None = None, form: str | None = None) -> dict[str, Any]:
    """The request body rasa-sdk expects (``POST /webhook``).

    The tracker's events are the conversation's as Rasa lists them: Rasa's session start, the ``past`` events
    of its earlier turns (:func:`past_events`), then ``action_listen`` and the user's message, so that an
    action can ask ``tracker.get_latest_input_channel()`` which channel it came from and read the channel's
    ``metadata`` (a Slack thread, a WeCom agent id) from that event, or from ``tracker.latest_message``,
    which carries it too in Rasa; and ``tracker.get_last_event_for("bot")`` is what the customer was last told.
    As in Rasa, the tracker's slots hold every slot of the ``domain``, None
    where unset, so that ``tracker.slots["order_id"]`` reads None rather than raising. The slots and the
    metadata are copies: rasa-sdk's tracker keeps the dicts it is given, and an in-process action writing
    into them (as its validation actions do) would change the conversation even when it then fails or runs
    out of time; as in Rasa, slots change only by the events an action returns. ``earlier``: for an action
    a ``FollowupAction`` runs, the events of the actions of this turn before it (``executed``), which, as in
    Rasa, follow the user's in the tracker, the last of those actions its ``latest_action_name``; an action
    the message itself runs follows Rasa's ``action_listen``. ``waiting``: the action that waited for the answer to
    its question when the message came, the tracker's ``active_loop``, as Rasa names the form that asked; ``form``: the
    Rasa form active then (an action's ``ActiveLoop("order_form")``), named instead, and listed in the events before the
    message, as Rasa lists the form's activation, so that ``tracker.active_loop_name == "order_form"`` holds.
    """
    slots = {**dict.fromkeys((domain or {}).get("slots", ())), **copy.deepcopy(slots)}
    stamp = time.time()
    user_event = _user_event(text, intent, confidence, ranking, copy.deepcopy(list(entities)), channel,
                             copy.deepcopy(metadata), stamp)
    previous = next((e["name"] for e in reversed(earlier) if e["event"] == "action"), None)
    started = past[0]["timestamp"] if past else stamp
    activated = [{"event": "active_loop", "timestamp": stamp, "name": form}] if form else []
    waiting = form or waiting
    return {
        "next_action": name,
        "sender_id": sender_id,
        "version": RASA_SDK_VERSION,
        "tracker": {
            "sender_id": sender_id,
            "slots": slots,
            "latest_message": user_event["parse_data"],
            "events": [{"event": "action", "timestamp": started, "name": "action_session_start"},
                       {"event": "session_started", "timestamp": started}, *copy.deepcopy(past), *activated,
                       _action("action_listen", stamp), user_event, *copy.deepcopy(earlier)],
            "latest_input_channel": channel,
            "paused": False,
            "followup_action": None,
            "active_loop": {"name": waiting} if waiting else {},
            "latest_action_name": previous or "action_listen",
        },
        "domain": domain if domain is not None else {},
    }


def _user_event(text: str, intent: str | None, confidence: float, ranking: Iterable[Sequence[Any]],
                entities: list[dict[str, Any]], channel: str, metadata: dict[str, Any], stamp: float) -> dict[str, Any]:
    """A customer's message as Rasa's ``user`` event, its ``parse_data`` what ``tracker.latest_message`` reads."""
    parse_data = {"text": text, "intent": {"name": intent, "confidence": confidence}, "entities": entities,
                  "intent_ranking": [{"name": n, "confidence": c} for n, c in ranking], "metadata": metadata}
    return {"event": "user", "timestamp": stamp, "text": text, "parse_data": parse_data, "input_channel": channel,
            "metadata": metadata}


def _action(name: str, stamp: float) -> dict[str, Any]:
    return {"event": "action", "timestamp": stamp, "name": name}


def past_events(turns: Iterable[dict[str, Any]], actions_map: Mapping[str, str],
                entities_in: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A conversation's earlier ``turns`` (``Store.recent_turns``) as Rasa's tracker lists them, so that an action
    can repeat what was said or read what was asked before: each customer message as ``action_listen`` and a
    ``user`` event with what the bot made of it (its intent and ranking, and the entities ``entities_in`` reads
    in its stored text), a ``slot`` event for each slot those filled, and the ``action`` that answered it, where
    Rasa would name one (:func:`_answered_by`); each reply as a ``bot`` event with its buttons in its ``data``,
    an agent's marked ``{"agent": true}`` in its ``metadata``. The texts are as stored: redacted as
    ``privacy:`` says. A message an action took back (``UserUtteranceReverted``) is followed, after its reply, by
    Rasa's ``rewind``, as Rasa lists it: rasa-sdk's ``applied_events()`` and ``get_last_event_for`` leave it out; one
    whose action started the conversation afresh (``Restarted``, ``action_restart``), by Rasa's ``restart``, which
    they and ``events_after_latest_restart()`` start after.
    What the store does not keep is not listed: the message's metadata, a follow-up action, and the slots an
    action set or cleared (``tracker.slots`` holds where they stand)."""
    events: list[dict[str, Any]] = []
    owed: list[dict[str, Any]] = []  # the rewind and restart of the message last listed, listed after its reply
    for turn in turns:
        stamp = turn["created"]
        if turn["role"] == "user":
            events += owed
            owed = []
        if turn["role"] != "user":
            # a reply of custom payloads alone has no text, as Rasa lists it, and its payload in its data
            text = None if turn["role"] == "bot" and turn["text"] == CUSTOM_PLACEHOLDER else turn["text"]
            events.append({"event": "bot", "timestamp": stamp, "text": text, "data": _uttered_data(turn),
                           "metadata": {"agent": True} if turn["role"] == "agent" else {}})
            continue
        found = entities_in(turn["text"])
        filled: dict[str, Any] = {}
        for entity in found:
            filled.setdefault(entity["entity"], entity["value"])
        events += [_action("action_listen", stamp),
                   _user_event(turn["text"], *_understood(turn), turn["ranking"], found, turn["channel"], {}, stamp),
                   *({"event": "slot", "timestamp": stamp, "name": k, "value": v} for k, v in filled.items())]
        if answered := _answered_by(turn["source"], turn["intent"], actions_map):
            events.append(_action(answered, stamp))
        owed = [{"event": event, "timestamp": stamp} for event, marked in
                (("rewind", turn.get("reverted")), ("restart", turn.get("restarted"))) if marked]
    return events + owed


def _uttered_data(turn: Mapping[str, Any]) -> dict[str, Any]:
    """A stored reply's ``data`` as Rasa's ``bot`` event carries it: its buttons, and its custom payload (Rasa's
    ``custom``, one a message; a reply that passed on several lists them)."""
    custom = turn.get("custom") or []
    return {**({"buttons": turn["buttons"]} if turn["buttons"] else {}),
            **({"custom": custom[0] if len(custom) == 1 else custom} if custom else {})}


def _understood(turn: Mapping[str, Any]) -> tuple[str | None, float]:
    """The intent the classifier read in a customer's stored message, and its confidence, as Rasa's ``user`` event
    names it: the top of its ranking. The turn's own intent is what answered it, which for an answer to an action's
    question is the asking action's, and for a reply about no intent (an acknowledgement) none."""
    if turn["ranking"]:
        name, confidence = turn["ranking"][0]
        return name, confidence
    return turn["intent"], turn["confidence"] or 0.0


def _answered_by(source: str | None, intent: str | None, actions_map: Mapping[str, str]) -> str | None:
    """The action Rasa's tracker would name for a message deskbot answered by ``source``: its custom action (as
    bot.yml maps its intent now), its intent's response (``utter_<intent>``), or Rasa's fallback; None where
    deskbot answered in its own way (a history answer, an acknowledgement, a handoff) or not at all."""
    if source == "action":
        return actions_map.get(intent or "")
    if source == "template":
        return f"utter_{intent}" if intent else None  # no intent's: deskbot's own acknowledgement
    return "action_default_fallback" if source == "fallback" else None


def extraction_call(call: dict[str, Any], extracted: Mapping[str, Any]) -> dict[str, Any]:
    """``call`` (:func:`action_call`'s, for a validation action) as Rasa makes it once the message's slots are
    extracted: the slots it filled (``extracted``) follow the user's message as ``slot`` events, where rasa-sdk's
    ``tracker.slots_to_validate()`` reads them. So Rasa calls ``action_validate_slot_mappings`` after each message."""
    stamp = time.time()
    events = [*call["tracker"]["events"],
              *({"event": "slot", "timestamp": stamp, "name": k, "value": v} for k, v in extracted.items())]
    return {**call, "tracker": {**call["tracker"], "events": events}}


def validation_call(call: dict[str, Any], action: str, answered: str, extracted: Mapping[str, Any]) -> dict[str, Any]:
    """``call`` (:func:`action_call`'s, for a validation action) as Rasa's form makes it when the answer to its question
    comes: as :func:`extraction_call` makes it, the action that asked (or the form of bot.yml's ``actions.forms``) the
    active loop, and the domain's forms giving an action the slot it asked for (``answered``) as the one to validate,
    a form its ``required_slots`` (a ``FormValidationAction`` may ask for more, with its own ``required_slots``)."""
    extracted_call = extraction_call(call, extracted)
    forms = call["domain"].get("forms") or {}
    return {**extracted_call, "tracker": {**extracted_call["tracker"], "active_loop": {"name": action}},
            "domain": {**call["domain"], "forms": {**forms, action: forms.get(action, {"required_slots": [answered]})}}}


def executed(name: str, result: ActionResult) -> list[dict[str, Any]]:
    """What the tracker records of action ``name`` having run: Rasa's ``action`` event, then the events it returned."""
    return [_action(name, time.time()), *result.events]


def action_domain(project: Project, defined: Iterable[str] = ()) -> dict[str, Any]:
    """The domain rasa-sdk hands an action (``domain`` in its call): what the bot knows of itself. Its ``actions``, as
    Rasa's domain lists every custom action: those ``defined`` (actions/'s classes, action_ask_<slot> and validation
    actions among them), those bot.yml's actions.map names and the forms' submit actions; an action that looks for
    another there (a FollowupAction it chooses) found only the mapped ones."""
    # rasa-sdk's validation actions read the slot names from here, as Rasa's own domain lists them, its
    # session_started_metadata among them (and deskbot's verified_user).
    forms = {name: {"required_slots": list(form.required_slots)} for name, form in project.config.actions.forms.items()}
    slots = {name: {"type": "any", "influence_conversation": False, "mappings": []}
             for name in sorted({*project.entity_patterns, *(project.config.actions.slots or ()), SESSION_METADATA,
                                 VERIFIED_USER, *(slot for form in forms.values() for slot in form["required_slots"])})}
    # The templates under the names an action gives them (response="utter_<intent>"), as Rasa's domain has its responses,
    # and the responses named after no intent under their own (utter_ask_email)
    named = {**{f"utter_{intent}": variants for intent, variants in project.responses.templates.items()},
             **project.responses.named}
    responses = {name: [variant.model_dump(exclude_defaults=True) for variant in variants]
                 for name, variants in named.items()}
    return {"intents": project.intents, "entities": sorted(project.entity_patterns), "slots": slots,
            "responses": responses, "forms": forms,
            "actions": sorted({*defined, *project.config.actions.map.values(),
                               *(form.submit for form in project.config.actions.forms.values()
                                 if form.submit and not form.submit.startswith("utter_"))})}


def map_mistakes(root: Path, loaded: ActionRunner | None = None) -> list[str]:
    """The mistakes of actions/ and of bot.yml's ``actions.map`` against it, to tell with those of the bot's files
    when these do not load (the runner is made of a loaded bot): a file of actions/ that does not import, an action
    the map names that it lacks, a form's slot that nothing asks for (responses.yml's responses as written, actions/'s
    actions). bot.yml as it reads without its own mistakes. ``loaded``: a running server's runner,
    whose actions are checked against rather than actions/ imported again, which would put new modules under the
    package ``actions`` beneath the actions running; nothing is said where actions/ changed since it imported them,
    as the reload that serves the mended files imports them again and tells their mistakes then."""
    config, _ = read_config(root / "bot.yml", Mistakes())  # its mistakes are told with the files'
    if config is None:
        return []
    settings = config.actions
    # what asks for the forms' slots checked against responses.yml as written; an action server is not asked here
    named = None if settings.endpoint else written_responses(root / "responses.yml")
    written = written_forms(root / "bot.yml")
    try:
        if loaded is None:
            ActionRunner(root / "actions", settings.endpoint, settings.timeout, domain={},
                         import_timeout=settings.import_timeout).check_map(
                config, root, named, written)
        elif loaded.runs_code_of(root, settings.endpoint):
            loaded.check_map(config, root, named, written)
    except ActionError as exc:
        return [str(exc)]
    return []


def with_map_mistakes(exc: ProjectError, root: Path, loaded: ActionRunner | None = None) -> ProjectError:
    """``exc``, the mistakes of the bot's files at ``root``, with those of actions/ and its map
    (:func:`map_mistakes`) among them in file order (:func:`~bot.project.in_file_order`): all told in one run rather
    than the actions' once the files are mended, bot.yml's map beside bot.yml's other lines."""
    if mistakes := map_mistakes(root, loaded):
        return ProjectErrors(in_file_order([*(exc.mistakes if isinstance(exc, ProjectErrors) else [str(exc)]),
                                            *mistakes]))
    return exc


def ask_names(form: str, slot: str) -> list[str]:
    """What may ask for ``slot`` of ``form``, in the order Rasa's form looks for it: a custom action, then a response,
    of that form's own (``action_ask_order_form_email``), then of any form's (``action_ask_email``)."""
    return [f"action_ask_{form}_{slot}", f"utter_ask_{form}_{slot}", f"action_ask_{slot}", f"utter_ask_{slot}"]


class ActionRunner:
    """Runs custom actions with a time limit, in-process or against ``endpoint``.

    In-process actions run beside the server's event loop, never on it. rasa-sdk calls a synchronous
    ``run`` (a database query, ``requests.get``) directly, which on the server's loop would stall every
    conversation and leave the time limit unable to fire, so each such call gets a thread of its own.
    A thread cannot be stopped, so a hung action keeps its own, never one of a few that other
    customers' actions wait for, and the threads are daemons, which a stopping server does not wait
    for. At most ``MAX_ACTION_THREADS`` run at once, hung ones counted until they return; a call
    beyond them waits for one to return, within its time limit. An ``async def run`` runs on one
    event loop of the actions' own, in one thread, as rasa-sdk's server runs them all on one loop:
    a client or a pool an action keeps between calls (an ``aiohttp.ClientSession``) belongs to a loop
    that must outlive the call. Timed out, it is cancelled. A blocking call inside one (``requests.get``,
    ``time.sleep``) holds up that loop, never the server: the async actions called once it has been held
    ``HELD_LOOP_S`` run on a new loop (:class:`_ActionLoop`), where on rasa-sdk's server every other customer's
    waited, and the held one stops once what it runs is done.
    """

    def __init__(self, actions_dir: Path | None, endpoint: str | None, timeout: float, domain: dict[str, Any],
                 import_timeout: float = ActionsConfig.model_fields["import_timeout"].default) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.domain = domain
        self.actions_dir = actions_dir
        self.executor = None
        self._session: aiohttp.ClientSession | None = None
        self._listed_names: set[str] | None = None  # the action server's actions, once it has listed them
        self._list_again_at = 0.0  # when to ask an action server that did not list them again (time.monotonic)
        self._map_checked: BotConfig | None = None  # the bot.yml whose actions.map was checked against the list
        self.unlisted: list[str] = []  # the actions that map names and the action server does not list, when checked
        self.unlisted_error: str | None = None  # and the error that names them, on bot.yml's line
        self._unlisted_said: str | None = None  # why the action server last did not list them, as the log said it
        self._map_checking = asyncio.Lock()
        self._threads: asyncio.Semaphore | None = None  # made on the server's loop, at the first call
        self._action_loop: _ActionLoop | None = None  # the async actions', at the first one
        self._held_loops: list[_ActionLoop] = []  # those a blocking call held, running until what they run is done
        self._call_threads: dict[int, threading.Thread] = {}  # each action's thread, by its call's id, while awaited
        self.actions_dir = actions_dir
        self._loaded: tuple[tuple[str, int], ...] = ()  # the Python files imported, as they were then
        if endpoint is None and actions_dir is not None and actions_dir.is_dir():
            self._loaded = code_stamp(actions_dir)
            self.executor = _load_executor(actions_dir, import_timeout)

    def code_changed(self) -> bool:
        """Whether the Python files in actions/ that this runner imported have changed since (edited, added,
        removed): imported once, they run as they were until :meth:`reloaded` imports them again."""
        return self.executor is not None and self.actions_dir is not None and code_stamp(self.actions_dir) != self._loaded

    def reloaded(self, project: Project) -> ActionRunner:
        """The runner for ``project``'s actions as they are now, for a reload: this one, with the domain the
        action server is sent brought up to date, while neither actions/'s Python files nor bot.yml's
        ``actions.endpoint`` and ``actions.timeout`` changed; else a new one, actions/ imported again. Raises
        :class:`ActionError` when the new code fails to import. Its map is for the caller to :meth:`check`."""
        settings = project.config.actions
        if self.runs_code_of(project.root, settings.endpoint) and settings.timeout == self.timeout:
            self.domain = action_domain(project, self.names)
            return self
        return ActionRunner._made_for(project)

    def runs_code_of(self, root: Path, endpoint: str | None) -> bool:
        """Whether this runner runs the actions of the bot at ``root`` as they are now, ``endpoint`` its bot.yml's
        ``actions.endpoint``: the same action server, or actions/'s Python files unchanged since it imported them
        (none where there were none)."""
        folder = root / "actions" if endpoint is None and (root / "actions").is_dir() else None
        same_code = folder is None if self.executor is None else not self.code_changed() and folder == self.actions_dir
        return same_code and endpoint == self.endpoint

    @classmethod
    def for_project(cls, project: Project) -> ActionRunner:
        """The runner bot.yml's ``actions`` describe, its map checked (:meth:`check`): made before the model
        loads, so that a mistake in actions/ or the map stops ``bot serve`` at once."""
        runner = cls._made_for(project)
        runner.check(project)
        return runner

    @classmethod
    def _made_for(cls, project: Project) -> ActionRunner:
        """The runner bot.yml's ``actions`` describe, unchecked, its domain listing the actions it imported."""
        settings = project.config.actions
        runner = cls(project.actions_dir, settings.endpoint, settings.timeout, domain={},
                     import_timeout=settings.import_timeout)
        runner.domain = action_domain(project, runner.names)
        return runner

    def check(self, project: Project) -> None:
        """Raise :class:`ActionError`, naming bot.yml's line, if its ``actions.map`` names an action this runner
        cannot run in-process (a typo would fail every customer who asks for it): at start, and again when
        a reload brings a new map. A Rasa bot's actions that Rasa runs by itself (a custom
        ``action_session_start``) and the map leaves out are named in a warning: they would never run. So are
        its forms' validation actions, mapped or not, but the ``validate_<action>`` of an action (:meth:`validator`), which
        deskbot runs when a customer answers that action's question, and ``action_validate_slot_mappings``, which it runs
        after every message: deskbot has no forms, so the others would check nothing, and a shop's checks would silently
        not be made."""
        self.check_map(project.config, project.root, project.responses.named)
        mapped = set(project.config.actions.map.values())
        if unreached := [name for name in self.names if name not in mapped and name in RASA_ACTIONS]:
            log.warning("actions/ defines %s, which Rasa runs by itself (at a session's start, on a fallback) and "
                        "deskbot never does: an action of actions/ runs when bot.yml's actions.map names it",
                        ", ".join(unreached))
        if validating := self._validation_actions(mapped, set(project.config.actions.forms)):
            log.warning("%s %s, rasa-sdk's slot validation of a form (FormValidationAction), which deskbot "
                        "does not run as Rasa does: bot.yml's actions.forms does not name its form, and deskbot runs a "
                        "validation action only as validate_<form> of a form named there, or as validate_<action>, "
                        "named after an action that asks for a slot (requested_slot), when the customer answers it, "
                        "so these validate_<slot> methods never check what a customer gives, even where actions.map "
                        "names the action; name the form in actions.forms with its required_slots, or check a value "
                        "in the action that asks (docs/learning.md, Custom actions)",
                        "actions.map names" if self.endpoint else "actions/ defines", ", ".join(validating))

    def check_map(self, config: BotConfig, root: Path, named: Collection[str] | None = None,
                  written: Collection[str] = ()) -> None:
        """Raise :class:`ActionError`, naming the line of bot.yml (``config``, of the bot at ``root``), for each action
        its ``actions.map`` names that this runner cannot run in-process, and each mistake of its forms
        (:meth:`_form_mistakes`; what asks for their slots where ``named``, responses.yml's responses named after no
        intent, is given), so that one run finds them all. ``written``: forms bot.yml names that ``config`` lacks for
        their own mistakes, told already."""
        said = []
        if self.endpoint is None and (unknown := _unknown_mapped(config, self.names, written)):
            defined = (f"no class in actions/ is named so (it defines {', '.join(self.names) or 'none'})"
                       if self.executor else "the bot has no actions/ folder and no actions.endpoint")
            said.append(_unknown_mapped_error(root, unknown, defined))
        said.extend(self._form_mistakes(config, root, named))
        if said:
            raise ActionError("\n".join(said))

    async def check_listed_map(self, config: BotConfig, root: Path, again: bool = False) -> str | None:
        """Check bot.yml's ``actions.map`` (``config``'s, of the bot at ``root``) against the actions the action server
        lists now (rasa-sdk's ``GET /actions``), once per bot.yml read: as the server starts, at each reload, and, while
        the action server does not answer (it may start after deskbot), again ``LIST_AGAIN_AFTER_S`` later, or at once
        where ``again`` (a reload: the shop may just have started it or added an action). A typo, or an action the
        server lost, would fail every customer who asks for it: each such action is named in an ERROR on bot.yml's
        line (:attr:`unlisted`), and a map that lists them all again is said in the log. Asked on the event loop, never
        blocking it; customers are answered meanwhile, a missing action's falling back. The error, else None."""
        async with self._map_checking:  # the watcher's and a reload's check at once would say each mistake twice
            if not self.endpoint or config is self._map_checked or not again and time.monotonic() < self._list_again_at:
                return self.unlisted_error
            return await self._check_listed_map(config, root)

    async def _check_listed_map(self, config: BotConfig, root: Path) -> str | None:
        """:meth:`check_listed_map`'s check, made now."""
        try:
            listed = await self._list(self._client())
        except (aiohttp.ClientError, ValueError, asyncio.TimeoutError) as exc:
            self._not_listed(exc)
            return self.unlisted_error
        self._listed_names, self._map_checked, self._unlisted_said = listed, config, None
        unknown = _unknown_mapped(config, listed)
        had = self.unlisted
        self.unlisted = [action for _, action in unknown]
        why = (f"the action server at {self._redacted(self._webhook())} does not list it (it lists "
               f"{', '.join(sorted(listed)) or 'none'}): its customers get the fallback")
        self.unlisted_error = _unknown_mapped_error(root, unknown, why) if unknown else None
        if self.unlisted_error:
            log.error("%s", self.unlisted_error)
        elif had:
            log.info("the action server at %s now lists every action bot.yml's actions.map names",
                     self._redacted(self._webhook()))
        return self.unlisted_error

    def _form_mistakes(self, config: BotConfig, root: Path, named: Collection[str] | None) -> list[str]:
        """Each form of ``actions.forms`` whose ``submit`` action this runner cannot run (in-process, or on an action
        server that lists its actions), and, where ``named`` (responses.yml's responses named after no intent) is
        given, each that could not ask for one of its slots (no action or response of :func:`ask_names`), named on
        bot.yml's line: every customer who reached it would get a failed turn. An action server is not asked where
        ``named`` is not given (the bot's files do not load)."""
        if not config.actions.forms or named is None and self.endpoint:
            return []
        if (known := self._known_at_load()) is None:
            return []
        said = []
        for name, form in config.actions.forms.items():
            if named is not None and (missing := [slot for slot in form.required_slots
                                                  if not {*named, *known}.intersection(ask_names(name, slot))]):
                where = "the action server lists" if self.endpoint else "actions/ defines"
                said.append(str(config_error(
                    root, ("actions", "forms", name, "required_slots"),
                    f"responses.yml has no {', '.join(f'utter_ask_{slot}' for slot in missing)}, nor {where} an "
                    f"action_ask_<slot>, to ask for {', '.join(missing)} with")))
            if form.submit and not form.submit.startswith("utter_") and form.submit not in known:
                why = "the action server does not list it" if self.endpoint else "no class in actions/ is named so"
                said.append(str(config_error(root, ("actions", "forms", name, "submit"), f"{form.submit!r}: {why}")))
        return said

    def _known_at_load(self) -> set[str] | None:
        """The actions this runner runs, for the checks at load: actions/'s, or those the action server lists (rasa-sdk's
        ``GET /actions``), asked here, off the event loop; None where it does not answer (it may start after deskbot),
        with a warning: what only it could run is not checked."""
        if not self.endpoint:
            return set(self.names)

        async def listing() -> set[str]:
            async with client_session() as session:
                return await self._list(session)

        try:
            with ThreadPoolExecutor(max_workers=1) as pool:  # asyncio.run, also where the caller runs on a loop
                self._listed_names = pool.submit(asyncio.run, listing()).result()
        except (aiohttp.ClientError, ValueError, asyncio.TimeoutError) as exc:
            log.warning("the action server at %s did not list its actions (%s), so the forms' actions it would run "
                        "(action_ask_<slot>, submit) are not checked", self._redacted(self._actions_url()),
                        _failure(exc))
            return None
        return self._listed_names

    def _validation_actions(self, mapped: set[str], forms: set[str]) -> list[str]:
        """The validation actions deskbot never runs: among the in-process ones, by their class, all but those
        named after an action that asks for a slot (:meth:`validator`) or one of ``forms``, and
        ``action_validate_slot_mappings``; those ``mapped`` on an action server, whose classes deskbot cannot see, by
        the names Rasa runs them by."""
        if self.endpoint:
            return sorted(name for name in mapped if name.startswith("validate_")
                          and name.removeprefix("validate_") not in forms)
        from rasa_sdk.forms import ValidationAction

        return [name for name in self.names
                if isinstance(getattr(self.executor.actions[name], "__self__", None), ValidationAction)
                and name != RASA_VALIDATION and name.removeprefix("validate_") not in {*self.names, *forms}]

    @property
    def names(self) -> list[str]:
        return sorted(self.executor.actions) if self.executor else []

    async def validator(self, action: str) -> str | None:
        """The validation action of ``action`` (``validate_<action>``, as Rasa names a form's), run when a customer
        answers what ``action`` asked for; None without one."""
        name = f"validate_{action}"
        return name if name in await self.known() else None

    async def validates_slots(self) -> bool:
        """Whether the actions define Rasa's ``action_validate_slot_mappings`` (a rasa-sdk ``ValidationAction``), which
        Rasa runs after each message to extract and validate its slots."""
        return RASA_VALIDATION in await self.known()

    async def known(self) -> set[str]:
        """The actions this runner can run: actions/'s, or those the action server lists (:meth:`_listed`)."""
        return await self._listed() if self.endpoint else set(self.names)

    async def _listed(self) -> set[str]:
        """The actions the action server lists (rasa-sdk's ``GET /actions``), asked once it has answered; none,
        with a warning, while it does not (its actions' calls then fail on their own), asked again a minute later:
        every customer's message would otherwise wait for the server's silence first."""
        if self._listed_names is None and time.monotonic() >= self._list_again_at:
            try:
                self._listed_names, self._unlisted_said = await self._list(self._client()), None
            except (aiohttp.ClientError, ValueError, asyncio.TimeoutError) as exc:
                self._not_listed(exc)
        return self._listed_names or set()

    def _not_listed(self, exc: BaseException) -> None:
        """Say that the action server did not list its actions (``exc``), with what goes unchecked meanwhile, once
        while it fails for the same reason: asked again every ``LIST_AGAIN_AFTER_S``, by the map's watcher and by the
        customers' messages, a server down for the night wrote the same warning every minute."""
        if (failure := _failure(exc)) != self._unlisted_said:
            log.warning("the action server at %s did not list its actions (%s), so no validation action is run, and "
                        "bot.yml's actions.map is not checked against them, until it does (asked again every %g s, and "
                        "at each reload)", self._redacted(self._actions_url()), failure, LIST_AGAIN_AFTER_S)
        self._unlisted_said = failure
        self._list_again_at = time.monotonic() + LIST_AGAIN_AFTER_S

    async def _list(self, session: aiohttp.ClientSession) -> set[str]:
        """The names of the actions the action server lists, asked with ``session``; raises when it lists none."""
        async with session.get(self._actions_url(), allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
            if resp.status != 200:
                raise ValueError(f"status {resp.status}")
            try:
                body = await _read_answer(resp)
            except ActionError as exc:  # over MAX_ANSWER_BYTES: no list, as any answer that is none
                raise ValueError(str(exc)) from None
        if not isinstance(body, list):
            raise ValueError(f"a {type(body).__name__}, not rasa-sdk's list")
        return {item["name"] for item in body if isinstance(item, dict) and isinstance(item.get("name"), str)}

    def _actions_url(self) -> URL:
        """rasa-sdk's ``GET /actions`` beside ``actions.endpoint``'s webhook, with its query (a ``?token=``)."""
        webhook = self._webhook()
        return webhook.with_path(webhook.path.rstrip("/").removesuffix("/webhook") + "/actions").with_query(webhook.query)

    @staticmethod
    def _redacted(url: URL) -> Verbatim:
        """``url`` without what may be secret: a token in its query, a user and password (basic auth); its host as it
        is, an IP address too (:class:`Verbatim`)."""
        return Verbatim(url.with_query(None).with_user(None))

    async def run(self, call: dict[str, Any], left: float | None = None) -> ActionResult:
        """The action's result within ``timeout`` seconds, or within ``left`` of them: the actions of one
        turn (an action and its ``FollowupAction`` chain) share the time, which the customer waits."""
        try:
            return await asyncio.wait_for(self._run(call), max(0.0, self.timeout if left is None else left))
        except asyncio.TimeoutError:
            within = "" if left is None else " with the actions before it"
            raise ActionTimeout(f"action {call['next_action']!r} timed out after {self.timeout:g}s{within}"
                                f"{self._stuck_at(call)}") from None
        finally:
            self._call_threads.pop(id(call), None)

    def _is_async(self, name: str) -> bool:
        """Whether ``name`` is an in-process action with an ``async def run``, which runs on the actions' loop."""
        return self.executor is not None and inspect.iscoroutinefunction(self.executor.actions.get(name))

    def _stuck_at(self, call: dict[str, Any]) -> str:
        """Where the shop's code is when an in-process action times out, said with the timeout: the line a plain
        ``def run`` still waits at (a request with no timeout of its own), or, for an async one, where a blocking
        call (``time.sleep``, ``requests.get``) in any async action holds up their loop, and with it every
        other, each of which timed out with nothing to say that the fault was another action's. On an action server,
        that it had not answered: the time went there, not to deskbot, and the action may still finish there."""
        if self.endpoint:
            return (f"; the action server at {self._redacted(self._webhook())} had not answered (its action may "
                    "still finish)")
        if self._is_async(call["next_action"]):
            own = self._innermost_own_in(self._call_threads.get(id(call)))
            return "" if own is None else (
                f"; the async actions' loop is held meanwhile at {own.filename}:{own.lineno} ({own.line}): a blocking "
                "call in an async def run holds up every async action (await an async client there, or make it a "
                "plain def run, which runs in a thread of its own)")
        own = self._innermost_own_in(self._call_threads.get(id(call)))
        return "" if own is None else f"; it runs on, at {own.filename}:{own.lineno} ({own.line})"

    def _innermost_own_in(self, thread: threading.Thread | None) -> traceback.FrameSummary | None:
        """The line of ``actions/`` that ``thread`` runs now, if any."""
        return None if self.actions_dir is None else _running_at(thread, self.actions_dir)

    async def _run(self, call: dict[str, Any]) -> ActionResult:
        if self.endpoint:
            return await self._remote(call)
        if self.executor is None:
            raise ActionError(f"no actions/ folder and no action_endpoint for {call['next_action']!r}")
        executor = self.executor
        if (name := call["next_action"]) not in executor.actions:  # a FollowupAction's typo, told with its likely fix
            raise ActionError(f"no class in actions/ is named {name!r}{did_you_mean(name, self.names)}")
        try:
            if self._is_async(call["next_action"]):
                result = await self._on_action_loop(lambda: _run_joining_streams(executor, call), id(call))
            else:
                result = await self._in_thread(lambda: asyncio.run(_run_joining_streams(executor, call)), id(call))
        except ActionError:
            raise
        except Exception as exc:
            raise ActionError(f"action {call['next_action']!r} failed: "
                              f"{_raised(exc, self.actions_dir, call['sender_id'])}") from exc
        payload = result.model_dump() if hasattr(result, "model_dump") else result
        return ActionResult.from_response(payload or {}, call["next_action"], call["domain"].get("forms") or {})

    async def _on_action_loop(self, work: Callable[[], Coroutine[Any, Any, Any]], call_id: int) -> Any:
        """``work()``'s result, run on the async actions' loop (:meth:`_free_loop`); cancelled there when the caller
        stops waiting. Made there: one timed out before the loop came to it (held by a blocking action) was never
        awaited, which Python warned of on stderr ("coroutine 'ActionExecutor.run' was never awaited"), as if
        deskbot had lost it."""
        action_loop = self._free_loop()
        self._call_threads[call_id] = action_loop.thread

        async def guarded() -> Any:
            try:
                return await work()
            except Exception:
                raise
            except BaseException as exc:  # sys.exit() would stop the actions' loop for good; a CancelledError the
                # shop's code raised, not our time limit, would drop the customer's turn
                if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                raise RuntimeError(f"it raised {type(exc).__name__}" + (f" ({exc})" if str(exc) else "")) from None

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(guarded(), action_loop.loop))

    def _free_loop(self) -> _ActionLoop:
        """The async actions' loop, made at the first call; a new one once a blocking call has held it for
        ``HELD_LOOP_S``, said in the log with the line that blocks. The held one is left to finish what it runs,
        then stops. At most ``MAX_ACTION_THREADS`` loops are held at once: past them, calls wait on the last."""
        self._held_loops = [held for held in self._held_loops if held.thread.is_alive()]
        current = self._action_loop
        if current is not None and (not current.held() or len(self._held_loops) >= MAX_ACTION_THREADS):
            return current
        if current is not None:
            own = self._innermost_own_in(current.thread)
            log.warning("an async action holds the async actions' loop%s: a blocking call in an async def run (await "
                        "an async client there, or make it a plain def run, which runs in a thread of its own); the "
                        "async actions called meanwhile run on a new loop",
                        "" if own is None else f" at {own.filename}:{own.lineno} ({own.line})")
            current.retire()
            self._held_loops.append(current)
        self._action_loop = _ActionLoop()
        return self._action_loop

    async def _in_thread(self, work: Callable[[], Any], call_id: int) -> Any:
        """``work()``'s result, computed in a new daemon thread once one of ``MAX_ACTION_THREADS`` is free;
        a caller that stops waiting (the time limit) leaves the thread to finish on its own. The thread is
        known by ``call_id`` until :meth:`run` returns, to say where it hangs."""
        if self._threads is None:
            self._threads = asyncio.Semaphore(MAX_ACTION_THREADS)
        threads = self._threads
        await threads.acquire()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            threads.release()
            if future.done():  # given up on at the time limit
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def target() -> None:
            result, error = None, None
            try:
                result = work()
            except Exception as exc:
                error = exc
            except BaseException as exc:  # sys.exit(), KeyboardInterrupt, a cancelled task's CancelledError in the
                # shop's code: raised in the server's loop, the first two would stop it and the last drop the turn
                error = RuntimeError(f"it raised {type(exc).__name__}" + (f" ({exc})" if str(exc) else ""))
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the server's loop has closed: nobody waits for this answer any more
                pass

        thread = threading.Thread(target=target, name="deskbot-action", daemon=True)
        try:
            thread.start()
            self._call_threads[call_id] = thread
        except BaseException:  # no thread to be had (a container's process limit): its place is free again
            threads.release()
            raise
        return await future

    def _webhook(self) -> URL:
        """``actions.endpoint`` with rasa-sdk's path, ``/webhook``, where it names none."""
        url = URL(self.endpoint)
        if not url.path.rstrip("/").endswith("/webhook"):  # rasa-sdk's path, kept before any query (?token=)
            url = url.with_path(url.path.rstrip("/") + "/webhook").with_query(url.query)
        return url

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = client_session()
        return self._session

    async def _remote(self, call: dict[str, Any]) -> ActionResult:
        url = self._webhook()
        try:
            return await self._post(url, call)
        except (aiohttp.ClientError, ValueError) as exc:  # down, unreachable, or not answering JSON
            # named without what may be secret: a token in the query, a user and password (basic auth) before the host
            raise ActionError(f"the action server at {self._redacted(url)} failed for "
                              f"{call['next_action']!r}: {_failure(exc)}") from exc

    async def _post(self, url: URL, call: dict[str, Any]) -> ActionResult:
        for _ in range(2):
            # A redirect is not followed: it would carry the customer's conversation (the tracker) elsewhere.
            async with self._client().post(url, json=call, allow_redirects=False) as resp:
                try:
                    body = await _read_answer(resp)
                except ValueError:
                    if resp.status == 200:
                        raise
                    # a proxy's error page (502 Bad Gateway), another server's "404: Not Found" at a wrong path: its
                    # status says what went wrong, where "JSONDecodeError: Expecting value" said nothing of it
                    status = f"{resp.status} {resp.reason or ''}".rstrip()
                    raise ActionError(f"the action server at {self._redacted(url)} answered {status} for "
                                      f"{call['next_action']!r}, and not as rasa-sdk answers: a proxy in front of it, "
                                      "or not its /webhook?") from None
                if resp.status == 200:
                    # {} when empty; a list or a number is refused
                    return ActionResult.from_response(body, call["next_action"], call["domain"].get("forms") or {})
                if resp.status == 449:  # the server wants the domain: send it again with it
                    call = {**call, "domain": self.domain}
                    continue
                if resp.status == 404:  # a typo in actions.map or a FollowupAction: told with its likely fix
                    meant = did_you_mean(call["next_action"], await self._listed())
                    raise ActionError(f"the action server at {self._redacted(url)} does not know "
                                      f"{call['next_action']!r}{meant}")
                reason = (body or {}).get("error", resp.reason) if isinstance(body, dict) else resp.reason
                # as _raised's: rasa-sdk's action server answers with what the action raised
                said = _as_logged(str(reason), call['sender_id'])
                if resp.status == 400:  # rasa-sdk's answer to an ActionExecutionRejection, or to a body it cannot read
                    raise ActionError(f"action {call['next_action']!r} was rejected (400): {said}")
                # rasa-sdk's answer to an action that raised: "was rejected (500): '123'" read as a refusal of deskbot's
                # call, and said neither what was raised nor where, which the action server's own log says
                raise ActionError(f"action {call['next_action']!r} failed on the action server at {self._redacted(url)} "
                                  f"({resp.status}): {said} (its log has the traceback)")
        raise ActionError(f"the action server kept asking for the domain for {call['next_action']!r}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        loops = [*self._held_loops, *([self._action_loop] if self._action_loop is not None else [])]
        for action_loop in loops:
            action_loop.loop.call_soon_threadsafe(action_loop.loop.stop)
        # Not waited for past ACTIONS_LOOP_CLOSE_S: an async action blocking its loop (time.sleep) holds it.
        deadline = time.monotonic() + ACTIONS_LOOP_CLOSE_S
        for action_loop in loops:
            await asyncio.to_thread(action_loop.thread.join, max(0.0, deadline - time.monotonic()))
        if any(action_loop.thread.is_alive() for action_loop in loops):
            log.warning("an async action still holds its event loop at shutdown (a blocking call in it?): "
                        "left to the process's exit")


# What the chunks of one rasa-sdk stream (dispatcher.stream_chunk) put together in one message: its text, tokens one after
# the other, and the buttons and cards that come with it
JOINED_PARTS = frozenset({"text", "buttons", "elements"})


def _run_joining_streams(executor: ActionExecutor, call: dict[str, Any]) -> Coroutine[Any, Any, Any]:
    """``executor.run(call)``, with what the action streams (``dispatcher.stream_chunk``, rasa-sdk 3.21) said as the
    messages it makes: deskbot's channels do not stream, and rasa-sdk's unary run replays each chunk as a message of its
    own, so a reply streamed token by token reached the customer as one paragraph a token. A rasa-sdk without streaming
    runs as it is."""
    if "sink" not in inspect.signature(executor.run).parameters:
        return executor.run(call)
    from rasa_sdk.executor import CollectingDispatcher

    dispatcher = CollectingDispatcher()
    return executor.run(call, sink=_StreamJoiner(dispatcher), dispatcher=dispatcher)  # type: ignore[arg-type]


class _StreamJoiner:
    """rasa-sdk's stream sink (a queue's ``put``, to it) for an in-process action: each stream's chunks, at its
    ``stream_end``, sent with ``dispatcher.utter_message`` as the messages they make (:func:`_joined_chunks`), in
    their place among the action's other messages."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.chunks: list[dict[str, Any]] = []

    async def put(self, item: dict[str, Any]) -> None:
        event = item.get("event")
        if event == "stream_start":
            self.chunks = []
        elif event == "stream_chunk":
            self.chunks.append({key: value for key, value in item.items() if key != "event"})
        elif event == "stream_end":
            for message in _joined_chunks(self.chunks):
                self.dispatcher.utter_message(**message)
            self.chunks = []


def _joined_chunks(chunks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages a stream's ``chunks`` make: consecutive chunks of text, buttons and cards (``JOINED_PARTS``) one
    message, their texts joined as they were streamed, with nothing between them (a token carries its own space, and
    Chinese has none); a chunk with anything else (an image, an attachment, a custom payload) a message of its own,
    where it came."""
    messages: list[dict[str, Any]] = []
    for chunk in chunks:
        last = messages[-1] if messages else None
        if last is None or not _joinable(chunk) or not _joinable(last):
            messages.append(dict(chunk))
            continue
        if "text" in chunk:
            last["text"] = last.get("text", "") + chunk["text"]
        for part in ("buttons", "elements"):
            if part in chunk:
                last[part] = [*last.get(part, []), *chunk[part]]
    return messages


def _joinable(message: Mapping[str, Any]) -> bool:
    """Whether ``message``, a stream's chunk or what its chunks made so far, joins with the next: it holds only
    ``JOINED_PARTS``, of the types rasa-sdk gives them (a text that is not a string is refused as any message's is)."""
    return (message.keys() <= JOINED_PARTS and isinstance(message.get("text", ""), str)
            and all(isinstance(message.get(part, []), list) for part in ("buttons", "elements")))


class _ActionLoop:
    """An event loop for async actions, run in a daemon thread of its own, whose heartbeat tells when a blocking
    call in an action holds it (:meth:`held`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.beat = time.monotonic()  # when the loop last came round
        self.thread = threading.Thread(target=_run_until_stopped, args=(self.loop,), name="deskbot-actions", daemon=True)
        self.thread.start()
        self._beating = asyncio.run_coroutine_threadsafe(self._beat(), self.loop)

    async def _beat(self) -> None:
        while True:
            self.beat = time.monotonic()
            await asyncio.sleep(HELD_LOOP_S / 5)

    def held(self) -> bool:
        return time.monotonic() - self.beat > HELD_LOOP_S

    def retire(self) -> None:
        """Stop the loop once the calls it runs now, and the tasks they left, are done; a call already handed to
        it still runs there, in its time limit."""
        async def when_done() -> None:
            self._beating.cancel()
            while len(asyncio.all_tasks()) > 1:  # this one
                await asyncio.sleep(HELD_LOOP_S)
            asyncio.get_running_loop().stop()

        asyncio.run_coroutine_threadsafe(when_done(), self.loop)


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """Run the async actions' loop until :meth:`ActionRunner.close` stops it, then close it as ``asyncio.run``
    closes its own: the tasks an action left running (one it started and never awaited) cancelled, its async
    generators finished. Stopped and not closed, it was destroyed with them pending ("Task was destroyed but it
    is pending!", an unclosed event loop's ResourceWarning)."""
    try:
        loop.run_forever()
    finally:
        try:
            if left := asyncio.all_tasks(loop):
                for task in left:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _failure(exc: BaseException) -> str:
    """``exc``, a call to the action server's failure, said without its URL (:func:`error_text`)."""
    return f"{type(exc).__name__}: {error_text(exc)}"


async def _read_answer(resp: aiohttp.ClientResponse) -> Any:
    """An action server's JSON answer (``{}`` when empty), in the charset it names or else as JSON's own
    detection finds it; over ``MAX_ANSWER_BYTES`` it is an error."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            raise ActionError(f"the action server's answer is over {MAX_ANSWER_BYTES >> 20} MiB")
    if not data.strip():
        return {}
    try:
        return load_json(data.decode(resp.charset) if resp.charset else bytes(data))
    except LookupError as exc:  # a charset Python does not know
        raise ValueError(str(exc)) from None


def _own_frame(exc: BaseException, actions_dir: Path) -> traceback.FrameSummary | None:
    """The last line of ``actions/`` that ``exc``'s traceback went through, if any: where the shop's code failed."""
    return _innermost_own(traceback.extract_tb(exc.__traceback__), actions_dir)


def _innermost_own(frames: traceback.StackSummary, actions_dir: Path) -> traceback.FrameSummary | None:
    """The innermost of ``frames`` in a file of ``actions/``, if any."""
    own = [frame for frame in frames if Path(frame.filename).resolve().is_relative_to(actions_dir.resolve())]
    return own[-1] if own else None


def _running_at(thread: threading.Thread | None, actions_dir: Path) -> traceback.FrameSummary | None:
    """The line of ``actions_dir`` that ``thread`` runs now, if any."""
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident is not None else None
    return None if frame is None else _innermost_own(traceback.extract_stack(frame), actions_dir)


def _fault(exc: Exception, path: Path, actions_dir: Path) -> tuple[str, int | None, str]:
    """Where the shop's code failed to import (the file at fault may be a helper ``path`` imports), and why:
    a syntax error's own place, else the last line of ``actions/`` the traceback went through."""
    if isinstance(exc, SyntaxError):
        return exc.filename or str(path), exc.lineno, exc.msg
    own = _own_frame(exc, actions_dir)
    return (own.filename, own.lineno, str(exc)) if own else (str(path), None, str(exc))


def _class_line(cls: type) -> int | None:
    """The line ``cls`` is defined at, if its source can be read: where to look for a mistake rasa-sdk finds in it when
    it registers it (a ``run`` without ``domain``, an ``Action`` without ``name()``), which its traceback does not
    show."""
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None


def _as_logged(said: str, conversation_id: str) -> str:
    """What an action said of its failure, as the log may keep it: redacted as the store keeps a message, since it
    often quotes what the customer wrote, and the conversation's id (``tracker.sender_id``, a web visitor's key to
    their conversation, a WeCom employee's userid) replaced by its log tag, as deskbot's own lines name it, as it is
    or as a URL quotes it (an action's failed call to the shop's API names the URL it called): :func:`as_logged`."""
    return as_logged(said, (conversation_id,))


def _raised(exc: Exception, actions_dir: Path | None, conversation_id: str) -> str:
    """Why an in-process action failed: what the shop's code raised, with its type and the line of ``actions/``
    it was raised at ("'order_id'" alone was a KeyError, from somewhere); deskbot's own reasons as they are. Its
    message as the log may keep it (:func:`_as_logged`)."""
    own = _own_frame(exc, actions_dir) if actions_dir is not None else None
    said = _as_logged(str(exc), conversation_id)
    return f"{own.filename}:{own.lineno}: {type(exc).__name__}: {said}" if own else said


def code_stamp(actions_dir: Path) -> tuple[tuple[str, int], ...]:
    """Each Python file under ``actions_dir`` with when it last changed."""
    return tuple(sorted((str(path.relative_to(actions_dir)), path.stat().st_mtime_ns) for path in actions_dir.rglob("*.py")))


def _unknown_mapped(config: BotConfig, known: Collection[str], written: Collection[str] = ()) -> list[tuple[str, str]]:
    """The intents and actions of bot.yml's ``actions.map`` (``config``'s) that are neither ``known`` actions nor forms
    (its ``actions.forms``, and ``written``: those bot.yml names that ``config`` lacks for their own mistakes)."""
    forms = {*config.actions.forms, *written}
    return [(intent, action) for intent, action in config.actions.map.items()
            if action not in known and action not in forms]


def _unknown_mapped_error(root: Path, unknown: list[tuple[str, str]], why: str) -> str:
    """The ``unknown`` actions of bot.yml's map (:func:`_unknown_mapped`) said on the first one's line, with ``why``."""
    named_actions = ", ".join(repr(action) for _, action in unknown)
    return str(config_error(root, ("actions", "map", unknown[0][0]), f"{named_actions}: {why}"))


@dataclass
class _UnfinishedImport:
    """An import of actions/ given up on (:func:`_load_executor`), whose thread may still run: Python cannot stop it."""

    thread: threading.Thread
    where: str  # the file and line of actions/ it was held at
    timeout: float  # how long it was waited for (bot.yml's actions.import_timeout then)


# The import of actions/ last given up on. sys.modules and the locks of the modules being imported are the process's:
# a new import beside it would wait on the lock of the module it holds, or run the shop's top level twice at once.
_unfinished_import: _UnfinishedImport | None = None


def _load_executor(actions_dir: Path, timeout: float) -> ActionExecutor:
    """:func:`_import_executor`, run in a daemon thread and waited for ``timeout`` seconds (bot.yml's
    ``actions.import_timeout``): a module whose top level hangs (a database connection, a ``requests.get`` without a
    timeout) hung ``bot serve`` at start without a word, and a reload held the reload lock for good. Past the limit,
    an :class:`ActionError` names the line of actions/ it is held at; the thread, which cannot be stopped, is left to
    end on its own, importing nothing after what holds it, and while it runs no other import of actions/ is started
    (one would wait behind it): a reload once it has ended, or a restart, loads them."""
    global _unfinished_import
    if _unfinished_import is not None and _unfinished_import.thread.is_alive():
        held = _unfinished_import
        raise ActionError(f"{held.where}: cannot load the custom actions: an earlier import of it, given up on after "
                          f"{held.timeout:g} s, has not finished, and Python cannot stop it: a reload once it has, or a "
                          "restart, loads actions/")
    abandoned = threading.Event()
    outcome: list[ActionExecutor | BaseException] = []

    def target() -> None:
        try:
            outcome.append(_import_executor(actions_dir, abandoned))
        except BaseException as exc:  # raised where the load was asked for
            outcome.append(exc)

    thread = threading.Thread(target=target, name="deskbot-actions-import", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        abandoned.set()
        own = _running_at(thread, actions_dir)
        where = f"{own.filename}:{own.lineno}" if own else str(actions_dir)
        _unfinished_import = _UnfinishedImport(thread, where, timeout)
        raise ActionError(f"{where}: cannot load the custom actions: its import has not finished after "
                          f"{timeout:g} s{f' ({own.line})' if own and own.line else ''}: a connection, or a call "
                          "without a timeout, at a module's top level? Make it in the action's run, with a timeout (or "
                          "raise bot.yml's actions.import_timeout)")
    if isinstance(result := outcome[0], BaseException):
        raise result
    return result


def _import_executor(actions_dir: Path, abandoned: threading.Event) -> ActionExecutor:
    """Import every module in ``actions/`` and register the Action classes defined there; an :class:`ActionError`
    naming each module that does not import, a line each, the others imported all the same: an editor who broke two
    files learns of both in one run. Once ``abandoned`` is set (the load was given up on), no further module is
    imported."""
    from rasa_sdk import Action
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    failed: dict[str, None] = {}  # each failure once: a module that imports a failing one fails at its line too
    defined: dict[str, tuple[str, str]] = {}  # each action's name: where its class is, and the class's name

    def fail(exc: BaseException, path: Path, what: str = "", line: int | None = None) -> None:
        """Note ``exc``, raised by the shop's code of ``path`` (``what``: the class at fault; ``line``: its line, where
        the traceback went through no line of ``actions/``)."""
        where, at, reason = _fault(exc, path, actions_dir)
        at = at or line
        failed.setdefault(f"{where}{f':{at}' if at else ''}: cannot load the custom actions: {what}"
                          f"{type(exc).__name__}: {reason}")

    def load(name: str, path: Path, imported: Callable[[], Any]) -> None:
        try:
            module = imported()
        except (Exception, SystemExit) as exc:  # the shop's code: a syntax error, a missing import, a failing top level
            sys.modules.pop(name, None)
            fail(exc, path)
            return
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Action) and obj.__module__ == name and not inspect.isabstract(obj):
                try:
                    action = obj()
                    action_name = action.name()
                    if action_name not in defined:
                        executor.register_action(action)
                except (Exception, SystemExit) as exc:  # its name() or __init__ raised, or its run takes no domain
                    fail(exc, path, f"class {obj.__name__}: ", _class_line(obj))
                    continue
                place = f"{path}:{_class_line(obj) or ''}".rstrip(":")
                if (first := defined.setdefault(action_name, (place, obj.__name__))) != (place, obj.__name__):
                    # rasa-sdk keeps the one it registers last, without a word: which one ran hung on the files' order
                    failed.setdefault(f"{place}: cannot load the custom actions: class {obj.__name__} is named "
                                      f"{action_name!r}, as class {first[1]} at {first[0]} is: rename one of them")

    # The folder becomes the package ``actions``, as rasa-sdk's server imports it (``--actions actions``), so
    # that its modules import each other as in a Rasa project: ``from actions.helpers import ...`` as well
    # as ``from .helpers import ...``; its ``__init__.py``, if it has one, runs first and may define actions too.
    # A folder loaded before it (another bot in this process) gives way: its modules, already imported, keep working.
    package = "actions"
    for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
        del sys.modules[name]
    init = actions_dir / "__init__.py"
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    if init.is_file():
        spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[str(actions_dir)])
    assert spec is not None and spec.submodule_search_locations is not None
    spec.submodule_search_locations[:] = [str(actions_dir)]
    sys.modules[package] = root = importlib.util.module_from_spec(spec)
    if spec.loader is not None:
        load(package, init, lambda: spec.loader.exec_module(root) or root)  # type: ignore[union-attr]
    if failed:  # its modules cannot be imported without it
        raise ActionError("\n".join(failed))
    # Its sub-packages too (actions/orders/__init__.py and status.py), as rasa-sdk's own server loads them.
    # A package is imported here before the walk looks inside it, so that a failure is reported as any other.
    # A package that did not import is not looked inside (onerror): its failure is told once.
    for info in pkgutil.walk_packages([str(actions_dir)], prefix=f"{package}.", onerror=lambda name: None):
        if abandoned.is_set():  # before the walk imports the next package to look inside it
            break
        path = Path(info.module_finder.path) / (info.name.rpartition(".")[2] + ("/__init__.py" if info.ispkg else ".py"))
        load(info.name, path, lambda: importlib.import_module(info.name))  # noqa: B023 (called at once)
    if failed:
        raise ActionError("\n".join(failed))
    return executor
