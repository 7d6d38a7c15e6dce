"""Alarm state and operator requests in the edge store's SQLite file.

Two tables next to the store's: ``alarms`` (one row per alarm, the manager's latest version) and
``alarm_requests`` (actions queued by processes other than the gateway, e.g. ``gasiot edge ack``).

Transactions belong to the caller.  ``save`` and ``mark_done`` issue plain statements and refuse
to run on an autocommit connection outside a transaction, so alarm rows, request results and the
cycle's events always commit together in the store's ``BEGIN IMMEDIATE … COMMIT``.
``enqueue_request`` likewise leaves the commit to the CLI's connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, cast

from edge.alarms.model import PRIORITIES, REQUEST_KINDS, Alarm, AlarmState, Origin, Request
from edge.rules.types import Priority

REQUEST_RETENTION_MS = 7 * 24 * 3600 * 1000  # done requests are kept this long for the CLI to read

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS alarms(
    id TEXT PRIMARY KEY, device TEXT NOT NULL, rule TEXT NOT NULL, priority TEXT NOT NULL,
    message_zh TEXT NOT NULL, message_en TEXT NOT NULL, state TEXT NOT NULL,
    raised_ms INTEGER, value TEXT NOT NULL, activations INTEGER NOT NULL,
    acked_ms INTEGER, acked_by TEXT, ack_origin TEXT, cleared_ms INTEGER,
    shelved_until_ms INTEGER, shelved_by TEXT, shelved_reason TEXT,
    suppressed INTEGER NOT NULL, changed_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alarm_requests(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, alarm_id TEXT NOT NULL, "by" TEXT NOT NULL,
    until_ms INTEGER, reason TEXT NOT NULL DEFAULT '', requested_ms INTEGER NOT NULL,
    done_ms INTEGER, result TEXT, raised_ms INTEGER)""",
    "CREATE INDEX IF NOT EXISTS alarm_requests_pending ON alarm_requests(id) WHERE done_ms IS NULL",
)
ALARM_SCHEMA: str = "".join(f"{s};\n" for s in _STATEMENTS)
"""For ``executescript`` when the store opens (executescript commits first: never inside a transaction)."""

_ALARM_COLUMNS = (
    "id, device, rule, priority, message_zh, message_en, state, raised_ms, value, activations,"
    " acked_ms, acked_by, ack_origin, cleared_ms, shelved_until_ms, shelved_by, shelved_reason,"
    " suppressed, changed_ms"
)
_REQUEST_COLUMNS = 'id, kind, alarm_id, "by", requested_ms, until_ms, reason, raised_ms, done_ms, result'


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the tables if missing, statement by statement (safe inside a transaction)."""
    for statement in _STATEMENTS:
        db.execute(statement)


# ---- alarms ---------------------------------------------------------------------------------


def save(db: sqlite3.Connection, alarms: Iterable[Alarm]) -> None:
    """Write the given alarms (``AlarmManager.take_dirty()``) inside the caller's transaction."""
    rows = [_alarm_row(a) for a in alarms]
    if not rows:
        return
    _require_transaction(db, "save")
    db.executemany(
        f"INSERT OR REPLACE INTO alarms({_ALARM_COLUMNS}) VALUES ({','.join('?' * 19)})",  # noqa: S608 - fixed text
        rows,
    )


def load(db: sqlite3.Connection) -> list[Alarm]:
    """Every stored alarm, sorted by id (creates the tables on a fresh database)."""
    ensure_schema(db)
    return [_alarm(r) for r in db.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms ORDER BY id")]  # noqa: S608


def list_alarms(db: sqlite3.Connection, *, active_only: bool = True) -> list[Alarm]:
    """For the CLI: the committed alarms, standing ones only (any state but normal) unless
    ``active_only=False``; worst priority first, then oldest.  Empty if the gateway has never
    created the tables (read-only: creates nothing)."""
    if not _has_table(db, "alarms"):
        return []
    where = " WHERE state != 'normal'" if active_only else ""
    alarms = [_alarm(r) for r in db.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms{where}")]  # noqa: S608
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    return sorted(alarms, key=lambda a: (rank.get(a.priority, 4), a.raised_ms or 0, a.id))


def _alarm_row(a: Alarm) -> tuple[Any, ...]:
    return (
        a.id,
        a.device,
        a.rule,
        a.priority,
        a.message_zh,
        a.message_en,
        a.state.value,
        a.raised_ms,
        json.dumps(a.value, ensure_ascii=False),  # JSON keeps bool, int, float and str apart
        a.activations,
        a.acked_ms,
        a.acked_by,
        a.ack_origin,
        a.cleared_ms,
        a.shelved_until_ms,
        a.shelved_by,
        a.shelved_reason,
        int(a.suppressed),
        a.changed_ms,
    )


def _alarm(r: tuple[Any, ...]) -> Alarm:
    (aid, device, rule, priority, zh, en, state, raised, value, acts) = r[:10]
    (acked, acked_by, origin, cleared, until, shelved_by, shelved_reason, suppressed, changed) = r[10:]
    if priority not in PRIORITIES or origin not in (None, "edge", "cloud", "opcua"):
        raise ValueError(f"alarm {aid!r}: stored priority {priority!r} / ack origin {origin!r} unknown")
    return Alarm(
        id=aid,
        device=device,
        rule=rule,
        priority=cast(Priority, priority),
        message_zh=zh,
        message_en=en,
        state=AlarmState(state),
        raised_ms=raised,
        value=json.loads(value),
        activations=acts,
        acked_ms=acked,
        acked_by=acked_by,
        ack_origin=cast(Origin | None, origin),
        cleared_ms=cleared,
        shelved_until_ms=until,
        shelved_by=shelved_by,
        shelved_reason=shelved_reason,
        suppressed=bool(suppressed),
        changed_ms=changed,
    )


# ---- requests -------------------------------------------------------------------------------


def enqueue_request(
    db: sqlite3.Connection,
    kind: str,
    alarm_id: str,
    by: str,
    *,
    now_ms: int,
    until_ms: int | None = None,
    reason: str = "",
    raised_ms: int | None = None,
) -> int:
    """Queue an operator action for the running gateway; returns the request id.

    The caller commits (``with db:`` on a default connection; on an autocommit connection the
    insert commits by itself).  Raises ValueError for a request the gateway could never apply.
    """
    if kind not in REQUEST_KINDS:
        raise ValueError(f"request kind must be one of {sorted(REQUEST_KINDS)}, not {kind!r}")
    if not alarm_id or not by:
        raise ValueError("a request needs an alarm id and the name of who asks")
    if kind == "shelve" and (until_ms is None or not reason):
        raise ValueError("a shelve request needs until_ms and a reason")
    if not _has_table(db, "alarm_requests"):  # the gateway has not run yet
        ensure_schema(db)
    cur = db.execute(
        'INSERT INTO alarm_requests(kind, alarm_id, "by", until_ms, reason, requested_ms, raised_ms)'
        " VALUES (?,?,?,?,?,?,?)",
        (kind, alarm_id, by, until_ms, reason, now_ms, raised_ms),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def pending_requests(db: sqlite3.Connection) -> list[Request]:
    """Requests not yet done, oldest first."""
    rows = db.execute(f"SELECT {_REQUEST_COLUMNS} FROM alarm_requests WHERE done_ms IS NULL ORDER BY id")  # noqa: S608
    return [Request(*r) for r in rows]


def get_request(db: sqlite3.Connection, request_id: int) -> Request | None:
    """One request (for the CLI to wait for and print ``result``)."""
    if not _has_table(db, "alarm_requests"):
        return None
    row = db.execute(f"SELECT {_REQUEST_COLUMNS} FROM alarm_requests WHERE id=?", (request_id,)).fetchone()  # noqa: S608
    return Request(*row) if row else None


def mark_done(db: sqlite3.Connection, request_id: int, result: str, now_ms: int) -> None:
    """Record a request's result (``RequestResult.result.text``) inside the caller's transaction,
    and forget requests done more than ``REQUEST_RETENTION_MS`` ago."""
    _require_transaction(db, "mark_done")
    db.execute(
        "UPDATE alarm_requests SET done_ms=?, result=? WHERE id=? AND done_ms IS NULL", (now_ms, result, request_id)
    )
    db.execute("DELETE FROM alarm_requests WHERE done_ms < ?", (now_ms - REQUEST_RETENTION_MS,))


# ---- helpers --------------------------------------------------------------------------------


def _require_transaction(db: sqlite3.Connection, what: str) -> None:
    # On an autocommit connection each statement would commit alone, apart from the cycle's events.
    if db.isolation_level is None and not db.in_transaction:
        raise RuntimeError(f"{what}() must run inside the store's transaction (BEGIN IMMEDIATE … COMMIT)")


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
    return row is not None
