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
