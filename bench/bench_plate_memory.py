"""Peak memory of the plate reader over a folder of scenes, beside detection without strips, an
arena per onnxruntime session, and onnxruntime's default options.

Run: ``taskset -c 0 .venv/bin/python bench/bench_plate_memory.py [DIR] [--limit N] [--gate-frames]``
(DIR defaults to the shared US scenes; ``--gate-frames`` cuts each scene to 16:9 and scales it to
1280x720, a gate camera's frame, and its baseline detects it in two strips at 1280, as the reader did
before its strip budget held such a frame whole, in place of the whole-detection one).  Each
configuration runs in a fresh process that loads one image at a time, so the peak RSS is the reader's
own (models, tensors, onnxruntime's allocations), not the data's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates" / "us"

_CHILD = """
import json, resource, statistics, sys, time
from pathlib import Path
import cv2
import onnxruntime as ort
if sys.argv[3] in ("default", "own-arenas"):  # baselines: an arena per session, and memory patterns on
    _Options = ort.SessionOptions
    class _Default(_Options):
        def __setattr__(self, name, value):
            if name != "enable_mem_pattern" or sys.argv[3] == "own-arenas":
                super().__setattr__(name, value)
        def add_session_config_entry(self, key, value):
            if key != "session.use_env_allocators":
                super().add_session_config_entry(key, value)
    ort.SessionOptions = _Default
import models.plate_detect
from models.plate import PlateReader
if sys.argv[3] == "whole":  # the baseline: large detection inputs run whole, not in strips
    models.plate_detect._DETECT_TILE_PIXELS = 10**12
if sys.argv[3] == "narrow-strips":  # the baseline: the strip budget before 16:9 frames at 1280 fitted it
    models.plate_detect._DETECT_TILE_PIXELS = 1280 * 640


def gate_frame(image):
    h, w = image.shape[:2]
    width, height = min(w, h * 16 // 9), min(h, w * 9 // 16)  # the largest centred 16:9 cut
    x, y = (w - width) // 2, (h - height) // 2
    return cv2.resize(image[y: y + height, x: x + width], (1280, 720), interpolation=cv2.INTER_AREA)


reader = PlateReader("us")
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for path in sorted(Path(sys.argv[1]).glob("*.jpg"))[: int(sys.argv[2])]:
    image = cv2.imread(str(path))
    if sys.argv[4] == "1":
        image = gate_frame(image)
    began = time.perf_counter()
    reader.read(image)
    times.append((time.perf_counter() - began) * 1000)
print(json.dumps({"images": len(times), "loaded_mb": start_rss // 1024,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  "median_ms": round(statistics.median(times), 1)}))
"""


def measure(folder: Path, limit: int, mode: str, gate_frames: bool) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(limit), mode, str(int(gate_frames))],
                         cwd=root, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--gate-frames", action="store_true", help="scenes cut to 16:9 at 1280x720")
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"no data at {args.folder}")
        return
    # A gate frame at 1280 is already detected whole, so its baseline is the two strips instead.
    strips = ("narrow-strips", "a 16:9 frame at 1280 in two strips") if args.gate_frames else (
        "whole", "detection of large inputs whole")
    modes = [("reader", "reader (memory patterns off, detection in strips, one arena)"), strips,
             ("own-arenas", "an arena per session"), ("default", "onnxruntime defaults")]
    for mode, label in modes:
        result = measure(args.folder, args.limit, mode, args.gate_frames)
        print(f"plate reader peak RSS: {result['peak_mb']} MB after {result['images']} scenes "
              f"(models loaded: {result['loaded_mb']} MB), median {result['median_ms']} ms  {label}")


if __name__ == "__main__":
    main()
