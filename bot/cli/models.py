"""``bot train``, ``bot eval``, ``bot retrain``, ``bot models`` and ``bot rollback``: the model's versions."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.common import (
    BOT_DIR,
    cli,
    device_option,
    fail,
    first_few,
    in_bot_terms,
    load_bot,
    load_project,
    plural,
    say_gaps,
    shell,
    to_migrate,
    unwound_on_sigterm,
)
from bot.project import Project, did_you_mean, intent_label, other_intents, too_long

if TYPE_CHECKING:
    from dialogues.store import WrittenByNewer
    from finetune.registry import Registry, Version


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
        click.echo(f"note: {plural(len(kept.examples), 'reviewed label')} and {plural(len(kept.answers), 'agent answer')} "
                   f"in the store are not learnt by `bot train`, which learns nlu.yml and the history files alone: "
                   f"`bot retrain {shell(project.root)}` learns them too, and serves its model only if it is not worse",
                   err=True)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@device_option
@click.option("--no-promote", is_flag=True, help="Keep serving the current model; only write the new version.")
def train(directory: Path, device: str | None, no_promote: bool) -> None:
    """Fine-tune the classifier and build the answer index.

    Writes the next version under DIRECTORY/models and, unless --no-promote, serves it from then on.
    The classifier learns nlu.yml's examples; the index holds the answers of history.jsonl ({"question", "answer",
    "intent"?} lines) and history.csv (a helpdesk's export: question, answer and, optionally, intent columns), and
    responses.yml's plain templates. `bot check DIRECTORY` reads them first, with every mistake's line.

    Examples:

    \b
      bot train mybot
      bot train mybot --device cuda --no-promote
    """
    from bot.evalset import MIN_HOLDING_OUT
    from bot.training import MIN_CALIBRATION, train_project

    project = load_bot(directory)
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
    from bot.training import EVALUATION_FILE, held_out_texts
    from finetune.evaluation import evaluate_model
    from finetune.labelled import read_jsonl
    from finetune.metrics import OOS
    from finetune.registry import Registry
    from retrieval.text import same_text

    if test_file is None or not test_file.exists():
        fail(no_test_file(directory, test_file))
    project = load_project(directory)
    # An intent the bot has not, "handoff" too, is out of scope; a text the server would refuse is no test of it.
    check = sendable(project.config.server.max_message_chars)
    numbers: list[int] = []  # each row's line in the test file, to name where an unknown intent is
    rows = read_csv(test_file, fail, intent_label, check, numbers) if test_file.suffix.lower() == ".csv" else \
        read_jsonl(test_file, fail, intent_label, check, as_csv=", or name it .csv to be read as CSV", lines=numbers,
                   exported=True)  # its HTML read as the CSV's is, and as bot init read the export it came from
    results = results or directory / "results"
    try:  # before the model runs over the whole file, not after
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot write the results to {results}: {exc.strerror or exc}")
    device = measuring_device(project, device)  # an int8 bot's figures are its CPU's, as the gate's are
    nlu = load_serving_model(project, device, workers=1) if version is None else \
        load_version(project, Registry(project.models_dir).path(version), device, workers=1)
    threshold_from = "bot.yml" if threshold is None else "--threshold"  # said beside it: each gives another cut
    if threshold is not None:
        project.config.thresholds.intent = threshold  # the reply policy answers at this cut too
    threshold = project.config.thresholds.intent
    if threshold == "auto":  # calibrated by training, its default where it held out too few examples for that, or
        # the version's own, fixed in bot.yml when it was trained
        calibrated = Registry(project.models_dir).version(nlu.version).metrics.get("threshold_calibrated")
        threshold, threshold_from = nlu.intent_threshold, {True: "calibrated", False: "default"}.get(calibrated, "version")
    lines = Counter(r["intent"] for r in rows)
    unknown = sorted(set(lines) - {*nlu.labels, OOS})
    if unknown:  # a typo, or a name nlu.yml changed since the file was written, would silently score as off-topic
        renamed = ("; correct a typo, or an intent renamed in nlu.yml since, in the test file: its lines count as "
                   "right only where the bot declines them" if set(unknown) - set(project.intents) else "")
        where = {name: [str(n) for row, n in zip(rows, numbers) if row["intent"] == name] for name in unknown}
        # each with the intent of the model it likely meant: "track_ordr (line 3; did you mean 'track_order'?)"
        named = first_few([(f"{name} (line {where[name][0]}" if lines[name] == 1 else
                            f"{name} ({plural(lines[name], 'line')}: {first_few(where[name], 3)}")
                           + f"{did_you_mean(name, set(nlu.labels) - {OOS})})" for name in unknown])
        click.echo(f"{len(unknown)} test intent{'s' * (len(unknown) > 1)} the model does not know, scored as out of "
                   f"scope: {named}{renamed}", err=True)
    rows = [{**row, "line": n} for row, n in zip(rows, numbers)]  # the reports' wrong answers name their line
    rows, texts, clicks = model_questions(rows, nlu.button_intents)
    if clicks:  # the engine answers them without the model
        click.echo(f"{len(clicks)} test line{'s are' if len(clicks) > 1 else ' is'} a button's payload ({clicks[0]}), "
                   "which selects its intent without the model: left out", err=True)
        if not rows:
            fail(f"{test_file}: no test line is a question for the model")
    seen_in_training = _seen_in_training(project, nlu.version)
    if seen := sum(map(seen_in_training, texts)):  # a test of what it learnt
        click.echo(f"{seen} of {plural(len(texts), 'test line')} {'are examples' if seen > 1 else 'is an example'} "
                   "the model was trained on (nlu.yml and reviewed labels): the figures overstate how it does on new "
                   "questions", err=True)
    held = held_out_texts(project)
    if tuned := sum(same_text(text) in held for text in texts):  # what the threshold and n-gram share were chosen on
        click.echo(f"{tuned} of {plural(len(texts), 'test line')} {'are' if tuned > 1 else 'is'} in the frozen "
                   f"evaluation set ({project.models_dir / EVALUATION_FILE}), on which training chose the model's "
                   "n-gram share and, with thresholds.intent: auto, its threshold: the figures flatter it", err=True)
    if version is not None and (serving := Registry(project.models_dir).current()) != version:
        # model_version alone read as the served model's figures, and a refused candidate's as the bot's own
        now = f"{serving} does" if serving else "none does"
        click.echo(f"note: {version} does not serve ({now}): these are its figures, not those of the bot as it answers "
                   f"now; `bot models {shell(directory)}` compares the versions", err=True)
    analyses = as_measured(project, nlu, texts)
    replies = evaluate_replies(project, rows, texts, analyses, nlu.labels, results)
    # what the notes above say of the test file, for a script reading --json, which keeps stdout for the figures
    test_notes = {"unknown_intents": {name: lines[name] for name in unknown},
                  "button_payload_lines_left_out": len(clicks), "trained_on": seen, "in_evaluation_set": tuned}
    # in intent_report.json too: the results folder kept holds what was printed
    figures = evaluate_model(nlu.labels, nlu.version, rows, [a.prediction for a in analyses], threshold, results,
                             threshold_from, {"replies": replies, "test_file": test_notes})
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    else:
        for key, value in figures.items():
            shown = (json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else
                     f"n/a ({not_measured(key, figures)})" if value is None else value)
            click.echo(f"{key:>22}: {shown}")


def not_measured(key: str, figures: dict[str, Any]) -> str:
    """Why `bot eval` has no figure for ``key``, said in its place: Python's None, printed, read as a bug, and
    null is for a script reading --json."""
    if key == "oos_precision" and figures["n_oos"]:
        return "the bot declined no test line"
    if key in ("oos_recall", "oos_precision", "auroc") and not figures["n_oos"]:
        return "no test line is out of scope: add some of intent oos"
    return "every test line is out of scope"  # in_scope_accuracy, and auroc, which ranks in-scope lines against them


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
             f"{to_migrate(project)}, then run `bot retrain {shell(project.root)}`")
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
    except SystemExit as exc:  # a cron job's `timeout`, a deploy, a closed terminal: its log said nothing of what serves now
        if exc.code in (128 + signal.SIGTERM, 128 + signal.SIGHUP):
            # Another version than before, with the registry's lock held: this run's candidate, promoted as the stop
            # came, which was said to be removed.
            now = registry.readable_current()
            what = ("as before, and the candidate it was training is removed" if now == before else
                    "now: the candidate it promoted just before the stop")
            click.echo(f"Stopped by {signal.Signals(int(exc.code) - 128).name}: {now or 'no version'} serves {what}.",
                       err=True)
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
        fail(f"no model versions in {directory}; run `bot train {shell(directory)}`")
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
                                   **({"remeasured": now[v.name]} if now is not None else {})}, ensure_ascii=False))
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
@click.argument("version")
def rollback(directory: Path, version: str) -> None:
    """Serve an earlier model version again.

    VERSION is checked to load first. Where its answer index is out of date (it holds agent answers the store
    has lost since, a purged conversation's, or history.jsonl's answers or bot.yml's retrieval settings changed),
    a new version serves instead: VERSION's classifier with the index refreshed as `bot retrain` refreshes one.
    Naming the version serving refreshes its index so.

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

    with unwound_on_sigterm():  # a rollback stopped before it served is recorded as failed
        previous = registry.rollback(version, check=check,
                                     derive=lambda name: with_index_refreshed(project, registry, name))
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
