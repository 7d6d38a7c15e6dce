"""Store format 2 (ADR 0009): a format-1 store — a row per reading with its device, point and
quality as text, in an AUTOINCREMENT ``telemetry`` table — is moved to the ``readings`` table at
open with nothing lost, the batch in flight still the same bytes; and what a format-1 release
started again after a roll-back would look at is left in a state it runs with."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge.store import STORE_FORMAT, SqliteStore, StoreError
from gascore.records import Lane, Quality, Reading
from support.batches import Recorder, typed

# Store format 1's telemetry and pending tables, as the releases before format 2 created them.
FORMAT_1 = """
CREATE TABLE telemetry(
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, point TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending(
    lane TEXT PRIMARY KEY, seq INTEGER NOT NULL, last_id INTEGER NOT NULL, count INTEGER NOT NULL,
    digest TEXT NOT NULL, frame BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Every kind of value a reading holds, with every quality: (device, point, ts_ms, value, quality).
WIRE_ROWS: list[list[Any]] = [
    ["PT01", "outlet_pressure", 1000, 0.4125, "good"],
    ["PT01", "valve_open", 1000, True, "good"],
    ["PT01", "valve_open", 2000, False, "uncertain/stale"],
    ["PT01", "mode", 1000, 3, "uncertain/substituted"],
    ["GD07", "outlet_pressure", 1000, None, "bad/comm_failure"],
    ["GD07", "lel", 1000, 120.0, "bad/out_of_range"],
    ["GD07", "lel", 2000, None, "bad/sensor_fault"],
    ["GD07", "label", 1000, "燃气 ok", "bad/device_error"],
    ["PT01", "outlet_pressure", 2000, -1e300, "good"],
]


def write_format_1(path: Path, rows: list[list[Any]], *, first_id: int = 1, deleted_after: int = 0) -> None:
    """A format-1 file holding ``rows`` with ids from ``first_id``; ``deleted_after`` more rows were
    appended and acknowledged already (the AUTOINCREMENT sequence is past them)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(FORMAT_1)
    if first_id > 1:
        db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('telemetry', ?)", (first_id - 1,))
    db.executemany(
        "INSERT INTO telemetry(device, point, ts_ms, value, vt, quality) VALUES (?,?,?,?,?,?)",
        [(d, p, ts, v, "b" if isinstance(v, bool) else None, q) for d, p, ts, v, q in rows],
    )
    if deleted_after:
        (top,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name='telemetry'").fetchone()
        db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='telemetry'", (top + deleted_after,))
    db.execute("INSERT INTO counters(name, value) VALUES ('telemetry_rows', ?)", (len(rows),))
    db.close()


def test_a_fresh_store_is_format_2(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db")
    try:
        (version,) = store.db.execute("PRAGMA user_version").fetchone()
        tables = {name for (name,) in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert version == STORE_FORMAT == 2
        assert {"readings", "series"} <= tables and "telemetry" not in tables
    finally:
        store.close()


def test_a_format_1_store_is_moved_with_every_value_type_and_quality(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    write_format_1(path, WIRE_ROWS, first_id=41, deleted_after=7)
    store = SqliteStore(path)
    try:
        assert typed(store.read_all(Lane.TELEMETRY)) == typed(WIRE_ROWS)
        assert store.counters()["readings_rows"] == store.depth(Lane.TELEMETRY) == len(WIRE_ROWS)
        assert store.integrity_problem() is None
        ids = [i for (i,) in store.db.execute("SELECT id FROM readings ORDER BY id")]
        assert ids == list(range(41, 41 + len(WIRE_ROWS))), "ids kept"
        # The next reading takes an id after format 1's sequence: ids are never used twice.
        store.append([Reading("PT01", "outlet_pressure", 3000, 0.5, Quality.GOOD)])
        (newest,) = store.db.execute("SELECT max(id) FROM readings").fetchone()
        assert newest == 41 + len(WIRE_ROWS) + 7
        build = Recorder()
        batch = store.form_batch(Lane.TELEMETRY, 100, build)
        assert batch is not None and batch.count == len(WIRE_ROWS) + 1
        assert typed(build.batches[-1][3]) == typed([*WIRE_ROWS, ["PT01", "outlet_pressure", 3000, 0.5, "good"]])
        (version,) = store.db.execute("PRAGMA user_version").fetchone()
        assert version == 2
    finally:
        store.close()


def test_the_batch_in_flight_survives_the_move_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    write_format_1(path, WIRE_ROWS)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT INTO pending(lane, seq, last_id, count, digest, frame) VALUES ('telemetry', 17, 4, 4, ?, ?)",
        ("ab" * 32, b"\x00frame bytes as signed\xff"),
    )
    db.close()
    store = SqliteStore(path)
    try:
        pending = store.pending(Lane.TELEMETRY)
        assert pending is not None
        assert (pending.seq, pending.last_id, pending.count) == (17, 4, 4)
        assert (pending.digest, pending.frame) == ("ab" * 32, b"\x00frame bytes as signed\xff")
        assert store.form_batch(Lane.TELEMETRY, 100, Recorder()) == pending, "resent as it is, not formed again"
        store.ack(Lane.TELEMETRY, 17)
        assert typed(store.read_all(Lane.TELEMETRY)) == typed(WIRE_ROWS[4:])
        assert store.counters()["readings_rows"] == len(WIRE_ROWS) - 4
    finally:
        store.close()


def test_what_a_format_1_release_finds_after_a_roll_back(tmp_path: Path) -> None:
    """A format-1 release checks ``telemetry_rows`` against its ``telemetry`` table and its batch
    in flight (pending row 'telemetry') against the rows it covers, and sets a file aside when
    they disagree.  After the move it finds neither, creates its table again and runs; the
    readings buffered in format 2 wait in ``readings`` for the next upgrade."""
    path = tmp_path / "gw.db"
    write_format_1(path, WIRE_ROWS)
    store = SqliteStore(path)
    store.form_batch(Lane.TELEMETRY, 3, Recorder())
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "telemetry" not in tables
        assert db.execute("SELECT value FROM counters WHERE name='telemetry_rows'").fetchone() is None
        assert db.execute("SELECT lane FROM pending").fetchall() == [("readings",)]
    finally:
        db.close()


def test_a_second_upgrade_puts_the_format_1_rows_after_the_format_2_ones(tmp_path: Path) -> None:
    """Upgrade, roll back (a format-1 release buffers more and has a batch in flight), upgrade
    again: the older readings stay first, the format-1 rows follow, nothing is lost, and the
    format-1 batch in flight is formed again (the cloud's answer to its seq rewinds the lane)."""
    path = tmp_path / "gw.db"
    write_format_1(path, WIRE_ROWS[:4])
    store = SqliteStore(path)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)  # what the format-1 release does after the roll-back
    db.executescript(FORMAT_1.replace("CREATE TABLE telemetry", "CREATE TABLE IF NOT EXISTS telemetry"))
    db.executemany(
        "INSERT INTO telemetry(device, point, ts_ms, value, vt, quality) VALUES (?,?,?,?,?,?)",
        [(d, p, ts, v, "b" if isinstance(v, bool) else None, q) for d, p, ts, v, q in WIRE_ROWS[4:]],
    )
    db.execute("INSERT INTO pending(lane, seq, last_id, count, digest, frame) VALUES ('telemetry', 3, 2, 2, 'x', '')")
    db.close()
    store = SqliteStore(path)
    try:
        assert typed(store.read_all(Lane.TELEMETRY)) == typed(WIRE_ROWS)
        assert store.pending(Lane.TELEMETRY) is None
        assert store.counters()["readings_rows"] == len(WIRE_ROWS)
        assert store.integrity_problem() is None
        build = Recorder()
        store.form_batch(Lane.TELEMETRY, 100, build)
        assert typed(build.batches[-1][3]) == typed(WIRE_ROWS)
    finally:
        store.close()


def test_a_quality_format_1_never_wrote_stops_the_move_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    write_format_1(path, [["PT01", "p", 1000, 1.0, "good"], ["PT01", "p", 2000, 1.0, "so-so"]])
    with pytest.raises(StoreError, match=r"gw\.db: cannot move the buffered readings to store format 2"):
        SqliteStore(path)
    db = sqlite3.connect(path)
    try:
        (left,) = db.execute("SELECT count(*) FROM telemetry").fetchone()
        assert left == 2, "nothing moved, nothing lost"
    finally:
        db.close()
