"""What the disk under the store does to it (full, read-only, failing, locked, shared over a network), told apart
from a fault of deskbot's: waiting mends the first, and the operator is told what to do about each."""

from __future__ import annotations

import errno
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

# What the disk or another process does to the store, and may undo: full, read-only, failing, locked.
_UNWRITABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY,
               sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN}


def cannot_write(exc: BaseException) -> bool:
    """Whether ``exc`` is the store unable to write for a while (a full disk, a file made read-only), which
    writing again later mends; any other error of the store is a fault, which waiting does not."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) & 0xFF in _UNWRITABLE


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite finding the store's file damaged ("database disk image is malformed"), which no wait
    mends: a file that is no database at all is another's, not a damaged store."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_CORRUPT


LOW_SPACE_BYTES = 1 << 20  # below this, SQLite's "disk I/O error" is a full disk


def no_space(path: Path, exc: BaseException) -> bool:
    """Whether ``exc`` (the system's or SQLite's) is the disk of ``path`` full."""
    # SQLite says "disk I/O error", not "full", when a full disk keeps it from creating the file's log
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "full" in str(exc) or (
        "disk I/O" in str(exc) and _free_bytes(path) < LOW_SPACE_BYTES)


def unwritable_advice(path: Path, exc: BaseException) -> str:
    """What to do about the store at ``path`` that cannot write (:func:`cannot_write`), for the log: SQLite says the
    same "disk I/O error" for a full disk, one the kernel turned read-only after an error and a failing one, and the
    log of a server refusing every customer said no more. Empty for a lock held, which the log says apart."""
    if no_space(path, exc):
        return f"free some space on the disk of {path}"
    if ("readonly" in str(exc) or "disk I/O" in str(exc)) and read_only_disk(path):
        return f"the disk of {path} is read-only: {READ_ONLY_DISK_ADVICE}"
    if "readonly" in str(exc):
        return f"make {path}, its -wal and -shm files and its folder this user's to write again"
    if "disk I/O" in str(exc):
        return f"check the disk of {path} (`dmesg`)"
    return ""


READ_ONLY_DISK_ADVICE = ("`dmesg` says whether the kernel made it so after an error (`mount` then shows ro or "
                         "emergency_ro), to repair with the server stopped")


# What to do about a damaged store (SQLite's "database disk image is malformed"): a failing disk, a copy made halfway.
DAMAGED_ADVICE = ("Stop the bot and put the latest good `bot backup` copy back with `bot restore`, which keeps this "
                  "file aside, or recover what it holds: `sqlite3 dialogues.db .recover | sqlite3 recovered.db`")


def read_only_disk(path: Path) -> bool:
    """Whether the disk of ``path``'s folder refuses every write: mounted read-only, or made so by the kernel after an
    error (ext4's emergency_ro, which `mount` lists as rw and the file's permissions hide: only a write tells)."""
    try:
        with tempfile.TemporaryFile(dir=path.resolve().parent):
            return False
    except OSError as exc:
        return exc.errno == errno.EROFS


# File systems whose files processes on several machines share: SQLite's locks are not to be trusted there, and its
# WAL mode, which deskbot's store uses, keeps in the -shm file memory that only processes on one machine share.
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "gpfs",
                                 "afs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs",
                                 "fuse.cephfs", "fuse.rclone"})


def network_filesystem(folder: Path, mountinfo: str | None = None) -> str | None:
    """The type of the network file system ``folder`` is on ("nfs4"), from ``mountinfo`` (the text of Linux's
    /proc/self/mountinfo, read where not given), else None, as elsewhere than Linux. A Kubernetes volume that several
    pods mount at once (ReadWriteMany) is one, and servers on two machines writing one store damage it."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    real, best, kind = str(folder.resolve()), "", None
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        if len(parts := fields.split()) < 5 or not after:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4])  # a space is written \040
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the innermost mount, the last of those mounted on one point
            best, kind = point, after.split()[0]
    return kind if kind in NETWORK_FILESYSTEMS else None


def _free_bytes(path: Path) -> int:
    """Free space on the disk of ``path``'s folder; a folder that cannot be asked counts as roomy."""
    try:
        return shutil.disk_usage(path.resolve().parent).free
    except OSError:
        return LOW_SPACE_BYTES
