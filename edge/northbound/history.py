"""Local history for OPC-UA HistoryRead: every reading the gateway commits is also kept in a
``history`` table of the store file, written in the same transaction (so history and outbox
never disagree), for ``retention_days``.  Unlike the outbox it is not emptied by cloud acks: an
integrator backfills after their own outage from here.

Reads run in a worker thread on their own read-only connection (WAL lets them run beside the
poll cycles' writes).  Continuation points are timestamps, as asyncua defines them: the next
request starts at the first value not returned.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.server.history import HistoryStorageInterface
from asyncua.ua.status_codes import StatusCodes

from gascore.records import Event, Reading

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS history(
    device TEXT NOT NULL, point TEXT NOT NULL, ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS history_by_point ON history(device, point, ts_ms)",
)
SCHEMA = "".join(f"{s};\n" for s in _STATEMENTS)

_PRUNE_BATCH = 10_000


def quality_status(quality: str) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(QUALITY_STATUS.get(quality, StatusCodes.Bad)))


QUALITY_STATUS: dict[str, int] = {
    "good": StatusCodes.Good,
    "uncertain/stale": StatusCodes.UncertainLastUsableValue,
    "uncertain/substituted": StatusCodes.UncertainSubstituteValue,
    "bad/comm_failure": StatusCodes.BadCommunicationError,
    "bad/out_of_range": StatusCodes.BadOutOfRange,
    "bad/sensor_fault": StatusCodes.BadSensorFailure,
    "bad/device_error": StatusCodes.BadDeviceFailure,
}


class HistoryTable:
    """Writes (inside the store's transactions) and retention."""

    def __init__(self, db: sqlite3.Connection, retention_days: float) -> None:
        db.executescript(SCHEMA)
        self.retention_ms = int(retention_days * 86_400_000)

    @staticmethod
    def create(db: sqlite3.Connection) -> None:
        """The table in a fresh store file, statement by statement (safe inside a transaction)."""
        for statement in _STATEMENTS:
            db.execute(statement)

    def write(self, db: sqlite3.Connection, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        if readings:
            db.executemany(
                "INSERT INTO history(device, point, ts_ms, value, vt, quality) VALUES (?,?,?,?,?,?)",
                [
                    (r.device, r.point, r.ts_ms, r.value, "b" if r.value.__class__ is bool else None, r.quality)
                    for r in readings
                ],
            )

    def prune(self, db: sqlite3.Connection, now_ms: int) -> int:
        """Delete up to one batch of values older than the retention; returns how many."""
        cur = db.execute(
            "DELETE FROM history WHERE rowid IN (SELECT rowid FROM history WHERE ts_ms < ? LIMIT ?)",
            (now_ms - self.retention_ms, _PRUNE_BATCH),
        )
        return cur.rowcount


def _ms(dt: datetime | None) -> int | None:
    if dt is None or dt.year <= 1601:  # OPC-UA's "no time given"
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class StoreHistory(HistoryStorageInterface):
    """asyncua's history backend over the history table (values only; node → (device, point))."""

    def __init__(self, path: Path, points: dict[ua.NodeId, tuple[str, str, ua.VariantType]], max_values: int) -> None:
        self._path = path
        self.points = points  # replaced on reload
        self._max = max_values

    async def init(self) -> None:
        return None

    async def new_historized_node(self, node_id: ua.NodeId, period: Any, count: int = 0) -> None:
        return None

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        return None  # values come from the gateway's own commits

    async def read_node_history(
        self, node_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], datetime | None]:
        target = self.points.get(node_id)
        if target is None:
            return [], None
        device, point, vtype = target
        limit = min(nb_values, self._max) if nb_values else self._max
        start_ms, end_ms = _ms(start), _ms(end)
        rows = await asyncio.to_thread(self._query, device, point, start_ms, end_ms, limit + 1)
        if len(rows) <= limit:
            return [_data_value(vtype, *row) for row in rows], None
        # The next request starts at the first value not returned (asyncua's continuation point
        # is a timestamp): values sharing that timestamp are left for it, so none is lost or repeated.
        resume_ms = rows[limit][0]
        kept = [row for row in rows[:limit] if row[0] != resume_ms]
        if not kept:  # more values at one instant than one read may return: step past the instant
            kept = rows[:limit]
            resume_ms += -1 if rows[0][0] > resume_ms else 1
        return [_data_value(vtype, *row) for row in kept], _datetime(resume_ms)

    def _query(
        self, device: str, point: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[tuple[int, Any, str | None, str]]:
        backwards = (start_ms is not None and end_ms is not None and end_ms < start_ms) or (
            start_ms is None and end_ms is not None
        )
        low, high = (end_ms, start_ms) if backwards else (start_ms, end_ms)
        sql = "SELECT ts_ms, value, vt, quality FROM history WHERE device=? AND point=?"
        args: list[Any] = [device, point]
        if low is not None:
            sql += " AND ts_ms >= ?"
            args.append(low)
        if high is not None:
            sql += " AND ts_ms <= ?"
            args.append(high)
        sql += f" ORDER BY ts_ms {'DESC' if backwards else 'ASC'}, rowid LIMIT ?"
        args.append(limit)
        db = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    async def new_historized_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def save_event(self, event: Any) -> None:
        return None

    async def read_event_history(self, *args: Any, **kwargs: Any) -> tuple[list[Any], None]:
        return [], None

    async def stop(self) -> None:
        return None


def _data_value(vtype: ua.VariantType, ts_ms: int, value: Any, vt: str | None, quality: str) -> ua.DataValue:
    from edge.northbound.address_space import placeholder, to_variant_value

    if vt == "b":
        value = bool(value)
    variant = placeholder(vtype) if value is None else ua.Variant(to_variant_value(vtype, value), vtype)
    when = cast("ua.DateTime", _datetime(ts_ms))  # asyncua types its timestamps as its own subclass
    return ua.DataValue(variant, StatusCode=quality_status(quality), SourceTimestamp=when, ServerTimestamp=when)
