"""Modbus TCP driver: configuration, register codec, read planner and the driver itself."""

from drivers.modbus.codec import CodecError, decode, encode, extract_bit
from drivers.modbus.config import DataType, ModbusPoint, ModbusTcpChannel, RegisterTable
from drivers.modbus.driver import ModbusStatistics, ModbusTcpDriver
from drivers.modbus.planner import ReadRequest, find_overlaps, plan_reads

__all__ = [
    "CodecError",
    "DataType",
    "ModbusPoint",
    "ModbusStatistics",
    "ModbusTcpChannel",
    "ModbusTcpDriver",
    "ReadRequest",
    "RegisterTable",
    "decode",
    "encode",
    "extract_bit",
    "find_overlaps",
    "plan_reads",
]
