"""/metrics after real chats, and the batched log writer: one transaction per batch, nothing acknowledged
before it is in the SQLite file, and one bad exchange failing alone."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.batching import MicroBatcher
from bot.server import create_app
from dialogues.store import Exchange, Store


@pytest.fixture
def bot_copy(tiny_demo_bot: Path, tmp_path: Path) -> Path:
    """The tiny demo bot with a conversation log of its own."""
    return shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))


@pytest.fixture
async def client(aiohttp_client: Any, bot_copy: Path) -> Any:
    return await aiohttp_client(create_app(bot_copy, device="cpu"))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_chats_by_channel_source_and_status(client: Any, bot_copy: Path) -> None:
    for n in range(3):
        response = await client.post("/api/chat", json={"conversation_id": f"m-{n}", "text": "where is my order?"})
        assert response.status == 200
    template = await (await client.post("/api/chat", json={"conversation_id": "m-t", "text": "/get_refund"})).json()
    assert template["source"] == "template"
    ws = await client.ws_connect("/api/ws")
    await ws.send_json({"type": "message", "conversation_id": "m-ws", "text": "hello"})
    assert (await ws.receive_json())["type"] == "reply"
    await ws.close()

    response = await client.get("/metrics")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    values = samples(await response.text())
    web = {labels: v for (name, labels), v in values.items() if name == "deskbot_messages_total"}
    assert sum(web.values()) == 5
    assert web[(("channel", "web"), ("source", "template"), ("status", "ok"))] >= 1
    assert values[("deskbot_reply_seconds_count", (("channel", "web"),))] == 5
    # Every message met the model once and was logged once, whatever the batching.
    assert values[("deskbot_batch_size_sum", (("stage", "inference"),))] == 5
    assert values[("deskbot_batch_size_sum", (("stage", "store"),))] == 5
    assert values[("deskbot_queue_depth", (("stage", "inference"),))] == 0
    version = (bot_copy / "models" / "CURRENT").read_text().strip()
    assert values[("deskbot_model_info", (("version", version),))] == 1
    assert values[("process_resident_memory_bytes", ())] > 50 * 2**20


async def test_every_acknowledged_reply_is_committed_and_writes_share_transactions(client: Any, bot_copy: Path) -> None:
    async def chat(n: int) -> dict[str, Any]:
        response = await client.post("/api/chat", json={"conversation_id": f"d-{n}", "text": f"order {n} is late"})
        assert response.status == 200
        return await response.json()

    replies = await asyncio.gather(*(chat(n) for n in range(40)))
    # A second connection sees only committed rows: each reply the clients got is already there.
    with sqlite3.connect(bot_copy / "dialogues.db") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM turns WHERE role = 'bot'")}
        users = db.execute("SELECT count(*) FROM turns WHERE role = 'user'").fetchone()[0]
    assert {r["turn_id"] for r in replies} <= stored and users == 40
    values = samples(await (await client.get("/metrics")).text())
    transactions = values[("deskbot_batch_size_count", (("stage", "store"),))]
    assert values[("deskbot_batch_size_sum", (("stage", "store"),))] == 40 and transactions < 40


def exchange(n: int, ranking: Any = None) -> Exchange:
    return Exchange(f"c-{n}", "web", None, f"message {n}", None, f"reply {n}", "greet", 0.9,
                    ranking if ranking is not None else [("greet", 0.9)], "template", "v0001")


async def test_a_bad_exchange_fails_alone_and_the_rest_of_its_batch_is_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    writer = MicroBatcher(store.log_exchanges)
    unserialisable = [("greet", object())]
    results = await asyncio.gather(*(writer.submit(exchange(n, unserialisable if n == 3 else None)) for n in range(8)),
                                   return_exceptions=True)
    await writer.close()
    assert isinstance(results[3], TypeError)
    assert all(isinstance(r, tuple) for i, r in enumerate(results) if i != 3)
    with sqlite3.connect(tmp_path / "dialogues.db") as db:
        texts = sorted(row[0] for row in db.execute("SELECT text FROM turns WHERE role = 'user'"))
    assert texts == sorted(f"message {n}" for n in range(8) if n != 3)
    store.close()
