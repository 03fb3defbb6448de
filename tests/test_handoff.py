"""Human handoff end to end over HTTP, and what the bot learns from it.

A customer the bot cannot help is handed to a person after repeated fallbacks; the agent answers
through the admin API, on the customer's own socket; the customer hands back; ``bot retrain`` then
indexes the agent's answer, the running server swaps to the new model, and the next customer with
the same question gets the agent's answer from the bot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import unused_port
from prometheus_client.parser import text_string_to_metric_families

from bot import notify
from bot.channels.base import Turn
from bot.channels.slack import CHANNEL_ERRORS
from bot.language import SCRIPT
from bot.openapi import InboxResponse
from bot.project import ProjectError, load_project
from bot.retrain import retrain
from bot.server import BOT, create_app
from dialogues import store as store_module
from dialogues.store import TRYOUT_CHANNEL, Exchange, Store, log_tag
from finetune.registry import Registry
from tests.conftest import configure

pytestmark = pytest.mark.usefixtures("one_torch_thread")
AUTH = {"Authorization": "Bearer small-admin-token"}
QUESTION = "my parcel went to the neighbours house"
NOT_FOUND = CHANNEL_ERRORS["channel_not_found"]  # what the agent is told to do of Slack's channel_not_found
ANSWER = "I'm sorry! The courier will collect it and bring it to you tomorrow morning."
JOINED = "A member of our team has joined and will answer you here."  # an English customer's takeover notice
NAMELESS = {"error": "agent: a reply names the agent who sends it, whom the customer sees beside it (an agent's own "
                     "token names them)", "code": "name_needed"}  # a reply with the admin token and no name


@pytest.fixture
def bot_dir(small_bot: Path, tmp_path: Path) -> Path:
    root = Path(shutil.copytree(small_bot, tmp_path / "bot"))
    config = yaml.safe_load((root / "bot.yml").read_text())
    # No typed message is confident enough for a template: the bot answers from retrieval or falls back.
    config["thresholds"] = {"intent": 1.0, "retrieval": 0.95, "fallbacks_before_handoff": 3}
    (root / "bot.yml").write_text(yaml.safe_dump(config))
    return root


async def chat(client: Any, conversation: str, text: str) -> dict[str, Any]:
    response = await client.post("/api/chat", json={"conversation_id": conversation, "text": text})
    assert response.status == 200, await response.text()
    return await response.json()


async def next_push(socket: Any) -> dict[str, Any]:
    """The next frame pushed to a joined socket, past the "sync" each answered message sends."""
    while (frame := await socket.receive_json(timeout=5))["type"] == "sync":
        pass
    return frame


def write_long_conversation(bot_dir: Path, exchanges: int) -> None:
    """The web conversation "long": ``exchanges`` messages, each answered, in the bot's store."""
    store = Store(bot_dir / "dialogues.db")
    store.log_exchanges([Exchange("long", "web", None, f"message {i}", None, f"reply {i}", "greet", 0.9, [("greet", 0.9)],
                                  "template", "v0001", 0.7, {}, 0) for i in range(exchanges)])
    store.close()


async def test_a_long_transcript_is_encoded_while_the_server_goes_on_answering(
        bot_dir: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10,000-turn transcript took 100 ms to encode as JSON on the event loop, every other request and socket of the
    server waiting. It is encoded on a worker thread, in parts the loop runs between: /healthz is answered while the
    first part is held, and the transcript is the store's, whole."""
    from bot.channels import base

    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    write_long_conversation(bot_dir, 250)
    encoding, answered = threading.Event(), threading.Event()
    held: list[bool] = []
    dumps = base.dumps

    def held_dumps(data: Any) -> str:
        """Encoding the transcript's turns waits, the first time, for /healthz to be answered (10 s at most)."""
        turns = "turns" in data if isinstance(data, dict) else isinstance(data, list) and data and "role" in data[0]
        if turns and not held:
            encoding.set()
            held.append(answered.wait(10))
        return dumps(data)

    monkeypatch.setattr(base, "dumps", held_dumps)
    transcript = asyncio.ensure_future(client.get("/admin/conversations/long?limit=500", headers=AUTH))
    assert await asyncio.to_thread(encoding.wait, 10), "the transcript was never encoded"
    assert (await asyncio.wait_for(client.get("/healthz"), 10)).status == 200
    answered.set()
    response = await asyncio.wait_for(transcript, 20)
    assert held == [True], "/healthz waited for the transcript's encoding"
    assert response.status == 200 and response.content_type == "application/json" and response.charset == "utf-8"
    read = Store(bot_dir / "dialogues.db", read_only=True)
    # the store's, whole, with whether its web customer reads the replies' Markdown drawn
    assert await response.json() == json.loads(dumps({**read.transcript("long", 500), "markdown": True}))
    read.close()
    assert len((await response.json())["turns"]) == 500
    assert json.loads(base.dumps_in_parts({"turns": []}, "turns")) == {"turns": []}


async def test_a_transcript_read_after_a_turn_holds_the_turns_after_it_alone(bot_dir: Path, aiohttp_client: Any) -> None:
    """The console read the whole transcript of the conversation it shows at each poll, every 3 s: 200 turns read,
    sent and drawn again for the one the customer had just written. ``?after=`` a turn id gives the turns after it
    alone, the latest ``limit`` of them, ``earlier`` saying whether more came after it; the rest as without it."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    store = Store(bot_dir / "dialogues.db")
    store.log_exchanges([Exchange("c1", "web", None, f"message {i}", None, f"reply {i}", "greet", 0.9, [("greet", 0.9)],
                                  "template", "v0001", 0.7, {}, 0) for i in range(3)])
    store.close()

    async def read(query: str) -> dict[str, Any]:
        response = await client.get(f"/admin/conversations/c1{query}", headers=AUTH)
        assert response.status == 200, await response.text()
        return await response.json()

    whole = await read("")
    ids = [turn["id"] for turn in whole["turns"]]
    assert len(ids) == 6 and (await read("?after=0")) == whole
    after = await read(f"?after={ids[3]}")
    assert [turn["id"] for turn in after["turns"]] == ids[4:] and after["earlier"] is False
    assert {k: v for k, v in after.items() if k != "turns"} == {k: v for k, v in whole.items() if k != "turns"}
    latest = await read(f"?after={ids[1]}&limit=2")
    assert [turn["id"] for turn in latest["turns"]] == ids[4:] and latest["earlier"] is True
    assert (await read(f"?after={ids[5]}"))["turns"] == []
    for wrong in ("-1", "x", "1.5", "1" * 19):
        response = await client.get(f"/admin/conversations/c1?after={wrong}", headers=AUTH)
        assert response.status == 400 and "after" in (await response.json())["error"]


async def test_a_long_transcript_is_read_while_customers_messages_are_answered(
        bot_dir: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console reads as many turns as an agent scrolled up to, up to 10,000, at each refresh: 450 ms on the thread
    whose reads each customer's message waits for (the reply kept for a message sent again). More turns than the
    console's first page are read on the admin's reads' thread: a message is answered while such a read is held."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    write_long_conversation(bot_dir, 150)
    reading, answered = threading.Event(), threading.Event()
    held: list[bool] = []
    transcript = Store.transcript

    def held_transcript(self: Store, conversation_id: str, limit: int = 200, after: int = 0) -> Any:
        """The long read waits, the first time, for the customer's message to be answered (10 s at most)."""
        if limit > 200 and not held:
            reading.set()
            held.append(answered.wait(10))
        return transcript(self, conversation_id, limit, after)

    monkeypatch.setattr(Store, "transcript", held_transcript)
    long_read = asyncio.ensure_future(client.get("/admin/conversations/long?limit=300", headers=AUTH))
    assert await asyncio.to_thread(reading.wait, 10), "the transcript was never read"
    sent = await asyncio.wait_for(client.post("/api/chat", json={"conversation_id": "another", "text": "hello",
                                                                 "message_id": "m-1"}), 20)
    assert sent.status == 200
    answered.set()
    response = await asyncio.wait_for(long_read, 20)
    assert held == [True], "the customer's message waited for the transcript's read"
    assert response.status == 200 and len((await response.json())["turns"]) == 300
    first_page = await client.get("/admin/conversations/long", headers=AUTH)
    assert len((await first_page.json())["turns"]) == 200


async def test_handoff_agent_reply_handback_and_learning_from_the_answer(bot_dir: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    socket = await client.ws_connect("/api/ws")
    await socket.send_json({"type": "join", "conversation_id": "lost"})
    assert (await socket.receive_json())["status"] == "open"

    # Three misses in a row hand the conversation to a person.
    assert (await chat(client, "lost", QUESTION))["source"] == "fallback"
    assert (await chat(client, "lost", "hello??"))["source"] == "fallback"
    third = await chat(client, "lost", "is anyone there")
    assert third["source"] == "handoff" and third["handed_off"] is True
    # every tab of the conversation shows the handoff at once, not only the one that asked
    assert await next_push(socket) == {"type": "status", "conversation_id": "lost", "status": "handed_off", "by": "bot"}

    # While handed off the bot is silent; the agent answers through the admin API, on the same socket.
    silent = await chat(client, "lost", "it was order 123")
    assert (silent["reply"], silent["source"], silent["turn_id"]) == ("", "silent", None)
    history = await (await client.get("/api/conversations/lost/history")).json()
    assert silent["user_turn_id"] == history["turns"][-1]["id"] > third["user_turn_id"]  # what the widget has seen
    assert (await client.post("/admin/conversations/lost/messages", json={"text": ANSWER})).status == 401
    sent = await client.post("/admin/conversations/lost/messages", json={"text": ANSWER, "agent": " Sam "}, headers=AUTH)
    assert sent.status == 200
    # the banner names the agent, who gave their name with this reply
    assert await next_push(socket) == {"type": "status", "conversation_id": "lost", "status": "handed_off", "by": "agent",
                                       "agent": "Sam"}
    pushed = await next_push(socket)
    assert (pushed["type"], pushed["reply"], pushed["turn_id"], pushed["author"]) == (
        "agent", ANSWER, (await sent.json())["turn_id"], "Sam")  # the agent's name, shown beside the reply

    # The customer hands back with the widget's button.
    resumed = await chat(client, "lost", "/resume")
    assert resumed["source"] == "resume" and resumed["handed_off"] is False
    history = await (await client.get("/api/conversations/lost/history")).json()
    assert history["status"] == "open"
    assert [(t["role"], t["author"]) for t in history["turns"] if t["author"]] == [("agent", "Sam")]

    # Asking for the handoff intent hands off at once.
    by_intent = await chat(client, "other", "/contact_human_agent")
    assert by_intent["source"] == "handoff" and by_intent["handed_off"] is True

    # The agent's answer is a candidate historical answer to what the customer first asked.
    store = Store(bot_dir / "dialogues.db")
    [candidate] = store.answer_candidates()
    assert (candidate["question"], candidate["answer"]) == (QUESTION, ANSWER)
    store.close()

    # bot retrain (run beside the server, as from cron) indexes it, and the server swaps by itself.
    result = await asyncio.to_thread(retrain, load_project(bot_dir), "cpu", False)
    serving = Registry(bot_dir / "models").current()
    assert serving != "v0001" and serving in (result.version, result.decision.get("index_refresh"))
    for _ in range(100):
        if (await (await client.get("/healthz")).json())["model_version"] == serving:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"the server never swapped to {serving}")

    learned = await chat(client, "next-customer", QUESTION)
    assert (learned["source"], learned["reply"]) == ("retrieval", ANSWER)
    await socket.close()


async def test_the_inbox_lists_waiting_customers_longest_first_with_their_transcripts(
        bot_dir: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "asked", "I need help with my bill")
    assert (await chat(client, "asked", "/handoff"))["handed_off"] is True
    for text in (QUESTION, "hello??", "is anyone there"):
        missed = await chat(client, "missed", text)
    assert missed["handed_off"] is True
    await chat(client, "happy", "hi")

    async def inbox(query: str = "") -> dict[str, Any]:
        response = await client.get(f"/admin/conversations{query}", headers=AUTH)
        assert response.status == 200, await response.text()
        return await response.json()

    assert (await client.get("/admin/conversations")).status == 401
    listed = await inbox()
    assert [(c["conversation_id"], c["reason"], c["last_message"]) for c in listed["conversations"]] == [
        ("asked", "requested", "I need help with my bill"), ("missed", "fallbacks", "is anyone there")]
    assert all(c["waiting_since"] == c["handed_off_at"] for c in listed["conversations"]) and listed["total"] == 2
    assert await waiting_metrics(client) == (2, True)
    # A second agent's takeover of a customer already waiting changes nothing: not the reason, not the wait.
    taken = await client.post("/admin/conversations/asked/handoff", headers=AUTH)
    assert taken.status == 200 and await taken.json() == {"status": "handed_off", "agent": None}
    assert (await inbox())["conversations"] == listed["conversations"]

    # Once an agent has answered, the customer no longer waits, until they write again.
    sent = await client.post("/admin/conversations/asked/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)
    assert sent.status == 200
    assert [(c["conversation_id"], c["waiting_since"]) for c in (await inbox())["conversations"]][1] == ("asked", None)
    assert (await inbox())["waiting"] == 1  # of the 2 handed off
    assert await waiting_metrics(client) == (1, True)
    await chat(client, "asked", "and the other invoice?")
    transcript = await (await client.get("/admin/conversations/asked", headers=AUTH)).json()
    waiting_from = transcript["turns"][-1]["created"]
    assert [c["waiting_since"] for c in (await inbox())["conversations"]] == [
        (await inbox())["conversations"][0]["handed_off_at"], waiting_from]
    assert (await inbox("?limit=1"))["total"] == 2 and len((await inbox("?limit=1"))["conversations"]) == 1
    assert (await inbox("?limit=1"))["waiting"] == 2  # the waiting customer past the page counts too
    assert (await inbox("?limit=0"))["waiting"] == 2  # and with no page at all, for the count alone

    # The open ones, for an agent who wants to take one over; a wrong status is named.
    assert [c["conversation_id"] for c in (await inbox("?status=open"))["conversations"]] == ["happy"]
    wrong = await client.get("/admin/conversations?status=closed", headers=AUTH)
    assert wrong.status == 400 and "status" in (await wrong.json())["error"]

    # The transcript shows what the bot made of each message and why the conversation was handed off.
    missed_transcript = await (await client.get("/admin/conversations/missed", headers=AUTH)).json()
    users = [t for t in missed_transcript["turns"] if t["role"] == "user"]
    assert [t["text"] for t in users] == [QUESTION, "hello??", "is anyone there"]
    assert [t["source"] for t in users] == ["fallback", "fallback", "handoff"] and all(t["intent"] for t in users)
    assert [(h["event"], h["reason"]) for h in missed_transcript["handoffs"]] == [("handed_off", "fallbacks")]
    assert [t["role"] for t in transcript["turns"]] == ["user", "bot", "user", "bot", "agent", "user"]
    assert (await client.get("/admin/conversations/nobody", headers=AUTH)).status == 404
    NOBODY = {"code": "no_conversation", "conversation_id": "nobody"}  # for a client to say in its agent's language
    for action in ("handoff", "handback"):  # no customer waits in a conversation that never began
        unknown = await client.post(f"/admin/conversations/nobody/{action}", headers=AUTH)
        assert (unknown.status, await unknown.json()) == (404, {"error": "no conversation 'nobody'", **NOBODY})
    unknown = await client.post("/admin/conversations/nobody/messages", json={"agent": "Sam", "text": "hi"}, headers=AUTH)
    assert (unknown.status, await unknown.json()) == (404, {"error": "no conversation 'nobody'", **NOBODY})  # not "Not Found"
    assert (await inbox())["total"] == 2

    # The agents' console, a page over this API, cannot be framed by another site.
    console = await client.get("/agent")
    assert console.status == 200 and "admin/conversations?" in await console.text()
    assert console.headers["X-Frame-Options"] == "DENY"
    assert console.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


async def test_each_handoff_but_an_agents_takeover_is_announced_to_the_agents_webhook(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    notices: list[dict[str, Any]] = []
    agents: set[str | None] = set()

    async def hook(request: web.Request) -> web.Response:
        notices.append(await request.json())
        agents.add(request.headers.get("User-Agent"))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    helpdesk = await aiohttp_server(receiver)
    set_handoff(bot_dir, notify_url=str(helpdesk.make_url("/hook")))
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))

    await chat(client, "asked", "my card number is 4111 1111 1111 1111")
    assert (await chat(client, "asked", "/handoff"))["handed_off"] is True
    assert (await chat(client, "login.example-shop.co", "/handoff"))["handed_off"] is True  # a client's own id
    await chat(client, "taken", "hello")
    assert (await client.post("/admin/conversations/taken/handoff", headers=AUTH)).status == 200
    # `bot chat` in a terminal: its conversations are in no agent's inbox, and no agent's reply reaches them
    tryout = await client.app[BOT].handle(Turn("cli:try", "/handoff", TRYOUT_CHANNEL))
    assert tryout.source == "handoff"
    await client.app[BOT].notifier.close()  # the notices on their way arrive
    # Named by a reference that grants nothing: the id is a web customer's key to their conversation, and everyone in
    # the webhook's room read it. The console's link opens the conversation once an agent signs in.
    opened = {}
    for notice in notices:
        ref = notice["reference"]
        assert notice == {"event": "handed_off", "reference": ref, "channel": "web", "reason": "requested",
                          "console": f"/agent#ref={ref}",
                          "text": f"A customer on web is waiting for a person (requested): /agent#ref={ref}"}
        referred = await client.get(f"/admin/refs/{ref}", headers=AUTH)
        assert referred.status == 200
        opened[(await referred.json())["conversation_id"]] = ref
        assert (await client.get(f"/admin/refs/{ref}")).status == 401  # without a token, nothing
    assert sorted(opened) == ["asked", "login.example-shop.co"] and len(set(opened.values())) == 2
    assert not any(cid in json.dumps(notice) for notice in notices for cid in opened)
    assert await (await client.get(f"/admin/refs/{opened['asked']}", headers=AUTH)).json() == {
        "conversation_id": "asked", "channel": "web", "status": "handed_off"}
    unknown = await client.get(f"/admin/refs/{'A' * 22}", headers=AUTH)
    assert unknown.status == 404 and "no conversation has this reference" in (await unknown.json())["error"]
    assert agents == {f"deskbot/{version('deskbot')}"}  # not which Python and aiohttp versions, flaws and all


async def test_a_notices_link_is_to_the_console_where_the_agents_reach_it(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The notice's link into the agents' console is a path (/agent) unless handoff.console_url says where the agents
    reach it, which a chat room shows as a link to click; a reload brings a new one. An address with a fragment of
    its own, which the reference would follow, is refused."""
    links: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        links.append((await request.json())["console"])
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    console = "https://chat.shop.example/support/agent"
    set_handoff(bot_dir, notify_url=str((await aiohttp_server(receiver)).make_url("/hook")), console_url=console)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    assert (await chat(client, "asked", "/handoff"))["handed_off"] is True
    set_handoff(bot_dir, console_url=None)
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    assert (await chat(client, "later", "/handoff"))["handed_off"] is True
    await client.app[BOT].notifier.close()
    store = client.app[BOT].store
    assert links == [f"{console}#ref={store.reference('asked')}", f"/agent#ref={store.reference('later')}"]
    set_handoff(bot_dir, console_url=f"{console}#inbox")
    with pytest.raises(ProjectError, match="console_url"):
        load_project(bot_dir)


async def test_a_notice_whose_reference_the_store_cannot_keep_still_tells_the_agents(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk keeps the conversation's reference from being written: the notice goes all the same, without it,
    linking to the console's inbox, where the customer waits; never with the id in its place."""
    notices: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        notices.append(await request.json())
        return web.Response(status=204)

    def full(self: Store, conversation_id: str) -> str:
        raise sqlite3.OperationalError("database or disk is full")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    set_handoff(bot_dir, notify_url=str((await aiohttp_server(receiver)).make_url("/hook")))
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    monkeypatch.setattr(Store, "reference", full)
    assert (await chat(client, "web-key-of-the-customer", "/handoff"))["handed_off"] is True
    await client.app[BOT].notifier.close()
    assert notices == [{"event": "handed_off", "reference": None, "channel": "web", "reason": "requested",
                        "console": "/agent", "text": "A customer on web is waiting for a person (requested): /agent"}]
    assert "no reference could be kept (database or disk is full): it links to the inbox" in caplog.text


async def test_the_admin_api_takes_a_conversations_id_in_a_header_out_of_the_url(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Every admin call on a conversation named it in its path, which the access logs on the way keep, and a web
    visitor's id is the key to their conversation. ``~`` in its place names the conversation in X-Deskbot-Conversation,
    any channel's, as the path would; without the header, or on the web API, it is refused."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "web-key-of-the-customer", "I need help with my bill")
    named = {**AUTH, "X-Deskbot-Conversation": "web-key-of-the-customer"}
    assert (await client.post("/admin/conversations/~/handoff?agent=Ana", headers=named)).status == 200
    sent = await client.post("/admin/conversations/~/messages", headers=named, json={"text": "Hi, Ana here.", "agent": "Ana"})
    assert sent.status == 200
    read = await client.get("/admin/conversations/~?limit=5", headers=named)
    assert read.status == 200 and (await read.json())["conversation_id"] == "web-key-of-the-customer"
    assert (await read.json())["turns"][-1]["text"] == "Hi, Ana here."
    for headers in (AUTH, {**AUTH, "X-Deskbot-Conversation": "not an id"}):
        refused = await client.get("/admin/conversations/~", headers=headers)
        assert refused.status == 400 and (await refused.json())["error"].startswith("X-Deskbot-Conversation: ")
    other = await client.get("/admin/conversations/web-key-of-the-customer",
                             headers={**AUTH, "X-Deskbot-Conversation": "another-one"})  # which of the two?
    assert other.status == 400 and "names another conversation than the path" in (await other.json())["error"]
    unknown = await client.get("/admin/conversations/~", headers={**AUTH, "X-Deskbot-Conversation": "slack:T1:C1:1"})
    assert unknown.status == 404  # another channel's, which the store does not hold
    web_api = await client.get("/api/conversations/~/history", headers={"X-Deskbot-Conversation": "web-key-of-the-customer"})
    assert web_api.status == 400


async def test_a_webhooks_redirect_is_not_followed(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A notice names the conversation, whose id is the key to a web customer's: a receiver's redirect carried it (a
    307 the body too) wherever it pointed, as the action server's is not followed for the tracker it would carry. The
    error said in the log, which everyone on call reads and its aggregator keeps, names the conversation by its tag."""
    elsewhere: list[str] = []

    async def anywhere(request: web.Request) -> web.Response:
        elsewhere.append(await request.text())
        return web.Response(status=204)

    other = web.Application()
    other.router.add_route("*", "/collect", anywhere)
    collector = await aiohttp_server(other)

    async def hook(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(collector.make_url("/collect")))

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    helpdesk = await aiohttp_server(receiver)
    set_handoff(bot_dir, notify_url=str(helpdesk.make_url("/hook")))
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    assert (await chat(client, "web-key-of-the-customer", "/handoff"))["handed_off"] is True
    await client.app[BOT].notifier.close()  # the notice on its way is answered
    assert elsewhere == []
    tag = log_tag("web-key-of-the-customer")
    assert f"handoff notice for {tag}: http://{helpdesk.host}:{helpdesk.port} answered 307 (1 try)" in caplog.text
    assert "web-key-of-the-customer" not in caplog.text


async def test_a_customer_released_to_the_queue_is_announced_to_the_agents_webhook(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """A team that hears of waiting customers in a chat room heard nothing of one an agent released at the end of a
    shift: nobody's, they waited until someone looked at the console. A release is announced as a handoff is; a
    transfer, to a colleague who has the customer, is not."""
    notices: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        notices.append(await request.json())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    set_handoff(bot_dir, notify_url=str((await aiohttp_server(receiver)).make_url("/hook")))
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "taken", "hello")
    for action in ("handoff?agent=Ana", "transfer?agent=Ana&to=Bob", "release?agent=Bob"):
        assert (await client.post(f"/admin/conversations/taken/{action}", headers=AUTH)).status == 200
    await client.app[BOT].notifier.close()  # the notices on their way arrive
    ref = await client.app[BOT]._store(client.app[BOT].store.reference, "taken")
    assert notices == [{"event": "handed_off", "reference": ref, "channel": "web", "reason": "released",
                        "console": f"/agent#ref={ref}",
                        "text": f"A customer on web is waiting for a person (released): /agent#ref={ref}"}]


async def test_an_agent_leaving_for_the_day_releases_all_their_customers_at_once(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """An agent leaving for the day released their customers one by one. One call releases all they have, each as a
    release does (announced to the agents' webhook), and no colleague's: their own with their own token, any agent's
    named with the admin token, which must name one, kept as the admin's release: Bob did not release his."""
    notices: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        notices.append((await request.json())["reference"])
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    set_handoff(bot_dir, notify_url=str((await aiohttp_server(receiver)).make_url("/hook")))
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana, bob = {"Authorization": "Bearer ana-own-token-0123"}, {"Authorization": "Bearer bob-own-token-4567"}
    for cid, auth in (("first", ana), ("bobs", bob), ("second", ana)):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=auth)).status == 200
    await chat(client, "with-bot", "hello")

    async def release(query: str, auth: dict[str, str]) -> tuple[int, Any]:
        response = await client.post(f"/admin/release{query}", headers=auth)
        return response.status, await response.json()

    assert (await release("?agent=Ana", bob))[0] == (await release("?by=Bob", ana))[0] == 403
    assert (await release("", AUTH))[0] == 400  # the admin token has no customers of its own
    assert await release("", ana) == (200, {"released": ["first", "second"]})
    assert await release("?agent=ana", AUTH) == (200, {"released": []})  # released already
    inbox = await (await client.get("/admin/conversations", headers=AUTH)).json()
    assert {c["conversation_id"]: c["agent"] for c in inbox["conversations"]} == {
        "first": None, "bobs": "Bob", "second": None}
    assert await release("?agent=Bob", AUTH) == (200, {"released": ["bobs"]})

    async def handoffs(cid: str) -> list[tuple[str | None, str | None, str | None]]:
        kept = (await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json())["handoffs"]
        return [(h["agent"], h["from"], h["by"]) for h in kept]

    assert await handoffs("first") == [("Ana", None, None), (None, "Ana", "Ana")]
    assert await handoffs("bobs") == [("Bob", None, None), (None, "Bob", "admin")]
    await client.app[BOT].notifier.close()  # the notices on their way arrive
    store = client.app[BOT].store
    assert sorted(notices) == sorted(store.reference(cid) for cid in ("bobs", "first", "second"))


async def test_a_leads_release_of_all_a_colleagues_customers_is_kept_as_the_leads(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Without server.agents, a lead releasing all of Ana's customers with the admin token was kept as Ana releasing
    them herself: the transcript said so, and her console told her nothing of customers gone from her list. Made
    ``?by=`` the lead, as the console sends it, it is kept as the lead's, and Ana's inbox names them."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("first", "second"):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff?agent=Ana", headers=AUTH)).status == 200
    released = await client.post("/admin/release?agent=ana&by=%20Lea", headers=AUTH)
    assert released.status == 200 and await released.json() == {"released": ["first", "second"]}
    inbox = await (await client.get("/admin/conversations?agent=Ana&limit=0", headers=AUTH)).json()
    assert sorted((t["conversation_id"], t["by"], t["to"]) for t in inbox["taken"]) == [
        ("first", "Lea", None), ("second", "Lea", None)]
    transcript = await (await client.get("/admin/conversations/first", headers=AUTH)).json()
    assert [(h["agent"], h["from"], h["by"]) for h in transcript["handoffs"]][-1] == (None, "Ana", "Lea")


async def test_a_reload_brings_the_handoff_settings_it_reads(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The notices kept going to the webhook the server started with (or to none), and a busy message set
    after the start was never said, though a swap reads bot.yml's handoff settings."""
    notices: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        notices.append(request.path)
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/{path}", hook)
    helpdesk = await aiohttp_server(receiver)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    set_handoff(bot_dir, notify_url=str(helpdesk.make_url("/new-hook")), busy_after_seconds=0.4)
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    assert (await chat(client, "asked", "/handoff"))["handed_off"] is True
    busy = "Sorry for the wait: our agents are all busy right now."
    for _ in range(100):  # within the watcher's next look at the setting
        turns = (await (await client.get("/api/conversations/asked/history")).json())["turns"]
        if turns[-1]["text"].startswith(busy):
            break
        await asyncio.sleep(0.1)
    assert turns[-1]["text"].startswith(busy)
    await client.app[BOT].notifier.close()
    assert notices == ["/new-hook"]


async def settled(notifier: notify.HandoffNotifier) -> None:
    """Until ``notifier`` has no notice on its way (close() gives up those waiting to be tried again)."""
    for _ in range(500):
        if not notifier._tasks._tasks:
            return
        await asyncio.sleep(0.01)


async def test_a_notice_waiting_to_be_tried_again_is_given_up_at_once_at_shutdown(
        aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A webhook restarting asked for 10 s: the server's shutdown waited its 5 s grace for the notice, then
    dropped it without a word in the log."""
    posts: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(time.monotonic())
        return web.Response(status=503, headers={"Retry-After": "10"})

    receiver = web.Application()
    receiver.router.add_post("/services/SECRET", hook)
    helpdesk = await aiohttp_server(receiver)
    notifier = notify.HandoffNotifier(str(helpdesk.make_url("/services/SECRET")))
    notifier.handed_off("asked", "web", "requested")
    for _ in range(200):
        if posts:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await notifier.close()
    assert time.monotonic() - started < 1 and len(posts) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"handoff notice for {log_tag('asked')}: http://{helpdesk.host}:{helpdesk.port} answered 503 (1 try), "
                      "given up at shutdown"]


async def test_a_webhook_that_is_down_costs_a_log_line_not_the_reply(
        bot_dir: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "RETRY_DELAY_S", 0.01)
    port = unused_port()
    set_handoff(bot_dir, notify_url=f"http://127.0.0.1:{port}/hook/SECRET")  # nothing listens there
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    reply = await chat(client, "asked", "/handoff")
    assert reply["handed_off"] is True and reply["source"] == "handoff"
    await settled(client.app[BOT].notifier)
    await client.app[BOT].notifier.close()
    assert f"handoff notice for {log_tag('asked')}: http://127.0.0.1:{port} unreachable" in caplog.text
    assert "(3 tries)" in caplog.text and "SECRET" not in caplog.text
    transcript = await (await client.get("/admin/conversations/asked", headers=AUTH)).json()
    assert transcript["status"] == "handed_off"


@pytest.mark.parametrize(("answers", "posts", "logged"), [
    ([503, 200], 2, None),  # a receiver restarting: the notice arrives a moment later
    (["slow", 204], 2, None),  # a timeout
    ([429, 500, 502], 3, "answered 502 (3 tries)"),  # given up after three tries, with one line
    ([404], 1, "answered 404 (1 try)"),  # a wrong address: the same notice would be refused again
])
async def test_a_notice_the_webhook_could_not_take_is_tried_again(
        aiohttp_server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        answers: list[Any], posts: int, logged: str | None) -> None:
    """A notice was posted once: a chat room's webhook restarting, slow, or asking to slow down (429) lost it
    for good, and the log line quoted the webhook's URL whole, its secret with it."""
    monkeypatch.setattr(notify, "RETRY_DELAY_S", 0.01)
    monkeypatch.setattr(notify, "RETRY_AFTER_CAP_S", 0.05)  # a receiver asking for an hour is not waited for
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        answer = answers[len(bodies) - 1]
        if answer == "slow":
            await asyncio.sleep(1)
            answer = 200
        return web.Response(status=answer, headers={"Retry-After": "3600"} if answer in (429, 503) else {})

    receiver = web.Application()
    receiver.router.add_post("/services/T1/B2/SECRET", hook)
    helpdesk = await aiohttp_server(receiver)
    notifier = notify.HandoffNotifier(str(helpdesk.make_url("/services/T1/B2/SECRET?token=SECRET")), timeout=0.3)
    notifier.handed_off("asked", "web", "requested")
    await settled(notifier)
    await notifier.close()
    assert len(bodies) == posts and all(body == bodies[0] for body in bodies)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    origin = f"http://{helpdesk.host}:{helpdesk.port}"
    assert errors == ([f"handoff notice for {log_tag('asked')}: {origin} {logged}"] if logged else [])


async def test_the_inbox_says_which_agent_has_each_customer(bot_dir: Path, aiohttp_client: Any) -> None:
    """A takeover recorded nobody: a second agent saw the customer in the inbox as anyone's, and answered too. Without
    server.agents, the agents who have customers are the colleagues a lead's console offers to list alone: it offered
    none, and an absent colleague's customers were found among everyone's."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("taken", "asked"):
        await chat(client, cid, "I need help with my bill")
    assert (await chat(client, "asked", "/handoff"))["handed_off"] is True
    taken = await client.post("/admin/conversations/taken/handoff?agent=%20Ana%20", headers=AUTH)
    assert taken.status == 200, await taken.text()
    sent = await client.post("/admin/conversations/asked/messages", json={"text": ANSWER, "agent": "Sam"}, headers=AUTH)
    assert sent.status == 200
    listed = await (await client.get("/admin/conversations", headers=AUTH)).json()
    assert {c["conversation_id"]: c["agent"] for c in listed["conversations"]} == {"taken": "Ana", "asked": "Sam"}
    # Ana replying from a window where she typed her name otherwise is still Ana, as she took the customer over
    sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "ANA"}, headers=AUTH)
    assert sent.status == 200
    listed = await (await client.get("/admin/conversations", headers=AUTH)).json()
    assert {c["conversation_id"]: c["agent"] for c in listed["conversations"]} == {"taken": "Ana", "asked": "Sam"}
    assert (listed["team"], listed["colleagues"]) == ([], ["Ana", "Sam"])  # one spelling of each
    # at a change of shift, the customers one agent leaves, found among everyone's
    anas = await (await client.get("/admin/conversations?holder=%20ana", headers=AUTH)).json()
    assert [c["conversation_id"] for c in anas["conversations"]] == ["taken"] and anas["total"] == 1
    assert anas["waiting"] == listed["waiting"]  # every waiting customer still counted, for the tab's title
    nobodys = await (await client.get("/admin/conversations?status=open&holder=Ana", headers=AUTH)).json()
    assert (nobodys["conversations"], nobodys["total"]) == ([], 0)  # the open ones are nobody's
    assert (await client.get(f"/admin/conversations?holder={'a' * 65}", headers=AUTH)).status == 400
    too_long = await client.post(f"/admin/conversations/taken/handback?agent={'a' * 65}", headers=AUTH)
    assert too_long.status == 400 and "agent" in (await too_long.json())["error"]
    back = await client.post("/admin/conversations/taken/handback?agent=Ana&after=1000000", headers=AUTH)
    assert back.status == 200, await back.text()
    transcript = await (await client.get("/admin/conversations/taken", headers=AUTH)).json()
    assert [(h["event"], h["reason"], h["agent"]) for h in transcript["handoffs"]] == [
        ("handed_off", "agent", "Ana"), ("open", "agent", "Ana")]
    open_ones = await (await client.get("/admin/conversations?status=open", headers=AUTH)).json()
    assert [c["agent"] for c in open_ones["conversations"]] == [None]
    assert open_ones["colleagues"] == ["Sam"]  # Ana has none now


async def test_the_inbox_lists_the_customers_nobody_has_alone(bot_dir: Path, aiohttp_client: Any) -> None:
    """"Mine only" listed one agent's customers; the waiting customers nobody had taken yet, or whom an agent released,
    could be found only among everyone's. ``?unheld=true`` lists those alone."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("taken", "asked", "released"):
        await chat(client, cid, "I need help with my bill")
        await chat(client, cid, "/handoff")
    for path in ("taken/handoff?agent=Ana", "released/handoff?agent=Bob", "released/release?agent=Bob"):
        assert (await client.post(f"/admin/conversations/{path}", headers=AUTH)).status == 200
    nobodys = await (await client.get("/admin/conversations?unheld=true", headers=AUTH)).json()
    assert [c["conversation_id"] for c in nobodys["conversations"]] == ["asked", "released"]
    assert (nobodys["total"], nobodys["waiting"]) == (2, 3)  # every waiting customer still counted, for the title
    everyones = await (await client.get("/admin/conversations?unheld=false", headers=AUTH)).json()
    assert everyones["total"] == 3
    with_the_bot = await (await client.get("/admin/conversations?status=open&unheld=true", headers=AUTH)).json()
    assert with_the_bot["total"] == 0
    for query in ("unheld=yes", "unheld=true&holder=Ana"):
        refused = await client.get(f"/admin/conversations?{query}", headers=AUTH)
        assert refused.status == 400 and "unheld" in (await refused.json())["error"]


async def test_the_inbox_finds_conversations_by_what_they_hold_and_pages_past_the_first(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """An agent could list the first conversations alone, up to the limit: ``?q=`` finds one by what it holds, and
    ``?offset=`` reads the pages after the first."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid, text in (("first", "my invoice 2041 is wrong"), ("second", "hello"), ("third", "hello again")):
        await chat(client, cid, text)

    async def listed(query: str) -> tuple[int, Any]:
        response = await client.get(f"/admin/conversations?status=open&{query}", headers=AUTH)
        return response.status, await response.json()

    status, found = await listed("q=%20INVOICE%202041%20")
    assert status == 200 and [c["conversation_id"] for c in found["conversations"]] == ["first"] and found["total"] == 1
    status, page = await listed("limit=2&offset=1")
    assert [c["conversation_id"] for c in page["conversations"]] == ["second", "first"] and page["total"] == 3
    for query, said in (("offset=-1", "offset: must be a number"), (f"q={'x' * 201}", "q: at most 200 characters")):
        assert await listed(query) == (400, {"error": said})


async def test_the_inbox_is_searched_by_a_header_the_access_logs_do_not_keep(bot_dir: Path, aiohttp_client: Any) -> None:
    """What an agent searches for is what they know of a customer (a name, an e-mail address, an order number): sent as
    ``?q=``, it went into every proxy's and server's access log. ``X-Deskbot-Search`` carries it, percent-encoded UTF-8
    for a Chinese search, and wins over an older console's ``?q=``."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid, text in (("first", "我的订单 2041 还没到"), ("second", "hello")):
        await chat(client, cid, text)

    async def listed(search: str, query: str = "") -> tuple[int, Any]:
        response = await client.get(f"/admin/conversations?status=open{query}",
                                    headers={**AUTH, "X-Deskbot-Search": search})
        return response.status, await response.json()

    status, found = await listed(quote(" 订单 2041 "))
    assert status == 200 and [c["conversation_id"] for c in found["conversations"]] == ["first"] and found["total"] == 1
    status, found = await listed("HELLO", "&q=2041")
    assert status == 200 and [c["conversation_id"] for c in found["conversations"]] == ["second"]
    for search, said in (("%FF", "X-Deskbot-Search: not percent-encoded UTF-8"),
                         (quote("订" * 201), "X-Deskbot-Search: at most 200 characters")):
        assert await listed(search) == (400, {"error": said})
    assert await listed("", f"&q={'x' * 201}") == (400, {"error": "q: at most 200 characters"})  # as documented


async def test_the_inbox_finds_the_conversation_a_log_line_names_by_its_tag(bot_dir: Path, aiohttp_client: Any) -> None:
    """The log names a conversation by a tag, not by its id: whoever follows a warning to its conversation searches the
    inbox for the tag, which finds that conversation alone, in either list."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid, text in (("web-first", "hello"), ("web-second", "hello again"), ("web-third", "/handoff")):
        await chat(client, cid, text)

    async def found(status: str, search: str) -> list[str]:
        response = await client.get(f"/admin/conversations?status={status}",
                                    headers={**AUTH, "X-Deskbot-Search": quote(search)})
        return [c["conversation_id"] for c in (await response.json())["conversations"]]

    assert await found("open", log_tag("web-second")) == ["web-second"]
    assert await found("open", log_tag("web-second").upper()) == ["web-second"]  # as copied from a log viewer
    assert await found("handed_off", log_tag("web-third")) == ["web-third"]
    assert await found("open", log_tag("web-third")) == []


async def test_an_agents_note_is_for_the_agents_alone(bot_dir: Path, aiohttp_client: Any) -> None:
    """Agents had nowhere to tell a colleague what they knew of a customer but a reply, which the customer read: a
    note is kept for the agents' transcript, and neither sent to the customer nor in their history."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    socket = await client.ws_connect("/api/ws")
    await socket.send_json({"type": "join", "conversation_id": "noted"})
    await chat(client, "noted", "I need help with my bill")

    async def note(cid: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/{cid}/notes", json=body, headers=AUTH)
        return response.status, await response.json()

    status, added = await note("noted", {"text": " Refund promised by phone. ", "agent": " Ana "})
    assert status == 200 and set(added) == {"note_id"}
    transcript = await (await client.get("/admin/conversations/noted", headers=AUTH)).json()
    assert [(n["id"], n["agent"], n["text"]) for n in transcript["notes"]] == [
        (added["note_id"], "Ana", "Refund promised by phone.")]
    history = await (await client.get("/api/conversations/noted/history")).json()
    assert "Refund" not in json.dumps(history)
    assert (await note("nobody", {"text": "hello"}))[0] == 404
    assert (await note("noted", {"text": "\u200b"}))[0] == 400
    await chat(client, "noted", "hello?")  # the socket's next push is the answer's, not the note
    while (frame := await socket.receive_json(timeout=5))["type"] != "sync":
        assert "Refund" not in json.dumps(frame)
    await socket.close()


async def test_a_note_added_again_under_its_key_is_kept_once(bot_dir: Path, aiohttp_client: Any) -> None:
    """A note kept whose answer was lost on the way back, added again, was kept twice, as a reply sent again was before
    it had a key: a note added under the key of one the conversation holds is that one; another text under it is
    refused, and one added without a key is a note of its own, as before."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "noted-twice", "I need help with my bill")

    async def note(body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.post("/admin/conversations/noted-twice/notes", json=body, headers=AUTH)
        return response.status, await response.json()

    first = await note({"text": "Refund promised by phone.", "agent": "Ana", "key": "note-1"})
    assert first[0] == 200
    assert await note({"text": " Refund promised by phone. ", "agent": "Ana", "key": "note-1"}) == first
    status, refused = await note({"text": "Refund refused.", "agent": "Ana", "key": "note-1"})
    assert (status, refused["code"]) == (422, "key_reused")
    assert (await note({"text": "Refund promised by phone.", "key": "not a key!"}))[0] == 400
    assert (await note({"text": "Refund promised by phone.", "agent": "Ana"}))[0] == 200  # no key: a note of its own
    transcript = await (await client.get("/admin/conversations/noted-twice", headers=AUTH)).json()
    assert [(n["id"], n["text"]) for n in transcript["notes"]][0] == (first[1]["note_id"], "Refund promised by phone.")
    assert [n["text"] for n in transcript["notes"]] == ["Refund promised by phone."] * 2
    assert "request_key" not in transcript["notes"][0]


async def test_an_agents_note_is_taken_back_by_its_author_alone(bot_dir: Path, aiohttp_client: Any) -> None:
    """A note could not be taken back: a slip, or what no longer held, stayed for every colleague to read as current.
    Its author deletes it (by their name in any letter case), a colleague is refused naming them, and a note written
    with no name is anyone's to delete."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "noted", "I need help with my bill")

    async def added(body: dict[str, Any]) -> int:
        response = await client.post("/admin/conversations/noted/notes", json=body, headers=AUTH)
        return (await response.json())["note_id"]

    async def delete(path: str) -> tuple[int, Any]:
        response = await client.delete(f"/admin/conversations/{path}", headers=AUTH)
        return response.status, await response.json()

    anas, nameless = await added({"text": "Refund promised.", "agent": "Ana"}), await added({"text": "客户很着急"})
    assert await delete(f"noted/notes/{anas}?agent=Bob") == (403, {"error": "Ana wrote this note: only they can "
                                                                            "delete it", "code": "not_the_author",
                                                                            "agent": "Ana"})
    assert (await delete(f"noted/notes/{anas}"))[0] == 403
    assert (await delete(f"other/notes/{anas}?agent=Ana"))[0] == 404  # a note of another conversation
    assert await delete(f"noted/notes/{anas}?agent=%20ana") == (200, {"ok": True})
    assert (await delete(f"noted/notes/{anas}?agent=Ana"))[0] == 404
    assert (await client.delete("/admin/conversations/noted/notes/1")).status == 401
    assert await delete(f"noted/notes/{nameless}?agent=Bob") == (200, {"ok": True})
    transcript = await (await client.get("/admin/conversations/noted", headers=AUTH)).json()
    assert transcript["notes"] == []


async def test_an_agents_note_is_edited_by_its_author_alone(bot_dir: Path, aiohttp_client: Any) -> None:
    """A note could only be deleted and written again, out of its place among the turns: its author corrects it, a
    colleague is refused naming them, and every agent sees it edited, and when."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "noted", "I need help with my bill")
    added = await client.post("/admin/conversations/noted/notes", json={"text": "Refund promised.", "agent": "Ana"},
                              headers=AUTH)
    note_id = (await added.json())["note_id"]

    async def edit(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.patch(f"/admin/conversations/{path}", json=body, headers=AUTH)
        return response.status, await response.json()

    assert await edit(f"noted/notes/{note_id}", {"text": "No refund.", "agent": "Bob"}) == (
        403, {"error": "Ana wrote this note: only they can edit it", "code": "not_the_author", "agent": "Ana"})
    assert (await edit(f"other/notes/{note_id}", {"text": "No refund.", "agent": "Ana"}))[0] == 404
    assert (await edit(f"noted/notes/{note_id}", {"text": "\u200b", "agent": "Ana"}))[0] == 400
    [before] = (await (await client.get("/admin/conversations/noted", headers=AUTH)).json())["notes"]
    assert before["edited"] is None
    assert await edit(f"noted/notes/{note_id}", {"text": " Refund of 20 EUR promised. ", "agent": " ana"}) == (
        200, {"ok": True})
    [after] = (await (await client.get("/admin/conversations/noted", headers=AUTH)).json())["notes"]
    assert after == {**before, "text": "Refund of 20 EUR promised.", "edited": after["edited"]}
    assert after["edited"] >= before["created"]


async def test_a_reply_with_the_admin_token_names_its_agent_or_is_refused_with_nothing_kept(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A reply with the admin token and no name reached the customer from nobody, the transcript could not say whose
    it was, and a customer with the bot became nobody's: refused (400, naming the field), neither kept nor sent, and
    nothing taken over. An agent's own token names its agent (test_an_agents_own_token_acts_in_their_name_alone)."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "waiting", "I need help with my bill")
    await chat(client, "waiting", "/handoff")
    await chat(client, "with-bot", "I need help with my bill")

    async def reply(conversation: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/{conversation}/messages", json={"text": ANSWER, **body},
                                     headers=AUTH)
        return response.status, await response.json()

    before = {cid: await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
              for cid in ("waiting", "with-bot")}
    for cid in before:
        for body in ({}, {"agent": None}, {"key": "k-1", "after": 0}):
            assert await reply(cid, body) == (400, NAMELESS)
        assert await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json() == before[cid]
    assert before["with-bot"]["status"] == "open" and before["waiting"]["status"] == "handed_off"
    assert (await reply("waiting", {"agent": "Sam", "key": "k-1"}))[0] == 200  # the key was not spent by the refusal
    turns = (await (await client.get("/admin/conversations/waiting", headers=AUTH)).json())["turns"]
    assert [t["author"] for t in turns if t["role"] == "agent"] == ["Sam"]


async def test_only_the_agent_who_has_a_customer_hands_them_back_or_replies_unless_forced(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Any agent handed a colleague's customer back to the bot, or answered beside the colleague, unasked: refused,
    naming who has them, unless a lead overrides it with force."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "taken", "I need help with my bill")
    assert (await client.post("/admin/conversations/taken/handoff?agent=Ana", headers=AUTH)).status == 200
    held = {"error": "Ana has this customer: ask them, or send it again with force to override", "code": "held",
            "agent": "Ana"}

    async def hand_back(query: str) -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/taken/handback{query}", headers=AUTH)
        return response.status, await response.json()

    async def reply(body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, **body},
                                     headers=AUTH)
        return response.status, await response.json()

    for query in ("?agent=Sam", "", "?agent=Sam&force=false"):  # a colleague, or someone giving no name
        assert await hand_back(query) == (409, held)
    assert await reply({"agent": "Sam"}) == (409, held)
    assert (await hand_back("?agent=Sam&force=yes"))[0] == 400
    transcript = await (await client.get("/admin/conversations/taken", headers=AUTH)).json()
    assert transcript["status"] == "handed_off" and [t["role"] for t in transcript["turns"]] == ["user", "bot"]
    assert (await reply({"agent": " ana "}))[0] == 200  # Ana herself, from a window where she typed her name otherwise
    # with no name, forced or not, the reply would have taken the customer from Ana and left them with nobody
    assert await reply({}) == await reply({"force": True}) == (400, NAMELESS)
    # a lead's override: the reply makes the customer Sam's, and then only Sam hands them back
    assert (await reply({"agent": "Sam", "force": True}))[0] == 200
    assert await hand_back("?agent=Ana") == (409, {**held, "error": held["error"].replace("Ana", "Sam"), "agent": "Sam"})
    # forced with no name, the handback took the customer from Sam, and the transcript said nobody did
    assert await hand_back("?force=true") == (400, {"error": "agent: a forced change of hands names the agent who "
                                                             "makes it", "code": "name_needed"})
    assert await hand_back("?agent=Ana&force=true") == (200, {"status": "open"})
    # with the bot again, the customer is nobody's: any agent's reply takes them over
    assert (await reply({"agent": "Bob"}))[0] == 200


async def test_a_takeover_of_a_colleagues_customer_is_refused_unless_forced_and_then_makes_them_the_agents(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Bob's takeover of a customer Ana had answered was answered 200 and left them with Ana: Bob believed the
    customer his, and his reply was refused. Refused as a reply is, naming Ana; forced, the customer is Bob's. Forced with
    no name, it was answered 200 and the customer was nobody's: refused."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "taken", "I need help with my bill")
    assert (await client.post("/admin/conversations/taken/handoff?agent=Ana", headers=AUTH)).status == 200
    sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "Ana"}, headers=AUTH)
    assert sent.status == 200
    await chat(client, "taken", "still there?")
    [before] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]

    async def take_over(query: str) -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/taken/handoff{query}", headers=AUTH)
        return response.status, await response.json()

    for query in ("?agent=Bob", "", "?agent=Bob&force=false"):  # a colleague, or someone giving no name
        assert await take_over(query) == (409, {"error": "Ana has this customer: ask them, or send it again with "
                                                         "force to override", "code": "held", "agent": "Ana"})
    assert (await take_over("?agent=Bob&force=yes"))[0] == 400
    for nameless in ("?force=true", "?agent=%20&force=true"):  # taken from Ana by nobody: the customer is nobody's
        assert await take_over(nameless) == (400, {"error": "agent: a forced takeover names the agent who takes the "
                                                            "customer over", "code": "name_needed"})
    assert await take_over("?agent=%20ana&force=true") == (200, {"status": "handed_off", "agent": "Ana"})  # hers
    assert await take_over("?agent=Bob&force=true") == (200, {"status": "handed_off", "agent": "Bob"})
    [after] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert after == {**before, "agent": "Bob"}  # the wait and why they wait as they were
    refused = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "Ana"},
                                headers=AUTH)
    assert refused.status == 409 and (await refused.json())["agent"] == "Bob"
    sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "Bob"}, headers=AUTH)
    assert sent.status == 200
    assert (await client.post("/admin/conversations/taken/handback?agent=Bob", headers=AUTH)).status == 200


async def test_an_agent_releases_their_customer_to_wait_for_anyone(bot_dir: Path, aiohttp_client: Any) -> None:
    """An agent ending a shift could only hand a customer back to the bot, or leave them marked as theirs: released,
    they still wait for a person, nobody's, and the transcript says who released them. Only the agent who has them
    releases them, unless a lead forces it; the next agent to take them over or reply has them."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "taken", "I need help with my bill")

    async def call(action: str, query: str = "") -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/taken/{action}{query}", headers=AUTH)
        return response.status, await response.json()

    assert (await call("release", "?agent=Ana"))[1]["code"] == "open"  # with the bot: nobody's to release
    assert (await call("handoff", "?agent=Ana"))[0] == 200
    assert (await call("release", "?agent=Bob"))[1]["code"] == "held"
    assert (await call("release", "?force=true"))[0] == 400  # a lead releasing them gives their name
    sent = await client.post("/admin/conversations/taken/messages", json={"text": "A colleague will go on with you.",
                                                                         "agent": "Ana"}, headers=AUTH)
    assert sent.status == 200
    [answered] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert answered["waiting_since"] is None  # the latest word is Ana's
    assert await call("release", "?agent=%20ana") == (200, {"status": "handed_off", "agent": None})
    [waiting] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    # nobody's, and waiting for a person anew: listed among the waiting, not as answered by Ana
    assert waiting["agent"] is None and waiting["status"] == "handed_off" and waiting["unread"] == 0
    assert waiting["waiting_since"] > answered["handed_off_at"]
    assert await call("handoff", "?agent=Bob") == (200, {"status": "handed_off", "agent": "Bob"})
    assert (await call("release", "?agent=Ana"))[1]["agent"] == "Bob"  # his now: refused
    assert await call("release", "?agent=Sam&force=true") == (200, {"status": "handed_off", "agent": None})
    sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "Cy"}, headers=AUTH)
    assert sent.status == 200
    transcript = await (await client.get("/admin/conversations/taken", headers=AUTH)).json()
    assert transcript["agent"] == "Cy"
    assert [(h["agent"], h["from"], h["by"]) for h in transcript["handoffs"]] == [
        ("Ana", None, None), (None, "Ana", "ana"), ("Bob", None, "Bob"), (None, "Bob", "Sam")]


async def test_an_agents_own_token_acts_in_their_name_alone(bot_dir: Path, aiohttp_client: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every agent shared the admin token and typed their name: any of them could reply, take over, write and delete
    notes in a colleague's name. With tokens of their own (server.agents), a call acts as its token's agent, a
    colleague's name is refused, and the admin token still acts as the name it gives."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token_env": "BOBS_TOKEN"}}})
    monkeypatch.setenv("BOBS_TOKEN", "bob-own-token-4567\n")
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana, bob = {"Authorization": "Bearer ana-own-token-0123"}, {"Authorization": "Bearer bob-own-token-4567"}
    await chat(client, "taken", "I need help with my bill")

    async def call(method: str, path: str, auth: dict[str, str], body: Any = None) -> tuple[int, Any]:
        response = await client.request(method, f"/admin/conversations{path}", json=body, headers=auth)
        return response.status, await response.json()

    refused = (403, {"error": "agent: this token is Bob's, who cannot act as Ana", "code": "not_your_name", "agent": "Bob"})
    assert await call("POST", "/taken/handoff?agent=Ana", bob) == refused
    assert await call("POST", "/taken/messages", bob, {"text": ANSWER, "agent": "Ana", "force": True}) == refused
    assert await call("POST", "/taken/notes", bob, {"text": "Ana promised a refund", "agent": "Ana"}) == refused
    assert await call("POST", "/taken/handoff", ana) == (200, {"status": "handed_off", "agent": "Ana"})
    assert (await call("POST", "/taken/messages", bob, {"text": ANSWER}))[1]["agent"] == "Ana"  # hers: 409
    assert (await call("POST", "/taken/messages", ana, {"text": ANSWER, "agent": " ana "}))[0] == 200
    status, note = await call("POST", "/taken/notes", ana, {"text": "Refund promised."})
    assert status == 200
    assert (await call("DELETE", f"/taken/notes/{note['note_id']}?agent=Ana", bob)) == refused
    assert (await call("DELETE", f"/taken/notes/{note['note_id']}", bob))[0] == 403  # Ana's note
    status, inbox = await call("GET", "", bob)
    assert status == 200 and inbox["token_agent"] == "Bob" and inbox["conversations"][0]["agent"] == "Ana"
    status, inbox = await call("GET", "", AUTH)  # the admin token, as before: a lead's, acting as named
    assert inbox["token_agent"] is None
    assert await call("POST", "/taken/handoff?agent=Sam&force=true", AUTH) == (200, {"status": "handed_off",
                                                                                     "agent": "Sam"})
    transcript = (await call("GET", "/taken", AUTH))[1]
    assert [t["author"] for t in transcript["turns"] if t["role"] == "agent"] == ["Ana"]
    assert [n["agent"] for n in transcript["notes"]] == ["Ana"]
    assert (await call("GET", "", {"Authorization": "Bearer ana-own-token"}))[0] == 401


async def test_an_agents_name_holds_no_invisible_character_and_is_one_name_in_either_unicode_form(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A name with a zero-width space, a right-to-left override, a carriage return, an escape, a tag or a private-use
    character was another agent who looked like a colleague (or showed their name backwards) in the console: it is
    refused. "José" typed with its
    accent apart (as some keyboards send it) was not the José of server.agents, whose own token was refused it."""
    configure(bot_dir, server={"agents": {"José": {"token": "jose-own-token-0123"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    jose = {"Authorization": "Bearer jose-own-token-0123"}
    await chat(client, "taken", "I need help with my bill")
    for name in ("Ana\u200b", "Ana\u202eLee", "Ana\rLee", "\x1b[31mAna", "Ana\U000e0041\U000e004e",
                 "Ana\ue000", "Ana\U0010fffd"):  # tag characters, which spell a hidden text; private-use ones
        taken = await client.post("/admin/conversations/taken/handoff", params={"agent": name}, headers=AUTH)
        assert taken.status == 400 and "invisible or control character" in (await taken.json())["error"], name
        sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": name}, headers=AUTH)
        error = (await sent.json())["error"]
        assert sent.status == 400 and error.startswith("agent:") and "invisible or control character" in error, name
    taken = await client.post("/admin/conversations/taken/handoff", params={"agent": "Jose\u0301"}, headers=jose)
    assert taken.status == 200 and (await taken.json())["agent"] == "José"
    sent = await client.post("/admin/conversations/taken/messages", json={"text": ANSWER, "agent": "Jose\u0301"},
                             headers=AUTH)  # his customer: the admin token naming him in either form is him
    assert sent.status == 200
    transcript = await (await client.get("/admin/conversations/taken", headers=AUTH)).json()
    assert [t["author"] for t in transcript["turns"] if t["role"] == "agent"] == ["José"]


async def test_an_agent_with_their_own_token_passes_their_customer_to_a_named_colleague(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """With tokens of their own, Ana could not make her customer Bob's: her token cannot take them over as Bob. She
    passes them to him by name (one of server.agents), the transcript says so, and the customer is his."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana, bob = {"Authorization": "Bearer ana-own-token-0123"}, {"Authorization": "Bearer bob-own-token-4567"}
    await chat(client, "taken", "I need help with my bill")

    async def transfer(query: str, auth: dict[str, str]) -> tuple[int, Any]:
        response = await client.post(f"/admin/conversations/taken/transfer{query}", headers=auth)
        return response.status, await response.json()

    assert (await transfer("?to=Bob", ana))[1]["code"] == "open"  # with the bot: nobody's to pass on
    assert (await client.post("/admin/conversations/taken/handoff", headers=ana)).status == 200
    for query in ("", "?to=%20", "?to=Sam"):  # nobody named, or nobody the bot knows
        assert (await transfer(query, ana))[0] == 400
    assert (await transfer("?to=Bob", bob))[1]["code"] == "held"  # Ana's: not Bob's to take so
    assert await transfer("?to=bob", ana) == (200, {"status": "handed_off", "agent": "Bob"})
    assert (await client.post("/admin/conversations/taken/messages", json={"text": ANSWER}, headers=bob)).status == 200
    transcript = await (await client.get("/admin/conversations/taken", headers=AUTH)).json()
    assert transcript["agent"] == "Bob"
    assert [(h["agent"], h["from"], h["by"]) for h in transcript["handoffs"]] == [("Ana", None, None), ("Bob", "Ana", "Ana")]


async def test_a_transfer_names_a_colleague_of_server_agents_and_asks_for_a_token_first(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A transfer without a token said whether its ?to= was one of server.agents (400) or not (401): anyone could list
    the agents' names. The colleague is any of server.agents, one whose token is not set yet too; without
    server.agents, the bot knows no agent's name, and any name given is taken."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Cy": {"token_env": "UNSET_TOKEN"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana = {"Authorization": "Bearer ana-own-token-0123"}
    await chat(client, "taken", "I need help with my bill")
    assert (await client.post("/admin/conversations/taken/handoff", headers=ana)).status == 200
    for to in ("Ana", "Sam"):
        assert (await client.post(f"/admin/conversations/taken/transfer?to={to}")).status == 401
    passed = await client.post("/admin/conversations/taken/transfer?to=cy", headers=ana)
    assert passed.status == 200 and (await passed.json())["agent"] == "Cy"
    refused = await client.post("/admin/conversations/taken/transfer?to=Sam&agent=Cy", headers=AUTH)
    assert refused.status == 400 and (await refused.json())["error"] == "to: Sam is none of server.agents (Ana, Cy)"


async def test_an_agents_own_token_reloads_exports_and_reads_the_figures_only_where_bot_yml_grants_it(
        bot_dir: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An agent's own token did all the admin token does: taken from one agent's browser, it swapped the model and
    read every conversation's training data out. It answers customers; reload, export and stats are refused (403,
    naming the grant) unless server.agents grants them to that agent, which a reload reads again; the admin token's
    calls are as before. The log says whose token each reload and export was made with (no token in it): it said
    neither, and a model swapped or the conversations read out were nobody's doing."""
    caplog.set_level(logging.INFO, logger="deskbot")
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"},
                                          "Bob": {"token": "bob-own-token-4567", "grants": ["stats"]}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana, bob = {"Authorization": "Bearer ana-own-token-0123"}, {"Authorization": "Bearer bob-own-token-4567"}
    await chat(client, "c1", "I need help with my bill")
    assert (await client.post("/admin/conversations/c1/handoff", headers=ana)).status == 200
    assert (await client.get("/admin/conversations/c1", headers=ana)).status == 200

    async def status(auth: dict[str, str]) -> dict[str, int]:
        calls = {"reload": client.post("/admin/reload", headers=auth), "export": client.get("/admin/export", headers=auth),
                 "stats": client.get("/admin/stats", headers=auth)}
        return {grant: (await call).status for grant, call in calls.items()}

    assert await status(ana) == {"reload": 403, "export": 403, "stats": 403}
    assert await status(bob) == {"reload": 403, "export": 403, "stats": 200}
    assert await status(AUTH) == {"reload": 200, "export": 200, "stats": 200}
    refused = await client.get("/admin/export", headers=ana)
    assert await refused.json() == {
        "error": "GET /admin/export needs the admin token, or an agent's token granted export: this one is agent Ana's "
                 "(server.agents: Ana: {grants: [review, export]} in bot.yml grants it)",  # review kept: hers unset
        "code": "not_granted", "agent": "Ana", "grant": "export"}
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123", "grants": ["reload", "export"]},
                                          "Bob": {"token": "bob-own-token-4567"}}})
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    caplog.clear()
    assert await status(ana) == {"reload": 200, "export": 200, "stats": 403}
    assert await status(bob) == {"reload": 403, "export": 403, "stats": 403}
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("reloaded", "exported"))]
    assert [line.split(":")[0] for line in said] == ["reloaded by agent Ana", "exported by agent Ana"]
    assert not [r for r in caplog.records if "own-token" in r.getMessage()]


async def test_an_agents_inbox_counts_and_lists_the_customers_of_a_colleague_a_reload_took_out_as_nobodys(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Each agent's console counts the customers waiting on them or on nobody: those of a colleague a reload took out of
    server.agents, who signs in no more, were counted by no console, and waited unannounced; nor were they among the
    customers nobody has (?unheld=true), where the agents of the next shift look."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "bobs", "I need help with my bill")
    assert (await client.post("/admin/conversations/bobs/handoff?agent=Bob", headers=AUTH)).status == 200

    async def counted(query: str) -> tuple[int, int]:
        inbox = await (await client.get(f"/admin/conversations?limit=0&{query}", headers=AUTH)).json()
        return inbox["waiting"], inbox["waiting_yours"]

    assert await counted("agent=Ana") == (1, 0) and await counted("agent=bob") == await counted("") == (1, 1)
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}}})
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    assert await counted("agent=Ana") == (1, 1)
    nobodys = await (await client.get("/admin/conversations?unheld=true", headers=AUTH)).json()
    assert [c["conversation_id"] for c in nobodys["conversations"]] == ["bobs"] and nobodys["total"] == 1
    assert nobodys["colleagues"] == nobodys["team"] == ["Ana"]  # server.agents', not Bob who has customers still


async def test_a_customer_of_a_colleague_a_reload_took_out_is_taken_over_released_or_answered_unforced(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """The customers of a colleague taken out of server.agents are nobody's to the inbox, yet a takeover, a release or
    a reply was refused as if that colleague had them (409), and the console asked "Bob has this customer. Take them
    over anyway?" of someone who signs in no more."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    bob = {"Authorization": "Bearer bob-own-token-4567"}
    for cid in ("taken", "released", "answered"):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=bob)).status == 200
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}}})
    assert (await client.post("/admin/conversations/taken/handoff?agent=Sam", headers=AUTH)).status == 409  # not yet
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    ana = {"Authorization": "Bearer ana-own-token-0123"}
    taken = await client.post("/admin/conversations/taken/handoff", headers=ana)
    assert taken.status == 200 and (await taken.json())["agent"] == "Ana"
    released = await client.post("/admin/conversations/released/release", headers=ana)
    assert released.status == 200 and (await released.json())["agent"] is None
    sent = await client.post("/admin/conversations/answered/messages", json={"text": ANSWER}, headers=ana)
    assert sent.status == 200
    inbox = await (await client.get("/admin/conversations", headers=AUTH)).json()
    assert {c["conversation_id"]: c["agent"] for c in inbox["conversations"]} == {
        "taken": "Ana", "released": None, "answered": "Ana"}
    handoffs = (await (await client.get("/admin/conversations/taken", headers=AUTH)).json())["handoffs"]
    assert [(h["agent"], h["from"]) for h in handoffs] == [("Bob", None), ("Ana", "Bob")]


async def bobs_customer_after_bob_left(bot_dir: Path, aiohttp_client: Any) -> Any:
    """A server's client where Bob, with a token of his own, took over conversation "bobs", then a reload took him out
    of server.agents."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "bobs", "I need help with my bill")
    taken = await client.post("/admin/conversations/bobs/handoff", headers={"Authorization": "Bearer bob-own-token-4567"})
    assert taken.status == 200
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}}})
    assert (await client.post("/admin/reload", headers=AUTH)).status == 200
    return client


async def test_releasing_the_customers_of_a_colleague_a_reload_took_out_is_kept_as_the_admins(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A lead releasing at once the customers of Bob, whom a reload took out of server.agents, with the admin token
    was kept as "Bob released": Bob, who signs in no more, released nothing."""
    client = await bobs_customer_after_bob_left(bot_dir, aiohttp_client)
    released = await client.post("/admin/release?agent=Bob", headers=AUTH)
    assert released.status == 200 and (await released.json())["released"] == ["bobs"]
    handoffs = (await (await client.get("/admin/conversations/bobs", headers=AUTH)).json())["handoffs"]
    assert [(h["agent"], h["from"], h["by"]) for h in handoffs] == [("Bob", None, None), (None, "Bob", "admin")]


async def test_a_nameless_release_of_a_customer_of_a_colleague_a_reload_took_out_is_kept_as_the_admins(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A release with the admin token that names nobody, allowed on the customer of Bob, whom a reload took out of
    server.agents, was kept with no maker: Bob's inbox named nobody (``taken``'s ``by`` null, which the schema says is
    a name), his console read "null released your customer", and the transcript said nobody released them."""
    client = await bobs_customer_after_bob_left(bot_dir, aiohttp_client)
    released = await client.post("/admin/conversations/bobs/release", headers=AUTH)
    assert released.status == 200 and (await released.json())["agent"] is None
    inbox = await (await client.get("/admin/conversations?agent=Bob&limit=0", headers=AUTH)).json()
    assert [(t.conversation_id, t.by, t.to) for t in InboxResponse.model_validate(inbox).taken] == [("bobs", "admin", None)]
    handoffs = (await (await client.get("/admin/conversations/bobs", headers=AUTH)).json())["handoffs"]
    assert [(h["agent"], h["from"], h["by"]) for h in handoffs] == [("Bob", None, None), (None, "Bob", "admin")]


async def test_a_reload_reads_the_agents_and_their_tokens_again(bot_dir: Path, aiohttp_client: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents' tokens were read at start alone: an agent who left kept signing in, and a new one could not, until a
    restart, which the reload did not even name. A reload now reads server.agents again; one that two agents would
    share is refused, and the tokens stay as they were."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana, bob = {"Authorization": "Bearer ana-own-token-0123"}, {"Authorization": "Bearer bob-own-token-4567"}
    assert (await client.get("/admin/conversations", headers=bob)).status == 401
    monkeypatch.setenv("BOBS_TOKEN", "bob-own-token-4567")
    configure(bot_dir, server={"agents": {"Bob": {"token_env": "BOBS_TOKEN"}, "Cy": {"token": "bob-own-token-4567"}}})
    refused = await client.post("/admin/reload", headers=AUTH)
    assert refused.status == 409 and "agent Cy's token is agent Bob's" in (await refused.json())["error"]
    assert (await client.get("/admin/conversations", headers=ana)).status == 200
    configure(bot_dir, server={"agents": {"Bob": {"token_env": "BOBS_TOKEN"}, "Dan": {"token_env": "DANS_TOKEN"}}})
    reloaded = await client.post("/admin/reload", headers=AUTH)
    assert reloaded.status == 200
    # Dan's variable is not in the server's environment, which a reload cannot change: said, not left to find out
    assert (await reloaded.json()) == {"model_version": "v0001", "restart_needed": [], "agents_without_token": ["Dan"]}
    assert (await client.get("/admin/conversations", headers=ana)).status == 401  # Ana's token no longer signs in
    # bot.yml's new admin token takes a restart: the one served is still the admin's, and no agent's
    configure(bot_dir, server={"admin_token": "new-admin-token-0123", "agents": {"Bob": {"token": "small-admin-token"}}})
    refused = await client.post("/admin/reload", headers=AUTH)
    assert refused.status == 409 and "agent Bob's token is the admin token's" in (await refused.json())["error"]
    assert (await (await client.get("/admin/conversations", headers=bob)).json())["token_agent"] == "Bob"


async def test_the_inbox_names_the_customers_passed_to_its_agent(bot_dir: Path, aiohttp_client: Any) -> None:
    """A customer passed to Bob appeared among the rest, on whatever page, unnoticed: his inbox names those a colleague
    passed to him who are his still, whatever the tab asked for, and nobody else's does."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("passed", "taken"):
        await chat(client, cid, "I need help with my bill")
    for path in ("passed/handoff?agent=Ana", "passed/transfer?agent=Ana&to=Bob", "taken/handoff?agent=Bob"):
        assert (await client.post(f"/admin/conversations/{path}", headers=AUTH)).status == 200

    async def passed(query: str) -> list[tuple[str, str]]:
        inbox = await (await client.get(f"/admin/conversations?{query}", headers=AUTH)).json()
        return [(p["conversation_id"], p["by"]) for p in inbox["passed"]]

    assert await passed("agent=%20bob&status=open&limit=0") == [("passed", "Ana")]
    assert await passed("agent=Ana") == await passed("") == []
    assert (await client.post("/admin/conversations/passed/handoff?agent=Sam&force=true", headers=AUTH)).status == 200
    assert await passed("agent=Bob") == []  # Sam's now


async def test_the_inbox_no_longer_names_a_customer_passed_to_its_agent_once_they_read_them(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Bob opened the customer Ana passed him, and his console in another browser announced the pass again, as only the
    first browser knew it was opened: the bot keeps that he read them since the pass (…/seen), in any letter case of
    his name. Passed to him again later, they are named again; another agent's reading changes nothing of his."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "passed", "I need help with my bill")
    for path in ("handoff?agent=Ana", "transfer?agent=Ana&to=Bob"):
        assert (await client.post(f"/admin/conversations/passed/{path}", headers=AUTH)).status == 200

    async def passed() -> list[str]:
        inbox = await (await client.get("/admin/conversations?agent=Bob&limit=0", headers=AUTH)).json()
        return [p["conversation_id"] for p in inbox["passed"]]

    async def read(agent: str) -> None:
        turns = (await (await client.get("/admin/conversations/passed", headers=AUTH)).json())["turns"]
        seen = await client.post(f"/admin/conversations/passed/seen?agent={agent}&after={turns[-1]['id']}", headers=AUTH)
        assert seen.status == 200

    await read("Ana")
    assert await passed() == ["passed"]
    await read("BOB")
    assert await passed() == []
    for path in ("transfer?agent=Bob&to=Ana", "transfer?agent=Ana&to=Bob"):
        assert (await client.post(f"/admin/conversations/passed/{path}", headers=AUTH)).status == 200
    assert await passed() == ["passed"]  # a pass since


async def test_the_inbox_names_the_customers_a_lead_moved_away_from_its_agent(bot_dir: Path, aiohttp_client: Any) -> None:
    """Ana's console said nothing when a lead gave her customer to Bob, and her next reply asked her to override Bob,
    which undid the lead's move: her inbox names the customers someone else moved from her, released, or handed back
    to the bot, while they are not hers again (with the bot still), and not those she passed on or handed back
    herself."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("moved", "given", "taken", "released", "returned", "back"):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff?agent=Ana", headers=AUTH)).status == 200
    for path in ("moved/transfer?agent=Lea&to=Bob&force=true", "given/transfer?agent=Ana&to=Bob",
                 "taken/handoff?agent=Sam&force=true", "released/release?agent=Lea&force=true",
                 "returned/handback?agent=ANA", "back/handback?agent=Lea&force=true"):
        assert (await client.post(f"/admin/conversations/{path}", headers=AUTH)).status == 200

    async def taken(agent: str) -> list[tuple[str, str, str | None, bool]]:
        inbox = await (await client.get(f"/admin/conversations?agent={agent}&limit=0", headers=AUTH)).json()
        return [(t["conversation_id"], t["by"], t["to"], t["handed_back"]) for t in inbox["taken"]]

    assert await taken("ana") == [("back", "Lea", None, True), ("released", "Lea", None, False),
                                  ("taken", "Sam", "Sam", False), ("moved", "Lea", "Bob", False)]
    # a lead handing Ana's customer back in her name, as a script may: kept as the lead's too
    await chat(client, "in-her-name", "I need help with my bill")
    for path in ("handoff?agent=Ana", "handback?agent=Ana&by=Lea"):
        assert (await client.post(f"/admin/conversations/in-her-name/{path}", headers=AUTH)).status == 200
    assert await taken("Ana") == [("in-her-name", "Lea", None, True), ("back", "Lea", None, True),
                                  ("released", "Lea", None, False), ("taken", "Sam", "Sam", False),
                                  ("moved", "Lea", "Bob", False)]
    assert await taken("Bob") == [] and await taken("Lea") == []
    sent = await client.post("/admin/conversations/moved/messages", headers=AUTH,
                             json={"text": "Back with you", "agent": "Ana", "force": True})
    assert sent.status == 200
    for cid in ("back", "in-her-name"):
        assert (await client.post(f"/admin/conversations/{cid}/handoff?agent=Ana", headers=AUTH)).status == 200
    assert await taken("Ana") == [("released", "Lea", None, False), ("taken", "Sam", "Sam", False)]  # hers again


async def test_an_inbox_poll_with_nothing_committed_since_is_answered_unchanged(
        bot_dir: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each agent's console polls its inbox every 3 s, and each poll read and sent its page's rows again with nothing
    changed. A poll that sends back the ETag of the answer it holds is answered 304, with no body, until something is
    committed to the store, or it asks for something else, or a handback the answer names is no longer named."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("waiting", "returned"):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff?agent=Ana", headers=AUTH)).status == 200
    path = "/admin/conversations?agent=Ana"

    async def poll(held: str | None = None, query: str = path) -> tuple[int, str, bytes]:
        response = await client.get(query, headers={**AUTH, **({"If-None-Match": held} if held else {})})
        return response.status, response.headers["ETag"], await response.read()

    status, tag, body = await poll()
    assert status == 200 and [c["conversation_id"] for c in json.loads(body)["conversations"]] == ["waiting", "returned"]
    assert await poll(tag) == (304, tag, b"")
    assert await poll(f'"other", W/{tag}') == (304, tag, b"")  # a weak tag among others names it too
    assert (await poll(tag, f"{path}&limit=1"))[0] == 200  # another question
    assert (await poll(tag, "/admin/conversations?agent=Bob"))[0] == 200  # another agent's answer
    await chat(client, "waiting", "hello??")  # committed since
    status, changed, body = await poll(tag)
    assert status == 200 and changed != tag
    assert json.loads(body)["conversations"][0]["last_message"] == "hello??"
    assert await poll(changed) == (304, changed, b"")

    # A lead hands Ana's customer back: named to her for HANDED_BACK_TOLD_S, and then no longer, nothing committed.
    assert (await client.post("/admin/conversations/returned/handback?agent=Lea&force=true", headers=AUTH)).status == 200
    status, told, body = await poll(changed)
    assert status == 200 and [t["conversation_id"] for t in json.loads(body)["taken"]] == ["returned"]
    assert await poll(told) == (304, told, b"")
    later = time.time() + store_module.HANDED_BACK_TOLD_S + 5
    monkeypatch.setattr(store_module, "now", lambda: later)
    status, _, body = await poll(told)
    assert status == 200 and json.loads(body)["taken"] == []


async def test_one_server_answers_either_tabs_etag_of_another_on_the_same_store_unchanged(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Behind a load balancer, a console's polls reach either server: the ETag was the connection's, and each answered
    the other's whole, the same inbox, or the same page of the conversations with the bot. Either answers the other's
    304 now, on both tabs, and both the same answer after a change."""
    one = await aiohttp_client(create_app(bot_dir, device="cpu"))
    other = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(one, "waiting", "I need help with my bill")
    await chat(one, "with-bot", "I need help with my bill")
    assert (await one.post("/admin/conversations/waiting/handoff?agent=Ana", headers=AUTH)).status == 200

    for tab, customer in (("handed_off", "waiting"), ("open", "with-bot")):
        async def poll(client: Any, held: str | None = None) -> tuple[int, str]:
            response = await client.get(f"/admin/conversations?agent=Ana&status={tab}",
                                        headers={**AUTH, **({"If-None-Match": held} if held else {})})
            return response.status, response.headers["ETag"]

        status, tag = await poll(one)
        assert status == 200 and await poll(other, tag) == (304, tag), tab
        await chat(other, customer, "hello??")
        status, changed = await poll(other, tag)
        assert status == 200 and changed != tag and await poll(one, changed) == (304, changed), tab


async def test_the_waiting_tabs_poll_is_unchanged_while_the_customers_with_the_bot_write(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """The inbox's ETag was the store's version, which any commit moves: with the bot answering a customer a second,
    every console's poll of the waiting tab was answered whole, nothing in it changed. It holds while customers write to
    the bot and vote on its answers, and each change an agent's inbox shows makes it another: a customer handed off,
    taken over, answered, writing again, read, passed on, handed back. The tab of the conversations with the bot, which
    their messages change, is answered anew."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "waiting", "I need help with my bill")
    assert (await client.post("/admin/conversations/waiting/handoff?agent=Ana", headers=AUTH)).status == 200

    async def poll(held: str | None = None, query: str = "/admin/conversations?agent=Ana") -> tuple[int, str]:
        response = await client.get(query, headers={**AUTH, **({"If-None-Match": held} if held else {})})
        return response.status, response.headers["ETag"]

    (_, tag), (_, with_the_bot) = await poll(), await poll(query="/admin/conversations?status=open")
    for n in range(4):  # two misses each: a third would hand them off
        reply = await chat(client, f"busy-{n % 2}", "where is my order?")
        voted = await client.post("/api/feedback", json={"conversation_id": f"busy-{n % 2}", "turn_id": reply["turn_id"],
                                                         "value": -1})
        assert voted.status == 200
        assert await poll(tag) == (304, tag)
    assert (await poll(with_the_bot, "/admin/conversations?status=open"))[0] == 200

    async def latest() -> int:
        transcript = await (await client.get("/admin/conversations/waiting", headers=AUTH)).json()
        return transcript["turns"][-1]["id"]

    async def seen() -> web.Response:
        return await client.post(f"/admin/conversations/waiting/seen?agent=Ana&after={await latest()}", headers=AUTH)

    for change in (lambda: client.post("/admin/conversations/waiting/messages", headers=AUTH,
                                       json={"text": "Let me look.", "agent": "Ana"}),
                   lambda: chat(client, "waiting", "thanks, and?"),
                   seen,
                   lambda: client.post("/admin/conversations/waiting/transfer?agent=Ana&to=Bob", headers=AUTH),
                   lambda: client.post("/admin/conversations/busy-0/handoff?agent=Ana", headers=AUTH),
                   lambda: client.post("/admin/conversations/waiting/handback?agent=Lea&force=true", headers=AUTH)):
        await change()
        status, changed = await poll(tag)
        assert status == 200 and changed != tag
        assert await poll(changed) == (304, changed)
        tag = changed


async def test_a_lead_taking_a_customer_over_in_a_colleagues_name_passes_them_the_customer(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A lead's forced takeover in Bob's name was kept as Bob taking the customer himself: unlike a transfer, Bob's
    console did not tell him of a customer he never chose. Made ``?by=`` the lead, it is kept as the lead passing Bob
    the customer, from Ana who had them, from nobody or from the bot."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid in ("held", "waiting", "with-bot"):
        await chat(client, cid, "I need help with my bill")
    for path in ("held/handoff?agent=Ana", "waiting/handoff?agent=Ana", "waiting/release?agent=Ana",
                 "held/handoff?agent=Bob&by=Lea&force=true", "waiting/handoff?agent=Bob&by=Lea",
                 "with-bot/handoff?agent=Bob&by=Lea"):
        assert (await client.post(f"/admin/conversations/{path}", headers=AUTH)).status == 200
    inbox = await (await client.get("/admin/conversations?agent=Bob", headers=AUTH)).json()
    assert sorted((p["conversation_id"], p["by"]) for p in inbox["passed"]) == [
        ("held", "Lea"), ("waiting", "Lea"), ("with-bot", "Lea")]
    assert {c["conversation_id"]: c["agent"] for c in inbox["conversations"]} == {
        "held": "Bob", "waiting": "Bob", "with-bot": "Bob"}
    async def handoffs() -> list[dict[str, Any]]:
        return (await (await client.get("/admin/conversations/held", headers=AUTH)).json())["handoffs"]

    kept = await handoffs()
    assert {"agent": "Bob", "from": "Ana", "by": "Lea"}.items() <= kept[-1].items()
    assert (await client.post("/admin/conversations/held/handoff?agent=Bob&by=Lea", headers=AUTH)).status == 200
    assert await handoffs() == kept  # Bob's already: nothing more kept


async def test_a_takeover_with_the_admin_token_in_an_agents_name_is_kept_as_the_admins(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A lead's forced takeover with the admin token in Bob's name, with no ``?by=``, was kept as Bob taking Ana's
    customer himself: Bob, who takes customers with his own token, was not told of it, and the transcript showed Ana
    no lead moving her customer. It is kept as the admin passing Bob the customer; a name with no token of its own
    (Sam), who may sign in with the admin token, takes the customer as before."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "held", "I need help with my bill")
    taken = await client.post("/admin/conversations/held/handoff", headers={"Authorization": "Bearer ana-own-token-0123"})
    assert taken.status == 200
    moved = await client.post("/admin/conversations/held/handoff?agent=bob&force=true", headers=AUTH)
    assert moved.status == 200 and (await moved.json())["agent"] == "bob"
    inbox = await (await client.get("/admin/conversations?agent=Bob", headers=AUTH)).json()
    assert [(p["conversation_id"], p["by"]) for p in inbox["passed"]] == [("held", "admin")]
    assert (await client.post("/admin/conversations/held/handoff?agent=Sam&force=true", headers=AUTH)).status == 200
    handoffs = (await (await client.get("/admin/conversations/held", headers=AUTH)).json())["handoffs"]
    assert [(h["agent"], h["from"], h["by"]) for h in handoffs] == [("Ana", None, None), ("bob", "Ana", "admin"),
                                                                    ("Sam", "bob", "Sam")]


async def test_a_forced_reply_or_handback_with_the_admin_token_in_an_agents_name_is_kept_as_the_admins(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A lead's forced reply or handback with the admin token in Bob's name was kept as Bob taking Ana's customer, or
    handing them back, himself, where a takeover, a release or a transfer made so is kept as the admin's: Bob was not
    told of a customer given to him, and the transcript showed Ana no lead moving her customer."""
    configure(bot_dir, server={"agents": {"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "bob-own-token-4567"}}})
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ana = {"Authorization": "Bearer ana-own-token-0123"}
    for cid in ("replied", "handed-back"):
        await chat(client, cid, "I need help with my bill")
        assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=ana)).status == 200
    sent = await client.post("/admin/conversations/replied/messages", headers=AUTH,
                             json={"text": "I have it from here", "agent": "Bob", "force": True})
    assert sent.status == 200, await sent.text()
    inbox = await (await client.get("/admin/conversations?agent=Bob", headers=AUTH)).json()
    assert [(p["conversation_id"], p["by"]) for p in inbox["passed"]] == [("replied", "admin")]
    assert (await client.post("/admin/conversations/handed-back/handback?agent=Bob&force=true", headers=AUTH)).status == 200

    async def handoffs(cid: str) -> list[tuple[str, str | None, str | None, str | None]]:
        kept = (await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json())["handoffs"]
        return [(h["event"], h["agent"], h["from"], h["by"]) for h in kept]

    assert (await handoffs("replied"))[-1] == ("handed_off", "Bob", "Ana", "admin")
    assert (await handoffs("handed-back"))[-1] == ("open", "admin", "Ana", None)  # whose customer it was
    inbox = await (await client.get("/admin/conversations?agent=Ana", headers=ana)).json()  # and Ana is told
    assert [(t["conversation_id"], t["by"], t["handed_back"]) for t in inbox["taken"]] == [
        ("handed-back", "admin", True), ("replied", "admin", False)]


@pytest.mark.parametrize(("agents", "said"), [
    ({"Ana": {"token": "ana-own-token-0123"}, "Bob": {"token": "ana-own-token-0123"}}, "agent Bob's token is agent Ana's"),
    ({"Ana": {"token": "small-admin-token"}}, "agent Ana's token is the admin token's"),
    ({"Ana": {"token": "ana-own-token-0123"}, "ANA": {"token": "another-token-4567"}}, "and Ana name one agent"),
    ({"José": {"token": "ana-own-token-0123"}, "Jose\u0301": {"token": "another-token-4567"}}, "one name written two ways"),
    ({"Ana\u200b": {"token": "ana-own-token-0123"}}, "U\\+200B, an invisible or control character"),
    ({"Ana\u202eLee": {"token": "ana-own-token-0123"}}, "U\\+202E, an invisible or control character")])
def test_agents_tokens_and_names_are_each_their_own(bot_dir: Path, agents: dict[str, Any], said: str) -> None:
    """A token two agents shared could not say whose a call was; nor could two names of one agent ("Ana", "ana", read
    as one as the bot reads names), each acting as the other: the server refuses to start."""
    configure(bot_dir, server={"agents": agents})
    with pytest.raises(ProjectError, match=said):
        create_app(bot_dir, device="cpu")


async def test_an_agent_who_takes_over_a_waiting_customer_nobody_has_is_said_to_have_them(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A takeover of a customer already handed off answered as one and kept nothing: its agent believed the customer
    theirs, and the others saw them as nobody's and answered too."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "asked", "I need help with my bill")
    await chat(client, "asked", "/handoff")
    [before] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    taken = await client.post("/admin/conversations/asked/handoff?agent=Bob", headers=AUTH)
    assert taken.status == 200 and await taken.json() == {"status": "handed_off", "agent": "Bob"}
    taken = await client.post("/admin/conversations/asked/handoff?agent=Ana", headers=AUTH)  # his now
    assert taken.status == 409 and (await taken.json())["agent"] == "Bob"
    [after] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert after == {**before, "agent": "Bob"}  # the wait and why they wait as they were
    transcript = await (await client.get("/admin/conversations/asked", headers=AUTH)).json()
    assert transcript["agent"] == "Bob"
    assert [(h["event"], h["reason"], h["agent"]) for h in transcript["handoffs"]] == [("handed_off", "requested", "Bob")]
    # handed back and taken over again: the earlier handoff keeps its agent, the new one names the new one
    assert (await client.post("/admin/conversations/asked/handback?agent=Bob", headers=AUTH)).status == 200
    assert (await client.post("/admin/conversations/asked/handoff?agent=Ana", headers=AUTH)).status == 200
    transcript = await (await client.get("/admin/conversations/asked", headers=AUTH)).json()
    assert [h["agent"] for h in transcript["handoffs"]] == ["Bob", "Bob", "Ana"] and transcript["agent"] == "Ana"


async def test_the_inbox_counts_what_each_customer_wrote_since_an_agents_reply(bot_dir: Path, aiohttp_client: Any) -> None:
    """An agent saw a customer's latest message alone, and no sign of the three they had written since the reply."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))

    async def unread() -> list[int | None]:
        listed = await (await client.get("/admin/conversations", headers=AUTH)).json()
        return [c["unread"] for c in listed["conversations"]]

    await chat(client, "asked", "I need help with my bill")
    await chat(client, "asked", "/handoff")
    assert await unread() == [0]  # what they came with was read with the handoff
    for text in ("it is invoice 2041", "hello??"):
        await chat(client, "asked", text)
    assert await unread() == [2]
    sent = await client.post("/admin/conversations/asked/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)
    assert sent.status == 200 and await unread() == [0]
    await chat(client, "asked", "/greet")  # a button's payload is not something to read
    await chat(client, "asked", "thanks, and the other one?")
    assert await unread() == [1]
    await chat(client, "with-the-bot", "hi")
    open_ones = await (await client.get("/admin/conversations?status=open", headers=AUTH)).json()
    assert [c["unread"] for c in open_ones["conversations"]] == [None]  # the bot has read them all


async def test_the_inbox_counts_as_new_only_what_came_after_the_agent_last_read(bot_dir: Path, aiohttp_client: Any) -> None:
    """An agent who opened a customer's conversation without replying still saw their messages as new."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))

    async def unread(agent: str) -> list[int | None]:
        listed = await (await client.get(f"/admin/conversations?agent={agent}", headers=AUTH)).json()
        return [c["unread"] for c in listed["conversations"]]

    async def seen(after: object, agent: str = "Ana") -> int:
        return (await client.post(f"/admin/conversations/asked/seen?agent={agent}&after={after}", headers=AUTH)).status

    await chat(client, "asked", "I need help with my bill")
    await chat(client, "asked", "/handoff")
    for text in ("it is invoice 2041", "hello??"):
        await chat(client, "asked", text)
    turns = (await (await client.get("/admin/conversations/asked", headers=AUTH)).json())["turns"]
    assert await seen(turns[-2]["id"]) == 200
    assert await unread("Ana") == [1] and await unread("%20ana") == [1]  # her name as she typed it in another window
    assert await unread("Bob") == [2] and await unread("") == [2]  # each agent has read what they have
    assert await seen(turns[-1]["id"] + 100) == 200 and await unread("Ana") == [0]  # a turn yet to come is not read
    await chat(client, "asked", "are you there?")
    assert await unread("Ana") == [1]
    assert await seen(turns[0]["id"]) == 200 and await unread("Ana") == [1]  # an older window's look reads nothing again
    assert await seen("x") == 400 and await seen("") == 400
    assert (await client.post("/admin/conversations/nobody/seen?after=1", headers=AUTH)).status == 404
    assert (await client.post("/admin/conversations/asked/seen?after=1")).status == 401


async def test_the_inbox_counts_its_agents_own_customers_unread_on_any_tab_or_page(bot_dir: Path,
                                                                                   aiohttp_client: Any) -> None:
    """The console heard its agent's customer write again from the waiting tab's page alone: ``unread_yours`` holds
    each of the agent's customers with what they wrote unread, whichever status, page or search is asked for."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for cid, agent in (("ana-1", "Ana"), ("ana-2", "Ana"), ("bob-1", "Bob")):
        await chat(client, cid, "/handoff")
        taken = await client.post(f"/admin/conversations/{cid}/handoff?agent={agent}", headers=AUTH)
        assert taken.status == 200
    for text in ("hello?", "still there?"):
        await chat(client, "ana-2", text)
    await chat(client, "bob-1", "hi")

    async def yours(query: str) -> list[dict[str, Any]]:
        return (await (await client.get(f"/admin/conversations?{query}", headers=AUTH)).json())["unread_yours"]

    mine = [{"conversation_id": "ana-1", "unread": 0}, {"conversation_id": "ana-2", "unread": 2}]
    assert await yours("agent=ANA&status=open") == mine
    assert await yours("agent=Ana&limit=0") == await yours("agent=Ana&offset=1") == await yours("agent=Ana&q=zzz") == mine
    assert await yours("status=open") == []  # nobody's console


async def waiting_metrics(client: Any) -> tuple[float, bool]:
    """``deskbot_customers_waiting`` and whether ``deskbot_longest_wait_seconds`` is a plausible age."""
    values = {s.name: s.value for family in text_string_to_metric_families(await (await client.get("/metrics")).text())
              for s in family.samples}
    return values["deskbot_customers_waiting"], 0 < values["deskbot_longest_wait_seconds"] < 60


def set_handoff(root: Path, **values: Any) -> None:
    """Set keys of bot.yml's ``handoff:`` section."""
    configure(root, handoff=values)


async def test_the_busy_message_is_said_in_the_conversations_language_and_script(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A Chinese customer who sent their phone number while waiting was told in English: "[PHONE]", as the
    store keeps it, read as English. One who writes Traditional characters was told in Simplified ones."""
    config = yaml.safe_load((bot_dir / "bot.yml").read_text())
    (bot_dir / "bot.yml").write_text(yaml.safe_dump({**config, "language": "multi"}))
    set_handoff(bot_dir, busy_after_seconds=0.4)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    for conversation, said in (("zh", ["我要找人工客服", "/handoff", "13912345678"]), ("tw", ["請幫我轉人工客服", "/handoff"])):
        for text in said:
            await chat(client, conversation, text)
    told = {}
    for conversation in ("zh", "tw"):
        for _ in range(100):
            turns = (await (await client.get(f"/api/conversations/{conversation}/history")).json())["turns"]
            if turns[-1]["role"] == "bot" and turns[-1]["text"].startswith("抱歉久等了"):
                break
            await asyncio.sleep(0.1)
        told[conversation] = (turns[-1]["text"], turns[-1]["buttons"])
    assert told == {"zh": ("抱歉久等了，客服人员正忙，会尽快在这里回复您；您也可以返回机器人。", [{"title": "返回机器人", "payload": "/resume"}]),
                    "tw": ("抱歉久等了，客服人員正忙，會盡快在這裡回覆您；您也可以返回機器人。", [{"title": "返回機器人", "payload": "/resume"}])}


@pytest.mark.parametrize("agent_script", ["customer", "as_written"])
async def test_an_agents_reply_reaches_the_customer_in_their_chinese_script(
        bot_dir: Path, aiohttp_client: Any, agent_script: str) -> None:
    """Agents type the shop's Simplified characters: a customer writing Traditional ones, whom the bot answered in
    them, got the agent's reply in Simplified. The agents' console keeps the reply as its agent wrote it."""
    config = yaml.safe_load((bot_dir / "bot.yml").read_text())
    (bot_dir / "bot.yml").write_text(yaml.safe_dump({**config, "language": "multi"}))
    set_handoff(bot_dir, agent_script=agent_script)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    socket = await client.ws_connect("/api/ws")
    await socket.send_json({"type": "join", "conversation_id": "tw"})
    await socket.receive_json()
    assert (await chat(client, "tw", "請幫我轉人工客服"))["handed_off"] is True
    assert (await next_push(socket))["status"] == "handed_off"
    written = "您好，请提供您的订单号，我帮您查询退货进度。"
    sent = await client.post("/admin/conversations/tw/messages", json={"text": written, "agent": "Li", "key": "tw-1"},
                             headers=AUTH)  # with its key, as the console sends each reply
    assert sent.status == 200
    got = "您好，請提供您的訂單號，我幫您查詢退貨進度。" if agent_script == "customer" else written
    while (pushed := await next_push(socket))["type"] != "agent":
        pass
    assert pushed["reply"] == got
    history = (await (await client.get("/api/conversations/tw/history")).json())["turns"]
    assert history[-1]["text"] == got  # a reload shows what the customer got
    transcript = (await (await client.get("/admin/conversations/tw", headers=AUTH)).json())["turns"]
    assert transcript[-1]["text"] == written
    # and what the customer got beside it, where that differs, for the agent to see; nothing for any other turn
    assert transcript[-1]["sent"] == (got if agent_script == "customer" else None)
    assert {turn["sent"] for turn in transcript[:-1]} == {None}
    await socket.close()


async def test_a_markdown_reply_on_wecom_is_said_to_have_reached_the_customer_as_plain_text(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """WeCom shows no Markdown: its customer got an agent's or the bot's **bold** and [link](…) as plain text, and the
    transcript said nothing of it, so that the console drew the reply as the web chat does. It says what the customer
    got, and whether the conversation's customer reads Markdown drawn; a web customer's reply is as written."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    store = client.app[BOT].store
    written = "**Not lost**: see [tracking](https://shop.example/track)."
    for cid, channel in (("wecom:ww1:chen", "wecom"), ("web-markdown", "web")):
        store.add_message(cid, "user", "where is my parcel?", channel)
        store.add_message(cid, "bot", written, channel)
        store.add_message(cid, "bot", "Anything else?", channel)
        store.add_agent_answer(cid, written, channel, "Li")
        store.add_agent_answer(cid, "It arrives tomorrow.", channel, "Li")
    read = {cid: await (await client.get(f"/admin/conversations/{quote(cid)}", headers=AUTH)).json()
            for cid in ("wecom:ww1:chen", "web-markdown")}
    assert [(read[cid]["markdown"], [(t["role"], t["text"], t["sent"]) for t in read[cid]["turns"][1:]])
            for cid in read] == [
        (False, [("bot", written, "Not lost: see tracking (https://shop.example/track)."), ("bot", "Anything else?", None),
                 ("agent", written, "Not lost: see tracking (https://shop.example/track)."),
                 ("agent", "It arrives tomorrow.", None)]),
        (True, [("bot", written, None), ("bot", "Anything else?", None), ("agent", written, None),
                ("agent", "It arrives tomorrow.", None)])]
    assert read["wecom:ww1:chen"]["turns"][0]["sent"] is None  # the customer's own words are as they wrote them


async def waiting_for_a_person(bot_dir: Path, aiohttp_client: Any, cid: str) -> tuple[Any, Any]:
    """A client of a bot that tells a customer after 0.4 s that the agents are busy, and a socket that heard
    customer ``cid`` ask for a person."""
    set_handoff(bot_dir, busy_after_seconds=0.4)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    ws = await client.ws_connect("/api/ws")
    await ws.send_json({"type": "join", "conversation_id": cid})
    await ws.receive_json()
    await chat(client, cid, "/handoff")
    assert (await next_push(ws))["status"] == "handed_off"
    return client, ws


async def test_a_customer_left_waiting_is_told_once_per_wait_that_the_agents_are_busy(
        bot_dir: Path, aiohttp_client: Any) -> None:
    client, ws = await waiting_for_a_person(bot_dir, aiohttp_client, "alone")

    busy = "Sorry for the wait: our agents are all busy right now."
    pushed = await next_push(ws)
    assert pushed["type"] == "bot" and pushed["reply"].startswith(busy)
    history = (await (await client.get("/api/conversations/alone/history")).json())["turns"]
    assert history[-1]["buttons"] == pushed["buttons"] == [{"title": "Back to the bot", "payload": "/resume"}]  # a reload shows it

    async def bot_lines() -> list[str]:
        turns = (await (await client.get("/admin/conversations/alone", headers=AUTH)).json())["turns"]
        return [t["text"] for t in turns if t["role"] == "bot" and t["text"].startswith(busy)]

    await asyncio.sleep(1.0)  # two more rounds of the watcher: still told once
    assert len(await bot_lines()) == 1
    # An agent answers; the customer writes again and is left waiting again: told again, once.
    assert (await client.post("/admin/conversations/alone/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)).status == 200
    await chat(client, "alone", "and when does it arrive?")
    for _ in range(50):
        if len(await bot_lines()) == 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert len(await bot_lines()) == 2
    await ws.close()


async def test_a_customer_who_writes_again_long_after_the_busy_notice_is_told_again(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A customer who came back to a conversation nobody had answered got no word at all: the busy notice went
    out once per wait. Told again when they write that long after it; not at each message they write on with."""
    client, ws = await waiting_for_a_person(bot_dir, aiohttp_client, "back")
    busy = "Sorry for the wait: our agents are all busy right now."
    assert (await next_push(ws))["reply"].startswith(busy)

    async def told() -> int:
        turns = (await (await client.get("/admin/conversations/back", headers=AUTH)).json())["turns"]
        return sum(t["role"] == "bot" and t["text"].startswith(busy) for t in turns)

    await chat(client, "back", "ok")  # at once: the notice just said it all
    await asyncio.sleep(0.8)
    assert await told() == 1
    await chat(client, "back", "hello? is anyone there?")  # later, and still nobody has answered
    pushed = await next_push(ws)
    assert pushed["type"] == "bot" and pushed["reply"].startswith(busy)
    assert pushed["buttons"] == [{"title": "Back to the bot", "payload": "/resume"}]
    await asyncio.sleep(0.8)
    assert await told() == 2  # once for it
    await ws.close()


async def test_an_agent_who_takes_over_while_the_bot_works_on_a_message_answers_it_alone(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """The bot read the conversation's status at the start of a turn only: an agent who took over while it
    worked on the customer's message saw its answer go out after the customer was told a person had joined."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "race", "hello")
    bot = client.app[BOT]
    classify = bot.batcher.submit

    async def taken_over_meanwhile(text: str) -> Any:
        analysis = await classify(text)
        assert (await client.post("/admin/conversations/race/handoff", headers=AUTH)).status == 200
        return analysis

    bot.batcher.submit = taken_over_meanwhile
    reply = await chat(client, "race", "my parcel never came")
    assert (reply["reply"], reply["buttons"], reply["source"], reply["handed_off"]) == ("", [], "silent", True)
    transcript = await (await client.get("/admin/conversations/race", headers=AUTH)).json()
    assert [t["role"] for t in transcript["turns"]][-1:] == ["user"]  # the agent's to answer, and waiting
    assert (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"][0][
        "last_message"] == "my parcel never came"
    bot.batcher.submit = classify
    assert (await client.post("/admin/conversations/race/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)).status == 200
    assert [(c["question"], c["answer"]) for c in bot.store.answer_candidates()] == [("my parcel never came", ANSWER)]


async def test_a_store_that_cannot_write_is_said_once_while_customers_wait(
        bot_dir: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk or a store made read-only logged a traceback every round of the busy notices (several a
    second), for as long as it lasted; the customer is told once the store writes again."""
    set_handoff(bot_dir, busy_after_seconds=0.4)
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    bot = client.app[BOT]
    await chat(client, "stuck", "/handoff")
    await bot._store(lambda: bot.store.db.execute("PRAGMA query_only = ON"))  # as a file made read-only
    await asyncio.sleep(1.5)  # several rounds, each failing to store the notice
    failures = [r for r in caplog.records if r.name == "deskbot" and r.levelname == "ERROR"]
    assert [r.getMessage() for r in failures] == [
        "telling waiting customers that the agents are busy: the conversation store cannot write: attempt to write "
        "a readonly database (tried again every few seconds)"]
    assert failures[0].exc_info is None and "Traceback" not in caplog.text
    await bot._store(lambda: bot.store.db.execute("PRAGMA query_only = OFF"))
    for _ in range(50):
        turns = (await (await client.get("/api/conversations/stuck/history")).json())["turns"]
        if turns[-1]["text"].startswith("Sorry for the wait"):
            break
        await asyncio.sleep(0.1)
    assert turns[-1]["text"].startswith("Sorry for the wait")


async def slack_refusing_all(bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> Any:
    """A client of the bot with a Slack channel whose chat.postMessage refuses every message, as for a
    channel the app was removed from."""
    async def post_message(request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error": "channel_not_found"})

    return await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)


def posting_to(posted: list[str], taking: float = 0.0) -> Any:
    """A chat.postMessage that takes every message, appending its text to ``posted``, and answers ``taking``
    seconds later."""

    async def post_message(request: web.Request) -> web.Response:
        posted.append((await request.json())["text"])
        await asyncio.sleep(taking)
        return web.json_response({"ok": True, "ts": "1.2"})

    return post_message


async def with_slack(bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, post_message: Any) -> Any:
    """A client of the bot with a Slack channel whose chat.postMessage is ``post_message``."""
    async def auth_test(request: web.Request) -> web.Response:  # the token checked at start, as Slack answers it
        return web.json_response({"ok": True, "team": "Shop", "user": "deskbot", "team_id": "T1", "user_id": "UBOT"})

    api = web.Application()
    api.router.add_post("/api/chat.postMessage", post_message)
    api.router.add_post("/api/auth.test", auth_test)
    config = yaml.safe_load((bot_dir / "bot.yml").read_text())
    config["channels"] = {"slack": {"signing_secret": "s", "bot_token": "xoxb-t",
                                    "api_url": str((await aiohttp_server(api)).make_url("/api/"))}}
    (bot_dir / "bot.yml").write_text(yaml.safe_dump(config))
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    return client


async def test_bot_serve_checks_the_slack_bot_token_at_start(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A revoked token or a mistyped api_url showed only when a customer's first answer failed: the server asks
    Slack who the token is as it starts, and says so."""
    caplog.set_level("INFO", logger="bot.channels.slack")
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, posting_to([]))
    await client.app[BOT].channels["slack"].close()
    assert "Slack: the bot token is the bot user deskbot (UBOT) of workspace Shop (T1)" in caplog.messages


async def test_a_slack_customer_is_told_when_an_agent_takes_over_and_hands_back(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The web chat shows a banner; a Slack customer saw nothing: left writing to a silent bot after a takeover,
    answered by the bot again without a word after a handback, and with no way back (Slack takes a typed
    /resume for a slash command): the takeover notice carries the button."""
    posted: list[dict[str, Any]] = []

    async def post_message(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.json_response({"ok": True, "ts": "1.2"})

    config = yaml.safe_load((bot_dir / "bot.yml").read_text())
    (bot_dir / "bot.yml").write_text(yaml.safe_dump({**config, "language": "multi"}))
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    store = client.app[BOT].store
    cid, chinese = "slack:T1:C1:1700000000.000100", "slack:T1:C2:1700000000.000100"
    for conversation in (cid, chinese):
        store.add_message(conversation, "user", "where is my parcel?", "slack")
    store.db["conversations"].update(chinese, {"slots": json.dumps({"language": "zh"})})
    store.add_message("web-1", "user", "where is my parcel?", "web")

    async def admin(conversation: str, action: str) -> None:
        response = await client.post(f"/admin/conversations/{conversation}/{action}", headers=AUTH)
        assert response.status == 200, await response.text()

    for action in ("handoff", "handoff", "handback"):  # taken over once: a second agent's takeover changes nothing
        await admin(cid, action)
    await admin(chinese, "handoff")
    await admin("web-1", "handoff")
    await notices_sent(client)

    said = [(m["channel"], m["text"], [e["value"] for b in m.get("blocks", []) for e in b.get("elements", [])
                                       if "value" in e]) for m in posted]
    assert said == [("C1", "A member of our team has joined and will answer you here.", ["/resume"]),
                    ("C1", "You're back with the bot. How else can I help?", []),
                    ("C2", "人工客服已接入，将在这里为您解答。", ["/resume"])]
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [t["text"] for t in transcript["turns"] if t["role"] == "bot"] == [
        "A member of our team has joined and will answer you here.", "You're back with the bot. How else can I help?"]
    web_chat = await (await client.get("/admin/conversations/web-1", headers=AUTH)).json()
    assert [t["role"] for t in web_chat["turns"]] == ["user"]  # the widget's banner says it


@pytest.mark.parametrize(("reason", "holder", "actions", "told"), [
    # waiting for a person, taken over, taken over from Ana by a lead, then by the same lead in another letter case
    ("requested", None, ["handoff?agent=Ana", "handoff?agent=Bob&force=true", "handoff?agent=bob"], [JOINED] * 2),
    # released, a customer still waits for a person: nothing to tell them; passed to a colleague, they are with
    # someone new, as after a takeover
    ("agent", "Ana", ["release?agent=Ana", "transfer?agent=Ana&to=Lin"], [JOINED]),
], ids=["taken over from a colleague", "released, then passed to a colleague"])
async def test_a_slack_customer_is_told_of_each_agent_who_comes_to_have_them(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, reason: str, holder: str | None, actions: list[str],
        told: list[str]) -> None:
    """A Slack customer who asked for a person, and one a lead took over from a colleague, heard nothing of the agent
    now with them: only a takeover from the bot was told. Each agent who comes to have them is; the same agent again,
    in another letter case, is not, nor is a release."""
    posted: list[str] = []
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, posting_to(posted))
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")
    client.app[BOT].store.set_status(cid, "handed_off", reason, "slack", agent=holder)
    for action in actions:
        response = await client.post(f"/admin/conversations/{cid}/{action}", headers=AUTH)
        assert response.status == 200, await response.text()
        await notices_sent(client)
    assert posted == told


async def notices_sent(client: Any) -> None:
    """Until the bot has no takeover or handback notice on its way (they go after the admin API answers)."""
    for _ in range(500):
        if not client.app[BOT]._notices._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a notice is still on its way")


async def test_a_slack_customer_an_agent_took_over_is_still_told_when_the_agents_are_busy(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The takeover notice is a bot turn stored in the customer's wait, and the busy notice counted any bot turn
    as "told": a Slack customer whose agent took over and never wrote was left in silence (the web chat, which
    gets no takeover message, was told)."""
    posted: list[str] = []
    post_message = posting_to(posted)
    set_handoff(bot_dir, busy_after_seconds=0.4)
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")
    assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=AUTH)).status == 200
    busy = "Sorry for the wait: our agents are all busy right now."
    for _ in range(100):
        if any(text.startswith(busy) for text in posted):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # two more rounds of the watcher: still told once
    assert len(posted) == 2 and posted[1].startswith(busy), posted
    assert posted[0] == "A member of our team has joined and will answer you here."


async def bilingual_slack_bot(bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any,
                              joined_message_named: dict[str, str]) -> tuple[Any, list[str]]:
    """A test client of ``bot_dir`` made a multi bot with that handoff.joined_message_named, on a Slack server
    that takes every message, and the texts posted to it."""
    posted: list[str] = []
    post_message = posting_to(posted)
    config = yaml.safe_load((bot_dir / "bot.yml").read_text())
    (bot_dir / "bot.yml").write_text(yaml.safe_dump({**config, "language": "multi"}))
    set_handoff(bot_dir, joined_message_named=joined_message_named)
    return await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message), posted


async def test_a_slack_customer_is_told_the_name_of_the_agent_who_took_over(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """handoff.joined_message_named names the agent taking over (the console's ?agent=, or the name with an
    agent's first reply), as hosted chats say "Ana joined"; a takeover that gives no name says joined_message. A
    Traditional-Chinese customer reads the name as the agent wrote it (张), not converted with the text around it."""
    client, posted = await bilingual_slack_bot(bot_dir, aiohttp_client, aiohttp_server, {
        "en": "{agent} has joined and will answer you here.", "zh": "人工客服{agent}已接入，将在这里为您解答。"})
    store = client.app[BOT].store
    named, chinese, traditional, replied, unnamed = (f"slack:T1:C{n}:1700000000.000100" for n in range(1, 6))
    for conversation in (named, chinese, traditional, replied, unnamed):
        store.add_message(conversation, "user", "where is my parcel?", "slack")
    store.db["conversations"].update(chinese, {"slots": json.dumps({"language": "zh"})})
    store.db["conversations"].update(traditional, {"slots": json.dumps({"language": "zh", SCRIPT: "traditional"})})
    store.add_message("web-1", "user", "where is my parcel?", "web")
    for conversation, query in ((named, "?agent=Ana"), (chinese, "?agent=小王"), (traditional, "?agent=张"),
                                (unnamed, ""), ("web-1", "?agent=Ana")):
        response = await client.post(f"/admin/conversations/{conversation}/handoff{query}", headers=AUTH)
        assert response.status == 200, await response.text()
        await notices_sent(client)
    response = await client.post(f"/admin/conversations/{replied}/messages", json={"text": ANSWER, "agent": "Bo"},
                                 headers=AUTH)
    assert response.status == 200, await response.text()
    await notices_sent(client)
    assert posted == ["Ana has joined and will answer you here.", "人工客服小王已接入，将在这里为您解答。",
                      "人工客服张已接入，將在這裡為您解答。", "A member of our team has joined and will answer you here.",
                      "Bo has joined and will answer you here.", f"Bo: {ANSWER}"]  # the notification text, plain
    web_chat = await (await client.get("/admin/conversations/web-1", headers=AUTH)).json()
    assert [t["role"] for t in web_chat["turns"]] == ["user"]  # the widget's banner says it


async def test_a_named_takeover_notice_without_the_customers_language_says_joined_message_in_it(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """A bilingual bot whose joined_message_named has English alone tells a Chinese customer joined_message in
    Chinese, not the English one: an English customer is still told the agent's name."""
    client, posted = await bilingual_slack_bot(bot_dir, aiohttp_client, aiohttp_server,
                                               {"en": "{agent} has joined and will answer you here."})
    store = client.app[BOT].store
    english, chinese = (f"slack:T1:C{n}:1700000000.000100" for n in range(1, 3))
    for conversation in (english, chinese):
        store.add_message(conversation, "user", "where is my parcel?", "slack")
    store.db["conversations"].update(chinese, {"slots": json.dumps({"language": "zh"})})
    for conversation in (english, chinese):
        response = await client.post(f"/admin/conversations/{conversation}/handoff?agent=Ana", headers=AUTH)
        assert response.status == 200, await response.text()
        await notices_sent(client)
    assert posted == ["Ana has joined and will answer you here.", "人工客服已接入，将在这里为您解答。"]


async def test_an_agents_takeover_answers_before_slack_takes_the_notice_and_a_maybe_posted_one_is_not_marked(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The admin API waited for Slack to take the takeover notice (3 s for a 504 after 3 s, a minute with
    retries), and marked a notice Slack may have posted (its 504) undelivered; an agent's reply right after
    the takeover still reaches the customer after the notice."""
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        if text.startswith("A member of our team"):
            await asyncio.sleep(1.5)
            posted.append(text)
            return web.Response(status=504)
        posted.append(text)
        return web.json_response({"ok": True, "ts": "1.2"})

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")
    started = time.monotonic()
    assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=AUTH)).status == 200
    assert time.monotonic() - started < 1.0
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)
    assert response.status == 200, await response.text()
    await notices_sent(client)
    assert posted == ["A member of our team has joined and will answer you here.", f"Sam: {ANSWER}"]
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [(t["role"], t["undelivered"]) for t in transcript["turns"]] == [("user", False), ("bot", False),
                                                                           ("agent", False)]


async def test_a_takeover_notice_on_its_way_at_shutdown_goes_out_before_its_channel_closes(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM right after a takeover closed Slack's session while the notice was on its way (the channel had
    no turn of its own to wait for), and the notice opened a new one that nothing closed."""
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        posted.append((await request.json())["text"])
        return web.json_response({"ok": True, "ts": "1.2"})

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")
    assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=AUTH)).status == 200
    await client.app.shutdown()
    assert posted == ["A member of our team has joined and will answer you here."]
    assert "could not tell" not in caplog.text
    assert client.app[BOT].channels["slack"]._session is None  # closed after the notice, not reopened by it


async def test_an_agents_reply_to_a_conversation_the_bot_holds_takes_it_over(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """A reply from the "With the bot" tab, or one sent just after a colleague handed back, reached the customer,
    and the bot then answered the customer's answer to the agent with its fallback."""
    posted: list[str] = []
    post_message = posting_to(posted)
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    await chat(client, "web-1", "hello")
    slack = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(slack, "user", "where is my parcel?", "slack")
    for cid in ("web-1", slack):
        response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": ANSWER}, headers=AUTH)
        assert response.status == 200, await response.text()
        transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
        assert transcript["status"] == "handed_off" and transcript["handoffs"][-1]["reason"] == "agent"
    silent = await chat(client, "web-1", "thanks, and when will it come?")
    assert (silent["reply"], silent["source"]) == ("", "silent")  # the agent's to answer now
    await notices_sent(client)
    assert posted == ["A member of our team has joined and will answer you here.", f"Sam: {ANSWER}"]  # in that order


async def test_a_reply_sent_again_after_a_colleague_handed_back_takes_nothing_over(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The console sends a reply again when the answer to the first try was lost: the retry took the conversation
    over again, undoing a colleague's handback, and Slack's customer was told an agent had joined once more."""
    posted: list[str] = []
    post_message = posting_to(posted)
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")

    async def reply() -> Any:
        response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": ANSWER, "key": "k-1"},
                                     headers=AUTH)
        assert response.status == 200, await response.text()
        return (await response.json())["turn_id"]

    first = await reply()
    assert (await client.post(f"/admin/conversations/{cid}/handback?agent=Sam", headers=AUTH)).status == 200
    assert await reply() == first
    await notices_sent(client)
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert transcript["status"] == "open" and [h["event"] for h in transcript["handoffs"]] == ["handed_off", "open"]
    assert posted == ["A member of our team has joined and will answer you here.", f"Sam: {ANSWER}",
                      "You're back with the bot. How else can I help?"]


async def test_a_takeover_notice_waiting_to_be_tried_again_at_shutdown_is_given_up_at_once(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Slack asking for 20 s: the notice held SIGTERM up for the whole grace and was then cancelled, unmarked."""
    async def post_message(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "20"})

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my parcel?", "slack")
    assert (await client.post(f"/admin/conversations/{cid}/handoff", headers=AUTH)).status == 200
    await asyncio.sleep(0.3)  # the first try was refused: the notice waits to try again
    started = time.monotonic()
    await client.app.shutdown()
    assert time.monotonic() - started < 3
    notice = client.app[BOT].store.transcript(cid, 10)["turns"][-1]
    assert notice["role"] == "bot" and notice["undelivered"]  # the customer never got it, and the agent sees so


async def test_a_store_error_telling_of_a_takeover_is_logged_and_the_takeover_stands(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """It escaped as a 500 after the conversation had changed hands."""
    async def post_message(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "ts": "1.2"})

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    store = client.app[BOT].store
    cid = "slack:T1:C1:1700000000.000100"
    store.add_message(cid, "user", "where is my parcel?", "slack")

    def failing(*args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    store.add_message = failing
    response = await client.post(f"/admin/conversations/{cid}/handoff", headers=AUTH)
    assert response.status == 200, await response.text()
    await notices_sent(client)
    assert store.conversation(cid)["status"] == "handed_off"
    assert "could not tell" in caplog.text and "disk I/O error" in caplog.text


async def test_an_agent_reply_the_platform_refuses_is_a_502_that_says_so(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Slack refusing the reply (a channel the app was removed from) is the platform's answer, not a server error."""
    client = await slack_refusing_all(bot_dir, aiohttp_client, aiohttp_server)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "is anyone there?", "slack")
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Yes, I'm here."}, headers=AUTH)
    assert response.status == 502
    assert (await response.json())["error"] == ("kept in the transcript, but the customer did not get it: "
                                                f"chat.postMessage: channel_not_found ({NOT_FOUND})")
    # Marked so, and the customer still waits: the inbox counted them answered, and the busy notice never came.
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "slack")
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Still here?"}, headers=AUTH)
    assert response.status == 502
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [(t["text"], t["undelivered"]) for t in transcript["turns"] if t["role"] == "agent"] == [
        ("Yes, I'm here.", True), ("Still here?", True)]
    [waiting] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert waiting["conversation_id"] == cid and waiting["waiting_since"] is not None

    async def silent(*args: Any, **kwargs: Any) -> None:
        raise asyncio.TimeoutError

    client.app[BOT].channels["slack"].send = silent  # a timeout's own message is empty: "cannot reach slack: "
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Hello?"}, headers=AUTH)
    assert (await response.json())["error"] == ("kept in the transcript, but the customer did not get it: "
                                                "cannot reach slack: no answer in time")


async def test_an_agent_reply_sent_again_with_its_key_reaches_the_customer_once(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """The console sends a reply again when the answer to the first try was lost (a proxy's timeout, Wi-Fi
    dropping): each try was stored and posted, and the customer read the reply twice."""
    posted: list[str] = []
    post_message = posting_to(posted, taking=0.2)  # a second try arrives while the first is still being posted
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid, other = "slack:T1:C1:1700000000.000100", "slack:T1:C2:1700000000.000100"
    for conversation in (cid, other):
        client.app[BOT].store.add_message(conversation, "user", "where is my refund?", "slack")
        client.app[BOT].store.set_status(conversation, "handed_off", "requested", "slack")  # waiting for an agent

    async def send(conversation: str, text: str, key: str | None) -> Any:
        body = {"agent": "Sam", "text": text, **({"key": key} if key else {})}
        response = await client.post(f"/admin/conversations/{conversation}/messages", json=body, headers=AUTH)
        return response.status, await response.json()

    first, again = await asyncio.gather(send(cid, "Refunded today.", "k-1"), send(cid, "Refunded today.", "k-1"))
    later = await send(cid, "Refunded today.", "k-1")
    assert first == again == later and first[0] == 200
    assert (await send(other, "Refunded today.", "k-1"))[0] == 200  # a key is one conversation's
    assert (await send(cid, "It takes 3 days.", None))[0] == 200  # without a key, each try is a reply
    assert posted == ["Sam: Refunded today."] * 2 + ["Sam: It takes 3 days."]
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [t["text"] for t in transcript["turns"] if t["role"] == "agent"] == ["Refunded today.", "It takes 3 days."]
    assert (await send(cid, "x", "not a key!"))[0] == 400


async def test_another_reply_sent_with_a_key_used_before_is_refused_and_not_lost_silently(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """A client that sent a second reply under the key of its first (a key made per conversation, not per
    reply) was answered 200 with the first reply's turn: the second was neither stored nor sent, and nobody
    knew. Refused, as an Idempotency-Key used again with another request is, it can be sent with a new key."""
    posted: list[str] = []
    post_message = posting_to(posted, taking=0.2)  # the other reply arrives while the first is still being posted
    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my refund?", "slack")
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "slack")

    async def send(text: str, key: str) -> Any:
        response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": text, "key": key},
                                     headers=AUTH)
        return response.status, await response.json()

    first, meanwhile = await asyncio.gather(send("Refunded today.", "k-1"), send("It takes 3 days.", "k-1"))
    later = await send("It takes 3 days.", "k-1")
    assert first[0] == 200 and meanwhile == later == (
        422, {"error": "key: a reply with another text was sent with this key: send this reply with a new key",
              "code": "key_reused"})
    assert (await send("Refunded today.", "k-1")) == first  # the same reply sent again is still the first
    assert (await send("It takes 3 days.", "k-2"))[0] == 200
    assert posted == ["Sam: Refunded today.", "Sam: It takes 3 days."]
    assert client.app[BOT]._keyed == {}


async def test_a_reply_written_before_a_colleagues_reply_was_read_is_refused_until_it_is(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """Two agents answering one customer at once both reached them, with two answers that could disagree: a
    reply that says the latest turn its agent read (``after``) is refused while a colleague's came since."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "both", "I need help with my bill")
    await chat(client, "both", "/handoff")
    read = (await (await client.get("/admin/conversations/both", headers=AUTH)).json())["turns"][-1]["id"]

    async def send(text: str, **body: Any) -> Any:
        response = await client.post("/admin/conversations/both/messages", json={"text": text, **body}, headers=AUTH)
        return response.status, await response.json()

    ann = await send("Hi, Ann here: your bill is fixed.", agent="Ann", after=read)
    assert ann[0] == 200
    assert await send("Sam here, looking at your bill.", agent="Sam", after=read, key="k-1") == (409, {
        "error": f"a colleague (Ann) replied meanwhile, as turn {ann[1]['turn_id']}: read it, then send yours again",
        "code": "replied_meanwhile", "author": "Ann", "yours": False})
    # Ann's second window: her own reply, said to be hers, and still refused so that she does not answer twice.
    assert await send("Hi, Ann here: fixing your bill.", agent="Ann", after=read) == (409, {
        "error": f"you (Ann) replied meanwhile from another window, as turn {ann[1]['turn_id']}: read it, then send "
                 "this one again if it is still needed", "code": "replied_meanwhile", "author": "Ann", "yours": True})
    # her name typed in other letters, as a name is read by people: still hers
    assert (await send("Hi, ann here: fixing your bill.", agent=" ann ", after=read))[1]["error"].startswith(
        "you (Ann) replied meanwhile from another window")
    # read: it goes (Ann has the customer: Sam overrides that), with ``after`` as any JSON client may write the
    # integer (12.0 is one in JSON Schema)
    assert (await send("Sam here, looking at your bill.", agent="Sam", after=float(ann[1]["turn_id"]), key="k-1",
                       force=True))[0] == 200
    assert (await send("Without after, as before.", agent="Sam"))[0] == 200
    transcript = await (await client.get("/admin/conversations/both", headers=AUTH)).json()
    assert [t["text"] for t in transcript["turns"] if t["role"] == "agent"] == [
        "Hi, Ann here: your bill is fixed.", "Sam here, looking at your bill.", "Without after, as before."]
    # A colleague who handed back since: the refused reply takes nothing over from the bot either.
    assert (await client.post("/admin/conversations/both/handback?agent=Sam", headers=AUTH)).status == 200
    assert (await send("Late.", agent="Ann", after=read))[0] == 409
    assert (await (await client.get("/admin/conversations/both", headers=AUTH)).json())["status"] == "open"


async def test_a_handback_before_the_customers_latest_message_was_read_is_refused(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """An agent handing back as the customer wrote left that message unanswered: the bot does not answer what
    was written to a person, and the agent never saw it."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "typing", "I need help with my bill")
    await chat(client, "typing", "/handoff")
    sent = await client.post("/admin/conversations/typing/messages", json={"agent": "Sam", "text": "Your bill is fixed."}, headers=AUTH)
    read = (await sent.json())["turn_id"]
    late = await chat(client, "typing", "and the invoice for May?")

    async def hand_back(query: str) -> Any:
        response = await client.post(f"/admin/conversations/typing/handback?agent=Sam&{query[1:]}", headers=AUTH)
        return response.status, await response.json()

    assert await hand_back(f"?after={read}") == (409, {"error": f"the customer wrote meanwhile, as turn "
                                                                f"{late['user_turn_id']}: read it, answer it or hand back again",
                                                       "code": "wrote_meanwhile"})
    assert (await (await client.get("/admin/conversations/typing", headers=AUTH)).json())["status"] == "handed_off"
    assert await hand_back(f"?after={late['user_turn_id']}") == (200, {"status": "open"})
    assert await hand_back(f"?after={read}") == (200, {"status": "open"})  # back already: nothing to refuse
    assert (await hand_back("?after=x"))[0] == (await client.post("/admin/conversations/typing/handoff?after=1",
                                                                  headers=AUTH)).status == 400
    assert await hand_back("") == (200, {"status": "open"})  # and without after


async def test_a_reply_written_before_the_customer_went_back_to_the_bot_is_refused_until_that_is_read(
        bot_dir: Path, aiohttp_client: Any) -> None:
    """A customer who went back to the bot (or on with it) while an agent wrote was pulled back to a person by the reply,
    which answered what came before: the agent never saw that they had left."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    await chat(client, "left", "I need help with my bill")
    await chat(client, "left", "/handoff")
    read = (await (await client.get("/admin/conversations/left", headers=AUTH)).json())["turns"][-1]["id"]
    back = await chat(client, "left", "/resume")

    async def send(after: int) -> Any:
        response = await client.post("/admin/conversations/left/messages", json={"text": "Your bill is fixed.",
                                                                                "agent": "Ann", "after": after}, headers=AUTH)
        return response.status, await response.json()

    assert await send(read) == (409, {"error": f"the customer wrote to the bot meanwhile, as turn {back['user_turn_id']}: "
                                               "read it, then send yours again if it is still needed (it takes the "
                                               "conversation over)", "code": "wrote_to_the_bot"})
    transcript = await (await client.get("/admin/conversations/left", headers=AUTH)).json()
    assert transcript["status"] == "open" and [t for t in transcript["turns"] if t["role"] == "agent"] == []
    assert (await send(transcript["turns"][-1]["id"]))[0] == 200  # read: it takes the customer over and goes
    transcript = await (await client.get("/admin/conversations/left", headers=AUTH)).json()
    assert transcript["status"] == "handed_off" and transcript["agent"] == "Ann"


async def test_an_agent_reply_sent_again_while_its_first_try_fails_is_refused_both_times(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """A second try arriving while the first was still being posted answered "sent" at once: the first
    then failed, and the agent had been told the customer got a reply they never did."""
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        posted.append((await request.json())["text"])
        await asyncio.sleep(0.2)
        return web.json_response({"ok": False, "error": "channel_not_found"})

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "where is my refund?", "slack")
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "slack")  # waiting for an agent

    async def send() -> Any:
        response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Refunded.", "key": "k-1"},
                                     headers=AUTH)
        return response.status, (await response.json())["error"]

    first, again = await asyncio.gather(send(), send())
    assert first == again == (502, "kept in the transcript, but the customer did not get it: "
                                   f"chat.postMessage: channel_not_found ({NOT_FOUND})")
    assert posted == ["Sam: Refunded."]
    assert client.app[BOT]._keyed == {}


async def test_an_agent_reply_the_platform_refused_is_refused_again_when_sent_again_with_its_key(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Answered as sent, the console would clear a reply its customer never got."""
    client = await slack_refusing_all(bot_dir, aiohttp_client, aiohttp_server)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "is anyone there?", "slack")
    for _ in range(2):
        response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Yes.", "key": "k"},
                                     headers=AUTH)
        assert response.status == 502
    assert (await response.json())["error"].startswith("kept in the transcript, but the customer did not get it: "
                                                       "sent before with this key, as turn ")
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [(t["text"], t["undelivered"]) for t in transcript["turns"] if t["role"] == "agent"] == [("Yes.", True)]


async def test_an_agent_reply_the_platform_may_have_sent_is_a_504_that_says_to_check(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """Slack posted the reply and answered 504 (or too late): it was a 502, "the customer did not get it", the
    reply marked undelivered, and the agent sent it again: the customer read it twice."""
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        posted.append((await request.json())["text"])
        return web.Response(status=504, text="gateway timeout")

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "is anyone there?", "slack")
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "slack")
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Yes, I'm here."}, headers=AUTH)
    assert response.status == 504
    assert (await response.json())["error"] == (
        "kept in the transcript; it may have reached the customer, whose platform did not say "
        "(chat.postMessage: HTTP 504): check before sending it again")
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [(t["text"], t["undelivered"]) for t in transcript["turns"] if t["role"] == "agent"] == [
        ("Yes, I'm here.", False)]
    [answered] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert answered["waiting_since"] is None and posted == ["Sam: Yes, I'm here."]


async def slack_message(client: Any) -> str:
    """A customer's Slack message, signed as Slack signs it, answered (in the background) before this returns;
    its conversation's id."""
    import json

    from bot.channels.slack import slack_signature

    body = json.dumps({"type": "event_callback", "team_id": "T1", "event_id": "Ev9", "event": {
        "type": "message", "user": "U1", "channel": "C1", "ts": "1700000000.000100", "text": "where is my parcel?"}}).encode()
    stamp = str(int(time.time()))
    signed = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": slack_signature("s", stamp, body)}
    assert (await client.post("/slack/events", data=body, headers=signed)).status == 200
    await client.app[BOT].channels["slack"].close()  # waits for the answer in the background
    return "slack:T1:C1:1700000000.000100"


async def test_a_bot_answer_the_platform_refuses_is_said_in_one_line_and_marked_undelivered(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """It was a bare traceback under "background task failed", naming no conversation, and the transcript
    showed the answer as delivered: no agent could tell that the customer got nothing."""
    client = await slack_refusing_all(bot_dir, aiohttp_client, aiohttp_server)
    cid = await slack_message(client)
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [t["undelivered"] for t in transcript["turns"] if t["role"] == "bot"] == [True]
    failed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert failed == [f"the answer to {log_tag(cid)} did not reach the customer: "
                      f"chat.postMessage: channel_not_found ({NOT_FOUND})"]
    # only a person can still answer: the agents' inbox has it, where no agent was pointed to it
    [waiting] = (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"]
    assert (waiting["conversation_id"], waiting["reason"]) == (cid, "undelivered")


async def test_a_bot_answer_the_platform_may_have_posted_is_taken_as_posted(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Slack took the answer and answered 500: the thread was handed to a person as undelivered, and the
    customer, who had the answer, got no reply to anything else they wrote until an agent came."""
    posted: list[str] = []

    async def post_message(request: web.Request) -> web.Response:
        posted.append((await request.json())["text"])
        return web.Response(status=500, text="internal error")

    client = await with_slack(bot_dir, aiohttp_client, aiohttp_server, post_message)
    cid = await slack_message(client)
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert transcript["status"] == "open" and len(posted) == 1
    assert [t["undelivered"] for t in transcript["turns"] if t["role"] == "bot"] == [False]
    assert f"the answer to {log_tag(cid)} may not have reached the customer: chat.postMessage: HTTP 500" in caplog.text


async def test_a_busy_message_the_platform_refuses_is_marked_undelivered(
        bot_dir: Path, aiohttp_client: Any, aiohttp_server: Any) -> None:
    """It was logged, and the transcript showed it as sent."""
    set_handoff(bot_dir, busy_after_seconds=0.4)
    client = await slack_refusing_all(bot_dir, aiohttp_client, aiohttp_server)
    cid = "slack:T1:C1:1700000000.000100"
    client.app[BOT].store.add_message(cid, "user", "is anyone there?", "slack")
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "slack")
    for _ in range(100):
        transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
        if any(t["role"] == "bot" and t["undelivered"] for t in transcript["turns"]):
            break
        await asyncio.sleep(0.1)
    assert [(t["text"][:17], t["undelivered"]) for t in transcript["turns"] if t["role"] == "bot"] == [
        ("Sorry for the wai", True)]


async def test_an_agent_reply_to_a_channel_this_server_does_not_serve_is_a_502(bot_dir: Path, aiohttp_client: Any) -> None:
    """No reply can reach a `bot chat` conversation's terminal: the reply was "sent" (200). Nor is the
    conversation in the agents' inbox, where it waited for good."""
    client = await aiohttp_client(create_app(bot_dir, device="cpu"))
    cid = "cli:7be0b6b7"
    client.app[BOT].store.add_message(cid, "user", "my parcel is lost", "cli")
    client.app[BOT].store.set_status(cid, "handed_off", "requested", "cli")
    response = await client.post(f"/admin/conversations/{cid}/messages", json={"agent": "Sam", "text": "Sorry, refunded."}, headers=AUTH)
    assert response.status == 502
    assert (await response.json())["error"] == ("kept in the transcript, but the customer did not get it: "
                                                "this server does not serve its channel, 'cli'")
    transcript = await (await client.get(f"/admin/conversations/{cid}", headers=AUTH)).json()
    assert [(t["text"], t["undelivered"]) for t in transcript["turns"] if t["role"] == "agent"] == [("Sorry, refunded.", True)]
    assert (await (await client.get("/admin/conversations", headers=AUTH)).json())["conversations"] == []
