"""Liveness: a resident's photo held to the camera (printed or on a screen) does not open the gate by
default; the resident walking up still does. Attacks are generated in code (bench/liveness_attacks.py,
seeded), the pipeline and the dlib models are the real ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config_faces import FaceConfig, face_settings
from bench.liveness_attacks import attack_frames
from models.face import FaceEngine, Gallery
from models.face_liveness import MIN_PARALLAX, parallax
from models.face_settings import FaceSettings
from models.face_track import FacePipeline

FPS = 10.0


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    return FaceEngine.from_settings(FaceSettings())


@pytest.fixture(scope="session")
def lin(shared_data: Path, engine: FaceEngine) -> tuple[np.ndarray, Gallery]:
    """Lin-Manuel Miranda's enrolment photo and a gallery holding him."""
    photo = cv2.imread(str(shared_data / "faces" / "video" / "lin-manuel-miranda.png"))
    return photo, Gallery.from_templates(("lin", t) for t in engine.templates_from_image(photo))


def outcomes(engine: FaceEngine, gallery: Gallery, settings: FaceSettings, frames: list[np.ndarray],
             fps: float = FPS) -> list[tuple[str, str | None]]:
    pipeline = FacePipeline(engine, lambda: gallery, settings)
    return [(d.outcome, d.person_id) for i, f in enumerate(frames) for d in pipeline.process(f, i / fps)]


def test_every_gate_checks_liveness_by_default_and_a_gate_can_turn_it_off() -> None:
    config = FaceConfig.model_validate({"liveness": {"lab": "off", "side": "motion"}})
    assert face_settings(FaceConfig(), "main").liveness == "parallax"
    assert face_settings(config, "main").liveness == "parallax"  # not listed: the default
    assert face_settings(config, "lab").liveness == "off"
    assert face_settings(config, "side").liveness == "motion"
    # YAML reads an unquoted `off` as false: a technician writing `{lab: off}` means the mode off
    assert face_settings(FaceConfig.model_validate({"liveness": {"lab": False}}), "lab").liveness == "off"
    # no gate: enrolment and `edge-agent eval faces` judge single photos, which cannot show liveness
    assert face_settings(FaceConfig()).liveness == "off"


def _face_points(yaw: float, pitch: float, depth: float) -> np.ndarray:
    """5-point landmarks (dlib order: one eye's corners, the other's, under the nose) of a head turned by
    ``yaw``/``pitch`` radians, seen by a pinhole camera 10 eye-distances away. ``depth``: how far the
    nose stands in front of the eyes (eye-distances); 0 is a flat photo of the same face."""
    points = np.array([[0.75, 0, 0], [0.25, 0, 0], [-0.75, 0, 0], [-0.25, 0, 0], [0, 0.9, -depth]])
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    world = points @ rot.T + [0, 0, 10]
    return (world[:, :2] / world[:, 2:] * 500).astype(np.float32)


def test_parallax_tells_a_turning_head_from_a_tilting_photo() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        poses = rng.uniform(-0.35, 0.35, (12, 2))  # ±20° of yaw and pitch, as a hand tilts a photo
        flat = [_face_points(y, p, 0.0) + rng.normal(0, 0.5, (5, 2)) for y, p in poses]
        head = [_face_points(y, p, 0.45) + rng.normal(0, 0.5, (5, 2)) for y, p in poses]  # the same turns
        assert parallax(flat) < MIN_PARALLAX <= parallax(head)
    assert parallax(head[:3]) == 0.0  # too few views to say anything


@pytest.mark.parametrize("kind", ["still", "plane", "screen", "jpeg"])
def test_generated_photo_attack_is_refused_by_default(engine: FaceEngine, lin: tuple[np.ndarray, Gallery],
                                                      kind: str) -> None:
    photo, gallery = lin
    frames = attack_frames(photo, kind, seed=0, seconds=4.0, fps=FPS)
    # the attack fools recognition: with liveness off the photo opens the door
    assert ("match", "lin") in outcomes(engine, gallery, FaceSettings(liveness="off"), frames)
    default = outcomes(engine, gallery, face_settings(FaceConfig(), "main"), frames)
    assert ("match", "lin") not in default
    assert default == [("liveness", None)]  # refused once, saying why, when the pass has waited its time


def test_a_gate_with_liveness_off_still_admits_the_photo(engine: FaceEngine, lin: tuple[np.ndarray, Gallery]) -> None:
    photo, gallery = lin
    config = FaceConfig.model_validate({"liveness": {"lab": "off"}})
    frames = attack_frames(photo, "plane", seed=1, seconds=4.0, fps=FPS)
    assert ("match", "lin") in outcomes(engine, gallery, face_settings(config, "lab"), frames)
    assert ("match", "lin") not in outcomes(engine, gallery, face_settings(config, "main"), frames)


def test_the_resident_walking_up_is_admitted_by_default(
    engine: FaceEngine, lin: tuple[np.ndarray, Gallery], hamilton_frames: list[np.ndarray]
) -> None:
    _, gallery = lin
    frames = hamilton_frames
    walk_up = frames[70:170]  # he walks up to the camera from frame 84 (bench/bench_faces.py)
    assert outcomes(engine, gallery, face_settings(FaceConfig(), "main"), walk_up, 29.97) == [("match", "lin")]
