"""Durability figures (docs/durability.md): the recorder's window from emit to commit, the memory a
queued event takes while the disk is full, and how long the node takes to write again once space is
freed.

    python bench/bench_durability.py                          # this machine
    ../shared/tools/at-pi-speed python bench/bench_durability.py   # one core at Raspberry Pi 4 speed

The window is measured on the recorder and event store the daemon uses (the daemon's write is
``EventStore.append_many`` then its listeners), under three loads: a steady trickle (a quiet
building), 4 pin threads at 50 events/s each (also with 25 ms added to each commit: a model of a
slow SD card's fsync, since this machine's disk is faster), and a burst of 500 events at once.
The recovery figure needs root: it fills a real tmpfs.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.event_store import EventStore  # noqa: E402
from agent.events import Event  # noqa: E402
from agent.recorder import Recorder  # noqa: E402


class Timed:
    """A recorder over a real store that notes when each event was put and when it was committed."""

    def __init__(self, db: Path, commit_delay: float = 0.0) -> None:
        self.store = EventStore(db)
        self.commit_delay = commit_delay
        self.put_at: dict[str, float] = {}
        self.committed_at: dict[str, float] = {}
        self.recorder = Recorder(self._write, where=str(db))
        self.recorder.start()

    def _write(self, events: list[Event]) -> None:
        self.store.append_many(events)
        if self.commit_delay:  # a model of a slow SD card's fsync, added to this disk's own: part of the commit
            time.sleep(self.commit_delay)
        now = time.perf_counter()
        for event in events:
            self.committed_at[event.id] = now

    def emit(self, kind: str, index: int) -> None:
        event = Event(node="n1", type=kind, device="main", details={"index": index})
        self.put_at[event.id] = time.perf_counter()
        self.recorder.put(event)

    def windows_ms(self) -> list[float]:
        assert self.recorder.flush(60)
        return [(self.committed_at[key] - put) * 1000 for key, put in self.put_at.items()]

    def close(self) -> None:
        self.recorder.stop()
        self.store.close()


def summary(name: str, windows: list[float]) -> None:
    ordered = sorted(windows)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(f"  {name:<40} n={len(ordered):<5} median {statistics.median(ordered):6.1f} ms   "
          f"p99 {p99:6.1f} ms   worst {ordered[-1]:6.1f} ms")


def window_figures(directory: Path) -> None:
    print("emit -> commit window:")
    timed = Timed(directory / "trickle.db")
    for index in range(200):  # one event every 20 ms: each is written alone
        timed.emit("door.opened", index)
        time.sleep(0.02)
    summary("trickle (50/s, one thread)", timed.windows_ms())
    timed.close()

    for delay, name in ((0.0, "4 pin threads (~200/s together)"), (0.025, "the same, +25 ms per commit (SD card)")):
        timed = Timed(directory / f"pins-{delay}.db", commit_delay=delay)
        pin_threads(timed)
        summary(name, timed.windows_ms())
        timed.close()

    timed = Timed(directory / "burst.db")
    for index in range(500):
        timed.emit("access.granted", index)
    summary("burst of 500 at once", timed.windows_ms())
    timed.close()


def pin_threads(timed: Timed) -> None:
    rng = random.Random(7)

    def pin_thread(offset: int) -> None:
        for index in range(250):
            timed.emit("door.opened" if index % 3 else "gate.granted", offset + index)
            time.sleep(rng.uniform(0.0, 0.04))  # about 50/s per thread, irregular

    threads = [threading.Thread(target=pin_thread, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def memory_figure() -> None:
    recorder = Recorder(lambda events: None)  # not started: everything stays queued, as on a full disk
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    count = 20_000
    for index in range(count):
        recorder.put(Event(node="n1", type="access.granted", device="main",
                           details={"person": f"R-{index:04d}", "method": "face", "score": 0.91}))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"memory while the disk is full: {used / count:.0f} bytes per queued event "
          f"({used / 2**20:.1f} MiB for {count:,})")


def recovery_figures(directory: Path, trials: int = 5) -> None:
    if os.geteuid() != 0:
        print("time to recover: skipped (needs root to mount a tmpfs)")
        return
    disk = directory / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        store = EventStore(disk / "events.db")
        recorder = Recorder(store.append_many, where="events.db")
        recorder.start()
        recover: list[float] = []
        for trial in range(trials):
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, bytes(4096))
            except OSError:
                os.close(fd)
            for index in range(100):
                recorder.put(Event(node="n1", type="door.opened", details={"trial": trial, "index": index}))
            time.sleep(3 + trial)  # full for a while: the retry backoff has reached its 1 s
            freed = time.perf_counter()
            filler.unlink()
            while recorder.backlog:
                time.sleep(0.001)
            recover.append(time.perf_counter() - freed)
        print(f"time to recover (space freed -> 100 queued events committed), {trials} trials: "
              f"median {statistics.median(recover) * 1000:.0f} ms, worst {max(recover) * 1000:.0f} ms")
        recorder.stop()
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def daemon_recovery_figure(directory: Path, full_seconds: float = 20.0) -> None:
    """The whole node: ``edge-agent run`` and mosquitto, a signed open on a full tmpfs, then space freed."""
    if os.geteuid() != 0:
        print("daemon on a full disk: skipped (needs root to mount a tmpfs)")
        return
    import json
    import sqlite3
    from collections import Counter

    from agent.control import call
    from tests.agent_configs import node_config
    from tests.mqtt_broker import Collector, Mosquitto
    from tests.test_uplink_daemon import ROOT as TOPIC_ROOT
    from tests.test_uplink_daemon import Daemon, cli, mqtt_section, results, statuses

    disk = directory / "node-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    state = disk / "state"
    try:
        cli("keygen", "--ed25519", "--out", str(directory / "platform"))
        with Mosquitto(directory / "broker") as broker:
            config = directory / "agent.yaml"
            config.write_text(node_config(state) + mqtt_section(
                broker.port, command_public_key=str(directory / "platform.pub")))
            platform = Collector(broker.port, [f"{TOPIC_ROOT}/#"])
            daemon = Daemon(config, directory / "daemon.log")
            try:
                until(lambda: statuses(platform)[-1:] == [b"online"])
                filler = disk / "filler"
                fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
                try:
                    while True:
                        os.write(fd, bytes(4096))
                except OSError:
                    os.close(fd)
                signed = cli("cmd", "sign", "--key", str(directory / "platform.key"), "--config", str(config),
                             "--id", "bench-open", "open", "--arg", "gate=main").stdout.strip()
                sent = time.perf_counter()
                platform.publish(f"{TOPIC_ROOT}/cmd/open", signed)
                until(lambda: results(platform, "bench-open"))
                answered = time.perf_counter() - sent
                time.sleep(full_seconds)
                freed = time.perf_counter()
                filler.unlink()
                db = f"file:{state / 'events.db'}?mode=ro"

                def granted_rows() -> int:
                    with sqlite3.connect(db, uri=True) as conn:
                        return int(conn.execute("SELECT count(*) FROM events WHERE type='gate.granted'").fetchone()[0])

                until(lambda: granted_rows() == 1)
                in_sqlite = time.perf_counter() - freed
                until(lambda: platform.on(f"{TOPIC_ROOT}/events/gate.granted"))
                at_broker = time.perf_counter() - freed
                until(lambda: call(state, {"cmd": "status"})["faults"] == {})
                cleared = time.perf_counter() - freed
                daemon.stop()
                output = daemon.output()
                publishes = Counter(json.loads(payload)["id"] for topic, payload, _ in platform.snapshot()
                                    if "/events/" in topic)
                print(f"daemon, disk full {full_seconds:.0f} s: signed open answered in {answered * 1000:.0f} ms "
                      f"({'opened' if results(platform, 'bench-open')[0]['ok'] else 'REFUSED'}); after space was "
                      f"freed: gate.granted in SQLite {in_sqlite * 1000:.0f} ms, at the broker "
                      f"{at_broker * 1000:.0f} ms, faults cleared {cleared * 1000:.0f} ms; tracebacks "
                      f"{output.count('Traceback')}, most publishes of one event {max(publishes.values())}")
            finally:
                daemon.kill()
                platform.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as tmp:
        window_figures(Path(tmp))
        memory_figure()
        recovery_figures(Path(tmp))
        daemon_recovery_figure(Path(tmp))


if __name__ == "__main__":
    main()
