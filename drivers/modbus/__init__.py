"""Modbus drivers (TCP, RTU on a serial line, RTU over TCP): configuration, register codec, read
planner and the drivers themselves."""

from drivers.modbus.codec import CodecError, decode, encode, extract_bit
from drivers.modbus.config import (
    DataType,
    ModbusPoint,
    ModbusRtuChannel,
    ModbusRtuOverTcpChannel,
    ModbusTcpChannel,
    RegisterTable,
)
from drivers.modbus.driver import ModbusStatistics, ModbusTcpDriver
from drivers.modbus.planner import ReadRequest, find_overlaps, plan_reads
from drivers.modbus.rtu import (
    ModbusRtuDriver,
    ModbusRtuOverTcpDriver,
    NoAnswerError,
    RtuStatistics,
    UnitStatistics,
)

__all__ = [
    "CodecError",
    "DataType",
    "ModbusPoint",
    "ModbusRtuChannel",
    "ModbusRtuDriver",
    "ModbusRtuOverTcpChannel",
    "ModbusRtuOverTcpDriver",
    "ModbusStatistics",
    "ModbusTcpChannel",
    "ModbusTcpDriver",
    "NoAnswerError",
    "ReadRequest",
    "RegisterTable",
    "RtuStatistics",
    "UnitStatistics",
    "decode",
    "encode",
    "extract_bit",
    "find_overlaps",
    "plan_reads",
]
