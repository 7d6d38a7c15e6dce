"""Turn-taking on a half-duplex line (RS-485): one transaction at a time, writes before polls.

A transaction is one request and its answer (or its timeout).  Waiting transactions are served by
priority, then in arrival order: a write submitted while polls are queued is the next one sent.
Between two transactions the line is kept idle for ``gap_s`` (the RTU inter-frame silence).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower is served first."""

    WRITE = 0
    POLL = 1


class BusQueue:
    """Grants the line to one transaction at a time.  Use ``async with bus.turn(priority):``."""

    def __init__(self, *, gap_s: float = 0.0) -> None:
        if gap_s < 0:
            raise ValueError("gap_s must be >= 0")
        self.gap_s = gap_s
        self._busy = False
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()
        self._idle_since = float("-inf")  # loop time at which the line went quiet

    @property
    def busy(self) -> bool:
        """A transaction holds the line."""
        return self._busy

    @property
    def queued(self) -> int:
        """Transactions waiting for the line."""
        return sum(1 for _, _, granted in self._waiting if not granted.done())

    @asynccontextmanager
    async def turn(self, priority: Priority) -> AsyncIterator[None]:
        """Hold the line for one transaction."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority) -> None:
        loop = asyncio.get_running_loop()
        if self._busy:
            granted: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (priority, next(self._arrival), granted))
            try:
                await granted
            except asyncio.CancelledError:
                # Granted in the same loop turn as the cancellation: pass the line on.
                if granted.done() and not granted.cancelled():
                    self._release()
                raise  # a waiter cancelled before its grant is skipped by _release
        else:
            self._busy = True
        idle = self._idle_since + self.gap_s - loop.time()
        if idle > 0:
            try:
                await asyncio.sleep(idle)  # protocol timing (inter-frame silence), not synchronisation
            except asyncio.CancelledError:
                self._release()
                raise

    def _release(self) -> None:
        self._idle_since = asyncio.get_running_loop().time()
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)  # the line passes straight to the next holder
                return
        self._busy = False
