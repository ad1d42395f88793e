"""The whitelist on disk: AES-256-GCM encrypted, written atomically, every change audited.

File format (version 1)::

    offset  size  field
    0       6     magic  b"EAWL\\r\\n"   (the CR LF catches a text-mode transfer that mangled the file)
    6       2     format version, big-endian (1)
    8       8     key id: SHA-256("edge-agent whitelist key id" || key)[:8], names the key without revealing it
    16      12    nonce, fresh from os.urandom for every write
    28      ...   AES-256-GCM ciphertext || 16-byte tag

The first 16 bytes (magic, version, key id) are the associated data: changing any of them, or any
ciphertext byte, fails authentication. The plaintext is ``u32 length || JSON || float32 matrix``: the JSON
holds ``bundle_version`` and one record per person with its template count; the matrix (little-endian
float32, 128 columns) holds every template in the same order. 10,000 people with 3 templates each is
~16 MB on disk and loads in a fraction of a second.

Writes go to a temporary file in the same directory, are fsynced, renamed over the old file and the
directory is fsynced, so a power cut leaves either the old or the new whitelist, never a broken one.
Read-modify-write (``store.edit()``) holds an flock on ``FILE.lock`` so the CLI and the daemon never
lose each other's changes. The daemon notices a change by the file's mtime.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.whitelist import ENCODING_SIZE, Person, Whitelist

MAGIC = b"EAWL\r\n"
FORMAT_VERSION = 1
HEADER = struct.Struct(">6sH8s12s")  # magic, version, key id, nonce
AAD_SIZE = 16
KEY_SIZE = 32
CREDENTIALS_VAR = "$CREDENTIALS_DIRECTORY"
SYSTEM_KEY_DIR = Path("/etc/edge-agent")


class WhitelistError(ValueError):
    """The whitelist or its key cannot be read or written; the message says why and what to do."""


# --- keys -----------------------------------------------------------------------------------------

def parse_key(data: bytes, source: str) -> bytes:
    """A 256-bit key from raw 32 bytes, or text: 64 hex digits or base64 (standard or URL-safe)."""
    if len(data) == KEY_SIZE:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_SIZE:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text.decode("ascii"))
    with contextlib.suppress(ValueError, binascii.Error):
        padded = text + b"=" * (-len(text) % 4)
        key = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
        if len(key) == KEY_SIZE:
            return key
    raise WhitelistError(
        f"{source}: not a 256-bit key (expected 32 raw bytes, 64 hex digits or base64 of 32 bytes); "
        "make one with `edge-agent whitelist keygen --out FILE`"
    )


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"edge-agent whitelist key id" + key).digest()[:8]


def resolve_key_path(path: Path) -> Path:
    """Expand ``$VARS``. ``$CREDENTIALS_DIRECTORY/NAME`` outside the service (a technician's sudo shell,
    where systemd has not set the variable) means the file systemd loads it from: /etc/edge-agent/NAME."""
    text = str(path)
    if text.startswith(CREDENTIALS_VAR) and "CREDENTIALS_DIRECTORY" not in os.environ:
        return SYSTEM_KEY_DIR / text[len(CREDENTIALS_VAR):].lstrip("/")
    return Path(os.path.expandvars(text))


def read_key_file(path: Path) -> bytes:
    """Read a key file, refusing one that group or other may read (except systemd's credentials
    directory, which only the service's user can open whatever the mode bits show)."""
    path = resolve_key_path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise WhitelistError(
            f"key file {path} does not exist; make one with `edge-agent whitelist keygen --out {path}`"
        ) from None
    except PermissionError:
        raise WhitelistError(f"key file {path}: permission denied (run as root or as the service user)") from None
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    in_credentials = credentials is not None and path.parent == Path(credentials)
    if info.st_mode & 0o077 and not in_credentials:
        raise WhitelistError(
            f"key file {path} is readable by group or other (mode {info.st_mode & 0o777:04o}); "
            f"run `chmod 600 {path}` — anyone who can read it can read the whitelist"
        )
    try:
        return parse_key(path.read_bytes(), str(path))
    except PermissionError:
        raise WhitelistError(f"key file {path}: permission denied (run as root or as the service user)") from None


def new_key_text() -> bytes:
    """A random key as URL-safe base64 (44 characters and a newline), like systemd/install.sh writes."""
    return base64.urlsafe_b64encode(os.urandom(KEY_SIZE)) + b"\n"


def write_new_key(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WhitelistError(f"{path} exists; refusing to overwrite a key (the whitelist would be lost)") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(new_key_text())
        handle.flush()
        os.fsync(handle.fileno())


# --- the encrypted file ---------------------------------------------------------------------------

def encode_plaintext(whitelist: Whitelist) -> bytes:
    people = list(whitelist)
    records = [{**p.to_record(), "templates": len(p.templates)} for p in people]
    document = json.dumps({"bundle_version": whitelist.bundle_version, "people": records},
                          ensure_ascii=False, separators=(",", ":")).encode()
    blocks = [p.templates.astype("<f4", copy=False).tobytes() for p in people]
    return struct.pack(">I", len(document)) + document + b"".join(blocks)


def decode_plaintext(data: bytes) -> Whitelist:
    (length,) = struct.unpack_from(">I", data)
    document = json.loads(data[4 : 4 + length])
    matrix = np.frombuffer(data, dtype="<f4", offset=4 + length).reshape(-1, ENCODING_SIZE)
    people, row = [], 0
    for record in document["people"]:
        count = int(record.pop("templates"))
        people.append(Person.from_record(record, matrix[row : row + count].astype(np.float32)))
        row += count
    if row != len(matrix):
        raise ValueError("template count does not match the template block")
    return Whitelist(people, bundle_version=int(document["bundle_version"]))


def encrypt(whitelist: Whitelist, key: bytes) -> bytes:
    nonce = os.urandom(12)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, key_id(key), nonce)
    return header + AESGCM(key).encrypt(nonce, encode_plaintext(whitelist), header[:AAD_SIZE])


def decrypt(blob: bytes, key: bytes, source: str = "whitelist") -> Whitelist:
    if len(blob) < HEADER.size + 16 or blob[: len(MAGIC)] != MAGIC:
        raise WhitelistError(f"{source} is not an edge-agent whitelist file (bad magic or truncated)")
    _magic, version, file_key_id, nonce = HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise WhitelistError(f"{source}: format version {version} is not supported by this agent (expects 1)")
    try:
        plaintext = AESGCM(key).decrypt(nonce, blob[HEADER.size :], blob[:AAD_SIZE])
    except InvalidTag:
        if file_key_id != key_id(key):
            raise WhitelistError(
                f"{source} was encrypted with another key (key id {file_key_id.hex()}, this key is "
                f"{key_id(key).hex()}): check whitelist.key in the config, or the file was modified"
            ) from None
        raise WhitelistError(
            f"{source} was modified or damaged (authentication failed); it was not loaded. Restore it from "
            "a backup or re-apply the platform's full bundle"
        ) from None
    try:
        return decode_plaintext(plaintext)
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise WhitelistError(f"{source}: authenticated but not a valid whitelist ({exc})") from None


def _owner_of(directory: Path) -> tuple[int, int] | None:
    """When root (sudo) writes into the service's state dir, files must stay the service user's."""
    if os.geteuid() != 0:
        return None
    info = directory.stat()
    return info.st_uid, info.st_gid


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        owner = _owner_of(directory)
        if owner is not None:
            os.chown(temp, *owner)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- audit ----------------------------------------------------------------------------------------

def current_actor() -> str:
    """The person behind ``sudo`` if any, else the user running the command."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


class AuditLog:
    """Append-only JSON lines: time, actor, action, person id (and small counts). Never a name or template."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, action: str, person_id: str | None = None, actor: str | None = None, **details: Any) -> None:
        if self.path is None:
            return
        entry = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "actor": actor or current_actor(),
                 "action": action, "person": person_id, **details}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        owner = _owner_of(self.path.parent)
        if new and owner is not None:
            os.chown(self.path, *owner)


# --- the store ------------------------------------------------------------------------------------

class WhitelistStore:
    """The encrypted file at ``path`` opened with ``key``. A missing file is an empty whitelist."""

    def __init__(self, path: Path, key: bytes, audit_log: Path | None = None) -> None:
        if len(key) != KEY_SIZE:
            raise WhitelistError("the whitelist key must be 32 bytes (AES-256)")
        self.path = Path(path)
        self._key = key
        self.audit = AuditLog(audit_log)

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose``, derived from the whitelist key (HKDF-SHA256): the node keeps
        one secret, and knowing a derived key tells nothing of the whitelist key."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=f"edge-agent {purpose}".encode()).derive(self._key)

    @property
    def key_id(self) -> str:
        return key_id(self._key).hex()

    def exists(self) -> bool:
        return self.path.exists()

    def mtime_ns(self) -> int | None:
        """For the daemon's change watch: None while there is no file."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def change_token(self) -> tuple[int, int, int] | None:
        """(inode, mtime_ns, size): every atomic write renames a new inode into place, so two writes
        within one mtime tick (coarse file-system clocks) still give different tokens. None: no file."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def load(self) -> Whitelist:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return Whitelist()
        except PermissionError:
            raise WhitelistError(f"{self.path}: permission denied (run as root or as the service user)") from None
        return decrypt(blob, self._key, str(self.path))

    def save(self, whitelist: Whitelist) -> None:
        atomic_write(self.path, encrypt(whitelist, self._key))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive flock on ``FILE.lock``: one read-modify-write at a time (CLI and daemon)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def edit(self) -> Iterator[Whitelist]:
        """Load under the lock, let the caller change it, save atomically when the block ends without an
        exception (an exception leaves the file as it was)."""
        with self.locked():
            self._remove_stale_temps()
            whitelist = self.load()
            yield whitelist
            self.save(whitelist)

    def _remove_stale_temps(self) -> None:
        """A writer killed between its temp write and the rename leaves ``.FILE.PID.tmp`` behind; under
        the lock no other writer is running, so any such file is garbage."""
        for temp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def rekey(self, new_key: bytes) -> WhitelistStore:
        """Re-encrypt under ``new_key`` (atomically) and return the store for the new key. The old key no
        longer opens the file afterwards: install the new key file before the daemon next starts."""
        new_store = WhitelistStore(self.path, new_key, self.audit.path)
        with self.locked():
            new_store.save(self.load())
        return new_store
