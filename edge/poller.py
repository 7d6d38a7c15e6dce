"""Polling: one RunningChannel per endpoint (connection, backoff, request lock) and one
DevicePoller per device (drift-free schedule, online/offline state, processing, store append)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.backoff import Backoff
from drivers.base import CommError, Driver, NoAnswer, Sample
from edge.clock import CLOCK
from edge.device_status import DeviceStatus
from edge.processing import DeviceProcessor
from gascore.records import Event, Reading

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Reading and event time: the system clock, never running backwards (edge/clock.py)."""
    return CLOCK.now_ms()


class RunningChannel:
    """Owns one driver connection: connects lazily, backs off after failures without blocking
    callers (a device polled during backoff fails fast), and serialises requests.

    Two kinds of backoff: a failed *connect* means the endpoint is down and backs off the whole
    channel; a failed *request* backs off only that unit id, so one silent unit behind a Modbus
    TCP gateway does not take its healthy neighbours offline.
    """

    def __init__(self, channel_id: str, driver: Driver, backoff: Backoff) -> None:
        self.channel_id = channel_id
        self.driver = driver
        self.backoff = backoff
        self.connected = False
        self._retry_at = 0.0
        self._unit_backoff: dict[int, tuple[Backoff, float]] = {}
        self._lock = asyncio.Lock()

    async def read(self, unit: int, points: Sequence[tuple[str, Any]]) -> list[Sample]:
        async with self._lock:
            loop = asyncio.get_running_loop()
            unit_state = self._unit_backoff.get(unit)
            if unit_state is not None and loop.time() < unit_state[1]:
                raise CommError(f"channel {self.channel_id} unit {unit}: waiting to retry")
            if not self.connected:
                if loop.time() < self._retry_at:
                    raise CommError(f"channel {self.channel_id}: waiting to reconnect")
                try:
                    await self.driver.connect()
                except CommError:
                    self._retry_at = loop.time() + self.backoff.next_delay()
                    raise
                self.connected = True
                self.backoff.reset()
            try:
                samples = await self.driver.read(unit, points)
            except CommError as err:
                if not isinstance(err, NoAnswer):
                    # The transport failed: reconnect on next use (a late answer on the old
                    # connection must not be taken for the next request).
                    self.connected = False
                    await self.driver.close()
                # Either way only this unit backs off; its neighbours keep their rate.
                unit_backoff = unit_state[0] if unit_state else Backoff(self.backoff.initial_s, self.backoff.maximum_s)
                self._unit_backoff[unit] = (unit_backoff, loop.time() + unit_backoff.next_delay())
                raise
            if unit_state is not None:
                del self._unit_backoff[unit]
            return samples

    async def write(self, unit: int, point: Any, value: Any) -> None:
        """A command (interlock, operator): not queued behind this channel's polls — drivers with a
        shared bus order it first themselves — but connects first if needed.  Raises DriverError."""
        if not self.connected:
            await self.driver.connect()
            self.connected = True
        await self.driver.write(unit, point, value)

    async def close(self) -> None:
        await self.driver.close()
        self.connected = False


Sink = Callable[[list[Reading], list[Event], list[Reading]], None]
"""(readings to store, events, every reading observed this cycle — for the rules)"""


@dataclass
class DevicePoller:
    device_id: str
    unit: int
    interval_s: float
    channel: RunningChannel
    points: Sequence[tuple[str, Any]]
    processor: DeviceProcessor
    sink: Sink
    stats: DeviceStatus
    _faulted: bool = False

    async def run(self) -> None:
        """Poll on a fixed grid (start + k·interval): lateness never accumulates; a poll that
        overruns its slot skips the missed slots and counts an overrun."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        while True:
            await self._guarded_poll()
            k += 1
            now = loop.time()
            due = start + k * self.interval_s
            if now > due:
                missed = int((now - due) // self.interval_s) + 1
                self.stats.overruns += missed
                k += missed
                due = start + k * self.interval_s
            await asyncio.sleep(due - now)

    async def _guarded_poll(self) -> None:
        try:
            await self.poll_once()
        except Exception:
            self.stats.errors += 1
            if not self._faulted:
                log.exception("device %s: poll cycle failed; will keep polling", self.device_id)
                self._faulted = True
        else:
            if self._faulted:
                log.info("device %s: poll cycles succeed again", self.device_id)
                self._faulted = False

    async def poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ts = now_ms()
        status = self.stats
        status.polls += 1
        try:
            samples = await self.channel.read(self.unit, self.points)
        except CommError as err:
            status.failures += 1
            readings = self.processor.comm_failure(ts)
            observed = readings
            events = status.set_online(False, ts, str(err))
        else:
            status.record_latency(loop.time() - t0)
            status.responses += 1
            status.samples += len(samples)
            errors = sum(1 for s in samples if s.error is not None)
            status.device_errors += errors
            if errors < len(samples):
                status.last_good_ms = ts
            observed = []
            readings = self.processor.process(samples, ts, observed)
            events = status.set_online(True, ts, "answering")
        self.sink(readings, events, observed)
