"""How wide must a plate be in the picture?  Read rate by plate width, on one core.

Run: ``taskset -c 0 .venv/bin/python bench/bench_plate_size.py``.  Prints, per width in pixels:

- Chinese plates: 100 shared Chinese crops (94x24 as they are) pasted into the US scenes at that
  width (bench/plate_sets.py ``paste_cn_at_width``), read as the gate reads a frame;
- US plates: the US scenes whose plate is wider, scaled down so it is that wide, beside the same
  scenes read as they are (the baseline, in the same run: a harder set of cars, not the distance,
  may explain a lower rate).

The width where the rates stop falling is the one ``edge-agent hw test`` and ``edge-agent status``
ask a barrier camera's plates to reach (models/plate_settings.py ``RELIABLE_PLATE_WIDTH``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config_plates import PlateConfig, plate_settings
from agent.eval_plates import evaluate, load_samples, summarise
from bench.plate_sets import paste_cn_at_width, shrink_us_scenes
from models.plate import PlateReader
from models.plate_formats import same_plate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates"
CN_WIDTHS = (40, 50, 60, 70, 80, 100, 130)
US_WIDTHS = (40, 50, 60, 70)


def _row(label: str, summary: dict, note: str = "") -> str:
    return (f"{label:22} exact {summary['exact_rate']:6.1%} ({summary['exact']:3}/{summary['images']:3}), "
            f"no read {summary['no_read']:3}, median {summary['median_ms']:6.1f} ms{note}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cn-widths", default=",".join(map(str, CN_WIDTHS)))
    parser.add_argument("--us-widths", default=",".join(map(str, US_WIDTHS)))
    args = parser.parse_args()
    if not ((DATA / "us").is_dir() and (DATA / "cn-crops").is_dir()):
        sys.exit(f"needs the shared plates at {DATA}")
    settings = plate_settings(PlateConfig())
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp)
        reader = PlateReader("cn", settings)
        print("Chinese plates pasted into the US scenes (1160x720), plate width in pixels:")
        for width in [int(w) for w in args.cn_widths.split(",") if w]:
            folder = made / f"cn-{width}"
            folder.mkdir()
            paste_cn_at_width(DATA, folder, width)
            print(_row(f"  {width:4} px", summarise(evaluate(folder, reader), "cn")), flush=True)

        us_widths = [int(w) for w in args.us_widths.split(",") if w]
        if not us_widths:
            return
        reader = PlateReader("us", settings)
        as_they_are = {o.image: o for o in evaluate(DATA / "us", reader)}
        print("US scenes scaled down so their plate is this wide (the same scenes as they are):")
        for width in us_widths:
            folder = made / f"us-{width}"
            folder.mkdir()
            shrink_us_scenes(DATA, folder, width)
            same = [as_they_are[s.image] for s in load_samples(folder)]
            hits = sum(same_plate(o.expected, o.read) for o in same)
            print(_row(f"  {width:4} px", summarise(evaluate(folder, reader), "us"),
                       f"  (as they are: {hits / len(same):.1%})"), flush=True)


if __name__ == "__main__":
    main()
