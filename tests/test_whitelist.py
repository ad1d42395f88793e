"""Whitelist model and encrypted store: decisions, schedules, validity, real AES-GCM files on disk."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.config_whitelist import WhitelistConfig, read_whitelist_key, whitelist_paths
from agent.whitelist import Person, Whitelist, Window, normalise_plate, parse_instant
from agent.whitelist_store import (
    HEADER,
    WhitelistError,
    WhitelistStore,
    decrypt,
    encrypt,
    parse_key,
    read_key_file,
    write_new_key,
)
from models.plate_match import match_plate

RNG = np.random.default_rng(4)
# 2025-06-02 is a Monday
MONDAY_NOON = datetime(2025, 6, 2, 12, 0)


def templates(count: int = 2) -> np.ndarray:
    return RNG.normal(0, 0.1, size=(count, 128)).astype(np.float32)


def person(person_id: str = "R-0203-1", **changes: object) -> Person:
    return Person(id=person_id, templates=templates(), **changes)  # type: ignore[arg-type]


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def store(tmp_path: Path, key: bytes) -> WhitelistStore:
    return WhitelistStore(tmp_path / "state" / "whitelist.bin", key, tmp_path / "state" / "audit.log")


# --- decisions ------------------------------------------------------------------------------------

def test_check_follows_the_decision_chain() -> None:
    wl = Whitelist([
        person("R-1"),
        person("R-2", enabled=False),
        person("V-3", valid_from=parse_instant("2025-06-01"), valid_until=parse_instant("2025-06-02", end_of_day=True)),
        person("R-4", gates=("main",)),
        person("R-5", schedule=(Window.parse("mon-fri 06:00-23:00"),)),
        person("R-6", enabled=False, gates=("side",), valid_until=parse_instant("2020-01-01")),
    ])
    assert wl.check("R-1", "main", MONDAY_NOON).ok
    assert wl.check("nobody", "main", MONDAY_NOON).reason == "stranger"
    assert wl.check(None, "main", MONDAY_NOON).reason == "stranger"
    assert wl.check("R-2", "main", MONDAY_NOON).reason == "disabled"
    # disabled is reported before expired and gate, as the chain says
    assert wl.check("R-6", "main", MONDAY_NOON).reason == "disabled"
    assert wl.check("V-3", "main", MONDAY_NOON)  # inside its validity
    assert wl.check("V-3", "main", datetime(2025, 6, 2, 23, 59)).ok  # a date-only until includes that day
    assert wl.check("V-3", "main", datetime(2025, 6, 3, 0, 0)).reason == "expired"
    assert wl.check("V-3", "main", datetime(2025, 5, 31, 23, 59)).reason == "expired"
    assert wl.check("R-4", "main", MONDAY_NOON).ok
    assert wl.check("R-4", "side", MONDAY_NOON).reason == "gate"
    assert wl.check("R-5", "side", MONDAY_NOON).ok
    assert wl.check("R-5", "side", MONDAY_NOON.replace(hour=23, minute=30)).reason == "schedule"
    assert wl.check("R-5", "side", MONDAY_NOON + timedelta(days=5)).reason == "schedule"  # Saturday
    verdict = wl.check("R-5", "side", MONDAY_NOON + timedelta(days=5))
    assert not verdict and verdict.person_id == "R-5"


def test_aware_and_naive_now_agree() -> None:
    wl = Whitelist([person("R-5", schedule=(Window.parse("mon-fri 06:00-23:00"),))])
    aware = MONDAY_NOON.astimezone()
    assert wl.check("R-5", "g", aware).ok == wl.check("R-5", "g", MONDAY_NOON).ok is True


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ("mon-fri 06:00-23:00", MONDAY_NOON, True),
        ("mon-fri 06:00-23:00", MONDAY_NOON.replace(hour=5, minute=59), False),
        ("mon-fri 06:00-23:00", MONDAY_NOON.replace(hour=23, minute=0), False),  # end is exclusive
        ("sat,sun 08:00-20:00", MONDAY_NOON, False),
        ("sat,sun 08:00-20:00", MONDAY_NOON + timedelta(days=6), True),  # Sunday
        # overnight, every day
        ("22:00-06:00", MONDAY_NOON.replace(hour=23), True),
        ("22:00-06:00", MONDAY_NOON.replace(hour=5, minute=59), True),
        ("22:00-06:00", MONDAY_NOON.replace(hour=6), False),
        ("22:00-06:00", MONDAY_NOON, False),
        # overnight starting Friday: Friday night and Saturday morning, not Friday morning
        ("fri 22:00-06:00", datetime(2025, 6, 6, 23, 0), True),
        ("fri 22:00-06:00", datetime(2025, 6, 7, 3, 0), True),
        ("fri 22:00-06:00", datetime(2025, 6, 6, 3, 0), False),
        ("fri 22:00-06:00", datetime(2025, 6, 7, 23, 0), False),
        # sun night wraps to Monday morning
        ("sun 22:00-06:00", MONDAY_NOON.replace(hour=1), True),
        ("fri-mon 07:00-08:00", datetime(2025, 6, 8, 7, 30), True),  # Sunday within a wrapping range
        ("fri-mon 07:00-08:00", datetime(2025, 6, 4, 7, 30), False),  # Wednesday
        ("daily 00:00-24:00", MONDAY_NOON.replace(hour=23, minute=59), True),
    ],
)
def test_schedule_windows(window: str, moment: datetime, inside: bool) -> None:
    assert Window.parse(window).contains(moment) is inside
    assert Window.parse(str(Window.parse(window))) == Window.parse(window)  # round trip through the text form


@pytest.mark.parametrize("text", ["mon-fri", "06:00-23:00-01:00", "funday 06:00-07:00", "mon 25:00-26:00",
                                  "mon 06:00-06:00", "mon 6-7"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Window.parse(text)


def test_person_validation() -> None:
    with pytest.raises(ValueError, match="person id"):
        person("R 0203")
    with pytest.raises(ValueError, match="gate"):
        person(gates=("Main Gate",))
    with pytest.raises(ValueError, match="128"):
        Person(id="R-1", templates=np.zeros((1, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="128"):
        Person(id="R-1", templates=np.full((1, 128), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="before"):
        person(valid_from=parse_instant("2025-06-02"), valid_until=parse_instant("2025-06-01"))


def test_plates_are_normalised_and_unique() -> None:
    assert normalise_plate("京a·12345") == normalise_plate(" 京A 12345 ") == "京A12345"
    assert normalise_plate("沪b-d1234-5") == "沪BD12345"
    assert normalise_plate("Ｂ１２３ＡＢ") == "B123AB"  # typed on a Chinese keyboard's full-width mode
    assert normalise_plate("А123ВС 77") == "A123BC77"  # Cyrillic, as the plate is printed; read as Latin
    with pytest.raises(ValueError):
        normalise_plate("A1")
    wl = Whitelist([person("R-1", plates=("京a·12345", "京A12345", "粤B 88888"))])
    assert wl.get("R-1").plates == ("京A12345", "粤B88888")  # type: ignore[union-attr]
    assert wl.plates() == {"京A12345": "R-1", "粤B88888": "R-1"}
    with pytest.raises(ValueError, match="already belongs to R-1"):
        wl.put(person("R-2", plates=("京A-12345",)))
    wl.remove("R-1")
    assert wl.plates() == {}


def test_plates_spelled_with_o_or_zero_match_one_owner_and_refuse_two() -> None:
    # One person listing both spellings (the matcher takes O and 0 for one character) is given to
    # the matcher once, so that person's car is still matched.
    one = Whitelist([person("R-1", plates=("ABO123", "AB0123", "京A12345"))])
    assert one.plates() == {"ABO123": "R-1", "京A12345": "R-1"}
    assert match_plate("AB0123", list(one.plates()), 0) == "ABO123"
    # Two people's are a tie: R-2 (disabled) read exactly is not let in as R-1, nor R-1 as R-2.
    two = Whitelist([person("R-1", plates=("ABO123",)), person("R-2", plates=("AB0123",), enabled=False)])
    assert two.plates() == {"ABO123": "R-1", "AB0123": "R-2"}
    assert match_plate("AB0123", list(two.plates()), 0) is None
    assert match_plate("ABO123", list(two.plates()), 0) is None


def test_gallery_is_cached_and_rebuilt_on_change() -> None:
    first, second = person("R-1"), person("R-2")
    wl = Whitelist([first])
    gallery = wl.gallery()
    assert wl.gallery() is gallery and len(gallery) == 2
    assert wl.gallery().match(first.templates[1]).person_id == "R-1"
    wl.put(second)
    assert wl.gallery() is not gallery and len(wl.gallery()) == 4
    assert wl.gallery().match(second.templates[0]).person_id == "R-2"
    wl.remove("R-2")
    assert wl.gallery().person_ids == ("R-1",)


# --- store ----------------------------------------------------------------------------------------

def test_round_trip_keeps_everything(store: WhitelistStore) -> None:
    original = person("R-1", name="张三", gates=("main", "side"), schedule=(Window.parse("22:00-06:00"),),
                      valid_from=parse_instant("2025-01-01T08:30"), valid_until=parse_instant("2026-01-01"),
                      plates=("京A12345",))
    wl = Whitelist([original, person("V-2", enabled=False)], bundle_version=7)
    store.save(wl)
    loaded = store.load()
    assert loaded.bundle_version == 7 and len(loaded) == 2
    got = loaded.get("R-1")
    assert got is not None
    assert got.to_record() == original.to_record()
    assert got.templates.dtype == np.float32 and np.array_equal(got.templates, original.templates)
    assert loaded.get("V-2").enabled is False  # type: ignore[union-attr]
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_missing_file_is_an_empty_whitelist(store: WhitelistStore) -> None:
    assert len(store.load()) == 0 and store.mtime_ns() is None and store.change_token() is None


def test_every_write_changes_the_token_the_daemon_watches(store: WhitelistStore) -> None:
    previous = store.change_token()
    for _ in range(5):  # back to back, well within one mtime tick on a coarse clock
        store.save(Whitelist([person("R-1")]))
        token = store.change_token()
        # the temp file is made while the current file exists, so its inode always differs from it
        assert token is not None and token != previous
        previous = token


def test_file_is_encrypted_and_each_write_uses_a_fresh_nonce(store: WhitelistStore) -> None:
    wl = Whitelist([person("R-1", name="Zhang San", plates=("京A12345",))])
    store.save(wl)
    first = store.path.read_bytes()
    store.save(wl)
    second = store.path.read_bytes()
    for secret in (b"Zhang San", b"R-1", "京A12345".encode(), wl.get("R-1").templates.tobytes()[:64]):  # type: ignore[union-attr]
        assert secret not in first
    assert HEADER.unpack_from(first)[3] != HEADER.unpack_from(second)[3]
    assert first[HEADER.size :] != second[HEADER.size :]


def test_every_single_byte_change_is_refused(store: WhitelistStore, key: bytes) -> None:
    store.save(Whitelist([person("R-1")]))
    blob = store.path.read_bytes()
    # every header byte and a sample of ciphertext/tag bytes
    for offset in [*range(HEADER.size), *range(HEADER.size, len(blob), 97), len(blob) - 1]:
        damaged = bytearray(blob)
        damaged[offset] ^= 0x01
        with pytest.raises(WhitelistError):
            decrypt(bytes(damaged), key)
    store.path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WhitelistError, match="modified or damaged"):
        store.load()


def test_tampered_ciphertext_message(store: WhitelistStore) -> None:
    store.save(Whitelist([person("R-1")]))
    blob = bytearray(store.path.read_bytes())
    blob[HEADER.size + 3] ^= 0xFF
    store.path.write_bytes(bytes(blob))
    with pytest.raises(WhitelistError, match=r"modified or damaged.*not loaded"):
        store.load()


def test_wrong_key_is_refused_with_key_ids(store: WhitelistStore) -> None:
    store.save(Whitelist([person("R-1")]))
    other = WhitelistStore(store.path, os.urandom(32))
    with pytest.raises(WhitelistError, match=f"another key.*{store.key_id}.*{other.key_id}"):
        other.load()


def test_not_a_whitelist_file(store: WhitelistStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"residents: [alice]\n" * 4)
    with pytest.raises(WhitelistError, match="not an edge-agent whitelist"):
        store.load()


def test_future_format_version_is_named(store: WhitelistStore, key: bytes) -> None:
    blob = bytearray(encrypt(Whitelist(), key))
    blob[7] = 2
    with pytest.raises(WhitelistError, match="format version 2"):
        decrypt(bytes(blob), key)


# --- keys -----------------------------------------------------------------------------------------

def test_key_formats(tmp_path: Path) -> None:
    raw = os.urandom(32)
    texts = [raw, raw.hex().encode() + b"\n", base64.b64encode(raw), base64.urlsafe_b64encode(raw) + b"\n",
             base64.urlsafe_b64encode(raw).rstrip(b"=")]
    for text in texts:
        assert parse_key(text, "test") == raw
    for bad in (b"", b"short", os.urandom(31), base64.b64encode(os.urandom(16))):
        with pytest.raises(WhitelistError, match="not a 256-bit key"):
            parse_key(bad, "test")


def test_installer_style_key_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "whitelist.key"
    write_new_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes().strip()) == 44  # like install.sh: base64 of 32 bytes
    assert len(read_key_file(path)) == 32
    with pytest.raises(WhitelistError, match="refusing to overwrite"):
        write_new_key(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "whitelist.key"
    write_new_key(path)
    path.chmod(mode)
    with pytest.raises(WhitelistError, match=f"readable by group or other \\(mode {mode:04o}\\).*chmod 600"):
        read_key_file(path)


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(WhitelistError, match=r"does not exist.*whitelist keygen"):
        read_key_file(tmp_path / "nope.key")


def test_config_key_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    write_new_key(credentials / "whitelist.key")
    (credentials / "whitelist.key").chmod(0o440)  # systemd may show an ACL mask here; the directory is private
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = WhitelistConfig()  # default: $CREDENTIALS_DIRECTORY/whitelist.key
    assert read_whitelist_key(config) == read_key_file(credentials / "whitelist.key")
    monkeypatch.setenv("WL_KEY", os.urandom(32).hex())
    assert read_whitelist_key(WhitelistConfig.model_validate({"key": {"env": "WL_KEY"}})) == bytes.fromhex(
        os.environ["WL_KEY"])


def test_paths_default_to_the_state_dir(tmp_path: Path) -> None:
    paths = whitelist_paths(WhitelistConfig(), tmp_path)
    assert paths.file == tmp_path / "whitelist.bin" and paths.audit_log == tmp_path / "whitelist-audit.log"
    relative = WhitelistConfig.model_validate({"file": "wl/people.bin", "bundle_public_key": "platform.pub"})
    paths = whitelist_paths(relative, tmp_path / "state", base_dir=tmp_path)
    assert paths.file == tmp_path / "wl" / "people.bin" and paths.bundle_public_key == tmp_path / "platform.pub"
    with pytest.raises(ValueError):
        WhitelistConfig.model_validate({"key": "inline-secret"})


# --- atomic writes ---------------------------------------------------------------------------------

def test_failed_rename_keeps_the_old_whitelist(store: WhitelistStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(Whitelist([person("R-1")]))
    before = store.path.read_bytes()

    def power_cut(*_args: object) -> None:
        raise OSError("simulated power cut before rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"), store.edit() as wl:
        wl.put(person("R-2"))
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [p.id for p in store.load()] == ["R-1"]
    assert not list(store.path.parent.glob(".*.tmp"))


def test_writer_killed_between_temp_write_and_rename(store: WhitelistStore) -> None:
    store.save(Whitelist([person("R-1")]))
    before = store.path.read_bytes()
    pid = os.fork()
    if pid == 0:  # child: write a new whitelist but hang just before the rename, like a power cut
        try:
            os.replace = lambda *_a: time.sleep(60)  # type: ignore[assignment]
            with store.edit() as wl:
                wl.put(person("R-2"))
        finally:
            os._exit(0)
    temps: list[Path] = []
    deadline = time.monotonic() + 10
    while not temps and time.monotonic() < deadline:
        temps = list(store.path.parent.glob(".whitelist.bin.*.tmp"))
        time.sleep(0.01)
    time.sleep(0.05)  # let it finish the fsync
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert temps, "the writer never wrote its temporary file"
    assert store.path.read_bytes() == before
    assert [p.id for p in store.load()] == ["R-1"]
    # the next change (the lock died with the writer) works and clears the leftover temporary file
    with store.edit() as wl:
        wl.put(person("R-3"))
    assert [p.id for p in store.load()] == ["R-1", "R-3"]
    assert not list(store.path.parent.glob(".*.tmp"))


def test_exception_inside_edit_changes_nothing(store: WhitelistStore) -> None:
    store.save(Whitelist([person("R-1")]))
    mtime = store.mtime_ns()
    with pytest.raises(RuntimeError), store.edit() as wl:
        wl.remove("R-1")
        raise RuntimeError("technician pressed ctrl-c")
    assert store.mtime_ns() == mtime and "R-1" in store.load()


def test_rekey(store: WhitelistStore) -> None:
    store.save(Whitelist([person("R-1", name="李四")], bundle_version=3))
    new_key = os.urandom(32)
    new_store = store.rekey(new_key)
    assert new_store.key_id != store.key_id
    loaded = new_store.load()
    assert loaded.bundle_version == 3 and loaded.get("R-1").name == "李四"  # type: ignore[union-attr]
    with pytest.raises(WhitelistError, match="another key"):
        store.load()


def test_audit_log_has_ids_never_names(store: WhitelistStore) -> None:
    with store.edit() as wl:
        wl.put(person("R-1", name="王五"))
    store.audit.write("add", "R-1", templates=2)
    store.audit.write("remove", "R-1")
    assert store.audit.path is not None
    text = store.audit.path.read_text(encoding="utf-8")
    assert "王五" not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["action"] for e in entries] == ["save", "add", "remove"]  # the store records each generation
    assert entries[0]["generation"] == 1 and entries[0]["people"] == 1 and entries[0]["person"] is None
    assert all(set(e) >= {"time", "actor", "action", "person"} and e["person"] == "R-1" for e in entries[1:])
    assert store.audit.path.stat().st_mode & 0o777 == 0o600
