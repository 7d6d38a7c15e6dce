"""Record types that flow from the drivers through the edge store to the cloud.

Times are UTC epoch milliseconds.  Every record names a device and a thing-model property (or
event) identifier, never a raw register.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Value = float | int | bool | str | None
MAX_STRING_VALUE = 1024


class Lane(enum.StrEnum):
    """Sync lanes, each with its own gap-free sequence.  Events are sent first and never dropped."""

    EVENTS = "events"
    TELEMETRY = "telemetry"


class QualityStatus(enum.StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Quality(enum.StrEnum):
    """OPC-UA style quality: good / uncertain / bad, with the reason.  A closed set, so the wire
    and storage form is the member's text and costs nothing to produce."""

    GOOD = "good"
    UNCERTAIN_STALE = "uncertain/stale"
    UNCERTAIN_SUBSTITUTED = "uncertain/substituted"
    BAD_COMM_FAILURE = "bad/comm_failure"
    BAD_OUT_OF_RANGE = "bad/out_of_range"
    BAD_SENSOR_FAULT = "bad/sensor_fault"
    BAD_DEVICE_ERROR = "bad/device_error"

    @property
    def status(self) -> QualityStatus:
        return QualityStatus(self.value.partition("/")[0])

    @property
    def reason(self) -> str:
        return self.value.partition("/")[2]

    @property
    def is_good(self) -> bool:
        return self is Quality.GOOD


GOOD = Quality.GOOD
COMM_FAILURE = Quality.BAD_COMM_FAILURE
OUT_OF_RANGE = Quality.BAD_OUT_OF_RANGE
DEVICE_ERROR = Quality.BAD_DEVICE_ERROR
SENSOR_FAULT = Quality.BAD_SENSOR_FAULT


class Reading(NamedTuple):
    """One property value of one device at one time.

    A NamedTuple rather than a frozen dataclass: immutable and slotted all the same, but built
    about twice as fast, and the edge builds one per point per poll (see scripts/bench).
    """

    device: str
    point: str
    ts_ms: int
    value: Value
    quality: Quality = Quality.GOOD

    def to_wire(self) -> list[Any]:
        return [self.device, self.point, self.ts_ms, self.value, self.quality.value]

    @classmethod
    def from_wire(cls, row: list[Any]) -> Reading:
        device, point, ts_ms, value, quality = row
        if not isinstance(device, str) or not isinstance(point, str) or not device or not point:
            raise TypeError("device and point must be non-empty strings")
        if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
            raise TypeError(f"ts_ms must be an integer, not {ts_ms!r}")
        if value is not None and not isinstance(value, int | float | str):
            raise TypeError(f"value must be a number, bool, string or null, not {type(value).__name__}")
        if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
            raise TypeError(f"string value longer than {MAX_STRING_VALUE} characters")
        return cls(device, point, ts_ms, value, Quality(quality))


class EventLevel(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: device online/offline, alarm raised/cleared, data dropped, ...

    ``kind`` is a dotted identifier (``device.offline``, ``store.telemetry_dropped``) or a
    thing-model event id.
    """

    device: str
    kind: str
    ts_ms: int
    level: EventLevel = EventLevel.INFO
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        return [self.device, self.kind, self.ts_ms, self.level.value, self.data]

    @classmethod
    def from_wire(cls, row: list[Any]) -> Event:
        device, kind, ts_ms, level, data = row
        return cls(str(device), str(kind), int(ts_ms), EventLevel(level), dict(data))


Record = Reading | Event


def lane_of(record: Record) -> Lane:
    return Lane.EVENTS if isinstance(record, Event) else Lane.TELEMETRY
