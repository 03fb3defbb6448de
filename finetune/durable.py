"""Files that outlive a crash or a power cut: written whole, then put in place, then flushed.

Used by the model registry (a version's files, ``CURRENT``), training (the frozen evaluation set) and
``bot export -o``; and :func:`owner_only`, how deskbot creates every file that holds what customers wrote.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from collections.abc import Iterator
from typing import TextIO

# What a filesystem that cannot flush a folder answers (CIFS/Samba, some FUSE and Ceph mounts): its names
# are then as safe as it makes them, and SQLite, asked the same, carries on too.
_NO_FOLDER_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def owner_only(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for :func:`open` that creates a file readable and writable by its owner alone (0600),
    whatever the umask: the store, ``bot export -o`` and a version's index (``answers.jsonl``, ``index.faiss``) and
    ``ngrams.json`` hold what customers wrote, and ``bot.yml`` comes to hold secrets; made with a umask of 022 every
    account on the machine could read them. A file that exists keeps the mode it has."""
    return os.open(path, flags, 0o600)


def fsync_path(path: Path) -> None:
    """Flush ``path`` to the disk: a file's bytes, or a folder's entries (the names of its files). A folder
    that its filesystem cannot flush is left as it is; it failed every training run there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_FSYNC or not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise
    finally:
        os.close(fd)


@contextmanager
def replaced(path: Path, *, flush_folder: bool = True, private: bool = False) -> Iterator[TextIO]:
    """A text file (UTF-8) that takes ``path``'s place only once written whole and on the disk. Written in
    place, a failed or killed writer (a full disk, a cron job's timeout) destroyed the previous file and left
    half a line; here it leaves the previous file as it was, and no temporary file beside it.

    The folder is flushed afterwards (its new entry outlives a power cut) unless ``flush_folder`` is false,
    for a caller that must not fail once the file is in place; it then calls :func:`fsync_path` itself. A
    ``private`` file, one that holds what customers wrote, is created for its owner alone (:func:`owner_only`);
    any file takes the mode of the one it replaces."""
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "x", encoding="utf-8", opener=owner_only if private else None) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        with suppress(FileNotFoundError):
            shutil.copymode(path, tmp)  # readable by whoever could read the previous file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if flush_folder:
        fsync_path(path.parent)
