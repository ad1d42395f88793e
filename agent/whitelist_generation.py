"""Whitelist generations: the witnesses that let a node refuse an older whitelist copied back.

Every save of the whitelist (a technician's edit, an enrolment, a platform bundle, a restore) gets the
next generation number. The number is written inside the encrypted file (so it cannot be changed
without the key) and recorded in three witnesses outside it:

1. ``FILE.generation``, a small JSON counter beside the file, with an HMAC under a key derived from the
   whitelist key (``WhitelistStore.derived_key``): fast to read, cannot be raised without the key.
2. The audit log: every save appends a ``save`` line with the same HMAC. The log is only ever appended
   to, so someone who copies back an old whitelist *and* its old counter file still leaves the newer
   ``save`` lines in the log; to roll back they must also cut the log, which erases visible history.
   (The newest is the last verified line: the log is read back from its end.)
3. The running agent's memory: the newest generation this process accepted for the file. While the
   daemon runs, nothing copied back (whatever files come with it) is loaded.

The newest of the three is the floor: a file below it is refused. An HMAC that does not verify (a
forged or damaged line) is ignored, so nobody without the key can raise the floor and lock a node out.
What no local witness can catch is a copy of the whole state directory (file, counter and log) put
back while the agent is stopped; the platform's bundle version is the witness of last resort there
(see docs/whitelist.md).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.whitelist_store import AuditLog

log = logging.getLogger("edge_agent.whitelist")

COUNTER_SUFFIX = ".generation"
SAVE_ACTION = "save"
MAX_COUNTER_BYTES = 4096


@dataclass(frozen=True)
class Stamp:
    """One save: its generation (0 = a file from before generations), when, and the platform bundle
    version it held (a restore keeps the newest, so an old signed bundle cannot be replayed after it)."""

    generation: int = 0
    saved_at: str | None = None
    bundle_version: int = 0
    where: str = ""  # which witness told us, for messages

    def describe(self) -> str:
        if self.generation == 0:
            return "no generation: made before generations"
        return f"generation {self.generation}" + (f", saved {self.saved_at}" if self.saved_at else "")


NONE = Stamp()


def sign(mac_key: bytes, generation: int, saved_at: str | None, bundle_version: int, sha256: str) -> str:
    message = f"edge-agent whitelist generation|{generation}|{saved_at}|{bundle_version}|{sha256}".encode()
    return hmac.new(mac_key, message, hashlib.sha256).hexdigest()


def _verified(record: Any, mac_key: bytes, where: str) -> Stamp | None:
    """The stamp in a counter file or audit line, or None when it is malformed or its HMAC is wrong."""
    if not isinstance(record, dict):
        return None
    generation, saved_at = record.get("generation"), record.get("saved_at")
    bundle_version, sha256, mac = record.get("bundle_version", 0), record.get("sha256"), record.get("mac")
    if not (isinstance(generation, int) and isinstance(bundle_version, int) and isinstance(sha256, str)
            and isinstance(mac, str) and (saved_at is None or isinstance(saved_at, str))):
        return None
    if not hmac.compare_digest(sign(mac_key, generation, saved_at, bundle_version, sha256), mac):
        return None
    return Stamp(generation, saved_at, bundle_version, where)


def _newer(a: Stamp, b: Stamp) -> Stamp:
    return b if b.generation > a.generation else a


# The newest generation accepted in this process, per whitelist file: a reload builds a new store, and
# what the daemon accepted before must still count.
_accepted: dict[str, Stamp] = {}
_accepted_lock = threading.Lock()


class _AuditScan:
    """The newest verified ``save`` line of the audit log. Generations only grow, so the first one found
    reading back from the end is the newest: a log of millions of lines (a full bundle of 10,000 people
    writes 10,000) costs a few blocks, not a whole read. After that only what was appended is parsed."""

    CHUNK = 1 << 16

    def __init__(self, path: Path | None, mac_key: bytes) -> None:
        self.path = path
        self._mac_key = mac_key
        self._inode: int | None = None
        self._offset = 0  # everything before this was looked at
        self._best = NONE
        self.empty = True

    def newest(self) -> Stamp:
        if self.path is None:
            return NONE
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO here must not hang us
        except FileNotFoundError:
            self._inode, self._offset, self._best, self.empty = None, 0, NONE, True
            return NONE
        except OSError as exc:
            log.warning("cannot read the whitelist audit log %s for generations: %s", self.path, exc)
            return self._best
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            self.empty = info.st_size == 0
            if info.st_ino != self._inode or info.st_size < self._offset:  # a new or cut log: from the end
                self._inode, self._best = info.st_ino, NONE
                self._offset = self._scan_back(fd, info.st_size)
            data = os.pread(fd, info.st_size - self._offset, self._offset)
        except OSError as exc:
            log.warning("cannot read the whitelist audit log %s for generations: %s", self.path, exc)
            return self._best
        finally:
            os.close(fd)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being appended is read next time
        self._offset += len(complete)
        for line in complete.splitlines():
            self._take(line)
        return self._best

    def _scan_back(self, fd: int, size: int) -> int:
        """Find the last verified save line before ``size``; the offset to read forward from."""
        end = size
        while end > 0 and os.pread(fd, 1, end - 1) != b"\n":
            end -= 1  # the last line may still be being appended: leave it to the forward read
        position, tail = end, b""
        while position > 0:
            start = max(0, position - self.CHUNK)
            lines = (os.pread(fd, position - start, start) + tail).split(b"\n")
            tail = lines.pop(0) if start > 0 else b""  # maybe cut: completed by the next chunk back
            for line in reversed(lines):
                if self._take(line):
                    return end
            position = start
        return end

    def _take(self, line: bytes) -> bool:
        """Count ``line`` if it is a verified save line; True when it was."""
        if b'"generation"' not in line:
            return False
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
            return False
        if not isinstance(record, dict) or record.get("action") != SAVE_ACTION:
            return False
        stamp = _verified(record, self._mac_key, f"audit log {self.path}")
        if stamp is None:
            return False
        self._best = _newer(self._best, stamp)
        return True


class Witnesses:
    """Where the newest accepted generation of the whitelist at ``file`` is kept, outside the file."""

    def __init__(self, file: Path, audit: AuditLog, mac_key: bytes) -> None:
        self.file = file
        self.counter = file.with_name(file.name + COUNTER_SUFFIX)
        self.audit = audit
        self._mac_key = mac_key
        self._audit_scan = _AuditScan(audit.path, mac_key)

    def newest(self) -> Stamp:
        """The newest generation any witness vouches for (``NONE`` on a node that never saved one)."""
        best = _newer(self._read_counter(), self._audit_scan.newest())  # on a tie, name the file a technician sees
        with _accepted_lock:
            return _newer(best, _accepted.get(str(self.file), NONE))

    def existed(self) -> bool:
        """Did this node ever have a whitelist? A generation, a counter file or any audit line says so."""
        return self.newest().generation > 0 or self.counter.exists() or not self._audit_scan.empty

    def accepted(self, stamp: Stamp) -> None:
        """Remember in memory that this process accepted ``stamp`` (the daemon after a load)."""
        stamp = replace(stamp, where="this running agent's memory (it loaded that generation)")
        with _accepted_lock:
            key = str(self.file)
            _accepted[key] = _newer(_accepted.get(key, NONE), stamp)

    def record(self, stamp: Stamp, sha256: str, *, people: int, actor: str | None, cause: str) -> None:
        """After the file with ``stamp`` is in place: the counter file, then the audit line, then memory.
        In this order a crash leaves the file ahead of its witnesses (accepted, and recorded on the next
        load), never the witnesses ahead of the file (which would refuse the node's own whitelist)."""
        from agent.whitelist_store import atomic_write

        mac = sign(self._mac_key, stamp.generation, stamp.saved_at, stamp.bundle_version, sha256)
        fields = {"generation": stamp.generation, "saved_at": stamp.saved_at,
                  "bundle_version": stamp.bundle_version, "sha256": sha256}
        atomic_write(self.counter, (json.dumps({**fields, "mac": mac}) + "\n").encode())
        self.audit.write(SAVE_ACTION, None, actor, cause=cause, people=people, **fields, mac=mac)
        self.accepted(stamp)

    def _read_counter(self) -> Stamp:
        from agent.whitelist_store import WhitelistError, read_regular_file

        try:
            data = read_regular_file(self.counter, "whitelist generation counter", MAX_COUNTER_BYTES)
        except FileNotFoundError:
            return NONE
        except WhitelistError as exc:
            log.warning("%s; relying on the audit log", exc)
            return NONE
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
            record = None
        stamp = _verified(record, self._mac_key, f"counter file {self.counter}")
        if stamp is None:
            # Damaged, forged or written under another key (after a rekey until the next save): the
            # audit log and memory still stand, so this lowers nothing that matters.
            log.warning("whitelist generation counter %s is not valid (damaged, or not made with this key); "
                        "relying on the audit log", self.counter)
            return NONE
        return stamp
