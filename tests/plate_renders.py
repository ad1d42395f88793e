"""Plates rendered: other countries' (no photograph of one is on this machine), and mainland
plates in the colours and provinces the shared crops lack (483 of their 500 are Anhui's blue 皖).

The tests read them one by one; ``bench/foreign_plates.py`` makes its ``foreign-*``, ``emblem-*``
and ``cn-rendered`` sets from them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.simulation_media import cjk_font
from models.plate_formats import CN_ALNUM, CN_LETTERS, DIGITS

CONDENSED_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf"
WHITE = (245, 245, 245)
UK_YELLOW = (250, 205, 20)  # a British rear plate


def render_eu_plate(text: str, country: str, province: str = "", ground: tuple[int, int, int] = WHITE,
                    emblem: str = "") -> np.ndarray:
    """An EU plate with the blue band (circle of stars, ``country`` letters) on its left, none when
    ``country`` is empty, and with a ``province`` code, the blue band an Italian plate has on its
    right; the text is as large as the plate's height allows, smaller when it would not fit.  An
    ``emblem`` (a key of ``EMBLEMS``) is drawn where ``text`` has a ``*``."""
    if emblem:
        return _with_emblem(text, country, EMBLEMS[emblem])
    height, width = 110, 520
    plate = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(10, 10, 10), width=4)
    band = 40 if country else 0
    if country:
        _band(draw, country, height)
    if province:
        draw.rectangle((width - 5 - band + 4, 4, width - 5, height - 5), fill=(30, 60, 170))
        draw.text((width - 5 - band / 2 + 2, 80), province, font=ImageFont.truetype(CONDENSED_FONT, 20),
                  fill=(250, 250, 250), anchor="mm")
    room = width - 8 - band
    size = 78
    while draw.textlength(text, font=ImageFont.truetype(CONDENSED_FONT, size)) > room:
        size -= 2
    draw.text(((width + band) / 2 if not province else width / 2, height / 2), text,
              font=ImageFont.truetype(CONDENSED_FONT, size), fill=(10, 10, 10), anchor="mm")
    return np.asarray(plate)[:, :, ::-1].copy()


# A mainland plate's ground and ink; a new-energy plate fades from white to green instead.
MAINLAND_COLOURS = {"blue": ((20, 60, 160), WHITE), "yellow": ((245, 190, 20), (10, 10, 10))}


def render_mainland_plate(text: str, colour: str = "blue", height: int = 70) -> np.ndarray:
    """A mainland single-row plate laid out as GA 36 prints it: white on blue or black on yellow
    (lorries, buses), 440x140 mm, seven characters 45 mm wide and 90 mm tall, 12 mm apart with a dot
    between the second and third; or ``green``, a new-energy plate, black on white fading to green,
    480 mm wide with eight characters (the province's 45 mm, the others 43 mm, 9 mm apart).  Each
    character is drawn in the CJK font and fitted to its cell, condensed as plate fonts are."""
    mm = height / 140
    green = colour == "green"
    plate_mm = 480 if green else 440
    width = round(plate_mm * mm)
    if green:
        fade = np.linspace(0.0, 1.0, height)[:, None]
        rows = (np.array([245, 250, 245]) * (1 - fade) + np.array([60, 190, 90]) * fade).astype(np.uint8)
        plate = Image.fromarray(np.repeat(rows[:, None, :], width, axis=1))
        ink: tuple[int, int, int] = (10, 10, 10)
    else:
        ground, ink = MAINLAND_COLOURS[colour]
        plate = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(plate)
    draw.rounded_rectangle((3 * mm, 3 * mm, width - 3 * mm, height - 3 * mm), radius=6 * mm, outline=ink,
                           width=max(1, round(1.5 * mm)))
    cells = [45.0] + [43.0 if green else 45.0] * (len(text) - 1)
    gap, dot_gap = (9.0, 30.0) if green else (12.0, 34.0)
    x = (plate_mm - sum(cells) - gap * (len(text) - 2) - dot_gap) / 2
    for index, (char, cell) in enumerate(zip(text, cells, strict=True)):
        glyph = _glyph(char)
        glyph_width = min(cell, glyph.width * 90 / glyph.height)  # a 1 stays narrow
        size = (max(1, round(glyph_width * mm)), round(90 * mm))
        left = round((x + (cell - glyph_width) / 2) * mm)
        plate.paste(ink, (left, round(25 * mm), left + size[0], round(25 * mm) + size[1]),
                    glyph.resize(size, Image.LANCZOS))
        if index == 1:  # the dot after the province and letter
            centre = x + cell + dot_gap / 2
            draw.ellipse(((centre - 5) * mm, 65 * mm, (centre + 5) * mm, 75 * mm), fill=ink)
        x += cell + (dot_gap if index == 1 else gap)
    return np.asarray(plate)[:, :, ::-1].copy()


def mainland_serial(rng: random.Random, colour: str = "blue") -> str:
    """The five characters after a blue or yellow plate's letter (digits, up to two letters), or
    a new-energy plate's six: D or F, then a letter or digit and four digits (small cars), or five
    digits, then D or F (large vehicles)."""
    if colour == "green":
        if rng.random() < 0.5:
            return rng.choice("DF") + rng.choice(CN_ALNUM) + "".join(rng.choice(DIGITS) for _ in range(4))
        return "".join(rng.choice(DIGITS) for _ in range(5)) + rng.choice("DF")
    serial = [rng.choice(DIGITS) for _ in range(5)]
    for place in rng.sample(range(5), rng.choice([0, 1, 1, 2])):
        serial[place] = rng.choice(CN_LETTERS)
    return "".join(serial)


def city_and_serial(rng: random.Random) -> str:
    """A blue plate's text after its province (the serial is drawn before the letter, as the
    seeded sets of bench/bench_local_province.py were)."""
    serial = mainland_serial(rng)
    return rng.choice(CN_LETTERS) + serial


def small_and_blurred(plate: np.ndarray, rng: random.Random) -> np.ndarray:
    """A crop as a barrier camera sees a plate at the edge of reading it: 80-100 px wide, blurred
    (sigma 0.6-1.2) and saved as JPEG (quality 55-80)."""
    height, width = plate.shape[:2]
    new_width = rng.randint(80, 100)
    small = cv2.resize(plate, (new_width, round(height * new_width / width)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.6, 1.2))
    _, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(55, 80)])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


@functools.cache
def _glyph(char: str) -> Image.Image:
    """``char`` drawn large in the CJK font, cut to its ink: a mask to scale into a plate's cell
    (kept: a plate has up to eight, and the font file is large to load)."""
    font = ImageFont.truetype(str(cjk_font()), 160)
    canvas = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(canvas).text((120, 120), char, font=font, fill=255, anchor="mm")
    return canvas.crop(canvas.getbbox())


def scene_with(plate: np.ndarray, width: int) -> np.ndarray:
    """``plate`` scaled to ``width`` in a dark holder in a grey 1280x720 scene."""
    scale = width / plate.shape[1]
    plate = cv2.resize(plate, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scene = np.full((720, 1280, 3), 110, np.uint8)
    scene[390: 410 + plate.shape[0], 390: 410 + plate.shape[1]] = 25
    scene[400: 400 + plate.shape[0], 400: 400 + plate.shape[1]] = plate
    return scene


def _band(draw: ImageDraw.ImageDraw, country: str, height: int, band: int = 40) -> None:
    """The blue band down a European plate's left: a circle of stars over the country's letters."""
    draw.rectangle((4, 4, band, height - 5), fill=(30, 60, 170))
    for k in range(12):
        cx, cy = band / 2 + 4 + 12 * np.cos(k * np.pi / 6), 36 + 12 * np.sin(k * np.pi / 6)
        draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=(250, 210, 0))
    draw.text((band / 2 + 4, 86), country, font=ImageFont.truetype(CONDENSED_FONT, 32), fill=(250, 250, 250),
              anchor="mm")


def render_russian_plate(serial: str, region: str) -> np.ndarray:
    """A Russian plate: the serial (its letters smaller than its digits), a bar, then the region
    code over RUS and the flag, as BGR."""
    width, height = 520, 112
    plate = Image.new("RGB", (width, height), WHITE)
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


Draw = ImageDraw.ImageDraw
Emblem = tuple[Callable[[Draw, float, float, float], None], int]  # how it is drawn, its top on the plate


def _slovak_arms(draw: Draw, x: float, top: float, size: float) -> None:
    """A red shield, its white double cross on blue hills."""
    draw.polygon([(x, top), (x + size, top), (x + size, top + 0.7 * size), (x + size / 2, top + 1.15 * size),
                  (x, top + 0.7 * size)], fill=(220, 30, 40))
    middle, bar = x + size / 2, 0.09 * size
    draw.rectangle((middle - bar, top + 0.12 * size, middle + bar, top + 0.85 * size), fill=(250, 250, 250))
    for height, reach in ((0.25, 0.25), (0.45, 0.33)):
        across = top + height * size
        draw.rectangle((middle - reach * size, across, middle + reach * size, across + 2 * bar), fill=(250, 250, 250))
    draw.ellipse((x + 0.1 * size, top + 0.75 * size, x + 0.9 * size, top + 1.25 * size), fill=(20, 70, 190))


def _german_seals(draw: Draw, x: float, top: float, size: float) -> None:
    """The inspection sticker (a coloured ring) over the state's seal (white, a small red arms)."""
    radius = 0.42 * size
    draw.ellipse((x, top, x + 2 * radius, top + 2 * radius), fill=(230, 120, 170), outline=(60, 60, 60))
    draw.ellipse((x + radius / 2, top + radius / 2, x + 1.5 * radius, top + 1.5 * radius), fill=(250, 250, 250))
    seal = top + 2 * radius + 0.1 * size
    draw.ellipse((x, seal, x + 2 * radius, seal + 2 * radius), fill=(235, 235, 235), outline=(90, 90, 90))
    draw.rectangle((x + 0.6 * radius, seal + radius / 2, x + 1.4 * radius, seal + 1.5 * radius), fill=(200, 40, 40))


def _croatian_arms(draw: Draw, x: float, top: float, size: float) -> None:
    """A red and white chequered shield under a blue crown."""
    square = size / 5
    for column in range(5):
        for row in range(6):
            left, upper = x + column * square, top + row * square
            draw.rectangle((left, upper, left + square, upper + square),
                           fill=(220, 30, 40) if (column + row) % 2 == 0 else (250, 250, 250))
    draw.rectangle((x, top - 0.35 * size, x + size, top), fill=(30, 80, 200))


# Arms between a Slovak or Croatian plate's
# district and number, seals between a German plate's district and letters.
EMBLEMS: dict[str, Emblem] = {"sk": (_slovak_arms, 28), "de": (_german_seals, 14), "hr": (_croatian_arms, 28)}


def _with_emblem(text: str, country: str, emblem: Emblem) -> np.ndarray:
    height, width, size = 110, 520, 46  # the emblem's width
    plate = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(10, 10, 10), width=4)
    _band(draw, country, height)
    before, after = text.split("*")
    font_size = 80
    while True:
        font = ImageFont.truetype(CONDENSED_FONT, font_size)
        spread = draw.textlength(before, font=font) + draw.textlength(after, font=font) + size + 24
        if spread <= width - 56:
            break
        font_size -= 2
    x = 44 + (width - 48 - spread) / 2
    draw.text((x, height / 2), before, font=font, fill=(10, 10, 10), anchor="lm")
    x += draw.textlength(before, font=font) + 12
    drawing, top = emblem
    drawing(draw, x, top, size)
    draw.text((x + size + 12, height / 2), after, font=font, fill=(10, 10, 10), anchor="lm")
    return np.asarray(plate)[:, :, ::-1].copy()
