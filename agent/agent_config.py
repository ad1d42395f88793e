"""The whole node's configuration: one typed section per top-level YAML key."""

from __future__ import annotations

from pydantic import Field

from agent.config import HardwareConfig, LoggingConfig, NodeConfig, Section, StorageConfig
from agent.config_faces import FaceConfig
from agent.config_mqtt import MqttConfig
from agent.config_parking import CarParkConfig
from agent.config_plates import PlateConfig
from agent.config_whitelist import WhitelistConfig


class AgentConfig(Section):
    """``node`` is required; every other section has defaults. No ``mqtt`` section: the node runs offline."""

    node: NodeConfig
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    faces: FaceConfig = Field(default_factory=FaceConfig)
    plates: PlateConfig = Field(default_factory=PlateConfig)
    whitelist: WhitelistConfig = Field(default_factory=WhitelistConfig)
    parking: list[CarParkConfig] = Field(default_factory=list, description="car parks counted at their barriers")
    mqtt: MqttConfig | None = Field(None, description="uplink to the community platform; omit to run offline")
