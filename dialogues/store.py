"""The conversation store: every turn, prediction, feedback and handoff, in one SQLite file.

SQLite in WAL mode survives a killed process: a transaction that returned is on disk, and readers
never block the writer. The schema moves forward through numbered migrations (``dialogues.migrations``)
recorded in ``PRAGMA user_version``, so an old ``dialogues.db`` opens with a newer deskbot.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import fnmatch
import glob
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import re
import secrets
import shlex
import sqlite3
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import sqlite_utils
from filelock import FileLock, Timeout

from dialogues.disk import (DAMAGED_ADVICE, READ_ONLY_DISK_ADVICE, cannot_write, damaged, no_space,
                            read_only_disk)
from dialogues.holding import DELETED, SENT, asks_for_details, asks_nothing, gives_details, run_answer
from dialogues.migrations import HANDED_BACK, MIGRATIONS, NEW_IDENTITY
from dialogues.redact import redact
from finetune.durable import fsync_path, owner_only
from retrieval.text import spellings

log = logging.getLogger(__name__)


def unix_time(moment: datetime) -> float:
    """``moment`` (naive: local time) as stored times are kept; a moment before the clock's range, such as
    0001-01-01, is 0, since everything stored comes after it."""
    try:
        return moment.timestamp()
    except (ValueError, OverflowError):
        return 0.0


# fromisoformat also reads 2026-W49, 2026-339 and 20261205, which a typo would pass for a date
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
                     r"(Z|[+-][0-9]{2}:?[0-9]{2})?)?")


def read_moment(text: str, *, local_time: bool = True) -> datetime:
    """A ``since`` as ``bot stats --since`` and ``/admin/stats?since=`` read it: a date (``2026-12-05``: its
    start), or a time on it as ``bot export`` writes ``created`` (``2026-12-05T04:42:07+00:00``) and ``bot
    stats`` prints its window (``2026-12-05 04:00:00``): ``T`` or a space, seconds optional, an offset (``Z``,
    ``+08:00``, ``+0800``) or, where ``local_time``, none (naive: local time). ValueError if it is none of those.

    The server passes ``local_time=False``: its own local time is no one's in particular (an agent in Shanghai,
    a server on UTC), so a time there must say its offset; a date alone is the server's day, as ever."""
    form = _MOMENT.fullmatch(text.strip())
    if form is None:
        raise ValueError(f"{text!r} is not a date nor a time on one")
    if not local_time and len(form.group(0)) > len("2026-12-05") and form.group(1) is None:
        raise ValueError(f"{text!r} is a time without its offset")
    return datetime.fromisoformat(form.group(0))  # ValueError for 2026-02-30, 25:00


def now() -> float:
    return time.time()


# The turns with a label given at a time by a reviewer (two parameters), for ``_v42``'s index.
_GIVEN = "turn_id IN (SELECT turn_id FROM review_labels WHERE created = ? AND reviewer IS ?)"
# Each intent name ``bot relabel`` renamed (``_v34``) with every name it has had since (``old``, ``new``): one renamed
# twice (A to B, then B to C) is C's too. A common table expression, to put before a query's SELECT.
RENAMED = ("WITH RECURSIVE renamed (old, new) AS (SELECT old, new FROM intent_renames UNION "
           "SELECT renamed.old, n.new FROM renamed JOIN intent_renames n ON n.old = renamed.new) ")
# How long an answered platform message's key is kept: Slack retries at once, after 1 and after 5 minutes,
# WeCom within seconds.
REDELIVERY_WINDOW_S = 900.0
# How old a kept message with no server named (kept by a deskbot before migration 12) must be before another
# server answers it: the old server may still be answering it while the new one starts.
UNOWNED_GRACE_S = 60.0
# An answered message keeps its key only: its text lives on in the conversation's turns.
_SETTLE = "UPDATE pending SET answered = ?, text = '', shown = NULL, metadata = '{}' WHERE id = ?"
# The metadata of a message settled once its answer went back as the callback's reply (``Store.delivered``), which the
# platform never confirms: its redelivery says the reply was lost (``Store.unconfirmed_answer``).
_PASSIVE = '{"answered": "passive"}'
# A purged conversation's messages keep their keys alone (the platform's message ids), taken as answered: deleted, a
# redelivery in the minutes after the purge was answered again, beginning the conversation anew.
_FORGET_SENDER = ("UPDATE pending SET answered = coalesce(answered, ?), conversation_id = NULL, user = NULL, text = '', "
                  "shown = NULL, metadata = '{}', reply_turn = NULL WHERE conversation_id = ?")
# The key prefix of an edit or a deletion of a platform message that was no turn yet (``Store.replace_message``), kept
# as a settled row, as an answered message's key is, until the message's turn is written or the window passes.
_CHANGE = "changed:"
# What a colleague's note that mentioned the bot alone reads (``Store.receive_note``), which took no conversation over.
_MENTIONED = frozenset(SENT["mention"].values())
_UNDELIVERED = "UPDATE turns SET undelivered = 1 WHERE id = ?"
# The tables whose highest ids ``bot purge`` keeps (``id_floor``, ``_v9``), for a new row's id to stay above them
# (:func:`_next_id`): turns, which review items, labels and acknowledgements name, and the changes of hands that
# :meth:`Store.said_elsewhere` reads on from the highest id it saw: an id given out again after a purge was below its
# mark, and another server's sockets never heard of that handoff, takeover or claim.
_FLOORED = ("turns", "handoffs", "takeovers", "handoff_claims")


def _next_id(table: str) -> str:
    """The SQL of the id of a row inserted into ``table`` (one of ``_FLOORED``): above every id it holds and every id
    ``bot purge`` deleted from it."""
    return (f"(SELECT max(coalesce(max(id), 0), coalesce((SELECT high FROM id_floor WHERE name = '{table}'), 0)) + 1 "
            f"FROM {table})")


_NEXT_TURN = _next_id("turns")
# What a bot turn says whose reply was custom payloads alone (web chat's custom), which the customer's page
# showed: agents see that the bot answered, beside the payloads (the turn's ``custom``).
CUSTOM_PLACEHOLDER = "[custom payload]"


def _as_customer_saw(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn of the customer's history: a reply of custom payloads alone, which their page showed as it came, is as
    it was then (no text, which the widget shows nothing for, and its payloads), not the agents' CUSTOM_PLACEHOLDER."""
    return {**turn, "text": ""} if turn["role"] == "bot" and turn["text"] == CUSTOM_PLACEHOLDER else turn


def _with_json(row: dict[str, Any]) -> dict[str, Any]:
    """A turn ``row`` with its JSON columns read: its ``buttons``, its ``custom`` payloads and, where selected, its
    ``messages`` (lists, empty for none)."""
    read = {**row, "buttons": json.loads(row["buttons"] or "[]"), "custom": json.loads(row["custom"] or "[]")}
    if "messages" in row:
        read["messages"] = json.loads(row["messages"] or "[]")
    return read


_ADD_TURN = ("INSERT INTO turns (id, conversation_id, role, text, raw_text, channel, user, created, buttons, notice, "
             f"custom, server) VALUES ({_NEXT_TURN}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# What a turn leaves of its conversation, made to the row as it is when written (``Exchange.fallbacks_read``,
# ``loop_read`` and ``slots_read``): another server on the store may have answered a message of it meanwhile.
_UPDATE_AFTER_TURN = (
    "UPDATE conversations SET updated = :now, slots = coalesce(:slots, slots), "
    "fallbacks = CASE WHEN :fallbacks_read IS NULL OR :fallbacks < :fallbacks_read THEN :fallbacks "
    "ELSE coalesce(fallbacks, 0) + :fallbacks - :fallbacks_read END, "
    "active_loop = CASE WHEN :loop_kept THEN active_loop ELSE :active_loop END, "
    "active_form = CASE WHEN :loop_kept THEN active_form ELSE :active_form END WHERE id = :id")


def agent_key(agent: str | None) -> str:
    """An agent's name as people read names, in any letter case and spacing ("Ann", " ann") and either Unicode form
    of an accent (NFC): agents type it in each window of the console, and one agent's two spellings are one agent.
    Empty for an agent with no name."""
    return unicodedata.normalize("NFC", (agent or "").strip().casefold())


def _nobodys(column: str, team: Collection[str]) -> tuple[str, list[str]]:
    """The SQL condition, and its arguments, of a handed-off customer nobody has by its holder's ``column``: nobody's,
    or, where the bot knows its agents' names (``team``, server.agents), someone's a reload took out of them, who
    signs in no more and whose customers waited unlisted and uncounted."""
    gone = f" OR agent_key({column}) NOT IN ({', '.join('?' * len(team))})" if team else ""
    return f"(agent_key({column}) = ''{gone})", [agent_key(name) for name in team]


def _nobody_has(holder: str | None, team: Collection[str]) -> bool:
    """:func:`_nobodys` of a holder read: nobody's, or someone's ``team`` no longer names."""
    return not agent_key(holder) or (bool(team) and agent_key(holder) not in {agent_key(name) for name in team})


def _holds(agent: str | None, holder: str | None, team: Collection[str]) -> bool:
    """Whether :meth:`Store.inbox`'s ``holder`` lists a handed-off customer ``agent`` has: every one for None, those
    nobody has for ``""`` (:func:`_nobody_has`), else that agent's, in any letter case."""
    if holder is None:
        return True
    return _nobody_has(agent, team) if holder == "" else agent_key(agent) == agent_key(holder)


def _one_spelling_each(names: Iterable[str | None]) -> list[str]:
    """The agents ``names`` names, one spelling of each (the first in code-point order), by name as people read it."""
    spellings: dict[str, str] = {}
    for name in names:
        if name is not None and (key := agent_key(name)):
            spellings[key] = min(spellings.get(key, name), name)
    return [spellings[key] for key in sorted(spellings)]


def refuse_colleague(holder: str | None, agent: str | None, team: Collection[str] = ()) -> None:
    """Raise :class:`HeldByColleague` when ``holder``, the agent who has the conversation, is not ``agent``, nor
    someone ``team`` (server.agents, where the bot knows its agents' names) no longer names: their customers are
    nobody's (:func:`_nobodys`), and taking one over asked to override a colleague who signs in no more."""
    gone = bool(team) and agent_key(holder) not in {agent_key(name) for name in team}
    if holder is not None and agent_key(holder) != agent_key(agent) and not gone:
        raise HeldByColleague(holder)


class StoreError(Exception):
    """The file is not a deskbot conversation store, or one written by a newer deskbot."""


class TooOld(StoreError):
    """An older deskbot's store, read as it is (:func:`read_as_it_is`), lacks a table or column the read needs."""


class Unservable(StoreError):
    """A store ``bot serve`` cannot start on until a person acts, which every restart meets again: a service manager
    restarting it (``Restart=on-failure``) did so for ever, the reason buried among the restarts. ``bot serve`` exits
    with its own status for these (``bot.cli.serve.UNMENDABLE``); a lock another process holds for a while, a full
    disk, a failing one are none: they pass, or are mended, with the server's next start."""


class Unwritable(Unservable):
    """The store's file (or its -wal or -shm file) or its folder, which this user may not write: their permissions, or
    a read-only mount."""


class WrittenByNewer(Unservable):
    """A store a newer deskbot migrated, which this deskbot neither reads nor serves. ``kept`` is the copy that newer
    deskbot made of the store before migrating it (``dialogues.db.schemaN.bak``), which this one serves once put back,
    where it is still there; ``put_back`` the command that puts it back, into the bot folder ``folder`` (the store's
    own folder where not given: a store kept elsewhere, ``store_dir``, is named by the bot folder it serves)."""

    def __init__(self, path: Path, version: int, folder: Path | None = None) -> None:
        kept = path.with_name(f"{path.name}.schema{len(MIGRATIONS)}.bak")
        self.path, self.version, self.kept = path, version, kept if kept.exists() else None
        self.folder = folder or path.parent
        back = (f"; or, to serve this deskbot again, `{self.put_back}` puts back the store as it was before that "
                "upgrade (without the conversations since)") if self.kept else ""
        super().__init__(f"{path} was written by a newer deskbot (schema {version}; this one reads up to "
                         f"{len(MIGRATIONS)}): upgrade deskbot{back}")

    @property
    def put_back(self) -> str:
        """``bot restore`` of the copy kept before the upgrade, as a command line takes it."""
        return f"bot restore {shlex.quote(str(self.folder))} {shlex.quote(str(self.kept))}"


class SentBefore(Exception):
    """An agent's reply was stored under its key already (``Store.add_agent_answer``): the same reply sent
    again, its first try's answer lost on the way back. ``undelivered``: its customer did not get it; ``text``:
    what it said."""

    def __init__(self, turn_id: int, undelivered: bool, text: str) -> None:
        super().__init__(f"turn {turn_id} was sent with this key")
        self.turn_id, self.undelivered, self.text = turn_id, undelivered, text


class OverLimit(Exception):
    """A platform message not kept (:meth:`Store.receive` with ``within``): the messages its conversation's customer
    sent within the window, counted by every server on the store, leave no room for it. ``wait``: the seconds until
    they do."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"over the conversation's limit for {wait:.0f}s more")
        self.wait = wait


class KeyReused(Exception):
    """Another reply (or note: ``what``) than the one sent under a key came with it: answered as that one, it would be
    neither stored nor sent, and nobody would know (a client making one key per conversation, not per reply)."""

    def __init__(self, what: str = "reply") -> None:
        super().__init__(f"a {what} with another text was sent with this key: send this {what} with a new key")


class Overtaken(Exception):
    """An agent's reply or handback refused for what a colleague or the customer did first. ``code`` names which, and
    ``fields`` what a client needs beside it to say so in its agent's language (the agents' console in Chinese)."""

    code = ""
    fields: dict[str, Any] = {}


class RepliedMeanwhile(Overtaken):
    """A colleague replied to the customer after the latest turn the agent had read (``Store.add_agent_answer``'s
    ``after``): two agents answering one customer at once sent two answers, which could disagree. A reply by
    the agent sending (``agent``, the same name, as people read names: in any letter case and spacing; their
    second window) is said to be theirs, not a colleague's."""

    code = "replied_meanwhile"

    def __init__(self, turn_id: int, author: str | None, agent: str | None = None) -> None:
        yours = bool(author and agent and agent_key(author) == agent_key(agent))
        self.fields = {"author": author, "yours": yours}
        if yours:
            said = f"you ({author}) replied meanwhile from another window, as turn {turn_id}: read it, then send " \
                   "this one again if it is still needed"
        else:
            by = f" ({author})" if author else ""
            said = f"a colleague{by} replied meanwhile, as turn {turn_id}: read it, then send yours again"
        super().__init__(said)
        self.turn_id = turn_id


class WroteMeanwhile(Overtaken):
    """The customer wrote after the latest turn the agent handing the conversation back had read
    (``Store.set_status``'s ``after``): the bot does not answer what was written while a person had it, and the
    message would go unanswered by anyone."""

    code = "wrote_meanwhile"

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"the customer wrote meanwhile, as turn {turn_id}: read it, answer it or hand back again")
        self.turn_id = turn_id


class WroteToTheBot(Overtaken):
    """The customer wrote after the latest turn read by the agent whose reply would take the conversation over from
    the bot (``Store.wrote_since``): they went back to the bot meanwhile ("Back to the bot"), or went on with it, and
    the reply, written to what came before, pulled them back to a person without a word of what they wrote."""

    code = "wrote_to_the_bot"

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"the customer wrote to the bot meanwhile, as turn {turn_id}: read it, then send yours again "
                         "if it is still needed (it takes the conversation over)")
        self.turn_id = turn_id


class HeldByColleague(Overtaken):
    """Another agent has the customer (:meth:`Store.holder`) than the one handing them back or replying (their name
    as :func:`agent_key` reads it; an agent giving none is not the one who has them): one agent handed a colleague's
    customer back to the bot, or answered them beside the colleague, unasked. ``force``, a lead's explicit
    override, lets it through."""

    code = "held"

    def __init__(self, holder: str) -> None:
        super().__init__(f"{holder} has this customer: ask them, or send it again with force to override")
        self.fields = {"agent": holder}


class NotTheAuthor(Exception):
    """An agent deleting or editing (``what``) a note another agent wrote (``Store.delete_note``, ``Store.edit_note``):
    a note is its author's to take back or correct. ``author``: who wrote it."""

    def __init__(self, author: str, what: str = "delete") -> None:
        super().__init__(f"{author} wrote this note: only they can {what} it")
        self.author = author


class LabelledMeanwhile(Exception):
    """Another reviewer labelled the item first (two reviewers working one queue), or its conversation
    was purged since it was shown. ``label``: the other reviewer's (a ``review_labels`` row), if any. ``yours``:
    it was labelled by the ``reviewer`` labelling it again (the same name, as :func:`agent_key` reads names: their
    second window), who is told so rather than of a colleague, as :class:`RepliedMeanwhile` tells an agent."""

    label: dict[str, Any] | None = None
    yours = False

    @classmethod
    def by(cls, label: dict[str, Any], reviewer: str | None = None) -> LabelledMeanwhile:
        """Said of a turn's ``label`` to ``reviewer``: who labelled it, and as what."""
        yours = bool(agent_key(reviewer)) and agent_key(label["reviewer"]) == agent_key(reviewer)
        by = f" by you ({label['reviewer']}) from another window" if yours else \
            f" by {label['reviewer']}" if label["reviewer"] else ""
        said = cls(f"turn {label['turn_id']} was labelled meanwhile{by}, as {label['intent']}")
        said.label, said.yours = label, yours
        return said


# How often a server renews the turns it runs in the store (Store.renew_turn), and how long since the last renewal
# before the other servers on it take a turn for a hung server's, theirs to run (see bot/engine.py).
TURN_RENEW_S = 2.0
TURN_STALE_S = 5 * TURN_RENEW_S
BUSY_TIMEOUT_S = 30  # how long a write waits for another process's transaction before it fails
# A lease in the store (a conversation's turn, Store.take_turn; a web message's claim, Store.claim): what it is, with
# the server holding it, and its stamp, the holder's wall-clock time at its last renewal.
Lease = tuple[str | None, ...]
# Whether a lease is stale, from its identity and stamp (LeaseWatch.stale, as a serving server sees it).
Staleness = Callable[[Lease, float], bool]
# The tables of the turns a server takes in a conversation (Store.take_turn): to run its turn (_v41), to send its
# customer a message, all its pieces (_v53).
LEASES = {"turn": "turn_leases", "send": "send_turns"}


class LeaseWatch:
    """Whether the leases of the servers on a store are stale, as this server sees them: a lease whose stamp has not
    changed for ``stale_s`` on this server's steady clock (``clock``), its holder no longer renewing it (hung). The
    stamps are each holder's wall-clock time, which NTP or a resumed VM steps on one server alone: read against this
    server's wall clock, a step of ``TURN_STALE_S`` forward here, or back on the holder, handed a live turn or claim
    over to this server. Called on the store's thread alone."""

    FORGET_S = 60.0  # a lease not looked at for this long is forgotten: it ended, or this server took it

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # lease -> its stamp, when this server first saw that stamp, and when it last looked
        self._seen: dict[Lease, tuple[float, float, float]] = {}
        self._forgot = clock()  # when the leases no longer looked at were last forgotten

    def stale(self, lease: Lease, stamp: float, stale_s: float) -> bool:
        """Whether ``lease`` has kept ``stamp`` for ``stale_s`` or more as this server watched it; a lease seen first
        or renewed since is watched from now. The leases not looked at for ``FORGET_S`` are forgotten, so that those
        watched are the ones waited for lately; one looked at again is watched from scratch."""
        now = self._clock()
        if now - self._forgot >= self.FORGET_S:
            self._seen = {seen: watched for seen, watched in self._seen.items() if now - watched[2] < self.FORGET_S}
            self._forgot = now
        kept, since, _ = self._seen.get(lease, (stamp, now, now))
        if kept != stamp:
            since = now
        self._seen[lease] = (stamp, since, now)
        return now - since >= stale_s
RENEW_BUSY_S = 2.0  # and a renewal of a server's turn or claim (Store.renewer), tried again every 2 s
# The log (dialogues.db-wal) grows while reads overlap without a gap (agents' consoles asking for the day's
# figures beside a busy server): past this size it is cut back once they leave it a moment, not kept at its peak.
WAL_SIZE_LIMIT = 64 << 20
SLOW_LOCK_S = 2.0  # a write that waits this long for another process's lock is said in the log
STUCK_WRITE_S = 10.0  # a write transaction that has held the lock this long waits on its disk: /healthz turns 503
LOCK_WAIT_SAID_EVERY_S = 60.0  # and said again only after this long, however many writes wait
CHECKPOINT_TRY_MS = 20  # how long one try to empty the WAL after a purge waits for readers, holding the write lock
CHECKPOINT_PAUSE_S = 0.1  # between those tries, for the serving bot's writes
# Conversations ``Store.purge`` deletes in one transaction, while a serving bot's writes wait (a few ms).
PURGE_BATCH = 20
# The rows `bot redact` and the slots' round (Store.redact_stored, Store.forget_idle_slots) rewrite a transaction: a
# serving bot's writes wait for one batch, not for a whole store's.
REWRITE_BATCH = 500
# The ids one query's IN (...) lists: SQLite refuses a statement with more than 32,766 values (999 before 3.32), and
# a first `bot purge --before` or retention round on a store of years names every conversation it deletes.
IDS_A_QUERY = 900
# A conversation, as ``c``, with something written since a cutoff (a message, reply or handoff), or whose turn a
# server runs now, its message not logged yet (``_v41``), its lease renewed since the cutoff too: a purge's clock
# stepped forward (NTP, a resumed VM) read a lease renewed all along as stale, and a retention purge deleted a
# conversation whose turn a server ran. Its values: _written_since_args(cutoff).
_WRITTEN_SINCE = ("(coalesce(c.updated, c.created, 0) >= ? OR EXISTS "
                  "(SELECT 1 FROM turns t WHERE t.conversation_id = c.id AND t.created >= ?) OR EXISTS "
                  "(SELECT 1 FROM turn_leases l WHERE l.conversation_id = c.id AND l.taken >= ?))")


def _window_around(at: float, window_s: float) -> tuple[float, float]:
    """The times a count of the last ``window_s`` seconds at ``at`` takes in, a row stamped later than now among them
    (a clock set back since, by up to the window, or another server's clock ahead of this one's): a clock set back an
    hour kept the rows stamped in the minute before within every window for that hour, and a customer or employee at
    the limit then was held for it. Those stamped later still are of before a larger step, and past."""
    return at - window_s, at + window_s


def _wait_from(stamp: float, at: float, window_s: float) -> float:
    """Seconds until a row stamped ``stamp`` leaves the window at ``at``: never more than the window, as if one stamped
    later than now was stamped now."""
    return min(stamp, at) + window_s - at


def _written_since_args(before: float) -> list[float]:
    """The values of :data:`_WRITTEN_SINCE` for the cutoff ``before``, read now."""
    return [before, before, min(before, now() - TURN_STALE_S)]


# A purge whose cutoff is this close to now watches the turn leases of the conversations it would delete for
# TURN_STALE_S (Store.conversation_ids): their stamps alone cannot tell a hung server's from one read on a clock
# stepped forward. Further back (a retention round's days), a step that large is not met.
LEASE_WATCH_WITHIN_S = 3600.0


def cannot_open(path: Path, exc: sqlite3.Error, reading: bool = False) -> StoreError:
    """Why the store at ``path`` could not be opened (``reading``: to be read alone), and what to do about it."""
    if no_space(path, exc):
        return StoreError(f"{path}: cannot read it ({exc}): SQLite must create {path.name}-shm beside it to read the "
                          "log a server left; free some space on its disk" if reading else
                          f"{path}: cannot write it ({exc}): free some space on its disk")
    if read_only_disk(path):
        return Unwritable(f"{path}: cannot open it ({exc}): its disk is read-only; {READ_ONLY_DISK_ADVICE}")
    if "disk I/O" in str(exc):
        return StoreError(f"{path}: cannot open it ({exc}): its disk failed to read or write it; check the disk")
    if "locked" in str(exc):  # another process's transaction outlasted the busy timeout
        return StoreError(f"{path}: cannot open it ({exc}): another process has held it locked for {BUSY_TIMEOUT_S} s "
                          "(a sqlite3 shell or a backup in a transaction?): end that, then start again")
    refused = Unwritable if _write_refused(path) else StoreError
    return refused(f"{path}: cannot open it ({exc}): it must be a file this user can read and write, "
                   "in a folder it can write (SQLite keeps its log beside it)")


def _write_refused(path: Path) -> bool:
    """Whether this user may not write the store at ``path``: its folder, or the file, its -wal or -shm file where
    there is one (their permissions, a read-only mount; root is refused only the latter)."""
    files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
    return not os.access(path.parent, os.W_OK) or any(file.exists() and not os.access(file, os.W_OK) for file in files)


def _openers(path: Path) -> list[str]:
    """The other processes that have the file ``path`` open, each as "PID (its command line)", read from /proc
    (Linux; none elsewhere, or where /proc hides them): the one holding the store locked is among them."""
    target = str(path.resolve())
    return _opened_by(lambda opened: opened == target)


def _opened_by(opened: Callable[[str], bool]) -> list[str]:
    """The other processes that have a file open whose path, as /proc names it (with " (deleted)" after it once
    deleted), ``opened`` accepts, each as "PID (its command line)"; none where /proc is not (Linux alone)."""
    found: list[str] = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if int(process.name) == os.getpid() or not any(
                    opened(os.readlink(fd)) for fd in (process / "fd").iterdir()):
                continue
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or another user's
            continue
        found.append(f"{process.name} ({command[:120]})")
    return found


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and writes nothing. SQLite reads a WAL file through its -shm file, which
    it creates if need be: on a full or read-only disk it cannot, and `bot backup` and `bot stats` of a stopped
    server failed. With no -wal file beside it, or an empty one (which that failed read leaves), nothing waits in
    a log, so the file is read as it is (``immutable``), without a -shm file; with the log a killed server left,
    through :func:`_read_log_alone`."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    options: dict[str, Any] = {"uri": True, "check_same_thread": False, "isolation_level": None,
                               "timeout": BUSY_TIMEOUT_S}
    conn = sqlite3.connect(uri, **options)
    try:
        conn.execute("PRAGMA user_version").fetchone()  # the first read creates the -shm file
    except sqlite3.OperationalError:
        wal = Path(f"{path}-wal")
        if not path.is_file():
            return conn  # its read fails again, said as such
        conn.close()
        if wal.exists() and wal.stat().st_size:  # a killed server's log, read without a -shm file if it can be
            return _read_log_alone(path, options) or sqlite3.connect(uri, **options)  # (else said as it fails)
        return sqlite3.connect(f"{uri}&immutable=1", **options)
    return conn


def _read_log_alone(path: Path, options: dict[str, Any]) -> sqlite3.Connection | None:
    """A connection that reads ``path`` and the -wal file a killed server left without a -shm file, which a full disk
    has no room for: `bot backup` of such a store failed until space was freed, the night a backup was wanted most.
    SQLite keeps the log's index in the connection's memory in exclusive locking mode, which a read-only connection
    cannot take, so this one may write and is told not to (``query_only``). None where another process has the file
    open (the lock is refused at once, never taken from a server) or the disk refuses even this (read-only)."""
    conn = sqlite3.connect(path.resolve().as_uri(), **{**options, "timeout": 0})
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error:
        conn.close()
        return None
    return conn


def _use_wal(db: sqlite_utils.Database) -> None:
    """Switch the file to WAL. The switch takes the file whole, and SQLite answers "locked" at once, without
    waiting as its busy timeout says, when another process opens or switches a new file at the same moment
    (a server and a cron job's `bot export`): it is tried again for up to ``BUSY_TIMEOUT_S``, the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _create_private(path: Path) -> None:
    """Create a new store's file readable and writable by its owner alone, whatever the umask: it holds what
    customers wrote, and made by SQLite it was readable by every account on the machine (a umask of 022), as
    were its -wal and -shm files, which SQLite creates with the mode of the file. An existing file keeps the mode
    it has; a folder this user cannot write is left for SQLite to refuse, as it says why."""
    with contextlib.suppress(OSError):
        os.close(owner_only(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))


def _migration_of(path: Path) -> int | None:
    """The migration the store at ``path`` is at, read without writing to it, before it is opened to be served or
    migrated; None where it cannot be read, which the :class:`Store` that opens it says."""
    try:
        with contextlib.closing(_connect_read_only(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None


def refuse_newer(path: Path, folder: Path | None = None) -> None:
    """Refuse a store a newer deskbot migrated, before ``bot serve`` loads its model (minutes for a large one, to
    refuse after them), naming the command that puts back its copy into the bot folder ``folder``
    (:class:`WrittenByNewer`); anything else wrong with the file is said as the server opens it."""
    if (version := _migration_of(path)) is not None and version > len(MIGRATIONS):
        raise WrittenByNewer(path, version, folder)


def _server_files(servers: Path) -> list[Path]:
    """The servers' lock files in the folder ``servers`` (:meth:`Store.serve`): a link, a folder or another file left
    there is none, and must not stop a start."""
    return [path for path in servers.glob("*.lock") if re.fullmatch(r"[0-9a-f]{32}", path.stem)
            and not path.is_symlink() and path.is_file()]


def _gone(lock_file: Path) -> FileLock | None:
    """The lock of the server ``lock_file`` names (:meth:`Store.serve`), taken, where that server is gone; None while
    it is alive (or the file is not this user's to open)."""
    lock = FileLock(lock_file, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return None
    return lock


def refuse_migrating_under_a_server(path: Path, folder: Path | None = None) -> None:
    """Refuse to migrate an older deskbot's store while a ``bot serve`` runs on it (a command that writes, ``bot
    purge`` from a cron job): the older server would go on writing to a schema it does not know. The start of this
    deskbot's ``bot serve`` of the bot folder ``folder`` (the store's own folder where not given) migrates it, as a
    rolling upgrade does."""
    if (version := _migration_of(path)) is None or not 0 < version < len(MIGRATIONS):
        return
    if is_served(path):
        raise StoreError(f"{path} is at migration {version}, this deskbot needs {len(MIGRATIONS)}, and an older "
                         "deskbot's `bot serve` is running on it: stop it and start this deskbot's, `bot serve "
                         f"{shlex.quote(str(folder or path.parent))}`, which migrates the store as it starts (keeping "
                         "a copy as it was), then run this again")


def is_served(path: Path) -> bool:
    """Whether a ``bot serve`` runs on the store at ``path`` (holds its lock file, :meth:`Store.serve`). One whose
    file was deleted, or its folder (a cleaner), holds it still until its next round locks a new one
    (``server.ADOPT_EVERY_S``), and an older deskbot's web-only server never did: found open in /proc, where there is
    one."""
    real = path.resolve()
    servers = real.with_name(f".{real.name}.servers")
    for lock_file in _server_files(servers):
        if (lock := _gone(lock_file)) is None:
            return True
        lock.release()
    return bool(_opened_by(lambda opened: opened.startswith(f"{servers}{os.sep}") and opened.endswith(".lock (deleted)")))


def restore(path: Path, copy: Path) -> Path | None:
    """Put ``copy`` (a ``bot backup``) back as the store at ``path``, with no server on it, and return where the store
    it replaces was kept (None where there was none): as ``dialogues.db.replaced-STAMP``, with its -wal file, which
    holds what it logged last. Put back by hand beside the -wal file a killed server left, a copy was overlaid by that
    log as it opened, and the restore undone or the store damaged."""
    if is_served(path):
        raise StoreError(f"{path}: a `bot serve` is running on it: stop it, then restore")
    if openers := _openers(path):  # a `bot review` or `bot chat` went on writing to the store put aside, and lost it
        raise StoreError(f"{path} is open in another process ({'; '.join(openers)}): let it end or stop it, then "
                         "restore")
    with contextlib.closing(_connect_read_only(copy)) as source:
        try:
            _check_is_ours(source, copy, reading=True)
        except WrittenByNewer as newer:  # its sibling's `bot restore` would name the copy's folder as the bot's
            raise StoreError(f"{copy} is a copy of a store a newer deskbot migrated (schema {newer.version}; this one "
                             f"reads up to {len(MIGRATIONS)}), which this deskbot cannot serve: nothing was restored; "
                             "restore a copy taken before that upgrade, or restore this one with the newer deskbot"
                             ) from None
        if (damage := _damage(source)) is not None:
            raise StoreError(f"{copy} is damaged ({damage}): nothing was restored; restore another copy")
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".restoring", dir=path.parent)
        os.close(handle)
        restoring = Path(name)
        try:
            with contextlib.closing(sqlite3.connect(restoring)) as target:  # in steps, which SIGTERM may stop
                source.backup(target, pages=BACKUP_STEP_PAGES, progress=_between_steps)
                # a name of its own (_v54; one older is named as it is migrated): the copy holds the name of the store
                # it was taken from, whose inbox's version the consoles hold may name other content than the copy's
                if target.execute("SELECT 1 FROM sqlite_master WHERE name = 'store_identity'").fetchone():
                    with target:
                        target.execute(NEW_IDENTITY)
                target.execute("PRAGMA journal_mode=DELETE")
            fsync_path(restoring)
            aside = _aside(path)
            kept = path.exists()
            for end in ("-wal", "-shm", ""):  # the log first: a store renamed without it would lose what it holds
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{path}{end}", f"{aside}{end}")
            os.replace(restoring, path)
        finally:
            _remove_copy(restoring)
    fsync_path(path.parent)
    return aside if kept else None


def held_in(copy: Path, conversation_ids: Iterable[str]) -> set[str] | None:
    """Which of ``conversation_ids`` a copy of the store (an upgrade's ``.schemaN.bak``, a restore's
    ``.replaced-STAMP``) holds a message of, read from the copy and its -wal file without writing to either: a purge
    names the copies that still hold its customers, and none of those that never did. None where the copy cannot be
    read (damaged, another program's file), which may hold any of them."""
    try:
        with contextlib.closing(_connect_read_only(copy)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "conversations" not in tables:
                return None
            # An older deskbot's copy may lack the later tables (``pending``).
            reads = [read for table, read in (("conversations", "SELECT 1 FROM conversations WHERE id = :id"),
                                              ("turns", "SELECT 1 FROM turns WHERE conversation_id = :id"),
                                              ("pending", "SELECT 1 FROM pending WHERE conversation_id = :id"))
                     if table in tables]
            holds = " UNION ALL ".join(reads) + " LIMIT 1"
            return {cid for cid in conversation_ids if conn.execute(holds, {"id": cid}).fetchone()}
    except sqlite3.DatabaseError:
        return None


def _aside(path: Path) -> Path:
    """Where :func:`restore` keeps the store it replaces: ``dialogues.db.replaced-STAMP``, or ``-STAMP-2`` and on
    where an earlier restore took that name (two in one second, a script's): the second's copy replaced the first's,
    and the store as it was before both was lost."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = (path.with_name(f"{path.name}.replaced-{stamp}{'' if n == 1 else f'-{n}'}") for n in itertools.count(1))
    return next(aside for aside in names if not any(Path(f"{aside}{end}").exists() for end in ("", "-wal", "-shm")))


def _check_is_ours(conn: sqlite3.Connection, path: Path, reading: bool = False, newer_too: bool = False) -> None:
    """Refuse, before a byte is written, a file deskbot did not make or cannot read: a migration or the
    switch to WAL would change another program's database. ``newer_too``: a newer deskbot's store is taken too, to be
    copied as it is, not read."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.OperationalError as exc:  # a folder, or a store in a folder this user cannot write
        raise cannot_open(path, exc, reading) from None
    except sqlite3.DatabaseError as exc:
        if damaged(exc):  # a store whose schema's pages a failing disk or a copy made halfway spoilt
            raise StoreError(f"{path} is damaged ({exc}). {DAMAGED_ADVICE}") from None
        raise StoreError(f"{path}: not a conversation store: {exc}") from None
    if version > len(MIGRATIONS) and not newer_too:
        raise WrittenByNewer(path, version)
    if version == 0 and tables:
        raise StoreError(f"{path}: not a conversation store (it holds other tables); move it out of the bot folder")


def open_to_read(path: Path) -> Store:
    """``path`` opened for reading alone, refused if an older deskbot's: a command that reads (``bot stats``, ``bot
    export``, a retrain) migrated it, under an older ``bot serve`` still running on it, which went on writing to a
    schema it does not know. ``bot serve`` of this deskbot migrates it, keeping a copy of it as it was."""
    store = Store(path, read_only=True)
    if store.behind:
        schema = store.schema
        store.close()
        raise StoreError(f"{path} is at migration {schema}, this deskbot needs {len(MIGRATIONS)}: start `bot serve` "
                         "of this deskbot on it first, which migrates it (keeping a copy as it was); a command that "
                         "only reads leaves it as it is, since an older `bot serve` may still be running on it")
    return store


_Read = TypeVar("_Read")


def read_as_it_is(path: Path, read: Callable[[Store], _Read]) -> _Read:
    """``read`` of the store at ``path``, opened for reading alone and, an older deskbot's, as it is: deskbot upgraded,
    its older `bot serve` may still run on it, which a migration would leave writing to a schema it does not know.
    :class:`TooOld` where an older store lacks a table or column ``read`` needs."""
    store = Store(path, read_only=True)
    try:
        return read(store)
    except sqlite3.OperationalError as exc:
        if not store.behind:
            raise
        raise TooOld(f"{path} is at migration {store.schema}, an older deskbot's, which lacks what this reads "
                     f"({exc})") from None
    finally:
        store.close()


# An agent turn's author (the name the agent gave), kept in ``turns.user``; customers' ids are not shown.
_AUTHOR = "CASE WHEN t.role = 'agent' THEN t.user END AS author"
_TYPED = "role = 'user' AND substr(text, 1, 1) != '/'"  # what a customer typed, not a button's payload
# As the customer wrote it (``raw_text``), as the transcript shows it, not as the model read it.
_LATEST_TYPED = f"(SELECT coalesce(raw_text, text) FROM turns WHERE conversation_id = c.id AND {_TYPED} ORDER BY id DESC LIMIT 1)"
# Handed-off conversations as the agents' inbox shows them. A customer waits from the handoff (or from an agent's
# latest release of them, ``Store.pass_on``, a wait for a person anew) until an agent's first reply, and again from
# their first message after an agent's latest reply; ``waiting_since`` is null while the latest word is the agent's.
_WAIT_BEGAN = "coalesce((SELECT max(created) FROM takeovers WHERE handoff_id = h.id AND agent IS NULL), h.created)"
_AGENT_SINCE = ("FROM turns WHERE conversation_id = c.id AND role = 'agent' AND undelivered IS NULL "
                f"AND created >= {_WAIT_BEGAN}")
# ``bot chat``'s conversations are the shop trying its bot in a terminal, where no agent's reply can reach:
# they are in no agents' inbox, nobody waits in them, and ``bot stats`` leaves them out.
TRYOUT_CHANNEL = "cli"
_AGENTS_REACH = f"c.channel != '{TRYOUT_CHANNEL}'"
PASSED_LISTED = 100  # the customers passed to an agent that their inbox names (Store.passed_to), the latest
# How long a customer someone else handed back to the bot is named to the agent who had them (Store.taken_from): a day,
# their shift and the night after. They stay with the bot for good, where a customer moved to a colleague or released
# is soon theirs or a colleague's again, and the console of an agent opened in a new browser told weeks of them.
HANDED_BACK_TOLD_S = 24 * 3600


def told_until(taken: list[dict[str, Any]]) -> float | None:
    """When the first handback among ``taken`` (:meth:`Store.taken_from`'s) is no longer named: an answer that names it
    is out of date then, with nothing committed since. None where none is named."""
    return min((item["at"] + HANDED_BACK_TOLD_S for item in taken if item["handed_back"]), default=None)


def still_before(moment: float) -> bool:
    """Whether the store's clock is still before ``moment`` (a :func:`told_until`)."""
    return now() < moment


OTHERS_SHOWN = 20  # a customer's other conversations a transcript names (Store.others), the latest
# The customer's id as the shop's server vouched for it, from the slot the web channel keeps (bot.project.VERIFIED_USER):
# the ``user`` column is what the first message's page said, which proves nothing.
_VERIFIED_SLOT = "verified_user"
_VERIFIED = f"json_extract(c.slots, '$.{_VERIFIED_SLOT}') AS verified_user"
# The agent who took a handed-off customer over: the latest lead's forced takeover's (``_v24``), else the handoff's.
_TAKER = "CASE WHEN k.id IS NULL THEN h.agent ELSE k.agent END"
_VERIFIED_OF_C = f"json_extract(c.slots, '$.{_VERIFIED_SLOT}')"


@dataclass(frozen=True)
class Search:
    """What an agent looks for among the conversations (``Store.inbox``): ``text`` in a conversation's id, its customer,
    its verified customer, or a message the customer wrote (its ``typed`` columns: as the model read it, and as typed),
    in any letter case and width (ＡＢ12 for ab12; SQLite's lower() folds A to Z alone, so the text is NFKC-folded
    here, as the model's copy of a message is), and in either Chinese script (:func:`~retrieval.text.spellings`): an
    agent typing 退货 looks for the 退貨 a Hong Kong customer wrote, and one typing 訂單 for a Mainland customer's 订单.
    A log tag (:func:`log_tag`) alone finds the conversation the log names by it, for whoever on call follows a
    warning to it. Empty matches every conversation."""

    text: str
    typed: tuple[str, ...]

    @property
    def spelled(self) -> list[str]:
        """``text`` as customers in either Chinese script write it, each folded as ``text`` is."""
        return sorted({unicodedata.normalize("NFKC", spelling).lower() for spelling in spellings(self.text)})

    @property
    def indexed(self) -> bool:
        """Whether the customers' messages are looked up in their full-text index (``_v26``): its trigrams find a text
        of 3 characters or more; a shorter one (退款, a reference's 2 digits) is looked for in every message."""
        return min(map(len, self.spelled)) >= 3

    @property
    def tagged(self) -> bool:
        """Whether ``text`` is a log tag, which names the conversation alone."""
        return LOG_TAG.fullmatch(self.text) is not None

    def sql(self, conversation_id: str, user: str, verified: str) -> str:
        """True for a conversation that holds the text, given the SQL of its id, customer and verified customer."""
        if not self.text:
            return "1"
        if self.tagged:
            return f"log_tag({conversation_id}) = ?"
        if self.indexed:
            wrote = (f"{conversation_id} IN (SELECT t.conversation_id FROM turns_fts f JOIN turns t ON t.id = f.rowid "
                     "WHERE turns_fts MATCH ?)")
        else:
            typed = " OR ".join(f"instr(lower(coalesce({column}, '')), ?)" for column in self.typed
                                for _ in self.spelled)
            wrote = f"EXISTS (SELECT 1 FROM turns WHERE conversation_id = {conversation_id} AND role = 'user' AND ({typed}))"
        return (f"(instr(lower({conversation_id}), ?) OR instr(lower(coalesce({user}, '')), ?) OR "
                f"instr(lower(coalesce({verified}, '')), ?) OR {wrote})")

    def args(self) -> list[str]:
        """The parameters of :meth:`sql`: the text itself, and its spellings in the ``typed`` columns (for the index,
        a phrase of each)."""
        if not self.text:
            return []
        if self.tagged:
            return [self.text]
        if self.indexed:
            phrases = " OR ".join('"' + spelling.replace('"', '""') + '"' for spelling in self.spelled)
            return [self.text] * 3 + [f"{{{' '.join(self.typed)}}} : ({phrases})"]
        return [self.text] * 3 + self.spelled * len(self.typed)


# who has the customer: the agent who replied last since the handoff (or since a lead took it over from them: its
# latest takeover, k), else the one who took it over, named as they took it over when they are the one who replied
# ("Ana", replying as "ana" from another window)
_HOLDER = (f"coalesce((SELECT CASE WHEN agent_key(user) = agent_key({_TAKER}) THEN {_TAKER} ELSE user END FROM turns "
           "WHERE conversation_id = c.id AND role = 'agent' AND user IS NOT NULL "
           f"AND created >= coalesce(k.created, h.taken, h.created) ORDER BY id DESC LIMIT 1), {_TAKER})")
# a conversation c's latest handoff, h, and that handoff's latest takeover, k
_HANDED_OFF_JOINS = (
    "JOIN handoffs h ON h.id = (SELECT max(id) FROM handoffs WHERE conversation_id = c.id AND event = 'handed_off') "
    "LEFT JOIN takeovers k ON k.id = (SELECT max(id) FROM takeovers WHERE handoff_id = h.id)"
)
# c is handed off, and in the agents' reach
_HANDED_OFF_NOW = f"c.status = 'handed_off' AND {_AGENTS_REACH}"
# each handed-off conversation with its latest handoff, h, and that handoff's latest takeover, k
_HANDED_OFF_FROM = f"FROM conversations c {_HANDED_OFF_JOINS} WHERE {_HANDED_OFF_NOW}"
# each handed-off conversation's handoff time and holder alone: what :meth:`Store.holders` reads, without the waits,
# counts and latest message of ``_HANDED_OFF``
_HELD = f"SELECT c.id AS conversation_id, h.created AS handed_off_at, {_HOLDER} AS agent {_HANDED_OFF_FROM}"


def _moved_held(moved: str) -> str:
    """The latest takeovers (every column of ``takeovers``) that meet the SQL condition ``moved`` (on ``t``), of the
    conversations handed off now, each with its latest handoff's time (``handed_off_at``) and who has the customer
    (``holder``): what :meth:`Store.passed_to` and :meth:`Store.taken_from` read. Read from those takeovers first, and
    the holder of theirs alone (CROSS JOIN keeps that order): read for every handed-off conversation, both went over
    5,000 of them at each console's poll, 30 consoles every 3 s during a sale, for the few an agent's name is on.
    ``moved`` names the agent by ``agent_folded`` or ``previous_folded`` (``_v50``), so that the takeovers the agent's
    name is on are found by index: every takeover kept until a purge took its conversation was looked at, 120 to 160 ms
    each with 100,000 kept."""
    return (f"SELECT t.*, h.created AS handed_off_at, {_HOLDER} AS holder FROM takeovers t "
            f"CROSS JOIN conversations c ON c.id = t.conversation_id {_HANDED_OFF_JOINS} "
            f"WHERE t.id = (SELECT max(id) FROM takeovers WHERE conversation_id = t.conversation_id) AND ({moved}) "
            f"AND {_HANDED_OFF_NOW}")


_HANDED_OFF = (
    f"SELECT c.id AS conversation_id, c.channel, c.user, {_VERIFIED}, c.status, c.created, c.updated, "
    f"h.created AS handed_off_at, h.reason, {_HOLDER} AS agent, "
    f"CASE WHEN NOT EXISTS (SELECT 1 {_AGENT_SINCE}) THEN {_WAIT_BEGAN} "
    "ELSE (SELECT min(created) FROM turns WHERE conversation_id = c.id AND role = 'user' "
    f"AND id > (SELECT max(id) {_AGENT_SINCE})) END AS waiting_since, {_LATEST_TYPED} AS last_message, "
    # what the customer wrote that no agent has answered: since an agent's latest reply, else since the handoff
    f"(SELECT count(*) FROM turns WHERE conversation_id = c.id AND {_TYPED} AND created >= {_WAIT_BEGAN} "
    f"AND id > coalesce((SELECT max(id) {_AGENT_SINCE}), 0)) AS unread {_HANDED_OFF_FROM}"
)


def redacted_payload(payload: Any) -> Any:
    """``payload`` (a custom payload, a slot's value) with each of its texts redacted, its keys, numbers and structure as
    they are."""
    if isinstance(payload, str):
        return redact(payload)
    if isinstance(payload, list):
        return [redacted_payload(item) for item in payload]
    if isinstance(payload, dict):
        return {key: redacted_payload(value) for key, value in payload.items()}
    return payload


def _texts_kept(text: str, raw_text: str | None, private: Callable[[str], str], keep_raw: bool) -> tuple[str, str | None]:
    """A customer's message as the model read it (``text``) and as typed (``raw_text``; None: the same), as ``private``
    and ``keep_raw`` keep them: the typed copy only where it differs, unredacted with ``keep_raw``."""
    received = text if raw_text is None else raw_text
    stored = private(text)
    kept = received if keep_raw else private(received)
    return stored, (kept if kept != stored else None)


def _with_slots(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``slots`` column read from the JSON it is stored as."""
    row["slots"] = json.loads(row["slots"] or "{}")
    return row


@dataclass
class Exchange:
    """What one user turn produced, as written in one transaction."""

    conversation_id: str
    channel: str
    user: str | None
    text: str
    raw_text: str | None
    reply: str | None
    intent: str | None
    confidence: float
    ranking: list[tuple[str, float]]
    source: str
    model_version: str | None
    retrieval_score: float | None = None
    slots: dict[str, Any] | None = None  # the conversation's slots after this turn
    fallbacks: int = 0  # consecutive fallbacks after this turn
    active_loop: str | None = None  # the action that asked for a slot (Rasa's requested_slot) and awaits it
    pending_id: int | None = None  # the message's row in ``pending``, which names the answer in the same transaction
    buttons: list[dict[str, str]] | None = None  # the reply's, offered again when the history is read
    # The reply repeats the conversation's values, which may be what the customer wrote ("refund for card
    # 4111 …" from an action, "I can cancel order {order_id}" filled from their message), so it is kept as
    # their message is; other replies are the shop's own words (its phone number) and are kept as shown.
    quotes: bool = False
    # Why the reply hands the conversation to a person (the handoff's reason), recorded with it: written
    # apart, a server killed in between sent "connecting you to a person" and left the conversation open,
    # in no agent's inbox.
    handoff: str | None = None
    # The custom payloads the web chat passed on (an action's json_message, a response's custom:), kept with the reply;
    # a reply of those alone is kept as CUSTOM_PLACEHOLDER, so the transcript shows the bot answered.
    custom: list[Any] | None = None
    # An action took the message back (Rasa's UserUtteranceReverted): kept for the agents, and listed in later
    # actions' trackers followed by a rewind, as Rasa lists it, which rasa-sdk's applied_events() leaves out.
    reverted: bool = False
    # An action started the conversation afresh (Rasa's Restarted, or a FollowupAction("action_restart")): listed in
    # later actions' trackers after its reply as Rasa's restart, which rasa-sdk's tracker starts after.
    restarted: bool = False
    # The Rasa form an action activated (ActiveLoop("order_form")), kept while ``active_loop`` awaits the answer: the
    # actions' trackers name it as their active loop, as Rasa's do
    active_form: str | None = None
    # The reply's messages in the order an action sent them ({"text": ...} or {"custom": ...} each), where its reply
    # and custom would change it (a text after a payload), as /api/chat lists them; kept for the history to show.
    messages: list[dict[str, Any]] | None = None
    message_id: str | None = None  # the web client's own id of the message, which its Retry sends again (_v33)
    # The slots as the turn read them: what it changed of them is made to the slots as they are when written (None:
    # ``slots`` are written whole). Another server on the store may have answered a message of the conversation since.
    slots_read: dict[str, Any] | None = None
    # The count of fallbacks in a row as the turn read it: a miss adds to the count as it is when written, an
    # acknowledgement leaves it (None: ``fallbacks`` is written as it is, as an answer starts the count again: read as
    # 0, its 0 looked like an acknowledgement's, which left another server's miss counted).
    fallbacks_read: int | None = None
    # The waiting action and form as the turn read them: a turn that left them as read leaves them as they are when
    # written, which another server's turn of the conversation may have changed meanwhile (None: written as they are).
    loop_read: tuple[str | None, str | None] | None = None
    handed_off: bool = field(default=False, init=False)  # set as written: False when a person had it already
    # Set as written: the customer deleted the message while the bot worked on it (Store.replace_message), and its
    # reply, not kept, is not to be sent: it would answer nothing in a thread the customer emptied.
    deleted: bool = field(default=False, init=False)
    # Written only while this serving store's server holds the conversation's turn (Store.take_turn): a turn another
    # server on the store took over meanwhile (this one went ``TURN_STALE_S`` without renewing it: hung, or too slow)
    # is that server's to answer now, and this one's answer would be a second one.
    leased: bool = False
    # Set as written: the turn, or the claim of its web message (``Store.claim``), was no longer this server's
    # (``leased``); its reply, not kept, is not to be sent.
    overtaken: bool = field(default=False, init=False)


class Marks(NamedTuple):
    """The latest ids of the tables :meth:`Store.said_elsewhere` reads, from which it reads on at its next call."""

    turns: int
    handoffs: int
    takeovers: int
    handoff_claims: int


# The names of the support team members a conversation names (its agents' turns, handoffs and takeovers, :meth:`
# Store.member_names`), with its channel: ``Store.purge`` looks, once it is deleted, whether any other still does.
_NAMED_IN = "".join(f"UNION SELECT {column} FROM {table} WHERE conversation_id = :id "
                    for table in ("handoffs", "takeovers") for column in ("agent", "previous"))
_MEMBERS_NAMED = ("SELECT (SELECT channel FROM conversations WHERE id = :id), name FROM (SELECT user AS name "
                  f"FROM turns WHERE conversation_id = :id AND role = 'agent' {_NAMED_IN}) WHERE name IS NOT NULL")
_IN_CHANNEL = "conversation_id IN (SELECT id FROM conversations WHERE channel = :channel)"
# A member kept by ``name`` in ``channel`` (``_v43``) whom none of the channel's conversations names any more.
_FORGET_MEMBER = ("DELETE FROM members WHERE channel = :channel AND name = :name AND NOT EXISTS (SELECT 1 FROM turns "
                  f"WHERE role = 'agent' AND user = :name AND {_IN_CHANNEL})"
                  + "".join(f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE {column} = :name AND {_IN_CHANNEL})"
                            for table in ("handoffs", "takeovers") for column in ("agent", "previous")))


@dataclass
class Purged:
    """What ``Store.purge`` deleted: the rows per table of each conversation, and whether the WAL went too."""

    deleted: dict[str, dict[str, int]]
    wal_cleared: bool
    # those left as their customer came back since they were chosen (``Store.purge``'s ``before`` and ``chosen_at``),
    # oldest first
    skipped: list[str] = field(default_factory=list)


class HighWater(NamedTuple):
    """The highest turn id and platform message (``pending``) id the store held as ``bot purge`` chose the
    conversations it deletes, and when (:meth:`Store.high_water`): a conversation with a message above them, or
    stamped since (an id a deleted row left may be given again), was written to since."""

    turn: int
    pending: int
    at: float


@dataclass
class Redacted:
    """What ``Store.redact_stored`` rewrote (or, a dry run, would): customers' messages, feedback comments,
    conversations whose slots held personal data, and Slack and WeCom messages kept while they wait for their answer;
    and whether the WAL went too (a dry run's: nothing to clear)."""

    turns: int
    comments: int
    slots: int
    waiting: int
    wal_cleared: bool = True


def purged_ledger(path: Path) -> Path:
    """Where the store at ``path`` records the conversations purged from it (:meth:`Store.purge`), beside it: a copy of
    the store made before a purge and put back since (``bot restore``) holds them again, and is purged of them again
    (:meth:`Store.purge_again`). Each line is a conversation id's HMAC-SHA256 under the ledger's key
    (:func:`ledger_key`) and when it was purged, not the id itself, which may name the customer
    (``wecom:{corp}:{userid}``)."""
    return path.with_name(f"{path.name}.purged")


def ledger_key(path: Path) -> Path:
    """The secret the ledger of the store at ``path`` keys its digests with, beside it: an id one can guess
    (``wecom:{corp}:{userid}``) hashed alone is confirmed by hashing the guess, and the ledger outlives the
    conversations it names."""
    return path.with_name(f"{path.name}.purged.key")


def _ledger_secret(path: Path) -> bytes:
    """The key of the store's ledger (:func:`ledger_key`), made once for the store's owner alone: written whole
    under another name and linked into place, so that two processes purging at once agree on one key and neither
    reads a key half written."""
    key = ledger_key(path)
    with contextlib.suppress(FileNotFoundError):
        return key.read_bytes()
    fresh = key.with_name(f"{key.name}.{uuid.uuid4().hex}")
    try:
        with open(fresh, "wb", opener=owner_only) as out:
            out.write(secrets.token_bytes(32))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is the key
            os.link(fresh, key)
    finally:
        fresh.unlink()
    fsync_path(key.parent)
    return key.read_bytes()


def copy_ledger(path: Path, dest: Path) -> bool:
    """Copy the ledger of the store at ``path`` and its key (:func:`purged_ledger`, :func:`ledger_key`) beside the store
    copy ``dest``, under the names a store there would give them, for the owner alone; whether there was one. Each is
    written whole under another name and renamed into place: a copy cut short names no purge, or purges a conversation
    for nothing. Taken after the store's copy, so that it names every purge the copy missed. A store with a key and no
    purge yet (a server made the key) gives an empty ledger, for the purges to come (:meth:`Store._record_purged`)."""
    try:
        secret = ledger_key(path).read_bytes()
    except FileNotFoundError:  # no key made, or the key deleted: its digests name nobody
        return False
    try:
        lines = purged_ledger(path).read_bytes()
    except FileNotFoundError:  # no purge recorded yet
        lines = b""
    for source, target in ((secret, ledger_key(dest)), (lines, purged_ledger(dest))):
        _write_whole(target, source)
    fsync_path(dest.parent)
    return True


def ledger_copies(path: Path) -> Path:
    """Where the store at ``path`` lists the copies of it `bot backup` put its ledger beside (:func:`copy_ledger`), a
    path a line: `bot purge --forget-ledger-before` forgets the same lines in those ledgers, or a line forgotten beside
    the store would stay beside every backup kept, for as long as it is kept."""
    return path.with_name(f"{path.name}.purged.copies")


def listed_ledger_copies(path: Path) -> list[Path]:
    """The copies :func:`ledger_copies` lists that still have a ledger beside them: one deleted, moved or pruned is
    no longer deskbot's to reach."""
    try:
        listed = ledger_copies(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [Path(line) for line in dict.fromkeys(listed) if line and purged_ledger(Path(line)).exists()]


def note_ledger_copy(path: Path, dest: Path) -> None:
    """Add ``dest``, a copy of the store at ``path`` with the ledger copied beside it, to those
    :func:`ledger_copies` lists, leaving out those gone since; the list written whole, under the ledger's lock."""
    with _ledger_held(path):
        copies = [*listed_ledger_copies(path), dest.resolve()]
        _write_whole(ledger_copies(path), "".join(f"{copy}\n" for copy in dict.fromkeys(copies)).encode())


def _write_whole(target: Path, data: bytes) -> None:
    """``data`` written to ``target`` for the owner alone, under another name and renamed into place: a write cut
    short leaves ``target`` as it was."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(partial, "wb", opener=owner_only) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _ledger_held(path: Path) -> Iterator[bytes]:
    """The key of the store's ledger (:func:`_ledger_secret`), its file locked meanwhile: a purge's lines added while
    :func:`forget_ledger_before` rewrites the ledger would go with the file it replaces. The key's file, not the
    ledger's, which is replaced."""
    secret = _ledger_secret(path)
    with open(ledger_key(path), "rb") as key:
        fcntl.flock(key, fcntl.LOCK_EX)
        yield secret


def _append_to_ledger(ledger: Path, lines: list[str]) -> None:
    """Add ``lines`` to ``ledger`` (:func:`purged_ledger`), made for the store's owner alone, and flushed to the disk."""
    with open(ledger, "a", encoding="utf-8", opener=owner_only) as out:
        out.writelines(lines)
        out.flush()
        os.fsync(out.fileno())


def _purged_at(line: str) -> float:
    """When the ledger's ``line`` says its conversation was purged; -inf for a line a crash cut short."""
    try:
        return float(line.partition("\t")[2])
    except ValueError:
        return -math.inf


def forget_ledger_before(path: Path, before: float) -> int:
    """Forget the lines of the store's ledger (:func:`purged_ledger`) of the purges made before ``before``, so that it
    does not grow for good (a line a purged conversation, a retention period's too); how many it forgot. Only a copy
    of the store made before a purge holds its conversation again once put back, so once no copy made before
    ``before`` is kept, their lines purge nothing more. The rest written whole and renamed into place."""
    ledger = purged_ledger(path)
    if not (ledger.exists() and ledger_key(path).exists()):  # no purge recorded, or its digests name nobody
        return 0
    with _ledger_held(path):
        lines = ledger.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _purged_at(line) >= before]
        if len(kept) < len(lines):
            _write_whole(ledger, "".join(kept).encode())
            fsync_path(ledger.parent)
    return len(lines) - len(kept)


def _digest(secret: bytes, conversation_id: str) -> str:
    return hmac.new(secret, conversation_id.encode(), hashlib.sha256).hexdigest()


# The key of :func:`log_tag`: the store's ledger key once a command opens the store (:func:`tag_logs_by`), so that every
# server and command on the store tags a conversation alike, restarts too; until then, this process's own.
_log_secret = secrets.token_bytes(32)
LOG_TAG = re.compile(r"#c[0-9a-f]{12}")  # what :func:`log_tag` writes
_logged_store: Path | None = None  # the store whose conversations this process's log names by tag (tag_logs_by)


def tag_logs_by(path: Path, create: bool = True) -> None:
    """Tag conversations in this process's log (:func:`log_tag`) by the ledger key of the store at ``path``, as its
    servers do: a line `bot chat` writes then names a conversation as the server's lines do, and one follows it from
    one to the other. Without ``create`` (a command that only reads the store, perhaps a copy on a read-only disk or
    another account's) the key is read where it is, never made: where there is none, no server of the store has tagged
    a line, and this process's own key stands."""
    global _log_secret, _logged_store
    _logged_store = path
    if create:
        _log_secret = _ledger_secret(path)
        return
    with contextlib.suppress(OSError):  # none, or not this account's to read
        _log_secret = ledger_key(path).read_bytes()


LOOK_UP_S = 0.2  # the most a log line waits to look its words up in the store (:func:`kept_conversations`)
LOOK_UP_WORDS = 500  # words of one line looked up, at most
ANSWERS_KEPT = 10_000  # words whose answer a look-up keeps while the store is unchanged
# How long after its purge a conversation's id is still put as its tag: a job under way on it (an agent's reply being
# sent, a retry) quotes it for minutes, an hour at most; a bulk purge by date, thousands of lines at once, must not
# push it out. Its digest is kept by its first 16 hex digits (64 bits), so that a large purge costs little memory.
PURGED_LATELY_S = 24 * 3600
_PURGED_DIGITS = 16


class _LookUps:
    """What :func:`kept_conversations` keeps between log lines, so that a line quoting a long word neither opens the
    store nor reads its ledger again: a read-only connection to the store, kept open, and the answers it gave while
    the store's ``PRAGMA data_version`` stands (a commit by any other connection, a purge's or a new conversation's,
    changes it, and the answers are asked again); and the digests of the conversations purged within
    :data:`PURGED_LATELY_S`, the ledger read on from where it ended as it grows, whole again once it is rewritten
    (:func:`forget_ledger_before`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.pid = os.getpid()  # the process that opened it
        self.file: tuple[int, int] | None = None  # the store's device and inode the connection reads
        self.version: int | None = None
        self.answers: dict[str, bool] = {}
        self.ledger: tuple[int, int] | None = None  # the ledger's device and inode, and how much of it was read
        self.ledger_read = 0
        self.purged: dict[bytes, float] = {}  # a digest's first digits: when its conversation was purged
        self.pruned = 0.0

    def kept(self, asked: list[str]) -> set[str]:
        """Those of ``asked`` that the store keeps: none where it cannot be read now."""
        try:
            conn = self._connection()
            version = conn.execute("PRAGMA data_version").fetchall()[0][0]  # fetched whole: no read left open
            if version != self.version or len(self.answers) > ANSWERS_KEPT:
                self.version, self.answers = version, {}
            if unknown := [word for word in asked if word not in self.answers]:
                found = {row[0] for row in conn.execute(
                    f"SELECT id FROM conversations WHERE id IN ({', '.join('?' * len(unknown))})", unknown).fetchall()}
                self.answers |= {word: word in found for word in unknown}
        except (sqlite3.Error, OSError):
            self.close()
            return set()
        return {word for word in asked if self.answers[word]}

    def _connection(self) -> sqlite3.Connection:
        """The kept connection, opened anew where the store's file was replaced (``bot restore``), and in a process
        forked since it was opened, which must not use its parent's (SQLite's rule) nor close it."""
        stat = os.stat(self.path)
        if self.pid != os.getpid():
            self.conn, self.pid = None, os.getpid()
        if self.conn is None or self.file != (stat.st_dev, stat.st_ino):
            self.close()
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=LOOK_UP_S,
                                        check_same_thread=False)
            # a connection's data_version counts its own: another's, or another file's, answers nothing here
            self.file, self.version, self.answers = (stat.st_dev, stat.st_ino), None, {}
        return self.conn

    def purged_lately(self, words: set[str]) -> set[str]:
        """Those of ``words`` that are the ids of conversations purged from the store lately."""
        if not words:
            return set()
        try:
            self._read_ledger()
        except OSError:
            return set()
        return {word for word in words if _digest(_log_secret, word)[:_PURGED_DIGITS].encode() in self.purged}

    def _read_ledger(self) -> None:
        """Read what the ledger holds past what was read of it, its whole lines: a purge appends to it."""
        with open(purged_ledger(self.path), "rb") as ledger:
            stat = os.fstat(ledger.fileno())
            if self.ledger != (stat.st_dev, stat.st_ino) or stat.st_size < self.ledger_read:
                self.ledger, self.ledger_read, self.purged = (stat.st_dev, stat.st_ino), 0, {}
            if stat.st_size == self.ledger_read:
                return
            ledger.seek(self.ledger_read)
            added = ledger.read(stat.st_size - self.ledger_read)
        whole = added[:added.rfind(b"\n") + 1]  # a line still being written is read once it is whole
        self.ledger_read += len(whole)
        since = now() - PURGED_LATELY_S
        for line in whole.splitlines():
            if (at := _purged_at(line.decode("ascii", "replace"))) >= since:
                self.purged[line[:_PURGED_DIGITS]] = at
        if self.pruned < since:  # once a period: those purged before it are forgotten
            self.purged, self.pruned = {digest: at for digest, at in self.purged.items() if at >= since}, now()

    def close(self) -> None:
        if self.conn is not None and self.pid == os.getpid():  # a parent's is the parent's to close
            self.conn.close()
        self.conn = self.file = None


_look_ups: _LookUps | None = None  # kept_conversations's, for the store of this process's log (tag_logs_by)
_look_ups_lock = threading.Lock()  # log lines are said from many threads


@atexit.register
def close_look_ups(path: Path | None = None) -> None:
    """Close the connection :func:`kept_conversations` keeps to the store at ``path`` (any, at the process's exit), as
    the store is closed: the last connection to close empties the store's WAL and deletes it. The next line that looks
    a word up opens it anew."""
    with _look_ups_lock:
        if _look_ups is not None and (path is None or _look_ups.path.resolve() == path.resolve()):
            _look_ups.close()


def kept_conversations(words: Collection[str]) -> set[str]:
    """Those of ``words`` that are the ids of conversations the store of this process's log keeps (:func:`tag_logs_by`),
    for the log to name them by tag: a web conversation's id, which its client chooses, has no shape to be told by, and
    a background job (an hourly round, a retry, a send) that quotes one in an exception has no request that named it.
    Read over a connection kept for it (:class:`_LookUps`), waiting :data:`LOOK_UP_S` at most: none where the store
    cannot be read then. Those purged within :data:`PURGED_LATELY_S` too: a job under way as its conversation was purged
    quotes an id the store no longer keeps, and the log, beyond the purge's reach, would keep the id of a customer just
    erased."""
    global _look_ups
    if _logged_store is None or not words:
        return set()
    asked = sorted(words)[:LOOK_UP_WORDS]
    with _look_ups_lock:
        if _look_ups is None or _look_ups.path != _logged_store:
            if _look_ups is not None:
                _look_ups.close()
            _look_ups = _LookUps(_logged_store)
        kept = _look_ups.kept(asked)
        return kept | _look_ups.purged_lately(set(asked) - kept)


def log_tag(conversation_id: str) -> str:
    """What a log line names a conversation by: ``#c`` and 12 hex digits of a keyed digest of its id. A web visitor's
    id is the key to their conversation, and a WeCom one names the employee, while the log is read by everyone on call
    and kept by its aggregator for long: the tag says which lines are of one conversation, the same on every server of
    the store and after a restart, with nothing to read or write in it. Keyed: an id one can guess
    (``wecom:{corp}:{userid}``) hashed alone is confirmed by hashing the guess."""
    return f"#c{_digest(_log_secret, f'log:{conversation_id}')[:12]}"


def address_tag(address: str) -> str:
    """What a log line names a client's IP address (or the IPv6 prefix it counts by) by: ``#a`` and 12 hex digits of
    a digest keyed as :func:`log_tag`'s. An address is a customer's personal data, and the log is kept for long by
    everyone on call: the tag says which lines are of one address, and the reverse proxy's access log, kept for as
    long as the shop chooses, which address it is. Keyed: the addresses one could hash to find it are few."""
    return f"#a{_digest(_log_secret, f'address:{address}')[:12]}"


BACKUP_STEP_PAGES = 1024  # SQLite pages a backup copies between two looks at a signal: 4 MiB of 4 KiB pages


def _damage(conn: sqlite3.Connection) -> str | None:
    """What SQLite's ``quick_check`` finds wrong in the file ``conn`` reads (None: nothing)."""
    try:
        found = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:  # too damaged to be checked
        found = [str(exc)]
    return None if found == ["ok"] else "; ".join(found)


def _check_whole(copy: sqlite3.Connection, path: Path) -> None:
    """Refuse a copy of a damaged store: the copy is made page by page, damaged pages too, and a nightly backup with
    ``--keep`` replaced the good copies from before the damage, one a night."""
    if (damage := _damage(copy)) is not None:
        raise StoreError(f"{path} is damaged ({damage}): the copy is not kept, nor any older one deleted. "
                         f"{DAMAGED_ADVICE}")


def _between_steps(status: int, remaining: int, total: int) -> None:
    """Called between two steps of a backup: a Python call, where a signal's handler (SIGTERM's in ``bot backup``)
    runs, which within SQLite's copy waited for its end."""


ABANDONED_AFTER_S = 60.0  # an empty partial copy this old is not one a backup has just made and is about to lock


def _remove_copy(partial: Path) -> None:
    """A backup's partial copy, and the journal SQLite keeps beside it while it writes."""
    for left in (partial, Path(f"{partial}-journal")):
        left.unlink(missing_ok=True)


def _remove_abandoned_copies(dest: Path, named: str) -> None:
    """Remove the hidden partial copies beside ``dest`` to files ``named`` so (a glob) that no backup writes any
    more: a backup killed outright left its copy (up to the store's size) and its journal there, and each night's
    killed backup added another."""
    partials = f".{named}.*.partial"
    try:
        for path in dest.parent.iterdir():
            if fnmatch.fnmatchcase(path.name, partials) and _abandoned(path):
                _remove_copy(path)
    except OSError as exc:  # a folder it may not list, another user's copy in a shared folder: it backs up all the same
        log.warning("cannot remove the partial copies killed backups left beside %s: %s", dest, exc.strerror or exc)


def _abandoned(partial: Path) -> bool:
    """Whether no backup writes ``partial``: a backup locks its copy before anything is written to it, so one
    unlocked with bytes in it is left over, while one unlocked and empty may be a backup's just made."""
    try:
        handle = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW)  # a link planted there is not a copy
    except OSError:  # gone meanwhile, or a link
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        made = os.fstat(handle)
    except OSError:  # locked by the backup writing it, or a file system without locks: left as it is
        return False
    finally:
        os.close(handle)  # and the lock with it
    return made.st_size > 0 or time.time() - made.st_mtime > ABANDONED_AFTER_S


class Store:
    """``dialogues.db`` through one connection, for one thread at a time (the server makes every call
    on its store thread, bot/batching.py, but for the admin API's long reads, made on a ``reader()`` of its
    own); writes also hold a lock, so none interleaves with another. ``read_only``: open the file for
    reading alone, as it is, with no migration.

    Privacy (``privacy:`` in bot.yml): with ``redact`` (the default) a customer's message is stored
    with emails, phone, card and ID numbers replaced, so nothing trained or exported from the store
    carries them; the text as received (before normalisation) is kept in ``raw_text`` when it
    differs, redacted too unless ``keep_raw`` asks for the raw text.
    """

    def __init__(self, path: Path | str, redact: bool = True, keep_raw: bool = False, read_only: bool = False,
                 newer_too: bool = False, busy_s: float = BUSY_TIMEOUT_S) -> None:
        """``newer_too`` (with ``read_only``): a store a newer deskbot migrated is opened too, for :meth:`backup` alone,
        which copies it as it is; anything else would read a schema this deskbot does not know. ``busy_s``: how long
        its writes, opening included, wait for another process's lock (:meth:`renewer`'s wait less)."""
        self.path = Path(path)
        self._busy_s = busy_s
        self.redact = redact
        self.keep_raw = keep_raw
        self.read_only = read_only
        self.server: str | None = None  # set by serve(): the server whose platform messages this store keeps
        self._serving: FileLock | None = None
        self._index_rewritten = False  # a customer's message edited or deleted since (merge_search_index_if_rewritten)
        self._opened = secrets.token_hex(8)  # this connection, in :meth:`version`
        self._pass: tuple[int, list[tuple[Any, ...]]] | None = None  # :meth:`_handed_off_pass`'s, by inbox change
        self._kept_rows: tuple[int, dict[str, dict[str, Any]]] | None = None  # :meth:`_handed_off_rows`', likewise
        # A file with bytes and no schema, and no -wal file of a process creating it this moment: a copy made alone
        copied_alone = self.path.is_file() and self.path.stat().st_size > 0 and not Path(f"{self.path}-wal").exists()
        if not read_only:
            _create_private(self.path)
        try:
            conn = _connect_read_only(self.path) if read_only else sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=busy_s)
        except sqlite3.OperationalError as exc:
            raise cannot_open(self.path, exc, reading=read_only) from None
        try:
            # before anything is written to a file that is not ours
            _check_is_ours(conn, self.path, read_only, newer_too=read_only and newer_too)
            conn.create_function("agent_key", 1, agent_key, deterministic=True)  # for _HANDED_OFF
            conn.create_function("log_tag", 1, log_tag)  # for Search: its key is the serving store's once it serves
            self.db = sqlite_utils.Database(conn)
            self._lock = threading.RLock()
            self.failing: str | None = None  # why the last write failed (a full disk), until one succeeds
            self._slow_said = -LOCK_WAIT_SAID_EVERY_S  # when a long wait for the write lock was last said
            self._asked_lock: float | None = None  # when the write now waiting for the lock asked for it
            self._locked: float | None = None  # when the write now under way took the lock
            self.on_lock_wait: Callable[[float], None] | None = None  # told each write's wait for the lock (/metrics)
            if read_only:  # no migration, no WAL switch, no write lock: the writer's Store did those
                return
            if copied_alone and not self.schema:
                log.warning("%s holds no conversations, not even their tables: a copy made without its -wal file? "
                            "Starting it as a new store (`bot backup` copies a store whole)", self.path)
            _use_wal(self.db)
            self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process death in WAL mode
            self.db.execute("PRAGMA foreign_keys=ON")
            if self.behind and self.schema:
                self._keep_before_migrating()
            self._migrate()
            self._check_writable()
            # The file this connection writes, to tell when its name comes to name another or none (moved()).
            opened = self.path.stat()
            self._file, self._moved = (opened.st_dev, opened.st_ino), None
        except sqlite3.OperationalError as exc:  # a full disk while migrating, a read-only file
            conn.close()
            raise cannot_open(self.path, exc) from None
        except BaseException:
            conn.close()
            raise

    def reader(self) -> Store:
        """A second, read-only connection to this store's file, for long reads (the admin API's figures,
        review queue and export) on a thread of their own: in WAL mode it reads beside the writer without
        holding it up, and each read sees what was committed when it began. Opened from a Store that
        has migrated the file already."""
        return Store(self.path, redact=self.redact, keep_raw=self.keep_raw, read_only=True)

    def renewer(self) -> Store:
        """A second connection that writes to this serving store's file as its server (:meth:`serve`), for the renewals
        of that server's turns and claims alone (:meth:`renew_turn`, :meth:`renew_claim`), on a thread of their own:
        behind a store thread held up more than the stale time (a long purge, a slow disk), they lapsed while the
        server was alive, and another server on the store answered beside it. Its writes, opening included, wait
        ``RENEW_BUSY_S`` at most for another's lock, so that a renewal missed is tried again at the next, not after
        every other write: opened with the store's 30 s wait, beside another process's long write, it held the
        renewals up past the stale time."""
        renewer = Store(self.path, redact=self.redact, keep_raw=self.keep_raw, busy_s=RENEW_BUSY_S)
        renewer.server = self.server
        return renewer

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the store as it was at the first."""
        if self.db.conn.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot is taken at a first read
            yield
        finally:
            if self.db.conn.in_transaction:
                self.db.execute("COMMIT")

    def version(self) -> str:
        """What the store held at the start of this :meth:`snapshot` (called inside one), as this connection tells it
        apart: equal for two snapshots of this connection with nothing committed between them, by this process or
        another (SQLite's ``data_version``, which a snapshot's first read sets), and different otherwise, a checkpoint
        included. Never equal for another connection, another server's or one opened later: for what one server keeps
        of its own reads (the figures, the review queue), never for an ETag another server may be asked (the inbox's
        are :meth:`inbox_version` and :meth:`open_version`)."""
        if not self.db.conn.in_transaction:
            raise RuntimeError("Store.version() is read inside a snapshot(): outside one, it names none")
        return f"{self._opened}.{self.db.execute('PRAGMA data_version').fetchone()[0]}"

    def inbox_version(self) -> str:
        """What the agents' inbox showed at the start of this :meth:`snapshot` (called inside one): :meth:`version`'s,
        but moved only by a write that changes what the inbox shows (a handoff, a handback, a takeover, an agent's
        reply or read, a handed-off customer's message, a purge: the triggers of ``_v52``), not by the customers writing
        to the bot, its predictions or their votes. With the bot answering a message a second, :meth:`version` changed
        between nearly every two polls of a console, and each read the inbox whole, nothing in it changed. Begun with
        the store's name (``_v54``), not this connection's: the same on every server of the store, so that behind a load
        balancer one answers another's ETag 304; another for another store, or a backup restored in its place."""
        if not self.db.conn.in_transaction:
            raise RuntimeError("Store.inbox_version() is read inside a snapshot(): outside one, it names none")
        return self.db.execute("SELECT (SELECT identity FROM store_identity) || '.' || changes FROM inbox_changes"
                               ).fetchone()[0]

    def open_version(self) -> str:
        """What the agents' tab of the conversations with the bot showed at the start of this :meth:`snapshot` (called
        inside one): :meth:`inbox_version`, which the inbox's part of the answer moves (the agent's customers, what was
        passed to them or taken from them), with the count of changes of the conversations with the bot, their customers'
        messages among them (the triggers of ``_v56``). The store's, as the inbox's is: it was :meth:`version`, this
        connection's own, and behind a load balancer no server answered another's ETag 304, the same page; and any
        commit moved it, a prediction or a vote the tab does not show."""
        if not self.db.conn.in_transaction:
            raise RuntimeError("Store.open_version() is read inside a snapshot(): outside one, it names none")
        return self.db.execute("SELECT (SELECT identity FROM store_identity) || '.' || changes || '.' || open_changes "
                               "FROM inbox_changes").fetchone()[0]

    def _inbox_changes(self) -> int:
        """How many times the writes changed what the agents' inbox shows (``_v52``)."""
        return self.db.execute("SELECT changes FROM inbox_changes").fetchone()[0]

    def _begin_writing(self) -> list[str]:
        """``BEGIN IMMEDIATE``, which waits up to the busy timeout for another process's lock; where a wait of
        ``SLOW_LOCK_S`` would be said (:meth:`_waited_for_lock`), the processes that have the store open then, while
        the lock is held: read after the wait, they left out the process that had held it and closed the store since,
        and named one found in its place."""
        if self._busy_s <= SLOW_LOCK_S or time.monotonic() - self._slow_said < LOCK_WAIT_SAID_EVERY_S:
            self.db.execute("BEGIN IMMEDIATE")
            return []

        def begin(wait_s: float) -> None:
            self.db.execute(f"PRAGMA busy_timeout = {wait_s * 1000:.0f}")
            self.db.execute("BEGIN IMMEDIATE")

        try:
            try:
                begin(SLOW_LOCK_S)
                return []
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
            openers = _openers(self.path)
            begin(self._busy_s - SLOW_LOCK_S)
            return openers
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {self._busy_s * 1000:.0f}")

    def _waited_for_lock(self, seconds: float, openers: list[str]) -> None:
        """Say a write that waited ``seconds`` for the write lock another process held (a sqlite3 shell left in a
        transaction), naming the processes that had the store open meanwhile (``openers``, :meth:`_begin_writing`): a
        server's replies all waited with it, up to the 30 s busy timeout, and nothing said so unless it ran out. Once in
        ``LOCK_WAIT_SAID_EVERY_S`` at most."""
        if seconds >= SLOW_LOCK_S and time.monotonic() - self._slow_said >= LOCK_WAIT_SAID_EVERY_S:
            self._slow_said = time.monotonic()
            log.warning("%s: a write waited %.1f s for another process holding the store locked (a sqlite3 shell in a "
                        "transaction?); every write waits meanwhile, up to %d s, then fails%s", self.path, seconds,
                        BUSY_TIMEOUT_S, f"; processes that had it open during the wait: {', '.join(openers)}" if openers else "")

    def waiting_for_lock(self) -> float:
        """How long the write now asking for the write lock has waited for it (0 when none waits): read from any
        thread, since the store's own thread is the one waiting, and every customer's message waits behind it."""
        asked = self._asked_lock
        return 0.0 if asked is None else time.monotonic() - asked

    def lock_wait(self) -> str | None:
        """Why the store's writes stall, while one has waited ``SLOW_LOCK_S`` or more for the write lock another
        process holds, or one has held it ``STUCK_WRITE_S`` or more, waiting on its disk (None otherwise), for a
        readiness check. A disk that stopped answering (a network volume whose server went away, a failing one)
        held every customer's message behind a write that never ended, while /healthz said ok."""
        if (locked := self._locked) is not None and (held := time.monotonic() - locked) >= STUCK_WRITE_S:
            return (f"a write to the conversation store has gone on for {held:.0f} s: its disk stopped answering? "
                    "(`dmesg`)")
        if (waited := self.waiting_for_lock()) < SLOW_LOCK_S:
            return None
        return (f"the conversation store's writes have waited {waited:.1f} s for another process holding it locked "
                f"(a sqlite3 shell in a transaction?); they fail after {BUSY_TIMEOUT_S:g} s")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction that takes the file's write lock as it begins (``BEGIN IMMEDIATE``).

        A plain ``BEGIN`` reads first and asks for the lock at its first write, and SQLite refuses at once
        rather than wait out the busy timeout when a transaction that has read finds another process
        writing: a reviewer's label, read-then-written beside a busy server, failed with "database is
        locked" and was lost. Taken first, the lock is waited for, as a logged message waits. Inside
        another transaction this is a savepoint of it.
        """
        with self._lock:
            if self.db.conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            changes = self.db.conn.total_changes
            self._asked_lock = asked = time.monotonic()
            try:
                openers = self._begin_writing()
            finally:
                self._asked_lock = None
                waited = time.monotonic() - asked
                if self.on_lock_wait is not None:  # a wait that ran out too
                    self.on_lock_wait(waited)
            self._waited_for_lock(waited, openers)
            self._locked = time.monotonic()
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException as exc:
                if cannot_write(exc):  # the disk or the file (full, read-only, failing), not a mistake of ours
                    self.failing = str(exc)
                if self.db.conn.in_transaction:  # a COMMIT that failed (a full disk) has rolled back already
                    self.db.execute("ROLLBACK")
                raise
            finally:
                self._locked = None
            if self.db.conn.total_changes > changes:  # wrote something: a commit of nothing passes on a full disk
                self.failing = None

    def probe(self) -> None:
        """Write a row and take it out again, in one transaction that reaches the disk: whether the store can
        write now, for a readiness check after a write failed (:attr:`failing`)."""
        with self._writing():  # a row the size of a long message: a tiny one fits where a customer's does not
            self.db.execute("INSERT INTO id_floor (name, high) VALUES (?, 0)", ["probe:" + "x" * 4000])
            self.db.execute("DELETE FROM id_floor WHERE name LIKE 'probe:%'")

    def moved(self) -> str | None:
        """Why the store's path no longer names the file this store writes (None while it does), said in the
        log when it changes. A file deleted while the server runs (a folder cleaned, a deploy that syncs the
        bot folder with --delete) or replaced (a backup moved over it) leaves SQLite writing to the file it
        opened: every conversation since is lost when the server stops, or kept apart from the new file. It names
        the file alone (``dialogues.db``), as ``/healthz`` tells it to anyone who asks; the log names its path."""
        try:
            now = self.path.stat()
        except FileNotFoundError:
            why: str | None = ("{} was deleted or moved while the server ran: it goes on writing to that file, and a "
                               "deleted one is lost when it stops")
        else:
            why = None if (now.st_dev, now.st_ino) == self._file else (
                "{} was replaced while the server ran: it writes to the file it opened, not to the new one; restart "
                "it to serve the new one")
        if why != self._moved:
            if why is not None:
                log.error("%s", why.format(self.path))
            self._moved = why
        return None if why is None else why.format(self.path.name)

    def _check_writable(self) -> None:
        """Refuse a file SQLite could open only for reading (write-protected, on a read-only mount): it opens
        such a file without a word, and every turn would then fail to be logged."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(f"PRAGMA user_version={self.schema}")  # a write that changes nothing
        finally:
            self.db.execute("ROLLBACK")

    def backup(self, dest: Path, named: str | None = None) -> None:
        """A consistent copy of the store as it is now, the writes in its -wal file included, while it is in
        use (SQLite's online backup): a copy of dialogues.db alone lacks what the -wal file still holds, and
        is an empty store. Written beside ``dest`` and renamed onto it, so a failed copy replaces nothing and leaves
        nothing behind; the hidden ``.partial`` file of a copy killed outright (SIGKILL, a power cut) is removed by
        the next copy to ``dest``, or to any file ``named`` so (a glob: a folder's dated copies). Copied
        ``BACKUP_STEP_PAGES`` at a time, so that SIGTERM stops a large copy at once, within one snapshot, without
        which each write the server made between two steps started the copy over."""
        _remove_abandoned_copies(dest, named or glob.escape(dest.name))
        # A new file of a name nobody could plant a link at, as private as the store from its first byte (SQLite
        # gives its journal the same mode), whatever the umask.
        handle, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
        partial = Path(name)
        try:
            try:
                with contextlib.suppress(OSError):  # a file system without locks: nothing is removed there either
                    fcntl.flock(handle, fcntl.LOCK_EX)  # held while it is written: another copy to ``dest`` leaves it
                os.fchmod(handle, self.path.stat().st_mode & 0o777)
                with contextlib.closing(sqlite3.connect(partial)) as target:
                    with self.snapshot():
                        self.db.conn.backup(target, pages=BACKUP_STEP_PAGES, progress=_between_steps)
                    target.execute("PRAGMA journal_mode=DELETE")  # one file, readable on its own
                    _check_whole(target, self.path)
                os.replace(partial, dest)
            finally:
                os.close(handle)
        finally:  # and the journal SQLite leaves beside a copy that failed writing (a full disk)
            _remove_copy(partial)

    def _keep_before_migrating(self) -> None:
        """A copy of an older deskbot's store before it is migrated (``dialogues.db.schemaN.bak``): the older
        deskbot refuses a migrated store, and the copy is what it can serve again. Named by the schema the
        copy holds: processes opening the file at once may copy it after another migrated it."""
        copy = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.bak")
        try:
            self.backup(copy, named=f".{glob.escape(self.path.name)}.*.bak")  # and those of starts killed copying
            with contextlib.closing(sqlite3.connect(copy)) as copied:
                version = copied.execute("PRAGMA user_version").fetchone()[0]
            kept = self.path.with_name(f"{self.path.name}.schema{version}.bak")
            if version < len(MIGRATIONS):  # one left by an earlier upgrade of that schema is older: replaced
                os.replace(copy, kept)
                log.warning("%s is migrated from schema %d to %d; the store as it was is kept in %s", self.path,
                            version, len(MIGRATIONS), kept)
        except (OSError, sqlite3.Error) as exc:  # a full disk, a folder not writable: nothing is migrated without it
            raise StoreError(f"{self.path}: cannot keep a copy of it before migrating it to this deskbot's schema "
                             f"({getattr(exc, 'strerror', None) or exc})"
                             + ("; free space for one beside it" if no_space(self.path, exc) else "")) from None
        finally:
            copy.unlink(missing_ok=True)

    def _migrate(self) -> None:
        """Bring the file to the latest schema, one migration per transaction. Each takes the write lock
        first (``BEGIN IMMEDIATE``) and reads the version inside it, so processes opening an old file at
        once (a server and a cron job's ``bot export``) wait for each other rather than fail."""
        while self.behind:
            with self._writing():
                version = self.schema
                if version < len(MIGRATIONS):
                    MIGRATIONS[version](self.db)
                    self.db.execute(f"PRAGMA user_version={version + 1}")

    @property
    def behind(self) -> bool:
        """Whether the file has migrations still to run (a read-only Store does not run them)."""
        return self.schema < len(MIGRATIONS)

    @property
    def schema(self) -> int:
        """The migration the file is at (``PRAGMA user_version``)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        close_look_ups(self.path)  # first: the last connection to close empties the WAL
        with self._lock:
            self.db.conn.close()
            if self._serving is not None:  # after the last write: what this server kept is another's to answer now
                self._serving.release()
                # A disk turned read-only keeps the file, which the next server removes (_forget_gone_servers): the
                # error ended `bot serve`'s stop with status 1, a failure to its service manager, after a clean stop.
                with contextlib.suppress(OSError):
                    Path(self._serving.lock_file).unlink(missing_ok=True)
                self._serving = None

    # --- conversations ------------------------------------------------------------------------

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return self.conversations([conversation_id])[0]

    def conversations(self, conversation_ids: list[str]) -> list[dict[str, Any] | None]:
        """:meth:`conversation` for many ids, a query for each :data:`IDS_A_QUERY` (the server reads a batch of turns'
        at once; a purge by date, every conversation it deletes)."""
        rows: dict[str, dict[str, Any]] = {}
        for at in range(0, len(conversation_ids), IDS_A_QUERY):
            batch = conversation_ids[at:at + IDS_A_QUERY]
            marks = ",".join("?" * len(batch))
            rows |= {r["id"]: _with_slots(r)
                     for r in self.db.query(f"SELECT * FROM conversations WHERE id IN ({marks})", batch)}
        return [rows.get(i) for i in conversation_ids]

    def reference(self, conversation_id: str) -> str | None:
        """The conversation's reference (``_v47``), made at the first call: what the agents' webhook is told in the
        place of its id, which is a web customer's key to their conversation. 128 random bits that name nothing and
        grant nothing: an agent's console resolves it (:meth:`referred`) once signed in. None for a conversation the
        store does not hold (purged meanwhile)."""
        if (made := self._reference_of(conversation_id)) is not None:
            return made
        with self._writing():
            self.db.execute("INSERT OR IGNORE INTO refs (ref, conversation_id) SELECT ?, id FROM conversations "
                            "WHERE id = ?", [secrets.token_urlsafe(16), conversation_id])
            return self._reference_of(conversation_id)

    def _reference_of(self, conversation_id: str) -> str | None:
        row = self.db.execute("SELECT ref FROM refs WHERE conversation_id = ?", [conversation_id]).fetchone()
        return row[0] if row else None

    def referred(self, ref: str) -> str | None:
        """The id of the conversation :meth:`reference` named ``ref``; None for a reference it never made, or one
        whose conversation was purged."""
        row = self.db.execute("SELECT conversation_id FROM refs WHERE ref = ?", [ref]).fetchone()
        return row[0] if row else None

    def offered(self, conversation_id: str) -> list[dict[str, str]]:
        """The buttons (``title`` and ``payload``) the conversation's latest turn offers: a bot turn's, if it is the
        latest (a customer's word or an agent's since withdraws them), and no platform message of the conversation
        was kept (:meth:`receive`) since, whose turn is still to come: it withdraws them as it is kept."""
        row = self.db.execute("SELECT role, buttons, created FROM turns WHERE conversation_id = ? ORDER BY id DESC "
                              "LIMIT 1", [conversation_id]).fetchone()
        if row is None or row[0] != "bot" or self.db.execute(
                "SELECT 1 FROM pending WHERE conversation_id = ? AND received > ?", [conversation_id, row[2]]).fetchone():
            return []
        return [{"title": button["title"], "payload": button["payload"]} for button in json.loads(row[1] or "[]")]

    def _ensure_conversation(self, conversation_id: str, channel: str, user: str | None) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO conversations (id, channel, user, status, slots, fallbacks, created, updated) "
            "VALUES (?, ?, ?, 'open', '{}', 0, ?, ?)",
            [conversation_id, channel, user, now(), now()],
        )

    def set_status(self, conversation_id: str, status: str, reason: str, channel: str = "web",
                   after: int | None = None, agent: str | None = None, force: bool = False,
                   by: str | None = None, team: Collection[str] = ()) -> bool:
        """Hand a conversation off to a human (``handed_off``) or back to the bot (``open``); False, and
        nothing recorded, when it already is: a second agent's takeover of a waiting customer must not
        restart their wait or change why they wait. ``after``, the latest turn an agent handing it back has
        read: a customer's message since raises :class:`WroteMeanwhile`, and it stays with a person.
        ``agent``: the name of the agent making the change, shown to the others (see ``_v18``); the takeover of
        a handed-off conversation no agent has yet (:meth:`holder`) is kept as theirs, its wait and reason as
        they were: the agent's claim was answered as a takeover and kept nowhere, and a colleague answered too.
        An agent's takeover or handback of a customer a colleague has raises :class:`HeldByColleague`, unless
        ``force``: a forced takeover makes the customer theirs. ``by``: who makes a takeover in ``agent``'s name, when
        not ``agent`` themself (a lead giving a colleague's customer to Bob), kept as a transfer is (:meth:`_give`);
        and who makes a handback in ``agent``'s name, kept as theirs (the admin handing back a colleague's customer).
        An agent's handback keeps who had the customer (``_v39``), for the transcript and for that agent's console.
        ``team``: the agents' names where the bot knows them, whose colleague taken out of them holds nobody back
        (:func:`refuse_colleague`)."""
        with self._writing():
            self._ensure_conversation(conversation_id, channel, None)
            if after is not None and status == "open" and self._status(conversation_id) != "open" and (
                    wrote := self.wrote_since(conversation_id, after)) is not None:
                raise WroteMeanwhile(wrote)
            holder = None
            if reason == "agent":
                holder = self.holder(conversation_id)  # read once, in this transaction: the check and the claim agree
                if not force:
                    refuse_colleague(holder, agent, team)
                if status == "handed_off" and agent is not None and by is not None and agent_key(by) != agent_key(agent):
                    return self._give(conversation_id, agent, holder, by)
                if status == "handed_off":
                    self._claim(conversation_id, agent, holder)
            if status == "open":
                return self._set_status(conversation_id, status, reason, by or agent, holder)
            return self._set_status(conversation_id, status, reason, agent)

    def _give(self, conversation_id: str, agent: str, holder: str | None, by: str) -> bool:
        """Take a conversation over in ``agent``'s name for ``by``, in the caller's transaction, kept as ``by`` giving
        the customer to them (``_hand_over``), as a transfer is: kept as the agent's own takeover, it was not among
        the customers passed to them (:meth:`passed_to`), and nobody told them. Whether the status changed."""
        changed = self._set_status(conversation_id, "handed_off", "agent", agent)
        if agent_key(holder) != agent_key(agent):
            self._hand_over(conversation_id, agent, holder, by)
        return changed

    def _status(self, conversation_id: str) -> str:
        """The status of a conversation the store holds: ``open`` or ``handed_off``."""
        return self.db.execute("SELECT status FROM conversations WHERE id = ?", [conversation_id]).fetchone()[0]

    def wrote_since(self, conversation_id: str, after: int) -> int | None:
        """The customer's latest message after turn ``after`` (a button's payload too), if any: what an agent who has
        read up to ``after`` has not read."""
        return self.db.execute("SELECT max(id) FROM turns WHERE conversation_id = ? AND role = 'user' AND id > ?",
                               [conversation_id, after]).fetchone()[0]

    def _claim(self, conversation_id: str, agent: str | None, holder: str | None, by: str | None = None) -> None:
        """Make a handed-off conversation ``agent``'s, in the caller's transaction, when no agent has it
        (``holder``, as the caller read :meth:`holder` in that transaction: None too for an open conversation,
        which is not in the inbox): its latest handoff names them from now (``taken``), when and why it was handed off
        as they were. When a colleague has it (a lead's forced takeover: :meth:`set_status` refuses it unforced), a
        takeover from the colleague is kept beside that handoff (``_v24``), which still names who took it over first:
        the colleague's replies before no longer make the customer theirs, and the transcript shows who had them, and
        who took them (``by``, when not ``agent`` themself: the admin replying in their name)."""
        latest = ("(SELECT max(id) FROM handoffs WHERE conversation_id = ? AND event = 'handed_off' AND "
                  "(SELECT status FROM conversations WHERE id = ?) = 'handed_off')")
        if holder is None and agent is not None:
            named = self.db.execute(f"UPDATE handoffs SET agent = ?, taken = ? WHERE agent IS NULL AND id = {latest} "
                                    "AND NOT EXISTS (SELECT 1 FROM takeovers WHERE handoff_id = handoffs.id)",
                                    [agent, now(), conversation_id, conversation_id]).rowcount
            if named:  # for the other servers on the store, which read no new handoff (_v40)
                self.db.execute(f"INSERT INTO handoff_claims (id, conversation_id, created, server) VALUES "
                                f"({_next_id('handoff_claims')}, ?, ?, ?)", [conversation_id, now(), self.server])
            elif self._status(conversation_id) == "handed_off":  # released: no longer the handoff's
                self._hand_over(conversation_id, agent, None, agent)
        elif holder is not None and agent_key(holder) != agent_key(agent):
            self._hand_over(conversation_id, agent, holder, by or agent)

    def _hand_over(self, conversation_id: str, agent: str | None, previous: str | None, by: str | None) -> None:
        """Keep, in the caller's transaction, that ``by`` gave a handed-off conversation from ``previous`` (None: nobody
        had it) to ``agent`` (None: to nobody, a release), beside its latest handoff (``_v24``, ``_v30``): who has the
        customer is who replied last since then (:meth:`holder`), else ``agent``."""
        self.db.execute("INSERT INTO takeovers (id, handoff_id, conversation_id, agent, previous, by_agent, created, "
                        f"server, agent_folded, previous_folded) SELECT {_next_id('takeovers')}, max(id), ?, ?, ?, ?, ?, "
                        "?, ?, ? FROM handoffs WHERE conversation_id = ? AND event = 'handed_off'",
                        [conversation_id, agent, previous, by, now(), self.server, agent_key(agent), agent_key(previous),
                         conversation_id])

    def pass_on(self, conversation_id: str, agent: str | None, to: str | None = None, force: bool = False,
                team: Collection[str] = (), by: str | None = None) -> bool:
        """Release a handed-off customer (``to`` None) or give them to the colleague ``to``, as ``agent``: a release
        leaves them waiting for a person, held by nobody, whom any agent may take over (an agent at the end of a shift
        could only hand them back to the bot, or leave them marked as theirs). Only the agent who has them may, unless
        ``force`` (:class:`HeldByColleague`, ``team`` as for :meth:`set_status`); anyone may give a customer nobody has
        to a colleague. False, and nothing
        kept, when it changes nothing: the bot has the conversation, or it is ``to``'s already. ``by``: who makes the
        change in ``agent``'s name, when not ``agent`` themself (the admin releasing an absent agent's customers)."""
        with self._writing():
            holder = self.holder(conversation_id)
            if not force:
                refuse_colleague(holder, agent, team)
            if self._status(conversation_id) != "handed_off" or agent_key(holder) == agent_key(to):
                return False
            self._hand_over(conversation_id, to, holder, by or agent)
            return True

    def held_by(self, agent: str) -> list[str]:
        """The handed-off conversations ``agent`` has (in any spelling of their name, as :meth:`holder` says), oldest
        first: those an agent leaving for the day releases at once (``Bot.release_all``)."""
        return [row[0] for row in self.db.execute(f"SELECT conversation_id FROM ({_HANDED_OFF}) WHERE agent_key(agent) = ? "
                                                  "ORDER BY handed_off_at", [agent_key(agent)])]

    def holder(self, conversation_id: str) -> str | None:
        """The agent who has a handed-off conversation, as the inbox says (``_HANDED_OFF``'s ``agent``), or None."""
        row = self.db.execute(f"SELECT agent FROM ({_HANDED_OFF}) WHERE conversation_id = ?", [conversation_id]).fetchone()
        return None if row is None else row[0]

    def _set_status(self, conversation_id: str, status: str, reason: str, agent: str | None = None,
                    previous: str | None = None) -> bool:
        """:meth:`set_status` inside the caller's transaction, the conversation's row written already; ``previous``: the
        agent who had the customer an agent hands back (``_v39``)."""
        if self._status(conversation_id) == status:
            return False
        self.db["conversations"].update(conversation_id, {"status": status, "fallbacks": 0, "updated": now()})
        self.db.execute(f"INSERT INTO handoffs (id, conversation_id, event, reason, created, agent, previous, server) "
                        f"VALUES ({_next_id('handoffs')}, ?, ?, ?, ?, ?, ?, ?)",
                        [conversation_id, status, reason, now(), agent, previous, self.server])
        return True

    # --- turns ----------------------------------------------------------------------------------

    def _private(self, text: str) -> str:
        return redact(text) if self.redact else text

    def _private_payload(self, payload: Any) -> Any:
        """A custom payload as privacy allows it to be kept: each of its texts as a reply's text is (an action's
        payload may repeat the customer's card number as its reply may), its keys, numbers and structure as sent."""
        return redacted_payload(payload) if self.redact else payload

    def _shown(self, row: dict[str, Any], as_sent: bool = True) -> dict[str, Any]:
        """A turn ``row`` as people read it: its text as typed (``raw_text``) where that was kept, in place
        of the text as normalised for the model. With ``keep_raw`` that copy is unredacted, for the shop's
        own records, not for display; ``text`` is already as privacy allows (the shop's replies and the
        agents' words as written, which redaction would rob of the shop's own phone number). An agent's reply is
        as its customer got it (``as_sent``: in their Chinese script, :meth:`add_message`), or as the agent wrote it."""
        shown = {column: value for column, value in row.items() if column != "raw_text"}
        if row.get("role") == "agent":
            shown["text"] = row["raw_text"] if as_sent and row["raw_text"] is not None else row["text"]
        else:
            shown["text"] = self.typed(row["text"], row["raw_text"])
        return shown

    def typed(self, text: str, raw_text: str | None) -> str:
        """A customer's message as they typed it (``raw_text``, where kept: full-width ``？``, ``１２３``), as privacy
        allows it to be shown, else as stored (``text``, as the model read it)."""
        if raw_text is None:
            return text
        return self._private(raw_text) if self.keep_raw else raw_text  # without keep_raw, stored as privacy allows

    def _stored_texts(self, text: str, raw_text: str | None) -> tuple[str, str | None]:
        """``(text, raw_text)`` as privacy allows them to be written; raw_text only when it differs."""
        return _texts_kept(text, raw_text, self._private, self.keep_raw)

    def log_exchange(self, ex: Exchange) -> tuple[int, int | None]:
        """Write the user's turn, its prediction and the bot's reply atomically. Returns both turn ids, the
        reply's None where nothing was said or an agent has the conversation (:meth:`_insert_exchange`)."""
        return self.log_exchanges([ex])[0]

    def log_exchanges(self, exchanges: list[Exchange]) -> list[tuple[int, int | None]]:
        """Write several exchanges in one transaction (all or none), so a busy server commits once per
        batch instead of once per message. Returns each exchange's turn ids, in order."""
        with self._writing():
            return [self._insert_exchange(ex) for ex in exchanges]

    def _insert_exchange(self, ex: Exchange) -> tuple[int, int | None]:
        """The rows of one exchange, inside the caller's transaction. A reply to a conversation an agent took
        over while the bot worked on the message is not the bot's to give any more: the message is stored as
        one the bot was silent on, for the agent to answer, and the exchange's reply emptied, so that it is not
        sent (the bot and the agent both answered, the bot after the customer was told a person had joined). A
        message its customer deleted meanwhile is not answered either, nor handed off, and leaves the conversation's
        slots, fallbacks and waiting action as they were (``Exchange.deleted``). A turn another server took over
        meanwhile (``Exchange.leased``) is kept as one the bot was silent on, with no handoff and without the web
        client's ``message_id``, which names the other server's answer: that server answers (``Exchange.overtaken``).
        So is one whose web message another server claimed meanwhile (:meth:`claim`: this server's claim went stale
        while its turn was renewed, its claim's renewals failing alone), which that server answers once this turn ends."""
        text, raw_text = self._stored_texts(ex.text, ex.raw_text)
        self._ensure_conversation(ex.conversation_id, ex.channel, ex.user)
        ex.overtaken = ex.leased and (not self.db.execute(
            "SELECT 1 FROM turn_leases WHERE conversation_id = ? AND server = ?", [ex.conversation_id, self.server]
        ).fetchone() or ex.message_id is not None and self.db.execute(
            "SELECT 1 FROM answering WHERE conversation_id = ? AND message_id = ? AND server IS NOT ?",
            [ex.conversation_id, ex.message_id, self.server]).fetchone() is not None)
        if ex.overtaken:
            ex.message_id, ex.handoff = None, None
        if (ex.reply or ex.buttons or ex.custom) and (ex.overtaken or ex.source != "resume" and self.db.execute(
                "SELECT status FROM conversations WHERE id = ?", [ex.conversation_id]).fetchone()[0] == "handed_off"):
            ex.reply, ex.buttons, ex.custom, ex.messages, ex.source = None, [], [], None, "silent"
        # Plain SQL here: this runs for every message, and sqlite-utils' insert() costs several times more.
        user_turn = self.db.execute(_ADD_TURN, [ex.conversation_id, "user", text, raw_text, ex.channel, ex.user, now(),
                                               None, None, None, self.server]).lastrowid
        if ex.message_id is not None:
            self.db.execute("UPDATE turns SET message_id = ? WHERE id = ?", [ex.message_id, user_turn])
        if ex.pending_id is not None:  # the platform's key of the message, which an edit or a deletion names
            key = self.db.execute("SELECT key FROM pending WHERE id = ?", [ex.pending_id]).fetchone()
            self.db.execute("UPDATE turns SET request_key = ? WHERE id = ?", [key and key[0], user_turn])
            ex.deleted = self._changed_before(key and key[0], user_turn, "user")
        if ex.deleted:
            ex.reply, ex.buttons, ex.custom, ex.messages, ex.source, ex.handoff = None, [], [], None, "deleted", None
        bot_turn = None
        if ex.custom and not ex.reply and not ex.buttons:  # the page showed the payload: the transcript says so
            ex.reply = CUSTOM_PLACEHOLDER
        if ex.reply or ex.buttons:  # an action may offer buttons alone: the transcript shows them too
            reply, shown, custom = (self._private(ex.reply or ""), [{**b, "title": self._private(b["title"])} for b in ex.buttons or []],
                                    self._private_payload(ex.custom or [])) if ex.quotes else (ex.reply or "", ex.buttons, ex.custom)
            buttons = json.dumps(shown, ensure_ascii=False) if shown else None
            bot_turn = self.db.execute(_ADD_TURN, [ex.conversation_id, "bot", reply, None, ex.channel, None, now(),
                                                  buttons, None, json.dumps(custom, ensure_ascii=False) if custom else None,
                                                  self.server]).lastrowid
            if ex.messages:
                messages = self._private_payload(ex.messages) if ex.quotes else ex.messages
                self.db.execute("UPDATE turns SET messages = ? WHERE id = ?",
                                [json.dumps(messages, ensure_ascii=False), bot_turn])
        self.db.execute(
            "INSERT INTO predictions (turn_id, reply_turn_id, intent, confidence, ranking, source, model_version, "
            "retrieval_score, reverted, restarted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [user_turn, bot_turn, ex.intent, ex.confidence, json.dumps(ex.ranking), ex.source, ex.model_version,
             ex.retrieval_score, 1 if ex.reverted else None, 1 if ex.restarted else None],
        )
        if ex.deleted:  # unanswered, it changes nothing: no question the customer never got awaits its answer
            self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", [now(), ex.conversation_id])
        else:
            slots = self._slots_after(ex)
            loop = (ex.active_loop, ex.active_form if ex.active_loop else None)
            self.db.execute(_UPDATE_AFTER_TURN, {
                "now": now(), "slots": json.dumps(slots, ensure_ascii=False) if slots is not None else None,
                "fallbacks": ex.fallbacks, "fallbacks_read": ex.fallbacks_read, "loop_kept": loop == ex.loop_read,
                "active_loop": loop[0], "active_form": loop[1], "id": ex.conversation_id})
        if ex.pending_id is not None and bot_turn is None:  # no answer to send: a silent turn
            self.db.execute(_SETTLE, [now(), ex.pending_id])
        elif ex.pending_id is not None:  # owed until the platform takes the answer (delivered()); the message
            # stays as it came until then, for a deskbot from before migration 13 that would answer it again
            self.db.execute("UPDATE pending SET reply_turn = ? WHERE id = ?", [bot_turn, ex.pending_id])
        if ex.handoff is not None:
            ex.handed_off = self._set_status(ex.conversation_id, "handed_off", ex.handoff)
        return int(user_turn), (int(bot_turn) if bot_turn is not None else None)

    def _slots_after(self, ex: Exchange) -> dict[str, Any] | None:
        """The conversation's slots as ``ex`` leaves them (None: as they are), in the caller's transaction: the slots
        its turn set, changed or removed of those it read (``Exchange.slots_read``), made to the slots as they are now.
        Two servers on one store answering a message of the same conversation at once each read the slots before the
        other wrote them, and the later write put back every slot the earlier had set."""
        if ex.slots is None or ex.slots_read is None:
            return ex.slots
        read = ex.slots_read
        stored = self.db.execute("SELECT slots FROM conversations WHERE id = ?", [ex.conversation_id]).fetchone()[0]
        slots: dict[str, Any] = json.loads(stored or "{}")
        for name in read.keys() - ex.slots.keys():
            slots.pop(name, None)
        slots.update({name: value for name, value in ex.slots.items() if name not in read or read[name] != value})
        return slots

    def answer_to(self, conversation_id: str, message_id: str, since: float) -> dict[str, Any] | None:
        """The exchange of the customer's latest message sent with the web client's ``message_id`` since ``since``
        (``_v33``), None if none: its turn's id (``user_turn_id``), its reply's (``turn_id``, None where the bot was
        silent) with the reply's ``text``, ``buttons``, ``custom`` and ``messages`` as the customer saw them, what the
        model made of it (``intent``, ``confidence``, ``ranking``, ``source``) and the conversation's ``slots``. A
        message sent again (the widget's Retry) reaching a server started since is answered with it, not anew."""
        rows = list(self.db.query(
            "SELECT u.id AS user_turn_id, p.reply_turn_id AS turn_id, p.intent, p.confidence, p.ranking, p.source, "
            "r.role, coalesce(r.text, '') AS text, r.buttons, r.custom, r.messages, c.slots "
            "FROM turns u JOIN predictions p ON p.turn_id = u.id LEFT JOIN turns r ON r.id = p.reply_turn_id "
            "JOIN conversations c ON c.id = u.conversation_id "
            "WHERE u.conversation_id = ? AND u.message_id = ? AND u.created >= ? ORDER BY u.id DESC LIMIT 1",
            [conversation_id, message_id, since]))
        if not rows:
            return None
        row = _as_customer_saw(_with_json(_with_slots(rows[0])))
        return {**row, "ranking": [tuple(ranked) for ranked in json.loads(row["ranking"] or "[]")]}

    def keeps_turn(self, turn_id: int) -> bool:
        """Whether the store still keeps the turn ``turn_id``: not once its conversation was purged, by `bot purge` in
        another process too (a turn's id is never given again: ``_FLOORED``)."""
        return self.db.execute("SELECT 1 FROM turns WHERE id = ?", [turn_id]).fetchone() is not None

    def claim(self, conversation_id: str, message_id: str, stale: Staleness, answered_since: float = 0.0) -> bool:
        """Whether this server may answer the web message sent with ``message_id`` (``_v35``): False while another
        answers it, until its claim is ``stale`` (a server hung mid-answer, or one not serving the store, leaves its
        claim to go stale: :class:`LeaseWatch`) and while that server lives (:meth:`serve`: one killed mid-answer
        leaves it at once). The claim stays once the answer is kept, where :meth:`answer_to` finds it, until no Retry
        is answered from it (``answered_since``); :meth:`unclaim` gives up one that failed.

        False too once an answer to it is kept since ``answered_since`` (:meth:`answer_to`'s ``since``): a claim stops
        being renewed once its answer is kept, and goes stale; a server that looked for the answer before it was kept,
        then claimed the message after that claim went stale (its store's thread held up meanwhile), answered it a
        second time."""
        key = [conversation_id, message_id]
        with self._writing():
            if self.db.execute("SELECT 1 FROM turns u JOIN predictions p ON p.turn_id = u.id "
                               "WHERE u.conversation_id = ? AND u.message_id = ? AND u.created >= ?",
                               [*key, answered_since]).fetchone():
                return False
            self.db.execute("DELETE FROM answering WHERE claimed < ? AND NOT (conversation_id = ? AND message_id = ?)",
                            [answered_since, *key])
            claimant = self.db.execute("SELECT server, claimed FROM answering WHERE conversation_id = ? AND message_id = ?",
                                       key).fetchone()
            # one that kept its answer as it died (after the caller looked for it) gave the answer to give
            if claimant is not None and (stale(("claim", *key, claimant[0]), claimant[1]) or (
                    self._gone(claimant[0]) and not self.db.execute(
                        "SELECT 1 FROM turns WHERE conversation_id = ? AND message_id = ? AND created >= ?",
                        [*key, claimant[1]]).fetchone())):
                self.db.execute("DELETE FROM answering WHERE conversation_id = ? AND message_id = ?", key)
            return bool(self.db.execute("INSERT OR IGNORE INTO answering (conversation_id, message_id, claimed, server) "
                                        "VALUES (?, ?, ?, ?)", [*key, now(), self.server]).rowcount)

    def renew_claim(self, conversation_id: str, message_id: str) -> bool:
        """Mark this server's claim of the web message sent with ``message_id`` as still being answered now, so that
        another server does not take an answer that runs long (a slow action, a turn waiting for another) for a hung
        server's, which stops renewing. A claim whose answer is kept is left as it was: :meth:`claim` knows the answer
        of a server killed since by its being kept after the claim. False where it is no longer this server's
        (another took it as stale). One deleted while no other server claimed the message (:meth:`claim` clears
        the claims older than a Retry is answered from, which a wall clock stepped forward takes a live one for) is
        this server's again: it still answers, and its turn goes on."""
        key = [conversation_id, message_id]
        with self._writing():
            return bool(self.db.execute(
                "UPDATE answering SET claimed = CASE WHEN EXISTS (SELECT 1 FROM turns WHERE conversation_id = ? AND "
                "message_id = ? AND created >= answering.claimed) THEN claimed ELSE ? END "
                "WHERE conversation_id = ? AND message_id = ? AND server = ?", [*key, now(), *key, self.server]).rowcount
                or self.db.execute("INSERT OR IGNORE INTO answering (conversation_id, message_id, claimed, server) "
                                   "VALUES (?, ?, ?, ?)", [*key, now(), self.server]).rowcount)

    def _gone(self, server: str | None) -> bool:
        """Whether ``server``, another than this serving store's, has stopped, however it ended: its lock can be
        taken. False for a server not serving (None), whose claims go stale instead."""
        if server is None or self.server is None or server == self.server:
            return False
        lock = self._server_lock(server)
        try:
            lock.acquire(timeout=0)
        except (Timeout, OSError):  # alive, or not this user's to open
            return False
        Path(lock.lock_file).unlink(missing_ok=True)  # as adopt() leaves a gone server's
        lock.release()
        return True

    def take_turn(self, conversation_id: str, stale: Staleness, of: str = "turn") -> bool:
        """Whether this serving store (:meth:`serve`) may run a turn of ``conversation_id`` now, taken for it if so
        (``_v41``): False while another server on the store runs one, until it is ``stale`` (a server hung mid-turn
        stops renewing it, :meth:`renew_turn`, and leaves it to go stale: :class:`LeaseWatch`) and while that server
        lives (one killed mid-turn leaves it at once). A turn of this server's own left by an :meth:`end_turn` that
        failed is no other's: this server runs one turn of a conversation at a time. ``of="send"``: the turn to send
        its customer a message, all its pieces (``_v53``), taken the same way, so that no other server's message lands
        between them."""
        table = LEASES[of]
        with self._writing():
            holder = self.db.execute(f"SELECT server, taken FROM {table} WHERE conversation_id = ?",
                                     [conversation_id]).fetchone()
            if (holder is not None and holder[0] != self.server
                    and not stale((of, conversation_id, holder[0]), holder[1]) and not self._gone(holder[0])):
                return False
            self.db.execute(f"INSERT OR REPLACE INTO {table} (conversation_id, server, taken) VALUES (?, ?, ?)",
                            [conversation_id, self.server, now()])
            return True

    def renew_turn(self, conversation_id: str, of: str = "turn") -> bool:
        """Mark this server's turn of ``conversation_id`` (``of``, as :meth:`take_turn`'s) as still running now, so
        that the other servers on the store do not take a turn that runs long (a slow action, a chain of follow-ups, a
        long answer's pieces paced to the platform's rate) for a hung server's, which stops renewing. False where it is
        no longer this server's: another took it as stale, or it has ended."""
        with self._writing():
            return bool(self.db.execute(f"UPDATE {LEASES[of]} SET taken = ? WHERE conversation_id = ? AND server = ?",
                                        [now(), conversation_id, self.server]).rowcount)

    def sending(self, conversation_id: str) -> bool:
        """Whether a server on the store holds the turn to send a message to the customer of ``conversation_id``
        (:meth:`take_turn` with ``of="send"``): a platform's reply to a callback, which takes no turn, would land
        between that message's pieces."""
        held = self.db.execute("SELECT 1 FROM send_turns WHERE conversation_id = ?", [conversation_id]).fetchone()
        return held is not None

    def reloaded(self) -> None:
        """Keep that this serving store's server reloaded the bot's files (``POST /admin/reload``, ``_v44``), for the
        other servers on the store to reload too (:meth:`latest_reload`). The latest alone is kept."""
        with self._writing():
            kept = self.db.execute("INSERT INTO reloads (server, created) VALUES (?, ?)", [self.server, now()])
            self.db.execute("DELETE FROM reloads WHERE id < ?", [kept.lastrowid])

    def latest_reload(self) -> tuple[int, str | None]:
        """The latest reload kept (:meth:`reloaded`): its number, higher at each (0: none yet), and its server."""
        row = self.db.execute("SELECT id, server FROM reloads ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def end_turn(self, conversation_id: str, of: str = "turn") -> None:
        """Let the next turn of ``conversation_id`` (``of``, as :meth:`take_turn`'s) run, here or on another server,
        once this server's is logged, or its message sent."""
        with self._writing():
            self.db.execute(f"DELETE FROM {LEASES[of]} WHERE conversation_id = ? AND server = ?",
                            [conversation_id, self.server])

    def unclaim(self, conversation_id: str, message_id: str) -> None:
        """Give up this server's claim whose answer failed: the message sent again is answered, by whichever server it
        reaches. Another server's claim of it stays: made after this one went stale, that server answers the message,
        and the message sent again waits for that answer rather than being answered a second time."""
        with self._writing():
            self.db.execute("DELETE FROM answering WHERE conversation_id = ? AND message_id = ? AND server IS ?",
                            [conversation_id, message_id, self.server])

    # --- platform messages between acknowledgement and answer ------------------------------------

    def receive(self, key: str, conversation_id: str, channel: str, user: str | None, text: str,
                metadata: dict[str, Any], shown: str | None = None,
                within: tuple[int, float] | None = None) -> int | None:
        """Keep a Slack or WeCom message before its platform is told it arrived, and return its id; None
        when a message with this ``key`` is already kept (the platform delivered it again).

        Those platforms are acknowledged before the answer is ready and do not send a message again
        once acknowledged, so a server killed in between would lose it. The message's exchange
        (``Exchange.pending_id``) names its answer in the row, which is settled once the platform took
        that answer (:meth:`delivered`); rows left by a killed server are answered, or their answers
        sent, by the next one (:meth:`adopt`). An answered message's key stays for ``REDELIVERY_WINDOW_S``, which
        a redelivery to the next server may fall in. The text, and the message as the agents read it (``shown``: a
        Slack customer's mentions by name, the picture that came with it), are kept as the store keeps a turn's
        ``text`` and ``raw_text``, redacted unless privacy says otherwise.

        ``within`` (``most``, ``window_s``): raise :class:`OverLimit`, keeping nothing, when the conversation's messages
        kept within the window (:meth:`kept_wait`) leave no room for this one, counted in the transaction that keeps
        it: two servers that each counted first and kept after both found room for the last place, and let one more
        than the limit through.
        """
        with self._writing():
            # a redelivery is answered as kept, never held back: _kept_key forgets the keys past their window first
            if not self._kept_key(key) and within is not None and (wait := self.kept_wait(conversation_id, *within)):
                raise OverLimit(wait)
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO pending (key, conversation_id, channel, user, text, shown, metadata, received, "
                "owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, conversation_id, channel, user, *self._stored_texts(text, shown),
                 json.dumps(metadata, ensure_ascii=False), now(), self.server])
            if not cursor.rowcount:
                return None
            self.db.execute("DELETE FROM hints WHERE conversation_id = ?", [conversation_id])  # words: told again
            return int(cursor.lastrowid)

    def receive_unanswered(self, key: str, conversation_id: str, channel: str, user: str | None, text: str) -> bool:
        """Add a platform message the bot does not read (a picture shown to the agent as "[图片]") as the
        customer's turn in a conversation a person has, and say whether the person has it: False, and nothing
        stored, when the bot has it (the channel answers the customer itself). Decided in the transaction that
        stores it, as :meth:`add_busy_notice` is: a conversation handed back between the channel reading its
        status and storing the turn held a picture nobody would look at, and its customer got no answer. Its key
        is kept as :meth:`receive` keeps an answered message's, so that a redelivery reaching a server started
        since is not added twice (True: the person has it already)."""
        with self._writing():
            if self._kept_key(key):
                return True
            status = self.db.execute("SELECT status FROM conversations WHERE id = ?", [conversation_id]).fetchone()
            if status is None or status[0] != "handed_off":
                return False
            self._add_received(key, conversation_id, "user", text, channel, user)
            return True

    def receive_note(self, key: str, conversation_id: str, channel: str, author: str, text: str,
                     takes_over: bool = True, edit: bool = False, member: str = "") -> bool:
        """Add what a member of the support team wrote on the platform in a customer's conversation (a colleague's
        reply in a Slack Connect thread) as an agent's message by ``author``, which the bot does not answer; say
        whether it was added. Only to a conversation the store holds: a colleague's message elsewhere in the channel
        begins none. Its key is kept as :meth:`receive_unanswered` keeps one, so that a redelivery is not added twice.
        A conversation the bot has is handed to ``author`` (reason ``agent``), as a takeover hands it: the customer
        answers the colleague now, and the bot answered them; not without ``takes_over`` (the bot mentioned alone,
        which says nothing to the customer).

        A message kept already, delivered again as its ``edit``, takes ``text`` (:meth:`replace_message`): an app that
        hears mentions alone (``app_mention``, no ``message.channels``) learns of an edit only so, and a colleague's
        mention of the bot alone edited into words to the customer kept reading "[mentioned the bot]", the bot
        answering on. A redelivery of the message as first written changes nothing: it may come after an edit.

        ``member``, the author's platform id, is kept beside ``author`` (:meth:`kept_members`), for a later server
        to rename them by should the platform name them otherwise."""
        with self._writing():
            if self.conversation(conversation_id) is None:
                return False
            if self._kept_key(key):
                if edit:
                    self.replace_message(conversation_id, key, text)
                return False
            if takes_over:
                self._set_status(conversation_id, "handed_off", "agent", author)  # a person's already: left as it is
            self._add_received(key, conversation_id, "agent", text, channel, author)
            if member:
                self.db.execute("INSERT OR REPLACE INTO members (channel, member, name) VALUES (?, ?, ?)",
                                [channel, member, author])
            return True

    def kept_members(self, channel: str) -> dict[str, str]:
        """The name each support team member's notes and takeovers are kept by in ``channel``'s conversations, by
        their platform id (:meth:`receive_note`'s ``member``): a server renames those the platform now names otherwise
        (:meth:`name_member`), as it can tell from names alone only those kept by their id."""
        return dict(self.db.execute("SELECT member, name FROM members WHERE channel = ?", [channel]).fetchall())

    def holding_members(self, channel: str) -> set[str]:
        """The platform ids of the support team members kept in ``channel`` (:meth:`kept_members`) who have handed-off
        customers now (:meth:`holders`): the ones a server renamed on the platform while no server ran should be
        named first, as their customers wait in the agents' inbox under the old name."""
        holding = {agent_key(name) for name in self.holders()}
        return {member for member, name in self.kept_members(channel).items() if agent_key(name) in holding}

    def member_names(self, channel: str) -> set[str]:
        """The names support team members are known by in ``channel``'s conversations (their notes, and the handoffs
        and takeovers they made or ended, :meth:`receive_note`), among which those kept by their platform id while the
        platform gave no names, which a restarted server has to rename (:meth:`name_member`): it knew them only while
        it ran, and the customers they took over stayed theirs as "U7" until they wrote again."""
        within = "conversation_id IN (SELECT id FROM conversations WHERE channel = :channel)"
        rows = self.db.execute(
            f"SELECT user FROM turns WHERE role = 'agent' AND {within} "
            + "".join(f"UNION SELECT {column} FROM {table} WHERE {within} "
                      for table in ("handoffs", "takeovers") for column in ("agent", "previous")),
            {"channel": channel})
        return {name for name, in rows if name}

    def name_member(self, channel: str, member: str, name: str, noted: str) -> None:
        """Name ``member``, a support team member kept by their platform id in ``channel``'s conversations (their
        notes, their takeovers, :meth:`receive_note`) while the platform gave no names, or by the name they have since
        changed on the platform, by ``name`` there now: their notes since said their name, but the conversations they
        took over stayed theirs as "U7" (or the old name) in the agents' inbox, until they wrote there again. Only in
        the conversations where they wrote on the platform (a note whose key starts with ``noted``): an agent of the
        console who goes by the same name (the colleague themselves, named in ``server.agents``) keeps the customers
        they took there."""
        with self._writing():
            names = {"channel": channel, "member": member, "name": name, "noted": noted}
            written = [row[0] for row in self.db.execute(  # before their notes are renamed
                "SELECT DISTINCT conversation_id FROM turns WHERE role = 'agent' AND user = :member "
                "AND substr(request_key, 1, length(:noted)) = :noted "
                "AND conversation_id IN (SELECT id FROM conversations WHERE channel = :channel)", names)]
            names["written"] = json.dumps(written)
            within = "conversation_id IN (SELECT value FROM json_each(:written))"
            self.db.execute(f"UPDATE turns SET user = :name WHERE role = 'agent' AND user = :member AND {within}", names)
            for table in ("handoffs", "takeovers"):
                for column in ("agent", "previous"):
                    folded = f", {column}_folded = agent_key(:name)" if table == "takeovers" else ""  # ``_v50``
                    self.db.execute(f"UPDATE {table} SET {column} = :name{folded} WHERE {column} = :member AND {within}",
                                    names)
            self.db.execute("UPDATE members SET name = :name WHERE channel = :channel AND name = :member", names)

    def replace_message(self, conversation_id: str, key: str, text: str | None, raw_text: str | None = None,
                        recent: bool = False) -> bool:
        """A customer's message in ``conversation_id``, known by its platform ``key`` (:meth:`receive`), as they edited
        it there (``text`` as the model reads it, ``raw_text`` as typed, kept as privacy allows) or, ``text`` None,
        deleted: its text is then :data:`~dialogues.holding.DELETED`, its review labels and the agent's answer learnt
        for it go, so that nothing is learnt from it. The bot's answer stays: it answered the message as first
        written. A support team member's note (:meth:`receive_note`) is edited as written, or deleted, the same way.
        Returns whether the deletion took back the handoff its answer made (:meth:`_withdraw_handoff`), which the
        agents were told of.

        A message that is no turn yet has the change kept under its key (:data:`_CHANGE`), and made as its turn is
        written, where it is kept and being answered (the bot still working on it), or, deleted, is ``recent`` (sent a
        moment ago: Slack sends a message and its deletion apart, in any order): deleted a second after it was sent, a
        message kept its text. Another's edit is none of the store's (a colleague's message elsewhere in the channel):
        its words are not kept.

        A colleague's mention of the bot alone, which left the conversation with whoever had it (:meth:`receive_note`
        without ``takes_over``), edited into words to the customer hands it to them, as those words written so would
        have: the bot went on answering a customer who was talking with the colleague."""
        with self._writing():
            turns = self.db.execute("SELECT id, role, text, user FROM turns WHERE conversation_id = ? "
                                    "AND request_key = ? AND role IN ('user', 'agent')", [conversation_id, key]).fetchall()
            if not turns and (text is None and recent or self.db.execute(
                    "SELECT 1 FROM pending WHERE key = ? AND answered IS NULL", [key]).fetchone()):
                texts = None if text is None else self._stored_texts(text, raw_text)
                self.db.execute("INSERT OR REPLACE INTO pending (key, conversation_id, channel, text, metadata, received, "
                                "answered) VALUES (?, ?, '', '', ?, ?, ?)",
                                [_CHANGE + key, conversation_id, json.dumps({"texts": texts}), now(), now()])
            for turn_id, role, before, author in turns:  # an agent's words are kept as written (add_message)
                self._change_turn(turn_id, role, None if text is None else (raw_text or text, None) if role == "agent"
                                  else self._stored_texts(text, raw_text))
                if role == "agent" and before in _MENTIONED and text is not None and text not in _MENTIONED:
                    self._set_status(conversation_id, "handed_off", "agent", author)  # a person's already: left so
            return text is None and any(role == "user" for _, role, _, _ in turns) and self._withdraw_answer(key)

    def _withdraw_answer(self, key: str) -> bool:
        """Settle the kept message with ``key``, deleted by its customer, whose answer is logged and not yet sent (it
        waits its turn behind the platform's pacing, or for the next server, :meth:`adopt`), and mark that answer
        undelivered: it is not sent (:meth:`owed`), as a reply under a message that is gone answers nothing. Whether
        the handoff it made was taken back."""
        owed = self.db.execute("SELECT id, reply_turn, conversation_id FROM pending WHERE key = ? AND answered IS NULL "
                               "AND reply_turn IS NOT NULL", [key]).fetchone()
        if owed is None:
            return False
        self.db.execute(_SETTLE, [now(), owed[0]])
        self.db.execute(_UNDELIVERED, [owed[1]])
        return self._withdraw_handoff(owed[2], owed[1])

    def _withdraw_handoff(self, conversation_id: str, reply_turn: int) -> bool:
        """Take back the handoff that the withdrawn answer ``reply_turn`` made ("Connecting you to a person"), as
        a message deleted while the bot worked on it makes none, while nothing has happened in the conversation since:
        no agent has taken it, and no one has written. A customer who deleted their "talk to a person" before they
        were told waited in the agents' inbox as "[deleted]", and was told later that the agents were busy. Whether
        it was taken back."""
        self.db.execute(
            "DELETE FROM handoffs WHERE id = (SELECT max(id) FROM handoffs WHERE conversation_id = :c) "
            "AND event = 'handed_off' AND agent IS NULL AND taken IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM takeovers WHERE handoff_id = handoffs.id) "
            "AND NOT EXISTS (SELECT 1 FROM turns WHERE conversation_id = :c AND id > :reply) "
            "AND EXISTS (SELECT 1 FROM predictions WHERE reply_turn_id = :reply AND source = 'handoff')",
            {"c": conversation_id, "reply": reply_turn})
        if not self.db.execute("SELECT changes()").fetchone()[0]:
            return False
        self.db.execute("UPDATE conversations SET status = 'open', updated = ? WHERE id = ?", [now(), conversation_id])
        return True

    def _change_turn(self, turn_id: int, role: str, texts: tuple[str, str | None] | None) -> None:
        """Give a customer's or an agent's turn the ``texts`` its message was edited to (as :meth:`_stored_texts` gives
        them; an agent's turn takes the second, as written, where there is one), or, ``None``, mark it deleted. A
        customer's old text stays in the full-text index until it is merged (:meth:`merge_search_index_if_rewritten`)."""
        self._index_rewritten |= role == "user"
        if texts is None:
            self.db.execute("UPDATE turns SET text = ?, raw_text = NULL WHERE id = ?", [DELETED, turn_id])
            self.db.execute("DELETE FROM review_labels WHERE turn_id = ?", [turn_id])
            self.db.execute("DELETE FROM answer_candidates WHERE question_turn_id = ?", [turn_id])
        elif role == "agent":
            self.db.execute("UPDATE turns SET text = ? WHERE id = ?", [texts[1] or texts[0], turn_id])
        else:
            self.db.execute("UPDATE turns SET text = ?, raw_text = ? WHERE id = ?", [*texts, turn_id])
            self.db.execute("UPDATE answer_candidates SET question = ? WHERE question_turn_id = ?", [texts[0], turn_id])

    def _changed_before(self, key: str | None, turn_id: int, role: str) -> bool:
        """Make the change kept for the message with ``key`` (:meth:`replace_message`) to its turn, just written;
        whether the message was deleted."""
        change = key and self.db.execute("DELETE FROM pending WHERE key = ? RETURNING metadata", [_CHANGE + key]).fetchone()
        if not change:
            return False
        texts = json.loads(change[0]).get("texts")  # a purged conversation's change is blank: taken as deleted
        self._change_turn(turn_id, role, tuple(texts) if texts else None)
        return not texts

    def _add_received(self, key: str, conversation_id: str, role: str, text: str, channel: str, user: str | None) -> None:
        """Add a platform message as a turn at once, unanswered, known by its ``key``: a redelivery (:meth:`_kept_key`),
        an edit or a deletion (:meth:`replace_message`)."""
        stamp = now()  # its key alone is kept, settled: the message is a turn already
        self.db.execute("INSERT INTO pending (key, conversation_id, channel, user, text, metadata, received, answered) "
                        "VALUES (?, ?, ?, ?, '', '{}', ?, ?)", [key, conversation_id, channel, user, stamp, stamp])
        turn_id = self.add_message(conversation_id, role, text, channel, user)
        self.db.execute("UPDATE turns SET request_key = ? WHERE id = ?", [key, turn_id])
        self._changed_before(key, turn_id, role)

    def _kept_key(self, key: str) -> bool:
        """Whether a platform message with ``key`` is kept (or was, within ``REDELIVERY_WINDOW_S``)."""
        self.forget_old_keys()
        return self.db.execute("SELECT 1 FROM pending WHERE key = ?", [key]).fetchone() is not None


    def forget_old_keys(self) -> None:
        """Delete the keys of the platform messages answered (or purged) more than ``REDELIVERY_WINDOW_S`` ago, after
        which no redelivery comes. ``bot serve`` calls it every ``server.FORGET_KEYS_EVERY_S``: done only as a message
        was kept, a purged conversation's keys stayed until the next platform message, days later on a quiet bot."""
        with self._writing():
            self.db.execute("DELETE FROM pending WHERE answered < ?", [now() - REDELIVERY_WINDOW_S])
            # A platform's count of sends (take_send) runs over a minute, a hint is not told again for HINTED_S (ten
            # minutes): these are long past both.
            self.db.execute("DELETE FROM paced_sends WHERE ended < ?", [now() - REDELIVERY_WINDOW_S])
            self.db.execute("DELETE FROM hints WHERE told < ?", [now() - REDELIVERY_WINDOW_S])

    def kept_wait(self, conversation_id: str, most: int, window_s: float) -> float:
        """Seconds until the customer of ``conversation_id`` may send one more platform message within ``most`` in
        ``window_s``, counting those kept (:meth:`receive`, :meth:`receive_unanswered`; an edit's or a deletion's row
        aside) by every server on the store; 0.0 now. Each server counted its own, and two behind one callback URL let
        twice ``server.limits.per_conversation_per_minute`` through. A redelivery, kept once, counts once."""
        at = now()
        row = self.db.execute(
            "SELECT received FROM pending WHERE conversation_id = ? AND received > ? AND received < ? AND key NOT LIKE ? "
            "ORDER BY received DESC LIMIT 1 OFFSET ?", [conversation_id, *_window_around(at, window_s), _CHANGE + "%",
                                                       most - 1]).fetchone()
        return 0.0 if row is None else _wait_from(row[0], at, window_s)

    def received_since(self, conversation_id: str, since: float) -> bool:
        """Whether a platform message of the customer of ``conversation_id`` was kept (:meth:`receive`,
        :meth:`receive_unanswered`) after ``since`` (``time.time()``), by whichever server on the store: a notice for
        what they sent before (to type, to wait) says nothing to them any more."""
        return self.db.execute("SELECT 1 FROM pending WHERE conversation_id = ? AND received > ? LIMIT 1",
                               [conversation_id, since]).fetchone() is not None

    def hint_due(self, conversation_id: str, hint: str, hinted_s: float) -> bool:
        """Whether to tell the customer of ``conversation_id`` a channel's ``hint`` (that the bot reads text alone)
        for a message it cannot answer, kept as told now if so: not again for ``hinted_s``, or until they write words
        (:meth:`receive` forgets it), whichever server on the store their next message reaches. Each server kept its
        own, and a customer whose pictures reached two servers was told it twice."""
        with self._writing():
            at = now()
            if self.db.execute("SELECT 1 FROM hints WHERE conversation_id = ? AND hint = ? AND told > ?",
                               [conversation_id, hint, at - hinted_s]).fetchone():
                return False
            self.db.execute("INSERT OR REPLACE INTO hints (conversation_id, hint, told) VALUES (?, ?, ?)",
                            [conversation_id, hint, at])
            return True

    def reply_in(self, conversation_id: str, thread: str) -> None:
        """Keep ``thread`` as where the customer of ``conversation_id`` wrote last (a Slack DM's thread; empty: its top
        level), where an agent's replies and the handoff's notices go (:meth:`reply_thread`), whichever server on the
        store sends them and after a restart: one server's memory of it sent them to the top level, away from the
        customer's question."""
        with self._writing():
            if thread:
                self.db.execute("INSERT INTO reply_threads (conversation_id, thread) VALUES (?, ?) "
                                "ON CONFLICT(conversation_id) DO UPDATE SET thread = excluded.thread",
                                [conversation_id, thread])
            else:
                self.db.execute("DELETE FROM reply_threads WHERE conversation_id = ?", [conversation_id])

    def reply_thread(self, conversation_id: str) -> str:
        """The thread :meth:`reply_in` kept for ``conversation_id``; empty where none was."""
        row = self.db.execute("SELECT thread FROM reply_threads WHERE conversation_id = ?", [conversation_id]).fetchone()
        return row[0] if row else ""

    def take_send(self, conversation_id: str, most: int, window_s: float) -> tuple[int | None, float]:
        """A place for one message to the conversation's customer among the ``most`` a platform takes in ``window_s``
        (WeCom: 30 a minute from one app to one employee, the others dropped), counted for every server on the store:
        each counted its own, and two servers together sent twice what WeCom takes. ``(id, 0.0)`` when one is free, the
        send counted as ending now until :meth:`send_ended` says when it did; ``(None, seconds)`` until one is free
        otherwise. One transaction that takes the write lock first, so that two servers asking at once do not both
        take the last place."""
        with self._writing():
            at = now()
            # past the window, and of before a clock set back further than it (which would count again as it comes)
            self.db.execute("DELETE FROM paced_sends WHERE conversation_id = ? AND NOT (ended > ? AND ended < ?)",
                            [conversation_id, *_window_around(at, window_s)])
            full = self.db.execute("SELECT ended FROM paced_sends WHERE conversation_id = ? ORDER BY ended DESC "
                                   "LIMIT 1 OFFSET ?", [conversation_id, most - 1]).fetchone()
            if full is not None:
                return None, _wait_from(full[0], at, window_s)
            return self.db.execute("INSERT INTO paced_sends (conversation_id, ended) VALUES (?, ?)",
                                   [conversation_id, at]).lastrowid, 0.0

    def send_ended(self, send_id: int, conversation_id: str, ended: float) -> None:
        """Count the send :meth:`take_send` gave the place ``send_id`` from when it ``ended`` (``time.time()``), since
        the platform may have taken it up to then; kept again if a send that lasted longer than the window lost it,
        unless its conversation was purged meanwhile: kept again, the row named a purged customer for 15 minutes."""
        with self._writing():
            if not self.db.execute("UPDATE paced_sends SET ended = ? WHERE id = ?", [ended, send_id]).rowcount:
                self.db.execute("INSERT INTO paced_sends (id, conversation_id, ended) SELECT ?, ?, ? WHERE EXISTS "
                                "(SELECT 1 FROM conversations WHERE id = ?)", [send_id, conversation_id, ended,
                                                                               conversation_id])

    def delivered(self, pending_id: int, passive: bool = False) -> None:
        """Settle a kept message whose answer the platform took, or refused for good (marked undelivered); ``passive``:
        whose answer went back as the reply to the platform's request, which the platform never says it got (WeCom's
        passive reply), for a redelivery of the message to have sent (:meth:`unconfirmed_answer`)."""
        with self._lock:
            self.db.execute(_SETTLE, [now(), pending_id])
            if passive:
                self.db.execute("UPDATE pending SET metadata = ? WHERE id = ?", [_PASSIVE, pending_id])

    def unconfirmed_answer(self, key: str) -> dict[str, Any] | None:
        """The kept message ``key`` whose answer went back as the reply to the platform's request alone (:meth:`delivered`
        with ``passive``), with that answer as :meth:`adopt` gives an owed one, to send; taken once, by whichever server
        on the store the platform's redelivery reaches: a redelivery says the reply never reached the platform, and was
        taken for a duplicate, the customer answered by nobody. None for any other message (its conversation purged
        since among them)."""
        with self._lock:
            rows = self.db.execute_returning_dicts(
                "UPDATE pending SET metadata = '{}' WHERE key = ? AND metadata = ? AND reply_turn IS NOT NULL "
                "RETURNING *", [key, _PASSIVE])
        return self._with_answer(rows[0]) if rows else None

    def owed(self, pending_id: int) -> bool:
        """Whether the answer to the kept message ``pending_id`` is still to be sent: not once the platform took it, nor
        once its customer deleted the message (:meth:`replace_message`) or the conversation was purged."""
        with self._lock:
            return self.db.execute("SELECT 1 FROM pending WHERE id = ? AND answered IS NULL",
                                   [pending_id]).fetchone() is not None

    def answered(self, pending_id: int) -> None:
        """Forget a kept message whose turn failed: answered again by the next server, it would fail again.
        Its key goes too, so a redelivery reaching the next server (the failure may have passed) is answered."""
        with self._lock:
            self.db.execute("DELETE FROM pending WHERE id = ?", [pending_id])

    def serve(self) -> None:
        """Become a server of this store: the platform messages it keeps from now on are its own to answer,
        for as long as the process lives (a lock file it holds says so, which the system lets go of when
        the process dies, however it dies). See :meth:`adopt`."""
        real = self.path.resolve()  # two servers may name the store by two paths: its real file's folder
        self._servers = real.with_name(f".{real.name}.servers")  # hidden: a backup's `cp dialogues.db*` takes no folder
        # For this account alone, as the store is: another could open a lock file it may read and hold it, and a
        # gone server's messages were then never taken over.
        self._servers.mkdir(mode=0o700, exist_ok=True)
        self.server = uuid.uuid4().hex
        tag_logs_by(self.path)
        self._serving = self._server_lock(self.server)
        self._serving.acquire(timeout=0)
        self._forget_gone_servers()

    def _forget_gone_servers(self) -> None:
        """Delete the lock files of servers that are gone and left no message to answer: a killed server's
        file stays (the system lets go of its lock, not of the file), and a year of restarts piled them up.
        One that left messages keeps its file until a server of their channel takes them (:meth:`adopt`)."""
        with self._lock:
            owing = {row["owner"] for row in self.db.query("SELECT DISTINCT owner FROM pending WHERE answered IS NULL")}
        for path in _server_files(self._servers):
            if path.stem in owing or path.stem == self.server:
                continue
            if (lock := _gone(path)) is None:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
            lock.release()

    def _server_lock(self, server: str) -> FileLock:
        """``server``'s lock file, in the folder :meth:`serve` made beside the store's real file."""
        return FileLock(self._servers / f"{server}.lock", mode=0o600, thread_local=False)

    def _hold_own_lock(self) -> None:
        """Lock this server's file again if it was deleted, or its folder with it (a cleaner, an rsync --delete):
        anyone could then take it, and with it the messages this server is answering, and `bot restore` or a
        migration no longer saw the server running."""
        assert self._serving is not None and self.server is not None
        if Path(self._serving.lock_file).exists():
            return
        again = self._server_lock(self.server)
        try:
            again.acquire(timeout=0)
        except Timeout:  # another server holds it for the moment, to take this one's messages: the next round
            return
        self._serving.release()
        self._serving = again

    def adopt(self, channels: Collection[str]) -> list[dict[str, Any]]:
        """The kept messages of ``channels`` (those this server answers on) that no live server answers, now
        this serving store's to answer, oldest first; one already answered and not sent has its ``reply``,
        ``buttons``, ``custom`` payloads and ``messages`` (``Exchange.messages``), to send (``reply`` None: to answer).

        A message is answered by the server that kept it while that one lives, and by exactly one other
        once it is gone: a new server starting while the old one finishes its turns, a blue/green pair on
        one store, or two servers starting at once after a killed one would each have answered it. A
        server is gone when its lock can be taken; the row changes hands in one statement, so only one
        taker gets it. A message kept by a deskbot before servers had names is taken once it is
        ``UNOWNED_GRACE_S`` old, since that server may still be answering it.
        """
        assert self.server is not None, "adopt() is for a serving store (serve())"
        self._hold_own_lock()  # each round, a web-only server's too: `bot restore` and migrations look for it
        if not channels:
            return []
        among = f"channel IN ({', '.join('?' * len(channels))})"
        with self._lock:
            owners = [row["owner"] for row in self.db.query(
                f"SELECT DISTINCT owner FROM pending WHERE answered IS NULL AND owner IS NOT ? AND {among}",
                [self.server, *channels])]
        rows: list[dict[str, Any]] = []
        for owner in owners:
            lock = self._server_lock(owner) if owner is not None else None
            try:
                if lock is not None:
                    lock.acquire(timeout=0)
            except Timeout:  # alive: its messages are its own
                continue
            except OSError as exc:  # its file a link, a folder or another user's: said, and the others still taken
                log.warning("cannot tell whether the server that kept messages as %s is gone: %s", owner, exc)
                continue
            try:
                with self._lock:
                    rows += self.db.execute_returning_dicts(
                        f"UPDATE pending SET owner = ? WHERE owner IS ? AND answered IS NULL AND {among} "
                        "AND (owner IS NOT NULL OR received < ?) RETURNING *",
                        [self.server, owner, *channels, now() - UNOWNED_GRACE_S])
            finally:
                if lock is not None:
                    Path(lock.lock_file).unlink(missing_ok=True)
                    lock.release()
        return sorted((self._with_answer(row) for row in rows), key=lambda row: row["id"])

    def _with_answer(self, row: dict[str, Any]) -> dict[str, Any]:
        """A kept message's ``row`` with its metadata read and the answer logged for it: its ``reply``, ``buttons``,
        ``custom`` payloads and ``messages`` as the store keeps them (``reply`` None: not answered yet)."""
        row["metadata"] = json.loads(row["metadata"] or "{}")
        row["reply"], row["buttons"], row["custom"], row["messages"] = None, [], [], []
        if row["reply_turn"] is not None:  # answered: the answer as the store keeps it (a purge takes the
            with self._lock:                # conversation's kept messages with its turns)
                reply = _with_json(self.db.execute_returning_dicts(
                    "SELECT role, text, buttons, custom, messages FROM turns WHERE id = ?", [row["reply_turn"]])[0])
            # a reply of Slack blocks alone is sent as it was answered, not as the agents' CUSTOM_PLACEHOLDER
            shown = _as_customer_saw(reply)
            for column in ("buttons", "custom", "messages"):
                row[column] = shown[column]
            row["reply"] = shown["text"]
        return row

    def waiting_elsewhere(self, channels: Collection[str]) -> dict[str, int]:
        """How many kept messages have waited a minute or more, per channel, on channels other than
        ``channels``: a server without a channel never answers its messages, which wait for one that has
        it (a live one answers its own within seconds)."""
        with self._lock:
            return {row["channel"]: row["n"] for row in self.db.query(
                "SELECT channel, COUNT(*) AS n FROM pending WHERE answered IS NULL AND received < ? GROUP BY channel "
                "ORDER BY channel", [now() - UNOWNED_GRACE_S]) if row["channel"] not in channels}

    def add_message(self, conversation_id: str, role: str, text: str, channel: str = "web",
                    author: str | None = None, buttons: list[dict[str, str]] | None = None,
                    notice: str | None = None, sent: str | None = None) -> int:
        """An agent's (or the bot's) message that is not an answer to a user turn; ``author``, an agent's
        name, goes in the turn's ``user`` column, which holds who wrote a turn. ``buttons`` are kept so
        that a reloaded chat shows them again. ``notice``: which of the bot's notices it is (``busy``,
        ``joined``, ``resumed``; see ``_v16``), for :meth:`overdue`. ``sent``: an agent's reply as its customer got it,
        where that differs (in their Chinese script), kept in ``raw_text`` for the customer's history; ``text`` keeps
        the agent's words as written, which their colleagues read and a retrain learns."""
        with self._writing():
            self._ensure_conversation(conversation_id, channel, None)
            stamp = now()  # an agent's word is activity too: the open conversations list the latest first
            self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", [stamp, conversation_id])
            return int(self.db.execute(_ADD_TURN, [conversation_id, role, text, sent if sent != text else None,
                                                   channel, author, stamp,
                                                   json.dumps(buttons, ensure_ascii=False) if buttons else None,
                                                   notice, None, self.server]).lastrowid)

    def undelivered(self, turn_id: int) -> None:
        """Mark a reply (an agent's, or the bot's on a platform) the customer did not get (see ``_v8``)."""
        with self._writing():
            self.db.execute(_UNDELIVERED, [turn_id])

    def not_delivered(self, conversation_id: str, turn_id: int, pending_id: int | None) -> bool:
        """The bot's answer on a platform that refused it, at once: the kept message it answers settled (tried
        again, it would fail again), the answer marked undelivered, and the conversation handed to a person
        (reason ``undelivered``), who alone can still answer. Returns whether that handed it off (False: a
        person had it). Apart, a server killed in between left a settled message nobody would answer."""
        with self._writing():
            if pending_id is not None:
                self.db.execute(_SETTLE, [now(), pending_id])
            self.db.execute(_UNDELIVERED, [turn_id])
            return self._set_status(conversation_id, "handed_off", "undelivered")

    def history(self, conversation_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """A conversation's latest ``limit`` turns as its customer sees them, each bot reply with its buttons, the
        custom payloads its page was handed and its messages in the action's order (``Exchange.messages``):
        their messages as they typed them and saw them sent (raw_text, redacted as the text is), not as
        normalised for the model (１２３ and ，turned into 123 and ,)."""
        rows = self.db.query(
            f"SELECT t.id, t.role, t.text, t.raw_text, t.created, f.value AS feedback, {_AUTHOR}, t.buttons, t.custom, "
            "t.messages FROM turns t "
            "LEFT JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE turn_id = t.id) "
            "WHERE t.conversation_id = ? ORDER BY t.id DESC LIMIT ?",
            [conversation_id, limit],
        )
        return [_as_customer_saw(_with_json(self._shown(row))) for row in reversed(list(rows))]

    def said_elsewhere(self, conversation_ids: Collection[str], after: Marks | None, server: str | None
                       ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], Marks]:
        """What was written by other than ``server`` (another server on the store, or a command) in the conversations
        ``conversation_ids`` since ``after``, the marks the last call returned (None: the first call, which finds
        nothing): their turns, oldest first (``id``, ``conversation_id``, ``role``, ``text``, ``author``, ``buttons``,
        ``custom``, ``notice``); by conversation whose hands changed (a handoff, a handback, a takeover, a claim of a
        customer handed off to nobody (``_v40``), a release),
        its ``status`` and the ``agent`` who has it now, and the ``reason`` of the latest change (``agent`` for a
        takeover or a release); and the marks to ask after next (``_v38``)."""
        latest = Marks(*(self.db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                         for table in Marks._fields))
        if after is None or not conversation_ids:
            return [], {}, latest
        ids, others = json.dumps(list(conversation_ids)), server or ""
        within = "conversation_id IN (SELECT value FROM json_each(?)) AND id > ? AND id <= ? AND coalesce(server, '') != ?"
        turns = [_with_json(row) for row in self.db.query(
            "SELECT id, conversation_id, role, CASE WHEN role = 'agent' THEN coalesce(raw_text, text) ELSE text END AS text, "
            "CASE WHEN role = 'agent' THEN user END AS author, buttons, custom, "
            f"notice FROM turns WHERE {within} ORDER BY id", [ids, after.turns, latest.turns, others])]
        reasons = {cid: reason for cid, reason, _ in self.db.execute(  # the latest change's, the later rows last
            f"SELECT conversation_id, reason, created FROM handoffs WHERE {within} UNION ALL "
            f"SELECT conversation_id, 'agent', created FROM takeovers WHERE {within} UNION ALL "
            f"SELECT conversation_id, 'agent', created FROM handoff_claims WHERE {within} ORDER BY 3",
            [ids, after.handoffs, latest.handoffs, others, ids, after.takeovers, latest.takeovers, others,
             ids, after.handoff_claims, latest.handoff_claims, others])}
        changed = {}
        for cid, reason in reasons.items():
            status = self._status(cid)
            changed[cid] = {"status": status, "reason": reason,
                            "agent": self.holder(cid) if status == "handed_off" else None}
        return turns, changed, latest

    def recent_turns(self, conversation_id: str, limit: int) -> list[dict[str, Any]]:
        """A conversation's latest ``limit`` turns, oldest first, for a custom action's tracker (bot/actions.py,
        ``past_events``): each one's ``role``, ``text`` as stored (a customer's as the model read it; redacted
        as ``privacy:`` says), ``channel``, ``created``, ``buttons`` and ``custom``, and for a customer's what the bot
        made of it: ``intent``, ``confidence``, ``ranking``, ``source`` (how it was answered), ``reverted`` and
        ``restarted``."""
        rows = self.db.query(
            "SELECT t.role, t.text, t.channel, t.created, t.buttons, t.custom, p.intent, p.confidence, p.ranking, p.source, "
            "p.reverted, p.restarted "
            "FROM turns t LEFT JOIN predictions p ON p.turn_id = t.id WHERE t.conversation_id = ? "
            "ORDER BY t.id DESC LIMIT ?", [conversation_id, limit])
        return [{**_with_json(row), "ranking": json.loads(row["ranking"] or "[]"), "reverted": bool(row["reverted"]),
                 "restarted": bool(row["restarted"])} for row in reversed(list(rows))]

    def add_feedback(self, conversation_id: str, turn_id: int, value: int, comment: str | None = None) -> int:
        """A vote on a bot reply; KeyError unless ``turn_id`` is a bot turn of ``conversation_id``, so that
        knowing (or guessing) a turn id is not enough to rate another customer's conversation. The comment
        is the customer's own text, redacted like their messages.

        It replaces the reply's earlier vote, keeping the latest comment given when it has none: only the latest
        vote is read, and a row a vote, with up to 2,000 characters of comment, let one client clicking on one
        reply grow the store without end."""
        with self._writing():
            if not self.db.execute("SELECT 1 FROM turns WHERE id = ? AND role = 'bot' AND conversation_id = ?",
                                   [turn_id, conversation_id]).fetchone():
                raise KeyError(turn_id)
            comment = self._private(comment) if comment is not None else self._latest_comment(turn_id)
            self.db.execute("DELETE FROM feedback WHERE turn_id = ?", [turn_id])
            return int(self.db["feedback"].insert({"turn_id": turn_id, "value": value, "comment": comment, "created": now()}).last_pk)

    def vote_down_answer_before(self, conversation_id: str, turn_id: int, comment: str) -> int | None:
        """A thumbs-down on the bot's reply just before the customer's turn ``turn_id``, which said that reply missed
        ("不对", "that's wrong", the ``comment``): the customer who says so rarely clicks the thumb as well, and the
        answer was left out of the review queue and the figures. None where the turn before is no bot reply (an
        agent's, or none)."""
        before = self.db.execute("SELECT id, role FROM turns WHERE conversation_id = ? AND id < ? ORDER BY id DESC "
                                 "LIMIT 1", [conversation_id, turn_id]).fetchone()
        if before is None or before[1] != "bot":
            return None
        return self.add_feedback(conversation_id, before[0], -1, comment)

    def _latest_comment(self, turn_id: int) -> str | None:
        row = self.db.execute("SELECT comment FROM feedback WHERE turn_id = ? AND comment IS NOT NULL "
                              "ORDER BY id DESC LIMIT 1", [turn_id]).fetchone()
        return row[0] if row else None

    def count(self, table: str) -> int:
        return self.db[table].count

    # --- the agents' inbox ----------------------------------------------------------------------

    def inbox(self, status: str, limit: int, agent: str | None = None, search: str = "",
              offset: int = 0, holder: str | None = None, team: Collection[str] = ()) -> tuple[list[dict[str, Any]], int, int]:
        """The first ``limit`` conversations in ``status`` (``handed_off`` or ``open``) for the agents, past the first
        ``offset``, how many there are, and how many of them wait for a person's reply (none of the open ones): a
        full page of waiting customers may hide more, whom the console counts and announces too.

        ``search``: only the conversations whose id, customer, verified customer or any message the customer wrote
        holds it, in any letter case (``total`` counts those; ``waiting`` still counts every waiting customer): a
        customer past the latest page (the console's 200) could not be found at all.

        Handed-off conversations come longest-waiting first (``_HANDED_OFF`` says when a wait begins),
        since that is the order agents should take them in; one whose latest word is the agent's comes
        after every waiting one. Open conversations come most recently active first, for an agent
        looking for one to take over.

        ``unread``, for ``agent``: what the customer wrote since an agent's latest reply (``_HANDED_OFF``), and
        since the latest turn ``agent`` read there (:meth:`mark_seen`), whichever came later.

        ``holder``: only the handed-off conversations that agent has, in any letter case (``total`` counts those): at a
        change of shift, the customers an agent leaves, for a colleague to take over, were found among everyone's;
        ``""``, those nobody has (never taken over, or released, or someone's not among ``team``: :func:`_nobodys`), for
        the next free agent. None of the open ones.
        """
        return self.inbox_and_yours(status, limit, agent, search, offset, holder, team)[:3]

    def inbox_and_yours(self, status: str, limit: int, agent: str | None = None, search: str = "", offset: int = 0,
                        holder: str | None = None, team: Collection[str] = ()) -> tuple[list[dict[str, Any]], int, int, int]:
        """:meth:`inbox`, and how many customers wait on ``agent`` or on nobody, as :meth:`waiting` counts them (every
        waiting one without ``agent``): :meth:`poll`'s ``conversations``, ``total``, ``waiting`` and ``waiting_yours``."""
        polled = self.poll(status, limit, agent, search, offset, holder, team, unread=False)
        return polled["conversations"], polled["total"], polled["waiting"], polled["waiting_yours"]

    def poll(self, status: str, limit: int, agent: str | None = None, search: str = "", offset: int = 0,
             holder: str | None = None, team: Collection[str] = (), unread: bool = True) -> dict[str, Any]:
        """What each agent's console polls every 3 s, from one pass over the handed-off conversations: :meth:`inbox`'s
        page (``conversations``), ``total`` and ``waiting``; the customers waiting on ``agent`` or on nobody
        (``waiting_yours``, as :meth:`waiting` counts them; every waiting one without ``agent``); ``agent``'s customers
        with what each wrote unread (``unread_yours``, :meth:`unread_of`; not read unless ``unread``); and the agents
        who have customers (``holders``, :meth:`holders`). Each handed-off conversation's wait and holder are read
        once, for the order, the counts, the agent's customers and the holders together; who has each customer, their
        latest message and what is unread, for the page's rows and the agent's customers alone. Read each on its own,
        the inbox, the count of the agent's customers, their unread messages and the holders each went over every
        handed-off conversation again, 190 ms of one core at each poll with 5,000 of them handed off."""
        with self.snapshot():  # the pass kept and the rows read after it alike
            found = self._found(search)
            key = agent_key(agent)
            # searched on the waiting tab alone: the other lists its page of the conversations with the bot so
            every = self._handed_off_pass(found if status == "handed_off" else self._found(""))
            waits = [row for row in every if row[1] is not None]
            waiting = len(waits)
            yours = waiting if agent is None else sum(agent_key(row[3]) == key or _nobody_has(row[3], team) for row in waits)
            mine = [row[0] for row in every if agent_key(row[3]) == key] if unread and key else []
            if status == "handed_off":
                listed = [row[0] for row in every if row[4] and _holds(row[3], holder, team)]
                total = len(listed) if holder is not None else self._listed("handed_off", found)
                details = self._handed_off_rows(agent, listed[offset:offset + limit] + mine)
                rows = [details[conversation_id] for conversation_id in listed[offset:offset + limit]]
            else:
                details = self._handed_off_rows(agent, mine)
                rows, total = [], 0
                if holder is None:
                    rows = list(self.db.query(
                        f"SELECT c.id AS conversation_id, c.channel, c.user, {_VERIFIED}, c.status, c.created, c.updated, "
                        "NULL AS handed_off_at, NULL AS reason, NULL AS agent, NULL AS waiting_since, "
                        f"{_LATEST_TYPED} AS last_message, NULL AS agent_unread FROM conversations c "
                        f"WHERE c.status = 'open' AND {_AGENTS_REACH} AND {found.sql('c.id', 'c.user', _VERIFIED_OF_C)} "
                        "ORDER BY c.updated DESC LIMIT ? OFFSET ?", [*found.args(), limit, offset]))
                    total = self._listed("open", found)
                waiting = 0  # none of the open ones wait for a person
            unread_yours = [{"conversation_id": conversation_id, "unread": details[conversation_id]["agent_unread"]}
                            for conversation_id in mine]
            for row in rows:
                row["unread"] = row.pop("agent_unread")
                if self.keep_raw:  # the latest message as typed is then the unredacted copy, not for display (``_shown``)
                    row["last_message"] = row["last_message"] and self._private(row["last_message"])
            return {"conversations": rows, "total": total, "waiting": waiting, "waiting_yours": yours,
                    "unread_yours": unread_yours,
                    "holders": _one_spelling_each(row[3] for row in every)}

    def _handed_off_pass(self, found: Search) -> list[tuple[Any, ...]]:
        """Each handed-off conversation's id, wait, handoff time, holder, and whether ``found`` keeps it, longest-waiting
        first: :meth:`poll`'s pass over them all. Without a search, kept until what the inbox shows changes
        (:meth:`inbox_version`): every console's poll, on the tab of the conversations with the bot too, went over every
        handed-off conversation anew, 70 ms with 2,000 of them, for the rows the poll before had read."""
        changes = None if found.text else self._inbox_changes()
        if changes is not None and self._pass is not None and self._pass[0] == changes:
            return self._pass[1]
        every = self.db.execute(
            f"SELECT w.conversation_id, waiting_since, handed_off_at, w.agent, "
            f"{found.sql('w.conversation_id', 'w.user', 'w.verified_user')} FROM ({_HANDED_OFF}) w",
            found.args()).fetchall()
        every.sort(key=lambda row: (row[1] is None, row[1] or 0.0, row[2], row[0]))
        if changes is not None:
            self._pass = (changes, every)
        return every

    def _listed(self, status: str, found: Search) -> int:
        """How many conversations in ``status`` the agents reach and ``found`` keeps. With no search: the count the
        triggers of ``_v54`` keep; counted with the agents' reach compared on each, every conversation's row was read,
        40 ms for the 98,000 open ones of a store of 100,000 at each refresh of a console's tab of the conversations
        with the bot, and counted from the status index, 10 ms."""
        if not found.text:
            return self.db.execute("SELECT coalesce((SELECT conversations FROM listed_conversations WHERE status = ?), 0)",
                                   [status]).fetchone()[0]
        return self.db.execute(f"SELECT count(*) FROM conversations c WHERE status = ? AND {_AGENTS_REACH} "
                               f"AND {found.sql('c.id', 'c.user', _VERIFIED_OF_C)}", [status, *found.args()]).fetchone()[0]

    def _handed_off_rows(self, agent: str | None, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The inbox's rows of those handed-off conversations, by id, with what is unread for ``agent``
        (``agent_unread``): read for a page and one agent's customers alone, not for every one handed off. Each row as
        nobody's marks leave it is kept until what the inbox shows changes (:meth:`inbox_version`) and shared by every
        console's poll: after each change, each console read its page of 200 anew, 40 to 70 ms, the same rows as the
        console's before. Those ``agent`` has read are read for them: the rest are unread for them as for nobody, since
        what no agent answered was written since the handoff."""
        if not conversation_ids:
            return {}
        changes = self._inbox_changes()
        if self._kept_rows is None or self._kept_rows[0] != changes:
            self._kept_rows = (changes, {})
        kept = self._kept_rows[1]
        wanted = sorted(set(conversation_ids))
        kept.update(self._rows_read(None, [conversation_id for conversation_id in wanted if conversation_id not in kept]))
        read = [conversation_id for (conversation_id,) in self.db.execute(
            "SELECT conversation_id FROM seen WHERE agent = ? AND conversation_id IN (SELECT value FROM json_each(?))",
            [agent_key(agent), json.dumps(wanted)])]
        return {**{conversation_id: dict(kept[conversation_id]) for conversation_id in wanted if conversation_id in kept},
                **self._rows_read(agent_key(agent), read)}

    def _rows_read(self, key: str | None, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        """:meth:`_handed_off_rows` read anew, with what is unread for the agent whose name folds to ``key`` (None:
        what no agent's marks hide)."""
        if not conversation_ids:
            return {}
        return {row["conversation_id"]: row for row in self.db.query(
            f"SELECT w.*, min(w.unread, (SELECT count(*) FROM turns WHERE conversation_id = w.conversation_id AND "
            f"{_TYPED} AND created >= w.handed_off_at AND id > coalesce(s.turn_id, 0))) AS agent_unread "
            f"FROM ({_HANDED_OFF}) w LEFT JOIN seen s ON s.conversation_id = w.conversation_id AND s.agent = ? "
            "WHERE w.conversation_id IN (SELECT value FROM json_each(?))", [key, json.dumps(conversation_ids)])}

    def passed_to(self, agent: str | None) -> list[dict[str, Any]]:
        """The handed-off customers a colleague passed to ``agent`` (``pass_on``) and who are theirs still, latest first:
        ``conversation_id``, who passed them on (``by``) and when (``at``). Their console tells them, where a customer
        given to them appeared among the rest, unnoticed, until the customer complained. None for no agent. Not those
        the agent has read since the pass (:meth:`mark_seen`), in whatever browser: a console signed in anew announced
        again each pass its agent had opened elsewhere."""
        if not agent_key(agent):
            return []
        passed = "t.by_agent IS NOT NULL AND t.agent_folded = :agent AND agent_key(t.by_agent) != :agent"
        return list(self.db.query(
            f"SELECT w.conversation_id, w.by_agent AS by, w.created AS at FROM ({_moved_held(passed)}) w "
            "LEFT JOIN seen s ON s.conversation_id = w.conversation_id AND s.agent = :agent "
            "WHERE w.created >= w.handed_off_at AND agent_key(w.holder) = :agent AND coalesce(s.takeover_id, 0) < w.id "
            "ORDER BY w.created DESC LIMIT :most",
            {"agent": agent_key(agent), "most": PASSED_LISTED}))

    def unread_of(self, agent: str | None, team: Collection[str] = ()) -> list[dict[str, Any]]:
        """The handed-off customers ``agent`` has, every one, longest-waiting first, with how many messages each wrote
        that the agent has not read (:meth:`inbox`'s ``unread``): ``conversation_id`` and ``unread``. Their console
        says aloud who wrote again on whatever tab or page it shows; read off the waiting tab's page alone, an agent on
        another tab, or on page 2, heard nothing of their own customer writing. Not the first 100 alone: a customer past
        them, answered, who wrote again came into the list with their first new message, and a console says nothing
        of a customer listed for the first time. None for no agent."""
        if not agent_key(agent):
            return []
        return self.poll("handed_off", 0, agent, team=team)["unread_yours"]

    def taken_from(self, agent: str | None) -> list[dict[str, Any]]:
        """The handed-off customers someone else moved from ``agent`` to another agent (a lead's transfer, forced
        takeover or forced reply) or released to the queue, who are not ``agent``'s again, and those someone else
        handed back to the bot (``_v39``) who are with the bot still, for ``HANDED_BACK_TOLD_S``, latest first:
        ``conversation_id``, who moved them (``by``), to whom (``to``, None for a release or a handback), whether to
        the bot (``handed_back``) and when (``at``); always someone's move, never one kept without a maker. Their console tells them: it said nothing, and their next reply asked them to override a colleague,
        or took the released customer, or the one with the bot, back unasked, which undid the lead's move. None for
        no agent."""
        if not agent_key(agent):
            return []
        # a release no one is kept as making (a nameless one, kept so before the admin was named): nobody to name
        moved = ("t.previous_folded = :agent AND coalesce(t.by_agent, t.agent) IS NOT NULL "
                 "AND agent_key(coalesce(t.by_agent, t.agent)) != :agent")
        return [{**row, "handed_back": bool(row["handed_back"])} for row in self.db.query(
            f"SELECT conversation_id, coalesce(by_agent, agent) AS by, agent AS \"to\", created AS at, "
            f"0 AS handed_back FROM ({_moved_held(moved)}) "
            "WHERE created >= handed_off_at AND agent_key(holder) != :agent "
            # with the bot since: the conversation's latest change of status
            "UNION ALL SELECT conversation_id, agent, NULL, created, 1 FROM handoffs h "
            f"WHERE {HANDED_BACK} AND agent IS NOT NULL AND agent_key(previous) = :agent "
            "AND agent_key(agent) != :agent "
            "AND created >= :since AND id = (SELECT max(id) FROM handoffs WHERE conversation_id = h.conversation_id) "
            "ORDER BY at DESC LIMIT :most",
            {"agent": agent_key(agent), "most": PASSED_LISTED, "since": now() - HANDED_BACK_TOLD_S})]

    def holders(self) -> list[str]:
        """The agents who have handed-off customers now, one spelling of each name (as the inbox names them, ``agent``),
        by name: where the bot knows no agents' names (no server.agents), those whose customers alone a lead's console
        offers to list (``Store.inbox``'s ``holder``)."""
        # each holder read once, grouped here: grouped, filtered and ordered by in SQL, each conversation's holder was
        # read 4 times, 80 to 130 ms with 2,000 handed off at each console's 3-second poll
        return _one_spelling_each(held for (held,) in self.db.execute(f"SELECT agent FROM ({_HELD})"))

    def _found(self, search: str) -> Search:
        """The SQL of :meth:`inbox`'s ``search``: what the customer wrote is searched as agents may read it (with
        ``keep_raw`` the copy as typed is unredacted, not for display, and is not searched either)."""
        return Search(unicodedata.normalize("NFKC", search).lower(), ("text",) if self.keep_raw else ("text", "raw_text"))

    def mark_seen(self, conversation_id: str, agent: str | None, turn_id: int) -> None:
        """Keep that ``agent`` has read the conversation up to turn ``turn_id`` (at most its latest turn: a turn yet
        to come is not read), so that their inbox counts as new only what the customer wrote after it
        (:meth:`inbox`). An earlier turn, from a window showing less, leaves a later one read. The conversation's latest
        takeover is read too: a customer passed to the agent is no longer announced to them (:meth:`passed_to`)."""
        with self._writing():
            self.db.execute("INSERT INTO seen (conversation_id, agent, turn_id, takeover_id) "
                            "SELECT ?, ?, min(?, max(id)), (SELECT max(id) FROM takeovers WHERE conversation_id = ?) "
                            "FROM turns "
                            "WHERE conversation_id = ? HAVING max(id) IS NOT NULL ON CONFLICT (conversation_id, agent) "
                            "DO UPDATE SET turn_id = max(turn_id, excluded.turn_id), "
                            "takeover_id = max(coalesce(takeover_id, 0), coalesce(excluded.takeover_id, 0))",
                            [conversation_id, agent_key(agent), turn_id, conversation_id, conversation_id])

    def waiting(self, agent: str | None = None, team: Collection[str] = ()) -> tuple[int, float | None]:
        """How many handed-off customers wait for a person's reply, and since when the first of them has. With
        ``agent``, those waiting on them or on nobody alone: in a team, each console counted and announced every
        message a colleague's customer wrote to the colleague. ``team``, the agents' names where the bot knows them
        (``server.agents``): a customer of someone not among them (taken out by a reload) is nobody's, whom no
        console counted."""
        if agent is None:
            mine, args = "", []
        else:
            nobodys, gone = _nobodys("agent", team)
            mine, args = f"AND (agent_key(agent) = ? OR {nobodys})", [agent_key(agent), *gone]
        count, since = self.db.execute(
            f"SELECT count(*), min(waiting_since) FROM ({_HANDED_OFF}) WHERE waiting_since IS NOT NULL {mine}",
            args).fetchone()
        return count, since

    def overdue(self, before: float, again_after: float) -> list[dict[str, Any]]:
        """Handed-off customers waiting since before ``before`` and not yet told, in this wait, that the
        agents are busy (no busy notice since their wait began), or who wrote again ``again_after`` seconds
        or more after they were last told: one who comes back hours later to a conversation nobody answered
        got silence, as if the chat were broken, and one who writes on at once ("ok", "hello??") is not told
        at each message. Each comes with its conversation's ``slots`` (the language to tell them in). Only
        the busy notice counts (``notice = 'busy'``, see ``_v16``): the notice that an agent took the
        conversation over is stored in the wait too, and says nothing of how long the customer may wait."""
        return self._overdue(before, again_after)

    def _overdue(self, before: float, again_after: float, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """:meth:`overdue`, of one conversation alone when ``conversation_id`` is given."""
        one = "" if conversation_id is None else "AND w.conversation_id = ? "
        return [_with_slots(row) for row in self.db.query(
            "SELECT w.*, (SELECT slots FROM conversations WHERE id = w.conversation_id) AS slots "
            f"FROM ({_HANDED_OFF}) w WHERE waiting_since < ? {one}AND NOT EXISTS (SELECT 1 FROM turns b "
            "WHERE b.conversation_id = w.conversation_id AND b.role = 'bot' AND b.notice = 'busy' "
            "AND b.created > w.waiting_since AND NOT EXISTS (SELECT 1 FROM turns WHERE conversation_id = b.conversation_id "
            "AND role = 'user' AND created >= b.created + ?)) "
            "ORDER BY waiting_since", [before, *([] if conversation_id is None else [conversation_id]), again_after])]

    def add_busy_notice(self, conversation_id: str, text: str, channel: str, buttons: list[dict[str, str]],
                        before: float, again_after: float) -> int | None:
        """The busy notice to a customer :meth:`overdue` (with the same ``before`` and ``again_after``) listed,
        stored only if they are still owed it, and its turn id; None, and nothing stored, when they are not.
        Decided in the transaction that stores it: two servers on one store each read the customer as
        overdue, and both told them."""
        with self._writing():
            if not self._overdue(before, again_after, conversation_id):
                return None
            return self.add_message(conversation_id, "bot", text, channel, None, buttons, "busy")

    def transcript(self, conversation_id: str, limit: int = 200, after: int = 0) -> dict[str, Any] | None:
        """A conversation as an agent taking it over reads it: its latest ``limit`` turns with what the
        bot made of each customer message (intent, confidence, how it answered), the buttons each reply
        offered and the custom payloads it passed on, and its handoffs; the messages as typed, as in :meth:`history`. ``earlier``: whether it holds
        turns before those, which the agent would otherwise never know they were not shown. ``notes``: the agents'
        internal notes on it (:meth:`add_note`), every one, oldest first, with when each was last edited (``edited``,
        null for none). ``others``: the customer's other conversations (:meth:`others`). A bot reply's ``feedback``
        comes with the customer's comment on it (``feedback_comment``): what they said the answer missed. Its
        ``slots`` are shown as privacy allows a message to be kept (an email address an action set as ``[EMAIL]``),
        though the store keeps them as set, for the actions that read them in the conversation's next turns. An agent's
        reply is as they wrote it, with what its customer got in ``sent`` where that differs (in their Chinese script,
        :meth:`add_message`), so that the agent sees what the customer read; null for every other turn.
        ``after``: the turns after turn ``after`` alone (``earlier``: whether turns after it were left out), for a
        console that shows those up to it already: read whole at each of its polls, a long conversation's 200 turns
        were read, sent and drawn again every 3 s for the one its customer had just written."""
        conversation = self.conversation(conversation_id)
        if conversation is None:
            return None
        turns = list(self.db.query(
            f"SELECT t.id, t.role, t.text, t.raw_text, t.created, p.intent, p.confidence, p.source, {_AUTHOR}, "
            "t.undelivered IS NOT NULL AS undelivered, t.buttons, t.custom, f.value AS feedback, "
            "f.comment AS feedback_comment FROM turns t LEFT JOIN predictions p ON p.turn_id = t.id "
            "LEFT JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE turn_id = t.id) "
            "WHERE t.conversation_id = ? AND t.id > ? ORDER BY t.id DESC LIMIT ?",
            [conversation_id, after, limit + 1],  # one more, to tell whether there are earlier turns
        ))
        earlier = len(turns) > limit
        handoffs = self.db.query('SELECT event, reason, agent, previous AS "from", NULL AS "by", created FROM handoffs '
                                 "WHERE conversation_id = ? UNION ALL SELECT 'handed_off', 'agent', agent, previous, "
                                 "coalesce(by_agent, agent), created FROM takeovers WHERE conversation_id = ? "
                                 "ORDER BY created",
                                 [conversation_id, conversation_id])
        return {"conversation_id": conversation_id,
                **{k: conversation[k] for k in ("channel", "user", "status", "created", "updated")},
                "slots": self._private_payload(conversation["slots"]),
                "verified_user": conversation["slots"].get(_VERIFIED_SLOT),
                "agent": self.holder(conversation_id),
                "turns": [{**_with_json(self._shown(turn, as_sent=False)), "undelivered": bool(turn["undelivered"]),
                           "sent": turn["raw_text"] if turn["role"] == "agent" else None}
                          for turn in reversed(turns[:limit])],
                "earlier": earlier, "handoffs": list(handoffs),
                "notes": list(self.db.query("SELECT id, agent, text, created, edited FROM notes WHERE conversation_id = ? "
                                            "ORDER BY id", [conversation_id])),
                "others": self.others(conversation)}

    def verified_conversations(self) -> int:
        """How many web conversations a customer the shop's server vouched for wrote last in (the slot
        ``verified_user``): only that customer's proof opens one to the web API (``bot.channels.web``)."""
        return int(self.db.execute(f"SELECT COUNT(*) FROM conversations c WHERE c.channel = 'web' "
                                   f"AND {_VERIFIED_OF_C} IS NOT NULL").fetchone()[0])

    def went_on(self, conversation_id: str, previous: str, message_id: str) -> bool:
        """Keep that the web customer's page in ``conversation_id`` went on there from ``previous`` (closed to it as the
        customer signed in in another tab), proven by a message the page sent there (``message_id``, which the page
        that sent it alone knows): the agents reading either see the other among the customer's conversations
        (:meth:`others`), where what the page showed from the one it left is. Once per conversation, and kept once the
        conversation is; False where it is not proven, or is kept already."""
        with self._writing():
            return self.db.execute(
                "UPDATE conversations SET continues = ? WHERE id = ? AND continues IS NULL AND id != ? AND EXISTS "
                "(SELECT 1 FROM turns WHERE conversation_id = ? AND message_id = ?)",
                [previous, conversation_id, previous, previous, message_id]).rowcount == 1

    def others(self, conversation: dict[str, Any], limit: int = OTHERS_SHOWN) -> list[dict[str, Any]]:
        """The latest ``limit`` other conversations of ``conversation``'s customer (its user id on its channel), latest
        first; none for a customer with no id. An agent taking a customer over saw nothing of what they had asked
        before, in another conversation, unless they thought of searching for their id in each tab. On the web, whose
        page names its customer as it likes, a customer the shop's server vouched for alone (``verified_user``), and
        their conversations where it vouched for them: anyone could name a customer and be shown theirs. First, those
        the customer's page went on in from this one, or from which it went on in this one (:meth:`went_on`)."""
        shown = "SELECT c.id AS conversation_id, c.status, c.created, c.updated FROM conversations c WHERE "
        linked = list(self.db.query(
            f"{shown}(c.id = ? OR c.continues = ?) AND c.id != ? AND {_AGENTS_REACH} ORDER BY c.updated DESC LIMIT ?",
            [conversation.get("continues"), conversation["id"], conversation["id"], limit]))
        web = conversation["channel"] == "web"
        user = conversation["slots"].get(_VERIFIED_SLOT) if web else conversation["user"]
        if user is None:
            return linked
        verified = f"AND {_VERIFIED_OF_C} = c.user " if web else ""
        theirs = self.db.query(
            f"{shown}c.channel = ? AND c.user = ? {verified}AND c.id != ? AND {_AGENTS_REACH} "
            "ORDER BY c.updated DESC LIMIT ?", [conversation["channel"], user, conversation["id"], limit])
        listed = {other["conversation_id"] for other in linked}
        return [*linked, *(other for other in theirs if other["conversation_id"] not in listed)][:limit]

    def add_note(self, conversation_id: str, text: str, agent: str | None = None, key: str | None = None) -> int:
        """An agent's internal note on a conversation the store holds (KeyError for another), for the agents alone
        (:meth:`transcript`'s ``notes``): what a colleague taking the customer over next should know, which a reply
        would have told the customer. ``agent``: who wrote it. Written as agents' replies are, as typed.

        ``key``, the one the agents' console made for the note, as for a reply (:meth:`add_agent_answer`): a note the
        conversation holds under it already is not kept again, and its id is returned (one edited since too); another
        text under it raises :class:`KeyReused`. Looked up in the same transaction, so two tries at once keep one."""
        with self._writing():
            if self.conversation(conversation_id) is None:
                raise KeyError(conversation_id)
            kept = key and self.db.execute("SELECT id, text, edited FROM notes WHERE conversation_id = ? "
                                           "AND request_key = ?", [conversation_id, key]).fetchone()
            if kept:
                if kept[1] != text and kept[2] is None:
                    raise KeyReused("note")
                return int(kept[0])
            return int(self.db["notes"].insert({"conversation_id": conversation_id, "agent": agent, "text": text,
                                                "created": now(), "request_key": key}).last_pk)

    def delete_note(self, conversation_id: str, note_id: int, agent: str | None = None) -> None:
        """Take back note ``note_id`` of the conversation (KeyError for a note it does not hold): a slip, or what no
        longer holds, which every colleague read as current. Its author's alone, by their name in any letter case
        (:class:`NotTheAuthor` for another's); a note written with no name, anyone's."""
        with self._writing():
            self._authors_note(conversation_id, note_id, agent, "delete")
            self.db.execute("DELETE FROM notes WHERE id = ?", [note_id])

    def edit_note(self, conversation_id: str, note_id: int, text: str, agent: str | None = None) -> None:
        """Correct note ``note_id`` of the conversation to ``text``, as :meth:`delete_note` takes it back (its author's
        alone): a deleted and rewritten note lost its place among the turns. Marked ``edited``, with when."""
        with self._writing():
            self._authors_note(conversation_id, note_id, agent, "edit")
            self.db.execute("UPDATE notes SET text = ?, edited = ? WHERE id = ?", [text, now(), note_id])

    def _authors_note(self, conversation_id: str, note_id: int, agent: str | None, what: str) -> None:
        """Check that ``agent`` may ``what`` (delete, edit) note ``note_id`` of the conversation: KeyError for a note
        it does not hold, :class:`NotTheAuthor` for one another agent wrote."""
        row = self.db.execute("SELECT agent FROM notes WHERE id = ? AND conversation_id = ?",
                              [note_id, conversation_id]).fetchone()
        if row is None:
            raise KeyError(note_id)
        if row[0] is not None and agent_key(row[0]) != agent_key(agent):
            raise NotTheAuthor(row[0], what)

    # --- learning -------------------------------------------------------------------------------

    def add_agent_answer(self, conversation_id: str, text: str, channel: str = "web", agent: str | None = None,
                         key: str | None = None, after: int | None = None, force: bool = False,
                         team: Collection[str] = (), by: str | None = None, sent: str | None = None) -> int:
        """An agent's reply, kept also as a candidate historical answer to what the customer asked (``sent``: as the
        customer got it, :meth:`add_message`).
        A later retrain indexes the pair for retrieval (:meth:`_question_for`). A reply that goes on from
        the agent's last (:meth:`_open_answer`) joins its answer: the answer is what the run of replies
        says (:func:`~dialogues.holding.run_answer`), without "please wait" and "anything else?".

        ``key``, the one the agents' console made for the reply: a reply the conversation holds under it
        already raises :class:`SentBefore` and nothing is stored (see ``_v14``); looked up in the same
        transaction, so two tries at once store one.

        ``after``, the latest turn the agent had read: an agent's reply since raises :class:`RepliedMeanwhile`
        and nothing is stored (a try sent again under its key is the same reply, and is answered as above).
        A reply to a customer a colleague has raises :class:`HeldByColleague` (``team`` as for :meth:`set_status`),
        unless ``force``: it is then kept as the sender's takeover from the colleague, as a forced :meth:`set_status`
        is, and the handoffs say who had them, and who took them (``by``, as for :meth:`_claim`)."""
        with self._writing():
            if key is not None and (before := self.sent_before(conversation_id, key)) is not None:
                raise before
            if after is not None and (colleague := self.replied_meanwhile(conversation_id, after, agent)) is not None:
                raise colleague
            holder = self.holder(conversation_id)
            if force:  # a lead's reply to a colleague's customer: their takeover, as a forced one is (_claim)
                self._claim(conversation_id, agent, holder, by)
            else:
                refuse_colleague(holder, agent, team)
            turn_id = self.add_message(conversation_id, "agent", text, channel, agent, sent=sent)
            if key is not None:
                self.db.execute("UPDATE turns SET request_key = ? WHERE id = ?", [key, turn_id])
            if (row := self._open_answer(conversation_id, turn_id)) is not None:
                run = [r["text"] for r in self.db.query(  # a reply the customer did not get, and its agent resent, once
                    "SELECT text FROM turns WHERE conversation_id = ? AND role = 'agent' AND id >= ? "
                    "AND (undelivered IS NULL OR id = ?) ORDER BY id", [conversation_id, row["agent_turn_id"], turn_id])]
                self.db["answer_candidates"].update(row["id"], {"answer": self._private(run_answer(run)), "created": now()})
            elif (question := self._question_for(conversation_id, turn_id)) is not None:
                self.db["answer_candidates"].insert(
                    {"conversation_id": conversation_id, "question_turn_id": question["id"], "agent_turn_id": turn_id,
                     "question": question["text"], "answer": self._private(run_answer([text])), "created": now()}
                )
            return turn_id

    def sent_before(self, conversation_id: str, key: str) -> SentBefore | None:
        """The agent's reply the conversation holds under ``key``, if any (:meth:`add_agent_answer`)."""
        sent = self.db.execute("SELECT id, undelivered, text FROM turns WHERE conversation_id = ? AND request_key = ?",
                               [conversation_id, key]).fetchone()
        return None if sent is None else SentBefore(sent[0], bool(sent[1]), sent[2])

    def replied_meanwhile(self, conversation_id: str, after: int, agent: str | None = None) -> RepliedMeanwhile | None:
        """The latest agent's reply to the conversation after turn ``after``, if any (:meth:`add_agent_answer`),
        said to be ``agent``'s own when they wrote it."""
        colleague = self.db.execute("SELECT id, user FROM turns WHERE conversation_id = ? AND role = 'agent' AND id > ? "
                                    "ORDER BY id DESC LIMIT 1", [conversation_id, after]).fetchone()
        return None if colleague is None else RepliedMeanwhile(*colleague, agent)

    def _open_answer(self, conversation_id: str, agent_turn_id: int) -> dict[str, Any] | None:
        """The conversation's latest answer candidate, when the agent's reply ``agent_turn_id`` goes on from
        it: the customer has typed nothing since the run's first reply, or only "ok", "thanks" or "anyone
        there?", or what one of the run's replies asked them for ("Could you give me your order number?", then
        "12345": :func:`~dialogues.holding.gives_details`, never a new question), while nobody handed the
        conversation off or back (an answer the agent goes on with, or resends, after the customer's "ok", or
        gives once told the order number, is still the answer to what they asked); a new question is answered
        on its own."""
        row = next(self.db.query(
            "SELECT a.id, a.agent_turn_id, t.created FROM answer_candidates a JOIN turns t ON t.id = a.agent_turn_id "
            "WHERE a.conversation_id = ? ORDER BY a.id DESC LIMIT 1", [conversation_id]), None)
        if row is None:
            return None
        since = self.db.query(f"SELECT role, text FROM turns WHERE conversation_id = ? AND (role = 'agent' OR {_TYPED}) "
                              "AND id >= ? AND id < ? ORDER BY id", [conversation_id, row["agent_turn_id"], agent_turn_id])
        asked_for = typed = False  # whether the agent's latest reply asked for details; whether the customer typed since
        passes = True  # whether all the customer typed only acknowledged, nudged or gave what was asked for
        for turn in since:
            if turn["role"] == "agent":
                asked_for = asks_for_details(turn["text"])
            else:
                typed = True
                passes = passes and (asked_for and gives_details(turn["text"]) or asks_nothing(turn["text"]))
        moved = self.db.execute("SELECT count(*) FROM handoffs WHERE conversation_id = ? AND created > ?",
                                [conversation_id, row["created"]]).fetchone()[0]
        return row if not typed or not moved and passes else None

    def _question_for(self, conversation_id: str, agent_turn_id: int) -> dict[str, Any] | None:
        """What an agent's reply answers, among the customer's typed messages since the previous agent reply:
        the first of the messages the bot could not settle right before the handoff (fallbacks, and the
        message whose repeated fallback or action handed it off: what the customer came with, before
        "hello??" and "is anyone there"), else the first one after the handoff (a customer who asked for a
        person says what for next), else the last one before it. Never the request for a person itself, a
        message that says nothing ("ok thanks", "anyone there?"), nor the details the previous agent reply asked
        for ("12345" after "What's your order number?": a question after them is a new one), nor a question the
        bot answered before the one it could not; in a conversation nobody handed off, the first of the messages
        the bot could not settle last, else the first message."""
        asked = list(self.db.query(
            "SELECT id, text, created, (SELECT source FROM predictions WHERE turn_id = turns.id) AS source FROM turns "
            f"WHERE conversation_id = ? AND {_TYPED} AND id < ? AND id > "
            "coalesce((SELECT max(id) FROM turns WHERE conversation_id = ? AND role = 'agent' AND id < ?), 0) ORDER BY id",
            [conversation_id, agent_turn_id, conversation_id, agent_turn_id],
        ))
        handoff = next(self.db.query("SELECT created, reason FROM handoffs WHERE conversation_id = ? AND event = 'handed_off' "
                                     "ORDER BY id DESC LIMIT 1", [conversation_id]), None)
        requested = handoff is None or handoff["reason"] == "requested"
        previous = self.db.execute("SELECT text FROM turns WHERE conversation_id = ? AND role = 'agent' AND id < ? "
                                   "ORDER BY id DESC LIMIT 1", [conversation_id, agent_turn_id]).fetchone()
        asked_for = previous is not None and asks_for_details(previous[0])
        asked = [row for row in asked if not (requested and row["source"] == "handoff") and not asks_nothing(row["text"])
                 and not (asked_for and gives_details(row["text"]))]

        def unsettled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """The first of the messages the bot could not settle at the end of ``rows``, if any."""
            return list(itertools.takewhile(lambda row: row["source"] in ("fallback", "handoff"), reversed(rows)))[-1:]

        if handoff is None:  # an agent writing into a conversation nobody handed off
            return next(iter(unsettled(asked) or asked[:1]), None)
        before = [row for row in asked if row["created"] <= handoff["created"]]
        after = [row for row in asked if row["created"] > handoff["created"]]
        return next(iter(unsettled(before) or after[:1] or before[-1:]), None)

    def add_labels(self, turn_ids: list[int], intent: str, reviewer: str | None = None, first: bool = False,
                   known: Collection[str] | None = None) -> list[int]:
        """A reviewer's intent (or ``oos``) for user turns; returns the turns labelled. A later label for
        the same turn wins, unless ``first`` (a reviewer labelling a queue item as it was shown): then a
        turn labelled already raises :class:`LabelledMeanwhile` and nothing is stored, and turns purged
        since are left out (all of them: :class:`LabelledMeanwhile` too; no later message takes a purged
        turn's id, see ``_v9``). Otherwise a turn that is not a customer's raises KeyError. ``known``: the
        labels the queue counts (see ``review.candidates``); a turn whose label is another (an intent since
        taken out of nlu.yml) is back in the queue, and is not labelled already."""
        if not turn_ids:
            return []
        marks = ",".join("?" * len(turn_ids))
        with self._writing():
            found = {r["id"] for r in self.db.query(f"SELECT id FROM turns WHERE role = 'user' AND id IN ({marks})", turn_ids)}
            missing = sorted(set(turn_ids) - found)
            if missing and not first:
                raise KeyError(f"no user turn {missing[0]}")
            if not found:
                raise LabelledMeanwhile(f"turn {missing[0]} was deleted meanwhile")
            if first and (taken := self.label_of(*turn_ids, known=known)):
                raise LabelledMeanwhile.by(taken, reviewer)
            created = now()
            labelled = [t for t in turn_ids if t in found]
            self.db["review_labels"].insert_all(
                {"turn_id": t, "intent": intent, "reviewer": reviewer, "created": created} for t in labelled)
            return labelled

    def correct_label(self, turn_ids: Sequence[int], intent: str, reviewer: str | None = None) -> list[int]:
        """Change the label of labelled turns (one or more of an item's: `bot purge` may have taken the others
        since), and of the turns labelled with them (one queue item's near duplicates, labelled at once), to
        ``intent``; returns the turns relabelled. A reviewer's slip ("转人工" accepted for "发漂怎么开") would
        otherwise be learned at every retrain. KeyError: no label to correct."""
        with self._writing():
            label = self.label_of(*turn_ids)
            if label is None:
                raise KeyError(f"turn {', '.join(map(str, turn_ids))} has no label to correct")
            answers = self.label_answers(given=(label["created"], label["reviewer"]))
            batch = sorted(turn for turn, answer in answers.items() if answer == answers[label["turn_id"]])
            return self.add_labels(batch, intent, reviewer)

    def label_answers(self, given: tuple[float, str | None] | None = None) -> dict[int, tuple[Any, ...]]:
        """Each labelled turn with the answer that gave its latest label, equal for the turns one answer labelled (a
        queue item's near duplicates): the label's time and reviewer, and for a label :meth:`relabel` moved to an
        intent's new name (:meth:`moved_labels`), those of the label it moved too. One `bot relabel` moves every label
        of the old name at once, and correcting one of them changed them all, hundreds of answers. ``given``: only
        the turns labelled at that time by that reviewer (the answers of a label's own batch begin so), found by
        ``_v42``'s index: a correction read every label the store holds, for each one corrected."""
        among, params = ("WHERE " + _GIVEN, list(given)) if given is not None else ("", [])
        rows = {r["id"]: r for r in self.db.query(
            f"SELECT id, turn_id, created, reviewer FROM review_labels {among} ORDER BY id", params)}
        latest = {row["turn_id"]: row for row in rows.values()}  # in id order: each turn's last
        moved = self.moved_labels(given)

        def answer(row: dict[str, Any]) -> tuple[Any, ...]:
            given = (row["created"], row["reviewer"])
            return given + answer(rows[moved[row["id"]]]) if row["id"] in moved else given

        return {turn: answer(row) for turn, row in latest.items()}

    def relabel(self, old: str, new: str, reviewer: str | None = None, learnt: bool = False) -> list[int]:
        """Label ``new`` every turn whose latest label is ``old``, and keep the rename where the bot labelled or
        predicted ``old``, or a model learnt it (``learnt``: it predicts it until the next retrain, before any
        conversation too); returns the turns relabelled. An intent renamed
        or merged into another in nlu.yml left its labels naming one the bot no longer has, which a retrain cannot
        learn: months of a reviewer's work, otherwise labelled again one item at a time. The old labels stay in the
        store, under the new, as a correction's do; the rename is kept (:data:`RENAMED`), so that an answer the bot
        gave under ``old`` counts as one of ``new``."""
        with self._writing():
            turns = [r["turn_id"] for r in self.db.query(
                "SELECT turn_id FROM review_labels r WHERE intent = ? "
                "AND id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id) ORDER BY turn_id", [old])]
            kept = self.db.execute("SELECT 1 FROM intent_renames WHERE old = ? AND new = ?", [old, new]).fetchone()
            if not kept and (turns or learnt or self.predicted(old)):
                self.db["intent_renames"].insert({"old": old, "new": new, "reviewer": reviewer, "created": now()})
            return self.add_labels(turns, new, reviewer)

    def renames(self) -> dict[str, str]:
        """Each intent name ``bot relabel`` renamed, with the latest name it gave it: a model trained before predicts
        the old one, which the bot answers (``bot.nlu.current_names``) and the review queue offers
        (``dialogues.review.renamed``) under the new."""
        return {row["old"]: row["new"] for row in self.db.query("SELECT old, new FROM intent_renames ORDER BY id")}

    def moved_labels(self, given: tuple[float, str | None] | None = None) -> dict[int, int]:
        """The labels :meth:`relabel` gave, by id, each with the id of the label it moved from the intent's old name:
        the same label under the name the intent has now, which a model that learnt the old one knows. ``given``:
        as :meth:`label_answers`'."""
        among, params = ("WHERE r." + _GIVEN, list(given)) if given is not None else ("", [])
        return {r["id"]: r["moved"] for r in self.db.query(
            "SELECT r.id, p.id AS moved FROM review_labels r "
            "JOIN review_labels p ON p.turn_id = r.turn_id "
            "AND p.id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id AND id < r.id) "
            f"JOIN intent_renames n ON n.old = p.intent AND n.new = r.intent {among}", params)}

    def replaced_labels(self, label_id: int, at: float) -> dict[int, str]:
        """The turns' latest labels given after label ``label_id`` or after time ``at`` (the last retrain's data,
        as :func:`bot.retrain._new_since` counts it) to a turn labelled by then, by id, each with the intent of the
        label it replaced, the one that retrain learnt: a correction, which a warm start teaches over what the
        serving model learnt, where a purged label is gone and a model trained from the base model forgets it."""
        return {r["id"]: r["was"] for r in self.db.query(
            "SELECT r.id, p.intent AS was FROM review_labels r "
            "JOIN review_labels p ON p.id = (SELECT max(id) FROM review_labels "
            "     WHERE turn_id = r.turn_id AND id <= ? AND created <= ?) "
            "WHERE r.id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id) AND r.id != p.id",
            [label_id, at])}

    def labels_then(self, label_id: int, at: float) -> list[dict[str, Any]]:
        """:meth:`labels` as they were when label ``label_id`` was the latest, given by time ``at`` (the last
        retrain's data, as :meth:`replaced_labels` reads it), oldest first: what that retrain learnt, which a label
        given since to another turn of one of its messages replaces (``bot.retrain.label_history``)."""
        return list(self.db.query(
            "SELECT r.id, r.turn_id, t.text, r.intent, r.reviewer, r.created FROM review_labels r "
            "JOIN turns t ON t.id = r.turn_id "
            "WHERE r.id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id AND id <= ? AND created <= ?) "
            "ORDER BY r.id",
            [label_id, at]))

    def predicted(self, intent: str) -> bool:
        """Whether the bot ever gave a message ``intent``: a name renamed before any of its messages was labelled
        is still the one the serving model answers with until the next retrain."""
        return self.db.execute("SELECT 1 FROM predictions WHERE intent = ? LIMIT 1", [intent]).fetchone() is not None

    def label_of(self, *turn_ids: int, known: Collection[str] | None = None) -> dict[str, Any] | None:
        """The latest label (``turn_id``, ``intent``, ``reviewer``, ``created``) of these turns, or None; with
        ``known``, the latest of the turns' own latest labels that is one of those."""
        marks = ",".join("?" * len(turn_ids))
        latest = self.db.query(
            f"SELECT turn_id, intent, reviewer, created FROM review_labels r WHERE turn_id IN ({marks}) "
            "AND id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id) ORDER BY id DESC", turn_ids)
        return next((label for label in latest if known is None or label["intent"] in known), None)

    def labels(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The latest label of every labelled turn, oldest first, with the turn's text."""
        return list(self.db.query(
            "SELECT r.id, r.turn_id, t.text, r.intent, r.reviewer, r.created FROM review_labels r "
            "JOIN turns t ON t.id = r.turn_id "
            "WHERE r.id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id) AND r.created >= ? "
            "ORDER BY r.id",
            [since],
        ))

    def newest_labels(self, intent: str | None = None) -> Iterator[dict[str, Any]]:
        """The latest label of every labelled turn, newest first, ``intent``'s alone if named, with the turn's text as
        the customer typed it (:meth:`typed`): read as they are taken, so that listing the newest labels reads none
        older than those shown."""
        among, params = ("AND r.intent = ? ", [intent]) if intent is not None else ("", [])
        rows = self.db.query(
            "SELECT r.id, r.turn_id, t.text, t.raw_text, r.intent, r.reviewer, r.created FROM review_labels r "
            "JOIN turns t ON t.id = r.turn_id "
            f"WHERE r.id = (SELECT max(id) FROM review_labels WHERE turn_id = r.turn_id) {among}"
            "ORDER BY r.id DESC",
            params,
        )
        return (self._shown(row) for row in rows)

    def recent_messages(self, limit: int) -> list[str]:
        """The latest ``limit`` distinct customer messages, newest first (button payloads left out)."""
        return [r["text"] for r in self.db.query(
            f"SELECT text FROM turns WHERE {_TYPED} "
            "GROUP BY text ORDER BY max(id) DESC LIMIT ?", [limit])]

    def answer_candidates(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Agent answers with their questions, oldest first (not a run of replies that only held the line, nor
        one in ``bot chat``, where the shop tries its bot and no reply reaches a customer: an answer learnt
        from there would be shown to real ones); ``intent`` is the question's review label, if any, and
        ``asked`` all the customer wrote in the conversation before the answer."""
        return list(self.db.query(
            "SELECT a.id, a.conversation_id, a.question_turn_id, a.question, a.answer, a.created, "
            "(SELECT intent FROM review_labels WHERE turn_id = a.question_turn_id ORDER BY id DESC LIMIT 1) AS intent, "
            "(SELECT group_concat(text, ' ') FROM turns WHERE conversation_id = a.conversation_id AND role = 'user' "
            " AND id < a.agent_turn_id) AS asked "
            "FROM answer_candidates a WHERE a.created >= ? AND a.answer != '' "
            f"AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = a.conversation_id AND NOT {_AGENTS_REACH}) "
            "ORDER BY a.id",
            [since],
        ))

    # --- erasure --------------------------------------------------------------------------------

    def conversation_ids(self, *, before: float | None = None, user: str | None = None) -> list[str]:
        """The conversations ``bot purge --before`` and ``--user`` delete, oldest first: those with nothing
        written since ``before`` (no message, reply or handoff: one still going on is not cut in two; nor one a
        customer came back to whose message a server is answering now: deleted with its turn, the turn's reply began
        it anew without what it held, and another server on the store ran the conversation's next turn beside it), and
        those in which ``user`` (the id the channel gives: a Slack or WeCom user, the widget's ``user``)
        wrote or which began with them, and after them those of which a message of theirs alone is kept, unanswered
        (:meth:`received_only`); both given, the conversations that are both."""
        where, args = [], []
        if before is not None:  # nor one whose turn a server runs now, its message not logged yet (``_v41``)
            where.append(f"NOT {_WRITTEN_SINCE}")
            args += _written_since_args(before)
        if user is not None:
            where.append("(c.user = ? OR c.id IN (SELECT conversation_id FROM turns WHERE user = ?))")
            args += [user, user]
        sql = f"SELECT id FROM conversations c WHERE {' AND '.join(where) or '1'} ORDER BY c.created, c.id"
        found = [row[0] for row in self.db.execute(sql, args)]
        if before is not None and before > now() - LEASE_WATCH_WITHIN_S:
            running = self._still_renewed(found)
            found = [cid for cid in found if cid not in running]
        if user is None:
            return found
        # A customer's message kept before their conversation was written (:meth:`received_only`) is theirs too:
        # purged, it is no server's to answer, which would have written the conversation anew after the purge.
        kept = self.db.execute("SELECT conversation_id FROM pending p WHERE user = ? AND answered IS NULL AND received < ? "
                               "AND NOT EXISTS (SELECT 1 FROM conversations WHERE id = p.conversation_id) "
                               "GROUP BY conversation_id ORDER BY min(received)", [user, before or math.inf])
        return found + [row[0] for row in kept]

    def _written_since(self, conversation_ids: Sequence[str], before: float) -> set[str]:
        """Of ``conversation_ids``, those with something written since ``before``, or whose turn a server runs now
        (:data:`_WRITTEN_SINCE`)."""
        found: set[str] = set()
        for at in range(0, len(conversation_ids), IDS_A_QUERY):
            batch = conversation_ids[at:at + IDS_A_QUERY]
            found |= {row[0] for row in self.db.execute(
                f"SELECT c.id FROM conversations c WHERE c.id IN ({','.join('?' * len(batch))}) AND {_WRITTEN_SINCE}",
                [*batch, *_written_since_args(before)])}
        return found

    def high_water(self) -> HighWater:
        """The store's :class:`HighWater` now: read before a purge chooses its conversations, so that one written to
        meanwhile is found as it is deleted (:meth:`_live_since`)."""
        at = now()
        turn, pending = self.db.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM turns), (SELECT coalesce(max(id), 0) FROM pending)").fetchone()
        return HighWater(turn, pending, at)

    def _live_since(self, conversation_ids: Sequence[str], mark: HighWater) -> set[str]:
        """Of ``conversation_ids``, those with a message since ``mark`` (a turn, or a Slack or WeCom message received),
        or whose turn a server holds now (a lease renewed within ``TURN_STALE_S``)."""
        found: set[str] = set()
        for at in range(0, len(conversation_ids), IDS_A_QUERY):
            batch = conversation_ids[at:at + IDS_A_QUERY]
            named = ",".join("?" * len(batch))
            found |= {row[0] for row in self.db.execute(
                f"SELECT conversation_id FROM turns WHERE conversation_id IN ({named}) AND (id > ? OR created >= ?) "
                f"UNION SELECT conversation_id FROM pending WHERE conversation_id IN ({named}) "
                "AND (id > ? OR received >= ?) UNION "
                f"SELECT conversation_id FROM turn_leases WHERE conversation_id IN ({named}) AND taken >= ?",
                [*batch, mark.turn, mark.at, *batch, mark.pending, mark.at, *batch, now() - TURN_STALE_S])}
        return found

    def _still_renewed(self, conversation_ids: list[str]) -> set[str]:
        """Of ``conversation_ids``, those whose turn leases change within ``TURN_STALE_S`` on this process's steady
        clock (renewed, ended or taken: a turn runs), as a server watches another's (:class:`LeaseWatch`); those whose
        leases stay as they were are hung servers'. Watched only where one of them holds a lease: read against a purge's
        clock stepped forward (NTP, a resumed VM), a lease renewed all along looked older than a cutoff near now."""
        def leases() -> dict[str, set[tuple[str, float]]]:
            found: dict[str, set[tuple[str, float]]] = defaultdict(set)
            for at in range(0, len(conversation_ids), IDS_A_QUERY):
                batch = conversation_ids[at:at + IDS_A_QUERY]
                for cid, server, taken in self.db.execute(
                        "SELECT conversation_id, server, taken FROM turn_leases "
                        f"WHERE conversation_id IN ({','.join('?' * len(batch))})", batch):
                    found[cid].add((server, taken))
            return found

        first, changed = leases(), set()
        deadline = time.monotonic() + TURN_STALE_S
        while first.keys() - changed and time.monotonic() < deadline:
            time.sleep(min(TURN_RENEW_S, max(deadline - time.monotonic(), 0.0)))
            latest = leases()
            changed |= {cid for cid in first if latest.get(cid) != first[cid]}
        return changed

    def kept_of(self, conversation_ids: list[str]) -> list[dict[str, Any]]:
        """Everything the store keeps of each of ``conversation_ids``, as stored, for a customer's request to see it
        (``bot access``): the conversation (its ``slots`` as the actions set them), its turns (``raw_text`` too, the
        copy ``privacy.keep_raw`` keeps), the feedback on them, its handoffs, the agents' notes and the platform
        messages kept unanswered; each row whole, so that none of its columns is left out, in an older deskbot's
        store too. A conversation the store does not hold is left out."""
        kept = []
        for cid in conversation_ids:
            conversation = self.conversations([cid])[0]
            rows = {table: list(self.db.query(f"SELECT * FROM {table} WHERE {where} ORDER BY id", [cid]))
                    for table, where in (("turns", "conversation_id = ?"),
                                         ("feedback", "turn_id IN (SELECT id FROM turns WHERE conversation_id = ?)"),
                                         ("handoffs", "conversation_id = ?"), ("notes", "conversation_id = ?"),
                                         ("pending", "conversation_id = ? AND answered IS NULL"))
                    if table in self.db.table_names()}
            if conversation is not None or rows.get("pending"):
                kept.append({"conversation_id": cid, "conversation": conversation, **rows})
        return kept

    def received_only(self, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Of ``conversation_ids``, those of which a Slack or WeCom message alone is kept (:meth:`receive`), not yet
        answered, with no conversation written: each one's ``channel``, ``user`` and when it first ``received`` one."""
        found: dict[str, dict[str, Any]] = {}
        for at in range(0, len(conversation_ids), IDS_A_QUERY):
            batch = conversation_ids[at:at + IDS_A_QUERY]
            marks = ",".join("?" * len(batch))
            found |= {row["conversation_id"]: row for row in self.db.query(
                "SELECT conversation_id, channel, user, min(received) AS received FROM pending p "
                f"WHERE conversation_id IN ({marks}) AND answered IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM conversations WHERE id = p.conversation_id) GROUP BY conversation_id", batch)}
        return found

    def purge_again(self) -> Purged:
        """Purge the conversations the store's ledger (:func:`purged_ledger`) says were purged, as each was then: one
        begun before its purge (a copy put back from before it), not one its customer began anew since with the same
        id (a WeCom employee's). Not recorded again, so that a later copy holding that new conversation keeps it."""
        try:
            lines = purged_ledger(self.path).read_text(encoding="utf-8").splitlines()
            secret = ledger_key(self.path).read_bytes()
        except FileNotFoundError:  # no purge recorded (or the key deleted: its digests then name nobody)
            return Purged({}, wal_cleared=True)
        purged_at: dict[str, float] = {}
        for line in lines:
            digest, _, at = line.partition("\t")
            with contextlib.suppress(ValueError):  # a line a crash cut short
                purged_at[digest] = max(float(at), purged_at.get(digest, 0.0))
        held = self.db.execute(
            "SELECT id, coalesce(created, 0) FROM conversations UNION ALL SELECT conversation_id, min(received) "
            "FROM pending p WHERE conversation_id IS NOT NULL AND answered IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM conversations WHERE id = p.conversation_id) GROUP BY conversation_id").fetchall()
        again = [cid for cid, began in held if began < purged_at.get(_digest(secret, cid), -math.inf)]
        return self.purge(*again, record=False) if again else Purged({}, wal_cleared=True)

    def purge(self, *conversation_ids: str, record: bool = True, before: float | None = None,
              named: Collection[str] = (), chosen_at: HighWater | None = None) -> Purged:
        """Delete conversations and everything recorded about them; of their Slack and WeCom messages the keys
        alone stay, taken as answered, so that a redelivery in the platform's retry window is not answered again.
        A support team member's platform id (:meth:`kept_members`) goes with the last conversation of their channel
        that names them: it is kept only to rename them there, and a retention purge had kept every colleague's id
        for good, long after the conversations they wrote in.

        ``secure_delete`` overwrites the freed pages with zeros, the full-text index of customers' messages is
        merged anew (it kept a deleted message's trigrams until then) and the WAL is checkpointed and
        truncated, so no copy of the text stays in ``dialogues.db`` or ``dialogues.db-wal``; unless
        another process reads the file throughout the busy timeout (a long ``bot export``), which keeps
        the WAL's frames alive: ``Purged.wal_cleared`` says so, and purging again later clears them.
        With ``record``, each conversation found is recorded in the ledger :meth:`purge_again` reads.

        With ``before`` (``bot purge --before``, a retention round), each of them but those ``named`` (by id, whatever
        their age) is looked at again inside the transaction that deletes it, and left (``Purged.skipped``) where
        something was written in it since ``before`` or a server runs its turn now (:meth:`conversation_ids`): its
        customer came back after the purge chose it, and it had been deleted mid-turn. With ``chosen_at`` (the
        store's :meth:`high_water` as the purge chose them: ``bot purge --user`` and ``--conversation``), each is looked
        at again so too, and left where a message came since or a server holds its turn now (:meth:`_live_since`):
        deleted mid-turn, the turn's answer wrote the conversation anew, and a customer's erasure left it kept.
        """
        in_turns = "turn_id IN (SELECT id FROM turns WHERE conversation_id = ?)"
        tables = [("feedback", in_turns), ("review_labels", in_turns), ("predictions", in_turns),
                  ("answer_candidates", "conversation_id = ?"), ("takeovers", "conversation_id = ?"),
                  ("handoff_claims", "conversation_id = ?"), ("notes", "conversation_id = ?"),
                  ("handoffs", "conversation_id = ?"),
                  ("seen", "conversation_id = ?"), ("answering", "conversation_id = ?"),
                  ("turn_leases", "conversation_id = ?"), ("refs", "conversation_id = ?"),
                  ("paced_sends", "conversation_id = ?"), ("send_turns", "conversation_id = ?"),
                  ("hints", "conversation_id = ?"), ("reply_threads", "conversation_id = ?"),
                  ("turns", "conversation_id = ?"), ("conversations", "id = ?")]
        deleted: dict[str, dict[str, int]] = {}
        skipped: list[str] = []
        with self._scrubbing():
            # A few conversations a transaction: a serving bot's writes wait for one of them, not for the
            # whole of a year's purge (bot purge --before), which held its every reply up past its timeout.
            for at in range(0, len(conversation_ids), PURGE_BATCH):
                with self._writing():
                    for table in _FLOORED:
                        if high := self.db.execute(f"SELECT max(id) FROM {table}").fetchone()[0]:
                            self.db.execute("INSERT INTO id_floor (name, high) VALUES (?, ?) ON CONFLICT(name) "
                                            "DO UPDATE SET high = max(high, excluded.high)", [table, high])
                    batch = conversation_ids[at:at + PURGE_BATCH]
                    back: set[str] = set()
                    if before is not None:
                        back |= self._written_since([cid for cid in batch if cid not in named], before)
                    if chosen_at is not None:
                        back |= self._live_since(batch, chosen_at)
                    skipped += [cid for cid in batch if cid in back]
                    batch = [cid for cid in batch if cid not in back]
                    members = {row for cid in batch for row in self.db.execute(_MEMBERS_NAMED, {"id": cid})}
                    # the id, a web visitor's key, kept in the conversation their page went on in (went_on): it showed
                    # a conversation begun anew with that id among the customer's others, to their agents
                    self.db.conn.executemany("UPDATE conversations SET continues = NULL WHERE continues = ?",
                                             [[cid] for cid in batch])
                    deleted |= {cid: {"pending": self.db.execute(_FORGET_SENDER, [now(), cid]).rowcount} |
                                {table: self.db.execute(f"DELETE FROM {table} WHERE {where}", [cid]).rowcount
                                 for table, where in tables}
                                for cid in batch}
                    for channel, name in members:  # a colleague whose every conversation went: their platform id too
                        self.db.execute(_FORGET_MEMBER, {"channel": channel, "name": name})
                if record:  # once deleted: a ledger line too many would purge a copy's conversation for nothing
                    self._record_purged([cid for cid in batch if deleted[cid]["conversations"] or deleted[cid]["pending"]])
            if any(rows["turns"] for rows in deleted.values()):
                self._merge_search_index()
            cleared = self._wal_emptied()
        return Purged(deleted, wal_cleared=cleared, skipped=skipped)

    @contextlib.contextmanager
    def _scrubbing(self) -> Iterator[None]:
        """Deleted and overwritten rows zeroed on the disk (``secure_delete``) meanwhile: a purge's, or a redaction's,
        old text left in the file's free pages until SQLite reused them, for anyone reading the file to find. Within
        another's, as that one's."""
        with self._lock:
            if self.db.execute("PRAGMA secure_delete").fetchone()[0]:
                yield
                return
            self.db.execute("PRAGMA secure_delete=ON")
            try:
                yield
            finally:
                self.db.execute("PRAGMA secure_delete=OFF")

    def _merge_search_index(self) -> None:
        """Merge the customers' full-text index (``turns_fts``) into one segment: a deleted or rewritten message's
        trigrams stay in its older segments, beside the delete marker that hides them, until then. Seconds on a
        large store, so once a purge or redaction, not once a message."""
        with self._writing():
            self.db.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")

    def merge_search_index_if_rewritten(self) -> bool:
        """Merge the full-text index (:meth:`_merge_search_index`), its freed pages zeroed, where a customer's message
        was edited or deleted (:meth:`replace_message`) over this connection since the last merge: its old text's
        trigrams stayed in the index's older segments, for anyone reading the file to find. Once a round
        (``bot serve``'s hourly one), not once an edit, as the merge takes seconds on a large store. Whether it
        merged."""
        if not self._index_rewritten:
            return False
        with self._scrubbing():
            self._merge_search_index()
        self._index_rewritten = False
        return True

    def _rewrite_in_batches(self, select: str, rewrite: Callable[[tuple[Any, ...]], dict[str, Any] | None],
                            updates: Sequence[str], dry_run: bool, params: dict[str, Any] | None = None) -> int:
        """Rewrite the rows ``select`` reads (their id first, from ``:after`` on, ``:limit`` a batch, with ``params``)
        that ``rewrite`` changes (its named values, ``id`` among them; None: unchanged) with each of ``updates``, a
        transaction a batch (none, ``dry_run``); how many it changed (would change)."""
        changed, after = 0, 0
        while True:
            with contextlib.nullcontext() if dry_run else self._writing():
                rows = self.db.execute(select, {**(params or {}), "after": after, "limit": REWRITE_BATCH}).fetchall()
                rewritten = [values for row in rows if (values := rewrite(row)) is not None]
                changed += len(rewritten)
                for update in () if dry_run else updates:
                    self.db.conn.executemany(update, rewritten)
            if len(rows) < REWRITE_BATCH:
                return changed
            after = rows[-1][0]

    def redact_stored(self, keep_raw: bool, idle_before: float, dry_run: bool = False) -> Redacted:
        """Redact anew what customers wrote that the store keeps (``bot redact``): their messages (``text``, and
        ``raw_text`` unless ``keep_raw`` keeps it unredacted, the full-text index with them), their feedback comments,
        and the slots of the conversations with nothing written since ``idle_before`` (:meth:`forget_idle_slots`).
        Redaction applies to a message as it is written, so one stored before redaction was on, or before it found
        what it finds now (a kind of number it came to know), was kept as it came; a Slack or WeCom message still
        waiting for its answer too (``pending``: its text and ``shown``, as a turn's). The agents' words, their replies
        and notes, are kept as written, as they are stored. A dry run counts them alone."""

        def message(row: tuple[Any, ...]) -> dict[str, Any] | None:
            turn_id, text, raw_text = row
            redacted, raw = _texts_kept(text, raw_text, redact, keep_raw)
            return None if (redacted, raw) == (text, raw_text) else {"id": turn_id, "text": redacted, "raw_text": raw}

        def comment(row: tuple[Any, ...]) -> dict[str, Any] | None:
            redacted = redact(row[1])
            return None if redacted == row[1] else {"id": row[0], "comment": redacted}

        with self._scrubbing():
            turns = self._rewrite_in_batches(
                "SELECT id, text, raw_text FROM turns WHERE role = 'user' AND id > :after ORDER BY id LIMIT :limit",
                message, ["UPDATE turns SET text = :text, raw_text = :raw_text WHERE id = :id",
                          "UPDATE answer_candidates SET question = :text WHERE question_turn_id = :id"], dry_run)
            comments = self._rewrite_in_batches(
                "SELECT id, comment FROM feedback WHERE comment IS NOT NULL AND id > :after ORDER BY id LIMIT :limit",
                comment, ["UPDATE feedback SET comment = :comment WHERE id = :id"], dry_run)
            waiting = self._rewrite_in_batches(
                "SELECT id, text, shown FROM pending WHERE answered IS NULL AND key NOT LIKE :change AND id > :after "
                "ORDER BY id LIMIT :limit", message,
                ["UPDATE pending SET text = :text, shown = :raw_text WHERE id = :id AND answered IS NULL"], dry_run,
                {"change": _CHANGE + "%"})
            slots = self.forget_idle_slots(idle_before, dry_run)
            if dry_run:
                return Redacted(turns, comments, slots, waiting)
            if turns:
                self._merge_search_index()
            return Redacted(turns, comments, slots, waiting, wal_cleared=self._wal_emptied())

    def forget_idle_slots(self, before: float, dry_run: bool = False) -> int:
        """Drop the slots holding personal data (those redaction would change: an e-mail address or phone number a
        form collected) of the conversations with nothing written since ``before``; how many conversations lost one
        (would lose, ``dry_run``). An action needs them while its conversation goes on, so they are kept as set until
        then (``privacy.slot_hours``), and not past it: the transcript showed them redacted, and the store kept them
        as set for as long as the conversation. ``verified_user`` stays, the customer's id as their channel's ``user``
        does. A conversation looked at is marked with its ``updated`` (``_v48``), so that the next round reads only
        those written since."""

        def kept(row: tuple[Any, ...]) -> dict[str, Any] | None:
            conversation_id, slots_json, updated = row
            slots = json.loads(slots_json or "{}")
            left = {name: value for name, value in slots.items()
                    if name == _VERIFIED_SLOT or redacted_payload(value) == value}
            return {"id": conversation_id, "updated": updated,
                    "slots": None if left == slots else json.dumps(left, ensure_ascii=False)}

        dropped, after = 0, (-math.inf, "")
        # An older deskbot's store read as it is (a dry run, ``read_as_it_is``) lacks ``slots_checked``: none of its
        # conversations was looked at, as after the migration that adds it.
        unchecked = "slots_checked IS NOT updated" if "slots_checked" in self.db["conversations"].columns_dict else "1"
        with self._scrubbing():
            while True:
                with contextlib.nullcontext() if dry_run else self._writing():
                    rows = self.db.execute(
                        f"SELECT id, slots, updated FROM conversations WHERE updated < ? AND {unchecked} "
                        "AND (updated, id) > (?, ?) ORDER BY updated, id LIMIT ?", [before, *after, REWRITE_BATCH]
                    ).fetchall()
                    looked = [kept(row) for row in rows]
                    dropped += sum(row["slots"] is not None for row in looked)
                    if not dry_run:  # a conversation written meanwhile (updated since) is left to the next round
                        self.db.conn.executemany("UPDATE conversations SET slots = coalesce(:slots, slots), "
                                            "slots_checked = updated WHERE id = :id AND updated = :updated", looked)
                if len(rows) < REWRITE_BATCH:
                    return dropped
                after = (rows[-1][2], rows[-1][0])

    def _record_purged(self, conversation_ids: list[str]) -> None:
        """Add ``conversation_ids`` to the ledger of purged conversations (:func:`purged_ledger`), made for the store's
        owner alone as the store is, and to each ledger `bot backup` put beside a copy that is still where it wrote it
        (:func:`listed_ledger_copies`) under this ledger's key: the store's host lost, the latest copy put back on
        another host takes the ledger beside it, which lacked the purges made since the copy, and brought back every
        customer erased since. A copy's ledger that cannot be written (its disk gone) is said in the log."""
        if not conversation_ids:
            return
        stamp = now()
        with _ledger_held(self.path) as secret:
            lines = [f"{_digest(secret, cid)}\t{stamp}\n" for cid in conversation_ids]
            _append_to_ledger(purged_ledger(self.path), lines)
            for copy in listed_ledger_copies(self.path):
                try:
                    if ledger_key(copy).read_bytes() != secret:  # its key left out, or another store's
                        continue
                    with _ledger_held(copy):
                        _append_to_ledger(purged_ledger(copy), lines)
                except OSError as exc:
                    log.warning("cannot add %d purged conversations to %s, beside a backup: %s; that copy, put back "
                                "on another host, would keep them", len(lines), purged_ledger(copy), exc.strerror or exc)

    def _wal_emptied(self) -> bool:
        """Checkpoint the WAL and empty it, waiting up to the busy timeout for readers still on its frames; whether
        it is empty. Tried a moment at a time: a checkpoint waiting for readers holds the write lock, and a serving
        bot's every reply waited with it, for as long as a `bot backup` or the agents' figures read."""
        wait_ms = self.db.execute("PRAGMA busy_timeout").fetchone()[0]
        deadline = time.monotonic() + wait_ms / 1000
        self.db.execute(f"PRAGMA busy_timeout={min(wait_ms, CHECKPOINT_TRY_MS)}")
        try:
            while (busy := self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]) and time.monotonic() < deadline:
                time.sleep(CHECKPOINT_PAUSE_S)
        finally:
            self.db.execute(f"PRAGMA busy_timeout={wait_ms}")
        return not busy
