"""Camera driver: one thread per camera that keeps frames flowing, notices when they stop and reconnects.

The backends (picamera2, OpenCV devices and streams, video-file and image-folder replay) are in
:mod:`drivers.camera_sources`; this module adds what every camera needs on a building's network:

* frames are handed to ``on_frame(frame, monotonic_ts)`` and kept as :meth:`Camera.latest` (only
  the newest one: a slow consumer skips frames, it never builds a queue);
* a stall (no frame for ``stall_seconds``) or an open/read error calls ``on_fault(reason)`` once per
  outage, then the camera is reopened with exponential backoff and jitter until frames flow again,
  which calls ``on_recovered()`` once;
* a watchdog thread reports the stall on time even when the driver is stuck inside ``read()``.

Frames are shared between ``on_frame`` and ``latest()``: treat them as read-only (copy to draw).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent.config import CameraConfig
from drivers.camera_sources import CameraError, FrameSource, open_source, redact

__all__ = ["Camera", "CameraError", "CameraHealth", "FrameSource", "grab_one", "open_source"]

log = logging.getLogger("edge_agent.camera")

State = Literal["starting", "streaming", "fault", "ended", "stopped"]
FPS_WINDOW_SECONDS = 3.0
# A callback failing on every frame logs once per interval, not 30 times a second.
CALLBACK_LOG_INTERVAL = 30.0


@dataclass(frozen=True)
class CameraHealth:
    name: str
    state: State
    fps: float  # measured over the last few seconds
    last_frame_age: float | None  # seconds since the last frame, None before the first
    frames: int  # frames delivered since start
    reconnects: int  # times the source was opened again after the first attempt
    detail: str  # human-readable reason for a fault


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"


class Camera:
    def __init__(
        self,
        config: CameraConfig,
        on_frame: Callable[[np.ndarray, float], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
        source: FrameSource | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.config = config
        self.name = config.name
        self.source: FrameSource = source if source is not None else open_source(config)
        self._on_frame = on_frame
        self._on_fault = on_fault
        self._on_recovered = on_recovered
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self._random = random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state: State = "starting"
        self._detail = ""
        self._frames = 0
        self._reconnects = 0
        self._latest: tuple[np.ndarray, float] | None = None
        self._frame_times: deque[float] = deque(maxlen=256)
        self._in_outage = False  # a fault was reported and frames have not flowed since
        # Stall clock: time of the last frame or connection attempt; None while not expecting frames.
        self._progress_at: float | None = None
        self._reconnect_requested = False  # set by the watchdog, honoured by the reader after read() returns
        self._callback_logged_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    # --- public -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"camera {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._watchdog = threading.Thread(
            target=self._watch, name=f"camera-{self.name}-watchdog", daemon=True
        )
        self._thread.start()
        self._watchdog.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout)
        if self._thread is not None and self._thread.is_alive():
            # Closing from here could crash a driver that is mid-read; the thread closes it on return.
            log.warning("camera %s: driver still blocked after %.1f s; it closes when the read returns",
                        self.name, timeout)
        with self._lock:
            self._state = "stopped"

    def health(self) -> CameraHealth:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._frame_times if now - t <= FPS_WINDOW_SECONDS]
            span = recent[-1] - recent[0] if len(recent) >= 2 else 0.0
            return CameraHealth(
                name=self.name,
                state=self._state,
                fps=(len(recent) - 1) / span if span > 0 else 0.0,
                last_frame_age=None if self._latest is None else now - self._latest[1],
                frames=self._frames,
                reconnects=self._reconnects,
                detail=self._detail,
            )

    def latest(self) -> tuple[np.ndarray, float] | None:
        return self._latest

    @property
    def in_outage(self) -> bool:
        """A fault was reported and no frame has come since."""
        with self._lock:
            return self._in_outage

    def carry_outage(self) -> None:
        """Take over the outage of the camera a reload replaced: the platform hears no second fault
        while it still fails, and one recovery with its first frame."""
        with self._lock:
            self._in_outage = True

    # --- camera thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        failures_in_a_row = 0
        first_attempt = True
        try:
            while not self._stop.is_set():
                if not first_attempt:
                    with self._lock:
                        self._reconnects += 1
                first_attempt = False
                self._arm_stall_clock()
                try:
                    self.source.open()
                except Exception as exc:
                    self._fault(describe(exc))
                else:
                    outcome, delivered = self._stream()
                    self._close_source()
                    if outcome != "fault":
                        if outcome == "ended":
                            with self._lock:
                                self._state = "ended"
                            log.info("camera %s: replay reached the end", self.name)
                        return
                    if delivered:
                        failures_in_a_row = 0
                self._backoff(failures_in_a_row)
                failures_in_a_row += 1
        except Exception:  # a bug here must not silently leave the node blind
            log.exception("camera %s: camera thread crashed", self.name)
            self._fault("camera thread crashed (see log)")
        finally:
            self._disarm_stall_clock()
            self._close_source()

    def _stream(self) -> tuple[Literal["fault", "ended", "stopped"], bool]:
        delivered = False
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except Exception as exc:
                self._fault(f"read failed: {describe(exc)}")
                return "fault", delivered
            if self._take_reconnect_request():
                return "fault", delivered
            if frame is None:
                if getattr(self.source, "ended", False):
                    return "ended", delivered
                if self._stalled():
                    self._fault(f"no frame for {self.config.stall_seconds:g} s")
                    return "fault", delivered
                self._stop.wait(0.005)  # a source that returns None at once must not spin a core
                continue
            self._deliver(frame)
            delivered = True
        return "stopped", delivered

    def _deliver(self, frame: np.ndarray) -> None:
        now = time.monotonic()
        with self._lock:
            self._latest = (frame, now)
            self._frames += 1
            self._frame_times.append(now)
            self._progress_at = now
            recovered = self._in_outage
            self._in_outage = False
            if self._state != "streaming":
                self._state, self._detail = "streaming", ""
        if recovered:
            log.info("camera %s: frames flowing again", self.name)
            self._call("on_recovered", self._on_recovered)
        self._call("on_frame", self._on_frame, frame, now)

    def _backoff(self, failures_in_a_row: int) -> None:
        self._disarm_stall_clock()
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(failures_in_a_row, 30))
        # Jitter, so that cameras that failed together (a PoE switch reboot) don't retry in step.
        delay = min(self.backoff_max, delay * self._random.uniform(0.8, 1.2))
        log.info("camera %s: reconnecting in %.1f s", self.name, delay)
        self._stop.wait(delay)

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.warning("camera %s: error while closing", self.name, exc_info=True)

    # --- stall detection, shared with the watchdog ------------------------------------------------------

    def _arm_stall_clock(self) -> None:
        with self._lock:
            self._progress_at = time.monotonic()
            self._reconnect_requested = False

    def _disarm_stall_clock(self) -> None:
        with self._lock:
            self._progress_at = None

    def _stalled(self) -> bool:
        with self._lock:
            since = self._progress_at
            return since is not None and time.monotonic() - since > self.config.stall_seconds

    def _take_reconnect_request(self) -> bool:
        with self._lock:
            requested, self._reconnect_requested = self._reconnect_requested, False
            return requested

    def _watch(self) -> None:
        tick = min(0.25, self.config.stall_seconds / 4)
        while not self._stop.wait(tick) and self._thread is not None and self._thread.is_alive():
            if self._stalled():
                with self._lock:
                    self._progress_at = None  # fire once; the reader re-arms on its next attempt
                    self._reconnect_requested = True
                self._fault(f"no frame for {self.config.stall_seconds:g} s")

    def _fault(self, reason: str) -> None:
        with self._lock:
            first = not self._in_outage
            self._in_outage = True
            self._state, self._detail = "fault", reason
        if first:
            log.warning("camera %s (%s): %s", self.name, redact(self.config.source), reason)
            self._call("on_fault", self._on_fault, reason)
        else:
            log.info("camera %s: still failing: %s", self.name, reason)

    def _call(self, what: str, callback: Callable[..., object] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            now = time.monotonic()
            if now - self._callback_logged_at.get(what, -CALLBACK_LOG_INTERVAL) >= CALLBACK_LOG_INTERVAL:
                self._callback_logged_at[what] = now
                log.exception("camera %s: %s callback raised (further errors muted for %.0f s)",
                              self.name, what, CALLBACK_LOG_INTERVAL)


def grab_one(
    config: CameraConfig, timeout: float = 5.0, sample_seconds: float = 1.0
) -> tuple[np.ndarray, float]:
    """Open the camera, return its newest frame and the frame rate measured over ~``sample_seconds``.

    For ``edge-agent hw test``: any problem is a :class:`CameraError` whose message says what is wrong.
    """
    first_ts: float | None = None
    newest: tuple[np.ndarray, float] | None = None
    count = 0
    faults: list[str] = []

    def on_frame(frame: np.ndarray, ts: float) -> None:
        nonlocal first_ts, newest, count
        first_ts = ts if first_ts is None else first_ts
        newest, count = (frame, ts), count + 1

    # Backoff longer than the whole test: the first fault is the answer, no reconnect is needed.
    camera = Camera(
        config, on_frame=on_frame, on_fault=faults.append, backoff_initial=timeout + sample_seconds
    )
    deadline = time.monotonic() + timeout
    camera.start()
    try:
        while True:
            if faults:
                raise CameraError(f"camera {config.name}: {faults[0]}")
            state = camera.health().state
            if first_ts is not None and (time.monotonic() - first_ts >= sample_seconds or state == "ended"):
                break
            if first_ts is None and state == "ended":
                raise CameraError(f"camera {config.name}: {redact(config.source)} delivered no frames")
            if first_ts is None and time.monotonic() > deadline:
                where = redact(config.source)
                raise CameraError(f"camera {config.name}: no frame from {where} within {timeout:g} s")
            time.sleep(0.01)
    finally:
        camera.stop()
    assert newest is not None and first_ts is not None
    span = newest[1] - first_ts
    return newest[0], (count - 1) / span if count >= 2 and span > 0 else 0.0
