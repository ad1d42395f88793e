"""Uplink figures against a local mosquitto, each beside a baseline.  Run: taskset -c 0 python bench/bench_uplink.py

1. events/s: the uplink draining stored events (SQLite outbox, PUBACK-tracked) vs. bare paho publishing
   the same payloads at QoS 1 with the same in-flight window (no store: the ceiling).
2. a 100,000-event backlog: time to drain, and the process RSS before and while draining.
3. 200 uplink clients, broker killed and restarted after 2 s: spread of reconnect times (full jitter)
   vs. 200 paho clients using paho's own reconnect backoff (no jitter).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import NodeConfig
from agent.config_mqtt import MqttConfig
from agent.event_store import EventStore
from agent.events import Event, rfc3339
from agent.uplink import Uplink
from tests.mqtt_broker import Mosquitto, RecordingTarget

IN_FLIGHT = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(store: EventStore, count: int) -> None:
    now = rfc3339(datetime.now(UTC))
    rows = [(str(uuid.uuid4()), now, "n1", "door.opened", "main", json.dumps({"n": index})) for index in range(count)]
    with store._lock:
        store.db.execute("BEGIN")
        store.db.conn.executemany(
            "INSERT INTO events (id, ts, node, type, device, details) VALUES (?, ?, ?, ?, ?, ?)", rows)
        store.db.execute("COMMIT")


def emit_into(store: EventStore):  # type: ignore[no-untyped-def]
    return lambda kind, device, details: store.append(Event(node="n1", type=kind, device=device, details=details))


def drain(directory: Path, port: int, count: int, node_id: str = "n1") -> tuple[float, float, float]:
    """Seconds to deliver ``count`` stored events; RSS before and peak RSS while draining (MB)."""
    store = EventStore(directory / f"{node_id}-{uuid.uuid4().hex[:6]}.db")
    fill(store, count)
    config = MqttConfig(host="127.0.0.1", port=port, outbox={"max_in_flight": IN_FLIGHT})
    uplink = Uplink(config, NodeConfig(site="s", building="b", node_id=node_id), store, RecordingTarget(),
                    emit_into(store))
    before = peak = rss_mb()
    started = time.perf_counter()
    uplink.start()
    while store.pending_count():
        peak = max(peak, rss_mb())
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    uplink.stop()
    store.close()
    return elapsed, before, peak


def baseline_paho(port: int, count: int) -> float:
    """Bare paho, QoS 1, same payload size and in-flight window, nothing stored or marked."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="baseline", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(IN_FLIGHT)
    client.max_queued_messages_set(0)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *_: acked.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = json.dumps({"id": str(uuid.uuid4()), "seq": 1, "ts": rfc3339(datetime.now(UTC)), "node": "n1",
                          "type": "door.opened", "device": "main", "details": {"n": 1}}).encode()
    started = time.perf_counter()
    for _ in range(count):
        client.publish("bench/events/door.opened", payload, qos=1)
    for _ in range(count):
        acked.acquire()
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def restart_and_time(broker: Mosquitto, down: float, connected: Callable[[], list[float]], clients: int) -> list[float]:
    """Kill the broker, restart it after ``down`` s; seconds from its return to each client's reconnect."""
    broker.kill()
    time.sleep(down)
    broker.start()
    restarted = time.time()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(connected()) < clients:
        time.sleep(0.1)
    return sorted(stamp - restarted for stamp in connected())


def wait_all(connected: Callable[[], int], clients: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and connected() < clients:
        time.sleep(0.1)


def uplink_reconnects(directory: Path, broker: Mosquitto, clients: int, down: float) -> list[float]:
    store = EventStore(directory / "shared.db")
    uplinks = [Uplink(MqttConfig(host="127.0.0.1", port=broker.port),
                      NodeConfig(site="s", building="b", node_id=f"n{index}"), store, RecordingTarget(),
                      emit_into(store)) for index in range(clients)]
    for uplink in uplinks:
        uplink.start()
    wait_all(lambda: sum(u.connects >= 1 for u in uplinks), clients)
    times = restart_and_time(
        broker, down, lambda: [u.last_connected_at or 0.0 for u in uplinks if u.connects >= 2], clients)
    for uplink in uplinks:
        uplink._stop.set()  # stop them all at once rather than one after another
    for uplink in uplinks:
        uplink.stop(timeout=5)
    store.close()
    return times


def paho_reconnects(broker: Mosquitto, clients: int, down: float) -> list[float]:
    stamps: list[float] = []
    lock = threading.Lock()

    def on_connect(*_args: object) -> None:
        with lock:
            stamps.append(time.time())

    pahos = []
    for index in range(clients):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho{index}", protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(1, 60)  # paho's own backoff: doubles, no jitter
        client.on_connect = on_connect
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        pahos.append(client)
    wait_all(lambda: len(stamps), clients)
    with lock:
        stamps.clear()
    times = restart_and_time(broker, down, lambda: list(stamps), clients)
    for client in pahos:
        client.disconnect()
        client.loop_stop()
    return times


def describe(values: list[float]) -> str:
    if not values:
        return "none"
    quantile = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return (f"n={len(values)} min {values[0]:.2f} s, median {statistics.median(values):.2f} s, "
            f"p90 {quantile[8]:.2f} s, max {values[-1]:.2f} s, spread (max-min) {values[-1] - values[0]:.2f} s")


def histogram(values: list[float]) -> str:
    buckets: dict[int, int] = {}
    for value in values:
        buckets[int(value)] = buckets.get(int(value), 0) + 1
    return " ".join(f"[{second}s:{count}]" for second, count in sorted(buckets.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["throughput", "backlog", "reconnect"], help="run one part")
    options = parser.parse_args()
    logging.getLogger("agent").setLevel(logging.ERROR)  # the refused reconnects are expected here
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        with Mosquitto(directory / "broker") as broker:
            if options.only in (None, "throughput"):
                throughput(directory, broker, options)
            if options.only in (None, "backlog"):
                backlog(directory, broker, options)
            if options.only in (None, "reconnect"):
                reconnect(directory, broker, options)


def throughput(directory: Path, broker: Mosquitto, options: argparse.Namespace) -> None:
    ours = [options.events / drain(directory, broker.port, options.events)[0] for _ in range(options.repeat)]
    base = [options.events / baseline_paho(broker.port, options.events) for _ in range(options.repeat)]
    print(f"events/s, uplink (SQLite outbox, PUBACK-marked, in flight {IN_FLIGHT}): "
          f"median {statistics.median(ours):,.0f} ({', '.join(f'{v:,.0f}' for v in ours)})")
    print(f"events/s, baseline bare paho QoS 1 (same window, no store): "
          f"median {statistics.median(base):,.0f} ({', '.join(f'{v:,.0f}' for v in base)})")


def backlog(directory: Path, broker: Mosquitto, options: argparse.Namespace) -> None:
    elapsed, before, peak = drain(directory, broker.port, options.backlog, node_id="backlog")
    print(f"{options.backlog:,}-event backlog: drained in {elapsed:.1f} s "
          f"({options.backlog / elapsed:,.0f} events/s); RSS {before:.0f} MB before (baseline), "
          f"peak {peak:.0f} MB while draining")


def reconnect(directory: Path, broker: Mosquitto, options: argparse.Namespace) -> None:
    uplink_times = uplink_reconnects(directory, broker, options.clients, down=2.0)
    paho_times = paho_reconnects(broker, options.clients, down=2.0)
    print(f"reconnect after broker restart (down 2 s), {options.clients} uplinks, full jitter "
          f"(initial 1 s, max 60 s), seconds after the broker came back: {describe(uplink_times)}")
    print(f"  per-second histogram: {histogram(uplink_times)}")
    print(f"baseline: {options.clients} paho clients with paho's reconnect_delay_set(1, 60): "
          f"{describe(paho_times)}")
    print(f"  per-second histogram: {histogram(paho_times)}")


if __name__ == "__main__":
    main()
