"""Intermediate-database driver: polls new rows of a table or view and delivers them as samples.

Read-only by construction (SQLite opened ``mode=ro`` with ``query_only``; PostgreSQL in a
read-only session); identifiers are validated and quoted, values are always bound parameters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from drivers.backoff import Backoff
from drivers.base import DeviceError, PushListener, Sample, ScalarValue, Subscription
from drivers.sqlpoll.config import SqlPollChannel, SqlPollPoint
from drivers.sqlpoll.source import RowSource, SourceError, source_for

log = logging.getLogger(__name__)


class SqlPollDriver:
    """Implements PushDriver[SqlPollPoint]."""

    def __init__(self, channel: SqlPollChannel) -> None:
        self.channel = channel
        self.rows_read = 0
        self.unrouted = 0
        self.last_key: Any = None

    async def run(self, subscriptions: Sequence[Subscription[Any]], listener: PushListener) -> None:
        ch = self.channel
        columns = sorted({p.column for s in subscriptions for _, p in s.points})
        by_device = {s.device: s for s in subscriptions}
        backoff = Backoff(ch.reconnect_initial_s, ch.reconnect_max_s)
        started = False
        while True:
            source = source_for(ch, columns)
            try:
                async with asyncio.timeout(ch.timeout_s):
                    await source.open()
                    if not started:
                        self.last_key = await source.max_key() if ch.start == "latest" else None
                        started = True
                if backoff.failures or not started:
                    log.info("sql_poll %s connected", ch.table)
                backoff.reset()
                listener.on_link(None, True, "connected")
                await self._poll_forever(source, columns, by_device, listener)
            except (SourceError, TimeoutError) as err:
                if backoff.failures == 0:
                    log.warning("sql_poll %s: %s", ch.table, err)
                    listener.on_link(None, False, str(err) or "timeout")
                await asyncio.sleep(backoff.next_delay())
            finally:
                await source.close()

    async def _poll_forever(
        self, source: RowSource, columns: list[str], by_device: dict[str, Subscription[Any]], listener: PushListener
    ) -> None:
        ch = self.channel
        names = [ch.key_column, *(c for c in (ch.device_column, ch.timestamp_column) if c)]
        names += [c for c in columns if c not in names]
        index = {name: i for i, name in enumerate(names)}
        while True:
            async with asyncio.timeout(ch.timeout_s):
                rows = await source.rows_after(self.last_key, ch.batch_limit)
            for row in rows:
                self._deliver(row, index, by_device, listener)
                self.last_key = row[0]
            self.rows_read += len(rows)
            if len(rows) < ch.batch_limit:
                await asyncio.sleep(ch.poll_interval_s)  # the polling period

    def _deliver(
        self,
        row: tuple[Any, ...],
        index: dict[str, int],
        by_device: dict[str, Subscription[Any]],
        listener: PushListener,
    ) -> None:
        ch = self.channel
        if ch.device_column is not None:
            sub = by_device.get(str(row[index[ch.device_column]]))
        else:
            sub = next(iter(by_device.values()), None)
        if sub is None:
            self.unrouted += 1
            return
        ts_ms = _to_ms(row[index[ch.timestamp_column]], ch.timestamp_unit) if ch.timestamp_column else None
        listener.on_samples(sub.device, [_sample(key, row[index[p.column]], ts_ms) for key, p in sub.points])

    async def write(self, unit: int, point: SqlPollPoint, value: ScalarValue) -> None:
        raise DeviceError("the intermediate database is read-only")


def _to_ms(value: Any, unit: str) -> int | None:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value * 1000) if unit == "s" else int(value)
    return None


def _sample(key: str, value: Any, ts_ms: int | None) -> Sample:
    if value is None:
        return Sample(key, None, "null_in_row", ts_ms)
    if isinstance(value, bool | int | float | str):
        return Sample(key, value, None, ts_ms)
    try:
        return Sample(key, float(value), None, ts_ms)  # Decimal and friends
    except (TypeError, ValueError):
        return Sample(key, None, f"unsupported_type:{type(value).__name__}", ts_ms)
