"""The TEST PATTERN block: static, known values in the input registers (function 4) of unit 1.

Every data type the edge reads, in every byte/word order, with small gaps between groups so a
master's request coalescing (``max_gap``) is exercised.  Values are exactly representable, so a
round trip compares with ``==``.  Encoded here with ``struct``, independently of the driver.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

PatternType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
Order = Literal["big", "little"]

_FORMAT: dict[PatternType, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "float64": ">d",
}
GAP_FILL = 0xFFFF  # unused registers inside the block read as 0xFFFF, so a mis-offset decode shows


@dataclass(frozen=True, slots=True)
class PatternPoint:
    address: int
    type: PatternType
    byte_order: Order
    word_order: Order
    value: int | float | bool
    bit: int | None = None  # for type "bool": bit of the register at ``address``


def _p(address: int, type_: PatternType, order: str, value: int | float) -> PatternPoint:
    """``order`` in the technicians' notation: ABCD, CDAB, BADC, DCBA (AB / BA for one register)."""
    byte_order: Order = "big" if order in ("ABCD", "CDAB", "AB") else "little"
    word_order: Order = "big" if order in ("ABCD", "BADC", "AB", "BA") else "little"
    return PatternPoint(address, type_, byte_order, word_order, value)


def _bit(address: int, bit: int, value: bool) -> PatternPoint:
    return PatternPoint(address, "bool", "big", "big", value, bit)


BITS_ADDRESS = 38
# Bits 0, 4, 6, 9 and 15 set: bit5 is False between two True neighbours, so an off-by-one shows.
BITS_REGISTER = 0b1000_0010_0101_0001

TEST_PATTERN: dict[str, PatternPoint] = {
    "i16_be": _p(0, "int16", "AB", -1234),
    "i16_le": _p(1, "int16", "BA", -1234),
    "u16_be": _p(2, "uint16", "AB", 51234),
    "u16_le": _p(3, "uint16", "BA", 51234),
    # gap: 4
    "i32_abcd": _p(5, "int32", "ABCD", -123456789),
    "i32_cdab": _p(7, "int32", "CDAB", -123456789),
    "i32_badc": _p(9, "int32", "BADC", -123456789),
    "i32_dcba": _p(11, "int32", "DCBA", -123456789),
    "u32_abcd": _p(13, "uint32", "ABCD", 3_000_000_000),
    "u32_cdab": _p(15, "uint32", "CDAB", 3_000_000_000),
    # gap: 17-18
    "f32_abcd": _p(19, "float32", "ABCD", -12.375),
    "f32_cdab": _p(21, "float32", "CDAB", -12.375),
    "f32_badc": _p(23, "float32", "BADC", -12.375),
    "f32_dcba": _p(25, "float32", "DCBA", -12.375),
    "f64_abcd": _p(27, "float64", "ABCD", 123456.789),
    "f64_dcba": _p(31, "float64", "DCBA", 123456.789),
    # gap: 35-37
    "bit0": _bit(BITS_ADDRESS, 0, True),
    "bit5": _bit(BITS_ADDRESS, 5, False),
    "bit9": _bit(BITS_ADDRESS, 9, True),
}

PATTERN_COUNT = BITS_ADDRESS + 1  # input registers 0..38


def encode_point(point: PatternPoint) -> list[int]:
    """Registers of one numeric pattern point, as they go on the wire."""
    data = struct.pack(_FORMAT[point.type], point.value)
    words = [int.from_bytes(data[i : i + 2], point.byte_order) for i in range(0, len(data), 2)]
    return words if point.word_order == "big" else words[::-1]


def pattern_registers() -> list[int]:
    """The whole input-register block 0..PATTERN_COUNT-1."""
    registers = [GAP_FILL] * PATTERN_COUNT
    for point in TEST_PATTERN.values():
        if point.type == "bool":
            continue
        words = encode_point(point)
        registers[point.address : point.address + len(words)] = words
    registers[BITS_ADDRESS] = BITS_REGISTER
    return registers
