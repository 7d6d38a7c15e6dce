"""Read planning: coalescing within limits, exact coverage, overlap detection."""

from __future__ import annotations

import itertools
import random

import pytest

from drivers.modbus.config import TYPE_WIDTH, ModbusPoint
from drivers.modbus.planner import ReadRequest, find_overlaps, plan_reads


def reg(address, type_="uint16", table="holding", bit=None):
    return ModbusPoint(table=table, address=address, type=type_, bit=bit)


def coil(address, table="coil"):
    return ModbusPoint(table=table, address=address, type="bool")


def spans(requests):
    return [(r.table, r.start, r.count) for r in requests]


def test_contiguous_points_share_one_request():
    points = [("a", reg(0, "float32")), ("b", reg(2, "float32")), ("c", reg(4)), ("d", reg(5, "uint32"))]
    requests = plan_reads(points, max_registers=125, max_bits=2000, max_gap=0)
    assert spans(requests) == [("holding", 0, 7)]
    assert [k for k, _ in requests[0].members] == ["a", "b", "c", "d"]


def test_gap_within_max_gap_is_read_through_and_larger_gap_splits():
    points = [("a", reg(0)), ("b", reg(4)), ("c", reg(9))]  # gaps of 3 and 4 unused registers
    assert spans(plan_reads(points, max_registers=125, max_bits=2000, max_gap=3)) == [
        ("holding", 0, 5),
        ("holding", 9, 1),
    ]
    assert spans(plan_reads(points, max_registers=125, max_bits=2000, max_gap=4)) == [("holding", 0, 10)]
    assert len(plan_reads(points, max_registers=125, max_bits=2000, max_gap=0)) == 3


def test_tables_never_mix_and_come_in_fixed_order():
    points = [
        ("d", coil(0, "discrete")),
        ("c", coil(1)),
        ("i", reg(0, table="input")),
        ("h", reg(1)),
    ]
    requests = plan_reads(points, max_registers=125, max_bits=2000, max_gap=8)
    assert spans(requests) == [("holding", 1, 1), ("input", 0, 1), ("coil", 1, 1), ("discrete", 0, 1)]


def test_register_limit_is_respected_and_a_value_never_straddles():
    # 0..122 as uint16 then a float32 at 123..124 and a float64 at 125..128
    points = [(f"r{i}", reg(i)) for i in range(123)]
    points += [("f32", reg(123, "float32")), ("f64", reg(125, "float64"))]
    requests = plan_reads(points, max_registers=124, max_bits=2000, max_gap=8)
    assert spans(requests) == [("holding", 0, 123), ("holding", 123, 6)]


def test_bit_limit_applies_to_coils():
    points = [(f"c{i}", coil(i)) for i in range(10)]
    assert spans(plan_reads(points, max_registers=125, max_bits=4, max_gap=8)) == [
        ("coil", 0, 4),
        ("coil", 4, 4),
        ("coil", 8, 2),
    ]


def test_bits_of_one_register_share_the_register():
    points = [("b0", reg(7, "bool", bit=0)), ("b2", reg(7, "bool", bit=2)), ("w", reg(7))]
    requests = plan_reads(points, max_registers=125, max_bits=2000, max_gap=0)
    assert spans(requests) == [("holding", 7, 1)]
    assert len(requests[0].members) == 3


def test_unsorted_input_is_planned_by_address():
    points = [("c", reg(20)), ("a", reg(0)), ("b", reg(10))]
    requests = plan_reads(points, max_registers=125, max_bits=2000, max_gap=10)
    assert spans(requests) == [("holding", 0, 21)]
    assert [k for k, _ in requests[0].members] == ["a", "b", "c"]


def test_duplicate_keys_and_too_wide_points_are_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        plan_reads([("a", reg(0)), ("a", reg(1))], max_registers=125, max_bits=2000, max_gap=0)
    with pytest.raises(ValueError, match="needs 4 registers"):
        plan_reads([("a", reg(0, "float64"))], max_registers=2, max_bits=2000, max_gap=0)


def test_empty_input_plans_nothing():
    assert plan_reads([], max_registers=125, max_bits=2000, max_gap=8) == []


def test_read_request_end():
    assert ReadRequest("holding", 10, 5, ()).end == 14


def _random_point(rng: random.Random) -> ModbusPoint:
    table = rng.choice(["holding", "input", "coil", "discrete"])
    if table in ("coil", "discrete"):
        return ModbusPoint(table=table, address=rng.randrange(0, 300), type="bool")
    type_ = rng.choice(["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"])
    bit = rng.randrange(16) if type_ == "bool" else None
    return ModbusPoint(table=table, address=rng.randrange(0, 300), type=type_, bit=bit)


@pytest.mark.parametrize("seed", range(200))
def test_random_point_sets_are_covered_exactly_once_within_limits(seed):
    rng = random.Random(seed)
    points = [(f"p{i}", _random_point(rng)) for i in range(rng.randrange(1, 80))]
    max_registers = rng.randrange(4, 126)
    max_bits = rng.randrange(1, 64)
    max_gap = rng.randrange(0, 20)
    requests = plan_reads(points, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)

    covered = [key for r in requests for key, _ in r.members]
    assert sorted(covered) == sorted(k for k, _ in points)  # every point exactly once
    for r in requests:
        limit = max_bits if r.table in ("coil", "discrete") else max_registers
        assert 1 <= r.count <= limit
        assert r.start >= 0 and r.end <= 65535
        for _, p in r.members:
            assert p.table == r.table
            assert r.start <= p.address and p.address + TYPE_WIDTH[p.type] - 1 <= r.end  # never straddles
    # Requests of one table do not repeat registers unless points themselves overlap.
    if not find_overlaps(points):
        for a, b in itertools.pairwise(requests):
            if a.table == b.table:
                assert a.end < b.start


def test_find_overlaps():
    points = [
        ("f", reg(0, "float32")),  # 0..1
        ("w", reg(1)),  # overlaps f
        ("i", reg(1, table="input")),  # other table: no overlap
        ("b3", reg(5, "bool", bit=3)),
        ("b4", reg(5, "bool", bit=4)),  # different bit: no overlap
        ("b3again", reg(5, "bool", bit=3)),  # same bit: overlap
        ("status", reg(5)),  # whole register vs bits: overlaps both
        ("c0", coil(0)),
        ("c0b", coil(0)),
        ("d0", coil(0, "discrete")),
    ]
    assert find_overlaps(points) == [
        ("f", "w"),
        ("b3", "b3again"),
        ("b3", "status"),
        ("b4", "status"),
        ("b3again", "status"),
        ("c0", "c0b"),
    ]


def test_find_overlaps_none_for_adjacent_values():
    assert find_overlaps([("a", reg(0, "float64")), ("b", reg(4, "float64"))]) == []


# ---- one struct call per answer -------------------------------------------------------------

REGISTER_TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64"]


@pytest.mark.parametrize("seed", range(300))
def test_decoding_a_whole_answer_at_once_equals_decoding_value_by_value(seed: int) -> None:
    """Requests whose values share a byte order decode with one struct call; the values (and
    their types: a float register decoded as int would compare equal) are what the per-value
    decoders give, for every type, byte and word order, gap and trailing pad."""
    from drivers.modbus.ops import decode_response

    rnd = random.Random(seed)
    byte_order = rnd.choice(["big", "little"])
    points, address = [], rnd.randrange(0, 50)
    for i in range(rnd.randint(1, 12)):
        type_ = rnd.choice(REGISTER_TYPES)
        word_order = rnd.choice(["big", "little"]) if rnd.random() < 0.2 else "big"
        # now and then a member of the other byte order: the request falls back, and still agrees
        order = byte_order if rnd.random() < 0.9 else rnd.choice(["big", "little"])
        points.append(
            (
                f"p{i}",
                ModbusPoint(table="holding", address=address, type=type_, byte_order=order, word_order=word_order),
            )
        )
        address += TYPE_WIDTH[type_] + rnd.choice([0, 0, 0, 1, 3])
    requests = plan_reads(points, max_registers=125, max_bits=2000, max_gap=3)
    for request in requests:
        words = [rnd.randrange(0, 0x10000) for _ in range(request.count)]
        fast = decode_response(request, words)
        one_by_one = [(key, decoder(words[first:past])) for key, first, past, _, decoder in request.layout]
        assert [s.key for s in fast] == [key for key, _ in one_by_one]
        for sample, (_, value) in zip(fast, one_by_one, strict=True):
            assert type(sample.value) is type(value)
            assert sample.value == value or (value != value and sample.value != sample.value)  # NaN
        uses_fast_path = request.decode_all is not None
        orders = {p.byte_order for _, p in request.members}
        little_words = any(p.word_order == "little" and p.width > 1 for _, p in request.members)
        assert uses_fast_path == (len(orders) == 1 and not little_words)
