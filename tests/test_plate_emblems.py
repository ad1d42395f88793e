"""Emblems between a plate's characters (arms, seals) are painted over, not read as characters."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.plate import PlateReader
from models.plate_emblem import emblems, paint_out
from tests.plate_renders import render_eu_plate, scene_with

TEXT_LINE = (44, 14, 472, 82)  # where a rendered 520x110 plate's characters and emblem lie
US_SCENES = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates" / "us"


def chroma(image: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    return np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` as a camera or a data set stores it."""
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


@pytest.mark.parametrize(("printed", "country", "emblem"),
                         [("PZ*083BC", "SK", "sk"), ("RNS*AZ 4557", "D", "de"), ("ZG*1234-AB", "HR", "hr")])
def test_an_emblem_between_characters_is_found_and_painted_over(printed: str, country: str, emblem: str) -> None:
    plate = render_eu_plate(printed, country, emblem=emblem)
    found = emblems(plate, TEXT_LINE)
    assert len(found) == 1
    x, y, w, h = TEXT_LINE
    line = plate[y: y + h, x: x + w]
    painted = paint_out(plate, TEXT_LINE, found)[y: y + h, x: x + w]
    assert chroma(line).max() > 60
    assert chroma(painted).max() < 20, "nothing of the emblem's colours is left"
    ink = (line < 60).all(axis=2).sum()
    assert (painted < 60).all(axis=2).sum() == pytest.approx(ink, rel=0.05), "the characters are left as they were"


def test_a_plain_plate_and_its_country_band_hold_no_emblem() -> None:
    plate = render_eu_plate("PZ 083BC", "SK")
    assert emblems(plate, TEXT_LINE) == []
    assert emblems(plate, (0, 0, 520, 110)) == [], "the blue band at the line's end is not between characters"


def test_light_characters_on_a_dark_ground_are_not_looked_at() -> None:
    """A Chinese blue plate's shading and a green plate's gradient are colours off its two tones, but
    such plates carry no emblem: every shared Chinese crop read the same, none was painted."""
    plate = np.full((110, 520, 3), (160, 60, 20), np.uint8)  # blue, as BGR
    for left in (60, 140, 300, 380):
        plate[20:90, left: left + 14] = 240  # white strokes
    plate[25:85, 200:250] = (40, 40, 220)  # a red patch between them
    assert emblems(plate, TEXT_LINE) == []


@pytest.mark.parametrize(("printed", "country", "emblem"),
                         [("ZK*055VH", "SK", "sk"), ("ZA*475HE", "SK", "sk"), ("PZ*083BC", "SK", "sk")])
def test_a_small_plate_crop_is_read_without_its_arms(printed: str, country: str, emblem: str) -> None:
    plate = render_eu_plate(printed, country, emblem=emblem)
    crop = cv2.GaussianBlur(cv2.resize(plate, (110, 23), interpolation=cv2.INTER_AREA), (0, 0), 0.8)
    reads = PlateReader("latin").read(jpeg(crop, 80))
    assert reads and reads[0].text == printed.replace("*", ""), "the arms are not read as a G, an O or a Q"


@pytest.mark.parametrize(("printed", "width"), [("PDJ*K 7857", 170), ("PDJ*K 7857", 230), ("PR*R 524", 200),
                                                ("RNS*AZ 4557", 170)])
def test_a_german_plate_in_a_scene_is_read_without_its_seals(printed: str, width: int) -> None:
    scene = jpeg(scene_with(render_eu_plate(printed, "D", emblem="de"), width), 85)
    reads = PlateReader("latin").read(scene)
    assert reads and reads[0].text == printed.replace("*", "").replace(" ", ""), "the seals are not an 8"


@pytest.mark.skipif(not US_SCENES.is_dir(), reason="needs ../shared/data/plates/us beside the project")
@pytest.mark.parametrize(("image", "plate"), [("car19.jpg", "378DXR"), ("us7.jpg", "5VCF203")])
def test_a_us_plate_keeps_the_characters_its_emblem_or_script_touches(image: str, plate: str) -> None:
    """Oregon's tree touches the D, with no bare ground between them, and California's red script
    over blue letters is strokes, not a patch: neither is painted over (painting their boxes read
    378JXR and 1520377)."""
    reads = PlateReader("us").read(cv2.imread(str(US_SCENES / image)))
    assert reads and reads[0].text == plate
