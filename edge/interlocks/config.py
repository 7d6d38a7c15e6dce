"""Interlock declarations in a station file.

interlocks:
  - id: rbox_a_gas_shutoff
    when: rbox-a.box_methane.hi          # a rule condition id: <device>.<rule>[.<level>]
    action: {device: rbox-a, point: emergency_close, value: true}
    readback: {device: rbox-a, point: slam_shut_closed, equals: true, within_s: 10}
    source: "GB 50494 §…"                # why this interlock exists (audited with every action)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InterlockAction(_Strict):
    device: str
    point: str = Field(description="A writable (access: rw) property of the device")
    value: bool | int | float


class ReadBack(_Strict):
    device: str | None = Field(None, description="Default: the action's device")
    point: str
    equals: bool | int | float
    tolerance: float = Field(0.0, ge=0)
    within_s: float = Field(10.0, gt=0, le=3600)


class RateLimit(_Strict):
    max_actions: int = Field(3, ge=1)
    per_s: float = Field(3600.0, gt=0)


class InterlockConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    when: str = Field(min_length=3, description="Condition id that triggers the action when it becomes active")
    action: InterlockAction
    readback: ReadBack | None = None
    inhibit: bool = Field(False, description="Armed but never acts (maintenance); each trigger is audited")
    simulate: bool = Field(False, description="Commissioning: log and audit what it would do, write nothing")
    rate_limit: RateLimit = RateLimit()
    source: str = Field("", description="Why: the standard clause or the utility's procedure")

    @model_validator(mode="after")
    def _readback_device(self) -> InterlockConfig:
        if self.readback is not None and self.readback.device is None:
            object.__setattr__(self, "readback", self.readback.model_copy(update={"device": self.action.device}))
        return self
