"""What every ``bot`` command shares: the command group, its options and its errors."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from bot.project import Project
from bot.project import load_project as read_project

if TYPE_CHECKING:
    from dialogues.store import Store


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


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@contextlib.contextmanager
def unwound_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (a cron job's ``timeout``, ``docker stop``) and SIGHUP (the terminal it ran in
    closed, an ssh session lost) end the command as an error does, exit code 143 or 129, its clean-up run: killed
    outright by default, they left a half-written temporary behind, and a `bot rollback` whose terminal closed before
    the version served left the log saying it served. A SIGHUP ignored (``nohup``) stays ignored."""
    import signal

    stops = [signal.SIGTERM, *([signal.SIGHUP] if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN else [])]
    previous = {signum: signal.signal(signum, lambda signum, _: sys.exit(128 + signum)) for signum in stops}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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


def load_bot(root: Path) -> Project:
    """:func:`load_project` for the commands that run the bot's actions (check, train, serve): the mistakes of
    actions/ and of bot.yml's ``actions.map`` told with those of the files, not in a second run once these load."""
    from bot.actions import with_map_mistakes
    from bot.project import ProjectError

    try:
        return load_project(root)
    except ProjectError as exc:
        raise with_map_mistakes(exc, Path(root)) from None


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
    redact_what_goes_wrong()
    say_if_no_temporary_folder()


class RedactedLastResort(logging.StreamHandler):  # type: ignore[type-arg]
    """What logging says where no handler is set up (every command but `bot serve`, which sets up its own log):
    warnings and errors, as logging's last resort writes them, their tracebacks redacted as `bot serve`'s are. The
    formatter is imported at the first line said: it loads the store's module, which every command need not."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.WARNING)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The standard error of the moment, as logging's own last resort writes to (a test's runner swaps it)."""
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        from bot.log_format import RedactedTracebacks

        return RedactedTracebacks("%(message)s").format(record)


def said_redacted(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """An exception no command caught, written as Python writes it, its text redacted: a crash of a `bot retrain`
    run by cron mails its traceback, which quoted the message or label it failed on."""
    from bot.log_format import redacted_traceback

    sys.stderr.write("".join(redacted_traceback(traceback.TracebackException(kind, value, tb))))


def redact_what_goes_wrong() -> None:
    """Tracebacks said by any command without the personal data their exceptions' text may quote."""
    logging.lastResort = RedactedLastResort()
    sys.excepthook = said_redacted


def say_if_no_temporary_folder() -> None:
    """Refuse to start where no folder takes temporary files: torch needs one as it loads, and on a read-only
    root without a writable /tmp (docker run --read-only) each command ended in a traceback from its import."""
    try:
        tempfile.gettempdir()
    except OSError as exc:
        fail(f"{exc.strerror}: set TMPDIR to a folder this user can write, or give it a writable /tmp "
             "(docker run --read-only --tmpfs /tmp, systemd's PrivateTmp=yes)")


def shell(path: Path) -> str:
    """A path as a command line takes it: ``bot train 'odd bot'``."""
    return shlex.quote(str(path))


# The responses Rasa's own fallback actions send (action_default_fallback, action_default_ask_rephrase), with the
# setting that says what deskbot's fallback says
RASA_FALLBACK_RESPONSES = {"utter_default": "fallback.message", "utter_ask_rephrase": "fallback.rephrase"}


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
    from bot.evalset import MIN_HOLDING_OUT, unequal_intents, unmeasured_intents
    from bot.importer import placeholder_answer
    from bot.language import CJK
    from dialogues.review import OOS
    from retrieval.text import intent_phrase

    if unanswered := project.unanswered():
        click.echo(f"note: {plural(len(unanswered), 'intent')} with no template in "
                   f"responses.yml, no custom action and no answer in {project.history_files()}: {', '.join(unanswered)}; a "
                   "customer the model puts there gets the fallback, unless an answer filed under no intent (or an "
                   "agent's, once learned) is close", err=True)
    unwritten = [intent for intent, variants in project.responses.templates.items()
                 if variants and all(v.text in (placeholder_answer(intent), placeholder_answer(intent, "zh")) for v in variants)]
    if unwritten:
        one = len(unwritten) == 1
        click.echo(f"note: {plural(len(unwritten), 'intent')} still answer{'s' if one else ''} with bot init's "
                   f"placeholder, which tells customers an agent will follow up: {first_few(unwritten)}; write "
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
        listed = first_few([f"{name} (lines {', '.join(map(str, lines))})" for name, lines in repeated.items()], 5, "; ")
        click.echo(f"note: nlu.yml lists {plural(len(repeated), 'intent')} in more than one entry, whose examples "
                   f"train the one intent, as Rasa reads them: {listed}; if one is a pasted block or was meant to be "
                   "another intent, rename or remove it", err=True)
    if twins := project.twins:
        pairs = first_few([f"{t.first.text!r} ({t.first.intent}, line {t.first_line}) and {t.second.text!r} "
                        f"({t.second.intent}, line {t.second_line})" for t in twins], 5, "; ")
        click.echo(f"note: nlu.yml has {plural(len(twins), 'pair')} of examples under two intents that differ only in "
                   f"punctuation or a number: {pairs}; the classifier learns two "
                   "answers to one question, and a review label covers both: keep each in one intent", err=True)
    if long_questions := project.long_questions:
        click.echo(f"note: {plural(len(long_questions), 'history question')} longer than a customer's message "
                   f"may be ({project.config.server.max_message_chars:,}: server.max_message_chars), left out: "
                   f"{first_few(long_questions)}; keep the customer's question alone", err=True)
    if unanswered := project.unanswered_tickets:  # an export's unanswered tickets: left out, counted, as the long ones are
        files = " and ".join(dict.fromkeys(line.partition(":")[0] for line in unanswered))
        click.echo(f"note: {plural(len(unanswered), 'line')} of {files} with no answer (tickets exported "
                   f"unanswered), left out: {first_few(unanswered)}", err=True)
    if repeated := project.repeated_answers:  # each indexed once: told, as a count of answers would mislead
        click.echo(f"note: {plural(len(repeated), 'history answer')} read before to the same question (spacing and "
                   f"case aside), kept once: {first_few(repeated)}"
                   + ("; bot init --from-csv wrote history.jsonl from its file's answers already, so history.csv "
                      "needs only the tickets answered since" if any(
                          line.startswith("history.csv:") and "(history.jsonl:" in line for line in repeated) else ""),
                   err=True)
    if otherwise := project.answered_otherwise:
        click.echo(f"note: {plural(len(otherwise), 'history question')} with more than one answer (spacing and case "
                   f"aside), each kept: {first_few(otherwise, 5, '; ')}; a customer who asks one gets either: keep the "
                   "one customers should get, and delete the others", err=True)
    if long_examples := project.long_examples:
        click.echo(f"note: {plural(len(long_examples), 'example')} in nlu.yml longer than a customer's message may be "
                   f"({project.config.server.max_message_chars:,}: server.max_message_chars), which no customer sends "
                   "and of which the classifier reads the start alone: "
                   f"{first_few([f'nlu.yml:{line} ({example.intent})' for line, example in long_examples])}; keep the "
                   "customer's question alone", err=True)
    if needing := project.needing_values():
        click.echo(f"note: {plural(len(needing), 'intent')} whose every template variant needs a value the customer may "
                   f"not have given: {'; '.join(f'{i} ' + ', '.join(f'{{{v}}}' for v in vs) for i, vs in needing.items())}; "
                   "a customer who has not given it gets the fallback, as if not understood: add a variant without it",
                   err=True)
    if unspoken := project.unspoken():
        other = "zh" if project.config.language == "en" else "en"
        click.echo(f"note: {plural(len(unspoken), 'response')} in responses.yml with a language: {other} variant, which "
                   f"this bot never shows, as it answers every customer in {project.config.language} (bot.yml's "
                   f"language): {first_few(unspoken)}; set language: multi in bot.yml to answer each customer in theirs, "
                   "or leave those variants out", err=True)
    if unlisted := project.unlisted_variables():
        used = "; ".join(f"{{{name}}} ({', '.join(responses)})" for name, responses in unlisted.items())
        click.echo(f"note: responses.yml uses {plural(len(unlisted), 'variable')} no entity of nlu.yml fills, taken as "
                   f"slots the custom actions set, as bot.yml's actions.slots does not list theirs: {used}; a variant "
                   "needing one they never set (a misspelt name too) is never shown: list the slots they set in "
                   "actions.slots, and the others are refused with their line", err=True)
    if custom_only := project.custom_only():
        click.echo(f"note: {plural(len(custom_only), 'response')} in responses.yml with only a custom payload for some "
                   "customers, which only the web chat passes on (and Slack one of Block Kit blocks): "
                   f"{first_few(custom_only)}; a Slack or WeCom customer gets the fallback instead, "
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
            click.echo(f"note: {plural(len(untitled), 'intent')} with no Chinese title in fallback.titles, so the "
                       f"fallback offers {'them' if len(untitled) > 1 else 'it'} to Chinese customers by name, in "
                       f"English (\"{intent_phrase(untitled[0]).capitalize()}\"): {first_few(untitled)}; set them in "
                       f"bot.yml, e.g. fallback.titles: {{{untitled[0]}: {title}}}", err=True)
    if config.language == "multi" and (shared := [i for i, t in titles.items()
                                                  if isinstance(t, str) and CJK.search(t)]):
        click.echo(f"note: fallback.titles gives {plural(len(shared), 'intent')} one title, in Chinese, which the "
                   f"fallback offers English customers too: {first_few(shared)}; "
                   f"give it as Chinese's alone, e.g. fallback.titles: {{{shared[0]}: {{zh: {titles[shared[0]]}}}}}",
                   err=True)
    if config.language != "en" and (unchinese := english_templates(project)):
        whose = "intents'" if len(unchinese) > 1 else "intent's"
        fix = ("write them in Chinese in responses.yml (or set language: multi, for a bot that answers each customer "
               "in English or Chinese)" if config.language == "zh" else
               "add a variant in Chinese with language: zh to each in responses.yml, as `bot init --language multi` "
               "writes them (docs/configuration.md)")
        click.echo(f"note: language is {config.language}, but {len(unchinese)} {whose} templates hold no Chinese, so "
                   f"Chinese customers get them as written: {first_few(unchinese)}; {fix}", err=True)
    if config.language == "multi" and (chinese := chinese_for_english(project)):
        whose = "intents'" if len(chinese) > 1 else "intent's"
        click.echo(f"note: language is multi, but {len(chinese)} {whose} templates answer English customers in Chinese, "
                   f"each text they may get holding Chinese: {first_few(chinese)}; give those variants language: zh, and "
                   "add one in English with language: en (docs/configuration.md)", err=True)
    for name, instead in RASA_FALLBACK_RESPONSES.items():
        if name in project.responses.named:  # kept for the actions that name it, and never said by the fallback
            click.echo(f"note: responses.yml's {name} is what Rasa's fallback says; deskbot's fallback says bot.yml's "
                       f"{instead} instead (docs/configuration.md), and {name} only where a custom action names it",
                       err=True)
    if unmeasured := unmeasured_intents(project):
        click.echo(f"note: {plural(len(unmeasured), 'intent')} with fewer than {MIN_HOLDING_OUT} examples in nlu.yml, "
                   f"none held out for the frozen evaluation set, so neither the accuracy `bot models` lists nor the "
                   f"gate of `bot retrain` measures {'them' if len(unmeasured) > 1 else 'it'} on its own: "
                   f"{first_few(unmeasured)}; add examples", err=True)
    if unequal := unequal_intents(project):
        (big, many), (small, few) = unequal
        click.echo(f"note: nlu.yml's intents are of very unequal sizes ({big}: {many} examples, {small}: {few}), and the "
                   f"model tends to answer the big ones for the small ones' messages; model.class_weights: sqrt (or "
                   "balanced) in bot.yml weighs them (docs/configuration.md)", err=True)
    if OOS not in project.intents:
        click.echo("note: nlu.yml has no oos intent, so an off-topic message (\"tell me a joke\", an emoji) goes to "
                   "the intent it is closest to when the model is sure enough; add examples the bot should decline as "
                   "an oos intent, with a template in responses.yml (the demo's is an example)", err=True)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def first_few(names: Sequence[str], most: int = 10, between: str = ", ") -> str:
    """The first ``most`` of ``names`` joined, with " …" after them where there are more: a note names a few, not
    every one of thousands."""
    return between.join(names[:most]) + (" …" if len(names) > most else "")


JSONL = click.Path(exists=True, dir_okay=False, path_type=Path)


def _say_if_none(project: Project) -> None:
    """Stop with a word where the bot has no store yet: nothing to read or change."""
    if not project.db_path.exists():
        fail(f"{project.db_path}: no conversations yet; they are recorded by `bot serve` and `bot chat`")


def open_store(project: Project, create: bool = False) -> Store:
    """The bot's store, to write to (a command that only reads it uses :func:`read_from_store`), made where there is none
    with ``create``; an older deskbot's store is not migrated under the server running on it."""
    from dialogues.store import Store, refuse_migrating_under_a_server, tag_logs_by

    if not create:
        _say_if_none(project)
    refuse_migrating_under_a_server(project.db_path, project.root)
    store = Store(project.db_path)
    tag_logs_by(project.db_path)  # a conversation named in this command's log as the server names it
    return store


_Read = TypeVar("_Read")


def read_from_store(project: Project, read: Callable[[Store], _Read]) -> _Read:
    """``read`` (figures, an export, what a purge would delete) of the bot's store opened for reading alone, so that a
    copy on a read-only disk or a backup's snapshot can be read; an older deskbot's as it is, where it has what
    ``read`` needs: deskbot upgraded, the older `bot serve` may still run on it, and a migration would leave it writing
    to a schema it does not know."""
    from dialogues.store import TooOld, read_as_it_is, tag_logs_by

    _say_if_none(project)
    tag_logs_by(project.db_path, create=False)  # read-only: the key beside a copy on a read-only disk is not made
    try:
        return read_as_it_is(project.db_path, read)
    except TooOld as exc:
        fail(f"{exc}: {to_migrate(project)}, then run this again")


def to_migrate(project: Project) -> str:
    """What migrates an older deskbot's store: this deskbot's ``bot serve``, after the older one is stopped where one
    runs on it (its lock in the store's servers folder says so); where none runs, stopping it is no step to take."""
    from dialogues.store import is_served

    stop = "stop its `bot serve` and " if is_served(project.db_path) else ""
    return f"{stop}start this deskbot's, `bot serve {shell(project.root)}`, which migrates it (keeping a copy as it was)"
