"""Vehicle barrier: raise/lower relays (or one pulse relay), safety loop, optional position sensor.

The one rule this driver enforces itself, because it is physics rather than policy: the arm never
comes down while the safety loop sees a vehicle.  A lower asked for then waits until the loop clears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import DigitalInputDevice, DigitalOutputDevice, Factory

from agent.config import BarrierConfig

log = logging.getLogger("edge_agent.barrier")

BarrierHappening = Callable[[str, dict[str, Any]], None]
"""on_event(kind, details), kind one of: barrier.raised, barrier.lowered, barrier.lower_deferred,
vehicle.present, vehicle.cleared, barrier.fault."""

ArmState = Literal["up", "down"]


class Barrier:
    def __init__(self, config: BarrierConfig, pin_factory: Factory | None = None,
                 on_event: BarrierHappening | None = None) -> None:
        self.config = config
        self.name = config.name
        self._on_event = on_event or (lambda kind, details: None)
        self._lock = threading.RLock()
        self._commanded: ArmState = "down"
        self._hold = False
        self._lower_when_clear = False
        self._check_timer: threading.Timer | None = None

        def relay(pin: int | str | None) -> DigitalOutputDevice | None:
            if pin is None:
                return None
            return DigitalOutputDevice(pin, active_high=config.active_high, initial_value=False,
                                       pin_factory=pin_factory)

        self.raise_relay = relay(config.raise_relay)
        self.lower_relay = relay(config.lower_relay)
        self.pulse_relay = relay(config.pulse_relay)
        self.loop = DigitalInputDevice(config.safety_loop, pull_up=config.safety_loop_active_low,
                                       bounce_time=0.05, pin_factory=pin_factory)
        self.loop.when_activated = self._vehicle_arrived
        self.loop.when_deactivated = self._vehicle_cleared
        self.position: DigitalInputDevice | None = None
        if config.position_sensor is not None:
            self.position = DigitalInputDevice(config.position_sensor, pull_up=True, pin_factory=pin_factory)
            # Trust the limit switch at start-up rather than assume the arm is down.
            self._commanded = "up" if self.position.is_active else "down"

    # -- commands ---------------------------------------------------------------------------------
    def raise_arm(self) -> None:
        """Raise; the arm comes down by itself once a vehicle has passed over the loop and cleared it."""
        with self._lock:
            self._lower_when_clear = True
            self._drive("up")

    def lower(self) -> bool:
        """Lower now if the loop is clear; otherwise defer until it clears. Returns True if lowered now."""
        with self._lock:
            if self._hold:
                return False
            if self.vehicle_present:
                self._lower_when_clear = True
                deferred = True
            else:
                self._lower_when_clear = False
                self._drive("down")
                deferred = False
        if deferred:
            self._report("barrier.lower_deferred", {"reason": "vehicle on the safety loop"})
        return not deferred

    def hold_up(self) -> None:
        """Fire: raise and keep the arm up until :meth:`release_hold`."""
        with self._lock:
            self._hold = True
            self._lower_when_clear = False
            self._drive("up")

    def release_hold(self) -> None:
        with self._lock:
            self._hold = False
        self.lower()

    # -- state ------------------------------------------------------------------------------------
    @property
    def vehicle_present(self) -> bool:
        return bool(self.loop.is_active)

    @property
    def arm(self) -> ArmState:
        return self._commanded

    @property
    def held(self) -> bool:
        return self._hold

    def state(self) -> dict[str, Any]:
        sensed = None if self.position is None else ("up" if self.position.is_active else "down")
        return {"arm": self._commanded, "sensed": sensed, "vehicle_present": self.vehicle_present,
                "fire_hold": self._hold}

    def close(self) -> None:
        with self._lock:
            if self._check_timer:
                self._check_timer.cancel()
        for device in (self.raise_relay, self.lower_relay, self.pulse_relay, self.loop, self.position):
            if device is not None:
                device.close()

    # -- internals --------------------------------------------------------------------------------
    def _drive(self, target: ArmState) -> None:
        pulse = self.config.pulse_seconds
        if self.pulse_relay is not None:
            if target != self._commanded:  # one pulse toggles the controller
                self.pulse_relay.blink(on_time=pulse, off_time=0, n=1, background=True)
        else:
            relay = self.raise_relay if target == "up" else self.lower_relay
            assert relay is not None
            relay.blink(on_time=pulse, off_time=0, n=1, background=True)
        changed = target != self._commanded
        self._commanded = target
        if self.position is not None:
            if self._check_timer:
                self._check_timer.cancel()
            self._check_timer = threading.Timer(self.config.travel_seconds, self._check_position, args=(target,))
            self._check_timer.daemon = True
            self._check_timer.start()
        if changed:
            self._report("barrier.raised" if target == "up" else "barrier.lowered", {})

    def _check_position(self, expected: ArmState) -> None:
        assert self.position is not None
        sensed: ArmState = "up" if self.position.is_active else "down"
        if self._commanded == expected and sensed != expected:
            self._report("barrier.fault", {"commanded": expected, "sensed": sensed,
                                           "reason": "position sensor disagrees with the command"})

    def _vehicle_arrived(self) -> None:
        self._report("vehicle.present", {})

    def _vehicle_cleared(self) -> None:
        # "passed": it drove through under a raised arm (what a car park counts), not just onto the loop.
        self._report("vehicle.cleared", {"passed": self._commanded == "up"})
        with self._lock:
            lower = self._lower_when_clear and not self._hold
        if lower:
            self.lower()

    def _report(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self._on_event(kind, details)
        except Exception:
            log.exception("barrier %s: handler for %s failed", self.name, kind)
