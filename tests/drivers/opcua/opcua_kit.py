"""Fixtures for the OPC-UA driver tests: the simulated SCADA, a recording listener, certificates."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Sample, Subscription
from drivers.opcua import OpcUaDriver, create_self_signed
from gasiot_sim.scada_opcua import ScadaSimServer

EDGE_URI = "urn:gasiot:edge"


class Recorder:
    """A PushListener that keeps everything it is told."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = defaultdict(list)  # key → samples, in order
        self.devices: dict[str, str] = {}  # key → device
        self.links: list[tuple[str | None, bool, str]] = []
        self.calls = 0

    def on_samples(self, device: str, samples: list[Sample]) -> None:
        self.calls += 1
        for sample in samples:
            self.samples[sample.key].append(sample)
            self.devices[sample.key] = device

    def on_link(self, device: str | None, up: bool, reason: str) -> None:
        self.links.append((device, up, reason))

    def values(self, key: str) -> list[Any]:
        return [s.value for s in self.samples[key]]

    def last(self, key: str) -> Sample | None:
        return self.samples[key][-1] if self.samples[key] else None

    def has(self, key: str, predicate: Callable[[Sample], bool]) -> bool:
        return any(predicate(s) for s in self.samples[key])

    @property
    def ups(self) -> int:
        return sum(1 for _, up, _ in self.links if up)

    @property
    def downs(self) -> int:
        return sum(1 for _, up, _ in self.links if not up)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def sim() -> AsyncIterator[ScadaSimServer]:
    """A station without a ticker: values change only when a test ticks it."""
    server = ScadaSimServer(seed=7, tick_s=None)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def gateway_cert(tmp_path: Path) -> tuple[Path, Path]:
    """The gateway's own certificate (DER) and key (PEM), for ``urn:gasiot:edge``."""
    pair = create_self_signed(tmp_path / "edge-cert.der", tmp_path / "edge-key.pem", EDGE_URI, hostnames=["127.0.0.1"])
    return pair.certificate, pair.private_key


@contextlib.asynccontextmanager
async def running(
    driver: OpcUaDriver, subscriptions: Sequence[Subscription[Any]], listener: Recorder
) -> AsyncIterator[asyncio.Task[None]]:
    """``driver.run`` as a background task for the duration of the block, then the driver closed."""
    task = asyncio.create_task(driver.run(subscriptions, listener))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.close()


@pytest.fixture
def run_driver() -> Callable[..., contextlib.AbstractAsyncContextManager[asyncio.Task[None]]]:
    return running
