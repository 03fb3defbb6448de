"""The README and docs/ as a new user follows them: what they show deskbot saying is what it says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize(("file", "typed", "misspelt"), [
    ("responses.yml", "  opening_hours:", "  opening_hour:"),
    ("bot.yml", "thresholds:", "threshold:"),
])
def test_the_readmes_errors_for_a_misspelt_starter_are_what_bot_train_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, typed: str, misspelt: str) -> None:
    """The README's example error named an intent of no starter, and said nothing of the one meant."""
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init", "mybot"]).exit_code == 0
    path = Path("mybot") / file
    assert path.read_text().count(f"\n{typed}") == 1
    path.write_text(path.read_text().replace(f"\n{typed}", f"\n{misspelt}"))
    result = CliRunner().invoke(cli, ["train", "mybot"])
    said = re.fullmatch(r"Error: (.*)\n", result.output)
    assert result.exit_code == 1 and said is not None, result.output
    assert f"`{said[1]}`" in " ".join(README.split())


def test_the_readmes_bot_init_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `bot init` line of the README's "Your own bot", run as shown with a small file of the kind it reads,
    creates a bot that loads: `--language multi`, for a shop with customers of both languages, was not there."""
    from bot.project import load_project

    block = README.split("## Your own bot", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("bot init ")]
    assert ["bot", "init", "mybot", "--language", "multi"] in commands
    for n, command in enumerate(commands):
        folder = tmp_path / str(n)
        folder.mkdir()
        monkeypatch.chdir(folder)
        Path("labelled.jsonl").write_text('{"text": "where is my parcel?", "intent": "track_order"}\n'
                                          '{"text": "我要退款", "intent": "get_refund", "answer": "好的，已为您申请。"}\n')
        Path("tickets.csv").write_text("question,intent,answer\nwhere is my parcel?,track_order,\n"
                                       "I want my money back,get_refund,\"Sure, open Orders.\"\n")
        result = CliRunner().invoke(cli, command[1:])
        assert result.exit_code == 0, (command, result.output)
        assert load_project(Path("mybot")).intents, command


def test_the_first_custom_action_of_docs_learning_answers_as_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    """docs/learning.md's custom actions had no example to start from: its action, saved and mapped as it says in the
    bilingual starter, answers the intent's button in English, and in Chinese once the customer wrote Chinese."""
    import yaml

    section = (REPO / "docs" / "learning.md").read_text().split("## Custom actions", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    mapping = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    shown = re.search(r"\n```\n(you> .*?)```", section, re.S)
    in_chinese = re.search(r"\(你好, then the button\) with `([^`]+)`", section)
    assert shown is not None and in_chinese is not None
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init", "mybot", "--language", "multi"]).exit_code == 0
    root = Path("mybot")
    config = yaml.safe_load((root / "bot.yml").read_text())
    config["model"].update(base=str(tiny_model), epochs=1)
    (root / "bot.yml").write_text(yaml.safe_dump({**config, **mapping}, allow_unicode=True))
    assert CliRunner().invoke(cli, ["train", "mybot", "--device", "cpu"]).exit_code == 0
    (root / "actions").mkdir()
    (root / "actions" / "hours.py").write_text(code)
    english = CliRunner().invoke(cli, ["chat", "mybot", "--device", "cpu"], input="/opening_hours\n")
    assert english.exit_code == 0 and shown[1].strip() in english.output, english.output
    chinese = CliRunner().invoke(cli, ["chat", "mybot", "--device", "cpu"], input="你好\n/opening_hours\n")
    assert f"bot> {in_chinese[1]}\n     (action, opening_hours 1.00)" in chinese.output, chinese.output


def shown_commands() -> list[tuple[str, list[str]]]:
    """Each `bot …` command line of the README's and docs/'s code blocks, with the file it is in, as words."""
    commands = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        fenced = False
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and (command := line.split("#", 1)[0].strip()).startswith("bot "):
                commands.append((path.name, shlex.split(command)))
    return commands


def test_every_command_and_option_the_docs_show_is_the_clis() -> None:
    """A command or an option the docs show and `bot` does not take is the first thing a new user types and
    is refused: each is checked against the CLI."""
    import click

    context = click.Context(cli)
    wrong = []
    commands = shown_commands()
    for where, words in commands:
        command = cli.get_command(context, words[1])
        while isinstance(command, click.Group) and len(words) > 2:  # bot model prepare …
            words = words[1:]
            command = command.get_command(context, words[1])
        if command is None:
            wrong.append((where, words))
            continue
        options = {name: param for param in command.params for name in (*param.opts, *param.secondary_opts)}
        for word, following in zip(words[2:], [*words[3:], ""]):
            name, _, value = word.partition("=")
            param, value = options.get(name), value or following
            if word.startswith("-") and (param is None or isinstance(param.type, click.Choice)
                                         and value not in param.type.choices):  # --language mult
                wrong.append((where, words))
    assert len(commands) > 30 and wrong == []


def test_every_bot_yml_the_docs_show_loads(tmp_path: Path) -> None:
    """The bot.yml sections of docs/ are copied into a new user's bot.yml as they are: each loads (a responses.yml
    one, under `responses:`, is checked with its own file elsewhere; a container's spec by tests/test_packaging.py)."""
    import textwrap

    import yaml

    from bot.project import load_config

    blocks = [block for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
              for block in re.findall(r"^ *```yaml\n(.*?)^ *```", path.read_text(), re.S | re.M)]
    # Not a bot.yml: a responses.yml section, a Kubernetes pod's spec or a compose file
    others = {"responses", "spec", "apiVersion", "services"}
    configs = [textwrap.dedent(block) for block in blocks if not others & set(yaml.safe_load(textwrap.dedent(block)))]
    assert len(configs) >= 8
    for n, config in enumerate(configs):
        path = tmp_path / f"{n}.yml"
        path.write_text(config)
        load_config(path)
