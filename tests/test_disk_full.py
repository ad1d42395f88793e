"""A full disk under the agent, on a real tmpfs filled for real (needs root to mount; skipped otherwise).

* the daemon (``python -m agent.cli run``) with a real mosquitto: the disk fills while an event is in
  flight and its PUBACK arrives after; a signed remote ``open`` still opens, a replay of it is still
  refused (from memory), the in-flight event is published once (not in a resend loop), the log has
  fault lines and no tracebacks; after space is freed the queued events land in SQLite and reach the
  broker, the command id is saved, and the faults clear by themselves;
* the technician's fire-alarm reset through the control socket on a full disk: the exits are locked
  again and the reply says ``recorded: false``; ``alarm.reset`` lands when space is freed;
* the replay cache on a full disk: replays refused from memory, the ids saved when it is back;
* the recorder: events kept in memory in order and written when the disk is back, by itself; past
  its bound door contacts go first, and every drop is counted in ``storage.events_dropped``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config_loader import parse_config
from agent.control import call
from agent.daemon import Agent
from agent.event_store import EventStore
from agent.events import Event
from agent.node_faults import NodeFaults
from agent.recorder import Recorder
from agent.signing import ReplayCache
from agent.whitelist_store import write_new_key
from drivers.pins import make_pin_factory
from tests.agent_configs import node_config
from tests.mqtt_broker import Collector, Mosquitto
from tests.test_uplink_daemon import ROOT, Daemon, cli, gate_states, mqtt_section, results, statuses
from tests.test_uplink_publish import wait_until

PARKING = "parking:\n  - {name: lot, capacity: 50, entries: [car-in]}\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of our own: filling it fills nothing else."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root (run the suite as root, e.g. in the CI container)")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write zeros until the file system says ENOSPC; returns the file (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    try:
        while True:  # the last partial block
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    return filler


def rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def event_publishes(platform: Collector, kind: str) -> list[dict[str, object]]:
    return [json.loads(payload) for payload in platform.on(f"{ROOT}/events/{kind}")]


# --- the daemon -----------------------------------------------------------------------------------

def test_full_disk_keeps_opening_refuses_replays_and_recovers_by_itself(tmp_path: Path, small_disk: Path) -> None:
    state = small_disk / "state"
    db = state / "events.db"
    write_new_key(small_disk / "whitelist.key")  # the whitelist works: the disk is the only fault
    assert cli("keygen", "--ed25519", "--out", str(tmp_path / "platform")).returncode == 0
    with Mosquitto(tmp_path / "broker") as broker:
        config = tmp_path / "agent.yaml"
        config.write_text(node_config(state) + PARKING + mqtt_section(
            broker.port, command_public_key=str(tmp_path / "platform.pub")))
        platform = Collector(broker.port, [f"{ROOT}/#"])
        daemon = Daemon(config, tmp_path / "daemon.log")
        try:
            wait_until(lambda: statuses(platform)[-1:] == [b"online"] and gate_states(platform), timeout=30)

            # An event committed and in flight when the disk fills: its PUBACK comes after.
            broker.process.send_signal(signal.SIGSTOP)
            corrected = call(state, {"cmd": "parking_set", "name": "lot", "occupied": 7, "source": "test"})
            assert corrected["ok"] is True, corrected
            wait_until(lambda: call(state, {"cmd": "status"})["uplink"]["in_flight"] >= 1, timeout=10)
            filler = fill(small_disk)
            broker.process.send_signal(signal.SIGCONT)

            # A signed remote open on the full disk opens; the result says its event is not on disk yet.
            signed = cli("cmd", "sign", "--key", str(tmp_path / "platform.key"), "--config", str(config),
                         "--id", "open-full", "open", "--arg", "gate=main", "--arg", "seconds=2").stdout.strip()
            platform.publish(f"{ROOT}/cmd/open", signed)
            wait_until(lambda: results(platform, "open-full"), timeout=10)
            opened = results(platform, "open-full")[0]
            assert opened["ok"] is True and opened["reason"] is None, opened
            assert opened["recorded"] is False and "disk" in opened["warning"]
            wait_until(lambda: "unlocked" in gate_states(platform), timeout=10)  # the relay moved
            platform.publish(f"{ROOT}/cmd/open", signed)  # the same bytes again: still a replay
            wait_until(lambda: len(results(platform, "open-full")) == 2, timeout=10)
            assert results(platform, "open-full")[1] | {"ts": None} == {
                "id": "open-full", "name": "open", "ok": False, "reason": "replayed command id", "ts": None}

            faults = call(state, {"cmd": "status"})["faults"]
            assert {"storage", "storage/replay"} <= set(faults) and "full" in faults["storage"], faults
            wait_until(lambda: "storage/outbox" in call(state, {"cmd": "status"})["faults"], timeout=10)
            # Let the uplink run a while on the full disk (five telemetry messages, one a second): the
            # event whose mark failed is not published again and again.
            telemetry_before = len(platform.on(f"{ROOT}/telemetry"))
            wait_until(lambda: len(platform.on(f"{ROOT}/telemetry")) >= telemetry_before + 5, timeout=30)
            assert len(event_publishes(platform, "parking.corrected")) == 1
            assert rows(db, "SELECT count(*) FROM events WHERE type = 'gate.granted'") == [(0,)]  # in memory

            filler.unlink()  # space is back: everything lands by itself
            wait_until(lambda: call(state, {"cmd": "status"})["faults"] == {}, timeout=30)
            wait_until(lambda: rows(db, "SELECT count(*) FROM events WHERE delivered_at IS NULL") == [(0,)], timeout=30)
            granted = rows(db, "SELECT details FROM events WHERE type = 'gate.granted'")
            assert [json.loads(str(details))["method"] for (details,) in granted] == ["remote"]
            refused = rows(db, "SELECT details FROM events WHERE type = 'uplink.command_refused'")
            assert [json.loads(str(details))["reason"] for (details,) in refused] == ["replayed command id"]
            components = [json.loads(str(d))["component"] for (d,) in rows(
                db, "SELECT details FROM events WHERE type = 'node.recovered'")]
            assert sorted(components) == ["storage", "storage/outbox", "storage/replay"]
            wait_until(lambda: event_publishes(platform, "gate.granted"), timeout=10)
            assert len(event_publishes(platform, "gate.granted")) == 1
            assert len(event_publishes(platform, "parking.corrected")) == 1
            seen = rows(state / "seen_commands.sqlite", "SELECT id FROM seen_commands")
            assert ("open-full",) in seen  # the id kept in memory is on disk now

            assert corrected["recorded"] is True  # the reply before the disk filled came after the commit
            code, _ = daemon.stop()
            output = daemon.output()
            assert code == 0 and "Traceback" not in output, output[-3000:]
            # One line per fault and a minute, not one a second (the daemon ran under a minute here).
            assert len(re.findall(r"ERROR +storage", output)) <= 6, output[-3000:]
        finally:
            daemon.kill()
            platform.close()


# --- the control socket ---------------------------------------------------------------------------

def test_a_reset_on_a_full_disk_acts_and_says_its_event_is_not_recorded_yet(small_disk: Path) -> None:
    pins = make_pin_factory("mock")
    pins.pin(27).drive_low()  # door shut
    agent = Agent(parse_config(node_config(small_disk / "state", confirm_ms=0)), pin_factory=pins)
    agent.start()
    try:
        pins.pin(24).drive_low()  # smoke: exits released and latched
        wait_until(lambda: agent.fire.latched and pins.pin(17).state == 1, timeout=10)
        pins.pin(24).drive_high()
        wait_until(lambda: not agent.hardware.smoke_detectors["lobby"].input_active, timeout=10)
        assert agent.recorder.flush()
        filler = fill(small_disk)
        reply = call(small_disk / "state", {"cmd": "alarm_reset", "source": "test"})
        assert reply["ok"] is True and reply["recorded"] is False, reply
        assert "NOT on disk yet" in reply["message"] and "full" in reply["message"]
        assert not agent.fire.latched and pins.pin(17).state == 0  # the reset acted all the same
        filler.unlink()
        wait_until(lambda: agent.store.query(types=["alarm.reset"]), timeout=30)
        # Once the disk is back, a reply comes after the commit again.
        pins.pin(24).drive_low()
        wait_until(lambda: agent.fire.latched, timeout=10)
        pins.pin(24).drive_high()
        wait_until(lambda: not agent.hardware.smoke_detectors["lobby"].input_active, timeout=10)
        assert call(small_disk / "state", {"cmd": "alarm_reset", "source": "test"})["recorded"] is True
        assert len(agent.store.query(types=["alarm.reset"])) == 2
    finally:
        agent.shutdown()


def test_a_node_started_on_a_full_disk_runs_and_moves_what_it_kept_to_disk_when_space_is_back(
        tmp_path: Path, small_disk: Path) -> None:
    """Its events.db and parking.db would not open (SQLite cannot make their -wal/-shm files): the
    node runs on memory as a storage fault, counts its cars, and once space is freed it writes what
    it kept into the files by itself, with no restart (on 4d240d8: exit 1, a restart loop)."""
    state = small_disk / "state"
    write_new_key(small_disk / "whitelist.key")
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(state) + PARKING)
    def answering() -> bool:
        try:
            return call(state, {"cmd": "status"})["ok"] is True
        except Exception:
            return False

    first = Daemon(config, tmp_path / "first.log")  # an earlier run made the files
    wait_until(answering, timeout=60)
    assert first.stop()[0] == 0
    filler = fill(small_disk)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(answering, timeout=60)
        status = call(state, {"cmd": "status"})
        assert {"storage/events", "storage/parking"} <= set(status["faults"]), status["faults"]
        corrected = call(state, {"cmd": "parking_set", "name": "lot", "occupied": 7, "source": "test"})
        assert corrected["ok"] is True, corrected
        assert call(state, {"cmd": "status"})["state"]["parking/lot"]["occupied"] == 7
        filler.unlink()
        wait_until(lambda: call(state, {"cmd": "status"})["faults"] == {}, timeout=30)
        db = state / "events.db"
        kinds = [kind for (kind,) in rows(db, "SELECT type FROM events ORDER BY seq")]
        assert kinds.count("agent.started") == 2, kinds  # the first run's, and the one kept in memory
        assert kinds.index("agent.stopped") < kinds.index("parking.corrected"), kinds
        seqs = [seq for (seq,) in rows(db, "SELECT seq FROM events ORDER BY seq")]
        assert len(seqs) == len(set(seqs))
        assert rows(state / "parking.db", "SELECT occupied FROM car_parks WHERE name = 'lot'") == [(7,)]
    finally:
        code, _ = daemon.stop()
        daemon.kill()
    assert code == 0 and "Traceback" not in daemon.output(), daemon.output()[-3000:]


# --- the replay cache ------------------------------------------------------------------------------

def test_replay_cache_refuses_replays_from_memory_and_saves_them_when_the_disk_is_back(small_disk: Path) -> None:
    cache = ReplayCache(small_disk / "seen_commands.sqlite", keep_seconds=600)
    assert cache.remember("before", issued_at=1000.0, now=1000.0)
    filler = fill(small_disk)
    assert cache.remember("during", issued_at=1001.0, now=1001.0)  # accepted although the file refuses it
    assert cache.unsaved == 1 and cache.persist_unsaved(now=1001.0) is not None
    assert not cache.remember("during", issued_at=1001.0, now=1002.0)  # refused from memory
    assert not cache.remember("before", issued_at=1000.0, now=1002.0)  # refused from the file
    filler.unlink()
    assert cache.persist_unsaved(now=1003.0) is None and cache.unsaved == 0
    cache.close()
    reopened = ReplayCache(small_disk / "seen_commands.sqlite", keep_seconds=600)
    assert not reopened.remember("during", issued_at=1001.0, now=1004.0)  # a restart still refuses it
    reopened.close()


# --- the recorder ----------------------------------------------------------------------------------

def recorder_on(store: EventStore, **limits: int) -> tuple[Recorder, NodeFaults]:
    def emit(kind: str, device: str | None, details: dict[str, object]) -> None:
        recorder.put(Event(node="n1", type=kind, device=device, details=details))

    faults = NodeFaults(emit)
    recorder = Recorder(store.append_many, faults=faults, emit=emit, where=str(store.path), **limits)
    return recorder, faults


def test_recorder_keeps_events_in_order_while_the_disk_is_full_and_writes_them_itself(small_disk: Path) -> None:
    store = EventStore(small_disk / "events.db")
    recorder, faults = recorder_on(store)
    recorder.start()
    recorder.put(Event(node="n1", type="agent.started", details={}))
    assert recorder.flush()
    filler = fill(small_disk)
    kinds = ["door.opened", "access.granted", "smoke.alarm", "gate.granted"]
    for index in range(200):
        recorder.put(Event(node="n1", type=kinds[index % 4], device="main", details={"index": index}))
    wait_until(lambda: faults.failing("storage"), timeout=10)
    assert recorder.wait_written(recorder.mark(), timeout=30) is False  # "not recorded", said at once
    assert recorder.healthy()  # a full disk is a fault, not a hang: the watchdog must not restart us
    assert [s.event.type for s in store.query()] == ["agent.started"]
    filler.unlink()
    wait_until(lambda: recorder.backlog == 0 and not faults.failing("storage"), timeout=30)
    stored = [s.event for s in store.query()]
    indexes = [event.details["index"] for event in stored if "index" in event.details]
    assert indexes == list(range(200))  # all of them, in the order they were emitted
    assert [e.type for e in stored if e.type.startswith("node.")] == ["node.fault", "node.recovered"]
    assert recorder.stop()
    store.close()


def test_past_its_bound_the_recorder_drops_door_contacts_first_and_counts_every_drop(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    recorder, _ = recorder_on(store, soft_limit=100, hard_limit=400)
    # Not started: the disk "refuses" everything until start(), so every put meets the bound.
    put: list[Event] = []
    for index in range(600):
        put.append(Event(node="n1", type="door.opened" if index % 2 else "access.granted", details={"i": index}))
        recorder.put(put[-1])
        assert recorder.backlog <= 400
    for index in range(600, 800):
        put.append(Event(node="n1", type="smoke.alarm", details={"i": index}))
        recorder.put(put[-1])
        assert recorder.backlog <= 400
    recorder.start()
    wait_until(lambda: recorder.backlog == 0 and store.query(types=["storage.events_dropped"]), timeout=30)
    stored = [s.event for s in store.query() if s.event.type != "storage.events_dropped"]
    assert [e.details["i"] for e in stored] == sorted(e.details["i"] for e in stored)  # order kept
    assert {e.details["i"] for e in stored if e.type == "smoke.alarm"} == set(range(600, 800))  # newest kept
    kept = {e.id for e in stored}
    missing: dict[str, int] = {}
    for event in put:
        if event.id not in kept:
            missing[event.type] = missing.get(event.type, 0) + 1
    granted = sorted(e.details["i"] for e in stored if e.type == "access.granted")
    assert granted == list(range(600 - 2 * len(granted), 600, 2))  # the oldest access events went, not others
    assert missing["door.opened"] >= 290  # door contacts went first
    report = store.query(types=["storage.events_dropped"])[0].event.details
    assert report == {"count": sum(missing.values()), "by_type": missing}  # every drop counted
    assert recorder.stop()
    store.close()
