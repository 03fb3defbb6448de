"""``bot review`` and ``bot relabel``: people's labels for the next model."""

from __future__ import annotations

import os
from pathlib import Path

import click

from bot.cli.common import BOT_DIR, cli, device_option, fail, load_project, open_store, plural, read_from_store, shell
from bot.project import MAX_REVIEWER_CHARS, Project, agent_name


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
    store = open_store(project)
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
    click.echo(f"Labelled {plural(done['items'], 'item')} ({plural(done['turns'], 'message')}), skipped {done['skipped']}. "
               f"{max(0, len(items) - done['items'])} left{more}.{learn}")


def _list_labels(project: Project, intent: str | None, limit: int) -> None:
    """`bot review --labelled`: the labels given, newest first, each by the turn `--correct` names."""
    from bot.review import given_labels, show_given

    given, older = read_from_store(project, lambda store: given_labels(store, intent, limit))
    if not given:
        click.echo(f"No message is labelled{f' {intent}' if intent else ''}.")
        return
    for label in given:
        show_given(label)
    more = f", the newest (older ones too: --limit {2 * limit} lists more)" if older else ""
    click.echo(f"{plural(len(given), 'label')}{more}. `bot review {shell(project.root)} --correct TURN INTENT` "
               "changes one (TURN is the number after #).")


def _check_label(intent: str, project: Project) -> None:
    """Stop the command where ``intent`` is neither an intent of nlu.yml nor oos, naming those it may have meant."""
    from dialogues.review import check_label

    try:
        check_label(intent, project.intents)
    except ValueError as exc:
        fail(str(exc))


def _correct_label(project: Project, turn_id: int, intent: str, reviewer: str | None) -> None:
    """`bot review --correct`: the label of ``turn_id``, and of the turns labelled with it, changed to ``intent``."""
    _check_label(intent, project)
    store = open_store(project)
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
    click.echo(f"Corrected {plural(len(turns), 'message')} from {label['intent']} to {intent}. "
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
    from dialogues.review import OOS
    from finetune.registry import Registry

    project = load_project(directory)
    _check_label(new, project)
    if old == new:
        fail(f"{old} is {new} already")
    if old == OOS:
        fail(f"{OOS} labels every message no intent of the bot took, whatever it asked: they have no one new name, and "
             f"{new} would learn them all. A new intent learns from the examples nlu.yml gives it")
    if old in project.intents:
        fail(f"{old} is still an intent of nlu.yml: rename it there first (or, to merge it into {new}, move its "
             "examples there), else its examples go on teaching it and the bot answers with it")
    learnt = any(old in version.meta.get("labels", ()) for version in Registry(project.models_dir).versions())
    store = open_store(project, create=learnt)  # a rename to keep, conversations or none
    try:
        turns = store.relabel(old, new, reviewer, learnt)
        named = {row["intent"] for row in store.labels()}
        answered = learnt or store.predicted(old)
    finally:
        store.close()
    serving = (f" A model trained before answers {old} as {new}, in a running `bot serve` from its next "
               "POST /admin/reload, or once nlu.yml is saved again (which it refused while the model answered "
               f"{old}).")
    if not turns and answered:
        click.echo(f"No message is labelled {old}; `bot stats` counts the bot's answers under it as {new}'s, and "
                   f"`bot review` offers them as {new}.{serving}")
        return
    if not turns:
        names = ", ".join(sorted(named - {*project.intents, OOS})) or "none"
        fail(f"no message is labelled {old} nor answered under it, nor did a model learn it; labels naming intents "
             f"nlu.yml lacks: {names}")
    click.echo(f"Relabelled {plural(len(turns), 'message')} from {old} to {new}. "
               f"Run `bot retrain {shell(directory)}` to learn them.{serving}")
