"""Pedestrian gate: lock relay, door contact, exit button, assist button.

The driver knows the wiring and the physics (a door that opens while the lock is engaged was
forced), not the policy: it reports what happened through one callback and the agent decides
what that means.  Energising the lock relay unlocks the door.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import Button, DigitalOutputDevice, Factory

from agent.config import GateConfig

log = logging.getLogger("edge_agent.gate")

GateHappening = Callable[[str, dict[str, Any]], None]
"""on_event(kind, details) with kind one of: door.opened, door.closed, door.held_open, door.forced,
exit.pressed, assist.pressed."""

# A door pushed open right as the relock happens is not forced; real strikes release a little late.
GRANT_GRACE_SECONDS = 1.5
BUTTON_BOUNCE_SECONDS = 0.05


class Gate:
    def __init__(self, config: GateConfig, pin_factory: Factory | None = None,
                 on_event: GateHappening | None = None) -> None:
        self.config = config
        self.name = config.name
        self._on_event = on_event or (lambda kind, details: None)
        self._lock = threading.RLock()
        self._relock_timer: threading.Timer | None = None
        self._held_timer: threading.Timer | None = None
        self._hold = False  # fire release: stays unlocked whatever else asks
        self._grant_until = 0.0
        self._opened_at: float | None = None
        self.relay = DigitalOutputDevice(config.lock_relay, active_high=config.active_high,
                                         initial_value=False, pin_factory=pin_factory)
        self.door: Button | None = None
        self.exit_button: Button | None = None
        self.assist_button: Button | None = None
        if config.door_contact is not None:
            # Reed switch to ground while shut: "pressed" means closed.
            self.door = Button(config.door_contact, pull_up=True, bounce_time=BUTTON_BOUNCE_SECONDS,
                               pin_factory=pin_factory)
            self.door.when_released = self._door_opened
            self.door.when_pressed = self._door_closed
        if config.exit_button is not None:
            self.exit_button = Button(config.exit_button, pull_up=True, bounce_time=BUTTON_BOUNCE_SECONDS,
                                      pin_factory=pin_factory)
            self.exit_button.when_pressed = self._exit_pressed
        if config.assist_button is not None:
            self.assist_button = Button(config.assist_button, pull_up=True, bounce_time=BUTTON_BOUNCE_SECONDS,
                                        pin_factory=pin_factory)
            self.assist_button.when_pressed = lambda: self._report("assist.pressed", {})
        if self.door_open:  # (re)started with the door open: time it for held-open, but nobody forced it now
            self._door_opened(at_start=True)

    # -- commands ---------------------------------------------------------------------------------
    def unlock(self, seconds: float | None = None) -> float:
        """Unlock for a pulse (default: the configured unlock_seconds); returns the pulse length."""
        seconds = self.config.unlock_seconds if seconds is None else seconds
        with self._lock:
            self._cancel_relock()
            self.relay.on()
            self._grant_until = max(self._grant_until, time.monotonic() + seconds + GRANT_GRACE_SECONDS)
            if not self._hold:
                self._relock_timer = threading.Timer(seconds, self._relock)
                self._relock_timer.daemon = True
                self._relock_timer.name = f"gate-{self.name}-relock"
                self._relock_timer.start()
        return seconds

    def lock(self) -> None:
        """Lock now, unless a fire release holds the gate open."""
        with self._lock:
            self._cancel_relock()
            if not self._hold:
                self.relay.off()

    def hold_unlocked(self) -> None:
        """Fire release: unlock and stay unlocked until :meth:`release_hold`."""
        with self._lock:
            self._hold = True
            self._cancel_relock()
            self.relay.on()

    def release_hold(self) -> None:
        with self._lock:
            self._hold = False
            self.relay.off()

    def to_safe_state(self) -> None:
        """Leave the lock as the technician configured for when the agent is not running."""
        with self._lock:
            self._cancel_relock()
            self._hold = False
            if self.config.safe_state == "unlocked":
                self.relay.on()
            else:
                self.relay.off()

    # -- state ------------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return not self.relay.is_active

    @property
    def held(self) -> bool:
        return self._hold

    @property
    def door_open(self) -> bool | None:
        """None when the gate has no door contact."""
        return None if self.door is None else not self.door.is_pressed

    def state(self) -> dict[str, Any]:
        door = self.door_open
        return {"lock": "locked" if self.locked else "unlocked",
                "door": None if door is None else ("open" if door else "closed"), "fire_release": self._hold}

    def close(self) -> None:
        with self._lock:
            self._cancel_relock()
            if self._held_timer:
                self._held_timer.cancel()
        for device in (self.door, self.exit_button, self.assist_button, self.relay):
            if device is not None:
                device.close()

    # -- inputs -----------------------------------------------------------------------------------
    def _relock(self) -> None:
        with self._lock:
            self._relock_timer = None
            if not self._hold:
                self.relay.off()

    def _cancel_relock(self) -> None:
        if self._relock_timer is not None:
            self._relock_timer.cancel()
            self._relock_timer = None

    def _door_opened(self, at_start: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            self._opened_at = now
            forced = self.locked and not self._hold and now > self._grant_until and not at_start
            self._held_timer = threading.Timer(self.config.held_open_seconds, self._check_held_open, args=(now,))
            self._held_timer.daemon = True
            self._held_timer.name = f"gate-{self.name}-held"
            self._held_timer.start()
        self._report("door.opened", {})
        if forced:
            self._report("door.forced", {})

    def _door_closed(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            open_for = time.monotonic() - self._opened_at
            self._opened_at = None
            if self._held_timer:
                self._held_timer.cancel()
                self._held_timer = None
            # A closed door re-locks at once: no tailgating on the rest of the pulse.
            if not self._hold and self.relay.is_active:
                self._cancel_relock()
                self.relay.off()
        self._report("door.closed", {"open_seconds": round(open_for, 1)})

    def _check_held_open(self, opened_at: float) -> None:
        with self._lock:
            still_open = self._opened_at == opened_at
        if still_open:
            self._report("door.held_open", {"open_seconds": self.config.held_open_seconds})

    def _exit_pressed(self) -> None:
        seconds = self.unlock()
        self._report("exit.pressed", {"seconds": seconds})

    def _report(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self._on_event(kind, details)
        except Exception:  # a broken listener must never stop the door hardware from working
            log.exception("gate %s: handler for %s failed", self.name, kind)
