"""Typed configuration: one pydantic model per YAML section.

Every model forbids unknown keys so that a technician's typo (``unlock_secnods``) is an
error rather than a silently ignored setting.  The root model that gathers every section is
:class:`agent.agent_config.AgentConfig`.  Loading, line/column reporting and the
cross-section checks (pin conflicts, camera → gate references, missing files) live in
:mod:`agent.config_loader`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/agent.yaml")

Name = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="lowercase id: letters, digits, _ and -")
]
# Numbers are strict: YAML's `true` is not 1 and `17.0` is not pin 17 (pydantic would quietly convert
# both); an int is still a valid float (`unlock_seconds: 5`); .inf and .nan are refused.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Integer = Annotated[int, Strict()]
Seconds = Annotated[Number, Field(gt=0, le=3600)]

PATH_MAX = 4095  # Linux: PATH_MAX 4096 with its NUL; longer paths fail with ENAMETOOLONG at use
NAME_MAX = 255  # bytes of one path component


def check_path_text(text: str) -> str:
    """A path the kernel can open: no NUL, at most PATH_MAX bytes, no component over NAME_MAX bytes."""
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    if len(text.encode()) > PATH_MAX:
        raise ValueError(f"path is {len(text.encode())} bytes long; at most {PATH_MAX}")
    for part in text.split("/"):
        if len(part.encode()) > NAME_MAX:
            raise ValueError(f"path component {part[:20]}… is over {NAME_MAX} bytes")
    return text


def _check_path(value: Path) -> Path:
    check_path_text(str(value))
    return value


FilePath = Annotated[Path, AfterValidator(_check_path)]

# gpiozero accepts BCM numbers (17), "GPIO17", "BCM17", "BOARD11" and "J8:11".
_PIN_RE = re.compile(r"^(GPIO|BCM|BOARD|J8:)?(\d{1,2})$", re.IGNORECASE)
Pin = Annotated[
    Integer | str,
    Field(description="GPIO pin: BCM number (17) or gpiozero name (GPIO17, BOARD11, J8:11)"),
]


def _check_pin(value: object) -> object:
    """Before pydantic's own checks: a pin is an int 0-53 or a gpiozero name; `17.0` or `true` is a mistake."""
    if value is None or (type(value) is int and 0 <= value <= 53):
        return value
    if isinstance(value, str) and _PIN_RE.match(value.strip()):
        return value.strip().upper()
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    raise ValueError(f"{shown} is not a GPIO pin (use a BCM number such as 17, or GPIO17 / BOARD11)")


def pin_fields(*fields: str) -> classmethod:  # type: ignore[type-arg]
    return field_validator(*fields, mode="before")(_check_pin)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(Section):
    """Where this node is. The three ids form the MQTT topic root, so no slashes or spaces."""

    site: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="community / estate id")
    building: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="building id within the site")
    node_id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="this node's id, unique in the building")


class GateConfig(Section):
    """A pedestrian gate: electric lock on a relay, optional door contact and exit button."""

    name: Name
    lock_relay: Pin
    active_high: bool = Field(True, description="relay energised by a high output")
    unlock_seconds: Seconds = Field(5.0, description="how long an unlock pulse keeps the lock open")
    door_contact: Pin | None = Field(None, description="reed switch; closed (pin low) while the door is shut")
    exit_button: Pin | None = Field(None, description="request-to-exit button; pressed pulls the pin low")
    assist_button: Pin | None = Field(None, description="call/assist button for residents who need help")
    held_open_seconds: Seconds = Field(30.0, description="door open this long raises door.held_open")
    fire_mode: Literal["release", "secure"] = Field(
        "release", description="release: unlock and stay unlocked during a fire alarm; secure: stay locked"
    )
    safe_state: Literal["locked", "unlocked"] = Field(
        "locked", description="state the lock is left in when the agent stops"
    )

    _pins = pin_fields("lock_relay", "door_contact", "exit_button", "assist_button")


class BarrierConfig(Section):
    """A vehicle barrier: raise/lower relays or one pulse relay, and a safety loop."""

    name: Name
    raise_relay: Pin | None = Field(None, description="relay that raises the arm (with lower_relay)")
    lower_relay: Pin | None = Field(None, description="relay that lowers the arm (with raise_relay)")
    pulse_relay: Pin | None = Field(None, description="single relay: one pulse toggles the arm")
    pulse_seconds: Seconds = Field(0.5, description="length of a relay pulse")
    active_high: bool = True
    safety_loop: Pin = Field(description="induction loop input: active while a vehicle is under the arm")
    safety_loop_active_low: bool = Field(True, description="loop detector pulls the pin low when occupied")
    approach_loop: Pin | None = Field(
        None, description="loop before the arm, where a car waits: tells a car that drove through from one "
        "that backed out, and which way it went (what the car park counts)")
    approach_loop_active_low: bool = Field(True, description="its detector pulls the pin low when occupied")
    loop_stuck_seconds: Seconds | None = Field(
        300.0, description="a loop occupied this long is reported as barrier.fault (a failed detector, a car left "
        "on it); a stuck approach loop then tells no direction (null: never)")
    position_sensor: Pin | None = Field(None, description="limit switch, active while the arm is up")
    travel_seconds: Seconds = Field(4.0, description="time the arm needs to move; position is checked after it")
    close_after_seconds: Seconds | None = Field(
        30.0, description="lower a raised arm if no vehicle drives onto the loop this long (null: stay up)")
    gate: Name | None = Field(None, description="car park lane / gate this barrier belongs to")
    max_edit_distance: Integer | None = Field(
        None, ge=0, le=3, description="plate edits allowed here (default plates.max_edit_distance; 0: high security)")

    _pins = pin_fields("raise_relay", "lower_relay", "pulse_relay", "safety_loop", "approach_loop", "position_sensor")

    @model_validator(mode="after")
    def _one_drive(self) -> BarrierConfig:
        pair = self.raise_relay is not None and self.lower_relay is not None
        if pair == (self.pulse_relay is not None):
            raise ValueError("give either raise_relay and lower_relay, or pulse_relay")
        return self


class SmokeDetectorConfig(Section):
    """A smoke detector's alarm relay contact (and optional fault contact)."""

    name: Name
    alarm_pin: Pin
    active_low: bool = Field(True, description="the detector pulls the pin low when in alarm")
    confirm_ms: Integer = Field(500, ge=0, le=10_000, description="alarm must last this long to count")
    fault_pin: Pin | None = Field(None, description="active (low) while the detector reports a fault")

    _pins = pin_fields("alarm_pin", "fault_pin")


class IndicatorConfig(Section):
    """An LED or buzzer that shows access results and alarms."""

    name: Name
    kind: Literal["led", "buzzer"]
    pin: Pin
    active_high: bool = True
    gate: Name | None = Field(None, description="gate whose results it shows; empty = every gate")
    shows: list[Literal["granted", "denied", "alarm"]] = Field(
        default_factory=lambda: ["granted", "denied", "alarm"], description="which patterns it plays"
    )

    _pins = pin_fields("pin")


class ReplayConfig(Section):
    realtime: bool = Field(True, description="pace frames at the file's fps; false = as fast as possible")
    loop: bool = Field(False, description="start again at the end")


class CameraConfig(Section):
    """A camera: picamera2, an OpenCV device index, an RTSP/HTTP URL, a video file or an image folder."""

    name: Name
    source: Integer | str = Field(description="picamera2 | 0 | rtsp://… | http://… | /path/video.mp4 | /path/images/")
    resolution: tuple[Integer, Integer] = Field((640, 480), description="width, height")
    fps: Number = Field(15.0, gt=0, le=60)
    gate: Name | None = Field(None, description="gate (or barrier) this camera watches")
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="for video files and image folders")
    stall_seconds: Seconds = Field(5.0, description="no frame for this long raises camera.fault")
    lane: list[tuple[Number, Number]] | None = Field(
        None, description="barrier cameras: corners [x, y] of the lane in front of the barrier, as fractions "
        "of the picture's width and height (0-1); plates and motion outside it are ignored, so a car parked "
        "in view beyond the lane never raises the barrier; check it with `edge-agent hw test --snapshots DIR`. "
        "Default: the whole picture")

    @field_validator("source")
    @classmethod
    def _source_is_openable(cls, value: int | str) -> int | str:
        if isinstance(value, str) and "://" not in value:
            check_path_text(value)
        elif isinstance(value, str) and len(value) > PATH_MAX:
            raise ValueError(f"URL is over {PATH_MAX} characters")
        return value

    @field_validator("resolution")
    @classmethod
    def _sane_resolution(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not (16 <= value[0] <= 4096 and 16 <= value[1] <= 4096):
            raise ValueError("resolution must be between 16 and 4096 pixels each way")
        return value

    @field_validator("lane")
    @classmethod
    def _lane_is_an_area(cls, value: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if value is not None:
            from models.area import Area

            Area(value)  # raises ValueError with what is wrong with the corners
        return value

    @property
    def kind(self) -> Literal["picamera2", "device", "stream", "file", "folder"]:
        if isinstance(self.source, int) or str(self.source).isdigit():
            return "device"
        if self.source == "picamera2":
            return "picamera2"
        if re.match(r"^(rtsp|rtsps|http|https)://", str(self.source)):
            return "stream"
        return "folder" if str(self.source).endswith("/") or Path(self.source).is_dir() else "file"


class HardwareConfig(Section):
    pin_factory: Literal["lgpio", "native", "mock"] = Field(
        "lgpio", description="lgpio on a Pi (bookworm); mock for simulation and tests"
    )
    gates: list[GateConfig] = Field(default_factory=list)
    barriers: list[BarrierConfig] = Field(default_factory=list)
    smoke_detectors: list[SmokeDetectorConfig] = Field(default_factory=list)
    indicators: list[IndicatorConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)


class StorageConfig(Section):
    state_dir: FilePath = Field(Path("/var/lib/edge-agent"), description="events database, latches, control socket")
    retention_days: Integer = Field(30, ge=1, le=3650, description="delivered events older than this are purged")


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "journal", "text"] = Field(
        "auto", description="journal: syslog priority prefixes, no timestamps; auto: journal under systemd"
    )


class SecretRef(Section):
    """A secret is never written into the YAML: name a file (mode 0600) or an environment variable.

    ``file`` may use ``$CREDENTIALS_DIRECTORY/…`` so systemd's LoadCredential= works.
    """

    file: FilePath | None = None
    env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self

    def read_bytes(self) -> bytes:
        import os

        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise FileNotFoundError(f"environment variable {self.env} is not set")
            return value.encode()
        return Path(os.path.expandvars(str(self.file))).read_bytes()
