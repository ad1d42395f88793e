"""Commands from the platform: ``{root}/cmd/{name}`` in, one result on ``{root}/cmd/result`` out.

Every payload, however broken, gets exactly one result and never an exception: the handler is the
node's attack surface towards the broker.  Results never echo the payload (it could hold anything),
only a short reason.

A result acknowledges what the command did, so the events it emitted (``gate.granted``...) are
committed to SQLite before the result is sent: ``"recorded": true``.  If the disk refuses them (a
full disk), the command still acts and the result says ``"recorded": false`` with a ``warning``
(docs/durability.md).  A command that emitted nothing has no ``recorded`` key.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.events import rfc3339
from agent.signing import CommandRejected, ReplayCache, verify_signature

log = logging.getLogger(__name__)

SIGNED_COMMANDS = frozenset({"open", "alarm_reset", "sync"})
ALL_COMMANDS = SIGNED_COMMANDS | {"reload", "ping"}
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # a whitelist bundle may be large; anything bigger is refused unread
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NAME_RE = re.compile(r"^[a-z_]{1,32}$")


ACK_TIMEOUT_SECONDS = 2.0  # longest a result waits for its events' commit


class EventLog(Protocol):
    """The recorder, as far as a result needs it (:class:`agent.recorder.Recorder`)."""

    def mark(self) -> int: ...
    def written_since(self, mark: int, timeout: float = ...) -> bool | None: ...


class CommandTarget(Protocol):
    """What commands act on; implemented by the daemon.  Methods must return quickly."""

    def open_gate(self, gate: str, seconds: float | None) -> None: ...  # ValueError(reason) to refuse
    def alarm_reset(self, source: str) -> None: ...  # ValueError if a detector is still in alarm
    def reload(self) -> None: ...
    def apply_whitelist_bundle(self, payload: dict[str, Any]) -> None: ...
    def state(self) -> dict[str, dict[str, Any]]: ...
    def telemetry(self) -> dict[str, Any]: ...


Refusal = Callable[[str, str | None, str], None]  # (command name, command id, reason): audit hook


class CommandHandler:
    def __init__(
        self, target: CommandTarget, *, node: str, public_key: Ed25519PublicKey | None, replay: ReplayCache,
        max_age: float, clock_skew: float, allow_unsigned: frozenset[str], on_refused: Refusal | None = None,
        clock: Callable[[], float] = time.time, recorder: EventLog | None = None,
    ) -> None:
        self._target = target
        self._node = node
        self._key = public_key
        self._replay = replay
        self._max_age = max_age
        self._skew = clock_skew
        self._allow_unsigned = allow_unsigned
        self._on_refused = on_refused
        self._clock = clock
        self._recorder = recorder
        self.handled = 0

    def handle(self, name: str, payload: bytes) -> dict[str, Any]:
        """One command in, one result dict out (``{"id", "name", "ok", "reason", "ts"}``)."""
        self.handled += 1
        safe_name = name if isinstance(name, str) and _NAME_RE.match(name) else None
        command_id: str | None = None
        try:
            body = self._parse(payload)
            raw_id = body.get("id")
            command_id = raw_id if isinstance(raw_id, str) and _ID_RE.match(raw_id) else None
            if safe_name is None or safe_name not in ALL_COMMANDS:
                raise CommandRejected("unknown command")
            reply, recorded = self._check_and_run(safe_name, body, command_id)
            return self._result(safe_name, command_id, True, None, reply, recorded)
        except CommandRejected as exc:
            reason = str(exc)
        except ValueError as exc:  # the target refused (unknown gate, still in alarm, bad bundle)
            reason = f"refused: {str(exc)[:160]}"
        except Exception as exc:  # never let a command take the uplink down
            log.exception("command %s failed", safe_name)
            reason = f"internal error: {type(exc).__name__}"
        if self._on_refused is not None and safe_name in SIGNED_COMMANDS:
            try:
                self._on_refused(safe_name, command_id, reason)
            except Exception:
                log.exception("recording a refused command failed")
        return self._result(safe_name, command_id, False, reason, None)

    def _parse(self, payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise CommandRejected("payload too large")
        try:
            body = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CommandRejected("malformed: not UTF-8 JSON") from None
        if not isinstance(body, dict):
            raise CommandRejected("malformed: not a JSON object")
        return body

    def _check_and_run(self, name: str, body: dict[str, Any],
                       command_id: str | None) -> tuple[dict[str, Any] | None, bool | None]:
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise CommandRejected("malformed: args must be an object")
        if "name" in body and body["name"] != name:
            raise CommandRejected("command name does not match the topic")
        signed = "sig" in body
        if name in SIGNED_COMMANDS or signed or name not in self._allow_unsigned:
            self._verify(name, body, command_id)
        if self._recorder is None:
            return self._run(name, args, command_id), None
        mark = self._recorder.mark()
        reply = self._run(name, args, command_id)
        return reply, self._recorder.written_since(mark, ACK_TIMEOUT_SECONDS)

    def _verify(self, name: str, body: dict[str, Any], command_id: str | None) -> None:
        if self._key is None:
            raise CommandRejected("signed commands are disabled: no platform public key configured")
        if "sig" not in body:
            raise CommandRejected("missing signature")
        if command_id is None:
            raise CommandRejected("malformed: id must be 1-64 characters [A-Za-z0-9_.:-]")
        try:
            verify_signature(self._key, body)
        except ValueError as exc:  # canonical form impossible (e.g. huge float) counts as a bad signature
            raise CommandRejected(str(exc) if isinstance(exc, CommandRejected) else "bad signature") from None
        if body.get("name") != name:
            raise CommandRejected("signed command lacks its name")
        if body.get("node") != self._node:
            raise CommandRejected("command is for another node")
        issued = _parse_issued_at(body.get("issued_at"))
        now = self._clock()
        if issued < now - self._max_age:
            raise CommandRejected("expired")
        if issued > now + self._skew:
            raise CommandRejected("issued in the future (check the clocks)")
        if not self._replay.remember(command_id, issued, now):
            raise CommandRejected("replayed command id")

    def _run(self, name: str, args: dict[str, Any], command_id: str | None) -> dict[str, Any] | None:
        if name == "ping":
            return {"pong": rfc3339(datetime.now(UTC))}
        if name == "reload":
            self._target.reload()
            return None
        if name == "alarm_reset":
            self._target.alarm_reset(f"platform:{command_id}")
            return None
        if name == "sync":
            self._target.apply_whitelist_bundle(args)
            return None
        gate, seconds = args.get("gate"), args.get("seconds")
        if not isinstance(gate, str) or not gate or len(gate) > 64:
            raise CommandRejected("malformed: open needs args.gate")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or not 0 < seconds <= 3600
        ):
            raise CommandRejected("malformed: args.seconds must be a number in (0, 3600]")
        self._target.open_gate(gate, float(seconds) if seconds is not None else None)
        return None

    def _result(self, name: str | None, command_id: str | None, ok: bool, reason: str | None,
                reply: dict[str, Any] | None, recorded: bool | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"id": command_id, "name": name, "ok": ok, "reason": reason,
                                  "ts": rfc3339(datetime.now(UTC))}
        if reply:
            result["reply"] = reply
        if recorded is not None:
            result["recorded"] = recorded
            if not recorded:
                result["warning"] = ("done, but its event is not on the node's disk yet (disk full?): kept in "
                                     "memory and sent when the disk takes it")
        return result


def _no_constants(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def _parse_issued_at(value: Any) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise CommandRejected("malformed: issued_at must be an RFC 3339 time")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandRejected("malformed: issued_at must be an RFC 3339 time") from None
    if stamp.tzinfo is None:
        raise CommandRejected("malformed: issued_at needs a time zone")
    return stamp.timestamp()
