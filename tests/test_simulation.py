"""`make run`: the simulation runs the real daemon on mock pins and a generated video, no ../shared needed."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_loader import parse_config
from agent.daemon import Agent
from agent.event_store import EventStore
from agent.simulation import _locked_past_grace, _pulse
from agent.simulation_scenario import DecisionMissing, Scenario, Step, recorded
from drivers.pins import make_pin_factory
from tests.agent_configs import node_config

ROOT = Path(__file__).resolve().parents[1]


def test_simulation_scenario_records_the_building_story(tmp_path: Path) -> None:
    text = (ROOT / "config" / "simulation.yaml").read_text()
    config = tmp_path / "simulation.yaml"
    config.write_text(text.replace("../var/simulation/state", "state").replace("../var/simulation/", "media/"))
    # The story waits for the agent's decisions, not for so many seconds: it is the same story on one
    # slow core (`make check-pi-speed`), only longer. The timeout only ends a hung run.
    result = subprocess.run([sys.executable, "-m", "agent.cli", "simulate", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "Traceback" not in log
    assert (tmp_path / "media" / "entrance.avi").stat().st_size > 10_000, "the replay video is generated"
    recorded = EventStore(tmp_path / "state" / "events.db", readonly=True).query()
    types = [s.event.type for s in recorded]
    story = ["agent.started", "gate.granted", "door.opened", "door.closed", "door.forced", "door.held_open",
             "smoke.alarm", "smoke.cleared", "alarm.reset", "agent.stopped"]
    assert [kind for kind in story if kind not in types] == [], log
    positions = [types.index(kind) for kind in story]
    assert positions == sorted(positions), types
    assert "camera.fault" not in types and "assist.requested" in types

    # The door at the gate, step by step: let out by the exit button; pulled open while locked once the
    # camera had let the resident in and the gate had locked again; propped open until held open.
    door = [s.event.type for s in recorded if s.event.device == "main" and s.event.type.startswith("door.")]
    assert door == ["door.opened", "door.closed", "door.opened", "door.forced", "door.closed",
                    "door.opened", "door.held_open", "door.closed"], log
    let_in = [i for i, s in enumerate(recorded) if s.event.type == "access.granted" and s.event.device == "main"]
    assert let_in and let_in[0] < types.index("door.forced"), "the door was forced after the resident went in"

    # The cameras: the resident's face and car are let in, the stranger and his car refused (his
    # plate, 京A12347, is one character off hers, which any one edit counted would have let in).
    access = [(s.event.type, s.event.device, s.event.details) for s in
              EventStore(tmp_path / "state" / "events.db", readonly=True).query(types=["access"])]
    decided = sorted((kind, device, details["method"], details.get("person"), details.get("reason"))
                     for kind, device, details in access)
    assert decided == [
        ("access.denied", "car-in", "plate", None, "stranger"),
        ("access.denied", "main", "face", None, "stranger"),
        ("access.granted", "car-in", "plate", "R-0101-1", None),
        ("access.granted", "main", "face", "R-0101-1", None),
    ], f"{decided}\n{result.stdout}"
    plates = [details["plate"] for _, device, details in access if device == "car-in"]
    assert sorted(plates) == ["京A***45", "京A***47"], "plates upstream are masked by default"
    assert "without faces or plates" not in result.stdout, "make test installs the font and the sim packages"

    # The resident's car drove through from the approach loop and is counted; the stranger's waited
    # on the approach loop and turned away, and is not.
    with sqlite3.connect(tmp_path / "state" / "parking.db") as parking:
        assert parking.execute("SELECT name, occupied FROM car_parks").fetchall() == [("residents", 1)]


def _agent_with_the_door_shut(tmp_path: Path) -> Agent:
    pins = make_pin_factory("mock")
    pins.pin(27).drive_low()  # gate main's door contact: shut
    return Agent(parse_config(node_config(tmp_path / "state")), pin_factory=pins)


def test_a_step_waits_for_the_decision_it_depends_on(tmp_path: Path) -> None:
    """The door is pulled open 0.1 s into the story, but only once the exit button's grant (1 s, and
    the strike's grace after it) has ended: at any speed a forced door, not one opened for the button."""
    agent = _agent_with_the_door_shut(tmp_path)
    locked = _locked_past_grace("main")
    steps = [
        Step(0, "exit button", lambda a: _pulse(a, 22), then=(recorded("the grant", "gate.granted", "main"),)),
        Step(0.1, "someone pulls the locked door open", lambda a: a.pin_factory.pin(27).drive_high(),
             first=(locked,), then=(recorded("the forced door", "door.forced", "main"),)),
    ]
    scenario = Scenario(agent, steps, wait_seconds=60)
    agent.start()
    try:
        scenario.play()
    finally:
        agent.shutdown()
    types = [s.event.type for s in EventStore(tmp_path / "state" / "events.db", readonly=True).query()]
    assert types.index("gate.granted") < types.index("door.opened") < types.index("door.forced"), types


def test_a_decision_that_never_comes_ends_the_story_saying_which(tmp_path: Path) -> None:
    agent = _agent_with_the_door_shut(tmp_path)
    steps = [Step(0, "the door opens", lambda a: a.pin_factory.pin(27).drive_high(),
                  then=(recorded("the camera at gate main to let the resident in", "access.granted", "main"),))]
    scenario = Scenario(agent, steps, wait_seconds=0.5)
    agent.start()
    try:
        with pytest.raises(DecisionMissing, match=re.escape(
                "the camera at gate main to let the resident in (after: the door opens) and it never came; "
                "access decisions so far: none")):
            scenario.play()
    finally:
        agent.shutdown()
