"""Record types that flow from the drivers through the edge store to the cloud.

Times are UTC epoch milliseconds.  Every record names a device and a thing-model property (or
event) identifier, never a raw register.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Value = float | int | bool | str | None
MAX_STRING_VALUE = 1024
# Wire limits.  Rows arrive from the network, so ``from_wire`` refuses anything storage cannot hold
# faithfully (SQLite integers are 64-bit; JSON has no NaN) instead of failing later in the database.
MAX_NAME_CHARS = 128  # device, point and event kind; configs allow 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_EVENT_DATA_BYTES = 16 * 1024  # compact JSON, UTF-8
MAX_EVENT_DATA_DEPTH = 8  # the data object itself is depth 1


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
        """Validate one untrusted wire row.  Raises ValueError or TypeError naming the field."""
        device, point, ts_ms, value, quality = row
        return cls(
            _name(device, "device"), _name(point, "point"), _int64(ts_ms, "ts_ms"), _value(value), Quality(quality)
        )


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
        """Validate one untrusted wire row, as strictly as ``Reading.from_wire``."""
        device, kind, ts_ms, level, data = row
        if not isinstance(level, str):
            raise TypeError("level must be a string")
        return cls(_name(device, "device"), _name(kind, "kind"), _int64(ts_ms, "ts_ms"), EventLevel(level), _data(data))


Record = Reading | Event


# ---- wire validation ---------------------------------------------------------------------


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise TypeError(f"{what} must be a string of 1..{MAX_NAME_CHARS} characters")
    return _utf8(value)


def _utf8(text: str) -> str:
    # JSON can carry a lone surrogate ("\ud800"), which no UTF-8 database column can store, and
    # NUL, which PostgreSQL text cannot: both are refused here, with a 400, not a 500 later.
    if not text.isascii():
        text.encode()  # UnicodeEncodeError is a ValueError
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _int64(value: Any, what: str) -> int:
    # bool is an int subclass; a timestamp of True is a sender bug, not epoch + 1 ms.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what} is outside the 64-bit integer range")
    return value


def _value(value: Any) -> Value:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _int64(value, "value")
    if isinstance(value, float):
        # A field device's NaN/inf must arrive as a bad-quality reading with value null.
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise ValueError(f"string value longer than {MAX_STRING_VALUE} characters")
        return _utf8(value)
    raise TypeError(f"value must be a number, bool, string or null, not {type(value).__name__}")


def _data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("data must be an object")
    _check_json(data, 1)
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
    if size > MAX_EVENT_DATA_BYTES:
        raise ValueError(f"data is {size} bytes as JSON, more than {MAX_EVENT_DATA_BYTES}")
    return data


def _check_json(value: Any, depth: int) -> None:
    """Only what JSON (and so the database column) holds exactly; the depth bound keeps this
    recursion, and everyone who reads the data later, far from the interpreter's limit."""
    if isinstance(value, str):
        _utf8(value)
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        _int64(value, "data value")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("data values must be finite numbers")
    elif isinstance(value, list | dict):
        if depth > MAX_EVENT_DATA_DEPTH:
            raise ValueError(f"data nested deeper than {MAX_EVENT_DATA_DEPTH} levels")
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError("data keys must be strings")
            value = value.values()
        for item in value:
            _check_json(item, depth + 1)
    else:
        raise TypeError(f"data values must be JSON values, not {type(value).__name__}")
