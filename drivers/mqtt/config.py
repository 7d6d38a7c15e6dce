"""Configuration of MQTT channels (a broker) and of points (a selector into a device's payload)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.mqtt.selector import parse_selector
from drivers.secrets import SECRET_FILE, Password


class MqttChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["mqtt"] = "mqtt"
    host: str
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("gasiot-edge", min_length=1, max_length=128)
    username: str | None = None
    password: Password | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    topic: str = Field("gas/{device}/up", description="Topic template; {device} is replaced by each device's id")
    payload: Literal["json", "raw"] = "json"
    timestamp: str | None = Field(
        None, description="Selector of the device's own timestamp in JSON payloads (epoch s or ms)"
    )
    tls: bool = Field(False, description="MQTT over TLS (port 8883 usually): the broker is verified")
    ca_file: Path | None = Field(None, description="CA of the broker's certificate (default: system store)")
    cert_file: Path | None = Field(None, description="Client certificate, when the broker requires one")
    key_file: Path | None = Field(None, description="Client private key (mode 0600)", json_schema_extra=SECRET_FILE)
    qos: Literal[0, 1] = 1
    clean_session: bool = Field(False, description="False: the broker keeps QoS 1 messages while we are away")
    timeout_s: float = Field(10.0, gt=0)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("topic")
    @classmethod
    def _one_device_placeholder(cls, topic: str) -> str:
        if topic.count("{device}") != 1 or any(c in topic for c in "#+"):
            raise ValueError("topic must contain {device} exactly once and no MQTT wildcards")
        return topic

    @model_validator(mode="after")
    def _tls_files(self) -> MqttChannel:
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("ca_file/cert_file/key_file need `tls: true`")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @field_validator("timestamp")
    @classmethod
    def _valid_timestamp_selector(cls, text: str | None) -> str | None:
        if text is not None:
            parse_selector(text)
        return text


class MqttPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field("$", description="Selector into the payload: $.data.flow, values[0], $ (whole payload)")

    @field_validator("path")
    @classmethod
    def _valid_selector(cls, text: str) -> str:
        parse_selector(text)
        return text
