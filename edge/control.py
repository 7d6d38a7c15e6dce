"""Writes and service calls from people (SCADA over OPC-UA, the cloud), one path for all:
check against the thing model → audit event → write → read-back confirmation → outcome event.

A write is confirmed when the device's own value, read back by the normal polling, equals what
was written (within the property's tolerance) before the deadline: ``done``.  Otherwise the
outcome is ``unconfirmed`` (written, not seen) or ``failed`` (the write itself failed); every
step is an event on the events lane, naming who asked and through which channel.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from drivers.base import DriverError
from edge.config import Station
from edge.service_binding import DEFAULT_CONFIRM_S
from gascore.records import Event, EventLevel, Reading
from gascore.thingmodel import Property, ServiceInput

log = logging.getLogger(__name__)

Writer = Callable[[str, str, Any], Awaitable[None]]
Emit = Callable[[list[Event]], None]
Clock = Callable[[], int]
Status = Literal["done", "unconfirmed", "failed"]


class ControlRefused(Exception):
    """The request does not fit the model or the station (nothing was written)."""


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    status: Status
    detail: str

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"


@dataclass
class _Waiter:
    device: str
    point: str
    value: Any
    tolerance: float
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def check_value(prop: Property | ServiceInput, value: Any, what: str) -> Any:
    """``value`` converted to the property's type; ControlRefused if it does not fit."""
    kind = prop.type
    if kind == "bool":
        if not isinstance(value, bool):
            raise ControlRefused(f"{what} takes true/false, not {value!r}")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise ControlRefused(f"{what} takes text, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlRefused(f"{what} takes a number, not {value!r}")
    if not math.isfinite(value):
        raise ControlRefused(f"{what}: {value!r} is not a finite number")
    if kind in ("int", "enum"):
        if value != int(value):
            raise ControlRefused(f"{what} takes a whole number, not {value!r}")
        value = int(value)
        values = getattr(prop, "values", None)
        if kind == "enum" and values and value not in values:
            raise ControlRefused(f"{what}: {value} is not one of {sorted(values)}")
    else:
        value = float(value)
    if prop.range is not None and not prop.range[0] <= value <= prop.range[1]:
        unit = f" {prop.unit}" if prop.unit else ""
        raise ControlRefused(f"{what}: {value}{unit} is outside {prop.range[0]}–{prop.range[1]}{unit}")
    return value


def _matches(expected: Any, actual: Any, tolerance: float) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual or (isinstance(actual, int | float) and bool(actual) == expected)
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(float(expected) - float(actual)) <= tolerance
    return bool(expected == actual)


class Control:
    def __init__(self, station: Station, writer: Writer, emit: Emit, clock: Clock) -> None:
        self.station = station
        self._writer = writer
        self._emit = emit
        self._clock = clock
        self._waiters: list[_Waiter] = []
        self._devices = {d.id: d for d in station.config.devices}

    # ---- called by the gateway ---------------------------------------------------------------

    def observe(self, readings: Sequence[Reading]) -> None:
        """Every value read (not only the reported changes): completes matching read-backs."""
        if not self._waiters:
            return
        for r in readings:
            if not r.quality.is_good:
                continue
            for w in self._waiters:
                if (
                    w.device == r.device
                    and w.point == r.point
                    and not w.future.done()
                    and _matches(w.value, r.value, w.tolerance)
                ):
                    w.future.set_result(None)

    # ---- requests ----------------------------------------------------------------------------

    def _property(self, device_id: str, point: str) -> Property:
        device = self._devices.get(device_id)
        if device is None:
            raise ControlRefused(f"no device {device_id!r}")
        prop = self.station.model_of(device).properties.get(point)
        if prop is None:
            raise ControlRefused(f"{device_id} has no property {point!r}")
        if prop.access != "rw":
            raise ControlRefused(f"{device_id}.{point} is read-only in the thing model")
        if point not in device.points:
            raise ControlRefused(f"{device_id}.{point} is not bound to the device in this station")
        return prop

    async def write(self, device_id: str, point: str, value: Any, *, by: str, origin: str) -> ControlOutcome:
        prop = self._property(device_id, point)
        value = check_value(prop, value, f"{device_id}.{point}")
        self._audit("control.write", device_id, EventLevel.INFO, by, origin, point=point, value=value)
        outcome = await self._steps(device_id, [(point, value, True)], {}, self._tolerance(prop), DEFAULT_CONFIRM_S)
        self._audit(
            f"control.{outcome.status}",
            device_id,
            _LEVEL[outcome.status],
            by,
            origin,
            point=point,
            value=value,
            detail=outcome.detail,
        )
        return outcome

    async def call(
        self, device_id: str, service_id: str, args: dict[str, Any], *, by: str, origin: str
    ) -> ControlOutcome:
        device = self._devices.get(device_id)
        if device is None:
            raise ControlRefused(f"no device {device_id!r}")
        model = self.station.model_of(device)
        service = model.services.get(service_id)
        if service is None:
            raise ControlRefused(f"{device_id} ({model.id}) has no service {service_id!r}")
        binding = device.services.get(service_id)
        if binding is None:
            raise ControlRefused(f"service {service_id!r} of {device_id} is not bound in this station")
        inputs = {i.id: i for i in service.inputs}
        unknown = sorted(set(args) - set(inputs))
        if unknown:
            raise ControlRefused(f"{service_id} has no input(s) {', '.join(unknown)}")
        checked = {}
        for inp in service.inputs:
            if inp.id not in args:
                raise ControlRefused(f"{service_id} needs input {inp.id!r}")
            checked[inp.id] = check_value(inp, args[inp.id], f"{service_id}.{inp.id}")

        def resolve(v: Any) -> Any:
            return checked[v[1:]] if isinstance(v, str) and v.startswith("$") else v

        steps = []
        for step in binding.steps:
            prop = self._property(device_id, step.point)
            value = check_value(prop, resolve(step.value), f"{device_id}.{step.point}")
            steps.append((step.point, value, step.confirm))
        expect = {p: resolve(v) for p, v in binding.expect.items()}
        self._audit("control.call", device_id, EventLevel.INFO, by, origin, service=service_id, args=checked)
        outcome = await self._steps(device_id, steps, expect, 1e-6, binding.within_s)
        self._audit(
            f"control.{outcome.status}",
            device_id,
            _LEVEL[outcome.status],
            by,
            origin,
            service=service_id,
            args=checked,
            detail=outcome.detail,
        )
        return outcome

    # ---- internals ---------------------------------------------------------------------------

    def _tolerance(self, prop: Property) -> float:
        if prop.type != "float":
            return 0.0
        span = (prop.range[1] - prop.range[0]) if prop.range else 1.0
        return max(1e-9, abs(span) * 1e-3)  # a register's resolution: 0.1 % of the span

    async def _steps(
        self,
        device_id: str,
        steps: Sequence[tuple[str, Any, bool]],
        expect: dict[str, Any],
        tolerance: float,
        within_s: float,
    ) -> ControlOutcome:
        waiters = [_Waiter(device_id, p, v, tolerance) for p, v, confirm in steps if confirm]
        waiters += [_Waiter(device_id, p, v, tolerance) for p, v in expect.items()]
        self._waiters += waiters
        try:
            for point, value, _ in steps:
                try:
                    await self._writer(device_id, point, value)
                except (DriverError, ValueError, OSError) as err:
                    return ControlOutcome("failed", f"writing {point} failed: {err}")
            if not waiters:
                return ControlOutcome("done", "written (no read-back configured)")
            try:
                async with asyncio.timeout(within_s):
                    await asyncio.gather(*(w.future for w in waiters))
            except TimeoutError:
                missing = [f"{w.point}={w.value!r}" for w in waiters if not w.future.done()]
                detail = f"written; not read back within {within_s:g} s: {', '.join(missing)}"
                return ControlOutcome("unconfirmed", detail)
            return ControlOutcome("done", "written and confirmed by read-back")
        finally:
            for w in waiters:
                self._waiters.remove(w)
                if not w.future.done():
                    w.future.cancel()

    def _audit(self, kind: str, device: str, level: EventLevel, by: str, origin: str, **data: Any) -> None:
        self._emit([Event(device, kind, self._clock(), level, {"by": by, "origin": origin, **data})])


_LEVEL: dict[str, EventLevel] = {"done": EventLevel.INFO, "unconfirmed": EventLevel.WARNING, "failed": EventLevel.MAJOR}
