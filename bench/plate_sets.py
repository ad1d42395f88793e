"""Plate data sets the shared data lacks, made from it on the spot for bench/bench_plates.py.

- ``cn-scenes``: the first 120 Chinese crops, each scaled to 110-220 px wide and pasted into one of
  the US scenes (which keep their own plates, stickers and signs: text the Chinese formats must not
  take for the plate).
- ``cn-scenes-steep``: the same crops pasted turned 20-50 degrees either way (a camera rolled on its
  mount, a plate hung askew; CCPD's "rotate" set spans the same).
- ``cn-scenes-oblique``: the same crops pasted in perspective, as a camera beside and above the lane
  sees them: top and bottom edges sloping by 0.25-0.5, foreshortened, the far side shorter.
- ``us-tilted``: the US scenes turned 6-14 degrees either way, as a camera beside or above the lane
  sees plates.
- ``us-crops``: the US plates cut at their labelled boxes: Latin plate crops.
- ``cn-tilted``: the first 200 Chinese crops turned 5-15 degrees either way, on a canvas just big
  enough, the corners filled with the crop's own edge colours (as a crop cut around a tilted plate).
- ``cn-turned-resized``: the first 200 Chinese crops turned 10-30 degrees either way and resized back
  to 94x24, as public data sets cut plates (an upright box around a turned plate, resized to one
  shape): the plate is a parallelogram whose characters lean.
- ``cn-crops-loose``: the Chinese plates of ``cn-scenes`` cut from their scenes with margin around
  them (15% of the plate's width beside it, 40% of its height above and below).
- ``cn-sheared``: the first 200 Chinese crops as a camera beside the lane sees them: sheared, so
  the top and bottom edges slope by 0.1-0.25 while the verticals stay upright, on a canvas just big
  enough (the crop cut upright around such a plate).
- ``us-crops-sheared``: the US crops (as ``us-crops``) sheared the same way.
- ``us-grey``, ``cn-crops-grey``, ``cn-scenes-grey``: the US scenes, the Chinese crops and
  ``cn-scenes`` in grey (one channel), as a camera that turns monochrome at night sees the lane;
  an infrared picture's tones differ, which this does not model.

For bench/bench_plate_size.py: Chinese crops pasted into the US scenes at one width
(``paste_cn_at_width``), and US scenes scaled down so their plate is one width (``shrink_us_scenes``).

Each is written to a folder with its ``labels.csv``; the angles are drawn from a fixed seed, so every
run reads the same images.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from agent.eval_plates import Sample, load_samples
from agent.simulation_media import shear_upright, turn


def _angle(rng: random.Random, low: float, high: float) -> float:
    return rng.choice([-1, 1]) * rng.uniform(low, high)


def write_labels(folder: Path, rows: list[str]) -> Path:
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _crops_and_scenes(data: Path, count: int) -> Iterator[tuple[int, Sample, np.ndarray, np.ndarray]]:
    """The first ``count`` Chinese crops, each with a US scene (the first 40 in turn) resized to 1160x720."""
    scenes = sorted((data / "us").glob("*.jpg"))[:40]
    for index, sample in enumerate(load_samples(data / "cn-crops")[:count]):
        crop = cv2.imread(str(data / "cn-crops" / sample.image))
        yield index, sample, crop, cv2.resize(cv2.imread(str(scenes[index % len(scenes)])), (1160, 720))


def paste_cn_scenes(data: Path, folder: Path, count: int = 120, widths: tuple[int, int] = (110, 220)) -> Path:
    """The first ``count`` Chinese crops, each scaled to a width drawn from ``widths`` and pasted
    into a US scene resized to 1160x720."""
    rng = random.Random(1)
    rows = ["image,plate,x,y,w,h"]
    for index, sample, crop, scene in _crops_and_scenes(data, count):
        width = rng.randint(*widths)
        height = round(width * crop.shape[0] / crop.shape[1])
        x, y = rng.randint(100, 1160 - width - 100), rng.randint(300, 720 - height - 60)
        shrink = width < crop.shape[1]
        scene[y: y + height, x: x + width] = cv2.resize(crop, (width, height),
                                                        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"scene_{index:03}.jpg"), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"scene_{index:03}.jpg,{sample.plate},{x},{y},{width},{height}")
    return write_labels(folder, rows)


def _turned_steeply(rng: random.Random, width: int, height: int) -> np.ndarray:
    """Where a plate's corners land, around its centre, turned 20-50 degrees either way (a camera
    rolled on its mount, a plate hung askew; CCPD's "rotate" set spans the same)."""
    radians = math.radians(_angle(rng, 20, 50))
    corners = np.float32([[-width, -height], [width, -height], [width, height], [-width, height]]) / 2
    turn = np.float32([[math.cos(radians), math.sin(radians)], [-math.sin(radians), math.cos(radians)]])
    return corners @ turn.T


def _seen_obliquely(rng: random.Random, width: int, height: int) -> np.ndarray:
    """Where a plate's corners land, around its centre, seen from beside and above the lane: its
    top and bottom edges sloping by 0.25-0.5, its width foreshortened to 0.7-0.95 and its far side
    0.8-0.95 as tall as its near side."""
    slope = _angle(rng, 0.25, 0.5)
    half = width * rng.uniform(0.7, 0.95) / 2
    near, far = height / 2, height * rng.uniform(0.8, 0.95) / 2
    left, right = (near, far) if slope > 0 else (far, near)
    return np.float32([[-half, -left - slope * half], [half, -right + slope * half],
                       [half, right + slope * half], [-half, left - slope * half]])


def paste_cn_scenes_posed(data: Path, folder: Path, pose: Callable[[random.Random, int, int], np.ndarray],
                          seed: int, count: int = 120) -> Path:
    """The first ``count`` Chinese crops, each scaled to 130-240 px wide, warped so its corners land
    where ``pose`` puts them, and pasted into a US scene resized to 1160x720; the label's box holds
    the warped plate."""
    rng = random.Random(seed)
    rows = ["image,plate,x,y,w,h"]
    for index, sample, crop, scene in _crops_and_scenes(data, count):
        width = rng.randint(130, 240)
        height = round(width * crop.shape[0] / crop.shape[1])
        plate = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)
        corners = pose(rng, width, height)
        low, high = corners.min(axis=0), corners.max(axis=0)
        centre = np.float32([rng.uniform(60 - low[0], 1100 - high[0]), rng.uniform(260 - low[1], 680 - high[1])])
        source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        warp = cv2.getPerspectiveTransform(source, corners + centre)
        inside = cv2.warpPerspective(np.full((height, width), 255, np.uint8), warp, (1160, 720)) > 0
        scene[inside] = cv2.warpPerspective(plate, warp, (1160, 720))[inside]
        cv2.imwrite(str(folder / f"scene_{index:03}.jpg"), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (x, y), (w, h) = (low + centre).astype(int), (high - low).astype(int)
        rows.append(f"scene_{index:03}.jpg,{sample.plate},{x},{y},{w},{h}")
    return write_labels(folder, rows)


def paste_cn_turned_steeply(data: Path, folder: Path) -> Path:
    return paste_cn_scenes_posed(data, folder, _turned_steeply, seed=13)


def paste_cn_seen_obliquely(data: Path, folder: Path) -> Path:
    return paste_cn_scenes_posed(data, folder, _seen_obliquely, seed=17)


def paste_cn_at_width(data: Path, folder: Path, width: int) -> Path:
    """100 Chinese crops pasted into the US scenes, every plate ``width`` pixels wide."""
    return paste_cn_scenes(data, folder, 100, (width, width))


def shrink_us_scenes(data: Path, folder: Path, width: int) -> Path:
    """The US scenes whose labelled plate is at least 1.15 times ``width`` wide, each scaled down so
    the plate is ``width`` wide: the same cars seen from further away."""
    rows = ["image,plate,x,y,w,h"]
    for sample in load_samples(data / "us"):
        x, y, w, h = sample.box  # type: ignore[misc]
        if w < 1.15 * width:
            continue
        factor = width / w
        scene = cv2.resize(cv2.imread(str(data / "us" / sample.image)), None, fx=factor, fy=factor,
                           interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / sample.image), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])
        box = ",".join(str(round(v * factor)) for v in (x, y, w, h))
        rows.append(f"{sample.image},{sample.plate},{box}")
    return write_labels(folder, rows)


def turn_us_scenes(data: Path, folder: Path) -> Path:
    rng = random.Random(7)
    rows = ["image,plate"]
    for sample in load_samples(data / "us"):
        scene = cv2.imread(str(data / "us" / sample.image))
        h, w = scene.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), _angle(rng, 6, 14), 1.0)  # same frame size
        scene = cv2.warpAffine(scene, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
        cv2.imwrite(str(folder / sample.image), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def cut_us_crops(data: Path, folder: Path) -> Path:
    rows = ["image,plate"]
    for sample in load_samples(data / "us"):
        x, y, w, h = sample.box  # type: ignore[misc]
        scene = cv2.imread(str(data / "us" / sample.image))
        crop = scene[max(0, y): y + h, max(0, x): x + w]
        cv2.imwrite(str(folder / sample.image), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def turn_cn_crops(data: Path, folder: Path, count: int = 200) -> Path:
    rng = random.Random(11)
    rows = ["image,plate"]
    for sample in load_samples(data / "cn-crops")[:count]:
        crop = cv2.imread(str(data / "cn-crops" / sample.image))
        # Turned at twice the size, then brought back: one resampling's blur, not two.
        crop = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        crop = cv2.resize(turn(crop, _angle(rng, 5, 15)), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / sample.image), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def turn_cn_crops_resized(data: Path, folder: Path, count: int = 200) -> Path:
    """The first ``count`` Chinese crops turned 10-30 degrees either way and resized back to their own
    94x24, as public data sets cut plates: upright boxes around turned plates, resized to one shape,
    which leaves the characters leaning."""
    rng = random.Random(19)
    rows = ["image,plate"]
    for sample in load_samples(data / "cn-crops")[:count]:
        crop = cv2.imread(str(data / "cn-crops" / sample.image))
        big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        turned = cv2.resize(turn(big, _angle(rng, 10, 30)), (crop.shape[1], crop.shape[0]),
                            interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / sample.image), turned, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def cut_cn_crops_loose(data: Path, folder: Path) -> Path:
    """The Chinese plates pasted into scenes (``cn-scenes``) cut with 15% of the plate's width beside
    it and 40% of its height above and below: plate crops from a loose box."""
    scenes = folder.with_name(folder.name + "-scenes")
    scenes.mkdir()
    paste_cn_scenes(data, scenes)
    rows = ["image,plate"]
    for sample in load_samples(scenes):
        x, y, w, h = sample.box  # type: ignore[misc]
        scene = cv2.imread(str(scenes / sample.image))
        crop = scene[max(0, int(y - 0.4 * h)): int(y + 1.4 * h), max(0, int(x - 0.15 * w)): int(x + 1.15 * w)]
        cv2.imwrite(str(folder / sample.image), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def _shear(image: np.ndarray, slope: float) -> np.ndarray:
    # Sheared at twice the size, then brought back: one resampling's blur, not two.
    image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    return cv2.resize(shear_upright(image, slope), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def shear_crops(source: Path, folder: Path, count: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = ["image,plate"]
    for sample in load_samples(source)[:count]:
        crop = _shear(cv2.imread(str(source / sample.image)), _angle(rng, 0.1, 0.25))
        cv2.imwrite(str(folder / sample.image), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(f"{sample.image},{sample.plate}")
    return write_labels(folder, rows)


def shear_cn_crops(data: Path, folder: Path) -> Path:
    return shear_crops(data / "cn-crops", folder, 200, seed=3)


def shear_us_crops(data: Path, folder: Path) -> Path:
    crops = folder.with_name(folder.name + "-unsheared")
    crops.mkdir()
    return shear_crops(cut_us_crops(data, crops), folder, 10_000, seed=6)


def grey_set(source: Path, folder: Path) -> Path:
    """Every image of ``source`` written in grey (one channel), with its labels."""
    for sample in load_samples(source):
        grey = cv2.cvtColor(cv2.imread(str(source / sample.image)), cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(folder / sample.image), grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "labels.csv").write_bytes((source / "labels.csv").read_bytes())
    return folder


def grey_cn_scenes(data: Path, folder: Path) -> Path:
    scenes = _made_in_colour(folder)
    scenes.mkdir()
    return grey_set(paste_cn_scenes(data, scenes), folder)


def grey_source(data: Path, folder: Path) -> Path:
    """The colour images the grey set ``folder`` was made from: shared data (``us``, ``cn-crops``),
    or a made set beside it (``cn-scenes``)."""
    shared = data / folder.name.removesuffix("-grey")
    return shared if shared.is_dir() else _made_in_colour(folder)


def _made_in_colour(folder: Path) -> Path:
    return folder.with_name(folder.name + "-colour")


MADE_SETS = {"cn-scenes": paste_cn_scenes, "cn-scenes-steep": paste_cn_turned_steeply,
             "cn-scenes-oblique": paste_cn_seen_obliquely, "us-tilted": turn_us_scenes, "us-crops": cut_us_crops,
             "cn-tilted": turn_cn_crops, "cn-turned-resized": turn_cn_crops_resized, "cn-sheared": shear_cn_crops,
             "us-crops-sheared": shear_us_crops, "cn-crops-loose": cut_cn_crops_loose,
             "us-grey": lambda data, folder: grey_set(data / "us", folder),
             "cn-crops-grey": lambda data, folder: grey_set(data / "cn-crops", folder),
             "cn-scenes-grey": grey_cn_scenes}
