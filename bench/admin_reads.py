"""The admin API's hot reads on a large store: each one's time, and the query plan of every statement it runs.

    python bench/admin_reads.py STORE.db [--build 100000]

``--build N`` first fills a new store at STORE.db with N web conversations of two exchanges each (a confidence drawn
at random, a fallback below 0.3), one in 50 handed to a person and one in 200 of those answered by an agent, through
the store's own writes, as `bot serve` logs them. Then it times, on a read-only connection as the server reads, the
agents' inbox (handed off, for an agent and for everyone; open; a search), the counts and lists the console asks for
beside it, a transcript, a customer's history, the review queue and all-time figures, and prints each with the plan
SQLite chose for each statement (``EXPLAIN QUERY PLAN``): a ``SCAN`` of a large table there is a missing index.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialogues.review import review_queue
from dialogues.stats import conversation_stats
from dialogues.store import Exchange, Store

INTENTS = ["card_arrival", "card_linking", "refund", "track_order", "greet"]


def build(path: Path, conversations: int) -> None:
    """A store of ``conversations`` web conversations, as described in the module's docstring."""
    rng, store, batch = random.Random(0), Store(path), []
    for i in range(conversations):
        for j in range(2):
            confidence, intent = rng.random(), rng.choice(INTENTS)
            batch.append(Exchange(f"conv-{i:08d}", "web", f"user{i % 5000}", f"message {i} {j} about my {intent}",
                                  None, f"reply {i}", intent, confidence, [(intent, confidence), ("greet", 0.1)],
                                  "template" if confidence > 0.3 else "fallback", "v0001", 0.7, {}, 0))
        if len(batch) >= 512:
            store.log_exchanges(batch)
            batch = []
    store.log_exchanges(batch)
    for i in range(0, conversations, 50):
        store.set_status(f"conv-{i:08d}", "handed_off", "requested")
    for i in range(0, conversations, 200 * 50):
        store.add_agent_answer(f"conv-{i:08d}", "an agent here", agent="Ana")
    store.close()


def reads(store: Store, middle: str) -> dict[str, Callable[[], Any]]:
    return {
        "inbox, handed off, for an agent": lambda: store.inbox("handed_off", 50, "Ana"),
        "inbox, handed off, the console's page of 200": lambda: store.inbox("handed_off", 200, "Ana"),
        "inbox, handed off": lambda: store.inbox("handed_off", 50),
        "inbox, open": lambda: store.inbox("open", 50),
        "inbox, search": lambda: store.inbox("handed_off", 50, search="user42"),
        "waiting, for an agent": lambda: store.waiting("Ana"),
        "passed_to": lambda: store.passed_to("Ana"),
        "taken_from": lambda: store.taken_from("Ana"),
        "holders": store.holders,
        "transcript": lambda: store.transcript(middle),
        "history": lambda: store.history(middle),
        "review queue": lambda: review_queue(store, 0.5),
        "figures, all time": lambda: conversation_stats(store, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--build", type=int, default=None, metavar="N", help="fill a new store with N conversations")
    args = parser.parse_args()
    if args.build:
        started = time.perf_counter()
        build(args.store, args.build)
        print(f"built {args.build} conversations in {time.perf_counter() - started:.1f} s")
    store = Store(args.store, read_only=True)
    middle = store.db.execute("SELECT id FROM conversations ORDER BY id LIMIT 1 OFFSET "
                              "(SELECT count(*) / 2 FROM conversations)").fetchone()[0]
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    for name, read in reads(store, middle).items():
        statements.clear()
        started = time.perf_counter()
        read()
        print(f"{name}: {(time.perf_counter() - started) * 1000:.1f} ms, {len(statements)} statements")
        for sql in dict.fromkeys(s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))):
            plan = store.db.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            print(f"    {' '.join(sql.split())[:120]}")
            for step in dict.fromkeys(row[3] for row in plan):
                print(f"        {step}")
    store.db.conn.set_trace_callback(None)
    store.close()


if __name__ == "__main__":
    main()
