"""Build the configured devices and translate what they report into events.

Drivers report happenings (``door.opened``, ``exit.pressed``, ``smoke.alarm``); this module decides
what each one means for the building.  The fire path is first in line and touches only GPIO before
any event is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gpiozero import Factory

from agent.config import HardwareConfig
from agent.fire import FireSafety
from drivers.barrier import ArmState, Barrier
from drivers.gate import Gate
from drivers.indicators import Indicator, Pattern
from drivers.smoke import SmokeDetector

if TYPE_CHECKING:
    from drivers.camera import Camera

log = logging.getLogger("edge_agent.hardware")

Emit = Callable[[str, str | None, dict[str, Any]], object]
VehiclePassed = Callable[[str, bool], None]  # (barrier, against its lane)
VehicleWaiting = Callable[[str], None]  # (barrier): a vehicle drove onto its approach loop

# Driver happenings recorded as events of the same name; the rest are mapped in the handlers below.
_RECORDED = {
    "door.opened", "door.closed", "door.held_open", "door.forced",
    "barrier.raised", "barrier.lowered", "barrier.lower_deferred", "barrier.fault", "barrier.recovered",
    "smoke.fault",
}


@dataclass(frozen=True)
class Handover:
    """What rebuilt devices take over from the ones a reload closes, which would start afresh: an
    arm up for a car still comes down behind it, and the platform hears each fault once and its
    recovery once."""

    passes: dict[str, bool]  # barrier up for a car: whether it comes down once the loop clears
    arm_faults: dict[str, ArmState]  # barrier: the command its limit switch disagrees with
    stuck_loops: dict[str, list[str]]  # barrier: its stuck loops
    camera_outages: list[str]


@dataclass
class Hardware:
    gates: dict[str, Gate] = field(default_factory=dict)
    barriers: dict[str, Barrier] = field(default_factory=dict)
    smoke_detectors: dict[str, SmokeDetector] = field(default_factory=dict)
    indicators: list[Indicator] = field(default_factory=list)
    cameras: dict[str, Camera] = field(default_factory=dict)
    # Per camera, called from its thread with each new frame: recognition workers hook in here.
    frame_hooks: dict[str, list[Callable[[Any, float], None]]] = field(default_factory=dict)
    # Car-park counts, one at a time in pass order, off the pin callback thread.
    counting: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="parking"))
    wiring: Wiring | None = None  # set by build_hardware: what reconfigure() builds new devices with

    def signal(self, pattern: Pattern, gate: str | None = None) -> None:
        for indicator in self.indicators:
            if indicator.shows(pattern, gate):
                indicator.show(pattern)

    def state(self) -> dict[str, dict[str, Any]]:
        state: dict[str, dict[str, Any]] = {}
        for name, gate in self.gates.items():
            state[f"gate/{name}"] = gate.state()
        for name, barrier in self.barriers.items():
            state[f"barrier/{name}"] = barrier.state()
        for name, detector in self.smoke_detectors.items():
            state[f"smoke/{name}"] = detector.state()
        for name, camera in self.cameras.items():
            health = camera.health()
            state[f"camera/{name}"] = {"ok": health.state == "streaming", "state": health.state,
                                       "fps": round(health.fps, 1),
                                       "last_frame_age": None if health.last_frame_age is None
                                       else round(health.last_frame_age, 1)}
        return state

    def handover(self) -> Handover:
        """What rebuilt devices take over from the ones they replace."""
        barriers = self.barriers.items()
        return Handover(
            passes={name: b.lowers_when_clear for name, b in barriers if b.arm == "up" and not b.held},
            arm_faults={name: b.faulted_command for name, b in barriers if b.faulted_command is not None},
            stuck_loops={name: b.loops.stuck for name, b in barriers},
            camera_outages=[name for name, camera in self.cameras.items() if camera.in_outage])

    def take_over(self, handover: Handover, barriers: Iterable[str], cameras: Iterable[str]) -> None:
        """Before the cameras start: the named rebuilt devices take over their predecessors' state."""
        for name in barriers:
            barrier = self.barriers[name]
            if name in handover.passes:
                barrier.carry_on(handover.passes[name])
            if name in handover.arm_faults:
                barrier.carry_fault(handover.arm_faults[name])
            barrier.loops.carry_stuck(handover.stuck_loops.get(name, []))
        for name in cameras:
            if name in handover.camera_outages:
                self.cameras[name].carry_outage()

    def reconfigure(self, config: HardwareConfig) -> None:
        """Apply ``config`` in place (a reload). A device whose settings did not change is kept as it
        runs, so a smoke detector watches and a released exit stays released through the reload;
        changed and removed ones are closed, new and changed ones built. Cameras always restart (the
        recognition workers are rebuilt with them). The fire controller is bound to the new gates
        before any new detector can confirm an alarm, whatever order the devices are listed in.

        On an exception (a pin another device holds, a driver that fails) the devices built so far
        stay; call again with the previous configuration to go back to it."""
        if self.wiring is None:
            raise RuntimeError("reconfigure() needs a Hardware made by build_hardware()")
        wiring = self.wiring
        handover = self.handover()  # an arm up for a car, open faults
        for camera in self.cameras.values():
            camera.stop(timeout=2.0)
        self.cameras, self.frame_hooks = {}, {}
        kept_indicators = {i.name: i for i in self.indicators if i.config in config.indicators}
        for indicator in self.indicators:
            if indicator.name not in kept_indicators:
                _close(indicator)
        self.indicators = [kept_indicators.get(c.name) or Indicator(c, wiring.pin_factory)
                           for c in config.indicators]
        _replace(self.gates, config.gates, lambda c: Gate(c, wiring.pin_factory, _on_gate(self, c.name)))
        rebuilt = _replace(self.barriers, config.barriers,
                           lambda c: Barrier(c, wiring.pin_factory, _on_barrier(self, c.name)))
        self.take_over(handover, rebuilt, [])
        # Bound before the detectors are built: one already in alarm confirms as it is made.
        wiring.fire.attach(self.gates.values(), self.barriers.values(), self.indicators)
        _replace(self.smoke_detectors, config.smoke_detectors,
                 lambda c: SmokeDetector(c, wiring.pin_factory, _on_smoke(self, c.name)))
        if wiring.with_cameras and config.cameras:
            from drivers.camera import Camera  # OpenCV is loaded only by nodes that have cameras

            for camera_config in config.cameras:
                name = camera_config.name
                hooks = self.frame_hooks.setdefault(name, [])
                self.cameras[name] = Camera(
                    camera_config,
                    on_frame=lambda frame, ts, hooks=hooks: [hook(frame, ts) for hook in hooks],
                    on_fault=lambda reason, name=name: wiring.emit("camera.fault", name, {"reason": reason[:200]}),
                    on_recovered=lambda name=name: wiring.emit("camera.recovered", name, {}),
                )
            self.take_over(handover, [], self.cameras)

    def start_cameras(self) -> None:
        for camera in self.cameras.values():
            camera.start()

    def close(self) -> None:
        for camera in self.cameras.values():
            camera.stop(timeout=2.0)
        for device in [*self.gates.values(), *self.barriers.values(), *self.smoke_detectors.values(),
                       *self.indicators]:
            _close(device)
        self.counting.shutdown(wait=True)  # the passes already seen are counted before a reload or exit


@dataclass(frozen=True)
class Wiring:
    """What the devices report to, and the pins they are made on."""

    pin_factory: Factory
    fire: FireSafety
    emit: Emit
    with_cameras: bool
    vehicle_passed: VehiclePassed
    vehicle_waiting: VehicleWaiting


class _Configured(Protocol):
    name: str
    config: Any

    def close(self) -> None: ...


D = TypeVar("D", bound=_Configured)


def _replace(devices: dict[str, D], configs: Sequence[Any], make: Callable[[Any], D]) -> list[str]:
    """Keep the devices whose config is unchanged, close the rest, make the missing ones (closing
    all of them first: a changed device may hand its pin to another). Returns the names made."""
    wanted = {c.name: c for c in configs}
    for name in list(devices):
        if wanted.get(name) != devices[name].config:
            _close(devices.pop(name))
    made = []
    for name, device_config in wanted.items():
        if name not in devices:
            devices[name] = make(device_config)
            made.append(name)
    return made


def _close(device: _Configured) -> None:
    try:
        device.close()
    except Exception:
        log.exception("closing %s failed", getattr(device, "name", device))


def _logged(count: VehiclePassed, barrier: str, against: bool) -> None:
    try:
        count(barrier, against)
    except Exception:  # an executor would keep the error to itself
        log.exception("counting a car that passed %s failed", barrier)


def build_hardware(config: HardwareConfig, pin_factory: Factory, fire: FireSafety, emit: Emit,
                   with_cameras: bool = True, vehicle_passed: VehiclePassed | None = None,
                   vehicle_waiting: VehicleWaiting | None = None) -> Hardware:
    """Create every device; on failure close what was already opened, so the pins are free again."""
    hardware = Hardware(wiring=Wiring(pin_factory, fire, emit, with_cameras,
                                      vehicle_passed or (lambda barrier, against: None),
                                      vehicle_waiting or (lambda barrier: None)))
    try:
        hardware.reconfigure(config)
    except BaseException:
        hardware.close()
        raise
    return hardware


# What each device's happenings mean for the building. The handlers look devices up in ``hardware``
# when they run, so a device kept through a reload reaches the devices built beside it.
def _on_gate(hardware: Hardware, name: str) -> Callable[[str, dict[str, Any]], None]:
    assert hardware.wiring is not None
    emit = hardware.wiring.emit

    def on_gate(kind: str, details: dict[str, Any]) -> None:
        if kind == "exit.pressed":
            hardware.signal("granted", name)
            emit("gate.granted", name, {"method": "exit_button", **details})
        elif kind == "assist.pressed":
            emit("assist.requested", name, details)
        elif kind in _RECORDED:
            emit(kind, name, details)
    return on_gate


def _on_barrier(hardware: Hardware, name: str) -> Callable[[str, dict[str, Any]], None]:
    assert hardware.wiring is not None
    wiring = hardware.wiring

    def on_barrier(kind: str, details: dict[str, Any]) -> None:
        if kind in _RECORDED:
            wiring.emit(kind, name, details)
        elif kind == "vehicle.cleared" and details.get("passed"):
            against = details.get("direction") == "reversed"  # only an approach loop tells
            if against:
                wiring.emit("vehicle.wrong_way", name, {})
            # Counting writes to disk. On a Pi every pin's callback runs on lgpio's one thread,
            # so a slow SD card here would hold back the smoke detector's edge: count elsewhere.
            hardware.counting.submit(_logged, wiring.vehicle_passed, name, against)
        elif kind == "vehicle.approaching":
            wiring.vehicle_waiting(name)
        else:
            log.debug("barrier %s: %s", name, kind)
    return on_barrier


def _on_smoke(hardware: Hardware, name: str) -> Callable[[str, dict[str, Any]], None]:
    assert hardware.wiring is not None
    fire, emit = hardware.wiring.fire, hardware.wiring.emit

    def on_smoke(kind: str, details: dict[str, Any]) -> None:
        if kind == "smoke.alarm":
            fire.alarm(name)  # release the exits before anything touches the disk
            emit("smoke.alarm", name, {**details, "released": [
                g.name for g in list(hardware.gates.values()) if g.config.fire_mode == "release"]})
        elif kind == "smoke.cleared":
            fire.cleared(name)
            emit("smoke.cleared", name, {"latched": fire.latched})
        elif kind in _RECORDED:
            emit(kind, name, details)
    return on_smoke
