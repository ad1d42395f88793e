"""``edge-agent eval faces DIR``: measure face recognition on a labelled folder with the gate's settings.

Two layouts:

* ``DIR/gallery/<person>/*`` and ``DIR/probes/<person>/*``: the gallery is enrolled into an in-memory
  gallery exactly as residents are, every probe is identified. A probe person without a gallery folder
  is a stranger.
* ``DIR/pairs.csv`` (``image_a,image_b,same``, paths relative to DIR): one-to-one verification.

A still probe is a pass with one encoding, judged by the same per-encoding rule the gate's k-of-n vote
counts (distance within the tolerance and the margin over the next person); the vote itself needs
several frames and is exercised by ``bench/bench_faces.py`` on video. Images may be JPEG, PNG or PGM,
grey or colour, of any shape up to :data:`models.image_io.MAX_IMAGE_PIXELS`.

A file that cannot be read (damaged, empty, too large, not an image, not a file, not permitted) is
reported as unreadable with its reason and left out of every figure: it says nothing about
recognition. "No usable face" counts only images that were read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from agent.config_faces import FaceConfig, face_settings
from models import image_io
from models.image_io import UnreadableImage, image_files

GALLERY_KEYS = (
    "residents",
    "residents_admitted",
    "residents_refused",
    "wrong_person",
    "strangers",
    "strangers_admitted",
    "no_face",
    "unreadable",
    "unreadable_files",
)
PAIRS_KEYS = ("pairs", "accuracy", "false_accepts", "false_rejects", "no_face", "unreadable_pairs", "unreadable",
              "unreadable_files")
LEFT_OUT = "left out of the figures above"


def read_image(path: Path) -> np.ndarray:
    """The image as stored (grey stays grey), within the limits; UnreadableImage otherwise. Enrolment
    reads photos with this too, so that templates and probes are decoded alike."""
    return image_io.read_image(path, unchanged=True)


def unreadable_list(root: Path, problems: list[UnreadableImage]) -> list[dict[str, str]]:
    """Each unreadable file once, relative to the evaluated folder, with its reason."""
    seen: dict[str, str] = {}
    for problem in problems:
        name = str(problem.path.relative_to(root)) if problem.path.is_relative_to(root) else str(problem.path)
        seen.setdefault(name, problem.reason)
    return [{"file": name, "reason": reason} for name, reason in seen.items()]


def load_face_config(path: Path | None) -> FaceConfig:
    """FaceConfig defaults, or the ``faces:`` section of an agent YAML file."""
    if path is None:
        return FaceConfig()
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return FaceConfig.model_validate(document.get("faces") or {})


@dataclass
class Probe:
    person: str
    resident: bool
    path: Path
    verdict: str | None  # person id admitted, "" refused, None no usable face
    distance: float


class Evaluator:
    def __init__(self, config: FaceConfig) -> None:
        from models.face import FaceEngine

        self.config = config
        self.settings = face_settings(config)
        self.engine = FaceEngine.from_settings(self.settings, enrol_jitters=config.enrol_jitters)
        self.unreadable: list[UnreadableImage] = []

    def encoding(self, path: Path) -> np.ndarray | None:
        """The largest usable face's descriptor, as the gate would encode it (no jitter); None when
        the image has no usable face. UnreadableImage when it cannot be read."""
        image = read_image(path)
        for box in self.engine.detect(image):
            sample = self.engine.encode(image, box)
            if sample is not None:
                return sample.encoding
        return None

    def gallery_probes(self, root: Path) -> tuple[dict[str, object], list[Probe]]:
        from models.face import Gallery

        templates: list[tuple[str, np.ndarray]] = []
        for folder in sorted(p for p in (root / "gallery").iterdir() if p.is_dir()):
            for path in image_files(folder):
                try:
                    image = read_image(path)
                except UnreadableImage as problem:
                    self.unreadable.append(problem)
                    continue
                templates.extend((folder.name, t) for t in self.engine.templates_from_image(image))
        gallery = Gallery.from_templates(templates)
        self.settings = face_settings(self.config, templates=len(gallery))  # the level's threshold at this size
        enrolled = {f.name for f in (root / "gallery").iterdir() if f.is_dir()}
        probes: list[Probe] = []
        for folder in sorted(p for p in (root / "probes").iterdir() if p.is_dir()):
            for path in image_files(folder):
                try:
                    encoding = self.encoding(path)
                except UnreadableImage as problem:  # not a probe: it says nothing about recognition
                    self.unreadable.append(problem)
                    continue
                if encoding is None:
                    probes.append(Probe(folder.name, folder.name in enrolled, path, None, float("nan")))
                    continue
                match = gallery.match(encoding)
                admitted = match.accepts(self.settings.tolerance, self.settings.margin)
                verdict = match.person_id if admitted and match.person_id else ""
                probes.append(Probe(folder.name, folder.name in enrolled, path, verdict, match.distance))
        summary = dict.fromkeys(GALLERY_KEYS[:-2], 0)
        for probe in probes:
            resident = probe.resident
            summary["residents" if resident else "strangers"] += 1
            if probe.verdict is None:
                summary["no_face"] += 1
                if resident:
                    summary["residents_refused"] += 1
            elif not resident:
                summary["strangers_admitted"] += bool(probe.verdict)
            elif probe.verdict == probe.person:
                summary["residents_admitted"] += 1
            elif probe.verdict:
                summary["wrong_person"] += 1
            else:
                summary["residents_refused"] += 1
        files = unreadable_list(root, self.unreadable)
        return {**summary, "unreadable": len(files), "unreadable_files": files}, probes

    def pairs(self, root: Path) -> dict[str, object]:
        cache: dict[str, np.ndarray | UnreadableImage | None] = {}
        counts = {"pairs": 0, "correct": 0, "false_accepts": 0, "false_rejects": 0, "no_face": 0, "unreadable_pairs": 0}
        with (root / "pairs.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                a, b = row["image_a"].strip(), row["image_b"].strip()
                same = row["same"].strip() in ("1", "true", "True", "yes")
                for name in (a, b):
                    if name not in cache:
                        try:
                            cache[name] = self.encoding(root / name)
                        except UnreadableImage as problem:
                            self.unreadable.append(problem)
                            cache[name] = problem
                ea, eb = cache[a], cache[b]
                if isinstance(ea, UnreadableImage) or isinstance(eb, UnreadableImage):
                    counts["unreadable_pairs"] += 1  # cannot be judged at all: not a pair of the figures
                    continue
                counts["pairs"] += 1
                if ea is None or eb is None:
                    counts["no_face"] += 1  # cannot be verified: judged "different", as the gate would
                    said_same = False
                else:
                    said_same = float(np.linalg.norm(ea - eb)) <= self.settings.tolerance
                counts["correct"] += said_same == same
                counts["false_accepts"] += said_same and not same
                counts["false_rejects"] += same and not said_same
        total = counts.pop("pairs")
        correct = counts.pop("correct")
        files = unreadable_list(root, self.unreadable)
        return {"pairs": total, "accuracy": round(correct / total, 4) if total else 0.0, **counts,
                "unreadable": len(files), "unreadable_files": files}


def run_scale(config: FaceConfig, args: argparse.Namespace) -> int:
    """Gallery scale on cached encodings: per level (and today's fixed 0.5 rule), the report half."""
    from agent.eval_scale import Encodings, gallery_attempts, half
    from models.face_calibration import LEVEL_RATES, level_threshold

    encodings = Encodings.load(Path(args.encodings))
    more = half(encodings, "calibration") if args.calibration_strangers else None
    attempts = gallery_attempts(half(encodings, "report"), args.residents, seed=args.seed, more_strangers=more)
    levels = [args.security] if args.security else list(LEVEL_RATES)
    rows = {"today_0.5": {"tolerance": 0.5, **attempts.figures(0.5, config.margin)}}
    for level in levels:
        t = config.tolerance if config.tolerance is not None else level_threshold(level, attempts.templates)
        rows[level] = {"tolerance": round(t, 4), "target": LEVEL_RATES[level], **attempts.figures(t, config.margin)}
    if args.json:
        print(json.dumps({"residents": attempts.residents, "templates": attempts.templates, "levels": rows}))
        return 0
    strangers = " (+ the calibration half's photos as strangers)" if more else ""
    print(f"{attempts.residents} residents ({attempts.templates} templates), people of the report half{strangers}, "
          f"seed {args.seed}, margin {config.margin}")
    for name, r in rows.items():
        print(f"  {name:<9} threshold {r['tolerance']:.3f}: strangers {r['strangers_admitted']}/{r['strangers']}"
              f", residents {r['residents_admitted']}/{r['residents']}, as someone else {r['wrong_person']}")
    return 0


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    try:
        config = load_face_config(Path(args.config) if args.config else None)
        if args.security:
            config = config.model_copy(update={"security": args.security})
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"cannot read the faces settings: {error}", file=sys.stderr)
        return 78
    if args.encodings:
        return run_scale(config, args)
    has_pairs = (root / "pairs.csv").is_file()
    has_gallery = (root / "gallery").is_dir() and (root / "probes").is_dir()
    if not has_pairs and not has_gallery:
        print(f"{root}: expected gallery/ and probes/ folders or a pairs.csv", file=sys.stderr)
        return 2
    evaluator = Evaluator(config)
    if has_gallery and not getattr(args, "pairs", False):
        summary, probes = evaluator.gallery_probes(root)
        if args.json:
            print(json.dumps(summary))
            return 0
        s = evaluator.settings
        print(f"level {config.security}, tolerance {s.tolerance:.3f}, margin {s.margin}")
        for probe in probes:
            if probe.verdict is None:
                print(f"  no face   {probe.path.relative_to(root)}")
            elif probe.verdict != probe.person and (probe.resident or probe.verdict):
                shown = probe.verdict or "refused"
                print(f"  {shown:<9} {probe.path.relative_to(root)} (distance {probe.distance:.3f})")
        print(
            f"residents: {summary['residents_admitted']}/{summary['residents']} admitted, "
            f"{summary['residents_refused']} refused, {summary['wrong_person']} as someone else"
        )
        print(f"strangers: {summary['strangers_admitted']}/{summary['strangers']} admitted")
        print(f"no usable face: {summary['no_face']}")
        print_unreadable(summary["unreadable_files"])
        return 0
    result = evaluator.pairs(root)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"level {config.security}, tolerance {evaluator.settings.tolerance:.3f}")
    print(f"pairs: {result['pairs']}, accuracy {result['accuracy']:.2%}")
    print(f"false accepts: {result['false_accepts']}, false rejects: {result['false_rejects']}")
    print(f"no usable face: {result['no_face']}")
    if result["unreadable_pairs"]:
        print(f"pairs with an unreadable image: {result['unreadable_pairs']} ({LEFT_OUT})")
    print_unreadable(result["unreadable_files"])
    return 0


def print_unreadable(files: list[dict[str, str]]) -> None:
    """How many files could not be read, and each with why."""
    print(f"unreadable: {len(files)} file(s)" + (f", {LEFT_OUT}" if files else ""))
    for entry in files:
        print(f"  unreadable {entry['file']}: {entry['reason']}")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``faces`` to the ``eval`` command group."""
    parser = commands.add_parser("faces", help="measure face recognition on a labelled folder")
    parser.add_argument("dir", help="folder with gallery/ and probes/, or with pairs.csv")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--config", help="agent YAML file whose faces: section is used (default: built-in)")
    parser.add_argument("--pairs", action="store_true", help="use pairs.csv even when gallery/ and probes/ exist")
    parser.add_argument("--security", choices=("low", "normal", "high", "strict"),
                        help="security level (default: the config's faces.security, else normal)")
    parser.add_argument("--encodings", help="gallery scale on a cache of bench/face_encodings.py (dir: its people "
                        "folder); per level, on the report half of the people")
    parser.add_argument("--residents", type=int, default=130, help="with --encodings: residents enrolled (2 photos)")
    parser.add_argument("--seed", type=int, default=1, help="with --encodings: which residents are drawn")
    parser.add_argument("--calibration-strangers", action="store_true",
                        help="with --encodings: add the calibration half's photos as strangers (1,000 residents "
                        "leave only ~420 stranger photos in the report half)")
    parser.set_defaults(func=run)
