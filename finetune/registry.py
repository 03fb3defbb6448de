"""Versioned model folders with an atomic "current" pointer.

A version is written into a staging folder and renamed into place only when complete, and the
``CURRENT`` file is replaced atomically. So a training run that crashes or is killed halfway leaves
nothing that looks like a version, and the serving model is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any


class RegistryError(Exception):
    pass


@dataclass
class Version:
    name: str
    path: Path
    meta: dict[str, Any]
    metrics: dict[str, Any]
    current: bool


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _numbers(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(p.name[1:]) for p in self.root.iterdir() if p.is_dir() and p.name[:1] == "v" and p.name[1:].isdigit())

    def current(self) -> str | None:
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def path(self, name: str) -> Path:
        path = self.root / name
        if not path.is_dir():
            raise RegistryError(f"no model version {name!r} in {self.root}")
        return path

    def current_path(self) -> Path:
        name = self.current()
        if name is None:
            raise RegistryError(f"no trained model in {self.root}; run `bot train` first")
        return self.path(name)

    def versions(self) -> list[Version]:
        current = self.current()
        out = []
        for number in self._numbers():
            path = self.root / f"v{number:04d}"
            out.append(Version(path.name, path, _read_json(path / "meta.json"), _read_json(path / "metrics.json"), path.name == current))
        return out

    @contextmanager
    def stage(self) -> Iterator[Path]:
        """A private folder to write a version into; removed if the block fails."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def commit(self, staging: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> str:
        """Turn a complete staging folder into the next version (not yet serving)."""
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
        meta = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        while True:
            name = f"v{(self._numbers() or [0])[-1] + 1:04d}"
            try:
                os.rename(staging, self.root / name)  # atomic; fails if another run took the name
                return name
            except OSError:
                continue

    def promote(self, name: str) -> None:
        self.path(name)
        tmp = self.root / f".CURRENT-{uuid.uuid4().hex[:8]}"
        tmp.write_text(name + "\n")
        with open(tmp) as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "CURRENT")

    def clean_staging(self) -> None:
        """Remove what killed runs left behind."""
        for p in self.root.glob(".staging-*"):
            shutil.rmtree(p, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
