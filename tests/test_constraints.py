"""constraints.txt pins the node's runtime: within setup.cfg's ranges, complete, and what CI runs on."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Not pinned: the venv brings its own (Debian's 66 on the Pi) and setup.cfg only caps it.
UNPINNED = {"setuptools"}


def runtime_requirements() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = (line.split("#")[0].strip() for line in config["options"]["install_requires"].splitlines())
    return [Requirement(line) for line in lines if line]


def pins() -> dict[str, Version]:
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def test_every_runtime_requirement_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        if name in UNPINNED:
            assert name not in pinned
            continue
        assert name in pinned, f"{requirement.name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned[name]} outside setup.cfg's {requirement}"
        )


def test_the_known_bad_onnxruntime_is_excluded() -> None:
    onnxruntime = next(r for r in runtime_requirements() if r.name == "onnxruntime")
    assert not onnxruntime.specifier.contains("1.21.0")  # SIGILL on a Pi 4 (bench/pi_cpus.sh)
    assert onnxruntime.specifier.contains("1.21.1")


def test_pkg_resources_stays_for_face_recognition_models() -> None:
    setuptools = next(r for r in runtime_requirements() if r.name == "setuptools")
    assert not setuptools.specifier.contains("82.0.0")  # removed pkg_resources
    import face_recognition_models  # noqa: F401  (imports pkg_resources)


def test_this_environment_runs_the_pinned_versions() -> None:
    """make setup installs with -c constraints.txt: what the tests exercise is what a Pi installs."""
    wrong = {}
    for name, version in pins().items():
        installed = Version(metadata.version(name))
        if installed != version:
            wrong[name] = f"{installed} installed, {version} pinned"
    assert not wrong, wrong
