"""The one place southbound drivers are plugged in.

Each entry says how a channel of that driver is configured (``channel_model``, whose ``driver``
field is the discriminator in station files), how one point is bound (``point_model``), how to
build the driver, and whether it is polled (``Driver``) or reports by itself (``PushDriver``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from drivers.modbus.config import ModbusPoint, ModbusRtuChannel, ModbusRtuOverTcpChannel, ModbusTcpChannel
from drivers.modbus.planner import find_overlaps
from drivers.mqtt.config import MqttChannel, MqttPoint
from drivers.opcua.config import OpcUaChannel, OpcUaPoint
from drivers.serial_line.config import SerialLineChannel, SerialLinePoint
from drivers.sqlpoll.config import SqlPollChannel, SqlPollPoint

ValueKind = Literal["bool", "number", "any"]


def _no_point_problems(channel: Any, points: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    return []


def _always_polled(point: Any) -> bool:
    return True


@dataclass(frozen=True)
class DriverSpec:
    name: str
    channel_model: type[BaseModel]
    point_model: type[BaseModel]
    create: Callable[[Any], Any]
    # Push drivers deliver by themselves (PushDriver.run); polled points of such a driver (e.g.
    # OPC-UA `mode: poll`) still go through Driver.read on the same driver object.
    push: bool = False
    is_polled: Callable[[Any], bool] = _always_polled
    # What the wire gives for a point, for checking bindings against thing-model types at load time.
    value_kind: Callable[[Any], ValueKind] = field(default=lambda point: "any")
    # Problems of one device's points, given its channel: (key, message) pairs.
    point_problems: Callable[[Any, Sequence[tuple[str, Any]]], list[tuple[str, str]]] = _no_point_problems


def _lazy(module: str, cls: str) -> Callable[[Any], Any]:
    """A constructor that imports the driver's module on first use: the protocol stacks (asyncua,
    aiomqtt, psycopg, pyserial) cost memory and start-up time a station that does not use them
    should not pay.  Configuration models stay eager: station files are checked against them."""

    def create(channel: Any) -> Any:
        return getattr(importlib.import_module(module), cls)(channel)

    create.__qualname__ = f"{cls} (lazy)"
    return create


def _opcua_polled(point: OpcUaPoint) -> bool:
    """``mode: poll`` points go through ``read``, the rest through ``run``."""
    return point.mode == "poll"


def _modbus_overlaps(channel: Any, points: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(b, f"registers overlap with point {a!r}") for a, b in find_overlaps(list(points))]


def _modbus_kind(point: ModbusPoint) -> ValueKind:
    return "bool" if point.type == "bool" else "number"


def _never_polled(point: Any) -> bool:
    return False


def _serial_fields(channel: SerialLineChannel, points: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    names = channel.field_names
    return [
        (k, f"field {p.field!r} is not in the channel's protocol ({', '.join(names)})")
        for k, p in points
        if p.field not in names
    ]


DRIVERS: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        DriverSpec(
            "modbus_tcp",
            ModbusTcpChannel,
            ModbusPoint,
            _lazy("drivers.modbus.driver", "ModbusTcpDriver"),
            value_kind=_modbus_kind,
            point_problems=_modbus_overlaps,
        ),
        DriverSpec(
            "modbus_rtu",
            ModbusRtuChannel,
            ModbusPoint,
            _lazy("drivers.modbus.rtu", "ModbusRtuDriver"),
            value_kind=_modbus_kind,
            point_problems=_modbus_overlaps,
        ),
        DriverSpec(
            "modbus_rtu_tcp",
            ModbusRtuOverTcpChannel,
            ModbusPoint,
            _lazy("drivers.modbus.rtu", "ModbusRtuOverTcpDriver"),
            value_kind=_modbus_kind,
            point_problems=_modbus_overlaps,
        ),
        DriverSpec(
            "opcua",
            OpcUaChannel,
            OpcUaPoint,
            _lazy("drivers.opcua.driver", "OpcUaDriver"),
            push=True,
            is_polled=_opcua_polled,
        ),
        DriverSpec(
            "mqtt",
            MqttChannel,
            MqttPoint,
            _lazy("drivers.mqtt.driver", "MqttDriver"),
            push=True,
            is_polled=_never_polled,
        ),
        DriverSpec(
            "serial_line",
            SerialLineChannel,
            SerialLinePoint,
            _lazy("drivers.serial_line.driver", "SerialLineDriver"),
            push=True,
            is_polled=_never_polled,
            point_problems=_serial_fields,
        ),
        DriverSpec(
            "sql_poll",
            SqlPollChannel,
            SqlPollPoint,
            _lazy("drivers.sqlpoll.driver", "SqlPollDriver"),
            push=True,
            is_polled=_never_polled,
        ),
    )
}


def spec_for(driver_name: str) -> DriverSpec:
    return DRIVERS[driver_name]
