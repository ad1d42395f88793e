"""Gate, barrier, smoke detector and indicator drivers on gpiozero's MockFactory pins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.config import BarrierConfig, GateConfig, IndicatorConfig, SmokeDetectorConfig
from drivers.barrier import Barrier
from drivers.gate import Gate
from drivers.indicators import Indicator
from drivers.smoke import SmokeDetector


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.changed = threading.Condition()

    def __call__(self, kind: str, details: dict) -> None:
        with self.changed:
            self.events.append((kind, details))
            self.changed.notify_all()

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def wait_for(self, kind: str, timeout: float = 3.0) -> dict:
        with self.changed:
            assert self.changed.wait_for(lambda: kind in self.kinds, timeout), f"{kind} not seen: {self.kinds}"
            return next(d for k, d in self.events if k == kind)


def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def gate(mock_factory):
    recorder = Recorder()
    mock_factory.pin(27).drive_low()  # door shut
    config = GateConfig(name="main", lock_relay=17, door_contact=27, exit_button=22, assist_button=23,
                        unlock_seconds=0.3, held_open_seconds=0.4)
    device = Gate(config, mock_factory, recorder)
    yield device, recorder, mock_factory
    device.close()


def test_gate_starts_locked_and_unlocks_for_the_pulse(gate) -> None:
    device, _, pins = gate
    relay = pins.pin(17)
    assert device.locked and relay.state == 0
    device.unlock()
    assert not device.locked and relay.state == 1
    assert wait_until(lambda: device.locked, 2.0)


def test_active_low_relay(mock_factory) -> None:
    device = Gate(GateConfig(name="g", lock_relay=5, active_high=False), mock_factory)
    assert mock_factory.pin(5).state == 1  # de-energised relay on an active-low board
    device.unlock(0.2)
    assert mock_factory.pin(5).state == 0
    device.close()


def test_exit_button_unlocks_and_reports(gate) -> None:
    device, recorder, pins = gate
    pins.pin(22).drive_low()
    pins.pin(22).drive_high()
    assert recorder.wait_for("exit.pressed")["seconds"] == 0.3
    assert not device.locked


def test_door_open_after_grant_is_not_forced_and_close_relocks(gate) -> None:
    device, recorder, pins = gate
    device.unlock(5)
    pins.pin(27).drive_high()
    recorder.wait_for("door.opened")
    assert "door.forced" not in recorder.kinds
    pins.pin(27).drive_low()
    recorder.wait_for("door.closed")
    assert device.locked, "a closed door relocks without waiting for the rest of the pulse"


def test_door_opened_while_locked_is_forced(gate) -> None:
    _, recorder, pins = gate
    pins.pin(27).drive_high()
    recorder.wait_for("door.forced")


def test_held_open_alarm(gate) -> None:
    device, recorder, pins = gate
    device.unlock()
    pins.pin(27).drive_high()
    assert recorder.wait_for("door.held_open")["open_seconds"] == 0.4
    pins.pin(27).drive_low()
    assert recorder.wait_for("door.closed")["open_seconds"] >= 0.4


def test_door_closed_in_time_raises_no_held_open(gate) -> None:
    device, recorder, pins = gate
    device.unlock()
    pins.pin(27).drive_high()
    pins.pin(27).drive_low()
    time.sleep(0.6)
    assert "door.held_open" not in recorder.kinds


def test_assist_button(gate) -> None:
    _, recorder, pins = gate
    pins.pin(23).drive_low()
    recorder.wait_for("assist.pressed")


def test_fire_hold_survives_lock_and_pulses(gate) -> None:
    device, recorder, pins = gate
    device.hold_unlocked()
    device.unlock(0.1)
    device.lock()
    time.sleep(0.3)
    assert not device.locked
    pins.pin(27).drive_high()
    recorder.wait_for("door.opened")
    assert "door.forced" not in recorder.kinds
    device.release_hold()
    assert device.locked


def test_safe_state(mock_factory) -> None:
    locked = Gate(GateConfig(name="a", lock_relay=5), mock_factory)
    unlocked = Gate(GateConfig(name="b", lock_relay=6, safe_state="unlocked"), mock_factory)
    locked.unlock(10)
    locked.to_safe_state()
    unlocked.to_safe_state()
    assert locked.locked and not unlocked.locked
    locked.close()
    unlocked.close()


def test_broken_listener_does_not_break_the_gate(mock_factory) -> None:
    def explode(kind: str, details: dict) -> None:
        raise RuntimeError("listener bug")

    device = Gate(GateConfig(name="g", lock_relay=5, exit_button=6), mock_factory, explode)
    mock_factory.pin(6).drive_low()
    assert not device.locked
    device.close()


# -- barrier --------------------------------------------------------------------------------------
@pytest.fixture
def barrier(mock_factory):
    recorder = Recorder()
    config = BarrierConfig(name="car-in", raise_relay=5, lower_relay=6, safety_loop=13, pulse_seconds=0.05,
                           position_sensor=19, travel_seconds=0.2)
    device = Barrier(config, mock_factory, recorder)
    yield device, recorder, mock_factory
    device.close()


def pulsed(pin) -> bool:
    return any(state.state for state in pin.states)


def test_barrier_raises_and_lowers_after_the_vehicle_clears(barrier) -> None:
    device, recorder, pins = barrier
    device.raise_arm()
    assert device.arm == "up" and wait_until(lambda: pulsed(pins.pin(5)))
    pins.pin(13).drive_low()  # car on the loop
    recorder.wait_for("vehicle.present")
    assert device.arm == "up"
    pins.pin(13).drive_high()  # cleared
    recorder.wait_for("barrier.lowered")
    assert device.arm == "down" and pulsed(pins.pin(6))


def test_barrier_never_lowers_on_a_vehicle(barrier) -> None:
    device, recorder, pins = barrier
    device.raise_arm()
    pins.pin(13).drive_low()
    assert device.lower() is False
    recorder.wait_for("barrier.lower_deferred")
    time.sleep(0.1)
    assert device.arm == "up" and not pulsed(pins.pin(6))
    pins.pin(13).drive_high()
    recorder.wait_for("barrier.lowered")


def test_barrier_fire_hold_stays_up(barrier) -> None:
    device, _recorder, pins = barrier
    device.hold_up()
    pins.pin(13).drive_low()
    pins.pin(13).drive_high()
    assert device.lower() is False
    assert device.arm == "up"
    device.release_hold()
    assert device.arm == "down"


def test_position_sensor_disagreeing_is_a_fault(barrier) -> None:
    device, recorder, _pins = barrier
    device.raise_arm()  # the sensor pin stays at "down": a stuck arm
    details = recorder.wait_for("barrier.fault")
    assert details["commanded"] == "up" and details["sensed"] == "down"


def test_an_arm_fault_a_reload_interrupted_is_taken_over(barrier) -> None:
    """The rebuilt barrier keeps the command the switch disagreed with: no second fault while the
    arm is still stuck, one recovery when it comes down."""
    device, recorder, pins = barrier
    device.raise_arm()
    pins.pin(19).drive_low()  # up
    device.lower()
    assert recorder.wait_for("barrier.fault") == {"commanded": "down", "sensed": "up",
                                                  "reason": "position sensor disagrees with the command"}
    command = device.faulted_command
    device.close()  # a reload
    rebuilt = Barrier(device.config, pins, recorder)
    rebuilt.carry_fault(command)
    time.sleep(0.4)  # past its travel time: the arm is still stuck up
    assert recorder.kinds.count("barrier.fault") == 1 and rebuilt.arm == "down"
    pins.pin(19).drive_high()  # mended: the arm drops
    assert wait_until(lambda: recorder.events[-1] == ("barrier.recovered", {"position": "down"}))
    assert rebuilt.faulted_command is None
    rebuilt.close()


def test_an_arm_mended_during_a_reload_recovers_at_once(barrier) -> None:
    device, recorder, pins = barrier
    device.raise_arm()  # the switch stays at down: stuck
    recorder.wait_for("barrier.fault")
    device.close()
    rebuilt = Barrier(device.config, pins, recorder)
    pins.pin(19).drive_low()  # mended and raised by hand meanwhile
    rebuilt.carry_fault("up")
    assert recorder.events[-1] == ("barrier.recovered", {"position": "up"}) and rebuilt.arm == "up"
    rebuilt.close()


def test_position_sensor_agreeing_is_quiet(barrier) -> None:
    device, recorder, pins = barrier
    device.raise_arm()
    pins.pin(19).drive_low()  # limit switch: arm up
    time.sleep(0.4)
    assert "barrier.fault" not in recorder.kinds


def test_pulse_relay_barrier_toggles_once_per_change(mock_factory) -> None:
    config = BarrierConfig(name="b", pulse_relay=5, safety_loop=13, pulse_seconds=0.02)
    device = Barrier(config, mock_factory)
    device.raise_arm()
    device.raise_arm()
    time.sleep(0.1)
    assert sum(1 for s in mock_factory.pin(5).states if s.state) == 1
    device.close()


def rises(pin) -> int:
    """Pulses a mock output pin has given (rising edges)."""
    states = [bool(s.state) for s in pin.states]
    return sum(1 for before, now in zip([False, *states], states, strict=False) if now and not before)


def relay_barrier(pins, on_event: Callable[[str, dict], None] | None = None, **settings: float) -> Barrier:
    """A barrier on a raise relay (5) and a lower relay (6) with its safety loop on 13."""
    config = BarrierConfig(name="b", raise_relay=5, lower_relay=6, safety_loop=13, pulse_seconds=0.02, **settings)
    return Barrier(config, pins, on_event)


@pytest.fixture
def pulse_barrier(mock_factory):
    """One relay whose pulse toggles the controller, and a limit switch (pin 19, low = arm up)."""
    recorder = Recorder()
    config = BarrierConfig(name="b", pulse_relay=5, safety_loop=13, position_sensor=19, pulse_seconds=0.02,
                           travel_seconds=0.2)
    device = Barrier(config, mock_factory, recorder)
    yield device, recorder, mock_factory
    device.close()


def test_fire_raises_a_pulse_barrier_whose_raise_was_missed(pulse_barrier) -> None:
    device, recorder, pins = pulse_barrier
    device.raise_arm()  # the controller misses the pulse: the switch still says down
    recorder.wait_for("barrier.fault")
    before = rises(pins.pin(5))
    device.hold_up()
    assert wait_until(lambda: rises(pins.pin(5)) == before + 1), "the fire left the arm down"


def test_fire_does_not_toggle_down_a_pulse_barrier_whose_lower_was_missed(pulse_barrier) -> None:
    device, recorder, pins = pulse_barrier
    device.raise_arm()
    pins.pin(19).drive_low()  # the arm rose
    time.sleep(0.3)
    device.lower()  # the controller misses this pulse: the arm stays up
    recorder.wait_for("barrier.fault")
    before = rises(pins.pin(5))
    device.hold_up()
    time.sleep(0.1)
    assert rises(pins.pin(5)) == before, "a toggle would have brought the raised arm down in a fire"


def test_a_vehicle_under_the_descending_arm_sends_it_back_up(mock_factory) -> None:
    recorder = Recorder()
    device = relay_barrier(mock_factory, recorder, travel_seconds=1.0)
    device.raise_arm()
    loop = mock_factory.pin(13)
    loop.drive_low()
    loop.drive_high()  # the first car has passed: the arm starts down
    recorder.wait_for("barrier.lowered")
    time.sleep(0.1)  # past the loop's 50 ms debounce
    loop.drive_low()  # a second car noses under it while it travels
    assert device.arm == "up" and wait_until(lambda: rises(mock_factory.pin(5)) == 2)
    assert recorder.events[-2] == ("barrier.raised", {"reason": "vehicle under the descending arm"})
    time.sleep(0.1)
    loop.drive_high()
    assert wait_until(lambda: device.arm == "down")
    device.close()


def test_a_vehicle_arriving_after_the_arm_came_down_does_not_raise_it(mock_factory) -> None:
    device = relay_barrier(mock_factory, travel_seconds=0.1)
    device.raise_arm()
    mock_factory.pin(13).drive_low()
    mock_factory.pin(13).drive_high()
    time.sleep(0.2)  # the arm is down
    mock_factory.pin(13).drive_low()  # a stranger's car waiting on the loop
    time.sleep(0.05)
    assert device.arm == "down" and rises(mock_factory.pin(5)) == 1
    device.close()


def test_an_arm_that_is_up_at_start_comes_down_behind_its_car(mock_factory) -> None:
    """A restart or reload while a car is under the arm: the limit switch says up."""
    mock_factory.pin(19).drive_low()
    mock_factory.pin(13).drive_low()
    recorder = Recorder()
    config = BarrierConfig(name="b", pulse_relay=5, safety_loop=13, position_sensor=19, pulse_seconds=0.02)
    device = Barrier(config, mock_factory, recorder)
    assert device.arm == "up"
    mock_factory.pin(13).drive_high()
    recorder.wait_for("barrier.lowered")
    assert recorder.wait_for("vehicle.cleared") == {"passed": True}
    assert rises(mock_factory.pin(5)) == 1
    device.close()


def test_a_vehicle_on_the_loop_at_start_means_the_arm_is_up(mock_factory) -> None:
    """Without a limit switch: the arm never comes down on a car, so the car is under a raised arm."""
    mock_factory.pin(13).drive_low()
    recorder = Recorder()
    device = relay_barrier(mock_factory, recorder)
    mock_factory.pin(13).drive_high()
    assert recorder.wait_for("vehicle.cleared") == {"passed": True}
    assert wait_until(lambda: rises(mock_factory.pin(6)) == 1) and device.arm == "down"
    device.close()


def test_an_arm_no_vehicle_drove_under_closes_after_a_while(mock_factory) -> None:
    recorder = Recorder()
    device = relay_barrier(mock_factory, recorder, close_after_seconds=0.2)
    device.raise_arm()  # the granted car turns away
    assert recorder.wait_for("barrier.lowered") == {"reason": "no vehicle drove onto the loop"}
    assert device.arm == "down"
    device.raise_arm()
    mock_factory.pin(13).drive_low()  # this one drives on, and waits there
    time.sleep(0.4)
    assert device.arm == "up" and rises(mock_factory.pin(6)) == 1
    device.close()


def test_a_fire_hold_is_not_closed_by_the_timer(mock_factory) -> None:
    device = relay_barrier(mock_factory, close_after_seconds=0.1)
    device.raise_arm()
    device.hold_up()
    time.sleep(0.3)
    assert device.arm == "up" and rises(mock_factory.pin(6)) == 0
    device.close()


def test_the_arm_comes_down_before_the_pass_is_counted(mock_factory) -> None:
    """Counting a car writes to disk; a slow disk must not hold the arm up over the lane."""
    lowered_first = []

    def on_event(kind: str, details: dict) -> None:
        if kind == "vehicle.cleared":
            lowered_first.append(rises(mock_factory.pin(6)) == 1)
            time.sleep(0.3)  # a locked database

    device = relay_barrier(mock_factory, on_event)
    device.raise_arm()
    mock_factory.pin(13).drive_low()
    mock_factory.pin(13).drive_high()
    assert lowered_first == [True]
    device.close()


def test_an_arm_moved_without_a_command_is_a_fault_until_it_agrees(barrier) -> None:
    _device, recorder, pins = barrier
    pins.pin(19).drive_low()  # the arm is lifted by hand while commanded down
    details = recorder.wait_for("barrier.fault")
    assert details["commanded"] == "down" and details["sensed"] == "up"
    pins.pin(19).drive_high()  # and dropped back
    assert recorder.wait_for("barrier.recovered") == {"position": "down"}
    assert recorder.kinds.count("barrier.fault") == 1


def test_a_slow_arm_is_a_fault_then_recovers_when_it_arrives(barrier) -> None:
    device, recorder, pins = barrier
    device.raise_arm()
    recorder.wait_for("barrier.fault")
    pins.pin(19).drive_low()  # it gets there late
    assert recorder.wait_for("barrier.recovered") == {"position": "up"}


# -- approach loop: which way a vehicle went ------------------------------------------------------
APPROACH, SAFETY = 17, 13


def approach_barrier(pins, recorder: Recorder, **settings: float) -> Barrier:
    """The relay barrier above with an approach loop on 17, where a car waits before the arm."""
    config = BarrierConfig(name="b", raise_relay=5, lower_relay=6, safety_loop=SAFETY, approach_loop=APPROACH,
                           pulse_seconds=0.02, **settings)
    return Barrier(config, pins, recorder)


def loops(pins, *steps: tuple[int, bool]) -> None:
    """Drive the loops through ``(pin, occupied)`` steps, each past the 50 ms debounce."""
    for pin, occupied in steps:
        if occupied:
            pins.pin(pin).drive_low()
        else:
            pins.pin(pin).drive_high()
        time.sleep(0.08)


def test_a_car_that_drives_through_passes_forward_and_the_arm_comes_down(mock_factory) -> None:
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder)
    loops(mock_factory, (APPROACH, True))
    assert recorder.wait_for("vehicle.approaching") == {} and device.vehicle_approaching
    device.raise_arm()
    loops(mock_factory, (SAFETY, True), (APPROACH, False), (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True, "direction": "forward"}
    assert device.arm == "down" and not device.vehicle_approaching
    device.close()


def test_a_car_that_backs_out_is_not_counted_and_the_arm_comes_down_as_behind_any_car(mock_factory) -> None:
    """To the loops, a car that backs out looks like one that drove through with another right
    behind it on the approach loop: the arm must not stay up for that one."""
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder)
    loops(mock_factory, (APPROACH, True))
    device.raise_arm()
    loops(mock_factory, (SAFETY, True), (SAFETY, False))  # noses under the arm, backs out again
    assert recorder.wait_for("vehicle.cleared") == {"passed": False, "direction": "backed_out"}
    assert device.arm == "down"
    device.raise_arm()  # read and let in again
    loops(mock_factory, (SAFETY, True), (APPROACH, False), (SAFETY, False))
    assert recorder.events[-1] == ("vehicle.cleared", {"passed": True, "direction": "forward"})
    device.close()


def test_a_stuck_approach_loop_is_a_fault_and_tells_no_direction(mock_factory) -> None:
    """A stuck detector (or a car parked on it) would make every car look as if it backed out."""
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder, loop_stuck_seconds=0.2)
    loops(mock_factory, (APPROACH, True))
    assert recorder.wait_for("barrier.fault") == {"loop": "approach",
                                                  "reason": "the approach loop has been occupied for over 0.2 s"}
    assert device.state()["stuck_loops"] == ["approach"]
    device.raise_arm()
    loops(mock_factory, (SAFETY, True), (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True}
    loops(mock_factory, (APPROACH, False))
    assert recorder.wait_for("barrier.recovered") == {"loop": "approach"} and device.state()["stuck_loops"] == []
    device.close()


def test_a_safety_loop_occupied_for_long_is_a_fault_until_it_clears(mock_factory) -> None:
    """The arm never comes down on the safety loop, so a failed detector keeps it up for good."""
    recorder = Recorder()
    device = relay_barrier(mock_factory, recorder, loop_stuck_seconds=0.6)
    device.raise_arm()
    loops(mock_factory, (SAFETY, True))  # a car drives over the loop in 0.4 s ...
    time.sleep(0.32)
    loops(mock_factory, (SAFETY, False), (SAFETY, True))  # ... and then the loop sticks
    time.sleep(0.2)  # past the first car's 0.6 s, well before the stuck loop's
    assert "barrier.fault" not in recorder.kinds, "the first car's wait ran on into the stuck loop's"
    assert recorder.wait_for("barrier.fault")["loop"] == "safety"
    loops(mock_factory, (SAFETY, False))
    assert recorder.wait_for("barrier.recovered") == {"loop": "safety"}
    assert recorder.kinds.count("barrier.fault") == 1
    device.close()


def test_a_loop_a_reload_found_stuck_stays_stuck_without_a_second_fault(mock_factory) -> None:
    """The rebuilt barrier takes over the stuck loops: one fault, one recovery for the platform."""
    mock_factory.pin(APPROACH).drive_low()  # stuck since before the reload
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder, loop_stuck_seconds=0.2)
    device.loops.carry_stuck(["approach", "safety"])  # the safety loop cleared during the reload
    assert recorder.events == [("barrier.recovered", {"loop": "safety"})]
    assert device.state()["stuck_loops"] == ["approach"]
    device.raise_arm()
    loops(mock_factory, (SAFETY, True), (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True}  # still judged as without it
    time.sleep(0.3)  # past the rebuilt loop's own 0.2 s
    assert "barrier.fault" not in recorder.kinds
    loops(mock_factory, (APPROACH, False))
    assert wait_until(lambda: recorder.events[-1] == ("barrier.recovered", {"loop": "approach"}))
    assert device.state()["stuck_loops"] == []
    device.close()


def test_loops_further_apart_than_a_short_car_still_tell_forward(mock_factory) -> None:
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder)
    device.raise_arm()
    loops(mock_factory, (APPROACH, True), (APPROACH, False), (SAFETY, True), (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True, "direction": "forward"}
    device.close()


def test_a_car_under_the_arm_at_start_is_counted_as_passing_forward(mock_factory) -> None:
    mock_factory.pin(SAFETY).drive_low()  # a restart or reload mid-pass
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder)
    loops(mock_factory, (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True, "direction": "forward"}
    assert device.arm == "down"
    device.close()


def test_a_car_driving_against_the_lane_is_told_apart(mock_factory) -> None:
    """In a fire every arm stays up, and cars leave by the entry lanes too: from the far side
    over the safety loop onto the approach loop."""
    recorder = Recorder()
    device = approach_barrier(mock_factory, recorder)
    device.hold_up()
    loops(mock_factory, (SAFETY, True), (APPROACH, True), (SAFETY, False))
    assert recorder.wait_for("vehicle.cleared") == {"passed": True, "direction": "reversed"}
    # One that comes and goes back counts as before: the approach loop may have missed it.
    loops(mock_factory, (APPROACH, False), (SAFETY, True), (SAFETY, False))
    assert recorder.events[-1] == ("vehicle.cleared", {"passed": True, "direction": "turned_back"})
    device.close()


# -- smoke detector -------------------------------------------------------------------------------
@pytest.fixture
def smoke(mock_factory):
    recorder = Recorder()
    device = SmokeDetector(SmokeDetectorConfig(name="hall", alarm_pin=24, confirm_ms=200, fault_pin=25),
                           mock_factory, recorder)
    yield device, recorder, mock_factory
    device.close()


def test_smoke_alarm_is_confirmed_after_the_confirm_time(smoke) -> None:
    device, recorder, pins = smoke
    started = time.monotonic()
    pins.pin(24).drive_low()
    recorder.wait_for("smoke.alarm")
    assert time.monotonic() - started >= 0.19
    assert device.in_alarm
    pins.pin(24).drive_high()
    recorder.wait_for("smoke.cleared")
    assert not device.in_alarm


def test_smoke_glitch_shorter_than_confirm_is_ignored(smoke) -> None:
    device, recorder, pins = smoke
    for _ in range(5):
        pins.pin(24).drive_low()
        time.sleep(0.02)
        pins.pin(24).drive_high()
    time.sleep(0.4)
    assert recorder.kinds == [] and not device.in_alarm


def test_smoke_fault_line(smoke) -> None:
    device, recorder, pins = smoke
    pins.pin(25).drive_low()
    assert recorder.wait_for("smoke.fault") == {"active": True} and device.fault
    pins.pin(25).drive_high()
    assert recorder.events[-1] == ("smoke.fault", {"active": False})


def test_detector_already_in_alarm_at_start(mock_factory) -> None:
    mock_factory.pin(24).drive_low()
    recorder = Recorder()
    device = SmokeDetector(SmokeDetectorConfig(name="hall", alarm_pin=24, confirm_ms=50), mock_factory, recorder)
    recorder.wait_for("smoke.alarm")
    device.close()


# -- indicators -----------------------------------------------------------------------------------
def test_led_patterns_and_alarm_priority(mock_factory) -> None:
    led = Indicator(IndicatorConfig(name="red", kind="led", pin=20), mock_factory)
    pin = mock_factory.pin(20)
    led.show("denied")
    assert wait_until(lambda: sum(1 for s in pin.states if s.state) >= 4, 2.0)
    before = len(pin.states)
    led.show("alarm")
    led.show("granted")  # must not silence the alarm
    assert led.alarm_active
    time.sleep(1.3)
    assert len(pin.states[before:]) >= 2, "the alarm keeps blinking"
    led.stop_alarm()
    assert pin.state == 0
    led.close()


def test_buzzer_and_gate_filter(mock_factory) -> None:
    buzzer = Indicator(IndicatorConfig(name="bz", kind="buzzer", pin=21, gate="main", shows=["granted"]),
                       mock_factory)
    assert buzzer.shows("granted", "main") and not buzzer.shows("granted", "side")
    assert not buzzer.shows("denied", "main")
    buzzer.show("granted")
    assert wait_until(lambda: any(s.state for s in mock_factory.pin(21).states))
    buzzer.close()


def test_door_open_at_start_is_timed_but_not_forced(mock_factory) -> None:
    recorder = Recorder()
    mock_factory.pin(27).drive_high()  # propped open while the agent restarted
    device = Gate(GateConfig(name="main", lock_relay=17, door_contact=27, held_open_seconds=0.2), mock_factory,
                  recorder)
    recorder.wait_for("door.held_open")
    assert "door.forced" not in recorder.kinds
    device.close()
