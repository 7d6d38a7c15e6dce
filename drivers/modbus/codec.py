"""Register <-> value conversion for every data type, byte order and word order.

Modbus registers are 16-bit words.  A device stores a multi-byte value as bytes A B C D ...
(A most significant); ``byte_order`` says whether each register holds AB (big) or BA (little);
``word_order`` whether the register carrying the most significant bytes comes first (big) or last
(little).  Names technicians use: ABCD = big/big, CDAB = big byte / little word,
BADC = little byte / big word, DCBA = little/little.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence

from drivers.base import ScalarValue
from drivers.modbus.config import TYPE_WIDTH, DataType, Order

_STRUCT: dict[DataType, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "float64": ">d",
}


class CodecError(ValueError):
    """The registers or the value do not fit the data type."""


def _format(type_: DataType) -> str:
    try:
        return _STRUCT[type_]
    except KeyError:
        raise CodecError(f"{type_} is not a register data type (a bool is read with extract_bit)") from None


def _bytes_to_registers(data: bytes, byte_order: Order, word_order: Order) -> list[int]:
    words = [int.from_bytes(data[i : i + 2], byte_order) for i in range(0, len(data), 2)]
    return words if word_order == "big" else words[::-1]


Decoder = Callable[[Sequence[int]], int | float]


@functools.cache
def decoder_for(type_: DataType, byte_order: Order, word_order: Order) -> Decoder:
    """A compiled decoder for one (type, byte order, word order): the hot path of every poll.

    Packing the registers with the register byte order rebuilds the value's bytes A B C D …;
    the value struct then reads them big-endian.  Registers must already be 16-bit (as they are
    off the wire); :func:`decode` validates for callers with untrusted input.
    """
    width = TYPE_WIDTH[type_]
    unpack = struct.Struct(_format(type_)).unpack
    pack = struct.Struct((">" if byte_order == "big" else "<") + "H" * width).pack
    if word_order == "big" or width == 1:
        return lambda registers: unpack(pack(*registers))[0]
    return lambda registers: unpack(pack(*reversed(registers)))[0]


def whole_request_decoder(
    count: int, fields: Sequence[tuple[int, DataType, Order, Order]]
) -> Callable[[Sequence[int]], tuple[int | float, ...]] | None:
    """One decoder for every value of a read of ``count`` registers; ``fields`` are (offset,
    type, byte order, word order) of the values, in order.  It packs the registers once and
    unpacks them all with one struct format, pad bytes over the gaps: what :func:`decoder_for`
    does per value, once per answer.  None when the values cannot be read that way (byte orders
    differ, a multi-register value in little word order, values out of address order or
    overlapping): the caller then decodes value by value."""
    byte_orders = {byte_order for _, _, byte_order, _ in fields}
    if len(byte_orders) != 1:
        return None
    parts = [">"]
    position = 0
    for offset, type_, _, word_order in fields:
        width = TYPE_WIDTH[type_]
        if type_ not in _STRUCT or offset < position or (width > 1 and word_order != "big"):
            return None
        if offset > position:
            parts.append(f"{(offset - position) * 2}x")
        parts.append(_STRUCT[type_][1:])
        position = offset + width
    if position > count:
        return None
    if position < count:
        parts.append(f"{(count - position) * 2}x")
    unpack = struct.Struct("".join(parts)).unpack
    pack = struct.Struct((">" if byte_orders.pop() == "big" else "<") + "H" * count).pack
    return lambda registers: unpack(pack(*registers))


def decode(registers: Sequence[int], type_: DataType, byte_order: Order, word_order: Order) -> int | float:
    """Decode the registers of one value (exactly its width) to a Python int or float."""
    if len(registers) != TYPE_WIDTH[type_]:
        raise CodecError(f"{type_} needs {TYPE_WIDTH[type_]} registers, got {len(registers)}")
    for word in registers:
        if not 0 <= word <= 0xFFFF:
            raise CodecError(f"register value {word} is not 16-bit")
    return decoder_for(type_, byte_order, word_order)(registers)


def encode(value: ScalarValue, type_: DataType, byte_order: Order, word_order: Order) -> list[int]:
    """Encode a value to the registers to write; the inverse of :func:`decode`."""
    fmt = _format(type_)
    if isinstance(value, bool):
        # True/False into a numeric register is almost always a binding mistake; refuse it.
        raise CodecError(f"refusing to write bool {value} as {type_}")
    if type_.startswith("float"):
        number: int | float = float(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise CodecError(f"{value} is not an integer; round it before writing {type_}")
        number = int(value)
    else:
        number = value
    try:
        data = struct.pack(fmt, number)
    except (struct.error, OverflowError) as err:
        raise CodecError(f"{value} does not fit {type_}") from err
    return _bytes_to_registers(data, byte_order, word_order)


def extract_bit(register: int, bit: int) -> bool:
    """Bit ``bit`` (0 = least significant) of a 16-bit register."""
    if not 0 <= bit <= 15:
        raise CodecError(f"bit {bit} is outside 0..15")
    return bool((register >> bit) & 1)
