"""Storage behind the cloud API.  ``Repository`` is the interface; ``SqliteRepository`` the
embedded default (D-5.3.2); ``PostgresRepository`` (cloud/repository_pg.py) the same Protocol on
PostgreSQL, for several cloud processes on one database."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import sqlite_utils

from gascore.contract import GENESIS_DIGEST, BatchHeader, canonical_json
from gascore.downlink import Command
from gascore.records import Event, Lane, Reading

log = logging.getLogger(__name__)

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "operator", "viewer")


class RepositoryError(Exception):
    """Base of storage errors."""


class SeqConflict(RepositoryError):
    """Another writer stored this seq first (raced); the caller re-evaluates."""


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    gateway_id: str
    alg: str
    public_key: bytes
    key_id: str
    status: str
    enrolled_ms: int
    payload_key: bytes | None = None  # SM4 key for encrypted batch bodies, agreed at enrollment


@dataclass(frozen=True, slots=True)
class LaneRecord:
    last_seq: int
    last_digest: str
    last_batch_ms: int | None
    newest_ts_ms: int | None = None  # newest record timestamp received on the lane


class Repository(Protocol):
    def add_api_key(self, key_hash: str, role: Role, label: str, now_ms: int) -> None: ...
    def api_key_role(self, key_hash: str) -> Role | None: ...
    def count_api_keys(self) -> int: ...
    def add_enrollment_token(self, token_hash: str, gateway_id: str, expires_ms: int, now_ms: int) -> None: ...
    def consume_enrollment_token(self, token_hash: str, gateway_id: str, now_ms: int) -> bool: ...
    def register_gateway(self, gw: GatewayRecord) -> None: ...
    def gateway(self, gateway_id: str) -> GatewayRecord | None: ...
    def gateways(self) -> list[GatewayRecord]: ...
    def lane(self, gateway_id: str, lane: Lane) -> LaneRecord: ...
    def batch_digest(self, gateway_id: str, lane: Lane, seq: int) -> str | None: ...
    def store_batch(
        self, header: BatchHeader, digest: str, records: Sequence[Reading] | Sequence[Event], now_ms: int
    ) -> int:
        """Store a batch and advance its lane in one transaction.  Records already held (same
        natural key) are skipped, so storage stays exactly-once even when an edge re-sends them
        under a new seq; returns how many were skipped."""
        ...

    def latest(self, gateway_id: str, device: str | None) -> list[dict[str, Any]]: ...
    def series(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, limit: int
    ) -> list[dict[str, Any]]: ...
    def events(
        self, gateway_id: str, device: str | None, from_ms: int, to_ms: int, limit: int
    ) -> list[dict[str, Any]]: ...
    def series_buckets(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, bucket_ms: int
    ) -> list[dict[str, Any]]:
        """Downsampled history (the console's trends): per bucket of ``bucket_ms`` from ``from_ms``,
        the min, max and mean of the numeric values (booleans as 0/1), ``count`` of them and
        ``bad`` readings of any quality but good.  Only buckets that hold readings, in order."""
        ...

    def counts(self, gateway_id: str) -> dict[str, int]: ...
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
        """Queue a command (``awaiting_confirmation`` when a second person must confirm it)."""
        ...

    def confirm_command(self, gateway_id: str, command_id: int, by: str, now_ms: int) -> str | None:
        """Release a command awaiting confirmation; returns why not (None: confirmed).  The
        confirmer must not be its author."""
        ...

    def commands_after(self, gateway_id: str, after: int, limit: int, now_ms: int) -> list[Command]:
        """Pending or delivered, unexpired commands after ``after``; marks them delivered."""
        ...

    def commands(self, gateway_id: str, limit: int) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class SqliteRepository:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Ingest writes a few MiB of pages per batch (the readings key is ordered by series, so a
        # batch touches pages all over it).  With SQLite's default checkpoint every 1,000 pages
        # (4 MiB) nearly every commit also copied the WAL back into the database and synced it;
        # every 10,000 pages halves the time spent committing (#9).  The WAL file is cut back to
        # 64 MiB after a checkpoint.
        self._db.execute("PRAGMA wal_autocheckpoint=10000")
        self._db.execute(f"PRAGMA journal_size_limit={64 * 2**20}")
        self._create_schema()

    def _create_schema(self) -> None:
        db = sqlite_utils.Database(self._db)
        db.table("api_keys").create(
            {"key_hash": str, "role": str, "label": str, "created_ms": int}, pk="key_hash", if_not_exists=True
        )
        db.table("enrollment_tokens").create(
            {"token_hash": str, "gateway_id": str, "expires_ms": int, "created_ms": int, "used_ms": int},
            pk="token_hash",
            not_null={"gateway_id", "expires_ms"},
            if_not_exists=True,
        )
        db.table("gateways").create(
            {
                "gateway_id": str,
                "alg": str,
                "public_key": bytes,
                "key_id": str,
                "status": str,
                "enrolled_ms": int,
            },
            pk="gateway_id",
            if_not_exists=True,
        )
        db.table("lanes").create(
            {
                "gateway_id": str,
                "lane": str,
                "last_seq": int,
                "last_digest": str,
                "last_batch_ms": int,
                "newest_ts_ms": int,
            },
            pk=("gateway_id", "lane"),
            if_not_exists=True,
        )
        if "newest_ts_ms" not in db.table("lanes").columns_dict:  # a database from before the column
            db.table("lanes").add_column("newest_ts_ms", int)
        db.table("batches").create(
            {
                "gateway_id": str,
                "lane": str,
                "seq": int,
                "digest": str,
                "count": int,
                "created_ms": int,
                "received_ms": int,
            },
            pk=("gateway_id", "lane", "seq"),
            if_not_exists=True,
        )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(gateways)")}
        if "payload_key" not in columns:  # databases created before payload encryption
            self._db.execute("ALTER TABLE gateways ADD COLUMN payload_key BLOB")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS commands(id INTEGER PRIMARY KEY AUTOINCREMENT, gateway_id TEXT NOT NULL,"
            " type TEXT NOT NULL, body TEXT NOT NULL, created_ms INTEGER NOT NULL, created_by TEXT NOT NULL,"
            " status TEXT NOT NULL DEFAULT 'pending', delivered_ms INTEGER, done_ms INTEGER, result TEXT)"
        )
        command_columns = {r[1] for r in self._db.execute("PRAGMA table_info(commands)")}
        for column, ddl in (
            ("expires_ms", "INTEGER NOT NULL DEFAULT 0"),
            ("nonce", "TEXT NOT NULL DEFAULT ''"),
            ("confirmed_by", "TEXT"),
        ):
            if column not in command_columns:  # databases from before expiry and dual control
                self._db.execute(f"ALTER TABLE commands ADD COLUMN {column} {ddl}")
        # Raw DDL: `value` must have no type affinity so floats, ints and bools keep their type.
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS readings(gateway_id TEXT NOT NULL, device TEXT NOT NULL,
                point TEXT NOT NULL, ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL, seq INTEGER);
            CREATE TABLE IF NOT EXISTS latest(gateway_id TEXT NOT NULL, device TEXT NOT NULL,
                point TEXT NOT NULL, ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL,
                PRIMARY KEY (gateway_id, device, point));
        """)
        db.table("events").create(
            {
                "gateway_id": str,
                "device": str,
                "kind": str,
                "ts_ms": int,
                "level": str,
                "data": str,
                "seq": int,
            },
            if_not_exists=True,
        )
        db.table("events").create_index(["gateway_id", "ts_ms"], if_not_exists=True)
        # The natural keys that make storage exactly-once whatever the edge's seq says.  The
        # readings key also serves the series queries, so it replaces the old plain index.
        self._ensure_unique("readings", "readings_once", ("gateway_id", "device", "point", "ts_ms"))
        self._db.execute("DROP INDEX IF EXISTS readings_by_point")
        self._ensure_unique("events", "events_once", ("gateway_id", "device", "kind", "ts_ms", "data"))

    def _ensure_unique(self, table: str, index: str, columns: tuple[str, ...]) -> None:
        """Create a UNIQUE index; a database from before it may hold duplicates, which are removed
        first (keeping the earliest copy) and counted in the log."""
        exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (index,)).fetchone()
        if exists:
            return
        cols = ", ".join(columns)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.execute(
                f"DELETE FROM {table} WHERE rowid NOT IN (SELECT min(rowid) FROM {table} GROUP BY {cols})"  # noqa: S608 - fixed names
            ).rowcount
            self._db.execute(f"CREATE UNIQUE INDEX {index} ON {table}({cols})")
        if removed:
            log.warning("removed %d duplicate rows from %s before adding its unique index", removed, table)

    def close(self) -> None:
        self._db.close()

    # ---- auth ---------------------------------------------------------------------------

    def add_api_key(self, key_hash: str, role: Role, label: str, now_ms: int) -> None:
        self._db.execute("INSERT INTO api_keys VALUES (?,?,?,?)", (key_hash, role, label, now_ms))

    def api_key_role(self, key_hash: str) -> Role | None:
        row = self._db.execute("SELECT role FROM api_keys WHERE key_hash=?", (key_hash,)).fetchone()
        return row[0] if row and row[0] in ROLES else None

    def count_api_keys(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM api_keys").fetchone()[0])

    # ---- registry -----------------------------------------------------------------------

    def add_enrollment_token(self, token_hash: str, gateway_id: str, expires_ms: int, now_ms: int) -> None:
        self._db.execute(
            "INSERT INTO enrollment_tokens(token_hash, gateway_id, expires_ms, created_ms) VALUES (?,?,?,?)",
            (token_hash, gateway_id, expires_ms, now_ms),
        )

    def consume_enrollment_token(self, token_hash: str, gateway_id: str, now_ms: int) -> bool:
        cur = self._db.execute(
            "UPDATE enrollment_tokens SET used_ms=? WHERE token_hash=? AND gateway_id=? AND used_ms IS NULL"
            " AND expires_ms > ?",
            (now_ms, token_hash, gateway_id, now_ms),
        )
        return cur.rowcount == 1

    _GATEWAY_COLUMNS = "gateway_id, alg, public_key, key_id, status, enrolled_ms, payload_key"

    def register_gateway(self, gw: GatewayRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO gateways({self._GATEWAY_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
            (gw.gateway_id, gw.alg, gw.public_key, gw.key_id, gw.status, gw.enrolled_ms, gw.payload_key),
        )

    @staticmethod
    def _gateway_row(r: Any) -> GatewayRecord:
        return GatewayRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6]) if r[6] is not None else None)

    def gateway(self, gateway_id: str) -> GatewayRecord | None:
        row = self._db.execute(
            f"SELECT {self._GATEWAY_COLUMNS} FROM gateways WHERE gateway_id=?",  # noqa: S608 - constant columns
            (gateway_id,),
        ).fetchone()
        return self._gateway_row(row) if row else None

    def gateways(self) -> list[GatewayRecord]:
        rows = self._db.execute(f"SELECT {self._GATEWAY_COLUMNS} FROM gateways ORDER BY gateway_id").fetchall()  # noqa: S608
        return [self._gateway_row(r) for r in rows]

    # ---- ingest -------------------------------------------------------------------------

    def lane(self, gateway_id: str, lane: Lane) -> LaneRecord:
        row = self._db.execute(
            "SELECT last_seq, last_digest, last_batch_ms, newest_ts_ms FROM lanes WHERE gateway_id=? AND lane=?",
            (gateway_id, lane.value),
        ).fetchone()
        return LaneRecord(*row) if row else LaneRecord(0, GENESIS_DIGEST, None)

    def batch_digest(self, gateway_id: str, lane: Lane, seq: int) -> str | None:
        row = self._db.execute(
            "SELECT digest FROM batches WHERE gateway_id=? AND lane=? AND seq=?",
            (gateway_id, lane.value, seq),
        ).fetchone()
        return str(row[0]) if row else None

    def store_batch(
        self, header: BatchHeader, digest: str, records: Sequence[Reading] | Sequence[Event], now_ms: int
    ) -> int:
        gw, lane, seq = header.gateway_id, header.lane, header.seq
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self.lane(gw, lane)
            if current.last_seq != seq - 1:
                msg = f"{gw}/{lane.value}: expected seq {current.last_seq + 1}, got {seq}"
                raise SeqConflict(msg)  # noqa: TRY301 - rolled back below, then re-raised
            db.execute(
                "INSERT INTO batches VALUES (?,?,?,?,?,?,?)",
                (gw, lane.value, seq, digest, header.count, header.created_ms, now_ms),
            )
            newest = _newest_ts(current.newest_ts_ms, records)
            db.execute(
                "INSERT OR REPLACE INTO lanes VALUES (?,?,?,?,?,?)", (gw, lane.value, seq, digest, now_ms, newest)
            )
            if lane is Lane.TELEMETRY:
                inserted = self._insert_readings(gw, seq, [r for r in records if isinstance(r, Reading)])
            else:
                inserted = self._insert_events(gw, seq, [e for e in records if isinstance(e, Event)])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(records) - inserted

    def _insert_readings(self, gw: str, seq: int, readings: Sequence[Reading]) -> int:
        rows = [
            (
                gw,
                r.device,
                r.point,
                r.ts_ms,
                r.value,
                "b" if isinstance(r.value, bool) else None,
                r.quality.value,
                seq,
            )
            for r in readings
        ]
        inserted = self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?,?,?)", rows).rowcount
        # `>` rather than `>=`: of two readings with the same timestamp the first one stored wins,
        # in `latest` as in `readings`, so a re-sent reading never overwrites what is held.
        self._db.executemany(
            "INSERT INTO latest VALUES (?,?,?,?,?,?,?) ON CONFLICT(gateway_id, device, point) DO UPDATE SET"
            " ts_ms=excluded.ts_ms, value=excluded.value, vt=excluded.vt, quality=excluded.quality"
            " WHERE excluded.ts_ms > latest.ts_ms",
            [row[:7] for row in rows],
        )
        return inserted

    def _insert_events(self, gw: str, seq: int, events: Sequence[Event]) -> int:
        # Canonical JSON, so the same data always has the same text and the unique key sees it.
        rows = [(gw, e.device, e.kind, e.ts_ms, e.level.value, canonical_json(e.data).decode(), seq) for e in events]
        inserted = self._db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)", rows).rowcount
        # The gateway reports what it did with each command on the events lane.
        results = [
            (str(e.data.get("status", "")), e.ts_ms, json.dumps(e.data, ensure_ascii=False), gw, e.data["command_id"])
            for e in events
            if e.kind == "command.result" and isinstance(e.data.get("command_id"), int)
        ]
        self._db.executemany("UPDATE commands SET status=?, done_ms=?, result=? WHERE gateway_id=? AND id=?", results)
        return inserted

    # ---- commands (downlink) ------------------------------------------------------------

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
        cur = self._db.execute(
            "INSERT INTO commands(gateway_id, type, body, created_ms, created_by, status, expires_ms, nonce)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (gateway_id, type_, canonical_json(body).decode(), now_ms, created_by, status, expires_ms, nonce),
        )
        assert cur.lastrowid is not None
        return Command(cur.lastrowid, gateway_id, type_, body, now_ms, created_by, expires_ms, nonce)

    def confirm_command(self, gateway_id: str, command_id: int, by: str, now_ms: int) -> str | None:
        row = self._db.execute(
            "SELECT status, created_by, expires_ms FROM commands WHERE gateway_id=? AND id=?", (gateway_id, command_id)
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
        self._db.execute(
            "UPDATE commands SET status='pending', confirmed_by=? WHERE id=? AND status='awaiting_confirmation'",
            (by, command_id),
        )
        return None

    def commands_after(self, gateway_id: str, after: int, limit: int, now_ms: int) -> list[Command]:
        rows = self._db.execute(
            "SELECT id, type, body, created_ms, created_by, expires_ms, nonce FROM commands WHERE gateway_id=? AND id>?"
            " AND status IN ('pending', 'delivered') AND expires_ms > ? ORDER BY id LIMIT ?",
            (gateway_id, after, now_ms, limit),
        ).fetchall()
        self._db.executemany(
            "UPDATE commands SET status='delivered', delivered_ms=? WHERE id=? AND status='pending'",
            [(now_ms, r[0]) for r in rows],
        )
        return [Command(r[0], gateway_id, r[1], json.loads(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def commands(self, gateway_id: str, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, type, body, created_ms, created_by, status, delivered_ms, done_ms, result, expires_ms,"
            " confirmed_by FROM commands WHERE gateway_id=? ORDER BY id DESC LIMIT ?",
            (gateway_id, limit),
        ).fetchall()
        keys = (
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
        out = []
        for r in rows:
            item = dict(zip(keys, r, strict=True))
            item["body"] = json.loads(item["body"])
            item["result"] = json.loads(item["result"]) if item["result"] else None
            out.append(item)
        return out

    # ---- queries ------------------------------------------------------------------------

    @staticmethod
    def _value(value: Any, vt: str | None) -> Any:
        return bool(value) if vt == "b" else value

    def latest(self, gateway_id: str, device: str | None) -> list[dict[str, Any]]:
        sql = "SELECT device, point, ts_ms, value, vt, quality FROM latest WHERE gateway_id=?"
        args: list[Any] = [gateway_id]
        if device is not None:
            sql += " AND device=?"
            args.append(device)
        rows = self._db.execute(sql + " ORDER BY device, point", args).fetchall()
        return [
            {"device": d, "point": p, "ts_ms": ts, "value": self._value(v, vt), "quality": q}
            for d, p, ts, v, vt, q in rows
        ]

    def series(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, limit: int
    ) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT ts_ms, value, vt, quality FROM readings WHERE gateway_id=? AND device=? AND point=?"
            " AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, rowid LIMIT ?",
            (gateway_id, device, point, from_ms, to_ms, limit),
        ).fetchall()
        return [{"ts_ms": ts, "value": self._value(v, vt), "quality": q} for ts, v, vt, q in rows]

    def events(self, gateway_id: str, device: str | None, from_ms: int, to_ms: int, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT device, kind, ts_ms, level, data FROM events WHERE gateway_id=? AND ts_ms >= ? AND ts_ms < ?"
        args: list[Any] = [gateway_id, from_ms, to_ms]
        if device is not None:
            sql += " AND device=?"
            args.append(device)
        rows = self._db.execute(sql + " ORDER BY ts_ms, rowid LIMIT ?", [*args, limit]).fetchall()
        return [
            {"device": d, "kind": k, "ts_ms": ts, "level": lvl, "data": json.loads(data)}
            for d, k, ts, lvl, data in rows
        ]

    def series_buckets(
        self, gateway_id: str, device: str, point: str, from_ms: int, to_ms: int, bucket_ms: int
    ) -> list[dict[str, Any]]:
        num = "CASE WHEN typeof(value) IN ('integer', 'real') THEN value END"  # not strings
        rows = self._db.execute(
            f"SELECT (ts_ms - ?) / ? AS b, min({num}), max({num}), avg({num}), count({num}),"  # noqa: S608
            " sum(quality <> 'good') FROM readings WHERE gateway_id=? AND device=? AND point=?"
            " AND ts_ms >= ? AND ts_ms < ? GROUP BY b ORDER BY b",
            (from_ms, bucket_ms, gateway_id, device, point, from_ms, to_ms),
        ).fetchall()
        return [bucket_row(from_ms, bucket_ms, *r) for r in rows]

    def counts(self, gateway_id: str) -> dict[str, int]:
        (readings,) = self._db.execute("SELECT count(*) FROM readings WHERE gateway_id=?", (gateway_id,)).fetchone()
        (events,) = self._db.execute("SELECT count(*) FROM events WHERE gateway_id=?", (gateway_id,)).fetchone()
        return {"readings": int(readings), "events": int(events)}


def bucket_row(
    from_ms: int, bucket_ms: int, b: int, lo: Any, hi: Any, mean: Any, count: int, bad: int | None
) -> dict[str, Any]:
    """One row of ``series_buckets`` (the same shape from every implementation)."""
    return {
        "ts_ms": from_ms + int(b) * bucket_ms,
        "min": _float(lo),
        "max": _float(hi),
        "avg": _float(mean),
        "count": int(count),
        "bad": int(bad or 0),
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _newest_ts(previous: int | None, records: Sequence[Reading] | Sequence[Event]) -> int | None:
    """Never backwards: a late backlog does not make the lane's data look older than it is."""
    stamps = [r.ts_ms for r in records]
    if previous is not None:
        stamps.append(previous)
    return max(stamps, default=None)


def open_repository(url: str) -> Repository:
    """``sqlite:///path/to/file.db`` or ``postgresql://user@host:port/db`` (cloud/repository_pg.py)."""
    if url.startswith("sqlite:///"):
        return SqliteRepository(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from cloud.repository_pg import PostgresRepository  # imports this module: import it late

        return PostgresRepository(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
