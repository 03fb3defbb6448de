"""Soak: the real server at half its measured maximum throughput for a long time; RSS growth and errors.

    python bench/soak.py BOT_DIR --minutes 30

1. ``bot serve`` runs in its own process on a scratch copy of BOT_DIR (no rate limits, its own
   store), as ``bot bench serve`` runs it (``bot/bench.py``).
2. ``--clients`` closed-loop clients measure its maximum throughput for ``--probe-seconds``.
3. The same number of paced clients then hold half that rate for ``--minutes``: half over HTTP,
   half over WebSockets that reconnect every 50 messages, so sockets open and close throughout.
   The server's resident memory (its own ``/metrics``) is sampled every ``--sample-seconds``.

RSS growth is counted from the first sample after the warm-up (a minute, or a fifth of a shorter
run: caches, allocator pools and the store's pages fill first) to the last, and as a fitted slope.
Prints one JSON object. This is a benchmark, not a test: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bot.bench import REQUEST_TIMEOUT, Client, Tally, drive, running_server, scrape, scratch_folder, summarise
from bot.project import load_project

RSS = "process_resident_memory_bytes{}"
RECONNECT_EVERY = 50


async def paced(client: Client, session: aiohttp.ClientSession, url: str, interval: float, deadline: float,
                tally: Tally) -> None:
    """One client sending a message every ``interval`` seconds until ``deadline`` (never in a burst to catch up)."""
    due = time.perf_counter() + random.uniform(0, interval)
    try:
        while True:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                ok = await asyncio.wait_for(client._exchange(session, url, client.next_message()), REQUEST_TIMEOUT)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
                ok = False
            if ok:
                tally.latencies.append(time.perf_counter() - started)
                tally.by_transport[client.transport] += 1
            else:
                tally.errors += 1
            if client.ws is not None and client.sent % RECONNECT_EVERY == 0:
                await client.ws.close()  # the next message opens a new socket
            due = max(due + interval, time.perf_counter() - interval)
    finally:
        if client.ws is not None:
            await client.ws.close()


async def sample_rss(url: str, every: float, deadline: float, samples: list[tuple[float, float]]) -> None:
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        samples.append((time.perf_counter() - start, (await scrape(url))[RSS] / 2**20))
        await asyncio.sleep(min(every, max(0.0, deadline - time.perf_counter())))
    samples.append((time.perf_counter() - start, (await scrape(url))[RSS] / 2**20))


async def hold(url: str, rate: float, clients: int, seconds: float, texts: list[str],
               sample_every: float) -> tuple[Tally, list[tuple[float, float]]]:
    tally, samples = Tally(), []
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        runners = [paced(Client(i, ("http", "ws")[i % 2], texts, "soak"), session, url, clients / rate, deadline, tally)
                   for i in range(clients)]
        await asyncio.gather(sample_rss(url, sample_every, deadline, samples), *runners)
    return tally, samples


def rss_figures(samples: list[tuple[float, float]], seconds: float) -> dict[str, Any]:
    warm = min(60.0, seconds / 5)
    after = [(t, mb) for t, mb in samples if t >= warm] or samples[-2:]
    base, last = after[0][1], after[-1][1]
    hours = np.asarray([t for t, _ in after]) / 3600
    slope = float(np.polyfit(hours, [mb for _, mb in after], 1)[0]) if len(after) > 2 else None
    return {"rss_mb_start": round(samples[0][1], 1), "rss_mb_after_warmup": round(base, 1),
            "rss_mb_end": round(last, 1), "rss_mb_max": round(max(mb for _, mb in samples), 1),
            "rss_growth_pct": round((last - base) / base * 100, 2),
            "rss_slope_mb_per_hour": None if slope is None else round(slope, 2), "warmup_s": warm,
            "rss_samples": [[round(t), round(mb, 1)] for t, mb in samples]}


def soak(root: Path, minutes: float, probe_seconds: float, clients: int, sample_every: float,
         device: str | None, seed: int) -> dict[str, Any]:
    project = load_project(root)
    texts = [e.text for e in project.examples]
    random.Random(seed).shuffle(texts)
    seconds = minutes * 60
    with tempfile.TemporaryDirectory(prefix="deskbot-soak-") as tmp:
        folder = scratch_folder(root, Path(tmp), {})
        with running_server(folder, device) as (url, version):
            probe = summarise(clients, asyncio.run(drive(url, clients, probe_seconds, 5.0, "mixed", texts)), probe_seconds, 0)
            rate = probe["throughput"] / 2
            tally, samples = asyncio.run(hold(url, rate, clients, seconds, texts, sample_every))
    held = summarise(clients, tally, seconds, 0)
    return {
        "bot": project.config.name, "model_version": version, "device": device or "auto", "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "max_throughput": probe["throughput"], "max_throughput_errors": probe["errors"], "target_rate": round(rate, 2),
        "minutes": minutes, "messages": held["messages"], "achieved_rate": held["throughput"], "errors": held["errors"],
        "p50_ms": held["p50_ms"], "p95_ms": held["p95_ms"], "p99_ms": held["p99_ms"],
        "by_transport": held["by_transport"], **rss_figures(samples, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bot_dir", type=Path, help="a trained bot folder (served from a scratch copy)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--probe-seconds", type=float, default=30.0, help="how long to measure the maximum throughput")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="how often to read the server's RSS")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = soak(args.bot_dir, args.minutes, args.probe_seconds, args.clients, args.sample_seconds, args.device, args.seed)
    print(json.dumps({"command": "soak", **figures}))


if __name__ == "__main__":
    main()
