"""The README and docs/ as a new user follows them: what they show deskbot saying is what it says."""

from __future__ import annotations

import re
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
