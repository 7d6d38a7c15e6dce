"""The poll schedule is a fixed grid: work inside a poll never accumulates as lateness, and a poll
that overruns its slot skips the missed slots and counts them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from drivers.backoff import Backoff
from drivers.base import Sample
from edge.device_status import DeviceStatus
from edge.poller import DevicePoller, RunningChannel
from edge.processing import DeviceProcessor, PointSpec
from gascore.thingmodel import Name, Property


class SlowDevice:
    """A device that takes ``latency_s`` to answer and records when each read started."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.starts: list[float] = []

    async def connect(self) -> None:
        return None

    async def read(self, unit: int, points: Sequence[tuple[str, object]]) -> list[Sample]:
        self.starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.latency_s)  # the device's response time (simulated), not synchronisation
        return [Sample(key, 1.0) for key, _ in points]

    async def write(self, unit: int, point: object, value: object) -> None:
        return None

    async def close(self) -> None:
        return None


def poller(device: SlowDevice, interval_s: float) -> DevicePoller:
    prop = Property(id="p", name=Name(zh="p", en="p"), type="float")
    return DevicePoller(
        device_id="d",
        unit=1,
        interval_s=interval_s,
        channel=RunningChannel("c", device, Backoff(0.1, 1.0)),  # type: ignore[arg-type]
        points=(("p", object()),),  # type: ignore[arg-type]
        processor=DeviceProcessor("d", [PointSpec("p", prop)], 60_000),
        sink=lambda readings, events, observed: None,
        stats=DeviceStatus("d"),
    )


async def run_until(p: DevicePoller, device: SlowDevice, reads: int) -> None:
    task = asyncio.create_task(p.run())
    while len(device.starts) < reads:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_work_inside_a_poll_does_not_accumulate_as_drift() -> None:
    device = SlowDevice(latency_s=0.02)
    p = poller(device, interval_s=0.05)
    await run_until(p, device, 21)
    elapsed = device.starts[20] - device.starts[0]
    # A naive "sleep(interval) after each poll" would take 20 × 0.07 = 1.4 s; the grid takes 1.0 s
    # (never less; a loaded machine may add one late wake-up, not twenty).
    assert 0.99 <= elapsed < 1.25, elapsed
    assert p.stats.overruns == 0


async def test_overruns_are_counted_and_polls_stay_on_the_grid() -> None:
    device = SlowDevice(latency_s=0.12)
    p = poller(device, interval_s=0.05)
    await run_until(p, device, 5)
    assert p.stats.overruns >= 8  # each 0.12 s poll misses two 0.05 s slots
    t0 = device.starts[0]
    for t in device.starts[1:]:
        slots = (t - t0) / 0.05
        assert abs(slots - round(slots)) < 0.3, slots
        assert round(slots) % 3 == 0  # 0.12 s of work → the next free slot is every third one
