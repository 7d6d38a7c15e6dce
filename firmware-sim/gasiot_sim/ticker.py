"""Advance simulated physics in real time: ``step(dt_s)`` every ``tick_s`` from one task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

_MAX_TICK_GAP_S = 1.0  # after a stall (debugger, suspended laptop) do not jump the physics far ahead


class Ticker:
    """Calls ``step`` with the elapsed time every ``tick_s``; ``wait_ticks`` lets tests follow it."""

    def __init__(self, step: Callable[[float], None], tick_s: float, *, name: str = "ticker") -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self._step = step
        self.tick_s = tick_s
        self.name = name
        self.ticks = 0  # steps done by the task
        self._task: asyncio.Task[None] | None = None
        self._ticked = asyncio.Condition()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_ticks(self, count: int = 1) -> None:
        """Return after ``count`` more steps."""
        target = self.ticks + count
        async with self._ticked:
            await self._ticked.wait_for(lambda: self.ticks >= target)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            self._step(min(now - last, _MAX_TICK_GAP_S))
            last = now
            self.ticks += 1
            async with self._ticked:
                self._ticked.notify_all()
