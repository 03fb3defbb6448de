"""A long transcript's JSON and the event loop: how long the loop stands still while the admin API encodes it.

    python bench/transcript_loop.py STORE.db [--turns 10000] [--runs 3]

Fills a new store at STORE.db (if it has no conversation ``long``) with one web conversation of ``--turns`` turns, reads
its transcript as ``GET /admin/conversations/long?limit=N`` does, then encodes it ``--runs`` times each way while a
ticker on the event loop measures its longest stall: at once on the loop (``json_response``, as the server did), at once
on a worker thread (json's C encoder holds the interpreter lock for the whole call), and on a worker thread in parts
(:func:`bot.channels.base.dumps_in_parts`, as the server does). Prints each run's total and longest stall in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.channels.base import dumps, dumps_in_parts
from dialogues.store import Exchange, Store


def build(path: Path, turns: int) -> None:
    """The conversation ``long``: ``turns`` turns, a customer's message and the bot's reply in turn."""
    store = Store(path)
    store.log_exchanges([Exchange("long", "web", "u1", f"message {i}: where is my order {i * 7}?", None,
                                  f"reply {i}: your order ships soon, track it from your account page", "track_order",
                                  0.8, [("track_order", 0.8), ("greet", 0.1)], "template", "v0001", 0.7, {}, 0)
                         for i in range(turns // 2)])
    store.close()


async def longest_stall(encode: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """``encode()``'s total time and the event loop's longest stall meanwhile, in ms."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    await encode()
    total = time.perf_counter() - started
    done.set()
    await ticker
    return total * 1000, max(gaps) * 1000


async def compare(found: dict[str, Any], runs: int) -> None:
    async def on_loop() -> None:
        dumps(found).encode()

    async def thread_at_once() -> None:
        await asyncio.to_thread(lambda: dumps(found).encode())

    async def thread_in_parts() -> None:
        await asyncio.to_thread(dumps_in_parts, found, "turns")

    for name, encode in (("on the loop", on_loop), ("a thread, at once", thread_at_once),
                         ("a thread, in parts", thread_in_parts)):
        for _ in range(runs):
            total, stall = await longest_stall(encode)
            print(f"{name}: {total:.1f} ms, longest stall of the loop {stall:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.store.exists():
        build(args.store, args.turns)
    store = Store(args.store, read_only=True)
    started = time.perf_counter()
    found = store.transcript("long", args.turns)
    print(f"read {len(found['turns'])} turns in {(time.perf_counter() - started) * 1000:.1f} ms, "
          f"{len(dumps(found).encode()) / 1e6:.1f} MB of JSON")
    store.close()
    asyncio.run(compare(found, args.runs))


if __name__ == "__main__":
    main()
