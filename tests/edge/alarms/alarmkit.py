"""Shared helpers for the alarm tests: condition changes and a store-like transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from edge.alarms import AlarmManager, RequestResult, persist
from edge.rules.types import ConditionChange, Message, Priority
from gascore.records import Event, Value

DEVICE = "rtu1"


def change(
    rule: str = "hi",
    active: bool = True,
    ts: int = 1_000,
    *,
    device: str = DEVICE,
    priority: Priority = "high",
    value: Value = 12.5,
) -> ConditionChange:
    return ConditionChange(
        condition_id=f"{device}.{rule}",
        device=device,
        rule=rule,
        active=active,
        ts_ms=ts,
        priority=priority,
        message=Message(zh=f"{rule} 报警", en=f"{rule} alarm"),
        value=value,
    )


def open_store_db(path: Path) -> sqlite3.Connection:
    """A connection configured like edge.store.SqliteStore's (autocommit, WAL) with both schemas."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,"
        " kind TEXT NOT NULL, ts_ms INTEGER NOT NULL, level TEXT NOT NULL, data TEXT NOT NULL);"
    )
    db.executescript(persist.ALARM_SCHEMA)
    return db


def commit_cycle(
    db: sqlite3.Connection,
    manager: AlarmManager,
    events: Sequence[Event],
    results: Sequence[RequestResult] = (),
    now_ms: int = 0,
) -> None:
    """What the store does once per cycle: events, dirty alarms and request results in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO events(device, kind, ts_ms, level, data) VALUES (?,?,?,?,?)",
        [(e.device, e.kind, e.ts_ms, e.level.value, json.dumps(e.data, ensure_ascii=False)) for e in events],
    )
    persist.save(db, manager.take_dirty())
    for r in results:
        persist.mark_done(db, r.request.id, r.result.text, now_ms)
    db.execute("COMMIT")


def stored_events(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(kind, alarm_id, state) of every stored event, in order."""
    rows = db.execute("SELECT kind, data FROM events ORDER BY id").fetchall()
    return [(k, json.loads(d)["alarm_id"], json.loads(d)["state"]) for k, d in rows]
