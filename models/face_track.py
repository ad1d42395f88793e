"""Per-camera face pipeline: motion gate → detection → tracking → encoding → k-of-n vote → decision.

One person walking past the camera is one track and gets one decision. Frames are only looked at
closely when something moves or a track is open, so an empty scene costs a thumbnail per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.face import Box, FaceEngine, FaceSample, Gallery, Match
from models.face_liveness import WAIT_SECONDS, shows_parallax
from models.face_settings import FaceSettings
from models.motion import MotionGate

Outcome = Literal["match", "stranger", "liveness", "uncertain"]
HOG_SMALLEST_FACE = 65  # px at detection scale: dlib's frontal HOG (80x80 window) reports no smaller box


@dataclass(frozen=True)
class FaceDecision:
    """One decision per track. ``person_id`` is set only for outcome "match".

    ``candidate``: for outcome "uncertain", the resident the face came close to. Internal only (never
    put in an event): a second credential at the gate may finish the pass as a 1:1 check against him."""

    track_id: int
    person_id: str | None
    outcome: Outcome
    distance: float  # best distance seen for the voted (or nearest) person
    margin: float
    encodings: int
    ts: float
    candidate: str | None = None


@dataclass
class Track:
    track_id: int
    box: Box
    first_ts: float
    last_seen: float
    last_encode: float = float("-inf")
    matches: list[Match] = field(default_factory=list)
    encode_times: list[float] = field(default_factory=list)
    samples: list[FaceSample] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)  # 5-point, every detection
    eye_aspects: list[float] = field(default_factory=list)
    decided: bool = False
    awaiting_parallax: bool = False  # recognised; only its parallax is pending, so no more encodings


def association_cost(track_box: Box, box: Box) -> float:
    """Centre distance in face widths; inf when the sizes differ by more than 1.5x. Centre distance rather
    than IoU alone because detections run at ~10 Hz and a walking face moves most of its width between
    them (IoU 0) while staying the nearest face of similar size."""
    a, b = max(track_box.width, 1), max(box.width, 1)
    if max(a, b) / min(a, b) > 1.5:
        return float("inf")
    (x0, y0), (x1, y1) = track_box.centre, box.centre
    return float(np.hypot(x1 - x0, y1 - y0)) / ((a + b) / 2)


class Tracker:
    """Greedy nearest-centre association of detections to tracks (cost ≤ ``max_shift`` face widths);
    a track ends ``timeout`` s after its last sighting."""

    def __init__(self, max_shift: float = 1.0, timeout: float = 1.0) -> None:
        self.max_shift = max_shift
        self.timeout = timeout
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: Sequence[Box], ts: float) -> list[Track]:
        """Assign boxes to tracks (new tracks for the rest); returns the tracks seen on this frame."""
        pairs = sorted(
            (association_cost(t.box, box), i, tid) for i, box in enumerate(boxes) for tid, t in self.tracks.items()
        )
        used_boxes: set[int] = set()
        used_tracks: set[int] = set()
        seen: list[Track] = []
        for cost, i, tid in pairs:
            if cost > self.max_shift:
                break
            if i in used_boxes or tid in used_tracks:
                continue
            track = self.tracks[tid]
            track.box, track.last_seen = boxes[i], ts
            used_boxes.add(i)
            used_tracks.add(tid)
            seen.append(track)
        for i, box in enumerate(boxes):
            if i not in used_boxes:
                track = Track(self._next_id, box, ts, ts)
                self._next_id += 1
                self.tracks[track.track_id] = track
                seen.append(track)
        return seen

    def expire(self, ts: float) -> list[Track]:
        gone = [t for t in self.tracks.values() if ts - t.last_seen > self.timeout]
        for t in gone:
            del self.tracks[t.track_id]
        return gone


Vote = Literal["match", "stranger", "uncertain"]


def near(m: Match, s: FaceSettings) -> bool:
    """Close to a resident: within the level's threshold plus ``uncertain_band`` (clear or not)."""
    return m.person_id is not None and m.distance <= s.tolerance + s.uncertain_band


def vote(
    matches: Sequence[Match], s: FaceSettings, times: Sequence[float] | None = None
) -> tuple[Vote | None, Match | None]:
    """Grant when one encoding clears the level's threshold by itself (within ``tolerance`` and
    ``strong_tolerance``, and ``strong_margin`` clear of every other resident), or when k of the last n
    encodings each accept the same person (within ``tolerance``, ``margin`` clear).

    Refuse as stranger after n encodings in a row that come near nobody; after ``max_encodings`` without
    a grant, "uncertain" when some encoding came near a resident (a second credential may finish the pass)
    and "stranger" otherwise.

    ``times`` (when each encoding was made): the n refusing encodings must also span (n-1) encode
    intervals, so a burst of back-to-back encodings of a resident still far from the camera cannot
    refuse him before he comes close enough to match.

    Why a single encoding must clear the level's threshold by itself, and k-of-n is no licence to loosen
    it: frames of one face are correlated.  ``bench/bench_faces.py --correlation`` (every frame of the
    Hamilton clip encoded): in Lin's walk-up track the distances of encodings 0.1 s apart correlate at
    0.66 (0.40 at 0.2 s); given one encoding within 0.5 the next is within 0.5 with p 0.80, against 0.52
    for any encoding, so a second frame cuts a look-alike's chance by ~1.25x, not by the ~2x independent
    frames would.  The stranger at the end (35 encodings, 0.69-0.88 from Lin) is refused by k=1 and k=2
    alike.  So each encoding of a k-of-n grant is checked against the level's own threshold."""
    window = matches[-s.n :]
    strong_tolerance = min(s.tolerance, s.strong_tolerance)
    strong_margin = max(s.margin, s.strong_margin)
    for m in window:
        if m.accepts(strong_tolerance, strong_margin):
            return "match", m
    counts: dict[str, list[Match]] = {}
    for m in window:
        if m.person_id is not None and m.accepts(s.tolerance, s.margin):
            counts.setdefault(m.person_id, []).append(m)
    for hits in counts.values():
        if len(hits) >= s.k:
            return "match", min(hits, key=lambda m: m.distance)
    nearest = min(matches, key=lambda m: m.distance) if matches else None
    refused_run = len(window) >= s.n and not any(near(m, s) for m in window)
    if refused_run and times is not None:
        refused_run = times[-1] - times[-s.n] >= (s.n - 1) * s.encode_interval - 1e-6
    if refused_run:
        return "stranger", nearest
    if len(matches) >= s.max_encodings:
        return end_of_pass(matches, s)
    return None, nearest


def end_of_pass(matches: Sequence[Match], s: FaceSettings) -> tuple[Vote, Match | None]:
    """A pass that ends without a grant (max encodings, or the face left): "uncertain" when an encoding
    came near a resident, else "stranger"."""
    close = [m for m in matches if near(m, s)]
    if close:
        return "uncertain", min(close, key=lambda m: m.distance)
    return "stranger", min(matches, key=lambda m: m.distance) if matches else None


def pose_change(landmarks: Sequence[np.ndarray]) -> float:
    """How much the face's shape changed along a track, ignoring where the face is and how big.

    Each 5-point set is normalised for translation, scale and in-plane rotation (eye line horizontal);
    a photo moved around in front of the camera keeps the same normalised shape, a real head turning or
    nodding does not. Returns the largest deviation of any point from its median position (eye-distances).
    """
    if len(landmarks) < 3:
        return 0.0
    shapes = []
    for pts in landmarks:
        eye_a, eye_b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
        axis = eye_b - eye_a
        dist = float(np.hypot(*axis))
        if dist < 1e-6:
            continue
        c, s = axis / dist
        rot = np.array([[c, s], [-s, c]], dtype=np.float32)
        shapes.append(((pts - (eye_a + eye_b) / 2) @ rot.T) / dist)
    if len(shapes) < 3:
        return 0.0
    stack = np.stack(shapes)
    return float(np.max(np.linalg.norm(stack - np.median(stack, axis=0), axis=2)))


def blinked(eye_aspects: Sequence[float], closed_ear: float) -> bool:
    """An open → closed transition: some frame below ``closed_ear`` and the open level clearly above it."""
    if len(eye_aspects) < 3:
        return False
    ears = np.asarray(eye_aspects)
    return bool(ears.min() < closed_ear and np.percentile(ears, 75) > closed_ear * 1.25)


class FacePipeline:
    """Everything one camera needs. ``process`` is called for every frame; it returns the decisions
    completed on that frame (usually none). Not thread-safe: one pipeline per camera thread."""

    def __init__(self, engine: FaceEngine, gallery_provider: Callable[[], Gallery], settings: FaceSettings) -> None:
        if settings.liveness == "blink" and not engine.has_eye_landmarks:
            raise ValueError("blink liveness needs FaceEngine(with_eye_landmarks=True)")
        self.engine = engine
        self.gallery_provider = gallery_provider
        self.s = settings
        self.motion = MotionGate(settings.motion_pixel_delta, settings.motion_fraction)
        self.tracker = Tracker(settings.max_shift, settings.track_timeout)
        self._last_detect = float("-inf")

    def _detect_due(self, moved: bool, ts: float) -> bool:
        tracks = self.tracker.tracks.values()
        if any(not t.decided and len(t.matches) < self.s.burst_encodings for t in tracks):
            return True  # a new face: its first encodings back to back, the first frames decide fastest
        if any(not t.decided for t in tracks):
            interval = self.s.encode_interval
        elif tracks:
            interval = self.s.decided_interval
        elif moved:
            interval = self.s.search_interval
        else:
            return False
        return ts - self._last_detect >= interval

    def _detect_width(self, frame: np.ndarray) -> int:
        """``search_width`` while no face is tracked or a tracked face is too small to be found again at
        ``detect_width`` (HOG's smallest face is ~65 px at detection scale), else ``detect_width``."""
        s = self.s
        if s.search_width <= s.detect_width:
            return s.detect_width
        reach = HOG_SMALLEST_FACE * 1.25 * frame.shape[1] / s.detect_width
        if not self.tracker.tracks or any(t.box.width < reach for t in self.tracker.tracks.values()):
            return s.search_width
        return s.detect_width

    def process(self, frame: np.ndarray, ts: float) -> list[FaceDecision]:
        moved = self.motion.update(frame, ts)
        # A track ends once a detection has looked for it and not found it for `timeout` s: timed by
        # the frames looked at, not by the clock, or a worker that falls behind (frames over `timeout`
        # apart, a loaded Pi) would end every track before it is looked for again, and decide on the
        # same face on every frame (8 grants for one face on 8 frames 1.5 s apart).
        decisions = [d for t in self.tracker.expire(self._last_detect) if (d := self._left(t, ts)) is not None]
        if not self._detect_due(moved, ts):
            return decisions
        self._last_detect = ts
        boxes = self.engine.detect(frame, self._detect_width(frame))
        for track in self.tracker.update(boxes, ts):
            if track.decided:
                continue
            if self.s.liveness in ("motion", "parallax"):
                track.landmarks.append(self.engine.landmarks(frame, track.box))
            elif self.s.liveness == "blink":
                ear = self.engine.eye_aspect(frame, track.box)
                if ear is not None:
                    track.eye_aspects.append(ear)
            # A recognised face waiting to show parallax needs its landmarks (above), not more encodings:
            # an encoding is ~0.2 s of a Pi 4 core, time the detections that show the head turning need.
            if not track.awaiting_parallax:
                in_burst = len(track.matches) < self.s.burst_encodings
                if not in_burst and ts - track.last_encode < self.s.encode_interval:
                    continue
                sample = self.engine.encode(frame, track.box)
                if sample is None:
                    continue
                track.last_encode = ts
                track.samples.append(sample)
                track.matches.append(self.gallery_provider().match(sample.encoding))
                track.encode_times.append(ts)
            decision = self._decide(track, ts)
            if decision is not None:
                track.decided = True
                decisions.append(decision)
        return decisions

    def _live(self, track: Track) -> bool:
        if self.s.liveness == "parallax":
            return shows_parallax(track.landmarks)
        if self.s.liveness == "motion":
            return pose_change(track.landmarks) >= self.s.motion_min_pose_change
        if self.s.liveness == "blink":
            return blinked(track.eye_aspects, self.s.blink_closed_ear)
        return True

    def _left(self, track: Track, ts: float) -> FaceDecision | None:
        """A face that left undecided after coming near a resident is an uncertain pass, not silence
        (fewer than k matching encodings before it walked away); one near nobody stays silent, as before."""
        if track.decided or not track.matches:
            return None
        n = len(track.matches)
        outcome, best = vote(track.matches, self.s, track.encode_times)
        if outcome == "match" and best is not None:  # recognised, and gone before it was shown to be live
            return FaceDecision(track.track_id, None, "liveness", best.distance, best.margin, n, ts)
        outcome, best = end_of_pass(track.matches, self.s)
        if outcome != "uncertain" or best is None:
            return None
        return FaceDecision(track.track_id, None, "uncertain", best.distance, best.margin, n, ts,
                            candidate=self._candidate(track, best))

    def _candidate(self, track: Track, best: Match) -> str | None:
        """Whom a second credential may finish an uncertain pass for: only a face shown to be live, or a
        photo held up with a cloned card would open the door (1:1, agent.access.face_verified)."""
        return best.person_id if self._live(track) else None

    def _still_watching(self, track: Track, n: int, ts: float) -> bool:
        """Recognised, not yet shown to be live. Parallax needs the head to turn a little: its track is
        watched up to WAIT_SECONDS from first sight, by landmarks alone; the other modes go on encoding
        up to max_encodings."""
        if self.s.liveness == "parallax":
            track.awaiting_parallax = True
            return ts - track.first_ts < WAIT_SECONDS
        return n < self.s.max_encodings

    def _decide(self, track: Track, ts: float) -> FaceDecision | None:
        outcome, best = vote(track.matches, self.s, track.encode_times)
        if outcome is None or best is None:
            return None
        n = len(track.matches)
        if outcome == "match":
            if self._live(track):
                return FaceDecision(track.track_id, best.person_id, "match", best.distance, best.margin, n, ts)
            if self._still_watching(track, n, ts):
                return None  # recognised but not yet shown to be live: keep watching this pass
            return FaceDecision(track.track_id, None, "liveness", best.distance, best.margin, n, ts)
        if outcome == "uncertain":
            return FaceDecision(track.track_id, None, "uncertain", best.distance, best.margin, n, ts,
                                candidate=self._candidate(track, best))
        return FaceDecision(track.track_id, None, "stranger", best.distance, best.margin, n, ts)
