"""The one event model, and its privacy rules.

An event says what happened at which device, never who a person *is* beyond a pseudonymous id:
the model itself refuses images, face templates and names, so no code path can send them upstream
by accident.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

EVENT_TYPES: dict[str, str] = {
    "gate.granted": "a gate was unlocked for someone (exit button, face, plate, remote open)",
    "door.opened": "a door contact opened",
    "door.closed": "a door contact closed",
    "door.held_open": "a door stayed open longer than held_open_seconds",
    "door.forced": "a door opened while locked, without a grant or exit press",
    "smoke.alarm": "a smoke detector confirmed an alarm; exits released",
    "smoke.cleared": "a smoke detector's alarm input went quiet",
    "smoke.fault": "a smoke detector reported a fault, or its fault cleared",
    "camera.fault": "a camera stopped delivering frames or could not be opened",
    "camera.recovered": "a camera delivers frames again",
    "agent.started": "the agent started (or reloaded its configuration)",
    "agent.stopped": "the agent stopped cleanly",
    "alarm.reset": "a technician reset the fire-alarm latch",
    "agent.reloaded": "the agent re-read its configuration (SIGHUP or the platform's reload)",
    "assist.requested": "someone pressed a gate's call/assist button; the platform may answer with a signed open",
    "access.granted": "a recognised resident or visitor was let in (method face or plate, pseudonymous person id), "
                      "or a car out by an exit's approach loop (method loop, its plate not read)",
    "access.denied": "someone was refused: stranger, expired, schedule, gate, disabled, liveness, full or "
                     "uncertain (a face close to a resident but not clear enough for the gate's level)",
    "barrier.raised": "a barrier arm was raised",
    "barrier.lowered": "a barrier arm was lowered",
    "barrier.lower_deferred": "a lower waited because a vehicle was on the safety loop",
    "barrier.fault": "a barrier's position sensor disagrees with the command (stuck arm, an arm moved by hand), "
                     "or one of its loops has been occupied for loop_stuck_seconds (failed detector, a car left on it)",
    "barrier.recovered": "a faulted barrier's position sensor agrees with the command again, or its stuck loop cleared",
    "vehicle.wrong_way": "a vehicle drove through a raised barrier against its lane (told by its approach loop)",
    "parking.full": "a car park reached its capacity",
    "parking.available": "a full car park has spaces again",
    "parking.corrected": "a technician corrected a car park's count",
    "parking.drift": "a pass the count could not take (an exit at 0, an entry at twice capacity): correct the count",
    "whitelist.updated": "the whitelist changed (signed bundle from the platform)",
    "uplink.backlog_full": "the outbox passed its limit; low-value events are being dropped (counted)",
    "uplink.backlog_cleared": "the outbox is below its limit again",
    "uplink.events_dropped": "how many low-value events were dropped to bound the outbox",
    "storage.events_dropped": "events dropped from memory while the disk refused writes (count, by_type); "
                              "door contacts first, access/alarm/fault events only past the hard limit",
    "uplink.command_refused": "a platform command was refused (bad signature, too old, replayed, malformed)",
    "node.fault": "something the agent runs on failed (component storage, whitelist, uplink, config...): gates and "
                  "fire release keep working; the reason says what to do",
    "node.recovered": "a node.fault cleared (component, seconds it lasted)",
    "storage.recovered": "a damaged SQLite file (events.db, parking.db, seen_commands.sqlite) was moved aside and its "
                         "readable rows salvaged into a fresh one, or a file holds fewer events than the node had "
                         "recorded (WAL deleted, emptied, an older copy): file, reason, recovered, lost, damaged_copy",
}

# Keys that would carry personal data. Details use pseudonymous ids (``person: R-0203-1``) instead.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"name", "display_name", "full_name", "photo", "image", "picture", "snapshot", "frame", "face",
     "template", "templates", "encoding", "encodings", "embedding", "descriptor", "landmarks"}
)
MAX_DETAIL_STRING = 200  # long enough for a reason sentence, too short for a base64 thumbnail
MAX_NUMBER_LIST = 8  # a face template is 128 floats; a box is 4 numbers


def check_details(details: dict[str, Any]) -> None:
    """The privacy rules of event details, for anything else the node publishes (state, telemetry)."""
    for key, item in details.items():
        _check_key(str(key), str(key))
        _check_value(str(key), item)


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"details.{key}: binary data is not allowed in events")
    if isinstance(value, str) and len(value) > MAX_DETAIL_STRING:
        raise ValueError(f"details.{key}: text longer than {MAX_DETAIL_STRING} characters")
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            _check_key(f"{key}.{sub_key}", str(sub_key))
            _check_value(f"{key}.{sub_key}", sub_value)
    elif isinstance(value, list | tuple):
        numbers = sum(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if numbers > MAX_NUMBER_LIST:
            raise ValueError(f"details.{key}: a list of {numbers} numbers looks like a template or image")
        for index, item in enumerate(value):
            _check_value(f"{key}[{index}]", item)
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise ValueError(f"details.{key}: {type(value).__name__} is not a JSON scalar")


def _check_key(path: str, key: str) -> None:
    if key.lower() in FORBIDDEN_DETAIL_KEYS:
        raise ValueError(f"details.{path}: personal data ({key}) must never be in an event")


class _Uuid7:
    """RFC 9562 UUIDv7 with a 12-bit counter in rand_a, so ids made in one millisecond still sort."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                self._counter += 1
                if self._counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                    self._last_ms += 1
                    self._counter = 0
                ms = self._last_ms
            else:
                self._counter = int.from_bytes(os.urandom(2)) & 0x3FF  # leave headroom to count up
            self._last_ms = ms
            rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
            value = (ms << 80) | (0x7 << 76) | (self._counter << 64) | (0b10 << 62) | rand_b
            return str(uuid.UUID(int=value))


new_event_id = _Uuid7()


class Event(BaseModel):
    """One thing that happened at this node. Serialises to compact JSON for storage and MQTT."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_event_id, description="UUIDv7: unique and time-ordered")
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC), description="UTC, RFC 3339")
    node: str
    type: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    device: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone")
        return value.astimezone(UTC)

    @field_validator("details")
    @classmethod
    def _no_personal_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_details(value)
        return value

    @field_serializer("ts")
    def _rfc3339(self, value: datetime) -> str:
        return rfc3339(value)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 ('2026-11-21T05:00:00Z', '2026-11-21'), or relative ('10m', '2h', '7d')."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.fromtimestamp(time.time() - int(text[:-1]) * units[text[-1]], UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
