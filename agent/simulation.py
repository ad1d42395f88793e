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
from agent.simulation_scenario import DecisionMissing, Scenario, Step, StoryStopped, Wait, decided, holds, recorded
from drivers.gate import GRANT_GRACE_SECONDS
from drivers.pins import make_pin_factory

log = logging.getLogger("edge_agent.simulation")

RESIDENT = "R-0101-1"
RESIDENT_PLATE = "京A12345"
# One character off the resident's, not a look-alike of it: read clearly, it must not be let in as hers.
STRANGER_PLATE = "京A12347"


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


@dataclass(frozen=True)
class Shown:
    """What the replayed videos show: faces walking up to the gate, plates on the cars at the barrier
    (without the packages or the font for them, a street scene: see :func:`prepare_media`)."""

    faces: bool
    plates: bool

    @classmethod
    def here(cls) -> Shown:
        from agent import simulation_media as media

        def available(make: Callable[[], object]) -> bool:
            try:
                make()
            except media.MediaUnavailable:
                return False
            return True

        return cls(faces=available(media.sample_faces), plates=available(media.cjk_font))


def _when(condition: object, *waits: Wait) -> tuple[Wait, ...]:
    return waits if condition else ()


def _locked_past_grace(gate: str) -> Wait:
    """Gate ``gate`` locked for longer than the grace a door gets after a grant (a strike releases a
    little late: drivers/gate.py does not call a door pushed open within it forced)."""
    locked_since: list[float] = []  # since when it has been seen locked, without a break

    def check(agent: Agent) -> bool:
        if not agent.hardware.gates[gate].locked:
            locked_since.clear()
            return False
        if not locked_since:
            locked_since.append(time.monotonic())
        return time.monotonic() - locked_since[0] > GRANT_GRACE_SECONDS

    return holds(f"gate {gate} to lock again, past the grace after a grant", check)


def building_scenario(agent: Agent, shown: Shown) -> tuple[list[Step], tuple[Wait, ...]]:
    """About 30 s of a building's life, on the first gate, barrier and smoke detector in the config:
    the steps, and the cameras' decisions the story waits for before it ends.

    Each step that depends on a decision of the agent waits for it (see
    :mod:`agent.simulation_scenario`): the door is pulled open once the camera has let the resident
    in and the gate has locked again, her car drives on once the arm is up for it, the stranger turns
    away once his plate is refused.  Nothing rests on the agent having decided within so many seconds.
    """
    config = agent.config
    gate = config.hardware.gates[0]
    smoke = config.hardware.smoke_detectors[0]
    held = gate.held_open_seconds
    g = gate.name
    watched = {camera.gate for camera in config.hardware.cameras}
    faces = shown.faces and g in watched
    locked = _locked_past_grace(g)
    # The door opens for the exit button while its grant lasts (without a button, it is forced).
    unlocked = _when(gate.exit_button is not None,
                     holds(f"gate {g} to unlock", lambda a: not a.hardware.gates[g].locked))
    door = gate.door_contact is not None
    opened = _when(door, recorded(f"door {g} to be recorded open", "door.opened", g))
    closed = _when(door, recorded(f"door {g} to be recorded closed", "door.closed", g))
    exit_granted = _when(gate.exit_button is not None, recorded(
        f"the exit button's grant at gate {g}", "gate.granted", g, method="exit_button"))
    resident_in = _when(faces, decided(f"the camera at gate {g} to let the resident in by her face",
                                       "access.granted", g, method="face"))
    last = _when(faces, decided(f"the camera at gate {g} to refuse the stranger", "access.denied", g, method="face"))
    steps = [
        Step(2, f"a resident presses the exit button at gate {g}", lambda a: _pulse(a, gate.exit_button),
             then=exit_granted),
        Step(3, "the door opens", lambda a: _drive(a, gate.door_contact, low=False), first=unlocked, then=opened),
        Step(4, "an elderly resident presses the assist button", lambda a: _pulse(a, gate.assist_button),
             then=_when(gate.assist_button is not None,
                        recorded(f"the assist call at gate {g}", "assist.requested", g))),
        Step(5, "the door closes", lambda a: _drive(a, gate.door_contact, low=True), then=closed),
        # Locked, and no grant of the camera's still to come that would unlock it under the intruder.
        Step(8, "someone pulls the locked door open", lambda a: _drive(a, gate.door_contact, low=False),
             first=(*resident_in, locked),
             then=_when(door, recorded(f"door {g} to be recorded forced", "door.forced", g))),
        Step(9.5, "the door closes", lambda a: _drive(a, gate.door_contact, low=True), then=closed),
        Step(11, "exit button, and the door is propped open", lambda a: _pulse(a, gate.exit_button),
             then=exit_granted),
        Step(11.5, "the door opens", lambda a: _drive(a, gate.door_contact, low=False), first=unlocked,
             then=opened),
        Step(12 + held, f"the door is closed after {held + 0.5:.0f} s",
             lambda a: _drive(a, gate.door_contact, low=True),
             first=_when(door, recorded(f"door {g} to be recorded held open", "door.held_open", g)), then=closed),
        Step(14 + held, f"smoke detector {smoke.name} goes into alarm",
             lambda a: _drive(a, smoke.alarm_pin, low=smoke.active_low),
             then=(recorded(f"smoke detector {smoke.name}'s alarm", "smoke.alarm", smoke.name),)),
        Step(19 + held, "a technician tries to reset while the alarm still sounds", _reset),
        Step(21 + held, "the smoke clears", lambda a: _drive(a, smoke.alarm_pin, low=not smoke.active_low),
             then=(recorded(f"smoke detector {smoke.name} to clear", "smoke.cleared", smoke.name),)),
        Step(23 + held, "the technician resets the fire alarm", _reset,
             then=(recorded("the fire alarm's reset", "alarm.reset"),)),
    ]
    if config.hardware.barriers:
        steps += _car_steps(agent, shown)
        barrier = config.hardware.barriers[0].name
        last += _when(shown.plates and barrier in watched and config.hardware.barriers[0].approach_loop is None,
                      decided(f"the camera at barrier {barrier} to refuse the stranger's car", "access.denied",
                              barrier, method="plate"))
    return sorted(steps, key=lambda step: step.at), last


def _car_steps(agent: Agent, shown: Shown) -> list[Step]:
    """The resident's car let in by its plate and counted; a stranger's refused, and turning away."""
    barrier = agent.config.hardware.barriers[0]
    b, low = barrier.name, barrier.safety_loop_active_low
    plates = shown.plates and b in {camera.gate for camera in agent.config.hardware.cameras}
    park = next((p.name for p in agent.config.parking if b in (*p.entries, *p.exits)), None)
    parked = agent.parking.occupied(park) if park is not None else 0  # before the story: make run counts on
    steps = [
        Step(7, f"the resident's car drives over the safety loop under {b}",
             lambda a: _drive(a, barrier.safety_loop, low=low),
             first=_when(plates, decided(f"the camera at barrier {b} to let the resident's car in by its plate",
                                         "access.granted", b, method="plate"),
                         holds(f"the arm of {b} to be up for her car", lambda a: a.hardware.barriers[b].arm == "up"))),
        Step(8.5, "the car has cleared the safety loop", lambda a: _drive(a, barrier.safety_loop, low=not low),
             then=_when(plates and park, holds(f"car park {park} to count her car",
                                               lambda a: a.parking.occupied(park) != parked))),
    ]
    if barrier.approach_loop is not None:
        waits = barrier.approach_loop_active_low
        steps += [
            Step(4.5, f"the resident's car stops on the approach loop before {b}",
                 lambda a: _drive(a, barrier.approach_loop, low=waits)),
            Step(7.5, "it leaves the approach loop", lambda a: _drive(a, barrier.approach_loop, low=not waits)),
            Step(14, "a stranger's car stops on the approach loop",
                 lambda a: _drive(a, barrier.approach_loop, low=waits)),
            Step(17.5, "and turns away", lambda a: _drive(a, barrier.approach_loop, low=not waits),
                 first=_when(plates, decided(f"the camera at barrier {b} to refuse the stranger's car",
                                             "access.denied", b, method="plate"))),
        ]
    return steps


def run_simulation(config: AgentConfig, config_path: Path, keep_running: bool = False) -> int:
    """Run the agent and the story; 1 if a decision the story waited for never came (the log says which)."""
    if config.hardware.pin_factory != "mock":
        raise SystemExit(f"{config_path}: simulation needs `hardware.pin_factory: mock`")
    if not config.hardware.gates or not config.hardware.smoke_detectors:
        raise SystemExit(f"{config_path}: the scenario needs at least one gate and one smoke detector")
    pins = make_pin_factory("mock")
    for gate in config.hardware.gates:
        _wire(pins, gate.door_contact, low=True)  # doors start shut
    agent = Agent(config, config_path=config_path, pin_factory=pins)
    steps, last = building_scenario(agent, Shown.here())
    scenario = Scenario(agent, steps, last)  # before start: it sees every event the agent records
    failed: list[str] = []

    def script() -> None:
        try:
            scenario.play()
        except StoryStopped:
            return
        except DecisionMissing as exc:
            failed.append(str(exc))
            log.error("scenario stopped: %s", exc)
            agent.stop()
            return
        if not agent.stopping.wait(2.0) and not keep_running:
            log.info("scenario finished; `edge-agent events --config %s` lists what was recorded", config_path)
            agent.stop()

    agent.start()
    threading.Thread(target=script, name="scenario", daemon=True).start()
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    code = agent.run()
    return 1 if failed else code
