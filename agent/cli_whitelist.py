"""``edge-agent whitelist …`` (the node's encrypted whitelist) and ``edge-agent bundle build`` (platform).

Every change is atomic and audited (time, actor, action, person id; never a name or template). A running
daemon sees the change through the file's mtime. Photos are read, turned into templates and dropped.

Key rotation, in this order (the old key stops opening the file at step 2)::

    edge-agent whitelist keygen --out /etc/edge-agent/whitelist.key.new
    edge-agent whitelist rekey --new-key /etc/edge-agent/whitelist.key.new
    mv /etc/edge-agent/whitelist.key.new /etc/edge-agent/whitelist.key
    systemctl restart edge-agent      # LoadCredential= copies the key only when the service starts

Every save is a new generation of the whitelist; an older file copied back is refused (see
docs/whitelist.md). ``whitelist backup FILE`` copies the current file; ``whitelist restore FILE`` puts a
backup back on purpose, as a new generation, and records it in the audit log.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH
from agent.config_loader import load_config
from agent.config_whitelist import WhitelistConfig, WhitelistPaths, open_whitelist_store, whitelist_paths
from agent.whitelist import Person, Whitelist, Window, check_person_id, parse_instant
from agent.whitelist_generation import NONE, Stamp
from agent.whitelist_store import WhitelistError, WhitelistStore, read_key_file, write_new_key

EX_FAILED = 1


@dataclass
class Context:
    config: Any  # AgentConfig
    whitelist: WhitelistConfig
    base_dir: Path
    paths: WhitelistPaths

    def store(self) -> WhitelistStore:
        return open_whitelist_store(self.whitelist, self.config.storage.state_dir, self.base_dir)

    @property
    def node(self) -> str:
        node = self.config.node
        return f"{node.site}/{node.building}/{node.node_id}"


def load_context(path: Path) -> Context:
    config = load_config(path)
    base_dir = path.resolve().parent
    section = config.whitelist
    return Context(config, section, base_dir, whitelist_paths(section, config.storage.state_dir, base_dir))


# --- person options -------------------------------------------------------------------------------

def _person_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", dest="person_id", required=True, help="pseudonymous id, e.g. R-0203-1")
    parser.add_argument("--name", help="display name, kept on this node only")
    parser.add_argument("--gate", action="append", default=[], help="allowed gate (repeatable; none = every gate)")
    parser.add_argument("--schedule", action="append", default=[],
                        help="weekly window, e.g. 'mon-fri 06:00-23:00' or '22:00-06:00' (repeatable; none = always)")
    parser.add_argument("--valid-from", help="ISO date or date-time (visitors)")
    parser.add_argument("--valid-until", help="ISO date (inclusive) or date-time (visitors)")
    parser.add_argument("--plate", action="append", default=[], help="vehicle plate (repeatable)")
    parser.add_argument("--disabled", action="store_true", help="enrol but do not admit yet")
    parser.add_argument("--replace", action="store_true", help="replace a person already in the whitelist")
    parser.add_argument("--force", action="store_true",
                        help="enrol even though the face looks like another enrolled person (audited)")


def _person(args: argparse.Namespace, templates: Any) -> Person:
    return Person(
        id=check_person_id(args.person_id), templates=templates, name=args.name, gates=tuple(args.gate),
        schedule=tuple(Window.parse(w) for w in args.schedule),
        valid_from=parse_instant(args.valid_from) if args.valid_from else None,
        valid_until=parse_instant(args.valid_until, end_of_day=True) if args.valid_until else None,
        enabled=not args.disabled, plates=tuple(args.plate),
    )


def _check_before_encoding(ctx: Context, args: argparse.Namespace) -> None:
    """Every option, the key and the id, before spending seconds on the face models; then the warnings
    (probable mistakes that may be meant: said, not refused)."""
    person = _person(args, [])
    if not args.replace and args.person_id in ctx.store().load():
        raise WhitelistError(f"{args.person_id} is already in the whitelist (use --replace, or remove it first)")
    from agent.config_plates import plate_formats
    from agent.enrol_guard import enrolment_warnings

    hardware, plates = ctx.config.hardware, ctx.config.plates
    for warning in enrolment_warnings(
        gates=person.gates, known_gates=[g.name for g in (*hardware.gates, *hardware.barriers)],
        plates=args.plate, formats=plate_formats(plates), format_names=list(plates.formats),
        valid_until=person.valid_until, now=datetime.now().astimezone(),
    ):
        print(f"warning: {args.person_id}: {warning}", file=sys.stderr)


def _check_duplicate(ctx: Context, args: argparse.Namespace, templates: list[Any]) -> dict[str, Any]:
    """Refuse a face already enrolled as somebody else unless --force; the audit details when forced."""
    from agent.enrol_guard import DUPLICATE_DISTANCE, duplicate_of

    duplicate = duplicate_of(ctx.store().load(), templates, args.person_id)
    if duplicate is None:
        return {}
    other, distance = duplicate
    if not args.force:
        raise WhitelistError(
            f"{args.person_id}: this face is already enrolled as {other} (distance {distance:.3f}, below the "
            f"duplicate limit {DUPLICATE_DISTANCE:g}); nothing saved. If they really are two people (twins), "
            "add --force (recorded in the audit log)")
    print(f"warning: {args.person_id}: enrolled with --force although the face is close to {other} "
          f"(distance {distance:.3f})", file=sys.stderr)
    return {"forced_duplicate_of": other, "distance": round(distance, 3)}


def _check_one_person(args: argparse.Namespace, templates: list[Any]) -> None:
    """Photos of one enrolment that do not show one person (a wrong file picked) are refused unless --force."""
    from agent.enrol_guard import SAME_PERSON_DISTANCE, stranger_among

    odd = stranger_among(templates, args.photo)
    if odd is None:
        return
    photo, distance = odd
    message = (f"{photo}: does not look like the other photo(s) given for {args.person_id} (distance "
               f"{distance:.3f}, above {SAME_PERSON_DISTANCE:g}): two people's photos under one id?")
    if not args.force:
        raise WhitelistError(f"{message} Nothing saved; check the files, or add --force if it is the same person")
    print(f"warning: {message} Saved anyway (--force)", file=sys.stderr)


def _save_person(ctx: Context, person: Person, replace: bool, action: str, **audit: Any) -> int:
    store = ctx.store()
    with store.edit() as whitelist:
        existed = person.id in whitelist
        if existed and not replace:
            raise WhitelistError(f"{person.id} is already in the whitelist (use --replace, or remove it first)")
        whitelist.put(person)
    store.audit.write("replace" if existed else action, person.id, templates=len(person.templates), **audit)
    print(f"{'replaced' if existed else 'added'} {person.id} with {len(person.templates)} face template(s)")
    return 0


# --- commands -------------------------------------------------------------------------------------

def cmd_keygen(args: argparse.Namespace) -> int:
    write_new_key(Path(args.out))
    print(f"wrote a new AES-256 key to {args.out} (mode 0600); keep it out of agent.yaml and backups in clear")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from agent.whitelist_enrol import make_engine, templates_from_photo

    ctx = load_context(args.config)
    _check_before_encoding(ctx, args)
    engine = make_engine(ctx.config.faces)
    templates = [templates_from_photo(engine, Path(photo)) for photo in args.photo]
    _check_one_person(args, templates)
    audit = _check_duplicate(ctx, args, templates)
    return _save_person(ctx, _person(args, templates), args.replace, "add", **audit)


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.enrol_guard import MAX_CAMERA_TEMPLATES
    from agent.whitelist_enrol import enrol_from_camera, make_engine

    if not 1 <= args.keep <= MAX_CAMERA_TEMPLATES:
        raise WhitelistError(f"--keep must be 1 to {MAX_CAMERA_TEMPLATES} (one template per head pose)")
    ctx = load_context(args.config)
    _check_before_encoding(ctx, args)
    cameras = {c.name: c for c in ctx.config.hardware.cameras}
    if args.camera not in cameras:
        raise WhitelistError(f"no camera named {args.camera!r} in {args.config} (have: {', '.join(cameras) or 'none'})")
    engine = make_engine(ctx.config.faces)
    print(f"look at camera {args.camera}, then turn your head slowly a little to each side; capturing for up "
          f"to {args.seconds:g} s …", file=sys.stderr)
    capture = enrol_from_camera(engine, cameras[args.camera], keep=args.keep, seconds=args.seconds)
    if not capture.templates:
        raise WhitelistError(f"camera {args.camera}: no frame with exactly one face good enough to enrol "
                             "(closer, better lit, facing the camera); nothing saved")
    if capture.dropped_as_other_person:
        print(f"warning: {capture.dropped_as_other_person} frame(s) left out: another person's face",
              file=sys.stderr)
    print(f"kept {len(capture.templates)} template(s) of {capture.frames_with_a_face} good frame(s), poses: "
          f"{', '.join(capture.poses)}")
    audit = _check_duplicate(ctx, args, capture.templates)
    return _save_person(ctx, _person(args, capture.templates), args.replace, "enroll", poses=capture.poses, **audit)


def _describe(person: Person) -> dict[str, Any]:
    return {**person.to_record(), "templates": len(person.templates)}


def cmd_list(args: argparse.Namespace) -> int:
    store = load_context(args.config).store()
    whitelist = store.load()
    if args.json:
        print(json.dumps([_describe(p) for p in whitelist], ensure_ascii=False))
        return 0
    print(f"{len(whitelist)} people (bundle version {whitelist.bundle_version}, {store.stamp.describe()})")
    for person in whitelist:
        state = "enabled" if person.enabled else "DISABLED"
        gates = ",".join(person.gates) or "all gates"
        until = f" until {person.valid_until:%Y-%m-%d %H:%M}" if person.valid_until else ""
        print(f"  {person.id:<16} {state:<8} {len(person.templates)} face(s)  {gates}{until}"
              f"  {' '.join(person.plates)}  {person.name or ''}".rstrip())
    from agent.access import face_gate_lines

    for line in face_gate_lines(load_context(args.config).config, whitelist):
        print(f"faces: {line}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    person = load_context(args.config).store().load().get(args.person_id)
    if person is None:
        print(f"no person {args.person_id!r} in the whitelist", file=sys.stderr)
        return EX_FAILED
    print(json.dumps(_describe(person), ensure_ascii=False, indent=None if args.json else 2))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    store = load_context(args.config).store()
    with store.edit() as whitelist:
        whitelist.remove(args.person_id)
    store.audit.write("remove", args.person_id)
    print(f"removed {args.person_id}")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    enabled = args.whitelist_command == "enable"
    store = load_context(args.config).store()
    with store.edit() as whitelist:
        person = whitelist.get(args.person_id)
        if person is None:
            raise WhitelistError(f"no person {args.person_id!r} in the whitelist")
        whitelist.put(person.with_changes(enabled=enabled))
    store.audit.write(args.whitelist_command, args.person_id)
    print(f"{args.person_id} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from agent.whitelist_enrol import make_engine, read_gallery

    ctx = load_context(args.config)
    store = ctx.store()
    store.load()  # fail on a wrong key before spending time on the photos
    results = read_gallery(make_engine(ctx.config.faces), Path(args.dir), allow_name=True)
    people = [r.person for r in results if r.person is not None]
    with store.edit() as whitelist:
        existed = {p.id for p in people if p.id in whitelist}
        for person in people:
            whitelist.put(person)
    for person in people:
        store.audit.write("import.replace" if person.id in existed else "import.add", person.id,
                          templates=len(person.templates))
    for result in results:
        if result.problem:
            print(f"skipped {result.problem}", file=sys.stderr)
    print(f"imported {len(people)} people ({len(existed)} replaced), skipped {len(results) - len(people)}")
    return EX_FAILED if len(people) < len(results) else 0


def cmd_rekey(args: argparse.Namespace) -> int:
    store = load_context(args.config).store()
    new_key = read_key_file(Path(args.new_key))
    new_store = store.rekey(new_key)
    store.audit.write("rekey", None, old_key=store.key_id, new_key=new_store.key_id)
    print(f"{store.path} is now encrypted with key {new_store.key_id} ({args.new_key}).\n"
          f"Now move {args.new_key} over the configured key file and restart the service.")
    return 0


def _current_state(store: WhitelistStore) -> str:
    """What the node has now, for the restore question: said even when the file is unusable."""
    newest = store.witnesses.newest()
    try:
        stored = store.read_file()
    except WhitelistError as exc:
        return f"{newest.describe()}; the file is not usable ({exc})"
    if stored is None:
        return f"{newest.describe()}; the file {store.path} is missing"
    return (f"{newest.describe()}; the file {store.path} holds {len(stored.whitelist)} people, "
            f"{stored.stamp.describe()}")


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise WhitelistError("not restored: add --yes to restore without being asked (no terminal to ask on)")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise WhitelistError("not restored (answered no); nothing changed")


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a backup back on purpose: shown first, written as a NEW generation (so it is accepted), audited."""
    if args.empty == (args.file is not None):
        raise WhitelistError("name one BACKUP file to restore, or --empty to start again with nobody")
    store = load_context(args.config).store()
    whitelist: Whitelist
    stamp: Stamp
    if args.empty:
        whitelist, stamp, sha256, source = Whitelist(), NONE, None, "empty"
        print("restore: an EMPTY whitelist (nobody is recognised until people are added again)")
    else:
        path = Path(args.file).resolve()
        stored = store.read_file(path)  # decrypts with this node's key: a foreign or damaged file stops here
        if stored is None:
            raise WhitelistError(f"backup {path} does not exist")
        whitelist, stamp, sha256, source = stored.whitelist, stored.stamp, stored.sha256, str(path)
        print(f"restore: {path} (sha256 {sha256[:16]}…)\n"
              f"  {len(whitelist)} people, {stamp.describe()}, bundle version {whitelist.bundle_version}")
    print(f"this node now: {_current_state(store)}")
    _confirm("write it as the whitelist's next generation?", args.yes)
    before, restored = store.restore(whitelist, source=source, source_sha256=sha256, source_stamp=stamp)
    print(f"restored {len(whitelist)} people as generation {restored.generation} (was {before.generation}); "
          f"recorded in {store.audit.path or 'no audit log'}. A running agent loads it within a second.\n"
          f"Bundle version kept at {whitelist.bundle_version}: if the platform sends bundles, ask it for a "
          "full bundle so this node and the platform agree again.")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    store = load_context(args.config).store()
    target = Path(args.file).resolve()
    stored = store.backup(target)
    print(f"wrote {target}: {len(stored.whitelist)} people, {stored.stamp.describe()}, sha256 "
          f"{hashlib.sha256(stored.blob).hexdigest()[:16]}…\nIt is encrypted with key {store.key_id}: keep that "
          f"key to restore it, with `edge-agent whitelist restore {target}`")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from agent.whitelist_bundle import apply_bundle_payload, load_bundle_public_key

    ctx = load_context(args.config)
    if ctx.paths.bundle_public_key is None:
        raise WhitelistError("whitelist.bundle_public_key is not set in the config: bundles cannot be verified")
    payload = json.loads(Path(args.file).read_bytes())
    summary = apply_bundle_payload(ctx.store(), payload, load_bundle_public_key(ctx.paths.bundle_public_key),
                                   node=ctx.node, actor=f"bundle:{args.file}")
    print(summary)
    return 0


def cmd_bundle_build(args: argparse.Namespace) -> int:
    from agent.config_faces import FaceConfig
    from agent.signing import load_private_key
    from agent.whitelist_bundle import build_bundle
    from agent.whitelist_enrol import make_engine, read_gallery

    faces = load_context(args.config).config.faces if args.config is not None else FaceConfig()
    key = load_private_key(args.sign)
    people: list[Person] = []
    if args.gallery is not None:
        results = read_gallery(make_engine(faces), Path(args.gallery), allow_name=False)
        problems = [r.problem for r in results if r.problem]
        if problems:
            raise ValueError("; ".join(problems))
        people = [r.person for r in results if r.person is not None]
    kind = "delta" if args.delta else "full"
    payload = build_bundle(key, people, args.version, kind, base_version=args.base, remove=args.remove,
                           audience=args.audience)
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    Path(args.out).write_bytes(data)
    print(f"wrote {kind} bundle version {args.version}: {len(people)} people, {len(data)} bytes → {args.out}")
    return 0


# --- parser ---------------------------------------------------------------------------------------

def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Expected failures (wrong key, tampered file, bad photo, refused bundle) as one line and exit 1;
    configuration errors propagate to edge-agent's main, which exits 78."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except (WhitelistError, ValueError, KeyError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            return EX_FAILED

    return run


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"agent configuration (default {DEFAULT_CONFIG_PATH})")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``whitelist`` and ``bundle`` to the ``edge-agent`` parser (``commands`` from add_subparsers)."""
    group = commands.add_parser("whitelist", help="the node's encrypted whitelist of people")
    sub = group.add_subparsers(dest="whitelist_command", required=True, metavar="SUBCOMMAND")

    keygen = sub.add_parser("keygen", help="write a new random AES-256 key file (mode 0600)")
    keygen.add_argument("--out", required=True, help="key file to create (never overwritten)")
    keygen.set_defaults(func=_guarded(cmd_keygen))

    add = sub.add_parser("add", help="add a person from photos (the photos are not kept)")
    _person_options(add)
    add.add_argument("--photo", action="append", required=True, help="photo of the face (repeatable)")
    _config(add)
    add.set_defaults(func=_guarded(cmd_add))

    enroll = sub.add_parser("enroll", help="add a person from a configured camera's live frames")
    _person_options(enroll)
    enroll.add_argument("--camera", required=True, help="camera name from hardware.cameras")
    enroll.add_argument("--keep", type=int, default=3,
                        help="templates to keep, one per head pose, frontal first (default 3, at most 5)")
    enroll.add_argument("--seconds", type=float, default=20.0, help="give up after this long (default 20)")
    _config(enroll)
    enroll.set_defaults(func=_guarded(cmd_enroll))

    for name, func, text in (("list", cmd_list, "everyone in the whitelist"),
                             ("show", cmd_show, "one person (without templates)")):
        parser = sub.add_parser(name, help=text)
        if name == "show":
            parser.add_argument("person_id", metavar="ID")
        parser.add_argument("--json", action="store_true", help="JSON output")
        _config(parser)
        parser.set_defaults(func=_guarded(func))
    for name, func, text in (("remove", cmd_remove, "remove a person"), ("enable", cmd_enable, "admit again"),
                             ("disable", cmd_enable, "keep enrolled but refuse (reason: disabled)")):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("person_id", metavar="ID")
        _config(parser)
        parser.set_defaults(func=_guarded(func))

    imp = sub.add_parser("import", help="add or replace everyone in DIR/<id>/*.jpg (+ optional person.yaml)")
    imp.add_argument("dir", metavar="DIR")
    _config(imp)
    imp.set_defaults(func=_guarded(cmd_import))

    rekey = sub.add_parser("rekey", help="re-encrypt with a new key (then install that key and restart)")
    rekey.add_argument("--new-key", required=True, help="the new key file (from whitelist keygen)")
    _config(rekey)
    rekey.set_defaults(func=_guarded(cmd_rekey))

    backup = sub.add_parser("backup", help="copy the current whitelist (still encrypted) to a new FILE")
    backup.add_argument("file", metavar="FILE", help="backup file to create (never overwritten)")
    _config(backup)
    backup.set_defaults(func=_guarded(cmd_backup))

    restore = sub.add_parser("restore", help="put a backup back on purpose, as a new generation (audited)")
    restore.add_argument("file", metavar="BACKUP", nargs="?", help="a whitelist file saved with this key")
    restore.add_argument("--empty", action="store_true", help="start again with nobody instead of a backup")
    restore.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    _config(restore)
    restore.set_defaults(func=_guarded(cmd_restore))

    apply = sub.add_parser("apply", help="verify and apply a platform-signed bundle")
    apply.add_argument("file", metavar="FILE")
    _config(apply)
    apply.set_defaults(func=_guarded(cmd_apply))

    bundle = commands.add_parser("bundle", help="signed whitelist bundles (platform side)")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")
    build = bundle_sub.add_parser("build", help="templates from DIR/<id>/*.jpg, signed; never photos or names")
    build.add_argument("--gallery", type=Path, help="DIR/<id>/*.jpg with optional person.yaml")
    build.add_argument("--sign", type=Path, required=True, help="the platform's Ed25519 private key")
    build.add_argument("--version", type=int, required=True, help="bundle version, higher than the last one")
    kind = build.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="replace everyone on the node (default)")
    kind.add_argument("--delta", action="store_true", help="add/replace the gallery's people, remove --remove ids")
    build.add_argument("--base", type=int, help="delta: the version the node has (default VERSION-1)")
    build.add_argument("--remove", action="append", default=[], help="delta: id to remove (repeatable)")
    build.add_argument("--audience", action="append", help="site/building[/node] it may be applied on")
    build.add_argument("--config", type=Path, help="agent YAML whose faces: settings to use (default built-in)")
    build.add_argument("--out", type=Path, required=True, help="bundle file to write (JSON)")
    build.set_defaults(func=_guarded(cmd_bundle_build))
