"""Alarm state and operator requests in a real SQLite file, committed with the cycle's events."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC
from pathlib import Path

import pytest
from alarmkit import DEVICE, change, commit_cycle, open_store_db, stored_events
from rich.console import Console

from edge.alarms import Alarm, AlarmManager, AlarmState, Outcome, format_alarms, persist
from edge.store import SqliteStore
from gascore.records import Lane

AID = f"{DEVICE}.hi"


def test_restart_mid_alarm_keeps_state_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    db = open_store_db(path)
    m = AlarmManager(persist.load(db))
    events = m.on_changes([change(ts=1_000, value=True), change("lo", ts=1_000, value=3), change("x", ts=1_000)])
    events += [e for e in [m.ack(f"{DEVICE}.lo", "li", 1_500).event] if e]
    events += [e for e in [m.shelve(f"{DEVICE}.x", 60_000, "li", "calibration", 1_600).event] if e]
    commit_cycle(db, m, events)
    assert m.take_dirty() == []
    before = m.alarms()
    db.close()

    # the gateway restarts: a new manager from the same file
    db = open_store_db(path)
    m2 = AlarmManager(persist.load(db))
    assert m2.alarms() == before
    hi = m2.get(AID)
    assert hi is not None and hi.value is True and hi.state is AlarmState.ACTIVE_UNACKED  # bool stays bool
    # the restarted manager goes on from where the old one stopped
    assert m2.on_change(change(ts=2_000)) == []
    commit_cycle(db, m2, m2.on_change(change(active=False, ts=2_100)) + m2.tick(60_000))
    assert stored_events(db)[-2:] == [
        ("alarm.cleared", AID, "cleared_unacked"),
        ("alarm.unshelved", f"{DEVICE}.x", "active_unacked"),
    ]
    db.close()

    db = open_store_db(path)
    m3 = AlarmManager(persist.load(db))
    assert m3.ack(AID, "wang", 3_000).ok
    assert m3.ack(f"{DEVICE}.lo", "wang", 3_000).outcome is Outcome.ALREADY_ACKED
    x = m3.get(f"{DEVICE}.x")
    assert x is not None and not x.shelved
    db.close()


def test_suppression_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    db = open_store_db(path)
    m = AlarmManager()
    m.set_device_online(DEVICE, False, 900)
    commit_cycle(db, m, m.on_change(change(ts=1_000)))
    db.close()

    db = open_store_db(path)
    m2 = AlarmManager(persist.load(db))  # knows no offline device, but the alarm is still suppressed
    (event,) = m2.set_device_online(DEVICE, True, 5_000)
    assert (event.kind, event.data["cause"]) == ("alarm.raised", "device_recovered")
    db.close()


def test_save_and_mark_done_refuse_to_run_outside_a_transaction(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    dirty = m.take_dirty()
    with pytest.raises(RuntimeError, match="transaction"):
        persist.save(db, dirty)
    with pytest.raises(RuntimeError, match="transaction"):
        persist.mark_done(db, 1, "ok: x", 1_000)
    persist.save(db, [])  # nothing to write: no transaction needed
    db.close()


def test_a_rolled_back_cycle_is_saved_with_the_next_one(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    dirty = m.take_dirty()
    db.execute("BEGIN IMMEDIATE")
    persist.save(db, dirty)
    db.execute("ROLLBACK")
    assert persist.load(db) == []
    m.restore_dirty(dirty)
    commit_cycle(db, m, [])
    assert persist.load(db) == m.alarms()
    db.close()


def test_alarm_tables_live_in_the_edge_store_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    store = SqliteStore(path)
    db = open_store_db(path)  # a second connection, as the gateway's alarm wiring would be
    m = AlarmManager(persist.load(db))
    events = m.on_change(change(ts=1_000))
    commit_cycle(db, m, events)
    assert [row[1] for row in store.read_all(Lane.EVENTS)] == ["alarm.raised"]
    store.close()
    db.close()


def test_requests_from_another_connection_are_applied_and_marked_done(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    db = open_store_db(path)
    m = AlarmManager()
    commit_cycle(db, m, m.on_changes([change(ts=1_000), change("lo", ts=1_000)]))

    # `gasiot edge ack` / `gasiot edge shelve` in their own process: default isolation, own transaction
    cli = sqlite3.connect(path)
    assert [a.id for a in persist.list_alarms(cli)] == [AID, f"{DEVICE}.lo"]
    with cli:
        ack_id = persist.enqueue_request(cli, "ack", AID, "li", now_ms=1_100, raised_ms=1_000)
        shelve_id = persist.enqueue_request(
            cli, "shelve", f"{DEVICE}.lo", "li", now_ms=1_100, until_ms=9_000, reason="work"
        )
        missing_id = persist.enqueue_request(cli, "ack", "nope.hi", "li", now_ms=1_100)
    request = persist.get_request(cli, ack_id)
    assert request is not None and request.done_ms is None

    pending = persist.pending_requests(db)
    assert [r.id for r in pending] == [ack_id, shelve_id, missing_id]
    events, results = m.apply_requests(pending, 1_200)
    assert [e.kind for e in events] == ["alarm.acked", "alarm.shelved"]
    assert [r.result.outcome for r in results] == [Outcome.OK, Outcome.OK, Outcome.NOT_FOUND]
    commit_cycle(db, m, events, results, now_ms=1_200)

    assert persist.pending_requests(db) == []
    done = [persist.get_request(cli, i) for i in (ack_id, shelve_id, missing_id)]
    assert [(r.done_ms, (r.result or "").split(":")[0]) for r in done if r] == [
        (1_200, "ok"),
        (1_200, "ok"),
        (1_200, "not_found"),
    ]
    hi = next(a for a in persist.list_alarms(cli) if a.id == AID)
    assert (hi.state, hi.acked_by, hi.ack_origin) == (AlarmState.ACTIVE_ACKED, "li", "edge")
    cli.close()
    db.close()


def test_requests_that_cannot_apply(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    m = AlarmManager()
    commit_cycle(db, m, m.on_change(change(ts=1_000)))
    with pytest.raises(ValueError, match="kind"):
        persist.enqueue_request(db, "delete", AID, "li", now_ms=1)
    with pytest.raises(ValueError, match="until_ms"):
        persist.enqueue_request(db, "shelve", AID, "li", now_ms=1)
    old = persist.enqueue_request(db, "ack", AID, "li", now_ms=1_000)
    stale = persist.enqueue_request(db, "ack", AID, "li", now_ms=400_000, raised_ms=500)
    events, results = m.apply_requests(persist.pending_requests(db), 400_100)
    assert events == []
    assert [(r.request.id, r.result.outcome) for r in results] == [(old, Outcome.EXPIRED), (stale, Outcome.STALE)]
    db.close()


def test_done_requests_are_forgotten_after_a_week(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    first = persist.enqueue_request(db, "unshelve", "a.b", "li", now_ms=0)
    second = persist.enqueue_request(db, "unshelve", "a.b", "li", now_ms=0)
    db.execute("BEGIN IMMEDIATE")
    persist.mark_done(db, first, "not_found: x", 10)
    db.execute("COMMIT")
    db.execute("BEGIN IMMEDIATE")
    persist.mark_done(db, second, "not_found: x", 10 + persist.REQUEST_RETENTION_MS + 1)
    db.execute("COMMIT")
    assert persist.get_request(db, first) is None
    assert persist.get_request(db, second) is not None
    db.close()


def test_cli_reads_on_a_database_the_gateway_never_opened(tmp_path: Path) -> None:
    cli = sqlite3.connect(tmp_path / "fresh.db")
    assert persist.list_alarms(cli) == []
    assert persist.get_request(cli, 1) is None
    assert cli.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)  # reading creates nothing
    cli.close()


def test_list_alarms_and_the_table(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    m = AlarmManager()
    events = m.on_changes(
        [
            change("lo", ts=1_000, priority="low"),
            change("hihi", ts=2_000, priority="critical"),
            change("hi", ts=1_500, priority="high"),
            change("door", ts=1_000, priority="medium"),
        ]
    )
    events += m.on_change(change("door", active=False, ts=1_100, priority="medium"))
    m.ack(f"{DEVICE}.door", "li", 1_200)  # door: back to normal
    m.ack(f"{DEVICE}.hi", "张工", 1_700)
    m.shelve(f"{DEVICE}.lo", 3_600_000, "li", "calibration", 1_800)
    commit_cycle(db, m, events)

    standing = persist.list_alarms(db)
    assert [a.id for a in standing] == [f"{DEVICE}.hihi", f"{DEVICE}.hi", f"{DEVICE}.lo"]
    assert len(persist.list_alarms(db, active_only=False)) == 4

    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(format_alarms(standing, tz=UTC))
    text = out.getvalue()
    for column in ("id", "device", "priority", "state", "since", "message", "acked by"):
        assert column in text
    assert "active_acked" in text and "张工 (edge)" in text
    assert "1970-01-01 00:00:01" in text  # hi's activation at 1 500 ms
    assert "shelved until 1970-01-01 01:00:00 by li" in text
    assert "hihi 报警" in text and "hihi alarm" in text
    db.close()


def test_values_of_every_type_round_trip(tmp_path: Path) -> None:
    db = open_store_db(tmp_path / "edge.db")
    alarms = [
        Alarm(f"d.{i}", "d", str(i), "low", "z", "e", AlarmState.ACTIVE_UNACKED, 1, v, 1)
        for i, v in enumerate([None, True, False, 0, 7, 1.5, -0.0, "开", 2**62])
    ]
    db.execute("BEGIN")
    persist.save(db, alarms)
    db.execute("COMMIT")
    loaded = persist.load(db)
    assert loaded == alarms
    assert [type(a.value) for a in loaded] == [type(a.value) for a in alarms]
    db.close()
