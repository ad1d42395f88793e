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
"""

from __future__ import annotations

import json
import logging
import sqlite3
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
        self._acked: list[int] = []
        self._maybe_more = True  # set by the store listener, so an idle uplink does not poll SQLite
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
                self._buffer.extend(batch)
                self._after_seq = batch[-1].seq
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
        self._acked.append(seq)
        return True

    def flush(self) -> int:
        """Mark acknowledged events delivered, one transaction per batch (one fsync, not one per event)."""
        if not self._acked:
            return 0
        seqs, self._acked = self._acked, []
        self._store.mark_delivered(seqs)
        self.delivered += len(seqs)
        return len(seqs)


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
