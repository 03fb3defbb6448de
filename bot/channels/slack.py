"""Slack over the Events API: ``POST /slack/events`` in, ``chat.postMessage`` out.

Slack gives an app 3 seconds to acknowledge an event and retries up to three times otherwise, so
this channel verifies the request, answers 200 at once and runs the turn in the background — the
opposite of Rasa's Slack channel, which answers after the whole turn and makes users see duplicate
replies. Redeliveries are recognised by ``event_id``.

The small helpers at the top (bounded body reading, a TTL dedupe set, tracked background tasks)
are shared with the WeCom channel, which needs exactly the same three things.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bot.channels.base import Channel, Turn

if TYPE_CHECKING:
    from bot.engine import Bot

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_CHARS = 4000
MAX_SKEW_S = 300
ENV = {
    "signing_secret": "DESKBOT_SLACK_SIGNING_SECRET",
    "bot_token": "DESKBOT_SLACK_BOT_TOKEN",
    "api_url": "DESKBOT_SLACK_API_URL",
}
REQUIRED = ("signing_secret", "bot_token")


def resolve_settings(settings: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``bot.yml`` values with the non-empty environment variables in ``env`` laid over them."""
    merged = dict(settings)
    for key, var in env.items():
        if os.environ.get(var):
            merged[key] = os.environ[var]
    return merged


def http_error(cls: type[web.HTTPException], reason: str, **kwargs: Any) -> web.HTTPException:
    """An HTTP error whose JSON body says why, in the server's ``{"error": ...}`` format.

    Being JSON already, it passes the server's error middleware with its reason intact.
    """
    return cls(text=json.dumps({"error": reason}), content_type="application/json", **kwargs)


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the raw body, answering 413 past ``limit`` bytes.

    aiohttp's ``client_max_size`` is one setting for the whole app, so each channel enforces its
    own limit: on the declared length first, then on what actually arrives (chunked uploads
    declare none).
    """
    too_large = f"body larger than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise http_error(web.HTTPRequestEntityTooLarge, too_large, max_size=limit, actual_size=request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise http_error(web.HTTPRequestEntityTooLarge, too_large, max_size=limit, actual_size=len(body))
    return bytes(body)


class RecentKeys:
    """Remembers keys for ``ttl`` seconds, at most ``maxlen`` of them.

    Enough to recognise a platform's redelivery (Slack retries up to ~6 minutes later, WeCom within
    15 seconds) without growing without bound.
    """

    def __init__(self, ttl: float = 900.0, maxlen: int = 10_000) -> None:
        self.ttl = ttl
        self.maxlen = maxlen
        self._seen: OrderedDict[str, float] = OrderedDict()

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
            log.error("channel background task failed", exc_info=task.exception())

    async def close(self, grace: float = 5.0) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack_request(secret: str, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    """True when the timestamp is within 5 minutes of ``now`` and the signature matches.

    The window stops replays of captured requests; the constant-time comparison stops an attacker
    from learning the signature byte by byte from response timings.
    """
    try:
        skew = abs(now - int(timestamp))
    except ValueError:
        return False
    if skew > MAX_SKEW_S:
        return False
    return hmac.compare_digest(slack_signature(secret, timestamp, body).encode(), signature.encode())


class SlackAPIError(RuntimeError):
    """Slack's Web API answered with ``ok: false`` or a non-2xx status."""


class SlackChannel(Channel):
    """The Events API input side and the ``chat.postMessage`` output side.

    Conversation ids are ``slack:{team}:{channel}:{thread_ts or ts}``: one conversation per thread,
    which is also where the bot answers.
    """

    name = "slack"

    def __init__(self, bot: "Bot", settings: dict[str, Any]) -> None:
        resolved = resolve_settings(settings, ENV)
        missing = [key for key in REQUIRED if not resolved.get(key)]
        if missing:
            raise ValueError(f"slack channel needs {', '.join(missing)}")
        super().__init__(bot, resolved)
        self.signing_secret: str = resolved["signing_secret"]
        self.bot_token: str = resolved["bot_token"]
        self.api_url: str = resolved.get("api_url") or DEFAULT_API_URL
        self.max_body_bytes = int(resolved.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        self.max_message_chars = int(resolved.get("max_message_chars", DEFAULT_MAX_MESSAGE_CHARS))
        # The bot's own user id is learnt from each event's ``authorizations``; a setting can pin it.
        self.own_user_ids: set[str] = {resolved["bot_user_id"]} if resolved.get("bot_user_id") else set()
        self._seen = RecentKeys()
        self._tasks = BackgroundTasks()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, bot: "Bot", settings: dict[str, Any]) -> SlackChannel | None:
        """The channel, or None when its secrets are not set (the endpoint then stays unmounted)."""
        resolved = resolve_settings(settings, ENV)
        missing = [key for key in REQUIRED if not resolved.get(key)]
        if missing:
            if len(missing) < len(REQUIRED):
                log.warning("slack channel disabled: %s not set", ", ".join(missing))
            return None
        return cls(bot, settings)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post("/slack/events", self.handle_events)]

    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request, self.max_body_bytes)
        if not verify_slack_request(
            self.signing_secret,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
            body,
            time.time(),
        ):
            raise http_error(web.HTTPUnauthorized, "bad or stale Slack signature")
        try:
            payload = json.loads(body)
        except ValueError as exc:  # UnicodeDecodeError included
            raise http_error(web.HTTPBadRequest, f"malformed JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise http_error(web.HTTPBadRequest, "JSON body must be an object")
        if payload.get("type") == "url_verification":
            return web.json_response({"challenge": payload.get("challenge", "")})
        if payload.get("type") == "event_callback" and isinstance(payload.get("event"), dict):
            turn = self._turn(payload)
            if turn is not None:
                self._tasks.spawn(self._answer(turn))
        return web.Response(status=200)

    def _turn(self, payload: dict[str, Any]) -> Turn | None:
        """The :class:`Turn` for a new user message, or None for anything to ignore."""
        event: dict[str, Any] = payload["event"]
        for auth in payload.get("authorizations") or []:
            if isinstance(auth, dict) and auth.get("is_bot") and auth.get("user_id"):
                self.own_user_ids.add(auth["user_id"])
        if event.get("type") not in ("message", "app_mention"):
            return None
        # Edits, deletions, joins and bot posts all arrive as subtypes; only plain messages get answers.
        if event.get("subtype") or event.get("bot_id") or event.get("user") in self.own_user_ids:
            return None
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        if not (user and channel and ts):
            return None
        # A mention in a channel arrives twice (``message`` and ``app_mention``, with different
        # event ids) but with the same channel and ts, so both keys must be new.
        event_id = payload.get("event_id")
        if (event_id and not self._seen.add(f"event:{event_id}")) or not self._seen.add(f"ts:{channel}:{ts}"):
            return None
        # Slack has already been told 200, so an over-long message is cut rather than refused.
        text = self._strip_mentions(str(event.get("text") or ""))[: self.max_message_chars]
        if not text:
            return None
        team = payload.get("team_id") or event.get("team") or ""
        thread = event.get("thread_ts") or ts
        return Turn(
            conversation_id=f"slack:{team}:{channel}:{thread}",
            text=text,
            channel=self.name,
            user=user,
            metadata={"team": team, "channel": channel, "ts": ts, "thread_ts": thread, "event_id": event_id},
        )

    def _strip_mentions(self, text: str) -> str:
        """Remove ``<@BOT>`` (and ``<@BOT|name>``) so the NLU sees only the question."""
        for user_id in self.own_user_ids:
            text = re.sub(rf"<@{re.escape(user_id)}(\|[^>]*)?>", " ", text)
        return " ".join(text.split())

    async def _answer(self, turn: Turn) -> None:
        reply = await self.bot.handle(turn)
        if reply.text and reply.source != "silent":
            await self.send(turn.conversation_id, reply.text)

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        """Post ``text`` into the conversation's thread with ``chat.postMessage``."""
        prefix, _team, channel, thread_ts = conversation_id.split(":", 3)
        if prefix != self.name:
            raise ValueError(f"not a Slack conversation id: {conversation_id}")
        await self._call("chat.postMessage", {"channel": channel, "text": text, "thread_ts": thread_ts})

    async def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.post(
            self.api_url + method, json=payload, headers={"Authorization": f"Bearer {self.bot_token}"}
        ) as response:
            if response.status >= 300:
                raise SlackAPIError(f"{method}: HTTP {response.status}")
            result: dict[str, Any] = await response.json(content_type=None)
        if not result.get("ok"):
            raise SlackAPIError(f"{method}: {result.get('error', 'unknown error')}")
        return result

    async def close(self) -> None:
        await self._tasks.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
