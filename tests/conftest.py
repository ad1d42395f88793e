"""Shared fixtures. Test data lives beside the project in ../shared/data and is never copied in."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real photos and videos are only beside the project in CI and dev."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared test data at {SHARED_DATA} (not present on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hamilton_frames(shared_data: Path) -> list:
    """Every frame of the shared Hamilton clip (BGR), decoded once for the session's face tests."""
    import cv2

    capture = cv2.VideoCapture(str(shared_data / "faces" / "video" / "short_hamilton_clip.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture
def mock_factory():
    """gpiozero's own MockFactory (PWM-capable pins that keep a wired level), reset after each test."""
    from gpiozero import Device

    from drivers.pins import make_pin_factory

    previous = Device.pin_factory
    factory = make_pin_factory("mock")
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous
