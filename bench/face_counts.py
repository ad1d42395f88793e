"""Count the faces the gate's detector finds in every photo of a people folder, once, for the enrolment rule.

    python bench/face_counts.py ../shared/data/faces/lfw-dev

writes ``var/face-counts-<folder>.npz`` (paths, faces).  Enrolment refuses a photo with more than one
face (issue 33, part 3): LFW has photos of two people under one name (Elena_de_Chavez_0001 is held by
Hugo Chavez, whose larger face is the one encoded), and a gallery-scale evaluation that enrolled them
would count Hugo Chavez's 71 photos as "strangers admitted".  ``agent/eval_scale.py`` enrols only photos
with one face when this file is there.  About 45 ms a photo on one core (lfw-dev: ~5 minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_faces import read_image  # noqa: E402
from models.face import FaceEngine  # noqa: E402


def counts_path(folder: Path) -> Path:
    return ROOT / "var" / f"face-counts-{folder.resolve().name}.npz"


def main() -> int:
    folder = Path(sys.argv[1])
    engine = FaceEngine()
    paths = sorted(f"{p.parent.name}/{p.name}" for p in folder.glob("*/*") if p.is_file())
    faces = np.array([len(engine.detect(read_image(folder / p))) for p in paths], dtype=np.int16)
    out = counts_path(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, paths=np.array(paths), faces=faces)
    print(f"{out}: {len(paths)} photos, {np.bincount(faces).tolist()} with 0, 1, 2, ... faces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
