"""Camera driver tests on real OpenCV encoding/decoding of small files written into tmp_path.

Timing checks use loose bounds (the test machine is shared); speed is measured in bench/, not here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.config import CameraConfig
from drivers.camera import Camera, CameraError, CameraHealth, grab_one, open_source
from drivers.camera_sources import (
    ImageFolderSource,
    LiveOpenCVSource,
    Picamera2Source,
    VideoFileSource,
    redact,
    to_bgr,
)

SIZE = (160, 120)  # width, height of the generated test media


def camera_config(source: int | str | Path, **fields: Any) -> CameraConfig:
    return CameraConfig(name="cam1", source=str(source) if isinstance(source, Path) else source, **fields)


def write_video(path: Path, frames: int, fps: float, fourcc: str = "MJPG") -> Path:
    """Frame i is a flat grey of brightness 8*i (mod 256), so order survives lossy codecs."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path.suffix}"
    for i in range(frames):
        writer.write(np.full((SIZE[1], SIZE[0], 3), (8 * i) % 256, np.uint8))
    writer.release()
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Recorder:
    """Collects what a Camera reports through its callbacks."""

    def __init__(self, keep_frames: bool = True) -> None:
        self.keep_frames = keep_frames
        self.frames: list[np.ndarray] = []
        self.count = 0
        self.faults: list[str] = []
        self.fault_times: list[float] = []
        self.recoveries = 0

    def on_frame(self, frame: np.ndarray, ts: float) -> None:
        self.count += 1
        if self.keep_frames:
            self.frames.append(frame)

    def on_fault(self, reason: str) -> None:
        self.faults.append(reason)
        self.fault_times.append(time.monotonic())

    def on_recovered(self) -> None:
        self.recoveries += 1

    def camera(self, config: CameraConfig, **kwargs: Any) -> Camera:
        return Camera(config, self.on_frame, self.on_fault, self.on_recovered, **kwargs)


@pytest.fixture
def running() -> Any:
    """Start cameras through this fixture so that they are stopped even when an assertion fails."""
    cameras: list[Camera] = []

    def start(camera: Camera) -> Camera:
        cameras.append(camera)
        camera.start()
        return camera

    yield start
    for camera in cameras:
        camera.stop()


# --- source selection and frame normalisation -----------------------------------------------------------


def test_open_source_picks_the_backend_from_the_config(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", 2, 10)
    assert isinstance(open_source(camera_config("picamera2")), Picamera2Source)
    assert isinstance(open_source(camera_config(0)), LiveOpenCVSource)
    assert isinstance(open_source(camera_config("rtsp://admin:pw@10.0.0.9/stream1")), LiveOpenCVSource)
    assert isinstance(open_source(camera_config(video)), VideoFileSource)
    assert isinstance(open_source(camera_config(tmp_path)), ImageFolderSource)


def test_to_bgr_turns_grey_alpha_and_16_bit_images_into_uint8_bgr() -> None:
    grey16 = np.full((4, 5), 65535, np.uint16)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 200  # blue stays in channel 0
    for image in (grey16, bgra, np.zeros((4, 5, 1), np.uint8)):
        out = to_bgr(image)
        assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert to_bgr(grey16).min() == 255
    assert to_bgr(bgra)[0, 0].tolist() == [200, 0, 0]


def test_redact_hides_stream_passwords_in_messages() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.9:554/h264") == "rtsp://admin:***@10.0.0.9:554/h264"
    assert redact("http://10.0.0.9/mjpeg") == "http://10.0.0.9/mjpeg"


# --- replay ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fourcc"), [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_fast_replay_delivers_every_frame_in_order_then_ends(tmp_path: Path, running: Any, name: str,
                                                             fourcc: str) -> None:
    video = write_video(tmp_path / name, 30, 20, fourcc)
    recorder = Recorder()
    camera = running(recorder.camera(camera_config(video, replay={"realtime": False})))
    assert wait_until(lambda: camera.health().state == "ended")
    health = camera.health()
    assert (health.frames, recorder.count, health.reconnects) == (30, 30, 0)
    assert recorder.faults == [] and health.detail == ""
    assert all(f.shape == (SIZE[1], SIZE[0], 3) and f.dtype == np.uint8 for f in recorder.frames)
    brightness = [float(f.mean()) for f in recorder.frames]
    assert brightness == sorted(brightness) and brightness[-1] > 200
    latest = camera.latest()
    assert latest is not None and latest[0] is recorder.frames[-1]


def test_realtime_replay_paces_at_the_files_fps(tmp_path: Path, running: Any) -> None:
    video = write_video(tmp_path / "clip.avi", 200, 20)  # 10 s of video; we watch ~1 s of it
    recorder = Recorder(keep_frames=False)
    camera = running(recorder.camera(camera_config(video, fps=5)))  # the file's 20 fps wins over config
    time.sleep(1.0)
    health = camera.health()
    assert 10 <= recorder.count <= 30, recorder.count
    assert 12 <= health.fps <= 28, health.fps
    assert health.state == "streaming" and health.last_frame_age is not None and health.last_frame_age < 0.5


def test_looping_replay_starts_again_at_the_end(tmp_path: Path, running: Any) -> None:
    video = write_video(tmp_path / "clip.avi", 10, 20)
    recorder = Recorder()
    camera = running(recorder.camera(camera_config(video, replay={"realtime": False, "loop": True})))
    assert wait_until(lambda: recorder.count >= 25)
    assert camera.health().state == "streaming"
    brightness = [round(float(f.mean())) for f in recorder.frames[:25]]
    assert brightness[0:5] == brightness[10:15] == brightness[20:25]
    assert brightness[9] > brightness[10]  # the wrap-around
    assert recorder.faults == []


def test_image_folder_replays_images_by_name_with_grey_ones_as_bgr(tmp_path: Path, running: Any) -> None:
    w, h = SIZE
    colour = np.zeros((h, w, 3), np.uint8)
    colour[..., 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "a.jpg"), colour)
    cv2.imwrite(str(tmp_path / "b.png"), np.full((h, w), 100, np.uint8))  # 8-bit grey PNG
    cv2.imwrite(str(tmp_path / "c.pgm"), np.full((h, w), 50, np.uint8))  # grey PGM
    cv2.imwrite(str(tmp_path / "d.bmp"), colour)
    cv2.imwrite(str(tmp_path / "e.JPEG"), np.full((h, w, 3), 200, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png either")  # skipped with a warning
    recorder = Recorder()
    camera = running(recorder.camera(camera_config(tmp_path, replay={"realtime": False})))
    assert wait_until(lambda: camera.health().state == "ended")
    assert recorder.count == 5 and recorder.faults == []
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in recorder.frames)
    a, b, c, d, e = recorder.frames
    assert a[..., 2].mean() > 240 and a[..., 0].mean() < 15
    assert (b == 100).all() and (c == 50).all()  # grey replicated into all three channels
    assert d[..., 2].min() == 255
    assert abs(float(e.mean()) - 200) < 3


def test_image_folder_realtime_uses_the_configured_fps(tmp_path: Path, running: Any) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32), i * 60, np.uint8))
    recorder = Recorder(keep_frames=False)
    camera = running(recorder.camera(camera_config(tmp_path, fps=10, replay={"loop": True})))
    time.sleep(1.0)
    assert 5 <= recorder.count <= 15, recorder.count
    assert camera.health().state == "streaming"


def test_empty_folder_is_a_fault_with_a_plain_reason(tmp_path: Path, running: Any) -> None:
    recorder = Recorder()
    camera = running(recorder.camera(camera_config(f"{tmp_path}/"), backoff_initial=10))
    assert wait_until(lambda: recorder.faults != [])
    assert "has no .jpg, .jpeg, .png, .pgm or .bmp files" in recorder.faults[0]
    assert camera.health().state == "fault"


# --- faults, backoff, recovery ---------------------------------------------------------------------------


class StallingSource:
    """Delivers frames, then stops producing on its first connection; a reconnection fixes it.

    ``hang=True`` blocks inside read() like a wedged driver (only the watchdog can notice);
    ``hang=False`` returns None promptly, as OpenCV does when a webcam is unplugged.
    """

    ended = False

    def __init__(self, good_frames: int, hang: bool) -> None:
        self.good_frames = good_frames
        self.hang = hang
        self.opens = 0
        self.closes = 0
        self.served = 0
        self.stalled_since: float | None = None  # when the first connection stopped producing
        self._release = threading.Event()

    def open(self) -> None:
        self.opens += 1

    def read(self) -> np.ndarray | None:
        if self.opens == 1 and self.served >= self.good_frames:
            self.stalled_since = self.stalled_since or time.monotonic()
            if self.hang:
                self._release.wait(1.0)
            else:
                time.sleep(0.01)
            return None
        time.sleep(0.01)
        self.served += 1
        return np.zeros((8, 8, 3), np.uint8)

    def close(self) -> None:
        self.closes += 1


@pytest.mark.parametrize("hang", [True, False], ids=["read-hangs", "read-returns-none"])
def test_a_stall_reports_one_fault_then_recovers_after_reconnecting(running: Any, hang: bool) -> None:
    source = StallingSource(good_frames=10, hang=hang)
    recorder = Recorder(keep_frames=False)
    config = camera_config("unused.mp4", stall_seconds=0.3)
    camera = running(recorder.camera(config, source=source, backoff_initial=0.05, backoff_max=0.2))
    assert wait_until(lambda: recorder.recoveries == 1)
    assert recorder.faults == ["no frame for 0.3 s"]
    if hang:  # reported on time by the watchdog although read() stayed stuck for a whole second
        assert source.stalled_since is not None
        assert recorder.fault_times[0] - source.stalled_since < 0.9
    time.sleep(0.2)  # frames keep flowing: no second fault, no second recovery
    health = camera.health()
    assert (health.state, health.reconnects, source.opens) == ("streaming", 1, 2)
    assert len(recorder.faults) == 1 and recorder.recoveries == 1 and source.closes >= 1
    assert health.detail == "" and health.frames > 10


class FailingOpenSource:
    """open() fails ``failures`` times (camera not plugged in yet), then frames flow."""

    ended = False

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.open_times: list[float] = []

    def open(self) -> None:
        self.open_times.append(time.monotonic())
        if len(self.open_times) <= self.failures:
            raise OSError("No such device")

    def read(self) -> np.ndarray | None:
        time.sleep(0.01)
        return np.zeros((8, 8, 3), np.uint8)

    def close(self) -> None:
        pass


def test_an_outage_carried_over_a_reload_reports_no_second_fault_and_one_recovery(running: Any) -> None:
    source = FailingOpenSource(failures=3)
    recorder = Recorder(keep_frames=False)
    camera = recorder.camera(camera_config(0), source=source, backoff_initial=0.04, backoff_max=0.2)
    camera.carry_outage()  # the camera it replaces had reported a fault
    assert camera.in_outage
    running(camera)
    assert wait_until(lambda: recorder.recoveries == 1)
    assert recorder.faults == [] and not camera.in_outage


def test_open_failures_back_off_exponentially_up_to_the_maximum(running: Any) -> None:
    source = FailingOpenSource(failures=5)
    recorder = Recorder(keep_frames=False)
    camera = running(recorder.camera(camera_config(0), source=source, backoff_initial=0.04, backoff_max=0.2))
    assert wait_until(lambda: recorder.recoveries == 1)
    assert recorder.faults == ["OSError: No such device"]  # once for the whole outage
    gaps = np.diff(source.open_times[:6])
    for gap, base in zip(gaps, [0.04, 0.08, 0.16, 0.2, 0.2], strict=True):
        assert 0.8 * base - 0.005 <= gap <= min(0.2, 1.2 * base) + 0.15, (gap, base)
    health = camera.health()
    assert (health.state, health.reconnects) == ("streaming", 5)


def test_callbacks_that_raise_do_not_stop_the_camera(tmp_path: Path, running: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    video = write_video(tmp_path / "clip.avi", 20, 20)

    def broken_consumer(frame: np.ndarray, ts: float) -> None:
        raise ValueError("consumer bug")

    with caplog.at_level(logging.ERROR, logger="edge_agent.camera"):
        camera = running(Camera(camera_config(video, replay={"realtime": False}), on_frame=broken_consumer))
        assert wait_until(lambda: camera.health().state == "ended")
    assert camera.health().frames == 20
    errors = [r for r in caplog.records if "on_frame callback raised" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None  # logged with traceback, then muted


def test_stop_ends_the_named_thread_and_reports_stopped(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", 10, 20)
    camera = Camera(camera_config(video, replay={"loop": True}))
    camera.start()
    assert wait_until(lambda: camera.health().frames > 0)
    names = {t.name for t in threading.enumerate()}
    assert "camera-cam1" in names
    camera.stop()
    assert camera.health().state == "stopped"
    assert "camera-cam1" not in {t.name for t in threading.enumerate()}


# --- picamera2 through a stand-in that follows its API ----------------------------------------------------


class StandInPicamera2:
    """Follows the picamera2 calls the driver makes; frames are synthetic BGR (RGB888 layout is B,G,R)."""

    def __init__(self, fail_capture_after: int | None = None) -> None:
        self.fail_capture_after = fail_capture_after  # raise like a camera that dropped out
        self.calls: list[str] = []
        self.requested: dict[str, Any] = {}
        self.configured: dict[str, Any] = {}
        self.captures = 0

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create_video_configuration")
        self.requested = {"main": main, "controls": controls}
        return {"use_case": "video", **self.requested}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append("configure")
        self.configured = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "main" and "start" in self.calls and "stop" not in self.calls
        if self.fail_capture_after is not None and self.captures >= self.fail_capture_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.captures += 1
        time.sleep(1 / self.requested["controls"]["FrameRate"])
        width, height = self.requested["main"]["size"]
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = 255  # a blue scene
        return frame

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


class StandInPicamera2Factory:
    """Plays the part of the ``Picamera2`` class: each call is a new camera object."""

    def __init__(self, first_fails_after: int | None = None) -> None:
        self.first_fails_after = first_fails_after
        self.instances: list[StandInPicamera2] = []

    def __call__(self) -> StandInPicamera2:
        fail = self.first_fails_after if not self.instances else None
        self.instances.append(StandInPicamera2(fail))
        return self.instances[-1]


def test_picamera2_is_configured_for_bgr_video_and_closed_on_stop(running: Any) -> None:
    factory = StandInPicamera2Factory()
    config = camera_config("picamera2", resolution=(320, 240), fps=50)
    recorder = Recorder()
    camera = running(recorder.camera(config, source=open_source(config, picamera2_factory=factory)))
    assert wait_until(lambda: recorder.count >= 3)
    camera.stop()
    (picam,) = factory.instances
    assert picam.requested["main"] == {"size": (320, 240), "format": "RGB888"}
    assert picam.requested["controls"] == {"FrameRate": 50.0}
    assert picam.configured["main"]["format"] == "RGB888"
    assert picam.calls[:3] == ["create_video_configuration", "configure", "start"]
    assert picam.calls[-2:] == ["stop", "close"]
    frame = recorder.frames[0]
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame[0, 0].tolist() == [255, 0, 0]  # passed through as BGR, not channel-swapped


def test_picamera2_capture_error_reopens_a_fresh_camera(running: Any) -> None:
    factory = StandInPicamera2Factory(first_fails_after=3)
    config = camera_config("picamera2", fps=50)
    recorder = Recorder(keep_frames=False)
    source = open_source(config, picamera2_factory=factory)
    camera = running(recorder.camera(config, source=source, backoff_initial=0.05))
    assert wait_until(lambda: recorder.recoveries == 1)
    assert recorder.faults == ["read failed: RuntimeError: Camera frontend has timed out!"]
    first, second = factory.instances[:2]
    assert first.calls[-2:] == ["stop", "close"]  # released before a new Picamera2() is made
    assert camera.health().reconnects == 1 and camera.health().state == "streaming"
    assert second.captures >= 1


def test_picamera2_missing_says_how_to_install_it() -> None:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here: the missing-package message cannot be shown")
    source = open_source(camera_config("picamera2"))
    with pytest.raises(CameraError, match="sudo apt install python3-picamera2"):
        source.open()


# --- grab_one and damaged input ---------------------------------------------------------------------------


def test_grab_one_returns_a_frame_and_the_measured_fps(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", 100, 20)
    frame, fps = grab_one(camera_config(video), sample_seconds=0.5)
    assert frame.shape == (SIZE[1], SIZE[0], 3) and frame.dtype == np.uint8
    assert 13 <= fps <= 27, fps


def test_grab_one_on_a_missing_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(CameraError) as caught:
        grab_one(camera_config(missing))
    assert str(caught.value) == f"camera cam1: video file {missing} does not exist"


@pytest.mark.parametrize("damage", ["garbage", "truncated-mp4"])
def test_a_corrupt_video_is_a_fault_not_a_crash(tmp_path: Path, running: Any, damage: str) -> None:
    path = tmp_path / "clip.mp4"
    if damage == "garbage":
        path.write_bytes(b"\x00\x01not a video" * 500)
    else:
        data = write_video(tmp_path / "whole.mp4", 30, 20, "mp4v").read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the index (moov atom) is at the end: undecodable
    with pytest.raises(CameraError, match=r"cannot decode video file .*clip\.mp4 \(damaged or not a video\)"):
        grab_one(camera_config(path))
    recorder = Recorder()
    camera = running(recorder.camera(camera_config(path), backoff_initial=0.05, backoff_max=0.1))
    assert wait_until(lambda: camera.health().reconnects >= 2)  # keeps retrying (the file may be replaced)
    assert len(recorder.faults) == 1 and camera.health().state == "fault"
    assert "damaged or not a video" in camera.health().detail


def test_a_truncated_avi_plays_what_decodes_and_ends_cleanly(tmp_path: Path, running: Any) -> None:
    data = write_video(tmp_path / "whole.avi", 30, 20).read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[: len(data) // 2])
    recorder = Recorder(keep_frames=False)
    camera = running(recorder.camera(camera_config(path, replay={"realtime": False})))
    assert wait_until(lambda: camera.health().state == "ended")
    assert 0 < recorder.count < 30 and recorder.faults == []


# --- the real clip from the shared test data ---------------------------------------------------------------


def test_real_clip_replays_all_275_frames_at_its_own_fps(shared_data: Path, running: Any) -> None:
    clip = shared_data / "faces" / "video" / "short_hamilton_clip.mp4"
    source = VideoFileSource(camera_config(clip, replay={"realtime": False}))
    recorder = Recorder(keep_frames=False)
    shapes: set[tuple[int, ...]] = set()

    def on_frame(frame: np.ndarray, ts: float) -> None:
        recorder.on_frame(frame, ts)
        shapes.add(frame.shape)

    camera = running(Camera(source.config, on_frame=on_frame, on_fault=recorder.on_fault, source=source))
    assert wait_until(lambda: camera.health().state == "ended", timeout=20)
    assert recorder.count == 275 and recorder.faults == []
    assert shapes == {(360, 640, 3)}
    assert source.fps == pytest.approx(29.97, abs=0.01)
    assert isinstance(camera.health(), CameraHealth)
