"""Plates whose text the detector finds as several lines side by side are read whole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.plate import PlateReader
from models.plate_geometry import Box, Slant, whole_row

CONDENSED_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf"
RUSSIAN = r"[ABEKMHOPCTYX][0-9]{3}[ABEKMHOPCTYX]{2}[0-9]{2,3}"
RUSSIAN_IN_CYRILLIC = r"[АВЕКМНОРСТУХ]\d{3}[АВЕКМНОРСТУХ]{2}\d{2,3}"  # as a Russian technician writes it


def level(box: Box) -> Slant:
    return Slant(0.0, float(box[2]), float(box[3]))


def plate_with_lines(*boxes: Box, holder: Box | None = None) -> np.ndarray:
    """A light picture with dark strokes inside each box, as a detected line's characters are,
    and optionally a dark ``holder`` (a plate holder's frame) painted over what lies under it."""
    image = np.full((720, 1280, 3), 235, np.uint8)
    for x, y, w, h in boxes:
        for stroke in range(x + 3, x + w - 3, 9):
            image[y + 4: y + h - 4, stroke: stroke + 4] = 20
    if holder is not None:
        x, y, w, h = holder
        image[y: y + h, x: x + w] = 30
    return image


def render_russian_plate(serial: str, region: str) -> np.ndarray:
    """A Russian plate: the serial (its letters smaller than its digits), a bar, then the region
    code over RUS and the flag, as BGR."""
    width, height = 520, 112
    plate = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(10, 10, 10), width=4)
    draw.line((400, 4, 400, height - 5), fill=(10, 10, 10), width=3)
    digits, letters = ImageFont.truetype(CONDENSED_FONT, 84), ImageFont.truetype(CONDENSED_FONT, 64)
    parts = [(serial[0], letters), (serial[1:4], digits), (serial[4:], letters)]
    x = (400 - sum(draw.textlength(text, font=font) for text, font in parts) - 16) / 2
    for text, font in parts:
        draw.text((x, 62), text, font=font, fill=(10, 10, 10), anchor="lm")
        x += draw.textlength(text, font=font) + 8
    draw.text((460, 42), region, font=ImageFont.truetype(CONDENSED_FONT, 58), fill=(10, 10, 10), anchor="mm")
    draw.text((440, 92), "RUS", font=ImageFont.truetype(CONDENSED_FONT, 18), fill=(10, 10, 10), anchor="mm")
    for k, colour in enumerate([(255, 255, 255), (0, 57, 166), (213, 43, 30)]):
        draw.rectangle((470, 84 + 6 * k, 496, 89 + 6 * k), fill=colour, outline=(10, 10, 10))
    return np.asarray(plate)[:, :, ::-1].copy()


def test_a_line_is_joined_with_the_lines_beside_it_on_its_row() -> None:
    serial, region = (417, 410, 168, 41), (615, 412, 29, 22)  # as detected on a Russian plate
    flag_text = (611, 441, 32, 13)  # RUS under the region: too small to be a part of the row
    lines = {box: level(box) for box in (serial, region, flag_text)}
    image = plate_with_lines(serial, region, flag_text)
    assert whole_row(image, lines, serial) == (417, 410, 227, 41)
    assert whole_row(image, lines, flag_text) == flag_text


def test_a_plate_in_three_groups_is_joined_group_by_group() -> None:
    """Each gap is judged beside the row joined so far, not across the groups already in it."""
    first, second, third = (300, 410, 100, 41), (412, 412, 130, 38), (554, 412, 80, 38)  # AB 1234 CD
    lines = {box: level(box) for box in (first, second, third)}
    assert whole_row(plate_with_lines(first, second, third), lines, first) == (300, 410, 334, 41)


@pytest.mark.parametrize(("neighbour", "why"), [
    ((650, 410, 60, 40), "further off than the row is high"),
    ((600, 452, 60, 40), "on the next row"),
    ((590, 414, 40, 16), "a sticker's or a dealer's smaller text"),
    ((590, 400, 60, 60), "a taller sign"),
])
def test_a_line_is_not_joined_with_text_that_is_not_part_of_its_row(
        neighbour: Box, why: str) -> None:
    serial = (417, 410, 168, 41)
    image = plate_with_lines(serial, neighbour)
    assert whole_row(image, {serial: level(serial), neighbour: level(neighbour)}, serial) == serial, why


def test_a_line_is_not_joined_across_a_plate_holder() -> None:
    """A van's number beside its plate: as tall and as near as a region code, but the plate's
    holder lies between them."""
    plate, van_number = (733, 95, 100, 43), (861, 83, 43, 44)
    lines = {plate: level(plate), van_number: level(van_number)}
    assert whole_row(plate_with_lines(plate, van_number), lines, plate) == (733, 83, 171, 55)
    image = plate_with_lines(plate, van_number, holder=(838, 70, 15, 80))
    assert whole_row(image, lines, plate) == plate


def test_a_tilted_line_is_not_joined() -> None:
    line, beside = (400, 400, 200, 80), (605, 430, 40, 40)
    lines = {line: Slant(15.0, 190.0, 30.0), beside: level(beside)}
    assert whole_row(plate_with_lines(line, beside), lines, line) == line


@pytest.mark.parametrize("spec", [RUSSIAN, RUSSIAN_IN_CYRILLIC, "latin"], ids=["regex", "regex-in-cyrillic", "latin"])
@pytest.mark.parametrize(("serial", "region"), [("K982HT", "178"), ("T693HY", "77")])
def test_a_russian_plate_is_read_with_its_region_in_a_scene(spec: str, serial: str, region: str) -> None:
    reader = PlateReader(spec)
    for scale in (1.0, 0.5):
        plate = cv2.resize(render_russian_plate(serial, region), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        scene = np.full((720, 1280, 3), 110, np.uint8)
        scene[400: 400 + plate.shape[0], 400: 400 + plate.shape[1]] = plate
        reads = reader.read(scene)
        assert reads and reads[0].text == serial + region, f"at {scale}: the region is beside the serial, not apart"
