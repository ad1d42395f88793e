"""Simulation: the real daemon on gpiozero's MockFactory, driven by a scripted scenario.

``make run`` uses this so a newcomer sees events scroll by on a laptop: a resident's face and car
let in and a stranger's refused (from the generated camera videos), the exit and assist buttons, a
door opened, forced and held open, a smoke alarm that releases the exits, the alarm clearing and a
technician's reset. Replay videos named in the config that do not exist yet are generated first
(:mod:`agent.simulation_media`), so nothing outside the project is needed.
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

RESIDENT = "R-0101-1"
RESIDENT_PLATE = "京A12345"
# One character off the resident's, not a look-alike of it: read clearly, it must not be let in as hers.
STRANGER_PLATE = "京A12347"


@dataclass(frozen=True)
class Step:
    at: float  # seconds after start
    say: str
    action: Callable[[Agent], None]


def prepare_media(config_path: Path) -> list[str]:
    """Generate every replay video the config names but that does not exist yet (before validation).

    A camera watching a gate gets faces walking up, one watching a barrier gets cars with plates; if the
    packages or font for those are missing, a plain street scene, and the reason is returned.
    """
    from agent import simulation_media as media

    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    hardware = raw.get("hardware") or {}
    barriers = {b.get("name") for b in hardware.get("barriers") or []}
    notes = []
    for camera in hardware.get("cameras") or []:
        source = str(camera.get("source", ""))
        if not source.endswith((".avi", ".mp4")) or "://" in source:
            continue
        path = Path(source) if Path(source).is_absolute() else config_path.resolve().parent / source
        if path.exists():
            continue
        fps = float(camera.get("fps", 15))
        try:
            if camera.get("gate") in barriers:
                font = media.cjk_font()
                plates = [media.render_plate(text, font) for text in (RESIDENT_PLATE, STRANGER_PLATE)]
                media.generate_lane_video(path, plates, fps)
            else:
                media.generate_entrance_video(path, *media.sample_faces(), fps)
            notes.append(f"generated {path}")
        except media.MediaUnavailable as exc:
            media.generate_street_video(path, fps=fps)
            notes.append(f"generated {path} without faces or plates: {exc}")
    return notes


def enrol_resident(config: AgentConfig, config_path: Path) -> str:
    """A whitelist with one simulated resident: her face (from a mirrored photo, so the camera does
    not see the very enrolment image) and her car. The key is made here for the simulation only."""
    import cv2

    from agent import simulation_media as media
    from agent.config_whitelist import open_whitelist_store
    from agent.whitelist import Person
    from agent.whitelist_enrol import make_engine
    from agent.whitelist_store import write_new_key

    key = config.whitelist.key.file
    if key is not None and not Path(str(key)).exists() and not str(key).startswith("$"):
        Path(str(key)).parent.mkdir(parents=True, exist_ok=True)
        write_new_key(Path(str(key)))
    store = open_whitelist_store(config.whitelist, config.storage.state_dir, config_path.resolve().parent)
    if RESIDENT in store.load():
        return f"whitelist: {RESIDENT} already enrolled"
    try:
        portrait, _ = media.sample_faces()
        templates = make_engine(config.faces).templates_from_image(cv2.flip(portrait, 1))
    except media.MediaUnavailable:
        templates = []
    with store.edit() as whitelist:
        whitelist.put(Person(id=RESIDENT, name="Grace (simulated resident)", templates=templates,
                             plates=(RESIDENT_PLATE,)))
    return f"whitelist: enrolled {RESIDENT} with {len(templates)} face template(s) and car {RESIDENT_PLATE}"


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
        Step(4, "an elderly resident presses the assist button", lambda a: _pulse(a, gate.assist_button)),
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
    if config.hardware.barriers:
        barrier = config.hardware.barriers[0]
        low = barrier.safety_loop_active_low
        steps += [
            Step(7, f"the resident's car drives over the safety loop under {barrier.name}",
                 lambda a: _drive(a, barrier.safety_loop, low=low)),
            Step(8.5, "the car has cleared the safety loop", lambda a: _drive(a, barrier.safety_loop, low=not low)),
        ]
        if barrier.approach_loop is not None:
            waits = barrier.approach_loop_active_low
            steps += [
                Step(4.5, f"the resident's car stops on the approach loop before {barrier.name}",
                     lambda a: _drive(a, barrier.approach_loop, low=waits)),
                Step(7.5, "it leaves the approach loop", lambda a: _drive(a, barrier.approach_loop, low=not waits)),
                Step(14, "a stranger's car stops on the approach loop",
                     lambda a: _drive(a, barrier.approach_loop, low=waits)),
                Step(17.5, "and turns away", lambda a: _drive(a, barrier.approach_loop, low=not waits)),
            ]
    return sorted(steps, key=lambda step: step.at)


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
