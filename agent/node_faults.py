"""Faults of the node itself: its storage, whitelist, uplink and configuration files.

A node that cannot write its events, read its whitelist or reach its broker must keep opening for
exit buttons and releasing exits on fire (those depend on GPIO alone), and must say what is wrong
where a technician and the platform look: one ``node.fault`` event, one line in ``edge-agent
status``, one log line.  A fault that persists is logged again at most once a minute, so a full
disk does not bury the journal in tracebacks; when it clears, ``node.recovered`` says so once.

Device faults (cameras, barriers, smoke detectors) keep their own events; this is for what the
agent itself runs on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edge_agent.faults")

Emit = Callable[[str, str | None, dict[str, Any]], object]

REPEAT_LOG_SECONDS = 60.0
MAX_REASON = 200  # an event detail string's limit (agent.events.MAX_DETAIL_STRING)


@dataclass
class _Fault:
    reason: str
    since: float
    last_logged: float
    repeats: int = 0


class NodeFaults:
    """``report(component, reason)`` as often as the fault is seen; ``clear(component)`` when it is gone.

    Components are short names a technician reads in ``status``: ``storage``, ``storage/parking``,
    ``whitelist``, ``uplink``, ``config``.  Safe to call from any thread; never raises.
    """

    def __init__(self, emit: Emit, *, clock: Callable[[], float] = time.monotonic,
                 repeat_seconds: float = REPEAT_LOG_SECONDS) -> None:
        self._emit = emit
        self._clock = clock
        self._repeat = repeat_seconds
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}

    def report(self, component: str, reason: str) -> bool:
        """Record that ``component`` is failing; True the first time (when the event was emitted)."""
        reason = reason.strip()[:MAX_REASON] or "failed"
        now = self._clock()
        with self._lock:
            fault = self._faults.get(component)
            if fault is None:
                self._faults[component] = _Fault(reason, now, now)
                first = True
            else:
                fault.repeats += 1
                fault.reason = reason
                first = False
                if now - fault.last_logged < self._repeat:
                    return False
                fault.last_logged = now
                repeats, fault.repeats = fault.repeats, 0
        if first:
            log.error("%s: %s", component, reason)
            self._safe_emit("node.fault", {"component": component, "reason": reason})
        else:
            log.error("%s still failing (%d more time(s) since the last line): %s", component, repeats, reason)
        return first

    def clear(self, component: str) -> bool:
        """``component`` works again; True if it had been failing (``node.recovered`` was emitted)."""
        with self._lock:
            fault = self._faults.pop(component, None)
        if fault is None:
            return False
        seconds = round(self._clock() - fault.since, 1)
        log.warning("%s recovered after %.1f s", component, seconds)
        self._safe_emit("node.recovered", {"component": component, "seconds": seconds})
        return True

    def active(self) -> dict[str, str]:
        """component → reason, for ``status`` and the retained state."""
        with self._lock:
            return {name: fault.reason for name, fault in sorted(self._faults.items())}

    def failing(self, component: str) -> bool:
        with self._lock:
            return component in self._faults

    def _safe_emit(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self._emit(kind, None, details)
        except Exception:  # a fault report must never become the next fault
            log.exception("could not record %s", kind)
