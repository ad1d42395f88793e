"""Plain settings for :class:`models.plate.PlateReader`, in a module of their own so the agent's
configuration can be loaded without importing OpenCV and onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlateSettings:
    """``agent.config_plates`` builds these from the YAML ``plates:`` section."""

    detect_width: int = 960
    second_look_width: int = 1280
    last_look: bool = True
    min_confidence: float = 0.5
    max_candidates: int = 6
    refine_candidates: int = 3
    threads: int = 1
    det_threshold: float = 0.3
    det_box_threshold: float = 0.5
    recogniser: str = "auto"
