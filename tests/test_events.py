"""The event model (ids, time, privacy) and the SQLite store (WAL, outbox, purge, follow)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.event_store import EventStore
from agent.events import Event, new_event_id, parse_time


def event(type_: str = "door.opened", **details) -> Event:
    return Event(node="n1", type=type_, device="main", details=details)


def test_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids)  # version nibble


def test_timestamp_is_utc_rfc3339() -> None:
    data = event().model_dump(mode="json")
    assert data["ts"].endswith("Z") and datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))


@pytest.mark.parametrize("details", [
    {"name": "Wang Fang"}, {"display_name": "x"}, {"photo": "abc"}, {"image": None},
    {"person": {"name": "Li"}}, {"encoding": [0.1] * 128}, {"vector": [0.1] * 128},
    {"blob": b"\xff\xd8\xff"}, {"note": "A" * 5000},
])
def test_personal_data_is_refused_by_the_model(details: dict) -> None:
    with pytest.raises(ValidationError):
        event(**details)


def test_allowed_details() -> None:
    ok = event("gate.granted", person="R-0203-1", method="face", distance=0.41, box=[1, 2, 3, 4])
    assert ok.details["person"] == "R-0203-1"


def test_parse_time() -> None:
    assert parse_time("2026-11-21T05:00:00Z") == datetime(2026, 11, 21, 5, tzinfo=UTC)
    assert abs((datetime.now(UTC) - parse_time("2h")) - timedelta(hours=2)) < timedelta(seconds=5)


def test_store_is_wal_and_durable(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_append_query_and_outbox(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    stored = [store.append(event("door.opened" if i % 2 else "smoke.alarm", i=i)) for i in range(10)]
    assert [s.seq for s in stored] == list(range(1, 11))
    assert len(store.query(types=["door"])) == 5
    assert len(store.query(types=["smoke.alarm"])) == 5
    assert store.pending_count() == 10
    store.mark_delivered([1, 2, 3])
    pending = store.pending(limit=100)
    assert [p.seq for p in pending] == list(range(4, 11))
    fourth = stored[3].event.ts
    assert store.oldest_pending_ts() == fourth.replace(microsecond=fourth.microsecond // 1000 * 1000)
    assert store.pending(limit=2, after_seq=5)[0].seq == 6
    store.close()


def _write_and_die(path: str, count: int) -> None:
    store = EventStore(Path(path))
    for i in range(count):
        store.append(event(i=i))
    os._exit(0)  # no close, no checkpoint: like pulling the plug on the process


def test_events_survive_an_abrupt_exit(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    process = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(str(path), 200))
    process.start()
    process.join(30)
    store = EventStore(path)
    assert store.last_seq() == 200 and store.pending_count() == 200
    store.close()


def test_purge_keeps_undelivered_when_an_uplink_needs_them(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    old = datetime.now(UTC) - timedelta(days=40)
    for i in range(4):
        store.append(Event(node="n1", type="door.opened", ts=old, details={"i": i}))
    store.append(event())
    store.mark_delivered([1, 2])
    assert store.purge(30, keep_undelivered=True) == 2
    assert store.pending_count() == 3
    assert store.purge(30, keep_undelivered=False) == 2
    assert store.last_seq() == 5 and len(store.query()) == 1
    store.close()


def test_follow_sees_events_from_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = EventStore(path)
    writer.append(event())
    reader = EventStore(path, readonly=True)
    stop = threading.Event()
    seen: list[int] = []
    # Read where to follow from before the writer goes on: inside the thread, the writer's next
    # append could land first and be skipped (seen once as [3] on a loaded machine).
    start = reader.last_seq()

    def follow() -> None:
        for stored in reader.follow(start, poll=0.05, stop=stop):
            seen.append(stored.seq)

    thread = threading.Thread(target=follow)
    thread.start()
    writer.append(event())
    writer.append(event("smoke.alarm"))
    deadline = time.monotonic() + 3
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(2)
    assert seen == [2, 3]
    with pytest.raises(sqlite3.OperationalError):
        reader.append(event())
    writer.close()


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    threads = [threading.Thread(target=lambda: [store.append(event()) for _ in range(100)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.last_seq() == 800 and len({s.event.id for s in store.query()}) == 800
    store.close()


def test_requeue_recently_delivered_but_not_dropped(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    for i in range(4):
        store.append(event(i=i))
    store.mark_delivered([1, 2], at=datetime.now(UTC) - timedelta(minutes=5))
    store.mark_delivered([3])
    store.db.execute("UPDATE events SET delivered_at = 'dropped:2026-11-21T05:00:00Z' WHERE seq = 4")
    assert store.requeue_delivered_since(datetime.now(UTC) - timedelta(seconds=10)) == 1
    assert [s.seq for s in store.pending()] == [3]
    store.close()
