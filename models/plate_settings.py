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
    local_province: str | None = None  # the province character most plates here carry (Chinese formats)


# A plate this many pixels wide in the frame (its text line, as PlateRead.box measures it) or wider
# reads about as well as it ever will; below it, reads fall away fast.  bench/bench_plate_size.py:
# Chinese plates 96% at 70 px, 98-99% from 80 px up, 92% at 60, 82% at 50, 53% at 40.  Latin plates
# keep gaining beyond it (US plates shrunk to 80-100 px read 76-80% against 85-89% at their own
# 100-330 px; 83% at 60-70, 79% at 50).  `edge-agent hw test` and `status` hold plates to it.
RELIABLE_PLATE_WIDTH = 80
