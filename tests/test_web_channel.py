"""The web channel's API and WebSocket against the real app (tiny demo bot, real SQLite store)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import WSMessage, WSMsgType
from click.testing import CliRunner

from bot import engine as engine_module
from bot.channels import web as web_channel
from bot.channels.base import Turn
from bot.cli import cli
from bot.language import READABLE
from bot.project import ServerConfig, load_project
from bot.server import BOT, create_app
from dialogues.migrations import MIGRATIONS
from dialogues.store import Store, log_tag
from tests.conftest import REPO, configured_copy


@pytest.fixture
async def client(aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> AsyncIterator[Any]:
    yield await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))


PEERS_S = ServerConfig().peers_seconds  # how often the web demo's servers look for what the others on its store said


def new_id() -> str:
    return f"web-{uuid.uuid4()}"


async def chat(client: Any, cid: str, text: str) -> dict[str, Any]:
    response = await client.post("/api/chat", json={"conversation_id": cid, "text": text})
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def roles(client: Any, cid: str) -> list[str]:
    """Who said each turn of the conversation, as its history reads: a message answered twice shows as two replies."""
    history = await (await client.get(f"/api/conversations/{cid}/history")).json()
    return [turn["role"] for turn in history["turns"]]


async def admin(client: Any, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return await client.post(path, json=body or {}, headers={"Authorization": f"Bearer {token}"})


async def frames_within(ws: Any, seconds: float) -> AsyncIterator[dict[str, Any]]:
    """The JSON frames ``ws`` is sent until none comes for ``seconds``."""
    while True:
        try:
            yield await ws.receive_json(timeout=seconds)
        except asyncio.TimeoutError:
            return


@asynccontextmanager
async def joined_socket(client: Any) -> AsyncIterator[tuple[str, Any]]:
    """A new conversation that said hello, and a socket joined to it that was told it is open: where a test of
    what the widget is pushed begins."""
    cid = new_id()
    await chat(client, cid, "hello")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "join", "conversation_id": cid})
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "open"}
        yield cid, ws


async def test_socket_and_http_answer_the_same(client: Any) -> None:
    over_http = await chat(client, new_id(), "my parcel never arrived")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": new_id(), "text": "my parcel never arrived"})  # no type: a message
        over_socket = await ws.receive_json()
    assert over_socket.pop("type") == "reply"
    for ids in ("turn_id", "user_turn_id"):  # the turns' own, one after the other
        assert over_socket.pop(ids) > over_http.pop(ids)
    assert over_socket == over_http
    assert over_http["source"] == "fallback" and over_http["buttons"][-1] == {"title": "Talk to a person", "payload": "/handoff"}


async def test_with_predictions_off_only_the_admin_token_is_told_what_the_model_made_of_a_message(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Any) -> None:
    """The intent, confidence and ranking of each reply named the bot's intents and how sure it was to any visitor.
    With channels.web.predictions: false a reply over HTTP or the socket leaves them out, but for the admin token,
    and the transcript keeps them for the agents."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", channels={"web": {"predictions": False}})
    client = await aiohttp_client(create_app(root, device="cpu"))
    predictions = {"intent", "confidence", "ranking"}
    cid = new_id()
    public = await chat(client, cid, "/check_refund_policy")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": new_id(), "text": "/check_refund_policy"})
        over_socket = await ws.receive_json()
    assert predictions.isdisjoint(public) and predictions.isdisjoint(over_socket)
    assert (public["source"], over_socket["source"]) == ("template", "template") and public["reply"]
    auth = {"Authorization": f"Bearer {web_demo_bot.admin_token}"}
    response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": "/check_refund_policy"},
                                 headers=auth)
    assert (await response.json())["intent"] == "check_refund_policy"
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=auth)).json()
    assert transcript["turns"][0]["intent"] == "check_refund_policy"


async def test_the_widget_is_told_the_bots_title_and_language(aiohttp_client: Any, web_demo_bot: SimpleNamespace,
                                                              tmp_path: Any) -> None:
    """With no title in bot.yml the widget shows its own in its language: "Support" was shown to Chinese
    customers; a title may be one per language."""
    for name, title in (("none", None), ("each", {"en": "Help", "zh": "帮助"})):
        root = configured_copy(web_demo_bot.root, tmp_path / name, channels={"web": {"title": title}})
        client = await aiohttp_client(create_app(root, device="cpu"))
        settings = await (await client.get("/api/widget")).json()
        assert (settings["title"], settings["language"]) == (title, "multi")


async def test_chinese_reads_as_written_in_the_apis_json(client: Any) -> None:
    """An operator reading the API with curl saw \\uXXXX escapes for every Chinese character."""
    response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": "我的包裹一直没到"})
    body = await response.text()
    assert response.status == 200 and "\\u" not in body and re.search(r"[\u4e00-\u9fff]", json.loads(body)["reply"])
    assert json.loads(body)["reply"] in body


async def test_button_payload_selects_its_template(client: Any) -> None:
    reply = await chat(client, new_id(), "/check_refund_policy")
    assert (reply["intent"], reply["source"]) == ("check_refund_policy", "template")
    assert [b["payload"] for b in reply["buttons"]] == ["/get_refund", "/track_refund"]


async def test_a_responses_custom_payload_reaches_the_page_with_its_text(aiohttp_client: Any,
                                                                        web_demo_bot: SimpleNamespace, tmp_path: Any) -> None:
    """A Rasa bot's response with a custom payload (a carousel its page draws) was refused on load; it reaches the
    page as an action's json_message does, in /api/chat's and the socket's custom, for the deskbot:custom event."""
    import yaml

    carousel = {"type": "carousel", "items": [{"title": "Returns", "url": "https://shop.example/returns"}]}
    root = configured_copy(web_demo_bot.root, tmp_path / "bot")
    responses = yaml.safe_load((root / "responses.yml").read_text())
    for variant in responses["responses"]["check_refund_policy"]:
        variant["custom"] = carousel
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    client = await aiohttp_client(create_app(root, device="cpu"))
    reply = await chat(client, new_id(), "/check_refund_policy")
    assert (reply["source"], reply["custom"]) == ("template", [carousel]) and reply["reply"].startswith("You can return")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"conversation_id": new_id(), "text": "/check_refund_policy"})
        assert (await ws.receive_json())["custom"] == [carousel]


async def test_history_and_feedback_are_stored(client: Any, web_demo_bot: SimpleNamespace) -> None:
    cid = new_id()
    reply = await chat(client, cid, "hello there")
    response = await client.post("/api/feedback", json={"conversation_id": cid, "turn_id": reply["turn_id"], "value": -1,
                                                         "comment": "not it"})
    assert response.status == 200
    history = await (await client.get(f"/api/conversations/{cid}/history")).json()
    assert history["status"] == "open"
    assert [(t["role"], t["text"]) for t in history["turns"]] == [("user", "hello there"), ("bot", reply["reply"])]
    assert history["turns"][1]["feedback"] == -1
    assert history["turns"][1]["buttons"] == reply["buttons"] and history["turns"][0]["buttons"] == []
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT value, comment FROM feedback WHERE turn_id = ?", [reply["turn_id"]]).fetchall() == [(-1, "not it")]


async def test_votes_on_a_reply_keep_one_row(client: Any, web_demo_bot: SimpleNamespace) -> None:
    """Each vote added a row of up to 2,000 characters of comment, though only a reply's latest vote is read: one
    client clicking on one reply could grow the store without end. The latest vote replaces the earlier one, and
    keeps the latest comment given."""
    cid = new_id()
    reply = await chat(client, cid, "hello there")
    for value, comment in ((-1, "not it"), (1, None), (-1, "x" * 2000), (-1, "still not it"), (0, None)):
        vote = {"conversation_id": cid, "turn_id": reply["turn_id"], "value": value}
        response = await client.post("/api/feedback", json={**vote, **({"comment": comment} if comment else {})})
        assert response.status == 200
    history = await (await client.get(f"/api/conversations/{cid}/history")).json()
    assert history["turns"][1]["feedback"] == 0
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT value, comment FROM feedback WHERE turn_id = ?",
                          [reply["turn_id"]]).fetchall() == [(0, "still not it")]


async def test_bad_requests_are_400_with_a_reason(client: Any) -> None:
    cases = [
        (b"{not json", "malformed JSON"),
        (b'{"conversation_id": "web-1", "text": "hi", "extra": 1}', "extra: unknown field"),
        (b'{"conversation_id": "bad id!", "text": "hi"}', "conversation_id"),
        (b'{"conversation_id": "web-1", "text": "' + b"x" * 4001 + b'"}', "longer than 4000"),
    ]
    for body, reason in cases:
        response = await client.post("/api/chat", data=body, headers={"Content-Type": "application/json"})
        assert response.status == 400 and reason in (await response.json())["error"], body[:60]
    response = await client.post("/api/feedback", json={"conversation_id": "web-1", "turn_id": 10**9, "value": 1})
    assert response.status == 404 and "no bot turn" in (await response.json())["error"]
    assert (await client.post("/api/feedback", json={"conversation_id": "web-1", "turn_id": 1, "value": 5})).status == 400


async def test_a_refused_text_says_why_by_its_code_over_http_and_the_socket(client: Any) -> None:
    """A text past the bot's own limit (4000 here, below the API's 20,000) was refused in English words alone, and
    over the socket any text refused so, with nothing the widget could say but *Not sent*: each comes with its
    ``code``, as the admin API's errors do, for a client to say it in its customer's language."""
    cases = [("x" * 4001, "text_too_long"), ("x" * 20_001, "text_too_long"), ("", "text_invalid"),
             ("\u200b \u200b", "text_invalid")]
    for text, code in cases:
        response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": text})
        assert response.status == 400 and (await response.json())["code"] == code, text[:10]
    async with client.ws_connect("/api/ws") as ws:
        for text, code in cases:
            await ws.send_json({"conversation_id": new_id(), "text": text})
            said = await ws.receive_json(timeout=10)
            assert (said["type"], said["code"], said["request"]) == ("error", code, "message"), text[:10]
        await ws.send_json({"type": "join"})  # another field's fault has no code, over the socket as over HTTP
        assert "code" not in await ws.receive_json(timeout=10)


async def test_a_pages_metadata_reaches_the_conversations_session_metadata(client: Any,
                                                                         web_demo_bot: SimpleNamespace) -> None:
    """A page passes what it knows of its customer (a user id) as Rasa's REST channel takes it, which custom
    actions read as the slot session_started_metadata: the field was refused as unknown."""
    cid = new_id()
    response = await client.post("/api/chat", json={"conversation_id": cid, "text": "hello", "metadata": {"user_id": 17}})
    assert response.status == 200, await response.text()
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        slots = json.loads(db.execute("SELECT slots FROM conversations WHERE id = ?", [cid]).fetchone()[0])
    assert slots["session_started_metadata"] == {"user_id": 17}
    for metadata in ({"note": "x" * 257}, {"user": {"id": 17}}, ["u-17"], {str(k): k for k in range(17)}):
        response = await client.post("/api/chat", json={"conversation_id": cid, "text": "hi", "metadata": metadata})
        assert response.status == 400 and "metadata" in (await response.json())["error"], metadata


IDENTITY_SECRET = "shop-identity-secret"


def vouched(user: str, secret: str = IDENTITY_SECRET) -> str:
    """What the shop's server puts in its page for a signed-in customer: HMAC-SHA256 of their id, in hex."""
    return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()


async def test_with_an_identity_secret_only_users_the_shops_server_vouched_for_are_served_on_both_paths(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's ``user`` proves nothing: anyone could post as any customer, and agents and actions took it on trust.
    With channels.web.identity_secret (the environment's over bot.yml's) a user needs the shop's server's HMAC of
    it, compared in constant time; a verified one is the slot verified_user, which agents see, and a visitor is
    served as before."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", channels={"web": {"identity_secret": "in-bot-yml"}},
                           server={"admin_token": "t", "limits": {"per_ip_per_minute": 0}})
    monkeypatch.setenv("DESKBOT_WEB_IDENTITY_SECRET", IDENTITY_SECRET)
    compared: list[tuple[bytes, bytes]] = []
    compare = web_channel.hmac.compare_digest
    monkeypatch.setattr(web_channel.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or compare(a, b))
    client = await aiohttp_client(create_app(root, device="cpu"))
    cid, refused = new_id(), new_id()
    signed = {"conversation_id": cid, "text": "/handoff", "user": "u-17", "user_hash": vouched("u-17").upper()}
    response = await client.post("/api/chat", json=signed)
    assert response.status == 200, await response.text()
    assert (vouched("u-17").encode(),) * 2 in compared  # the hash as written in any case, compared in constant time
    for user_hash, error in ((None, "user_hash: missing"), (vouched("u-18"), "user_hash: not the HMAC"),
                             (vouched("u-17", "in-bot-yml"), "user_hash: not the HMAC")):
        body = {"conversation_id": refused, "text": "hi", "user": "u-17", **({"user_hash": user_hash} if user_hash else {})}
        response = await client.post("/api/chat", json=body)
        assert response.status == 403 and (await response.json())["error"].startswith(error), user_hash
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "message", **body})
            frame = await ws.receive_json()
            assert (frame["type"], frame["request"], frame["error"].startswith(error)) == ("error", "message", True)
            await ws.send_json({"type": "message", **body, "user_hash": vouched("u-17")})
            assert (await ws.receive_json())["type"] == "reply"
    auth = {"Authorization": "Bearer t"}
    inbox = (await (await client.get("/admin/conversations", headers=auth)).json())["conversations"]
    assert [(c["conversation_id"], c["user"], c["verified_user"]) for c in inbox] == [(cid, "u-17", "u-17")]
    transcript = await (await client.get(f"/admin/conversations/{refused}", headers=auth)).json()
    assert [t["role"] for t in transcript["turns"]] == ["user", "bot"] * 3  # the refused messages were not kept
    assert transcript["verified_user"] == transcript["slots"]["verified_user"] == "u-17"


@pytest.fixture
def vouching_bot(web_demo_bot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The web demo bot with a customer's proof to check (channels.web.identity_secret, from the environment, as
    :func:`vouched` signs it) and no rate limit, for the tests of signed-in customers' conversations."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"limits": {"per_ip_per_minute": 0}})
    monkeypatch.setenv("DESKBOT_WEB_IDENTITY_SECRET", IDENTITY_SECRET)
    return root


async def test_a_numeric_customer_id_is_its_decimal_string_as_the_widget_sends_it(
        aiohttp_client: Any, vouching_bot: Path) -> None:
    """A shop whose customers' ids are numbers posts them as its database gives them, ``"user": 17``, and hashes
    the decimal string, as docs/channels.md says and the widget does; such a message was refused as "not a valid
    string". A fraction, a boolean or a number past SQLite's integers is still refused, saying ``user``."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid = new_id()
    for user in (17, 17.0):
        body = {"conversation_id": cid, "text": "hello", "user": user, "user_hash": vouched("17")}
        response = await client.post("/api/chat", json=body)
        assert response.status == 200, await response.text()
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "message", **body})
            assert (await ws.receive_json())["type"] == "reply"
    history = await client.get(f"/api/conversations/{cid}/history",
                               headers={"X-Deskbot-User": "17", "X-Deskbot-User-Hash": vouched("17")})
    assert history.status == 200 and len((await history.json())["turns"]) == 8
    for user in (1.5, True, 2**63):
        response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": "hi", "user": user})
        assert response.status == 400 and "user" in (await response.json())["error"], user


async def test_a_signed_in_customers_conversation_is_theirs_alone_to_read_hear_and_continue(
        aiohttp_client: Any, vouching_bot: Path) -> None:
    """A conversation's id was the key to it, so a signed-in customer's chat (their orders, their address) could be
    read, heard, written and voted in by anyone with its id, which a custom client may make guessable. One whose
    last message came from a verified customer asks for that customer's proof; a visitor's is open with its id."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid, visitor = new_id(), new_id()
    proof = {"user": "u-17", "user_hash": vouched("u-17")}
    first = await client.post("/api/chat", json={"conversation_id": cid, "text": "hello", **proof})
    assert first.status == 200
    turn_id = (await first.json())["turn_id"]
    await chat(client, visitor, "hello")
    history = f"/api/conversations/{cid}/history"
    for query in ({}, {"user": "u-18", "user_hash": vouched("u-18")}):
        response = await client.get(history, params=query)
        assert response.status == 403 and (await response.json())["error"].startswith("conversation_id:"), query
        response = await client.post("/api/chat", json={"conversation_id": cid, "text": "hi", **query})
        assert response.status == 403, query
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "join", "conversation_id": cid, **query})
            assert (await ws.receive_json())["error"].startswith("conversation_id:")
        vote = {"conversation_id": cid, "turn_id": turn_id, "value": -1, **query}
        assert (await client.post("/api/feedback", json=vote)).status == 403, query
    response = await client.get(history, params=proof)
    assert response.status == 200 and len((await response.json())["turns"]) == 2
    vote = {"conversation_id": cid, "turn_id": turn_id, "value": 1, **proof}
    assert (await client.post("/api/feedback", json=vote)).status == 200
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "join", "conversation_id": cid, **proof})
        assert (await ws.receive_json())["type"] == "status"
    assert (await client.get(f"/api/conversations/{visitor}/history")).status == 200
    assert (await client.get(history, params={"user_hash": "not hex"})).status == 400


async def test_whose_conversation_it_is_is_read_beside_the_store_writer(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every web message, history read and vote first reads whose conversation it is: on the thread that logs
    customers' turns, each waited behind them and held them up."""
    import threading

    monkeypatch.setenv("DESKBOT_WEB_IDENTITY_SECRET", IDENTITY_SECRET)
    client = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    cid, proof = new_id(), {"user": "u-17", "user_hash": vouched("u-17")}
    assert (await client.post("/api/chat", json={"conversation_id": cid, "text": "hello", **proof})).status == 200
    channel = client.app[BOT].channels["web"]
    release = threading.Event()
    writer = asyncio.ensure_future(client.app[BOT]._store(release.wait, 20))  # the writer busy
    try:
        assert await asyncio.wait_for(channel.proven(web_channel.Customer(**proof), cid), 10) == "u-17"
        with pytest.raises(web_channel.Unverified):
            await asyncio.wait_for(channel.proven(web_channel.Customer(), cid), 10)
    finally:
        release.set()
        await writer


async def test_a_conversations_history_and_status_are_read_beside_the_store_writer(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A widget's history read and a socket's join read who has the conversation, and the history its turns, on the
    thread that logs customers' turns: each waited behind them, and a reload of every tab during a busy spell
    held those turns up in turn."""
    import threading

    client = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    cid = new_id()
    await chat(client, cid, "hello")
    assert (await admin(client, web_demo_bot.admin_token, f"/admin/conversations/{cid}/handoff?agent=Ana")).status == 200
    release = threading.Event()
    writer = asyncio.ensure_future(client.app[BOT]._store(release.wait, 20))  # the writer busy
    try:
        read = await asyncio.wait_for(client.get(f"/api/conversations/{cid}/history"), 10)
        history = await read.json()
        assert (history["status"], history["agent"], history["turns"][0]["text"]) == ("handed_off", "Ana", "hello")
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "join", "conversation_id": cid})
            assert await ws.receive_json(timeout=10) == {"type": "status", "conversation_id": cid,
                                                         "status": "handed_off", "agent": "Ana"}
    finally:
        release.set()
        await writer


async def test_the_agents_console_reads_beside_the_store_writer_and_sees_its_own_changes(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's transcript read, and who has the customer in a takeover's and a release's answers, were read on
    the thread that logs customers' turns: each waited behind them. Read beside it, each still sees the change the
    request made: the writer is kept busy from the moment the change is written."""
    import threading

    client = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    bot, token, cid = client.app[BOT], web_demo_bot.admin_token, new_id()
    await chat(client, cid, "hello")
    busy: list[tuple[threading.Event, Any]] = []

    def busy_after(name: str) -> None:
        """Keep the store's thread busy once ``name`` has written, until :func:`free`."""
        original = getattr(bot.store, name)

        def written_then_busy(*args: Any) -> Any:
            try:
                return original(*args)
            finally:
                busy.append((release := threading.Event(), bot._db.submit(release.wait, 20)))
        monkeypatch.setattr(bot.store, name, written_then_busy)

    async def free() -> None:
        while busy:
            release, job = busy.pop()
            release.set()
            await asyncio.wrap_future(job)

    async def answer(path: str) -> dict[str, Any]:
        response = await asyncio.wait_for(admin(client, token, path), 10)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    async def transcript() -> dict[str, Any]:
        response = await asyncio.wait_for(
            client.get(f"/admin/conversations/{cid}", headers={"Authorization": f"Bearer {token}"}), 10)
        return dict(await response.json())

    busy_after("set_status")
    busy_after("pass_on")
    try:
        assert await answer(f"/admin/conversations/{cid}/handoff?agent=Ana") == {"status": "handed_off", "agent": "Ana"}
        taken = await transcript()
        assert (taken["status"], taken["agent"], taken["turns"][0]["text"]) == ("handed_off", "Ana", "hello")
        await free()  # the release's own write waits for the store's thread
        assert await answer(f"/admin/conversations/{cid}/release?agent=Ana") == {"status": "handed_off", "agent": None}
        assert (await transcript())["agent"] is None
    finally:
        await free()


async def test_a_socket_that_joined_a_visitors_conversation_stops_hearing_it_once_a_customer_signs_in_to_it(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, vouching_bot: Path) -> None:
    """A customer who signs in mid-chat (Deskbot.identify) makes their conversation theirs alone, but a socket that
    had joined it with its id while it was a visitor's went on hearing its agent's replies (their orders, their
    address), which its join would now be refused."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid = new_id()
    await chat(client, cid, "hello")
    proof = {"user": "u-17", "user_hash": vouched("u-17")}
    async with client.ws_connect("/api/ws") as stranger, client.ws_connect("/api/ws") as customer:
        await stranger.send_json({"type": "join", "conversation_id": cid})
        assert (await stranger.receive_json())["type"] == "status"
        await customer.send_json({"type": "message", "conversation_id": cid, "text": "where is my parcel?", **proof})
        assert (await customer.receive_json())["type"] == "reply"  # signed in: the conversation is theirs now
        for path, body in (("handoff", None), ("messages", {"text": "Your parcel goes to 12 Elm St.", "agent": "Sam"})):
            assert (await admin(client, web_demo_bot.admin_token, f"/admin/conversations/{cid}/{path}", body)).status == 200
        said = {ws: [f.get("reply") async for f in frames_within(ws, 1) if f["type"] == "agent"] for ws in (stranger, customer)}
        assert said == {stranger: [], customer: ["Your parcel goes to 12 Elm St."]}


async def test_a_socket_whose_join_as_someone_else_is_refused_stops_hearing_the_customers_conversation(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, vouching_bot: Path) -> None:
    """A shop's page that signs its customer out with Deskbot.identify({}) rather than Deskbot.reset() joins again as
    a visitor, which is refused: its socket, joined as the customer, went on hearing their agent's replies (their
    orders, their address) on the device the next customer now uses. Joined again with the proof, it hears them."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid, proof = new_id(), {"user": "u-17", "user_hash": vouched("u-17")}
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "message", "conversation_id": cid, "text": "where is my parcel?", **proof})
        assert (await ws.receive_json())["type"] == "reply"
        await ws.send_json({"type": "join", "conversation_id": cid})  # signed out
        assert (await ws.receive_json())["error"].startswith("conversation_id: a signed-in")
        assert (await admin(client, web_demo_bot.admin_token, f"/admin/conversations/{cid}/handoff")).status == 200
        assert [frame async for frame in frames_within(ws, 1)] == []
        await ws.send_json({"type": "join", "conversation_id": cid, **proof})  # signed in again
        assert (await ws.receive_json())["type"] == "status"
        body = {"text": "Your parcel goes to 12 Elm St.", "agent": "Sam"}
        assert (await admin(client, web_demo_bot.admin_token, f"/admin/conversations/{cid}/messages", body)).status == 200
        assert [f["reply"] async for f in frames_within(ws, 1) if f["type"] == "agent"] == [body["text"]]

async def test_a_socket_that_joined_a_visitors_conversation_hears_nothing_of_the_message_that_signs_a_customer_in(
        aiohttp_client: Any, vouching_bot: Path) -> None:
    """The sockets that joined a visitor's conversation with its id alone stopped hearing it once a signed-in
    customer's message had been answered: the "handed off" its answer raised reached them first."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid = new_id()
    await chat(client, cid, "hello")
    async with client.ws_connect("/api/ws") as stranger:
        await stranger.send_json({"type": "join", "conversation_id": cid})
        assert (await stranger.receive_json())["type"] == "status"
        signed = {"conversation_id": cid, "text": "/handoff", "user": "u-17", "user_hash": vouched("u-17")}
        assert (await (await client.post("/api/chat", json=signed)).json())["handed_off"]
        assert [frame async for frame in frames_within(stranger, 1)] == []


async def test_a_socket_on_another_server_stops_hearing_a_visitors_conversation_once_a_customer_signs_in_to_it(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, vouching_bot: Path) -> None:
    """Two servers on one store: a socket that joined a visitor's conversation with its id on one went on hearing the
    agent's replies sent through it after a signed-in customer's message to the other had made the conversation
    theirs alone, since each server drops only its own sockets."""
    first, second = [await aiohttp_client(create_app(vouching_bot, device="cpu")) for _ in range(2)]
    cid = new_id()
    await chat(first, cid, "hello")
    proof = {"user": "u-17", "user_hash": vouched("u-17")}
    async with second.ws_connect("/api/ws") as stranger, second.ws_connect("/api/ws") as customer:
        for ws, said in ((stranger, {}), (customer, proof)):
            await ws.send_json({"type": "join", "conversation_id": cid, **said})
            assert (await ws.receive_json())["type"] == "status"
        signed = {"conversation_id": cid, "text": "where is my parcel?", **proof}
        assert (await first.post("/api/chat", json=signed)).status == 200
        body = {"text": "Your parcel goes to 12 Elm St.", "agent": "Sam"}
        for path, sent in (("handoff?agent=Sam", None), ("messages", body)):
            assert (await admin(second, web_demo_bot.admin_token, f"/admin/conversations/{cid}/{path}", sent)).status == 200
        heard = {ws: [f["type"] async for f in frames_within(ws, 1) if f["type"] != "sync"] for ws in (stranger, customer)}
        assert heard == {stranger: [], customer: ["status", "agent"]}


async def test_a_signed_in_customers_history_is_read_with_their_proof_in_headers(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, vouching_bot: Path) -> None:
    """The proof travelled in the history's URL (?user_hash=), which proxies and access logs keep, and whoever read
    it there could read the customer's chats: it goes in headers (the user percent-encoded, as any id may be), which
    another site's page may send, and the query still works for the pages that send it."""
    client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    cid, user = new_id(), "顾客 17"
    signed = {"conversation_id": cid, "text": "hello", "user": user, "user_hash": vouched(user)}
    assert (await client.post("/api/chat", json=signed)).status == 200
    history = f"/api/conversations/{cid}/history"
    proof = {"X-Deskbot-User": "%E9%A1%BE%E5%AE%A2%2017", "X-Deskbot-User-Hash": vouched(user)}
    response = await client.get(history, headers=proof)
    assert response.status == 200 and len((await response.json())["turns"]) == 2
    assert (await client.get(history, params={"user": user, "user_hash": vouched(user)})).status == 200
    response = await client.get(history, headers={**proof, "X-Deskbot-User-Hash": vouched("u-18")})
    assert response.status == 403 and (await response.json())["error"].startswith("user_hash: not the HMAC")
    response = await client.get(history, headers={**proof, "X-Deskbot-User": "%ff"})
    assert response.status == 400 and (await response.json())["error"].startswith("X-Deskbot-User: ")
    response = await client.get(history, headers=proof, params={"user_hash": ""})  # a malformed query is still one
    assert response.status == 400 and (await response.json())["error"].startswith("user_hash: ")
    ask = {"Origin": web_demo_bot.embed_origin, "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "x-deskbot-user,x-deskbot-user-hash"}
    allowed = (await client.options(history, headers=ask)).headers["Access-Control-Allow-Headers"].lower()
    assert {"x-deskbot-user", "x-deskbot-user-hash"} <= set(allowed.replace(" ", "").split(","))


async def test_a_visitors_history_is_read_with_its_id_in_a_header_which_no_access_log_keeps(
        client: Any, web_demo_bot: SimpleNamespace) -> None:
    """The history was read at the conversation's id in its path, and a visitor's id is the key to their conversation:
    every proxy's and server's access log on the way kept it, and whoever read the log could read the chat and write
    in it as the visitor. It is named in X-Deskbot-Conversation, held to the rule of a body's id, which another site's
    page may send; the path still works for the clients that read it so."""
    cid = new_id()
    await chat(client, cid, "hello")
    response = await client.get("/api/conversations/history", headers={"X-Deskbot-Conversation": cid})
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    read = await response.json()
    assert read["conversation_id"] == cid and [t["role"] for t in read["turns"]] == ["user", "bot"]
    assert await (await client.get(f"/api/conversations/{cid}/history")).json() == read
    for headers in ({}, {"X-Deskbot-Conversation": "slack:T1:C1:1"}):  # none, or another channel's
        refused = await client.get("/api/conversations/history", headers=headers)
        assert refused.status == 400 and (await refused.json())["error"].startswith("X-Deskbot-Conversation: ")
    ask = {"Origin": web_demo_bot.embed_origin, "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "x-deskbot-conversation"}
    allowed = (await client.options("/api/conversations/history", headers=ask)).headers["Access-Control-Allow-Headers"]
    assert "x-deskbot-conversation" in allowed.lower().replace(" ", "").split(",")


async def test_a_bot_whose_identity_secret_was_removed_says_at_start_how_many_conversations_it_closed(
        aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        vouching_bot: Path) -> None:
    """Without channels.web.identity_secret nothing can prove a signed-in customer, so their conversations stay closed
    (opened to anyone with their ids, they would hold their orders and address for the taking): a bot.yml that dropped
    the secret closed them all without a word. The server says at start how many, and how to open them again."""
    signed_in = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    closed = [new_id(), new_id()]
    for cid in closed:
        signed = {"conversation_id": cid, "text": "hello", "user": "u-17", "user_hash": vouched("u-17")}
        assert (await signed_in.post("/api/chat", json=signed)).status == 200
    visitor = new_id()
    await chat(signed_in, visitor, "hello")
    await signed_in.close()
    monkeypatch.delenv("DESKBOT_WEB_IDENTITY_SECRET")
    with caplog.at_level("WARNING"):
        client = await aiohttp_client(create_app(vouching_bot, device="cpu"))
    said = [r.getMessage() for r in caplog.records if "identity_secret" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("2 web conversations of signed-in customers are closed"), said
    assert (await client.get(f"/api/conversations/{closed[0]}/history")).status == 403
    assert (await client.get(f"/api/conversations/{visitor}/history")).status == 200


async def test_a_short_conversation_id_is_said_in_the_log_and_refused_below_the_configured_minimum(
        client: Any, aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """The server took any id, so a custom client sending "1" or an order number had its customers' chats read by
    whoever guessed them. Such ids are served as before but said in the log, once an hour at most; with
    channels.web.min_conversation_id_chars a shorter id is refused on every path, and the widget's still served."""
    with caplog.at_level("WARNING", logger=web_channel.__name__):
        for cid in ("1", "order-12345"):
            await chat(client, cid, "hello")
    said = [r.getMessage() for r in caplog.records if "conversation id of" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("a web client sent a conversation id of 1 characters"), said
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", channels={"web": {"min_conversation_id_chars": 16}})
    strict = await aiohttp_client(create_app(root, device="cpu"))
    error = "conversation_id: at least 16 characters"
    short = {"conversation_id": "order-12345"}
    for response in (await strict.post("/api/chat", json={**short, "text": "hello"}),
                     await strict.get("/api/conversations/order-12345/history"),
                     await strict.get("/api/conversations/history", headers={"X-Deskbot-Conversation": "order-12345"}),
                     await strict.post("/api/feedback", json={**short, "turn_id": 1, "value": 1})):
        assert response.status == 400 and (await response.json())["error"].startswith(error)
    async with strict.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "join", **short})
        assert (await ws.receive_json())["error"].startswith(error)
    await chat(strict, new_id(), "hello")


async def test_without_an_identity_secret_no_user_is_verified(client: Any, web_demo_bot: SimpleNamespace) -> None:
    cid = new_id()
    body = {"conversation_id": cid, "text": "hello", "user": "u-17", "user_hash": vouched("u-17")}
    assert (await client.post("/api/chat", json=body)).status == 200
    response = await client.get(f"/admin/conversations/{cid}", headers={"Authorization": f"Bearer {web_demo_bot.admin_token}"})
    transcript = await response.json()
    assert (transcript["user"], transcript["verified_user"]) == ("u-17", None)
    response = await client.post("/api/chat", json={**body, "user_hash": "not hex"})
    assert response.status == 400 and (await response.json())["error"].startswith("user_hash:")


async def test_a_customer_id_with_an_invisible_character_is_refused_on_every_path_as_its_published_pattern_says(
        client: Any) -> None:
    """A customer's id with a zero-width space, a control character or a direction override was stored as given:
    "u-21" and "u-21" with a zero-width space were two customers who looked like one to their agents, and
    `bot purge --user u-21` left the other's conversations. Refused, as an agent's name with one is, on the HTTP
    path, the socket and a history read alike, as the published pattern says; a plain one, spaces and all, is taken."""
    doc = await (await client.get("/openapi.json")).json()
    pattern = doc["components"]["schemas"]["ChatRequest"]["properties"]["user"]["pattern"]
    assert pattern == web_channel.USER_ID
    cid = new_id()
    for user in ("u-21\u200b", "u-21\r", "\u202eu-21", "u-21\U000e0041"):
        assert not re.fullmatch(pattern, user)
        body = {"conversation_id": cid, "text": "hello", "user": user}
        response = await client.post("/api/chat", json=body)
        error = (await response.json())["error"]
        assert response.status == 400 and error.startswith("user:") and "invisible or control character" in error
        async with client.ws_connect("/api/ws") as ws:
            for frame in ({"type": "message", **body}, {"type": "join", "conversation_id": cid, "user": user}):
                await ws.send_json(frame)
                refused = await ws.receive_json()
                assert refused["type"] == "error" and refused["error"] == error, frame
        read = await client.get(f"/api/conversations/{cid}/history",
                                headers={web_channel.USER_HEADER: urllib.parse.quote(user)})
        assert read.status == 400 and (await read.json())["error"] == error
    for user in ("u-21", "Ann Lee 42", "张三"):
        assert re.fullmatch(pattern, user)
        response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": "hello", "user": user})
        assert response.status == 200, user


async def test_half_an_emoji_is_read_as_a_replacement_character_on_both_paths(client: Any) -> None:
    """A text with half of a surrogate pair (well-formed JSON: ``"\\ud83d"``) was refused as malformed JSON over
    HTTP and as no string over the socket, again on every Retry: the customer could never send it."""
    http, socket_id = new_id(), new_id()
    body = '{"conversation_id": "%s", "text": "where is my order 789 \\ud83d"}'
    response = await client.post("/api/chat", data=(body % http).encode(), headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_str(body % socket_id)
        assert (await ws.receive_json())["type"] == "reply"
    for cid in (http, socket_id):
        history = await (await client.get(f"/api/conversations/{cid}/history")).json()
        assert history["turns"][0]["text"] == "where is my order 789 \ufffd"
        assert history["turns"][1]["role"] == "bot"
    response = await client.post("/api/chat", data=b'{"conversation_id": "web-1", "text": "x\\ud83d", "extra": 1}',
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == "extra: unknown field"  # still checked
    # Nested as deep as Python's parser takes, after the half emoji: a 400 and an error frame, not a 500 (the
    # first rewrite of the fields walked it all, and ran out of stack)
    deep = '{"conversation_id": "web-1", "text": "\\ud83d", "user": ' + "[" * 900 + "]" * 900 + "}"
    response = await client.post("/api/chat", data=deep.encode(), headers={"Content-Type": "application/json"})
    assert response.status == 400, await response.text()
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_str(deep)
        assert (await ws.receive_json())["error"].startswith("user: ")


async def test_the_pages_language_answers_a_message_in_no_language(client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A first message without a letter (an order number) on a Chinese page was answered in English."""
    fallback = load_project(web_demo_bot.root).config.fallback
    for language, text, expected in [("zh", "？？", fallback.rephrase["zh"]), (None, "？？", fallback.rephrase["en"]),
                                     ("zh", "hello?!", fallback.message["en"])]:  # no words: asked to put it in words
        response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": text,
                                                        **({"language": language} if language else {})})
        reply = await response.json()
        assert reply["reply"] == expected, (language, text, reply)
    response = await client.post("/api/chat", json={"conversation_id": new_id(), "text": "hi", "language": "fr"})
    assert response.status == 400 and (await response.json())["error"].startswith("language: ")


async def test_feedback_only_on_a_turn_of_the_given_conversation(client: Any, web_demo_bot: SimpleNamespace) -> None:
    mine, theirs = new_id(), new_id()
    reply = await chat(client, theirs, "where is my parcel")
    for conversation in (mine, "web-never-seen"):  # another customer's reply, or a made-up conversation
        response = await client.post("/api/feedback", json={"conversation_id": conversation, "turn_id": reply["turn_id"],
                                                             "value": -1})
        assert response.status == 404
        assert (await response.json())["error"] == f"turn_id: no bot turn {reply['turn_id']} in conversation {conversation}"
    response = await client.post("/api/feedback", json={"turn_id": reply["turn_id"], "value": -1})
    assert response.status == 400 and (await response.json())["error"] == "conversation_id: Field required"
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM feedback WHERE turn_id = ?", [reply["turn_id"]]).fetchone() == (0,)
    response = await client.post("/api/feedback", json={"conversation_id": theirs, "turn_id": reply["turn_id"], "value": 1})
    assert response.status == 200  # its own conversation may rate it


async def test_a_conversation_id_of_dots_alone_is_refused(client: Any) -> None:
    """"." and ".." were taken, and shown to the agents, but a URL reads them as its own segments: the
    console could never open, answer or take over such a conversation."""
    for cid in (".", "..", "..."):
        response = await client.post("/api/chat", json={"conversation_id": cid, "text": "/handoff"})
        assert response.status == 400 and (await response.json())["error"].startswith("conversation_id: "), cid
    assert (await client.post("/api/chat", json={"conversation_id": "v1.2", "text": "hi"})).status == 200


async def test_other_channels_conversations_are_out_of_the_web_apis_reach(client: Any, web_demo_bot: SimpleNamespace) -> None:
    """Slack's and WeCom's ids are ``name:…``, and guessable; a web client's id has no ``:``, so a browser can
    neither read a WeCom customer's messages nor write, vote or listen in their conversation. The
    agents reach it, userid ``@`` and all."""
    cid = "wecom:ww1:alice@corp.example"
    turn_id = Store(web_demo_bot.root / "dialogues.db").add_message(cid, "bot", "Your card is on its way.", "wecom")
    responses = [await client.post("/api/chat", json={"conversation_id": cid, "text": "hand me to a person"}),
                 await client.get(f"/api/conversations/{cid}/history"),
                 await client.post("/api/feedback", json={"conversation_id": cid, "turn_id": turn_id, "value": -1})]
    for response in responses:
        assert response.status == 400 and (await response.json())["error"].startswith("conversation_id: String should match")
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "join", "conversation_id": cid})
        assert (await ws.receive_json())["type"] == "error"
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT role, channel FROM turns WHERE conversation_id = ?", [cid]).fetchall() == [("bot", "wecom")]
        assert db.execute("SELECT count(*) FROM feedback WHERE turn_id = ?", [turn_id]).fetchone() == (0,)
        assert db.execute("SELECT status FROM conversations WHERE id = ?", [cid]).fetchone() == ("open",)
    response = await client.get(f"/admin/conversations/{cid}", headers={"Authorization": f"Bearer {web_demo_bot.admin_token}"})
    assert response.status == 200 and (await response.json())["turns"][0]["text"] == "Your card is on its way."


async def test_bad_socket_frames_get_errors_and_the_socket_stays_open(client: Any) -> None:
    """An error names the request it refuses whenever the frame's type could be read: the widget took a refused
    join's error for its next message's."""
    async with client.ws_connect("/api/ws") as ws:
        for frame, reason, refused in [
                ("{oops", "malformed JSON", None), ("[1]", "JSON object", None), ('{"type": "dance"}', "type: must be", None),
                ('{"type": ["join"], "conversation_id": "a"}', "type: must be", None),
                ('{"type": "join", "conversation_id": "a b"}', "conversation_id", "join"),
                ('{"type": "join"}', "conversation_id: Field required", "join"),
                ('{"conversation_id": "a", "text": "hi", "extra": 1}', "extra", "message"),
                ('{"conversation_id": "a", "txt": "hi"}', "txt: unknown field", "message")]:  # not "text: Field required"
            await ws.send_str(frame)
            message = await ws.receive_json()
            assert message["type"] == "error" and reason in message["error"], frame
            assert message.get("request") == refused, frame
        await ws.send_bytes(b'{"type": "join", "conversation_id": "a"}')
        assert await ws.receive_json(timeout=10) == {"type": "error", "error": "frame: send JSON in a text frame"}
        await ws.send_json({"type": "message", "conversation_id": new_id(), "text": "still there?"})
        assert (await ws.receive_json())["type"] == "reply"


async def test_agent_messages_and_handoffs_are_pushed_to_joined_sockets(client: Any, web_demo_bot: SimpleNamespace) -> None:
    token = web_demo_bot.admin_token
    async with joined_socket(client) as (cid, ws):
        assert (await admin(client, token, f"/admin/conversations/{cid}/handoff")).status == 200
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "agent"}
        response = await admin(client, token, f"/admin/conversations/{cid}/messages",
                               {"text": "Hi, I'm Sam.", "agent": "Sam"})
        turn_id = (await response.json())["turn_id"]
        # the customer nobody had is Sam's now, and their widget names him
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "agent",
                                           "agent": "Sam"}
        assert await ws.receive_json() == {"type": "agent", "conversation_id": cid, "reply": "Hi, I'm Sam.", "turn_id": turn_id,
                                              "author": "Sam", "buttons": []}
        await ws.send_json({"conversation_id": cid, "text": "thanks Sam"})  # the bot stays quiet for the agent
        reply = await ws.receive_json()
        assert (reply["type"], reply["source"], reply["reply"], reply["handed_off"]) == ("reply", "silent", "", True)
        # The customer's own way back, from another tab: that tab gets the bot's "back with the bot" reply, so
        # this one says it is by the customer (the widget announced it as well, twice over).
        await chat(client, cid, "/resume")
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "open", "by": "customer"}


async def test_the_widget_is_told_the_name_of_the_agent_who_took_over(client: Any, web_demo_bot: SimpleNamespace) -> None:
    """An agent who gives their name on taking over (?agent=) is named in the status pushed to the widget, and in
    the status it reads again on joining and in the history after a reload, so its banner can name them."""
    token = web_demo_bot.admin_token
    async with joined_socket(client) as (cid, ws):
        assert (await admin(client, token, f"/admin/conversations/{cid}/handoff?agent=Ana")).status == 200
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "agent",
                                           "agent": "Ana"}
        await ws.send_json({"type": "join", "conversation_id": cid})
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off",
                                           "agent": "Ana"}
    history = await (await client.get(f"/api/conversations/{cid}/history")).json()
    assert (history["status"], history["agent"]) == ("handed_off", "Ana")
    await chat(client, cid, "/resume")
    assert "agent" not in await (await client.get(f"/api/conversations/{cid}/history")).json()


async def test_the_widget_is_told_the_name_of_an_agent_who_gives_it_with_their_first_reply(
        client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A customer who asked for a person is waiting already: the agent who names themselves only with their reply is
    named in a status pushed before it, once, so the banner names them without a reload."""
    token = web_demo_bot.admin_token
    async with joined_socket(client) as (cid, ws):
        await chat(client, cid, "/handoff")
        assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off",
                                           "by": "customer"}
        assert await ws.receive_json() == {"type": "sync", "conversation_id": cid}  # answered over HTTP
        for text in ("Hi, I'm Ana.", "How can I help?"):
            assert (await admin(client, token, f"/admin/conversations/{cid}/messages",
                                {"text": text, "agent": "Ana"})).status == 200
            if text == "Hi, I'm Ana.":
                assert await ws.receive_json() == {"type": "status", "conversation_id": cid, "status": "handed_off",
                                                   "by": "agent", "agent": "Ana"}
            assert (await ws.receive_json())["reply"] == text


async def test_the_widget_is_told_the_name_of_the_agent_who_takes_the_customer_over_from_a_colleague(
        client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A lead's forced takeover, and an agent's takeover of a customer who asked for a person, change who has the
    customer but not the status: the banner went on naming the colleague, or nobody, until the chat was reloaded."""
    token = web_demo_bot.admin_token
    async with joined_socket(client) as (cid, ws):
        await chat(client, cid, "/handoff")

        async def pushed_until(kind: str) -> list[dict[str, Any]]:
            """The frames pushed up to the first of type ``kind``, that one included."""
            frames = [await ws.receive_json(timeout=5)]
            while frames[-1]["type"] != kind:
                frames.append(await ws.receive_json(timeout=5))
            return frames

        assert (await pushed_until("status"))[-1]["by"] == "customer"
        for query, agent in (("?agent=Ana", "Ana"), ("?agent=Bob&force=true", "Bob")):
            assert (await admin(client, token, f"/admin/conversations/{cid}/handoff{query}")).status == 200
            assert (await pushed_until("status"))[-1] == {"type": "status", "conversation_id": cid,
                                                          "status": "handed_off", "by": "agent", "agent": agent}
        # Bob's own takeover again changes nothing, and says nothing
        assert (await admin(client, token, f"/admin/conversations/{cid}/handoff?agent=bob")).status == 200
        assert (await admin(client, token, f"/admin/conversations/{cid}/messages", {"text": "Hi", "agent": "Bob"})).status == 200
        assert [frame["type"] for frame in await pushed_until("agent") if frame["type"] == "status"] == []


async def test_a_socket_hears_only_its_latest_conversations(client: Any, web_demo_bot: SimpleNamespace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """One socket cannot hold any number of conversations: past MAX_JOINED it stops hearing the oldest."""
    monkeypatch.setattr("bot.channels.web.MAX_JOINED", 2)
    first, second, third = new_id(), new_id(), new_id()
    for cid in (first, second):
        await chat(client, cid, "hello")
    async with client.ws_connect("/api/ws") as ws:
        for cid in (first, second, first, third):  # joining first again makes second the oldest
            await ws.send_json({"type": "join", "conversation_id": cid})
            assert (await ws.receive_json())["type"] == "status"
        for cid in (second, first):
            assert (await admin(client, web_demo_bot.admin_token, f"/admin/conversations/{cid}/handoff")).status == 200
        assert await ws.receive_json(timeout=10) == {"type": "status", "conversation_id": first, "status": "handed_off",
                                                     "by": "agent"}


async def test_cors_for_listed_origins_only(client: Any, web_demo_bot: SimpleNamespace) -> None:
    allowed, other = web_demo_bot.embed_origin, "http://evil.example"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    response = await client.options("/api/chat", headers={"Origin": allowed, **preflight})
    assert response.status == 204 and response.headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert (await client.options("/api/chat", headers={"Origin": other, **preflight})).status == 403

    response = await client.get("/api/widget", headers={"Origin": allowed})
    assert response.headers["Access-Control-Allow-Origin"] == allowed
    assert await response.json() == {"title": {"en": "Demo Shop support", "zh": "Demo Shop 在线客服"},
                                     "title_traditional": "Demo Shop 在線客服",
                                     "title_hongkong": "Demo Shop 在線客服", "language": "multi",
                                     "max_message_chars": 4000, "readable": READABLE, "user_id": web_channel.USER_ID}
    assert "Access-Control-Allow-Origin" not in (await client.get("/api/widget", headers={"Origin": other})).headers
    # errors carry the header too, so the widget can read the reason
    response = await client.post("/api/chat", data=b"{", headers={"Origin": allowed})
    assert response.status == 400 and response.headers["Access-Control-Allow-Origin"] == allowed

    for origin in (allowed, None):  # same-site and non-browser clients need no listing
        headers = {"Origin": origin} if origin else {}
        async with client.ws_connect("/api/ws", headers=headers) as ws:
            await ws.send_json({"type": "join", "conversation_id": new_id()})
            assert (await ws.receive_json())["type"] == "status"
    response = await client.get("/api/ws", headers={"Origin": other, "Connection": "Upgrade", "Upgrade": "websocket",
                                                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 403


async def test_a_page_of_an_unlisted_site_is_said_in_the_log_once_a_minute(
        client: Any, web_demo_bot: SimpleNamespace, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A shop that put the widget on its site before listing the site's origin saw *Not sent* under every message,
    and `bot serve`'s log said nothing of why: the browser's console alone named the origin to list."""
    # The module's server refused other sites before: the minute starts afresh here.
    monkeypatch.setattr(client.app[BOT].channels["web"], "_unlisted_said", -web_channel.UNLISTED_SAID_S)
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with caplog.at_level("WARNING", logger=web_channel.__name__):
        for origin in ("http://shop.example:8000", "http://other.example"):
            assert (await client.options("/api/chat", headers={"Origin": origin, **preflight})).status == 403
        listed = await client.options("/api/chat", headers={"Origin": web_demo_bot.embed_origin, **preflight})
        assert listed.status == 204
    said = [r.getMessage() for r in caplog.records if "channels.web.origins does not list" in r.getMessage()]
    assert said == ["refused the web chat to a page of 'http://shop.example:8000', a site channels.web.origins does "
                    "not list: if the widget is meant to be there, list the origin in bot.yml and restart bot serve "
                    "(said once a minute at most)"]


async def test_widget_and_demo_page_are_served(client: Any) -> None:
    response = await client.get("/widget.js")
    assert response.status == 200 and response.content_type == "application/javascript" and response.charset == "utf-8"
    assert "deskbotConfig" in await response.text()
    response = await client.get("/")
    assert response.status == 200 and '<script src="widget.js"' in await response.text()  # beside the page, under any prefix


async def test_a_message_answered_elsewhere_tells_the_conversations_other_sockets(client: Any) -> None:
    """Another tab, or this page reloaded while the answer was on its way, could not see the turn yet."""
    cid = new_id()
    async with client.ws_connect("/api/ws") as other, client.ws_connect("/api/ws") as sender:
        for ws in (other, sender):
            await ws.send_json({"type": "join", "conversation_id": cid})
            assert (await ws.receive_json(timeout=10))["type"] == "status"
        await sender.send_json({"type": "message", "conversation_id": cid, "text": "hello"})
        assert (await sender.receive_json(timeout=10))["type"] == "reply"  # the sender gets its reply, no sync
        assert await other.receive_json(timeout=10) == {"type": "sync", "conversation_id": cid}
        await chat(client, cid, "thanks")  # over HTTP: every socket of the conversation hears it
        assert [await ws.receive_json(timeout=10) for ws in (other, sender)] == [{"type": "sync", "conversation_id": cid}] * 2


async def test_a_message_sent_again_with_its_message_id_is_answered_once(client: Any) -> None:
    """The widget's Retry, from the tab that sent it or another, while the first is still answered or after: each
    got an answer of its own, and the conversation had the customer's message twice."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}

    async def over_http() -> dict[str, Any]:
        response = await client.post("/api/chat", json=message)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    first, at_once = await asyncio.gather(over_http(), over_http())
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "message", **message})
        over_socket = await ws.receive_json(timeout=10)
    assert over_socket.pop("type") == "reply"
    assert first == at_once == over_socket == await over_http()
    other = await chat(client, cid, "my parcel never arrived")  # without an id, or with another, a message of its own
    assert other["user_turn_id"] > first["turn_id"]
    assert await roles(client, cid) == ["user", "bot"] * 2


async def test_a_message_sent_again_after_its_conversation_was_purged_is_not_answered_from_memory(
        client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A running server kept its replies by message_id in memory for ten minutes, where `bot purge`, run in another
    process, does not reach: the message sent again after the purge got the purged reply back, and the conversation
    stayed erased though its customer had written in it again."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    first = await (await client.post("/api/chat", json=message)).json()
    purged = CliRunner().invoke(cli, ["purge", str(web_demo_bot.root), "--conversation", cid])
    assert purged.exit_code == 0, purged.output
    response = await client.post("/api/chat", json=message)
    assert response.status == 200, await response.text()
    again = await response.json()
    assert again["user_turn_id"] > first["turn_id"]  # answered anew, not from memory
    assert await roles(client, cid) == ["user", "bot"]
    unpurged = {"conversation_id": cid, "text": "thanks", "message_id": "m-2"}  # one no purge reached: from memory
    assert await (await client.post("/api/chat", json=unpurged)).json() == \
        await (await client.post("/api/chat", json=unpurged)).json()
    assert await roles(client, cid) == ["user", "bot"] * 2


async def test_a_message_sent_again_after_a_restart_gets_its_first_answer(aiohttp_client: Any,
                                                                          web_demo_bot: SimpleNamespace) -> None:
    """The answers sent were kept in the server's memory alone: a Retry reaching the server started since (a deploy)
    was answered again, and the conversation had the customer's message twice."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    before = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    first = await (await before.post("/api/chat", json=message)).json()
    await before.close()
    after = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    response = await after.post("/api/chat", json=message)
    assert response.status == 200 and await response.json() == first
    assert await roles(after, cid) == ["user", "bot"]


async def test_a_message_sent_again_after_a_restart_shows_the_customer_what_they_wrote_in_it(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """The store keeps a reply quoting the customer redacted: a Retry reaching the server started since showed them
    "[PHONE]" where the first answer had the number they had just written. It is filled in from the message sent
    again, nothing from the store; what that message does not hold stays redacted."""
    cid = new_id()
    message = {"conversation_id": cid, "text": '/cancel_order{"order_id": "13812345678"}', "message_id": "m-1"}
    before = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    first = await (await before.post("/api/chat", json=message)).json()
    await before.close()
    assert "13812345678" in first["reply"]
    after = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    assert await (await after.post("/api/chat", json=message)).json() == first
    history = await (await after.get(f"/api/conversations/{cid}/history")).json()
    assert "[PHONE]" in history["turns"][1]["text"]  # the store keeps it redacted still
    other = {**message, "conversation_id": new_id(), "text": '/cancel_order{"order_id": "13912345678"}'}
    await (await after.post("/api/chat", json=other)).json()
    restarted = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    again = await (await restarted.post("/api/chat", json={**other, "text": "/cancel_order"})).json()
    assert "[PHONE]" in again["reply"]  # the message sent again does not say which number the reply quoted


async def sent_to_two_servers(aiohttp_client: Any, web_demo_bot: SimpleNamespace, message: dict[str, Any],
                              before: Callable[[Any], Awaitable[None]] | None = None,
                              failure: BaseException | None = None) -> tuple[asyncio.Task[Any], asyncio.Task[Any], Any]:
    """``message`` sent to the first of two servers on one store (a deploy's old and new, or a load balancer's two),
    then again to the second while the first answers it: the first's answer is held until the second waits for it.
    ``before``: what is done on the first server's client before (a handoff); ``failure``: what the first's turn
    raises once let go, instead of answering. The two requests' tasks, and the second server's client."""
    first_app, second_app = (create_app(web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    if before is not None:
        await before(first)
    answering, waiting, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handle = first_app[BOT].handle

    async def held(turn: Any, *holding: Any) -> Any:
        answering.set()
        await go_on.wait()
        if failure is not None:
            raise failure
        return await handle(turn, *holding)

    first_app[BOT].handle = held
    channel = second_app[BOT].channels["web"]
    claimed = channel._claimed

    async def claimed_or_waits(turn: Any) -> bool:  # the second finds the first answering, and waits for its answer
        if not (mine := await claimed(turn)):
            waiting.set()
        return mine

    channel._claimed = claimed_or_waits
    answered_first = asyncio.create_task(first.post("/api/chat", json=message))
    await answering.wait()
    answered_again = asyncio.create_task(second.post("/api/chat", json=message))
    await asyncio.wait_for(waiting.wait(), 10)
    go_on.set()
    return answered_first, answered_again, second


async def test_a_message_sent_again_to_another_server_while_the_first_answers_it_is_answered_once(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """Two servers on one store: a Retry reaching the second while the first was still answering (nothing of it
    stored yet) was answered again, and kept twice. The second waits for the first's answer and gives it."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    answered_first, answered_again, second = await sent_to_two_servers(aiohttp_client, web_demo_bot, message)
    replies = [await (await task).json() for task in (answered_first, answered_again)]
    assert replies[0] == replies[1]
    assert await roles(second, cid) == ["user", "bot"]


async def test_what_is_said_through_one_server_reaches_the_customers_socket_on_another(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """Two servers on one store behind a load balancer: each pushed what it said to its own sockets alone, so an
    agent's reply sent through one reached a customer whose socket was on the other only at their next reload or
    message. The other server finds it in the store and pushes it, once, after the takeover it made, as the first
    pushes them; and a sync, as for the customer's message answered by the first (another tab): the widget reads
    the history."""
    first, second = [await aiohttp_client(create_app(web_demo_bot.root, device="cpu")) for _ in range(2)]
    async with joined_socket(second) as (cid, ws):
        response = await admin(first, web_demo_bot.admin_token, f"/admin/conversations/{cid}/messages",
                               {"text": "Hi, I'm Ana.", "agent": "Ana"})
        assert response.status == 200
        turn_id = (await response.json())["turn_id"]
        heard = [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)]
        assert [frame for frame in heard if frame["type"] != "sync"] == [
            {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "agent", "agent": "Ana"},
            {"type": "agent", "conversation_id": cid, "reply": "Hi, I'm Ana.", "turn_id": turn_id, "author": "Ana",
             "buttons": []}]
        assert heard[-1] == {"type": "sync", "conversation_id": cid}
        await chat(first, cid, "thanks Ana")
        assert await ws.receive_json(timeout=10) == {"type": "sync", "conversation_id": cid}
        assert [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)] == []


async def test_servers_look_for_what_the_others_said_as_often_as_bot_yml_says(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path) -> None:
    """Every half second, fixed: a shop whose servers share a busy store could neither look less often (each look is
    a read of the store) nor sooner. ``server.peers_seconds`` sets it: at 60 s an agent's reply through another server
    waits for the next look, where at the half second it came within a second."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"peers_seconds": 60})
    first, second = [await aiohttp_client(create_app(root, device="cpu")) for _ in range(2)]
    async with joined_socket(second) as (cid, ws):
        response = await admin(first, web_demo_bot.admin_token, f"/admin/conversations/{cid}/messages",
                               {"text": "Hi, I'm Ana.", "agent": "Ana"})
        assert response.status == 200
        assert [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)] == []


async def test_an_agents_named_reply_through_another_server_has_the_widget_read_who_has_the_customer(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A customer who asked for a person, taken by an agent who names themselves only as they take over or reply
    through another server than the customer's socket's: no handoff is written, and that socket heard the reply alone,
    its banner naming nobody until a reload. The reply comes with a sync, and the history names the agent."""
    first, second = [await aiohttp_client(create_app(web_demo_bot.root, device="cpu")) for _ in range(2)]
    async with joined_socket(second) as (cid, ws):
        await chat(first, cid, "/handoff")  # from another tab, whose requests went to the other server
        assert [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)] == [
            {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "customer"},
            {"type": "sync", "conversation_id": cid}]
        token = web_demo_bot.admin_token
        assert (await admin(first, token, f"/admin/conversations/{cid}/handoff?agent=Ana")).status == 200
        assert [frame["type"] async for frame in frames_within(ws, 2 * PEERS_S + 1)] == ["status", "sync"]
        response = await admin(first, token, f"/admin/conversations/{cid}/messages", {"text": "Hi", "agent": "Ana"})
        assert response.status == 200
        heard = [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)]
        assert [frame["type"] for frame in heard] == ["agent", "sync"]
    history = await (await second.get(f"/api/conversations/{cid}/history")).json()
    assert (history["status"], history["agent"]) == ("handed_off", "Ana")


async def test_an_agents_takeover_of_a_customer_waiting_for_a_person_reaches_the_sockets_on_another_server(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """An agent taking over, through one server, a customer who had asked for a person names themselves on the
    customer's handoff: no new handoff is written, and a socket on the other server on the store heard nothing, its
    banner naming nobody until the agent's first reply. It hears the status frame the first server pushes to its own,
    and a sync; a second takeover by the same agent changes nothing and is not pushed again."""
    first, second = [await aiohttp_client(create_app(web_demo_bot.root, device="cpu")) for _ in range(2)]
    token = web_demo_bot.admin_token
    async with joined_socket(second) as (cid, ws):
        await chat(first, cid, "/handoff")
        assert [frame["type"] async for frame in frames_within(ws, 2 * PEERS_S + 1)] == ["status", "sync"]
        for _ in range(2):
            assert (await admin(first, token, f"/admin/conversations/{cid}/handoff?agent=Ana")).status == 200
        assert [frame async for frame in frames_within(ws, 2 * PEERS_S + 1)] == [
            {"type": "status", "conversation_id": cid, "status": "handed_off", "by": "agent", "agent": "Ana"},
            {"type": "sync", "conversation_id": cid}]


async def test_a_failure_to_pass_on_what_another_server_said_leaves_the_next_to_be_passed_on(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store read that failed while a server passed on another's agent reply ended its watch for good: no later
    reply sent through the other server reached that server's sockets until a restart."""
    first, second = [await aiohttp_client(create_app(web_demo_bot.root, device="cpu")) for _ in range(2)]
    channel = second.app[BOT].channels["web"]
    async with joined_socket(second) as (cid, ws):
        conversation, failed = channel.conversation, asyncio.Event()

        async def failing_once(conversation_id: str) -> Any:
            if not failed.is_set():
                failed.set()
                raise sqlite3.OperationalError("disk I/O error")
            return await conversation(conversation_id)

        monkeypatch.setattr(channel, "conversation", failing_once)
        for text in ("Hi, I'm Ana.", "Are you still there?"):
            response = await admin(first, web_demo_bot.admin_token, f"/admin/conversations/{cid}/messages",
                                   {"text": text, "agent": "Ana"})
            assert response.status == 200
            await asyncio.wait_for(failed.wait(), 10)  # the first was not passed on
        while (frame := await ws.receive_json(timeout=10))["type"] != "agent":
            pass
        assert frame["reply"] == "Are you still there?"


async def answered_at_once_by_two_servers(aiohttp_client: Any, web_demo_bot: SimpleNamespace, held: str,
                                          meanwhile: dict[str, Any], first_said: str = "hello",
                                          root: Path | None = None, held_for: float = 0.0,
                                          store_held: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A conversation that began with ``first_said``, whose message ``held`` is sent to a first server, whose turn is
    held once it has read the conversation and before it is logged, while ``meanwhile`` of the conversation is sent to
    a second server on the store; once the second waits for the first's turn to end (or has answered, where that turn
    counts as hung at once: ``TURN_STALE_S``), the first's goes on; with ``held_for``, once the second still waits
    that many seconds after the first's turn was held. The conversation's row as the store keeps it then, and the two
    replies, the first's first. ``root``: the bot (the web demo's by default); ``store_held``: the first server's store
    thread is held up too meanwhile (a long job on it)."""
    cid = new_id()
    first_app, second_app = (create_app(root or web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    await chat(first, cid, first_said)
    writing, go_on, waiting = asyncio.Event(), asyncio.Event(), asyncio.Event()
    log, store, loop = first_app[BOT]._log, second_app[BOT].store, asyncio.get_running_loop()
    take_turn, held_at = store.take_turn, 0.0

    async def held_log(*args: Any, **kwargs: Any) -> Any:  # the conversation is read: held before it is written
        nonlocal held_at
        held_at = time.time()
        writing.set()
        await go_on.wait()
        return await log(*args, **kwargs)

    def taken_or_waits(conversation_id: str, stale: Any) -> bool:  # on the second server's store thread
        if not (taken := take_turn(conversation_id, stale)) and time.time() - held_at >= held_for:
            loop.call_soon_threadsafe(waiting.set)
        return taken

    first_app[BOT]._log = held_log
    answered_first = asyncio.create_task(chat(first, cid, held))
    await writing.wait()
    store_free = threading.Event()
    if store_held:
        first_app[BOT]._db.submit(store_free.wait)
    store.take_turn = taken_or_waits
    answered_meanwhile = asyncio.create_task(second.post("/api/chat", json={"conversation_id": cid, **meanwhile}))
    await asyncio.wait([answered_meanwhile, asyncio.create_task(waiting.wait())], timeout=held_for + 10,
                       return_when=asyncio.FIRST_COMPLETED)
    go_on.set()
    store_free.set()
    replies = [await answered_first, await (await answered_meanwhile).json()]
    with sqlite3.connect((root or web_demo_bot.root) / "dialogues.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM conversations WHERE id = ?", [cid]).fetchone()), replies


@pytest.fixture
def hung(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every server's turn counts as hung at once (``TURN_STALE_S``), so that another server on the store runs a turn
    of the same conversation beside it, as it does beside a server hung mid-turn."""
    monkeypatch.setattr(engine_module, "TURN_STALE_S", -60.0)


async def test_two_servers_answering_one_conversation_at_once_keep_the_slots_each_set(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, hung: None) -> None:
    """Two servers on one store (two tabs behind a load balancer) running turns of one conversation at once: each
    turn read the slots, and wrote them whole, so the slot set by the message the second server answered meanwhile
    was lost when the first wrote its own."""
    conversation, _ = await answered_at_once_by_two_servers(aiohttp_client, web_demo_bot,
                                                            '/check_refund_policy{"order_id": "12345"}',
                                                            {"text": "hi", "metadata": {"user_id": 17}})
    slots = json.loads(conversation["slots"])
    assert (slots.get("order_id"), slots.get("session_started_metadata")) == ("12345", {"user_id": 17})


@pytest.mark.parametrize("at_once", [True, False], ids=["at once", "one after the other"])
async def test_two_servers_missing_messages_of_one_conversation_count_both_misses(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, at_once: bool) -> None:
    """Each turn wrote the count of fallbacks in a row it read plus its own miss, whole: two misses answered at once
    by two servers counted one, and a customer the bot kept missing reached the handoff after
    ``fallbacks_before_handoff`` late."""
    if at_once:
        monkeypatch.setattr(engine_module, "TURN_STALE_S", -60.0)
    conversation, _ = await answered_at_once_by_two_servers(aiohttp_client, web_demo_bot, "where is my parcel",
                                                            {"text": "my parcel never came"})
    assert conversation["fallbacks"] == 3  # "hello" first, then both


async def test_an_answer_by_a_server_after_anothers_miss_starts_the_count_of_misses_again(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, hung: None) -> None:
    """A miss on one server and an answer on another, both on a conversation whose count of misses was 0 when their
    turns read it: the answer, logged second, left the count the miss made (1), taken for an "ok" that leaves it, and
    the customer's next miss after an answer got the fallback for a second miss in a row."""
    conversation, replies = await answered_at_once_by_two_servers(
        aiohttp_client, web_demo_bot, "/check_refund_policy", {"text": "where is my parcel"},
        first_said="/check_refund_policy")
    assert (replies[0]["source"], replies[1]["source"], conversation["fallbacks"]) == ("silent", "fallback", 0)


async def test_a_turn_another_server_took_over_drops_its_answer_and_leaves_the_conversation_to_that_server(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, hung: None, caplog: pytest.LogCaptureFixture) -> None:
    """A server whose turn went ``TURN_STALE_S`` without a renewal (hung, or its store too slow) only logged that
    another server took it over, and both answered: the customer got the first server's late answer beside the
    other's. The late answer is dropped, and said in the log; the customer's message is kept, unanswered."""
    with caplog.at_level("WARNING", logger="deskbot"):
        conversation, replies = await answered_at_once_by_two_servers(
            aiohttp_client, web_demo_bot, "/check_refund_policy", {"text": "where is my parcel"})
    assert [(reply["source"], reply["reply"]) for reply in replies][0] == ("silent", "")
    assert replies[1]["source"] == "fallback" and replies[1]["reply"]
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        said = db.execute("SELECT role, text FROM turns WHERE conversation_id = ? ORDER BY id",
                          [conversation["id"]]).fetchall()
    assert [role for role, _ in said] == ["user", "bot", "user", "bot", "user"]  # "hello" answered, then the two
    assert [text for role, text in said if role == "user"] == ["hello", "where is my parcel", "/check_refund_policy"]
    assert said[3][1] == replies[1]["reply"]
    assert any("another server on the store took it over" in record.getMessage()
               and log_tag(conversation["id"]) in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("taken", ["turn_leases", "answering"], ids=["its turn", "its claim of the message"])
async def test_a_turn_another_server_took_over_is_given_up_at_once_and_runs_no_action_after(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, taken: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A server whose turn another server on the store took over (its renewals late: hung, or its store too slow)
    found it at its next renewal and only logged it: the turn ran on, and an action in it (a cancellation) ran there
    as well as on the server that took the conversation over. The turn is given up as the renewal finds it gone, and
    the customer's message is kept unanswered, for the other server to answer. So is one whose claim of the web
    message alone another server took (the widget's Retry sent there): that server answers the message."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.05)  # renewals' pace: the test waits for events alone
    cid = new_id()
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    bot = app[BOT]
    acting, go_on, given_up, ran = asyncio.Event(), asyncio.Event(), asyncio.Event(), []
    handle = bot._handle

    async def held_action(turn: Any) -> Any:  # the turn's action, held until the server gives the turn up
        acting.set()
        try:
            await go_on.wait()
        except asyncio.CancelledError:
            given_up.set()
            raise
        ran.append(turn.text)
        return await handle(turn)

    bot._handle = held_action
    answered = asyncio.create_task(client.post("/api/chat", json={"conversation_id": cid, "text": "cancel my order",
                                                                  "message_id": "m-1"}))
    await acting.wait()
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:  # another server took it over
        assert db.execute(f"UPDATE {taken} SET server = 'other-server' WHERE conversation_id = ?", [cid]).rowcount
    try:
        await asyncio.wait_for(given_up.wait(), 10)
    finally:
        go_on.set()
    reply = await (await answered).json()
    assert (reply["source"], reply["reply"], ran) == ("silent", "", [])
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        said = db.execute("SELECT role, text, message_id FROM turns WHERE conversation_id = ? ORDER BY id",
                          [cid]).fetchall()
        held = db.execute(f"SELECT server FROM {taken} WHERE conversation_id = ?", [cid]).fetchone()
    assert said == [("user", "cancel my order", None)] and held == ("other-server",)
    # the warning that this server lost it names the conversation by its tag, as every line of deskbot's does: a web
    # conversation's id is the visitor's key to it
    assert "another server on the store took it" in caplog.text and log_tag(cid) in caplog.text
    assert cid not in caplog.text


async def test_a_server_whose_renewals_keep_failing_is_not_ready_until_they_work_again(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A server whose renewals of its turns and claims failed for good (its connection for them failing alone) only
    logged each: the other server on the store took its conversations over, and the load balancer went on sending it
    customers whose answers were then dropped. /healthz answers 503 with why once they have failed ``TURN_STALE_S``,
    after the turn that met them too, and ok again once a write on their connection works."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.05)  # renewals' pace: the test waits for what they do
    monkeypatch.setattr(engine_module, "TURN_STALE_S", 0.5)
    monkeypatch.setattr("bot.server.HEALTH_PROBE_S", 0.0)
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    bot = app[BOT]
    acting, go_on, failing, renewed = asyncio.Event(), asyncio.Event(), threading.Event(), bot._renewed
    handle = bot._handle

    async def held(turn: Any) -> Any:  # the turn runs on while its renewals fail
        acting.set()
        await go_on.wait()
        return await handle(turn)

    def renewed_unless_failing(renew: Any) -> Any:  # on the renewals' thread
        if failing.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        return renewed(renew)

    async def health() -> tuple[int, dict[str, Any]]:
        response = await client.get("/healthz")
        return response.status, await response.json()

    async def health_once(status: int) -> dict[str, Any]:  # the check's answer once it changes to ``status``
        for _ in range(400):
            if (said := await health())[0] == status:
                return said[1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"/healthz never answered {status}")

    bot._handle, bot._renewed = held, renewed_unless_failing
    assert (await health())[0] == 200
    with caplog.at_level("INFO", logger="deskbot"):
        failing.set()
        answered = asyncio.create_task(chat(client, new_id(), "hello"))
        await acting.wait()
        unready = await health_once(503)
        assert "renewals of its turns in the conversation store have failed" in unready["error"]
        go_on.set()
        await answered
        assert (await health())[0] == 503  # no renewal since, and a check's write on their connection fails too
        failing.clear()
        assert (await health_once(200))["status"] == "ok"
    said = [record.getMessage() for record in caplog.records if "renew" in record.getMessage()
            and "cannot renew" not in record.getMessage()]
    assert len(said) == 2 and "/healthz answers 503" in said[0] and "disk I/O error" in said[0]
    assert said[1].startswith("this server renews its turns and claims in the conversation store again")


@pytest.mark.parametrize("taken", ["turn_leases", "answering"], ids=["its turn", "its claim of the message"])
async def test_an_action_is_not_run_once_another_server_took_its_turn_over_before_the_next_renewal(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, taken: str) -> None:
    """A takeover was found at the turn's next renewal, up to ``TURN_RENEW_S`` after it: a server whose event loop
    had been held up, and whose turn another server took over meanwhile, went on to run the turn's action (a
    cancellation) before that renewal, beside the server answering the conversation now. The turn renews what it
    holds before each action, and gives the rest up where it is lost."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 3600.0)  # no renewal on its own before the action
    cid = new_id()
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    bot = app[BOT]
    reading, go_on, ran = asyncio.Event(), asyncio.Event(), []
    past_events, run = bot._past_events, bot.actions.run

    async def held_before_the_action(conversation_id: str) -> Any:  # the action's tracker is being made
        reading.set()
        await go_on.wait()
        return await past_events(conversation_id)

    async def recorded(call: dict[str, Any], *args: Any) -> Any:
        ran.append(call["next_action"])
        return await run(call, *args)

    bot._past_events, bot.actions.run = held_before_the_action, recorded
    with caplog.at_level("WARNING", logger="deskbot"):
        answered = asyncio.create_task(client.post("/api/chat", json={"conversation_id": cid, "text": "/track_order",
                                                                      "message_id": "m-1"}))
        await reading.wait()
        with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:  # another server took it over meanwhile
            assert db.execute(f"UPDATE {taken} SET server = 'other-server' WHERE conversation_id = ?", [cid]).rowcount
        go_on.set()
        reply = await (await answered).json()
    assert (reply["source"], reply["reply"], ran) == ("silent", "", [])
    assert any("another server on the store took it: the rest of it is given up here" in record.getMessage()
               for record in caplog.records)
    bot._past_events = past_events
    assert (await chat(client, new_id(), "/track_order"))["source"] != "silent" and ran == ["action_order_status"]


async def test_a_conversations_messages_on_two_servers_are_answered_one_after_the_other(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path) -> None:
    """Each server ran a conversation's turns one after another for itself alone: a message reaching a second server
    while the first answered another of the conversation was answered at once, on the conversation as it was before
    the first's turn, so the miss that reached ``fallbacks_before_handoff`` got one more fallback, and the handoff came
    a miss late. The second waits for the first's turn, and answers on what it left."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", thresholds={"fallbacks_before_handoff": 3})
    conversation, replies = await answered_at_once_by_two_servers(
        aiohttp_client, web_demo_bot, "where is my parcel", {"text": "my parcel never came"}, root=root)
    assert [reply["source"] for reply in replies] == ["fallback", "handoff"]  # "hello" missed first
    assert conversation["status"] == "handed_off"
    with sqlite3.connect(root / "dialogues.db") as db:
        said = [text for text, in db.execute("SELECT text FROM turns WHERE conversation_id = ? AND role = 'user' "
                                             "ORDER BY id", [conversation["id"]])]
    assert said == ["hello", "where is my parcel", "my parcel never came"]


@pytest.mark.parametrize("store_held", [False, True],
                         ids=["running longer than the stale time", "on a server whose store thread is held up"])
async def test_a_turn_keeps_its_conversation_from_the_other_servers(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        store_held: bool) -> None:
    """A turn that ran longer than ``TURN_STALE_S`` (a large ``actions.timeout``, a chain of follow-ups) on a server
    that was alive counted as hung, and another server answered the conversation's next message beside it, on the
    conversation as it was before: the miss that reached ``fallbacks_before_handoff`` got a fallback. The server
    renews its turn while it runs, so the other waits for it however long it runs. Those renewals waited on the
    store's one thread behind every write: a live server whose store thread was held up past ``TURN_STALE_S`` (a long
    purge, a slow disk) renewed nothing, and the same happened. Renewals have a thread and connection of their own."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.1)
    monkeypatch.setattr(engine_module, "TURN_STALE_S", 0.5)
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", thresholds={"fallbacks_before_handoff": 3})
    _, replies = await answered_at_once_by_two_servers(
        aiohttp_client, web_demo_bot, "where is my parcel", {"text": "my parcel never came"}, root=root, held_for=1.5,
        store_held=store_held)
    assert [reply["source"] for reply in replies] == ["fallback", "handoff"]  # "hello" missed first


async def test_a_server_opens_its_connection_for_renewals_as_it_starts_serving(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """The connection a server renews its turns and claims on opened at the first renewal, 2 s into the first turn
    that ran that long: beside another process's long write, the opening waited with it, and the turn went stale. It
    opens as the server starts serving the store, as that server, waiting for a lock no longer than a renewal does."""
    bot = (await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))).app[BOT]
    renewer = bot._renewal_store
    assert renewer is not None and renewer.server == bot.store.server is not None
    assert renewer.db.execute("PRAGMA busy_timeout").fetchone()[0] == 2000


async def test_a_broken_connection_for_renewals_is_opened_again_at_the_next_renewal_or_check(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's connection for renewing its turns and claims, once broken (the store's file fine), was kept: every
    renewal failed on it, and /healthz's write on it too, so the server answered 503 until restarted. A renewal that
    fails closes it, and the next renewal, or the check's write, opens another."""
    monkeypatch.setattr(engine_module, "TURN_STALE_S", 0.0)  # failing renewals make the server unready at once
    monkeypatch.setattr("bot.server.HEALTH_PROBE_S", 0.0)
    client = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    bot = client.app[BOT]
    broken = bot._renewal_store
    broken.db.conn.close()  # the renewals' connection alone breaks
    with pytest.raises(sqlite3.ProgrammingError):
        await bot.probe_renewals()  # a renewal meets it
    assert bot.renewals_failing() is not None
    response = await client.get("/healthz")  # the check's write, on a connection opened again
    assert response.status == 200, await response.text()
    assert bot.renewals_failing() is None and bot._renewal_store is not broken


async def test_metrics_say_how_long_the_renewals_have_failed(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """Renewals failing showed nowhere until /healthz turned 503 at ``TURN_STALE_S``, when the other servers on the
    store were taking the server's conversations over already: /metrics says how long they have failed, 0 once one
    works again."""
    client = await aiohttp_client(create_app(web_demo_bot.root, device="cpu"))
    bot, renewed = client.app[BOT], client.app[BOT]._renewed

    def failing(renew: Any) -> Any:  # on the renewals' thread
        raise sqlite3.OperationalError("disk I/O error")

    async def failing_for() -> float:
        body = await (await client.get("/metrics")).text()
        return float(re.search(r"^deskbot_renewals_failing_seconds (\S+)$", body, re.M).group(1))

    assert await failing_for() == 0.0
    bot._renewed = failing
    with pytest.raises(sqlite3.OperationalError):
        await bot.probe_renewals()
    bot._renewals_failed -= 30.0  # as if they had failed since 30 s ago
    assert await failing_for() >= 30.0
    bot._renewed = renewed
    await bot.probe_renewals()
    assert await failing_for() == 0.0


async def test_a_message_behind_a_server_hung_mid_turn_is_answered_before_a_proxy_gives_up(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server hung mid-turn held a conversation's next message on another server for two minutes, and a proxy in
    front, which waits 60 s for an answer on most, gave the customer a 504 for a message answered after all. A hung
    server renews its turn no more, and the other answers once ``TURN_STALE_S`` has passed since its last renewal."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 3600.0)  # the first server's turn is never renewed: hung
    cid = new_id()
    first_app, second_app = (create_app(web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    hung, go_on, log = asyncio.Event(), asyncio.Event(), first_app[BOT]._log

    async def hung_log(*args: Any, **kwargs: Any) -> Any:
        hung.set()
        await go_on.wait()
        return await log(*args, **kwargs)

    first_app[BOT]._log = hung_log
    answered_first = asyncio.create_task(chat(first, cid, "hello"))
    await hung.wait()
    try:
        reply = await asyncio.wait_for(chat(second, cid, "where is my parcel"), 30)  # half a proxy's 60 s
    finally:
        go_on.set()
        await answered_first
    assert reply["source"] == "fallback"


async def test_a_reload_through_one_server_reloads_the_others_on_the_store(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path) -> None:
    """``POST /admin/reload`` behind a load balancer reached one server of the store: the others answered with the
    bot's files as they were (an agent's token taken out of ``server.agents`` still signed in there) until their
    restart. Each server reloads as another did, at its next look for a new model (``learning.watch_seconds``)."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", learning={"watch_seconds": 0.1},
                           fallback={"message": {"en": "Say, which of these?"}, "rephrase": {"en": "Say it again?"}})
    first_app, second_app = (create_app(root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    swapped, swap = asyncio.Event(), second_app[BOT].swap

    def swapped_too(*args: Any, **kwargs: Any) -> None:
        swap(*args, **kwargs)
        swapped.set()

    second_app[BOT].swap = swapped_too
    before = (await chat(second, new_id(), "where is my parcel"))["reply"]
    # A change no server sees saved (as actions/'s code, which only a reload reads): bot.yml rewritten to its size and
    # time before, so that the second server's watcher, which serves a saved file by itself, sees nothing to serve.
    path = root / "bot.yml"
    saved = path.stat()
    path.write_text(path.read_text().replace("Say, which", "Hmm, which"))
    os.utime(path, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (saved.st_mtime_ns, saved.st_size)
    assert (await admin(first, web_demo_bot.admin_token, "/admin/reload", {})).status == 200
    now = (await chat(first, new_id(), "where is my parcel"))["reply"]
    assert before.startswith("Say") and now.startswith("Hmm")
    await asyncio.wait_for(swapped.wait(), 30)
    assert (await chat(second, new_id(), "where is my parcel"))["reply"] == now


async def test_a_turn_held_up_for_good_is_given_up_and_its_conversation_answered_again_on_every_server(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path) -> None:
    """A turn held up for good on a live server (a model call that never returns) held its conversation there and,
    renewed all the while, on every other server on the store: the customer heard nothing, and every later message of
    theirs waited behind it. Past ``server.turn_seconds`` the turn is given up: the customer is told to try again or
    ask for a person, the miss is kept, and the next message is answered, whichever server it reaches."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"turn_seconds": 0.5})
    first_app, second_app = (create_app(root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    bot, cid = first_app[BOT], new_id()
    analysis_for = bot._analysis_for

    async def never_read(text: str) -> Any:  # the model's call never returns
        await asyncio.Event().wait()

    bot._analysis_for = never_read
    given_up = await asyncio.wait_for(chat(first, cid, "where is my parcel"), 30)
    fallback = load_project(root).config.fallback
    assert (given_up["source"], given_up["reply"]) == ("fallback", fallback.action_slow["en"])
    assert [button["payload"] for button in given_up["buttons"]] == ["/handoff"]
    bot._analysis_for = analysis_for
    for client in (second, first):
        assert (await asyncio.wait_for(chat(client, cid, "hello"), 30))["source"] == "fallback"
    with sqlite3.connect(root / "dialogues.db") as db:
        assert db.execute("SELECT fallbacks FROM conversations WHERE id = ?", [cid]).fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM turn_leases").fetchone() == (0,)


async def test_a_turn_given_up_past_its_bound_whose_answer_is_dropped_is_not_logged_as_told(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A turn past ``server.turn_seconds`` was logged as given up with its customer told to try again before its
    answer was written: where the store dropped that answer (another server on the store had taken the turn over, an
    agent the conversation), nobody had told the customer anything, and the log said otherwise."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 3600.0)  # the loss is found by the write alone
    # A bound the turn reaches the model within on a loaded machine: at 0.5 s it was given up before the model was
    # asked, and the test waited for that call for ever.
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"turn_seconds": 3})
    app = create_app(root, device="cpu")
    client = await aiohttp_client(app)
    bot, cid, reading = app[BOT], new_id(), asyncio.Event()

    async def never_read(text: str) -> Any:  # the model's call never returns
        reading.set()
        await asyncio.Event().wait()

    bot._analysis_for = never_read
    with caplog.at_level("ERROR", logger="deskbot"):
        answered = asyncio.create_task(chat(client, cid, "where is my parcel"))
        await asyncio.wait_for(reading.wait(), 30)
        with sqlite3.connect(root / "dialogues.db") as db:  # another server took the turn over
            assert db.execute("UPDATE turn_leases SET server = 'other-server' WHERE conversation_id = ?",
                              [cid]).rowcount
        reply = await asyncio.wait_for(answered, 30)
    assert (reply["source"], reply["reply"]) == ("silent", "")
    said = [record.getMessage() for record in caplog.records if "server.turn_seconds" in record.getMessage()]
    assert len(said) == 1 and log_tag(cid) in said[0] and cid not in said[0]
    assert "dropped" in said[0] and "customer told" not in said[0]


async def test_a_turn_whose_answer_is_being_written_when_its_bound_comes_is_let_finish(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path) -> None:
    """A turn past ``server.turn_seconds`` while the store wrote its answer (a slow disk, another process's lock) was
    given up: the write went on all the same, and the customer was told to try again beside an answer kept but never
    shown, two bot turns to one message. Once its answer is being written a turn is let finish."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"turn_seconds": 0.5})
    app = create_app(root, device="cpu")
    client, cid = await aiohttp_client(app), new_id()
    bot = app[BOT]
    submit = bot.writer.submit

    async def slow_write(exchange: Any) -> Any:  # the store's write goes on whoever stops waiting for it
        async def written() -> Any:
            await asyncio.sleep(1.0)  # a slow disk: past the turn's bound
            return await submit(exchange)

        return await asyncio.shield(written())

    bot.writer.submit = slow_write
    reply = await asyncio.wait_for(chat(client, cid, "where is my parcel"), 30)
    bot.writer.submit = submit
    assert reply["reply"] != load_project(root).config.fallback.action_slow["en"]
    history = await (await client.get(f"/api/conversations/{cid}/history")).json()
    assert [(t["role"], t["text"]) for t in history["turns"]] == [("user", "where is my parcel"), ("bot", reply["reply"])]


async def held_first_answer(aiohttp_client: Any, web_demo_bot: SimpleNamespace, message: dict[str, Any],
                            held: Callable[[], Awaitable[None]],
                            store_held: threading.Event | None = None) -> tuple[asyncio.Task[Any], Any]:
    """``message`` sent to the first of two servers on one store, whose answer awaits ``held`` before it is given:
    the first's request's task, once it is answering, and the second server's client. ``store_held``: the first
    server's store thread is held up too, until it is set (a long job on it)."""
    first_app, second_app = (create_app(web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    answering, handle = asyncio.Event(), first_app[BOT]._handle

    async def held_handle(turn: Any) -> Any:  # within the turn, as a slow action is
        answering.set()
        await held()
        return await handle(turn)

    first_app[BOT]._handle = held_handle
    answered_first = asyncio.create_task(first.post("/api/chat", json=message))
    await answering.wait()
    if store_held is not None:
        first_app[BOT]._db.submit(store_held.wait)
    return answered_first, second


async def test_a_message_sent_again_behind_a_server_hung_mid_answer_is_answered_before_a_proxy_gives_up(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Retry reaching a second server while the first hung mid-answer waited two minutes for the first's claim of
    the message to go stale, and a proxy in front, which waits 60 s for an answer on most, gave the customer a 504. A
    hung server renews its claim no more, and the other answers once ``CLAIM_STALE_S`` has passed since its last
    renewal."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 3600.0)  # the first server's claim is never renewed: hung
    message = {"conversation_id": new_id(), "text": "my parcel never arrived", "message_id": "m-1"}
    go_on = asyncio.Event()
    answered_first, second = await held_first_answer(aiohttp_client, web_demo_bot, message, go_on.wait)
    try:
        response = await asyncio.wait_for(second.post("/api/chat", json=message), 30)  # half a proxy's 60 s
    finally:
        go_on.set()
        await answered_first
    assert response.status == 200 and (await response.json())["source"] == "fallback"


async def test_a_message_sent_again_while_another_server_answers_it_for_longer_than_the_stale_time_is_answered_once(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer running longer than ``CLAIM_STALE_S`` (a slow action) on a server that is alive is not taken for a
    hung server's: the server renews its claim of the message while it answers, and a Retry reaching another server
    waits for that answer rather than answering the message a second time."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.1)
    monkeypatch.setattr(web_channel, "CLAIM_STALE_S", 0.5)
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    answered_first, second = await held_first_answer(aiohttp_client, web_demo_bot, message,
                                                     lambda: asyncio.sleep(1.5))  # a slow action
    again = await second.post("/api/chat", json=message)
    assert await again.json() == await (await answered_first).json()
    assert await roles(second, cid) == ["user", "bot"]


async def test_a_server_not_ready_sends_its_sockets_away_to_connect_again(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering /healthz with a 503 for a reason of its own (its renewals fail) kept its widgets' sockets:
    the load balancer sent it no new customers, and those connected stayed on a server that could not answer them. It
    closes them with a code that has the widget connect again, through the balancer. A ready server's stay open, and
    so do those of a server whose store is in trouble (locked, here), which every server on the store shares."""
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    async with client.ws_connect("/api/ws") as ws:
        assert (await client.get("/healthz")).status == 200
        await ws.send_json({"conversation_id": new_id(), "text": "hello"})
        assert (await ws.receive_json())["type"] == "reply"  # still open
        monkeypatch.setattr(app[BOT].store, "lock_wait", lambda: "the store's writes have waited 2.0 s")
        assert (await client.get("/healthz")).status == 503
        await ws.send_json({"conversation_id": new_id(), "text": "hello"})
        assert (await ws.receive_json())["type"] == "reply"  # still open
        monkeypatch.undo()
        monkeypatch.setattr(app[BOT], "renewals_failing", lambda: "renewals fail")
        assert (await client.get("/healthz")).status == 503
        closing = await ws.receive(timeout=30)
        assert (closing.type, closing.data) == (WSMsgType.CLOSE, web_channel.RECONNECT_ELSEWHERE)


async def test_a_server_not_ready_for_a_reason_of_its_own_sends_sockets_away_as_they_connect_while_it_lasts(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A widget connecting to a server not ready for a reason of its own, between two probes, stayed on a server that
    could not answer it until the next probe sent it away: it is sent away as it connects, with the code that has it
    connect again through the balancer. Once the cause has ended, sockets connecting stay, with no probe since: a
    server that went on sending them away until its next probe cut every widget a balancer sent it meanwhile."""
    app = create_app(web_demo_bot.root, device="cpu")  # a server of its own: nothing of its state outlives the test
    client = await aiohttp_client(app)
    failing: list[str | None] = ["renewals fail"]
    monkeypatch.setattr(app[BOT], "renewals_failing", lambda: failing[0])

    async def connected() -> WSMessage:
        """What a socket connecting now hears first: its close, or the reply to a message."""
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"conversation_id": new_id(), "text": "hello"})
            return await ws.receive(timeout=30)

    def sent_away(heard: WSMessage) -> bool:
        return (heard.type, heard.data) == (WSMsgType.CLOSE, web_channel.RECONNECT_ELSEWHERE)

    assert sent_away(await connected())  # before any probe
    assert (await client.get("/healthz")).status == 503
    assert sent_away(await connected())
    failing[0] = None  # the renewals work again, and no probe has come since
    assert json.loads((await connected()).data)["type"] == "reply"
    with monkeypatch.context() as newer:
        newer.setattr(Store, "schema", property(lambda store: len(MIGRATIONS) + 1))
        assert (await client.get("/healthz")).status == 503  # a newer deskbot migrated the store
        assert sent_away(await connected())
    assert sent_away(await connected())  # as the latest read of the schema found it
    assert (await client.get("/healthz")).status == 200
    assert json.loads((await connected()).data)["type"] == "reply"


async def test_a_stopping_server_closes_its_sockets_saying_it_stops(aiohttp_client: Any,
                                                                   web_demo_bot: SimpleNamespace) -> None:
    """A server stopping (SIGTERM, a deploy) closed its widgets' sockets as any close, and every widget connected
    again half a second later, all at once, to the servers left. It says it stops (1012), which the widget spreads its
    reconnect over."""
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    async with client.ws_connect("/api/ws") as ws:
        closing = asyncio.create_task(app[BOT].channels["web"].close())
        closed = await ws.receive(timeout=30)
        assert (closed.type, closed.data) == (WSMsgType.CLOSE, web_channel.STOPPING)
        await closing


async def test_a_socket_that_ends_while_a_stopping_server_answers_its_queued_message_does_not_hold_up_the_stop(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopping server waits until each socket has taken the messages queued behind its turn: one whose handler ended
    meanwhile (its client gone as the answer went out) was waited for until server.shutdown_seconds ran out."""
    app = create_app(web_demo_bot.root, device="cpu")
    client = await aiohttp_client(app)
    channel = app[BOT].channels["web"]
    answered, gone = asyncio.Event(), asyncio.Event()
    begun: list[str] = []

    async def answer(ws: Any, body: Any, request: Any, verified_user: str | None) -> None:
        begun.append(body.text)
        if body.text == "the first":
            await answered.wait()
            return
        await gone.wait()
        raise ConnectionResetError("the client is gone")  # as a send to a socket its client closed

    monkeypatch.setattr(channel, "_answer", answer)
    async with client.ws_connect("/api/ws") as ws:
        for text in ("the first", "queued behind it"):
            await ws.send_json({"type": "message", "conversation_id": "gone-at-stop", "text": text})
        while not begun:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        closing = asyncio.create_task(channel.close(grace=10))
        answered.set()  # the stop now waits for the socket to take the message queued behind
        while len(begun) < 2:
            await asyncio.sleep(0.01)
        gone.set()
        await closing
    assert time.monotonic() - started < 5


def test_a_step_of_the_servers_clock_between_its_renewals_is_said_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A server whose wall clock stepped (NTP correcting it, a VM resumed) wrote times off from the other servers'
    with nothing said: a step of a second or more, as its wall clock moves otherwise than its steady one, is said,
    once; the clocks' moving together is not."""
    wall, steady = [1_000.0], [5.0]
    steps = engine_module.ClockSteps(wall=lambda: wall[0], steady=lambda: steady[0])
    with caplog.at_level("WARNING", logger="deskbot"):
        wall[0] += 2.0
        steady[0] += 2.0
        steps.check()
        assert not caplog.records
        wall[0] -= 30.0
        steps.check()
        steps.check()
    [said] = caplog.records
    assert said.getMessage().startswith("this server's clock stepped -30.0 s")


async def test_a_message_sent_again_to_a_server_whose_clock_stepped_forward_is_answered_once(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose clock stepped ``CLAIM_STALE_S`` forward (NTP correcting it, a VM resumed) read another server's
    claim of a message, and its turn of the conversation, renewed all along, as stale against its own clock, and
    answered the widget's Retry of the message beside the server answering it: two answers, and the first given up.
    It waits for that answer, as any server does while the claim is renewed."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.1)
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    go_on, waiting, loop = asyncio.Event(), asyncio.Event(), asyncio.get_running_loop()
    answered_first, second = await held_first_answer(aiohttp_client, web_demo_bot, message, go_on.wait)
    real, store = time.time, second.app[BOT].store
    stepped = SimpleNamespace(time=lambda: real() + 2 * web_channel.CLAIM_STALE_S, monotonic=time.monotonic,
                              perf_counter=time.perf_counter)
    for module in (engine_module, web_channel):  # the second server's clock; the stamps are the first's
        monkeypatch.setattr(module, "time", stepped)
    claim = store.claim

    def claimed_or_waits(*args: Any) -> bool:  # on the second server's store thread
        if not (claimed := claim(*args)):
            loop.call_soon_threadsafe(waiting.set)
        return claimed

    store.claim = claimed_or_waits
    again = asyncio.create_task(second.post("/api/chat", json=message))
    await asyncio.wait([again, asyncio.create_task(waiting.wait())], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    go_on.set()
    assert waiting.is_set()
    assert await (await again).json() == await (await answered_first).json()
    assert await roles(second, cid) == ["user", "bot"]


async def test_a_message_sent_again_while_a_server_whose_store_thread_is_held_up_answers_it_is_answered_once(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's renewals of its claims waited on its store's one thread behind every write: a Retry reaching another
    server while the first, alive, answered with its store thread held up past ``CLAIM_STALE_S`` (a long purge, a slow
    disk) took the claim and answered the message a second time."""
    monkeypatch.setattr(engine_module, "TURN_RENEW_S", 0.1)
    monkeypatch.setattr(web_channel, "CLAIM_STALE_S", 0.5)
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    go_on, store_free = asyncio.Event(), threading.Event()
    answered_first, second = await held_first_answer(aiohttp_client, web_demo_bot, message, go_on.wait, store_free)
    again = asyncio.create_task(second.post("/api/chat", json=message))
    await asyncio.wait([again], timeout=1.5)
    go_on.set()
    store_free.set()
    assert await (await again).json() == await (await answered_first).json()
    assert await roles(second, cid) == ["user", "bot"]


@pytest.mark.parametrize("over", ["http", "socket"])
async def test_a_message_sent_again_whose_claim_waits_past_the_stale_time_after_its_answer_is_kept_is_answered_once(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, over: str) -> None:
    """A Retry reaching a second server looked for a kept answer, found none (the first still answered), and claimed
    the message only after the first had kept its answer and the first's claim, renewed no more once the answer was
    kept, had gone stale (the second's store thread held up): the second took the claim and answered the message a
    second time. A claim of a message whose answer is kept is refused, and the answer kept is given."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    go_on = asyncio.Event()
    answered_first, second = await held_first_answer(aiohttp_client, web_demo_bot, message, go_on.wait)
    channel = second.app[BOT].channels["web"]
    kept_reply = channel._kept_reply

    async def late_claim(turn: Any) -> Any:  # nothing kept yet; the claim comes once the first's claim went stale
        kept = await kept_reply(turn)
        if not go_on.is_set():
            go_on.set()
            await answered_first
            monkeypatch.setattr(web_channel, "CLAIM_STALE_S", -60.0)
        return kept

    channel._kept_reply = late_claim
    if over == "http":
        again = await (await second.post("/api/chat", json=message)).json()
    else:
        async with second.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "message", **message})
            again = await ws.receive_json(timeout=10)
            assert again.pop("type") == "reply"
    assert again == await (await answered_first).json()
    assert await roles(second, cid) == ["user", "bot"]


async def test_a_message_sent_again_after_its_claim_went_stale_gets_the_answer_kept(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claims of answered messages go stale like any other: a Retry of an answered message still gets the answer
    kept, which is looked for before the message is claimed."""
    monkeypatch.setattr(web_channel, "CLAIM_STALE_S", 0.0)
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    first, second = [await aiohttp_client(create_app(web_demo_bot.root, device="cpu")) for _ in range(2)]
    answered = await (await first.post("/api/chat", json=message)).json()
    assert await (await second.post("/api/chat", json=message)).json() == answered
    assert await roles(second, cid) == ["user", "bot"]


async def test_a_turn_given_up_as_it_took_its_conversation_leaves_it_to_the_other_servers(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A turn cancelled (its server stopping) while the store took its conversation for it ends that turn there too:
    left taken, every other server on the store held the conversation's messages for two minutes."""
    app = create_app(web_demo_bot.root, device="cpu")
    await aiohttp_client(app)
    bot, cid, loop = app[BOT], new_id(), asyncio.get_running_loop()
    taking, go_on = asyncio.Event(), threading.Event()
    take_turn = bot.store.take_turn

    def slow_take(conversation_id: str, stale: Any) -> bool:  # on the store's thread
        loop.call_soon_threadsafe(taking.set)
        go_on.wait(10)
        return take_turn(conversation_id, stale)

    bot.store.take_turn = slow_take
    answering = asyncio.create_task(bot.handle(Turn(cid, "hello", "web")))
    await taking.wait()
    answering.cancel()  # while the store takes its conversation
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await answering
    bot.store.take_turn = take_turn
    await bot._store(time.time)  # once the store's one thread has done what the turn asked of it
    with sqlite3.connect(web_demo_bot.root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM turn_leases WHERE conversation_id = ?", [cid]).fetchone() == (0,)


@pytest.mark.parametrize("ending", ["failed", "refused", "held for an agent"])
async def test_a_message_sent_again_to_another_server_is_answered_at_once_however_the_first_ended_its_turn(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, ending: str) -> None:
    """A Retry reaching a second server while the first answers waits for that answer, through the first's claim of
    the message: a turn the first ended without an answer (the bot failed, a limit refused it) let the Retry wait
    for the claim to go stale (``CLAIM_STALE_S``), and one held silent for an agent must be found as answered."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}

    async def handed_off(first: Any) -> None:
        await chat(first, cid, "hello")
        assert (await admin(first, web_demo_bot.admin_token, f"/admin/conversations/{cid}/handoff")).status == 200

    failure = {"failed": RuntimeError("the bot failed"), "refused": web_channel.web.HTTPTooManyRequests()}.get(ending)
    answered_first, answered_again, second = await sent_to_two_servers(
        aiohttp_client, web_demo_bot, message, handed_off if ending == "held for an agent" else None, failure)
    assert (await answered_first).status == (200 if failure is None else 500 if ending == "failed" else 429)
    response = await asyncio.wait_for(answered_again, 10)
    assert response.status == 200 and (await response.json())["handed_off"] == (ending == "held for an agent")
    history = await (await second.get(f"/api/conversations/{cid}/history")).json()
    assert [t["role"] for t in history["turns"] if t["text"] == message["text"]] == ["user"]  # answered once


async def test_a_message_sent_again_over_a_socket_while_another_server_answers_it_holds_up_none_of_the_sockets_next(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A Retry over a socket reaching a second server while the first still answered (or hung: for two minutes) waited
    for that answer, and every later message of the socket waited behind it. The socket is told at once that another
    server has the message, its next message is answered, and the first answer comes as a sync once given."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    first_app, second_app = (create_app(web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    answering, go_on = asyncio.Event(), asyncio.Event()
    handle = first_app[BOT].handle

    async def hung_handle(turn: Any, *holding: Any) -> Any:
        if turn.message_id == "m-1":
            answering.set()
            await go_on.wait()
        return await handle(turn, *holding)

    first_app[BOT].handle = hung_handle
    answered_first = asyncio.create_task(first.post("/api/chat", json=message))
    await answering.wait()
    async with second.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "message", **message})
        told = await ws.receive_json(timeout=10)
        assert (told["type"], told["request"], told["answered_elsewhere"]) == ("error", "message", True)
        await ws.send_json({"type": "message", "conversation_id": cid, "text": "hello?", "message_id": "m-2"})
        assert (await ws.receive_json(timeout=10))["type"] == "reply"
        go_on.set()
        assert (await answered_first).status == 200
        assert await ws.receive_json(timeout=10) == {"type": "sync", "conversation_id": cid}
        await ws.send_json({"type": "message", **message})
        assert await ws.receive_json(timeout=10) == {"type": "reply", **await (await answered_first).json()}
    history = await (await second.get(f"/api/conversations/{cid}/history")).json()
    assert [t["text"] for t in history["turns"] if t["role"] == "user"] == ["hello?", "my parcel never arrived"]


async def test_a_message_sent_again_over_http_beside_a_socket_told_another_server_has_it_waits_for_that_answer(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace) -> None:
    """A message sent again over HTTP shares the answer its send over a socket to the same server is getting: told
    that another server has it, the socket's gives up, and the HTTP request, which waits for that server's answer
    where a socket does not, must wait still rather than fail."""
    cid = new_id()
    message = {"conversation_id": cid, "text": "my parcel never arrived", "message_id": "m-1"}
    first_app, second_app = (create_app(web_demo_bot.root, device="cpu") for _ in range(2))
    first, second = await aiohttp_client(first_app), await aiohttp_client(second_app)
    answering, go_on, joined, looked = asyncio.Event(), asyncio.Event(), asyncio.Event(), asyncio.Event()
    handle = first_app[BOT].handle

    async def hung_handle(turn: Any, *holding: Any) -> Any:
        answering.set()
        await go_on.wait()
        return await handle(turn, *holding)

    first_app[BOT].handle = hung_handle
    channel = second_app[BOT].channels["web"]
    kept_reply = channel._kept_reply

    async def held_look(turn: Any) -> Any:  # the socket's first look for a kept answer waits for the HTTP request
        if not looked.is_set():
            looked.set()
            await joined.wait()
        return await kept_reply(turn)

    class Shared(web_channel.RecentAnswers):
        async def answer(self, key: Any, reply: Any, kept: Any = None) -> Any:
            if key in self._answers:
                joined.set()
            return await super().answer(key, reply, kept)

    channel._kept_reply, channel._answers = held_look, Shared()
    answered_first = asyncio.create_task(first.post("/api/chat", json=message))
    await answering.wait()
    async with second.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "message", **message})
        await looked.wait()
        answered_again = asyncio.create_task(second.post("/api/chat", json=message))
        assert (await ws.receive_json(timeout=10))["answered_elsewhere"]
    go_on.set()
    first_reply = await (await answered_first).json()
    response = await asyncio.wait_for(answered_again, 10)
    assert response.status == 200 and await response.json() == first_reply


async def test_a_failed_first_answer_leaves_a_later_answer_to_the_same_message_id_in_place() -> None:
    """With as many answers kept as ``maxlen``, a message sent again pushed out its own answer to make room; and a
    first answer pushed out while still on its way, then failing, took with it the answer the message sent again had
    begun meanwhile: either way, a third send of it was answered once more."""
    answers = web_channel.RecentAnswers(maxlen=1)
    fail, finish, started = asyncio.Event(), asyncio.Event(), []

    async def failing() -> dict[str, Any]:
        await fail.wait()
        raise RuntimeError("the store failed")

    async def slow() -> dict[str, Any]:
        started.append(1)
        await finish.wait()
        return {"reply": "answered"}

    async def quick() -> dict[str, Any]:
        return {"reply": "another"}

    first = asyncio.create_task(answers.answer(("c", "m-1"), failing))
    await asyncio.sleep(0)
    await answers.answer(("c", "m-2"), quick)  # pushes m-1's out
    again = asyncio.create_task(answers.answer(("c", "m-1"), slow))
    await asyncio.sleep(0)
    fail.set()
    with pytest.raises(RuntimeError):
        await first
    third = asyncio.create_task(answers.answer(("c", "m-1"), slow))
    await asyncio.sleep(0)
    finish.set()
    assert await again == await third == {"reply": "answered"}
    assert len(started) == 1


@pytest.mark.parametrize("module", ["bot.limits", "bot.channels.base", "bot.channels.web", "bot.channels.slack"])
def test_the_servers_parts_import_on_their_own(module: str) -> None:
    """A tool importing the rate limits first (a gateway reusing them) met a circular import."""
    imported = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr


def frozen_tab(host: str, port: int, conversation_id: str) -> socket.socket:
    """A widget's socket that joins a conversation, then never reads again (a frozen tab, a client that
    stopped reading); its small receive buffer soon fills, and the server's sends to it block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101")
    join = json.dumps({"type": "join", "conversation_id": conversation_id}).encode()
    mask = os.urandom(4)  # a client masks its frames (RFC 6455)
    sock.sendall(bytes([0x81, 0x80 | len(join)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(join)))
    return sock


async def blocked_pushes(channel: Any, conversation_id: str) -> asyncio.Task[None]:
    """Pushes to the conversation until one has not gone out for a second: the frozen tab's buffers are full."""
    sent = 0

    async def push() -> None:
        nonlocal sent
        while conversation_id in channel.sockets:
            await channel.send(conversation_id, "x" * 19_000, role="agent")
            sent += 1

    task = asyncio.create_task(push())
    while True:
        before = sent
        await asyncio.sleep(1.0)
        if sent == before or task.done():
            return task


async def test_a_tab_that_stopped_reading_is_cut_and_holds_up_neither_the_others_nor_shutdown(
        client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's reply hung, then failed with 500 though stored, while another tab of the conversation
    did not read; and SIGTERM waited as long as that tab stayed connected."""
    channel = client.app[BOT].channels["web"]
    host, port = client.server.host, client.server.port
    monkeypatch.setattr(web_channel, "SEND_WAIT_S", 0.5)
    cid = new_id()
    frozen = await asyncio.to_thread(frozen_tab, host, port, cid)  # the server answers on this loop
    while cid not in channel.sockets:
        await asyncio.sleep(0.05)
    pushing = await blocked_pushes(channel, cid)
    await asyncio.wait_for(pushing, 5)  # the stalled push gave up on the tab and cut it
    assert cid not in channel.sockets
    frozen.close()

    monkeypatch.setattr(web_channel, "SEND_WAIT_S", 600.0)  # now pushes wait as long as the tab, as close() must not
    frozen = await asyncio.to_thread(frozen_tab, host, port, cid)  # the server answers on this loop
    while cid not in channel.sockets:
        await asyncio.sleep(0.05)
    pushing = await blocked_pushes(channel, cid)
    assert not pushing.done()
    started = time.monotonic()
    await asyncio.wait_for(channel.close(grace=0), 30)
    assert time.monotonic() - started < 4 * web_channel.CLOSE_WAIT_S + 1
    for _ in range(50):  # cut: its handler has ended
        if cid not in channel.sockets:
            break
        await asyncio.sleep(0.1)
    assert cid not in channel.sockets
    pushing.cancel()  # (SEND_WAIT_S would have ended it)
    frozen.close()


def test_the_docs_name_every_route_and_query_parameter() -> None:
    """The API tables of README.md and docs/learning.md are where a client's developer reads what the server takes:
    a route, a ?parameter or a header in /openapi.json alone (release, transfer, ?unheld=, ?by=) is one they never
    learn of."""
    from bot.openapi import OPERATIONS

    docs = "".join(path.read_text() for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    missing = []
    for op in OPERATIONS:
        path = re.sub(r"\{(conversation_id|turn_id)\}", "{id}", op.path)
        if not re.search(rf"{op.method}\S* [^|\n]*?{re.escape(path)}(?![\w/])", docs):
            missing.append(f"{op.method} {op.path}")
        if op.path.startswith(("/api/", "/admin/")):
            missing += [f"{op.method} {op.path}?{name}=" for name in op.query if not re.search(rf"[?&]{name}=", docs)]
            missing += [f"{op.method} {op.path} {name}:" for name in op.headers if f"`{name}" not in docs]
    assert missing == []


def test_the_readme_lists_every_field_a_chat_reply_has() -> None:
    """The README's HTTP API table is where a page's developer reads what POST /api/chat answers: it left out
    ``custom``, the payloads a custom action sends for the page."""
    from bot.openapi import ChatResponse

    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `POST /api/chat`"))
    listed = re.search(r'\| `\{("reply"[^}]*)\}`', row)
    assert listed is not None and set(re.findall(r'"(\w+)"', listed.group(1))) == set(ChatResponse.model_fields)


class HeldModel:
    """The serving model, held busy inside its analysis until ``free`` is set; ``entered`` is released as each batch
    comes in."""

    def __init__(self, nlu: Any) -> None:
        self.nlu, self.free, self.entered = nlu, threading.Event(), threading.Semaphore(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nlu, name)

    def analyse(self, texts: list[str]) -> Any:
        self.entered.release()
        self.free.wait(20)
        return self.nlu.analyse(texts)


async def test_a_web_message_past_the_models_full_queue_is_answered_503_at_once_and_a_platforms_waits(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Messages that come faster than the model answers them queued without end: every customer waited as long as the
    queue was, until each turn gave up after server.turn_seconds. Past server.inference.max_queue a web chat message is
    refused at once, 503 with Retry-After over HTTP and an error frame over the socket, and nothing of it is kept; the
    messages queued are answered, and a Slack or WeCom message, which cannot be answered 503, still waits its turn."""
    import yaml

    root = configured_copy(web_demo_bot.root, tmp_path / "bot")
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["server"]["inference"] = {**config["server"].get("inference", {}), "workers": 1, "max_queue": 2}
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    bot.nlu = held = HeldModel(bot.nlu)

    async def queued(depth: int) -> None:
        async with asyncio.timeout(10):
            while bot.batcher.queue_depth < depth:
                await asyncio.sleep(0.01)

    first = asyncio.ensure_future(client.post("/api/chat", json={"conversation_id": new_id(), "text": "hello"}))
    assert await asyncio.to_thread(held.entered.acquire, timeout=10), "no batch reached the model"
    waiting = [asyncio.ensure_future(client.post("/api/chat", json={"conversation_id": new_id(), "text": "hi"}))
               for _ in range(2)]
    await queued(2)
    refused_cid = new_id()
    with caplog.at_level("WARNING", logger="bot.channels.web"):
        refused = await asyncio.wait_for(client.post("/api/chat", json={"conversation_id": refused_cid, "text": "hi"}), 10)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == str(web_channel.BUSY_RETRY_S)
        assert (await refused.json())["error"].startswith("the bot is busy: 2 requests are waiting for the model")
        assert (await refused.json())["code"] == "busy"  # for the widget to say in its customer's language
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"conversation_id": new_id(), "text": "hi"})
            frame = await ws.receive_json(timeout=10)
    assert frame["type"] == "error" and frame["error"].startswith("the bot is busy")
    assert frame["code"] == "busy" and frame["retry_after"] == web_channel.BUSY_RETRY_S  # sent again after it
    assert [r.getMessage() for r in caplog.records if "answered 503" in r.getMessage()] == [
        "web chat messages answered 503: 2 wait for the model already (server.inference.max_queue); they come faster "
        "than it answers them (bench/SERVE.md)"]  # once for the two
    platform = asyncio.ensure_future(bot.handle(Turn(new_id(), "hello", "wecom")))
    await queued(3)
    held.free.set()
    assert [r.status for r in await asyncio.gather(first, *waiting)] == [200, 200, 200]
    assert (await asyncio.wait_for(platform, 10)).text
    with sqlite3.connect(root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM turns WHERE conversation_id = ?", [refused_cid]).fetchone() == (0,)
    assert 'deskbot_messages_total{channel="web",source="none",status="busy"} 2.0' in await (await client.get("/metrics")).text()


async def test_a_web_message_past_max_web_turns_is_answered_503_before_its_body_is_read(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A flood of web chat messages the server's own CPU cannot take in (HTTP, the turn, the log: 5 to 7 ms each) piled
    up in its event loop, where server.inference.max_queue does not reach. Past server.max_web_turns messages being
    answered, the next is refused at once, its body unread (a malformed one gets 503, not 400), 503 with Retry-After
    over HTTP and an error frame over the socket; those being answered are answered, and a slot freed takes the next."""
    import yaml

    root = configured_copy(web_demo_bot.root, tmp_path / "bot")
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["server"]["inference"] = {**config["server"].get("inference", {}), "workers": 1}
    config["server"]["max_web_turns"] = 2
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    bot.nlu = held = HeldModel(bot.nlu)
    channel = bot.channels["web"]

    answered = [asyncio.ensure_future(client.post("/api/chat", json={"conversation_id": new_id(), "text": "hello"}))
                for _ in range(2)]
    assert await asyncio.to_thread(held.entered.acquire, timeout=10), "no batch reached the model"
    async with asyncio.timeout(10):
        while channel.turns_in_flight < 2:
            await asyncio.sleep(0.01)
    with caplog.at_level("WARNING", logger="bot.channels.web"):
        refused = await asyncio.wait_for(client.post("/api/chat", data=b"{not json",
                                                     headers={"Content-Type": "application/json"}), 10)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == str(web_channel.BUSY_RETRY_S)
        assert (await refused.json())["error"] == (
            "the bot is busy: 2 web chat messages are being answered already; send the message again in 5s")
        async with client.ws_connect("/api/ws") as ws:
            await ws.send_json({"conversation_id": new_id(), "text": "hi"})
            frame = await ws.receive_json(timeout=10)
    assert frame["type"] == "error" and frame["error"].startswith("the bot is busy: 2 web chat")
    assert frame["code"] == "busy" and frame["retry_after"] == web_channel.BUSY_RETRY_S  # the widget sends it again then
    assert [r.getMessage() for r in caplog.records if "answered 503" in r.getMessage()] == [
        "web chat messages answered 503: 2 are being answered already (server.max_web_turns); they come faster than "
        "the server takes them in (bench/SERVE.md)"]  # once for the two
    held.free.set()
    assert [r.status for r in await asyncio.gather(*answered)] == [200, 200]
    assert channel.turns_in_flight == 0
    assert (await client.post("/api/chat", json={"conversation_id": new_id(), "text": "hi"})).status == 200
    assert 'deskbot_messages_total{channel="web",source="none",status="busy"} 2.0' in await (await client.get("/metrics")).text()


async def test_a_web_message_whose_body_is_still_coming_holds_no_place_among_max_web_turns(
        aiohttp_client: Any, web_demo_bot: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message counted among server.max_web_turns from its arrival held its place while its body came, for up to 15 s:
    a few addresses sending bodies slowly, or never to the end, turned every customer away. It is counted once its body
    has come: with a bound of one, a customer is answered while another's body is still on its way."""
    root = configured_copy(web_demo_bot.root, tmp_path / "bot", server={"max_web_turns": 1})
    client = await aiohttp_client(create_app(root, device="cpu"))
    channel = client.app[BOT].channels["web"]
    reading, rest = asyncio.Event(), asyncio.Event()
    read_json = web_channel.read_json

    async def read_when_told(request: Any, model: Any) -> Any:
        reading.set()
        return await read_json(request, model)

    monkeypatch.setattr(web_channel, "read_json", read_when_told)

    async def slowly() -> AsyncIterator[bytes]:
        yield json.dumps({"conversation_id": new_id()})[:-1].encode()
        await rest.wait()
        yield b', "text": "hello"}'

    slow = asyncio.ensure_future(client.post("/api/chat", data=slowly(), headers={"Content-Type": "application/json"}))
    await asyncio.wait_for(reading.wait(), 10)
    assert channel.turns_in_flight == 0
    answered = await asyncio.wait_for(client.post("/api/chat", json={"conversation_id": new_id(), "text": "hi"}), 20)
    assert answered.status == 200, await answered.text()
    rest.set()
    assert (await asyncio.wait_for(slow, 20)).status == 200
