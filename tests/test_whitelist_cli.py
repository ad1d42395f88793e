"""``edge-agent whitelist …`` and ``edge-agent bundle build`` as a technician runs them: real subprocesses,
real key files, real photos (dlib) and a real encrypted file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.signing import write_keypair

REPO = Path(__file__).resolve().parents[1]


ENTRY = "agent.cli"


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "agent.yaml"
        self.key = root / "whitelist.key"
        self.state = root / "state"
        self.write_config()

    def write_config(self, key: Path | None = None, extra: str = "", hardware: str = "") -> None:
        self.config.write_text(
            "node: {site: site-1, building: b-03, node_id: n1}\n" + hardware +
            f"storage: {{state_dir: {self.state}}}\n"
            f"whitelist:\n  key: {{file: {key or self.key}}}\n{extra}",
            encoding="utf-8",
        )

    def run(self, *args: str, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "SUDO_USER": "tech-li"}
        env.pop("CREDENTIALS_DIRECTORY", None)
        command = [sys.executable, "-m", ENTRY, *args]
        if args[0] == "whitelist" and args[1] != "keygen":
            command += ["--config", str(self.config)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=self.root)
        if ok is not None:
            assert (result.returncode == 0) is ok, result.stdout + result.stderr
        return result

    def people(self) -> dict[str, dict]:
        return {p["id"]: p for p in json.loads(self.run("whitelist", "list", "--json").stdout)}

    def audit(self) -> list[dict]:
        path = self.state / "whitelist-audit.log"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def changes(self) -> list[dict]:
        """The audit log without the store's own ``save`` line (one per generation) before each change."""
        return [entry for entry in self.audit() if entry["action"] != "save"]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = Node(tmp_path)
    node.run("whitelist", "keygen", "--out", str(node.key))
    return node


def test_add_list_show_disable_remove(node: Node, shared_data: Path) -> None:
    obama = shared_data / "faces" / "gallery" / "obama"
    out = node.run("whitelist", "add", "--id", "R-0203-1", "--name", "张三", "--photo", str(obama / "obama.jpg"),
                   "--photo", str(obama / "obama2.jpg"), "--gate", "main", "--schedule", "mon-fri 06:00-23:00",
                   "--valid-until", "2099-12-31", "--plate", "京a·12345").stdout
    assert "added R-0203-1 with 2 face template(s)" in out
    person = json.loads(node.run("whitelist", "show", "R-0203-1").stdout)
    assert person["templates"] == 2 and person["gates"] == ["main"] and person["plates"] == ["京A12345"]
    assert person["schedule"] == ["mon-fri 06:00-23:00"] and person["name"] == "张三"
    assert person["valid_until"].startswith("2099-12-31T23:59:59")
    assert "张三" in node.run("whitelist", "list").stdout  # the technician sees the name locally

    again = node.run("whitelist", "add", "--id", "R-0203-1", "--photo", str(obama / "obama.jpg"), ok=False)
    assert "already in the whitelist" in again.stderr and "Traceback" not in again.stderr
    node.run("whitelist", "disable", "R-0203-1")
    assert node.people()["R-0203-1"]["enabled"] is False
    node.run("whitelist", "enable", "R-0203-1")
    node.run("whitelist", "remove", "R-0203-1")
    assert "no person" in node.run("whitelist", "show", "R-0203-1", ok=False).stderr
    assert "no person" in node.run("whitelist", "remove", "R-0203-1", ok=False).stderr

    audit = node.changes()
    assert [e["action"] for e in audit] == ["add", "disable", "enable", "remove"]
    assert all(e["actor"] == "tech-li" and e["person"] == "R-0203-1" for e in audit)
    text = (node.state / "whitelist-audit.log").read_text(encoding="utf-8")
    assert "张三" not in text and "京A" not in text
    # nothing in the state directory is a photo or holds the name in clear
    for path in node.state.iterdir():
        data = path.read_bytes()
        assert "张三".encode() not in data and b"\xff\xd8\xff" not in data and b"JFIF" not in data


def test_add_refuses_a_photo_without_a_face_and_bad_options(node: Node, tmp_path: Path) -> None:
    blank = tmp_path / "blank.pgm"
    blank.write_bytes(b"P5\n92 112\n255\n" + bytes(92 * 112))
    result = node.run("whitelist", "add", "--id", "R-1", "--photo", str(blank), ok=False)
    assert "no usable face" in result.stderr
    result = node.run("whitelist", "add", "--id", "R-1", "--photo", str(blank), "--schedule", "weekdays", ok=False)
    assert "schedule window" in result.stderr
    assert not (node.state / "whitelist.bin").exists()


def test_import_a_folder(node: Node, shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "people"
    for name in ("kit_harington", "rose_leslie"):
        (folder / name).mkdir(parents=True)
        for photo in (shared_data / "faces" / "gallery" / name).iterdir():
            (folder / name / photo.name).symlink_to(photo)
    (folder / "rose_leslie" / "person.yaml").write_text("gates: [main]\nvalid_until: 2099-01-01\nname: Rose\n")
    (folder / "empty").mkdir()
    result = node.run("whitelist", "import", str(folder), ok=False)  # one folder skipped: exit 1, others saved
    assert "imported 2 people (0 replaced), skipped 1" in result.stdout
    assert "empty" in result.stderr and "no photos" in result.stderr
    people = node.people()
    assert sorted(people) == ["kit_harington", "rose_leslie"]
    assert people["kit_harington"]["templates"] == 2 and people["rose_leslie"]["gates"] == ["main"]
    assert [e["action"] for e in node.changes()] == ["import.add", "import.add"]
    assert "Rose" not in (node.state / "whitelist-audit.log").read_text()


def test_key_problems_and_tampering_are_refused_clearly(node: Node) -> None:
    node.run("whitelist", "list")  # empty whitelist: fine
    from agent.whitelist import Person, Whitelist
    from agent.whitelist_store import WhitelistStore, read_key_file

    store = WhitelistStore(node.state / "whitelist.bin", read_key_file(node.key))
    store.save(Whitelist([Person(id="R-1", templates=[[0.01] * 128])]))
    assert "R-1" in node.people()

    node.key.chmod(0o644)
    result = node.run("whitelist", "list", ok=False)
    assert "readable by group or other (mode 0644)" in result.stderr and "chmod 600" in result.stderr
    node.key.chmod(0o600)

    blob = bytearray(store.path.read_bytes())
    blob[-20] ^= 0x40
    store.path.write_bytes(bytes(blob))
    result = node.run("whitelist", "list", ok=False)
    assert "modified or damaged" in result.stderr and "Traceback" not in result.stderr

    node.write_config(extra="  colour: blue\n")
    assert node.run("whitelist", "list", ok=False).returncode == 78


def test_rekey_then_swap_the_key_file(node: Node) -> None:
    from agent.whitelist import Person, Whitelist
    from agent.whitelist_store import WhitelistStore, read_key_file

    WhitelistStore(node.state / "whitelist.bin", read_key_file(node.key)).save(
        Whitelist([Person(id="R-1", templates=[[0.02] * 128])]))
    new_key = node.root / "whitelist.key.new"
    node.run("whitelist", "keygen", "--out", str(new_key))
    assert "now encrypted with key" in node.run("whitelist", "rekey", "--new-key", str(new_key)).stdout
    assert "another key" in node.run("whitelist", "list", ok=False).stderr  # old key: refused
    new_key.replace(node.key)  # the technician's swap
    assert list(node.people()) == ["R-1"]
    assert node.audit()[-1]["action"] == "rekey"


def test_bundle_build_and_apply(node: Node, shared_data: Path, tmp_path: Path) -> None:
    platform_key, platform_pub = write_keypair(tmp_path / "platform")
    gallery = tmp_path / "gallery"
    (gallery / "R-0101-1").mkdir(parents=True)
    (gallery / "R-0101-1" / "a.jpg").symlink_to(shared_data / "faces" / "gallery" / "biden" / "biden.jpg")
    (gallery / "R-0101-1" / "person.yaml").write_text("plates: ['粤B 88888']\nschedule: ['22:00-06:00']\n")
    bundle = tmp_path / "v1.json"
    out = node.run("bundle", "build", "--gallery", str(gallery), "--sign", str(platform_key), "--version", "1",
                   "--audience", "site-1/b-03", "--out", str(bundle)).stdout
    assert "full bundle version 1: 1 people" in out
    payload = json.loads(bundle.read_bytes())
    assert payload["people"][0]["plates"] == ["粤B88888"] and "name" not in payload["people"][0]
    assert bundle.stat().st_size < 2000  # one template and a little JSON; no photo

    assert "bundle_public_key is not set" in node.run("whitelist", "apply", str(bundle), ok=False).stderr
    node.write_config(extra=f"  bundle_public_key: {platform_pub}\n")
    assert "applied full bundle version 1: 1 added" in node.run("whitelist", "apply", str(bundle)).stdout
    assert node.people()["R-0101-1"]["schedule"] == ["daily 22:00-06:00"]
    assert "not newer" in node.run("whitelist", "apply", str(bundle), ok=False).stderr  # replay

    delta = tmp_path / "v2.json"
    node.run("bundle", "build", "--sign", str(platform_key), "--version", "2", "--delta", "--remove", "R-0101-1",
             "--out", str(delta))
    forged = json.loads(delta.read_bytes())
    forged["remove"] = []
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert "bad signature" in node.run("whitelist", "apply", str(tmp_path / "forged.json"), ok=False).stderr
    assert "1 removed, 0 people" in node.run("whitelist", "apply", str(delta)).stdout
    assert [e["action"] for e in node.audit()][-2:] == ["bundle.remove", "bundle.apply"]


def test_enroll_from_a_configured_camera(node: Node, shared_data: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, photo in enumerate(sorted((shared_data / "faces" / "gallery" / "kit_harington").iterdir())):
        (frames / f"{index}.jpeg").symlink_to(photo)
    node.write_config(hardware=f"hardware:\n  cameras:\n    - {{name: door, source: {frames}/, fps: 10}}\n")
    assert "no camera named 'lobby'" in node.run("whitelist", "enroll", "--id", "R-7", "--camera", "lobby",
                                                  ok=False).stderr
    out = node.run("whitelist", "enroll", "--id", "R-7", "--camera", "door", "--keep", "2", "--seconds", "10").stdout
    assert "added R-7 with 2 face template(s)" in out
    assert node.audit()[-1]["action"] == "enroll"
    assert not [p for p in node.state.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
