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
from typing import Any, Protocol

from typing_extensions import TypeVar

ScalarValue = float | int | bool

# A driver's own point description (e.g. ModbusPoint).  Contravariant: it only flows into a driver.
# Defaults to Any so code that holds "some driver" can keep writing plain ``Driver``.
PointT_contra = TypeVar("PointT_contra", contravariant=True, default=Any)


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


class Driver(Protocol[PointT_contra]):
    """A connection to one device endpoint (one TCP socket or one serial line).

    ``PointT_contra`` is the driver's point type; ``Driver[ModbusPoint]`` is a Modbus driver.
    ``read`` returns exactly one Sample per ``(key, point)``, in the order given; it raises
    CommError when the endpoint is unreachable and reports device-side errors per Sample.
    ``write`` raises CommError or DeviceError.  The caller owns retry and backoff.
    """

    async def connect(self) -> None: ...

    async def read(self, unit: int, points: Sequence[tuple[str, PointT_contra]]) -> list[Sample]: ...

    async def write(self, unit: int, point: PointT_contra, value: ScalarValue) -> None: ...

    async def close(self) -> None: ...
