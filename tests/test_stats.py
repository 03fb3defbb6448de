"""``bot stats`` on a store whose every figure was worked out by hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import datetime, timedelta, timezone
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from bot.cli import cli
from bot.project import load_project
from bot.retrain import read_store
from bot.server import BOT, create_app
from dialogues.stats import compared_with_previous, conversation_stats, language_kept
from dialogues.store import MIGRATIONS, Exchange, Store, StoreError
from tests.conftest import ask, configured_copy, damage_table, labelled_in_the_last_deskbots_store


def exchange(store: Store, conversation: str, text: str, source: str, intent: str | None = "track_order",
             reply: str | None = "...", channel: str = "web") -> tuple[int, int | None]:
    return store.log_exchange(Exchange(conversation, channel, None, text, None, reply if source != "silent" else None,
                                       intent, 0.9, [(intent or "track_order", 0.9)], source, "v0001"))


def worked_example(store: Store) -> None:
    """Four conversations: one kept by the bot, three handed to a person for three reasons."""
    _, answer = exchange(store, "kept", "where is my order", "template")
    refund, second = exchange(store, "kept", "and my refund?", "retrieval", "get_refund")
    store.add_labels([refund], "get_refund")  # answered right
    for value in (-1, 1):  # a changed mind counts once, as its last vote
        store.add_feedback("kept", answer, value)
    for value in (1, 0):  # and a withdrawn vote not at all
        store.add_feedback("kept", second, value)

    question, missed = exchange(store, "asked", "???", "fallback", None)
    store.add_labels([question], "oos")  # no answer, labelled: not a wrong one
    store.add_feedback("asked", missed, -1)
    exchange(store, "asked", "/handoff", "handoff", None)
    store.set_status("asked", "handed_off", "requested")
    exchange(store, "asked", "hello?", "silent", None)
    store.add_message("asked", "agent", "Hi, Sam here.")

    cancel, _ = exchange(store, "taken", "cancel it", "action", "cancel_order")
    for intent in ("cancel_order", "oos"):  # answered wrong, as the latest label says
        store.add_labels([cancel], intent)
    store.set_status("taken", "handed_off", "agent")
    store.add_message("taken", "agent", "I've cancelled it for you.")

    exchange(store, "lost", "hmm", "fallback", None)
    exchange(store, "lost", "what", "handoff", None)
    store.set_status("lost", "handed_off", "fallbacks")
    # The waits, made exact: "asked" waited 90 s for Sam; "lost" was never answered.
    store.db.execute("UPDATE handoffs SET created = 1000 WHERE conversation_id = 'asked'")
    store.db.execute("UPDATE turns SET created = 1090 WHERE conversation_id = 'asked' AND role = 'agent'")


def test_the_figures_of_a_worked_example(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    worked_example(store)
    stats = conversation_stats(store)
    assert (stats["conversations"], stats["handed_off"], stats["containment"]) == (4, 3, 0.25)
    assert stats["handoff_reasons"] == {"agent": 1, "fallbacks": 1, "requested": 1}
    assert stats["sources"] == {"template": 1, "retrieval": 1, "action": 1, "fallback": 2, "handoff": 2}
    assert (stats["messages"], stats["answered"], stats["while_with_a_person"]) == (7, round(3 / 7, 4), 1)
    assert stats["wrong_answers"] == 1
    assert stats["feedback"] == {"up": 1, "down": 1}
    assert stats["rated_conversations"] == {"rated": 2, "all_helpful": 1, "share": 0.5}  # "kept" and "asked"
    assert stats["first_agent_reply_seconds"] == {"median": 90.0, "p90": 90.0, "unanswered": 1}  # the agent's own not counted
    assert stats["top_intents"] == {"cancel_order": 1, "get_refund": 1, "track_order": 1}
    assert stats["top_unanswered"] == {"???": 1, "hmm": 1}
    assert stats["period"] == {"since": None, "until": None}  # all along
    assert conversation_stats(store, since=4e9)["conversations"] == 0  # nothing after 2096
    # The shop trying its bot in `bot chat`: none of its turns, votes or handoffs are customers'
    store.log_exchange(Exchange("cli:1", "cli", None, "human please", None, "...", None, 0.9, [], "handoff", "v0001"))
    store.add_feedback("cli:1", store.log_exchange(Exchange("cli:1", "cli", None, "where is my order", None, "...",
                                                            "track_order", 0.9, [], "template", "v0001"))[1], -1)
    store.set_status("cli:1", "handed_off", "requested")
    assert conversation_stats(store) == stats
    store.close()


def test_bot_stats_prints_them_and_as_json(tiny_demo_bot: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    worked_example(store)
    store.close()
    printed = CliRunner().invoke(cli, ["stats", str(root)])
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines() == [
        "Demo Shop, all time",
        "  conversations           4",
        "    kept by the bot       1  (25.0 %)",
        "    to a person           3  (75.0 %)   agent 1, fallbacks 1, requested 1",
        "      by channel     web 3 of 4 (75.0 %)",
        "  customer messages       7   and 1 while with a person",
        "    answered              3  (42.9 %)   template 1, retrieval 1, action 1",
        "      labelled wrong      1  (33.3 %)   in review: another intent, or oos",
        "    fallback              2  (28.6 %)",
        "    handoff               2  (28.6 %)",
        "  feedback           1 helpful, 1 not helpful",
        "    by conversation       2 rated, 1 with every vote helpful (50.0 %)",
        "  first agent reply  median 1 min 30 s, 90th percentile 1 min 30 s, 1 not answered (yet)",
        "  top intents        cancel_order 1, get_refund 1, track_order 1",
        "  top unanswered          1   ???",
        "                          1   hmm",
    ]
    as_json = CliRunner().invoke(cli, ["stats", str(root), "--json"])
    assert json.loads(as_json.output)["containment"] == 0.25
    future = CliRunner().invoke(cli, ["stats", str(root), "--since", "2099-01-01", "--json"])
    assert json.loads(future.stdout)["conversations"] == 0
    assert future.stderr == "--since 2099-01-01 00:00:00 is in the future: nothing is that new\n"  # not a quiet week
    offset = datetime(2099, 1, 1).astimezone().isoformat()[-6:]  # the machine's, whose local time was read
    for since, header in (("2099-01-01", f"since 2099-01-01 (UTC{offset})"),
                          ("2099-01-01T18:30:00", f"since 2099-01-01 18:30:00 (UTC{offset})"),
                          ("2099-01-01T18:30:00+08:00", "since 2099-01-01 18:30:00+08:00")):
        shown = CliRunner().invoke(cli, ["stats", str(root), "--since", since])  # the window said as given
        assert shown.output.splitlines()[0] == f"Demo Shop, {header}"


def test_since_reads_a_time_as_bot_export_writes_it_and_bot_stats_prints_it(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """``--since`` read ``YYYY-MM-DD`` and ``YYYY-MM-DDTHH:MM:SS`` alone: "2026-12-05 04:00:00", as `bot stats`
    prints its window, and "2026-12-05T04:42:07+00:00", as `bot export` writes ``created``, were refused."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    exchange(store, "c1", "where is my order", "template")
    at = datetime(2026, 12, 5, 4, 42, 7, tzinfo=timezone.utc)
    store.db.execute("UPDATE turns SET created = ?", [at.timestamp()])
    store.close()
    local = at.astimezone().replace(tzinfo=None)  # without an offset: the machine's local time

    def counted(since: str) -> int:
        shown = CliRunner().invoke(cli, ["stats", str(root), "--since", since, "--json"])
        assert shown.exit_code == 0, (since, shown.output)
        return json.loads(shown.stdout)["conversations"]

    second = timedelta(seconds=1)
    for at_it, after_it in (("2026-12-05T04:42:07+00:00", "2026-12-05T04:42:08+00:00"),
                            ("2026-12-05T04:42Z", "2026-12-05T04:43Z"), ("2026-12-05 12:42:07+08:00", "2026-12-05T12:43+0800"),
                            (f"{local:%Y-%m-%d %H:%M:%S}", f"{local + second:%Y-%m-%d %H:%M:%S}"),
                            (f"{local:%Y-%m-%dT%H:%M}", f"{local + 60 * second:%Y-%m-%dT%H:%M}")):
        assert (counted(at_it), counted(after_it)) == (1, 0), (at_it, after_it)
    assert counted(f"{local:%Y-%m-%d}") == 1
    exported = CliRunner().invoke(cli, ["export", str(root), "--since", "2026-12-05T04:42:07+00:00"])
    assert exported.exit_code == 0, exported.output
    for wrong in ("2026-W49", "20261205", "2026-339", "2026-02-30", "2026-12-05T25:00", "2026-12-05T04", "last tuesday"):
        for command in ("stats", "export"):
            refused = CliRunner().invoke(cli, [command, str(root), "--since", wrong])
            assert refused.exit_code == 2 and "Invalid value for '--since'" in refused.output, (command, wrong)
            assert "is not a date (2026-12-05) nor a time on one" in refused.output


def stats_json(root: Path, *options: str) -> dict[str, Any]:
    """What `bot stats ROOT --json OPTIONS` prints, the command having succeeded."""
    shown = CliRunner().invoke(cli, ["stats", str(root), "--json", *options])
    assert shown.exit_code == 0, shown.output
    return json.loads(shown.stdout)


def two_weeks(store: Store) -> None:
    """Week of 2026-11-23 (Shanghai): one conversation kept, one handed off; the next week: one kept."""
    shanghai = timezone(timedelta(hours=8))
    for conversation, day in (("kept", 23), ("asked", 29), ("this week", 30)):
        exchange(store, conversation, "where is my order", "template")
        store.db.execute("UPDATE turns SET created = ? WHERE conversation_id = ?",
                         [datetime(2026, 11, day, 9, tzinfo=shanghai).timestamp(), conversation])
    store.set_status("asked", "handed_off", "requested")
    store.db.execute("UPDATE handoffs SET created = ?", [datetime(2026, 11, 29, 9, 1, tzinfo=shanghai).timestamp()])


@pytest.fixture
def two_weeks_bot(tiny_demo_bot: Path, tmp_path: Path) -> Path:
    """A copy of the tiny demo bot whose store holds :func:`two_weeks`."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    two_weeks(store)
    store.close()
    return root


@pytest.fixture
def in_shanghai(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time is Shanghai's (UTC+08:00) until the test ends."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_last_week_is_read_alone_beside_this_week(two_weeks_bot: Path, in_shanghai: None) -> None:
    """A week's figures could only be read with every week after it (--since alone): last week's containment
    could not be set beside this week's. ``--until`` closes the period. The dates are the machine's, whose
    offset the window says: "since 2026-11-23" of a server on UTC began at 08:00 in Shanghai."""
    root = two_weeks_bot

    last = stats_json(root, "--since", "2026-11-23T00:00+08:00", "--until", "2026-11-30T00:00+08:00")
    assert last["period"] == {"since": "2026-11-22T16:00:00+00:00", "until": "2026-11-29T16:00:00+00:00"}
    assert stats_json(root, "--since", "2026-11-23", "--until", "2026-11-30") == last  # a director's machine in Shanghai
    assert (last["conversations"], last["handed_off"], last["containment"]) == (2, 1, 0.5)
    this = stats_json(root, "--since", "2026-11-30T00:00+08:00", "--until", "2026-12-07 00:00+08:00")
    assert (this["conversations"], this["handed_off"], this["containment"]) == (1, 0, 1.0)
    printed = CliRunner().invoke(cli, ["stats", str(root), "--since", "2026-11-23", "--until", "2026-11-30"])
    assert printed.output.splitlines()[0] == "Demo Shop, since 2026-11-23 until 2026-11-30 (UTC+08:00)"
    backwards = CliRunner().invoke(cli, ["stats", str(root), "--since", "2026-11-30", "--until", "2026-11-23"])
    assert backwards.exit_code == 2 and "comes before --since" in backwards.output


def test_this_week_is_set_beside_the_last_in_one_read(two_weeks_bot: Path, in_shanghai: None) -> None:
    """Week over week took two reads, set side by side by hand. ``--compare`` adds the period of equal length just
    before, and each figure's change, to the figures as they were."""
    root = two_weeks_bot

    this_week = ("--since", "2026-11-30", "--until", "2026-12-07")
    both = stats_json(root, *this_week, "--compare")
    assert {key: value for key, value in both.items() if key not in ("previous", "change")} == stats_json(root, *this_week)
    assert both["previous"] == stats_json(root, "--since", "2026-11-23", "--until", "2026-11-30")
    change = both["change"]
    assert (change["conversations"], change["handed_off"], change["containment"]) == (-1, -1, 0.5)
    assert change["handoff_reasons"] == {"requested": -1}  # a reason the week did not give counts 0 in it
    assert change["first_agent_reply_seconds"] == {"median": None, "p90": None, "unanswered": -1}
    assert "top_unanswered" not in change and "period" not in change
    assert change["top_intents"] == {"track_order": -1}
    printed = CliRunner().invoke(cli, ["stats", str(root), *this_week, "--compare"]).output.splitlines()
    table = printed[printed.index("") + 1:]
    assert table[:4] == ["beside the previous period, since 2026-11-23 until 2026-11-30 (UTC+08:00)",
                         "                                now      before      change",
                         "  conversations                   1           2          -1",
                         "  kept by the bot           100.0 %      50.0 %   +50.0 pts"]
    assert "  agent reply, median             –           –           –" in table
    assert table[-1] == "  intent track_order              1           2          -1"
    to_now = stats_json(root, "--since", "2026-11-30", "--compare")["previous"]["period"]
    assert to_now["until"] == "2026-11-29T16:00:00+00:00" and "." not in to_now["since"]  # as long, in whole seconds
    assert stats_json(root, "--since", "0001-01-01T00:00Z", "--compare")["previous"]["conversations"] == 0  # year 1
    refused = CliRunner().invoke(cli, ["stats", str(root), "--compare"])
    assert refused.exit_code == 2 and "needs --since: all time has no period before it" in refused.output


def test_a_top_intent_is_set_beside_its_count_before_in_the_top_list_or_not(tmp_path: Path) -> None:
    """Which intents customers asked more of than the week before: one that rose into the top list was no new one."""
    store = Store(tmp_path / "dialogues.db")
    for conversation, intent, at in (("a", "track_order", 1000), ("b", "track_order", 1000), ("c", "get_refund", 1000),
                                     ("d", "get_refund", 2000), ("e", "get_refund", 2000)):
        exchange(store, conversation, "...", "template", intent)
        store.db.execute("UPDATE turns SET created = ? WHERE conversation_id = ?", [at, conversation])
    both = compared_with_previous(store, 1500, until=2500, top=1)
    assert (both["top_intents"], both["previous"]["top_intents"]) == ({"get_refund": 2}, {"track_order": 2})
    assert both["change"]["top_intents"] == {"get_refund": 1}  # one before, if not in that top
    store.close()


def test_the_figures_as_csv_for_a_spreadsheet(two_weeks_bot: Path, in_shanghai: None) -> None:
    """The figures came as a table to read or as JSON: a director keeping them week by week in a spreadsheet
    copied them by hand. ``--csv`` writes a row a figure, with ``--compare`` the previous value and the change."""
    import csv

    root = two_weeks_bot

    this_week = ("--since", "2026-11-30", "--until", "2026-12-07")
    shown = CliRunner().invoke(cli, ["stats", str(root), *this_week, "--csv"])
    rows = list(csv.reader(shown.stdout.splitlines()))
    assert rows[0] == ["figure", "value"] and ["conversations", "1"] in rows and ["sources.template", "1"] in rows
    assert ["first_agent_reply_seconds.median", ""] in rows and ["top_intents.track_order", "1"] in rows
    compared = CliRunner().invoke(cli, ["stats", str(root), *this_week, "--compare", "--csv"])
    rows = list(csv.reader(compared.stdout.splitlines()))
    assert rows[:2] == [["figure", "value", "previous", "change"],
                        ["period.since", "2026-11-29T16:00:00+00:00", "2026-11-22T16:00:00+00:00", ""]]
    assert ["containment", "1.0", "0.5", "0.5"] in rows
    assert ["handoff_reasons.requested", "0", "1", "-1"] in rows  # a reason this week did not give
    assert ["top_intents.track_order", "1", "2", "-1"] in rows
    refused = CliRunner().invoke(cli, ["stats", str(root), "--csv", "--json"])
    assert refused.exit_code == 2 and "--json or --csv" in refused.output


async def test_the_admin_api_reads_last_week_alone(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    two_weeks(store)
    expected = conversation_stats(store, datetime.fromisoformat("2026-11-23T00:00+08:00").timestamp(),
                                  until=datetime.fromisoformat("2026-11-30T00:00+08:00").timestamp())
    store.close()
    assert expected["conversations"] == 2
    client = await aiohttp_client(create_app(root, device="cpu"))
    admin = {"Authorization": "Bearer t"}
    served = await client.get("/admin/stats", params={"since": "2026-11-23T00:00+08:00", "until": "2026-11-30T00:00+08:00"},
                              headers=admin)
    assert served.status == 200 and await served.json() == expected
    for until in ("2026-11-20T00:00+08:00", "next week"):
        wrong = await client.get("/admin/stats", params={"since": "2026-11-23T00:00+08:00", "until": until}, headers=admin)
        assert wrong.status == 400 and (await wrong.json())["error"].startswith("until: "), until
    empty = await client.get("/admin/stats", params={"since": "2026-11-23", "until": "2026-11-23"}, headers=admin)
    assert empty.status == 200 and (await empty.json())["conversations"] == 0  # a period of no time: all zero
    this_week = {"since": "2026-11-30T00:00+08:00", "until": "2026-12-07T00:00+08:00"}
    both = await client.get("/admin/stats", params={**this_week, "compare": "previous"}, headers=admin)
    both_json = await both.json()
    assert both.status == 200 and both_json["previous"] == expected and both_json["change"]["conversations"] == -1
    first = await client.get("/admin/stats", params={"since": "0001-01-01T00:00Z", "compare": "previous"}, headers=admin)
    assert first.status == 200 and (await first.json())["previous"]["period"]["since"].startswith("0001-01-01")
    for wrong in ({**this_week, "compare": "last"}, {"compare": "previous"}):  # all time has no period before it
        refused = await client.get("/admin/stats", params=wrong, headers=admin)
        assert refused.status == 400 and (await refused.json())["error"].startswith("compare: "), wrong


async def test_the_admin_api_gives_the_figures_as_csv(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    """`bot stats --csv` needs the bot's disk: a spreadsheet fed from the server's API had the JSON alone."""
    import csv

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    two_weeks(store)
    store.close()
    client = await aiohttp_client(create_app(root, device="cpu"))
    admin = {"Authorization": "Bearer t"}
    this_week = {"since": "2026-11-30T00:00+08:00", "until": "2026-12-07T00:00+08:00"}
    served = await client.get("/admin/stats", params={**this_week, "compare": "previous", "format": "csv"}, headers=admin)
    assert served.status == 200 and served.content_type == "text/csv"
    rows = list(csv.reader((await served.text()).splitlines()))
    assert rows[0] == ["figure", "value", "previous", "change"] and ["containment", "1.0", "0.5", "0.5"] in rows
    as_json = await client.get("/admin/stats", params={**this_week, "format": "json"}, headers=admin)
    assert as_json.status == 200 and (await as_json.json())["conversations"] == 1
    refused = await client.get("/admin/stats", params={"format": "xlsx"}, headers=admin)
    assert refused.status == 400 and (await refused.json())["error"].startswith("format: ")


def three_channels(store: Store) -> None:
    """The worked example's four conversations on the web chat; on Slack one kept and one handed off; on WeCom
    one kept."""
    worked_example(store)
    exchange(store, "slack kept", "where is my order", "template", channel="slack")
    exchange(store, "slack lost", "???", "fallback", None, channel="slack")
    store.set_status("slack lost", "handed_off", "fallbacks", channel="slack")
    exchange(store, "wecom kept", "我的订单在哪", "template", channel="wecom")


def test_each_channels_figures_are_read_alone(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """The figures mixed the web chat, Slack and WeCom: a channel whose customers all went to a person hid
    behind the others' containment."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    three_channels(store)
    store.close()

    every = stats_json(root)
    assert every["conversations"] == 7
    assert every["channels"] == {"web": {"conversations": 4, "handed_off": 3, "containment": 0.25},  # in one read
                                 "slack": {"conversations": 2, "handed_off": 1, "containment": 0.5},
                                 "wecom": {"conversations": 1, "handed_off": 0, "containment": 1.0}}
    printed = CliRunner().invoke(cli, ["stats", str(root)]).output.splitlines()
    assert printed[4] == "      by channel     web 3 of 4 (75.0 %), slack 1 of 2 (50.0 %), wecom 0 of 1 (0.0 %)"
    web, slack, wecom = (stats_json(root, "--channel", channel) for channel in ("web", "slack", "wecom"))
    assert (web["conversations"], web["containment"], web["messages"], web["feedback"]) == (4, 0.25, 7, {"up": 1, "down": 1})
    assert (slack["conversations"], slack["containment"], slack["handoff_reasons"]) == (2, 0.5, {"fallbacks": 1})
    assert slack["channels"] == {"slack": every["channels"]["slack"]}
    assert slack["sources"] == {"template": 1, "retrieval": 0, "action": 0, "fallback": 1, "handoff": 0}
    assert (wecom["conversations"], wecom["containment"], wecom["first_agent_reply_seconds"]["unanswered"]) == (1, 1.0, 0)
    printed = CliRunner().invoke(cli, ["stats", str(root), "--channel", "slack"])
    assert printed.output.splitlines()[0] == "Demo Shop (slack), all time"
    # Week over week, each channel's rows too: its containment's change was in the JSON and CSV alone
    compared = CliRunner().invoke(cli, ["stats", str(root), "--since", "2020-01-01", "--compare"]).output.splitlines()
    assert "  slack conversations             2           0          +2" in compared
    assert "  slack kept by the bot      50.0 %           –           –" in compared
    assert "  wecom kept by the bot     100.0 %           –           –" in compared
    one = CliRunner().invoke(cli, ["stats", str(root), "--since", "2020-01-01", "--compare", "--channel", "slack"])
    assert "slack kept by the bot" not in one.output  # the figures above are that channel's
    for wrong in ("wechat", "cli"):  # a typo, or the shop's own tries: no quiet week of zeros
        refused = CliRunner().invoke(cli, ["stats", str(root), "--channel", wrong])
        assert refused.exit_code == 2 and "is none of web, slack, wecom" in refused.output, wrong


async def test_the_admin_api_serves_one_channels_figures(tiny_demo_bot: Path, tmp_path: Path,
                                                         aiohttp_client: Any) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    three_channels(store)
    expected = conversation_stats(store, channel="slack")
    store.close()
    client = await aiohttp_client(create_app(root, device="cpu"))
    admin = {"Authorization": "Bearer t"}
    served = await client.get("/admin/stats", params={"channel": "slack"}, headers=admin)
    assert served.status == 200 and await served.json() == expected and expected["conversations"] == 2
    wrong = await client.get("/admin/stats", params={"channel": "wechat"}, headers=admin)
    assert wrong.status == 400 and (await wrong.json())["error"].startswith("channel: "), await wrong.text()


async def test_each_languages_figures_are_read_alone(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    """English and Chinese customers' conversations were counted together: the Chinese ones' containment could
    not be told from the English ones'."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    for conversation, text in (("en-kept", "where is my order"), ("en-asked", "/handoff"), ("zh-kept", "我的订单在哪里"),
                               ("zh-asked", "我的订单在哪里"), ("zh-asked", "/handoff")):
        await ask(client, conversation, text)
    admin = {"Authorization": "Bearer t"}
    for language, conversations in (("en", 2), ("zh", 2)):
        served = await (await client.get("/admin/stats", params={"language": language}, headers=admin)).json()
        assert (served["conversations"], served["handed_off"], served["containment"]) == (conversations, 1, 0.5)
        assert served["messages"] == conversations + (language == "zh")
    printed = CliRunner().invoke(cli, ["stats", str(root), "--language", "zh", "--channel", "web"])
    assert printed.output.splitlines()[:2] == ["Demo Shop (web) (zh), all time", "  conversations           2"]
    refused = CliRunner().invoke(cli, ["stats", str(root), "--language", "fr"])
    assert refused.exit_code == 2 and "'fr' is neither of en, zh" in refused.output
    wrong = await client.get("/admin/stats", params={"language": "fr"}, headers=admin)
    assert wrong.status == 400 and (await wrong.json())["error"].startswith("language: ")
    # A bot of one language holds every conversation in it, and none in the other.
    assert (language_kept("en", "en"), language_kept(None, "multi"), language_kept("zh", "multi")) == (None, None, "zh")
    with pytest.raises(ValueError, match="speaks en alone"):
        language_kept("zh", "en")


def test_the_questions_the_bot_could_not_answer_most_asked_first(tmp_path: Path) -> None:
    """The figures said how many messages fell back, not which: the questions to teach the bot next were not
    among them."""
    store = Store(tmp_path / "dialogues.db")
    for conversation, text in (("c1", "Do you ship to Canada?"), ("c2", "do you ship to canada? "), ("c3", "发票怎么开"),
                               ("c3", "/inform{\"size\": 9}"), ("c4", "Do you ship to Canada?")):
        exchange(store, conversation, text, "fallback", None)
    exchange(store, "c5", "where is my order", "template")  # answered
    store.log_exchange(Exchange("cli:1", "cli", None, "发票怎么开", None, "...", None, 0.9, [], "fallback", "v0001"))
    assert conversation_stats(store)["top_unanswered"] == {"Do you ship to Canada?": 3, "发票怎么开": 1}
    assert conversation_stats(store, top=1)["top_unanswered"] == {"Do you ship to Canada?": 3}
    store.close()


def test_a_question_the_bot_could_not_answer_is_shown_as_a_customer_typed_it(tmp_path: Path) -> None:
    """The list showed "在吗?", as the model read it, where the customers typed "在吗？" with a Chinese input method."""
    store = Store(tmp_path / "dialogues.db")
    for conversation in ("c1", "c2"):
        store.log_exchange(Exchange(conversation, "web", None, "在吗?", "在吗？", "...", None, 0.9, [], "fallback", "v0001"))
    assert conversation_stats(store)["top_unanswered"] == {"在吗？": 2}
    store.close()


def test_a_question_the_bot_could_not_answer_counts_once_in_either_chinese_script(tmp_path: Path) -> None:
    """Customers in Hong Kong and Beijing asking one question were two questions among those the bot missed, each
    counted apart, and a third less asked one came before either."""
    store = Store(tmp_path / "dialogues.db")
    for conversation, text in (("hk", "發票怎麼開"), ("bj", "发票怎么开"), ("sh", "发票怎么开"), ("a", "能开专票吗"),
                               ("b", "能开专票吗"), ("tw", "發票 怎麼開")):
        exchange(store, conversation, text, "fallback", None)
    assert conversation_stats(store)["top_unanswered"] == {"发票怎么开": 4, "能开专票吗": 2}
    assert conversation_stats(store, top=1)["top_unanswered"] == {"发票怎么开": 4}
    store.close()


def test_what_customers_said_was_wrong_most_said_first(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """The figures counted the thumbs-down, never why: a director had to open conversation after conversation for
    the customers' comments. Those saying only that the answer missed ("不对") are no reason, nor a vote taken back."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    for conversation, value, comment in (("c1", -1, "It never said how long a refund takes"), ("c2", -1, "不对"),
                                         ("c3", -1, "it never said how long a refund takes "), ("c4", -1, "链接打不开"),
                                         ("c5", 1, "great"), ("c6", 0, "Wrong shop")):
        store.add_feedback(conversation, exchange(store, conversation, "refund?", "template")[1], value, comment)
    assert conversation_stats(store)["top_complaints"] == {"It never said how long a refund takes": 2, "链接打不开": 1}
    assert conversation_stats(store, top=1)["top_complaints"] == {"It never said how long a refund takes": 2}
    store.close()
    printed = CliRunner().invoke(cli, ["stats", str(root)]).output.splitlines()
    at = printed.index("  what was wrong          2   It never said how long a refund takes")
    assert printed[at + 1] == "                          1   链接打不开"


def test_a_long_chinese_question_is_cut_to_the_columns_of_a_long_english_one(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """bot stats cut a long message at 60 characters: a Chinese one, two columns a character, took 120 and wrapped the
    table in a terminal, where an English one took 60."""
    from bot.review import columns

    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    english = "I ordered a pair of running shoes three weeks ago and they still have not arrived, what now?"
    chinese = "我三个星期前在你们网店买了一双跑鞋，到现在还没有收到，物流信息也一直没有更新，请问应该怎么办？"
    for conversation, text in (("c1", english), ("c1", english), ("c2", chinese)):
        exchange(store, conversation, text, "fallback", None)
    store.close()
    printed = CliRunner().invoke(cli, ["stats", str(root)]).output.splitlines()
    at = next(n for n, line in enumerate(printed) if line.startswith("  top unanswered"))
    assert printed[at] == "  top unanswered          2   I ordered a pair of running shoes three weeks ago and they …"
    assert printed[at + 1] == "                          1   我三个星期前在你们网店买了一双跑鞋，到现在还没有收到，物流…"
    assert columns(printed[at + 1]) <= columns(printed[at])  # a wide character left out where one column is left


def test_the_conversations_rated_and_those_whose_every_vote_said_helpful(tmp_path: Path) -> None:
    """The thumbs were counted reply by reply alone: how many customers were pleased with their conversation, the
    figure nearest a satisfaction score, could not be read. A conversation with a vote either way is not one."""
    store = Store(tmp_path / "dialogues.db")
    for conversation, votes in (("pleased", (1, 1)), ("mixed", (1, -1)), ("cross", (-1,)), ("withdrawn", (0,)),
                                ("silent", ())):
        for value in votes:
            store.add_feedback(conversation, exchange(store, conversation, "where is my order", "template")[1], value)
    assert conversation_stats(store)["rated_conversations"] == {"rated": 3, "all_helpful": 1, "share": 0.3333}
    assert conversation_stats(store, since=4e9)["rated_conversations"] == {"rated": 0, "all_helpful": 0, "share": None}
    store.close()


def test_a_wait_the_customer_gave_up_on_is_unanswered_not_answered_by_a_later_reply(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    store.set_status("c1", "handed_off", "requested")  # at 1000, nobody answers
    store.set_status("c1", "open", "user")  # 1002: back to the bot
    store.set_status("c1", "handed_off", "requested")  # 1004
    store.add_message("c1", "agent", "Sorry for the wait!")  # 1005
    for n, row in enumerate(store.db.execute("SELECT id FROM handoffs ORDER BY id").fetchall()):
        store.db.execute("UPDATE handoffs SET created = ? WHERE id = ?", [1000 + 2 * n, row[0]])
    store.db.execute("UPDATE turns SET created = 1005 WHERE role = 'agent'")
    assert conversation_stats(store)["first_agent_reply_seconds"] == {"median": 1.0, "p90": 1.0, "unanswered": 1}
    store.close()


def test_a_takeover_of_an_older_conversation_with_nothing_said_since_is_not_counted(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    exchange(store, "old", "where is my order", "template")
    store.db.execute("UPDATE turns SET created = 1000")
    store.set_status("old", "handed_off", "agent")
    stats = conversation_stats(store, since=2000)
    assert (stats["conversations"], stats["handed_off"], stats["containment"]) == (0, 0, None)
    assert stats["handoff_reasons"] == {}  # nor is its reason
    store.close()


def test_a_conversation_spent_with_a_person_since_is_not_one_the_bot_kept(tmp_path: Path) -> None:
    """Handed off yesterday and talking to an agent today, it raised today's containment."""
    store = Store(tmp_path / "dialogues.db")
    exchange(store, "agent's", "/handoff", "handoff", None)
    store.set_status("agent's", "handed_off", "requested")
    store.db.execute("UPDATE turns SET created = 1000")
    store.db.execute("UPDATE handoffs SET created = 1000")
    exchange(store, "agent's", "are you there?", "silent", None)
    exchange(store, "bot's", "where is my order", "template")
    stats = conversation_stats(store, since=2000)
    assert (stats["conversations"], stats["handed_off"], stats["containment"]) == (1, 0, 1.0)
    assert (stats["messages"], stats["while_with_a_person"]) == (1, 1)
    store.close()


def test_a_message_deleted_before_it_was_answered_is_neither_the_bots_nor_a_persons(tmp_path: Path) -> None:
    """A Slack message its customer deleted while the bot worked on it, not answered, counted as one sent while a
    person had the conversation, where nobody had it; and its conversation as one the bot kept."""
    store = Store(tmp_path / "dialogues.db")
    kept = store.receive("k1", "gone", "slack", "U1", "where is my order", {})
    store.replace_message("gone", "k1", None, recent=True)
    store.log_exchange(Exchange("gone", "slack", "U1", "where is my order", None, "It left today.", "track_order", 0.9,
                                [], "template", "v1", pending_id=kept))
    exchange(store, "bot's", "where is my order", "template")
    stats = conversation_stats(store)
    assert (stats["conversations"], stats["messages"], stats["while_with_a_person"]) == (1, 1, 0)
    store.close()


def test_the_reasons_count_each_conversation_handed_off_once(tmp_path: Path) -> None:
    """Asking for a person, going back to the bot and asking again made two "requested" of one conversation
    that went to a person: the reasons added up to more than the conversations."""
    store = Store(tmp_path / "dialogues.db")
    exchange(store, "twice", "/handoff", "handoff", None)
    store.set_status("twice", "handed_off", "requested")
    store.set_status("twice", "open", "user")
    store.set_status("twice", "handed_off", "fallbacks")
    stats = conversation_stats(store)
    assert (stats["handed_off"], stats["handoff_reasons"]) == (1, {"fallbacks": 1})  # its latest reason
    store.close()


async def test_the_admin_api_serves_the_same_figures(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    worked_example(store)
    expected = conversation_stats(store)
    store.close()
    client = await aiohttp_client(create_app(root, device="cpu"))
    assert (await client.get("/admin/stats")).status == 401
    served = await client.get("/admin/stats", headers={"Authorization": "Bearer t"})
    assert served.status == 200 and await served.json() == expected
    later = await client.get("/admin/stats?since=2099-01-01", headers={"Authorization": "Bearer t"})
    assert (await later.json())["conversations"] == 0
    # The console's "today" starts at the agent's midnight, sent with its offset: not the server's midnight.
    hour_ago = datetime.now(timezone(timedelta(hours=8))) - timedelta(hours=1)
    for since, conversations in ((hour_ago.isoformat(timespec="seconds"), expected["conversations"]),
                                 ((hour_ago + timedelta(hours=2)).astimezone(timezone.utc).isoformat()[:23] + "Z", 0)):
        served = await client.get("/admin/stats", params={"since": since}, headers={"Authorization": "Bearer t"})
        assert served.status == 200 and (await served.json())["conversations"] == conversations, since
    for since, conversations in (("2000-01-01 00:00+08:00", expected["conversations"]), ("2099-01-01 04:00Z", 0),
                                 ("2099-01-01T04:00:00+0800", 0)):  # as `bot stats --since` reads them
        served = await client.get("/admin/stats", params={"since": since}, headers={"Authorization": "Bearer t"})
        assert served.status == 200 and (await served.json())["conversations"] == conversations, since
    for since in ("yesterday", "2026-W01", "20260101", "2026-12-04T16:00:00", "2026-12-04 16:00", "2026-02-30"):
        # YYYY-MM-DD, or a time with its offset: the server's own local time is no one's
        wrong = await client.get(f"/admin/stats?since={since}", headers={"Authorization": "Bearer t"})
        assert wrong.status == 400 and "since" in (await wrong.json())["error"], since
    for limit in ("+5", "1_0", "\uff15", "-1"):  # the schema's integer, in ASCII digits
        wrong = await client.get("/admin/conversations", params={"limit": limit}, headers={"Authorization": "Bearer t"})
        assert wrong.status == 400 and "limit: must be a number" in (await wrong.json())["error"], limit


@contextlib.asynccontextmanager
async def figures_held(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any,
                       monkeypatch: Any) -> AsyncIterator[tuple[Any, asyncio.Task[Any]]]:
    """A server on the worked example whose figures (GET /admin/stats) are being read while the block runs, held as a
    large store's all-time figures are for seconds: its client, and the figures' request, answered once it ends."""
    import bot.server

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    worked_example(store)
    store.close()
    reading, release = threading.Event(), threading.Event()

    def slow_stats(store: Store, since: float = 0.0, **window: Any) -> dict[str, Any]:
        reading.set()
        release.wait(60)  # as a long read does: what the block asks must not wait for it
        return conversation_stats(store, since, **window)

    monkeypatch.setattr(bot.server, "conversation_stats", slow_stats)
    client = await aiohttp_client(create_app(root, device="cpu"))
    figures = asyncio.create_task(client.get("/admin/stats", headers={"Authorization": "Bearer t"}))
    try:
        assert await asyncio.to_thread(reading.wait, 30)
        yield client, figures
    finally:
        release.set()


async def test_a_customer_is_answered_while_the_figures_are_read(tiny_demo_bot: Path, tmp_path: Path,
                                                                 aiohttp_client: Any, monkeypatch: Any) -> None:
    """The all-time figures of a large store take seconds; read on the store's thread, they held up every
    customer's turn (a conversation read took 4 s, not 1 ms). They are read on a connection of their own, and a
    widget's message is looked up (whose conversation, the reply kept for its message_id) on another."""
    async with figures_held(tiny_demo_bot, tmp_path, aiohttp_client, monkeypatch) as (client, figures):
        message = {"conversation_id": "meanwhile", "message_id": "m-1", "text": "where is my order"}
        reply = await asyncio.wait_for(client.post("/api/chat", json=message), 30)
        assert reply.status == 200
    assert (await (await figures).json())["conversations"] == 4  # as committed when the read began
    again = await (await client.get("/admin/stats", headers={"Authorization": "Bearer t"})).json()
    assert again["conversations"] == 5  # and the next read sees the customer's turn


async def test_the_agents_inbox_is_read_while_the_figures_are(tiny_demo_bot: Path, tmp_path: Path,
                                                             aiohttp_client: Any, monkeypatch: Any) -> None:
    """A dashboard's all-time figures of a large store took 14 s on the admin's reads' thread, and every agent's
    console poll of their inbox waited behind them. The figures are read on a thread of their own."""
    async with figures_held(tiny_demo_bot, tmp_path, aiohttp_client, monkeypatch) as (client, figures):
        inbox = await asyncio.wait_for(client.get("/admin/conversations?agent=Ana",
                                                  headers={"Authorization": "Bearer t"}), 30)
        assert inbox.status == 200 and not figures.done()
    assert (await figures).status == 200


async def test_the_same_figures_asked_again_with_nothing_committed_since_are_read_once(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """Every agent's console asks for the day's figures every 30 s, and each ask read them anew: ten consoles, ten reads
    of the same turns. Asked again with nothing committed since, the figures read before are answered; a customer's
    message since is counted at the next ask, and each period or channel asked is read for itself. A comparison up to
    now, whose previous period moves with the clock, is read at each ask."""
    import bot.server

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    store = Store(root / "dialogues.db")
    worked_example(store)
    store.close()
    read: list[dict[str, Any]] = []

    def counted(store: Store, since: float = 0.0, **window: Any) -> dict[str, Any]:
        read.append({"since": since, **window})
        return conversation_stats(store, since, **window)

    import dialogues.stats

    for module in (bot.server, dialogues.stats):  # the server's reads, and those of a comparison
        monkeypatch.setattr(module, "conversation_stats", counted)
    client = await aiohttp_client(create_app(root, device="cpu"))

    async def figures(**asked: str) -> dict[str, Any]:
        served = await client.get("/admin/stats", params=asked, headers={"Authorization": "Bearer t"})
        assert served.status == 200
        return await served.json()

    today = {"since": "2000-01-01T00:00:00+08:00"}
    first = await figures(**today)
    assert await figures(**today) == first and len(read) == 1
    assert (await figures(**today, channel="slack"))["conversations"] == 0 and len(read) == 2
    assert await figures(**today) == first and len(read) == 2  # both kept
    await client.post("/api/chat", json={"conversation_id": "meanwhile", "text": "where is my order"})
    assert (await figures(**today))["conversations"] == first["conversations"] + 1 and len(read) == 3
    for _ in range(2):
        await figures(**today, compare="previous")
    assert len(read) == 7  # each ask, and its previous period


async def test_a_customers_way_back_to_the_bot_is_not_a_handoff(tiny_demo_bot: Path, tmp_path: Path,
                                                              aiohttp_client: Any) -> None:
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    for text, source in (("/handoff", "handoff"), ("/resume", "resume"), ("/resume", "resume")):
        response = await client.post("/api/chat", json={"conversation_id": "back", "text": text})
        assert (await response.json())["source"] == source
    stats = await (await client.get("/admin/stats", headers={"Authorization": "Bearer t"})).json()
    assert (stats["sources"]["handoff"], stats["messages"], stats["handed_off"]) == (1, 1, 1)
    metrics = await (await client.get("/metrics")).text()  # the same in the server's own counters
    assert 'deskbot_messages_total{channel="web",source="handoff",status="ok"} 1.0' in metrics
    assert 'deskbot_messages_total{channel="web",source="resume",status="ok"} 2.0' in metrics


RENAMES_READ = {"SCAN intent_renames", "SCAN renamed"}  # the renames of intents and their chains (dialogues.store)


def test_the_figures_since_a_moment_read_that_window_not_the_whole_store(tmp_path: Path) -> None:
    """Every conversation was listed at each call: on a store of 200,000 the figures for today took 4 s, and
    the store thread that reads and logs customers' turns waited for them (the agents' console asks every few
    seconds). Each query goes by the ``created`` indexes and reads no table whole, but the intents ``bot relabel``
    renamed, a handful of rows, which the query joins by name."""
    store = Store(tmp_path / "dialogues.db")
    worked_example(store)
    store.log_exchange(Exchange("cli:1", "cli", None, "hello", None, "...", None, 0.9, [], "fallback", "v0001"))
    queries: list[str] = []
    store.db.conn.set_trace_callback(queries.append)
    conversation_stats(store, since=2000)
    conversation_stats(store, since=2000, until=3000, channel="slack")
    store.db.conn.set_trace_callback(None)
    assert len(queries) >= 14
    for sql in queries:
        plan = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
        assert not [step for step in plan if step.startswith("SCAN") and step not in RENAMES_READ], (sql, plan)
    store.close()


def test_each_channels_figures_since_a_moment_read_none_of_that_channels_conversations_before_it(tmp_path: Path) -> None:
    """The console asks for today's figures every 30 s, each channel's beside the others': each channel's went over every
    conversation the store held on that channel, looked up in the turns, 0.5 s with 100,000 web conversations however
    few today held. The conversations before the window add nothing to the figures, nor a step per conversation to
    reading them, for every channel and for one channel or language alone."""
    store = Store(tmp_path / "dialogues.db")
    worked_example(store)

    def read(**asked: str) -> tuple[int, dict[str, Any]]:
        steps, figures = [0], [{}]

        def step() -> int:
            steps[0] += 1
            return 0

        store.db.conn.set_progress_handler(step, 1)
        try:
            figures[0] = conversation_stats(store, since=2000, **asked)
        finally:
            store.db.conn.set_progress_handler(None, 1)
        return steps[0], figures[0]

    asked: list[dict[str, str]] = [{}, {"channel": "web"}, {"language": "en"}]
    before = [read(**each) for each in asked]
    store.log_exchanges([Exchange(f"old-{i}", "web", None, "where is my order", None, "Soon.", "track_order", 0.9,
                                  [("track_order", 0.9)], "template", "v0001", slots={"language": "en"})
                         for i in range(200)])
    for table in ("turns", "conversations"):  # a week before the window
        store.db.execute(f"UPDATE {table} SET created = 1000 - 7 * 86400 WHERE {'conversation_id' if table == 'turns' else 'id'} "
                         "LIKE 'old-%'")
    for each, (steps, figures) in zip(asked, before):
        more, same = read(**each)
        assert same == figures and more - steps < 200, (each, steps, more)  # not a step more for each of them
    store.close()


async def test_metrics_count_refusals_and_do_not_wait_behind_a_stuck_store(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """A 400, a 401 or the limits' 429 showed nowhere in /metrics, and a scrape waited 29 s behind a store
    another process held: past Prometheus's 10 s the figures were lost exactly when they mattered."""
    import time

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    assert (await client.post("/api/chat", data=b"{not json")).status == 400
    assert (await client.get("/admin/stats")).status == 401
    widget = await client.get("/widget.js")
    again = await client.get("/widget.js", headers={"If-None-Match": widget.headers["ETag"]})
    assert again.status == 304  # a file's status is known only as it goes out
    metrics = await (await client.get("/metrics")).text()
    assert 'deskbot_http_responses_total{status="400"} 1.0' in metrics
    assert 'deskbot_http_responses_total{status="401"} 1.0' in metrics
    assert 'deskbot_http_responses_total{status="304"} 1.0' in metrics

    def stuck(store: Store) -> Any:
        time.sleep(4.5)
        raise AssertionError("not waited for")

    monkeypatch.setattr(Store, "waiting", stuck)
    started = time.monotonic()
    scraped = await client.get("/metrics")
    assert scraped.status == 200 and time.monotonic() - started < 3.5
    assert "deskbot_customers_waiting" in await scraped.text()


async def test_metrics_answer_when_the_store_cannot_be_read(tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any,
                                                           caplog: Any) -> None:
    """The store's file gone before the first scrape: every scrape answered 500 with a traceback, and Prometheus
    lost the traffic and latency figures with it, and took the bot for down."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    assert (await client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order"})).status == 200
    (tmp_path / "aside").mkdir()
    for path in root.glob("dialogues.db*"):
        path.rename(tmp_path / "aside" / path.name)
    scraped = await client.get("/metrics")
    assert scraped.status == 200
    values = {(s.name, tuple(s.labels.values())): s.value
              for family in text_string_to_metric_families(await scraped.text()) for s in family.samples}
    assert sum(v for (name, _), v in values.items() if name == "deskbot_messages_total") == 1
    assert values[("deskbot_customers_waiting", ())] == 0
    assert "Traceback" not in caplog.text and "/metrics: the customers waiting are as last read; the store cannot " \
        "be read" in caplog.text


async def test_healthz_is_not_ready_while_the_store_cannot_write_and_ready_again_once_it_can(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """A full disk gave every customer a 503 while /healthz said "ok", so a load balancer kept sending them. Each
    check tries a write then, but not each call: /healthz answers anyone, uncounted, and every call queued a write
    ahead of the customers' on the store's one thread (with the store locked, 30 s each)."""
    import sqlite3

    monkeypatch.setattr("bot.server.HEALTH_PROBE_S", 2.0)
    monkeypatch.setattr("bot.server.STORE_WATCH_S", 3600.0)  # the checks' writes alone are counted
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    store = client.app[BOT].store
    real = store.db.execute
    full = {"on": True}
    probe, probes = store.probe, []
    held = threading.Event()  # set: the store's lock is let go

    def counted_probe() -> None:
        probes.append(1)
        if len(probes) == 2:  # another process holds the store locked: this write waits till let go
            assert held.wait(60)
        probe()

    monkeypatch.setattr(store, "probe", counted_probe)

    def execute(sql: str, *args: Any) -> Any:
        if full["on"] and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            disk_full = sqlite3.OperationalError("database or disk is full")
            disk_full.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite sets it
            raise disk_full
        return real(sql, *args)

    monkeypatch.setattr(store.db, "execute", execute)
    assert (await client.get("/healthz")).status == 200  # nothing has failed yet
    assert (await client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order"})).status == 503
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["error"] == "the conversation store cannot write: database or disk is full"
    floods = await asyncio.gather(*(client.get("/healthz") for _ in range(20)), client.get("/healthz"))
    assert [r.status for r in floods] == [503] * 21 and len(probes) == 1  # the check's one write, remembered
    monkeypatch.setattr("bot.server.STORE_WAIT_S", 0.1)
    for _ in range(2):  # a write that has not returned is not tried again beside it, however long it waits
        await asyncio.sleep(2.1)
        assert (await client.get("/healthz")).status == 503 and len(probes) == 2
    full["on"] = False  # room on the disk again: the waiting write succeeds
    held.set()
    await asyncio.sleep(0.2)
    assert (await client.get("/healthz")).status == 200 and len(probes) == 2
    assert (await client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order"})).status == 200


async def test_healthz_answers_within_its_wait_on_the_store_while_each_of_its_checks_waits(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """/healthz waited up to ``STORE_WAIT_S`` on each of its checks of a slow store, one after another: the schema
    read, and the store's and the renewals' writes while they fail, up to three times that in all, past the
    Dockerfile's 4 s probe timeout, which read as the server gone instead of a 503 saying why. The checks run side by side, all
    waited for ``STORE_WAIT_S`` at most."""
    monkeypatch.setattr("bot.server.STORE_WAIT_S", 1.0)
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    answering, answering_thread = asyncio.Event(), threading.Event()  # set: the store answers again
    probe = bot.store.probe

    async def slow_look_up(*args: Any) -> Any:  # the schema read, on a disk that does not answer
        await answering.wait()

    def slow_probe() -> None:  # the store's write, on the store's thread
        assert answering_thread.wait(60)
        probe()

    async def slow_renewals_probe() -> None:  # the renewals' write
        await answering.wait()

    monkeypatch.setattr(bot, "_look_up", slow_look_up)
    monkeypatch.setattr(bot.store, "probe", slow_probe)
    monkeypatch.setattr(bot, "probe_renewals", slow_renewals_probe)
    bot.store.failing = "database or disk is full"
    bot._renewals_failed = time.monotonic() - 3600.0
    try:
        began = time.monotonic()
        health = await client.get("/healthz")
        took = time.monotonic() - began
    finally:
        answering.set()
        answering_thread.set()
    assert health.status == 503
    assert (await health.json())["error"] == "the conversation store cannot write: database or disk is full"
    assert took < 1.5  # one after another, the schema read and the store's write took 2 s


async def test_healthz_is_not_ready_while_a_write_waits_long_for_another_processs_lock(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """A sqlite3 shell left in a transaction held every customer's message up, up to the 30 s busy timeout, while
    /healthz said "ok": a load balancer kept sending customers to a server that could not answer them. /metrics
    shows the waits, those too short for /healthz to turn 503 included."""
    from dialogues import store as store_module

    monkeypatch.setattr(store_module, "SLOW_LOCK_S", 0.3)
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    holder = sqlite3.connect(root / "dialogues.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    chat = asyncio.create_task(client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order"}))
    await asyncio.sleep(0.1)
    assert (await client.get("/healthz")).status == 200  # a moment's wait is no trouble
    await asyncio.sleep(0.5)
    health = await client.get("/healthz")
    assert health.status == 503 and not chat.done()
    assert (await health.json())["error"].startswith("the conversation store's writes have waited 0.")
    assert lock_waits(await (await client.get("/metrics")).text())["deskbot_store_lock_waiting_seconds"] >= 0.3
    holder.execute("COMMIT")
    assert (await chat).status == 200
    assert (await client.get("/healthz")).status == 200
    holder.close()
    waits = lock_waits(await (await client.get("/metrics")).text())
    assert waits["deskbot_store_lock_waiting_seconds"] == 0 and waits["deskbot_store_lock_wait_seconds_sum"] >= 0.3
    assert waits["deskbot_store_lock_wait_seconds_count"] - waits['deskbot_store_lock_wait_seconds_bucket{le="0.25"}'] == 1


async def test_healthz_is_not_ready_while_a_write_waits_on_a_disk_that_stopped_answering(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: Any) -> None:
    """A disk that stopped answering (a network volume whose server went away) held a write, and every customer's
    message behind it, for as long as it lasted, while /healthz said "ok": a load balancer kept sending customers to a
    server that could not answer them. A write that has held the store's lock ``STUCK_WRITE_S`` turns it 503."""
    from dialogues import store as store_module

    monkeypatch.setattr(store_module, "STUCK_WRITE_S", 0.0)  # any write under way, for the test to hold one
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    assert (await client.get("/healthz")).status == 200
    store, committing, answered = client.app[BOT].store, threading.Event(), threading.Event()
    execute = store.db.execute

    def hung_disk(sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not answered.is_set():  # as a commit's fsync waits on a disk that does not answer
            committing.set()
            answered.wait()
        return execute(sql, *args)

    monkeypatch.setattr(store.db, "execute", hung_disk)
    chat = asyncio.create_task(client.post("/api/chat", json={"conversation_id": "c1", "text": "where is my order"}))
    await asyncio.to_thread(committing.wait)
    health = await client.get("/healthz")
    assert health.status == 503 and not chat.done()
    assert re.fullmatch(r"a write to the conversation store has gone on for \d+ s: its disk stopped answering\? "
                        r"\(`dmesg`\)", (await health.json())["error"])
    answered.set()
    assert (await chat).status == 200
    assert (await client.get("/healthz")).status == 200


def lock_waits(metrics: str) -> dict[str, float]:
    """/metrics's figures of the store's waits for its lock, by sample (a bucket's with its bound)."""
    return {sample.name + "".join(f'{{le="{le}"}}' for le in [sample.labels.get("le")] if le): sample.value
            for family in text_string_to_metric_families(metrics) if family.name.startswith("deskbot_store_lock_wait")
            for sample in family.samples}


async def test_healthz_is_not_ready_once_the_stores_file_is_deleted_or_replaced_while_serving(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, caplog: Any) -> None:
    """A store deleted under a running server (a folder cleaned, a deploy syncing the bot folder with --delete)
    left it answering "ok" while every conversation went to the deleted file, lost at the next restart."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    db = root / "dialogues.db"
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in root.glob("dialogues.db*"):
        path.rename(aside / path.name)
    health = await client.get("/healthz")
    assert health.status == 503
    gone = "{} was deleted or moved while the server ran: it goes on writing to that file, and a deleted one is lost " \
        "when it stops"
    assert (await health.json())["error"] == gone.format("dialogues.db")  # anyone may ask: not where the bot lives
    assert (await client.get("/healthz")).status == 503
    said = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert said == [gone.format(db)]  # the log names the path, once, not at every probe
    for path in aside.iterdir():  # put back: the file it writes again
        path.rename(root / path.name)
    assert (await client.get("/healthz")).status == 200
    shutil.copy(db, tmp_path / "restored.db")  # a backup moved over it
    (tmp_path / "restored.db").rename(db)
    health = await client.get("/healthz")
    assert health.status == 503 and (await health.json())["error"].startswith("dialogues.db was replaced while the server ran")


async def test_healthz_is_not_ready_once_a_newer_deskbot_migrated_the_store_under_the_server(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any) -> None:
    """A newer deskbot's server started on the same store (a rolling upgrade) migrated it, and the older one went
    on answering "ok" and writing to a schema it does not know."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    assert (await client.get("/healthz")).status == 200
    with sqlite3.connect(root / "dialogues.db") as newer:
        newer.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["error"] == (
        f"the conversation store was migrated by a newer deskbot while this server ran (schema {len(MIGRATIONS) + 1}; "
        f"it knows up to {len(MIGRATIONS)}): stop it and serve the newer deskbot")


async def test_a_burst_of_healthz_probes_reads_the_schema_once_however_slow_the_store(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each /healthz queued a read of the store's schema on the look-ups' thread, which customers' messages wait on,
    and answered without it once the store was slow: a burst of probes queued reads without bound. The probes that
    come while a read is on its way share it; the next probe after it reads again."""
    import bot.server as serving

    root = configured_copy(tiny_demo_bot, tmp_path / "bot")
    client = await aiohttp_client(create_app(root, device="cpu"))
    release, reads = threading.Event(), []
    schema = Store.schema.fget

    def slow_schema(store: Store) -> int:
        reads.append(store)
        assert release.wait(60)
        return schema(store)

    monkeypatch.setattr(Store, "schema", property(slow_schema))
    checking, checks = asyncio.Event(), []
    check = serving.migrated_by_newer

    async def counted_check(*args: Any) -> str | None:
        checks.append(args)
        if len(checks) == 20:
            checking.set()
        return await check(*args)

    monkeypatch.setattr(serving, "migrated_by_newer", counted_check)
    burst = asyncio.gather(*(client.get("/healthz") for _ in range(20)))
    await checking.wait()  # every probe is checking the schema while the first read is held up
    release.set()
    assert [health.status for health in await burst] == [200] * 20
    bot = client.app[BOT]
    await bot._look_up(lambda store: None)  # what the probes queued on the look-ups' thread has run
    assert len(reads) == 1
    with sqlite3.connect(root / "dialogues.db") as newer:
        newer.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    assert (await client.get("/healthz")).status == 503 and len(reads) == 2


async def test_a_response_that_fails_after_it_went_out_is_counted_once(aiohttp_client: Any) -> None:
    """A WebSocket's 101 or a stream, then an error: the error's response was counted as a second one."""
    from types import SimpleNamespace

    from aiohttp import web

    from bot.metrics import Metrics
    from bot.server import json_errors, protective_headers

    async def streams_then_fails(request: web.Request) -> web.StreamResponse:
        await web.StreamResponse().prepare(request)
        raise ConnectionResetError("the client went away")

    app = web.Application(middlewares=[json_errors])
    app.on_response_prepare.append(protective_headers)
    app[BOT] = SimpleNamespace(metrics=Metrics())
    app.router.add_get("/stream", streams_then_fails)
    client = await aiohttp_client(app)
    with contextlib.suppress(Exception):
        await (await client.get("/stream")).read()
    counted = app[BOT].metrics.exposition()[0].decode()
    assert 'deskbot_http_responses_total{status="200"} 1.0' in counted
    assert 'status="500"' not in counted and 'status="400"' not in counted


def test_figures_and_exports_read_a_store_they_cannot_write(tiny_demo_bot: Path, tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    """`bot stats` and `bot export` opened the store for writing: on a backup restored to a read-only disk
    both said "cannot open it (attempt to write a readonly database)". They read it now."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    exchange(store, "c1", "where is my order", "template")
    store.add_labels([exchange(store, "c1", "my parcel is lost", "fallback")[0]], "track_order")
    store.close()
    connect = sqlite3.connect
    monkeypatch.setattr("dialogues.store.sqlite3.connect",  # as SQLite opens a file on a read-only disk
                        lambda name, **kwargs: connect(name if kwargs.get("uri") else f"file:{name}?mode=ro",
                                                       **{**kwargs, "uri": True}))
    figures = CliRunner().invoke(cli, ["stats", str(root), "--json"])
    assert figures.exit_code == 0, figures.output
    assert json.loads(figures.stdout)["messages"] == 2
    exported = CliRunner().invoke(cli, ["export", str(root)])
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["text"] for line in exported.stdout.splitlines()] == ["my parcel is lost"]
    refused = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])  # a command that writes still says it cannot
    assert refused.exit_code == 1 and "readonly database" in refused.output


def test_commands_that_read_read_an_older_deskbots_store_as_it_is_rather_than_migrate_or_refuse_it(
        tiny_demo_bot: Path, tmp_path: Path) -> None:
    """Deskbot upgraded, the older `bot serve` still running on the store: `bot stats`, `bot export` and `bot purge
    --dry-run`, which only read, refused it (a newer deskbot's had migrated it under that server, which then wrote to a
    schema it did not know), and the on-call engineer had no figures, no export and no list of what a purge deletes."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    labelled_in_the_last_deskbots_store(root / "dialogues.db", "my parcel is lost", "track_order", user="u1")

    stats = CliRunner().invoke(cli, ["stats", str(root), "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["conversations"] == 1
    exported = CliRunner().invoke(cli, ["export", str(root)])
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["text"] for line in exported.stdout.splitlines()] == ["my parcel is lost"]
    listed = CliRunner().invoke(cli, ["purge", str(root), "--user", "u1", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == "c1\tweb\tu1\n"
    with pytest.raises(StoreError, match=re.escape(f"is at migration {len(MIGRATIONS) - 1}, this deskbot needs "
                                                   f"{len(MIGRATIONS)}: start `bot serve` of this deskbot on it first")):
        read_store(load_project(root))  # a retrain's, which trains a model the older server would swap to
    assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    assert not list(root.glob("*.bak"))  # nothing migrated, nothing copied


def test_commands_that_read_a_store_too_old_to_read_as_it_is_say_what_to_run(tiny_demo_bot: Path,
                                                                               tmp_path: Path) -> None:
    """A store so old it lacks what a command reads is refused in one line naming what to run, not a traceback; it
    says to stop the older `bot serve` only while one runs on the store (it said so of a store no server ran on)."""
    from filelock import FileLock

    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    Store(root / "dialogues.db").close()
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as older:
        older.execute("DROP TABLE review_labels")  # as a deskbot from before review labels kept it
        older.execute("PRAGMA user_version=1")
    servers = root / ".dialogues.db.servers"
    servers.mkdir()
    (servers / f"{'a' * 32}.lock").touch()  # a server killed long ago: gone
    server = FileLock(servers / f"{'b' * 32}.lock", thread_local=False)
    for stop in ("", "stop its `bot serve` and "):
        for command in (["stats", str(root)], ["export", str(root)]):
            refused = CliRunner().invoke(cli, command)
            assert refused.exit_code == 1, refused.output
            assert refused.output.startswith(
                f"Error: {root / 'dialogues.db'} is at migration 1, an older deskbot's, which lacks what this reads (no "
                f"such table: review_labels): {stop}start this deskbot's, `bot serve {root}`, which migrates it "
                "(keeping a copy as it was), then run this again"), refused.output
            assert refused.output.count("\n") == 1
        server.acquire()  # as the older server holds its own while it runs
    server.release()
    assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (1,)


def test_figures_of_a_damaged_store_say_it_is_damaged_and_what_to_do(tiny_demo_bot: Path, tmp_path: Path) -> None:
    """`bot stats` and `bot export` of a store with damaged pages ended in a traceback."""
    root = Path(shutil.copytree(tiny_demo_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*")))
    store = Store(root / "dialogues.db")
    for n in range(40):
        store.add_labels([exchange(store, f"c{n}", f"where is my parcel {n}? " * 20, "fallback")[0]], "track_order")
    store.close()
    damage_table(root / "dialogues.db", "turns")
    for command in (["stats", str(root)], ["export", str(root)]):
        refused = CliRunner().invoke(cli, command)
        assert refused.exit_code == 1, refused.output
        assert refused.output.startswith("Error: the conversation store is damaged (database disk image is "
                                         "malformed). Stop the bot and put the latest good `bot backup` copy back")


async def test_the_agents_inbox_is_read_beside_the_store_writer(tiny_demo_bot: Path, tmp_path: Path,
                                                                aiohttp_client: Any) -> None:
    """Each console asks for the inbox every 3 s, on the thread that logs customers' messages: with many
    conversations handed off, the consoles held customers' turns up."""
    import threading

    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    release = threading.Event()
    writer = asyncio.ensure_future(client.app[BOT]._store(release.wait, 20))  # the writer busy
    try:
        listed = await asyncio.wait_for(client.get("/admin/conversations", headers={"Authorization": "Bearer t"}), 10)
        assert listed.status == 200 and (await listed.json())["total"] == 0
    finally:
        release.set()
        await writer


def test_an_answer_under_an_intents_old_name_is_right_once_its_labels_have_the_new(tmp_path: Path) -> None:
    """cancel_order renamed cancel_purchase, then cancel_request (`bot relabel` each time): the answers the bot gave
    under the old names, labelled right, counted as labelled with another intent once their labels had the new name,
    as did those the serving model gave under the old name before the next retrain, labelled with the new."""
    store = Store(tmp_path / "dialogues.db")
    right, _ = exchange(store, "c1", "cancel it", "action", "cancel_order")
    wrong, _ = exchange(store, "c2", "cancel my refund", "action", "cancel_order")
    store.add_labels([right], "cancel_order")
    store.add_labels([wrong], "get_refund")
    assert store.relabel("cancel_order", "cancel_purchase") == [right]
    later, _ = exchange(store, "c3", "stop the order", "action", "cancel_order")  # before the retrain
    store.add_labels([later], "cancel_purchase")
    assert store.relabel("cancel_purchase", "cancel_request") == [right, later]

    assert conversation_stats(store)["wrong_answers"] == 1  # the refund question alone
    store.close()


def test_the_top_intents_count_an_intent_under_the_name_bot_relabel_gave_it(tmp_path: Path) -> None:
    """Since `bot relabel` the bot answers a renamed intent under its new name: the top intents listed the answers
    before the rename and those since as two intents, each with a share of the count, the old one listed for good."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(3):
        exchange(store, f"c{n}", "cancel it", "template", "cancel_order")
    exchange(store, "c3", "where is it", "template", "track_order")
    exchange(store, "c4", "where is it now", "template", "track_order")
    store.relabel("cancel_order", "cancel_purchase")
    exchange(store, "c5", "cancel it", "template", "cancel_purchase")

    assert conversation_stats(store, top=1)["top_intents"] == {"cancel_purchase": 4}
    store.close()


@pytest.mark.parametrize(("path", "held_read"), [("/admin/export", "labels"), ("/admin/review", "renames")])
async def test_the_agents_inbox_is_answered_while_the_export_or_the_review_queue_is_read(
        tiny_demo_bot: Path, tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch, path: str,
        held_read: str) -> None:
    """The export and the review queue read every label, answer or turn of the log: read on the admin's reads'
    thread, each held every agent's console poll of the inbox up for as long as it took. They are read beside it."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    reading, release = threading.Event(), threading.Event()
    read = getattr(Store, held_read)

    def held(store: Store, *args: Any) -> Any:
        reading.set()
        assert release.wait(20)
        return read(store, *args)

    monkeypatch.setattr(Store, held_read, held)
    long_read = asyncio.ensure_future(client.get(path, headers={"Authorization": "Bearer t"}))
    try:
        assert await asyncio.to_thread(reading.wait, 10)  # the long read under way, and held
        listed = await asyncio.wait_for(client.get("/admin/conversations", headers={"Authorization": "Bearer t"}), 10)
        assert listed.status == 200 and (await listed.json())["total"] == 0
    finally:
        release.set()
        assert (await long_read).status == 200


async def test_a_console_poll_reads_each_handed_off_conversation_once(tiny_demo_bot: Path, tmp_path: Path,
                                                                      aiohttp_client: Any) -> None:
    """Each agent's console polls the inbox every 3 s: the page and its counts, the agent's customers with what they
    wrote unread and, without server.agents, the agents who have customers each went over every handed-off
    conversation again, three passes at each poll, 190 ms of a core with 5,000 handed off. Each conversation more costs
    the poll about what it costs one count of those waiting, and the poll says what the reads on their own say."""
    root = configured_copy(tiny_demo_bot, tmp_path / "bot", server={"admin_token": "t"})
    client = await aiohttp_client(create_app(root, device="cpu"))
    bot = client.app[BOT]
    writer = Store(root / "dialogues.db")

    def hand_off(conversation: str, agent: str) -> None:
        exchange(writer, conversation, "where is my parcel?", "template")
        writer.set_status(conversation, "handed_off", "agent", agent=agent)
        exchange(writer, conversation, "hello?", "template")

    async def steps(read: Callable[[], Awaitable[Any]]) -> int:
        """The steps of SQLite's machine on the reads' connection while ``read()`` is awaited."""
        taken = [0]

        def step() -> int:
            taken[0] += 1
            return 0

        await bot._read(lambda store: store.db.conn.set_progress_handler(step, 1))
        try:
            await read()
        finally:
            await bot._read(lambda store: store.db.conn.set_progress_handler(None, 1))
        return taken[0]

    async def poll(limit: int = 1) -> dict[str, Any]:  # a page of one: the rows of a page are read for it alone
        answer = await client.get(f"/admin/conversations?agent=Ana&limit={limit}", headers={"Authorization": "Bearer t"})
        assert answer.status == 200
        return await answer.json()

    async def polls() -> tuple[int, int]:
        return await steps(poll), await steps(lambda: bot._read(Store.waiting))

    hand_off("mine", "Ana")
    before = await polls()
    for n in range(60):
        hand_off(f"other-{n}", "Dan")
    after = await polls()
    polled = await poll(200)
    reads = await bot._read(lambda store: (store.unread_of("Ana"), store.holders(),
                                           store.inbox_and_yours("handed_off", 200, "Ana")))
    assert polled["unread_yours"] == reads[0] == [{"conversation_id": "mine", "unread": 1}]
    assert polled["colleagues"] == reads[1] == ["Ana", "Dan"]
    assert (len(polled["conversations"]), polled["total"], polled["waiting"], polled["waiting_yours"]) == (61, 61, 61, 1)
    assert after[0] - before[0] < 1.5 * (after[1] - before[1])  # one pass, where it made three
    writer.close()
