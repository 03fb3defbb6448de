"""What one client may ask of a deskbot that faces the public internet.

One noisy client (a script, a stuck widget, an attacker) must not slow the bot down for everyone
else, so every request passes :meth:`Limits.middleware`:

* a body whose declared ``Content-Length`` is over ``server.max_body_bytes`` is refused with 413
  before it is read (a chunked body without a length is cut by aiohttp's ``client_max_size``);
* requests from one IP address are counted in a moving one-minute window (the ``limits``
  library's), and the one over ``server.limits.per_ip_per_minute`` gets 429 with ``Retry-After``;
* WebSocket connections open at once from one IP address are capped the same way.

Messages are also counted per conversation (:func:`count_message`, called by the web channel for
both HTTP and WebSocket messages), so one conversation cannot flood the model or the store.

Slack and WeCom callbacks are exempt from the per-IP count: they come from a platform's few
addresses on behalf of all its users, and their signatures already prove who sent them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bot.channels.base import http_error
from bot.project import LimitsConfig

EXEMPT_PREFIXES = ("/slack/", "/wecom/", "/healthz")
SOCKET_RETRY_SECONDS = 10  # a socket slot frees when a page closes; there is no window to wait out


def too_many(reason: str, retry_after: int) -> web.HTTPException:
    """429 with the JSON reason and the seconds to wait, which clients (and the widget) honour."""
    return http_error(web.HTTPTooManyRequests, reason, headers={"Retry-After": str(retry_after)})


def retry_after(exc: web.HTTPException) -> int:
    return int(exc.headers.get("Retry-After", SOCKET_RETRY_SECONDS))


class Limits:
    """The counters of one server process. A limit set to 0 is off."""

    def __init__(self, config: LimitsConfig, max_body_bytes: int) -> None:
        self.config = config
        self.max_body_bytes = max_body_bytes
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._per_ip = self._per_minute(config.per_ip_per_minute)
        self._per_conversation = self._per_minute(config.per_conversation_per_minute)
        self._sockets: Counter[str] = Counter()

    @staticmethod
    def _per_minute(amount: int) -> RateLimitItem | None:
        return RateLimitItemPerMinute(amount) if amount > 0 else None

    def client_ip(self, request: web.Request) -> str:
        """The peer's address, or the first ``X-Forwarded-For`` hop when the proxy in front is trusted."""
        if self.config.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
            if forwarded:
                return forwarded
        return request.remote or "unknown"

    def _hit(self, item: RateLimitItem | None, scope: str, key: str, what: str) -> None:
        if item is None or self._window.hit(item, scope, key):
            return
        reset = self._window.get_window_stats(item, scope, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise too_many(f"too many {what}: more than {item.amount} a minute; retry in {wait}s", wait)

    def request(self, ip: str) -> None:
        self._hit(self._per_ip, "ip", ip, "requests from this address")

    def message(self, conversation_id: str) -> None:
        self._hit(self._per_conversation, "conversation", conversation_id, "messages in this conversation")

    @contextlib.contextmanager
    def socket(self, ip: str) -> Iterator[None]:
        """Hold one of ``ip``'s WebSocket slots for as long as the socket is open."""
        cap = self.config.websockets_per_ip
        if cap and self._sockets[ip] >= cap:
            raise too_many(f"too many open connections from this address: at most {cap}", SOCKET_RETRY_SECONDS)
        self._sockets[ip] += 1
        try:
            yield
        finally:
            self._sockets[ip] -= 1
            if self._sockets[ip] <= 0:
                del self._sockets[ip]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise http_error(web.HTTPRequestEntityTooLarge, f"body larger than {self.max_body_bytes} bytes",
                             max_size=self.max_body_bytes, actual_size=length)
        if request.path.startswith(EXEMPT_PREFIXES):
            return await handler(request)
        ip = self.client_ip(request)
        self.request(ip)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            with self.socket(ip):
                return await handler(request)
        return await handler(request)


LIMITS = web.AppKey("limits", Limits)


def count_message(request: web.Request, conversation_id: str, over_socket: bool = False) -> None:
    """Count one chat message against its conversation's limit; raises 429 past it.

    A message over a WebSocket is a frame, not a request the middleware saw, so it also counts
    against the sender's address: one socket cannot send more than one IP's share.
    """
    limits = request.app.get(LIMITS)
    if limits is None:
        return
    if over_socket:
        limits.request(limits.client_ip(request))
    limits.message(conversation_id)
