"""The regulator box's Modbus register map (unit 1), encoded with ``struct`` directly.

Deliberately independent of ``drivers.modbus``: the simulator is the reference the driver is
tested against, so it must not share the driver's codec.  Documented in firmware-sim/README.md.
"""

from __future__ import annotations

import struct

from gasiot_sim.regulator import RegulatorState

UNIT_ID = 1
HOLDING_COUNT = 11  # holding registers 0..10
SETPOINT_ADDRESS = 10  # the only writable holding register
SLAM_RESET_COIL = 0
EMERGENCY_CLOSE_COIL = 1  # write 1: close the slam-shut (reads back 0: a command)
DOOR_DISCRETE_INPUT = 0
STATUS_SLAM_SHUT_BIT = 0
STATUS_RELIEF_BIT = 1
STATUS_DOOR_BIT = 2

ServedValue = float | int | bool


def _u16(value: float, scale: float) -> int:
    return min(max(round(value * scale), 0), 0xFFFF)


def _float32_abcd(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def holding_registers(state: RegulatorState) -> list[int]:
    """Holding registers 0..10 for ``state`` (big-endian bytes and words, ABCD)."""
    temperature = min(max(round(state.temperature * 10), -32768), 32767)
    flow = min(max(round(state.flow * 100), 0), 0xFFFFFFFF)
    status = (
        (state.slam_shut_closed << STATUS_SLAM_SHUT_BIT)
        | (state.relief_valve_open << STATUS_RELIEF_BIT)
        | (state.door_open << STATUS_DOOR_BIT)
    )
    return [
        *_float32_abcd(state.inlet_pressure),  # 0-1 MPa
        *_float32_abcd(state.outlet_pressure),  # 2-3 kPa
        struct.unpack(">H", struct.pack(">h", temperature))[0],  # 4 °C x10, two's complement
        _u16(state.filter_dp, 100),  # 5 kPa x100
        _u16(state.box_methane, 10),  # 6 %LEL x10
        status,  # 7
        *struct.unpack(">HH", struct.pack(">I", flow)),  # 8-9 Nm3/h x100
        _u16(state.setpoint, 100),  # 10 kPa x100
    ]


def served_values(registers: list[int]) -> dict[str, ServedValue]:
    """Engineering values exactly as a correct master decodes ``holding_registers`` output."""
    status = registers[7]
    return {
        "inlet_pressure": struct.unpack(">f", struct.pack(">HH", *registers[0:2]))[0],
        "outlet_pressure": struct.unpack(">f", struct.pack(">HH", *registers[2:4]))[0],
        "temperature": struct.unpack(">h", struct.pack(">H", registers[4]))[0] / 10,
        "filter_dp": registers[5] / 100,
        "box_methane": registers[6] / 10,
        "slam_shut_closed": bool(status >> STATUS_SLAM_SHUT_BIT & 1),
        "relief_valve_open": bool(status >> STATUS_RELIEF_BIT & 1),
        "door_open": bool(status >> STATUS_DOOR_BIT & 1),
        "flow": struct.unpack(">I", struct.pack(">HH", *registers[8:10]))[0] / 100,
        "setpoint": registers[10] / 100,
    }
