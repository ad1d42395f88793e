"""Plate reading on the shared data beside raw rapidocr, on one core.

Run: ``taskset -c 0 .venv/bin/python bench/bench_plates.py [--limit N]``.  Prints, per data set,
the exact-read rate and median ms per image for the gate's reader (same pipeline and defaults as
``edge-agent eval plates``) and for the baseline: ``RapidOCR()(image)`` on the whole image, its most
confident line that, uppercased with separators dropped, fits the format.  Also the baseline without detection
(``use_det=False``), the fairer one for tight crops, and the issue's own raw figure ("any line"): a hit when ANY
returned line, uppercased with non-alphanumerics dropped, equals the label (O and 0 alike).  That one never has to
choose the plate among the scene's text, so it is an upper bound for raw rapidocr, not a gate.
The reader is also run with the recogniser ``auto`` did not choose, to show why it chose.

The shared data has neither Chinese *scenes*, Latin crops nor tilted plates, so ten more sets are made
from it on the spot (bench/plate_sets.py): Chinese crops pasted into the US scenes (upright, turned 20-50
degrees, and seen obliquely, in perspective), the US scenes turned 6-14 degrees, the US plates cut at their
labelled boxes, Chinese crops turned 5-15 degrees, Chinese crops turned 10-30 degrees and resized back to
94x24 (their characters lean), Chinese and US crops sheared as seen from beside the lane, and Chinese
plates cut from the scenes with margin around them.  To show what each step is worth, the reader is also
run on the tilted and sheared sets without levelling tilted lines; on the tilted and sheared crops with
tilted lines only turned level, not also sheared upright; on the leaning crops without undoing the lean;
on the loose crops without also reading their line; and on the US crops unstretched.  Two more sets
are other countries' plates, rendered (bench/foreign_plates.py: European, British and Russian plates
as crops and pasted over the US scenes' plates), read with ``--formats latin``, and two are plates
with an emblem between their characters (Slovak, German, Croatian), also rendered, read also without
painting the emblems over.  Three are in grey, as a camera that turns monochrome at night sees
the lane (colour photos made grey: an infrared picture's tones differ): the US scenes, the Chinese
crops and the Chinese plates in scenes, each read also in colour in the same run.  And one is
mainland plates rendered in every province and colour (the shared crops are nearly all one
province's blue plates).  ``--sets`` picks some of the twenty.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses

import models.plate
import models.plate_emblem
import models.plate_geometry
from agent.config_plates import PlateConfig, plate_settings
from agent.eval_plates import Outcome, evaluate, gate_figures, load_samples, summarise
from bench.foreign_plates import FOREIGN_SETS
from bench.plate_sets import MADE_SETS, grey_source
from models.plate import PlateReader
from models.plate_formats import clean, formats_from_spec, same_plate
from models.plate_recognisers import RECOGNISERS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates"


def baseline(folder: Path, limit: int, use_det: bool, spec: str) -> tuple[float, float, float]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    hits, any_hits, times = 0, 0, []
    formats = formats_from_spec(spec)
    samples = load_samples(folder)[:limit]
    for sample in samples:
        image = cv2.imread(str(folder / sample.image))
        start = time.perf_counter()
        result, _ = engine(image, use_det=use_det)
        times.append((time.perf_counter() - start) * 1000)
        lines = [(r[1], float(r[2])) for r in result] if use_det and result else \
            [(r[0], float(r[1])) for r in result or []]
        # The simplest normalisation: uppercase, no separators, and only lines that fit the format.
        fitting = [(text, score) for text, score in lines if any(f.matches(clean(text)) for f in formats)]
        best = max(fitting, key=lambda line: line[1])[0] if fitting else ""
        hits += same_plate(sample.plate, clean(best))
        any_hits += any(same_plate(sample.plate, re.sub(r"[^0-9A-Z\u4e00-\u9fff]", "", text.upper()))
                        for text, _ in lines)
    return hits / len(samples), any_hits / len(samples), statistics.median(times)


def _evaluate(folder: Path, reader: PlateReader, limit: int) -> list[Outcome]:
    if limit >= len(load_samples(folder)):
        return evaluate(folder, reader)
    with tempfile.TemporaryDirectory() as tmp:  # a subset: the first N samples, linked
        sub = Path(tmp)
        lines = (folder / "labels.csv").read_text(encoding="utf-8").splitlines()
        (sub / "labels.csv").write_text("\n".join(lines[: limit + 1]) + "\n", encoding="utf-8")
        for line in lines[1: limit + 1]:
            (sub / line.split(",")[0]).symlink_to(folder / line.split(",")[0])
        return evaluate(sub, reader)


SETS = {"us": "us", "cn-crops": "cn", "cn-scenes": "cn", "cn-scenes-steep": "cn", "cn-scenes-oblique": "cn",
        "us-tilted": "us", "us-crops": "us", "cn-tilted": "cn", "cn-turned-resized": "cn", "cn-sheared": "cn",
        "us-crops-sheared": "us", "cn-crops-loose": "cn", "foreign-crops": "latin", "foreign-scenes": "latin",
        "emblem-crops": "latin", "emblem-scenes": "latin", "us-grey": "us", "cn-crops-grey": "cn",
        "cn-scenes-grey": "cn", "cn-rendered": "cn"}
MADE = MADE_SETS | FOREIGN_SETS  # sets made from the shared data, or rendered, on the spot
CROP_SETS = ("cn-crops", "us-crops", "cn-tilted", "cn-turned-resized", "cn-sheared", "us-crops-sheared",
             "cn-crops-loose", "foreign-crops", "emblem-crops", "cn-crops-grey", "cn-rendered")


def _line(name: str, summary: dict, note: str) -> str:
    return (f"{name:16} reader : exact {summary['exact_rate']:.1%} ({summary['exact']}/{summary['images']}), "
            f"chars {summary['char_accuracy']:.1%}, median {summary['median_ms']} ms  ({note})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=100_000, help="images per data set (for quick runs)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    args = parser.parse_args()
    config = PlateConfig()
    settings = plate_settings(config)
    made = tempfile.TemporaryDirectory()
    for name in args.sets.split(","):
        spec, folder = SETS[name], DATA / name
        if name in MADE and (DATA / "us").is_dir() and (DATA / "cn-crops").is_dir():
            folder = Path(made.name) / name
            folder.mkdir()
            MADE[name](DATA, folder)
        if not folder.is_dir():
            print(f"{name}: no data at {folder}")
            continue
        reader = PlateReader(formats_from_spec(spec), settings)
        outcomes = _evaluate(folder, reader, args.limit)
        print(_line(name, summarise(outcomes, spec), f"recogniser {reader.recogniser.name}"))
        gate = gate_figures(outcomes, reader.formats, config.max_edit_distance, config.vote_min_confidence)
        print(f"{name:16} gate   : admitted {gate['admitted_rate']:.1%}, as another plate {gate['wrong_plate']}, "
              f"strangers admitted {gate['stranger_admitted_rate']:.1%}  (every label whitelisted, "
              f"{gate['max_edit_distance']} edit allowed; strangers: their own plate left off)")
        other = next(r for r in RECOGNISERS if r != reader.recogniser.name)
        other_reader = PlateReader(formats_from_spec(spec), dataclasses.replace(settings, recogniser=other))
        print(_line(name, summarise(_evaluate(folder, other_reader, args.limit), spec),
                    f"recogniser {other}, not chosen"))
        if name.endswith(("-tilted", "-sheared")):
            levelling = models.plate_geometry.MIN_TILT_DEGREES
            models.plate_geometry.MIN_TILT_DEGREES = 90.0  # no line is tilted that much: none is levelled
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "tilted lines read as found"))
            models.plate_geometry.MIN_TILT_DEGREES = levelling
        if name in ("cn-tilted", "cn-sheared", "us-crops-sheared"):
            levellers = reader._crop_levellers
            reader._crop_levellers = (models.plate_geometry.cut_line,)
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "tilted lines only turned level"))
            reader._crop_levellers = levellers
        if name == "cn-turned-resized":
            min_lean = models.plate.MIN_LEAN
            models.plate.MIN_LEAN = math.inf  # no lean is undone
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "leaning crops read as they are"))
            models.plate.MIN_LEAN = min_lean
        if name == "cn-crops-loose":
            loose_line = models.plate._LOOSE_LINE
            models.plate._LOOSE_LINE = 0.0  # no crop is loose: only the whole crop is read
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "the line not also read"))
            models.plate._LOOSE_LINE = loose_line
        if name.startswith("emblem-"):
            models.plate.emblems = lambda image, line: []  # none is found, none painted over
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "emblems read as they are"))
            models.plate.emblems = models.plate_emblem.emblems
        if name.endswith("-grey"):
            colour = grey_source(DATA, folder)
            print(_line(name, summarise(_evaluate(colour, reader, args.limit), spec), "the same images in colour"))
        if name == "us-crops":
            reader._crop_stretches = (1.0,)
            print(_line(name, summarise(_evaluate(folder, reader, args.limit), spec), "crops read unstretched"))
        count = len(outcomes)
        raw_rate, raw_any, raw_ms = baseline(folder, count, use_det=True, spec=spec)
        print(f"{name:16} raw    : exact {raw_rate:.1%}, median {raw_ms:.1f} ms (RapidOCR()(image), best fitting line)")
        print(f"{name:16} raw any: exact {raw_any:.1%}   (same run, hit if ANY line equals the label: the issue's raw)")
        if name in CROP_SETS:  # crops: recognition alone is the fairer baseline
            rec_rate, _, rec_ms = baseline(folder, count, use_det=False, spec=spec)
            print(f"{name:16} raw rec: exact {rec_rate:.1%}, median {rec_ms:.1f} ms   (RapidOCR, use_det=False)")
    made.cleanup()


if __name__ == "__main__":
    main()
