"""Whole-node scenarios on a real mosquitto: privacy of everything published, the outbox limit, HA discovery."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import agent.uplink
from agent.events import Event
from agent.signing import load_private_key, sign_command, write_keypair
from tests.mqtt_broker import Collector, Mosquitto
from tests.test_uplink_publish import (
    NODE,
    ROOT,
    USERS,
    Node,
    agent_config,
    make_config,
    record,
    restart_platform_first,
    result_for,
    wait_until,
)

NAME = "王小明"  # a resident's name: must never leave the node
LATIN_NAME = "Wang Xiaoming"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
TEMPLATE = [0.0123 * index - 0.7 for index in range(128)]


def numbers_in_lists(value: Any) -> int:
    """The longest list of numbers anywhere in a JSON value."""
    if isinstance(value, dict):
        return max((numbers_in_lists(item) for item in value.values()), default=0)
    if isinstance(value, list):
        numbers = sum(isinstance(item, int | float) and not isinstance(item, bool) for item in value)
        return max([numbers, *(numbers_in_lists(item) for item in value)])
    return 0


def assert_private(topic: str, payload: bytes) -> None:
    assert b"\xff\xd8\xff" not in payload and b"\x89PNG" not in payload, topic
    assert base64.b64encode(JPEG[:60]) not in payload, topic
    assert NAME.encode() not in payload and LATIN_NAME.encode() not in payload, topic
    assert not re.search(rb"[A-Za-z0-9+/=]{200,}", payload), f"{topic}: a long base64 run"
    try:
        body = json.loads(payload)
    except ValueError:
        return  # "online" / "offline"
    assert numbers_in_lists(body) < 128, f"{topic}: a list of numbers as long as a face template"


def test_privacy_of_every_published_payload(tmp_path: Path) -> None:
    keys = write_keypair(tmp_path / "platform")
    key = load_private_key(keys[0])
    with Mosquitto(tmp_path / "broker") as broker:
        everything = Collector(broker.port, ["#"])
        try:
            config = make_config(broker.port, command_public_key=str(keys[1]), telemetry_seconds=1,
                                 home_assistant=True)
            with Node(tmp_path, config) as node:
                # The model refuses personal data, whichever way a bug might try to pass it.
                for details in ({"name": NAME}, {"person": {"display_name": LATIN_NAME}}, {"template": TEMPLATE},
                                {"embedding_v2": TEMPLATE}, {"snapshot": "x"}, {"thumb": JPEG},
                                {"thumb": base64.b64encode(JPEG).decode()}):
                    with pytest.raises(ValidationError):
                        Event(node=NODE.node_id, type="gate.granted", device="main", details=details)
                with pytest.raises(ValueError):
                    node.uplink.publish_state("gate/main", {"lock": "unlocked", "last_person": {"name": NAME}})
                # What a busy hour legitimately produces.
                record(node.store, "gate.granted", method="face", person="R-0203-1", distance=0.41,
                       box=[112, 80, 260, 228])
                record(node.store, "gate.granted", method="plate", plate="沪A12345", confidence=0.93)
                record(node.store, "door.opened")
                record(node.store, "smoke.alarm", detector="hall")
                node.uplink.publish_state("gate/main", {"lock": "unlocked", "door": "open"})
                command = sign_command(key, "open", "s1/b7/n1", {"gate": "main", "seconds": 5})
                everything.publish(f"{ROOT}/cmd/open", json.dumps(command))
                everything.publish(f"{ROOT}/cmd/ping", json.dumps({"id": "p1"}))
                everything.publish(f"{ROOT}/cmd/sync", json.dumps(
                    sign_command(key, "sync", "s1/b7/n1", {"version": 2, "residents": [{"id": "R-0203-1"}]})))
                wait_until(lambda: result_for(everything, "p1") is not None)
                wait_until(lambda: len(everything.on(f"{ROOT}/telemetry")) >= 2)
                wait_until(lambda: node.store.pending_count() == 0)
        finally:
            everything.close()
    messages = everything.snapshot()
    # Command *inputs* are the platform's words, not ours; everything the node published is checked.
    ours = [(topic, payload) for topic, payload, _ in messages
            if not (topic.startswith(f"{ROOT}/cmd/") and topic != f"{ROOT}/cmd/result")]
    kinds = {topic.split("/")[4] if topic.startswith(ROOT) else topic.split("/")[0] for topic, _ in ours}
    assert {"events", "state", "status", "telemetry", "cmd", "homeassistant"} <= kinds
    for topic, payload in ours:
        assert_private(topic, payload)
    granted = [json.loads(p) for t, p in ours if t == f"{ROOT}/events/gate.granted"]
    assert {g["details"]["method"] for g in granted} == {"face", "plate"}
    # Home Assistant discovery: the gate lock, the smoke detector and the camera, with availability.
    discovery = {topic: json.loads(payload) for topic, payload in ours if topic.startswith("homeassistant/")}
    lock = discovery["homeassistant/binary_sensor/s1-b7-n1/gate_main_lock/config"]
    assert lock["availability_topic"] == f"{ROOT}/status" and lock["state_topic"] == f"{ROOT}/state/gate/main"
    assert "homeassistant/binary_sensor/s1-b7-n1/smoke_hall_alarm/config" in discovery
    assert "homeassistant/binary_sensor/s1-b7-n1/camera_c1_problem/config" in discovery


def test_outbox_limit_drops_only_low_value_events_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent.uplink, "BACKLOG_CHECK_SECONDS", 0.1)
    broker = Mosquitto(tmp_path / "broker", passwords=USERS)  # not started yet: the building is offline
    node = Node(tmp_path, agent_config(tmp_path, broker.port, outbox={"max_pending": 100}))
    for index in range(180):
        record(node.store, "door.opened" if index % 3 == 0 else "gate.granted", index=index)
    node.uplink.start()
    try:
        wait_until(lambda: node.store.query(types=["uplink.events_dropped"]))
        full = node.store.query(types=["uplink.backlog_full"])
        dropped = node.store.query(types=["uplink.events_dropped"])
        assert len(full) == 1 and full[0].event.details["limit"] == 100
        assert dropped[0].event.details == {"count": 60, "by_type": {"door.opened": 60}}
        pending_types = {stored.event.type for stored in node.store.pending(limit=1000)}
        assert "door.opened" not in pending_types and "gate.granted" in pending_types
        assert len(node.store.query(types=["gate.granted"])) == 120  # never dropped, even over the limit
        assert node.uplink.health()["backlog_full"] is True  # 122 important events: still over, still loud
        # The platform subscribes before the node may log in: what the node sends on its (jittered)
        # reconnect could otherwise go past a subscriber that is not there yet.
        platform = restart_platform_first(broker, [f"{ROOT}/events/#", f"{ROOT}/state/uplink"])
        try:
            broker.set_passwords(USERS)
            wait_until(lambda: node.store.query(types=["uplink.backlog_cleared"]))
            wait_until(lambda: node.store.pending_count() == 0)
            delivered = [json.loads(p)["type"] for t, p, _ in platform.snapshot() if "/events/" in t]
            assert delivered.count("gate.granted") == 120 and "door.opened" not in delivered
            wait_until(lambda: json.loads(platform.on(f"{ROOT}/state/uplink")[-1])["backlog_full"] is False)
        finally:
            platform.close()
            broker.kill()
    finally:
        node.uplink.stop()
        node.store.close()
