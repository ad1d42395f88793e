"""Writes events to the store in one thread of its own, in the order they were emitted.

Drivers emit from gpiozero's pin-callback threads (with lgpio, one thread serves every input). If
they wrote to SQLite themselves, one slow or stuck write would delay every door, button and smoke
edge behind it. The queue is unbounded on purpose: dropping an event is worse than memory, and the
watchdog (see :meth:`Recorder.healthy`) restarts the agent if writing stops for good.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from agent.events import Event

log = logging.getLogger("edge_agent.recorder")

STUCK_SECONDS = 30.0  # an event waiting this long means the disk or a listener is stuck


class Recorder:
    def __init__(self, write: Callable[[Event], None]) -> None:
        self._write = write
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._pending = 0
        self._busy_since: float | None = None
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def put(self, event: Event) -> None:
        with self._lock:
            self._pending += 1
        self._queue.put(event)

    @property
    def backlog(self) -> int:
        return self._pending

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event put so far is written (tests, shutdown)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def healthy(self) -> bool:
        busy = self._busy_since
        return not self._failing and (busy is None or time.monotonic() - busy < STUCK_SECONDS)

    def stop(self, timeout: float = 2.0) -> bool:
        """Write what is queued (up to ``timeout``), then end the thread. False if events were left."""
        if not self._thread.is_alive():
            return self._pending == 0
        self._queue.put(None)
        self._thread.join(timeout)
        return self._pending == 0

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            self._busy_since = time.monotonic()
            while True:
                try:
                    self._write(event)
                    self._failing = False
                    break
                except Exception:
                    # Keep the event and retry: a full disk may be cleaned, a locked file released.
                    self._failing = True
                    time.sleep(1.0)
            self._busy_since = None
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()
