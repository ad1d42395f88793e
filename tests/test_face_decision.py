"""The face decision: who is granted on one encoding, who needs k of n, and who is told "uncertain".

The rule on hand-made matches (distances as dlib gives them), the access events on mock pins with the real
whitelist, and the Hamilton clip through the real pipeline with the real dlib models.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.access import DENY_REASONS, UNCERTAIN_HOLD_SECONDS, AccessController
from agent.events import EVENT_TYPES
from models.face import FaceEngine, Gallery, Match
from models.face_settings import FaceSettings
from models.face_track import FaceDecision, FacePipeline, vote
from tests.test_access import NOW, controller, setup  # noqa: F401  (setup is the fixture the tests use)

LEVEL = FaceSettings(tolerance=0.45, strong_tolerance=0.45)  # a stricter level's threshold, as calibrated
FPS = 29.97


def far(person: str = "a") -> Match:
    return Match(person, 0.8, 0.85)


# -- the rule ---------------------------------------------------------------------------------------------
def test_one_encoding_inside_the_threshold_but_not_strongly_clear_never_grants_alone() -> None:
    not_clear = Match("a", 0.40, 0.50)  # within the level, 0.10 clear of the next resident (< strong_margin)
    # one such encoding in every window of n, never two: the k-of-n path never has k
    passes = [not_clear if i % LEVEL.n == 0 else far() for i in range(LEVEL.max_encodings)]
    outcomes = [vote(passes[: i + 1], LEVEL)[0] for i in range(len(passes))]
    assert "match" not in outcomes
    assert outcomes[-1] == "uncertain"  # the pass ends near a resident: a second credential may finish it


def test_a_single_encoding_grants_only_inside_the_levels_own_threshold() -> None:
    clear = Match("a", 0.44, 0.9)
    assert vote([clear], LEVEL) == ("match", clear)
    # strong_tolerance looser than the level (a fixed expert setting left at 0.5): the level still rules
    loose_strong = FaceSettings(tolerance=0.45, strong_tolerance=0.5)
    assert vote([Match("a", 0.48, 0.9)], loose_strong)[0] is None


def test_k_of_n_counts_only_encodings_each_inside_the_level_and_clear() -> None:
    inside = Match("a", 0.43, 0.53)
    outside = Match("a", 0.47, 0.9)  # over the level's threshold: does not count, however clear
    ambiguous = Match("a", 0.43, 0.45)  # inside, but 0.02 from another resident: does not count
    assert vote([inside, outside], LEVEL)[0] is None
    assert vote([inside, ambiguous], LEVEL)[0] is None
    assert vote([inside, outside, inside], LEVEL) == ("match", inside)
    assert vote([inside, Match("b", 0.43, 0.53)], LEVEL)[0] is None  # two people, one encoding each


def test_near_misses_are_uncertain_and_a_stranger_far_away_is_a_stranger() -> None:
    near_miss = Match("a", LEVEL.tolerance + LEVEL.uncertain_band - 0.01, 0.9)
    assert vote([near_miss] * LEVEL.max_encodings, LEVEL)[0] == "uncertain"
    assert vote([far()] * LEVEL.n, LEVEL)[0] == "stranger"
    assert vote([far()] * (LEVEL.n - 1), LEVEL)[0] is None
    just_outside = Match("a", LEVEL.tolerance + LEVEL.uncertain_band + 0.01, 0.9)
    assert vote([just_outside] * LEVEL.n, LEVEL)[0] == "stranger"


# -- the access events ------------------------------------------------------------------------------------
def uncertain(candidate: str) -> FaceDecision:
    return FaceDecision(track_id=7, person_id=None, outcome="uncertain", distance=0.52, margin=0.3, encodings=10,
                        ts=0.0, candidate=candidate)


def test_uncertain_pass_is_denied_as_uncertain_without_naming_the_candidate(setup) -> None:  # noqa: F811
    _, hardware, _, events, _ = setup
    controller(setup).face_decided("main", uncertain("R-0101-1"))
    kind, device, details = events[-1]
    assert (kind, device, details["reason"]) == ("access.denied", "main", "uncertain")
    assert hardware.gates["main"].locked
    assert "R-0101-1" not in repr(details) and "second_credential" not in details
    assert all(reason in EVENT_TYPES["access.denied"] for reason in DENY_REASONS | {"uncertain"})


def test_a_second_credential_finishes_the_pass_as_one_to_one_verification(setup) -> None:  # noqa: F811
    _config, hardware, whitelist, events, _ = setup
    clock = [NOW]
    access = AccessController(hardware, lambda: whitelist, events, plate_match=lambda *_: None,
                              clock=lambda: clock[0], second_credential=lambda gate: gate == "main")
    access.face_decided("main", uncertain("R-0101-1"))
    assert events[-1][2]["reason"] == "uncertain" and events[-1][2]["second_credential"] == "asked"
    assert not access.face_verified("main", "R-0101-2")  # a card of someone else: nothing happens
    assert hardware.gates["main"].locked and events[-1][0] == "access.denied"
    assert access.face_verified("main", "R-0101-1")
    kind, _, details = events[-1]
    assert (kind, details["person"], details["method"]) == ("access.granted", "R-0101-1", "face+credential")
    assert not hardware.gates["main"].locked
    assert not access.face_verified("main", "R-0101-1")  # one pass, one grant
    access.face_decided("main", uncertain("R-0101-1"))
    clock[0] = NOW + timedelta(seconds=UNCERTAIN_HOLD_SECONDS + 1)
    assert not access.face_verified("main", "R-0101-1")  # too late: the face has left


# -- the real pipeline ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(shared_data: Path, hamilton_frames: list[np.ndarray]) -> tuple[FaceEngine, Gallery, list[np.ndarray]]:
    engine = FaceEngine.from_settings(FaceSettings())
    photo = cv2.imread(str(shared_data / "faces" / "video" / "lin-manuel-miranda.png"))
    gallery = Gallery.from_templates(("lin", t) for t in engine.templates_from_image(photo))
    return engine, gallery, hamilton_frames


def test_a_face_that_leaves_after_near_misses_is_an_uncertain_pass(clip) -> None:
    engine, gallery, frames = clip
    # Frames 82-87: Lin walking up, 0.56-0.57 from his template (bench/bench_faces.py --correlation):
    # inside the uncertain band of a 0.5 level, never inside it.  Then he is gone (an empty frame).
    pipeline = FacePipeline(engine, lambda: gallery, FaceSettings())
    decisions = [d for i, f in enumerate(frames[82:88]) for d in pipeline.process(f, i * 0.1)]
    empty = np.full_like(frames[0], 90)
    decisions += [d for i in range(6, 30) for d in pipeline.process(empty, i * 0.1)]
    assert [(d.outcome, d.person_id, d.candidate) for d in decisions] == [("uncertain", None, "lin")]


@pytest.mark.parametrize("settings", [FaceSettings(), LEVEL], ids=["default", "tolerance-0.45"])
def test_hamilton_clip_admits_lin_and_refuses_the_stranger(clip, settings: FaceSettings) -> None:
    engine, gallery, frames = clip
    pipeline = FacePipeline(engine, lambda: gallery, settings)
    decisions = [(i, d) for i, f in enumerate(frames) for d in pipeline.process(f, i / FPS)]
    walk_up = [(d.outcome, d.person_id) for i, d in decisions if 84 <= i < 211]
    stranger = [(d.outcome, d.person_id) for i, d in decisions if i >= 211]  # he appears at frame 211
    assert walk_up == [("match", "lin")]
    assert stranger == [("stranger", None)]


# -- liveness and the second credential together -------------------------------------------------------
def test_a_liveness_refusal_is_reported_as_liveness_not_as_a_stranger(setup) -> None:  # noqa: F811
    _, hardware, _, events, _ = setup
    photo = FaceDecision(track_id=3, person_id=None, outcome="liveness", distance=0.05, margin=0.4, encodings=6,
                         ts=0.0)  # as the pipeline makes it: recognised, never shown to be live
    controller(setup).face_decided("main", photo)
    kind, _, details = events[-1]
    assert (kind, details["reason"]) == ("access.denied", "liveness") and "person" not in details
    assert hardware.gates["main"].locked


def test_an_uncertain_face_not_shown_live_cannot_be_finished_with_a_second_credential(setup) -> None:  # noqa: F811
    _config, hardware, whitelist, events, _ = setup
    access = AccessController(hardware, lambda: whitelist, events, plate_match=lambda *_: None,
                              clock=lambda: NOW, second_credential=lambda gate: True)
    access.face_decided("main", uncertain(None))  # type: ignore[arg-type]
    assert events[-1][2]["reason"] == "uncertain" and "second_credential" not in events[-1][2]
    assert not access.face_verified("main", "R-0101-1")  # a photo held up with a cloned card stays out
    assert hardware.gates["main"].locked


def test_a_photo_recognised_then_withdrawn_is_a_liveness_refusal_with_no_candidate(clip, shared_data: Path) -> None:
    """Lin's enrolment photo held to the camera (the same picture on every frame: no parallax), then
    taken away: the pass ends refused for liveness, never `uncertain` with a candidate a second
    credential could finish."""
    engine, gallery, _ = clip
    photo = cv2.imread(str(shared_data / "faces" / "video" / "lin-manuel-miranda.png"))
    scene = np.full((480, 640, 3), 90, np.uint8)
    h, w = photo.shape[:2]
    scale = 300 / max(h, w)
    small = cv2.resize(photo, (round(w * scale), round(h * scale)))
    held = scene.copy()
    held[90:90 + small.shape[0], 170:170 + small.shape[1]] = small
    pipeline = FacePipeline(engine, lambda: gallery, FaceSettings(liveness="parallax"))
    decisions = [d for i in range(8) for d in pipeline.process(held, i * 0.1)]
    decisions += [d for i in range(8, 40) for d in pipeline.process(scene, i * 0.1)]
    assert [(d.outcome, d.person_id, d.candidate) for d in decisions] == [("liveness", None, None)]
