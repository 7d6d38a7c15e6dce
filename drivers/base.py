"""The driver interface and the errors every driver raises.

Exception tree (decides what the caller does next)::

    DriverError
    ├── CommError        transport failed or timed out: the device is unreachable; retry later
    └── DeviceError      the device answered with an error (e.g. Modbus exception): not a
                         connectivity problem; the affected points are bad, the device stays online
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

ScalarValue = float | int | bool


class DriverError(Exception):
    """Base of all driver errors."""


class CommError(DriverError):
    """The transport failed (refused, reset, timed out).  Retry after backoff."""


class DeviceError(DriverError):
    """The device answered, but with an error for this request."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One raw value read from the wire, keyed by the caller's point key.

    ``value`` is None exactly when ``error`` is set.
    """

    key: str
    value: ScalarValue | None
    error: str | None = None


class Driver(Protocol):
    """A connection to one device endpoint (one TCP socket or one serial line)."""

    async def connect(self) -> None: ...

    async def read(self, unit: int, points: Sequence[object]) -> list[Sample]: ...

    async def write(self, unit: int, point: object, value: ScalarValue) -> None: ...

    async def close(self) -> None: ...
