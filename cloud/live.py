"""Live values for the web console: one watcher per watched gateway reads the gateway's latest
values and hands what changed to every subscriber (sent on as server-sent events by
cloud.routes_live).

Why read the database rather than hook the ingest: several cloud processes may share one
PostgreSQL database and a gateway's batch lands in whichever one it reached; imported series
(``ext-*`` sources) are stored without any batch.  The database sees them all.  The cost is one
indexed query per *watched gateway* per interval, however many people watch it (one poll feeds
many consumers); a gateway nobody watches costs nothing, its watcher stops with its last
subscriber.

Overflow policy: a subscriber that does not keep up never blocks the watcher nor grows without
bound: its pending changes are merged by (device, point), the newest value wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

Row = dict[str, Any]  # {"device", "point", "ts_ms", "value", "quality"} as Repository.latest gives it
Key = tuple[str, str]


class Subscription:
    """What one stream receives: the snapshot at subscription, then changes."""

    def __init__(self, snapshot: list[Row]) -> None:
        self.snapshot = snapshot
        self.closed = False
        self._pending: dict[Key, Row] = {}
        self._ready = asyncio.Event()

    def offer(self, rows: list[Row]) -> None:
        for row in rows:
            self._pending[(row["device"], row["point"])] = row
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def changes(self, timeout_s: float) -> list[Row] | None:
        """The changes since the last call; None when nothing changed within ``timeout_s`` or the
        subscription was closed (``closed`` tells which)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        self._ready.clear()
        if self.closed or not self._pending:
            return None
        rows, self._pending = list(self._pending.values()), {}
        return rows


class _Watcher:
    def __init__(self, gateway_id: str, snapshot: list[Row]) -> None:
        self.gateway_id = gateway_id
        self.last: dict[Key, Row] = {(r["device"], r["point"]): r for r in snapshot}
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None


class LiveHub:
    """``latest(gateway_id)`` reads a gateway's latest values (``Repository.latest`` with no
    device); ``interval_s`` is how often a watched gateway is read."""

    def __init__(self, latest: Callable[[str], list[Row]], interval_s: float = 1.0) -> None:
        self._latest = latest
        self.interval_s = interval_s
        self._watchers: dict[str, _Watcher] = {}
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(self, gateway_id: str) -> AsyncIterator[Subscription]:
        watcher = self._watchers.get(gateway_id)
        if watcher is None:
            watcher = _Watcher(gateway_id, self._latest(gateway_id))
            watcher.task = asyncio.create_task(self._watch(watcher), name=f"live:{gateway_id}")
            self._watchers[gateway_id] = watcher
        sub = Subscription(sorted(watcher.last.values(), key=lambda r: (r["device"], r["point"])))
        if self._closed:
            sub.close()
        watcher.subscribers.add(sub)
        try:
            yield sub
        finally:
            watcher.subscribers.discard(sub)
            if not watcher.subscribers and self._watchers.get(gateway_id) is watcher:
                del self._watchers[gateway_id]
                if watcher.task is not None:
                    watcher.task.cancel()

    def close(self) -> None:
        """End every subscription (the server is shutting down: streams must not hold it up)."""
        self._closed = True
        for watcher in self._watchers.values():
            for sub in watcher.subscribers:
                sub.close()

    @property
    def watched(self) -> list[str]:
        return sorted(self._watchers)

    async def _watch(self, watcher: _Watcher) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                rows = self._latest(watcher.gateway_id)  # like every handler: on the loop, indexed
            except Exception:  # a database hiccup: keep the streams, say so once
                if not failing:
                    log.exception("live values of gateway %s: reading latest failed", watcher.gateway_id)
                failing = True
                continue
            if failing:
                log.info("live values of gateway %s: reading latest works again", watcher.gateway_id)
                failing = False
            changed = [r for r in rows if watcher.last.get((r["device"], r["point"])) != r]
            if not changed:
                continue
            for r in changed:
                watcher.last[(r["device"], r["point"])] = r
            for sub in watcher.subscribers:
                sub.offer(changed)
