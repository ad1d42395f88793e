"""Encode every photo of a people folder once, as the gate and the enrolment would, and cache it.

    python bench/face_encodings.py ../shared/data/faces/lfw-dev

writes ``var/cache/face-encodings-<folder>.npz``: per photo its person, path, the probe encoding (no
jitter, quality-checked as at the gate) and the enrolment template (jittered, as ``whitelist add``).
A photo without a usable face has NaN rows. Calibration and gallery-scale evaluations read the cache
instead of running dlib again (lfw-dev: 6,175 photos, about an hour on one core). Re-running resumes:
photos already in the cache are not encoded again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.face import FaceEngine  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm"}
SAVE_EVERY = 200


def cache_path(folder: Path) -> Path:
    return ROOT / "var" / "cache" / f"face-encodings-{folder.resolve().name}.npz"


def load_cache(path: Path) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    if not path.exists():
        return {}
    data = np.load(path, allow_pickle=False)
    return {str(p): (str(person), probe, enrol)
            for p, person, probe, enrol in zip(data["paths"], data["people"], data["probe"], data["enrol"],
                                               strict=True)}


def save_cache(path: Path, entries: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(entries)
    temp = path.with_suffix(".tmp.npz")
    np.savez(temp, paths=np.array(keys), people=np.array([entries[k][0] for k in keys]),
             probe=np.stack([entries[k][1] for k in keys]), enrol=np.stack([entries[k][2] for k in keys]))
    temp.replace(path)


def photos(folder: Path) -> list[tuple[str, Path]]:
    return [(person.name, image) for person in sorted(p for p in folder.iterdir() if p.is_dir())
            for image in sorted(person.iterdir()) if image.suffix.lower() in IMAGE_SUFFIXES]


def encode(engine: FaceEngine, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    missing = np.full(128, np.nan, dtype=np.float32)
    for box in engine.detect(image):
        sample = engine.encode(image, box)
        if sample is None:
            continue
        template = engine.encode(image, box, jitters=engine.enrol_jitters)
        return sample.encoding, template.encoding if template is not None else missing
    return missing, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of people: <person>/<photo>")
    args = parser.parse_args()
    path = cache_path(args.folder)
    entries = load_cache(path)
    todo = [(person, image) for person, image in photos(args.folder)
            if str(image.relative_to(args.folder)) not in entries]
    print(f"{len(entries)} cached, {len(todo)} to encode -> {path}", flush=True)
    engine = FaceEngine()
    started = time.monotonic()
    for done, (person, image_path) in enumerate(todo, 1):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        probe, enrol = encode(engine, image)
        entries[str(image_path.relative_to(args.folder))] = (person, probe, enrol)
        if done % SAVE_EVERY == 0 or done == len(todo):
            save_cache(path, entries)
            rate = done / (time.monotonic() - started)
            print(f"{done}/{len(todo)} ({rate:.1f} photos/s)", flush=True)
    if not todo and entries:
        print("nothing to do")


if __name__ == "__main__":
    main()
