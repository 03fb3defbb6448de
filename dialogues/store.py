"""The conversation store: every turn, prediction, feedback and handoff, in one SQLite file.

SQLite in WAL mode survives a killed process: a transaction that returned is on disk, and readers
never block the writer. The schema moves forward through numbered migrations recorded in
``PRAGMA user_version``, so an old ``dialogues.db`` opens with a newer deskbot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils


def now() -> float:
    return time.time()


def _v1(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {"id": str, "channel": str, "user": str, "status": str, "slots": str, "fallbacks": int, "created": float, "updated": float},
        pk="id",
    )
    db["turns"].create(
        {"id": int, "conversation_id": str, "role": str, "text": str, "raw_text": str, "channel": str, "user": str, "created": float},
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["turns"].create_index(["conversation_id", "id"])
    db["turns"].create_index(["created"])
    db["predictions"].create(
        {"turn_id": int, "reply_turn_id": int, "intent": str, "confidence": float, "ranking": str, "source": str, "model_version": str, "retrieval_score": float},
        pk="turn_id",
        foreign_keys=[("turn_id", "turns", "id")],
    )
    db["feedback"].create({"id": int, "turn_id": int, "value": int, "comment": str, "created": float}, pk="id", foreign_keys=[("turn_id", "turns", "id")])
    db["handoffs"].create({"id": int, "conversation_id": str, "event": str, "reason": str, "created": float}, pk="id", foreign_keys=[("conversation_id", "conversations", "id")])
    db["review_labels"].create({"id": int, "turn_id": int, "intent": str, "reviewer": str, "created": float}, pk="id", foreign_keys=[("turn_id", "turns", "id")])
    db["review_labels"].create_index(["turn_id"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1]


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


class Store:
    """Thread-safe access to ``dialogues.db``; all writes are serialised through one lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process death in WAL mode
        self.db.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                with self.db.atomic():
                    migration(self.db)
                    self.db.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    # --- conversations ------------------------------------------------------------------------

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        rows = list(self.db["conversations"].rows_where("id = ?", [conversation_id]))
        if not rows:
            return None
        row = rows[0]
        row["slots"] = json.loads(row["slots"] or "{}")
        return row

    def _ensure_conversation(self, conversation_id: str, channel: str, user: str | None) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO conversations (id, channel, user, status, slots, fallbacks, created, updated) "
            "VALUES (?, ?, ?, 'open', '{}', 0, ?, ?)",
            [conversation_id, channel, user, now(), now()],
        )

    def set_status(self, conversation_id: str, status: str, reason: str, channel: str = "web") -> None:
        """Hand a conversation off to a human (``handed_off``) or back to the bot (``open``)."""
        with self._lock, self.db.atomic():
            self._ensure_conversation(conversation_id, channel, None)
            self.db["conversations"].update(conversation_id, {"status": status, "fallbacks": 0, "updated": now()})
            self.db["handoffs"].insert({"conversation_id": conversation_id, "event": status, "reason": reason, "created": now()})

    # --- turns ----------------------------------------------------------------------------------

    def log_exchange(self, ex: Exchange) -> tuple[int, int | None]:
        """Write the user's turn, its prediction and the bot's reply atomically. Returns both turn ids."""
        with self._lock, self.db.atomic():
            self._ensure_conversation(ex.conversation_id, ex.channel, ex.user)
            turns = self.db["turns"]
            user_turn = turns.insert(
                {"conversation_id": ex.conversation_id, "role": "user", "text": ex.text, "raw_text": ex.raw_text,
                 "channel": ex.channel, "user": ex.user, "created": now()}
            ).last_pk
            bot_turn = None
            if ex.reply:
                bot_turn = turns.insert(
                    {"conversation_id": ex.conversation_id, "role": "bot", "text": ex.reply, "raw_text": None,
                     "channel": ex.channel, "user": None, "created": now()}
                ).last_pk
            self.db["predictions"].insert(
                {"turn_id": user_turn, "reply_turn_id": bot_turn, "intent": ex.intent, "confidence": ex.confidence,
                 "ranking": json.dumps(ex.ranking), "source": ex.source, "model_version": ex.model_version,
                 "retrieval_score": ex.retrieval_score}
            )
            self.db.execute(
                "UPDATE conversations SET updated = ?, fallbacks = ?, slots = coalesce(?, slots) WHERE id = ?",
                [now(), ex.fallbacks, json.dumps(ex.slots, ensure_ascii=False) if ex.slots is not None else None, ex.conversation_id],
            )
        return int(user_turn), (int(bot_turn) if bot_turn is not None else None)

    def add_message(self, conversation_id: str, role: str, text: str, channel: str = "web") -> int:
        """An agent's (or a system) message that is not an answer to a user turn."""
        with self._lock, self.db.atomic():
            self._ensure_conversation(conversation_id, channel, None)
            return int(self.db["turns"].insert(
                {"conversation_id": conversation_id, "role": role, "text": text, "raw_text": None,
                 "channel": channel, "user": None, "created": now()}
            ).last_pk)

    def history(self, conversation_id: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT t.id, t.role, t.text, t.created, f.value AS feedback FROM turns t "
            "LEFT JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE turn_id = t.id) "
            "WHERE t.conversation_id = ? ORDER BY t.id DESC LIMIT ?",
            [conversation_id, limit],
        )
        return list(reversed(list(rows)))

    def add_feedback(self, turn_id: int, value: int, comment: str | None = None) -> int:
        with self._lock, self.db.atomic():
            if not self.db.execute("SELECT 1 FROM turns WHERE id = ? AND role = 'bot'", [turn_id]).fetchone():
                raise KeyError(turn_id)
            return int(self.db["feedback"].insert({"turn_id": turn_id, "value": value, "comment": comment, "created": now()}).last_pk)

    def count(self, table: str) -> int:
        return self.db[table].count
