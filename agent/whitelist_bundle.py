"""Signed whitelist bundles from the platform: build (platform side), verify and apply (node side).

A bundle is one JSON object (UTF-8)::

    {
      "format": "edge-agent.whitelist-bundle", "format_version": 1,
      "version": 42,                      # strictly increasing per node; the node stores the last applied
      "kind": "full" | "delta",           # full replaces the people set; delta upserts and removes
      "base_version": 41,                 # delta only: the version it was made against
      "created_at": "2025-06-01T08:00:00+00:00",
      "audience": ["site-1/b-03"],        # optional: site/building[/node] prefixes it may be applied on
      "people": [{"id": "R-0203-1", "enabled": true, "gates": ["main"], "schedule": ["mon-fri 06:00-23:00"],
                  "valid_from": "...", "valid_until": "...", "plates": ["京A12345"],
                  "templates": "<base64 of k x 128 little-endian float32>"}],
      "remove": ["R-0101-2"],             # delta only
      "sig": "<base64 Ed25519 signature>"
    }

The signature covers the canonical JSON of every other field (:func:`agent.signing.canonical_json`,
the same form as signed commands). Templates only: never a photo, never a display name (a bundle with
``name`` is refused). Size: ~700 bytes of base64 per template, so 10,000 people with 3 templates each
is ~21 MB, well inside MQTT's 256 MB maximum message (mosquitto's default ``message_size_limit`` is
unlimited up to that); deltas are usually a few kB.

A delta applies only on top of ``base_version`` (the version the node has): a node that missed a
delta refuses the next one and needs a full bundle. Applying happens inside the store's lock and
is one atomic write of the encrypted file, as the whitelist's next generation (a copy of the file from
before the bundle, put back, is refused: :mod:`agent.whitelist_generation`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.signing import SIGNATURE_FIELD, canonical_json, verify_signature
from agent.whitelist import ENCODING_SIZE, Person, Whitelist, check_person_id
from agent.whitelist_store import WhitelistError, WhitelistStore

FORMAT = "edge-agent.whitelist-bundle"
FORMAT_VERSION = 1
Kind = Literal["full", "delta"]
_FIELDS = {"format", "format_version", "version", "kind", "base_version", "created_at", "audience", "people",
           "remove", SIGNATURE_FIELD}


def encode_templates(templates: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(templates, dtype="<f4").tobytes()).decode("ascii")


def decode_templates(text: Any) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError("templates must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("templates are not base64") from None
    if not raw or len(raw) % (4 * ENCODING_SIZE):
        raise ValueError(f"templates must be a whole number of {ENCODING_SIZE}-float32 rows")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, ENCODING_SIZE).astype(np.float32)


def build_bundle(
    key: Ed25519PrivateKey, people: list[Person], version: int, kind: Kind = "full", *,
    base_version: int | None = None, remove: list[str] | None = None, audience: list[str] | None = None,
) -> dict[str, Any]:
    """A signed bundle. Names are dropped: they never leave the platform in a bundle."""
    if version < 1:
        raise ValueError("the bundle version must be a positive integer")
    payload: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": version, "kind": kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "people": [{**p.to_record(with_name=False), "templates": encode_templates(p.templates)} for p in people],
    }
    if kind == "delta":
        payload["base_version"] = version - 1 if base_version is None else base_version
        payload["remove"] = sorted({check_person_id(r) for r in remove or []})
        if payload["base_version"] >= version:
            raise ValueError("a delta's base version must be lower than its version")
    elif remove:
        raise ValueError("a full bundle replaces everyone: --remove only makes sense with --delta")
    if audience:
        payload["audience"] = list(audience)
    payload[SIGNATURE_FIELD] = base64.b64encode(key.sign(canonical_json(payload))).decode()
    return payload


def _field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"bundle field {name!r} is missing or has the wrong type")
    return value


def verify_bundle(payload: Any, public_key: Ed25519PublicKey, node: str | None = None) -> None:
    """Signature, format and audience; ValueError with the reason otherwise (version is checked on apply)."""
    if not isinstance(payload, dict):
        raise ValueError("a bundle is a JSON object")
    verify_signature(public_key, payload)  # CommandRejected is a ValueError: "bad signature", ...
    if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not a {FORMAT} version {FORMAT_VERSION}")
    unknown = set(payload) - _FIELDS
    if unknown:
        raise ValueError(f"unknown bundle field(s): {', '.join(sorted(unknown))}")
    if payload.get("kind") not in ("full", "delta"):
        raise ValueError("bundle kind must be full or delta")
    audience = payload.get("audience")
    if audience is not None and not (isinstance(audience, list) and all(isinstance(a, str) for a in audience)):
        raise ValueError("bundle audience must be a list of site/building[/node] strings")
    if audience is not None and (node is None or not any(node == a or node.startswith(f"{a}/") for a in audience)):
        raise ValueError(f"bundle is for {', '.join(audience)}, not for this node ({node})")


def bundle_people(payload: dict[str, Any]) -> list[Person]:
    people = []
    for record in _field(payload, "people", list):
        if not isinstance(record, dict):
            raise ValueError("each person in a bundle is an object")
        record = dict(record)
        templates = decode_templates(record.pop("templates", None))
        people.append(Person.from_record(record, templates, allow_name=False))
    if len({p.id for p in people}) != len(people):
        raise ValueError("a person appears twice in the bundle")
    return people


def _keep_local_name(new: Person, old: Person | None) -> Person:
    return new.with_changes(name=old.name) if old is not None and old.name else new


def apply_to(whitelist: Whitelist, payload: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """Apply a verified bundle to ``whitelist`` in memory; (summary, ids per change kind)."""
    version = _field(payload, "version", int)
    if version <= whitelist.bundle_version:
        raise ValueError(f"bundle version {version} is not newer than the applied version "
                         f"{whitelist.bundle_version} (replayed or out of order)")
    people = bundle_people(payload)
    changes: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
    if payload["kind"] == "full":
        incoming = {p.id for p in people}
        changes["removed"] = [p.id for p in whitelist if p.id not in incoming]
        for person in people:
            changes["updated" if person.id in whitelist else "added"].append(person.id)
        whitelist.replace_all([_keep_local_name(p, whitelist.get(p.id)) for p in people])
    else:
        base = _field(payload, "base_version", int)
        if base != whitelist.bundle_version:
            raise ValueError(f"delta bundle is against version {base} but this node has version "
                             f"{whitelist.bundle_version}: send a full bundle")
        for person_id in _field(payload, "remove", list):
            if person_id in whitelist:
                whitelist.remove(person_id)
                changes["removed"].append(person_id)
        for person in people:
            old = whitelist.get(person.id)
            changes["updated" if old else "added"].append(person.id)
            whitelist.put(_keep_local_name(person, old))
    whitelist.bundle_version = version
    summary = (f"applied {payload['kind']} bundle version {version}: {len(changes['added'])} added, "
               f"{len(changes['updated'])} updated, {len(changes['removed'])} removed, {len(whitelist)} people")
    return summary, changes


def load_bundle_public_key(path: Path) -> Ed25519PublicKey:
    """The platform's key from ``path``, refused clearly when the path is not a regular file (a FIFO
    would block the uplink's thread, a directory would be a traceback)."""
    from agent.signing import load_public_key
    from agent.whitelist_store import read_regular_file

    try:
        read_regular_file(path, "bundle public key", 1 << 16)
    except FileNotFoundError:
        raise WhitelistError(f"bundle public key {path} does not exist (whitelist.bundle_public_key)") from None
    try:
        return load_public_key(path)
    except (ValueError, TypeError) as exc:
        raise WhitelistError(f"bundle public key {path} is not an Ed25519 public key (PEM or base64): {exc}") from None


def apply_bundle_payload(
    whitelist_store: WhitelistStore, payload: dict[str, Any], public_key: Ed25519PublicKey, *,
    node: str | None = None, actor: str = "platform",
) -> str:
    """Verify and apply a bundle (for ``whitelist apply`` and the uplink's ``sync`` command).

    ``node`` is ``site/building/node_id``, checked against the bundle's optional audience. Returns a
    one-line summary; raises ValueError with the reason (nothing changes then). A store that cannot be
    read raises :class:`agent.whitelist_store.WhitelistError`, also a ValueError.
    """
    verify_bundle(payload, public_key, node)
    with whitelist_store.edit(cause=f"bundle {payload.get('version')}", actor=actor) as whitelist:
        summary, changes = apply_to(whitelist, payload)
    audit = whitelist_store.audit
    for change, action in (("added", "bundle.add"), ("updated", "bundle.update"), ("removed", "bundle.remove")):
        for person_id in changes[change]:
            audit.write(action, person_id, actor, version=payload["version"])
    audit.write("bundle.apply", None, actor, version=payload["version"], kind=payload["kind"],
                people=len(payload["people"]))
    return summary
