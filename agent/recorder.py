"""Writes events to the store in one thread of its own, in the order they were emitted, in batches.

Drivers emit from gpiozero's pin-callback threads (with lgpio, one thread serves every input). If
they wrote to SQLite themselves, one slow or stuck write would delay every door, button and smoke
edge behind it.  So :meth:`Recorder.put` only queues; the recorder thread takes everything queued
(up to :data:`MAX_BATCH`) and commits it in one transaction, as soon as it is there: no timer, so
the window between an emit and its commit is the queue wait plus one commit (docs/durability.md
has the measured figures).  One transaction per batch means one fsync for a burst, which is what
keeps a slow SD card ahead of a busy building.

Whoever must not acknowledge an event before it is durable (the control socket, a platform command's
result) takes :meth:`mark` after emitting and waits with :meth:`wait_written`; it gets False at
once if the disk is refusing writes, so it can say so instead of lying.

When the store refuses writes (a full disk, an I/O error, a locked file) nothing is lost: the
events stay in memory, in order, and are retried (0.1 s, doubling to 0.5 s) until the store takes
them again, by itself.  The fault is reported through :class:`~agent.node_faults.NodeFaults` as
component ``storage`` (one log line a minute, no tracebacks) and cleared on the first success.
Memory is bounded: past :data:`SOFT_LIMIT` queued events the oldest low-value ones (door contacts)
are dropped; past :data:`HARD_LIMIT` the oldest of any type.  Every drop is counted by type, logged
at once, and recorded as ``storage.events_dropped`` when the disk is back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from agent.events import Event
from agent.node_faults import NodeFaults

log = logging.getLogger("edge_agent.recorder")

STUCK_SECONDS = 30.0  # one write (or a listener) taking this long means the disk or a listener is stuck
MAX_BATCH = 500  # events per transaction
# Seconds between attempts while the store refuses writes: a refused insert costs well under a
# millisecond, and the cap is the worst time to recover once space is freed (bench/bench_durability.py).
RETRY_FIRST, RETRY_MAX = 0.1, 0.5
# About 1 KB of memory per queued event (bench/bench_durability.py): 20,000 ≈ 20 MB, 100,000 ≈ 100 MB.
SOFT_LIMIT = 20_000
HARD_LIMIT = 100_000
LOW_VALUE_TYPES = frozenset({"door.opened", "door.closed"})  # dropped first; access, alarm, fault events last
COMPONENT = "storage"

Write = Callable[[list[Event]], None]
Emit = Callable[[str, str | None, dict[str, Any]], object]

# Errors that say "this event can never be written" (a bug, a duplicate id), as opposed to "the
# store cannot write now" (full, I/O error, locked, damaged): those are retried, these are not.
_UNWRITABLE = (sqlite3.IntegrityError, sqlite3.InterfaceError, TypeError, ValueError)


class Recorder:
    def __init__(self, write: Write, *, faults: NodeFaults | None = None, emit: Emit | None = None,
                 where: str = "the event store", soft_limit: int = SOFT_LIMIT, hard_limit: int = HARD_LIMIT) -> None:
        self._write = write
        self._faults = faults or NodeFaults(emit or _nowhere)
        self._emit = emit
        self._where = where
        self._soft, self._hard = soft_limit, max(hard_limit, soft_limit)
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Event]] = deque()  # (ticket, event), oldest first
        self._batch: list[tuple[int, Event]] = []  # taken by the thread for the transaction under way
        self._last_ticket = 0  # ticket of the newest event put
        self._written = 0  # every ticket up to this one is committed (or was dropped, counted)
        self._failed_through = 0  # the last failed attempt left every ticket up to this one unwritten
        self._failures = 0  # failed attempts so far
        self._retry_now = False
        self._stopping = False
        self._abandoned = False  # stop() gave up waiting: the store is about to close, write nothing more
        self._next_shed = 0  # ticket from which the next pass over the queue may drop low-value events
        self._failing: str | None = None  # why the store refuses writes; None while it takes them
        self._busy_since: float | None = None
        self._dropped: Counter[str] = Counter()  # dropped from memory, not yet recorded
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- producers --------------------------------------------------------------------------------
    def put(self, event: Event) -> int:
        """Queue ``event``; returns its ticket. Never blocks on the disk."""
        with self._cond:
            self._last_ticket += 1
            self._queue.append((self._last_ticket, event))
            if len(self._queue) > self._hard:
                self._drop_oldest()
            elif len(self._queue) > self._soft and self._last_ticket >= self._next_shed:
                self._shed_low_value()
                self._next_shed = self._last_ticket + max(1, self._soft // 10)  # one pass per soft/10 events
            self._cond.notify_all()
            return self._last_ticket

    def mark(self) -> int:
        """The ticket of the newest event put so far: wait for it to cover everything emitted until now."""
        with self._cond:
            return self._last_ticket

    def wait_written(self, ticket: int, timeout: float = 2.0) -> bool:
        """True once the event with ``ticket`` (and every earlier one) is committed.

        False after ``timeout``, or as soon as an attempt to write it has failed (a full disk): the
        caller says "not recorded yet" rather than keep a technician or the platform waiting.
        """
        with self._cond:
            if self._written >= ticket:
                return True
            failures = self._failures
            self._retry_now = True  # someone is waiting: try the disk again now, not after the backoff
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._written >= ticket or (
                self._failures > failures and self._failed_through >= ticket), timeout)
            return self._written >= ticket

    def written_since(self, mark: int, timeout: float = 2.0) -> bool | None:
        """Before acknowledging: None if no event was put after ``mark`` (from :meth:`mark`), else
        whether all of them are committed (:meth:`wait_written`)."""
        latest = self.mark()
        return None if latest == mark else self.wait_written(latest, timeout)

    # -- state ------------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Events not yet committed (queued, or in the transaction under way)."""
        with self._cond:
            return len(self._queue) + len(self._batch)

    @property
    def failing(self) -> str | None:
        return self._failing

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event put so far is written (tests, shutdown)."""
        with self._cond:
            target = self._last_ticket
            return self._cond.wait_for(lambda: self._written >= target, timeout)

    def healthy(self) -> bool:
        """False only when the thread is gone or one write has hung; a full disk is a fault, not a hang
        (the events wait in memory, and a watchdog restart would lose them)."""
        busy = self._busy_since
        alive = self._thread.is_alive() or not self._thread.ident
        return alive and (busy is None or time.monotonic() - busy < STUCK_SECONDS)

    def stop(self, timeout: float = 2.0) -> bool:
        """Write what is queued (up to ``timeout``), then end the thread. False if events were left,
        and then each one that is not a door contact is logged in full: the journal keeps it."""
        with self._cond:
            self._stopping = self._retry_now = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            self._abandoned = True
            left = self._batch + list(self._queue)  # a batch still in hand means its write hung
        if left:
            by_type = Counter(event.type for _, event in left)
            log.error("%d event(s) could not be written to %s before exit (%s): %s", len(left), self._where,
                      self._failing or "no time left", ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())))
            for _, event in left:
                if event.type not in LOW_VALUE_TYPES:
                    log.error("unwritten event: %s", event.model_dump_json())
        return not left

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue or self._abandoned:
                    return
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                self._batch = batch
                self._busy_since = time.monotonic()
            error = self._write_batch([event for _, event in batch])
            with self._cond:
                self._busy_since, self._batch = None, []
                if error is None:
                    # All written; an empty queue also settles tickets dropped from memory after the batch.
                    self._written = batch[-1][0] if self._queue else self._last_ticket
                else:
                    self._queue.extendleft(reversed(batch))
                    self._failed_through = self._last_ticket  # everything queued waits behind this batch
                    self._failures += 1
                    self._retry_now = False
                self._cond.notify_all()
            if error is None:
                delay = RETRY_FIRST
                self._recovered()
                continue
            self._report(error)
            with self._cond:
                self._cond.wait_for(lambda: self._retry_now, delay)
                self._retry_now = False
            delay = min(delay * 2, RETRY_MAX)

    def _write_batch(self, events: list[Event]) -> Exception | None:
        """Commit ``events``; the error if the store cannot take them now (they will be retried)."""
        try:
            self._write(events)
            return None
        except _UNWRITABLE:
            return self._write_one_by_one(events)
        except Exception as exc:  # full, I/O error, locked, damaged: keep them all and retry
            return exc

    def _write_one_by_one(self, events: list[Event]) -> Exception | None:
        """A batch held an event that can never be written: write the others, drop that one loudly."""
        for event in events:
            if self._abandoned:
                return RuntimeError("recorder stopped")
            try:
                self._write([event])
            except sqlite3.IntegrityError:
                log.warning("event %s %s was already stored; not writing it twice", event.type, event.id)
            except _UNWRITABLE as exc:
                log.error("event cannot be stored (%s), dropped: %s", exc, event.model_dump_json())
                with self._cond:
                    self._dropped[event.type] += 1
            except Exception as exc:
                return exc  # the store itself failed part-way: the batch is retried (duplicates are skipped)
        return None

    def _report(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}" if not isinstance(error, sqlite3.Error) else str(error)
        self._failing = reason
        self._faults.report(COMPONENT, f"cannot write events to {self._where}: {reason}; {self.backlog} event(s) "
                                       "kept in memory and written when it works again (full disk? df -h)")

    def _recovered(self) -> None:
        if self._failing is not None:
            self._failing = None
            self._faults.clear(COMPONENT)
        with self._cond:
            dropped, self._dropped = self._dropped, Counter()
        if dropped and self._emit is not None:
            self._emit("storage.events_dropped", None, {"count": sum(dropped.values()), "by_type": dict(dropped)})

    def _drop_oldest(self) -> None:
        """Over the hard limit (caller holds the lock): the oldest event goes, whatever its type."""
        dropped = self._queue.popleft()[1]
        self._dropped[dropped.type] += 1
        if sum(self._dropped.values()) % 1000 == 1:  # said at once, then every thousandth
            log.error("%d events waiting for %s, the most memory allows: dropping the oldest (%s so far: %s)",
                      len(self._queue), self._where, sum(self._dropped.values()), dict(self._dropped))

    def _shed_low_value(self) -> None:
        """Over the soft limit (caller holds the lock): drop the oldest low-value events, down to 90 %."""
        excess = len(self._queue) - int(self._soft * 0.9)
        kept: deque[tuple[int, Event]] = deque()
        dropped: Counter[str] = Counter()
        for item in self._queue:
            if excess > 0 and item[1].type in LOW_VALUE_TYPES:
                dropped[item[1].type] += 1
                excess -= 1
            else:
                kept.append(item)
        if dropped:
            self._queue = kept
            self._dropped.update(dropped)
            log.error("%d events waiting for %s: dropped %s from memory; access, alarm and fault events are kept",
                      len(kept), self._where, ", ".join(f"{count} {kind}" for kind, count in sorted(dropped.items())))


def _nowhere(_kind: str, _device: str | None, _details: dict[str, Any]) -> None:
    """Where a recorder without an emit sends its fault events (benches): only the log line remains."""
