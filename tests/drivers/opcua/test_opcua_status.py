"""Status code → quality, variant → value, timestamps, and value → variant for writes (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes as S

from drivers.base import Sample
from drivers.opcua import WriteValueError, quality_of, sample_from, to_variant
from drivers.opcua.status import epoch_ms, status
from gascore.records import Quality

SOURCE = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
SERVER = SOURCE + timedelta(milliseconds=150)
SOURCE_MS = 1_777_636_800_250


def dv(value: object, vtype: ua.VariantType, code: int = S.Good, **kw: object) -> ua.DataValue:
    variant = ua.Variant(value, vtype) if value is not None else None
    return ua.DataValue(
        Value=variant,
        StatusCode=status(code),
        SourceTimestamp=kw.get("source", SOURCE),  # type: ignore[arg-type]
        ServerTimestamp=kw.get("server", SERVER),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (S.Good, (None, None)),
        (S.GoodClamped, (None, None)),
        (S.Good | 0x480, (None, None)),  # info bits (overflow, limits) do not change the verdict
        (S.UncertainLastUsableValue, (Quality.UNCERTAIN_STALE, None)),
        (S.UncertainNoCommunicationLastUsableValue, (Quality.UNCERTAIN_STALE, None)),
        (S.UncertainSensorNotAccurate, (Quality.UNCERTAIN_STALE, None)),
        (S.UncertainSubstituteValue, (Quality.UNCERTAIN_SUBSTITUTED, None)),
        (S.UncertainInitialValue, (Quality.UNCERTAIN_SUBSTITUTED, None)),
        (S.BadCommunicationError, (Quality.BAD_COMM_FAILURE, "BadCommunicationError")),
        (S.BadNotConnected, (Quality.BAD_COMM_FAILURE, "BadNotConnected")),
        (S.BadServerNotConnected, (Quality.BAD_COMM_FAILURE, "BadServerNotConnected")),
        (S.BadNoCommunication, (Quality.BAD_COMM_FAILURE, "BadNoCommunication")),
        (S.BadSensorFailure, (Quality.BAD_SENSOR_FAULT, "BadSensorFailure")),
        (S.BadSensorFailure | 0x400, (Quality.BAD_SENSOR_FAULT, "BadSensorFailure")),
        (S.BadOutOfRange, (Quality.BAD_OUT_OF_RANGE, "BadOutOfRange")),
        (S.BadDeviceFailure, (Quality.BAD_DEVICE_ERROR, "BadDeviceFailure")),
        (S.BadNodeIdUnknown, (None, "BadNodeIdUnknown")),
        (S.BadWaitingForInitialData, (None, "BadWaitingForInitialData")),
    ],
)
def test_status_code_maps_to_quality(code: int, expected: tuple[Quality | None, str | None]) -> None:
    assert quality_of(code) == expected


def test_good_values_keep_their_type_and_source_timestamp() -> None:
    cases = [
        (True, ua.VariantType.Boolean, True),
        (-7, ua.VariantType.SByte, -7),
        (65535, ua.VariantType.UInt16, 65535),
        (2**63 - 1, ua.VariantType.Int64, 2**63 - 1),
        (1.5, ua.VariantType.Float, 1.5),
        (4.02, ua.VariantType.Double, 4.02),
        ("auto", ua.VariantType.String, "auto"),
    ]
    for value, vtype, expected in cases:
        sample = sample_from("k", dv(value, vtype))
        assert sample == Sample("k", expected, None, SOURCE_MS, None)
        assert type(sample.value) is type(expected)


def test_uncertain_keeps_the_value_bad_drops_it() -> None:
    assert sample_from("k", dv(3.5, ua.VariantType.Double, S.UncertainLastUsableValue)) == Sample(
        "k", 3.5, None, SOURCE_MS, Quality.UNCERTAIN_STALE
    )
    assert sample_from("k", dv(3.5, ua.VariantType.Double, S.BadSensorFailure)) == Sample(
        "k", None, "BadSensorFailure", SOURCE_MS, Quality.BAD_SENSOR_FAULT
    )
    assert sample_from("k", dv(None, ua.VariantType.Null, S.BadNodeIdUnknown, source=None, server=None)) == Sample(
        "k", None, "BadNodeIdUnknown", None, None
    )


def test_unsupported_variant_types_are_errors() -> None:
    assert sample_from("k", dv(SOURCE, ua.VariantType.DateTime)).error == "unsupported_type:DateTime"
    assert sample_from("k", dv([1.0, 2.0], ua.VariantType.Double)).error == "unsupported_type:Double[]"
    assert sample_from("k", dv(ua.LocalizedText("x"), ua.VariantType.LocalizedText)).error == (
        "unsupported_type:LocalizedText"
    )
    assert sample_from("k", dv(None, ua.VariantType.Null)).error == "unsupported_type:Null"


def test_timestamp_choice_and_fallback() -> None:
    server_ms = SOURCE_MS + 150
    assert sample_from("k", dv(1.0, ua.VariantType.Double), "server").ts_ms == server_ms
    assert sample_from("k", dv(1.0, ua.VariantType.Double, source=None)).ts_ms == server_ms  # no source: server
    assert sample_from("k", dv(1.0, ua.VariantType.Double, source=None, server=None)).ts_ms is None  # edge stamps
    assert epoch_ms(datetime(1601, 1, 1, tzinfo=UTC)) is None  # OPC-UA "null" time
    assert epoch_ms(datetime(2026, 5, 1, 12, 0, 0, 250_000)) == SOURCE_MS  # noqa: DTZ001 - naive = UTC


@pytest.mark.parametrize(
    ("value", "vtype", "expected"),
    [
        (True, ua.VariantType.Boolean, True),
        (0, ua.VariantType.Boolean, False),
        (3, ua.VariantType.Int16, 3),
        (3.0, ua.VariantType.UInt32, 3),
        (4, ua.VariantType.Double, 4.0),
        (0.45, ua.VariantType.Float, 0.45),
    ],
)
def test_to_variant(value: float, vtype: ua.VariantType, expected: object) -> None:
    variant = to_variant(value, vtype)
    assert variant.VariantType == vtype
    assert variant.Value == expected
    assert type(variant.Value) is type(expected)


@pytest.mark.parametrize(
    ("value", "vtype", "message"),
    [
        (2, ua.VariantType.Boolean, "true/false"),
        (True, ua.VariantType.Double, "takes a number"),
        (1.5, ua.VariantType.Int32, "whole number"),
        (float("nan"), ua.VariantType.Int32, "whole number"),
        (-1, ua.VariantType.UInt16, "out of range"),
        (70000, ua.VariantType.Int16, "out of range"),
        (1, ua.VariantType.String, "cannot write a String"),
    ],
)
def test_to_variant_refuses_what_does_not_fit(value: float, vtype: ua.VariantType, message: str) -> None:
    with pytest.raises(WriteValueError, match=message):
        to_variant(value, vtype)
