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
    from models.plate import PlateReader
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
    barrier_names = {barrier.name for barrier in hardware.barriers}
    plate_size = PlateSize(config)
    for camera in hardware.cameras:
        grabbed: list[np.ndarray] = []
        camera_check = _try(f"camera {camera.name}", lambda c=camera, g=grabbed: _grab(c, g))
        plates: list[PlateRead] = []
        plate_check = None
        if grabbed and camera.gate in barrier_names:
            plate_check = _try(f"plates {camera.name}", lambda c=camera, g=grabbed, p=plates: plate_size(c, g[0], p))
        if grabbed and snapshots is not None:  # the plates read are boxed on it
            camera_check = _try(camera_check.device, lambda c=camera, g=grabbed, p=plates, k=camera_check: (
                f"{k.detail}, saved {save_snapshot(g[0], c.lane, snapshots / f'{c.name}.jpg', p)}"))
        checks += [camera_check] if plate_check is None else [camera_check, plate_check]
    return checks


def _grab(camera: CameraConfig, grabbed: list[np.ndarray]) -> str:
    problem = camera_source_problem(camera)
    if problem:
        raise RuntimeError(problem)
    from drivers.camera import grab_one

    frame, fps = grab_one(camera, timeout=10.0)
    grabbed.append(frame)
    return f"{camera.source}: frame {frame.shape[1]}x{frame.shape[0]}, {fps:.1f} fps"


class PlateSize:
    """Reads the plates in a barrier camera's lane as the gate does, and says whether the one the
    gate would vote on is wide enough to read reliably; raises when it is not (a camera aimed too
    wide or too far off).  The reader is loaded once, for the first barrier camera."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._reader: PlateReader | None = None

    def __call__(self, camera: CameraConfig, frame: np.ndarray, found: list[PlateRead]) -> str:
        from agent.config_plates import plate_formats, plate_settings
        from agent.vision import read_plates_in_lane
        from models.area import Area
        from models.plate import PlateReader

        if self._reader is None:
            self._reader = PlateReader(plate_formats(self.config.plates), plate_settings(self.config.plates))
        found.extend(read_plates_in_lane(self._reader, frame, Area(camera.lane) if camera.lane else None))
        if not found or found[0].box is None:
            return "no plate in view: stop a car at the barrier and run again to check its plate's size"
        text, width = found[0].text, found[0].box[2]
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
