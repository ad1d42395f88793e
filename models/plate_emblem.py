"""Emblems printed between a plate's characters, found by colour and painted over.

Many plates carry an emblem inside their text line: Slovakia's and Croatia's arms after the
district, Germany's inspection sticker over its state seal, Austria's and Serbia's arms, a US
state's tree or fruit.  The recogniser reads such an emblem as a character (PZ[arms]083BC as
PZQ083BC, R[seals]C8780 as R8C8780), which a generic Latin format or a region's regex admits, and
an emblem can split the detected line so that only one part is read.  An emblem is printed in a
colour of its own, off the plate's two tones: a pixel mixed of ink and ground lies between their
colours, an emblem's does not.  So a character-sized patch of a third colour with characters on
both sides is painted in the ground's colour before the line is read.

Only dark characters on a light ground are looked at, the way plates with emblems are printed.
Pure NumPy and OpenCV: no models, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from models.plate_geometry import Box, two_tones

# A pixel this far (8-bit Lab) from the line through the plate's ink and ground colours is of a
# third colour.  Rendered emblems (tests/plate_renders.py) at 110-240 px plate widths measure 30-110
# at their cores, the mixed and blurred edges of characters under 20.
THIRD_COLOUR = 30.0
_LIGHT_GROUND = 140.0  # 8-bit Lab lightness: a white, grey or yellow plate, not a blue one
_DARKER_INK = 60.0
# How much of an emblem's box its third colour fills.  Rendered German seals (two rings) fill 0.26
# and more; a US plate's red script with its blue letters, read as one patch, 0.14.
_SOLID = 0.2


@dataclass(frozen=True)
class _Tones:
    """A text line's ink and ground colours (Lab)."""

    ink: np.ndarray
    ground: np.ndarray

    @classmethod
    def of(cls, part: np.ndarray) -> _Tones | None:
        """The medians (not swayed by an emblem's pixels) of the line's minority and majority
        tones; None unless dark on light."""
        split = two_tones(part)
        if split is None or split[1].mean() < 0.5:  # two tones, the lighter the ground
            return None
        _, light, lab = split
        tones = cls(np.median(lab[~light], axis=0), np.median(lab[light], axis=0))
        if tones.ground[0] < _LIGHT_GROUND or tones.ground[0] - tones.ink[0] < _DARKER_INK:
            return None
        return tones

    def off(self, lab: np.ndarray) -> np.ndarray:
        """Each pixel's distance from the line through ink and ground: along it lie their mixes,
        and the darker and lighter shades of both (a bold stroke's core is darker than its median)."""
        axis = self.ground - self.ink
        along = ((lab - self.ink) @ axis) / float(axis @ axis)
        return np.linalg.norm(lab - (self.ink + along[..., None] * axis), axis=-1)

    def inky(self, lab: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Pixels of the characters: nearer the ink than the ground, and not of a third colour."""
        return (np.linalg.norm(lab - self.ink, axis=-1) < np.linalg.norm(lab - self.ground, axis=-1)) \
            & (off <= THIRD_COLOUR)


def emblems(image: np.ndarray, line: Box) -> list[Box]:
    """The emblems inside the text line ``line`` of ``image`` (BGR), or beside it on its row."""
    x, y, w, h = line
    part = image[max(0, y): y + h, max(0, x): x + w]
    tones = _Tones.of(part) if part.size and h >= 8 else None
    if tones is None:
        return []
    # The row beside the line too: an emblem often splits the detector's line in two.
    x0, y0 = max(0, x - 3 * h // 2), max(0, y)
    lab = cv2.cvtColor(image[y0: y + h, x0: x + w + 3 * h // 2], cv2.COLOR_BGR2LAB).astype(np.float32)
    off = tones.off(lab)
    third = cv2.morphologyEx((off > THIRD_COLOUR).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    inky = tones.inky(lab, off)
    inked = inky.mean(axis=0)
    # Each column: bare ground (G), through characters (C), solid ink (S: a character's stem, or a
    # rim or a holder when many side by side), or anything else (-: an emblem, the car).
    columns = np.select([((~inky) & (third == 0)).mean(axis=0) >= 0.7, (inked > 0.05) & (inked < 0.85), inked >= 0.85],
                        ["G", "C", "S"], "-")
    count, _, stats, _ = cv2.connectedComponentsWithStats(third)
    found = []
    for bx, by, bw, bh in _stacked([tuple(box) for box in stats[1:count, :4] if box[3] >= 0.15 * h]):
        if not (0.35 * h <= bh and 0.2 * h <= bw <= 1.3 * h):
            continue
        if (third[by: by + bh, bx: bx + bw] > 0).mean() < _SOLID:
            continue  # coloured strokes (a state's name in script, coloured letters), not a patch
        # Between characters: bare ground, then characters, on both sides.  A country band has
        # the plate's rim and holder beside it.
        before, after = "".join(columns[max(0, bx - h): bx])[::-1], "".join(columns[bx + bw: bx + bw + h])
        if _ground_then_characters(before, h) and _ground_then_characters(after, h):
            found.append((int(x0 + bx), int(y0 + by), int(bw), int(bh)))
    return found


def _ground_then_characters(columns: str, height: int) -> bool:
    """Whether ``columns`` (walking away from an emblem) are a blurred edge of at most two, bare
    ground, then characters: at least a tenth of ``height`` columns through ink before anything else
    (solid ink no wider than a stem, a quarter of ``height``)."""
    stem = rf"S{{1,{max(1, height // 4)}}}(?!S)"
    walk = re.match(rf"-{{0,2}}G+((?:C|{stem})(?:[CG]|{stem})*)", columns)
    return walk is not None and walk.group(1).count("C") >= 0.1 * height


def _stacked(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes that share columns merged into one: a German plate's two seals stand one above the other."""
    merged: list[tuple[int, int, int, int]] = []
    for bx, by, bw, bh in sorted(boxes):
        if merged and bx < merged[-1][0] + merged[-1][2]:
            mx, my, mw, mh = merged[-1]
            x0, y0 = min(mx, bx), min(my, by)
            merged[-1] = (x0, y0, max(mx + mw, bx + bw) - x0, max(my + mh, by + bh) - y0)
        else:
            merged.append((bx, by, bw, bh))
    return merged


def paint_out(image: np.ndarray, line: Box, boxes: list[Box]) -> np.ndarray:
    """A copy of ``image`` with the emblems in ``boxes`` painted in ``line``'s ground colour: all of
    each box (and a margin: a seal stands taller than the line) but the strokes of characters reaching into it
    (a tree drawn behind a D), which run on out of the box; an emblem's own dark lines (a seal's
    ring) do not."""
    x, y, w, h = line
    tones = _Tones.of(image[max(0, y): y + h, max(0, x): x + w])
    if tones is None:
        return image
    ground = cv2.cvtColor(tones.ground.astype(np.uint8)[None, None], cv2.COLOR_LAB2BGR)[0, 0]
    painted = image.copy()
    margin = max(2, h // 10)
    for bx, by, bw, bh in boxes:
        top, bottom = max(0, by - margin), min(image.shape[0], by + bh + margin)
        left, right = max(0, bx - 2), min(image.shape[1], bx + bw + 2)
        around_left, around_right = max(0, left - h // 2), min(image.shape[1], right + h // 2)
        lab = cv2.cvtColor(image[top: bottom, around_left: around_right], cv2.COLOR_BGR2LAB).astype(np.float32)
        _, strokes = cv2.connectedComponents(tones.inky(lab, tones.off(lab)).astype(np.uint8))
        inside = strokes[:, left - around_left: right - around_left]
        outside = np.concatenate([strokes[:, : left - around_left], strokes[:, right - around_left:]], axis=1)
        characters = np.isin(inside, np.unique(outside[outside > 0]))
        painted[top: bottom, left: right][~characters] = ground
    return painted
