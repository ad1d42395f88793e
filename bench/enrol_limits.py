"""The figures behind the enrolment limits in agent/enrol_guard.py (docs/enrolment.md).

    python bench/enrol_limits.py            # both parts, about a minute on one core
    python bench/enrol_limits.py duplicate  # only the duplicate threshold (reads the encodings cache)
    python bench/enrol_limits.py quality    # only face size / sharpness / yaw of real enrolment photos

duplicate: lfw-dev's jittered enrolment templates from var/cache/face-encodings-lfw-dev.npz
(bench/face_encodings.py). People are split at random (seed 0) into a half to choose on and a half to
report on; for each threshold: the share of same-person pairs it catches (a second enrolment of one
person under another id), and the share of photos whose nearest *other* person in a gallery of the
rest of that half is below it (an honest enrolment refused without --force). And how often two photos
of one person are farther apart than 0.6, the limit for the photos of one enrolment.

quality: the largest face of each shared gallery photo and of one photo each of 300 lfw-dev people
(seed 1): its size (shorter side of the detector's box), sharpness and yaw, and any other face.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "faces"
CACHE = ROOT / "var" / "cache" / "face-encodings-lfw-dev.npz"
THRESHOLDS = (0.30, 0.35, 0.38, 0.40, 0.42, 0.45)


def duplicate() -> None:
    data = np.load(CACHE, allow_pickle=True)
    people, enrol = np.asarray(data["people"]), data["enrol"]
    usable = ~np.isnan(enrol).any(axis=1)
    people, enrol = people[usable], enrol[usable]
    ids = sorted(set(people))
    random.Random(0).shuffle(ids)
    for half, chosen in (("choose", set(ids[: len(ids) // 2])), ("report", set(ids[len(ids) // 2:]))):
        mask = np.array([p in chosen for p in people])
        who, templates = people[mask], enrol[mask]
        distances = np.linalg.norm(templates[:, None, :] - templates[None, :, :], axis=2)
        same = who[:, None] == who[None, :]
        upper = np.triu_indices(len(who), 1)
        same_pairs = distances[upper][same[upper]]
        nearest_other = np.where(same, np.inf, distances).min(axis=1)
        print(f"{half}: {len(who)} photos of {len(chosen)} people, {len(same_pairs)} same-person pairs")
        print(f"  same-person pairs above 0.6 (two photos of one add disagree): {np.mean(same_pairs > 0.6):.2%}; "
              f"different-person pairs at most 0.6: {np.mean(distances[upper][~same[upper]] <= 0.6):.2%}")
        for t in THRESHOLDS:
            print(f"  {t:.2f}: catches {np.mean(same_pairs < t):.1%} of same-person pairs; "
                  f"{np.mean(nearest_other < t):.2%} of photos have another person of {len(chosen) - 1} that close")


def quality() -> None:
    from models.face import FaceEngine, sharpness, to_grey, yaw_ratio
    from models.image_io import image_files, read_image

    engine = FaceEngine()

    def measure(path: Path) -> tuple[int, float, float, list[int]] | None:
        image = read_image(path, unchanged=True)
        boxes = engine.detect(image)
        if not boxes:
            return None
        box = boxes[0]
        crop = to_grey(image)[box.top:box.bottom, box.left:box.right]
        return (min(box.width, box.height), sharpness(crop), yaw_ratio(engine.landmarks(image, box)),
                [min(b.width, b.height) for b in boxes[1:]])

    for folder in sorted((SHARED / "gallery").iterdir()):
        for photo in image_files(folder):
            print(f"gallery {folder.name}/{photo.name}: {measure(photo)}")
    folders = sorted(p for p in (SHARED / "lfw-dev").iterdir() if p.is_dir())
    rows = [measure(image_files(p)[0]) for p in random.Random(1).sample(folders, 300)]
    found = [r for r in rows if r is not None]
    px, sharp, yaw = (np.array([r[i] for r in found]) for i in range(3))
    others = sorted(size for r in found for size in r[3])
    print(f"lfw-dev: {len(found)} of {len(rows)} photos with a face")
    print(f"  face px 1/5/50%: {np.quantile(px, [0.01, 0.05, 0.5])}")
    print(f"  sharpness 1/5/50%: {np.quantile(sharp, [0.01, 0.05, 0.5]).round(1)}")
    print(f"  |yaw| 50/95/99%: {np.quantile(np.abs(yaw), [0.5, 0.95, 0.99]).round(3)}")
    print(f"  other faces in {sum(1 for r in found if r[3])} photos, px: {others}")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["duplicate", "quality"]
    for part in parts:
        {"duplicate": duplicate, "quality": quality}[part]()
