"""Store-and-forward against a real mosquitto: order, acknowledgement, broker restarts, long outages."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import NodeConfig
from agent.config_mqtt import MqttConfig
from agent.event_store import EventStore
from agent.events import Event, rfc3339
from agent.signing import load_private_key, sign_command, write_keypair
from agent.uplink import Uplink
from tests.mqtt_broker import Collector, Mosquitto, RecordingTarget

NODE = NodeConfig(site="s1", building="b7", node_id="n1")
ROOT = "community/s1/b7/n1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


def make_config(port: int, **overrides: object) -> MqttConfig:
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "backoff": {"initial": 0.2, "max": 1.0}}
    values.update(overrides)
    return MqttConfig.model_validate(values)


# A broker with logins lets a test keep the node out while the platform subscribes.
USERS = {"agent": "agent-pw", "platform": "platform-pw"}


def agent_config(tmp_path: Path, port: int, **overrides: object) -> MqttConfig:
    """The node logs in as "agent", its password in a file, as an installed node keeps it."""
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(USERS["agent"] + "\n")
    return make_config(port, username="agent", password={"file": str(password_file)}, **overrides)


def platform_collector(port: int, topics: list[str]) -> Collector:
    return Collector(port, topics, username="platform", password=USERS["platform"])


def restart_platform_first(broker: Mosquitto, topics: list[str]) -> Collector:
    """Start ``broker`` again with only the platform let in, and subscribe it: nothing the node sends
    on its (jittered) reconnect can go past the subscriber.  ``broker.set_passwords(USERS)`` then
    lets the node in."""
    broker.set_passwords({"platform": USERS["platform"]})
    broker.start()
    return platform_collector(broker.port, topics)


def record(store: EventStore, kind: str = "door.opened", **details: object) -> Event:
    event = Event(node=NODE.node_id, type=kind, device="main", details=details)
    store.append(event)
    return event


def bulk_insert(store: EventStore, count: int) -> None:
    """Events straight into the outbox in one transaction: a long outage, without 100,000 fsyncs."""
    now = rfc3339(datetime.now(UTC))
    rows = [(str(uuid.uuid4()), now, NODE.node_id, "door.opened", "main", json.dumps({"n": index}))
            for index in range(count)]
    with store._lock:
        store.db.execute("BEGIN")
        store.db.conn.executemany(
            "INSERT INTO events (id, ts, node, type, device, details) VALUES (?, ?, ?, ?, ?, ?)", rows)
        store.db.execute("COMMIT")


def wait_until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def event_ids(collector: Collector) -> list[str]:
    return [json.loads(payload)["id"] for topic, payload, _ in collector.snapshot() if "/events/" in topic]


def result_for(collector: Collector, command_id: str) -> dict[str, object] | None:
    results = [json.loads(payload) for payload in collector.on(f"{ROOT}/cmd/result")]
    return next((result for result in results if result["id"] == command_id), None)


def first_occurrences(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def stored_ids(store: EventStore) -> list[str]:
    return [stored.event.id for stored in store.query()]


class Node:
    """An uplink over a fresh store, with the emitted events recorded into that store."""

    def __init__(self, directory: Path, config: MqttConfig, target: RecordingTarget | None = None) -> None:
        self.store = EventStore(directory / "events.db")
        self.target = target or RecordingTarget()
        self.uplink = Uplink(config, NODE, self.store, self.target, self.emit)

    def emit(self, kind: str, device: str | None, details: dict[str, object]) -> None:
        self.store.append(Event(node=NODE.node_id, type=kind, device=device, details=details))

    def __enter__(self) -> Node:
        self.uplink.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.uplink.stop()
        self.store.close()


def test_every_event_arrives_once_after_dedupe_in_order(tmp_path: Path, broker: Mosquitto) -> None:
    collector = Collector(broker.port, [f"{ROOT}/#"])
    try:
        with Node(tmp_path, make_config(broker.port)) as node:
            for index in range(300):
                record(node.store, "door.opened" if index % 2 else "gate.granted", index=index)
            wait_until(lambda: node.store.pending_count() == 0)
            wait_until(lambda: len(set(event_ids(collector))) == 300)
            assert first_occurrences(event_ids(collector)) == stored_ids(node.store)
            assert all(stored.delivered_at for stored in node.store.query())
            # Payloads are compact JSON with the event id, on {root}/events/{type}, not retained.
            topic, payload, retained = next(m for m in collector.snapshot() if "/events/" in m[0])
            body = json.loads(payload)
            assert topic == f"{ROOT}/events/{body['type']}" and not retained
            assert b" " not in payload and {"id", "seq", "ts", "type", "device", "details"} <= body.keys()
            health = node.uplink.health()
            assert health["connected"] and health["pending"] == 0 and health["in_flight"] == 0
    finally:
        collector.close()


def test_status_state_and_will(tmp_path: Path, broker: Mosquitto) -> None:
    node = Node(tmp_path, make_config(broker.port, telemetry_seconds=1))
    node.uplink.start()
    wait_until(lambda: node.uplink.health()["connected"])
    node.uplink.publish_state("gate/main", {"lock": "unlocked", "door": "open"})
    watcher = Collector(broker.port, [f"{ROOT}/status", f"{ROOT}/state/#", f"{ROOT}/telemetry"])
    try:
        wait_until(lambda: watcher.on(f"{ROOT}/state/gate/main")[-1:] == [b'{"lock":"unlocked","door":"open"}'])
        assert watcher.on(f"{ROOT}/status")[-1] == b"online"
        assert json.loads(watcher.on(f"{ROOT}/state/smoke/hall")[-1]) == {"alarm": False, "fault": False}
        wait_until(lambda: watcher.on(f"{ROOT}/telemetry"))
        telemetry = json.loads(watcher.on(f"{ROOT}/telemetry")[-1])
        assert telemetry["cameras"] == {"c1": {"fps": 14.8}}
        assert telemetry["outbox"]["pending"] == 0 and "load" in telemetry and "disk_free_mb" in telemetry
        with pytest.raises(ValueError, match="personal data"):
            node.uplink.publish_state("gate/main", {"lock": "unlocked", "name": "Wang"})
        node.uplink.stop()  # clean stop: retained offline
        wait_until(lambda: watcher.on(f"{ROOT}/status")[-1] == b"offline")
    finally:
        watcher.close()
        node.store.close()


def test_broker_killed_and_restarted_mid_stream(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", passwords=USERS).start()
    keys = write_keypair(tmp_path / "platform")
    config = agent_config(tmp_path, broker.port, command_public_key=str(keys[1]))
    first = platform_collector(broker.port, [f"{ROOT}/#"])
    collectors = [first]
    try:
        with Node(tmp_path, config) as node:
            node.uplink.publish_state("gate/main", {"lock": "locked", "door": "closed"})
            total = 2000
            producer = threading.Thread(target=lambda: [
                (record(node.store, index=index), time.sleep(0.0005)) for index in range(total)])
            producer.start()
            wait_until(lambda: len(set(event_ids(first))) >= 300)
            broker.kill()  # mid-stream, no persistence: every session and retained message is gone
            first.close()  # its view ends here (paho would otherwise reconnect it to the new broker)
            wait_until(lambda: not node.uplink.health()["connected"])
            # mosquitto PUBACKs a QoS 1 message before it has written it to subscribers; the few it acked
            # and never forwarded die with it. The node re-sends what was acknowledged in the last seconds
            # before an unexpected disconnect (outbox.resend_window), so nothing is lost.
            second = restart_platform_first(broker, [f"{ROOT}/#"])
            collectors.append(second)
            time.sleep(0.3)
            assert second.on(f"{ROOT}/status") == []  # the restart really lost the retained messages
            broker.set_passwords(USERS)  # SIGHUP: the node gets in on its next (jittered) attempt
            producer.join()
            wait_until(lambda: node.store.pending_count() == 0, timeout=40)
            all_ids = stored_ids(node.store)
            wait_until(lambda: set(all_ids) <= set(event_ids(first) + event_ids(second)))
            received = first_occurrences(event_ids(first) + event_ids(second))
            assert received == all_ids, "every event arrives, in order, after dedupe by id"
            assert node.uplink.connects >= 2
            # Retained status and state are back, for a subscriber that arrives later.
            late = platform_collector(broker.port, [f"{ROOT}/status", f"{ROOT}/state/#"])
            collectors.append(late)
            wait_until(lambda: late.on(f"{ROOT}/status") == [b"online"])
            wait_until(lambda: late.on(f"{ROOT}/state/gate/main") == [b'{"lock":"locked","door":"closed"}'])
            # Commands still work: the subscription was renewed on the new broker.
            command = sign_command(load_private_key(keys[0]), "open", "s1/b7/n1", {"gate": "main", "seconds": 3})
            second.publish(f"{ROOT}/cmd/open", json.dumps(command))
            wait_until(lambda: result_for(second, command["id"]) is not None)
            result = result_for(second, command["id"])
            assert result is not None
            assert result["ok"] is True and node.target.opened == [("main", 3.0)]
    finally:
        for collector in collectors:
            collector.close()
        broker.kill()


def test_long_outage_100k_events_then_delivered(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", passwords=USERS).start()
    broker.kill()  # the building is offline
    node = Node(tmp_path, agent_config(tmp_path, broker.port, outbox={"max_in_flight": 200}))
    node.uplink.start()
    collector: Collector | None = None
    try:
        bulk_insert(node.store, 100_000)
        time.sleep(0.5)
        assert node.uplink.health()["connected"] is False and node.store.pending_count() == 100_000
        collector = restart_platform_first(broker, [f"{ROOT}/events/#"])
        broker.set_passwords(USERS)
        wait_until(lambda: node.store.pending_count() == 0, timeout=120)
        wait_until(lambda: len(collector.messages) >= 100_000, timeout=60)
        ids = event_ids(collector)
        assert len(set(ids)) == 100_000
        assert first_occurrences(ids) == stored_ids(node.store)
    finally:
        if collector is not None:
            collector.close()
        node.uplink.stop()
        node.store.close()
        broker.kill()


@pytest.mark.parametrize("window", [10.0, 0.0])
def test_events_a_dead_broker_acknowledged_are_sent_again(tmp_path: Path, window: float) -> None:
    """A broker without persistence acknowledges, then dies before any subscriber had the messages:
    with the resend window the platform still gets them all; without it (0) they are gone."""
    broker = Mosquitto(tmp_path / "broker", passwords=USERS).start()
    config = agent_config(tmp_path, broker.port, outbox={"resend_window": window})
    platform: Collector | None = None
    try:
        with Node(tmp_path, config) as node:
            wait_until(lambda: node.uplink.health()["connected"])
            for index in range(50):
                record(node.store, index=index)
            wait_until(lambda: node.store.pending_count() == 0)  # all 50 acknowledged, no subscriber had them
            broker.kill()
            wait_until(lambda: not node.uplink.health()["connected"])
            platform = restart_platform_first(broker, [f"{ROOT}/events/#"])
            time.sleep(0.3)
            broker.set_passwords(USERS)
            wait_until(lambda: node.uplink.health()["connected"])
            if window:
                wait_until(lambda: len(set(event_ids(platform))) == 50)
                assert first_occurrences(event_ids(platform)) == stored_ids(node.store)
            else:
                time.sleep(1.0)
                assert event_ids(platform) == [], "without the window the broker's acknowledged losses stay lost"
    finally:
        if platform is not None:
            platform.close()
        broker.kill()
