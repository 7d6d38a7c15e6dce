"""Turn raw driver samples into thing-model readings: scale/offset, type, range check, quality,
and report-by-exception (deadband with a maximum silent interval)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Sample
from gascore.records import (
    COMM_FAILURE,
    GOOD,
    OUT_OF_RANGE,
    Quality,
    QualityReason,
    QualityStatus,
    Reading,
    Value,
)
from gascore.thingmodel import Property

DEVICE_ERROR = Quality(QualityStatus.BAD, QualityReason.DEVICE_ERROR)


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Everything processing needs about one bound point, resolved once at start-up."""

    key: str
    prop: Property
    scale: float = 1.0
    offset: float = 0.0
    deadband: float | None = None


def to_engineering(spec: PointSpec, raw: float | int | bool) -> Value:
    kind = spec.prop.type
    if kind == "bool":
        return bool(raw)
    value = raw * spec.scale + spec.offset if (spec.scale != 1.0 or spec.offset != 0.0) else raw
    if kind in ("int", "enum"):
        return round(value)
    return float(value)


def check_range(spec: PointSpec, value: Value) -> Quality:
    rng = spec.prop.range
    if rng is None or not isinstance(value, int | float) or isinstance(value, bool):
        return GOOD
    if math.isnan(value) or not rng[0] <= value <= rng[1]:
        return OUT_OF_RANGE
    return GOOD


class DeviceProcessor:
    """Per-device state for report-by-exception.  Not thread-safe; one per poller."""

    def __init__(self, device: str, specs: Sequence[PointSpec], max_silent_ms: int) -> None:
        self.device = device
        self.specs = {s.key: s for s in specs}
        self.max_silent_ms = max_silent_ms
        self._last: dict[str, tuple[Value, Quality, int]] = {}

    def process(self, samples: Sequence[Sample], ts_ms: int) -> list[Reading]:
        out: list[Reading] = []
        for sample in samples:
            spec = self.specs[sample.key]
            if sample.error is not None or sample.value is None:
                value: Value = None
                quality = DEVICE_ERROR
            else:
                value = to_engineering(spec, sample.value)
                quality = check_range(spec, value)
            if self._should_report(spec, value, quality, ts_ms):
                self._last[spec.key] = (value, quality, ts_ms)
                out.append(Reading(self.device, spec.key, ts_ms, value, quality))
        return out

    def comm_failure(self, ts_ms: int) -> list[Reading]:
        """Mark every point bad/comm_failure (reported once per outage, then silent)."""
        out = []
        for key in self.specs:
            last = self._last.get(key)
            if last is None or last[1] != COMM_FAILURE:
                self._last[key] = (None, COMM_FAILURE, ts_ms)
                out.append(Reading(self.device, key, ts_ms, None, COMM_FAILURE))
        return out

    def _should_report(self, spec: PointSpec, value: Value, quality: Quality, ts_ms: int) -> bool:
        last = self._last.get(spec.key)
        if last is None:
            return True
        last_value, last_quality, last_ts = last
        if quality != last_quality or ts_ms - last_ts >= self.max_silent_ms:
            return True
        if quality == COMM_FAILURE:
            return False
        if spec.deadband is None or not isinstance(value, float) or not isinstance(last_value, float):
            return value != last_value
        return abs(value - last_value) > spec.deadband
