"""Ed25519-signed platform commands: keys, the canonical form, signing, verifying, replay memory.

A command is a JSON object ``{"id", "name", "node", "issued_at", "args", "sig"}``.  The signature
covers the canonical form of every other field, so a compromised broker can neither forge a command,
change its arguments, send it to another node (``node``) or another command topic (``name``), nor
replay it (``id`` is remembered until the command is too old to be accepted anyway).

Canonical form (close to RFC 8785 / JCS): UTF-8 JSON, object keys sorted, no whitespace, strings not
ASCII-escaped, integral numbers without a fraction (``5.0`` → ``5``), NaN/Infinity refused.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.events import new_event_id, rfc3339
from agent.sqlite_files import StorageReports, open_database

SIGNATURE_FIELD = "sig"
REPLAY_SCHEMA = ("CREATE TABLE IF NOT EXISTS seen_commands (id TEXT PRIMARY KEY, issued_at REAL NOT NULL)",)


class CommandRejected(ValueError):
    """A command that must not run; the message is the reason sent back on cmd/result."""


# --- keys -----------------------------------------------------------------------------------------

def write_keypair(prefix: Path) -> tuple[Path, Path]:
    """Write PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; refusing to overwrite a key")
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    pub_path.write_bytes(public_pem(private.public_key()))
    return key_path, pub_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """PEM public key, or the raw 32-byte key in base64 on one line."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: not an Ed25519 public key")
        return key
    raw = base64.b64decode(data.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


# --- canonical form -------------------------------------------------------------------------------

def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity have no canonical form")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("object keys must be strings")
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    raise ValueError(f"{type(value).__name__} is not JSON")


def canonical_json(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed: ``payload`` without ``sig``, in canonical JSON."""
    body = {key: item for key, item in payload.items() if key != SIGNATURE_FIELD}
    return json.dumps(_normalise(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def sign_command(
    key: Ed25519PrivateKey, name: str, node: str, args: dict[str, Any] | None = None, *,
    command_id: str | None = None, issued_at: datetime | None = None,
) -> dict[str, Any]:
    """A ready-to-publish command for ``{root}/cmd/{name}`` on node ``site/building/node_id``."""
    payload: dict[str, Any] = {
        "id": command_id or new_event_id(), "name": name, "node": node,
        "issued_at": rfc3339(issued_at or datetime.now(UTC)), "args": args or {},
    }
    payload[SIGNATURE_FIELD] = base64.b64encode(key.sign(canonical_json(payload))).decode()
    return payload


def verify_signature(key: Ed25519PublicKey, payload: dict[str, Any]) -> None:
    signature = payload.get(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        raise CommandRejected("missing signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raise CommandRejected("signature is not base64") from None
    if len(raw) != 64:
        raise CommandRejected("signature has the wrong length")
    try:
        key.verify(raw, canonical_json(payload))
    except (InvalidSignature, ValueError):
        raise CommandRejected("bad signature") from None


# --- replay memory --------------------------------------------------------------------------------

class ReplayCache:
    """Command ids already accepted, kept on disk so a restart does not reopen the replay window.

    Only ids of correctly signed, fresh commands are stored, and each is forgotten once its command
    is older than ``keep_seconds`` (max age + skew): by then the age check refuses it anyway, so the
    table stays as small as the number of commands the platform sends in that window.
    """

    def __init__(self, path: Path, keep_seconds: float, reports: StorageReports | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A damaged file is moved aside and its ids salvaged (agent.sqlite_files), never a reason to stop.
        self._conn = open_database(Path(path), REPLAY_SCHEMA, reports or StorageReports()).conn
        self._keep = keep_seconds
        self._lock = threading.Lock()

    def remember(self, command_id: str, issued_at: float, now: float | None = None) -> bool:
        """Record ``command_id``; False if it was already there (a replay).

        Never fails on storage: if the file refuses the write (a full disk, an I/O error), the id is
        kept in memory (checked like the file) and written by :meth:`persist_unsaved` once it can be.
        A restart in that time forgets the unsaved ids: docs/durability.md.
        """
        now = time.time() if now is None else now
        with self._lock:
            memory = self._memory()
            for seen in [seen for seen, issued in memory.items() if issued < now - self._keep]:
                del memory[seen]
            if command_id in memory:
                return False
            saved = True
            try:
                if self._conn.execute("SELECT 1 FROM seen_commands WHERE id = ?", [command_id]).fetchone():
                    return False
                self._write_ids({command_id: issued_at}, now)
            except sqlite3.IntegrityError:
                return False
            except sqlite3.Error as exc:  # the file cannot say or take it: memory decides, and keeps it
                saved, self.unsaved_error = False, str(exc)
            memory[command_id] = issued_at  # accepted: refused from now on, whatever happens to the file
            if not saved:
                self._unsaved()[command_id] = issued_at
            return True

    def persist_unsaved(self, now: float | None = None) -> str | None:
        """Write the ids kept in memory while the file refused writes; the error if it still does."""
        now = time.time() if now is None else now
        with self._lock:
            unsaved = self._unsaved()
            if not unsaved:
                return None
            try:
                self._write_ids({key: issued for key, issued in unsaved.items() if issued >= now - self._keep}, now)
            except sqlite3.Error as exc:
                self.unsaved_error = str(exc)
                return self.unsaved_error
            unsaved.clear()
            self.unsaved_error = None
            return None

    @property
    def unsaved(self) -> int:
        """Accepted command ids not yet on disk."""
        return len(self._unsaved())

    def _write_ids(self, ids: dict[str, float], now: float) -> None:
        """Forget expired ids and add ``ids``, in one transaction (caller holds the lock)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("DELETE FROM seen_commands WHERE issued_at < ?", [now - self._keep])
            if len(ids) == 1:  # a fresh command: a duplicate is a replay (IntegrityError)
                self._conn.execute("INSERT INTO seen_commands (id, issued_at) VALUES (?, ?)", next(iter(ids.items())))
            else:
                self._conn.executemany("INSERT OR IGNORE INTO seen_commands (id, issued_at) VALUES (?, ?)",
                                       list(ids.items()))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # Memory beside the file, kept out of __init__ (which opens and heals the file): ids accepted by this
    # process within the window, and the subset the file has not taken yet.
    def _memory(self) -> dict[str, float]:
        return self.__dict__.setdefault("_accepted_ids", {})

    def _unsaved(self) -> dict[str, float]:
        return self.__dict__.setdefault("_unsaved_ids", {})

    unsaved_error: str | None = None  # why the file refused the last write; None once it took them all

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM seen_commands").fetchone()[0]) + len(self._unsaved())

    def close(self) -> None:
        with self._lock:
            self._conn.close()
