"""Nothing acknowledged is lost: the daemon SIGKILLed while control-socket commands are acknowledged.

Eight technicians' CLIs (threads here) correct a car park's count as fast as the daemon answers; the
daemon (``python -m agent.cli run``, a real process) is killed with SIGKILL by the client thread
that received the 600th reply, the moment it arrives, while the others are in flight; three times.
Every ``parking.corrected`` event whose reply said ``ok`` must then be in ``events.db``: a reply is an
acknowledgement, so the event is committed first.  Before the replies waited for the commit, a few
acknowledged events were still in the recorder's queue when the process died (4 of 2,010 in the
issue; 1 to 7 of 1,800 in each of six runs of this test).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from agent.control import ControlUnavailable, call
from tests.agent_configs import node_config
from tests.test_uplink_publish import wait_until

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 8
KILL_AFTER = 600  # acknowledged commands per round before the kill
ROUNDS = 3  # the loss was a race: three kills give it three chances to show
PARKING = "parking:\n  - {name: lot, capacity: 100000, entries: [car-in]}\n"


class Technicians:
    """CLIENTS threads sending ``parking_set`` until the socket dies; every acknowledged reply kept."""

    def __init__(self, state_dir: Path, daemon: subprocess.Popen[bytes]) -> None:
        self.state_dir = state_dir
        self.daemon = daemon
        self.acknowledged: list[tuple[str, dict[str, object]]] = []  # (source, reply)
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(20)

    def _run(self, client: int) -> None:
        for index in range(1_000_000):
            source = f"t{client}-{index}"
            try:
                reply = call(self.state_dir, {"cmd": "parking_set", "name": "lot", "occupied": index % 1000,
                                              "source": source}, timeout=10)
            except (ControlUnavailable, OSError, ValueError):
                return  # killed: this request got no reply, so it was never acknowledged
            if reply.get("ok"):
                with self.lock:
                    self.acknowledged.append((source, reply))
                    if len(self.acknowledged) == KILL_AFTER:
                        self.daemon.send_signal(signal.SIGKILL)  # right after a reply: others are mid-way
                        self.enough.set()


def corrected_sources(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT details FROM events WHERE type = 'parking.corrected'").fetchall()
    finally:
        conn.close()
    return {json.loads(details)["source"] for (details,) in rows}


def test_every_acknowledged_event_survives_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(state) + PARKING)
    env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    acknowledged: list[tuple[str, dict[str, object]]] = []
    for round_ in range(ROUNDS):
        log = (tmp_path / f"daemon-{round_}.log").open("w")
        daemon = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=REPO,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: _answers(state), timeout=60)
            technicians = Technicians(state, daemon)
            technicians.start()
            assert technicians.enough.wait(120), "the daemon stopped answering"
            daemon.wait(10)
            technicians.join()
            acknowledged += technicians.acknowledged
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
            log.close()
    stored = corrected_sources(state / "events.db")
    lost = [source for source, _ in acknowledged if source not in stored]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged corrections are not in events.db: {lost[:10]}"
    # And each reply said so: the disk was fine, so every acknowledged event was recorded before it.
    assert all(reply.get("recorded") is True for _, reply in acknowledged)


def _answers(state_dir: Path) -> bool:
    try:
        return bool(call(state_dir, {"cmd": "status"}, timeout=2).get("ok"))
    except (ControlUnavailable, OSError, ValueError):
        return False
