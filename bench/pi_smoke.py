"""What the node's compiled code computes, as one JSON object, to compare a Raspberry Pi's CPU with this one.

`bench/pi_cpus.sh` runs this natively and under qemu-user as a Pi 4 (Cortex-A72) and a Pi 5 (Cortex-A76),
with the aarch64 wheels pip installs on a Pi. Each part goes through the library the node uses for it,
and through the agent's own code where it has some:

- ``versions``: every runtime module imports (a wheel built for a newer Arm dies here with SIGILL);
- ``whitelist`` and ``command``: AES-GCM and Ed25519 (cryptography's Rust core);
- ``config`` and ``events``: the example YAML through pydantic, an event through SQLite in WAL mode;
- ``plates``: reads with onnxruntime, OpenCV, pyclipper and Shapely: a rendered Chinese plate when a CJK
  font is installed, and the first shared crops and scenes when ``../shared`` is beside the project;
- ``faces``: dlib's 128-d descriptors of the first shared gallery photos (rounded: floating point may
  differ in the last places between CPUs; the comparison allows for it).

Usage: python bench/pi_smoke.py [--crops N] [--scenes N] [--faces N] > out.json
       python bench/pi_smoke.py --compare WORK CPU... (what bench/pi_cpus.sh prints at the end)
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

# Every module the node imports from a wheel or from Debian; the compiled ones are why this check exists.
RUNTIME_MODULES = (
    "numpy", "cv2", "onnxruntime", "dlib", "face_recognition_models", "PIL.Image", "shapely",
    "pyclipper", "cryptography", "pydantic_core", "yaml", "sqlite3", "sqlite_utils", "paho.mqtt",
    "gpiozero",
)


def versions() -> dict[str, str]:
    found = {}
    for name in RUNTIME_MODULES:
        module = importlib.import_module(name)
        found[name] = str(getattr(module, "__version__", ""))
    return found


def whitelist_round_trip() -> dict[str, Any]:
    from agent.whitelist import Person, Whitelist
    from agent.whitelist_store import decrypt, encrypt, new_key_text, parse_key

    key = parse_key(new_key_text(), "smoke")
    sent = Whitelist([Person(id="r-0101", name="住户", plates=("京A12345",))])
    back = decrypt(encrypt(sent, key), key)
    person = back.get("r-0101")
    return {"people": len(back), "plates": list(person.plates) if person else None}


def command_signature() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.signing import CommandRejected, sign_command, verify_signature

    private = Ed25519PrivateKey.generate()
    command = sign_command(private, "gate.open", "site/b1/n1", {"gate": "main"})
    verify_signature(private.public_key(), command)
    command["args"] = {"gate": "garage"}
    try:
        verify_signature(private.public_key(), command)
        tampered = "accepted"
    except CommandRejected as rejected:
        tampered = str(rejected)
    return {"verified": True, "tampered": tampered}


def config_and_events() -> dict[str, Any]:
    from agent.config_loader import load_config
    from agent.event_store import EventStore
    from agent.events import Event

    config = load_config(ROOT / "config" / "agent.example.yaml")
    with tempfile.TemporaryDirectory() as folder:
        store = EventStore(Path(folder) / "events.db")
        granted = Event(node=config.node.node_id, type="access.granted", device="barrier", details={"method": "plate"})
        store.append(granted)
        journal = store.db.execute("PRAGMA journal_mode").fetchone()[0]
        stored = [s.event.type for s in store.query()]
        store.close()
    return {"node": config.node.node_id, "journal_mode": journal, "events": stored}


def plates(crops: int, scenes: int) -> dict[str, Any]:
    from agent.eval_plates import evaluate, load_samples
    from agent.simulation_media import MediaUnavailable, cjk_font, render_plate
    from models.plate import PlateReader

    reads: dict[str, Any] = {}
    chinese = PlateReader("cn")
    try:
        reads["rendered 京A12345"] = [read.text for read in chinese.read(render_plate("京A12345", cjk_font()))]
    except MediaUnavailable as missing:  # no CJK font: the simulation falls back the same way
        reads["rendered 京A12345"] = f"skipped: {missing}"
    for folder, reader, count in (("cn-crops", chinese, crops), ("us", PlateReader("us"), scenes)):
        path = SHARED / "plates" / folder
        if not (path / "labels.csv").is_file():
            reads[folder] = f"skipped: {path / 'labels.csv'} not found"
            continue
        # As `edge-agent eval plates` reads them: a crop is read as one.
        for outcome in evaluate(path, reader, samples=load_samples(path)[:count]):
            reads[f"{folder}/{outcome.image}"] = [outcome.read]
    return reads


def faces(count: int) -> dict[str, Any]:
    import cv2

    from models.face import FaceEngine

    gallery = SHARED / "faces" / "gallery"
    if not gallery.is_dir():
        return {"skipped": f"{gallery} not found"}
    engine = FaceEngine(enrol_jitters=0)
    descriptors = {}
    for photo in sorted(p for p in gallery.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:count]:
        templates = engine.templates_from_image(cv2.imread(str(photo)))
        descriptors[str(photo.relative_to(gallery))] = [round(float(v), 4) for v in templates[0]] if templates else None
    return descriptors


FACE_TOLERANCE = 0.01  # per descriptor value; residents match at a distance of 0.5 over all 128


def compare(work: Path, cpus: list[str]) -> bool:
    """Print each emulated CPU's run beside the native one (``WORK/native.json``); True when all agree."""
    native = json.loads((work / "native.json").read_text())
    agreed = True
    for cpu in cpus:
        code, seconds = map(int, (work / f"{cpu}.status").read_text().split())
        if code:
            name = signal.Signals(code - 128).name if code > 128 else f"exit {code}"
            tail = (work / f"{cpu}.err").read_text().strip().splitlines()[-3:]
            print(f"{cpu}: FAIL, died ({name}) after {seconds} s: " + " | ".join(tail))
            agreed = False
            continue
        emulated = json.loads((work / f"{cpu}.json").read_text())
        differences = [part for part in native if part != "faces" and native[part] != emulated.get(part)]
        worst = 0.0
        for photo, descriptor in native["faces"].items():
            other = emulated["faces"].get(photo)
            if not isinstance(descriptor, list) or not isinstance(other, list):
                if descriptor != other:
                    differences.append(f"faces {photo}")
                continue
            worst = max([worst] + [abs(a - b) for a, b in zip(descriptor, other, strict=True)])
        if worst > FACE_TOLERANCE:
            differences.append(f"faces (a descriptor value {worst:.4f} apart)")
        reads = sum(isinstance(v, list) for v in native["plates"].values())
        faces = sum(isinstance(v, list) for v in native["faces"].values())
        verdict = "FAIL, differs in " + ", ".join(differences) if differences else "OK"
        alike = "read" if "plates" in differences else "read alike"
        print(f"{cpu}: {verdict}: {len(native['versions'])} modules, {reads} plate images {alike}, "
              f"{faces} face descriptors at most {worst:.4f} apart, {seconds} s emulated")
        agreed &= not differences
    print("versions: " + ", ".join(f"{k} {v}" for k, v in native["versions"].items() if v))
    return agreed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=6, help="shared Chinese crops to read")
    parser.add_argument("--scenes", type=int, default=2, help="shared US scenes to read")
    parser.add_argument("--faces", type=int, default=3, help="shared gallery photos to encode")
    parser.add_argument("--compare", nargs="+", metavar=("WORK", "CPU"),
                        help="instead: compare WORK/CPU.json (and .status, .err) with WORK/native.json")
    args = parser.parse_args()
    if args.compare:
        return 0 if compare(Path(args.compare[0]), args.compare[1:]) else 1
    result = {
        "versions": versions(),
        "whitelist": whitelist_round_trip(),
        "command": command_signature(),
        "config_and_events": config_and_events(),
        "plates": plates(args.crops, args.scenes),
        "faces": faces(args.faces),
    }
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
