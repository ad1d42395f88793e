"""Access decisions and parking on mock pins with the real whitelist: who is let in, and why not."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.access import AccessController, plate_for_events
from agent.config_loader import parse_config
from agent.config_parking import CarParkConfig
from agent.daemon import Agent
from agent.fire import FireSafety
from agent.hardware import build_hardware
from agent.parking import Parking
from agent.whitelist import Person, Whitelist
from agent.whitelist_schedule import Window
from drivers.pins import make_pin_factory
from models.face_track import FaceDecision
from models.plate_match import match_plate
from models.plate_vote import PlateDecision
from tests.agent_configs import node_config
from tests.test_drivers import wait_until

NOW = datetime(2026, 11, 23, 10, 0).astimezone()  # a Monday morning


class Events(list):
    def __call__(self, kind: str, device: str | None, details: dict) -> None:
        self.append((kind, device, details))


@pytest.fixture
def setup(tmp_path: Path, mock_factory):
    text = node_config(tmp_path / "state").replace(
        "  smoke_detectors:", "    - {name: car-out, pulse_relay: 12, safety_loop: 26, pulse_seconds: 0.02}\n"
        "  smoke_detectors:")
    config = parse_config(text)
    events = Events()
    hardware = build_hardware(config.hardware, mock_factory, FireSafety(tmp_path / "latch"), events,
                              with_cameras=False)
    template = np.ones(128, np.float32) / np.sqrt(128)
    whitelist = Whitelist([
        Person(id="R-0101-1", templates=[template], plates=("京A12345",)),
        Person(id="R-0101-2", plates=("京A12346",), gates=("main",)),
        Person(id="V-0001", plates=("沪B11111",), valid_until=NOW + timedelta(hours=2)),
        Person(id="V-0002", plates=("沪B22222",), valid_until=NOW - timedelta(days=1)),
        Person(id="R-0102-1", plates=("京A99999",), enabled=False),
        Person(id="R-0103-1", plates=("京A77777",), schedule=(Window.parse("sat-sun 08:00-20:00"),)),
    ])
    yield config, hardware, whitelist, events, tmp_path
    hardware.close()


def controller(setup, parking: Parking | None = None, mode: str = "masked") -> AccessController:
    _config, hardware, whitelist, events, _ = setup
    return AccessController(hardware, lambda: whitelist, events,
                            plate_match=lambda read, known, _barrier: match_plate(read.text, known, 1,
                                                                                  read.alternatives),
                            upstream_plate=mode, plate_key=b"k" * 32, clock=lambda: NOW, parking=parking)


def face(person: str | None, outcome: str = "match") -> FaceDecision:
    return FaceDecision(track_id=1, person_id=person, outcome=outcome, distance=0.31, margin=float("inf"),
                        encodings=3, ts=0.0)


def test_resident_face_opens_the_gate(setup) -> None:
    _, hardware, _, events, _ = setup
    controller(setup).face_decided("main", face("R-0101-1"))
    assert not hardware.gates["main"].locked
    kind, device, details = events[-1]
    assert (kind, device, details["person"], details["method"]) == ("access.granted", "main", "R-0101-1", "face")
    assert details["margin"] is None, "JSON has no infinity"


@pytest.mark.parametrize(("decision", "reason"), [
    (face(None, "stranger"), "stranger"), (face("R-0101-1", "liveness"), "liveness"),
    (face("X-404"), "stranger"), (face("V-0002"), "expired"), (face("R-0102-1"), "disabled"),
    (face("R-0103-1"), "schedule"),
])
def test_refusals_keep_the_gate_shut(setup, decision: FaceDecision, reason: str) -> None:
    _, hardware, _, events, _ = setup
    controller(setup).face_decided("main", decision)
    assert hardware.gates["main"].locked
    assert events[-1][0] == "access.denied" and events[-1][2]["reason"] == reason


def test_gate_restriction(setup) -> None:
    _, hardware, _, events, _ = setup
    controller(setup).plate_decided("car-in", PlateDecision("京A12346", 0.99, 3, 3))
    assert events[-1][2]["reason"] == "gate" and hardware.barriers["car-in"].arm == "down"


def test_plate_grant_with_one_misread_character_and_masking(setup) -> None:
    _, hardware, _, events, _ = setup
    controller(setup).plate_decided("car-in", PlateDecision("京A12845", 0.9, 3, 3))
    kind, _, details = events[-1]
    assert kind == "access.granted" and details["person"] == "R-0101-1" and details["edit_distance_match"]
    assert details["plate"] == "京A***45" and hardware.barriers["car-in"].arm == "up"


def test_a_plate_read_clearly_one_character_off_a_residents_stays_out(setup) -> None:
    """The same read as above, but the recogniser saw no 3 where it read 8: a stranger's car whose
    plate is one character off a resident's, read clearly, is refused; seen, the resident is in."""
    _, hardware, _, events, _ = setup
    clear = tuple({char: 0.99} for char in "京A12845")
    controller(setup).plate_decided("car-in", PlateDecision("京A12845", 0.9, 3, 3, clear))
    assert events[-1][0] == "access.denied" and events[-1][2]["reason"] == "stranger"
    assert hardware.barriers["car-in"].arm == "down"
    seen = (*clear[:4], {"8": 0.9, "3": 0.05}, *clear[5:])
    controller(setup).plate_decided("car-in", PlateDecision("京A12845", 0.9, 3, 3, seen))
    assert events[-1][0] == "access.granted" and events[-1][2]["person"] == "R-0101-1"


def test_ambiguous_plate_matches_nobody(setup) -> None:
    _, _, _, events, _ = setup
    controller(setup).plate_decided("car-in", PlateDecision("京A12347", 0.9, 3, 3))  # 1 from ...45 and ...46
    assert events[-1][0] == "access.denied" and events[-1][2]["reason"] == "stranger"


def test_a_high_security_barrier_takes_only_exact_reads(tmp_path: Path) -> None:
    """The issue's "0 for high-security gates": one barrier stricter than the site's default."""
    text = node_config(tmp_path / "state").replace("  smoke_detectors:", (
        "    - {name: car-vip, raise_relay: 7, lower_relay: 8, safety_loop: 9, max_edit_distance: 0}\n"
        "  smoke_detectors:"))
    agent = Agent(parse_config(text), pin_factory=make_pin_factory("mock"))
    match = agent._access().plate_match
    misread = PlateDecision("京A12346", 0.9, 3, 3)  # one character off the resident's 京A12345
    assert match(misread, ["京A12345"], "car-in") == "京A12345"  # plates.max_edit_distance: 1
    assert match(misread, ["京A12345"], "car-vip") is None
    assert match(PlateDecision("京A12345", 0.9, 3, 3), ["京A12345"], "car-vip") == "京A12345"


def test_plate_modes() -> None:
    key = b"k" * 32
    assert plate_for_events("京A12345", "clear", key) == "京A12345"
    assert plate_for_events("京A12345", "masked", key) == "京A***45"
    hashed = plate_for_events("京A12345", "hashed", key)
    assert hashed.startswith("h:") and "12345" not in hashed
    assert hashed == plate_for_events("京A12345", "hashed", key)  # one car, one pseudonym
    assert hashed != plate_for_events("京A12345", "hashed", b"j" * 32)


def test_a_hashed_plate_cannot_be_undone_without_the_nodes_key(tmp_path: Path) -> None:
    """What the platform (or anyone reading the events) knows: the site id, and that plates of one
    city are few. Trying every 京A plate against a hash that only the site id salted finds it; the
    whitelist key's derived key is not in any event."""
    from agent.whitelist_store import WhitelistStore

    store = WhitelistStore(tmp_path / "w.bin", b"w" * 32)
    key = store.derived_key("plate pseudonyms")
    assert len(key) == 32 and key != b"w" * 32
    assert key == WhitelistStore(tmp_path / "other.bin", b"w" * 32).derived_key("plate pseudonyms")
    assert key != store.derived_key("another purpose")
    hashed = plate_for_events("京A52817", "hashed", key)
    for public in (b"s1", b""):  # what an attacker could key the hash with: the site id, or nothing
        assert not any(plate_for_events(f"京A{n:05d}", "hashed", public) == hashed for n in range(100_000))
    assert any(plate_for_events(f"京A{n:05d}", "hashed", key) == hashed for n in range(100_000))


def drive_through(pins, loop_pin: int) -> None:
    pins.pin(loop_pin).drive_low()
    pins.pin(loop_pin).drive_high()
    time.sleep(0.05)


def test_parking_counts_passes_and_refuses_visitors_when_full(setup) -> None:
    _config, hardware, _, events, tmp_path = setup
    park = CarParkConfig(name="lot", capacity=2, entries=["car-in"], exits=["car-out"])
    parking = Parking([park], tmp_path / "parking.db", events)
    access = controller(setup, parking)
    pins = hardware.barriers["car-in"].loops.safety.pin_factory

    def enter(plate: str) -> None:
        access.plate_decided("car-in", PlateDecision(plate, 0.99, 3, 3))
        if hardware.barriers["car-in"].arm == "up":
            drive_through(pins, 13)
            parking.vehicle_passed("car-in")

    enter("京A12345")
    assert parking.occupied("lot") == 1
    enter("沪B11111")  # a visitor, still room
    assert parking.occupied("lot") == 2
    assert any(kind == "parking.full" for kind, _, _ in events)
    access.plate_decided("car-in", PlateDecision("沪B11111", 0.99, 3, 3))
    assert events[-1][2]["reason"] == "full", "visitors are refused when full"
    access.plate_decided("car-in", PlateDecision("京A12345", 0.99, 3, 3))
    assert events[-1][0] == "access.granted", "residents are still let in when full (default)"

    access.plate_decided("car-out", PlateDecision("粤Z00000", 0.9, 3, 3))  # unknown cars may always leave
    assert events[-1][0] == "access.granted" and events[-1][2]["direction"] == "exit"
    parking.vehicle_passed("car-out")
    assert parking.occupied("lot") == 1 and events[-1][0] == "parking.available"
    parking.close()
    reopened = Parking([park], tmp_path / "parking.db", events)
    assert reopened.occupied("lot") == 1, "counts survive a restart"
    assert reopened.correct("lot", 0, "test")["spaces_left"] == 2
    with pytest.raises(ValueError):
        reopened.correct("nope", 1, "test")
    reopened.close()


def test_nobody_admitted_when_full_if_configured(setup) -> None:
    _, hardware, _, events, tmp_path = setup
    park = CarParkConfig(name="lot", capacity=1, entries=["car-in"], admit_residents_when_full=False)
    parking = Parking([park], tmp_path / "parking.db", events)
    parking.correct("lot", 1, "test")
    controller(setup, parking).plate_decided("car-in", PlateDecision("京A12345", 0.99, 3, 3))
    assert events[-1][2]["reason"] == "full" and hardware.barriers["car-in"].arm == "down"
    parking.close()


def test_agent_counts_a_car_that_passed(tmp_path: Path) -> None:
    from agent.daemon import Agent
    from drivers.pins import make_pin_factory

    text = node_config(tmp_path / "state") + "parking:\n  - {name: lot, capacity: 10, entries: [car-in]}\n"
    agent = Agent(parse_config(text), pin_factory=make_pin_factory("mock"))
    agent.start()
    try:
        agent.open_gate("car-in", None)  # a signed remote open for a delivery van
        agent.pin_factory.pin(13).drive_low()
        agent.pin_factory.pin(13).drive_high()
        agent.hardware.counting.submit(lambda: None).result(timeout=5)  # counted off the pin thread
        assert agent.parking.occupied("lot") == 1
        assert agent.state()["parking/lot"]["spaces_left"] == 9
        reply = agent.handle_control({"cmd": "parking_set", "name": "lot", "occupied": 4})
        assert reply["ok"] and "6 left" in reply["message"]
    finally:
        agent.shutdown()

def test_an_approach_loop_keeps_the_count_true_to_which_way_cars_went(tmp_path: Path) -> None:
    """A granted car that backs out is not counted in; in a fire, with every arm up, a car that leaves
    by the entry lane counts as gone and is reported."""
    from agent.daemon import Agent
    from drivers.pins import make_pin_factory

    text = node_config(tmp_path / "state").replace("safety_loop: 13,", "safety_loop: 13, approach_loop: 7,")
    text += "parking:\n  - {name: lot, capacity: 10, entries: [car-in]}\n"
    agent = Agent(parse_config(text), pin_factory=make_pin_factory("mock"))
    agent.start()
    pins = agent.pin_factory

    def loops(*steps: tuple[int, bool]) -> None:
        for pin, occupied in steps:
            pins.pin(pin).drive_low() if occupied else pins.pin(pin).drive_high()
            time.sleep(0.08)  # past the loops' debounce
        agent.hardware.counting.submit(lambda: None).result(timeout=5)  # counted off the pin thread

    try:
        agent.handle_control({"cmd": "parking_set", "name": "lot", "occupied": 5})
        agent.open_gate("car-in", None)
        loops((7, True), (13, True), (13, False))  # noses under the arm and backs out
        assert agent.parking.occupied("lot") == 5
        agent.open_gate("car-in", None)
        loops((13, True), (7, False), (13, False))  # then drives in
        assert agent.parking.occupied("lot") == 6

        pins.pin(24).drive_low()  # smoke: every arm goes up and stays up
        assert wait_until(lambda: agent.hardware.barriers["car-in"].held)
        loops((13, True), (7, True), (13, False), (7, False))  # a car leaves by the entry lane
        assert agent.parking.occupied("lot") == 5
        assert wait_until(lambda: [(s.event.type, s.event.device) for s in agent.store.query(types=["vehicle"])]
                          == [("vehicle.wrong_way", "car-in")])
    finally:
        agent.shutdown()

def test_a_car_whose_plate_is_never_read_is_let_out_after_waiting_at_an_exit(tmp_path: Path) -> None:
    """Every car read at an exit is let out; one with a dirty or missing plate is let out by its
    approach loop after a while, not kept in until a guard comes.  Entries never do this."""
    from agent.daemon import Agent
    from drivers.pins import make_pin_factory

    text = node_config(tmp_path / "state").replace("safety_loop: 13,", "safety_loop: 13, approach_loop: 7,")
    text = text.replace("  smoke_detectors:", "    - {name: car-out, pulse_relay: 12, safety_loop: 26,"
                        " approach_loop: 8, pulse_seconds: 0.02}\n  smoke_detectors:")
    text += ("parking:\n  - {name: lot, capacity: 10, entries: [car-in], exits: [car-out],"
             " let_out_unread_after_seconds: 0.4}\n")
    agent = Agent(parse_config(text), pin_factory=make_pin_factory("mock"))
    agent.start()
    pins, barriers = agent.pin_factory, agent.hardware.barriers

    def granted() -> list[tuple[str | None, dict]]:
        return [(s.event.device, s.event.details) for s in agent.store.query(types=["access.granted"])]

    try:
        agent.handle_control({"cmd": "parking_set", "name": "lot", "occupied": 3})
        pins.pin(7).drive_low()  # an unread car at the entry stays out
        pins.pin(8).drive_low()  # and one at the exit
        time.sleep(0.2)
        assert barriers["car-out"].arm == "down", "let out too soon: its plate may still be read"
        assert wait_until(lambda: barriers["car-out"].arm == "up")
        assert wait_until(lambda: granted() == [
            ("car-out", {"method": "loop", "direction": "exit", "reason": "plate not read"})])
        assert barriers["car-in"].arm == "down"
        for pin, occupied in ((26, True), (8, False), (26, False)):  # it drives out
            pins.pin(pin).drive_low() if occupied else pins.pin(pin).drive_high()
            time.sleep(0.08)
        agent.hardware.counting.submit(lambda: None).result(timeout=5)
        assert agent.parking.occupied("lot") == 2 and barriers["car-out"].arm == "down"

        pins.pin(8).drive_low()  # the next car is let out by the platform before the wait is over
        agent.open_gate("car-out", None)
        time.sleep(0.6)
        assert len(granted()) == 1, "let out twice"
        pins.pin(8).drive_high()  # it turns back after all
        barriers["car-out"].lower()
        time.sleep(0.1)
        pins.pin(8).drive_low()  # and so does a car before the wait is over: nobody to let out
        time.sleep(0.1)
        pins.pin(8).drive_high()
        time.sleep(0.6)
        assert len(granted()) == 1 and barriers["car-out"].arm == "down"
    finally:
        agent.shutdown()


def test_counting_a_car_never_holds_up_the_pin_callbacks(tmp_path: Path, mock_factory) -> None:
    """On a Pi every pin's callback runs on lgpio's one thread: a count stuck on a slow SD card
    there would hold back the smoke detector's next edge."""
    config = parse_config(node_config(tmp_path / "state"))
    disk = threading.Event()
    counted: list[str] = []

    def slow_count(barrier: str, against: bool) -> None:
        disk.wait(10)
        counted.append(barrier)

    hardware = build_hardware(config.hardware, mock_factory, FireSafety(tmp_path / "latch"), Events(),
                              with_cameras=False, vehicle_passed=slow_count)
    try:
        hardware.barriers["car-in"].raise_arm()
        mock_factory.pin(13).drive_low()
        time.sleep(0.1)  # past the loop's debounce
        clearing = threading.Thread(target=mock_factory.pin(13).drive_high)  # MockFactory calls back inline
        clearing.start()
        clearing.join(timeout=1)
        assert not clearing.is_alive(), "the pin callback waited for the count"
        assert hardware.barriers["car-in"].arm == "down" and counted == []
    finally:
        disk.set()
        hardware.close()
    assert counted == ["car-in"], "a pass seen before closing is still counted"


def test_parking_cli_offline(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state") + "parking:\n  - {name: lot, capacity: 10, entries: [car-in]}\n")
    root = Path(__file__).resolve().parents[1]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", "parking", *args, "--config", str(config)],
                              cwd=root, capture_output=True, text=True, timeout=60)

    result = cli("set", "lot", "7")
    assert result.returncode == 0 and "3 left" in result.stdout
    shown = cli("show")
    assert shown.returncode == 0 and "7 / 10" in shown.stdout
    assert cli("set", "nope", "1").returncode == 1

    # An agent that holds its socket but does not answer (busy, or not ours to talk to): the count
    # is left to it, not written behind its back.
    from agent.control import SOCKET_NAME

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(tmp_path / "state" / SOCKET_NAME))
        silent.listen(1)
        refused = cli("set", "lot", "2")
    assert refused.returncode == 1 and "did not answer" in refused.stderr
    assert "7 / 10" in cli("show").stdout


def test_a_wait_that_ends_while_a_reload_has_closed_the_exits_pins_is_let_go(tmp_path: Path, mock_factory) -> None:
    """The wait looks its barrier up when it ends; in a reload the old barrier's pins are already
    closed and the new one not yet built: nothing is raised, nothing is recorded, nothing breaks."""
    from agent.access import UnreadPlateExits
    from agent.config import BarrierConfig
    from drivers.barrier import Barrier

    barrier = Barrier(BarrierConfig(name="car-out", pulse_relay=12, safety_loop=26, approach_loop=8), mock_factory)
    parking = Parking([CarParkConfig(name="lot", capacity=2, entries=["car-in"], exits=["car-out"])],
                      tmp_path / "parking.db", Events())
    events = Events()
    exits = UnreadPlateExits(lambda: {"car-out": barrier}, parking, events)
    barrier.close()
    exits._let_out("car-out")
    assert events == []
    parking.close()
