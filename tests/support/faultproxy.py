"""A TCP fault proxy of our own (loopback only): forwards bytes between a client and an upstream
and injects what networks do to field links — latency, a bandwidth cap, connections cut in the
middle of a request, half-open connections that never answer.  Faults are chosen per connection
by ``mode`` and can be changed while connections come and go."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    latency_s: float = 0.0
    bytes_per_s: float | None = None
    cut_after_bytes: int | None = None  # close both sides after this many client→upstream bytes
    half_open_share: float = 0.0  # share of connections accepted and then never answered
    cut_share: float = 1.0  # share of connections the cut applies to
    seed: int = 1
    connections: int = 0
    cuts: int = 0
    half_open: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._rng = random.Random(self.seed)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def reset(self) -> None:
        """Cut every open connection now (new faults then apply to the client's reconnections)."""
        for task in list(self._tasks):
            task.cancel()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._rng.random() < self.half_open_share:
            self.half_open += 1
            swallow = asyncio.create_task(reader.read())  # answer nothing, until the client gives up
            self._tasks.add(swallow)
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await swallow
            self._tasks.discard(swallow)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.close()
            return
        cut = self.cut_after_bytes if self._rng.random() < self.cut_share else None
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, cut)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                with contextlib.suppress(OSError):
                    w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut_after: int | None) -> None:
        sent = 0
        while True:
            chunk = await src.read(4096)
            if not chunk:
                return
            if cut_after is not None and sent + len(chunk) > cut_after:
                dst.write(chunk[: max(0, cut_after - sent)])
                self.cuts += 1
                return  # mid-body: both sides are closed by the caller
            if self.latency_s:
                await asyncio.sleep(self.latency_s)  # the injected latency itself
            if self.bytes_per_s:
                await asyncio.sleep(len(chunk) / self.bytes_per_s)  # the bandwidth cap itself
            dst.write(chunk)
            await dst.drain()
            sent += len(chunk)
