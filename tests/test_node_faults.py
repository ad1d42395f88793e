"""NodeFaults: one event and one log line per fault, repeats rate-limited, one recovery."""

from __future__ import annotations

import logging

from agent.node_faults import NodeFaults


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_fault_is_reported_once_then_rate_limited_and_recovers_once(caplog) -> None:
    events: list[tuple[str, dict]] = []
    clock = Clock()
    faults = NodeFaults(lambda kind, device, details: events.append((kind, details)), clock=clock)
    caplog.set_level(logging.ERROR, logger="edge_agent.faults")
    assert faults.report("storage", "disk full") is True
    for _ in range(500):  # a full disk retried in a loop
        clock.now += 0.05
        assert faults.report("storage", "disk full") is False
    assert [kind for kind, _ in events] == ["node.fault"]
    assert events[0][1] == {"component": "storage", "reason": "disk full"}
    assert len(caplog.records) == 1  # 25 s of repeats: within the minute, no second line
    clock.now += 60
    faults.report("storage", "disk full")
    assert len(caplog.records) == 2 and "more time(s)" in caplog.records[1].getMessage()
    assert faults.active() == {"storage": "disk full"} and faults.failing("storage")
    assert faults.clear("storage") is True
    assert faults.clear("storage") is False
    assert [kind for kind, _ in events] == ["node.fault", "node.recovered"]
    assert events[1][1]["component"] == "storage" and events[1][1]["seconds"] >= 85
    assert faults.active() == {}


def test_an_emit_that_fails_does_not_raise() -> None:
    def broken(*_args):
        raise OSError("no space left on device")

    faults = NodeFaults(broken)
    assert faults.report("storage", "x" * 500) is True
    assert len(faults.active()["storage"]) == 200
