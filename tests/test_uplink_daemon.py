"""The uplink inside the real daemon (``edge-agent run`` / ``simulate``) against a real mosquitto.

* the daemon SIGKILLed while it drains a backlog, restarted: every event arrives, once after dedupe,
  in order; the retained status goes ``offline`` (Last Will) and back to ``online``;
* a whole simulation scenario (faces and plates recognised, a resident enrolled with her name)
  watched on ``#``: nothing published holds an image, a face template, a name or a plate in full,
  and events, retained status/state and telemetry all arrive;
* signed commands from ``edge-agent cmd``: a remote open moves the real (mock-pin) relay, an
  ``alarm_reset`` with nothing latched, a replay and an unsigned ``open`` are refused, each with a
  result on ``{root}/cmd/result``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.event_store import EventStore
from agent.events import Event
from tests.agent_configs import node_config
from tests.mqtt_broker import Collector, Mosquitto
from tests.test_uplink_publish import first_occurrences, wait_until

REPO = Path(__file__).resolve().parents[1]
ROOT = "community/s1/b1/n1"  # node_config's node: s1/b1/n1
BACKLOG = 20_000
STOP_TIMEOUT = 10.0  # systemd/edge-agent.service: TimeoutStopSec=10, then systemd SIGKILLs the node


def mqtt_section(port: int, **extra: object) -> str:
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "backoff": {"initial": 0.2, "max": 1.0},
                                 "telemetry_seconds": 1, **extra}
    return yaml.safe_dump({"mqtt": values}, default_flow_style=False)


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


class Daemon:
    """``python -m agent.cli run --config FILE`` as systemd would start it; output to a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        with log.open("a") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                                            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the daemon took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(STOP_TIMEOUT)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


def statuses(platform: Collector) -> list[bytes]:
    """The status topic's values with repeats folded: [online, offline, online] for one crash."""
    values = platform.on(f"{ROOT}/status")
    return [value for index, value in enumerate(values) if index == 0 or values[index - 1] != value]


def collected_event_ids(platform: Collector) -> list[str]:
    return [json.loads(payload)["id"] for topic, payload, _ in platform.snapshot() if "/events/" in topic]


def prefill(db: Path, count: int) -> None:
    """An outage's backlog, recorded by the store's own append (one transaction: no 20,000 fsyncs)."""
    store = EventStore(db)
    store.append_many([Event(node="n1", type="door.opened", device="main", details={"index": index})
                       for index in range(count)])
    store.close()


# --- 1. SIGKILL mid-stream ------------------------------------------------------------------------

def test_daemon_killed_while_draining_a_backlog_then_restarted_loses_nothing(tmp_path: Path,
                                                                            broker: Mosquitto) -> None:
    db = tmp_path / "state" / "events.db"
    prefill(db, BACKLOG)
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state") + mqtt_section(broker.port))
    platform = Collector(broker.port, [f"{ROOT}/events/#", f"{ROOT}/status"])
    store = EventStore(db, readonly=True)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: len(collected_event_ids(platform)) >= 1000, timeout=60)
        daemon.process.send_signal(signal.SIGKILL)  # mid-stream: a window of events awaits PUBACK
        daemon.process.wait(5)
        wait_until(lambda: statuses(platform)[-1:] == [b"offline"], timeout=10)  # the broker's Last Will
        assert store.pending_count() > 0, "the daemon drained everything before the kill: not mid-stream"
        assert len(set(collected_event_ids(platform))) < BACKLOG

        daemon = Daemon(config, tmp_path / "daemon.log")
        wait_until(lambda: store.pending_count() == 0, timeout=60)
        stored = [s.event.id for s in store.query()]
        wait_until(lambda: set(stored) <= set(collected_event_ids(platform)), timeout=20)
        ids = collected_event_ids(platform)
        assert first_occurrences(ids) == stored  # every event once after dedupe, in the order recorded
        backlog = [s.event.details["index"] for s in store.query(types=["door.opened"]) if "index" in s.event.details]
        assert backlog == list(range(BACKLOG))  # the daemon's own door.opened (mock pins start open) aside
        assert [s.event.type for s in store.query()].count("agent.started") == 2
        assert statuses(platform) == [b"online", b"offline", b"online"]

        code, seconds = daemon.stop()
        assert code == 0, daemon.output()[-3000:]
        wait_until(lambda: statuses(platform)[-1:] == [b"offline"], timeout=5)  # said goodbye itself
        assert "agent.stopped" in [s.event.type for s in store.query()]  # delivered or waiting in the outbox
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]
        print(f"daemon stopped {seconds:.2f}s after SIGTERM")
    finally:
        daemon.kill()
        platform.close()
        store.close()


# --- 2. privacy over a whole scenario ---------------------------------------------------------------

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM6", b"/9j/", b"iVBORw0KGgo")  # raw and base64
LONG_BASE64 = re.compile(rb"[A-Za-z0-9+/]{120,}={0,2}")
NUMBER_RUN = re.compile(rb"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*[,;\s]\s*){127}-?\d")  # 128 numbers in a row


def longest_number_list(value: Any) -> int:
    if isinstance(value, dict):
        return max((longest_number_list(item) for item in value.values()), default=0)
    if isinstance(value, list):
        numbers = sum(isinstance(item, int | float) and not isinstance(item, bool) for item in value)
        return max([numbers, *(longest_number_list(item) for item in value)])
    return 0


def privacy_problems(topic: str, payload: bytes, secrets: list[str]) -> list[str]:
    problems = [f"{topic}: image bytes {magic!r}" for magic in IMAGE_MAGIC if magic in payload]
    if LONG_BASE64.search(payload):
        problems.append(f"{topic}: a long base64 run")
    if NUMBER_RUN.search(payload):
        problems.append(f"{topic}: a run of 128 numbers")
    try:
        decoded = json.loads(payload)
    except ValueError:
        decoded = None
    if longest_number_list(decoded) >= 128:
        problems.append(f"{topic}: a list of 128 numbers")
    text = payload.decode("utf-8", errors="replace")
    problems += [f"{topic}: {secret!r}" for secret in secrets if secret in text or
                 secret.encode("unicode_escape").decode() in text]  # also as JSON \\uXXXX escapes
    return problems


def test_privacy_guard_finds_what_it_looks_for() -> None:
    """The checks below must be able to fail: each forbidden thing, planted, is reported."""
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(200))
    assert privacy_problems("t", jpeg, [])
    assert privacy_problems("t", json.dumps({"face": base64.b64encode(bytes(range(256))).decode()}).encode(), [])
    assert privacy_problems("t", json.dumps({"v": [0.01 * i for i in range(128)]}).encode(), [])
    assert privacy_problems("t", json.dumps({"who": "王小明"}).encode(), ["王小明"])
    assert privacy_problems("t", json.dumps({"who": "王小明"}, ensure_ascii=True).encode(), ["王小明"])
    event = json.dumps({"id": "0191e0f5-6a2b-7c3d-8e4f-123456789abc", "type": "door.opened",
                        "details": {"counts": list(range(20))}}).encode()
    assert privacy_problems("t", event, ["王小明"]) == []


def enrolled_secrets(config: Path) -> tuple[list[str], list[str]]:
    """(names, plates) of everyone the simulation enrolled, read back from its encrypted whitelist.

    A display name never goes upstream; with ``upstream_plate`` other than ``clear`` neither does a
    plate in full.  The name's words outside brackets count too: "Grace (simulated resident)" → "Grace".
    """
    from agent.config_loader import load_config
    from agent.config_whitelist import open_whitelist_store
    from agent.simulation import STRANGER_PLATE

    loaded = load_config(config)
    people = list(open_whitelist_store(loaded.whitelist, loaded.storage.state_dir, config.parent).load())
    names: list[str] = []
    for person in people:
        if person.name:
            names += [person.name, *(word for word in re.sub(r"\(.*?\)", " ", person.name).split() if len(word) > 2)]
    plates = [plate for person in people for plate in person.plates] + [STRANGER_PLATE]
    return names, plates if loaded.plates.upstream_plate != "clear" else []


def simulation_config(tmp_path: Path, port: int) -> Path:
    """config/simulation.yaml with every file it makes or reads (state, videos, whitelist, key) in tmp_path."""
    raw = yaml.safe_load((REPO / "config" / "simulation.yaml").read_text(encoding="utf-8"))
    raw["storage"]["state_dir"] = str(tmp_path / "state")
    for camera in raw["hardware"].get("cameras") or []:
        source = str(camera.get("source", ""))
        if "://" not in source and not source.isdigit():
            camera["source"] = str(tmp_path / "media" / Path(source).name)
    whitelist = raw.get("whitelist") or {}
    if isinstance(whitelist.get("key"), dict) and "file" in whitelist["key"]:
        whitelist["key"]["file"] = str(tmp_path / "whitelist.key")
    for key in ("file", "audit_log"):
        if key in whitelist:
            whitelist[key] = str(tmp_path / "state" / Path(whitelist[key]).name)
    raw["mqtt"] = {"host": "127.0.0.1", "port": port, "backoff": {"initial": 0.2, "max": 1.0},
                   "telemetry_seconds": 1}
    config = tmp_path / "simulation.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return config


def test_a_full_simulation_publishes_nothing_personal(tmp_path: Path, broker: Mosquitto) -> None:
    config = simulation_config(tmp_path, broker.port)
    node = yaml.safe_load(config.read_text(encoding="utf-8"))["node"]
    root = f"community/{node['site']}/{node['building']}/{node['node_id']}"

    everything = Collector(broker.port, ["#"])
    try:
        run = cli("simulate", str(config), timeout=120)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert "Traceback" not in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
        messages = everything.snapshot()
    finally:
        everything.close()
    (tmp_path / "simulate.log").write_text(run.stdout + run.stderr)
    names, plates = enrolled_secrets(config)
    assert names, "the simulation enrolled nobody with a name: the name check would be empty"
    published = [(topic, payload) for topic, payload, _ in messages if topic.startswith(root)]
    problems = [problem for topic, payload in published
                for problem in privacy_problems(topic, payload, names + plates)]
    assert problems == []

    topics = {topic for topic, _ in published}
    event_types = {topic.rsplit("/", 1)[1] for topic in topics if topic.startswith(f"{root}/events/")}
    assert {"agent.started", "door.opened", "door.forced", "assist.requested", "smoke.alarm",
            "alarm.reset"} <= event_types, event_types
    if "without faces or plates" not in run.stdout:  # the media could be made: recognition was checked too
        methods = {json.loads(payload)["details"].get("method") for topic, payload in published
                   if topic in (f"{root}/events/access.granted", f"{root}/events/access.denied")}
        assert {"face", "plate"} <= methods, methods
    assert {f"{root}/status", f"{root}/state/gate/main", f"{root}/state/fire", f"{root}/telemetry"} <= topics
    telemetry = json.loads([payload for topic, payload in published if topic == f"{root}/telemetry"][-1])
    assert "outbox" in telemetry
    lane = telemetry["cameras"]["lane"]  # the barrier camera: is recognition keeping up, what did it skip
    assert {"fps", "frames_processed", "busy_s", "plate_frames_read", "plate_frames_still"} <= set(lane)
    assert lane["frames_processed"] == lane["plate_frames_read"] + lane["plate_frames_still"] > 0
    assert "plate_frames_read" not in telemetry["cameras"]["entrance"]  # a gate camera reads faces
    recorded = EventStore(tmp_path / "state" / "events.db", readonly=True)
    try:  # every event recorded before the clean stop reached the platform (agent.stopped may be in flight)
        ids = {json.loads(payload)["id"] for topic, payload in published if "/events/" in topic}
        assert {s.event.id for s in recorded.query() if s.event.type != "agent.stopped"} <= ids
    finally:
        recorded.close()

    retained = Collector(broker.port, [f"{root}/#"])  # a platform that connects after the run
    try:
        retained.wait_for(lambda: {f"{root}/status", f"{root}/state/gate/main", f"{root}/state/fire"}
                          <= {topic for topic, _, kept in retained.snapshot() if kept}, timeout=5)
        kept = {topic: payload for topic, payload, flag in retained.snapshot() if flag}
    finally:
        retained.close()
    assert kept.get(f"{root}/status") == b"offline"  # a clean stop said goodbye
    assert json.loads(kept[f"{root}/state/fire"])["latched"] is False  # the technician's reset
    assert json.loads(kept[f"{root}/state/gate/main"])["lock"] in ("locked", "unlocked")


# --- 3. signed commands against the real daemon ---------------------------------------------------

def results(platform: Collector, command_id: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(p) for p in platform.on(f"{ROOT}/cmd/result")) if r.get("id") == command_id]


def gate_states(platform: Collector) -> list[str]:
    return [json.loads(payload)["lock"] for payload in platform.on(f"{ROOT}/state/gate/main")]


def test_signed_commands_act_on_the_real_daemon(tmp_path: Path, broker: Mosquitto) -> None:
    keygen = cli("keygen", "--ed25519", "--out", str(tmp_path / "platform"))
    assert keygen.returncode == 0, keygen.stderr
    key = tmp_path / "platform.key"
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state")
                      + mqtt_section(broker.port, command_public_key=str(tmp_path / "platform.pub")))
    platform = Collector(broker.port, [f"{ROOT}/status", f"{ROOT}/cmd/result", f"{ROOT}/state/gate/main",
                                       f"{ROOT}/events/#"])
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: statuses(platform)[-1:] == [b"online"] and gate_states(platform), timeout=30)
        assert gate_states(platform)[-1] == "locked"

        opened = cli("cmd", "send", "--key", str(key), "--config", str(config), "--id", "open-1",
                     "open", "--arg", "gate=main", "--arg", "seconds=4")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert json.loads(opened.stdout)["ok"] is True
        status = cli("status", "--config", str(config))
        gate_line = next(line for line in status.stdout.splitlines() if "gate/main" in line)
        assert "lock=unlocked" in gate_line, status.stdout  # the relay pin, as the daemon reads it back
        wait_until(lambda: "unlocked" in gate_states(platform), timeout=5)  # retained state/gate/main

        reset = cli("cmd", "send", "--key", str(key), "--config", str(config), "--id", "reset-1", "alarm_reset")
        assert reset.returncode == 1
        assert json.loads(reset.stdout) | {"ts": None} == {
            "id": "reset-1", "name": "alarm_reset", "ok": False, "reason": "refused: no fire alarm is latched",
            "ts": None}

        signed = cli("cmd", "sign", "--key", str(key), "--config", str(config), "--id", "open-2",
                     "open", "--arg", "gate=main", "--arg", "seconds=1")
        assert signed.returncode == 0, signed.stderr
        platform.publish(f"{ROOT}/cmd/open", signed.stdout.strip())
        wait_until(lambda: len(results(platform, "open-2")) == 1, timeout=10)
        platform.publish(f"{ROOT}/cmd/open", signed.stdout.strip())  # the same bytes again: a replay
        wait_until(lambda: len(results(platform, "open-2")) == 2, timeout=10)
        first, replayed = results(platform, "open-2")
        assert first["ok"] is True
        assert replayed["ok"] is False and replayed["reason"] == "replayed command id"

        platform.publish(f"{ROOT}/cmd/open", json.dumps({"id": "unsigned-1", "name": "open",
                                                        "args": {"gate": "main"}}))
        wait_until(lambda: results(platform, "unsigned-1"), timeout=10)
        assert results(platform, "unsigned-1")[0]["ok"] is False
        assert results(platform, "unsigned-1")[0]["reason"] == "missing signature"

        assert [r["ok"] for r in results(platform, "open-1")] == [True]  # on cmd/result too, not only the CLI
        assert [r["ok"] for r in results(platform, "reset-1")] == [False]
        wait_until(lambda: gate_states(platform)[-1] == "locked", timeout=10)  # relocked after the open
        granted = [json.loads(p) for p in platform.on(f"{ROOT}/events/gate.granted")]
        assert [g["details"]["method"] for g in granted] == ["remote", "remote"]  # open-1 and open-2, not more
        wait_until(lambda: len(platform.on(f"{ROOT}/events/uplink.command_refused")) >= 3, timeout=10)
        refused = {json.loads(p)["details"]["command_id"]: json.loads(p)["details"]["reason"]
                   for p in platform.on(f"{ROOT}/events/uplink.command_refused")}
        assert refused == {"reset-1": "refused: no fire alarm is latched", "open-2": "replayed command id",
                           "unsigned-1": "missing signature"}

        code, _ = daemon.stop()
        assert code == 0 and "Traceback" not in daemon.output(), daemon.output()[-3000:]
    finally:
        daemon.kill()
        platform.close()
