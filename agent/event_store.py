"""Events kept on the node in SQLite (through sqlite-utils) until the platform has them.

The table doubles as the uplink's outbox: ``delivered_at`` is NULL until the broker has
acknowledged the event, and rows are read back in ``seq`` order.  WAL with ``synchronous=FULL``
means a committed event survives a power cut; each append is its own transaction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from agent.events import Event, rfc3339
from agent.sqlite_files import (
    DamagedDatabase,
    Healed,
    StorageReports,
    connect,
    heal,
    in_memory_database,
    is_damage,
    lenient_text,
    move_aside,
    open_database,
    why,
)
from agent.sqlite_salvage import remove_database

log = logging.getLogger("edge_agent.events")

Listener = Callable[["StoredEvent"], None]
T = TypeVar("T")

EVENTS_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "events" ("seq" INTEGER PRIMARY KEY, "id" TEXT NOT NULL, "ts" TEXT NOT NULL, '
    '"node" TEXT NOT NULL, "type" TEXT NOT NULL, "device" TEXT, "details" TEXT NOT NULL, "delivered_at" TEXT)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "idx_events_id" ON "events" ("id")',
    'CREATE INDEX IF NOT EXISTS "idx_events_ts" ON "events" ("ts")',
    'CREATE INDEX IF NOT EXISTS "idx_events_type_seq" ON "events" ("type", "seq")',
    # The outbox query only ever looks at undelivered rows: keep that index small.
    "CREATE INDEX IF NOT EXISTS idx_events_pending ON events(seq) WHERE delivered_at IS NULL",
)
HIGH_WATER_EVERY_SECONDS = 2.0  # the mark may lag the log by this much: a loss within it goes unseen
MAX_HEALS = 3  # within HEAL_WINDOW_SECONDS; more means a failing card: keep events in memory, say so
HEAL_WINDOW_SECONDS = 3600.0
SALVAGE_SLACK = 1_000_000  # seqs a crashed process may have used past its last mark, with room to spare
RETRY_FILE_SECONDS = 5.0  # a store kept in memory because its file would not open tries it this often
UNREADABLE = "dropped:unreadable:"  # delivered_at of a salvaged row that cannot be decoded


@dataclass(frozen=True)
class StoredEvent:
    seq: int  # insertion order on this node; the outbox delivers in this order
    event: Event
    delivered_at: str | None


class EventStore:
    """Append-only event log with an outbox view. Safe to share between threads.

    A damaged file heals itself (agent.sqlite_files): at open, and whenever a query meets a damaged
    page while running, the file is moved aside, its readable rows salvaged into a fresh one under the
    store's lock, and the operation runs again, so a bad page never stalls the outbox.  A high-water
    mark beside the file (``events.db.seq``) tells when the file holds fewer events than the node had
    recorded (its WAL deleted, the file emptied or replaced by an older copy): said, never silent.
    """

    def __init__(self, path: Path, *, readonly: bool = False, reports: StorageReports | None = None) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.reports = reports or StorageReports()
        self.in_memory = False
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._high_water = HighWater(Path(f"{self.path}.seq"))
        self._heals: list[float] = []  # monotonic times of heals while running
        self._seq_floor = 0  # after a loss: new events continue above every seq the node had used
        self._newest_seq = 0  # appended by this process
        self._retry_file = False
        self._next_file_try = 0.0
        if readonly:
            self.db = sqlite_utils.Database(_open_read_only(self.path))
            self._inode = _inode(self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opened = open_database(self.path, EVENTS_SCHEMA, self.reports, report=False, dense_rowids=True,
                               max_rowid=self._salvage_bound())
        self.db = sqlite_utils.Database(opened.conn)
        self.in_memory = opened.in_memory
        self._retry_file = opened.retry  # in memory only until the file opens (a full disk at start)
        self._inode = _inode(self.path)
        self._check_high_water(opened.healed)

    def close(self) -> None:
        with self._lock:
            if not self.readonly and not self.in_memory:
                with contextlib.suppress(sqlite3.Error, OSError):  # a damaged or full disk: said already
                    self._write_back_if_moved()
                    self._mark(clean=True)
            self.db.conn.close()

    def add_listener(self, listener: Listener) -> None:
        """Called after each committed append, in the appending thread (keep it quick)."""
        self._listeners.append(listener)

    def append(self, event: Event) -> StoredEvent:
        return self.append_many([event])[0]

    def append_many(self, events: list[Event]) -> list[StoredEvent]:
        """Append ``events`` in one transaction (one fsync for a burst): all of them, or none on an error.
        A damaged page met on the way heals the file and the whole batch is written again."""
        rows = [{"id": event.id, "ts": rfc3339(event.ts), "node": event.node, "type": event.type,
                 "device": event.device,
                 "details": json.dumps(event.details, ensure_ascii=False, separators=(",", ":"))} for event in events]
        seqs: list[int] = []

        def insert() -> None:
            seqs.clear()
            for index, row in enumerate(rows):
                # After a loss, the next event takes a seq above every one the node had used: the
                # platform sees a gap, never a seq it already has with another event.
                seq = max(self._seq_floor, self._max_seq()) + 1 if self._seq_floor and index == 0 else None
                cursor = self.db.execute(
                    "INSERT INTO events (seq, id, ts, node, type, device, details) VALUES (:seq, :id, :ts, :node, "
                    ":type, :device, :details)", {**row, "seq": seq},
                )
                seqs.append(int(cursor.lastrowid or 0))

        self.retry_file()
        with self._lock:  # held to the COMMIT: no other thread reads rows that may yet be rolled back
            self._transaction(insert)
            stored = [StoredEvent(seq, event, None) for seq, event in zip(seqs, events, strict=True)]
            if stored:
                self._newest_seq = stored[-1].seq
                self._seq_floor = 0
            if stored and not self.in_memory and self._high_water.due(stored[-1].seq):
                try:  # checked as often as the mark is written; never fails the append, which is committed
                    self._mark()
                    self._write_back_if_moved()
                except (OSError, sqlite3.Error):
                    log.exception("%s: checking the file is still in place failed", self.path)
        for item in stored:
            for listener in list(self._listeners):
                listener(item)
        return stored

    def query(
        self, *, types: list[str] | None = None, since: datetime | None = None, after_seq: int = 0,
        limit: int | None = None, newest_first: bool = False,
    ) -> list[StoredEvent]:
        where, params = ["seq > :after"], {"after": after_seq}
        if types:
            clauses = []
            for index, pattern in enumerate(types):
                # "door" or "door.*" selects a family; "door.opened" one type.
                family = pattern.removesuffix(".*")
                clauses.append(f"(type = :t{index} OR type LIKE :f{index})")
                params[f"t{index}"], params[f"f{index}"] = pattern, f"{family}.%"
            where.append("(" + " OR ".join(clauses) + ")")
        if since is not None:
            where.append("ts >= :since")
            params["since"] = rfc3339(since)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        events, unreadable = _decode(self._run(lambda: list(self.db.query(sql, params))))
        if unreadable:
            log.warning("%s: %d stored event(s) cannot be decoded and were skipped (seq %s)", self.path.name,
                        len(unreadable), ", ".join(map(str, unreadable[:10])))
        return events

    def pending(self, limit: int = 100, after_seq: int = 0) -> list[StoredEvent]:
        """Undelivered events, oldest first: the uplink's outbox."""
        while True:
            rows = self._run(lambda: list(self.db.query(
                "SELECT * FROM events WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                [after_seq, limit],
            )))
            events, unreadable = _decode(rows)
            if not unreadable:
                return events
            # A salvaged row that cannot be decoded would stop the outbox at it for ever: set it
            # aside like a dropped row (it stays in the log) and read again.
            log.warning("%s: %d stored event(s) cannot be decoded; set aside as %s... (seq %s)", self.path.name,
                        len(unreadable), UNREADABLE, ", ".join(map(str, unreadable[:10])))
            self._stamp(unreadable, UNREADABLE + rfc3339(datetime.now(UTC)))

    def mark_delivered(self, seqs: list[int], at: datetime | None = None) -> None:
        if not seqs:
            return
        self._stamp(seqs, rfc3339(at or datetime.now(UTC)))

    def _stamp(self, seqs: list[int], stamp: str) -> None:
        """Set ``delivered_at`` of ``seqs``, in one transaction (one fsync, not one per event)."""
        self._transaction(lambda: self.db.conn.executemany(
            "UPDATE events SET delivered_at = ? WHERE seq = ?", [(stamp, seq) for seq in seqs]))

    def requeue_delivered_since(self, since: datetime) -> int:
        """Mark events acknowledged since ``since`` undelivered again, so they are sent once more.

        A broker without persistence that dies right after its PUBACK loses what it had not yet passed
        on; re-sending the last seconds' worth after an unexpected disconnect closes that gap (the
        platform drops duplicates by event id). Dropped rows stay dropped.
        """
        return self._run(lambda: int(self.db.execute(
            "UPDATE events SET delivered_at = NULL WHERE delivered_at >= ? AND delivered_at NOT LIKE 'dropped:%'",
            [rfc3339(since)],
        ).rowcount))

    def pending_count(self) -> int:
        return self._run(lambda: int(self.db.execute(
            "SELECT count(*) FROM events WHERE delivered_at IS NULL").fetchone()[0]))

    def oldest_pending_ts(self) -> datetime | None:
        row = self._run(lambda: self.db.execute(
            "SELECT ts FROM events WHERE delivered_at IS NULL ORDER BY seq LIMIT 1").fetchone())
        try:
            return datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row else None
        except (AttributeError, ValueError):  # a salvaged row with a garbled time
            return None

    def last_seq(self) -> int:
        return self._run(self._max_seq)

    def purge(self, retention_days: int, *, keep_undelivered: bool, now: datetime | None = None) -> int:
        """Delete events older than the retention period.

        With an uplink, undelivered events are kept whatever their age: no event is ever lost, and the
        outbox limit (not the clock) bounds the table.  The newest event is always kept: seq never
        goes back, and the high-water mark (``events.db.seq``) never sees an emptied log as a loss.
        """
        cutoff = rfc3339((now or datetime.now(UTC)) - timedelta(days=retention_days))
        sql = "DELETE FROM events WHERE ts < ? AND seq < (SELECT max(seq) FROM events)" + (
            " AND delivered_at IS NOT NULL" if keep_undelivered else "")
        with self._lock:
            removed = self._run(lambda: int(self.db.execute(sql, [cutoff]).rowcount))
            if removed and not self.in_memory:
                self._mark()  # the oldest seq moved up: not a loss
        return removed

    def follow(self, after_seq: int, *, poll: float = 0.5, stop: threading.Event | None = None,
               **filters: Any) -> Iterator[StoredEvent]:
        """Yield events appended after ``after_seq``, polling, until ``stop`` is set (works across processes)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self._reopen_if_replaced()
            batch = self.query(after_seq=after_seq, **filters)
            for stored in batch:
                after_seq = stored.seq
                yield stored
            if not batch:
                stop.wait(poll)

    # -- damage and healing -----------------------------------------------------------------------
    def _run(self, operation: Callable[[], T]) -> T:
        """``operation`` under the lock; a damaged page heals the file and runs it once more on the fresh one."""
        with self._lock:
            try:
                return operation()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                if self.readonly:
                    raise DamagedDatabase(
                        f"{self.path} is damaged ({why(exc)}). The agent moves it aside and salvages every "
                        "readable event when it next meets the damage or starts: restart it (systemctl restart "
                        "edge-agent) and run this again; see docs/storage.md") from None
                self._heal_while_running(exc)
            return operation()

    def _transaction(self, statements: Callable[[], object]) -> None:
        def run() -> None:
            self.db.execute("BEGIN")
            try:
                statements()
                self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (damage)
                    self.db.execute("ROLLBACK")
                raise

        self._run(run)

    def _heal_while_running(self, exc: sqlite3.DatabaseError) -> None:
        """Called with the lock held: swap in a healed file (or, on a card that keeps failing, memory)."""
        now = time.monotonic()
        self._heals = [at for at in self._heals if now - at < HEAL_WINDOW_SECONDS]
        with contextlib.suppress(sqlite3.Error):
            self.db.conn.close()
        healed: Healed | None = None
        if len(self._heals) >= MAX_HEALS:
            conn = in_memory_database(self.path, EVENTS_SCHEMA, self.reports,
                                      f"{self.path.name} was damaged {MAX_HEALS + 1} times within an hour "
                                      f"(last: {why(exc)}); the SD card is failing")
            self.in_memory = True
        else:
            self._heals.append(now)
            try:
                healed = heal(self.path, EVENTS_SCHEMA, why(exc), dense_rowids=True,
                              max_rowid=self._salvage_bound())
                conn = connect(self.path, EVENTS_SCHEMA, check=False)
            except Exception as error:  # whatever a hostile file does to the salvage, the node must not stop
                log.exception("%s: salvage failed", self.path)
                conn = in_memory_database(self.path, EVENTS_SCHEMA, self.reports,
                                          f"{self.path.name} is damaged ({why(exc)}) and could not be repaired "
                                          f"({why(error)})")
                self.in_memory, healed = True, None
        self.db = sqlite_utils.Database(conn)
        self._inode = _inode(self.path)
        self._check_high_water(healed)

    def _check_high_water(self, healed: Healed | None) -> None:
        """Report a heal, and any events the file lacks against the marks; then write the marks anew."""
        marks = self._high_water.read()
        if self.in_memory:  # nothing to compare; still, no seq the file or the platform has is used again
            self._seq_floor = (marks[0] + (0 if marks[2] else SALVAGE_SLACK)) if marks else 0
            return
        newest, oldest = self._max_seq(), self._min_seq()
        missing = 0
        if marks is not None:
            last, first, _ = marks
            if newest:  # events lost before the oldest left and after the newest left
                missing = max(0, oldest - first) if first else 0
                missing += max(0, last - newest)
            else:
                missing = last - first + 1 if first else last
            if last > newest:
                self._seq_floor = last
        if healed is not None and (marks is not None or healed.lost is None):
            # Rows lost between readable ones, plus the ends the file no longer has (None: not known).
            lost = healed.skipped + missing if marks is not None else healed.lost
            healed = Healed(healed.file, healed.reason, healed.recovered, lost, healed.damaged_copy,
                            healed.seconds, healed.skipped)
        elif healed is None and missing:
            rows = int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])
            last = marks[0] if marks else 0
            healed = Healed(self.path, f"it holds seq {oldest} to {newest} but the node had recorded up to seq "
                                       f"{last} (its -wal file deleted, the file emptied, or an older copy put "
                                       "back)", rows, missing)
        if healed is not None:
            self.reports.healed(healed)
        self._mark(floor=marks[0] if marks else 0)

    def _salvage_bound(self) -> int | None:
        """No event of this log has a seq above this: a salvaged cell that says so is garbled, and must not
        end the salvage (rows are read in seq order).  At open the mark may lag a crash by 2 s of events."""
        marks = self._high_water.read()
        if marks is None and not self._newest_seq:
            return None
        return max(self._newest_seq, (marks[0] + (0 if marks[2] else SALVAGE_SLACK)) if marks else 0)

    def _mark(self, floor: int = 0, *, clean: bool = False) -> None:
        """Write the marks: the newest seq used (never lower than ``floor``) and the oldest one held."""
        last = max(self._max_seq(), floor, self._seq_floor)
        self._high_water.write(last, self._min_seq() or last + 1, clean=clean)

    def _min_seq(self) -> int:
        return int(self.db.execute("SELECT coalesce(min(seq), 0) FROM events").fetchone()[0])

    def retry_file(self) -> bool:
        """Kept in memory because the file would not open (a full disk, a card that did not answer):
        try it again, at most every RETRY_FILE_SECONDS, and once it opens write every event memory
        holds into it, seqs and delivery marks as they are, and use the file from then on. True when
        the store is back on its file. The supervisor calls it; appends do too."""
        with self._lock:
            if not self._retry_file:
                return False
            now = time.monotonic()
            if now < self._next_file_try:
                return False
            self._next_file_try = now + RETRY_FILE_SECONDS
            columns = "seq, id, ts, node, type, device, details, delivered_at"
            try:
                conn = connect(self.path, EVENTS_SCHEMA)
            except sqlite3.Error:
                return False  # still not; a damaged file is healed at the next start
            try:
                rows = self.db.conn.execute(f"SELECT {columns} FROM events ORDER BY seq").fetchall()
                conn.execute("BEGIN")
                # The memory's seqs start above the file's mark (_check_high_water): none is taken.
                inserted = conn.executemany(f"INSERT OR IGNORE INTO events ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                            rows).rowcount
                conn.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                conn.close()
                return False
            memory, self.db = self.db.conn, sqlite_utils.Database(conn)
            memory.close()
            self.in_memory = self._retry_file = False
            self._inode = _inode(self.path)
            with contextlib.suppress(OSError, sqlite3.Error):
                self._mark()
        self.reports.usable_again(self.path, f"{self.path}: opened again; {inserted} event(s) kept in memory "
                                             f"written to it ({len(rows) - inserted} already there)")
        return True

    def _write_back_if_moved(self) -> None:
        """events.db deleted or replaced under the running agent (``rm``, ``mv``, a backup put back).

        The open connection still has the whole log, and an append-only log is never rightly rolled
        back: it is written back under its name, whatever was put there kept aside, and said.
        """
        if _inode(self.path) == self._inode:
            return
        scratch = self.path.with_name(self.path.name + ".restoring")
        remove_database(scratch)
        try:
            self.db.execute("VACUUM INTO ?", [str(scratch)])
        except sqlite3.Error as exc:
            log.error("%s was deleted or replaced while the agent ran and cannot be written back (%s)",
                      self.path, why(exc))
            self._inode = _inode(self.path)  # said once
            return
        self.db.conn.close()
        try:
            for ours in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                ours.unlink(missing_ok=True)  # SQLite keeps them when its file was renamed: no other file may meet them
            found = move_aside(self.path, "replaced") if self.path.exists() else None
            os.replace(scratch, self.path)
            self.db = sqlite_utils.Database(connect(self.path, EVENTS_SCHEMA, check=False))
        except (OSError, sqlite3.Error) as exc:
            self.db = sqlite_utils.Database(in_memory_database(
                self.path, EVENTS_SCHEMA, self.reports, f"{self.path.name} was deleted or replaced while the agent "
                f"ran and cannot be written back ({why(exc)})"))
            self.in_memory = True
            return
        self._inode = _inode(self.path)
        rows = int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])
        kept = f"; the file found there kept as {found.name}" if found else ""
        self.reports.healed(Healed(self.path, f"deleted or replaced while the agent ran: the running log was "
                                              f"written back{kept}", rows, 0))

    def _max_seq(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def _reopen_if_replaced(self) -> None:
        """A reader follows the file the agent writes, also after the agent swapped in a healed one."""
        if not self.readonly:
            return
        inode = _inode(self.path)
        if inode is not None and inode != self._inode:
            with self._lock:
                self.db.conn.close()
                self.db = sqlite_utils.Database(_open_read_only(self.path))
                self._inode = inode


class HighWater:
    """The newest and oldest seq the log holds, in a small file beside it (``events.db.seq``).

    "LAST FIRST CLEAN": CLEAN is 1 when written at a clean close (LAST is then exact), else 0.

    Written at most every HIGH_WATER_EVERY_SECONDS while recording, after a purge and at open and
    close, atomically (write, fsync, rename).  Never fails an append: a full or read-only disk only
    makes it stale.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0  # the newest seq written to the file by this process
        self._at = 0.0

    def read(self) -> tuple[int, int | None, bool] | None:
        """(last, first, written at a clean close); first is None in a mark of the first format."""
        try:
            parts = self.path.read_text().split()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s cannot be read (%s): a loss of events cannot be told this time", self.path, exc)
            return None
        if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
            log.warning("%s holds %r, not seqs: ignored (rewritten now)", self.path, " ".join(parts)[:40])
            return None
        return int(parts[0]), int(parts[1]) if len(parts) >= 2 else None, parts[2:] == ["1"]

    def due(self, seq: int) -> bool:
        return seq > self.written and time.monotonic() - self._at >= HIGH_WATER_EVERY_SECONDS

    def write(self, last: int, first: int, *, clean: bool = False) -> None:
        self._at = time.monotonic()
        scratch = self.path.with_name(self.path.name + ".tmp")
        try:
            with scratch.open("w") as handle:
                handle.write(f"{last} {first} {int(clean)}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, self.path)
            self.written = last
        except OSError as exc:
            log.warning("%s cannot be written (%s)", self.path, exc)


def _open_read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                           isolation_level=None, timeout=10)
    conn.text_factory = lenient_text
    return conn


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _decode(rows: list[dict[str, Any]]) -> tuple[list[StoredEvent], list[int]]:
    """Rows as events, and the seqs of rows that cannot be decoded (a salvaged row may be garbled)."""
    events, unreadable = [], []
    for row in rows:
        try:
            events.append(_stored(row))
        except (TypeError, ValueError, AttributeError, KeyError):
            unreadable.append(row["seq"])
    return events, unreadable


def _stored(row: dict[str, Any]) -> StoredEvent:
    if any(mark in (row[key] or "") for key in ("id", "ts", "node", "type", "device") for mark in ("\ufffd", "\x00")):
        raise ValueError("garbled text")  # invalid UTF-8 (see lenient_text) or a zeroed run of a damaged page
    details = json.loads(row["details"])
    if not isinstance(details, dict):
        raise ValueError("details is not an object")
    event = Event.model_construct(  # already validated when written
        id=row["id"], ts=datetime.fromisoformat(row["ts"].replace("Z", "+00:00")), node=row["node"],
        type=row["type"], device=row["device"], details=details,
    )
    return StoredEvent(row["seq"], event, row["delivered_at"])
