"""Signed bundles (real Ed25519, real encrypted store) and enrolment from real photos with dlib."""

from __future__ import annotations

import base64
import copy
import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import CameraConfig
from agent.config_faces import FaceConfig
from agent.whitelist import Person
from agent.whitelist_bundle import apply_bundle_payload, build_bundle, decode_templates
from agent.whitelist_store import WhitelistStore

RNG = np.random.default_rng(11)
NODE = "site-1/b-03/n1"


def person(person_id: str, **changes: object) -> Person:
    return Person(id=person_id, templates=RNG.normal(0, 0.1, size=(2, 128)).astype(np.float32),
                  **changes)  # type: ignore[arg-type]


@pytest.fixture
def platform() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path) -> WhitelistStore:
    return WhitelistStore(tmp_path / "whitelist.bin", os.urandom(32), tmp_path / "audit.log")


def test_full_then_delta(store: WhitelistStore, platform: Ed25519PrivateKey) -> None:
    public = platform.public_key()
    a, b, c = person("R-1", gates=("main",), plates=("京A12345",)), person("R-2"), person("V-3")
    with store.edit() as wl:  # a local person with a display name, and one the platform does not know
        wl.put(a.with_changes(name="张三"))
        wl.put(person("LOCAL-9"))
    summary = apply_bundle_payload(store, build_bundle(platform, [a, b], version=1), public, node=NODE)
    assert summary.startswith("applied full bundle version 1: 1 added, 1 updated, 1 removed")
    wl = store.load()
    assert [p.id for p in wl] == ["R-1", "R-2"] and wl.bundle_version == 1
    assert wl.get("R-1").name == "张三"  # the local name survives; the bundle never carries one  # type: ignore[union-attr]
    assert np.array_equal(wl.get("R-2").templates, b.templates)  # type: ignore[union-attr]
    assert wl.plates() == {"京A12345": "R-1"}

    delta = build_bundle(platform, [c, b.with_changes(enabled=False)], version=2, kind="delta", remove=["R-1"])
    assert apply_bundle_payload(store, delta, public, node=NODE).endswith(
        "version 2: 1 added, 1 updated, 1 removed, 2 people")
    wl = store.load()
    assert [p.id for p in wl] == ["R-2", "V-3"] and wl.bundle_version == 2
    assert wl.check("R-2", "main", datetime.now()).reason == "disabled"
    audit = [json.loads(line) for line in store.audit.path.read_text().splitlines()]  # type: ignore[union-attr]
    assert [(e["action"], e["person"]) for e in audit if e.get("version") == 2] == [
        ("bundle.add", "V-3"), ("bundle.update", "R-2"), ("bundle.remove", "R-1"), ("bundle.apply", None)]
    assert all(e["actor"] == "platform" for e in audit[1:])  # [0]: the local edit above saved generation 1
    assert all("张三" not in json.dumps(e, ensure_ascii=False) for e in audit)
    assert audit[-1]["action"] == "bundle.apply" and audit[-1]["version"] == 2


def test_refusals_change_nothing(store: WhitelistStore, platform: Ed25519PrivateKey) -> None:
    public = platform.public_key()
    apply_bundle_payload(store, build_bundle(platform, [person("R-1")], version=5), public)
    before = store.path.read_bytes()

    def refused(payload: dict, match: str, **kwargs: object) -> None:
        with pytest.raises(ValueError, match=match):
            apply_bundle_payload(store, payload, public, **kwargs)  # type: ignore[arg-type]
        assert store.path.read_bytes() == before

    good = build_bundle(platform, [person("R-2")], version=6)
    refused(build_bundle(Ed25519PrivateKey.generate(), [person("R-2")], version=6), "bad signature")
    refused(build_bundle(platform, [person("R-2")], version=5), "not newer than the applied version 5")
    refused(build_bundle(platform, [person("R-2")], version=4), "replayed or out of order")
    tampered = copy.deepcopy(good)
    row = bytearray(base64.b64decode(tampered["people"][0]["templates"]))
    row[0] ^= 1
    tampered["people"][0]["templates"] = base64.b64encode(bytes(row)).decode()
    refused(tampered, "bad signature")
    for field, value in (("version", 7), ("kind", "delta"), ("people", [])):
        changed = {**good, field: value}
        refused(changed, "bad signature")
    refused({k: v for k, v in good.items() if k != "sig"}, "missing signature")
    refused(build_bundle(platform, [person("R-2")], version=7, kind="delta", base_version=3),
            "against version 3 but this node has version 5: send a full bundle")
    refused(build_bundle(platform, [person("R-2")], version=7, audience=["site-2"]), "not for this node",
            node=NODE)
    refused(build_bundle(platform, [person("R-2")], version=7, audience=["site-1/b-03"]), "not for this node")
    # a signed bundle that smuggles a name or a photo-sized blob is still refused
    with_name = {k: v for k, v in good.items() if k != "sig"}
    with_name["people"] = [{**good["people"][0], "name": "Zhang San"}]
    refused(_signed(platform, with_name), "display name must not be sent")
    with_photo = {k: v for k, v in good.items() if k != "sig"}
    with_photo["people"] = [{**good["people"][0], "templates": base64.b64encode(b"\xff\xd8\xff" * 100).decode()}]
    refused(_signed(platform, with_photo), "whole number of 128-float32 rows")
    with_extra = {**{k: v for k, v in good.items() if k != "sig"}, "photos": []}
    refused(_signed(platform, with_extra), "unknown bundle field")
    # and the good one still applies afterwards, with the right audience too
    apply_bundle_payload(store, build_bundle(platform, [person("R-2")], version=6, audience=["site-1/b-03"]),
                         public, node=NODE)
    assert [p.id for p in store.load()] == ["R-2"]


def _signed(key: Ed25519PrivateKey, body: dict) -> dict:
    from agent.signing import canonical_json

    return {**body, "sig": base64.b64encode(key.sign(canonical_json(body))).decode()}


def test_bundle_is_compact_and_carries_no_names(platform: Ed25519PrivateKey) -> None:
    people = [person(f"R-{i:04d}-1", name="某人") for i in range(100)]
    payload = build_bundle(platform, people, version=1)
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    assert "某人" not in text and "name" not in text
    # 100 people x 2 templates x 512 bytes, base64: ~137 kB; JSON overhead stays small
    assert len(text) < 100 * 2 * 512 * 4 / 3 * 1.1
    assert np.array_equal(decode_templates(payload["people"][3]["templates"]), people[3].templates)


# --- enrolment with real photos and dlib (models loaded once for this module) ---------------------

@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from agent.whitelist_enrol import make_engine

    return make_engine(FaceConfig())


def test_gallery_folder_to_signed_bundle_to_recognition(
    shared_data: Path, engine, store: WhitelistStore, platform: Ed25519PrivateKey, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    from agent.eval_faces import read_image
    from agent.whitelist_enrol import read_gallery

    faces = shared_data / "faces"
    gallery = tmp_path / "gallery"
    for name in ("obama", "biden"):  # symlinks: the photos stay in the shared data
        (gallery / name).mkdir(parents=True)
        for photo in (faces / "gallery" / name).iterdir():
            (gallery / name / photo.name).symlink_to(photo)
    (gallery / "obama" / "person.yaml").write_text("gates: [main]\nplates: ['京A·00001']\n")
    results = read_gallery(engine, gallery, allow_name=False)
    assert [r.problem for r in results] == [None, None]
    people = [r.person for r in results if r.person]
    assert [len(p.templates) for p in people] == [2, 2]
    payload = build_bundle(platform, people, version=1)
    data = json.dumps(payload).encode()
    for photo in (faces / "gallery").glob("*/*"):
        assert photo.read_bytes()[:2048] not in data  # no photo bytes in the bundle
    apply_bundle_payload(store, json.loads(data), platform.public_key())
    blob = store.path.read_bytes()
    for photo in (faces / "gallery").glob("*/*"):
        assert photo.read_bytes()[64:1024] not in blob
    assert len(blob) < 4 * 600 + 1000  # four templates and a little JSON, nothing photo-sized
    wl = store.load()
    assert wl.plates() == {"京A00001": "obama"}
    probe = read_image(faces / "probes" / "obama" / "obama1.jpg")
    box = engine.detect(probe)[0]
    match = wl.gallery().match(engine.encode(probe, box).encoding)
    assert match.person_id == "obama" and match.accepts(0.5, 0.06)
    assert wl.check(match.person_id, "main", datetime.now()).ok
    assert wl.check(match.person_id, "side", datetime.now()).reason == "gate"


def test_folder_problems_are_reported_per_person(shared_data: Path, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agent.whitelist_enrol import read_gallery

    root = tmp_path / "gallery"
    (root / "bad id!").mkdir(parents=True)
    (root / "R-1").mkdir()
    (root / "R-1" / "blank.pgm").write_bytes(b"P5\n92 112\n255\n" + bytes(92 * 112))  # grey, no face
    (root / "R-2").mkdir()
    (root / "R-2" / "a.jpg").symlink_to(shared_data / "faces" / "gallery" / "rose_leslie" / "img1.jpg")
    (root / "R-2" / "person.yaml").write_text("name: Rose\n")
    results = {r.person.id if r.person else r.problem.split(":")[0]: r for r in  # type: ignore[union-attr]
               read_gallery(engine, root, allow_name=False)}
    assert "person id" in results["bad id!"].problem  # type: ignore[operator]
    assert "no usable face" in results["R-1"].problem  # type: ignore[operator]
    assert "display name must not be sent" in results["R-2"].problem  # type: ignore[operator]
    local = [r.person for r in read_gallery(engine, root, allow_name=True) if r.person]
    assert [(p.id, p.name) for p in local] == [("R-2", "Rose")]


def test_enrol_from_a_camera_keeps_the_best_single_face_frames(shared_data: Path, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agent.whitelist_enrol import enrol_from_camera
    from models.face import Gallery

    frames = tmp_path / "frames"
    frames.mkdir()
    faces = shared_data / "faces"
    # two photos of Obama, and a scene with two people which must not be used
    (frames / "1.jpg").symlink_to(faces / "gallery" / "obama" / "obama.jpg")
    (frames / "2.jpg").symlink_to(faces / "scenes" / "obama_and_biden.jpg")
    (frames / "3.jpg").symlink_to(faces / "gallery" / "obama" / "obama2.jpg")
    camera = CameraConfig(name="door", source=f"{frames}/", fps=10, replay={"realtime": True})
    templates = enrol_from_camera(engine, camera, keep=2, seconds=10, interval=0.0).templates
    assert 1 <= len(templates) <= 2
    gallery = Gallery.from_templates(("obama", t) for t in templates)
    from agent.eval_faces import read_image

    biden = read_image(faces / "gallery" / "biden" / "biden.jpg")
    obama = read_image(faces / "probes" / "obama" / "obama1.jpg")
    assert gallery.match(engine.encode(obama, engine.detect(obama)[0]).encoding).distance < 0.5
    assert gallery.match(engine.encode(biden, engine.detect(biden)[0]).encoding).distance > 0.6
