"""Running a push driver (OPC-UA subscriptions, MQTT, line protocols): route what it delivers to
each device's processor and status, and turn link changes into online/offline events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drivers.base import PushDriver, Sample, Subscription
from edge.device_status import DeviceStatus
from edge.poller import Sink, now_ms
from edge.processing import DeviceProcessor
from gascore.records import Reading

log = logging.getLogger(__name__)


@dataclass
class PushedDevice:
    subscription: Subscription[Any]
    processor: DeviceProcessor
    status: DeviceStatus


class PushChannel:
    """Implements PushListener for one push driver and keeps it running."""

    def __init__(self, channel_id: str, driver: PushDriver[Any], devices: Sequence[PushedDevice], sink: Sink) -> None:
        self.channel_id = channel_id
        self.driver = driver
        self.devices = {d.subscription.device: d for d in devices}
        self.sink = sink

    async def run(self) -> None:
        subscriptions = [d.subscription for d in self.devices.values()]
        while True:
            try:
                await self.driver.run(subscriptions, self)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel %s: push driver failed; restarting it", self.channel_id)
                self.on_link(None, False, "driver failed")
                await asyncio.sleep(5.0)  # not synchronisation: a pause before restarting a failed driver
            else:
                return

    # ---- PushListener ----------------------------------------------------------------------

    def on_samples(self, device: str, samples: list[Sample]) -> None:
        pushed = self.devices.get(device)
        if pushed is None or not samples:
            return
        ts = now_ms()
        status = pushed.status
        status.polls += 1
        status.samples += len(samples)
        errors = sum(1 for s in samples if s.error is not None)
        status.device_errors += errors
        if errors < len(samples):
            status.last_good_ms = ts
        events = status.set_online(True, ts, "reporting") if status.online is not True else []
        observed: list[Reading] = []
        readings = pushed.processor.process(samples, ts, observed)
        self.sink(readings, events, observed)

    def on_link(self, device: str | None, up: bool, reason: str) -> None:
        ts = now_ms()
        targets = self.devices.values() if device is None else [self.devices[device]] if device in self.devices else []
        for pushed in targets:
            events = pushed.status.set_online(up, ts, reason)
            readings = [] if up else pushed.processor.comm_failure(ts)
            if not up:
                pushed.status.failures += 1
            if readings or events:
                self.sink(readings, events, readings)
