"""How the bot is doing, from the conversation store: what ``bot stats`` prints.

The figures a support lead asks for first: how many conversations the bot kept without a person
(containment), how its answers split between templates, historical answers, actions and the
fallback, what customers thought of them (each reply's thumbs, and the share of the conversations they
rated whose every vote said helpful: deskbot asks no satisfaction survey), why conversations went to a
person and how long those customers waited for the first human reply. Customers' conversations only: not
the shop's own tries in ``bot chat``.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections import Counter
from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np

from dialogues.holding import says_wrong
from dialogues.review import current_name
from dialogues.store import RENAMED, TRYOUT_CHANNEL, Store
from retrieval.text import printable, same_text

ANSWERED = ("template", "retrieval", "action")
CHANNELS = ("web", "slack", "wecom")  # those customers come through: ``bot chat``'s tries are the shop's own
LANGUAGES = ("en", "zh")  # bot.language.Language
LANGUAGE_SLOT = "language"  # bot.language.SLOT: where a multi bot keeps a conversation's language
NO_END = 9e99  # a time after every stored one
FIRST_MOMENT = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp()  # the earliest a period's bound can be written
# Not set beside the previous period's, figure by figure: its bounds, and lists of the most frequent, which name
# other intents and questions from one period to the next (one absent from a top list was not asked 0 times; the
# top intents' change is read apart, :func:`compared_with_previous`).
NOT_COMPARED = ("period", "top_intents", "top_unanswered", "top_complaints")
TOP_LISTS = ("top_intents", "top_unanswered", "top_complaints")


def conversation_stats(store: Store, since: float = 0.0, top: int = 10, until: float | None = None,
                       channel: str | None = None, language: str | None = None) -> dict[str, Any]:
    """The figures for everything recorded from ``since`` (a Unix time) on, and before ``until`` where given (last
    week's alone, to set beside this week's), as one JSON-ready dict; of one of :data:`CHANNELS` alone where
    ``channel`` names it (the web chat's containment beside Slack's and WeCom's), and of the conversations a
    ``multi`` bot held in one ``language`` (:func:`language_kept`)."""
    db = store.db
    window = {"since": since, "top": top, "until": NO_END if until is None else until, "channel": channel,
              "language": language}

    def rows(sql: str, of_channel: str | None = channel) -> list[Any]:
        return db.execute(sql, {**window, "channel": of_channel}).fetchall()

    customers = _customers("t.conversation_id", channel, language)
    talked = _talked(customers)

    def kept(of_channel: str | None = channel) -> dict[str, Any]:
        """The conversations with the bot, of ``of_channel`` where given, and those handed to a person."""
        of = _talked(_customers("t.conversation_id", of_channel, language)) if of_channel != channel else talked
        conversations = rows(f"SELECT count(DISTINCT conversation_id) FROM ({of})", of_channel)[0][0]
        # Of those conversations: a takeover of an older one, with nothing said since, is not counted.
        handed_off = rows("SELECT count(DISTINCT conversation_id) FROM handoffs WHERE event = 'handed_off' "
                          f"AND created >= :since AND created < :until AND conversation_id IN ({of})", of_channel)[0][0]
        return {"conversations": conversations, "handed_off": handed_off,
                "containment": _share(conversations - handed_off, conversations)}

    overall = kept()
    conversations, handed_off = overall["conversations"], overall["handed_off"]
    # Each channel's beside the others': a channel whose customers all went to a person hid behind their containment.
    channels = {channel: overall} if channel else {name: kept(name) for name in CHANNELS}
    sources = dict(rows("SELECT p.source, count(*) FROM predictions p JOIN turns t ON t.id = p.turn_id "
                        f"WHERE t.created >= :since AND t.created < :until AND {customers} GROUP BY p.source"))
    # Not those sent while a person had the conversation, nor the customer's clicks back to the bot, nor those the
    # customer deleted before they were answered.
    to_the_bot = sum(n for source, n in sources.items() if source not in ("silent", "resume", "deleted"))
    # Why each of those went to a person, once per conversation: the reason of its latest handoff.
    reasons = dict(rows("SELECT reason, count(*) FROM handoffs WHERE id IN (SELECT max(id) FROM handoffs "
                        "WHERE event = 'handed_off' AND created >= :since AND created < :until "
                        f"AND conversation_id IN ({talked}) GROUP BY conversation_id) "
                        "GROUP BY reason ORDER BY count(*) DESC, reason"))
    # Each reply's latest vote, as the history shows it: a changed mind or a withdrawn vote (0) counts once.
    latest_votes = ("FROM feedback f JOIN turns t ON t.id = f.turn_id "
                    f"WHERE f.created >= :since AND f.created < :until AND {customers} "
                    "AND NOT EXISTS (SELECT 1 FROM feedback g WHERE g.turn_id = f.turn_id AND g.id > f.id)")
    votes = dict(rows(f"SELECT f.value, count(*) {latest_votes} GROUP BY f.value"))
    # The conversations whose customer voted, and those whose every vote said helpful: customers rate replies,
    # not conversations, and the share is the nearest figure to a satisfaction score the store holds.
    rated, with_a_down = rows("SELECT count(DISTINCT t.conversation_id), "
                              f"count(DISTINCT CASE WHEN f.value < 0 THEN t.conversation_id END) {latest_votes} "
                              "AND f.value != 0")[0]
    # Each handoff's wait: until the first agent message after it, if one came before the conversation
    # changed hands again (a customer who went back to the bot unanswered waited in vain).
    waits = rows(
        "SELECT (SELECT min(t.created) FROM turns t WHERE t.conversation_id = h.conversation_id AND t.role = 'agent' "
        "AND t.undelivered IS NULL "
        "AND t.created >= h.created AND t.created < coalesce((SELECT min(n.created) FROM handoffs n "
        "WHERE n.conversation_id = h.conversation_id AND n.id > h.id), 9e99)) - h.created "
        "FROM handoffs h WHERE h.event = 'handed_off' AND h.reason != 'agent' AND h.created >= :since AND h.created < :until "
        f"AND {_customers('h.conversation_id', channel, language)}")
    answered_waits = sorted(w for (w,) in waits if w is not None)
    answered_sources = ", ".join(f"'{source}'" for source in ANSWERED)
    # Answers a reviewer labelled with another intent, or out of scope (the latest label): the bot answered, and
    # answered another question than the customer's. Not one given under a name `bot relabel` gave its labels since.
    wrong = rows(
        f"{RENAMED}SELECT count(*) FROM predictions p JOIN turns t ON t.id = p.turn_id "
        "JOIN review_labels r ON r.turn_id = t.id "
        f"WHERE t.created >= :since AND t.created < :until AND {customers} "
        f"AND p.source IN ({answered_sources}) AND r.id = (SELECT max(id) FROM review_labels WHERE turn_id = t.id) "
        "AND r.intent IS NOT p.intent "
        "AND NOT EXISTS (SELECT 1 FROM renamed WHERE renamed.old = p.intent AND renamed.new = r.intent)")[0][0]
    # Each intent under the name `bot relabel` gave it last, as the bot answers it since: one intent, not two.
    name = partial(current_name, renames=store.renames(), labels=None)
    answered: Counter[str] = Counter()
    for intent, n in rows(
            "SELECT p.intent, count(*) FROM predictions p JOIN turns t ON t.id = p.turn_id WHERE t.created >= :since "
            f"AND t.created < :until AND {customers} AND p.source IN ({answered_sources}) "
            "AND p.intent IS NOT NULL GROUP BY p.intent"):
        answered[name(intent)] += n
    intents = sorted(answered.items(), key=lambda item: (-item[1], item[0]))[:top if top >= 0 else None]
    # What the bot could not answer, most asked first: the customers' own words (not a button's payload), those
    # that are one message to a reviewer counted together (:func:`same_text`: letter case, spacing, punctuation, width,
    # a number and Chinese script aside; 发票怎么开 and 發票怎麼開, Hong Kong's customers and Beijing's asking one
    # question, were counted as two), under their most written form, as one of its customers typed it ("在吗？", where
    # the model read "在吗?").
    unanswered: dict[str, list[Any]] = {}
    for text, raw_text, n in rows(
            "SELECT min(t.text), t.raw_text, count(*) FROM predictions p JOIN turns t ON t.id = p.turn_id WHERE t.created >= :since "
            f"AND t.created < :until AND {customers} AND p.source = 'fallback' "
            "AND substr(t.text, 1, 1) != '/' GROUP BY lower(trim(t.text)) ORDER BY count(*) DESC, min(t.text)"):
        unanswered.setdefault(same_text(text), [store.typed(text, raw_text), 0])[1] += n
    top_unanswered = sorted(unanswered.values(), key=lambda asked: -asked[1])[:top if top >= 0 else None]
    # What customers said was wrong with the answers they voted down (the widget's box after a thumbs-down), most said
    # first, then latest: the counts told a director that customers were unhappy, never why. A message that only
    # said the answer missed ("不对", "that's wrong", kept as its vote's comment) tells no more than the vote.
    comments = rows(f"SELECT min(f.comment), count(*) {latest_votes} AND f.value < 0 AND f.comment IS NOT NULL "
                    "GROUP BY lower(trim(f.comment)) ORDER BY count(*) DESC, max(f.created) DESC")
    complaints = [(text, n) for text, n in comments if not says_wrong(text)][:top if top >= 0 else None]
    return {
        "period": {"since": _moment(since), "until": _moment(until)},
        "conversations": conversations,
        "handed_off": handed_off,
        "containment": overall["containment"],
        "handoff_reasons": reasons,
        "channels": channels,
        "messages": to_the_bot,
        "sources": {source: sources.get(source, 0) for source in (*ANSWERED, "fallback", "handoff")},
        "answered": _share(sum(sources.get(s, 0) for s in ANSWERED), to_the_bot),
        "wrong_answers": wrong,
        "while_with_a_person": sources.get("silent", 0),
        "feedback": {"up": votes.get(1, 0), "down": votes.get(-1, 0)},
        "rated_conversations": {"rated": rated, "all_helpful": rated - with_a_down,
                                "share": _share(rated - with_a_down, rated)},
        "first_agent_reply_seconds": {
            "median": statistics.median(answered_waits) if answered_waits else None,
            # nearest rank: a wait some customer actually had
            "p90": float(np.percentile(answered_waits, 90, method="inverted_cdf")) if answered_waits else None,
            "unanswered": len(waits) - len(answered_waits),
        },
        "top_intents": dict(intents),
        "top_unanswered": dict(top_unanswered),
        "top_complaints": dict(complaints),
    }


class KeptFigures:
    """The figures read at the store's latest version (:meth:`Store.version`), by what was asked: every agent's console
    asks for the day's every 30 s, and each ask read them anew (25 ms on a store of 100,000 conversations, a day of
    2,000 handoffs) though nothing was committed since the last, which gives the same figures. A commit between two
    asks (a customer's message) has them read anew, and those read before forgotten. For one connection's reads, on one
    thread (the server's figures')."""

    MOST = 16  # figures kept at one version: the consoles' midnights (one a time zone), a dashboard's periods

    def __init__(self) -> None:
        self._version: str | None = None
        self._kept: dict[Hashable, dict[str, Any]] = {}

    def read(self, store: Store, asked: Hashable | None, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``read()``'s figures, or those it gave for ``asked`` (everything the figures are read for) at the store's
        version now, in the caller's snapshot. None asks for figures that move with the clock (a comparison up to
        now), read anew each time. The figures given are shared: not for the caller to change."""
        if asked is None:
            return read()
        version = store.version()
        if version != self._version or len(self._kept) >= self.MOST:
            self._version, self._kept = version, {}
        if asked not in self._kept:
            self._kept[asked] = read()
        return self._kept[asked]


def compared_with_previous(store: Store, since: float, until: float | None = None, top: int = 10,
                           **window: Any) -> dict[str, Any]:
    """The figures from ``since`` to ``until`` (now where None), with those of the period of equal length just before
    it (``previous``) and each figure's ``change``: week over week in one read, where two reads, set side by side by
    hand, were needed. Each of this period's top intents is set beside its count then, in the top list or not (an
    intent rising into it is no new one). ``window`` is :func:`conversation_stats`'s (``channel``, ``language``)."""
    length = max(round((time.time() if until is None else until) - since), 0)  # whole seconds: bounds read plainly
    figures = conversation_stats(store, since, until=until, top=top, **window)
    start = max(since - length, FIRST_MOMENT)  # the period before one from year 1 on has no length
    every = conversation_stats(store, start, until=since, top=-1, **window)  # SQLite's LIMIT -1: no limit
    previous = {**every, **{name: dict(list(every[name].items())[:top]) for name in TOP_LISTS}}
    change = {key: _change(value, previous[key]) for key, value in figures.items() if key not in NOT_COMPARED}
    change["top_intents"] = {intent: n - every["top_intents"].get(intent, 0) for intent, n in figures["top_intents"].items()}
    return {**figures, "previous": previous, "change": change}


def _change(now: Any, before: Any) -> Any:
    """This period's figure less the previous one's (a share's in the share's own terms: 0.5 to 0.75 is 0.25), key by
    key in a breakdown, where a reason or source one period lacks counts 0 in it; None where either has no figure
    (a median of no waits)."""
    if isinstance(now, dict) or isinstance(before, dict):
        now, before = now or {}, before or {}
        return {key: _change(now.get(key, 0), before.get(key, 0)) for key in {**now, **before}}
    if isinstance(now, (int, float)) and isinstance(before, (int, float)):
        return round(now - before, 4)
    return None


def language_kept(asked: str | None, spoken: str) -> str | None:
    """The conversation language to keep the figures to, for a bot that speaks ``spoken`` (``en``, ``zh`` or
    ``multi``): a ``multi`` bot keeps each conversation's in its ``language`` slot; a bot of one language holds
    every conversation in it, and none in the other. ValueError for a language it does not speak, whose zeros
    would pass for a quiet week."""
    if asked is None or spoken == asked:
        return None
    if asked not in LANGUAGES:
        raise ValueError(f"{asked!r} is neither of {', '.join(LANGUAGES)}")
    if spoken != "multi":
        raise ValueError(f"the bot speaks {spoken} alone (language: {spoken} in bot.yml)")
    return asked


def _talked(customers: str) -> str:
    """The customers' messages to the bot in the window, as SQL selecting their conversations: a message sent while
    a person had the conversation is not one, nor one its customer deleted before it was answered (nor is its
    conversation, if all are). ``customers``: :func:`_customers` of ``t.conversation_id``."""
    return (f"SELECT conversation_id FROM turns t WHERE role = 'user' AND created >= :since AND created < :until "
            f"AND {customers} "
            "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.turn_id = t.id "
            "AND p.source IN ('silent', 'deleted'))")


def _customers(column: str, channel: str | None, language: str | None) -> str:
    """Which conversations count, as SQL true of a row whose conversation's id is ``column``: customers', of
    ``channel`` and in ``language`` where given. Where nothing else is asked, the few tryout conversations are left
    out rather than every customer's listed: a list of all conversations read the whole store at each call (the
    agents' console asks every 30 s), where the ``created`` indexes read the window alone. A channel or a language
    is looked up for each row of the window, in its conversation: listed, the conversations of a channel were each
    looked up in the turns, every web conversation of the store at each call for the web chat's figures beside the
    others', 0.5 s with 100,000 of them however few the window held."""
    if channel is None and language is None:
        return f"{column} NOT IN (SELECT id FROM conversations WHERE channel = '{TRYOUT_CHANNEL}')"
    kept = ["channel = :channel" if channel else f"channel != '{TRYOUT_CHANNEL}'"]
    if language:
        kept.append(f"json_extract(slots, '$.{LANGUAGE_SLOT}') = :language")
    return f"EXISTS (SELECT 1 FROM conversations counted WHERE counted.id = {column} AND {' AND '.join(kept)})"


def _moment(unix: float | None) -> str | None:
    """A bound of the period, in UTC (``2026-11-22T16:00:00+00:00``): figures kept week by week say which week,
    wherever they are read; None where the period has none."""
    return datetime.fromtimestamp(unix, timezone.utc).isoformat() if unix else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures_as_csv(figures: dict[str, Any]) -> str:
    """``bot stats --csv`` and ``GET /admin/stats?format=csv``: a row a figure, named by its path in the JSON
    (``sources.fallback``, ``top_intents.track_order``); with ``--compare``, the previous period's value and the
    change beside it (empty where there is none: a share of nothing, a question of the top unanswered; a handoff reason one period did not give, 0; a top
    intent's count before, in the previous top list or not)."""
    now = flattened({key: value for key, value in figures.items() if key not in ("previous", "change")})
    before, change = flattened(figures.get("previous", {})), flattened(figures.get("change", {}))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "value", "previous", "change"] if "previous" in figures else ["figure", "value"])
    for key in {**now, **before}:
        delta = change.get(key)  # where a period lacks the key, its value is the other's less (or plus) the change
        was = before.get(key, None if delta is None else now.get(key, 0) - delta)
        compared = [was, delta] if "previous" in figures else []
        # a complaint's figure is named by the customer's comment, as sent: read in a terminal (`bot stats --csv`, a
        # curl of the API's), an escape sequence in it was the terminal's to act on
        writer.writerow([printable(key), now.get(key, None if delta is None else was + delta), *compared])
    return out.getvalue()


def flattened(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The figures one level deep, each under its path: ``{"sources": {"fallback": 2}}`` as ``sources.fallback``."""
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
