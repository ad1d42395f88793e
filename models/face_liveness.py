"""Parallax liveness: a photo moved in front of the camera is a plane, a head is not.

A photo (printed or on a screen) moved and tilted by a hand moves its face's landmarks by a homography of
the plane: whatever the tilt, the point under the nose stays where the picture put it between the eyes
(its offset along the eye line changes only by the plane's small shear). A real head turning by a few
degrees moves the nose, which stands ~2 cm in front of the eyes, sideways against them: parallax. This
needs only the 5-point landmarks (~1 ms a detection), already used to align the face, and no
co-operation: people walking up to a door turn their head a little on their own.

What it does not stop: anything that is not flat and still shows a real head moving — a video of the
resident replayed on a screen, a mask, a 3-D print, a sheet bent and turned. See docs/liveness.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.face import yaw_ratio

# The nose's offset along the eye line (eye-distances, models.face.yaw_ratio) must span at least this much
# (10th to 90th percentile) over the pass. Measured with `python bench/bench_liveness.py`: generated
# plane attacks (held still, moved and tilted up to ±25°, near, far, screen, JPEG, composited) spread
# 0.02-0.10; Lin-Manuel Miranda walking up to the camera in the Hamilton clip spreads 0.27.
MIN_PARALLAX = 0.15
MIN_VIEWS = 5  # landmark sets before the spread means anything (detections come every ~0.1 s)
# A resident recognised but not yet shown to be live is watched this long (s from the first sighting)
# before the pass is refused as `liveness`: room for a head turn while walking up.
WAIT_SECONDS = 3.0


def parallax(landmarks: Sequence[np.ndarray]) -> float:
    """Spread (10th-90th percentile) of the nose's offset along the eye line over a track's 5-point
    landmark sets; 0 with fewer than MIN_VIEWS sets."""
    if len(landmarks) < MIN_VIEWS:
        return 0.0
    offsets = np.array([yaw_ratio(points) for points in landmarks])
    low, high = np.percentile(offsets, [10, 90])
    return float(high - low)


def shows_parallax(landmarks: Sequence[np.ndarray]) -> bool:
    return parallax(landmarks) >= MIN_PARALLAX
