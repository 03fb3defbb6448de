"""``bot export``, ``bot backup``, ``bot restore``, ``bot purge``, ``bot redact`` and ``bot stats``: the conversation
store."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from bot.cli.common import (BOT_DIR, cli, fail, load_project, open_store, plural, read_from_store, shell,
                             unwound_on_sigterm)
from bot.project import BOT_FILES, Project

if TYPE_CHECKING:
    from dialogues.store import Purged, Redacted, Store


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
    stored = read_from_store(project, lambda store: learned_data(store, unix_time(since) if since else 0.0,
                                                             project.config.privacy.redact))
    data = exported(project, stored)
    try:  # opened even when there is nothing to write: an old export must not pass for this one
        with unwound_on_sigterm(), _written(output) as out:  # the temporary file is removed
            lines = write_jsonl(data, out)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"{plural(lines, 'line')} ({fmt})", err=True)
    if orphans := orphaned_labels(stored, project.intents):  # an intent renamed since: its labels are not written
        click.echo(f"left out: {orphaned_advice(orphans, directory)}", err=True)
    if not _say_if_future(since) and not lines:
        click.echo(f"nothing {'since then ' if since else ''}to learn from: it comes of the review queue's labels "
                   f"(`bot review {shell(directory)}`, or the agents' console) and of agents' replies in handed-off "
                   "conversations", err=True)


def _written(output: str) -> contextlib.AbstractContextManager[TextIO]:
    """Where ``bot export -o`` writes: a file is replaced whole once written (the previous export stays as it
    was if this one fails or is killed); stdout, a pipe or a device (``/dev/null``) is written as it comes."""
    from finetune.durable import replaced

    path = Path(output)
    if output == "-" or (path.exists() and not path.is_file()):
        return click.open_file(output, "w", encoding="utf-8")
    return replaced(path.resolve(), private=True)  # through a link: the file it names, and the link stays


def _say_if_future(since: datetime | None) -> bool:
    """A ``--since`` date in the future (a mistyped year) finds nothing, which would pass for a quiet week: whether
    it was said."""
    from dialogues.store import unix_time

    if since and unix_time(since) > time.time():
        click.echo(f"--since {since.isoformat(sep=' ', timespec='seconds')} is in the future: nothing is that new", err=True)
        return True
    return False


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.argument("dest_given", metavar="DEST")
@click.option("--keep", metavar="KEEP", type=click.IntRange(1), default=None,
              help="With a folder DEST: once the copy is made, delete the folder's older dated copies but the KEEP "
                   "newest, this one among them, so that a nightly backup does not fill the disk.")
def backup(directory: Path, dest_given: str, keep: int | None) -> None:
    """Copy the conversation store, whole, while the bot serves.

    DEST is a file, or a folder to put a dated copy in (one that does not exist yet is written with a
    trailing /). To restore one: stop the bot, then `bot restore`. The ledger of purged conversations and its key
    are copied beside it (DEST.purged, DEST.purged.key), so that a restore on another host purges them again;
    `bot purge --forget-ledger-before` forgets its older lines there too.

    Examples:

    \b
      bot backup mybot /backups/
      bot backup mybot /backups/ --keep 14
      bot backup mybot mybot-before-upgrade.db
    """
    import sqlite3

    from dialogues.store import MIGRATIONS, Store, StoreError, copy_ledger, ledger_key, note_ledger_copy
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
        ledger = copy_ledger(project.db_path, dest)  # after the copy: it names every purge the copy missed
        if ledger:  # for --forget-ledger-before to forget its lines there too
            note_ledger_copy(project.db_path, dest)
    except (OSError, sqlite3.Error, StoreError) as exc:
        fail(f"cannot back up to {dest}: {getattr(exc, 'strerror', None) or exc}")
    click.echo(f"{dest}: {dest.stat().st_size:,} bytes")
    if ledger:
        click.echo(f"note: {ledger_key(dest).name}, beside it, is the key of the ledger of purged conversations: with "
                   "it, anyone who guesses a customer's id can tell that they asked to be erased. Keep it where you "
                   "keep the copy, for the store's owner alone, and never with a copy you hand to someone else",
                   err=True)
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
    """Put a `bot backup` COPY back as the store, the bot stopped.

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
    _purge_again(project, copy)


def _purge_again(project: Project, copy: Path) -> None:
    """Purge the store put back of the conversations purged since its copy was made (:meth:`Store.purge_again`): a
    customer's erasure must not be undone by a restore. A copy of an older deskbot's store is left as it is, for that
    deskbot to serve, saying how to purge it. A store with no ledger (on a new host) takes the one `bot backup` copied
    beside ``copy``: the copy holds none of the conversations it names, but an older copy put back since may."""
    from dialogues.store import MIGRATIONS, Store, copy_ledger, purged_ledger

    own = purged_ledger(project.db_path)
    if not own.exists() and copy_ledger(copy, project.db_path):
        click.echo(f"{own}: the ledger of purged conversations (and its key) copied from beside {copy}", err=True)
    if not own.exists():
        return
    reading = Store(project.db_path, read_only=True, newer_too=True)
    try:
        schema = reading.schema
    finally:
        reading.close()
    if schema != len(MIGRATIONS):
        click.echo(f"note: {copy} is a store of another deskbot's (schema {schema}; this one's is {len(MIGRATIONS)}), "
                   "left as it is: it may hold conversations purged since it was made; `bot purge "
                   f"{project.root} --again` with this deskbot purges them again, migrating it", err=True)
        return
    _say_purged_again(project)


def _forget_ledger(project: Project, before: datetime) -> None:
    """Forget the ledger's lines of the purges made before ``before`` (:func:`~dialogues.store.forget_ledger_before`),
    refused where a copy of the store deskbot keeps beside it (an upgrade's, one `bot restore` put aside) or one `bot
    backup` made is older: put back, it would keep the conversations those lines name. The same lines go from the
    ledgers `bot backup` copied beside its copies, where they are still (:func:`~dialogues.store.listed_ledger_copies`):
    a purge forgotten beside the store stayed beside every backup for as long as it was kept. The copies kept
    elsewhere are the shop's to know."""
    from dialogues.store import forget_ledger_before, listed_ledger_copies, purged_ledger, unix_time

    at, said = unix_time(before), before.isoformat(sep=" ", timespec="seconds")
    if at > time.time():
        fail(f"--forget-ledger-before {said} is in the future: it would forget purges newer than every copy")
    older = sorted(p.name for pattern in (".schema*.bak", ".replaced-*")
                   for p in project.db_path.parent.glob(f"{project.db_path.name}{pattern}")
                   if not p.name.endswith(("-wal", "-shm")) and p.stat().st_mtime < at)
    if older:
        fail(f"{', '.join(older)}, beside the store, {'is' if len(older) == 1 else 'are'} older than {said}: put back, "
             "a copy holds the conversations purged after it was made; delete it first, or give its date")
    backups = [str(copy) for copy in listed_ledger_copies(project.db_path) if _made_before(copy, at)]
    if backups:
        fail(f"{', '.join(backups)}, made by bot backup, {'is' if len(backups) == 1 else 'are'} older than {said}: put "
             "back, a copy holds the conversations purged after it was made; delete it first (bot backup --keep "
             "prunes a folder's dated copies), or give its date")
    forgot = forget_ledger_before(project.db_path, at)
    click.echo(f"Forgot {plural(forgot, 'line')} of {purged_ledger(project.db_path)}, the purges made before {said}: a "
               "copy of the store made before then, put back, keeps the conversations they named", err=True)
    for copy in listed_ledger_copies(project.db_path):
        try:
            forgot = forget_ledger_before(copy, at)
        except OSError as exc:  # a backup disk not mounted, or read-only: the rest are still trimmed
            click.echo(f"cannot forget them in {purged_ledger(copy)}: {exc.strerror or exc}; run this again once it "
                       "can be written, or delete that backup", err=True)
            continue
        click.echo(f"Forgot {plural(forgot, 'line')} of {purged_ledger(copy)}, beside a backup", err=True)


def _made_before(copy: Path, at: float) -> bool:
    """Whether the store copy ``copy`` was last written before ``at`` (unix time); not if it cannot be read."""
    try:
        return copy.stat().st_mtime < at
    except OSError:  # deleted since, or on a disk not mounted
        return False


def _say_purged_again(project: Project) -> None:
    """:meth:`Store.purge_again` on the bot's store, said."""
    store = open_store(project)
    try:
        purged = store.purge_again()
    finally:
        store.close()
    again = [cid for cid, deleted in purged.deleted.items() if deleted["conversations"] or deleted["pending"]]
    click.echo(f"Purged again {plural(len(again), 'conversation')} purged before, back in {project.db_path}"
               if again else f"No conversation purged before is back in {project.db_path}", err=True)
    if not purged.wal_cleared:
        fail(f"another process kept reading {project.db_path}, so dialogues.db-wal still holds a copy of what was "
             "deleted; run `bot purge --again` once it is done")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--user", default=None, metavar="ID", callback=lambda _c, _p, v: _customer_id(v),
              help="The customer, by the id their channel gives (a Slack or WeCom user, the widget's user).")
@click.option("--conversation", "conversation_id", default=None, metavar="ID",
              help="One conversation, by its id: an anonymous web visitor's, whom no user id names.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="File to write (default stdout), made for its owner alone.")
def access(directory: Path, user: str | None, conversation_id: str | None, output: str) -> None:
    """Write all the store keeps of one customer, as JSON.

    For a customer's request to see it. Each conversation `bot purge --user` (or `--conversation`) would delete, as
    stored: its messages (and the unredacted copy privacy.keep_raw keeps), the replies, feedback, handoffs, agents'
    notes and slots.

    Examples:

    \b
      bot access mybot --user U123 -o U123.json
      bot access mybot --conversation 3f2a... -o visitor.json
    """
    if (user is None) == (conversation_id is None):
        raise click.UsageError("name the customer: --user ID or --conversation ID, one of them")
    project = load_project(directory)
    if output != "-" and _is_the_bots_own(project, Path(output)):
        fail(f"{output}: one of the bot's own files, which this would replace; write it elsewhere")
    kept = read_from_store(project, lambda store: store.kept_of(
        [conversation_id] if conversation_id is not None else store.conversation_ids(user=user)))
    try:
        with unwound_on_sigterm(), _written(output) as out:  # the temporary file is removed
            out.write(json.dumps({"user": user, "conversations": kept}, ensure_ascii=False, indent=1) + "\n")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    whose = f"of {user!r}" if user is not None else f"named {conversation_id!r}"
    click.echo(f"{plural(len(kept), 'conversation')} {whose}", err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--dry-run", is_flag=True, help="Count what it would redact, and change nothing.")
def redact(directory: Path, dry_run: bool) -> None:
    """Redact anew the personal data the store keeps.

    A message is redacted as it is stored: one stored before `privacy.redact` was on, or before this deskbot's
    redaction found what it finds now, is kept as it came. This redacts the customers' messages again (the
    unredacted copy too, unless `privacy.keep_raw` keeps it), those of Slack and WeCom still waiting for their
    answer, their feedback comments and the search index, and drops the slots holding personal data of the
    conversations with nothing written in `privacy.slot_hours`. The agents' replies and notes stay as written: a
    customer's erasure is `bot purge`'s. A batch at a time: the bot's writes wait for one batch, not for the whole
    store.

    Examples:

    \b
      bot redact mybot --dry-run
      bot redact mybot
    """
    project = load_project(directory)
    privacy = project.config.privacy
    if not privacy.redact:
        fail("privacy.redact is false in bot.yml: messages are kept as they came, by the shop's choice; set it to "
             "true to redact them")
    # privacy.slot_hours 0 or null: the shop keeps the slots with their conversation, and none is idle long enough
    idle_before = time.time() - privacy.slot_hours * 3600 if privacy.slot_hours else -math.inf

    def redacted(store: Store) -> Redacted:
        return store.redact_stored(privacy.keep_raw, idle_before, dry_run=dry_run)

    if dry_run:
        found = read_from_store(project, redacted)
    else:
        store = open_store(project)
        try:
            found = redacted(store)
        finally:
            store.close()
    did, dropped = ("Would redact", "drop") if dry_run else ("Redacted", "dropped")
    slots = (f"and {dropped} the slots holding personal data of {plural(found.slots, 'conversation')} idle for "
             f"{privacy.slot_hours:g} hours" if privacy.slot_hours
             else "the slots kept as set (privacy.slot_hours: 0 or null)")
    waiting = f" (and {plural(found.waiting, 'message')} waiting for an answer)" if found.waiting else ""
    click.echo(f"{did} {plural(found.turns, 'message')} and {plural(found.comments, 'feedback comment')}{waiting}, "
               f"{slots}, in {project.db_path}")
    if not found.wal_cleared:
        fail(f"another process kept reading {project.db_path}, so dialogues.db-wal still holds a copy of what was "
             "redacted; run this command again once it is done")


def _say_kept_elsewhere(project: Project, purged: Purged, began: dict[str, float], said: Callable[[str], str]) -> None:
    """Name each conversation `bot purge` deleted as ``said`` names it, and what may still hold them
    (:func:`bot.retrain.kept_elsewhere`)."""
    from bot.retrain import kept_elsewhere

    for cid, deleted in purged.deleted.items():
        if deleted["conversations"]:
            click.echo(f"Deleted {said(cid)}: " + ", ".join(f"{n} {table}" for table, n in deleted.items() if n))
    for line in kept_elsewhere(project, purged, began):
        click.echo(f"  {line}", err=True)


def _prune_backups(made: Path, keep: int) -> list[Path]:
    """Delete the dated copies in the folder of ``made`` (the copy just made, always kept) but the ``keep`` newest,
    and return them: run only once a copy is made, so that a night whose backup fails deletes none of the
    earlier ones. Files not named as `bot backup` names its dated copies are left alone."""
    dated = sorted((p for p in made.parent.iterdir() if DATED_BACKUP.fullmatch(p.name) and p != made), reverse=True)
    from dialogues.store import ledger_key, purged_ledger

    deleted = dated[keep - 1:]  # by name, which is by date
    for path in deleted:
        try:
            path.unlink()
            for beside in (purged_ledger(path), ledger_key(path)):  # the ledger copied with it
                beside.unlink(missing_ok=True)
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
@click.option("--again", is_flag=True,
              help="Delete again the conversations purged before that the store holds again: a copy made before their "
                   "purge was put back (bot restore does it for a copy of this deskbot's store).")
@click.option("--forget-ledger-before", "forget_before", type=SINCE, default=None, metavar="DATE",
              help="Forget the ledger's lines of the purges made before DATE, alone, beside the store and beside the "
                   "copies bot backup made: give the date of the oldest copy of the store you still keep (bot "
                   "backup's, a snapshot), since a copy made before DATE put back would keep the conversations those "
                   "lines name.")
def purge(directory: Path, conversation_ids: tuple[str, ...], before: datetime | None, user: str | None,
          dry_run: bool, again: bool, forget_before: datetime | None) -> None:
    """Delete conversations completely, and all that came of them.

    Their messages, predictions, feedback, labels and agent answers.

    Examples:

    \b
      bot purge mybot --before 2025-12-01
      bot purge mybot --user U123 --dry-run
    """
    from dialogues.store import log_tag, unix_time

    if forget_before:
        if conversation_ids or before or user is not None or dry_run or again:
            raise click.UsageError("--forget-ledger-before forgets the ledger's older lines, alone")
        _forget_ledger(load_project(directory), forget_before)
        return
    if again:
        if conversation_ids or before or user is not None or dry_run:
            raise click.UsageError("--again purges the conversations purged before, alone")
        _say_purged_again(load_project(directory))
        return
    if not (conversation_ids or before or user is not None):
        raise click.UsageError("name the conversations: --conversation ID, --before DATE or --user ID")
    if before and unix_time(before) > time.time():  # a mistyped year would delete every conversation, live ones too
        fail(f"--before {before.isoformat(sep=' ', timespec='seconds')} is in the future: it would delete every "
             "conversation, those going on too")
    project = load_project(directory)

    def named(store: Store) -> tuple[list[str], list[dict[str, Any] | None], dict[str, dict[str, Any]]]:
        """The conversations named, each id once, their rows (None: no such conversation), and those of them of
        which a customer's message alone is kept, unanswered (:meth:`Store.received_only`)."""
        chosen = store.conversation_ids(before=unix_time(before) if before else None, user=user) \
            if before or user is not None else []
        if (before or user is not None) and not chosen:
            chose = ([f"of {user!r}"] if user is not None else []) + \
                ([f"with nothing since {before.isoformat(sep=' ', timespec='seconds')}"] if before else [])
            click.echo(f"No conversation {' '.join(chose)}", err=True)
        ids = list(dict.fromkeys([*conversation_ids, *chosen]))  # a repeated id once
        return ids, store.conversations(ids), store.received_only(ids)

    def said(cid: str) -> str:
        """How the output names conversation ``cid``: by its id where the command was given it or its customer
        (--conversation, --user), else (a retention period's, chosen by --before, run daily from cron, whose mail is
        kept) by the tag the server's log names it by (:func:`log_tag`): the ids of the conversations a retention
        period erased, a web visitor's key, a WeCom employee's userid, outlived the erasure in the mail."""
        return cid if user is not None or cid in conversation_ids else log_tag(cid)

    if dry_run:
        from retrieval.text import printable

        ids, rows, received = read_from_store(project, named)
        for cid, row in zip(ids, rows):
            if row := row or received.get(cid):  # the user as the client sent it: a line break made a row of its own
                click.echo(f"{printable(cid)}\t{row['channel']}\t{printable(row['user'] or '')}")
        return
    store = open_store(project)
    try:
        chosen_at = store.high_water()  # before they are chosen: one written to meanwhile is left, not deleted mid-turn
        ids, rows, _ = named(store)
        began = {cid: row["created"] for cid, row in zip(ids, rows) if row}
        purged = store.purge(*ids, before=unix_time(before) if before else None, named=conversation_ids,
                             chosen_at=chosen_at)
    finally:
        store.close()
    for cid in purged.skipped:
        click.echo(f"Skipped {said(cid)}: its customer came back while it was being purged (a message since it was chosen "
                   "or since --before, or a server answering them now); left as it is", err=True)
    # a conversation named, or a customer's (--user without --before: an erasure), left is a failure: run it again
    asked = [cid for cid in purged.skipped if cid in conversation_ids or (user is not None and before is None)]
    _say_kept_elsewhere(project, purged, began, said)
    if not purged.wal_cleared:
        fail(f"another process kept reading {project.db_path}, so dialogues.db-wal still holds a copy of "
             "what was deleted; run this command again once it is done: it clears the copy, though it finds nothing "
             "more to delete")
    missing = [cid for cid, deleted in purged.deleted.items() if not deleted["conversations"] and not deleted["pending"]]
    failures = ([f"left {', '.join(asked)}, written to while it was being purged: run this command again once "
                 "its customer's message is answered"] if asked else []) + \
        ([f"no conversation {', '.join(missing)} in {project.db_path}"] if missing else [])
    if failures:
        fail("; ".join(failures))


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
    from dialogues.stats import (
        ANSWERED,
        CHANNELS,
        compared_with_previous,
        conversation_stats,
        figures_as_csv,
        language_kept,
    )
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
    figures = read_from_store(project, lambda store: read(store, start, until=end, channel=channel, language=kept))
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
