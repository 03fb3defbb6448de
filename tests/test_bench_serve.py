"""``bot bench serve`` end to end on the tiny demo bot: the real server process, HTTP and WebSocket
clients, and the JSON it prints. Figures are not asserted (they come from the benchmark runs in
bench/SERVE.md); their shape and consistency are."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import configured_copy

RESULT_KEYS = {"clients", "throughput", "p50_ms", "p95_ms", "p99_ms", "errors", "busy", "rss_mb", "throughput_ratio"}


def test_bench_serve_prints_one_json_object_per_the_schema(tiny_demo_bot: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "serve", str(tiny_demo_bot), "--clients", "1,3", "--duration", "1.5",
                                      "--warmup", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    runs = [r["throughput"] for r in figures["raw_encoder_runs"]]
    assert len(runs) == 3 and all(r > 0 for r in runs)  # before the first client count and after each
    assert abs(figures["raw_encoder_throughput"] - sum(runs) / 3) < 0.1
    assert [r["clients"] for r in figures["results"]] == [1, 3]
    for i, entry in enumerate(figures["results"]):
        raw = entry["raw_encoder_throughput"]
        assert abs(raw - (runs[i] + runs[i + 1]) / 2) < 0.1  # the yardstick timed either side of this count
        assert RESULT_KEYS <= entry.keys()
        assert entry["errors"] == 0 and entry["messages"] > 0
        assert entry["throughput"] == round(entry["messages"] / 1.5, 1)
        assert abs(entry["throughput_ratio"] - entry["throughput"] / raw) < 0.01
        assert 0 < entry["p50_ms"] <= entry["p95_ms"] <= entry["p99_ms"]
        assert 50 < entry["rss_mb"] < 4096
    mixed = figures["results"][1]["by_transport"]
    assert mixed["http"] > 0 and mixed["ws"] > 0  # three clients: two on HTTP, one on a WebSocket
    # The run kept its own log: none of its conversations is in the bot's.
    if (tiny_demo_bot / "dialogues.db").exists():
        with sqlite3.connect(tiny_demo_bot / "dialogues.db") as db:
            assert db.execute("SELECT count(*) FROM conversations WHERE id LIKE 'bench%'").fetchone()[0] == 0


async def test_bench_serves_clients_send_message_ids_when_asked(tiny_demo_bot: Path, tmp_path: Path,
                                                                 aiohttp_client: Any) -> None:
    """The store's claim of each message sent with a message_id (the widget's) is a write per message that the
    benchmark's clients, sending none, never measured: with ``--message-ids`` each message carries its own."""
    from bot.bench import NO_LIMITS, drive
    from bot.server import BOT, create_app

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"limits": NO_LIMITS})  # one address, full speed
    client = await aiohttp_client(create_app(root, device="cpu"))
    url, texts = str(client.make_url("")).rstrip("/"), ["where is my order", "hello"]
    store = client.app[BOT].store
    for message_ids in (False, True):
        # Long enough for each client to finish an exchange on a loaded machine, where the first takes seconds
        tally = await drive(url, 2, 3.0, 0.0, "mixed", texts, message_ids=message_ids)
        assert tally.errors == 0 and tally.by_transport["http"] and tally.by_transport["ws"]
        claims = store.db.execute("SELECT count(*), count(DISTINCT conversation_id || message_id) FROM answering")
        assert claims.fetchone() == ((tally.sent,) * 2 if message_ids else (0, 0))


def test_bench_serve_refuses_bad_client_counts_and_an_untrained_bot(tiny_demo_bot: Path, tmp_path: Path) -> None:
    bad = CliRunner().invoke(cli, ["bench", "serve", str(tiny_demo_bot), "--clients", "1,zero"])
    assert bad.exit_code == 2 and "positive whole numbers" in bad.output
    untrained = shutil.copytree(tiny_demo_bot, tmp_path / "untrained", ignore=shutil.ignore_patterns("models", "*.db*"))
    refused = CliRunner().invoke(cli, ["bench", "serve", str(untrained), "--duration", "1"])
    assert refused.exit_code == 1 and "bot train" in refused.output


def test_the_benchmarks_scratch_bot_leaves_the_shops_files_alone_and_reads_empty_sections(tmp_path: Path) -> None:
    """The bench server's log went through the link to the shop's own server.log and replaced it; a section
    left empty (null) in bot.yml ended the benchmark in a TypeError."""
    import yaml

    from bot.bench import SERVER_LOG, scratch_folder

    root, scratch = tmp_path / "bot", tmp_path / "scratch"
    root.mkdir()
    scratch.mkdir()
    (root / SERVER_LOG).write_text("the shop's own log\n")
    (root / "nlu.yml").write_text("nlu: []\n")
    (root / "bot.yml").write_text("learning:\nserver:\n  inference:\n  metrics_token: scrape-token\nstore_dir: /data\n")
    scratch_folder(root, scratch, {"quantize": "int8"}, max_web_turns=64)
    assert not (scratch / SERVER_LOG).exists() and (scratch / "nlu.yml").is_symlink()
    config = yaml.safe_load((scratch / "bot.yml").read_text())
    assert config["server"]["inference"] == {"quantize": "int8"} and config["learning"] == {"watch_seconds": 0}
    assert config["server"]["max_web_turns"] == 64  # bot bench serve --max-web-turns
    assert config["server"]["limits"]["per_ip_per_minute"] == config["server"]["limits"]["websockets"] == 0
    assert "metrics_token" not in config["server"]  # the benchmark reads its server's /metrics without it
    assert "store_dir" not in config  # the benchmark's conversations go to the scratch folder, not the shop's store
    assert (root / SERVER_LOG).read_text() == "the shop's own log\n"


def test_the_benchmarks_server_answers_its_metrics_without_the_shops_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DESKBOT_METRICS_TOKEN in the environment closed the bench server's /metrics to the benchmark itself; a
    DESKBOT_STORE_DIR would have recorded the benchmark's conversations in the shop's store."""
    import subprocess

    from bot.bench import running_server

    started: dict[str, str] = {}

    def popen(command: list[str], **options: Any) -> None:
        started.update(options["env"])
        raise OSError("not started")

    monkeypatch.setenv("DESKBOT_METRICS_TOKEN", "scrape-token")
    monkeypatch.setenv("DESKBOT_STORE_DIR", str(tmp_path))
    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(OSError), running_server(tmp_path, None):
        pass
    assert started and "DESKBOT_METRICS_TOKEN" not in started and "DESKBOT_STORE_DIR" not in started


def test_bench_store_reports_each_batch_size() -> None:
    result = CliRunner().invoke(cli, ["bench", "store", "--exchanges", "60", "--batches", "1,20", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert [r["batch"] for r in figures["results"]] == [1, 20]
    for entry in figures["results"]:
        assert entry["exchanges_per_s"] > 0 and 0 < entry["commit_p50_ms"] <= entry["commit_p99_ms"]


def test_bench_store_times_a_backup_and_its_integrity_check() -> None:
    result = CliRunner().invoke(cli, ["bench", "store", "--exchanges", "60", "--batches", "1,20", "--backup", "--json"])
    assert result.exit_code == 0, result.output
    backup = json.loads(result.stdout)["backup"]
    assert set(backup) == {"store_mb", "backup_s", "quick_check_s", "check_share"}
    assert backup["store_mb"] > 0 and backup["backup_s"] > 0 and backup["quick_check_s"] >= 0


async def test_the_open_loop_sends_on_schedule_and_counts_the_messages_answered_busy(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    """Closed-loop clients never have more messages in the server than there are clients, so no run showed what
    customers coming faster than the model answers meet. ``--rate`` sends each message when it is due, answered or
    not: with the model held busy, the messages past server.inference.max_queue are counted busy (503), apart from
    the errors, and every message due is counted once."""
    import asyncio
    import threading

    from bot.bench import NO_LIMITS, offer, summarise
    from bot.server import BOT, create_app

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"limits": NO_LIMITS,
                                                                     "inference": {"workers": 1, "max_queue": 2}})
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    free, analyse = threading.Event(), bot.nlu.analyse
    bot._analyse = lambda texts: (free.wait(20), analyse(texts))[1]  # type: ignore[method-assign]
    bot.batcher.fn = bot._analyse
    url = str(client.make_url("")).rstrip("/")
    sending = asyncio.ensure_future(offer(url, 40, 1.0, 0.0, ["where is my order", "hello"]))
    busy = {"channel": "web", "source": "none", "status": "busy"}
    async with asyncio.timeout(20):
        while not bot.metrics.registry.get_sample_value("deskbot_messages_total", busy):
            await asyncio.sleep(0.01)
    free.set()
    tally = await sending
    assert tally.busy >= 1 and tally.errors == 0 and len(tally.latencies) >= 3
    assert len(tally.latencies) + tally.busy == tally.sent > 3  # sent when due, not when the one before was answered
    summary = summarise({"rate": 40}, tally, 1.0, 100.0)
    assert summary["rate"] == 40 and summary["busy"] == tally.busy and summary["offered"] == tally.sent
    assert summary["throughput"] == tally.answered_in_window
