"""Reading image files with limits: every image file the agent reads (``eval faces``, ``eval plates``,
enrolment from photos, a camera replaying an image folder) goes through :func:`read_image`.

A file is refused, as :class:`UnreadableImage` naming the file and the reason, when it is not a
regular file, is empty, cannot be opened or read, is not an image Pillow recognises, is larger than
:data:`MAX_IMAGE_PIXELS` (judged from its header, before anything is decoded) or cannot be decoded.
What passes is decoded by OpenCV from the bytes already read, as ``cv2.imread`` would decode it
(EXIF orientation applied in colour mode).

Why the bytes are decoded with ``cv2.imdecode`` rather than ``cv2.imread``: on a truncated JPEG
``imread`` (libjpeg reading a file) pads the missing part with grey and returns an image, while
``imdecode`` (reading memory) returns None. Try it on any JPEG cut in half::

    python -c "import cv2,numpy as n; d=open('a.jpg','rb').read(); open('t.jpg','wb').write(d[:len(d)//2]); \
print(cv2.imread('t.jpg') is None, cv2.imdecode(n.frombuffer(d[:len(d)//2],n.uint8),1) is None)"

prints ``False True`` with OpenCV 4.11. tests/test_image_limits.py holds that behaviour.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import numpy as np

# The pixel budget. Reading an image costs several times its decoded size (3 bytes a pixel): on a
# 20000x20000 (400 MP) PNG `edge-agent eval plates` peaked at 3.9 GB and `eval faces` at 2.5 GB; on a
# 7296x5472 (40 MP) photo at 481 and 497 MB, against 326 MB on a 1920x1080 one (`/usr/bin/time -v
# python -m agent.cli eval plates DIR`, docs/images.md). That fits beside the running daemon on a
# 2 GB Raspberry Pi 4. No camera the agent uses comes near 40 MP (a Pi HQ camera is 12.3 MP) and
# phones save 12-24 MP photos by default.
MAX_IMAGE_PIXELS = 40_000_000
# The file itself is read into memory before decoding: 128 MiB holds any 8-bit colour image within
# the pixel budget even stored uncompressed (40 MP x 3 bytes = 120 MB in a BMP, PPM or TIFF).
MAX_IMAGE_FILE_BYTES = 128 * 1024 * 1024

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp"})
# The formats Pillow may identify a file as: those OpenCV decodes too. Anything else is refused
# before decoding, since its size could not be checked.
_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "PPM", "TIFF", "WEBP", "JPEG2000")
_FORMAT_NAMES = "JPEG, PNG, BMP, PGM/PPM, TIFF or WebP"

# warnings.catch_warnings changes process-wide state: one header read at a time.
_header_lock = threading.Lock()
# OpenCV and Pillow are imported when an image is read, not with this module: `edge-agent` builds its
# whole command line (eval included) on every start, and OpenCV alone takes 34 ms to import on a PC
# (`python -X importtime -c "import cv2"`), several times that on a Pi.


class UnreadableImage(ValueError):
    """An image file that cannot be used: ``path`` and a ``reason`` a technician can act on.

    A ValueError, so the commands that already turn a bad photo into one line and exit 1 do so."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def image_files(folder: Path) -> list[Path]:
    """Every entry of ``folder`` named like an image, sorted. Not only regular files: a directory or
    a broken link named ``x.jpg`` is listed, so that reading it reports why it is not an image rather
    than it being left out unseen."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path | str, *, unchanged: bool = False) -> np.ndarray:
    """The image in ``path`` decoded by OpenCV: 8-bit BGR by default (grey converted, EXIF rotation
    applied), or as stored with ``unchanged`` (grey stays grey, 16-bit stays 16-bit).

    Raises :class:`UnreadableImage` for anything that is not a readable image within the limits."""
    import cv2

    data = _read_file(Path(path))
    image_format, width, height = _header(Path(path), data)
    _check_pixels(Path(path), width, height)
    flags = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as error:
        raise UnreadableImage(path, f"the {image_format} data cannot be decoded ({_first_line(error)})") from None
    if image is None or image.size == 0:
        raise UnreadableImage(path, f"the {image_format} data is damaged or truncated")
    _check_pixels(Path(path), image.shape[1], image.shape[0])  # what was decoded, whatever the header said
    return image


def _read_file(path: Path) -> bytes:
    """The file's bytes: a regular file, not empty, within MAX_IMAGE_FILE_BYTES. O_NONBLOCK so that a
    FIFO named like an image is refused instead of waiting for a writer for ever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except PermissionError:
        raise UnreadableImage(path, f"permission denied (this user, uid {os.geteuid()}, may not read it)") from None
    except OSError as error:
        raise UnreadableImage(path, f"cannot be opened: {error.strerror}") from None
    try:
        mode = os.fstat(fd)
        if stat.S_ISDIR(mode.st_mode):
            raise UnreadableImage(path, "is a directory, not an image file")
        if not stat.S_ISREG(mode.st_mode):
            raise UnreadableImage(path, f"is not a regular file (a {_file_kind(mode.st_mode)})")
        if mode.st_size == 0:
            raise UnreadableImage(path, "is empty (0 bytes)")
        if mode.st_size > MAX_IMAGE_FILE_BYTES:
            raise UnreadableImage(path, f"is {mode.st_size / 2**20:.0f} MiB, over the "
                                  f"{MAX_IMAGE_FILE_BYTES // 2**20} MiB an image file may have")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_IMAGE_FILE_BYTES + 1)  # it may have grown since fstat
    except OSError as error:  # EIO from a failing SD card or USB stick
        raise UnreadableImage(path, f"read error: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if not data:
        raise UnreadableImage(path, "is empty (0 bytes)")
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise UnreadableImage(path, f"is over the {MAX_IMAGE_FILE_BYTES // 2**20} MiB an image file may have")
    return data


def _header(path: Path, data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone: Pillow's Image.open decodes no pixels."""
    from PIL import Image, UnidentifiedImageError

    with _header_lock, warnings.catch_warnings():
        # Pillow warns above its own limit (89 MP) and raises above twice that; both are far over ours.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_known_formats()) as image:
                return str(image.format), int(image.size[0]), int(image.size[1])
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            size = f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "too many pixels"
            raise UnreadableImage(path, _too_large(size)) from None
        except UnidentifiedImageError:
            raise UnreadableImage(path, f"not an image this agent reads ({_FORMAT_NAMES}), "
                                  "or its header is damaged") from None
        except Exception as error:  # a damaged header raises anything from SyntaxError to struct.error
            raise UnreadableImage(path, f"damaged image header ({type(error).__name__}: {error})") from None


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise UnreadableImage(path, f"has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise UnreadableImage(path, _too_large(f"{width}x{height} = {width * height / 1e6:.0f} megapixels"))


def _too_large(size: str) -> str:
    return (f"{size}, over the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixel limit: scale it down "
            f"(a face or a plate needs far less, e.g. 4000x3000)")


def _known_formats() -> list[str]:
    from PIL import Image

    Image.init()
    return [name for name in _FORMATS if name in Image.OPEN]


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
