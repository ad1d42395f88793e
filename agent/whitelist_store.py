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
holds ``bundle_version``, ``generation`` and ``saved_at`` (see :mod:`agent.whitelist_generation`: a file
older than the newest the node accepted is refused; a file without them is from before generations,
accepted once and migrated) and one record per person with its template count; the matrix (little-endian
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
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.whitelist import ENCODING_SIZE, Person, Whitelist
from agent.whitelist_generation import NONE, Stamp, Witnesses

log = logging.getLogger("edge_agent.whitelist")

MAGIC = b"EAWL\r\n"
FORMAT_VERSION = 1
HEADER = struct.Struct(">6sH8s12s")  # magic, version, key id, nonce
AAD_SIZE = 16
KEY_SIZE = 32
CREDENTIALS_VAR = "$CREDENTIALS_DIRECTORY"
SYSTEM_KEY_DIR = Path("/etc/edge-agent")
MAX_KEY_BYTES = 4096  # a key is 32 raw bytes or 44-64 characters of text; anything this big is not one
MAX_WHITELIST_BYTES = 256 << 20  # 10,000 people with 3 templates each is ~16 MB


class WhitelistError(ValueError):
    """The whitelist or its key cannot be read or written; the message says why and what to do."""


class WhitelistRollback(WhitelistError):
    """The file is older than the newest generation this node has accepted: a copy put back."""


class WhitelistMissing(WhitelistError):
    """The node had a whitelist and its file is gone."""


# --- reading files that may not be what they claim -----------------------------------------------

def read_regular_file(path: Path, what: str, max_bytes: int, *, secret: bool = False) -> bytes:
    """The bytes of ``path`` under the rule every file the agent reads follows (regular file, opened
    without blocking, size and, when ``secret``, mode checked: :func:`agent.config_files.read_regular_file`),
    as a :class:`WhitelistError`. FileNotFoundError is the caller's to explain."""
    from agent.config_files import FileCheckError
    from agent.config_files import read_regular_file as read_checked

    try:
        return read_checked(path, what, secret=secret, max_bytes=max_bytes)
    except FileCheckError as exc:
        if exc.missing:
            raise FileNotFoundError(2, str(exc), str(path)) from None
        raise WhitelistError(str(exc)) from None


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
    """Read a key file, refusing one that is not a regular file (a FIFO would hang the reader, a
    directory or device is a wrong path) or that group or other may read (except systemd's credentials
    directory, which only the service's user can open whatever the mode bits show)."""
    path = resolve_key_path(path)
    try:
        data = read_regular_file(path, "key file", MAX_KEY_BYTES, secret=True)
    except FileNotFoundError:
        raise WhitelistError(
            f"key file {path} does not exist; make one with `edge-agent whitelist keygen --out {path}`"
        ) from None
    return parse_key(data, str(path))


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

def encode_plaintext(whitelist: Whitelist, stamp: Stamp = NONE) -> bytes:
    people = list(whitelist)
    records = [{**p.to_record(), "templates": len(p.templates)} for p in people]
    head: dict[str, Any] = {"bundle_version": whitelist.bundle_version}
    if stamp.generation:
        head.update(generation=stamp.generation, saved_at=stamp.saved_at)
    document = json.dumps({**head, "people": records}, ensure_ascii=False, separators=(",", ":")).encode()
    blocks = [p.templates.astype("<f4", copy=False).tobytes() for p in people]
    return struct.pack(">I", len(document)) + document + b"".join(blocks)


def decode_plaintext(data: bytes) -> tuple[Whitelist, Stamp]:
    (length,) = struct.unpack_from(">I", data)
    document = json.loads(data[4 : 4 + length])
    generation, saved_at = document.get("generation", 0), document.get("saved_at")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0 or \
            not (saved_at is None or isinstance(saved_at, str)):
        raise ValueError("generation or saved_at has the wrong type")
    matrix = np.frombuffer(data, dtype="<f4", offset=4 + length).reshape(-1, ENCODING_SIZE)
    people, row = [], 0
    for record in document["people"]:
        count = int(record.pop("templates"))
        people.append(Person.from_record(record, matrix[row : row + count].astype(np.float32)))
        row += count
    if row != len(matrix):
        raise ValueError("template count does not match the template block")
    bundle_version = int(document["bundle_version"])
    return Whitelist(people, bundle_version=bundle_version), Stamp(generation, saved_at, bundle_version, "the file")


def encrypt(whitelist: Whitelist, key: bytes, stamp: Stamp = NONE) -> bytes:
    nonce = os.urandom(12)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, key_id(key), nonce)
    return header + AESGCM(key).encrypt(nonce, encode_plaintext(whitelist, stamp), header[:AAD_SIZE])


def decrypt(blob: bytes, key: bytes, source: str = "whitelist") -> Whitelist:
    return decrypt_stamped(blob, key, source)[0]


def decrypt_stamped(blob: bytes, key: bytes, source: str = "whitelist") -> tuple[Whitelist, Stamp]:
    """The whitelist and the generation written inside it (0 for a file from before generations)."""
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
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise OSError(errno.EINVAL, "the whitelist audit log is not a regular file", str(self.path))
        # O_NONBLOCK: a FIFO put here after the check must give an error, not hang the writer until a reader
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "the whitelist audit log is not a regular file", str(self.path))
            os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        owner = _owner_of(self.path.parent)
        if new and owner is not None:
            os.chown(self.path, *owner)


# --- the store ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredFile:
    """The whitelist file as read: what it holds, the generation inside it and its bytes."""

    whitelist: Whitelist
    stamp: Stamp
    blob: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class WhitelistStore:
    """The encrypted file at ``path`` opened with ``key``. Loading refuses a file older than the newest
    generation the node accepted, and a missing file once there was one; on a new node (no file, no
    witness) a missing file is an empty whitelist."""

    def __init__(self, path: Path, key: bytes, audit_log: Path | None = None) -> None:
        if len(key) != KEY_SIZE:
            raise WhitelistError("the whitelist key must be 32 bytes (AES-256)")
        self.path = Path(path)
        self._key = key
        self.audit = AuditLog(audit_log)
        self.witnesses = Witnesses(self.path, self.audit, self.derived_key("whitelist generation"))
        self.stamp = NONE  # the generation of the file last loaded or saved through this store

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
        within one mtime tick (coarse file-system clocks) still give different tokens. None: no file;
        (-1, errno, 0) when the path cannot be looked at (a symlink loop, a permission)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return -1, exc.errno or 0, 0
        return info.st_ino, info.st_mtime_ns, info.st_size

    # -- reading ---------------------------------------------------------------------------------
    def read_file(self, path: Path | None = None) -> StoredFile | None:
        """``path`` (default: the whitelist) decrypted, without any generation check; None if absent."""
        path = path or self.path
        try:
            blob = read_regular_file(path, "whitelist file", MAX_WHITELIST_BYTES)
        except FileNotFoundError:
            return None
        whitelist, stamp = decrypt_stamped(blob, self._key, str(path))
        return StoredFile(whitelist, stamp, blob)

    def _checked(self) -> tuple[StoredFile | None, Stamp]:
        """The file if the node may use it, and the newest accepted generation; raises otherwise."""
        newest = self.witnesses.newest()  # before the file: a save racing us makes the file newer, not older
        stored = self.read_file()
        if stored is None:
            if self.witnesses.existed():
                raise WhitelistMissing(self._missing_message(newest))
            return None, newest
        if stored.stamp.generation < newest.generation:
            raise WhitelistRollback(
                f"{self.path} is an older copy ({stored.stamp.describe()}) than the whitelist this node already "
                f"accepted ({newest.describe()}; recorded in {newest.where}); it was NOT loaded (anyone removed "
                f"since would be let in again). To go back to it on purpose: `edge-agent whitelist restore "
                f"{self.path}` (audited). Otherwise put the newest whitelist file back."
            )
        return stored, newest

    def _missing_message(self, newest: Stamp) -> str:
        evidence = f"{newest.describe()}, recorded in {newest.where}" if newest.generation else \
            f"the audit log {self.audit.path} or {self.witnesses.counter} says so"
        return (f"whitelist file {self.path} is missing, but this node had one ({evidence}); nobody is "
                "recognised by face or plate until it is back. Restore the newest backup with `edge-agent "
                "whitelist restore BACKUP`, or start again empty on purpose with `edge-agent whitelist "
                "restore --empty` and re-enrol (or have the platform send a full bundle)")

    def load(self) -> Whitelist:
        """The whitelist, if it is not older than the newest the node accepted (WhitelistRollback), not
        missing where there was one (WhitelistMissing), and authentic (WhitelistError)."""
        stored, newest = self._checked()
        if stored is None:
            self.stamp = NONE
            return Whitelist()
        stamp = stored.stamp
        if stamp.generation == 0 or stamp.generation > newest.generation:
            stamp = self._settle(stored)
        self.witnesses.accepted(stamp)
        self.stamp = stamp
        return stored.whitelist

    def _settle(self, stored: StoredFile) -> Stamp:
        """Give a file from before generations its first one (migration), or record a generation its
        witnesses missed (a save cut between writing the file and its counter). Skipped while another
        writer holds the lock (it records its own save) or when the directory is not writable (the file
        is still used; the next load tries again)."""
        try:
            with self.locked(blocking=False):
                again = self.read_file()
                if again is None or again.blob != stored.blob:
                    return stored.stamp  # replaced meanwhile: the next load looks at the new file
                if stored.stamp.generation == 0:
                    migrated = self.save(stored.whitelist, cause="migrate")
                    log.warning("whitelist %s had no generation (made before generations): accepted once and "
                                "saved as generation %d; older copies of it are refused from now on",
                                self.path, migrated.generation)
                    return migrated
                self.witnesses.record(stored.stamp, stored.sha256, people=len(stored.whitelist),
                                      actor=None, cause="recorded on load")
        except BlockingIOError:
            pass
        except OSError as exc:
            log.warning("could not record the generation of %s (%s); it is used as it is", self.path, exc)
        return stored.stamp

    # -- writing ---------------------------------------------------------------------------------
    def save(self, whitelist: Whitelist, *, cause: str = "edit", actor: str | None = None,
             after: int | None = None) -> Stamp:
        """Write ``whitelist`` as the next generation: above ``after`` when given (the caller read the
        witnesses), else above every witness and the file last loaded here."""
        if after is None:
            after = max(self.witnesses.newest().generation, self.stamp.generation)
        stamp = Stamp(after + 1, now_text(), whitelist.bundle_version, "this save")
        blob = encrypt(whitelist, self._key, stamp)
        atomic_write(self.path, blob)
        self.stamp = stamp
        try:
            self.witnesses.record(stamp, hashlib.sha256(blob).hexdigest(), people=len(whitelist), actor=actor,
                                  cause=cause)
        except OSError as exc:  # the file is saved and ahead of its witnesses: the next load records it
            log.warning("whitelist saved as generation %d, but recording it beside the file or in the audit "
                        "log failed (%s)", stamp.generation, exc)
        return stamp

    @contextlib.contextmanager
    def locked(self, *, blocking: bool = True) -> Iterator[None]:
        """Exclusive flock on ``FILE.lock``: one read-modify-write at a time (CLI and daemon).
        ``blocking=False`` raises BlockingIOError when someone else holds it."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def edit(self, *, cause: str = "edit", actor: str | None = None) -> Iterator[Whitelist]:
        """Load under the lock, let the caller change it, save atomically as the next generation when the
        block ends without an exception (an exception leaves the file as it was). A file that may not be
        loaded (older copy, missing) may not be edited either: restore it first."""
        with self.locked():
            self._remove_stale_temps()
            stored, newest = self._checked()
            whitelist = stored.whitelist if stored is not None else Whitelist()
            after = max(newest.generation, stored.stamp.generation if stored else 0)
            yield whitelist
            self.save(whitelist, cause=cause, actor=actor, after=after)

    def restore(self, whitelist: Whitelist, *, source: str, source_sha256: str | None, source_stamp: Stamp,
                actor: str | None = None) -> tuple[Stamp, Stamp]:
        """Make ``whitelist`` (a backup, or empty) the current whitelist on purpose, as a NEW generation
        so it is accepted; (the newest before, the restored one). The bundle version kept is the
        highest known, so a platform bundle older than what the node had cannot be replayed after it."""
        with self.locked():
            self._remove_stale_temps()
            before = self.witnesses.newest()
            current: StoredFile | None = None
            with contextlib.suppress(WhitelistError):  # the file being replaced may be damaged or foreign
                current = self.read_file()
            if current is not None and current.stamp.generation > before.generation:
                before = current.stamp
            whitelist.bundle_version = max(whitelist.bundle_version, before.bundle_version,
                                           current.whitelist.bundle_version if current else 0)
            restored = self.save(whitelist, cause="restore", actor=actor,
                                 after=max(before.generation, source_stamp.generation))
        self.audit.write("restore", None, actor, old_generation=before.generation,
                         new_generation=restored.generation, source=source, source_sha256=source_sha256,
                         source_generation=source_stamp.generation, source_saved_at=source_stamp.saved_at,
                         people=len(whitelist), bundle_version=whitelist.bundle_version)
        return before, restored

    def backup(self, target: Path, actor: str | None = None) -> StoredFile:
        """Copy the current whitelist (still encrypted) to a new file ``target``, mode 0600."""
        with self.locked():
            stored, _newest = self._checked()
            if stored is None:
                raise WhitelistError(f"there is no whitelist file at {self.path} yet: nothing to back up")
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise WhitelistError(f"{target} exists; choose a new name (a backup never overwrites)") from None
            except OSError as exc:
                raise WhitelistError(f"cannot create {target}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "wb") as handle:
                handle.write(stored.blob)
                handle.flush()
                os.fsync(handle.fileno())
        self.audit.write("backup", None, actor, generation=stored.stamp.generation, sha256=stored.sha256,
                         target=str(target), people=len(stored.whitelist))
        return stored

    def _remove_stale_temps(self) -> None:
        """A writer killed between its temp write and the rename leaves ``.FILE.PID.tmp`` behind; under
        the lock no other writer is running, so any such file is garbage."""
        for temp in self.path.parent.glob(f".{self.path.name}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def rekey(self, new_key: bytes) -> WhitelistStore:
        """Re-encrypt under ``new_key`` (atomically, as the next generation) and return the store for the
        new key. The old key no longer opens the file afterwards: install the new key file before the
        daemon next starts."""
        new_store = WhitelistStore(self.path, new_key, self.audit.path)
        with self.locked():
            stored, newest = self._checked()
            whitelist = stored.whitelist if stored is not None else Whitelist()
            after = max(newest.generation, stored.stamp.generation if stored else 0)
            new_store.save(whitelist, cause="rekey", after=after)
        return new_store
