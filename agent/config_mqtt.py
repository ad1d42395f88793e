"""The ``mqtt:`` section: how the node reaches the community platform.

No ``mqtt:`` section means no uplink at all: the agent keeps recording events locally and runs
fully offline.  Secrets are never inline: the password is a :class:`SecretRef` (file or env).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agent.config import FilePath, Integer, NodeConfig, Number, SecretRef, Section

DEFAULT_TOPIC_ROOT = "community/{site}/{building}/{node}"

# Event types the outbox may drop (oldest first) once it is over its limit.  Access, alarm and fault
# events are never dropped: a door contact flapping for three days must not push out a fire alarm.
DEFAULT_DROPPABLE_TYPES = ("door.opened", "door.closed")


class MqttTlsConfig(Section):
    """TLS to the broker: verify the broker against our CA, and authenticate with a client certificate."""

    ca_file: FilePath | None = Field(None, description="CA bundle the broker's certificate must chain to")
    cert_file: FilePath | None = Field(None, description="client certificate (PEM) for mutual TLS")
    key_file: FilePath | None = Field(None, description="private key (PEM) of the client certificate, mode 0600")
    verify: bool = Field(True, description="verify the broker's certificate and host name; off only in a lab")

    @model_validator(mode="after")
    def _cert_and_key(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


class BackoffConfig(Section):
    """Reconnect delays: delay = random(0, min(max, initial * 2**attempt)) ("full jitter")."""

    initial: Number = Field(1.0, gt=0, le=600, description="window of the first retry, seconds")
    max: Number = Field(60.0, gt=0, le=3600, description="largest retry window, seconds")

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.max < self.initial:
            raise ValueError("max must be at least initial")
        return self


class OutboxConfig(Section):
    """Bounds of the store-and-forward outbox (the undelivered rows of the events table)."""

    max_pending: Integer = Field(
        500_000, ge=100, le=50_000_000,
        description="undelivered events above this raise uplink.backlog_full and drop droppable types",
    )
    droppable_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DROPPABLE_TYPES),
        description="low-value event types dropped (oldest first) above max_pending; never access/alarm/fault",
    )
    max_in_flight: Integer = Field(100, ge=1, le=65_000, description="QoS 1 publishes awaiting PUBACK at once")
    resend_window: Number = Field(
        10.0, ge=0, le=3600,
        description="after an unexpected disconnect, events acknowledged this many seconds before it are sent "
        "again (a broker that dies right after PUBACK loses what it had not passed on); 0 = off",
    )

    @model_validator(mode="after")
    def _never_drop_important(self) -> OutboxConfig:
        for kind in self.droppable_types:
            family = kind.split(".", 1)[0]
            if family in {"gate", "smoke", "alarm", "fire", "assist", "uplink"} or kind.endswith(
                (".fault", ".forced", ".held_open")
            ):
                raise ValueError(f"{kind}: access, alarm and fault events may never be dropped")
        return self


class MqttConfig(Section):
    """Connection to the community platform's MQTT broker, and the commands the node accepts."""

    host: str = Field(description="broker host name or address")
    port: Integer = Field(8883, ge=1, le=65535, description="broker port (8883 for TLS, 1883 plain)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    client_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="MQTT client id; default site-building-node"
    )
    keepalive: Integer = Field(30, ge=5, le=3600, description="seconds between pings when idle")
    session_expiry: Integer = Field(
        86_400, ge=0, le=2_592_000, description="MQTT 5: broker keeps our session (subscriptions) this long"
    )
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; omit for a plain TCP lab broker")
    username: str | None = Field(None, description="broker user name")
    password: SecretRef | None = Field(None, description="broker password from a file or environment variable")
    topic_root: str = Field(
        DEFAULT_TOPIC_ROOT, pattern=r"^[^#+\s]+$",
        description="prefix of every topic; {site}, {building} and {node} are filled in",
    )
    backoff: BackoffConfig = Field(default_factory=BackoffConfig, description="reconnect delays")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="outbox limits")
    telemetry_seconds: Number = Field(60.0, ge=1, le=86_400, description="interval of {root}/telemetry")
    command_public_key: FilePath | None = Field(
        None, description="the platform's Ed25519 public key (PEM); without it signed commands are refused"
    )
    command_max_age: Number = Field(60.0, gt=0, le=86_400, description="refuse commands issued longer ago, s")
    command_clock_skew: Number = Field(
        30.0, ge=0, le=3600, description="accept commands issued up to this far in the future, s"
    )
    allow_unsigned: list[Literal["ping", "reload"]] = Field(
        default_factory=lambda: ["ping"], description="commands accepted without a signature"
    )
    home_assistant: bool = Field(False, description="publish Home Assistant MQTT discovery messages")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[A-Za-z0-9_/-]+$", description="Home Assistant discovery topic prefix"
    )

    @model_validator(mode="after")
    def _root_placeholders(self) -> MqttConfig:
        try:
            self.topic_root.format(site="s", building="b", node="n")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"topic_root: only {{site}}, {{building}} and {{node}} may be filled in ({exc})") from None
        return self

    def root(self, node: NodeConfig) -> str:
        return self.topic_root.format(site=node.site, building=node.building, node=node.node_id).rstrip("/")

    def effective_client_id(self, node: NodeConfig) -> str:
        # Node ids are unique only within a building, so the default carries the site and building too.
        return self.client_id or f"{node.site}-{node.building}-{node.node_id}"[:64]
