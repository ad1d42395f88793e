"""What ``plates.local_province`` gains and what it costs, on one core.

Run: ``taskset -c 0 .venv/bin/python bench/bench_local_province.py [--weights 8,16] [--per-province 20]``.

Each of the 31 provinces in turn is the site's own: 20 of its plates and 40 of other provinces'
(random serials, blue and some yellow), rendered (tests/plate_renders.py), shrunk to 80-100 px wide,
blurred (sigma 0.6-1.2) and saved as JPEG (quality 55-80), the size below which a barrier camera's
plates stop reading well (models/plate_settings.py ``RELIABLE_PLATE_WIDTH``), where the province
character is the first thing lost.  Each set is read without a local province (the baseline, in the
same run) and with it at each weight (models/plate.py ``LOCAL_PROVINCE_WEIGHT``).  Printed: local
plates whose province reads right, other provinces' plates whose province reads right, and other
provinces' plates read right without it and as the local province with it (the cost).

Rendered plates are no stand-in for photographs (the CJK font is not the plate font).  When
../shared is beside the project, the shared Chinese crops (photographs, 483 of 500 皖) are then read
with each province in turn favoured, beside the same crops read without: how many reads change,
and how many plates read right before now read as the favoured province.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models.plate
from models.plate import PlateReader
from models.plate_formats import PROVINCES
from models.plate_settings import PlateSettings
from tests.plate_renders import city_and_serial, render_mainland_plate, small_and_blurred


def provinces_read(reader: PlateReader, images: list[np.ndarray]) -> list[str]:
    """The province each crop reads as ("" when none)."""
    reads = []
    for image in images:
        found = reader.read(image, (0, 0, image.shape[1], image.shape[0]))
        reads.append(found[0].text[:1] if found else "")
    return reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=str(models.plate.LOCAL_PROVINCE_WEIGHT))
    parser.add_argument("--per-province", type=int, default=20, help="local plates per province (twice as many others)")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    rng = random.Random(7)
    baseline = PlateReader("cn", PlateSettings())
    local = args.per_province
    totals = {w: [0, 0, 0] for w in [0.0, *weights]}  # local right, others right, others turned local
    print(f"{'':4}{'without':>16}" + "".join(f"{f'weight {w:g}':>26}" for w in weights))
    for province in PROVINCES:
        others = [p for p in PROVINCES if p != province]
        plates = [province + city_and_serial(rng) for _ in range(local)] + \
                 [rng.choice(others) + city_and_serial(rng) for _ in range(2 * local)]
        images = [small_and_blurred(render_mainland_plate(p, rng.choice(["blue"] * 4 + ["yellow"])), rng)
                  for p in plates]
        truth = [p[0] for p in plates]
        before = provinces_read(baseline, images)
        row = f"{province:3} "
        for weight in [0.0, *weights]:
            if weight:
                models.plate.LOCAL_PROVINCE_WEIGHT = weight
                reads = provinces_read(PlateReader("cn", PlateSettings(local_province=province)), images)
            else:
                reads = before
            local_right = sum(r == t for r, t in zip(reads[:local], truth[:local], strict=True))
            others_right = sum(r == t for r, t in zip(reads[local:], truth[local:], strict=True))
            turned = sum(b == t and r == province
                         for r, b, t in zip(reads[local:], before[local:], truth[local:], strict=True))
            for i, figure in enumerate((local_right, others_right, turned)):
                totals[weight][i] += figure
            row += f"{local_right:>6}/{local} {others_right:>3}/{2 * local}" + (f" turned {turned}" if weight else "")
        print(row, flush=True)
    count = len(PROVINCES)
    for weight, (local_right, others_right, turned) in totals.items():
        label = f"weight {weight:g}" if weight else "without"
        print(f"{label:>10}: local provinces {local_right}/{count * local} read right, other provinces "
              f"{others_right}/{count * 2 * local}, other provinces' plates turned local {turned}")
    photographs(weights)


def photographs(weights: list[float]) -> None:
    from agent.eval_plates import evaluate

    crops = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates" / "cn-crops"
    if not crops.is_dir():
        print(f"(no shared crops at {crops}: photographs skipped)")
        return
    plain = evaluate(crops, PlateReader("cn", PlateSettings()))
    before = {o.image: o.read for o in plain}
    print(f"shared Chinese crops, {len(plain)} photographs, read without a local province: "
          f"{sum(o.read == o.expected for o in plain)} exact")
    for weight in weights:
        models.plate.LOCAL_PROVINCE_WEIGHT = weight
        changed = turned = 0
        for province in PROVINCES:
            for outcome in evaluate(crops, PlateReader("cn", PlateSettings(local_province=province))):
                was = before[outcome.image]
                changed += outcome.read != was
                turned += (was[:1] == outcome.expected[:1] != province and outcome.read[:1] == province)
        print(f"  weight {weight:g}, each of the 31 provinces favoured in turn: {changed} reads changed of "
              f"{len(PROVINCES) * len(plain)}, {turned} plates read right before turned to the favoured province")


if __name__ == "__main__":
    main()
