"""Frame sources: one small class per camera backend, each a blocking ``read()`` of BGR frames.

A source knows how to open its device, deliver frames as ``uint8`` BGR arrays of shape
(H, W, 3) and close again; it may be opened again after ``close()`` (that is how
:class:`drivers.camera.Camera` reconnects).  Reconnection, stall detection and health live in
:mod:`drivers.camera`, not here.  Problems are raised as :class:`CameraError` with a message a
technician can act on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from agent.config import CameraConfig
from models.image_io import UnreadableImage, read_image

log = logging.getLogger("edge_agent.camera")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".bmp"})
# Network cameras: give up on a dead host / silent stream after this long, so that read() returns
# and the camera thread can reconnect, rather than blocking inside FFmpeg for minutes.
STREAM_TIMEOUT_MS = 5000
# How long a live source waits after a failed read before the next try (no busy loop on a
# unplugged webcam; the stall timer in Camera decides when it is a fault).
_READ_RETRY_SECONDS = 0.05


class CameraError(Exception):
    """A camera problem, worded for the person installing the node."""


class FrameSource(Protocol):
    """One camera backend. ``read`` blocks until a frame is ready (or briefly, then returns None)."""

    ended: bool  # True once a non-looping replay has delivered its last frame

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Any decoded image → contiguous uint8 BGR (H, W, 3): grey and BGRA are converted, 16-bit scaled."""
    if frame.dtype == np.uint16:
        frame = cv2.convertScaleAbs(frame, alpha=1.0 / 257.0)
    elif frame.dtype != np.uint8:
        frame = cv2.convertScaleAbs(frame)
    if frame.ndim == 2 or frame.shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def redact(source: int | str) -> str:
    """The source as text with any password in a URL hidden (rtsp://admin:***@10.0.0.5/…)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(source))


class Pacer:
    """Spaces reads 1/fps apart on the monotonic clock, without bursting to catch up after a delay."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._due: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._due is None or now - self._due > self.interval:
            self._due = now  # first frame, or we fell behind: start a fresh schedule
        elif self._due > now:
            time.sleep(self._due - now)
        self._due += self.interval


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (libcamera). Imported only when used, i.e. on a Pi."""

    ended = False

    def __init__(self, config: CameraConfig, factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._factory = factory
        self._camera: Any = None

    def open(self) -> None:
        factory = self._factory or _import_picamera2()
        try:
            camera = factory()
        except Exception as exc:
            raise CameraError(f"cannot open the Pi camera (is the ribbon cable seated? {exc})") from exc
        try:
            # "RGB888" in picamera2 is [B, G, R] per pixel, which is what OpenCV expects.
            video_config = camera.create_video_configuration(
                main={"size": tuple(self.config.resolution), "format": "RGB888"},
                controls={"FrameRate": float(self.config.fps)},
            )
            camera.configure(video_config)
            camera.start()
        except Exception as exc:
            _quietly(camera.close)
            raise CameraError(f"cannot start the Pi camera at {self.config.resolution}: {exc}") from exc
        self._camera = camera

    def read(self) -> np.ndarray | None:
        if self._camera is None:
            raise CameraError("Pi camera is not open")
        return to_bgr(self._camera.capture_array("main"))

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            _quietly(camera.stop)
            _quietly(camera.close)


def _import_picamera2() -> Callable[[], Any]:
    try:
        from picamera2 import Picamera2  # only present on Raspberry Pi OS
    except ImportError as exc:
        raise CameraError(
            "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
            "and create the virtualenv with --system-site-packages"
        ) from exc
    except ValueError as exc:
        # apt's python3-simplejpeg (imported by picamera2) is built against Debian's numpy 1.x and
        # fails with "numpy.dtype size changed" when the virtualenv brings numpy 2.x.
        raise CameraError(
            f"picamera2 is installed but cannot be imported ({exc}): the virtualenv's numpy does not "
            "match the system one that python3-picamera2 was built against"
        ) from exc
    return Picamera2


class LiveOpenCVSource:
    """A V4L2 device (USB webcam, by index) or an RTSP/HTTP stream through OpenCV's FFmpeg backend."""

    ended = False

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        source = self.config.source
        if self.config.kind == "device":
            capture = cv2.VideoCapture(int(source), cv2.CAP_V4L2)
            what = f"video device /dev/video{int(source)}"
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            ]
            capture = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
            what = f"stream {redact(source)}"
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {what} (unplugged, wrong address or in use by another program?)")
        if self.config.kind == "device":
            width, height = self.config.resolution
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            capture.set(cv2.CAP_PROP_FPS, self.config.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of stale ones
        self._capture = capture

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise CameraError("camera is not open")
        ok, frame = self._capture.read()
        if not ok or frame is None:
            time.sleep(_READ_RETRY_SECONDS)
            return None
        return to_bgr(frame)

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class VideoFileSource:
    """Replays a video file at its own fps (or as fast as it decodes), optionally looping."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.path = Path(str(config.source))
        self.ended = False
        self.fps = config.fps
        self._capture: cv2.VideoCapture | None = None
        self._pacer: Pacer | None = None
        self._frames_this_pass = 0

    def open(self) -> None:
        self.ended = False
        self._capture = self._open_capture()
        file_fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = file_fps if 0 < file_fps <= 240 else self.config.fps
        self._pacer = Pacer(self.fps) if self.config.replay.realtime else None

    def _open_capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise CameraError(f"video file {self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot decode video file {self.path} (damaged or not a video)")
        self._frames_this_pass = 0
        return capture

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            if self.ended:
                return None
            raise CameraError(f"video file {self.path} is not open")
        ok, frame = self._capture.read()
        if not ok or frame is None:
            if self._frames_this_pass == 0:
                raise CameraError(f"video file {self.path} has no frames that can be decoded")
            self._capture.release()
            if not self.config.replay.loop:
                self._capture, self.ended = None, True
                return None
            self._capture = self._open_capture()  # reopening is reliable for every container
            ok, frame = self._capture.read()
            if not ok or frame is None:
                raise CameraError(f"video file {self.path} could not be read again from the start")
        self._frames_this_pass += 1
        if self._pacer is not None:
            self._pacer.wait()
        return to_bgr(frame)

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class ImageFolderSource:
    """Replays the images of a folder in name order at the configured fps, optionally looping."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.folder = Path(str(config.source))
        self.ended = False
        self.files: list[Path] = []
        self._next = 0
        self._pacer: Pacer | None = None
        self._skipped: set[Path] = set()  # warned about once per open, not on every pass of a loop

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"image folder {self.folder} does not exist")
        images = (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = sorted(images)
        if not self.files:
            raise CameraError(f"image folder {self.folder} has no .jpg, .jpeg, .png, .pgm or .bmp files")
        self.ended = False
        self._next = 0
        self._skipped = set()
        self._pacer = Pacer(self.config.fps) if self.config.replay.realtime else None

    def read(self) -> np.ndarray | None:
        if not self.files:
            raise CameraError(f"image folder {self.folder} is not open")
        for _ in range(len(self.files)):  # skip unreadable files, but never spin forever
            if self._next >= len(self.files):
                if not self.config.replay.loop:
                    self.ended = True
                    return None
                self._next = 0
            path = self.files[self._next]
            self._next += 1
            try:  # in colour: grey (PGM, grey PNG) becomes BGR, 16-bit 8-bit, EXIF rotation is honoured
                frame = read_image(path)
            except UnreadableImage as problem:
                if path not in self._skipped:
                    self._skipped.add(path)
                    log.warning("camera %s: skipping %s: %s", self.config.name, path.name, problem.reason)
                continue
            if self._pacer is not None:
                self._pacer.wait()
            return to_bgr(frame)
        raise CameraError(f"none of the images in {self.folder} could be read")

    def close(self) -> None:
        self.files = []


def open_source(config: CameraConfig, picamera2_factory: Callable[[], Any] | None = None) -> FrameSource:
    """The right source for ``config.kind``. Nothing is opened yet: call ``open()`` (Camera does)."""
    kind = config.kind
    if kind == "picamera2":
        return Picamera2Source(config, picamera2_factory)
    if kind in ("device", "stream"):
        return LiveOpenCVSource(config)
    if kind == "folder":
        return ImageFolderSource(config)
    return VideoFileSource(config)


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # tearing down a half-opened camera: the original error matters more
        log.debug("ignored error while closing a camera", exc_info=True)
