"""The systemd unit and its installer: directives, systemd's own checks, and install.sh behaviour.

install.sh is only ever run here with --dry-run or with --prefix into a temporary directory
(staging mode never touches accounts, apt or systemctl), so the tests are safe as root.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agent.config import DEFAULT_CONFIG_PATH
from tests.test_daemon import NotifySocket

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT_PATH = REPO_ROOT / "systemd" / "edge-agent.service"
INSTALL_SH = REPO_ROOT / "systemd" / "install.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
OUTPUT_PREFIXES = ("would: ", "doing: ", "already present: ", "skip: ", "check passed: ", "check failed: ", "dry run",
                   "installed", "nothing to do")

needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")

UnitFile = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> UnitFile:
    """systemd's unit syntax: sections, repeatable keys, '#'/';' comments, backslash continuations.

    Every value of a repeated key is kept in order (DeviceAllow=, SystemCallFilter= ...);
    configparser would keep only the last one.
    """
    sections: UnitFile = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current[key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> UnitFile:
    return parse_unit(UNIT_PATH.read_text())


def one(unit: UnitFile, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}= should be set exactly once, found {values}"
    return values[0]


def words(unit: UnitFile, section: str, key: str) -> list[str]:
    return [word for value in unit[section].get(key, []) for word in value.split()]


def seconds(value: str) -> float:
    """The subset of systemd time spans used in the unit: 90, 90s, 2min, 1min 30s."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[suffix]
    return total


# --- the unit file ------------------------------------------------------------------------------


def test_parser_keeps_every_value_of_a_repeated_key() -> None:
    parsed = parse_unit("[Service]\n# comment\nDeviceAllow=a rw\nDeviceAllow=b \\\n  r\n; other\n")
    assert parsed["Service"]["DeviceAllow"] == ["a rw", "b r"]


def test_unit_runs_the_venv_entry_point_as_a_notify_service_with_watchdog(unit: UnitFile) -> None:
    service = "Service"
    assert one(unit, service, "Type") == "notify"
    assert one(unit, service, "ExecStart") == (
        f"/opt/edge-agent/venv/bin/edge-agent run --config {DEFAULT_CONFIG_PATH}"
    )
    assert one(unit, service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert seconds(one(unit, service, "WatchdogSec")) > 0
    # The daemon stops within 5 s of SIGTERM; the unit must give it at least that, not minutes.
    assert 5 <= seconds(one(unit, service, "TimeoutStopSec")) <= 30
    assert one(unit, service, "Restart") == "on-failure"
    assert "78" in words(unit, service, "RestartPreventExitStatus")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_runs_as_dedicated_user_with_only_gpio_and_video(unit: UnitFile) -> None:
    assert one(unit, "Service", "User") == "edge-agent"
    assert set(words(unit, "Service", "SupplementaryGroups")) == {"gpio", "video"}
    assert one(unit, "Service", "StateDirectory") == "edge-agent"
    assert one(unit, "Service", "ConfigurationDirectory") == "edge-agent"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""


def test_unit_hardening_directives(unit: UnitFile) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "DevicePolicy": "closed",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    families = set(words(unit, "Service", "RestrictAddressFamilies"))
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert "@system-service" in words(unit, "Service", "SystemCallFilter")


def test_unit_still_reaches_the_pi_hardware(unit: UnitFile) -> None:
    """GPIO (lgpio) and the camera stack (libcamera) must survive the hardening."""
    allowed = {value.split()[0]: value.split()[1:] for value in unit["Service"]["DeviceAllow"]}
    for group in ("char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"):
        assert allowed.get(group) == ["rw"], f"DeviceAllow={group} rw missing"
    # PrivateDevices= would replace /dev with a minimal copy without gpiochip or video nodes;
    # ProcSubset=pid hides /proc/cpuinfo and /proc/device-tree, which gpiozero needs to name the board.
    assert unit["Service"].get("PrivateDevices", ["no"]) == ["no"]
    assert unit["Service"].get("ProcSubset", ["all"]) == ["all"]


def test_lgpio_working_directory_is_writable_under_protect_system_strict(unit: UnitFile) -> None:
    """lgpio makes FIFOs in LG_WD (default: cwd); under ProtectSystem=strict only the unit's dirs are writable."""
    writable = {
        f"/run/{one(unit, 'Service', 'RuntimeDirectory')}",
        f"/var/lib/{one(unit, 'Service', 'StateDirectory')}",
    }
    assert one(unit, "Service", "WorkingDirectory") in writable
    environment = dict(value.split("=", 1) for value in words(unit, "Service", "Environment"))
    assert environment.get("LG_WD") in writable


def test_whitelist_key_comes_from_the_configuration_directory_as_a_credential(unit: UnitFile) -> None:
    name, _, source = one(unit, "Service", "LoadCredential").partition(":")
    assert name == "whitelist.key"
    assert Path(source).parent == Path("/etc") / one(unit, "Service", "ConfigurationDirectory")


# --- systemd's own checks -----------------------------------------------------------------------


def _verify(unit_text: str, tmp_path: Path) -> str:
    path = tmp_path / "edge-agent.service"
    path.write_text(unit_text)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    return result.stdout + result.stderr


SYNTAX_COMPLAINT = re.compile(r"Unknown (key|section|lvalue)|Invalid|Failed to parse|ignoring|Missing", re.I)


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_every_directive(tmp_path: Path) -> None:
    # The real ExecStart binary only exists after install.sh, so verify a copy that starts an
    # existing program; everything else is byte-for-byte the shipped unit.
    true_binary = shutil.which("true")
    assert true_binary
    text = UNIT_PATH.read_text()
    runnable = re.sub(r"^ExecStart=\S+", f"ExecStart={true_binary}", text, count=1, flags=re.M)
    assert runnable != text
    output = _verify(runnable, tmp_path)
    assert not SYNTAX_COMPLAINT.search(output), output

    # The same check does catch a misspelt directive, so the assertion above means something.
    misspelt = runnable.replace("ProtectSystem=strict", "ProtectSystm=strict")
    assert "Unknown key" in _verify(misspelt, tmp_path)


@needs_systemd_analyze
def test_systemd_analyze_verify_only_misses_the_not_yet_installed_binary(tmp_path: Path) -> None:
    output = _verify(UNIT_PATH.read_text(), tmp_path)
    for line in output.splitlines():
        assert "/opt/edge-agent/venv/bin/edge-agent" in line, line


def security_exposure(unit_path: Path) -> float:
    """Overall exposure from `systemd-analyze security --offline=true`, or skip if unsupported."""
    assert SYSTEMD_ANALYZE
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and ("unrecognized" in result.stderr or "Unknown" in result.stderr):
        pytest.skip(f"this systemd-analyze has no --offline mode (needs systemd >= 252): {result.stderr}")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert not SYNTAX_COMPLAINT.search(result.stderr), result.stderr
    return float(match.group(1))


@needs_systemd_analyze
def test_security_exposure_is_at_most_3(tmp_path: Path) -> None:
    exposure = security_exposure(UNIT_PATH)
    # Baseline in the same run: only the ExecStart line, no hardening; the tool must tell them apart.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/opt/edge-agent/venv/bin/edge-agent run\n")
    assert security_exposure(bare) > 9.0
    assert exposure <= 3.0, f"exposure {exposure}: see bench/systemd_exposure.sh --details"


# --- install.sh ---------------------------------------------------------------------------------


def run_install(*args: str, script: Path = INSTALL_SH) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EDGE_AGENT_")}
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under root with its mode, mtime and content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, digest)
    return state


def test_help_lists_the_options() -> None:
    result = run_install("--help")
    assert result.returncode == 0
    for option in ("--dry-run", "--start", "--prefix", "--no-venv"):
        assert option in result.stdout


def test_unknown_option_is_refused() -> None:
    result = run_install("--dry-rn")
    assert result.returncode == 2
    assert "--dry-rn" in result.stderr


def test_dry_run_names_every_step_and_touches_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    prefix.mkdir()
    (prefix / "marker").write_text("left alone")
    before = snapshot(tmp_path)

    result = run_install("--dry-run", "--prefix", str(prefix))

    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before
    lines = result.stdout.splitlines()
    assert all(line.startswith(OUTPUT_PREFIXES) for line in lines), result.stdout
    would = "\n".join(line for line in lines if line.startswith("would: "))
    venv = f"{prefix}/opt/edge-agent/venv"
    expected_actions = [
        f"python3 -m venv --system-site-packages {venv}",
        f"(cd {REPO_ROOT} && {venv}/bin/pip install -c constraints.txt '.[pi]')",
        f"(cd {REPO_ROOT} && {venv}/bin/pip install --no-deps -r requirements-nodeps.txt)",
        f"install -d -m 0750 {prefix}/var/lib/edge-agent",
        f"install -d -m 0750 {prefix}/etc/edge-agent",
        f"cp {REPO_ROOT}/config/agent.example.yaml {prefix}/etc/edge-agent/agent.yaml",
        f"{prefix}/etc/edge-agent/whitelist.key",
        f"install -m 0644 {UNIT_PATH} {prefix}/etc/systemd/system/edge-agent.service",
    ]
    for action in expected_actions:
        assert action in would, f"missing step {action!r} in:\n{result.stdout}"
    # Staging never acts on the live system; it says so instead of silently leaving steps out.
    skipped = [line for line in lines if line.startswith("skip: ")]
    assert any("apt-get install" in line and "python3-venv" in line for line in skipped)
    assert any("user edge-agent" in line for line in skipped)
    assert any("systemctl" in line for line in skipped)


def test_dry_run_is_stable_when_repeated(tmp_path: Path) -> None:
    first = run_install("--dry-run", "--start", "--prefix", str(tmp_path))
    second = run_install("--dry-run", "--start", "--prefix", str(tmp_path))
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_dry_run_of_the_live_install_plans_accounts_and_systemctl_without_changing_them() -> None:
    watched = [Path(p) for p in ("/etc/passwd", "/etc/group", "/etc/systemd/system", "/etc/edge-agent", "/opt")]

    def state() -> dict[Path, tuple[int, bytes] | None]:
        return {
            path: (path.stat().st_mtime_ns, path.read_bytes() if path.is_file() else b"") if path.exists() else None
            for path in watched
        }

    before = state()
    result = run_install("--dry-run")

    assert result.returncode == 0, result.stderr
    assert state() == before
    lines = result.stdout.splitlines()
    assert all(line.startswith(OUTPUT_PREFIXES) for line in lines), result.stdout
    assert not any(line.startswith("doing: ") for line in lines)
    user_lines = [line for line in lines if "edge-agent" in line and ("useradd" in line or "user edge-agent" in line)]
    assert user_lines, result.stdout
    if user_lines[0].startswith("would: "):
        assert "--home-dir /var/lib/edge-agent" in user_lines[0]
        assert "--shell /usr/sbin/nologin" in user_lines[0]
        assert "--groups gpio,video" in user_lines[0]
    assert any("python3-venv" in line for line in lines)
    assert any("systemctl enable" in line or "edge-agent.service enabled" in line for line in lines)


def test_dry_run_keeps_an_existing_config(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "edge-agent" / "agent.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("node: {site: s1, building: b2, node_id: gate-1}\n")
    result = run_install("--dry-run", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"already present: {config}" in result.stdout
    assert "agent.example.yaml" not in result.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout holding the real installer and unit; the example config's content is the installer's cargo."""
    root = tmp_path / "checkout"
    (root / "systemd").mkdir(parents=True)
    (root / "config").mkdir()
    for name in ("install.sh", "edge-agent.service"):
        shutil.copy2(REPO_ROOT / "systemd" / name, root / "systemd" / name)
    (root / "config" / "agent.example.yaml").write_text("node: {site: example, building: b1, node_id: n1}\n")
    return root


def test_staging_install_then_rerun_changes_nothing(checkout: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "image"
    script = checkout / "systemd" / "install.sh"

    first = run_install("--prefix", str(prefix), "--no-venv", script=script)

    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "installed"
    etc = prefix / "etc" / "edge-agent"
    assert (etc / "agent.yaml").read_bytes() == (checkout / "config" / "agent.example.yaml").read_bytes()
    unit = prefix / "etc" / "systemd" / "system" / "edge-agent.service"
    assert unit.read_bytes() == UNIT_PATH.read_bytes()
    modes = {path: path.stat().st_mode & 0o7777 for path in (etc, etc / "agent.yaml", etc / "whitelist.key", unit)}
    assert modes == {etc: 0o750, etc / "agent.yaml": 0o640, etc / "whitelist.key": 0o600, unit: 0o644}
    assert (prefix / "var" / "lib" / "edge-agent").stat().st_mode & 0o7777 == 0o750
    assert len(base64.urlsafe_b64decode((etc / "whitelist.key").read_text().strip())) == 32

    before = snapshot(prefix)
    second = run_install("--prefix", str(prefix), "--no-venv", script=script)

    assert second.returncode == 0, second.stderr
    assert snapshot(prefix) == before
    assert not [line for line in second.stdout.splitlines() if line.startswith(("doing: ", "would: "))]
    assert "already present: " in second.stdout
    assert second.stdout.splitlines()[-1] == "nothing to do: everything already present"


def test_rerun_never_overwrites_a_technicians_config_but_fixes_its_mode(checkout: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "image"
    script = checkout / "systemd" / "install.sh"
    assert run_install("--prefix", str(prefix), "--no-venv", script=script).returncode == 0
    config = prefix / "etc" / "edge-agent" / "agent.yaml"
    key = prefix / "etc" / "edge-agent" / "whitelist.key"
    edited = "node: {site: huayuan, building: b7, node_id: east-gate}\n"
    config.write_text(edited)
    config.chmod(0o644)
    key_before = key.read_bytes()

    result = run_install("--prefix", str(prefix), "--no-venv", script=script)

    assert result.returncode == 0, result.stderr
    assert config.read_text() == edited
    assert config.stat().st_mode & 0o7777 == 0o640
    assert key.read_bytes() == key_before
    assert f"doing: chmod 0640 {config}" in result.stdout


# --- the config gate: the example as installed runs, a config that fails is never started ----------------

def stage_checker(prefix: Path) -> Path:
    """The staged venv's `edge-agent` entry point, running this checkout with the test's Python (the
    console script pip would write does the same: `python -m agent.cli`)."""
    checker = prefix / "opt" / "edge-agent" / "venv" / "bin" / "edge-agent"
    checker.parent.mkdir(parents=True)
    checker.write_text(f'#!/bin/sh\nPYTHONPATH={REPO_ROOT} exec {sys.executable} -m agent.cli "$@"\n')
    checker.chmod(0o755)
    return checker


def test_the_example_config_as_installed_passes_check_config_and_runs(tmp_path: Path) -> None:
    prefix = tmp_path / "image"
    stage_checker(prefix)
    result = run_install("--prefix", str(prefix), "--no-venv")
    assert result.returncode == 0, result.stdout + result.stderr
    etc = prefix / "etc" / "edge-agent"
    assert f"check passed: {etc / 'agent.yaml'} (edge-agent check-config)" in result.stdout

    # The installed file, as it is, on mock pins and a state directory of its own: what systemd would run
    # on a Pi, with the staged /etc/edge-agent as the credentials directory LoadCredential= makes.
    text = (etc / "agent.yaml").read_text()
    assert text == (REPO_ROOT / "config" / "agent.example.yaml").read_text()
    for old, new in (("pin_factory: lgpio", "pin_factory: mock"),
                     ("state_dir: /var/lib/edge-agent", f"state_dir: {tmp_path / 'state'}")):
        assert text.count(old) == 1
        text = text.replace(old, new)
    config = tmp_path / "agent.yaml"
    config.write_text(text)
    notify = NotifySocket(tmp_path / "notify.sock")
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "NOTIFY_SOCKET": str(notify.path), "CREDENTIALS_DIRECTORY": str(etc)})
    try:
        notify.wait_for("READY", "1", timeout=120)
        from agent.control import call

        status = call(tmp_path / "state", {"cmd": "status"})
        assert status["faults"] == {}, status["faults"]  # every file it names is there
        assert status["uplink"] is None  # until the technician fills it in
        assert {"gate/main", "smoke/lobby", "fire"} <= set(status["state"])
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
        notify.close()
    assert process.returncode == 0, output[-3000:]
    assert "agent.stopped" in output and "Traceback" not in output


@pytest.mark.parametrize("damage, expected", [
    ("hardware:\n  gates: [{name: a, lock_relay: 17.0}]\n", "17.0 is not a GPIO pin"),
    ("mqtt: {host: broker, command_public_key: /etc/edge-agent/platform.pub}\n",
     "public key file /etc/edge-agent/platform.pub does not exist"),
])
def test_a_config_that_fails_check_config_is_not_enabled_and_install_says_what_to_fix(
        tmp_path: Path, damage: str, expected: str) -> None:
    prefix = tmp_path / "image"
    checker = stage_checker(prefix)
    assert run_install("--prefix", str(prefix), "--no-venv").returncode == 0
    config = prefix / "etc" / "edge-agent" / "agent.yaml"
    config.write_text(config.read_text().replace("\nhardware:", "\nunused:", 1) + damage
                      if damage.startswith("hardware") else config.read_text() + damage)

    for args in (("--prefix", str(prefix), "--no-venv"), ("--prefix", str(prefix), "--no-venv", "--start")):
        result = run_install(*args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert (f"check failed: {config} does not pass edge-agent check-config; edge-agent.service will not be "
                "enabled or started") in result.stdout
        assert expected in result.stderr
        assert f"check it with `sudo {checker} check-config`" in result.stderr
        assert all(line.startswith(OUTPUT_PREFIXES) for line in result.stdout.splitlines()), result.stdout


def test_live_dry_run_plans_the_config_check_before_enabling() -> None:
    result = run_install("--dry-run", "--start")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if "check-config /etc/edge-agent/agent.yaml" in line)
    enable = next(i for i, line in enumerate(lines)
                  if line.startswith(("would: systemctl enable", "already present: edge-agent.service enabled")))
    assert check < enable
