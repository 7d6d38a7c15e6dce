"""Codec vectors, written out by hand (not produced by encode), for every type and order."""

from __future__ import annotations

import math

import pytest

from drivers.modbus.codec import CodecError, decode, encode, extract_bit

BB, BL, LB, LL = ("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")
ABCD, CDAB, BADC, DCBA = BB, BL, LB, LL  # (byte_order, word_order)

VECTORS = [
    # int16 -1234 = 0xFB2E
    ("int16", -1234, BB, [0xFB2E]),
    ("int16", -1234, BL, [0xFB2E]),  # word order is meaningless for one register
    ("int16", -1234, LB, [0x2EFB]),
    ("int16", -1234, LL, [0x2EFB]),
    ("int16", -32768, BB, [0x8000]),
    ("int16", 32767, LB, [0xFF7F]),
    # uint16 51234 = 0xC822
    ("uint16", 51234, BB, [0xC822]),
    ("uint16", 51234, BL, [0xC822]),
    ("uint16", 51234, LB, [0x22C8]),
    ("uint16", 51234, LL, [0x22C8]),
    ("uint16", 0xFFFF, BB, [0xFFFF]),
    # int32 -123456789 = 0xF8A432EB
    ("int32", -123456789, ABCD, [0xF8A4, 0x32EB]),
    ("int32", -123456789, CDAB, [0x32EB, 0xF8A4]),
    ("int32", -123456789, BADC, [0xA4F8, 0xEB32]),
    ("int32", -123456789, DCBA, [0xEB32, 0xA4F8]),
    # uint32 3000000000 = 0xB2D05E00 (above 2**31: must not come back negative)
    ("uint32", 3_000_000_000, ABCD, [0xB2D0, 0x5E00]),
    ("uint32", 3_000_000_000, CDAB, [0x5E00, 0xB2D0]),
    ("uint32", 3_000_000_000, BADC, [0xD0B2, 0x005E]),
    ("uint32", 3_000_000_000, DCBA, [0x005E, 0xD0B2]),
    # float32 1.5 = 0x3FC00000
    ("float32", 1.5, ABCD, [0x3FC0, 0x0000]),
    ("float32", 1.5, CDAB, [0x0000, 0x3FC0]),
    ("float32", 1.5, BADC, [0xC03F, 0x0000]),
    ("float32", 1.5, DCBA, [0x0000, 0xC03F]),
    # float32 -12.375 = 0xC1460000
    ("float32", -12.375, ABCD, [0xC146, 0x0000]),
    ("float32", -12.375, CDAB, [0x0000, 0xC146]),
    ("float32", -12.375, BADC, [0x46C1, 0x0000]),
    ("float32", -12.375, DCBA, [0x0000, 0x46C1]),
    # float64 123456.789 = 0x40FE240C9FBE76C9
    ("float64", 123456.789, ABCD, [0x40FE, 0x240C, 0x9FBE, 0x76C9]),
    ("float64", 123456.789, CDAB, [0x76C9, 0x9FBE, 0x240C, 0x40FE]),
    ("float64", 123456.789, BADC, [0xFE40, 0x0C24, 0xBE9F, 0xC976]),
    ("float64", 123456.789, DCBA, [0xC976, 0xBE9F, 0x0C24, 0xFE40]),
]


ORDER_NAMES = {BB: "ABCD", BL: "CDAB", LB: "BADC", LL: "DCBA"}


def _id(vector):
    type_, value, orders, _ = vector
    return f"{type_}-{value}-{ORDER_NAMES[orders]}"


@pytest.mark.parametrize("vector", VECTORS, ids=[_id(v) for v in VECTORS])
def test_decode_vector(vector):
    type_, value, (byte_order, word_order), registers = vector
    got = decode(registers, type_, byte_order, word_order)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("vector", VECTORS, ids=[_id(v) for v in VECTORS])
def test_encode_vector(vector):
    type_, value, (byte_order, word_order), registers = vector
    assert encode(value, type_, byte_order, word_order) == registers


def test_float_specials_survive():
    assert decode([0x7F80, 0x0000], "float32", "big", "big") == math.inf
    assert math.isnan(decode([0x7FC0, 0x0000], "float32", "big", "big"))
    assert encode(-math.inf, "float32", "big", "little") == [0x0000, 0xFF80]


def test_encode_accepts_integral_float_for_int_types():
    assert encode(320.0, "uint16", "big", "big") == [0x0140]


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (70000, "uint16"),
        (-1, "uint16"),
        (40000, "int16"),
        (2**32, "uint32"),
        (-(2**31) - 1, "int32"),
        (3.2, "uint16"),  # not integral: the binding must round
        (True, "uint16"),
        (1e39, "float32"),
    ],
)
def test_encode_rejects_values_that_do_not_fit(value, type_):
    with pytest.raises(CodecError):
        encode(value, type_, "big", "big")


def test_decode_rejects_wrong_register_count_and_non_16_bit_words():
    with pytest.raises(CodecError, match="needs 2 registers"):
        decode([1], "float32", "big", "big")
    with pytest.raises(CodecError, match="not 16-bit"):
        decode([0x10000], "uint16", "big", "big")


def test_bool_is_not_a_register_type():
    with pytest.raises(CodecError):
        decode([1], "bool", "big", "big")
    with pytest.raises(CodecError):
        encode(True, "bool", "big", "big")


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


@pytest.mark.parametrize(
    ("register", "bit", "expected"),
    [(0x0001, 0, True), (0x0001, 1, False), (0x8000, 15, True), (0x7FFF, 15, False), (0x0220, 5, True)],
)
def test_extract_bit(register, bit, expected):
    assert extract_bit(register, bit) is expected


def test_extract_bit_range():
    with pytest.raises(CodecError):
        extract_bit(0, 16)
