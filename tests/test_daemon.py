"""The daemon as a real process: sd_notify over a real unix datagram socket, signals, exit codes;
and, where a test must drive the mock pins, in this process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config_loader import EX_CONFIG, parse_config
from agent.daemon import Agent
from agent.event_store import EventStore
from agent.whitelist_store import write_new_key
from drivers.pins import make_pin_factory
from tests.agent_configs import node_config
from tests.test_drivers import wait_until

ROOT = Path(__file__).resolve().parents[1]


class NotifySocket:
    """What systemd does: bind a datagram socket and read the daemon's KEY=value messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if key in message and (value is None or message[key] == value):
                return message
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(message)
            if key in message and (value is None or message[key] == value):
                return message
        raise AssertionError(f"no {key}={value} from the daemon; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def daemon(tmp_path: Path):
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state"))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    env.pop("JOURNAL_STREAM", None)
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process, notify, config
    if process.poll() is None:
        process.kill()
        process.wait()
    notify.close()


def test_ready_watchdog_and_clean_stop_on_sigterm(daemon) -> None:
    process, notify, config = daemon
    ready = notify.wait_for("READY", "1")
    assert ready["STATUS"].startswith("running: 2 gate(s)")
    notify.wait_for("WATCHDOG", "1", timeout=5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    notify.wait_for("STOPPING", "1")
    output = process.stdout.read()
    assert "agent.stopped" in output and "Traceback" not in output
    store = EventStore(config.parent / "state" / "events.db", readonly=True)
    types = [s.event.type for s in store.query()]
    assert types[0] == "agent.started" and types[-1] == "agent.stopped"


def test_sighup_reloads_and_an_invalid_config_keeps_the_old_one(daemon) -> None:
    process, notify, config = daemon
    notify.wait_for("READY", "1")
    text = config.read_text()
    config.write_text(text.replace("    - {name: plant-room, lock_relay: 18, fire_mode: secure}\n", ""))
    notify.messages.clear()
    process.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING", "1")
    assert notify.wait_for("READY", "1")["STATUS"].startswith("running: 1 gate(s)")

    config.write_text(text.replace("lock_relay: 17", "lock_relay: 17, unlock_secs: 2"))
    process.send_signal(signal.SIGHUP)
    notify.wait_for("STATUS", "reload refused: invalid config (see journal)")
    assert process.poll() is None, "an invalid config must not stop a running node"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    output = process.stdout.read()
    assert "reload refused" in output and "unlock_secs" in output and "Traceback" not in output


def test_invalid_config_exits_78_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state").replace("lock_relay: 18", "lock_relay: 17"))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == EX_CONFIG
    assert "pin 17 is already used" in result.stderr and "Traceback" not in result.stderr


def test_journal_format_under_systemd(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state"))
    env = {**os.environ, "JOURNAL_STREAM": "8:1234"}
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=10)
    assert "<6>agent.started" in err or any(line.startswith("<6>") for line in err.splitlines()), err


def test_cli_events_status_and_reset_against_a_running_daemon(daemon) -> None:
    process, notify, config = daemon
    notify.wait_for("READY", "1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)

    status = cli("status")
    assert status.returncode == 0 and "gate/main" in status.stdout
    assert "uplink                   none configured" in status.stdout
    assert "whitelist unavailable, everyone is refused" in status.stdout  # no key file in this test
    reset = cli("alarm", "reset")
    assert reset.returncode == 1 and "no fire alarm is latched" in reset.stderr
    hw = cli("hw", "test")
    assert hw.returncode == 1 and "stop it first" in hw.stderr
    events = cli("events", "--json", "--type", "agent")
    assert events.returncode == 0 and '"type":"agent.started"' in events.stdout
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=5)
    assert cli("alarm", "reset").returncode == 1


def test_status_lines_show_each_cameras_recognition_figures() -> None:
    from agent.cli import status_lines

    reply = {"status": "running: 1 gate(s), 1 barrier(s)",
             "state": {"gate/main": {"lock": "locked"}, "barrier/car-in": {"arm": "up", "stuck_loops": ["safety"]}},
             "recognition": {"lane": {"frames_processed": 900, "busy_s": 12.5, "plate_frames_read": 40,
                                      "plate_frames_still": 860, "plate_width_px": 96},
                             "exit-lane": {"frames_processed": 10, "busy_s": 1.0, "plate_width_px": 52},
                             "entrance": {"frames_processed": 450, "busy_s": 30.1}},
             "whitelist": {"people": 3, "problem": None}, "uplink": None}
    lines = status_lines(reply)
    assert lines[0] == "running: 1 gate(s), 1 barrier(s)"
    assert lines[1] == ("  barrier/car-in           arm=up, stuck_loops=['safety'] (LOOP STUCK: safety occupied too "
                        "long; check the loop detector)")
    assert "  recognition/entrance     frames_processed=450, busy_s=30.1" in lines
    assert ("  recognition/lane         frames_processed=900, busy_s=12.5, plate_frames_read=40, "
            "plate_frames_still=860, plate_width_px=96") in lines
    assert ("  recognition/exit-lane    frames_processed=10, busy_s=1.0, plate_width_px=52 (PLATES TOO SMALL: "
            "reliable from 80 px; zoom in or move the camera nearer)") in lines
    assert lines[-2:] == ["  whitelist                3 people",
                          "  uplink                   none configured (events are kept locally)"]


def test_a_reload_while_the_arm_is_up_for_a_car_still_lowers_it_and_counts_the_car(tmp_path: Path) -> None:
    text = node_config(tmp_path / "state") + "parking:\n  - {name: lot, capacity: 10, entries: [car-in]}\n"
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    agent = Agent(parse_config(text), config_path=path, pin_factory=make_pin_factory("mock"))
    agent.start()
    try:
        pins = agent.pin_factory
        agent.open_gate("car-in", None)  # granted; the car has yet to reach the loop
        assert agent._reload_now()  # SIGHUP meanwhile: the barrier is rebuilt (no limit switch here)
        assert agent.hardware.barriers["car-in"].arm == "up"
        pins.pin(13).drive_low()
        time.sleep(0.1)
        pins.pin(13).drive_high()  # the car drives through
        deadline = time.monotonic() + 3
        while agent.parking.occupied("lot") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.parking.occupied("lot") == 1
        assert agent.hardware.barriers["car-in"].arm == "down"
        assert any(state.state for state in pins.pin(6).states), "the lower relay never pulsed"
    finally:
        agent.shutdown()


def test_a_reload_carries_faults_over_so_the_platform_hears_one_fault_and_one_recovery_of_each(
        tmp_path: Path) -> None:
    """A rebuilt device would start afresh: a second fault for one still failing, and no recovery
    at all for one mended while the devices were rebuilt."""
    frames = tmp_path / "frames"
    frames.mkdir()  # no pictures yet: the camera's fault
    text = node_config(tmp_path / "state").replace(
        "pulse_seconds: 0.05}", "pulse_seconds: 0.05, position_sensor: 19, travel_seconds: 0.1, "
                                "loop_stuck_seconds: 0.2}")
    camera = f"  cameras:\n    - {{name: yard, source: {frames}/, stall_seconds: 60}}\n"
    text = text.replace("  smoke_detectors:", camera + "  smoke_detectors:")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    agent = Agent(parse_config(text), config_path=path, pin_factory=make_pin_factory("mock"))
    agent.start()
    try:
        def faults() -> list[tuple[str, str | None]]:
            return [(s.event.type, s.event.device) for s in agent.store.query(types=["barrier", "camera"])
                    if s.event.type.endswith((".fault", ".recovered"))]

        pins = agent.pin_factory
        pins.pin(13).drive_low()  # a failed loop detector reads "occupied"
        agent.open_gate("car-in", None)  # and the arm does not rise: its switch stays at down
        assert wait_until(lambda: sorted(faults()) == [("barrier.fault", "car-in"), ("barrier.fault", "car-in"),
                                                       ("camera.fault", "yard")])
        cv2.imwrite(str(frames / "0001.png"), np.zeros((48, 64, 3), np.uint8))  # the camera is mended
        assert agent._reload_now()
        assert agent.hardware.barriers["car-in"].state()["stuck_loops"] == ["safety"]
        assert wait_until(lambda: faults()[-1] == ("camera.recovered", "yard"))
        time.sleep(0.4)  # past the rebuilt barrier's own travel and loop times
        assert len(faults()) == 4
        pins.pin(19).drive_low()  # the arm rises at last (the loop stays stuck: tests/test_drivers.py mends one)
        assert wait_until(lambda: faults()[4:] == [("barrier.recovered", "car-in")])
    finally:
        agent.shutdown()


def test_a_plate_model_that_does_not_load_is_a_fault_not_a_restart_loop(tmp_path: Path) -> None:
    """A broken install (a copy of rapidocr's package first on the path, its PP-OCRv4 recogniser
    garbage bytes and its other model files missing) leaves that lane without recognition, said in status; the daemon
    runs, and the exit button and the fire release work as ever."""
    shadow = tmp_path / "site" / "rapidocr_onnxruntime"
    (shadow / "models").mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "models" / "ch_PP-OCRv4_rec_infer.onnx").write_bytes(os.urandom(4096))
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0001.png"), np.zeros((48, 64, 3), np.uint8))
    camera = f"  cameras:\n    - {{name: lane, source: {frames}/, gate: car-in, stall_seconds: 60}}\n"
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state").replace("  smoke_detectors:", camera + "  smoke_detectors:"))
    write_new_key(tmp_path / "whitelist.key")  # the whitelist works: recognition is the only fault
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}"}
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        notify.wait_for("READY", "1", timeout=60)
        status = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--config", str(config)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert "FAULT recognition/lane: recognition could not start" in status.stdout, status.stdout
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        store = EventStore(tmp_path / "state" / "events.db", readonly=True)
        faults = [s.event.details for s in store.query(types=["node.fault"])]
        assert [f["component"] for f in faults] == ["recognition/lane"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def test_a_failing_supervisor_step_is_a_fault_once_and_the_loop_goes_on(tmp_path: Path, caplog) -> None:
    agent = Agent(parse_config(node_config(tmp_path / "state")), pin_factory=make_pin_factory("mock"))
    agent.start()
    try:
        broken = {"on": True}

        def purge() -> None:
            if broken["on"]:
                raise OSError(5, "Input/output error")  # what a failing SD card answers

        for _ in range(3):
            agent._step("purge", purge)
        assert agent.faults.active() == {"supervisor/purge": "OSError: [Errno 5] Input/output error"}
        assert "FAULT: supervisor/purge" in agent.status_line()
        assert sum("supervisor step purge failed" in r.getMessage() for r in caplog.records) == 1
        broken["on"] = False
        agent._step("purge", purge)
        assert agent.faults.active() == {}
        assert agent.recorder.flush()
        assert [s.event.type for s in agent.store.query(types=["node"])] == ["node.fault", "node.recovered"]
    finally:
        agent.shutdown()
