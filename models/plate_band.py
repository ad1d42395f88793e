"""The blue bands at the ends of European plates.

A plate crop read whole takes a band's letters for characters of the plate: the country letters on
the left (a German "D" read as a leading B, an Austrian "A"), an Italian plate's province code on
the right (MI read as a last M).  A generic Latin format, or a region's own regex, admits the extra
letter.  A band is told by colour: solid blue down the crop's edge, a few hundredths of its width
wide, beside a light (white or yellow) plate body that is not blue.  Chinese blue plates are blue
all over, and plates with blue characters have no solid blue strip, so neither has a band.  No I/O.
"""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV hue runs 0-180: blue is about 120, yellow about 30.
_BLUE_HUE = (100, 130)
_YELLOW_HUE = (15, 40)
_BAND_WIDTH = (0.04, 0.16)  # of the crop's width (the EU band is about 9% of the plate)
_BAND_START = 0.1  # a band may start this far in from the crop's edge: its rim or margin


def _band_end(blue: np.ndarray) -> int:
    """Where a band that starts near ``blue``'s first column ends (0: no band there).  ``blue`` is
    each column's share of blue pixels."""
    w = len(blue)
    solid = blue >= 0.5  # mostly blue: the letters and stars take the rest
    if not solid.any():
        return 0
    start = int(np.argmax(solid))
    if start > _BAND_START * w:
        return 0
    end = start
    while end < w and blue[end] >= 0.35:
        end += 1
    return end if _BAND_WIDTH[0] * w <= end - start <= _BAND_WIDTH[1] * w else 0


def band_widths(crop: np.ndarray) -> tuple[int, int]:
    """How many pixels a blue band takes at the crop's left and at its right (0 for no band).  A right
    band (Italy's) is only looked for beside a left one."""
    h, w = crop.shape[:2]
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    top, bottom = int(h * 0.15), max(int(h * 0.15) + 1, int(h * 0.85))  # clear of the rim
    hue, sat, val = (hsv[top:bottom, :, i] for i in range(3))
    blue = ((hue >= _BLUE_HUE[0]) & (hue <= _BLUE_HUE[1]) & (sat >= 90) & (val >= 40)).mean(axis=0)
    light = ((val >= 120) & ((sat < 70) | ((hue >= _YELLOW_HUE[0]) & (hue <= _YELLOW_HUE[1])))).mean(axis=0)
    left = _band_end(blue)
    if not left:  # a right band alone is more often a car's blue paint beside a loose crop
        return 0, 0
    right = _band_end(blue[::-1])
    body = slice(left, w - right)
    if blue[body].mean() > 0.08 or light[body].mean() < 0.4:
        return 0, 0
    return left, right
