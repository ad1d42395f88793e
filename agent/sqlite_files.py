"""The SQLite files the agent keeps, opened in WAL mode, checked, and healed when damaged.

events.db, parking.db and seen_commands.sqlite live on an SD card that a power cut, a worn cell or a
technician's ``cp`` can damage.  A damaged file must neither stop the node (gates and fire release run
on GPIO alone) nor lose silently what it held.  :func:`open_database` checks a file as it opens it,
and :func:`heal` is what the opener and a store that meets a damaged page while running both do:

1. move the file aside as ``NAME.damaged-<UTC time>`` with its ``-wal`` and ``-shm`` (the newest
   ``KEEP_DAMAGED_COPIES`` of each file are kept for a technician; older ones are deleted);
2. salvage every readable row into a fresh database (:mod:`agent.sqlite_salvage`);
3. tell :class:`StorageReports`: a log line at once, a ``storage.recovered`` event as soon as the
   daemon records events.

A file that can be neither opened nor healed (an unwritable directory, ...) is replaced by an
in-memory database and reported as a node fault: the node keeps working and says loudly that what it
records now is lost at the next restart.  docs/storage.md is the technician's side of this.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.sqlite_salvage import MAX_ROWID, remove_database, salvage

if TYPE_CHECKING:
    from agent.node_faults import NodeFaults

log = logging.getLogger("edge_agent.storage")

Emit = Callable[[str, str | None, dict[str, Any]], object]

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes: a damaged page, a damaged header
KEEP_DAMAGED_COPIES = 3  # per file: a card that keeps damaging files must not fill itself with copies


class DamagedDatabase(ValueError):
    """A database a reader (``edge-agent events``) cannot read; the message says what to do.

    A ValueError so that the CLI prints the message, not a traceback.
    """


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "database disk image is malformed" and "file is not a database".

    Not for a locked file, a full disk or an I/O error: moving a healthy file aside would not help those.
    """
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def component(path: Path) -> str:
    """The NodeFaults component of a file: ``storage/events``, ``storage/parking``, ..."""
    return f"storage/{Path(path).stem}"


@dataclass(frozen=True)
class Healed:
    """What became of a damaged file, or of one found holding fewer rows than the node had written."""

    file: Path
    reason: str
    recovered: int  # rows in the database now
    lost: int | None  # rows known to be lost; None when the file cannot tell
    damaged_copy: Path | None = None  # where the damaged file went; None when nothing was moved
    seconds: float = 0.0
    skipped: int = 0  # rows known lost between readable ones (dense rowids only); ``lost`` adds the end

    def details(self) -> dict[str, Any]:
        """The ``storage.recovered`` event's details (short strings: event details are capped)."""
        return {"file": self.file.name, "reason": self.reason[:200], "recovered": self.recovered,
                "lost": self.lost, "damaged_copy": self.damaged_copy.name if self.damaged_copy else None,
                "seconds": round(self.seconds, 2)}

    def message(self) -> str:
        lost = "an unknown number of rows lost" if self.lost is None else f"{self.lost} row(s) lost"
        if self.damaged_copy is None:
            return f"{self.file}: {self.reason}; {self.recovered} row(s) kept, {lost}"
        return (f"{self.file} was damaged ({self.reason}): moved aside as {self.damaged_copy.name}; "
                f"{self.recovered} row(s) salvaged into a fresh {self.file.name}, {lost} "
                f"({self.seconds:.1f} s). The node keeps running; see docs/storage.md")


class StorageReports:
    """Where the stores tell what they healed, or could not: logged at once, recorded once the daemon can.

    Files are opened before the daemon records events (its recorder and ``NodeFaults`` come later), so
    reports wait here until :meth:`attach`; a CLI tool that never attaches gets the log lines only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emit: Emit | None = None
        self._faults: NodeFaults | None = None
        self._waiting: list[Callable[[], None]] = []
        self.healed_files: list[Healed] = []  # everything healed in this process, for status and tests

    def attach(self, emit: Emit, faults: NodeFaults) -> None:
        with self._lock:
            self._emit, self._faults = emit, faults
            waiting, self._waiting = self._waiting, []
        for deliver in waiting:
            deliver()

    def healed(self, healed: Healed) -> None:
        log.warning("%s", healed.message())
        with self._lock:
            self.healed_files.append(healed)
        self._deliver(lambda: self._emit and self._emit("storage.recovered", None, healed.details()))

    def unhealable(self, path: Path, reason: str) -> None:
        """``path`` cannot be used at all: a node fault until the agent restarts with a usable file."""
        if self._faults is None:
            log.error("%s: %s", component(path), reason)
        self._deliver(lambda: self._faults and self._faults.report(component(path), reason))

    def failing(self, path: Path) -> bool:
        return self._faults is not None and self._faults.failing(component(path))

    def usable_again(self, path: Path, message: str) -> None:
        """``path``, once unusable, is used again: its fault clears (``node.recovered``)."""
        log.warning("%s", message)
        self._deliver(lambda: self._faults and self._faults.clear(component(path)))

    def _deliver(self, action: Callable[[], object]) -> None:
        with self._lock:
            if self._emit is None:
                self._waiting.append(action)
                return
        try:
            action()
        except Exception:  # a report must never become the next fault
            log.exception("could not record a storage report")


@dataclass
class Opened:
    conn: sqlite3.Connection
    healed: Healed | None = None
    in_memory: bool = False
    retry: bool = False  # in memory because the file could not be opened, not because it is damaged


def open_database(path: Path, schema: Sequence[str], reports: StorageReports, *, report: bool = True,
                  dense_rowids: bool = False, max_rowid: int | None = None) -> Opened:
    """Open ``path`` in WAL mode with ``synchronous=FULL``, checked; healed if damaged; in memory if hopeless.

    ``schema``: idempotent statements (``CREATE ... IF NOT EXISTS``) for what the file holds.
    ``report=False`` leaves reporting the heal to the caller (the event store adds its own counts).
    """
    path = Path(path)
    try:
        return Opened(connect(path, schema))
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):  # a full disk, a card that does not answer: the caller may try again
            return Opened(in_memory_database(path, schema, reports, f"{path.name} cannot be opened ({why(exc)})",
                                             retried=True), in_memory=True, retry=True)
        reason = why(exc)
    try:
        healed = heal(path, schema, reason, dense_rowids=dense_rowids, max_rowid=max_rowid)
        conn = connect(path, schema, check=False)
    except Exception as exc:  # whatever a hostile file does to the salvage, the node must not exit
        log.exception("%s: salvage failed", path)
        return Opened(in_memory_database(path, schema, reports, f"{path.name} is damaged ({reason}) and could "
                                                                f"not be repaired ({why(exc)})"), in_memory=True)
    if report:
        reports.healed(healed)
    return Opened(conn, healed)


def connect(path: Path, schema: Sequence[str], *, check: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode; ``check``: ``PRAGMA quick_check`` first (raises a damage error if it fails)."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    conn.text_factory = lenient_text
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on each commit: power-cut safe
        if check:
            # Reads every page once (no cross-check of indexes): `python bench/bench_salvage.py` prints
            # what it costs on a large events.db.
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise _damage_error("; ".join(problems))
        for statement in schema:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


def heal(path: Path, schema: Sequence[str], reason: str, *, dense_rowids: bool = False,
         max_rowid: int | None = None) -> Healed:
    """Move the damaged ``path`` aside and build a fresh one from its readable rows (no connection open on it)."""
    started = time.monotonic()
    damaged = move_aside(path)
    scratch = path.with_name(path.name + ".salvaging")
    remove_database(scratch)
    fresh = sqlite3.connect(str(scratch), isolation_level=None)
    try:
        for statement in schema:
            fresh.execute(statement)
        rows, skipped, complete = salvage(damaged, fresh, max_rowid or MAX_ROWID)
        fresh.close()
        remove_database(path)  # a stray empty file another connection created since the move
        os.replace(scratch, path)
        _fsync_directory(path.parent)
    except BaseException:
        fresh.close()
        remove_database(scratch)
        if not path.exists():  # (a full disk): the damaged file goes back, to be healed at the next start
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{damaged}{suffix}").exists():
                    os.replace(f"{damaged}{suffix}", f"{path}{suffix}")
        raise
    prune_damaged_copies(path)
    lost = skipped if dense_rowids and complete else None
    return Healed(path, reason, rows, lost, damaged, time.monotonic() - started, skipped if dense_rowids else 0)


def move_aside(path: Path, label: str = "damaged") -> Path:
    """Rename ``path`` (and its -wal, -shm) to ``path.<label>-<UTC time>``; returns the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    damaged = path.with_name(f"{path.name}.{label}-{stamp}")
    counter = 1
    while damaged.exists():
        damaged = path.with_name(f"{path.name}.{label}-{stamp}-{counter}")
        counter += 1
    for suffix in ("", "-wal", "-shm"):  # the WAL may hold committed rows the salvage must read
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{damaged}{suffix}")
    return damaged


def prune_damaged_copies(path: Path) -> None:
    copies = sorted(path.parent.glob(f"{path.name}.damaged-*"), key=lambda p: p.stat().st_mtime_ns)
    copies = [copy for copy in copies if not copy.name.endswith(("-wal", "-shm"))]
    for old in copies[:-KEEP_DAMAGED_COPIES]:
        log.warning("deleting an old damaged copy %s (the newest %d are kept)", old, KEEP_DAMAGED_COPIES)
        remove_database(old)


# --- helpers -------------------------------------------------------------------------------------

def lenient_text(raw: bytes) -> str:
    """TEXT as str even when a damaged page left invalid UTF-8 in it: Python's default raises for the
    whole query ("Could not decode to UTF-8"), which would stop the outbox at that row for ever.  The
    event store sets such rows aside (U+FFFD marks them)."""
    return raw.decode("utf-8", "replace")


def why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _damage_error(text: str) -> sqlite3.DatabaseError:
    text = " ".join(text.split())[:150]  # quick_check's report spans lines; one log line, one event detail
    error = sqlite3.DatabaseError(f"database disk image is malformed: {text}")
    error.sqlite_errorcode = SQLITE_CORRUPT  # type: ignore[attr-defined]
    return error


def in_memory_database(path: Path, schema: Sequence[str], reports: StorageReports,
                       reason: str, *, retried: bool = False) -> sqlite3.Connection:
    """The last resort for a file that can be neither used nor healed: the node keeps working, loudly.
    ``retried``: the caller tries the file again and moves what memory holds into it once it opens."""
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.text_factory = lenient_text
    for statement in schema:
        conn.execute(statement)
    kept = "kept in memory and written to the file once it opens (tried every few seconds; lost if the agent " \
        "restarts first)" if retried else "kept in memory until the agent restarts (lost then)"
    reports.unhealable(path, f"{reason}: {kept}; check the SD card and {path.parent} (docs/storage.md)")
    return conn


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
