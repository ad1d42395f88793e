"""Home Assistant MQTT discovery (``mqtt.home_assistant: true``): gates, smoke detectors, cameras.

Every entity reads the node's retained ``{root}/state/{kind}/{name}`` topic with a value template,
and uses ``{root}/status`` as its availability topic, so Home Assistant greys the node out when the
broker publishes our Last Will.  Entities are read-only: opening a gate needs a signed command,
which Home Assistant cannot produce.

State payloads this relies on (published by the daemon through ``Uplink.publish_state``):
``gate/{name}``: ``{"lock": "locked"|"unlocked", "door": "open"|"closed"|null}``;
``smoke/{name}``: ``{"alarm": bool, "fault": bool}``; ``camera/{name}``: ``{"ok": bool, "fps": float}``;
``fire``: ``{"latched": bool}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_ENTITIES: dict[str, list[tuple[str, str, str | None, str]]] = {
    # kind: [(component, suffix, device_class, value template)]
    "gate": [
        ("binary_sensor", "lock", "lock", "{{ 'ON' if value_json.lock == 'unlocked' else 'OFF' }}"),
        ("binary_sensor", "door", "door", "{{ 'ON' if value_json.door == 'open' else 'OFF' }}"),
    ],
    "smoke": [
        ("binary_sensor", "alarm", "smoke", "{{ 'ON' if value_json.alarm else 'OFF' }}"),
        ("binary_sensor", "fault", "problem", "{{ 'ON' if value_json.fault else 'OFF' }}"),
    ],
    "camera": [
        ("binary_sensor", "problem", "problem", "{{ 'OFF' if value_json.ok else 'ON' }}"),
        ("sensor", "fps", None, "{{ value_json.fps }}"),
    ],
    "fire": [("binary_sensor", "latched", "safety", "{{ 'ON' if value_json.latched else 'OFF' }}")],
}


@dataclass(frozen=True)
class DiscoveryMessage:
    topic: str
    payload: bytes


def discovery_messages(state_key: str, *, root: str, unique: str, prefix: str) -> list[DiscoveryMessage]:
    """Retained config messages for one state key (``gate/main``); none for kinds HA has no use for."""
    kind, _, name = state_key.partition("/")
    specs = _ENTITIES.get(kind, [])
    device = {"identifiers": [unique], "name": f"edge-agent {unique}", "manufacturer": "edge-agent",
              "model": "Raspberry Pi access node"}
    messages = []
    for component, suffix, device_class, template in specs:
        object_id = "_".join(part for part in (kind, name, suffix) if part)
        config: dict[str, Any] = {
            "name": " ".join(part for part in (kind, name, suffix) if part),
            "unique_id": f"{unique}_{object_id}",
            "state_topic": f"{root}/state/{state_key}",
            "value_template": template,
            "availability_topic": f"{root}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        if device_class:
            config["device_class"] = device_class
        if component == "sensor":
            config["unit_of_measurement"] = "fps"
        messages.append(DiscoveryMessage(
            f"{prefix}/{component}/{unique}/{object_id}/config",
            json.dumps(config, separators=(",", ":")).encode(),
        ))
    return messages
