"""Motion gating (models/motion.py) and the plate pass: a still, empty lane is not read; cars, loops and
passes are.  The face pipeline's use of the same gate is tested in test_face_model.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config_plates import PlateConfig
from agent.simulation_media import cjk_font, generate_lane_video, render_plate
from agent.vision import PlatePass, VisionWorker
from models.area import Area
from models.motion import MotionGate
from models.plate import PlateReader
from models.plate_vote import PlateDecision, PlateRead

FPS = 15.0


def lane(rng: np.random.Generator, car_x: int | None = None, light: int = 0, shade: int = 45) -> np.ndarray:
    """A noisy 640x360 lane; a car at ``car_x``, dark unless ``shade`` says; ``light`` brightens the
    whole picture."""
    frame = np.full((360, 640, 3), 140 + light, np.int16)
    frame[290:] = 75 + light  # the road
    if car_x is not None:
        frame[150:320, car_x: car_x + 220] = shade + light
    frame += rng.integers(-8, 9, frame.shape, dtype=np.int16)  # sensor noise
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_a_still_noisy_lane_is_not_motion() -> None:
    rng = np.random.default_rng(1)
    motion = MotionGate()
    assert motion.update(lane(rng), 0.0), "the first frame has nothing to compare with: look once"
    assert not any(motion.update(lane(rng), (i + 1) / FPS) for i in range(60))
    assert motion.changed <= motion.fraction


def test_a_car_driving_up_is_motion_until_it_has_stopped() -> None:
    rng = np.random.default_rng(2)
    motion = MotionGate()
    motion.update(lane(rng), 0.0)
    driving = [motion.update(lane(rng, car_x=20 + 10 * i), (1 + i) / FPS) for i in range(30)]
    assert all(driving)
    stopped = [motion.update(lane(rng, car_x=310), (31 + i) / FPS) for i in range(60)]  # 4 s at the barrier
    assert stopped[0] and not any(stopped[-30:]), "a car that has stopped fades into the background"
    assert motion.update(lane(rng), 91 / FPS), "and leaving is motion again"


def test_grey_and_bgra_frames_are_compared_alike() -> None:
    rng = np.random.default_rng(4)
    frame = lane(rng)
    for converted in (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)):
        motion = MotionGate()
        motion.update(converted, 0.0)
        assert not motion.update(converted, 0.1)
        assert motion.update(cv2.rectangle(converted.copy(), (100, 100), (300, 300), 0, -1), 0.2)


def test_lights_switching_on_is_one_look_not_a_stream() -> None:
    rng = np.random.default_rng(3)
    motion = MotionGate()
    for i in range(10):
        motion.update(lane(rng), i / FPS)
    assert motion.update(lane(rng, light=70), 10 / FPS)
    assert not any(motion.update(lane(rng, light=70), (11 + i) / FPS) for i in range(20))


@pytest.fixture(scope="module")
def lane_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulation's barrier video, through OpenCV's real MJPG encoder and decoder."""
    font = cjk_font()
    path = tmp_path_factory.mktemp("lane") / "lane.avi"
    plates = [render_plate(text, font) for text in ("京A12345", "沪B54321")]
    generate_lane_video(path, plates, FPS)
    return path


def frames(path: Path, every: int) -> list[tuple[np.ndarray, float]]:
    capture = cv2.VideoCapture(str(path))
    out, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            out.append((frame, index / FPS))
        index += 1
    capture.release()
    return out


def test_motion_in_the_decoded_lane_video(lane_video: Path) -> None:
    motion = MotionGate()
    moving = {round(ts, 2) for frame, ts in frames(lane_video, 1) if motion.update(frame, ts)}
    # Cars drive up during 1-5 s and 10-14 s, wait until 8 s and 17 s, then vanish; a change
    # fades into the background in about two seconds.
    assert all(any(start <= ts < start + 4 for ts in moving) for start in (1.0, 10.0))
    assert not [ts for ts in moving if 0.2 <= ts < 1.0 or 7.5 <= ts < 8.0 or ts >= 19.5]


class Decisions:
    """Stands in for the access controller: PlatePass only hands it its decisions."""

    def __init__(self) -> None:
        self.decided: list[str] = []

    def plate_decided(self, barrier: str, decision: PlateDecision) -> None:
        self.decided.append(decision.text)


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader("cn")


def run_pass(reader: PlateReader, path: Path, config: PlateConfig, vehicle_present: bool = False,
             until: float = 20.0) -> tuple[list[float], Decisions, PlatePass]:
    """Feeds the video at 3 frames a second (what a Pi 4 keeps up with); returns the times skipped,
    the decisions and the pass."""
    decisions = Decisions()
    plate_pass = PlatePass(reader, config, "car-in", decisions,  # type: ignore[arg-type]
                           vehicle_present=lambda: vehicle_present)
    skipped = []
    for frame, ts in frames(path, 5):
        if ts < until:
            plate_pass(frame, ts)
            if plate_pass.frames_skipped > len(skipped):
                skipped.append(ts)
    assert plate_pass.frames_read + plate_pass.frames_skipped == len([ts for _, ts in frames(path, 5) if ts < until])
    return skipped, decisions, plate_pass


def test_plate_pass_reads_cars_and_skips_the_empty_lane(reader: PlateReader, lane_video: Path) -> None:
    skipped, decisions, plate_pass = run_pass(reader, lane_video, PlateConfig())
    assert decisions.decided == ["京A12345", "沪B54321"]
    # Each car's plate grows from 100 to 187 px wide as it drives up; each pass keeps its widest (its
    # text line's width, as the reader boxes it), which `edge-agent status` shows.
    assert len(plate_pass.plate_widths) == 2 and all(160 <= width <= 187 for width in plate_pass.plate_widths)
    figures = VisionWorker(None, plate_pass, "lane").figures()  # type: ignore[arg-type]
    assert figures["plate_width_px"] == round(sum(plate_pass.plate_widths) / 2)
    # Empty before the first car (the very first frame is looked at), and from ~1.5 s after the
    # second car has gone (the pass ends, the background has learned the empty lane again).
    assert [ts for ts in skipped if ts < 1.0] == [ts for _, ts in frames(lane_video, 5) if 0 < ts < 1.0]
    assert [ts for ts in skipped if ts >= 19.5] == [ts for _, ts in frames(lane_video, 5) if ts >= 19.5]
    assert not [ts for ts in skipped if 1.0 <= ts < 8.0 or 10.0 <= ts < 17.0], "never while a car is there"


def test_safety_loop_or_setting_keeps_every_frame_read(reader: PlateReader, lane_video: Path) -> None:
    on_loop, _, _ = run_pass(reader, lane_video, PlateConfig(), vehicle_present=True, until=1.0)
    assert on_loop == []
    ungated, _, _ = run_pass(reader, lane_video, PlateConfig(read_on_motion_only=False), until=1.0)
    assert ungated == []


class ScriptedReader:
    """Stands in for the plate reader: every frame reads as ``plates`` (best first)."""

    def __init__(self) -> None:
        self.plates: list[str] = []

    def read(self, frame: np.ndarray, within: tuple[int, int, int, int] | None = None) -> list[PlateRead]:
        return [PlateRead(text, 0.95, (100, 100, 120, 30)) for text in self.plates]


WAITING, MISREAD, NEIGHBOUR, BEHIND = "京A12345", "京A12845", "京A12346", "京B67890"  # misread, neighbour: one edit off


def decided_at_barrier(frames: list[tuple[str, bool]]) -> list[str]:
    """The decisions for a car (or a queue) at the barrier, one frame every 1/3 s, each read as the
    plate given and finding the safety loop occupied or not.  Every frame is read."""
    reader, decisions, on_loop = ScriptedReader(), Decisions(), [False]
    plate_pass = PlatePass(reader, PlateConfig(read_on_motion_only=False), "car-in",  # type: ignore[arg-type]
                           decisions, vehicle_present=lambda: on_loop[0])  # type: ignore[arg-type]
    frame = lane(np.random.default_rng(7), car_x=300)
    for step, (text, occupied) in enumerate(frames):
        reader.plates, on_loop[0] = [text], occupied
        plate_pass(frame, step / 3)
    return decisions.decided


def test_a_car_that_drove_through_is_decided_again_when_it_comes_back() -> None:
    # A grey car drives through without stopping; it is so like the lane that the lane is still again
    # before the pass's idle gap has passed: every later frame is skipped unread, yet the pass must end.
    rng = np.random.default_rng(8)
    reader, decisions = ScriptedReader(), Decisions()
    plate_pass = PlatePass(reader, PlateConfig(), "car-in", decisions)  # type: ignore[arg-type]
    plate_pass(lane(rng), 0.0)
    ts = 0.0
    for car_x in [*range(20, 420, 50), *[None] * 180, *range(20, 320, 25)]:  # through, a minute empty, back
        ts += 1 / 3
        reader.plates = [] if car_x is None else [WAITING]
        plate_pass(lane(rng, car_x, shade=110), ts)
    assert plate_pass.frames_skipped > 150, "the empty lane was not read"
    assert decisions.decided == [WAITING, WAITING]


def test_a_waiting_car_misread_twice_in_a_row_is_still_one_decision() -> None:
    # A still car gives near-identical frames, so rain or headlights can misread it twice running.
    texts = [WAITING] * 4 + [MISREAD] * 2 + [WAITING] * 3
    assert decided_at_barrier([(text, True) for text in texts]) == [WAITING]


def test_a_clearly_different_plate_right_behind_is_its_own_pass() -> None:
    queue = [WAITING] * 4 + [BEHIND] * 4  # no idle gap, and the loop never clears between the cars
    assert decided_at_barrier([(text, True) for text in queue]) == [WAITING, BEHIND]
    misread_first = [WAITING] * 4 + [MISREAD] * 2 + [WAITING] * 2 + [BEHIND] * 4
    assert decided_at_barrier([(text, True) for text in misread_first]) == [WAITING, BEHIND]


def test_a_neighbours_plate_right_behind_is_its_own_pass_once_the_loop_has_cleared() -> None:
    # The decided car waits on the loop and drives through; the one behind is one character off it.
    loop_cycled = [(WAITING, True)] * 4 + [(NEIGHBOUR, False)] + [(NEIGHBOUR, True)] * 3
    assert decided_at_barrier(loop_cycled) == [WAITING, NEIGHBOUR]
    # Without the loop seeing a car and clearing, it may be the waiting car misread: no second decision.
    for occupied in (False, True):
        assert decided_at_barrier([(text, occupied) for text, _ in loop_cycled]) == [WAITING]


# The lane in front of the barrier: the lower middle of the picture.  Beyond it, across the road,
# a resident's car is parked in full view.
LANE = Area([(0.25, 0.45), (0.75, 0.45), (0.95, 1.0), (0.05, 1.0)])


def test_an_area_in_fractions_fits_any_resolution() -> None:
    assert LANE.bounds((720, 1280, 3)) == (64, 324, 1152, 396)
    assert LANE.bounds((480, 640)) == (32, 216, 576, 264)
    assert LANE.contains(640, 700, (720, 1280)) and not LANE.contains(100, 200, (720, 1280))
    sliver = Area([(0.5, 0.0), (0.51, 0.0), (0.51, 1.0), (0.5, 1.0)])  # narrower than a thumbnail cell
    assert sliver.mask(32, 24).any(axis=1).all(), "a narrow lane still covers the cells it crosses"


def test_motion_outside_the_lane_does_not_count() -> None:
    rng = np.random.default_rng(5)
    motion = MotionGate(area=LANE)
    motion.update(lane(rng), 0.0)
    beyond = lane(rng)
    beyond[20:120, 0:200] = 30  # traffic on the road beyond the lane, top left
    assert not motion.update(beyond, 0.1) and motion.changed == 0.0
    assert MotionGate().update(lane(rng), 0.0) and MotionGate(area=None).update(beyond, 0.0)
    inside = lane(rng, car_x=300)
    assert motion.update(inside, 0.2)


def test_a_car_parked_beyond_the_lane_never_raises_the_barrier(reader: PlateReader) -> None:
    font = cjk_font()
    # The parked car's plate is the larger: without a lane it is the plate each frame ranks first.
    resident, stranger = render_plate("京A12345", font, height=48), render_plate("沪B54321", font, height=40)
    rng = np.random.default_rng(6)

    def frame(car_x: int) -> np.ndarray:
        picture = np.clip(np.full((720, 1280, 3), 120, np.int16) + rng.integers(-6, 7, (720, 1280, 3)), 0, 255)
        picture = picture.astype(np.uint8)
        picture[150:150 + resident.shape[0], 60:60 + resident.shape[1]] = resident  # parked, across the road
        picture[460:700, car_x: car_x + 360] = 50  # the stranger's car driving up to the barrier
        picture[600:600 + stranger.shape[0], car_x + 110: car_x + 110 + stranger.shape[1]] = stranger
        return picture

    def decided(area: Area | None) -> list[str]:
        decisions = Decisions()
        plate_pass = PlatePass(reader, PlateConfig(), "car-in", decisions, area=area)  # type: ignore[arg-type]
        for step in range(6):
            plate_pass(frame(380 + 20 * step), step / 3)
        return decisions.decided

    assert "京A12345" in decided(None), "without a lane, the parked car is read like the one at the barrier"
    assert decided(LANE) == ["沪B54321"]


def test_the_pass_votes_the_plate_not_the_more_confident_state_name_above_it() -> None:
    from tests.test_plate_model import us_plate_scene

    reader = PlateReader("us")
    frame = us_plate_scene("SH0", "R7X", 160)
    reads = reader.read(frame)
    texts = [r.text.replace("O", "0") for r in reads]  # the plate's font draws O and 0 alike
    assert texts == ["SH0R7X", "TEXAS"] and reads[1].confidence > reads[0].confidence
    decisions = Decisions()
    plate_pass = PlatePass(reader, PlateConfig(formats=["us"]), "car-in", decisions)  # type: ignore[arg-type]
    for step in range(3):
        plate_pass(frame, step / 3)
    assert decisions.decided == [reads[0].text], "the reader ranks by plate-likeness, not confidence"
