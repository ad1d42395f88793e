"""Configuration files that cannot hurt: hostile YAML, wrong types, and every file a config names.

Hostile YAML runs in a subprocess with a timeout and a memory limit, so that a regression fails the
test instead of hanging or swapping the machine.  Files are real files, directories and FIFOs; the
daemon is the real `edge-agent run` process on mock pins.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import types
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.agent_config import AgentConfig
from agent.config_files import FileCheckError, check_regular_file, named_file_problems, read_regular_file
from agent.config_loader import EX_CONFIG, MAX_CONFIG_BYTES, ConfigError, parse_config
from agent.signing import public_pem
from tests.test_config import VALID
from tests.test_daemon import NotifySocket

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1 << 30  # the agent checking a config needs ~150 MB of address space; 1 GiB is plenty


def limited_cli(*args: str, timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`edge-agent ARGS` with its address space capped: a YAML bomb fails with MemoryError, not the machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, preexec_fn=cap, **kwargs)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return [str(p) for p in info.value.problems]


# --- hostile YAML ------------------------------------------------------------------------------------

def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 (387 million) strings from a few hundred bytes."""
    lines = ['node: {site: s1, building: b2, node_id: n-1}', 'l0: &l0 "lol"']
    for level in range(1, 10):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_alias_bomb_is_refused_at_once_within_bounded_memory(tmp_path: Path, command: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 600
    flag = [str(bomb)] if command == "check-config" else ["--config", str(bomb)]
    result = limited_cli(command, *flag)
    assert result.returncode == EX_CONFIG, result.stderr[-2000:]
    assert "alias *l0 is not allowed" in result.stderr and "(line 3, column" in result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("faces: &a {liveness: *a}\n", "alias *a is not allowed"),  # a cycle: no walk of it ever ends
    ("gate: &g {name: main, lock_relay: 17}\nhardware: {gates: [*g]}\n", "alias *g is not allowed"),
    ("base: &b {unlock_seconds: 2}\nhardware: {gates: [{<<: *b, name: main, lock_relay: 17}]}\n",
     "alias *b is not allowed"),  # merge keys need aliases too
])
def test_every_alias_is_refused_with_its_place(text: str, expected: str) -> None:
    (message,) = problems("node: {site: s1, building: b2, node_id: n-1}\n" + text)
    alias_line = 1 + next(number for number, row in enumerate(text.splitlines(), 1)
                          if expected.split()[1] in row)
    assert expected in message and f"(line {alias_line}, column" in message


@pytest.mark.parametrize("nesting", [
    "[" * 5000 + "]" * 5000,  # flow sequences
    "{a: " * 5000 + "1" + "}" * 5000,  # flow mappings
    "".join(f"\n{'  ' * depth}k{depth}:" for depth in range(40)) + " 1",  # block mappings
])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(nesting: str) -> None:
    (message,) = problems(VALID + "extra: " + nesting + "\n")
    assert "nested more than 16 levels deep" in message and "(line " in message


def test_long_keys_values_and_files_are_refused() -> None:
    (message,) = problems(VALID + "k" * 200 + ": 1\n")
    assert "key of 200 characters; at most 128" in message and "(line 11, column 1)" in message
    (message,) = problems(VALID + "storage: {state_dir: /" + "a" * 5000 + "}\n")
    assert "value of 5001 characters; at most 4096" in message
    (message,) = problems(VALID + "#" + " " * MAX_CONFIG_BYTES + "\n")
    assert f"a config is at most {MAX_CONFIG_BYTES}" in message


@pytest.mark.parametrize("section, expected", [
    ("storage: {state_dir: /tmp/" + "a" * 300 + "}", "storage.state_dir (line 11, column 22): path component"),
    ("storage: {state_dir: /tmp/" + "/".join(["é" * 100] * 21) + "}", "bytes long; at most 4095"),  # UTF-8
    ("storage: {state_dir: /tmp/" + "d" * 120 + "}", "control socket"),  # bind() fails over 107 bytes
    ("whitelist: {key: {file: /" + "k" * 256 + "}}", "whitelist.key.file (line 11, column 25): path component"),
])
def test_paths_the_kernel_cannot_open_are_config_errors(section: str, expected: str) -> None:
    found = problems(VALID + section + "\n")
    assert any(expected in message for message in found), found


def test_long_camera_source_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    text = VALID + f"  cameras:\n    - {{name: c, source: {tmp_path}/{'v' * 300}.mp4}}\n"
    (message,) = problems(text)
    assert "hardware.cameras[0].source" in message and "over 255 bytes" in message


def test_control_characters_and_bad_scalars_are_config_errors() -> None:
    assert problems(VALID + "x: \x07\n")[0].startswith("<file>: YAML error")
    assert "YAML" in problems(VALID + "storage: {retention_days: 2024-13-45}\n")[0]


# --- strict types --------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, expected", [
    ("alarm_pin: 24", "alarm_pin: 17.0", "17.0 is not a GPIO pin"),
    ("alarm_pin: 24", "alarm_pin: true", "true is not a GPIO pin"),
    ("lock_relay: 17", "lock_relay: 1.5", "1.5 is not a GPIO pin"),
    ("exit_button: 22", "exit_button: false", "false is not a GPIO pin"),
    ("lock_relay: 17", "lock_relay: 17\n      unlock_seconds: true", "true is not a number"),
    ("alarm_pin: 24", "alarm_pin: 24, confirm_ms: true", "true is not a number"),
    ("alarm_pin: 24", "alarm_pin: 24, confirm_ms: 500.0", "valid integer"),
    ("lock_relay: 17", "lock_relay: 17\n      held_open_seconds: .inf", "finite number"),
])
def test_wrong_number_types_are_refused(old: str, new: str, expected: str) -> None:
    assert old in VALID
    found = problems(VALID.replace(old, new))
    assert any(expected in message for message in found), found


def test_a_float_pin_beside_the_same_int_pin_never_reaches_gpio(tmp_path: Path) -> None:
    """17.0 used to pass the duplicate-pin check and then end `run` with GPIOPinInUse."""
    config = tmp_path / "agent.yaml"
    config.write_text(VALID.replace("alarm_pin: 24", "alarm_pin: 17.0") + f"storage: {{state_dir: {tmp_path}}}\n")
    result = limited_cli("run", "--config", str(config))
    assert result.returncode == EX_CONFIG
    assert "hardware.smoke_detectors[0].alarm_pin (line 10, column 31): 17.0 is not a GPIO pin" in result.stderr


def _models(model: type[BaseModel], seen: set[type]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _leaves(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _leaves(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaves(args[0])
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _leaves(arg)]


def _true_at_every_number(annotation: Any) -> Any:
    """A value of the annotation's shape with `True` wherever a number goes: (True, True), [[True, True]]."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _true_at_every_number(typing.get_args(annotation)[0])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return [_true_at_every_number(arg) for arg in args]
    if origin is list:
        return [_true_at_every_number(args[0])]
    if origin in (typing.Union, types.UnionType):
        numeric = [arg for arg in args if {int, float} & set(_leaves(arg))]
        return _true_at_every_number(numeric[0])
    return True


def test_no_field_of_the_whole_config_takes_a_boolean_for_a_number() -> None:
    """Every field whose type holds an int or a float (and not a bool), in every section, found by walking
    the schema: YAML's `true` must be refused there, so a new field cannot forget it."""
    models: set[type] = set()
    _models(AgentConfig, models)
    checked = []
    for model in models:
        for name, field in model.model_fields.items():
            leaves = set(_leaves(field.annotation))
            if not {int, float} & leaves or bool in leaves:
                continue
            adapter = TypeAdapter(field.rebuild_annotation())
            with pytest.raises(ValidationError):
                adapter.validate_python(_true_at_every_number(field.annotation))
            checked.append(f"{model.__name__}.{name}")
    # the walk found the fields the issue names, and the numbers of every section
    assert {"GateConfig.unlock_seconds", "GateConfig.lock_relay", "SmokeDetectorConfig.alarm_pin",
            "CameraConfig.resolution", "CameraConfig.lane", "MqttConfig.port", "FaceConfig.tolerance",
            "PlateConfig.threads", "CarParkConfig.capacity", "OutboxConfig.max_pending"} <= set(checked)
    assert len(checked) > 60, checked


# --- the files a config names ----------------------------------------------------------------------

def _certificate(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A config naming every kind of file, each real and right: check-config passes on it."""
    files = tmp_path / "etc"
    files.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    paths = {
        "whitelist.key.file": files / "whitelist.key",
        "whitelist.bundle_public_key": files / "bundle.pub",
        "mqtt.command_public_key": files / "platform.pub",
        "mqtt.tls.ca_file": files / "ca.pem",
        "mqtt.tls.cert_file": files / "node.pem",
        "mqtt.tls.key_file": files / "node.key",
        "mqtt.password.file": files / "mqtt.password",
    }
    paths["whitelist.key.file"].write_text("ab" * 32 + "\n")
    paths["whitelist.bundle_public_key"].write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    paths["mqtt.command_public_key"].write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    paths["mqtt.tls.ca_file"].write_bytes(_certificate(ec.generate_private_key(ec.SECP256R1()), "ca"))
    paths["mqtt.tls.cert_file"].write_bytes(_certificate(key, "node"))
    paths["mqtt.tls.key_file"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    paths["mqtt.password.file"].write_text("s3cret\n")
    for secret in ("whitelist.key.file", "mqtt.tls.key_file", "mqtt.password.file"):
        paths[secret].chmod(0o600)
    config = tmp_path / "agent.yaml"
    config.write_text(VALID + f"""\
storage: {{state_dir: {tmp_path / 'state'}}}
whitelist:
  key: {{file: {paths['whitelist.key.file']}}}
  bundle_public_key: {paths['whitelist.bundle_public_key']}
mqtt:
  host: 127.0.0.1
  port: 1
  username: node
  password: {{file: {paths['mqtt.password.file']}}}
  command_public_key: {paths['mqtt.command_public_key']}
  tls: {{ca_file: {paths['mqtt.tls.ca_file']}, cert_file: {paths['mqtt.tls.cert_file']},
        key_file: {paths['mqtt.tls.key_file']}}}
""")
    return {"config": config, **paths}


def file_problems(site: dict[str, Path]) -> dict[str, str]:
    return {problem.key: problem.message for problem in named_file_problems(parse_config(site["config"].read_text()))}


def test_a_config_whose_files_are_all_right_passes(site: dict[str, Path]) -> None:
    assert file_problems(site) == {}
    result = limited_cli("check-config", str(site["config"]))
    assert result.returncode == 0 and "OK" in result.stdout and "uplink: 127.0.0.1" in result.stdout


NAMED = ["whitelist.key.file", "whitelist.bundle_public_key", "mqtt.command_public_key", "mqtt.tls.ca_file",
         "mqtt.tls.cert_file", "mqtt.tls.key_file", "mqtt.password.file"]
SECRETS = ["whitelist.key.file", "mqtt.tls.key_file", "mqtt.password.file"]


@pytest.mark.parametrize("key", NAMED)
@pytest.mark.parametrize("damage", ["missing", "directory", "fifo", "wrong kind", "empty"])
def test_each_named_file_is_checked(site: dict[str, Path], key: str, damage: str) -> None:
    path = site[key]
    path.unlink()
    if damage == "directory":
        path.mkdir()
    elif damage == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer for ever
    elif damage == "wrong kind":
        path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n" if key in SECRETS
                         else (site["whitelist.key.file"].parent / "node.key").read_bytes()
                         if path.name != "node.key" else b"not a key\n")
        path.chmod(0o600)
    elif damage == "empty":
        path.write_bytes(b"")
        path.chmod(0o600)
    found = file_problems(site)
    if damage == "wrong kind" and key == "mqtt.password.file":
        assert key not in found  # any non-empty text is a password
        return
    assert key in found, found
    message = found[key]
    assert str(path) in message
    expected = {"missing": "does not exist", "directory": "is a directory, not a regular file",
                "fifo": "is a FIFO (named pipe), not a regular file"}.get(damage)
    if expected:
        assert expected in message
    else:
        assert any(word in message for word in ("not a", "no PEM", "empty", "is not the key")), message


@pytest.mark.parametrize("key", SECRETS)
def test_secret_files_open_to_group_or_other_are_refused(site: dict[str, Path], key: str) -> None:
    site[key].chmod(0o640)
    assert f"readable by group or other (mode 0640); run `chmod 600 {site[key]}`" in file_problems(site)[key]


def test_the_credentials_directory_needs_no_mode_bits(site: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's LoadCredential= directory is private to the service whatever the modes say."""
    site["whitelist.key.file"].chmod(0o640)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(site["whitelist.key.file"].parent))
    text = site["config"].read_text().replace(str(site["whitelist.key.file"]), "$CREDENTIALS_DIRECTORY/whitelist.key")
    assert "whitelist.key.file" not in {p.key for p in named_file_problems(parse_config(text))}


def test_a_client_key_of_another_certificate_is_refused(site: dict[str, Path]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    site["mqtt.tls.key_file"].write_bytes(other.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    assert "is not the key of" in file_problems(site)["mqtt.tls.key_file"]


def test_check_config_names_a_fifo_and_a_missing_file_and_exits_78_without_hanging(site: dict[str, Path]) -> None:
    site["mqtt.tls.ca_file"].unlink()
    os.mkfifo(site["mqtt.tls.ca_file"])
    site["whitelist.key.file"].unlink()
    result = limited_cli("check-config", str(site["config"]), timeout=60)
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert f"{site['config']}: 2 problems" in result.stderr
    assert f"mqtt.tls.ca_file (line 21, column 18): CA file {site['mqtt.tls.ca_file']} is a FIFO" in result.stderr
    assert (f"whitelist.key.file (line 13, column 15): whitelist key file {site['whitelist.key.file']} "
            "does not exist") in result.stderr
    assert "edge-agent whitelist keygen" in result.stderr and "Traceback" not in result.stderr


def test_a_config_file_that_is_a_fifo_or_a_folder_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "agent.yaml"
    os.mkfifo(fifo)
    result = limited_cli("check-config", str(fifo), timeout=60)
    assert result.returncode == EX_CONFIG and "is a FIFO (named pipe), not a regular file" in result.stderr
    result = limited_cli("check-config", str(tmp_path), timeout=60)
    assert result.returncode == EX_CONFIG and "is a directory" in result.stderr


def test_generic_file_rule(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular_file(path, "file") == b"x" * 10
    with pytest.raises(FileCheckError, match="at most 5"):
        check_regular_file(path, "file", max_bytes=5)
    path.chmod(0o604)
    with pytest.raises(FileCheckError, match="chmod 600"):
        read_regular_file(path, "file", secret=True)
    with pytest.raises(FileCheckError, match="a folder in the path is a file"):
        check_regular_file(path / "below", "file")
    with pytest.raises(FileCheckError, match="is a device"):
        check_regular_file(Path("/dev/zero"), "file")


# --- `run` keeps the building working when a named file is wrong ------------------------------------

class Daemon:
    """`edge-agent run` as systemd runs it, told READY=1 over a real notify socket."""

    def __init__(self, config: Path, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.notify = NotifySocket(tmp_path / "notify.sock")
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(env or {})})

    def ready(self) -> None:
        try:
            self.notify.wait_for("READY", "1", timeout=120)
        except AssertionError:
            self.process.kill()
            raise AssertionError(self.process.communicate()[0][-3000:]) from None

    def status(self) -> dict[str, Any]:
        from agent.control import call

        state_dir = parse_config(self.config.read_text(), base_dir=self.config.parent).storage.state_dir
        return call(state_dir, {"cmd": "status"})

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        output = self.process.communicate(timeout=60)[0]
        self.notify.close()
        return self.process.returncode, output


@pytest.mark.parametrize("missing, fault, uplink_runs", [
    ("mqtt.command_public_key", "signed commands are refused", True),
    ("mqtt.tls.ca_file", "does not exist", False),
])
def test_run_with_a_missing_uplink_file_keeps_the_gates_and_says_why(site: dict[str, Path], tmp_path: Path,
                                                                     missing: str, fault: str,
                                                                     uplink_runs: bool) -> None:
    site[missing].unlink()
    daemon = Daemon(site["config"], tmp_path)
    daemon.ready()
    status = daemon.status()
    assert fault in status["faults"][f"config/{missing}"]
    assert (status["uplink"] is not None) == uplink_runs
    if not uplink_runs:
        assert status["faults"]["uplink"].startswith(f"not started: fix {missing}")
    assert set(status["state"]) >= {"gate/main", "smoke/hall", "fire"}  # the devices run
    code, output = daemon.stop()
    assert code == 0, output[-3000:]
    assert "node.fault" in output and "Traceback" not in output


def test_an_exit_while_recognition_runs_ends_with_its_code_not_a_cxx_abort(tmp_path: Path) -> None:
    """A barrier camera keeps onnxruntime busy while the agent stops. The control socket's place is
    taken by a folder: a fault, and the agent runs on (on 4d240d8 start() failed there, and with
    onnxruntime mid-read the interpreter's teardown aborted: "terminate called without an active
    exception", exit 134, 1 to 5 runs of 5). The os._exit ending (agent.cli._exit_now) is what a
    read still running at exit on a Pi core meets."""
    import cv2
    import numpy as np

    from agent.event_store import EventStore

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    state = tmp_path / "state"
    (state / "agent.sock" / "x").mkdir(parents=True)
    (tmp_path / "whitelist.key").write_text("ab" * 32)
    (tmp_path / "whitelist.key").chmod(0o600)
    config = tmp_path / "agent.yaml"
    config.write_text(VALID + f"""\
  barriers:
    - {{name: car-in, pulse_relay: 5, safety_loop: 13}}
  cameras:
    - {{name: lane, source: {frames}/, gate: car-in, replay: {{loop: true}}}}
storage: {{state_dir: {state}}}
whitelist: {{key: {{file: {tmp_path / 'whitelist.key'}}}}}
plates: {{read_on_motion_only: false}}
""")

    def control_faults() -> int:
        if not (state / "events.db").exists():
            return 0
        store = EventStore(state / "events.db", readonly=True)
        try:
            return sum(s.event.details.get("component") == "control" for s in store.query(types=["node.fault"]))
        finally:
            store.close()

    for run in range(5):  # the abort needed onnxruntime mid-read at exit: 1 to 5 of 5 runs before the fix
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while control_faults() == run and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert process.poll() is None, "the agent exited on a control socket it could not open"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert "terminate called" not in stderr
        assert process.returncode == 0, (process.returncode, stderr[-3000:])


def test_the_example_config_with_its_uplink_uncommented_is_valid() -> None:
    """The uplink part ships commented out; once a technician uncomments it, it must still parse."""
    text = (ROOT / "config" / "agent.example.yaml").read_text()
    assert "\nmqtt:" not in text and "\n#mqtt:" in text
    uncommented = text.replace("\n#mqtt:", "\nmqtt:").replace("\n#  ", "\n  ")
    config = parse_config(uncommented)
    assert config.mqtt is not None and config.mqtt.command_public_key == Path("/etc/edge-agent/platform.pub")
    assert json.loads(config.model_dump_json())["mqtt"]["tls"]["ca_file"] == "/etc/edge-agent/ca.pem"


def test_a_camera_video_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    os.mkfifo(video)
    found = problems(VALID + f"  cameras:\n    - {{name: c, source: {video}}}\n")
    assert any(f"video file {video} is a FIFO (named pipe)" in message for message in found), found


@pytest.mark.parametrize("tagged", ["!!int ", "!!float #", "!!binary 'zz'", "!!timestamp 2024-13-45", "!custom 5",
                                    "!!str 17"])
def test_explicit_yaml_tags_are_refused_where_they_stand(tagged: str) -> None:
    """A config never needs a tag, and PyYAML's constructors fail on a bad tagged scalar in ways of
    their own (`!!int` on an empty value: IndexError, a traceback through check-config)."""
    text = VALID.replace("lock_relay: 17", f"lock_relay: {tagged}", 1)
    assert text != VALID
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert "is not allowed in the config" in problem.message and problem.line is not None
