"""Fuzzing what an OPC-UA server can send us (#8, bad input): any DataValue — every variant type,
arrays, nulls, any status code, any timestamp — and DataValues decoded by asyncua from mutated
wire bytes become a Sample without an exception, and the Sample is honest: a value only when
the status is not bad and the type is one we measure, of the type the server sent.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Sample
from drivers.opcua import sample_from
from drivers.opcua.status import quality_of
from gascore.records import Quality

INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
MEASURED = {ua.VariantType.Boolean, ua.VariantType.Float, ua.VariantType.Double, ua.VariantType.String, *INT_RANGES}

# Naive bounds on purpose: asyncua hands out naive datetimes too (they mean UTC on the wire).
EARLIEST, LATEST = datetime(1601, 1, 1), datetime(9999, 12, 31)  # noqa: DTZ001
COMMON_CODES = [0, 0x40000000, 0x40A00000, 0x80000000, 0x80310000]  # good, uncertain, bad, …
timestamps = st.one_of(
    st.none(),
    st.datetimes(min_value=EARLIEST, max_value=LATEST),
    st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC)),
)


def scalar_for(vtype: ua.VariantType) -> st.SearchStrategy[object]:
    if vtype in INT_RANGES:
        lo, hi = INT_RANGES[vtype]
        return st.integers(lo, hi)
    if vtype is ua.VariantType.Boolean:
        return st.booleans()
    if vtype is ua.VariantType.Float:
        return st.floats(width=32)
    if vtype is ua.VariantType.Double:
        return st.floats()
    if vtype is ua.VariantType.String:
        return st.text(max_size=200)
    if vtype is ua.VariantType.ByteString:
        return st.binary(max_size=64)
    if vtype is ua.VariantType.DateTime:
        return st.datetimes(min_value=EARLIEST, timezones=st.just(UTC))
    if vtype is ua.VariantType.Guid:
        return st.uuids()
    if vtype is ua.VariantType.LocalizedText:
        return st.builds(ua.LocalizedText, st.text(max_size=20), st.sampled_from(["zh-CN", "en", ""]))
    if vtype is ua.VariantType.NodeId:
        return st.builds(ua.NodeId, st.integers(0, 2**32 - 1), st.integers(0, 65535))
    if vtype is ua.VariantType.StatusCode:
        return st.builds(lambda c: ua.StatusCode(ua.UInt32(c)), st.integers(0, 2**32 - 1))
    if vtype is ua.VariantType.QualifiedName:
        return st.builds(ua.QualifiedName, st.text(max_size=20), st.integers(0, 65535))
    return st.nothing()


FUZZED_TYPES = [t for t in ua.VariantType if not scalar_for(t).is_empty]


@st.composite
def variants(draw: st.DrawFn) -> ua.Variant | None:
    vtype = draw(st.sampled_from(FUZZED_TYPES))
    shape = draw(st.sampled_from(["scalar", "array", "null"]))
    if shape == "null":
        return draw(st.sampled_from([None, ua.Variant(None, ua.VariantType.Null)]))
    if shape == "array":
        return ua.Variant(draw(st.lists(scalar_for(vtype), max_size=4)), vtype, is_array=True)
    return ua.Variant(draw(scalar_for(vtype)), vtype)


@st.composite
def data_values(draw: st.DrawFn) -> ua.DataValue:
    return ua.DataValue(
        Value=draw(variants()),
        StatusCode=ua.StatusCode(
            ua.UInt32(draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 0x40000000]))))
        ),
        SourceTimestamp=draw(timestamps),
        ServerTimestamp=draw(timestamps),
    )


def assert_honest(dv: ua.DataValue, sample: Sample) -> None:
    assert sample.key == "p"
    assert (sample.value is None) == (sample.error is not None), sample
    assert sample.ts_ms is None or (isinstance(sample.ts_ms, int) and sample.ts_ms > 0)
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    quality, status_error = quality_of(code)
    assert sample.quality == quality
    if status_error is not None:  # a bad status: never a value, whatever the variant says
        assert sample.value is None and sample.error == status_error
        return
    variant = dv.Value
    measurable = (
        variant is not None
        and variant.Value is not None
        and not variant.is_array
        and not isinstance(variant.Value, list)
        and variant.VariantType in MEASURED
    )
    if not measurable:
        assert sample.value is None and sample.error is not None and sample.error.startswith("unsupported_type:")
        return
    assert variant is not None
    vtype = ua.VariantType(variant.VariantType)
    if vtype is ua.VariantType.Boolean:
        assert sample.value is bool(variant.Value)
    elif vtype in INT_RANGES:
        assert type(sample.value) is int and sample.value == variant.Value
    elif vtype is ua.VariantType.String:
        assert sample.value == variant.Value
    else:
        assert type(sample.value) is float
        assert sample.value == variant.Value or (sample.value != sample.value and variant.Value != variant.Value)
    if quality is not None:
        assert quality in (Quality.UNCERTAIN_STALE, Quality.UNCERTAIN_SUBSTITUTED)


@settings(max_examples=600, deadline=None)
@given(data_values(), st.sampled_from(["source", "server"]))
def test_any_data_value_becomes_an_honest_sample(dv: ua.DataValue, timestamp: str) -> None:
    assert_honest(dv, sample_from("p", dv, timestamp))


@settings(max_examples=600, deadline=None)
@given(data_values(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.data())
def test_data_values_decoded_from_mutated_wire_bytes(
    dv: ua.DataValue, flips: list[tuple[int, int]], data: st.DataObject
) -> None:
    """A server (or a corrupting link under a None security policy) sends bytes that asyncua
    still decodes: whatever comes out is handled like any other DataValue."""
    try:
        wire = bytearray(struct_to_binary(dv))
    except Exception:  # a value asyncua cannot encode (e.g. an out-of-range float32) is not on any wire
        return
    for at, byte in flips:
        if wire:
            wire[at % len(wire)] = byte
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(wire))))  # a truncated frame, sometimes
    decoded = None
    with contextlib.suppress(Exception):  # undecodable bytes are asyncua's to refuse (the channel drops)
        decoded = struct_from_binary(ua.DataValue, Buffer(bytes(wire[:cut])))
    if decoded is not None:
        assert_honest(decoded, sample_from("p", decoded))
