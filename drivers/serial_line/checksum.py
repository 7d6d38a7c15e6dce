"""Checksums used by gas-detector line protocols."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

ChecksumType = Literal["sum8", "xor8", "crc16-modbus", "crc16-ccitt"]


def sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def xor8(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def _crc16_modbus_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


def _crc16_ccitt_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_MODBUS = _crc16_modbus_table()
_CCITT = _crc16_ccitt_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: poly 0x8005 reflected, init 0xFFFF."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _MODBUS[(crc ^ b) & 0xFF]
    return crc


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected."""
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CCITT[((crc >> 8) ^ b) & 0xFF]
    return crc


CHECKSUMS: dict[ChecksumType, tuple[Callable[[bytes], int], int]] = {
    # name: (function, width in bytes)
    "sum8": (sum8, 1),
    "xor8": (xor8, 1),
    "crc16-modbus": (crc16_modbus, 2),
    "crc16-ccitt": (crc16_ccitt, 2),
}
