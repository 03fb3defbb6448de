"""What one client may ask of a deskbot that faces the public internet.

One noisy client (a script, a stuck widget, an attacker) must not slow the bot down for everyone
else, so every request passes :meth:`Limits.middleware`:

* a body whose declared ``Content-Length`` is over ``server.max_body_bytes`` is refused with 413
  before it is read (a chunked body without a length is cut by aiohttp's ``client_max_size``), but a
  platform's callback, which its channel reads to its own limit (a Slack event is larger);
* requests from one IP address are counted in a moving one-minute window (the ``limits``
  library's), and the one over ``server.limits.per_ip_per_minute`` gets 429 with ``Retry-After``;
* requests from one IP address refused 401 for a wrong ``Authorization`` token (admin, agent, metrics) are counted
  apart (``failed_auth_per_ip_per_minute``): past it, every request from that address with a token gets 429 before
  its token is compared, a right one too (else its answer would tell a guess right), so an address guesses the
  agents' console sign-in some ten times a minute, not ``per_ip_per_minute``;
* connections open at once from one IP address are capped as they open (``connections_per_ip``), but a trusted
  proxy's, which carry many clients': each holds a file descriptor, held ``keepalive_seconds`` without a byte sent;
  and a connection whose client reads nothing of its answers for ``SEND_SECONDS`` is cut;
* WebSocket connections open at once from one IP address are capped the same way, and those open from all
  addresses together (``websockets``, half the open-file limit unless set): each holds a file descriptor, and
  many addresses together could otherwise take every one the process may open, its store and models' included;
* web conversations handed to a person from one IP address are counted in a moving window of
  ``handoff_window_minutes`` (:meth:`Limits.handoff_wait`, asked by the engine as it hands one off): past
  ``handoffs_per_ip`` the customer is told to try later, and no agent is called, as each new conversation id
  with "/handoff" put another customer in the agents' inbox and sent another ``notify_url`` notice;
* web conversations opened from one IP address are counted the same way, in ``conversation_window_minutes``
  (:meth:`Limits.new_conversation`, asked by the engine as a conversation's first message comes): past
  ``conversations_per_ip`` the message gets 429, as each new conversation id is new rows in the store, and
  one address could otherwise fill the disk while keeping under the per-request limit.

Messages are also counted per conversation (:func:`count_message`, called by the web channel for
both HTTP and WebSocket messages), so one conversation cannot flood the model or the store, and a web chat
message is counted against its address too, whatever its conversation (``messages_per_ip_per_minute``): each
is a model call and a store write, and one address spreading its messages over the conversations it has open
could otherwise send its whole request share as messages, many times one conversation's.

Slack and WeCom callbacks are exempt from the per-IP count: they come from a platform's few
addresses on behalf of all its users, and their signatures already prove who sent them. So only
those of the channels configured are, at their exact paths, and a callback refused as its client's
fault (a 4xx: its signature does not prove it, or it is malformed or too large to be checked) counts
against its address after all, which past the limit is refused 429. Their
messages still count per conversation (:func:`hold_back`), but a platform cannot be answered 429:
Slack would retry, WeCom would retry and then show an error. So the callback is acknowledged as
usual, the message never reaches the model, and the user is told once to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from limits import RateLimitItem, RateLimitItemPerMinute
from limits import __version__ as limits_version
from limits.storage import MemoryStorage
from limits.storage import memory as limits_memory
from limits.strategies import MovingWindowRateLimiter

from bot.channels.base import dumps, http_error
from bot.language import SLOT, Language, Script, chinese_script, kept_script, say, turn_language
from bot.log_format import Verbatim
from bot.project import LimitsConfig
from dialogues.store import address_tag, log_tag

MESSAGE_WINDOW_S = 60.0  # the moving window per_conversation_per_minute counts in
HEALTH = "/healthz"  # a load balancer's probes, never counted
SOCKET_RETRY_SECONDS = 10  # a socket slot frees when a page closes; there is no window to wait out
UNLIMITED_FILES = 65_536  # the open-file limit taken as the process's where the system sets none
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix, an IPv4 address in its last 32 bits
SEND_SECONDS = 15.0  # for a client to take some of what the server has written it (a slow phone's too)
REFUSAL_READ_SECONDS = 2.0  # for a connection over connections_per_ip to send the request it is refused (_refuse)
REFUSALS_READ = 64  # connections over the cap waited for at once, all addresses together: past it, refused as they open
PRUNE_EVERY = 10_000  # counted hits between two sweeps of the windows that have emptied
SLOW_DOWN = {
    "en": "You are sending messages too fast. Please wait {seconds} seconds, then send your message again.",
    "zh": "您发送消息太快了，请等待 {seconds} 秒后再发送。",
}
HANDOFFS_FULL = {
    "en": "Our agents have had too many requests from your network just now, so I cannot pass this conversation to "
          "them. Please try again in {minutes} minutes.",
    "zh": "您所在网络的转人工请求过多，暂时无法为您转接人工客服，请 {minutes} 分钟后再试。",
}
log = logging.getLogger(__name__)


class _SteadyTime:
    """``time`` as the limits library's memory storage reads it, whose ``time()`` is the steady clock: it timed each
    hit by the wall clock, and a clock set back (NTP mending one that ran fast, a virtual machine resumed) left the hits
    counted just before in the future, within every window until the clock caught up with them. Every address and
    conversation at its limit then was refused for as long as the step, an hour's told to retry in 3,660 s."""

    @staticmethod
    def time() -> float:
        return time.monotonic()


if not callable(getattr(getattr(limits_memory, "time", None), "time", None)):  # its module `time`: replaced here
    raise RuntimeError(f"limits {limits_version}: its memory storage no longer reads the clock as `time.time()`, "
                       "which deskbot's limits replace with the steady clock: install a limits 5 release")
limits_memory.time = _SteadyTime  # type: ignore[assignment]


def too_many(reason: str, retry_after: int) -> web.HTTPException:
    """429 with the JSON reason and the seconds to wait, which clients (and the widget) honour."""
    return http_error(web.HTTPTooManyRequests, reason, headers={"Retry-After": str(retry_after)})


def retry_after(exc: web.HTTPException) -> int:
    return int(exc.headers.get("Retry-After", SOCKET_RETRY_SECONDS))


def too_many_connections(cap: int) -> str:
    return f"too many open connections from this address: at most {cap}; retry in {SOCKET_RETRY_SECONDS}s"


class TooManyConnections(Exception):
    """A connection over ``connections_per_ip``, refused (:func:`_refuse`)."""

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        body = dumps({"error": too_many_connections(cap)}).encode()
        self.answer = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n"
                       f"Content-Length: {len(body)}\r\nRetry-After: {SOCKET_RETRY_SECONDS}\r\n"
                       "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n").encode() + body


class Limits:
    """The counters of one server process. A limit set to 0 is off."""

    def __init__(self, config: LimitsConfig, max_body_bytes: int,
                 trusted: Callable[[web.Request], bool] = lambda request: False) -> None:
        """``trusted``: whether a request is the company's own (the admin token), which no address limit counts:
        an office's agents share one address, and their consoles' refreshes used up its share in minutes,
        until their replies to customers got 429."""
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.trusted = trusted
        self.callbacks: frozenset[str] = frozenset()  # the configured platforms' callback paths (server.py)
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._per_ip = self._per_minutes(config.per_ip_per_minute)
        self._failed_auth = self._per_minutes(config.failed_auth_per_ip_per_minute)
        self._per_conversation = self._per_minutes(config.per_conversation_per_minute)
        self._messages_per_ip = self._per_minutes(config.messages_per_ip_per_minute)
        self._handoffs = self._per_minutes(config.handoffs_per_ip, config.handoff_window_minutes)
        self._conversations = self._per_minutes(config.conversations_per_ip, config.conversation_window_minutes)
        self._sockets: Counter[str] = Counter()
        self._connections: Counter[str] = Counter()  # by address (connection_opened)
        self.max_sockets = default_max_sockets() if config.websockets is None else config.websockets
        self.open_sockets = 0
        self._told: dict[str, float] = {}  # conversation -> when the wait it was told of ends (monotonic)
        self._hits = 0
        self._proxy_said = False  # whether an untrusted proxy in front has been said (_unheeded_proxy)

    @staticmethod
    def _per_minutes(amount: int, minutes: int = 1) -> RateLimitItem | None:
        return RateLimitItemPerMinute(amount, minutes) if amount > 0 else None

    def _trusted(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.config.trusted_proxies)

    def client_ip(self, request: web.Request) -> str:
        """The address a client is counted by: the peer's or, when the proxy in front is trusted, the
        last ``X-Forwarded-For`` entry, the one that proxy appended (the entries before it are the
        client's to write). An IPv6 address counts by its prefix of ``ipv6_prefix_length`` bits (a /64, which one
        subscriber holds whole, unless set shorter for networks that hand out /56s or /48s); an IPv4
        one written as IPv6 (``::ffff:a.b.c.d``, as a dual-stack proxy writes it) counts as itself, not as
        part of the one prefix that holds the whole IPv4 internet, and so does one NAT64 wrote (``64:ff9b::a.b.c.d``)
        and the IPv4 address a 6to4 or Teredo one is made from (6to4's /48 is 65,536 /64s)."""
        address = request.remote or "unknown"
        # Over every X-Forwarded-For line: a proxy may append its own line after the client's.
        forwarded = [a.strip() for a in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if a.strip()]
        if self.config.trusted_proxies:
            # From the peer back through the proxies named, to the first address none of them has: the client's
            # (what precedes it is the client's own to write). A peer that is no proxy of ours is the client.
            while forwarded and self._trusted(address):
                address = forwarded.pop()
        elif self.config.trust_forwarded_for:
            address = forwarded[-1] if forwarded else address
        elif forwarded:
            self._unheeded_proxy(address)
        return self._counted_as(address)

    def _counted_as(self, address: str) -> str:
        """The key ``address`` counts by: its IPv6 prefix, or the IPv4 address it holds (:meth:`client_ip`)."""
        ip = _ip(address)
        if ip is None:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            ipv4 = _tunnelled_ipv4(ip)
            return str(ipv4 or ipaddress.ip_network(f"{ip}/{self.config.ipv6_prefix_length}", strict=False))
        return str(ip)

    def connection_opened(self, peer: str) -> str | None:
        """Count a connection from ``peer`` against its address's ``connections_per_ip`` and return the address it
        counts against (for :meth:`connection_closed`), None where none does: a proxy X-Forwarded-For is read from
        carries many clients' connections, and its clients are counted by the requests it passes on.
        :class:`TooManyConnections` past the cap (said in the log once a wait)."""
        cap = self.config.connections_per_ip
        if not cap or self.config.trust_forwarded_for or self._trusted(peer):
            return None
        address = self._counted_as(peer)
        if self._connections[address] >= cap:
            if self.first_notice(f"connections from {address}", SOCKET_RETRY_SECONDS):
                log.warning("%s has %d connections open, server.limits.connections_per_ip: its next ones are refused "
                            "until some close", address_tag(address), self._connections[address])
            raise TooManyConnections(cap)
        self._connections[address] += 1
        return address

    def connection_closed(self, address: str) -> None:
        """Free the slot a connection counted against ``address`` (:meth:`connection_opened`'s answer)."""
        self._connections[address] -= 1
        if self._connections[address] <= 0:
            del self._connections[address]

    def _unheeded_proxy(self, peer: str) -> None:
        """Say once that a peer on this machine or a private network (a reverse proxy, surely: no client on the
        internet has such an address) passes on its clients' addresses that no setting lets the limits read: each
        limit then holds one share for all of them, which one client could use up for everyone."""
        ip = _ip(peer)
        if self._proxy_said or ip is None or not ip.is_private:
            return
        self._proxy_said = True
        log.warning("requests from %s carry X-Forwarded-For, as a reverse proxy adds it, but neither "
                    "server.limits.trusted_proxies nor trust_forwarded_for is set: every client behind it counts as "
                    "%s, one share of each limit for all; set server.limits.trusted_proxies: [%s] (docs/security.md)",
                    *[Verbatim(peer)] * 3)

    def forget_idle(self) -> None:
        """Forget the addresses and conversations whose every counted hit has expired, and the waits told that have
        passed. The limits library drops a window's expired hits only as another hit comes, and keeps its key: every
        address and conversation id ever seen (ids a client chooses) would stay in memory for the life of the
        process, and a customer's IP address, which is personal data, as long as the server had no other request.
        ``bot serve`` calls it every minute (``server.FORGET_KEYS_EVERY_S``), and a busy server every
        ``PRUNE_EVERY`` hits too."""
        storage, now = self._window.storage, _SteadyTime.time()
        for key in [key for key, hits in list(storage.events.items()) if not hits or hits[0].expiry <= now]:
            with storage.locks[key]:
                if not (hits := storage.events.get(key)) or hits[0].expiry <= now:  # newest first
                    storage.events.pop(key, None)
            storage.locks.pop(key, None)
        moment = time.monotonic()
        self._told = {key: until for key, until in self._told.items() if until > moment}

    def _wait(self, item: RateLimitItem | None, scope: str, key: str) -> int:
        """Count one hit and return 0, or, past the limit, the whole seconds until one is free again."""
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self.forget_idle()
        if item is None or self._window.hit(item, scope, key):
            return 0
        return self._until_free(item, scope, key)

    def _until_free(self, item: RateLimitItem, scope: str, key: str) -> int:
        reset = self._window.get_window_stats(item, scope, key).reset_time
        return max(1, math.ceil(reset - _SteadyTime.time()))

    def _hit(self, item: RateLimitItem | None, scope: str, key: str, what: str) -> None:
        wait = self._wait(item, scope, key)
        if item is not None and wait:
            raise too_many(f"too many {what}: more than {item.amount} a minute; retry in {wait}s", wait)

    def _refuse_when_full(self, item: RateLimitItem | None, scope: str, key: str, what: str) -> None:
        """429 where ``key``'s window is full, without counting a hit: for what is counted only once its answer
        is known (a callback refused, a wrong token)."""
        if item is not None and not self._window.test(item, scope, key):
            wait = self._until_free(item, scope, key)
            raise too_many(f"too many {what}: more than {item.amount} a minute; retry in {wait}s", wait)

    def request(self, ip: str) -> None:
        self._hit(self._per_ip, "ip", ip, "requests from this address")

    def message(self, conversation_id: str) -> None:
        self._hit(self._per_conversation, "conversation", conversation_id, "messages in this conversation")

    def address_message(self, ip: str) -> None:
        """Count one web chat message from ``ip``, whichever conversation it is in."""
        self._hit(self._messages_per_ip, "message from", ip, "messages from this address")

    def message_wait(self, conversation_id: str) -> int:
        """:meth:`message` for callers that cannot answer 429: 0 when counted, else the seconds to wait."""
        return self._wait(self._per_conversation, "conversation", conversation_id)

    def handoff_wait(self, ip: str) -> int:
        """Count one conversation handed to a person from ``ip`` and return 0, or, past ``handoffs_per_ip``, the
        seconds until its window lets one through (said in the log once a wait)."""
        wait = self._wait(self._handoffs, "handoff", ip)
        if wait and self.first_notice(f"handoffs from {ip}", wait):
            log.warning("%s has had more than %d conversations handed to a person in %d minutes: its next ones are "
                        "not, for %ds", address_tag(ip), self.config.handoffs_per_ip, self.config.handoff_window_minutes, wait)
        return wait

    def new_conversation(self, ip: str) -> None:
        """Count one web conversation opened from ``ip``; past ``conversations_per_ip`` in the window, 429 (said
        in the log once a wait: an office behind one address that meets it needs a higher limit)."""
        wait = self._wait(self._conversations, "new conversation", ip)
        if not wait:
            return
        amount, minutes = self.config.conversations_per_ip, self.config.conversation_window_minutes
        if self.first_notice(f"new conversations from {ip}", wait):
            log.warning("%s has opened more than %d conversations in %d minutes: its next ones are refused for %ds",
                        address_tag(ip), amount, minutes, wait)
        raise too_many(f"too many new conversations from this address: more than {amount} in {minutes} minutes; "
                       f"retry in {wait}s", wait)

    def refund(self, conversation_id: str) -> None:
        """Take back the latest count of a conversation's messages. The limits library has no call for it;
        its memory storage keeps each key's hits newest first, under the key :meth:`message` counts by."""
        if self._per_conversation is None:
            return
        storage = self._window.storage
        key = self._per_conversation.key_for("conversation", conversation_id)
        with storage.locks[key]:
            if storage.events.get(key):
                storage.events[key].pop(0)

    def first_notice(self, conversation_id: str, wait: int) -> bool:
        """True if the conversation is not already waiting out a notice; it is then told to wait ``wait`` s.

        A flood of messages gets one "please wait" rather than one per dropped message, and a
        user still over the limit once that wait has passed is told again.
        """
        now = time.monotonic()
        if self._told.get(conversation_id, 0.0) > now:
            return False
        self._told = {cid: until for cid, until in self._told.items() if until > now}
        self._told[conversation_id] = now + wait
        return True

    @contextlib.contextmanager
    def socket(self, ip: str) -> Iterator[None]:
        """Hold one of ``ip``'s WebSocket slots, and one of the server's, for as long as the socket is open."""
        cap = self.config.websockets_per_ip
        if cap and self._sockets[ip] >= cap:
            raise too_many(f"too many open connections from this address: at most {cap}", SOCKET_RETRY_SECONDS)
        self._server_slot()
        self._sockets[ip] += 1
        self.open_sockets += 1
        try:
            yield
        finally:
            self.open_sockets -= 1
            self._sockets[ip] -= 1
            if self._sockets[ip] <= 0:
                del self._sockets[ip]

    def _server_slot(self) -> None:
        """503 when ``max_sockets`` are open (said in the log once a minute at most): the widget then goes on over
        HTTP, polling for agents' replies, as behind a proxy that blocks sockets."""
        if not self.max_sockets or self.open_sockets < self.max_sockets:
            return
        if self.first_notice("the server's sockets", 60):
            log.warning("%d WebSockets are open, server.limits.websockets: new ones are refused until one closes "
                        "(the widget polls over HTTP meanwhile)", self.open_sockets)
        raise http_error(web.HTTPServiceUnavailable, f"the server has {self.max_sockets} connections open, its most: "
                         f"use HTTP, or retry in {SOCKET_RETRY_SECONDS}s",
                         headers={"Retry-After": str(SOCKET_RETRY_SECONDS)})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.protocol in _refusing:
            return await self._over_cap(request, handler)
        if request.path == HEALTH:
            return await handler(request)
        if request.path in self.callbacks:  # each channel reads its own body limit
            return await self._callback(request, handler)
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise http_error(web.HTTPRequestEntityTooLarge, f"body larger than {self.max_body_bytes} bytes",
                             max_size=self.max_body_bytes, actual_size=length)
        if request.method == "OPTIONS":
            return await handler(request)  # a refused CORS preflight is no 429 to a page, only a network error
        ip = self.client_ip(request)
        with self._signing_in(request, ip):
            if self.trusted(request):
                return await handler(request)
            self.request(ip)
            if request.headers.get("Upgrade", "").lower() == "websocket":
                with self.socket(ip):
                    return await handler(request)
            return await handler(request)

    @contextlib.contextmanager
    def _signing_in(self, request: web.Request, ip: str) -> Iterator[None]:
        """Count a request with a token refused 401 (a wrong admin, agent or metrics token) against ``ip``'s
        ``failed_auth_per_ip_per_minute``; past it, refuse 429 every request of ``ip``'s with a token, before the
        token is compared: a right one let through would tell the guess that found it. Requests without a token
        (customers') are neither counted nor refused."""
        if "Authorization" not in request.headers:
            yield
            return
        self._refuse_when_full(self._failed_auth, "failed auth", ip, "requests with a wrong token from this address")
        try:
            yield
        except web.HTTPUnauthorized:
            self._wait(self._failed_auth, "failed auth", ip)
            raise

    async def _over_cap(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The request of a connection over ``connections_per_ip`` (:func:`_refuse`), after which it closes: 429, with
        the web chat's CORS headers (:func:`server.json_errors`), so that a widget on another site reads it and tells
        its customer to wait, where a raw refusal was a network error it waited out as a lost message. A CORS
        preflight is answered as usual: a browser reads none of a refused one, and the request it is for is the 429."""
        request.protocol.close()
        if request.method == "OPTIONS":
            return await handler(request)
        raise too_many(too_many_connections(self.config.connections_per_ip), SOCKET_RETRY_SECONDS)

    async def _callback(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A platform's callback, not counted unless it is refused as the client's fault (a 4xx): a signature that
        does not prove it (401), or a request refused before any signature was computed (no query, XML that does
        not parse, a body too large, slow or broken), which a platform never sends. Such requests count against
        their address, which past the limit is refused at once, before its body is read."""
        ip = self.client_ip(request)
        self._refuse_when_full(self._per_ip, "ip", ip, "requests from this address")
        try:
            return await handler(request)
        except (web.HTTPClientError, web.RequestPayloadError):
            self._wait(self._per_ip, "ip", ip)
            raise


def open_file_limit() -> int:
    """How many files the process may open (its soft limit, ``ulimit -n``)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def default_max_sockets() -> int:
    """Half the files the process may open: the other half for the HTTP requests, the store, the models and the
    logs a server full of sockets still needs."""
    return open_file_limit() // 2


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a peer or a forwarded entry names, its port left out and an IPv4 one written as IPv6
    (``::ffff:a.b.c.d``) as itself; None for what is no address."""
    try:
        ip = ipaddress.ip_address(_without_port(address))
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The client's IPv4 address a 6to4 (2002::/16) or Teredo (2001::/32) address is made from, which its holder
    could otherwise vary by /64s (6to4 gives each IPv4 address a /48) or by Teredo servers, or that NAT64 wrote in
    64:ff9b::/96, one /64 for every IPv4 client; None for another."""
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour or (ip.teredo[1] if ip.teredo else None)


def _without_port(address: str) -> str:
    """The address of a forwarded entry some proxies write with the client's port: ``203.0.113.7:40001``
    or ``[2001:db8::1]:443``, each connection of one client a new key otherwise."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    host, colon, port = address.rpartition(":")
    return host if colon and port.isdigit() and "." in host and ":" not in host else address


LIMITS = web.AppKey("limits", Limits)


def count_request(request: web.Request) -> None:
    """Count a WebSocket frame against the sender's address, as the middleware counts a request; raises
    429 past the limit. A frame is not a request the middleware saw: one socket must not send more than
    one address's share."""
    limits = request.app.get(LIMITS)
    if limits is not None:
        limits.request(limits.client_ip(request))


def client_address(request: web.Request) -> str | None:
    """The address ``request``'s client is counted by (:meth:`Limits.client_ip`); None where nothing counts."""
    limits = request.app.get(LIMITS)
    return limits.client_ip(request) if limits is not None else None


def trusted(request: web.Request) -> bool:
    """Whether ``request`` is the company's own (it carries the admin token: :attr:`Limits.trusted`)."""
    limits = request.app.get(LIMITS)
    return limits is not None and limits.trusted(request)


def handoffs_full(language: Language, script: Script | None, seconds: int) -> str:
    """What a customer whose address has handed off too many conversations hears instead of a person."""
    return say(HANDOFFS_FULL, language, script=script).format(minutes=math.ceil(seconds / 60))


def count_message(request: web.Request, conversation_id: str, over_socket: bool = False) -> None:
    """Count one web chat message against its address's messages and its conversation's, and one sent over a
    WebSocket against its address's requests too (:func:`count_request`); raises 429 past any."""
    limits = request.app.get(LIMITS)
    if limits is None:
        return
    ip = limits.client_ip(request)
    if over_socket:
        limits.request(ip)
    limits.address_message(ip)
    limits.message(conversation_id)


@contextlib.contextmanager
def refunded_on_error(request: web.Request, conversation_id: str) -> Iterator[None]:
    """Uncount a Slack or WeCom message let through (:func:`hold_back`) if keeping it fails: its request gets
    500, the platform sends it again, and that retry is the one to count."""
    try:
        yield
    except Exception:
        if (limits := request.app.get(LIMITS)) is not None:
            limits.refund(conversation_id)
        raise


def slow_down(language: str, seconds: int, text: str, slots: Mapping[str, Any] | None = None) -> str:
    """The "please wait" notice in the bot's language; a ``multi`` bot answers as it answers ``text``
    (:func:`~bot.language.turn_language`: a number or a button's payload keeps the conversation's, in
    ``slots``). In Chinese, it is written in the script ``text`` is, else in the conversation's."""
    slots = slots or {}
    said_in = turn_language(language, text, slots.get(SLOT))
    script = chinese_script(text, kept_script(slots)) if language != "en" else None
    return say(SLOW_DOWN, said_in, script=script).format(seconds=seconds)


async def hold_back(request: web.Request, conversation_id: str, text: str, language: str,
                    slots: Callable[[], Awaitable[dict[str, Any]]],
                    counted: Callable[[int, float], Awaitable[float]] | None = None,
                    told: Callable[[int], Awaitable[bool]] | None = None) -> str | None:
    """Count a Slack or WeCom message against its conversation's limit.

    None lets the message through. Otherwise it must be dropped (acknowledged, never shown to the
    model), and the string is the notice to send its user, empty when the user has already been
    told to wait and that wait is not over. ``slots`` reads the conversation's slots (its language and
    Chinese script), only when a notice is due. ``counted(most, window_s)``: the seconds until the conversation's
    messages kept in the store, by every server on it, leave room for one more (0: now), which this server's own
    count, in its memory, cannot see: two servers behind one callback URL let twice the limit through. ``told(wait)``:
    whether no server on the store has told the customer to wait lately, kept as told for ``wait`` seconds if so.
    """
    limits = request.app.get(LIMITS)
    if limits is None:
        return None
    wait = limits.message_wait(conversation_id)
    if not wait and counted is not None and (most := limits.config.per_conversation_per_minute):
        if wait := math.ceil(await counted(most, MESSAGE_WINDOW_S)):
            limits.refund(conversation_id)  # not let through: this server's count takes it back
    if not wait:
        return None
    if not limits.first_notice(conversation_id, wait) or told is not None and not await told(wait):
        log.debug("dropped another message over the limit in %s", log_tag(conversation_id))
        return ""
    log.warning("%s is over %d messages a minute: its messages are dropped for %ds",
                log_tag(conversation_id), limits.config.per_conversation_per_minute, wait)
    try:  # the notice follows the conversation's language and script; one the store cannot tell is still sent
        kept = await slots() if language != "en" else {}
    except Exception:
        log.exception("cannot read %s's language for its notice", log_tag(conversation_id))
        kept = {}
    return slow_down(language, wait, text, kept)


# What one client's connections may hold, below the requests the middleware sees: how many it opens from one address
# (:func:`_counted_when_made`), and how long its answers may wait for it to read them. A connection's writes wait while
# the system holds more of its answers than the client has read (aiohttp pauses them past 64 KiB): a client that sends
# requests and never reads the answers held its connection, a handler and the answers written so far for as long as
# it liked, keepalive_seconds counting only a connection with nothing to do. One whose writes stay paused for
# SEND_SECONDS is cut (:func:`_cut_when_stalled`).
# Both lean on aiohttp's private parts, which a release may rename: :func:`check_aiohttp` says so as the server starts,
# where every connection would otherwise fail as it opens.
HOOKED = ("pause_writing", "resume_writing", "connection_made", "connection_lost", "force_close", "close")  # its methods used
PRIVATE = ("_manager", "transport")  # a RequestHandler's attributes read


def check_aiohttp(handler_class: type = RequestHandler) -> None:
    """Raise RuntimeError, naming what is missing, where aiohttp's ``handler_class`` lacks a method this module wraps
    or an attribute it reads (:data:`HOOKED`, :data:`PRIVATE`)."""
    missing = [name for name in (*HOOKED, *PRIVATE) if not hasattr(handler_class, name)]
    if missing:
        raise RuntimeError(f"aiohttp {aiohttp.__version__} has no {handler_class.__name__}.{', .'.join(missing)}, "
                           "which deskbot's connection limits use: install an aiohttp 3.14 release")


check_aiohttp()
_aiohttp_pause_writing = RequestHandler.pause_writing
_aiohttp_resume_writing = RequestHandler.resume_writing
_aiohttp_connection_made = RequestHandler.connection_made
_aiohttp_connection_lost = RequestHandler.connection_lost
_stalled: dict[RequestHandler, asyncio.TimerHandle] = {}  # each paused connection's cut, until its writes resume
_counted: dict[RequestHandler, tuple[Limits, str]] = {}  # each connection counted per address, and where
_refusing: dict[RequestHandler, asyncio.TimerHandle] = {}  # each connection over the cap whose request is awaited, its cut


def _counted_when_made(handler: RequestHandler, transport: asyncio.BaseTransport) -> None:
    """Count a new connection against its address (:meth:`Limits.connection_opened`): each holds one of the files
    the process may open, and one address could open them all, each held keepalive_seconds by sending nothing,
    again and again, until the server could accept no other client nor open its store. One over the cap is answered
    429 and closed (:func:`_refuse`)."""
    _aiohttp_connection_made(handler, transport)
    limits, peer = _limits_of(handler), transport.get_extra_info("peername")
    if limits is None or not isinstance(peer, tuple):  # a Unix socket's peer has no address
        return
    try:
        address = limits.connection_opened(peer[0])
    except TooManyConnections as exc:
        _refuse(handler, cast(asyncio.Transport, transport), exc)
        return
    if address is not None:
        _counted[handler] = (limits, address)


def _refuse(handler: RequestHandler, transport: asyncio.Transport, refusal: TooManyConnections) -> None:
    """Refuse a connection over the cap: its first request, awaited ``REFUSAL_READ_SECONDS`` at most, is answered 429
    (:meth:`Limits._over_cap`), with what lets a page of an allowed site read it, which needs the request's Origin.
    Past ``REFUSALS_READ`` such connections awaited at once (a flood, whose every connection would hold a file that
    long) it is answered as it opens, before anything of it is read."""
    if len(_refusing) >= REFUSALS_READ:
        transport.write(refusal.answer)
        handler.force_close()
        return
    _refusing[handler] = asyncio.get_running_loop().call_later(REFUSAL_READ_SECONDS, _cut, handler)


def _limits_of(handler: RequestHandler) -> Limits | None:
    """The limits of the application ``handler``'s connection is to (its server's handler is the app's)."""
    app = getattr(getattr(handler._manager, "request_handler", None), "__self__", None)
    return app.get(LIMITS) if isinstance(app, web.Application) else None


def _cut_when_stalled(handler: RequestHandler) -> None:
    """Pause ``handler``'s writes, as aiohttp does, and cut its connection unless they resume within ``SEND_SECONDS``:
    cut, not closed, since closing waits for the answers the client is not reading to go out."""
    _aiohttp_pause_writing(handler)
    _stalled[handler] = asyncio.get_running_loop().call_later(SEND_SECONDS, _cut, handler)


def _cut(handler: RequestHandler) -> None:
    """Abort ``handler``'s connection, whose client read nothing for ``SEND_SECONDS``, or sent nothing of the request
    it is refused for ``REFUSAL_READ_SECONDS`` (:func:`_refuse`)."""
    _stalled.pop(handler, None)
    _refusing.pop(handler, None)
    if handler.transport is not None:
        log.debug("cut a connection that stalled")
        handler.transport.abort()


def _resumed(handler: RequestHandler) -> None:
    """The client reads again: its connection is not cut (:func:`_cut_when_stalled`), and aiohttp writes on."""
    if (cut := _stalled.pop(handler, None)) is not None:
        cut.cancel()
    _aiohttp_resume_writing(handler)


def _lost(handler: RequestHandler, exc: BaseException | None) -> None:
    """A connection closed: forget its pending cuts, free its slot of its address's (:func:`_counted_when_made`)."""
    for cuts in (_stalled, _refusing):
        if (cut := cuts.pop(handler, None)) is not None:
            cut.cancel()
    if (counted := _counted.pop(handler, None)) is not None:
        limits, address = counted
        limits.connection_closed(address)
    _aiohttp_connection_lost(handler, exc)


RequestHandler.pause_writing = _cut_when_stalled  # type: ignore[method-assign]
RequestHandler.resume_writing = _resumed  # type: ignore[method-assign]
RequestHandler.connection_made = _counted_when_made  # type: ignore[method-assign]
RequestHandler.connection_lost = _lost  # type: ignore[method-assign]
