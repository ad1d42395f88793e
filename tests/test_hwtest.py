"""`edge-agent hw test`: every configured device gets one OK/FAIL line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.config_loader import parse_config
from agent.hwtest import run_checks
from agent.simulation_media import cjk_font, generate_street_video, render_plate
from tests.agent_configs import node_config


def test_hw_test_reads_inputs_and_pulses_only_when_asked(tmp_path: Path, mock_factory) -> None:
    video = tmp_path / "cam.avi"
    generate_street_video(video, seconds=2, fps=15, size=(320, 240))
    extra = (f"  cameras:\n    - {{name: door, source: {video}}}\n"
             f"    - {{name: gone, source: {tmp_path}/frames/}}\n")
    (tmp_path / "frames").mkdir()
    config = parse_config(node_config(tmp_path / "state", extra=extra).replace(
        "safety_loop: 13,", "safety_loop: 13, approach_loop: 7,"))
    (tmp_path / "frames").rmdir()  # the folder disappears after validation: a dead USB stick
    mock_factory.pin(24).drive_low()  # smoke detector in alarm
    mock_factory.pin(7).drive_low()  # a car waits at the barrier

    checks = {c.device: c for c in run_checks(config, mock_factory, pulse=False)}
    assert checks["gate main lock relay"].ok and "use --pulse" in checks["gate main lock relay"].detail
    assert checks["gate main door contact"].detail.endswith("door OPEN")
    assert checks["smoke lobby alarm"].detail.endswith("IN ALARM")
    assert checks["barrier car-in safety loop"].detail.endswith("clear")
    assert checks["barrier car-in approach loop"].detail.endswith("VEHICLE WAITING")
    assert checks["camera door"].ok and "frame 320x240" in checks["camera door"].detail
    assert not checks["camera gone"].ok and "does not exist" in checks["camera gone"].detail
    assert not any(s.state for s in mock_factory.pin(17).states[1:]), "no relay moves without --pulse"

    pulsed = {c.device: c for c in run_checks(config, mock_factory, pulse=True)}
    assert "pulsed" in pulsed["gate main lock relay"].detail
    assert any(s.state for s in mock_factory.pin(17).states)
    assert str(pulsed["gate main lock relay"]).startswith("OK    gate main lock relay")


def test_snapshots_show_a_barrier_cameras_lane(tmp_path: Path, mock_factory) -> None:
    video = tmp_path / "lane.avi"
    generate_street_video(video, seconds=1, fps=15, size=(320, 240))
    extra = (f"  cameras:\n    - {{name: lane, source: {video}, gate: car-in, "
             f"lane: [[0.25, 0.5], [0.75, 0.5], [0.75, 0.9], [0.25, 0.9]]}}\n")
    config = parse_config(node_config(tmp_path / "state", extra=extra))
    checks = {c.device: c for c in run_checks(config, mock_factory, snapshots=tmp_path / "shots")}
    assert checks["camera lane"].ok and str(tmp_path / "shots" / "lane.jpg") in checks["camera lane"].detail
    picture = cv2.imread(str(tmp_path / "shots" / "lane.jpg"))
    assert picture.shape[:2] == (240, 320)
    blue, green, red = (int(v) for v in picture[int(0.9 * 240), 160])  # on the lane's lower edge
    assert green > 180 and blue < 90 and red < 90, "the lane is outlined in green"


def plate_frame(width: int | None) -> np.ndarray:
    """A 1280x720 lane, with a blue 京A12345 plate ``width`` pixels wide in the middle of it."""
    frame = np.full((720, 1280, 3), 110, np.uint8)
    frame[600:] = 70  # the road
    if width is not None:
        plate = cv2.resize(render_plate("京A12345", cjk_font(), height=140), (width, round(width * 140 / 440)),
                           interpolation=cv2.INTER_AREA)
        frame[480: 480 + plate.shape[0], 640: 640 + plate.shape[1]] = plate
    return frame


def test_hw_test_says_whether_a_barrier_cameras_plates_are_wide_enough(tmp_path: Path, mock_factory) -> None:
    cameras = ""
    for name, width in (("near", 160), ("far", 56), ("empty", None)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "frame.jpg"), plate_frame(width), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cameras += f"    - {{name: {name}, source: {tmp_path / name}/, gate: car-in}}\n"
    cameras += f"    - {{name: door, source: {tmp_path / 'near'}/}}\n"  # watches no barrier: no plate check
    config = parse_config(node_config(tmp_path / "state", extra=f"  cameras:\n{cameras}"))

    checks = {c.device: c for c in run_checks(config, mock_factory, snapshots=tmp_path / "shots")}
    near, far, empty = checks["plates near"], checks["plates far"], checks["plates empty"]
    assert near.ok and near.detail.startswith("read 京A12345, 1") and "px wide (reliable from 80 px)" in near.detail
    assert not far.ok and far.detail.startswith("read 京A12345, but only 5") and "zoom in" in far.detail
    assert empty.ok and empty.detail.startswith("no plate in view")
    assert "plates door" not in checks and checks["camera door"].ok
    assert checks["camera near"].detail.endswith(str(tmp_path / "shots" / "near.jpg"))
    # The snapshot boxes the plate read, in orange, so the technician sees what was measured.
    shot = cv2.imread(str(tmp_path / "shots" / "near.jpg"))
    orange = (shot[:, :, 0] < 80) & (shot[:, :, 1] > 150) & (shot[:, :, 2] > 200)
    ys, xs = np.nonzero(orange)
    assert len(xs) and 600 <= xs.min() <= 650 and 440 <= ys.min() <= 485 and xs.max() >= 780
