"""Who may enter: the whitelist of people, and the pure decision ``Whitelist.check(person, gate, now)``.

A person is known by a pseudonymous id (``R-0203-1``); a display name may be kept on this node for the
technician but is never sent upstream, written to the audit log or put in a bundle. Face templates are
dlib's 128-d float32 descriptors; photos are never kept. Plates are stored normalised (uppercase, no
separators) for the vehicle lanes.

Schedule windows and validity instants are in :mod:`agent.whitelist_schedule`; storage (AES-256-GCM,
atomic writes) in :mod:`agent.whitelist_store`; platform bundles in :mod:`agent.whitelist_bundle`.

Times: schedules are wall-clock times in the node's local time zone; ``valid_from`` / ``valid_until``
are instants (a naive value is read as local time). ``now`` may be naive (local) or aware.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agent.whitelist_schedule import Window, local_time, parse_instant
from models.plate_formats import clean, fold

if TYPE_CHECKING:  # models.face imports dlib and OpenCV: only load them when a gallery is built
    from models.face import Gallery

ENCODING_SIZE = 128
MAX_TEMPLATES_PER_PERSON = 20
PERSON_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
GATE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # the config's Name
PLATE_RE = re.compile(r"^[0-9A-Z\u4e00-\u9fff]{5,10}$")

Reason = Literal["stranger", "expired", "schedule", "gate", "disabled"]


def check_person_id(value: str) -> str:
    if not PERSON_ID_RE.match(value):
        raise ValueError(f"{value!r} is not a person id: 1-48 letters, digits, '.', '_' or '-' (e.g. R-0203-1)")
    return value


def check_gate(value: str) -> str:
    if not GATE_RE.match(value):
        raise ValueError(f"{value!r} is not a gate name (lowercase letters, digits, _ and -)")
    return value


def normalise_plate(text: str) -> str:
    """``京a·12345`` → ``京A12345``: the reader's text for the plate (uppercase, separators and
    spaces removed, full-width and Cyrillic look-alike letters folded: ``А123ВС77`` is A123BC77)."""
    plate = clean(text)
    if not PLATE_RE.match(plate):
        raise ValueError(f"{text!r} is not a plate (5-10 letters, digits or Chinese characters)")
    return plate


# --- people ---------------------------------------------------------------------------------------

def as_templates(templates: Iterable[np.ndarray] | np.ndarray) -> np.ndarray:
    """(k, 128) C-contiguous float32, finite; refuses anything that is not a face descriptor."""
    if isinstance(templates, np.ndarray) and templates.ndim == 2:  # the store's fast path: no per-row copies
        matrix = templates
    else:
        rows = [np.asarray(t, dtype=np.float32).reshape(-1) for t in templates]
        if any(row.shape != (ENCODING_SIZE,) for row in rows):
            raise ValueError(f"a face template must be {ENCODING_SIZE} finite numbers")
        matrix = np.stack(rows) if rows else np.zeros((0, ENCODING_SIZE), dtype=np.float32)
    matrix = np.array(matrix, dtype=np.float32, order="C")  # our own read-only copy, never the caller's array
    if matrix.shape[1:] != (ENCODING_SIZE,) or not np.isfinite(matrix).all():
        raise ValueError(f"a face template must be {ENCODING_SIZE} finite numbers")
    if len(matrix) > MAX_TEMPLATES_PER_PERSON:
        raise ValueError(f"at most {MAX_TEMPLATES_PER_PERSON} templates per person, got {len(matrix)}")
    matrix.setflags(write=False)
    return matrix


@dataclass(frozen=True, eq=False)
class Person:
    id: str
    templates: np.ndarray = field(default_factory=lambda: as_templates([]))  # (k, 128) float32
    name: str | None = None  # local display name: never upstream, never in the audit log or a bundle
    gates: tuple[str, ...] = ()  # empty = every gate
    schedule: tuple[Window, ...] = ()  # empty = at any time
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    enabled: bool = True
    plates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_person_id(self.id)
        object.__setattr__(self, "templates", as_templates(self.templates))
        object.__setattr__(self, "gates", tuple(sorted({check_gate(g) for g in self.gates})))
        object.__setattr__(self, "plates", tuple(dict.fromkeys(normalise_plate(p) for p in self.plates)))
        for attr in ("valid_from", "valid_until"):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, local_time(value))
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError(f"{self.id}: valid_until is before valid_from")

    def with_changes(self, **changes: Any) -> Person:
        return replace(self, **changes)

    def to_record(self, *, with_name: bool = True) -> dict[str, Any]:
        """JSON-safe fields (templates excluded: the store and bundles encode them compactly)."""
        record: dict[str, Any] = {"id": self.id, "enabled": self.enabled}
        if with_name and self.name:
            record["name"] = self.name
        if self.gates:
            record["gates"] = list(self.gates)
        if self.schedule:
            record["schedule"] = [str(w) for w in self.schedule]
        if self.valid_from:
            record["valid_from"] = self.valid_from.isoformat()
        if self.valid_until:
            record["valid_until"] = self.valid_until.isoformat()
        if self.plates:
            record["plates"] = list(self.plates)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], templates: np.ndarray, *, allow_name: bool = True) -> Person:
        known = {"id", "name", "enabled", "gates", "schedule", "valid_from", "valid_until", "plates"}
        unknown = set(record) - known
        if unknown:
            raise ValueError(f"unknown person field(s): {', '.join(sorted(unknown))}")
        if "name" in record and not allow_name:
            raise ValueError(f"{record.get('id')}: a display name must not be sent to the node in a bundle")
        schedule = record.get("schedule") or []
        return cls(
            id=str(record["id"]),
            templates=templates,
            name=record.get("name") if allow_name else None,
            gates=tuple(record.get("gates") or ()),
            schedule=tuple(Window.parse(w) for w in ([schedule] if isinstance(schedule, str) else schedule)),
            valid_from=parse_instant(record["valid_from"]) if record.get("valid_from") else None,
            valid_until=parse_instant(record["valid_until"], end_of_day=True) if record.get("valid_until") else None,
            enabled=bool(record.get("enabled", True)),
            plates=tuple(str(p) for p in record.get("plates") or ()),
        )


@dataclass(frozen=True)
class Verdict:
    """``ok`` or the reason for a refusal. Truthy when access is granted."""

    person_id: str
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __bool__(self) -> bool:
        return self.ok


class Whitelist:
    """The people, and ``bundle_version``: the last platform bundle applied (0 = none).

    Not thread-safe for writers: the daemon replaces its whole Whitelist when the file changes, and
    readers (``check``, ``gallery``, ``plates``) never see a half-made change.
    """

    def __init__(self, people: Iterable[Person] = (), bundle_version: int = 0) -> None:
        self._people: dict[str, Person] = {}
        self.bundle_version = bundle_version
        self._gallery: Gallery | None = None
        self._plate_owner: dict[str, str] = {}  # kept in step with _people: put() checks it per plate
        for person in people:
            self.put(person)

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._people)

    def __contains__(self, person_id: object) -> bool:
        return person_id in self._people

    def __iter__(self) -> Iterator[Person]:
        return iter(sorted(self._people.values(), key=lambda p: p.id))

    def get(self, person_id: str) -> Person | None:
        return self._people.get(person_id)

    def check(self, person_id: str | None, gate: str, now: datetime) -> Verdict:
        """May ``person_id`` pass ``gate`` at ``now``? Checked in the order of the decision chain:
        known → enabled → valid now → allowed at this gate → inside a schedule window."""
        person = self._people.get(person_id) if person_id else None
        if person is None:
            return Verdict(person_id or "", "stranger")
        if not person.enabled:
            return Verdict(person.id, "disabled")
        local = local_time(now)
        if (person.valid_from and local < person.valid_from) or (person.valid_until and local > person.valid_until):
            return Verdict(person.id, "expired")
        if person.gates and gate not in person.gates:
            return Verdict(person.id, "gate")
        if person.schedule and not any(w.contains(local) for w in person.schedule):
            return Verdict(person.id, "schedule")
        return Verdict(person.id)

    def gallery(self) -> Gallery:
        """Every template as a :class:`models.face.Gallery` (built once per change). Disabled people stay
        in it on purpose: recognising them gives ``disabled`` rather than ``stranger``."""
        if self._gallery is None:
            from models.face import Gallery

            self._gallery = Gallery.from_templates(
                (person.id, row) for person in self._people.values() for row in person.templates
            )
        return self._gallery

    def plates(self) -> dict[str, str]:
        """Normalised plate → person id (a copy): what a plate read is matched against.

        One person's second spelling of a plate with O for 0 (``ABO123`` and ``AB0123``) is left
        out: the matcher takes O and 0 for one character and refuses a read that fits two listed
        plates alike, which would shut that person out.  Two people's are both kept, and refused.
        """
        table: dict[str, str] = {}
        spelled: set[tuple[str, str]] = set()  # (person, folded plate) already in the table
        for plate, owner in self._plate_owner.items():
            key = (owner, fold(plate))
            if key not in spelled:
                spelled.add(key)
                table[plate] = owner
        return table

    def plate_owner(self, plate: str) -> str | None:
        """The person a normalised plate belongs to, without copying the table (vehicle lanes)."""
        return self._plate_owner.get(plate)

    # -- changing ----------------------------------------------------------------------------------
    def put(self, person: Person) -> None:
        """Add or replace; a plate may belong to one person only."""
        for plate in person.plates:
            owner = self._plate_owner.get(plate)
            if owner is not None and owner != person.id:
                raise ValueError(f"plate {plate} already belongs to {owner}")
        old = self._people.get(person.id)
        for plate in old.plates if old else ():
            del self._plate_owner[plate]
        self._people[person.id] = person
        self._plate_owner.update(dict.fromkeys(person.plates, person.id))
        self._gallery = None

    def remove(self, person_id: str) -> Person:
        try:
            person = self._people.pop(person_id)
        except KeyError:
            raise KeyError(f"no person {person_id!r} in the whitelist") from None
        for plate in person.plates:
            del self._plate_owner[plate]
        self._gallery = None
        return person

    def replace_all(self, people: Iterable[Person]) -> None:
        self._people = {}
        self._plate_owner = {}
        self._gallery = None
        for person in people:
            self.put(person)
