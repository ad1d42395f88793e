"""Enrolment: photos or camera frames → face templates. Images live only in memory and are dropped
as soon as their templates are computed; nothing here writes an image anywhere.

A gallery folder (for ``whitelist import`` and ``bundle build``) is ``DIR/<person id>/*.jpg`` with an
optional ``DIR/<person id>/person.yaml`` holding ``gates``, ``schedule``, ``valid_from``, ``valid_until``,
``enabled`` and ``plates`` (a ``name`` is allowed for a local import, refused in a bundle).

A photo that cannot be read (damaged, empty, too large, not an image: :mod:`models.image_io`) is
refused by name and reason, as enrolment terminals do: ``whitelist add`` saves nothing, and a gallery
folder with such a photo is skipped whole (not enrolled from its other photos) so that nobody is
enrolled from fewer photos than the technician meant without being told.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from agent.config_faces import FaceConfig, face_settings
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
    """One template from the largest good face in a photo; ValueError naming the file otherwise
    (UnreadableImage, a ValueError, when the file cannot be read as an image)."""
    image = read_image(path)
    templates = engine.templates_from_image(image)
    del image  # the photo is not kept
    if not templates:
        raise ValueError(f"{path}: no usable face (too small, blurred or turned away)")
    return templates[0]


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


def enrol_from_camera(
    engine: FaceEngine, camera: CameraConfig, *, keep: int = 3, seconds: float = 20.0, interval: float = 0.2,
    wanted: int = 10,
) -> list[np.ndarray]:
    """Watch ``camera`` for up to ``seconds``: every ``interval`` look at the newest frame; frames with
    exactly one good face are candidates. Stops after ``wanted`` candidates; the ``keep`` sharpest, most
    frontal ones are encoded with jitter. Frames with two faces are skipped so a bystander is never
    enrolled. Frames are only held in memory."""
    from drivers.camera import Camera

    candidates: list[tuple[float, np.ndarray, Any]] = []
    cam = Camera(camera)
    cam.start()
    try:
        deadline, last_ts, seen = time.monotonic() + seconds, None, 0
        while time.monotonic() < deadline and seen < wanted:
            if cam.health().state == "ended" and (latest := cam.latest()) is not None and latest[1] == last_ts:
                break  # a replayed file or folder has nothing more to give
            latest = cam.latest()
            if latest is None or latest[1] == last_ts:
                time.sleep(0.02)
                continue
            frame, last_ts = latest
            boxes = engine.detect(frame)
            if len(boxes) == 1:
                sample = engine.encode(frame, boxes[0])
                if sample is not None:
                    seen += 1
                    # sharper and more frontal is better; the image is copied only while it is a candidate
                    score = sample.sharpness * (1.0 - abs(sample.yaw))
                    candidates.append((score, frame.copy(), boxes[0]))
                    candidates.sort(key=lambda c: c[0], reverse=True)
                    del candidates[keep:]
            time.sleep(interval)
    finally:
        cam.stop()
    templates = []
    for _score, frame, box in candidates:
        sample = engine.encode(frame, box, jitters=engine.enrol_jitters)
        if sample is not None:
            templates.append(sample.encoding)
    candidates.clear()
    return templates
