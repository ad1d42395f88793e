"""Enrolment protects the gallery (issue 33 part 3), as a technician meets it: ``edge-agent whitelist add``
and ``whitelist enroll --camera`` run as subprocesses against a real key, config and encrypted file, on
real photos (dlib). Photos that would make a poor or ambiguous template are refused by name with nothing
saved; probable typing mistakes are warned about; the camera keeps templates from several head poses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_whitelist_cli import Node

GATES = ("hardware:\n  pin_factory: mock\n  gates: [{name: main, lock_relay: 17}]\n"
         "  barriers: [{name: car-in, pulse_relay: 22, safety_loop: 23}]\n")


@pytest.fixture
def node(tmp_path: Path) -> Node:
    node = Node(tmp_path)
    node.write_config(hardware=GATES)
    node.run("whitelist", "keygen", "--out", str(node.key))
    return node


@pytest.fixture
def gallery(shared_data: Path) -> Path:
    return shared_data / "faces" / "gallery"


def refused(node: Node, photo: Path, *words: str) -> str:
    """Run ``whitelist add`` on one photo: exit 1, the photo named, each word said, nothing saved."""
    result = node.run("whitelist", "add", "--id", "R-9", "--photo", str(photo), ok=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {photo}: " in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "R-9" not in node.people()
    return result.stderr


def test_a_generated_image_without_a_face_is_refused(node: Node, tmp_path: Path) -> None:
    photo = tmp_path / "wall.png"
    rng = np.random.default_rng(7)  # a textured wall: edges everywhere, no face
    wall = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 2)
    assert cv2.imwrite(str(photo), wall)
    refused(node, photo, "no face found")


def test_two_faces_side_by_side_are_refused(node: Node, gallery: Path, tmp_path: Path) -> None:
    left, right = cv2.imread(str(gallery / "obama" / "obama.jpg")), cv2.imread(str(gallery / "biden" / "biden.jpg"))
    height = 600
    pair = np.hstack([cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height)) for img in (left, right)])
    photo = tmp_path / "two.jpg"
    assert cv2.imwrite(str(photo), pair)
    refused(node, photo, "2 faces", "one person only")


def test_a_small_background_face_does_not_refuse_a_good_portrait(node: Node, gallery: Path, tmp_path: Path) -> None:
    portrait = cv2.imread(str(gallery / "obama" / "obama.jpg"))
    passer_by = cv2.imread(str(gallery / "biden" / "biden.jpg"))
    small = cv2.resize(passer_by, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA)  # a ~50 px face
    portrait[: small.shape[0], : small.shape[1]] = small
    photo = tmp_path / "portrait.jpg"
    assert cv2.imwrite(str(photo), portrait)
    assert "added R-1 with 1 face template(s)" in node.run("whitelist", "add", "--id", "R-1", "--photo",
                                                           str(photo)).stdout


def test_a_face_too_small_for_a_template_is_refused(node: Node, gallery: Path, tmp_path: Path) -> None:
    image = cv2.imread(str(gallery / "obama" / "obama.jpg"))
    # a quarter of the size: a ~65 px face, which a gate would still encode (min_face_px 40)
    photo = tmp_path / "small.jpg"
    assert cv2.imwrite(str(photo), cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA))
    refused(node, photo, "too small", "80 px")


def test_a_blurred_face_is_refused(node: Node, gallery: Path, tmp_path: Path) -> None:
    image = cv2.imread(str(gallery / "obama" / "obama.jpg"))
    photo = tmp_path / "blurred.jpg"
    assert cv2.imwrite(str(photo), cv2.GaussianBlur(image, (0, 0), 8))
    refused(node, photo, "blurred", "sharpness")


def test_the_same_face_under_another_id_is_refused_unless_forced(node: Node, gallery: Path) -> None:
    node.run("whitelist", "add", "--id", "R-1", "--photo", str(gallery / "obama" / "obama.jpg"))
    node.run("whitelist", "add", "--id", "R-3", "--photo", str(gallery / "biden" / "biden.jpg"))  # someone else
    second = str(gallery / "obama" / "obama2.jpg")
    result = node.run("whitelist", "add", "--id", "R-2", "--photo", second, ok=False)
    assert "already enrolled as R-1" in result.stderr and "--force" in result.stderr, result.stderr
    assert "R-2" not in node.people()

    node.run("whitelist", "add", "--id", "R-2", "--photo", second, "--force")
    assert node.people()["R-2"]["templates"] == 1
    forced = node.changes()[-1]
    assert forced["action"] == "add" and forced["person"] == "R-2" and forced["forced_duplicate_of"] == "R-1"
    assert 0 < forced["distance"] < 0.4
    # replacing a person with a new photo of themselves is not a duplicate of themselves
    node.run("whitelist", "add", "--id", "R-3", "--photo", str(gallery / "biden" / "biden2.jpg"), "--replace")


def test_probable_mistakes_are_warned_about_and_saved(node: Node, gallery: Path) -> None:
    result = node.run("whitelist", "add", "--id", "R-1", "--photo", str(gallery / "obama" / "obama.jpg"),
                      "--gate", "main", "--gate", "mian", "--gate", "car-in", "--plate", "京A12345",
                      "--plate", "AB123CD", "--valid-until", "2020-01-31")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, result.stderr
    assert "'mian'" in warnings[0] and "main" in warnings[0] and "car-in" in warnings[0]
    assert "'AB123CD'" in warnings[1] and "plates.formats" in warnings[1]
    assert "2020-01-31" in warnings[2] and "past" in warnings[2]
    assert node.people()["R-1"]["gates"] == ["car-in", "main", "mian"]

    quiet = node.run("whitelist", "add", "--id", "R-2", "--photo", str(gallery / "biden" / "biden.jpg"),
                     "--gate", "main", "--plate", "京B54321", "--valid-until", "2099-01-01")
    assert "warning" not in quiet.stderr, quiet.stderr


def test_camera_enrolment_keeps_several_head_poses(node: Node, shared_data: Path) -> None:
    clip = shared_data / "faces" / "video" / "short_hamilton_clip.mp4"
    node.write_config(hardware=GATES + f"  cameras: [{{name: door, source: '{clip}', gate: main}}]\n")
    result = node.run("whitelist", "enroll", "--id", "R-1", "--camera", "door", "--keep", "3",
                      "--seconds", "120")
    kept = node.changes()[-1]
    assert kept["action"] == "enroll" and kept["templates"] == node.people()["R-1"]["templates"]
    assert kept["templates"] >= 2 and len(set(kept["poses"])) == kept["templates"], kept
    assert kept["poses"][0] == "frontal", kept
    assert f"kept {kept['templates']} template(s)" in result.stdout and ", ".join(kept["poses"]) in result.stdout


def test_photos_of_two_people_under_one_id_are_refused(node: Node, gallery: Path) -> None:
    obama, biden = str(gallery / "obama" / "obama.jpg"), str(gallery / "biden" / "biden.jpg")
    result = node.run("whitelist", "add", "--id", "R-1", "--photo", obama, "--photo", biden, ok=False)
    assert "does not look like the other photo" in result.stderr and "R-1" in result.stderr, result.stderr
    assert node.people() == {}
    node.run("whitelist", "add", "--id", "R-1", "--photo", obama, "--photo", str(gallery / "obama" / "obama2.jpg"))
    assert node.people()["R-1"]["templates"] == 2
