"""Shared fixtures: a tiny random BERT for fast tests, and trained bot folders.

Unit tests use a two-layer, 32-wide BERT built here with the real MiniLM tokenizer: it trains in
seconds and exercises every code path. The slow tests fine-tune the real packaged model.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bot.nlu import NLU

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _one_core_per_worker() -> None:
    """Under `make test` (pytest-xdist, a worker per core) each worker keeps to a core of its own, and so do
    the servers it starts and the threads torch starts: two workers' torch threads, each spread over every
    core, spun against each other and trained the same model several times slower."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, …
    if worker and hasattr(os, "sched_setaffinity"):  # Linux
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


_one_core_per_worker()

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bot" / "demo"


def make_tiny_bert(folder: Path, hidden_size: int = 32) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved as a Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from finetune.models import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """Let each test's aiohttp application, and the model it loaded, go when the test ends.

    aiohttp caches each handler's middleware chain in a module-level LRU cache (1,024 entries) keyed
    by the handler and its application, so an application that has served one request stays
    reachable from it. A server has one application and never notices; the suite builds one per test,
    and each kept its model: about 600 MB a test with the real multilingual demo bot, 17 GB at the
    suite's peak.
    """
    yield
    from aiohttp import web_app

    cache = getattr(web_app, "_cached_build_middleware", None)
    if cache is not None:
        cache.cache_clear()


@pytest.fixture(autouse=True)
def _stop_signals_as_python_sets_them() -> Iterator[None]:
    """Each test starts with Python's own handlers of the stop signals (Ctrl-C raises KeyboardInterrupt, SIGTERM and
    SIGHUP stop the process) and leaves them as it found them: an in-process `bot serve` whose start was refused left
    its start-up handlers set (status 130), and a server's event loop closed in a fixture its own, which take the
    signal without a word, so that the later tests of the worker that send SIGINT or SIGTERM to a bot retrain, train or
    rollback saw another status or none."""
    import signal

    python_sets = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                   signal.SIGHUP: signal.SIG_DFL}
    found = {stop: signal.signal(stop, handler) for stop, handler in python_sets.items()}
    yield
    for stop, handler in found.items():
        if handler is not None:
            signal.signal(stop, handler)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def copy_bot(source: Path, dest: Path, base_model: str | None = None, epochs: float | None = None) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("models", "*.db*", "*.sqlite", "__pycache__"))
    if base_model or epochs:
        import yaml

        config = yaml.safe_load((dest / "bot.yml").read_text())
        model = config.setdefault("model", {})
        if base_model:
            model["base"] = base_model
        if epochs:
            model["epochs"] = epochs
        (dest / "bot.yml").write_text(yaml.safe_dump(config))
    return dest


@pytest.fixture(scope="session")
def tiny_demo_bot(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The demo bot trained on the tiny BERT (fast; its answers are mostly fallbacks)."""
    from bot.project import load_project
    from bot.training import train_project

    root = copy_bot(DEMO, tmp_path_factory.mktemp("bots") / "tiny-demo", str(tiny_model), epochs=1)
    train_project(load_project(root), device="cpu", progress=False)
    return root


@pytest.fixture(scope="session")
def real_demo_bot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bot fine-tuned from the real packaged multilingual-e5-small, briefly: enough to answer its
    intents in English and Chinese."""
    from bot.project import load_project
    from bot.training import train_project

    root = copy_bot(DEMO, tmp_path_factory.mktemp("bots") / "demo", epochs=2)
    train_project(load_project(root), device="cpu", progress=False)
    return root


@pytest.fixture(scope="session")
def web_demo_bot(tmp_path_factory: pytest.TempPathFactory, tiny_demo_bot: Path) -> Iterator[SimpleNamespace]:
    """The tiny demo bot set up for the web channel and widget tests, in its own folder and store.

    It has an admin token, an agent (Kim) with a token of their own, and thresholds no prediction of the tiny model reaches: every typed
    message gets the fallback (with buttons), while a button payload such as
    ``/check_refund_policy`` still selects its intent's template. One extra origin may embed the
    widget: a loopback port bound here, so that a test can serve a customer's page from it.
    """
    import socket

    import yaml

    shop_socket = socket.create_server(("127.0.0.1", 0))
    embed_origin = f"http://localhost:{shop_socket.getsockname()[1]}"
    root = tmp_path_factory.mktemp("bots") / "web-demo"
    shutil.copytree(tiny_demo_bot, root, ignore=shutil.ignore_patterns("*.db*"))
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["thresholds"] = {"intent": 1.0, "retrieval": 1.0, "fallbacks_before_handoff": 100}
    config.setdefault("server", {})["admin_token"] = "web-admin-token"
    # agents with tokens of their own: Kim, who leads, granted the figures too
    config["server"]["agents"] = {"Kim": {"token": "kim-own-token", "grants": ["stats"]}, "Lee": {"token": "lee-own-token"}}
    # Every page of the widget tests comes from one loopback address: a module's hundreds of page loads, messages and
    # votes a minute are no customer's flood, and past the per-address limit the last tests failed for a 429.
    # Its messages, conversations opened and handed to a person too: hundreds and dozens, from that one address, and
    # the connections of every browser context the module has open, each kept alive as long as its context.
    config["server"]["limits"] = {"per_ip_per_minute": 0, "handoffs_per_ip": 0, "conversations_per_ip": 0,
                                  "messages_per_ip_per_minute": 0, "connections_per_ip": 0}
    config.setdefault("channels", {}).setdefault("web", {})["origins"] = [embed_origin]
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    yield SimpleNamespace(root=root, admin_token="web-admin-token", agent_token="kim-own-token", embed_origin=embed_origin, shop_socket=shop_socket)
    shop_socket.close()


SMALL_INTENTS = ["cancel_order", "contact_human_agent", "get_refund", "track_order"]


def make_small_bot(dest: Path, base_model: str, per_intent: int = 15, **config: object) -> Path:
    """Four of the demo's intents with ``per_intent`` examples each, their responses and history,
    the demo's order action, and ``config`` merged into bot.yml (one level deep)."""
    import json

    import yaml

    from bot.project import RESERVED_PAYLOADS

    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns("models", "*.db*", "*.sqlite", "__pycache__"))
    nlu = yaml.safe_load((dest / "nlu.yml").read_text())
    kept = []
    for item in nlu["nlu"]:
        if "intent" not in item:
            kept.append(item)
        elif item["intent"] in SMALL_INTENTS:
            lines = [line for line in item["examples"].splitlines() if line.strip()][:per_intent]
            kept.append({"intent": item["intent"], "examples": "\n".join(lines) + "\n"})
    (dest / "nlu.yml").write_text(yaml.safe_dump({"version": "3.1", "nlu": kept}, sort_keys=False))
    responses = yaml.safe_load((dest / "responses.yml").read_text())
    responses["responses"] = {k: v for k, v in responses["responses"].items() if k in SMALL_INTENTS}
    for variants in responses["responses"].values():  # a button to an intent the small bot lacks would not load
        for variant in variants:
            if isinstance(variant, dict) and "buttons" in variant:
                variant["buttons"] = [b for b in variant["buttons"]
                                      if not b["payload"].startswith("/") or b["payload"][1:] in SMALL_INTENTS
                                      or b["payload"] in RESERVED_PAYLOADS]
    (dest / "responses.yml").write_text(yaml.safe_dump(responses, sort_keys=False, allow_unicode=True))
    history = [line for line in (dest / "history.jsonl").read_text().splitlines()
               if line.strip() and json.loads(line).get("intent") in SMALL_INTENTS]
    (dest / "history.jsonl").write_text("\n".join(history[:20]) + "\n")
    bot_config = yaml.safe_load((dest / "bot.yml").read_text())
    bot_config["language"] = "en"  # its tests speak English, and its slots are theirs alone
    bot_config["thresholds"]["intent"] = "auto"  # calibrated, as a shop's bot has it by default (the demo fixes its own)
    fallback = bot_config["fallback"]
    fallback["titles"] = {k: v for k, v in fallback["titles"].items() if k in SMALL_INTENTS}
    fallback["exclude"] = [intent for intent in fallback["exclude"] if intent in SMALL_INTENTS]
    bot_config.setdefault("model", {})["base"] = base_model
    for section, values in config.items():
        bot_config.setdefault(section, {}).update(values)  # type: ignore[call-overload]
    (dest / "bot.yml").write_text(yaml.safe_dump(bot_config, allow_unicode=True))
    return dest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Training a tiny model on one thread: on a shared 2-core machine two threads spin against the
    other processes' and a few steps take seconds instead of milliseconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def common_umask() -> Iterator[None]:
    """The umask most systems give (022), under which a file made with the default mode is every account's to
    read: what a file holding customers' words must not be."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture(scope="session")
def small_bot(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A four-intent bot on the tiny BERT, trained until it knows its seed examples (a few seconds).

    Tests copy it (``shutil.copytree``) before changing it; its learning margins are the defaults.
    """
    import torch

    from bot.project import load_project
    from bot.training import train_project

    root = make_small_bot(tmp_path_factory.mktemp("bots") / "small", str(tiny_model),
                          model={"epochs": 40, "learning_rate": 3e-4}, learning={"watch_seconds": 0.2},
                          server={"admin_token": "small-admin-token"})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_project(load_project(root), device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    return root


def configure(root: Path, **sections: dict[str, Any]) -> None:
    """Merge ``sections`` into the bot.yml of the bot folder ``root``, one level deep: ``server={"admin_token": "t"}``
    sets that key and keeps the section's others."""
    import yaml

    config = yaml.safe_load((root / "bot.yml").read_text())
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))


def rename_intent(root: Path, old: str, new: str) -> None:
    """Rename an intent in every file of the bot that names it, as a shop does in its editor."""
    for name in ("nlu.yml", "responses.yml", "bot.yml", "history.jsonl"):
        path = root / name
        path.write_text(path.read_text().replace(old, new))


def configured_copy(source: Path, dest: Path, **config: dict[str, Any]) -> Path:
    """A copy of a trained bot folder (its models, not its store) with ``config`` merged into bot.yml
    (:func:`configure`)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    configure(dest, **config)
    return dest


@pytest.fixture(scope="module")
def served_nlu(served_bot: Path) -> NLU:
    """The served model of the module's bot (the ``served_bot`` fixture it defines), loaded once: each test starts its
    own server on it (:func:`client`), and a load takes seconds."""
    from bot.project import load_project
    from bot.server import load_serving_model

    return load_serving_model(load_project(served_bot), device="cpu")


@pytest.fixture
async def client(aiohttp_client: Any, served_bot: Path, served_nlu: NLU) -> Any:
    """A test client of a server of the module's bot (``served_bot``) on its model loaded once (:func:`served_nlu`).
    A module with a ``client`` of its own uses that one instead."""
    from bot.server import create_app

    return await aiohttp_client(create_app(served_bot, device="cpu", nlu=served_nlu))


class SureOf:
    """The serving model, sure that every message asks for ``intent`` (the tiny model's guesses are random)."""

    def __init__(self, nlu: Any, intent: str) -> None:
        self.nlu, self.intent = nlu, intent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nlu, name)

    def analyse(self, texts: list[str]) -> list[Any]:
        from finetune.classifier import Prediction

        sure = Prediction(self.intent, 1.0, [(self.intent, 1.0)])
        return [dataclasses.replace(analysis, prediction=sure) for analysis in self.nlu.analyse(texts)]


async def ask(client: Any, conversation: str, text: str) -> dict[str, Any]:
    """One chat turn through ``POST /api/chat`` of a test client; the reply's JSON."""
    response = await client.post("/api/chat", json={"conversation_id": conversation, "text": text})
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
async def not_http_port() -> AsyncIterator[int]:
    """The port of a server on 127.0.0.1 that answers any request with a status line that is not HTTP, as a
    proxy or a portal in front of an API may: aiohttp's error for it names the URL asked, its query with it."""
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def store_failing_once(bot: Any, path: Path, held: asyncio.Event | None = None) -> asyncio.Event:
    """Give a stand-in for the engine a real store whose first ``receive`` fails as a database another
    process holds locked does, once its timeout is over: when ``held`` is set, if given. The event
    returned is set once that first ``receive`` waits."""
    from dialogues.store import Store

    store = Store(path)
    receive, calls = store.receive, []
    waiting = asyncio.Event()

    def flaky(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return receive(*args)

    async def run(fn: Any, *args: Any) -> Any:
        if fn is flaky and not calls and held is not None:
            waiting.set()
            await held.wait()
        return fn(*args)

    store.receive = flaky  # type: ignore[method-assign]
    bot.store, bot._store = store, run
    return waiting


def store_of_the_last_deskbot(path: Path) -> None:
    """A store as the deskbot before the last migration left it (empty, but for its schema)."""
    import sqlite_utils

    from dialogues.store import MIGRATIONS, agent_key

    old = sqlite_utils.Database(path)
    old.conn.create_function("agent_key", 1, agent_key, deterministic=True)  # as Store's connection has, for _v50
    for migration in MIGRATIONS[:-1]:
        migration(old)
    old.execute(f"PRAGMA user_version={len(MIGRATIONS) - 1}")
    old.close()


def store_in_store_dir_of_a_newer_deskbot(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``data``/dialogues.db as a newer deskbot left it, with the copy it kept before migrating, kept apart from its
    bot folder (DESKBOT_STORE_DIR=``data``)."""
    from dialogues.store import MIGRATIONS, Store

    data.mkdir()
    store = Store(data / "dialogues.db")
    store.backup(data / f"dialogues.db.schema{len(MIGRATIONS)}.bak")
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    store.close()
    monkeypatch.setenv("DESKBOT_STORE_DIR", str(data))


def labelled_in_the_last_deskbots_store(path: Path, text: str, intent: str, turn_id: int = 1, user: str | None = None,
                                        reviewer: str | None = None) -> None:
    """A store as the deskbot before the last migration left it, with what that deskbot's `bot serve`, still running
    on it, wrote: a web conversation ``c1`` of ``user``'s whose message ``text`` (turn ``turn_id``) ``reviewer``
    labelled ``intent``; the commands that only read must read it as it is."""
    store_of_the_last_deskbot(path)
    with contextlib.closing(sqlite3.connect(path)) as older, older:
        older.execute("INSERT INTO conversations (id, channel, user, created, updated) VALUES ('c1', 'web', ?, 1, 1)",
                      [user])
        older.execute("INSERT INTO turns (id, conversation_id, role, text, created) VALUES (?, 'c1', 'user', ?, 1)",
                      [turn_id, text])
        older.execute("INSERT INTO review_labels (turn_id, intent, reviewer, created) VALUES (?, ?, ?, 2)",
                      [turn_id, intent, reviewer])


def damage_table(path: Path, table: str) -> None:
    """Overwrite the pages of ``table`` in the store, as a failing disk would, and nothing else: its schema stays whole
    wherever the pages of the tables the migrations added after it lie."""
    import sqlite3

    with sqlite3.connect(path) as db:
        pages = [page for page, in db.execute("SELECT pageno FROM dbstat WHERE name = ?", [table])]
    with path.open("r+b") as file:
        for page in pages:
            file.seek((page - 1) * 4096)
            file.write(b"\xde\xad\xbe\xef" * 1024)


def damage(path: Path, first_page: int) -> None:
    """Overwrite the store's pages from ``first_page`` (0: the header) to its end, as a failing disk would."""
    with path.open("r+b") as file:
        size = path.stat().st_size
        file.seek(first_page * 4096)
        file.write(b"\xde\xad\xbe\xef" * ((size - first_page * 4096) // 4))
