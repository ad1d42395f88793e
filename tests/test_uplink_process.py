"""The uplink's process killed with SIGKILL while events are still being recorded, then restarted.

tests/test_uplink_daemon.py kills the real daemon (``edge-agent run``) while it drains a backlog.
This test adds what cannot be driven into the daemon from outside at that rate: appends going on
at about 1 kHz right up to the kill, so some events are committed but never sent, some are in
flight, some acknowledged.  The process under test is a small program (below) that runs the real
:class:`Uplink` over a real :class:`EventStore` and records in a loop, as the daemon's recorder does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.event_store import EventStore
from tests.mqtt_broker import Collector, Mosquitto
from tests.test_uplink_publish import ROOT, first_occurrences, wait_until

CHILD = r"""
import sys, time
from pathlib import Path
from agent.config import NodeConfig
from agent.config_mqtt import MqttConfig
from agent.event_store import EventStore
from agent.events import Event
from agent.uplink import Uplink
from tests.mqtt_broker import RecordingTarget

db, port, produce = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = EventStore(db)
node = NodeConfig(site="s1", building="b7", node_id="n1")
config = MqttConfig(host="127.0.0.1", port=port, backoff={"initial": 0.2, "max": 1.0})
emit = lambda kind, device, details: store.append(Event(node="n1", type=kind, device=device, details=details))
uplink = Uplink(config, node, store, RecordingTarget(), emit)
uplink.start()
print("started", flush=True)
index = 0
while index < produce or produce < 0:  # -1: record until killed
    index += 1
    store.append(Event(node="n1", type="door.opened", device="main", details={"index": index}))
    time.sleep(0.001)
print("produced", flush=True)
while True:
    time.sleep(1)
"""


def start_child(db: Path, port: int, produce: int) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(port), str(produce)],
                             cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    return child


def test_sigkill_while_publishing_then_restart_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "events.db"
    with Mosquitto(tmp_path / "broker") as broker:
        platform = Collector(broker.port, [f"{ROOT}/events/#", f"{ROOT}/status"])
        child = start_child(db, broker.port, produce=-1)
        try:
            wait_until(lambda: len(platform.on(f"{ROOT}/events/door.opened")) >= 500)
            store = EventStore(db, readonly=True)
            # Killed while something is unacknowledged: an uplink that has just caught up with the
            # producer would leave this test nothing to lose (seen once in CI).
            wait_until(lambda: store.pending_count() > 0)
            child.send_signal(signal.SIGKILL)  # mid-stream: events in flight, appends going on
            child.wait(5)
            # The broker saw the connection die without DISCONNECT: our Last Will says offline.
            wait_until(lambda: platform.on(f"{ROOT}/status")[-1:] == [b"offline"], timeout=10)
            recorded_before_restart = store.last_seq()
            assert recorded_before_restart >= 500 and store.pending_count() > 0  # killed with work in hand
            child = start_child(db, broker.port, produce=0)  # restarted: nothing new, only the backlog
            wait_until(lambda: store.pending_count() == 0)
            wait_until(lambda: len(set(platform.on(f"{ROOT}/events/door.opened"))) >= recorded_before_restart)
            ids = [json.loads(p)["id"] for p in platform.on(f"{ROOT}/events/door.opened")]
            stored = [s.event.id for s in store.query(types=["door.opened"])]
            assert len(stored) == recorded_before_restart
            assert first_occurrences(ids) == stored  # every committed event, once after dedupe, in order
            assert platform.on(f"{ROOT}/status")[-1] == b"online"
            store.close()
        finally:
            child.kill()
            child.wait(5)
            platform.close()
