"""The outbox side of the uplink: undelivered events out in order, marked delivered only on PUBACK.

:class:`OutboxPublisher` is driven by the uplink's network thread and owns the map of in-flight
message ids.  A lost connection throws that map away and the next connection starts again from the
oldest undelivered row: delivery is at-least-once and every payload carries the event id (and the
node-local ``seq``) so the platform drops duplicates and can see gaps.

:class:`BacklogGuard` bounds the outbox.  Policy (also in docs/mqtt.md): recording never stops.
Above ``outbox.max_pending`` undelivered events the node raises ``uplink.backlog_full`` (event and
retained ``state/uplink``) once, then drops the *oldest undelivered events of the droppable types
only* (door.opened / door.closed by default) down to the limit, and records
``uplink.events_dropped`` with how many of each type.  Access, alarm and fault events are never
dropped; if they alone exceed the limit the outbox grows past it and the state stays loud.
A dropped row stays in the local log with ``delivered_at = "dropped:<time>"``.

A full disk must not turn into a resend loop: an event the broker acknowledged stays acknowledged in
memory until SQLite takes its ``delivered_at`` (tried again every :data:`MARK_RETRY_SECONDS`), and is
not published again meanwhile, on this connection or the next (docs/durability.md).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from agent.config_mqtt import OutboxConfig
from agent.event_store import EventStore, StoredEvent
from agent.events import rfc3339

log = logging.getLogger(__name__)

Emit = Callable[[str, str | None, dict[str, Any]], None]
PREFETCH = 500  # rows read from SQLite per query; the in-flight window is refilled from this buffer
MARK_RETRY_SECONDS = 1.0  # while SQLite refuses the delivery marks (a full disk)


def event_payload(stored: StoredEvent) -> bytes:
    """Compact UTF-8 JSON of one event, with the node-local sequence number."""
    event = stored.event
    body = {"id": event.id, "seq": stored.seq, "ts": rfc3339(event.ts), "node": event.node, "type": event.type,
            "device": event.device, "details": event.details}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class OutboxPublisher:
    def __init__(self, store: EventStore, root: str, max_in_flight: int) -> None:
        self._store = store
        self._root = root
        self._max_in_flight = max_in_flight
        self._in_flight: dict[int, int] = {}  # MQTT message id -> event seq
        self._buffer: deque[StoredEvent] = deque()
        self._after_seq = 0  # highest seq read into the buffer on this connection
        # Acknowledged by the broker, not yet marked in SQLite: seq -> time.time() of the PUBACK.  Kept
        # across reconnects, so a mark the disk refused never makes an event go out again.
        self._acked: dict[int, float] = {}
        self._mark_retry_at = 0.0
        self._maybe_more = True  # set by the store listener, so an idle uplink does not poll SQLite
        self.mark_error: str | None = None  # why SQLite refused the last delivery marks; None when it took them
        self.published = 0
        self.delivered = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def notify(self) -> None:
        """An event was appended (called from the appending thread)."""
        self._maybe_more = True

    def reset(self) -> None:
        """Forget everything about the old connection; unacknowledged rows are simply read again."""
        self._in_flight.clear()
        self._buffer.clear()
        self._after_seq = 0
        self._maybe_more = True
        self.flush()  # PUBACKs that did arrive still count

    def pump(self, client: mqtt.Client) -> int:
        """Fill the in-flight window; returns how many events were handed to paho."""
        sent = 0
        while len(self._in_flight) < self._max_in_flight:
            if not self._buffer:
                if not self._maybe_more:
                    break
                self._maybe_more = False  # cleared before reading: an append during the query sets it again
                batch = self._store.pending(limit=PREFETCH, after_seq=self._after_seq)
                if not batch:
                    break
                if len(batch) == PREFETCH:
                    self._maybe_more = True
                self._buffer.extend(stored for stored in batch if stored.seq not in self._acked)
                self._after_seq = batch[-1].seq
                if not self._buffer:
                    continue
            stored = self._buffer[0]
            info = client.publish(f"{self._root}/events/{stored.event.type}", event_payload(stored), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # connection going down; the row stays pending and is read again next time
            self._buffer.popleft()
            self._in_flight[info.mid] = stored.seq
            sent += 1
        self.published += sent
        return sent

    def acknowledged(self, mid: int, failed: bool) -> bool:
        """PUBACK for ``mid``. Returns False when the broker refused an event (caller reconnects)."""
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return True  # a state/result/telemetry publish, not an event
        if failed:
            log.warning("broker refused event seq %d; reconnecting to resend from the oldest pending", seq)
            return False
        self._acked[seq] = time.time()
        return True

    def flush(self) -> int:
        """Mark acknowledged events delivered, one transaction per batch (one fsync, not one per event).

        If SQLite refuses (a full disk), the marks wait in memory and are tried again a second later;
        ``mark_error`` says why.  Never raises for that: a resend loop would be worse than the wait.
        """
        if not self._acked or time.monotonic() < self._mark_retry_at:
            return 0
        seqs = list(self._acked)
        try:
            self._store.mark_delivered(seqs)
        except (sqlite3.Error, OSError) as exc:
            self.mark_error = str(exc)
            self._mark_retry_at = time.monotonic() + MARK_RETRY_SECONDS
            return 0
        for seq in seqs:
            del self._acked[seq]
        self.mark_error = None
        self.delivered += len(seqs)
        return len(seqs)

    @property
    def unmarked(self) -> int:
        """Events the broker acknowledged whose delivery SQLite has not recorded yet."""
        return len(self._acked)

    def resend_acknowledged_since(self, since: float) -> int:
        """Unmarked events acknowledged since ``since`` (time.time()) go out again (the resend window)."""
        again = [seq for seq, at in self._acked.items() if at >= since]
        for seq in again:
            del self._acked[seq]
        return len(again)


class BacklogGuard:
    """Keeps the outbox bounded and loud; see the module docstring for the policy."""

    def __init__(self, store: EventStore, config: OutboxConfig, emit: Emit,
                 on_state: Callable[[dict[str, Any]], None]) -> None:
        self._store = store
        self._config = config
        self._emit = emit
        self._on_state = on_state
        self.full = False
        self.dropped_total = 0

    def check(self) -> None:
        limit = self._config.max_pending
        pending = self._store.pending_count()
        if pending > limit:
            if not self.full:
                self.full = True
                self._emit("uplink.backlog_full", None, {"pending": pending, "limit": limit})
                self._on_state(self.state(pending))
            dropped = drop_oldest(self._store, self._config.droppable_types, pending - limit)
            if dropped:
                self.dropped_total += sum(dropped.values())
                self._emit("uplink.events_dropped", None, {"count": sum(dropped.values()), "by_type": dropped})
                self._on_state(self.state(self._store.pending_count()))
        elif self.full and pending <= limit * 0.9:  # hysteresis: no flapping around the limit
            self.full = False
            self._emit("uplink.backlog_cleared", None, {"pending": pending, "limit": limit})
            self._on_state(self.state(pending))

    def state(self, pending: int) -> dict[str, Any]:
        return {"backlog_full": self.full, "pending": pending, "limit": self._config.max_pending,
                "dropped_total": self.dropped_total}


def drop_oldest(store: EventStore, types: list[str], count: int) -> dict[str, int]:
    """Stamp the ``count`` oldest undelivered events of ``types`` as dropped; returns counts per type."""
    if count <= 0 or not types:
        return {}
    marks = ",".join("?" for _ in types)
    stamp = "dropped:" + rfc3339(datetime.now(UTC))
    # Our own connection: the store's is busy with appends; WAL and the busy timeout serialise writers.
    conn = sqlite3.connect(str(store.path), timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            f"SELECT seq, type FROM events WHERE delivered_at IS NULL AND type IN ({marks}) ORDER BY seq LIMIT ?",
            [*types, count],
        ).fetchall()
        conn.executemany("UPDATE events SET delivered_at = ? WHERE seq = ?", [(stamp, seq) for seq, _ in rows])
        conn.execute("COMMIT")
    finally:
        conn.close()
    if rows:
        log.warning("outbox over its limit: dropped %d low-value events", len(rows))
    return dict(Counter(kind for _, kind in rows))
