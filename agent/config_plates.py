"""The ``plates:`` section: how vehicle plates are read, voted and reported.

Defaults were chosen on the shared plate data (``bench/bench_plates.py``: 222 US scenes from the
openalpr benchmark, 500 Chinese plate crops) on one core; each field says how.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.config import Integer, Number, Section
from models.plate_formats import NAMED_FORMATS, PROVINCES, PlateFormat, formats_from_spec, has_chinese
from models.plate_settings import PlateSettings


class PlateConfig(Section):
    """Licence-plate reading for vehicle barriers."""

    formats: list[str] = Field(
        default_factory=lambda: ["cn"],
        description=f"plate formats read: named ({', '.join(NAMED_FORMATS)}) and/or regexes for the "
        "plate's text, e.g. '[A-Z]{2}[0-9]{2}[A-Z]{3}' (UK) or '[A-Z]{2}-[0-9]{3}-[A-Z]{2}' (France): "
        "separators and anchors in them are ignored, as plates are compared without separators",
    )
    # 960 px: at 640 the detector missed a third of the US plates (about 60 px wide in 1280 px
    # frames); 1280 found no more than 960 and costs twice the time.
    detect_width: Integer = Field(
        960, ge=320, le=2560, description="long side (px) the frame is scaled to for finding text"
    )
    # 1280: when nothing plate-like is found at detect_width, detect again at this scale. On the shared
    # US scenes it found 3 more plates at 960 -> 1280 (1600 found fewer) and kept the median at ~285 ms,
    # because only frames with no plate pay for it.
    second_look_width: Integer = Field(
        1280, ge=320, le=2560, description="long side for a second look when the first finds no plate-like text"
    )
    # On: US 190 -> 192 of the shared scenes, at the same median read; but an empty frame (or one whose
    # plate is unreadable) costs 738 ms instead of 489 ms here (bench/bench_plate_motion.py).
    last_look: bool = Field(
        True, description="when still nothing plate-like is found, detect once more with PP-OCRv5 mobile's "
        "detector (small, dim plates); false saves over a third of what a frame without a plate costs",
    )
    # 0.5: below it the reads were mostly shop signs and bumper stickers, above it real plates were lost.
    min_confidence: Number = Field(0.5, ge=0.0, le=1.0, description="reads less sure than this are dropped")
    max_candidates: Integer = Field(
        6, ge=1, le=50, description="largest text boxes per frame given a quick read (twice as many when none of "
        "them reads like a plate)"
    )
    refine_candidates: Integer = Field(
        3, ge=1, le=10, description="best quick reads per frame re-read carefully (each costs ~40 ms on a Pi 4 core)"
    )
    frames_to_vote: Integer = Field(3, ge=1, le=30, description="reads of one vehicle pass voted into one decision")
    vote_min_confidence: Number = Field(
        0.5, ge=0.0, le=1.0, description="a pass's voted plate below this is not decided"
    )
    # 1: one misread character still matches a resident's plate, where the recogniser saw the
    # resident's character (models.plate_match.SEEN); 2 would let neighbours' plates (京A12345 /
    # 京A12354) collide.  Ties between two whitelisted plates never match.
    max_edit_distance: Integer = Field(
        1, ge=0, le=3, description="character edits allowed when matching the whitelist"
    )
    upstream_plate: Literal["clear", "masked", "hashed"] = Field(
        "masked", description="how plates appear upstream: clear, masked (京A***45) or hashed"
    )
    # auto: PP-OCRv4 when a format has Chinese characters (98.6% of the shared Chinese crops, against
    # 89% for PP-OCRv6 small, which mistakes the province), PP-OCRv6 small otherwise (86.5% of
    # the shared US scenes, against 73.0% for PP-OCRv4).
    recogniser: Literal["auto", "ppocr-v4", "ppocr-v6-small"] = Field(
        "auto", description="text recogniser: auto (PP-OCRv4 for Chinese formats, PP-OCRv6 small otherwise)"
    )
    local_province: str | None = Field(
        None, description="the province character most plates here carry, e.g. 皖: a small or blurred province "
        "character that could be it is read as it (a commercial plate camera's priority province); other "
        "provinces' plates, clearly seen, still read as theirs. Chinese formats only. Default: none",
    )
    threads: Integer = Field(
        1, ge=1, le=4, description="onnxruntime threads; 1 leaves the Pi's other cores to the agent")
    # An empty lane is the common case and a read costs ~250 ms here (about a second on a Pi 4 core,
    # more when it is hot and throttled); a motion check costs ~1 ms (bench/bench_plate_motion.py).
    read_on_motion_only: bool = Field(
        True, description="read a frame only when something moved, a pass is under way or the safety loop "
        "sees a vehicle; false reads every frame the reader keeps up with",
    )
    motion_pixel_delta: Integer = Field(
        12, ge=1, le=255, description="grey-level change of a 32x24 thumbnail pixel that counts as motion"
    )
    motion_fraction: Number = Field(
        0.01, ge=0.0, le=1.0, description="fraction of thumbnail pixels that must change to count as motion"
    )

    @field_validator("local_province")
    @classmethod
    def _a_province(cls, value: str | None) -> str | None:
        if value is not None and (len(value.strip()) != 1 or value.strip() not in PROVINCES):
            raise ValueError(f"{value!r} is not a mainland province character (one of {PROVINCES})")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _province_needs_chinese_plates(self) -> PlateConfig:
        if self.local_province is not None and not has_chinese(plate_formats(self)):
            raise ValueError("local_province needs a Chinese plate format (formats: [cn])")
        return self

    @field_validator("formats")
    @classmethod
    def _formats_valid(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one plate format")
        for item in value:
            if item.strip().lower() in NAMED_FORMATS:
                continue
            try:
                formats_from_spec(item)
            except re.error as error:
                raise ValueError(f"{item!r} is neither a named format nor a valid regex: {error}") from None
        return value


def plate_settings(config: PlateConfig) -> PlateSettings:
    """The model's plain settings from the YAML section."""
    return PlateSettings(
        detect_width=config.detect_width,
        second_look_width=config.second_look_width,
        last_look=config.last_look,
        min_confidence=config.min_confidence,
        max_candidates=config.max_candidates,
        refine_candidates=config.refine_candidates,
        threads=config.threads,
        recogniser=config.recogniser,
        local_province=config.local_province,
    )


def plate_formats(config: PlateConfig) -> list[PlateFormat]:
    return formats_from_spec(config.formats)
