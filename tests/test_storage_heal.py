"""Storage that heals: real SQLite files damaged for real (truncated, header scribbled, pages
overwritten, emptied, a killed writer's WAL deleted), for events.db, parking.db and the replay cache;
and the real daemon started on a damaged events.db, delivering what was readable to a real mosquitto.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.config_parking import CarParkConfig
from agent.event_store import UNREADABLE, EventStore
from agent.events import Event
from agent.node_faults import NodeFaults
from agent.parking import Parking
from agent.signing import ReplayCache
from agent.sqlite_files import StorageReports
from tests.agent_configs import node_config
from tests.mqtt_broker import Collector, Mosquitto
from tests.test_uplink_daemon import Daemon, mqtt_section
from tests.test_uplink_publish import wait_until

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096  # SQLite's default page size, which every file here has


def write_events(path: Path, count: int) -> list[str]:
    """``count`` events appended as the recorder does, then closed cleanly; returns their ids in order."""
    store = EventStore(path)
    ids = [store.append(Event(node="n1", type="door.opened", device="main", details={"index": i})).event.id
           for i in range(count)]
    store.close()
    return ids


def scribble(path: Path, offset: int, length: int, seed: int = 7) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(random.Random(seed).randbytes(length))


def damage_two_middle_pages(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    assert pages > 20, "the file should be large enough to have a middle"
    scribble(path, (pages // 2) * PAGE, 2 * PAGE)


def damaged_copies(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(f"{path.name}.damaged-*") if not p.name.endswith(("-wal", "-shm")))


def stored_ids(store: EventStore) -> list[str]:
    return [stored.event.id for stored in store.query()]


# --- events.db damaged before the agent opens it ------------------------------------------------

def test_a_truncated_events_db_is_moved_aside_and_every_readable_event_salvaged(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    ids = write_events(db, 3000)
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size * 2 // 5)

    store = EventStore(db)  # before: "database disk image is malformed", edge-agent run exits 1

    [healed] = store.reports.healed_files
    salvaged = stored_ids(store)
    assert 0 < len(salvaged) < 3000 and salvaged == ids[:len(salvaged)]  # the readable rows, intact, in order
    assert healed.recovered == len(salvaged) and healed.lost == 3000 - len(salvaged)  # counted, thanks to .seq
    assert healed.damaged_copy == damaged_copies(db)[0] and healed.damaged_copy.stat().st_size > 0
    assert store.append(Event(node="n1", type="door.closed")).seq == 3001  # no seq used twice
    store.close()


def test_a_scribbled_header_loses_no_event(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    ids = write_events(db, 2000)
    scribble(db, 0, 100)  # the 100-byte database header: "file is not a database"

    store = EventStore(db)

    [healed] = store.reports.healed_files
    assert stored_ids(store) == ids and healed.lost == 0 and healed.reason == "file is not a database"
    store.close()


def test_two_damaged_pages_found_at_open_cost_only_their_rows(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    ids = write_events(db, 5000)
    damage_two_middle_pages(db)

    store = EventStore(db)

    [healed] = store.reports.healed_files
    salvaged = stored_ids(store)
    assert 4800 < len(salvaged) < 5000 and set(salvaged) <= set(ids)  # two pages hold ~40 events each
    assert healed.lost == 5000 - len(salvaged)
    assert [s.event.id for s in store.pending(limit=10_000)] == salvaged  # the outbox has every one
    store.close()


DAMAGE_KINDS = ("pages", "zeros", "truncated", "header")


def damage(path: Path, kind: str, rnd: random.Random) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        if kind == "pages":  # whole pages of garbage, anywhere (the root and schema pages too)
            for _ in range(rnd.randint(1, 6)):
                handle.seek(rnd.randrange(size // PAGE) * PAGE)
                handle.write(rnd.randbytes(PAGE))
        elif kind == "zeros":  # a run of zeros across page boundaries, as a card that lost a block
            handle.seek(rnd.randrange(size))
            handle.write(bytes(rnd.randrange(1, 20_000)))
        elif kind == "truncated":
            handle.truncate(rnd.randrange(size))
        else:
            handle.write(rnd.randbytes(rnd.randint(1, 100)))


@pytest.mark.parametrize("seed", range(24))
def test_any_damage_leaves_a_working_log_and_every_missing_event_counted(tmp_path: Path, seed: int,
                                                                        written_log: Path) -> None:
    rnd = random.Random(seed)
    kind = DAMAGE_KINDS[seed % len(DAMAGE_KINDS)]
    for file in written_log.parent.iterdir():
        shutil.copyfile(file, tmp_path / file.name)
    db = tmp_path / "events.db"
    originals = {stored.event.id: stored.seq for stored in EventStore(written_log, readonly=True).query()}
    damage(db, kind, rnd)

    store = EventStore(db)

    pending, kept = store.pending(limit=10_000), store.query()
    assert [p.event.id for p in pending] == [k.event.id for k in kept]  # the outbox has every readable event
    assert all(originals[k.event.id] == k.seq for k in kept if k.event.id in originals)
    missing = len(originals) - len({k.event.id for k in kept} & set(originals))
    if missing:  # never silent: reported, and counted (a garbled cell may count one more)
        [healed] = store.reports.healed_files
        rows = store.db.execute("SELECT count(*) FROM events").fetchone()[0]
        assert healed.lost is not None and rows + healed.lost >= len(originals)
    assert store.append(Event(node="n1", type="door.closed")).seq > max(originals.values())
    store.close()


@pytest.fixture(scope="module")
def written_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("log") / "events.db"
    write_events(db, 2000)
    return db


# --- events.db damaged while the agent runs ------------------------------------------------------

def test_a_damaged_page_met_while_running_heals_and_never_stalls_the_outbox(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = EventStore(db)
    ids = [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(5000)]
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file, where the card fails
    damage_two_middle_pages(db)
    # Another connection's commit (as the uplink's drop_oldest makes) makes the store read from disk again.
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("UPDATE events SET delivered_at = NULL WHERE seq = 5000")
    other.close()

    pending = store.pending(limit=10_000)  # before: DatabaseError, the uplink reconnect-looped for ever

    [healed] = store.reports.healed_files
    assert healed.damaged_copy is not None and healed.damaged_copy.exists()
    assert 4800 < len(pending) < 5000 and [p.event.id for p in pending] == [i for i in ids if i in
                                                                            {p.event.id for p in pending}]
    assert healed.lost == 5000 - len(pending)
    new = store.append(Event(node="n1", type="door.closed"))  # new events go on too, after every old seq
    assert new.seq == 5001 and store.pending(limit=10_000)[-1].event.id == new.event.id
    store.mark_delivered([p.seq for p in pending])
    assert [p.seq for p in store.pending()] == [5001]
    store.close()


def test_the_uplink_delivers_around_a_page_damaged_while_it_runs(tmp_path: Path) -> None:
    """The real Uplink over a store whose file is damaged under it: the readable rows and new events arrive."""
    from agent.config import NodeConfig
    from agent.config_mqtt import MqttConfig
    from agent.uplink import Uplink
    from tests.mqtt_broker import RecordingTarget

    db = tmp_path / "events.db"
    store = EventStore(db)
    ids = [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(5000)]
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_two_middle_pages(db)
    other = sqlite3.connect(db, isolation_level=None)  # its commit makes the store read the pages again
    other.execute("UPDATE events SET delivered_at = NULL WHERE seq = 5000")
    other.close()
    node = NodeConfig(site="s1", building="b7", node_id="n1")
    with Mosquitto(tmp_path / "broker") as broker:
        platform = Collector(broker.port, ["community/s1/b7/n1/events/#"])
        config = MqttConfig(host="127.0.0.1", port=broker.port, backoff={"initial": 0.2, "max": 1.0})
        uplink = Uplink(config, node, store, RecordingTarget(),
                        lambda kind, device, details: store.append(Event(node="n1", type=kind, device=device,
                                                                         details=details)))
        uplink.start()  # before: the first outbox read raised, and every reconnect raised again
        try:
            def delivered() -> set[str]:
                return {json.loads(payload)["id"] for _, payload, _ in platform.snapshot()}

            wait_until(lambda: store.pending_count() == 0, timeout=60)
            assert store.reports.healed_files[0].damaged_copy is not None
            readable = set(stored_ids(store)) & set(ids)
            assert 4800 < len(readable) < 5000
            wait_until(lambda: readable <= delivered(), timeout=60)
            new = store.append(Event(node="n1", type="door.closed")).event.id
            wait_until(lambda: new in delivered(), timeout=30)
            assert uplink.health()["connected"]
        finally:
            uplink.stop()
            platform.close()
    store.close()


def test_a_garbled_row_is_set_aside_and_the_outbox_goes_past_it(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    write_events(db, 10)
    other = sqlite3.connect(db, isolation_level=None)  # a bit flip that left the page readable
    other.execute("UPDATE events SET details = '{\"index\": 4' WHERE seq = 5")
    other.close()
    store = EventStore(db)

    pending = store.pending()

    assert [p.seq for p in pending] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    delivered_at = store.db.execute("SELECT delivered_at FROM events WHERE seq = 5").fetchone()[0]
    assert delivered_at.startswith(UNREADABLE)
    store.close()


def test_a_reader_following_the_log_follows_the_healed_file(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = EventStore(db)
    for index in range(3000):
        store.append(Event(node="n1", type="door.opened", details={"i": index}))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    reader = EventStore(db, readonly=True)  # edge-agent events --follow
    stop = threading.Event()
    follow = reader.follow(store.last_seq(), poll=0.05, stop=stop)
    damage_two_middle_pages(db)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("UPDATE events SET delivered_at = NULL WHERE seq = 3000")
    other.close()
    assert store.pending(limit=5000) and store.reports.healed_files  # healed: a new file under the same name

    new = store.append(Event(node="n1", type="door.closed"))

    deadline = threading.Timer(30, stop.set)  # a reader left on the moved-aside file would wait for ever
    deadline.start()
    followed = next(follow, None)
    deadline.cancel()
    assert followed is not None and followed.event.id == new.event.id
    follow.close()
    reader.close()
    store.close()


# --- rows gone without damage: emptied file, deleted WAL ----------------------------------------

def test_an_emptied_events_db_is_reported_with_the_count_lost(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    write_events(db, 300)
    db.write_bytes(b"")

    store = EventStore(db)  # before: a fresh empty log, nothing said

    [healed] = store.reports.healed_files
    assert healed.lost == 300 and healed.recovered == 0 and healed.damaged_copy is None
    assert "seq 300" in healed.reason
    assert store.append(Event(node="n1", type="door.closed")).seq == 301
    store.close()


WRITER = r"""
import sys, time
from pathlib import Path
from agent.event_store import EventStore
from agent.events import Event
store = EventStore(Path(sys.argv[1]))
store.db.execute("PRAGMA wal_autocheckpoint=0")  # no checkpoint racing the kill: the WAL keeps every row
index = 0
while True:
    index += 1
    store.append(Event(node="n1", type="door.opened", details={"index": index}))
    if index % 100 == 0:
        print(index, flush=True)
"""


def test_the_wal_of_a_killed_writer_deleted_is_reported_with_the_count_lost(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    mark = Path(f"{db}.seq")

    def main_file_max() -> int:  # what the main file holds without its WAL
        conn = sqlite3.connect(f"{db.as_uri()}?immutable=1", uri=True)
        try:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        except sqlite3.DatabaseError:
            return 0
        finally:
            conn.close()

    def wal_only() -> bool:
        return mark.exists() and int(mark.read_text().split()[0]) > main_file_max() + 50

    try:
        # Killed once the high-water mark knows of events that are only in the WAL. Frozen first and
        # checked again: a checkpoint between the look and the kill would have moved them to the file.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            wait_until(wal_only, timeout=60)
            writer.send_signal(signal.SIGSTOP)
            if wal_only():
                break
            writer.send_signal(signal.SIGCONT)
        else:
            pytest.fail("the writer never left events in its WAL alone")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(5)
    known = int(mark.read_text().split()[0])
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink(missing_ok=True)

    store = EventStore(db)  # before: the rows in the WAL were gone and nothing said so

    [healed] = store.reports.healed_files
    kept = store.last_seq()
    assert healed.lost == known - kept > 0 and healed.recovered == kept
    assert store.append(Event(node="n1", type="door.closed")).seq == known + 1
    store.close()


def test_events_db_deleted_under_the_running_agent_is_written_back(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = EventStore(db)
    ids = [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(100)]
    db.unlink()  # a technician's rm: the agent's connection goes on writing into a file no one can open
    ids += [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(10)]
    store.close()  # before: gone for good at the restart

    assert [s.event.id for s in EventStore(db, readonly=True).query()] == ids
    [healed] = store.reports.healed_files
    assert "deleted or replaced" in healed.reason and healed.recovered == 110 and healed.lost == 0


def test_an_older_copy_put_back_under_the_running_agent_does_not_roll_the_log_back(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = EventStore(db)
    ids = [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(50)]
    backup = tmp_path / "backup.db"
    source = sqlite3.connect(db)
    with sqlite3.connect(backup) as target:
        source.backup(target)
    source.close()
    ids += [store.append(Event(node="n1", type="door.opened", details={"i": i})).event.id for i in range(50)]
    os.replace(backup, db)  # the backup of 50 events put back while the agent runs
    ids.append(store.append(Event(node="n1", type="door.closed")).event.id)
    store.close()

    assert [s.event.id for s in EventStore(db, readonly=True).query()] == ids
    [kept] = [p for p in tmp_path.glob("events.db.replaced-*") if not p.name.endswith(("-wal", "-shm"))]
    assert sqlite3.connect(kept).execute("SELECT count(*) FROM events").fetchone()[0] == 50


# --- parking.db and the replay cache -------------------------------------------------------------

def test_a_scribbled_parking_db_keeps_its_counts_and_a_garbage_one_starts_empty(tmp_path: Path) -> None:
    parks = [CarParkConfig(name=f"lot{i}", capacity=50, entries=[f"in{i}"]) for i in range(3)]
    db = tmp_path / "parking.db"
    parking = Parking(parks, db, lambda *_: None)
    for index in range(3):
        for _ in range(index + 4):
            parking.vehicle_passed(f"in{index}")
    parking.close()
    scribble(db, 0, 100)

    parking = Parking(parks, db, lambda *_: None)  # before: exit 1, a restart loop
    assert [parking.occupied(f"lot{i}") for i in range(3)] == [4, 5, 6]
    assert len(damaged_copies(db)) == 1
    parking.close()

    db.write_bytes(random.Random(3).randbytes(20_000))
    reports = StorageReports()
    parking = Parking(parks, db, lambda *_: None, reports)
    parking.vehicle_passed("in0")
    assert parking.occupied("lot0") == 1 and len(damaged_copies(db)) == 2
    [healed] = reports.healed_files
    assert healed.recovered == 0 and healed.lost is None and healed.reason == "file is not a database"
    parking.close()


def test_a_damaged_replay_cache_still_refuses_the_commands_it_had_seen(tmp_path: Path) -> None:
    db = tmp_path / "seen_commands.sqlite"
    cache = ReplayCache(db, keep_seconds=3600)
    for index in range(500):
        assert cache.remember(f"cmd-{index}", issued_at=1e9 + index, now=1e9 + 600)
    cache.close()
    scribble(db, 0, 100)

    cache = ReplayCache(db, keep_seconds=3600)  # before: exit 1, a restart loop

    assert len(cache) == 500 and len(damaged_copies(db)) == 1
    assert not cache.remember("cmd-42", issued_at=1e9 + 42, now=1e9 + 600)  # still a replay
    assert cache.remember("cmd-new", issued_at=1e9 + 600, now=1e9 + 600)
    cache.close()

    db.write_bytes(b"not a database at all" * 100)
    reports = StorageReports()
    cache = ReplayCache(db, keep_seconds=3600, reports=reports)
    assert cache.remember("cmd-1", issued_at=1e9, now=1e9 + 600) and len(damaged_copies(db)) == 2
    assert reports.healed_files[0].damaged_copy == damaged_copies(db)[-1]
    cache.close()


def test_a_file_that_cannot_be_used_at_all_runs_in_memory_as_a_node_fault(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    db.mkdir()  # not a file: nothing to move aside and salvage, SQLite cannot open it
    store = EventStore(db)  # before: "unable to open database file", exit 1
    assert store.in_memory
    assert store.append(Event(node="n1", type="door.opened")).seq == 1  # the node keeps recording

    emitted: list[tuple[str, dict]] = []
    faults = NodeFaults(lambda kind, device, details: emitted.append((kind, details)))
    store.reports.attach(lambda *_: None, faults)
    assert "kept in memory" in faults.active()["storage/events"]
    assert emitted[0][0] == "node.fault" and emitted[0][1]["component"] == "storage/events"
    store.close()


def test_edge_agent_events_on_a_damaged_file_says_what_to_do_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(node_config(tmp_path / "state"))
    db = tmp_path / "state" / "events.db"
    write_events(db, 50)
    scribble(db, 0, 100)
    before = db.read_bytes()

    result = subprocess.run([sys.executable, "-m", "agent.cli", "events", "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "is damaged" in result.stderr and "docs/storage.md" in result.stderr
    assert db.read_bytes() == before  # a reader never moves the agent's file


# --- the real daemon on a damaged events.db, delivering to a real mosquitto --------------------

def test_the_daemon_on_a_damaged_events_db_keeps_running_and_delivers_the_readable_events(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "events.db"
    ids = write_events(db, 5000)  # recorded while the broker was unreachable: all still pending
    damage_two_middle_pages(db)
    with Mosquitto(tmp_path / "broker") as broker:
        root = "community/s1/b1/n1"
        platform = Collector(broker.port, [f"{root}/events/#"])
        config = tmp_path / "agent.yaml"
        config.write_text(node_config(state) + mqtt_section(broker.port))
        daemon = Daemon(config, tmp_path / "daemon.log")
        try:
            def received() -> list[dict]:
                return [json.loads(payload) for topic, payload, _ in platform.snapshot()]

            def delivered_old() -> set[str]:
                return {event["id"] for event in received()} & set(ids)

            wait_until(lambda: any(e["type"] == "storage.recovered" for e in received()), timeout=60)
            recovered = next(e for e in received() if e["type"] == "storage.recovered")["details"]
            assert recovered["file"] == "events.db" and recovered["damaged_copy"].startswith("events.db.damaged-")
            readable = 5000 - recovered["lost"]
            assert 4800 < readable < 5000 and recovered["recovered"] == readable
            wait_until(lambda: len(delivered_old()) == readable, timeout=120)  # every readable old event

            status = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--config", str(config)],
                                    cwd=REPO, capture_output=True, text=True, timeout=30)
            assert status.returncode == 0 and "gate/main" in status.stdout
            daemon.process.send_signal(signal.SIGHUP)  # a new event, recorded and delivered after the heal
            wait_until(lambda: any(e["type"] == "agent.reloaded" for e in received()), timeout=60)
            assert daemon.process.poll() is None
            code, _ = daemon.stop()
            assert code == 0
            assert "Traceback" not in daemon.output() and "was damaged" in daemon.output()
        finally:
            daemon.kill()
            platform.close()
    assert damaged_copies(db) and os.path.getsize(damaged_copies(db)[0]) > 0


def test_a_heal_that_finds_no_room_puts_the_damaged_file_back_for_the_next_start(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    db = small / "events.db"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        ids = write_events(db, 3000)  # about 0.8 MB once closed
        stats = os.statvfs(small)
        filler = small / "filler"
        with filler.open("wb") as handle:  # leave 300 kB: less than the salvaged copy needs
            handle.write(bytes(stats.f_bavail * stats.f_frsize - 300 * 1024))
        scribble(db, 0, 100)

        store = EventStore(db)  # cannot heal now: in memory, loudly, the damaged file back in its place

        assert store.in_memory and db.exists() and not damaged_copies(db)
        store.close()
        filler.unlink()  # the disk has room again: the next start heals it
        store = EventStore(db)
        assert stored_ids(store) == ids and not store.in_memory
        store.close()
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=True)
