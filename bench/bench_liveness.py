"""Liveness evaluator: generated photo attacks refused, genuine walk-ups still admitted, added latency.

    nice -n 10 .venv/bin/python bench/bench_liveness.py            # attacks + genuine, as fast as it runs
    ../shared/tools/at-pi-speed .venv/bin/python bench/bench_liveness.py --latency-only

1. Attacks (bench/liveness_attacks.py, seeded): each enrolled resident's own enrolment photo presented as
   every attack kind, ``--seeds`` seeds each, through the real FacePipeline with liveness off (does the
   attack fool recognition?) and with each mode given by ``--modes``. An attack counts as admitted when
   the pipeline grants the attacked resident.
2. Genuine: the Hamilton clip (Lin-Manuel Miranda enrolled from video/lin-manuel-miranda.png) replayed
   frame by frame: his passes granted or not, per mode.
3. Latency: the clip replayed at real-time pacing (as bench/bench_faces.py does) from the walk-up (frame
   84): time to his grant with liveness off and with parallax, in the same run. Run under at-pi-speed.

`edge-agent eval faces` measures recognition on single photos with liveness off: one photo cannot show
liveness. This is the evaluator for liveness.
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

from bench.bench_faces import FPS, decode, replay  # noqa: E402
from bench.liveness_attacks import KINDS, attack_frames  # noqa: E402
from models.face import FaceEngine, Gallery  # noqa: E402
from models.face_settings import FaceSettings  # noqa: E402
from models.face_track import FacePipeline  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
# resident -> the photo enrolled (and then held to the camera by the attacker, as in issue 33)
RESIDENTS = {
    "lin": FACES / "video" / "lin-manuel-miranda.png",
    "alex": FACES / "video" / "alex-lacamoire.png",
    "obama": FACES / "gallery" / "obama" / "obama.jpg",
    "kit": FACES / "gallery" / "kit_harington" / "john1.jpeg",
}
ATTACK_FPS, ATTACK_SECONDS = 10.0, 4.0  # longer than face_liveness.WAIT_SECONDS: the pass runs to its end
WALK_UP = 84  # the clip's frame where Lin-Manuel Miranda walks up to the camera (bench_faces.FIRST_SEEN)


def enrol(engine: FaceEngine) -> tuple[Gallery, dict[str, np.ndarray]]:
    photos = {person: cv2.imread(str(path)) for person, path in RESIDENTS.items()}
    templates = [(person, t) for person, photo in photos.items() for t in engine.templates_from_image(photo)]
    return Gallery.from_templates(templates), photos


def run_frames(engine: FaceEngine, gallery: Gallery, liveness: str, frames: list[np.ndarray],
               fps: float) -> list[tuple[int, str, str | None]]:
    pipeline = FacePipeline(engine, lambda: gallery, FaceSettings(liveness=liveness))  # type: ignore[arg-type]
    return [(i, d.outcome, d.person_id) for i, f in enumerate(frames) for d in pipeline.process(f, i / fps)]


def attacks(engine: FaceEngine, gallery: Gallery, photos: dict[str, np.ndarray], modes: list[str],
            seeds: range, backgrounds: list[np.ndarray]) -> None:
    print(f"attacks: {len(photos)} residents x seeds {seeds.start}-{seeds.stop - 1} per kind,"
          f" {ATTACK_SECONDS:.0f} s at {ATTACK_FPS:.0f} fps; admitted = the attacked resident granted")
    print(f"  {'kind':<8}" + "".join(f"{m + ' admitted':>20}" for m in modes))
    totals = dict.fromkeys(modes, 0)
    count = 0
    for kind in KINDS:
        admitted = dict.fromkeys(modes, 0)
        for person, photo in photos.items():
            for seed in seeds:
                frames = attack_frames(photo, kind, seed, ATTACK_SECONDS, ATTACK_FPS, backgrounds)
                for mode in modes:
                    outcomes = run_frames(engine, gallery, mode, frames, ATTACK_FPS)
                    admitted[mode] += any(o == "match" and p == person for _, o, p in outcomes)
        n = len(photos) * len(seeds)
        count += n
        for mode in modes:
            totals[mode] += admitted[mode]
        print(f"  {kind:<8}" + "".join(f"{f'{admitted[m]} of {n}':>20}" for m in modes), flush=True)
    print(f"  {'all':<8}" + "".join(f"{f'{totals[m]} of {count}':>20}" for m in modes))


def genuine(engine: FaceEngine, gallery: Gallery, clip: list[np.ndarray], modes: list[str]) -> None:
    print("genuine: the Hamilton clip, every frame (frame: outcome person)")
    for mode in modes:
        outcomes = run_frames(engine, gallery, mode, clip, FPS)
        print(f"  {mode:<9} " + ", ".join(f"{i}: {o} {p or ''}".strip() for i, o, p in outcomes))


def latency(engine: FaceEngine, gallery: Gallery, clip: list[np.ndarray], modes: list[str], runs: int) -> None:
    print(f"latency: clip replayed at real-time pacing from frame {WALK_UP} (the walk-up), time to his grant")
    for mode in modes:
        times = []
        for _ in range(runs):
            pipeline = FacePipeline(engine, lambda: gallery, FaceSettings(liveness=mode))  # type: ignore[arg-type]
            grants: list[float] = []
            start = time.perf_counter()

            def step(frame: np.ndarray, now: float, index: int, pipeline: FacePipeline = pipeline,
                     grants: list[float] = grants, start: float = start) -> bool:
                for d in pipeline.process(frame, now):
                    if d.outcome == "match" and d.person_id == "lin":
                        grants.append(time.perf_counter() - start)
                return True

            replay(clip[WALK_UP:], FPS, step)
            times.append(grants[0] if grants else float("nan"))
        print(f"  {mode:<9} " + "  ".join(f"{t:.2f} s" for t in times) + f"   median {np.nanmedian(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="off,motion,parallax", help="liveness modes to compare")
    parser.add_argument("--seeds", type=int, default=2, help="attacks per resident and kind")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here (held-out runs: e.g. 10)")
    parser.add_argument("--runs", type=int, default=3, help="latency replays per mode")
    parser.add_argument("--latency-only", action="store_true", help="only the real-time latency (for at-pi-speed)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    engine = FaceEngine(with_eye_landmarks="blink" in modes)
    gallery, photos = enrol(engine)
    clip = decode(FACES / "video" / "short_hamilton_clip.mp4")
    if not args.latency_only:
        # backgrounds for the composited attack: the clip after his walk-up (no Lin-Manuel Miranda in them)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        attacks(engine, gallery, photos, modes, seeds, clip[150:])
        genuine(engine, gallery, clip, modes)
    latency(engine, gallery, clip, [m for m in ("off", "parallax") if m in modes] or modes, args.runs)


if __name__ == "__main__":
    main()
