"""Security levels → distance thresholds, from the impostor calibration shipped in ``face_calibration.json``.

A level is a target rate of strangers admitted per encoding attempt (one stranger's face encoded once
and matched against the gate's gallery).  What a stranger risks grows with the number of templates M
the encoding is compared with: it is let in when its *nearest* template is within the threshold t, so

    P(stranger admitted) = 1 - (1 - F(t)) ** M

where F is the single-pair impostor distance CDF (a gate encoding against one template of somebody
else).  The threshold for a target rate r is therefore ``F⁻¹(1 - (1 - r) ** (1 / M))``: it falls as the
gallery grows and as the level tightens.

The table holds log10 F on a distance grid: measured on lfw-dev where the pairs are many (F ≥ 1e-5,
~94 pairs or more), and below that a straight line in log10 F fitted to the measured 1e-5..1e-3 part
(the far tail has too few pairs to measure, and what it has there is mostly mislabelled or duplicated
LFW photos).  Composing min-of-M as if the M templates were independent is conservative: strangers
differ (some faces are near many residents, most near none) and one person's templates are alike, and
both make the true rate lower than the formula (Jensen); ``bench/face_calibration.py`` prints the held-out
empirical rates next to the targets.  How the table is built, from which data: that script and
docs/faces.md.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

TABLE = Path(__file__).with_name("face_calibration.json")

Level = Literal["low", "normal", "high", "strict"]
# Strangers admitted per encoding attempt.  normal = 1/1,000 is the goal for a building gate;
# each level is ten times stricter than the one below, so a technician can trade residents' convenience
# for safety in steps the residents will notice (see docs/faces.md for the residents admitted per level).
LEVEL_RATES: dict[str, float] = {"low": 1e-2, "normal": 1e-3, "high": 1e-4, "strict": 1e-5}
DEFAULT_LEVEL: Level = "normal"


@lru_cache(maxsize=4)
def load_table(path: Path = TABLE) -> dict:
    """The shipped calibration (a few KB); ValueError with the file name when it is unusable."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        grid = np.asarray(table["distance"], dtype=float)
        log_cdf = np.asarray(table["log10_impostor_cdf"], dtype=float)
        genuine = np.asarray(table["genuine_within"], dtype=float)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a face calibration table ({error}); rebuild it with "
                         "bench/face_calibration.py") from error
    if not (len(grid) == len(log_cdf) == len(genuine) > 1 and np.all(np.diff(grid) > 0)
            and np.all(np.diff(log_cdf) >= 0)):
        raise ValueError(f"{path}: the calibration grid must rise and its CDF must not fall; rebuild it")
    return {**table, "distance": grid, "log10_impostor_cdf": log_cdf, "genuine_within": genuine}


def pair_rate(level_rate: float, templates: int) -> float:
    """The single-pair impostor rate that gives ``level_rate`` over ``templates`` independent templates."""
    if not 0.0 < level_rate < 1.0:
        raise ValueError(f"a stranger rate must lie between 0 and 1, not {level_rate}")
    return -math.expm1(math.log1p(-level_rate) / max(1, templates))


def threshold(level_rate: float, templates: int) -> float:
    """The largest distance that keeps strangers admitted at ``level_rate`` per attempt against a
    gallery of ``templates`` templates (an empty gallery is treated as one template)."""
    table = load_table()
    target = math.log10(pair_rate(level_rate, templates))
    grid, log_cdf = table["distance"], table["log10_impostor_cdf"]
    if target <= log_cdf[0]:
        return float(grid[0])
    # the last grid point whose rate is within the target (log_cdf may be flat in places)
    return float(np.interp(target, log_cdf, grid)) if target < log_cdf[-1] else float(grid[-1])


def stranger_rate(distance: float, templates: int) -> float:
    """Strangers admitted per attempt at this threshold and gallery size (the model, conservative)."""
    table = load_table()
    pair = 10.0 ** float(np.interp(distance, table["distance"], table["log10_impostor_cdf"]))
    return -math.expm1(max(1, templates) * math.log1p(-min(pair, 1.0 - 1e-12)))


def residents_within(distance: float) -> float:
    """Fraction of residents' gate encodings whose nearest own template (2 enrolled photos) lies within
    ``distance`` on the calibration people: the rest need a second look or a second credential."""
    table = load_table()
    return float(np.interp(distance, table["distance"], table["genuine_within"]))


def level_threshold(level: str, templates: int) -> float:
    return threshold(LEVEL_RATES[level], templates)


def plain_words(gate: str, people: int, templates: int, threshold_used: float, level: str | None) -> str:
    """What the threshold means at this gallery size, for a technician (``level`` None: an expert's
    fixed tolerance, described by what the calibration says of it)."""
    rate = LEVEL_RATES[level] if level else stranger_rate(threshold_used, templates)
    odds = f"about 1 stranger in {round(1 / rate):,} attempts" if rate > 0 else "no stranger the calibration knows"
    second = 1.0 - residents_within(threshold_used)
    setting = f"level {level}" if level else f"fixed tolerance {threshold_used:g} (expert setting)"
    return (f"{people} people at gate {gate}, {setting}: {odds} could be let in; about {second:.0%} of residents' "
            f"attempts need a second look or a second credential (distance {threshold_used:.3f}, {templates} "
            "templates)")
