"""`edge-agent hw test`: every configured device gets one OK/FAIL line."""

from __future__ import annotations

from pathlib import Path

from agent.config_loader import parse_config
from agent.hwtest import run_checks
from agent.simulation_media import generate_street_video
from tests.agent_configs import node_config


def test_hw_test_reads_inputs_and_pulses_only_when_asked(tmp_path: Path, mock_factory) -> None:
    video = tmp_path / "cam.avi"
    generate_street_video(video, seconds=2, fps=15, size=(320, 240))
    extra = (f"  cameras:\n    - {{name: door, source: {video}}}\n"
             f"    - {{name: gone, source: {tmp_path}/frames/}}\n")
    (tmp_path / "frames").mkdir()
    config = parse_config(node_config(tmp_path / "state", extra=extra))
    (tmp_path / "frames").rmdir()  # the folder disappears after validation: a dead USB stick
    mock_factory.pin(24).drive_low()  # smoke detector in alarm

    checks = {c.device: c for c in run_checks(config, mock_factory, pulse=False)}
    assert checks["gate main lock relay"].ok and "use --pulse" in checks["gate main lock relay"].detail
    assert checks["gate main door contact"].detail.endswith("door OPEN")
    assert checks["smoke lobby alarm"].detail.endswith("IN ALARM")
    assert checks["barrier car-in safety loop"].detail.endswith("clear")
    assert checks["camera door"].ok and "frame 320x240" in checks["camera door"].detail
    assert not checks["camera gone"].ok and "does not exist" in checks["camera gone"].detail
    assert not any(s.state for s in mock_factory.pin(17).states[1:]), "no relay moves without --pulse"

    pulsed = {c.device: c for c in run_checks(config, mock_factory, pulse=True)}
    assert "pulsed" in pulsed["gate main lock relay"].detail
    assert any(s.state for s in mock_factory.pin(17).states)
    assert str(pulsed["gate main lock relay"]).startswith("OK    gate main lock relay")


def test_snapshots_show_a_barrier_cameras_lane(tmp_path: Path, mock_factory) -> None:
    import cv2

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
