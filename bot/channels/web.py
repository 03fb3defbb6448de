"""The web chat channel: the JSON API and WebSocket behind the widget (``bot/static/widget.js``).

The widget talks over a WebSocket and falls back to plain HTTP when a proxy blocks it. Both paths go
through :meth:`WebChannel.chat`, so they answer the same. Messages that are not answers (a human
agent's replies, the bot's busy notice) and changes of hands are pushed to the conversation's open sockets
and are always in its history, which the widget polls when it has no socket.

The widget may be embedded on other sites: the origins listed in ``channels.web.origins`` get CORS
headers on the API and may open the socket; any other foreign origin is refused.

The page names its customer (``user``); with ``channels.web.identity_secret`` set, the shop's server vouches for
that name with an HMAC of it (``user_hash``), as hosted chat widgets' identity verification does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from bot.batching import QueueFull
from bot.channels.base import (BY, DEFAULT_GRACE_S, PREDICTIONS, STORE_DAMAGED, Channel, Reply, Turn, http_error, in_time,
                               json_response, load_json, parts_of, readable, resolve_settings, store_failed)
from bot.engine import TURN_STALE_S
from bot.language import LANGUAGES, READABLE, SLOT, Language, Script, kept_script, mostly_written_in, say
from bot.limits import client_address, count_message, count_request, retry_after, trusted
from bot.log_format import names_conversation
from bot.project import AGENT_NAME_PATTERN, VERIFIED_USER, first_error, in_own_words, seen_only
from dialogues.disk import cannot_write
from dialogues.redact import filled_in
from dialogues.store import Marks, Store, log_tag

if TYPE_CHECKING:  # bot.openapi reads this module's models
    from bot.openapi import ErrorCode

# Any channel's conversation id, as the admin API names it. The platforms' ids are ``name:…``:
# ``slack:{team}:{channel}:{thread}``, and ``wecom:{corp}:{userid}``, where a WeCom userid may hold ``@``.
# Never dots alone: "." and ".." in a path are the URL's own segments, and no client could reach that conversation.
ConversationId = Annotated[str, Field(min_length=1, max_length=128,
                                      pattern=r"^[A-Za-z0-9_.:@\-]*[A-Za-z0-9_:@\-][A-Za-z0-9_.:@\-]*$")]
# A web client's own id has no ``:``, so that no browser can name, read or write another channel's conversation.
WebConversationId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLOSE_WAIT_S = 2.0  # for a browser to answer a socket's close; one answers at once
# The code a socket is closed with by a server that is not ready (/healthz answers 503), and by one stopping: the
# widget connects again, after a pause of its own, through the load balancer, which sends it to a server that is ready.
RECONNECT_ELSEWHERE = WSCloseCode.TRY_AGAIN_LATER
STOPPING = WSCloseCode.SERVICE_RESTART
NOT_READY = b"this server is not ready: connect again"  # RECONNECT_ELSEWHERE's reason
SEND_WAIT_S = 5.0  # for a socket to take a push: a tab that stopped reading is cut, not waited on by everyone
MAX_JOINED = 16  # conversations one socket hears at once (a widget is in one, and starts a new one now and then)
IDENTITY_ENV = {"identity_secret": "DESKBOT_WEB_IDENTITY_SECRET"}
# Shorter, `bot serve` says it can be found: a signed-in customer sees their id and its hash, and may try guesses offline.
MIN_IDENTITY_SECRET_CHARS = 32
USER_HASH = r"^[0-9a-fA-F]{64}$"
# A customer's id (``user``) holds no character that shows nothing or moves the text, as an agent's name holds none
# (bot.project.UNSEEN_IN_NAMES): "u-21" and "u-21" with a zero-width space were two customers who looked like one to
# their agents, and `bot purge --user u-21` left the other's conversations. Blank (none) matches.
USER_ID = AGENT_NAME_PATTERN
# A history read's customer, as the widget sends it: in headers, which no proxy or access log keeps, as they keep a URL.
USER_HEADER, USER_HASH_HEADER = "X-Deskbot-User", "X-Deskbot-User-Hash"
# What an agent looks for in the inbox (``GET /admin/conversations``), in a header for the same reason: in ``?q=``, the
# customers' names, e-mail addresses and order numbers agents typed went into the access logs.
SEARCH_HEADER = "X-Deskbot-Search"
# The conversation a history read names, in a header (``GET /api/conversations/history``): in the path, a visitor's key
# to their conversation went into every proxy's and server's access log on the way.
CONVERSATION_HEADER = "X-Deskbot-Conversation"
NAMED_IN_HEADER = "~"  # an admin path's conversation id that says the header names the conversation
# A web conversation id shorter is said in the log, once an hour at most: whoever has a visitor's id reads their chat,
# and a custom client's short one ("1", an order number) is guessed. The widget's have 40 characters.
SHORT_ID_CHARS = 16
SHORT_ID_WARNING_S = 3600.0
BUSY_RETRY_S = 5  # how long a web client told the model is busy (503: server.inference.max_queue) waits to send again
# How long before the end of server.shutdown_seconds a web message still unanswered is answered 503 (at most half of
# it): aiohttp cut its connection without a word once the grace was over, and the widget had no answer to retry.
CUT_BEFORE_S = 0.5
STOPPING_RETRY_S = 1  # how long a web client told that this server is stopping waits to send again (to another)
BUSY_SAID_S = 60.0  # how often, at most, the log says that web chat messages are refused for the model's queue
# How often, at most, the log says a page of a site channels.web.origins does not list was refused: the widget put on
# a shop's site before its origin was listed showed *Not sent* with nothing in the server's log to say why.
UNLISTED_SAID_S = 60.0
log = logging.getLogger(__name__)


class TurnsFull(Exception):
    """A web chat message refused at its arrival, before its body is read, for ``server.max_web_turns`` others being
    answered already: a flood the server's own CPU cannot take in (HTTP, the turn, the log) piled up in its event loop
    and connections, where the model's queue (``server.inference.max_queue``, :class:`QueueFull`) does not reach."""

    def __init__(self, max_turns: int) -> None:
        super().__init__(f"{max_turns} web chat messages are being answered already")
        self.max_turns = max_turns


# What a page may say of its customer with each message (a user id), flat and small: the store keeps the first
# message's with the conversation's slots.
MetadataValue = (Annotated[str, Field(max_length=256)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool
                 | None)
Metadata = Annotated[dict[Annotated[str, Field(min_length=1, max_length=64)], MetadataValue], Field(max_length=16)]


def said(conversation_id: str, role: str, text: str, turn_id: int | None, author: str | None,
         buttons: list[dict[str, str]] | None) -> dict[str, Any]:
    """The frame that pushes a message outside a turn (an agent's reply, a notice of the bot's) to a socket."""
    return {"type": role, "conversation_id": conversation_id, "reply": text, "turn_id": turn_id, "author": author,
            "buttons": buttons or []}


def with_agent(frame: dict[str, str], agent: str | None) -> dict[str, str]:
    """``frame`` with the name of the agent who has the conversation, if they gave one, for the widget's banner."""
    return {**frame, "agent": agent} if agent else frame


class ConversationRequest(BaseModel):
    # Strict: no field is guessed from another JSON type (a user of 7 is a client's bug to be told
    # about); integers follow JSON Schema's rule instead (JSONInteger).
    model_config = ConfigDict(extra="forbid", strict=True)
    conversation_id: WebConversationId


# A shop whose customers' ids are numbers sends them as its own database gives them ({"user": 17}), as the widget
# takes them: the decimal string is the id, hashed and stored as "17". SQLite's integer range bounds it.
CUSTOMER_ID_INTEGER = {"type": "integer", "minimum": -2**63, "maximum": 2**63 - 1}


def _customer_id(value: Any) -> Any:
    """A customer's id as stored: an integer (JSON Schema's: 17.0 is one) as its decimal string, and a blank one
    ("" or spaces: a page's `user: currentUser || ""` for a visitor) as none, since stored as given it named no
    customer `bot purge --user` could be asked for."""
    if isinstance(value, str):
        return value if value.strip() else None
    if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer()):
        if not CUSTOMER_ID_INTEGER["minimum"] <= value <= CUSTOMER_ID_INTEGER["maximum"]:
            raise PydanticCustomError("user_range", "a numeric user should be within SQLite's integer range")
        return str(int(value))
    return value


def _customer_id_schema(schema: dict[str, Any]) -> None:
    """The published ``user``: a string of the pattern, or an integer (:func:`_customer_id`), or null."""
    schema["pattern"] = USER_ID
    schema["anyOf"].insert(1, CUSTOMER_ID_INTEGER)


class Customer(BaseModel):
    """Who the page says its customer is, and the shop's server's proof of it: sent with each message, with a join,
    and with a history read, since a signed-in customer's conversation is theirs alone (:meth:`WebChannel.proven`)."""

    model_config = ConfigDict(strict=True)
    user: Annotated[str | None, BeforeValidator(_customer_id),
                    AfterValidator(lambda v: v if v is None else seen_only(v, "the customer's id"))] = Field(
        None, max_length=128, json_schema_extra=_customer_id_schema, description=(
            "the shop's own id for its signed-in customer (up to 128 characters, none of them invisible or a control "
            "character, or an integer, taken as its decimal string, as the widget sends a number), stored with each "
            "message for bot purge --user; blank for a visitor"))
    user_hash: str | None = Field(None, pattern=USER_HASH, description=(
        "HMAC-SHA256 of user (its UTF-8 bytes) under channels.web.identity_secret, in hex, computed by the shop's "
        "server: with the secret set, a user without it is refused (403), and so is a conversation a signed-in "
        "customer had without theirs"))


MESSAGE_ID = r"^[A-Za-z0-9_\-]+$"


class WentOn(ConversationRequest):
    """The conversation a page went on from, closed to it as its customer signed in in another tab, and the proof that
    the page was in it: the ``message_id`` of a message it sent there, which no one else knows."""
    message_id: str = Field(..., min_length=1, max_length=64, pattern=MESSAGE_ID)


class ChatRequest(ConversationRequest, Customer):
    # The pattern is published for clients; WebChannel.chat checks it, with an error that says what is wrong.
    text: str = Field(..., min_length=1, json_schema_extra={"pattern": READABLE})
    language: Language | None = Field(None, description=(
        "the page's language: the reply's while the conversation has none yet, as when its first message "
        "has no letter in it (an order number); a message in the other language still gets its own"))
    script: Script | None = Field(None, description=(
        "the page's Chinese script (traditional for zh-TW and zh-Hant, in Taiwan's forms; hongkong for zh-HK and "
        "zh-MO, in Hong Kong's): the Chinese replies' until the customer writes a character of either"))
    metadata: Metadata = Field(default_factory=dict, description=(
        "what the page knows of its customer (a user id), as Rasa's REST channel takes it: custom actions read "
        "it in tracker.latest_message, and the first message's as the slot session_started_metadata; a "
        "customer can change what their page sends, so it proves nothing"))
    message_id: str | None = Field(None, min_length=1, max_length=64, pattern=MESSAGE_ID, description=(
        "the client's own id for this message: sent again with it (the widget's Retry, from any tab) within "
        "ten minutes, while the first is still being answered or after, also to a server restarted since or to "
        "another on the same store, it gets the first one's reply rather than being answered twice"))
    continues: WentOn | None = Field(None, description=(
        "the conversation the page went on from (closed to it as its customer signed in in another tab) and a "
        "message_id the page sent there: kept with this conversation, whose agents see that one among the customer's "
        "other conversations, where what the page still shows from it is; ignored where that conversation holds no "
        "such message"))


# How often a message another server on the store is answering looks for that answer, and how long since that
# server last renewed its claim (every TURN_RENEW_S while it answers, however long; timed here: LeaseWatch) before it
# counts as hung and the message is answered here, well under a proxy's usual 60 s request timeout (one killed is
# seen at once: Store.claim).
CLAIM_POLL_S = 0.2
CLAIM_STALE_S = TURN_STALE_S


class RecentAnswers:
    """The replies to the messages sent with a ``message_id``, by conversation and id, for ``ttl`` seconds and at
    most ``maxlen`` of them: a message whose answer a client lost (a dropped socket) and sends again, from the same
    tab or another, gets its first reply, awaited if still on its way. One that failed is forgotten, to be tried
    anew, and so is one the store no longer keeps (a `bot purge` run in another process erased it): given again from
    memory, the purged reply would outlive the erasure."""

    def __init__(self, ttl: float = 600.0, maxlen: int = 10_000) -> None:
        self.ttl = ttl
        self.maxlen = maxlen
        self._answers: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[dict[str, Any]]]] = OrderedDict()

    async def answer(self, key: tuple[str, str], reply: Callable[[], Awaitable[dict[str, Any]]],
                     kept: Callable[[dict[str, Any]], Awaitable[bool]] | None = None) -> dict[str, Any]:
        """The reply for ``key``: the one given or being given, if ``kept`` says the store still keeps it, else
        ``reply()``'s."""
        now = time.monotonic()
        # Keys are added at the end, so insertion order is time order: the oldest sit at the front.
        while self._answers and next(iter(self._answers.values()))[0] < now - self.ttl:
            self._answers.popitem(last=False)
        while (given := self._answers.get(key)) is not None:
            answered = await asyncio.shield(given[1])
            if kept is None or await kept(answered):
                return answered
            if self._answers.get(key) is given:  # not a later send's, begun meanwhile, which the loop awaits
                del self._answers[key]
        now = time.monotonic()
        while len(self._answers) >= self.maxlen:  # room for this one, not at the cost of the one asked for
            self._answers.popitem(last=False)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())  # awaited by none: no warning
        self._answers[key] = (now, future)
        try:
            answered = await reply()
        except BaseException as exc:
            if self._answers.get(key, (0.0, None))[1] is future:  # not a later send's, begun once this was pushed out
                del self._answers[key]
            # a cancelled first (its server stopping) leaves the others an error of their own to answer
            future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cut off"))
            raise
        future.set_result(answered)
        return answered


class JoinRequest(ConversationRequest, Customer):
    """Sent over the socket to receive a conversation's pushes (agent replies) before saying anything."""


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: a number without a fraction (so 1.0 is one), never a string or a boolean."""
    if isinstance(value, (str, bool)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# Strict mode would refuse 1.0, which the published schema calls an integer; lax mode would take "7" and true.
JSONInteger = Annotated[int, Field(strict=False), BeforeValidator(_json_integer)]
# A turn id for an optional field (``X | None``), its bounds inside its type: given beside the None, pydantic
# publishes them as "ge" and "le", which JSON Schema does not know, and a client may send -1.
TurnIdOrZero = Annotated[int, Field(strict=False, ge=0, le=2**63 - 1), BeforeValidator(_json_integer)]


class FeedbackRequest(ConversationRequest, Customer):
    """A vote names its conversation too: a client may rate only the replies of a conversation it holds (a
    signed-in customer's with their proof)."""

    turn_id: JSONInteger = Field(..., ge=1, le=2**63 - 1, description="a bot reply's turn_id (SQLite's integer range)")
    value: JSONInteger = Field(..., ge=-1, le=1, description="1 thumbs up, -1 thumbs down")
    comment: str | None = Field(None, max_length=2000)


SOCKET_MESSAGES: dict[str, type[ConversationRequest]] = {"message": ChatRequest, "join": JoinRequest}


def error_message(exc: ValidationError | ValueError) -> str:
    """One line naming the field at fault, for the ``{"error": ...}`` body."""
    if isinstance(exc, ValidationError):
        err = first_error(exc)
        if err["type"] == "json_invalid":
            return "body: malformed JSON"
        field = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{field}: {'unknown field' if err['type'] == 'extra_forbidden' else in_own_words(err)}"
    return str(exc)


def error_code(exc: ValidationError | ValueError) -> dict[str, str]:
    """The ``code`` of a refused ``text`` (ErrorResponse's): ``text_too_long`` over its limit, ``text_invalid`` with
    nothing to read (empty, spaces or zero-width characters alone), for a client to say in its reader's language,
    where the English message alone was shown in a Chinese console, and the widget said *Not sent* alone. A
    :class:`Refused`'s own code, where it has one; none for another field's error."""
    if not isinstance(exc, ValidationError):
        return {"code": exc.code} if isinstance(exc, Refused) and exc.code else {}
    err = first_error(exc)
    if tuple(err["loc"]) != ("text",) or err["type"] in ("missing", "string_type", "extra_forbidden"):
        return {}
    return {"code": "text_too_long" if err["type"] == "string_too_long" else "text_invalid"}


def bad_request(exc: ValidationError | ValueError) -> web.HTTPException:
    return http_error(web.HTTPBadRequest, error_message(exc), error_code(exc))


_HALVES = re.compile("[\ud800-\udfff]")


def whole_characters(data: Any) -> Any:
    """A request's parsed JSON with each half of a surrogate pair in its fields (``"\\ud83d"`` alone: JSON can
    carry one, no text can hold it) made U+FFFD, as a browser makes it in what a page sends: a text pasted
    with half an emoji is answered, where it was refused again on every Retry as malformed JSON. Only the
    top level is looked at: the requests' fields are flat, and a deeper value is refused whatever it holds."""
    if not isinstance(data, dict):
        return data
    return {_HALVES.sub("\ufffd", key): _HALVES.sub("\ufffd", value) if isinstance(value, str) else value
            for key, value in data.items()}


async def read_json(request: web.Request, model: type[BaseModel]) -> Any:
    body = await in_time(request.read())
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if first_error(exc)["type"] != "json_invalid":
            raise bad_request(exc) from None
        try:  # Python's parser takes half a surrogate pair, which pydantic's calls malformed
            whole = json.dumps(whole_characters(load_json(body)))
        except (ValueError, RecursionError):  # not JSON for Python either, or too deep to write again
            raise bad_request(exc) from None
    try:
        return model.model_validate_json(whole)
    except ValidationError as exc:
        raise bad_request(exc) from None


def valid_conversation_id(request: web.Request, web_client: bool = False) -> str:
    """The ``{conversation_id}`` of the path, held to the rule of request bodies (else 400): a web
    client's own id for the web API, any channel's for the admin API, where :data:`NAMED_IN_HEADER` in its place names
    the conversation in ``X-Deskbot-Conversation`` instead (as the agents' console does: a URL goes into the access
    logs on the way, and a web visitor's id is the key to their conversation). Put as its tag in what the log quotes
    of the request's failures from here on (:func:`names_conversation`)."""
    named = request.match_info["conversation_id"]
    in_header = None
    if not web_client and (named == NAMED_IN_HEADER or CONVERSATION_HEADER in request.headers):
        in_header = header_conversation_id(request, False)  # refuses a ``~`` without the header too
        if named == NAMED_IN_HEADER:
            names_conversation(in_header)
            return in_header
    try:
        conversation_id = _CONVERSATION_IDS[web_client].validate_python(named)
    except ValidationError as exc:
        raise http_error(web.HTTPBadRequest, f"conversation_id: {in_own_words(exc.errors()[0])}") from None
    if in_header is not None and in_header != conversation_id:
        raise http_error(web.HTTPBadRequest, f"{CONVERSATION_HEADER}: names another conversation than the path")
    names_conversation(conversation_id)
    return conversation_id


_CONVERSATION_IDS: dict[bool, TypeAdapter[str]] = {False: TypeAdapter(ConversationId), True: TypeAdapter(WebConversationId)}


def header_conversation_id(request: web.Request, web_client: bool = True) -> str:
    """The conversation ``X-Deskbot-Conversation`` names, held to the rule of request bodies (else 400): a web client's
    own id for the web API, any channel's for the admin API."""
    try:
        return _CONVERSATION_IDS[web_client].validate_python(request.headers.get(CONVERSATION_HEADER))
    except ValidationError as exc:
        raise http_error(web.HTTPBadRequest, f"{CONVERSATION_HEADER}: {in_own_words(exc.errors()[0])}") from None


class Refused(ValueError):
    """The client's request is at fault (a 400, or a socket's error frame). A ValueError from within the turn
    is the bot's failure, not the request's, and must not be answered as one. ``code``: ErrorResponse's, where the
    refusal has one (a text over the bot's own limit), for a client to say it in its customer's language."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Stopping(Exception):
    """A web message whose answer has not come as this server's ``server.shutdown_seconds`` end (its turn waiting for
    another process holding the store locked, or still running): answered 503 ``stopping`` with ``Retry-After``, or a
    socket's error frame so coded, just before its connection is cut, so that it is sent again, with its ``message_id``, to
    another server. Its turn goes on here meanwhile: an answer it keeps is the one the message sent again gets."""

    def __init__(self) -> None:
        super().__init__("this server is stopping before the message was answered: send it again, with the same "
                         "message_id, and another server answers it")


class AnsweredElsewhere(Exception):
    """A message sent again over a socket (the widget's Retry) that another server on the store is answering still:
    waited for, it held every later message of the socket behind it, for as long as that server took (for one hung,
    until ``CLAIM_STALE_S`` after its last renewal). Its answer comes as a ``sync`` once that server keeps it
    (:meth:`WebChannel._watching`), and the message sent again then gets it."""

    def __init__(self) -> None:
        super().__init__("message_id: another server on the store is answering this message; its answer comes as a "
                         "sync once given, and the message sent again gets it")


class Unverified(Refused):
    """A ``user`` the shop's server did not vouch for (a 403): a forged one, or the page's misconfiguration."""


def customer_of(request: web.Request) -> dict[str, str]:
    """The customer a history read names: ``X-Deskbot-User`` (percent-encoded UTF-8, as ``encodeURIComponent`` writes
    it) and ``X-Deskbot-User-Hash``, over the deprecated ``?user=`` and ``?user_hash=``, which older pages send: a URL
    is kept in proxies' and servers' access logs, and whoever read the hash there could read the customer's chats."""
    said = dict(request.query)
    Customer.model_validate(said)  # held to its rules where the headers stand in for it too
    if (user := percent_decoded(request, USER_HEADER)) is not None:
        said["user"] = user
    if (user_hash := request.headers.get(USER_HASH_HEADER)) is not None:
        said["user_hash"] = user_hash
    return said


def percent_decoded(request: web.Request, name: str) -> str | None:
    """The text of header ``name``, sent percent-encoded UTF-8 (as ``encodeURIComponent`` writes it): a header holds
    Latin-1 alone, and a browser refuses to send a Chinese name or search in one. None when not sent; :class:`Refused`
    when not UTF-8."""
    if (value := request.headers.get(name)) is None:
        return None
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise Refused(f"{name}: not percent-encoded UTF-8") from None


def identity_secret(settings: dict[str, Any]) -> str:
    """``channels.web.identity_secret``, ``DESKBOT_WEB_IDENTITY_SECRET`` over it; "" when neither is set."""
    return (resolve_settings(settings, IDENTITY_ENV).get("identity_secret") or "").strip()


def identity_hash(secret: str, user: str) -> str:
    """What the shop's server gives its page for ``user``: HMAC-SHA256 under ``secret``, in hex."""
    return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()


def read_socket_frame(data: str) -> tuple[str, dict[str, Any]]:
    """A socket frame ``{"type": "message" | "join", ...}``: its type (a frame without one is a message) and
    its other fields, not yet validated, so that an error in them can say which request it refuses."""
    try:
        body = whole_characters(load_json(data))
    except ValueError:
        raise Refused("body: malformed JSON") from None
    if not isinstance(body, dict):
        raise Refused("body: must be a JSON object")
    kind = body.pop("type", "message")
    if not isinstance(kind, str) or kind not in SOCKET_MESSAGES:
        raise Refused(f"type: must be one of {', '.join(SOCKET_MESSAGES)}")
    return kind, body


def too_many_frame(exc: web.HTTPTooManyRequests, request_type: dict[str, str]) -> dict[str, Any]:
    """A socket's error frame for a 429: its reason and when to try again."""
    return {"type": "error", "error": json.loads(exc.text or "{}")["error"], "retry_after": retry_after(exc), **request_type}


def refusal(request: web.Request, exc: Refused, request_type: dict[str, str]) -> dict[str, Any]:
    """A socket's error frame for a refused frame, which costs its address a request as a refused HTTP request
    does (the middleware counts those before any handler): else one socket could send malformed frames without
    end. Past the limit, the 429's frame. With its ``code``, as the same refusal over HTTP has it."""
    try:
        count_request(request)
    except web.HTTPTooManyRequests as too_many:
        return too_many_frame(too_many, request_type)
    return error_frame(str(exc), request_type, error_code(exc).get("code"))


async def frames(ws: web.WebSocketResponse, reading: asyncio.Event) -> AsyncIterator[WSMessage]:
    """``ws``'s frames, as ``async for msg in ws`` gives them, with ``reading`` set while it waits for the next one:
    every frame its client sent has been taken then (aiohttp hands them over in order, without waiting while one is
    there), so that a stopping server closes the socket with none left unanswered (:meth:`WebChannel.close`)."""
    while True:
        reading.set()
        try:
            msg = await ws.receive()
        finally:
            reading.clear()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        yield msg


def error_frame(error: str, request_type: dict[str, str], code: str | None,
                retry_after: int | None = None) -> dict[str, Any]:
    """A socket's error frame: what went wrong in English, and its ``code`` (ErrorResponse's) where it has one, as
    the same failure over HTTP has, for the widget to say it in its customer's language: it said *Not sent* to
    every failure, a full store and a text too long alike. ``retry_after``: the seconds after which a message turned
    away for now (``busy``, ``stopping``) is sent again, as the 503's ``Retry-After`` says over HTTP."""
    return {"type": "error", "error": error, **({"code": code} if code else {}),
            **({"retry_after": retry_after} if retry_after is not None else {}), **request_type}


class WebChannel(Channel):
    """The web chat's API (``/api/chat``, a conversation's history, ``/api/feedback``, ``/api/widget``) and its socket
    (``/api/ws``), which the widget and a shop's own clients use: each message's customer proven (:meth:`proven`),
    then the message answered by the bot (:meth:`chat`), once per ``message_id``; an agent's reply and a change of
    hands pushed to the sockets that joined the conversation."""

    name = "web"
    shows_status = True  # the widget's banner and its "back with the bot" notice

    def __init__(self, bot: Any, settings: dict[str, Any]) -> None:
        super().__init__(bot, settings)
        # Who hears each conversation, and the customer each proved (:meth:`_join`), None for a visitor.
        self.sockets: dict[str, dict[web.WebSocketResponse, str | None]] = defaultdict(dict)
        # Every open socket, joined or not, for close(), with its connection, to cut one that stopped reading.
        self._open: dict[web.WebSocketResponse, asyncio.BaseTransport | None] = {}
        self._reading: dict[web.WebSocketResponse, asyncio.Event] = {}  # each open socket's, as frames() sets it
        self._turns: set[asyncio.Task[None]] = set()  # the sockets' turns in flight, which close() lets finish
        self._sending_away: asyncio.Future[None] | None = None  # the sockets' closing by a server not ready (send_away)
        # Why this server is not ready for a reason of its own, now (None: it is), which the server sets (own_unready)
        self.unready: Callable[[], str | None] = lambda: None
        # Whether the server is stopping (its server.drain_seconds or after), which the server sets
        self.draining: Callable[[], bool] = lambda: False
        self._watcher: asyncio.Task[None] | None = None  # pushes what other servers on the store said (_watching)
        self.max_chars: int = settings.get("max_message_chars", 4000)
        self.origins: set[str] = set(settings.get("origins", []))  # as bot.yml's check wrote them: as browsers send them
        self.identity_secret = identity_secret(settings)
        self.predictions: bool = settings.get("predictions", True)
        self._answers = RecentAnswers()  # by message_id: a message sent again is answered once
        self.min_id_chars: int = settings.get("min_conversation_id_chars", 0)
        self._short_id_said = -SHORT_ID_WARNING_S  # when the log last said a short conversation id came
        self._busy_said = -BUSY_SAID_S  # when the log last said a message was refused for the model's queue
        self._unlisted_said = -UNLISTED_SAID_S  # when the log last said an unlisted site's page was refused
        self.max_turns: int | None = settings.get("max_web_turns")  # server.max_web_turns
        self.turns_in_flight = 0  # web chat messages being answered, over HTTP and the sockets (:meth:`_turn_slot`)
        self._cutting = asyncio.Event()  # set just before server.shutdown_seconds end: the answers not given are Stopping
        self._stopping = False  # set as the stop begins (close()): a message that comes since is Stopping at once

    def routes(self) -> list[web.AbstractRouteDef]:
        api: list[tuple[str, str, Handler]] = [
            ("POST", "/api/chat", self.http_chat),
            ("GET", "/api/conversations/history", self.history),
            ("GET", "/api/conversations/{conversation_id}/history", self.history),
            ("POST", "/api/feedback", self.feedback),
            ("GET", "/api/widget", self.widget_settings),
        ]
        return [
            *(web.route(method, path, self._cors(handler)) for method, path, handler in api),
            *(web.route("OPTIONS", path, self.preflight) for _, path, _ in api),
            web.get("/api/ws", self.websocket),
        ]

    # --- cross-origin embedding ------------------------------------------------------------------

    def _foreign_origin(self, request: web.Request) -> str | None:
        """The request's Origin when it is another site's (None for same-site and non-browser calls). The
        browser's own word, ``Sec-Fetch-Site`` (which no page can set), settles it when sent: behind a proxy
        that rewrites ``Host``, the bot's own page would otherwise count as another site."""
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site")
        if not origin or site == "same-origin" or (site is None and urlsplit(origin).netloc == request.host):
            return None
        return origin

    def _allowed(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        """What lets a page of an allowed site read an answer, and the wait a 429 asks for: a browser lets a
        page read only the headers it is told it may (the server puts these on errors too, the limits' as well)."""
        origin = self._foreign_origin(request)
        if not origin or not self._allowed(origin):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"}

    def _cors(self, handler: Handler) -> Handler:
        """``handler`` with CORS headers on its answers (the server's error middleware adds them to errors)."""

        async def with_cors(request: web.Request) -> web.StreamResponse:
            if request.method not in ("GET", "HEAD"):
                # A form or a no-cors fetch on any site posts here without a preflight: its visitors' browsers
                # would send messages and handoffs the page cannot read the answers to, but that still count.
                self._refuse_unlisted(request)
            response = await handler(request)
            response.headers.update(self.cors_headers(request))
            return response

        return with_cors

    def _refuse_unlisted(self, request: web.Request) -> str | None:
        """403 for a request from a page of a site ``channels.web.origins`` does not list; else the listed
        site's origin, or None for a same-site or non-browser request."""
        origin = self._foreign_origin(request)
        if origin is not None and not self._allowed(origin):
            if time.monotonic() >= self._unlisted_said + UNLISTED_SAID_S:
                self._unlisted_said = time.monotonic()
                log.warning("refused the web chat to a page of %r, a site channels.web.origins does not list: if the "
                            "widget is meant to be there, list the origin in bot.yml and restart bot serve (said "
                            "once a minute at most)", origin[:200])
            raise http_error(web.HTTPForbidden, f"origin not allowed: {origin}; list it in channels.web.origins")
        return origin

    async def preflight(self, request: web.Request) -> web.Response:
        origin = self._refuse_unlisted(request)
        if origin is None:  # only another site's page asks before it sends
            raise http_error(web.HTTPForbidden, "origin not allowed: None; list it in channels.web.origins")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": f"Content-Type, {CONVERSATION_HEADER}, {USER_HEADER}, {USER_HASH_HEADER}",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })

    # --- the API ---------------------------------------------------------------------------------

    def verified_user(self, request: Customer) -> str | None:
        """The request's ``user`` when ``identity_secret`` is set and its ``user_hash`` proves the shop's server
        vouched for it, compared in constant time so that no timing tells a forger how much of a guess was
        right; None without a secret or a user. A user the hash does not prove is refused rather than served as
        a visitor: the page said a customer was signed in, and a wrong secret or a forgery should not pass unseen."""
        if not self.identity_secret or request.user is None:
            return None
        if request.user_hash is None:
            raise Unverified("user_hash: missing: channels.web.identity_secret is set, so a user needs its hash")
        expected = identity_hash(self.identity_secret, request.user)
        if not hmac.compare_digest(expected.encode(), request.user_hash.lower().encode()):
            raise Unverified("user_hash: not the HMAC-SHA256 of user under channels.web.identity_secret")
        return request.user

    def check_id(self, conversation_id: str) -> None:
        """Refused for a conversation id shorter than ``channels.web.min_conversation_id_chars``; one shorter than
        ``SHORT_ID_CHARS`` meanwhile is said in the log (once an hour at most), so that a shop learns its client makes
        ids anyone can guess before it sets the minimum, which would refuse that client's every message."""
        if len(conversation_id) < self.min_id_chars:
            raise Refused(f"conversation_id: at least {self.min_id_chars} characters (channels.web."
                          "min_conversation_id_chars): make it random, as the widget's are")
        if len(conversation_id) < SHORT_ID_CHARS and time.monotonic() >= self._short_id_said + SHORT_ID_WARNING_S:
            self._short_id_said = time.monotonic()
            log.warning("a web client sent a conversation id of %d characters: anyone who guesses it reads that "
                        "conversation; make the client's ids random and set channels.web.min_conversation_id_chars "
                        "(docs/security.md)", len(conversation_id))

    async def proven(self, request: Customer, conversation_id: str) -> str | None:
        """:meth:`verified_user`, refused (Unverified) unless it is the customer a conversation that had a verified
        one last had: a signed-in customer's chat holds their orders and address, and its id alone, which a
        custom client may make guessable, must not let anyone read it, hear it or write in it as them. Every web
        request naming a conversation asks this first, so its id is checked here too (:meth:`check_id`), and put as its
        tag in what the log quotes of the request's failures from here on (:func:`names_conversation`)."""
        names_conversation(conversation_id)
        self.check_id(conversation_id)
        proven = self.verified_user(request)
        conversation = await self.conversation(conversation_id)
        owner = conversation["slots"].get(VERIFIED_USER) if conversation else None
        if owner is not None and owner != proven:
            raise Unverified("conversation_id: a signed-in customer's conversation: send their user and user_hash")
        return proven

    async def chat(self, request: ChatRequest, address: str | None, verified_user: str | None,
                   origin: web.WebSocketResponse | None = None) -> dict[str, Any]:
        """The reply to a message from ``address``, its customer ``verified_user`` as :meth:`proven` found. The
        conversation's other sockets (another tab, or this one reloaded while the answer was on its way, whose
        history could not show the turn yet) are told to fetch the turn."""
        if len(request.text) > self.max_chars:
            raise Refused(f"text: longer than {self.max_chars} characters", "text_too_long")
        if not readable(request.text):
            raise Refused("text: nothing to read (only spaces, control or zero-width characters)", "text_invalid")
        turn = Turn(request.conversation_id, request.text, self.name, request.user, request.metadata,
                    language=request.language, script=request.script, address=address,
                    verified_user=verified_user, message_id=request.message_id)
        if verified_user is not None:  # before the answer: the "handed off" it may raise is theirs alone too
            self._keep_to(request.conversation_id, verified_user)
        reply = await self._answered(turn, wait=origin is None)
        if verified_user is not None:  # and a socket that joined while the answer was on its way
            self._keep_to(request.conversation_id, verified_user)
        if request.continues is not None and self.bot.store is not None:  # the conversation is stored by now
            names_conversation(request.continues.conversation_id)
            await self.bot._store(self.bot.store.went_on, request.conversation_id, request.continues.conversation_id,
                                  request.continues.message_id)
        await self._push(request.conversation_id, {"type": "sync", "conversation_id": request.conversation_id},
                         skip=origin)
        return reply

    async def _answered(self, turn: Turn, wait: bool) -> dict[str, Any]:
        """:meth:`_reply` to ``turn``, once per ``message_id`` on this server (``RecentAnswers``). An HTTP request
        (``wait``) that met a socket's send of the message given up for another server's answer waits for that."""
        if turn.message_id is None:
            return await self._reply(turn, wait)
        while True:
            try:
                return await self._answers.answer((turn.conversation_id, turn.message_id),
                                                  functools.partial(self._reply, turn, wait), self._still_kept)
            except AnsweredElsewhere:
                if not wait:
                    raise

    async def _still_kept(self, answered: dict[str, Any]) -> bool:
        """Whether the store still keeps the message ``answered`` answered (its ``user_turn_id``): a `bot purge` run in
        another process erases it in the store alone, and this server's memory of the reply would give it back."""
        if self.bot.store is None or answered.get("user_turn_id") is None:
            return True
        return await self.bot._look_up(Store.keeps_turn, answered["user_turn_id"])

    async def _reply(self, turn: Turn, wait: bool) -> dict[str, Any]:
        """:meth:`_replying`, or :class:`Stopping` once the server's stop is about to cut the message off (:meth:`close`).
        The turn is not cancelled: its claim's release would wait for the store too, and an answer it keeps is found by
        the message sent again. A message that comes once the stop has begun (on a socket still open) is Stopping at
        once: the stop waits for the turns begun before it alone, and cut this one off unanswered, the widget told
        nothing until it gave up looking for the answer, seconds later, and marked it *Not sent*."""
        if self._stopping:
            raise Stopping()
        replying = asyncio.ensure_future(self._replying(turn, wait))
        cut = asyncio.ensure_future(self._cutting.wait())
        try:
            await asyncio.wait({replying, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
        if not replying.done():
            replying.add_done_callback(lambda done: done.cancelled() or done.exception())  # awaited by none now
            raise Stopping()
        return replying.result()

    async def _replying(self, turn: Turn, wait: bool) -> dict[str, Any]:
        """The bot's reply to ``turn``, as the API gives it: for a message sent again with its ``message_id`` that a
        server before this one answered (the widget's Retry after a deploy), the reply the store kept; for one that
        another server on the store is answering, that server's reply, once kept, if ``wait``, else AnsweredElsewhere
        (a socket's, whose later messages would wait behind it). In flight from the start (:meth:`Bot.in_flight`): its
        claim may wait for another process holding the store locked, and SIGTERM meanwhile waits for its answer."""
        with self.bot.in_flight(turn.conversation_id):
            while (kept := await self._kept_reply(turn)) is None:
                if await self._claimed(turn):
                    try:
                        return (await self.bot.handle(turn, functools.partial(self._holding_claim, turn))).to_json()
                    except BaseException:
                        await self._unclaim(turn)
                        raise
                if not wait:
                    if (kept := await self._kept_reply(turn)) is not None:  # kept since it was looked for: not claimed
                        return kept
                    raise AnsweredElsewhere()
                await asyncio.sleep(CLAIM_POLL_S)
            return kept

    async def _claimed(self, turn: Turn) -> bool:
        """Whether this server may answer ``turn``: no other on the store is answering its ``message_id``, or the one
        that was has stopped, or has not renewed its claim in ``CLAIM_STALE_S`` (hung)."""
        store = self.bot.store
        if turn.message_id is None or store is None:
            return True
        return await self.bot._store(store.claim, turn.conversation_id, turn.message_id,
                                     functools.partial(self.bot.leases.stale, stale_s=CLAIM_STALE_S),
                                     time.time() - self._answers.ttl)

    def _holding_claim(self, turn: Turn, lost: Callable[[], None]) -> contextlib.AbstractAsyncContextManager[None]:
        """Renew this server's claim of ``turn``'s ``message_id`` while it answers (:meth:`Bot.renewing`): a Retry on
        another server waits for an answer that runs long, and answers itself once this server hangs. A claim another
        server took meanwhile (this one's renewals late) gives the rest of the turn up (``lost``), as a turn taken
        over does: that server answers the message, and an action run here after that ran twice. A store that does
        not serve leaves its claims to go stale."""
        store = self.bot.store
        if turn.message_id is None or store is None or store.server is None:
            return contextlib.nullcontext()
        return self.bot.renewing(functools.partial(Store.renew_claim, conversation_id=turn.conversation_id,
                                                   message_id=turn.message_id),
                                 f"claim of message {turn.message_id!r} of conversation {log_tag(turn.conversation_id)}",
                                 lost)

    async def _unclaim(self, turn: Turn) -> None:
        """Let the message be answered when sent again, here or by another server, after its answer failed."""
        if turn.message_id is not None and self.bot.store is not None:
            await self.bot._store(self.bot.store.unclaim, turn.conversation_id, turn.message_id)

    async def _kept_reply(self, turn: Turn) -> dict[str, Any] | None:
        """The reply the store kept to ``turn``'s ``message_id`` within the ten minutes a client may send it again
        (``RecentAnswers.ttl``), in the conversation's language (a bilingual bot's slot), else the one it is written
        in, and the customer's script; None if none. What the store redacted in it is put back from the message sent
        again where that settles it (:func:`filled_in`): the customer sees what they wrote, as the first reply showed it."""
        if turn.message_id is None or self.bot.store is None:
            return None
        # on the look-ups' connection: asked before every widget message is answered, it would wait behind the turns
        # the store's one thread writes, and hold them up
        kept = await self.bot._look_up(Store.answer_to, turn.conversation_id, turn.message_id,
                                    time.time() - self._answers.ttl)
        if kept is None:
            return None
        kept |= filled_in({key: kept[key] for key in ("text", "buttons", "custom", "messages")}, turn.text)
        slot = kept["slots"].get(SLOT)  # an action may have set it to anything
        return Reply(kept["text"], kept["intent"], kept["confidence"], kept["source"], kept["buttons"], kept["ranking"],
                     kept["turn_id"], handed_off=kept["source"] in ("handoff", "silent"),
                     language=slot if slot in LANGUAGES else mostly_written_in(kept["text"]),
                     script=kept_script(kept["slots"]), user_turn_id=kept["user_turn_id"], custom=kept["custom"],
                     parts=parts_of(kept["messages"])).to_json()

    def _shown(self, reply: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """The reply as ``request``'s client may see it: without what the model made of the message (its intent,
        confidence and ranking) unless ``predictions`` is on or the client has the admin token. They name the bot's
        intents and how sure it was of each, which lets anyone map what it knows and probe for what gets past it."""
        if self.predictions or trusted(request):
            return reply
        return {key: value for key, value in reply.items() if key not in PREDICTIONS}

    async def _answer(self, ws: web.WebSocketResponse, body: ChatRequest, request: web.Request,
                      verified_user: str | None) -> None:
        """A socket's turn, as one task that :meth:`close` can let finish: the answer and its sending, or, where the stop
        comes first, the error frame that has the widget send it again (:class:`Stopping`), before the socket closes.
        That frame names the message's ``message_id``: a client that sent several before their answers tells which
        to send again by it, not by their order alone."""
        try:
            reply = await self.chat(body, client_address(request), verified_user, origin=ws)
        except Stopping as exc:
            sent = {"message_id": body.message_id} if body.message_id is not None else {}
            await ws.send_json(error_frame(str(exc), {"request": "message", **sent}, "stopping", STOPPING_RETRY_S))
            return
        await ws.send_json({"type": "reply", **self._shown(reply, request)})

    def _refuse_when_full(self) -> None:
        """:class:`TurnsFull`, counted busy in /metrics, where ``server.max_web_turns`` messages are being answered."""
        if self.max_turns is not None and self.turns_in_flight >= self.max_turns:
            self.bot.metrics.reply(self.name, "none", "busy", 0.0)
            raise TurnsFull(self.max_turns)

    @contextlib.contextmanager
    def _turn_slot(self) -> Iterator[None]:
        """Count a web chat message as being answered while the block runs; :class:`TurnsFull` at once, nothing of it
        kept, where ``server.max_web_turns`` are already (:meth:`_refuse_when_full`)."""
        self._refuse_when_full()
        self.turns_in_flight += 1
        try:
            yield
        finally:
            self.turns_in_flight -= 1

    async def http_chat(self, request: web.Request) -> web.Response:
        """``POST /api/chat``: the reply to a customer's message, as the client may see it (:meth:`_shown`)."""
        try:
            self._refuse_when_full()  # before the body is read: a rush is refused for little of the server's CPU
            # counted once the body has come: a client sending it slowly (up to BODY_SECONDS) held a place meanwhile,
            # and a few addresses sending bodies that never end turned every customer away
            body = await read_json(request, ChatRequest)
            with self._turn_slot():
                count_message(request, body.conversation_id)
                verified_user = await self._proven_over_http(body, body.conversation_id)
                try:
                    reply = await self.chat(body, client_address(request), verified_user)
                except Refused as exc:
                    raise bad_request(exc) from None
        except (QueueFull, TurnsFull) as exc:
            raise http_error(web.HTTPServiceUnavailable, self.busy(exc), {"code": "busy"},
                             headers={"Retry-After": str(BUSY_RETRY_S)}) from None
        except Stopping as exc:  # another server answers it: no busy bot, which the widget would tell its customer
            raise http_error(web.HTTPServiceUnavailable, str(exc), {"code": "stopping"},
                             headers={"Retry-After": str(STOPPING_RETRY_S)}) from None
        return json_response(self._shown(reply, request))

    def busy(self, exc: QueueFull | TurnsFull) -> str:
        """What a web client hears when its message is refused for the model's full queue (:class:`QueueFull`) or for
        the messages being answered (:class:`TurnsFull`), said in the log once in ``BUSY_SAID_S`` at most: messages
        come faster than the bot answers them, and the one on call needs to know that customers are being turned
        away."""
        if time.monotonic() >= self._busy_said + BUSY_SAID_S:
            self._busy_said = time.monotonic()
            if isinstance(exc, TurnsFull):
                log.warning("web chat messages answered 503: %d are being answered already (server.max_web_turns); "
                            "they come faster than the server takes them in (bench/SERVE.md)", exc.max_turns)
            else:
                log.warning("web chat messages answered 503: %d wait for the model already "
                            "(server.inference.max_queue); they come faster than it answers them (bench/SERVE.md)",
                            exc.max_queue)
        return f"the bot is busy: {exc}; send the message again in {BUSY_RETRY_S}s"

    async def _proven_over_http(self, customer: Customer, conversation_id: str) -> str | None:
        """:meth:`proven`, refused as an HTTP request is: 403 for another customer than the conversation's, 400 for a
        conversation id refused."""
        try:
            return await self.proven(customer, conversation_id)
        except Unverified as exc:
            raise http_error(web.HTTPForbidden, str(exc)) from None
        except Refused as exc:
            raise bad_request(exc) from None

    async def _status(self, conversation_id: str) -> dict[str, str]:
        """The conversation's ``status``, and the ``agent`` who has it, if handed off to one who gave their name:
        the widget's banner names them after a reload as it did when they took over (:meth:`status_changed`). Read on
        the look-ups' connection (:meth:`conversation`): on the store's thread, each join and history read waited
        behind the turns it writes."""
        conversation = await self.conversation(conversation_id)
        status = str(conversation["status"]) if conversation else "open"
        agent = await self.bot._look_up(Store.holder, conversation_id) if conversation and status == "handed_off" \
            else None
        return with_agent({"status": status}, agent)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One socket per widget; it may carry several conversations over its life. None is taken while the server
        drains (``server.drain_seconds``): one taken then was closed (1012) as the port closed, seconds later, and its
        widget connected a second time; refused before the handshake, 503 ``stopping`` with ``Retry-After`` as a load
        balancer reads it, the widget connects again a second later, through the balancer, to another server."""
        self._refuse_unlisted(request)
        if self.draining():
            raise http_error(web.HTTPServiceUnavailable, "this server is stopping: connect again, to another",
                             {"code": "stopping"}, headers={"Retry-After": str(STOPPING_RETRY_S)})
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.settings.get("max_body_bytes", 65536),
                                   timeout=CLOSE_WAIT_S)
        try:
            await ws.prepare(request)
        except UnicodeEncodeError:  # aiohttp quotes a handshake header it refuses, and fails on one not UTF-8
            raise http_error(web.HTTPBadRequest, "not a WebSocket handshake: a header is not UTF-8") from None
        if self.unready() is not None:  # as send_away: the widget connects again, through the balancer, elsewhere
            await ws.close(code=RECONNECT_ELSEWHERE, message=NOT_READY)
            return ws
        joined: OrderedDict[str, None] = OrderedDict()  # the conversations this socket hears, the latest last
        self._open[ws] = request.transport
        reading = self._reading[ws] = asyncio.Event()
        self._watch()
        try:
            async for msg in frames(ws, reading):
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                # A refused join is said as such: a client answers its messages' errors in order, and the
                # join's must not be taken for the next message's.
                request_type: dict[str, str] = {}
                try:
                    if msg.type == WSMsgType.BINARY:  # said, or the client would wait for an answer that never comes
                        raise Refused("frame: send JSON in a text frame")
                    kind, fields = read_socket_frame(msg.data)
                    request_type = {"request": kind}
                    try:
                        body = SOCKET_MESSAGES[kind].model_validate(fields)
                    except ValidationError as exc:  # the frame's own fault; one raised within the turn is the bot's
                        raise Refused(error_message(exc), error_code(exc).get("code")) from None
                    cid = body.conversation_id
                    # before the join: a signed-in customer's pushes are theirs alone
                    verified_user = await self._proven_on(ws, joined, body, cid)
                    self._join(ws, joined, cid, verified_user)  # else first: a refused message must not leave the widget deaf to its agent
                    if isinstance(body, ChatRequest):
                        with self._turn_slot():
                            count_message(request, cid, over_socket=True)
                            turn = asyncio.create_task(self._answer(ws, body, request, verified_user))
                            self._turns.add(turn)
                            turn.add_done_callback(self._turns.discard)
                            await turn
                    else:  # a join's status costs a store read: it counts against the address as a request does
                        count_request(request)
                        await ws.send_json({"type": "status", "conversation_id": cid, **await self._status(cid)})
                except Refused as exc:  # counted as a request: a flood of refused frames meets the limit too
                    await ws.send_json(refusal(request, exc, request_type))
                except AnsweredElsewhere as exc:  # the server has the message: the client waits for its sync
                    await ws.send_json({"type": "error", "error": str(exc), "answered_elsewhere": True, **request_type})
                except ConnectionError:  # closed or cut meanwhile (shutdown, a lost network): the history has the reply
                    break
                except web.HTTPTooManyRequests as exc:
                    await ws.send_json(too_many_frame(exc, request_type))
                except (QueueFull, TurnsFull) as exc:  # its code says its retry_after is no rate limit's
                    await ws.send_json(error_frame(self.busy(exc), request_type, "busy", BUSY_RETRY_S))
                except Exception as exc:  # as the HTTP path's middleware does: log it, answer, keep the socket
                    if cannot_write(exc):  # no retry_after, the rate limit's: the widget says the customer sent too fast
                        await self.bot.refusals.refused_one("a web chat turn on the socket", exc)
                        await ws.send_json(error_frame(store_failed(exc), request_type, "store_unwritable"))
                    elif self.bot.refusals.said_damaged(exc):
                        await ws.send_json(error_frame(STORE_DAMAGED, request_type, "store_damaged"))
                    else:
                        log.exception("web chat turn failed on the socket")
                        await ws.send_json(error_frame("internal error", request_type, "internal"))
        finally:
            self._open.pop(ws, None)
            self._reading.pop(ws, None)
            reading.set()  # ended: nothing of it is left to take, which a stop may be waiting for (_read_to_the_end)
            for cid in joined:
                self._leave(ws, cid)
        return ws

    def _join(self, ws: web.WebSocketResponse, joined: OrderedDict[str, None], conversation_id: str,
              customer: str | None) -> None:
        """Let ``ws``, which proved ``customer`` (None: a visitor), hear ``conversation_id``; past ``MAX_JOINED``, it
        stops hearing the one it used longest ago (a widget speaks in one at a time), so that one socket cannot hold
        any number."""
        joined[conversation_id] = None
        joined.move_to_end(conversation_id)
        self.sockets[conversation_id][ws] = customer
        if len(joined) > MAX_JOINED:
            self._leave(ws, joined.popitem(last=False)[0])

    async def _proven_on(self, ws: web.WebSocketResponse, joined: OrderedDict[str, None], customer: Customer,
                         conversation_id: str) -> str | None:
        """:meth:`proven` for a frame of ``ws``; refused, ``ws`` stops hearing the conversation: it now names someone
        else than the customer it joined it as (a page that signed them out with ``Deskbot.identify({})``, not
        ``Deskbot.reset()``), and went on hearing their agent's replies on the device the next customer uses."""
        try:
            return await self.proven(customer, conversation_id)
        except Unverified:
            if conversation_id in joined:
                del joined[conversation_id]
                self._leave(ws, conversation_id)
            raise

    def _keep_to(self, conversation_id: str, customer: str) -> None:
        """Stop the sockets that did not prove ``customer`` hearing ``conversation_id``, which a message of theirs has
        made theirs alone (:meth:`proven`), from the moment it comes in: one that joined it while it was a visitor's, with its id alone, went
        on hearing their agent's replies, which its join would now be refused."""
        hearing = self.sockets.get(conversation_id, {})
        for ws in [ws for ws, proved in hearing.items() if proved != customer]:
            self._leave(ws, conversation_id)

    def _leave(self, ws: web.WebSocketResponse, conversation_id: str) -> None:
        self.sockets[conversation_id].pop(ws, None)
        if not self.sockets[conversation_id]:
            del self.sockets[conversation_id]

    async def history(self, request: web.Request) -> web.Response:
        """The conversation's turns and status; one a signed-in customer had, for their user and user_hash alone
        (403), in headers (:func:`customer_of`). The conversation named in ``X-Deskbot-Conversation``, or in the
        path (``/api/conversations/{conversation_id}/history``, which access logs keep, as older pages read it)."""
        if "conversation_id" in request.match_info:
            cid = valid_conversation_id(request, web_client=True)
        else:
            cid = header_conversation_id(request)
        try:
            customer = Customer.model_validate(customer_of(request))
        except (ValidationError, Refused) as exc:
            raise bad_request(exc) from None
        await self._proven_over_http(customer, cid)
        turns = await self.bot._look_up(Store.history, cid) if self.bot.store else []  # as _status reads
        return json_response({"conversation_id": cid, **await self._status(cid), "turns": turns})

    async def feedback(self, request: web.Request) -> web.Response:
        body = await read_json(request, FeedbackRequest)
        await self._proven_over_http(body, body.conversation_id)
        try:
            await self.bot._store(self.bot.store.add_feedback, body.conversation_id, body.turn_id, body.value,
                                  body.comment)
        except KeyError:
            raise http_error(web.HTTPNotFound,
                             f"turn_id: no bot turn {body.turn_id} in conversation {body.conversation_id}") from None
        return json_response({"ok": True})

    async def widget_settings(self, request: web.Request) -> web.Response:
        """What the widget shows unless its embedding page says otherwise (the title and language), and the
        longest message it may send and what a message must hold, which a customer is told before sending
        instead of after, and what a customer's id must hold, which the widget leaves out rather than have
        every message refused."""
        title = self.settings.get("title")
        # The Chinese title in Traditional characters, for a page in them, as the rest of the widget is: in
        # Taiwan's forms (zh-TW), and in Hong Kong's for a zh-HK or zh-MO page (衞生 for 衛生).
        chinese = title and self.bot.config.language != "en"
        traditional, hong_kong = (say(title, "zh", script=script) if chinese else None
                                  for script in ("traditional", "hongkong"))
        return json_response({"title": title, "title_traditional": traditional, "title_hongkong": hong_kong,
                              "language": self.bot.config.language, "max_message_chars": self.max_chars,
                              "readable": READABLE, "user_id": USER_ID})

    # --- the output side -------------------------------------------------------------------------

    async def _push(self, conversation_id: str, message: dict[str, Any],
                    skip: web.WebSocketResponse | None = None) -> None:
        """Send to the conversation's open sockets (but ``skip``); one closing meanwhile is skipped, and one
        that has stopped reading is cut (the history keeps the message for its tab's next connect)."""
        for ws in list(self.sockets.get(conversation_id, ())):
            if not ws.closed and ws is not skip:
                try:
                    await asyncio.wait_for(ws.send_json(message), SEND_WAIT_S)
                except (ConnectionError, asyncio.TimeoutError):
                    self._cut(ws)

    def _cut(self, ws: web.WebSocketResponse) -> None:
        if (transport := self._open.get(ws)) is not None:
            transport.abort()

    async def _keep_to_owner(self, conversation_id: str) -> None:
        """Stop the sockets that did not prove the conversation's signed-in customer hearing it, before what is said in
        it is pushed: the message that made it theirs may have come to another server on the store, whose
        :meth:`_keep_to` reaches that server's sockets alone. A store read only where a socket here hears it."""
        if conversation_id not in self.sockets:
            return
        conversation = await self.conversation(conversation_id)
        if conversation is not None and (owner := conversation["slots"].get(VERIFIED_USER)) is not None:
            self._keep_to(conversation_id, owner)

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        await self._keep_to_owner(conversation_id)
        await self._push(conversation_id, said(conversation_id, kwargs.get("role", "agent"), text, kwargs.get("turn_id"),
                                               kwargs.get("author"), kwargs.get("buttons")))

    async def status_changed(self, conversation_id: str, status: str, by: str, agent: str | None = None) -> None:
        await self._keep_to_owner(conversation_id)
        await self._push(conversation_id, with_agent({"type": "status", "conversation_id": conversation_id,
                                                      "status": status, "by": by}, agent))

    def _watch(self) -> None:
        """Begin :meth:`_watching`, once, where the server serves a store other servers may share."""
        if self._watcher is None and self.bot.store is not None and self.bot.store.server is not None:
            self._watcher = asyncio.create_task(self._watching())

    async def _watching(self) -> None:
        """Push to this server's sockets what another server on the store said in their conversations, every
        ``server.peers_seconds`` (read at start, as ``server:`` is): each server pushes what it says to its own sockets
        alone, and a customer whose socket a load
        balancer put on another server than the agent's heard their reply only at their next reload or message. An
        agent's reply or a notice of the bot's goes as its own frame; a customer's message and its answer (another
        tab's), a handoff, a handback or a takeover as a ``sync``, which has the widget read the history."""
        marks: Marks | None = None
        failing = False
        every = self.bot.config.server.peers_seconds
        while True:
            try:
                turns, changed, marks = await self.bot._look_up(Store.said_elsewhere, list(self.sockets), marks,
                                                                self.bot.store.server)
                await self._push_said(turns, changed)
            except Exception as exc:  # the store's trouble is said where the customers' requests meet it; once here
                if not failing:
                    log.warning("cannot pass on what other servers on the store said to this one's web chat sockets: %r",
                                exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(every)

    async def _push_said(self, turns: list[dict[str, Any]], changed: dict[str, dict[str, Any]]) -> None:
        """Push the ``status`` of the conversations whose hands ``changed``, as the server that changed them pushed it
        to its own sockets, and ``turns`` (an agent's reply or a notice of the bot's as its own frame), then a ``sync``
        to every conversation with news (:meth:`_watching`): the history says who has the customer now, which an
        agent's named reply may have changed with no handoff written."""
        news: dict[str, list[dict[str, Any]]] = {  # by conversation, its frames
            cid: [with_agent({"type": "status", "conversation_id": cid, "status": hands["status"],
                              "by": BY.get(hands["reason"], "bot")}, hands["agent"])]
            for cid, hands in changed.items()}
        for turn in turns:
            frames = news.setdefault(cid := turn["conversation_id"], [])
            if turn["role"] == "agent" or (turn["role"] == "bot" and turn["notice"]):
                frames.append(said(cid, turn["role"], turn["text"], turn["id"], turn["author"], turn["buttons"]))
        for cid, frames in news.items():
            await self._keep_to_owner(cid)
            for frame in frames:
                await self._push(cid, frame)
            await self._push(cid, {"type": "sync", "conversation_id": cid})

    async def close(self, grace: float = DEFAULT_GRACE_S) -> None:
        """At shutdown: the web messages still unanswered just before ``grace`` ends are answered :class:`Stopping`
        (HTTP requests and sockets alike), then the sockets close. Those that come meanwhile are Stopping at once, and
        so are those a socket's client sent behind its turn, unread as it ran (:meth:`_read_to_the_end`)."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        loop.call_later(grace - min(CUT_BEFORE_S, grace / 2), self._cutting.set)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._turns:
            await asyncio.wait(set(self._turns), timeout=grace)
        await self._read_to_the_end(deadline - loop.time())
        if self._sending_away is not None:
            await asyncio.gather(self._sending_away, return_exceptions=True)
        await self._close_sockets(code=STOPPING, message=b"this server is stopping: connect again")

    async def _read_to_the_end(self, timeout: float) -> None:
        """Wait, up to ``timeout`` seconds, until each open socket has taken every frame its client sent
        (:func:`frames`): the messages sent behind a turn, unread while it ran, are each answered Stopping, as one sent
        once the stop began is, before the socket closes. Closed at once, a socket dropped them without a word, and only the widget
        sent them again."""
        async def read(reading: asyncio.Event) -> None:
            while not reading.is_set():  # set, then cleared again for the next frame before this ran
                await reading.wait()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await asyncio.gather(*(read(reading) for reading in list(self._reading.values())))

    async def _close_sockets(self, **close: Any) -> None:
        """Close every open socket with ``close`` (``ws.close``'s code and message). All at once: each waits up to
        CLOSE_WAIT_S for the browser's answer, and one that never answers (a frozen tab) must not hold the others
        up. A client that stopped reading holds its close up for good, as it waits to send what is queued first:
        such a socket is cut."""
        async def closed(ws: web.WebSocketResponse) -> None:
            try:
                await asyncio.wait_for(ws.close(**close), 2 * CLOSE_WAIT_S)
            except asyncio.TimeoutError:
                self._cut(ws)

        await asyncio.gather(*(closed(ws) for ws in list(self._open)), return_exceptions=True)

    def send_away(self) -> None:
        """Close the open sockets with ``RECONNECT_ELSEWHERE``, as this server answers /healthz with a 503: the load
        balancer sends no new customers here, and those connected, whose sockets stayed, were left on a server that
        cannot answer them (a store that cannot write, renewals that fail). The widget connects again, each after a
        pause of its own, and reaches a ready server. One sending off at a time: the probes meanwhile add none."""
        if self._sending_away is None or self._sending_away.done():
            self._sending_away = asyncio.ensure_future(self._close_sockets(code=RECONNECT_ELSEWHERE, message=NOT_READY))
