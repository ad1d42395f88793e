"""Other countries' plates, rendered: no photograph of one is on this machine.

The tests read them one by one; ``bench/foreign_plates.py`` makes its ``foreign-*`` sets from them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CONDENSED_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf"
WHITE = (245, 245, 245)
UK_YELLOW = (250, 205, 20)  # a British rear plate


def render_eu_plate(text: str, country: str, province: str = "", ground: tuple[int, int, int] = WHITE) -> np.ndarray:
    """An EU plate with the blue band (circle of stars, ``country`` letters) on its left, none when
    ``country`` is empty, and with a ``province`` code, the blue band an Italian plate has on its
    right; the text is as large as the plate's height allows, smaller when it would not fit."""
    height, width = 110, 520
    plate = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(10, 10, 10), width=4)
    band = 40 if country else 0
    if country:
        draw.rectangle((4, 4, band, height - 5), fill=(30, 60, 170))
        for k in range(12):
            cx, cy = band / 2 + 4 + 12 * np.cos(k * np.pi / 6), 36 + 12 * np.sin(k * np.pi / 6)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=(250, 210, 0))
        draw.text((band / 2 + 4, 86), country, font=ImageFont.truetype(CONDENSED_FONT, 32), fill=(250, 250, 250),
                  anchor="mm")
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
