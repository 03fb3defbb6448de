"""``bot bench``: the benchmarks."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import click

from bot.cli.common import BOT_DIR, JSONL, cli, device_option, fail, first_few, load_project
from bot.project import did_you_mean, intent_label, intent_name
from retrieval.options import IndexType


# The benchmarks' figures for a script or a notebook rather than a person.
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


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
    from finetune.metrics import OOS

    valid = load_examples(valid_file, fail) if valid_file else None
    train = [example for path in train_files for example in load_examples(path, fail)]
    test, oos_types = load_test_file(test_file, fail)
    counts = Counter(example.intent for example in train)
    tested = Counter(example.intent for example in test)
    if unknown := sorted(set(tested) - set(counts) - {OOS}):  # a typo would be scored as out of scope, unsaid
        named = [f"{name} ({tested[name]}{did_you_mean(name, set(counts) - {OOS})})" for name in unknown]
        click.echo(f"note: {len(unknown)} test intent(s) no training line has, scored as out of scope: "
                   f"{first_few(named)}", err=True)
    if shots is not None and (fewer := sorted(f"{intent} ({n})" for intent, n in counts.items() if n < shots)):
        click.echo(f"note: {len(fewer)} intent(s) have fewer than {shots} lines, and use all they have: "
                   f"{first_few(fewer)}", err=True)
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
@click.option("--max-web-turns", type=click.IntRange(min=1), default=None, help="Override server.max_web_turns.")
@device_option
@json_option
def bench_serve(directory: Path, clients: list[int], duration: float, warmup: float, transport: str,
                quantize: str | None, trace: bool | None, threads: int | None, max_batch: int | None,
                pass_tokens: int | None, workers: int | None, think_ms: float, message_ids: bool,
                rates: list[int] | None, max_queue: int | None, max_web_turns: int | None, device: str | None,
                as_json: bool) -> None:
    """Throughput and latency of `bot serve` and of the raw encoder.

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
                              message_ids=message_ids, rates=rates, max_web_turns=max_web_turns)
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
        figures = nlu_benchmark(project, read_jsonl(test_file, fail, intent_label, exported=True)[:limit], device)
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
