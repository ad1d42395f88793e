"""``edge-agent keygen --ed25519`` and ``edge-agent cmd sign``: what a platform uses to talk to a node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.signing import ReplayCache, load_public_key
from agent.uplink_commands import CommandHandler
from tests.mqtt_broker import RecordingTarget


def test_keygen_then_sign_make_a_command_the_node_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "platform"
    assert main(["keygen", "--ed25519", "--out", str(prefix)]) == 0
    assert main(["keygen", "--ed25519", "--out", str(prefix)]) == 2  # never overwrites a key
    capsys.readouterr()
    assert main(["cmd", "sign", "--key", f"{prefix}.key", "--node", "s1/b7/n1", "open",
                 "--arg", "gate=main", "--arg", "seconds=5"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["args"] == {"gate": "main", "seconds": 5} and payload["name"] == "open"
    target = RecordingTarget()
    handler = CommandHandler(target, node="s1/b7/n1", public_key=load_public_key(Path(f"{prefix}.pub")),
                             replay=ReplayCache(tmp_path / "seen.sqlite", 90), max_age=60, clock_skew=30,
                             allow_unsigned=frozenset())
    assert handler.handle("open", json.dumps(payload).encode())["ok"] is True
    assert target.opened == [("main", 5.0)]
    assert main(["cmd", "sign", "--key", f"{prefix}.key", "--node", "s1/b7/n1", "sync",
                 "--json", '{"version": 3, "residents": []}']) == 0
    assert json.loads(capsys.readouterr().out)["args"] == {"version": 3, "residents": []}
    assert main(["cmd", "sign", "--node", "s1/b7/n1", "open", "--arg", "gate=main"]) == 2  # open needs --key


def test_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "keygen", "--ed25519", "--out",
                           str(tmp_path / "k")], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0 and (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY")


def test_keygen_without_ed25519_makes_the_whitelist_key(tmp_path: Path) -> None:
    from agent.whitelist_store import read_key_file

    key = tmp_path / "etc" / "whitelist.key"
    assert main(["keygen", "--out", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600 and len(read_key_file(key)) == 32
    assert main(["keygen", "--out", str(key)]) == 2, "an existing key is never overwritten"
