"""Versioned model folders with an atomic "current" pointer.

A version is written into a staging folder and renamed into place only when complete, and the
``CURRENT`` file is replaced atomically. So a training run that crashes or is killed halfway leaves
nothing that looks like a version, and the serving model is never touched.

Every training, promotion, refusal and rollback, and every promotion or rollback that failed, is appended to
``decisions.jsonl`` (and a version's own gate verdict is kept in its ``decision.json``), so "why is this model
serving?" always has an answer.
One training run or rollback at a time holds ``.lock``; a run that was killed leaves its staging
folder behind, and the next holder of the lock removes it.

Only the names the registry gives versions (``v0001``, ``v0002``, ... ``v10000``) are versions, so
``CURRENT`` always holds a name that ``bot serve`` and ``bot models`` compare equal to a version's. A name
is never given twice, even after its folder is deleted, since ``decisions.jsonl`` still speaks of it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

from finetune.cache import FILES, changed_file
from finetune.durable import fsync_path, owner_only, replaced


SETTLED_NS = 1_000_000_000  # how long ago CURRENT must have been written for its name to be kept, not read again


class RegistryError(Exception):
    pass


@contextmanager
def stops_held() -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP (the terminal a retrain ran in closed) held while the block runs, then let through
    as they came: a stop between making a version serve (CURRENT) and recording it in ``decisions.jsonl`` left a
    promotion the log never told of. The block is a few file writes, so the stop waits for them alone. Off the main
    thread, where no handler can be set, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = {signum: signal.signal(signum, lambda signum, _: came.append(signum))
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
            if signal.getsignal(signum) is not None}
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)


@dataclass
class Version:
    name: str
    path: Path
    meta: dict[str, Any]
    metrics: dict[str, Any]
    current: bool
    decision: dict[str, Any]  # the promotion gate's verdict; empty for a plain `bot train`
    damaged: list[str] = field(default_factory=list)  # "meta.json unreadable", "index/ missing", ...

    @property
    def passed(self) -> bool | None:
        """Whether the promotion gate let this candidate serve (None: no gate judged it). Whether it then
        served is for ``decisions.jsonl`` to say: the verdict is written before the promotion, which may
        fail or never come. Versions written before ``passed`` was recorded call it ``promoted``."""
        verdict = self.decision.get("passed", self.decision.get("promoted"))
        return None if verdict is None else bool(verdict)


@dataclass
class Pruned:
    """What :meth:`Registry.prune` deleted, and what it kept and why: ``keep`` counts the versions kept for `bot
    rollback` alone, beside which the serving one and the newest stay, so that up to ``keep`` + 2 are left."""

    deleted: list[str]
    serving: str
    newest: str  # the last attempt, promoted or refused: the next retrain counts what is new from what it learnt
    rollbacks: list[str]  # the newest others that served, newest first

    def kept(self) -> str:
        """The versions kept, each with why, for the line that says what was pruned."""
        said = [f"{self.serving} (serving{', the newest' if self.newest == self.serving else ''})"]
        if self.newest != self.serving:
            said.append(f"{self.newest} (the newest: the next retrain counts what is new from what it learnt)")
        if self.rollbacks:
            said.append(f"{', '.join(self.rollbacks)} (served before, for bot rollback)")
        return "; ".join(said)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._known: tuple[tuple[int, ...], str | None] | None = None  # CURRENT's stat, and the name it held

    def _taken(self) -> list[tuple[int, Path]]:
        """Every entry named like a version, folder or not, with its number, in order: a stray file named
        ``v0003`` is no version, but its name cannot become one either."""
        if not self.root.exists():
            return []
        entries = ((version_number(p.name), p) for p in self.root.iterdir())
        return sorted((number, p) for number, p in entries if number is not None)

    def current(self) -> str | None:
        """The version CURRENT names, read again only when the file is another (a promotion replaces it) or was
        written since: `bot serve`'s /healthz and model watcher ask every few seconds."""
        path = self.root / "CURRENT"
        try:
            st = path.stat()  # before the read: a CURRENT replaced in between is read again next time
        except FileNotFoundError:
            return None
        except OSError:  # the read below says what is wrong
            st = None
        stamp = () if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp and self._known is not None and self._known[0] == stamp:
            return self._known[1]
        name = self._read_current(path)
        # Kept only once the file was written a while ago: a write within the same clock tick (a few ms) as the one
        # read may leave its time and size as they were, and the name it wrote would go unread.
        self._known = (stamp, name) if st is not None and time.time_ns() - st.st_mtime_ns > SETTLED_NS else None
        return name

    def _read_current(self, path: Path) -> str | None:
        try:
            name = path.read_text(encoding="utf-8-sig").strip()  # an editor's byte-order mark is no part of the name
        except FileNotFoundError:
            return None
        except IsADirectoryError:  # a rollback cannot write the file over it
            raise RegistryError(f"{path} is a folder, not the file naming the serving version: move it away, "
                                f"then `bot rollback {self._bot()} VERSION` writes the file") from None
        except (OSError, UnicodeDecodeError) as exc:  # bytes that are no name, a file that cannot be read
            raise RegistryError(f"{path} cannot be read ({exc}); "
                                f"`bot rollback {self._bot()} VERSION` "
                                "writes it again") from None
        return name or None

    def current_stamp(self) -> int:
        """When CURRENT was last written (0: never), which a promotion or rollback to the same name changes too."""
        try:
            return (self.root / "CURRENT").stat().st_mtime_ns
        except OSError:
            return 0

    def _current_file(self) -> tuple[int, int] | None:
        """Which file CURRENT is (its inode and time), None where there is none: a promotion puts a new one in place."""
        try:
            st = (self.root / "CURRENT").stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def readable_current(self) -> str | None:
        """:meth:`current`, or None when CURRENT cannot be read: what a listing shows, and what a
        rollback or a promotion replaces."""
        try:
            return self.current()
        except RegistryError:
            return None

    def path(self, name: str) -> Path:
        """The folder of version ``name``; only an exact version name is accepted, never another path to it
        (``v0001/``, ``./v0001``) nor another folder (``.staging-*``), since ``name`` is what CURRENT records."""
        if version_number(name) is None:
            raise RegistryError(f"{name!r} is not a model version name (v0001, v0002, ...); `bot models` lists them")
        path = self.root / name
        if not path.is_dir():
            raise RegistryError(f"no model version {name!r} in {self.root}; `bot models` lists those there are")
        return path

    def current_path(self) -> Path:
        name = self.current()
        if name is None:
            raise RegistryError(self.nothing_serving())
        try:
            return self.path(name)
        except RegistryError as exc:  # a hand-edited or half-restored CURRENT: say it is the file at fault
            raise RegistryError(f"{self.root / 'CURRENT'} names {name!r}, but {exc}; `bot rollback "
                                f"{self._bot()} VERSION` serves one that is there") from None

    def _bot(self) -> str:
        """The bot's folder as a command line takes it (`bot train 'my bot'`), for the commands a message names."""
        return shlex.quote(str(self.root.parent))

    def nothing_serving(self) -> str:
        """Why nothing serves, and what to run: a first training, or the rollback that names a version."""
        versions = [p.name for _, p in self._taken() if p.is_dir()]
        if not versions:
            return f"no trained model in {self.root}; run `bot train {self._bot()}` first"
        last = self.last_served()
        suggested, why = (last, " (the last to serve)") if last in versions else (versions[-1], "")
        missing = "CURRENT is empty" if (self.root / "CURRENT").is_file() else "no CURRENT"
        return (f"no model serves in {self.root} ({missing}); choose one of {', '.join(versions)} with "
                f"`bot rollback {self._bot()} {suggested}`{why}")

    def last_served(self) -> str | None:
        """The version the decision log says served last, or None: the newest version may be a candidate
        the gate refused, or one trained with ``--no-promote``, which no one chose to serve."""
        try:
            decisions = self.decisions()
        except RegistryError:
            return None
        for decision in reversed(decisions):
            event = decision.get("event")
            if event in ("promoted", "rollback", "index_refresh"):
                return decision.get("version")
            if event == "trained" and decision.get("promoted"):  # one trained with --no-promote served nothing
                return decision.get("version")
            if event == "refused":  # the serving version, or the copy of it that took the new agent answers
                return decision.get("index_refresh") or decision.get("serving")
            if event in ("rollback_failed", "promotion_failed"):
                return decision.get("serving")
        return None

    def sound_alternatives(self, broken: str | None) -> list[str]:
        """The versions but ``broken`` known to have served (:meth:`served`) whose files look whole (:func:`_model_damage`,
        by their sizes), newest first: what to serve instead when ``broken`` cannot load, or when CURRENT is gone
        (``broken`` None). A candidate the gate refused, or one trained with ``--no-promote``, never served, so is
        never among them."""
        versions = self.versions()
        served = self.served(versions)
        return [v.name for v in reversed(versions) if v.name != broken and v.name in served and not v.damaged]

    def served(self, versions: list[Version]) -> set[str]:
        """The versions the decision log says served, and those ``versions`` record as serving when they were made
        (meta.json's ``parent``, decision.json's ``serving``): these outlive a lost or unreadable log."""
        try:
            log = self.decisions()
        except RegistryError:
            log = []
        by_log = {*served_versions(log), *(str(d.get("version")) for d in log if d.get("event") == "index_refresh")}
        by_versions = {str(name) for v in versions for name in (v.meta.get("parent"), v.decision.get("serving")) if name}
        return by_log | by_versions

    def rollback_advice(self, broken: str) -> str:
        """What to run when version ``broken`` cannot load, to follow its error ("; `bot rollback …`"), or "" when
        no other version that served looks whole."""
        if not (sound := self.sound_alternatives(broken)):
            return ""
        return (f"; `bot rollback {self._bot()} {sound[0]}` serves {sound[0]}, the newest "
                "other version that has served")

    def versions(self) -> list[Version]:
        """Every version, oldest first; an unreadable CURRENT marks none as serving, so that the list to
        roll back from stays readable."""
        current = self.readable_current()
        return [_read_version(path, current) for _, path in self._taken() if path.is_dir()]

    def version(self, name: str) -> Version:
        """Version ``name`` as :meth:`versions` lists it."""
        return _read_version(self.path(name), self.readable_current())

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
        """Turn a complete staging folder into the next version (not yet serving).

        Every file and folder of it is on the disk before it takes its name, and the name before this
        returns: the kernel writes data back when it likes, and after a power cut a CURRENT naming a
        version whose files were never written out would leave nothing to serve."""
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False), encoding="utf-8")
        meta = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
        try:
            for folder, _, files in os.walk(staging, topdown=False):  # a folder after its files, staging last
                for file in files:
                    fsync_path(Path(folder, file))
                fsync_path(Path(folder))
        except OSError as exc:  # a full disk found only now, a failing one
            raise RegistryError(f"cannot write the new version to the disk of {self.root}: {exc.strerror or exc}") from exc
        while True:
            name = f"v{self._next_number():04d}"
            try:
                os.rename(staging, self.root / name)  # atomic; fails if another run took the name
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # lost a race for the name: the next one is free
                    continue
                raise RegistryError(f"cannot store the new version as {self.root / name}: {exc.strerror}") from exc
            fsync_path(self.root)
            return name

    def _next_number(self) -> int:
        """One more than any version there is or was. A version deleted since (to free its disk) keeps its
        number: the decision log still tells what became of it, and would tell it of a new version by that
        name, so that a candidate whose run was killed before its promotion would pass for a finished one."""
        numbers = [number for number, _ in self._taken()]
        with suppress(RegistryError):  # a log that cannot be read is refused when the decision is recorded
            numbers += [number for d in self.decisions() if isinstance(d.get("version"), str)
                        and (number := version_number(d["version"])) is not None]
        return max(numbers, default=0) + 1

    def promote(self, name: str) -> None:
        self.path(name)
        try:
            with replaced(self.root / "CURRENT", flush_folder=False) as out:
                out.write(name + "\n")
        except OSError as exc:  # a full disk: CURRENT still names what served
            raise RegistryError(f"cannot make {name} serve: writing {self.root / 'CURRENT'} failed: "
                                f"{exc.strerror or exc}") from exc
        # The new CURRENT itself, not only its bytes, outlives a power cut. It serves already, so a failure
        # here must not pass for a promotion that failed (the caller would record one for a serving version).
        with suppress(OSError):
            fsync_path(self.root)

    def clean_staging(self) -> None:
        """Remove what killed runs left behind: staging folders and half-written CURRENT files."""
        for p in self.root.glob(".staging-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".CURRENT-*"):
            p.unlink(missing_ok=True)

    @contextmanager
    def lock(self, busy: str = "another training run is using {root}; wait for it to finish") -> Iterator[None]:
        """Exclusive right to change this registry (train into it, roll it back); stale staging folders are
        removed on entry.

        It never waits: a training run holds it from start to promotion, minutes or hours, so a second
        caller fails at once with ``busy`` (``{root}`` filled in, with the process holding the lock and since
        when, which the holder writes in the file: a run hung for a day is to be found and stopped) rather than
        hanging without a word. The kernel drops a ``flock`` when its process dies, so a killed run never leaves
        it held.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        # Not "w", which would wipe the holder's line; unbuffered, so that a full disk fails the write, not the close.
        # For its owner alone: another account that may read it can hold a lock on it, and no training run could start.
        with open(self.root / ".lock", "a+b", buffering=0, opener=owner_only) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                pid, _, since = fh.read().decode(errors="replace").strip().partition(" ")
                held = f" (process {pid}, holding it since {since})" if pid.isdigit() else ""
                raise RegistryError(busy.format(root=f"{self.root}{held}")) from None
            fh.truncate(0)
            with suppress(OSError):  # a full disk: the lock holds without the line
                fh.write(f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
            self.clean_staging()
            self._record_a_killed_rollback()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _record_a_killed_rollback(self) -> None:
        """Record as failed a rollback whose run was killed outright (SIGKILL, the OOM killer as it built the version's
        new index) after recording it and before its version served: the log's last line, while CURRENT names another
        version. Nothing else could have written since, as every change of what serves holds the lock and is recorded.
        The log said the version served: `bot models` listed it "served by rollback", and `bot serve`'s fallback took it
        for one that had."""
        with suppress(RegistryError):  # a log that cannot be read or written is said by what reads or writes it next
            log = self.decisions()
            if log and log[-1].get("event") == "rollback" and (name := log[-1].get("version")) != self.readable_current():
                self.record({"event": "rollback_failed", "version": name, "serving": self.readable_current(),
                             "reason": "its run ended before the version served (killed?)"})

    def record(self, event: dict[str, Any]) -> None:
        """Append one decision (promotion, refusal, rollback) to ``decisions.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}, ensure_ascii=False)
        path = self.root / "decisions.jsonl"
        try:
            with open(path, "ab+") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")  # end a line that a crash cut short, so this one stays readable
                fh.write(line.encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a folder by that name, a full disk
            raise RegistryError(f"cannot record the decision in {path}: {exc.strerror or exc}") from exc

    def decisions(self) -> list[dict[str, Any]]:
        """The recorded decisions, oldest first; a line a crash cut short (maybe inside a character of a
        Chinese intent's name) is skipped, and the others are read."""
        path = self.root / "decisions.jsonl"
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:  # a folder by that name
            raise RegistryError(f"cannot read the decisions in {path}: {exc.strerror or exc}") from exc
        out = []
        for line in lines:
            try:
                decision = json.loads(line)
            except ValueError:  # not JSON, or not UTF-8
                continue
            if isinstance(decision, dict):
                out.append(decision)
        return out

    def rollback(self, name: str, check: Callable[[Path], object] | None = None,
                 derive: Callable[[str], str | None] | None = None) -> str | None:
        """Serve ``name`` again; ``check`` (a loader) must accept its folder first. Returns the old version.
        ``derive`` may build a version from ``name`` and promote it instead, under the same lock, so that
        ``name`` itself never serves; it returns None to serve ``name`` as it is.

        It takes the training lock, so a rollback and a retrain cannot both decide what serves: a retrain
        that promoted afterwards would silently undo the rollback. A run holds the lock until it is done,
        possibly for hours, so the rollback fails at once instead of waiting for it.
        """
        path = self.path(name)
        with self.lock(busy="a training run holds the registry lock on {root}; try again when it finishes"):
            if check is not None:
                check(path)
            previous = self.readable_current()  # an unreadable CURRENT is what a rollback mends
            before = self._current_file()
            try:
                self.record({"event": "rollback", "version": name, "previous": previous})  # no rollback goes unlogged
                if derive is None or derive(name) is None:
                    self.promote(name)
            # A refused CURRENT, a derived version that could not be made, or a stop (SIGTERM, Ctrl-C) before CURRENT
            # was written: the log said a rollback that never served. Once written, it served, whatever came after.
            except BaseException as exc:
                if self._current_file() == before:
                    with suppress(RegistryError):  # the disk that refused CURRENT may refuse this too
                        self.record({"event": "rollback_failed", "version": name, "serving": previous,
                                     "reason": str(exc) or type(exc).__name__})
                raise
        return previous


    def prune(self, keep: int) -> Pruned:
        """Delete the versions to free their disk (each is a whole model): all but the serving one, the newest
        (the last attempt, from which the next retrain counts what is new) and the ``keep`` newest others that
        served (what `bot rollback` and `bot serve`'s fallback turn to): refused candidates, versions trained with
        ``--no-promote`` and older ones go. Under the training lock, and recorded."""
        with self.lock(busy="a training run holds the registry lock on {root}; try again when it finishes"):
            serving = self.current_path().name  # nothing serving (or a CURRENT that names nothing): refused
            versions = self.versions()
            served = self.served(versions)
            rollbacks = [v.name for v in reversed(versions) if v.name in served and v.name != serving][:keep]
            kept = {serving, versions[-1].name, *rollbacks}
            deleted = [v.name for v in versions if v.name not in kept]
            if deleted:
                self.record({"event": "pruned", "versions": deleted, "serving": serving})
            for name in deleted:
                shutil.rmtree(self.root / name)
            return Pruned(deleted, serving, versions[-1].name, rollbacks)


def version_number(name: str) -> int | None:
    """The number of a version name exactly as :meth:`Registry.commit` writes it (``v0042``: 42), else None."""
    digits = name[1:]
    if name[:1] != "v" or not (digits.isascii() and digits.isdigit()):
        return None
    number = int(digits)
    return number if name == f"v{number:04d}" else None


def served_versions(log: list[dict[str, Any]]) -> dict[str, str]:
    """The versions the decision log (:meth:`Registry.decisions`) says served, each with how: ``promoted`` (by the
    gate, or by `bot train` without --no-promote), or ``served by rollback`` (a
    candidate whose promotion failed, served later by `bot rollback`). A rollback is recorded before it is
    tried, so it served unless the record after it says that it failed (``rollback_failed``) or that a
    version derived from it, without the purged answers, served instead (an ``index_refresh`` from it)."""
    served: dict[str, str] = {}
    for d, after in zip(log, [*log[1:], {}]):
        name = str(d.get("version"))
        if d.get("event") == "promoted" or d.get("event") == "trained" and d.get("promoted"):  # gated, or `bot train`'s
            served[name] = "promoted"
        elif d.get("event") == "rollback" and not (
                after.get("event") == "rollback_failed" and str(after.get("version")) == name
                or after.get("event") == "index_refresh" and str(after.get("previous")) == name):
            served.setdefault(name, "served by rollback")
    return served


def rolled_back(log: list[dict[str, Any]]) -> dict[str, str]:
    """The versions a `bot rollback` last took off serving (:meth:`Registry.decisions`), each with the version it
    served instead: listed as ``promoted`` alone, the version a shop rolled back from read as one replaced by a better
    one. A version that served again since and was replaced otherwise (a promotion, an index refresh) is not."""
    taken: dict[str, str] = {}
    for d, after in zip(log, [*log[1:], {}]):
        if (previous := d.get("previous")) is None:
            continue
        if d.get("event") != "rollback":  # replaced by a promotion or an index refresh
            taken.pop(str(previous), None)
        elif not (after.get("event") == "rollback_failed" and after.get("version") == d.get("version")):
            taken[str(previous)] = str(d.get("version"))
    return taken


def _read_version(path: Path, current: str | None) -> Version:
    """The version in folder ``path``, its records read leniently (:func:`_read_json`) and its damage listed."""
    damaged: list[str] = []
    meta, metrics = _read_json(path / "meta.json", damaged), _read_json(path / "metrics.json", damaged)
    decision = _read_json(path / "decision.json", damaged, required=False)
    damaged += _model_damage(path)
    return Version(path.name, path, meta, metrics, path.name == current, decision, damaged)


def _model_damage(path: Path) -> list[str]:
    """What a look at the sizes finds wrong with version ``path``'s model: its answer index missing, or a
    file of its classifier missing or cut short (a copy or a disk that failed). ``bot models`` listed such
    a version as sound, for a `bot rollback` to refuse. No file is read: a changed byte is found when the
    version loads."""
    damaged = [f"{part}/ missing" for part in ("classifier", "index") if not (path / part).is_dir()]
    if (path / "classifier").is_dir():
        try:
            problem = changed_file(path / "classifier", hashed=False)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a list that is no list of files
            problem = f"{FILES} unreadable"
        if problem:
            damaged.append(f"classifier/{problem}")
    if (path / "index").is_dir() and (problem := _index_damage(path / "index")):
        damaged.append(f"index/{problem}")
    return damaged


def _index_damage(folder: Path) -> str | None:
    """What the sizes its manifest records find wrong with an answer index (an index saved before they were
    recorded: a file missing or empty)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        sizes = manifest.get("sizes") or dict.fromkeys(manifest["checksums"])
        for name, size in sizes.items():
            actual = (folder / name).stat().st_size
            if actual == 0 or size not in (None, actual):
                return f"{name} cut short or changed ({actual:,} bytes{f', not {size:,}' if size else ''})"
    except FileNotFoundError as exc:
        return f"{Path(exc.filename or 'manifest.json').name} missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "manifest.json unreadable"
    return None


def _read_json(path: Path, damaged: list[str], required: bool = True) -> dict[str, Any]:
    """A version's JSON record, or ``{}`` when it is missing or unreadable: one damaged old version
    must not hide the others from ``bot models`` and ``bot rollback``. What is wrong goes into ``damaged``,
    for them to say (a blank row would read as a version without figures)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            damaged.append(f"{path.name} missing")
        return {}
    except (OSError, ValueError):  # a folder, not UTF-8, not JSON
        data = None
    if not isinstance(data, dict):
        damaged.append(f"{path.name} unreadable")
        return {}
    return data
