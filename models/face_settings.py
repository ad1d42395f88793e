"""Plain settings for the face models, importable without loading dlib or OpenCV (the config does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Liveness = Literal["off", "blink", "motion", "parallax"]


@dataclass(frozen=True)
class QualitySettings:
    """Which faces are worth encoding. Defaults are explained in agent/config_faces.py."""

    min_face_px: int = 40
    min_sharpness: float = 8.0
    max_yaw: float = 0.35


@dataclass(frozen=True)
class FaceSettings:
    """Plain settings for the models (built from agent.config_faces.FaceConfig). See there for why."""

    tolerance: float = 0.5
    margin: float = 0.06
    k: int = 2
    strong_tolerance: float = 0.5
    strong_margin: float = 0.15
    uncertain_band: float = 0.08  # see agent/config_faces.py
    n: int = 4
    max_encodings: int = 10
    detect_width: int = 640
    upsample: int = 0
    search_width: int = 960
    quality: QualitySettings = field(default_factory=QualitySettings)
    encode_interval: float = 0.1
    burst_encodings: int = 2
    search_interval: float = 0.2
    decided_interval: float = 0.5
    track_timeout: float = 1.0
    max_shift: float = 1.0
    motion_pixel_delta: int = 12
    motion_fraction: float = 0.01
    liveness: Liveness = "off"
    blink_closed_ear: float = 0.21
    motion_min_pose_change: float = 0.04
