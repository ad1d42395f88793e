"""``edge-agent eval plates DIR``: how well the gate's plate reader reads a labelled folder.

DIR holds ``labels.csv`` with ``image,plate`` and optionally ``x,y,w,h`` (the plate's box).  Each
image goes through the same :class:`models.plate.PlateReader` and settings the gate uses.  The box,
when given, is never shown to the reader for whole scenes (the reader must find the plate); it only
tells whether the found plate is where the label says.  An image whose labelled box covers most of
it, or that has plate-like proportions itself, is a plate crop and is read as one.

An image that cannot be read (missing, damaged, empty, not an image, over
:data:`models.image_io.MAX_IMAGE_PIXELS`) is reported as unreadable with its reason and left out of
every figure: ``images`` counts only the images read.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from agent.config_plates import PlateConfig, plate_formats, plate_settings
from models.image_io import UnreadableImage, read_image
from models.plate_formats import PlateFormat, clean, fold, formats_from_spec, same_plate
from models.plate_match import PlateMatcher, edit_distance
from models.plate_vote import PlateRead, PlateVoter

if TYPE_CHECKING:
    from models.plate import PlateReader


@dataclass(frozen=True)
class Sample:
    image: str
    plate: str
    box: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class Outcome:
    image: str
    expected: str
    read: str
    ms: float
    box_overlaps: bool | None
    confidence: float = 0.0  # the read's; the gate decides no pass below plates.vote_min_confidence
    alternatives: tuple[Mapping[str, float], ...] = ()  # what the recogniser saw at each place
    unreadable: str | None = None  # why the image could not be read; such an outcome is in no figure


class LabelsError(ValueError):
    """labels.csv cannot be read: the operator's file, not a fault of the reader."""


def load_samples(folder: Path) -> list[Sample]:
    """The labelled images of ``folder/labels.csv``.  Spreadsheets save it in other ways than ours:
    Excel on Chinese Windows writes GBK (read here as GB 18030, its superset), European locales
    separate with semicolons, headers come capitalised and Windows paths use backslashes; all of
    these are read the same.  A file that still cannot be read raises :class:`LabelsError` saying
    which line and why."""
    text = _label_text(folder / "labels.csv")
    first_line = text.split("\n", 1)[0]
    delimiter = next((d for d in ",;\t" if d in first_line), ",")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    if not {"image", "plate"} <= columns.keys():
        raise LabelsError(f"labels.csv needs the columns image and plate (optionally x, y, w, h); "
                          f"its header is {first_line.strip()!r}")
    samples = []
    for row in reader:
        value = {key: (row.get(name) or "").strip() for key, name in columns.items()}
        if not value["image"]:
            continue  # a blank line or a spreadsheet's empty trailing row
        box = None
        if all(value.get(k) for k in ("x", "y", "w", "h")):
            try:
                box = tuple(int(float(value[k])) for k in ("x", "y", "w", "h"))
            except ValueError:
                raise LabelsError(f"labels.csv line {reader.line_num}: x, y, w, h must be numbers") from None
        samples.append(Sample(value["image"].replace("\\", "/"), clean(value["plate"]), box))  # type: ignore[arg-type]
    return samples


def labelled_formats(samples: list[Sample]) -> str | None:
    """The narrowest named formats nine in ten of the labels fit (cn, us, then latin), if any: what
    a folder of another country's plates, read without ``--formats``, is read as rather than as
    the default mainland plates, which would read none of them."""
    for name in ("cn", "us", "latin") if samples else ():
        formats = formats_from_spec(name)
        if sum(any(f.matches(clean(s.plate)) for f in formats) for s in samples) >= 0.9 * len(samples):
            return name
    return None


def _label_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise LabelsError(f"{path} is neither UTF-8 nor GBK/GB 18030 text; save it as UTF-8 CSV") from None


def _is_crop(box: tuple[int, int, int, int] | None, width: int, height: int) -> bool:
    return box is not None and box[2] * box[3] >= 0.6 * width * height


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Intersection over the smaller box: the reader's box is the text line, the label the whole plate."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return smaller > 0 and ix * iy / smaller >= 0.5


def evaluate(folder: Path, reader: PlateReader,
             progress: Callable[[int, int, list[Outcome]], None] | None = None,
             samples: list[Sample] | None = None) -> list[Outcome]:
    """Every labelled image read (``samples``, or all of ``folder``'s labels);
    ``progress(done, total, outcomes)`` is called after each."""
    samples = load_samples(folder) if samples is None else samples
    outcomes: list[Outcome] = []
    for sample in samples:
        outcomes.append(_read_sample(folder, sample, reader))
        if progress is not None:
            progress(len(outcomes), len(samples), outcomes)
    return outcomes


def _read_sample(folder: Path, sample: Sample, reader: PlateReader) -> Outcome:
    try:
        image = read_image(folder / sample.image)
    except UnreadableImage as problem:
        return Outcome(sample.image, sample.plate, "", 0.0, None, unreadable=problem.reason)
    height, width = image.shape[:2]
    start = time.perf_counter()
    crop_box = (0, 0, width, height) if _is_crop(sample.box, width, height) else None
    reads = reader.read(image, crop_box)
    ms = (time.perf_counter() - start) * 1000.0
    best = reads[0] if reads else None
    overlaps = None
    if sample.box is not None and not _is_crop(sample.box, width, height):
        overlaps = bool(best and best.box and _overlap(best.box, sample.box))
    if best is None:
        return Outcome(sample.image, sample.plate, "", ms, overlaps)
    return Outcome(sample.image, sample.plate, best.text, ms, overlaps, best.confidence, best.alternatives)


def readable(outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes of images that were read: the only ones any figure is computed on."""
    return [o for o in outcomes if o.unreadable is None]


def summarise(outcomes: list[Outcome], formats: str) -> dict[str, object]:
    """The reader's figures over the images read; the unreadable ones are counted and listed apart."""
    unreadable = [{"image": o.image, "reason": o.unreadable} for o in outcomes if o.unreadable is not None]
    outcomes = readable(outcomes)
    exact = sum(same_plate(o.expected, o.read) for o in outcomes)
    total_chars = sum(len(o.expected) for o in outcomes)
    right_chars = sum(
        max(0, len(o.expected) - edit_distance(fold(o.expected), fold(o.read)))
        if o.expected.isascii() and o.read.isascii() else max(0, len(o.expected) - edit_distance(o.expected, o.read))
        for o in outcomes
    )
    boxed = [o.box_overlaps for o in outcomes if o.box_overlaps is not None]
    n = len(outcomes)
    return {
        "images": n,
        "exact": exact,
        "exact_rate": round(exact / n, 4) if n else 0.0,
        "char_accuracy": round(right_chars / total_chars, 4) if total_chars else 0.0,
        "no_read": sum(not o.read for o in outcomes),
        "median_ms": round(statistics.median(o.ms for o in outcomes), 1) if outcomes else 0.0,
        "box_found_rate": round(sum(boxed) / len(boxed), 4) if boxed else None,
        "formats": formats,
        "unreadable": len(unreadable),
        "unreadable_files": unreadable,
    }


def gate_figures(outcomes: list[Outcome], formats: list[PlateFormat], max_edit_distance: int,
                 min_confidence: float) -> dict[str, object]:
    """What the gate would do with each image's read, every labelled plate on the whitelist.

    Each read is decided as a pass whose frames all read so (the gate's vote, with its confidence
    floor) and matched as the gate matches (``max_edit_distance`` edits, a character taken for
    another only where the recogniser saw the other; a tie with two plates matches neither).
    ``admitted_rate``: the car is let in as its own plate.  ``wrong_plate``: cars let in as
    another whitelisted plate.  ``stranger_admitted_rate``: with the car's own plate left off the
    whitelist, as a stranger's, its read still matches one and the barrier would rise.
    The exact-read rate is what the reader is judged on; these say what one misread costs at the
    gate, and depend on how alike the folder's plates are (a car park's are more alike).
    """
    outcomes = readable(outcomes)
    whitelist = PlateMatcher((o.expected for o in outcomes), max_edit_distance)
    admitted = wrong = strangers = 0
    for o in outcomes:
        voter = PlateVoter(formats, min_reads=1, min_confidence=min_confidence)
        voter.add(PlateRead(o.read, o.confidence, alternatives=o.alternatives))
        decision = voter.decide()
        if decision is None:
            continue
        matched = whitelist.match(decision.text, decision.alternatives)
        if matched is not None:
            if same_plate(matched, o.expected):
                admitted += 1
            else:
                wrong += 1
        own = functools.partial(same_plate, o.expected)  # same_plate is symmetric
        strangers += whitelist.match(decision.text, decision.alternatives, skip=own) is not None
    n = len(outcomes)
    return {
        "max_edit_distance": max_edit_distance,
        "admitted_rate": round(admitted / n, 4) if n else 0.0,
        "wrong_plate": wrong,
        "stranger_admitted_rate": round(strangers / n, 4) if n else 0.0,
    }


def _load_config(path: str | None) -> PlateConfig:
    if not path:
        return PlateConfig()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return PlateConfig.model_validate(data.get("plates") or {})


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not (folder / "labels.csv").is_file():
        print(f"error: {folder / 'labels.csv'} not found", file=sys.stderr)
        return 2
    try:
        samples = load_samples(folder)
        config = _load_config(args.config)
        spec = args.formats or (None if args.config else labelled_formats(samples))
        formats = formats_from_spec(spec) if spec else plate_formats(config)
    except Exception as error:  # a bad labels file, regex or config is the operator's error, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    if spec and not args.formats:
        print(f"note: no --formats or --config given; the labels are {spec} plates, so they are read as such "
              "(--formats chooses)", file=sys.stderr)
    unfit = [s.plate for s in samples if not any(f.matches(clean(s.plate)) for f in formats)]
    if unfit:
        print(f"warning: {len(unfit)} of {len(samples)} labels fit none of the formats, so they cannot be read "
              f"exactly (e.g. {', '.join(unfit[:3])}); --formats chooses", file=sys.stderr)
    from models.plate import PlateReader  # OpenCV and onnxruntime load only when a command runs

    reader = PlateReader(formats, plate_settings(config))
    outcomes = evaluate(folder, reader, _show_progress if sys.stderr.isatty() else None, samples)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    summary = summarise(outcomes, spec or ",".join(config.formats))
    summary.update(gate_figures(outcomes, formats, config.max_edit_distance, config.vote_min_confidence))
    if args.details:
        with open(args.details, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "expected", "read", "ms", "unreadable"])
            for o in outcomes:
                writer.writerow([o.image, o.expected, o.read, f"{o.ms:.1f}", o.unreadable or ""])
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    unreadable = [o for o in outcomes if o.unreadable is not None]
    for key, value in summary.items():
        if key not in ("unreadable", "unreadable_files"):
            print(f"{key:>15}: {value}")
    print(f"{'unreadable':>15}: {len(unreadable)}" + (" (left out of every figure above)" if unreadable else ""))
    for o in unreadable:
        print(f"  unreadable {o.image}: {o.unreadable}")
    return 0


def _show_progress(done: int, total: int, outcomes: list[Outcome]) -> None:
    """One self-overwriting line on a terminal: a long run shows it is alive and how it is going."""
    exact = sum(same_plate(o.expected, o.read) for o in outcomes)
    print(f"\r{done}/{total} images, {exact / done:.1%} exact so far", end="", file=sys.stderr, flush=True)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plates", help="read a labelled folder of plate images and score it")
    parser.add_argument("dir", help="folder with labels.csv (image,plate[,x,y,w,h]) and the images")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--formats", help="plate formats: cn, us, latin, cn,us or a regex (default: from "
                        "--config; without it, the first of cn, us, latin that nine in ten labels fit)")
    parser.add_argument("--details", metavar="FILE", help="write image,expected,read,ms per image to this CSV")
    parser.add_argument("--config", metavar="FILE", help="agent YAML whose plates: section sets the reader")
    parser.set_defaults(func=run)
