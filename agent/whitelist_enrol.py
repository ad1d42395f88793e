"""Enrolment: photos or camera frames → face templates. Images live only in memory and are dropped
as soon as their templates are computed; nothing here writes an image anywhere.

A gallery folder (for ``whitelist import`` and ``bundle build``) is ``DIR/<person id>/*.jpg`` with an
optional ``DIR/<person id>/person.yaml`` holding ``gates``, ``schedule``, ``valid_from``, ``valid_until``,
``enabled`` and ``plates`` (a ``name`` is allowed for a local import, refused in a bundle).

A photo that cannot be read (damaged, empty, too large, not an image: :mod:`models.image_io`) is
refused by name and reason, as enrolment terminals do: ``whitelist add`` saves nothing, and a gallery
folder with such a photo is skipped whole (not enrolled from its other photos) so that nobody is
enrolled from fewer photos than the technician meant without being told.

A photo whose face would make a poor or ambiguous template (none, two, too small, blurred, turned
away: :mod:`agent.enrol_guard`, docs/enrolment.md) is refused by name and reason the same way for
``whitelist add``; in a gallery folder it is left out and said, and the person is enrolled from their
other photos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from agent.config_faces import FaceConfig, face_settings
from agent.enrol_guard import POSES, SAME_PERSON_DISTANCE, EnrolmentFloor, EnrolmentRefused, enrolment_face, pose_of
from agent.eval_faces import read_image
from agent.whitelist import MAX_TEMPLATES_PER_PERSON, Person, check_person_id
from models.image_io import UnreadableImage, image_files

if TYPE_CHECKING:
    from agent.config import CameraConfig
    from models.face import FaceEngine

PERSON_FILE = "person.yaml"


def make_engine(faces: FaceConfig) -> FaceEngine:
    """The gate's detector/encoder settings, so enrolled templates match what the gate will compute."""
    from models.face import FaceEngine

    return FaceEngine.from_settings(face_settings(faces), enrol_jitters=faces.enrol_jitters)


def templates_from_photo(engine: FaceEngine, path: Path) -> np.ndarray:
    """The template of the one good face in a photo; :class:`EnrolmentRefused` (a ValueError) naming
    the file and what to do otherwise (UnreadableImage, a ValueError too, when it is not an image)."""
    image = read_image(path)
    try:
        box = enrolment_face(engine, image, str(path))
        sample = engine.encode(image, box, jitters=engine.enrol_jitters, check_quality=False)
    finally:
        del image  # the photo is not kept
    if sample is None:  # pragma: no cover - encode only refuses when its quality gate is on
        raise EnrolmentRefused(f"{path}: no usable face")
    return sample.encoding


@dataclass
class FolderPerson:
    person: Person | None
    problem: str | None = None


def read_person_yaml(folder: Path) -> dict[str, Any]:
    path = folder / PERSON_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping (gates, schedule, valid_from, valid_until, plates)")
    return data


def read_gallery(engine: FaceEngine, root: Path, *, allow_name: bool) -> list[FolderPerson]:
    """Every ``root/<id>/`` folder as a Person with its templates, or the reason it was skipped."""
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder (expected {root}/<person id>/*.jpg)")
    results = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            check_person_id(folder.name)
            record = {"id": folder.name, **read_person_yaml(folder)}
            if record["id"] != folder.name:
                raise ValueError(f"{folder / PERSON_FILE}: id {record['id']!r} differs from the folder name")
            if "name" in record and not allow_name:  # checked before spending time on the photos
                raise ValueError(f"{folder / PERSON_FILE}: a display name must not be sent to the node in a bundle")
            photos = image_files(folder)[:MAX_TEMPLATES_PER_PERSON]
            if not photos:
                raise ValueError(f"{folder}: no photos")
            templates, problems = [], []
            for photo in photos:
                try:
                    templates.append(templates_from_photo(engine, photo))
                except UnreadableImage:
                    raise  # the whole folder is refused: see the module's docstring
                except ValueError as exc:
                    problems.append(str(exc))
            if not templates:
                raise ValueError("; ".join(problems))
            results.append(FolderPerson(Person.from_record(record, np.stack(templates), allow_name=allow_name)))
        except (ValueError, yaml.YAMLError, OSError) as exc:
            results.append(FolderPerson(None, f"{folder.name}: {exc}"))
    return results


@dataclass
class CameraEnrolment:
    """Templates kept from a camera, the pose of each, and what was seen."""

    templates: list[np.ndarray]
    poses: list[str]
    frames_with_a_face: int
    dropped_as_other_person: int = 0


@dataclass
class _Candidate:
    score: float
    frame: np.ndarray
    box: Any
    encoding: np.ndarray  # without jitter: to check the kept frames show one person


def _one_good_face(engine: FaceEngine, floor: EnrolmentFloor, frame: np.ndarray) -> tuple[Any, Any] | None:
    """(box, sample) when the frame has exactly one face good enough to enrol (enrol_guard's rules)."""
    try:
        box = enrolment_face(engine, frame, "frame")
    except EnrolmentRefused:
        return None
    sample = engine.encode(frame, box, check_quality=False)
    return None if sample is None else (box, sample)


def enrol_from_camera(
    engine: FaceEngine, camera: CameraConfig, *, keep: int = 3, seconds: float = 20.0, interval: float = 0.2,
    same_person: float = SAME_PERSON_DISTANCE,
) -> CameraEnrolment:
    """Watch ``camera`` for up to ``seconds``: every ``interval`` look at the newest frame; a frame with
    exactly one face good enough to enrol (the same rules as a photo) is a candidate for the pose bucket
    of its yaw (:data:`agent.enrol_guard.POSES`), which keeps its sharpest frame. Stops once ``keep``
    buckets are filled, or at the end of a replayed file. The kept frames, frontal first, are encoded with
    jitter; a frame farther than ``same_person`` from every frame kept before it is dropped (somebody
    else stepped in). Frames are only held in memory."""
    from drivers.camera import Camera

    floor = EnrolmentFloor.above(engine.quality)
    best: dict[str, _Candidate] = {}
    seen = 0
    cam = Camera(camera)
    cam.start()
    try:
        deadline, last_ts = time.monotonic() + seconds, None
        while time.monotonic() < deadline and len(best) < keep:
            if cam.health().state == "ended" and (latest := cam.latest()) is not None and latest[1] == last_ts:
                break  # a replayed file or folder has nothing more to give
            latest = cam.latest()
            if latest is None or latest[1] == last_ts:
                time.sleep(0.02)
                continue
            frame, last_ts = latest
            found = _one_good_face(engine, floor, frame)
            if found is not None:
                box, sample = found
                seen += 1
                pose = pose_of(sample.yaw)
                if pose not in best or sample.sharpness > best[pose].score:
                    best[pose] = _Candidate(sample.sharpness, frame.copy(), box, sample.encoding)
            time.sleep(interval)
    finally:
        cam.stop()
    chosen = [(name, best[name]) for name, _low, _high in POSES if name in best][:keep]
    result = CameraEnrolment([], [], seen)
    kept: list[np.ndarray] = []
    for name, candidate in chosen:
        if kept and min(float(np.linalg.norm(candidate.encoding - k)) for k in kept) > same_person:
            result.dropped_as_other_person += 1
            continue
        kept.append(candidate.encoding)
        sample = engine.encode(candidate.frame, candidate.box, jitters=engine.enrol_jitters, check_quality=False)
        if sample is not None:
            result.templates.append(sample.encoding)
            result.poses.append(name)
    best.clear()
    return result
