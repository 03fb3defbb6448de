"""Labelling the review queue: in the terminal (``bot review``) and for the admin API.

One item at a time, a person answers with an intent name (or a unique prefix of one), a number from
the model's ranking, ``a`` to accept the model's guess, ``o`` for out of scope, ``u`` to correct the
item labelled last, ``s`` to skip or ``q`` to stop. Each answer is written at once and covers the whole
group of near-duplicates, so stopping halfway loses nothing.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import click
import numpy as np
from click import termui

from bot.nlu import as_served, read_meta
from bot.project import BotConfig, Project
from dialogues.review import OOS, WINDOW, Queue, ReviewItem, check_label, review_queue
from dialogues.store import LabelledMeanwhile, Store
from finetune.classifier import IntentClassifier
from finetune.registry import Registry
from retrieval.text import printable

SKIP, QUIT, UNDO = "s", "q", "u"
T = TypeVar("T")

AUTO_REVIEW_CONFIDENCE = 0.5  # the least confidence that auto review takes as sure enough


def review_threshold(config: BotConfig, model_threshold: float) -> float:
    """Below this confidence a turn enters the queue: ``learning.review_confidence``, by default
    (``auto``) the bot's intent threshold or 0.5, whichever is higher.

    Below the intent threshold the bot falls back, and those turns are in the queue anyway; the
    labels that teach a model most are on the messages it answered without conviction. A calibrated
    threshold on many intents sits low (0.23 on BANKING77's 77), and a queue cut there found a
    fraction of what the label budget allowed (bench/LEARNING.md, runs A and D against C and E).
    """
    review = config.learning.review_confidence
    if review != "auto":
        return float(review)
    threshold = config.thresholds.intent
    return max(AUTO_REVIEW_CONFIDENCE, model_threshold if threshold == "auto" else float(threshold))


class CachedModel:
    """The serving classifier's view of waiting messages, its ranking and its sentence embedding,
    remembered per text, so the queue is rescored and grouped without re-encoding every message on
    each request."""

    def __init__(self, classifier: IntentClassifier, version: str, size: int = 20_000) -> None:
        self.classifier = classifier
        self.version = version
        self.size = size
        self._cache: OrderedDict[str, tuple[list[tuple[str, float]], np.ndarray]] = OrderedDict()

    def _views(self, texts: list[str]) -> list[tuple[list[tuple[str, float]], np.ndarray]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            # In passes of 64 where the gate measures an int8 model one message a pass (as_served): the queue ranks
            # up to 5,000 waiting messages, and orders them by how unsure the model is, not by its exact answer.
            predictions, vectors = self.classifier.predict_with_embeddings(missing, batch_size=64)
            for text, prediction, vector in zip(missing, predictions, vectors):
                self._cache[text] = (prediction.ranking, vector)
        views = []
        for text in texts:
            self._cache.move_to_end(text)
            views.append(self._cache[text])
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return views

    def embed(self, texts: list[str]) -> np.ndarray:
        views = self._views(texts)
        return np.stack([v for _, v in views]) if views else np.zeros((0, self.classifier.head.shape[1]), np.float32)

    def rank(self, texts: list[str]) -> list[list[tuple[str, float]]]:
        return [ranking for ranking, _ in self._views(texts)]


def serving_queue(project: Project, store: Store, device: str | None = None, limit: int = WINDOW) -> Queue:
    """The review queue as the serving model sees it: rescored by it as `bot serve` runs it (in int8 where bot.yml
    asks, as the console's queue is), and grouped by its embeddings."""
    path = Registry(project.models_dir).current_path()
    meta = read_meta(path)
    model = CachedModel(as_served(project, IntentClassifier.load(path / "classifier", device=device)), path.name)
    similarity = project.config.learning.review_similarity
    threshold = review_threshold(project.config, meta.get("intent_threshold", 0.5))
    return review_queue(store, threshold, model.embed if similarity else None, similarity, limit, model.rank,
                        labels=project.labels)


@dataclass
class Answer:
    intent: str | None  # None: skip
    stop: bool = False
    undo: bool = False  # correct the item labelled last


def parse_answer(raw: str, item: ReviewItem, intents: Sequence[str]) -> Answer:
    """What a reviewer typed, as a label; raises ValueError with a hint when it is not one. An intent's exact
    name wins over the shortcuts, which nlu.yml may use as names too (``404``, ``OOS``, ``a``; with an intent
    named ``q``, Ctrl-D still ends the session)."""
    text = raw.strip()
    if text and text in intents:
        return Answer(text)
    text = unicodedata.normalize("NFKC", text)  # an input method's full-width "ｏ" or "ｕ"
    if text and text in intents:
        return Answer(text)
    if text.lower() == QUIT:
        return Answer(None, stop=True)
    if text.lower() == UNDO:
        return Answer(None, undo=True)
    if text.lower() in ("", SKIP):
        return Answer(None)
    if text.lower() == "a":
        if item.intent is None:
            raise ValueError("there is no prediction to accept; type an intent")
        return Answer(check_label(item.intent, intents))  # the model may know an intent nlu.yml no longer has
    if text.lower() in ("o", OOS):
        return Answer(OOS)
    if text.isdecimal():  # "１" too, which int() reads; not "²" or "①", which it does not
        n = int(text)
        if not 1 <= n <= len(item.ranking):
            raise ValueError(f"pick a number between 1 and {len(item.ranking)}")
        return Answer(check_label(item.ranking[n - 1][0], intents))
    matches = [i for i in intents if i.startswith(text)]
    if len(matches) == 1:
        return Answer(matches[0])
    if matches:
        raise ValueError(f"{text!r} could be {', '.join(matches[:6])}")
    return Answer(check_label(text, intents))  # raises with the list of choices


def show(item: ReviewItem, position: int, total: int, intents: Sequence[str]) -> None:
    """An item as the reviewer reads it; a ranked intent nlu.yml no longer has (the serving model was trained before
    it was renamed or taken out) is marked, since it cannot be picked."""
    count = len(item.turn_ids)
    click.echo()
    click.secho(click.wrap_text(f"[{position}/{total}] {count} message{'s' if count > 1 else ''} "
                                f"({', '.join(item.reasons)}) · score {item.score:.2f}", width()), bold=True)
    for text in item.texts[:5]:
        click.echo(f"  “{printable(text)}”")
    if len(item.texts) > 5:
        click.echo(f"  (+{len(item.texts) - 5} more phrasings)")
    for comment in item.comments[:3]:  # the customer's own word on what the reply missed
        click.echo(f"  said wrong: “{printable(comment)}”")
    entries = [f"{n}. {intent} {conf:.2f}{'' if intent in intents else ' (not in nlu.yml)'}"
               for n, (intent, conf) in enumerate(item.ranking, start=1)]
    line = f"  model: {'  '.join(entries) or 'no prediction'}"
    if columns(line) <= width():
        click.echo(line)
    else:  # wrapped by the terminal, "4" ended one line and ". cancel_order" began the next: read as 0.124
        click.echo("\n".join(["  model:", *(f"    {entry}" for entry in entries)]))


def width() -> int:
    """The terminal's width in columns (``COLUMNS``, else the terminal's own; 80 when output goes to no terminal)."""
    return shutil.get_terminal_size().columns


def columns(text: str) -> int:
    """The terminal columns ``text`` takes: two for each wide character (Chinese, full-width), one for the others."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def clipped(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal columns (:func:`columns`), cut with "…" where it is longer: cut at
    ``width`` characters, a Chinese message took twice the columns of an English one, and wrapped the table it was in."""
    if columns(text) <= width:
        return text
    kept, used = [], columns("…")
    for char in text:
        used += columns(char)
        if used > width:
            break
        kept.append(char)
    return "".join(kept) + "…"


def review_in_terminal(store: Store, items: list[ReviewItem], intents: Sequence[str], reviewer: str | None,
                       more: bool = False) -> dict[str, int]:
    """Prompt for each item in turn; returns how many items and turns were labelled and skipped. ``more``:
    the queue goes on past ``items``.

    ``u`` shows the item labelled last again and takes a new label for it (a slip would otherwise be
    learned at every retrain), then comes back to the item on the screen; after the last item, ``u`` can
    still correct it before the sitting ends."""
    ranked = max((len(item.ranking) for item in items), default=0)
    numbers = f"1-{ranked} from the model's ranking, " if ranked > 1 else "1 for the model's guess, " if ranked else ""
    click.echo(click.wrap_text(  # word by word in a narrow terminal, which cut "model\n's ranking"
        f"{len(items)} item{'' if len(items) == 1 else 's'} to review. Answer with an intent (or a unique prefix), "
        f"{numbers}a = accept the model's guess, o = out of scope, u = correct the last label, s = skip, q = quit.",
        width()))
    done = {"items": 0, "turns": 0, "skipped": 0}
    last: tuple[ReviewItem, int, list[int]] | None = None  # the item labelled last, its position and its turns

    def ask(item: ReviewItem, label: str) -> Answer:
        def parse(raw: str) -> Answer:
            try:
                return parse_answer(raw, item, intents)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from None

        if sys.stdin is None:  # closed (`<&-`, a cron job without one): the end of input
            return Answer(None, stop=True)
        answer = prompt(label, SKIP, parse)
        return Answer(None, stop=True) if answer is None else answer  # what was labelled is already stored

    def correct_last(last: tuple[ReviewItem, int, list[int]]) -> bool:
        """Show the item labelled last and take a new label for it; True when the reviewer stopped there."""
        show(last[0], last[1], len(items), intents)
        correction = ask(last[0], "correct to")
        if correction.intent is None:
            click.echo("  not corrected")
        else:
            try:
                labelled_as(correction.intent, store.correct_label(last[2], correction.intent, reviewer))
            except KeyError:  # all purged meanwhile
                click.echo("  not corrected: its messages were deleted meanwhile")
        return correction.stop

    for position, item in enumerate(items, start=1):
        show(item, position, len(items), intents)
        answer = ask(item, "label")
        while answer.undo:
            if last is None:
                click.echo("  nothing labelled yet to correct")
            elif correct_last(last):
                return done
            else:
                show(item, position, len(items), intents)
            answer = ask(item, "label")
        if answer.stop:
            return done
        if answer.intent is None:
            done["skipped"] += 1
            continue
        try:
            labelled = store.add_labels(item.turn_ids, answer.intent, reviewer, first=True, known={*intents, OOS})
        except LabelledMeanwhile as exc:  # from the admin API, or purged, while this item was on the screen
            click.echo(f"  skipped: {exc}")
            done["skipped"] += 1
            continue
        done["items"] += 1
        done["turns"] += len(labelled)
        last = (item, position, labelled)
        labelled_as(answer.intent, labelled)
    # The sitting's last label can still be a slip: one more chance to correct it before the sitting ends.
    while last is not None and sys.stdin is not None and wants_correction(more):
        if correct_last(last):
            break
    return done


def wants_correction(more: bool) -> bool:
    """After the sitting's last item (the queue's, unless ``more``): ``u`` corrects the label given last,
    Enter (or ``q``, or the end of input) ends the sitting."""
    def parse(raw: str) -> bool:
        if (text := raw.strip().lower()) in ("", QUIT):
            return False
        if text == UNDO:
            return True
        raise click.BadParameter("type u to correct the last label, or press Enter to finish")

    end = "end of this sitting" if more else "end of the queue"
    return bool(prompt(f"{end}: u = correct the last label, Enter = finish", "", parse))


def prompt(label: str, default: str, parse: Callable[[str], T]) -> T | None:
    """What the reviewer typed, parsed; asked again after a parse error or bytes that are not UTF-8 (a
    character the terminal's erase cut in two); None at the end of input (Ctrl-D) or on Ctrl-C. Piped answers
    are shown after their prompt, as a terminal shows what is typed, so that the sitting reads as a transcript
    (click's test runner shows them itself, through its own prompt function)."""
    piped = not sys.stdin.isatty() and termui.visible_prompt_func is input

    def shown(raw: str) -> T:
        if piped:
            click.echo(raw)
        return parse(raw)

    while True:
        try:
            return click.prompt(label, default=default, value_proc=shown, show_default=False)
        except click.Abort:
            click.echo()  # the shell's prompt, or the summary, on a line of its own
            return None
        except UnicodeDecodeError:
            click.echo("Error: that was not UTF-8 text; type it again")


@dataclass
class GivenLabel:
    """One label as it was given: the turns one answer labelled at once (a queue item's near duplicates), which
    ``bot review --correct`` changes together, as the admin API does (:meth:`Store.label_answers`)."""

    turn_id: int  # the first of its turns, by which ``--correct`` names it
    intent: str
    reviewer: str | None
    created: float
    texts: list[str]  # the distinct messages it labelled


def given_labels(store: Store, intent: str | None = None,
                 limit: int | None = None) -> tuple[list[GivenLabel], bool]:
    """The labels that stand now (each turn's latest), newest first, ``intent``'s alone if named, the newest ``limit``
    if given, and whether older ones stand too: a label given in an earlier sitting could be corrected only through the
    admin API, so a slip found later was learnt at every retrain. Labels are read newest first, one answer's batch (its
    time and reviewer) at a time, and no further than the batch after the ``limit``-th answer: a store of years of
    labels was read whole, twice, to list the latest few."""
    given: dict[tuple[Any, ...], GivenLabel] = {}
    first: dict[tuple[Any, ...], int] = {}  # each answer's first label: the order in which they were given
    batch: tuple[float, str | None] | None = None
    answers: dict[int, tuple[Any, ...]] = {}
    for row in store.newest_labels(intent):
        if (row["created"], row["reviewer"]) != batch:  # one answer's labels were written together, the ids in a run
            if limit is not None and len(given) > limit:
                break
            batch = (row["created"], row["reviewer"])
            answers = store.label_answers(batch)
        key = answers[row["turn_id"]]
        label = given.setdefault(key, GivenLabel(row["turn_id"], row["intent"], row["reviewer"], row["created"], []))
        label.turn_id, first[key] = row["turn_id"], row["id"]  # newest first: the last row read is its first turn
        if row["text"] in label.texts:
            label.texts.remove(row["text"])
        label.texts.insert(0, row["text"])  # the texts in the order they were labelled, each where it came first
    labels = [given[key] for key in sorted(given, key=first.__getitem__, reverse=True)]
    return (labels, False) if limit is None else (labels[:limit], len(labels) > limit)


def show_given(label: GivenLabel) -> None:
    """A label as ``bot review --labelled`` lists it, on one line: its turn, intent, reviewer, when, and what it
    labelled."""
    when = datetime.fromtimestamp(label.created, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    more = f" (+{len(label.texts) - 1} more phrasing{'s' * (len(label.texts) > 2)})" if len(label.texts) > 1 else ""
    click.echo(f"  #{label.turn_id}  {label.intent}  by {label.reviewer or 'nobody named'}, {when}: "
               f"“{printable(label.texts[0])}”{more}")


def labelled_as(intent: str, turns: list[int]) -> None:
    click.echo(f"  → {intent} ({len(turns)} message{'s' if len(turns) > 1 else ''})")
