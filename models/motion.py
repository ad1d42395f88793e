"""Cheap motion detection, shared by the face pipeline (wakes face detection) and the plate pass
(an empty, still lane is not read: a plate read costs ~465 ms on an empty frame here, a motion
check about 1.4 ms on a 960x540 frame; ``bench/bench_plate_motion.py``).  The thumbnail is made
before the colour conversion, so the full frame is touched once.

No I/O, no GPIO.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from models.area import Area

THUMBNAIL = (32, 24)  # area averaging over ~20x20-pixel blocks removes sensor noise; a person or a car stays


class MotionGate:
    """A grey thumbnail against a background that slowly takes in what it sees.

    ``update`` is True when more than ``fraction`` of the thumbnail differs from the background by
    more than ``pixel_delta`` grey levels.  Slow changes (lighting drift, a person or a car that
    has stopped) fade into the background with the time constant ``fade_seconds`` — in seconds, not
    frames, because a worker checks frames at the camera's rate while idle and far slower while it
    recognises.  When nearly the whole picture changes at once (lights switched on, the camera's
    night mode) the background starts again from that frame: one look, not seconds of "motion".
    With an ``area``, only the part of the picture inside it counts (traffic beyond a barrier's lane).
    """

    def __init__(self, pixel_delta: int = 12, fraction: float = 0.01, fade_seconds: float = 1.0,
                 reset_fraction: float = 0.6, area: Area | None = None) -> None:
        self.pixel_delta = pixel_delta
        self.fraction = fraction
        self.fade_seconds = fade_seconds
        self.reset_fraction = reset_fraction
        self.changed = 0.0  # share of the thumbnail that changed in the last frame, for diagnosis
        self._background: np.ndarray | None = None
        self._cells = area.mask(*THUMBNAIL) if area is not None else np.ones(THUMBNAIL[::-1], bool)
        self._last_ts = 0.0

    def update(self, frame: np.ndarray, ts: float) -> bool:
        """``ts``: the frame's time in seconds (any increasing clock)."""
        thumb = cv2.resize(frame, THUMBNAIL, interpolation=cv2.INTER_AREA)
        if thumb.ndim == 3:  # camera drivers give BGR; BGRA as picamera2's XRGB8888 is taken too
            thumb = cv2.cvtColor(thumb, cv2.COLOR_BGRA2GRAY if thumb.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        thumb = thumb.astype(np.float32)
        elapsed, self._last_ts = max(0.0, ts - self._last_ts), ts
        if self._background is None:
            self._background = thumb
            self.changed = 1.0
            return True  # nothing to compare with: a frame we know nothing about is worth a look
        self.changed = float(np.mean((np.abs(thumb - self._background) > self.pixel_delta)[self._cells]))
        if self.changed > self.reset_fraction:
            self._background = thumb
        else:
            cv2.accumulateWeighted(thumb, self._background, 1.0 - math.exp(-elapsed / self.fade_seconds))
        return self.changed > self.fraction
