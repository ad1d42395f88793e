"""``edge-agent hw test``: every configured device, one line each, OK or FAIL, in plain language."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpiozero import Factory

from agent.agent_config import AgentConfig
from agent.config_loader import camera_source_problem


@dataclass(frozen=True)
class Check:
    device: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.device:<28} {self.detail}"


def _try(device: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(device, True, probe())
    except Exception as exc:
        return Check(device, False, str(exc) or type(exc).__name__)


def run_checks(config: AgentConfig, pin_factory: Factory, pulse: bool = False,
               snapshots: Path | None = None) -> list[Check]:
    """Read every input; pulse relays, LEDs and buzzers only with ``pulse``; grab a frame per camera,
    saved to ``snapshots`` when given (with a barrier camera's lane drawn on it)."""
    from gpiozero import Button, DigitalInputDevice, DigitalOutputDevice

    checks: list[Check] = []

    def read_input(pin: int | str, pull_up: bool, active: str, idle: str) -> str:
        with DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory) as device:
            return f"pin {pin}: {active if device.is_active else idle}"

    def output(pin: int | str, active_high: bool, seconds: float) -> str:
        with DigitalOutputDevice(pin, active_high=active_high, pin_factory=pin_factory) as device:
            if not pulse:
                return f"pin {pin}: claimed (use --pulse to click it)"
            device.on()
            time.sleep(seconds)
            device.off()
            return f"pin {pin}: pulsed {seconds:.1f} s"

    hardware = config.hardware
    for gate in hardware.gates:
        checks.append(_try(f"gate {gate.name} lock relay", lambda g=gate: output(g.lock_relay, g.active_high, 1.0)))
        if gate.door_contact is not None:
            checks.append(_try(f"gate {gate.name} door contact",
                               lambda g=gate: read_input(g.door_contact, True, "door closed", "door OPEN")))
        for label, pin in (("exit button", gate.exit_button), ("assist button", gate.assist_button)):
            if pin is not None:
                def button(pin: int | str = pin) -> str:
                    with Button(pin, pull_up=True, pin_factory=pin_factory) as device:
                        return f"pin {pin}: {'PRESSED (stuck?)' if device.is_pressed else 'released'}"
                checks.append(_try(f"gate {gate.name} {label}", button))
    for barrier in hardware.barriers:
        for label in ("raise_relay", "lower_relay", "pulse_relay"):
            pin = getattr(barrier, label)
            if pin is not None:
                checks.append(_try(f"barrier {barrier.name} {label.replace('_', ' ')}",
                                   lambda p=pin, b=barrier: output(p, b.active_high, b.pulse_seconds)))
        checks.append(_try(f"barrier {barrier.name} safety loop", lambda b=barrier: read_input(
            b.safety_loop, b.safety_loop_active_low, "VEHICLE PRESENT", "clear")))
        if barrier.position_sensor is not None:
            checks.append(_try(f"barrier {barrier.name} position", lambda b=barrier: read_input(
                b.position_sensor, True, "arm up", "arm down")))
    for smoke in hardware.smoke_detectors:
        checks.append(_try(f"smoke {smoke.name} alarm", lambda s=smoke: read_input(
            s.alarm_pin, s.active_low, "IN ALARM", "quiet")))
        if smoke.fault_pin is not None:
            checks.append(_try(f"smoke {smoke.name} fault", lambda s=smoke: read_input(
                s.fault_pin, True, "FAULT", "ok")))
    for indicator in hardware.indicators:
        checks.append(_try(f"{indicator.kind} {indicator.name}",
                           lambda i=indicator: output(i.pin, i.active_high, 0.5)))
    for camera in hardware.cameras:
        def grab(camera=camera) -> str:
            problem = camera_source_problem(camera)
            if problem:
                raise RuntimeError(problem)
            from drivers.camera import grab_one

            frame, fps = grab_one(camera, timeout=10.0)
            detail = f"{camera.source}: frame {frame.shape[1]}x{frame.shape[0]}, {fps:.1f} fps"
            if snapshots is not None:
                detail += f", saved {save_snapshot(frame, camera.lane, snapshots / f'{camera.name}.jpg')}"
            return detail
        checks.append(_try(f"camera {camera.name}", grab))
    return checks


def save_snapshot(frame: np.ndarray, lane: list[tuple[float, float]] | None, path: Path) -> Path:
    """``frame`` as a JPEG, the lane outlined: how a technician checks a lane's corners.  It stays on
    the node, like every picture."""
    import cv2

    picture = frame.copy()
    if lane:
        from models.area import Area

        height, width = picture.shape[:2]
        corners = np.round(Area(lane).corners(width, height)).astype(np.int32)
        cv2.polylines(picture, [corners], isClosed=True, color=(0, 255, 0), thickness=max(2, width // 320))
        cv2.putText(picture, "lane", tuple(int(v) for v in corners[0] + (4, 24)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.6, width / 1280), (0, 255, 0), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), picture):
        raise OSError(f"cannot write {path}")
    return path
