"""The agents' console's poll on a store in a sale: what each of its reads costs, beside a baseline read in the same run.

    python bench/console_poll.py STORE.db [--conversations 10000] [--handed-off 5000] [--agents 30] [--turns 400]
                                          [--runs 20]

Fills a new store at STORE.db (if there is none) with ``--conversations`` web conversations of one exchange each, of
which ``--handed-off`` are handed to a person, each taken over by one of ``--agents`` agents, one in three passed on
to a colleague and one in five of the rest taken over by a lead for another, and one conversation of ``--turns``
turns, ``long``, and ``--kept-takeovers`` takeovers of the conversations not handed off (handed back since, kept
until retention purges them). Then times, on a read-only connection as the server reads, the best and the median of ``--runs`` runs
of:

- the customers passed to an agent and taken from them (``Store.passed_to``, ``Store.taken_from``), which each console
  asks for at each poll, beside a pass over every handed-off conversation's latest handoff and takeover, which each of
  the two made before it read the agent's takeovers first, and beside a look at every takeover kept, the agent's
  name compared, which each made before the takeovers kept the names folded by index (``_v50``);
- what each of the agent's customers wrote that they have not read (``Store.unread_of``), beside the inbox of their
  customers (``Store.inbox`` with ``holder``), counts included, as it was read before;
- the inbox's part of the poll (``Store.poll``: the page of 200, its counts, the agent's customers with what they
  wrote unread and the agents who have customers, from one pass over the handed-off conversations), beside the same
  read each on its own (``Store.inbox_and_yours``, ``Store.unread_of``, ``Store.holders``), each a pass over them all,
  as the server read them before; with the ratio of the medians;
- an agent's whole inbox poll as the server reads and encodes it (``Store.poll``, ``Store.passed_to`` and
  ``Store.taken_from`` in one snapshot, as JSON; the baseline, each poll's read before the ETag), beside the poll
  with nothing committed since, which sends back the ETag of the answer it holds: the inbox's version in a snapshot
  and the tag hashed (``Store.inbox_version``, ``bot.server.inbox_tag``), answered 304; with the ratio of the medians;
  and the same poll on another server's connection, sent back the first's ETag: the version begun with the
  connection's name (the baseline, answered whole) beside the store's (``_v54``, 304);
- the day's figures as the console asks for them every 30 s (``conversation_stats`` since the store's latest turn: a
  day just begun), whose web chat's conversations and handoffs beside the other channels' are counted from the turns
  of the window, each looked up in its conversation, beside the same counted as they were before, by a list of every
  web conversation of the store, each looked up in the turns; with the ratio of the medians;
- the count of the conversations with the bot that the console's tab of them shows at each refresh, beside the same
  counted with the agents' reach compared on each conversation's row, as it was: counted from the indexes alone
  (the baseline, as before ``_v54``) beside the count the triggers keep (``Store._listed``); with the ratio of the
  medians;
- the review queue as a console on the review tab looks at it every 3 s (``review_queue``, every message unsure at
  0.9, without the model's rescoring and grouping), a look after another, whose waiting messages' readings were kept
  (``read_for_review``), beside a look that reads each anew, as each look did before; with the ratio of the medians;
- the transcript of the conversation shown (``long``), read and encoded as the console asks for it every 3 s: its
  latest 200 turns (the baseline, each poll's read before ``?after=``), then the turns after the latest one shown
  alone, none new; with the size of each one's JSON;
- the day's figures as each console asks for them, nothing committed between two asks: read anew (the baseline, as
  each ask read them before), and kept from the ask before (``KeptFigures``); with the ratio of the medians. A commit
  between two asks has them read anew: a customer's message to the bot, on a busy store, is as the baseline;
- in a busy store, a customer's turn to the bot committed (on a writing connection) before each poll: an agent's
  inbox poll with the ETag of the answer it holds, the tag of the store's version (``Store.version``, the baseline: each
  answered whole) beside that of the inbox's (``Store.inbox_version``: 304); and the tab of the conversations with the
  bot (``Store.poll`` of ``open``, a page of 200, each answered whole), its pass over the handed-off conversations read
  anew (the baseline) beside kept from the poll before; each with the ratio of the medians;
- after a change of the inbox (an agent reading a customer), five agents' inbox polls (:func:`whole_poll`) on one
  reads' connection: each page of 200 read anew (the baseline, as each poll read it before) beside its rows shared
  at the inbox's version (``Store._handed_off_rows``); with the ratio of the medians;
- an agent's inbox poll (``Store.inbox_and_yours``) asked for while all-time figures are being read
  (``conversation_stats``): how long it waits for its answer behind them on one thread (the baseline, as the server
  read both), and beside them on a thread and connection of their own (as it reads the figures now).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.channels.base import dumps
from bot.server import inbox_tag
from dialogues.review import _read_for_review, review_queue
from dialogues.stats import KeptFigures, _customers, _talked, conversation_stats
from dialogues.store import (_AGENTS_REACH, _HANDED_OFF_FROM, PASSED_LISTED, TRYOUT_CHANNEL, Exchange, Store,
                             agent_key)


def build(path: Path, conversations: int, handed_off: int, agents: list[str], turns: int, kept: int) -> None:
    """The store described in the module's docstring."""
    store = Store(path)
    exchanges = [Exchange(f"conv-{i:08d}", "web", f"user{i}", f"where is my order {i}?", None, "It ships soon.",
                          "track_order", 0.8, [("track_order", 0.8)], "template", "v0001", 0.7, {}, 0)
                 for i in range(conversations)]
    exchanges += [Exchange("long", "web", "user-long", f"message {i}: where is my order {i * 7}?", None,
                           f"reply {i}: your order ships soon, track it from your account page", "track_order", 0.8,
                           [("track_order", 0.8)], "template", "v0001", 0.7, {}, 0) for i in range(turns // 2)]
    for start in range(0, len(exchanges), 1000):
        store.log_exchanges(exchanges[start:start + 1000])
    for n, i in enumerate(range(0, conversations, max(1, conversations // handed_off))):
        conversation_id, agent = f"conv-{i:08d}", agents[n % len(agents)]
        store.set_status(conversation_id, "handed_off", "requested")
        store.set_status(conversation_id, "handed_off", "agent", agent=agent)
        if n % 3 == 0:
            store.pass_on(conversation_id, agent, agents[(n + 1) % len(agents)])
        elif n % 5 == 1:
            store.pass_on(conversation_id, "Lead", agents[(n + 2) % len(agents)], force=True)
    with store.db.conn:  # the takeovers of conversations handed back since, as SQL: thousands of handoffs take minutes
        first = store.db.execute("SELECT coalesce(max(id), 0) + 1 FROM takeovers").fetchone()[0]
        store.db.execute(
            "WITH RECURSIVE n(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM n WHERE v + 1 < ?), "
            "back(place, id) AS (SELECT row_number() OVER (ORDER BY id) - 1, id FROM conversations "
            "WHERE status = 'open' LIMIT 1000) "
            "INSERT INTO takeovers (id, handoff_id, conversation_id, agent, previous, by_agent, created, agent_folded, "
            "previous_folded) SELECT ? + v, (SELECT min(id) FROM handoffs), (SELECT id FROM back WHERE place = v % (SELECT count(*) FROM back)), "
            "?, ?, NULL, 0, agent_key(?), agent_key(?) FROM n",
            [kept, first, agents[0], agents[-1], agents[0], agents[-1]])
    store.close()


def times_of(read: Callable[[], Any], runs: int) -> list[float]:
    """The times of ``runs`` calls of ``read``, in ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def timed(read: Callable[[], Any], runs: int) -> str:
    """The best and the median time of ``runs`` calls of ``read``, in ms."""
    times = times_of(read, runs)
    return f"best {min(times):.2f} ms, median {statistics.median(times):.2f} ms"


def poll_beside_figures(path: Path, agent: str, apart: bool) -> tuple[float, float]:
    """How long an inbox poll asked for just after all-time figures began waits for its answer, and how long the
    figures took, in ms: on one reads' thread, or each on a thread and read-only connection of its own (``apart``)."""
    reads = ThreadPoolExecutor(max_workers=1)
    figures = ThreadPoolExecutor(max_workers=1) if apart else reads
    stores = {pool: pool.submit(Store, path, read_only=True).result() for pool in {reads, figures}}
    started = time.perf_counter()
    read = figures.submit(lambda: conversation_stats(stores[figures], 0.0))
    time.sleep(0.01)  # the figures under way
    asked = time.perf_counter()
    reads.submit(lambda: stores[reads].inbox_and_yours("handed_off", 200, agent)).result()
    waited = time.perf_counter() - asked
    read.result()
    took = time.perf_counter() - started
    for pool, store in stores.items():
        pool.submit(store.close).result()
        pool.shutdown()
    return waited * 1000, took * 1000


def whole_poll(store: Store, agent: str, shared: bool = False) -> bytes:
    """An agent's inbox poll as the server reads and encodes it with no ETag, or another's: the page of 200 of the
    waiting tab, its counts and the customers passed to the agent and taken from them, in one snapshot. The page's
    rows read anew, as each poll read them before they were shared, unless ``shared`` (``Store._handed_off_rows``)."""
    if not shared:
        store._kept_rows = None
    with store.snapshot():
        polled = store.poll("handed_off", 200, agent)
        return dumps({**polled, "passed": store.passed_to(agent), "taken": store.taken_from(agent)}).encode()


def tagged_poll(store: Store, agent: str, version: Callable[[Store], str], held: str | None = None) -> str:
    """The same poll sent back the ETag ``held`` of the answer it holds, and the ETag of its answer: the tag of the
    store's ``version`` (``Store.version`` or ``Store.inbox_version``) as the server hashes it, and, where it names
    another answer than ``held``, the poll read and encoded whole (:func:`whole_poll`); where it names the same, what
    the server reads before its 304."""
    with store.snapshot():
        tag = inbox_tag(version(store), "handed_off", 200, 0, "", agent, None, [], "", [])
        if tag != held:
            whole_poll(store, agent)
        return tag


def connections_version(store: Store) -> str:
    """The inbox's version as :meth:`Store.inbox_version` told it before ``_v54``: begun with a name each connection drew
    as it opened, which no other server's matched."""
    return f"{store._opened}.{store._inbox_changes()}"


def medians(name: str, baseline: str, times: list[float], new: str, new_times: list[float]) -> None:
    """Print the best and the median of the baseline's ``times`` and of ``new_times``, and the ratio of the medians."""
    for label, taken in ((f"baseline: {baseline}", times), (new, new_times)):
        print(f"{label}: best {min(taken):.2f} ms, median {statistics.median(taken):.2f} ms")
    print(f"{name}: {statistics.median(new_times) / statistics.median(times):.4f} times as long (medians)")


def web_counts(store: Store, since: float, customers: str) -> tuple[int, int]:
    """The web chat's conversations and handoffs since ``since`` as the figures count them, the web chat's
    conversations told apart by the SQL ``customers`` (of ``t.conversation_id``)."""
    window = {"since": since, "until": 9e99, "channel": "web", "language": None}
    talked = _talked(customers)
    return (store.db.execute(f"SELECT count(DISTINCT conversation_id) FROM ({talked})", window).fetchone()[0],
            store.db.execute("SELECT count(DISTINCT conversation_id) FROM handoffs WHERE event = 'handed_off' "
                             f"AND created >= :since AND created < :until AND conversation_id IN ({talked})",
                             window).fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--handed-off", type=int, default=5_000)
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kept-takeovers", type=int, default=100_000)
    args = parser.parse_args()
    agents = [f"Agent {n}" for n in range(args.agents)]
    if not args.store.exists():
        started = time.perf_counter()
        build(args.store, args.conversations, args.handed_off, agents, args.turns, args.kept_takeovers)
        print(f"built in {time.perf_counter() - started:.1f} s")
    writer = Store(args.store)  # migrates a store a deskbot before built, and writes the busy polls' turns
    store = Store(args.store, read_only=True)
    handed_off = store.db.execute("SELECT count(*) FROM conversations WHERE status = 'handed_off'").fetchone()[0]
    kept = store.db.execute("SELECT count(*) FROM takeovers").fetchone()[0]
    print(f"{handed_off} handed off, {kept} takeovers kept")
    agent = agents[1]
    for name, read in (("baseline: every handed-off conversation's latest handoff and takeover",
                        lambda: store.db.execute(f"SELECT count(*) {_HANDED_OFF_FROM}").fetchone()),
                       ("baseline: every takeover kept, the agent's name compared",
                        lambda: store.db.execute("SELECT count(*) FROM takeovers WHERE agent_key(agent) = ? "
                                                 "OR agent_key(previous) = ?", [agent_key(agent)] * 2).fetchone()),
                       (f"passed_to({agent!r}), {len(store.passed_to(agent))} listed", lambda: store.passed_to(agent)),
                       (f"taken_from({agent!r}), {len(store.taken_from(agent))} listed",
                        lambda: store.taken_from(agent)),
                       ("baseline: the agent's customers as their inbox lists them",
                        lambda: store.inbox("handed_off", PASSED_LISTED, agent, holder=agent)),
                       (f"unread_of({agent!r})", lambda: store.unread_of(agent))):
        print(f"{name}: {timed(read, args.runs)}")
    alone, polled = [], []
    for _ in range(args.runs):  # alternately, so that the host's load weighs on both alike
        store._kept_rows = None  # each read anew, as the page's rows were before they were shared
        alone += times_of(lambda: (store.inbox_and_yours("handed_off", 200, agent), store.unread_of(agent),
                                   store.holders()), 1)
        store._kept_rows = None
        polled += times_of(lambda: store.poll("handed_off", 200, agent), 1)
    for name, times in (("baseline: the inbox, the agent's unread and the holders each on its own", alone),
                        ("the inbox, the agent's unread and the holders in one pass (Store.poll)", polled)):
        print(f"{name}: best {min(times):.2f} ms, median {statistics.median(times):.2f} ms")
    print(f"one pass against each on its own: {statistics.median(polled) / statistics.median(alone):.2f} times as long "
          "(medians)")
    whole, unchanged = [], []
    held = tagged_poll(store, agent, Store.inbox_version)
    for _ in range(args.runs):  # alternately, as above
        whole += times_of(lambda: whole_poll(store, agent), 1)
        unchanged += times_of(lambda: tagged_poll(store, agent, Store.inbox_version, held), 1)
    print(f"baseline: an inbox poll read and encoded whole, {len(whole_poll(store, agent)) / 1000:.1f} kB of JSON: "
          f"best {min(whole):.2f} ms, median {statistics.median(whole):.2f} ms")
    print(f"an inbox poll with nothing committed since (ETag, 304): best {min(unchanged):.3f} ms, "
          f"median {statistics.median(unchanged):.3f} ms")
    print(f"unchanged against whole: {statistics.median(unchanged) / statistics.median(whole):.4f} times as long "
          "(medians)")
    other = Store(args.store, read_only=True)  # the reads' connection of another server behind the load balancer
    held = tagged_poll(store, agent, Store.inbox_version)
    per_connection, named = [], []
    for _ in range(args.runs):  # alternately, as above
        per_connection += times_of(lambda: tagged_poll(other, agent, connections_version, held), 1)
        named += times_of(lambda: tagged_poll(other, agent, Store.inbox_version, held), 1)
    medians("the store's name against the connection's", "an inbox poll on another server with the first's ETag, the "
            "version begun with the connection's name (answered whole)", per_connection,
            "the same, the version begun with the store's name (_v54, 304)", named)
    other.close()
    today = store.db.execute("SELECT max(created) FROM turns").fetchone()[0]
    listed = "conversation_id IN (SELECT id FROM conversations WHERE channel = :channel)"  # as before
    looked_up = _customers("t.conversation_id", "web", None)
    assert web_counts(store, today, listed) == web_counts(store, today, looked_up)
    by_list, by_turn = [], []
    for _ in range(args.runs):  # alternately, as above
        by_list += times_of(lambda: web_counts(store, today, listed), 1)
        by_turn += times_of(lambda: web_counts(store, today, looked_up), 1)
    print(f"the day's figures, every channel's: {timed(lambda: conversation_stats(store, today), args.runs)}")
    for name, times in (("baseline: the web chat's conversations and handoffs of the day, by a list of its conversations",
                         by_list), ("the same, each turn of the day looked up in its conversation", by_turn)):
        print(f"{name}: best {min(times):.2f} ms, median {statistics.median(times):.2f} ms")
    print(f"looked up against listed: {statistics.median(by_turn) / statistics.median(by_list):.4f} times as long "
          "(medians)")
    kept_figures, anew_figures, kept_asks = KeptFigures(), [], []
    for _ in range(args.runs):  # alternately, as above
        with store.snapshot():
            anew_figures += times_of(lambda: conversation_stats(store, today), 1)
            kept_asks += times_of(lambda: kept_figures.read(store, today, lambda: conversation_stats(store, today)), 1)
    medians("kept against anew", "the day's figures, each console's ask read anew", anew_figures,
            "the day's figures asked again, nothing committed since (KeptFigures)", kept_asks)
    compared = f"SELECT count(*) FROM conversations c WHERE status = 'open' AND {_AGENTS_REACH}"  # as before
    indexed = ("SELECT (SELECT count(*) FROM conversations WHERE status = 'open') - (SELECT count(*) FROM conversations "
               f"WHERE channel = '{TRYOUT_CHANNEL}' AND +status = 'open') - (SELECT count(*) FROM conversations "
               "WHERE channel IS NULL AND +status = 'open')")  # as before _v54
    nothing = store._found("")
    assert store.db.execute(compared).fetchone()[0] == store.db.execute(indexed).fetchone()[0] == store._listed(
        "open", nothing)
    for name, read in (("baseline: the conversations with the bot counted, the agents' reach compared on each",
                        lambda: store.db.execute(compared).fetchone()),
                       ("the conversations with the bot counted from the indexes alone",
                        lambda: store.db.execute(indexed).fetchone())):
        print(f"{name}: {timed(read, args.runs)}")
    from_indexes, kept_count = [], []
    for _ in range(args.runs):  # alternately, as above
        from_indexes += times_of(lambda: store.db.execute(indexed).fetchone(), 1)
        kept_count += times_of(lambda: store._listed("open", nothing), 1)
    medians("kept against from the indexes", "the conversations with the bot counted from the indexes alone",
            from_indexes, "the same, the count the triggers keep (_v54, Store._listed)", kept_count)
    anew, kept_looks = [], []
    for _ in range(args.runs):  # alternately, as above
        _read_for_review.cache_clear()
        anew += times_of(lambda: review_queue(store, 0.9), 1)
        kept_looks += times_of(lambda: review_queue(store, 0.9), 1)
    for name, times in ((f"baseline: the review queue ({len(review_queue(store, 0.9))} items), its waiting messages read "
                         "anew", anew), ("the review queue, a look after another", kept_looks)):
        print(f"{name}: best {min(times):.2f} ms, median {statistics.median(times):.2f} ms")
    print(f"a look after another against one anew: {statistics.median(kept_looks) / statistics.median(anew):.2f} times "
          "as long (medians)")
    latest = store.transcript("long")["turns"][-1]["id"]
    for name, read in (("baseline: the transcript's latest 200 turns", lambda: store.transcript("long")),
                       ("the turns after the latest one shown", lambda: store.transcript("long", after=latest))):
        print(f"{name}: {timed(lambda: dumps(read()).encode(), args.runs)}, "
              f"{len(dumps(read()).encode()) / 1000:.1f} kB of JSON")
    busy = Exchange("busy", "web", "user-busy", "where is my order?", None, "It ships soon.", "track_order", 0.8,
                    [("track_order", 0.8)], "template", "v0001", 0.7, {}, 0)
    tags = {version: tagged_poll(store, agent, version) for version in (Store.version, Store.inbox_version)}
    polls: dict[Callable[[Store], str], list[float]] = {version: [] for version in tags}
    for _ in range(args.runs):  # alternately, as above, a customer's turn to the bot committed before each poll
        for version in tags:
            writer.log_exchange(busy)
            started = time.perf_counter()
            tags[version] = tagged_poll(store, agent, version, tags[version])
            polls[version].append((time.perf_counter() - started) * 1000)
    medians("the inbox's version against the store's", "an inbox poll in a busy store, the ETag of the store's version",
            polls[Store.version], "the same, the ETag of the inbox's version (Store.inbox_version)",
            polls[Store.inbox_version])
    passed_anew, pass_kept = [], []
    for _ in range(args.runs):  # alternately, as above
        writer.log_exchange(busy)
        store._pass = None  # as each poll read it before
        passed_anew += times_of(lambda: dumps(store.poll("open", 200)).encode(), 1)
        writer.log_exchange(busy)
        pass_kept += times_of(lambda: dumps(store.poll("open", 200)).encode(), 1)
    medians("kept against anew", "the tab of the conversations with the bot in a busy store, its pass over the "
            "handed-off conversations read anew", passed_anew, "the same, the pass kept from the poll before", pass_kept)
    read_ids = iter(store.db.execute("SELECT id FROM conversations WHERE status = 'handed_off' ORDER BY id").fetchall())
    consoles = agents[:5]
    pages_anew, pages_shared = [], []
    for _ in range(args.runs):  # alternately, as above, an agent reading a customer before each round of polls
        for rounds, anew_each in ((pages_anew, True), (pages_shared, False)):
            (conversation_id,) = next(read_ids)
            writer.mark_seen(conversation_id, agents[-1], 2 ** 62)
            started = time.perf_counter()
            for console in consoles:
                whole_poll(store, console, shared=not anew_each)
            rounds.append((time.perf_counter() - started) * 1000)
    medians("shared against anew", f"{len(consoles)} agents' inbox polls after a change of the inbox, each page read "
            "anew", pages_anew, "the same, the page's rows shared at the inbox's version", pages_shared)
    writer.close()
    store.close()
    for name, apart in (("baseline: an inbox poll behind the figures, on one thread", False),
                        ("an inbox poll beside the figures, on a thread of their own", True)):
        waited, took = poll_beside_figures(args.store, agent, apart)
        print(f"{name}: answered in {waited:.1f} ms, the figures read in {took:.1f} ms")


if __name__ == "__main__":
    main()
