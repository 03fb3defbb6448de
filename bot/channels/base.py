"""The one interface every channel implements.

A channel has an input side (HTTP routes that turn a platform's request into a :class:`Turn`) and an
output side (:meth:`Channel.send`, used when a human agent or a late answer must reach the user).
Adding a channel means adding one module next to this one and listing it in ``bot/channels/__init__.py``.

The helpers below the interface are what every platform channel needs the same way: settings from
``bot.yml`` with environment overrides, bounded body reading, JSON error bodies, a TTL dedupe set for
platform redeliveries, and tracked background tasks for answering after the acknowledgement.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import sqlite3
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import regex
from aiohttp import web

from bot.language import Language, Script, Text, blank, chinese_script, kept_script, mostly_written_in
from bot.project import ProjectError, valid_unicode
from dialogues.disk import DAMAGED_ADVICE, damaged, unwritable_advice
from bot.log_format import Verbatim
from dialogues.store import OverLimit, log_tag
from retrieval.text import normalise as normalise  # re-exported: the engine and every channel normalise with it

if TYPE_CHECKING:
    from bot.engine import Bot

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_CHARS = 4000
DEFAULT_GRACE_S = 5.0  # how long close() lets turns in flight finish; the server passes server.shutdown_seconds
# Who changed a conversation's status, by the store's reason for it ("fallbacks" and "action:…" are the bot's).
BY = {"user": "customer", "requested": "customer", "agent": "agent"}
MAX_SKEW_S = 300  # how far a platform's signed timestamp may be from our clock before the request is refused
REFUSAL_SAID_S = 60.0  # a refused request of a platform's is said in the log once in this long at most
HINTED_S = 600.0  # a conversation told a hint is not told it again for this long, unless its customer wrote since
UNREAD = "unread"  # UNREAD_HINT's name among the hints (PlatformChannel._hint_due)
SLOWED = "slow_down"  # the notice to wait, over the conversation's limit, among them (PlatformChannel._hold_back)
# What a customer who sends what the bot cannot read (a voice message, a picture) is told, where they got no answer.
UNREAD_HINT: Text = {"en": "Sorry, I can only read text messages. Please type your question.",
                     "zh": "抱歉，我只能读懂文字消息，请用文字描述您的问题。"}


USER_AGENT = f"deskbot/{version('deskbot')}"


def client_session(**settings: Any) -> aiohttp.ClientSession:
    """A client session for deskbot's own requests (to Slack, WeCom, the action server, ``handoff.notify_url``),
    which name deskbot in their ``User-Agent``: aiohttp's named the Python and aiohttp versions that sent them, and
    so which of their published flaws a receiver, or anyone on the way, could try."""
    return aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, **settings)


def same_secret(given: str, expected: str) -> bool:
    """A token or signature a request carries against the expected one, compared in constant time so
    that response timings leak nothing of it. A header or query value aiohttp could not decode keeps
    its bytes as surrogates: they can only fail to match."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def skew(timestamp: str, now: float) -> float | None:
    """How many seconds ``now`` is past a platform's signed ``timestamp`` (Unix seconds); None when it is none."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:  # int() also reads " 1_7", "١٧"
        return None  # and "9" * 400, whose difference from a float overflows
    return now - int(timestamp)


def is_fresh(timestamp: str, now: float) -> bool:
    """True when a platform's signed ``timestamp`` (Unix seconds) is within ``MAX_SKEW_S`` of ``now``.

    A signature proves who sent a request, not when: without this window a captured request could
    be replayed once the duplicate filter has forgotten it (after a restart, say).
    """
    off = skew(timestamp, now)
    return off is not None and abs(off) <= MAX_SKEW_S


def clock_off(off: float, platform: str) -> str:
    """Why a request signed ``off`` seconds before now (:func:`skew`) was refused, in the words of its fix: the
    server's clock is off, where every request of the ``platform``'s is refused so (else it is a replay)."""
    return (f"it was signed {abs(off):.0f} s {'before' if off > 0 else 'after'} the time of this server's clock, "
            f"more than the {MAX_SKEW_S} s allowed: if every request of {platform}'s is refused so, set this server's "
            "clock right (NTP)")


@dataclass
class Turn:
    """One user message, as the engine sees it, whatever door it came through."""

    conversation_id: str
    text: str
    channel: str
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    pending_id: int | None = None  # a platform message kept in the store until answered (PlatformChannel.keep)
    seen: tuple[str, ...] = ()  # the keys its channel knows a redelivery of it by (RecentKeys)
    language: Language | None = None  # the customer's page's, for a conversation whose language is not known yet
    script: Script | None = None  # and its Chinese script (a zh-TW page's: traditional), until the customer's shows
    address: str | None = None  # a web client's, whose handoffs are counted (limits.handoffs_per_ip)
    verified_user: str | None = None  # ``user`` when the shop's server vouched for it (channels.web.identity_secret)
    # What came with the words that the bot does not read (a file's "[picture]", dialogues.holding.SENT): kept beside
    # them in the transcript, for the agents, and left out of what the model reads and reviewers label.
    attached: str = ""
    # The words as the agents read them, where the model reads them otherwise (a Slack mention by the person's name,
    # where the model reads a neutral word): the transcript's. Empty when they are ``text``.
    written: str = ""
    message_id: str | None = None  # a web client's own id of the message, which its Retry sends again

    @property
    def shown(self) -> str:
        """The message as the agents read it: its words as written, and what came with them."""
        return with_attached(self.written or self.text, self.attached)


def kept_turn(row: dict[str, Any]) -> Turn:
    """The turn of a platform message a stopped server kept and did not answer (a row of ``Store.adopt``), as it
    came: the words the model reads, and the message as the agents read it (``shown``), where that differs."""
    return Turn(row["conversation_id"], row["text"], row["channel"], row["user"], row["metadata"], row["id"],
                written=row.get("shown") or "")


def with_attached(text: str, attached: str) -> str:
    """A message as the agents read it: its words, and under them what came with them (``Turn.attached``)."""
    return f"{text}\n{attached}" if attached else text


def load_json(data: str | bytes) -> Any:
    """``json.loads``, where nesting too deep for Python's parser is malformed JSON (ValueError) like any other."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class DeliveryError(RuntimeError):
    """A platform refused a message, or could not be reached, so the customer did not get it."""


class Stopping(DeliveryError):
    """The server stopped while a send waited to try again: nothing went out. An answer to a kept message
    is left for the next server to send (:meth:`PlatformChannel.redeliver`); an agent's reply is marked
    undelivered, as any other failure."""


class Withdrawn(DeliveryError):
    """The customer deleted the message an answer was for before it went out (it waited its turn behind the
    platform's pacing, or for the next server): nothing went out, and nothing is owed (``Store.replace_message``)."""


class MaybeDelivered(DeliveryError):
    """The platform took the request and never said whether the message went out (a timeout, a 500 or a 504,
    :data:`MAYBE_SENT`, the connection closed before the answer, :data:`UNANSWERED`), or a long message's later
    piece failed after the first went out (``partly``): the customer may have it, and would read it twice if it
    were sent again. An agent's reply is not marked undelivered, and its agent is told to check before sending it
    again."""

    partly = False  # a later piece refused: the customer has the start of it, and not the rest nor its buttons


UNDELIVERED = (DeliveryError, aiohttp.ClientError, asyncio.TimeoutError)  # what sending on a platform raises
# The platform, or a gateway before it, could not take the request, or the connection was refused: nothing
# was sent, so it is tried again (``SEND_ATTEMPTS`` tries in all, the n-th retry n seconds later) rather
# than handing the conversation to a person for a hiccup. A timeout, a 504 (a gateway's), a 500 or a connection
# closed before the answer is not: the message may have gone out, and a customer would read it twice (``MAYBE_SENT``,
# ``UNANSWERED``, :class:`MaybeDelivered`).
UNAVAILABLE = frozenset({502, 503})
MAYBE_SENT = frozenset({500, 504})
SEND_ATTEMPTS = 3
# A platform's API answers within SEND_TIMEOUT_S, and a connection to it opens within CONNECT_TIMEOUT_S: one
# that never opened is a plain failure (nothing went out), not a message that may have been sent.
SEND_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TryAgain:
    """One try at a platform's API found it unavailable: ``why``, and how long to wait before the next
    (``None``: the n-th retry waits n seconds)."""

    why: str
    delay: float | None = None


# What a request that hands a message to a platform may fail with once its connection is open: the platform may
# have read the request and sent the message, and never said so. No answer in time; the connection closed
# (ServerDisconnectedError) or reset before the answer came; an answer cut short. Sending it again could show it twice
# (chat.postMessage and message/send take no idempotency key), so it is not tried again (:class:`MaybeDelivered`).
UNANSWERED = (asyncio.TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)


def error_text(exc: BaseException) -> str:
    """``str(exc)``, but without the URL aiohttp names a malformed or refused answer's (``ClientResponseError``)
    by: its query may hold a secret (WeCom's corpsecret and access_token, an action server's token)."""
    return f"{exc.status}, {exc.message}" if isinstance(exc, aiohttp.ClientResponseError) else str(exc)


def failure(exc: BaseException) -> str:
    """Why a message did not go out, in words: a timeout's own message is empty, a disconnection's says little."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before an answer came"
    return error_text(exc) or type(exc).__name__


async def handed_over(request: Awaitable[T], what: str, error: type[MaybeDelivered]) -> T:
    """``request``, one that hands a message to a platform: a failure once connected (:data:`UNANSWERED`) is
    ``error``, as the platform may have sent the message without answering."""
    try:
        return await request
    except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError):  # never connected: nothing went out
        raise
    except UNANSWERED as exc:
        raise error(f"{what}: {failure(exc)}") from exc


async def send_pieces(pieces: list[T], send: Callable[[T], Awaitable[None]], error: type[MaybeDelivered]) -> None:
    """Send a long message's ``pieces`` one after another. Once one went out, the customer has part of the
    message whatever becomes of the rest: a later piece's failure is ``error``, since sending it all again
    would repeat that part. (A server stopping before a retry stays :class:`Stopping`.)"""
    for n, piece in enumerate(pieces):
        try:
            await send(piece)
        except UNDELIVERED as exc:
            if n == 0 or isinstance(exc, (MaybeDelivered, Stopping)):
                raise
            cut = error(f"{failure(exc)}, after {n} of its {len(pieces)} pieces went out")
            cut.partly = True
            raise cut from exc


# Where a long message may be cut, best first: after a line break, the end of a sentence (Chinese full stops
# need no space after them; a "?" inside a link is no end), a space. A break before the middle of a piece is passed over: it would send a stub.
_BREAKS = (regex.compile(r"\n"), regex.compile(r"[。！？；…]+[”’」』）)]*|(?<=[^\s.])[.:;!?]+[\"')]*(?=\s)"),
           regex.compile(r" "))


def signed(text: str, author: str | None) -> str:
    """An agent's reply as a chat platform shows it: led by the agent's name in bold, as the web chat shows it
    beside the message (a Slack or WeCom customer could not tell a person's reply from the bot's). A reply in
    Chinese takes Chinese punctuation, "小李：您好" not "小李: 您好", outside the bold: Markdown ends no bold
    between a "：" and the letter after it."""
    if not author:
        return text
    return f"**{author}**：{text}" if mostly_written_in(text) == "zh" else f"**{author}:** {text}"


def message_pieces(text: str, limit: int, size: Callable[[str], int] = len) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` (by ``size``: characters for Slack, UTF-8 bytes for
    WeCom), each ending where a reader expects a break (``_BREAKS``), else between two characters as a
    reader sees them (regex's grapheme clusters: a family emoji, a letter and its accent stay whole). Cut at
    the byte limit alone, a Chinese answer broke off mid-word, and its last two characters came alone."""
    pieces = []
    while size(text) > limit:
        end = (_fitting(((m.end(), m.group()) for m in regex.finditer(r"\X", text)), limit, size)
               or _fitting(((n + 1, char) for n, char in enumerate(text)), limit, size) or 1)  # one huge cluster
        cut = _last_break(text, end)
        piece, text = text[:cut].rstrip(), text[cut:].lstrip("\r\n ")
        if piece:
            pieces.append(piece)
    return [*pieces, text] if text or not pieces else pieces  # a long answer's trailing blank line sends nothing


def _last_break(text: str, end: int) -> int:
    """Where to cut ``text[:end]``: after its last break of the best kind (``_BREAKS``) in its second half,
    else at ``end``."""
    for pattern in _BREAKS:
        breaks = [m.end() for m in pattern.finditer(text, 0, end)]
        if breaks and breaks[-1] > end // 2:
            return breaks[-1]
    return end


def _fitting(units: Iterable[tuple[int, str]], limit: int, size: Callable[[str], int]) -> int:
    """Where the longest run of ``units`` (each with the offset it ends at) within ``limit`` ends; 0: none fits."""
    end = used = 0
    for stop, unit in units:
        used += size(unit)
        if used > limit:
            break
        end = stop
    return end


async def api_result(response: aiohttp.ClientResponse, error: type[DeliveryError], what: str) -> dict[str, Any]:
    """The JSON object a platform's API answered with; anything else (a proxy's HTML page, a wrong
    ``api_url``) is an ``error``, so that an agent hears the customer did not get the message."""
    try:
        result = load_json(await response.read())
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise error(f"{what}: the answer is not a JSON object (HTTP {response.status}, {response.content_type})")
    return result


def readable(text: str) -> bool:
    """Whether a message has anything to answer (normalises to something), in valid Unicode: a JSON
    escape can carry half a surrogate pair, which ``json.loads`` lets through and neither a tokenizer
    nor SQLite accepts."""
    return valid_unicode(text) and not blank(text)


PREDICTIONS = ("intent", "confidence", "ranking")  # what the model made of a message, in a reply's JSON


@dataclass
class Reply:
    """What the bot answers to a :class:`Turn`."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    source: str = "fallback"  # template | retrieval | action | fallback | handoff | resume | silent
    buttons: list[dict[str, str]] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)
    turn_id: int | None = None
    handed_off: bool = False
    language: str | None = None  # the language it is written in (bot/language.py), for what a channel adds
    script: Script | None = None  # and the Chinese script, its customer's
    user_turn_id: int | None = None  # the customer's message as stored (a silent reply has no turn of its own)
    custom: list[Any] = field(default_factory=list)  # an action's json_message payloads, passed on as they are
    # an action's messages in the order it sent them ({"text", "custom"} each), where the joined text and custom
    # would change it (a text after a payload); empty otherwise
    parts: list[dict[str, Any]] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        """:attr:`parts` one by one, as Rasa's REST channel lists an action's messages: a text, then each payload."""
        return [item for part in self.parts
                for item in ([{"text": part["text"]}] if part["text"] else []) + [{"custom": c} for c in part["custom"]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "reply": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "source": self.source,
            "buttons": self.buttons,
            "ranking": [{"intent": i, "confidence": round(c, 4)} for i, c in self.ranking],
            "turn_id": self.turn_id,
            "user_turn_id": self.user_turn_id,
            "handed_off": self.handed_off,
            "custom": self.custom,
            "messages": self.messages(),
            "language": self.language,
            "script": self.script,
        }


def parts_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The :attr:`Reply.parts` that a reply's :meth:`Reply.messages`, as the store keeps them, stand for: one each."""
    return [{"text": m.get("text", ""), "custom": [m["custom"]] if "custom" in m else []} for m in messages]


class Channel:
    """Base class: subclasses set ``name`` and implement :meth:`routes` and :meth:`send`."""

    name: str = ""
    shows_status: bool = False  # whether its users see a change of hands (:meth:`status_changed`) without a message
    # How its customers read a reply written in the web chat's Markdown, on a platform that draws none (WeCom's plain
    # text); None where they read it drawn (the web chat, Slack)
    unmarked: Callable[[str], str] | None = None

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        self.bot = bot
        self.settings = settings

    def routes(self) -> list[web.AbstractRouteDef]:
        raise NotImplementedError

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        """Deliver a message that is not the direct answer to a request (agent replies, notices, late answers)."""
        raise NotImplementedError

    async def status_changed(self, conversation_id: str, status: str, by: str, agent: str | None = None) -> None:
        """A conversation was handed off (``handed_off``) or back (``open``), ``by`` the ``customer``, an ``agent``
        or the ``bot``, in a turn or outside one (the admin API, an answer the platform did not take) (``agent``: the
        name of the agent who took it over, if given); or, ``handed_off`` again, an agent's named reply changed who
        has it (``agent``).

        Channels that show the state to the user (the web widget) override this and set ``shows_status``;
        on others the bot tells the customer of an agent's change in a message.
        """

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation as the store holds it (:meth:`~dialogues.store.Store.conversation`); None when unknown, or
        when the bot keeps no store. Read on the look-ups' connection: asked before every web message, history read and
        vote is served, it waited behind the turns the store's one thread writes (and, on the admin reads' one, behind
        a long figures read), and held them up."""
        if self.bot.store is None:
            return None
        return await self.bot._look_up(lambda store: store.conversation(conversation_id))

    async def close(self, grace: float = DEFAULT_GRACE_S) -> None:
        """At shutdown: let the turns in flight reach their users for up to ``grace`` seconds, then
        release sockets, client sessions and background tasks."""


def resolve_settings(settings: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``bot.yml`` values with the non-empty environment variables in ``env`` laid over them, without the spaces and
    line breaks around them: a secret put in the environment from a file (a Kubernetes secret made with
    ``--from-file``, an env file saved on Windows) ends in a line break, and every signature failed to match."""
    merged = dict(settings)
    for key, var in env.items():
        if value := os.environ.get(var, "").strip():
            merged[key] = value
    return merged


def shown_url(url: str) -> Verbatim:
    """A platform's ``api_url`` as the log may show it: without a user and password, nor a query, which a proxy's
    address may hold; its host as it is, an IP address too (:class:`Verbatim`)."""
    parts = urlsplit(url)
    return Verbatim(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}")


def api_base(url: str) -> str:
    """A platform API's base URL with the one slash its method names are added after: without it,
    ``https://slack.com/api`` + ``chat.postMessage`` went to ``https://slack.com/apichat.postMessage``."""
    return url.rstrip("/") + "/"


BODY_SECONDS = 15.0  # for a request's body to arrive whole: a chat message's, or 64 KiB over a slow phone line


def dumps(data: Any) -> str:
    """JSON as the API writes it: Chinese as characters, which an operator reads in a terminal, not as
    ``\\uXXXX`` escapes."""
    return json.dumps(data, ensure_ascii=False)


def json_response(data: Any, **kwargs: Any) -> web.Response:
    return web.json_response(data, dumps=dumps, **kwargs)


ENCODED_AT_ONCE = 100  # a long list's items JSON-encoded in one call (:func:`dumps_in_parts`)


def dumps_in_parts(data: dict[str, Any], key: str) -> bytes:
    """``dumps(data)`` as UTF-8, its list ``data[key]`` last and encoded ``ENCODED_AT_ONCE`` items at a time. json's C
    encoder holds the interpreter lock for a whole call, on a worker thread too: a 10,000-turn transcript encoded at once
    held the event loop 100 ms, every other request and socket waiting; between parts, the loop runs."""
    items = data[key]
    head = dumps({name: value for name, value in data.items() if name != key})
    parts = [head[:-1], ", " if len(head) > 2 else "", dumps(key), ": ["]
    for start in range(0, len(items), ENCODED_AT_ONCE):
        parts += [", " if start else "", dumps(items[start:start + ENCODED_AT_ONCE])[1:-1]]
    parts.append("]}")
    return "".join(parts).encode()


async def long_json_response(data: dict[str, Any], key: str) -> web.Response:
    """:func:`json_response` for ``data`` whose list ``data[key]`` may be long (a transcript's turns), encoded on a
    worker thread in parts (:func:`dumps_in_parts`), so that the event loop goes on serving meanwhile."""
    body = await asyncio.to_thread(dumps_in_parts, data, key)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def http_error(cls: type[web.HTTPException], reason: str, fields: dict[str, Any] | None = None,
               **kwargs: Any) -> web.HTTPException:
    """An HTTP error whose JSON body says why, in the server's ``{"error": ...}`` format, with ``fields`` a
    client acts on beside it.

    Being JSON already, it passes the server's error middleware with its reason intact.
    """
    return cls(text=dumps({"error": reason, **(fields or {})}), content_type="application/json", **kwargs)


STORE_RETRY_S = 30  # how long a client told that the store cannot write waits before sending again


def store_failed(exc: Exception) -> str:
    """What a client hears when the conversation store cannot write (:func:`~dialogues.store.cannot_write`): the
    cause, which a person can act on, and that nothing is lost by sending again."""
    return f"the conversation store cannot write now ({exc}): try again later"


STORE_DAMAGED = "the conversation store is damaged: this cannot be answered until it is restored"


class StoreRefusals:
    """The customers' requests refused because the conversation store cannot write (a full disk, a file made
    read-only, a lock held long), in the log: one line as it begins, and again when its reason changes, then one
    once it writes again, with how many were refused. A line each, thousands a minute on a busy bot, filled a log
    kept on the full disk itself, where most were lost, and nothing said when it had ended."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path  # the store's, to say what to do (:func:`~dialogues.store.unwritable_advice`)
        self.reason: str | None = None  # why the store could not write, while requests are refused
        self.since = 0.0
        self.refused = 0
        self.damaged: str | None = None  # why the store was found damaged, which no wait mends: until a restart

    def said_damaged(self, exc: Exception) -> bool:
        """Whether ``exc`` is the store found damaged (:func:`~dialogues.store.damaged`), said in the log the first
        time with what to do: each message that met a damaged page logged a traceback that said nothing of it, and
        /healthz answered ok."""
        if not damaged(exc):
            return False
        if self.damaged is None:
            self.damaged = str(exc)
            log.error("the conversation store %s is damaged (%s): every request that meets a damaged page fails. %s",
                      self.path, exc, DAMAGED_ADVICE)
        return True

    async def refused_one(self, where: str, exc: Exception) -> None:
        """A request refused at ``where`` (``POST /api/chat``) because the store raised ``exc``. What to do about it is
        found off the event loop: finding it writes to the store's disk, which, failing, may hang the writer for
        seconds, and every customer's request with it."""
        self.refused += 1
        if str(exc) == self.reason:
            return
        if self.reason is None:
            self.since = time.time()
        self.reason = str(exc)  # first: the requests refused while the advice is found are not said again
        advice = await asyncio.to_thread(unwritable_advice, self.path, exc) if self.path is not None else ""
        log.error("%s: the conversation store cannot write: %s (every request that writes is refused until it "
                  "can; said once, and again when it does)%s", where, exc, f": {advice}" if advice else "")

    def mended(self) -> None:
        """Say that the store writes again."""
        if self.reason is not None:
            log.warning("the conversation store writes again: %s", self._count())
            self.reason, self.refused = None, 0

    def stopping(self) -> None:
        """Say, as the server stops, how many requests were refused since the store last failed to write, where no
        line has said it yet (the server's watch says it within seconds of the store writing again): a server stopped
        meanwhile (a restart to mend the disk, a deploy) left no count of the customers it had turned away."""
        if self.reason is not None:
            log.warning("stopping with the conversation store last refusing to write (%s): %s", self.reason,
                        self._count())

    def _count(self) -> str:
        """The requests refused and since when, for the log."""
        return (f"{self.refused} request{'' if self.refused == 1 else 's'} refused since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}")


async def in_time(read: Awaitable[T]) -> T:
    """``read`` of a request's body, cut off after ``BODY_SECONDS`` with 408 and the connection closed (once
    aiohttp's lingering read of the rest, at most 10 s, is over): a client that stops sending halfway, or an
    attacker doing it on purpose, would otherwise hold its connection, and one of the server's open files,
    for as long as it likes."""
    try:
        return await asyncio.wait_for(read, BODY_SECONDS)
    except asyncio.TimeoutError:
        error = http_error(web.HTTPRequestTimeout, f"the request body did not arrive within {BODY_SECONDS:g}s")
        error.force_close()
        raise error from None


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the raw body (:func:`in_time`), answering 413 past ``limit`` bytes.

    aiohttp's ``client_max_size`` is one setting for the whole app, so each channel enforces its
    own limit: on the declared length first, then on what actually arrives (chunked uploads
    declare none).
    """
    too_large = f"body larger than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise http_error(web.HTTPRequestEntityTooLarge, too_large, max_size=limit, actual_size=request.content_length)

    async def read() -> bytes:
        body = bytearray()
        async for chunk in request.content.iter_chunked(16 * 1024):
            body += chunk
            if len(body) > limit:
                raise http_error(web.HTTPRequestEntityTooLarge, too_large, max_size=limit, actual_size=len(body))
        return bytes(body)

    return await in_time(read())


class RecentKeys:
    """Remembers keys for ``ttl`` seconds, at most ``maxlen`` of them.

    Enough to recognise a platform's redelivery (Slack retries up to ~6 minutes later, WeCom within
    15 seconds) without growing without bound.
    """

    def __init__(self, ttl: float = 900.0, maxlen: int = 10_000) -> None:
        self.ttl = ttl
        self.maxlen = maxlen
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._keeping: dict[str, asyncio.Future[None]] = {}  # claimed keys whose message is not yet kept

    def add(self, key: str) -> bool:
        """Record ``key``; return False when it was already seen (a duplicate)."""
        now = time.monotonic()
        # Keys are never re-inserted, so insertion order is time order: the oldest sit at the front.
        while self._seen and (len(self._seen) >= self.maxlen or next(iter(self._seen.values())) < now - self.ttl):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` was recorded within ``ttl`` seconds."""
        return isinstance(key, str) and self._seen.get(key, float("-inf")) >= time.monotonic() - self.ttl

    def forget(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._seen.pop(key, None)

    @asynccontextmanager
    async def claim(self, keys: tuple[str, ...]) -> AsyncIterator[bool]:
        """Whether this delivery of the message known by ``keys`` is the one to keep and answer; the
        block keeps it. A block that raises did not acknowledge it, so its keys are forgotten and the
        platform's next delivery is answered.

        A redelivery that comes while the first is still being kept (Slack sends its first retry
        as soon as three seconds pass, and a store that waits on a lock takes longer) waits for it:
        acknowledged at once, it would be the last delivery, and the message lost if keeping the first
        then failed. Once the first is kept it is a duplicate; if keeping failed, it takes its place."""
        while True:
            fresh = [self.add(key) for key in keys]  # a list: every key recorded
            if all(fresh):
                break
            waiting = {self._keeping[key] for key in keys if key in self._keeping}
            if not waiting:
                yield False
                return
            self.forget(tuple(key for key, new in zip(keys, fresh) if new))
            await asyncio.wait(waiting)
        settled = asyncio.get_running_loop().create_future()
        self._keeping.update(dict.fromkeys(keys, settled))
        try:
            yield True
        except BaseException:
            self.forget(keys)
            raise
        finally:
            for key in keys:
                if self._keeping.get(key) is settled:
                    del self._keeping[key]
            settled.set_result(None)


class BackgroundTasks:
    """Fire-and-forget tasks that close() can still finish.

    The event loop keeps only weak references to tasks, so an unreferenced one can vanish mid-turn;
    this set holds them, logs their failures, and at shutdown waits a grace period, then cancels.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def close(self, grace: float = DEFAULT_GRACE_S) -> None:
        """Let the tasks finish for up to ``grace`` seconds, those they spawn meanwhile included, then
        cancel what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while running := {task for task in self._tasks if not task.done()}:
            if loop.time() >= deadline:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            else:
                await asyncio.wait(running, timeout=deadline - loop.time())


class PlatformChannel(Channel):
    """A channel to a third-party platform (Slack, WeCom) that calls back with signed requests.

    Subclasses name the settings they need (``required``) and the environment variables that
    override them (``env``). Without its secrets the channel is not built at all, so its endpoint
    stays unmounted (404) rather than open unverified.
    """

    env: dict[str, str] = {}
    required: tuple[str, ...] = ()
    platform = ""  # the platform's name, as its admins know it ("Slack")
    paths: tuple[str, ...] = ()  # the paths the platform calls back, which answer 404 while the channel is off

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        resolved = resolve_settings(settings, self.env)
        missing = [key for key in self.required if not resolved.get(key)]
        if missing:
            raise ValueError(f"{self.name} channel needs {', '.join(missing)}")
        super().__init__(bot, resolved)
        self.max_body_bytes = int(resolved.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        self.max_message_chars = int(resolved.get("max_message_chars", DEFAULT_MAX_MESSAGE_CHARS))
        self.language: str = resolved.get("language", "en")  # the bot's, for what the channel itself says
        self._seen = RecentKeys()
        self._tasks = BackgroundTasks()
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._closed = False  # after close(): no session, no send
        self._refusal_said_until = 0.0  # the time.monotonic() until which no refused request is said (REFUSAL_SAID_S)
        # By hint (:meth:`_hint_due`), the conversations told it lately whose customer has written no words since.
        self._hinted: defaultdict[str, RecentKeys] = defaultdict(lambda: RecentKeys(ttl=HINTED_S))

    async def _hint_due(self, conversation_id: str, hint: str) -> bool:
        """Whether to tell ``conversation_id``'s customer the channel's ``hint`` (that the bot reads text alone) for a
        message it cannot answer, and remember it was: not again until they write words (:meth:`_words_came`), or for
        ``HINTED_S``: three screenshots sent one after another were told it three times in a row. Remembered in the
        store, for every server on it (``Store.hint_due``): each server remembered its own, and a customer whose
        pictures reached two servers was told it twice. A store that cannot write now leaves it to this server's
        memory, said in the log, rather than the customer unanswered."""
        store = self.bot.store
        if store is not None:
            try:
                return await self.bot._store(store.hint_due, conversation_id, hint, HINTED_S)
            except sqlite3.Error as exc:
                log.warning("%s: whether %s was told the %s hint lately is decided by this server alone, as the store "
                            "could not say (%s)", self.platform, log_tag(conversation_id), hint, exc)
        return self._hinted[hint].add(conversation_id)

    async def _hold_back(self, request: web.Request, conversation_id: str, text: str,
                         slots: Callable[[], Awaitable[dict[str, Any]]]) -> str | None:
        """:func:`~bot.limits.hold_back` for a message of ``conversation_id``, counted against its limit with the
        messages the store keeps of it from every server on it (``Store.kept_wait``), and its customer told to wait
        once among them (``Store.hint_due``): each server counted its own, and two behind one callback URL let twice
        the limit through, and each told the customer to wait. A store that cannot say leaves both to this server,
        said in the log."""
        from bot.limits import hold_back  # here: bot.limits imports this module

        store = self.bot.store
        if store is None:
            return await hold_back(request, conversation_id, text, self.language, slots)

        async def asked(what: str, ask: Callable[[], Any], otherwise: T) -> T:
            try:
                return await self.bot._store(ask)
            except sqlite3.Error as exc:
                log.warning("%s: %s of %s is left to this server, as the store could not say (%s)", self.platform, what,
                            log_tag(conversation_id), exc)
                return otherwise

        return await hold_back(
            request, conversation_id, text, self.language, slots,
            counted=lambda most, window_s: asked("the count of the messages", lambda: store.kept_wait(
                conversation_id, most, window_s), 0.0),
            told=lambda wait: asked("whether to tell to wait the customer", lambda: store.hint_due(
                conversation_id, SLOWED, wait), True))

    def _words_came(self, conversation_id: str) -> None:
        """Have every hint told again in ``conversation_id`` (:meth:`_hint_due`), whose customer wrote words."""
        for hinted in self._hinted.values():
            hinted.forget((conversation_id,))

    @classmethod
    def from_settings(cls, bot: "Bot", settings: dict[str, Any]) -> "PlatformChannel | None":
        """The channel, or None when none of its secrets is set (the endpoint then stays unmounted). Some set
        and not all is a mistake (a misspelt variable), said at start: the server ran with the channel off,
        its events answered 404 while /healthz said ok."""
        resolved = resolve_settings(settings, cls.env)
        missing = [key for key in cls.required if not resolved.get(key)]
        if len(missing) == len(cls.required):
            return None
        if missing:
            present = [key for key in cls.required if key not in missing]
            raise ProjectError(f"channels.{cls.name}: {', '.join(missing)} not set (bot.yml, or "
                               f"{', '.join(cls.env[key] for key in missing)}) while {', '.join(present)} "
                               f"{'are' if len(present) > 1 else 'is'}: set {'them' if len(missing) > 1 else 'it'}, "
                               "or leave the channel off by setting none")
        try:
            return cls(bot, settings)
        except ValueError as exc:  # a key that cannot be one (WeCom's aes_key): at start, one line, not a traceback
            raise ProjectError(f"channels.{cls.name} (bot.yml, or {', '.join(cls.env.values())}): {exc}") from None

    def start(self) -> None:
        """Check in the background, as ``bot serve`` starts, what only the platform can tell of the settings (its
        token, its API's address); a channel whose platform offers no such check has nothing to do."""

    def say_refused(self, path: str, why: Callable[[], str | None]) -> None:
        """Say in the log why a request signed as the platform signs them was refused (401), once in
        ``REFUSAL_SAID_S`` at most (a flood of forged ones says no more): with a wrong secret or a clock minutes off,
        the platform's check of the callback URL and every message after it got a 401, and the log said nothing of
        why. ``why()`` names the setting to fix, never its value; None says nothing. It is asked only when a line is
        due: Slack's signs the body again, which a flood of forged requests would have had done for each."""
        if time.monotonic() < self._refusal_said_until or (reason := why()) is None:
            return
        self._refusal_said_until = time.monotonic() + REFUSAL_SAID_S
        log.warning("%s's request to %s was refused (401): %s", self.platform, path, reason)

    async def conversation_slots(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's slots, which hold the language it was last answered in and its customer's
        Chinese script; empty when unknown."""
        return (await self.conversation(conversation_id) or {}).get("slots", {})

    async def keep(self, turn: Turn, key: str, within: tuple[int, float] | None = None) -> bool:
        """Keep ``turn`` in the store before its request is acknowledged (see ``Store.receive``); False
        when the store keeps it already: a redelivery, to acknowledge and not to answer twice. ``within``: the
        conversation's limit, counted as it is kept (raises ``OverLimit``)."""
        store = self.bot.store
        if store is None:
            return True
        turn.pending_id = await self.bot._store(store.receive, key, turn.conversation_id, self.name, turn.user,
                                                turn.text, turn.metadata, turn.shown, within)
        return turn.pending_id is not None

    async def keep_within_limit(self, request: web.Request, turn: Turn, key: str, text: str) -> tuple[bool, str | None]:
        """Keep ``turn`` (:meth:`keep`) unless its conversation is over its limit (:meth:`_hold_back`, which reads
        ``text``, the words as the customer sent them): (True, None) once kept, (False, None) for a redelivery, and
        (False, the notice to tell the customer, empty if told already) for a message held back. The store counts the
        limit again in the transaction that keeps the message: two servers that each counted, then kept, both found
        room for the last place. The one that finds it taken meanwhile holds its message back as any other."""
        from bot.limits import LIMITS, MESSAGE_WINDOW_S, refunded_on_error  # here: bot.limits imports this module

        limits = request.app.get(LIMITS)
        most = limits.config.per_conversation_per_minute if limits is not None else 0
        for _ in range(2):  # a second count sees the message the other server kept, and holds this one back
            notice = await self._hold_back(request, turn.conversation_id, text,
                                           lambda: self.conversation_slots(turn.conversation_id))
            if notice is not None:
                return False, notice
            try:
                with refunded_on_error(request, turn.conversation_id):
                    return await self.keep(turn, key, (most, MESSAGE_WINDOW_S) if most else None), None
            except OverLimit:
                continue
        return False, ""  # the room taken again in between: dropped, as a message over the limit is

    async def answer(self, turn: Turn) -> Reply:
        """The bot's reply to a kept turn. Its exchange, logged with every reply, names the reply in the kept
        row in the same transaction, which :meth:`deliver` settles once the platform took it; a turn that
        fails is forgotten, and one that shutdown cuts short (cancelled) stays kept, for the next server to
        answer."""
        try:
            return await self.bot.handle(turn)
        except Exception:
            if turn.pending_id is not None:
                await self.bot._store(self.bot.store.answered, turn.pending_id)
            raise

    def resume(self, turn: Turn) -> None:
        """Answer, in the background and on the platform's API, a kept turn a killed server never answered."""
        raise NotImplementedError

    async def deliver(self, conversation_id: str, turn_id: int | None, sending: Awaitable[None],
                      pending_id: int | None = None) -> None:
        """Send the bot's answer on the platform's API. One the platform refuses or cannot be reached for is
        said in one line and marked undelivered in the transcript, as an agent's reply is: the platform never
        sends an acknowledged message again, so only an agent can still answer it: the conversation is handed
        to one (reason ``undelivered``), which puts it in the agents' inbox. One the platform may have
        posted whole (:class:`MaybeDelivered`, not ``partly``) is taken as sent, with a warning. ``pending_id``, the kept
        message it answers, is settled once the platform took the answer, or once sending it failed (tried
        again at each start, a failure would repeat); only a send cut short (a server killed or stopped
        meanwhile) leaves it for the next server to send (:meth:`redeliver`), twice if the platform had
        taken it in the instant before the kill."""
        store = self.bot.store
        failed: Exception | None = None
        try:
            await sending
        except (Stopping, Withdrawn):  # owed still, the next server to send it; or owed no more
            return
        except Exception as exc:  # not a cancellation
            failed = exc
        if isinstance(failed, MaybeDelivered) and not failed.partly:  # most likely they have it: handed off, unanswered
            log.warning("the answer to %s may not have reached the customer: %s", log_tag(conversation_id), failure(failed))
            failed = None
        elif isinstance(failed, UNDELIVERED):
            log.error("the answer to %s did not reach the customer: %s", log_tag(conversation_id), failure(failed))
        elif failed is not None:
            log.error("the answer to %s could not be sent", log_tag(conversation_id), exc_info=failed)
        if store is None:
            return
        if failed is None or turn_id is None:  # taken, or nothing of the bot's to mark: the kept message is settled
            if pending_id is not None:
                await self.bot._store(store.delivered, pending_id)
        elif await self.bot._store(store.not_delivered, conversation_id, turn_id, pending_id):
            await self.bot.announce(conversation_id, True, "undelivered", self.name)

    def redeliver(self, kept: dict[str, Any]) -> None:
        """Send, in the background, the answer a stopped server logged for a kept message and did not send
        (``Store.adopt``'s ``reply``, ``buttons`` and ``custom``, as the store keeps them)."""
        self._tasks.spawn(self._redeliver(kept))

    async def _redeliver(self, kept: dict[str, Any]) -> None:
        """Send a kept message's owed answer in its language and its customer's script: the conversation's,
        which its words alone do not tell between Taiwan's and Hong Kong's forms (請在後台查看 reads as either)."""
        text, buttons = kept["reply"], kept["buttons"]
        said = text or kept["text"]  # buttons alone are in the customer's language
        script = chinese_script(said, kept_script(await self.conversation_slots(kept["conversation_id"])))
        await self.deliver(kept["conversation_id"], kept["reply_turn"], self.send(
            kept["conversation_id"], text, role="bot", buttons=buttons, custom=kept.get("custom", []),
            parts=parts_of(kept.get("messages", [])), language=mostly_written_in(said), script=script,
            answering=kept["id"]), kept["id"])

    async def still_owed(self, pending_id: int | None) -> bool:
        """Whether the answer to the kept message ``pending_id`` (None: no kept message) is still to go out, checked
        as it is about to: its customer may have deleted the message while it waited (``Store.owed``)."""
        store = self.bot.store
        return pending_id is None or store is None or await self.bot._store(store.owed, pending_id)

    @property
    def session(self) -> aiohttp.ClientSession:
        """One client session for the platform's API, opened on first use (inside the event loop). Once the
        channel is closed there is none: a send queued behind the last ones (a Slack channel's) is cut short
        as a stopping server cuts one (:class:`Stopping`), not sent on a session nothing would close."""
        if self._closed:
            raise Stopping(f"{self.name}: the server is stopping")
        if self._session is None:
            self._session = client_session(
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S))
        return self._session

    async def pause_before_retry(self, seconds: float) -> None:
        """Wait before trying a send again. A server stopping meanwhile cuts the send short (:class:`Stopping`)
        instead of holding its shutdown up."""
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise Stopping(f"{self.name}: the server is stopping")

    async def with_retries(self, what: str, error: type[DeliveryError],
                           attempt: Callable[[], Awaitable[dict[str, Any] | TryAgain]],
                           max_delay: float = float("inf")) -> dict[str, Any]:
        """``attempt``'s result, tried up to ``SEND_ATTEMPTS`` times while it answers :class:`TryAgain` or
        the connection is refused; a wait longer than ``max_delay`` gives up at once. ``error`` says why
        the last try failed."""
        for n in range(1, SEND_ATTEMPTS + 1):
            try:
                outcome = await attempt()
            except aiohttp.ClientConnectorError as exc:
                outcome = TryAgain(str(exc))
            if not isinstance(outcome, TryAgain):
                return outcome
            delay = float(n) if outcome.delay is None else outcome.delay
            if n == SEND_ATTEMPTS or delay > max_delay:
                break
            log.warning("%s: %s; trying again in %gs", what, outcome.why, delay)
            await self.pause_before_retry(delay)
        raise error(f"{what}: {outcome.why} at try {n} of {SEND_ATTEMPTS}")

    def stop(self) -> None:
        """SIGTERM's first step: a send waiting to try again gives up at once (:class:`Stopping`); the sends
        under way go on, on the session, until :meth:`close`."""
        self._stopping.set()

    async def close(self, grace: float = DEFAULT_GRACE_S) -> None:
        self.stop()
        await self._tasks.close(grace)
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
