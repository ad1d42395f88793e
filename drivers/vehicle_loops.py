"""A barrier's induction loops: the safety loop under the arm, and an optional approach loop before it.

They say where a vehicle is, which way one left the safety loop (the A/B loop logic of car park
controllers), and when a loop has been occupied so long that its detector has probably failed.  No
arm logic here: :class:`drivers.barrier.Barrier` decides what the arm does.

Leaving the safety loop, a vehicle went ``forward`` (onto the far side), ``backed_out`` (back onto
the approach loop it never left: it did not pass), ``reversed`` (against the lane, from the far side
onto the approach loop) or ``turned_back`` (from the far side, and back there).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import DigitalInputDevice, Factory

from agent.config import BarrierConfig

Direction = Literal["forward", "backed_out", "reversed", "turned_back"]
Loop = Literal["safety", "approach"]

# A car that left the approach loop this recently before reaching the safety loop came from it: loops
# laid further apart than a short car let it be on neither for a moment.
APPROACH_GAP_SECONDS = 2.0


class VehicleLoops:
    """``arrived()`` when a vehicle drives onto the safety loop; ``cleared(direction)`` when it leaves
    (direction None without an approach loop, or while that loop is stuck); ``report(kind, details)``
    for vehicle.approaching, and barrier.fault / barrier.recovered of a loop occupied too long."""

    def __init__(self, config: BarrierConfig, pin_factory: Factory | None, *, arrived: Callable[[], None],
                 cleared: Callable[[Direction | None], None], report: Callable[[str, dict[str, Any]], None]) -> None:
        self.config = config
        self._arrived, self._cleared, self._report = arrived, cleared, report
        self._lock = threading.Lock()
        # The vehicle on the safety loop: whether it came from the approach loop (set below), and
        # whether it has been on the approach loop too, without a break, ever since (a car still on
        # it that leaves the safety loop has backed out).
        self._approach_held = False
        self._approach_left_at = -math.inf  # by a vehicle heading for the arm
        self._approach_from_arm = False  # the vehicle on the approach loop came off the safety loop
        # Loops occupied for loop_stuck_seconds.  Each loop's edges are numbered so that the timer of
        # an earlier edge does nothing.
        self._stuck: set[Loop] = set()
        self._edges: dict[Loop, int] = {"safety": 0, "approach": 0}
        self._stuck_timers: dict[Loop, threading.Timer] = {}

        self.safety = DigitalInputDevice(config.safety_loop, pull_up=config.safety_loop_active_low,
                                         bounce_time=0.05, pin_factory=pin_factory)
        self.approach: DigitalInputDevice | None = None
        if config.approach_loop is not None:
            self.approach = DigitalInputDevice(config.approach_loop, pull_up=config.approach_loop_active_low,
                                               bounce_time=0.05, pin_factory=pin_factory)
        # One already on the safety loop at start-up (a restart mid-pass) most likely came the lane's way.
        self._from_approach = self.vehicle_present
        self._watch("safety", self.vehicle_present)
        self._watch("approach", self.vehicle_approaching)
        self.safety.when_activated = self._safety_occupied
        self.safety.when_deactivated = self._safety_cleared
        if self.approach is not None:
            self.approach.when_activated = self._approach_occupied
            self.approach.when_deactivated = self._approach_cleared

    @property
    def vehicle_present(self) -> bool:
        """A vehicle on the safety loop, under the arm."""
        return bool(self.safety.is_active)

    @property
    def vehicle_approaching(self) -> bool:
        """A vehicle on the approach loop (always False without one)."""
        return self.approach is not None and bool(self.approach.is_active)

    @property
    def stuck(self) -> list[str]:
        """The loops occupied for longer than ``loop_stuck_seconds``."""
        return sorted(self._stuck)

    def carry_stuck(self, loops: list[str]) -> None:
        """Take over the loops that a reload found stuck, so the platform hears one fault and one
        recovery: a loop still occupied stays stuck without a second fault; one that cleared while
        the devices were rebuilt has recovered."""
        for loop in ("safety", "approach"):
            if loop not in loops or (loop == "approach" and self.approach is None):
                continue
            with self._lock:
                still = self.vehicle_present if loop == "safety" else self.vehicle_approaching
                if still:
                    self._stuck.add(loop)
                    timer = self._stuck_timers.pop(loop, None)
                    if timer is not None:
                        timer.cancel()
            if not still:
                self._report("barrier.recovered", {"loop": loop})

    def close(self) -> None:
        with self._lock:
            for timer in self._stuck_timers.values():
                timer.cancel()
        for device in (self.safety, self.approach):
            if device is not None:
                device.close()

    def _approach_occupied(self) -> None:
        with self._lock:
            self._approach_from_arm = self.vehicle_present
        self._watch("approach", True)
        self._report("vehicle.approaching", {})

    def _approach_cleared(self) -> None:
        with self._lock:
            self._approach_held = False
            # Only a vehicle heading for the arm that is then on neither loop can be the next to
            # reach the safety loop from this side (loops laid apart); one already on it is tracked.
            if not self._approach_from_arm and not self.vehicle_present:
                self._approach_left_at = time.monotonic()
        self._watch("approach", False)

    def _safety_occupied(self) -> None:
        with self._lock:
            if self.approach is not None:
                on_approach = bool(self.approach.is_active)
                self._from_approach = on_approach or time.monotonic() - self._approach_left_at < APPROACH_GAP_SECONDS
                self._approach_held = on_approach
        self._watch("safety", True)
        self._arrived()

    def _safety_cleared(self) -> None:
        with self._lock:
            direction = self._direction()
        self._cleared(direction)
        self._watch("safety", False)

    def _direction(self) -> Direction | None:
        if self.approach is None:
            return None
        on_approach = bool(self.approach.is_active)
        if on_approach and "approach" in self._stuck:
            # A stuck loop would make every car look as if it backed out: judge as without one.
            return None
        if self._from_approach:
            return "backed_out" if on_approach and self._approach_held else "forward"
        return "reversed" if on_approach else "turned_back"

    def _watch(self, loop: Loop, occupied: bool) -> None:
        """A loop occupied for ``loop_stuck_seconds`` is a fault: a failed detector, or a car left
        on it.  A stuck safety loop keeps the arm up for good, which the platform must hear of."""
        with self._lock:
            self._edges[loop] += 1
            edge = self._edges[loop]
            earlier = self._stuck_timers.pop(loop, None)
            if earlier is not None:
                earlier.cancel()
            recovered = not occupied and loop in self._stuck
            if recovered:
                self._stuck.discard(loop)
            if occupied and self.config.loop_stuck_seconds is not None:
                timer = threading.Timer(self.config.loop_stuck_seconds, self._stuck_for_long, (loop, edge))
                timer.daemon = True
                timer.start()
                self._stuck_timers[loop] = timer
        if recovered:
            self._report("barrier.recovered", {"loop": loop})

    def _stuck_for_long(self, loop: Loop, edge: int) -> None:
        with self._lock:
            stuck = self._edges[loop] == edge and loop not in self._stuck
            if stuck:
                self._stuck.add(loop)
        if stuck:
            self._report("barrier.fault", {"loop": loop, "reason": f"the {loop} loop has been occupied for over "
                                                                    f"{self.config.loop_stuck_seconds:g} s"})
