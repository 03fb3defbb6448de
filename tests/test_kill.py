"""A killed server loses nothing, and SIGTERM lets the turns in flight finish.

Every server here is a real ``bot serve`` process: the command's own code (``bot.cli``) in a
process of its own, forked from a multiprocessing fork server that has imported deskbot once, so
that twenty restarts cost seconds instead of twenty imports of torch. It is SIGKILLed at a random
moment while clients chat with it; after each kill the store must pass SQLite's integrity check
and hold every message whose reply a client received, before the next server opens it again.

``python -m tests.test_kill BOT_DIR --cycles N`` (from the repository root) runs the same cycles on a trained bot folder of
your own and prints the figures as JSON (bench/ROBUSTNESS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["bot.cli", "bot.server"])
CHAOS_CONFIG: dict[str, dict[str, Any]] = {
    "server": {"limits": {"per_ip_per_minute": 0, "per_conversation_per_minute": 0, "websockets_per_ip": 0,
                          "conversations_per_ip": 0, "messages_per_ip_per_minute": 0}},
    "thresholds": {"fallbacks_before_handoff": 1_000_000},  # every message gets a stored bot reply
    "learning": {"watch_seconds": 0},
}
SLOW_ACTION = '''
import asyncio
from rasa_sdk import Action


class Slow(Action):
    def name(self):
        return "action_slow"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(2)
        dispatcher.utter_message(text="looked it up slowly")
        return []
'''

GATE = '''while not __import__("pathlib").Path({gate!r}).exists():
            await asyncio.sleep(0.05)'''


def gated(gate: Path, entered: Path) -> str:
    """SLOW_ACTION made to touch the file ``entered`` as it begins, then answer once the file ``gate`` exists."""
    enter = f"__import__('pathlib').Path({str(entered)!r}).touch()\n        "
    return SLOW_ACTION.replace("await asyncio.sleep(2)", enter + GATE.format(gate=str(gate)))


def slow_bot(tiny_demo_bot: Path, root: Path, action: str = SLOW_ACTION, timeout: float = 10,
             **config: dict[str, Any]) -> Path:
    """A copy of the tiny demo bot at ``root`` whose /track_order runs ``action`` (by default, 2 s long) within
    ``actions.timeout``, with ``config`` merged into bot.yml over CHAOS_CONFIG."""
    from tests.conftest import configured_copy

    configured_copy(tiny_demo_bot, root, **{**CHAOS_CONFIG, **config},
                    actions={"map": {"track_order": "action_slow"}, "timeout": timeout})
    shutil.rmtree(root / "actions")
    (root / "actions").mkdir()
    (root / "actions" / "slow.py").write_text(action)
    return root


def serve(root: str, port: int, log: str | None = None) -> None:
    """The child process: exactly ``bot serve ROOT --port PORT``, its log (standard error) added to the file ``log``
    where one is given."""
    if log is not None:
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)
    from bot.cli import cli

    cli(["serve", root, "--port", str(port), "--device", "cpu"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: Any
    url: str


async def start(root: Path, session: aiohttp.ClientSession, timeout: float = 120, log: Path | None = None) -> Server:
    port = free_port()
    process = CONTEXT.Process(target=serve, args=(str(root), port, None if log is None else str(log)), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"bot serve exited with {process.exitcode} before serving")
        try:
            async with session.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return Server(process, url)
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError(f"bot serve did not answer within {timeout:g}s")


@dataclass
class Received:
    conversation_id: str
    text: str
    turn_id: int | None
    reply: str


@dataclass
class Load:
    """Clients chatting with one server until it dies under them."""

    received: list[Received] = field(default_factory=list)
    cut_off: int = 0  # requests in flight when the server died
    errors: list[int] = field(default_factory=list)  # any non-200 answer

    async def client(self, session: aiohttp.ClientSession, url: str, conversation_id: str) -> None:
        for n in range(1_000_000):
            text = f"kill test {conversation_id} message {n}"
            try:
                async with session.post(f"{url}/api/chat", json={"conversation_id": conversation_id, "text": text}) as r:
                    if r.status != 200:
                        self.errors.append(r.status)
                        continue
                    body = await r.json()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.cut_off += 1
                return
            self.received.append(Received(conversation_id, text, body["turn_id"], body["reply"]))


def check_store(db_path: Path, received: list[Received]) -> list[str]:
    """What is wrong with the store after a kill: integrity problems, and received messages it lacks."""
    with sqlite3.connect(db_path) as db:
        problems = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
        problems += [f"foreign key: {row}" for row in db.execute("PRAGMA foreign_key_check")]
        turns = {turn_id: (cid, role, text) for turn_id, cid, role, text in
                 db.execute("SELECT id, conversation_id, role, text FROM turns WHERE conversation_id LIKE 'kill-%'")}
    asked = {(cid, text) for cid, role, text in turns.values() if role == "user"}
    for r in received:  # a reply without a turn id is a silent one (a human has the conversation)
        replied = r.turn_id is None or turns.get(r.turn_id) == (r.conversation_id, "bot", r.reply)
        if (r.conversation_id, r.text) not in asked or not replied:
            problems.append(f"lost: {r.text!r}")
    return problems


async def kill_cycles(root: Path, cycles: int, rng: random.Random, clients: int = 6,
                      max_load_seconds: float = 1.2) -> dict[str, Any]:
    """Start, load, SIGKILL at a random moment, check the store; ``cycles`` times, then start once more."""
    figures: dict[str, Any] = {"cycles": 0, "received": 0, "cut_off": 0, "lost": 0, "errors": 0, "problems": []}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for cycle in range(cycles):
            server = await start(root, session)
            load = Load()
            tasks = [asyncio.create_task(load.client(session, server.url, f"kill-{cycle}-{c}")) for c in range(clients)]
            await asyncio.sleep(rng.uniform(0.1, max_load_seconds))
            server.process.kill()  # SIGKILL: no handler runs, nothing is flushed
            await asyncio.gather(*tasks)
            server.process.join(10)
            assert server.process.exitcode == -9, server.process.exitcode
            problems = check_store(root / "dialogues.db", load.received)
            figures["cycles"] += 1
            figures["received"] += len(load.received)
            figures["cut_off"] += load.cut_off
            figures["errors"] += len(load.errors)
            figures["lost"] += sum(p.startswith("lost") for p in problems)
            figures["problems"] += problems
        server = await start(root, session)  # the store opens cleanly after the last kill too
        server.process.terminate()
        server.process.join(30)
        figures["final_exit_code"] = server.process.exitcode
    return figures


def test_sigkill_under_load_loses_no_answered_message(tiny_demo_bot: Path, tmp_path: Path) -> None:
    from tests.conftest import configured_copy

    root = configured_copy(tiny_demo_bot, tmp_path / "chaos", **CHAOS_CONFIG)
    seed = random.randrange(1 << 30)
    figures = asyncio.run(kill_cycles(root, 20, random.Random(seed)))
    assert figures["problems"] == [], (seed, figures["problems"][:5])
    assert figures["cycles"] == 20 and figures["lost"] == 0 and figures["errors"] == 0
    assert figures["received"] >= 40 and figures["cut_off"] >= 20, figures  # it really was killed under load
    assert figures["final_exit_code"] == 0
    never_sent = Received("kill-0-0", "never sent", 10**9, "no reply")
    assert check_store(root / "dialogues.db", [never_sent]) == ["lost: 'never sent'"]  # the check can fail


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_stop_while_starting_says_so(stop: signal.Signals, exit_code: int, capfd: pytest.CaptureFixture[str]) -> None:
    """A server stopped as it started (the model's load outlasting a health check's wait) left no line at all."""
    from bot.cli import stop_while_starting

    with pytest.raises(SystemExit) as stopped:
        stop_while_starting(stop, None)
    assert stopped.value.code == exit_code
    assert capfd.readouterr().err.startswith(f"deskbot stopped by {stop.name} while starting, before it served")


STOPPED_AS_IT_IMPORTS = """
import os, signal, sys


class Stop:  # the signal the moment bot.cli imports what it needs, which takes seconds
    def find_spec(self, name, path=None, target=None):
        if name == "bot.project":
            os.kill(os.getpid(), signal.{stop})


sys.meta_path.insert(0, Stop())
sys.argv = ["bot", "serve", "mybot"]
import bot.cli
"""


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_as_bot_serve_imports_deskbot_says_so(tmp_path: Path, stop: signal.Signals, exit_code: int) -> None:
    """SIGTERM in the seconds `bot serve` spends importing deskbot, before its handler was set, ended it with 143
    and not a word; Ctrl-C (SIGINT) with a page of traceback from wherever the imports were."""
    import subprocess
    import sys

    from tests.conftest import REPO

    stopped = subprocess.run([sys.executable, "-c", STOPPED_AS_IT_IMPORTS.replace("{stop}", stop.name)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert stopped.returncode == exit_code, stopped.stderr
    assert stopped.stderr == f"deskbot stopped by {stop.name} while starting, before it served" + (
        "" if stop == signal.SIGINT else " (a health check or a stop that waited less than its start, which loads the "
        "model?)") + "\n", stopped.stderr


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGHUP, 129)])
async def test_sigterm_finishes_the_turns_in_flight_then_closes_the_store(tiny_demo_bot: Path, tmp_path: Path,
                                                                          stop: signal.Signals, exit_code: int) -> None:
    """SIGHUP (the terminal closed, a log rotation's kill -HUP) killed the server mid-turn, without a word: it stops
    as on SIGTERM, with an exit code that says it was not asked to (a service manager restarts it). The answers of
    the turns in flight say their connections close, as the server closes them."""
    root = slow_bot(tiny_demo_bot, tmp_path / "graceful")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await start(root, session)

        async def ask(conversation_id: str) -> tuple[int, str | None, dict[str, Any]]:
            body = {"conversation_id": conversation_id, "text": "/track_order"}
            async with session.post(f"{server.url}/api/chat", json=body) as response:
                return response.status, response.headers.get("Connection"), await response.json()

        in_flight = [asyncio.create_task(ask(f"kill-term-{n}")) for n in range(3)]
        await asyncio.sleep(0.7)  # the three turns are inside the 2 s action now
        os.kill(server.process.pid, stop)
        await asyncio.sleep(0.3)
        with pytest.raises(aiohttp.ClientConnectorError):  # the port is closed to new requests
            async with aiohttp.ClientSession() as late:
                await late.get(f"{server.url}/healthz")
        answers = await asyncio.gather(*in_flight)
    # each said its connection closes: kept alive, a proxy could send the next request on it as it closed (a 502)
    assert [(status, connection, body["reply"]) for status, connection, body in answers] == \
        [(200, "close", "looked it up slowly")] * 3
    server.process.join(30)
    assert server.process.exitcode == exit_code
    assert not (root / "dialogues.db-wal").exists()  # the store was closed, its log checkpointed
    with sqlite3.connect(root / "dialogues.db") as db:
        replies = db.execute("SELECT count(*) FROM turns WHERE role = 'bot' AND text = 'looked it up slowly'").fetchone()
    assert replies == (3,)


async def test_with_drain_seconds_sigterm_goes_on_serving_first_and_says_it_is_stopping(tiny_demo_bot: Path,
                                                                                        tmp_path: Path) -> None:
    """Stopped at once, a server reset the requests a load balancer sent on the kept-alive connections it
    reused as the port closed (nginx answered those POSTs with 502)."""
    from tests.conftest import configured_copy

    root = configured_copy(tiny_demo_bot, tmp_path / "drain", **{**CHAOS_CONFIG, "server": {
        **CHAOS_CONFIG["server"], "drain_seconds": 3}})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await start(root, session)
        async with session.get(f"{server.url}/healthz") as ready:
            assert ready.status == 200 and ready.headers.get("Connection") != "close"
        started = time.monotonic()
        server.process.terminate()  # SIGTERM
        await asyncio.sleep(0.5)
        async with session.get(f"{server.url}/healthz") as stopping:  # the port still open, saying it stops
            assert stopping.status == 503 and stopping.headers["Connection"] == "close"
            assert "stopping" in (await stopping.json())["error"]
        body = {"conversation_id": "drain", "text": "where is my order"}
        async with session.post(f"{server.url}/api/chat", json=body) as answered:  # customers still answered
            assert answered.status == 200 and answered.headers["Connection"] == "close"
        # a new socket is refused, as a load balancer reads it: taken, it was closed (1012) as the port closed
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{server.url}/api/ws")
        assert refused.value.status == 503 and refused.value.headers is not None
        assert refused.value.headers["Retry-After"] == "1"
        await asyncio.to_thread(server.process.join, 30)
        took = time.monotonic() - started
    assert server.process.exitcode == 0
    assert 3 <= took < 8, took


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_with_nothing_in_flight_says_which_signal_stopped_it(tiny_demo_bot: Path, tmp_path: Path,
                                                                         stop: signal.Signals) -> None:
    """With no turn in flight and no drain_seconds, nothing was logged between the last request and "deskbot
    stopped": a stop asked for could not be told from a crash by the log's last lines."""
    from tests.conftest import configured_copy

    root = configured_copy(tiny_demo_bot, tmp_path / "quiet", **CHAOS_CONFIG)
    log = tmp_path / "quiet.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await start(root, session, log=log)
        os.kill(server.process.pid, stop)
        await asyncio.to_thread(server.process.join, 30)
    assert server.process.exitcode == 0
    said = log.read_text()
    stopping = f"INFO deskbot: {stop.name}: deskbot stopping: the port closes, the turns in flight finish"
    assert stopping in said and said.index(stopping) < said.index("deskbot stopped"), said


@pytest.mark.parametrize(("first", "again"), [(signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT),
                                              (signal.SIGTERM, signal.SIGHUP), (signal.SIGINT, signal.SIGHUP)])
async def test_a_signal_again_while_the_turns_finish_is_said_and_the_stop_goes_on(tiny_demo_bot: Path, tmp_path: Path,
                                                                                  first: signal.Signals,
                                                                                  again: signal.Signals) -> None:
    """Ctrl-C pressed twice, or a second SIGTERM, once the stop had begun broke it off: the turn in flight cut
    unanswered, the store left open, exit status 1 after a page of asyncio's tracebacks and no "deskbot stopped"; so
    did the end of server.drain_seconds coming while the turns finished. It is said, and the stop goes on. A SIGHUP
    meanwhile (a log rotation's) turned the stop's exit status into 129, which a service manager took for a fault."""
    gate, entered = tmp_path / "open", tmp_path / "entered"  # /track_order enters, then answers once the gate opens
    root = slow_bot(tiny_demo_bot, tmp_path / "again", gated(gate, entered),
                    server={**CHAOS_CONFIG["server"], "drain_seconds": 1})
    log = tmp_path / "again.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        server = await start(root, session, log=log)
        asked = asyncio.create_task(session.post(f"{server.url}/api/chat",
                                                 json={"conversation_id": "asked-twice", "text": "/track_order"}))
        while not entered.exists():
            assert server.process.is_alive()
            await asyncio.sleep(0.05)
        os.kill(server.process.pid, first)
        if first == signal.SIGTERM:
            await said_in(log, "SIGTERM: stopping in 1 s", server.process)  # the drain begins
            os.kill(server.process.pid, again)  # the stop begins at once
        await said_in(log, "stopping: finishing 1 turn in flight", server.process)
        os.kill(server.process.pid, again)
        await said_in(log, f"{again.name}: deskbot is stopping already", server.process)
        await asyncio.sleep(1.5)  # past the drain's end, the turn still waiting at its gate
        gate.touch()
        async with await asyncio.wait_for(asked, 30) as answered:
            assert answered.status == 200, await answered.text()
            assert (await answered.json())["reply"] == "looked it up slowly"
        await asyncio.to_thread(server.process.join, 30)
    assert server.process.exitcode == 0
    said = log.read_text()
    assert said.rstrip().endswith("deskbot stopped") and "Traceback" not in said, said
    assert not (root / "dialogues.db-wal").exists()  # the store was closed


async def said_in(log: Path, line: str, process: Any, timeout: float = 30) -> None:
    """Wait until the server's ``log`` holds ``line``; fail if it does not within ``timeout`` s, or the server ended."""
    deadline = time.monotonic() + timeout
    while line not in (said := log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and process.is_alive(), said
        await asyncio.sleep(0.05)


async def test_sigterm_answers_a_web_message_whose_claim_waits_for_the_store_lock(tiny_demo_bot: Path,
                                                                                   tmp_path: Path) -> None:
    """A message whose claim (its ``message_id``, which the widget sends) waited for another process holding the
    store locked was not yet a turn: SIGTERM did not wait for it, and its connection was cut without an answer while
    the stop let its claim through a moment later. The stop waits for it as for any turn in flight."""
    from tests.conftest import configured_copy

    server_config = {**CHAOS_CONFIG["server"], "shutdown_seconds": 20}
    root = configured_copy(tiny_demo_bot, tmp_path / "locked", **{**CHAOS_CONFIG, "server": server_config})
    log = tmp_path / "locked.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        server = await start(root, session, log=log)
        holder = sqlite3.connect(root / "dialogues.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock: a sqlite3 shell left in a transaction
        body = {"conversation_id": "locked-at-stop", "text": "where is my order", "message_id": "m-locked-1"}
        asked = asyncio.create_task(session.post(f"{server.url}/api/chat", json=body))
        while "deskbot_store_lock_waiting_seconds 0.0" in await (await session.get(f"{server.url}/metrics")).text():
            assert not asked.done()
            await asyncio.sleep(0.05)
        server.process.terminate()
        await said_in(log, "stopping: finishing 1 turn in flight", server.process)
        holder.execute("ROLLBACK")
        holder.close()
        async with await asyncio.wait_for(asked, 30) as answered:
            assert answered.status == 200, await answered.text()
            reply = await answered.json()
        await asyncio.to_thread(server.process.join, 30)
    assert server.process.exitcode == 0
    with sqlite3.connect(root / "dialogues.db") as db:
        stored = db.execute("SELECT role, text FROM turns WHERE conversation_id = 'locked-at-stop' ORDER BY id").fetchall()
    assert stored == [("user", "where is my order"), ("bot", reply["reply"])]


async def test_a_web_message_still_waiting_for_the_store_lock_at_the_end_of_a_stop_is_answered_503(
        tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A message whose turn still waited for another process holding the store locked when server.shutdown_seconds
    ran out had its connection cut without a word (aiohttp cancels the request a moment later), over HTTP and on a
    socket alike. It is answered just before: a 503 ``stopping`` with Retry-After, or a socket's error frame with
    that code (``busy`` had the widget tell its customer the bot was busy), and the message sent again with its
    message_id to another server on the store is answered there."""
    from tests.conftest import configured_copy

    server_config = {**CHAOS_CONFIG["server"], "shutdown_seconds": 3}
    root = configured_copy(tiny_demo_bot, tmp_path / "stopping", **{**CHAOS_CONFIG, "server": server_config})
    log = tmp_path / "stopping.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        server = await start(root, session, log=log)
        ws = await session.ws_connect(f"{server.url}/api/ws")
        holder = sqlite3.connect(root / "dialogues.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock: a sqlite3 shell left in a transaction
        body = {"conversation_id": "cut-at-stop", "text": "where is my order", "message_id": "m-http"}
        asked = asyncio.create_task(session.post(f"{server.url}/api/chat", json=body))
        await ws.send_json({"type": "message", "conversation_id": "cut-on-socket", "text": "hello",
                            "message_id": "m-socket"})
        while "deskbot_store_lock_waiting_seconds 0.0" in await (await session.get(f"{server.url}/metrics")).text():
            await asyncio.sleep(0.05)
        server.process.terminate()
        await said_in(log, "stopping: finishing 2 turns in flight", server.process)
        async with await asyncio.wait_for(asked, 30) as answered:
            assert answered.status == 503, await answered.text()
            assert answered.headers["Retry-After"] == "1"
            refused = await answered.json()
        assert refused["code"] == "stopping" and "send it again, with the same message_id" in refused["error"]
        frame = await ws.receive_json(timeout=30)
        assert frame == {"type": "error", "error": refused["error"], "code": "stopping", "retry_after": 1,
                         "request": "message", "message_id": "m-socket"}
        holder.execute("ROLLBACK")
        holder.close()
        await ws.close()
        await asyncio.to_thread(server.process.join, 60)
        assert server.process.exitcode == 0
        other = await start(root, session)
        async with session.post(f"{other.url}/api/chat", json=body) as again:
            assert again.status == 200, await again.text()
            reply = await again.json()
        other.process.terminate()
        await asyncio.to_thread(other.process.join, 60)
    with sqlite3.connect(root / "dialogues.db") as db:
        stored = db.execute("SELECT role, text FROM turns WHERE conversation_id = 'cut-at-stop' ORDER BY id").fetchall()
    assert stored == [("user", "where is my order"), ("bot", reply["reply"])]


async def test_sigterm_answers_the_socket_messages_queued_behind_a_turn_stopping_before_closing_the_socket(
        tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Messages a socket's client sent while the server answered an earlier one on it wait unread behind that turn: a
    server stopping answered the turn, then closed the socket (1012) without a word for them, so that a client other
    than the widget (which sends them again on its own) lost them. Each is answered ``stopping``, with its
    ``retry_after``, as one sent once the stop began is, before the socket closes."""
    gate, entered = tmp_path / "open", tmp_path / "entered"  # /track_order enters, then answers once the gate opens
    root = slow_bot(tiny_demo_bot, tmp_path / "queued", gated(gate, entered))
    log = tmp_path / "queued.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        server = await start(root, session, log=log)
        ws = await session.ws_connect(f"{server.url}/api/ws")
        said = [{"type": "message", "conversation_id": "queued-at-stop", "text": text, "message_id": f"m-{n}"}
                for n, text in enumerate(["/track_order", "hello", "你好"])]
        await ws.send_json(said[0])
        while not entered.exists():
            assert server.process.is_alive()
            await asyncio.sleep(0.05)
        for frame in said[1:]:  # queued behind the turn, on the same socket
            await ws.send_json(frame)
        server.process.terminate()
        await said_in(log, "stopping: finishing 1 turn in flight", server.process)
        gate.touch()
        answered = [await ws.receive(timeout=30) for _ in range(4)]
        await asyncio.to_thread(server.process.join, 30)
    assert server.process.exitcode == 0
    assert [message.type for message in answered] == [WSMsgType.TEXT] * 3 + [WSMsgType.CLOSE], answered
    reply, *refused = (json.loads(message.data) for message in answered[:3])
    assert reply["type"] == "reply" and reply["reply"] == "looked it up slowly"
    assert [(frame["type"], frame.get("code"), frame.get("retry_after"), frame.get("message_id"))
            for frame in refused] == [("error", "stopping", 1, "m-1"), ("error", "stopping", 1, "m-2")], refused
    assert answered[3].data == WSCloseCode.SERVICE_RESTART
    with sqlite3.connect(root / "dialogues.db") as db:  # left to the server they are sent again to
        stored = db.execute("SELECT text FROM turns WHERE role = 'user' AND conversation_id = ?",
                            ["queued-at-stop"]).fetchall()
    assert stored == [("/track_order",)]


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """When the server closed ``sock``, in seconds from now, writing ``trickle`` to it every 0.2 s meanwhile (a
    slowloris client's next header line); None if it was still open after ``seconds``."""
    sock.settimeout(0.2)
    started = time.monotonic()
    while (took := time.monotonic() - started) < seconds:
        try:
            sock.sendall(trickle)
            if sock.recv(1024) == b"":
                return took
        except TimeoutError:
            continue
        except OSError:  # reset
            return took
    return None


async def test_an_idle_connection_or_one_sending_its_headers_slowly_is_closed_after_keepalive_seconds(
        tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Each open connection holds one of the files the process may open: one that sent nothing, or its headers a
    line at a time, was held open for the whole of aiohttp's default, whatever the server's settings."""
    from tests.conftest import configured_copy

    root = configured_copy(tiny_demo_bot, tmp_path / "keepalive", **{**CHAOS_CONFIG, "server": {
        **CHAOS_CONFIG["server"], "keepalive_seconds": 1.5}})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await start(root, session)
        address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        try:
            with socket.create_connection(address) as idle, socket.create_connection(address) as slow:
                slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                took = await asyncio.gather(asyncio.to_thread(closed_within, idle, 10),
                                            asyncio.to_thread(closed_within, slow, 10, b"X-Slow: 1\r\n"))
        finally:
            server.process.kill()
    assert all(seconds is not None and 1 <= seconds < 4 for seconds in took), took


async def test_a_turn_that_outlasts_shutdown_seconds_holds_up_sigterm_that_long_only(tiny_demo_bot: Path,
                                                                                     tmp_path: Path) -> None:
    """aiohttp waited shutdown_seconds for the request, then as long again after cancelling it: twice the
    setting (three times with a Slack answer in flight, which the shutdown hook waited for first)."""
    root = slow_bot(tiny_demo_bot, tmp_path / "stuck", SLOW_ACTION.replace("asyncio.sleep(2)", "asyncio.sleep(60)"),
                    timeout=120, server={**CHAOS_CONFIG["server"], "shutdown_seconds": 6})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
        server = await start(root, session)
        body = {"conversation_id": "stuck", "text": "/track_order"}
        in_flight = asyncio.create_task(session.post(f"{server.url}/api/chat", json=body))
        await asyncio.sleep(1.0)  # inside the minute-long action now
        started = time.monotonic()
        server.process.terminate()
        await asyncio.to_thread(server.process.join, 60)
        took = time.monotonic() - started
        with contextlib.suppress(aiohttp.ClientError):
            (await in_flight).release()
    assert server.process.exitcode == 0
    assert 6 <= took < 11.5, took  # the turn's 6 s, its response's grace and the exit (it took 13.7)


async def test_sockets_that_never_answer_do_not_hold_up_sigterm(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """A laptop shut mid-chat leaves its socket open with nobody to answer the close: the server closes all
    of its sockets at once and waits briefly, instead of the whole shutdown time for each."""
    from tests.conftest import configured_copy

    server_config = {**CHAOS_CONFIG["server"], "shutdown_seconds": 5}
    root = configured_copy(tiny_demo_bot, tmp_path / "deaf", **{**CHAOS_CONFIG, "server": server_config})
    async with aiohttp.ClientSession() as session:
        server = await start(root, session)
        port = int(server.url.rsplit(":", 1)[1])
        silent = []
        for n in range(4):  # a raw handshake, then never a byte read again; two of them hear a conversation
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert b" 101 " in await reader.readline()
            if n < 2:  # a masked text frame, as browsers send: {"type":"join","conversation_id":"deaf"}
                payload = json.dumps({"type": "join", "conversation_id": f"deaf-{n}"}).encode()
                writer.write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            silent.append(writer)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        server.process.terminate()
        await asyncio.to_thread(server.process.join, 60)
        took = time.monotonic() - started
        for writer in silent:
            writer.close()
    assert server.process.exitcode == 0
    assert took < 5, took  # no turn in flight: nothing to wait the shutdown's 5 s for (it took twice that)


@dataclass
class SlowSlack:
    """A bot whose /track_order takes 2 s, on a local stand-in for Slack's chat.postMessage and auth.test."""

    root: Path
    secret: str
    posts: list[dict[str, Any]]
    hung: list[dict[str, Any]]  # posts the stand-in never answers

    @property
    def log(self) -> Path:
        """The file its servers' logs go to (:meth:`start`)."""
        return self.root.with_name(f"{self.root.name}.log")

    async def start(self, session: aiohttp.ClientSession) -> Server:
        """A ``bot serve`` of it, its log added to :attr:`log`."""
        return await start(self.root, session, log=self.log)

    def token_checked(self) -> None:
        """Assert that its servers' log says Slack took the bot token at start (``auth.test``), and no start check
        that failed: Slack refusing the token, or out of reach."""
        said = self.log.read_text()
        assert "Slack: the bot token is the bot user deskbot (UBOT) of workspace Shop (T1)" in said, said
        assert "Slack refused the bot token" not in said and "Slack could not be reached" not in said, said

    def event(self, number: int) -> tuple[bytes, dict[str, str]]:
        """Direct message ``number`` asking for /track_order, signed now: its body and headers."""
        from bot.channels.slack import slack_signature

        event = {"type": "event_callback", "team_id": "T1", "event_id": f"Ev{number}",
                 "event": {"type": "message", "channel_type": "channel", "user": "U1", "channel": "C1",
                           "ts": f"1700000000.00010{number}", "text": "/track_order"}}
        body = json.dumps(event).encode()
        timestamp = str(int(time.time()))
        return body, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
                      "X-Slack-Signature": slack_signature(self.secret, timestamp, body)}

    async def answers(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time for a second answer, which must not come


async def slow_slack(tiny_demo_bot: Path, root: Path, aiohttp_server: Any, action: str = SLOW_ACTION,
                     hang: int = 0) -> SlowSlack:
    """``hang``: how many of the first posts the stand-in holds without an answer."""
    from aiohttp import web

    from tests.test_slack import slack_auth_test

    posts: list[dict[str, Any]] = []
    hung: list[dict[str, Any]] = []

    async def post_message(request: web.Request) -> web.Response:  # Slack's chat.postMessage, locally
        if len(hung) < hang:
            hung.append(await request.json())
            await asyncio.Event().wait()
        posts.append(await request.json())
        return web.json_response({"ok": True, "ts": "1700000009.000100"})

    slack = {"signing_secret": "kill-secret", "bot_token": "xoxb-kill"}

    async def auth_test(request: web.Request) -> web.Response:  # which bot serve asks at start
        return slack_auth_test(request, slack["bot_token"])

    api = web.Application()
    api.router.add_post("/api/chat.postMessage", post_message)
    api.router.add_post("/api/auth.test", auth_test)
    slack["api_url"] = str((await aiohttp_server(api)).make_url("/api/"))
    slow_bot(tiny_demo_bot, root, action, channels={"slack": slack})
    return SlowSlack(root, slack["signing_secret"], posts, hung)


async def test_a_slack_message_acknowledged_before_a_kill_is_answered_by_the_next_server(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_server: Any) -> None:
    """Slack never sends an acknowledged event again, so the store keeps it until it is answered, and its key
    for Slack's retry window after: a retry reaching the next server was answered a second time."""
    bot = await slow_slack(tiny_demo_bot, tmp_path / "kept", aiohttp_server)
    body, headers = bot.event(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await bot.start(session)
        async with session.post(f"{server.url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200  # acknowledged: Slack will not send it again
        await asyncio.sleep(0.7)  # the turn is inside the 2 s action
        server.process.kill()
        server.process.join(10)
        assert bot.posts == []
        server = await bot.start(session)
        await bot.answers(1)
        # Slack's retry of an event whose acknowledgement a killed server never sent reaches the next one
        retry = {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        async with session.post(f"{server.url}/slack/events", data=body, headers=retry) as response:
            assert response.status == 200
        await asyncio.sleep(0.5)
        server.process.terminate()
        server.process.join(30)
    assert [(p["channel"], p["thread_ts"], p["text"]) for p in bot.posts] == [("C1", "1700000000.000101", "looked it up slowly")]
    bot.token_checked()
    with sqlite3.connect(bot.root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM pending WHERE answered IS NULL").fetchone() == (0,)
        assert db.execute("SELECT role, text FROM turns WHERE conversation_id = 'slack:T1:C1:1700000000.000101'"
                          ).fetchall() == [("user", "/track_order"), ("bot", "looked it up slowly")]


async def test_an_answer_killed_on_its_way_to_slack_is_sent_by_the_next_server(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_server: Any) -> None:
    """The kept message was settled when its answer was logged: a server killed while Slack had not taken the
    answer yet (a slow or rate-limited chat.postMessage) lost it, and the transcript said it was sent."""
    bot = await slow_slack(tiny_demo_bot, tmp_path / "sending", aiohttp_server, hang=1)
    body, headers = bot.event(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server = await bot.start(session)
        async with session.post(f"{server.url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200
        deadline = time.monotonic() + 20
        while not bot.hung and time.monotonic() < deadline:  # the answer is on its way
            await asyncio.sleep(0.05)
        assert [p["text"] for p in bot.hung] == ["looked it up slowly"]
        server.process.kill()
        server.process.join(10)
        server = await bot.start(session)
        await bot.answers(1)
        server.process.terminate()
        server.process.join(30)
    assert [(p["thread_ts"], p["text"]) for p in bot.posts] == [("1700000000.000101", "looked it up slowly")]
    bot.token_checked()
    with sqlite3.connect(bot.root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM pending WHERE answered IS NULL").fetchone() == (0,)
        # sent as logged, not answered a second time
        assert db.execute("SELECT role, text, undelivered FROM turns WHERE conversation_id = "
                          "'slack:T1:C1:1700000000.000101'").fetchall() == [("user", "/track_order", None),
                                                                             ("bot", "looked it up slowly", None)]


async def test_two_servers_on_one_store_answer_each_kept_message_once(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_server: Any) -> None:
    """A server started while another serves the same store (a blue/green pair, or a restart overlapping the
    old process) answered at start the messages the other was still answering: two answers each. It leaves
    them to their server while that one lives, and answers them once it dies."""
    gate = tmp_path / "open"  # /track_order answers once this file exists
    bot = await slow_slack(tiny_demo_bot, tmp_path / "pair", aiohttp_server,
                           SLOW_ACTION.replace("await asyncio.sleep(2)", GATE.format(gate=str(gate))))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        blue = await bot.start(session)
        body, headers = bot.event(1)
        async with session.post(f"{blue.url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200
        green = await bot.start(session)  # while blue's turn waits at the gate
        await asyncio.sleep(1)
        gate.touch()
        await bot.answers(1)
        assert len(bot.posts) == 1, bot.posts
        gate.unlink()
        body, headers = bot.event(2)
        async with session.post(f"{blue.url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200
        await asyncio.sleep(0.7)
        blue.process.kill()
        blue.process.join(10)
        gate.touch()
        await bot.answers(2)  # green, still serving, takes over what blue left
        green.process.terminate()
        green.process.join(30)
    assert sorted(p["thread_ts"] for p in bot.posts) == ["1700000000.000101", "1700000000.000102"]
    bot.token_checked()
    with sqlite3.connect(bot.root / "dialogues.db") as db:
        assert db.execute("SELECT count(*) FROM pending WHERE answered IS NULL").fetchone() == (0,)


def main() -> None:
    parser = argparse.ArgumentParser(description="SIGKILL `bot serve` under load and check the store each time.")
    parser.add_argument("bot_dir", type=Path, help="a trained bot folder (it is copied; the original is not touched)")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import tempfile

    from tests.conftest import configured_copy

    with tempfile.TemporaryDirectory() as tmp:
        root = configured_copy(args.bot_dir, Path(tmp) / "bot", **CHAOS_CONFIG)
        figures = asyncio.run(kill_cycles(root, args.cycles, random.Random(args.seed)))
    figures["problems"] = figures["problems"][:20]
    print(json.dumps({"command": "kill", "seed": args.seed, **figures}))


if __name__ == "__main__":
    main()
