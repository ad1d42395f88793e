"""Presentation attacks generated in code: a resident's photo held to the camera, printed or on a screen.

Every attack is a function of (photo, kind, seed): the same seed gives the same frames, so figures are
reproducible and nothing is hand-picked. The photo is a plane (or a bent sheet) in front of a pinhole
camera; a hand holding it moves and tilts it smoothly (sums of slow sinusoids with random phases), so the
face's landmarks move as a homography of the plane would move them: no parallax, no blink.

Kinds (``KINDS``):
  still      held still (hand tremor only, under a pixel)
  plane      moved and tilted as a plane: yaw/pitch up to ±25°/±20°, roll ±10°, drifting
  bent       the same motion, the sheet bent around a vertical cylinder (its centre closer by 1/8 of its width)
  near, far  the plane motion at 0.35 m and 0.9 m instead of 0.55 m (face ~40-120 px)
  screen     a phone: black bezel, moiré, a specular glare blob, lower contrast
  jpeg       the plane motion, every frame JPEG-recompressed at quality 35
  scene      the plane motion composited into frames of a real background video
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

KINDS = ("still", "plane", "bent", "near", "far", "screen", "jpeg", "scene")
FRAME_W, FRAME_H = 640, 360  # the Hamilton clip's size
FOCAL_PX = 520.0  # ~63° horizontal field of view, a usual door camera
PHOTO_WIDTH_M = 0.18  # a tablet, a large phone or a postcard-sized print
DISTANCE_M = {"near": 0.3, "far": 0.7}


def plain_scene(rng: np.random.Generator) -> np.ndarray:
    """A smooth random background (a wall, a door) with some structure."""
    small = rng.integers(40, 200, (9, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _project(points: np.ndarray, rot: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """3-D points of the sheet (metres, sheet frame) to pixel coordinates."""
    world = points @ rot.T + centre
    return np.stack([FOCAL_PX * world[:, 0] / world[:, 2] + FRAME_W / 2,
                     FOCAL_PX * world[:, 1] / world[:, 2] + FRAME_H / 2], axis=1)


class HandMotion:
    """Slow smooth pose of a hand-held sheet: each of yaw, pitch, roll, x, y, z a sum of two sinusoids."""

    def __init__(self, rng: np.random.Generator, amplitude: float, distance: float) -> None:
        self.amplitude = amplitude
        self.distance = distance
        self.freq = rng.uniform(0.15, 0.6, (6, 2))  # Hz: a hand drifts and corrects a few times a second
        self.phase = rng.uniform(0, 2 * math.pi, (6, 2))
        self.scale = np.array([math.radians(25), math.radians(20), math.radians(10), 0.03, 0.02, 0.05])

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        wave = np.sin(2 * math.pi * self.freq * t + self.phase).mean(axis=1) * self.scale * self.amplitude
        yaw, pitch, roll, dx, dy, dz = wave
        return _rotation(yaw, pitch, roll), np.array([dx, dy, self.distance + dz * self.distance])


def _paste(frame: np.ndarray, sheet: np.ndarray, src: np.ndarray, dst: np.ndarray) -> None:
    """Warp the quad ``src`` of ``sheet`` (an axis-aligned rectangle) onto the quad ``dst`` of ``frame``."""
    h = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    warped = cv2.warpPerspective(sheet, h, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
    region = np.zeros(sheet.shape[:2], np.uint8)  # only this quad of the sheet, not the whole sheet
    (x0, y0), (x1, y1) = src.min(axis=0).astype(int), np.ceil(src.max(axis=0)).astype(int)
    region[y0 : y1 + 1, x0 : x1 + 1] = 255
    mask = cv2.warpPerspective(region, h, (FRAME_W, FRAME_H))
    frame[mask > 127] = warped[mask > 127]


def render(sheet: np.ndarray, background: np.ndarray, rot: np.ndarray, centre: np.ndarray,
           bend: float = 0.0, strips: int = 16) -> np.ndarray:
    """The sheet as seen by the camera: flat (``bend`` 0) or bent around a vertical axis so that its
    centre is ``bend`` x its half-width closer than its edges (rendered as ``strips`` planar strips)."""
    frame = background.copy()
    h, w = sheet.shape[:2]
    half_w, half_h = PHOTO_WIDTH_M / 2, PHOTO_WIDTH_M / 2 * h / w
    xs = np.linspace(-half_w, half_w, strips + 1)
    # a parabolic bend: depth offset 0 at the edges, -bend*half_w at the centre (towards the camera)
    zs = -bend * half_w * (1 - (xs / half_w) ** 2)
    us = np.linspace(0, w - 1, strips + 1)
    for i in range(strips):
        corners = np.array([[xs[i], -half_h, zs[i]], [xs[i + 1], -half_h, zs[i + 1]],
                            [xs[i + 1], half_h, zs[i + 1]], [xs[i], half_h, zs[i]]])
        dst = _project(corners, rot, centre)
        src = np.array([[us[i], 0], [us[i + 1], 0], [us[i + 1], h - 1], [us[i], h - 1]])
        _paste(frame, sheet, src, dst)
    return frame


def as_screen(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo shown on a phone: lower contrast, a black bezel, moiré bands and a glare blob."""
    h, w = photo.shape[:2]
    shown = photo.astype(np.float32) * 0.8 + 30
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(5, 11)
    moire = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    shown += (12 * moire)[..., None]
    gx, gy, radius = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.25) * w
    glare = 90 * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius**2))
    shown += glare[..., None]
    bezel = max(4, w // 14)
    out = np.zeros((h + 2 * bezel, w + 2 * bezel, 3), np.float32)
    out[bezel:-bezel, bezel:-bezel] = shown
    return np.clip(out, 0, 255).astype(np.uint8)


def attack_frames(photo: np.ndarray, kind: str, seed: int, seconds: float = 3.0, fps: float = 15.0,
                  backgrounds: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """The frames a camera sees while ``photo`` is presented as ``kind`` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown attack kind {kind!r}; one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    sheet = as_screen(photo, rng) if kind == "screen" else photo
    motion = HandMotion(rng, 0.01 if kind == "still" else 1.0, DISTANCE_M.get(kind, 0.45))
    plain = plain_scene(rng)
    frames = []
    for i in range(int(seconds * fps)):
        if kind == "scene" and backgrounds:
            background = cv2.resize(backgrounds[i % len(backgrounds)], (FRAME_W, FRAME_H))
        else:
            background = plain
        rot, centre = motion.pose(i / fps)
        frame = render(sheet, background, rot, centre, bend=0.25 if kind == "bent" else 0.0)
        noise = rng.normal(0, 2.0, frame.shape)  # sensor noise
        frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
        if kind == "jpeg":
            _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 35])
            frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
        frames.append(frame)
    return frames
