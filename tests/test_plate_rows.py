"""Plates whose text the detector finds as several lines side by side are read whole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.plate import PlateReader
from models.plate_formats import same_plate
from models.plate_geometry import Box, Slant, whole_row
from tests.plate_renders import render_eu_plate, render_russian_plate, scene_with

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


def test_a_line_is_joined_with_the_lines_beside_it_on_its_row() -> None:
    serial, region = (417, 410, 168, 41), (615, 412, 29, 22)  # as detected on a Russian plate
    flag_text = (611, 441, 32, 13)  # RUS under the region: too small to be a part of the row
    lines = {box: level(box) for box in (serial, region, flag_text)}
    image = plate_with_lines(serial, region, flag_text)
    assert whole_row(image, lines, serial) == (417, 410, 227, 41)
    assert whole_row(image, lines, flag_text) == flag_text


def test_a_two_digit_region_is_joined_though_its_box_is_small() -> None:
    """The detector boxes a Russian plate's two-digit region (77) tight, at 0.4 of its serial line's
    height: the serial's large digits set that line's height."""
    serial, region = (265, 546, 160, 40), (460, 552, 20, 16)  # as detected on a 255-px plate
    lines = {serial: level(serial), region: level(region)}
    assert whole_row(plate_with_lines(serial, region), lines, serial) == (265, 546, 215, 40)


def test_a_line_is_not_joined_with_a_country_letter_on_its_band() -> None:
    """A European plate's country letter is light on its blue band: as near, as tall and with as
    light a gap as a region code, but printed in other colours."""
    serial, letter = (417, 410, 168, 41), (394, 425, 14, 21)
    image = plate_with_lines(serial)
    image[405: 455, 392: 408] = (170, 60, 30)  # the band, BGR
    for stroke in (396, 402):
        image[429: 442, stroke: stroke + 3] = 245
    lines = {serial: level(serial), letter: level(letter)}
    assert whole_row(image, lines, serial) == serial
    image[405: 455, 392: 408] = 235  # the same letter in the plate's own colours joins
    image[429: 442, 396: 405] = 20
    assert whole_row(image, lines, serial) == (394, 410, 191, 41)


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


def test_a_small_russian_plate_keeps_its_two_digit_region() -> None:
    reads = PlateReader("latin").read(scene_with(render_russian_plate("O105AB", "77"), 170))
    assert reads and same_plate("O105AB77", reads[0].text)  # O or 0: the plate's font draws them alike


@pytest.mark.parametrize(("printed", "width"), [("1-NTU-118", 200), ("1-GHR-558", 230)])
def test_a_belgian_plate_in_a_scene_is_read_without_its_country_letter(printed: str, width: int) -> None:
    reads = PlateReader("latin").read(scene_with(render_eu_plate(printed, "B"), width))
    assert reads and reads[0].text == printed.replace("-", ""), "the band's B is not a leading 8 or B"
