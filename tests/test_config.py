"""Configuration: typed sections, unknown keys, pin conflicts, line/column in every message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_loader import EX_CONFIG, ConfigError, bcm_number, json_schema, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
VALID = """\
node: {site: s1, building: b2, node_id: n-1}
hardware:
  pin_factory: mock
  gates:
    - name: main
      lock_relay: 17
      door_contact: 27
      exit_button: 22
  smoke_detectors:
    - {name: hall, alarm_pin: 24}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return [str(p) for p in info.value.problems]


def test_valid_config_has_defaults() -> None:
    config = parse_config(VALID)
    gate = config.hardware.gates[0]
    assert gate.unlock_seconds == 5.0 and gate.fire_mode == "release" and gate.safe_state == "locked"
    assert config.hardware.smoke_detectors[0].active_low is True
    assert config.storage.retention_days == 30


def test_unknown_key_names_path_line_and_column() -> None:
    text = VALID.replace("      exit_button: 22", "      exit_buton: 22")
    (message,) = problems(text)
    assert message.startswith("hardware.gates[0].exit_buton (line 8, column 7): unknown key")


def test_wrong_type_points_at_the_value() -> None:
    text = VALID.replace("lock_relay: 17", "lock_relay: [1, 2]")
    (message,) = problems(text)
    assert "hardware.gates[0].lock_relay (line 6, column 7)" in message
    assert "[1, 2] is not a GPIO pin" in message
    (message,) = problems(VALID.replace("lock_relay: 17", "lock_relay: 17\n      unlock_seconds: [1, 2]"))
    assert "hardware.gates[0].unlock_seconds (line 7, column 7)" in message
    assert "valid number" in message


def test_every_problem_is_reported_once() -> None:
    text = VALID.replace("lock_relay: 17", "lock_relay: 99").replace("alarm_pin: 24", "alarm_pin: 24, confirm_ms: -5")
    found = problems(text)
    assert len(found) == 2
    assert any("lock_relay" in p and "not a GPIO pin" in p for p in found)
    assert any("confirm_ms" in p for p in found)


def test_missing_required_section() -> None:
    (message,) = problems("hardware: {pin_factory: mock}\n")
    assert message.startswith("node") and "required" in message


@pytest.mark.parametrize("second", ["17", "GPIO17", "BCM17", "BOARD11", "J8:11"])
def test_two_devices_on_one_pin_is_an_error(second: str) -> None:
    text = VALID.replace("alarm_pin: 24", f"alarm_pin: {second}")
    (message,) = problems(text)
    assert "hardware.smoke_detectors[0].alarm_pin (line 10" in message
    assert "already used by hardware.gates[0].lock_relay" in message


def test_bcm_numbers() -> None:
    assert bcm_number("BOARD11") == 17 == bcm_number("GPIO17") == bcm_number(17)


def test_duplicate_yaml_key_is_an_error() -> None:
    text = VALID.replace("      exit_button: 22", "      exit_button: 22\n      exit_button: 23")
    assert any("key given twice" in p for p in problems(text))


def test_yaml_syntax_error_has_position() -> None:
    (message,) = problems("node: {site: s1\nhardware: [\n")
    assert "YAML syntax error" in message and "line" in message


def test_barrier_needs_one_way_to_drive_it() -> None:
    text = VALID + "  barriers:\n    - {name: b, raise_relay: 5, safety_loop: 13}\n"
    (message,) = problems(text)
    assert "hardware.barriers[0]" in message and "raise_relay and lower_relay, or pulse_relay" in message


def test_camera_must_watch_a_known_gate_and_exist(tmp_path: Path) -> None:
    text = VALID + f"  cameras:\n    - {{name: c, source: {tmp_path}/none.mp4, gate: nope}}\n"
    found = problems(text)
    assert any("cameras[0].gate" in p and "no gate or barrier named 'nope'" in p for p in found)
    assert any("cameras[0].source" in p and "does not exist" in p for p in found)


def test_a_lane_is_checked_and_belongs_to_a_barrier_camera() -> None:
    barrier = "  barriers:\n    - {name: car-in, raise_relay: 5, lower_relay: 6, safety_loop: 13}\n"
    camera = "  cameras:\n    - {name: c, source: 0, gate: %s, lane: %s}\n"
    lane = "[[0.1, 0.5], [0.9, 0.5], [1, 1], [0, 1]]"
    config = parse_config(VALID + barrier + camera % ("car-in", lane), "test.yaml")
    assert config.hardware.cameras[0].lane == [(0.1, 0.5), (0.9, 0.5), (1.0, 1.0), (0.0, 1.0)]
    (message,) = problems(VALID + barrier + camera % ("car-in", "[[0.1, 0.5], [1.5, 0.5], [1, 1]]"))
    assert "cameras[0].lane" in message and "fractions of the frame" in message
    (message,) = problems(VALID + barrier + camera % ("car-in", "[[0, 0], [0.5, 0.5], [1, 1]]"))
    assert "enclose part of the frame" in message
    (message,) = problems(VALID + barrier + camera % ("main", lane))
    assert "cameras[0].lane" in message and "cameras that watch a barrier" in message


def test_unreadable_video_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "broken.mp4"
    bogus.write_bytes(b"not a video at all" * 100)
    text = VALID + f"  cameras:\n    - {{name: c, source: {bogus}}}\n"
    (message,) = problems(text)
    assert "not a video OpenCV can decode" in message


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    path = tmp_path / "agent.yaml"
    path.write_text(VALID + "  cameras:\n    - {name: c, source: frames/}\nstorage: {state_dir: state}\n")
    config = load_config(path)
    assert config.storage.state_dir == tmp_path / "state"
    assert config.hardware.cameras[0].source == f"{tmp_path}/frames/"
    assert config.hardware.cameras[0].kind == "folder"


def test_secrets_are_never_inline() -> None:
    from agent.config import SecretRef

    assert SecretRef(env="MQTT_PASSWORD").env == "MQTT_PASSWORD"
    with pytest.raises(ValueError):
        SecretRef()


def test_schema_lists_every_section() -> None:
    schema = json_schema()
    assert {"node", "hardware", "storage", "logging"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = ROOT / "config" / "agent.example.yaml"
    text = example.read_text()
    parse_config(text)  # devices only; no camera files to resolve
    schema = json_schema()

    def keys(node: dict, defs: dict) -> set[str]:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        found = set()
        for key, sub in node.get("properties", {}).items():
            found.add(key)
            for branch in [sub, sub.get("items", {}), *sub.get("anyOf", [])]:
                if isinstance(branch, dict) and ("$ref" in branch or "properties" in branch):
                    found |= keys(branch, defs)
                if isinstance(branch, dict) and isinstance(branch.get("items"), dict):
                    found |= keys(branch["items"], defs)
        return found

    missing = {key for key in keys(schema, schema["$defs"]) if f"{key}:" not in text}
    assert not missing, f"agent.example.yaml does not document: {sorted(missing)}"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    (tmp_path / "whitelist.key").write_text("ab" * 32)
    (tmp_path / "whitelist.key").chmod(0o600)
    good.write_text(VALID + "whitelist: {key: {file: whitelist.key}}\n")
    result = run_cli("check-config", str(good))
    assert result.returncode == 0 and "OK" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("unlock", "x").replace("exit_button", "exit_btn").replace("24", "17"))
    result = run_cli("check-config", str(bad))
    assert result.returncode == EX_CONFIG
    assert "Traceback" not in result.stderr
    assert "exit_btn (line 8, column 7): unknown key" in result.stderr
    assert "pin 17 is already used" in result.stderr

    result = run_cli("check-config", str(tmp_path / "missing.yaml"))
    assert result.returncode == EX_CONFIG and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_config_schema_command_prints_json() -> None:
    result = run_cli("config", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "edge-agent configuration"
