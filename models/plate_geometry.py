"""Where a plate's text lines lie in an image, and cutting them out level.

Boxes are upright ``(x, y, w, h)`` in the image's pixels; a :class:`Slant` says how the detected line
inside one really lies.  Pure geometry over NumPy images: no models, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h: upright, in the image's pixels
# A line tilted by less than this is cut upright as it is: the recognisers read such slants as
# well, and turning a small plate resamples (blurs) it.  /tmp experiments on the shared sets and
# tilted copies of them (bench/plate_sets.py): from 3 to 7 degrees, US 181 -> 182 of 222, US
# turned 179 -> 180, Chinese plates in scenes 117 -> 118 of 120, Chinese crops turned 194 -> 193.
MIN_TILT_DEGREES = 7.0

# A plate crop whose characters lean by this much (run per unit of height: 17 degrees) or more is also
# read with the lean undone.  Crops cut upright around a plate seen from one side and then resized
# to a fixed shape, as public data sets cut theirs, are parallelograms whose characters lean; turning
# or shearing the text line level (cut_line, cut_sheared) keeps the lean.  Chinese crops turned 10-30
# degrees and resized back to 94x24 (bench/bench_plates.py): 105 -> 122 of 200; the other crop sets
# read the same (sheared Chinese crops 194 -> 195).  The shared Chinese crops lean up to 0.5 where
# a plate was photographed from one side; 0.2 read as 0.3 did.
MIN_LEAN = 0.3


@dataclass(frozen=True)
class Slant:
    """How a detected text line lies: its tilt (degrees, clockwise in the picture) and its own
    length and thickness, which its upright bounding box overstates when it is tilted."""

    degrees: float
    length: float
    thickness: float

    @classmethod
    def of(cls, quad: np.ndarray) -> Slant:
        top_left, top_right, _, bottom_left = quad.astype(np.float64)  # the detector's order
        run = top_right - top_left
        return cls(math.degrees(math.atan2(run[1], run[0])), float(np.hypot(*run)),
                   float(np.hypot(*(bottom_left - top_left))))

    @property
    def tilted(self) -> bool:
        """Tilted enough to be worth turning level before reading."""
        return abs(self.degrees) >= MIN_TILT_DEGREES and self.length >= self.thickness

    @property
    def across(self) -> float:
        """How far the line reaches across the picture (its horizontal extent)."""
        return self.length * math.cos(math.radians(self.degrees))

    def scaled(self, factor: float) -> Slant:
        return Slant(self.degrees, self.length * factor, self.thickness * factor)


def main_line(lines: dict[Box, Slant], shape: tuple[int, ...]) -> Box | None:
    """The plate's registration line: the tallest line with a text-line aspect, near the middle.
    A tilted line is measured along itself: its upright box is squarer than the line is."""
    height = shape[0]
    best, best_score = None, 0.0
    for box, slant in lines.items():
        _, by, bw, bh = box
        length, thickness = (slant.length, slant.thickness) if slant.tilted else (bw, bh)
        if length < thickness:
            continue
        centre = abs((by + bh / 2) - height / 2) / height
        score = thickness * min(1.0, length / (2.5 * thickness)) * (1.0 - centre)
        if score > best_score:
            best, best_score = box, score
    return best


def upper_row(boxes: list[Box], lower: Box) -> Box | None:
    """The upper row of a two-row plate: a line just above ``lower``, centred over it, no taller.
    Chinese lorries' and buses' plates have a smaller upper row (苏E over 12345); square plates
    elsewhere (motorcycles, imported cars: AB12 over CDE) two rows of one size."""
    lx, ly, lw, lh = lower
    best = None
    for box in boxes:
        bx, by, bw, bh = box
        if (0.3 * lh <= bh <= 1.15 * lh and bw < 1.6 * lw and lx <= bx + bw / 2 <= lx + lw
                and ly - 1.2 * lh <= by + bh <= ly + 0.25 * lh and box != lower and (best is None or bh > best[3])):
            best = box
    return best


def row_pair(boxes: list[Box], line: Box) -> tuple[Box, Box] | None:
    """(upper, lower): the rows of the two-row plate ``line`` is a row of, whichever of the two it is."""
    upper = upper_row(boxes, line)
    if upper is not None:
        return upper, line
    return next(((line, box) for box in boxes if upper_row([line], box) == line), None)


def whole_row(image: np.ndarray, lines: dict[Box, Slant], line: Box, emblems: tuple[Box, ...] = ()) -> Box:
    """``line`` joined with the level lines beside it on its row of one plate.  The detector
    splits a plate whose parts are set apart or drawn in two sizes into lines side by side: a
    Russian plate's region (K982HT│178), a wide European plate's groups.  A neighbour joins when
    it is at least 0.4 as tall as ``line`` (a two-digit region is boxed that tight beside the
    serial's large digits) and not much taller (a sticker's or a dealer's text is smaller, a sign
    larger), shares most of the row, is no further off than ``line`` is high, is printed in its
    colours (a European country letter is not), and the gap between them is ``line``'s own ground:
    text on the car beside a plate (a van's number, a trader's name) is as tall and as near, but
    the plate's rim and holder lie between.  A tilted line, or one that is not among ``lines``
    (two rows of one plate already joined), is left as it is.  A gap holding one of ``emblems``
    (painted over: models/plate_emblem.py) is measured without it."""
    slant = lines.get(line)
    if slant is None or slant.tilted:
        return line
    own = _Print.of(image, line)
    if own is None:  # no ink to compare a neighbour's with
        return line
    height = line[3]
    row, joined = line, True
    while joined:
        joined = False
        rx, ry, rw, rh = row
        for box in lines:
            bx, by, bw, bh = box
            overlap = min(ry + rh, by + bh) - max(ry, by)
            gap = max(bx - (rx + rw), rx - (bx + bw))
            gap -= sum(ew for ex, _, ew, _ in emblems if min(rx + rw, bx + bw) <= ex and ex + ew <= max(rx, bx))
            if (0.4 * height <= bh <= 1.25 * height and overlap >= 0.6 * bh and gap <= height
                    and union(row, box) != row and _printed_alike_across_ground(image, own, row, box)):
                row, joined = union(row, box), True
                break
    return row


def _printed_alike_across_ground(image: np.ndarray, own: _Print, row: Box, beside: Box) -> bool:
    """Whether a line ``beside`` ``row`` is printed as ``own`` (the row's first line) is, and the gap
    between them is mostly ``own``'s ground.  A plate's bar between its serial and region is a
    sliver of the gap; a holder's dark frame around a light plate is most of it.  A European
    plate's country letter is white on its blue band, beside dark characters on white."""
    other = _Print.of(image, beside)
    if other is None or not own.alike(other):
        return False
    x, y, w, h = row
    bx, by, bw, bh = beside
    gap_x0, gap_x1 = min(x + w, bx + bw), max(x, bx)
    top, bottom = max(y, by, 0), min(y + h, by + bh)
    if gap_x1 <= gap_x0:
        return True  # touching or overlapping: nothing between
    gap = image[top: bottom, max(0, gap_x0): gap_x1]
    if gap.size == 0:
        return False
    on_ground = (cv2.cvtColor(gap, cv2.COLOR_BGR2GRAY) > own.threshold) == own.light_ground
    return float(on_ground.mean()) >= 0.75


def two_tones(part: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A text box (BGR) split into its two tones by Otsu's threshold: its grey, which pixels are of
    the lighter tone, and its Lab colours (float).  None for a box without two tones: not text."""
    if part.size == 0:
        return None
    grey = cv2.cvtColor(part, cv2.COLOR_BGR2GRAY)
    otsu, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light = grey > otsu
    if light.all() or not light.any():
        return None
    return grey, light, cv2.cvtColor(part, cv2.COLOR_BGR2LAB).astype(np.float32)


# Two lines whose darker and lighter tones are each this close (Euclidean, in OpenCV's 8-bit Lab) are
# printed alike.  Rendered plates in scenes (bench/foreign_plates.py): a Russian region beside its
# serial 1-12, a Belgian band's letter beside the serial 73-85, RUS over the flag 92.  The parts
# that join on the shared photos (US scenes, Chinese plates pasted into them) measure 4-41.
_ALIKE_LAB = 50.0


@dataclass(frozen=True)
class _Print:
    """How a text box is printed: its two tones, ink and ground, split at ``threshold`` (grey)."""

    threshold: float  # the grey midway between the two tones
    light_ground: bool  # the ground (the tone most of the box has) is the lighter
    dark: np.ndarray  # the mean Lab colour of each tone
    light: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, box: Box) -> _Print | None:
        """None for a box without two tones: not text."""
        x, y, w, h = box
        tones = two_tones(image[max(0, y): y + h, max(0, x): x + w])
        if tones is None:
            return None
        grey, light, lab = tones
        return cls((grey[light].mean() + grey[~light].mean()) / 2, bool(light.mean() >= 0.5),
                   lab[~light].mean(axis=0), lab[light].mean(axis=0))

    def alike(self, other: _Print) -> bool:
        return all(float(np.linalg.norm(mine - theirs)) <= _ALIKE_LAB
                   for mine, theirs in ((self.dark, other.dark), (self.light, other.light)))


def union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def grow(box: Box, shape: tuple[int, ...], fx: float, fy: float) -> Box:
    x, y, w, h = box
    height, width = shape[:2]
    x0, y0 = max(0, int(x - fx * h)), max(0, int(y - fy * h))
    x1, y1 = min(width, int(x + w + fx * h)), min(height, int(y + h + fy * h))
    return x0, y0, x1 - x0, y1 - y0


def cut_line(image: np.ndarray, box: Box, slant: Slant | None, px: float, py: float) -> np.ndarray:
    """The text line in ``box``, turned level when it is tilted (a camera beside the lane or above
    it, a plate hung askew), with ``px``, ``py`` of its thickness as margin on each side."""
    if slant is None or not slant.tilted:
        return cut(image, box, px, py)
    x, y, w, h = box
    centre = (x + w / 2, y + h / 2)
    width = round(slant.length + 2 * px * slant.thickness)
    height = round(slant.thickness * (1 + 2 * py))
    turn = cv2.getRotationMatrix2D(centre, slant.degrees, 1.0)
    turn[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])  # the line's centre to the crop's
    return cv2.warpAffine(image, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def cut_sheared(image: np.ndarray, box: Box, slant: Slant | None, px: float, py: float) -> np.ndarray:
    """As :func:`cut_line`, but a tilted line is made level by shearing it upright, not by turning
    it: a plate seen from beside the lane keeps its verticals vertical while its top and bottom
    edges slope, so turning it level leans its characters."""
    if slant is None or not slant.tilted:
        return cut(image, box, px, py)
    x, y, w, h = box
    centre_x, centre_y = x + w / 2, y + h / 2
    slope = math.tan(math.radians(slant.degrees))
    upright = slant.thickness / math.cos(math.radians(slant.degrees))  # the line's height, measured upright
    width = round(slant.across + 2 * px * upright)
    height = round(upright * (1 + 2 * py))
    # From the crop's (u, v) to the image's (x, y): x = cx + u - W/2, y = cy + v - H/2 + slope (u - W/2).
    shear = np.float32([[1, 0, centre_x - width / 2], [slope, 1, centre_y - height / 2 - slope * width / 2]])
    return cv2.warpAffine(image, shear, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def cut(image: np.ndarray, box: Box, px: float, py: float) -> np.ndarray:
    x, y, w, h = box
    height, width = image.shape[:2]
    x0, y0 = max(0, int(x - px * h)), max(0, int(y - py * h))
    x1, y1 = min(width, int(x + w + px * h)), min(height, int(y + h + py * h))
    return image[y0:y1, x0:x1]


def _sharpest_shear(energy: np.ndarray, shears: np.ndarray, rows: bool) -> float:
    """The shear of ``energy`` (rows sloping when ``rows``, else columns leaning) under which its
    projection across them is most concentrated: text rows and upright strokes project sharply."""
    if rows:  # a row slope is a column lean of the transposed picture
        energy = energy.T
    h, _ = energy.shape
    best, best_score = 0.0, -1.0
    for k in shears:
        # x -> x - k (y - h/2), padded so that no energy leaves the picture
        pad = math.ceil(abs(k) * h / 2) + 1
        padded = cv2.copyMakeBorder(energy, 0, 0, pad, pad, cv2.BORDER_CONSTANT, value=0)
        shear = np.float32([[1, -k, k * h / 2], [0, 1, 0]])
        profile = cv2.warpAffine(padded, shear, (padded.shape[1], h)).sum(axis=0)
        score = float(np.square(profile, dtype=np.float64).sum())
        if score > best_score:
            best, best_score = float(k), score
    return best


def estimate_shear(image: np.ndarray) -> tuple[float, float]:
    """(slope, lean) of the text in a plate crop: how far its rows slope (down per unit of width)
    and, once they are level, how far its strokes lean (to the right per unit of height, going
    down the picture).  Measured on a 32-px-high grey copy: about 2 ms."""
    scale = 32 / image.shape[0]
    grey = cv2.cvtColor(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2GRAY).astype(np.float32)
    slope = _sharpest_shear(np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1)), np.linspace(-0.4, 0.4, 17), rows=True)
    level = unshear(grey, slope, 0.0)
    lean = _sharpest_shear(np.abs(cv2.Sobel(level, cv2.CV_32F, 1, 0)), np.linspace(-1.0, 1.0, 21), rows=False)
    return slope, lean


def unshear(image: np.ndarray, slope: float, lean: float) -> np.ndarray:
    """``image`` with its rows' ``slope`` levelled, then its strokes' ``lean`` set upright."""
    h, w = image.shape[:2]
    level = cv2.warpAffine(image, np.float32([[1, 0, 0], [-slope, 1, slope * w / 2]]), (w, h),
                           borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(level, np.float32([[1, -lean, lean * h / 2], [0, 1, 0]]), (w, h),
                          borderMode=cv2.BORDER_REPLICATE)
