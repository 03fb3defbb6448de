"""The conversation store's learning tables on real SQLite files: migrations, agent answers as
candidate historical answers, review labels, redaction and ``bot export``."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Callable
from typing import Any

import pytest
import sqlite_utils
import yaml
from click.testing import CliRunner

import dialogues.store as store_module
from dialogues import migrations
from bot.cli import cli
from bot.project import load_project
from bot.retrain import agent_answers, read_store
from dialogues.export import learned_data, learned_text
from dialogues.holding import (accepts, acknowledges, asks_for_a_person, asks_nothing, corrected, follow_up,
                               gives_details, lacks_answer, says_nothing, says_wrong, stops_asking, wordless)
from dialogues.redact import card_shaped, cn_id_valid, given_names, luhn_valid, redact, redact_names
from dialogues.store import (HANDED_BACK_TOLD_S, MIGRATIONS, REDELIVERY_WINDOW_S, RENEW_BUSY_S, TURN_STALE_S,
                             UNOWNED_GRACE_S, Exchange, HeldByColleague, LeaseWatch, OverLimit, SentBefore, Staleness, Store,
                             StoreError, LOG_TAG, TRYOUT_CHANNEL, ledger_key, log_tag, purged_ledger)
from tests.conftest import REPO, damage, damage_table, store_in_store_dir_of_a_newer_deskbot, store_of_the_last_deskbot


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A bot `bot init` made in ``tmp_path / "bot"``, with no store yet: where `bot export`, `bot backup`, `bot purge`
    and `bot restore` are run on the store a test writes there."""
    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    return root


DAY = 86_400.0


def user_turn(store: Store, conversation: str, text: str) -> int:
    return store.log_exchange(Exchange(conversation, "web", None, text, None, "Sorry?", "track_order", 0.2,
                                       [("track_order", 0.2)], "fallback", "v0001"))[0]


def before(moment: float) -> Staleness:
    """Leases stamped before ``moment`` are stale: the tests set the stamps as a server hung at a time would."""
    return lambda lease, stamp: stamp < moment


def left_by(store: Store, version: int, *undo: str) -> Store:
    """``store`` as the deskbot at schema ``version`` left it, opened by this one: ``undo``'s SQL takes back what
    the migrations after ``version`` added, and reopening the file migrates it again. Before schema 52, without the
    inbox's count of changes and its triggers, which name columns an undo may take back; before schema 59, without the
    count of changes of the conversations with the bot and its triggers."""
    for since, prefix in ((59, "open"), (52, "inbox")):
        if version < since:
            triggers = store.db.execute(f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '{prefix}_%'")
            for (name,) in triggers.fetchall():
                store.db.execute(f"DROP TRIGGER {name}")
    if version < 52:
        store.db.execute("DROP TABLE inbox_changes")
    elif version < 59:
        store.db.execute("ALTER TABLE inbox_changes DROP COLUMN open_changes")
    for statement in undo:
        store.db.execute(statement)
    store.db.execute(f"PRAGMA user_version={version}")
    store.close()
    return Store(store.path)


def test_a_conversation_is_tagged_in_the_log_alike_by_every_server_of_its_store_and_by_no_other(tmp_path: Path) -> None:
    """The log named a conversation by its id, a web visitor's key to it, in every warning that the one on call read
    and the log's aggregator kept: its tag tells the lines of one conversation, on every server of the store and after
    a restart, keyed by the store's own secret, so that hashing a guessed id (``wecom:{corp}:{userid}``) confirms
    nothing to whoever lacks it."""
    first = Store(tmp_path / "dialogues.db")
    first.serve()
    tag = log_tag("web-3f9c2a")
    assert LOG_TAG.fullmatch(tag) and "3f9c2a" not in tag and log_tag("web-3f9c2b") != tag
    assert ledger_key(first.path).stat().st_mode & 0o077 == 0  # the store owner's alone
    first.close()
    restarted = Store(tmp_path / "dialogues.db")
    restarted.serve()
    assert log_tag("web-3f9c2a") == tag
    restarted.close()
    other = Store(tmp_path / "other.db")
    other.serve()
    assert log_tag("web-3f9c2a") != tag
    other.close()


def test_an_old_database_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.db"
    conn = sqlite3.connect(path)
    old = sqlite_utils.Database(conn)
    MIGRATIONS[0](old)  # a dialogues.db written before the learning tables existed
    old.execute("PRAGMA user_version=1")
    old["conversations"].insert({"id": "c1", "channel": "web", "status": "open", "slots": "{}", "fallbacks": 0})
    old["turns"].insert({"conversation_id": "c1", "role": "user", "text": "hello", "channel": "web"})
    conn.commit()
    conn.close()

    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 2
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "answer_candidates" in store.db.table_names()
    assert [r["text"] for r in store.db["turns"].rows] == ["hello"]
    assert store.conversation("c1")["active_loop"] is None  # the column the third migration adds
    store.add_labels([1], "greet")
    store.close()
    assert Store(path).labels()[0]["intent"] == "greet"  # reopening runs no migration twice


def test_processes_opening_a_new_or_old_file_at_once_wait_for_each_other(tmp_path: Path) -> None:
    """Each migration takes the write lock before it reads the schema version, so a server and a
    cron job's `bot export` opening the file together both succeed."""
    script = ("import sys, time; sys.path.insert(0, sys.argv[2]); from dialogues.store import Store\n"
              "time.sleep(max(0.0, float(sys.argv[3]) - time.time())); Store(sys.argv[1]).close(); print('ok')")
    for name in ("new.db", "old.db"):
        path = tmp_path / name
        if name == "old.db":
            conn = sqlite3.connect(path)
            MIGRATIONS[0](sqlite_utils.Database(conn))
            conn.execute("PRAGMA user_version=1")
            conn.commit()
            conn.close()
        start = str(time.time() + 3)  # all four open the file at the same moment
        procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(REPO), start], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [proc.communicate(timeout=120) for proc in procs]
        assert [out for out, _ in results] == ["ok\n"] * 4, [err for _, err in results]
        assert Store(path).db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_file_that_is_not_a_store_or_from_a_newer_deskbot_is_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY, note TEXT)")
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"these are not the pages of a database" * 200)
    for path, reason in [(foreign, "not a conversation store (it holds other tables)"),
                         (newer, "was written by a newer deskbot"), (garbage, "not a conversation store: file is not a database")]:
        before = path.read_bytes()
        with pytest.raises(StoreError, match=re.escape(reason)):
            Store(path)
        assert path.read_bytes() == before and not Path(f"{path}-wal").exists()  # not switched to WAL, nothing written
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(StoreError, match="cannot open it .* a file this user can read and write"):  # not a traceback
        Store(folder)


def test_a_store_on_a_network_file_system_is_told_from_one_on_a_local_disk() -> None:
    """A Kubernetes volume several pods mount (NFS, CephFS) lets servers on two machines write one store, which
    SQLite's locks and its log's shared memory do not keep safe there: the innermost mount of the folder tells."""
    from dialogues.disk import network_filesystem

    mountinfo = ("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                 "30 22 0:50 / /data rw,relatime - nfs4 files:/export rw,vers=4.2\n"
                 "31 22 0:51 / /shared\\040data rw,relatime - ceph 10.0.0.1:/ rw\n"
                 "32 30 8:17 / /data/local rw,relatime - xfs /dev/sdb1 rw\n")
    assert network_filesystem(Path("/data/bot"), mountinfo) == "nfs4"
    assert network_filesystem(Path("/shared data"), mountinfo) == "ceph"  # a space as mountinfo writes it
    assert network_filesystem(Path("/data/local/bot"), mountinfo) is None  # a local disk mounted inside
    assert network_filesystem(Path("/database"), mountinfo) is None  # not inside /data
    assert network_filesystem(Path("/srv/bot"), mountinfo) is None


def test_a_file_sqlite_opens_only_for_reading_is_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite opens a write-protected file read-only without a word: the server started, and every message got
    a 500. Opened as SQLite opens such a file (mode=ro), the store says so in one line instead."""
    path = tmp_path / "dialogues.db"
    Store(path).close()
    connect = sqlite3.connect
    monkeypatch.setattr("dialogues.store.sqlite3.connect",
                        lambda name, **kwargs: connect(f"file:{name}?mode=ro", uri=True, **kwargs))
    with pytest.raises(StoreError, match="cannot open it \\(attempt to write a readonly database\\): it must be a file "
                                         "this user can read and write"):
        Store(path)


def test_a_new_store_and_its_log_are_readable_by_their_owner_alone(tmp_path: Path, common_umask: None) -> None:
    """What customers wrote was readable by every account on the machine: SQLite made the store with the umask's
    mode (0644), and its -wal and -shm files with the store's. A store that exists keeps the mode it was given."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "c1", "my address is 12 Main Street")
    (tmp_path / "shared.db").touch(mode=0o640)
    Store(tmp_path / "shared.db").close()
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        "dialogues.db": 0o600, "dialogues.db-wal": 0o600, "dialogues.db-shm": 0o600, "shared.db": 0o640}
    store.close()


@pytest.mark.parametrize(("free", "said"), [(0, "free some space on its disk"),
                                             (10 << 30, "its disk failed to read or write it; check the disk")])
def test_a_disk_io_error_opening_the_store_names_a_full_disk_or_a_failing_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, said: str) -> None:
    """On a full disk SQLite cannot create the store's log and says "disk I/O error": the store blamed the
    file's permissions."""
    def failing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("dialogues.store.sqlite3.connect", failing)
    monkeypatch.setattr("dialogues.disk.shutil.disk_usage", lambda path: SimpleNamespace(free=free))
    with pytest.raises(StoreError, match=re.escape(f"(disk I/O error): {said}")):
        Store(tmp_path / "dialogues.db")


def test_a_store_another_process_holds_locked_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said the file must be one this user can read and write, in a folder it can write: true already."""
    path = tmp_path / "dialogues.db"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a sqlite3 shell left in a transaction
    connect = sqlite3.connect
    monkeypatch.setattr("dialogues.store.sqlite3.connect", lambda name, **kwargs: connect(name, **{**kwargs, "timeout": 0.1}))
    try:
        with pytest.raises(StoreError, match="database is locked\\): another process has held it locked"):
            Store(path)
    finally:
        holder.close()


def test_a_label_waits_for_another_process_writing_instead_of_failing(tmp_path: Path) -> None:
    """A label reads before it writes, and its transaction asked for the lock at the write: SQLite refused
    at once, busy timeout or not, while a server was logging, and the reviewer's label was lost."""
    import threading

    store = Store(tmp_path / "dialogues.db")
    turn = user_turn(store, "c1", "where is my parcel")
    holder = sqlite3.connect(tmp_path / "dialogues.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a server's batch of messages being written
    holder.execute("UPDATE conversations SET status = status")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    assert store.add_labels([turn], "track_order", "ann", first=True) == [turn]
    assert time.monotonic() - started >= 0.4  # it waited for the other writer
    assert store.db.execute("SELECT intent FROM review_labels").fetchall() == [("track_order",)]
    holder.close()


def test_a_write_that_waited_long_for_another_processs_lock_is_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A sqlite3 shell left in a transaction held every reply of the server up, up to the 30 s busy timeout,
    and the log said nothing unless the wait ran out."""
    import logging
    import threading

    monkeypatch.setattr(store_module, "SLOW_LOCK_S", 0.3)
    store = Store(tmp_path / "dialogues.db")
    holder = sqlite3.connect(tmp_path / "dialogues.db", isolation_level=None, check_same_thread=False)
    caplog.set_level(logging.WARNING, logger="dialogues.store")
    for conversation in ("c1", "c2"):
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
        user_turn(store, conversation, "where is my parcel")

    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'dialogues.db'}: a write waited 0.")
    assert "for another process holding the store locked (a sqlite3 shell in a transaction?)" in said[0]
    holder.close()
    store.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names the processes from /proc, on Linux")
@pytest.mark.parametrize("then", ["db.execute('COMMIT')", "db.close()"], ids=["commits and stays open", "closes the store"])
def test_a_long_wait_for_another_processs_lock_names_the_processes_that_had_the_store_open_during_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, then: str) -> None:
    """The warning guessed at "a sqlite3 shell in a transaction?", and the one on call had to hunt for the process
    holding every customer's message up: it names those that had the file open, with their command lines. Read during
    the wait, while the lock is held: read after it, one that held it locked and then closed it (a script's
    transaction, a `sqlite3` shell quit) was not among them, and the warning named nobody, or another."""
    import logging

    monkeypatch.setattr(store_module, "SLOW_LOCK_S", 0.3)
    store = Store(tmp_path / "dialogues.db")
    # a script that holds the lock a while, then commits or closes the store, and goes on running
    holding = ("import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
               f"db.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(1); {then}; sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", holding, str(tmp_path / "dialogues.db")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    caplog.set_level(logging.WARNING, logger="dialogues.store")
    user_turn(store, "c1", "where is my parcel")
    holder.communicate(timeout=30)

    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and f"processes that had it open during the wait: {holder.pid} ({sys.executable} -c import sqlite3" in said[0]
    assert store.db.execute("PRAGMA busy_timeout").fetchone() == (store_module.BUSY_TIMEOUT_S * 1000,)
    store.close()


def kept(store: Store) -> list[tuple[int, str, dict[str, str]]]:
    """The kept platform messages not answered yet: id, text and metadata."""
    return [(row["id"], row["text"], json.loads(row["metadata"]))
            for row in store.db.query("SELECT * FROM pending WHERE answered IS NULL ORDER BY id")]


TRACK = {"title": "Track my order", "payload": "/track_order"}


def test_a_kept_platform_message_waits_until_its_answer_is_delivered(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    first = store.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "card 4111 1111 1111 1111?", {"ts": "1.1"})
    second = store.receive("slack:ts:C1:1.2", "slack:T1:C1:1.2", "slack", "U1", "hello", {"ts": "1.2"})
    assert first is not None and second is not None
    assert store.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "again", {}) is None  # a redelivery
    assert kept(store) == [(first, "card [CARD]?", {"ts": "1.1"}), (second, "hello", {"ts": "1.2"})]
    _, reply = store.log_exchange(Exchange("slack:T1:C1:1.1", "slack", "U1", "card [CARD]?", None, "Sorry?", None, 0.2,
                                           [], "fallback", "v0001", pending_id=first, buttons=[TRACK]))
    # answered, not sent yet: the answer is named in its row
    assert kept(store) == [(first, "card [CARD]?", {"ts": "1.1"}), (second, "hello", {"ts": "1.2"})]
    assert store.db.execute("SELECT reply_turn FROM pending WHERE id = ?", [first]).fetchone() == (reply,)
    store.delivered(first)  # the platform took it
    store.answered(second)  # a turn that ended without an exchange
    assert kept(store) == []
    # A redelivery within the platform's retry window is known by its key, by the next server too; only the
    # key is kept of an answered message. A failed turn's is forgotten: its redelivery may be answered.
    assert store.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "again", {}) is None
    assert list(store.db.query("SELECT key, text, metadata FROM pending")) == [
        {"key": "slack:ts:C1:1.1", "text": "", "metadata": "{}"}]
    assert store.receive("slack:ts:C1:1.2", "slack:T1:C1:1.2", "slack", "U1", "hello", {}) is not None
    store.answered(kept(store)[0][0])
    store.db.execute("UPDATE pending SET answered = answered - ?", [REDELIVERY_WINDOW_S + 1])
    assert store.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "later", {}) is not None  # past it
    assert [text for _, text, _ in kept(store)] == ["later"]
    assert store.db.execute("SELECT count(*) FROM pending").fetchone() == (1,)  # the old keys are gone
    store.close()


def test_an_answer_given_as_the_reply_to_the_platforms_request_is_taken_once_to_send_when_it_sends_again(
        tmp_path: Path) -> None:
    """A WeCom passive reply is never confirmed: the message sent again says it was lost. Its answer, as logged, is
    taken to send once, whichever server the redeliveries reach; an answer the platform took, or a conversation
    purged since, gives none."""
    store = Store(tmp_path / "dialogues.db")
    cid = "wecom:ww1:u1"
    kept_ids = [store.receive(f"wecom:{n}", cid, "wecom", "u1", "付款失败了", {"msg_id": n}) for n in ("1", "2")]
    for pending_id in kept_ids:
        _, reply = store.log_exchange(Exchange(cid, "wecom", "u1", "付款失败了", None, "请换一张卡再试。", None, 0.9, [],
                                               "template", "v0001", pending_id=pending_id, buttons=[TRACK]))
    store.delivered(kept_ids[0], passive=True)
    store.delivered(kept_ids[1])  # sent with message/send, which WeCom confirmed
    owed = store.unconfirmed_answer("wecom:1")
    assert owed is not None and (owed["id"], owed["conversation_id"], owed["reply"], owed["buttons"]) == (
        kept_ids[0], cid, "请换一张卡再试。", [TRACK])
    assert store.unconfirmed_answer("wecom:1") is None  # taken once
    assert store.unconfirmed_answer("wecom:2") is None and store.unconfirmed_answer("wecom:3") is None
    again = store.receive("wecom:4", cid, "wecom", "u1", "还在吗", {})
    store.log_exchange(Exchange(cid, "wecom", "u1", "还在吗", None, "在的。", None, 0.9, [], "template", "v0001",
                                pending_id=again))
    store.delivered(again, passive=True)  # type: ignore[arg-type]
    store.purge(cid)
    assert store.unconfirmed_answer("wecom:4") is None  # purged: nothing of it to send
    store.close()


def test_a_server_stops_cleanly_on_a_disk_turned_read_only_and_the_next_removes_its_lock_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock file a server could not delete as it stopped ended `bot serve` with status 1 and "Error: …lock:
    Read-only file system", a failed stop to its service manager."""
    path = tmp_path / "dialogues.db"
    stopping = Store(path)
    stopping.serve()
    lock = Path(stopping._serving.lock_file)  # type: ignore[union-attr]
    unlink = Path.unlink

    def read_only(self: Path, missing_ok: bool = False) -> None:
        if self == lock:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        unlink(self, missing_ok)

    with monkeypatch.context() as disk:
        disk.setattr(Path, "unlink", read_only)
        stopping.close()
    assert lock.exists()
    following = Store(path)
    following.serve()
    assert not lock.exists()
    following.close()


def test_an_answer_logged_and_not_sent_is_sent_by_the_next_server_as_logged(tmp_path: Path) -> None:
    """A server stopped while the platform had not taken an answer yet lost it: the row was settled at the log."""
    path = tmp_path / "dialogues.db"
    gone = Store(path)
    gone.serve()
    first = gone.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "where is my parcel?", {})
    _, reply = gone.log_exchange(Exchange("slack:T1:C1:1.1", "slack", "U1", "where is my parcel?", None, "It left today.",
                                          "track_order", 0.9, [], "template", "v0001", pending_id=first, buttons=[TRACK]))
    # An action's answer of buttons alone: it was settled unsent, and no transcript showed it
    second = gone.receive("slack:ts:C1:1.2", "slack:T1:C1:1.1", "slack", "U1", "which size?", {})
    _, choices = gone.log_exchange(Exchange("slack:T1:C1:1.1", "slack", "U1", "which size?", None, None, "sizes", 0.9,
                                            [], "action", "v0001", pending_id=second, buttons=[TRACK]))
    gone.close()  # stopped before Slack took the answers
    following = Store(path)
    following.serve()
    rows = following.adopt(["slack"])
    assert [(row["id"], row["reply"], row["buttons"], row["reply_turn"]) for row in rows] == [
        (first, "It left today.", [TRACK], reply), (second, "", [TRACK], choices)]
    assert following.history("slack:T1:C1:1.1")[-1]["buttons"] == [TRACK]
    assert following.transcript("slack:T1:C1:1.1")["turns"][-1]["buttons"] == [TRACK]  # what the agent reads
    following.delivered(first)
    following.delivered(second)
    assert following.adopt(["slack"]) == [] and kept(following) == []
    following.close()


def test_a_handoff_is_written_with_the_reply_that_says_so(tmp_path: Path) -> None:
    """Written apart, a server killed in between left the next one to send "Connecting you to a person" to a
    conversation still open, in no agent's inbox; so did a failed send settled before it was marked."""
    path = tmp_path / "dialogues.db"
    gone = Store(path)
    gone.serve()
    kept_message = gone.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "/handoff", {})
    asked = Exchange("slack:T1:C1:1.1", "slack", "U1", "/handoff", None, "Connecting you to a person.", None, 1.0, [],
                     "handoff", "v0001", pending_id=kept_message, handoff="requested")
    gone.log_exchange(asked)
    gone.close()  # killed before the answer went out, and before anyone was told
    following = Store(path)
    following.serve()
    assert [row["reply"] for row in following.adopt(["slack"])] == ["Connecting you to a person."]
    assert asked.handed_off and following.conversation("slack:T1:C1:1.1")["status"] == "handed_off"
    assert [c["conversation_id"] for c in following.inbox("handed_off", 10)[0]] == ["slack:T1:C1:1.1"]
    again = Exchange("slack:T1:C1:1.1", "slack", "U1", "/handoff", None, "Connecting you to a person.", None, 1.0, [],
                     "handoff", "v0001", handoff="requested")
    following.log_exchange(again)
    assert not again.handed_off  # a person has it already: no second handoff, no second wait
    assert following.db.execute("SELECT reason FROM handoffs").fetchall() == [("requested",)]

    second = following.receive("slack:ts:C2:1.1", "slack:T1:C2:1.1", "slack", "U2", "hello", {})
    _, reply = following.log_exchange(Exchange("slack:T1:C2:1.1", "slack", "U2", "hello", None, "Hi!", "greet", 0.9, [],
                                               "template", "v0001", pending_id=second))
    assert following.not_delivered("slack:T1:C2:1.1", reply, second)  # Slack refused the answer for good
    assert following.adopt(["slack"]) == [] and following.conversation("slack:T1:C2:1.1")["status"] == "handed_off"
    assert following.transcript("slack:T1:C2:1.1")["turns"][-1]["undelivered"]
    assert not following.not_delivered("slack:T1:C2:1.1", reply, None)
    following.close()


KEEPER = """
import sys, time
from dialogues.store import Store
store = Store(sys.argv[1])
store.serve()
store.receive("slack:ts:C1:2.1", "slack:T1:C1:2.1", "slack", "U1", "where is my parcel?", {})
print("kept", flush=True)
time.sleep(120)
"""


def test_two_stores_on_one_file_count_a_conversations_limit_in_the_transaction_that_keeps_its_message(
        tmp_path: Path) -> None:
    """Two servers each counted a customer's kept messages, then kept the new one, in two transactions: both found
    room for the last place and kept one more than the limit. Counted as it is kept, the second finds it taken."""
    first, second = Store(tmp_path / "dialogues.db"), Store(tmp_path / "dialogues.db")
    cid = "slack:T1:D1:"
    assert first.receive("slack:ts:D1:1.1", cid, "slack", "U1", "where is my order?", {}, within=(1, 60.0)) is not None
    with pytest.raises(OverLimit) as over:
        second.receive("slack:ts:D1:1.2", cid, "slack", "U1", "hello?", {}, within=(1, 60.0))
    assert 58 < over.value.wait <= 60
    # a redelivery of the one kept is one, not one more: acknowledged, never held back
    assert second.receive("slack:ts:D1:1.1", cid, "slack", "U1", "where is my order?", {}, within=(1, 60.0)) is None
    assert second.receive("slack:ts:D2:1.3", "slack:T1:D2:", "slack", "U2", "hi", {}, within=(1, 60.0)) is not None
    assert [row["key"] for row in first.db.query("SELECT key FROM pending ORDER BY id")] == [
        "slack:ts:D1:1.1", "slack:ts:D2:1.3"]  # nothing of the message held back
    first.close()
    second.close()


def test_a_kept_message_is_its_servers_while_it_lives_then_one_other_servers(tmp_path: Path) -> None:
    """Every server answered at start every kept message: a server started beside a live one answered that
    one's messages in flight too, and two started after a killed one both answered its messages."""
    path = tmp_path / "dialogues.db"
    old = Store(path)  # a deskbot from before servers had names: its server may still be answering the newest
    old.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "kept before servers had names", {})
    old.receive("slack:ts:C1:1.2", "slack:T1:C1:1.2", "slack", "U1", "kept a moment ago", {})
    old.db.execute("UPDATE pending SET received = received - ? WHERE key = 'slack:ts:C1:1.1'", [UNOWNED_GRACE_S + 1])
    old.receive("wecom:1", "wecom:ww1:chen", "wecom", "chen", "我的包裹呢", {})
    old.db.execute("UPDATE pending SET received = received - ? WHERE key = 'wecom:1'", [UNOWNED_GRACE_S + 1])
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert keeper.stdout is not None and keeper.stdout.readline() == "kept\n"
        green, blue = Store(path), Store(path)
        green.serve()
        blue.serve()
        # Only its own channels: a server without WeCom took WeCom's messages and could not answer them
        assert [row["text"] for row in green.adopt(["slack"])] == ["kept before servers had names"]
        assert green.waiting_elsewhere(["slack"]) == {"wecom": 1} and green.waiting_elsewhere(["slack", "wecom"]) == {}
        assert blue.adopt(["slack"]) == []  # green has it; the live keeper keeps its own
        keeper.kill()  # however it dies, the system lets go of its lock
        keeper.wait(30)
        taken = blue.adopt(["slack"])
        assert [(row["text"], row["owner"]) for row in taken] == [("where is my parcel?", blue.server)]
        assert green.adopt(["slack"]) == []
        assert blue.adopt(["slack"]) == []  # its own are not taken again
        # A lock file deleted while its server runs is locked again on that server's next round
        Path(blue._serving.lock_file).unlink()  # type: ignore[union-attr]
        assert blue.adopt(["slack"]) == [] and green.adopt(["slack"]) == []
        blue.close()  # a server that stops leaves what it kept to the next
        assert [row["text"] for row in green.adopt(["slack", "wecom"])] == ["我的包裹呢", "where is my parcel?"]
        old.db.execute("UPDATE pending SET received = received - ? WHERE key = 'slack:ts:C1:1.2'", [UNOWNED_GRACE_S + 1])
        assert [row["text"] for row in green.adopt(["slack"])] == ["kept a moment ago"]
        green.close()
        assert list((tmp_path / ".dialogues.db.servers").iterdir()) == []  # no lock file outlives its server
    finally:
        keeper.kill()
        keeper.wait(30)


def test_two_stores_on_one_file_keep_what_each_turn_changed_of_the_waiting_action_and_the_misses(tmp_path: Path) -> None:
    """Two servers on one store answering messages of one conversation at once: each turn wrote the waiting action
    and the count of fallbacks in a row as it left them, whole, so the later write undid the earlier's: the question
    an action asked the customer was forgotten, and a miss went uncounted."""
    path = tmp_path / "dialogues.db"
    first, second = Store(path), Store(path)

    def turn(store: Store, kind: str, fallbacks: int, loop: str | None, read: dict[str, Any] | None) -> None:
        """A turn of ``kind`` that read the conversation as ``read`` and leaves ``fallbacks`` and ``loop``."""
        read = read or {"fallbacks": 0, "active_loop": None, "active_form": None}
        store.log_exchange(Exchange("c1", "web", None, kind, None, "Sorry?", None, 0.2, [], kind, "v0001",
                                    fallbacks=fallbacks, active_loop=loop, fallbacks_read=read["fallbacks"],
                                    loop_read=(read["active_loop"], read["active_form"])))

    def left() -> tuple[int, str | None]:
        row = first.conversation("c1")
        assert row is not None
        return row["fallbacks"], row["active_loop"]

    turn(first, "fallback", 1, None, None)
    read = first.conversation("c1")  # both servers read the conversation: one miss, nothing awaited
    turn(second, "action", 0, "action_ask_order", read)  # the action asks for the order number
    turn(first, "fallback", 2, None, read)  # the other server missed a message meanwhile
    assert left() == (0 + 1, "action_ask_order")
    read = first.conversation("c1")
    turn(second, "fallback", 2, "action_ask_order", read)
    turn(first, "fallback", 2, "action_ask_order", read)
    assert left() == (3, "action_ask_order")  # both misses count
    read = first.conversation("c1")
    turn(second, "acknowledged", 3, "action_ask_order", read)  # "ok": the count stays
    turn(first, "template", 0, None, read)  # an answer: the count starts again, the question is answered
    assert left() == (0, None)
    first.close()
    second.close()


def test_a_conversations_turn_runs_on_one_server_of_the_store_at_a_time(tmp_path: Path) -> None:
    """Servers on one store take a conversation's turn before they run it (``_v41``): another server waits until it
    ends, is stale (a hung server) or its server is gone, however it ended (killed mid-turn); a server's own turn left
    by a failed end is no other's, and a purge takes the conversation's with it."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()
    assert green.take_turn("c1", before(time.time() - 60))
    assert not blue.take_turn("c1", before(time.time() - 60))  # green runs one
    assert blue.take_turn("c2", before(time.time() - 60))  # another conversation's is no one's
    assert green.take_turn("c1", before(time.time() - 60))  # its own, left by an end that failed
    green.end_turn("c1")
    assert blue.take_turn("c1", before(time.time() - 60))
    assert not green.take_turn("c1", before(time.time() - 60))
    assert green.take_turn("c1", before(time.time() + 1))  # blue's went stale: hung
    assert not blue.take_turn("c1", before(time.time() - 60))
    green.close()  # stopped mid-turn, or killed: the system lets go of its lock
    assert blue.take_turn("c1", before(time.time() - 60))
    assert blue.purge("c1").deleted["c1"]["turn_leases"] == 1
    blue.close()


def test_servers_on_one_store_asking_at_once_share_a_platforms_sends_a_minute(tmp_path: Path) -> None:
    """WeCom takes 30 messages a minute from one app to one employee: servers on one store, each counting its own,
    sent twice that. Two connections asking at once from two threads, as two servers do, get 30 places between them,
    and the next asks to wait until the earliest send's minute has passed, counted from when it ended."""
    path, cid = tmp_path / "dialogues.db", "wecom:ww1:zhangwei"
    stores = [Store(path), Store(path)]
    start = threading.Barrier(len(stores))
    taken: list[list[int]] = [[] for _ in stores]

    def ask(n: int) -> None:
        start.wait()
        for _ in range(25):
            place, wait = stores[n].take_send(cid, 30, 60.0)
            if place is not None:
                taken[n].append(place)
            else:
                assert 59.0 < wait <= 60.0

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    places = sorted(taken[0] + taken[1])
    assert len(places) == len(set(places)) == 30 and taken[0] and taken[1]
    other, _ = stores[0].take_send("wecom:ww1:lisi", 30, 60.0)
    assert other is not None  # another employee's count is their own
    stores[0].send_ended(other, "wecom:ww1:lisi", time.time() - REDELIVERY_WINDOW_S - 1)
    stores[0].forget_old_keys()  # a send long past, to an employee sent nothing since, is not kept
    assert stores[0].db.execute("SELECT count(*) FROM paced_sends WHERE id = ?", [other]).fetchone() == (0,)
    for place in places:  # every send ended 59.5 s ago, the earliest 59.9 s ago
        stores[1].send_ended(place, cid, time.time() - (59.9 if place == places[0] else 59.5))
    place, wait = stores[0].take_send(cid, 30, 60.0)
    assert place is None and 0.0 < wait <= 0.1
    assert stores[0].purge(cid).deleted[cid]["paced_sends"] == 30
    assert stores[0].take_send(cid, 30, 60.0)[0] is not None
    for store in stores:
        store.close()


def test_a_clock_set_back_holds_a_customer_or_an_employee_for_one_window_at_most(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer's kept messages and an employee's sends are counted by the wall clock, which every server on the
    store shares. Set back an hour (NTP mending a clock that ran fast, a virtual machine resumed), the rows stamped in
    the minute before stayed within every window for that hour: a customer at the limit had their messages dropped,
    told to wait 3,660 s, and an employee's answers waited as long. A row stamped later than now counts as stamped
    now, and one stamped later than the window is of before the step, and past."""
    store, cid, employee = Store(tmp_path / "dialogues.db"), "slack:T1:D1:", "wecom:ww1:zhangwei"
    store.receive("slack:ts:D1:1.1", cid, "slack", "U1", "hello", {})
    assert store.take_send(employee, 1, 60.0)[0] is not None
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() - 30)  # set back within the window: held for one window
    assert 59.0 < store.kept_wait(cid, 1, 60.0) <= 60.0
    place, wait = store.take_send(employee, 1, 60.0)
    assert place is None and 59.0 < wait <= 60.0
    monkeypatch.setattr(time, "time", lambda: wall() - 3600)  # set back an hour: not held for it
    assert store.kept_wait(cid, 1, 60.0) == 0.0
    assert store.take_send(employee, 1, 60.0)[0] is not None
    assert store.db.execute("SELECT count(*) FROM pending").fetchone() == (1,)  # the message itself stays kept
    store.close()


def test_a_send_that_outlasted_the_window_is_counted_again_unless_its_conversation_was_purged(tmp_path: Path) -> None:
    """A send counted from when it began and lost from the count as another server's send came a window later is
    counted again as it ends; one whose conversation was purged meanwhile is not, which kept the purged customer's
    conversation id in the store for 15 minutes."""
    store, cid = Store(tmp_path / "dialogues.db"), "wecom:ww1:zhangwei"
    store.add_message(cid, "user", "我的快递呢", "wecom")
    slow, _ = store.take_send(cid, 30, 60.0)
    store.db.execute("UPDATE paced_sends SET ended = ended - 61 WHERE id = ?", [slow])  # began over a minute ago
    assert store.take_send(cid, 30, 60.0)[0] is not None  # the other server's: the slow one no longer counted
    store.send_ended(slow, cid, time.time())
    assert store.db.execute("SELECT count(*) FROM paced_sends WHERE id = ?", [slow]).fetchone() == (1,)
    during, _ = store.take_send(cid, 30, 60.0)
    store.purge(cid)
    store.send_ended(during, cid, time.time())
    assert store.db.execute("SELECT count(*) FROM paced_sends").fetchone() == (0,)
    store.close()


def test_a_lease_is_stale_once_its_stamp_stayed_for_the_stale_time_on_the_watching_servers_steady_clock() -> None:
    """A lease's stamp is its holder's wall-clock time: read against another server's, a step of either clock handed a
    live turn over. A lease is stale once it went ``TURN_STALE_S`` unrenewed as its watcher's steady clock times it,
    whatever the stamps say; one not looked at for a while is forgotten, and watched from scratch when looked at
    again."""
    steady = [100.0]
    watch = LeaseWatch(clock=lambda: steady[0])
    lease = ("turn", "c1", "green")
    assert not watch.stale(lease, 5.0, TURN_STALE_S)  # seen first: watched from now, however old its stamp
    steady[0] += TURN_STALE_S - 1
    assert not watch.stale(lease, 5.0, TURN_STALE_S)
    assert not watch.stale(lease, 4.0, TURN_STALE_S)  # renewed, by a clock stepped back: renewed all the same
    steady[0] += TURN_STALE_S - 1
    assert not watch.stale(lease, 4.0, TURN_STALE_S) and not watch.stale(("turn", "c1", "blue"), 4.0, TURN_STALE_S)
    steady[0] += 1
    assert watch.stale(lease, 4.0, TURN_STALE_S)  # unrenewed for TURN_STALE_S: hung
    steady[0] += LeaseWatch.FORGET_S
    assert not watch.stale(("turn", "c1", "blue"), 4.0, TURN_STALE_S)  # forgotten meanwhile
    assert watch.stale(lease, 4.0, 0.0)


def test_a_servers_clock_stepped_forward_takes_no_live_turn_nor_claim_of_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers on one store, blue's clock stepped ``TURN_STALE_S`` forward (NTP correcting it): green's turn and
    claim, renewed, read as stale against blue's wall clock, and blue ran the conversation's turn and answered the
    message beside green. Watched on blue's steady clock, they stand while green renews them, and are blue's once
    green stops (hung)."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()
    steady = [0.0]
    watch = LeaseWatch(clock=lambda: steady[0])
    stale = functools.partial(watch.stale, stale_s=TURN_STALE_S)
    assert green.take_turn("c1", stale) and green.claim("c1", "m1", stale)
    real = time.time

    def on_blue() -> tuple[bool, bool]:
        """Whether blue, whose clock is an hour ahead, takes the turn, and the claim of the message (a Retry)."""
        with monkeypatch.context() as stepped:
            stepped.setattr(time, "time", lambda: real() + 3600)
            return blue.take_turn("c1", stale), blue.claim("c1", "m1", stale, time.time() - 600)

    for _ in range(3):
        steady[0] += TURN_STALE_S / 2
        assert green.renew_turn("c1") and green.renew_claim("c1", "m1")
        assert on_blue() == (False, False)
    steady[0] += TURN_STALE_S  # green renews no more: hung
    assert on_blue() == (True, True)
    green.close()
    blue.close()


def test_a_reload_is_kept_for_the_other_servers_from_migration_44_on(tmp_path: Path) -> None:
    """A store of the deskbot before keeps reloads once opened: the latest alone, numbered higher at each, with the
    server that made it, which the other servers on the store read to reload too."""
    green = left_by(Store(tmp_path / "dialogues.db"), 43, "DROP TABLE reloads")
    green.serve()
    assert green.latest_reload() == (0, None)
    green.reloaded()
    first, _ = green.latest_reload()
    green.reloaded()
    assert green.latest_reload() == (first + 1, green.server)
    assert green.db.execute("SELECT count(*) FROM reloads").fetchone() == (1,)
    green.close()


def test_a_pass_an_agent_read_is_kept_from_migration_45_on_and_purged_with_its_conversation(tmp_path: Path) -> None:
    """A store of the deskbot before names the customers passed to Bob as before, what he read before it included,
    until he reads them again; then none, until the next pass to him. A purge leaves no trace of it."""
    store = Store(tmp_path / "dialogues.db")
    read = user_turn(store, "passed", "where is my order?")
    store.set_status("passed", "handed_off", "requested", agent="Ana")
    assert store.pass_on("passed", "Ana", "Bob")
    store.mark_seen("passed", "Bob", read)
    store = left_by(store, 44, "ALTER TABLE seen DROP COLUMN takeover_id")
    passed = lambda: [p["conversation_id"] for p in store.passed_to("bob")]
    assert passed() == ["passed"]
    store.mark_seen("passed", "BOB", read)
    assert passed() == []
    assert store.pass_on("passed", "Bob", "Ana") and store.pass_on("passed", "Ana", "Bob")
    assert passed() == ["passed"]
    assert store.purge("passed").deleted["passed"]["seen"] == 1
    store.close()


def test_a_slack_dms_reply_thread_is_kept_from_migration_61_on_and_purged_with_its_conversation(tmp_path: Path) -> None:
    """The thread a Slack DM's customer wrote in last, where an agent's replies go, is the store's (it was one server's
    memory): a store of the deskbot before has none kept, a top-level message forgets it, and a purge leaves no trace."""
    store = left_by(Store(tmp_path / "dialogues.db"), 55, "DROP TABLE reply_threads")
    assert store.reply_thread("slack:T1:D1:") == ""
    store.reply_in("slack:T1:D1:", "1700000000.000100")
    store.reply_in("slack:T1:D1:", "1700000004.000100")
    store.reply_in("slack:T1:D2:", "1700000000.000200")
    store.reply_in("slack:T1:D2:", "")
    assert [store.reply_thread(c) for c in ("slack:T1:D1:", "slack:T1:D2:")] == ["1700000004.000100", ""]
    user_turn(store, "slack:T1:D1:", "where is my order?")
    assert store.purge("slack:T1:D1:").deleted["slack:T1:D1:"]["reply_threads"] == 1
    assert store.db.execute("SELECT count(*) FROM reply_threads").fetchone() == (0,)
    store.close()


def test_a_purge_by_age_leaves_a_conversation_whose_turn_a_server_runs_now(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer coming back to a conversation past the retention period while ``bot purge --before`` ran: the purge
    deleted it mid-turn, with its turn, and another server on the store ran the conversation's next message beside
    the first, each on a conversation begun anew. A conversation whose turn a server runs is going on, and left; one
    whose turn went stale (a hung server's) is not."""
    monkeypatch.setattr(store_module, "TURN_STALE_S", 1.0)  # the hung lease is watched that long
    path = tmp_path / "dialogues.db"
    green, purging = Store(path), Store(path)
    green.serve()
    for conversation in ("back", "idle"):
        user_turn(green, conversation, "where is my order?")
    assert green.take_turn("back", before(time.time() - 60))
    assert purging.conversation_ids(before=time.time() + 1) == ["idle"]
    green.db.execute("UPDATE turn_leases SET taken = ?", [time.time() - 60])  # no longer renewed: green hung
    assert purging.conversation_ids(before=time.time() + 1) == ["back", "idle"]
    for store in (green, purging):
        store.close()


def test_a_purge_by_age_on_a_clock_stepped_forward_leaves_a_conversation_whose_turn_a_server_runs_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retention purge (``bot purge --before`` a day ago) run on a machine whose clock stepped forward (NTP, a resumed
    VM) took a turn's lease, renewed all along, for a hung server's against its own clock, and deleted the
    conversation mid-turn. A lease renewed since the cutoff is activity since it, whatever the purging clock says."""
    path = tmp_path / "dialogues.db"
    green, purging = Store(path), Store(path)
    green.serve()
    user_turn(green, "back", "where is my order?")
    long_ago = time.time() - 2 * DAY
    green.db.execute("UPDATE conversations SET created = ?, updated = ?", [long_ago, long_ago])
    green.db.execute("UPDATE turns SET created = ?", [long_ago])
    assert green.take_turn("back", before(time.time() - 60))
    stepped = time.time() + 60
    monkeypatch.setattr(store_module, "now", lambda: stepped)
    assert purging.conversation_ids(before=time.time() - DAY) == []
    for store in (green, purging):
        store.close()


def test_a_purge_with_a_cutoff_near_now_on_a_clock_stepped_forward_leaves_a_conversation_whose_turn_a_server_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cutoff within ``TURN_STALE_S`` of now, a purge took a lease renewed all along for stale where its clock
    had stepped forward further than that (NTP, a resumed VM), and deleted the conversation mid-turn. It watches the
    leases of the conversations it would delete for ``TURN_STALE_S`` on its steady clock, as a server watches another's:
    one renewed meanwhile is a turn running; one left as it was, a hung server's."""
    monkeypatch.setattr(store_module, "TURN_STALE_S", 1.0)
    monkeypatch.setattr(store_module, "TURN_RENEW_S", 0.2)
    path = tmp_path / "dialogues.db"
    green, purging = Store(path), Store(path)
    green.serve()
    for conversation in ("back", "hung", "idle"):
        user_turn(green, conversation, "where is my order?")
    for conversation in ("back", "hung"):
        assert green.take_turn(conversation, before(time.time() - 60))
    renewer, stop = green.renewer(), threading.Event()

    def renew() -> None:  # green's renewals of its turn of "back", on its own clock
        while not stop.wait(0.1):
            assert renewer.renew_turn("back")

    renewing = threading.Thread(target=renew)
    renewing.start()
    real, purge = store_module.now, threading.current_thread()
    monkeypatch.setattr(store_module, "now", lambda: real() + 60 if threading.current_thread() is purge else real())
    try:
        assert purging.conversation_ids(before=store_module.now() - 0.5) == ["hung", "idle"]
    finally:
        stop.set()
        renewing.join()
    for store in (green, renewer, purging):
        store.close()


def test_a_purge_by_age_leaves_a_conversation_its_customer_came_back_to_after_it_was_chosen(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bot purge --before` chose its conversations, then deleted them: a customer who came back in between (a message
    answered, or one a server is answering now) lost their conversation mid-turn. Each is looked at again in the
    transaction that deletes it, left, and said; one named by --conversation goes whatever its age."""
    path = root / "dialogues.db"
    green = Store(path)
    green.serve()
    for conversation in ("answered", "answering", "idle", "named"):
        user_turn(green, conversation, "where is my order?")
    long_ago = time.time() - 2 * DAY
    green.db.execute("UPDATE conversations SET created = ?, updated = ? WHERE id != 'named'", [long_ago, long_ago])
    green.db.execute("UPDATE turns SET created = ? WHERE conversation_id != 'named'", [long_ago])
    choose = Store.conversation_ids

    def customers_back_once_chosen(store: Store, **kwargs: Any) -> list[str]:
        chosen = choose(store, **kwargs)
        user_turn(green, "answered", "it is still not here")
        assert green.take_turn("answering", before(time.time() - 60))
        return chosen

    monkeypatch.setattr(Store, "conversation_ids", customers_back_once_chosen)
    cutoff = datetime.fromtimestamp(time.time() - DAY).isoformat(sep=" ", timespec="seconds")
    purged = CliRunner().invoke(cli, ["purge", str(root), "--before", cutoff, "--conversation", "named"])
    assert purged.exit_code == 0, purged.output
    # those --before chose by their tag, as the server's log names them: run from cron, its mail keeps what it says
    assert f"Skipped {log_tag('answered')}: its customer came back" in purged.output
    assert f"Skipped {log_tag('answering')}: its customer came back" in purged.output
    assert f"Deleted {log_tag('idle')}" in purged.output and "Deleted named" in purged.output
    assert "idle" not in purged.output
    assert sorted(row[0] for row in green.db.execute("SELECT id FROM conversations")) == ["answered", "answering"]
    assert green.db.execute("SELECT count(*) FROM turns WHERE conversation_id = 'answered'").fetchone() == (4,)
    green.close()


@pytest.mark.parametrize("asked", [["--user", "u-21"], ["--conversation", "answered", "--conversation", "answering",
                                                       "--conversation", "idle", "--conversation", "slack"]])
def test_a_purge_of_a_customer_leaves_a_conversation_written_to_after_it_was_chosen(
        root: Path, monkeypatch: pytest.MonkeyPatch, asked: list[str]) -> None:
    """`bot purge --user` and `--conversation` chose their conversations, then deleted them: one the customer wrote
    in meanwhile (a message answered, one a server is answering now, a Slack message received) was deleted mid-turn,
    and the turn's answer wrote it anew, kept. Each is looked at again in the transaction that deletes it, left, said,
    and the command fails, to be run again."""
    path = root / "dialogues.db"
    green = Store(path)
    green.serve()

    def said(conversation: str, text: str, channel: str = "web") -> None:
        green.log_exchange(Exchange(conversation, channel, "u-21", text, None, "Sorry?", "track_order", 0.2,
                                    [("track_order", 0.2)], "fallback", "v0001"))

    for conversation in ("answered", "answering", "idle"):
        said(conversation, "where is my order?")
    said("slack", "where is my order?", "slack")
    received_only = Store.received_only

    def customer_back_once_chosen(store: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
        said("answered", "it is still not here")
        assert green.take_turn("answering", before(time.time() - 60))
        assert green.receive("slack-1", "slack", "slack", "u-21", "hello?", {})
        return received_only(store, ids)

    monkeypatch.setattr(Store, "received_only", customer_back_once_chosen)
    purged = CliRunner().invoke(cli, ["purge", str(root), *asked])
    assert purged.exit_code == 1, purged.output
    for left in ("answered", "answering", "slack"):
        assert f"Skipped {left}: its customer came back" in purged.output
    assert "Deleted idle" in purged.output
    assert "left answered, answering, slack, written to while it was being purged" in purged.output
    assert sorted(row[0] for row in green.db.execute("SELECT id FROM conversations")) == [
        "answered", "answering", "slack"]
    assert green.db.execute("SELECT count(*) FROM turns WHERE conversation_id = 'answered'").fetchone() == (4,)
    green.close()


def test_a_purge_leaves_a_conversation_whose_message_came_since_it_was_chosen_under_an_id_given_again(
        tmp_path: Path) -> None:
    """A Slack or WeCom message kept unanswered goes from the store once given up, and the next one received takes its
    id again: looked for above the ids the purge's choice saw alone, a message received since went unseen, and was
    deleted with its conversation. So is one stamped since."""
    store = Store(tmp_path / "dialogues.db")
    cid = "slack:T1:C1:1700000000.000100"
    store.log_exchange(Exchange(cid, "slack", "U1", "hello", None, "Hi!", "greet", 0.9, [("greet", 0.9)], "intent",
                                "v0001"))
    given_up = store.receive("k1", cid, "slack", "U1", "where is it?", {})
    chosen_at = store.high_water()
    store.db.execute("DELETE FROM pending WHERE id = ?", [given_up])
    assert store.receive("k2", cid, "slack", "U1", "hello again?", {}) == given_up  # its id, given again
    purged = store.purge(cid, chosen_at=chosen_at)
    assert purged.skipped == [cid] and purged.deleted == {}
    assert store.conversations([cid])[0] is not None
    store.close()


def test_an_answer_of_a_turn_another_server_took_over_is_not_kept(tmp_path: Path) -> None:
    """A server whose turn another server on the store took over (no renewal for the stale time: hung, or too slow)
    kept and sent its answer beside the other's. Written once the turn is another's, the answer is dropped, with its
    handoff and the message id that names the other's answer; the customer's message and the slots are kept."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()

    def answer(store: Store) -> tuple[Exchange, int | None]:
        exchange = Exchange("c1", "web", None, "/handoff", None, "Connecting you to a person.", "handoff", 1.0, [],
                            "handoff", "v1", slots={"order_id": "12345"}, handoff="user", message_id="m1", leased=True)
        return exchange, store.log_exchange(exchange)[1]

    assert green.take_turn("c1", before(time.time() - 60))
    assert blue.take_turn("c1", before(time.time() + 1))  # green hung
    dropped, reply = answer(green)
    assert (dropped.overtaken, dropped.handed_off, reply) == (True, False, None)
    row = green.db.execute("SELECT status, slots FROM conversations WHERE id = 'c1'").fetchone()
    assert (row[0], json.loads(row[1])) == ("open", {"order_id": "12345"})
    assert green.answer_to("c1", "m1", 0.0) is None
    kept, reply = answer(blue)
    assert (kept.overtaken, kept.handed_off) == (False, True) and reply is not None
    assert green.db.execute("SELECT role, message_id FROM turns ORDER BY id").fetchall() == [
        ("user", None), ("user", "m1"), ("bot", None)]
    green.close()
    blue.close()


def test_an_answer_to_a_web_message_another_server_claimed_meanwhile_is_not_kept(tmp_path: Path) -> None:
    """A server whose claim of a web message went stale (its claim's renewals failing) while its turn of the
    conversation was renewed kept its answer, and the server that claimed the message for the widget's Retry answered
    it once the turn ended: two answers to one message. The first's answer is dropped, as one of a turn taken over."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()
    assert green.claim("c1", "m1", before(time.time() - 60)) and green.take_turn("c1", before(time.time() - 60))
    green.db.execute("UPDATE answering SET claimed = ?", [time.time() - 60])  # its claim's renewals failed
    assert blue.claim("c1", "m1", before(time.time() - 30))
    exchange = Exchange("c1", "web", None, "where is my order?", None, "It ships today.", "track_order", 1.0, [],
                        "template", "v1", message_id="m1", leased=True)
    assert green.log_exchange(exchange)[1] is None and exchange.overtaken
    assert green.answer_to("c1", "m1", 0.0) is None
    green.end_turn("c1")
    assert blue.take_turn("c1", before(time.time() - 60))
    answered = Exchange("c1", "web", None, "where is my order?", None, "It ships today.", "track_order", 1.0, [],
                        "template", "v1", message_id="m1", leased=True)
    assert blue.log_exchange(answered)[1] is not None and not answered.overtaken
    assert green.db.execute("SELECT role, message_id FROM turns ORDER BY id").fetchall() == [
        ("user", None), ("user", "m1"), ("bot", None)]
    green.close()
    blue.close()


def test_a_server_giving_up_its_failed_answer_leaves_the_claim_another_server_made_since(tmp_path: Path) -> None:
    """A server whose answer to a web message failed gave up every claim of the message, also that of the server
    that claimed it once the first's went stale, and is answering it: the widget's next Retry was answered a second
    time. A server gives up its own claim alone."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()
    assert green.claim("c1", "m1", before(time.time() - 60))
    green.db.execute("UPDATE answering SET claimed = ?", [time.time() - 60])  # its claim's renewals failed
    assert blue.claim("c1", "m1", before(time.time() - 30))
    green.unclaim("c1", "m1")  # its answer failed
    assert not green.claim("c1", "m1", before(time.time() - 30))
    blue.unclaim("c1", "m1")
    assert green.claim("c1", "m1", before(time.time() - 30))
    green.close()
    blue.close()


def test_a_renewers_connection_opens_within_the_renewals_wait_beside_another_processs_write(tmp_path: Path) -> None:
    """A serving store's connection for renewals opened with the store's 30 s wait for another process's lock: opened
    beside a long write (a purge by `bot purge`), it held the server's renewals up past the stale time. It waits
    ``RENEW_BUSY_S`` at most, opening included, as its renewals do."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    store.serve()
    writing = sqlite3.connect(path, isolation_level=None)
    writing.execute("BEGIN IMMEDIATE")  # another process's write, which outlasts the renewals' wait
    try:
        started = time.monotonic()
        with pytest.raises(StoreError):
            store.renewer()
        assert time.monotonic() - started < RENEW_BUSY_S + 5
    finally:
        writing.execute("ROLLBACK")
        writing.close()
    renewer = store.renewer()
    assert renewer.db.execute("PRAGMA busy_timeout").fetchone()[0] == RENEW_BUSY_S * 1000
    renewer.close()
    store.close()


def test_a_renewed_turn_is_not_taken_for_a_hung_servers(tmp_path: Path) -> None:
    """A turn running longer than the servers' stale time (a slow action) went stale, and another server ran the
    conversation's next message beside it: its server renews it while it runs, and only a turn no longer renewed is
    taken; a server renews its own turn alone, and no longer once it has ended."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    green.serve()
    blue.serve()
    assert green.take_turn("c1", before(time.time() - 60))
    renewed_after = time.time()
    assert green.renew_turn("c1")
    assert not blue.take_turn("c1", before(renewed_after))  # taken before, renewed since
    assert not blue.renew_turn("c1")  # green's
    assert blue.take_turn("c1", before(time.time() + 1))  # no longer renewed: green hung
    assert not green.renew_turn("c1")  # blue's now
    blue.end_turn("c1")
    assert not blue.renew_turn("c1")
    assert green.take_turn("c1", before(time.time() - 60))  # blue renewed nothing after its end
    green.close()
    blue.close()


def test_the_overdue_and_waiting_customers_come_from_the_inbox(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("zh", "web", None, "12345", None, "?", None, 0.2, [], "fallback", "v0001",
                                slots={"language": "zh"}))
    store.set_status("zh", "handed_off", "requested")
    user_turn(store, "answered", "where is my order?")
    store.set_status("answered", "handed_off", "requested")
    store.add_agent_answer("answered", "It left today.")
    handed_off_at = store.inbox("handed_off", 10)[0][0]["waiting_since"]
    assert store.waiting() == (1, handed_off_at)  # the answered customer does not wait
    assert [(c["conversation_id"], c["slots"]) for c in store.overdue(handed_off_at + 1, 300)] == [("zh", {"language": "zh"})]
    assert store.overdue(handed_off_at, 300) == []  # not waiting long enough yet
    # The notice that an agent took over says nothing of the wait: only the busy notice counts as told.
    store.add_message("zh", "bot", "An agent has joined.", "web", None, [{"title": "Back", "payload": "/resume"}], "joined")
    assert [c["conversation_id"] for c in store.overdue(handed_off_at + 1, 300)] == ["zh"]
    store.add_message("zh", "bot", "Our agents are busy.", "web", notice="busy")
    assert store.overdue(handed_off_at + 1, 300) == []  # told once in this wait
    # Told again when they write again that long after being told, still with nobody answering; not before.
    user_turn(store, "zh", "还在等吗")
    assert store.overdue(handed_off_at + 1, 300) == []
    store.db.execute("UPDATE turns SET created = created - 301 WHERE conversation_id = 'zh' AND notice = 'busy'")
    assert [c["conversation_id"] for c in store.overdue(handed_off_at + 1, 300)] == ["zh"]
    store.add_message("zh", "bot", "Our agents are busy.", "web", notice="busy")
    # bot chat's conversations: no agent's reply reaches a terminal, so they were waiting customers for good
    store.log_exchange(Exchange("cli:1", "cli", None, "human please", None, "Connecting you.", None, 0.9, [], "handoff", "v0001"))
    store.set_status("cli:1", "handed_off", "requested")
    store.log_exchange(Exchange("cli:2", "cli", None, "hi", None, "Hello!", "greet", 0.9, [], "template", "v0001"))
    assert store.waiting() == (1, handed_off_at) and store.overdue(handed_off_at + 10**6, 300) == []
    assert [c["conversation_id"] for c in store.inbox("handed_off", 10)[0]] == ["zh", "answered"]
    assert store.inbox("handed_off", 10)[1:] == (2, 1) and store.inbox("open", 10) == ([], 0, 0)
    store.close()


def test_a_status_already_held_is_not_recorded_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    assert store.set_status("c1", "handed_off", "requested") is True
    assert store.set_status("c1", "handed_off", "agent") is False  # two agents take it over at once
    assert store.set_status("c1", "open", "agent") is True
    assert store.set_status("c1", "open", "user") is False
    assert [(r["event"], r["reason"]) for r in store.db["handoffs"].rows] == [("handed_off", "requested"), ("open", "agent")]


def test_an_agent_answer_is_paired_with_the_questions_since_the_last_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "c1", "my parcel is lost")
    user_turn(store, "c1", "/handoff")  # a button payload is not a question
    user_turn(store, "c1", "it was order 123")
    store.add_agent_answer("c1", "Found it: it is at the depot.")
    user_turn(store, "c1", "and can I change the address?")
    store.add_agent_answer("c1", "Yes, done.")
    store.add_agent_answer("c1", "Anything else?")  # nothing asked since the last answer: no pair
    # Never the request for a person: what the customer came with.
    store.log_exchange(Exchange("c2", "web", None, "I need a real person", None, "Connecting you.", "contact_human_agent",
                                0.9, [], "handoff", "v0001"))
    store.log_exchange(Exchange("c2", "web", None, "my blender came broken", None, None, None, 0.0, [], "silent", "v0001"))
    store.add_agent_answer("c2", "A new blender is on its way.")
    # Handed off after the bot answered a greeting and a question: what it could not settle, or else
    # what the customer wrote once they had asked for a person; a fallback's handoff keeps its question.
    def conversation(cid: str, turns: list[tuple[str, str]], reason: str, answer: str) -> None:
        for text, source in turns:
            store.log_exchange(Exchange(cid, "web", None, text, None, None, None, 0.5, [], source, "v0001"))
            if source == "handoff":
                store.set_status(cid, "handed_off", reason)
        store.add_agent_answer(cid, answer)

    conversation("c3", [("hi", "template"), ("where is order 789?", "action"), ("it says delivered, not here", "fallback"),
                        ("let me talk to someone", "handoff"), ("hello??", "silent")], "requested", "I asked the courier.")
    conversation("c4", [("hi", "template"), ("where is my order", "template"), ("I want a human", "handoff"),
                        ("my parcel arrived broken", "silent")], "requested", "Send us a photo.")
    conversation("c5", [("hi", "template"), ("my parcel arrived damaged, what now", "handoff")], "fallbacks",
                 "We will replace it.")
    # Nobody handed it off: an agent answers what the bot could not, not the greeting it opened with
    conversation("c6", [("hi", "template"), ("can I pay by invoice?", "template"),
                        ("the parcel went to my neighbour, who is away", "fallback")], "", "The courier will fetch it.")
    store.set_status("c4", "open", "user")  # handed back, then off again with a new question
    conversation("c4", [("opening hours?", "template"), ("human please", "handoff"), ("the VAT number is wrong", "silent")],
                 "requested", "A corrected invoice is on its way.")
    # What a customer gives the agent to be called back is no question: the bot gave it the answer about coats.
    conversation("c7", [("这款羽绒服有没有加大码", "fallback"), ("加大码有吗", "template"), ("/handoff", "handoff"),
                        ("我的手机号13812345678，麻烦快点", "silent")], "requested", "有加大码，黑色长款也有。")
    answers = store.answer_candidates()
    assert [(a["question"], a["answer"]) for a in answers] == [
        ("my parcel is lost", "Found it: it is at the depot."),
        ("and can I change the address?", "Yes, done."),
        ("my blender came broken", "A new blender is on its way."),
        ("it says delivered, not here", "I asked the courier."),
        ("my parcel arrived broken", "Send us a photo."),
        ("my parcel arrived damaged, what now", "We will replace it."),
        ("the parcel went to my neighbour, who is away", "The courier will fetch it."),
        ("the VAT number is wrong", "A corrected invoice is on its way."),
        ("加大码有吗", "有加大码，黑色长款也有。"),
    ]
    assert [t["role"] for t in store.history("c1")].count("agent") == 3  # every agent message is a turn
    store.close()


def test_an_agents_holding_and_closing_replies_are_not_learned_as_the_answer(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "c1", "我的退款到哪了")
    store.add_agent_answer("c1", "您好，我是小李，请稍等，我帮您查一下。")
    assert store.answer_candidates() == []  # the agent is still looking
    user_turn(store, "c1", "好的")  # no question: the answer to come answers the one held
    store.add_agent_answer("c1", "退款已于今天退回原支付账户，3-5个工作日到账。")
    store.add_agent_answer("c1", "还有什么可以帮您？")
    user_turn(store, "c2", "where is my refund?")
    store.add_agent_answer("c2", "Hi, I'm Anna. Let me check that for you.")
    store.add_agent_answer("c2", "Your refund left today.")
    store.add_agent_answer("c2", "It takes 3-5 days to reach your card. Anything else?")  # says something: whole
    user_turn(store, "c3", "do you ship to Norway?")
    store.add_agent_answer("c3", "One moment please.")  # only held the line, and nothing came after it
    user_turn(store, "c4", "where is my refund?")
    store.add_agent_answer("c4", "Hi, I'm Anna. One moment please.")
    user_turn(store, "c4", "also, can I pay by invoice?")  # a new question while the agent looks: answered on its own
    store.add_agent_answer("c4", "Yes, invoices are fine.")
    user_turn(store, "c5", "can I change my address?")
    store.undelivered(store.add_agent_answer("c5", "Yes, in your account page."))
    store.add_agent_answer("c5", "Yes, in your account page.")  # resent after it failed: learned once
    user_turn(store, "c6", "do you sell helmets?")
    store.add_agent_answer("c6", "Yes, we sell helmets in three sizes.")
    user_turn(store, "c6", "ok")
    store.add_agent_answer("c6", "The large one is back in stock on Friday.")  # the answer goes on after "ok"
    user_turn(store, "c6", "hello? anyone there?")
    store.add_agent_answer("c6", "The large one is back in stock on Friday.")  # resent: learned once
    user_turn(store, "c6", "ok thanks")
    store.add_agent_answer("c6", "Is there anything else I can help you with?")
    user_turn(store, "c7", "有头盔吗")
    store.add_agent_answer("c7", "有的，三个尺码都有。")
    user_turn(store, "c7", "还有其他颜色吗")  # a question after the answer, in a holding phrase's words
    store.add_agent_answer("c7", "还有红色和黑色。")
    # The sentences that only greet, introduce the agent or thank for waiting, before the answer, would have the
    # bot answer the next customer as Anna, thanking them for a wait they never had.
    user_turn(store, "c8", "do you ship to Norway?")
    store.add_agent_answer("c8", "Hi, I'm Anna from Demo Shop. Thanks for waiting! Yes, we ship to Norway. Anything else?")
    user_turn(store, "c9", "退款到了吗")
    store.add_agent_answer("c9", "您好，我是小李。让您久等了！退款已经到账了。")
    user_turn(store, "c10", "my parcel arrived broken")
    store.add_agent_answer("c10", "Hi Tom. I'm sorry to hear that. A new one is on its way.")  # the apology fits anyone
    user_turn(store, "c11", "is the blue one in stock?")
    store.add_agent_answer("c11", "Hi, Ana here. Yes, the blue one is in stock.")
    assert [(a["question"], a["answer"]) for a in store.answer_candidates()] == [
        ("我的退款到哪了", "退款已于今天退回原支付账户，3-5个工作日到账。"),
        ("where is my refund?", "Your refund left today.\nIt takes 3-5 days to reach your card. Anything else?"),
        ("also, can I pay by invoice?", "Yes, invoices are fine."),
        ("can I change my address?", "Yes, in your account page."),
        ("do you sell helmets?", "Yes, we sell helmets in three sizes.\nThe large one is back in stock on Friday."),
        ("有头盔吗", "有的，三个尺码都有。"), ("还有其他颜色吗", "还有红色和黑色。"),
        ("do you ship to Norway?", "Yes, we ship to Norway. Anything else?"), ("退款到了吗", "退款已经到账了。"),
        ("my parcel arrived broken", "I'm sorry to hear that. A new one is on its way."),
        ("is the blue one in stock?", "Yes, the blue one is in stock."),
    ]
    assert [t["text"] for t in store.history("c8") if t["role"] == "agent"] == [  # the customer read it all
        "Hi, I'm Anna from Demo Shop. Thanks for waiting! Yes, we ship to Norway. Anything else?"]
    store.close()


def test_an_answer_is_filed_under_the_question_not_under_a_nudge_or_a_second_request_for_a_person(tmp_path: Path) -> None:
    """A customer who asked for a person and nudged ("are you there?", "转人工") before asking had the agent's
    answer filed under the nudge: the next customer to ask "are you there?" got another's answer from the bot."""
    store = Store(tmp_path / "dialogues.db")
    for cid, nudge in (("c1", "are you there?"), ("c2", "转人工"), ("c3", "hi, I'm still waiting"), ("c4", "喂？有人吗")):
        store.set_status(cid, "handed_off", "requested")
        user_turn(store, cid, nudge)
        user_turn(store, cid, "when will my refund arrive?")
        store.add_agent_answer(cid, "Refunds take 3-5 business days.")
    assert [a["question"] for a in store.answer_candidates()] == ["when will my refund arrive?"] * 4
    store.close()


def test_an_agents_question_back_is_not_learned_and_the_answer_given_after_it_is(tmp_path: Path) -> None:
    """An agent who asked for the order number had that question learned as the answer: the bot asked the next
    customer for a number it could not use, and filed the real answer under the number."""
    store = Store(tmp_path / "dialogues.db")
    for cid, question, ask, given, answer in (
        ("c1", "where is my parcel?", "Hi, I'm Anna. Could you please give me your order number?", "55667",
         "It left our warehouse today and arrives on Friday."),
        ("c2", "我的快递到哪了", "请提供一下您的订单号", "订单号是20261205", "已经发货了，预计周五送达。"),
        ("c3", "can I change my delivery address?", "What's the email you ordered with?", "it's jane@example.com",
         "Yes: I've changed it, and you can do it yourself in your account page until the parcel ships."),
    ):
        store.set_status(cid, "handed_off", "requested")
        user_turn(store, cid, question)
        store.add_agent_answer(cid, ask)
        assert [a["conversation_id"] for a in store.answer_candidates()].count(cid) == 0  # asked, answered nothing
        user_turn(store, cid, given)
        store.add_agent_answer(cid, answer)
    assert [(a["question"], a["answer"]) for a in store.answer_candidates()] == [
        ("where is my parcel?", "It left our warehouse today and arrives on Friday."),
        ("我的快递到哪了", "已经发货了，预计周五送达。"),
        ("can I change my delivery address?",
         "Yes: I've changed it, and you can do it yourself in your account page until the parcel ships."),
    ]
    store.close()


def test_a_new_question_after_the_details_an_agent_asked_for_is_answered_on_its_own(tmp_path: Path) -> None:
    """Everything a customer wrote after an agent asked for their order number was taken for the number: the
    answer to a new question, or to a short new request, joined the answer to the first, under the first question."""
    store = Store(tmp_path / "dialogues.db")
    for cid, question, ask, given, new, answer in (
        ("c1", "where is my parcel?", "What's your order number?", "12345", "also, do you ship to Norway?",
         "Yes, we ship to Norway."),
        ("c2", "我的快递到哪了", "请提供一下您的订单号", "20261205", "还有，你们寄挪威吗？", "可以寄挪威。"),
        # a new request, said as one, as short as a name: "also, I want to change my address"
        ("c3", "我的快递到哪了", "请提供一下您的订单号", "20261205", "另外我要改地址", "可以在订单页面修改收货地址。"),
    ):
        store.set_status(cid, "handed_off", "requested")
        user_turn(store, cid, question)
        store.add_agent_answer(cid, ask)
        user_turn(store, cid, given)
        user_turn(store, cid, new)
        store.add_agent_answer(cid, answer)
    assert [(a["question"], a["answer"]) for a in store.answer_candidates()] == [
        ("also, do you ship to Norway?", "Yes, we ship to Norway."), ("还有，你们寄挪威吗？", "可以寄挪威。"),
        ("另外我要改地址", "可以在订单页面修改收货地址。")]
    store.close()


@pytest.mark.parametrize(("text", "details"), [
    ("12345", True), ("12345?", True), ("订单号是20261205", True), ("it's jane@example.com", True), ("Jane Doe", True),
    ("张三", True), ("My address is 12 High Street, London", True),
    ("also, do you ship to Norway?", False), ("also do you ship to Norway", False), ("还有，你们寄挪威吗？", False),
    ("你们发货到哪里", False), ("12345, and when will my refund arrive?", False),
    ("I also want to return the blue shoes I bought last month", False),
    # a new request, said as one: not asked, and as short as a name
    ("另外我要改地址", False), ("我还想退货", False), ("also need to change my address", False), ("also cancel it", False),
    ("我要查的订单是20261205", True), ("王小明", True),
    ("12345 幾時寄出", False), ("12345 有冇得快啲", False), ("訂單號係 12345", True),  # Hong Kong's Cantonese
])
def test_what_reads_as_the_details_an_agent_asked_for(text: str, details: bool) -> None:
    assert gives_details(text) is details


@pytest.mark.parametrize(("text", "nothing"), [
    ("您好，我是客服小李，請稍等~", True),  # Traditional characters read as Simplified ones
    ("Thanks for your patience!", True),
    ("Got it, your order ships tomorrow.", False),
    ("If it has not arrived in 5 days, please wait another day.", False),  # never cut in half
    ("I am sending it now.", False),
    ("我是说您的订单已经发货了", False),
    ("亲已经退款了哦", False),
    ("亲，还有其他问题吗？", True),
    ("您好，请问有什么可以帮您？", True),  # the first reply after a handoff
    ("How can I help you today?", True),
    ("您稍等，我看一下", True),
    ("👍", True),
    ("Please wait 3-5 business days for the refund to arrive.", False),  # a holding phrase, and an answer
    ("We'll send you a second parcel.", False),
    ("This is a known issue.", False),
    ("hi yes in stock", False),
    # an agent introducing themselves as "Ana here", as often as "this is Ana"
    ("Hi, Ana here. Could you give me your order number?", True), ("Sam here, looking at your bill.", True),
    ("Ana from Demo Shop here!", True), ("Click here.", False), ("Not here.", False), ("Your parcel is here.", False),
    ("正在为您办理退款", False),
    ("让您久等了 已经给您退款了", False),
    # what agents and customers say while one looks, as logged by a shop's agents
    ("Hello, this is Anna from Demo Shop support. Let me look into this for you.", True),
    ("Is there anything else I can help you with?", True),
    ("Please hold on while I check your order.", True),
    ("Sorry for the wait.", True),
    ("感谢您的耐心等待", True),
    ("祝您生活愉快！", True),
    ("请您稍等片刻，我这边帮您查询一下", True),
    ("ok thanks", True), ("Ok thank you!", True), ("thx", True), ("alright", True),
    ("好的谢谢", True), ("好的好的", True), ("麻烦了", True), ("辛苦了", True), ("hello? anyone there?", True), ("在吗？", True),
    ("Please wait 3-5 business days.", False),  # how long it takes is an answer
    ("请看一下邮箱", False),  # the customer is to look, not the agent
    ("请查看一下邮箱", False), ("请查询一下物流", False),
    ("请您稍等片刻再付款", False), ("请稍等一下再下单", False),  # the customer is to wait before doing something
    ("请稍等一会儿哦", True), ("我帮您查看一下", True), ("祝您有美好的一天！", True),
    ("稍等下", True), ("亲，稍等下哈", True), ("稍等呀", True), ("稍等几分钟", True),
    ("Please wait 24 hours.", False), ("Please wait two days.", False), ("Please wait up to a week.", False),
    ("请耐心等待两天", False), ("稍等，大概3小时内到账", False),
    ("ok, thanks for the refund, but the parcel is still missing", False),
    ("Let me check 환불이 완료되었습니다", False), ("let me check, это займёт пару минут", False), ("稍等 ＯＫ", True),
    # greetings, nudges, apologies and goodbyes, which the bot would otherwise say to the next customer as the answer
    ("Hello! How may I assist you?", True), ("Good morning! How are you?", True), ("Welcome!", True),
    ("Are you still there?", True), ("您还在吗", True), ("亲，在的", True), ("在的，请说", True),
    ("I'm sorry to hear that.", True), ("Sorry about that.", True), ("Apologies for the inconvenience.", True),
    ("很抱歉给您带来不便", True), ("抱歉让您久等了", True), ("不好意思久等了", True), ("I understand.", True),
    ("不好意思，给您带来不便了", True), ("非常抱歉，给您带来不便，敬请谅解", True), ("给您带来不便，深表歉意", True),
    ("抱歉哦", True), ("實在抱歉，讓您久等了", True), ("好的呢", True), ("请您耐心等待", True), ("麻烦您稍等一下哦", True),
    ("感谢您的理解与支持", True), ("不好意思，这款已经卖完了", False), ("给您带来不便的商品已经召回了", False),
    # a shop's welcome, its agents introducing themselves, asking what the trouble is, and its closings
    ("您好，欢迎光临XX旗舰店", True), ("在的亲，有什么可以帮您", True), ("您好，我是人工客服小王，工号1024", True),
    ("您好，客服小美为您服务", True), ("请问具体是什么问题呢", True), ("好的，我这边帮您登记一下", True),
    ("如有其他问题，欢迎随时咨询", True), ("满意的话麻烦给个好评哦", True), ("好的，这边已经收到您的反馈", True),
    ("客服周末休息", False), ("欢迎光临，本店满100包邮", False), ("已经帮您登记好了，明天发货", False),
    ("可以", False), ("是的", False), ("没有了", False),  # an agent's yes or no answers the customer's question
    ("请问还有其他需要帮助的吗", True), ("没有其他问题的话我这边先结束会话了哦", True), ("感谢您对本店的支持", True),
    ("期待您的再次光临", True), ("祝您周末愉快", True), ("您请说", True), ("您的问题我已经记录了", True),
    ("我先帮您退款了", False), ("已经记录了您的新地址，明天改好", False),
    ("还有其他颜色的", False), ("还有别的款式", False),  # an answer, in a closing question's first words
    ("有什么尺码都可以换", False), ("有什么都能退", False), ("有什么可以帮到您", True), ("有什么事吗", True),  # 有什么 offers help
    # Hong Kong agents' Cantonese: greeting, holding, apologising for the wait, asking for the order number, closing
    ("你好，有咩可以幫到你？", True), ("等我查一查", True), ("我幫你睇下", True), ("好嘅，我跟進下", True),
    ("唔好意思，要你等咗咁耐", True), ("多謝你嘅耐心等候", True), ("唔該你畀個訂單號我", True), ("你嘅訂單號係？", True),
    ("有咩問題隨時搵我哋", True), ("唔好意思，呢款冇貨喇", False), ("有咩都可以退", False), ("你睇下電郵", False),
    ("您看看邮箱", False), ("去看看订单", False), ("请确认一下订单", False), ("您查一下邮箱", False),  # for the customer to do
    ("我帮您看看", True), ("请稍等，我帮您确认一下", True), ("我这边帮您核实一下", True),
    ("Thanks for the information.", True), ("My pleasure.", True), ("Please give me a few minutes.", True),
    ("I'll be right back.", True), ("I'll get back to you shortly.", True), ("请稍后", True),
    ("Bye!", True), ("Goodbye, take care.", True), ("再见", True), ("拜拜~", True),
    ("Sorry, we don't ship to Norway.", False), ("Take care when you open the box, the glass is fragile.", False),
    ("Welcome to Demo Shop! Returns are free for 30 days.", False), ("I see your refund left today.", False),
    ("很抱歉，这款已经停产了", False), ("I'll get back to you by Friday with the invoice.", False), ("请稍后再试", False),
    # asking the customer for what the answer needs, which the next customer cannot give the bot
    ("Could you please give me your order number?", True), ("May I have the email address you used for the order?", True),
    ("Can I have your order number so I can check?", True), ("请提供一下您的订单号", True), ("您的手机号是多少？", True),
    ("方便提供一下您的订单号吗", True), ("我帮您查一下，请把订单号发给我", True),
    # two or three details at once, and a question left for the customer to finish
    ("Could you give me your name and phone number?", True), ("请提供一下您的收货地址和联系电话", True),
    ("麻烦提供一下您的姓名、电话和地址", True), ("请您提供一下收货人姓名和电话，我帮您查询", True), ("请问您的订单号是？", True),
    ("Your name and phone number are on the receipt.", False), ("您的订单号是20261205，已经发货了", False),
    ("收货地址和电话已经改好了", False),
    ("请问您是哪个订单呢？", True), ("您下单的手机号是多少", True), ("麻烦提供下订单截图", True), ("订单号发我一下", True),
    ("您把订单号复制给我一下", True), ("哪个订单都可以退", False), ("照片发给我们后三天内处理", False),
    ("請問你嘅訂單號係幾多？", True), ("可唔可以話我知你嘅訂單號碼？", True),  # in Hong Kong's Cantonese
    ("你好，我係客服阿明", True), ("仲有冇其他可以幫到你？", True), ("还有其他可以帮您的吗？", True),
    ("我系统升级了", False), ("还有其他颜色吗", False),
    ("唔該等等", True), ("收到，我哋跟進緊", True), ("请稍等，正在处理", True), ("再見，祝你生活愉快", True),
    ("請提供你嘅電郵地址", True), ("你嘅手提電話號碼係幾多", True), ("请提供您的电子邮件地址", True), ("电邮已经发出了", False),
    ("正在处理中的订单不能修改", False), ("衣服、裤子等等都可以退", False),
    ("Please send the item back to us.", False), ("Your order number is on the receipt.", False),
    ("Could you send the parcel back?", False), ("请在订单页面提供收货地址", False),
])
def test_what_an_agents_reply_says(text: str, nothing: bool) -> None:
    assert says_nothing(text) is nothing


@pytest.mark.parametrize(("text", "only"), [
    ("ok thanks", True), ("好的谢谢", True), ("Hello?? Anyone there?", True), ("在吗？", True), ("👍", True),
    ("thx", True), ("谢谢你们", True),
    # a customer asks in the words an agent holds the line with
    ("还有其他颜色吗", False), ("还有别的尺码吗", False), ("有什么颜色", False), ("请问包邮吗", False),
    ("Please hold my order until Monday", False), ("hey refund please", False), ("Just checking on my refund", False),
    ("谢谢，运费多少", False), ("hi, I need help", False),
    ("我的手机号13812345678，麻烦快点", True), ("my email is jane@example.com, hurry up please", True),  # for the agent
    ("电话：98765432", True), ("邮箱：a@b.com", True), ("my email: a@b.com", True), ("电话 9123 4567", True),
    ("亲，在吗？", True), ("好的亲", True), ("good morning", True), ("多谢", True), ("ok 👍", True),
    ("my phone is 555-010-0199, where is my refund", False), ("我的订单号是123456", False),
    # other scripts are words, not signs
    ("환불해 주세요", False), ("Где мой заказ?", False), ("注文はどこですか", False), ("🙏🙏", True), ("ok ✌️", True),
    ("ＯＫ👌", True), ("好的 (｡･ω･｡)", True), ("在吗 (´Д｀)", True), ("好的ヽ(°〇°)ﾉ", True),  # full width, kaomoji
    # nudges, goodbyes and asking for a person again, which the next customer would get the agent's answer for
    ("are you there?", True), ("anyone?", True), ("hi, I'm still waiting", True), ("still here", True), ("hmm", True),
    ("ok I'll wait", True), ("喂？有人吗", True), ("我还在", True), ("还在等", True), ("等了好久了", True), ("好的我等你", True),
    ("talk to a human", True), ("real person please", True), ("agent", True), ("转人工", True), ("我要人工", True),
    ("人工客服", True), ("bye", True), ("再见", True),
    ("客服在吗？", True), ("有人在吗", True), ("在么", True), ("我要找人工客服", True), ("帮我转人工", True), ("请转人工", True),
    ("找个真人", True), ("客服呢？", True), ("還沒人回覆嗎", True),  # Traditional characters read as Simplified ones
    ("客服电话是多少", False), ("没人收快递怎么办", False), ("我要找客服退款", False), ("人工客服几点下班", False),
    ("哦哦", True), ("好吧", True), ("知道了", True), ("谢啦", True), ("好滴", True), ("OK了", True), ("可以", True),
    ("是的", True), ("没有了", True), ("谢谢，没有其他问题了", True), ("不用了", True),
    ("可以退款吗", False), ("对吗", False), ("没有了吗", False), ("哦，那运费谁出", False),
    # Hong Kong customers' Cantonese, and other ways of saying ok: the agent's answer was learnt as one to "唔該"
    ("好嘅", True), ("唔該晒", True), ("多謝晒", True), ("得", True), ("係呀", True), ("冇問題", True), ("知道啦", True),
    ("了解", True), ("ok啦", True), ("得唔得", False), ("係咪有貨", False), ("唔該幫我查下訂單", False), ("了解一下运费", False),
    ("有冇人呀", True), ("喺唔喺度", True), ("仲喺度嗎", True), ("等咗好耐", True), ("點解冇人理我", True), ("仲未有人覆", True),
    ("搵人工", True), ("冇人收快遞點算", False), ("仲有冇貨", False),  # nudges and asking for a person, in Cantonese
    ("冇嘢喇，唔該", True), ("冇事喇", True), ("係咁先", True), ("知道喇", True), ("冇嘢收到", False),  # and closing
    # WeChat's own emoticons, which WeCom delivers as their names in brackets
    ("[强]", True), ("好的[抱拳]", True), ("謝謝[玫瑰][玫瑰]", True), ("[OK]", True), ("[微笑]我的订单到哪了", False),
    ("ok :+1:", True), ("thanks :pray:", True), (":smile: where is my order", False),  # and Slack's, by name
    ("are you there on Sundays?", False), ("can I talk to someone about my refund", False), ("waiting for my refund", False),
    ("still waiting for the parcel", False), ("还在路上吗", False), ("我要人工退款", False), ("human resources phone number", False),
    # whether the agent is still there, the answer awaited, a hurry: the agent's answer was learnt as one to "还在吗？"
    ("还在吗？", True), ("你还在吗", True), ("人还在吗？？", True), ("怎么还没回复", True), ("还没回我吗", True),
    ("催一下", True), ("还在发货吗", False), ("还没回复我的退款申请", False), ("催一下我的订单", False),
    # greetings and goodbyes as Taiwan and Hong Kong say them (早安, 晚安, 早晨), with a particle, and "that's all"
    ("早安", True), ("晚安～", True), ("早晨呀", True), ("哈罗", True), ("hello呀", True), ("拜拜啦", True), ("下次见", True),
    ("就这样吧", True), ("早安，我的订单到哪了", False), ("就这样寄出吗", False),
    # and in Pinyin, typed without a Chinese input method
    ("ni hao", True), ("zai ma?", True), ("you ren ma", True), ("zai jian", True), ("xie xie", True),
    ("ni hao, wo yao tui huo", False),
])
def test_what_a_customer_says_while_waiting(text: str, only: bool) -> None:
    assert asks_nothing(text) is only


@pytest.mark.parametrize(("text", "only"), [
    ("ok", True), ("thanks 👍", True), ("👍🏻", True), ("好的", True), ("[强]", True), ("好的[抱拳]", True), ("[OK]", True),
    ("[強]", True), ("[ＯＫ]", True),  # WeChat's Traditional names, full width
    (":+1:", True), ("thanks :slightly_smiling_face:", True), (":pray::skin-tone-2:", True), (":rage:", False),  # Slack's
    ("收到，谢谢", True), ("多謝晒", True), ("多謝哂", True), ("唔該哂", True), ("好的 (｡･ω･｡)", True),
    # with the particle that softens them, and Hong Kong's Cantonese ones
    ("好啦", True), ("收到了", True), ("没问题啦", True), ("明白啦", True), ("好喇", True), ("好囉，唔該", True), ("OK喇", True),
    ("好啦，那运费多少", False), ("ok la", True), ("thx啦", True), ("okay lor 👍", True), ("ok lah, refund?", False),
    # dropping what they asked: "never mind" was a miss, "Sorry, I'm not sure I understood", on the way to a person
    ("never mind", True), ("nvm, thanks", True), ("ok forget it", True), ("算了吧", True), ("never mind the refund", False),
    ("算啦", True), ("唔使喇，唔該", True), ("算數啦", True), ("唔使等", False),  # in Hong Kong's Cantonese
    # greetings, nudges and requests for a person ask the bot for something; signs alone may be anything
    ("hi", False), ("在吗", False), ("talk to a person", False), ("?", False), ("😡", False), ("[发怒]", False),
    ("", False), ("thanks, do you ship to France?", False), ("好的，运费多少", False),
    # words of thanks with a sign of displeasure: the customer is not content ("ok 😡" was answered "glad to help")
    ("ok 😡", False), ("thanks 👎", False), ("好的[发怒]", False), ("thanks :-1:", False), ("ok :(", False),
    ("好的[弱]", False), ("收到[流淚]", False),
    # as Hong Kong's and Singapore's offices write in English: "Noted 🙏" was a miss, "Sorry, I'm not sure I understood"
    ("Noted 🙏", True), ("noted with thanks", True), ("ok noted", True), ("Well received, thanks", True), ("tks", True),
    ("understood, thanks", True), ("many thanks!", True), ("thanks for your help", True), ("okie", True), ("gotcha", True),
    ("got it 👍", True), ("🙏", True), ("perfect", True), ("sounds good", True), ("appreciate it", True),
    ("noted, but where is my order?", False), ("noted but where is my order", False), ("received the wrong item", False),
    # a question mark asks whether it is
    ("received?", False), ("all good?", False), ("ok?", False), ("好的？", False),
    # thanks, very much so: "非常感谢" and Hong Kong's "多謝你" were misses
    ("非常感谢", True), ("太感谢了！", True), ("真的谢谢你们", True), ("多謝你", True), ("唔該晒你", True),
    ("非常感谢，我的订单呢", False), ("太贵了", False),
    # thanks as Chinese customers type it too: "谢了", Taiwan's and Hong Kong's "感恩", "3Q", an online shop's "好的亲"
    ("谢了", True), ("謝了！", True), ("感恩", True), ("感恩你🙏", True), ("3Q", True), ("好的亲", True),
    ("好勒", True), ("感恩节有优惠吗", False), ("3q，运费多少", False),
    # 嗯 as a Pinyin keyboard types it first, 恩, and with its particle: "恩恩" was a miss, on the way to a person
    ("恩恩", True), ("恩", True), ("嗯呢", True), ("恩，好的", True), ("恩人", False), ("嗯，运费多少", False),
    # in Pinyin, typed without a Chinese input method: "xie xie" was read by the classifier, and answered
    ("xie xie", True), ("Xiexie ni!", True), ("hao de", True), ("shou dao le", True), ("xie xie, wo yao tui huo", False),
    ("hao de, ding dan 123 zai na", False),
])
def test_what_only_acknowledges(text: str, only: bool) -> None:
    assert acknowledges(text) is only


@pytest.mark.parametrize(("text", "only"), [
    ("不对", True), ("不是", True), ("不是，不是这个", True), ("答非所问", True), ("你答错了！", True), ("不是我要的😡", True),
    ("唔係", True), ("唔啱", True), ("錯咗", True),  # Hong Kong's Cantonese
    # said once more, or more strongly, after a try that missed again
    ("还是不对", True), ("完全不对！", True), ("你搞錯了吧", True), ("不是我要的答案", True), ("都話唔啱啦", True),
    ("还是不对，我要退款", False), ("都不对吗？", False),
    # with a particle, or saying what it is not: "唔係呀" and "不是这个意思" were answered as what the classifier read
    ("唔係呀", True), ("唔係我想問嘅", True), ("你講錯咗", True), ("錯晒", True), ("答非所問啊", True), ("不是这个意思", True),
    ("不是这样的", True), ("唔係呀，我要退款", False),
    ("that's wrong", True), ("no, not what I asked", True), ("nope, wrong answer", True),
    # "no" alone answers "anything else?"; a correction that says what was meant is a question of its own
    ("no", False), ("nope", False), ("不用了", False), ("不是，我要退款", False), ("这个颜色不对", False), ("wrong item", False),
    # whose answer missed, what was asked, or that it was not understood: these were answered as the classifier read them
    ("你说的不对", True), ("这不是我要的", True), ("我问的不是这个", True), ("不是这个问题", True), ("你理解错了", True),
    ("你没明白我的意思", True), ("你在说什么？", True), ("你講咩呀", True),
    ("你说的对", False), ("我问的是运费", False), ("这不是我的订单", False), ("没明白怎么退款", False),
    ("你说什么时候到", False),
])
def test_what_only_says_the_answer_missed(text: str, only: bool) -> None:
    assert says_wrong(text) is only


@pytest.mark.parametrize(("text", "signs"), [
    ("😭😭", True), ("？？", True), ("?!", True), ("...", True), ("[流泪][流泪]", True), (":sob:", True), ("(｡･ω･｡)", True),
    ("？？😭", True), ("T_T", True),
    ("123", False), ("订单?", False), ("ok", False), ("哦", False), ("？1", False), ("[流泪]退款", False), ("QAQ", False),
])
def test_what_holds_no_word(text: str, signs: bool) -> None:
    assert wordless(text) is signs


@pytest.mark.parametrize(("text", "only"), [
    ("stop", True), ("Cancel!", True), ("cancel it please", True), ("quit 🙏", True), ("取消", True), ("不用了", True),
    ("never mind", True), ("算了吧", True),  # dropping it, as an action's question is dropped
    # giving up what the form is for, in Mandarin and Hong Kong's Cantonese
    ("I want to stop this", True), ("算了不退了", True), ("算了，不要了", True), ("不需要了", True), ("唔要了", True),
    ("唔使了", True), ("唔退喇", True), ("算了", True), ("唔使喇", True), ("唔要喇", True),
    # an answer, or a question, is none
    ("不是123", False), ("不退了吗？", False), ("不是", False), ("唔係", False), ("谢谢", False),
    # a request of its own, which the form answers before asking again; signs alone may be anything
    ("cancel order 123", False), ("stop sending me emails", False), ("取消订单", False), ("ok", False), ("👍", False),
    # not now, no longer, or later: the form asked for its number again
    ("先不用了", True), ("暂时不需要了", True), ("不查了", True), ("算了，不买了", True), ("退出", True), ("结束", True),
    ("下次吧", True), ("晚点再说", True), ("我再想想", True), ("那改天吧", True),
    ("不查了吗", False), ("下次什么时候到货", False), ("退出登录怎么办", False), ("结束了吗？", False),
])
def test_what_only_stops_what_the_bot_asks_for(text: str, only: bool) -> None:
    assert stops_asking(text) is only


@pytest.mark.parametrize(("text", "only"), [
    ("talk to a human", True), ("hi, agent please", True), ("Real person please 🙏", True), ("转人工", True),
    ("我要人工客服", True), ("ok, 找人工", True),
    # with the greeting, "please" or thanks written on without a stop
    ("你好转人工", True), ("麻烦转下人工", True), ("转人工谢谢", True), ("轉人工唔該", True), ("谢谢客服", False),
    # as customers write it when in a hurry: with "pls" or "now", or what they want first
    ("real person pls", True), ("agent plz", True), ("a human NOW", True), ("get me a human", True),
    ("I want a real person", True), ("connect me to an agent please", True), ("speak to a manager", True),
    ("I want a real person to call me back tomorrow", False), ("get me a refund", False),
    ("can I talk to someone about my refund", False), ("human resources phone number", False), ("我要人工退款", False),
    ("在吗", False), ("👍", False), ("人工客服几点下班", False),
    # in Hong Kong's Cantonese: talking with a real person (同 for 跟), whether there is one, "please" (唔該) first
    ("我想同真人講", True), ("同人工客服傾下", True), ("有冇真人？", True), ("有真人吗", True), ("唔該轉真人", True),
    ("我想跟真人聊一下", True), ("有冇真人睇過件貨", False), ("同真人講咗都冇用", False),
    # being put through to customer service, or talking with it, as mainland and Hong Kong customers ask for a person
    ("转客服", True), ("請幫我轉接客服", True), ("麻烦转客服", True), ("我想同客服講", True), ("转客服退款", False),
    ("跟客服讲过了", False), ("客服电话是多少", False),
    # asked as a question, or with a particle: "可以转人工吗" went to the classifier, and on to the fallback when unsure
    ("可以转人工吗？", True), ("能不能转人工", True), ("请问能帮我转人工吗", True), ("可唔可以轉真人呀", True),
    ("转人工啊！！", True), ("人工呢？", True), ("你好，可以转人工吗？谢谢", True),
    ("能不能转人工处理退款", False), ("可以人工退款吗", False), ("人工智能吗", False), ("可以", False),
    # in Chinese and English mixed, as many customers write: "I want" in one, the person in the other
    ("我想 talk to a human", True), ("我要找 agent", True), ("我要 human agent", True), ("I want 人工客服", True),
    ("转人工 please", True), ("please 转人工！", True), ("我想跟 agent", True),
    ("我想 refund", False), ("我要 agent 帮我退款", False), ("please", False), ("我想要", False),
    # in Pinyin, typed without a Chinese input method
    ("zhuan ren gong", True), ("Zhuanrengong!", True), ("wo yao ren gong ke fu", True), ("kefu", True),
    ("zhen ren", True), ("zhuan ren gong tui kuan", False), ("ren", False),
])
def test_what_only_asks_for_a_person(text: str, only: bool) -> None:
    assert asks_for_a_person(text) is only


@pytest.mark.parametrize(("text", "asked"), [
    ("那789呢", "789"), ("咁789呢", "789"), ("what about order 456?", "order 456"), ("789呢?", "789"), ("还有789", "789"),
    # with 的 (Hong Kong's 嘅) after the number, 那个 before it, or # in it: the particles were read as the number's
    ("那789的呢", "789"), ("那789号的呢", "789号"), ("咁789號嘅呢", "789號"), ("还有789的", "789"), ("那个789呢", "789"),
    ("那#789呢", "#789"), ("how about #789?", "#789"),
    # another order named before the number ("one more order 789?"), in Hong Kong's words too; "also"
    ("还有一单789呢", "789"), ("另外一单456呢？", "456"), ("還有一單 789 呢", "789"), ("仲有張單456呢", "456"),
    ("仲有一張單456呢", "456"), ("还有一个订单789呢", "789"), ("also 456?", "456"), ("and also #456?", "#456"),
    # signs around the number, emoji, WeChat's emoticons, Slack's emoji and thanks after it, full-width digits
    ("那「789」呢", "789"), ("那，７８９呢？", "７８９"), ("那789呢[捂脸]", "789"), ("咁789呢唔該🙏", "789"), ("and 789 pls?", "789"),
    ("and 789? :pray:", "789"), ("what about 789? thx", "789"),
    # asking to look at it too, with a verb or "too", "as well", 也 after it
    ("can you check 456 too", "456"), ("could you also check order 456 please", "order 456"), ("456 as well", "456"),
    ("再帮我查一下456", "456"), ("幫我再查一下456", "456"), ("456也查一下", "456"), ("check", None), ("456也是", None),
    # pointed at as one of several: "the" or "that" before it, "one" after it, or 那个, 那张, 那单 after it
    ("what about the 456 one", "456"), ("and that #456 one?", "#456"), ("那456那个呢", "456"), ("456那单呢？", "456"),
    ("那个456那張呢", "456"), ("what about the blue one", "blue"),
    # a sentence is asked whole, which no entity's pattern takes: no follow-up to the engine
    ("那789的退款呢", "789的退款"), ("那你的呢", "你"), ("还有其他颜色吗", "其他颜色吗"),
    ("where is order 789?", None), ("789", None), ("ok", None), ("我的订单789", None),
])
def test_what_a_short_follow_up_asks_about(text: str, asked: str | None) -> None:
    span = follow_up(text)
    assert (text[span[0]:span[1]] if span else None) == asked


@pytest.mark.parametrize(("text", "right"), [
    ("oh sorry, I meant 123", "123"), ("oops typo, it's 789", "789"), ("actually it's 456", "456"), ("not 999, 456", "456"),
    ("sorry wrong number, it's 456", "456"), ("my mistake it should be 456", "456"), ("Sorry, I meant 123-456", "123-456"),
    ("sorry i meant 123 🙏", "123"), ("不好意思，打错了，是123", "123"), ("不是999，是456", "456"), ("不是999是456", "456"),
    ("说错了 应该是789", "789"), ("說錯了，應該是789", "789"), ("唔好意思，打錯咗，係123", "123"), ("唔係999係456", "456"),
    ("应该是七八九", "七八九"),
    # no word that corrects, or nothing put right: the message is read as it is
    ("no, 123", None), ("it's 123", None), ("123", None), ("sorry", None), ("not 123", None), ("不是这个", None),
    ("错了", None), ("sorry, I meant to ask: can I still cancel my order? I placed it an hour ago", None),
])
def test_what_a_correction_puts_right(text: str, right: str | None) -> None:
    span = corrected(text)
    assert (text[span[0]:span[1]] if span else None) == right


@pytest.mark.parametrize(("text", "lacks"), [
    ("I don't know the number", True), ("I don't have it", True), ("no idea", True), ("dunno", True), ("idk 😅", True),
    ("I forgot", True), ("I can't find the order number", True), ("sorry, I don't know", True), ("I'm not sure", True),
    ("不知道", True), ("我不知道订单号", True), ("忘了", True), ("找不到", True), ("没有订单号", True), ("不记得了", True),
    ("我也不知道啊", True), ("不好意思，忘了", True), ("唔知", True), ("唔記得", True), ("搵唔到單號", True),
    # a phone's curly apostrophe, Hong Kong's 唔知道 and 忘咗, and 不晓得
    ("I don’t know", True), ("I can’t find it", True), ("唔知道", True), ("我忘咗單號", True), ("不晓得", True),
    ("忘记了", True),
    # can't look it up, did not keep it, has none, and Hong Kong's 唔清楚: the form asked for the number again
    ("查不到", True), ("没记住单号", True), ("没单号", True), ("唔清楚", True), ("查不到订单号啊", True),
    # a question of its own, or no such word
    ("I don't know where my order is", False), ("i don't know how to cancel", False), ("不知道怎么退款", False),
    ("not sure what you mean", False), ("sorry", False), ("ok", False), ("no", False), ("没有", False), ("😅", False),
])
def test_what_says_the_customer_does_not_know_the_answer(text: str, lacks: bool) -> None:
    assert lacks_answer(text) is lacks


@pytest.mark.parametrize(("text", "yes"), [
    ("yes", True), ("yes please 🙏", True), ("yep", True), ("please do", True), ("ok do it", True), ("sure, go ahead", True),
    ("是的", True), ("要", True), ("好的，麻烦了", True), ("可以，帮我处理吧", True), ("係呀", True), ("好呀唔該", True),
    # an acknowledgement alone, a question, or more than a yes
    ("ok", False), ("sure", False), ("好的", False), ("thanks", False), ("唔該", False), ("no", False), ("yes?", False),
    ("yes but where is my order", False), ("要退款", False), ("是什么", False),
    # as Chinese customers agree: "对啊" and "没错" to the one button offered got "好的，如果还有其他问题，随时问我。"
    ("对啊", True), ("是啊", True), ("没错", True), ("确定", True), ("确认", True), ("同意", True), ("对，就是这个", True),
    ("确定吗", False), ("没错，但是运费呢", False), ("同意退款吗", False),
    # "好啊" as "好呀" is, and "麻烦你" without its 了, in either script: "好的，麻煩你" got no agent
    ("好啊", True), ("好吖", True), ("好的，麻煩你", True), ("麻烦您", True), ("麻烦你查一下物流", False),
])
def test_what_only_says_yes(text: str, yes: bool) -> None:
    assert accepts(text) is yes


def test_a_long_run_of_acknowledgements_is_read_at_once() -> None:
    """Each word of "thanks thanks … now" could be read two ways ("thank" and a letter alone), "嗯嗯嗯…吗" in
    as many ways as its characters split: refusing 24 words took a minute, and the event loop of a bilingual
    bot (and the store's thread, when an agent answers) stood still for it. Run apart, so that a regression
    fails in seconds instead of hanging the suite."""
    code = ("from dialogues.holding import accepts, acknowledges, asks_for_a_person, asks_nothing, lacks_answer, says_nothing,"
            " says_wrong\n"
            "for text in ['thanks ' * 40 + 'now', '嗯' * 60 + '吗', '(｡･ω･｡) ok ' * 30 + 'refund', '不对' * 60 + '吗',\n"
            "             '不是的' * 40 + '吗', '这个不对' * 60 + '吗', 'thank u ' * 40 + 'now', \"i don't know \" * 40 + 'what?']:\n"
            "    assert not asks_nothing(text) and not acknowledges(text) and not asks_for_a_person(text)\n"
            "    assert not says_wrong(text) and not lacks_answer(text) and not accepts(text)\n"
            "    says_nothing(text)\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)


def test_labels_are_checked_and_the_latest_label_of_a_turn_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    first, second = user_turn(store, "c1", "where is it"), user_turn(store, "c1", "refund please")
    with pytest.raises(KeyError):
        store.add_labels([first, 999], "track_order")
    assert store.count("review_labels") == 0  # nothing of a refused batch is written
    bot_turn = first + 1
    with pytest.raises(KeyError):
        store.add_labels([bot_turn], "track_order")  # only customer turns are labelled
    store.add_labels([first, second], "track_order", "ann")
    store.add_labels([second], "get_refund", "bob")
    labels = {r["turn_id"]: (r["intent"], r["reviewer"]) for r in store.labels()}
    assert labels == {first: ("track_order", "ann"), second: ("get_refund", "bob")}
    store.add_agent_answer("c1", "Refund started.")
    assert store.answer_candidates()[0]["intent"] == "track_order"  # the label of the first question turn
    store.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe+shop@example.co.uk today", "write to [EMAIL] today"),
    ("it's alice.o'brien@example.co.uk", "it's [EMAIL]"),  # an apostrophe is allowed before the @: "alice.o'[EMAIL]"
    ("write to 'jane@example.com' or \"li@qq.com\"", "write to '[EMAIL]' or \"[EMAIL]\""),  # the quotes it stands in stay
    ("call 13812345678 or +86 138 1234 5678", "call [PHONE] or [PHONE]"),
    ("手机13912345678谢谢", "手机[PHONE]谢谢"),
    # Taiwan and Hong Kong: a mobile, identity numbers (Taiwan's with its checksum; Hong Kong's, check digit
    # in brackets, full-width ones too)
    ("我的手機是0912-345-678，身分證字號A123456789，包裹破了", "我的手機是[PHONE]，身分證字號[ID]，包裹破了"),
    ("身份證 A123456（3），電話 0912345678", "身份證 [ID]，電話 [PHONE]"),
    ("訂單 A123456788 同 1234567890", "訂單 A123456788 同 1234567890"),  # not a valid ID; no 09 mobile
    # Hong Kong's without the brackets, after a word for the card, with a right check digit: order numbers look the same
    ("我身份證號碼係A1234563，HKID: g123456a", "我身份證號碼係[ID]，HKID: [ID]"),
    ("身份證 A1234567，訂單 A1234563", "身份證 A1234567，訂單 A1234563"),
    ("我的手机号是138.1234.5678，注册不了", "我的手机号是[PHONE]，注册不了"),  # dotted, as NANP numbers may be
    ("my number is +44 20 7946 0958", "my number is [PHONE]"),
    ("ring (555) 010-0199", "ring [PHONE]"),
    ("card 4111 1111 1111 1111 expires soon", "card [CARD] expires soon"),
    # a card in its scheme's groups with a digit mistyped (it fails Luhn) is still the customer's card, and its tail
    # is no phone number; written whole it reads as an order number
    ("card 4111-1111-1111-1112 (a typo), 6212 2617 0201 2345 678", "card [CARD] (a typo), [CARD]"),
    ("order 4111111111111112, 6212261702012345678", "order 4111111111111112, 6212261702012345678"),
    ("身份证 11010519491231002X", "身份证 [ID]"),
    ("ssn 123-45-6789", "ssn [ID]"),
    ("order 113542617735902 and 00123842 were cancelled", "order 113542617735902 and 00123842 were cancelled"),
    # full-width characters, as Chinese input methods type them: matched, and the text around kept as typed
    ("手机１３９１２３４５６７８", "手机[PHONE]"),
    ("电话+44 20 7946 0958", "电话[PHONE]"),  # a + number straight after Chinese text
    ("邮箱ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ，谢谢", "邮箱[EMAIL]，谢谢"),
    ("我的卡号是４１１１１１１１１１１１１１１１", "我的卡号是[CARD]"),
    ("身份证１１０１０５１９４９１２３１００２Ｘ　电话（５５５）０１０－０１９９。", "身份证[ID]　电话[PHONE]。"),
    ("ｏｒｄｅｒ　１１３５４２６１７７３５９０２", "ｏｒｄｅｒ　１１３５４２６１７７３５９０２"),
    # a card number with an expiry or CVV written next to it
    ("my card is 4111 1111 1111 1111 12/25 cvv 123", "my card is [CARD] 12/25 cvv 123"),
    ("卡号4111111111111111 12/25", "卡号[CARD] 12/25"),
    ("卡号４１１１　１１１１　１１１１　１１１１　１２／２５", "卡号[CARD]　１２／２５"),
    ("cvv 123 4111-1111-1111-1111", "cvv 123 [CARD]"),
    ("card 4111 1111 1111 1112 12/25", "card [CARD] 12/25"),  # no run of its groups passes Luhn, but it is one
    ("card 4111  1111  1111  1111", "card [CARD]"),
    # order numbers that pass a checksum: not grouped as a card is, a 19-digit "Mastercard", an impossible birth date
    ("my order 819-2544734-6242047 is late", "my order 819-2544734-6242047 is late"),
    ("order 2311308336550780452", "order 2311308336550780452"),
    ("订单号721682330673244456", "订单号721682330673244456"),
    ("身份证 110105 19491231 002X", "身份证 [ID]"),
    ("IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN [IBAN], thanks"),
    ("ref DE89 3704 0044 0532 0130 01", "ref DE89 3704 0044 0532 0130 01"),  # fails mod 97
    ("座机 010-62345678 或 (0755) 88889999", "座机 [PHONE] 或 [PHONE]"),
    ("电话010-62345678-8001，总机 (0755) 86013388-123", "电话[PHONE]，总机 [PHONE]"),  # with an extension, which goes with it
    ("座机 020-5869 6984、0755 8667 8699 或 021-6234-5678", "座机 [PHONE]、[PHONE] 或 [PHONE]"),  # the number as 4 4
    ("my SSN is 123456789", "my SSN is [ID]"),
    # cards written in other groupings, from their first digit
    ("card 41111111 11111111", "card [CARD]"), ("卡号 622202 1234567890128", "卡号 [CARD]"),
    ("快递单号 SF8046055490315 还没到", "快递单号 SF8046055490315 还没到"),  # letters, digits, no country
    # the other ways customers write them
    ("tel 010 62345678 or 0755 88889999, 电话01062345678", "tel [PHONE] or [PHONE], 电话[PHONE]"),
    ("电话号码是01062345678，座机号码：075588889999", "电话号码是[PHONE]，座机号码：[PHONE]"),
    ("phone number 01062345678, order 01062345678", "phone number [PHONE], order 01062345678"),
    # Hong Kong's and Macau's eight digits, after a word for a phone only: an order number looks the same
    ("我的電話是9123 4567，訂單 91234567", "我的電話是[PHONE]，訂單 91234567"), ("whatsapp 6123-4567", "whatsapp [PHONE]"),
    ("我電話係 9123 4567，手機係61234567，電話係咪打唔通", "我電話係 [PHONE]，手機係[PHONE]，電話係咪打唔通"),  # in Cantonese
    ("我手提 9123 4567，手提：61234567，手提袋 1234 5678", "我手提 [PHONE]，手提：[PHONE]，手提袋 1234 5678"),  # 手提: a mobile
    ("卡號係 9558 8000 0000 0000 000，身份證號碼係 110105491231002", "卡號係 [CARD]，身份證號碼係 [ID]"),
    ("手機：61234567", "手機：[PHONE]"), ("tel 1234 5678", "tel 1234 5678"), ("call me at 9123 4567", "call me at [PHONE]"),
    ("📱9123 4567, ☎️: 2123-4567, 📞 13812345678", "📱[PHONE], ☎️: [PHONE], 📞 [PHONE]"),  # a phone's emoji for the word
    ("WhatsApp我 9123 4567，或者call我61234567", "WhatsApp我 [PHONE]，或者call我[PHONE]"),  # and 我 for "me"
    ("hotel 2345 6789, room 12", "hotel 2345 6789, room 12"),  # "tel" inside a word names no phone
    # any country's national number, after a word for a phone
    ("my phone is 4155552671, cell: 415.555.2671", "my phone is [PHONE], cell: [PHONE]"),
    ("mobile 07911 123456 or my phone number is 0412 345 678", "mobile [PHONE] or my phone number is [PHONE]"),
    ("手机 1381 2345 678，电话号码 400-820-8820", "手机 [PHONE]，电话号码 [PHONE]"),
    ("phone 2024-05-01 broke, call 1234 5678 9012 3456 78, cancel 123456789", "phone 2024-05-01 broke, call 1234 5678 9012 3456 78, cancel 123456789"),
    # passport and QQ numbers after their names; alone, they read as order numbers
    ("passport E12345678, 护照号EA1234567, my passport number is 123456789.", "passport [ID], 护照号[ID], my passport number is [ID]."),
    ("护照号：E 1234 5678，passport no. 1234-56789", "护照号：[ID]，passport no. [ID]"),  # in groups
    # and the permits that stand for one between the Mainland, Hong Kong, Macau and Taiwan
    ("港澳通行证C12345678，回鄉證號碼：H1234567890，台胞证 12345678，home return permit no. H12345678",
     "港澳通行证[ID]，回鄉證號碼：[ID]，台胞证 [ID]，home return permit no. [ID]"),
    ("护照 2024-05-01 到期，通行证 2031-12-31", "护照 2024-05-01 到期，通行证 2031-12-31"),  # its expiry date is none
    ("QQ：123456789，我的qq是 12345678，企鹅号 987654321", "QQ：[QQ]，我的qq是 [QQ]，企鹅号 [QQ]"),
    # WeChat IDs after their name; a word after it is one only after 号, "id" or a colon
    ("我的微信是 wxid_abc123，微信号：zhang_san88, wechat id: lily2024", "我的微信是 [ID]，微信号：[ID], wechat id: [ID]"),
    ("加我微信 zhangsan, 微信支付失败, In WeChat: Settings, 微信同号13812345678",
     "加我微信 [ID], 微信支付失败, In WeChat: Settings, 微信同号[PHONE]"),
    # a handle of letters alone after 加微信 or a word that says it is one; after the name alone it is an English word
    ("加微信zhangwei谢谢，微信号 Zhangwei，请加个人微信：Lilyzhang", "加微信[ID]谢谢，微信号 [ID]，请加个人微信：[ID]"),
    ("請加我個人微信 zhangwei，加個微信 lilyzhang", "請加我個人微信 [ID]，加個微信 [ID]"),  # in Traditional characters
    ("我的微信号是zhangsan88，微信號為 Zhang_San, wechat id is lily2024", "我的微信号是[ID]，微信號為 [ID], wechat id is [ID]"),
    ("微信 account 被封了, 我用微信 payment 失败, wechat support", "微信 account 被封了, 我用微信 payment 失败, wechat support"),
    # a bare ID straight after 微信, without 加, 号 or 是; the words customers write after 微信 stay
    ("我微信abc_123456，微信 wxid_abcd1234，微信上联系，微信支付", "我微信[ID]，微信 [ID]，微信上联系，微信支付"),
    # WeChat's names written to pass a platform's filter; "v" only after 加 or "+"
    ("加我薇信 zhang_san88，威信号 abc12345，加v：zhangsan，+V zhang_san88，加vip会员", "加我薇信 [ID]，威信号 [ID]，加v：[ID]，+V [ID]，加vip会员"),
    # the ID WeChat itself gives, pasted without 微信 before it
    ("加我 wxid_k8s9d7f6g5h4j3，wxid_abc123def 就是我, WXID_ABC123DEF", "加我 [ID]，[ID] 就是我, [ID]"),
    # after a comma, as after a colon: a handle's shape, or any after 加微信; the words after a comma stay
    ("加我微信，abc_123456，微信号, zhang_san88，加微信，zhangwei", "加我微信，[ID]，微信号, [ID]，加微信，[ID]"),
    ("微信，我打不开，wechat, thanks", "微信，我打不开，wechat, thanks"),
    # Hong Kong's Cantonese 係 for 是, and "is" in English, before an ID; after "is" alone a word is no ID
    ("我嘅微信號係 zhangwei88，微信帳號係 zhangwei，我QQ係 123456789，護照號碼係 E12345678",
     "我嘅微信號係 [ID]，微信帳號係 [ID]，我QQ係 [QQ]，護照號碼係 [ID]"),
    ("my wechat is abc_123456, my wechat is broken, 微信係咪用唔到", "my wechat is [ID], my wechat is broken, 微信係咪用唔到"),
    ("wechat id please, my wechat id changed, 微信号 thanks", "wechat id please, my wechat id changed, 微信号 thanks"),
    # a LINE ID, after "LINE" and ID or 帳號 ("line" alone is a word), and a Telegram handle
    ("LINE ID: zhang_88，我的LINE帳號是 chen_tai, line id是 zhangwei, telegram @zhangsan88, Telegram: zhangwei",
     "LINE ID: [ID]，我的LINE帳號是 [ID], line id是 [ID], telegram @[ID], Telegram: [ID]"),
    ("the line is busy123, line 2: abc_123, online id: abc_123, telegram support is slow, Line ID please",
     "the line is busy123, line 2: abc_123, online id: abc_123, telegram support is slow, Line ID please"),
    # and after "line" with a colon or 是, after "my line is", or after 加, as customers give one without "ID"
    ("加我line: chen88，line: chen_tai, my line is chen88, 加我line chen88, LINE：zhangwei, line是 lily2024",
     "加我line: [ID]，line: [ID], my line is [ID], 加我line [ID], LINE：[ID], line是 [ID]"),
    # but not "line" the word; a shop's hotline number is a phone number, not a LINE ID
    ("line 3 of the invoice, online, in line with, my line is busy, order line: 10023, Line: Settings, hotline: 400-800-1234",
     "line 3 of the invoice, online, in line with, my line is busy, order line: 10023, Line: Settings, hotline: [PHONE]"),
    # an Alipay account after its name: a handle, or the email address or phone number it is; not a price after the name
    ("支付宝账号 zhangsan_88，支付寶帳號：chen_tai, my alipay is li_si2024, 加我支付宝 zhangsan, 支付宝：zhang@163.com, alipay 13812345678",
     "支付宝账号 [ID]，支付寶帳號：[ID], my alipay is [ID], 加我支付宝 [ID], 支付宝：[EMAIL], alipay [PHONE]"),
    ("支付宝 12800元, alipay 12800.50, 微信 12800 元, 支付宝支付失败, alipay payment failed, Alipay: Settings, my alipay is broken",
     "支付宝 12800元, alipay 12800.50, 微信 12800 元, 支付宝支付失败, alipay payment failed, Alipay: Settings, my alipay is broken"),
    # the 15-digit identity numbers issued before 1999, after a word for one: no checksum, and order numbers look the same
    ("身份证 130503670401001，身份證號碼：110105 491231 002", "身份证 [ID]，身份證號碼：[ID]"),
    ("订单 130503670401001, 身份证 110105491331002", "订单 130503670401001, 身份证 110105491331002"),  # no 13th month
    # an 18-digit one with a digit mistyped, after its name; alone, or with no real birth date, it is an order number
    ("身份证号 110105194912310021，我的身份证是 44030119900101123X", "身份证号 [ID]，我的身份证是 [ID]"),
    ("社保卡号 110105194912310021，驾驶证号：440301900101123", "社保卡号 [ID]，驾驶证号：[ID]"),  # the holder's ID number
    # a birth date after its name, with its year; a date alone, or a birthday's day, is no one's
    ("出生日期：1990-01-01，我的生日是1990年1月1日，出生日期 19900101", "出生日期：[DOB]，我的生日是[DOB]，出生日期 [DOB]"),
    ("DOB: 01/01/1990, my date of birth is 12 March 1985, born on March 12, 1985",
     "DOB: [DOB], my date of birth is [DOB], born on [DOB]"),
    ("生日礼物 2024年12月1日发货，生日是3月5日，order 2024-05-01", "生日礼物 2024年12月1日发货，生日是3月5日，order 2024-05-01"),
    ("订单 110105194912310021，身份证 110105194913310021", "订单 110105194912310021，身份证 110105194913310021"),
    ("order E12345678 and 123456789, passport photo 123456, qq 1234, QQ音乐 2024",
     "order E12345678 and 123456789, passport photo 123456, qq 1234, QQ音乐 2024"),
    # the other words customers write before a phone number
    ("my number is 4155552671, contact number: 415 555 2671", "my number is [PHONE], contact number: [PHONE]"),
    ("text me 4155552671 or ring 07911123456, telephone 4155552671", "text me [PHONE] or ring [PHONE], telephone [PHONE]"),
    ("the courier will call you on 7946 0958, or phone to 4155552671", "the courier will call you on [PHONE], or phone to [PHONE]"),
    ("收货电话改成0044 7911 123456，联系方式：4155552671，拨打4155552671", "收货电话改成[PHONE]，联系方式：[PHONE]，拨打[PHONE]"),
    ("my order number is 4155552671, the text 2345 6789, ring size 7 12345678",
     "my order number is 4155552671, the text 2345 6789, ring size 7 12345678"),
    # dialled from abroad with 00 for the "+", when it makes a valid number
    ("0044 20 7946 0958 or 00 44 7911 123456, 0044 (0)20 7946 0958 10:30", "[PHONE] or [PHONE], [PHONE] 10:30"),
    ("0044 20 7946 0958 0044 7911 123456, order 0012 0044 20 7946 0958", "[PHONE] [PHONE], order 0012 [PHONE]"),
    ("order 0012 3456 789, invoice 0044 1234 5678, tracking 0016 5432 1098 7654",
     "order 0012 3456 789, invoice 0044 1234 5678, tracking 0016 5432 1098 7654"),
    # UK numbers with their trunk 0, in groups; whole, they read as order numbers
    ("07911 123456, 0161 496 0000 or 07911-123-456; 07700 900123", "[PHONE], [PHONE] or [PHONE]; [PHONE]"),
    ("order 0123 456 789, ticket 0100 23456789, order 07911123456", "order 0123 456 789, ticket 0100 23456789, order 07911123456"),
    ("415/555-2671 or 415 / 555 2671, sizes 100/200-3000", "[PHONE] or [PHONE], sizes 100/200-3000"),
    # dashes an input method or a word processor writes, and WhatsApp's links
    ("手机 138—1234—5678，座机 010–62345678, 2024—05—01", "手机 [PHONE]，座机 [PHONE], 2024—05—01"),
    ("https://wa.me/447911123456 or wa.me/8613812345678?text=hi", "https://wa.me/[PHONE] or wa.me/[PHONE]?text=hi"),
    # zero-width spaces, word joiners and soft hyphens come along with numbers copied from web pages
    ("phone 138\u200b1234\u200b5678, card 4111\u200b1111\u200b1111\u200b1111", "phone [PHONE], card [CARD]"),
    ("我的手机是139\u20601234\u20605678，邮箱 john\u200b@example.com 或 138\xad1234\xad5678",
     "我的手机是[PHONE]，邮箱 [EMAIL] 或 [PHONE]"),
    # a tab, a line break or doubled spaces between a number's groups, as the model's text has one space
    ("电话：138\t1234\t5678, call me on\n139 8765 4321", "电话：[PHONE], call me on\n[PHONE]"),
    ("IBAN DE89  3704  0044  0532  0130  00 refund", "IBAN [IBAN] refund"),
    ("身份证 440308  19900307  1235 or 4111\t1111 1111  1111", "身份证 [ID] or [CARD]"),
    ("order 12345\n\nthanks  a lot", "order 12345\n\nthanks  a lot"),
    ("Item codes:\n100\n250\n1000, totals 120\n450 1234", "Item codes:\n100\n250\n1000, totals 120\n450 1234"),
    ("身份证 440308-19900307-1235", "身份证 [ID]"), ("ssn 123 45 6789", "ssn [ID]"),
    ("iban de89370400440532013000 or GB82-WEST-1234-5698-7654-32", "iban [IBAN] or [IBAN]"),
    ("card 4111.1111.1111.1111 or 4111 / 1111 / 1111 / 1111.", "card [CARD] or [CARD]."),
    ("at 10:30 4111 1111 1111 1111", "at 10:30 [CARD]"),  # "30 4111 1111 1111" passes the checks too
    # a date, a time or another number written next to a card or a phone number
    ("paid 2023-11-20 4111 1111 1111 1111", "paid 2023-11-20 [CARD]"), ("12/25 4111 1111 1111 1111", "12/25 [CARD]"),
    ("order 12345 4111 1111 1111 1111", "order 12345 [CARD]"),
    ("4111 1111 1111 1111 5500 0000 0000 0004", "[CARD] [CARD]"),
    ("call +44 20 7946 0958 10:30 or +1 555 010 0199 2023-11-20", "call [PHONE] 10:30 or [PHONE] 2023-11-20"),
    ("ring +44 20 7946 09588 or +999 1234 5678", "ring [PHONE] or [PHONE]"),  # a digit too many, no such country
    ("paid 40.02 2023-11-20 4111 1111 1111 1111", "paid 40.02 2023-11-20 [CARD]"),  # "40,02,2023,11,20,4111" passes Luhn
    ("437-896-2639 5170 5283 7554 1573", "[PHONE] [CARD]"),  # "2639 5170 5283 7554" passes Luhn
    ("张三 3772 7319 7007 0427 23 15741639163", "张三 [ID] [PHONE]"), ("卡号-5168008216998120", "卡号-[CARD]"),
    ("2023-11-20 625495 9920202201023", "2023-11-20 [CARD]"), ("PL87 6225 5400 6019 4155 7365 2201", "[IBAN]"),
    ("发到wang24@163.com或者zhang_72@qq.com", "发到[EMAIL]或者[EMAIL]"),
    # and what only looks like them: a USPS number (no landline in it), an order number after "#", a courier's
    ("9400 0367 7608 9532 9061 82, 9400 7233 0408 8121 2222 53, YT4990812542304",
     "9400 0367 7608 9532 9061 82, 9400 7233 0408 8121 2222 53, YT4990812542304"),
    # and a glued word before or after is no reason to show one
    ("VISA4111111111111111, 手机#13812345678, +49-89-1234567/8, +61 412 345 678pls", "VISA[CARD], 手机#[PHONE], [PHONE]/8, [PHONE]pls"),
    ("ref 163-3540-0409 4537-3311-5777-0101", "ref [PHONE] [CARD]"),  # and so does "0409 4537-3311-5777"
    ("my phone +44 20 7946 0958 1234 5678", "my phone [PHONE] 1234 5678"),  # too long for a number, as a whole
    ("at +91 98765 43210 10:30 or +81 3-1234-5678 2023/11/20", "at [PHONE] 10:30 or [PHONE] 2023/11/20"),
    ("+65 6123 4567 2023-11-20, +49 30 901820 9:00", "[PHONE] 2023-11-20, [PHONE] 9:00"),  # no "+[CARD]"
    ("积分 +200 2023-11-20 10:30:15 没到账, shipping +5.99 2023-11-20", "积分 +200 2023-11-20 10:30:15 没到账, shipping +5.99 2023-11-20"),
    ("ID 1101 0119 9003 0775 71 ok, my ssn is 123 45 6789", "ID [ID] ok, my ssn is [ID]"),
    ("张三 13812345678 110101199003077715", "张三 [PHONE] [ID]"),  # an ID next to another number
    ("IBAN ES91 2100 0418 4502 0005 1332 and AT61 1904 3002 3457 3201 thanks", "IBAN [IBAN] and [IBAN] thanks"),
    ("请发到zhang@163.com或li@qq.com和wang@example.cn", "请发到[EMAIL]或[EMAIL]和[EMAIL]"),  # joined by Chinese words
    # what a + number's groups run into: a second number, a quantity, an amount; and how else they are written
    ("call +971 55 644 6337 (695) 587-6879 or +91-9768854746 913.73", "call [PHONE] [PHONE] or [PHONE] 913.73"),
    ("电话 +41 76 399 98 53是我的手机, +852 9123 4567谢谢, +852 6123 4567张先生收", "电话 [PHONE]是我的手机, [PHONE]谢谢, [PHONE]张先生收"),
    ("+61 437 825 244 641.10, +41 76 556 87 97 524-893-5846", "[PHONE] 641.10, [PHONE] [PHONE]"),  # then one marked otherwise
    ("+81 90-1234-5678 36码, +65 9252 8924 10折", "[PHONE] 36码, [PHONE] 10折"),
    ("电话：0755-8667-8699 9点到18点, 订单 4332755 010 46450640", "电话：[PHONE] 9点到18点, 订单 4332755 [PHONE]"),
    ("10:30 021 6234 5678, 电话 0755 8667 8699 2 pcs, size 38 020 28460811 10/04", "10:30 [PHONE], 电话 [PHONE] 2 pcs, size 38 [PHONE] 10/04"),
    ("3519868982572495-ICBC", "[CARD]-ICBC"),
    # a country code in brackets, as Hong Kong's customers and forms write it
    ("我的电话号码是：(+852) 9123-4567，+(852) 6123 4567, (+44) 20 7946 0958", "我的电话号码是：[PHONE]，[PHONE], [PHONE]"),
    # and without its "+", when the rest is a number of that country; other numbers in brackets stay
    ("call me on (852) 9123 4567, 我電話（852）6123-4567, (853)66123456, (44) 7911 123456 ok",
     "call me on [PHONE], 我電話[PHONE], [PHONE], [PHONE] ok"),
    ("(852)-9123-4567, (+852)-6123-4567 或 +(852)-9123-4567", "[PHONE], [PHONE] 或 [PHONE]"),  # a dash after the code
    ("I bought (2) 1234 5678, order (123) 4567 8901, note (12) 345 678, (852) 1234 5678",
     "I bought (2) 1234 5678, order (123) 4567 8901, note (12) 345 678, (852) 1234 5678"),
    # or in neither, in groups; a number Hong Kong gives out none of, or written whole, is an order number
    ("852-9123-4567, 852 6123 4567, 852 21234567 或 853 6612-3456", "[PHONE], [PHONE], [PHONE] 或 [PHONE]"),
    ("訂單 852-1234-5678, order 852 4123 4567, 85291234567", "訂單 852-1234-5678, order 852 4123 4567, 85291234567"),
    # a second number listed after one, and a third
    ("電話 9123 4567/9876 5432，+852 9123 4567 / 6123 4567、2123 4567 或 31234567",
     "電話 [PHONE]/[PHONE]，[PHONE] / [PHONE]、[PHONE] 或 [PHONE]"),
    ("電話 9123 4567/2件, tel 61234567 或 1234 5678, 电话 13812345678/订单 12345678",
     "電話 [PHONE]/2件, tel [PHONE] 或 1234 5678, 电话 [PHONE]/订单 12345678"),
    ("我手機號係+852 91234567 同埋 6123 4567, call 61234567 and 21234567, 电话13812345678或者13912345678",
     "我手機號係[PHONE] 同埋 [PHONE], call [PHONE] and [PHONE], 电话[PHONE]或者[PHONE]"),
    # China's country code written without its "+", or in brackets
    ("8613812345678, 86 138 1234 5678 或 (+86)13812345678", "[PHONE], [PHONE] 或 [PHONE]"),
    # and a landline's area code after 86 without its trunk 0, or after 0086, as a number China gives out
    ("86-10-62345678, 86 21 6234 5678, 86-755-88889999 或 0086 10 6234 5678", "[PHONE], [PHONE], [PHONE] 或 [PHONE]"),
    ("订单 86-10-12345678, 86-99-62345678", "订单 86-10-12345678, 86-99-62345678"),
    # an extension goes with its number, however it is written
    ("86-10-62345678-8001, 010-62345678-8001 或 电话010-62345678转8001", "[PHONE], [PHONE] 或 电话[PHONE]"),
    ("+1 415 555 0100 ext. 23, (415) 555-0100 x23, +44 20 7946 0958 (ext 123) or 415-555-0100 extension 7",
     "[PHONE], [PHONE], [PHONE] or [PHONE]"),
    ("座机 0755-88889999 转分机 8001，+86 10 6234 5678 分机号：8001。", "座机 [PHONE]，[PHONE]。"),
    # but not a count, an amount, a date or an order number after one
    ("电话 13812345678 转2件, +1 415 555 0100 x 1.5, 010-62345678 2024-05-01, tel 010-62345678 #12345678",
     "电话 [PHONE] 转2件, [PHONE] x 1.5, [PHONE] 2024-05-01, tel [PHONE] #12345678"),
    ("order 12345-8001 ext. 23, v2.3.1-8001, 10:30-8001", "order 12345-8001 ext. 23, v2.3.1-8001, 10:30-8001"),
    ("+1 415 555 0100 x 12 pcs, 13812345678 x2 and (415) 555-0100 x12 items",
     "[PHONE] x 12 pcs, [PHONE] x2 and [PHONE] x12 items"),
    # a mobile's 11 digits in other groups, joined by dashes; in spaces they are as likely amounts
    ("1381-234-5678, 138-123-45678 或 1381-2345-678", "[PHONE], [PHONE] 或 [PHONE]"),
    ("价格 1500 300 2000, 数量 150 200 30000", "价格 1500 300 2000, 数量 150 200 30000"),
    # or with its first three digits split before the usual 4 4, but not as part of a longer run
    ("手机13 8 1234 5678谢谢, 1 38 1234 5678 或 1-3-8-1234-5678", "手机[PHONE]谢谢, [PHONE] 或 [PHONE]"),
    ("12 8 1234 5678, 13 8-1234 5678, 数量 13 8 1234 5678 10", "12 8 1234 5678, 13 8-1234 5678, 数量 13 8 1234 5678 10"),
    # a mobile in Chinese numerals, or numerals and digits; other runs of numerals are no phone number
    ("手机一三八一二三四五六七八，电话：幺三八 1234 5678谢谢", "手机[PHONE]，电话：[PHONE]谢谢"),
    ("共一百二十块, 一三五七九, 一三八一二三四五六七八九", "共一百二十块, 一三五七九, 一三八一二三四五六七八九"),
    # Hong Kong's eight digits in numerals, after a word for a phone only; a time after one is none
    ("手提：九一二三四五六七，我電話係九一二三 四五六七，电话十二点打给我", "手提：[PHONE]，我電話係[PHONE]，电话十二点打给我"),
    # a Chinese bank's own debit card, in no international scheme's range, after a word for a card
    ("银行卡9558800000000000000，工行卡号是 9558-8000-0000-0000-000", "银行卡[CARD]，工行卡号是 [CARD]"),
    ("card number 9558 8000 0000 0000 000", "card number [CARD]"),
    ("卡号9558800000000000001, 会员卡号 1234567890123, order 9558800000000000000",
     "卡号9558800000000000001, 会员卡号 1234567890123, order 9558800000000000000"),
    # a Chinese bank's account number after a word for one, which carries no Luhn digit, and a card's failing it
    ("账号 6222021234567890123，银行账号：622202 1234567890123，收款帳號：9558800000000000001",
     "账号 [CARD]，银行账号：[CARD]，收款帳號：[CARD]"),
    ("银行卡号 6222021234567890123，卡号6222021234567890123", "银行卡号 [CARD]，卡号[CARD]"),  # UnionPay's, a digit mistyped
    ("订单号 6222021234567890123, order 6222021234567890123, 账号 1234567890123, 账号下的订单 6222021234567890123",
     "订单号 6222021234567890123, order 6222021234567890123, 账号 1234567890123, 账号下的订单 6222021234567890123"),
    ("+81 90-7444-7575 2023年08月02日, +52 1 55 8876 5945 3件", "[PHONE] 2023年08月02日, [PHONE] 3件"),
    ("0512-7948016 052832428726, 13:28 (010) 33394593 2024-03-05", "[PHONE] 052832428726, 13:28 [PHONE] 2024-03-05"),
    ("+55 11 92999-8698, +7 945 883-87-33, +54 9 11 3787-9885, +60 16-985 4745", "[PHONE], [PHONE], [PHONE], [PHONE]"),
    ("+886 963 692 887 12件, +91 92839 88725 31%, +82 10-2887-9793 765.99", "[PHONE] 12件, [PHONE] 31%, [PHONE] 765.99"),
    ("+33 (0)6 12 34 56 78, Tel. +49 152 / 3472252, +49 (0)171/1234567", "[PHONE], Tel. [PHONE], [PHONE]"),
    # and what only looks like them
    ("order 000 12 3456 and 0123456789012 and 2024.01.15", "order 000 12 3456 and 0123456789012 and 2024.01.15"),
    ("Order 02123456789 and 订单号 01087654321 and ticket 0100 23456789", "Order 02123456789 and 订单号 01087654321 and ticket 0100 23456789"),
    ("size 120 40 2000, I paid 123 45 6789", "size 120 40 2000, I paid 123 45 6789"),
    # addresses written in other scripts, and the Chinese words around them
    ("邮箱：李四@163.com，谢谢", "邮箱：[EMAIL]，谢谢"), ("José@correo.es hola", "[EMAIL] hola"),
    ("邮箱：zhangsan@163。com，郵箱 chan@yahoo。com。hk", "邮箱：[EMAIL]，郵箱 [EMAIL]"),  # the dots an input method types
    ("发到 a@b。谢谢，zhang@163.com。谢谢", "发到 a@b。谢谢，[EMAIL]。谢谢"),
    ("我的邮箱是zhang@163.com的", "我的邮箱是[EMAIL]的"), ("发到zhang@例子.中国的信箱", "发到[EMAIL]的信箱"),
    ("メールはtaro@example.jpです", "メールは[EMAIL]です"), ("jane@xn--fiqs8s.xn--fiqs8s ok", "[EMAIL] ok"),
    # and written to pass a filter, its "@" and dots spelt out, or typed full-width
    ("email zhang dot san at gmail dot com, zhangsan [at] qq [dot] com 或 zhangsan＠163．com",
     "email [EMAIL], [EMAIL] 或 [EMAIL]"),
    ("mail zhangsan at 163 dot com or ZhangSan AT Gmail DOT com, li_si(at)sina.com.cn", "mail [EMAIL] or [EMAIL], [EMAIL]"),
    ("我的邮箱zhangsan艾特163点com谢谢，zhangsan［at］qq［dot］com，zhang.san at qq.com", "我的邮箱[EMAIL]谢谢，[EMAIL]，[EMAIL]"),
    # but not a shop's site, or "at" and "dot" in a sentence
    ("I bought it at amazon.com, log in at qq.com, email me at gmail dot com, look at that dot com bubble",
     "I bought it at amazon.com, log in at qq.com, email me at gmail dot com, look at that dot com bubble"),
    ("meet at 5 dot then, order 12345 at 10:30 on 2024-05-01 for $19.99 at shop.com",
     "meet at 5 dot then, order 12345 at 10:30 on 2024-05-01 for $19.99 at shop.com"),
    # IP addresses, IPv4 and IPv6, in full-width digits too; not a version, a time, a MAC address or a date
    ("my IP is 203.0.113.45. The site is down", "my IP is [IP]. The site is down"),
    ("IP地址：１９２．１６８．１．２３，打不开", "IP地址：[IP]，打不开"), ("from 2001:db8::8a2e:370:7334 and ::1", "from [IP] and [IP]"),
    ("[2001:db8::1]:8080 refused", "[[IP]]:8080 refused"), ("seen as ::ffff:198.51.100.7.", "seen as [IP]."),
    # a Chinese mobile digit by digit, as written to pass a platform's filter; not a list of single numbers
    ("加我 1 3 8 1 2 3 4 5 6 7 8，或１－３－９－８－７－６－５－４－３－２－１", "加我 [PHONE]，或[PHONE]"),
    ("sizes 1 3 5 7 9 and 1 2 3 4 5 6 7 8 9 1 0 1", "sizes 1 3 5 7 9 and 1 2 3 4 5 6 7 8 9 1 0 1"),
    ("version 2.0.1.3, v1.2.3.4, 固件版本 1.0.0.1, build 10.0.19045.2965", "version 2.0.1.3, v1.2.3.4, 固件版本 1.0.0.1, build 10.0.19045.2965"),
    ("at 10:30:45, mac 00:1A:2B:3C:4D:5E, std::vector, cafe::babe, 20.11.2023", "at 10:30:45, mac 00:1A:2B:3C:4D:5E, std::vector, cafe::babe, 20.11.2023"),
])
def test_redaction_removes_personal_data_and_keeps_order_numbers(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_history_and_transcript_show_messages_as_typed(tmp_path: Path) -> None:
    """A reload turned "我的订单（１２３）到哪了？" into "我的订单(123)到哪了?", the model's reading of it."""
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("c1", "web", None, "我的订单(123)到哪了?卡4111111111111111", "我的订单（１２３）到哪了？卡4111111111111111",
                                "Sorry?", None, 0.2, [], "fallback", "v1"))
    assert store.history("c1")[0]["text"] == "我的订单（１２３）到哪了？卡[CARD]"  # still redacted
    assert store.transcript("c1")["turns"][0]["text"] == "我的订单（１２３）到哪了？卡[CARD]"
    store.close()
    kept = Store(tmp_path / "raw.db", keep_raw=True)  # the unredacted copy is the shop's record, not for display
    kept.log_exchange(Exchange("c1", "web", None, "card 4111111111111111", None, "Call +1 555 010 0199, or write to "
                               "help@shop.example.", None, 0.2, [], "fallback", "v1"))
    kept.add_agent_answer("c1", "Write to me at anna@shop.example", agent="anna")
    as_shown = ["card [CARD]", "Call +1 555 010 0199, or write to help@shop.example.", "Write to me at anna@shop.example"]
    assert [t["text"] for t in kept.history("c1")] == [t["text"] for t in kept.transcript("c1")["turns"]] == as_shown
    assert "raw_text" not in kept.history("c1")[0] and "raw_text" not in kept.transcript("c1")["turns"][0]
    assert kept.db.execute("SELECT raw_text FROM turns WHERE role = 'user'").fetchone()[0] == "card 4111111111111111"
    kept.close()


@pytest.mark.parametrize(("redacting", "shown"), [
    (True, {"email": "[EMAIL]", "phone": "[PHONE]", "contact": ["[EMAIL]", {"card": "[CARD]"}], "order_id": "12345",
            "count": 2}),
    (False, {"email": "jane@example.com", "phone": "+1 415 555 0100 ext. 23",
             "contact": ["zhangsan [at] qq [dot] com", {"card": "4111 1111 1111 1111"}], "order_id": "12345", "count": 2}),
])
def test_a_transcript_shows_the_slots_as_privacy_keeps_the_messages(tmp_path: Path, redacting: bool,
                                                                     shown: dict[str, Any]) -> None:
    """An action that set the customer's email or phone as a slot had the agents read it in the transcript, where
    the message that gave it is redacted; the store keeps the slots as set, for the actions of the next turns."""
    slots = {"email": "jane@example.com", "phone": "+1 415 555 0100 ext. 23",
             "contact": ["zhangsan [at] qq [dot] com", {"card": "4111 1111 1111 1111"}], "order_id": "12345", "count": 2}
    store = Store(tmp_path / "dialogues.db", redact=redacting)
    store.log_exchange(Exchange("c1", "web", None, "it's jane@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots=slots))
    assert store.transcript("c1")["slots"] == shown
    assert store.conversation("c1")["slots"] == slots
    store.close()


def test_a_transcript_shows_what_the_customer_said_was_wrong_with_a_reply(tmp_path: Path) -> None:
    """The customer's comment on a thumbs-down was stored, but nowhere an agent reads: the transcript gives it with
    the vote, redacted as their messages are, and keeps it through a later vote that has none."""
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("c1", "web", None, "refund?", None, "Refunds take 5 days.", None, 0.9, [], "intent", "v1"))
    reply = next(t for t in store.transcript("c1")["turns"] if t["role"] == "bot")
    assert (reply["feedback"], reply["feedback_comment"]) == (None, None)
    store.add_feedback("c1", reply["id"], -1, "it took 3 weeks, call me on +1 555 010 0199")
    store.add_feedback("c1", reply["id"], -1)
    reply = next(t for t in store.transcript("c1")["turns"] if t["role"] == "bot")
    assert (reply["feedback"], reply["feedback_comment"]) == (-1, "it took 3 weeks, call me on [PHONE]")
    store.close()


def test_a_transcript_names_the_customers_other_conversations(tmp_path: Path) -> None:
    """An agent taking a customer over saw nothing of their earlier conversations unless they searched for their id in
    each tab. The transcript names them, latest first: a platform's user alone, and on the web a customer the shop's
    server vouched for alone, as a page may name anyone."""
    store = Store(tmp_path / "dialogues.db")

    def said(cid: str, channel: str, user: str | None, verified: bool = False) -> None:
        slots = {"verified_user": user} if verified else None
        store.log_exchange(Exchange(cid, channel, user, "hello", None, "Hi!", None, 0.2, [], "fallback", "v1",
                                    slots=slots))

    for cid, channel, user in (("s1", "slack", "U1"), ("s2", "slack", "U1"), ("s3", "slack", "U2"),
                               ("w0", "slack", "u-7"), ("w1", "web", "u-7"), ("w2", "web", "u-7")):
        said(cid, channel, user)
    said("s1", "slack", "U1")  # the latest
    assert [o["conversation_id"] for o in store.transcript("s2")["others"]] == ["s1"]
    assert set(store.transcript("s2")["others"][0]) == {"conversation_id", "status", "created", "updated"}
    assert store.transcript("w2")["others"] == []  # named by a page alone
    said("v1", "web", "u-7", verified=True)
    said("v2", "web", "u-7", verified=True)
    assert [o["conversation_id"] for o in store.transcript("v2")["others"]] == ["v1"]
    store.close()


def test_a_custom_actions_tracker_reads_the_latest_turns_as_stored(tmp_path: Path) -> None:
    """The turns a custom action's tracker lists: the latest ones alone, however long the conversation, oldest
    first, with what the bot made of each message, and redacted as the store keeps them, even with keep_raw."""
    store = Store(tmp_path / "dialogues.db", keep_raw=True)
    for n in range(3):
        user_turn(store, "c1", f"where is order {n}00?")
    store.log_exchange(Exchange("c1", "web", None, "card 4111111111111111", None, "Which size?", "sizes", 0.9,
                                [("sizes", 0.9)], "template", "v1", buttons=[{"title": "M", "payload": "/m"}]))
    store.add_agent_answer("c1", "Here I am.", agent="anna")
    turns = store.recent_turns("c1", 4)
    assert [(t["role"], t["text"], t["intent"], t["source"]) for t in turns] == [
        ("bot", "Sorry?", None, None), ("user", "card [CARD]", "sizes", "template"), ("bot", "Which size?", None, None),
        ("agent", "Here I am.", None, None)]
    assert turns[1]["ranking"] == [["sizes", 0.9]] and turns[2]["buttons"] == [{"title": "M", "payload": "/m"}]
    store.close()


def test_a_reply_repeating_personal_data_is_stored_redacted_too(tmp_path: Path) -> None:
    """An action's reply, or a template filled from the slots, can repeat what the customer wrote."""
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("c1", "web", None, "refund to card 4111111111111111", None,
                                "Refund noted for card 4111111111111111.", "get_refund", 0.9, [], "action", "v1",
                                quotes=True))
    store.log_exchange(Exchange("c1", "web", None, "cancel order 6011000990139424", None,
                                "I can cancel order 6011000990139424.", "cancel_order", 0.9, [], "template", "v1",
                                buttons=[{"title": "Cancel 6011000990139424", "payload": "/cancel_order"}], quotes=True))
    store.log_exchange(Exchange("c1", "web", None, "how do I call you?", None, "Call us on +1 555 010 0199.",
                                "contact", 0.9, [], "template", "v1"))  # the shop's own words, as the customer saw them
    history = store.history("c1")
    assert [t["text"] for t in history] == ["refund to card [CARD]", "Refund noted for card [CARD].",
                                            "cancel order [CARD]", "I can cancel order [CARD].",
                                            "how do I call you?", "Call us on +1 555 010 0199."]
    assert history[3]["buttons"] == [{"title": "Cancel [CARD]", "payload": "/cancel_order"}]
    store.close()
    store = Store(tmp_path / "plain.db", redact=False)
    store.log_exchange(Exchange("c1", "web", None, "card 4111111111111111", None, "card 4111111111111111", "x", 0.9, [],
                                "action", "v1"))
    assert [t["text"] for t in store.history("c1")] == ["card 4111111111111111"] * 2
    store.close()


def test_a_replys_custom_payloads_are_kept_for_the_history_and_the_transcript(tmp_path: Path) -> None:
    """The web chat passes a reply's custom payloads (a carousel) on to its page; they were not kept, so a reloaded
    chat could not hand them on again, and agents saw "[custom payload]" with nothing of what it was. Kept as the
    reply's text is: an action's, which may repeat the customer's card number, redacted."""
    store = Store(tmp_path / "dialogues.db")
    carousel = {"type": "carousel", "items": [{"title": "Mug", "price": 9.5}]}
    store.log_exchange(Exchange("c1", "web", None, "/bestsellers", None, "", "bestsellers", 1.0, [], "template", "v1",
                                custom=[carousel]))
    store.log_exchange(Exchange("c1", "web", None, "refund card 4111111111111111", None, "Noted.", "get_refund", 0.9, [],
                                "action", "v1", quotes=True, custom=[{"card": "4111111111111111", "step": 2}]))
    history = store.history("c1")
    assert [(t["role"], t["text"], t["custom"]) for t in history] == [
        ("user", "/bestsellers", []), ("bot", "", [carousel]), ("user", "refund card [CARD]", []),
        ("bot", "Noted.", [{"card": "[CARD]", "step": 2}])]
    transcript = store.transcript("c1")["turns"]
    assert [(t["text"], t["custom"]) for t in transcript if t["role"] == "bot"] == [
        ("[custom payload]", [carousel]), ("Noted.", [{"card": "[CARD]", "step": 2}])]
    assert [t["custom"] for t in store.recent_turns("c1", 4) if t["role"] == "bot"] == [
        [carousel], [{"card": "[CARD]", "step": 2}]]
    store.close()


def test_an_actions_messages_in_their_order_are_kept_for_the_history(tmp_path: Path) -> None:
    """An action's text, a payload, then text again: the history had only the two texts joined, and a reloaded web
    chat showed them as one message. Its messages are kept in their order, redacted as its text is; a reply whose
    text and payloads keep the order, or an agent's, has none."""
    store = Store(tmp_path / "dialogues.db")
    said = [{"text": "Card 4111111111111111 noted."}, {"custom": {"card": "4111111111111111"}}, {"text": "Anything else?"}]
    store.log_exchange(Exchange("c1", "web", None, "refund card 4111111111111111", None,
                                "Card 4111111111111111 noted.\n\nAnything else?", "get_refund", 0.9, [], "action", "v1",
                                quotes=True, custom=[{"card": "4111111111111111"}], messages=said))
    store.log_exchange(Exchange("c1", "web", None, "thanks", None, "You're welcome.", "thanks", 0.9, [], "template", "v1"))
    store.add_message("c1", "agent", "Hello", "web")
    assert [t["messages"] for t in store.history("c1")] == [
        [], [{"text": "Card [CARD] noted."}, {"custom": {"card": "[CARD]"}}, {"text": "Anything else?"}], [], [], []]
    store.close()


def test_a_message_deleted_before_it_is_answered_leaves_the_conversation_as_it_was(tmp_path: Path) -> None:
    """A message its customer deleted while the bot worked on it is not answered; but what the bot made of it stayed:
    an action's question the customer never got left the bot waiting for its answer, and taking their next message
    for it, and a fallback counted towards a handoff. The conversation is as it was before the message."""
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("c1", "slack", "U1", "hi", None, "Hello!", None, 0.2, [], "fallback", "v1",
                                slots={"language": "en"}, fallbacks=1))
    kept = store.receive("k1", "c1", "slack", "U1", "cancel my order", {})
    store.replace_message("c1", "k1", None, recent=True)  # deleted as the action asked which order
    assert store.log_exchange(Exchange(
        "c1", "slack", "U1", "cancel my order", None, "Which order?", "cancel_order", 0.9, [], "action", "v1",
        slots={"language": "en", "requested_slot": "order_id"}, fallbacks=0, active_loop="action_cancel_order",
        pending_id=kept, handoff="action:action_cancel_order"))[1] is None
    conversation = store.conversation("c1")
    assert (conversation["slots"], conversation["fallbacks"], conversation["active_loop"], conversation["status"]) == (
        {"language": "en"}, 1, None, "open")
    store.close()


def test_redaction_takes_time_in_proportion_to_the_text() -> None:
    """No pattern is tried over and over inside one long run: 100,000 characters with no "@" took the
    email pattern 30 s, under the store's lock, while every other customer waited."""
    for text in ("y" * 100_000, "1-" * 50_000, "１" * 100_000, "李" * 100_000, "a@b." * 25_000, "0044 " * 20_000,
                 "—1" * 50_000, "07911 " * 16_000, "(1) 2" * 20_000, "a:" * 50_000, "ab:" * 30_000 + "X"):
        started = time.perf_counter()
        assert redact(text) == text
        assert time.perf_counter() - started < 20  # about 0.05 s, seconds on a loaded machine; quadratic, a minute
    for text, redacted in (("0044 20 7946 0958 " * 5_000, "[PHONE] " * 5_000), ("my name is " * 9_000, "my name is " * 9_000),
                           ("我叫张伟，" * 20_000, "我叫[NAME]，" * 20_000)):  # a match at every step
        started = time.perf_counter()
        assert redact_names(redact(text)) == redacted
        assert time.perf_counter() - started < 20
    # the address lines too, over a long run of a city's divisions (a minute each read again from every character)
    for text in ("北京市朝阳区望京" * 12_000, "my address is " * 7_000, "地址改成" * 25_000):
        started = time.perf_counter()
        learned_text(text)
        assert time.perf_counter() - started < 20


@pytest.mark.parametrize(("text", "redacted"), [
    ("my name is Hans Müller, how do I change the address?", "my name is [NAME], how do I change the address?"),
    ("My name is José Núñez", "My name is [NAME]"), ("My name is Ólafur Arnalds and", "My name is [NAME] and"),
    ("my name is Siobhán O'Brien", "my name is [NAME]"),
    ("我嘅名係陳大文，我個名叫李小龍係嚟退貨", "我嘅名係[NAME]，我個名叫[NAME]係嚟退貨"),  # in Hong Kong's Cantonese
])
def test_a_name_in_any_alphabet_is_redacted_whole(text: str, redacted: str) -> None:
    """A name was words of ASCII letters: "Hans Müller" was learned as "[NAME]üller", "Ólafur" not at all."""
    assert redact_names(text) == redacted


@pytest.mark.parametrize(("text", "redacted", "names"), [
    ("收货人：张伟，手机：[PHONE]，地址：[ADDRESS]", "收货人：[NAME]，手机：[PHONE]，地址：[ADDRESS]", {"张伟"}),
    ("收件人改成陳大文，聯絡人：李小龍", "收件人改成[NAME]，聯絡人：[NAME]", {"陳大文", "李小龍"}),
    ("收件人姓名：赵敏", "收件人姓名：[NAME]", {"赵敏"}),
    # the name a refund goes to, with the bank account; not a login's
    ("收款人：张三 开户行：工商银行，持卡人 王小明，开户名：李娜，用户名：zhangsan",
     "收款人：[NAME] 开户行：工商银行，持卡人 [NAME]，开户名：[NAME]，用户名：zhangsan", {"张三", "王小明", "李娜"}),
    ("cardholder name: John Smith, account holder is Mary Jones", "cardholder name: [NAME], account holder is [NAME]",
     {"John Smith", "John", "Smith", "Mary Jones", "Mary", "Jones"}),
    ("recipient: John Smith, phone [PHONE]", "recipient: [NAME], phone [PHONE]", {"John Smith", "John", "Smith"}),
    # what follows is no name: the customer themself, or what is wrong with it
    ("收件人是我本人，收件人姓名写错了，收件人信息有误", "收件人是我本人，收件人姓名写错了，收件人信息有误", set()),
    ("the recipient is wrong, contact is broken", "the recipient is wrong, contact is broken", set()),
    # a form's field for the name, filled in a message
    ("名字：李娜，我的名字：张伟", "名字：[NAME]，我的名字：[NAME]", {"李娜", "张伟"}),
    ("Name: John Smith, order 123", "Name: [NAME], order 123", {"John Smith", "John", "Smith"}),
    ("Name: John Smith Phone: [PHONE] Email: [EMAIL]", "Name: [NAME] Phone: [PHONE] Email: [EMAIL]",
     {"John Smith", "John", "Smith"}),
    ("product name: iPhone 15, username: jsmith, 名字：写错了", "product name: iPhone 15, username: jsmith, 名字：写错了", set()),
])
def test_the_recipient_a_customer_names_is_redacted(text: str, redacted: str, names: set[str]) -> None:
    """Customers paste a delivery's details as their shop's app lists them, "收货人：张伟，手机：…，地址：…", or fill a
    form's fields, "名字：李娜": the phone number and the address were redacted, and the name beside them learned and
    exported (and an agent's answer repeating it indexed, :func:`given_names`)."""
    assert redact_names(text) == redacted
    assert given_names(text) == names


@pytest.mark.parametrize(("text", "redacted", "names"), [
    ("我姓张，叫张伟", "我姓[NAME]，叫[NAME]", {"张伟"}),
    ("免贵姓王，名叫王芳想问一下", "免贵姓[NAME]，名叫[NAME]想问一下", {"王芳"}),
    ("本人姓欧阳", "本人姓[NAME]", {"欧阳"}),
    ("姓名 李娜 电话 [PHONE]", "姓名 [NAME] 电话 [PHONE]", {"李娜"}),
    ("收货人 张伟 手机 [PHONE]", "收货人 [NAME] 手机 [PHONE]", {"张伟"}),
    ("收件人 王小明，收件人 张三不在家，我叫王芳没收到", "收件人 [NAME]，收件人 [NAME]不在家，我叫[NAME]没收到", {"王小明", "张三", "王芳"}),
    ("我叫周一鸣，收件人：金华", "我叫[NAME]，收件人：[NAME]", {"周一鸣", "金华"}),  # given as a name, a name
    # in a line mixing English and Chinese; not another thing's name
    ("我的name是John Smith，my 名字 is 王小明，product name是iPhone", "我的name是[NAME]，my 名字 is [NAME]，product name是iPhone",
     {"John Smith", "John", "Smith", "王小明"}),
    # words that start with a surname's character and name no one: when the recipient is in
    ("收件人 周末不在，联系人 白天不在家，收件人 方便的话放门口", "收件人 周末不在，联系人 白天不在家，收件人 方便的话放门口", set()),
    # fields listed, not filled in, and 姓 in words that give no surname
    ("请填写姓名 电话 地址，名字 写错了", "请填写姓名 电话 地址，名字 写错了", set()),
    ("我姓名是李娜，我姓氏是张", "我姓名是[NAME]，我姓氏是张", {"李娜"}),
])
def test_a_surname_and_a_field_without_its_colon_give_a_name(text: str, redacted: str, names: set[str]) -> None:
    """我姓张，叫张伟 ("my surname is Zhang, I'm called Zhang Wei") and 姓名 李娜 (a form's field copied with a space for
    its colon) were learned and exported with the name: customers give their name so as often as after 我叫."""
    assert redact_names(text) == redacted
    assert given_names(text) == names


@pytest.mark.parametrize("text", ["my name is spelled wrong on my account", "my name is incorrect on the invoice",
                                  "my name is missing from the order", "名字是错的", "名字是写错了"])
def test_what_follows_my_name_is_and_is_no_name_is_learned_as_written(text: str) -> None:
    """An "update my name" intent's examples lost the words that make them one: "my name is [NAME] on my account"."""
    assert redact_names(text) == text


def test_the_checksums_behind_redaction() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
    assert card_shaped("4111111111111111") and not card_shaped("41111111111111111")  # Visa has no 17-digit numbers


def test_an_export_with_nothing_to_write_says_where_what_it_writes_comes_from(root: Path) -> None:
    """A new bot's export printed "0 lines (jsonl)" alone: nothing said that reviews and agents' replies make it."""
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "hello there")  # a conversation, neither labelled nor answered by an agent
    store.close()
    empty = CliRunner().invoke(cli, ["export", str(root)])
    assert empty.exit_code == 0 and empty.stdout == "", empty.output
    assert empty.stderr.startswith("0 lines (jsonl)\nnothing to learn from: it comes of the review queue's labels "
                                   f"(`bot review {shlex.quote(str(root))}`")


def test_export_writes_what_retrain_learns_redacted_and_since_a_date(tmp_path: Path, root: Path) -> None:
    store = Store(root / "dialogues.db", redact=False)  # even a store that keeps personal data exports none
    turn = user_turn(store, "c1", "open on sunday? my card is 4111 1111 1111 1111")
    store.add_labels([turn], "opening_hours")
    store.add_agent_answer("c1", "Done, the receipt went to jane@example.com")  # another customer would read [EMAIL]
    user_turn(store, "c1", "and when do you open?")
    store.add_agent_answer("c1", "We open at 9 on Sundays.")
    refund = user_turn(store, "c3", "refund please")
    store.add_labels([refund], "get_refund")  # an intent the bot does not have: retrain cannot learn it
    old = user_turn(store, "c2", "hello there")
    store.add_labels([old], "greet")
    store.db.execute("UPDATE review_labels SET created = 0 WHERE turn_id = ?", [old])  # labelled in 1970
    assert [r["text"] for r in learned_data(store).examples][0] == "open on sunday? my card is [CARD]"
    store.close()

    out = tmp_path / "export.jsonl"
    result = CliRunner().invoke(cli, ["export", str(root), "--since", "2020-01-01", "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["type"], r.get("text"), r["intent"]) for r in rows] == [
        ("example", "open on sunday? my card is [CARD]", "opening_hours"),
        ("answer", None, None),
    ]
    assert rows[1]["question"] == "and when do you open?" and rows[1]["answer"] == "We open at 9 on Sundays."
    learned, _ = read_store(load_project(root))
    assert [a.text for a in agent_answers(learned)] == [rows[1]["answer"]]  # exactly what retrain indexes

    everything = CliRunner().invoke(cli, ["export", str(root)])
    assert everything.exit_code == 0 and '"intent": "greet"' in everything.stdout and "get_refund" not in everything.stdout
    ever = CliRunner().invoke(cli, ["export", str(root), "--since", "0001-01-01"])  # before the clock's range
    assert ever.exit_code == 0 and ever.stdout == everything.stdout
    nothing = CliRunner().invoke(cli, ["export", str(root), "--since", "2999-01-01", "-o", str(out)])
    assert nothing.exit_code == 0 and out.read_text() == ""  # the earlier export does not pass for this one
    assert nothing.stderr == "0 lines (jsonl)\n--since 2999-01-01 00:00:00 is in the future: nothing is that new\n"
    unwritable = CliRunner().invoke(cli, ["export", str(root), "-o", str(tmp_path / "no" / "such" / "folder.jsonl")])
    assert unwritable.exit_code == 1 and "cannot write" in unwritable.output

    bad = CliRunner().invoke(cli, ["export", str(root), "--since", "last tuesday"])
    assert bad.exit_code == 2 and "Invalid value for '--since'" in bad.output
    missing = CliRunner().invoke(cli, ["export", str(tmp_path / "nobot")])
    assert missing.exit_code == 1 and "not a bot folder" in missing.output


def test_export_refuses_to_write_over_the_bots_own_files(root: Path) -> None:
    """``bot export DIR -o dialogues.db`` emptied the store, and ``-o nlu.yml`` the training data, exit code 0."""
    store = Store(root / "dialogues.db")
    store.add_labels([user_turn(store, "c1", "when do you open?")], "opening_hours")
    store.close()
    (root / "models").mkdir(exist_ok=True)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    for target in ("dialogues.db", "dialogues.db-wal", "nlu.yml", "bot.yml", "models/CURRENT", "actions/x.py"):
        result = CliRunner().invoke(cli, ["export", str(root), "-o", str(root / target)])
        assert result.exit_code == 1 and "one of the bot's own files" in result.output, target
    elsewhere = root / ".." / "bot" / "." / "nlu.yml"  # the same file by another path
    assert CliRunner().invoke(cli, ["export", str(root), "-o", str(elsewhere)]).exit_code == 1
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before
    written = CliRunner().invoke(cli, ["export", str(root), "-o", str(root / "export.jsonl")])
    assert written.exit_code == 0 and "opening_hours" in (root / "export.jsonl").read_text()


def test_a_failed_export_leaves_the_previous_one_as_it_was(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bot export -o FILE`` wrote in place: a full disk or a killed cron job destroyed yesterday's export and
    left half a line. The new export takes the file's place only once written whole."""
    store = Store(root / "dialogues.db")
    store.add_labels([user_turn(store, "c1", "when do you open?")], "opening_hours")
    store.close()
    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "export.jsonl"
    assert CliRunner().invoke(cli, ["export", str(root), "-o", str(out)]).exit_code == 0
    previous = out.read_bytes()
    out.chmod(0o640)
    (exports / "latest.jsonl").symlink_to(out)

    def disk_full(data: Any, stream: Any) -> int:
        stream.write('{"type": "example", "text": "when do')
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("dialogues.export.write_jsonl", disk_full)
        failed = CliRunner().invoke(cli, ["export", str(root), "-o", str(out)])
    assert failed.exit_code == 1 and "cannot write" in failed.output and "No space left" in failed.output
    assert out.read_bytes() == previous
    assert sorted(p.name for p in exports.iterdir()) == ["export.jsonl", "latest.jsonl"]  # no temporary file left
    # SIGTERM (a cron job's timeout) midway left the hidden temporary file beside it, for good
    held = tmp_path / "held"
    stopped = command_apart(["export", str(root), "-o", str(out)], f"""
import dialogues.export
def held(data, stream):
    stream.write('{{"type": "example", "text": "when do')
    Path({str(held)!r}).touch()
    time.sleep(60)
dialogues.export.write_jsonl = held
""")
    terminated_once_held(stopped, held)
    assert out.read_bytes() == previous
    assert sorted(p.name for p in exports.iterdir()) == ["export.jsonl", "latest.jsonl"]

    store = Store(root / "dialogues.db")
    store.add_labels([user_turn(store, "c2", "hello there")], "greet")
    store.close()
    again = CliRunner().invoke(cli, ["export", str(root), "-o", str(exports / "latest.jsonl")])
    assert again.exit_code == 0 and (exports / "latest.jsonl").is_symlink()  # the file it names is replaced
    assert out.read_text().count("\n") == 2 and out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in exports.iterdir()) == ["export.jsonl", "latest.jsonl"]


def test_a_new_export_is_readable_by_its_owner_alone(tmp_path: Path, root: Path, common_umask: None) -> None:
    """``bot export -o`` made its file with the umask's mode (0644): what customers wrote, every account's to read.
    An export that replaces another keeps that one's mode (the test above)."""
    store = Store(root / "dialogues.db")
    store.add_labels([user_turn(store, "c1", "my order 55667 never came")], "track_order")
    store.close()
    assert CliRunner().invoke(cli, ["export", str(root), "-o", str(tmp_path / "export.jsonl")]).exit_code == 0
    assert (tmp_path / "export.jsonl").stat().st_mode & 0o777 == 0o600


def test_recent_messages_are_the_latest_distinct_customer_texts(tmp_path: Path) -> None:
    store = Store(tmp_path / "dialogues.db")
    for conversation, text in [("c1", "where is my order"), ("c1", "/track_order"), ("c2", "refund please"),
                               ("c3", "where is my order"), ("c3", "hello")]:
        user_turn(store, conversation, text)
    store.add_message("c3", "agent", "How can I help?")
    assert store.recent_messages(10) == ["hello", "where is my order", "refund please"]
    assert store.recent_messages(2) == ["hello", "where is my order"]
    store.close()


def test_a_transcript_names_the_conversation_a_page_went_on_from_where_the_page_proves_it(tmp_path: Path) -> None:
    """A page that went on in a conversation of its own, the one it was in closed to it as its customer signed in in
    another tab, still showed what it was answered there: the agents of the new conversation saw nothing of it, nor
    where it was. Kept where the page proves it was there (a message id of its own there), it is named both ways."""
    store = Store(tmp_path / "dialogues.db")
    for cid, user, message_id in (("signed-in", "u-7", "m-1"), ("went-on", None, "m-2"), ("other", None, "m-3")):
        slots = {"verified_user": user} if user else None
        store.log_exchange(Exchange(cid, "web", user, "hello", None, "Hi!", None, 0.2, [], "fallback", "v1",
                                    slots=slots, message_id=message_id))
    assert not store.went_on("went-on", "signed-in", "m-3")  # another conversation's message proves nothing
    assert not store.went_on("went-on", "went-on", "m-2")
    assert store.transcript("went-on")["others"] == []
    assert store.went_on("went-on", "signed-in", "m-1")
    assert not store.went_on("went-on", "other", "m-3")  # once
    assert [o["conversation_id"] for o in store.transcript("went-on")["others"]] == ["signed-in"]
    assert [o["conversation_id"] for o in store.transcript("signed-in")["others"]] == ["went-on"]
    assert store.transcript("other")["others"] == []
    store.close()


def test_a_purged_conversation_is_named_no_more_by_the_one_a_page_went_on_in(tmp_path: Path) -> None:
    """A conversation purged (a retention round takes the older of the two) stayed named, by its id, the visitor's key
    to it, in the conversation the page went on in: the store kept it after its erasure, and a conversation begun
    anew with that id was shown to the agents among the other customer's, and theirs among its."""
    store = Store(tmp_path / "dialogues.db")
    for cid, message_id in (("signed-in", "m-1"), ("went-on", "m-2")):
        store.log_exchange(Exchange(cid, "web", None, "hello", None, "Hi!", None, 0.2, [], "fallback", "v1",
                                    message_id=message_id))
    assert store.went_on("went-on", "signed-in", "m-1")
    store.purge("signed-in")
    user_turn(store, "signed-in", "hello")  # begun anew with the id, by whoever has it
    assert store.transcript("went-on")["others"] == [] and store.transcript("signed-in")["others"] == []
    assert store.db.execute("SELECT continues FROM conversations WHERE id = 'went-on'").fetchone() == (None,)
    store.close()


def test_the_name_a_customer_gives_is_not_learned_nor_repeated_to_others(tmp_path: Path) -> None:
    """A model learnt "my name is John Smith", and an agent's "Thanks John, ..." went into the index. The store
    keeps the name, for the agents."""
    store = Store(tmp_path / "dialogues.db")
    english = user_turn(store, "c1", "my name is John Smith and my order is 55667")
    chinese = user_turn(store, "c2", "我叫张伟想问一下订单，我的名字是王芳，我叫了快递，收件人姓名写错了")
    store.add_labels([english, chinese], "track_order")
    store.add_agent_answer("c1", "Thanks John, it left the warehouse today.")
    user_turn(store, "c3", "hello, my name's maria lopez, do you ship abroad?")
    store.add_agent_answer("c3", "Yes, we ship to 40 countries.")
    assert store.history("c1")[0]["text"] == "my name is John Smith and my order is 55667"
    learned = learned_data(store)
    assert [r["text"] for r in learned.examples] == ["my name is [NAME] and my order is 55667",
                                                     "我叫[NAME]想问一下订单，我的名字是[NAME]，我叫了快递，收件人姓名写错了"]
    assert [a.question for a in agent_answers(learned)] == ["hello, my name's [NAME], do you ship abroad?"]
    assert learned_data(store, redacted=False).examples[0]["text"] == "my name is John Smith and my order is 55667"
    store.close()


def test_what_leaves_the_store_for_training_loses_the_customers_address(tmp_path: Path) -> None:
    """A labelled message or an answered question holding the customer's street and house number was trained on, and
    written into the model's n-grams and the index's questions in plain text; the store keeps it for the agents."""
    store = Store(tmp_path / "dialogues.db")
    message = "please send it to 221B Baker Street instead, 送到建国路８８号5号楼1201室"
    store.add_labels([user_turn(store, "c1", message)], "track_order")
    user_turn(store, "c2", "can you deliver to 12 main street?")
    store.add_agent_answer("c2", "Yes, we deliver everywhere in town.")
    learned = learned_data(store)
    assert [r["text"] for r in learned.examples] == ["please send it to [ADDRESS] instead, 送到[ADDRESS]"]
    assert [r["question"] for r in learned.answers] == ["can you deliver to [ADDRESS]?"]
    assert store.history("c1")[0]["text"] == message
    assert learned_data(store, redacted=False).examples[0]["text"] == message
    store.close()


@pytest.mark.parametrize(("text", "learned"), [
    # the whole line: a city and district left around "[ADDRESS]" still said where the customer lives
    ("请寄到北京市朝阳区建国路88号SOHO现代城5号楼2单元1101室，谢谢", "请寄到[ADDRESS]，谢谢"),
    ("广东省深圳市南山区科技园南区深南大道10000号腾讯大厦", "[ADDRESS]"),
    ("新疆维吾尔自治区乌鲁木齐市天山区解放北路12号的订单还没到", "[ADDRESS]的订单还没到"),
    ("发到深圳市南山区粤海街道科技园路1号", "发到[ADDRESS]"),  # a subdistrict (街道) among the divisions
    # a lane off a numbered road, a road's section: the road and its number go with them
    ("收货地址：上海市浦东新区张江路100弄5号", "收货地址：[ADDRESS]"),
    ("寄到台北市信義區信義路五段7號", "寄到[ADDRESS]"),
    ("我家在成都市武侯区人民南路四段12号", "我家在[ADDRESS]"),
    ("台北市中正區重慶南路一段122巷5號", "[ADDRESS]"),
    ("送到朝阳区望京花园27号院3号楼, 我住在香港九龍彌敦道100號15樓B室", "送到[ADDRESS], 我住在[ADDRESS]"),
    ("send it to 12 Main Street, Apt 4B, Springfield, IL 62704 please", "send it to [ADDRESS] please"),
    ("221B Baker Street, London NW1 6XE, thanks", "[ADDRESS], thanks"),
    # a city or a district alone is no address, nor are numbers that are none
    ("do you ship to Beijing? 北京市朝阳区有货吗？发货到上海市吗", "do you ship to Beijing? 北京市朝阳区有货吗？发货到上海市吗"),
    ("order 12345 costs $19.99 on 2024-05-01 at 10:30, v1.2.3 or 3 items to London",
     "order 12345 costs $19.99 on 2024-05-01 at 10:30, v1.2.3 or 3 items to London"),
])
def test_training_data_loses_the_whole_address_line(text: str, learned: str) -> None:
    assert learned_text(text) == learned


@pytest.mark.parametrize(("text", "learned"), [
    # no street number nor room: the label says what it is
    ("收件人：张伟，地址：北京市朝阳区望京SOHO T1 1201 电话：13812345678", "收件人：[NAME]，地址：[ADDRESS] 电话：[PHONE]"),
    ("我的地址是深圳市南山区腾讯大厦，谢谢", "我的地址是[ADDRESS]，谢谢"),
    ("收件地址：望京SOHO T1 1201", "收件地址：[ADDRESS]"),
    ("Address: Flat 3, Tower B, Kowloon, thanks", "Address: [ADDRESS], thanks"),
    # after a verb that changes it, a building, its tower and room
    ("地址改成望京SOHO T1 1201", "地址改成[ADDRESS]"), ("收货地址换成了朝阳区望京SOHO T1 1201，谢谢", "收货地址换成了[ADDRESS]，谢谢"),
    # in a sentence, not a label, in English or a mixed line
    ("My new address is Rose Cottage, Little Snoring, thanks", "My new address is [ADDRESS], thanks"),
    ("my address is Flat 3, Tower B, Kowloon", "my address is [ADDRESS]"),
    ("please change my address to 5 Rue de Rivoli, Paris", "please change my address to [ADDRESS]"),
    ("I live at Rose Cottage, Little Snoring, and I live at home", "I live at [ADDRESS], and I live at home"),
    ("我的address是 Rose Cottage, Little Snoring", "我的address是 [ADDRESS]"),  # a mixed line
    ("my address is 北京市朝阳区望京SOHO T1 1201", "my address is [ADDRESS]"),
    # a form's fields: the city and district, and an English form's lines
    ("所在地区：北京市朝阳区 详细地址：望京SOHO T1 1201", "所在地区：[ADDRESS] 详细地址：[ADDRESS]"),
    ("Address line 1: Rose Cottage, Little Snoring", "Address line 1: [ADDRESS]"),
    ("address: Rose Cottage, Little Snoring and my phone is 07911 123456", "address: [ADDRESS] and my phone is [PHONE]"),
    # a building's name after the street, with no word such as 大厦 in it
    ("寄到广州市天河区天河路385号太古汇", "寄到[ADDRESS]"),
    ("是天河路385号吗？天河路385号的快递到了吗", "是[ADDRESS]吗？[ADDRESS]的快递到了吗"),
    # asked about, said to be wrong, or another thing's address: none
    ("收货地址是错的，地址是什么？地址为空", "收货地址是错的，地址是什么？地址为空"),
    ("地址改成功了吗？地址改成了吗", "地址改成功了吗？地址改成了吗"),
    ("地址改为公司地址，地址改成原来的，地址同上", "地址改为公司地址，地址改成原来的，地址同上"),  # named by reference
    ("what is the address of your store? the address is wrong, My address is OK, the address is I think wrong",
     "what is the address of your store? the address is wrong, My address is OK, the address is I think wrong"),
    ("邮箱地址：zhang@163.com, IP地址是 203.0.113.45, email address: [EMAIL], address: ?",
     "邮箱地址：[EMAIL], IP地址是 [IP], email address: [EMAIL], address: ?"),
    ("email address是 [EMAIL], IP address是 [IP], the address是错的", "email address是 [EMAIL], IP address是 [IP], the address是错的"),
])
def test_a_value_labelled_an_address_is_one_whatever_its_shape(text: str, learned: str) -> None:
    """地址：北京市朝阳区望京SOHO T1 1201 and 地址是深圳市南山区腾讯大厦, with no street number nor room, were trained on
    whole, and 天河路385号太古汇 kept the building's name after "[ADDRESS]": a value after 地址：, 地址是 or "address:" is
    an address, and a building's name ending the line is the line's."""
    assert learned_text(text) == learned


@pytest.mark.parametrize(("text", "learned"), [
    # as a shop's app copies a delivery's details: a name, a phone number, divisions and a building with no street
    ("王小明，13812345678，北京市 朝阳区 望京街道 望京SOHO T1 1201，000000", "[NAME]，[PHONE]，[ADDRESS]，000000"),
    ("李娜 13812345678 上海市浦东新区万科城3-2-1201", "[NAME] [PHONE] [ADDRESS]"),
    # a place and then a number that is no room's, words before a phone number that name no one
    ("上海市浦东新区满200包邮吗？我在北京市朝阳区买了3件", "上海市浦东新区满200包邮吗？我在北京市朝阳区买了3件"),
    ("江苏省南京市 2000 元以上包邮吗，广东省深圳市南山区 iPhone 256 有货吗", "江苏省南京市 2000 元以上包邮吗，广东省深圳市南山区 iPhone 256 有货吗"),
    ("北京市朝阳区 2023-12-01 下的单，上海市浦东新区订单12345678", "北京市朝阳区 2023-12-01 下的单，上海市浦东新区订单12345678"),
    ("谢谢 13812345678，周一 13812345678，江苏 13812345678，我是江苏人", "谢谢 [PHONE]，周一 [PHONE]，江苏 [PHONE]，我是江苏人"),
])
def test_a_delivery_pasted_as_the_shops_app_copies_it_is_learned_without_its_person(text: str, learned: str) -> None:
    """王小明，13812345678，北京市 朝阳区 望京街道 望京SOHO T1 1201 (a name, a phone number and an address with no street
    nor label, as Taobao's "copy" gives them) was learned with the name and the whole address."""
    assert learned_text(text) == learned


@pytest.mark.parametrize(("text", "learned"), [
    ("我的收货地址改成江苏省南京市鼓楼区中山路1号", "我的收货地址改成[ADDRESS]"),
    ("地址换成上海市浦东新区张江路100号", "地址换成[ADDRESS]"),
    ("寄到北京市朝阳区建国路88号，或上海市浦东新区张江路100号", "寄到[ADDRESS]，或[ADDRESS]"),
    ("寄到建国路88号或者成都市武侯区人民南路四段12号", "寄到[ADDRESS]或者[ADDRESS]"),
])
def test_the_words_around_an_address_are_no_part_of_it(text: str, learned: str) -> None:
    """我的收货地址改成江苏省… was learned as 我的收货地址[ADDRESS], the verb 改成 ("change to") taken for the province's
    first characters, and two addresses joined by "或" ("or") as one: the model lost what the customer asked."""
    assert learned_text(text) == learned


@pytest.mark.parametrize(("privacy", "card"), [
    ({}, "[CARD]"),
    ({"keep_raw": True}, "[CARD]"),  # the raw text is kept in the store, never exported
    ({"redact": False}, "4111 1111 1111 1111"),  # switched off: exported as stored
])
def test_export_and_retrain_follow_privacy_redact(root: Path, privacy: dict[str, bool], card: str) -> None:
    config = yaml.safe_load((root / "bot.yml").read_text())
    (root / "bot.yml").write_text(yaml.safe_dump({**config, "privacy": privacy}))
    settings = load_project(root).config.privacy
    store = Store(root / "dialogues.db", redact=settings.redact, keep_raw=settings.keep_raw)  # as bot serve opens it
    turn = user_turn(store, "c1", "refund to card 4111 1111 1111 1111 please")
    store.add_labels([turn], "opening_hours")
    store.add_agent_answer("c1", "Done, the receipt went to jane@example.com")
    user_turn(store, "c1", "and when do you open?")
    store.add_agent_answer("c1", "We open at 9 on Sundays.")
    raw = store.db.execute("SELECT raw_text FROM turns WHERE id = ?", [turn]).fetchone()[0]
    assert (raw is not None) == bool(privacy.get("keep_raw"))
    store.close()

    result = CliRunner().invoke(cli, ["export", str(root)])
    assert result.exit_code == 0, result.output
    example, *answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert example["text"] == f"refund to card {card} please"
    # Redacted, the answer would tell other customers "write to [EMAIL]", and with redaction off it told them
    # jane@example.com, the other customer's address: neither indexed nor exported, whatever the setting.
    assert [(a["question"], a["answer"]) for a in answers] == [("and when do you open?", "We open at 9 on Sundays.")]
    learned, traffic = read_store(load_project(root))  # bot retrain learns exactly what was exported
    assert [r["text"] for r in learned.examples] == [example["text"]]
    assert traffic == ["and when do you open?", example["text"]]  # and the distillation's messages are redacted alike
    assert [(a.question, a.text) for a in agent_answers(learned)] == [(a["question"], a["answer"]) for a in answers]
    (root / "bot.yml").write_text(yaml.safe_dump({**config, "privacy": privacy, "learning": {"distill": 0}}))
    assert read_store(load_project(root))[1] == []  # no distillation, no messages read for it


def test_a_resume_logged_as_a_handoff_before_migration_7_becomes_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.db"
    store = Store(path)
    for text, source in (("/handoff", "handoff"), ("/resume", "handoff"), ("I want a person", "handoff")):
        store.log_exchange(Exchange("c1", "web", None, text, None, "...", None, 1.0, [], source, "v0001"))
    migrated = left_by(store, 6)
    rows = migrated.db.execute("SELECT t.text, p.source FROM predictions p JOIN turns t ON t.id = p.turn_id "
                               "ORDER BY t.id").fetchall()
    migrated.close()
    assert rows == [("/handoff", "handoff"), ("/resume", "resume"), ("I want a person", "handoff")]


def test_a_store_at_schema_8_without_the_undelivered_column_gets_it(tmp_path: Path) -> None:
    """A withdrawn migration 8 left stores at 8 without ``turns.undelivered``: the inbox, the transcripts and
    `bot stats` failed on them for good ("no such column")."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    store.log_exchange(Exchange("c1", "web", None, "where is my parcel", None, "On its way.", None, 0.9, [], "template", "v1"))
    migrated = left_by(store, 8, "ALTER TABLE turns DROP COLUMN undelivered")
    assert "undelivered" in migrated.db["turns"].columns_dict
    assert [t["text"] for t in migrated.transcript("c1")["turns"]] == ["where is my parcel", "On its way."]
    migrated.close()


def _affinity(declared: str) -> str:
    """The type affinity SQLite gives a column declared ``declared`` (https://sqlite.org/datatype3.html, 3.1)."""
    name = declared.upper()
    for parts, affinity in ((("INT",), "INTEGER"), (("CHAR", "CLOB", "TEXT"), "TEXT"), (("BLOB",), "BLOB"),
                            (("REAL", "FLOA", "DOUB"), "REAL")):
        if any(part in name for part in parts):
            return affinity
    return "BLOB" if not name else "NUMERIC"


def test_a_migration_that_finds_its_column_there_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    """A store may hold a column before the migration that adds it runs (one a withdrawn migration added, see
    ``_v10``): each migration that adds a column adds it once, with the type affinity the store reads it with (by
    SQLite's rules: sqlite-utils names a float column FLOAT or REAL by its version)."""
    store = Store(tmp_path / "dialogues.db")
    schema = store.db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    for version in (8, 11, 12, 13, 14, 18, 20, 21, 22, 23, 28, 30, 31, 33, 36, 37, 38, 39):
        MIGRATIONS[version - 1](store.db)
    assert store.db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall() == schema
    added = {"turns": {"undelivered": "INTEGER", "request_key": "TEXT", "notice": "TEXT", "custom": "TEXT",
                       "messages": "TEXT", "message_id": "TEXT", "server": "TEXT"},
             "pending": {"answered": "REAL", "owner": "TEXT", "reply_turn": "INTEGER", "shown": "TEXT"},
             "handoffs": {"agent": "TEXT", "taken": "REAL", "server": "TEXT", "previous": "TEXT"},
             "predictions": {"reverted": "INTEGER", "restarted": "INTEGER"}, "notes": {"edited": "REAL"},
             "conversations": {"active_form": "TEXT"}, "answering": {"server": "TEXT"}, "takeovers": {"server": "TEXT"}}
    for table, columns in added.items():
        declared = {row[1]: _affinity(row[2]) for row in store.db.execute(f"PRAGMA table_info({table})").fetchall()}
        assert {column: declared.get(column) for column in columns} == columns, table
    store.close()


def test_an_agent_reply_kept_under_its_key_is_not_stored_again_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.db"
    store = Store(path)
    store.add_agent_answer("c1", "Sent before the key was kept.")
    store = left_by(store, 13, "DROP INDEX idx_turns_request_key", "ALTER TABLE turns DROP COLUMN request_key")
    first = store.add_agent_answer("c1", "It left today.", key="k1")
    store.undelivered(second := store.add_agent_answer("c1", "It left today.", key="k2"))
    with pytest.raises(SentBefore) as sent:
        store.add_agent_answer("c1", "It left today.", key="k1")
    assert (sent.value.turn_id, sent.value.undelivered) == (first, False)
    with pytest.raises(SentBefore) as sent:
        store.add_agent_answer("c1", "It left today.", key="k2")
    assert (sent.value.turn_id, sent.value.undelivered) == (second, True)
    assert store.add_agent_answer("c2", "It left today.", key="k1") not in (first, second)  # another conversation's
    assert [t["text"] for t in store.transcript("c1")["turns"]] == ["Sent before the key was kept.", "It left today.",
                                                                   "It left today."]
    store.close()


def test_a_busy_notice_stored_before_migration_16_still_counts_as_told(tmp_path: Path) -> None:
    """Notices are marked from migration 16 on; the busy notice stored before, the one bot turn with the button
    back to the bot, is marked busy, so that its customer is not told a second time in the same wait."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    for cid in ("told", "not-told"):
        user_turn(store, cid, "where is my order?")
        store.set_status(cid, "handed_off", "requested")
    store.add_message("told", "bot", "Our agents are busy.", "web", None, [{"title": "Back", "payload": "/resume"}])
    store.add_message("not-told", "bot", "Hello.", "web", None, [{"title": "Track", "payload": "/track"}])
    store = left_by(store, 15, "ALTER TABLE turns DROP COLUMN notice")
    assert [c["conversation_id"] for c in store.overdue(time.time() + 1, 300)] == ["not-told"]
    store.close()


def test_the_agent_who_took_a_conversation_over_is_kept_from_migration_18_on(tmp_path: Path) -> None:
    """A takeover recorded nobody: a second agent saw a customer waiting and answered them too. A store of the
    deskbot before keeps its handoffs, by no agent, and records the agent from then on."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    user_turn(store, "before", "where is my order?")
    store.set_status("before", "handed_off", "agent")
    store = left_by(store, 17, "DROP INDEX idx_handoffs_handed_back", "DROP INDEX idx_handoffs_handed_back_created",
                    "ALTER TABLE handoffs DROP COLUMN agent")
    user_turn(store, "after", "where is my order?")
    assert store.set_status("after", "handed_off", "agent", agent="Ana") is True
    with pytest.raises(HeldByColleague):  # Ana has it already
        store.set_status("after", "handed_off", "agent", agent="Bob")
    assert {c["conversation_id"]: c["agent"] for c in store.inbox("handed_off", 10)[0]} == {"before": None, "after": "Ana"}
    # Bob stands in for Ana (force): who replied last has the customer now
    store.add_agent_answer("after", "It left today.", agent="Bob", force=True)
    assert [c["agent"] for c in store.inbox("handed_off", 10)[0] if c["conversation_id"] == "after"] == ["Bob"]
    store.set_status("after", "open", "agent", agent="Bob")
    assert [(h["event"], h["agent"]) for h in store.transcript("after")["handoffs"]] == [
        ("handed_off", "Ana"), ("handed_off", "Bob"), ("open", "Bob")]  # Bob's reply took the customer over from Ana
    store.close()


@pytest.mark.parametrize("force", [False, True])
def test_a_takeover_reads_who_has_the_customer_once(tmp_path: Path, force: bool) -> None:
    """A takeover read the inbox's holder twice in its transaction, once to refuse a colleague's customer and once
    to claim it: the same answer, from one of the store's heaviest queries."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "asked", "where is my order?")
    store.set_status("asked", "handed_off", "requested")
    holder, reads = store.holder, []

    def counted(conversation_id: str) -> str | None:
        reads.append(conversation_id)
        return holder(conversation_id)

    store.holder = counted  # type: ignore[method-assign]
    assert store.set_status("asked", "handed_off", "agent", agent="Ana", force=force) is False  # handed off already
    assert reads == ["asked"] and holder("asked") == "Ana"
    store.close()


def test_what_each_agent_has_read_is_kept_from_migration_19_on_and_purged_with_its_conversation(tmp_path: Path) -> None:
    """An agent who opened a conversation without replying saw the customer's messages counted as new all the same.
    A store of the deskbot before counts them as before until an agent reads them; a purge leaves no trace of it."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    user_turn(store, "asked", "where is my order?")
    store.set_status("asked", "handed_off", "requested")
    store = left_by(store, 18, "DROP TABLE seen")
    read = user_turn(store, "asked", "it is order 5521")
    user_turn(store, "asked", "hello??")
    assert [c["unread"] for c in store.inbox("handed_off", 10, "Ana")[0]] == [2]
    store.mark_seen("asked", " ANA ", read)
    assert [c["unread"] for c in store.inbox("handed_off", 10, "ana")[0]] == [1]
    assert store.purge("asked").deleted["asked"]["seen"] == 1
    assert store.db.execute("SELECT count(*) FROM seen").fetchone() == (0,)
    store.close()


def test_a_replys_custom_payloads_are_kept_from_migration_20_on(tmp_path: Path) -> None:
    """A reply of payloads alone kept before reads "[custom payload]" with none, as it did; one kept after has them."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    store.log_exchange(Exchange("c1", "web", None, "/bestsellers", None, "", "bestsellers", 1.0, [], "template", "v1",
                                custom=[{"carousel": 1}]))
    store = left_by(store, 19, "ALTER TABLE turns DROP COLUMN custom")
    store.log_exchange(Exchange("c1", "web", None, "/bestsellers", None, "", "bestsellers", 1.0, [], "template", "v1",
                                custom=[{"carousel": 2}]))
    assert [(t["text"], t["custom"]) for t in store.transcript("c1")["turns"] if t["role"] == "bot"] == [
        ("[custom payload]", []), ("[custom payload]", [{"carousel": 2}])]
    store.close()


def test_a_forced_takeover_makes_the_customer_the_new_agents_from_migration_22_on(tmp_path: Path) -> None:
    """A store of the deskbot before keeps its handoffs; from then on a lead's forced takeover of a colleague's
    customer makes them the lead's, though the colleague replied after taking them over."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "held", "where is my order?")
    store.set_status("held", "handed_off", "agent", agent="Ana")
    store.add_agent_answer("held", "Let me look.", agent="Ana")
    store = left_by(store, 21, "ALTER TABLE handoffs DROP COLUMN taken")
    with pytest.raises(HeldByColleague):
        store.set_status("held", "handed_off", "agent", agent="Bob")
    store.set_status("held", "handed_off", "agent", agent="Bob", force=True)
    assert [c["agent"] for c in store.inbox("handed_off", 10)[0]] == ["Bob"]
    store.close()


def test_each_agent_who_had_a_customer_stays_in_the_handoffs_from_migration_24_on(tmp_path: Path) -> None:
    """A lead's forced takeover wrote the lead's name over the colleague's in the handoffs: nobody could tell who had
    had the customer before. A store of the deskbot before keeps its handoffs; each takeover since is kept beside them,
    naming who had the customer (a colleague who replied without taking them over too), and purged with them."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "held", "where is my order?")
    store.set_status("held", "handed_off", "agent", agent="Ana")
    store = left_by(store, 23, "DROP TABLE takeovers")
    store.add_agent_answer("held", "Let me look.", agent="Sam", force=True)  # Sam stands in by a reply
    store.set_status("held", "handed_off", "agent", agent="Bob", force=True)
    store.set_status("held", "handed_off", "agent", agent="bob", force=True)  # his already: no takeover
    store.set_status("held", "handed_off", "agent", agent="Lin", force=True)
    assert [c["agent"] for c in store.inbox("handed_off", 10)[0]] == ["Lin"] and store.holder("held") == "Lin"
    with pytest.raises(HeldByColleague):
        store.add_agent_answer("held", "Found it.", agent="Bob")
    assert [(h["event"], h["reason"], h["agent"], h["from"]) for h in store.transcript("held")["handoffs"]] == [
        ("handed_off", "agent", "Ana", None), ("handed_off", "agent", "Sam", "Ana"), ("handed_off", "agent", "Bob", "Sam"),
        ("handed_off", "agent", "Lin", "Bob")]
    store.add_agent_answer("held", "Lin here.", agent="LIN", force=True)  # hers already: no takeover
    store.set_status("held", "open", "agent", agent="Lin")
    store.set_status("held", "handed_off", "agent", agent="Ana")  # a new handoff: Ana's again, by her takeover
    assert store.holder("held") == "Ana" and store.transcript("held")["handoffs"][-1]["agent"] == "Ana"
    assert store.purge("held").deleted["held"]["takeovers"] == 3
    store.close()


def test_a_customer_released_to_wait_for_anyone_is_kept_from_migration_32_on(tmp_path: Path) -> None:
    """A takeover kept by the deskbot before says it was the agent's own; a release since leaves the customer waiting
    for a person, nobody's, and the next agent to take them over has them, however the handoff first named Ana."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "held", "where is my order?")
    store.set_status("held", "handed_off", "agent", agent="Ana")
    store.set_status("held", "handed_off", "agent", agent="Bob", force=True)
    store = left_by(store, 31, "ALTER TABLE takeovers DROP COLUMN by_agent")
    with pytest.raises(HeldByColleague):
        store.pass_on("held", "Ana")
    assert store.pass_on("held", "BOB") and not store.pass_on("held", "Bob")  # nobody's already: no change
    assert store.holder("held") is None and store.inbox("handed_off", 10)[0][0]["agent"] is None
    store.set_status("held", "handed_off", "agent", agent="Ana")
    assert store.holder("held") == "Ana"
    assert [(h["agent"], h["from"], h["by"]) for h in store.transcript("held")["handoffs"]] == [
        ("Ana", None, None), ("Bob", "Ana", "Bob"), (None, "Bob", "BOB"), ("Ana", None, "Ana")]
    store.close()


def test_an_agents_handback_keeps_whose_customer_it_was_from_migration_39_on(tmp_path: Path) -> None:
    """A lead handing Ana's customer back to the bot in another's name was kept as theirs alone: nothing said the
    customer had been Ana's. A store of the deskbot before keeps it from then on; its own handbacks say nobody, a
    customer's own handback too."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "back", "where is my order?")
    store.set_status("back", "handed_off", "agent", agent="Ana")
    store.set_status("back", "open", "agent", agent="Ana")
    store = left_by(store, 38, "DROP INDEX idx_handoffs_handed_back", "DROP INDEX idx_handoffs_handed_back_created",
                    "ALTER TABLE handoffs DROP COLUMN previous")
    store.set_status("back", "handed_off", "agent", agent="Ana")
    store.set_status("back", "open", "agent", agent="Bob", force=True, by="admin")
    store.set_status("back", "handed_off", "agent", agent="Ana")
    store.set_status("back", "open", "agent", agent="ana")
    store.set_status("back", "handed_off", "requested")
    store.set_status("back", "open", "user")
    assert [(h["event"], h["agent"], h["from"]) for h in store.transcript("back")["handoffs"]] == [
        ("handed_off", "Ana", None), ("open", "Ana", None), ("handed_off", "Ana", None), ("open", "admin", "Ana"),
        ("handed_off", "Ana", None), ("open", "ana", "Ana"), ("handed_off", None, None), ("open", None, None)]
    assert store.taken_from("Ana") == []  # the admin's handback is no longer the latest
    store.set_status("back", "handed_off", "agent", agent="Ana")
    store.set_status("back", "open", "agent", agent="Lea", force=True)
    assert [(t["by"], t["handed_back"]) for t in store.taken_from("ana")] == [("Lea", True)]
    store.db.execute("UPDATE handoffs SET created = created - ? WHERE conversation_id = 'back'", [HANDED_BACK_TOLD_S])
    assert store.taken_from("Ana") == []  # a day on, with the bot still: told by then, or too late to
    store.close()


def test_a_release_kept_without_a_maker_is_not_named_to_the_agent_it_was_taken_from(tmp_path: Path) -> None:
    """A release that names nobody, of the customer of Bob, whom a reload took out of server.agents, was kept with no
    maker (the server keeps it as the admin's now; older stores hold such releases): Bob's taken named it by null,
    which the inbox's schema says is a name, and his console said "null released your customer"."""
    store = Store(tmp_path / "dialogues.db")
    for cid in ("nameless", "named"):
        user_turn(store, cid, "where is my order?")
        store.set_status(cid, "handed_off", "agent", agent="Bob")
    assert store.pass_on("nameless", None, team=("Ana",))
    assert store.pass_on("named", None, team=("Ana",), by="admin")
    assert [(t["conversation_id"], t["by"]) for t in store.taken_from("Bob")] == [("named", "admin")]
    store.close()


def steps_of(store: Store, read: Callable[[], Any]) -> int:
    """How many steps of SQLite's machine ``read()`` takes on ``store``'s connection: the work it does, whatever
    the machine's speed or load."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    store.db.conn.set_progress_handler(step, 1)
    try:
        read()
    finally:
        store.db.conn.set_progress_handler(None, 1)
    return steps[0]


def test_the_inbox_counts_the_conversations_of_its_tab_from_an_index_alone(tmp_path: Path) -> None:
    """Each refresh of a console's tab of the conversations with the bot counted them by reading each open
    conversation's row, to leave the tryouts out: 40 ms for the 98,000 of a store of 100,000. Each conversation costs
    the count no more than it costs a count of the status index alone; the tryouts (``bot chat``'s) are still left
    out."""
    store = Store(tmp_path / "dialogues.db")

    def add(prefix: str, n: int, channel: str = "web") -> None:
        store.log_exchanges([Exchange(f"{prefix}-{i}", channel, None, "hi", None, "Hello!", "greet", 0.9,
                                      [("greet", 0.9)], "template", "v0001") for i in range(n)])

    def counts() -> tuple[int, int, int]:
        bare = steps_of(store, lambda: store.db.execute("SELECT count(*) FROM conversations "
                                                        "WHERE status = 'open'").fetchone())
        return bare, steps_of(store, lambda: store.inbox("open", 0)), store.inbox("open", 0)[1]

    add("web", 10)
    add("tryout", 3, TRYOUT_CHANNEL)
    bare, inbox, total = counts()
    assert total == 10
    add("more", 300)
    more_bare, more_inbox, more_total = counts()
    assert more_total == 310 and more_inbox - inbox <= more_bare - bare + 10
    store.close()


def test_the_count_of_the_conversations_with_the_bot_is_kept_exact_from_migration_54_on(tmp_path: Path) -> None:
    """Counted from the status index at each refresh of a console's tab of the conversations with the bot, 10 ms for
    98,000 of them open. Its count is kept by triggers now (``_v54``): a store of 300 more conversations costs the count
    no more, and it stays what a count of every conversation's row reads, the tryouts and those of no channel left
    out, through handoffs, handbacks, purges and another process's writes, in a store of the deskbot before too."""
    path = tmp_path / "dialogues.db"
    store = Store(path)

    def add(prefix: str, n: int, channel: str = "web") -> None:
        store.log_exchanges([Exchange(f"{prefix}-{i}", channel, None, "hi", None, "Hello!", "greet", 0.9,
                                      [("greet", 0.9)], "template", "v0001") for i in range(n)])

    def counted() -> dict[str, int]:
        """Each tab's count, as the inbox reads it and as every row read and compared says, which must agree."""
        counts = {status: store._listed(status, store._found("")) for status in ("open", "handed_off")}
        assert counts == {status: store.db.execute(f"SELECT count(*) FROM conversations c WHERE status = ? AND "
                                                   f"{store_module._AGENTS_REACH}", [status]).fetchone()[0]
                          for status in counts}
        return counts

    add("web", 10)
    add("tryout", 3, TRYOUT_CHANNEL)
    store.db.execute("UPDATE conversations SET channel = NULL WHERE id = 'web-9'")
    store = left_by(store, 53, "DROP TABLE listed_conversations", "DROP TRIGGER listed_insert",
                    "DROP TRIGGER listed_update", "DROP TRIGGER listed_delete", "DROP TABLE store_identity")
    assert counted() == {"open": 9, "handed_off": 0}
    few = steps_of(store, lambda: store._listed("open", store._found("")))
    add("more", 300)
    assert steps_of(store, lambda: store._listed("open", store._found(""))) <= few
    store.set_status("web-0", "handed_off", "requested")
    store.set_status("tryout-0", "handed_off", "requested")
    store.set_status("web-1", "handed_off", "agent", agent="Ana")
    store.set_status("web-1", "open", "agent", agent="Ana")  # handed back
    assert counted() == {"open": 308, "handed_off": 1}
    store.purge("web-0")
    shell = sqlite3.connect(path)  # another process
    shell.execute("UPDATE conversations SET channel = 'web' WHERE id IN ('tryout-1', 'web-9')")
    shell.execute("UPDATE conversations SET channel = 'cli' WHERE id = 'more-0'")
    shell.execute("DELETE FROM predictions WHERE turn_id IN (SELECT id FROM turns WHERE conversation_id = 'more-1')")
    shell.execute("DELETE FROM turns WHERE conversation_id = 'more-1'")
    shell.execute("DELETE FROM conversations WHERE id = 'more-1'")
    shell.commit()
    shell.close()
    assert counted() == {"open": 308, "handed_off": 0}
    store.close()


def one_passed_and_one_taken(tmp_path: Path, to: str, taken_from: str) -> Store:
    """A store where Bob's customer "passed" was passed on to ``to``, and his customer "taken" taken from him (named
    ``taken_from``) for Carl by a lead."""
    store = Store(tmp_path / "dialogues.db")
    for cid in ("passed", "taken"):
        user_turn(store, cid, "where is my order?")
        store.set_status(cid, "handed_off", "agent", agent="Bob")
    assert store.pass_on("passed", "Bob", to) and store.pass_on("taken", taken_from, "Carl", force=True, by="Lead")
    return store


def test_the_customers_passed_to_or_taken_from_an_agent_are_read_without_going_over_every_handed_off_one(
        tmp_path: Path) -> None:
    """Each agent's console asks for the customers passed to its agent and taken from them at each poll: read by going
    over every handed-off conversation's holder, 30 consoles went over 5,000 of them every 3 s during a sale. The
    customers colleagues have, which no one passed or took, add nothing to either read."""
    store = one_passed_and_one_taken(tmp_path, to="Ana", taken_from="Bob")

    def polls() -> int:
        return steps_of(store, lambda: (store.passed_to("Ana"), store.taken_from("Bob")))

    before = polls()
    for i in range(60):
        user_turn(store, f"other-{i}", "where is my order?")
        store.set_status(f"other-{i}", "handed_off", "agent", agent="Dan")
    # handed off a day ago: the handoffs of the day, whose handbacks are told, are read as they were
    store.db.execute("UPDATE handoffs SET created = created - ? WHERE conversation_id LIKE 'other-%'",
                     [HANDED_BACK_TOLD_S])
    assert [p["conversation_id"] for p in store.passed_to("Ana")] == ["passed"]
    assert [t["conversation_id"] for t in store.taken_from("Bob")] == ["taken"]
    assert polls() - before < 60  # not one step more for each of them
    store.close()


def test_the_customers_passed_to_or_taken_from_an_agent_are_read_without_going_over_every_takeover_kept(
        tmp_path: Path) -> None:
    """The takeovers of customers handed back since are kept until retention purges their conversations: the
    customers passed to an agent and taken from them were read by looking at every one of them, at each console's poll,
    120 to 160 ms each with 100,000 kept. Colleagues' takeovers add nothing to either read; an agent named in another
    letter case, or renamed from their platform id, is found as before."""
    store = one_passed_and_one_taken(tmp_path, to=" ana", taken_from="bob")  # as an agent may name them

    def polls() -> int:
        return steps_of(store, lambda: (store.passed_to("ANA"), store.taken_from("Bob")))

    before = polls()
    for i in range(60):  # taken over, passed on, and handed back since
        user_turn(store, f"other-{i}", "where is my order?")
        store.set_status(f"other-{i}", "handed_off", "agent", agent="Dan")
        assert store.pass_on(f"other-{i}", "Dan", "Eve")
        store.set_status(f"other-{i}", "open", "agent", agent="Eve")
    # a day ago: the handbacks of the day, which are told, are read as they were
    store.db.execute("UPDATE handoffs SET created = created - ? WHERE conversation_id LIKE 'other-%'",
                     [HANDED_BACK_TOLD_S])
    assert [p["conversation_id"] for p in store.passed_to("ANA")] == ["passed"]
    assert [t["conversation_id"] for t in store.taken_from("Bob")] == ["taken"]
    assert polls() - before < 60  # not one step more for each of them
    store.close()


def test_the_unread_messages_of_an_agents_customers_are_read_in_one_pass_over_the_handed_off_ones(
        tmp_path: Path) -> None:
    """Each agent's console asks at each poll what each of their customers wrote that they have not read: read as
    the inbox is, it counted the waiting customers too, twice over, each count a pass over every handed-off
    conversation, and dropped the counts. It reads no more of them than one count of those waiting does."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "mine", "where is my order?")
    store.set_status("mine", "handed_off", "agent", agent="Ana")
    user_turn(store, "mine", "hello?")

    def reads() -> tuple[int, int]:
        return steps_of(store, lambda: store.unread_of("Ana")), steps_of(store, store.waiting)

    before = reads()
    for i in range(60):
        user_turn(store, f"other-{i}", "where is my order?")
        store.set_status(f"other-{i}", "handed_off", "agent", agent="Dan")
    after = reads()
    assert store.unread_of("Ana") == [{"conversation_id": "mine", "unread": 1}]  # since the handoff
    assert after[0] - before[0] < 1.5 * (after[1] - before[1])  # one pass, where it made three
    store.close()


def test_a_web_messages_own_id_finds_its_answer_from_migration_33_on(tmp_path: Path) -> None:
    """The widget's Retry reaching a server started since is answered with the reply kept for its message's id: within
    the window asked for, in that conversation alone, and a message the bot was silent on with no reply."""
    store = left_by(Store(tmp_path / "dialogues.db"), 32, "DROP INDEX idx_turns_message_id",
                    "ALTER TABLE turns DROP COLUMN message_id")
    user_turn(store, "c1", "where is my order?")  # sent without an id
    asked = time.time()
    user_id, reply_id = store.log_exchange(Exchange("c1", "web", None, "where is my order?", None, "Sorry?",
                                                    "track_order", 0.2, [("track_order", 0.2)], "fallback", "v1",
                                                    message_id="m-1"))
    kept = store.answer_to("c1", "m-1", asked)
    assert kept is not None and (kept["user_turn_id"], kept["turn_id"], kept["text"], kept["ranking"]) == (
        user_id, reply_id, "Sorry?", [("track_order", 0.2)])
    assert store.answer_to("c1", "m-1", time.time() + 1) is None and store.answer_to("c2", "m-1", asked) is None
    store.log_exchange(Exchange("c1", "web", None, "hello?", None, None, None, 0.0, [], "silent", "v1", message_id="m-2"))
    silent = store.answer_to("c1", "m-2", asked)
    assert silent is not None and (silent["turn_id"], silent["text"], silent["source"]) == (None, "", "silent")
    store.close()


def test_an_intent_renamed_by_bot_relabel_is_kept_from_migration_34_on(tmp_path: Path) -> None:
    """A store of the deskbot before keeps each rename once opened, who made it and when, so that ``bot stats`` reads
    an answer under the old name as one of the new; a rename made again is kept once, and one of a name the bot
    neither labelled nor predicted (a typo) not at all."""
    store = left_by(Store(tmp_path / "dialogues.db"), 33, "DROP TABLE answering", "DROP TABLE intent_renames")
    turn = user_turn(store, "c1", "cancel my order")
    store.add_labels([turn], "cancel_order", "ann")
    assert store.relabel("cancel_order", "cancel_purchase", "ann") == [turn]
    assert store.relabel("cancel_order", "cancel_purchase", "ann") == []
    assert store.relabel("cancel_ordr", "cancel_purchase", "ann") == []
    assert [(r["old"], r["new"], r["reviewer"]) for r in store.db["intent_renames"].rows] == [
        ("cancel_order", "cancel_purchase", "ann")]
    store.close()


def test_a_web_message_being_answered_is_claimed_from_migration_35_on(tmp_path: Path) -> None:
    """A store of the deskbot before takes claims once opened: one server answers a message_id while another's claim
    stands, the next may once it is let go or has gone stale (a server killed mid-answer)."""
    store = left_by(Store(tmp_path / "dialogues.db"), 34, "DROP TABLE answering")
    assert store.claim("c1", "m1", before(0.0))
    assert not store.claim("c1", "m1", before(0.0))
    assert store.claim("c1", "m2", before(0.0))
    store.unclaim("c1", "m1")
    assert store.claim("c1", "m1", before(0.0))
    assert store.claim("c1", "m2", before(time.time() + 1))
    store.close()


def test_a_web_message_claimed_by_a_server_that_died_is_answered_by_the_next_at_once(tmp_path: Path) -> None:
    """A server killed mid-answer left its claim for two minutes (``CLAIM_STALE_S``), and the widget's Retry reaching
    another server waited that long, past the minute the widget waits for an answer. A live server's claim stands."""
    path = tmp_path / "dialogues.db"
    gone, alive, following = Store(path), Store(path), Store(path)
    for store in (gone, alive, following):
        store.serve()
    assert gone.claim("c1", "m1", before(0.0)) and alive.claim("c1", "m2", before(0.0))
    assert gone.claim("c1", "m3", before(0.0))
    gone.log_exchange(Exchange("c1", "web", None, "hello", None, "Hi!", None, 1.0, [], "template", "v1", message_id="m3"))
    gone.close()  # killed: the system lets go of its lock
    assert not following.claim("c1", "m3", before(0.0))  # answered as it died: its answer is the one given
    assert following.claim("c1", "m1", before(0.0))
    assert not following.claim("c1", "m2", before(0.0))
    assert not alive.claim("c1", "m1", before(0.0))  # the next one's now
    for store in (alive, following):
        store.close()


def test_a_web_message_whose_answer_is_kept_is_claimed_no_more_once_that_claim_went_stale(tmp_path: Path) -> None:
    """A claim is renewed no more once its answer is kept, and goes stale: a server that looked for the answer before
    it was kept claimed the message after that and answered it again. Only an answer kept before ``answered_since``
    (older than a client sends a message again) lets it be claimed."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    for store in (green, blue):
        store.serve()
    assert green.claim("c1", "m1", before(0.0))
    green.log_exchange(Exchange("c1", "web", None, "hello", None, "Hi!", None, 1.0, [], "template", "v1",
                                message_id="m1"))
    assert not blue.claim("c1", "m1", before(time.time() + 1), answered_since=time.time() - 600)
    assert blue.claim("c1", "m1", before(time.time() + 1), answered_since=time.time() + 1)
    for store in (green, blue):
        store.close()


def test_a_renewed_claim_is_not_taken_for_a_hung_servers(tmp_path: Path) -> None:
    """An answer running longer than the servers' stale time (a slow action) let another server answer the message
    sent again beside it: its server renews its claim while it answers, and only a claim no longer renewed is taken. A
    claim whose answer is kept is renewed no further, so that a server killed after keeping it is known to have
    answered (``Store.claim``)."""
    path = tmp_path / "dialogues.db"
    green, blue, following = Store(path), Store(path), Store(path)
    for store in (green, blue, following):
        store.serve()
    assert green.claim("c1", "m1", before(0.0))
    renewed_after = time.time()
    assert green.renew_claim("c1", "m1")
    assert not blue.claim("c1", "m1", before(renewed_after))  # claimed before, renewed since
    assert not blue.renew_claim("c1", "m1")  # green's
    assert blue.claim("c1", "m1", before(time.time() + 1))  # no longer renewed: green hung
    assert not green.renew_claim("c1", "m1")  # blue's now
    assert green.claim("c1", "m2", before(0.0))
    green.log_exchange(Exchange("c1", "web", None, "hello", None, "Hi!", None, 1.0, [], "template", "v1",
                                message_id="m2"))
    assert green.renew_claim("c1", "m2")  # a renewal between keeping the answer and the answer's end
    green.close()  # killed: the system lets go of its lock
    assert not following.claim("c1", "m2", before(0.0))  # its answer is the one given
    for store in (blue, following):
        store.close()


def test_a_claim_deleted_as_old_while_no_other_server_claims_its_message_is_renewed(tmp_path: Path) -> None:
    """Any claim deletes every one older than a Retry is answered from, which a server whose clock stepped forward
    takes a live one for: a server whose claim was deleted so found it gone at its next renewal though no other server
    had claimed the message, and took it for one another server answers, which gives its turn up, leaving the message
    unanswered by anyone. It is the server's again; one another claimed is not."""
    path = tmp_path / "dialogues.db"
    green, blue = Store(path), Store(path)
    for store in (green, blue):
        store.serve()
    assert green.claim("c1", "m1", before(0.0)) and green.claim("c1", "m2", before(0.0))
    assert blue.claim("c2", "m9", before(0.0), answered_since=time.time() + 1)  # both green's claims deleted
    assert green.db.execute("SELECT count(*) FROM answering WHERE server = ?", [green.server]).fetchone() == (0,)
    assert blue.claim("c1", "m2", before(time.time() + 1))
    assert green.renew_claim("c1", "m1") and not green.renew_claim("c1", "m2")
    assert not blue.claim("c1", "m1", before(time.time() - 60))  # green's again, just renewed
    for store in (green, blue):
        store.close()


def test_an_agents_note_is_kept_from_migration_25_on_for_the_agents_alone(tmp_path: Path) -> None:
    """Agents had nowhere to note what a colleague should know of a customer but a reply, which the customer read. A
    store of the deskbot before takes notes once opened; the transcript shows them, the customer's history never, and
    a purge leaves none."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "held", "where is my order?")
    store = left_by(store, 24, "DROP TABLE notes")
    first = store.add_note("held", "Refund promised by phone: check with finance.", "Ana")
    store.add_note("held", "客户很着急", None)
    with pytest.raises(KeyError):
        store.add_note("nobody", "a note on no conversation")
    assert [(n["id"], n["agent"], n["text"]) for n in store.transcript("held")["notes"]] == [
        (first, "Ana", "Refund promised by phone: check with finance."), (first + 1, None, "客户很着急")]
    assert [t["text"] for t in store.history("held")] == ["where is my order?", "Sorry?"]
    assert store.purge("held").deleted["held"]["notes"] == 2
    store.close()


def test_the_customers_messages_are_searched_in_a_full_text_index_from_migration_26_on(tmp_path: Path) -> None:
    """A search read every message a customer had written: seconds on a large store. A store of the deskbot before has
    its messages indexed once opened, those written since are indexed as written and rewritten, Chinese is found with
    no word segmentation, a text under the index's 3 characters is still found, and a purge leaves none of it."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "old", "我想申请退款，订单AB12")
    store = left_by(store, 25, "DROP TABLE turns_fts", "DROP TRIGGER turns_fts_insert", "DROP TRIGGER turns_fts_delete",
                    "DROP TRIGGER turns_fts_update")
    user_turn(store, "new", "Where is parcel ZQXJW-9?")
    store.log_exchange(Exchange("gone", "web", None, "护照号码在这里 Quuxworth", None, "好的", None, 0.1, [], "fallback", "v1"))
    pending = store.receive("k1", "edited", "slack", "U1", "I typed a typo", {})
    store.log_exchange(Exchange("edited", "slack", "U1", "I typed a typo", None, "Sorry?", None, 0.1, [], "fallback", "v1",
                                pending_id=pending))
    store.replace_message("edited", "k1", "my order ZZ-77 is late")

    def found(search: str) -> list[str]:
        return sorted(c["conversation_id"] for c in store.inbox("open", 10, search=search)[0])

    assert store.db.execute("SELECT count(*) FROM turns_fts WHERE turns_fts MATCH '申请退款'").fetchone() == (1,)
    assert found("申请退款") == found("ab12") == found("退款") == ["old"]  # 退款: under 3 characters, every message read
    assert found("zqxjw-9") == found("parcel zqxjw") == ["new"] and found('"zqxjw') == found("a typo") == []
    assert found("zz-77") == ["edited"]
    assert found("护照号码") == ["gone"] and found("sorry") == []  # the bot's words are not the customer's
    index = "SELECT count(*) FROM turns_fts_data"
    segments = store.db.execute(index).fetchone()
    store.purge("nobody")  # a nightly retention purge with nothing to delete does not rewrite the index, for seconds
    assert store.db.execute(index).fetchone() == segments
    assert store.purge("gone").wal_cleared and found("护照号码") == []
    store.close()
    assert "护照".encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("dialogues.db*"))


def test_a_customers_edited_or_deleted_words_leave_the_search_index_at_the_next_merge(tmp_path: Path) -> None:
    """A Slack customer's message edited or deleted was rewritten in the store, but its old text's trigrams stayed in
    the full-text index's older segments (turns_fts_data), beside the marker that hides them, until a purge or `bot
    redact` merged it: `bot serve`'s hourly round merges it where a message was edited or deleted, and only then."""
    store = Store(tmp_path / "dialogues.db", redact=False)
    for n, text in enumerate(("call me on qjzvxk", "my pin is wfyhbk")):
        key = f"k{n}"
        pending = store.receive(key, f"c{n}", "slack", "U1", text, {})
        store.log_exchange(Exchange(f"c{n}", "slack", "U1", text, None, "Sorry?", None, 0.1, [], "fallback", "v1",
                                    pending_id=pending))
    store.db.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('automerge', 0)")  # each message a segment

    def indexed(trigram: bytes) -> bool:
        return any(trigram in bytes(block) for block, in store.db.execute("SELECT block FROM turns_fts_data"))

    assert not store.merge_search_index_if_rewritten()  # nothing edited: no merge of a large index for nothing
    store.replace_message("c0", "k0", "call me later")
    store.replace_message("c1", "k1", None)
    assert indexed(b"qjz") and indexed(b"wfy")  # hidden from searches, still in the file
    assert store.merge_search_index_if_rewritten()
    assert not indexed(b"qjz") and not indexed(b"wfy")
    assert store.db.execute("SELECT rowid FROM turns_fts WHERE turns_fts MATCH 'me later'").fetchall() == \
        store.db.execute("SELECT id FROM turns WHERE conversation_id = 'c0' AND role = 'user'").fetchall()
    assert not store.merge_search_index_if_rewritten()
    store.close()


def test_a_search_finds_what_customers_wrote_in_either_chinese_script(tmp_path: Path) -> None:
    """An agent in Shenzhen typing 退货 did not find the Hong Kong customer who wrote 退貨, nor one in Hong Kong typing
    訂單 the Mainland customer's 订单: a text of the index's 3 characters or more, and a shorter one, in each script."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "hk", "我嘅訂單幾時到？想申請退貨")
    user_turn(store, "cn", "我的订单什么时候到？想申请退货")
    user_turn(store, "en", "where is my parcel?")

    def found(search: str) -> list[str]:
        return sorted(c["conversation_id"] for c in store.inbox("open", 10, search=search)[0])

    for search in ("订单", "訂單", "退货", "退貨", "申请退货", "申請退貨"):
        assert found(search) == ["cn", "hk"], search
    assert found("订单几时") == ["hk"] and found("訂單什麼時候") == ["cn"]  # each customer's own words still
    assert found("parcel") == ["en"] and found("包裹") == []
    store.close()


def test_of_two_servers_on_one_store_one_tells_a_waiting_customer_that_the_agents_are_busy(tmp_path: Path) -> None:
    """Each server read the customer as owed the busy notice before either stored it, and both told them."""
    path = tmp_path / "dialogues.db"
    first, second = Store(path), Store(path)
    user_turn(first, "waiting", "where is my order?")
    first.set_status("waiting", "handed_off", "requested")
    window = (time.time() + 1, 300.0)
    assert [c["conversation_id"] for c in first.overdue(*window)] == [c["conversation_id"] for c in second.overdue(*window)] \
        == ["waiting"]
    told = [store.add_busy_notice("waiting", "Our agents are busy.", "web", [], *window) for store in (first, second)]
    assert told[0] is not None and told[1] is None
    assert [t["text"] for t in first.history("waiting") if t["role"] == "bot"] == ["Sorry?", "Our agents are busy."]
    assert first.overdue(*window) == second.overdue(*window) == []
    first.close()
    second.close()


def test_a_purge_takes_the_claims_of_its_conversations_web_messages_with_it(tmp_path: Path) -> None:
    """The claim of a web message being answered (its conversation and message ids) outlived a purge until a later
    claim cleared the stale ones, which an idle server might never make."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "asked", "where is my order?")
    assert store.claim("asked", "m-1", before(time.time() - 120)) and store.claim("other", "m-1", before(time.time() - 120))
    assert store.purge("asked").deleted["asked"]["answering"] == 1
    assert store.db.execute("SELECT conversation_id FROM answering").fetchall() == [("other",)]
    store.close()


def test_bot_purge_on_a_full_disk_says_so_in_one_line(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command whose write failed once the store was open (a disk filled meanwhile) ended in a traceback."""
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "my address is 1 Main St")
    store.close()
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite raises it

    def no_room(self: Store, *conversation_ids: str, **how: Any) -> None:
        raise full

    monkeypatch.setattr(Store, "purge", no_room)
    purged = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])
    assert purged.exit_code == 1
    assert purged.output.startswith("Error: the conversation store cannot write (database or disk is full): what "
                                    "failed was not written; run the command again once it can"), purged.output


def test_a_conversations_reference_names_it_alone_and_goes_with_its_purge(tmp_path: Path) -> None:
    """The agents' webhook was told a conversation's id, a web customer's key to it. It is told a reference: random,
    one a conversation, the same at each notice, resolved by the store alone, and gone with the conversation."""
    store = Store(tmp_path / "dialogues.db")
    for cid in ("web-key-of-the-customer", "wecom:corp:zhangsan"):
        user_turn(store, cid, "I need a person")
    ref = store.reference("web-key-of-the-customer")
    other = store.reference("wecom:corp:zhangsan")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", ref) and ref != other and "zhangsan" not in other
    assert store.reference("web-key-of-the-customer") == ref  # the next notice names it alike
    assert store.referred(ref) == "web-key-of-the-customer" and store.referred(other) == "wecom:corp:zhangsan"
    assert store.reference("never-seen") is None and store.referred("never-made") is None
    assert store.purge("web-key-of-the-customer").deleted["web-key-of-the-customer"]["refs"] == 1
    assert store.referred(ref) is None and store.referred(other) == "wecom:corp:zhangsan"
    store.close()


def test_a_purge_says_when_a_reader_kept_the_deleted_text_in_the_wal(tmp_path: Path) -> None:
    """A reader holding a snapshot (a long ``bot export``) keeps the WAL's frames; erasure must not claim success."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    user_turn(store, "gone", "parcel for Zebediah Quuxworth")
    user_turn(store, "kept", "another customer")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM turns").fetchone() == (4,)
    store.db.execute("PRAGMA busy_timeout=50")  # not the store's 30 s

    purged = store.purge("gone", "nobody")
    assert purged.deleted["gone"]["conversations"] == 1 and purged.deleted["nobody"]["conversations"] == 0
    assert not purged.wal_cleared and b"Quuxworth" in Path(f"{path}-wal").read_bytes()  # what it says is so

    reader.execute("ROLLBACK")
    again = store.purge("gone")
    assert again.wal_cleared and again.deleted["gone"]["turns"] == 0
    assert b"Quuxworth" not in b"".join(p.read_bytes() for p in tmp_path.glob("dialogues.db*"))
    store.close()


def test_a_purge_waiting_for_a_reader_to_clear_the_wal_lets_a_serving_bots_writes_through(tmp_path: Path) -> None:
    """The purge's checkpoint, waiting for a long reader (a `bot backup`, the agents' figures) to leave the WAL,
    held the write lock meanwhile: a serving bot's every reply waited up to 30 s with it, or failed."""
    import threading

    path = tmp_path / "dialogues.db"
    store = Store(path)
    user_turn(store, "gone", "parcel for Zebediah Quuxworth")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM turns").fetchone() == (2,)
    purged: list[Any] = []
    purging = threading.Thread(target=lambda: purged.append(store.purge("gone")))
    purging.start()
    time.sleep(0.5)  # deleted; its checkpoint waits for the reader
    serving = sqlite3.connect(path, isolation_level=None, timeout=1)

    serving.execute("INSERT INTO conversations (id, channel, status, slots, fallbacks) VALUES ('new', 'web', 'open', '{}', 0)")

    reader.execute("ROLLBACK")
    purging.join(timeout=30)
    assert purged and purged[0].wal_cleared  # once the reader left, within the purge's wait
    assert b"Quuxworth" not in b"".join(p.read_bytes() for p in tmp_path.glob("dialogues.db*"))
    for connection in (serving, reader):
        connection.close()
    store.close()


def test_a_purged_conversations_platform_messages_are_not_answered_again_when_redelivered(tmp_path: Path) -> None:
    """A purge deleted the keys of the conversation's Slack and WeCom messages: a redelivery in the minutes after it
    (Slack retries for 5 minutes) was answered again, beginning the conversation anew. Their keys stay, and nothing
    else of them: not the customer, their conversation or their text."""
    store = Store(tmp_path / "dialogues.db")
    answered = store.receive("slack:ts:D1:1.1", "slack:T1:D1:1.1", "slack", "U-ann", "where is my parcel?", {"ts": "1.1"})
    assert answered is not None
    store.log_exchange(Exchange("slack:T1:D1:1.1", "slack", "U-ann", "where is my parcel?", None, "On its way", None,
                                0.2, [], "fallback", "v0001", pending_id=answered))
    store.delivered(answered)
    store.receive("slack:ts:D1:1.2", "slack:T1:D1:1.1", "slack", "U-ann", "parcel for Zebediah Quuxworth", {})  # answering
    store.receive("wecom:1", "wecom:ww1:chen", "wecom", "chen", "我的包裹呢", {})

    store.purge("slack:T1:D1:1.1")
    for key in ("slack:ts:D1:1.1", "slack:ts:D1:1.2"):
        assert store.receive(key, "slack:T1:D1:1.1", "slack", "U-ann", "again", {}) is None
    assert [text for _, text, _ in kept(store)] == ["我的包裹呢"]  # the purged one is no server's to answer
    assert list(store.db.query("SELECT key, conversation_id, user, text, metadata, reply_turn FROM pending "
                               "WHERE channel = 'slack'")) == [
        {"key": key, "conversation_id": None, "user": None, "text": "", "metadata": "{}", "reply_turn": None}
        for key in ("slack:ts:D1:1.1", "slack:ts:D1:1.2")]
    store.close()


def test_bot_purge_finds_a_customers_message_kept_before_their_conversation_was(root: Path) -> None:
    """A Slack or WeCom customer's first message, kept as it was acknowledged and not answered yet (the server was
    killed, or stopped, before its turn was written), is in no conversation: ``--user`` found nothing of theirs, and
    the next server to start answered it after the purge, writing the conversation anew with their words."""
    store = Store(root / "dialogues.db")
    store.receive("slack:ts:D2:1.1", "slack:T1:D2:1.1", "slack", "U-bob", "send it to Zebediah Quuxworth", {"ts": "1.1"})
    store.receive("wecom:1", "wecom:ww1:chen", "wecom", "chen", "我的包裹呢", {})
    user_turn(store, "web-1", "hello")
    store.close()
    listed = CliRunner().invoke(cli, ["purge", str(root), "--user", "U-bob", "--dry-run"])
    assert (listed.exit_code, listed.output) == (0, "slack:T1:D2:1.1\tslack\tU-bob\n")
    purged = CliRunner().invoke(cli, ["purge", str(root), "--user", "U-bob"])
    assert purged.exit_code == 0, purged.output
    store = Store(root / "dialogues.db")
    assert [text for _, text, _ in kept(store)] == ["我的包裹呢"]  # no server's to answer
    assert store.db.execute("SELECT count(*) FROM pending WHERE user = 'U-bob' OR text LIKE '%Zebediah%'").fetchone() == (0,)
    assert store.conversation_ids(user="U-bob") == []
    store.close()


def test_bot_access_writes_everything_kept_of_one_customer(root: Path, tmp_path: Path) -> None:
    """A customer asking to see what the shop keeps of them could be shown their conversations' ids (`bot purge
    --dry-run`) and each transcript, redacted: not the unredacted copy privacy.keep_raw keeps, nor the slots as set."""
    store = Store(root / "dialogues.db", keep_raw=True)
    store.log_exchange(Exchange("c1", "web", "U-ann", "mail me at ann@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots={"email": "ann@example.com"}))
    reply = store.db.execute("SELECT id FROM turns WHERE role = 'bot'").fetchone()[0]
    store.add_feedback("c1", reply, -1, "too slow")
    store.add_note("c1", "Ann prefers email", agent="anna")
    store.receive("slack:ts:D2:1.1", "slack:T1:D2:1.1", "slack", "U-ann", "and my parcel?", {"ts": "1.1"})
    store.log_exchange(Exchange("c2", "web", "U-bob", "hello", None, "Hi", "greet", 0.9, [], "template", "v1"))
    store.close()

    made = CliRunner().invoke(cli, ["access", str(root), "--user", "U-ann", "-o", str(tmp_path / "ann.json")])
    assert made.exit_code == 0, made.output
    assert "2 conversations of 'U-ann'" in made.stderr
    assert (tmp_path / "ann.json").stat().st_mode & 0o777 == 0o600
    kept = json.loads((tmp_path / "ann.json").read_text())
    assert [c["conversation_id"] for c in kept["conversations"]] == ["c1", "slack:T1:D2:1.1"]
    c1, slack = kept["conversations"]
    assert c1["conversation"]["slots"] == {"email": "ann@example.com"}
    assert [(t["role"], t["text"], t["raw_text"]) for t in c1["turns"]] == [
        ("user", "mail me at [EMAIL]", "mail me at ann@example.com"), ("bot", "Thanks!", None)]
    assert [f["comment"] for f in c1["feedback"]] == ["too slow"] and [n["text"] for n in c1["notes"]] == ["Ann prefers email"]
    assert slack["conversation"] is None and [p["text"] for p in slack["pending"]] == ["and my parcel?"]
    assert "U-bob" not in (tmp_path / "ann.json").read_text()

    # an anonymous web visitor, whom no user id names, by their conversation's id: the same shape, user null
    store = Store(root / "dialogues.db", keep_raw=True)
    store.log_exchange(Exchange("w9", "web", None, "call me on 13812345678", None, "ok", None, 0.2, [], "fallback", "v1"))
    store.close()
    made = CliRunner().invoke(cli, ["access", str(root), "--conversation", "w9", "-o", str(tmp_path / "w9.json")])
    assert made.exit_code == 0, made.output
    assert "1 conversation named 'w9'" in made.stderr
    visitor = json.loads((tmp_path / "w9.json").read_text())
    assert visitor["user"] is None and [c["conversation_id"] for c in visitor["conversations"]] == ["w9"]
    assert visitor["conversations"][0]["turns"][0]["raw_text"] == "call me on 13812345678"
    for both_or_none in (["--user", "U-ann", "--conversation", "w9"], []):
        refused = CliRunner().invoke(cli, ["access", str(root), *both_or_none])
        assert refused.exit_code == 2 and "--user ID or --conversation ID" in refused.output


def test_a_purge_forgets_a_colleagues_platform_id_with_the_last_conversation_of_theirs(tmp_path: Path) -> None:
    """Each Slack colleague who wrote in a customer's thread was kept by their platform id (``members``) for good:
    a retention purge deleted every conversation they wrote in and kept their id and name. Their id goes with the last
    conversation of their channel that names them; a colleague still named in a kept one keeps theirs."""
    store = Store(tmp_path / "dialogues.db")
    for conversation in ("slack:T1:C1:1.1", "slack:T1:C1:2.1", "slack:T1:C1:3.1"):
        store.log_exchange(Exchange(conversation, "slack", "U-cust", "where is my parcel?", None, "On its way", None,
                                    0.2, [], "fallback", "v0001"))
    store.receive_note("slack:noted:C1:1.2", "slack:T1:C1:1.1", "slack", "Ada", "On it", member="U-ada")
    store.receive_note("slack:noted:C1:1.3", "slack:T1:C1:1.1", "slack", "Bo", "Me too", member="U-bo")
    store.receive_note("slack:noted:C1:2.2", "slack:T1:C1:2.1", "slack", "Bo", "Here", member="U-bo")
    store.receive_note("slack:noted:C1:3.2", "slack:T1:C1:3.1", "slack", "Cy", "Taken", member="U-cy")
    assert store.kept_members("slack") == {"U-ada": "Ada", "U-bo": "Bo", "U-cy": "Cy"}
    store.purge("slack:T1:C1:1.1")
    assert store.kept_members("slack") == {"U-bo": "Bo", "U-cy": "Cy"}  # Bo wrote in 2.1 too
    store.purge("slack:T1:C1:2.1")
    assert store.kept_members("slack") == {"U-cy": "Cy"}
    assert list(store.db.query("SELECT * FROM members")) == [{"channel": "slack", "member": "U-cy", "name": "Cy"}]
    store.close()


def test_a_long_purge_lets_a_serving_bots_writes_in_between_its_conversations(tmp_path: Path) -> None:
    """A purge of many conversations (a retention period's) held the write lock throughout, one transaction: at a
    year's conversations, longer than a serving bot's 30 s wait, so its replies failed."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    ids = [f"old-{i}" for i in range(60)]
    store.log_exchanges([Exchange(cid, "web", None, "where is my parcel?", None, "On its way", "track_order", 0.9,
                                  [("track_order", 0.9)], "model", "v0001") for cid in ids])
    serving = sqlite3.connect(path, isolation_level=None, timeout=0)  # a write that waits for nothing
    written: list[int] = []

    def write_meanwhile(sql: str) -> None:
        if sql == "BEGIN IMMEDIATE":  # the purge takes the lock again: whatever it held is committed
            serving.execute("INSERT INTO conversations (id, channel, status, slots, fallbacks) "
                            f"VALUES ('new-{len(written)}', 'web', 'open', '{{}}', 0)")
            written.append(1)

    store.db.conn.set_trace_callback(write_meanwhile)
    purged = store.purge(*ids)
    store.db.conn.set_trace_callback(None)
    assert all(deleted["conversations"] == 1 for deleted in purged.deleted.values()) and purged.wal_cleared
    assert len(written) > 1  # the first before it began, the others between its conversations
    assert store.db.execute("SELECT count(*) FROM conversations").fetchone() == (len(written),)
    serving.close()
    store.close()


def steps(store: Store, read: Callable[[], Any]) -> tuple[int, Any]:
    """The SQLite virtual machine's steps (in hundreds) ``read`` took on ``store``, and what it gave: a read's cost
    that the machine's load does not change, as its time does."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    store.db.conn.set_progress_handler(count, 100)
    try:
        given = read()
    finally:
        store.db.conn.set_progress_handler(None, 100)
    return counted[0], given


def test_the_inbox_reads_who_has_each_customer_and_their_latest_message_for_its_page_alone(tmp_path: Path) -> None:
    """Each agent's console asks for the inbox every 3 s: it read who has each handed-off customer, their latest message
    and what is unread for every one of them, to list a page, then each one's wait and holder again to count those
    waiting on the agent or nobody. Each one's wait and holder are read once, for the order and both counts, the rest
    for the page's rows: a page of one among 40 costs SQLite a third of a page of all, where it cost as much, the
    count of one's own customers waiting less than a pass of its own, and they list and count what they did."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(40):
        for j in range(3):
            user_turn(store, f"c{n:02d}", f"question {n} {j}")
        store.set_status(f"c{n:02d}", "handed_off", "requested")
    store.add_agent_answer("c07", "on its way", agent="Ana")
    for n, agent in ((8, "Bob"), (9, "Gone")):  # a colleague's customer, and one of an agent server.agents no longer names
        store.add_agent_answer(f"c{n:02d}", "let me look", agent=agent)
        user_turn(store, f"c{n:02d}", "thanks, and?")
    team = ["Ana", "Bob"]

    def anew(read: Callable[[Store], Any]) -> tuple[int, Any]:
        """``read``'s steps on a connection of its own, which has kept no pass of a poll before."""
        with contextlib.closing(Store(store.path, read_only=True)) as reads:
            return steps(reads, lambda: read(reads))

    one, ([first], total, waiting, yours) = anew(lambda reads: reads.inbox_and_yours("handed_off", 1, "Ana", team=team))
    all_of_them, (listed, *_) = anew(lambda reads: reads.inbox_and_yours("handed_off", 40, "Ana", team=team))
    alone, (waiting_yours, _) = steps(store, lambda: store.waiting("Ana", team))
    assert (total, waiting, yours) == (40, 39, 38) and waiting_yours == 38
    assert first == listed[0] and listed[-1]["conversation_id"] == "c07"  # its latest word the agent's: last
    assert [c["conversation_id"] for c in listed[:3]] == ["c00", "c01", "c02"]
    assert listed[-2]["conversation_id"] == "c09" and listed[-2]["agent"] == "Gone" and listed[-3]["agent"] == "Bob"
    assert one * 2 < all_of_them
    without_yours, _ = anew(lambda reads: reads.inbox("handed_off", 1, "Ana", team=team))
    assert one - without_yours < alone / 2
    assert store.inbox("handed_off", 40, "Ana", team=team) == (listed, 40, 39)
    store.close()


def moved_by(change: Callable[[], Any], sql: sqlite3.Connection, shown: Callable[[], tuple[str, Any]],
             before: tuple[str, Any]) -> tuple[str, Any]:
    """What ``shown`` (a version and what it versions) reads once ``change`` is made and ``sql``'s committed, having
    checked that both moved from ``before``."""
    change()
    sql.commit()
    after = shown()
    assert after[0] != before[0] and after[1] != before[1]
    return after


def test_the_inbox_version_moves_with_what_the_inbox_shows_alone_from_migration_52_on(tmp_path: Path) -> None:
    """The ETag of a console's inbox was the store's version (SQLite's ``data_version``), which every commit moves: with
    the bot answering a customer a second, each console read its inbox whole at nearly every 3-second poll. The
    inbox's own version (:meth:`Store.inbox_version`) stays while customers write to the bot, it predicts, they vote
    and reviewers label, and moves at each write that changes what an agent's inbox shows, whoever writes it (another
    process, a ``sqlite3`` shell), in a store of the deskbot before too."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    asked = user_turn(store, "held", "where is my order?")
    store.set_status("held", "handed_off", "requested")
    store.mark_seen("held", "Ana", asked)
    store = left_by(store, 51)
    reads = Store(path, read_only=True)  # the server's reads' connection

    def shown() -> tuple[str, Any]:
        """The inbox's version and what Ana's and Bob's inboxes show, in one snapshot."""
        with reads.snapshot():
            return reads.inbox_version(), [(reads.poll("handed_off", 50, agent), reads.passed_to(agent),
                                            reads.taken_from(agent)) for agent in ("Ana", "Bob")]

    def latest(conversation: str, role: str = "%") -> int:
        return store.db.execute("SELECT max(id) FROM turns WHERE conversation_id = ? AND role LIKE ?",
                                [conversation, role]).fetchone()[0]

    customer = user_turn(store, "busy", "where is my order?")
    before = shown()
    for unrelated in (lambda: user_turn(store, "busy", "and my refund?"),  # the turns and their predictions
                      lambda: store.add_feedback("busy", latest("busy", "bot"), -1, "not helpful"),
                      lambda: store.add_labels([customer], "track_order", reviewer="Lea"),
                      lambda: store.mark_seen("busy", "Ana", customer),  # a conversation with the bot, read
                      lambda: store.mark_seen("held", "Ana", asked)):  # read before
        unrelated()
        assert shown() == before
    agent_turns: list[int] = []
    sql = sqlite3.connect(path)
    for change in (lambda: store.set_status("held", "handed_off", "agent", agent="Ana"),  # taken over
                   lambda: agent_turns.append(store.add_agent_answer("held", "Let me look.", agent="Ana")),
                   lambda: user_turn(store, "held", "thanks, and?"),  # a handed-off customer writes
                   lambda: store.mark_seen("held", "Ana", latest("held")),  # read
                   lambda: store.undelivered(agent_turns[0]),  # the reply never reached them: they wait again
                   lambda: store.pass_on("held", "Ana", "Bob"),
                   lambda: sql.execute("UPDATE turns SET text = 'thanks, and [email]?' WHERE conversation_id = 'held' "
                                       "AND text = 'thanks, and?'"),  # another process rewrites it
                   lambda: store.set_status("busy", "handed_off", "requested"),
                   lambda: store.set_status("held", "open", "agent", agent="Lea", force=True),  # handed back
                   lambda: store.purge("busy")):
        before = moved_by(change, sql, shown, before)
    sql.close()
    reads.close()
    store.close()


def test_the_version_of_the_conversations_with_the_bot_is_the_stores_and_moves_with_them_from_migration_59_on(
        tmp_path: Path) -> None:
    """The ETag of the agents' tab of the conversations with the bot was the reading connection's own version: behind a
    load balancer, no server answered another's 304, the same page, and any commit moved it. Its version
    (:meth:`Store.open_version`) is the store's now, alike on every server's connection, holds while nothing the tab
    shows changes (a vote, a label, a prediction), and moves at each write that does, whoever writes it (another
    process, a ``sqlite3`` shell), in a store of the deskbot before too."""
    path = tmp_path / "dialogues.db"
    store = Store(path)
    customer = user_turn(store, "busy", "where is my order?")
    store = left_by(store, 55)
    one, other = Store(path, read_only=True), Store(path, read_only=True)  # two servers' reads' connections

    def shown() -> tuple[str, Any]:
        """The tab's version, as each server reads it, and what it shows."""
        with one.snapshot(), other.snapshot():
            assert one.open_version() == other.open_version()
            return one.open_version(), one.poll("open", 50)

    before = shown()
    bot_turn = store.db.execute("SELECT max(id) FROM turns WHERE role = 'bot'").fetchone()[0]
    for unrelated in (lambda: store.add_feedback("busy", bot_turn, -1, "not helpful"),
                      lambda: store.add_labels([customer], "track_order", reviewer="Lea"),
                      lambda: store.mark_seen("busy", "Ana", customer)):
        unrelated()
        assert shown() == before
    sql = sqlite3.connect(path)
    for change in (lambda: user_turn(store, "busy", "and my refund?"),  # a customer writes to the bot
                   lambda: user_turn(store, "new", "hello"),  # a new customer
                   lambda: sql.execute("UPDATE turns SET text = 'hello [email]' WHERE conversation_id = 'new' "
                                       "AND text = 'hello'"),  # another process rewrites it
                   lambda: store.set_status("new", "handed_off", "requested"),  # no longer with the bot
                   lambda: store.purge("busy")):
        before = moved_by(change, sql, shown, before)
    sql.close()
    for reads in (one, other):
        reads.close()
    store.close()


def test_the_inbox_version_is_the_stores_on_every_server_and_another_after_a_restore(tmp_path: Path) -> None:
    """The inbox's version began with a name each connection drew as it opened: behind a load balancer, each server
    answered another's ETag, the same inbox, whole. It is the store's now, the same on each server's connection, and
    another for a backup restored in the store's place, whose count of changes goes on from the copy's, or for another
    store at the same path."""
    path = tmp_path / "dialogues.db"

    def made(conversation: str) -> Store:
        store = Store(path)
        user_turn(store, conversation, "where is my order?")
        store.set_status(conversation, "handed_off", "requested")
        return store

    def version() -> str:
        with contextlib.closing(Store(path, read_only=True)) as reads, reads.snapshot():
            return reads.inbox_version()

    store = made("held")
    one, other = Store(path, read_only=True), Store(path, read_only=True)  # two servers' reads' connections
    with one.snapshot(), other.snapshot():
        assert one.inbox_version() == other.inbox_version() == version()
    one.close()
    other.close()
    store.backup(tmp_path / "copy.db")
    store.set_status("held", "handed_off", "agent", agent="Ana")
    taken = version()
    store.close()
    store_module.restore(path, tmp_path / "copy.db")
    store = Store(path)
    store.set_status("held", "handed_off", "agent", agent="Bob")  # as many changes since the copy, another inbox
    assert version() not in (taken, "")
    store.close()
    for end in ("", "-wal", "-shm"):
        Path(f"{path}{end}").unlink(missing_ok=True)
    made("held").close()  # another store at the same path, made alike
    with contextlib.closing(Store(tmp_path / "copy.db", read_only=True)) as copy, copy.snapshot():
        assert version() != copy.inbox_version()


def test_a_poll_keeps_its_pass_over_the_handed_off_customers_until_the_inbox_changes(tmp_path: Path) -> None:
    """Each console's poll went over every handed-off conversation for their waits and holders, on the tab of the
    conversations with the bot too (for its counts and the agents who have customers): 70 ms with 2,000 of them
    handed off, the same as at the poll before. The pass is kept on the reads' connection until the inbox changes
    (:meth:`Store.inbox_version`): a poll after another, a customer writing to the bot between them, costs less than the
    first by about the pass, and answers what a poll read anew does; a change of the inbox is read at the next."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(40):
        user_turn(store, f"c{n:02d}", f"question {n}")
        store.set_status(f"c{n:02d}", "handed_off", "requested")
    reads = Store(store.path, read_only=True)  # the server's reads' connection
    one_pass, _ = steps(reads, lambda: reads.db.execute(f"SELECT agent FROM ({store_module._HANDED_OFF})").fetchall())

    def anew(status: str) -> dict[str, Any]:
        with contextlib.closing(Store(store.path, read_only=True)) as fresh:
            return fresh.poll(status, 10, "Ana")

    for n, status in enumerate(("open", "handed_off")):
        store.add_agent_answer(f"c{n:02d}", "On its way.", agent="Ana")  # their customer waits no more
        first, polled = steps(reads, lambda: reads.poll(status, 10, "Ana"))
        assert polled == anew(status) and polled["waiting_yours"] == 39 - n, status
        user_turn(store, f"with-the-bot-{n}", "hello")
        again, polled = steps(reads, lambda: reads.poll(status, 10, "Ana"))
        assert polled == anew(status) and first - again > one_pass * 0.8, status
    reads.close()
    store.close()


def test_consoles_polling_one_page_at_one_inbox_version_share_its_rows(tmp_path: Path) -> None:
    """After each change of the inbox, each console's next poll of the waiting tab read its page of 200 anew, 40 to
    70 ms, the same rows as the console's before. The rows are kept on the reads' connection until the inbox changes
    and shared: a colleague's poll after another's costs less by about the page's read, and answers what a poll read
    anew does, what each agent read told apart; a change of the inbox is read at the next."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(40):
        user_turn(store, f"c{n:02d}", f"question {n}")
        store.set_status(f"c{n:02d}", "handed_off", "requested")
    store.add_agent_answer("c00", "Let me look.", agent="Bob")
    asked = [user_turn(store, "c00", f"and {n}?") for n in range(2)]
    store.mark_seen("c00", "Bob", asked[0])  # of the two since his answer, he read the first
    store.mark_seen("c05", "ana", user_turn(store, "c05", "still there?"))  # Ana read what c05 wrote since the handoff
    reads, other = Store(store.path, read_only=True), Store(store.path, read_only=True)  # two servers' reads
    page = steps(reads, lambda: reads.db.execute(f"SELECT * FROM ({store_module._HANDED_OFF})").fetchall())[0]

    def anew(agent: str) -> dict[str, Any]:
        with contextlib.closing(Store(store.path, read_only=True)) as fresh:
            return fresh.poll("handed_off", 50, agent)

    def unread(polled: dict[str, Any], conversation_id: str) -> int:
        return next(row["unread"] for row in polled["conversations"] if row["conversation_id"] == conversation_id)

    for change in (lambda: None, lambda: user_turn(store, "c05", "hello??")):
        change()
        other.poll("open", 10)  # its pass over the handed-off conversations kept, their rows not read
        alone, polled = steps(other, lambda: other.poll("handed_off", 50, "Bob"))
        assert polled == anew("Bob")
        reads.poll("handed_off", 50, "Ana")  # a colleague's console
        shared, polled = steps(reads, lambda: reads.poll("handed_off", 50, "Bob"))
        assert polled == anew("Bob") and alone - shared > page * 0.8
        assert (unread(polled, "c00"), polled["unread_yours"]) == (1, [{"conversation_id": "c00", "unread": 1}])
        assert reads.poll("handed_off", 50, "Ana") == anew("Ana")
    assert unread(reads.poll("handed_off", 50, "Ana"), "c05") == 1 and unread(polled, "c05") == 2
    for connection in (reads, other, store):
        connection.close()


def test_the_agents_who_have_customers_are_read_with_each_holder_once(tmp_path: Path) -> None:
    """The console's poll lists the agents who have customers (:meth:`Store.holders`) every 3 s: grouped, filtered and
    ordered by in SQL, each handed-off conversation's holder was read 4 times, as long as the rest of the inbox with
    2,000 handed off. It costs about one pass over the holders now, and names one spelling of each agent, by name."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(30):
        user_turn(store, f"c{n:02d}", f"question {n}")
        store.set_status(f"c{n:02d}", "handed_off", "requested")
    for n, agent in enumerate(["bob", "Ana", " ana", "Bob", "Zoë", "  "] * 5):
        store.add_agent_answer(f"c{n:02d}", "let me look", agent=agent)
    listed_steps, holders = steps(store, store.holders)
    one_pass, _ = steps(store, lambda: store.db.execute(f"SELECT agent FROM ({store_module._HANDED_OFF})").fetchall())
    assert holders == [" ana", "Bob", "Zoë"]  # the first spelling in code-point order, by name as people read it
    assert listed_steps < one_pass * 1.5
    store.close()


def test_the_inbox_shows_the_latest_message_as_the_customer_wrote_it(tmp_path: Path) -> None:
    """Full-width punctuation and digits are flattened for the model only; agents see what the transcript shows."""
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("zh", "web", None, "我要退款!订单号123?", "我要退款！订单号１２３？", "好的", "get_refund",
                                0.9, [("get_refund", 0.9)], "intent", "v0001"))
    store.log_exchange(Exchange("en", "web", None, "plain", None, "Sorry?", None, 0.1, [], "fallback", "v0001"))
    listed, total, _ = store.inbox("open", 10)
    latest = {c["conversation_id"]: c["last_message"] for c in listed}
    assert total == 2 and latest == {"zh": "我要退款！订单号１２３？", "en": "plain"}
    shown = store.transcript("zh")
    assert shown is not None and shown["turns"][0]["text"] == latest["zh"]  # the same in both views
    assert store.add_labels([], "oos") == []
    store.close()
    kept = Store(tmp_path / "raw.db", keep_raw=True)  # the unredacted copy is the shop's record, not for display
    kept.log_exchange(Exchange("c1", "web", None, "call me on 13812345678", None, "ok", None, 0.2, [], "fallback", "v1"))
    assert [c["last_message"] for c in kept.inbox("open", 10)[0]] == ["call me on [PHONE]"]
    kept.close()


def test_the_inbox_finds_a_conversation_past_its_first_page_by_what_it_holds(tmp_path: Path) -> None:
    """The agents saw the first page of conversations alone (the console's 200): an older customer could not be found.
    A search finds them by conversation id, customer, verified customer or what they wrote (as agents read it: not the
    unredacted copy), in any letter case, and the pages after the first are read with an offset."""
    store = Store(tmp_path / "dialogues.db")
    for n in range(5):
        user_turn(store, f"web-{n}", f"question {n}")
    store.log_exchange(Exchange("zh", "web", "Customer-77", "我的订单AB12还没到", "我的订单ＡＢ12还没到", "好的", None,
                                0.1, [], "fallback", "v1"))
    store.set_status("web-1", "handed_off", "requested")
    store.set_status("web-2", "handed_off", "requested")

    def found(status: str, search: str, limit: int = 10, offset: int = 0) -> tuple[list[str], int, int]:
        listed, total, waiting = store.inbox(status, limit, search=search, offset=offset)
        return [c["conversation_id"] for c in listed], total, waiting

    assert found("open", "CUSTOMER-7") == found("open", "订单ａｂ") == found("open", "ab12") == (["zh"], 1, 0)
    assert found("open", "QUESTION 4") == (["web-4"], 1, 0)
    assert found("open", "") == (["zh", "web-4", "web-3", "web-0"], 4, 0)
    assert found("open", "", limit=2, offset=2) == (["web-3", "web-0"], 4, 0)
    assert found("open", "", limit=2, offset=4) == ([], 4, 0)
    # of the waiting customers, those found; the waiting count still counts them all
    assert found("handed_off", "WEB-2") == (["web-2"], 1, 2)
    assert found("handed_off", "", limit=1, offset=1) == (["web-2"], 2, 2)
    assert found("handed_off", "nobody") == ([], 0, 2)
    store.close()
    kept = Store(tmp_path / "raw.db", keep_raw=True)
    kept.log_exchange(Exchange("c1", "web", None, "call me on 13812345678", None, "ok", None, 0.2, [], "fallback", "v1"))
    assert kept.inbox("open", 10, search="13812345678")[0] == [] and kept.inbox("open", 10, search="[phone]")[1] == 1
    kept.close()


def test_an_agents_reply_makes_its_conversation_the_latest_active(tmp_path: Path) -> None:
    """The open conversations are listed most recently active first; an agent's reply did not count."""
    store = Store(tmp_path / "dialogues.db")
    for cid in ("first", "second"):
        store.log_exchange(Exchange(cid, "web", None, "a person please", None, "Connecting you.", None, 0.2, [],
                                    "handoff", "v0001"))
    assert [c["conversation_id"] for c in store.inbox("open", 10)[0]] == ["second", "first"]
    before = store.conversation("first")["updated"]
    store.add_agent_answer("first", "Hello, I'm Ann from support.", agent="Ann")
    assert store.conversation("first")["updated"] > before
    assert [c["conversation_id"] for c in store.inbox("open", 10)[0]] == ["first", "second"]
    store.close()


def test_an_agent_answer_comes_with_all_its_customer_wrote_before_it(tmp_path: Path) -> None:
    """What tells an answer about one customer's order: the number may come after the question it is paired with."""
    store = Store(tmp_path / "dialogues.db")
    for text in ("where is my order?", "55667"):
        store.log_exchange(Exchange("c1", "web", None, text, None, "Sorry?", None, 0.1, [], "fallback", "v0001"))
    store.add_agent_answer("c1", "Order 55667 left our warehouse today.")
    store.log_exchange(Exchange("c1", "web", None, "and order 77881?", None, None, None, 0.1, [], "silent", "v0001"))
    [candidate] = store.answer_candidates()
    assert candidate["question"] == "where is my order?" and candidate["asked"] == "where is my order? 55667"
    store.close()


def test_a_reader_reads_beside_the_writer_and_writes_nothing(tmp_path: Path) -> None:
    """The admin API's long reads go through a read-only second connection: one read transaction sees the store
    as it was when it began, while the writer goes on committing; the next sees those commits."""
    store = Store(tmp_path / "dialogues.db")
    store.add_message("a", "user", "hello")
    reader = store.reader()
    with reader.snapshot():
        assert reader.count("turns") == 1
        store.add_message("a", "user", "again")  # not held up by the read
        assert reader.count("turns") == 1
    assert reader.count("turns") == 2
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.db.execute("DELETE FROM turns")
    reader.close()
    store.close()


def test_the_log_is_cut_back_once_the_reads_that_held_it_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an agents' console asking for the day's figures beside a busy server, dialogues.db-wal grew to
    150 MB and stayed so: SQLite reuses the log from its start, but keeps the file at its peak."""
    import dialogues.store

    monkeypatch.setattr(dialogues.store, "WAL_SIZE_LIMIT", 64 << 10, raising=False)
    store = Store(tmp_path / "dialogues.db")
    reader = store.reader()
    wal = tmp_path / "dialogues.db-wal"
    with reader.snapshot():  # a long read: the log cannot be checkpointed past it
        reader.db.execute("SELECT count(*) FROM turns").fetchone()
        for n in range(300):
            user_turn(store, f"c{n}", "where is my order? " * 250)
        peak = wal.stat().st_size
        assert peak > 5 << 20  # past SQLite's checkpoint mark (1,000 pages)
    for n in range(50):  # the read done, the next writes checkpoint and start the log afresh
        user_turn(store, f"d{n}", "and my refund?")
    assert wal.stat().st_size < peak / 2  # cut back to the limit, and grown by those writes alone
    reader.close()
    store.close()


def test_a_store_that_could_not_write_is_failing_until_a_write_reaches_the_disk(tmp_path: Path) -> None:
    """A commit that wrote nothing (a status set again) passes on a full disk, and said the store was well."""
    import sqlite3

    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "c1", "where is my order?")
    store.db.execute("VACUUM")  # no page a migration freed (a table rebuilt) left to write in
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
    with pytest.raises(sqlite3.OperationalError, match="full"):
        user_turn(store, "c2", "and my refund? " * 500)
    assert store.failing == "database or disk is full"
    store.set_status("c1", "open", None, "web")  # as it was: a commit of nothing
    assert store.failing == "database or disk is full"
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.probe()  # a row the size of a long message does not fit either
    store.db.execute(f"PRAGMA max_page_count={pages + 1000}")  # room again
    store.probe()
    assert store.failing is None
    store.close()


def test_bot_backup_copies_what_the_wal_holds_while_the_store_is_in_use(tmp_path: Path, root: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Copying dialogues.db of a serving bot gave an empty store (its turns were still in dialogues.db-wal),
    which deskbot took as a new one without a word."""
    serving = Store(root / "dialogues.db")
    for n in range(3):
        user_turn(serving, f"c{n}", "where is my order")
    plain_copy = tmp_path / "copied.db"
    plain_copy.write_bytes((root / "dialogues.db").read_bytes())  # what `cp dialogues.db` takes: no turn yet
    (root / "dialogues.db").chmod(0o600)
    backed = CliRunner().invoke(cli, ["backup", str(root), f"{tmp_path / 'backups'}/"])  # a folder, made
    assert backed.exit_code == 0, backed.output
    [copy] = (tmp_path / "backups").iterdir()
    assert copy.stat().st_mode & 0o777 == 0o600  # as private as the store
    assert backed.output.startswith(f"{copy}: ")
    assert not Path(f"{copy}-wal").exists()  # one file, whole
    restored = Store(copy)
    assert restored.db.execute("SELECT count(*) FROM turns WHERE role = 'user'").fetchone() == (3,)
    restored.close()
    with caplog.at_level("WARNING"):
        Store(plain_copy).close()
    assert "holds no conversations, not even their tables: a copy made without its -wal file?" in caplog.text
    own = CliRunner().invoke(cli, ["backup", str(root), str(root / "dialogues.db")])
    assert own.exit_code == 1 and "one of the bot's own files" in own.output
    elsewhere = tmp_path / "someone-elses.db"  # a link planted where the copy was first written, by its name
    elsewhere.touch()
    (tmp_path / "backups" / ".nightly.db.partial").symlink_to(elsewhere)
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "backups" / "nightly.db")]).exit_code == 0
    assert elsewhere.stat().st_size == 0 and not (tmp_path / "backups" / "nightly.db").is_symlink()
    serving.close()


def test_bot_backup_of_a_store_written_while_it_copies_ends_with_the_store_as_it_began(
        tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copied in steps (so that SIGTERM is seen between them), a copy started over at each turn the server logged
    between two steps, and a busy store's never ended."""
    serving = Store(root / "dialogues.db")
    user_turn(serving, "c1", "where is my order")
    steps: list[int] = []

    def logged_meanwhile(status: int, remaining: int, total: int) -> None:
        steps.append(remaining)
        assert len(steps) < 500, "the copy keeps starting over"
        user_turn(serving, f"later{len(steps)}", "and my refund?")

    monkeypatch.setattr(store_module, "BACKUP_STEP_PAGES", 2)
    monkeypatch.setattr(store_module, "_between_steps", logged_meanwhile)
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "nightly.db")]).exit_code == 0
    assert len(steps) > 3
    copied = sqlite3.connect(tmp_path / "nightly.db")
    assert copied.execute("SELECT conversation_id FROM turns WHERE role = 'user'").fetchall() == [("c1",)]
    assert serving.db.execute("SELECT count(*) FROM turns WHERE role = 'user'").fetchone() == (len(steps) + 1,)
    serving.close()


def test_bot_backup_flushes_the_folder_it_writes_in(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's bytes reached the disk, and its name in the folder did not: a power cut soon after a backup, the
    moment one is needed, could take the night's copy with it."""
    Store(root / "dialogues.db").close()
    flushed: list[int] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        fsync(fd)
        flushed.append(os.fstat(fd).st_ino)

    monkeypatch.setattr(os, "fsync", recorded)
    (tmp_path / "backups").mkdir()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "backups" / "nightly.db")]).exit_code == 0
    assert (tmp_path / "backups").stat().st_ino in flushed


COMMAND_APART = """
import os, resource, signal, sys, time
from pathlib import Path
from bot.cli import cli
{before}
cli({args!r})
"""


def command_apart(args: list[str], before: str = "") -> subprocess.Popen[str]:
    """`bot ARGS` in a process of its own, running ``before`` first."""
    script = COMMAND_APART.format(before=before, args=args)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def bot_with_a_large_store(tmp_path: Path) -> tuple[Path, Path]:
    """A starter bot whose store is past what SQLite caches (it journals and writes a copy in several steps), and
    an empty folder for its backups."""
    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "where is my order")
    store.db.execute("CREATE TABLE filler (x BLOB)")
    store.db.execute("INSERT INTO filler VALUES (randomblob(3000000))")
    store.close()
    backups = tmp_path / "backups"
    backups.mkdir()
    return root, backups


def back_up_apart(root: Path, dest: Path, before: str = "") -> subprocess.Popen[str]:
    """`bot backup ROOT DEST` in a process of its own, running ``before`` first."""
    return command_apart(["backup", str(root), str(dest)], before)


def held_between_steps(held: Path) -> str:
    """What makes a backup of a store over 600 pages (2.4 MiB) make ``held`` once it has copied 600 of them, and
    wait there (for a signal)."""
    return f"""
import dialogues.store
def held(*args):
    Path({str(held)!r}).touch()
    time.sleep(60)
dialogues.store.BACKUP_STEP_PAGES = 600
dialogues.store._between_steps = held
"""


def wait_until_held(backing_up: subprocess.Popen[str], held: Path) -> None:
    deadline = time.monotonic() + 60
    while not held.exists() and backing_up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.exists(), backing_up.communicate()[0]


def terminated_once_held(backing_up: subprocess.Popen[str], held: Path) -> None:
    """SIGTERM to ``backing_up`` once it has made ``held``, which it must then end on, as an error does."""
    wait_until_held(backing_up, held)
    backing_up.terminate()
    assert backing_up.wait(30) == 143
    held.unlink()


def test_bot_restore_stopped_by_sigterm_leaves_the_store_as_it_was_and_no_copy_begun(tmp_path: Path) -> None:
    """SIGTERM (a `timeout` around it) killed a restore midway and left its hidden copy, up to the store's size."""
    root, backups = bot_with_a_large_store(tmp_path)
    assert CliRunner().invoke(cli, ["backup", str(root), str(backups / "copy.db")]).exit_code == 0
    before = sorted(p.name for p in root.iterdir())
    held = backups / "held"
    stopped = command_apart(["restore", str(root), str(backups / "copy.db")], held_between_steps(held))
    terminated_once_held(stopped, held)
    assert sorted(p.name for p in root.iterdir()) == before


class _NoShmRoom(sqlite3.Connection):
    """A connection that fails its reads as SQLite does when it cannot create the file's -shm (a full disk)."""

    def execute(self, *args: Any) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_stopped_servers_store_is_backed_up_and_counted_on_a_full_disk(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite reads a WAL store through its -shm file, which it must create, and on a full disk `bot backup` and
    `bot stats` of a stopped server failed, though nothing they read waited in a log; the log a killed server left
    is read without one, and only a store another process has open is refused, said as what the disk lacks."""
    root, killed = tmp_path / "bot", tmp_path / "killed"
    for folder in (root, killed):
        assert CliRunner().invoke(cli, ["init", str(folder)]).exit_code == 0
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "where is my parcel")
    for name in ("dialogues.db", "dialogues.db-wal"):  # what a server killed now leaves, its -shm file aside
        (killed / name).write_bytes((root / name).read_bytes())
    store.close()
    connect = sqlite3.connect
    monkeypatch.setattr("dialogues.store.sqlite3.connect", lambda name, **kwargs: connect(
        name, **kwargs, **({"factory": _NoShmRoom} if "mode=ro" in str(name) and "immutable" not in str(name) else {})))
    monkeypatch.setattr("dialogues.disk.shutil.disk_usage", lambda path: SimpleNamespace(free=0))
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "copy.db")]).exit_code == 0
    assert connect(tmp_path / "copy.db").execute("SELECT count(*) FROM turns").fetchone() == (2,)
    counted = CliRunner().invoke(cli, ["stats", str(root), "--json"])
    assert counted.exit_code == 0 and json.loads(counted.stdout)["conversations"] == 1
    assert CliRunner().invoke(cli, ["backup", str(killed), str(tmp_path / "killed.db")]).exit_code == 0
    assert connect(tmp_path / "killed.db").execute("SELECT count(*) FROM turns").fetchone() == (2,)
    assert not (killed / "dialogues.db-shm").exists()
    serving = Store(killed / "dialogues.db")  # a server has it open again, whose lock is not taken from it
    user_turn(serving, "c2", "and my refund?")
    for command in (["backup", str(killed), str(tmp_path / "again.db")], ["stats", str(killed)]):
        refused = CliRunner().invoke(cli, command)
        assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
        assert "cannot read it (disk I/O error): SQLite must create dialogues.db-shm beside it" in refused.output
    serving.close()
    assert connect(killed / "dialogues.db").execute("SELECT count(*) FROM turns").fetchone() == (4,)  # nothing lost


def test_bot_backup_stopped_or_failing_midway_leaves_nothing_behind(tmp_path: Path) -> None:
    """SIGTERM (a cron job's timeout) killed it with its partial copy left beside the destination, and a full
    disk left SQLite's journal of the copy there: hidden files that piled up in the backups' folder."""
    root, backups = bot_with_a_large_store(tmp_path)
    # Held just after its partial copy is made, until SIGTERM comes.
    held = backups / "held"
    stopped = back_up_apart(root, backups / "nightly.db", f"""
real = os.fchmod
def held(*args):
    real(*args)
    Path({str(held)!r}).touch()
    time.sleep(60)
os.fchmod = held
""")
    terminated_once_held(stopped, held)
    assert sorted(p.name for p in backups.iterdir()) == []
    # Held between two steps of a copy larger than one: SIGTERM waited for the whole copy, a large store's minutes.
    stopped = back_up_apart(root, backups / "nightly.db", held_between_steps(held))
    terminated_once_held(stopped, held)
    assert sorted(p.name for p in backups.iterdir()) == []
    # A disk with room for 100 KiB of the copy (a file may grow no further), and not for the rest of it.
    full = back_up_apart(root, backups / "nightly.db", "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                                                        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))")
    said = full.communicate(timeout=60)[0]
    assert full.returncode == 1 and f"cannot back up to {backups / 'nightly.db'}:" in said, said
    assert sorted(p.name for p in backups.iterdir()) == []


def test_bot_backup_removes_the_partial_copies_killed_backups_left_and_no_other_file(tmp_path: Path) -> None:
    """SIGKILL (a timeout's last resort, the OOM killer) left a hidden partial copy of the store and its journal
    beside the destination for good, and each night's killed backup added another."""
    root, backups = bot_with_a_large_store(tmp_path)
    killed = back_up_apart(root, backups / "nightly.db", held_between_steps(backups / "killed"))
    wait_until_held(killed, backups / "killed")
    killed.kill()
    killed.wait(30)
    [killed_copy] = backups.glob(".nightly.db.*.partial")
    assert killed_copy.stat().st_size and Path(f"{killed_copy}-journal").exists()
    writing = back_up_apart(root, backups / "nightly.db", held_between_steps(backups / "writing"))
    wait_until_held(writing, backups / "writing")
    just_made = backups / ".nightly.db.justmade.partial"  # by a backup about to lock it
    just_made.touch()
    empty = backups / ".nightly.db.empty.partial"  # a backup killed as soon as it made it
    empty.touch()
    os.utime(empty, (time.time() - 120, time.time() - 120))
    weekly = backups / ".weekly.db.abc.partial"  # another destination's
    weekly.write_bytes(b"SQLite format 3")
    elsewhere = tmp_path / "someone-elses.db"
    elsewhere.write_bytes(b"theirs")
    (backups / ".nightly.db.link.partial").symlink_to(elsewhere)
    kept = {p.name for p in backups.iterdir()} - {killed_copy.name, f"{killed_copy.name}-journal", empty.name}
    assert CliRunner().invoke(cli, ["backup", str(root), str(backups / "nightly.db")]).exit_code == 0
    assert {p.name for p in backups.iterdir()} == kept | {"nightly.db"}
    assert elsewhere.read_bytes() == b"theirs"
    writing.terminate()
    assert writing.wait(30) == 143  # its own copy was left to it, and removed by it
    assert not any(backups.glob(".nightly.db.*.partial-journal"))


def test_bot_backup_to_a_folder_removes_the_partial_copies_killed_backups_to_it_left(tmp_path: Path, root: Path) -> None:
    """Each of a folder's copies has a name of its own (its date), so the partial copy of a night's backup killed
    outright was never the next night's to remove."""
    Store(root / "dialogues.db").close()
    backups = tmp_path / "backups"
    backups.mkdir()
    killed = backups / ".dialogues-20260101-020000.db.x1y2z3.partial"
    killed.write_bytes(b"SQLite format 3")
    Path(f"{killed}-journal").write_bytes(b"journal")
    weekly = backups / ".weekly.db.abc.partial"  # another destination's
    weekly.write_bytes(b"SQLite format 3")
    assert CliRunner().invoke(cli, ["backup", str(root), f"{backups}/"]).exit_code == 0
    assert sorted(p.name for p in backups.iterdir() if p.name.startswith(".")) == [weekly.name]


def test_bot_backup_keep_deletes_a_folders_older_dated_copies_once_one_is_made(tmp_path: Path, root: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A nightly `bot backup DIR /backups/` kept every night's copy until the disk was full."""
    Store(root / "dialogues.db").close()
    backups = tmp_path / "backups"
    backups.mkdir()
    nights = [backups / f"dialogues-2026120{day}-020000.db" for day in range(1, 5)]
    for night in nights:
        night.write_bytes(b"SQLite format 3")
    (backups / "weekly.db").write_bytes(b"SQLite format 3")  # not one of bot backup's dated copies: left alone

    def unwritable(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as failing:  # a night whose copy fails deletes none of the earlier ones
        failing.setattr(Store, "backup", unwritable)
        assert CliRunner().invoke(cli, ["backup", str(root), f"{backups}/", "--keep", "2"]).exit_code == 1
    assert all(night.exists() for night in nights)

    result = CliRunner().invoke(cli, ["backup", str(root), f"{backups}/", "--keep", "2"])
    assert result.exit_code == 0, result.output
    made = [p for p in backups.iterdir() if p.name.startswith("dialogues-") and p not in nights]
    assert sorted(p.name for p in backups.iterdir()) == sorted([nights[-1].name, made[0].name, "weekly.db"])
    assert f"Deleted {nights[2].name}, {nights[1].name}, {nights[0].name}" in result.output
    refused = CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "copy.db"), "--keep", "2"])
    assert refused.exit_code == 1 and "give a folder" in refused.output and not (tmp_path / "copy.db").exists()


def test_bot_backup_backs_up_when_it_cannot_remove_a_partial_copy_left_there(
        tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Another user's partial copy in a shared folder (sticky, as /tmp is), which this user may not delete."""
    Store(root / "dialogues.db").close()
    theirs = tmp_path / ".nightly.db.theirs.partial"
    theirs.write_bytes(b"SQLite format 3")
    unlink = Path.unlink

    def not_ours(path: Path, missing_ok: bool = False) -> None:
        if path == theirs:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", not_ours)
    with caplog.at_level("WARNING"):
        backed = CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "nightly.db")])
    assert backed.exit_code == 0, backed.output
    assert sqlite3.connect(tmp_path / "nightly.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "cannot remove the partial copies killed backups left beside" in caplog.text
    assert "Operation not permitted" in caplog.text


def test_a_store_is_kept_as_it_was_before_a_migration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An upgrade migrated the store with no copy and no word, and the deskbot before it then refused it."""
    path = tmp_path / "dialogues.db"
    store_of_the_last_deskbot(path)
    with caplog.at_level("WARNING"):
        Store(path).close()
    kept = tmp_path / f"dialogues.db.schema{len(MIGRATIONS) - 1}.bak"
    assert f"is migrated from schema {len(MIGRATIONS) - 1} to {len(MIGRATIONS)}; the store as it was is kept in {kept}" \
        in caplog.text
    assert sqlite3.connect(kept).execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    Store(path).close()  # migrated already: no second copy, no word
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".bak") == [kept.name]


def test_a_server_refuses_a_newer_deskbots_store_before_its_model_loads_and_names_the_way_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deskbot rolled back after an upgrade migrated the store loaded its model (minutes for a large one) before
    refusing it, and said "upgrade deskbot" alone, not which copy it could serve, nor the command that puts it back."""
    from bot.server import create_app

    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    path = root / "dialogues.db"
    store = Store(path)
    store.backup(root / f"dialogues.db.schema{len(MIGRATIONS)}.bak")  # as the newer deskbot kept it before migrating
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    store.close()
    monkeypatch.setattr("bot.server.load_at_start", lambda *_: pytest.fail("the model was loaded"))
    with pytest.raises(StoreError) as refused:
        create_app(root)
    assert str(refused.value).endswith(
        f": upgrade deskbot; or, to serve this deskbot again, `bot restore {root} {root}/dialogues.db.schema"
        f"{len(MIGRATIONS)}.bak` puts back the store as it was before that upgrade (without the conversations since)")
    data = tmp_path / "data"  # a store kept apart from its bot folder: the command names the bot folder
    data.mkdir()
    for kept in root.glob("dialogues.db*"):
        kept.rename(data / kept.name)
    monkeypatch.setenv("DESKBOT_STORE_DIR", str(data))
    with pytest.raises(StoreError) as refused:
        create_app(root)
    assert f"`bot restore {root} {data}/dialogues.db.schema{len(MIGRATIONS)}.bak` puts back" in str(refused.value)


@pytest.mark.parametrize("command", [["stats"], ["export"], ["purge", "--before", "2025-12-01"]])
def test_a_command_opening_a_newer_deskbots_store_kept_elsewhere_names_the_bot_folder_to_restore_into(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """A store kept apart from its bot folder (DESKBOT_STORE_DIR): `bot stats`, `bot export`, `bot purge`… named
    the store's folder in the `bot restore` they advised, which is no bot folder and which `bot restore` refuses."""
    root, data = tmp_path / "bot", tmp_path / "data"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    store_in_store_dir_of_a_newer_deskbot(data, monkeypatch)
    refused = CliRunner().invoke(cli, [command[0], str(root), *command[1:]])
    assert refused.exit_code == 1 and "was written by a newer deskbot" in refused.output, refused.output
    assert f"`bot restore {root} {data}/dialogues.db.schema{len(MIGRATIONS)}.bak` puts back" in refused.output


def test_the_copy_a_start_killed_while_keeping_the_store_before_its_migration_left_is_removed(tmp_path: Path) -> None:
    """A server killed while it copied an older store before migrating it (a start timeout, on a large store) left
    the partial copy, up to the store's size, and each such start added another, under a name of its own."""
    path = tmp_path / "dialogues.db"
    store_of_the_last_deskbot(path)
    killed = tmp_path / f"..dialogues.db.{'a' * 32}.bak.x1y2z3.partial"
    killed.write_bytes(b"half a copy")
    Store(path).close()
    assert not killed.exists()
    assert (tmp_path / f"dialogues.db.schema{len(MIGRATIONS) - 1}.bak").exists()


def test_a_store_that_cannot_be_copied_before_its_migration_is_not_migrated(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dialogues.db"
    store_of_the_last_deskbot(path)

    def full(self: Store, dest: Path, named: str | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "backup", full)
    with pytest.raises(StoreError, match="cannot keep a copy of it before migrating it to this deskbot's schema "
                                         r"\(No space left on device\); free space for one beside it"):
        Store(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)


def test_bot_backup_copies_an_older_deskbots_store_as_it_is_and_bot_purge_names_the_upgrade_copy(
        tmp_path: Path, root: Path) -> None:
    """A backup taken before an upgrade migrated the live store first, under the server still running it, and the
    copy was of a schema the deskbot before refused; and a purge left the conversation in the upgrade's copy."""
    store_of_the_last_deskbot(root / "dialogues.db")
    with contextlib.closing(sqlite3.connect(root / "dialogues.db")) as old, old:  # c1 began under the last deskbot
        old.execute("INSERT INTO conversations (id, channel, created) VALUES ('c1', 'web', 1)")
        old.execute("INSERT INTO turns (conversation_id, role, text, created) VALUES ('c1', 'user', 'my address is "
                    "1 Main St', 1)")
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "before.db")]).exit_code == 0
    for copy in (root / "dialogues.db", tmp_path / "before.db"):
        assert sqlite3.connect(copy).execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,), copy
    store = Store(root / "dialogues.db")  # the upgrade: kept as it was, then migrated
    user_turn(store, "c1", "and my phone is 555 0100")
    user_turn(store, "c2", "my address is 2 Main St")
    store.close()
    kept = root / f"dialogues.db.schema{len(MIGRATIONS) - 1}.bak"
    later = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c2"])
    assert later.exit_code == 0 and ".bak" not in later.output  # begun after the copy: not in it
    purged = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])
    assert purged.exit_code == 0, purged.output
    assert f"{kept.name}, kept at an upgrade, may hold it too" in purged.stderr


def test_bot_purge_names_the_store_a_restore_put_aside_since_the_conversation_began(tmp_path: Path, root: Path) -> None:
    """`bot restore` keeps the store it replaces beside it (dialogues.db.replaced-STAMP), every conversation in it:
    a purge named the copies an upgrade kept, and said nothing of this one, which held the customer still."""
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "my address is 1 Main St")
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "before.db")]).exit_code == 0
    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "before.db")])
    assert restored.exit_code == 0, restored.output
    [aside] = [p.name for p in root.glob("dialogues.db.replaced-*") if not p.name.endswith(("-wal", "-shm"))]
    store = Store(root / "dialogues.db")
    user_turn(store, "c2", "my address is 2 Main St")  # begun after the store was put aside: not in it
    store.close()
    later = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c2"])
    assert later.exit_code == 0 and "replaced" not in later.output, later.output
    purged = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])
    assert purged.exit_code == 0, purged.output
    assert f"{aside}, the store `bot restore` replaced, may hold it too" in purged.stderr


def test_bot_purge_names_a_copy_of_the_store_it_cannot_read(tmp_path: Path, root: Path) -> None:
    """A copy that is not a store deskbot can read (damaged, cut short) may hold any conversation: a purge names it
    rather than say nothing of it."""
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "my address is 1 Main St")
    store.close()
    (root / "dialogues.db.replaced-20260101-000000").write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    purged = CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"])
    assert purged.exit_code == 0, purged.output
    assert "dialogues.db.replaced-20260101-000000, the store `bot restore` replaced, may hold it too" in purged.stderr


def test_a_restored_copy_is_purged_again_of_the_conversations_purged_since_it_was_made(tmp_path: Path, root: Path) -> None:
    """A customer's erasure was undone by `bot restore`: a copy made before `bot purge --user` put every conversation
    of theirs back. One their customer began anew with the same id after the purge (a WeCom employee's) stays."""
    store = Store(root / "dialogues.db")
    user_turn(store, "wecom:ww1:ann", "my address is 1 Main St")
    user_turn(store, "c2", "where is my parcel?")
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "before.db")]).exit_code == 0
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "wecom:ww1:ann"]).exit_code == 0
    ledger = (root / "dialogues.db.purged").read_text()
    assert "ann" not in ledger and (root / "dialogues.db.purged").stat().st_mode & 0o777 == 0o600  # ids as digests
    # keyed: a guessed id hashed alone is not found in the ledger; the key is the store owner's alone, made once
    assert hashlib.sha256(b"wecom:ww1:ann").hexdigest() not in ledger
    key = (root / "dialogues.db.purged.key").read_bytes()
    assert len(key) == 32 and (root / "dialogues.db.purged.key").stat().st_mode & 0o777 == 0o600
    assert hmac.new(key, b"wecom:ww1:ann", hashlib.sha256).hexdigest() in ledger

    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "before.db")])
    assert restored.exit_code == 0, restored.output
    assert "Purged again 1 conversation purged before, back in" in restored.stderr
    store = Store(root / "dialogues.db")
    assert [row[0] for row in store.db.execute("SELECT id FROM conversations")] == ["c2"]
    user_turn(store, "wecom:ww1:ann", "hello again")  # begun anew since the purge
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "after.db")]).exit_code == 0
    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "after.db")])
    assert restored.exit_code == 0, restored.output
    assert "No conversation purged before is back in" in restored.stderr
    store = Store(root / "dialogues.db")
    assert sorted(row[0] for row in store.db.execute("SELECT id FROM conversations")) == ["c2", "wecom:ww1:ann"]
    store.close()

    # An older deskbot's copy is left for it to serve, said; `bot purge --again` purges it with this deskbot.
    store_of_the_last_deskbot(tmp_path / "old.db")
    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "old.db")])
    assert restored.exit_code == 0, restored.output
    assert "--again` with this deskbot purges them again" in restored.stderr
    again = CliRunner().invoke(cli, ["purge", str(root), "--again"])
    assert again.exit_code == 0 and "No conversation purged before is back in" in again.stderr, again.output
    store = Store(root / "dialogues.db")
    user_turn(store, "c3", "my address is 2 Main St")
    store.close()
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c3"]).exit_code == 0
    assert (root / "dialogues.db.purged.key").read_bytes() == key  # a later purge keys its line with the same key


def test_bot_backup_copies_a_newer_deskbots_store_as_it_is_and_says_whose_copy_it_is(tmp_path: Path, root: Path) -> None:
    """A server upgraded alone, the cron job's `bot backup` of the deskbot before: every night's backup was refused
    ("upgrade deskbot"), and the store, served on, went without a copy. A copy reads nothing of the schema."""
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "where is my parcel?")
    store.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")  # as the newer deskbot's server left it
    store.close()

    made = CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "backups") + "/"])

    assert made.exit_code == 0, made.output
    [copy] = (tmp_path / "backups").iterdir()
    assert sqlite3.connect(copy).execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 1,)
    assert sqlite3.connect(copy).execute("SELECT id FROM conversations").fetchall() == [("c1",)]
    assert (f"note: {root / 'dialogues.db'} was written by a newer deskbot (schema {len(MIGRATIONS) + 1}; this one "
            f"reads up to {len(MIGRATIONS)}): copied as it is, a copy that deskbot's `bot restore` puts back"
            ) in " ".join(made.stderr.split())
    refused = CliRunner().invoke(cli, ["stats", str(root)])  # reading it is still refused: its schema is unknown
    assert refused.exit_code == 1 and "was written by a newer deskbot" in refused.output


def test_bot_backup_of_a_damaged_store_keeps_no_copy_and_deletes_none(tmp_path: Path) -> None:
    """The copy of a damaged store was made page by page, the damaged ones too, and said nothing: a nightly
    `bot backup --keep` replaced the good copies from before the damage with damaged ones, one a night."""
    root, backups = tmp_path / "bot", tmp_path / "backups"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    store = Store(root / "dialogues.db")
    for n in range(40):
        user_turn(store, f"c{n}", f"where is my parcel {n}? " * 20)
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), f"{backups}/"]).exit_code == 0
    good = sorted(backups.iterdir())
    damage(root / "dialogues.db", (root / "dialogues.db").stat().st_size // 4096 - 4)  # the latest turns' pages
    time.sleep(1)  # a dated copy of another second
    backed = CliRunner().invoke(cli, ["backup", str(root), f"{backups}/", "--keep", "1"])
    assert backed.exit_code == 1
    assert "dialogues.db is damaged (database disk image is malformed): the copy is not kept, nor any older one " \
           "deleted" in backed.output
    assert sorted(backups.iterdir()) == good  # nothing new, hidden or not, and the good copy kept


def test_a_store_whose_schema_is_damaged_is_said_to_be_damaged_not_another_programs(tmp_path: Path) -> None:
    """A store with its schema's pages spoilt was refused as "not a conversation store", as if the path named another
    program's file, and nothing said what to do."""
    path = tmp_path / "dialogues.db"
    Store(path).close()
    damage(path, 1)
    for read_only in (False, True):
        with pytest.raises(StoreError, match=re.escape(f"{path} is damaged (database disk image is malformed). Stop "
                                                       "the bot and put the latest good `bot backup` copy back")):
            Store(path, read_only=read_only)


def test_a_command_that_writes_does_not_migrate_an_older_deskbots_store_while_its_server_runs(tmp_path: Path) -> None:
    """`bot purge` (or `bot chat`) of a newer deskbot (a cron job's, after an upgrade of the command line alone) migrated the store
    under the older `bot serve` still running on it, which went on writing to a schema it did not know. Its refusal
    said "upgrade that server first", not the command that does."""
    from filelock import FileLock

    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    store_of_the_last_deskbot(root / "dialogues.db")
    with sqlite3.connect(root / "dialogues.db") as older_store:
        older_store.execute("INSERT INTO conversations (id, channel, created, updated) VALUES ('c1', 'web', 0, 0)")
    servers = root / ".dialogues.db.servers"
    servers.mkdir()
    (servers / f"{'a' * 32}.lock").touch()  # a server killed long ago: gone
    older = FileLock(servers / f"{'b' * 32}.lock", thread_local=False)
    older.acquire()  # as the older server holds its own while it runs
    purge = ["purge", str(root), "--conversation", "c1"]
    for command in (purge, ["chat", str(root)]):  # bot chat before its model loads
        refused = CliRunner().invoke(cli, command, input="hello\n")
        assert refused.exit_code == 1
        assert (f"is at migration {len(MIGRATIONS) - 1}, this deskbot needs {len(MIGRATIONS)}, and an older deskbot's "
                f"`bot serve` is running on it: stop it and start this deskbot's, `bot serve {root}`, which migrates "
                "the store as it starts (keeping a copy as it was), then run this again") in " ".join(
                    refused.output.split()), refused.output
    assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    older.release()  # stopped
    assert CliRunner().invoke(cli, purge).exit_code == 0
    assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)


def test_bot_restore_puts_a_copy_back_without_the_log_a_killed_server_left_and_keeps_the_store_it_replaces(
        tmp_path: Path) -> None:
    """A copy put back by hand as the README said, with the killed server's dialogues.db-wal left beside it, was
    overlaid by that log as it opened: the restore undone without a word, or the store damaged."""
    from filelock import FileLock

    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    db = root / "dialogues.db"
    store = Store(db)
    user_turn(store, "c1", "where is my parcel?")
    store.backup(tmp_path / "copy.db")
    store.close()
    killed = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); from dialogues.store import Exchange, Store\n"
              f"store = Store({str(db)!r}); store.db.execute('PRAGMA wal_autocheckpoint=0')\n"
              "store.log_exchange(Exchange('c2', 'web', None, 'and my refund?', None, 'Sorry?', 'track_order', 0.2, "
              "[('track_order', 0.2)], 'fallback', 'v0001')); os._exit(9)")
    subprocess.run([sys.executable, "-c", killed], check=False)
    assert Path(f"{db}-wal").stat().st_size > 0  # the killed server's log
    servers = root / ".dialogues.db.servers"
    servers.mkdir()
    running = FileLock(servers / f"{'b' * 32}.lock", thread_local=False)
    running.acquire()
    refused = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "copy.db")])
    assert refused.exit_code == 1 and "a `bot serve` is running on it: stop it, then restore" in refused.output
    running.release()
    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "copy.db")])
    assert restored.exit_code == 0, restored.output
    [aside] = [p for p in root.iterdir() if re.fullmatch(r"dialogues\.db\.replaced-[0-9-]+", p.name)]
    assert f"the store it replaced is kept as {aside.name}" in restored.output
    assert Store(db, read_only=True).conversation_ids() == ["c1"]
    assert sorted(Store(aside, read_only=True).conversation_ids()) == ["c1", "c2"]  # its log kept with it
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes((tmp_path / "copy.db").read_bytes())
    damage_table(damaged, "turns")
    refused = CliRunner().invoke(cli, ["restore", str(root), str(damaged)])
    assert refused.exit_code == 1 and f"{damaged} is damaged" in refused.output
    assert "nothing was restored; restore another copy" in refused.output
    assert Store(db, read_only=True).conversation_ids() == ["c1"]


def test_bot_restore_of_a_newer_deskbots_copy_names_no_restore_of_the_copys_neighbour(tmp_path: Path) -> None:
    """A copy of a store a newer deskbot migrated, in a folder where that deskbot's copy from before its upgrade lay
    too (a backup of a whole bot folder), was refused with the way back a store in its bot folder is given:
    `bot restore BACKUPS BACKUPS/dialogues.db.schemaN.bak`, which names the backup folder as the bot's."""
    root, backups = tmp_path / "bot", tmp_path / "backups"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    backups.mkdir()
    store = Store(root / "dialogues.db")
    user_turn(store, "c1", "where is my parcel?")
    store.backup(backups / f"dialogues.db.schema{len(MIGRATIONS)}.bak")
    store.backup(backups / "dialogues.db")
    store.close()
    with sqlite3.connect(backups / "dialogues.db") as newer:
        newer.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")

    refused = CliRunner().invoke(cli, ["restore", str(root), str(backups / "dialogues.db")])

    assert refused.exit_code == 1
    assert "bot restore" not in refused.output
    assert (f"{backups / 'dialogues.db'} is a copy of a store a newer deskbot migrated (schema {len(MIGRATIONS) + 1}; "
            f"this one reads up to {len(MIGRATIONS)}), which this deskbot cannot serve: nothing was restored; restore a "
            "copy taken before that upgrade, or restore this one with the newer deskbot") in " ".join(refused.output.split())
    assert Store(root / "dialogues.db", read_only=True).conversation_ids() == ["c1"]


def test_a_web_only_server_locks_its_file_again_once_its_folder_is_deleted(tmp_path: Path) -> None:
    """A server with no Slack or WeCom channel never locked its file again once a cleaner deleted the servers'
    folder: `bot restore` (and a migration) then took the store it went on writing to for a stopped server's."""
    path = tmp_path / "dialogues.db"
    server = Store(path)
    server.serve()
    server.backup(tmp_path / "copy.db")
    shutil.rmtree(tmp_path / ".dialogues.db.servers")
    assert server.adopt([]) == []  # its next round, with no platform channel to look in
    with pytest.raises(StoreError, match="a `bot serve` is running on it: stop it, then restore"):
        store_module.restore(path, tmp_path / "copy.db")
    server.close()


def test_restore_and_a_migration_see_a_server_whose_lock_folder_was_just_deleted(tmp_path: Path, root: Path) -> None:
    """Until its next round, and for good for an older deskbot's web-only server, a server whose lock folder a
    cleaner deleted was taken for stopped: `bot restore` replaced the store it was writing to, and `bot purge`
    migrated it under the older server."""
    Store(tmp_path / "copy.db").close()
    store_of_the_last_deskbot(root / "dialogues.db")
    servers = root / ".dialogues.db.servers"
    older = ("import sys; from filelock import FileLock; "  # an older deskbot's server, holding its lock until it stops
             f"lock = FileLock({str(servers / ('b' * 32 + '.lock'))!r}, thread_local=False); lock.acquire(); "
             "print('serving', flush=True); sys.stdin.read()")
    server = subprocess.Popen([sys.executable, "-c", older], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "serving\n"
        shutil.rmtree(servers)
        restore = ["restore", str(root), str(tmp_path / "copy.db")]
        refused = CliRunner().invoke(cli, restore)
        assert refused.exit_code == 1 and "a `bot serve` is running on it: stop it, then restore" in refused.output
        purge = ["purge", str(root), "--conversation", "c1"]
        refused = CliRunner().invoke(cli, purge)
        assert refused.exit_code == 1 and "an older deskbot's `bot serve` is running on it" in refused.output
        assert sqlite3.connect(root / "dialogues.db").execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) - 1,)
    finally:
        server.communicate("", timeout=30)  # stopped
    assert CliRunner().invoke(cli, restore).exit_code == 0


def test_restore_waits_for_every_other_process_that_has_the_store_open(tmp_path: Path, root: Path) -> None:
    """A `bot review` (or `bot chat`) left open while the store was restored went on writing to the store put aside:
    the labels given after the restore were lost from the store restored, without a word."""
    Store(root / "dialogues.db").close()
    Store(tmp_path / "copy.db").close()
    reviewing = ("import sqlite3, sys; store = sqlite3.connect(sys.argv[1]); store.execute('SELECT 1 FROM turns')"
                 ".fetchall(); print('open', flush=True); sys.stdin.read()")
    review = subprocess.Popen([sys.executable, "-c", reviewing, str(root / "dialogues.db")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    restore = ["restore", str(root), str(tmp_path / "copy.db")]
    try:
        assert review.stdout is not None and review.stdout.readline() == "open\n"
        refused = CliRunner().invoke(cli, restore)
        assert refused.exit_code == 1 and f"is open in another process ({review.pid} (" in refused.output
        assert "let it end or stop it, then restore" in refused.output
        assert not list(root.glob("dialogues.db.replaced-*"))
    finally:
        review.communicate("", timeout=30)
    assert CliRunner().invoke(cli, restore).exit_code == 0


def test_two_restores_in_one_second_keep_both_stores_they_replace(tmp_path: Path, root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A script's second restore in the same second put the first's copy aside under the name the store as it was
    had been kept under, which was lost."""
    store = Store(root / "dialogues.db")
    user_turn(store, "before", "where is my parcel?")
    store.close()
    for name in ("first", "second"):
        copy = Store(tmp_path / f"{name}.db")
        user_turn(copy, name, "and my refund?")
        copy.close()
    monkeypatch.setattr(store_module.time, "strftime", lambda _form: "20261206-120000")  # both in one second
    for name in ("first", "second"):
        restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / f"{name}.db")])
        assert restored.exit_code == 0, restored.output
    assert "kept as dialogues.db.replaced-20261206-120000-2" in restored.output
    kept = {path.name: Store(path, read_only=True).conversation_ids() for path in root.glob("dialogues.db.replaced-*")}
    assert kept == {"dialogues.db.replaced-20261206-120000": ["before"],
                    "dialogues.db.replaced-20261206-120000-2": ["first"]}
    assert Store(root / "dialogues.db", read_only=True).conversation_ids() == ["second"]


def test_a_server_forgets_the_lock_files_of_gone_servers_that_left_nothing(tmp_path: Path) -> None:
    """A killed server's lock file stayed for good: a year of restarts piled them up."""
    path = tmp_path / "dialogues.db"
    live = Store(path)
    live.serve()
    servers = tmp_path / ".dialogues.db.servers"
    gone, owing = "a" * 32, "b" * 32
    (servers / f"{gone}.lock").touch()  # killed: nobody holds its lock
    (servers / f"{owing}.lock").touch()  # killed with a message of its own not answered yet
    (servers / f"{'c' * 32}.lock").symlink_to(tmp_path / "nowhere")  # not a server's file: left, and no failed start
    (servers / f"{'d' * 32}.lock").mkdir()
    live.receive("slack:ts:C1:1.1", "slack:T1:C1:1.1", "slack", "U1", "where is my parcel?", {})
    live.db.execute("UPDATE pending SET owner = ?", [owing])
    starting = Store(path)
    starting.serve()
    assert sorted(p.stem for p in servers.iterdir()) == sorted([owing, "c" * 32, "d" * 32, live.server, starting.server])
    # A message whose server's lock file is a folder stays; the others are still taken (they were dropped with it)
    live.receive("slack:ts:C1:1.2", "slack:T1:C1:1.2", "slack", "U1", "and my refund?", {})
    live.db.execute("UPDATE pending SET owner = ? WHERE key = 'slack:ts:C1:1.2'", ["d" * 32])
    assert [row["text"] for row in starting.adopt(["slack"])] == ["where is my parcel?"]
    starting.close()
    live.close()


def test_an_agents_reply_and_a_purge_find_a_conversations_answers_by_an_index(tmp_path: Path) -> None:
    """Both read every agent answer ever kept: 27 ms a reply and 0.4 s a purge at 200,000 answers."""
    store = Store(tmp_path / "dialogues.db")
    for sql in ("SELECT a.id FROM answer_candidates a JOIN turns t ON t.id = a.agent_turn_id "
                "WHERE a.conversation_id = 'c1' ORDER BY a.id DESC LIMIT 1",
                "DELETE FROM answer_candidates WHERE conversation_id = 'c1'",
                "SELECT id FROM answer_candidates WHERE agent_turn_id = 7"):
        plan = " ".join(row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
        assert "SCAN a" not in plan and "SCAN answer_candidates" not in plan, plan
    store.close()


def test_a_replys_earlier_votes_are_dropped_from_migration_27_on(tmp_path: Path) -> None:
    """A vote replaces the reply's earlier one (``Store.add_feedback``), but a deskbot before kept a row a vote, each
    with up to 2,000 characters of a customer's comment, until the reply was voted on again. A store it left keeps,
    once opened, the latest vote of each reply alone, with the latest comment given when that vote has none."""
    store = Store(tmp_path / "dialogues.db")
    first, second = (user_turn(store, "voted", text) + 1 for text in ("where is my order?", "and my refund?"))
    for turn, value, comment in ((first, -1, "wrong, call me on [PHONE]"), (first, -1, "still wrong"),
                                 (first, 1, None), (second, 1, "thanks")):  # as the deskbot before wrote them
        store.db["feedback"].insert({"turn_id": turn, "value": value, "comment": comment, "created": 1.0})
    store = left_by(store, 26)
    assert store.db.execute("SELECT turn_id, value, comment FROM feedback ORDER BY turn_id").fetchall() == [
        (first, 1, "still wrong"), (second, 1, "thanks")]
    assert [t["feedback"] for t in store.history("voted") if t["role"] == "bot"] == [1, 1]
    store.close()


def test_a_change_of_hands_after_a_purge_is_said_elsewhere(tmp_path: Path) -> None:
    """Another server on the store reads on from the highest handoff, takeover and claim ids it has seen: `bot purge`
    deleting the latest rows let SQLite give their ids out again, below that mark, and a handoff, a takeover or a claim
    made then under a reused id never reached the sockets the other server has open on that conversation."""
    first, second = Store(tmp_path / "dialogues.db"), Store(tmp_path / "dialogues.db")
    first.serve()
    second.serve()
    for cid in ("watched", "purged"):
        user_turn(first, cid, "I want a person")
    first.set_status("purged", "handed_off", "requested")
    first.set_status("purged", "handed_off", "agent", agent="Ana")  # a claim
    first.set_status("purged", "handed_off", "agent", agent="Bo", force=True)  # a takeover
    _, _, marks = second.said_elsewhere(["watched"], None, second.server)
    first.purge("purged")
    first.set_status("watched", "handed_off", "requested")
    _, changed, marks = second.said_elsewhere(["watched"], marks, second.server)
    assert changed == {"watched": {"status": "handed_off", "reason": "requested", "agent": None}}
    first.set_status("watched", "handed_off", "agent", agent="Ana")
    _, changed, marks = second.said_elsewhere(["watched"], marks, second.server)
    assert changed == {"watched": {"status": "handed_off", "reason": "agent", "agent": "Ana"}}
    first.set_status("watched", "handed_off", "agent", agent="Bo", force=True)
    _, changed, marks = second.said_elsewhere(["watched"], marks, second.server)
    assert changed == {"watched": {"status": "handed_off", "reason": "agent", "agent": "Bo"}}
    first.close()
    second.close()


def test_an_agents_claim_of_a_customer_handed_off_to_nobody_is_said_elsewhere_and_purged(tmp_path: Path) -> None:
    """An agent taking over a customer who asked for a person names themselves on the customer's handoff, a row
    another server on the store had read already: it found no change, and its sockets went on saying nobody had the
    customer. The claim is kept for it (``_v40``), once, and goes with the conversation when it is purged."""
    first, second = Store(tmp_path / "dialogues.db"), Store(tmp_path / "dialogues.db")
    first.serve()
    second.serve()
    user_turn(first, "asked", "I want a person")
    _, _, marks = second.said_elsewhere(["asked"], None, second.server)
    first.set_status("asked", "handed_off", "requested")
    _, changed, requested = second.said_elsewhere(["asked"], marks, second.server)
    assert changed == {"asked": {"status": "handed_off", "reason": "requested", "agent": None}}
    first.set_status("asked", "handed_off", "agent", agent="Ana")
    first.set_status("asked", "handed_off", "agent", agent="Ana")  # hers already: no change to say
    _, changed, marks = second.said_elsewhere(["asked"], requested, second.server)
    assert changed == {"asked": {"status": "handed_off", "reason": "agent", "agent": "Ana"}}
    assert second.said_elsewhere(["asked"], marks, second.server)[1] == {}
    assert first.said_elsewhere(["asked"], requested, first.server)[1] == {}  # its own, pushed as it was made
    assert first.purge("asked").deleted["asked"]["handoff_claims"] == 1
    first.close()
    second.close()


def test_a_label_correction_finds_the_labels_of_its_answer_by_an_index(tmp_path: Path) -> None:
    """A correction read every label the store holds to find the turns labelled with it (the admin API's and `bot
    review --correct`'s alike), slow past a hundred thousand labels. It reads those given at its label's moment."""
    store = Store(tmp_path / "dialogues.db")
    pair = [user_turn(store, f"p{n}", "cancel my order") for n in range(2)]
    store.add_labels(pair, "cancel_ordr", "ann")
    other = user_turn(store, "o", "where is my sofa")
    store.add_labels([other], "cancel_ordr", "bob")
    store.relabel("cancel_ordr", "cancel_order", "cy")  # one moment for all three: their answers still tell them apart
    read: list[str] = []
    store.db.conn.set_trace_callback(read.append)

    assert store.correct_label([pair[1]], "get_refund", "dee") == pair

    store.db.conn.set_trace_callback(None)
    assert {r["turn_id"]: r["intent"] for r in store.labels()} == {
        pair[0]: "get_refund", pair[1]: "get_refund", other: "cancel_order"}
    selects = [sql for sql in read if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert any("review_labels" in sql for sql in selects)
    for sql in selects:
        plan = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
        assert not [step for step in plan if re.match(r"SCAN (review_labels|r|p)\b", step)], (sql, plan)
    store.close()


def test_the_conversations_of_more_ids_than_a_query_may_list_are_read(tmp_path: Path) -> None:
    """A first purge by date or retention round on a store of years reads every conversation it deletes: more than
    the 32,766 values SQLite lets one IN (...) list failed with "too many SQL variables", and nothing was deleted."""
    store = Store(tmp_path / "dialogues.db")
    for conversation in ("first", "last"):
        user_turn(store, conversation, "where is my order?")
    ids = ["first", *(f"gone-{n}" for n in range(40_000)), "last"]
    read = store.conversations(ids)
    assert len(read) == len(ids)
    assert [row["id"] for row in read if row is not None] == ["first", "last"]
    store.close()


def test_an_agents_reply_reaches_the_other_servers_sockets_as_its_customer_got_it(tmp_path: Path) -> None:
    """An agent's reply converted to its customer's Chinese script is kept as written, for the agents, and as sent: a
    customer whose socket another server holds got it as the agent wrote it."""
    first, second = Store(tmp_path / "dialogues.db"), Store(tmp_path / "dialogues.db")
    first.serve()
    second.serve()
    user_turn(first, "hk", "轉人工")
    first.set_status("hk", "handed_off", "requested")
    _, _, marks = second.said_elsewhere(["hk"], None, second.server)
    first.add_agent_answer("hk", "您好，请提供订单号", agent="Li", sent="您好，請提供訂單號")
    turns, _, _ = second.said_elsewhere(["hk"], marks, second.server)
    assert [(t["role"], t["text"]) for t in turns] == [("agent", "您好，請提供訂單號")]
    assert first.history("hk")[-1]["text"] == "您好，請提供訂單號"
    assert first.transcript("hk")["turns"][-1]["text"] == "您好，请提供订单号"
    first.close()
    second.close()


def test_the_slots_holding_personal_data_are_dropped_once_their_conversation_is_idle(tmp_path: Path) -> None:
    """A form's e-mail address and phone number were kept as set in the conversation's slots for as long as the
    conversation, unredacted, where the transcript showed them redacted. Kept while the conversation goes on, for the
    actions of its next turns; dropped once nothing has been written in it since the moment given, the customer's
    verified id and the slots without personal data kept; looked at again once the conversation is written again."""
    slots = {"email": "jane@example.com", "contact": ["zhangsan [at] qq [dot] com"], "order_id": "12345", "count": 2,
             "verified_user": "jane@example.com"}
    store = Store(tmp_path / "dialogues.db")
    store.log_exchange(Exchange("c1", "web", None, "it's jane@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots=slots))
    store.log_exchange(Exchange("c2", "web", None, "order 12345", None, "On its way", "track", 0.9, [],
                                "action", "v1", slots={"order_id": "12345"}))
    assert store.forget_idle_slots(time.time() - 3600) == 0  # going on
    assert store.conversation("c1")["slots"] == slots
    assert store.forget_idle_slots(time.time() + 1, dry_run=True) == 1 and store.conversation("c1")["slots"] == slots
    assert store.forget_idle_slots(time.time() + 1) == 1
    assert store.conversation("c1")["slots"] == {"order_id": "12345", "count": 2, "verified_user": "jane@example.com"}
    assert store.conversation("c2")["slots"] == {"order_id": "12345"}
    unchecked = "SELECT id FROM conversations WHERE slots_checked IS NOT updated"
    assert store.db.execute(unchecked).fetchall() == []  # each looked at once, not every round
    store.log_exchange(Exchange("c1", "web", None, "call me", None, "Sure", "inform", 0.9, [], "action", "v1",
                                slots={"phone": "+1 415 555 0100"}))
    assert store.db.execute(unchecked).fetchall() == [("c1",)]
    assert store.forget_idle_slots(time.time() + 1) == 1 and "phone" not in store.conversation("c1")["slots"]
    store.close()
    assert b"555 0100" not in b"".join(p.read_bytes() for p in tmp_path.glob("dialogues.db*"))


def test_stored_messages_comments_and_search_index_are_redacted_anew(tmp_path: Path) -> None:
    """Redaction applies to a message as it is stored: one kept while privacy.redact was off, or before redaction
    found what it finds now, stayed as it came, in the message, its unredacted copy, the agents' search index and the
    question an agent answered. Redacted anew a batch at a time, a dry run counting alone, the unredacted copy
    ``keep_raw`` keeps left so, and none of the old text left in the store's files."""
    path = tmp_path / "dialogues.db"
    store = Store(path, redact=False)
    store.log_exchange(Exchange("c1", "web", None, "can you mail the invoice to qjzvxk@example.com?",
                                "Can you mail the invoice to qjzvxk@example.com?", "Sorry?", None, 0.1, [],
                                "fallback", "v1"))
    store.set_status("c1", "handed_off", "requested")
    store.add_agent_answer("c1", "Yes, the invoice is on its way.", agent="anna")
    for n in range(5):
        user_turn(store, f"other{n}", f"where is order {n}00?")
    reply = next(t for t in store.transcript("c1")["turns"] if t["role"] == "bot")
    store.add_feedback("c1", reply["id"], -1, "call me on +1 555 010 0199")
    store.close()

    store = Store(path)
    found = store.redact_stored(keep_raw=False, idle_before=0.0, dry_run=True)
    assert (found.turns, found.comments, found.slots) == (1, 1, 0)
    assert store.db.execute("SELECT count(*) FROM turns_fts WHERE turns_fts MATCH 'qjzvxk'").fetchone() == (1,)
    store_module.REWRITE_BATCH, batch = 2, store_module.REWRITE_BATCH  # batches: the message is in the first
    try:
        done = store.redact_stored(keep_raw=False, idle_before=0.0)
    finally:
        store_module.REWRITE_BATCH = batch
    assert (done.turns, done.comments, done.wal_cleared) == (1, 1, True)
    turn = store.db.execute("SELECT text, raw_text FROM turns WHERE conversation_id = 'c1' AND role = 'user'").fetchone()
    assert turn == ("can you mail the invoice to [EMAIL]?", "Can you mail the invoice to [EMAIL]?")
    assert store.db.execute("SELECT question FROM answer_candidates").fetchone() == ("can you mail the invoice to [EMAIL]?",)
    assert store.db.execute("SELECT comment FROM feedback").fetchone() == ("call me on [PHONE]",)
    assert store.db.execute("SELECT count(*) FROM turns_fts WHERE turns_fts MATCH 'qjzvxk'").fetchone() == (0,)
    assert store.redact_stored(keep_raw=False, idle_before=0.0).turns == 0  # nothing left
    store.close()
    assert b"zvx" not in b"".join(p.read_bytes() for p in tmp_path.glob("dialogues.db*"))

    kept = Store(tmp_path / "kept.db", redact=False)
    kept.log_exchange(Exchange("c1", "web", None, "mail me at qjzvxk@example.com", None, "Sorry?", None, 0.1, [],
                               "fallback", "v1"))
    assert kept.redact_stored(keep_raw=True, idle_before=0.0).turns == 1
    assert kept.db.execute("SELECT text, raw_text FROM turns WHERE role = 'user'").fetchone() == (
        "mail me at [EMAIL]", "mail me at qjzvxk@example.com")  # the shop's own unredacted record, as kept
    kept.close()


def test_messages_waiting_for_their_answer_are_redacted_anew_and_agents_notes_kept_as_written(tmp_path: Path) -> None:
    """A Slack or WeCom message kept while it waits for its answer (``pending``: its text, and ``shown`` as the agents
    read it) stayed as it came through a redaction of the store, which redacted its turn alone: it is redacted as a
    turn is, ``shown`` as the unredacted copy. An agent's note is the agent's own words, kept as written, as their
    replies are: a customer's erasure is a purge's."""
    store = Store(tmp_path / "dialogues.db", redact=False)
    store.receive("k1", "c1", "slack", "U1", "mail qjzvxk@example.com", {}, shown="Mail qjzvxk@example.com please")
    user_turn(store, "c2", "where is my parcel?")
    store.add_note("c2", "customer asked to be mailed at qjzvxk@example.com", agent="Ana")
    store.close()
    store = Store(tmp_path / "dialogues.db")
    assert store.redact_stored(keep_raw=False, idle_before=0.0, dry_run=True).waiting == 1
    assert store.db.execute("SELECT text FROM pending").fetchone() == ("mail qjzvxk@example.com",)
    assert store.redact_stored(keep_raw=False, idle_before=0.0).waiting == 1
    assert store.db.execute("SELECT text, shown FROM pending").fetchone() == ("mail [EMAIL]", "Mail [EMAIL] please")
    assert store.redact_stored(keep_raw=False, idle_before=0.0).waiting == 0
    assert [n["text"] for n in store.transcript("c2")["notes"]] == ["customer asked to be mailed at qjzvxk@example.com"]
    store.close()


def test_bot_redact_counts_then_redacts_what_the_store_kept_unredacted(root: Path) -> None:
    """A shop that turned privacy.redact on, or upgraded to a deskbot whose redaction finds more, had no way to redact
    what the store already kept: `bot redact --dry-run` counts it, `bot redact` redacts it, slots of idle
    conversations included, and a bot whose bot.yml keeps messages as they came is told so, its store untouched."""
    store = Store(root / "dialogues.db", redact=False)
    store.log_exchange(Exchange("c1", "web", None, "it's qjzvxk@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots={"email": "qjzvxk@example.com", "order_id": "12345"}))
    user_turn(store, "c2", "where is order 12345?")
    store.db.execute("UPDATE conversations SET updated = updated - 2 * 86400 WHERE id = 'c1'")  # idle two days
    store.close()
    counted = CliRunner().invoke(cli, ["redact", str(root), "--dry-run"])
    assert counted.exit_code == 0, counted.output
    assert counted.output.startswith("Would redact 1 message and 0 feedback comments, and drop the slots holding "
                                     "personal data of 1 conversation idle for 24 hours")
    assert b"qjzvxk" in b"".join(p.read_bytes() for p in root.glob("dialogues.db*"))
    done = CliRunner().invoke(cli, ["redact", str(root)])
    assert done.exit_code == 0 and done.output.startswith("Redacted 1 message and 0 feedback comments, and dropped"), done.output
    assert b"qjzvxk" not in b"".join(p.read_bytes() for p in root.glob("dialogues.db*"))
    store = Store(root / "dialogues.db")
    assert store.conversation("c1")["slots"] == {"order_id": "12345"}
    store.close()
    bot_yml = root / "bot.yml"
    bot_yml.write_text(yaml.safe_dump({**yaml.safe_load(bot_yml.read_text()), "privacy": {"redact": False}}))
    refused = CliRunner().invoke(cli, ["redact", str(root)])
    assert refused.exit_code == 1 and "privacy.redact is false in bot.yml" in refused.output


def test_bot_redact_keeps_the_slots_where_privacy_slot_hours_is_zero(root: Path) -> None:
    """A shop whose actions need a form's answers past a day sets privacy.slot_hours to 0: `bot redact` redacts the
    messages and keeps every conversation's slots as set, saying so."""
    store = Store(root / "dialogues.db", redact=False)
    store.log_exchange(Exchange("c1", "web", None, "it's qjzvxk@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots={"email": "qjzvxk@example.com"}))
    store.db.execute("UPDATE conversations SET updated = updated - 365 * 86400")
    store.close()
    bot_yml = root / "bot.yml"
    bot_yml.write_text(yaml.safe_dump({**yaml.safe_load(bot_yml.read_text()), "privacy": {"slot_hours": 0}}))
    done = CliRunner().invoke(cli, ["redact", str(root)])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("Redacted 1 message and 0 feedback comments, the slots kept as set "
                                  "(privacy.slot_hours: 0 or null)")
    store = Store(root / "dialogues.db")
    assert store.conversation("c1")["slots"] == {"email": "qjzvxk@example.com"}
    store.close()


def test_bot_redact_dry_run_counts_an_older_deskbots_store_as_it_is(root: Path) -> None:
    """`bot redact --dry-run` on a store of the deskbot before the slots' round (deskbot upgraded, its older `bot serve`
    still running) failed as "lacks what this reads": it counts what a redaction would change there, migrating
    nothing, every conversation's slots counted as never looked at."""
    path = root / "dialogues.db"
    store = Store(path, redact=False)
    store.log_exchange(Exchange("c1", "web", None, "it's qjzvxk@example.com", None, "Thanks!", "inform", 0.9, [],
                                "action", "v1", slots={"email": "qjzvxk@example.com"}))
    store.db.execute("UPDATE conversations SET updated = updated - 2 * 86400")
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # as the deskbot before _v48 left it
        db.execute("DROP INDEX idx_conversations_slots_unchecked")
        db.execute("ALTER TABLE conversations DROP COLUMN slots_checked")
        db.execute(f"PRAGMA user_version={MIGRATIONS.index(migrations._v48)}")
    counted = CliRunner().invoke(cli, ["redact", str(root), "--dry-run"])
    assert counted.exit_code == 0, counted.output
    assert counted.output.startswith("Would redact 1 message and 0 feedback comments, and drop the slots holding "
                                     "personal data of 1 conversation idle for 24 hours")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (MIGRATIONS.index(migrations._v48),)


def test_bot_backup_copies_the_ledger_of_purges_so_that_a_restore_on_another_host_purges_again(
        tmp_path: Path, root: Path) -> None:
    """The ledger of purged conversations stayed beside the store alone: the host lost, an older copy put back on
    another host brought every customer erased since back. `bot backup` copies the ledger and its key beside its copy
    (for the owner alone, warning of the key), a restore on a host with no ledger takes them, and an older copy put
    back after it is purged again; `--keep` deletes them with their copy."""
    store = Store(root / "dialogues.db")
    user_turn(store, "wecom:ww1:ann", "my address is 1 Main St")
    user_turn(store, "c2", "where is my parcel?")
    store.close()
    backups = tmp_path / "backups"
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "before.db")]).exit_code == 0
    assert not (tmp_path / "before.db.purged").exists()  # nothing purged yet
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "wecom:ww1:ann"]).exit_code == 0
    made = CliRunner().invoke(cli, ["backup", str(root), f"{backups}/"])
    assert made.exit_code == 0, made.output
    copy = next(backups.glob("dialogues-*.db"))
    assert "is the key of the ledger of purged conversations" in made.stderr
    for own, beside in ((root / "dialogues.db.purged", Path(f"{copy}.purged")),
                        (root / "dialogues.db.purged.key", Path(f"{copy}.purged.key"))):
        assert beside.read_bytes() == own.read_bytes() and beside.stat().st_mode & 0o777 == 0o600

    elsewhere = tmp_path / "elsewhere"
    assert CliRunner().invoke(cli, ["init", str(elsewhere)]).exit_code == 0
    restored = CliRunner().invoke(cli, ["restore", str(elsewhere), str(copy)])
    assert restored.exit_code == 0 and "the ledger of purged conversations (and its key) copied" in restored.stderr
    assert (elsewhere / "dialogues.db.purged.key").read_bytes() == (root / "dialogues.db.purged.key").read_bytes()
    restored = CliRunner().invoke(cli, ["restore", str(elsewhere), str(tmp_path / "before.db")])
    assert restored.exit_code == 0 and "Purged again 1 conversation purged before" in restored.stderr, restored.output
    store = Store(elsewhere / "dialogues.db")
    assert [row[0] for row in store.db.execute("SELECT id FROM conversations")] == ["c2"]
    store.close()

    os.rename(copy, backups / "dialogues-20000101-000000.db")  # an older night's, its ledger beside it
    for suffix in (".purged", ".purged.key"):
        os.rename(f"{copy}{suffix}", backups / f"dialogues-20000101-000000.db{suffix}")
    pruned = CliRunner().invoke(cli, ["backup", str(root), f"{backups}/", "--keep", "1"])
    assert pruned.exit_code == 0, pruned.output
    assert sorted(p.name for p in backups.iterdir() if "2000" in p.name) == []


def test_a_purge_after_a_backup_is_added_to_the_ledger_beside_it_so_that_its_restore_on_another_host_purges_again(
        tmp_path: Path, root: Path) -> None:
    """The ledger beside a copy `bot backup` made named the purges made before the copy alone: the store's host lost,
    the latest copy put back on another host brought back every customer erased since it was made, and a copy made
    before the first purge had no ledger beside it at all. A purge adds its lines to the ledgers beside the copies too,
    where they still are (and not to one whose key was left out), and a copy of a store with a key has one."""
    store = Store(root / "dialogues.db")
    store.serve()  # a server makes the ledger's key, before any purge
    for cid in ("c1", "wecom:ww1:ann", "c2"):
        user_turn(store, cid, "where is my parcel?")
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "first.db")]).exit_code == 0
    assert Path(f"{tmp_path / 'first.db'}.purged").read_bytes() == b""  # for the purges to come
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "c1"]).exit_code == 0
    for copy in (tmp_path / "copy.db", tmp_path / "keyless.db"):
        assert CliRunner().invoke(cli, ["backup", str(root), str(copy)]).exit_code == 0
    Path(f"{tmp_path / 'keyless.db'}.purged.key").unlink()  # a copy handed on without its key: purged of nothing
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "wecom:ww1:ann"]).exit_code == 0
    for copy in ("first.db", "copy.db"):
        assert Path(f"{tmp_path / copy}.purged").read_bytes() == (root / "dialogues.db.purged").read_bytes()
    assert len(Path(f"{tmp_path / 'keyless.db'}.purged").read_text().splitlines()) == 1
    elsewhere = tmp_path / "elsewhere"
    assert CliRunner().invoke(cli, ["init", str(elsewhere)]).exit_code == 0
    for copy, again in (("copy.db", 1), ("first.db", 2)):  # the latest first, then an older one
        restored = CliRunner().invoke(cli, ["restore", str(elsewhere), str(tmp_path / copy)])
        assert restored.exit_code == 0, restored.output
        assert f"Purged again {again} conversation{'s' if again > 1 else ''} purged before" in restored.stderr
        store = Store(elsewhere / "dialogues.db")
        assert [row[0] for row in store.db.execute("SELECT id FROM conversations")] == ["c2"]
        store.close()


def test_bot_purge_forgets_the_ledgers_lines_older_than_the_oldest_copy_kept(tmp_path: Path, root: Path) -> None:
    """The ledger of purged conversations grew for good, a line a purge, a retention period's thousands too. `bot purge
    --forget-ledger-before DATE` forgets the lines of the purges made before the oldest copy the shop keeps: a copy
    made since holds none of them. Those after stay, so that an older copy put back is purged of them again; a date in
    the future, or one after a copy deskbot keeps beside the store, is refused."""
    store = Store(root / "dialogues.db")
    for conversation in ("long-ago", "lately", "kept"):
        user_turn(store, conversation, "my address is 1 Main St")
    store.close()
    assert CliRunner().invoke(cli, ["backup", str(root), str(tmp_path / "copy.db")]).exit_code == 0
    ledger = root / "dialogues.db.purged"
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "long-ago"]).exit_code == 0
    digest, _, _ = ledger.read_text().partition("\t")
    ledger.write_text(f"{digest}\t{datetime(2025, 6, 1).timestamp()}\n")  # as a purge a year ago left it
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "lately"]).exit_code == 0
    lately = ledger.read_text().splitlines()[1]

    future = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2999-01-01"])
    assert future.exit_code == 1 and "is in the future" in future.output
    mixed = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01", "--again"])
    assert mixed.exit_code == 2 and "alone" in mixed.output
    upgrade = root / "dialogues.db.schema48.bak"
    shutil.copy(tmp_path / "copy.db", upgrade)
    os.utime(upgrade, (datetime(2025, 12, 1).timestamp(),) * 2)  # kept at an upgrade last December
    refused = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01"])
    assert refused.exit_code == 1 and "dialogues.db.schema48.bak, beside the store, is older" in refused.output
    assert len(ledger.read_text().splitlines()) == 2
    upgrade.unlink()

    forgot = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01"])
    assert forgot.exit_code == 0 and forgot.stderr.startswith("Forgot 1 line of"), forgot.output
    assert ledger.read_text().splitlines() == [lately] and ledger.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01"])
    assert again.stderr.startswith("Forgot 0 lines of")
    restored = CliRunner().invoke(cli, ["restore", str(root), str(tmp_path / "copy.db")])
    assert restored.exit_code == 0 and "Purged again 1 conversation purged before" in restored.stderr, restored.output
    store = Store(root / "dialogues.db")  # long-ago's line, said to be older than any copy, is forgotten
    assert sorted(row[0] for row in store.db.execute("SELECT id FROM conversations")) == ["kept", "long-ago"]
    store.close()


def test_bot_purge_forgets_the_ledgers_lines_beside_the_backups_too(tmp_path: Path, root: Path) -> None:
    """`bot purge --forget-ledger-before DATE` forgot the ledger's older lines beside the store alone: the ledger `bot
    backup` copies beside each of its copies kept every line of every purge for as long as the copy was kept. The same
    lines go there too, beside each copy still there; one deleted since is passed over. A date after one of those
    copies was made is refused, as one after a copy beside the store is: put back, it would keep what was purged
    after it was made."""
    store = Store(root / "dialogues.db")
    for conversation in ("long-ago", "lately", "kept"):
        user_turn(store, conversation, "my address is 1 Main St")
    store.close()
    ledger = root / "dialogues.db.purged"
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "long-ago"]).exit_code == 0
    digest, _, _ = ledger.read_text().partition("\t")
    ledger.write_text(f"{digest}\t{datetime(2025, 6, 1).timestamp()}\n")  # as a purge a year ago left it
    assert CliRunner().invoke(cli, ["purge", str(root), "--conversation", "lately"]).exit_code == 0
    lately = ledger.read_text().splitlines()[1]
    backups, gone = tmp_path / "backups", tmp_path / "gone.db"
    assert CliRunner().invoke(cli, ["backup", str(root), f"{backups}/"]).exit_code == 0
    assert CliRunner().invoke(cli, ["backup", str(root), str(gone)]).exit_code == 0
    [copy] = backups.glob("*.purged")
    assert len(copy.read_text().splitlines()) == 2
    for beside in (gone, purged_ledger(gone), ledger_key(gone)):
        beside.unlink()
    made = os.stat(backups / copy.stem).st_mtime
    os.utime(backups / copy.stem, (datetime(2025, 12, 1).timestamp(),) * 2)  # as if kept since last December
    refused = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01"])
    assert refused.exit_code == 1 and f"{backups / copy.stem}, made by bot backup, is older" in refused.output
    assert len(ledger.read_text().splitlines()) == len(copy.read_text().splitlines()) == 2
    os.utime(backups / copy.stem, (made, made))

    forgot = CliRunner().invoke(cli, ["purge", str(root), "--forget-ledger-before", "2026-01-01"])
    assert forgot.exit_code == 0, forgot.output
    assert forgot.stderr.splitlines()[1] == f"Forgot 1 line of {copy}, beside a backup", forgot.output
    assert ledger.read_text().splitlines() == copy.read_text().splitlines() == [lately]
    assert copy.stat().st_mode & 0o777 == 0o600 and (root / "dialogues.db.purged.copies").stat().st_mode & 0o777 == 0o600


def test_an_agents_customers_unread_are_every_one_they_have(tmp_path: Path) -> None:
    """An agent's customers with what each wrote unread (the inbox's ``unread_yours``) were the first 100: a customer
    past them, answered, came into the list with their first new message, and the console, which says nothing of a
    customer listed for the first time, never said aloud that they wrote again."""
    store = Store(tmp_path / "dialogues.db")
    customers = [f"c{n:03}" for n in range(105)]
    for cid in customers:
        user_turn(store, cid, "where is my order?")
        store.set_status(cid, "handed_off", "agent", agent="Ana")
        store.add_agent_answer(cid, "Let me look.", agent="Ana")  # answered: none of them waits
    listed = store.unread_of("ana")
    assert sorted(c["conversation_id"] for c in listed) == customers
    assert {c["unread"] for c in listed} == {0}
    store.log_exchange(Exchange(customers[-1], "web", None, "any news?", None, None, None, None, [], None, "v0001"))
    assert [c for c in store.unread_of("ana") if c["unread"]] == [{"conversation_id": customers[-1], "unread": 1}]
    store.close()


def test_a_customers_other_conversations_are_read_without_going_over_every_conversation(tmp_path: Path) -> None:
    """Each transcript an agent's console reads names the conversations a customer's page went on in from it
    (``continues``), and that read went over every conversation of the store at each console's poll."""
    store = Store(tmp_path / "dialogues.db")
    user_turn(store, "c0", "where is my order?")
    conversation = store.conversation("c0")
    few = steps_of(store, lambda: store.others(conversation))
    for n in range(300):
        user_turn(store, f"other{n}", "where is my order?")
    assert steps_of(store, lambda: store.others(conversation)) - few < 100
    store.close()
