"""RTU channel validation, line timing derived from the port settings, and the shipped sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from drivers.modbus import ModbusRtuChannel, ModbusRtuOverTcpChannel

SAMPLE = Path(__file__).parents[3] / "drivers" / "modbus" / "sample.yaml"


def test_sample_rtu_sections_validate():
    doc = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    rtu = ModbusRtuChannel.model_validate(doc["rtu_channel"])
    tcp = ModbusRtuOverTcpChannel.model_validate(doc["rtu_tcp_channel"])
    assert (rtu.driver, rtu.baudrate, rtu.parity) == ("modbus_rtu", 19200, "N")
    assert tcp.driver == "modbus_rtu_tcp"


def test_defaults():
    ch = ModbusRtuChannel(port="/dev/ttyUSB0")
    assert (ch.baudrate, ch.bytesize, ch.parity, ch.stopbits, ch.timeout_s) == (9600, 8, "N", 1, 0.5)
    assert (ch.max_registers, ch.max_bits, ch.max_gap, ch.inter_frame_ms) == (125, 2000, 8, None)


@pytest.mark.parametrize(
    ("settings", "char_bits"),
    [
        ({}, 10),  # start + 8 data + 1 stop
        ({"parity": "E"}, 11),
        ({"parity": "N", "stopbits": 2}, 11),
        ({"bytesize": 7, "parity": "O", "stopbits": 1}, 10),
    ],
)
def test_character_time_follows_the_port_settings(settings, char_bits):
    ch = ModbusRtuChannel(port="/dev/ttyS0", baudrate=9600, **settings)
    assert ch.char_s == pytest.approx(char_bits / 9600)
    assert ch.inter_frame_s == pytest.approx(3.5 * char_bits / 9600)


def test_inter_frame_is_fixed_above_19200_baud_and_can_be_set():
    assert ModbusRtuChannel(port="/dev/ttyS0", baudrate=19200).inter_frame_s == pytest.approx(3.5 * 10 / 19200)
    assert ModbusRtuChannel(port="/dev/ttyS0", baudrate=115200).inter_frame_s == 0.00175
    assert ModbusRtuChannel(port="/dev/ttyS0", inter_frame_ms=10).inter_frame_s == pytest.approx(0.010)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port": ""}, "at least 1 character"),
        ({"parity": "M"}, "parity"),
        ({"bytesize": 6}, "bytesize"),
        ({"stopbits": 3}, "stopbits"),
        ({"baudrate": 0}, "greater than or equal to 300"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"inter_frame_ms": -1}, "greater than or equal to 0"),
        ({"max_registers": 126}, "less than or equal to 125"),
        ({"driver": "modbus_tcp"}, "modbus_rtu"),
        ({"host": "10.0.0.1"}, "Extra inputs"),
    ],
)
def test_bad_rtu_channels_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        ModbusRtuChannel.model_validate({"port": "/dev/ttyUSB0", **fields})


def test_rtu_over_tcp_channel():
    ch = ModbusRtuOverTcpChannel(host="10.0.0.5")
    assert (ch.port, ch.timeout_s) == (4001, 1.0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ModbusRtuOverTcpChannel.model_validate({"host": "10.0.0.5", "baudrate": 9600})
