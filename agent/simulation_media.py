"""Media for the simulation, made on the spot: nothing is downloaded and ``../shared`` is not needed.

Faces come from photos that installed packages ship — Grace Hopper from matplotlib's sample data
(the simulated resident) and Eileen Collins from scikit-image's ``astronaut`` (the stranger) — pasted
into a generated entrance scene as if walking up to the gate. Plates are rendered with a CJK font
from Debian's ``fonts-wqy-microhei`` onto blue plates on generated cars.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


class MediaUnavailable(Exception):
    """A package or font the simulation's faces or plates need is missing; the message says which."""


def sample_faces() -> tuple[np.ndarray, np.ndarray]:
    """(resident, stranger) portraits as BGR arrays, from matplotlib's and scikit-image's own data."""
    try:
        import matplotlib
        from skimage import data
    except ImportError as exc:
        raise MediaUnavailable(
            f"faces need matplotlib and scikit-image (pip install 'edge-agent[sim]'): {exc}") from None
    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    if hopper is None:
        raise MediaUnavailable("matplotlib's sample_data/grace_hopper.jpg is missing")
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return hopper, astronaut[:400, 60:460]  # head and shoulders, like the portrait


def cjk_font() -> Path:
    for candidate in CJK_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    try:
        found = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, timeout=5)
        name = found.stdout.lower()
        if found.returncode == 0 and ("wqy" in name or "cjk" in name):
            return Path(found.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    raise MediaUnavailable("plates need a Chinese font: sudo apt-get install fonts-wqy-microhei")


def render_plate(text: str, font_path: Path, height: int = 70) -> np.ndarray:
    """A mainland blue plate: white characters, a dot after the province and letter (京A·12345)."""
    from PIL import Image, ImageDraw, ImageFont

    width = int(height * 440 / 140)
    plate = Image.new("RGB", (width, height), (20, 60, 160))  # blue (RGB here; BGR once flipped below)
    draw = ImageDraw.Draw(plate)
    draw.rectangle([3, 3, width - 4, height - 4], outline=(245, 245, 245), width=2)
    font = ImageFont.truetype(str(font_path), int(height * 0.68))
    shown = f"{text[:2]}·{text[2:]}"
    draw.text((width // 2, height // 2), shown, font=font, fill=(245, 245, 245), anchor="mm")
    return np.asarray(plate)[:, :, ::-1].copy()


def turn(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` turned by ``degrees`` (counter-clockwise) on a canvas just big enough, the corners
    filled with its own edge colours: a plate as a camera beside or above the lane sees it."""
    h, w = image.shape[:2]
    cos, sin = abs(np.cos(np.radians(degrees))), abs(np.sin(np.radians(degrees)))
    width, height = int(w * cos + h * sin), int(w * sin + h * cos)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    matrix[:, 2] += (width / 2 - w / 2, height / 2 - h / 2)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def shear_upright(image: np.ndarray, slope: float) -> np.ndarray:
    """``image`` with its rows sloping by ``slope`` (down to the right when positive) and its columns
    upright, on a canvas just big enough, the corners filled with its own edge colours: a plate as
    a camera beside the lane sees it."""
    h, w = image.shape[:2]
    shear = np.float32([[1, 0, 0], [slope, 1, -slope * w if slope < 0 else 0]])
    return cv2.warpAffine(image, shear, (w, h + int(abs(slope) * w)), borderMode=cv2.BORDER_REPLICATE)


def _scene(size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    width, height = size
    scene = np.full((height, width, 3), colour, np.uint8)
    cv2.rectangle(scene, (0, int(height * 0.8)), (width, height), (70, 75, 80), -1)  # ground
    return scene


def _paste(frame: np.ndarray, item: np.ndarray, centre_x: int, bottom: int) -> None:
    h, w = item.shape[:2]
    x0, y0 = centre_x - w // 2, bottom - h
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = item[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def _writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    return writer


def _noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-3, 4, frame.shape, dtype=np.int16)  # sensor noise, as a real camera has
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def generate_street_video(path: Path, seconds: float = 10.0, fps: float = 15.0,
                          size: tuple[int, int] = (640, 360)) -> None:
    """An entrance scene: a still background with a figure walking across, written as MJPG/AVI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    background = np.full((height, width, 3), (90, 110, 120), np.uint8)
    cv2.rectangle(background, (width // 3, height // 6), (2 * width // 3, height), (60, 70, 80), -1)  # doorway
    rng = np.random.default_rng(7)
    frames = int(seconds * fps)
    for index in range(frames):
        frame = background.copy()
        x = int(-60 + (width + 120) * index / frames)
        cv2.ellipse(frame, (x, height // 2 - 70), (22, 28), 0, 0, 360, (150, 170, 200), -1)  # head
        cv2.rectangle(frame, (x - 30, height // 2 - 40), (x + 30, height - 20), (40, 60, 150), -1)  # body
        noise = rng.integers(-4, 5, frame.shape, dtype=np.int16)  # sensor noise, as a real camera has
        frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        cv2.putText(frame, f"sim {index / fps:5.1f}s", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()


def generate_entrance_video(path: Path, resident: np.ndarray, stranger: np.ndarray, fps: float = 15.0,
                            size: tuple[int, int] = (640, 360)) -> None:
    """20 s at the gate: the resident walks up (2-7 s), then a stranger (10-15 s)."""
    background = _scene(size, (120, 130, 125))
    cv2.rectangle(background, (size[0] // 3, size[1] // 8), (2 * size[0] // 3, int(size[1] * 0.8)), (60, 65, 75), -1)
    rng = np.random.default_rng(1)
    writer = _writer(path, fps, size)
    for index in range(int(20 * fps)):
        t = index / fps
        frame = background.copy()
        for person, start in ((resident, 2.0), (stranger, 10.0)):
            if start <= t < start + 5:
                progress = (t - start) / 5
                height = int(size[1] * (0.55 + 0.35 * progress))  # walking closer
                scaled = cv2.resize(person, (int(person.shape[1] * height / person.shape[0]), height))
                _paste(frame, scaled, size[0] // 2 + int(40 * np.sin(progress * 3)), size[1])
        writer.write(_noisy(frame, rng))
    writer.release()


def generate_lane_video(path: Path, plates: list[np.ndarray], fps: float = 15.0,
                        size: tuple[int, int] = (960, 540)) -> None:
    """20 s at the barrier: a car drives up and stops (1-8 s), then another (10-17 s)."""
    background = _scene(size, (150, 150, 145))
    rng = np.random.default_rng(2)
    writer = _writer(path, fps, size)
    for index in range(int(20 * fps)):
        t = index / fps
        frame = background.copy()
        for plate, start in zip(plates, (1.0, 10.0), strict=False):
            if start <= t < start + 7:
                progress = min(1.0, (t - start) / 4)  # approaches for 4 s, then waits at the barrier
                width = int(size[0] * (0.35 + 0.3 * progress))
                height = int(width * 0.55)
                car = np.full((height, width, 3), (45, 45, 50), np.uint8)
                cv2.rectangle(car, (int(width * 0.1), int(height * 0.08)), (int(width * 0.9), int(height * 0.45)),
                              (120, 110, 100), -1)  # windscreen
                plate_width = int(width * 0.3)
                scaled = cv2.resize(plate, (plate_width, int(plate_width * plate.shape[0] / plate.shape[1])))
                _paste(car, scaled, width // 2, int(height * 0.85))
                _paste(frame, car, size[0] // 2, int(size[1] * 0.95))
        writer.write(_noisy(frame, rng))
    writer.release()
