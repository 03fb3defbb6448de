"""The review queue: the customer messages a person should label first.

A user turn enters the queue when the model was unsure (confidence below the intent threshold), its
answer got a thumbs-down, or it ended in a fallback or a handoff, and nobody has labelled it yet.
Labelling is the scarce resource, so the queue is ordered by expected value: how unsure the model
was, times how many customers say the same thing (conversations, so that one customer retyping a
question after a fallback counts once). Near-duplicates ("where is my order 123" and "where is my
order 456", or phrasings the model embeds at cosine >= ``similarity``) form one item, and one label
covers every turn in it. A message whose text was labelled before stays out: the label is known. So does a
message that only acknowledges or thanks ("ok", "thanks 👍", "好的[抱拳]"): the bot answers it in its own words,
and no intent of the shop's is what it means; nor does one that only says the answer before missed ("不对", "that's
wrong"): that answer's message is in the queue for it, as for a thumbs-down.

Uncertainty is the margin of the top two intents, ``1 - (p1 - p2)``, a standard active-learning
measure that also catches confident-looking turns torn between two intents; a thumbs-down counts as
full uncertainty, because the customer told us the answer was wrong.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from dialogues.holding import DELETED, acknowledges, says_wrong
from dialogues.store import Store
from retrieval.text import same_text

OOS = "oos"
Embed = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows
Rank = Callable[[list[str]], list[list[tuple[str, float]]]]  # texts -> the model's top intents, best first
Read = Callable[[Callable[[], Any]], Any]  # runs a read of the store and returns what it read
_NO_TURN = 2**63 - 1  # above every turn id SQLite gives
RESCORED_PER_LIMIT = 4  # review_queue reads at most this many times its limit looking for turns still waiting


@dataclass
class ReviewItem:
    """One group of near-duplicate turns, labelled at once."""

    turn_ids: list[int]  # most recent first
    texts: list[str]  # the distinct texts as the customers typed them (full-width forms and all), most frequent first
    intent: str | None  # the model's most frequent prediction in the group, which accepting it labels
    ranking: list[tuple[str, float]]  # the top intents of the most recent turn predicted as ``intent``
    reasons: list[str]  # low_confidence, negative_feedback, fallback, handoff
    uncertainty: float  # mean over the group
    score: float  # uncertainty × the conversations it came from
    # What the customers said was wrong with the replies they voted down, latest first: what they asked, in their words
    comments: list[str] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.turn_ids[0]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "turn_ids": self.turn_ids, "texts": self.texts[:10], "count": len(self.turn_ids),
                "predicted": self.intent, "ranking": [{"intent": i, "confidence": round(c, 4)} for i, c in self.ranking],
                "reasons": self.reasons, "uncertainty": round(self.uncertainty, 4), "score": round(self.score, 4),
                "comments": self.comments[:10]}


def uncertainty(ranking: Sequence[tuple[str, float]], negative_feedback: bool) -> float:
    if negative_feedback or not ranking:
        return 1.0
    second = ranking[1][1] if len(ranking) > 1 else 0.0
    return float(min(1.0, max(0.0, 1.0 - (ranking[0][1] - second))))


# The latest waiting messages the queue is built from: each is read, scored by the serving model and embedded
# for grouping at every look at the queue. Older ones join it as these are labelled (Queue.more_waiting).
WINDOW = 5000


class Queue(list[ReviewItem]):
    """The review queue's items, best first. ``more_waiting``: it stopped at its window (or at the reads the
    model may rescore) before the waiting messages ran out, so older ones may wait beyond it: a reviewer
    told "12 left" must know that more come once those are labelled."""

    more_waiting = False


# The longest message whose reading (:func:`read_for_review`) is kept between looks at the queue: the waiting
# messages' thousands, at most RESCORED_PER_LIMIT times the window, with a customer's 4,000 characters each held
# 80 MB; of 200 characters at most, 20 MB at the very most, and a few for the short messages customers mostly write.
KEPT_CHARS = 200


@functools.lru_cache(maxsize=RESCORED_PER_LIMIT * WINDOW)
def _read_for_review(text: str) -> tuple[str, bool]:
    return same_text(text), acknowledges(text) or says_wrong(text) or text == DELETED


def read_for_review(text: str) -> tuple[str, bool]:
    """A message's :func:`same_text` key, and whether no label is for it (it only thanks, only says the answer before
    missed, or was deleted): each look at the queue read every waiting message of its window so, two thirds of its time
    (every 3 s from a console on the review tab, for the same messages each time); those read before are kept."""
    return _read_for_review(text) if len(text) <= KEPT_CHARS else _read_for_review.__wrapped__(text)


def covered_texts(store: Store, labels: Collection[str] | None = None) -> set[str]:
    """The :func:`same_text` keys of the messages a label covers; ``labels`` as for :func:`candidates`."""
    return {read_for_review(row["text"])[0] for row in store.labels() if labels is None or row["intent"] in labels}


def candidates(store: Store, threshold: float, limit: int = WINDOW, labels: Collection[str] | None = None,
               before: int | None = None, covered: set[str] | None = None) -> list[dict[str, Any]]:
    """The most recent ``limit`` unlabelled turns (older than turn ``before``, when given) that qualify for
    review (button payloads and turns sent while a human had the conversation are left out: they are not
    questions to the bot), and whose text no label covers yet. The limit counts these alone: a question
    asked thousands of times since its label must not push the turns still waiting out of the queue, so
    the turns are read newest first until ``limit`` of them are left. ``labels``: the labels a retrain
    learns from (the bot's intents and ``oos``); a message labelled otherwise (an intent since taken out
    of nlu.yml) waits for a label again. None: every label counts. ``covered``: :func:`covered_texts`,
    when read already."""
    known = None if labels is None else json.dumps(sorted(labels))
    if covered is None:
        covered = covered_texts(store, labels)
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    rows = store.db.query(
        # The classifier's intent, also where the reply was about none (a historical answer filed under no intent)
        "SELECT t.id, t.text, t.raw_text, t.conversation_id, coalesce(p.intent, json_extract(p.ranking, '$[0][0]')) AS intent, "
        "p.confidence, p.ranking, p.source, f.value AS feedback, f.comment "
        "FROM turns t JOIN predictions p ON p.turn_id = t.id "
        "LEFT JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE turn_id = p.reply_turn_id) "
        "WHERE t.id < ? AND t.role = 'user' AND p.source != 'silent' AND substr(t.text, 1, 1) != '/' "
        "AND NOT EXISTS (SELECT 1 FROM review_labels r WHERE r.turn_id = t.id "
        "     AND r.id = (SELECT max(id) FROM review_labels WHERE turn_id = t.id) "
        "     AND (? IS NULL OR r.intent IN (SELECT value FROM json_each(?)))) "
        "AND (p.confidence < ? OR p.source IN ('fallback', 'handoff') OR f.value < 0) "
        "ORDER BY t.id DESC",
        [_NO_TURN if before is None else before, known, known, threshold],
    )
    for row in rows:  # streamed: reading stops at the limit
        key, for_no_label = read_for_review(row["text"])
        if for_no_label or key in covered:  # thanks (no intent's), deleted by the customer, or known
            continue
        row["ranking"] = [tuple(pair) for pair in json.loads(row["ranking"] or "[]")]
        row["typed"] = store.typed(row["text"], row.pop("raw_text"))  # shown as written, read as the model read it
        reasons = []
        if row["confidence"] < threshold:
            reasons.append("low_confidence")
        if row["feedback"] is not None and row["feedback"] < 0:
            reasons.append("negative_feedback")
        if row["source"] in ("fallback", "handoff"):
            reasons.append(row["source"])
        row["reasons"] = reasons
        out.append(row)
        if len(out) == limit:
            break
    return out


def rescore(rows: list[dict[str, Any]], rank: Rank, threshold: float) -> list[dict[str, Any]]:
    """Judge waiting turns by the serving model rather than by the one that answered them.

    After a retrain, a turn the new model is sure about is worth less of a reviewer's time. A
    fallback, a handoff or a thumbs-down stays a reason (it happened to the customer); a turn whose
    only reason was low confidence leaves the queue once the serving model is confident.
    """
    out = []
    for row, ranking in zip(rows, rank([r["text"] for r in rows])):
        reasons = [reason for reason in row["reasons"] if reason != "low_confidence"]
        if not ranking or ranking[0][1] < threshold:
            reasons.append("low_confidence")
        if reasons:
            out.append({**row, "ranking": ranking, "intent": ranking[0][0] if ranking else None,
                        "confidence": ranking[0][1] if ranking else 0.0, "reasons": reasons})
    return out


def current_name(intent: str, renames: dict[str, str], labels: Collection[str] | None) -> str:
    """``intent`` by the name ``bot relabel`` gave it last (:meth:`Store.renames`), followed through a name renamed
    again (A to B, then B to C) to one of ``labels``; a name ``labels`` has is its own (renamed back since)."""
    seen = set()
    while intent in renames and intent not in seen and (labels is None or intent not in labels):
        seen.add(intent)
        intent = renames[intent]
    return intent


def renamed_ranking(ranking: Sequence[tuple[str, float]], name: Callable[[str], str]) -> list[tuple[str, float]]:
    """A model's ranking by the intents' current names (``name``): an intent merged into another ranked beside it
    keeps its first place alone, with that place's confidence, the one the model answered at."""
    renamed: dict[str, float] = {}
    for intent, confidence in ranking:
        renamed.setdefault(name(intent), confidence)
    return list(renamed.items())


def renamed(rows: list[dict[str, Any]], renames: dict[str, str], labels: Collection[str] | None) -> list[dict[str, Any]]:
    """The rows with their intents by the names ``bot relabel`` gave them: a model trained before the rename
    predicts an intent by the name nlu.yml no longer has, and accepting the prediction was refused as unknown."""
    if not renames:
        return rows
    name = partial(current_name, renames=renames, labels=labels)
    return [{**row, "intent": row["intent"] and name(row["intent"]), "ranking": renamed_ranking(row["ranking"], name)}
            for row in rows]


def _merge_similar(groups: list[list[dict[str, Any]]], embed: Embed, similarity: float,
                   block: int = 1024) -> list[list[dict[str, Any]]]:
    """Greedy clustering of the text groups, largest first: a group joins the cluster whose representative
    (its largest group) it embeds closest to, when that is within ``similarity``, else it starts a cluster.

    The similarities come ``block`` groups at a time, each block one matrix product with the groups before
    it: a product per group with a copy of every representative so far took seconds (up to half a minute)
    for 5,000 groups, on every read of the queue (the agents' console reads it every 3 seconds)."""
    groups = sorted(groups, key=len, reverse=True)
    vectors = embed([g[0]["text"] for g in groups])
    clusters: list[list[dict[str, Any]]] = []
    heads = np.empty(len(groups), dtype=np.intp)  # each cluster's representative, by position in groups
    for start in range(0, len(groups), block):
        sims = vectors[start:start + block] @ vectors[:start + block].T
        for i in range(start, min(start + block, len(groups))):
            if clusters:
                row = sims[i - start, heads[:len(clusters)]]
                best = int(np.argmax(row))
                if row[best] >= similarity:
                    clusters[best] += groups[i]
                    continue
            heads[len(clusters)] = i
            clusters.append(list(groups[i]))
    return clusters


def build_queue(rows: list[dict[str, Any]], embed: Embed | None = None, similarity: float = 0.9) -> list[ReviewItem]:
    """Group candidate rows into items, best expected value first."""
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(read_for_review(row["text"])[0], []).append(row)
    groups = list(by_text.values())
    if embed is not None and 0 < similarity <= 1 and len(groups) > 1:
        groups = _merge_similar(groups, embed, similarity)
    items = []
    for group in groups:
        group.sort(key=lambda r: r["id"], reverse=True)
        scores = [uncertainty(r["ranking"], "negative_feedback" in r["reasons"]) for r in group]
        predicted = Counter(r["intent"] for r in group if r["intent"]).most_common(1)
        intent = predicted[0][0] if predicted else None
        shown = next((r for r in group if r["intent"] == intent), group[0])  # the ranking agrees with the intent
        reasons = sorted({reason for r in group for reason in r["reasons"]})
        texts = [t for t, _ in Counter(r.get("typed", r["text"]) for r in group).most_common()]
        conversations = len({r["conversation_id"] for r in group})
        comments = list(dict.fromkeys(r["comment"] for r in group if r.get("comment") and r["feedback"] < 0))
        items.append(ReviewItem([r["id"] for r in group], texts, intent, shown["ranking"], reasons,
                                float(np.mean(scores)), float(np.mean(scores)) * conversations, comments))
    items.sort(key=lambda item: (-item.score, -item.id))
    return items


def review_queue(store: Store, threshold: float, embed: Embed | None = None, similarity: float = 0.9,
                 limit: int = WINDOW, rank: Rank | None = None, labels: Collection[str] | None = None,
                 read: Read = lambda fn: fn()) -> Queue:
    """The queue of the most recent ``limit`` turns waiting, best first; ``labels`` as for :func:`candidates`.

    With ``rank`` (the serving model) the turns are rescored by it first, and the limit counts the turns it
    keeps: turns it is sure of now must not take the place of older ones still waiting. Intents are offered by the
    names ``bot relabel`` gave them (:func:`renamed`). ``read`` runs each
    read of the store (a server reads its store on the store's own thread, and ranks elsewhere)."""
    covered = read(partial(covered_texts, store, labels))
    renames = read(store.renames)
    rows: list[dict[str, Any]] = []
    before, read_so_far, ran_out = None, 0, False
    while len(rows) < limit and read_so_far < RESCORED_PER_LIMIT * limit:  # the model ranks every turn read
        wanted = limit - len(rows)
        page = read(partial(candidates, store, threshold, wanted, labels, before, covered))
        rows += renamed(rescore(page, rank, threshold) if rank is not None else page, renames, labels)
        read_so_far += len(page)
        if ran_out := len(page) < wanted:  # no more waiting
            break
        before = page[-1]["id"]
    queue = Queue(build_queue(rows, embed, similarity))
    queue.more_waiting = not ran_out
    return queue


def check_label(intent: str, intents: Sequence[str]) -> str:
    """A label must be a known intent or ``oos``, as spelled there; anything else is refused, never stored, with the
    names it may have meant and how a new intent is made: a reviewer who meets a question no intent covers was told
    only that the name was unknown."""
    if intent != OOS and intent not in intents:
        close = difflib.get_close_matches(intent, intents, n=3)
        meant = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown intent {intent!r}{meant}; use one of the bot's intents or {OOS!r}. A new intent is "
                         "added to nlu.yml first, with a few examples and its answer in responses.yml; then its "
                         "messages can be labelled with it, and the next `bot retrain` learns it")
    return intent
