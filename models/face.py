"""Face detection, encoding and 1:N matching with dlib (no I/O, no GPIO).

Only the models that are used are loaded: the HOG detector, the 5-point landmark model (alignment and
pose check) and the ResNet descriptor model from ``face_recognition_models``; the 100 MB 68-point model
is loaded only when blink liveness needs it.  ``face_recognition`` itself is never imported here because
importing it loads the 68-point model unconditionally.

Tracking, voting and liveness over a camera's frames are in :mod:`models.face_track`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import dlib
import face_recognition_models
import numpy as np

from models.face_settings import FaceSettings, QualitySettings

ENCODING_SIZE = 128
# The image HOG searches is at most this many detect widths squared (4 x 640 x 640 = 1.6 MP at the
# default): every camera frame and photo up to 1:4 (portrait 3:4 and 9:16 too) is searched at the
# detect width as before; only stranger strips are searched smaller.
MAX_DETECT_AREA = 4.0


@dataclass(frozen=True)
class Box:
    """A face rectangle in the caller's frame coordinates (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def iou(self, other: Box) -> float:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.width * self.height + other.width * other.height - inter)


@dataclass(frozen=True)
class FaceSample:
    """One encoded face: the 128-d descriptor plus what the quality gate and liveness need."""

    encoding: np.ndarray  # float32 (128,)
    box: Box
    face_px: int
    sharpness: float  # variance of the Laplacian on a 64x64 grey crop (scale independent)
    yaw: float  # nose offset from the eyes' midpoint / eye distance; 0 = frontal
    landmarks: np.ndarray  # (5, 2) float32, frame coordinates
    eye_aspect: float | None = None  # mean eye aspect ratio (68-point), only when blink liveness is on


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded image (grey, BGR, BGRA; 8 or 16 bit) as contiguous uint8 RGB."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_grey(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1.0, float(image.max())))
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def sharpness(grey_face: np.ndarray) -> float:
    """Variance of the Laplacian on the crop resized to 64x64, so near and far faces compare."""
    if grey_face.size == 0:
        return 0.0
    small = cv2.resize(grey_face, (64, 64), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_32F).var())


def yaw_ratio(points5: np.ndarray) -> float:
    """Signed horizontal nose offset from the eyes' midpoint in eye-distances (5-point model order:
    points 0-1 one eye's corners, 2-3 the other's, 4 under the nose). About 0 for a frontal face."""
    eye_a, eye_b = points5[0:2].mean(axis=0), points5[2:4].mean(axis=0)
    eyes = eye_b - eye_a
    dist = float(np.hypot(*eyes))
    if dist < 1e-6:
        return 1.0
    # project the nose onto the eye line: 0.5 along it means centred between the eyes
    along = float(np.dot(points5[4] - eye_a, eyes)) / (dist * dist)
    return along - 0.5


def eye_aspect_ratio(points68: np.ndarray) -> float:
    """Mean eye aspect ratio (Soukupová & Čech 2016) over both eyes; ~0.3 open, < 0.2 closed."""

    def one(eye: np.ndarray) -> float:
        vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        horizontal = 2.0 * np.linalg.norm(eye[0] - eye[3])
        return float(vertical / horizontal) if horizontal > 0 else 0.0

    return (one(points68[36:42]) + one(points68[42:48])) / 2.0


def _points(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class FaceEngine:
    """dlib models loaded once. One caller at a time (a lock serialises concurrent calls).

    ``detect_width``: frames are resized to this width before HOG detection (small images are enlarged,
    at most 4x). The smallest face box HOG finds is about 65-80 px at that width, halved per ``upsample``
    pyramid doubling; doubling costs ~4x, so a wider detect image with upsample 0 is cheaper for the
    same reach (640/0: 12.7 ms and 63 px faces found; 320/1: 14.4 ms and they are missed).
    """

    def __init__(
        self,
        detect_width: int = 640,
        upsample: int = 0,
        quality: QualitySettings | None = None,
        with_eye_landmarks: bool = False,
        enrol_jitters: int = 5,
    ) -> None:
        self.detect_width = detect_width
        self.upsample = upsample
        self.quality = quality or QualitySettings()
        self.enrol_jitters = enrol_jitters
        self._detector = dlib.get_frontal_face_detector()
        self._shape5 = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        self._shape68: dlib.shape_predictor | None = None
        if with_eye_landmarks:
            self._shape68 = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: FaceSettings, with_eye_landmarks: bool = False, enrol_jitters: int = 5
    ) -> FaceEngine:
        return cls(settings.detect_width, settings.upsample, settings.quality, with_eye_landmarks, enrol_jitters)

    @property
    def has_eye_landmarks(self) -> bool:
        return self._shape68 is not None

    def detect(self, frame: np.ndarray, width: int | None = None) -> list[Box]:
        """Faces in ``frame`` (grey, BGR or BGRA), in frame coordinates, largest first. ``width``
        overrides ``detect_width`` for this call (the pipeline searches wider for distant faces)."""
        grey = to_grey(frame)
        h, w = grey.shape
        if h == 0 or w == 0:
            return []
        target = width or self.detect_width
        # Scaled to the detect width, but never past MAX_DETECT_AREA detect widths squared: a very
        # tall image (2 x 65000, enlarged 4x) would otherwise become a strip of over a million pixels.
        scale = min(4.0, target / w, target * math.sqrt(MAX_DETECT_AREA / (w * h)))
        if abs(scale - 1.0) > 1e-3:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            # At least one pixel each way: a very wide image (65000 x 2 at 640 wide) would round to 0
            # rows, which cv2.resize refuses with an assertion.
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            grey = cv2.resize(grey, size, interpolation=interp)
        with self._lock:
            rects = self._detector(grey, self.upsample)
        boxes = []
        for r in rects:
            box = Box(
                max(0, round(r.left() / scale)),
                max(0, round(r.top() / scale)),
                min(w, round((r.right() + 1) / scale)),
                min(h, round((r.bottom() + 1) / scale)),
            )
            if box.width > 0 and box.height > 0:
                boxes.append(box)
        return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """5-point landmarks (frame coordinates) for a box; cheap (~1 ms), used by motion liveness."""
        rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        with self._lock:
            return _points(self._shape5(to_grey(frame), rect))

    def eye_aspect(self, frame: np.ndarray, box: Box) -> float | None:
        if self._shape68 is None:
            return None
        rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        with self._lock:
            return eye_aspect_ratio(_points(self._shape68(to_grey(frame), rect)))

    def encode(self, frame: np.ndarray, box: Box, jitters: int = 0, check_quality: bool = True) -> FaceSample | None:
        """Descriptor for the face in ``box``; None when the face is too small, blurred or turned away."""
        q = self.quality
        face_px = min(box.width, box.height)
        if check_quality and face_px < q.min_face_px:
            return None
        grey = to_grey(frame)
        sharp = sharpness(grey[box.top : box.bottom, box.left : box.right])
        if check_quality and sharp < q.min_sharpness:
            return None
        rgb = to_rgb(frame)
        rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        with self._lock:
            shape = self._shape5(rgb, rect)
            points = _points(shape)
            yaw = yaw_ratio(points)
            if check_quality and abs(yaw) > q.max_yaw:
                return None
            descriptor = self._encoder.compute_face_descriptor(rgb, shape, jitters)
            ear = None
            if self._shape68 is not None:
                ear = eye_aspect_ratio(_points(self._shape68(rgb, rect)))
        encoding = np.asarray(descriptor, dtype=np.float32)
        return FaceSample(encoding, box, face_px, sharp, yaw, points, ear)

    def templates_from_image(self, image: np.ndarray) -> list[np.ndarray]:
        """Enrolment: the descriptor of the largest face that passes the quality gate (jittered for a
        steadier template). Empty when the image has no usable face."""
        for box in self.detect(image):
            sample = self.encode(image, box, jitters=self.enrol_jitters)
            if sample is not None:
                return [sample.encoding]
        return []


@dataclass(frozen=True)
class Match:
    """Best person for one encoding. ``second_distance`` is the best distance of any *other* person
    (inf when the gallery has one person), so ``margin`` says how unambiguous the match is."""

    person_id: str | None
    distance: float
    second_distance: float

    @property
    def margin(self) -> float:
        return self.second_distance - self.distance

    def accepts(self, tolerance: float, margin: float) -> bool:
        return self.person_id is not None and self.distance <= tolerance and self.margin >= margin


@dataclass(frozen=True, eq=False)
class Gallery:
    """Immutable snapshot of enrolled templates: one float32 (N,128) matrix grouped by person.

    Distances are Euclidean (dlib's metric). Matching computes |t|² - 2 t·e + |e|² for all rows with one
    matrix-vector product, then the best row and the best row outside that person's block.
    """

    person_ids: tuple[str, ...]
    starts: np.ndarray  # int64 (P+1,), templates of person i are rows starts[i]:starts[i+1]
    matrix: np.ndarray  # float32 (N, 128), C-contiguous
    _sq_norms: np.ndarray = field(repr=False)

    @classmethod
    def from_templates(cls, items: Iterable[tuple[str, np.ndarray]]) -> Gallery:
        by_person: dict[str, list[np.ndarray]] = {}
        for person_id, encoding in items:
            vec = np.asarray(encoding, dtype=np.float32).reshape(-1)
            if vec.shape != (ENCODING_SIZE,):
                raise ValueError(f"template for {person_id!r} has shape {vec.shape}, expected (128,)")
            by_person.setdefault(person_id, []).append(vec)
        ids = tuple(sorted(by_person))
        counts = [len(by_person[p]) for p in ids]
        starts = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        if ids:
            matrix = np.ascontiguousarray(np.vstack([np.stack(by_person[p]) for p in ids]), dtype=np.float32)
        else:
            matrix = np.zeros((0, ENCODING_SIZE), dtype=np.float32)
        return cls(ids, starts, matrix, np.einsum("ij,ij->i", matrix, matrix))

    @classmethod
    def empty(cls) -> Gallery:
        return cls.from_templates(())

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def match(self, encoding: np.ndarray) -> Match:
        if len(self) == 0:
            return Match(None, float("inf"), float("inf"))
        e = np.asarray(encoding, dtype=np.float32).reshape(-1)
        d2 = self._sq_norms - 2.0 * (self.matrix @ e) + float(e @ e)
        best_row = int(np.argmin(d2))
        person = int(np.searchsorted(self.starts, best_row, side="right")) - 1
        lo, hi = int(self.starts[person]), int(self.starts[person + 1])
        others = [d2[:lo].min()] if lo > 0 else []
        if hi < len(d2):
            others.append(d2[hi:].min())
        second = float(np.sqrt(max(0.0, min(others)))) if others else float("inf")
        return Match(self.person_ids[person], float(np.sqrt(max(0.0, float(d2[best_row])))), second)
