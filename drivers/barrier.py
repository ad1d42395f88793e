"""Vehicle barrier: raise/lower relays (or one pulse relay), its loops, optional position sensor.

The one rule this driver enforces itself, because it is physics rather than policy: the arm never
comes down while the safety loop sees a vehicle.  A lower asked for then waits until the loop clears,
and a vehicle that drives onto the loop while the arm is still coming down sends it back up.

With an approach loop (before the arm, where a car waits) the loops also tell which way a vehicle
left the safety loop (:mod:`drivers.vehicle_loops`).  The arm comes down behind a car that backed
out as behind any other: a car right behind it, on the approach loop too, looks the same to the
loops, and must not find the arm up.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import DigitalInputDevice, DigitalOutputDevice, Factory

from agent.config import BarrierConfig
from drivers.vehicle_loops import Direction, VehicleLoops

log = logging.getLogger("edge_agent.barrier")

BarrierHappening = Callable[[str, dict[str, Any]], None]
"""on_event(kind, details), kind one of: barrier.raised, barrier.lowered, barrier.lower_deferred,
vehicle.present, vehicle.cleared, vehicle.approaching, barrier.fault, barrier.recovered.
vehicle.cleared carries ``passed`` (it drove through under the raised arm) and, with an approach
loop, ``direction``: one of :data:`drivers.vehicle_loops.Direction`."""

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
        self._moved_at = -math.inf  # monotonic time of the last command: the arm travels until travel_seconds after
        self._faulted = False
        self._check_timer: threading.Timer | None = None
        self._close_timer: threading.Timer | None = None

        def relay(pin: int | str | None) -> DigitalOutputDevice | None:
            if pin is None:
                return None
            return DigitalOutputDevice(pin, active_high=config.active_high, initial_value=False,
                                       pin_factory=pin_factory)

        self.raise_relay = relay(config.raise_relay)
        self.lower_relay = relay(config.lower_relay)
        self.pulse_relay = relay(config.pulse_relay)
        self.loops = VehicleLoops(config, pin_factory, arrived=self._vehicle_arrived,
                                  cleared=self._vehicle_cleared, report=self._report)
        self.position: DigitalInputDevice | None = None
        if config.position_sensor is not None:
            self.position = DigitalInputDevice(config.position_sensor, pull_up=True, pin_factory=pin_factory)
            self.position.when_activated = self._position_changed
            self.position.when_deactivated = self._position_changed
        # At start-up (or a reload) the arm may be up for a car: trust the limit switch; without one, a
        # vehicle on the loop means the arm is up, since it never comes down on one.  A pulse relay
        # without a switch cannot tell, and a wrong guess would toggle the arm the wrong way.
        if self.position is not None:
            starts_up = bool(self.position.is_active)
        else:
            starts_up = self.vehicle_present and self.pulse_relay is None
        if starts_up:
            self._commanded = "up"
            self.carry_on(lower_when_clear=True)

    # -- commands ---------------------------------------------------------------------------------
    def raise_arm(self) -> None:
        """Raise; the arm comes down by itself once a vehicle has passed over the loop and cleared it,
        or after ``close_after_seconds`` if none drives onto it (a granted car that turned away)."""
        with self._lock:
            self._lower_when_clear = True
            self._drive("up")
            self._start_close_timer()

    def carry_on(self, lower_when_clear: bool) -> None:
        """Take over a pass that a restart or reload interrupted: the arm is up for a car."""
        with self._lock:
            if self.position is None:  # with a limit switch, the switch has already said where the arm is
                self._commanded = "up"
            self._lower_when_clear = lower_when_clear
            if lower_when_clear and not self.vehicle_present:
                self._start_close_timer()

    def carry_fault(self, commanded: ArmState) -> None:
        """Take over an arm fault that a reload interrupted: the command the switch disagreed with
        stands, so the platform hears no second fault, and one recovery once the arm agrees (at once,
        if it was mended meanwhile)."""
        if self.position is None:
            return
        with self._lock:
            self._commanded, self._faulted = commanded, True
        self._check_position(travel_over=True)

    def lower(self, reason: str | None = None) -> bool:
        """Lower now if the loop is clear; otherwise defer until it clears. Returns True if lowered now."""
        with self._lock:
            if self._hold:
                return False
            if self.vehicle_present:
                self._lower_when_clear = True
                deferred = True
            else:
                self._lower_when_clear = False
                self._drive("down", reason)
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
        return self.loops.vehicle_present

    @property
    def vehicle_approaching(self) -> bool:
        return self.loops.vehicle_approaching

    @property
    def arm(self) -> ArmState:
        return self._commanded

    @property
    def held(self) -> bool:
        return self._hold

    @property
    def lowers_when_clear(self) -> bool:
        """The arm is up for a pass and comes down once the vehicle has cleared the loop."""
        return self._lower_when_clear

    @property
    def faulted_command(self) -> ArmState | None:
        """The command the limit switch disagrees with, while the arm is in fault."""
        return self._commanded if self._faulted else None

    def state(self) -> dict[str, Any]:
        sensed = None if self.position is None else ("up" if self.position.is_active else "down")
        state = {"arm": self._commanded, "sensed": sensed, "vehicle_present": self.vehicle_present,
                 "fire_hold": self._hold}
        if self.loops.approach is not None:
            state["vehicle_approaching"] = self.vehicle_approaching
        state["stuck_loops"] = self.loops.stuck
        return state

    def close(self) -> None:
        with self._lock:
            for timer in (self._check_timer, self._close_timer):
                if timer:
                    timer.cancel()
        self.loops.close()
        for device in (self.raise_relay, self.lower_relay, self.pulse_relay, self.position):
            if device is not None:
                device.close()

    # -- internals --------------------------------------------------------------------------------
    def _travelling(self) -> bool:
        return time.monotonic() - self._moved_at < self.config.travel_seconds

    def _believed(self) -> ArmState:
        """Where the arm is: the limit switch once the arm has had time to get there, else the command."""
        if self.position is None or self._travelling():
            return self._commanded
        return "up" if self.position.is_active else "down"

    def _drive(self, target: ArmState, reason: str | None = None) -> None:
        pulse = self.config.pulse_seconds
        if self.pulse_relay is not None:
            # One pulse toggles the controller: pulse only if the arm is not already there.  Ask the
            # limit switch, not the last command, which a stuck or missed pulse makes wrong (a fire
            # hold must not toggle a raised arm down, nor leave one that never rose).
            if target != self._believed():
                self.pulse_relay.blink(on_time=pulse, off_time=0, n=1, background=True)
        else:
            relay = self.raise_relay if target == "up" else self.lower_relay
            assert relay is not None
            relay.blink(on_time=pulse, off_time=0, n=1, background=True)
        changed = target != self._commanded
        self._commanded = target
        self._moved_at = time.monotonic()
        if self._close_timer and target == "down":
            self._close_timer.cancel()
        if self.position is not None:
            if self._check_timer:
                self._check_timer.cancel()
            self._check_timer = self._timer(self.config.travel_seconds, lambda: self._arrived(target))
        if changed:
            self._report("barrier.raised" if target == "up" else "barrier.lowered",
                         {"reason": reason} if reason else {})

    def _timer(self, seconds: float, then: Callable[[], None]) -> threading.Timer:
        timer = threading.Timer(seconds, then)
        timer.daemon = True
        timer.start()
        return timer

    def _start_close_timer(self) -> None:
        if self._close_timer:
            self._close_timer.cancel()
        if self.config.close_after_seconds is not None:
            self._close_timer = self._timer(self.config.close_after_seconds, self._close_if_unused)

    def _close_if_unused(self) -> None:
        with self._lock:
            unused = self._commanded == "up" and self._lower_when_clear and not self.vehicle_present
        if unused:
            self.lower("no vehicle drove onto the loop")

    def _arrived(self, target: ArmState) -> None:
        with self._lock:
            superseded = self._commanded != target  # a newer command's own timer judges it
        if not superseded:
            self._check_position(travel_over=True)

    def _position_changed(self) -> None:
        # A move during travel is the command being carried out; the travel timer judges it.  Any
        # other move (an arm forced up, or one that drops) is judged now.
        self._check_position(travel_over=False)

    def _check_position(self, travel_over: bool) -> None:
        """After a command's travel time, and on every later move of the arm: the switch must agree."""
        assert self.position is not None
        with self._lock:
            if not travel_over and self._travelling():
                return
            sensed: ArmState = "up" if self.position.is_active else "down"
            expected = self._commanded
            fault = sensed != expected and not self._faulted
            recovered = sensed == expected and self._faulted
            self._faulted = sensed != expected
        if fault:
            self._report("barrier.fault", {"commanded": expected, "sensed": sensed,
                                           "reason": "position sensor disagrees with the command"})
        elif recovered:
            self._report("barrier.recovered", {"position": sensed})

    def _vehicle_arrived(self) -> None:
        with self._lock:
            if self._close_timer:
                self._close_timer.cancel()
            coming_down = self._commanded == "down" and self._travelling() and not self._hold
            if coming_down:
                self._lower_when_clear = True
                self._drive("up", "vehicle under the descending arm")
        self._report("vehicle.present", {})

    def _vehicle_cleared(self, direction: Direction | None) -> None:
        # "passed": it drove through under a raised arm (what a car park counts), not just onto the loop.
        with self._lock:
            # turned_back counts as before: a vehicle under a raised arm that the approach loop never
            # saw may be one its detector missed.
            passed = self._commanded == "up" and direction != "backed_out"
            lower = self._lower_when_clear and not self._hold
        # Lower before reporting: counting the car writes to disk, which must not hold the arm up.
        if lower:
            self.lower()
        details: dict[str, Any] = {"passed": passed}
        if direction is not None:
            details["direction"] = direction
        self._report("vehicle.cleared", details)

    def _report(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self._on_event(kind, details)
        except Exception:
            log.exception("barrier %s: handler for %s failed", self.name, kind)
