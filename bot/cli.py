"""The ``bot`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import click

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # deskbot never reaches for a model hub on its own
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BOT_DIR = click.Path(file_okay=False, path_type=Path)


def fail(message: str) -> None:
    raise click.ClickException(message)


def project_or_fail(root: Path):  # type: ignore[no-untyped-def]
    from bot.project import ProjectError, load_project

    try:
        return load_project(root)
    except ProjectError as exc:
        fail(str(exc))


@click.group()
@click.version_option(package_name="deskbot")
def cli() -> None:
    """deskbot: a self-hosted customer-service bot that learns from your support history."""


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--demo", is_flag=True, help="Copy the demo shop bot instead of the minimal starter.")
@click.option("--force", is_flag=True, help="Write into a folder that already has a bot.yml.")
def init(directory: Path, demo: bool, force: bool) -> None:
    """Create a bot folder in DIRECTORY."""
    if (directory / "bot.yml").exists() and not force:
        fail(f"{directory} already holds a bot (bot.yml); use --force to overwrite it")
    source = resources.files("bot") / ("demo" if demo else "starter")
    with resources.as_file(source) as src:
        shutil.copytree(src, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "models", "*.db*"))
    click.echo(f"Created {'the demo bot' if demo else 'a starter bot'} in {directory}. Next: bot train {directory}")


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--no-promote", is_flag=True, help="Keep serving the current model; only write the new version.")
def train(directory: Path, device: str | None, no_promote: bool) -> None:
    """Fine-tune the classifier and build the answer index for the bot in DIRECTORY."""
    from bot.training import train_project

    project = project_or_fail(directory)
    result = train_project(project, device=device, promote=not no_promote)
    click.echo(json.dumps({"version": result.version, "promoted": result.promoted, **result.metrics}, indent=1))


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--host", default=None, help="Interface to listen on (default from bot.yml: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default from bot.yml: 8080).")
@click.option("--device", default=None)
def serve(directory: Path, host: str | None, port: int | None, device: str | None) -> None:
    """Serve the bot in DIRECTORY: web chat at /, the API and the channels."""
    from aiohttp import web

    from bot.server import create_app
    from finetune.classifier import ModelLoadError
    from finetune.registry import RegistryError

    project = project_or_fail(directory)
    try:
        app = create_app(directory, device=device)
    except (ModelLoadError, RegistryError) as exc:
        fail(str(exc))
    host = host or project.config.server.host
    port = port or project.config.server.port
    click.echo(f"deskbot serving {project.config.name} on http://{host}:{port}", err=True)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=10)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--device", default=None)
def chat(directory: Path, device: str | None) -> None:
    """Chat with the bot in DIRECTORY in the terminal (same pipeline as the server)."""
    from bot.channels.base import Turn
    from bot.engine import Bot
    from bot.server import load_serving_model
    from dialogues.store import Store

    project = project_or_fail(directory)

    async def run() -> None:
        bot = Bot(project, load_serving_model(project, device), Store(project.db_path))
        conversation = f"cli:{uuid.uuid4().hex[:8]}"
        click.echo("Type a message (Ctrl-D to quit).", err=True)
        try:
            while True:
                try:
                    text = await asyncio.to_thread(input, "you> ")
                except EOFError:
                    break
                if not text.strip():
                    continue
                reply = await bot.handle(Turn(conversation, text, "cli"))
                if reply.text:
                    click.echo(f"bot> {reply.text}")
                    for button in reply.buttons:
                        click.echo(f"     [{button['title']}] {button['payload']}")
                click.echo(f"     ({reply.source}, {reply.intent} {reply.confidence:.2f})", err=True)
        finally:
            await bot.close()

    asyncio.run(run())


@cli.command("eval")
@click.argument("directory", type=BOT_DIR)
@click.option("--test", "test_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL file of {\"text\", \"intent\"} lines; intent oos marks out-of-scope lines.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the report and plots (default DIRECTORY/results).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--device", default=None)
def eval_(directory: Path, test_file: Path, results: Path | None, as_json: bool, device: str | None) -> None:
    """Evaluate the serving model of DIRECTORY on a test file."""
    from finetune.evaluation import evaluate_model, read_jsonl
    from finetune.registry import Registry, RegistryError

    project = project_or_fail(directory)
    try:
        path = Registry(project.models_dir).current_path()
    except RegistryError as exc:
        fail(str(exc))
    rows = read_jsonl(test_file, fail)
    figures = evaluate_model(path, rows, project.config.thresholds.intent, results or directory / "results", device)
    if as_json:
        click.echo(json.dumps(figures))
    else:
        for key, value in figures.items():
            click.echo(f"{key:>22}: {value}")


@cli.command()
@click.argument("directory", type=BOT_DIR, required=False)
def info(directory: Path | None) -> None:
    """Show versions, devices and the serving model."""
    import faiss
    import torch

    from retrieval.gpu import describe_backend

    out: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                           "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
                           "faiss": faiss.__version__, "retrieval": describe_backend()}
    if directory is not None:
        from finetune.registry import Registry

        project = project_or_fail(directory)
        registry = Registry(project.models_dir)
        out.update(bot=project.config.name, language=project.config.language, base_model=project.config.base_model,
                   intents=len(project.intents), serving_version=registry.current())
    click.echo(json.dumps(out, indent=1))


@cli.group()
def model() -> None:
    """Manage pretrained base models."""


@model.command("prepare")
@click.argument("name", type=click.Choice(["multilingual"]))
@click.option("--force", is_flag=True, help="Rebuild even if the cached folder verifies.")
def model_prepare(name: str, force: bool) -> None:
    """Build the Hugging Face folder of a base model from its offline package."""
    from finetune.multilingual import prepare_multilingual

    click.echo(str(prepare_multilingual(force=force)))


@cli.group()
def bench() -> None:
    """Benchmarks that print their figures as JSON."""


@bench.command("retrieval")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="Synthetic vectors to index.")
@click.option("--dim", type=int, default=384, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The benchmark data folder (default ../shared/data).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_retrieval(n: int, dim: int, device: str, data_dir: Path | None, as_json: bool) -> None:
    """Index build time, query latency, recall and answer quality."""
    from retrieval.bench import run_benchmark

    kwargs = {"data_dir": data_dir} if data_dir else {}
    figures = run_benchmark(n=n, dim=dim, device=device, **kwargs)
    click.echo(json.dumps(figures) if as_json else json.dumps(figures, indent=1))


if __name__ == "__main__":
    cli()
