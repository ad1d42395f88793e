"""Load a YAML file into :class:`agent.config.AgentConfig`, or explain every problem.

A technician sees one line per problem, each naming the key path and the YAML line and
column (``hardware.gates[0].lock_relay (line 12, column 19): …``), never a traceback.

The YAML is read with limits (:class:`_BoundedLoader`), so that no file can hang the agent or eat the
Pi's memory: a 529-byte "billion laughs" alias bomb used to take `check-config` past 1.5 GB.  Limits and
what each error means: docs/configuration.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agent.agent_config import AgentConfig
from agent.config import CameraConfig
from agent.config_files import FileCheckError, check_regular_file, read_regular_file

EX_CONFIG = 78  # sysexits.h: configuration error; systemd's RestartPreventExitStatus uses it

Path_ = tuple[str | int, ...]

# BOARD (physical header) numbers of the 40-pin header, mapped to BCM, so that "BOARD11" and 17
# are recognised as the same pin.
_BOARD_TO_BCM = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line else ""
        return f"{self.path or '<file>'}{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        head = f"{self.source}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


# Limits of the YAML itself. The example config with every key is ~14 KB, 4 levels deep and ~400 nodes;
# these leave room for a big site while keeping the worst case small (tests/test_config_hardening.py).
MAX_CONFIG_BYTES = 256 * 1024
MAX_DEPTH = 16  # deepest key of the schema: hardware.cameras[0].lane[0][0] is 6 levels (with the root)
MAX_NODES = 20_000
MAX_KEY_CHARS = 128
UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL
MAX_SCALAR_CHARS = 4096  # a path (PATH_MAX) or URL; Python refuses ints of more than 4300 digits anyway


class _LimitExceeded(yaml.MarkedYAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses aliases and tags, and counts depth, nodes and lengths while it
    composes.

    Aliases (``*name``) are refused outright: the schema never needs them, and an alias is how a few
    hundred bytes expand into billions of nodes (each walk of the graph, ours and pydantic's, visits
    every shared node again) or into a cycle (``&a [*a]``) that no walk ends.  Explicit tags
    (``!!int``, ``!!binary``, ``!!timestamp``) likewise: the schema types every value itself, and
    PyYAML's constructors fail on a tagged scalar they cannot read in ways of their own (``!!int`` on
    an empty value raises IndexError; tests/test_config_fuzz.py found it).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def _refuse(self, problem: str, mark: yaml.Mark | None) -> None:
        raise _LimitExceeded(problem=problem, problem_mark=mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._refuse(f"alias *{event.anchor} is not allowed in the config (write the values out)",
                         event.start_mark)
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            tag = tag.replace("tag:yaml.org,2002:", "!!")
            self._refuse(f"the tag {tag} is not allowed in the config (write the value without it)",
                         event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self._refuse(f"more than {MAX_NODES} values: this is not an edge-agent config", event.start_mark)
        if isinstance(event, yaml.ScalarEvent):
            is_key = isinstance(parent, yaml.MappingNode) and index is None
            limit = MAX_KEY_CHARS if is_key else MAX_SCALAR_CHARS
            if len(event.value) > limit:
                what = "key" if is_key else "value"
                self._refuse(f"{what} of {len(event.value)} characters; at most {limit}", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _load_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line/column) and the data it constructs, or ConfigError; bounded work and memory."""
    if len(text) > MAX_CONFIG_BYTES:
        message = f"the file is {len(text)} characters long; a config is at most {MAX_CONFIG_BYTES}"
        raise ConfigError(source, [ConfigProblem("", message)])
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses control characters at once
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    except _LimitExceeded as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(source, [ConfigProblem("", f"YAML refused: {exc.problem}", line, column)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError(source, [ConfigProblem("", f"YAML syntax error: {reason}", line, column)]) from None
    except Exception as exc:  # e.g. a date like 2024-13-45: whatever PyYAML raises, never a traceback
        raise ConfigError(source, [ConfigProblem("", f"YAML error: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Marks:
    """Line/column (1-based) of every key and value in the YAML, by key path."""

    def __init__(self) -> None:
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.duplicates: list[ConfigProblem] = []

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                child = (*path, key)
                if key in seen:
                    line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    self.duplicates.append(ConfigProblem(format_path(child), "key given twice", line, col))
                seen.add(key)
                self.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                # Scalars point at their value; mappings and lists at their key.
                if isinstance(value_node, yaml.MappingNode | yaml.SequenceNode):
                    self.marks[child] = self.key_marks[child]
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def locate(self, loc: tuple[Any, ...]) -> tuple[Path_, tuple[int, int] | None]:
        """Map a pydantic error location onto the YAML path, dropping pydantic's union tags."""
        path: Path_ = ()
        for part in loc:
            candidate = (*path, part)
            if candidate in self.marks:
                path = candidate
            elif isinstance(part, str) and ("[" in part or part in {"int", "str", "float", "bool"}):
                continue  # e.g. "function-after[...]" or the branch of an int | str union
            else:
                path = candidate  # a missing required key: report it under its parent's mark
                return path, self.marks.get(path[:-1])
        return path, self.marks.get(path)


def _validation_problems(error: ValidationError, marks: _Marks) -> list[ConfigProblem]:
    """One problem per key path: a union (``int | str``) fails once per branch, say it once."""
    by_path: dict[Path_, tuple[tuple[int, int] | None, list[str]]] = {}
    for item in error.errors(include_url=False):
        path, mark = marks.locate(tuple(item["loc"]))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            mark = marks.key_marks.get(path, mark)
            message = "unknown key (check the spelling; `edge-agent config schema` lists every key)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        elif isinstance(item.get("input"), bool) and item["type"] in {"int_type", "float_type"}:
            message = f"{str(item['input']).lower()} is not a number (write a number, e.g. 5)"
        _, messages = by_path.setdefault(path, (mark, []))
        if messages and message.startswith("Input should be ") and messages[-1].startswith("Input should be "):
            message = message.removeprefix("Input should be ")
        if message not in messages:
            messages.append(message)
    problems = []
    for path, (mark, messages) in by_path.items():
        line, column = mark if mark else (None, None)
        problems.append(ConfigProblem(format_path(path), " or ".join(messages), line, column))
    return problems


def bcm_number(pin: int | str) -> int | str:
    """The BCM number a pin name refers to, so that 17, GPIO17 and BOARD11 compare equal."""
    if isinstance(pin, int):
        return pin
    for prefix in ("GPIO", "BCM"):
        if pin.startswith(prefix) and pin.removeprefix(prefix).isdigit():
            return int(pin.removeprefix(prefix))
    for prefix in ("BOARD", "J8:"):
        if pin.startswith(prefix) and pin.removeprefix(prefix).isdigit():
            return _BOARD_TO_BCM.get(int(pin.removeprefix(prefix)), pin)
    return int(pin) if pin.isdigit() else pin


PIN_FIELDS = frozenset({"lock_relay", "door_contact", "exit_button", "assist_button", "raise_relay", "lower_relay",
                        "pulse_relay", "safety_loop", "approach_loop", "position_sensor", "alarm_pin", "fault_pin",
                        "pin"})


def _pin_conflicts(data: dict[str, Any], marks: _Marks) -> list[ConfigProblem]:
    """Two devices on one pin. Works on the raw YAML so it is reported even beside other errors."""
    problems: list[ConfigProblem] = []
    owners: dict[int | str, Path_] = {}
    hardware = data.get("hardware")
    if not isinstance(hardware, dict):
        return problems
    for section in ("gates", "barriers", "smoke_detectors", "indicators"):
        devices = hardware.get(section)
        for index, device in enumerate(devices if isinstance(devices, list) else []):
            if not isinstance(device, dict):
                continue
            for field, pin in device.items():
                if field not in PIN_FIELDS or not isinstance(pin, int | str) or isinstance(pin, bool):
                    continue
                path: Path_ = ("hardware", section, index, field)
                number = bcm_number(pin.strip().upper() if isinstance(pin, str) else pin)
                if number in owners:
                    line, column = marks.marks.get(path, (None, None))
                    problems.append(ConfigProblem(format_path(path),
                                                  f"pin {pin} is already used by {format_path(owners[number])}",
                                                  line, column))
                else:
                    owners[number] = path
    return problems


def _semantic_problems(config: AgentConfig, marks: _Marks) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []

    def problem(path: Path_, message: str) -> None:
        line, column = marks.marks.get(path, (None, None))
        problems.append(ConfigProblem(format_path(path), message, line, column))

    from agent.control import SOCKET_NAME

    socket_path = config.storage.state_dir / SOCKET_NAME
    if len(str(socket_path).encode()) > UNIX_SOCKET_PATH_MAX:  # bind() would fail once the devices run
        problem(("storage", "state_dir"), f"too long: the control socket {socket_path} would be over "
                                          f"{UNIX_SOCKET_PATH_MAX} bytes (the limit of a Unix socket's path)")

    hardware = config.hardware
    for section in ("gates", "barriers", "smoke_detectors", "indicators", "cameras"):
        seen: set[str] = set()
        for index, device in enumerate(getattr(hardware, section)):
            if device.name in seen:
                problem(("hardware", section, index, "name"), f"name {device.name!r} is used twice in {section}")
            seen.add(device.name)

    gate_names = {g.name for g in hardware.gates}
    lanes = gate_names | {b.name for b in hardware.barriers}
    for index, indicator in enumerate(hardware.indicators):
        if indicator.gate is not None and indicator.gate not in gate_names:
            problem(("hardware", "indicators", index, "gate"), f"no gate named {indicator.gate!r}")
    barrier_names = {b.name for b in hardware.barriers}
    for index, park in enumerate(config.parking):
        for field in ("entries", "exits"):
            for position, lane in enumerate(getattr(park, field)):
                if lane not in barrier_names:
                    problem(("parking", index, field, position), f"no barrier named {lane!r}")
    for index, camera in enumerate(hardware.cameras):
        if camera.gate is not None and camera.gate not in lanes:
            problem(("hardware", "cameras", index, "gate"), f"no gate or barrier named {camera.gate!r}")
        if camera.lane is not None and camera.gate not in barrier_names:
            problem(("hardware", "cameras", index, "lane"), "a lane is for cameras that watch a barrier")
        message = camera_source_problem(camera)
        if message:
            problem(("hardware", "cameras", index, "source"), message)
    return problems


def camera_source_problem(camera: CameraConfig) -> str | None:
    """Why a file or folder source cannot be replayed, or None. Devices and streams are checked at run time."""
    source = Path(str(camera.source))
    if camera.kind == "file":
        try:
            check_regular_file(source, "video file")  # OpenCV would wait for ever on a FIFO
        except FileCheckError as exc:
            return str(exc)
        import cv2  # lazily: check-config of a camera-less node should not pay for OpenCV

        capture = cv2.VideoCapture(str(source))
        try:
            if not capture.isOpened() or not capture.read()[0]:
                return f"{source} is not a video OpenCV can decode"
        finally:
            capture.release()
    elif camera.kind == "folder":
        if not source.is_dir():
            return f"image folder {source} does not exist"
        if not os.access(source, os.R_OK | os.X_OK):
            return f"image folder {source} is not readable by this user"
    return None


def _resolve_paths(model: BaseModel, base: Path) -> BaseModel:
    """Every relative Path field, in every section, made relative to the config file's folder.

    Paths that start with ``$`` (``$CREDENTIALS_DIRECTORY/whitelist.key``) are expanded at use.
    """
    updates: dict[str, Any] = {}
    for name, value in model:
        if isinstance(value, Path) and not value.is_absolute() and not str(value).startswith("$"):
            updates[name] = (base / value).resolve()
        elif isinstance(value, BaseModel):
            resolved = _resolve_paths(value, base)
            if resolved is not value:
                updates[name] = resolved
        elif isinstance(value, list) and any(isinstance(item, BaseModel) for item in value):
            updates[name] = [_resolve_paths(item, base) if isinstance(item, BaseModel) else item for item in value]
    return model.model_copy(update=updates) if updates else model


def _resolve_relative(config: AgentConfig, base: Path) -> AgentConfig:
    """Relative paths in a config file are relative to that file, not to the working directory."""
    config = _resolve_paths(config, base)  # type: ignore[assignment]
    cameras = []
    for camera in config.hardware.cameras:
        source = camera.source
        if isinstance(source, str) and not source.isdigit() and source != "picamera2" and "://" not in source:
            path = Path(os.path.expanduser(source))
            if not path.is_absolute():
                trailing = "/" if source.endswith("/") else ""
                camera = camera.model_copy(update={"source": str((base / path).resolve()) + trailing})
        cameras.append(camera)
    hardware = config.hardware.model_copy(update={"cameras": cameras})
    return config.model_copy(update={"hardware": hardware})


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Parse YAML text; raise :class:`ConfigError` listing every problem found."""
    root, data = _load_yaml(text, source)
    if root is None or not isinstance(data, dict):
        message = "the file must be a YAML mapping with at least a `node:` section"
        raise ConfigError(source, [ConfigProblem("", message)])
    marks = _Marks()
    marks.walk(root)
    problems = marks.duplicates + _pin_conflicts(data, marks)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems + _validation_problems(exc, marks)) from None
    if base_dir is not None:
        config = _resolve_relative(config, base_dir)
    problems += _semantic_problems(config, marks)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        text = read_regular_file(path, "config file", max_bytes=MAX_CONFIG_BYTES).decode("utf-8")
    except FileCheckError as exc:
        raise ConfigError(str(path), [ConfigProblem("", str(exc))]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), [ConfigProblem("", "the file is not UTF-8 text")]) from None
    return parse_config(text, str(path), path.resolve().parent)


def check_config_file(path: str | Path) -> AgentConfig:
    """``edge-agent check-config``: :func:`load_config`, then every file the config names
    (:func:`agent.config_files.named_file_problems`), each problem at its key's line and column."""
    from agent.config_files import named_file_problems

    config = load_config(path)
    found = named_file_problems(config)
    if found:
        marks = _Marks()
        try:
            root, _ = _load_yaml(read_regular_file(Path(path), "config file", max_bytes=MAX_CONFIG_BYTES).decode(),
                                 str(path))
        except (ConfigError, FileCheckError, UnicodeDecodeError):
            root = None  # changed under us: report without places
        if root is not None:
            marks.walk(root)
        problems = []
        for problem in found:
            key_path: Path_ = tuple(problem.key.split("."))
            while key_path and key_path not in marks.marks:  # a default value: point at its section
                key_path = key_path[:-1]
            line, column = marks.marks.get(key_path, (None, None)) if key_path else (None, None)
            problems.append(ConfigProblem(problem.key, problem.message, line, column))
        raise ConfigError(str(path), problems)
    return config


def json_schema() -> dict[str, Any]:
    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edge-agent configuration"
    return schema
