"""Access decisions: a recognised identity → the whitelist → open, or refuse with a reason.

Recognition (``models/``) says *who* it probably is; this module says whether they may pass *here,
now*, drives the gate or barrier, and records one event per pass. Events carry the pseudonymous
person id and the score, never a name, an image or a template.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.hardware import Hardware
from agent.parking import Parking

if TYPE_CHECKING:  # dlib, OpenCV and onnxruntime load only on nodes that recognise something
    from drivers.barrier import Barrier
    from models.face import Gallery
    from models.face_track import FaceDecision
    from models.plate_vote import PlateDecision

log = logging.getLogger("edge_agent.access")

Emit = Callable[[str, str | None, dict[str, Any]], object]
UpstreamPlate = Literal["clear", "masked", "hashed"]


class Verdict(Protocol):
    ok: bool
    reason: str | None  # expired | schedule | gate | disabled | stranger


# Why a pass is refused (access.denied's "reason"): the whitelist's reasons (agent/whitelist.py Reason) and
# the decisions' own. "uncertain": the face came close to a resident but not clearly enough for the gate's
# level; a second credential can finish the pass (face_verified).
DENY_REASONS = frozenset({"stranger", "expired", "schedule", "gate", "disabled", "liveness", "full", "uncertain"})
UNCERTAIN_HOLD_SECONDS = 30.0  # how long an uncertain face pass waits for a second credential


class AccessList(Protocol):
    """What decisions need from the whitelist (implemented by :class:`agent.whitelist.Whitelist`)."""

    def check(self, person_id: str, gate: str, now: datetime) -> Verdict: ...

    def gallery(self) -> Gallery: ...

    def plates(self) -> dict[str, str]: ...

    def get(self, person_id: str) -> Any: ...  # the person record (valid_until tells a visitor)


def gate_gallery(access_list: AccessList, gate: str) -> tuple[int, int]:
    """(people, templates) a face at ``gate`` is matched against for admission: enabled people allowed
    there (no gate list = every gate). The security level's threshold is derived from the templates."""
    people = templates = 0
    for person in access_list:  # type: ignore[attr-defined]  # agent.whitelist.Whitelist iterates people
        if person.enabled and person.templates is not None and len(person.templates) and (
                not person.gates or gate in person.gates):
            people += 1
            templates += len(person.templates)
    return people, templates


def face_gate_lines(config: Any, access_list: AccessList | None) -> list[str]:
    """Per face gate (a gate a camera watches), what its security level means with this whitelist
    (``config``: the AgentConfig; without a whitelist, for an empty one)."""
    from agent.config_faces import security_summary

    gate_names = {g.name for g in config.hardware.gates}
    gates = sorted({c.gate for c in config.hardware.cameras if c.gate in gate_names})
    lines = []
    for gate in gates:
        people, templates = gate_gallery(access_list, gate) if access_list is not None else (0, 0)
        lines.append(security_summary(config.faces, gate, people, templates))
    return lines


def plate_for_events(text: str, mode: UpstreamPlate, key: bytes) -> str:
    """Plates are personal data under PIPL: events carry them masked (京A***45) by default, or hashed.

    The hash is an HMAC under a secret ``key`` (derived from the whitelist key): the same car gives
    the same pseudonym on this node, but one city has only a few million plates, so a hash anyone
    could recompute (a public salt such as the site id) would be undone by trying them all."""
    if mode == "clear":
        return text
    if mode == "hashed":
        return "h:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:16]
    return text[:2] + "*" * max(0, len(text) - 4) + text[-2:] if len(text) > 4 else "*" * len(text)


class AccessController:
    def __init__(self, hardware: Hardware, access_list: Callable[[], AccessList], emit: Emit, *,
                 plate_match: Callable[[PlateDecision, list[str], str], str | None],
                 upstream_plate: UpstreamPlate = "masked", plate_key: bytes | None = None,
                 clock: Callable[[], datetime] | None = None, parking: Parking | None = None,
                 second_credential: Callable[[str], bool] | None = None) -> None:
        self.hardware = hardware
        self.access_list = access_list
        self.emit = emit
        self.plate_match = plate_match
        self.upstream_plate = upstream_plate
        # Without the whitelist key (nobody is recognised then), a key of this run's own: hashed
        # plates stay unreadable, though not comparable across restarts.
        self.plate_key = plate_key or os.urandom(32)
        self.clock = clock or (lambda: datetime.now().astimezone())
        self.parking = parking
        self.second_credential = second_credential or (lambda _gate: False)
        # gate -> (the resident an uncertain face came close to, when): never in an event
        self._uncertain: dict[str, tuple[str, datetime]] = {}

    # -- faces at pedestrian gates ----------------------------------------------------------------
    def face_decided(self, gate: str, decision: FaceDecision) -> None:
        # A gallery of one person has no second-best: the margin is infinite, which JSON cannot carry.
        margin = round(decision.margin, 3) if math.isfinite(decision.margin) else None
        details: dict[str, Any] = {"method": "face", "distance": round(decision.distance, 3), "margin": margin,
                                   "samples": decision.encodings}
        if decision.outcome == "uncertain":
            if decision.candidate is not None:  # only a face shown to be live may be finished 1:1
                # The candidate is kept here, not sent: a near miss must not tell who it nearly was.
                self._uncertain[gate] = (decision.candidate, self.clock())
                if self.second_credential(gate):
                    details["second_credential"] = "asked"
            self._deny(gate, "uncertain", details)
            return
        if decision.outcome == "liveness":  # recognised, never shown to be live: a photo, a screen
            self._deny(gate, "liveness", details)
            return
        if decision.outcome == "stranger" or decision.person_id is None:
            self._deny(gate, "stranger", details)
            return
        details["person"] = decision.person_id
        self._grant_face(gate, decision.person_id, details)

    def face_verified(self, gate: str, person_id: str) -> bool:
        """A second credential at ``gate`` names ``person_id``: finish the last uncertain face pass there as
        a 1:1 verification against that person alone (for the credentials of issue 35). True when granted;
        False (nothing emitted) when no uncertain face of that person waits at this gate."""
        pending = self._uncertain.get(gate)
        if pending is None or pending[0] != person_id:
            return False
        if (self.clock() - pending[1]).total_seconds() > UNCERTAIN_HOLD_SECONDS:
            del self._uncertain[gate]
            return False
        del self._uncertain[gate]
        self._grant_face(gate, person_id, {"method": "face+credential", "person": person_id})
        return True

    def _grant_face(self, gate: str, person_id: str, details: dict[str, Any]) -> None:
        verdict = self.access_list().check(person_id, gate, self.clock())
        if not verdict.ok:
            self._deny(gate, verdict.reason or "stranger", details)
            return
        self.hardware.gates[gate].unlock()
        self.hardware.signal("granted", gate)
        self.emit("access.granted", gate, details)

    # -- plates at barriers -----------------------------------------------------------------------
    def plate_decided(self, barrier: str, read: PlateDecision) -> None:
        plates = self.access_list().plates()
        matched = self.plate_match(read, list(plates), barrier)
        details: dict[str, Any] = {"method": "plate", "confidence": round(read.confidence, 3),
                                   "plate": plate_for_events(read.text, self.upstream_plate, self.plate_key)}
        if self.parking is not None and self.parking.is_exit(barrier):
            # Nobody is kept in: every car read at an exit is let out (and counted once it has passed).
            if matched is not None:
                details["person"] = plates[matched]
            self.hardware.barriers[barrier].raise_arm()
            self.emit("access.granted", barrier, {**details, "direction": "exit"})
            return
        if matched is None:
            self._deny(barrier, "stranger", details)
            return
        person = plates[matched]
        details["person"] = person
        if matched != read.text:
            details["edit_distance_match"] = True
        verdict = self.access_list().check(person, barrier, self.clock())
        if not verdict.ok:
            self._deny(barrier, verdict.reason or "stranger", details)
            return
        record = self.access_list().get(person)
        visitor = record is not None and record.valid_until is not None  # residents have no end date
        if self.parking is not None and not self.parking.may_enter(barrier, visitor):
            self._deny(barrier, "full", details)
            return
        self.hardware.barriers[barrier].raise_arm()
        self.hardware.signal("granted", barrier)
        self.emit("access.granted", barrier, details)

    def _deny(self, device: str, reason: str, details: dict[str, Any]) -> None:
        self.hardware.signal("denied", device)
        self.emit("access.denied", device, {**details, "reason": reason})


class UnreadPlateExits:
    """Lets out a car that waits on an exit barrier's approach loop and whose plate is never read.

    Every car read at an exit is let out; one with a dirty, bent or missing plate would otherwise
    wait for a guard or the platform's open.  After its car park's ``let_out_unread_after_seconds``
    on the approach loop with the arm still down, the arm rises (``access.granted``, method ``loop``).
    It outlives reloads: the barrier is looked up by name when the wait is over.
    """

    def __init__(self, barriers: Callable[[], Mapping[str, Barrier]], parking: Parking, emit: Emit) -> None:
        self.barriers = barriers
        self.parking = parking
        self.emit = emit
        self._lock = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}

    def vehicle_waiting(self, barrier: str) -> None:
        """A vehicle drove onto ``barrier``'s approach loop (the next one restarts the wait)."""
        wait = self.parking.unread_exit_wait(barrier)
        if wait is None:
            return
        timer = threading.Timer(wait, self._let_out, (barrier,))
        timer.daemon = True
        with self._lock:
            earlier = self._timers.get(barrier)
            if earlier is not None:
                earlier.cancel()
            self._timers[barrier] = timer
        timer.start()

    def _let_out(self, barrier: str) -> None:
        device = self.barriers().get(barrier)
        try:
            # Still waiting, and nothing raised the arm for it (a read plate, the platform, a fire).
            if device is None or not device.vehicle_approaching or device.arm == "up":
                return
            device.raise_arm()
        except Exception:  # its pins closed by a reload at this very moment: the car's plate is read as usual
            log.warning("barrier %s: could not let out a car whose plate was not read", barrier, exc_info=True)
            return
        self.emit("access.granted", barrier, {"method": "loop", "direction": "exit", "reason": "plate not read"})

    def close(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
