"""The newest committed telemetry rows, kept in memory by id, so that the sync client can form a
batch from the rows it is about to send without reading them back from SQLite.

Reading a 1,000-row batch back cost about 1.8 µs per row of Python and SQLite stepping, the
largest single item of the gateway's CPU per point after the inserts (docs/performance.md).  The
store remains the truth: a batch is taken from here only when the first row the store holds is in
the window, and the store then checks, in the transaction that records the batch, that it holds
exactly the rows the batch covers (``SqliteStore._record_pending``); anything else - a restart, a
backlog larger than the window, rows dropped for room, a rewind, a fresh file - falls back to
reading the rows from SQLite.

Rows are the store's insert tuples ``(id, series, ts_ms, value, flags)``, as committed.
"""

from __future__ import annotations

from typing import Any

Row = tuple[Any, ...]


class RecentRows:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._first_id = 0  # id of _rows[0]
        self._rows: list[Row] = []

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows = []

    def add(self, first_id: int, rows: list[Row]) -> None:
        """Rows ``first_id, first_id + 1, …`` were just committed.  A gap to what is held (ids
        restarted in a fresh file) starts the window again at these rows; only the newest
        ``limit`` rows are kept."""
        held = self._rows
        if held and first_id != self._first_id + len(held):
            held = self._rows = []
        if not held:
            self._first_id = first_id
        held.extend(rows)
        excess = len(held) - self.limit
        if excess > 0:
            del held[:excess]
            self._first_id += excess

    def since(self, first_id: int, limit: int) -> list[Row] | None:
        """Rows ``first_id, first_id + 1, …`` (at most ``limit``), or None when ``first_id`` is
        not in the window - the caller then reads the store."""
        offset = first_id - self._first_id
        if offset < 0 or offset >= len(self._rows):
            return None
        return self._rows[offset : offset + limit]

    def forget_through(self, last_id: int) -> None:
        """Rows up to ``last_id`` are in a batch now: they are not needed again (a rewind that
        sends them once more reads them from the store)."""
        drop = last_id + 1 - self._first_id
        if drop <= 0:
            return
        if drop >= len(self._rows):
            self._rows = []
        else:
            del self._rows[:drop]
        self._first_id = last_id + 1
