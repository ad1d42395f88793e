"""Events kept on the node in SQLite (through sqlite-utils) until the platform has them.

The table doubles as the uplink's outbox: ``delivered_at`` is NULL until the broker has
acknowledged the event, and rows are read back in ``seq`` order.  WAL with ``synchronous=FULL``
means a committed event survives a power cut; each append is its own transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.events import Event, rfc3339

Listener = Callable[["StoredEvent"], None]


@dataclass(frozen=True)
class StoredEvent:
    seq: int  # insertion order on this node; the outbox delivers in this order
    event: Event
    delivered_at: str | None


class EventStore:
    """Append-only event log with an outbox view. Safe to share between threads."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=10)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        if readonly:
            return
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on each commit: power-cut safe
        if "events" not in self.db.table_names():
            self.db["events"].create(
                {"seq": int, "id": str, "ts": str, "node": str, "type": str, "device": str,
                 "details": str, "delivered_at": str},
                pk="seq", not_null={"id", "ts", "node", "type", "details"},
            )
            self.db["events"].create_index(["id"], unique=True)
            self.db["events"].create_index(["ts"])
            self.db["events"].create_index(["type", "seq"])
            # The outbox query only ever looks at undelivered rows: keep that index small.
            self.db.execute("CREATE INDEX idx_events_pending ON events(seq) WHERE delivered_at IS NULL")

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def add_listener(self, listener: Listener) -> None:
        """Called after each committed append, in the appending thread (keep it quick)."""
        self._listeners.append(listener)

    def append(self, event: Event) -> StoredEvent:
        row = {
            "id": event.id, "ts": rfc3339(event.ts), "node": event.node, "type": event.type,
            "device": event.device, "details": json.dumps(event.details, ensure_ascii=False, separators=(",", ":")),
        }
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO events (id, ts, node, type, device, details) VALUES (:id, :ts, :node, :type, :device, "
                ":details)", row,
            )
            stored = StoredEvent(int(cursor.lastrowid or 0), event, None)
        for listener in list(self._listeners):
            listener(stored)
        return stored

    def append_many(self, events: list[Event]) -> list[StoredEvent]:
        """Append ``events`` in one transaction (one fsync for a burst): all of them, or none on an error."""
        with self._lock:  # held to the COMMIT: no other thread reads rows that may yet be rolled back
            self.db.execute("BEGIN")
            try:
                stored = [self.append(event) for event in events]
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.conn.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL)
                    self.db.execute("ROLLBACK")
                raise
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
        with self._lock:
            rows = list(self.db.query(sql, params))
        return [_stored(row) for row in rows]

    def pending(self, limit: int = 100, after_seq: int = 0) -> list[StoredEvent]:
        """Undelivered events, oldest first: the uplink's outbox."""
        with self._lock:
            rows = list(self.db.query(
                "SELECT * FROM events WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                [after_seq, limit],
            ))
        return [_stored(row) for row in rows]

    def mark_delivered(self, seqs: list[int], at: datetime | None = None) -> None:
        if not seqs:
            return
        stamp = rfc3339(at or datetime.now(UTC))
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.conn.executemany(
                    "UPDATE events SET delivered_at = ? WHERE seq = ?", [(stamp, seq) for seq in seqs]
                )
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.conn.in_transaction:  # after SQLITE_FULL SQLite has rolled back already
                    self.db.execute("ROLLBACK")
                raise

    def requeue_delivered_since(self, since: datetime) -> int:
        """Mark events acknowledged since ``since`` undelivered again, so they are sent once more.

        A broker without persistence that dies right after its PUBACK loses what it had not yet passed
        on; re-sending the last seconds' worth after an unexpected disconnect closes that gap (the
        platform drops duplicates by event id). Dropped rows stay dropped.
        """
        with self._lock:
            return int(self.db.execute(
                "UPDATE events SET delivered_at = NULL WHERE delivered_at >= ? AND delivered_at NOT LIKE 'dropped:%'",
                [rfc3339(since)],
            ).rowcount)

    def pending_count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM events WHERE delivered_at IS NULL").fetchone()[0])

    def oldest_pending_ts(self) -> datetime | None:
        with self._lock:
            row = self.db.execute(
                "SELECT ts FROM events WHERE delivered_at IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        return datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row else None

    def last_seq(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def purge(self, retention_days: int, *, keep_undelivered: bool, now: datetime | None = None) -> int:
        """Delete events older than the retention period.

        With an uplink, undelivered events are kept whatever their age: no event is ever lost, and the
        outbox limit (not the clock) bounds the table.
        """
        cutoff = rfc3339((now or datetime.now(UTC)) - timedelta(days=retention_days))
        sql = "DELETE FROM events WHERE ts < ?" + (" AND delivered_at IS NOT NULL" if keep_undelivered else "")
        with self._lock:
            return int(self.db.execute(sql, [cutoff]).rowcount)

    def follow(self, after_seq: int, *, poll: float = 0.5, stop: threading.Event | None = None,
               **filters: Any) -> Iterator[StoredEvent]:
        """Yield events appended after ``after_seq``, polling, until ``stop`` is set (works across processes)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            batch = self.query(after_seq=after_seq, **filters)
            for stored in batch:
                after_seq = stored.seq
                yield stored
            if not batch:
                stop.wait(poll)


def _stored(row: dict[str, Any]) -> StoredEvent:
    event = Event.model_construct(  # already validated when written
        id=row["id"], ts=datetime.fromisoformat(row["ts"].replace("Z", "+00:00")), node=row["node"],
        type=row["type"], device=row["device"], details=json.loads(row["details"]),
    )
    return StoredEvent(row["seq"], event, row["delivered_at"])
