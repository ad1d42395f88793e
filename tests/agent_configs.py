"""Config texts shared by the daemon and fire tests."""

from __future__ import annotations

from pathlib import Path


def node_config(state_dir: Path, *, confirm_ms: int = 100, extra: str = "") -> str:
    return f"""\
node: {{site: s1, building: b1, node_id: n1}}
hardware:
  pin_factory: mock
  gates:
    - {{name: main, lock_relay: 17, door_contact: 27, exit_button: 22, unlock_seconds: 1}}
    - {{name: plant-room, lock_relay: 18, fire_mode: secure}}
  barriers:
    - {{name: car-in, raise_relay: 5, lower_relay: 6, safety_loop: 13, pulse_seconds: 0.05}}
  smoke_detectors:
    - {{name: lobby, alarm_pin: 24, confirm_ms: {confirm_ms}}}
  indicators:
    - {{name: buzzer, kind: buzzer, pin: 21}}
{extra}storage:
  state_dir: {state_dir}
whitelist:
  key: {{file: {state_dir.parent / "whitelist.key"}}}
"""
