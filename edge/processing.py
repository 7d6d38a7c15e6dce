"""Turn raw driver samples into thing-model readings: scale/offset, type, range check, quality,
and report-by-exception (deadband with a maximum silent interval).

This is the edge's hot path: per-point parameters are resolved once in ``DeviceProcessor``'s
constructor, and qualities are compared by identity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Sample
from gascore.records import (
    COMM_FAILURE,
    DEVICE_ERROR,
    GOOD,
    MAX_STRING_VALUE,
    OUT_OF_RANGE,
    SENSOR_FAULT,
    Quality,
    Reading,
    Value,
)
from gascore.thingmodel import Property


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Everything processing needs about one bound point, resolved once at start-up."""

    key: str
    prop: Property
    scale: float = 1.0
    offset: float = 0.0
    deadband: float | None = None


_BOOL, _FLOAT, _INT, _STRING = 0, 1, 2, 3
_TRUE = frozenset({"1", "true", "on", "yes", "open"})
_FALSE = frozenset({"0", "false", "off", "no", "closed"})


@dataclass(slots=True)
class _Point:
    spec: PointSpec
    lo: float
    hi: float
    checks_range: bool
    deadband: float
    kind: int
    scaled: bool
    enum_values: frozenset[int] | None
    divisor: float  # 1/scale when that is a whole number: 117 / 10 is 11.7, 117 * 0.1 is 11.700000000000001
    scale: float
    offset: float
    inline_float: bool  # a float property (bounds ±inf without a range): the inline path of ``process``
    last_value: Value = None
    last_quality: Quality | None = None
    last_ts: int = 0


def _convert(pt: _Point, raw: float | int | bool | str) -> tuple[Value, Quality]:
    kind = pt.kind
    if kind == _BOOL:
        if raw.__class__ is str:
            text = str(raw).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE, GOOD
            return None, DEVICE_ERROR
        return bool(raw), GOOD
    if kind == _STRING:
        # NUL from a device's text field would make the cloud refuse the whole batch.
        return str(raw).replace("\x00", "")[:MAX_STRING_VALUE], GOOD
    if raw.__class__ is str:
        try:  # JSON payloads and line protocols often carry numbers as text
            raw = float(str(raw))
        except ValueError:
            return None, DEVICE_ERROR
    return _number(pt, raw)  # type: ignore[arg-type]


def _number(pt: _Point, raw: float | int) -> tuple[Value, Quality]:
    if pt.scaled:
        raw = (raw / pt.divisor if pt.divisor else raw * pt.scale) + pt.offset
    if raw.__class__ is float and not math.isfinite(raw):
        return None, SENSOR_FAULT  # NaN / ±inf: the usual "no sensor" pattern of a float register
    value = float(raw) if pt.kind == _FLOAT else round(raw)
    if pt.checks_range and not (pt.lo <= value <= pt.hi):
        return value, OUT_OF_RANGE
    if pt.enum_values is not None and value not in pt.enum_values:
        return value, OUT_OF_RANGE
    return value, GOOD


def _exact_divisor(scale: float) -> float:
    if scale == 0 or abs(scale) >= 1:
        return 0.0
    inverse = 1 / scale
    return float(round(inverse)) if abs(inverse - round(inverse)) < 1e-9 else 0.0


_KINDS = {"bool": _BOOL, "int": _INT, "enum": _INT, "float": _FLOAT, "string": _STRING}


class DeviceProcessor:
    """Per-device state for report-by-exception.  Not thread-safe; one per poller."""

    def __init__(self, device: str, specs: Sequence[PointSpec], max_silent_ms: int) -> None:
        self.device = device
        self.max_silent_ms = max_silent_ms
        self._points: dict[str, _Point] = {}
        for s in specs:
            rng = s.prop.range
            self._points[s.key] = _Point(
                s,
                rng[0] if rng else -math.inf,
                rng[1] if rng else math.inf,
                rng is not None and s.prop.type in ("int", "float"),
                s.deadband if s.deadband is not None else 0.0,
                _KINDS[s.prop.type],
                s.scale != 1.0 or s.offset != 0.0,
                frozenset(s.prop.values) if s.prop.type == "enum" and s.prop.values else None,
                _exact_divisor(s.scale),
                s.scale,
                s.offset,
                s.prop.type == "float",
            )

    def process(self, samples: Sequence[Sample], ts_ms: int, observed: list[Reading] | None = None) -> list[Reading]:
        """The readings to report.  If ``observed`` is given, every converted sample is appended
        to it as well, reported or not (rules such as "stuck" need to see unchanged values)."""
        out: list[Reading] = []
        device, max_silent = self.device, self.max_silent_ms
        points = self._points
        poll_ts = ts_ms
        for sample in samples:
            pt = points[sample.key]
            raw = sample.value
            ts_ms = sample.ts_ms or poll_ts
            value: Value
            cls = raw.__class__
            if sample.error is not None or raw is None:
                value, quality = None, sample.quality or DEVICE_ERROR
            elif pt.inline_float and (cls is int or cls is float):
                # The common case inline (a register scaled into a float property): exactly what
                # _convert and _number do for it, without two calls per point.
                number = float(raw)  # int or float, as just checked
                if pt.scaled:
                    number = (number / pt.divisor if pt.divisor else number * pt.scale) + pt.offset
                if not math.isfinite(number):
                    value, quality = None, SENSOR_FAULT
                elif pt.lo <= number <= pt.hi:
                    value, quality = number, GOOD
                else:
                    value, quality = number, OUT_OF_RANGE
            elif cls is bool and pt.kind == _BOOL:
                value, quality = raw, GOOD
            else:
                value, quality = _convert(pt, raw)
            if sample.quality is not None and quality is GOOD:
                quality = sample.quality  # the device's own verdict (e.g. OPC-UA Uncertain)
            if observed is not None:
                observed.append(Reading(device, pt.spec.key, ts_ms, value, quality))
            last_quality = pt.last_quality
            if last_quality is not None and quality is last_quality and ts_ms - pt.last_ts < max_silent:
                last = pt.last_value
                if isinstance(value, float) and isinstance(last, float):
                    if abs(value - last) <= pt.deadband:
                        continue
                elif value == last:
                    continue
            pt.last_value, pt.last_quality, pt.last_ts = value, quality, ts_ms
            out.append(observed[-1] if observed is not None else Reading(device, pt.spec.key, ts_ms, value, quality))
        return out

    def comm_failure(self, ts_ms: int) -> list[Reading]:
        """Mark every point bad/comm_failure (reported once per outage, then silent)."""
        out = []
        for key, pt in self._points.items():
            if pt.last_quality is not COMM_FAILURE:
                pt.last_value, pt.last_quality, pt.last_ts = None, COMM_FAILURE, ts_ms
                out.append(Reading(self.device, key, ts_ms, None, COMM_FAILURE))
        return out
