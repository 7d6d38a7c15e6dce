"""A small portable SQL layer for the cloud's own tables (users, audit, registry): one SQL text
with ``?`` placeholders runs on SQLite (the embedded default) and on PostgreSQL.

Only what both engines share is used: ``INSERT … ON CONFLICT … DO NOTHING/UPDATE``, standard
types, ``RETURNING``.  Each store keeps per-dialect DDL where the engines differ (auto ids,
blobs).  Writes go through ``transaction()``, which serialises writers (SQLite: BEGIN IMMEDIATE;
PostgreSQL: a transaction on one pooled connection; stores that need a global order take an
explicit lock inside it).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]


class Tx(Protocol):
    dialect: Dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...


class SqlDb(Protocol):
    dialect: Dialect

    def transaction(self) -> contextlib.AbstractContextManager[Tx]: ...

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def script(self, ddl: dict[Dialect, str]) -> None:
        """Run this dialect's DDL (idempotent: CREATE … IF NOT EXISTS)."""

    def close(self) -> None: ...


class _SqliteTx:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(args)).rowcount

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql, tuple(args)).fetchall()]

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._conn.execute(sql, tuple(args)).fetchone()
        return tuple(row) if row is not None else None


class SqliteDb:
    """One connection, shared by the event loop and worker threads under a lock."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return _SqliteTx(self._conn).query(sql, args)

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return _SqliteTx(self._conn).one(sql, args)

    def script(self, ddl: dict[Dialect, str]) -> None:
        with self._lock:
            self._conn.executescript(ddl["sqlite"])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _pg(sql: str, args: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    """``?`` placeholders → psycopg's; our statements never hold a literal "?"."""
    if not args:
        return sql, None
    return sql.replace("%", "%%").replace("?", "%s"), tuple(args)


class _PgTx:
    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(*_pg(sql, args))
        return int(cur.rowcount)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(*_pg(sql, args)).fetchall()]

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self._conn.execute(*_pg(sql, args)).fetchone()
        return tuple(row) if row is not None else None


_DDL_LOCK = 0x6A5107_0000  # advisory lock key (any constant) held while creating tables


class PostgresDb:
    """A small pool of psycopg connections (thread-safe; each transaction takes one)."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, size: int = 4) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._size = size
        self._connect().close()  # fail now, with the server's message, if it is unreachable

    def _connect(self) -> Any:
        return self._psycopg.connect(self._url, autocommit=True)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._free.pop() if self._free else None
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown: do not reuse it
            raise
        with self._lock:
            if len(self._free) < self._size:
                self._free.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return _PgTx(conn).query(sql, args)

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._connection() as conn:
            return _PgTx(conn).one(sql, args)

    def script(self, ddl: dict[Dialect, str]) -> None:
        with self._connection() as conn, conn.transaction():
            # Processes starting together take turns: concurrent CREATE … IF NOT EXISTS can fail.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            conn.execute(ddl["postgresql"])

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for conn in free:
            conn.close()


def open_db(url: str) -> SqlDb:
    """``sqlite:///path`` or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        return SqliteDb(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDb(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
