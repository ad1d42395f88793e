"""Parking counter (agent/parking.py) on its own: what a pass does to the count, and what it says."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config_parking import CarParkConfig
from agent.parking import Parking


class Events(list[tuple[str, str | None, dict[str, Any]]]):
    def __call__(self, kind: str, device: str | None, details: dict[str, Any]) -> None:
        self.append((kind, device, details))


@pytest.fixture
def lot(tmp_path: Path):
    events = Events()
    parking = Parking([CarParkConfig(name="lot", capacity=2, entries=["car-in"], exits=["car-out"])],
                      tmp_path / "parking.db", events)
    yield parking, events
    parking.close()


def test_an_exit_at_zero_is_reported_as_drift_and_a_normal_exit_is_not(
    lot, caplog: pytest.LogCaptureFixture,
) -> None:
    parking, events = lot
    parking.vehicle_passed("car-in")
    parking.vehicle_passed("car-out")  # a normal exit, 1 -> 0: the count took it, nothing to say
    parking.vehicle_passed("elsewhere")  # not a lane of any car park: nothing
    assert parking.occupied("lot") == 0 and events == []
    # A car that came in before the agent counted (or whose entry the loop missed) leaves: the count
    # stays 0, but the platform must learn that it has drifted.
    with caplog.at_level(logging.WARNING, logger="edge_agent.parking"):
        parking.vehicle_passed("car-out")
    assert parking.occupied("lot") == 0
    assert events == [("parking.drift", "lot", {"before": 0, "step": -1, "after": 0, "barrier": "car-out"})]
    assert "drifted" in caplog.text


def test_an_entry_at_the_upper_clamp_is_reported_as_drift(lot) -> None:
    parking, events = lot
    parking.correct("lot", 4, "test")  # capacity * 2, the most the count holds
    events.clear()
    parking.vehicle_passed("car-in")
    assert parking.occupied("lot") == 4
    assert events == [("parking.drift", "lot", {"before": 4, "step": 1, "after": 4, "barrier": "car-in"})]



def test_full_and_available_follow_the_count_when_entries_and_exits_race(lot) -> None:
    """Two lanes at once around capacity: the events must alternate as the count crossed it."""
    parking, events = lot
    parking.correct("lot", 1, "test")
    events.clear()
    record = parking.emit
    pauses = random.Random(5)

    def slow_emit(kind: str, device: str | None, details: dict[str, Any]) -> None:
        time.sleep(pauses.uniform(0, 0.002))  # a busy moment between counting and saying so
        record(kind, device, details)

    parking.emit = slow_emit

    def drive(barrier: str) -> None:
        for _ in range(300):
            parking.vehicle_passed(barrier)

    lanes = [threading.Thread(target=drive, args=(barrier,)) for barrier in ("car-in", "car-out")]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    crossings = [kind for kind, _, _ in events if kind in ("parking.full", "parking.available")]
    assert all(a != b for a, b in itertools.pairwise(crossings)), crossings
    if crossings:
        assert crossings[0] == "parking.full"


def test_a_car_through_a_lane_the_wrong_way_counts_the_other_way(lot) -> None:
    """Told by a barrier's approach loop: out by an entry lane (a fire holds every arm up), in by an exit."""
    parking, _events = lot
    parking.vehicle_passed("car-in")
    parking.vehicle_passed("car-in")
    parking.vehicle_passed("car-in", against=True)
    assert parking.occupied("lot") == 1
    parking.vehicle_passed("car-out", against=True)
    assert parking.occupied("lot") == 2
