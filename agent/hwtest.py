"""``edge-agent hw test``: every configured device, one line each, OK or FAIL, in plain language."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from gpiozero import Factory

from agent.agent_config import AgentConfig
from agent.config_loader import camera_source_problem
from models.plate_settings import RELIABLE_PLATE_WIDTH

if TYPE_CHECKING:
    from agent.config import CameraConfig
    from agent.vision import Models
    from models.plate_vote import PlateRead


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
    saved to ``snapshots`` when given (with a barrier camera's lane drawn on it), and measure the
    plate in a barrier camera's frame."""
    from gpiozero import Button, DigitalInputDevice, DigitalOutputDevice

    from agent.vision import Models

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
        if barrier.approach_loop is not None:
            checks.append(_try(f"barrier {barrier.name} approach loop", lambda b=barrier: read_input(
                b.approach_loop, b.approach_loop_active_low, "VEHICLE WAITING", "clear")))
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
    barrier_names = {barrier.name for barrier in hardware.barriers}
    models = Models()  # the plate reader loads once, for the first barrier camera
    for camera in hardware.cameras:
        checks += _camera_checks(config, camera, models if camera.gate in barrier_names else None, snapshots)
    return checks


def _camera_checks(config: AgentConfig, camera: CameraConfig, models: Models | None,
                   snapshots: Path | None) -> list[Check]:
    """Grab a frame; with ``models`` (a barrier's camera) read its plates and judge their width; save
    the frame, with the plates read boxed on it, to ``snapshots``."""
    frame: np.ndarray | None = None
    plates: list[PlateRead] = []

    def grab() -> str:
        nonlocal frame
        problem = camera_source_problem(camera)
        if problem:
            raise RuntimeError(problem)
        from drivers.camera import grab_one

        frame, fps = grab_one(camera, timeout=10.0)
        return f"{camera.source}: frame {frame.shape[1]}x{frame.shape[0]}, {fps:.1f} fps"

    def measure() -> str:
        from agent.vision import read_plates_in_lane
        from models.area import Area

        assert models is not None and frame is not None
        reader = models.plate_reader(config.plates)
        plates.extend(read_plates_in_lane(reader, frame, Area(camera.lane) if camera.lane else None))
        return plate_width_verdict(plates)

    checks = [_try(f"camera {camera.name}", grab)]
    if frame is None:
        return checks
    if models is not None:
        checks.append(_try(f"plates {camera.name}", measure))
    if snapshots is not None:
        grabbed, shot = checks[0], snapshots / f"{camera.name}.jpg"
        checks[0] = _try(grabbed.device,
                         lambda: f"{grabbed.detail}, saved {save_snapshot(frame, camera.lane, shot, plates)}")
    return checks


def plate_width_verdict(reads: Sequence[PlateRead]) -> str:
    """Whether the plate the gate would vote on (the first) is wide enough to read reliably; raises
    when it is not (a camera aimed too wide or too far off)."""
    if not reads or reads[0].box is None:
        return "no plate in view: stop a car at the barrier and run again to check its plate's size"
    text, width = reads[0].text, reads[0].box[2]
    if width < RELIABLE_PLATE_WIDTH:
        raise RuntimeError(f"read {text}, but only {width} px wide: plates read reliably from "
                           f"{RELIABLE_PLATE_WIDTH} px; zoom in or mount the camera nearer the stop line")
    return f"read {text}, {width} px wide (reliable from {RELIABLE_PLATE_WIDTH} px)"


def save_snapshot(frame: np.ndarray, lane: list[tuple[float, float]] | None, path: Path,
                  plates: Sequence[PlateRead] = ()) -> Path:
    """``frame`` as a JPEG, the lane outlined and each plate read boxed with its width in pixels: how
    a technician checks a lane's corners and a plate's size.  It stays on the node, like every picture."""
    import cv2

    picture = frame.copy()
    height, width = picture.shape[:2]
    if lane:
        from models.area import Area

        corners = np.round(Area(lane).corners(width, height)).astype(np.int32)
        cv2.polylines(picture, [corners], isClosed=True, color=(0, 255, 0), thickness=max(2, width // 320))
        cv2.putText(picture, "lane", tuple(int(v) for v in corners[0] + (4, 24)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.6, width / 1280), (0, 255, 0), 2)
    for read in plates:
        if read.box is not None:
            x, y, w, h = read.box
            cv2.rectangle(picture, (x, y), (x + w, y + h), (0, 200, 255), max(1, width // 640))
            cv2.putText(picture, f"{w} px", (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, width / 1920), (0, 200, 255), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), picture):
        raise OSError(f"cannot write {path}")
    return path
