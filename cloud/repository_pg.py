"""PostgreSQL storage behind the cloud API: ``PostgresRepository`` implements the same
``Repository`` protocol as ``SqliteRepository`` and passes the same contract suite
(tests/contract/test_repository_contract.py).  ``open_repository("postgresql://…")`` returns it.

What differs from SQLite, and why:

* **Several processes, one database.**  The seq rule is the database's: ``store_batch`` locks the
  lane row (``SELECT … FOR UPDATE``, after inserting it if new) and checks ``last_seq = seq - 1``
  in the same transaction that stores the batch; ``batches`` is unique on (gateway, lane, seq).
  A writer that loses the race gets ``SeqConflict``, as with SQLite.
* **Readings go in by COPY.**  Rows are copied (binary) into a per-connection temporary staging
  table, then moved with ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (exactly-once on the natural
  key gateway/device/point/ts_ms) and folded into ``latest`` (an older reading never overwrites a
  newer one; of equal timestamps the first stored wins), all in the batch's transaction.
* **Time partitions.**  ``readings`` is partitioned by month on ``ts_ms`` (UTC), partitions made on
  demand for months within ``months_back``/``months_ahead`` of the batch's receive time; anything
  else (a gateway with a wrong clock) lands in the default partition, so no sender can make us
  create partitions without bound.  When the TimescaleDB extension can be loaded the table is a
  hypertable instead (monthly chunks).
* **Typed values** in ``value DOUBLE PRECISION, text_value TEXT, vt CHAR(1)``: float → vt NULL;
  int → 'i' (value holds it as a double for SQL aggregates; text_value holds the exact digits when
  a double cannot, beyond 2**53); bool → 'b' (1.0/0.0); str → 's' (text_value).  They come back
  with their Python type, as from SQLite.
* **A connection pool** (``ConnectionPool``): thread-safe, bounded, so worker threads can share
  one repository.

Limit: PostgreSQL text cannot hold NUL characters, which SQLite can; a batch with one in a name or
string value fails to store here (psycopg ``DataError``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from cloud.repository import (
    ROLES,
    GatewayRecord,
    LaneRecord,
    RepositoryError,
    Role,
    SeqConflict,
    _newest_ts,
    bucket_row,
)
from gascore.contract import GENESIS_DIGEST, BatchHeader, canonical_json
from gascore.downlink import Command
from gascore.records import Event, Lane, Reading

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

# Advisory lock keys (any constant int64): schema creation and partition creation, so several
# processes starting or crossing into a new month together never race on the catalog.
_SCHEMA_LOCK = 0x6A5107_0001
_PARTITION_LOCK = 0x6A5107_0002
_EXACT_FLOAT_INT = 2**53  # every int of at most this magnitude is exact as a double
_MONTH_MS_TIMESCALE = 30 * 86_400_000


class PoolTimeout(RepositoryError):
    """No database connection became free in time (the pool is exhausted)."""


class ConnectionPool:
    """At most ``size`` connections; a caller waits (up to ``timeout_s``) for a free one.  A
    connection that comes back broken or inside a transaction is closed, not reused."""

    def __init__(self, connect: Callable[[], Conn], *, size: int = 4, timeout_s: float = 30.0) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._free: list[Conn] = []
        self._lock = threading.Lock()
        self._timeout_s = timeout_s
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        if not self._slots.acquire(timeout=self._timeout_s):
            raise PoolTimeout(f"no database connection free within {self._timeout_s:g} s")
        try:
            with self._lock:
                if self._closed:
                    raise RepositoryError("the repository is closed")
                conn = self._free.pop() if self._free else None
            if conn is None or conn.closed:
                conn = self._connect()
            try:
                yield conn
            finally:
                self._give_back(conn)
        finally:
            self._slots.release()

    def _give_back(self, conn: Conn) -> None:
        reusable = not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with self._lock:
            if reusable and not self._closed:
                self._free.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for conn in free:
            conn.close()


# ---- schema ------------------------------------------------------------------------------------

# Names compare byte by byte (COLLATE "C"): the same order as SQLite whatever the database's
# locale, and cheaper index comparisons.
_TABLES = """
CREATE TABLE IF NOT EXISTS api_keys(key_hash TEXT PRIMARY KEY, role TEXT NOT NULL, label TEXT NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS enrollment_tokens(token_hash TEXT PRIMARY KEY, gateway_id TEXT NOT NULL,
    expires_ms BIGINT NOT NULL, created_ms BIGINT, used_ms BIGINT);
CREATE TABLE IF NOT EXISTS gateways(gateway_id TEXT COLLATE "C" PRIMARY KEY, alg TEXT NOT NULL,
    public_key BYTEA NOT NULL, key_id TEXT NOT NULL, status TEXT NOT NULL, enrolled_ms BIGINT NOT NULL,
    payload_key BYTEA);
CREATE TABLE IF NOT EXISTS lanes(gateway_id TEXT NOT NULL, lane TEXT NOT NULL, last_seq BIGINT NOT NULL,
    last_digest TEXT NOT NULL, last_batch_ms BIGINT, newest_ts_ms BIGINT, PRIMARY KEY (gateway_id, lane));
CREATE TABLE IF NOT EXISTS batches(gateway_id TEXT NOT NULL, lane TEXT NOT NULL, seq BIGINT NOT NULL,
    digest TEXT NOT NULL, count INTEGER NOT NULL, created_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
    PRIMARY KEY (gateway_id, lane, seq));
CREATE TABLE IF NOT EXISTS commands(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, gateway_id TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', delivered_ms BIGINT, done_ms BIGINT, result TEXT,
    expires_ms BIGINT NOT NULL DEFAULT 0, nonce TEXT NOT NULL DEFAULT '', confirmed_by TEXT);
CREATE INDEX IF NOT EXISTS commands_by_gateway ON commands(gateway_id, id);
CREATE TABLE IF NOT EXISTS latest(gateway_id TEXT COLLATE "C" NOT NULL, device TEXT COLLATE "C" NOT NULL,
    point TEXT COLLATE "C" NOT NULL,
    ts_ms BIGINT NOT NULL, value DOUBLE PRECISION, text_value TEXT, vt CHAR(1), quality TEXT NOT NULL,
    PRIMARY KEY (gateway_id, device, point));
CREATE TABLE IF NOT EXISTS events(id BIGINT GENERATED ALWAYS AS IDENTITY, gateway_id TEXT COLLATE "C" NOT NULL,
    device TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL, ts_ms BIGINT NOT NULL, level TEXT NOT NULL,
    data TEXT NOT NULL, seq BIGINT);
CREATE INDEX IF NOT EXISTS events_by_time ON events(gateway_id, ts_ms);
-- Event data can be 16 KiB, beyond a btree entry: the natural key holds its SHA-256.
CREATE UNIQUE INDEX IF NOT EXISTS events_once ON events(gateway_id, device, kind, ts_ms, sha256(data::bytea));
"""

_READING_COLUMNS = """gateway_id TEXT COLLATE "C" NOT NULL, device TEXT COLLATE "C" NOT NULL,
    point TEXT COLLATE "C" NOT NULL, ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION, text_value TEXT, vt CHAR(1), quality TEXT NOT NULL, seq BIGINT"""

# The natural key that makes storage exactly-once; it also serves the series queries.
_READINGS_PARTITIONED = f"""
CREATE TABLE IF NOT EXISTS readings({_READING_COLUMNS},
    CONSTRAINT readings_once UNIQUE (gateway_id, device, point, ts_ms)) PARTITION BY RANGE (ts_ms);
CREATE TABLE IF NOT EXISTS readings_default PARTITION OF readings DEFAULT;
"""
_READINGS_PLAIN = f"""
CREATE TABLE IF NOT EXISTS readings({_READING_COLUMNS},
    CONSTRAINT readings_once UNIQUE (gateway_id, device, point, ts_ms));
"""

# Per connection: where COPY puts a batch's readings (emptied at every commit).
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage(ord INTEGER NOT NULL, device TEXT COLLATE "C" NOT NULL,
    point TEXT COLLATE "C" NOT NULL,
    ts_ms BIGINT NOT NULL, value DOUBLE PRECISION, text_value TEXT, vt TEXT, quality TEXT NOT NULL)
    ON COMMIT DELETE ROWS
"""
_STAGE_COPY = (
    "COPY readings_stage(ord, device, point, ts_ms, value, text_value, vt, quality) FROM STDIN (FORMAT BINARY)"
)
_STAGE_TYPES = ["int4", "text", "text", "int8", "float8", "text", "text", "text"]

_MOVE_READINGS = """
WITH stored AS (
    INSERT INTO readings(gateway_id, device, point, ts_ms, value, text_value, vt, quality, seq)
    SELECT %(gw)s, device, point, ts_ms, value, text_value, vt, quality, %(seq)s FROM readings_stage ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING 1
), newest AS (
    -- `>` rather than `>=`: of two readings with the same timestamp the first one stored wins,
    -- in `latest` as in `readings`, so a re-sent reading never overwrites what is held.
    INSERT INTO latest AS l(gateway_id, device, point, ts_ms, value, text_value, vt, quality)
    SELECT DISTINCT ON (device, point) %(gw)s, device, point, ts_ms, value, text_value, vt, quality
    FROM readings_stage ORDER BY device, point, ts_ms DESC, ord
    ON CONFLICT (gateway_id, device, point) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value,
        text_value = excluded.text_value, vt = excluded.vt, quality = excluded.quality
    WHERE excluded.ts_ms > l.ts_ms
)
SELECT count(*) FROM stored
"""


def _month_start(year: int, month: int) -> int:
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp() * 1000)


def _month_of(ts_ms: int) -> tuple[int, int]:
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ts_ms)
    return d.year, d.month


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def _partition_name(year: int, month: int) -> str:
    return f"readings_p{year:04d}_{month:02d}"


def _reading_row(ord_: int, r: Reading) -> tuple[Any, ...]:
    """(ord, device, point, ts_ms, value, text_value, vt, quality) for the staging COPY."""
    v = r.value
    t = type(v)
    if t is float:
        return (ord_, r.device, r.point, r.ts_ms, v, None, None, r.quality.value)
    if t is bool:
        return (ord_, r.device, r.point, r.ts_ms, 1.0 if v else 0.0, None, "b", r.quality.value)
    if t is int:
        assert isinstance(v, int)
        exact = None if -_EXACT_FLOAT_INT <= v <= _EXACT_FLOAT_INT else str(v)
        return (ord_, r.device, r.point, r.ts_ms, float(v), exact, "i", r.quality.value)
    if t is str:
        return (ord_, r.device, r.point, r.ts_ms, None, v, "s", r.quality.value)
    return (ord_, r.device, r.point, r.ts_ms, None, None, None, r.quality.value)


def _count(cur: psycopg.Cursor[tuple[Any, ...]]) -> int:
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _value(value: float | None, text_value: str | None, vt: str | None) -> Any:
    if vt is None:
        return value
    if vt == "b":
        return bool(value)
    if vt == "i":
        return int(text_value) if text_value is not None else int(value or 0)
    return text_value  # 's'


class PostgresRepository:
    """``url``: a libpq URL (``postgresql://user@host:port/db``).  ``pool_size`` connections at
    most; readings partitions are made for months from ``months_back`` before to ``months_ahead``
    after the time a batch is received."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        pool_timeout_s: float = 30.0,
        months_back: int = 60,
        months_ahead: int = 1,
        timescale: bool = True,
    ) -> None:
        self._url = url
        self._months_back = months_back
        self._months_ahead = months_ahead
        self._months: set[tuple[int, int]] = set()  # partitions known to exist (or not makeable)
        self._months_lock = threading.Lock()
        self._pool = ConnectionPool(self._connect, size=pool_size, timeout_s=pool_timeout_s)
        with self._pool.connection() as conn:  # fail now, with the server's message, if unreachable
            self._partitioned = self._create_schema(conn, timescale=timescale)
            if self._partitioned:
                self._months = self._existing_months(conn)

    def _connect(self) -> Conn:
        conn = psycopg.connect(self._url, autocommit=True, application_name="gasiot-cloud")
        conn.execute(_STAGE)
        return conn

    def close(self) -> None:
        self._pool.close()

    # ---- schema -------------------------------------------------------------------------------

    def _create_schema(self, conn: Conn, *, timescale: bool) -> bool:
        """Create what is missing (several processes may start at once: they take turns).
        Returns whether ``readings`` is partitioned by us (False: a TimescaleDB hypertable)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_TABLES)
            kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('readings')").fetchone()
            if kind is not None:
                return str(kind[0]) == "p"
            if timescale and self._load_timescale(conn):
                conn.execute(_READINGS_PLAIN)
                conn.execute(
                    "SELECT create_hypertable('readings', 'ts_ms', chunk_time_interval => %s::bigint,"
                    " if_not_exists => TRUE)",
                    (_MONTH_MS_TIMESCALE,),
                )
                log.info("readings: TimescaleDB hypertable, chunks of 30 days")
                return False
            conn.execute(_READINGS_PARTITIONED)
            log.info("readings: partitioned by month (TimescaleDB not available)")
            return True

    @staticmethod
    def _load_timescale(conn: Conn) -> bool:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
            return False
        try:
            with conn.transaction():  # a savepoint: the schema transaction survives a failure
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as err:  # e.g. installed but not in shared_preload_libraries
            log.warning("TimescaleDB is installed but cannot be loaded (%s); monthly partitions instead", err)
            return False
        return True

    @staticmethod
    def _existing_months(conn: Conn) -> set[tuple[int, int]]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'readings'::regclass"
        ).fetchall()
        months = set()
        for (name,) in rows:
            if str(name).startswith("readings_p"):
                year, month = str(name).removeprefix("readings_p").split("_")
                months.add((int(year), int(month)))
        return months

    def _ensure_partitions(self, lo_ms: int, hi_ms: int, now_ms: int) -> None:
        """Make the monthly partitions a batch spanning ``lo_ms..hi_ms`` needs, within the window
        around ``now_ms``; outside it rows go to the default partition."""
        first = _add_months(*_month_of(now_ms), -self._months_back)
        last = _add_months(*_month_of(now_ms), self._months_ahead)
        # Clip in milliseconds first: a record may carry any int64 time, beyond what dates hold.
        lo = max(lo_ms, _month_start(*first))
        hi = min(hi_ms, _month_start(*_next_month(*last)) - 1)
        if lo > hi:
            return
        month, end = _month_of(lo), _month_of(hi)
        wanted = []
        while month <= end:
            wanted.append(month)
            month = _next_month(*month)
        with self._months_lock:
            missing = [m for m in wanted if m not in self._months]
        for m in missing:
            self._create_partition(*m)

    def _create_partition(self, year: int, month: int) -> None:
        name = _partition_name(year, month)
        start, stop = _month_start(year, month), _month_start(*_next_month(year, month))
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings FOR VALUES FROM ({start}) TO ({stop})"
                )
        except pg_errors.CheckViolation:
            # The default partition already holds rows of this month (stored while the month was
            # outside the window): they stay there, and so does the rest of the month.
            log.warning("readings for %04d-%02d stay in the default partition (it already holds some)", year, month)
        else:
            log.info("readings partition %s created", name)
        with self._months_lock:
            self._months.add((year, month))

    # ---- auth ---------------------------------------------------------------------------------

    def add_api_key(self, key_hash: str, role: Role, label: str, now_ms: int) -> None:
        with self._pool.connection() as conn:
            conn.execute("INSERT INTO api_keys VALUES (%s, %s, %s, %s)", (key_hash, role, label, now_ms))

    def api_key_role(self, key_hash: str) -> Role | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT role FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        return row[0] if row and row[0] in ROLES else None

    def count_api_keys(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM api_keys").fetchone()
        return int(row[0]) if row else 0

    # ---- registry -----------------------------------------------------------------------------

    def add_enrollment_token(self, token_hash: str, gateway_id: str, expires_ms: int, now_ms: int) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO enrollment_tokens(token_hash, gateway_id, expires_ms, created_ms) VALUES (%s, %s, %s, %s)",
                (token_hash, gateway_id, expires_ms, now_ms),
            )

    def consume_enrollment_token(self, token_hash: str, gateway_id: str, now_ms: int) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE enrollment_tokens SET used_ms = %s WHERE token_hash = %s AND gateway_id = %s"
                " AND used_ms IS NULL AND expires_ms > %s",
                (now_ms, token_hash, gateway_id, now_ms),
            )
            return cur.rowcount == 1

    _GATEWAY_COLUMNS = "gateway_id, alg, public_key, key_id, status, enrolled_ms, payload_key"

    def register_gateway(self, gw: GatewayRecord) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO gateways({self._GATEWAY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
                " ON CONFLICT (gateway_id) DO UPDATE SET alg = excluded.alg, public_key = excluded.public_key,"
                " key_id = excluded.key_id, status = excluded.status, enrolled_ms = excluded.enrolled_ms,"
                " payload_key = excluded.payload_key",
                (gw.gateway_id, gw.alg, gw.public_key, gw.key_id, gw.status, gw.enrolled_ms, gw.payload_key),
            )

    @staticmethod
    def _gateway_row(r: tuple[Any, ...]) -> GatewayRecord:
        return GatewayRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6]) if r[6] is not None else None)

    def gateway(self, gateway_id: str) -> GatewayRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {self._GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = %s",  # noqa: S608 - constant columns
                (gateway_id,),
            ).fetchone()
        return self._gateway_row(row) if row else None

    def gateways(self) -> list[GatewayRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {self._GATEWAY_COLUMNS} FROM gateways ORDER BY gateway_id").fetchall()  # noqa: S608
        return [self._gateway_row(r) for r in rows]

    # ---- ingest -------------------------------------------------------------------------------

    def lane(self, gateway_id: str, lane: Lane) -> LaneRecord:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT last_seq, last_digest, last_batch_ms, newest_ts_ms FROM lanes WHERE gateway_id = %s"
                " AND lane = %s",
                (gateway_id, lane.value),
            ).fetchone()
        return LaneRecord(*row) if row else LaneRecord(0, GENESIS_DIGEST, None)

    def batch_digest(self, gateway_id: str, lane: Lane, seq: int) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT digest FROM batches WHERE gateway_id = %s AND lane = %s AND seq = %s",
                (gateway_id, lane.value, seq),
            ).fetchone()
        return str(row[0]) if row else None

    def store_batch(
        self, header: BatchHeader, digest: str, records: Sequence[Reading] | Sequence[Event], now_ms: int
    ) -> int:
        gw, lane, seq = header.gateway_id, header.lane, header.seq
        readings = [r for r in records if isinstance(r, Reading)] if lane is Lane.TELEMETRY else []
        events = [e for e in records if isinstance(e, Event)] if lane is Lane.EVENTS else []
        if readings and self._partitioned:
            stamps = [r.ts_ms for r in readings]
            self._ensure_partitions(min(stamps), max(stamps), now_ms)
        with self._pool.connection() as conn:
            try:
                with conn.transaction():
                    newest_before = self._lock_lane(conn, gw, lane, seq)
                    if readings:
                        self._copy_readings(conn, readings)
                    with conn.pipeline():  # one round trip for the three statements
                        conn.execute(
                            "INSERT INTO batches VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (gw, lane.value, seq, digest, header.count, header.created_ms, now_ms),
                        )
                        conn.execute(
                            "UPDATE lanes SET last_seq = %s, last_digest = %s, last_batch_ms = %s, newest_ts_ms = %s"
                            " WHERE gateway_id = %s AND lane = %s",
                            (seq, digest, now_ms, _newest_ts(newest_before, records), gw, lane.value),
                        )
                        moved = conn.execute(_MOVE_READINGS, {"gw": gw, "seq": seq}) if readings else None
                    inserted = _count(moved) if moved is not None else 0
                    if events:
                        inserted = self._insert_events(conn, gw, seq, events)
            except pg_errors.UniqueViolation as err:
                if err.diag.constraint_name != "batches_pkey":
                    raise
                raise SeqConflict(f"{gw}/{lane.value}: seq {seq} was stored by another writer") from err
        return len(records) - inserted

    @staticmethod
    def _lock_lane(conn: Conn, gw: str, lane: Lane, seq: int) -> int | None:
        """Lock the lane's row for this transaction (creating it at seq 0 first) and check the seq
        rule; returns the lane's newest record timestamp so far."""
        with conn.pipeline():  # one round trip for both statements
            conn.execute(
                "INSERT INTO lanes(gateway_id, lane, last_seq, last_digest) VALUES (%s, %s, 0, %s)"
                " ON CONFLICT (gateway_id, lane) DO NOTHING",
                (gw, lane.value, GENESIS_DIGEST),
            )
            locked = conn.execute(
                "SELECT last_seq, newest_ts_ms FROM lanes WHERE gateway_id = %s AND lane = %s FOR UPDATE",
                (gw, lane.value),
            )
        row = locked.fetchone()
        assert row is not None
        last_seq, newest = int(row[0]), row[1]
        if last_seq != seq - 1:
            raise SeqConflict(f"{gw}/{lane.value}: expected seq {last_seq + 1}, got {seq}")
        return None if newest is None else int(newest)

    @staticmethod
    def _copy_readings(conn: Conn, readings: Sequence[Reading]) -> None:
        """Into this connection's staging table (emptied when the transaction ends)."""
        with conn.cursor() as cur, cur.copy(_STAGE_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            write = copy.write_row
            for i, r in enumerate(readings):
                write(_reading_row(i, r))

    @staticmethod
    def _insert_events(conn: Conn, gw: str, seq: int, events: Sequence[Event]) -> int:
        # Canonical JSON, so the same data always has the same text and the unique key sees it.
        columns: list[list[Any]] = [[], [], [], [], []]
        for e in events:
            for column, value in zip(
                columns, (e.device, e.kind, e.ts_ms, e.level.value, canonical_json(e.data).decode()), strict=True
            ):
                column.append(value)
        cur = conn.execute(
            "INSERT INTO events(gateway_id, device, kind, ts_ms, level, data, seq)"
            " SELECT %s, d, k, t, l, j, %s FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[])"
            " AS u(d, k, t, l, j) ON CONFLICT DO NOTHING",
            (gw, seq, *columns),
        )
        inserted = cur.rowcount
        # The gateway reports what it did with each command on the events lane.
        results = [
            (str(e.data.get("status", "")), e.ts_ms, json.dumps(e.data, ensure_ascii=False), gw, e.data["command_id"])
            for e in events
            if e.kind == "command.result" and isinstance(e.data.get("command_id"), int)
        ]
        if results:
            with conn.cursor() as cur2:
                cur2.executemany(
                    "UPDATE commands SET status = %s, done_ms = %s, result = %s WHERE gateway_id = %s AND id = %s",
                    results,
                )
        return inserted

    # ---- commands (downlink) ------------------------------------------------------------------

    def add_command(
        self,
        gateway_id: str,
        type_: str,
        body: dict[str, Any],
        created_by: str,
        now_ms: int,
        *,
        expires_ms: int,
        needs_confirmation: bool = False,
    ) -> Command:
        nonce = secrets.token_hex(16)
        status = "awaiting_confirmation" if needs_confirmation else "pending"
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO commands(gateway_id, type, body, created_ms, created_by, status, expires_ms, nonce)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (gateway_id, type_, canonical_json(body).decode(), now_ms, created_by, status, expires_ms, nonce),
            ).fetchone()
        assert row is not None
        return Command(int(row[0]), gateway_id, type_, body, now_ms, created_by, expires_ms, nonce)

    def confirm_command(self, gateway_id: str, command_id: int, by: str, now_ms: int) -> str | None:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT status, created_by, expires_ms FROM commands WHERE gateway_id = %s AND id = %s FOR UPDATE",
                (gateway_id, command_id),
            ).fetchone()
            if row is None:
                return "no such command"
            status, author, expires = row
            if status != "awaiting_confirmation":
                return f"the command is {status}, not awaiting confirmation"
            if author == by:
                return "the author of a command cannot confirm it: a second person must"
            if expires <= now_ms:
                return "the command has expired"
            conn.execute("UPDATE commands SET status = 'pending', confirmed_by = %s WHERE id = %s", (by, command_id))
        return None

    def commands_after(self, gateway_id: str, after: int, limit: int, now_ms: int) -> list[Command]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "WITH due AS (SELECT id, type, body, created_ms, created_by, expires_ms, nonce FROM commands"
                " WHERE gateway_id = %s AND id > %s AND status IN ('pending', 'delivered') AND expires_ms > %s"
                " ORDER BY id LIMIT %s),"
                " marked AS (UPDATE commands SET status = 'delivered', delivered_ms = %s"
                " WHERE id IN (SELECT id FROM due) AND status = 'pending')"
                " SELECT id, type, body, created_ms, created_by, expires_ms, nonce FROM due ORDER BY id",
                (gateway_id, after, now_ms, limit, now_ms),
            ).fetchall()
        return [Command(int(r[0]), gateway_id, r[1], json.loads(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    _COMMAND_KEYS = (
        "id",
        "type",
        "body",
        "created_ms",
        "created_by",
        "status",
        "delivered_ms",
        "done_ms",
        "result",
        "expires_ms",
        "confirmed_by",
    )

    def commands(self, gateway_id: str, limit: int) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(self._COMMAND_KEYS)} FROM commands"  # noqa: S608 - constant columns
                " WHERE gateway_id = %s ORDER BY id DESC LIMIT %s",
                (gateway_id, limit),
            ).fetchall()
        out = []
        for r in rows:
            item = dict(zip(self._COMMAND_KEYS, r, strict=True))
            item["body"] = json.loads(item["body"])
            item["result"] = json.loads(item["result"]) if item["result"] else None
            out.append(item)
        return out

    # ---- queries ------------------------------------------------------------------------------

    def latest(self, gateway_id: str, device: str | None) -> list[dict[str, Any]]:
        sql = "SELECT device, point, ts_ms, value, text_value, vt, quality FROM latest WHERE gateway_id = %s"
        args: list[Any] = [gateway_id]
        if device is not None:
            sql += " AND device = %s"
            args.append(device)
        with self._pool.connection() as conn:
            rows = conn.execute(sql + " ORDER BY device, point", args).fetchall()
        return [
            {"device": d, "point": p, "ts_ms": ts, "value": _value(v, tv, vt), "quality": q}
            for d, p, ts, v, tv, vt, q in rows
        ]

    def series(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, limit: int
    ) -> list[dict[str, Any]]:
        # (gateway, device, point, ts_ms) is unique, so ts_ms alone orders the series.
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT ts_ms, value, text_value, vt, quality FROM readings WHERE gateway_id = %s AND device = %s"
                " AND point = %s AND ts_ms >= %s AND ts_ms < %s ORDER BY ts_ms LIMIT %s",
                (gateway_id, device, point, from_ms, to_ms, limit),
            ).fetchall()
        return [{"ts_ms": ts, "value": _value(v, tv, vt), "quality": q} for ts, v, tv, vt, q in rows]

    def series_buckets(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, bucket_ms: int
    ) -> list[dict[str, Any]]:
        # `value` holds every number (integers too, as doubles) and booleans as 0/1; strings are NULL.
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT (ts_ms - %s) / %s AS b, min(value), max(value), avg(value), count(value),"
                " count(*) FILTER (WHERE quality <> 'good') FROM readings WHERE gateway_id = %s AND device = %s"
                " AND point = %s AND ts_ms >= %s AND ts_ms < %s GROUP BY b ORDER BY b",
                (from_ms, bucket_ms, gateway_id, device, point, from_ms, to_ms),
            ).fetchall()
        return [bucket_row(from_ms, bucket_ms, *r) for r in rows]

    def events(self, gateway_id: str, device: str | None, from_ms: int, to_ms: int, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT device, kind, ts_ms, level, data FROM events WHERE gateway_id = %s AND ts_ms >= %s AND ts_ms < %s"
        args: list[Any] = [gateway_id, from_ms, to_ms]
        if device is not None:
            sql += " AND device = %s"
            args.append(device)
        with self._pool.connection() as conn:
            rows = conn.execute(sql + " ORDER BY ts_ms, id LIMIT %s", [*args, limit]).fetchall()
        return [
            {"device": d, "kind": k, "ts_ms": ts, "level": lvl, "data": json.loads(data)}
            for d, k, ts, lvl, data in rows
        ]

    def counts(self, gateway_id: str) -> dict[str, int]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM readings WHERE gateway_id = %s),"
                " (SELECT count(*) FROM events WHERE gateway_id = %s)",
                (gateway_id, gateway_id),
            ).fetchone()
        assert row is not None
        return {"readings": int(row[0]), "events": int(row[1])}
