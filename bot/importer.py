"""A bot folder from labelled messages: ``bot init DIR --from-jsonl FILE`` (or ``--from-csv``, a helpdesk's export).

Teams that already have labelled messages (an exported ticket system, or a public set such as
BANKING77) get a trainable bot at once: every intent's examples go to ``nlu.yml`` in Rasa's format,
and each intent no line answers gets one placeholder template in ``responses.yml`` to be rewritten by
hand. A line's ``answer``, what an agent answered the message, goes to ``history.jsonl``, from which the
bot answers questions close to it: an intent with answers gets no placeholder, which would come first. The bot's language is the data's: ``zh`` when nearly every message is Chinese,
``en`` when nearly none is, and ``multi`` for a mix, with a placeholder in each language.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from bot.channels.base import DEFAULT_MAX_MESSAGE_CHARS, readable
from bot.language import written_in
from bot.project import (HISTORY_ALONE, csv_rows, example_text, history_item, html_kept, in_file_order, no_answer,
                         same_example, too_long, unquoted_example)
from dialogues.export import learned_text, shareable
from dialogues.review import OOS
from dialogues.redact import redact
from finetune.durable import replaced
from retrieval.text import normalise

MIXED = 0.1  # a set with at least this share of messages in each language is bilingual
# Made for its owner alone: it comes to hold the admin token and the channels' secrets (Slack's signing secret,
# WeCom's keys), and a file made with the umask's mode showed them to every account on the machine.
PRIVATE_FILES = ("bot.yml",)
# A bot made from a ticket export holds its customers' words as they wrote them: their questions are nlu.yml's
# examples and history.jsonl's questions (what the store keeps of them is made for its owner alone too).
IMPORTED_FILES = ("nlu.yml", "history.jsonl")


class _Block(str):
    """A string YAML writes as a ``|`` block, as Rasa writes its examples."""


def _block(dumper: yaml.SafeDumper, data: _Block) -> yaml.ScalarNode:
    """libyaml's writer takes only plain strings, so the block's text is one."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


class _Dumper(yaml.SafeDumper):
    """PyYAML's own writer."""


class _FastDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """libyaml's writer where PyYAML has it: the pure-Python one took most of a minute over 200,000 examples."""


for _dumper in (_Dumper, _FastDumper):
    _dumper.add_representer(_Block, _block)

# What both writers print as it is. libyaml's escapes an emoji (any character beyond U+FFFF) that PyYAML's
# prints, which puts a whole intent's examples on one quoted line, and folds long quoted lines otherwise.
_BOTH_PRINT = re.compile("[\n\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd]*")


def _texts(data: Any) -> Iterator[str]:
    """Every string in ``data``, keys too."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _texts(key)
            yield from _texts(value)
    elif isinstance(data, list):
        for item in data:
            yield from _texts(item)


def to_yaml(data: Any) -> str:
    """``data`` as PyYAML's own writer writes it, by libyaml's where that writes the same."""
    fast = all(_BOTH_PRINT.fullmatch(text) for text in _texts(data))
    return yaml.dump(data, Dumper=_FastDumper if fast else _Dumper, allow_unicode=True, sort_keys=False, width=1000)


def placeholder_answer(intent: str, language: str = "en") -> str:
    """The template an imported intent starts with; braces are doubled so it has no variables."""
    topic = intent.replace("_", " ").replace("{", "{{").replace("}", "}}")
    if language == "zh":
        return f"感谢您关于“{topic}”的留言，客服会尽快跟进。"
    return f"Thanks for your message about {topic}. An agent will follow up with the details."


def placeholders(intent: str, language: str) -> list[dict[str, str]]:
    """An imported intent's variants: one placeholder, or for a bilingual bot one in each language."""
    if language == "multi":
        return [{"text": placeholder_answer(intent)}, {"text": placeholder_answer(intent, "zh"), "language": "zh"}]
    return [{"text": placeholder_answer(intent, language)}]


def answer_of(row: dict[str, Any]) -> str | None:
    """A labelled line's ``answer``: None when it has none, or an empty one (a ticket exported unanswered);
    a TypeError or ValueError for one history.jsonl would refuse (not text, too long)."""
    answer = row.get("answer")
    if not no_answer(answer) and not isinstance(answer, str):  # str() would make "5" or "['a', 'b']" of it
        raise TypeError(f"the answer must be text, not {answer!r}")
    item = history_item({"question": row["text"], "answer": answer})
    return None if item is None else item.answer


def check_line(row: dict[str, Any]) -> None:
    """A labelled line as ``bot init --from-jsonl`` takes it: a ValueError or TypeError for an answer history.jsonl
    would refuse (:func:`answer_of`), or a CSV row with neither an intent nor an answer."""
    if answer_of(row) is None and row["intent"] is None:  # a CSV row of no intent is an answer alone
        raise ValueError("a row without an intent needs an answer, which the bot gives to close questions")


def customers_questions(rows: list[dict[str, Any]],
                        lines: list[int]) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """``rows`` (read from ``lines``) without those whose text is longer than a customer's message may be, with the
    lines kept and the lines left out: a ticket's whole thread, exported as its question, was kept as one example
    that no customer could send and of which the classifier reads 64 tokens, and refusing them refused the whole
    export, to be cut by hand, where history.csv leaves such a question out."""
    long = [too_long(row["text"], DEFAULT_MAX_MESSAGE_CHARS) is not None for row in rows]
    return ([row for row, left in zip(rows, long) if not left], [line for line, left in zip(lines, long) if not left],
            [line for line, left in zip(lines, long) if left])


def read_csv(path: Path, fail: Callable[[str], None], intent_name: Callable[[str], str],
             check: Callable[[dict[str, Any]], object], lines: list[int] | None = None) -> list[dict[str, Any]]:
    """A helpdesk's CSV export as ``bot init --from-csv`` reads it: a header row naming the columns ``question``
    (or ``text``), ``intent`` and ``answer``, in any case and order, and a row a question, as a ``--from-jsonl``
    line with those keys (:func:`~bot.project.csv_rows`); a row without an intent has None, which ``check`` judges
    (``bot eval`` refuses it, and ``bot init`` takes it as an answer alone: :func:`check_line`). Other columns are
    kept, for ``bot init`` to name as not read. ``fail`` stops with the line of what cannot be read, as
    ``read_jsonl`` does, and once every row is read with each row's that is wrong: an empty question, ``intent_name``'s
    ValueError, ``check``'s ValueError or TypeError (an export's tickets whose questions are whole threads were told
    one a run). ``lines``, given, gets each row's line."""
    rows, mistakes = [], []
    for line, row in csv_rows(path, fail):
        try:
            if not readable(row.get("text", "")):
                raise ValueError("the question is empty")
            row["intent"] = intent_name(row["intent"]) if row.get("intent", "").strip() else None
            check(row)
        except (ValueError, TypeError) as exc:
            mistakes.append(f"{path}:{line}: {exc}")
            continue
        rows.append(row)
        if lines is not None:
            lines.append(line)
    if mistakes:
        fail("\n".join(in_file_order(mistakes)))
    if not rows:
        fail(f"{path}: no rows")
    return rows


def write_whole(directory: Path, files: dict[str, str], private: Collection[str] = PRIVATE_FILES) -> None:
    """Write ``files`` (name: text) into ``directory``, all or none: each is written beside its place, and all are
    put in place once every one is written. A full disk, or a folder where a file should be, left the new bot.yml
    and nlu.yml with the old bot's responses.yml and history.jsonl. Those named in ``private`` are created for
    their owner alone."""
    if folder := next((directory / name for name in files if (directory / name).is_dir()), None):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(folder))
    with contextlib.ExitStack() as written:  # a write that fails puts none of them in place
        for name, text in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)  # the bot's folder, a packaged bot's actions/
            written.enter_context(replaced(directory / name, private=name in private)).write(text)


def data_language(texts: list[str]) -> str:
    """``en``, ``zh`` or ``multi``, by the share of messages written in Chinese."""
    chinese = sum(written_in(t) == "zh" for t in texts) / max(len(texts), 1)
    return "zh" if chinese >= 1 - MIXED else "en" if chinese <= MIXED else "multi"


def example_key(text: str) -> str:
    """The example ``text`` (normalised and redacted, as :func:`write_bot` writes it) is to nlu.yml, which reads
    entity annotations as their text: lines of one key are one example there."""
    return same_example(example_text(text))


def written_example(row: dict[str, Any]) -> str:
    """A labelled line's text as :func:`write_bot` writes it to nlu.yml: a ticket's customer, as the store's, no number
    or address kept; and as an examples block takes it (:func:`~bot.project.unquoted_example`)."""
    return unquoted_example(learned_text(normalise(row["text"])))


def kept_intent(given: Mapping[str, int]) -> str:
    """Of the intents one text was ``given``, each with its count of lines in the order first given, the one it is
    kept under: the most frequent, the first given on a tie."""
    return max(given, key=given.__getitem__)


def relabelled_lines(rows: list[dict[str, Any]], lines: list[int]) -> list[str]:
    """Each text of ``rows`` (on ``lines`` of their file) given more than one intent, as its first line and what
    :func:`write_bot` made of it: kept under :func:`kept_intent`'s, the others' lines named, for the owner of the
    data to correct the labels that are wrong instead of learning which were dropped from the intents' counts."""
    given: dict[str, dict[str, list[int]]] = {}
    first: dict[str, tuple[int, str]] = {}
    for row, line in zip(rows, lines):
        if row["intent"] is not None:
            key = example_key(written_example(row))
            given.setdefault(key, {}).setdefault(row["intent"], []).append(line)
            first.setdefault(key, (line, row["text"]))
    said = []
    for key, intents in given.items():
        if len(intents) > 1:
            kept = kept_intent({intent: len(at) for intent, at in intents.items()})
            others = "; ".join(f"{intent!r} on line{'s' if len(at) > 1 else ''} {', '.join(map(str, at))}"
                               for intent, at in intents.items() if intent != kept)
            line, text = first[key]
            said.append(f"{line}: {text!r} kept under {kept!r} ({len(intents[kept])} line"
                        f"{'s' if len(intents[kept]) > 1 else ''}), not {others}")
    return said


def repeated_lines(rows: list[dict[str, Any]], lines: list[int]) -> list[int]:
    """The lines of ``rows`` (on ``lines`` of their file) whose text an earlier line had, as :func:`write_bot` counts
    them (``repeated``): kept once, out-of-scope ones aside; named, for the shop to find them in its export."""
    seen: dict[str, list[int]] = {}  # example_key -> the lines of the labelled rows with it
    intents: dict[str, Counter[str]] = {}
    for row, line in zip(rows, lines):
        if row["intent"] is not None:
            key = example_key(written_example(row))
            seen.setdefault(key, []).append(line)
            intents.setdefault(key, Counter())[row["intent"]] += 1
    return sorted(line for key, at in seen.items() if kept_intent(intents[key]) != OOS for line in at[1:])


def write_bot(directory: Path, rows: list[dict[str, Any]], name: str,
              personal_rows: list[int] | None = None) -> dict[str, int | str]:
    """Write ``bot.yml``, ``nlu.yml``, ``responses.yml`` and ``history.jsonl`` for ``rows`` of ``{"text",
    "intent", "answer"?}``, as ``read_jsonl(path, fail, intent_name)`` and :func:`read_csv` read them: each text
    has something to read, and each intent is a name nlu.yml holds (:func:`~bot.project.intent_name`), or None
    for a CSV row that is an answer alone, which goes to history.jsonl under no intent (``unfiled``).

    Each text is written as the server reads a message (:func:`~retrieval.text.normalise`): a control or
    invisible character pasted into a ticket is no part of it, and one would put its intent's examples on
    one quoted line of nlu.yml; and with its personal data replaced, as `bot export` writes a customer's message
    (:func:`~dialogues.export.learned_text`): the model, its n-grams and its index learn ``[EMAIL]`` and
    ``[CARD]``, not a ticket's customer's email address and card number. Out-of-scope lines (intent ``oos``) are
    not an intent and are left out; a text that occurs more than once (spacing, case and character width aside) is
    kept once. Logged tickets
    often label one message differently over time, and nlu.yml refuses an example under two intents, so
    such a text goes to the intent it was given most often (the first one given, on a tie). Each answer
    (:func:`answer_of`) goes to history.jsonl once with its question, under the intent that question went
    to, out-of-scope ones left out as their texts are, and so are answers no other customer may read (an
    email or a phone number, one customer's case, a name or an address: :func:`~dialogues.export.shareable`,
    as for the agents' answers the bot logs). Returns the counts written, ``repeated`` (the lines
    whose text an earlier line had, out-of-scope ones aside), ``relabelled`` (how many texts had several
    intents), ``oos`` (the out-of-scope texts left out), ``answers`` (written to history.jsonl),
    ``personal`` (the answers left out as no one else's), ``placeholders`` (the intents given a placeholder
    template) and the language. ``personal_rows``, given, gets the index in ``rows`` of each answer left out as no one
    else's, for the file's lines to be named: a count alone left the shop to guess which tickets those were.
    """
    votes: dict[str, Counter[str]] = {}  # same_example(text) -> the intents it was labelled with
    spelling: dict[str, str] = {}  # same_example(text) -> its first spelling
    answered: dict[tuple[str, str], str] = {}  # (same_example(text), answer) -> the text as first answered so
    personal = 0  # answers no other customer may read
    for at, row in enumerate(rows):
        text = written_example(row)
        key = example_key(text)
        if row["intent"] is not None:  # a CSV row without one is an answer alone
            votes.setdefault(key, Counter())[row["intent"]] += 1
        spelling.setdefault(key, text)
        if answer := answer_of(row):
            if shareable(text, redact(answer)):  # both as the store keeps an agent's answer and its question
                answered.setdefault((key, answer), text)
            else:
                personal += 1
                if personal_rows is not None:
                    personal_rows.append(at)
    chosen = {key: kept_intent(counts) for key, counts in votes.items()}
    by_intent: dict[str, list[str]] = defaultdict(list)
    for key, intent in chosen.items():
        by_intent[intent].append(spelling[key])
    left_out = len(by_intent.pop(OOS, []))
    repeated = sum(sum(counts.values()) - 1 for key, counts in votes.items() if chosen[key] != OOS)
    if len(by_intent) < 2:
        alone = any(row["intent"] is None for row in rows)  # a CSV row of an answer alone: answered tickets, unlabelled
        raise ValueError("at least two intents with examples are needed" + (HISTORY_ALONE if alone else ""))
    intents = sorted(by_intent)
    entries = [{"intent": i, "examples": _Block("".join(f"- {t}\n" for t in by_intent[i]))} for i in intents]
    # Written an intent at a time: one whose examples have an emoji does not take the others off libyaml's writer.
    nlu = to_yaml({"version": "3.1"}) + "nlu:\n" + "".join(to_yaml([entry]) for entry in entries)
    language = data_language([t for texts in by_intent.values() for t in texts])
    config = {"name": name, "language": language, "model": {"base": "default"}, "thresholds": {"intent": "auto"}}
    # Only the file's answers: a previous bot's would answer for intents this one may not have. Each as history.jsonl
    # reads it back, a helpdesk's export (a "<b>" the export escaped stays text).
    history = [json.dumps({"question": html_kept(text), "answer": html_kept(answer),
                           **({"intent": chosen[key]} if key in chosen else {})}, ensure_ascii=False) + "\n"
               for (key, answer), text in answered.items() if chosen.get(key) != OOS]
    # An intent the agents answered answers with their words: a template comes first, and a placeholder there
    # told every customer "an agent will follow up" while the file's answers waited behind it.
    answering = {chosen.get(key) for key, _ in answered}
    responses = {"version": "3.1", "responses": {i: placeholders(i, language) for i in intents if i not in answering}}
    write_whole(directory, {"bot.yml": to_yaml(config), "nlu.yml": nlu, "responses.yml": to_yaml(responses),
                            "history.jsonl": "".join(history)}, private=(*PRIVATE_FILES, *IMPORTED_FILES))
    return {"intents": len(intents), "examples": sum(len(v) for v in by_intent.values()), "repeated": repeated,
            "relabelled": sum(len(counts) > 1 for counts in votes.values()), "oos": left_out,
            "answers": len(history), "unfiled": sum(key not in chosen for key, _ in answered), "personal": personal,
            "placeholders": len(responses["responses"]),
            "language": language}
