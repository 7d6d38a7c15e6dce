"""Channel and point validation, and the shipped sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from drivers.modbus import ModbusPoint, ModbusTcpChannel, find_overlaps, plan_reads

SAMPLE = Path(__file__).parents[3] / "drivers" / "modbus" / "sample.yaml"


def test_sample_validates_and_plans():
    doc = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    channel = ModbusTcpChannel.model_validate(doc["channel"])
    points = [(key, ModbusPoint.model_validate(raw)) for key, raw in doc["points"].items()]
    assert channel.driver == "modbus_tcp"
    assert find_overlaps(points) == []
    requests = plan_reads(
        points, max_registers=channel.max_registers, max_bits=channel.max_bits, max_gap=channel.max_gap
    )
    assert [r.table for r in requests] == ["holding", "input", "coil", "discrete"]


def test_widths():
    widths = {t: ModbusPoint(table="holding", address=0, type=t).width for t in
              ("int16", "uint16", "int32", "uint32", "float32", "float64")}  # fmt: skip
    assert widths == {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
    assert ModbusPoint(table="coil", address=0, type="bool").width == 1
    assert ModbusPoint(table="input", address=0, type="bool", bit=3).width == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "coil", "address": 0, "type": "uint16"}, "type must be bool"),
        ({"table": "discrete", "address": 0}, "type must be bool"),
        ({"table": "coil", "address": 0, "type": "bool", "bit": 1}, "only for holding/input"),
        ({"table": "holding", "address": 0, "type": "bool"}, "needs `bit`"),
        ({"table": "holding", "address": 0, "type": "uint16", "bit": 1}, "has type bool"),
        ({"table": "holding", "address": 0, "type": "bool", "bit": 16}, "less than or equal to 15"),
        ({"table": "holding", "address": 65535, "type": "float32"}, "runs past 65535"),
        ({"table": "holding", "address": -1}, "greater than or equal to 0"),
        ({"table": "holding", "address": 0, "byte_order": "middle"}, "byte_order"),
        ({"table": "holding", "address": 0, "scale": 2}, "Extra inputs"),
        ({"table": "memory", "address": 0}, "table"),
    ],
)
def test_invalid_points(fields, message):
    with pytest.raises(ValidationError, match=message):
        ModbusPoint.model_validate(fields)


def test_points_are_frozen_and_hashable():
    point = ModbusPoint(table="holding", address=65534, type="float32")
    assert hash(point) == hash(ModbusPoint(table="holding", address=65534, type="float32"))
    with pytest.raises(ValidationError):
        point.address = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "h", "port": 0},
        {"host": "h", "timeout_s": 0},
        {"host": "h", "max_registers": 126},
        {"host": "h", "max_bits": 2001},
        {"host": "h", "max_gap": 101},
        {"host": ""},
        {"host": "h", "driver": "modbus_rtu"},
        {"host": "h", "retries": 3},
    ],
)
def test_invalid_channels(fields):
    with pytest.raises(ValidationError):
        ModbusTcpChannel.model_validate(fields)


def test_channel_defaults():
    ch = ModbusTcpChannel(host="10.0.0.5")
    assert (ch.port, ch.timeout_s, ch.max_registers, ch.max_bits, ch.max_gap) == (502, 1.0, 125, 2000, 8)
