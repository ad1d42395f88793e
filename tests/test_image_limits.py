"""Images with limits (issue 32, part 6): every image file the agent reads goes through
models/image_io.py, which refuses what is over the pixel budget from the header alone and names every
file it cannot read; no image shape crashes the face detector or the plate reader.

Every image is made here in tmp_path. The 20000x20000 one is a 1-bit palette PNG written row by row
(about 50 kB on disk), which OpenCV would decode into 1.2 GB of BGR: the commands run as real
subprocesses under a 1 GiB address-space limit, so that decoding it is impossible and only a refusal
before decoding passes.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.image_io import MAX_IMAGE_PIXELS, UnreadableImage, image_files, read_image

REPO = Path(__file__).resolve().parents[1]
# Far below the 1.2 GB a 20000x20000 image decodes to; above what these commands take with the
# images they should read (eval faces on a 40 MP photo needs about 0.8 GB of address space).
MEMORY_LIMIT = 1 << 30


# --- making the files -----------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_flat_png(path: Path, width: int, height: int) -> Path:
    """A flat 1-bit palette PNG of any size, compressed row by row without ever holding its pixels."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then every pixel palette entry 0
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)  # 1 bit, palette
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"PLTE", bytes((90, 120, 150)))
                     + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def textured(height: int = 240, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(32)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)


def write_strip(path: Path, width: int, height: int) -> Path:
    """A 2 x 65000 or 65000 x 2 colour PNG with something on it."""
    assert cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


def write_truncated_jpeg(path: Path) -> Path:
    data = cv2.imencode(".jpg", textured())[1].tobytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_unreadable_files(folder: Path) -> dict[str, str]:
    """Every kind of unreadable file in ``folder``: name -> a word its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    write_flat_png(folder / "huge.png", 20000, 20000)
    write_truncated_jpeg(folder / "truncated.jpg")
    (folder / "text.jpg").write_text("this is a note, not a photo\n", encoding="utf-8")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "folder.png").mkdir()
    return {"huge.png": "megapixel", "truncated.jpg": "truncated", "text.jpg": "not an image",
            "empty.jpg": "empty", "folder.png": "directory"}


def portraits() -> tuple[np.ndarray, np.ndarray]:
    from agent.simulation_media import MediaUnavailable, sample_faces

    try:
        return sample_faces()
    except MediaUnavailable as exc:
        pytest.skip(str(exc))


# --- running the commands -------------------------------------------------------------------------

def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def without_read_override(command: list[str]) -> list[str]:
    """``command`` run, as root, without the capabilities that let root read a file whatever its mode
    (util-linux's setpriv), so that a mode-000 file is unreadable to it as to anyone else."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("as root a mode-000 file is readable; util-linux's setpriv is needed to drop that")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]


def agent(*args: str, drop_read_override: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m agent.cli ARGS`` from the repository, under the memory limit."""
    command = [sys.executable, "-m", "agent.cli", *args]
    if drop_read_override:
        command = without_read_override(command)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
                          preexec_fn=_limit_memory)


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def reasons(files: list[dict[str, str]], key: str = "file") -> dict[str, str]:
    return {Path(entry[key]).name: entry["reason"] for entry in files}


# --- the module -----------------------------------------------------------------------------------

def test_an_image_over_the_budget_is_refused_from_its_header(tmp_path: Path) -> None:
    huge = write_flat_png(tmp_path / "huge.png", 20000, 20000)  # over Pillow's own bomb limit too
    with pytest.raises(UnreadableImage) as refused:
        read_image(huge)
    assert refused.value.path == huge and "400 megapixels" in refused.value.reason
    assert "40 megapixel limit" in refused.value.reason
    # Just over the agent's budget, far below Pillow's: the agent's budget is what refuses it.
    width = 8000
    over = write_flat_png(tmp_path / "over.png", width, MAX_IMAGE_PIXELS // width + 1)
    with pytest.raises(UnreadableImage, match=r"8000x5001 = 40 megapixels, over the 40 megapixel limit"):
        read_image(over)
    at_budget = write_flat_png(tmp_path / "at.png", width, MAX_IMAGE_PIXELS // width)
    assert read_image(at_budget, unchanged=True).shape[:2] == (MAX_IMAGE_PIXELS // width, width)


@pytest.mark.parametrize("width, height", [(2, 65000), (65000, 2), (1, 1)])
def test_any_shape_within_the_budget_is_read(tmp_path: Path, width: int, height: int) -> None:
    image = read_image(write_strip(tmp_path / "strip.png", width, height))
    assert image.shape == (height, width, 3)


def test_unreadable_files_each_name_their_reason(tmp_path: Path) -> None:
    expected = write_unreadable_files(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")  # would block a plain open() for ever
    expected["pipe.jpg"] = "FIFO"
    png = cv2.imencode(".png", textured())[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    expected["cut.png"] = "truncated"
    (tmp_path / "scribbled.png").write_bytes(png[:8] + b"\xff" * 40 + png[48:])  # the IHDR overwritten
    expected["scribbled.png"] = "header"
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    expected["gone.jpg"] = "no such file"
    assert {p.name for p in image_files(tmp_path)} == set(expected)  # the directory and the FIFO too
    for name, word in expected.items():
        with pytest.raises(UnreadableImage) as refused:
            read_image(tmp_path / name)
        assert refused.value.path == tmp_path / name
        assert word in refused.value.reason, (name, refused.value.reason)
        assert str(refused.value) == f"{tmp_path / name}: {refused.value.reason}"


def test_a_file_without_read_permission_is_unreadable(tmp_path: Path) -> None:
    photo = tmp_path / "locked.jpg"
    photo.write_bytes(cv2.imencode(".jpg", textured())[1].tobytes())
    photo.chmod(0)
    probe = ("import sys\nfrom models.image_io import UnreadableImage, read_image\n"
             "try:\n    read_image(sys.argv[1])\nexcept UnreadableImage as e:\n    print(e.reason)\n")
    command = without_read_override([sys.executable, "-c", probe, str(photo)])
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "permission denied" in result.stdout, result.stdout + result.stderr


def test_decoded_as_opencv_decodes_a_file(tmp_path: Path) -> None:
    """The same pixels cv2.imread gives: colour with EXIF rotation by default, grey kept grey as stored."""
    from PIL import Image

    photo = tmp_path / "turned.jpg"
    image = Image.fromarray(textured()[:, :, ::-1].copy())
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    image.save(photo, exif=exif.tobytes())
    assert np.array_equal(read_image(photo), cv2.imread(str(photo), cv2.IMREAD_COLOR))
    assert read_image(photo).shape[:2] == (320, 240)
    grey = tmp_path / "grey.pgm"
    cv2.imwrite(str(grey), textured()[:, :, 0])
    assert np.array_equal(read_image(grey, unchanged=True), cv2.imread(str(grey), cv2.IMREAD_UNCHANGED))
    assert read_image(grey).shape == (240, 320, 3)


@pytest.mark.parametrize("height, width", [(65000, 2), (2, 65000), (1, 5000), (5000, 1), (3, 100000)])
def test_no_shape_crashes_the_face_detector_or_the_plate_reader(height: int, width: int) -> None:
    from models.face import FaceEngine
    from models.plate import PlateReader

    frame = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert FaceEngine().detect(frame) == []
    reader = PlateReader("us")
    assert isinstance(reader.read(frame), list)  # noise may read as a letter or two: what matters is
    assert isinstance(reader.read(frame, (0, 0, width, height)), list)  # no cv2 assertion, also as a crop


def test_a_camera_replaying_a_folder_skips_an_unreadable_file_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.config import CameraConfig
    from drivers.camera_sources import ImageFolderSource

    assert cv2.imwrite(str(tmp_path / "a.png"), textured())
    write_flat_png(tmp_path / "b.png", 20000, 20000)
    write_truncated_jpeg(tmp_path / "c.jpg")
    replay = {"realtime": False, "loop": True}
    source = ImageFolderSource(CameraConfig(name="cam1", source=str(tmp_path), replay=replay))
    source.open()
    with caplog.at_level(logging.WARNING, logger="edge_agent.camera"):
        frames = [source.read() for _ in range(3)]  # the loop passes the two bad files three times
    assert all(frame is not None and frame.shape == (240, 320, 3) for frame in frames)
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert any("b.png" in m and "megapixel" in m for m in skipped)
    assert any("c.jpg" in m and "truncated" in m for m in skipped)


# --- the commands ---------------------------------------------------------------------------------

def test_eval_faces_reports_unreadable_files_apart_from_the_figures(tmp_path: Path) -> None:
    resident, stranger = portraits()
    root = tmp_path / "faces"
    (root / "gallery" / "hopper").mkdir(parents=True)
    assert cv2.imwrite(str(root / "gallery" / "hopper" / "portrait.jpg"), resident)
    probes = root / "probes" / "hopper"
    expected = write_unreadable_files(probes)
    assert cv2.imwrite(str(probes / "portrait.png"), resident)
    write_strip(probes / "tall.png", 2, 65000)
    write_strip(probes / "wide.png", 65000, 2)
    (root / "probes" / "stranger").mkdir()
    assert cv2.imwrite(str(root / "probes" / "stranger" / "astronaut.png"), stranger)
    write_truncated_jpeg(root / "gallery" / "hopper" / "damaged.jpg")
    expected["damaged.jpg"] = "truncated"

    result = json.loads(succeeded(agent("eval", "faces", str(root), "--json")))
    # Only the three readable resident probes are residents: the portrait admitted, the strips with no face.
    assert result["residents"] == 3 and result["residents_admitted"] == 1 and result["no_face"] == 2
    assert result["strangers"] == 1 and result["strangers_admitted"] == 0
    assert result["unreadable"] == len(expected)
    found = reasons(result["unreadable_files"])
    assert set(found) == set(expected)
    for name, word in expected.items():
        assert word in found[name], (name, found[name])
    assert "gallery/hopper/damaged.jpg" in {e["file"] for e in result["unreadable_files"]}

    text = succeeded(agent("eval", "faces", str(root)))
    assert "residents: 1/3 admitted" in text
    assert f"unreadable: {len(expected)} file(s), left out of the figures above" in text
    assert "unreadable probes/hopper/huge.png: 400 megapixels" in text


def test_eval_faces_pairs_leave_out_pairs_with_an_unreadable_image(tmp_path: Path) -> None:
    resident, _ = portraits()
    assert cv2.imwrite(str(tmp_path / "a.jpg"), resident)
    assert cv2.imwrite(str(tmp_path / "b.png"), resident)
    write_truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same\na.jpg,b.png,1\na.jpg,cut.jpg,1\n"
                                        "missing.jpg,b.png,0\n", encoding="utf-8")
    result = json.loads(succeeded(agent("eval", "faces", str(tmp_path), "--json")))
    assert result["pairs"] == 1 and result["accuracy"] == 1.0 and result["unreadable_pairs"] == 2
    assert reasons(result["unreadable_files"]) == {"cut.jpg": "the JPEG data is damaged or truncated",
                                                   "missing.jpg": "no such file"}


def test_eval_faces_names_a_file_it_may_not_read(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    (root / "gallery" / "someone").mkdir(parents=True)
    (root / "probes" / "someone").mkdir(parents=True)
    locked = root / "probes" / "someone" / "locked.jpg"
    locked.write_bytes(cv2.imencode(".jpg", textured())[1].tobytes())
    locked.chmod(0)
    result = json.loads(succeeded(agent("eval", "faces", str(root), "--json", drop_read_override=True)))
    assert result["residents"] == 0 and result["no_face"] == 0
    assert "permission denied" in reasons(result["unreadable_files"])["locked.jpg"]


def test_eval_plates_reports_unreadable_files_apart_from_the_figures(tmp_path: Path) -> None:
    from tests.plate_renders import render_mainland_plate

    expected = write_unreadable_files(tmp_path)
    assert cv2.imwrite(str(tmp_path / "plate.png"), render_mainland_plate("皖A12345"))
    write_strip(tmp_path / "tall.png", 2, 65000)
    write_strip(tmp_path / "wide.png", 65000, 2)
    # the strips labelled as crops too: eval plates then reads each whole as a plate
    rows = ["image,plate,x,y,w,h", "plate.png,皖A12345,,,,", "tall.png,皖A00001,0,0,2,65000",
            "wide.png,皖A00002,0,0,65000,2", "missing.jpg,皖A00003,,,,"]
    rows += [f"{name},皖B{index:05d},,,," for index, name in enumerate(expected)]
    expected["missing.jpg"] = "no such file"
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = json.loads(succeeded(agent("eval", "plates", str(tmp_path), "--json", "--formats", "cn")))
    assert result["images"] == 3 and result["exact"] == 1  # the plate, and the two strips read as nothing
    assert result["exact_rate"] == round(1 / 3, 4) and result["no_read"] == 2
    assert result["unreadable"] == len(expected)
    found = reasons(result["unreadable_files"], key="image")
    assert set(found) == set(expected)
    for name, word in expected.items():
        assert word in found[name], (name, found[name])

    text = succeeded(agent("eval", "plates", str(tmp_path), "--formats", "cn"))
    assert f"unreadable: {len(expected)} (left out of every figure above)" in text
    assert "unreadable truncated.jpg: the JPEG data is damaged or truncated" in text


def test_whitelist_add_refuses_an_unreadable_photo_by_name(tmp_path: Path) -> None:
    resident, _ = portraits()
    config = tmp_path / "agent.yaml"
    key, state = tmp_path / "whitelist.key", tmp_path / "state"
    config.write_text(f"node: {{site: s, building: b, node_id: n}}\nstorage: {{state_dir: {state}}}\n"
                      f"whitelist:\n  key: {{file: {key}}}\n", encoding="utf-8")
    succeeded(agent("whitelist", "keygen", "--out", str(key)))
    good = tmp_path / "good.jpg"
    assert cv2.imwrite(str(good), resident)
    photos = tmp_path / "photos"
    expected = write_unreadable_files(photos)
    for name, word in expected.items():
        # with a good photo beside it: the technician meant both, so nothing is saved
        result = agent("whitelist", "add", "--id", "R-1", "--photo", str(good), "--photo", str(photos / name),
                       "--config", str(config))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"error: {photos / name}: " in result.stderr and word in result.stderr, result.stderr
    for width, height in ((2, 65000), (65000, 2)):  # readable, no face: refused as such, not a cv2 abort
        strip = write_strip(tmp_path / f"strip{width}.png", width, height)
        result = agent("whitelist", "add", "--id", "R-1", "--photo", str(strip), "--config", str(config))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "no usable face" in result.stderr
    assert json.loads(succeeded(agent("whitelist", "list", "--json", "--config", str(config)))) == []
    assert "added R-1 with 1 face template(s)" in succeeded(
        agent("whitelist", "add", "--id", "R-1", "--photo", str(good), "--config", str(config)))


def test_whitelist_import_skips_a_person_with_an_unreadable_photo(tmp_path: Path) -> None:
    resident, stranger = portraits()
    config = tmp_path / "agent.yaml"
    key, state = tmp_path / "whitelist.key", tmp_path / "state"
    config.write_text(f"node: {{site: s, building: b, node_id: n}}\nstorage: {{state_dir: {state}}}\n"
                      f"whitelist:\n  key: {{file: {key}}}\n", encoding="utf-8")
    succeeded(agent("whitelist", "keygen", "--out", str(key)))
    people = tmp_path / "people"
    (people / "R-1").mkdir(parents=True)
    (people / "R-2").mkdir()
    assert cv2.imwrite(str(people / "R-1" / "a.jpg"), resident)
    assert cv2.imwrite(str(people / "R-2" / "a.jpg"), stranger)
    write_flat_png(people / "R-2" / "b.png", 20000, 20000)
    result = agent("whitelist", "import", str(people), "--config", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "imported 1 people (0 replaced), skipped 1" in result.stdout
    assert "R-2" in result.stderr and "b.png" in result.stderr and "megapixel" in result.stderr
    listed = json.loads(succeeded(agent("whitelist", "list", "--json", "--config", str(config))))
    assert [p["id"] for p in listed] == ["R-1"]
