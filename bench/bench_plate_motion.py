"""What motion gating saves at a barrier: the plate pass with and without it, on the same videos.

Run: ``taskset -c 0 .venv/bin/python bench/bench_plate_motion.py``.  Uses the simulation's generated
barrier videos (960x540, 15 fps, with sensor noise): 20 s of an empty lane, and 20 s in which two cars
drive up, wait and leave.  Both are decoded by OpenCV and fed at 3 frames a second, as a Pi 4 keeps up
with.  Prints the median cost of a motion check beside a plate read of an empty frame (as configured;
without the last look; with its 1280 looks run in two strips, as before a 16:9 frame at 1280 was
detected whole) and of a frame with a car (the whole frame, and only the part holding the simulation
camera's ``lane``), then, per video, the reader's CPU time with gating on (the default) and off, and
the decisions each made (they must agree).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from agent.config_plates import PlateConfig
from agent.simulation_media import cjk_font, generate_lane_video, render_plate
from agent.vision import PlatePass
from models.area import Area
from models.motion import MotionGate
from models.plate import PlateReader
from models.plate_settings import PlateSettings
from models.plate_vote import PlateDecision

FPS = 15.0
EVERY = 5  # 3 frames a second


class Decisions:
    def __init__(self) -> None:
        self.decided: list[str] = []

    def plate_decided(self, barrier: str, decision: PlateDecision) -> None:
        self.decided.append(decision.text)


def decoded(path: Path) -> list[tuple[np.ndarray, float]]:
    capture = cv2.VideoCapture(str(path))
    frames: list[tuple[np.ndarray, float]] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append((frame, len(frames) / FPS))
    capture.release()
    return frames


def median_ms(call: Callable[[np.ndarray], object], frames: list[np.ndarray]) -> float:
    times = []
    for frame in frames:
        began = time.perf_counter()
        call(frame)
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2)


def in_strips(reader: PlateReader) -> PlateReader:
    """The reader with the detection budget it had before a 16:9 frame at 1280 fitted whole."""
    for detector in (reader._detector, reader._last_detector):
        if detector is not None:
            detector.tile_pixels = 1280 * 640
    return reader


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        videos = {"empty lane": Path(tmp) / "empty.avi", "two cars": Path(tmp) / "cars.avi"}
        generate_lane_video(videos["empty lane"], [], FPS)
        generate_lane_video(videos["two cars"], [render_plate(text, cjk_font()) for text in ("京A12345", "沪B54321")],
                            FPS)
        frames = {name: decoded(path) for name, path in videos.items()}
    reader = PlateReader("cn")
    motion = MotionGate()
    simulation = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "simulation.yaml").read_text())
    lane = Area(next(c["lane"] for c in simulation["hardware"]["cameras"] if c.get("lane")))
    empty = [frame for frame, _ in frames["empty lane"]]
    with_car = [frame for frame, ts in frames["two cars"] if 5.0 <= ts < 8.0][::9]
    print(json.dumps({"median_ms": {
        "motion_check": median_ms(lambda f: motion.update(f, time.monotonic()), empty[:150]),
        "read_empty_frame": median_ms(reader.read, empty[::30]),
        "read_empty_frame_without_last_look": median_ms(
            PlateReader("cn", PlateSettings(last_look=False)).read, empty[::30]),
        "read_empty_frame_in_strips": median_ms(in_strips(PlateReader("cn")).read, empty[::30]),
        "read_frame_with_car": median_ms(reader.read, with_car),
        "read_frame_with_car_in_lane": median_ms(lambda f: reader.read(f, within=lane.bounds(f.shape)), with_car)}}))
    for name, video in frames.items():
        for gated in (True, False):
            decisions = Decisions()
            plate_pass = PlatePass(reader, PlateConfig(read_on_motion_only=gated), "car-in", decisions)  # type: ignore[arg-type]
            began = time.process_time()
            for frame, ts in video[::EVERY]:
                plate_pass(frame, ts)
            print(json.dumps({"video": name, "read_on_motion_only": gated, "video_s": round(len(video) / FPS, 1),
                              "frames_read": plate_pass.frames_read, "frames_skipped": plate_pass.frames_skipped,
                              "cpu_s": round(time.process_time() - began, 2), "decided": decisions.decided},
                             ensure_ascii=False))


if __name__ == "__main__":
    main()
