"""How a thing-model service is carried out on one device (the ``services:`` of a device in a
station file)::

    services:
      reset_slam_shut:
        steps: [{point: slam_shut_reset, value: true, confirm: false}]   # a command point reads 0
        expect: {slam_shut_closed: false}                                # what confirms it
        within_s: 10
      set_outlet_pressure:
        steps: [{point: setpoint, value: $setpoint}]                     # $<input id>: the argument
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIRM_S = 10.0


class ServiceStep(BaseModel):
    """One step of a service: write ``value`` (a constant, or ``$<input id>``) to ``point``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    point: str
    value: bool | int | float | str
    confirm: bool = Field(True, description="wait for the read-back of this point")


class ServiceBinding(BaseModel):
    """How a model service is carried out on a device: writes, then an optional state to confirm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[ServiceStep] = Field(min_length=1)
    expect: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="point → value ($input allowed) that confirms the service"
    )
    within_s: float = Field(DEFAULT_CONFIRM_S, gt=0, le=3600)
