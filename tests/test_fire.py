"""Fire safety inside the running agent: release in time, latch, reset, restart, hung workers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.config_loader import parse_config
from agent.daemon import Agent
from agent.fire import ResetRefused
from drivers.pins import make_pin_factory
from tests.agent_configs import node_config

CONFIRM_MS = 100


@pytest.fixture
def agent(tmp_path: Path):
    pins = make_pin_factory("mock")
    pins.pin(27).drive_low()  # door shut
    instance = Agent(parse_config(node_config(tmp_path / "state", confirm_ms=CONFIRM_MS)), pin_factory=pins)
    instance.start()
    yield instance
    instance.shutdown()


def relay_on(agent: Agent, pin: int) -> bool:
    return agent.pin_factory.pin(pin).state == 1


def time_until(check, timeout: float = 3.0) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.002)
    return None


def test_release_within_500ms_even_with_hung_workers(agent: Agent) -> None:
    hang = threading.Event()
    # A worker that holds the database forever, and event consumers (uplink, recognition) that never return.
    holding = threading.Event()

    def hung_database_writer() -> None:
        with agent.store._lock:
            holding.set()
            hang.wait()

    threading.Thread(target=hung_database_writer, daemon=True).start()
    holding.wait(2)
    agent.listeners.append(lambda event: hang.wait())
    try:
        agent.pin_factory.pin(24).drive_low()
        elapsed = time_until(lambda: relay_on(agent, 17))
        assert elapsed is not None, "the exit was never released"
        assert elapsed - CONFIRM_MS / 1000 < 0.5, f"released {elapsed * 1000:.0f} ms after the alarm started"
        assert time_until(lambda: agent.hardware.barriers["car-in"].arm == "up") is not None
        assert not relay_on(agent, 18), "a gate in fire_mode secure stays locked"
        assert agent.hardware.indicators[0].alarm_active
    finally:
        hang.set()


def test_latch_holds_until_cleared_and_reset(agent: Agent) -> None:
    pins = agent.pin_factory
    pins.pin(24).drive_low()
    assert time_until(lambda: bool(agent.store.query(types=["smoke.alarm"]))) is not None
    agent.hardware.gates["main"].lock()  # a stray command (or a grant pulse ending) must not lock the exit
    assert relay_on(agent, 17)
    with pytest.raises(ResetRefused, match="still in alarm"):
        agent.alarm_reset("test")
    pins.pin(24).drive_high()
    time.sleep(0.05)
    assert relay_on(agent, 17), "clearing the detector alone does not end the latch"
    assert agent.alarm_reset("test") == ["lobby"]
    assert not relay_on(agent, 17) and agent.hardware.barriers["car-in"].arm == "down"
    assert not agent.hardware.indicators[0].alarm_active
    assert agent.recorder.flush()
    types = [s.event.type for s in agent.store.query()]
    assert types.index("smoke.alarm") < types.index("smoke.cleared") < types.index("alarm.reset")
    with pytest.raises(ResetRefused, match="no fire alarm"):
        agent.alarm_reset("test")


def test_latch_survives_a_restart(tmp_path: Path) -> None:
    config = parse_config(node_config(tmp_path / "state", confirm_ms=0))
    first = Agent(config, pin_factory=make_pin_factory("mock"))
    first.start()
    first.pin_factory.pin(24).drive_low()
    assert time_until(lambda: first.fire.latched) is not None
    first.pin_factory.pin(24).drive_high()
    first.shutdown()

    second = Agent(config, pin_factory=make_pin_factory("mock"))
    second.start()
    try:
        assert second.fire.latched and relay_on(second, 17)
        assert second.alarm_reset("test") == ["lobby"]
        assert not relay_on(second, 17)
    finally:
        second.shutdown()


def test_exit_button_grant_is_an_event_with_indicator(agent: Agent) -> None:
    agent.pin_factory.pin(22).drive_low()
    agent.pin_factory.pin(22).drive_high()
    assert relay_on(agent, 17)
    assert agent.recorder.flush()
    granted = agent.store.query(types=["gate.granted"])
    assert granted and granted[0].event.details["method"] == "exit_button"
    assert any(s.state for s in agent.pin_factory.pin(21).states)


def test_control_socket_status_and_reset(agent: Agent) -> None:
    from agent.control import call

    state_dir = agent.config.storage.state_dir
    reply = call(state_dir, {"cmd": "status"})
    assert reply["ok"] and reply["state"]["gate/main"]["lock"] == "locked"
    assert reply["recognition"] == {}, "this node has no camera"
    assert call(state_dir, {"cmd": "alarm_reset"}) == {"ok": False, "message": "no fire alarm is latched"}
    assert call(state_dir, {"cmd": "nope"})["ok"] is False


# -- reloads: the fire controller always holds the devices it must drive ---------------------------

def reloading_agent(tmp_path: Path, confirm_ms: int = 0) -> tuple[Agent, Path]:
    path = tmp_path / "agent.yaml"
    path.write_text(node_config(tmp_path / "state", confirm_ms=confirm_ms))
    instance = Agent(parse_config(path.read_text()), config_path=path, pin_factory=make_pin_factory("mock"))
    instance.start()
    return instance, path


def with_second_detector(path: Path, extra: str = "") -> None:
    text = path.read_text().replace("  indicators:", f"    - {{name: stairs, alarm_pin: 25, confirm_ms: 0{extra}}}\n"
                                                    "  indicators:")
    path.write_text(text)


def test_a_detector_already_in_alarm_when_a_reload_adds_it_releases_the_exits(tmp_path: Path) -> None:
    """It confirms while it is built: the report must reach a fire controller bound to the new
    gates, not the ones the reload closed, and the latch must hold."""
    agent, path = reloading_agent(tmp_path)
    try:
        agent.pin_factory.pin(25).drive_low()  # the stairwell's detector, wired but not yet configured
        with_second_detector(path)
        assert agent._reload_now()
        assert agent.fire.latched and agent.fire.triggered_by == ["stairs"]
        assert relay_on(agent, 17), "the exit stayed locked"
        assert not relay_on(agent, 18), "a gate in fire_mode secure stays locked"
        assert agent.hardware.barriers["car-in"].arm == "up"
        assert agent.recorder.flush()
        alarms = agent.store.query(types=["smoke.alarm"])
        assert [(s.event.device, s.event.details["released"]) for s in alarms] == [("stairs", ["main"])]
        agent.pin_factory.pin(25).drive_high()  # and the new detector goes on reporting
        assert time_until(lambda: bool(agent.store.query(types=["smoke.cleared"]))) is not None
    finally:
        agent.shutdown()


def test_a_reload_that_changes_the_exit_and_adds_a_detector_in_alarm_releases_the_new_exit(
        tmp_path: Path) -> None:
    agent, path = reloading_agent(tmp_path)
    try:
        agent.pin_factory.pin(25).drive_low()
        with_second_detector(path)
        path.write_text(path.read_text().replace("unlock_seconds: 1}", "unlock_seconds: 2}"))  # the gate is rebuilt
        assert agent._reload_now()
        assert agent.hardware.gates["main"].config.unlock_seconds == 2
        assert agent.fire.latched and relay_on(agent, 17) and agent.hardware.gates["main"].held
    finally:
        agent.shutdown()


def test_a_reload_during_a_fire_never_locks_a_released_exit_even_for_a_moment(tmp_path: Path) -> None:
    """The gate and the detector are unchanged, so they are kept as they run: the exit's relay is
    never switched off, and the detector keeps watching (its alarm needs no second confirmation)."""
    agent, path = reloading_agent(tmp_path)
    try:
        pins = agent.pin_factory
        pins.pin(24).drive_low()
        assert time_until(lambda: relay_on(agent, 17)) is not None
        pins.pin(17).clear_states()
        detector = agent.hardware.smoke_detectors["lobby"]
        path.write_text(path.read_text().replace("name: buzzer", "name: sounder"))  # an unrelated change
        assert agent._reload_now()
        assert [state.state for state in pins.pin(17).states] == [1], "the released exit was switched off"
        assert agent.hardware.smoke_detectors["lobby"] is detector and detector.state()["alarm"]
        assert agent.hardware.indicators[0].name == "sounder" and agent.hardware.indicators[0].alarm_active
    finally:
        agent.shutdown()


def test_a_detector_confirming_through_a_reload_is_not_restarted(tmp_path: Path) -> None:
    agent, path = reloading_agent(tmp_path, confirm_ms=400)
    try:
        agent.pin_factory.pin(24).drive_low()  # confirmation under way
        detector = agent.hardware.smoke_detectors["lobby"]
        path.write_text(path.read_text().replace("unlock_seconds: 1}", "unlock_seconds: 2}"))
        assert agent._reload_now()
        assert agent.hardware.smoke_detectors["lobby"] is detector, "the unchanged detector was rebuilt"
        assert time_until(lambda: agent.fire.latched, timeout=3.0) is not None
        assert relay_on(agent, 17) and agent.hardware.gates["main"].config.unlock_seconds == 2
    finally:
        agent.shutdown()


def test_a_failing_relay_neither_loses_the_latch_nor_keeps_the_other_exits_shut(tmp_path: Path) -> None:
    from agent.fire import FireSafety
    from agent.hardware import build_hardware

    config = parse_config(node_config(tmp_path / "state").replace(
        "{name: plant-room, lock_relay: 18, fire_mode: secure}", "{name: side, lock_relay: 18}"))
    fire = FireSafety(tmp_path / "latch.json")
    hardware = build_hardware(config.hardware, make_pin_factory("mock"), fire, lambda *args: None)
    try:
        hardware.gates["main"].relay.close()  # its relay is gone (closed by a reload, a driver error)
        fire.alarm("lobby")
        assert fire.latched and (tmp_path / "latch.json").exists()
        assert hardware.gates["side"].held and hardware.barriers["car-in"].arm == "up"
    finally:
        hardware.close()
