"""Record types that flow from the drivers through the edge store to the cloud.

Times are UTC epoch milliseconds.  Every record names a device and a thing-model property (or
event) identifier, never a raw register.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Value = float | int | bool | str | None


class Lane(enum.StrEnum):
    """Sync lanes, each with its own gap-free sequence.  Events are sent first and never dropped."""

    EVENTS = "events"
    TELEMETRY = "telemetry"


class QualityStatus(enum.StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class QualityReason(enum.StrEnum):
    NONE = ""
    COMM_FAILURE = "comm_failure"
    OUT_OF_RANGE = "out_of_range"
    STALE = "stale"
    SENSOR_FAULT = "sensor_fault"
    SUBSTITUTED = "substituted"
    DEVICE_ERROR = "device_error"


@dataclass(frozen=True, slots=True)
class Quality:
    status: QualityStatus = QualityStatus.GOOD
    reason: QualityReason = QualityReason.NONE

    def __str__(self) -> str:
        return self.status.value if not self.reason else f"{self.status.value}/{self.reason.value}"

    @classmethod
    def parse(cls, text: str) -> Quality:
        status, _, reason = text.partition("/")
        return cls(QualityStatus(status), QualityReason(reason))

    @property
    def is_good(self) -> bool:
        return self.status is QualityStatus.GOOD


GOOD = Quality()
COMM_FAILURE = Quality(QualityStatus.BAD, QualityReason.COMM_FAILURE)
OUT_OF_RANGE = Quality(QualityStatus.BAD, QualityReason.OUT_OF_RANGE)


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    point: str
    ts_ms: int
    value: Value
    quality: Quality = GOOD

    def to_wire(self) -> list[Any]:
        return [self.device, self.point, self.ts_ms, self.value, str(self.quality)]

    @classmethod
    def from_wire(cls, row: list[Any]) -> Reading:
        device, point, ts_ms, value, quality = row
        return cls(str(device), str(point), int(ts_ms), value, Quality.parse(str(quality)))


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
