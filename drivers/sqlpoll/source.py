"""Read-only row sources: SQLite (stdlib, in a worker thread: sqlite3 has no async API) and
PostgreSQL (psycopg's async connection, in a read-only session)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from drivers.sqlpoll.config import SqlPollChannel, quote


class SourceError(Exception):
    """The database cannot be reached or the query failed."""


class RowSource(Protocol):
    async def open(self) -> None: ...
    async def max_key(self) -> Any: ...
    async def rows_after(self, key: Any, limit: int) -> list[tuple[Any, ...]]: ...
    async def close(self) -> None: ...


def select_columns(channel: SqlPollChannel, columns: Sequence[str]) -> list[str]:
    """key, [device], [timestamp], then the point columns (deduplicated, in order)."""
    wanted = [channel.key_column]
    for extra in (channel.device_column, channel.timestamp_column, *columns):
        if extra is not None and extra not in wanted:
            wanted.append(extra)
    return wanted


class SqliteSource:
    def __init__(self, channel: SqlPollChannel, columns: Sequence[str]) -> None:
        self.path = channel.url.removeprefix("sqlite:///")
        self.columns = select_columns(channel, columns)
        self._select = (
            f"SELECT {', '.join(quote(c) for c in self.columns)} FROM {quote(channel.table)}"  # noqa: S608
            f" WHERE {quote(channel.key_column)} > ? ORDER BY {quote(channel.key_column)} LIMIT ?"
        )
        self._select_first = self._select.replace(f"WHERE {quote(channel.key_column)} > ? ", "")
        self._max = f"SELECT max({quote(channel.key_column)}) FROM {quote(channel.table)}"  # noqa: S608
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            conn.execute(self._max).fetchone()  # fail now if the table or a column is missing
            return conn

        try:
            self._conn = await asyncio.to_thread(connect)
        except sqlite3.Error as err:
            raise SourceError(f"sqlite {self.path}: {err}") from err

    async def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn
        if conn is None:
            raise SourceError("not open")
        try:
            return await asyncio.to_thread(lambda: conn.execute(sql, args).fetchall())
        except sqlite3.Error as err:
            raise SourceError(f"sqlite {self.path}: {err}") from err

    async def max_key(self) -> Any:
        return (await self._query(self._max))[0][0]

    async def rows_after(self, key: Any, limit: int) -> list[tuple[Any, ...]]:
        """Rows with a key above ``key`` (None: from the first row), in key order."""
        if key is None:
            return await self._query(self._select_first, (limit,))
        return await self._query(self._select, (key, limit))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresSource:
    def __init__(self, channel: SqlPollChannel, columns: Sequence[str]) -> None:
        self.channel = channel
        self.columns = select_columns(channel, columns)
        self._select = (
            f"SELECT {', '.join(quote(c) for c in self.columns)} FROM {quote(channel.table)}"  # noqa: S608
            f" WHERE {quote(channel.key_column)} > %s ORDER BY {quote(channel.key_column)} LIMIT %s"
        )
        self._select_first = self._select.replace(f"WHERE {quote(channel.key_column)} > %s ", "")
        self._max = f"SELECT max({quote(channel.key_column)}) FROM {quote(channel.table)}"  # noqa: S608
        self._conn: Any = None

    async def open(self) -> None:
        import psycopg

        ch = self.channel
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                ch.url,
                password=ch.password.get_secret_value() if ch.password else None,
                connect_timeout=max(1, int(ch.timeout_s)),
                autocommit=True,
            )
            await self._conn.execute("SET default_transaction_read_only = on")
            await self._conn.execute(self._max)
        except psycopg.Error as err:
            raise SourceError(f"postgresql: {err}") from err

    async def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        if self._conn is None:
            raise SourceError("not open")
        try:
            cur = await self._conn.execute(sql, args)
            return list(await cur.fetchall())
        except psycopg.Error as err:
            raise SourceError(f"postgresql: {err}") from err

    async def max_key(self) -> Any:
        return (await self._query(self._max))[0][0]

    async def rows_after(self, key: Any, limit: int) -> list[tuple[Any, ...]]:
        """Rows with a key above ``key`` (None: from the first row), in key order."""
        if key is None:
            return await self._query(self._select_first, (limit,))
        return await self._query(self._select, (key, limit))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def source_for(channel: SqlPollChannel, columns: Sequence[str]) -> RowSource:
    if channel.url.startswith("sqlite:///"):
        return SqliteSource(channel, columns)
    return PostgresSource(channel, columns)
