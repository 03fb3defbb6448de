"""Slack Events API channel against a real aiohttp app and a local stand-in for Slack's Web API."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from urllib.parse import urlencode
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

import bot.channels.slack as slack_module
import bot.notify as notify_module
from bot.channels.base import DeliveryError, MaybeDelivered, Reply, Turn, kept_turn, message_pieces
from bot.channels.slack import (
    MARKDOWN_LIMIT,
    MIN_EVENT_BYTES,
    NOTED,
    SlackAPIError,
    SlackChannel,
    SlackMaybePosted,
    message_blocks,
    slack_signature,
    verify_slack_request,
)
from bot.limits import LIMITS, Limits
from bot.notify import HandoffNotifier
from bot.project import LimitsConfig, ProjectError
from bot.engine import Bot
from bot.server import BOT, create_app
from dialogues.store import Exchange, Store, log_tag
from tests.conftest import configured_copy, store_failing_once

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
TS = "1700000000.000100"

# Slack's worked example from "Verifying requests from Slack" (api.slack.com/authentication/
# verifying-requests-from-slack). The documented body's command is /webhook-collect.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
).encode()
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


FULL_SCOPES = frozenset({"chat:write", "app_mentions:read", "channels:history", "im:history", "users:read",
                         "usergroups:read"})


def slack_auth_test(request: web.Request, token: str, scopes: frozenset[str] | set[str] = FULL_SCOPES) -> web.Response:
    """Slack's answer to ``auth.test`` as it sends it, for a workspace "Shop" (T1) whose bot user is deskbot (UBOT)
    with the bot token ``token``: compact JSON, its slashes escaped, a bot token's bot_id included, and the token's
    ``scopes`` in the ``x-oauth-scopes`` header, as Slack names them in each answer; ``invalid_auth`` for another
    token. ``bot serve`` asks it at start (``SlackChannel._check_token``)."""
    if request.headers.get("Authorization") != f"Bearer {token}":
        return web.Response(body=b'{"ok":false,"error":"invalid_auth"}', content_type="application/json",
                            charset="utf-8")
    return web.Response(body=b'{"ok":true,"url":"https:\\/\\/shop.slack.com\\/","team":"Shop","user":"deskbot",'
                             b'"team_id":"T1","user_id":"UBOT","bot_id":"B01","is_enterprise_install":false}',
                        content_type="application/json", charset="utf-8",
                        headers={"x-oauth-scopes": ",".join(sorted(scopes))})


def utf16(text: str) -> int:
    """``text``'s length in UTF-16 code units, as Slack counts it against its limits (an emoji such as 😀 two)."""
    return len(text.encode("utf-16-le")) // 2


def texts_in(value: Any) -> int:
    """The characters of the ``text`` strings anywhere in ``value`` (blocks, a block, a button), as Slack counts."""
    if isinstance(value, dict):
        return sum(utf16(v) if k == "text" and isinstance(v, str) else texts_in(v) for k, v in value.items())
    return sum(map(texts_in, value)) if isinstance(value, list) else 0


def slack_refusal(message: dict[str, Any]) -> str | None:
    """The error chat.postMessage answers for a ``message`` Slack refuses, as Slack names it; None for one it posts.
    Nothing to show ("no_text"); blocks past Block Kit's limits ("invalid_blocks"): more than 50, a ``block_id``
    twice or over 255 characters, markdown blocks of more than 12,000 characters in all, a section's text over 3,000,
    an ``actions`` block of more
    than 25 elements, a button's text over 75 characters or its value over 2,000; blocks of too much text in all,
    buttons' included ("msg_blocks_too_long"), which Slack does not publish: as measured (slackapi/bolt-js#2509),
    13,297 characters in markdown blocks pass and one more does not, and a divider beside them leaves 13,172, each
    block after the first counting 125. Characters are counted in UTF-16 code units (:func:`utf16`)."""
    blocks = message.get("blocks") or []
    if not (message.get("text") or blocks or message.get("attachments")):
        return "no_text"
    named = [str(block["block_id"]) for block in blocks if "block_id" in block]
    elements = [element for block in blocks if block.get("type") == "actions" for element in block["elements"]]
    if (len(blocks) > 50 or len(set(named)) < len(named) or any(len(name) > 255 for name in named)
            or sum(utf16(block["text"]) for block in blocks if block.get("type") == "markdown") > 12_000
            or any(utf16(block["text"]["text"]) > 3_000 for block in blocks if block.get("type") == "section")
            or any(len(block["elements"]) > 25 for block in blocks if block.get("type") == "actions")
            or any(utf16(element["text"]["text"]) > 75 or utf16(element.get("value", "")) > 2000
                   for element in elements if element.get("type") == "button")):
        return "invalid_blocks"
    if texts_in(blocks) + 125 * (len(blocks) - 1) > 13_297:
        return "msg_blocks_too_long"
    return None


class FakeBot:
    """Stands in for bot.engine.Bot: records turns and answers after ``delay`` seconds."""

    store = None

    def __init__(self, text: str = "Use the reset link.", source: str = "template", delay: float = 0.0) -> None:
        self.text, self.source, self.delay = text, source, delay
        self.buttons: list[dict[str, str]] = []
        self.custom: list[Any] = []
        self.parts: list[dict[str, Any]] = []
        self.turns: list[Turn] = []
        self.notifier = HandoffNotifier(None)

    async def handle(self, turn: Turn) -> Reply:
        self.turns.append(turn)
        await asyncio.sleep(self.delay)
        return Reply(text=self.text, source=self.source, buttons=self.buttons, custom=self.custom, parts=self.parts)

    async def _store(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` at once, on the ``store`` a test gives it, where the bot runs it on the store's thread."""
        return fn(*args)

    async def _read(self, fn: Any, *args: Any) -> Any:
        """``fn(store, *args)`` at once, where the bot runs a read on a thread of its own."""
        return fn(self.store, *args)

    _look_up = _read  # a customer's message's short reads, on a thread of their own in the bot


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SIGNING_SECRET", "BOT_TOKEN", "API_URL"):
        monkeypatch.delenv(f"DESKBOT_SLACK_{var}", raising=False)


@pytest.fixture
async def slack_api(aiohttp_server: Any) -> SimpleNamespace:
    """A local chat.postMessage that checks the Bearer token and records what was posted.

    ``limits`` holds the ``Retry-After`` values of the 429s to answer before accepting posts, as
    Slack does when an app posts faster than its rate limit; ``down``, the statuses to answer before
    them, as Slack or a gateway does when unavailable; ``errors``, Slack's error codes to answer then, with HTTP 200 (or
    the whole answer's fields but ``ok``). ``gap``, when set, is the rate limit itself: a
    post within that many seconds of the channel's last one gets a 429 saying to wait them. ``members`` are the
    workspace's users ``users.info`` knows (form-encoded, as Slack reads it), each looked-up id in ``looked_up``;
    ``groups`` its user groups' members by group id, which ``usergroups.users.list`` lists, each listed group in
    ``listed`` (``name_limits``, like ``limits``, users.info's 429s); ``scopes`` the token's, without ``users:read`` (``usergroups:read``) answered ``missing_scope`` as Slack
    does; ``slow`` the seconds both take to answer. ``hook`` is a ``handoff.notify_url`` that keeps its notices in
    ``notices``, after answering the statuses in ``hook_down``.
    """
    posts: list[dict[str, Any]] = []
    limits: list[str] = []
    down: list[int] = []
    calls: list[float] = []
    last_post: dict[str, float] = {}
    agents: list[str | None] = []  # each call's User-Agent

    async def post_message(request: web.Request) -> web.Response:
        calls.append(now := time.monotonic())
        agents.append(request.headers.get("User-Agent"))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if down:
            return web.Response(status=down.pop(0), text="upstream unavailable")
        if api.errors:
            answer = api.errors.pop(0)
            return web.json_response({"ok": False, **(answer if isinstance(answer, dict) else {"error": answer})})
        if limits:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": limits.pop(0)})
        message = await request.json()
        if refused := slack_refusal(message):
            return web.json_response({"ok": False, "error": refused})
        if api.gap and now - last_post.get(message["channel"], -api.gap) < api.gap:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(api.gap)})
        last_post[message["channel"]] = now
        posts.append(message)
        return web.json_response({"ok": True, "ts": "1700000001.000200"})

    async def users_info(request: web.Request) -> web.Response:
        user = (await request.post()).get("user")
        api.looked_up.append(user)
        await asyncio.sleep(api.slow)
        if api.name_limits:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": api.name_limits.pop(0)})
        if "users:read" not in api.scopes:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": "users:read"})
        if user not in api.members:
            return web.json_response({"ok": False, "error": "user_not_found"})
        return web.json_response({"ok": True, "user": {"id": user, **api.members[user]}})

    async def usergroup_members(request: web.Request) -> web.Response:
        group = (await request.post()).get("usergroup")
        api.listed.append(group)
        await asyncio.sleep(api.slow)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if "usergroups:read" not in api.scopes:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": "usergroups:read",
                                      "provided": ",".join(sorted(api.scopes))})
        if group not in api.groups:
            return web.json_response({"ok": False, "error": "no_such_subteam"})
        return web.json_response({"ok": True, "users": api.groups[group]})

    async def auth_test(request: web.Request) -> web.Response:
        api.auth_tested += 1
        return slack_auth_test(request, TOKEN, api.scopes)

    async def notified(request: web.Request) -> web.Response:
        if api.hook_down:
            return web.Response(status=api.hook_down.pop(0))
        api.notices.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_post("/api/users.info", users_info)
    app.router.add_post("/api/usergroups.users.list", usergroup_members)
    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/hook", notified)
    server = await aiohttp_server(app)
    api = SimpleNamespace(url=str(server.make_url("/api/")), posts=posts, limits=limits, down=down, errors=[], calls=calls,
                          gap=0.0,
                          agents=agents, members={}, looked_up=[], groups={}, listed=[], slow=0.0, name_limits=[],
                          notices=[], hook=str(server.make_url("/hook")), hook_down=[], auth_tested=0,
                          scopes=set(FULL_SCOPES))
    return api


def make_channel(bot: FakeBot, api_url: str, **settings: Any) -> SlackChannel:
    return SlackChannel(bot, {"signing_secret": SECRET, "bot_token": TOKEN, "api_url": api_url, **settings})


async def client_of(aiohttp_client: Any, channel: SlackChannel) -> Any:
    """A test client of a server that has ``channel``'s routes alone."""
    app = web.Application()
    app.add_routes(channel.routes())
    return await aiohttp_client(app)


async def on_a_store(aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path,
                     **settings: Any) -> tuple[FakeBot, SlackChannel, Any]:
    """A channel with ``settings`` whose bot keeps a real conversation store, and a client of it: what the channel
    writes there (the transcript, who has the customer) is read back from SQLite."""
    bot = FakeBot()
    bot.store = Store(tmp_path / "dialogues.db")
    channel = make_channel(bot, slack_api.url, **settings)
    return bot, channel, await client_of(aiohttp_client, channel)


async def limited_client(aiohttp_client: Any, channel: SlackChannel, per_minute: int) -> Any:
    """A client of ``channel`` behind the server's limits, at ``per_minute`` messages a conversation."""
    app = web.Application()
    app[LIMITS] = Limits(LimitsConfig(per_conversation_per_minute=per_minute), 65536)
    app.add_routes(channel.routes())
    return await aiohttp_client(app)


@pytest.fixture
async def slack(aiohttp_client: Any, slack_api: SimpleNamespace) -> AsyncIterator[SimpleNamespace]:
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url, max_body_bytes=4096)
    client = await client_of(aiohttp_client, channel)
    yield SimpleNamespace(bot=bot, channel=channel, client=client, posts=slack_api.posts, api=slack_api)
    await channel.close()


def event(event_id: str = "Ev1", text: str = "<@UBOT> how do I reset my password?", **fields: Any) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": event_id,
        "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
        "event": {"type": "message", "channel_type": "channel", "user": "U1", "channel": "C1", "ts": TS, "text": text, **fields},
    }


async def post(client: Any, payload: Any, *, timestamp: str | None = None, secret: str = SECRET,
               path: str = "/slack/events", content_type: str = "application/json", **headers: str) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    signed = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": slack_signature(secret, timestamp, body)}
    return await client.post(path, data=body, headers={"Content-Type": content_type, **signed, **headers})


def click(value: str = "/track_refund", trigger: str = "13345224609.738474920.8088930838d88f008e0", **fields: Any) -> bytes:
    """A block_actions interaction as Slack posts it: form-encoded, JSON in the ``payload`` field."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "shop"},
        "user": {"id": "U1", "username": "ada"},
        "trigger_id": trigger,
        "container": {"type": "message", "message_ts": "1700000001.000200", "channel_id": "C1", "thread_ts": TS},
        "channel": {"id": "C1", "name": "support"},
        "message": {"type": "message", "ts": "1700000001.000200", "thread_ts": TS, "text": "Refunds take 5 days."},
        "actions": [{"type": "button", "action_id": "deskbot_button_1", "block_id": "b1", "value": value,
                     "text": {"type": "plain_text", "text": "Track a refund"}, "action_ts": "1700000002.000300"}],
        **fields,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def attachment_click(action: dict[str, Any], trigger: str = "13345224609.738474920.8088930838d88f008e1") -> bytes:
    """An interactive_message interaction as Slack posts it for a legacy attachment's button or menu (an action's
    ``utter_message(attachment={..., "actions": [...]})``): no blocks, the message as ``original_message``."""
    payload = {
        "type": "interactive_message", "callback_id": "order_actions", "attachment_id": "1",
        "team": {"id": "T1", "domain": "shop"}, "channel": {"id": "C1", "name": "support"},
        "user": {"id": "U1", "name": "ada"}, "action_ts": "1700000002.000300", "message_ts": "1700000001.000200",
        "trigger_id": trigger, "actions": [action],
        "original_message": {"type": "message", "ts": "1700000001.000200", "thread_ts": TS, "text": "Your order:"},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def post_click(client: Any, body: bytes, **kwargs: Any) -> Any:
    return await post(client, body, path="/slack/interactions", content_type="application/x-www-form-urlencoded", **kwargs)


def test_published_signing_example() -> None:
    assert slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE
    now = int(DOC_TIMESTAMP)
    assert verify_slack_request(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, DOC_BODY, now + 300)
    assert not verify_slack_request(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, DOC_BODY, now + 301)
    assert not verify_slack_request(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, DOC_BODY + b"x", now)
    assert not verify_slack_request(DOC_SECRET, "not-a-number", DOC_SIGNATURE, DOC_BODY, now)
    assert not verify_slack_request(DOC_SECRET, DOC_TIMESTAMP, "v0=é", DOC_BODY, now)


async def test_url_verification(slack: SimpleNamespace) -> None:
    response = await post(slack.client, {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZ"})
    assert response.status == 200
    assert await response.json() == {"challenge": "3eZbrw1aBm2rZ"}


async def test_slack_holding_back_the_apps_events_is_said_in_the_log(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Slack stops sending a workspace's events to an app past 30,000 an hour, and says so once with app_rate_limited:
    deskbot acknowledged it and said nothing, and the customers' messages of the next minutes went unanswered."""
    response = await post(slack.client, {"type": "app_rate_limited", "token": "x", "team_id": "T1",
                                         "minute_rate_limited": 1518467820, "api_app_id": "A1"})
    assert response.status == 200
    assert "Slack holds back the events of workspace T1 since 2018-02-12 20:37 UTC" in caplog.text


async def test_acks_at_once_then_replies_in_thread(slack: SimpleNamespace) -> None:
    slack.bot.delay = 0.3
    started = time.monotonic()
    response = await post(slack.client, event())
    assert response.status == 200
    assert time.monotonic() - started < 0.25 and slack.posts == []  # acknowledged before the turn ran
    await slack.channel.close()  # waits for the background turn
    assert slack.posts == [{"channel": "C1", "text": "Use the reset link.", "thread_ts": TS,
                            "blocks": [{"type": "markdown", "text": "Use the reset link."}]}]
    [turn] = slack.bot.turns
    assert turn.text == "how do I reset my password?"  # the <@UBOT> mention is stripped
    assert turn.conversation_id == f"slack:T1:C1:{TS}"
    assert (turn.channel, turn.user) == ("slack", "U1")


async def test_the_model_reads_the_message_as_typed_not_slacks_markup(slack: SimpleNamespace) -> None:
    """Slack escapes &, < and > and wraps links and mentions in <…>; the turn (and so the store) gets the words."""
    await post(slack.client, event(text="<@UBOT> refund &amp; return for <https://shop.example/o/123|order 123> &lt;urgent&gt;, "
                                        "cc <#C9|billing> <!here> <https://shop.example/faq>"))
    await slack.channel.close()
    assert slack.bot.turns[0].text == ("refund & return for order 123 <urgent>, cc #billing @here "
                                       "https://shop.example/faq")


async def test_other_peoples_mentions_reach_the_model_as_a_word_and_the_transcript_by_name(
        slack: SimpleNamespace) -> None:
    """A customer's mention of someone else reached the model and the transcript as Slack's raw id ("@U07ABC"): an
    id the model never saw, and one the agents could not read. The model reads a neutral word; the transcript the
    name deskbot knows (a support team member's), else the name Slack wrote, else the id."""
    slack.channel._member_names["U07ABC"] = ("Ada", time.monotonic())
    await post(slack.client, event(text="<@UBOT> <@U07ABC> said <@U09XYZ> and <@U08|grace> would refund me"))
    await slack.channel.close()
    [turn] = slack.bot.turns
    assert turn.text == "@someone said @someone and @someone would refund me"
    assert turn.written == "@Ada said @U09XYZ and @grace would refund me"


async def test_the_people_a_message_mentions_are_named_in_the_transcript_by_a_server_that_never_met_them(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A server knew the names of the support team members who had written since it started, and no other: after a
    restart, a customer's "<@U07ABC> said…", and its edit, reached the transcript as "@U07ABC". Slack is asked for
    the names mentioned (users.info, each once); one it does not know keeps the name Slack wrote, else the id."""
    slack_api.members["U07ABC"] = {"name": "ada", "profile": {"display_name": "Ada"}}
    bot = logging_bot(tmp_path)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    sent = f"{time.time():.6f}"
    await post(client, event("Ev1", "<@UBOT> <@U07ABC> said <@U09XYZ> and <@U08|grace> would refund me", ts=sent))
    await post(client, event("Ev2", "", subtype="message_changed", ts=f"{time.time():.6f}", message={
        "type": "message", "user": "U1", "text": "<@U07ABC> said they would refund me", "ts": sent,
        "edited": {"user": "U1", "ts": f"{time.time():.6f}"}}))
    await channel.close()
    assert [t.written for t in bot.turns] == ["@Ada said @U09XYZ and @grace would refund me"]
    assert bot.store.history(f"slack:T1:C1:{sent}")[0]["text"] == "@Ada said they would refund me"
    assert sorted(slack_api.looked_up) == ["U07ABC", "U08", "U09XYZ"]  # Ada once, for the message and its edit
    bot.store.close()


async def test_names_slack_does_not_give_are_said_in_the_log_for_whom_they_are_missing(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Without users:read, a customer's mention of someone was kept by its id, and the log said only that the support
    team is shown by Slack user ids: the people customers mention are shown so too."""
    slack.api.scopes = {"chat:write"}
    await post(slack.client, event(text="<@UBOT> <@U07ABC> said you would refund me"))
    await slack.channel.close()
    assert slack.bot.turns[0].written == "@U07ABC said you would refund me"
    assert "the support team and the people customers mention are shown by their Slack user ids" in caplog.text


async def test_a_person_slack_does_not_know_is_not_looked_up_at_every_mention(
        slack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack answers user_not_found for one of another organisation's: deskbot forgot it, and each message that
    mentioned them asked Slack again and waited on it. It is remembered a while, within MAX_UNKNOWN ids, and the name
    Slack wrote in the mention still shows."""
    monkeypatch.setattr(slack_module, "MAX_UNKNOWN", 2, raising=False)
    for n, mentioned in enumerate(("<@U08|grace>", "<@U08|grace> <@U09XYZ>", "<@U10>", "<@U08|grace>")):
        await post(slack.client, event(f"Ev{n}", f"<@UBOT> {mentioned} said so", ts=f"1700000000.00010{n}"))
    await slack.channel.close()
    assert sorted(turn.written for turn in slack.bot.turns) == [
        "@U10 said so", "@grace @U09XYZ said so", "@grace said so", "@grace said so"]
    assert slack.api.looked_up == ["U08", "U09XYZ", "U10", "U08"]  # U08, the oldest, forgotten for U10: two are kept


async def test_a_name_slack_was_too_slow_to_give_is_asked_for_again_soon(
        slack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """One users.info call past its 1.5 seconds turned names off for ten minutes, as a missing scope does: every
    mention and colleague of the next ten minutes was shown by their id. A slow answer is no refusal: names are
    asked for again after a short pause."""
    monkeypatch.setattr(slack_module, "NAME_LOOKUP_S", 0.2)
    monkeypatch.setattr(slack_module, "NAME_SLOW_RETRY_S", 0.0, raising=False)
    slack.api.members["U07ABC"] = {"name": "ada", "profile": {"display_name": "Ada"}}
    slack.api.slow = 0.5
    await post(slack.client, event("Ev1", "<@UBOT> <@U07ABC> said you would refund me"))
    slack.api.slow = 0.0
    await post(slack.client, event("Ev2", "<@UBOT> <@U07ABC> said it again", ts="1700000000.000200"))
    await slack.channel.close()
    assert [turn.written for turn in slack.bot.turns] == ["@U07ABC said you would refund me", "@Ada said it again"]
    assert slack.api.looked_up == ["U07ABC", "U07ABC"]


async def test_two_messages_naming_the_same_person_at_once_ask_slack_once(slack: SimpleNamespace) -> None:
    """Two messages mentioning the same person while Slack looked them up each asked users.info, and each waited on
    its own answer: the second waits on the lookup under way, and both show the name."""
    slack.api.members["U07ABC"] = {"name": "ada", "profile": {"display_name": "Ada"}}
    slack.api.slow = 0.3
    await asyncio.gather(*(post(slack.client, event(f"Ev{n}", f"<@UBOT> <@U07ABC> said refund {n}",
                                                     ts=f"1700000000.00010{n}")) for n in range(2)))
    await slack.channel.close()
    assert sorted(turn.written for turn in slack.bot.turns) == ["@Ada said refund 0", "@Ada said refund 1"]
    assert slack.api.looked_up == ["U07ABC"]


async def test_a_message_of_many_mentions_asks_slack_for_the_first_names_alone(
        slack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message of thousands of mentions had Slack asked for each name at once, before any limit on the customer's
    messages: the app's users.info allowance went on one message. The first people it mentions are looked up."""
    monkeypatch.setattr(slack_module, "MAX_NAMES_A_MESSAGE", 3, raising=False)
    mentions = " ".join(f"<@U{n:02d}>" for n in range(1, 9))
    await post(slack.client, event("Ev1", f"<@UBOT> <@U02> {mentions} said so"))
    await slack.channel.close()
    assert sorted(slack.api.looked_up) == ["U01", "U02", "U03"]
    assert slack.bot.turns[0].written.startswith("@U02 @U01 @U02 @U03 @U04")


async def test_a_name_slack_is_rate_limiting_is_said_so_and_not_tried_again(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """users.info answered 429 was tried again after its Retry-After, within the lookup's 1.5 seconds: a warning
    of the retry for each name, then "no answer in time" where Slack had said it was rate limiting the app."""
    slack.api.members["U07ABC"] = {"name": "ada"}
    slack.api.name_limits.extend(["1", "1"])
    await post(slack.client, event("Ev1", "<@UBOT> <@U07ABC> and <@U08> said you would refund me"))
    await slack.channel.close()
    assert sorted(slack.api.looked_up) == ["U07ABC", "U08"] and "trying again" not in caplog.text
    [warning] = [r.getMessage() for r in caplog.records if "shown by their Slack user ids" in r.getMessage()]
    assert "users.info: rate limited (Retry-After 1s)" in warning


async def test_names_a_slow_slack_did_not_give_are_one_warning_for_a_message_of_many_mentions(
        slack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The lookups of a message's mentions fail together when Slack is slow: each wrote the same warning, four lines
    in the log for one message. One says it, until Slack gives a name again."""
    monkeypatch.setattr(slack_module, "NAME_LOOKUP_S", 0.2)
    monkeypatch.setattr(slack_module, "NAME_SLOW_RETRY_S", 0.0, raising=False)
    caplog.set_level(logging.INFO, logger="bot.channels.slack")
    slack.api.members["U07ABC"] = {"name": "ada"}
    slack.api.slow = 0.5
    await post(slack.client, event("Ev1", "<@UBOT> <@U07ABC>, <@U08>, <@U09> and <@U10> said you would refund me"))
    await post(slack.client, event("Ev2", "<@UBOT> <@U08> and <@U09> said it again", ts="1700000000.000200"))
    slack.api.slow = 0.0
    await post(slack.client, event("Ev3", "<@UBOT> <@U07ABC> said so", ts="1700000000.000300"))
    slack.api.slow = 0.5
    await post(slack.client, event("Ev4", "<@UBOT> <@U08> said so", ts="1700000000.000400"))
    slack.api.slow = 0.0
    await post(slack.client, event("Ev5", "<@UBOT> <@U11> said so", ts="1700000000.000500"))  # user_not_found
    slack.api.slow = 0.5
    await post(slack.client, event("Ev6", "<@UBOT> <@U09> said so", ts="1700000000.000600"))
    await slack.channel.close()
    assert [turn.written for turn in slack.bot.turns][2] == "@ada said so"
    # once for the first two messages, and once again after each answer of Slack's, a name or no such user
    assert caplog.text.count("are shown by their Slack user ids") == 3
    assert caplog.text.count("Slack gives names again:") == 2


async def test_a_mistyped_api_url_is_said_once_with_its_fix_and_names_come_back_once_mended(
        aiohttp_client: Any, slack_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """An api_url that is no Slack Web API answers 404: taken for a Slack that did not answer, names were asked again
    every 30 seconds, each time with a warning that said "HTTP 404" alone. It pauses them as a refusal does, is said
    once with its fix, and the names come back once the address answers."""
    monkeypatch.setattr(slack_module, "NAME_RETRY_S", 0.0)  # each message asks again, to show it is said once
    caplog.set_level(logging.INFO, logger="bot.channels.slack")
    slack_api.members["U07ABC"] = {"name": "ada", "profile": {"display_name": "Ada"}}
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url.replace("/api/", "/apii/"))
    client = await client_of(aiohttp_client, channel)
    for n in range(3):
        await post(client, event(f"Ev{n}", "<@UBOT> <@U07ABC> said so", ts=f"1700000000.00010{n}"))
    channel.api_url = slack_api.url  # mended (a proxy's route, say)
    await post(client, event("Ev9", "<@UBOT> <@U07ABC> said so", ts="1700000000.000900"))
    await channel.close()
    assert [turn.written for turn in bot.turns] == ["@U07ABC said so"] * 3 + ["@Ada said so"]
    [warning] = [r.getMessage() for r in caplog.records if "shown by their Slack user ids" in r.getMessage()]
    assert "users.info: HTTP 404 (no Slack Web API at http://127.0.0.1" in warning
    assert "/apii/: set channels.slack.api_url, or DESKBOT_SLACK_API_URL, to Slack's, https://slack.com/api/" in warning
    assert "asked again in 0 minutes" in warning and "Slack gives names again:" in caplog.text


@pytest.mark.parametrize("token, path, said", [
    (TOKEN, "/api/", "INFO Slack: the bot token is the bot user deskbot (UBOT) of workspace Shop (T1)"),
    ("xoxb-revoked", "/api/", "ERROR Slack refused the bot token at start (auth.test: invalid_auth (the bot token is "
     "not valid: reinstall the app to the workspace and set channels.slack.bot_token, or DESKBOT_SLACK_BOT_TOKEN, to its "
     "Bot User OAuth Token)): no answer reaches Slack's customers, each handed to an agent as undelivered, until it "
     "is set right"),
    (TOKEN, "/slack-api/", "ERROR Slack refused the bot token at start (auth.test: HTTP 404 (no Slack Web API at "
     "{url}slack-api/: set channels.slack.api_url, or DESKBOT_SLACK_API_URL, to Slack's, https://slack.com/api/, or "
     "leave it unset)): no answer reaches Slack's customers, each handed to an agent as undelivered, until it is set "
     "right"),
])
async def test_the_bot_token_and_api_url_are_checked_with_slack_at_start(
        slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture, token: str, path: str, said: str) -> None:
    """A revoked or mistyped bot token, or an api_url with no Slack there, showed only when the first customer's
    answer failed, and that customer was handed to an agent as undelivered. Slack is asked at start (auth.test), and
    the log says who the token is, or what to fix; the bot learns its own user id, before any event names it."""
    caplog.set_level(logging.INFO, logger="bot.channels.slack")
    channel = SlackChannel(FakeBot(), {"signing_secret": SECRET, "bot_token": token,
                                       "api_url": slack_api.url.replace("/api/", path)})
    channel.start()
    await channel.close()
    base = slack_api.url.removesuffix("api/")
    assert [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "bot.channels.slack"] == [
        said.format(url=base)]
    assert slack_api.auth_tested == (path == "/api/")
    assert channel.own_user_ids == ({"UBOT"} if "INFO" in said else set())


async def test_a_slack_out_of_reach_at_start_is_said_with_the_address_to_check(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack not answering at start (a mistyped host, no way out of the server) is said, naming api_url."""
    monkeypatch.setattr(SlackChannel, "pause_before_retry", lambda self, seconds: asyncio.sleep(0))
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api/"
    channel = make_channel(FakeBot(), url)
    channel.start()
    await channel.close()
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "at start" in r.getMessage()]
    assert line.startswith("Slack could not be reached at start (auth.test: ") and (
        f"check channels.slack.api_url (or DESKBOT_SLACK_API_URL), now {url}, and that this "
        "server can reach it" in line)


@pytest.mark.parametrize("lacking, team_users, said", [
    ({"channels:history", "users:read"}, [], "lacks the scopes channels:history, users:read (OAuth & Permissions, Bot "
     "Token Scopes; then reinstall the app to the workspace): without channels:history, a channel's messages are heard "
     "only where they mention the bot (app_mention), replies in a thread too (a customer's answer to the bot's "
     "question, what they write to an agent), and their edits and deletions not at all: a message its customer "
     "deleted stays in the transcript; without users:read, colleagues and the people customers mention are shown by "
     "their Slack user ids"),
    ({"usergroups:read"}, ["S1"], "lacks the scope usergroups:read (OAuth & Permissions, Bot Token Scopes; then "
     "reinstall the app to the workspace): without usergroups:read, the members of team_users' user groups are "
     "answered as customers"),
    ({"usergroups:read"}, ["U7"], None),
])
async def test_the_scopes_the_bot_token_lacks_are_said_at_start(
        slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture, lacking: set[str], team_users: list[str],
        said: str | None) -> None:
    """An app without channels:history cannot subscribe to message.channels: it hears mentions alone, and Slack sends
    no app_mention for a deletion, so a customer's deleted message (their card number, sent by mistake) stayed in the
    transcript, learnt from, and nothing said why. Slack names the token's scopes in its answer to auth.test: the
    start says those missing, and what goes amiss without each."""
    slack_api.scopes -= lacking
    channel = make_channel(FakeBot(), slack_api.url, team_users=team_users)
    channel.start()
    await channel.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == (
        [f"Slack: the bot token {said}"] if said else [])


def test_a_404_at_slacks_own_address_is_not_said_to_be_a_mistyped_api_url() -> None:
    """A 404 from https://slack.com/api/ (a method Slack does not have) was said to be no Slack Web API there, and to
    set api_url to that same address."""
    assert make_channel(FakeBot(), "")._not_api(404) == ""
    assert "no Slack Web API at https://proxy.example/slack/:" in make_channel(
        FakeBot(), "https://user:secret@proxy.example/slack/")._not_api(404)  # the proxy's password left out


async def test_retries_produce_exactly_one_reply(slack: SimpleNamespace) -> None:
    for retry in ("", "1", "2"):
        headers = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        assert (await post(slack.client, event(), **headers)).status == 200
    await slack.channel.close()
    assert len(slack.posts) == 1 and len(slack.bot.turns) == 1


async def test_slacks_retries_are_said_in_the_log(slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Slack sends an event again where deskbot did not answer it 200 within 3 seconds (down, restarting, failing):
    deskbot answered it once and said nothing, and an admin asking why an answer came a minute late, or why Slack
    turned the app's events off, found nothing in the log."""
    await post(slack.client, event(), **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await post(slack.client, event())  # a first delivery, coming later: not one Slack sent again
    await slack.channel.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "Slack sent event Ev1 again (its retry 1, http_timeout): deskbot did not answer an earlier delivery with 200 "
        "within 3 seconds (the server down or restarting, or an error); its message is answered once"]
    assert len(slack.posts) == 1


async def test_a_message_the_store_could_not_keep_is_answered_when_slack_retries(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Its 500 makes Slack send it again, which was then taken for a duplicate: never stored, never answered.
    Nor may the lost attempt count against the conversation's limit: at one message a minute, the retry
    was dropped as a second message."""
    bot = FakeBot()
    store_failing_once(bot, tmp_path / "dialogues.db")
    channel = make_channel(bot, slack_api.url)
    client = await limited_client(aiohttp_client, channel, 1)
    assert (await post(client, event())).status == 500
    assert (await post(client, event(), **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})).status == 200
    assert (await post(client, event(), **{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"})).status == 200
    await channel.close()
    assert len(bot.turns) == 1 and len(slack_api.posts) == 1


async def test_a_retry_while_the_first_delivery_waits_on_the_store_is_answered_if_that_one_fails(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Slack retries as soon as three seconds pass, and a store waiting on a lock takes up to thirty. The
    retry was acknowledged at once as a duplicate; the first delivery then failed, and Slack, told 200,
    never sent the message again: never stored, never answered."""
    bot, held = FakeBot(), asyncio.Event()
    waiting = store_failing_once(bot, tmp_path / "dialogues.db", held)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    first = asyncio.create_task(post(client, event()))
    await waiting.wait()
    retry = asyncio.create_task(post(client, event(), **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))
    await asyncio.sleep(0.3)
    assert not retry.done()  # it waits to learn whether the first was kept
    held.set()
    assert (await first).status == 500 and (await retry).status == 200
    await channel.close()
    assert len(bot.turns) == 1 and len(slack_api.posts) == 1


async def test_mention_delivered_as_message_and_app_mention_answers_once(slack: SimpleNamespace) -> None:
    await post(slack.client, event("Ev1"))
    mention = event("Ev2", text="<@UBOT|deskbot> how do I reset my password?")
    mention["event"]["type"] = "app_mention"
    await post(slack.client, mention)
    await slack.channel.close()
    assert len(slack.posts) == 1


async def test_a_mention_added_by_an_edit_is_answered_once(slack: SimpleNamespace) -> None:
    """In a channel where the app hears mentions alone (``app_mention``, for a busy channel), a customer who forgot
    the @mention and added it by an edit, as people do, heard nothing: the mention comes marked edited, and was taken
    for a message answered already. A message answered already is not answered again for its edit."""
    sent, answered = f"{time.time():.6f}", f"{time.time() - 1:.6f}"
    edited = {"type": "app_mention", "edited": {"user": "U1", "ts": f"{time.time():.6f}"}}
    await post(slack.client, event("Ev1", "<@UBOT> where is my refund?", ts=sent, **edited))
    await post(slack.client, event("Ev2", "<@UBOT> where is my refund now?", ts=sent, **edited))  # edited again
    await post(slack.client, event("Ev3", "how do I reset my password?", ts=answered))  # message.channels: answered
    await post(slack.client, event("Ev4", "<@UBOT> how do I reset my password?", ts=answered, **edited))
    await slack.channel.close()
    assert [t.text for t in slack.bot.turns] == ["where is my refund?", "how do I reset my password?"]
    assert [p["thread_ts"] for p in slack.posts] == [sent, answered]


async def test_a_bare_mention_is_asked_for_a_question_and_its_edit_answered(
        aiohttp_client: Any, slack: SimpleNamespace, tmp_path: Path) -> None:
    """A customer who only mentioned the bot (``@deskbot``, to start) heard nothing back: the mention removed, no
    words were left, and the message was dropped. They are asked for their question, once for both of Slack's
    deliveries; an edit that adds the question is answered, as a mention added by an edit is. In a thread a person
    has, the agent sees it instead."""
    sent = f"{time.time():.6f}"
    await post(slack.client, event("Ev1", "<@UBOT>", ts=sent))
    await post(slack.client, event("Ev2", "<@UBOT|deskbot> ", ts=sent, type="app_mention"))
    edited = {"type": "app_mention", "edited": {"user": "U1", "ts": f"{time.time():.6f}"}}
    await post(slack.client, event("Ev3", "<@UBOT> where is my refund?", ts=sent, **edited))
    await slack.channel.close()
    assert [t.text for t in slack.bot.turns] == ["where is my refund?"]
    assert [(p["thread_ts"], p["text"]) for p in slack.posts] == [
        (sent, "Hi! What can I help you with? Please type your question."), (sent, slack.bot.text)]
    bot, channel, client = await on_a_store(aiohttp_client, slack.api, tmp_path)
    bot.store.add_message(f"slack:T1:C1:{TS}", "user", "where is my parcel?", "slack")
    bot.store.set_status(f"slack:T1:C1:{TS}", "handed_off", "requested", "slack")
    await post(client, event("Ev4", "<@UBOT>", ts="1700000001.000200", thread_ts=TS))
    await channel.close()
    assert len(slack.posts) == 2 and [m["text"] for m in bot.store.history(f"slack:T1:C1:{TS}")] == [
        "where is my parcel?", "[mentioned the bot]"]
    bot.store.close()


async def test_reply_in_an_existing_thread(slack: SimpleNamespace) -> None:
    await post(slack.client, event(text="and for the admin?", thread_ts="1699999999.000001"))
    await slack.channel.close()
    assert slack.bot.turns[0].conversation_id == "slack:T1:C1:1699999999.000001"
    assert slack.posts[0]["thread_ts"] == "1699999999.000001"


@pytest.mark.parametrize(
    "fields",
    [{"bot_id": "B1"}, {"subtype": "bot_message"}, {"user": "UBOT"}, {"subtype": "message_changed"},
     {"type": "app_mention", "edited": {"user": "U1", "ts": "1700000900.000100"}},
     {"text": "\u200b"}, {"text": "<@UBOT> refund \ud800"}, {"user": ["U1"]}, {"channel": {"id": "C1"}},
     {"channel": "C\ud800"}, {"text": {"a": 1}},
     # a reminder set with /remind #support, as Slack delivers it: Slackbot's, with no bot_id
     {"user": "USLACKBOT", "text": "Reminder: check the refund queue."}],
    ids=["bot_id", "bot_message", "own_user", "edit", "edited_mention", "nothing_to_read", "half_a_surrogate_pair", "user_not_a_string",
         "channel_not_a_string", "half_a_surrogate_pair_in_an_id", "text_not_a_string", "slackbots_reminder"],
)
async def test_bot_and_non_user_messages_are_ignored(slack: SimpleNamespace, fields: dict[str, str]) -> None:
    assert (await post(slack.client, event(**fields))).status == 200
    await slack.channel.close()
    assert slack.bot.turns == [] and slack.posts == []


async def test_a_direct_message_is_one_conversation_answered_where_the_customer_writes(slack: SimpleNamespace) -> None:
    """Each top-level message of a DM was a conversation of its own, answered in a thread under it: a customer
    answering the bot's question at the top level, as people write in a DM, started over and lost it."""
    dm = {"channel": "D1", "channel_type": "im"}
    for n, text in enumerate(("where is my order?", "123")):
        await post(slack.client, event(f"Ev{n}", text, ts=f"170000000{n}.000100", **dm))
    await post(slack.client, event("Ev9", "and in a thread", ts="1700000009.000100", thread_ts="1700000000.000100", **dm))
    await post_click(slack.client, click(container={"type": "message", "message_ts": "1700000003.000200",
                                                     "channel_id": "D1"}, channel={"id": "D1"}))
    in_a_thread = {"type": "message", "message_ts": "1700000004.000200", "channel_id": "D1",
                   "thread_ts": "1700000000.000100"}
    await post_click(slack.client, click(trigger="t2", container=in_a_thread, channel={"id": "D1"}))
    await slack.channel.close()
    assert {t.conversation_id for t in slack.bot.turns} == {"slack:T1:D1:"} and len(slack.bot.turns) == 5
    # at the top level, where the customer writes; in the thread for the message written, or button clicked, in one
    assert sorted(p.get("thread_ts") or "" for p in slack.posts) == ["", "", "", "1700000000.000100", "1700000000.000100"]


async def test_an_agent_and_the_handoff_notices_answer_a_dm_customer_in_the_thread_they_write_in(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A customer who asked for a person in a thread of the DM got the bot's answer there, and the agent's "joined"
    notice and replies at the top level, away from their question; they go where the customer wrote last."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    dm, thread = {"channel": "D1", "channel_type": "im"}, "1700000000.000100"
    await post(client, event("Ev1", "I want a person", ts="1700000005.000100", thread_ts=thread, **dm))
    await channel._tasks.close(grace=5)  # answered; the channel serves on
    conversation = "slack:T1:D1:"
    await channel.send(conversation, "Ana has joined.", role="bot", buttons=[{"title": "Back", "payload": "/resume"}])
    await channel.send(conversation, "Which order is it?", role="agent", author="Ana")
    await post(client, event("Ev2", "order 123", ts="1700000007.000100", **dm))  # now at the top level
    await channel._tasks.close(grace=5)
    await channel.send(conversation, "Found it.", role="agent", author="Ana")
    await channel.close()
    assert [(p["blocks"][0]["text"], p.get("thread_ts")) for p in slack_api.posts] == [
        (bot.text, thread), ("Ana has joined.", thread), ("**Ana:** Which order is it?", thread),
        (bot.text, None), ("**Ana:** Found it.", None)]


async def test_an_agents_reply_goes_to_the_dm_thread_after_a_restart_and_from_another_server(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """The thread a DM's customer wrote in was kept in the memory of the server that heard them: after a restart, or
    sent by a second server on the same store, an agent's reply went to the DM's top level, away from the question."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    dm, thread = {"channel": "D1", "channel_type": "im"}, "1700000000.000100"
    await post(client, event("Ev1", "I want a person", ts="1700000005.000100", thread_ts=thread, **dm))
    await channel.close()
    other = make_channel(FakeBot(), slack_api.url)  # the server started again, or another beside it
    other.bot.store = Store(tmp_path / "dialogues.db")
    await other.send("slack:T1:D1:", "Which order is it?", role="agent", author="Ana")
    await other.send("slack:T1:C1:1700000009.000100", "Hello", role="agent", author="Ana")  # a channel's own thread
    await other.close()
    assert [(p["text"], p.get("thread_ts")) for p in slack_api.posts] == [
        (bot.text, thread), ("Ana: Which order is it?", thread), ("Ana: Hello", "1700000009.000100")]


async def test_an_agents_reply_to_a_dm_goes_out_where_the_store_cannot_say_its_thread(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store that cannot be read for the thread the customer wrote in last leaves the agent's reply at the DM's top
    level, said in the log, rather than failing it."""
    _bot, channel, _client = await on_a_store(aiohttp_client, slack_api, tmp_path)

    def unreadable(*_args: Any) -> str:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "reply_thread", unreadable)
    await channel.send("slack:T1:D1:", "Which order is it?", role="agent", author="Ana")
    await channel.close()
    assert [(p["text"], p.get("thread_ts")) for p in slack_api.posts] == [("Ana: Which order is it?", None)]
    assert "goes to its DM's top level, as the store could not say" in caplog.text


async def test_an_answer_owed_by_a_stopped_server_goes_to_the_dm_thread_its_message_was_written_in(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """The next server posted it at the top level: the kept message's metadata names the thread."""
    _bot, channel, _client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    kept = {"conversation_id": "slack:T1:D1:", "reply": "Your parcel left today.", "buttons": [], "text": "where?",
            "reply_turn": None, "id": None, "metadata": {"channel": "D1", "ts": "1700000005.000100",
                                                         "answer_in": "1700000000.000100"}}
    channel.redeliver(kept)
    await channel.close(grace=5)
    assert [(p["text"], p.get("thread_ts")) for p in slack_api.posts] == [("Your parcel left today.", "1700000000.000100")]


async def test_a_group_dm_is_answered_as_a_channel_in_a_thread_under_each_message(slack: SimpleNamespace) -> None:
    """A group DM the bot is added to (message.mpim) is no direct message with one customer: it is answered as a
    channel is, each message a conversation of its own, in a thread under it (docs/channels.md, step 5)."""
    await post(slack.client, event("Ev1", "where is my order?", channel="G1", channel_type="mpim"))
    await slack.channel.close()
    assert [t.conversation_id for t in slack.bot.turns] == [f"slack:T1:G1:{TS}"]
    assert [(p["channel"], p["thread_ts"]) for p in slack.posts] == [("G1", TS)]


async def test_a_support_team_member_writing_to_the_bot_in_a_dm_is_answered(
        aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    """A colleague named in team_users who wrote to the bot in a direct message, to try it, heard nothing: their words
    and clicks were taken as notes in a customer's thread, where a DM has no customer but them."""
    channel = make_channel(FakeBot(), slack_api.url, team_users=["U7"])
    client = await client_of(aiohttp_client, channel)
    dm = {"channel": "D1", "channel_type": "im", "user": "U7"}
    await post(client, event("Ev1", "where is my order?", **dm))
    await post_click(client, click(user={"id": "U7", "username": "ada"}, channel={"id": "D1"},
                                   container={"type": "message", "message_ts": "1700000003.000200", "channel_id": "D1"}))
    await channel.close()
    assert [(t.conversation_id, t.user) for t in channel.bot.turns] == [("slack:T1:D1:", "U7")] * 2
    assert len(slack_api.posts) == 2


async def test_close_waits_for_answers_in_flight_up_to_its_grace(slack: SimpleNamespace) -> None:
    slack.bot.delay = 0.5
    await post(slack.client, event("Ev1"))
    await slack.channel.close(grace=5)
    assert len(slack.posts) == 1  # acknowledged to Slack, so answered before the server stops
    slack.bot.delay = 5
    await post(slack.client, event("Ev2", ts="1700000002.000100"))
    started = time.monotonic()
    await slack.channel.close(grace=0.2)
    assert time.monotonic() - started < 2 and len(slack.posts) == 1  # not waited for past the grace


async def test_overlong_message_is_cut(aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url, max_message_chars=10)
    await post(await client_of(aiohttp_client, channel), event(text="<@UBOT> " + "y" * 50))
    await channel.close()
    assert bot.turns[0].text == "y" * 10


async def test_slacks_requests_refused_for_another_secret_or_a_clock_off_are_said_in_the_log(
        aiohttp_client: Any, slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Slack's check of the Request URL, then every event, got a 401 when signing_secret held another of the app's
    secrets, or when the server's clock was minutes off: the log said nothing, and the admin had Slack's "Your URL
    didn't respond" alone. One warning a minute says which; a request without Slack's signature says nothing."""
    verification = {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZ"}
    for _ in range(3):
        assert (await post(slack.client, verification, secret="the-client-secret")).status == 401
    assert (await slack.client.post("/slack/events", json=verification)).status == 401
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "Slack's request to /slack/events was refused (401): its signature is not made with channels.slack.signing_secret "
        "(or DESKBOT_SLACK_SIGNING_SECRET): if every request of Slack's is refused so, set it to the app's Signing Secret "
        "(Basic Information, App Credentials), not its Client Secret or Verification Token"]
    caplog.clear()
    behind = make_channel(FakeBot(), slack.api.url)  # another server, whose clock is 7 minutes behind Slack's
    client = await client_of(aiohttp_client, behind)
    assert (await post(client, verification, timestamp=str(int(time.time()) + 420))).status == 401
    await behind.close()
    [clock] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert re.fullmatch(r"Slack's request to /slack/events was refused \(401\): it was signed 4[12]\d s after the time "
                        r"of this server's clock, more than the 300 s allowed: if every request of Slack's is refused "
                        r"so, set this server's clock right \(NTP\)", clock), clock


async def test_why_a_forged_request_was_refused_is_worked_out_only_when_the_log_says_it(
        slack: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Working it out signs the body again: a flood of forged requests had it done for each, said or not."""
    worked_out = []
    monkeypatch.setattr("bot.channels.slack.refusal", lambda *args: worked_out.append(args) or "a wrong secret")
    verification = {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZ"}
    for _ in range(3):
        assert (await post(slack.client, verification, secret="the-client-secret")).status == 401
    assert len(worked_out) == 1


async def test_silent_reply_sends_nothing(slack: SimpleNamespace) -> None:
    slack.bot.text, slack.bot.source = "", "silent"
    await post(slack.client, event())
    await slack.channel.close()
    assert len(slack.bot.turns) == 1 and slack.posts == []


async def test_stale_timestamp_is_rejected(slack: SimpleNamespace) -> None:
    response = await post(slack.client, event(), timestamp=str(int(time.time()) - 301))
    assert response.status == 401
    for odd in ("9" * 400, f" {int(time.time())}", "1_7" + str(int(time.time()))[3:]):  # 400 digits: a 500 before
        assert (await post(slack.client, event(), timestamp=odd)).status == 401
    await slack.channel.close()
    assert slack.bot.turns == []


async def test_wrong_or_missing_signature_is_rejected(slack: SimpleNamespace) -> None:
    assert (await post(slack.client, event(), secret="not-the-secret")).status == 401
    response = await slack.client.post("/slack/events", data=json.dumps(event()))
    assert response.status == 401
    # A signature header that is not UTF-8 (aiohttp keeps its bytes as surrogates) is wrong, not a crash.
    reader, writer = await asyncio.open_connection(slack.client.host, slack.client.port)
    writer.write(f"POST /slack/events HTTP/1.1\r\nHost: localhost\r\nX-Slack-Request-Timestamp: {int(time.time())}\r\n".encode()
                 + b"X-Slack-Signature: v0=\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert (await reader.read()).startswith(b"HTTP/1.1 401")
    writer.close()
    await slack.channel.close()
    assert slack.bot.turns == []


async def test_malformed_json_is_400(slack: SimpleNamespace) -> None:
    response = await post(slack.client, b"{not json")
    assert response.status == 400 and "malformed JSON" in await response.text()
    assert (await post(slack.client, b"[1, 2]")).status == 400
    response = await post(slack.client, b"[" * 2000 + b"]" * 2000)  # deeper than Python's parser goes
    assert response.status == 400 and "nested too deeply" in await response.text()


async def test_a_thread_reply_sent_to_the_channel_and_a_message_with_a_file_are_answered(slack: SimpleNamespace) -> None:
    await post(slack.client, event("Ev1", subtype="thread_broadcast", thread_ts="1699999999.000001"))
    await post(slack.client, event("Ev2", text="where is my refund? receipt attached", subtype="file_share",
                                   ts="1700000001.000200"))
    await slack.channel.close()
    assert [t.text for t in slack.bot.turns] == ["how do I reset my password?", "where is my refund? receipt attached"]
    assert len(slack.posts) == 2


async def test_a_message_written_with_slash_me_is_the_customers_own(slack: SimpleNamespace) -> None:
    """Slack shows "/me is still waiting" as the customer's message, in italics; its ``me_message`` subtype was ignored,
    in a DM and a thread alike: not answered, and never in the transcript of an agent holding the customer."""
    await post(slack.client, event("Ev1", "is still waiting for order 123", subtype="me_message", channel="D1",
                                   channel_type="im"))
    await post(slack.client, event("Ev2", "<@UBOT> is still waiting", subtype="me_message", ts="1700000001.000200"))
    await slack.channel.close()
    assert [(t.conversation_id, t.text) for t in slack.bot.turns] == [
        ("slack:T1:D1:", "is still waiting for order 123"), ("slack:T1:C1:1700000001.000200", "is still waiting")]
    assert len(slack.posts) == 2


async def test_a_file_sent_with_words_is_answered_by_its_words_and_noted_for_the_agent(slack: SimpleNamespace) -> None:
    """A screenshot sent with a caption was answered by its caption, and the agent reading the conversation never
    learnt a file came with it; the words are the message, and the file is noted beside them, in their language."""
    picture = [{"id": "F1", "name": "error.png", "mimetype": "image/png"}]
    pdf = [{"id": "F2", "name": "receipt.pdf", "mimetype": "application/pdf"}, *picture]
    await post(slack.client, event("Ev1", "where is my refund?", subtype="file_share", files=picture))
    await post(slack.client, event("Ev2", "我的退款呢", subtype="file_share", files=pdf, ts="1700000001.000200"))
    await slack.channel.close()
    assert [(t.text, t.attached) for t in slack.bot.turns] == [("where is my refund?", "[picture]"), ("我的退款呢", "[文件]")]


async def test_a_picture_sent_alone_is_answered_with_the_hint_or_shown_to_the_agent(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A screenshot with no words was dropped: the customer heard nothing back, and an agent who had the thread
    never learnt it came. As on WeCom, the bot asks for words; a person who has the thread sees "[picture]"."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    held, cid = "1699999999.000001", f"slack:T1:C1:{TS}"
    bot.store.add_message(f"slack:T1:C1:{held}", "user", "where is my parcel?", "slack")
    bot.store.set_status(f"slack:T1:C1:{held}", "handed_off", "requested", "slack")
    files = [{"id": "F1", "name": "error.png", "mimetype": "image/png", "permalink": "https://shop.slack.com/files/F1"}]
    for n, thread in enumerate((TS, held)):
        await post(client, event(f"Ev{n}", text="", subtype="file_share", files=files, ts=f"170000000{n}.000200",
                                 thread_ts=thread))
    await post(client, event("Ev0", text="", subtype="file_share", files=files, ts="1700000000.000200", thread_ts=TS))
    await channel.close()
    assert bot.turns == [] and [(p["thread_ts"], p["text"]) for p in slack_api.posts] == [
        (TS, "Sorry, I can only read text messages. Please type your question.")]
    assert [m["text"] for m in bot.store.history(f"slack:T1:C1:{held}")] == ["where is my parcel?", "[picture]"]
    assert bot.store.conversation(cid) is None
    bot.store.close()


async def test_an_agents_reply_follows_a_picture_sent_alone_into_a_dm_thread(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A customer an agent holds who sent a screenshot alone in a thread of the DM, their question under it, got the
    agent's answer at the top level: a message without words did not say where they wrote last."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    cid, thread = "slack:T1:D1:", "1700000000.000100"
    bot.store.add_message(cid, "user", "where is my parcel?", "slack")
    bot.store.set_status(cid, "handed_off", "requested", "slack")
    files = [{"id": "F1", "name": "error.png", "mimetype": "image/png"}]
    await post(client, event("Ev1", text="", subtype="file_share", files=files, ts="1700000005.000100",
                             thread_ts=thread, channel="D1", channel_type="im"))
    await channel.send(cid, "Thanks, I see the error.", role="agent", author="Ana")
    await channel.close()
    assert [m["text"] for m in bot.store.history(cid)] == ["where is my parcel?", "[picture]"]
    assert [(p["text"], p.get("thread_ts")) for p in slack_api.posts] == [("Ana: Thanks, I see the error.", thread)]
    bot.store.close()


async def test_screenshots_sent_one_after_another_are_told_the_hint_once_until_words_come(
        slack: SimpleNamespace) -> None:
    """A customer who pasted three screenshots one after another, each its own message, was told three times in a
    row that the bot reads text alone. They are told once; words answered since, a picture alone is told again."""
    files = [{"id": "F1", "name": "error.png", "mimetype": "image/png"}]
    for n in range(3):
        await post(slack.client, event(f"Ev{n}", "", subtype="file_share", files=files, ts=f"170000000{n}.000200",
                                       thread_ts=TS))
    await post(slack.client, event("Ev3", "it fails at checkout", ts="1700000003.000200", thread_ts=TS))
    await post(slack.client, event("Ev4", "", subtype="file_share", files=files, ts="1700000004.000200", thread_ts=TS))
    await slack.channel.close()
    hint = "Sorry, I can only read text messages. Please type your question."
    assert sorted(p["text"] for p in slack.posts) == sorted([hint, slack.bot.text, hint])  # answered in the background


async def test_screenshots_reaching_two_servers_on_one_store_are_told_the_hint_once_until_words_come(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Two servers on one store each remembered for itself whom it had told the hint: two screenshots, one reaching
    each, were both told it, and words written to one server had the other go on taking the customer for told. The
    store remembers it for both, and forgets it once the customer writes words, on either."""
    servers = [await on_a_store(aiohttp_client, slack_api, tmp_path) for _ in range(2)]
    files = [{"id": "F1", "name": "error.png", "mimetype": "image/png"}]
    # a screenshot to each server, words to the second, then a screenshot to each again
    for n, (server, words) in enumerate([(0, ""), (1, ""), (1, "it fails at checkout"), (0, ""), (1, "")]):
        fields = {} if words else {"subtype": "file_share", "files": files}
        await post(servers[server][2], event(f"Ev{n}", words, ts=f"170000000{n}.000200", thread_ts=TS, **fields))
    for bot, channel, _ in servers:
        await channel.close()
        bot.store.close()
    hint = "Sorry, I can only read text messages. Please type your question."
    assert sorted(p["text"] for p in slack_api.posts) == sorted([hint, servers[1][0].text, hint])


async def test_mentions_of_the_bot_alone_one_after_another_are_asked_for_a_question_once_until_words_come(
        slack: SimpleNamespace) -> None:
    """A customer in a thread who mentioned the bot alone, then again, was asked for their question at each. They are
    asked once, a screenshot in between told its own hint; words answered since, a mention alone is asked again."""
    files = [{"id": "F1", "name": "error.png", "mimetype": "image/png"}]
    for n, fields in enumerate([{}, {"subtype": "file_share", "files": files}, {}]):
        await post(slack.client, event(f"Ev{n}", "<@UBOT>" if not fields else "", ts=f"170000000{n}.000200",
                                       thread_ts=TS, **fields))
    await post(slack.client, event("Ev3", "<@UBOT> it fails at checkout", ts="1700000003.000200", thread_ts=TS))
    await post(slack.client, event("Ev4", "<@UBOT>", ts="1700000004.000200", thread_ts=TS))
    await slack.channel.close()
    asked, hint = "Hi! What can I help you with? Please type your question.", \
        "Sorry, I can only read text messages. Please type your question."
    assert sorted(p["text"] for p in slack.posts) == sorted([asked, hint, slack.bot.text, asked])


async def test_a_message_shared_without_words_is_answered_with_the_hint(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A customer who shared a Slack message with the bot (an error a colleague posted, say) without a word of their
    own heard nothing back: its text is empty, the shared message an attachment. As for a file, the bot asks for
    words, and the transcript notes the "[link]" beside a shared message's words."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    shared = [{"is_share": True, "is_msg_unfurl": True, "channel_id": "C9", "ts": "1699999999.000001",
               "author_id": "U7", "text": "Payment failed: card declined", "fallback": "[Payment failed]"}]
    await post(client, event("Ev1", "", attachments=shared, channel="D1", channel_type="im"))
    await post(client, event("Ev2", "why did this fail?", attachments=shared, channel="D1", channel_type="im",
                             ts="1700000001.000200"))
    await channel.close()
    assert [(t.text, t.attached) for t in bot.turns] == [("why did this fail?", "[link]")]
    assert [p["text"] for p in slack_api.posts] == ["Sorry, I can only read text messages. Please type your question.",
                                                    bot.text]
    bot.store.close()


def logging_bot(tmp_path: Path, held: asyncio.Event | None = None, handoff: str | None = None) -> FakeBot:
    """A bot on a real store that logs each exchange with the message it answers, as the engine does; once ``held``
    is set, where one is given (the engine still working on the message meanwhile). With a ``handoff`` reason, each
    answer hands the conversation to a person."""
    bot = FakeBot()
    bot.store = Store(tmp_path / "dialogues.db")

    async def logged(turn: Turn) -> Reply:
        bot.turns.append(turn)
        if held is not None:
            await held.wait()
        shown = turn.shown if turn.shown != turn.text else None
        bot.store.log_exchange(Exchange(turn.conversation_id, "slack", turn.user, turn.text, shown, bot.text, None, 0.1,
                                        [], "handoff" if handoff else "fallback", "v0001", pending_id=turn.pending_id,
                                        handoff=handoff))
        return Reply(text=bot.text)

    bot.handle = logged  # type: ignore[method-assign]
    return bot


async def test_a_message_the_customer_deletes_or_edits_is_removed_or_replaced_in_the_store(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A customer who deleted a message in Slack (one with their address, say) still had it kept in full, shown to
    agents and learnt from; one who corrected a message had the first wording kept. Neither is answered again."""
    bot = logging_bot(tmp_path)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    cid, reply = f"slack:T1:C1:{TS}", "1700000001.000100"
    await post(client, event("Ev1", "send it to 12 Harbour Road, Leeds"))
    await post(client, event("Ev2", "where is my refnd?", ts=reply, thread_ts=TS))
    await channel.close()
    await post(client, event("Ev3", "", subtype="message_changed", ts="1700000002.000100", message={
        "type": "message", "user": "U1", "text": "where is my refund? <@UBOT>", "ts": reply, "thread_ts": TS,
        "edited": {"user": "U1", "ts": "1700000002.000100"}, "files": [{"id": "F1", "mimetype": "image/png"}]}))
    bot.store.add_labels([bot.store.history(cid)[0]["id"]], "oos")  # a reviewer labelled it: learnt from at retrain
    unfurled = {"type": "message", "user": "U1", "text": "changed without an edit", "ts": reply, "thread_ts": TS}
    await post(client, event("Ev4", "", subtype="message_changed", ts="1700000003.000100", message=unfurled))
    await post(client, event("Ev5", "", subtype="message_deleted", ts="1700000004.000100", deleted_ts=TS,
                             hidden=True, previous_message={"type": "message", "user": "U1", "text": "send it", "ts": TS}))
    await channel.close()
    assert len(bot.turns) == len(slack_api.posts) == 2
    assert [(m["role"], m["text"]) for m in bot.store.history(cid)] == [
        ("user", "[deleted]"), ("bot", bot.text), ("user", "where is my refund?\n[picture]"), ("bot", bot.text)]
    assert not bot.store.db.execute("SELECT 1 FROM turns WHERE text LIKE '%Harbour%' OR raw_text LIKE '%Harbour%' "
                                    "OR text LIKE '%refnd%'").fetchall()
    assert bot.store.labels() == []
    bot.store.close()


@pytest.mark.parametrize("deleted_first", [False, True])
async def test_a_message_deleted_as_it_is_answered_is_deleted_in_the_store(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, deleted_first: bool) -> None:
    """A message deleted within a second of being sent kept its text: its deletion came while the bot still worked on
    it, before the message was a turn of the conversation, or came before the message itself, and changed nothing.
    One edited meanwhile kept its first words. Someone else's edit elsewhere in the channel is not kept."""
    held = asyncio.Event()
    bot = logging_bot(tmp_path, held)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    sent, later, elsewhere = (f"{time.time() + n:.6f}" for n in range(3))

    def edit(event_id: str, user: str, text: str, ts: str, **fields: Any) -> dict[str, Any]:
        return event(event_id, "", subtype="message_changed", message={
            "type": "message", "user": user, "text": text, "ts": ts, "edited": {"user": user, "ts": later}, **fields})

    deletion = event("Ev2", "", subtype="message_deleted", ts=later, deleted_ts=sent, hidden=True,
                     previous_message={"type": "message", "user": "U1", "text": "call me on 07700 900123", "ts": sent})
    for payload in [edit("Ev3", "U2", "see you at 5", elsewhere),  # no customer's: none of the store's
                    *[deletion, event("Ev1", "call me on 07700 900123", ts=sent)][:: -1 if not deleted_first else 1],
                    event("Ev4", "my refnd?", ts=later, thread_ts=sent),
                    edit("Ev5", "U1", "my refund?", later, thread_ts=sent)]:
        assert (await post(client, payload)).status == 200
    held.set()
    await channel.close()
    assert [(m["role"], m["text"]) for m in bot.store.history(f"slack:T1:C1:{sent}")] == [
        ("user", "[deleted]"), ("user", "my refund?"), ("bot", bot.text)]  # the deleted one's answer is not sent
    assert sorted(bot.store.db.execute("SELECT key FROM pending").fetchall()) == [  # the changes made and gone
        (f"slack:ts:C1:{sent}",), (f"slack:ts:C1:{later}",)]
    assert not bot.store.db.execute("SELECT 1 FROM turns WHERE text LIKE '%07700%' OR raw_text LIKE '%07700%'").fetchall()
    bot.store.close()


async def test_a_message_deleted_before_its_answer_goes_out_is_not_answered(
        aiohttp_client: Any, slack_api: SimpleNamespace, small_bot: Path, tmp_path: Path) -> None:
    """The bot posted its answer into the thread of a message the customer had deleted while it worked on it (their
    address sent by mistake, say): the customer saw a reply to nothing. Nor is the conversation an agent's: the
    engine took the answer the store did not keep for a takeover."""
    root = configured_copy(small_bot, tmp_path / "bot", channels={"slack": {
        "signing_secret": SECRET, "bot_token": TOKEN, "api_url": slack_api.url}})
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    classify, sent = bot.batcher.submit, f"{time.time():.6f}"

    async def deleted_meanwhile(text: str) -> Any:
        assert (await post(client, event("Ev2", "", subtype="message_deleted", ts=f"{time.time():.6f}", deleted_ts=sent,
                                         hidden=True))).status == 200
        return await classify(text)

    bot.batcher.submit = deleted_meanwhile
    assert (await post(client, event("Ev1", "where is my parcel? I live at 12 Harbour Road", ts=sent))).status == 200
    await bot.channels["slack"].close()
    cid = f"slack:T1:C1:{sent}"
    assert slack_api.posts == []
    assert [(t["role"], t["text"]) for t in bot.store.history(cid)] == [("user", "[deleted]")]
    assert bot.store.conversation(cid)["status"] == "open"
    assert not bot.store.db.execute("SELECT 1 FROM pending WHERE answered IS NULL").fetchall()  # not owed at a restart


@pytest.mark.parametrize("handoff", [None, "requested"])
async def test_an_answer_queued_behind_slacks_pacing_is_not_posted_once_its_message_is_deleted(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, handoff: str | None) -> None:
    """Slack takes about one post a second in a channel, so an answer waits behind the one before it: a customer who
    deleted their message meanwhile (their card number sent by mistake, say) still got a reply to nothing. Its
    transcript says the answer was not delivered, and nothing is owed to them at a restart. A handoff it made is
    taken back: the customer who deleted their "talk to a person" waited in the agents' inbox, and would have been
    told the agents were busy. The agents told of the handoff (handoff.notify_url) are told it is withdrawn."""
    bot = logging_bot(tmp_path, handoff=handoff)
    bot.notifier = HandoffNotifier(slack_api.hook, reference=lambda cid: bot._store(bot.store.reference, cid))
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    first, second = f"{time.time():.6f}", f"{time.time() + 1:.6f}"
    slack_api.limits.append("1")  # the first answer waits a second for its turn, the second behind it
    await post(client, event("Ev1", "where is my parcel?", ts=first))
    await post(client, event("Ev2", "my card is 4929 1234 5678 9012", ts=second))
    cid = f"slack:T1:C1:{second}"
    while len(bot.store.history(cid)) < 2:  # answered, and waiting its turn to be posted
        await asyncio.sleep(0.01)
    assert slack_api.posts == []
    await post(client, event("Ev3", "", subtype="message_deleted", ts=f"{time.time():.6f}", deleted_ts=second,
                             hidden=True))
    while not slack_api.posts:  # the first answer, posted once its second passed
        await asyncio.sleep(0.01)
    await channel.close()
    assert [p["thread_ts"] for p in slack_api.posts] == [first]
    assert [(t["role"], t["text"], t["undelivered"]) for t in bot.store.transcript(cid)["turns"]] == [
        ("user", "[deleted]", False), ("bot", bot.text, True)]
    assert bot.store.conversation(cid)["status"] == "open"
    assert [c["conversation_id"] for c in bot.store.inbox("handed_off", 10)[0]] == (
        [f"slack:T1:C1:{first}"] if handoff else [])
    assert not bot.store.db.execute("SELECT 1 FROM pending WHERE answered IS NULL").fetchall()
    await bot.notifier.close()  # the notices on their way arrive
    ref = bot.store.reference(cid)  # made for the withdrawal: the employee's ids are not the room's to read
    assert slack_api.notices == ([{
        "event": "withdrawn", "reference": ref, "channel": "slack", "reason": "deleted", "console": f"/agent#ref={ref}",
        "text": f"A customer on slack no longer waits for a person (deleted): /agent#ref={ref}"}] if handoff else [])
    bot.store.close()


async def test_a_handoffs_withdrawal_reaches_the_agents_after_the_handoff_it_takes_back(
        slack_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handoff notice that handoff.notify_url could not take at once (a chat room's webhook restarting) was tried
    again a second later, and the withdrawal made meanwhile reached the agents first: the handoff after it stood,
    a customer who no longer waits. A conversation's notices arrive in the order they were made; another
    conversation's do not wait for them."""
    monkeypatch.setattr(notify_module, "RETRY_DELAY_S", 0.2)
    slack_api.hook_down.append(503)
    notifier = HandoffNotifier(slack_api.hook, reference=lambda cid: asyncio.sleep(0, f"ref-{cid[-1]}"))
    notifier.handed_off("slack:T1:C1:1", "slack", "requested")
    notifier.withdrawn("slack:T1:C1:1", "slack")
    notifier.handed_off("slack:T1:C1:2", "slack", "requested")
    while len(slack_api.notices) < 3:  # the first tried again, taken, then the withdrawal
        await asyncio.sleep(0.01)
    await notifier.close()
    assert [(n["reference"], n["event"]) for n in slack_api.notices] == [
        ("ref-2", "handed_off"), ("ref-1", "handed_off"), ("ref-1", "withdrawn")]


async def test_a_handoff_is_queued_for_the_agents_before_a_deletion_can_withdraw_it(slack_api: SimpleNamespace) -> None:
    """The handoff notice was queued once every channel had shown the change (a web page's socket, a read of the
    store): a deletion that took the handoff back meanwhile queued its withdrawal first, and the agents were told of
    the handoff after it, a customer who no longer waits."""
    showing, shown = asyncio.Event(), asyncio.Event()

    class SlowToShow:
        async def status_changed(self, *args: Any) -> None:
            showing.set()
            await shown.wait()

    bot = SimpleNamespace(store=None, channels={"web": SlowToShow()}, notifier=HandoffNotifier(slack_api.hook))
    announcing = asyncio.create_task(Bot.announce(bot, "slack:T1:C1:1", True, "undelivered", "slack"))
    await showing.wait()
    bot.notifier.withdrawn("slack:T1:C1:1", "slack")  # its customer deleted the message meanwhile
    shown.set()
    await announcing
    await bot.notifier.close()
    assert [n["event"] for n in slack_api.notices] == ["handed_off", "withdrawn"]


async def test_no_withdrawal_reaches_the_agents_for_a_handoff_given_up_at_shutdown(
        slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """A handoff notice handoff.notify_url could not take, given up as the server stopped, was followed by its
    withdrawal, which the receiver took: the agents were told a customer no longer waits, of whom they never heard."""
    caplog.set_level(logging.INFO, logger="deskbot")
    slack_api.hook_down.append(503)
    notifier = HandoffNotifier(slack_api.hook)
    notifier.handed_off("slack:T1:C1:1", "slack", "requested")
    while slack_api.hook_down:  # its first try refused: it waits to be tried again
        await asyncio.sleep(0.01)
    notifier.withdrawn("slack:T1:C1:1", "slack")
    await notifier.close()
    notifier.withdrawn("slack:T1:C1:1", "slack")  # a deletion processed after it, too
    await notifier.close()
    assert slack_api.notices == []
    assert f"handoff notice for {log_tag('slack:T1:C1:1')}: its withdrawal is not posted, as http://" in caplog.text


@pytest.mark.parametrize("answer", ["timeout", 500, 404])
async def test_a_withdrawal_follows_a_handoff_notice_the_agents_may_have_had(
        aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, answer: str | int) -> None:
    """A handoff notice that handoff.notify_url never answered in time (or answered 500) may have been posted in the
    agents' room all the same, but its withdrawal was dropped as if the receiver never had it: the agents looked for a
    customer who no longer waited. Only a notice the receiver surely refused (a 404) goes without its withdrawal."""
    monkeypatch.setattr(notify_module, "RETRY_DELAY_S", 0.01)
    had: list[str] = []
    withdrawn, hanging = asyncio.Event(), asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        notice = await request.json()
        had.append(notice["event"])
        if notice["event"] == "withdrawn":
            withdrawn.set()
            return web.Response(status=204)
        if answer == "timeout":
            await hanging.wait()  # taken in, and never answered
        return web.Response(status=answer if isinstance(answer, int) else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    notifier = HandoffNotifier(str(server.make_url("/hook")), timeout=0.2)
    notifier.handed_off("slack:T1:C1:1", "slack", "requested")
    notifier.withdrawn("slack:T1:C1:1", "slack")
    if answer != 404:  # refused at once, the handoff's withdrawal is dropped
        await asyncio.wait_for(withdrawn.wait(), 5)
    await notifier.close()
    hanging.set()
    assert had == ["handed_off"] * (1 if answer == 404 else 3) + ([] if answer == 404 else ["withdrawn"])


async def test_no_hint_or_notice_is_posted_for_a_message_its_customer_deleted(
        aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    """A deleted message's answer was withheld, but the channel's own words for it still went out: the hint to a
    bare mention whose deletion Slack delivered first, and a hint or a notice to wait queued behind Slack's pacing
    as the customer deleted the message. Their thread got a reply to nothing."""
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url)
    client = await limited_client(aiohttp_client, channel, 1)
    first, mention, flood, gone = (f"{time.time() + n:.6f}" for n in range(4))

    def deletion(event_id: str, ts: str) -> dict[str, Any]:
        return event(event_id, "", subtype="message_deleted", ts=f"{time.time():.6f}", deleted_ts=ts, hidden=True)

    slack_api.limits.append("1")  # the first answer waits a second for its turn, the rest behind it
    await post(client, event("Ev1", "where is my parcel?", ts=first))
    while not slack_api.calls:  # refused once, and waiting
        await asyncio.sleep(0.01)
    await post(client, event("Ev2", "<@UBOT>", ts=mention))
    await post(client, event("Ev3", "where is it?", ts=flood, thread_ts=first))  # over the limit: told to wait
    for n, ts in enumerate((mention, flood)):
        await post(client, deletion(f"Ev{4 + n}", ts))
    await post(client, deletion("Ev6", gone))  # Slack sends a message and its deletion in any order
    await post(client, event("Ev7", "<@UBOT>", ts=gone))
    while not slack_api.posts:
        await asyncio.sleep(0.01)
    await channel.close()
    assert [p["text"] for p in slack_api.posts] == [bot.text]
    assert [t.text for t in bot.turns] == ["where is my parcel?"]


async def test_oversize_body_is_413(slack: SimpleNamespace) -> None:
    assert (await post(slack.client, event(text="x" * MIN_EVENT_BYTES))).status == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(MIN_EVENT_BYTES // 1000 + 1):
            yield b"x" * 1000

    response = await slack.client.post("/slack/events", data=chunked())
    assert response.status == 413


async def test_a_long_message_slack_takes_is_read_and_cut_not_refused(
        aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    """The event carries the text twice (text and rich_text blocks), escaped: past server.max_body_bytes at
    10,000 Chinese characters, refused with 413 three times, and lost without a word."""
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url, max_body_bytes=65536, max_message_chars=4000)
    limits = Limits(LimitsConfig(), 65536)
    limits.callbacks = frozenset({"/slack/events"})  # as create_app marks a configured platform's callbacks
    app = web.Application(middlewares=[limits.middleware])
    app.add_routes(channel.routes())
    client = await aiohttp_client(app)
    text = "我的订单还没到，" * 2500
    blocks = [{"type": "rich_text", "elements": [{"type": "rich_text_section",
                                                   "elements": [{"type": "text", "text": text}]}]}]
    long = event(text=text, blocks=blocks)
    assert len(json.dumps(long)) > 3 * 65536
    assert (await post(client, long)).status == 200
    await channel.close()
    assert [t.text for t in bot.turns] == [text[:4000]]


async def test_send_parses_its_own_conversation_id(slack: SimpleNamespace) -> None:
    await slack.channel.send("slack:T1:C9:1700000002.000300", "An agent will be with you shortly.")
    assert slack.posts[0]["channel"] == "C9" and slack.posts[0]["thread_ts"] == "1700000002.000300"
    assert slack.posts[0]["text"] == "An agent will be with you shortly."
    with pytest.raises(ValueError):
        await slack.channel.send("wecom:ww1:someone:x", "hi")


async def test_the_platform_is_told_deskbot_calls_not_which_aiohttp(slack: SimpleNamespace) -> None:
    """Every call named the Python and aiohttp versions it came from (``Python/3.11 aiohttp/3.14.5``), and so which
    of their published flaws a receiver, or anyone on the way, could try against deskbot."""
    await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    assert slack.api.agents == [f"deskbot/{version('deskbot')}"]


async def test_an_api_url_without_its_final_slash_still_reaches_the_method(slack_api: SimpleNamespace) -> None:
    """``api_url: https://slack.com/api`` sent every answer to https://slack.com/apichat.postMessage."""
    channel = make_channel(FakeBot(), slack_api.url.rstrip("/"))
    await channel.send(f"slack:T1:C1:{TS}", "hi")
    await channel.close()
    assert [p["text"] for p in slack_api.posts] == ["hi"]


async def test_send_with_a_bad_token_raises(slack_api: SimpleNamespace) -> None:
    """Slack's error says what to do where the fix is the app's token: "invalid_auth" alone, in the log of each answer
    that failed, left the operator to look it up."""
    channel = SlackChannel(FakeBot(), {"signing_secret": SECRET, "bot_token": "xoxb-wrong", "api_url": slack_api.url})
    with pytest.raises(SlackAPIError, match="invalid_auth .the bot token is not valid.*DESKBOT_SLACK_BOT_TOKEN"):
        await channel.send(f"slack:T1:C1:{TS}", "hi")
    await channel.close()


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", "[1, 2]"], ids=["html", "not_an_object"])
async def test_an_answer_that_is_not_a_json_object_is_a_delivery_error(aiohttp_server: Any, body: str) -> None:
    """A proxy's page or a wrong api_url answers 200 too: the agent must hear the customer did not get it."""
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", lambda _: web.Response(text=body, content_type="text/html"))
    server = await aiohttp_server(app)
    channel = make_channel(FakeBot(), str(server.make_url("/api/")))
    with pytest.raises(SlackAPIError, match="chat.postMessage: the answer is not a JSON object"):
        await channel.send(f"slack:T1:C1:{TS}", "hi")
    await channel.close()


def test_from_settings_needs_secrets_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SlackChannel.from_settings(FakeBot(), {}) is None
    with pytest.raises(ProjectError, match=r"^channels.slack: bot_token not set \(bot.yml, or DESKBOT_SLACK_BOT_TOKEN\) "
                                           "while signing_secret is: set it, or leave the channel off by setting none$"):
        SlackChannel.from_settings(FakeBot(), {"signing_secret": SECRET})  # a misspelt variable: said at start, not a 404
    monkeypatch.setenv("DESKBOT_SLACK_SIGNING_SECRET", "from-env")
    monkeypatch.setenv("DESKBOT_SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("DESKBOT_SLACK_API_URL", "http://127.0.0.1:1/api/")
    channel = SlackChannel.from_settings(FakeBot(), {"signing_secret": "from-yml"})
    assert channel is not None
    assert (channel.signing_secret, channel.bot_token, channel.api_url) == ("from-env", "xoxb-env", "http://127.0.0.1:1/api/")
    assert [route.path for route in channel.routes()] == ["/slack/events", "/slack/interactions"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("settings, said", [
    ({"bot_token": "xapp-1-A0123-4567-abcdef"}, "bot_token is an App-Level Token"),
    ({"bot_token": "xoxp-1234-5678-abcdef"}, "bot_token is a User OAuth Token"),
    ({"team_users": ["U07ABC", "@ada", "<@U08DEF>", "ada"]}, "team_users holds '@ada', '<@U08DEF>', 'ada', no Slack ids"),
])
def test_a_token_of_the_wrong_kind_or_a_team_member_named_otherwise_than_by_id_stops_the_start(
        settings: dict[str, Any], said: str) -> None:
    """An admin who pasted the app's App-Level Token got a channel whose every answer Slack refused (each conversation
    then handed to the agents as undelivered); one who pasted their User OAuth Token had the bot answer as
    themselves. A colleague named in team_users by name or by mention matched no one, and was answered as a customer.
    Each is said at start, with its fix."""
    with pytest.raises(ProjectError, match=re.escape(said)):
        SlackChannel.from_settings(FakeBot(), {"signing_secret": SECRET, "bot_token": TOKEN, **settings})
    assert SlackChannel.from_settings(FakeBot(), {"signing_secret": SECRET, "bot_token": "xoxe.xoxb-1-rotating",
                                                  "team_users": ["U07ABC", "W012A3CDE", "S0614TZR7"]}) is not None


async def test_secrets_set_with_a_line_break_after_them_are_read_without_it(
        aiohttp_client: Any, slack_api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret put in the environment from a file (a Kubernetes secret made with --from-file, an env file saved on
    Windows) ends in a line break: every request of Slack's got a 401, and every answer failed to be sent."""
    monkeypatch.setenv("DESKBOT_SLACK_SIGNING_SECRET", SECRET + "\n")
    monkeypatch.setenv("DESKBOT_SLACK_BOT_TOKEN", TOKEN + "\r\n")
    bot = FakeBot()
    channel = SlackChannel.from_settings(bot, {"api_url": slack_api.url})
    assert channel is not None
    client = await client_of(aiohttp_client, channel)
    assert (await post(client, event())).status == 200
    await channel.close()
    assert [p["text"] for p in slack_api.posts] == [bot.text]


# --- buttons: Block Kit out, interactions in ------------------------------------------------


async def test_template_buttons_become_block_kit_actions(slack: SimpleNamespace) -> None:
    slack.bot.text = "Refunds take **5–7 days**."
    slack.bot.buttons = [{"title": "Request a refund", "payload": "/get_refund"}, {"title": "Track a refund", "payload": "/track_refund"}]
    await post(slack.client, event())
    await slack.channel.close()
    [posted] = slack.posts
    assert posted["text"] == "Refunds take 5–7 days."  # the notification fallback, as plain text
    markdown, actions = posted["blocks"]
    assert markdown == {"type": "markdown", "text": "Refunds take **5–7 days**."}
    assert actions["type"] == "actions"
    assert [(b["type"], b["text"]["text"], b["value"]) for b in actions["elements"]] == [
        ("button", "Request a refund", "/get_refund"), ("button", "Track a refund", "/track_refund")]
    assert len({b["action_id"] for b in actions["elements"]}) == 2  # unique within the block


async def test_the_text_is_escaped_as_slack_asks(slack: SimpleNamespace) -> None:
    """An agent's "<!channel>" pinged the whole channel, and "Returns & refunds" began an entity."""
    await slack.channel.send(f"slack:T1:C1:{TS}", "Returns & refunds take <3 days> <!channel> <https://x.example|here>")
    [posted] = slack.posts
    assert posted["text"] == "Returns &amp; refunds take &lt;3 days&gt; &lt;!channel&gt; &lt;https://x.example|here&gt;"


async def test_buttons_without_text_are_posted(slack: SimpleNamespace) -> None:
    slack.bot.text = ""  # an action may offer buttons alone
    slack.bot.buttons = [{"title": "Track it", "payload": "/track_order"}]
    await post(slack.client, event())
    await slack.channel.close()
    [posted] = slack.posts
    [actions] = posted["blocks"]
    assert [b["value"] for b in actions["elements"]] == ["/track_order"]


async def test_a_custom_payload_of_block_kit_blocks_is_posted_after_the_text(slack: SimpleNamespace) -> None:
    """A Rasa bot's Slack responses are custom payloads of Block Kit blocks (a response's custom:, an action's
    json_message): Slack got the text alone, or nothing for a payload alone. Another payload is still left out.
    The text is shown too, as Rasa's Slack channel posts it: Slack shows a message's blocks alone, and an action's
    "Our bestseller:" before its blocks was only their notification."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "*Mug* 9.95"},
               "accessory": {"type": "image", "image_url": "https://shop.example/mug.png", "alt_text": "mug"}}
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"blocks": [section]}])  # a payload alone
    await slack.channel.send(f"slack:T1:C1:{TS}", "Hi", custom=[{"carousel": ["mug"]}, {"blocks": []}])
    # a payload's own text is its notification, as Rasa's Slack channel posts it
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"text": "Mug <9.95>", "blocks": [section]}])
    assert slack.posts == [{"channel": "C1", "text": "", "thread_ts": TS, "blocks": [section]},
                           {"channel": "C1", "text": "Hi", "thread_ts": TS, "blocks": [{"type": "markdown", "text": "Hi"}]},
                           {"channel": "C1", "text": "Mug &lt;9.95&gt;", "thread_ts": TS, "blocks": [section]}]
    slack.posts.clear()
    slack.bot.text, slack.bot.buttons = "Our bestseller: the mug <3", [{"title": "Buy it", "payload": "/buy"}]
    slack.bot.custom = [{"blocks": [section]}, {"carousel": ["mug"]}, {"blocks": [{"type": "divider"}]}]
    await post(slack.client, event())
    await slack.channel.close()
    assert slack.posts == [{"channel": "C1", "text": "Our bestseller: the mug &lt;3", "thread_ts": TS, "blocks": [
        {"type": "markdown", "text": "Our bestseller: the mug <3"}, section, {"type": "divider"},
        {"type": "actions", "block_id": f"slack:T1:C1:{TS}", "elements": [
            {"type": "button", "action_id": "deskbot_button_0", "text": {"type": "plain_text", "text": "Buy it",
                                                                         "emoji": True}, "value": "/buy"}]}]}]


async def test_an_actions_text_after_its_blocks_is_posted_after_them(slack: SimpleNamespace) -> None:
    """An action's text, its Block Kit blocks, then text again: both texts were posted before the blocks, in one
    message. Each of the action's messages is posted on its own, in its order, as Rasa's Slack channel posts them,
    the buttons under the last."""
    divider = {"blocks": [{"type": "divider"}]}
    slack.bot.text, slack.bot.custom = "Our mugs:\n\nAnything else?", [divider]
    slack.bot.buttons = [{"title": "Buy it", "payload": "/buy"}]
    slack.bot.parts = [{"text": "Our mugs:", "custom": []}, {"text": "", "custom": [divider]},
                       {"text": "Anything else?", "custom": []}]
    await post(slack.client, event())
    await slack.channel.close()
    assert [(posted["text"], [block["type"] for block in posted["blocks"]]) for posted in slack.posts] == [
        ("Our mugs:", ["markdown"]), ("", ["divider"]), ("Anything else?", ["markdown", "actions"])]


async def test_an_actions_slack_attachment_is_posted_as_the_messages_attachments(slack: SimpleNamespace) -> None:
    """An action's utter_message(attachment={...}), which Rasa's Slack channel posts as the message's attachments,
    reaches the channel as a custom payload of ``attachments``: it was not posted, and the customer missed it."""
    order = {"color": "#36a64f", "title": "Order 77", "text": "Shipped today"}
    slack.bot.text, slack.bot.custom = "Your order:", [{"attachments": [order]}]
    await post(slack.client, event())
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"attachments": [order]}])  # an attachment alone
    await slack.channel.close()
    assert [posted.get("attachments") for posted in slack.posts] == [[order], [order]]
    assert slack.posts[0]["blocks"] == [{"type": "markdown", "text": "Your order:"}] and "blocks" not in slack.posts[1]


async def test_a_reply_over_slacks_50_blocks_is_posted_in_several_messages(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """The shop's 50 blocks with deskbot's text and buttons made 52, and Slack refused the whole reply: the customer
    got nothing. They are posted in messages of at most 50 blocks, the buttons under the last, with a warning."""
    products = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*Mug {n}*"}} for n in range(50)]
    slack.bot.text, slack.bot.custom = "Our mugs:", [{"blocks": products}]
    slack.bot.buttons = [{"title": "Talk to a person", "payload": "/handoff"}]
    await post(slack.client, event())
    await slack.channel.close()
    first, last = slack.posts
    assert [len(first["blocks"]), len(last["blocks"])] == [50, 2] and first["text"] == "Our mugs:"
    assert first["blocks"][:2] == [{"type": "markdown", "text": "Our mugs:"}, products[0]]
    assert [b["type"] for b in last["blocks"]] == ["section", "actions"] and last["thread_ts"] == TS
    assert "a reply of 52 Slack blocks is posted in 2 messages" in caplog.text


async def test_a_long_answer_with_the_shops_markdown_blocks_is_posted_within_slacks_markdown_limit(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Slack counts a message's markdown blocks together, 12,000 characters at most: an answer's text of nearly that,
    with the shop's own markdown block under it, made one message Slack refused, and its customer got nothing. The
    shop's block goes in a message of its own after it, with the buttons."""
    paragraph = " ".join(["Returns are free within 30 days."] * 100)
    slack.bot.text = "\n\n".join([paragraph] * 3)  # 9,901 characters: one piece
    note = {"type": "markdown", "text": "**Note:** " + "Keep the receipt. " * 150}  # 2,710 characters
    slack.bot.custom = [{"blocks": [note]}]
    slack.bot.buttons = [{"title": "Talk to a person", "payload": "/handoff"}]
    await post(slack.client, event())
    await slack.channel.close()
    first, last = slack.posts
    assert first["blocks"] == [{"type": "markdown", "text": slack.bot.text}] and first["text"] == slack.bot.text
    assert [b["type"] for b in last["blocks"]] == ["markdown", "actions"] and last["blocks"][0] == note
    assert last["text"] == "Note: " + "Keep the receipt. " * 150  # what screen readers read
    assert last["thread_ts"] == first["thread_ts"] == TS
    assert "a reply of 3 Slack blocks is posted in 2 messages" in caplog.text


async def test_an_actions_payloads_built_alike_are_posted_though_their_block_ids_repeat(
        slack: SimpleNamespace) -> None:
    """Two product cards an action built alike (the same block_id), which Rasa's Slack channel posts each on its own,
    made one message with the id twice, and Slack refused the whole reply. The second card starts a message."""
    card = {"type": "section", "block_id": "product", "text": {"type": "mrkdwn", "text": "*Mug*"}}
    odd = {"type": "divider", "block_id": {"not": "a string"}}  # Slack's to refuse, not deskbot's to fail on
    slack.bot.text, slack.bot.custom = "Our mugs:", [{"blocks": [card, odd]}, {"blocks": [card]}]
    await post(slack.client, event())
    await slack.channel.close()
    assert [posted["blocks"] for posted in slack.posts] == [[{"type": "markdown", "text": "Our mugs:"}, card, odd],
                                                            [card]]


async def test_a_button_of_the_shops_blocks_is_answered_as_its_value_typed_unless_it_names_its_own_action(
        slack: SimpleNamespace) -> None:
    """As Rasa's Slack channel answers a click on a button of a custom payload's blocks with the button's value: the
    button, which names no action_id (Slack then names it), was posted and its clicks ignored as another app's."""
    buy = {"type": "button", "text": {"type": "plain_text", "text": "Buy"}, "value": "/buy"}
    approve = {**buy, "action_id": "approve"}  # the shop's own handler's
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Mug*"}, "accessory": buy},
              {"type": "actions", "elements": [buy, approve]}, {"type": "divider"}]
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"blocks": blocks}])
    assert slack.posts[0]["blocks"] == [
        {**blocks[0], "accessory": {**buy, "action_id": "deskbot_button_custom_0"}},
        {"type": "actions", "elements": [{**buy, "action_id": "deskbot_button_custom_1"}, approve]}, {"type": "divider"}]
    clicked = click("/buy", actions=[{"type": "button", "action_id": "deskbot_button_custom_1", "block_id": "x1",
                                      "value": "/buy", "action_ts": "1700000002.000300"}])
    assert (await post_click(slack.client, clicked)).status == 200
    await slack.channel.close()
    assert [(turn.text, turn.conversation_id) for turn in slack.bot.turns] == [("/buy", f"slack:T1:C1:{TS}")]


async def test_an_option_chosen_in_a_menu_of_the_shops_blocks_is_answered_as_its_value_typed(
        slack: SimpleNamespace) -> None:
    """Rasa's Slack channel answers a choice in a custom payload's menu (a static_select, an overflow) as the chosen
    option's value: deskbot ignored it as another app's, and the customer who picked a size heard nothing."""
    option = {"text": {"type": "plain_text", "text": "Large"}, "value": "/size_large"}
    size = {"type": "static_select", "placeholder": {"type": "plain_text", "text": "Size"}, "options": [option]}
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Tee*"}, "accessory": size}]}])
    [posted] = slack.posts[0]["blocks"]
    assert posted["accessory"] == {**size, "action_id": "deskbot_button_custom_0"}
    chosen = click("", actions=[{"type": "static_select", "action_id": "deskbot_button_custom_0", "block_id": "x1",
                                 "selected_option": option, "action_ts": "1700000002.000300"}])
    assert (await post_click(slack.client, chosen)).status == 200
    await slack.channel.close()
    assert [(turn.text, turn.conversation_id) for turn in slack.bot.turns] == [("/size_large", f"slack:T1:C1:{TS}")]


async def test_a_date_picked_in_the_shops_blocks_is_answered_as_the_date_typed(slack: SimpleNamespace) -> None:
    """Rasa's Slack channel answers a date picked in a custom payload's datepicker ("When should we deliver?") as the
    date typed: deskbot ignored it as another app's."""
    picker = {"type": "datepicker", "placeholder": {"type": "plain_text", "text": "Delivery day"}}
    await slack.channel.send(f"slack:T1:C1:{TS}", "", custom=[{"blocks": [{"type": "actions", "elements": [picker]}]}])
    assert slack.posts[0]["blocks"][0]["elements"] == [{**picker, "action_id": "deskbot_button_custom_0"}]
    picked = click("", actions=[{"type": "datepicker", "action_id": "deskbot_button_custom_0", "block_id": "x1",
                                 "selected_date": "2026-12-24", "action_ts": "1700000002.000300"}])
    assert (await post_click(slack.client, picked)).status == 200
    await slack.channel.close()
    assert [turn.text for turn in slack.bot.turns] == ["2026-12-24"]


async def sent_by_the_next_server(slack: SimpleNamespace, tmp_path: Path, question: str, reply: str | None,
                                  **answer: Any) -> None:
    """A customer's ``question``, which a stopped server answered (an action's ``reply`` and ``answer``'s other
    fields) and logged but did not send, delivered by the next server to start on the same store."""
    gone = Store(tmp_path / "dialogues.db")
    gone.serve()
    kept = gone.receive("slack:ts:C1:1.1", f"slack:T1:C1:{TS}", "slack", "U1", question, {})
    gone.log_exchange(Exchange(f"slack:T1:C1:{TS}", "slack", "U1", question, None, reply, "bestsellers", 0.9, [],
                               "action", "v0001", pending_id=kept, **answer))
    gone.close()  # stopped before Slack took the answer
    slack.bot.store = store = Store(tmp_path / "dialogues.db")
    store.serve()
    [owed] = store.adopt(["slack"])
    slack.channel.redeliver(owed)
    await slack.channel.close()
    store.close()


async def test_a_reply_of_block_kit_blocks_alone_is_posted_by_the_next_server_as_logged(
        slack: SimpleNamespace, tmp_path: Path) -> None:
    """A reply of an action's blocks alone, which a stopped server logged and did not send, is posted as it was
    answered, not as the agents' "[custom payload]"."""
    blocks = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Mug* 9.95"}}]}
    await sent_by_the_next_server(slack, tmp_path, "bestsellers?", None, custom=[blocks])
    assert slack.posts == [{"channel": "C1", "text": "", "thread_ts": TS, **blocks}]


async def test_an_actions_text_after_its_blocks_is_posted_after_them_by_the_next_server(
        slack: SimpleNamespace, tmp_path: Path) -> None:
    """An action's text, its blocks, then text again, which a stopped server logged and did not send: the next server
    posted both texts before the blocks, in one message. It posts each in the action's order, as the first would."""
    divider = {"blocks": [{"type": "divider"}]}
    await sent_by_the_next_server(slack, tmp_path, "mugs?", "Our mugs:\n\nAnything else?", custom=[divider],
                                  messages=[{"text": "Our mugs:"}, {"custom": divider}, {"text": "Anything else?"}])
    assert [(posted["text"], [block["type"] for block in posted["blocks"]]) for posted in slack.posts] == [
        ("Our mugs:", ["markdown"]), ("", ["divider"]), ("Anything else?", ["markdown"])]


async def test_a_message_the_next_server_answers_keeps_the_names_it_mentions_and_its_picture(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A message a stopped server had acknowledged and not answered went into the transcript, when the next server
    answered it, as the model reads it: "@someone" for each person the customer had named, and without the picture
    that came with it. The agents read it as the first server would have kept it."""
    bot = logging_bot(tmp_path, asyncio.Event())  # stopped mid-turn
    bot.store.serve()
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    channel._member_names["U07ABC"] = ("Ada", time.monotonic())
    await post(client, event("Ev1", "<@UBOT> <@U07ABC> said <@U08|grace> would refund me", subtype="file_share",
                             files=[{"id": "F1", "name": "chat.png", "mimetype": "image/png"}]))
    await channel.close(0)
    bot.store.close()
    following = logging_bot(tmp_path)
    following.store.serve()
    channel = make_channel(following, slack_api.url)
    for row in following.store.adopt(["slack"]):
        channel.resume(kept_turn(row))
    await channel.close()
    assert [t.text for t in following.turns] == ["@someone said @someone would refund me"]
    assert [(m["role"], m["text"]) for m in following.store.history(f"slack:T1:C1:{TS}")] == [
        ("user", "@Ada said @grace would refund me\n[picture]"), ("bot", following.text)]
    assert following.store.db.execute("SELECT 1 FROM pending WHERE shown IS NOT NULL").fetchall() == []  # answered
    following.store.close()


@pytest.mark.parametrize("before_the_restart", [True, False])
async def test_an_answer_owed_at_a_restart_is_not_posted_once_its_message_is_deleted(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, before_the_restart: bool) -> None:
    """An answer a stopped server logged and did not send was posted by the next server after its customer had deleted
    the message: their deletion reached the stopping server, or the next one while the answer waited its turn there."""
    sent = f"{time.time():.6f}"
    cid, key = f"slack:T1:C1:{sent}", f"slack:ts:C1:{sent}"
    gone = Store(tmp_path / "dialogues.db")
    gone.serve()
    kept = gone.receive(key, cid, "slack", "U1", "my card is 4929 1234 5678 9012", {})
    gone.log_exchange(Exchange(cid, "slack", "U1", "my card is 4929 1234 5678 9012", None, "Thanks, noted.", None, 0.9,
                               [], "fallback", "v0001", pending_id=kept))
    if before_the_restart:
        gone.replace_message(cid, key, None, None, True)
    gone.close()  # stopped before Slack took the answer
    bot = FakeBot()
    bot.store = store = Store(tmp_path / "dialogues.db")
    store.serve()
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    slack_api.limits.append("1")  # another thread's answer holds the channel for a second
    other = asyncio.create_task(channel.send(f"slack:T1:C1:{TS}", "Your parcel left today."))
    for owed in store.adopt(["slack"]):
        channel.redeliver(owed)
    await post(client, event("Ev2", "", subtype="message_deleted", ts=f"{time.time():.6f}", deleted_ts=sent,
                             hidden=True))
    await other
    await channel.close()
    assert [p["text"] for p in slack_api.posts] == ["Your parcel left today."]
    assert [(t["text"], t["undelivered"]) for t in store.transcript(cid)["turns"]] == [
        ("[deleted]", False), ("Thanks, noted.", True)]
    assert store.conversation(cid)["status"] == "open" and store.adopt(["slack"]) == []
    store.close()


def test_block_kit_limits() -> None:
    [_, actions, more] = message_blocks("hi", [{"title": "t" * 100, "payload": "/x"}] * 30, "slack:T1:C1:1.2")
    assert len(actions["elements"]) == 25 and len(actions["elements"][0]["text"]["text"]) == 75
    assert (actions["block_id"], more["block_id"], len(more["elements"])) == ("slack:T1:C1:1.2", "slack:T1:C1:1.2:1", 5)
    assert message_blocks("", []) == []


async def test_buttons_past_slacks_25_a_block_are_posted_and_answered_in_a_block_of_their_own(
        slack: SimpleNamespace) -> None:
    """Slack takes 25 buttons in an actions block, and the rest were dropped without a word: after a template's 25,
    the handoff's "Talk to a person" was the one lost. In a Slack Connect channel a colleague's click on it is still
    not the customer's."""
    slack.bot.buttons = [{"title": f"Size {n}", "payload": f"/size_{n}"} for n in range(25)] + [
        {"title": "Talk to a person", "payload": "/contact_human_agent"}]
    shared = {**event(), "team_id": "T2", "is_ext_shared_channel": True}
    shared["event"] = {**shared["event"], "user": "U2", "team": "T2", "user_team": "T2"}
    await post(slack.client, shared)
    await slack.channel.close()
    first, more = [b for b in slack.posts[0]["blocks"] if b["type"] == "actions"]
    assert len(first["elements"]) == 25 and [e["value"] for e in more["elements"]] == ["/contact_human_agent"]
    pressed = [{**more["elements"][0], "block_id": more["block_id"], "action_ts": "1700000002.000300"}]
    await post_click(slack.client, click(trigger="t1", actions=pressed, user={"id": "U7", "team_id": "T1"}))
    await post_click(slack.client, click(trigger="t2", actions=pressed, user={"id": "U2", "team_id": "T2"}))
    await slack.channel.close()
    assert [(t.user, t.text, t.conversation_id) for t in slack.bot.turns][1:] == [
        ("U2", "/contact_human_agent", f"slack:T1:C1:{TS}")]


async def test_a_long_answer_is_posted_in_pieces_with_its_buttons_under_the_last(slack: SimpleNamespace) -> None:
    """Over a markdown block's 12,000 characters, the answer went out as raw mrkdwn with no buttons, so the
    customer could not reach the person a button offered. The shop's own blocks go under the last piece too."""
    paragraph = " ".join(["Switching accounts is **easy**."] * 100)
    slack.bot.text = "\n\n".join([paragraph] * 5)  # 16,003 characters
    slack.bot.buttons = [{"title": "Talk to a person", "payload": "/handoff"}]
    slack.bot.custom = [{"blocks": [{"type": "divider"}]}]
    await post(slack.client, event())
    await slack.channel.close()
    first, last = slack.posts
    assert [b["type"] for b in first["blocks"]] == ["markdown"] and [b["type"] for b in last["blocks"]] == [
        "markdown", "divider", "actions"]
    texts = [posted["blocks"][0]["text"] for posted in slack.posts]
    assert all(len(t) <= MARKDOWN_LIMIT for t in texts) and "\n\n".join(texts) == slack.bot.text  # cut between paragraphs
    assert last["blocks"][2]["elements"][0]["value"] == "/handoff" and first["thread_ts"] == last["thread_ts"]
    assert message_pieces("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]  # no break to cut at
    assert message_pieces("one two three", 8) == ["one two", "three"]
    assert message_pieces("a" * 10 + "\n\n", 10) == ["a" * 10]  # no empty message, which Slack refuses
    assert message_pieces("", MARKDOWN_LIMIT) == [""]  # an answer of buttons alone
    link = "https://shop.example.com/track?order=12345"  # a "?" inside a link is no sentence's end
    assert message_pieces("word " * 15 + f"see {link} for more. x x x", 120) == [
        "word " * 15 + "see", f"{link} for more. x x x"]


def test_the_local_slack_refuses_blocks_of_too_much_text_as_slack_does() -> None:
    """As Slack measured (slackapi/bolt-js#2509): 13,297 characters of text pass in one block, each further block
    counting 125 (two blocks of text hold 13,172, a divider beside them 13,047), and one more is msg_blocks_too_long;
    a button's title counts as text too."""
    def message(markdown: int, section: int, divider: bool = False, button: str = "") -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [{"type": "markdown", "text": "a" * markdown},
                                        {"type": "section", "text": {"type": "mrkdwn", "text": "b" * section}}]
        blocks += [{"type": "divider"}] if divider else []
        blocks += [{"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": button},
                                                     "value": "/x"}]}] if button else []
        return {"channel": "C1", "text": "x", "blocks": blocks}

    assert slack_refusal(message(11_000, 2_172)) is None and slack_refusal(message(11_000, 2_047, divider=True)) is None
    assert slack_refusal(message(11_000, 2_173)) == slack_refusal(message(11_000, 2_048, divider=True)) == (
        "msg_blocks_too_long")
    assert slack_refusal(message(11_000, 2_100)) is None
    assert slack_refusal(message(11_000, 2_100, button="Talk to a person")) == "msg_blocks_too_long"
    emoji = {"channel": "C1", "text": "x", "blocks": [{"type": "markdown", "text": "😀" * 6_000}]}
    assert slack_refusal(emoji) is None and slack_refusal({**emoji, "blocks": [{"type": "markdown", "text": (
        "😀" * 6_000 + "字")}]}) == "invalid_blocks"  # 12,001 of Slack's characters, 6,001 of Python's


@pytest.mark.parametrize("character", ["a", "字", "😀"])
async def test_a_reply_fills_slacks_limits_to_the_character_as_slack_counts_them(
        aiohttp_client: Any, slack_api: SimpleNamespace, character: str) -> None:
    """Slack's limits were kept to an estimate, 13,000 characters with 125 more for every block, and counted as Python
    counts: a reply that fitted went in two messages, and one of emoji past 6,000, 12,000 as Slack counts, was refused
    whole. A message now holds 12,000 characters of markdown and 13,297 of text in all, each block after the first
    counting 125, as Slack counts them (an emoji two, a Chinese character one), and not one more."""
    width = utf16(character)
    full = character * (MARKDOWN_LIMIT // width)
    section = lambda n: {"type": "section", "text": {"type": "mrkdwn", "text": "b" * n}}  # noqa: E731
    for text, custom, messages in ((full, [], 1), (full + character, [], 2),
                                   (full, [section(13_297 - 12_000 - 125)], 1),
                                   (full, [section(13_297 - 12_000 - 125 + 1)], 2)):
        bot = FakeBot(text)
        bot.custom = [{"blocks": custom}] if custom else []
        channel = make_channel(bot, slack_api.url)
        await post(await client_of(aiohttp_client, channel), event())
        await channel.close()
        posted, slack_api.posts[:] = list(slack_api.posts), []
        assert len(posted) == messages and [slack_refusal(p) for p in posted] == [None] * messages
        assert "".join(b["text"] for p in posted for b in p["blocks"] if b["type"] == "markdown") == text
        assert [b for p in posted for b in p["blocks"] if b["type"] == "section"] == custom


async def test_a_shops_section_past_slacks_3000_characters_goes_in_several(slack: SimpleNamespace) -> None:
    """An action's product description of 3,500 characters in one section block had Slack refuse the whole reply
    (invalid_blocks): it goes in sections of 3,000 characters at most as Slack counts them, the first keeping the
    section's button, in order."""
    description = "。".join(["这款杯子容量大😀"] * 400)  # 3,599 of Python's characters, 3,999 as Slack counts them
    button = {"type": "button", "action_id": "shop_buy", "text": {"type": "plain_text", "text": "买"}, "value": "buy"}
    slack.bot.text = "Our mug:"
    slack.bot.custom = [{"blocks": [{"type": "section", "block_id": "mug", "accessory": button,
                                     "text": {"type": "mrkdwn", "text": description}}]}]
    await post(slack.client, event())
    await slack.channel.close()
    [posted] = slack.posts
    sections = [block for block in posted["blocks"] if block["type"] == "section"]
    assert slack_refusal(posted) is None and len(sections) == 2 and sections[0]["accessory"] == button
    assert [s.get("block_id") for s in sections] == ["mug", None]
    assert "".join(s["text"]["text"] for s in sections) == description


async def test_a_buttons_title_of_emoji_is_cut_to_what_slack_takes(slack: SimpleNamespace) -> None:
    """A title of 75 characters as Python counts them, emoji among them, passed Slack's 75 as it counts them, and
    Slack refused the whole answer: it is cut there, never inside an emoji."""
    slack.bot.buttons = [{"title": "📦 Track my order " + "🚚" * 40, "payload": "/track_order"}]
    await post(slack.client, event())
    await slack.channel.close()
    [posted] = slack.posts
    [title] = [e["text"]["text"] for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert slack_refusal(posted) is None and utf16(title) <= 75 and title.startswith("📦 Track my order 🚚")


async def test_a_long_answer_with_its_buttons_is_cut_so_that_they_fit_under_it(slack: SimpleNamespace) -> None:
    """Slack refuses a message whose blocks hold too much text in all, the buttons' titles included: an answer just
    under a markdown block's 12,000 characters with a template's 25 buttons under it was refused whole
    (msg_blocks_too_long), and its customer handed to a person as undelivered."""
    slack.bot.text = "\n\n".join([" ".join(["Returns are **free** within 30 days."] * 30)] * 11)[:11_990]
    slack.bot.buttons = [{"title": f"Option {n} " + "x" * 60, "payload": f"/choose{n}"} for n in range(25)]
    await post(slack.client, event())
    await slack.channel.close()
    assert [slack_refusal(posted) for posted in slack.posts] == [None, None]
    first, last = slack.posts
    assert [b["type"] for b in first["blocks"]] == ["markdown"] and [b["type"] for b in last["blocks"]] == [
        "markdown", "actions"]  # the buttons under the text's last piece
    assert "\n\n".join(posted["blocks"][0]["text"] for posted in slack.posts) == slack.bot.text.strip()
    assert len(last["blocks"][1]["elements"]) == 25


async def test_the_shops_blocks_of_too_much_text_in_all_go_on_in_another_message(slack: SimpleNamespace) -> None:
    """A Rasa bot's payload of 45 product sections, fewer than 50 blocks and no markdown past 12,000 characters, held
    too much text for one message (msg_blocks_too_long), and Slack refused the whole answer."""
    products = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*Mug {n}* " + "x" * 270}} for n in range(45)]
    slack.bot.text, slack.bot.custom = "Our mugs:", [{"blocks": products}]
    await post(slack.client, event())
    await slack.channel.close()
    assert [slack_refusal(posted) for posted in slack.posts] == [None, None]
    assert [block for posted in slack.posts for block in posted["blocks"]][1:] == products  # all of them, in order


async def test_button_click_is_answered_in_its_thread_once(slack: SimpleNamespace) -> None:
    for _ in range(2):  # a redelivered click (same trigger_id) is answered once
        response = await post_click(slack.client, click())
        assert response.status == 200
    await slack.channel.close()
    [turn] = slack.bot.turns
    assert (turn.text, turn.conversation_id, turn.user) == ("/track_refund", f"slack:T1:C1:{TS}", "U1")
    assert len(slack.posts) == 1 and slack.posts[0]["thread_ts"] == TS


async def test_a_click_on_a_legacy_attachments_button_or_menu_is_answered_as_its_value(slack: SimpleNamespace) -> None:
    """An action's Slack attachment with ``actions`` (buttons, a menu) is posted as Rasa's Slack channel posts it, and
    Slack answers a click on it with an interactive_message, which was left unanswered: it is answered as the
    button's value, or the chosen option's, typed, as Rasa answers it and as a Block Kit button's click is."""
    button = {"name": "order", "type": "button", "value": "/track_refund"}
    menu = {"name": "order", "type": "select", "selected_options": [{"value": "/cancel_order"}]}
    for body in (attachment_click(button), attachment_click(button),  # a redelivered click is answered once
                 attachment_click(menu, trigger="13345224609.738474920.8088930838d88f008e2"),
                 attachment_click({"name": "order", "type": "button"}, trigger="13345224609.7.1")):  # no value
        assert (await post_click(slack.client, body)).status == 200
    await slack.channel.close()
    assert [(turn.text, turn.conversation_id, turn.user) for turn in slack.bot.turns] == [
        ("/track_refund", f"slack:T1:C1:{TS}", "U1"), ("/cancel_order", f"slack:T1:C1:{TS}", "U1")]
    assert [posted["thread_ts"] for posted in slack.posts] == [TS, TS]


async def test_a_click_on_an_org_wide_install_is_answered_in_its_own_conversation(slack: SimpleNamespace) -> None:
    """On Enterprise Grid, Slack sends a click with "team": null: it went into a conversation of its own, so
    "Talk to a person" handed off an empty one while the bot went on answering the customer's thread."""
    slack.bot.buttons = [{"title": "Track a refund", "payload": "/track_refund"}]
    await post(slack.client, event())
    await slack.channel.close()
    [actions] = [b for b in slack.posts[0]["blocks"] if b["type"] == "actions"]
    assert actions["block_id"] == f"slack:T1:C1:{TS}"
    pressed = [{"type": "button", "action_id": "deskbot_button_0", "block_id": actions["block_id"],
                "value": "/track_refund", "action_ts": "1700000002.000300"}]
    elsewhere = [{**pressed[0], "block_id": f"slack:T9:C9:{TS}"}]  # not this thread's block: no team to take
    for trigger, taken in (("t1", pressed), ("t2", elsewhere)):
        await post_click(slack.client, click(trigger=trigger, team=None, actions=taken))
    await slack.channel.close()
    assert [t.conversation_id for t in slack.bot.turns] == [f"slack:T1:C1:{TS}"] * 2 + [f"slack::C1:{TS}"]
    # In a DM, a block posted before DMs were one conversation names its thread: the team is taken all the same.
    dm = {"type": "message", "message_ts": "1700000003.000200", "channel_id": "D1"}
    for trigger, block in (("t3", "slack:T1:D1:"), ("t4", f"slack:T1:D1:{TS}")):
        await post_click(slack.client, click(trigger=trigger, team=None, container=dm, channel={"id": "D1"},
                                             actions=[{**pressed[0], "block_id": block}]))
    await slack.channel.close()
    assert [t.conversation_id for t in slack.bot.turns[3:]] == ["slack:T1:D1:"] * 2


async def test_a_slack_connect_thread_is_one_conversation_whoever_writes_or_clicks(slack: SimpleNamespace) -> None:
    """In a Slack Connect channel an event's team_id is the workspace that shared the channel (the customer's,
    T2 here), not the one deskbot is installed in, while a click names the installed one: the customer's click
    on "Talk to a person" went to a conversation of its own, an empty one handed off while the bot went on
    answering the thread."""
    slack.bot.buttons = [{"title": "Talk to a person", "payload": "/contact_human_agent"}]
    shared = {**event(), "team_id": "T2", "is_ext_shared_channel": True}
    shared["event"] = {**shared["event"], "team": "T2"}
    await post(slack.client, shared)
    await slack.channel.close()
    [actions] = [b for b in slack.posts[0]["blocks"] if b["type"] == "actions"]
    pressed = [{"type": "button", "action_id": "deskbot_button_0", "block_id": actions["block_id"],
                "value": "/contact_human_agent", "action_ts": "1700000002.000300"}]
    await post_click(slack.client, click(actions=pressed))
    await slack.channel.close()
    assert [t.conversation_id for t in slack.bot.turns] == [f"slack:T1:C1:{TS}"] * 2


async def test_in_a_slack_connect_channel_the_support_teams_own_messages_are_not_answered(slack: SimpleNamespace) -> None:
    """A channel shared with a customer's workspace holds the support team too: the bot answered a colleague's
    note in the customer's thread as if the customer had written it, and kept it as the customer's words."""
    def shared(event_id: str, text: str, user: str, team: str) -> dict[str, Any]:
        return {**event(event_id, text, user=user, team=team, user_team=team, ts=f"1700000000.00010{event_id[-1]}",
                        thread_ts=TS), "is_ext_shared_channel": True}

    await post(slack.client, shared("Ev1", "where is my refund?", "U2", "T2"))  # the customer
    await post(slack.client, shared("Ev2", "I'm checking this one", "U7", "T1"))  # a colleague at the company
    await slack.channel.close()
    assert [(t.user, t.text) for t in slack.bot.turns] == [("U2", "where is my refund?")] and len(slack.posts) == 1


async def test_the_support_teams_words_in_a_customers_shared_thread_go_into_its_transcript(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A colleague answering a customer in their Slack Connect thread was left out of the conversation: the agents'
    console and the transcript showed the customer's question unanswered, and a second agent answered it again."""
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "where is my refund?", "slack")

    def colleague(event_id: str, ts: str, thread: str) -> dict[str, Any]:
        return {**event(event_id, "It went out <@U2>, 3 &lt; 5 days", user="U7", team="T1", user_team="T1", ts=ts,
                        thread_ts=thread), "is_ext_shared_channel": True}

    for _ in range(2):  # a redelivery is kept once
        await post(client, colleague("Ev1", "1700000000.000200", TS))
    await post(client, colleague("Ev2", "1700000009.000100", "1700000009.000100"))  # no customer's thread
    await channel.close()
    assert bot.turns == [] and slack_api.posts == []
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)] == [
        ("user", None, "where is my refund?"), ("agent", "U7", "It went out @U2, 3 < 5 days")]
    edited = {"type": "message", "user": "U7", "text": "It went out today", "ts": "1700000000.000200", "thread_ts": TS,
              "edited": {"user": "U7", "ts": "1700000010.000100"}}  # as Slack shows it now, so does the transcript
    await post(client, {**event("Ev3", "", subtype="message_changed", message=edited), "is_ext_shared_channel": True})
    assert bot.store.history(cid)[-1]["text"] == "It went out today"
    assert bot.store.conversation("slack:T1:C1:1700000009.000100") is None
    # The colleague has the customer now: the bot no longer answers the thread, where it answered the customer's
    # replies to them, and the agents' inbox shows who took it over.
    assert bot.store.conversation(cid)["status"] == "handed_off" and bot.store.holder(cid) == "U7"
    bot.store.close()


@pytest.mark.parametrize("scopes, shown", [({"users:read"}, ("Ada Lovelace", "grace")), (set(), ("U7", "U8"))])
async def test_the_support_team_member_who_takes_a_thread_over_is_known_by_their_name(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        scopes: set[str], shown: tuple[str, str]) -> None:
    """A colleague who wrote in a customer's thread held it as "U7": the console, the transcript and an agent told
    who has the conversation read their Slack user id. Their name is looked up once; without users:read the id
    stays, and the message is kept all the same. A lookup Slack refused is not tried again for a while: without
    the scope, each colleague's message waited on a users.info call that failed, and logged it again."""
    slack_api.members["U7"] = {"name": "ada", "real_name": "Ada L.",
                               "profile": {"display_name": "", "real_name": "Ada Lovelace"}}
    slack_api.members["U8"] = {"name": "grace"}
    slack_api.scopes = scopes
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "where is my refund?", "slack")
    for n, user in ((1, "U7"), (2, "U7"), (3, "U8")):
        await post(client, {**event(f"Ev{n}", f"note {n}", user=user, team="T1", user_team="T1",
                                    ts=f"1700000000.00020{n}", thread_ts=TS), "is_ext_shared_channel": True})
    await channel.close()
    assert [(m["role"], m["author"]) for m in bot.store.history(cid)][1:] == [("agent", shown[0])] * 2 + [
        ("agent", shown[1])]
    assert bot.store.holder(cid) == shown[1]  # the last to write has the customer
    assert slack_api.looked_up == (["U7", "U8"] if scopes else ["U7"])  # a name is asked for once, a refusal heard once
    assert caplog.text.count("users:read") == (0 if scopes else 1)
    if not scopes:
        assert "add the users:read scope" in caplog.text
    bot.store.close()


async def two_customers_one_answered_by_u7(bot: FakeBot, client: Any) -> tuple[str, str]:
    """Two customers' threads, each with a message, the first answered by the colleague U7 (which takes it over):
    the customer U7 answered and the other."""
    cid, other = f"slack:T1:C1:{TS}", "slack:T1:C1:1700000001.000100"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    bot.store.add_message(other, "user", "my parcel is lost", "slack")
    await post(client, event("Ev1", "It went out today", user="U7", ts="1700000000.000200", thread_ts=TS))
    return cid, other


async def two_adas_one_renamed_while_no_server_ran(aiohttp_client: Any, slack_api: SimpleNamespace,
                                                   tmp_path: Path) -> tuple[FakeBot, str, str]:
    """Two colleagues both "Ada" in Slack, U7 and U8, each answering a customer's thread (U7's and the other) on a
    server that then stopped, U7 renamed "Ada Lovelace" in Slack since: the bot on the store and the two threads."""
    slack_api.members.update({"U7": {"name": "ada", "profile": {"display_name": "Ada"}},
                              "U8": {"name": "ada.b", "profile": {"display_name": "Ada"}}})
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7", "U8"])
    cid, other = await two_customers_one_answered_by_u7(bot, client)
    await post(client, event("Ev2", "Checking", user="U8", ts="1700000001.000200", thread_ts="1700000001.000100"))
    await channel.close()
    slack_api.members["U7"] = {"name": "ada", "profile": {"display_name": "Ada Lovelace"}}
    return bot, cid, other


def assert_answered_and_taken_over_by_ada(bot: FakeBot, cid: str) -> None:
    """U7's answer in ``cid`` and their takeover of it are kept under U7's name, ada."""
    assert [(m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [("ada", "It went out today")]
    assert [h["agent"] for h in bot.store.transcript(cid)["handoffs"]] == ["ada"]


async def test_a_colleague_kept_by_their_id_while_slack_gave_no_names_is_named_once_it_does(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While Slack gave no names, a colleague's notes and the conversation they took over were kept under their user
    id; once it gave names again, their new notes said "ada" but the customer they took over stayed "U7"'s in the
    agents' inbox. Their notes and that customer are theirs by name, where they wrote and where they did not again."""
    monkeypatch.setattr(slack_module, "NAME_RETRY_S", 0.0)
    slack_api.members["U7"] = {"name": "ada"}
    slack_api.scopes = set()
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid, other = await two_customers_one_answered_by_u7(bot, client)
    await post(client, event("Ev2", "Sending a new one", user="U7", ts="1700000001.000200",
                             thread_ts="1700000001.000100"))
    assert bot.store.holder(cid) == bot.store.holder(other) == "U7"
    slack_api.scopes = {"users:read"}
    await post(client, event("Ev3", "Anything else?", user="U7", ts="1700000001.000300", thread_ts="1700000001.000100"))
    await channel.close()
    assert bot.store.holder(cid) == bot.store.holder(other) == "ada"
    assert_answered_and_taken_over_by_ada(bot, cid)
    bot.store.close()


async def test_a_colleague_kept_by_their_id_before_a_restart_is_named_once_slack_gives_names(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The colleagues kept by their user id while Slack gave no names were known only to the server that kept them:
    restarted (to add the users:read scope, say), it left the customers they took over theirs as "U7" in the agents'
    inbox until they wrote there again. The next server names them in the store once Slack gives their name, here
    for a customer's mention of them; an agent of the console, and a colleague named already, stay as they are: the
    console agent too whose name is of an id's form, and Slack's id of another person, whom a customer mentions (the
    name is no colleague's kept by their id: none wrote in Slack under it). Renamed in Slack later, the colleague's
    customers follow the new name too."""
    monkeypatch.setattr(slack_module, "NAME_RETRY_S", 0.0)
    slack_api.members.update({"U7": {"name": "ada"}, "U8": {"name": "grace"}, "UMBERTO": {"name": "umberto"}})
    slack_api.scopes = set()
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7", "U8"])
    cid, other = await two_customers_one_answered_by_u7(bot, client)
    bot.store.set_status(other, "handed_off", "agent", "slack", agent="UMBERTO")  # an agent of the console
    await channel.close()
    assert bot.store.holder(cid) == "U7"
    slack_api.scopes = {"users:read"}
    restarted = make_channel(bot, slack_api.url, team_users=["U7", "U8"])
    client = await client_of(aiohttp_client, restarted)
    await post(client, event("Ev2", "<@UBOT> <@U7> said my refund went out, where is it?", ts="1700000002.000100"))
    await post(client, event("Ev3", "<@UBOT> ask <@UMBERTO>", ts="1700000003.000100"))
    await restarted.close()
    assert bot.store.holder(cid) == "ada" and bot.store.holder(other) == "UMBERTO"
    assert_answered_and_taken_over_by_ada(bot, cid)
    await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))  # and renamed since
    await restarted.close()
    assert bot.store.holder(cid) == "Ada Lovelace" and bot.store.holder(other) == "UMBERTO"
    bot.store.close()


def user_change(user: str, **member: Any) -> dict[str, Any]:
    """Slack's ``user_change`` event as an app subscribed to it gets it: the whole user object as it is now."""
    return {"type": "event_callback", "team_id": "T1", "event_id": f"EvUser{user}{len(member)}",
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
            "event": {"type": "user_change", "user": {"id": user, "team_id": "T1", **member},
                      "cache_ts": 1700000100, "event_ts": "1700000100.000100"}}


async def test_a_colleague_renamed_in_slack_holds_their_conversations_by_the_new_name(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A colleague who changed their name in Slack kept the old one as holder of the conversations they took over, in
    the agents' inbox and console, and as author of their notes in the transcript. Slack's user_change renames them
    there at once. Someone customers mention, no colleague, is renamed in no conversation: an agent of the console
    may go by their old name; and the colleague is renamed only where they wrote in Slack, not where an agent of the
    console who goes by the same name took a customer over (they themselves, say, named so in server.agents)."""
    slack_api.members.update({"U7": {"name": "ada", "profile": {"display_name": "Ada"}}, "U9": {"name": "bob"}})
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid, other = f"slack:T1:C1:{TS}", "slack:T1:C1:1700000001.000100"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    bot.store.add_message(other, "user", "my parcel is lost", "slack")
    bot.store.set_status(other, "handed_off", "agent", "slack", agent="bob")  # an agent of the console
    console = "slack:T1:C1:1700000003.000100"
    bot.store.add_message(console, "user", "a question", "slack")
    bot.store.set_status(console, "handed_off", "agent", "slack", agent="Ada")  # and one named as U7 is in Slack
    bot.store.add_agent_answer(console, "Let me check", "slack", "Ada", key="console-1")
    await post(client, event("Ev1", "It went out today", user="U7", ts="1700000000.000200", thread_ts=TS))
    await post(client, event("Ev2", "<@UBOT> <@U9> said it went out", ts="1700000002.000100"))
    assert bot.store.holder(cid) == "Ada"
    assert (await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))).status == 200
    await post(client, user_change("U9", name="robert", profile={"display_name": "Robert"}))
    await post(client, user_change("U5", name="carol"))  # anyone else in the workspace: nothing to rename
    await channel.close()
    assert bot.store.holder(cid) == "Ada Lovelace" and bot.store.holder(other) == "bob"
    assert bot.store.holder(console) == "Ada" and bot.store.history(console)[-1]["author"] == "Ada"
    assert [(m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [("Ada Lovelace", "It went out today")]
    assert [h["agent"] for h in bot.store.transcript(cid)["handoffs"]] == ["Ada Lovelace"]
    assert slack_api.looked_up == ["U7", "U9"]  # the new names came with the events
    bot.store.close()


async def test_a_colleague_renamed_from_a_name_another_colleague_has_leaves_that_names_conversations(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two colleagues Slack shows alike ("Ada") hold their customers under the same name: one renaming themselves
    cannot tell which are theirs, so none are renamed, and the log says why."""
    slack_api.members.update({"U7": {"name": "ada", "profile": {"display_name": "Ada"}},
                              "U8": {"name": "ada.b", "profile": {"display_name": "Ada"}}})
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7", "U8"])
    cid, other = f"slack:T1:C1:{TS}", "slack:T1:C1:1700000001.000100"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    bot.store.add_message(other, "user", "my parcel is lost", "slack")
    await post(client, event("Ev1", "It went out today", user="U7", ts="1700000000.000200", thread_ts=TS))
    await post(client, event("Ev2", "Checking", user="U8", ts="1700000001.000200", thread_ts="1700000001.000100"))
    await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))
    await channel.close()
    assert bot.store.holder(cid) == bot.store.holder(other) == "Ada"
    assert "Slack: U7 is now Ada Lovelace, but another person is Ada in Slack too" in caplog.text
    bot.store.close()


async def test_a_rename_refused_for_a_name_another_colleague_has_is_said_in_the_log_once(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A colleague renamed, while no server ran, from a name another colleague has was refused, and said so, at each
    of their profile changes in Slack (a status set) and each time their name was looked up again: once a server is
    enough."""
    monkeypatch.setattr(slack_module, "NAME_KEPT_S", 0.0)
    bot, cid, other = await two_adas_one_renamed_while_no_server_ran(aiohttp_client, slack_api, tmp_path)
    channel = make_channel(bot, slack_api.url, team_users=["U7", "U8"])
    client = await client_of(aiohttp_client, channel)
    await post(client, event("Ev3", "<@UBOT> <@U7> said my refund went out, where is it?", ts="1700000003.000100"))
    await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))
    await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace", "status_text": "Lunch"},
                                   is_admin=False))
    await channel.close()
    assert bot.store.holder(cid) == bot.store.holder(other) == "Ada"
    assert caplog.text.count("Slack: U7 is now Ada Lovelace, but another person is Ada in Slack too") == 1
    bot.store.close()


@pytest.mark.parametrize("learnt_at", ["start", "user_change", "note"])
async def test_a_colleague_renamed_in_slack_while_no_server_ran_holds_their_conversations_by_the_new_name(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, learnt_at: str) -> None:
    """A colleague renamed in Slack while no server ran, or before a new server had learnt their old name, held the
    customers they took, and signed their notes, by the old name for good: the store kept the name alone, and the new
    server, which never knew it, could not tell it was theirs. Their user id is kept beside it, and the next server
    renames them as it starts, as Slack's user_change tells of the name, or as they write again (in another thread)."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid, other = await two_customers_one_answered_by_u7(bot, client)
    await channel.close()
    assert bot.store.holder(cid) == "ada"
    slack_api.members["U7"] = {"name": "ada", "profile": {"display_name": "Ada Lovelace"}}
    restarted = make_channel(bot, slack_api.url, team_users=["U7"])
    client = await client_of(aiohttp_client, restarted)
    if learnt_at == "start":
        restarted.start()
    elif learnt_at == "user_change":
        await post(client, user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))
    else:
        await post(client, event("Ev2", "Let me look", user="U7", ts="1700000001.000200",
                                 thread_ts="1700000001.000100"))
    await restarted.close()
    assert bot.store.holder(cid) == "Ada Lovelace"
    assert [(m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [("Ada Lovelace", "It went out today")]
    assert [h["agent"] for h in bot.store.transcript(cid)["handoffs"]] == ["Ada Lovelace"]
    assert bot.store.kept_members("slack") == {"U7": "Ada Lovelace"}
    bot.store.close()


async def test_a_server_starting_asks_slack_the_names_of_the_colleagues_holding_customers_alone(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A server starting asked users.info for every colleague the store ever kept, hundreds in a big team, which hit
    Slack's rate limit and paused the names of the people customers mention too. It asks for those who hold customers
    now alone, the first 20 of them; one who handed their customer back is renamed as they write again."""
    bot = FakeBot()
    bot.store = Store(tmp_path / "dialogues.db")
    holders = [f"U{n:03}" for n in range(25)]
    for user in [*holders, "U900"]:
        cid = f"slack:T1:C1:1700000000.{user[1:]}"
        bot.store.add_message(cid, "user", "my refund is late", "slack")
        bot.store.receive_note(f"{NOTED}C1:{user}", cid, "slack", user.lower(), "On it", member=user)
        slack_api.members[user] = {"name": user.lower()}
    bot.store.set_status("slack:T1:C1:1700000000.900", "open", "agent", "slack", agent="u900")  # handed back
    channel = make_channel(bot, slack_api.url, team_users=[*holders, "U900"])
    channel.start()
    await channel.close()
    assert sorted(slack_api.looked_up) == holders[:20]
    slack_api.members["U900"] = {"name": "u900", "profile": {"display_name": "Nine Hundred"}}
    restarted = make_channel(bot, slack_api.url, team_users=[*holders, "U900"])
    await post(await client_of(aiohttp_client, restarted),
               event("Ev2", "Back on it", user="U900", ts="1700000002.000200", thread_ts="1700000000.900"))
    await restarted.close()
    assert bot.store.kept_members("slack")["U900"] == "Nine Hundred"
    bot.store.close()


async def test_a_colleague_renamed_while_no_server_ran_from_a_name_another_colleague_has_leaves_that_names_conversations(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two colleagues kept alike ("Ada") by a server before: one renamed in Slack while no server ran cannot tell the
    next server, which knows the other by the store alone, which of Ada's customers are theirs, so none are renamed,
    and the log says why."""
    bot, cid, other = await two_adas_one_renamed_while_no_server_ran(aiohttp_client, slack_api, tmp_path)
    restarted = make_channel(bot, slack_api.url, team_users=["U7", "U8"])
    await post(await client_of(aiohttp_client, restarted),
               user_change("U7", name="ada", profile={"display_name": "Ada Lovelace"}))
    await restarted.close()
    assert bot.store.holder(cid) == bot.store.holder(other) == "Ada"
    assert "Slack: U7 is now Ada Lovelace, but another person is Ada in Slack too" in caplog.text
    bot.store.close()


async def test_a_support_team_members_new_name_in_slack_is_shown_after_a_while(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A colleague's name was looked up once and kept until a restart: one who changed their display name in Slack
    went on being shown by the old one, for weeks on a server left running. It is looked up again after
    NAME_KEPT_S (an hour), and their notes and the conversation they hold follow it; within it, not again."""
    monkeypatch.setattr(slack_module, "NAME_KEPT_S", 0.5, raising=False)
    slack_api.members["U7"] = {"name": "ada", "profile": {"display_name": "Ada"}}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path)
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "where is my refund?", "slack")

    async def note(n: int) -> None:
        await post(client, {**event(f"Ev{n}", f"note {n}", user="U7", team="T1", user_team="T1",
                                    ts=f"1700000000.00020{n}", thread_ts=TS), "is_ext_shared_channel": True})

    await note(1)
    slack_api.members["U7"] = {"name": "ada", "profile": {"display_name": "Ada Lovelace (support lead)"}}
    await note(2)
    await asyncio.sleep(0.6)
    assert [m["author"] for m in bot.store.history(cid)][1:] == ["Ada", "Ada"]
    await note(3)
    await channel.close()
    assert [m["author"] for m in bot.store.history(cid)][1:] == ["Ada Lovelace (support lead)"] * 3
    assert bot.store.holder(cid) == "Ada Lovelace (support lead)"
    assert slack_api.looked_up == ["U7", "U7"]
    bot.store.close()


async def test_in_an_ordinary_channel_the_team_users_words_are_an_agents_not_answered(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """In a channel of the company's own workspace, customers and the support team are members alike: a colleague
    replying in a customer's thread was answered by the bot as if a customer, and kept as the customer's words.
    The members named in ``team_users`` are the support team there too, their clicks included."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    await post(client, event("Ev1", "where is my refund?", thread_ts=TS))  # the customer, U1
    await post(client, event("Ev2", "It went out today", user="U7", ts="1700000000.000200", thread_ts=TS))
    await post_click(client, click(user={"id": "U7", "username": "ada"}))
    await channel.close()
    assert [(t.user, t.text) for t in bot.turns] == [("U1", "where is my refund?")] and len(slack_api.posts) == 1
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][-1] == (
        "agent", "ada", "It went out today")
    assert bot.store.holder(cid) == "ada"
    bot.store.close()


async def test_a_picture_a_colleague_sends_into_a_customers_thread_is_in_its_transcript(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A support team member who sent the customer a picture (a label, a screenshot of the fix) left no trace of it in
    the transcript: sent alone it was dropped, and sent with words only the words were kept. The agents read
    "[picture]", as they do a customer's."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "which return label do I use?", "slack")
    files = [{"id": "F1", "name": "label.png", "mimetype": "image/png"}]
    for n, text in enumerate(("", "this one")):
        await post(client, event(f"Ev{n}", text, user="U7", subtype="file_share", files=files,
                                 ts=f"1700000000.00020{n}", thread_ts=TS))
    await channel.close()
    assert bot.turns == [] and slack_api.posts == []
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [
        ("agent", "ada", "[picture]"), ("agent", "ada", "this one\n[picture]")]
    bot.store.close()


async def test_a_colleagues_bare_mention_of_the_bot_in_a_customers_thread_is_in_its_transcript(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A support team member who mentioned the bot alone in a customer's thread left no trace of it: the transcript
    went on as if they had not written there. It reads "[mentioned the bot]", as a customer's does once handed off;
    saying nothing to the customer, it leaves the bot answering them."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    await post(client, event("Ev1", "<@UBOT>", user="U7", ts="1700000000.000200", thread_ts=TS))
    await channel.close()
    assert bot.turns == [] and slack_api.posts == []
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [
        ("agent", "ada", "[mentioned the bot]")]
    assert bot.store.conversation(cid)["status"] == "open" and bot.store.holder(cid) is None
    bot.store.close()


def edited(event_id: str, user: str, text: str, ts: str, thread: str = TS, **fields: Any) -> dict[str, Any]:
    """Slack's message_changed event for the message ``ts`` of ``user`` in ``thread``, now reading ``text``."""
    return event(event_id, "", subtype="message_changed", ts=f"{time.time():.6f}", message={
        "type": "message", "user": user, "text": text, "ts": ts, "thread_ts": thread,
        "edited": {"user": user, "ts": f"{time.time():.6f}"}, **fields})


async def test_a_colleagues_message_edited_to_or_from_the_bots_mention_alone_is_taken_as_sent_so(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A colleague who mentioned the bot alone in a customer's thread, then edited their words in ("@deskbot I'll take
    it from here"), left the customer with the bot, which went on answering them as they talked with the colleague;
    one whose words were edited down to the bot's mention alone kept their first words in the transcript. Each is
    taken as the message sent so: the first hands the conversation to the colleague, the second reads "[mentioned
    the bot]" (the conversation stays theirs, as a deleted note leaves it)."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    await post(client, event("Ev1", "<@UBOT>", user="U7", ts="1700000000.000200", thread_ts=TS))
    await post(client, edited("Ev2", "U7", "<@UBOT> I'll take it from here", "1700000000.000200"))
    assert bot.store.conversation(cid)["status"] == "handed_off" and bot.store.holder(cid) == "ada"
    await post(client, event("Ev3", "It went out today", user="U7", ts="1700000000.000300", thread_ts=TS))
    await post(client, edited("Ev4", "U7", "<@UBOT|deskbot> ", "1700000000.000300"))
    await post(client, edited("Ev5", "U7", "<@UBOT> I'll take it from here, Grace", "1700000000.000200"))
    await channel.close()
    assert bot.turns == [] and slack_api.posts == []
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [
        ("agent", "ada", "I'll take it from here, Grace"), ("agent", "ada", "[mentioned the bot]")]
    assert [(h["event"], h["reason"], h["agent"]) for h in bot.store.transcript(cid)["handoffs"]] == [
        ("handed_off", "agent", "ada")]  # once: its second edit took nothing over again
    bot.store.close()


async def test_a_colleagues_mention_edited_is_taken_as_sent_so_by_an_app_that_hears_mentions_alone(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """An app subscribed to app_mention alone (no message.channels) hears a colleague's edit only as the mention
    delivered again, edited: their bare mention of the bot edited into words to the customer stayed "[mentioned the
    bot]", the bot answering on, and a note's words edited kept their first ones."""
    slack_api.members["U7"] = {"name": "ada"}
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["U7"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    ts = f"{time.time():.6f}"

    def mention(event_id: str, text: str, **fields: Any) -> dict[str, Any]:
        payload = event(event_id, text, user="U7", ts=ts, thread_ts=TS, **fields)
        return {**payload, "event": {**payload["event"], "type": "app_mention"}}

    await post(client, mention("Ev1", "<@UBOT>"))
    assert bot.store.conversation(cid)["status"] == "open"
    await post(client, mention("Ev2", "<@UBOT> I'll take it from here", edited={"user": "U7", "ts": ts}))
    assert bot.store.conversation(cid)["status"] == "handed_off" and bot.store.holder(cid) == "ada"
    await post(client, mention("Ev3", "<@UBOT> I'll take it from here, Grace", edited={"user": "U7", "ts": ts}))
    await channel.close()
    restarted = make_channel(bot, slack_api.url, team_users=["U7"])  # Slack's retry of the first, to the next server
    await post(await client_of(aiohttp_client, restarted), mention("Ev1", "<@UBOT>"), **{"X-Slack-Retry-Num": "1"})
    await restarted.close()
    assert bot.turns == [] and slack_api.posts == []
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [
        ("agent", "ada", "I'll take it from here, Grace")]
    assert [(h["event"], h["agent"]) for h in bot.store.transcript(cid)["handoffs"]] == [("handed_off", "ada")]
    bot.store.close()


async def test_a_customers_mention_edited_is_kept_as_edited_by_an_app_that_hears_mentions_alone(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """An app subscribed to app_mention alone (no message.channels) hears a customer's edit only as the mention
    delivered again, edited, which was dropped as a message answered already: the transcript kept the words they took
    back (their card number), for the agents to read and the reviewers to learn from. It takes the edit, made while
    the bot answers the message or after, and by the next server too; the message is answered once."""
    held = asyncio.Event()
    bot = logging_bot(tmp_path, held)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    sent = f"{time.time():.6f}"
    cid = f"slack:T1:C1:{sent}"

    def mention(event_id: str, text: str, **fields: Any) -> dict[str, Any]:
        return event(event_id, text, ts=sent, type="app_mention", **fields)

    await post(client, mention("Ev1", "<@UBOT> my card 4929 1234 5678 9012 was charged twice"))
    await post(client, mention("Ev2", "<@UBOT> my card was charged twice", edited={"user": "U1", "ts": sent}))
    held.set()
    await channel.close()
    assert [(m["role"], m["text"]) for m in bot.store.history(cid)] == [
        ("user", "my card was charged twice"), ("bot", bot.text)]
    await post(client, mention("Ev3", "<@UBOT> my card was charged twice, <@U2|grace>", edited={"user": "U1", "ts": sent}))
    assert [m["text"] for m in bot.store.history(cid)][0] == "my card was charged twice, @grace"
    restarted = make_channel(bot, slack_api.url)
    await post(await client_of(aiohttp_client, restarted),
               mention("Ev4", "<@UBOT> my card was charged twice today", edited={"user": "U1", "ts": sent}))
    await restarted.close()
    assert len(bot.turns) == len(slack_api.posts) == 1
    assert [(m["role"], m["text"]) for m in bot.store.history(cid)] == [
        ("user", "my card was charged twice today"), ("bot", bot.text)]
    assert not bot.store.db.execute("SELECT 1 FROM turns WHERE text LIKE '%4929%' OR raw_text LIKE '%4929%'").fetchall()
    bot.store.close()


async def test_a_mention_edited_minutes_after_it_was_written_is_kept_as_edited_and_not_answered_again(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Where the app hears mentions alone, a mention edited more than 5 minutes after it was written (past Slack's
    retries, and the keys that tell an answered message) was dropped: the transcript kept a customer's words, and a
    colleague's note, as first written. The store takes such an edit; the message is not answered again."""
    slack_api.members["U7"] = {"name": "ada"}
    bot = logging_bot(tmp_path)
    channel = make_channel(bot, slack_api.url, team_users=["U7"])
    client = await client_of(aiohttp_client, channel)
    sent, noted, now = f"{time.time() - 600:.6f}", f"{time.time() - 590:.6f}", f"{time.time():.6f}"

    def mention(event_id: str, text: str, ts: str, user: str = "U1", **fields: Any) -> dict[str, Any]:
        return event(event_id, text, ts=ts, type="app_mention", user=user, **fields)

    await post(client, mention("Ev1", "<@UBOT> my card 4929 1234 5678 9012 was charged twice", sent))
    await post(client, mention("Ev2", "<@UBOT> looking into it", noted, "U7", thread_ts=sent))
    await channel.close()
    await post(client, mention("Ev3", "<@UBOT> my card was charged twice", sent, edited={"user": "U1", "ts": now}))
    await post(client, mention("Ev4", "<@UBOT> looking into it, Grace", noted, "U7", thread_ts=sent,
                               edited={"user": "U7", "ts": now}))
    await channel.close()
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(f"slack:T1:C1:{sent}")] == [
        ("user", None, "my card was charged twice"), ("bot", None, bot.text), ("agent", "ada", "looking into it, Grace")]
    assert len(bot.turns) == len(slack_api.posts) == 1
    bot.store.close()


async def test_a_customers_mention_edited_down_to_the_mention_or_a_picture_alone_reads_so_where_mentions_alone_come(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Where the app hears mentions alone, a customer's answered question edited down to the bot's mention alone, or
    to the picture sent with it, comes as the mention again, without words, and the transcript kept the words they took
    back. It reads as such a message sent so reads, at each edit, and nothing is posted for it."""
    bot = logging_bot(tmp_path)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    sent, later = f"{time.time():.6f}", f"{time.time() + 1:.6f}"

    def mention(event_id: str, text: str, ts: str, **fields: Any) -> dict[str, Any]:
        return event(event_id, text, ts=ts, type="app_mention", **fields)

    edit = {"edited": {"user": "U1", "ts": later}}
    await post(client, mention("Ev1", "<@UBOT> my card 4929 1234 5678 9012 was charged twice", sent))
    await post(client, mention("Ev2", "<@UBOT> and my address is 12 Harbour Road", later, thread_ts=sent))
    await post(client, mention("Ev3", "<@UBOT>", sent, **edit))
    await post(client, mention("Ev4", "<@UBOT> ", later, thread_ts=sent, files=[{"id": "F1", "mimetype": "image/png"}],
                               **edit))
    await channel.close()
    history = bot.store.history(f"slack:T1:C1:{sent}")
    assert [(m["role"], m["text"]) for m in history] == [
        ("user", "[mentioned the bot]"), ("bot", bot.text), ("user", "[picture]"), ("bot", bot.text)]
    assert [p["text"] for p in slack_api.posts] == [bot.text] * 2
    bot.store.close()


async def test_a_customers_message_edited_to_the_bots_mention_or_a_picture_alone_reads_so(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """A customer's message edited down to the bot's mention alone, or to the picture sent with it, kept its first
    words in the transcript, where Slack shows them no more: it reads as such a message sent so reads."""
    bot = logging_bot(tmp_path)
    channel = make_channel(bot, slack_api.url)
    client = await client_of(aiohttp_client, channel)
    sent, later = f"{time.time():.6f}", f"{time.time() + 1:.6f}"
    await post(client, event("Ev1", "<@UBOT> my card is 4929 1234 5678 9012", ts=sent))
    await post(client, event("Ev2", "and my address is 12 Harbour Road", ts=later, thread_ts=sent))
    await channel.close()
    await post(client, edited("Ev3", "U1", "<@UBOT>", sent, sent))
    await post(client, edited("Ev4", "U1", "", later, sent, files=[{"id": "F1", "mimetype": "image/png"}]))
    assert [(m["role"], m["text"]) for m in bot.store.history(f"slack:T1:C1:{sent}")] == [
        ("user", "[mentioned the bot]"), ("bot", bot.text), ("user", "[picture]"), ("bot", bot.text)]
    bot.store.close()


async def test_a_user_group_in_team_users_is_the_support_team_as_slack_lists_it_now(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admins name their support team by its Slack user group (``S…``), whose members change; team_users took user ids
    alone, and a group's id matched nobody, so colleagues were answered as customers. The group's members are asked of
    Slack (usergroups.users.list) once for many messages, and again after GROUP_KEPT_S, a colleague who joined it
    since then taken as the support team too."""
    monkeypatch.setattr(slack_module, "GROUP_KEPT_S", 0.5)
    slack_api.members["U7"] = {"name": "ada"}
    slack_api.groups["S1"] = ["U7"]
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["S1", "U9"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    await post(client, event("Ev1", "where is my refund?", thread_ts=TS))  # the customer, U1
    await post(client, event("Ev2", "It went out today", user="U7", ts="1700000000.000200", thread_ts=TS))
    await post_click(client, click(user={"id": "U7", "username": "ada"}))
    await post(client, event("Ev3", "Thanks", user="U8", ts="1700000000.000300", thread_ts=TS))  # not in it yet
    slack_api.groups["S1"] = ["U7", "U8"]
    await asyncio.sleep(0.6)
    await post(client, event("Ev4", "I checked: it is on its way", user="U8", ts="1700000000.000400", thread_ts=TS))
    await channel.close()
    assert [(t.user, t.text) for t in bot.turns] == [("U1", "where is my refund?"), ("U8", "Thanks")]
    assert [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][1:] == [
        ("agent", "ada", "It went out today"), ("agent", "U8", "I checked: it is on its way")]
    assert slack_api.listed == ["S1", "S1"]
    bot.store.close()


async def test_a_colleague_added_to_a_team_users_group_counts_as_soon_as_slack_says_so(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """Where the app hears ``subteam_members_changed``, a colleague added to the support team's user group is the
    support team from the next message on, not up to five minutes later; another group's change asks Slack nothing."""
    slack_api.groups["S1"] = ["U7"]
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["S1"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    await post(client, event("Ev1", "Thanks", user="U8", ts="1700000000.000300", thread_ts=TS))  # not in it yet
    slack_api.groups["S1"] = ["U7", "U8"]
    for n, group in enumerate(("S9", "S1")):
        await post(client, {**event(f"Ev{2 + n}"), "event": {
            "type": "subteam_members_changed", "subteam_id": group, "team_id": "T1", "date_previous_update": 1446670362,
            "date_update": 1492906952, "added_users": ["U8"], "added_users_count": "1", "event_ts": "1492906952.000100"}})
    await post(client, event("Ev4", "It is on its way", user="U8", ts="1700000000.000400", thread_ts=TS))
    await channel.close()
    assert [(t.user, t.text) for t in bot.turns] == [("U8", "Thanks")]
    assert [(m["role"], m["text"]) for m in bot.store.history(cid)][-1] == ("agent", "It is on its way")
    assert slack_api.listed == ["S1", "S1"]
    bot.store.close()


async def test_a_slow_slack_is_asked_for_names_and_the_support_team_at_once_within_its_3_seconds(
        aiohttp_client: Any, slack_api: SimpleNamespace, tmp_path: Path) -> None:
    """With Slack slow to answer users.info and usergroups.users.list, a colleague's first message that mentions someone
    waited for the names, then for the group's members, then for the colleague's own name, one after the other: past
    Slack's 3 seconds, which Slack answers by sending the event again. The three are asked for at once."""
    slack_api.slow = 1.0
    slack_api.members.update({"U7": {"name": "ada"}, "U07ABC": {"name": "grace"}})
    slack_api.groups["S1"] = ["U7"]
    bot, channel, client = await on_a_store(aiohttp_client, slack_api, tmp_path, team_users=["S1"])
    cid = f"slack:T1:C1:{TS}"
    bot.store.add_message(cid, "user", "my refund is late", "slack")
    started = time.monotonic()
    response = await post(client, event("Ev1", "<@U07ABC> sent it today", user="U7", ts="1700000000.000200",
                                        thread_ts=TS))
    assert response.status == 200 and time.monotonic() - started < 1.8
    await channel.close()
    assert bot.turns == [] and [(m["role"], m["author"], m["text"]) for m in bot.store.history(cid)][-1] == (
        "agent", "ada", "@grace sent it today")
    bot.store.close()


async def test_a_user_group_slack_does_not_list_is_said_once_and_the_channel_answers_on(
        aiohttp_client: Any, slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Without the usergroups:read scope (or with a group id Slack does not know), the group's members cannot be
    known: the log says why and what to do, once, customers are answered all the same, and Slack is not asked again
    for each message."""
    slack_api.scopes = {"chat:write", "users:read"}
    channel = make_channel(FakeBot(), slack_api.url, team_users=["S1"])
    client = await client_of(aiohttp_client, channel)
    for n in range(3):
        await post(client, event(f"Ev{n}", f"question {n}", ts=f"1700000000.00010{n}"))
    await channel.close()
    assert len(slack_api.posts) == 3 and slack_api.listed == ["S1"]
    assert caplog.text.count("add the usergroups:read scope") == 1 and "S1" in caplog.text


@pytest.mark.parametrize("scopes, asked", [({"chat:write"}, ["S1"]), ({"chat:write", "usergroups:read"}, ["S1", "S2"])])
async def test_user_groups_slack_does_not_list_for_the_same_reason_are_one_line(
        aiohttp_client: Any, slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture, scopes: set[str],
        asked: list[str]) -> None:
    """Without usergroups:read, each group of team_users was asked of Slack, refused alike, and said in a line of its
    own, the same fix each time, every 5 minutes. The groups after the first are not asked, and the line names them
    all; a group Slack does not know (no_such_subteam) is its own, said alone while the others are listed."""
    slack_api.scopes, slack_api.groups = scopes, {"S2": ["U7"]}
    channel = make_channel(FakeBot(), slack_api.url, team_users=["S1", "S2"])
    client = await client_of(aiohttp_client, channel)
    await post(client, event("Ev1", "It went out today", user="U7", thread_ts=TS))
    await channel.close()
    assert slack_api.listed == asked
    [line] = [r.getMessage() for r in caplog.records if "did not list" in r.getMessage()]
    assert ("user groups S1, S2 (usergroups.users.list: missing_scope" if len(asked) == 1
            else "user group S1 (usergroups.users.list: no_such_subteam") in line


async def test_in_a_slack_connect_channel_the_support_teams_clicks_are_not_the_customers(slack: SimpleNamespace) -> None:
    """A colleague at the company clicking one of the bot's buttons in a customer's shared thread ("Talk to a person",
    "Back to the bot") was taken as the customer's click: it handed the customer off, or back, and was answered."""
    slack.bot.buttons = [{"title": "Talk to a person", "payload": "/contact_human_agent"}]
    shared = {**event(), "team_id": "T2", "is_ext_shared_channel": True}
    shared["event"] = {**shared["event"], "user": "U2", "team": "T2", "user_team": "T2"}
    await post(slack.client, shared)
    await slack.channel.close()
    [actions] = [b for b in slack.posts[0]["blocks"] if b["type"] == "actions"]
    pressed = [{"type": "button", "action_id": "deskbot_button_0", "block_id": actions["block_id"],
                "value": "/contact_human_agent", "action_ts": "1700000002.000300"}]
    await post_click(slack.client, click(trigger="t1", actions=pressed, user={"id": "U7", "team_id": "T1"}))
    await post_click(slack.client, click(trigger="t2", actions=pressed, user={"id": "U2", "team_id": "T2"}))
    # In the company's own channels its members are the customers: their clicks are answered.
    await post_click(slack.client, click(trigger="t3", user={"id": "U1", "team_id": "T1"}))
    await slack.channel.close()
    assert [(t.user, t.text) for t in slack.bot.turns] == [
        ("U2", "how do I reset my password?"), ("U2", "/contact_human_agent"), ("U1", "/track_refund")]


async def test_foreign_or_empty_clicks_are_ignored(slack: SimpleNamespace) -> None:
    foreign = click(trigger="t2", actions=[{"type": "button", "action_id": "approve", "value": "yes"}])
    empty = click(trigger="t3", actions=[])
    no_channel = click(trigger="t4", container="not an object", channel=None)
    # Nothing to read, or half a surrogate pair (which the store cannot keep: each of Slack's retries got a 500).
    invisible, unpaired = click("\u200b\u200b", trigger="t5"), click("refund \ud800", trigger="t6")
    unpaired_user = click(trigger="t7", user={"id": "U\udc00"})
    for body in (foreign, empty, no_channel, invisible, unpaired, unpaired_user):
        assert (await post_click(slack.client, body)).status == 200
    await slack.channel.close()
    assert slack.bot.turns == [] and slack.posts == []


async def test_interactions_are_verified_and_validated(slack: SimpleNamespace) -> None:
    assert (await post_click(slack.client, click(), secret="not-the-secret")).status == 401
    for body in (b"payload=%7Bnot+json", b"nothing=here", b"payload=%5B1%5D", b"\xff\xfe"):
        assert (await post_click(slack.client, body)).status == 400
    await slack.channel.close()
    assert slack.bot.turns == []


# --- rate limits ------------------------------------------------------------------------------


async def test_an_agents_reply_is_led_by_the_agents_name(slack: SimpleNamespace) -> None:
    """The web chat shows the name beside the reply; on Slack a customer could not tell a person from the bot."""
    await slack.channel.send(f"slack:T1:C1:{TS}", "Which order is it?", role="agent", author="Alice")
    await slack.channel.send(f"slack:T1:C1:{TS}", "Anything else?", role="bot")
    assert [(p["text"], p["blocks"][0]["text"]) for p in slack.posts] == [
        ("Alice: Which order is it?", "**Alice:** Which order is it?"), ("Anything else?", "Anything else?")]


async def test_the_notification_text_reads_the_markdown_as_plain_text(slack: SimpleNamespace) -> None:
    """Slack shows a message's ``text`` in its notification and reads it out to screen readers as it is: they got
    "**小李**：" and "[the FAQ](https://…)", asterisks and brackets and all. The markdown block keeps the Markdown."""
    answer = "Open **Orders** → *Request a refund*, or read [the FAQ](https://shop.example/faq) <3"
    await slack.channel.send(f"slack:T1:C1:{TS}", answer)
    await slack.channel.send(f"slack:T1:C1:{TS}", "请稍等", role="agent", author="小李")
    assert [(p["text"], p["blocks"][0]["text"]) for p in slack.posts] == [
        ("Open Orders → Request a refund, or read the FAQ (https://shop.example/faq) &lt;3", answer),
        ("小李：请稍等", "**小李**：请稍等")]


async def test_429_is_retried_after_retry_after(slack: SimpleNamespace) -> None:
    slack.api.limits.append("1")
    await slack.channel.send(f"slack:T1:C1:{TS}", "Thanks for waiting.")
    first, second = slack.api.calls
    assert second - first >= 0.95  # waited the second Slack asked for
    assert [p["text"] for p in slack.posts] == ["Thanks for waiting."]


async def test_a_burst_of_answers_in_one_channel_waits_its_turn_under_the_rate_limit(slack: SimpleNamespace) -> None:
    """Six answers at once in one channel, at one post per 0.3 s: each retried at the same instants as the
    others, all but three ran out of tries, and their threads went to a person."""
    slack.api.gap = 0.3
    sends = [slack.channel.send(f"slack:T1:C1:170000000{i}.000100", f"answer {i}") for i in range(6)]
    await asyncio.gather(*sends)
    assert sorted(p["text"] for p in slack.posts) == [f"answer {i}" for i in range(6)]
    await slack.channel.send(f"slack:T1:C2:{TS}", "another channel's answer")  # not held up by C1's limit
    assert slack.posts[-1]["channel"] == "C2"


async def test_429_retries_are_bounded(slack: SimpleNamespace) -> None:
    slack.api.limits.extend(["0"] * 5)
    with pytest.raises(SlackAPIError, match=r"rate limited \(Retry-After 0s\) at try 3 of 3"):
        await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    assert len(slack.api.calls) == 3 and slack.posts == []


async def test_slack_unavailable_is_tried_again_and_a_refused_post_is_not(slack: SimpleNamespace) -> None:
    """A 503 (Slack or a gateway down for a moment) posted nothing: the answer went to a person instead of
    being posted a second later. A 500 or a gateway's 504 may have posted it, and is not tried again."""
    slack.api.down.extend([503, 502])
    await slack.channel.send(f"slack:T1:C1:{TS}", "Your parcel left today.")
    first, second, third = slack.api.calls
    assert second - first >= 0.95 and third - second >= 1.95
    assert [p["text"] for p in slack.posts] == ["Your parcel left today."]
    for status in (500, 504):
        slack.api.down.append(status)
        with pytest.raises(SlackAPIError, match=f"HTTP {status}"):
            await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    assert len(slack.api.calls) == 5 and len(slack.posts) == 1


async def test_slacks_own_words_for_unavailable_or_a_failure_that_may_have_posted_are_taken_as_such(
        slack: SimpleNamespace) -> None:
    """Slack says service_unavailable (nothing done) and internal_error or fatal_error ("some aspect of the operation
    succeeded", maybe) in an answer of HTTP 200: each was a refusal, which handed the customer to an agent for a
    hiccup, or told an agent a reply the customer most likely had did not reach them, and they sent it again. The
    first is tried again a second later, as a 503 is; the others are taken as maybe posted, as a 500 is."""
    slack.api.errors.append("service_unavailable")
    await slack.channel.send(f"slack:T1:C1:{TS}", "Your parcel left today.")
    first, second = slack.api.calls
    assert second - first >= 0.95 and [p["text"] for p in slack.posts] == ["Your parcel left today."]
    for error in ("internal_error", "fatal_error"):
        slack.api.errors.append(error)
        with pytest.raises(SlackMaybePosted, match=f"chat.postMessage: {error}"):
            await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    slack.api.errors.append("channel_not_found")
    with pytest.raises(SlackAPIError, match="chat.postMessage: channel_not_found") as refused:
        await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    assert not isinstance(refused.value, MaybeDelivered)
    assert len(slack.api.calls) == 5 and len(slack.posts) == 1  # neither maybe-posted one tried again


async def test_a_post_slack_refuses_is_said_with_slacks_own_words_of_why(
        slack: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """A shop's Slack blocks that Slack refused were logged as "invalid_blocks" alone, and an answer to a channel the
    bot had been removed from as "not_in_channel" (a private one's "channel_not_found"): the admin was left to guess
    which block was wrong, or what to do.
    The log says which block and why, as Slack does, and how to put the bot back."""
    slack.api.errors.append({"error": "invalid_blocks", "errors": ["must be less than 76 characters"],
                             "response_metadata": {"messages": [
                                 "[ERROR] must be less than 76 characters [json-pointer:/blocks/1/elements/0/text/text]"]}})
    slack.api.errors.extend(["not_in_channel", "channel_not_found", "is_archived"])
    await post(slack.client, event())
    await post(slack.client, event("Ev2", ts="1700000002.000100"))
    await post(slack.client, event("Ev3", ts="1700000003.000100", channel="C9"))
    await post(slack.client, event("Ev4", ts="1700000004.000100", channel="C8"))
    await slack.channel.close()
    assert slack.posts == []
    assert ("chat.postMessage: invalid_blocks ([ERROR] must be less than 76 characters "
            "[json-pointer:/blocks/1/elements/0/text/text])") in caplog.text
    assert "chat.postMessage: not_in_channel (the bot is no member of the channel: invite it there, /invite @yourbot)" in (
        caplog.text)
    assert ("chat.postMessage: channel_not_found (the channel is gone, or private and the bot no member of it: invite "
            "it there, /invite @yourbot)") in caplog.text
    assert "chat.postMessage: is_archived (the channel is archived: unarchive it to answer there)" in caplog.text


async def test_a_redirect_from_slacks_api_url_is_not_followed(aiohttp_server: Any) -> None:
    """A 307 from api_url (a proxy's, a mistyped address) had this server post the customer's answer to whatever
    address it named, one on the server's own network included."""
    elsewhere: list[str] = []

    async def collect(request: web.Request) -> web.Response:
        elsewhere.append(await request.text())
        return web.json_response({"ok": True, "ts": "1.1"})

    other = web.Application()
    other.router.add_post("/api/chat.postMessage", collect)
    collector = await aiohttp_server(other)

    async def post_message(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(collector.make_url("/api/chat.postMessage")))

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post_message)
    channel = make_channel(FakeBot(), str((await aiohttp_server(app)).make_url("/api/")))
    with pytest.raises(SlackAPIError, match="chat.postMessage: HTTP 307"):
        await channel.send(f"slack:T1:C1:{TS}", "Your order 55667 ships to 12 Main Street.")
    await channel.close()
    assert elsewhere == []


async def test_a_message_slack_may_have_posted_is_told_apart_from_one_it_refused(aiohttp_server: Any) -> None:
    """A 500, a 504, a timeout or a connection closed before the answer (Slack's front end restarting) may have
    posted the message, as has a long one whose later piece failed: each was an error like a refusal, and an agent
    told the customer did not get their reply sent it again. Nor is it tried again: chat.postMessage takes no
    idempotency key, and a second try would post it twice."""
    answers: list[int | str] = []  # per chat.postMessage: its status, "slow" or "hang up"
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        how = answers.pop(0) if answers else 200
        if how == "slow":
            await asyncio.sleep(1)
        elif how == "hang up":  # posted, and the connection closed before the answer
            posted.append((await request.json())["text"])
            request.transport.close()
            return web.Response()  # never written
        elif how != 200:
            return web.Response(status=int(how), text="upstream error")
        posted.append((await request.json())["text"])
        return web.json_response({"ok": True, "ts": "1700000001.000200"})

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post_message)
    channel = make_channel(FakeBot(), str((await aiohttp_server(app)).make_url("/api/")))
    channel._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
    for how, why in ((500, "HTTP 500"), (504, "HTTP 504"), ("slow", "no answer in time")):
        answers.append(how)
        with pytest.raises(SlackMaybePosted, match=f"chat.postMessage: {why}"):
            await channel.send(f"slack:T1:C1:{TS}", "hi")
    answers.append("hang up")
    with pytest.raises(SlackMaybePosted, match="chat.postMessage: the connection closed before an answer came"):
        await channel.send(f"slack:T1:C1:{TS}", "It left today.")
    assert posted.count("It left today.") == 1 and not answers  # posted, and not tried again
    answers.append(400)
    with pytest.raises(SlackAPIError, match="chat.postMessage: HTTP 400") as failed:
        await channel.send(f"slack:T1:C1:{TS}", "hi")
    assert not isinstance(failed.value, MaybeDelivered)
    answers.extend([200, 400])
    with pytest.raises(SlackMaybePosted, match="HTTP 400, after 1 of its 2 pieces went out"):
        await channel.send(f"slack:T1:C1:{TS}", "\n\n".join(["Your refund is on its way."] * 500))
    assert len(posted) == 2  # the hung-up one's, and the long one's first piece
    await channel.close()


async def test_a_connection_that_never_opens_is_a_message_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A firewall dropping the SYN hung the connect until the whole request's timeout, which read as a
    message Slack may have posted: the agent was told to check first, and the customer never got it."""
    import aiohappyeyeballs

    from bot.channels import base

    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(100)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", hang)
    monkeypatch.setattr(base, "SEND_TIMEOUT_S", 0.6, raising=False)
    monkeypatch.setattr(base, "CONNECT_TIMEOUT_S", 0.3, raising=False)
    channel = make_channel(FakeBot(), "http://127.0.0.1:9/api/")
    with pytest.raises(aiohttp.ClientError) as failed:
        await channel.send(f"slack:T1:C1:{TS}", "hi")
    assert not isinstance(failed.value, MaybeDelivered)
    await channel.close()


async def test_an_unreachable_slack_is_tried_three_times(slack_api: SimpleNamespace) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/api/"  # nothing listens there
    channel = make_channel(FakeBot(), closed)
    started = time.monotonic()
    with pytest.raises(SlackAPIError, match="at try 3 of 3"):
        await channel.send(f"slack:T1:C1:{TS}", "hi")
    assert time.monotonic() - started >= 2.9  # 1 s, then 2 s
    await channel.close()


async def test_a_stopping_server_leaves_a_send_it_would_retry_to_the_next_one(slack_api: SimpleNamespace) -> None:
    """Waiting to try again held the shutdown up; the owed answer stays owed, for the next server to send."""
    bot, settled, marked = FakeBot(), [], []

    bot.store = SimpleNamespace(delivered=settled.append, undelivered=marked.append, conversation=lambda _id: None,
                                owed=lambda _id: True)
    channel = make_channel(bot, slack_api.url)
    slack_api.down.extend([503] * 3)
    channel.redeliver({"id": 7, "conversation_id": f"slack:T1:C1:{TS}", "reply_turn": 42, "reply": "It left today.",
                       "text": "where is it?", "buttons": []})
    agents = asyncio.create_task(channel.send(f"slack:T1:C2:{TS}", "An agent's reply.", role="agent"))  # another channel
    queued = asyncio.create_task(channel.send(f"slack:T1:C1:{TS}", "Queued behind.", role="agent"))  # C1's: waits its turn
    while len(slack_api.calls) < 2:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await channel.close()
    assert time.monotonic() - started < 0.5
    for reply in (agents, queued):  # an agent's reply is told it failed; the queued one never went to Slack
        with pytest.raises(DeliveryError, match="the server is stopping"):
            await reply
    assert (settled, marked, len(slack_api.calls), slack_api.posts) == ([], [], 2, [])


async def test_an_answer_slack_refused_after_its_first_pieces_is_still_marked_and_handed_off(
        slack_api: SimpleNamespace) -> None:
    """A long answer whose second piece Slack refused was taken as delivered with the first: the customer had
    the start of it and not its buttons, and no agent was pointed to them."""
    bot, settled, marked, announced = FakeBot(), [], [], []

    async def announce(*args: Any) -> None:
        announced.append(args)

    bot.store = SimpleNamespace(delivered=settled.append, not_delivered=lambda *args: marked.append(args) or True)
    bot.announce = announce
    channel = make_channel(bot, slack_api.url)
    slack_api.gap = 3600  # the second piece is refused with a wait too long to make
    cid = f"slack:T1:C1:{TS}"
    await channel.deliver(cid, 42, channel.send(cid, "Our refund policy, explained. " * 600,
                                                buttons=[{"title": "Refund", "payload": "/get_refund"}]), 7)
    assert len(slack_api.posts) == 1 and settled == []
    assert marked == [(cid, 42, 7)] and announced == [(cid, True, "undelivered", "slack")]
    await channel.close()


async def test_long_retry_after_is_not_waited_for(slack: SimpleNamespace) -> None:
    slack.api.limits.append("3600")
    started = time.monotonic()
    with pytest.raises(SlackAPIError, match="Retry-After 3600s"):
        await slack.channel.send(f"slack:T1:C1:{TS}", "hi")
    assert time.monotonic() - started < 5 and len(slack.api.calls) == 1


# --- the per-conversation limit -----------------------------------------------------------------


@pytest.mark.parametrize("script, told", [(None, "您发送消息太快了，请等待 "), ("traditional", "您發送消息太快了，請等待 ")])
async def test_a_thread_in_chinese_is_told_to_wait_in_chinese(aiohttp_client: Any, slack_api: SimpleNamespace,
                                                              tmp_path: Path, script: str | None, told: str) -> None:
    """A number alone keeps the conversation's language, on a multi bot: the notice for one came in English.
    It keeps the customer's script too: one who writes Traditional characters was told in Simplified."""
    bot = FakeBot()
    bot.store = Store(tmp_path / "dialogues.db")
    store_thread = ThreadPoolExecutor(max_workers=1)  # the store's one thread, as the engine's (Store's docstring)
    bot._store = lambda fn, *args: asyncio.get_running_loop().run_in_executor(store_thread, fn, *args)  # type: ignore[attr-defined]
    bot.store.log_exchange(Exchange(f"slack:T1:C1:{TS}", "slack", "U1", "我要退款", None, "好的", "get_refund", 0.9, [],
                                    "template", "v0001", slots={"language": "zh", "chinese_script": script}))
    channel = make_channel(bot, slack_api.url, language="multi")
    client = await limited_client(aiohttp_client, channel, 1)
    for n in range(2):
        await post(client, event(f"Ev{n}", text="1234", ts=f"1700000000.00010{n}", thread_ts=TS))
    await channel.close()
    store_thread.shutdown()
    bot.store.close()
    [notice] = [p["text"] for p in slack_api.posts if p["text"] != bot.text]
    assert notice.startswith(told) and notice.endswith(" 秒后再发送。" if script is None else " 秒後再發送。"), notice


async def test_the_notice_to_wait_is_sent_when_the_store_cannot_say_the_language(
        aiohttp_client: Any, slack_api: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """The notice is recorded as sent before the language is read: a failed read must not lose it."""
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url, language="multi")

    async def locked(_: str) -> dict[str, Any]:
        raise sqlite3.OperationalError("database is locked")

    channel.conversation_slots = locked  # type: ignore[method-assign]
    client = await limited_client(aiohttp_client, channel, 1)
    statuses = [(await post(client, event(f"Ev{n}", text="1234", ts=f"1700000000.00010{n}", thread_ts=TS))).status
                for n in range(2)]
    await channel.close()
    assert statuses == [200, 200] and "database is locked" in caplog.text
    [notice] = [p["text"] for p in slack_api.posts if p["text"] != bot.text]
    assert notice.startswith("You are sending messages too fast.")


async def test_a_flooding_thread_is_limited_and_told_once_to_wait(aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url)
    client = await limited_client(aiohttp_client, channel, 2)
    flood = [event(f"Ev{n}", text=f"<@UBOT> hello {n}", ts=f"1700000000.00010{n}", thread_ts=TS) for n in range(5)]
    started = time.monotonic()
    statuses = [(await post(client, payload)).status for payload in flood[:4]]
    statuses.append((await post_click(client, click())).status)  # a button click in the thread counts too
    assert statuses == [200] * 5 and time.monotonic() - started < 2  # every callback acknowledged at once
    await post(client, event("Ev9", text="<@UBOT> elsewhere", ts="1700000009.000100"))  # another thread
    await channel.close()
    assert [t.text for t in bot.turns] == ["hello 0", "hello 1", "elsewhere"]  # the excess never reached the model
    notices = [p for p in slack_api.posts if p["text"] != bot.text]
    [notice] = notices  # one notice for three dropped messages
    assert notice["thread_ts"] == TS
    seconds = int(re.fullmatch(r"You are sending messages too fast\. Please wait (\d+) seconds, then send your "
                               r"message again\.", notice["text"])[1])  # type: ignore[index]
    assert 1 <= seconds <= 60
    assert len(slack_api.posts) == 4  # three answers and the notice


async def test_a_flooding_customer_writing_in_a_dm_thread_is_told_to_wait_in_that_thread(
        aiohttp_client: Any, slack_api: SimpleNamespace) -> None:
    """Their answers go to the thread they write in; the notice went to the top level, out of their sight."""
    bot = FakeBot()
    channel = make_channel(bot, slack_api.url)
    client = await limited_client(aiohttp_client, channel, 1)
    for n in range(2):
        await post(client, event(f"Ev{n}", text=f"hello {n}", ts=f"1700000000.00010{n}", thread_ts=TS, channel="D1",
                                 channel_type="im"))
    await channel.close()
    assert [p.get("thread_ts") for p in slack_api.posts] == [TS, TS]
