"""Rendered plates for bench/bench_plates.py: other countries' (read with ``--formats latin``), and
mainland plates of every province and colour (``--formats cn``).

No photograph of a European or Russian plate is on this machine, so these are rendered
(tests/plate_renders.py): nine countries' layouts with random serials, a country band where the
country has one.  They show that what the shared data tunes does not break plates laid out
otherwise; they are no stand-in for photographs.

- ``foreign-crops``: 120 plates, each 100-400 px wide, slightly blurred and saved as JPEG.
- ``foreign-scenes``: the same kind of plate pasted over the US scenes' own plates (the first 120
  scenes), in a dark holder, 110-260 px wide (as the Chinese plates of ``cn-scenes``, 110-220 px,
  a plate a barrier camera is aimed to see at 80 px or more): the car and its surroundings stay,
  its plate is replaced.
- ``emblem-crops`` (120, 90-260 px wide) and ``emblem-scenes`` (over the first 90 US scenes,
  105-200 px wide): Slovak, German and Croatian plates with their emblem between the characters
  (arms, the two seals), which models/plate_emblem.py paints over.
- ``cn-rendered``: 186 mainland plates, 94-220 px wide, every province twice in each colour: blue,
  yellow, and new-energy green (six after the letter).  The shared crops are nearly all one
  province's blue plates (483 of 500 皖), so a change tuned to them shows here; a reader trained
  on such plates read the city letter and rare provinces wrong (see the README's figures).

Serials are drawn from a fixed seed, so every run reads the same images.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from agent.eval_plates import load_samples
from bench.plate_sets import write_labels
from models.plate_formats import CN_LETTERS, PROVINCES, clean
from tests.plate_renders import (
    MAINLAND_COLOURS,
    UK_YELLOW,
    WHITE,
    mainland_serial,
    render_eu_plate,
    render_mainland_plate,
    render_russian_plate,
)

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # most series leave out I, O and Q
CONSONANTS = "BCDFGHJKLMNPRSTVWXYZ"  # Spain's
CYRILLIC_LOOKALIKES = "ABEKMHOPCTYX"  # Russia's, as read
DIGITS = "0123456789"


def _pick(rng: random.Random, chars: str, count: int) -> str:
    return "".join(rng.choice(chars) for _ in range(count))


def _german(rng: random.Random) -> str:
    """District, letters and digits, at most eight characters in all."""
    district, letters = rng.randint(1, 3), rng.randint(1, 2)
    digits = rng.randint(1, min(4, 8 - district - letters))
    number = rng.randint(10 ** (digits - 1), 10 ** digits - 1)  # no leading zero
    return f"{_pick(rng, LETTERS, district)}-{_pick(rng, LETTERS, letters)} {number}"


# country band letters -> printed serial; an Italian plate also has a province band.
LAYOUTS: dict[str, Callable[[random.Random], str]] = {
    "F": lambda rng: f"{_pick(rng, LETTERS, 2)}-{_pick(rng, DIGITS, 3)}-{_pick(rng, LETTERS, 2)}",
    "D": _german,
    "I": lambda rng: f"{_pick(rng, LETTERS, 2)} {_pick(rng, DIGITS, 3)} {_pick(rng, LETTERS, 2)}",
    "E": lambda rng: f"{_pick(rng, DIGITS, 4)} {_pick(rng, CONSONANTS, 3)}",
    "NL": lambda rng: f"{_pick(rng, DIGITS, 2)}-{_pick(rng, CONSONANTS, 3)}-{_pick(rng, DIGITS, 1)}",
    "PL": lambda rng: f"{_pick(rng, LETTERS, 2)} {_pick(rng, DIGITS, 5)}",
    "B": lambda rng: f"1-{_pick(rng, LETTERS, 3)}-{_pick(rng, DIGITS, 3)}",
    "UK": lambda rng: f"{_pick(rng, LETTERS, 2)}{_pick(rng, DIGITS, 2)} {_pick(rng, LETTERS, 3)}",
    "RUS": lambda rng: f"{_pick(rng, CYRILLIC_LOOKALIKES, 1)}{_pick(rng, DIGITS, 3)}"
                       f"{_pick(rng, CYRILLIC_LOOKALIKES, 2)}|{rng.choice(['77', '178', '750', '42'])}",
}
ITALIAN_PROVINCES = ("MI", "RM", "TO", "NA")
Maker = Callable[[random.Random], tuple[np.ndarray, str]]


# country band letters -> (emblem, printed serial with a * where the emblem is)
EMBLEM_LAYOUTS: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "SK": ("sk", lambda rng: f"{_pick(rng, LETTERS, 2)}*{_pick(rng, DIGITS, 3)}{_pick(rng, LETTERS, 2)}"),
    "D": ("de", lambda rng: _german(rng).replace("-", "*")),
    "HR": ("hr", lambda rng: f"{_pick(rng, LETTERS, 2)}*{rng.randint(100, 9999)}-{_pick(rng, LETTERS, 2)}"),
}


def emblem_plate(rng: random.Random) -> tuple[np.ndarray, str]:
    """A rendered plate with an emblem between its characters, as BGR, and its text."""
    country = rng.choice(sorted(EMBLEM_LAYOUTS))
    emblem, printed = EMBLEM_LAYOUTS[country][0], EMBLEM_LAYOUTS[country][1](rng)
    return render_eu_plate(printed, country, emblem=emblem), clean(printed.replace("*", ""))


def foreign_plate(rng: random.Random) -> tuple[np.ndarray, str]:
    """A rendered plate of a country drawn at random, as BGR, and its text as the reader gives it."""
    country = rng.choice(sorted(LAYOUTS))
    printed = LAYOUTS[country](rng)
    if country == "RUS":
        serial, region = printed.split("|")
        return render_russian_plate(serial, region), serial + region
    if country == "UK":  # a rear plate (yellow, no band) or a front one (white, with the band)
        rear = rng.random() < 0.5
        return render_eu_plate(printed, "" if rear else "UK", ground=UK_YELLOW if rear else WHITE), clean(printed)
    province = rng.choice(ITALIAN_PROVINCES) if country == "I" else ""
    return render_eu_plate(printed, country, province), clean(printed)


MAINLAND_KINDS = (*MAINLAND_COLOURS, "green")  # blue, yellow, and new-energy green


def mainland_plates() -> Maker:
    """Rendered mainland plates, as BGR with their text: each province in turn in each colour."""
    index = itertools.count()

    def make(rng: random.Random) -> tuple[np.ndarray, str]:
        number = next(index)
        colour = MAINLAND_KINDS[number % len(MAINLAND_KINDS)]
        province = PROVINCES[number // len(MAINLAND_KINDS) % len(PROVINCES)]
        text = province + rng.choice(CN_LETTERS) + mainland_serial(rng, colour)
        return render_mainland_plate(text, colour), text

    return make


def _resized(plate: np.ndarray, width: int) -> np.ndarray:
    height = round(width * plate.shape[0] / plate.shape[1])
    return cv2.resize(plate, (width, height), interpolation=cv2.INTER_AREA)


def _write(folder: Path, name: str, image: np.ndarray, rng: random.Random) -> None:
    cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(75, 95)])


def render_foreign_crops(data: Path, folder: Path, count: int = 120) -> Path:
    return _crops(folder, count, random.Random(23), foreign_plate, (100, 400))


def paste_foreign_scenes(data: Path, folder: Path, count: int = 120) -> Path:
    return _scenes(data, folder, count, random.Random(29), foreign_plate, (110, 260))


def render_mainland_crops(data: Path, folder: Path, count: int = 6 * len(PROVINCES)) -> Path:
    return _crops(folder, count, random.Random(41), mainland_plates(), (94, 220))


def render_emblem_crops(data: Path, folder: Path, count: int = 120) -> Path:
    return _crops(folder, count, random.Random(37), emblem_plate, (90, 260))


def paste_emblem_scenes(data: Path, folder: Path, count: int = 90) -> Path:
    return _scenes(data, folder, count, random.Random(31), emblem_plate, (105, 200))


def _crops(folder: Path, count: int, rng: random.Random, make: Maker, widths: tuple[int, int]) -> Path:
    rows = ["image,plate"]
    for index in range(count):
        plate, text = make(rng)
        crop = cv2.GaussianBlur(_resized(plate, rng.randint(*widths)), (0, 0), rng.uniform(0.3, 1.0))
        _write(folder, f"crop_{index:03}.jpg", crop, rng)
        rows.append(f"crop_{index:03}.jpg,{text}")
    return write_labels(folder, rows)


def _scenes(data: Path, folder: Path, count: int, rng: random.Random, make: Maker, widths: tuple[int, int]) -> Path:
    rows = ["image,plate,x,y,w,h"]
    for index, sample in enumerate(load_samples(data / "us")[:count]):
        scene = cv2.imread(str(data / "us" / sample.image))
        plate, text = make(rng)
        plate = _resized(plate, min(rng.randint(*widths), round(0.45 * scene.shape[1])))
        x, y, w, h = sample.box  # type: ignore[misc]
        cx, cy = x + w // 2, y + h // 2
        # The holder covers the US plate; the foreign plate sits in it, centred where that one was.
        holder_w, holder_h = max(w, plate.shape[1]) + 8, max(h, plate.shape[0]) + 8
        hx, hy = max(0, cx - holder_w // 2), max(0, cy - holder_h // 2)
        scene[hy: hy + holder_h, hx: hx + holder_w] = 35
        px = min(max(0, cx - plate.shape[1] // 2), scene.shape[1] - plate.shape[1])
        py = min(max(0, cy - plate.shape[0] // 2), scene.shape[0] - plate.shape[0])
        scene[py: py + plate.shape[0], px: px + plate.shape[1]] = plate
        _write(folder, f"scene_{index:03}.jpg", scene, rng)
        rows.append(f"scene_{index:03}.jpg,{text},{px},{py},{plate.shape[1]},{plate.shape[0]}")
    return write_labels(folder, rows)


FOREIGN_SETS = {"foreign-crops": render_foreign_crops, "foreign-scenes": paste_foreign_scenes,
                "emblem-crops": render_emblem_crops, "emblem-scenes": paste_emblem_scenes,
                "cn-rendered": render_mainland_crops}
