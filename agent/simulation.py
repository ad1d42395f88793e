"""Simulation: the real daemon on gpiozero's MockFactory, driven by a scripted scenario.

``make run`` uses this so a newcomer sees events scroll by on a laptop: exit button, door opened
and closed, a forced door, a door held open, a smoke alarm that releases the exits, the alarm
clearing and a technician's reset.  Replay videos named in the config that do not exist yet are
generated here with OpenCV, so nothing outside the project is needed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from gpiozero import Factory

from agent.agent_config import AgentConfig
from agent.daemon import Agent
from agent.fire import ResetRefused
from drivers.pins import make_pin_factory

log = logging.getLogger("edge_agent.simulation")


@dataclass(frozen=True)
class Step:
    at: float  # seconds after start
    say: str
    action: Callable[[Agent], None]


def generate_street_video(path: Path, seconds: float = 10.0, fps: float = 15.0,
                          size: tuple[int, int] = (640, 360)) -> None:
    """An entrance scene: a still background with a figure walking across, written as MJPG/AVI."""
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    background = np.full((height, width, 3), (90, 110, 120), np.uint8)
    cv2.rectangle(background, (width // 3, height // 6), (2 * width // 3, height), (60, 70, 80), -1)  # doorway
    rng = np.random.default_rng(7)
    frames = int(seconds * fps)
    for index in range(frames):
        frame = background.copy()
        x = int(-60 + (width + 120) * index / frames)
        cv2.ellipse(frame, (x, height // 2 - 70), (22, 28), 0, 0, 360, (150, 170, 200), -1)  # head
        cv2.rectangle(frame, (x - 30, height // 2 - 40), (x + 30, height - 20), (40, 60, 150), -1)  # body
        noise = rng.integers(-4, 5, frame.shape, dtype=np.int16)  # sensor noise, as a real camera has
        frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        cv2.putText(frame, f"sim {index / fps:5.1f}s", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()


def prepare_media(config_path: Path) -> list[Path]:
    """Generate every replay video the config names but that does not exist yet (before validation)."""
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    made = []
    for camera in (raw.get("hardware") or {}).get("cameras") or []:
        source = str(camera.get("source", ""))
        if source.endswith((".avi", ".mp4")) and "://" not in source:
            path = Path(source) if Path(source).is_absolute() else config_path.resolve().parent / source
            if not path.exists():
                size = tuple(camera.get("resolution") or (640, 360))
                generate_street_video(path, fps=float(camera.get("fps", 15)), size=(int(size[0]), int(size[1])))
                made.append(path)
    return made


def _pulse(agent: Agent, pin: int | str | None, seconds: float = 0.3) -> None:
    if pin is None:
        return
    mock = agent.pin_factory.pin(pin)
    mock.drive_low()
    threading.Timer(seconds, mock.drive_high).start()


def _wire(pins: Factory, pin: int | str | None, low: bool) -> None:
    if pin is not None:
        mock = pins.pin(pin)
        mock.drive_low() if low else mock.drive_high()


def _drive(agent: Agent, pin: int | str | None, low: bool) -> None:
    _wire(agent.pin_factory, pin, low)


def _reset(agent: Agent) -> None:
    try:
        agent.alarm_reset("simulation technician")
    except ResetRefused as exc:
        log.warning("reset refused: %s", exc)


def building_scenario(config: AgentConfig) -> list[Step]:
    """About 30 s of a building's life, on the first gate and smoke detector in the config."""
    gate = config.hardware.gates[0]
    smoke = config.hardware.smoke_detectors[0]
    held = gate.held_open_seconds
    steps = [
        Step(2, f"a resident presses the exit button at gate {gate.name}", lambda a: _pulse(a, gate.exit_button)),
        Step(3, "the door opens", lambda a: _drive(a, gate.door_contact, low=False)),
        Step(5, "the door closes", lambda a: _drive(a, gate.door_contact, low=True)),
        Step(8, "someone pulls the locked door open", lambda a: _drive(a, gate.door_contact, low=False)),
        Step(9.5, "the door closes", lambda a: _drive(a, gate.door_contact, low=True)),
        Step(11, "exit button, and the door is propped open", lambda a: _pulse(a, gate.exit_button)),
        Step(11.5, "the door opens", lambda a: _drive(a, gate.door_contact, low=False)),
        Step(12 + held, f"the door is closed after {held + 0.5:.0f} s",
             lambda a: _drive(a, gate.door_contact, low=True)),
        Step(14 + held, f"smoke detector {smoke.name} goes into alarm",
             lambda a: _drive(a, smoke.alarm_pin, low=smoke.active_low)),
        Step(19 + held, "a technician tries to reset while the alarm still sounds", _reset),
        Step(21 + held, "the smoke clears", lambda a: _drive(a, smoke.alarm_pin, low=not smoke.active_low)),
        Step(23 + held, "the technician resets the fire alarm", _reset),
    ]
    return steps


def run_simulation(config: AgentConfig, config_path: Path, keep_running: bool = False) -> int:
    if config.hardware.pin_factory != "mock":
        raise SystemExit(f"{config_path}: simulation needs `hardware.pin_factory: mock`")
    if not config.hardware.gates or not config.hardware.smoke_detectors:
        raise SystemExit(f"{config_path}: the scenario needs at least one gate and one smoke detector")
    pins = make_pin_factory("mock")
    for gate in config.hardware.gates:
        _wire(pins, gate.door_contact, low=True)  # doors start shut
    agent = Agent(config, config_path=config_path, pin_factory=pins)
    steps = building_scenario(config)

    def script() -> None:
        started = time.monotonic()
        for step in steps:
            if agent.stopping.wait(max(0.0, step.at - (time.monotonic() - started))):
                return
            log.info("scenario: %s", step.say)
            step.action(agent)
        if not agent.stopping.wait(2.0) and not keep_running:
            log.info("scenario finished; `edge-agent events --config %s` lists what was recorded", config_path)
            agent.stop()

    agent.start()
    threading.Thread(target=script, name="scenario", daemon=True).start()
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    return agent.run()
