"""Serial line channels (RS-485/RS-232 detectors speaking a vendor line protocol) and points."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.serial_line.spec import AsciiSpec, FrameSpec


class SerialLineChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["serial_line"] = "serial_line"
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, ge=300, le=921_600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    protocol: FrameSpec
    address_field: str | None = Field(
        None, description="Frame field holding the device address; matched against each device's unit_id"
    )
    request: str | None = Field(None, description="Hex bytes sent every request_interval_s (for polled detectors)")
    request_interval_s: float = Field(5.0, gt=0)
    silence_timeout_s: float = Field(30.0, gt=0, description="A device that sends nothing this long is offline")
    reopen_initial_s: float = Field(0.5, gt=0)
    reopen_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> SerialLineChannel:
        names = self.protocol.fields if isinstance(self.protocol, AsciiSpec) else [f.name for f in self.protocol.fields]
        if self.address_field is not None and self.address_field not in names:
            raise ValueError(f"address_field {self.address_field!r} is not a field of the protocol ({names})")
        if self.request is not None:
            bytes.fromhex(self.request)
        return self

    @property
    def field_names(self) -> list[str]:
        p = self.protocol
        return list(p.fields) if isinstance(p, AsciiSpec) else [f.name for f in p.fields]


class SerialLinePoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, description="Name of the frame field carrying this property")
