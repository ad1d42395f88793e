"""The blue country band down the left edge of a European plate.

A plate crop read whole takes the band's country letters for the plate's first character (a German
"D" read as a B, an Austrian "A"), and a generic Latin format, or a region's own regex, admits the
extra letter.  The band is told by colour: solid blue down the crop's left edge, a few hundredths of
its width wide, beside a light (white or yellow) plate body that is not blue.  Chinese blue plates
are blue all over, and plates with blue characters have no solid blue strip, so neither has a band.
No I/O.
"""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV hue runs 0-180: blue is about 120, yellow about 30.
_BLUE_HUE = (100, 130)
_YELLOW_HUE = (15, 40)
_BAND_WIDTH = (0.04, 0.16)  # of the crop's width (the EU band is about 9% of the plate)
_BAND_START = 0.1  # the band may start this far in: a crop's rim or margin


def country_band_width(crop: np.ndarray) -> int:
    """How many pixels from the crop's left edge a blue country band ends, or 0 when it has none."""
    h, w = crop.shape[:2]
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    top, bottom = int(h * 0.15), max(int(h * 0.15) + 1, int(h * 0.85))  # clear of the rim
    hue, sat, val = (hsv[top:bottom, :, i] for i in range(3))
    blue = ((hue >= _BLUE_HUE[0]) & (hue <= _BLUE_HUE[1]) & (sat >= 90) & (val >= 40)).mean(axis=0)
    light = ((val >= 120) & ((sat < 70) | ((hue >= _YELLOW_HUE[0]) & (hue <= _YELLOW_HUE[1])))).mean(axis=0)
    solid = blue >= 0.5  # per column: mostly blue (the country letters and stars take the rest)
    if not solid.any():
        return 0
    start = int(np.argmax(solid))
    if start > _BAND_START * w:
        return 0
    end = start
    while end < w and blue[end] >= 0.35:
        end += 1
    if not _BAND_WIDTH[0] * w <= end - start <= _BAND_WIDTH[1] * w:
        return 0
    if blue[end:].mean() > 0.08 or light[end:].mean() < 0.4:
        return 0
    return end
