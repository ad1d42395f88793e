"""``eval faces`` on the shared photos, on pairs.csv, and on a small generated grey PGM set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli import main as cli_main
from agent.eval_faces import GALLERY_KEYS, PAIRS_KEYS


def main(argv: list[str]) -> int:
    return cli_main(["eval", *argv])


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, float]:
    assert main(["faces", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_shared_gallery_and_probes(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(capsys, str(shared_data / "faces"))
    assert tuple(result) == GALLERY_KEYS
    assert result == {
        "residents": 7,
        "residents_admitted": 7,
        "residents_refused": 0,
        "wrong_person": 0,
        "strangers": 1,
        "strangers_admitted": 0,
        "no_face": 0,
        "unreadable": 0,
        "unreadable_files": [],
    }


def test_shared_pairs(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(capsys, str(shared_data / "faces"), "--pairs")
    assert tuple(result) == PAIRS_KEYS
    assert result["pairs"] == 136 and result["false_accepts"] == 0 and result["no_face"] == 0
    assert result["accuracy"] >= 0.98


def test_naive_tolerance_from_config_admits_more(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("node: {site: a, building: b, node_id: c}\nfaces:\n  tolerance: 0.9\n  margin: 0.0\n")
    loose = run_json(capsys, str(shared_data / "faces"), "--config", str(config))
    assert loose["strangers_admitted"] == 1  # anyone is "someone" at 0.9: the config was really used
    config.write_text("faces:\n  tolerence: 0.5\n")
    assert main(["faces", str(shared_data / "faces"), "--config", str(config)]) == 78


def orl_style(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A 92x112 grey crop like the AT&T/ORL faces (face ~60 px wide)."""
    left, top, right, bottom = box
    width = (right - left) * 1.6
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(cx - width / 2), int(cy - width * 112 / 92 / 2)
    padded = cv2.copyMakeBorder(image, 600, 600, 600, 600, cv2.BORDER_REPLICATE)
    crop = padded[y0 + 600 : y0 + 600 + int(width * 112 / 92), x0 + 600 : x0 + 600 + int(width)]
    return cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (92, 112), interpolation=cv2.INTER_AREA)


def test_generated_grey_pgm_set(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.face import FaceEngine

    engine = FaceEngine()
    faces = shared_data / "faces"
    layout = {
        "gallery/obama/a.pgm": "gallery/obama/obama.jpg",
        "gallery/kit/a.pgm": "gallery/kit_harington/john1.jpeg",
        "gallery/kit/b.pgm": "gallery/kit_harington/john2.jpeg",
        "gallery/rose/a.pgm": "gallery/rose_leslie/img1.jpg",
        "probes/obama/a.pgm": "probes/obama/obama1.jpg",
        "probes/obama/b.png": "probes/obama/obama3.jpg",
        "probes/kit/a.pgm": "probes/kit_harington/johnsnow_test1.jpg",
        "probes/rose/a.pgm": "gallery/rose_leslie/img2.jpg",
        "probes/lin/a.pgm": "probes/lin_manuel_miranda/lin-manuel-miranda.png",
        "probes/biden/a.pgm": "gallery/biden/biden.jpg",
    }
    for target, source in layout.items():
        image = cv2.imread(str(faces / source))
        b = engine.detect(image)[0]
        path = tmp_path / target
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), orl_style(image, (b.left, b.top, b.right, b.bottom)))
    (tmp_path / "probes" / "rose" / "notes.txt").write_text("not an image")
    blank = tmp_path / "probes" / "kit" / "blank.pgm"
    assert cv2.imwrite(str(blank), np.full((112, 92), 128, np.uint8))
    result = run_json(capsys, str(tmp_path))
    assert result == {
        "residents": 5,
        "residents_admitted": 4,
        "residents_refused": 1,  # the blank image
        "wrong_person": 0,
        "strangers": 2,
        "strangers_admitted": 0,
        "no_face": 1,
        "unreadable": 0,
        "unreadable_files": [],
    }
    pairs = "image_a,image_b,same\n" + "\n".join(
        [
            "gallery/obama/a.pgm,probes/obama/a.pgm,1",
            "gallery/kit/a.pgm,probes/kit/a.pgm,1",
            "gallery/kit/a.pgm,gallery/obama/a.pgm,0",
            "probes/lin/a.pgm,gallery/rose/a.pgm,0",
            "probes/kit/blank.pgm,gallery/kit/b.pgm,1",
        ]
    )
    pairs_dir = tmp_path / "pairs_only"
    pairs_dir.mkdir()
    (pairs_dir / "pairs.csv").write_text(pairs.replace("gallery/", "../gallery/").replace("probes/", "../probes/"))
    result = run_json(capsys, str(pairs_dir))
    assert result == {"pairs": 5, "accuracy": 0.8, "false_accepts": 0, "false_rejects": 1, "no_face": 1,
                      "unreadable_pairs": 0, "unreadable": 0, "unreadable_files": []}
    assert main(["faces", str(pairs_dir)]) == 0
    assert "accuracy 80.00%" in capsys.readouterr().out


def test_folder_without_layout_is_an_error(tmp_path: Path) -> None:
    assert main(["faces", str(tmp_path)]) == 2
