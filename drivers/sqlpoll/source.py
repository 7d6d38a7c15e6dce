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


class _Queries:
    """The statements of one channel, built once; only the parameter placeholder differs between
    databases.  Subclasses supply ``_query``."""

    def __init__(self, channel: SqlPollChannel, columns: Sequence[str], placeholder: str) -> None:
        self.columns = select_columns(channel, columns)
        key = quote(channel.key_column)
        select = f"SELECT {', '.join(quote(c) for c in self.columns)} FROM {quote(channel.table)}"  # noqa: S608
        self._select = f"{select} WHERE {key} > {placeholder} ORDER BY {key} LIMIT {placeholder}"
        self._select_first = f"{select} ORDER BY {key} LIMIT {placeholder}"
        self._max = f"SELECT max({key}) FROM {quote(channel.table)}"  # noqa: S608

    async def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def max_key(self) -> Any:
        return (await self._query(self._max))[0][0]

    async def rows_after(self, key: Any, limit: int) -> list[tuple[Any, ...]]:
        """Rows with a key above ``key`` (None: from the first row), in key order."""
        if key is None:
            return await self._query(self._select_first, (limit,))
        return await self._query(self._select, (key, limit))


class SqliteSource(_Queries):
    def __init__(self, channel: SqlPollChannel, columns: Sequence[str]) -> None:
        super().__init__(channel, columns, "?")
        self.path = channel.url.removeprefix("sqlite:///")
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

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresSource(_Queries):
    def __init__(self, channel: SqlPollChannel, columns: Sequence[str]) -> None:
        super().__init__(channel, columns, "%s")
        self.channel = channel
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

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def source_for(channel: SqlPollChannel, columns: Sequence[str]) -> RowSource:
    if channel.url.startswith("sqlite:///"):
        return SqliteSource(channel, columns)
    return PostgresSource(channel, columns)
