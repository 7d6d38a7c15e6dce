"""OPC-UA DataValue → :class:`drivers.base.Sample`: status code → quality, variant → value,
Source/Server timestamp → ``ts_ms``.  Pure functions, no I/O.

Status code mapping (the severity is the top two bits; the low 16 info bits are ignored):

============================================================  ==============================
OPC-UA status                                                 Sample
============================================================  ==============================
Good*                                                          value, ``quality=None``
UncertainSubstituteValue, UncertainInitialValue,               value, ``uncertain/substituted``
UncertainSimulatedValue, UncertainTransducerInManual
any other Uncertain*                                           value, ``uncertain/stale``
BadCommunicationError, BadNotConnected,                        ``error=<name>``, ``bad/comm_failure``
BadServerNotConnected, BadNoCommunication
BadSensorFailure                                               ``error=<name>``, ``bad/sensor_fault``
BadOutOfRange                                                  ``error=<name>``, ``bad/out_of_range``
BadDeviceFailure                                               ``error=<name>``, ``bad/device_error``
any other Bad*                                                 ``error=<name>``, ``quality=None``
============================================================  ==============================

Values: Boolean → bool, the integer types → int, Float/Double → float, String → str.  Anything
else (arrays, DateTime, LocalizedText, structures, a null variant) → ``error="unsupported_type:<name>"``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from drivers.base import Sample, ScalarValue
from gascore.records import Quality

_S = StatusCodes

_BAD_QUALITY: dict[int, Quality] = {
    _S.BadCommunicationError: Quality.BAD_COMM_FAILURE,
    _S.BadNotConnected: Quality.BAD_COMM_FAILURE,
    _S.BadServerNotConnected: Quality.BAD_COMM_FAILURE,
    _S.BadNoCommunication: Quality.BAD_COMM_FAILURE,
    _S.BadSensorFailure: Quality.BAD_SENSOR_FAULT,
    _S.BadOutOfRange: Quality.BAD_OUT_OF_RANGE,
    _S.BadDeviceFailure: Quality.BAD_DEVICE_ERROR,
}

_SUBSTITUTED: frozenset[int] = frozenset(
    {
        _S.UncertainSubstituteValue,
        _S.UncertainInitialValue,
        _S.UncertainSimulatedValue,
        _S.UncertainTransducerInManual,
    }
)

_SEVERITY_MASK = 0xC000_0000
_GOOD, _UNCERTAIN = 0x0000_0000, 0x4000_0000
_CODE_MASK = 0xFFFF_0000  # drop the info bits (overflow, limits, historian flags)

_INTEGER_TYPES: frozenset[ua.VariantType] = frozenset(
    {
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
    }
)
_FLOAT_TYPES: frozenset[ua.VariantType] = frozenset({ua.VariantType.Float, ua.VariantType.Double})


def status_name(code: int) -> str:
    """The status code's symbolic name (``BadNodeIdUnknown``), info bits ignored."""
    return status(code & _CODE_MASK).name


def status(code: int) -> ua.StatusCode:
    """A StatusCode from a plain int."""
    return ua.StatusCode(ua.UInt32(code))


def quality_of(code: int) -> tuple[Quality | None, str | None]:
    """``(quality, error)`` for a status code: see the table in the module docstring."""
    severity = code & _SEVERITY_MASK
    if severity == _GOOD:
        return None, None
    base = code & _CODE_MASK
    if severity == _UNCERTAIN:
        return (Quality.UNCERTAIN_SUBSTITUTED if base in _SUBSTITUTED else Quality.UNCERTAIN_STALE), None
    return _BAD_QUALITY.get(base), status_name(base)


def scalar_of(variant: ua.Variant | None) -> tuple[ScalarValue | str | None, str | None]:
    """``(value, error)`` for a variant: the value for the supported scalar types, else an error."""
    if variant is None or variant.Value is None:
        return None, "unsupported_type:Null"
    vtype = variant.VariantType
    if not isinstance(vtype, ua.VariantType):  # a custom (structure) type id off the wire
        return None, f"unsupported_type:{getattr(vtype, 'name', vtype)}"
    if variant.is_array or isinstance(variant.Value, list):
        return None, f"unsupported_type:{vtype.name}[]"
    value = variant.Value
    if vtype is ua.VariantType.Boolean:
        return bool(value), None
    if vtype in _INTEGER_TYPES:
        return int(value), None
    if vtype in _FLOAT_TYPES:
        return float(value), None
    if vtype is ua.VariantType.String:
        return str(value), None
    return None, f"unsupported_type:{vtype.name}"


def epoch_ms(ts: datetime | None) -> int | None:
    """UTC epoch milliseconds of an OPC-UA timestamp (asyncua gives aware UTC datetimes; a naive
    one is UTC by the OPC-UA encoding).  None for a missing or null (1601-01-01) timestamp."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ms = round(ts.timestamp() * 1000)
    return ms if ms > 0 else None


def sample_from(key: str, dv: ua.DataValue, timestamp: str = "source") -> Sample:
    """The Sample for one DataValue; ``timestamp`` picks ``source`` (falling back to the server
    timestamp when the server sent none) or ``server``."""
    if timestamp == "server":
        ts_ms = epoch_ms(dv.ServerTimestamp)
    else:
        ts_ms = epoch_ms(dv.SourceTimestamp)
        if ts_ms is None:
            ts_ms = epoch_ms(dv.ServerTimestamp)
    code = dv.StatusCode.value if dv.StatusCode is not None else _S.Good
    quality, error = quality_of(code)
    if error is not None:
        return Sample(key, None, error, ts_ms, quality)
    value, error = scalar_of(dv.Value)
    if error is not None:
        return Sample(key, None, error, ts_ms, quality)
    return Sample(key, value, None, ts_ms, quality)


def error_sample(key: str, code: int) -> Sample:
    """The Sample for a point the server refused as a whole (e.g. BadNodeIdUnknown at create)."""
    quality, error = quality_of(code)
    return Sample(key, None, error or status_name(code), None, quality)
