"""Recognition workers: one thread per camera, newest frame in, decisions out.

A worker always takes the camera's *latest* frame and skips the ones it could not keep up with, so
a hot, throttled Pi falls behind gracefully instead of queueing seconds of stale video. Cameras that
watch a gate run the face pipeline; cameras that watch a barrier run the plate pipeline. Nothing here
touches GPIO directly and nothing on the fire path waits for it.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agent.access import AccessController
from agent.hardware import Hardware
from models.plate_formats import clean
from models.plate_match import edit_distance

if TYPE_CHECKING:
    from agent.agent_config import AgentConfig
    from agent.config_faces import FaceConfig
    from agent.config_plates import PlateConfig
    from drivers.camera import Camera
    from models.area import Area
    from models.face import FaceEngine
    from models.plate import PlateReader
    from models.plate_vote import PlateRead

log = logging.getLogger("edge_agent.vision")

FrameHandler = Callable[[np.ndarray, float], None]


class VisionWorker:
    def __init__(self, camera: Camera, handle: FrameHandler, name: str) -> None:
        self.camera = camera
        self.handle = handle
        self.name = name
        self.frame_ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vision-{name}", daemon=True)
        self.frames_processed = 0
        self.busy_seconds = 0.0

    def figures(self) -> dict[str, float | int]:
        """Since start: frames handled and the time spent on them; a plate lane adds its skips."""
        figures: dict[str, float | int] = {"frames_processed": self.frames_processed,
                                           "busy_s": round(self.busy_seconds, 1)}
        if isinstance(self.handle, PlatePass):
            figures["plate_frames_read"] = self.handle.frames_read
            figures["plate_frames_still"] = self.handle.frames_skipped
            widths = list(self.handle.plate_widths)  # a copy: the worker appends while status reads
            if widths:
                figures["plate_width_px"] = round(statistics.median(widths))
        return figures

    def notify(self, frame: np.ndarray, ts: float) -> None:
        """The camera's on_frame hook: only wakes the worker, never copies or queues the frame."""
        self.frame_ready.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.frame_ready.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_ts = -1.0
        while not self._stop.is_set():
            self.frame_ready.wait(0.5)
            self.frame_ready.clear()
            latest = self.camera.latest()
            if latest is None or latest[1] == last_ts:
                continue
            frame, last_ts = latest
            started = time.perf_counter()
            try:
                self.handle(frame, last_ts)
            except Exception:
                # One bad frame must not end recognition at this gate; a real bug logs every time.
                log.exception("recognition on camera %s failed", self.name)
                self._stop.wait(1.0)
            self.frames_processed += 1
            self.busy_seconds += time.perf_counter() - started


class Models:
    """The recognition models, loaded once per process on first use and kept across config reloads
    (dlib's and PP-OCR's weights take seconds to load and tens of MB to hold)."""

    def __init__(self) -> None:
        self._face_engine: FaceEngine | None = None
        self._face_key: object = None
        self._plate_reader: PlateReader | None = None
        self._plate_key: object = None
        self._lock = threading.Lock()

    def face_engine(self, faces: FaceConfig) -> FaceEngine:
        from agent.config_faces import face_settings, needs_eye_landmarks
        from models.face import FaceEngine

        key = (faces.detect_width, faces.upsample, faces.min_face_px, faces.min_sharpness, faces.max_yaw,
               needs_eye_landmarks(faces))
        with self._lock:
            if self._face_engine is None or self._face_key != key:
                self._face_engine = FaceEngine.from_settings(face_settings(faces),
                                                             with_eye_landmarks=needs_eye_landmarks(faces))
                self._face_key = key
            return self._face_engine

    def plate_reader(self, plates: PlateConfig) -> PlateReader:
        from agent.config_plates import plate_formats, plate_settings
        from models.plate import PlateReader

        key = plates.model_dump_json()
        with self._lock:
            if self._plate_reader is None or self._plate_key != key:
                self._plate_reader = PlateReader(plate_formats(plates), plate_settings(plates))
                self._plate_key = key
            return self._plate_reader


def face_handler(models: Models, faces: FaceConfig, gate: str, access: AccessController) -> FrameHandler:
    from agent.access import gate_gallery
    from agent.config_faces import face_settings
    from models.face_track import FacePipeline

    pipeline = FacePipeline(models.face_engine(faces), lambda: access.access_list().gallery(),
                            face_settings(faces, gate))
    seen: list[object] = [None]  # the gallery the thresholds were derived for

    def handle(frame: np.ndarray, ts: float) -> None:
        # The security level's thresholds depend on how many templates this gate matches against:
        # recomputed whenever the whitelist (hence its cached gallery object) changes.
        gallery = access.access_list().gallery()
        if gallery is not seen[0]:
            seen[0] = gallery
            pipeline.s = face_settings(faces, gate, templates=gate_gallery(access.access_list(), gate)[1])
        for decision in pipeline.process(frame, ts):
            access.face_decided(gate, decision)

    return handle


class PlatePass:
    """Reads while a vehicle is in view, votes, and decides once per pass.

    A pass ends when no plate has been read for ``idle_seconds`` (checked on every frame, read or
    skipped); the same plate is not decided again within ``repeat_seconds`` (a car waiting at the
    barrier is one pass, not twenty). Before that idle gap, a decided pass gives way to a new one
    only on evidence of another vehicle: a read more than ``NEW_PLATE_EDITS`` edits from the
    decided plate and unlike the last two reads (a car right behind), or the barrier's safety loop
    having seen a vehicle and cleared since the decision (the decided car drove through). A waiting
    car misread, even several frames running, stays in its pass: one decision, not a second one.

    With ``plates.read_on_motion_only`` a frame is read only when something moved in it, a pass is
    under way, or the barrier's safety loop sees a vehicle (a car that stopped before the camera
    noticed it); an empty, still lane costs a motion check instead of a plate read.

    With an ``area`` (the camera's ``lane``), plates are looked for only in the part of the picture
    that holds it, a plate counts only if its centre lies in it, and so does motion: a resident's
    car parked across the road is not read as one waiting at the barrier."""

    # A read this many edits or fewer from the decided plate may be that car misread (rain,
    # headlights), so it alone does not start a new pass.
    NEW_PLATE_EDITS = 2

    def __init__(self, reader: PlateReader, plates: PlateConfig, barrier: str, access: AccessController,
                 idle_seconds: float = 1.5, repeat_seconds: float = 30.0,
                 vehicle_present: Callable[[], bool] | None = None, area: Area | None = None) -> None:
        from agent.config_plates import plate_formats
        from models.motion import MotionGate
        from models.plate_vote import PlateVoter

        self.reader = reader
        self.area = area
        self.motion = MotionGate(plates.motion_pixel_delta, plates.motion_fraction, area=area) \
            if plates.read_on_motion_only else None
        self.vehicle_present = vehicle_present or (lambda: False)
        self.frames_read = 0
        self.frames_skipped = 0  # still frames of an empty lane
        # How wide each of the last passes' plates grew (the car at its nearest): a camera aimed too
        # wide or too far off shows here (edge-agent status) before residents are refused.
        self.plate_widths: deque[int] = deque(maxlen=50)
        self._pass_widest = 0
        self.barrier = barrier
        self.access = access
        self.voter = PlateVoter(plate_formats(plates), min_reads=plates.frames_to_vote,
                                min_confidence=plates.vote_min_confidence)
        self.idle_seconds = idle_seconds
        self.repeat_seconds = repeat_seconds
        self._last_read = -math.inf  # no plate read yet
        self._last_decided: tuple[str, float] | None = None
        # The safety loop since this pass was decided: whether it has seen a vehicle, and whether
        # that vehicle has cleared it since (the decided car has driven through).
        self._loop_seen_since_decision = False
        self._decided_car_left = False

    def __call__(self, frame: np.ndarray, ts: float) -> None:
        # Ended here, not only on a read frame without a plate: once the lane is still, frames are
        # skipped unread, and a pass left open would keep the voter decided, so the same car coming
        # back later would be read but never decided again.
        if len(self.voter) and ts - self._last_read > self.idle_seconds:
            self._end_pass()
        vehicle_on_loop = self.vehicle_present()  # a GPIO read: cheap enough for every frame
        if self.voter.decided:
            if vehicle_on_loop:
                self._loop_seen_since_decision = True
            elif self._loop_seen_since_decision:
                self._decided_car_left = True
        moved = self.motion.update(frame, ts) if self.motion is not None else True
        if not (moved or ts - self._last_read <= self.idle_seconds or vehicle_on_loop):
            self.frames_skipped += 1
            return
        self.frames_read += 1
        reads = read_plates_in_lane(self.reader, frame, self.area)
        if not reads:
            return
        self._last_read = ts
        best = reads[0]  # the reader's ranking: a state name or a badge reads surer than a plate, but less like one
        if len(self.voter) and (self._decided_car_left or self._another_plate_behind(best.text)):
            self._end_pass()  # another vehicle right behind the last: a new pass
        if best.box is not None:
            self._pass_widest = max(self._pass_widest, best.box[2])
        self.voter.add(best)
        decision = self.voter.decide()
        if decision is None:
            return
        # From here the voter gives no more in this pass, even if repeat_seconds drops this decision.
        if self._last_decided and self._last_decided[0] == decision.text and \
                ts - self._last_decided[1] < self.repeat_seconds:
            return
        self._last_decided = (decision.text, ts)
        self.access.plate_decided(self.barrier, decision)

    def _another_plate_behind(self, text: str) -> bool:
        """Whether ``text`` is clearly not the last decided plate, nor what the last two frames read.

        A plate one or two characters off the decided one is not enough: a still car gives
        near-identical frames, so a misread can repeat, and a pass started on it would decide the
        waiting car a second time (as a resident's plate, perhaps). A neighbour's car that close
        gets its own pass once the decided car has cleared the safety loop."""
        if self._last_decided is None:
            return False
        return edit_distance(clean(text), clean(self._last_decided[0])) > self.NEW_PLATE_EDITS and \
            all(r.text != text for r in self.voter.recent(2))

    def _end_pass(self) -> None:
        if self._pass_widest:
            self.plate_widths.append(self._pass_widest)
        self._pass_widest = 0
        self.voter.reset()
        self._loop_seen_since_decision = self._decided_car_left = False


def read_plates_in_lane(reader: PlateReader, frame: np.ndarray, area: Area | None) -> list[PlateRead]:
    """The plates in ``frame``, best first; with a lane, only those whose centre lies in it."""
    if area is None:
        return reader.read(frame)
    reads = reader.read(frame, within=area.bounds(frame.shape))
    return [r for r in reads if r.box is not None
            and area.contains(r.box[0] + r.box[2] / 2, r.box[1] + r.box[3] / 2, frame.shape)]


def start_workers(config: AgentConfig, hardware: Hardware, access: AccessController, models: Models,
                  on_failure: Callable[[str, Exception], None] | None = None) -> list[VisionWorker]:
    """One worker per camera that watches a gate (faces) or a barrier (plates).

    A camera whose recognition cannot start (a model that does not load) is passed to
    ``on_failure`` and left without a worker: the other lanes, the buttons and the fire release go on.
    """
    from models.area import Area

    workers = []
    for camera_config in config.hardware.cameras:
        lane = camera_config.gate
        if lane is None or camera_config.name not in hardware.cameras:
            continue
        try:
            if lane in hardware.gates:
                handle = face_handler(models, config.faces, lane, access)
            elif lane in hardware.barriers:
                barrier = hardware.barriers[lane]
                area = Area(camera_config.lane) if camera_config.lane else None
                handle = PlatePass(models.plate_reader(config.plates), config.plates, lane, access,
                                   vehicle_present=lambda barrier=barrier: barrier.vehicle_present, area=area)
            else:
                continue
        except Exception as exc:
            if on_failure is None:
                raise
            on_failure(camera_config.name, exc)
            continue
        camera = hardware.cameras[camera_config.name]
        worker = VisionWorker(camera, handle, camera_config.name)
        hardware.frame_hooks.setdefault(camera_config.name, []).append(worker.notify)
        worker.start()
        workers.append(worker)
    return workers
