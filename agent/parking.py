"""Parking occupancy: entry and exit barriers of one car park share a counter with a capacity.

A car counts when it has passed: the barrier was raised for it and its safety loop has cleared. A
grant alone does not count (the driver may turn away).  A barrier with an approach loop also tells a
car that backed out (not counted) and one that drove through against its lane (counted the other
way: in a fire every barrier stays up, and cars leave by the entry lanes too).  Counts live in SQLite
beside the events, so they survive restarts and power cuts; a technician corrects drift (a car that
tailgated, a loop that missed one) from the CLI.  A pass the count cannot take (an exit at 0) is
reported as ``parking.drift``.  A count the disk refuses (a full SD card) is kept in memory, as a
storage fault, and written when the disk takes it again: cars are counted on a full disk too.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.config_parking import CarParkConfig
from agent.sqlite_files import StorageReports, open_database, why

log = logging.getLogger("edge_agent.parking")

Emit = Callable[[str, str | None, dict[str, Any]], object]
PARKING_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "car_parks" ("name" TEXT PRIMARY KEY, "occupied" INTEGER, "updated" TEXT)',
)


class Parking:
    def __init__(self, car_parks: list[CarParkConfig], path: Path, emit: Emit,
                 reports: StorageReports | None = None) -> None:
        self.emit = emit
        self._lock = threading.Lock()
        self.configure(car_parks)
        # A damaged file is moved aside and its counts salvaged (agent.sqlite_files); one that cannot be
        # used at all leaves the counts in memory, as a node fault, rather than stop the gates.
        self._path = Path(path)
        self._reports = reports or StorageReports()
        opened = open_database(self._path, PARKING_SCHEMA, self._reports)
        self.db = sqlite_utils.Database(opened.conn)
        self._retry_file = opened.retry  # a file that would not open (a full disk at start) is tried again
        self._unsaved: dict[str, int] = {}  # counts the disk refused, newest first in line to be written

    def configure(self, car_parks: list[CarParkConfig]) -> None:
        """The car parks, and which barrier counts +1 or -1 for which (again after a config reload)."""
        self.car_parks = {park.name: park for park in car_parks}
        lanes: dict[str, tuple[CarParkConfig, int]] = {}
        for park in car_parks:
            lanes.update({lane: (park, +1) for lane in park.entries})
            lanes.update({lane: (park, -1) for lane in park.exits})
        self._lane = lanes

    def occupied(self, name: str) -> int:
        if name in self._unsaved:
            return self._unsaved[name]
        row = self.db.execute("SELECT occupied FROM car_parks WHERE name = ?", [name]).fetchone()
        return int(row[0]) if row else 0

    def state(self) -> dict[str, dict[str, Any]]:
        return {f"parking/{name}": self._state(park) for name, park in self.car_parks.items()}

    def _state(self, park: CarParkConfig) -> dict[str, Any]:
        occupied = self.occupied(park.name)
        return {"capacity": park.capacity, "occupied": occupied, "spaces_left": max(0, park.capacity - occupied),
                "full": occupied >= park.capacity}

    def is_exit(self, barrier: str) -> bool:
        return barrier in self._lane and self._lane[barrier][1] < 0

    def unread_exit_wait(self, barrier: str) -> float | None:
        """How long a car may wait at exit ``barrier`` unread before it is let out (None: never)."""
        lane = self._lane.get(barrier)
        if lane is None or lane[1] > 0:
            return None
        return lane[0].let_out_unread_after_seconds

    def may_enter(self, barrier: str, visitor: bool) -> bool:
        """Asked before raising an entry barrier for a whitelisted car."""
        lane = self._lane.get(barrier)
        if lane is None or lane[1] < 0:
            return True
        park = lane[0]
        if self.occupied(park.name) < park.capacity:
            return True
        return park.admit_residents_when_full and not visitor

    def vehicle_passed(self, barrier: str, against: bool = False) -> None:
        """A car drove through ``barrier``; ``against``: the wrong way (out by an entry, in by an exit)."""
        lane = self._lane.get(barrier)
        if lane is None:
            return
        park, step = lane
        if against:
            step = -step
        # Events are emitted under the lock (emit only queues them), so an entry and an exit at
        # once cannot record parking.full and parking.available in the opposite order to the counts.
        with self._lock:
            before = self.occupied(park.name)
            # Never below zero (a car that came in before the agent counted) nor far beyond capacity.
            after = min(max(0, before + step), park.capacity * 2)
            self._store(park.name, after)
            if after != before + step:
                # The clamp hid a pass: the count has drifted from the cars inside (a missed entry, a
                # missed exit).  Said upstream, or the platform never learns the count needs correcting.
                log.warning("car park %s: %s at %s counted %+d, clamped to %d (count drifted)",
                            park.name, barrier, before, step, after)
                self.emit("parking.drift", park.name,
                          {"before": before, "step": step, "after": after, "barrier": barrier})
            self._announce(park, before, after)

    def correct(self, name: str, occupied: int, source: str) -> dict[str, Any]:
        park = self.car_parks.get(name)
        if park is None:
            raise ValueError(f"no car park named {name!r} (configured: {', '.join(self.car_parks) or 'none'})")
        if not 0 <= occupied <= park.capacity * 2:
            raise ValueError(f"occupied must be between 0 and {park.capacity * 2}")
        with self._lock:
            before = self.occupied(name)
            self._store(name, occupied)
            self.emit("parking.corrected", name, {"before": before, "after": occupied, "source": source})
            self._announce(park, before, occupied)
        return self._state(park)

    def close(self) -> None:
        self.db.conn.close()

    def flush(self) -> None:
        """Write the counts the disk refused, and try a file that would not open; the supervisor calls
        it every few seconds."""
        with self._lock:
            self._flush()

    def _store(self, name: str, occupied: int) -> None:
        self._unsaved[name] = occupied
        self._flush()

    def _flush(self) -> None:
        if self._retry_file:
            opened = open_database(self._path, PARKING_SCHEMA, StorageReports())  # quiet: said once already
            if opened.in_memory:
                opened.conn.close()
            else:
                kept = dict(self.db.execute("SELECT name, occupied FROM car_parks").fetchall())
                self._unsaved = {**kept, **self._unsaved}
                self.db.conn.close()
                self.db = sqlite_utils.Database(opened.conn)
                self._retry_file = False
                self._reports.usable_again(self._path, f"{self._path}: opened again; the counts kept in memory "
                                                       "are written to it")
        if not self._unsaved:
            return
        stamp = datetime.now(UTC).isoformat()
        conn = self.db.conn
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO car_parks (name, occupied, updated) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                "SET occupied = excluded.occupied, updated = excluded.updated",
                [(name, occupied, stamp) for name, occupied in self._unsaved.items()])
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # a full disk, a card that does not answer
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._reports.unhealable(self._path, f"{self._path.name} refuses writes ({why(exc)}): counts kept in "
                                                 "memory and written when it takes them")
            return
        had_failed = self._reports.failing(self._path)
        self._unsaved.clear()
        if had_failed and not self._retry_file:
            self._reports.usable_again(self._path, f"{self._path}: counts written again")

    def _announce(self, park: CarParkConfig, before: int, after: int) -> None:
        if before < park.capacity <= after:
            self.emit("parking.full", park.name, {"capacity": park.capacity, "occupied": after})
        elif after < park.capacity <= before:
            self.emit("parking.available", park.name, {"capacity": park.capacity, "occupied": after})
