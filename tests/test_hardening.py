"""Hardening through the real app (tiny demo bot, real SQLite store): limits, the published schema,
the admin token, CORS, normalisation, privacy and purge, action time limits, and bad models."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import hashlib
import hmac
import json
import logging
import os
import re
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import aiohttp
from aiohttp import web
import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError

import bot.server as serving
from bot.actions import ActionError
from bot.aiohttp_log import ClientErrorsInOneLine
from bot.channels.base import STORE_DAMAGED, BackgroundTasks, StoreRefusals, normalise, readable
from bot.channels.slack import slack_signature
from bot.channels.web import ChatRequest
from bot.cli import cli
from bot.cli.serve import UNMENDABLE
from bot.language import READABLE
from bot.limits import LIMITS, Limits, check_aiohttp, retry_after, slow_down
from bot.log_format import LOG_FORMAT, RedactedTracebacks
from bot.nlu import NLU
from bot.openapi import ChatResponse, HistoryResponse, InboxResponse, mounted
from bot.project import (AGENT_NAME_PATTERN, VISIBLE_AGENT_NAME, LimitsConfig, Project, ServerConfig, agent_name,
                         load_project)
from bot.server import BOT, create_app, load_at_start, load_serving_model
from dialogues.disk import cannot_write
from dialogues.migrations import MIGRATIONS
from dialogues.store import REDELIVERY_WINDOW_S, UNOWNED_GRACE_S, Store, StoreError, address_tag, log_tag
from finetune.classifier import FILES
from finetune.registry import Registry
from tests.conftest import REPO, configure, configured_copy, rename_intent

NO_LIMITS = {"per_ip_per_minute": 0, "per_conversation_per_minute": 0, "websockets_per_ip": 0, "conversations_per_ip": 0}
SLOW_ACTIONS = '''
import asyncio, time
from rasa_sdk import Action
from rasa_sdk.events import FollowupAction


class Blocking(Action):
    def name(self):
        return "action_blocking"

    def run(self, dispatcher, tracker, domain):
        time.sleep(5)  # a synchronous call that hangs, e.g. requests.get without a timeout
        dispatcher.utter_message(text="too late")
        return []


class Sleeping(Action):
    def name(self):
        return "action_sleeping"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(5)
        return []


class Pausing(Action):
    def name(self):
        return "action_pausing"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(1)
        dispatcher.utter_message(text="Order 123 is on its way.")
        return []


class Warming(Action):
    """Starts a task it does not wait for (a cache it keeps warm), which runs on after it has answered."""

    def name(self):
        return "action_warming"

    async def run(self, dispatcher, tracker, domain):
        Warming.refresh = asyncio.ensure_future(asyncio.sleep(60))
        dispatcher.utter_message(text="warming up")
        return []


class Broken(Action):
    def name(self):
        return "action_broken"

    def run(self, dispatcher, tracker, domain):
        raise RuntimeError("the order database is down")


class Exiting(Action):
    def name(self):
        return "action_exiting"

    def run(self, dispatcher, tracker, domain):
        raise SystemExit("no database, giving up")  # sys.exit() in the shop's code must not stop the server


class Interrupting(Action):
    def name(self):
        return "action_interrupting"

    def run(self, dispatcher, tracker, domain):
        raise KeyboardInterrupt


class Cancelled(Action):
    def name(self):
        return "action_cancelled"

    async def run(self, dispatcher, tracker, domain):
        lookup = asyncio.ensure_future(asyncio.sleep(5))
        lookup.cancel()
        await lookup  # CancelledError, as from a client library cancelled inside
        return []


class SlowSteps(Action):
    def name(self):
        return "action_slow_steps"

    def run(self, dispatcher, tracker, domain):
        time.sleep(0.3)
        dispatcher.utter_message(text="step")
        return [FollowupAction("action_slow_steps")]


class Stuck(Action):
    def name(self):
        return "action_stuck"

    def run(self, dispatcher, tracker, domain):
        time.sleep(60)
        return []


class Quick(Action):
    def name(self):
        return "action_quick"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="quick")
        return []
'''


@pytest.fixture(scope="module")
def nlu(tiny_demo_bot: Path) -> NLU:
    """The tiny demo model, loaded once and shared by the apps below (each has its own bot folder)."""
    return load_serving_model(load_project(tiny_demo_bot), "cpu")


@pytest.fixture
def make_client(aiohttp_client: Any, tiny_demo_bot: Path, tmp_path: Path, nlu: NLU) -> Callable[..., Any]:
    """``await make_client(server={...}, ...)``: a test client of the tiny demo bot with that bot.yml."""

    async def make(**config: dict[str, Any]) -> Any:
        root = configured_copy(tiny_demo_bot, tmp_path / f"bot-{uuid.uuid4().hex[:6]}", **config)
        return await aiohttp_client(create_app(root, device="cpu", nlu=nlu))

    return make


def cid() -> str:
    return f"hard-{uuid.uuid4().hex[:12]}"


async def chat(client: Any, conversation_id: str, text: str, **headers: str) -> Any:
    return await client.post("/api/chat", json={"conversation_id": conversation_id, "text": text}, headers=headers)


def store_rows(client: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(client.app[BOT].project.db_path) as db:
        return db.execute(sql, args).fetchall()


# --- limits --------------------------------------------------------------------------------------


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    """Whether ``text`` reaches the log within 10 s: the watcher of a bot's files looks at them in its own time."""
    for _ in range(200):
        if text in caplog.text:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_messages_per_conversation_get_429_with_retry_after(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": {"per_conversation_per_minute": 3}})
    busy = cid()
    for _ in range(3):
        assert (await chat(client, busy, "hello")).status == 200
    response = await chat(client, busy, "hello again")
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "messages in this conversation" in (await response.json())["error"]
    assert (await chat(client, cid(), "hello")).status == 200  # other conversations are not held up

    async with client.ws_connect("/api/ws") as ws:  # the socket counts against the same conversation
        await ws.send_json({"conversation_id": busy, "text": "over the socket"})
        frame = await ws.receive_json()
        assert frame["type"] == "error" and "messages in this conversation" in frame["error"] and frame["retry_after"] >= 1
        assert frame["request"] == "message"
        await ws.send_json({"conversation_id": cid(), "text": "hi"})
        assert (await ws.receive_json())["type"] == "reply"  # and the socket stays open


async def test_messages_from_one_address_are_capped_whatever_their_conversation(make_client: Callable[..., Any]) -> None:
    """Each message is a model call and a store write: one address spreading its messages over its open
    conversations, each under its own limit, could send its whole request share as messages. Past the cap its
    messages get 429, over HTTP and over the socket alike, while its other requests and other addresses go on."""
    client = await make_client(server={"limits": {"messages_per_ip_per_minute": 3, "trust_forwarded_for": True}})
    conversations = [cid() for _ in range(3)]
    assert [(await chat(client, conversation, "hello")).status for conversation in conversations] == [200] * 3
    refused = await chat(client, conversations[0], "hello again")
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await refused.json())["error"].startswith("too many messages from this address: more than 3 a minute")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": conversations[1], "text": "over the socket"})
        frame = await ws.receive_json()
        assert frame["type"] == "error" and "messages from this address" in frame["error"] and frame["retry_after"] >= 1
    assert (await client.get(f"/api/conversations/{conversations[0]}/history")).status == 200
    assert (await chat(client, conversations[0], "hello", **{"X-Forwarded-For": "203.0.113.9"})).status == 200
    assert len(store_rows(client, "SELECT * FROM turns WHERE role = 'user'")) == 4


async def test_requests_per_ip_get_429_and_platform_callbacks_and_health_are_exempt(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": {"per_ip_per_minute": 4}})
    statuses = [(await client.get("/api/widget")).status for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    response = await chat(client, cid(), "hi")
    assert response.status == 429 and "requests from this address" in (await response.json())["error"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert (await client.get("/healthz")).status == 200


async def test_only_configured_callbacks_go_uncounted_and_an_unsigned_one_counts(make_client: Callable[..., Any]) -> None:
    """Every path starting /slack/, /wecom/ or /healthz went uncounted, configured or not, signed or not: a flood
    of unsigned callbacks from one address, each body read (up to 1 MiB) and hashed, was never refused."""
    client = await make_client(server={"limits": {"per_ip_per_minute": 3}},
                               channels={"slack": {"signing_secret": "s", "bot_token": "xoxb-t",
                                                   "api_url": "http://127.0.0.1:9/"}})

    async def callback(secret: str) -> int:
        body, stamp = b'{"type": "url_verification", "challenge": "c"}', str(int(time.time()))
        signed = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": slack_signature(secret, stamp, body),
                  "Content-Type": "application/json"}
        return (await client.post("/slack/events", data=body, headers=signed)).status

    assert [await callback("s") for _ in range(5)] == [200] * 5  # Slack's own: never counted
    assert [await callback("guess") for _ in range(4)] == [401] * 3 + [429]  # refused before its signature is computed
    assert (await client.get("/healthz")).status == 200
    other = await make_client(server={"limits": {"per_ip_per_minute": 3}})  # no channel configured
    assert [(await other.post("/wecom/callback")).status for _ in range(4)] == [404] * 3 + [429]
    assert (await other.get("/healthzzz")).status == 429 and (await other.get("/healthz")).status == 200


async def test_a_callback_refused_before_its_signature_is_checked_counts_too(make_client: Callable[..., Any]) -> None:
    """Only a 401 counted: a callback without its query, with XML that does not parse or with a body over the
    channel's limit was refused 400 or 413 before any signature was computed, and never counted, so one address
    could send such requests without end, each body read (up to 1 MiB for Slack) and parsed."""
    wecom = {"token": "QDG6eK", "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
             "corp_id": "wx5823bf96d3bd56c7", "secret": "s", "agent_id": "1000002", "api_url": "http://127.0.0.1:9/"}
    slack = {"signing_secret": "s", "bot_token": "xoxb-t", "api_url": "http://127.0.0.1:9/"}
    client = await make_client(server={"limits": {"per_ip_per_minute": 3}}, channels={"wecom": wecom, "slack": slack})
    query = "?msg_signature=x&timestamp=1&nonce=n"
    statuses = [(await client.post("/wecom/callback")).status,  # no query
                (await client.post(f"/wecom/callback{query}", data=b"<xml><Encrypt>")).status]  # no XML

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the body is read until it is over the limit
        for _ in range(65):
            yield b"x" * (16 * 1024)

    statuses.append((await client.post("/slack/events", data=chunks())).status)
    assert statuses == [400, 400, 413]
    assert (await client.post("/wecom/callback")).status == 429


async def test_a_platforms_callback_to_a_channel_that_is_off_says_why_in_the_log(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """WeCom's check of the callback URL, saved in its admin console while bot serve ran without the keys (set in
    another shell), got a 404 and the log said nothing. Said once a minute a path at most; a channel that is on, or
    another path, says nothing."""
    def said() -> list[str]:
        lines = [r.getMessage() for r in caplog.records
                 if r.levelname == "WARNING" and "channel is off" in r.getMessage()]
        caplog.clear()
        return lines

    client = await make_client()
    for _ in range(2):
        assert (await client.get("/wecom/callback", params={"echostr": "x"})).status == 404
    assert (await client.post("/slack/events", data=b"{}")).status == 404
    assert (await client.get("/nowhere")).status == 404
    assert said() == [
        "a request to /wecom/callback, where WeCom calls back, was answered 404: the WeCom channel is off, as none of "
        "DESKBOT_WECOM_TOKEN, DESKBOT_WECOM_AES_KEY, DESKBOT_WECOM_CORP_ID, DESKBOT_WECOM_SECRET, DESKBOT_WECOM_AGENT_ID "
        "(or channels.wecom in bot.yml) is set where bot serve reads them; set them all and start it again "
        "(docs/channels.md)",
        "a request to /slack/events, where Slack calls back, was answered 404: the Slack channel is off, as none of "
        "DESKBOT_SLACK_SIGNING_SECRET, DESKBOT_SLACK_BOT_TOKEN (or channels.slack in bot.yml) is set where bot serve "
        "reads them; set them all and start it again (docs/channels.md)"]
    slack = {"signing_secret": "s", "bot_token": "xoxb-t", "api_url": "http://127.0.0.1:9/"}
    client = await make_client(channels={"slack": slack})
    assert (await client.post("/slack/interactions", data=b"{}")).status == 401
    assert (await client.get("/wecom/callback")).status == 404
    assert [line.split(",")[0] for line in said()] == ["a request to /wecom/callback"]


async def test_requests_with_the_admin_token_are_not_counted_per_address(make_client: Callable[..., Any]) -> None:
    """An office's agents share one address: four consoles' refreshes used up its share in minutes, and then
    the agents' replies to customers got 429. A wrong token counts as any request."""
    client = await make_client(server={"limits": {"per_ip_per_minute": 3}, "admin_token": "office-token"})
    agent = {"Authorization": "Bearer office-token"}
    assert [(await client.get("/admin/conversations", headers=agent)).status for _ in range(6)] == [200] * 6
    guess = {"Authorization": "Bearer guess"}
    assert [(await client.get("/admin/conversations", headers=guess)).status for _ in range(4)] == [401] * 3 + [429]
    assert (await chat(client, cid(), "hi")).status == 429  # the guesses spent the address's share
    assert (await client.get("/admin/conversations", headers=agent)).status == 200


async def test_wrong_tokens_are_limited_apart_from_the_address_share(make_client: Callable[..., Any]) -> None:
    """The agents' console sign-in allowed per_ip_per_minute (240) guesses a minute from each address. Wrong tokens
    (admin, agent, metrics) count apart: past failed_auth_per_ip_per_minute, that address's requests with a token
    get 429, a right one too (its answer would tell the guess right), while its customers' chat goes on, another
    address is not held, and right tokens alone never count."""
    client = await make_client(server={"limits": {"failed_auth_per_ip_per_minute": 3, "trust_forwarded_for": True},
                                       "admin_token": "office-token", "metrics_token": "scrape-token"})
    here, there = {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "198.51.100.4"}
    right = {"Authorization": "Bearer office-token"}
    assert [(await client.get("/admin/conversations", headers={**right, **here})).status for _ in range(5)] == [200] * 5
    guesses = [client.get("/admin/conversations", headers={"Authorization": "Bearer guess", **here}),
               client.get("/metrics", headers={"Authorization": "Bearer guess", **here}),
               client.get("/admin/conversations", headers={"Authorization": "Bearer guess-again", **here}),
               client.get("/admin/conversations", headers={"Authorization": "Bearer office-toke", **here})]
    answers = [await guess for guess in guesses]
    assert [answer.status for answer in answers] == [401, 401, 401, 429]
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    assert (await client.get("/admin/conversations", headers={**right, **here})).status == 429
    assert (await chat(client, cid(), "hi", **here)).status == 200  # no token: not held
    assert (await client.get("/admin/conversations", headers={**right, **there})).status == 200


async def test_socket_joins_count_against_the_address(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": {"per_ip_per_minute": 4}})
    conversation = cid()
    assert (await chat(client, conversation, "hello")).status == 200  # one request
    async with client.ws_connect("/api/ws") as ws:  # and the upgrade another
        frames = []
        for joined in (cid(), cid(), conversation):
            await ws.send_json({"type": "join", "conversation_id": joined})
            frames.append(await ws.receive_json())
        assert [f["type"] for f in frames] == ["status", "status", "error"]
        assert "requests from this address" in frames[2]["error"] and frames[2]["retry_after"] >= 1
        assert frames[2]["request"] == "join"  # the widget must not take it for its next message's answer
        # refused its status, the socket still hears its conversation (an office behind one address)
        await client.app[BOT].set_handoff(conversation, True, "agent", "web")
        assert await ws.receive_json(timeout=10) == {"type": "status", "conversation_id": conversation, "status": "handed_off",
                                                     "by": "agent"}


async def test_refused_socket_frames_count_against_the_address(make_client: Callable[..., Any]) -> None:
    """Malformed, invalid and binary frames were answered without being counted: one socket sent 700 of 60 KB
    in half a second, where the seventh malformed POST got a 429."""
    client = await make_client(server={"limits": {"per_ip_per_minute": 4}})
    async with client.ws_connect("/api/ws") as ws:  # the upgrade is one request
        frames = []
        for send in (ws.send_str("{not json"), ws.send_bytes(b"\x00"), ws.send_json({"conversation_id": ""}),
                     ws.send_str("{not json")):
            await send
            frames.append(await ws.receive_json())
    assert [f["type"] for f in frames] == ["error"] * 4
    assert frames[0]["error"] == "body: malformed JSON" and "text frame" in frames[1]["error"]
    assert "requests from this address" in frames[3]["error"] and frames[3]["retry_after"] >= 1


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_client: Callable[..., Any]) -> None:
    trusting = await make_client(server={"limits": {"per_ip_per_minute": 2, "trust_forwarded_for": True}})
    for address in ("203.0.113.1", "203.0.113.2"):  # the proxy appends the address it saw; what precedes is the client's
        assert [(await trusting.get("/api/widget", headers={"X-Forwarded-For": f"10.9.9.{n}, {address}"})).status
                for n in range(3)] == [200, 200, 429]
    assert [(await trusting.get("/api/widget", headers={"X-Forwarded-For": f"2001:db8:0:7::{n}"})).status
            for n in range(1, 4)] == [200, 200, 429]  # one IPv6 subscriber's /64 is one client
    # A dual-stack proxy writes IPv4 clients as ::ffff:a.b.c.d: each is itself, not one /64 for all of IPv4.
    for address in ("::ffff:198.51.100.7", "::ffff:198.51.100.8"):
        assert [(await trusting.get("/api/widget", headers={"X-Forwarded-For": address})).status
                for _ in range(3)] == [200, 200, 429]
    # HAProxy adds its own line after the client's; some proxies write the client's port.
    from multidict import CIMultiDict

    lines = [CIMultiDict([("X-Forwarded-For", f"192.0.2.{n}"), ("X-Forwarded-For", "203.0.113.9")]) for n in range(3)]
    assert [(await trusting.get("/api/widget", headers=headers)).status for headers in lines] == [200, 200, 429]
    for addresses in ([f"203.0.113.21:4000{n}" for n in range(3)], [f"[2001:db8:1:2::{n}]:443" for n in range(1, 4)]):
        assert [(await trusting.get("/api/widget", headers={"X-Forwarded-For": a})).status
                for a in addresses] == [200, 200, 429]
    direct = await make_client(server={"limits": {"per_ip_per_minute": 2}})
    assert [(await direct.get("/api/widget", headers={"X-Forwarded-For": f"203.0.113.{n}"})).status
            for n in range(3)] == [200, 200, 429]  # a client cannot pick its own address

async def test_an_ipv6_client_counts_by_the_prefix_set(make_client: Callable[..., Any]) -> None:
    """A client holding a /56 or /48 (as many ISPs and every cloud delegate) counted as 256 to 65,536 clients by
    its /64s: limits.ipv6_prefix_length counts it as one."""
    headers = [{"X-Forwarded-For": f"2001:db8:0:{n}00::1"} for n in range(1, 4)]  # three /64s of one /56
    by_64 = await make_client(server={"limits": {"per_ip_per_minute": 2, "trust_forwarded_for": True}})
    assert [(await by_64.get("/api/widget", headers=h)).status for h in headers] == [200, 200, 200]
    by_48 = await make_client(server={"limits": {"per_ip_per_minute": 2, "trust_forwarded_for": True,
                                                 "ipv6_prefix_length": 48}})
    assert [(await by_48.get("/api/widget", headers=h)).status for h in headers] == [200, 200, 429]
    with pytest.raises(ValidationError):
        LimitsConfig(ipv6_prefix_length=129)


async def test_an_ipv6_address_holding_an_ipv4_one_counts_as_it(make_client: Callable[..., Any]) -> None:
    """A 6to4 address (2002:a.b.c.d::/48) and a Teredo one (2001:0::/32) are made from their client's IPv4 address,
    the /48 of 6to4 65,536 /64s each of which got every limit again: each counts as that IPv4 address."""
    client = await make_client(server={"limits": {"per_ip_per_minute": 2, "trust_forwarded_for": True}})
    six_to_four = [f"2002:cb00:7101:{n}::1" for n in range(1, 4)]  # 203.0.113.1's
    teredo = [f"2001:0:4136:e37{n}:8000:63bf:3fff:fdd2" for n in range(3)]  # 192.0.2.45's, through three servers
    for addresses in (six_to_four, teredo):
        assert [(await client.get("/api/widget", headers={"X-Forwarded-For": a})).status
                for a in addresses] == [200, 200, 429]
    assert (await client.get("/api/widget", headers={"X-Forwarded-For": "203.0.113.1"})).status == 429
    # Translated by NAT64 (64:ff9b::/96), as in front of a server on an IPv6-only network, every IPv4 client is in one
    # /64: each counts as itself, not one share of each limit for all of them.
    for address in ("64:ff9b::c633:6407", "64:ff9b::c633:6408"):  # 198.51.100.7, .8
        assert [(await client.get("/api/widget", headers={"X-Forwarded-For": address})).status
                for _ in range(3)] == [200, 200, 429]


async def test_a_proxy_in_front_that_is_not_trusted_is_said_once(make_client: Callable[..., Any],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Behind a reverse proxy set up without limits.trusted_proxies, every customer counted as the proxy: one share of
    every limit for all of them, which one client could use up for everyone, and nothing said so."""
    client = await make_client()
    for n in range(3):  # the test client is a proxy on this machine, passing on its clients' addresses
        assert (await client.get("/api/widget", headers={"X-Forwarded-For": f"203.0.113.{n}"})).status == 200
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "X-Forwarded-For" in r.getMessage()]
    assert said == ["requests from 127.0.0.1 carry X-Forwarded-For, as a reverse proxy adds it, but neither "
                    "server.limits.trusted_proxies nor trust_forwarded_for is set: every client behind it counts as "
                    "127.0.0.1, one share of each limit for all; set server.limits.trusted_proxies: [127.0.0.1] "
                    "(docs/security.md)"]
    caplog.clear()
    trusting = await make_client(server={"limits": {"trusted_proxies": ["127.0.0.1"]}})
    assert (await trusting.get("/api/widget", headers={"X-Forwarded-For": "203.0.113.9"})).status == 200
    assert "X-Forwarded-For" not in caplog.text


async def test_forwarded_for_is_read_through_the_trusted_proxies_named(make_client: Callable[..., Any]) -> None:
    """trust_forwarded_for read one hop from any peer: behind a load balancer and nginx every customer was the
    load balancer, and a client reaching the server directly picked its own address."""
    behind = await make_client(server={"limits": {"per_ip_per_minute": 2, "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}})
    # the test client is the nginx at 127.0.0.1, after a load balancer at 10.0.0.1
    assert [(await behind.get("/api/widget", headers={"X-Forwarded-For": f"203.0.113.{n}, 10.0.0.1"})).status
            for n in range(1, 4)] == [200, 200, 200]  # three customers, each counted as themselves
    assert [(await behind.get("/api/widget", headers={"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.9, 10.0.0.1"})).status
            for n in range(3)] == [200, 200, 429]  # what a customer writes before their own address is theirs
    direct = await make_client(server={"limits": {"per_ip_per_minute": 2, "trusted_proxies": ["10.0.0.0/8"]}})
    assert [(await direct.get("/api/widget", headers={"X-Forwarded-For": f"203.0.113.{n}"})).status
            for n in range(3)] == [200, 200, 429]  # a peer that is no proxy of ours is the client


async def test_websockets_per_ip_are_capped(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": {"websockets_per_ip": 2}})
    first, second = await client.ws_connect("/api/ws"), await client.ws_connect("/api/ws")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/ws")
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    await first.close()
    await asyncio.sleep(0.1)  # the server sees the close
    third = await client.ws_connect("/api/ws")  # a slot is free again
    await third.send_json({"conversation_id": cid(), "text": "hello"})
    assert (await third.receive_json())["type"] == "reply"
    await second.close()
    await third.close()


async def test_connections_per_ip_are_capped_but_a_trusted_proxys_are_not(make_client: Callable[..., Any],
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Each connection holds one of the files the process may open, and one address held as many as it opened, each
    for keepalive_seconds without sending a byte: enough of them and the server accepted nobody else."""
    client = await make_client(server={"limits": {"connections_per_ip": 3}})
    held = [await asyncio.open_connection("127.0.0.1", client.port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    refused = await asyncio.wait_for(reader.read(), 5)  # answered and closed
    assert refused.startswith(b"HTTP/1.1 429") and b"Retry-After: 10" in refused
    assert b"too many open connections from this address: at most 3" in refused
    assert f"{address_tag('127.0.0.1')} has 3 connections open" in caplog.text
    writer.close()
    silent = await asyncio.open_connection("127.0.0.1", client.port)
    assert await asyncio.wait_for(silent[0].read(), 5) == b""  # one that sends nothing is cut soon
    held.pop()[1].close()
    assert await connections_within(client, 5, count=2) == 2
    assert (await client.get("/healthz")).status == 200  # its slot is free again
    for _, other in held:
        other.close()
    proxied = await make_client(server={"limits": {"connections_per_ip": 1, "trusted_proxies": ["127.0.0.1/32"]}})
    behind = [await asyncio.open_connection("127.0.0.1", proxied.port) for _ in range(3)]
    assert await connections_within(proxied, 5, count=3) == 3  # a proxy's connections are many clients'
    for _, other in behind:
        other.close()


async def refused_over_the_cap(port: int, request: str) -> bytes:
    """What a connection over connections_per_ip is answered to ``request`` (a request's head), until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_connection_over_the_cap_is_refused_readably_by_an_allowed_site(make_client: Callable[..., Any],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal, written as the connection opened, had no CORS headers: a widget on the shop's site could not read
    it, took it for a message lost on the way and said Not sent only after looking for it in the history for 12 s."""
    shop = "http://shop.example"
    client = await make_client(server={"limits": {"connections_per_ip": 1}}, channels={"web": {"origins": [shop]}})
    held = await asyncio.open_connection("127.0.0.1", client.port)
    ask = f"Host: localhost\r\nOrigin: {shop}\r\nSec-Fetch-Site: cross-site\r\n"
    preflight = await refused_over_the_cap(client.port, f"OPTIONS /api/chat HTTP/1.1\r\n{ask}"
                                           "Access-Control-Request-Method: POST\r\n\r\n")
    assert preflight.startswith(b"HTTP/1.1 204") and f"Access-Control-Allow-Origin: {shop}".encode() in preflight
    body = '{"conversation_id": "over-the-cap-1234", "text": "hello"}'
    refused = await refused_over_the_cap(client.port, f"POST /api/chat HTTP/1.1\r\n{ask}Content-Type: application/json"
                                         f"\r\nContent-Length: {len(body)}\r\n\r\n{body}")
    assert refused.startswith(b"HTTP/1.1 429") and b"Retry-After: 10" in refused
    assert f"Access-Control-Allow-Origin: {shop}".encode() in refused and b"Access-Control-Expose-Headers: Retry-After" in refused
    other = await refused_over_the_cap(client.port, "GET /api/widget HTTP/1.1\r\nHost: localhost\r\n"
                                       "Origin: http://other.example\r\nSec-Fetch-Site: cross-site\r\n\r\n")
    assert other.startswith(b"HTTP/1.1 429") and b"Access-Control-Allow-Origin" not in other
    monkeypatch.setattr("bot.limits.REFUSALS_READ", 0)  # a flood of them: refused as they open, unread
    assert (await refused_over_the_cap(client.port, "")).startswith(b"HTTP/1.1 429")
    held[1].close()


def test_an_aiohttp_without_what_the_connection_limits_use_is_refused_at_start() -> None:
    """The connection limits wrap private parts of aiohttp's RequestHandler: a release without them is said as the
    server starts, where each connection failed as it opened."""
    class Renamed:
        pause_writing = resume_writing = connection_made = connection_lost = force_close = close = transport = None

    check_aiohttp()  # the installed one has them
    with pytest.raises(RuntimeError, match=r"has no Renamed\._manager, which deskbot's connection limits use"):
        check_aiohttp(Renamed)


async def test_websockets_from_all_addresses_are_capped(make_client: Callable[..., Any],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Each socket holds a file descriptor, and many addresses each within websockets_per_ip could together take
    every one the process may open: past limits.websockets the server refuses new ones (503), whoever asks."""
    client = await make_client(server={"limits": {"websockets": 2, "trust_forwarded_for": True}})
    sockets = [await client.ws_connect("/api/ws", headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(2)]
    for n in range(2, 4):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/api/ws", headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "10"
    assert len([r for r in caplog.records if "WebSockets are open" in r.getMessage()]) == 1
    reply = await chat(client, cid(), "hello", **{"X-Forwarded-For": "203.0.113.2"})  # HTTP goes on
    assert reply.status == 200
    await sockets[0].close()
    await asyncio.sleep(0.1)  # the server sees the close
    third = await client.ws_connect("/api/ws", headers={"X-Forwarded-For": "203.0.113.3"})
    await third.send_json({"conversation_id": cid(), "text": "hello"})
    assert (await third.receive_json())["type"] == "reply"
    for ws in (sockets[1], third):
        await ws.close()


def test_the_websocket_cap_defaults_to_half_the_open_file_limit() -> None:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert Limits(LimitsConfig(), 1024).max_sockets == soft // 2
    assert Limits(LimitsConfig(websockets=0), 1024).max_sockets == 0  # off


async def test_an_upgrade_header_that_is_not_utf8_is_a_400(make_client: Callable[..., Any],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A socket upgrade whose Upgrade or Sec-WebSocket-Version header held a byte that is not UTF-8 failed inside
    aiohttp as it wrote its refusal, which quotes the header: a 500 and a traceback in the log for each such request."""
    client = await make_client()
    for upgrade, ws_version in ((b"\x85websocket", b"13"), (b"websocket", b"\x8513")):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: " + upgrade + b"\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: " + ws_version + b"\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.split()[1] == b"400", upgrade
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_socket_asking_for_a_subprotocol_writes_nothing_in_the_log(make_client: Callable[..., Any],
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp warned of each socket asking for subprotocols, quoting up to 8 KB of them: a client could write
    that to the log hundreds of times a minute. The socket opens without one, as before."""
    client = await make_client()
    async with client.ws_connect("/api/ws", protocols=("x" * 4000,)) as ws:
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        assert (await ws.receive_json())["type"] == "reply"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "x" * 100 in r.getMessage()]


async def test_handoffs_from_one_address_are_capped_and_the_customer_told_to_try_later(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """Each new conversation id with "/handoff" put another customer in the agents' inbox and sent another
    notice: one address could fill the inbox. Past the cap its customers are told to try later, over HTTP and
    over the socket alike, and other addresses are still handed off."""
    client = await make_client(server={"limits": {"handoffs_per_ip": 2, "trust_forwarded_for": True}})
    for _ in range(2):
        assert (await (await chat(client, cid(), "/handoff")).json())["handed_off"] is True
    refused = await chat(client, cid(), "/handoff")
    answer = await refused.json()
    assert refused.status == 200 and answer["handed_off"] is False and answer["source"] == "fallback"
    assert answer["reply"] == ("Our agents have had too many requests from your network just now, so I cannot pass "
                               "this conversation to them. Please try again in 10 minutes.") and not answer["buttons"]
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": cid(), "text": "/handoff"})
        assert (await ws.receive_json())["handed_off"] is False
    elsewhere = await chat(client, cid(), "/handoff", **{"X-Forwarded-For": "203.0.113.9"})
    assert (await elsewhere.json())["handed_off"] is True
    assert len(store_rows(client, "SELECT * FROM handoffs")) == 3
    assert caplog.text.count("conversations handed to a person in 10 minutes") == 1  # once a wait, not a handoff


async def test_new_conversations_from_one_address_are_capped_with_a_429(make_client: Callable[..., Any],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Each conversation id a client makes up is new rows in the store: one address could open them without end
    and fill the disk, each message within the per-request limit. Past the cap its new conversations get 429, over
    HTTP and over the socket alike, while its open ones go on and other addresses still open theirs."""
    client = await make_client(server={"limits": {"conversations_per_ip": 2, "trust_forwarded_for": True}})
    first = cid()
    for conversation in (first, cid()):
        assert (await chat(client, conversation, "hello")).status == 200
    refused = await chat(client, cid(), "hello")
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 600
    assert (await refused.json())["error"].startswith(
        "too many new conversations from this address: more than 2 in 10 minutes; retry in ")
    assert (await chat(client, first, "still there?")).status == 200
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        frame = await ws.receive_json()
        assert frame["type"] == "error" and frame["error"].startswith("too many new conversations") and frame["retry_after"] >= 1
    assert (await chat(client, cid(), "hello", **{"X-Forwarded-For": "203.0.113.9"})).status == 200
    assert len(store_rows(client, "SELECT * FROM conversations")) == 3
    assert caplog.text.count("has opened more than 2 conversations in 10 minutes") == 1  # once a wait


def test_a_limit_met_names_the_clients_address_in_the_log_by_a_tag(caplog: pytest.LogCaptureFixture) -> None:
    """A client's IP address over a limit was logged at WARNING as it is: a customer's personal data, kept by the log's
    aggregator for a year and read by everyone on call. The log names it by a tag, one per address."""
    from bot.limits import TooManyConnections

    limits = Limits(LimitsConfig(conversations_per_ip=1, handoffs_per_ip=1, connections_per_ip=1), 65536)
    limits.new_conversation("198.51.100.23")
    with pytest.raises(aiohttp.web.HTTPTooManyRequests):
        limits.new_conversation("198.51.100.23")
    assert not limits.handoff_wait("198.51.100.23") and limits.handoff_wait("198.51.100.23")
    for address in ("198.51.100.23", "2001:db8:7:1::42"):
        limits.connection_opened(address)
        with pytest.raises(TooManyConnections):
            limits.connection_opened(address)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 4 and not [line for line in said if "198.51" in line or "2001:db8" in line]
    assert sum(address_tag("198.51.100.23") in line for line in said) == 3
    assert address_tag("2001:db8:7:1::/64") in said[-1]  # its /64, as it is counted


def test_the_counters_forget_the_conversations_whose_window_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Conversation ids are the client's to choose: they must not pile up in memory for ever."""
    monkeypatch.setattr("bot.limits.PRUNE_EVERY", 51)
    limits = Limits(LimitsConfig(per_conversation_per_minute=5), 65536)
    for n in range(49):
        limits.message(f"c{n}")
    assert len(limits._window.storage.events) == 49
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 3600)  # an hour later
    limits.message("late-1")  # the 50th hit: the library sweeps the expired hits from every window
    for _ in range(100):
        if not any(limits._window.storage.events.get(key) for key in limits._window.storage.events if "late" not in key):
            break
        time.sleep(0.01)
    limits.message("late-2")  # the 51st: the emptied windows go
    kept = list(limits._window.storage.events)
    assert len(kept) == 2 and all("late" in key for key in kept)


@pytest.mark.parametrize("step", [-3600, 3600], ids=["set back an hour", "set on an hour"])
def test_a_wall_clock_step_neither_holds_a_client_past_its_minute_nor_frees_it_early(
        monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The limits timed their hits by the wall clock: set back an hour (NTP mending a clock that ran fast, a virtual
    machine resumed), every address and conversation at its limit just before was refused for that hour, told to retry
    in 3,660 s; set on, it was let through at once. They time them by the steady clock."""
    limits = Limits(LimitsConfig(per_ip_per_minute=2, per_conversation_per_minute=1), 65536)
    for _ in range(2):
        limits.request("203.0.113.5")
    limits.message("web:c1")
    wall, steady = time.time, time.monotonic
    monkeypatch.setattr(time, "time", lambda: wall() + step)
    with pytest.raises(web.HTTPTooManyRequests) as refused:
        limits.request("203.0.113.5")
    assert 1 <= retry_after(refused.value) <= 60
    assert 1 <= limits.message_wait("web:c1") <= 60
    monkeypatch.setattr(time, "monotonic", lambda: steady() + 61)  # the minute has passed
    limits.request("203.0.113.5")
    assert limits.message_wait("web:c1") == 0


async def test_a_quiet_server_forgets_the_addresses_of_its_clients_once_their_windows_have_passed(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's IP address, personal data, stayed in the limits' memory until thousands more requests had come:
    for days, on a quiet bot. They forget it every minute once none of its requests counts any longer."""
    monkeypatch.setattr(serving, "FORGET_KEYS_EVERY_S", 0.05)
    client = await make_client()
    assert (await chat(client, cid(), "/handoff")).status == 200
    limits = client.app[LIMITS]

    def addresses() -> list[str]:
        return [key for key in [*limits._window.storage.events, *limits._told] if "127.0.0.1" in key]

    await asyncio.sleep(0.2)
    assert addresses()  # its requests still count
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 3600)  # an hour later, with no request since
    for _ in range(50):
        if not addresses():
            break
        await asyncio.sleep(0.05)
    assert addresses() == [] and limits._window.storage.events == {}


def test_platform_messages_over_the_limit_are_told_to_wait_once_per_wait() -> None:
    limits = Limits(LimitsConfig(per_conversation_per_minute=1), 65536)
    assert limits.message_wait("slack:T:C:1") == 0
    wait = limits.message_wait("slack:T:C:1")
    assert 1 <= wait <= 60 and limits.message_wait("slack:T:C:2") == 0  # per conversation
    assert limits.first_notice("slack:T:C:1", 1) and not limits.first_notice("slack:T:C:1", 1)
    time.sleep(1.05)
    assert limits.first_notice("slack:T:C:1", 1)  # still flooding once the wait is over: told again
    assert slow_down("multi", 7, "还在吗") == "您发送消息太快了，请等待 7 秒后再发送。"  # a multi bot follows the script
    assert slow_down("multi", 7, "hello?").startswith("You are sending messages too fast. Please wait 7 seconds")
    # In the script the customer writes: the message's own, else the one kept (after a number alone)
    assert slow_down("zh", 7, "還在嗎") == "您發送消息太快了，請等待 7 秒後再發送。"
    assert slow_down("multi", 7, "1234", {"language": "zh", "chinese_script": "traditional"}).startswith("您發送消息")
    assert slow_down("zh", 7, "还在吗", {"chinese_script": "traditional"}).startswith("您发送消息")
    assert slow_down("multi", 7, "ＯＫ", {"language": "zh"}).startswith("您发送消息")  # full width, from a Chinese input method


async def test_a_store_that_cannot_write_is_a_503_that_names_why(make_client: Callable[..., Any],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A full disk or a file made read-only answered every message with 500 "internal error", and a
    traceback in the log for each; then a line for each, which filled a log on the full disk itself, and
    nothing said when it was over."""
    monkeypatch.setattr(serving, "STORE_WATCH_S", 0.1)
    client = await make_client(server={"limits": NO_LIMITS}, channels={"web": {"origins": ["http://shop.example"]}})
    bot = client.app[BOT]
    await bot._store(lambda: bot.store.db.execute("PRAGMA query_only = ON"))  # as a file made read-only
    for _ in range(2):
        assert (await chat(client, cid(), "hello")).status == 503
    refused = await chat(client, cid(), "I want my money back for order 123", Origin="http://shop.example")
    assert refused.status == 503 and refused.headers["Retry-After"] == "30"
    assert refused.headers["Access-Control-Allow-Origin"] == "http://shop.example"  # a widget on the shop's site reads it
    assert (await refused.json())["error"] == ("the conversation store cannot write now (attempt to write a readonly "
                                               "database): try again later")
    async with client.ws_connect("/api/ws") as ws:  # and on the socket, which stays open
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        said = await ws.receive_json()
        assert said["type"] == "error" and "readonly database" in said["error"] and "retry_after" not in said
        assert said["code"] == "store_unwritable"  # as over HTTP, for the widget to say in its customer's language
        await bot._store(lambda: bot.store.db.execute("PRAGMA query_only = OFF"))
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        assert (await ws.receive_json())["type"] == "reply"
    db = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as fault:
        db.execute("SELECT undelivered FROM turns")  # a store's fault, which no wait mends: a 500, not "try again"
    assert not cannot_write(fault.value) and not cannot_write(ValueError("readonly database"))
    conversation = cid()
    assert (await chat(client, conversation, "I want my money back for order 123")).status == 200
    assert len(await bot._store(bot.store.history, conversation)) == 2
    await asyncio.sleep(0.5)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said[0] == ("ERROR", "POST /api/chat: the conversation store cannot write: attempt to write a readonly "
                                "database (every request that writes is refused until it can; said once, and again "
                                f"when it does): make {bot.store.path}, its -wal and -shm files and its folder this "
                                "user's to write again")
    assert said[1][0] == "WARNING" and said[1][1].startswith("the conversation store writes again: 4 requests refused "
                                                             "since ")
    assert len(said) == 2


async def test_a_server_stopped_while_its_store_refused_to_write_says_how_many_requests_it_refused(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """The count of the requests refused for a store that could not write was said only once it wrote again: a server
    stopped before (a restart to mend the disk, a deploy) left no word of the customers it had turned away."""
    client = await make_client(server={"limits": NO_LIMITS})
    bot = client.app[BOT]
    await bot._store(lambda: bot.store.db.execute("PRAGMA query_only = ON"))  # as a file made read-only
    for _ in range(3):
        assert (await chat(client, cid(), "hello")).status == 503
    await client.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith("stopping with the conversation store last refusing to write (attempt "
                                                 "to write a readonly database): 3 requests refused since ")


@pytest.mark.parametrize(("error", "free", "advice"), [
    ("disk I/O error", 10**9, "check the disk of {path} (`dmesg`)"),
    ("disk I/O error", 0, "free some space on the disk of {path}"),
    ("database or disk is full", 10**9, "free some space on the disk of {path}"),
])
def test_the_log_says_what_to_do_about_a_store_that_cannot_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: str, free: int,
        advice: str) -> None:
    """A disk the kernel turned read-only after an error, a full one and a failing one are each SQLite's "disk I/O
    error", and the line of a server refusing every customer said no more, nor what to do."""
    monkeypatch.setattr("dialogues.disk.shutil.disk_usage", lambda path: SimpleNamespace(free=free))
    path = tmp_path / "dialogues.db"
    asyncio.run(StoreRefusals(path).refused_one("POST /api/chat", sqlite3.OperationalError(error)))
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.endswith(f"said once, and again when it does): {advice.format(path=path)}"), line


def test_what_to_do_about_a_store_that_cannot_write_is_found_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding it writes to the store's disk, which, failing, may hang for seconds: on the event loop, every customer's
    request waited with it."""
    threads = []
    monkeypatch.setattr("bot.channels.base.unwritable_advice",
                        lambda path, exc: threads.append(threading.current_thread()) or "")
    asyncio.run(StoreRefusals(tmp_path / "dialogues.db").refused_one("POST /api/chat",
                                                                      sqlite3.OperationalError("disk I/O error")))
    assert threads and threads[0] is not threading.main_thread()


@pytest.mark.parametrize("error", ["disk I/O error", "attempt to write a readonly database"])
def test_a_disk_the_kernel_made_read_only_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture, error: str) -> None:
    """ext4 turns a disk read-only after an error (emergency_ro) while `mount` lists it as rw and the files keep their
    permissions: `bot serve` then said the store "must be a file this user can read and write", and the log of a
    serving one nothing, where chmod mends nothing."""
    def read_only_disk(*args: Any, **kwargs: Any) -> Any:  # only a write tells
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    path = tmp_path / "dialogues.db"
    Store(path).close()
    monkeypatch.setattr("dialogues.disk.tempfile.TemporaryFile", read_only_disk)
    advice = ("`dmesg` says whether the kernel made it so after an error (`mount` then shows ro or emergency_ro), to "
              "repair with the server stopped")
    asyncio.run(StoreRefusals(path).refused_one("POST /api/chat", sqlite3.OperationalError(error)))
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.endswith(f"when it does): the disk of {path} is read-only: {advice}"), line

    def refused(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError(error)

    monkeypatch.setattr("dialogues.store.sqlite3.connect", refused)
    with pytest.raises(StoreError, match=re.escape(f"cannot open it ({error}): its disk is read-only; {advice}")):
        Store(path)


def _invalid_model() -> ValidationError:
    try:
        ChatRequest.model_validate({})
    except ValidationError as exc:
        return exc
    raise AssertionError("an empty request was taken")


@pytest.mark.parametrize("fault", [UnicodeEncodeError("utf-8", "1\ud800", 1, 2, "surrogates not allowed"), _invalid_model()])
async def test_a_turn_that_fails_within_is_the_bots_error_not_the_requests(make_client: Callable[..., Any],
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           fault: Exception) -> None:
    """A ValueError raised within the turn (an encoder's, a store's, a model's validation) was answered as
    the customer's 400, with the codec's words, and nothing logged."""
    client = await make_client(server={"limits": NO_LIMITS})

    async def failing(turn: Any, *holding: Any) -> Any:
        raise fault

    monkeypatch.setattr(client.app[BOT], "handle", failing)
    response = await chat(client, cid(), "hello")
    assert response.status == 500 and (await response.json())["error"] == "internal error"
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        assert await ws.receive_json() == {"type": "error", "error": "internal error", "code": "internal",
                                           "request": "message"}
        await ws.send_json({"conversation_id": cid(), "text": ""})  # the request's own fault is still said as such
        said = await ws.receive_json()
        assert said["type"] == "error" and said["error"].startswith("text:") and said["code"] == "text_invalid"


async def test_an_unhandled_error_is_logged_with_the_route_not_the_conversation_in_its_path(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The error line named the request's path, and an older client's path holds the conversation's id, a web
    visitor's key to it, for everyone who reads the log and for as long as its aggregator keeps it."""
    client = await make_client(server={"limits": NO_LIMITS})
    conversation = cid()
    assert (await chat(client, conversation, "hello")).status == 200

    def failing(*args: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(Store, "history", failing)
    response = await client.get(f"/api/conversations/{conversation}/history")
    assert response.status == 500 and (await response.json())["error"] == "internal error"
    [said] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert said.getMessage() == "unhandled error on GET /api/conversations/{conversation_id}/history"
    assert conversation not in caplog.text


async def test_an_unhandled_errors_traceback_keeps_its_type_and_frames_not_the_customers_details(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A traceback in `bot serve`'s log printed what the exception said, and an exception often quotes the value it
    failed on: the customer's message, their e-mail address, for everyone who reads the log and beyond `bot purge`."""
    client = await make_client(server={"limits": NO_LIMITS})
    message = "where is my order? mail me at jane.doe@example.com or call +44 7911 123456"

    async def failing(turn: Any, *holding: Any) -> Any:
        try:
            return {}[re.search(r"\S+@\S+", turn.text)[0]]  # the customer's order, looked up by their address
        except KeyError:
            raise ValueError(f"cannot read {turn.text!r}")  # noqa: B904  (raised while handling it: both printed)

    monkeypatch.setattr(client.app[BOT], "handle", failing)
    assert (await chat(client, cid(), message)).status == 500
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    said = RedactedTracebacks(LOG_FORMAT).format(record)
    assert "unhandled error on POST /api/chat" in said
    assert "Traceback (most recent call last):" in said and "in failing" in said and "test_hardening.py" in said
    assert "KeyError: '[EMAIL]'" in said and "During handling of the above exception" in said
    assert "ValueError: cannot read 'where is my order? mail me at [EMAIL] or call [PHONE]'" in said
    assert "jane.doe@example.com" not in said and "7911 123456" not in said


async def test_another_librarys_line_is_redacted_as_a_traceback_is(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio's "Task exception was never retrieved" line quotes the task's exception in its own words, before the
    traceback (``exception=ValueError('… jane.doe@example.com')``): the traceback was redacted, and its line not."""
    async def failing(address: str) -> None:
        raise ValueError(f"no order for {address}")

    task = asyncio.ensure_future(failing("jane.doe@example.com"))
    await asyncio.wait([task])
    del task  # never retrieved: asyncio says so as the task goes
    gc.collect()
    [record] = [r for r in caplog.records if r.name == "asyncio"]
    said = RedactedTracebacks(LOG_FORMAT).format(record)
    assert "Task exception was never retrieved" in said and "exception=ValueError('no order for [EMAIL]')" in said
    assert "ValueError: no order for [EMAIL]" in said and "jane" not in said


def test_a_platform_conversations_id_in_a_traceback_is_put_as_its_tag(caplog: pytest.LogCaptureFixture) -> None:
    """A KeyError of a WeCom conversation's id printed it whole in the log's traceback: it names the employee (here by
    an e-mail address, which the redaction alone took leaving the rest of the id), and the log names a conversation
    by its tag, which the agents' console finds it by."""
    conversation = "wecom:ww1f2e:jane.doe@example.com"
    try:
        {}[conversation]
    except KeyError:
        logging.getLogger("deskbot").exception("the turn of %s failed", log_tag(conversation))
    said = RedactedTracebacks(LOG_FORMAT).format(caplog.records[-1])
    assert f"KeyError: '{log_tag(conversation)}'" in said
    assert "jane" not in said and "ww1f2e" not in said


# `bot serve`, each turn of which fails on its conversation's id, as a look-up of an id the store lacks does
SERVE_FAILING_ON_IDS = """
import sys
from bot.cli import cli
from bot.engine import Bot

async def failing(self, turn, holding=None):
    raise KeyError(turn.conversation_id)

Bot.handle = failing
cli(["serve", sys.argv[1], "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
"""


async def test_a_web_conversations_id_in_a_servers_traceback_is_put_as_its_tag(
        tiny_demo_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyError of a web conversation's id printed it whole in `bot serve`'s log, where a Slack or WeCom one's is put
    as its tag: the id is the visitor's key to their conversation, and whoever reads the log could read the chat.
    Over HTTP, over the socket, and in a URL (as an action's failed call quotes it) alike."""
    import dialogues.store as stored
    from dialogues.store import ledger_key

    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    conversations = [f"visitor.{uuid.uuid4().hex}", f"visitor-{uuid.uuid4().hex}"]
    server = subprocess.Popen([sys.executable, "-c", SERVE_FAILING_ON_IDS, str(root)], stderr=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        said = ""
        while "deskbot serving" not in said and server.poll() is None:
            said = server.stderr.readline()  # type: ignore[union-attr]
        url = re.search(r" on (http://\S+)$", said.strip())
        assert url is not None, said
        async with aiohttp.ClientSession(url[1]) as session:
            async with session.post("/api/chat", json={"conversation_id": conversations[0], "text": "hi"}) as response:
                assert response.status == 500 and (await response.json())["code"] == "internal"
            async with session.ws_connect("/api/ws") as ws:
                await ws.send_json({"conversation_id": conversations[1], "text": "hi"})
                assert (await ws.receive_json())["code"] == "internal"
    finally:
        server.terminate()
        server.wait(timeout=60)
    logged = server.stderr.read()  # type: ignore[union-attr]
    monkeypatch.setattr(stored, "_log_secret", ledger_key(root / "dialogues.db").read_bytes())  # the server's key
    assert "ERROR deskbot: unhandled error on POST /api/chat\nTraceback" in logged, logged
    assert "ERROR bot.channels.web: web chat turn failed on the socket\nTraceback" in logged, logged
    for conversation in conversations:
        assert f"KeyError: '{log_tag(conversation)}'" in logged, logged
        assert conversation not in logged and conversation.removeprefix("visitor") not in logged


def test_a_deskbot_lines_values_are_redacted_and_name_a_conversation_by_its_tag(caplog: pytest.LogCaptureFixture) -> None:
    """deskbot's own lines quoted what they were given as it was (``%r`` of an agent's message, of an exception): the
    e-mail address in it, a WeCom conversation's id, which names the employee. Its words, numbers and the tags it
    wrote read as written."""
    import numpy as np

    conversation = "wecom:ww1f2e:chen"
    logging.getLogger("deskbot").error("could not tell %s %r: %r (after %d tries)", log_tag(conversation),
                                       "write to jane.doe@example.com", ConnectionError(f"{conversation} gone"),
                                       np.int64(3))  # a number as a model's figures give it, said as a number
    said = RedactedTracebacks(LOG_FORMAT).format(caplog.records[-1])
    assert said.endswith(f"ERROR deskbot: could not tell {log_tag(conversation)} 'write to [EMAIL]': "
                         f"ConnectionError('{log_tag(conversation)} gone') (after 3 tries)"), said
    assert caplog.records[-1].getMessage().startswith(f"could not tell {log_tag(conversation)} 'write to jane")


def test_a_web_conversation_just_purged_is_named_by_its_tag_in_the_log(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A job under way as its conversation was purged (an agent's reply being sent) quoted its id in what it raised:
    the store no longer kept it to be told by, and the log, beyond the purge's reach, kept the erased visitor's key."""
    from dialogues.store import Exchange, tag_logs_by

    store, conversation = Store(tmp_path / "dialogues.db"), f"visitor.{uuid.uuid4().hex}"
    tag_logs_by(store.path)
    store.log_exchange(Exchange(conversation, "web", None, "hi", None, "Hello!", "greet", 0.9, [("greet", 0.9)],
                                "template", "v0001"))
    store.purge(conversation)
    logging.getLogger("deskbot").error("could not tell %s: %r", log_tag(conversation), KeyError(conversation))
    said = RedactedTracebacks(LOG_FORMAT).format(caplog.records[-1])
    store.close()
    assert said.endswith(f"could not tell {log_tag(conversation)}: KeyError('{log_tag(conversation)}')"), said


def said_of(store: Store, *values: object) -> str:
    """What the log says of a deskbot line quoting ``values``, tagged by the conversations of ``store``."""
    from dialogues.store import tag_logs_by

    tag_logs_by(store.path)
    record = logging.LogRecord("deskbot", logging.ERROR, __file__, 1, "failed: " + " ".join(["%r"] * len(values)),
                               values, None)
    return RedactedTracebacks("%(message)s").format(record)


def began(store: Store, *conversations: str) -> None:
    from dialogues.store import Exchange

    for conversation in conversations:
        store.log_exchange(Exchange(conversation, "web", None, "hi", None, "Hello!", "greet", 0.9, [("greet", 0.9)],
                                    "template", "v0001"))


def test_a_conversation_purged_before_a_purge_of_many_is_still_named_by_its_tag(tmp_path: Path) -> None:
    """Only the purge ledger's last 64 KiB were read for the ids a line quotes: a purge of some 800 conversations or
    more (a retention period's, by date) pushed out the one whose agent's reply was being sent as it went, and the log
    kept the erased visitor's key."""
    from dialogues.store import purged_ledger

    store, conversation = Store(tmp_path / "dialogues.db"), f"visitor.{uuid.uuid4().hex}"
    others = [f"visitor.{n:032d}" for n in range(1000)]
    began(store, conversation, *others)
    store.purge(conversation)
    store.purge(*others)
    assert purged_ledger(store.path).stat().st_size > 1 << 16
    assert said_of(store, KeyError(conversation)) == f"failed: KeyError('{log_tag(conversation)}')"
    store.close()


def test_a_short_web_conversation_id_is_named_by_its_tag_where_a_line_quotes_it(tmp_path: Path) -> None:
    """A web conversation's id under 8 characters, which a shop's own client may make, was put as its tag only where
    the request that named it failed: a background job's KeyError of it printed it whole, kept or just purged. As a
    word not quoted ("size u42") it is as likely anything else, and stays."""
    store = Store(tmp_path / "dialogues.db")
    began(store, "u42", "ab12")
    store.purge("ab12")
    assert said_of(store, KeyError("u42"), KeyError("ab12"), "size u42", KeyError("x9")) == (
        f"failed: KeyError('{log_tag('u42')}') KeyError('{log_tag('ab12')}') 'size u42' KeyError('x9')")
    store.close()


def test_log_lines_look_their_words_up_over_one_connection_and_a_change_counts_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each log line quoting a word of 8 characters or more opened the store anew to look it up, and read the end of
    its purge ledger: a burst of lines opened it for each. One connection is kept, and its answers while the store is
    unchanged, yet a conversation begun or purged since is named by its tag at once."""
    store, conversation, later = Store(tmp_path / "dialogues.db"), f"visitor.{uuid.uuid4().hex}", "visitor-later1"
    began(store, conversation)
    opened: list[str] = []
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda database, *args, **kwargs: opened.append(str(database))
                        or connect(database, *args, **kwargs))
    for _ in range(3):
        assert said_of(store, KeyError(conversation), "ordinary-words") == (
            f"failed: KeyError('{log_tag(conversation)}') 'ordinary-words'")
    assert said_of(store, later) == "failed: 'visitor-later1'"
    began(store, later)
    assert said_of(store, later) == f"failed: '{log_tag(later)}'"
    store.purge(conversation, later)
    assert said_of(store, KeyError(conversation), later) == f"failed: KeyError('{log_tag(conversation)}') '{log_tag(later)}'"
    assert len([database for database in opened if "mode=ro" in database]) == 1, opened
    store.close()


def test_a_store_closed_and_written_to_again_is_asked_anew(tmp_path: Path) -> None:
    """The answers the log keeps are its connection's: one opened anew, after the store was closed and written to again,
    counts its changes from its own start, and must not take the answers of the one before for its own."""
    store = Store(tmp_path / "dialogues.db")
    began(store, "visitor-first1")
    assert said_of(store, "visitor-again1") == "failed: 'visitor-again1'"
    store.close()
    store = Store(tmp_path / "dialogues.db")
    began(store, "visitor-again1")
    assert said_of(store, "visitor-again1") == f"failed: '{log_tag('visitor-again1')}'"
    store.close()


def test_a_forked_process_looks_words_up_over_a_connection_of_its_own(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection the log keeps to the store is its process's: a process forked from it must not use its parent's
    (SQLite's rule), and opens its own."""
    store, conversation = Store(tmp_path / "dialogues.db"), "visitor-forked1"
    began(store, conversation)
    opened: list[str] = []
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda database, *args, **kwargs: opened.append(str(database))
                        or connect(database, *args, **kwargs))
    assert said_of(store, conversation) == f"failed: '{log_tag(conversation)}'"
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child's status says it)
        ok = said_of(store, conversation) == f"failed: '{log_tag(conversation)}'"
        os._exit(0 if ok and len([database for database in opened if "mode=ro" in database]) == 2 else 1)
    assert os.waitpid(child, 0)[1] == 0
    assert len([database for database in opened if "mode=ro" in database]) == 1
    store.close()


def test_a_line_of_tags_and_numbers_asks_the_store_for_no_conversation(caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line said looks the words it quotes up in the store (a web conversation's id): a tag's digits were looked
    up too, on every line of a customer over the rate limit."""
    asked: list[set[str]] = []
    monkeypatch.setattr("bot.log_format.kept_conversations", lambda words: asked.append(set(words)) or set())
    logging.getLogger("deskbot").warning("%s over the limit from %s, for %ds", log_tag("wecom:ww1:chen"),
                                         address_tag("203.0.113.9"), 30)
    said = RedactedTracebacks(LOG_FORMAT).format(caplog.records[-1])
    assert said.endswith(f"{log_tag('wecom:ww1:chen')} over the limit from {address_tag('203.0.113.9')}, for 30s")
    assert all(not words for words in asked), asked


# `bot serve`, whose round telling waiting customers that the agents are busy fails, once the file named in its second
# argument is there, on what it says: a KeyError of it, or the store unable to write, quoting it ("full: …").
SERVE_FAILING_ROUNDS = """
import pathlib, sqlite3, sys
from bot.cli import cli
from bot.engine import Bot

quoted = pathlib.Path(sys.argv[2])

async def failing(self):
    if not quoted.exists():
        return 0
    said = quoted.read_text()
    if said.startswith("full"):
        exc = sqlite3.OperationalError(said)
        exc.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise exc
    raise KeyError(said)

Bot.tell_overdue = failing
cli(["serve", sys.argv[1], "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
"""


def logged_until(server: subprocess.Popen[bytes], pattern: str, timeout_s: float = 60.0) -> str:
    """What ``server`` writes to its stderr until a line of it matches ``pattern`` (else it fails)."""
    said, deadline = "", time.monotonic() + timeout_s
    while not re.search(pattern, said, re.MULTILINE):
        assert time.monotonic() < deadline and server.poll() is None, said
        if select.select([server.stderr], [], [], 0.2)[0]:
            said += os.read(server.stderr.fileno(), 65536).decode()  # type: ignore[union-attr]
    return said


def say(path: Path, text: str) -> None:
    """``path`` made to say ``text`` at once (a rename), never read half written."""
    path.with_suffix(".new").write_text(text)
    path.with_suffix(".new").replace(path)


async def test_a_background_jobs_log_names_a_web_conversation_by_its_tag(
        tiny_demo_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A web conversation's id was put as its tag only where the request or socket that failed named it: a round of
    `bot serve` (an hourly one, a retry, a send) that quoted one in an exception printed it whole, in its traceback and
    in deskbot's own line of a store that cannot write, as it did the customer's e-mail address in the latter."""
    import dialogues.store as stored
    from dialogues.store import ledger_key

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", handoff={"busy_after_seconds": 1})
    conversation, quoted = f"visitor.{uuid.uuid4().hex}", tmp_path / "quoted"
    server = subprocess.Popen([sys.executable, "-c", SERVE_FAILING_ROUNDS, str(root), str(quoted)],
                              stderr=subprocess.PIPE, cwd=REPO)
    try:
        logged = logged_until(server, r"deskbot serving .* on http://\S+$")
        url = re.search(r"deskbot serving .* on (http://\S+)$", logged, re.MULTILINE)
        async with aiohttp.ClientSession(url[1]) as session:  # type: ignore[index]
            async with session.post("/api/chat", json={"conversation_id": conversation, "text": "hi"}) as response:
                assert response.status == 200
        say(quoted, f"no agent for {conversation}, mail jane.doe@example.com")
        logged += logged_until(server, r"^KeyError: .*$")
        say(quoted, f"full: cannot keep {conversation}'s wait for jane.doe@example.com")
        logged += logged_until(server, r"cannot write: .*$")
    finally:
        server.terminate()
        server.wait(timeout=60)
    monkeypatch.setattr(stored, "_log_secret", ledger_key(root / "dialogues.db").read_bytes())  # the server's key
    assert "ERROR deskbot: telling waiting customers that the agents are busy failed\nTraceback" in logged, logged
    assert f"KeyError: 'no agent for {log_tag(conversation)}, mail [EMAIL]'" in logged, logged
    assert (f"ERROR deskbot: telling waiting customers that the agents are busy: the conversation store cannot write: "
            f"full: cannot keep {log_tag(conversation)}'s wait for [EMAIL] (tried again") in logged, logged
    assert conversation.removeprefix("visitor") not in logged and "jane" not in logged


def test_a_commands_logged_error_and_its_crash_say_their_tracebacks_redacted() -> None:
    """Commands other than `bot serve` set up no log: a `bot retrain` that logged a failure, or crashed, wrote its
    traceback through logging's last resort and Python's own hook, the exception's text (the label or message it
    failed on) as it was, into the mail cron sends of its output."""
    script = """
import logging
import click
from bot.cli.common import cli

@cli.command("crash")
def crash():
    try:
        raise ValueError("cannot label 'mail jane.doe@example.com'")
    except ValueError:
        logging.getLogger("deskbot.retrain").exception("labelling failed")
    raise KeyError("call 13812345678")

cli(["crash"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 1
    assert "labelling failed\nTraceback" in done.stderr and "ValueError: cannot label 'mail [EMAIL]'" in done.stderr
    assert "line 12, in crash\nKeyError: 'call [PHONE]'" in done.stderr  # the crash, from its frame
    assert "jane.doe" not in done.stderr and "13812345678" not in done.stderr


async def test_a_damaged_store_is_said_once_with_what_to_do_and_the_server_is_not_ready(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A store with damaged pages (a failing disk) logged a traceback for each message that met one, which said
    nothing of the damage nor what to do, customers got "internal error", and /healthz answered ok."""
    client = await make_client(server={"limits": NO_LIMITS})
    fault = sqlite3.DatabaseError("database disk image is malformed")
    fault.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # as SQLite raises it

    async def failing(turn: Any, *holding: Any) -> Any:
        raise fault

    monkeypatch.setattr(client.app[BOT], "handle", failing)
    assert (await client.get("/healthz")).status == 200
    for _ in range(2):
        response = await chat(client, cid(), "hello")
        assert response.status == 503 and (await response.json())["error"] == STORE_DAMAGED
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": cid(), "text": "hello"})
        assert await ws.receive_json() == {"type": "error", "error": STORE_DAMAGED, "code": "store_damaged",
                                           "request": "message"}
    [said] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert said.getMessage().startswith(f"the conversation store {client.app[BOT].store.path} is damaged (database "
                                        "disk image is malformed): every request that meets a damaged page fails. "
                                        "Stop the bot") and said.exc_info is None
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["error"] == ("the conversation store is damaged (database disk image is malformed): "
                                              "the log says what to do")


async def test_body_and_message_size_limits(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"max_body_bytes": 2048, "max_message_chars": 50, "limits": NO_LIMITS})
    big = json.dumps({"conversation_id": cid(), "text": "x" * 3000}).encode()
    response = await client.post("/api/chat", data=big, headers={"Content-Type": "application/json"})
    assert response.status == 413 and (await response.json())["error"] == "body larger than 2048 bytes"

    async def chunks() -> Any:  # no Content-Length: the limit applies as the body arrives
        for _ in range(3):
            yield big[:1000]

    response = await client.post("/api/chat", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413 and "error" in await response.json()
    response = await chat(client, cid(), "y" * 51)
    assert response.status == 400 and (await response.json())["error"] == "text: longer than 50 characters"
    assert (await chat(client, cid(), "y" * 50)).status == 200


async def raw_request(port: int, head: str, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Headers that announce 1,000 bytes of body, and then only ``body``: a client that stopped sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{head}\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode() + body)
    await writer.drain()
    return reader, writer


async def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.channels.base.BODY_SECONDS", 0.3)
    client = await make_client(server={"limits": NO_LIMITS}, channels={"slack": {"signing_secret": "s", "bot_token": "xoxb-t"}})
    for head in ("POST /api/chat HTTP/1.1", "POST /slack/events HTTP/1.1"):
        reader, writer = await raw_request(client.port, head, b'{"conversation_id": ')
        status = await asyncio.wait_for(reader.readline(), 5)
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        assert status.startswith(b"HTTP/1.1 408") and b"Connection: close" in headers, (head, status, headers)
        assert b"did not arrive within 0.3s" in body


async def open_deaf_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose client takes little at a time (a small receive buffer), and reads nothing unless asked."""
    deaf = socket.socket()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.connect(("127.0.0.1", port))
    return await asyncio.open_connection(sock=deaf)


async def connections_within(client: Any, seconds: float, count: int = 0) -> int:
    """How many connections the test server holds, polled until ``count`` or ``seconds`` have passed."""
    server = client.server.runner.server
    for _ in range(int(seconds / 0.05)):
        if len(server.connections) == count:
            break
        await asyncio.sleep(0.05)
    return len(server.connections)


async def test_a_client_that_never_reads_its_answers_is_cut(make_client: Callable[..., Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests sent one after another on a connection, their answers never read: the connection, its handler and the
    answers written were held for as long as the client liked, since keepalive_seconds counts only idle connections."""
    monkeypatch.setattr("bot.limits.SEND_SECONDS", 0.5)
    client = await make_client(server={"limits": NO_LIMITS})
    reader, writer = await open_deaf_connection(client.port)
    # 8 MB of answers: they fill what the system holds for the client, and the server's writes wait
    writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n" * 400)
    assert await connections_within(client, 5, count=1) == 1
    assert await connections_within(client, 5) == 0
    writer.close()


async def test_a_broken_header_line_is_logged_without_the_secret_it_holds(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp quotes the header line it could not read: a token pasted with a carriage return at its end
    (``curl -H "Authorization: Bearer $(cat token.txt)"`` of a file saved on Windows) was in the log."""
    client = await make_client()
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    for line in (b"Authorization: Bearer s3cr3t-admin-token\r", b"Cookie: session=s3cr3t-admin-token\x01",
                 b"authorization : Bearer s3cr3t-admin-token", b"Authorization: Bearer s3cr3t-admin-token" + b"x" * 9000,
                 b"Cookie: shop_session=s3cr3t" + b"x" * 9000, b"Bad Header"):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"GET /admin/conversations HTTP/1.1\r\nHost: localhost\r\n" + line + b"\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.0 400")
        writer.close()
    said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(said) == 6 and all(r.levelno == logging.INFO for r in caplog.records if r.name == "aiohttp.server")
    assert "s3cr3t" not in caplog.text and said[0].endswith("[redacted]'")  # the pure-Python parser quotes no name
    assert said[-1].endswith(": b'[redacted]'")  # a line without a header's name may be a token pasted alone


async def test_requests_too_broken_to_count_cannot_flood_the_log(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request aiohttp cannot parse is answered below deskbot's limits, and each was a line in the log: one client
    sending them without end filled the disk the log is on, or used up journald's share for the service."""
    monkeypatch.setattr(serving, "CLIENT_ERRORS", ClientErrorsInOneLine(lines=3, window_s=0.5))
    monkeypatch.setattr(logging.getLogger("aiohttp.server"), "filters", [])  # the app adds that one
    client = await make_client()
    caplog.set_level(logging.INFO, logger="aiohttp.server")

    async def broken() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.0 400")  # each is still answered
        writer.close()

    for _ in range(8):
        await broken()
    assert len([r for r in caplog.records if r.name == "aiohttp.server"]) == 3
    await asyncio.sleep(0.6)
    await broken()
    said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(said) == 4 and said[-1].endswith("(and 5 more such requests before it, not logged)")


def test_a_secret_quoted_without_its_header_name_is_redacted() -> None:
    """A header line over 8 KiB is quoted from its value on, and the pure-Python parser
    (AIOHTTP_NO_EXTENSIONS=1) quotes the value alone: the session cookie and the token were in the log."""
    from bot.aiohttp_log import redacted

    for said in ("400, message: Got more than 8190 bytes when reading: b'shop_session=s3cr3txxxxxxxx...'.",
                 "400, message: Invalid HTTP header: b'session=s3cr3t\\x01'",
                 "400, message: Invalid HTTP header: b'Token s3cr3t\\x01'",
                 '400, message: Invalid HTTP header: b\'Digest response="s3cr3t"\\x01\''):
        assert "s3cr3t" not in redacted(said), said
    assert redacted("400, message: Invalid header value char: b'X-Admin-Token: s3cr3t\\x01' ^") == (
        "400, message: Invalid header value char: b'X-Admin-Token: [redacted]'")


async def test_a_broken_request_line_is_logged_without_its_url_or_the_clients_address(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's line for a request it could not read named the client's IP address, and quoted a URL it could not
    parse whole: an old client's `GET /api/conversations/{id}/history`, a web visitor's key to their conversation, or
    what an agent searched the inbox for (`?q=`), in a log kept for long and read by everyone on call."""
    client = await make_client()
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    for line in (b"GET http://[shop/api/conversations/web-3f9c2a/history?q=jane.doe HTTP/1.1",
                 b"GET /api/conversations/web-3f9c2a/history?q=jane.doe HTTP/1.1 x"):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(line + b"\r\nHost: localhost\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.0 400")
        writer.close()
    said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(said) == 2 and all(line.startswith(f"Error handling request from {address_tag('127.0.0.1')}: 400")
                                  for line in said), said
    assert not [line for line in said if "3f9c2a" in line or "jane" in line or "127.0.0.1" in line], said


def test_the_pure_python_parsers_request_line_is_logged_without_its_url() -> None:
    """aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS=1) quotes a request line it could not read as a str, not as
    bytes, and gives a URL it could not parse as its message alone."""
    from aiohttp.http_exceptions import BadStatusLine, InvalidURLError

    for error in (BadStatusLine("GET /api/conversations/web-3f9c2a/history?q=jane.doe HTTP/1.1 x"),
                  InvalidURLError("/api/conversations/web-3f9c2a/history?q=jane.doe")):
        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                                   ("203.0.113.9",), (type(error), error, None))
        assert ClientErrorsInOneLine().filter(record)
        assert record.getMessage().startswith(f"Error handling request from {address_tag('203.0.113.9')}: 400, message: ")
        assert "3f9c2a" not in record.getMessage() and "jane" not in record.getMessage(), record.getMessage()


async def test_a_client_that_hangs_up_mid_body_is_not_an_error(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, caplog: pytest.LogCaptureFixture, unused_tcp_port: int) -> None:
    """As `bot serve` runs: aiohttp lets the handler run on, and its read of the body fails."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"limits": NO_LIMITS})
    runner = aiohttp.web.AppRunner(create_app(root, device="cpu", nlu=nlu), handler_cancellation=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        _, writer = await raw_request(unused_tcp_port, "POST /api/chat HTTP/1.1", b'{"conversation_id": ')
        writer.close()
        await asyncio.sleep(0.5)
    finally:
        await runner.cleanup()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


# --- the schema and validation -------------------------------------------------------------------


async def test_openapi_documents_every_route_and_the_answers_match_it(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    doc = await (await client.get("/openapi.json", headers={"Authorization": "Bearer t0ken"})).json()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routes = {(m, p) for m, p in mounted(client.app) if m not in ("HEAD", "OPTIONS") and p != "/api/ws"}
    handoff = "/admin/conversations/{conversation_id}/{action}"
    routes = {r for r in routes if r[1] != handoff} | {("POST", handoff.replace("{action}", a)) for a in ("handoff", "handback")}
    assert documented == routes
    labels = doc["components"]["schemas"]["ReviewLabelRequest"]["properties"]["intent"]["anyOf"][0]["enum"]
    assert "oos" in labels and len(labels) == len(set(labels))  # the demo's own oos intent was listed twice
    chat_request = doc["components"]["schemas"]["ChatRequest"]
    assert set(chat_request["required"]) == {"conversation_id", "text"} and chat_request["additionalProperties"] is False
    assert chat_request["properties"]["text"]["maxLength"] == client.app[BOT].config.server.max_message_chars
    assert doc["paths"]["/admin/reload"]["post"]["security"] == [{"bearer": []}]
    # an optional integer's bounds as JSON Schema says them (pydantic wrote "ge", and a client sent -1), 12.0 as 12
    after = doc["components"]["schemas"]["AgentMessageRequest"]["properties"]["after"]["anyOf"][0]
    assert (after["type"], after["minimum"], after["maximum"]) == ("integer", 0, 2**63 - 1)

    conversation = cid()
    reply = await (await chat(client, conversation, "where is my parcel?")).json()
    ChatResponse.model_validate(reply)  # the real answers are what the document promises
    HistoryResponse.model_validate(await (await client.get(f"/api/conversations/{conversation}/history")).json())
    inbox = await client.get("/admin/conversations?agent=Ana", headers={"Authorization": "Bearer t0ken"})
    InboxResponse.model_validate(await inbox.json())  # each field an agent's console reads (waiting_yours) is in it
    # Each refusal a browser page elsewhere, or a body that stalls, can meet is listed (403 and 408 were not).
    foreign = await chat(client, conversation, "hi", Origin="https://elsewhere.example")
    assert foreign.status == 403 and {"403", "408"} <= doc["paths"]["/api/chat"]["post"]["responses"].keys()
    assert {"403", "408"} <= doc["paths"]["/api/feedback"]["post"]["responses"].keys()


async def test_openapi_shows_anyone_the_web_api_alone_and_the_admin_token_the_whole(make_client: Callable[..., Any]) -> None:
    """Anyone was shown deskbot's version (which of its flaws to try), the bot's intents (a review label's values),
    the admin API and which platforms' callbacks are configured: a web chat client needs none of them."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS},
                               channels={"slack": {"signing_secret": "s", "bot_token": "xoxb-t"}})
    full = await (await client.get("/openapi.json", headers={"Authorization": "Bearer t0ken"})).json()
    for headers in ({}, {"Authorization": "Bearer guess"}):
        response = await client.get("/openapi.json", headers=headers)
        assert response.status == 200 and response.headers["Vary"] == "Authorization"
        shown = await response.json()
        assert set(shown["paths"]) == {"/api/chat", "/api/conversations/history",
                                       "/api/conversations/{conversation_id}/history", "/api/feedback",
                                       "/api/widget", "/healthz", "/openapi.json", "/", "/widget.js"}
        assert shown["paths"]["/api/chat"] == full["paths"]["/api/chat"]  # what a client needs is all there
        assert shown["info"]["version"] == "public" and "ReviewLabelRequest" not in shown["components"]["schemas"]
        assert not any(f'"{intent}"' in json.dumps(shown) for intent in client.app[BOT].project.labels)
    assert full["info"]["version"] == version("deskbot") and {"/admin/reload", "/slack/events", "/metrics"} <= set(full["paths"])


async def test_wrong_bodies_and_ids_get_400_naming_the_field(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    admin = {"Authorization": "Bearer t0ken"}
    cases = [
        ("/api/chat", {"conversation_id": "c1", "text": 5}, {}, "text: Input should be a valid string"),
        ("/api/chat", {"text": "hi"}, {}, "conversation_id: Field required"),
        ("/api/chat", {"conversation_id": "c1", "text": "hi", "admin": True}, {}, "admin: unknown field"),
        ("/api/feedback", {"conversation_id": "c1", "turn_id": "seven", "value": 1}, {}, "turn_id: "),
        ("/api/feedback", {"turn_id": 1, "value": 1}, {}, "conversation_id: Field required"),
        ("/admin/conversations/c1/messages", [1], admin, "body: "),
        ("/admin/conversations/c1/messages", {"text": "  "}, admin, "text: "),
        ("/admin/review/1", {"accept": "maybe"}, admin, "accept: "),
        # no type is guessed at: a client sending these has a bug to hear about
        ("/api/feedback", {"conversation_id": "c1", "turn_id": 1, "value": "-1"}, {}, "value: Input should be a valid integer"),
        ("/api/feedback", {"conversation_id": "c1", "turn_id": 1, "value": True}, {}, "value: Input should be a valid integer"),
        ("/api/feedback", {"conversation_id": "c1", "turn_id": "1", "value": 1}, {}, "turn_id: Input should be a valid integer"),
        ("/admin/review/1", {"accept": "on"}, admin, "accept: Input should be a valid boolean"),
        ("/admin/review/1", {"intent": "greet", "accept": True}, admin, "body: send an intent, or accept: true, not both"),
        ("/admin/conversations/c1/messages", {"text": "\u200b\u200b"}, admin, "text: nothing to read (only spaces, control or zero-width characters)"),
    ]
    for path, body, headers, reason in cases:
        response = await client.post(path, json=body, headers=headers)
        assert response.status == 400 and (await response.json())["error"].startswith(reason), (path, body)
    response = await client.get("/api/conversations/not%20an%20id/history")
    assert response.status == 400 and (await response.json())["error"].startswith("conversation_id: ")
    response = await client.post("/admin/conversations/bad%20id/handoff", headers=admin)
    assert response.status == 400 and (await response.json())["error"].startswith("conversation_id: ")


async def test_a_reply_or_note_refused_for_its_text_says_which_with_a_code(make_client: Callable[..., Any]) -> None:
    """A reply or note over 20,000 characters, or of invisible characters alone, was refused with its English message
    alone: the Chinese console had no code to say it by, and said that the bot refused, not why."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    admin = {"Authorization": "Bearer t0ken"}
    for path in ("/admin/conversations/c1/messages", "/admin/conversations/c1/notes"):
        for body, code in [({"text": "x" * 20_001, "agent": "Kim"}, "text_too_long"),
                           ({"text": "\u200b\u200b", "agent": "Kim"}, "text_invalid"),
                           ({"text": "", "agent": "Kim"}, "text_invalid"),
                           ({"text": 5, "agent": "Kim"}, None)]:
            response = await client.post(path, json=body, headers=admin)
            answer = await response.json()
            assert response.status == 400 and answer["error"].startswith("text: "), (path, answer)
            assert answer.get("code") == code, (path, body["text"] if code != "text_too_long" else "long", answer)


async def test_a_body_that_cannot_be_decoded_gets_400(make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A gzip body that is not gzip fails only as the handler reads it, which must not be a 500, nor a
    traceback in the server's log: the client is the one to mend it."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    for path, headers in [("/api/chat", {}), ("/admin/conversations/c1/messages", {"Authorization": "Bearer t0ken"})]:
        for encoding in ("gzip", "br", "zstd"):
            response = await client.post(path, data=b"not compressed at all", headers={
                **headers, "Content-Type": "application/json", "Content-Encoding": encoding})
            assert response.status == 400, (path, encoding)
            error = (await response.json())["error"]
            assert error.startswith("body: cannot be read: Can not decode content-encoding: "), (path, encoding)
    await asyncio.sleep(0.1)  # aiohttp drains what is left of a refused body after the answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_body_sent_brotli_or_zstd_is_read(make_client: Callable[..., Any]) -> None:
    """Clients that compress what they send with br or zstd got a plain-text 400 telling the shop to install a library."""
    import brotli
    from backports import zstd

    client = await make_client(server={"limits": NO_LIMITS})
    body = json.dumps({"conversation_id": cid(), "text": "where is my parcel?"}).encode()
    for encoding, compressed in (("br", brotli.compress(body)), ("zstd", zstd.compress(body))):
        response = await client.post("/api/chat", data=compressed, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding})
        assert response.status == 200, (encoding, await response.text())
        assert (await response.json())["reply"], encoding


# --- admin and CORS ------------------------------------------------------------------------------


async def test_admin_endpoints_need_the_token_and_are_off_without_one(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESKBOT_ADMIN_TOKEN", raising=False)
    closed = await make_client(server={"limits": NO_LIMITS})
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        assert (await closed.post("/admin/reload", headers=headers)).status == 404  # disabled, not open
        assert (await closed.get("/admin/review", headers=headers)).status == 404

    client = await make_client(server={"admin_token": "s3cret-token", "limits": NO_LIMITS})
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or original(a, b))
    for headers in ({}, {"Authorization": "Bearer s3cret-tokem"}, {"Authorization": "s3cret-token"},
                    {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
        response = await client.get("/admin/review", headers=headers)
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    response = await client.get("/admin/review", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 200 and "items" in await response.json()
    assert len(compared) == 5 and all(b == b"s3cret-token" for _, b in compared)  # every check in constant time

    # A header that is not UTF-8 is a wrong token too; an id past SQLite's integers names no turn.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /admin/review HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 401")
    writer.close()
    response = await client.post("/admin/review/" + "9" * 5000, json={"accept": True, "predicted": "greet"},
                                 headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 404

    monkeypatch.setenv("DESKBOT_ADMIN_TOKEN", "from-the-environment")
    env = await make_client(server={"admin_token": "s3cret-token", "limits": NO_LIMITS})
    assert (await env.get("/admin/review", headers={"Authorization": "Bearer s3cret-token"})).status == 401
    assert (await env.get("/admin/review", headers={"Authorization": "Bearer from-the-environment"})).status == 200
    monkeypatch.setenv("DESKBOT_ADMIN_TOKEN", "from-a-file\n")  # a mounted secret ends in a newline no agent types
    mounted = await make_client(server={"limits": NO_LIMITS})
    assert (await mounted.get("/admin/review", headers={"Authorization": "Bearer from-a-file"})).status == 200


async def test_metrics_need_the_metrics_token_once_one_is_set(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics told anyone the shop's traffic, its customers waiting and its model version; a Prometheus scrape
    config's ``authorization`` sends the token as a bearer token. Unset, /metrics stays open."""
    monkeypatch.delenv("DESKBOT_METRICS_TOKEN", raising=False)
    assert (await (await make_client(server={"limits": NO_LIMITS})).get("/metrics")).status == 200
    client = await make_client(server={"admin_token": "t0ken", "metrics_token": "scrape-token", "limits": NO_LIMITS})
    for headers in ({}, {"Authorization": "Bearer scrape-tokem"}, {"Authorization": "scrape-token"},
                    {"Authorization": "Bearer t0ken"}):  # the agents' token is not the scraper's
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer", headers
        assert "deskbot_" not in await response.text()
    response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert response.status == 200 and "deskbot_model_info" in await response.text()
    monkeypatch.setenv("DESKBOT_METRICS_TOKEN", "from-a-file\n")
    env = await make_client(server={"metrics_token": "scrape-token", "limits": NO_LIMITS})
    assert (await env.get("/metrics", headers={"Authorization": "Bearer scrape-token"})).status == 401
    assert (await env.get("/metrics", headers={"Authorization": "Bearer from-a-file"})).status == 200


async def test_without_the_web_channel_no_chat_page_is_served(make_client: Callable[..., Any]) -> None:
    """channels.web.enabled: false served the chat page and its widget, whose every message then failed."""
    client = await make_client(channels={"web": {"enabled": False}}, server={"admin_token": "t0ken", "limits": NO_LIMITS})
    for path in ("/", "/widget.js", "/api/widget"):
        assert (await client.get(path)).status == 404, path
    assert (await chat(client, cid(), "hello")).status == 404
    assert (await client.get("/agent")).status == 200  # the agents still answer Slack and WeCom conversations


async def test_conversations_are_kept_in_no_cache_and_no_type_is_guessed(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    conversation = cid()
    assert (await chat(client, conversation, "call me on 13812345678")).status == 200
    admin = {"Authorization": "Bearer t0ken"}
    for path, headers in [(f"/admin/conversations/{conversation}", admin), ("/admin/conversations", admin),
                          (f"/api/conversations/{conversation}/history", {}), ("/admin/export", admin)]:
        response = await client.get(path, headers=headers)
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
    for path in ("/", "/widget.js", "/healthz"):  # the page and its script may be cached; nothing is sniffed
        response = await client.get(path)
        assert "no-store" not in response.headers.get("Cache-Control", "") and response.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/healthz", "/no/such/page", "/admin/conversations"):  # no version for anyone to look flaws up by
        assert (await client.get(path)).headers["Server"] == "deskbot", path
    for broken in (b"BAD\x01 / HTTP/1.1", b"GET / HTTP/9.9", b"GET / HTTP/1.1\r\nBad Header"):  # aiohttp's own 400
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(broken + b"\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400") and b"\r\nServer: deskbot\r\n" in answer, answer
        # its plain-text body quotes what the client sent: no browser may take it for a page and run it
        assert b"\r\nX-Content-Type-Options: nosniff\r\n" in answer, answer
        assert b"aiohttp" not in answer and b"Python" not in answer, answer


async def test_the_pages_and_the_widget_are_checked_with_the_server_on_every_load(make_client: Callable[..., Any]) -> None:
    """A browser kept widget.js as long as its age suggested: after a rollback, the newer widget it kept sent
    a field the older server refused, and every message failed until the cache ran out."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    for path in ("/", "/widget.js", "/agent"):
        response = await client.get(path)
        assert response.status == 200 and response.headers["Cache-Control"] == "no-cache", path
        unchanged = await client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert unchanged.status == 304, path  # the check costs no body


async def test_the_chat_page_is_framed_by_the_bots_own_sites_alone(make_client: Callable[..., Any]) -> None:
    """Framed by another site, the chat page sends to the bot as its own page does, and that site could lay its page
    over it and trick a visitor into clicking "Talk to a person", or sending what they typed."""
    shop = "https://shop.example.com"
    client = await make_client(channels={"web": {"origins": [shop]}})
    assert (await client.get("/")).headers["Content-Security-Policy"] == f"frame-ancestors 'self' {shop}"
    client = await make_client(channels={"web": {"origins": ["*"]}})  # any site may embed the chat
    assert "Content-Security-Policy" not in (await client.get("/")).headers


async def test_cors_only_for_the_configured_widget_origins(make_client: Callable[..., Any]) -> None:
    shop, other = "https://shop.example.com", "https://evil.example"
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS},
                               channels={"web": {"origins": [shop]}})
    allowed = await chat(client, cid(), "hi", Origin=shop)
    assert allowed.status == 200 and allowed.headers["Access-Control-Allow-Origin"] == shop
    # Another site's form or no-cors fetch needs no preflight: refused, or its visitors' browsers would post
    # messages and handoffs into the inbox that the page could not read but that still counted.
    victim = cid()
    refused = await client.post("/api/chat", data=json.dumps({"conversation_id": victim, "text": "a person please"}),
                                headers={"Origin": other, "Content-Type": "text/plain"})
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert store_rows(client, "SELECT id FROM conversations WHERE id = ?", victim) == []
    feedback = await client.post("/api/feedback", json={"conversation_id": victim, "turn_id": 1, "value": -1},
                                 headers={"Origin": other})
    assert feedback.status == 403
    assert (await client.get("/api/widget", headers={"Origin": other})).status == 200  # reading is harmless
    # The bot's own page behind a proxy that rewrites Host: its Origin names the public host, and only the
    # browser's Sec-Fetch-Site says it is the same site. It must still be able to send.
    behind = {"Origin": "https://chat.shop.example", "Host": "127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
    assert (await chat(client, cid(), "hi", **behind)).status == 200
    async with client.ws_connect("/api/ws", headers=behind) as ws:
        await ws.send_json({"type": "join", "conversation_id": cid()})
        assert (await ws.receive_json())["type"] == "status"
    own_host = {"Origin": "http://" + client.server.host + ":" + str(client.server.port)}  # no Sec-Fetch-Site: by Host
    assert (await chat(client, cid(), "hi", **own_host)).status == 200
    cross = {**behind, "Sec-Fetch-Site": "cross-site", "Origin": other}
    assert (await chat(client, cid(), "hi", **cross)).status == 403
    assert (await client.options("/api/chat", headers={"Origin": other, "Access-Control-Request-Method": "POST"})).status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
        await client.ws_connect("/api/ws", headers={"Origin": other})
    assert foreign.value.status == 403
    admin = await client.get("/admin/review", headers={"Origin": shop, "Authorization": "Bearer t0ken"})
    assert admin.status == 200 and "Access-Control-Allow-Origin" not in admin.headers  # never for the admin API


async def test_a_widget_on_an_allowed_site_can_read_every_refusal_and_its_wait(make_client: Callable[..., Any]) -> None:
    """The per-address 429 and the 413 come from the limits, before any route: without CORS headers the
    page saw a network error, and without Expose-Headers it could not read Retry-After from any 429."""
    shop = "https://shop.example.com"
    client = await make_client(server={"limits": {"per_ip_per_minute": 3}}, channels={"web": {"origins": [shop]}})
    preflight = {"Origin": shop, "Access-Control-Request-Method": "POST"}
    for _ in range(5):  # a browser's preflights are not messages: they never use the address's allowance up
        assert (await client.options("/api/chat", headers=preflight)).status == 204
    for _ in range(3):
        assert (await chat(client, cid(), "hi", Origin=shop)).status == 200
    refused = await chat(client, cid(), "hi", Origin=shop)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.headers["Access-Control-Allow-Origin"] == shop
    assert refused.headers["Access-Control-Expose-Headers"] == "Retry-After"
    huge = await client.post("/api/chat", data=b"x" * 70_000, headers={"Origin": shop, "Content-Type": "application/json"})
    assert huge.status == 413 and huge.headers["Access-Control-Allow-Origin"] == shop


# --- normalisation and privacy -------------------------------------------------------------------


class SpyNLU:
    """The serving model, recording the texts it is asked about."""

    def __init__(self, nlu: NLU) -> None:
        self.nlu, self.seen = nlu, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nlu, name)

    def analyse(self, texts: list[str]) -> Any:
        self.seen.extend(texts)
        return self.nlu.analyse(texts)


async def test_a_page_rebound_to_the_server_is_refused_by_the_host_it_names(make_client: Callable[..., Any]) -> None:
    """DNS rebinding: a page of attacker.example whose name then resolves to a server on localhost or the shop's
    network is same-origin to the browser (``Sec-Fetch-Site: same-origin``), so it could chat, and read /metrics,
    /healthz and /openapi.json. With server.hosts set, only the names listed are served, port aside."""
    client = await make_client(server={"hosts": ["Shop.Example.com", "127.0.0.1"], "limits": NO_LIMITS})
    assert (await client.get("/healthz")).status == 200  # Host: 127.0.0.1:PORT
    for host in ("shop.example.com", "SHOP.example.com:8443", "shop.example.com."):
        assert (await client.get("/healthz", headers={"Host": host})).status == 200, host
    rebound = {"Host": f"attacker.example:{client.server.port}", "Sec-Fetch-Site": "same-origin",
               "Origin": f"http://attacker.example:{client.server.port}"}
    victim = cid()
    refused = await chat(client, victim, "a person please", **rebound)
    assert refused.status == 421
    assert await refused.json() == {"error": f"host not served: {rebound['Host']!r}; list it in server.hosts in bot.yml"}
    assert store_rows(client, "SELECT id FROM conversations WHERE id = ?", victim) == []
    for path in ("/metrics", "/healthz", "/openapi.json", "/api/widget", "/"):
        assert (await client.get(path, headers=rebound)).status == 421, path
    with pytest.raises(aiohttp.WSServerHandshakeError) as socket_refused:
        await client.ws_connect("/api/ws", headers=rebound)
    assert socket_refused.value.status == 421
    document = await (await client.get("/openapi.json")).json()
    assert "421" in document["paths"]["/api/chat"]["post"]["responses"]
    anywhere = await make_client(server={"host": "0.0.0.0", "limits": NO_LIMITS})  # unset, on every address: any host
    assert (await anywhere.get("/healthz", headers=rebound)).status == 200
    assert "421" not in (await (await anywhere.get("/openapi.json")).json())["paths"]["/api/chat"]["post"]["responses"]


async def test_a_server_on_loopback_serves_this_machines_names_alone_until_told_of_a_proxy_in_front(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A server listening on 127.0.0.1 (the default) with server.hosts unset served any Host: a page of any site whose
    name its owner made resolve to 127.0.0.1 could chat with it from the browser of whoever ran it, and read /metrics.
    It serves this machine's own names alone, and says in the log (once an hour at most) what to set, for a proxy in
    front that passes its clients' Host; a proxy configured for the limits (trust_forwarded_for, trusted_proxies), an
    address other than loopback or server.hosts set leave the names as they were."""
    client = await make_client(server={"limits": NO_LIMITS})
    port = client.server.port
    for host in (f"127.0.0.1:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "shop.localhost", "127.0.0.2"):
        assert (await client.get("/healthz", headers={"Host": host})).status == 200, host
    rebound = {"Host": f"attacker.example:{port}", "Sec-Fetch-Site": "same-origin",
               "Origin": f"http://attacker.example:{port}"}
    victim = cid()
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        refused = await chat(client, victim, "a person please", **rebound)
        for path in ("/metrics", "/healthz", "/api/widget"):
            assert (await client.get(path, headers=rebound)).status == 421, path
    assert refused.status == 421
    assert await refused.json() == {"error": f"host not served: {rebound['Host']!r}; {serving.LOCAL_ONLY}"}
    assert store_rows(client, "SELECT id FROM conversations WHERE id = ?", victim) == []
    said = [r.getMessage() for r in caplog.records if "(421)" in r.getMessage()]
    assert said == [f"refused a request for host {rebound['Host']!r} (421): {serving.LOCAL_ONLY}"]
    assert "421" in (await (await client.get("/openapi.json")).json())["paths"]["/api/chat"]["post"]["responses"]
    for server in ({"limits": {**NO_LIMITS, "trust_forwarded_for": True}},
                   {"limits": {**NO_LIMITS, "trusted_proxies": ["127.0.0.0/8"]}},
                   {"host": "0.0.0.0", "limits": NO_LIMITS}, {"hosts": ["attacker.example"], "limits": NO_LIMITS}):
        other = await make_client(server=server)
        assert (await other.get("/healthz", headers=rebound)).status == 200, server


@pytest.mark.parametrize("entry", ["https://shop.example.com", "shop.example.com:443", "shop.example.com/chat", "::1", ""])
def test_server_hosts_takes_host_names_alone(entry: str) -> None:
    """An entry with a scheme, a port or a path would match no request and refuse every one."""
    with pytest.raises(ValidationError, match="is not a host name"):
        ServerConfig(hosts=[entry])


async def test_the_model_sees_normalised_text_and_the_log_keeps_the_original(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": NO_LIMITS})
    spy = client.app[BOT].nlu = SpyNLU(client.app[BOT].nlu)
    original = "Ｗｈｅｒｅ\u00a0is my\u0000 parcel\u200b？\u202e\n"
    conversation = cid()
    assert (await chat(client, conversation, original)).status == 200
    assert spy.seen == ["Where is my parcel ?"]  # NFKC (full-width, no-break space), controls and format chars gone
    assert store_rows(client, "SELECT text, raw_text FROM turns WHERE conversation_id = ? AND role = 'user'",
                      conversation) == [("Where is my parcel ?", original)]


async def test_a_message_with_nothing_to_read_is_refused_and_not_stored(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"limits": NO_LIMITS})
    spy = client.app[BOT].nlu = SpyNLU(client.app[BOT].nlu)
    conversation = cid()
    for blank in ("   ", "\u0000\u0000", "\u200b\n\t", "\f", "\u2060\ufeff\u3000", "\u061c", "\u180e\ufe0f", "\u3164\uffa0"):
        response = await chat(client, conversation, blank)
        assert response.status == 400
        assert (await response.json())["error"] == "text: nothing to read (only spaces, control or zero-width characters)"
    assert spy.seen == [] and store_rows(client, "SELECT text FROM turns WHERE conversation_id = ?", conversation) == []


def test_the_published_pattern_for_a_message_is_exactly_what_normalise_keeps() -> None:
    """/openapi.json promises READABLE for a chat message's text; a client (or schemathesis) that
    sends a text matching it must get an answer, and one that does not, a 400. Every code point."""
    assert ChatRequest.model_json_schema()["properties"]["text"]["pattern"] == READABLE
    disagree = [hex(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF
                and readable(chr(c)) != bool(normalise(chr(c)))]
    assert disagree == [] and readable("\ud800hi") is False and readable("退款") and readable("\u00a0?")



def patterns_in(node: Any) -> Iterator[str]:
    """Every ``pattern`` a JSON Schema document holds, however deep."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from patterns_in(item)


async def test_the_published_patterns_for_an_agents_name_are_exactly_what_the_server_takes(
        make_client: Callable[..., Any]) -> None:
    """/openapi.json's patterns for an agent's name (?agent=, a reply's agent, a label's reviewer) let through the tag
    characters and the private-use ones past U+FFFF, which the server refuses: a client held to them had such a name
    refused with a 400 it was not told of. Every code point, read as JSON Schema reads a pattern (by code point)."""
    client = await make_client(server={"admin_token": "t0ken"})
    doc = await (await client.get("/openapi.json", headers={"Authorization": "Bearer t0ken"})).json()
    assert {AGENT_NAME_PATTERN, VISIBLE_AGENT_NAME} <= set(patterns_in(doc))

    def taken(name: str) -> bool:
        try:
            agent_name(name)
        except ValueError:
            return False
        return True

    for pattern in (re.compile(AGENT_NAME_PATTERN), re.compile(VISIBLE_AGENT_NAME)):
        disagree = [hex(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF
                    and bool(pattern.fullmatch(f"Ana{chr(c)}")) != taken(f"Ana{chr(c)}")]
        assert disagree == [], pattern.pattern
    assert not re.fullmatch(VISIBLE_AGENT_NAME, "Ana\U000e0041\U000e004e") and re.fullmatch(VISIBLE_AGENT_NAME, "Ana 😀")

PERSONAL = "mail jane.doe@example.com or call +86 138 0013 8000, card 4111 1111 1111 1111"
REDACTED = "mail [EMAIL] or call [PHONE], card [CARD]"


@pytest.mark.parametrize(("privacy", "text", "raw"), [
    ({}, REDACTED, None),
    ({"keep_raw": True}, REDACTED, PERSONAL),
    ({"redact": False}, PERSONAL, None),
])
async def test_personal_data_is_redacted_in_the_store_unless_configured(
        make_client: Callable[..., Any], privacy: dict[str, bool], text: str, raw: str | None) -> None:
    client = await make_client(server={"limits": NO_LIMITS}, privacy=privacy)
    conversation = cid()
    reply = await chat(client, conversation, PERSONAL)
    assert reply.status == 200
    assert store_rows(client, "SELECT text, raw_text FROM turns WHERE conversation_id = ? AND role = 'user'",
                      conversation) == [(text, raw)]
    # a feedback comment is the customer's own text too
    vote = {"conversation_id": conversation, "turn_id": (await reply.json())["turn_id"], "value": -1, "comment": PERSONAL}
    assert (await client.post("/api/feedback", json=vote)).status == 200
    assert store_rows(client, "SELECT comment FROM feedback") == [(text,)]


async def test_a_template_filled_with_the_customers_words_is_stored_redacted(make_client: Callable[..., Any]) -> None:
    """The order number slot took a card number, which the template repeated: "[CARD]" in the customer's
    turn, the number in full in the bot's, in the transcript and the agents' inbox."""
    client = await make_client(server={"limits": NO_LIMITS})
    conversation = cid()
    assert (await chat(client, conversation, "hello")).status == 200
    # what "please cancel order 4111111111111111" leaves, where the classifier is sure of cancel_order
    client.app[BOT].store.db.execute("UPDATE conversations SET slots = ? WHERE id = ?",
                                     ['{"order_id": "4111111111111111"}', conversation])
    reply = await (await chat(client, conversation, "/cancel_order")).json()
    assert (reply["source"], reply["intent"]) == ("template", "cancel_order")
    assert "4111111111111111" in reply["reply"]  # the customer reads their own number
    stored = store_rows(client, "SELECT text FROM turns WHERE conversation_id = ? AND role = 'bot'", conversation)[-1][0]
    assert stored == reply["reply"].replace("4111111111111111", "[CARD]")


async def test_purge_deletes_a_conversation_completely(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    gone, kept = cid(), cid()
    secret = "my parcel for Zebediah Quuxworth never came"
    reply = await (await chat(client, gone, secret)).json()
    await client.post("/api/feedback", json={"conversation_id": gone, "turn_id": reply["turn_id"], "value": -1,
                                             "comment": "Quuxworth unhappy"})
    admin = {"Authorization": "Bearer t0ken"}
    assert (await client.post(f"/admin/conversations/{gone}/handoff", headers=admin)).status == 200
    assert (await client.post(f"/admin/conversations/{gone}/messages", json={"text": "Sorry Mr Quuxworth", "agent": "Sam"},
                              headers=admin)).status == 200
    assert (await chat(client, kept, "another customer")).status == 200
    user_turn = store_rows(client, "SELECT id FROM turns WHERE conversation_id = ? AND role = 'user'", gone)[0][0]
    client.app[BOT].store.add_labels([user_turn], "track_order", "reviewer")
    client.app[BOT].store.receive("slack:ts:C1:1.1", gone, "slack", None, secret, {})  # not answered yet
    root = client.app[BOT].project.root

    result = CliRunner().invoke(cli, ["purge", str(root), "--conversation", gone, "--conversation", gone])
    assert result.exit_code == 0, result.output  # named twice: deleted once, and said so (it said "no conversation")
    assert result.output.count(f"Deleted {gone}") == 1
    assert "1 conversations" in result.output and "1 answer_candidates" in result.output and "1 review_labels" in result.output
    for table in ("conversations", "turns", "handoffs", "answer_candidates", "pending"):
        column = "id" if table == "conversations" else "conversation_id"
        assert store_rows(client, f"SELECT count(*) FROM {table} WHERE {column} = ?", gone) == [(0,)], table
    assert store_rows(client, "SELECT count(*) FROM feedback") == [(0,)]
    assert store_rows(client, "SELECT count(*) FROM review_labels") == [(0,)]
    assert store_rows(client, "SELECT count(*) FROM turns WHERE conversation_id = ?", kept) == [(2,)]
    on_disk = b"".join(path.read_bytes() for path in root.glob("dialogues.db*"))
    assert b"Quuxworth" not in on_disk and gone.encode() not in on_disk  # no copy left in free pages or the WAL

    missing = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "nobody"])
    assert missing.exit_code == 1 and "no conversation nobody" in missing.output


async def test_purge_deletes_a_customers_conversations_and_those_past_a_retention_period(
        make_client: Callable[..., Any]) -> None:
    """`bot purge` took conversation ids alone: a shop had to find a customer's conversations, or those older than
    it keeps them, in the SQLite file itself."""
    client = await make_client(server={"limits": NO_LIMITS})
    ann_old, ann_new, bob_old, bob_new = cid(), cid(), cid(), cid()
    for conversation, user, text in ((ann_old, "U-ann", "parcel for Zebediah Quuxworth"), (ann_new, "U-ann", "hello"),
                                     (bob_old, "U-bob", "parcel for Ottoline Brabazon"), (bob_new, "U-bob", "hi")):
        reply = await client.post("/api/chat", json={"conversation_id": conversation, "text": text, "user": user})
        assert reply.status == 200
    year = 365 * 86400
    with sqlite3.connect(client.app[BOT].project.db_path) as db:  # as if written a year ago
        db.execute("UPDATE conversations SET created = created - ?, updated = updated - ? WHERE id IN (?, ?)",
                   [year, year, ann_old, bob_old])
        db.execute("UPDATE turns SET created = created - ? WHERE conversation_id IN (?, ?)", [year, ann_old, bob_old])
    root = client.app[BOT].project.root
    before = time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * 86400))

    listed = CliRunner().invoke(cli, ["purge", str(root), "--user", "U-ann", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert listed.output == f"{ann_old}\tweb\tU-ann\n{ann_new}\tweb\tU-ann\n"  # oldest first, nothing deleted
    assert store_rows(client, "SELECT count(*) FROM conversations") == [(4,)]

    ann = CliRunner().invoke(cli, ["purge", str(root), "--user", "U-ann"])
    assert ann.exit_code == 0, ann.output
    assert f"Deleted {ann_old}" in ann.output and f"Deleted {ann_new}" in ann.output
    expired = CliRunner().invoke(cli, ["purge", str(root), "--before", before])
    assert expired.exit_code == 0, expired.output
    # a retention period's, run from cron, names them by their tag, as the server's log does: its mail keeps them
    assert f"Deleted {log_tag(bob_old)}" in expired.output and bob_old not in expired.output
    assert bob_new not in expired.output
    assert [row[0] for row in store_rows(client, "SELECT id FROM conversations")] == [bob_new]
    on_disk = b"".join(path.read_bytes() for path in root.glob("dialogues.db*"))
    assert b"Quuxworth" not in on_disk and b"Brabazon" not in on_disk
    assert (await chat(client, bob_new, "still there?")).status == 200  # the serving bot goes on

    again = CliRunner().invoke(cli, ["purge", str(root), "--before", before])
    assert again.exit_code == 0 and f"No conversation with nothing since {before} 00:00:00" in again.stderr
    listed = CliRunner().invoke(cli, ["purge", str(root), "--before", before, "--dry-run"])  # it listed nothing, unsaid
    assert listed.exit_code == 0 and listed.stdout == "" and f"No conversation with nothing since {before}" in listed.stderr
    nobody = CliRunner().invoke(cli, ["purge", str(root), "--user", "U-ann"])
    assert nobody.exit_code == 0 and "No conversation of 'U-ann'" in nobody.stderr
    future = CliRunner().invoke(cli, ["purge", str(root), "--before", "2062-01-01"])  # for 2026-01-01
    assert future.exit_code == 1 and "--before 2062-01-01 00:00:00 is in the future" in future.output
    assert [row[0] for row in store_rows(client, "SELECT id FROM conversations")] == [bob_new]
    bare = CliRunner().invoke(cli, ["purge", str(root)])
    assert bare.exit_code == 2 and "--conversation ID, --before DATE or --user ID" in bare.output

    # An empty id (a script's unset variable) matched every conversation stored with an empty user, a client's.
    unnamed = cid()
    assert (await client.post("/api/chat", json={"conversation_id": unnamed, "text": "hi", "user": ""})).status == 200
    for blank in ("", "  "):
        refused = CliRunner().invoke(cli, ["purge", str(root), "--user", blank])
        assert refused.exit_code == 2 and "Invalid value for '--user': an empty id names no customer" in refused.output
    assert sorted(row[0] for row in store_rows(client, "SELECT id FROM conversations")) == sorted([bob_new, unnamed])
    assert store_rows(client, "SELECT user FROM turns WHERE conversation_id = ?", unnamed)[0] == (None,)  # a visitor


async def test_a_serving_bot_deletes_the_conversations_past_its_retention_period(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A retention period took a cron job beside the server (`bot purge --before`), and a shop that set none up kept
    every conversation for good: privacy.retention_days has the server delete them itself, completely, and its log
    names the model versions trained since that may still hold them, as `bot purge` does."""
    monkeypatch.setattr(serving, "RETENTION_EVERY_S", 0.05)
    purged, purge = threading.Event(), serving.purge_older_than

    def purging(project: Project, days: int) -> tuple[int, list[str]]:
        deleted, kept = purge(project, days)
        if deleted:
            purged.set()
        return deleted, kept

    monkeypatch.setattr(serving, "purge_older_than", purging)
    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, privacy={"retention_days": 30})
    old, recent = cid(), cid()
    for conversation in (old, recent):
        assert (await chat(client, conversation, "my parcel for Zebediah Quuxworth")).status == 200
    month = 31 * 86400
    with sqlite3.connect(client.app[BOT].project.db_path) as db:  # as if written a month ago
        db.execute("UPDATE conversations SET created = created - ?, updated = updated - ? WHERE id = ?", [month, month, old])
        db.execute("UPDATE turns SET created = created - ? WHERE conversation_id = ?", [month, old])
        db.execute("INSERT INTO answer_candidates (conversation_id, question, answer, created) VALUES (?, ?, ?, ?)",
                   [old, "my parcel?", "It is with the courier.", time.time() - month])  # an agent's answer
    assert await asyncio.get_running_loop().run_in_executor(None, purged.wait, 10)
    assert [row[0] for row in store_rows(client, "SELECT id FROM conversations")] == [recent]
    assert store_rows(client, "SELECT count(*) FROM turns WHERE conversation_id = ?", old) == [(0,)]
    assert "deleted 1 conversation with nothing written in 30 days (privacy.retention_days)" in caplog.text
    served = Registry(client.app[BOT].project.models_dir).current()
    assert f"its agent answers may be in {served}, trained since it began: `bot retrain" in caplog.text
    assert (await chat(client, recent, "still there?")).status == 200  # the serving bot goes on

    import yaml  # the period changed takes at a reload, with no restart

    bot_yml = client.app[BOT].project.root / "bot.yml"
    bot_yml.write_text(yaml.safe_dump({**yaml.safe_load(bot_yml.read_text()), "privacy": {"retention_days": 60}}))
    reloaded = await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert reloaded.status == 200 and (await reloaded.json())["restart_needed"] == []
    assert client.app[BOT].config.privacy.retention_days == 60


async def test_a_serving_bot_drops_the_slots_holding_personal_data_of_idle_conversations(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A form's e-mail address, kept in its conversation's slots as set for as long as the conversation: each round
    drops those of the conversations with nothing written in privacy.slot_hours, a reload changing it with no restart."""
    monkeypatch.setattr(serving, "RETENTION_EVERY_S", 0.05)
    dropped, forget = threading.Event(), serving.forget_idle_slots

    def forgetting(project: Project, hours: float) -> int:
        if found := forget(project, hours):
            dropped.set()
        return found

    monkeypatch.setattr(serving, "forget_idle_slots", forgetting)
    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, privacy={"slot_hours": 2})
    idle, recent = cid(), cid()
    for conversation in (idle, recent):
        assert (await chat(client, conversation, "hello")).status == 200
    with sqlite3.connect(client.app[BOT].project.db_path) as db:  # a form's answer, the idle one's three hours ago
        db.execute("UPDATE conversations SET slots = ?", [json.dumps({"email": "jane@example.com", "size": "M"})])
        db.execute("UPDATE conversations SET updated = updated - 3 * 3600 WHERE id = ?", [idle])
    assert await asyncio.get_running_loop().run_in_executor(None, dropped.wait, 10)
    slots = dict(store_rows(client, "SELECT id, slots FROM conversations"))
    assert json.loads(slots[idle]) == {"size": "M"} and json.loads(slots[recent])["email"] == "jane@example.com"
    assert "dropped the slots holding personal data of 1 conversation with nothing written in 2 hours" in caplog.text

    import yaml

    bot_yml = client.app[BOT].project.root / "bot.yml"
    bot_yml.write_text(yaml.safe_dump({**yaml.safe_load(bot_yml.read_text()), "privacy": {"slot_hours": 1}}))
    reloaded = await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert reloaded.status == 200 and (await reloaded.json())["restart_needed"] == []
    assert client.app[BOT].config.privacy.slot_hours == 1


@pytest.mark.parametrize("hours", [0, None])
async def test_slot_hours_zero_or_null_keeps_the_slots_with_their_conversation_redaction_on_or_off(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, hours: float | None) -> None:
    """privacy.slot_hours is a retention period of its own, applied whether or not privacy.redact is on; a shop whose
    actions need a form's e-mail address past a day sets it to 0 or null, and each round keeps the slots (and still
    rids the search index of a customer's edited words)."""
    monkeypatch.setattr(serving, "RETENTION_EVERY_S", 0.05)
    rounds, forget = threading.Event(), serving.forget_idle_slots

    def forgetting(project: Project, given: float | None) -> int:
        found = forget(project, given)
        rounds.set()
        return found

    monkeypatch.setattr(serving, "forget_idle_slots", forgetting)
    client = await make_client(server={"limits": NO_LIMITS}, privacy={"slot_hours": hours, "redact": False})
    idle = cid()
    assert (await chat(client, idle, "hello")).status == 200
    with sqlite3.connect(client.app[BOT].project.db_path) as db:  # a form's answer, a year ago
        db.execute("UPDATE conversations SET slots = ?, updated = updated - 365 * 86400",
                   [json.dumps({"email": "jane@example.com"})])
    store = client.app[BOT].store
    store._index_rewritten = True  # as a Slack customer's edit leaves it: the round merges the search index first
    rounds.clear()
    assert await asyncio.get_running_loop().run_in_executor(None, rounds.wait, 10)
    assert json.loads(dict(store_rows(client, "SELECT id, slots FROM conversations"))[idle]) == {"email": "jane@example.com"}
    assert not store._index_rewritten


async def test_what_customers_write_reaches_the_operators_terminal_with_its_control_characters_escaped(
        make_client: Callable[..., Any]) -> None:
    """A feedback comment and the ``user`` a client sends are stored as sent, and `bot stats`, `bot review` and `bot
    purge --dry-run` printed them so: a customer's escape sequences cleared the operator's screen and showed a link
    to another address than its text (OSC 8), and a line break in a ``user`` added a row to the listing."""
    client = await make_client(server={"limits": NO_LIMITS})
    conversation = cid()
    user = "eve\n" + "someone-else\tweb\tadmin"  # refused by the API now, kept so in a store an older deskbot wrote
    refused = await client.post("/api/chat", json={"conversation_id": cid(), "text": "where is my parcel", "user": user})
    assert refused.status == 400
    reply = await client.post("/api/chat", json={"conversation_id": conversation, "text": "where is my parcel",
                                                  "user": "eve"})
    assert reply.status == 200, await reply.text()
    comment = "bad\x1b[2J\x1b]8;;https://evil.example/\x07read this\x1b]8;;\x07\x9b"
    vote = await client.post("/api/feedback", json={"conversation_id": conversation, "user": "eve", "value": -1,
                                                     "turn_id": (await reply.json())["turn_id"], "comment": comment})
    assert vote.status == 200, await vote.text()
    root = client.app[BOT].project.root
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as db, db:
        db.execute("UPDATE conversations SET user = ? WHERE id = ?", [user, conversation])
    shown = r"bad\x1b[2J\x1b]8;;https://evil.example/\x07read this\x1b]8;;\x07\x9b"

    # color=True: the output as a terminal gets it, which click leaves its escape sequences
    stats = CliRunner().invoke(cli, ["stats", str(root)], color=True)
    assert stats.exit_code == 0, stats.output
    assert shown[:59] in stats.output and "\x1b" not in stats.output and "\x07" not in stats.output
    as_csv = CliRunner().invoke(cli, ["stats", str(root), "--csv"], color=True)
    assert f"top_complaints.{shown},1" in as_csv.output.splitlines()
    as_json = CliRunner().invoke(cli, ["stats", str(root), "--json"], color=True)
    assert "\x9b" not in as_json.output and json.loads(as_json.output)["top_complaints"] == {comment: 1}
    review = CliRunner().invoke(cli, ["review", str(root)], input="q\n", color=True)
    assert review.exit_code == 0, review.output
    assert f"said wrong: “{shown}”" in review.output and "\x07" not in review.output
    listed = CliRunner().invoke(cli, ["purge", str(root), "--user", user, "--dry-run"], color=True)
    assert listed.exit_code == 0, listed.output
    assert listed.output == f"{conversation}\tweb\teve\\x0asomeone-else\\x09web\\x09admin\n"  # one row


async def test_what_customers_write_reaches_the_operators_terminal_with_its_direction_controls_escaped(
        make_client: Callable[..., Any]) -> None:
    """A right-to-left override in a feedback comment (stored as sent) or a ``user`` (refused by the API now, kept so in
    a store an older deskbot wrote) reached `bot stats`, `bot review` and `bot purge --dry-run` as it was: the rest of
    its line showed backwards, a comment's count or the listing's next column among it. Each direction control is
    printed as its escape, as a control character is, and as a JSON escape by `bot stats --json`."""
    client = await make_client(server={"limits": NO_LIMITS})
    conversation = cid()
    user = "eve\u2067\u202e"
    refused = await client.post("/api/chat", json={"conversation_id": cid(), "text": "where is my parcel", "user": user})
    assert refused.status == 400 and "U+2067" in (await refused.json())["error"]
    reply = await client.post("/api/chat", json={"conversation_id": conversation, "text": "where is my parcel"})
    comment = "fine \u202eyllaer ton\u202c \u2066\u202a1\u2069 star"
    vote = await client.post("/api/feedback", json={"conversation_id": conversation, "value": -1,
                                                     "turn_id": (await reply.json())["turn_id"], "comment": comment})
    assert vote.status == 200, await vote.text()
    root = client.app[BOT].project.root
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as db, db:
        db.execute("UPDATE conversations SET user = ? WHERE id = ?", [user, conversation])
    shown = r"fine \u202eyllaer ton\u202c \u2066\u202a1\u2069 star"
    bidi = re.compile("[\u202a-\u202e\u2066-\u2069]")

    stats = CliRunner().invoke(cli, ["stats", str(root)], color=True)
    assert stats.exit_code == 0 and shown in stats.output and not bidi.search(stats.output), stats.output
    as_csv = CliRunner().invoke(cli, ["stats", str(root), "--csv"], color=True)
    assert f"top_complaints.{shown},1" in as_csv.output.splitlines()
    as_json = CliRunner().invoke(cli, ["stats", str(root), "--json"], color=True)
    assert not bidi.search(as_json.output) and json.loads(as_json.output)["top_complaints"] == {comment: 1}
    review = CliRunner().invoke(cli, ["review", str(root)], input="q\n", color=True)
    assert f"said wrong: “{shown}”" in review.output and not bidi.search(review.output), review.output
    listed = CliRunner().invoke(cli, ["purge", str(root), "--user", user, "--dry-run"], color=True)
    assert listed.output == f"{conversation}\tweb\teve\\u2067\\u202e\n"


async def test_the_lock_files_a_server_and_a_training_run_hold_are_their_owners_alone(
        make_client: Callable[..., Any], common_umask: None) -> None:
    """A server's lock file (in .dialogues.db.servers/) and the model registry's (models/.lock) took the umask's mode
    (0644): another account on the machine could open one and hold a lock on it, so that the messages a gone
    server had kept were never taken over, or no training run nor rollback could start."""
    client = await make_client()
    root = client.app[BOT].project.root
    servers = root / ".dialogues.db.servers"
    [own] = list(servers.glob("*.lock"))
    assert servers.stat().st_mode & 0o777 == 0o700 and own.stat().st_mode & 0o777 == 0o600
    (root / "models" / ".lock").unlink()  # the copied bot's, made before
    with Registry(root / "models").lock():
        assert (root / "models" / ".lock").stat().st_mode & 0o777 == 0o600


async def test_a_purged_conversations_message_keys_go_once_past_the_retry_window_without_another_message(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept for the platform's retry window after a purge, the keys were deleted only as a later Slack or WeCom
    message was kept: on a quiet bot, days later."""
    monkeypatch.setattr(serving, "FORGET_KEYS_EVERY_S", 0.1)
    client = await make_client(server={"limits": NO_LIMITS})
    store = client.app[BOT].store
    gone, recent = cid(), cid()
    for conversation_id, key in ((gone, "slack:ts:D1:1.1"), (recent, "slack:ts:D2:1.1")):
        store.delivered(store.receive(key, conversation_id, "slack", "U-ann", "where is my parcel?", {}))
    CliRunner().invoke(cli, ["purge", str(client.app[BOT].project.root), "--conversation", gone])
    store.db.execute("UPDATE pending SET answered = answered - ? WHERE key = 'slack:ts:D1:1.1'", [REDELIVERY_WINDOW_S + 1])
    await asyncio.sleep(0.5)
    assert store_rows(client, "SELECT key FROM pending") == [("slack:ts:D2:1.1",)]  # still in its window


# --- custom actions ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["action_blocking", "action_sleeping", "action_broken", "action_exiting"])
async def test_slow_or_broken_actions_fall_back_without_holding_anyone_up(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any, action: str) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "actions-bot", server={"limits": NO_LIMITS},
                           actions={"map": {"track_order": action}, "timeout": 0.5})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    client = await aiohttp_client(create_app(root, device="cpu", nlu=nlu))
    started = time.monotonic()
    slow = asyncio.ensure_future(chat(client, cid(), "/track_order"))
    await asyncio.sleep(0.2)
    other = await chat(client, cid(), "/check_refund_policy")
    assert other.status == 200 and (await other.json())["source"] == "template"
    assert action in ("action_broken", "action_exiting") or not slow.done()  # answered while the action is stuck
    reply = await (await slow).json()
    assert time.monotonic() - started < 4  # the 5 s action was cut at 0.5 s
    said = "couldn't complete that" if action in ("action_broken", "action_exiting") else "taking longer than it should"
    assert reply["source"] == "fallback" and said in reply["reply"]
    assert reply["buttons"] == [{"title": "Talk to a person", "payload": "/handoff"}]


async def test_an_action_and_its_follow_ups_share_one_timeout(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any) -> None:
    """Each follow-up had the whole timeout: four 0.3 s steps under a 0.75 s timeout kept the customer 1.2 s."""
    root = configured_copy(tiny_demo_bot, tmp_path / "steps-bot", server={"limits": NO_LIMITS},
                           actions={"map": {"track_order": "action_slow_steps"}, "timeout": 0.75})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    client = await aiohttp_client(create_app(root, device="cpu", nlu=nlu))
    started = time.monotonic()
    reply = await (await chat(client, cid(), "/track_order")).json()
    assert time.monotonic() - started < 1.5
    assert reply["source"] == "action" and 1 <= reply["reply"].count("step") <= 2  # what was said before the cut stands


async def test_hung_actions_hold_up_neither_other_actions_nor_the_process_exit(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any) -> None:
    """A thread cannot be stopped, so each hung action keeps one: never one that another customer's
    action waits for, and never one a stopping process waits for."""
    root = configured_copy(tiny_demo_bot, tmp_path / "hung-bot", server={"limits": NO_LIMITS},
                           actions={"map": {"track_order": "action_blocking", "cancel_order": "action_quick"},
                                    "timeout": 0.5})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    client = await aiohttp_client(create_app(root, device="cpu", nlu=nlu))
    hung = await asyncio.gather(*(chat(client, cid(), "/track_order") for _ in range(8)))
    answers = [await r.json() for r in hung]
    assert [a["source"] for a in answers] == ["fallback"] * 8  # eight threads still asleep
    # not "please try again": what a refund action was doing may still be done
    assert {a["reply"] for a in answers} == {load_project(root).config.fallback.action_slow["en"]}
    quick = await (await chat(client, cid(), "/cancel_order")).json()
    assert (quick["source"], quick["reply"]) == ("action", "quick")

    script = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from pathlib import Path
from bot.actions import ActionError, ActionRunner, action_call
runner = ActionRunner(Path({str(root / "actions")!r}), None, 0.2, {{}})
call = action_call("action_stuck", "c", "hi", "track_order", 1.0, [], {{}}, {{}}, {{}}, "web", {{}})
async def main():
    try:
        await runner.run(call)
    except ActionError as exc:
        print(exc)
asyncio.run(main())
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "timed out after 0.2s" in done.stdout, done.stderr
    assert time.monotonic() - started < 30  # not the minute the action sleeps


def test_an_action_that_interrupts_or_is_cancelled_fails_as_any_other(tmp_path: Path) -> None:
    """KeyboardInterrupt raised in the server's loop stopped the server, and CancelledError dropped the turn,
    message and all; and a thread that could not start kept its place, so 32 such made every action wait
    for good. Run apart: in this process's loop, the interrupt would stop the test run."""
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    script = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from pathlib import Path
from types import SimpleNamespace
import bot.actions
from bot.actions import ActionError, ActionRunner, action_call, MAX_ACTION_THREADS
runner = ActionRunner(Path({str(tmp_path / "actions")!r}), None, 2.0, {{}})

class NoThread:
    def __init__(self, **kwargs):
        pass

    def start(self):
        raise RuntimeError("can't start new thread")

async def main():
    for name in ("action_interrupting", "action_cancelled", "action_quick"):
        call = action_call(name, "c", "hi", "track_order", 1.0, [], {{}}, {{}}, {{}}, "web", {{}})
        try:
            print(name, (await runner.run(call)).messages)
        except ActionError as exc:
            print(exc)
    real, bot.actions.threading = bot.actions.threading, SimpleNamespace(Thread=NoThread)
    for _ in range(MAX_ACTION_THREADS + 1):
        try:
            await runner.run(call)
        except ActionError as exc:
            failed = str(exc)
    print(failed)
    bot.actions.threading = real
    print("after", (await runner.run(call)).messages)
asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[:2] == ["action 'action_interrupting' failed: it raised KeyboardInterrupt",
                         "action 'action_cancelled' failed: it raised CancelledError"], done.stderr
    assert lines[2].startswith("action_quick [") and "'quick'" in lines[2]
    assert lines[3] == "action 'action_quick' failed: can't start new thread"
    assert lines[4].startswith("after [") and "'quick'" in lines[4], done.stderr


async def test_shutdown_lets_socket_turns_finish_within_shutdown_seconds(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    """And the log says what a stop waits for, and which conversations' turns it cut off: nothing was said."""
    async def serve(name: str, action: str, seconds: float) -> Any:
        root = configured_copy(tiny_demo_bot, tmp_path / name, server={"limits": NO_LIMITS, "shutdown_seconds": seconds},
                               actions={"map": {"track_order": action}, "timeout": 10})
        shutil.rmtree(root / "actions")
        (root / "actions").mkdir()
        (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
        return await aiohttp_client(create_app(root, device="cpu", nlu=nlu))

    async def shut_down_mid_turn(client: Any) -> tuple[float, list[Any]]:
        """SIGTERM's first step while a socket's turn is in flight: how long it took, what the socket got."""
        async def read_all(ws: Any) -> list[Any]:  # a browser answers the server's close at once
            return [message async for message in ws]

        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"conversation_id": "waiting-for-it", "text": "/track_order"})
            reading = asyncio.ensure_future(read_all(ws))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await client.app.shutdown()
            return time.monotonic() - started, await reading

    caplog.set_level(logging.INFO, logger="deskbot")
    took, received = await shut_down_mid_turn(await serve("patient", "action_pausing", 8))
    assert [json.loads(m.data)["reply"] for m in received] == ["Order 123 is on its way."]  # then the socket closed
    assert took < 5
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping")]
    assert said == ["stopping: finishing 1 turn in flight, for up to 8 s (server.shutdown_seconds)"]
    caplog.clear()
    took, received = await shut_down_mid_turn(await serve("hurried", "action_sleeping", 0.3))
    # the 5 s action was not waited for past shutdown_seconds
    assert [json.loads(m.data)["code"] for m in received] == ["stopping"] and took < 2
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping")]
    assert said[1] == ("stopping: 1 turn still running after 0.3 s (server.shutdown_seconds) cut off unanswered, in "
                       f"conversations {log_tag('waiting-for-it')}")


async def test_a_socket_message_that_comes_once_the_stop_has_begun_is_sent_elsewhere_at_once(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any) -> None:
    """A rolling restart's stop waits for the sockets' turns in flight, then closes the sockets: a message a customer
    sent on a socket still open meanwhile began a turn the stop did not wait for, and the socket closed on it
    unanswered (the widget told nothing until it gave up looking for the answer, and marked it *Not sent*). It is
    answered ``stopping`` at once, with its ``retry_after``, and the widget sends it again to another server."""
    root = configured_copy(tiny_demo_bot, tmp_path / "rolling", server={"limits": NO_LIMITS, "shutdown_seconds": 8},
                           actions={"map": {"track_order": "action_pausing"}, "timeout": 10})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    client = await aiohttp_client(create_app(root, device="cpu", nlu=nlu))
    channel = client.app[BOT].channels["web"]
    async with client.ws_connect("/api/ws") as answering, client.ws_connect("/api/ws") as late:
        await answering.send_json({"conversation_id": "in-flight", "text": "/track_order"})
        heard = asyncio.ensure_future(answering.receive_json(timeout=10))
        while not channel._turns:  # its turn has begun
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(client.app.shutdown())
        while not channel._stopping:
            await asyncio.sleep(0)
        await late.send_json({"conversation_id": "came-late", "text": "/track_order", "message_id": "m1"})
        frames = [json.loads(message.data) async for message in late]
        assert (await heard)["reply"] == "Order 123 is on its way."
        await stopping
    assert [(frame["type"], frame.get("code"), frame.get("retry_after")) for frame in frames] == [("error", "stopping", 1)]


async def test_shutdown_lets_a_reload_under_way_finish_and_tell_the_other_servers(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A SIGTERM (a rolling restart) while a ``POST /admin/reload`` loaded its model waited for the turns in flight
    alone: the reload was cut off a second later, unanswered and unsaid, and the other servers on the store, never
    told of it, served the bot's files as they were. The stop waits for it, within ``server.shutdown_seconds``."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS, "shutdown_seconds": 30},
                               learning={"watch_seconds": 0})
    bot = client.app[BOT]
    loading, may_finish, load = threading.Event(), threading.Event(), serving.load_serving_model

    def held_load(*args: Any, **kwargs: Any) -> Any:  # on the reload's thread: a model that takes a while to load
        loading.set()
        may_finish.wait(30)
        return load(*args, **kwargs)

    monkeypatch.setattr(serving, "load_serving_model", held_load)
    caplog.set_level(logging.INFO, logger="deskbot")
    reload = asyncio.create_task(client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"}))
    assert await asyncio.to_thread(loading.wait, 30)
    stopping = asyncio.create_task(client.app.shutdown())
    may_finish.set()
    await stopping
    assert any(r.getMessage().startswith("reloaded by the admin token") for r in caplog.records)  # before the stop's end
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping")] == [
        "stopping: finishing the reload under way, for up to 30 s (server.shutdown_seconds)"]
    assert (await reload).status == 200
    assert store_rows(client, "SELECT server FROM reloads") == [(bot.store.server,)]


def test_a_server_with_async_actions_stops_with_their_event_loop_closed(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """The async actions' event loop was stopped at shutdown and not closed: destroyed later with what an action had
    left running on it, it said "Task was destroyed but it is pending!" and "unclosed event loop" (ResourceWarning).
    Run apart, with ResourceWarning shown, where nothing else of the test run is collected meanwhile."""
    root = configured_copy(tiny_demo_bot, tmp_path / "async-bot", server={"limits": NO_LIMITS, "shutdown_seconds": 0.3},
                           actions={"map": {"track_order": "action_warming", "cancel_order": "action_sleeping"},
                                    "timeout": 10})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(SLOW_ACTIONS)
    script = f"""
import asyncio, gc, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from aiohttp import web_app
from aiohttp.test_utils import TestClient, TestServer
from bot.server import create_app

async def main():
    client = TestClient(TestServer(create_app({str(root)!r}, device="cpu")))
    await client.start_server()
    warmed = await client.post("/api/chat", json={{"conversation_id": "c1", "text": "/track_order"}})
    print((await warmed.json())["reply"])
    asleep = asyncio.ensure_future(client.post("/api/chat", json={{"conversation_id": "c2", "text": "/cancel_order"}}))
    await asyncio.sleep(0.5)
    await client.close()  # the server stops while one action sleeps and another's task runs on
    await asyncio.gather(asleep, return_exceptions=True)

asyncio.run(main())
web_app._cached_build_middleware.cache_clear()
gc.collect()
print("stopped")
"""
    done = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["warming", "up", "stopped"], done.stderr
    assert not any(said in done.stderr for said in ("ResourceWarning", "Task was destroyed", "Traceback")), done.stderr


async def test_closing_background_work_waits_for_what_it_spawns_meanwhile_then_cancels_the_rest() -> None:
    """An answer that hands on to another task (a notice, a delivery) during shutdown is neither left running
    against a closed session nor waited for past the grace."""
    tasks, finished = BackgroundTasks(), []

    async def step(name: str, seconds: float, then: tuple[str, float] | None = None) -> None:
        await asyncio.sleep(seconds)
        if then:
            tasks.spawn(step(*then))
        finished.append(name)

    tasks.spawn(step("answer", 0.05, ("notice", 0.05)))
    tasks.spawn(step("slow", 0.2, ("too late", 10)))
    started = time.monotonic()
    await tasks.close(grace=0.5)
    assert finished == ["answer", "notice", "slow"] and time.monotonic() - started < 2
    assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())


# --- a bad model never goes live ------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def wrong_manifest(version: Path) -> None:
    manifest = version / "index" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "dim": data["dim"] * 2}))


def nan_weight(version: Path) -> None:
    """One weight NaN in a layer int8 quantises, as a training run gone wrong would save it (its checksum
    matches)."""
    from safetensors.torch import load_file, save_file

    path = version / "classifier" / "encoder" / "model.safetensors"
    weights = load_file(path)
    name = next(n for n, w in weights.items() if n.endswith("intermediate.dense.weight"))
    weights[name][3, 5] = float("nan")
    save_file(weights, path, metadata={"format": "pt"})
    files = version / "classifier" / FILES
    saved = json.loads(files.read_text())
    saved["encoder/model.safetensors"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    files.write_text(json.dumps(saved))


def zero_tail(path: Path) -> None:
    """The last bytes of a file zeroed on disk, its size unchanged: the weights still load."""
    data = path.read_bytes()
    path.write_bytes(data[:-64] + bytes(64))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda v: truncate(v / "classifier" / "encoder" / "model.safetensors"), "cannot load the classifier"),
    (nan_weight, "the model's weights are not all numbers"),  # it served NaN confidences, which no JSON carries
    (lambda v: truncate(v / "classifier" / "head.safetensors"), "cannot load the classifier"),
    (lambda v: zero_tail(v / "classifier" / "head.safetensors"),
     "cannot load the classifier: ModelLoadError: head.safetensors changed on disk since it was saved"),
    (wrong_manifest, "cannot load the answer index"),
    # without them the encoder still loads, and reads every word as unknown
    (lambda v: [(v / "classifier" / "encoder" / name).unlink() for name in ("tokenizer.json", "tokenizer_config.json")],
     "cannot load the classifier: ModelLoadError: encoder/tokenizer.json is missing"),
    (lambda v: (v / "classifier" / "labels.json").write_text('{"labels": ["a"]}'),
     "cannot load the classifier: ModelLoadError: labels.json has 17 bytes, not the"),
    (lambda v: [(v / "classifier" / "labels.json").write_text('{"labels": ["a"]}'), (v / "classifier" / "files.json").unlink()],
     "cannot load the classifier: KeyError: 'scale'"),  # a folder saved before files.json was written
])
def test_a_corrupt_model_is_refused_at_start(tiny_demo_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              damage: Callable[[Path], None], message: str) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "broken", server={"inference": {"quantize": "int8"}})
    damage(root / "models" / "v0001")
    # A model let through fails the test here, where it would serve for good.
    monkeypatch.setattr("aiohttp.web.run_app", lambda *args, **kwargs: pytest.fail("a broken model was served"))
    result = CliRunner().invoke(cli, ["serve", str(root), "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
    # not 1, which systemd's Restart=on-failure restarts for ever: the unit's RestartPreventExitStatus=78 stops there
    assert result.exit_code == UNMENDABLE == 78
    assert message in result.output and "v0001" in result.output, result.output
    assert "Nothing to serve, which a restart does not mend: stopped with status 78" in result.output


@contextlib.contextmanager
def made_read_only(path: Path, command: list[str]) -> Iterator[list[str]]:
    """``command``, to run where ``path`` cannot be written: its write permissions taken away for the block, or, for
    root, whom they do not stop, behind a read-only bind mount of it in a mount namespace of the command's own."""
    if not os.geteuid():
        yield ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && '
               'exec "$@"', str(path), *command]
        return
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    try:
        yield command
    finally:
        path.chmod(mode)


def test_a_store_file_the_server_cannot_write_stops_it_for_good(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A dialogues.db this user may not write (its permissions, a read-only mount) exited with status 1, which a
    service manager restarted for ever, each start loading the model to be refused again."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    Store(root / "dialogues.db").close()
    serve = [sys.executable, "-m", "bot.cli", "serve", str(root), "--port", "0"]  # the store opens after the bind
    with made_read_only(root / "dialogues.db", serve) as command:
        refused = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)  # or it serves on
    assert refused.returncode == UNMENDABLE, refused.stderr
    said = " ".join(refused.stderr.split())
    assert (f"Error: {root / 'dialogues.db'}: cannot open it (attempt to write a readonly database): it must be a file "
            "this user can read and write, in a folder it can write (SQLite keeps its log beside it). A restart does "
            "not mend this: stopped with status 78 (docs/security.md)") in said, said
    assert "deskbot serving" not in said and "Traceback" not in said


def test_a_store_a_newer_deskbot_migrated_stops_the_server_for_good(tiny_demo_bot: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A deskbot gone back from an upgrade, on the store the newer one migrated, exited with status 1, which a
    service manager restarted for ever: only an upgrade, or the copy kept before it put back, mends it."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    store = Store(root / "dialogues.db")
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")  # as the newer deskbot's server left it
    store.close()
    monkeypatch.setattr("aiohttp.web.run_app", lambda *args, **kwargs: pytest.fail("a newer deskbot's store was served"))
    result = CliRunner().invoke(cli, ["serve", str(root), "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
    assert result.exit_code == UNMENDABLE, result.output
    assert (f"{root / 'dialogues.db'} was written by a newer deskbot (schema {len(MIGRATIONS) + 1}; this one reads up to "
            f"{len(MIGRATIONS)}): upgrade deskbot. A restart does not mend this: stopped with status 78 "
            "(docs/security.md)") in " ".join(result.output.split()), result.output


def test_the_serving_version_s_meta_json_is_read_once_at_start(tiny_demo_bot: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """It was read twice: once to load the model, once more for the history it was indexed with."""
    read, read_text = [], Path.read_text

    def counted(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == "meta.json":
            read.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    nlu = load_serving_model(load_project(tiny_demo_bot), "cpu")
    assert read == [tiny_demo_bot / "models" / "v0001" / "meta.json"]
    assert nlu.meta["history"]  # what the start checks history.jsonl against


@pytest.mark.parametrize("command", [["chat"], ["serve"], ["retrain"],
                                     ["eval", "--test", str(Path(__file__).parent.parent / "bot/demo/test.jsonl")]])
def test_commands_that_need_a_model_say_to_train_one_first(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "new-bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    result = CliRunner().invoke(cli, [command[0], str(root), *command[1:]], input="hello\n")
    assert result.exit_code == (UNMENDABLE if command == ["serve"] else 1) and "Traceback" not in result.output
    assert f"run `bot train {root}` first" in result.output, result.output  # the command, with its folder
    assert not (root / "dialogues.db").exists()  # nothing was opened or written for it


def test_benchmarks_and_settings_that_cannot_run_say_so_in_one_line(tiny_demo_bot: Path, tiny_model: Path,
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*args: str, code: int = 1) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == code and isinstance(result.exception, (SystemExit, type(None))), result.exception
        return result.output

    data = tmp_path / "four.jsonl"
    data.write_text("".join(json.dumps({"text": f"{word} {n}", "intent": word}) + "\n"
                            for word in ("refund", "order") for n in range(2)))
    assert "base model '/nowhere': no such folder" in run("bench", "intent", "--train", str(data), "--test", str(data),
                                                           "--model", "/nowhere")
    broken = shutil.copytree(tiny_model, tmp_path / "broken-model")
    with (broken / "model.safetensors").open("r+b") as weights:  # a copy cut short
        weights.truncate(500)
    assert f"base model '{broken}': cannot load it" in run("bench", "intent", "--train", str(data), "--test", str(data),
                                                           "--model", str(broken))
    assert "too few for 3 rounds" in run("bench", "learning", "--train", str(data), "--test", str(data),
                                         "--model", str(tiny_model), "--seed-shots", "2")
    assert "0 is not in the range x>=1" in run("bench", "retrieval", "--dim", "0", "--no-quality", code=2)
    # IVF settings for an index that is flat were ignored without a word
    assert "get an exact (flat) one: add --index-type ivf" in run("bench", "retrieval", "--n", "2000", "--nprobe", "3",
                                                                 "--no-quality")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DESKBOT_CACHE", str(tmp_path / "a-file"))
    assert "cannot write the model cache" in run("model", "prepare", "multilingual")
    monkeypatch.delenv("DESKBOT_CACHE")

    # Retrieval settings that cannot index the bot's answers stop `bot train` before it trains.
    root = configured_copy(tiny_demo_bot, tmp_path / "ivf", retrieval={"index_type": "ivf", "options": {"nlist": 1000}})
    started = time.monotonic()
    assert "an IVF index with nlist=1000 needs at least 39000 answers" in run("train", str(root), "--device", "cpu")
    assert time.monotonic() - started < 20 and [v.name for v in Registry(root / "models").versions()] == ["v0001"]

    manifest = root / "models" / "v0001" / "index" / "manifest.json"
    manifest.write_text('{"format": 1, "index_ty')  # cut short
    info = json.loads(run("info", str(root), code=0))
    assert "manifest.json cannot be read" in info["answer_index"]["error"]


def test_bot_info_shows_a_chinese_bots_name_as_written(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A shop named 中文商店 read "\\u4e2d\\u6587\\u5546\\u5e97" in `bot info`."""
    import yaml

    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    (root / "bot.yml").write_text(yaml.safe_dump({**yaml.safe_load((root / "bot.yml").read_text()), "name": "中文商店"},
                                                 allow_unicode=True))
    shown = CliRunner().invoke(cli, ["info", str(root)]).output
    assert '"bot": "中文商店"' in shown and json.loads(shown)["bot"] == "中文商店"


def test_bot_commands_name_a_conversation_in_the_log_as_its_server_does(tiny_demo_bot: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`bot chat` and `bot purge` tagged a conversation in their warnings by a key of their own process, not the
    store's that its server tags it by: the one on call could not follow it from one log to the other. A command that
    only reads the store reads the key, and makes none beside a store it may not own."""
    import secrets

    import dialogues.store as stored
    from dialogues.store import ledger_key

    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    Store(root / "dialogues.db").close()
    assert CliRunner().invoke(cli, ["stats", str(root)]).exit_code == 0
    assert not ledger_key(root / "dialogues.db").exists()
    server = Store(root / "dialogues.db")
    server.serve()
    tag = log_tag("web-3f9c2a")
    server.close()
    for command in (["chat", str(root), "--device", "cpu"], ["purge", str(root), "--before", "2001-01-01"],
                    ["stats", str(root)]):
        monkeypatch.setattr(stored, "_log_secret", secrets.token_bytes(32))  # a new process's own
        assert CliRunner().invoke(cli, command, input="hello\n").exit_code == 0, command
        assert log_tag("web-3f9c2a") == tag, command


def test_broken_model_folders_and_settings_get_one_line_errors(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """What a user can get wrong in the models folder or model.base ends in a message, not a traceback."""
    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # not a traceback
        return result.output

    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    (root / "models" / "CURRENT").write_text("v0005\n")  # a version deleted by hand
    assert f"{root / 'models' / 'CURRENT'} names 'v0005', but no model version 'v0005'" in run("info", str(root))
    listed = CliRunner().invoke(cli, ["models", str(root)])  # listed with no * and not a word why
    assert listed.exit_code == 0 and "v0001" in listed.output and "*" not in listed.output
    assert f"note: none of them serves: {root / 'models' / 'CURRENT'} names 'v0005'" in listed.output
    assert f"`bot rollback {root} VERSION`" in listed.output
    (root / "models" / "CURRENT").write_text("v0001\n")
    assert CliRunner().invoke(cli, ["chat", str(root), "--device", "cpu"], input="hello\n").exit_code == 0
    truncate(root / "models" / "v0001" / "classifier" / "head.safetensors")
    for command in (["review"], ["retrain", "--force"]):
        assert "cannot load the classifier" in run(command[0], str(root), *command[1:], "--device", "cpu")

    root = configured_copy(tiny_demo_bot, tmp_path / "frozen")
    frozen = root / "models" / "evaluation.jsonl"
    frozen.write_text(frozen.read_text() + "{half a line\n")
    lines = len(frozen.read_text().splitlines())
    assert f"evaluation.jsonl:{lines}: expected a JSON object" in run("train", str(root), "--device", "cpu")

    root = configured_copy(tiny_demo_bot, tmp_path / "typo", model={"base": str(tmp_path / "no-such-model")})
    assert "base model" in run("train", str(root), "--device", "cpu")
    (tmp_path / "a-file").write_text("")
    assert "cannot create the bot in" in run("init", str(tmp_path / "a-file" / "bot"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "hi", "intent": "greet"}\n{"text": "bye", "intent": "goodbye"}\n')
    assert "cannot create the bot in" in run("init", str(tmp_path / "a-file" / "bot"), "--from-jsonl", str(rows))


# An action class, its name() (NAMED, or none) and the domain argument of its run (", domain", or none) to be filled in
UNREGISTRABLE = """from rasa_sdk import Action


class Lookup(Action):NAME
    def run(self, dispatcher, trackerDOMAIN):
        return []
"""
NAMED = """
    def name(self):
        return "action_lookup"
"""


@pytest.mark.parametrize(("source", "problem"), [
    ("def lookup(:\n", "broken.py:1: cannot load the custom actions: SyntaxError: invalid syntax"),
    ("import json\nimport orders_api_client\n", "broken.py:2: cannot load the custom actions: ModuleNotFoundError: "
                                                 "No module named 'orders_api_client'"),
    ("import json\n\nRATES = json.loads('{')\n", "broken.py:3: cannot load the custom actions: JSONDecodeError: "),
    ("import sys\n\nsys.exit(3)\n", "broken.py:3: cannot load the custom actions: SystemExit: 3"),  # it ended bot silently
    # what rasa-sdk finds wrong in a class as it registers it, which was a traceback naming neither class nor file
    (UNREGISTRABLE.replace("NAME", "").replace("DOMAIN", ", domain"),
     "broken.py:4: cannot load the custom actions: class Lookup: NotImplementedError: An action must implement a name"),
    (UNREGISTRABLE.replace("NAME", NAMED).replace("DOMAIN", ""),
     "broken.py:4: cannot load the custom actions: class Lookup: Exception: You can only register functions that take "
     "3 parameters"),
    (UNREGISTRABLE.replace("NAME", NAMED.replace('"action_lookup"', "self.action_name")).replace("DOMAIN", ", domain"),
     "broken.py:6: cannot load the custom actions: class Lookup: AttributeError: 'Lookup' object has no attribute "
     "'action_name'"),
])
@pytest.mark.parametrize("command", ["serve", "chat"])
def test_a_custom_action_that_cannot_load_is_named(tiny_demo_bot: Path, tmp_path: Path, source: str, problem: str,
                                                   command: str) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "actions")
    (root / "actions" / "broken.py").write_text(source)
    port = ["--port", "0"] if command == "serve" else []  # not 8080, which the shop's own bot may be serving on
    result = CliRunner().invoke(cli, [command, str(root), "--device", "cpu", *port], input="where is my order?\n")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert problem in result.output, result.output


@pytest.mark.parametrize(("device", "problem"), [
    ("banana", "'banana' is not a torch device; use cpu or cuda"),
    ("mps", "'mps': deskbot runs on cpu or cuda"),  # a torch device name: a traceback in training or loading before
    pytest.param("cuda", "'cuda': torch sees no CUDA GPU here", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has the GPU the message is about")),
])
@pytest.mark.parametrize("command", ["train", "serve", "chat"])
def test_a_device_this_machine_lacks_is_refused_before_any_work(tiny_demo_bot: Path, tmp_path: Path, device: str,
                                                                problem: str, command: str) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "device")
    result = CliRunner().invoke(cli, [command, str(root), "--device", device])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert problem in result.output, result.output
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(
        p.name for p in (tiny_demo_bot / "models").iterdir())  # no staging folder, no new version


def taken_over(root: Path) -> bool:
    """Whether a server has taken over the Slack message a stopped one kept."""
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as db:
        return bool(db.execute("SELECT count(*) FROM pending WHERE channel = 'slack' AND owner IS NOT NULL").fetchone()[0])


def test_serve_on_port_0_says_the_port_it_got(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """It said http://127.0.0.1:0, which nobody can open."""
    import re
    import urllib.request

    root = configured_copy(tiny_demo_bot, tmp_path / "any-port",
                           channels={"slack": {"signing_secret": "s", "bot_token": "xoxb-t", "api_url": "http://127.0.0.1:9/"}})
    kept = Store(root / "dialogues.db")  # by a server from before servers had names, gone a while
    kept.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "where is my refund?", {})
    kept.receive("wecom:1", "wecom:ww1:chen", "wecom", "chen", "我的包裹呢", {})  # a channel this server lacks
    kept.db.execute("UPDATE pending SET received = received - ?", [UNOWNED_GRACE_S + 1])
    kept.close()
    server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", str(root), "--port", "0", "--device", "cpu"],
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        said, lines = "", []
        while "deskbot serving" not in said and server.poll() is None:
            said = server.stderr.readline()  # type: ignore[union-attr]
            lines.append(said)
        # What it serves, at a glance: the model version and the channels on (Slack's secrets are set, WeCom's not).
        url = re.search(r"deskbot serving Demo Shop \(model v0001; channels: web, slack\) on (http://127\.0\.0\.1:(\d+))$",
                        said.strip())
        assert url is not None and int(url[2]) > 0, said
        with urllib.request.urlopen(f"{url[1]}/healthz", timeout=30) as health:
            assert health.status == 200
        # A request its client broke is one INFO line, with the time: bot serve set up no logging, so Python's
        # last-resort handler dropped every INFO line and printed the rest bare.
        with socket.create_connection(("127.0.0.1", int(url[2]))) as broken:
            broken.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
            assert b" 400 " in broken.recv(100)
        deadline = time.monotonic() + 60  # the kept message is taken over in the background, after the start
        while time.monotonic() < deadline and not taken_over(root):
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stopping = time.monotonic()
        server.terminate()
        server.wait(timeout=60)
    # at once: Python's teardown of the models' objects held a restart up 3 to 6 s after the server had stopped
    assert server.returncode == 0 and time.monotonic() - stopping < 3
    logged = "".join(lines) + server.stderr.read()  # type: ignore[union-attr]
    # (what aiohttp quotes of the broken line is redacted: a line without a header's name may be a pasted token)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO aiohttp.server: .* 400, .*\[redacted\]", logged, re.M), logged
    assert " INFO deskbot: answering a slack message a stopped server acknowledged" in logged, logged
    assert (" WARNING deskbot: 1 wecom message kept in the store waits for a server with the wecom channel, which this "
            "one does not serve") in logged, logged  # not left to wait unsaid
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO deskbot.serve: deskbot stopped$", logged, re.M), logged  # with the time
    result = CliRunner().invoke(cli, ["serve", str(root), "--port", "0"], env={"DESKBOT_LOG_LEVEL": "verbose"})
    assert result.exit_code == 1 and "DESKBOT_LOG_LEVEL='verbose': expected one of DEBUG, INFO, WARNING, ERROR" in result.output


def caught_signals(pid: int) -> int:
    """The signals process ``pid`` has a handler for, as a bit mask (bit n-1 for signal n)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)


@pytest.mark.skipif(shutil.which("unshare") is None or not Path("/proc/self/status").exists(), reason="Linux unshare")
def test_sigterm_stops_a_container_s_first_process_while_it_starts(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """As a container's first process (PID 1), which the system gives no default action, bot serve ignored a
    SIGTERM until its model had loaded and its port served: `docker stop` waited out its 10 s, the server
    starting to serve meanwhile, then killed it."""
    import signal

    root = configured_copy(tiny_demo_bot, tmp_path / "first")
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("no PID namespace for this user")
    container = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-m", "bot.cli", "serve", str(root),
                                  "--port", "0", "--device", "cpu"], stderr=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 30
        first = None  # the server, PID 1 inside: unshare's child
        while first is None or not caught_signals(first) & 1 << (signal.SIGTERM - 1):
            assert time.monotonic() < deadline and container.poll() is None, "bot serve never caught SIGTERM"
            children = Path(f"/proc/{container.pid}/task/{container.pid}/children").read_text().split()
            first = int(children[0]) if children else None
            time.sleep(0.01)
        stopping = time.monotonic()
        subprocess.run(["kill", "-TERM", str(first)], check=True)  # as from outside the container
        container.wait(timeout=30)
        said = container.stderr.read()  # type: ignore[union-attr]
    finally:
        container.kill()
    assert time.monotonic() - stopping < 10 and "deskbot serving" not in said, said  # within docker stop's 10 s


async def test_a_read_only_bot_folder_is_served_with_its_store_on_a_volume_of_its_own(
        tiny_demo_bot: Path, tmp_path: Path, nlu: NLU, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container mounts the bot folder read-only and gives the server a data volume: the store was always the bot
    folder's dialogues.db. DESKBOT_STORE_DIR (over bot.yml's store_dir) keeps it, and the servers' lock files, there,
    for every command: a cron job's `bot purge` finds what the server recorded."""
    root, data = configured_copy(tiny_demo_bot, tmp_path / "config"), tmp_path / "data"
    data.mkdir()
    (root / "bot.yml").write_text((root / "bot.yml").read_text() + "store_dir: in-the-folder\n")
    monkeypatch.setenv("DESKBOT_STORE_DIR", str(data))
    client = await aiohttp_client(create_app(root, device="cpu", nlu=nlu))
    reply = await client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order?"})
    assert reply.status == 200
    assert (data / "dialogues.db").is_file() and (data / ".dialogues.db.servers").is_dir()
    assert not list(root.glob("*dialogues.db*")) and not (root / "in-the-folder").exists()
    await client.close()
    purged = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])
    assert purged.exit_code == 0, purged.output
    with sqlite3.connect(data / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM turns").fetchone() == (0,)
    monkeypatch.delenv("DESKBOT_STORE_DIR")  # bot.yml's, read from the bot's folder
    assert load_project(root).db_path == root / "in-the-folder" / "dialogues.db"


def test_a_store_folder_the_server_cannot_write_is_refused_before_anything_starts(tiny_demo_bot: Path,
                                                                                  tmp_path: Path) -> None:
    """A bot folder mounted read-only was refused only once its model had loaded, in SQLite's words ("unable to open
    database file"), and a store folder naming a volume that was not mounted would have been made in the container's
    own layer, lost with it. Both are refused at once, naming the folder and the setting that moves the store."""
    root = configured_copy(tiny_demo_bot, tmp_path / "config")
    taken = socket.create_server(("127.0.0.1", 0))  # where a server not refused stops instead of serving on
    port = str(taken.getsockname()[1])
    missing = CliRunner().invoke(cli, ["serve", str(root), "--port", port], env={"DESKBOT_STORE_DIR": str(tmp_path / "data")})
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert f"DESKBOT_STORE_DIR names {tmp_path / 'data'}, which is no folder: create it, or mount the volume there" \
        in missing.output
    # Mounted read-only, as a container's configuration is (root ignores a folder's permissions, not a mount's)
    serve = [sys.executable, "-m", "bot.cli", "serve", str(root), "--port", port]
    with taken, made_read_only(root, serve) as command:
        refused = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert refused.returncode == UNMENDABLE, refused.stderr  # a restart does not mend it: systemd stops there
    assert f"Error: {root}: cannot write there (" in refused.stderr
    assert ("where the conversation store dialogues.db is kept: make the folder writable for this user, or put the "
            "store on a writable volume: DESKBOT_STORE_DIR=/data in the environment, or store_dir: /data in bot.yml "
            "(docs/configuration.md). A restart does not mend this: stopped with status 78") in refused.stderr
    assert "deskbot serving" not in refused.stderr and not list(root.glob("*dialogues.db*"))


def test_a_store_moved_by_its_setting_is_not_begun_anew_beside_the_one_the_bot_folder_holds(tiny_demo_bot: Path,
                                                                                            tmp_path: Path) -> None:
    """DESKBOT_STORE_DIR set on a bot that had served from its folder began an empty store there: the conversations,
    the review queue and the customers waiting for a person stayed behind, unserved, without a word."""
    root, data = configured_copy(tiny_demo_bot, tmp_path / "bot"), tmp_path / "data"
    data.mkdir()
    Store(root / "dialogues.db").receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "where is my refund?", {})
    with socket.socket() as taken:  # where a server not refused stops instead of serving on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        serve = ["serve", str(root), "--port", str(taken.getsockname()[1])]
        refused = CliRunner().invoke(cli, serve, env={"DESKBOT_STORE_DIR": str(data)})
        assert refused.exit_code == 1 and not list(data.iterdir())
        assert (f"{root / 'dialogues.db'} holds this bot's conversations, and DESKBOT_STORE_DIR keeps the store in "
                f"{data}, where there is none yet: with no server running, move it there (mv {root / 'dialogues.db'}* "
                f"{data}/), or unset DESKBOT_STORE_DIR to serve it where it is") in refused.output
        chat = CliRunner().invoke(cli, ["chat", str(root)], input="hello\n", env={"DESKBOT_STORE_DIR": str(data)})
        assert chat.exit_code == 1 and "holds this bot's conversations" in chat.output and not list(data.iterdir())
        for path in root.glob("dialogues.db*"):
            path.rename(data / path.name)
        moved = CliRunner().invoke(cli, serve, env={"DESKBOT_STORE_DIR": str(data)})
    assert "cannot serve on" in moved.output and "holds this bot's conversations" not in moved.output


def test_bot_serve_notes_a_store_on_a_network_file_system(tiny_demo_bot: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers on two machines writing one store on a volume both mount (NFS, a ReadWriteMany claim) damage it, which
    nothing said until a request met a damaged page: `bot serve` notes such a folder as it starts."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    monkeypatch.setattr("dialogues.disk.network_filesystem", lambda folder: "nfs4" if folder == root else None)
    with socket.socket() as taken:  # stopped at the port, once the notes are said
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        said = CliRunner().invoke(cli, ["serve", str(root), "--port", str(taken.getsockname()[1])]).output
    assert (f"note: {root} is on a network file system (nfs4): SQLite keeps a store safe only between processes on one "
            "machine, so serve dialogues.db from one machine alone") in said


def test_a_taken_port_is_refused_with_a_clear_error_and_nothing_done(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A second server that failed on the port had first answered the Slack message the running one kept
    for a turn in flight: the customer got two answers."""
    root = configured_copy(tiny_demo_bot, tmp_path / "second",
                           channels={"slack": {"signing_secret": "s", "bot_token": "xoxb-t", "api_url": "http://127.0.0.1:9/"}})
    Store(root / "dialogues.db").receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "where is my refund?", {})
    with socket.socket() as taken:  # another bot, or anything else, already listening there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(root), "--port", str(port), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use: is the bot already running?" in result.output
    with sqlite3.connect(root / "dialogues.db") as db:  # still kept, for the running server to answer
        assert db.execute("SELECT text FROM pending WHERE answered IS NULL").fetchall() == [("where is my refund?",)]
    # Served without an admin token, nobody could answer a handed-off customer: it says so at start.
    assert "note: no admin token" in result.output and "server.limits.websockets" not in result.output
    with_token = configured_copy(tiny_demo_bot, tmp_path / "third", server={"admin_token": "t", "metrics_token": "m",
                                                                            "limits": {"websockets": 10**9}},
                                 channels={"web": {"identity_secret": "shop-secret"}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(cli, ["serve", str(with_token), "--port", str(taken.getsockname()[1])])
        guessable = result.output
        long_token = CliRunner().invoke(cli, ["serve", str(with_token), "--port", str(taken.getsockname()[1])],
                                        env={"DESKBOT_ADMIN_TOKEN": "Zq8-rT2w_Lm4Vn7P", "DESKBOT_METRICS_TOKEN": "x7" * 8,
                                             "DESKBOT_WEB_IDENTITY_SECRET": "x3" * 16})
    assert result.exit_code == 1 and "no admin token" not in result.output
    assert "deskbot serving" not in result.output  # announced only once the port is bound
    # A token that short is found by trying: each address may guess failed_auth_per_ip_per_minute times a minute.
    assert "note: the admin token is 1 character long: anyone who reaches the server from many addresses can try" in guessable
    assert "note: the metrics token is 1 character long: anyone who reaches the server from many addresses can try" in guessable
    assert long_token.exit_code == 1 and "note: the admin token" not in long_token.output
    assert "note: the metrics token" not in long_token.output
    # Agents' own tokens open the console without the admin token, each checked as it is.
    agents = configured_copy(tiny_demo_bot, tmp_path / "agents", server={"agents": {
        "Ana": {"token": "ana-t"}, "Bob": {"token_env": "DESKBOT_TOKEN_BOB"}}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        said = CliRunner().invoke(cli, ["serve", str(agents), "--port", str(taken.getsockname()[1])],
                                  env={"DESKBOT_TOKEN_BOB": ""}).output
    assert "no admin token" not in said and "note: agent Bob has no token (server.agents.Bob): they cannot sign in" in said
    assert "note: the token of agent Ana is 5 characters long: anyone who reaches the server from many addresses can try" in said
    # A customer holds their id and its hash, and may try secrets against them offline, with no limit to count them.
    assert "note: the web identity secret is 11 characters long: a signed-in customer" in guessable
    assert "identity secret" not in long_token.output
    # More sockets allowed than files the process may open: they could take every one, the store's too.
    assert "note: server.limits.websockets is 1,000,000,000, and this process may open" in guessable


@pytest.mark.parametrize("where", ["README.md", "bot serve --help"])
def test_the_readmes_token_for_the_agents_side_is_one_bot_serve_takes_without_a_note(where: str) -> None:
    """The README served the demo with DESKBOT_ADMIN_TOKEN=choose-one, which `bot serve` said could be guessed; `bot
    serve --help` still gave that example."""
    text = (REPO / where).read_text() if where == "README.md" else CliRunner().invoke(cli, ["serve", "--help"]).output
    assert all(len(token) >= serving.MIN_TOKEN_CHARS for token in re.findall(r"DESKBOT_ADMIN_TOKEN=([^\s$`]+)", text))
    made = re.search(r"DESKBOT_ADMIN_TOKEN=\$\((.+?)\);", text)
    assert made is not None, f"{where} shows how to make one"
    token = subprocess.run(["bash", "-c", made.group(1)], capture_output=True, text=True, check=True).stdout.strip()
    assert len(token) >= serving.MIN_TOKEN_CHARS


def test_serve_says_when_metrics_answer_anyone_on_a_public_address(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Served on every address without a metrics token, /metrics told anyone the traffic, the customers waiting and the
    process's memory and open files (how far a flood has got), and nothing said so at start."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    guarded = configured_copy(tiny_demo_bot, tmp_path / "guarded", server={"metrics_token": "Zq8-rT2w_Lm4Vn7P-long-enough"})
    with socket.socket() as taken:  # refused at the port, after the notes
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        public = CliRunner().invoke(cli, ["serve", str(root), "--host", "0.0.0.0", "--port", port]).output
        local = CliRunner().invoke(cli, ["serve", str(root), "--port", port]).output  # bot.yml's 127.0.0.1
        scraped_with_a_token = CliRunner().invoke(cli, ["serve", str(guarded), "--host", "0.0.0.0", "--port", port]).output
    assert ("note: no metrics token (DESKBOT_METRICS_TOKEN or server.metrics_token), and 0.0.0.0 is no loopback "
            "address: /metrics tells anyone who reaches it") in public
    assert "no metrics token" not in local and "no metrics token" not in scraped_with_a_token


def test_serve_says_which_addresses_deskbot_would_send_to_unencrypted(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A mistyped http:// in Slack's or WeCom's api_url, the handoff webhook or the action server sent tokens, secrets
    and customers' words over the network in the clear, and nothing said so. http:// to this machine (a local test
    server) is not a mistake, and https:// none either."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot",
                           handoff={"notify_url": "http://hooks.example.com/T0/B1?token=webhook-secret"},
                           actions={"endpoint": "http://actions.internal:5055/webhook"},
                           channels={"slack": {"api_url": "http://127.0.0.1:9/"}})
    local = configured_copy(tiny_demo_bot, tmp_path / "local", handoff={"notify_url": "https://hooks.example.com/T0"},
                            actions={"endpoint": "http://localhost:5055/webhook"},
                            channels={"wecom": {"api_url": "http://[::1]:9/cgi-bin/"}})
    with socket.socket() as taken:  # refused at the port, after the notes
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said = CliRunner().invoke(cli, ["serve", str(root), "--port", port],
                                  env={"DESKBOT_WECOM_API_URL": "http://qyapi.example.com/cgi-bin/"}).output
        quiet = CliRunner().invoke(cli, ["serve", str(local), "--port", port], env={"DESKBOT_WECOM_API_URL": ""}).output
    unencrypted = "plain http:// to another machine: what deskbot sends there (a token, a customer's words) crosses the " \
                  "network unencrypted; write https://"
    assert f"note: handoff.notify_url is http://hooks.example.com/T0/B1, {unencrypted}" in said
    assert f"note: actions.endpoint is http://actions.internal:5055/webhook, {unencrypted}" in said
    assert (f"note: channels.wecom.api_url (or DESKBOT_WECOM_API_URL) is http://qyapi.example.com/cgi-bin/, "
            f"{unencrypted}") in said
    assert said.count("plain http://") == 3 and "webhook-secret" not in said  # not Slack's, on 127.0.0.1
    assert "plain http://" not in quiet


def test_serve_says_when_every_account_can_read_the_secrets_in_bot_yml(tiny_demo_bot: Path, tmp_path: Path,
                                                                        common_umask: None) -> None:
    """A bot.yml made before `bot init` made it for its owner alone, or copied with the umask's mode, showed the
    admin token and the channels' keys to every account on the machine, and nothing said so."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "Zq8-rT2w_Lm4Vn7P-long-enough"},
                           channels={"slack": {"signing_secret": "s" * 32, "bot_token": "xoxb-t", "api_url": "http://127.0.0.1:9/"}})
    (root / "bot.yml").chmod(0o644)
    with socket.socket() as taken:  # refused at the port, after the notes
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        readable = CliRunner().invoke(cli, ["serve", str(root), "--port", str(taken.getsockname()[1])]).output
        (root / "bot.yml").chmod(0o640)  # a group the service runs in may read it
        private = CliRunner().invoke(cli, ["serve", str(root), "--port", str(taken.getsockname()[1])]).output
    assert (f"note: {root / 'bot.yml'} holds server.admin_token, channels.slack.signing_secret, channels.slack.bot_token, "
            f"and every account on this machine can read it: chmod 600 {root / 'bot.yml'}") in readable
    assert "every account" not in private


async def test_a_corrupt_model_at_reload_leaves_the_old_one_serving(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    models = client.app[BOT].project.models_dir
    admin = {"Authorization": "Bearer t0ken"}
    for name, damage in (("v0002", wrong_manifest), ("v0003", lambda v: truncate(v / "classifier" / "encoder" / "model.safetensors"))):
        shutil.copytree(models / "v0001", models / name)
        damage(models / name)
        (models / "CURRENT").write_text(name + "\n")
        response = await client.post("/admin/reload", headers=admin)
        body = await response.json()
        assert response.status == 409 and body["model_version"] == "v0001" and name in body["error"]
        assert (await (await client.get("/healthz")).json())["model_version"] == "v0001"
        reply = await chat(client, cid(), "/check_refund_policy")
        assert reply.status == 200 and (await reply.json())["source"] == "template"
        # Said in the log, as the watcher says its refusals: the one on call may not be the one who reloaded.
        refused = [r for r in caplog.records if r.name == "deskbot" and r.levelno == logging.ERROR]
        assert refused[-1].getMessage() == f"reload by the admin token refused, still serving v0001: {body['error'].removeprefix('reload refused: ')}"
    assert len(refused) == 2 and all(r.exc_info is None for r in refused)
    (models / "CURRENT").write_text("v0001\n")
    assert (await client.post("/admin/reload", headers=admin)).status == 200
    assert caplog.records[-1].getMessage() == ("reloaded by the admin token: now serving model v0001 with the bot's files as "
                                                "they are now")


async def test_a_reload_that_read_current_as_a_retrain_replaced_and_pruned_it_serves_the_version_now_named(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload read models/CURRENT, and as it loaded the version named there, a retrain (or a rollback) made another
    serve and its prune (learning.keep_served, `bot models --prune`) deleted the one read: the reload was refused with
    the model "missing", while the version CURRENT names loaded. It reads CURRENT again and serves that one."""
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    models = client.app[BOT].project.models_dir
    for name in ("v0002", "v0003"):
        shutil.copytree(models / "v0001", models / name)
    (models / "CURRENT").write_text("v0002\n")
    load = serving.load_version

    def replaced_as_it_loads(project: Any, path: Path, *args: Any) -> NLU:
        if path.name == "v0002":
            Registry(models).promote("v0003")
            shutil.rmtree(path)
        return load(project, path, *args)

    monkeypatch.setattr(serving, "load_version", replaced_as_it_loads)
    response = await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert response.status == 200 and (await response.json())["model_version"] == "v0003"
    shutil.rmtree(models / "v0003")  # a version gone for good, CURRENT still naming it: refused, v0003 serves on
    response = await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert response.status == 409 and (await response.json())["model_version"] == "v0003"


def test_a_server_that_starts_as_a_retrain_replaces_and_prunes_its_version_serves_the_one_now_named(
        tiny_demo_bot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A server started (or restarted by a SIGHUP under systemd) as a retrain made another version serve and pruned
    the one it read in CURRENT: it served an older version instead, "SERVING v0001 INSTEAD" in its log, while the
    version CURRENT names loaded. It reads CURRENT again and serves that one."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    models = root / "models"
    registry = Registry(models)
    for name in ("v0002", "v0003"):
        shutil.copytree(models / "v0001", models / name)
        registry.record({"event": "trained", "version": name, "promoted": True})
    registry.promote("v0002")
    load = serving.load_version

    def replaced_as_it_loads(project: Any, path: Path, *args: Any) -> NLU:
        if path.name == "v0002":
            registry.promote("v0003")
            shutil.rmtree(path)
        return load(project, path, *args)

    monkeypatch.setattr(serving, "load_version", replaced_as_it_loads)
    caplog.set_level(logging.WARNING, logger="deskbot")
    assert load_at_start(load_project(root), "cpu").version == "v0003"
    assert "INSTEAD" not in caplog.text


async def test_a_reload_refuses_a_store_dir_change_and_the_store_open_serves_on(make_client: Callable[..., Any]) -> None:
    """A reload took bot.yml's new store_dir: the server went on writing the store it had open while what a swap reads
    of the store came from the new one. Refused, with why, and bot.yml as it was serves until a restart."""
    import yaml

    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    admin = {"Authorization": "Bearer t0ken"}
    bot = client.app[BOT]
    store = bot.store.path
    bot_yml = bot.project.root / "bot.yml"
    (bot.project.root / "data").mkdir()
    config = yaml.safe_load(bot_yml.read_text())
    bot_yml.write_text(yaml.safe_dump({**config, "store_dir": "data"}, allow_unicode=True))
    response = await client.post("/admin/reload", headers=admin)
    assert response.status == 409
    assert (f"bot.yml now keeps the conversation store at {bot.project.root / 'data' / 'dialogues.db'}, and this "
            f"server writes {store}: a store moves only with a restart") in (await response.json())["error"]
    assert bot.project.db_path == bot.store.path == store and bot.config.store_dir is None
    reply = await chat(client, cid(), "hello")
    assert reply.status == 200
    bot_yml.write_text(yaml.safe_dump(config, allow_unicode=True))
    assert (await client.post("/admin/reload", headers=admin)).status == 200


async def test_the_watcher_says_a_new_version_waits_for_the_restart_a_changed_store_dir_needs(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A retrain whose bot.yml moved the store (``store_dir``) was logged as "model v0002 refused": the one on call
    looked for what was wrong with the model, when the store's move alone held it back, until a restart."""
    import yaml

    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    bot = client.app[BOT]
    models, bot_yml = bot.project.models_dir, bot.project.root / "bot.yml"
    (bot.project.root / "data").mkdir()
    bot_yml.write_text(yaml.safe_dump({**yaml.safe_load(bot_yml.read_text()), "store_dir": "data"}))
    shutil.copytree(models / "v0001", models / "v0002")
    with caplog.at_level("ERROR", logger="deskbot"):
        (models / "CURRENT").write_text("v0002\n")
        for _ in range(600):
            if "v0002" in caplog.text:
                break
            await asyncio.sleep(0.05)
    said = [record.getMessage() for record in caplog.records if "v0002" in record.getMessage()]
    assert said and said[0].startswith("model v0002 waits for a restart of the server, which bot.yml's changed store "
                                       "folder needs; still serving v0001: store_dir: ")
    assert "refused" not in said[0] and bot.nlu.version == "v0001"


async def test_a_reload_names_what_takes_a_restart(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A reload after bot.yml's server: or privacy: changed answered 200 as if it had applied them; the admin token
    and redaction stayed as at start, with nothing to say so. An action file broken meanwhile is named, and the
    actions loaded before run on."""
    import yaml

    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    admin = {"Authorization": "Bearer t0ken"}
    assert await (await client.post("/admin/reload", headers=admin)).json() == {"model_version": "v0001",
                                                                                "restart_needed": []}
    bot_yml = client.app[BOT].project.root / "bot.yml"
    config = yaml.safe_load(bot_yml.read_text())
    config["server"]["admin_token"] = "new-token"
    config["privacy"] = {"keep_raw": True}
    config["thresholds"]["intent"] = 0.99  # a reply setting: served from the reload on
    bot_yml.write_text(yaml.safe_dump(config, allow_unicode=True))
    with (bot_yml.parent / "actions" / "orders.py").open("a") as action:
        action.write("\ndef broken(:\n")
    response = await client.post("/admin/reload", headers=admin)
    assert response.status == 200
    assert (await response.json())["restart_needed"] == ["server", "privacy"]
    assert "changed since the start, and applied only by a restart: server, privacy (bot.yml" in caplog.text
    assert "orders.py" in (await response.json())["actions_not_reloaded"]
    assert client.app[BOT].config.thresholds.intent == 0.99
    assert (await client.post("/admin/reload", headers={"Authorization": "Bearer new-token"})).status == 401


HELLO_ACTION = """
from rasa_sdk import Action


class Hello(Action):
    def name(self):
        return "action_hello"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text={text!r})
        return []
"""

ADMIN = {"Authorization": "Bearer t0ken"}


async def hello_mapped(make_client: Callable[..., Any], text: str) -> tuple[Any, Path]:
    """A client of a bot whose actions/hello.py says ``text``, which bot.yml's map runs for check_refund_policy once
    it is reloaded (its admin token ``ADMIN``'s), and that file."""
    import yaml

    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    root = client.app[BOT].project.root
    hello = root / "actions" / "hello.py"
    hello.write_text(HELLO_ACTION.format(text=text))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["actions"]["map"]["check_refund_policy"] = "action_hello"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return client, hello


async def test_a_reload_brings_the_actions_as_they_are_now_and_keeps_the_last_good_ones_when_they_break(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A new or edited action in actions/ took a restart: a reload whose action map named it was refused, and an
    edited one ran as it was. Code that fails to import leaves the actions loaded before running, with the file and
    line at fault in the log and in the reload's answer: a restart would not start at all."""
    client, hello = await hello_mapped(make_client, "Hello from the new action.")
    response = await client.post("/admin/reload", headers=ADMIN)
    assert response.status == 200 and "actions_not_reloaded" not in await response.json()
    reply = await (await chat(client, cid(), "/check_refund_policy")).json()
    assert (reply["source"], reply["reply"]) == ("action", "Hello from the new action.")

    hello.write_text(HELLO_ACTION.format(text="Hello again.") + "\ndef broken(:\n")
    response = await client.post("/admin/reload", headers=ADMIN)
    assert response.status == 200 and f"{hello}:13" in (await response.json())["actions_not_reloaded"]
    assert f"actions/ not reloaded: {hello}:13: cannot load the custom actions" in caplog.text
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello from the new action."
    # a class rasa-sdk cannot register (a run without domain) failed the whole reload with rasa-sdk's traceback
    hello.write_text(HELLO_ACTION.format(text="Hello again.").replace(", domain)", ")"))
    response = await client.post("/admin/reload", headers=ADMIN)
    assert response.status == 200 and f"{hello}:5: cannot load the custom actions: class Hello: Exception: You can " \
        "only register functions that take 3 parameters" in (await response.json())["actions_not_reloaded"]
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello from the new action."

    hello.write_text(HELLO_ACTION.format(text="Hello, mended."))
    assert "actions_not_reloaded" not in await (await client.post("/admin/reload", headers=ADMIN)).json()
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello, mended."


async def test_the_watcher_tries_a_refused_version_again_once_current_is_written_again(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A version refused once was never tried again under its name: mended, and rolled back to, it still did
    not serve. And a swap loaded the model on torch's choice of device, not on `bot serve --device`'s."""
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    models = client.app[BOT].project.models_dir
    devices: list[str | None] = []
    load = serving.load_serving_model
    monkeypatch.setattr(serving, "load_serving_model", lambda project, device=None: devices.append(device) or load(
        project, device))
    shutil.copytree(models / "v0001", models / "v0002")
    wrong_manifest(models / "v0002")
    (models / "CURRENT").write_text("v0002\n")
    for _ in range(600):  # until the load has failed: on a busy machine it outlasts the waits below
        if "model v0002 refused" in caplog.text:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a few rounds more: refused once, not tried again
    assert len(devices) == 1 and client.app[BOT].nlu.version == "v0001"
    shutil.rmtree(models / "v0002")
    shutil.copytree(models / "v0001", models / "v0002")  # mended
    Registry(models).rollback("v0002")
    for _ in range(100):
        if client.app[BOT].nlu.version == "v0002":
            break
        await asyncio.sleep(0.05)
    assert client.app[BOT].nlu.version == "v0002" and devices == ["cpu", "cpu"]



async def test_the_watcher_tries_a_refused_version_again_once_the_actions_are_mended(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A retrain whose bot.yml maps an intent to a new action, while that action's file does not import, is refused:
    mending the file alone left the new version unserved until CURRENT or a bot file changed again."""
    import yaml

    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    bot = client.app[BOT]
    models, root = bot.project.models_dir, bot.project.root
    hello = root / "actions" / "hello.py"
    hello.write_text(HELLO_ACTION.format(text="Hello.") + "\ndef broken(:\n")
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["actions"]["map"]["check_refund_policy"] = "action_hello"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    shutil.copytree(models / "v0001", models / "v0002")
    (models / "CURRENT").write_text("v0002\n")
    for _ in range(600):
        if "model v0002 refused" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "model v0002 refused" in caplog.text and bot.nlu.version == "v0001"
    hello.write_text(HELLO_ACTION.format(text="Hello, mended."))
    for _ in range(200):
        if bot.nlu.version == "v0002":
            break
        await asyncio.sleep(0.05)
    assert bot.nlu.version == "v0002"
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello, mended."


async def test_the_watcher_follows_watch_seconds_as_a_reload_changes_it(make_client: Callable[..., Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """learning.watch_seconds was read once, at start: 0 there, a reload that set it never started the
    watcher, and `bot rollback`, which promises bot.yml's interval, waited for a restart."""
    import yaml

    monkeypatch.setattr(serving, "WATCH_OFF_S", 0.1, raising=False)
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    bot = client.app[BOT]
    models, bot_yml = bot.project.models_dir, bot.project.root / "bot.yml"

    async def serves(version: str) -> bool:
        for _ in range(60):
            if bot.nlu.version == version:
                return True
            await asyncio.sleep(0.05)
        return False

    async def reload_with(watch_seconds: float) -> None:
        config = yaml.safe_load(bot_yml.read_text())
        config["learning"]["watch_seconds"] = watch_seconds
        bot_yml.write_text(yaml.safe_dump(config))
        assert (await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})).status == 200

    for name in ("v0002", "v0003"):
        shutil.copytree(models / "v0001", models / name)
    Registry(models).promote("v0002")
    assert not await serves("v0002")  # 0: it does not look
    await reload_with(0.1)  # which serves v0002 itself, and sets the watcher going
    Registry(models).promote("v0003")
    assert await serves("v0003")
    await reload_with(0)
    Registry(models).promote("v0001")
    assert not await serves("v0001")  # stopped again

async def test_the_watcher_does_not_load_again_a_version_a_reload_swapped_to_meanwhile(
        make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Both saw the new CURRENT; the watcher waited for the reload's lock, then loaded the same version again."""
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    bot = client.app[BOT]
    models = bot.project.models_dir
    loads: list[str] = []
    load = serving.load_serving_model
    monkeypatch.setattr(serving, "load_serving_model", lambda project, device=None: loads.append("load") or load(
        project, device))
    shutil.copytree(models / "v0001", models / "v0002")
    async with client.app[serving.RELOAD_LOCK]:  # a reload in progress
        (models / "CURRENT").write_text("v0002\n")
        await asyncio.sleep(0.5)  # the watcher has seen it, and waits
        bot.swap(serving.load_serving_model(bot.project, "cpu"), bot.project)
    await asyncio.sleep(0.5)
    assert bot.nlu.version == "v0002" and loads == ["load"]


async def test_a_saved_responses_yml_is_served_without_a_reload_and_a_broken_one_is_refused_with_its_line(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer edited in responses.yml reached customers only after a POST /admin/reload with the admin token, or a
    restart, which an editor of the answers has neither of: the running server serves the saved file at its next look
    (learning.watch_seconds), keeping the model it serves, which nothing of responses.yml is loaded with. A slip (a tab
    in the indentation) is refused in the log with the file, line and fix, the last good answers served meanwhile;
    the mended file is served once saved."""
    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    bot = client.app[BOT]
    loads: list[str] = []
    load = serving.load_serving_model
    monkeypatch.setattr(serving, "load_serving_model", lambda project, device=None: loads.append("load") or load(
        project, device))
    responses = bot.project.root / "responses.yml"
    written = responses.read_text()

    async def served(wanted: str) -> bool:
        for _ in range(200):
            if wanted in (bot.project.responses.templates["check_refund_policy"][0].text or ""):
                return True
            await asyncio.sleep(0.05)
        return False

    responses.write_text(written.replace("within 30 days", "within 60 days"))
    assert await served("within 60 days")
    reply = await (await chat(client, cid(), "/check_refund_policy")).json()
    assert reply["reply"].startswith("You can return most items within 60 days")
    assert await logged(caplog, "responses.yml saved: now answering with the bot's files as they are now")

    broken = written.replace("within 30 days", "within 90 days").replace("      language: zh", "\tlanguage: zh", 1)
    responses.write_text(broken)
    line = broken.splitlines().index("\tlanguage: zh") + 1
    assert await logged(caplog, f"responses.yml saved, and not served: {responses}:{line}: malformed YAML")
    assert "indent with spaces" in caplog.text
    reply = await (await chat(client, cid(), "/check_refund_policy")).json()
    assert reply["reply"].startswith("You can return most items within 60 days")  # the last good file's

    responses.write_text(written.replace("within 30 days", "within 90 days"))
    assert await served("within 90 days")
    assert loads == []
    nlu = bot.project.root / "nlu.yml"  # the model is loaded with nlu.yml's intents: loaded again
    nlu.write_text(nlu.read_text() + "\n")
    assert await logged(caplog, "nlu.yml saved: now answering with the bot's files as they are now") and loads == ["load"]


async def test_an_intent_renamed_in_the_saved_files_alone_is_refused_until_bot_relabel_tells_the_model(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """check_refund_policy renamed refund_policy in nlu.yml, responses.yml and bot.yml, and saved: the server served
    them, the model went on predicting check_refund_policy, which had no template any more, and every customer who
    asked for it lost the answer until `bot retrain`, with a warning in the log alone. The save is refused, naming
    the intent and the `bot relabel` that keeps it answered, the files as they were answering on; once relabelled,
    saved again, they are served, and the model answers the intent by its new name."""
    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    bot = client.app[BOT]
    root = bot.project.root

    rename_intent(root, "check_refund_policy", "refund_policy")

    assert await logged(caplog, f"saved, and not served: model v0001 answers check_refund_policy, which nlu.yml no longer "
                                f"has: the customers it gives it to would get no answer. For an intent renamed, "
                                f"`bot relabel {root} check_refund_policy refund_policy` has the model answer it by its "
                                f"new name; else run `bot retrain {root}` first")
    reply = await (await chat(client, cid(), "/check_refund_policy")).json()
    assert reply["source"] == "template" and reply["intent"] == "check_refund_policy"  # the files as they were
    relabelled = CliRunner().invoke(cli, ["relabel", str(root), "check_refund_policy", "refund_policy"])
    assert relabelled.exit_code == 0, relabelled.output
    assert "or once nlu.yml is saved again (which it refused while the model answered check_refund_policy)" in \
        relabelled.output
    nlu = root / "nlu.yml"
    nlu.write_text(nlu.read_text() + "\n")
    assert await logged(caplog, "nlu.yml, responses.yml saved: now answering with the bot's files as they are now")
    assert "refund_policy" in bot.nlu.labels and "check_refund_policy" not in bot.nlu.labels
    reply = await (await chat(client, cid(), "/refund_policy")).json()
    assert reply["source"] == "template" and reply["reply"].startswith("You can return most items within 30 days")


HANGING_IMPORT = """
import time
from pathlib import Path

while not Path({release!r}).exists():  # a connection at the top level that does not answer
    time.sleep(0.02)
"""


async def test_an_action_file_whose_import_hangs_is_refused_in_bounded_time_and_the_last_good_actions_run_on(
        make_client: Callable[..., Any], tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A module of actions/ whose top level hangs (a database connection, a requests.get without a timeout) hung
    `bot serve` at start without a word, and a reload held the reload lock for good: now the load is refused after
    bot.yml's actions.import_timeout, naming the file and line it is held at, and a reload leaves the last good actions
    running. The held import cannot be stopped, so no other is started beside it until it ends."""
    client, hello = await hello_mapped(make_client, "Hello.")
    assert "actions_not_reloaded" not in await (await client.post("/admin/reload", headers=ADMIN)).json()
    release = tmp_path / "release"
    hang = HANGING_IMPORT.format(release=str(release))
    held_at = hang.splitlines().index("    time.sleep(0.02)") + 1

    def import_ended() -> None:  # the held import, once released, ends before the next test imports actions/
        release.touch()
        for thread in threading.enumerate():
            if thread.name == "deskbot-actions-import":
                thread.join(10)

    # at start: refused with the line it is held at
    starting = configured_copy(tiny_demo_bot, tmp_path / "starting", actions={"import_timeout": 2})
    shutil.rmtree(starting / "actions")
    (starting / "actions").mkdir()
    (starting / "actions" / "db.py").write_text(hang)
    try:
        with pytest.raises(ActionError, match=re.escape(f"{starting / 'actions' / 'db.py'}:{held_at}: cannot load the "
                                                        "custom actions: its import has not finished after 2 s")):
            create_app(starting, device="cpu")
    finally:
        import_ended()
    release.unlink()

    configure(client.app[BOT].project.root, actions={"import_timeout": 2})  # bot.yml's, read by the reload
    try:
        hello.write_text(HELLO_ACTION.format(text="Hello, held.") + hang)
        held_at_line = f"{hello}:{HELLO_ACTION.count(chr(10)) + held_at}"
        refused = await (await client.post("/admin/reload", headers=ADMIN)).json()
        assert refused["actions_not_reloaded"].startswith(f"{held_at_line}: cannot load the custom actions: its "
                                                          "import has not finished after 2 s")
        assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello."
        # mended while the held import runs on: not imported beside it, the reload lock free for the next reload
        hello.write_text(HELLO_ACTION.format(text="Hello, mended."))
        refused = await (await client.post("/admin/reload", headers=ADMIN)).json()
        assert refused["actions_not_reloaded"] == (
            f"{held_at_line}: cannot load the custom actions: an earlier import of it, given up on after 2 s, has not "
            "finished, and Python cannot stop it: a reload once it has, or a restart, loads actions/")
        assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello."
    finally:
        import_ended()
    assert "actions_not_reloaded" not in await (await client.post("/admin/reload", headers=ADMIN)).json()
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello, mended."


async def test_an_action_the_map_names_that_the_action_server_does_not_list_is_named_at_start(
        make_client: Callable[..., Any], aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A typo in actions.map against an action server was met only by the customers who asked for the action: the
    server's list is asked as deskbot starts, on its event loop (an action server on that loop, as here, answers), and
    the map's line named."""
    stub = web.Application()
    stub.router.add_get("/actions", lambda request: web.json_response([{"name": "action_order_status"}]))
    server = await aiohttp_server(stub)
    client = await make_client(actions={"endpoint": str(server.make_url("/webhook")),
                                        "map": {"track_order": "action_order_status", "cancel_order": "action_cancel"}})
    root = client.app[BOT].project.root
    line = (root / "bot.yml").read_text().splitlines().index("    cancel_order: action_cancel") + 1
    assert await logged(caplog, f"{root / 'bot.yml'}:{line}: actions.map.cancel_order: 'action_cancel': the action "
                                f"server at {server.make_url('/webhook')} does not list it (it lists action_order_status)")
    assert [r.levelname for r in caplog.records if "does not list it" in r.getMessage()] == ["ERROR"]


def action_server_stub(listed: list[str]) -> web.Application:
    """An action server that lists ``listed`` as they are when asked (rasa-sdk's ``GET /actions``)."""
    stub = web.Application()
    stub.router.add_get("/actions", lambda request: web.json_response([{"name": name} for name in listed]))
    return stub


async def test_a_reload_checks_the_action_map_against_what_the_action_server_lists_now(
        make_client: Callable[..., Any], aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The map was checked against the action server's list only as deskbot started: a shop that mended a typo in
    actions.map, or added an action to its server, and reloaded learned nothing of an action still missing until a
    customer asked for it. A reload checks the map it brings against the list as it is now, names what is missing in
    its answer, in the log and in /metrics, and the bot answers on meanwhile."""
    caplog.set_level(logging.INFO, logger="deskbot")
    listed = ["action_order_status"]
    server = await aiohttp_server(action_server_stub(listed))
    webhook = str(server.make_url("/webhook"))
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0},
                               actions={"endpoint": webhook,
                                        "map": {"track_order": "action_order_status", "cancel_order": "action_cancle"}})
    root = client.app[BOT].project.root
    assert await logged(caplog, "actions.map.cancel_order: 'action_cancle': the action server at")
    bot_yml = root / "bot.yml"
    bot_yml.write_text(bot_yml.read_text().replace("action_cancle", "action_cancel"))  # mended, not yet on the server
    line = bot_yml.read_text().splitlines().index("    cancel_order: action_cancel") + 1
    answer = await (await client.post("/admin/reload", headers=ADMIN)).json()
    assert answer["actions_not_listed"] == (
        f"{bot_yml}:{line}: actions.map.cancel_order: 'action_cancel': the action server at {webhook} does not list it "
        "(it lists action_order_status): its customers get the fallback")
    assert [r.levelname for r in caplog.records if "'action_cancel': the action server" in r.getMessage()] == ["ERROR"]
    assert "deskbot_actions_unlisted 1.0" in await (await client.get("/metrics")).text()
    assert (await chat(client, cid(), "/check_refund_policy")).status == 200  # served meanwhile
    listed.append("action_cancel")  # the shop's action server now has it: no restart of deskbot needed
    assert "actions_not_listed" not in await (await client.post("/admin/reload", headers=ADMIN)).json()
    assert f"the action server at {webhook} now lists every action bot.yml's actions.map names" in caplog.text
    assert "deskbot_actions_unlisted 0.0" in await (await client.get("/metrics")).text()


async def test_an_action_server_that_starts_after_deskbot_has_the_action_map_checked_once_it_answers(
        make_client: Callable[..., Any], aiohttp_server: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An action server down as deskbot started left the map unchecked for good: a typo against it went unsaid until a
    customer met it. It is asked again (every LIST_AGAIN_AFTER_S) until it answers, said once while it does not, and
    the map checked then."""
    monkeypatch.setattr("bot.actions.LIST_AGAIN_AFTER_S", 0.2)
    with socket.socket() as probe:  # a port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook = f"http://127.0.0.1:{port}/webhook"
    client = await make_client(actions={"endpoint": webhook,
                                        "map": {"track_order": "action_order_status", "cancel_order": "action_cancle"}})
    assert await logged(caplog, f"the action server at http://127.0.0.1:{port}/actions did not list its actions")
    await asyncio.sleep(0.6)  # asked again meanwhile, and not said again
    assert (await chat(client, cid(), "/check_refund_policy")).status == 200  # which asks too
    await asyncio.sleep(0.3)
    assert sum("did not list its actions" in r.getMessage() for r in caplog.records) == 1
    await aiohttp_server(action_server_stub(["action_order_status"]), port=port)
    assert await logged(caplog, f"actions.map.cancel_order: 'action_cancle': the action server at {webhook} does not "
                                "list it (it lists action_order_status)")


async def test_a_saved_action_is_served_without_a_reload_and_one_that_fails_to_import_is_refused_with_its_line(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """An action edited in actions/ ran as it was until a POST /admin/reload or a restart, while a saved responses.yml
    was served at the watcher's next look: the watcher serves a saved action too. One that fails to import is refused
    in the log with its file and line, the last good actions running on, and served once mended."""
    import yaml

    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    root = client.app[BOT].project.root
    hello = root / "actions" / "hello.py"

    async def answers(wanted: str) -> bool:
        for _ in range(200):
            if (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == wanted:
                return True
            await asyncio.sleep(0.05)
        return False

    hello.write_text(HELLO_ACTION.format(text="Hello."))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["actions"]["map"]["check_refund_policy"] = "action_hello"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    assert await logged(caplog, "bot.yml, actions/hello.py saved: now answering with the bot's files as they are now")

    hello.write_text(HELLO_ACTION.format(text="Hello again."))
    assert await answers("Hello again.")
    assert await logged(caplog, "actions/hello.py saved: now answering with the bot's files as they are now")

    hello.write_text(HELLO_ACTION.format(text="Hello, broken.") + "\ndef broken(:\n")
    assert await logged(caplog, f"actions/ not reloaded: {hello}:13: cannot load the custom actions: SyntaxError")
    assert (await (await chat(client, cid(), "/check_refund_policy")).json())["reply"] == "Hello again."

    hello.write_text(HELLO_ACTION.format(text="Hello, mended."))
    assert await answers("Hello, mended.")


async def test_a_refused_save_tells_the_action_maps_mistake_with_the_files_each_on_its_own_indented_line(
        make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """A saved bot.yml whose actions.map names an action actions/ lacks, saved with a slip in responses.yml, was
    refused for the slip alone, the action told once that was mended: both are told, checked against the actions
    running (not actions/ imported again under them), in one record whose first line counts them."""
    import yaml

    caplog.set_level(logging.INFO, logger="deskbot")
    client = await make_client(server={"limits": NO_LIMITS}, learning={"watch_seconds": 0.1})
    root = client.app[BOT].project.root

    (root / "actions" / "hello.py").write_text(HELLO_ACTION.format(text="Hello."))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["actions"]["map"]["check_refund_policy"] = "action_hello"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    assert await logged(caplog, "bot.yml, actions/hello.py saved: now answering with the bot's files as they are now")

    responses = root / "responses.yml"
    responses.write_text(responses.read_text().replace("      language: zh", "\tlanguage: zh", 1))
    config["actions"]["map"]["check_refund_policy"] = "action_helo"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    assert await logged(caplog, "bot.yml, responses.yml saved, and not served: 2 mistakes; customers are answered as before "
                      "until they are mended and saved again:\n")
    record = next(r.getMessage() for r in caplog.records if "not served" in r.getMessage())
    first, *told = record.splitlines()
    assert len(told) == 2 and all(line.startswith("  ") for line in told), record
    assert told[0].startswith(f"  {responses}:") and "malformed YAML" in told[0]
    assert told[1].startswith(f"  {root / 'bot.yml'}:") and "'action_helo': no class in actions/ is named so" in told[1]


async def test_a_reload_whose_action_map_names_an_unknown_action_is_refused(make_client: Callable[..., Any]) -> None:
    """Start refuses such a bot.yml; a reload took it, and every customer asking for the intent failed."""
    import yaml

    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS}, learning={"watch_seconds": 0})
    bot_yml = client.app[BOT].project.root / "bot.yml"
    config = yaml.safe_load(bot_yml.read_text())
    config["actions"]["map"]["check_refund_policy"] = "action_typo_name"
    bot_yml.write_text(yaml.safe_dump(config))
    response = await client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert response.status == 409 and "'action_typo_name'" in (await response.json())["error"]
    reply = await chat(client, cid(), "/check_refund_policy")
    assert reply.status == 200 and (await reply.json())["source"] == "template"  # the old map still serves


async def test_admin_export_serves_what_bot_export_writes(make_client: Callable[..., Any]) -> None:
    client = await make_client(server={"admin_token": "t0ken", "limits": NO_LIMITS})
    conversation = cid()
    assert (await chat(client, conversation, "refund to jane@example.com please")).status == 200
    store = client.app[BOT].store
    (turn,) = [t for (t,) in store_rows(client, "SELECT id FROM turns WHERE role = 'user' AND conversation_id = ?", conversation)]
    store.add_labels([turn], "get_refund")
    admin = {"Authorization": "Bearer t0ken"}

    assert (await client.get("/admin/export")).status == 401
    response = await client.get("/admin/export", headers=admin)
    assert response.status == 200 and response.content_type == "application/x-ndjson"
    rows = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [(r["type"], r["text"], r["intent"]) for r in rows] == [("example", "refund to [EMAIL] please", "get_refund")]
    later = await client.get("/admin/export", params={"since": "2999-01-01"}, headers=admin)
    assert later.status == 200 and await later.text() == ""
    ever = await client.get("/admin/export", params={"since": "0001-01-01"}, headers=admin)  # before the clock's range
    assert ever.status == 200 and [json.loads(line) for line in (await ever.text()).splitlines()] == rows
    for since in ("last tuesday", ""):
        bad = await client.get("/admin/export", params={"since": since}, headers=admin)
        assert bad.status == 400 and (await bad.json())["error"].startswith("since:")

    # Redacting a large store's labels is seconds of work: done on the store's thread, every reply waited for it.
    redacting, slow = threading.Event(), serving.learned_from

    def slowly(*args: Any) -> Any:
        redacting.set()
        time.sleep(3)
        return slow(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serving, "learned_from", slowly)
        export = asyncio.ensure_future(client.get("/admin/export", headers=admin))
        while not redacting.is_set():
            await asyncio.sleep(0.05)
        assert (await chat(client, conversation, "and my parcel?")).status == 200
        assert not export.done()  # answered while the export redacts
        assert (await export).status == 200


def test_the_help_gives_each_command_in_one_line_and_shows_how_it_is_run() -> None:
    """`bot --help` cut most commands' summaries mid-sentence ("Copy the conversation store of DIRECTORY to DEST
    (a file, or..."), no command's help showed a command line to run, and options named their type where a reader
    looks for what to give (--device TEXT, --limit INTEGER RANGE)."""
    import click

    runner = CliRunner()
    groups = [((), cli), *(((name,), group) for name, group in cli.commands.items() if isinstance(group, click.Group))]
    for path, group in groups:
        # A terminal 80 columns wide or wider: click formats its help 78 wide (it keeps 2 columns free), where
        # `restore`'s summary was cut ("the bot...") though whole at the 80 a runner's terminal_width forces.
        listing = runner.invoke(cli, [*path, "--help"], terminal_width=78).output
        assert "..." not in listing.partition("Commands:")[2], listing
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                continue
            text = runner.invoke(cli, [*path, name, "--help"], terminal_width=80).output
            assert "Example" in text and f"  bot {' '.join((*path, name))} " in text.partition("Example")[2], text
            if path != ("bench",):  # a benchmark's options are its figures' settings, named as bench/RESULTS.md runs them
                assert not re.search(r"--\S+ (TEXT|INTEGER|FLOAT)", text), text


def test_every_command_and_option_is_in_the_docs() -> None:
    """`bot relabel`, `bot serve --port` and the commands' --device were in their --help alone: a user reading the
    README and docs/ never learnt of them. A benchmark's options are in bench/*.md, with the figures they give."""
    import click

    docs = "".join(path.read_text() for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    missing = []
    for name, command in cli.commands.items():
        if name == "bench":
            continue
        commands = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        for sub, leaf in commands:
            words = f"bot {name} {sub}".strip()
            options = [opt for param in leaf.params for opt in param.opts if opt.startswith("--")]
            missing += [f"{words} {opt}" for opt in options if opt not in docs]
            missing += [] if words in docs else [words]
    assert missing == []


def test_what_a_user_can_mistype_on_the_command_line_gets_one_line_errors(tiny_demo_bot: Path, tmp_path: Path) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")

    def run(*args: str, code: int = 1, stdin: bytes | None = None) -> str:
        result = CliRunner().invoke(cli, list(args), input=stdin)
        assert result.exit_code == code and "Traceback" not in result.output, result.output
        return result.output

    assert "70000 is not in the range 0<=x<=65535" in run("serve", str(root), "--port", "70000", code=2)
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "where is my order", "intent": "track_order"}\n')
    (tmp_path / "a-file").write_text("")
    assert f"cannot write the results to {tmp_path / 'a-file' / 'sub'}" in run(
        "eval", str(root), "--test", str(test), "--results", str(tmp_path / "a-file" / "sub"), "--device", "cpu")
    for line, problem in [('{"text": "hi \\udcff", "intent": "greet"}', "the text has nothing to read, or is not valid Unicode"),
                          ('{"text": "hi", "intent": null}', "the intent is empty"),
                          ('{"text": "hi", "intent": " \\t"}', "the intent is empty"),
                          ('{"text": "hi", "intent": "oos", "oos_type": 1}', "the oos_type must be text, not 1"),
                          ('{"text": null, "intent": "greet"}', "the text is empty"),
                          ("[" * 100_000 + "]" * 100_000, "expected a JSON object with \"text\" and \"intent\": nested too deeply")]:
        test.write_text(line + "\n")
        assert f"test.jsonl:1: {problem}" in run("eval", str(root), "--test", str(test), "--device", "cpu")
    said = run("chat", str(root), "--device", "cpu", code=0, stdin=b"\xe4\xbd half a character\n")
    assert "(not sent: nothing to read, or not valid UTF-8)" in said
    said = run("chat", str(root), "--device", "cpu", code=0, stdin=("refund " * 600 + "\nhello\n").encode())
    assert "(not sent: the message is 4,200 characters long, more than a customer's message may be (4,000: " \
           "server.max_message_chars))" in said and said.count("bot> ") == 1  # hello alone is answered
    # What the system refuses a file (a folder where it should be, no permission, a read-only disk): one line.
    odd = configured_copy(tiny_demo_bot, tmp_path / "odd")
    (odd / "history.jsonl").unlink()
    (odd / "history.jsonl").mkdir()
    assert f"Error: {odd / 'history.jsonl'}: Is a directory" in run("models", str(odd))


def test_a_command_with_no_folder_for_temporary_files_says_what_it_needs(
        tiny_demo_bot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a read-only root without a writable /tmp (docker run --read-only), `bot serve`, `bot export` and the
    other commands that load torch ended in a traceback from its import, which needs a temporary folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # not found yet, as in a new process
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [])  # none writable
    refused = CliRunner().invoke(cli, ["info", str(tiny_demo_bot)])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert refused.output.startswith("Error: No usable temporary directory found in []: set TMPDIR to a folder")


def test_the_server_leaves_the_plotting_library_unloaded() -> None:
    """`bot serve` imported matplotlib at every start (for `bot eval`'s plots, which it never draws): seconds, and
    on a read-only home folder (systemd's ProtectHome) two warnings about its cache folder in the server's log."""
    code = "import sys, bot.cli, bot.server; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "False", done.stderr
