"""Fire safety: a confirmed smoke alarm releases the exits and keeps them released.

The release runs in the thread that confirmed the alarm (the smoke driver's timer), touching only
GPIO: it never waits for the camera, recognition, uplink or database threads.  The latch survives
the alarm clearing and an agent restart (it is persisted); only a technician's reset, once every
detector is quiet, ends it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.barrier import Barrier
from drivers.gate import Gate
from drivers.indicators import Indicator

log = logging.getLogger("edge_agent.fire")


class ResetRefused(ValueError):
    """The latch cannot be reset yet; the message says why in plain language."""


class FireSafety:
    def __init__(self, latch_file: Path) -> None:
        self.latch_file = latch_file
        self._lock = threading.RLock()
        self._gates: list[Gate] = []
        self._barriers: list[Barrier] = []
        self._indicators: list[Indicator] = []
        self._active: set[str] = set()  # detectors whose input is in alarm now
        self.latched_since: str | None = None
        self.triggered_by: list[str] = []
        if latch_file.exists():
            try:
                saved = json.loads(latch_file.read_text())
                self.latched_since = saved["since"]
                self.triggered_by = list(saved.get("detectors", []))
                log.warning("fire-alarm latch from %s is still set: exits stay released until reset",
                            self.latched_since)
            except (OSError, ValueError, KeyError):
                # A damaged latch file errs on the side of the exits: treat it as latched.
                self.latched_since = datetime.now(UTC).isoformat()
                log.error("fire-alarm latch file %s is unreadable; treating the alarm as latched", latch_file)

    @property
    def latched(self) -> bool:
        return self.latched_since is not None

    def attach(self, gates: Iterable[Gate], barriers: Iterable[Barrier], indicators: Iterable[Indicator]) -> None:
        """(Re)bind the hardware, e.g. after a config reload; re-applies a standing latch at once."""
        with self._lock:
            self._gates, self._barriers, self._indicators = list(gates), list(barriers), list(indicators)
            if self.latched:
                self._release()

    def alarm(self, detector: str) -> None:
        """A detector confirmed an alarm: latch and release first, persist after.

        The latch is set before any relay is touched, so a device that fails (a relay closed by a
        reload under way, a driver error) can neither lose the alarm nor keep the others shut:
        :meth:`attach` re-applies a standing latch to whatever devices are bound next."""
        with self._lock:
            self._active.add(detector)
            if not self.latched:
                self.latched_since = datetime.now(UTC).isoformat()
            if detector not in self.triggered_by:
                self.triggered_by.append(detector)
            self._release()
        self._persist()

    def cleared(self, detector: str) -> None:
        with self._lock:
            self._active.discard(detector)

    def reset(self, detectors_in_alarm: Iterable[str] = ()) -> list[str]:
        """End the latch and return the gates and barriers to normal; refuse while any detector is active."""
        with self._lock:
            still = sorted(self._active | set(detectors_in_alarm))
            if still:
                raise ResetRefused(f"smoke detector(s) still in alarm: {', '.join(still)}; clear them first")
            if not self.latched:
                raise ResetRefused("no fire alarm is latched")
            triggered, self.triggered_by, self.latched_since = self.triggered_by, [], None
            for gate in self._gates:
                if gate.config.fire_mode == "release":
                    gate.release_hold()
            for barrier in self._barriers:
                barrier.release_hold()
            for indicator in self._indicators:
                indicator.stop_alarm()
        try:
            self.latch_file.unlink(missing_ok=True)
        except OSError:
            log.exception("could not remove the latch file %s", self.latch_file)
        return triggered

    def state(self) -> dict[str, Any]:
        return {"latched": self.latched, "since": self.latched_since, "detectors": list(self.triggered_by),
                "active": sorted(self._active)}

    def _release(self) -> None:
        # Exits first, then the alarm sounder, then the car park; each on its own, so one failing
        # device does not keep the next one shut.
        actions = [gate.hold_unlocked for gate in self._gates if gate.config.fire_mode == "release"]
        actions += [lambda i=indicator: i.show("alarm") for indicator in self._indicators if indicator.shows("alarm")]
        actions += [barrier.hold_up for barrier in self._barriers]
        for action in actions:
            try:
                action()
            except Exception:
                log.exception("fire release: %s failed", getattr(action, "__self__", action))

    def _persist(self) -> None:
        data = json.dumps({"since": self.latched_since, "detectors": self.triggered_by})
        tmp = self.latch_file.with_suffix(".tmp")
        try:
            self.latch_file.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.latch_file)
        except OSError:
            log.exception("could not persist the fire-alarm latch (exits are released regardless)")
