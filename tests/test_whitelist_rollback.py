"""An older whitelist copied back is refused; a backup comes back only on purpose, audited; a missing
whitelist is a fault; key paths that are not regular files are refused without hanging.

Real encrypted files, copied on disk as a technician (or an attacker) would; the CLI and the daemon run
as real processes (``python -m agent.cli``), the daemon is asked through its real control socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from agent.control import ControlUnavailable, call
from agent.event_store import EventStore
from agent.node_faults import NodeFaults
from agent.whitelist import Person, Whitelist
from agent.whitelist_store import (
    WhitelistError,
    WhitelistMissing,
    WhitelistRollback,
    WhitelistStore,
    atomic_write,
    encrypt,
    read_key_file,
)
from tests.agent_configs import node_config
from tests.test_whitelist_cli import Node

ROOT = Path(__file__).resolve().parents[1]


def person(person_id: str, value: float = 0.01) -> Person:
    return Person(id=person_id, templates=[[value] * 128])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = Node(tmp_path)
    node.run("whitelist", "keygen", "--out", str(node.key))
    return node


def enrol(node: Node, *ids: str) -> WhitelistStore:
    """People put in through the store (the CLI's add needs photos and dlib; this is the same write)."""
    store = WhitelistStore(node.state / "whitelist.bin", read_key_file(node.key), node.state / "whitelist-audit.log")
    with store.edit() as whitelist:
        for number, person_id in enumerate(ids):
            whitelist.put(person(person_id, 0.01 * (number + 1)))
    return store


# --- the CLI --------------------------------------------------------------------------------------

def test_cli_refuses_an_older_whitelist_copied_back(node: Node, tmp_path: Path) -> None:
    store = enrol(node, "R-1", "R-2")
    backup = tmp_path / "old-whitelist.bin"
    shutil.copy2(store.path, backup)  # the technician's copy, before R-2 moved out
    node.run("whitelist", "remove", "R-2")
    assert list(node.people()) == ["R-1"]

    shutil.copy2(backup, store.path)  # copied back
    result = node.run("whitelist", "list", ok=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "older copy (generation 1" in result.stderr and "generation 2" in result.stderr
    assert f"edge-agent whitelist restore {store.path}" in result.stderr
    assert node.run("whitelist", "show", "R-2", ok=False).returncode == 1
    # an edit on top of the old copy would make it current again: refused the same way
    assert "older copy" in node.run("whitelist", "disable", "R-1", ok=False).stderr


def test_copying_back_the_old_counter_file_too_is_caught_by_the_audit_log(node: Node, tmp_path: Path) -> None:
    store = enrol(node, "R-1", "R-2")
    old_files = {path: path.read_bytes() for path in (store.path, store.witnesses.counter)}
    node.run("whitelist", "remove", "R-2")
    for path, data in old_files.items():
        path.write_bytes(data)
    result = node.run("whitelist", "list", ok=False)
    assert "older copy (generation 1" in result.stderr and "audit log" in result.stderr


def test_a_whitelist_from_before_generations_is_accepted_once_then_its_copies_refused(node: Node,
                                                                                        tmp_path: Path) -> None:
    # the format nodes have today: no generation inside, no counter, no audit line
    legacy = encrypt(Whitelist([person("R-1"), person("R-2", 0.02)]), read_key_file(node.key))
    atomic_write(node.state / "whitelist.bin", legacy)
    (tmp_path / "legacy-backup.bin").write_bytes(legacy)
    listing = node.run("whitelist", "list")
    assert listing.stdout.startswith("2 people (bundle version 0, generation 1,")  # migrated on first use
    assert "accepted once and saved as generation 1" in listing.stderr
    assert [e["cause"] for e in node.audit() if e["action"] == "save"] == ["migrate"]
    assert list(node.people()) == ["R-1", "R-2"]  # and it keeps working

    node.run("whitelist", "remove", "R-2")
    shutil.copy2(tmp_path / "legacy-backup.bin", node.state / "whitelist.bin")
    result = node.run("whitelist", "list", ok=False)
    assert "older copy (no generation: made before generations)" in result.stderr


def test_restore_brings_a_backup_back_on_purpose_and_is_audited(node: Node, tmp_path: Path) -> None:
    enrol(node, "R-1", "R-2")
    backup = tmp_path / "backups" / "monday.bin"
    backup.parent.mkdir()
    made = node.run("whitelist", "backup", str(backup)).stdout
    assert "2 people, generation 1" in made and backup.stat().st_mode & 0o777 == 0o600
    assert "exists" in node.run("whitelist", "backup", str(backup), ok=False).stderr  # never overwritten
    node.run("whitelist", "remove", "R-2")
    current = tmp_path / "tuesday.bin"
    shutil.copy2(node.state / "whitelist.bin", current)

    # no terminal to ask on and no --yes: shown, not done
    asked = node.run("whitelist", "restore", str(backup), ok=False)
    assert "2 people, generation 1" in asked.stdout and "this node now: generation 2" in asked.stdout
    assert "add --yes" in asked.stderr and list(node.people()) == ["R-1"]

    done = node.run("whitelist", "restore", str(backup), "--yes")
    assert "restored 2 people as generation 3 (was 2)" in done.stdout
    assert list(node.people()) == ["R-1", "R-2"]
    restore = [e for e in node.audit() if e["action"] == "restore"]
    assert len(restore) == 1 and restore[0]["actor"] == "tech-li"
    assert (restore[0]["old_generation"], restore[0]["new_generation"]) == (2, 3)
    assert restore[0]["source_sha256"] == sha256(backup) and restore[0]["source_generation"] == 1

    # the restore is a new generation: Tuesday's file (generation 2) is now the older copy
    shutil.copy2(current, node.state / "whitelist.bin")
    assert "older copy (generation 2" in node.run("whitelist", "list", ok=False).stderr

    # a file that is not a whitelist of this node is not restored, and nothing changes
    foreign = tmp_path / "foreign.bin"
    atomic_write(foreign, encrypt(Whitelist([person("X-1")]), os.urandom(32)))
    assert "another key" in node.run("whitelist", "restore", str(foreign), "--yes", ok=False).stderr


@pytest.mark.parametrize(("answer", "restored"), [(b"y\n", True), (b"\n", False)])
def test_restore_asks_on_a_terminal(node: Node, tmp_path: Path, answer: bytes, restored: bool) -> None:
    enrol(node, "R-1", "R-2")
    backup = tmp_path / "backup.bin"
    node.run("whitelist", "backup", str(backup))
    node.run("whitelist", "remove", "R-2")
    controller, terminal = os.openpty()  # the technician's terminal: stdin is a tty
    try:
        os.write(controller, answer)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SUDO_USER": "tech-li"}
        result = subprocess.run([sys.executable, "-m", "agent.cli", "whitelist", "restore", str(backup), "--config",
                                 str(node.config)], stdin=terminal, capture_output=True, text=True, env=env,
                                timeout=120, cwd=node.root)
    finally:
        os.close(controller)
        os.close(terminal)
    assert "write it as the whitelist's next generation? [y/N]" in result.stdout
    assert (result.returncode == 0) is restored, result.stderr
    assert ("R-2" in node.people()) is restored
    assert any(e["action"] == "restore" for e in node.audit()) is restored


def test_missing_whitelist_in_the_cli_and_starting_again_empty_on_purpose(node: Node) -> None:
    store = enrol(node, "R-1")
    assert node.run("whitelist", "list").stdout.startswith("1 people")
    store.path.unlink()
    with pytest.raises(WhitelistMissing):
        store.load()
    result = node.run("whitelist", "list", ok=False)
    assert "is missing, but this node had one (generation 1" in result.stderr
    assert "whitelist restore" in result.stderr and "Traceback" not in result.stderr
    node.run("whitelist", "restore", "--empty", "--yes")
    assert node.run("whitelist", "list").stdout.startswith("0 people (bundle version 0, generation 2")
    assert [e["action"] for e in node.audit()][-2:] == ["save", "restore"]


# --- the store, as an attacker would try it -------------------------------------------------------

def test_witnesses_without_the_key_cannot_lock_the_node_out_and_memory_outlives_the_files(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = WhitelistStore(tmp_path / "whitelist.bin", key, tmp_path / "audit.log")
    with store.edit() as whitelist:
        whitelist.put(person("R-1"))
    old = store.path.read_bytes()
    with store.edit() as whitelist:
        whitelist.put(person("R-2", 0.02))

    # a counter file and an audit line claiming generation 99, made without the key: ignored
    store.witnesses.counter.write_text(json.dumps({"generation": 99, "saved_at": None, "bundle_version": 0,
                                                   "sha256": "0" * 64, "mac": "0" * 64}))
    with store.audit.path.open("a") as log:  # type: ignore[union-attr]
        log.write(json.dumps({"action": "save", "generation": 99, "sha256": "0" * 64, "mac": "f" * 64}) + "\n")
    assert [p.id for p in WhitelistStore(store.path, key, store.audit.path).load()] == ["R-1", "R-2"]

    # every file rolled back (whitelist, counter, audit log gone): this process still remembers
    store.path.write_bytes(old)
    store.witnesses.counter.unlink()
    store.audit.path.unlink()  # type: ignore[union-attr]
    with pytest.raises(WhitelistRollback):
        WhitelistStore(store.path, key, store.audit.path).load()


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff" * 300, b"[" * 4000, b'{"generation": true}', b"[1, 2]",
                                     b'{"generation": 7, "sha256": 1, "mac": null}', b'{"generation": ' + b"[" * 50000])
def test_garbage_in_the_counter_and_the_audit_log_neither_crashes_nor_counts(tmp_path: Path, garbage: bytes) -> None:
    key = os.urandom(32)
    store = WhitelistStore(tmp_path / "whitelist.bin", key, tmp_path / "audit.log")
    store.save(Whitelist([person("R-1")]))
    store.witnesses.counter.write_bytes(garbage)
    with store.audit.path.open("ab") as log:  # type: ignore[union-attr]
        log.write(garbage + b"\n")
    _fresh_process_load(store.path, key, store.audit.path)  # the audit line of generation 1 still counts
    assert WhitelistStore(store.path, key, store.audit.path).witnesses.newest().generation == 1


def test_the_audit_log_witness_is_found_behind_many_lines_and_a_half_written_one(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = WhitelistStore(tmp_path / "whitelist.bin", key, tmp_path / "audit.log")
    store.save(Whitelist([person("R-1")]))
    old = {path: path.read_bytes() for path in (store.path, store.witnesses.counter)}
    store.save(Whitelist([person("R-1"), person("R-2", 0.02)]))
    with store.audit.path.open("a") as log:  # type: ignore[union-attr]
        for number in range(5000):  # a full bundle's per-person lines: ~0.5 MB, many read-back chunks
            log.write(json.dumps({"action": "bundle.update", "person": f"R-{number}", "version": 9}) + "\n")
        log.write('{"action": "save", "generation": 1')  # a writer cut mid-line
    for path, data in old.items():
        path.write_bytes(data)
    with pytest.raises(WhitelistRollback, match=r"generation 2.*audit log"):
        _fresh_process_load(store.path, key, store.audit.path)


def test_a_save_line_cut_by_a_read_back_chunk_is_still_read(tmp_path: Path) -> None:
    from agent.whitelist_generation import _AuditScan

    key = os.urandom(32)
    store = WhitelistStore(tmp_path / "whitelist.bin", key, tmp_path / "audit.log")
    store.save(Whitelist([person("R-1")]))
    save_line = store.audit.path.read_bytes()  # type: ignore[union-attr]
    for pad in range(_AuditScan.CHUNK - len(save_line) - 20, _AuditScan.CHUNK + 20, 7):  # the cut moves across it
        filler = b"x" * (pad - 1) + b"\n"
        store.audit.path.write_bytes(save_line + filler)  # type: ignore[union-attr]
        assert _AuditScan(store.audit.path, store.derived_key("whitelist generation")).newest().generation == 1, pad


def _fresh_process_load(path: Path, key: bytes, audit: Path | None) -> None:
    """Load as a new process would: without this process's memory of what it accepted."""
    from agent import whitelist_generation

    remembered = dict(whitelist_generation._accepted)
    whitelist_generation._accepted.clear()
    try:
        WhitelistStore(path, key, audit).load()
    finally:
        whitelist_generation._accepted.update(remembered)


def test_a_save_cut_before_its_counter_is_still_accepted_and_recorded(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = WhitelistStore(tmp_path / "whitelist.bin", key, tmp_path / "audit.log")
    store.save(Whitelist([person("R-1")]))
    counter = store.witnesses.counter.read_bytes()
    audit = store.audit.path.read_bytes()  # type: ignore[union-attr]
    pid = os.fork()
    if pid == 0:  # another process (the CLI) saves generation 2: this one's memory does not know it
        try:
            store.save(Whitelist([person("R-1"), person("R-2", 0.02)]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    store.witnesses.counter.write_bytes(counter)  # as if the power went after the file's rename
    store.audit.path.write_bytes(audit)  # type: ignore[union-attr]
    loaded = store.load()  # the file is authentic and newer: used, and now recorded
    assert len(loaded) == 2 and json.loads(store.witnesses.counter.read_text())["generation"] == 2


def test_a_restore_keeps_the_newest_bundle_version_so_old_bundles_stay_replays(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "whitelist.bin", os.urandom(32), tmp_path / "audit.log")
    store.save(Whitelist([person("R-1")], bundle_version=3))
    backup = store.read_file()
    store.save(Whitelist([person("R-1")], bundle_version=7))
    assert backup is not None
    store.restore(backup.whitelist, source="backup", source_sha256=backup.sha256, source_stamp=backup.stamp)
    assert store.load().bundle_version == 7


# --- the daemon -----------------------------------------------------------------------------------

class Daemon:
    """``edge-agent run`` as a process, asked through its control socket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.config = root / "agent.yaml"
        self.config.write_text(node_config(self.state))
        self.key = root / "whitelist.key"  # where node_config points
        self.process: subprocess.Popen[str] | None = None

    def store(self) -> WhitelistStore:
        return WhitelistStore(self.state / "whitelist.bin", read_key_file(self.key), self.state / "whitelist-audit.log")

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.wait(lambda s: True, "the daemon never answered on its control socket")

    def status(self) -> dict | None:
        try:
            return call(self.state, {"cmd": "status"}, timeout=2.0)
        except ControlUnavailable:
            return None

    def wait(self, check, message: str, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, "the daemon exited"
            status = self.status()
            if status is not None and check(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"{message}; last status {status}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SUDO_USER": "tech-li"}
        return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--config", str(self.config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env=env)

    def events(self, kind: str) -> list[dict]:
        store = EventStore(self.state / "events.db", readonly=True)
        return [s.event.details for s in store.query(types=[kind])]

    def stop(self) -> str:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read() if self.process.stdout else ""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path)
    subprocess.run([sys.executable, "-m", "agent.cli", "whitelist", "keygen", "--out", str(daemon.key)], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    yield daemon
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait()


def people(status: dict) -> int:
    return status["whitelist"]["people"]


def test_running_daemon_keeps_its_whitelist_when_an_older_one_is_copied_back(daemon: Daemon,
                                                                              tmp_path: Path) -> None:
    store = daemon.store()
    with store.edit() as whitelist:
        whitelist.put(person("R-1"))
        whitelist.put(person("R-2", 0.02))
    backup = tmp_path / "backup.bin"
    shutil.copy2(store.path, backup)
    daemon.start()
    daemon.wait(lambda s: people(s) == 2, "the daemon did not load 2 people")
    assert daemon.cli("whitelist", "remove", "R-2").returncode == 0
    daemon.wait(lambda s: people(s) == 1, "the daemon did not see R-2 removed")

    shutil.copy2(backup, store.path)  # the older file, with R-2, copied back under the running daemon
    status = daemon.wait(lambda s: "whitelist" in s["faults"], "no whitelist fault for the older copy")
    assert people(status) == 1, "the daemon loaded the older copy: R-2 would walk in again"
    assert "older copy (generation 1" in status["whitelist"]["problem"]
    assert "keeping the 1 people loaded before" in status["whitelist"]["problem"]
    printed = daemon.cli("status").stdout
    assert "FAULT whitelist: whitelist not loaded" in printed and "older copy" in printed
    assert {"component": "whitelist"}.items() <= daemon.events("node.fault")[0].items()

    # the technician means it: restored on purpose, loaded, the fault clears
    restored = daemon.cli("whitelist", "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    status = daemon.wait(lambda s: people(s) == 2 and not s["faults"], "the restored whitelist was not loaded")
    assert status["whitelist"]["problem"] is None
    output = daemon.stop()
    assert [e["component"] for e in daemon.events("node.recovered")] == ["whitelist"]
    assert "Traceback" not in output


def test_deleted_whitelist_is_a_fault_in_status_and_a_new_node_says_it_has_none(daemon: Daemon) -> None:
    daemon.start()  # a new node: no whitelist file, no record of one
    status = daemon.wait(lambda s: True, "")
    assert status["faults"] == {} and people(status) == 0
    problem = status["whitelist"]["problem"]
    assert "0 people: no whitelist yet" in problem and "(new node)" in problem
    daemon.stop()

    store = daemon.store()
    with store.edit() as whitelist:
        whitelist.put(person("R-1"))
    daemon.start()
    daemon.wait(lambda s: people(s) == 1 and not s["faults"], "the daemon did not load R-1")
    store.path.unlink()
    status = daemon.wait(lambda s: "whitelist" in s["faults"], "a deleted whitelist is not a fault")
    assert "is missing, but this node had one (generation 1" in status["whitelist"]["problem"]
    assert "FAULT" in status["status"] and "FAULT whitelist" in daemon.cli("status").stdout
    assert daemon.events("node.fault")[0]["component"] == "whitelist"
    daemon.stop()

    daemon.start()  # and after a restart, still a fault rather than a silent "0 people"
    status = daemon.wait(lambda s: "whitelist" in s["faults"], "a missing whitelist at start is not a fault")
    assert "is missing" in status["whitelist"]["problem"]
    assert "Traceback" not in daemon.stop()


def test_watch_refuses_nobody_new_after_a_copy_back(tmp_path: Path) -> None:
    """The watch the daemon decides with, in this process: after the copy back, R-2 is still unknown."""
    from agent.config_loader import parse_config
    from agent.whitelist_watch import WhitelistWatch

    state = tmp_path / "state"
    key = tmp_path / "whitelist.key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    config = parse_config(node_config(state))
    store = WhitelistStore(state / "whitelist.bin", read_key_file(key), state / "whitelist-audit.log")
    with store.edit() as whitelist:
        whitelist.put(person("R-1"))
        whitelist.put(person("R-2", 0.02))
    old = store.path.read_bytes()
    with store.edit() as whitelist:
        whitelist.remove("R-2")
    newest = store.path.read_bytes()
    events: list[tuple[str, dict]] = []
    faults = NodeFaults(lambda kind, _device, details: events.append((kind, details)))
    watch = WhitelistWatch(config, None, faults)
    watch.refresh()
    atomic_write(store.path, old)
    watch.refresh()
    assert watch.current().check("R-2", "main", datetime.now()).reason == "stranger"
    assert events == [("node.fault", {"component": "whitelist", "reason": faults.active()["whitelist"]})]

    reloaded = WhitelistWatch(config, None, faults)  # what a SIGHUP does: a new watch, the old copy still there
    reloaded.refresh()
    assert [p.id for p in reloaded.current()] == ["R-1"]  # what the node admitted before, not the old copy
    assert "older copy" in (reloaded.problem or "") and len(events) == 1  # the same fault, not a new one

    atomic_write(store.path, newest)  # the technician puts the newest file back
    reloaded.refresh()
    assert events[-1][0] == "node.recovered" and reloaded.problem is None


# --- key paths that are not regular files -----------------------------------------------------------

def test_a_fifo_key_path_fails_quickly_instead_of_hanging(node: Node) -> None:
    fifo = node.root / "whitelist.fifo"
    os.mkfifo(fifo, 0o600)
    node.write_config(key=fifo)
    try:
        result = node.run("whitelist", "list", ok=False)  # 120 s timeout: a hang fails the test
    except subprocess.TimeoutExpired:
        pytest.fail("whitelist list hung on a FIFO key path")
    assert result.returncode == 1 and "FIFO (named pipe), not a regular file" in result.stderr


def test_a_fifo_as_the_bundle_public_key_is_refused_quickly(node: Node) -> None:
    fifo = node.root / "platform.pub"
    os.mkfifo(fifo, 0o600)
    node.write_config(extra=f"  bundle_public_key: {fifo}\n")
    bundle = node.root / "bundle.json"
    bundle.write_text("{}")
    result = node.run("whitelist", "apply", str(bundle), ok=False)  # 120 s timeout: a hang fails the test
    assert "bundle public key" in result.stderr and "FIFO (named pipe)" in result.stderr


@pytest.mark.parametrize("name", ["whitelist.bin", "whitelist.bin.generation", "whitelist-audit.log"])
def test_a_fifo_in_place_of_any_whitelist_file_never_hangs_the_cli(node: Node, name: str) -> None:
    enrol(node, "R-1")
    path = node.state / name
    path.unlink()
    os.mkfifo(path, 0o600)
    result = node.run("whitelist", "list", ok=None)  # 120 s timeout: a hang fails the test
    if name == "whitelist.bin":
        assert result.returncode == 1 and "FIFO (named pipe), not a regular file" in result.stderr
    else:  # the other witness still knows generation 1; the whitelist is used
        assert result.returncode == 0 and result.stdout.startswith("1 people"), result.stderr
        removed = node.run("whitelist", "remove", "R-1", ok=None)  # saved; recording around the FIFO fails loudly
        assert "Traceback" not in removed.stderr and "not a regular file" in removed.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "device"])
def test_key_paths_that_are_not_files_are_refused_clearly(node: Node, kind: str) -> None:
    path = node.root / "key-path"
    if kind == "directory":
        path.mkdir(mode=0o700)
        expected = "is a directory, not a regular file"
    elif kind == "symlink loop":
        path.symlink_to(node.root / "other")
        (node.root / "other").symlink_to(path)
        expected = "Too many levels of symbolic links"
    else:
        path = Path("/dev/zero")
        expected = "is a device, not a regular file"
    node.write_config(key=path)
    result = node.run("whitelist", "list", ok=False)
    assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(WhitelistError, match=expected):
        read_key_file(path)


def test_the_daemon_starts_with_a_fifo_key_and_says_why_nobody_is_recognised(daemon: Daemon) -> None:
    daemon.key.unlink()
    os.mkfifo(daemon.key, 0o600)
    daemon.start()  # would never come up: the open of the FIFO blocked before the gates were built
    status = daemon.wait(lambda s: "whitelist" in s["faults"], "no whitelist fault for a FIFO key")
    assert "named pipe" in status["whitelist"]["problem"]
    assert status["status"].startswith("running: 2 gate(s)")
    assert "Traceback" not in daemon.stop()


def test_a_whitelist_path_that_is_a_directory_is_a_fault_not_a_crash(daemon: Daemon) -> None:
    (daemon.state / "whitelist.bin").mkdir(parents=True)
    daemon.start()
    status = daemon.wait(lambda s: "whitelist" in s["faults"], "no whitelist fault for a directory")
    assert "is a directory" in status["whitelist"]["problem"]
    assert "Traceback" not in daemon.stop()
    with pytest.raises(WhitelistError, match="is a directory"):
        daemon.store().load()
