"""What an enrolment must pass before its templates enter the whitelist (docs/enrolment.md).

A template is compared with every face the gate sees for as long as the person is enrolled, so it must be
better than the least a gate accepts, it must be the face of one person, and that person must not be in
the whitelist already under another id. The figures below were measured with the commands in
``python bench/enrol_limits.py`` (docs/enrolment.md).

* 80 px face (shorter side of the detector's box), at least the gate's ``faces.min_face_px``: the gate
  accepts 40 px, where dlib's 150 px aligned chip is mostly interpolation. The faces of 300 lfw-dev photos
  (one per person, 250x250) measured 84 px at their 1% quantile (median 101); the shared gallery photos
  137-486 px. A phone portrait or a camera close-up is far above it.
* Sharpness 50 (variance of the Laplacian at 64x64), at least the gate's ``faces.min_sharpness`` (8):
  the same lfw-dev photos measured 99 at their 1% quantile (median 333), the gallery photos 778-1534; the
  dim audience face of the bench clip scores 11-13 (agent/config_faces.py).
* Head turn: the gate's ``faces.max_yaw`` for a photo. The camera enrolment keeps templates from
  distinct yaw buckets within it (:data:`POSES`).
* Duplicate: a new template within 0.40 of another person's template (``python bench/enrol_limits.py
  duplicate``: lfw-dev's enrolment templates, people split at random into two halves). On the half used
  to choose, 0.40 catches 46% of same-person pairs, and an honest enrolment of a new person meets another
  person of a 1,420-person gallery that close 0.6% of the time; on the other half 53% and 2.0%. 0.35
  catches only 20-24%; 0.45 catches 73-80% but refuses 4-7% of honest enrolments at that gallery size.
  The refusal names the other id and its distance, and ``--force`` (audited) settles a real look-alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from models.face import Box, sharpness, to_grey, yaw_ratio
from models.face_settings import QualitySettings

if TYPE_CHECKING:
    from agent.whitelist import Whitelist
    from models.face import FaceEngine
    from models.plate_formats import PlateFormat

ENROL_MIN_FACE_PX = 80
ENROL_MIN_SHARPNESS = 50.0
DUPLICATE_DISTANCE = 0.40
# Photos of one enrolment (several --photo, or a camera's kept poses): one farther than this from every
# other is somebody else's. On lfw-dev (`python bench/enrol_limits.py duplicate`) 1.0-1.1% of same-person
# pairs lie above 0.6 (an honest add refused, settled by --force) and 1.0-1.2% of different-person pairs
# below it (a wrong photo not caught); it is dlib's published same/different threshold. Not 0.5: 18-22%
# of one person's pairs lie above it (issue 33), and with 0.5 `whitelist enroll --keep 5` on the Hamilton
# clip dropped his own turned head (yaw 0.21-0.34) as "another person".
SAME_PERSON_DISTANCE = 0.6

# Yaw buckets for camera enrolment, in eye distances (models.face.yaw_ratio; 0 = frontal). The order is
# the order they are kept in when ``--keep`` is smaller than the buckets filled: frontal first, then one
# step to each side, then further out. The sign follows the image: "left" is the nose toward the
# image's left.
POSES: tuple[tuple[str, float, float], ...] = (
    ("frontal", -0.07, 0.07),
    ("slightly left", -0.21, -0.07),
    ("slightly right", 0.07, 0.21),
    ("left", -1.0, -0.21),
    ("right", 0.21, 1.0),
)
MAX_CAMERA_TEMPLATES = len(POSES)


class EnrolmentRefused(ValueError):
    """A photo or capture that would make a poor or wrong template; the message says what to do."""


@dataclass(frozen=True)
class EnrolmentFloor:
    """The least an enrolment face must be: the enrolment floor or the gate's own, whichever is higher."""

    min_face_px: int
    min_sharpness: float
    max_yaw: float

    @classmethod
    def above(cls, gate: QualitySettings) -> EnrolmentFloor:
        return cls(max(gate.min_face_px, ENROL_MIN_FACE_PX), max(gate.min_sharpness, ENROL_MIN_SHARPNESS),
                   gate.max_yaw)

    def counted(self, boxes: list[Box]) -> list[Box]:
        """The faces that make a photo ambiguous: any face big enough to be a template itself. A small
        face in the background (a passer-by, a poster) is left out, so it cannot refuse a good portrait."""
        return [b for b in boxes if min(b.width, b.height) >= self.min_face_px]


def pose_of(yaw: float) -> str:
    for name, low, high in POSES:
        if low <= yaw <= high:
            return name
    return POSES[-1][0] if yaw > 0 else POSES[-2][0]


def enrolment_face(engine: FaceEngine, image: np.ndarray, label: str) -> Box:
    """The one face of ``image`` good enough to enrol, or EnrolmentRefused saying why, for ``label``
    (the photo's path or the camera's name)."""
    floor = EnrolmentFloor.above(engine.quality)
    boxes = engine.detect(image)
    if not boxes:
        raise EnrolmentRefused(f"{label}: no usable face: no face found in it "
                               "(a clear photo of the person facing the camera)")
    counted = floor.counted(boxes)
    if len(counted) > 1:
        sizes = ", ".join(f"{min(b.width, b.height)} px" for b in counted)
        raise EnrolmentRefused(f"{label}: {len(counted)} faces ({sizes}); a photo of the one person only "
                               "(crop the others out)")
    box = boxes[0]  # the largest
    face_px = min(box.width, box.height)
    if face_px < floor.min_face_px:
        raise EnrolmentRefused(f"{label}: the face is {face_px} px, too small to be a good template "
                               f"(enrolment needs {floor.min_face_px} px or more: a closer or larger photo)")
    sharp = sharpness(to_grey(image)[box.top:box.bottom, box.left:box.right])
    if sharp < floor.min_sharpness:
        raise EnrolmentRefused(f"{label}: the face is blurred (sharpness {sharp:.0f}, enrolment needs "
                               f"{floor.min_sharpness:g} or more: a sharp, well-lit photo)")
    yaw = yaw_ratio(engine.landmarks(image, box))
    if abs(yaw) > floor.max_yaw:
        raise EnrolmentRefused(f"{label}: the head is turned away (yaw {yaw:+.2f}, at most "
                               f"±{floor.max_yaw:g}: a photo facing the camera)")
    return box


def nearest_other_person(whitelist: Whitelist, templates: list[np.ndarray], person_id: str
                         ) -> tuple[str, float] | None:
    """The closest person other than ``person_id`` to any of ``templates``, and that distance."""
    best: tuple[str, float] | None = None
    new = np.stack([np.asarray(t, dtype=np.float32).reshape(-1) for t in templates])
    for person in whitelist:
        if person.id == person_id or len(person.templates) == 0:
            continue
        distances = np.linalg.norm(new[:, None, :] - person.templates[None, :, :], axis=2)
        distance = float(distances.min())
        if best is None or distance < best[1]:
            best = (person.id, distance)
    return best


def duplicate_of(whitelist: Whitelist, templates: list[np.ndarray], person_id: str) -> tuple[str, float] | None:
    """(other id, distance) when the new templates are another enrolled person's face; None otherwise."""
    nearest = nearest_other_person(whitelist, templates, person_id)
    return nearest if nearest is not None and nearest[1] < DUPLICATE_DISTANCE else None


def stranger_among(templates: list[np.ndarray], labels: list[str]) -> tuple[str, float] | None:
    """(label, distance) of a photo farther than SAME_PERSON_DISTANCE from every other photo of the same
    enrolment (two people's photos given under one id), or None. One photo has nobody to disagree with."""
    if len(templates) < 2:
        return None
    new = np.stack([np.asarray(t, dtype=np.float32).reshape(-1) for t in templates])
    distances = np.linalg.norm(new[:, None, :] - new[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.min(axis=1)
    worst = int(np.argmax(nearest))
    return (labels[worst], float(nearest[worst])) if nearest[worst] > SAME_PERSON_DISTANCE else None


def enrolment_warnings(*, gates: tuple[str, ...], known_gates: list[str], plates: list[str],
                       formats: list[PlateFormat], format_names: list[str], valid_until: datetime | None,
                       now: datetime) -> list[str]:
    """What is probably a typing mistake but may be meant (a gate added to the config later, a foreign
    plate): said, not refused."""
    from models.plate_formats import normalise

    found = []
    for gate in gates:
        if gate not in known_gates:
            found.append(f"gate {gate!r} is not in the config's hardware gates or barriers "
                         f"(have: {', '.join(known_gates) or 'none'}): no door of that name opens for this person")
    for plate in plates:
        if normalise(plate, formats) is None:
            found.append(f"plate {plate!r} fits none of the site's plate formats (plates.formats: "
                         f"{', '.join(format_names)}); the barrier may never read it so")
    if valid_until is not None and valid_until < now:
        found.append(f"valid until {valid_until.isoformat(timespec='minutes')}, already in the past: "
                     "this person will not be admitted")
    return found
