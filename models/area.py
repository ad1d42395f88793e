"""A part of a camera's picture, as a polygon in fractions of the frame's width and height.

A barrier camera often also sees the road beyond the lane, or cars parked across it: a barrier must
not rise for a resident's car parked in view while a stranger's car waits at it.  The area is where
recognition counts; fractions, not pixels, so it holds when the camera's resolution changes.

No I/O, no GPIO.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.plate_geometry import Box

_RASTER = 320  # the polygon is drawn this wide before a mask is shrunk to a coarse grid


class Area:
    def __init__(self, polygon: Sequence[tuple[float, float]]) -> None:
        if len(polygon) < 3:
            raise ValueError("an area needs at least three corners")
        if not all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in polygon):
            raise ValueError("an area's corners are fractions of the frame, from 0 to 1")
        self.polygon = np.array(polygon, dtype=np.float64)
        if cv2.contourArea(self.polygon.astype(np.float32)) < 1e-4:
            raise ValueError("an area's corners must enclose part of the frame")

    def corners(self, width: int, height: int) -> np.ndarray:
        """The corners in pixels of a ``width`` x ``height`` frame, as an (N, 2) float array."""
        return self.polygon * (width, height)

    def bounds(self, shape: tuple[int, ...]) -> Box:
        """The upright rectangle, in pixels of a frame of ``shape``, that holds the area."""
        height, width = shape[:2]
        corners = self.corners(width, height)
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        x0, y0 = max(0, x0), max(0, y0)
        return int(x0), int(y0), int(min(width, x1) - x0), int(min(height, y1) - y0)

    def contains(self, x: float, y: float, shape: tuple[int, ...]) -> bool:
        """Whether pixel (``x``, ``y``) of a frame of ``shape`` lies in the area (or on its edge)."""
        height, width = shape[:2]
        contour = self.corners(width, height).astype(np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0

    def mask(self, width: int, height: int) -> np.ndarray:
        """Cells of a ``width`` x ``height`` grid over the frame that the area touches, as booleans.
        Drawn finer first, so a narrow area still covers the coarse cells it passes through."""
        scale = max(1, _RASTER // width)
        canvas = np.zeros((height * scale, width * scale), np.uint8)
        cv2.fillPoly(canvas, [np.round(self.corners(width * scale, height * scale)).astype(np.int32)], 255)
        return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA) > 0
