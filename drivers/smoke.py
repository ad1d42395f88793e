"""Smoke detector: the alarm relay contact, debounced by a confirm time, and an optional fault line.

An alarm counts only when the input stays active for ``confirm_ms``: a detector's relay chatters when
its supply sags, and a false fire release opens every exit in the building.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, Factory

from agent.config import SmokeDetectorConfig

log = logging.getLogger("edge_agent.smoke")

SmokeHappening = Callable[[str, dict[str, Any]], None]
"""on_event(kind, details), kind one of: smoke.alarm, smoke.cleared, smoke.fault (details: active)."""


class SmokeDetector:
    def __init__(self, config: SmokeDetectorConfig, pin_factory: Factory | None = None,
                 on_event: SmokeHappening | None = None) -> None:
        self.config = config
        self.name = config.name
        self._on_event = on_event or (lambda kind, details: None)
        self._lock = threading.Lock()
        self._confirm_timer: threading.Timer | None = None
        self._confirmed = False
        self.alarm_input = DigitalInputDevice(config.alarm_pin, pull_up=config.active_low, pin_factory=pin_factory)
        self.fault_input: DigitalInputDevice | None = None
        if config.fault_pin is not None:
            self.fault_input = DigitalInputDevice(config.fault_pin, pull_up=True, pin_factory=pin_factory)
            self.fault_input.when_activated = lambda: self._report("smoke.fault", {"active": True})
            self.fault_input.when_deactivated = lambda: self._report("smoke.fault", {"active": False})
        self.alarm_input.when_activated = self._alarm_started
        self.alarm_input.when_deactivated = self._alarm_stopped
        if self.alarm_input.is_active:  # started (or restarted) in the middle of an alarm
            self._alarm_started()

    @property
    def in_alarm(self) -> bool:
        """A confirmed alarm whose input is still active."""
        return self._confirmed

    @property
    def input_active(self) -> bool:
        return bool(self.alarm_input.is_active)

    @property
    def fault(self) -> bool:
        return bool(self.fault_input is not None and self.fault_input.is_active)

    def state(self) -> dict[str, Any]:
        return {"alarm": self._confirmed, "input_active": self.input_active, "fault": self.fault}

    def close(self) -> None:
        with self._lock:
            if self._confirm_timer:
                self._confirm_timer.cancel()
        self.alarm_input.close()
        if self.fault_input is not None:
            self.fault_input.close()

    def _alarm_started(self) -> None:
        if self.config.confirm_ms == 0:
            self._confirm()
            return
        with self._lock:
            if self._confirm_timer is not None or self._confirmed:
                return
            self._confirm_timer = threading.Timer(self.config.confirm_ms / 1000, self._confirm)
            self._confirm_timer.daemon = True
            self._confirm_timer.name = f"smoke-{self.name}-confirm"
            self._confirm_timer.start()

    def _confirm(self) -> None:
        with self._lock:
            self._confirm_timer = None
            if self._confirmed or not self.alarm_input.is_active:
                return
            self._confirmed = True
        self._report("smoke.alarm", {"confirm_ms": self.config.confirm_ms})

    def _alarm_stopped(self) -> None:
        with self._lock:
            if self._confirm_timer is not None:
                self._confirm_timer.cancel()
                self._confirm_timer = None
            was_confirmed, self._confirmed = self._confirmed, False
        if was_confirmed:
            self._report("smoke.cleared", {})

    def _report(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self._on_event(kind, details)
        except Exception:
            log.exception("smoke detector %s: handler for %s failed", self.name, kind)
