"""The engine: what happens to one turn, whichever channel it came from.

``Bot.handle`` normalises the text, asks the model (micro-batched, in a worker thread), applies the
reply policy, runs a custom action if one is due, and writes the exchange to the store before the
reply goes back, so a reply the user saw is never missing from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import json
import logging
import random
import re
import sqlite3
import time
from contextvars import ContextVar
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, TypeVar

from aiohttp import web

from bot.actions import (RASA_ACTIONS, RASA_RESTARTS, RASA_VALIDATION, TRACKER_TURNS, ActionError, ActionResult,
                         ActionRunner, ActionTimeout, action_call, action_domain, ask_names, executed, extraction_call,
                         past_events, validation_call)
from bot.batching import MicroBatcher, QueueFull
from bot.channels.base import (
    BY,
    UNDELIVERED,
    BackgroundTasks,
    DeliveryError,
    MaybeDelivered,
    Reply,
    StoreRefusals,
    Turn,
    failure,
    normalise,
)
from bot.language import (
    SCRIPT,
    SLOT,
    Language,
    Script,
    Text,
    chinese_script,
    in_script,
    kept_script,
    say,
    turn_language,
    typed_in_pinyin,
)
from bot.limits import Limits, handoffs_full
from bot.metrics import Metrics
from bot.nlu import NLU, Analysis
from bot.notify import CONSOLE, HandoffNotifier
from bot.policy import (Decision, decide, handing_off, intent_threshold, misses_in_a_row, misses_reach_handoff,
                        understood)
from bot.project import (HANDOFF_PAYLOAD, MID_CONVERSATION, REQUESTED_SLOT, RESERVED_PAYLOADS, RESUME_PAYLOAD,
                         SESSION_METADATA, VERIFIED_USER, BotConfig, Project, name_agent)
from bot.responses import (MAX_BUTTON_TITLE_CHARS, MAX_REPLY_CHARS, PayloadValue, Rendered, Responses, passed_on,
                           read_payload, slack_image, texts_of, warn_unshown)
from dialogues.holding import (accepts, acknowledges, asked_about, asks_for_a_person, drops_it, lacks_answer,
                               names_only, says_wrong, stops_asking, wordless)
from dialogues.store import (TRYOUT_CHANNEL, TURN_RENEW_S, TURN_STALE_S, Exchange, KeyReused, LeaseWatch, Overtaken,
                             SentBefore, Store, WroteToTheBot, log_tag)
from finetune.classifier import Prediction
from finetune.metrics import OOS
from retrieval.text import intent_phrase, title_key

log = logging.getLogger("deskbot")
MAX_FOLLOWUPS = 3  # a FollowupAction chain longer than this is cut, so two actions cannot loop forever
# How often a turn waiting for another server's turn of its conversation to end looks whether it has. The server
# renews its running turns in the store (Store.renew_turn) every TURN_RENEW_S, however long they run (a long
# actions.timeout, a chain of follow-ups); TURN_STALE_S after the last renewal that server counts as hung and the
# waiting turn runs: a few renewals, so that a message behind a hung server waits well under a proxy's usual 60 s
# request timeout (one killed is seen at once: Store.take_turn).
TURN_POLL_S = 0.05


CLOCK_STEP_S = 1.0  # a step this large of the server's wall clock, as its renewals see it, is said in the log


class ClockSteps:
    """Says in the log that this server's wall clock stepped (NTP correcting a drifted clock, a VM resumed), found
    between two renewals of its turns and claims by the wall clock's moving otherwise than its steady one: the times it
    writes (a turn's, a handoff's, the stamps of its leases) are that far from the other servers' until their clocks
    agree again. Its leases stand: the servers on the store judge each other's by their renewals (:class:`LeaseWatch`),
    not by their clocks."""

    def __init__(self, wall: Callable[[], float] = time.time, steady: Callable[[], float] = time.monotonic) -> None:
        self._wall, self._steady = wall, steady
        self._last = (wall(), steady())

    def check(self) -> None:
        """Log a step of ``CLOCK_STEP_S`` or more since the last check."""
        wall, steady = self._wall(), self._steady()
        step = (wall - self._last[0]) - (steady - self._last[1])
        self._last = (wall, steady)
        if abs(step) >= CLOCK_STEP_S:
            log.warning("this server's clock stepped %+.1f s (NTP correcting it, a VM resumed?): the times it writes "
                        "to the store are that far from the other servers' until their clocks agree; its turns and "
                        "claims in the store stand, judged by their renewals, not by the clock", step)


class TurnLost(Exception):
    """Another server on the store took the turn over, found as an action was about to run (:meth:`_TurnBound.confirm`):
    the rest of the turn is given up, as at its bound."""


@dataclasses.dataclass
class _TurnBound:
    """The bound of a turn (``server.turn_seconds``, :meth:`Bot._within_bound`), brought to now where another server on
    the store took the turn over (:meth:`Bot._renew`): the rest of the turn, an action that cancels an order among it,
    is given up, since that server runs the conversation's turn too; run on both, the customer's action ran twice.
    Lifted once the turn's exchange is being written: given up then, the turn's answer was kept all the same, beside
    the one telling the customer to wait."""

    deadline: asyncio.Timeout | None = None
    lost: bool = False  # another server took the turn over
    # A renewal, now, of each thing the turn holds in the store (its turn, a web message's claim: Bot.renewing)
    renewals: list[Callable[[], Awaitable[bool]]] = dataclasses.field(default_factory=list)

    async def confirm(self) -> None:
        """Renew now what the turn holds in the store, before an action runs (:meth:`Bot._act`), and raise
        :class:`TurnLost` where another server took any of it over: the renewals every ``TURN_RENEW_S`` found a
        takeover up to that late, and an action started meanwhile (a cancellation, a refund) ran on both servers. A
        renewal that fails (logged) leaves the turn going, as between renewals."""
        for renew in self.renewals:
            await renew()
            if self.lost:
                raise TurnLost()

    def bind(self, deadline: asyncio.Timeout) -> None:
        """Bound the turn by ``deadline``, which comes at once where the turn was lost before."""
        self.deadline = deadline
        if self.lost:
            self.lose()

    def lose(self) -> None:
        """Give the rest of the turn up: another server on the store took it over."""
        self.lost = True
        if self.deadline is not None:
            self.deadline.reschedule(asyncio.get_running_loop().time())

    def lift(self) -> None:
        """Let the turn finish, however long: its exchange is being written."""
        if self.deadline is not None:
            self.deadline.reschedule(None)
            self.deadline = None


# What a turn holds in the store beside its conversation's turn (a web message's claim: Bot.handle), held while it runs
# and given the call that gives the rest of the turn up, where another server takes that over.
Holding = Callable[[Callable[[], None]], contextlib.AbstractAsyncContextManager[None]]


def _holding_nothing(lost: Callable[[], None]) -> contextlib.AbstractAsyncContextManager[None]:
    """A turn that holds nothing beside its conversation's turn (:data:`Holding`)."""
    return contextlib.nullcontext()


# The bound of the turn running in this context (Bot.handle), which the renewals of its lease (Bot._across_servers) and
# the writing of its exchange (Bot._log) change.
_TURN_BOUND: ContextVar[_TurnBound | None] = ContextVar("turn_bound", default=None)
# The task, and the conversation, whose turn Bot.in_flight counts already: the turn it then begins counts once.
_IN_FLIGHT: ContextVar[tuple[asyncio.Task[Any] | None, str] | None] = ContextVar("in_flight", default=None)
# The keys of a rasa-sdk dispatcher message; any other key is a value for the response it names.
RASA_MESSAGE_KEYS = {"text", "buttons", "quick_replies", "elements", "custom", "template", "response", "image",
                     "attachment"}
T = TypeVar("T")


class Waiting(NamedTuple):
    """What waits on the customer's answer as an action's tracker names it (:func:`~bot.actions.action_call`): the
    action that asked a question, and the Rasa form active with it (``ActiveLoop("order_form")``)."""

    loop: str | None = None
    form: str | None = None


class Unheard(NamedTuple):
    """A conversation as it was before the customer's message, which an action's ``UserUtteranceReverted`` puts
    back, as Rasa forgets the message."""

    slots: dict[str, Any]
    loop: str | None  # the action waiting for an answer
    form: str | None  # the form active with it

    @property
    def waiting(self) -> Waiting:
        """The action waiting and the form active before the message, as the trackers name them."""
        return Waiting(self.loop, self.form)


def typed_entities(project: Project, text: str) -> list[dict[str, Any]]:
    """The entities of a customer's typed message: what nlu.yml's patterns find in it, or in what a short follow-up
    asks about or a correction puts right ("789" of "那789呢", of "sorry, I meant 789": :func:`asked_about`) as in a
    whole message: a pattern the shop wrote for the bare answer to "what's your order number?" takes it."""
    if (found := project.found_entities(text)) or (span := asked_about(text)) is None:
        return found
    return [{**entity, "start": entity["start"] + span[0], "end": entity["end"] + span[0]}
            for entity in project.found_entities(text[span[0]:span[1]])]


def filling(read: list[dict[str, Any]], slots: dict[str, Any]) -> dict[str, PayloadValue]:
    """The slots the message's entities ``read`` fill, each with its first value. A payload's null fills none that
    holds none, as Rasa's slot extraction sets nothing for it: no answer to the question an action waits on, and
    nothing for a validation to check (rasa-sdk's validate_<slot> methods, written for Rasa, failed on the None);
    for a slot that holds a value, it clears it, as in Rasa."""
    entities: dict[str, PayloadValue] = {}
    for found in read:
        entities.setdefault(found["entity"], found["value"])
    return {name: value for name, value in entities.items() if value is not None or slots.get(name) is not None}


def fillable(project: Project, slots: dict[str, Any], entities: dict[str, PayloadValue], text: str) -> dict[str, Any]:
    """The slots a template may fill in. When the message names a number of three digits or more, as
    order numbers are, that none of nlu.yml's patterns read ("a refund for order A1234"), an entity's value
    from an earlier turn is left out, or the template would confirm a refund of the earlier order; a
    variant without it answers instead. Shorter numbers ("3 days", "30 dollars") are not taken for one."""
    read = set(re.findall(r"\d+", " ".join(texts_of(entities))))
    if set(re.findall(r"\d{3,}", text)) <= read:
        return slots
    return {name: value for name, value in slots.items()
            if name in entities or name not in project.entity_patterns}


def keep_language(config: BotConfig, slots: dict[str, Any], language: Language) -> None:
    """A ``multi`` bot keeps the conversation's language in a slot, which its actions can read too."""
    if config.language == "multi":
        slots[SLOT] = language


def keep_script(config: BotConfig, slots: dict[str, Any], text: str, page: Script | None = None) -> Script | None:
    """The Chinese script the conversation's customer writes (``chinese_script``), kept in a slot by a bot
    that speaks Chinese; until one is seen, the customer's ``page``'s (a zh-TW page's, traditional). A
    button's payload is the shop's word, not the customer's: it keeps the script."""
    script = kept_script(slots) or (page if config.language != "en" else None)
    if config.language != "en" and not text.startswith("/"):
        script = chinese_script(text, script)
    if script:
        slots[SCRIPT] = script
    return script


def start_session(slots: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Rasa's ``session_started_metadata`` slot: the metadata of the message that started the conversation
    (a user id the shop's page passes, a Slack team), which a Rasa bot's actions read with
    ``tracker.get_slot``. Rasa sets it when a session starts: deskbot's conversation is one session, started
    afresh when an action restarts it, so the slot is set from the first message that carries metadata, and
    again after an action cleared the slots."""
    if SESSION_METADATA not in slots and metadata:
        slots[SESSION_METADATA] = copy.deepcopy(metadata)


def vouch(slots: dict[str, Any], turn: Turn) -> None:
    """The slot ``verified_user``: who the shop's server says wrote this message (channels.web.identity_secret),
    for actions to trust as they cannot trust a page's metadata, and for agents to see; set or cleared on every
    message, so that one without a proven user (a visitor after a sign-out) is never taken for the last one's."""
    if turn.verified_user is None:
        slots.pop(VERIFIED_USER, None)
    else:
        slots[VERIFIED_USER] = turn.verified_user


def message_slots(config: BotConfig, slots: dict[str, Any], turn: Turn, text: str) -> tuple[Language, Script | None]:
    """Set what a message tells of its conversation before the model reads it, in ``slots``: the session's metadata,
    the verified user, a multi bot's language and the Chinese script, from the message and its page's (``turn``'s);
    returns the language to answer in and the script. `bot eval` sets a test line's as for a first message, so that
    its templates are filled, and their conditions checked, as `bot serve` fills and checks them."""
    start_session(slots, turn.metadata)
    vouch(slots, turn)
    language = turn_language(config.language, text, slots.get(SLOT), page=turn.language)
    keep_language(config, slots, language)
    return language, keep_script(config, slots, text, turn.script)


def take_validated(slots: dict[str, Any], entities: dict[str, PayloadValue], validated: dict[str, Any]) -> None:
    """The slots the actions' slot validation (Rasa's ``action_validate_slot_mappings``) set after a message, in
    ``slots``, and in the message's ``entities``: a slot it sets to None is rejected, and is no longer the message's
    value, nor an answer to an action's question; a text it extracted or kept is."""
    slots.update(validated)
    for name, value in validated.items():
        if value is None:
            entities.pop(name, None)
        elif isinstance(value, str):
            entities[name] = value


def for_each_value(responses: Responses, decision: Decision, read: list[dict[str, Any]], values: dict[str, Any],
                   channel: str, language: Language) -> Decision:
    """A template ``decision`` said of each value the message gives of an entity its template fills in ("cancel
    orders 123 and 456", 订单123和456我要退款): filled with the first alone, the answer spoke of order 123, and the
    customer was left to ask again about 456, as the demo's order lookup answers each order it is given. Each value's
    answer is the same variant (one draw of the variants), one after the other, their buttons once; an answer the
    same for every value (a variant without it), or that would run past ``MAX_REPLY_CHARS``, is said once, as
    decided."""
    if decision.kind != "template" or decision.intent is None:
        return decision
    given: dict[str, list[str]] = {}
    for found in read:
        if isinstance(found["value"], str) and found["value"] not in given.setdefault(found["entity"], []):
            given[found["entity"]].append(found["value"])
    name = next((name for name, each in given.items() if len(each) > 1 and values.get(name) == each[0]
                 and responses.fills_in(decision.intent, {name})), None)
    if name is None:
        return decision
    draw = random.random()
    answers = [responses.render(decision.intent, channel, {**values, name: value}, language, random.Random(draw))
               for value in given[name]]
    texts = list(dict.fromkeys(answer.text for answer in answers if answer is not None))
    if None in answers or len(texts) < 2 or len(said := "\n\n".join(texts)) > MAX_REPLY_CHARS:
        return decision
    buttons = list({json.dumps(button, sort_keys=True): button for answer in answers if answer
                    for button in answer.buttons}.values())
    return dataclasses.replace(decision, text=said, buttons=buttons, quotes=True)


def template_values(project: Project, slots: dict[str, Any], entities: dict[str, PayloadValue], text: str,
                    mid_conversation: bool) -> dict[str, Any]:
    """The values the reply policy fills a message's template with and checks its conditions on: the slots it may
    fill (:func:`fillable`) and ``mid_conversation``, true once the conversation had an earlier message. `bot eval`
    builds a test line's as for a conversation's first message, so that its figures are `bot serve`'s."""
    return {**fillable(project, slots, entities, text), MID_CONVERSATION: mid_conversation}


class Bot:
    """One bot behind every channel: it answers each customer message (:meth:`handle`), sends agents' replies
    (:meth:`agent_message`), records changes of hands (:meth:`set_handoff`) and tells customers outside a turn
    (:meth:`tell_overdue`). Channels reach the store through it, on its one store thread (:meth:`_store`), or, to
    read without waiting behind the turns being logged, on the reads' thread (:meth:`_read`)."""

    def __init__(self, project: Project, nlu: NLU, store: Store | None, actions: ActionRunner | None = None) -> None:
        self.project = project
        self.config = project.config
        self.nlu = nlu
        self.store = store
        self.actions = actions or ActionRunner.for_project(project)
        inference = self.config.server.inference
        self.batcher: MicroBatcher[str, Analysis] = MicroBatcher(self._analyse, inference.max_batch, inference.max_wait_ms,
                                                                   concurrency=nlu.workers, max_queue=inference.max_queue)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskbot-store")
        # One writer for the log: exchanges that arrive together commit in one transaction, on the store's thread.
        self.writer: MicroBatcher[Exchange, tuple[int, int | None]] | None = (
            MicroBatcher(store.log_exchanges, max_batch=256, executor=self._db) if store is not None else None)
        # And the conversation reads that start each turn, one thread hop per batch rather than per message.
        self.reader: MicroBatcher[str, dict[str, Any] | None] | None = (
            MicroBatcher(store.conversations, max_batch=256, executor=self._db)
            if store is not None else None)
        # The admin API's short reads (the agents' inbox, transcripts), /metrics' waiting customers and
        # the widget's look-up of a reply kept for a message sent again, on a read-only connection and a thread of
        # their own (see ``_read``): on the store's thread an all-time figure held up every customer's turn.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskbot-reads")
        self._read_store: Store | None = None
        # A customer's message's look-ups (whose conversation it is, the reply kept for its message_id) on a thread
        # and read-only connection of their own (see ``_look_up``): behind a long figures read, every customer waited.
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskbot-lookups")
        self._lookup_store: Store | None = None
        # The long reads, the figures (GET /admin/stats, for dashboards, and each console every 30 s), the review queue
        # and the export, on a thread and read-only connection of their own (see ``_read_figures``): all-time figures
        # of a large store take seconds, the queue and the export read every turn of the log, and every agent's console
        # poll of its inbox waited behind them on the reads' thread.
        self._figures = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskbot-figures")
        self._figures_store: Store | None = None
        # The renewals of this server's turns and claims (see ``_renew``), on a thread and write connection of their
        # own: queued behind the store's thread held up (a long purge, a slow disk), they lapsed while it was alive.
        self._renewals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deskbot-renewals")
        self._renewal_store: Store | None = None
        # Whether they work, for readiness (see ``renewals_failing``): since when (time.monotonic()) they have failed,
        # until one succeeds; whether that was said in the log; and when the renewal now running on their thread began.
        self._renewals_failed: float | None = None
        self._renewals_failing_said = False
        self._renewal_began: float | None = None
        # When the other servers' turns and claims this one waits for were last renewed, by its steady clock: which
        # are stale (hung servers'), whatever each server's wall clock says; and the steps of its own wall clock.
        self.leases = LeaseWatch()
        self.clock_steps = ClockSteps()
        self.metrics = Metrics()
        self.refusals = StoreRefusals(store.path if store is not None else None)  # requests the store could not write for, said in the log once a bout
        self.metrics.watch({"inference": self.batcher, **({"store": self.writer} if self.writer else {})},
                           lambda: self.nlu.version)
        self.metrics.actions_unlisted.set_function(lambda: len(self.actions.unlisted))  # the runner serving at scrape
        if store is not None:
            self.metrics.watch_store(store)
            self.metrics.watch_renewals(self.renewals_failing_s)
        self.channels: dict[str, Any] = {}  # name -> Channel, filled by the server
        self.limits: Limits | None = None  # the server's, which caps the handoffs from one address
        self._turns: dict[str, asyncio.Lock] = {}  # conversation id -> the lock its turns take in order
        # conversation id -> turns in flight (in_flight): holding or waiting for that lock, or about to
        self._waiting: dict[str, int] = {}
        self._idle = asyncio.Event()  # set while no turn runs or waits
        self._idle.set()
        # (conversation id, key) -> how the agent's reply sent with that key turns out, while it is being sent
        self._keyed: dict[tuple[str, str], tuple[str, asyncio.Future[int]]] = {}  # its text, and how it went
        self.notifier = HandoffNotifier(self.config.handoff.notify_url, reference=self._reference,
                                        console=self.config.handoff.console_url)
        # The takeover and handback notices, sent after the admin API has answered (see ``_tell_change``); and
        # per conversation the latest of them still on its way, which the next notice and agent reply wait for.
        self._notices = BackgroundTasks()
        # Action runners a reload replaced, each closed once the calls it ran may have ended (``actions.timeout``)
        self._retiring = BackgroundTasks()
        self._retired: list[ActionRunner] = []
        self._telling: dict[str, asyncio.Task[None]] = {}

    @property
    def team(self) -> list[str]:
        """The agents' names (server.agents, as a reload left them), where the bot knows them: a customer of someone
        not among them is nobody's, and no colleague's to override (:func:`~dialogues.store.refuse_colleague`)."""
        return list(self.config.server.agents)

    def _analyse(self, texts: list[str]) -> list[Analysis]:
        return self.nlu.analyse(texts)  # reads self.nlu per batch, so a swap takes effect between batches

    def swap(self, nlu: NLU, project: Project | None = None, actions: ActionRunner | None = None) -> None:
        """Serve ``nlu`` from the next batch on, and ``project``'s intents, responses, history and reply
        settings from the next turn on (a retrain that changed the intents brings templates and buttons
        for them), and ``actions`` (their map checked against ``project`` by the caller) from the next action
        call on; requests in flight finish on the old ones. What the server set up at start from
        bot.yml (``server:``, channels, ``privacy:``) stays until a restart."""
        if project is not None:
            self.project, self.config = project, project.config
            self.notifier.url = project.config.handoff.notify_url
            self.notifier.console = project.config.handoff.console_url or CONSOLE
        if actions is not None and actions is not self.actions:
            self._retired.append(self.actions)
            self._retiring.spawn(self._retire(self.actions))
            self.actions = actions
        self.nlu = nlu

    async def _retire(self, actions: ActionRunner) -> None:
        """Close a replaced action runner once the calls it was running have had their time."""
        await asyncio.sleep(actions.timeout)
        self._retired.remove(actions)
        await actions.close()

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (a :class:`Store` method) on the store's one thread, off the event loop: its SQLite
        connection is not to be used from two threads at once."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(store, *args)`` on the reads' thread, over the store's read-only connection (opened there at
        the first call), in one read transaction: it sees what was committed when it began, and neither
        waits for the turns being read and logged on the store's thread nor holds them up."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, self._reading, fn, *args)

    async def _reference(self, conversation_id: str) -> str | None:
        """The conversation's reference for the agents' webhook (:meth:`Store.reference`); None without a store, or
        when the store cannot write one (a full disk, said in the log): the notice then links to the inbox, where the
        customer waits all the same."""
        if self.store is None:
            return None
        try:
            return await self._store(self.store.reference, conversation_id)
        except sqlite3.Error as exc:
            log.warning("handoff notice for %s: no reference could be kept (%s): it links to the inbox",
                        log_tag(conversation_id), exc)
            return None

    async def _look_up(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(store, *args)`` as :meth:`_read` does, for the short reads a customer's message waits for, on a thread
        and connection of their own: neither behind the turns being logged nor behind the admin's long reads."""
        return await asyncio.get_running_loop().run_in_executor(self._lookups, self._read_on, "_lookup_store", fn, *args)

    async def _read_figures(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(store, *args)`` as :meth:`_read` does, for the long reads (the figures, the review queue, the export), on
        a thread and connection of their own: the agents' consoles' polls do not wait behind them."""
        return await asyncio.get_running_loop().run_in_executor(self._figures, self._read_on, "_figures_store", fn,
                                                                 *args)

    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        return self._read_on("_read_store", fn, *args)

    def _read_on(self, reader: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` over the read-only connection kept in the attribute ``reader``, opened at its first read."""
        if getattr(self, reader) is None:
            setattr(self, reader, self.store.reader())
        store = getattr(self, reader)
        with store.snapshot():
            return fn(store, *args)

    async def handle(self, turn: Turn, holding: Holding | None = None) -> Reply:
        """Answer one turn, counted and timed for /metrics.

        A conversation's turns run one after another (a second message sent while a slow action
        answers the first waits for it), on this server and every other on the store (:meth:`_across_servers`):
        each reads the slots the one before wrote, and none is lost.

        ``holding``: what else the turn holds in the store while it runs, given the call that gives the rest of the
        turn up (a web message's claim, renewed while it runs: another server that claimed it answers the message, and
        an action run here after that ran on both servers).
        """
        started = time.perf_counter()
        bound = _TurnBound()
        running = _TURN_BOUND.set(bound)
        try:
            async with (holding or _holding_nothing)(bound.lose), self._in_turn(turn.conversation_id):
                reply = await self._within_bound(turn)
        except BaseException as exc:
            status = ("cancelled" if isinstance(exc, asyncio.CancelledError)
                      else "refused" if isinstance(exc, web.HTTPTooManyRequests)
                      else "busy" if isinstance(exc, QueueFull) else "error")
            self.metrics.reply(turn.channel, "none", status, time.perf_counter() - started)
            raise
        finally:
            _TURN_BOUND.reset(running)
        self.metrics.reply(turn.channel, reply.source, "ok", time.perf_counter() - started)
        return reply

    @contextlib.asynccontextmanager
    async def _in_turn(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold ``conversation_id``'s lock, the turn counted in flight; the lock is dropped once no turn holds or
        waits for it."""
        with self.in_flight(conversation_id):
            async with self._turns.setdefault(conversation_id, asyncio.Lock()), self._across_servers(conversation_id):
                yield

    @contextlib.contextmanager
    def in_flight(self, conversation_id: str) -> Iterator[None]:
        """Count a turn of ``conversation_id`` in flight while the block runs: SIGTERM waits for it
        (:meth:`finish_turns`). A channel counts a turn from before :meth:`handle` where what comes first may wait (a web
        message's claim, behind another process holding the store locked): uncounted, the stop cut its customer's
        connection without an answer. The turn the block then begins in this task is counted once."""
        if _IN_FLIGHT.get() == (asyncio.current_task(), conversation_id):
            yield
            return
        self._waiting[conversation_id] = self._waiting.get(conversation_id, 0) + 1
        self._idle.clear()
        counted = _IN_FLIGHT.set((asyncio.current_task(), conversation_id))
        try:
            yield
        finally:
            _IN_FLIGHT.reset(counted)
            self._waiting[conversation_id] -= 1
            if not self._waiting[conversation_id]:
                del self._waiting[conversation_id]
                self._turns.pop(conversation_id, None)
                if not self._waiting:
                    self._idle.set()

    @contextlib.asynccontextmanager
    async def _across_servers(self, conversation_id: str) -> AsyncIterator[None]:
        """Run a turn of ``conversation_id`` once no other server on the store runs one (:meth:`Store.take_turn`), and
        let the next run once it is logged: servers behind a load balancer that each get a message of one conversation
        answer them one after another, each on what the turn before it wrote, as one server does. A store that does
        not serve (``bot chat``'s) shares its conversations with nobody."""
        store = self.store
        if store is None or store.server is None:
            yield
            return
        refused = False  # the store could not take the turn (it cannot write): there is none of this server's to end
        try:
            while True:
                try:
                    if await self._store(store.take_turn, conversation_id,
                                         functools.partial(self.leases.stale, stale_s=TURN_STALE_S)):
                        break
                except Exception:
                    refused = True
                    raise
                await asyncio.sleep(TURN_POLL_S)
            bound = _TURN_BOUND.get()
            async with self.renewing(functools.partial(Store.renew_turn, conversation_id=conversation_id),
                                     f"turn of conversation {log_tag(conversation_id)}", bound and bound.lose):
                yield
        finally:  # also where a turn cancelled (its server stopping) while it waited took the turn as it was cancelled:
            # the store's one thread ends it after taking it
            try:
                if not refused:
                    await self._store(store.end_turn, conversation_id)
            except Exception as exc:  # other servers wait for TURN_STALE_S, this one not at all
                log.warning("cannot end this server's turn of conversation %s in the store: %r; the other servers "
                            "on it wait up to %g s to answer its next message", log_tag(conversation_id), exc, TURN_STALE_S)

    @contextlib.asynccontextmanager
    async def renewing(self, renew: Callable[[Store], bool], what: str,
                       lost: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Call ``renew``, a serving store's renewal of ``what`` this server holds in it (:meth:`Store.renew_turn`,
        :meth:`Store.renew_claim`), every ``TURN_RENEW_S`` while the body runs, so that the other servers on the store
        wait for it however long it runs, and take it over only once this server stops renewing: hung, or its event
        loop blocked. Renewed on a thread and connection of their own (:meth:`Store.renewer`), not behind the store's
        thread, which a long write holds up while the server is alive. The renewals stop before what follows the body
        (giving ``what`` up) runs. ``lost`` is called where a renewal finds ``what`` taken by another server; with it,
        the turn running (:meth:`handle`) renews ``what`` before each action too (:meth:`_TurnBound.confirm`)."""
        bound, once = _TURN_BOUND.get(), functools.partial(self._renew_once, renew, what, lost)
        confirmed = lost is not None and bound is not None
        if confirmed:
            bound.renewals.append(once)
        task = asyncio.create_task(self._renew(once))
        try:
            yield
        finally:
            task.cancel()
            if confirmed:
                bound.renewals.remove(once)

    async def serve(self) -> None:
        """Make the store this server's (:meth:`Store.serve`), and open the renewals' connection (:meth:`Store.renewer`)
        now: opened at the first renewal, beside another process's long write, it waited with it, and the turn it was
        to renew went stale. Where it cannot open yet, the first renewal tries again."""
        assert self.store is not None
        await self._store(self.store.serve)
        try:
            self._renewal_store = await asyncio.get_running_loop().run_in_executor(self._renewals, self.store.renewer)
        except Exception as exc:
            log.warning("cannot open the store's connection for renewing this server's turns yet: %r; the first "
                        "renewal tries again", exc)

    def _renewed(self, renew: Callable[[Store], T]) -> T:
        """``renew`` over the renewals' connection, opened as the store starts serving (:meth:`serve`), or at the
        first renewal where it could not open then; on the renewals' thread, whose renewal running now, and since
        when, :meth:`renewals_failing` reads. A renewal that fails closes the connection, and the next (or a
        readiness check's, :meth:`probe_renewals`) opens another: a connection broken alone, the file fine, kept
        every renewal failing, and the server unready, until a restart."""
        self._renewal_began = time.monotonic()
        try:
            if self._renewal_store is None:
                assert self.store is not None  # renewing() is for a serving store's turns and claims
                self._renewal_store = self.store.renewer()
            return renew(self._renewal_store)
        except Exception:
            if (broken := self._renewal_store) is not None:
                self._renewal_store = None
                with contextlib.suppress(Exception):  # closing a broken connection may fail as well
                    broken.close()
            raise
        finally:
            self._renewal_began = None

    async def _on_renewals(self, renew: Callable[[Store], T]) -> T:
        """``renew`` on the renewals' thread and connection (:meth:`_renewed`), kept as their working or failing
        (:meth:`renewals_failing`), each change of which past ``TURN_STALE_S`` is said in the log."""
        try:
            done = await asyncio.get_running_loop().run_in_executor(self._renewals, self._renewed, renew)
        except Exception as exc:
            failed = self._renewals_failed = self._renewals_failed or time.monotonic()
            if time.monotonic() - failed >= TURN_STALE_S and not self._renewals_failing_said:
                self._renewals_failing_said = True
                log.error("this server's renewals of its turns and claims in the conversation store have failed for "
                          "%g s (the latest: %r): the other servers on the store take its conversations over, and "
                          "/healthz answers 503 until a renewal works again", TURN_STALE_S, exc)
            raise
        if self._renewals_failing_said:
            log.info("this server renews its turns and claims in the conversation store again: /healthz answers ok")
        self._renewals_failed, self._renewals_failing_said = None, False
        return done

    def renewals_failing_s(self) -> float:
        """How long this server's renewals of its turns and claims have failed, or the one running now gone on, in
        seconds (0 while they work): for /metrics, whose alert can see them fail before ``TURN_STALE_S``."""
        now = time.monotonic()
        return max((now - since for since in (self._renewal_began, self._renewals_failed) if since is not None),
                   default=0.0)

    def renewals_failing(self) -> str | None:
        """Why this server should get no new customers (None while it may): its renewals of its turns and claims in
        the store (:meth:`renewing`) have failed for ``TURN_STALE_S`` or more, or one has gone on that long (a disk that
        stopped answering). The other servers on the store take such turns and claims over as a hung server's, and the
        customers sent here meanwhile have their answers dropped or given up: a readiness check (``/healthz``) answers
        503, so that a load balancer sends them to the others, until a renewal works again (:meth:`probe_renewals`)."""
        now = time.monotonic()
        if (began := self._renewal_began) is not None and now - began >= TURN_STALE_S:
            return (f"a renewal of this server's turns in the conversation store has gone on for {now - began:.0f} s: "
                    "its disk stopped answering? (`dmesg`)")
        if (failed := self._renewals_failed) is not None and now - failed >= TURN_STALE_S:
            return (f"this server's renewals of its turns in the conversation store have failed for {now - failed:.0f} "
                    "s, and the other servers on it take its conversations over: the log says why")
        return None

    async def probe_renewals(self) -> None:
        """A write on the renewals' connection, as a renewal is (:meth:`_on_renewals`): whether they work again, for a
        readiness check while they fail (:meth:`renewals_failing`), which a server sent no customers renews nothing
        to find."""
        await self._on_renewals(Store.probe)

    async def _renew(self, once: Callable[[], Awaitable[bool]]) -> None:
        """:meth:`renewing`'s loop, one renewal (:meth:`_renew_once`) every ``TURN_RENEW_S``, until cancelled or what
        it renews is no longer this server's."""
        while True:
            await asyncio.sleep(TURN_RENEW_S)
            if not await once():
                return

    async def _renew_once(self, renew: Callable[[Store], bool], what: str, lost: Callable[[], None] | None) -> bool:
        """One renewal of ``what`` (:meth:`renewing`): False once it is no longer this server's (then ``lost`` is
        called). One that fails is logged, and tried again at the next. A step of the server's clock since the one
        before is said (:class:`ClockSteps`)."""
        self.clock_steps.check()
        try:
            kept = await self._on_renewals(renew)
        except Exception as exc:
            log.warning("cannot renew this server's %s in the store: %r; another server on it takes it over "
                        "after %g s without a renewal", what, exc, TURN_STALE_S)
            return True
        if not kept:
            log.warning("this server's %s went %g s without a renewal (the server or its store too slow), and "
                        "another server on the store took it: %s", what, TURN_STALE_S,
                        "the rest of it is given up here" if lost else "the two run beside each other")
            if lost:
                lost()
        return kept

    async def finish_turns(self, timeout: float) -> None:
        """Wait, up to ``timeout`` seconds, until no turn runs or waits (SIGTERM: no new one comes) and the
        takeover and handback notices on their way have gone out; those still going then are given up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # In the log, so that the one on call knows what a stop is waiting for, and which customers it cut off.
        if running := self.turns_in_flight():
            log.info("stopping: finishing %s in flight, for up to %g s (server.shutdown_seconds)", running, timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        if running := self.turns_in_flight():
            named = sorted(self._waiting)
            log.warning("stopping: %s still running after %g s (server.shutdown_seconds) cut off unanswered, in "
                        "conversations %s%s", running, timeout, ", ".join(map(log_tag, named[:10])),
                        f" and {len(named) - 10} more" if len(named) > 10 else "")
        await self._notices.close(max(0.0, deadline - loop.time()))

    def turns_in_flight(self) -> str:
        """The turns running or waiting for their conversation's turn before it, as a count to log ("2 turns"),
        "" when none."""
        count = sum(self._waiting.values())
        return f"{count} turn{'s' if count > 1 else ''}" if count else ""

    async def _within_bound(self, turn: Turn) -> Reply:
        """:meth:`_handle`'s reply to ``turn`` within ``server.turn_seconds``: a turn held up for good (a model call
        that never returns, an action's own loop held) held its conversation on every server on the store, each
        later message waiting behind it, and the customer heard nothing. Past the bound the turn is given up, and
        the customer gets ``fallback.action_slow`` with the "talk to a person" button (the handoff once the misses
        reach ``fallbacks_before_handoff``), logged as a miss, within the bound again; then the conversation is free.
        A turn whose exchange is being written when the bound comes is let finish (:class:`_TurnBound`). A turn
        another server on the store took over is given up at once, wherever it is (an action running, or about to):
        that server answers the conversation, and the message is kept unanswered here (:meth:`_overtaken`)."""
        bound = self.config.server.turn_bound(self.config.actions.timeout)
        turn_bound = _TURN_BOUND.get() or _TurnBound()
        try:
            async with asyncio.timeout(bound) as deadline:
                turn_bound.bind(deadline)
                try:
                    return await self._handle(turn)
                finally:
                    turn_bound.deadline = None
        except (TimeoutError, TurnLost):
            pass
        text = normalise(turn.text)
        conversation, slots, fallbacks, language, script = await self._read_for(turn, text)
        if turn_bound.lost:
            return await asyncio.wait_for(self._overtaken(turn, text, conversation, slots, fallbacks, language, script),
                                          bound)
        decision = self._action_failed(Decision("fallback", None, 0.0), fallbacks, turn.channel, language, slots,
                                       timed_out=True)
        reply = await asyncio.wait_for(self._logged_reply(turn, text, None, decision, conversation, slots, fallbacks,
                                                          language, script, corrects=False), bound)
        # Said once the answer is written: the store may have dropped it, and then nobody told the customer anything.
        log.error("a turn of conversation %s ran past server.turn_seconds (%g s), held up by the model or the store: "
                  "given up, %s", log_tag(turn.conversation_id), bound,
                  "its customer told to try again or ask for a person" if reply.source != "silent" else
                  "and its answer telling the customer to try again dropped: the customer deleted the message, an agent "
                  "took the conversation over, or another server on the store took the turn over and answers it")
        return reply

    async def _overtaken(self, turn: Turn, text: str, conversation: dict[str, Any] | None, slots: dict[str, Any],
                         fallbacks: int, language: Language, script: Script | None) -> Reply:
        """No reply to a turn given up for another server on the store that took it over (:class:`_TurnBound`): the
        message is kept as one the bot was silent on, leaving the count of misses and the waiting action as they are
        (``conversation``, ``slots`` and ``fallbacks``: as :meth:`_log` takes them); that server answers."""
        read = conversation or {}
        decision = Decision("silent", None, 0.0, loop=read.get("active_loop"), form=read.get("active_form"))
        user_turn_id, _, _ = await self._log(turn, text, None, decision, conversation, slots, fallbacks, counted=True)
        return Reply("", source="silent", language=language, script=script, user_turn_id=user_turn_id)

    async def _read_for(self, turn: Turn, text: str) -> tuple[dict[str, Any] | None, dict[str, Any], int, Language,
                                                                Script | None]:
        """The conversation of ``turn`` as the store keeps it (None: new, counted against its address), its slots with
        what the message (``text``) tells of it set (:func:`message_slots`), its count of misses in a row, and the
        language and script to answer in."""
        conversation = await self.reader.submit(turn.conversation_id) if self.reader else None
        if conversation is None:
            self._opening(turn)
        slots: dict[str, Any] = dict(conversation["slots"]) if conversation else {}
        fallbacks = conversation["fallbacks"] if conversation else 0
        language, script = message_slots(self.config, slots, turn, text)
        return conversation, slots, fallbacks, language, script

    async def _handle(self, turn: Turn) -> Reply:
        """The reply to ``turn``, in the order a message takes: the conversation's slots, language and script; a
        resume, or silence while an agent has it (:meth:`_resumed_or_held`); the model's analysis and the entities;
        the decision (a request for a person, the end or an answer of the form waiting, else the reply policy's
        :func:`decide`); the action it runs, if any; then the exchange logged (:meth:`_logged_reply`)."""
        text = normalise(turn.text)
        conversation, slots, fallbacks, language, script = await self._read_for(turn, text)

        handed_off = bool(conversation and conversation["status"] == "handed_off")
        if text == RESUME_PAYLOAD or handed_off:
            return await self._resumed_or_held(turn, text, handed_off, conversation, slots, language, script)

        chosen = self._chosen(text)
        taken = None if chosen else await self._taken_up(turn.conversation_id, text)  # "yes please" to one button
        if turn.channel == "web":  # past server.inference.max_queue, 503 (QueueFull): the web client sends it again
            self.batcher.refuse_when_full()
        analysis = await self._analysis_for(chosen or (taken and self._chosen(taken)) or taken or text)
        read = self._entities_in(taken or text)  # each value, for the actions; the first of each fills its slot
        entities = filling(read, slots)
        unheard = (Unheard(dict(slots), conversation.get("active_loop"), conversation.get("active_form")) if conversation
                   else Unheard(dict(slots), None, None))
        loop = self._waiting_on(conversation)
        ignoring = self._ignores(loop, analysis)
        if ignoring:  # a message of an intent the form ignores fills none of its slots, as in Rasa
            entities = {name: value for name, value in entities.items()
                        if name not in self.config.actions.forms[loop].required_slots}
        slots.update(entities)
        given = set(entities)
        deadline = asyncio.get_running_loop().time() + self.actions.timeout  # the turn's actions share it
        checked = await self._validate_slots(turn, text, analysis, slots, entities, read, language)
        form_waiting = loop in self.config.actions.forms  # a form of bot.yml's asks: an interruption does not end it
        interrupted = False  # the message is no answer to the form's question, nor stops it
        answered = None  # the slot the message answers, which the action that asked for it gets
        validated: ActionResult | None = None  # the answer as the asking action's validation extracted it
        corrects = False  # the message only says the bot's last answer missed ("不对", "that's wrong")
        requested = slots.get(REQUESTED_SLOT)
        requested = requested if isinstance(requested, str) else None  # a name; a log from before the check may differ
        if HANDOFF_PAYLOAD in (text, taken) or asks_for_a_person(text):  # the button, or typed: "talk to a human", "转人工"
            # typed, it is logged with what the classifier read in it (the handoff intent, where the bot has one)
            read_as = None if HANDOFF_PAYLOAD in (text, taken) else Decision("handoff", analysis.prediction.intent,
                                                                     analysis.prediction.confidence)
            decision = self._handing_off(turn.channel, language, "requested", fillable(self.project, slots, entities, text),
                                         read_as)
        elif self._stops(loop, text, analysis):  # "stop", "cancel", "never mind", "算了不退了": the form ends
            decision = Decision("template", None, 1.0, say(self.config.fallback.acknowledged, language))
        elif loop and (filled := self._answer_to(loop, requested, entities, ignoring)) \
                and self._answers(loop, text, filled, entities[filled], analysis):
            decision, answered = self._back_to(loop), filled
        elif loop and requested and not ignoring and (
                validated := await self._extracted(turn, text, analysis, slots, read, Waiting(loop, unheard.form),
                                                   requested)):
            decision, answered = self._back_to(loop), requested
        elif loop and ((acknowledges(text) and not drops_it(text)) or lacks_answer(text)
                       or requested in given - set(entities)):
            # "ok" to the action's question, "I don't know it", or an answer the slots' validation rejected: the action
            # asks again, or says where the answer is ("never mind" ends the wait)
            decision = self._back_to(loop)
        else:
            interrupted = form_waiting
            values = template_values(self.project, slots, entities, text, conversation is not None)
            corrects = says_wrong(text)
            carried = await self._carried(turn.conversation_id, text, read, analysis) if entities else None
            decision = decide(carried or analysis, self.config, self.project.responses, values, turn.channel, fallbacks, language,
                              self.project.intents, acknowledges(text), corrects, wordless(text),
                              not self.project.reads_pinyin and typed_in_pinyin(text))
            decision = for_each_value(self.project.responses, decision, read, values, turn.channel, language)
            if entities and (decision.kind == "fallback" or decision.reason == "fallbacks"):
                decision = await self._asked_again(turn.conversation_id, analysis) \
                    or self._leaning_to_action(analysis) or decision
            if decision.kind == "fallback" and entities:
                decision = self._offered_with(decision, entities, read)
            if loop and not form_waiting and requested not in self.project.entity_patterns \
                    and decision.kind in ("template", "retrieval", "fallback"):
                # Another question answered in passing ("what are your opening hours?" while the order lookup awaits
                # the email on the order): the action's question for what only its validation reads still stands,
                # unasked again, so that the answer sent next goes to it, where it went to the classifier. An entity's
                # value sent next is read as the follow-up of the latest answer ("789" after "cancel my order"), and a
                # request of its own (an action, a person) ends the wait; a form of bot.yml's asks again (_ask_again).
                decision = dataclasses.replace(decision, loop=loop, form=unheard.form)

        if decision.kind == "action":
            decision = await self._run_action(turn, text, analysis, decision, slots, entities, read, language,
                                              fallbacks, unheard,
                                              deadline if checked is not None or validated else None, answered,
                                              validated)
            if script:  # kept through an action's reset, as the language is
                slots[SCRIPT] = script
            vouch(slots, turn)
        if interrupted:
            decision = await self._ask_again(decision, unheard.loop, entities, lambda form, filled: self._run_action(
                turn, text, analysis, self._back_to(form), slots, entities, read, language, fallbacks, unheard, deadline,
                filled))
        if decision.kind == "handoff":
            decision = self._handoff_allowed(turn, decision, language, script)
        decision = self._in_script(_said_first(checked, decision) if checked is not None else decision, language, script)
        return await self._logged_reply(turn, text, analysis, decision, conversation, slots, fallbacks, language, script,
                                        corrects)

    async def _logged_reply(self, turn: Turn, text: str, analysis: Analysis | None, decision: Decision,
                            conversation: dict[str, Any] | None, slots: dict[str, Any], fallbacks: int,
                            language: Language, script: Script | None, corrects: bool) -> Reply:
        """The reply ``decision`` makes to the message, once the exchange is logged (:meth:`_log`, which takes
        ``conversation``, ``slots`` and the ``fallbacks`` before it as they are): where the message only ``corrects``
        the bot's last answer, that answer is voted down, for review; where the store kept no reply, none. No
        ``analysis``: a turn given up before the model read the message (:meth:`_within_bound`)."""
        reply = Reply(decision.text, decision.intent, decision.confidence, decision.kind, decision.buttons,
                      analysis.prediction.ranking if analysis else [], language=language, script=script,
                      custom=decision.custom,
                      parts=[{"text": p.text, "custom": p.custom} for p in decision.parts])
        if decision.kind == "handoff":
            reply.handed_off = True
        fallbacks = misses_in_a_row(fallbacks, decision, acknowledges(text))
        reply.user_turn_id, reply.turn_id, dropped = await self._log(
            turn, text, analysis, decision, conversation, slots, fallbacks, reply.messages(),
            counted=decision.kind == "fallback" or acknowledges(text))
        if corrects and reply.user_turn_id is not None and self.store is not None:  # reviewed as a thumbs-down is
            await self._store(self.store.vote_down_answer_before, turn.conversation_id, reply.user_turn_id, text)
        if reply.turn_id is None and self.store is not None and (reply.text or reply.buttons or reply.custom):
            # The store kept no reply (Store._insert_exchange): the customer deleted the message while the bot worked
            # on it, and nothing answers it; another server on the store took the turn over, and answers; or an agent
            # took the conversation over meanwhile, and the agent answers it.
            return Reply("", source="silent", handed_off=not dropped, language=language, script=script,
                         user_turn_id=reply.user_turn_id)
        return reply

    async def _resumed_or_held(self, turn: Turn, text: str, handed_off: bool, conversation: dict[str, Any] | None,
                               slots: dict[str, Any], language: Language, script: Script | None) -> Reply:
        """The reply to a message the model does not read: "back to the bot" (``RESUME_PAYLOAD``, also when an agent
        has already handed the conversation back), which hands it back and says so; else, while an agent has the
        conversation, none, the message logged for the agent to answer. ``conversation`` and ``slots``: as
        :meth:`_log` takes them."""
        if text == RESUME_PAYLOAD:
            if handed_off:
                await self.set_handoff(turn.conversation_id, False, "user", turn.channel)
            # A resume, not a handoff: the figures count the customer's way back apart from the requests.
            decision = Decision("resume", None, 1.0, say(self.config.handoff.resumed_message, language, script=script))
            reply = Reply(decision.text, source="resume", language=language, script=script)
            reply.user_turn_id, reply.turn_id, dropped = await self._log(turn, text, None, decision, conversation,
                                                                         slots, 0)
            if dropped:  # another server took the turn over, and answers
                return Reply("", source="silent", language=language, script=script, user_turn_id=reply.user_turn_id)
            return reply
        user_turn_id, _, _ = await self._log(turn, text, None, Decision("silent", None, 0.0), conversation, slots, 0)
        return Reply("", source="silent", handed_off=True, language=language, script=script, user_turn_id=user_turn_id)

    def _opening(self, turn: Turn) -> None:
        """Count a web conversation's first message against its address: past ``limits.conversations_per_ip``,
        429 before anything is stored, as each new conversation id a client makes up is new rows in the store."""
        if turn.address is not None and self.limits is not None and self.store is not None:
            self.limits.new_conversation(turn.address)

    def _handoff_allowed(self, turn: Turn, decision: Decision, language: Language, script: Script | None) -> Decision:
        """The handoff, or, past ``limits.handoffs_per_ip`` from the turn's address, a reply that says to try later:
        each new conversation id with "/handoff" put another customer in the agents' inbox and sent another
        ``notify_url`` notice. It counts as a miss, without the button that would ask again."""
        if turn.address is None or self.limits is None or not (wait := self.limits.handoff_wait(turn.address)):
            return decision
        return Decision("fallback", decision.intent, decision.confidence, handoffs_full(language, script, wait))

    def _chosen(self, text: str) -> str | None:
        """The intent a button's payload with values selects (``/track_order`` of ``/track_order{"order_id":
        "123"}``), if it is one the bot knows; None for typed text."""
        chosen, values = read_payload(text)
        return f"/{intent}" if values and (intent := self.nlu.chosen(chosen[1:])) else None

    def _offered_with(self, decision: Decision, entities: dict[str, PayloadValue], read: list[dict[str, Any]]) -> Decision:
        """The fallback ``decision`` with each button to an intent that uses a value the message gave (its action, or a
        template that fills it in) carrying that value: "ord 789" or "123" alone, which the classifier was unsure of,
        offered "Track order", and its click answered with "what's your order number?", the number just typed lost.
        Clicked now, ``/track_order{"order_id": "789"}`` looks order 789 up. Each value of an entity the message gave
        several of (``read``: "refund 123 and 456") goes as a list, ``{"order_id": ["123", "456"]}``: the first alone
        was answered for, and the customer asked again about the other."""
        values = {name: list(dict.fromkeys(found["value"] for found in read
                                           if found["entity"] == name and isinstance(found["value"], str)))
                  for name in entities}
        given = {name: each[0] if len(each) == 1 else each for name, each in values.items() if each}

        def carrying(button: dict[str, str]) -> dict[str, str]:
            intent = button["payload"][1:]
            uses = {name: value for name, value in given.items()
                    if intent in self.config.actions.map or self.project.responses.fills_in(intent, {name})}
            if button["payload"] in RESERVED_PAYLOADS or not uses:
                return button
            return {**button, "payload": button["payload"] + json.dumps(uses, ensure_ascii=False)}

        return dataclasses.replace(decision, buttons=[carrying(button) for button in decision.buttons])

    def _entities_in(self, text: str) -> list[dict[str, Any]]:
        """The entities of a customer's message as an action's tracker lists them: a button payload's values
        (:meth:`Project.payload_entities`: those the entity's own patterns take, as from typed text, since a
        customer can type a payload, and one with "[verify here](https://…)" for an order number was filled
        into a template, link and all), else those of typed text (:func:`typed_entities`)."""
        if self._chosen(text):
            return self.project.payload_entities(text)
        return typed_entities(self.project, text)

    async def _extracted(self, turn: Turn, text: str, analysis: Analysis, slots: dict[str, Any],
                         read: list[dict[str, Any]], waiting: Waiting, requested: str) -> ActionResult | None:
        """The answer to the question ``loop`` waits on, as its validation action (``validate_<loop>``) reads it in a
        message that gives no entity's value for it: a typed email its ``FormValidationAction``'s ``extract_<slot>``
        takes, as Rasa's form runs ``validate_<form>`` on every message while it is active. Such an answer got the
        fallback, and ended the wait. None where there is no validation action, or it sets nothing for the slot (no
        answer), or fails; a value it rejects (None) is an answer the action asks again for, as in Rasa. ``waiting``: the
        action waiting (``loop``, which there is) and the form active with it."""
        loop = waiting.loop
        validator = await self.actions.validator(loop)
        if validator is None:
            return None
        call = self._message_call(validator, turn, text, analysis, slots, read,
                                  await self._past_events(turn.conversation_id), waiting=waiting)
        try:
            result = await self._act(validation_call(call, loop, requested, {}))
        except ActionError as exc:
            log.warning("%s; the message is taken as no answer", exc)
            return None
        form = self.config.actions.forms.get(loop)
        answers = {requested, *(form.required_slots if form else ())}
        return result if answers & set(result.slots) else None

    def _answer_to(self, loop: str, requested: str | None, entities: dict[str, PayloadValue], ignoring: bool) -> str | None:
        """The slot the message's entities answer for the action waiting (``loop``): the one it asked for, else, for a
        form of bot.yml's, another of its required slots (the email, while it asks which order), as Rasa's form fills
        any of its slots a message gives and asks for the one still missing; answered as an interruption, the message
        had the form say it did not understand it. None where they answer neither, or the form ignores the message."""
        if requested in entities:
            return requested
        if loop not in self.config.actions.forms or ignoring:
            return None
        return self._form_slot_given(loop, entities)

    def _form_slot_given(self, form: str, entities: dict[str, PayloadValue]) -> str | None:
        """The first of ``form``'s required slots that the message's ``entities`` fill, None if none does."""
        return next((slot for slot in self.config.actions.forms[form].required_slots if slot in entities), None)

    async def _ask_again(self, decision: Decision, form: str | None, entities: dict[str, PayloadValue],
                         form_turn: Callable[[str, str | None], Awaitable[Decision]]) -> Decision:
        """``decision``, the answer to a message that interrupted ``form`` (another intent's question, or one the bot
        did not understand), followed by the form asking its question again, as Rasa's form carries on once an
        interruption is answered: the message had ended the form without a word. ``form_turn(form, filled)`` runs the
        form's turn; ``filled``, a slot of the form's that the message gave nonetheless ("cancel order 0456"), is
        validated first (``validate_<form>``), as Rasa's form validates each slot a message fills.

        ``decision`` stands alone after an answer that ends the wait its own way (a handoff, an action's own question,
        a restart), and where the form's turn fails, which ends the form."""
        if decision.kind == "handoff" or decision.loop or decision.restarted:
            return decision
        assert form is not None
        asked = await form_turn(form, self._form_slot_given(form, entities))
        said = Rendered(decision.text, decision.buttons, custom=decision.custom)
        if asked.kind == "handoff":  # its submit action handed the conversation off
            return _said_first(said, asked)
        if asked.kind != "action":
            return decision
        then = asked.parts or [Rendered(asked.text, asked.buttons, custom=asked.custom)]
        return dataclasses.replace(decision, text="\n\n".join(t for t in (decision.text, asked.text) if t),
                                   buttons=decision.buttons + asked.buttons, custom=decision.custom + asked.custom,
                                   quotes=True, loop=asked.loop, form=asked.form,
                                   parts=in_order([*(decision.parts or [said]), *then]))

    def _ignores(self, loop: str | None, analysis: Analysis) -> bool:
        """Whether the form waiting for an answer (``loop``) ignores the message: the classifier is sure of its intent,
        one of the form's ``ignored_intents``, as Rasa's form takes no slot from such a message."""
        form = self.config.actions.forms.get(loop or "")
        return form is not None and self._sure_of(form.ignored_intents, analysis)

    def _stops(self, loop: str | None, text: str, analysis: Analysis) -> bool:
        """Whether the message ends the form waiting for an answer (``loop``): stop words alone (:func:`stops_asking`),
        or a message the classifier is sure is one of the form's ``stop_intents`` ("I don't want a refund any more"),
        where a Rasa bot's rule deactivates the form; any other message is answered and the form asks again."""
        form = self.config.actions.forms.get(loop or "")
        return form is not None and (stops_asking(text) or self._sure_of(form.stop_intents, analysis))

    def _sure_of(self, intents: list[str], analysis: Analysis) -> bool:
        """Whether the classifier is sure the message is one of ``intents``: a form's ignored or stop intents act on
        such a message only, so that a message it is unsure of (an answer it cannot read) is not lost."""
        return analysis.prediction.intent in intents and understood(analysis, self.config)

    def _waiting_on(self, conversation: dict[str, Any] | None) -> str | None:
        """The action or form waiting for the answer to its question, if any: none for a form that bot.yml's
        ``actions.forms`` no longer names (a reload took it out), which, run as an action of its name, failed the
        customer's answer."""
        loop = conversation.get("active_loop") if conversation else None
        if conversation and loop is not None and loop == conversation["active_form"] \
                and loop not in self.config.actions.forms:
            log.warning("conversation %s waited on the form %r, which bot.yml's actions.forms no longer names: its "
                        "message is handled as any other", log_tag(conversation["id"]), loop)
            return None
        return loop

    def _back_to(self, loop: str) -> Decision:
        """The action waiting for the answer to its question, run again as the intent that ran it: given its
        answer, or asked again where the message only acknowledges the question ("ok", "好的[抱拳]"), which would
        otherwise end the wait with the customer left not knowing that the bot still needs the answer."""
        intent = next((i for i, a in self.config.actions.map.items() if a == loop), None)
        return Decision("action", intent, 1.0, action=loop)

    async def _asked_again(self, conversation_id: str, analysis: Analysis) -> Decision | None:
        """The custom action that answered the customer's previous message, run again for a message the classifier
        is unsure of that gives a new value ("456", "and the other one? order 456" after order 123 was looked up), as
        a person would look up the other order: it got "Sorry, I'm not sure I understood". None if no action
        answered the previous message, or if the message leans at all to a person ("a human about order 555"),
        which the fallback's "talk to a person" button serves, as while an action waits (:meth:`_answers`)."""
        if self.store is None or analysis.prediction.intent == self.config.handoff.intent:
            return None
        asked = await self._previous_message(conversation_id)
        if asked is None or asked["source"] != "action" or asked["intent"] not in self.config.actions.map:
            return None
        return self._back_to(self.config.actions.map[asked["intent"]])

    def _leaning_to_action(self, analysis: Analysis) -> Decision | None:
        """The custom action of the intent the classifier leans to, for a message it is unsure of that gives an
        entity's value: "hi, wher is my oder 52017" (track_order at 0.31, under the demo's 0.5) got the fallback,
        though the order number read in it bears the intent out, and the action checks the value (the demo's lookup
        says an order it does not have is not found). Only an action's intent, at half the intent threshold or more:
        a template would answer as though sure, and a lower lean is noise; a person's request is no action's."""
        prediction = analysis.prediction
        action = self.config.actions.map.get(prediction.intent)
        if action is None or prediction.confidence < intent_threshold(analysis, self.config) / 2:
            return None
        return Decision("action", prediction.intent, prediction.confidence, action=action)

    async def _carried(self, conversation_id: str, text: str, read: list[dict[str, Any]],
                       analysis: Analysis) -> Analysis | None:
        """The intent of the customer's previous message, for a short follow-up that only names another value of an
        entity ("那789呢", "咁789呢", "what about order 456?" after "where is order 123?"), corrects the value it gave
        ("sorry, I meant 456", "不是123，是456"), or is only a value (:meth:`_only_gives`: "789", "order 123" after "I
        want a refund" or "cancel my order"): it asks the same again, of that value, whatever the classifier makes of a
        number and a particle, or of "order 123" (its order's status, where the customer was asking for a refund). A previous message answered from agents'
        past answers counts by the intent they were filed under, which its template or action answers: the past
        answer was another customer's case, and said again it would claim that case for the new value. None for any
        other message, or when the previous message was not answered by its intent (a fallback, a past answer of no
        intent), or was small talk, off topic or a request for a person, or when its intent's answer does not use the
        value: only an action, or a template that fills the value in, answers for 789; the shop's opening hours said
        again would not."""
        span = asked_about(text)
        named = {e["entity"] for e in read if self._only_gives(e, text)
                 or (span and self.project.is_answer(e["entity"], text[span[0]:span[1]]))}
        if self.store is None or not named:
            return None
        asked = await self._previous_message(conversation_id)
        intent = asked["intent"] if asked and asked["source"] in ("action", "template", "retrieval") else None
        if intent is None or intent in {OOS, self.config.handoff.intent, *self.config.fallback.exclude}:
            return None
        if intent not in self.config.actions.map and not self.project.responses.fills_in(intent, named):
            return None
        return Analysis(Prediction(intent, 1.0, [(intent, 1.0)]), [], analysis.intent_threshold, analysis.model_version)

    def _only_gives(self, entity: dict[str, Any], text: str) -> bool:
        """Whether typed ``text`` is only the value of ``entity``, one of the entities read in it: one of its patterns
        takes the message whole, and the rest of it only names the thing (:func:`names_only`: "order 123", "订单号是
        123", "#789"). "456 去咗边", which a pattern takes whole as the answer to "what's your order number?", asks more."""
        return "start" in entity and self.project.is_answer(entity["entity"], text) \
            and names_only(text[:entity["start"]] + text[entity["end"]:], self.project.naming_words(entity["entity"]))

    async def _taken_up(self, conversation_id: str, text: str) -> str | None:
        """The payload of the one button the bot's latest reply offered, for a message that only says yes to it
        (:func:`accepts`: "yes please", "ok do it", "好的，麻烦了"): that button, as if clicked. The demo's "or choose
        *Have an agent cancel it*" answered with "yes please" got "All right. If there's anything else, just ask.",
        and no agent came. None for any other message, or where the reply offered no button or several, or one to
        an intent the bot no longer has. A payload with values (``/track_order{"order_id": "123"}``: the demo's "Order
        123 again, or another one?") is taken with them, as clicked.

        A message that is a button's title typed out ("查询退款"; in the other Chinese script, "查詢退款", another case or
        punctuation: :func:`~retrieval.text.title_key`) picks that button of the latest reply's, as on WeCom: read by the
        classifier, it was answered as whatever it leant to. Only a message that is some button's title of the bot's
        (:attr:`~bot.project.Project.button_titles`) looks the buttons up."""
        key = title_key(text) if len(text) <= MAX_BUTTON_TITLE_CHARS else ""
        titled = bool(key) and key in self.project.button_titles
        if self.store is None or not (titled or accepts(text)):
            return None
        latest = await self._store(self.store.recent_turns, conversation_id, 1)
        buttons = latest[0]["buttons"] if latest and latest[0]["role"] == "bot" else []
        named = [button["payload"] for button in buttons if titled and title_key(button["title"]) == key]
        if len(named) == 1:
            return named[0]
        payload = buttons[0]["payload"] if len(buttons) == 1 and accepts(text) else ""
        chosen = read_payload(payload)[0]
        return payload if (payload == HANDOFF_PAYLOAD
                           or (chosen.startswith("/") and self.nlu.chosen(chosen[1:]))) else None

    async def _previous_message(self, conversation_id: str) -> dict[str, Any] | None:
        """The customer's message before this one, with what the bot made of it (its ``intent``, and its ``source``:
        how it was answered), if it is one of the conversation's last two turns (it and its reply); None otherwise."""
        assert self.store is not None
        turns = await self._store(self.store.recent_turns, conversation_id, 2)
        return next((t for t in turns if t["role"] == "user"), None)

    def _answers(self, loop: str, text: str, entity: str, value: PayloadValue, analysis: Analysis) -> bool:
        """Whether a message carrying the value an action asked for ("what's your order number?") goes
        back to that action: a bare answer ("789") does, whatever the classifier makes of a number, and
        so does a message one of the entity's patterns takes whole (the shop wrote "789, thanks" as an
        answer; the classifier hears thanks), or takes in what a follow-up or a correction names ("sorry, I
        meant 789": :func:`asked_about`; the classifier hears an apology); a sentence does unless the
        classifier is sure it asks for something else ("cancel order 456"), or leans at all to a person ("get
        me a person about order 555"): unsure, that lean gets the fallback's "talk to a person" button, as
        outside the loop."""
        span = asked_about(text)
        if not re.search(r"\w", text.replace(str(value), "", 1)) or self.project.is_answer(entity, text) or (
                span is not None and self.project.is_answer(entity, text[span[0]:span[1]])):
            return True
        intent = analysis.prediction.intent
        if intent == self.config.handoff.intent:
            return False
        return not understood(analysis, self.config) or self.config.actions.map.get(intent) == loop

    def _in_script(self, decision: Decision, language: Language, script: Script | None) -> Decision:
        """The reply in the Chinese script its customer writes (``in_script``), buttons' titles included."""
        if language != "zh" or script is None:
            return decision
        return dataclasses.replace(decision, text=in_script(decision.text, script),
                                   buttons=[{**b, "title": in_script(b["title"], script)} for b in decision.buttons],
                                   parts=[dataclasses.replace(p, text=in_script(p.text, script)) for p in decision.parts])

    async def _analysis_for(self, text: str) -> Analysis:
        """A button payload such as ``/track_order`` selects that intent outright, as in Rasa, by its current name
        (:meth:`NLU.chosen`) where `bot relabel` renamed it since the button was sent."""
        if text.startswith("/") and (intent := self.nlu.chosen(text[1:])):
            analysis = await self.batcher.submit(intent_phrase(intent))
            return Analysis(Prediction(intent, 1.0, [(intent, 1.0)]), [h for h in analysis.hits if h.intent == intent],
                            analysis.intent_threshold, analysis.model_version)
        return await self.batcher.submit(text)

    async def _run_action(self, turn: Turn, text: str, analysis: Analysis, decision: Decision,
                          slots: dict[str, Any], entities: dict[str, PayloadValue], read: list[dict[str, Any]],
                          language: Language, fallbacks: int, unheard: Unheard,
                          shared: float | None = None, answered: str | None = None,
                          validated: ActionResult | None = None) -> Decision:
        """Run the action, then the ``FollowupAction`` it asks for (another action, or ``utter_<intent>``
        for that intent's template), at most ``MAX_FOLLOWUPS`` deep; their messages show together.
        ``entities``: the message's, which filled the slots; ``read``: every value it gave them, which the
        tracker's latest message lists.
        An action that sets ``requested_slot`` waits for the customer's answer (``Decision.loop``).
        A failed action is a miss like any other fallback, and hands off once misses reach
        ``fallbacks_before_handoff``; so is one whose messages together run past ``MAX_REPLY_CHARS``
        (runaway output), with its slots undone.
        ``answered``: the slot the message answers, when the action asked for it; its validation action
        (``validate_<action>``, a rasa-sdk ``FormValidationAction``) runs first, as Rasa's form runs
        ``validate_<form>``: the slots it sets (None: the value is rejected) are what the action sees, and what it
        says comes first; ``validated``: its result, where it has run already (it extracted the answer).
        ``unheard``: the conversation as it was before the message. A form an action activates
        (``ActiveLoop("order_form")``) stays active while an action waits, as the tracker's active loop
        (``Decision.form``). ``shared``: the time by which the turn's actions must be done, where the message's slot
        validation took some of ``actions.timeout`` already."""
        assert decision.action is not None
        name, texts, buttons, loop, restarted, reverted = decision.action, [], [], None, False, False
        # the Rasa form active, which the trackers name: ended by a message that is no answer, as the wait is
        form = unheard.form if decision.action == unheard.loop else None
        forms = self.config.actions.forms
        waiting = unheard.waiting
        parts: list[Rendered] = []  # each message as it was sent, for a channel to send them in that order
        afresh = False  # a Restarted or a restart follow-up: later trackers start after it
        custom: list[Any] = []  # the json_message payloads the customer's channel passes on (passed_on)
        earlier: list[dict[str, Any]] = []  # the events of this turn's actions so far, which a follow-up's tracker holds
        before = dict(slots)
        past = await self._past_events(turn.conversation_id)
        clock = asyncio.get_running_loop()
        deadline = shared or clock.time() + self.actions.timeout

        def call_for(action: str) -> dict[str, Any]:
            return self._message_call(action, turn, text, analysis, slots, read, past, earlier, waiting)

        def add(shown: Rendered) -> None:
            parts.append(shown)
            texts.append(shown.text)
            buttons.extend(shown.buttons)
            custom.extend(shown.custom)

        def show(result: ActionResult) -> None:
            for message in result.messages:
                add(self._action_message(message, turn.channel, slots, language))

        validator = await self.actions.validator(name) if answered and validated is None else None
        if validator and answered:
            try:
                validated = await self._act(validation_call(call_for(validator), name, answered, entities),
                                                   deadline - clock.time() if shared else None)
            except ActionError as exc:
                log.warning("%s", exc)
                return self._action_failed(decision, fallbacks, turn.channel, language, slots,
                                           isinstance(exc, ActionTimeout))
        if validated is not None:
            slots.update(validated.slots)
            show(validated)
        asked_by = name  # the action whose FollowupAction runs the one running
        for run in range(MAX_FOLLOWUPS + 1):
            call = call_for(name)
            try:
                if name in forms:
                    checked = None if run else validated
                    # the form starts, with what fills its slots already
                    if checked is None and name not in (waiting.loop, waiting.form):
                        checked = await self._validate_prefilled(name, slots, call_for, deadline - clock.time())
                        if checked is not None:
                            slots.update(checked.slots)
                            show(checked)
                    result = await self._form_turn(name, slots, checked)
                else:
                    result = await self._act(call, deadline - clock.time() if run or validator or shared else None)
            except ActionError as exc:
                if run:  # a follow-up failed: what the actions before it did and said stands
                    # named with the action that asked for it: a misspelt FollowupAction is mended there
                    log.warning("%s (a FollowupAction of %s asked for it)", exc, asked_by)
                    break
                log.warning("%s", exc)
                return self._action_failed(decision, fallbacks, turn.channel, language, slots,
                                           isinstance(exc, ActionTimeout))
            if result.rewound:  # before a reset the action returned after it
                reverted = True
                slots.clear()
                slots.update(unheard.slots)
                loop = unheard.loop if unheard.slots.get(REQUESTED_SLOT) else None
                form = unheard.form
            afresh = afresh or result.started_afresh
            form = None if result.started_afresh else result.form or form
            if result.reset:
                restarted = True
                slots.clear()
                keep_language(self.config, slots, language)
            slots.update(result.slots)
            if REQUESTED_SLOT in result.slots:  # a form of bot.yml's asks, whichever action set it
                loop = (form if form in forms else name) if result.slots[REQUESTED_SLOT] else None
            if result.loop_ended:
                loop = None
                waiting = Waiting()  # a follow-up (the form's submit action) runs with no form active, as in Rasa
            elif name in forms and loop == name:
                waiting = Waiting(name, name)  # its action_ask_<slot>, run next, has it as the active loop, as in Rasa
            show(result)
            self._name_unknown_intents(name, [b for m in result.messages for b in m.get("buttons") or []])
            if result.paused:
                said = "\n\n".join(t for t in texts if t)
                if len(said) > MAX_REPLY_CHARS:
                    break  # runaway output: refused below, as for any action
                if not said:
                    handoff = self._handing_off(turn.channel, language, f"action:{name}", slots, decision)
                    return dataclasses.replace(handoff, custom=custom + handoff.custom, reverted=reverted,
                                               restarted=afresh)
                return Decision("handoff", decision.intent, decision.confidence, said, buttons, reason=f"action:{name}",
                                quotes=True, custom=custom, reverted=reverted, restarted=afresh, parts=in_order(parts))
            follow = result.followup
            if follow is None and result.form in forms and REQUESTED_SLOT not in result.slots:
                follow = result.form  # activated, a form asks for its first slot, as Rasa runs the active loop next
            if follow and follow.startswith("utter_"):
                add(self._utter(follow, turn.channel, slots, language))
            if follow in RASA_RESTARTS:  # the conversation starts afresh, as in Rasa
                restarted = afresh = True
                slots.clear()
                keep_language(self.config, slots, language)
                loop = None
            elif follow == "action_deactivate_loop":
                loop = None
            elif follow in RASA_ACTIONS and follow != "action_listen":
                log.warning("%s asked for %s, which deskbot does not run; its turn ends there", name, follow)
            if not follow or follow.startswith("utter_") or follow in RASA_ACTIONS:
                break
            earlier += executed(name, result)
            asked_by, name = name, follow
        else:
            log.warning("%s asked for %s after %d follow-ups, which is not run: a loop of FollowupActions?",
                        decision.action, name, MAX_FOLLOWUPS)
        reply = "\n\n".join(t for t in texts if t)
        if len(reply) > MAX_REPLY_CHARS:
            log.warning("%s and its follow-ups said %d characters, over the %d a reply may have", decision.action,
                        len(reply), MAX_REPLY_CHARS)
            slots.clear()
            slots.update(before)
            return self._action_failed(decision, fallbacks, turn.channel, language, slots)
        if not reply and not buttons and not custom:  # nothing the customer's channel shows: they would wait for nothing
            # Filled as any template (an earlier turn's order number left out), with what the action itself set
            changed = {k: v for k, v in slots.items() if before.get(k) != v}
            shown = self.project.responses.render(decision.intent or "", turn.channel,
                                                  {**fillable(self.project, slots, entities, text), **changed}, language)
            if shown is not None:
                log.warning("%s showed the customer nothing; its intent's template answers instead", decision.action)
                reply, buttons, custom = shown.text, shown.buttons, shown.custom
            elif not restarted:  # an action that starts the conversation afresh may well say nothing
                log.warning("%s showed the customer nothing; taken as a failed action", decision.action)
                # what it did stands, a message it took back included: later trackers leave that out, as its slots
                return dataclasses.replace(self._action_failed(decision, fallbacks, turn.channel, language, slots),
                                           reverted=reverted)
        return Decision("action", decision.intent, decision.confidence, reply, buttons, decision.action, loop=loop,
                        form=form if loop else None, quotes=True, custom=custom, reverted=reverted, restarted=afresh, parts=in_order(parts))

    async def _asker(self, form: str, slot: str) -> str:
        """What asks for ``slot`` of ``form``: the first of Rasa's ``action_ask_<form>_<slot>``, ``utter_ask_<form>_<slot>``,
        ``action_ask_<slot>`` and ``utter_ask_<slot>`` that the actions or responses.yml have, as Rasa's form looks
        for it (the custom action lets a question use what only code knows); ``utter_ask_<slot>`` without one."""
        known = await self.actions.known()
        return next((name for name in ask_names(form, slot)
                     if name in (known if name.startswith("action_") else self.project.responses.named)),
                    f"utter_ask_{slot}")

    async def _validate_prefilled(self, form: str, slots: dict[str, Any], call_for: Callable[[str], dict[str, Any]],
                                  left: float) -> ActionResult | None:
        """The validation (``validate_<form>``) of the required slots of ``form`` filled as it starts, by the message
        that starts it or before, as Rasa's form validates them when it activates: a value it rejects is asked for, and
        was taken unchecked. None where none is filled or the form has no validation action. ``call_for``: the call
        of an action of this turn, by its name."""
        filled = {slot: slots[slot] for slot in self.config.actions.forms[form].required_slots
                  if slots.get(slot) is not None}
        validator = await self.actions.validator(form) if filled else None
        if validator is None:
            return None
        return await self._act(validation_call(call_for(validator), form, next(iter(filled)), filled), left)

    async def _form_turn(self, form: str, slots: dict[str, Any], validated: ActionResult | None) -> ActionResult:
        """What Rasa's form ``form`` (bot.yml's ``actions.forms``) does on its turn: ask for the slot its validation
        named (a ``requested_slot`` its ``FormValidationAction``'s own ``required_slots`` chose), else for the first of
        its required slots that is empty, with what asks for it (:meth:`_asker`); once all are filled, deactivate and
        run its ``submit`` action next, as a Rasa rule runs one after the form."""
        settings = self.config.actions.forms[form]
        if validated is not None and REQUESTED_SLOT in validated.slots:
            asked = validated.slots[REQUESTED_SLOT]
        else:
            asked = next((slot for slot in settings.required_slots if slots.get(slot) is None), None)
        if asked:
            asker = await self._asker(form, asked)
            by_action = asker.startswith("action_")
            result = ActionResult.from_response({"events": [{"event": "active_loop", "name": form},
                                                            {"event": "slot", "name": REQUESTED_SLOT, "value": asked}],
                                                 "responses": [] if by_action else [{"response": asker}]}, form,
                                                self.config.actions.forms)
            result.followup = asker if by_action else None  # run next, as Rasa's form runs it once requested_slot is set
            return result
        submit = [{"event": "followup", "name": settings.submit}] if settings.submit else []
        return ActionResult.from_response({"events": [{"event": "slot", "name": REQUESTED_SLOT, "value": None},
                                                      {"event": "active_loop", "name": None}, *submit]}, form)

    async def _validate_slots(self, turn: Turn, text: str, analysis: Analysis, slots: dict[str, Any],
                              entities: dict[str, PayloadValue], read: list[dict[str, Any]], language: Language) -> Rendered | None:
        """Run Rasa's ``action_validate_slot_mappings`` (a rasa-sdk ``ValidationAction``) where the actions define it,
        after each message, as Rasa runs it: its ``extract_<slot>`` methods fill slots from the message, and its
        ``validate_<slot>`` methods check the slots the message filled (``entities``, updated in place with ``slots``:
        a slot it sets to None is rejected, and is no longer the message's value, nor an answer to an action's
        question). Returns what it said, which comes before the reply (None where the actions have no such validation).
        One that fails is logged, and the message's slots stand unchecked, as in Rasa."""
        if not await self.actions.validates_slots():
            return None
        call = self._message_call(RASA_VALIDATION, turn, text, analysis, slots, read,
                                  await self._past_events(turn.conversation_id))
        try:
            result = await self._act(extraction_call(call, entities))
        except ActionError as exc:
            log.warning("%s; the message's slots stand unchecked", exc)
            return Rendered("", [])
        take_validated(slots, entities, result.slots)
        said = [self._action_message(message, turn.channel, slots, language) for message in result.messages]
        return Rendered("\n\n".join(s.text for s in said if s.text), [b for s in said for b in s.buttons],
                        quotes=True, custom=[c for s in said for c in s.custom])

    def _message_call(self, action: str, turn: Turn, text: str, analysis: Analysis, slots: dict[str, Any],
                      read: list[dict[str, Any]], past: list[dict[str, Any]], earlier: Sequence[dict[str, Any]] = (),
                      waiting: Waiting = Waiting()) -> dict[str, Any]:
        """The call of ``action`` on the customer's message (:func:`~bot.actions.action_call`), which its tracker lists
        as the classifier read it, as Rasa's latest_message gives it: an answer to an action's question is run by the
        asking action's intent, which is not what the customer's message said. ``read``: the message's entities;
        ``past``, ``earlier`` and ``waiting`` (the action waiting and the form active) as :func:`action_call` takes
        them."""
        prediction = analysis.prediction
        domain = action_domain(self.project, self.actions.names)
        return action_call(action, turn.conversation_id, text, prediction.intent or "", prediction.confidence,
                           prediction.ranking, slots, read, domain, turn.channel, turn.metadata, earlier, past,
                           waiting.loop, waiting.form)

    async def _past_events(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's latest ``TRACKER_TURNS`` turns as an action's tracker lists them (``past_events``)."""
        if self.store is None:
            return []
        turns = await self._store(self.store.recent_turns, conversation_id, TRACKER_TURNS)
        return past_events(turns, self.config.actions.map, self._entities_in)

    def _handing_off(self, channel: str, language: Language, reason: str, values: dict[str, Any],
                     decision: Decision | None = None) -> Decision:
        """The handoff for ``reason`` (:func:`~bot.policy.handing_off`), logged with what the classifier read in the
        message where ``decision`` says it."""
        intent, confidence = (decision.intent, decision.confidence) if decision else (None, 1.0)
        return handing_off(self.config, self.project.responses, channel, language, reason, values, intent, confidence)

    async def _act(self, call: dict[str, Any], left: float | None = None) -> ActionResult:
        """The action ``call`` names run (:meth:`ActionRunner.run`), once the turn running holds its conversation and
        message in the store still (:meth:`_TurnBound.confirm`): an action may cancel an order or pay a refund, which
        another server that took the turn over runs too."""
        if (bound := _TURN_BOUND.get()) is not None:
            await bound.confirm()
        return await self.actions.run(call, left)

    def _action_failed(self, decision: Decision, fallbacks: int, channel: str, language: Language,
                       slots: dict[str, Any], timed_out: bool = False) -> Decision:
        """A failed action's reply, a miss like a fallback: ``fallback.action_failed`` (``action_slow`` when it ran out
        of time) with the "talk to a person" button, or the handoff once the misses reach ``fallbacks_before_handoff``."""
        if misses_reach_handoff(fallbacks, self.config):
            return self._handing_off(channel, language, "fallbacks", slots, decision)
        fallback = self.config.fallback
        return Decision("fallback", decision.intent, decision.confidence,
                        say(fallback.action_slow if timed_out else fallback.action_failed, language),
                        [{"title": say(fallback.human_button, language), "payload": HANDOFF_PAYLOAD}])

    def _action_message(self, message: dict[str, Any], channel: str, slots: dict[str, Any],
                        language: Language) -> Rendered:
        """What one of an action's messages shows, put together as Rasa does: for
        ``dispatcher.utter_message(response="utter_<intent>", **values)`` that intent's template, filled
        from the slots and the message's own values (which win); the message's own text instead of the
        template's, if it has one, and its buttons after the template's. An ``image`` is posted to Slack as an image
        block, as Rasa's Slack channel posts it; elsewhere it, and an ``attachment``
        given as a link (an invoice's PDF), are shown as their links, which every channel can show, as
        Rasa's channels show what they cannot attach, ``quick_replies`` as buttons, and ``elements`` as their titles
        and subtitles, with their buttons, as Rasa's channels show quick replies and a carousel they do not draw; the channel-specific parts (an attachment given
        as a platform's payload but on Slack, which posts it as Rasa's Slack channel does, and ``custom`` but where the
        channel passes it on: :func:`passed_on`) are not, and are logged."""
        shown = Rendered("", [])
        if message.get("response"):
            values = {k: v for k, v in message.items() if k not in RASA_MESSAGE_KEYS}
            shown = self._utter(message["response"], channel, {**slots, **values}, language)
        text = message.get("text") or shown.text
        attachment = message.get("attachment")
        linked = isinstance(attachment, str)  # a link, not a platform's payload (a dict)
        image = str(message.get("image") or "")
        drawn = [slack_image(image)] if image and channel == "slack" else []  # an image block, as Rasa's Slack posts it
        links = ("" if drawn else image, attachment if linked else "")
        elements = message.get("elements") or []
        cards = (" : ".join(part for part in (card.get("title"), card.get("subtitle")) if part) for card in elements)
        text = "\n\n".join(part for part in (text, *links, *cards) if part)
        custom = [message["custom"]] if message.get("custom") and passed_on(channel, message["custom"]) else []
        # a Slack attachment (a dict), which Rasa's Slack channel posts as the message's attachments
        attached = [{"attachments": [attachment]}] if isinstance(attachment, dict) and channel == "slack" else []
        passed = custom + drawn + attached  # in the order Rasa's channels send them
        unshown = {*(() if linked or attached else ("attachment",)), *(() if custom else ("custom",))}
        if dropped := sorted(key for key in unshown if message.get(key)):
            warn_unshown("an action's", dropped, channel)
        buttons = [*shown.buttons, *(message.get("buttons") or ()), *(message.get("quick_replies") or ()),
                   *(b for card in elements for b in card["buttons"])]
        return Rendered(text, buttons, custom=shown.custom + passed)

    def _name_unknown_intents(self, action: str, buttons: list[dict[str, Any]]) -> None:
        """Warn of an action's buttons whose payload selects an intent the model does not know (a Rasa bot's
        ``/affirm``): a click reaches the classifier as that typed text, and is answered at random. A template's
        buttons are checked when the bot loads; an action's can only be seen when it runs."""
        chosen = (read_payload(button["payload"])[0] for button in buttons)
        if unknown := sorted({payload for payload in chosen if payload.startswith("/")
                              and payload not in RESERVED_PAYLOADS and self.nlu.chosen(payload[1:]) is None}):
            log.warning("action %r offered buttons selecting intents the bot does not know, whose clicks are read "
                        "as typed text: %s", action, ", ".join(unknown))

    def _utter(self, response: str, channel: str, values: dict[str, Any], language: Language) -> Rendered:
        """A response an action names (``utter_ask_email``, ``utter_<intent>``) for the channel and language;
        nothing, with a warning, when the bot has no such response or none whose variables are known."""
        rendered = self.project.responses.utter(response, channel, values, language)
        if rendered is None:
            log.warning("an action asked for the response %r, which responses.yml cannot fill", response)
            return Rendered("", [])
        return rendered

    async def _log(self, turn: Turn, text: str, analysis: Analysis | None, decision: Decision,
                   conversation: dict[str, Any] | None, slots: dict[str, Any], fallbacks: int,
                   messages: list[dict[str, Any]] | None = None, counted: bool = False
                   ) -> tuple[int | None, int | None, bool]:
        """The exchange written to the store, a handoff with it (and then announced), with the reply's ``messages`` in
        an action's order (``Reply.messages``); ``conversation``: the conversation as the turn read it (None: new);
        ``slots``: its slots as the turn leaves them. Only what the turn changed of the slots, the count of fallbacks
        (where ``counted``: a miss adds one, an "ok" leaves it; otherwise the count is ``fallbacks``, which an answer
        starts again) and the waiting action is written (``Exchange.slots_read``, ``fallbacks_read``, ``loop_read``):
        another server on the store may have answered a message of the conversation meanwhile (one whose turn went
        stale, ``TURN_STALE_S``). The ids of the customer's turn and of the reply's, and whether the reply was dropped
        for another reason than a person having the conversation: the customer deleted the message meanwhile
        (``Exchange.deleted``), or another server took the turn over (``Exchange.overtaken``), and answers it."""
        if self.store is None:
            return None, None, False
        pred = analysis.prediction if analysis else None
        shown = turn.shown
        read = conversation or {"slots": {}, "fallbacks": 0}
        exchange = Exchange(
            turn.conversation_id, turn.channel, turn.user, text, shown if shown != text else None,
            decision.text or None, decision.intent, decision.confidence, pred.ranking if pred else [],
            decision.kind, analysis.model_version if analysis else self.nlu.version, decision.retrieval_score, slots,
            fallbacks, decision.loop, turn.pending_id, decision.buttons, decision.quotes,
            decision.reason if decision.kind == "handoff" else None, decision.custom, decision.reverted,
            decision.restarted, decision.form, messages, turn.message_id, slots_read=read["slots"],
            fallbacks_read=(read["fallbacks"] or 0) if counted else None,
            loop_read=(read.get("active_loop"), read.get("active_form")), leased=self.store.server is not None,
        )
        assert self.writer is not None
        if (turn_bound := _TURN_BOUND.get()) is not None:  # written from here on, bounded by the store's busy timeout
            turn_bound.lift()
        user_turn_id, turn_id = await self.writer.submit(exchange)
        if exchange.overtaken:
            log.warning("this server's turn of conversation %s, or its claim of the message (a web client's Retry), "
                        "went %g s without a renewal (the server or its store too slow), and another server on the "
                        "store took it over: this server's reply to the message is dropped, and the other server "
                        "answers the conversation", log_tag(turn.conversation_id), TURN_STALE_S)
        if exchange.handed_off:
            await self.announce(turn.conversation_id, True, decision.reason, turn.channel)
        return user_turn_id, turn_id, exchange.deleted or exchange.overtaken

    async def set_handoff(self, conversation_id: str, handed_off: bool, reason: str, channel: str = "web",
                          after: int | None = None, agent: str | None = None, force: bool = False,
                          by: str | None = None) -> bool:
        """Record the change, if it is one (see :meth:`Store.set_status`, its ``after``, ``agent``, ``force`` and ``by``), and show
        it at once wherever the conversation is open (every tab of the web chat); a customer handed off by anyone
        but an agent is announced to the agents. An agent's takeover of a customer handed off already changes no
        status, but may change who has them (one nobody had, or a colleague's, forced): the web chat's banner went on
        naming nobody, or the colleague, and a customer on Slack or WeCom heard nothing of the agent now with them."""
        status = "handed_off" if handed_off else "open"
        changed = True
        taking = self.store is not None and handed_off and reason == "agent"
        before = await self._look_up(Store.holder, conversation_id) if taking else None
        if self.store is not None:
            changed = await self._store(self.store.set_status, conversation_id, status, reason, channel, after, agent,
                                        force, by, self.team)
        if changed:
            await self.announce(conversation_id, handed_off, reason, channel, agent)
        elif taking and await self._show_holder(conversation_id, before):
            self._tell_in_order(conversation_id, True, agent)  # on Slack and WeCom, which show no banner
        return changed

    async def pass_on(self, conversation_id: str, agent: str | None, to: str | None, force: bool = False,
                      by: str | None = None) -> bool:
        """Release a handed-off customer, or give them to the colleague ``to`` (:meth:`Store.pass_on`, its ``by``), and show who has
        them now where the conversation is open; a customer on Slack or WeCom is told of the colleague now with them,
        and of nothing at a release: they still wait for a person. A release is announced to the agents' webhook as a
        handoff is (reason ``released``): nobody's, the customer waited until someone looked at the inbox."""
        assert self.store is not None
        before = await self._look_up(Store.holder, conversation_id)
        changed = await self._store(self.store.pass_on, conversation_id, agent, to, force, self.team, by)
        if changed and await self._show_holder(conversation_id, before) and to is not None:
            self._tell_in_order(conversation_id, True, to)
        if changed and to is None:
            released = await self._look_up(Store.conversation, conversation_id)  # None if purged meanwhile
            if released is not None and released["channel"] != TRYOUT_CHANNEL:
                self.notifier.handed_off(conversation_id, released["channel"], "released")
        return changed

    async def release_all(self, agent: str, by: str | None = None) -> list[str]:
        """Release every customer ``agent`` has, each as :meth:`pass_on` releases one (announced to the agents' webhook):
        an agent leaving for the day released them one by one. Returns the conversations released; one a colleague
        took over, or the bot got back, meanwhile is left as it is now. ``by``: as for :meth:`pass_on`."""
        assert self.store is not None
        released = []
        for conversation_id in await self._store(self.store.held_by, agent):
            with contextlib.suppress(Overtaken):
                if await self.pass_on(conversation_id, agent, None, by=by):
                    released.append(conversation_id)
        return released

    async def announce(self, conversation_id: str, handed_off: bool, reason: str, channel: str,
                       agent: str | None = None) -> None:
        """Show a change of hands the store recorded wherever the conversation is open, tell the agents of
        a customer handed to them by anyone but an agent (not of a `bot chat` tryout, which is in no agent's
        inbox and which no agent's reply can reach), and tell a customer on Slack or WeCom in a message
        that an agent (``agent``: their name, if given) took their conversation over or handed it back
        (:meth:`_tell_change`). That message goes in the background: the admin API's takeover answers at once,
        not once the platform has taken it (a minute, with retries, when it is slow)."""
        status = "handed_off" if handed_off else "open"
        if reason == "agent" and self.store is not None:  # on its way before any wait: a reply now waits for it
            self._tell_in_order(conversation_id, handed_off, agent)
        # Queued before any wait too: a deletion that took the handoff back while a channel showed it queued its
        # withdrawal first, and the agents were told of the handoff after, a customer who no longer waits.
        if handed_off and reason != "agent" and channel != TRYOUT_CHANNEL:
            self.notifier.handed_off(conversation_id, channel, reason)
        for shown in self.channels.values():
            await shown.status_changed(conversation_id, status, BY.get(reason, "bot"), agent if handed_off else None)

    def _tell_in_order(self, conversation_id: str, handed_off: bool, agent: str | None) -> None:
        """:meth:`_tell_change` in the background, after the conversation's notice before it, if one is still
        on its way (a takeover then a handback reach the customer in that order); the agent's next reply waits
        for it too (:meth:`_after_notices`). A failure is logged: the change of hands stands."""
        before = self._telling.get(conversation_id)

        async def run() -> None:
            try:
                if before is not None:
                    await asyncio.wait([before])  # however it ended
                await self._tell_change(conversation_id, handed_off, agent)
            except Exception:
                log.exception("could not tell %s of an agent's change of hands", log_tag(conversation_id))
            finally:
                if self._telling.get(conversation_id) is task:
                    del self._telling[conversation_id]

        task = self._notices.spawn(run())
        self._telling[conversation_id] = task

    async def _after_notices(self, conversation_id: str) -> None:
        """Wait until the conversation's takeover or handback notice on its way, if any, is stored and sent:
        an agent's reply right after a takeover came before the notice that they had joined."""
        if (telling := self._telling.get(conversation_id)) is not None:
            await asyncio.wait([telling])  # not cancelled with the reply: the notice is the conversation's

    async def _tell_change(self, conversation_id: str, handed_off: bool, agent: str | None) -> None:
        """Tell a customer on a channel that shows no banner (Slack, WeCom) that an agent took their
        conversation over, or gave it back to the bot: they were left writing to a silent bot, or answered
        by it again without a word. The takeover notice carries the way back, a button: Slack takes a
        typed ``/resume`` for a slash command and never sends it. The takeover notice names the ``agent``
        where bot.yml says how (handoff.joined_message_named)."""
        assert self.store is not None
        conversation = await self._store(self.store.conversation, conversation_id)
        channel = self.channels.get(conversation["channel"]) if conversation else None
        if conversation is None or channel is None or channel.shows_status:
            return
        language = self._customer_language(conversation["slots"], "")
        message, name = (self.config.handoff.joined(agent, language) if handed_off else
                         (self.config.handoff.resumed_message, None))
        await self._tell(conversation_id, conversation["channel"], conversation["slots"], "", message, back=handed_off,
                         notice="joined" if handed_off else "resumed", agent=name)

    async def tell_overdue(self) -> int:
        """Tell each customer who has waited ``handoff.busy_after_seconds`` for a person, once per wait
        and again when they write that long or longer after they were told, on their own channel, that the
        agents are busy: silence would look like a broken chat. Returns how many were told."""
        after = self.config.handoff.busy_after_seconds
        if after is None or self.store is None:
            return 0
        window = (time.time() - after, after)
        told = 0
        for waiting in await self._store(self.store.overdue, *window):
            told += await self._tell(waiting["conversation_id"], waiting["channel"], waiting["slots"],
                                     waiting["last_message"] or "", self.config.handoff.busy_message, back=True,
                                     notice="busy", overdue=window)
        return told

    def _customer_language(self, slots: dict[str, Any], last_message: str) -> str:
        """The language a customer is told something in outside a turn. The language slot follows each message
        (a number alone keeps it); the latest message as stored is redacted, and "[PHONE]" would read as English."""
        kept = slots.get(SLOT)
        return turn_language(self.config.language, "" if kept else last_message, kept)

    async def _tell(self, conversation_id: str, channel_name: str, slots: dict[str, Any], last_message: str,
                    message: Text, back: bool, notice: str, overdue: tuple[float, float] | None = None,
                    agent: str | None = None) -> bool:
        """Say ``message`` to a customer outside a turn, on their own channel, in the language and script
        of their conversation (``back``: with the button back to the bot); stored first as the ``notice``
        it is (see :meth:`Store.overdue`), and marked undelivered if the platform does not take it. One the
        platform may have posted (:class:`MaybeDelivered`) is not marked, as an agent's reply is not.
        ``overdue``, the busy notice's ``(before, again_after)``: said only if the customer is still owed it as it
        is stored (:meth:`Store.add_busy_notice`: another server on the store may have told them). ``agent``: the
        name for the ``{agent}`` of handoff.joined_message_named, filled in after the text is put in the customer's
        script, as the agent wrote it. Returns whether it was said."""
        assert self.store is not None
        script = kept_script(slots)
        language = self._customer_language(slots, last_message)
        text = name_agent(say(message, language, script=script), agent)
        buttons = [{"title": say(self.config.handoff.back_button, language, script=script), "payload": RESUME_PAYLOAD}
                   ] if back else []
        turn_id = await (self._store(self.store.add_message, conversation_id, "bot", text, channel_name, None, buttons,
                                     notice) if overdue is None else
                         self._store(self.store.add_busy_notice, conversation_id, text, channel_name, buttons, *overdue))
        if turn_id is None:
            return False
        channel = self.channels.get(channel_name)
        try:
            if channel is not None:
                await channel.send(conversation_id, text, role="bot", turn_id=turn_id, buttons=buttons, language=language,
                                   script=script)
        except MaybeDelivered as exc:  # the customer may have it: marked, the transcript would say they did not
            log.warning("telling %s %r may not have reached them: %r", log_tag(conversation_id), text, exc)
        except Exception as exc:  # one platform down must not keep the others' customers waiting unheard
            log.error("could not tell %s %r: %r", log_tag(conversation_id), text, exc)
            await self._store(self.store.undelivered, turn_id)  # as the transcript shows an agent's reply that failed
        return True

    async def agent_message(self, conversation_id: str, text: str, agent: str | None = None,
                            key: str | None = None, after: int | None = None, force: bool = False,
                            by: str | None = None) -> int:
        """A human agent's reply (``agent``: their name, if they give it): stored, then delivered on the
        conversation's own channel; :class:`DeliveryError` when the platform refuses it or cannot be reached
        (the transcript keeps it, so the agent sees what the customer did not get); :class:`MaybeDelivered`,
        the turn not marked, when the platform may have sent it.

        ``key``: a reply sent with it before is not stored or delivered again (its console sends it again
        when the answer to the first try was lost): its turn id, or the same DeliveryError if its customer
        did not get it. A try while the first is still being sent waits for it and answers as it does. Another
        text under a key used before raises :class:`KeyReused`; a colleague's reply since the turn ``after``,
        :class:`RepliedMeanwhile`; a message since it from a customer the bot has, :class:`WroteToTheBot`; a reply to
        a customer a colleague has, unless ``force``, :class:`HeldByColleague`. ``by``: who takes the customer over in
        ``agent``'s name, when not ``agent`` themself (:meth:`set_handoff`)."""
        if key is None:
            return await self._agent_message(conversation_id, text, agent, key, after, force, by)
        slot = (conversation_id, key)
        if slot in self._keyed:  # stored, not sent yet: "sent" now would be a guess
            first_text, first = self._keyed[slot]
            if first_text != text:
                raise KeyReused()
            return await asyncio.shield(first)
        outcome: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, if no retry came
        self._keyed[slot] = text, outcome
        try:
            turn_id = await self._agent_message(conversation_id, text, agent, key, after, force, by)
        except asyncio.CancelledError:
            outcome.set_exception(MaybeDelivered("the first try with this key was cut short"))
            raise
        except BaseException as exc:
            outcome.set_exception(exc)
            raise
        else:
            outcome.set_result(turn_id)
            return turn_id
        finally:
            del self._keyed[slot]

    async def _agent_message(self, conversation_id: str, text: str, agent: str | None, key: str | None,
                             after: int | None, force: bool, by: str | None) -> int:
        """One try of :meth:`agent_message`: the reply stored, taking over a conversation the bot holds, and sent on
        the conversation's channel; its turn id."""
        assert self.store is not None
        await self._after_notices(conversation_id)
        conversation = await self._store(self.store.conversation, conversation_id)
        if conversation is None:
            raise KeyError(conversation_id)
        channel = self.channels.get(conversation["channel"])
        if conversation["status"] != "handed_off" and channel is not None and (
                key is None or await self._store(self.store.sent_before, conversation_id, key) is None) and (
                after is None or await self._store(self.store.replied_meanwhile, conversation_id, after) is None):
            # A reply to a conversation the bot holds takes it over: the bot answered the customer's answer to the
            # agent. The customer hears of it (a banner, or the notice, sent first) before the reply. A reply sent
            # before under its key (a retry) takes nothing over: a colleague may have handed it back since; nor
            # does one refused for a colleague's reply the agent has not read. One written before the customer's latest
            # message to the bot ("Back to the bot", or a question it answered) waits until the agent has read it.
            if after is not None and (wrote := await self._store(self.store.wrote_since, conversation_id, after)) is not None:
                raise WroteToTheBot(wrote)
            await self.set_handoff(conversation_id, True, "agent", agent=agent, force=force, by=by)
            await self._after_notices(conversation_id)
        # who had the customer: a named reply to a conversation handed off before it may name its agent
        held = bool(agent) and conversation["status"] == "handed_off"
        holder = await self._store(self.store.holder, conversation_id) if held else None
        try:
            sent = self._as_sent(text, conversation["slots"])
            turn_id = await self._store(self.store.add_agent_answer, conversation_id, text, conversation["channel"],
                                        agent, key, after, force, self.team, by, sent)
        except SentBefore as sent:
            if sent.text != text:
                raise KeyReused() from None
            if sent.undelivered:
                raise DeliveryError(f"sent before with this key, as turn {sent.turn_id}") from None
            return sent.turn_id
        if held:
            await self._show_holder(conversation_id, holder)
        try:
            if channel is None:  # a `bot chat` conversation, or one on a channel since turned off
                raise DeliveryError(f"this server does not serve its channel, {conversation['channel']!r}")
            await channel.send(conversation_id, sent, role="agent", turn_id=turn_id, author=agent)
        except MaybeDelivered:  # the customer may have it: no end to their wait is missed, and no resend offered
            raise
        except UNDELIVERED as exc:
            await self._store(self.store.undelivered, turn_id)  # the customer still waits for an answer
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(f"cannot reach {conversation['channel']}: {failure(exc)}") from exc
        return turn_id

    def _as_sent(self, text: str, slots: dict[str, Any]) -> str:
        """An agent's reply as its customer gets it: in the Chinese script they write (the conversation's, kept in its
        slots), as the bot's own replies are, unless ``handoff.agent_script`` is ``as_written``. Agents type the
        shop's script: a Hong Kong customer answered by the bot in Traditional characters got the agent's in
        Simplified ones."""
        if self.config.handoff.agent_script == "as_written":
            return text
        return in_script(text, kept_script(slots))

    async def _show_holder(self, conversation_id: str, before: str | None) -> bool:
        """Show the agent who has a handed-off conversation again where it is open, if an agent's named reply
        changed who that is (``before``): one who names themselves only with their first reply after the customer or
        the bot handed the conversation off left the web chat's banner naming no one, or the colleague before them.
        Returns whether it changed."""
        assert self.store is not None
        if (holder := await self._look_up(Store.holder, conversation_id)) == before:  # the change is committed
            return False
        for shown in self.channels.values():
            await shown.status_changed(conversation_id, "handed_off", BY["agent"], holder)
        return True

    async def close(self) -> None:
        """Release what the bot holds, once its turns are finished (:meth:`finish_turns`): the model's batcher, the
        actions' session and loops, the notifier, the store's batchers and threads, and last the store itself."""
        await self._notices.close(0.0)  # those left after finish_turns: the store closes below
        await self.batcher.close()
        await self._retiring.close(0.0)
        for actions in [*self._retired, self.actions]:
            await actions.close()
        await self.notifier.close()
        for batcher in (self.writer, self.reader):
            if batcher is not None:
                await batcher.close()
        for executor, reader in ((self._reads, "_read_store"), (self._lookups, "_lookup_store"),
                                 (self._figures, "_figures_store"), (self._renewals, "_renewal_store")):
            executor.shutdown(wait=True)
            if (store := getattr(self, reader)) is not None:
                store.close()
        self._db.shutdown(wait=True)
        if self.store is not None:
            self.store.close()


def _said_first(said: Rendered, decision: Decision) -> Decision:
    """``decision`` after what a validation of the message's slots ``said`` ("That's not an order number of ours."),
    as Rasa sends that before the next action's messages."""
    if not (said.text or said.buttons or said.custom):
        return decision
    return dataclasses.replace(decision, text="\n\n".join(t for t in (said.text, decision.text) if t),
                               buttons=said.buttons + decision.buttons, custom=said.custom + decision.custom, quotes=True,
                               parts=in_order([said, *(decision.parts or [Rendered(decision.text, [], custom=decision.custom)])]))


def in_order(parts: list[Rendered]) -> list[Rendered]:
    """An action's messages (``parts``), where one joined reply would change their order: a text after a custom payload
    (an action's text, its Slack blocks, then text again) was shown before it, as the reply's text comes before its
    payloads. Rasa sends each message on its own; none where the joined reply keeps their order."""
    shown = [part for part in parts if part.text or part.custom]
    payload_then_text = any(a.custom and any(b.text for b in shown[i + 1:]) for i, a in enumerate(shown))
    return shown if payload_then_text else []
