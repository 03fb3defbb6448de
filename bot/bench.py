"""``bot bench serve``: the real server under concurrent chat traffic, measured against the raw model.

The server runs as its own process (``bot serve`` on loopback), so its latency, throughput and memory
are those a deployment sees, client overhead excluded from its RSS. The same run times the raw
encoder (with the intent head), same weights, same inference settings (int8 and traced or not), same
machine, in large batches; the ratio of the two says how much of the hardware's model throughput
the server delivers with HTTP, WebSocket, retrieval and logging on top.

The bot folder is served through a scratch copy (links to its files, its own ``dialogues.db``), so a
benchmark never writes into the bot's conversation log; rate limits are switched off there, since
every client comes from one address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.project import STORE_DIR_ENV, InferenceConfig, Project, load_project

if TYPE_CHECKING:
    from finetune.classifier import IntentClassifier

READY_TIMEOUT = 300.0  # seconds for the server to load its model; a loaded 2-core machine is slow
REQUEST_TIMEOUT = 30.0  # a reply slower than this counts as an error
RAW_BATCHES = (8, 16, 32, 64)  # the raw encoder is timed at each, and its best counts
RAW_POOL = 512  # texts per encode call: sorted by length across the pool, as a backlog would allow
SERVER_LOG = "server.log"  # what the server under test prints, in its scratch folder


class BenchError(Exception):
    """The benchmark could not run (the server did not start, say); the message says why."""


# --- the server under test ------------------------------------------------------------------------


# server.limits with every rate and connection limit off: the benchmark's clients are one address sending at full speed
NO_LIMITS = {"per_ip_per_minute": 0, "per_conversation_per_minute": 0, "websockets_per_ip": 0, "websockets": 0,
             "conversations_per_ip": 0, "messages_per_ip_per_minute": 0, "connections_per_ip": 0}


def scratch_folder(root: Path, scratch: Path, inference: dict[str, Any], max_web_turns: int | None = None) -> Path:
    """``scratch`` serving ``root``'s bot: its files linked, bot.yml rewritten without rate limits and
    with ``inference`` settings on top (and ``server.max_web_turns``, where given), and no conversation log: its store is the scratch folder's own, wherever
    ``store_dir`` keeps the bot's (:func:`running_server` leaves DESKBOT_STORE_DIR out too). A file of the bot's named
    as the server's log here is not linked: the log written through the link replaced the shop's own file."""
    for entry in root.iterdir():
        if entry.name not in ("bot.yml", SERVER_LOG) and not entry.name.startswith("dialogues.db"):
            (scratch / entry.name).symlink_to(entry.resolve())
    config = yaml.safe_load((root / "bot.yml").read_text(encoding="utf-8")) or {}
    # A section left empty (`learning:`) is null, which bot.yml means as its defaults.
    server = config["server"] = config.get("server") or {}
    config.pop("store_dir", None)  # the benchmark's conversations are no customer's
    server.pop("metrics_token", None)  # the benchmark reads its own server's figures, on loopback
    server["limits"] = dict(NO_LIMITS)
    server["inference"] = {**(server.get("inference") or {}), **inference}
    if max_web_turns is not None:
        server["max_web_turns"] = max_web_turns
    config["learning"] = {**(config.get("learning") or {}), "watch_seconds": 0}  # the served version stays put
    (scratch / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return scratch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(folder: Path, device: str | None) -> Iterator[tuple[str, str]]:
    """``bot serve folder`` on a free loopback port; yields its base URL and model version once /healthz answers."""
    port = free_port()
    # -P: the folder the benchmark runs in stays off sys.path, so a bot folder named bot/ there cannot
    # stand in for deskbot's own package.
    command = [sys.executable, "-P", "-m", "bot.cli", "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    if device:
        command += ["--device", device]
    log_path = folder / SERVER_LOG
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={k: v for k, v in os.environ.items()
                                        if k not in ("DESKBOT_METRICS_TOKEN", STORE_DIR_ENV)})
    url = f"http://127.0.0.1:{port}"
    try:
        version = asyncio.run(_wait_ready(url, process))
        yield url, version
    except BenchError as exc:
        raise BenchError(f"{exc}; server log:\n{log_path.read_text(errors='replace')[-2000:]}") from None
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"bot serve exited with status {process.returncode}")
            # The port listens from the start, so a request made while the model loads waits for it: in turns.
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=10)) as response:
                    if response.status == 200:
                        return str((await response.json())["model_version"])
            await asyncio.sleep(0.25)
    raise BenchError(f"bot serve did not answer /healthz within {READY_TIMEOUT:g}s")


async def scrape(url: str) -> dict[str, float]:
    """The server's /metrics as ``{"name{label=value,...}": value}``, for the figures the run reports."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def change(before: dict[str, float], after: dict[str, float], prefix: str) -> float:
    """How much the samples starting with ``prefix`` grew between two scrapes, summed over their labels."""
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))


def server_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Memory, mean batch sizes and CPU per message of the server over one client run (warm-up included)."""
    messages = change(before, after, "deskbot_messages_total{")
    figures: dict[str, Any] = {"rss_mb": round(after["process_resident_memory_bytes{}"] / 2**20, 1)}
    for stage in ("inference", "store"):
        batches = change(before, after, f"deskbot_batch_size_count{{stage={stage}}}")
        items = change(before, after, f"deskbot_batch_size_sum{{stage={stage}}}")
        figures[f"{stage}_batch_mean"] = round(items / batches, 2) if batches else None
    cpu = change(before, after, "process_cpu_seconds_total{")
    figures["server_cpu_ms_per_message"] = round(cpu * 1000 / messages, 2) if messages else None
    return figures


# --- the clients ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw in the measured window (after the warm-up)."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    busy: int = 0  # messages answered 503 for the model's full queue (server.inference.max_queue), the open loop's
    answered_in_window: int = 0  # the open loop's replies that came within the measured window, whenever sent
    sent: int = 0  # every message, the warm-up's included
    by_transport: dict[str, int] = field(default_factory=lambda: {"http": 0, "ws": 0})


class Client:
    """One customer sending a message, waiting for the reply, and sending the next, until ``deadline``."""

    def __init__(self, number: int, transport: str, texts: list[str], tag: str, think: float = 0.0,
                 message_ids: bool = False) -> None:
        self.number = number
        self.think = think  # mean seconds between a reply and the next message (0: at once)
        self.message_ids = message_ids  # each message sent with its own message_id, as the widget sends them
        self.rng = random.Random(number)
        self.transport = transport
        self.texts = texts
        self.tag = tag
        self.sent = 0
        self.conversation = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None  # WebSocket clients keep one open

    def next_message(self) -> dict[str, str]:
        """The next message; with ``message_ids``, sent with an id of its own, which the server claims in the
        store before answering (a write per message, as for the widget's), so that the cost of those claims shows."""
        text = self.texts[(self.number * 7919 + self.sent) % len(self.texts)]
        self.sent += 1
        message = {"conversation_id": f"{self.tag}-{self.number}-{self.conversation}", "text": text}
        return {**message, "message_id": f"m{self.sent}"} if self.message_ids else message

    def replied(self, body: dict[str, Any]) -> bool:
        """A good reply; a handed-off conversation is left for a fresh one, so every message meets the model."""
        if body.get("handed_off"):
            self.conversation += 1
        return "reply" in body and body.get("type", "reply") == "reply"

    async def run(self, session: aiohttp.ClientSession, url: str, measure_from: float, deadline: float, tally: Tally) -> None:
        try:
            while time.perf_counter() < deadline:
                message = self.next_message()
                tally.sent += 1
                started = time.perf_counter()
                try:
                    ok = await asyncio.wait_for(self._exchange(session, url, message), REQUEST_TIMEOUT)
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
                    ok = False
                finished = time.perf_counter()
                if not ok:
                    await asyncio.sleep(0.01)  # a refused connection must not turn into a busy loop
                if self.think:  # jittered, so that clients do not move in step
                    await asyncio.sleep(self.think * self.rng.uniform(0.5, 1.5))
                if started < measure_from or finished > deadline:
                    continue
                if ok:
                    tally.latencies.append(finished - started)
                    tally.by_transport[self.transport] += 1
                else:
                    tally.errors += 1
        finally:
            if self.ws is not None:
                await self.ws.close()

    async def _exchange(self, session: aiohttp.ClientSession, url: str, message: dict[str, str]) -> bool:
        if self.transport == "http":
            async with session.post(f"{url}/api/chat", json=message) as response:
                return response.status == 200 and self.replied(await response.json())
        if self.ws is None or self.ws.closed:  # (re)connect: a dropped socket costs one error, not the client
            self.ws = await session.ws_connect(f"{url}/api/ws")
        ws = self.ws
        await ws.send_json({"type": "message", **message})
        while True:  # pushes for the conversation (a status change) may come before the reply
            frame = await ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:  # the server closed the socket
                await ws.close()
                return False
            body = json.loads(frame.data)
            if body.get("type") in ("reply", "error"):
                return self.replied(body)


async def drive(url: str, clients: int, duration: float, warmup: float, transport: str, texts: list[str],
                think: float = 0.0, message_ids: bool = False) -> Tally:
    """``clients`` concurrent clients for ``warmup + duration`` seconds; only the last ``duration`` counts. With
    ``message_ids`` each message carries one (:meth:`Client.next_message`)."""
    tally = Tally()
    start = time.perf_counter()
    measure_from, deadline = start + warmup, start + warmup + duration
    kinds = ["http", "ws"] if transport == "mixed" else [transport]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        runners = [Client(i, kinds[i % len(kinds)], texts, f"bench{clients}", think, message_ids).run(
                   session, url, measure_from, deadline, tally) for i in range(clients)]
        await asyncio.gather(*runners)
    return tally


async def offer(url: str, rate: float, duration: float, warmup: float, texts: list[str], seed: int = 0) -> Tally:
    """Messages over HTTP at ``rate`` a second on average (Poisson arrivals) for ``warmup + duration`` seconds, each
    sent when due whether or not those before it are answered: an open loop, as customers arrive on a sale's day. The
    closed loop of :func:`drive` never has more messages in the server than it has clients, so it cannot show what
    happens when they come faster than the model answers them. Each message opens a conversation of its own, so that
    none waits for the turn of another in its conversation. Those due in the measured window count, each awaited to
    its end (at most ``REQUEST_TIMEOUT``), its latency from the moment it was due: a client that falls behind its
    schedule does not hide the server's wait. ``Tally.answered_in_window``: the replies that came within the window,
    whichever message they answer, for the throughput."""
    tally, rng = Tally(), random.Random(seed)
    start = time.perf_counter()
    measure_from, deadline = start + warmup, start + warmup + duration
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def one(session: aiohttp.ClientSession, number: int, due: float) -> None:
        message = {"conversation_id": f"rate{rate:g}-{number}", "text": texts[number % len(texts)]}
        status = None
        try:
            async with session.post(f"{url}/api/chat", json=message) as response:
                status = response.status
                ok = status == 200 and "reply" in await response.json()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
            ok = False
        finished = time.perf_counter()
        if ok and measure_from <= finished <= deadline:
            tally.answered_in_window += 1
        if not measure_from <= due < deadline:
            return
        if ok:
            tally.latencies.append(finished - due)
            tally.by_transport["http"] += 1
        elif status == 503:
            tally.busy += 1
        else:
            tally.errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        sending: list[asyncio.Task[None]] = []
        due = start
        while (due := due + rng.expovariate(rate)) < deadline:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sending.append(asyncio.create_task(one(session, tally.sent, due)))
            tally.sent += 1
        await asyncio.gather(*sending)
    return tally


def summarise(run: dict[str, Any], tally: Tally, duration: float, raw: float) -> dict[str, Any]:
    """One run's figures: ``run`` names it (``{"clients": 16}``, or ``{"rate": 400}`` for an open loop, whose
    throughput is the replies that came within the window, and whose latencies and counts are of the messages due
    in it, ``offered`` of them a second)."""
    ms = np.asarray(tally.latencies) * 1000
    throughput = (tally.answered_in_window if "rate" in run else len(tally.latencies)) / duration

    def percentile(q: int) -> float | None:  # None rather than NaN (not JSON) when nothing succeeded
        return round(float(np.percentile(ms, q)), 2) if len(ms) else None

    offered = len(tally.latencies) + tally.busy + tally.errors
    return {
        **run,
        **({"offered": round(offered / duration, 1)} if "rate" in run else {}),
        "throughput": round(throughput, 1),
        "p50_ms": percentile(50),
        "p95_ms": percentile(95),
        "p99_ms": percentile(99),
        "errors": tally.errors,
        "busy": tally.busy,
        "messages": len(tally.latencies),
        "by_transport": tally.by_transport,
        "throughput_ratio": round(throughput / raw, 3) if raw else None,
    }


# --- the raw model ----------------------------------------------------------------------------------


def raw_model(project: Project, inference: InferenceConfig, device: str | None) -> IntentClassifier:
    """The serving model as the server loads it (int8 or not, traced or not), without the server.

    Every core and its best batch size, whatever ``threads``, ``max_batch`` and ``pass_tokens`` the server
    is given: the yardstick is what the hardware can do with this model, not what the server's
    settings allow.
    """
    from bot.nlu import NLU
    from finetune.registry import Registry

    return NLU.load(Registry(project.models_dir).current_path(), device=device,
                    inference=inference.model_copy(update={"threads": None, "workers": 1})).classifier


def encoder_throughput(model: IntentClassifier, texts: list[str], seconds: float) -> tuple[float, int]:
    """The best messages/s of ``model`` alone over the ``RAW_BATCHES``, and the batch size that gave it.

    Each batch size gets an equal share of ``seconds``; every call takes ``RAW_POOL`` texts, which the
    classifier sorts by length before cutting them into batches.
    """
    best = (0.0, RAW_BATCHES[0])
    for size in RAW_BATCHES:
        model.probabilities(texts[:size], batch_size=size)  # warm-up: first calls at a new shape allocate
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / len(RAW_BATCHES):
            model.probabilities([texts[(done + i) % len(texts)] for i in range(RAW_POOL)], batch_size=size)
            done += RAW_POOL
        best = max(best, (done / (time.perf_counter() - started), size))
    return best


# --- the run ----------------------------------------------------------------------------------------


def serve_benchmark(root: Path, clients: list[int], duration: float, warmup: float = 3.0, transport: str = "mixed",
                    inference: dict[str, Any] | None = None, device: str | None = None, seed: int = 0,
                    think_ms: float = 0.0, message_ids: bool = False, rates: list[int] | None = None,
                    max_web_turns: int | None = None) -> dict[str, Any]:
    """Start the server, time the raw encoder, drive each client count in turn; one JSON-able dict.

    With ``think_ms`` 0 every client sends its next message as soon as it has the reply (a closed loop at
    full capacity); a think time makes each client a person who reads before typing again. ``message_ids``: each
    message is sent with one, as the widget sends them. ``rates``: open loops at each of these messages/s
    (:func:`offer`) instead of the client counts. ``max_web_turns``: ``server.max_web_turns`` instead of bot.yml's.
    """
    project = load_project(root)
    texts = [e.text for e in project.examples]
    random.Random(seed).shuffle(texts)
    overrides = {k: v for k, v in (inference or {}).items() if v is not None}
    settings = InferenceConfig.model_validate({**project.config.server.inference.model_dump(), **overrides})
    with tempfile.TemporaryDirectory(prefix="deskbot-bench-") as tmp:
        folder = scratch_folder(root, Path(tmp), overrides, max_web_turns)
        with running_server(folder, device) as (url, version):
            # Timed between client counts, and each count is compared with the runs either side of it:
            # the machine's speed drifts (shared hosts do), and a ratio to a distant yardstick would hide it.
            model = raw_model(project, settings, device)
            raw_runs = [encoder_throughput(model, texts, duration / 2)]
            tallies = []
            runs: list[dict[str, Any]] = [{"rate": r} for r in rates] if rates else [{"clients": c} for c in clients]
            for run in runs:
                before, cpu = asyncio.run(scrape(url)), time.process_time()
                tally = asyncio.run(offer(url, run["rate"], duration, warmup, texts, seed) if "rate" in run else
                                    drive(url, run["clients"], duration, warmup, transport, texts, think_ms / 1000,
                                          message_ids))
                client_cpu = (time.process_time() - cpu) * 1000 / max(tally.sent, 1)
                figures = server_figures(before, asyncio.run(scrape(url)))
                figures.update(client_cpu_ms_per_message=round(client_cpu, 2), load_average=round(os.getloadavg()[0], 2))
                tallies.append((run, tally, figures))
                raw_runs.append(encoder_throughput(model, texts, duration / 2))
    around = [float(np.mean([raw_runs[i][0], raw_runs[i + 1][0]])) for i in range(len(tallies))]
    return {
        "bot": project.config.name,
        "model_version": version,
        "inference": settings.model_dump(),
        "max_web_turns": project.config.server.max_web_turns if max_web_turns is None else max_web_turns,
        "device": device or "auto",
        "transport": "http" if rates else transport,
        "think_ms": think_ms,
        "message_ids": message_ids,
        "duration_s": duration,
        "warmup_s": warmup,
        "cpus": os.cpu_count(),
        "raw_encoder_throughput": round(float(np.mean([r for r, _ in raw_runs])), 1),
        "raw_encoder_runs": [{"throughput": round(r, 1), "batch": b} for r, b in raw_runs],
        "results": [{**summarise(run, tally, duration, raw), "raw_encoder_throughput": round(raw, 1), **extra}
                    for (run, tally, extra), raw in zip(tallies, around)],
    }


# --- the conversation log ----------------------------------------------------------------------------


def store_benchmark(exchanges: int, batch_sizes: list[int], folder: Path) -> list[dict[str, Any]]:
    """Exchanges/s and commit times when the log is written ``batch`` exchanges per transaction.

    What a reply waits for is its batch's commit, so ``commit_p99_ms`` says whether a batch that size
    still keeps replies fast, and exchanges/s whether the writer keeps up with the model.
    """
    from dialogues.store import Exchange, Store

    results = []
    for batch in batch_sizes:
        store = Store(folder / f"bench-{batch}.db")
        rows = [Exchange(f"bench-{i % 500}", "web", None, f"message {i} about my card", None, f"reply {i}", "card_arrival",
                         0.9, [("card_arrival", 0.9), ("card_linking", 0.05)], "template", "v0001", 0.7, {}, 0)
                for i in range(exchanges)]
        commits = []
        started = time.perf_counter()
        for first in range(0, exchanges, batch):
            begun = time.perf_counter()
            store.log_exchanges(rows[first : first + batch])
            commits.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        store.close()
        ms = np.asarray(commits) * 1000
        results.append({"batch": batch, "exchanges_per_s": round(exchanges / elapsed, 1),
                        "commit_p50_ms": round(float(np.percentile(ms, 50)), 3),
                        "commit_p99_ms": round(float(np.percentile(ms, 99)), 3)})
    return results


def backup_benchmark(path: Path) -> dict[str, Any]:
    """What `bot backup` of the store at ``path`` takes, and how much of it the integrity check of the copy
    (``quick_check``, which refuses a damaged store's copy) is: timed again on the copy, as warm in the page
    cache as the backup left it."""
    from dialogues.store import Store, _damage

    store, copy = Store(path, read_only=True), path.with_name(f"{path.stem}-backup.db")
    try:
        begun = time.perf_counter()
        store.backup(copy)
        backup_s = time.perf_counter() - begun
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(copy)) as copied:
        begun = time.perf_counter()
        damage = _damage(copied)
        check_s = time.perf_counter() - begun
    if damage is not None:
        raise RuntimeError(f"{copy} is damaged: {damage}")
    return {"store_mb": round(copy.stat().st_size / 1e6, 1), "backup_s": round(backup_s, 3),
            "quick_check_s": round(check_s, 3), "check_share": round(check_s / backup_s, 3)}
