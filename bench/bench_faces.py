"""Face pipeline figures beside the naive face_recognition loop. Run on one core:

    taskset -c 0 .venv/bin/python bench/bench_faces.py

1. Hamilton clip replayed at real-time pacing (frames become available at 29.97 fps; a loop that is busy
   skips to the newest frame, as with a live camera) with Lin-Manuel Miranda enrolled: time from his
   first appearance to the grant and CPU-seconds over the clip, for the pipeline and for the naive loop
   (face_recognition's Raspberry Pi example: face_locations + face_encodings on every full frame,
   compare_faces at 0.6). Frames are decoded before timing in both cases.
2. CPU on an empty scene at 15 fps (static background + sensor noise), both loops.
3. 1:N match time (median) at 1k, 10k, 50k templates: Gallery.match vs face_recognition.face_distance.
4. Peak RSS of a process holding the models and 10k people x 3 templates (subprocess each).

``--clip-only``: figure 1 alone (run it under ``../shared/tools/at-pi-speed`` for Pi speed: both loops in
the same run). ``--correlation``: every frame of the clip encoded, what a second encoding of one face buys.

The walk-up at Pi speed (issue 33), measured with ``../shared/tools/at-pi-speed .venv/bin/python
bench/bench_faces.py --clip-only``, replayed from frame 84: pipeline 0.49-0.57 s (before the stricter decision
0.50-0.51 s, same machine and hour), naive loop 0.32-0.42 s in the same runs. The naive loop grants on frame
84 itself at its 0.6 tolerance; Lin's encodings there are 0.56-0.57 (``--correlation``: frames 82-89 all miss
0.5, the first within 0.5 is frame 90, 0.2 s after the close-up). No rule at 0.5 or stricter can grant
before that frame arrives, plus one encoding (~0.2 s at Pi speed): the floor is ~0.4 s on this clip, whatever
the scheduling. Measured and not kept: detecting at detect_width before the 960 px search when nothing is
tracked (saves ~70 ms of the first detection; grant 0.43-0.49 s, within the run-to-run noise). A second
encoding process cannot show under at-pi-speed (one core) and would not pass the floor either.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.face import FaceEngine, Gallery  # noqa: E402
from models.face_settings import FaceSettings  # noqa: E402
from models.face_track import FacePipeline  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "faces" / "video"
FPS = 29.97
# Frames where Lin-Manuel Miranda is first visible: 0 on stage (a ~53 px face, 10 m away) and 84 when he
# walks up to the camera (~90 px face, as at a gate). Found by running dlib over every frame once.
FIRST_SEEN = {"on stage (frame 0)": 0, "close-up (frame 84)": 84}


def decode(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def replay(frames: list[np.ndarray], fps: float, step: Callable[[np.ndarray, float, int], bool]) -> float:
    """Offer frames at real-time pacing; ``step`` gets the newest frame. Returns CPU-seconds used."""
    cpu0, start, last = time.process_time(), time.perf_counter(), -1
    while True:
        index = int((time.perf_counter() - start) * fps)
        if index >= len(frames):
            return time.process_time() - cpu0
        if index == last:
            time.sleep(max(0.0, (index + 1) / fps - (time.perf_counter() - start)))
            continue
        last = index
        step(frames[index], (time.perf_counter() - start), index)


def pipeline_clip(frames: list[np.ndarray], engine: FaceEngine, gallery: Gallery) -> dict[str, object]:
    pipeline = FacePipeline(engine, lambda: gallery, FaceSettings())
    events: list[tuple[float, int, str, str | None]] = []

    start_wall = [time.perf_counter()]

    def step(frame: np.ndarray, now: float, index: int) -> bool:
        for d in pipeline.process(frame, now):
            # time once the decision is made (as for the naive loop), not when its frame arrived
            events.append((time.perf_counter() - start_wall[0], index, d.outcome, d.person_id))
        return True

    start_wall[0] = time.perf_counter()
    cpu = replay(frames, FPS, step)
    grant = next(((t, i) for t, i, outcome, person in events if outcome == "match" and person == "lin"), None)
    return {"cpu": cpu, "grant": grant, "events": events}


def naive_clip(frames: list[np.ndarray], known: np.ndarray) -> dict[str, object]:
    import face_recognition

    grants: list[tuple[float, int]] = []

    def step(frame: np.ndarray, now: float, index: int) -> bool:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        for encoding in face_recognition.face_encodings(rgb, face_recognition.face_locations(rgb)):
            if face_recognition.compare_faces([known], encoding, tolerance=0.6)[0]:
                grants.append((time.perf_counter() - start_wall[0], index))
        return True

    start_wall = [time.perf_counter()]
    cpu = replay(frames, FPS, step)
    return {"cpu": cpu, "grant": grants[0] if grants else None}


def empty_scene(seconds: float, step: Callable[[np.ndarray, float], None]) -> float:
    """CPU fraction of one core while a static, noisy 640x480 scene streams at 15 fps."""
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(30, 220, (480, 640, 3), dtype=np.uint8), (0, 0), 9)
    noisy = [np.clip(scene + rng.normal(0, 4, scene.shape), 0, 255).astype(np.uint8) for _ in range(16)]
    frames = [noisy[i % len(noisy)] for i in range(int(seconds * 15))]
    cpu = replay(frames, 15.0, lambda frame, now, index: step(frame, now) or True)
    return cpu / seconds


def match_times(sizes: tuple[int, ...]) -> None:
    import face_recognition

    rng = np.random.default_rng(3)
    for size in sizes:
        templates = rng.normal(0, 0.09, (size, 128)).astype(np.float32)
        gallery = Gallery.from_templates((f"p{i // 3}", t) for i, t in enumerate(templates))
        known = [t.astype(np.float64) for t in templates]  # what the naive loop keeps
        probes = rng.normal(0, 0.09, (101, 128)).astype(np.float32)
        ours, naive = [], []
        for probe in probes:
            t = time.perf_counter()
            gallery.match(probe)
            ours.append(time.perf_counter() - t)
        for probe in probes[:21]:
            t = time.perf_counter()
            int(np.argmin(face_recognition.face_distance(known, probe)))
            naive.append(time.perf_counter() - t)
        print(
            f"  {size:>6} templates: Gallery.match {statistics.median(ours) * 1e3:6.3f} ms   "
            f"face_distance+argmin {statistics.median(naive) * 1e3:7.3f} ms"
        )


RSS_CHILD = """
import sys, numpy as np
sys.path.insert(0, {root!r})
rng = np.random.default_rng(5)
templates = rng.normal(0, 0.09, (30000, 128)).astype(np.float32)
if {naive}:
    import face_recognition
    known = [t.astype(np.float64) for t in templates]
    names = [f"p{{i // 3}}" for i in range(len(known))]
else:
    from models.face import FaceEngine, Gallery
    engine = FaceEngine()
    gallery = Gallery.from_templates((f"p{{i // 3}}", t) for i, t in enumerate(templates))
    gallery.match(templates[0])
del templates
# VmHWM, not ru_maxrss: ru_maxrss keeps the forking parent's peak across exec
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024)
"""


def peak_rss(naive: bool) -> float:
    code = RSS_CHILD.format(root=str(ROOT), naive=naive)
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--empty-seconds", type=float, default=8.0)
    parser.add_argument("--correlation", action="store_true", help="only the consecutive-encoding measurement")
    parser.add_argument("--clip-only", action="store_true", help="only the Hamilton clip figures")
    args = parser.parse_args()
    import face_recognition

    frames = decode(VIDEO / "short_hamilton_clip.mp4")
    engine = FaceEngine.from_settings(FaceSettings())
    photo = cv2.imread(str(VIDEO / "lin-manuel-miranda.png"))
    gallery = Gallery.from_templates(("lin", t) for t in engine.templates_from_image(photo))
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    known = face_recognition.face_encodings(rgb)[0]
    clip_seconds = len(frames) / FPS
    if args.correlation:
        print("consecutive encodings of one face (every frame encoded, distance to Lin's template):")
        consecutive_correlation(frames, engine, gallery)
        return
    print(f"clip: {len(frames)} frames, {clip_seconds:.1f} s at {FPS} fps, real-time pacing, one core")

    ours = pipeline_clip(frames, engine, gallery)
    naive = naive_clip(frames, known)
    for name, result in (("pipeline", ours), ("naive", naive)):
        print(f"  {name:<8} CPU {result['cpu']:.2f} s over the clip ({result['cpu'] / clip_seconds:.0%} of a core)")
        grant = result["grant"]
        if grant is None:
            print(f"  {name:<8} never granted Lin-Manuel Miranda")
            continue
        t, index = grant
        for label, first in FIRST_SEEN.items():
            if index >= first:
                print(f"  {name:<8} grant at frame {index}: {t - first / FPS:.2f} s after {label}")
    print(f"  pipeline CPU / naive CPU: {ours['cpu'] / naive['cpu']:.0%}")
    # the gate case: replay from the moment he walks up to the camera, so neither loop has seen him before
    walk_up = FIRST_SEEN["close-up (frame 84)"]
    for name, result in (
        ("pipeline", pipeline_clip(frames[walk_up:], engine, gallery)),
        ("naive", naive_clip(frames[walk_up:], known)),
    ):
        grant = result["grant"]
        shown = f"{grant[0]:.2f} s (frame {grant[1] + walk_up})" if grant else "never"
        print(f"  replay from frame {walk_up}: {name:<8} grant after {shown}, CPU {result['cpu']:.2f} s")
    for t, index, outcome, person in ours["events"]:
        print(f"  pipeline decision: frame {index} ({t:.2f} s) {outcome} {person or ''}")
    if args.clip_only:
        return

    pipeline = FacePipeline(engine, lambda: gallery, FaceSettings())
    ours_empty = empty_scene(args.empty_seconds, lambda f, now: pipeline.process(f, now) and None)

    def naive_step(frame: np.ndarray, now: float) -> None:
        small = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        face_recognition.face_encodings(small, face_recognition.face_locations(small))

    naive_empty = empty_scene(min(args.empty_seconds, 4.0), naive_step)
    print(f"empty scene at 15 fps: pipeline {ours_empty:.1%} of a core, naive {naive_empty:.1%}")

    print("1:N match, median:")
    match_times((1_000, 10_000, 50_000))
    print(
        f"peak RSS with models + 10k people x 3 templates: pipeline {peak_rss(False):.0f} MB, "
        f"naive (face_recognition, list of float64) {peak_rss(True):.0f} MB"
    )
    print(f"(this process, with the decoded clip and face_recognition loaded: {rss_mb():.0f} MB peak)")


def frame_distances(frames: list[np.ndarray], engine: FaceEngine, gallery: Gallery) -> list[list[tuple[int, float]]]:
    """Every frame detected (at search width) and every face encoded; faces chained into tracks by the
    pipeline's Tracker. Returns per track the (frame, distance to the enrolled person) of its encodings."""
    from models.face_track import Tracker

    tracker = Tracker(max_shift=1.0, timeout=0.5)
    series: dict[int, list[tuple[int, float]]] = {}
    for index, frame in enumerate(frames):
        tracker.expire(index / FPS)
        for track in tracker.update(engine.detect(frame, 960), index / FPS):
            sample = engine.encode(frame, track.box)
            if sample is not None:
                series.setdefault(track.track_id, []).append((index, gallery.match(sample.encoding).distance))
    return [v for v in series.values() if len(v) >= 2]


def consecutive_correlation(frames: list[np.ndarray], engine: FaceEngine, gallery: Gallery) -> None:
    """How much a second encoding of the same face buys: distances of consecutive encodings of one track
    (3 frames = 0.1 s apart, the pipeline's encode interval), their lag correlation, and the fraction of
    encodings within a threshold whose follower is within it too (P(2nd | 1st) vs P(1st))."""
    tracks = frame_distances(frames, engine, gallery)
    for lag in (3, 6):
        # within one track: pooling tracks would count the gap between people as correlation
        own = [np.array([(a[1], b[1]) for a in t for b in t if b[0] - a[0] == lag]) for t in tracks]
        longest = max(own, key=len)
        pairs = np.concatenate([o for o in own if len(o)])
        x, y = pairs.T
        print(f"  lag {lag} frames ({lag / FPS:.2f} s): {len(pairs)} pairs, correlation within the longest track "
              f"{np.corrcoef(longest[:, 0], longest[:, 1])[0, 1]:.3f} ({len(longest)} pairs), "
              f"|difference| median {np.median(abs(x - y)):.3f}, 90% {np.quantile(abs(x - y), 0.9):.3f}")
        for threshold in (0.5, 0.55, 0.6):
            first = x <= threshold
            both = first & (y <= threshold)
            p1 = first.mean()
            p21 = both.sum() / max(1, first.sum())
            print(f"    within {threshold}: P(1st) {p1:.3f}, P(2nd | 1st) {p21:.3f}, P(both) {both.mean():.3f} "
                  f"(independent frames would give {p1 * p1:.3f})")
    walk_up = max(tracks, key=len)
    print("  walk-up track, first encodings (frame: distance): "
          + ", ".join(f"{i}: {d:.3f}" for i, d in walk_up[:12]))
    for t in tracks:
        d = np.array([v for _, v in t])
        print(f"  track frames {t[0][0]}-{t[-1][0]}: {len(t)} encodings, distance min {d.min():.3f} "
              f"median {np.median(d):.3f} max {d.max():.3f}")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
