"""The edge store on a real SQLite file: transactions, outbox ranges, ack, rewind, disk bound."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from edge.store import GATEWAY_DEVICE, SqliteStore, StoreError
from gascore.contract import GENESIS_DIGEST
from gascore.records import COMM_FAILURE, Event, EventLevel, Lane, Reading


def reading(i: int, value: Any = None) -> Reading:
    return Reading("dev", "p", 1_000 + i, float(i) if value is None else value)


class Builder:
    """Records what it was asked to build, returns a recognisable frame."""

    def __init__(self) -> None:
        self.calls: list[tuple[Lane, int, str, list[list[Any]]]] = []

    def __call__(self, lane: Lane, seq: int, prev: str, rows: list[list[Any]]) -> tuple[bytes, str]:
        self.calls.append((lane, seq, prev, rows))
        return f"frame-{lane.value}-{seq}".encode(), f"{seq:064x}"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "gw.db", max_telemetry_rows=1000)


def test_batches_are_ranges_acked_in_order(store: SqliteStore) -> None:
    store.append([reading(i) for i in range(25)], [Event("dev", "device_online", 1, EventLevel.INFO)])
    build = Builder()
    b1 = store.form_batch(Lane.TELEMETRY, 10, build)
    assert b1 is not None and (b1.seq, b1.count) == (1, 10)
    assert build.calls[0][2] == GENESIS_DIGEST
    assert [r[3] for r in build.calls[0][3]] == [float(i) for i in range(10)]
    # forming again returns the same in-flight batch, not a new one
    assert store.form_batch(Lane.TELEMETRY, 10, build) == b1
    assert len(build.calls) == 1
    store.ack(Lane.TELEMETRY, 1)
    b2 = store.form_batch(Lane.TELEMETRY, 10, build)
    assert b2 is not None and b2.seq == 2 and build.calls[1][2] == b1.digest
    assert [r[3] for r in build.calls[1][3]] == [float(i) for i in range(10, 20)]
    assert store.buffered(Lane.TELEMETRY) == 15
    ev = store.form_batch(Lane.EVENTS, 10, build)
    assert ev is not None and ev.seq == 1 and build.calls[2][3][0][1] == "device_online"


def test_ack_of_a_batch_that_is_not_pending_is_an_error(store: SqliteStore) -> None:
    store.append([reading(0)])
    with pytest.raises(StoreError):
        store.ack(Lane.TELEMETRY, 1)
    store.form_batch(Lane.TELEMETRY, 10, Builder())
    with pytest.raises(StoreError):
        store.ack(Lane.TELEMETRY, 2)


def test_pending_batch_survives_reopen_byte_for_byte(tmp_path: Path) -> None:
    s1 = SqliteStore(tmp_path / "gw.db")
    s1.append([reading(i) for i in range(5)])
    b = s1.form_batch(Lane.TELEMETRY, 100, Builder())
    s1.close()  # as after a crash: nothing else written
    s2 = SqliteStore(tmp_path / "gw.db")
    build = Builder()
    assert s2.form_batch(Lane.TELEMETRY, 100, build) == b
    assert build.calls == []
    s2.ack(Lane.TELEMETRY, 1)
    assert s2.lane_state(Lane.TELEMETRY).next_seq == 2
    assert s2.buffered(Lane.TELEMETRY) == 0


def test_values_keep_their_types_and_quality(store: SqliteStore) -> None:
    store.append([reading(0, True), reading(1, 7), reading(2, 2.5), Reading("dev", "p", 5, None, COMM_FAILURE)])
    build = Builder()
    store.form_batch(Lane.TELEMETRY, 10, build)
    rows = build.calls[0][3]
    assert [r[3] for r in rows] == [True, 7, 2.5, None]
    assert type(rows[0][3]) is bool and type(rows[1][3]) is int
    assert rows[3][4] == "bad/comm_failure"


def test_disk_bound_drops_oldest_unsent_telemetry_never_events_and_reports_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", max_telemetry_rows=100)
    store.append([reading(i) for i in range(60)])
    in_flight = store.form_batch(Lane.TELEMETRY, 20, Builder())  # rows 0..19 in flight: kept
    assert in_flight is not None
    events = [Event("dev", "tamper", 1, EventLevel.MAJOR) for _ in range(500)]
    store.append([reading(i) for i in range(60, 130)], events)
    # over the bound (100): dropped down to the low-water mark (90), oldest unsent first
    assert store.buffered(Lane.TELEMETRY) == 90
    c = store.counters()
    assert c["telemetry_dropped_total"] == 40 and c["telemetry_appended_total"] == 130
    store.ack(Lane.TELEMETRY, 1)
    build = Builder()
    store.form_batch(Lane.TELEMETRY, 1000, build)
    values = [r[3] for r in build.calls[0][3]]
    assert values == [float(i) for i in range(60, 130)]  # 20..59 dropped, newest kept
    rows = store.read_all(Lane.EVENTS)
    assert sum(1 for r in rows if r[1] == "tamper") == 500
    drops = [r for r in rows if r[1] == "store.telemetry_dropped"]
    assert len(drops) == 1 and drops[0][0] == GATEWAY_DEVICE
    assert drops[0][4]["count"] == 40 and drops[0][4]["first_ts_ms"] == 1020 and drops[0][4]["last_ts_ms"] == 1059
    # below the low-water mark again: the next cycles drop nothing and log nothing
    store.append([reading(i) for i in range(130, 135)])
    assert store.counters()["telemetry_dropped_total"] == 40


def test_counters_survive_reopen(tmp_path: Path) -> None:
    s1 = SqliteStore(tmp_path / "gw.db")
    s1.append([reading(i) for i in range(7)])
    s1.close()
    s2 = SqliteStore(tmp_path / "gw.db")
    assert s2.counters()["telemetry_appended_total"] == 7
    assert s2.counters()["readings_rows"] == 7


def test_rewind_rebatches_unacked_rows_under_the_clouds_seq(store: SqliteStore) -> None:
    store.append([reading(i) for i in range(5)])
    store.form_batch(Lane.TELEMETRY, 10, Builder())
    store.rewind(Lane.TELEMETRY, 7, "ab" * 32, "gap", 99)
    build = Builder()
    b = store.form_batch(Lane.TELEMETRY, 10, build)
    assert b is not None and b.seq == 7 and build.calls[0][2] == "ab" * 32 and b.count == 5
    assert any(r[1] == "sync.rewound" for r in store.read_all(Lane.EVENTS))


def test_a_failed_append_leaves_nothing_behind(store: SqliteStore) -> None:
    store.append([reading(0)])
    bad = Reading("dev", "p", 1, object())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="type"):
        store.append([reading(1), bad])
    assert store.buffered(Lane.TELEMETRY) == 1
    assert store.counters()["telemetry_appended_total"] == 1


def test_full_disk_drops_oldest_telemetry_and_keeps_going(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", max_telemetry_rows=10**9)
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages + 40}")  # a tiny disk
    for cycle in range(400):
        store.append([Reading("dev", f"p{i}", cycle * 1000 + i, float(i)) for i in range(20)])
    c = store.counters()
    assert c["telemetry_appended_total"] == 400 * 20
    assert c["telemetry_dropped_total"] > 0
    assert store.buffered(Lane.TELEMETRY) == c["telemetry_appended_total"] - c["telemetry_dropped_total"]
    drops = [e for e in store.read_all(Lane.EVENTS) if e[1] == "store.telemetry_dropped"]
    assert drops and all(e[4]["reason"] == "disk_full" for e in drops)
    assert sum(e[4]["count"] for e in drops) == c["telemetry_dropped_total"]


def test_a_batch_of_large_events_stays_under_the_byte_limit(store: SqliteStore) -> None:
    from edge.store import MAX_BATCH_RAW_BYTES

    big = {"text": "x" * 15_000}
    store.append([], [Event("dev", "audit", i, EventLevel.INFO, big) for i in range(400)])
    build = Builder()
    batch = store.form_batch(Lane.EVENTS, 1000, build)
    assert batch is not None and 0 < batch.count < 400
    assert batch.count * 15_000 <= MAX_BATCH_RAW_BYTES


def test_depth_oldest_and_last_ack_for_the_health_surface(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", max_telemetry_rows=100)
    assert store.depth(Lane.TELEMETRY) == store.depth(Lane.EVENTS) == 0
    assert store.oldest_unsent_ms(Lane.EVENTS) is None and store.last_acks() == {}
    store.append([reading(i) for i in range(30)], [Event("dev", "e", 5 + i, EventLevel.INFO) for i in range(12)])
    store.form_batch(Lane.EVENTS, 5, Builder())
    store.ack(Lane.EVENTS, 1, now_ms=77_000)
    store.form_batch(Lane.TELEMETRY, 10, Builder())
    store.ack(Lane.TELEMETRY, 1)  # without a time: acknowledged, but no time recorded
    store.form_batch(Lane.TELEMETRY, 10, Builder())  # in flight while the bound drops rows behind it
    store.append([reading(1_000 + i) for i in range(100)])
    assert store.counters()["telemetry_dropped_total"] > 0
    for lane in Lane:  # exact without counting: telemetry has a gap now, events were acked from the front
        assert store.depth(lane) == store.buffered(lane)
    assert store.oldest_unsent_ms(Lane.EVENTS) == 10 and store.oldest_unsent_ms(Lane.TELEMETRY) == 1_010
    store.close()
    again = SqliteStore(tmp_path / "gw.db", max_telemetry_rows=100)
    assert again.last_acks() == {Lane.EVENTS: 77_000}
    assert again.depth(Lane.TELEMETRY) == again.buffered(Lane.TELEMETRY)
    again.close()


def test_a_damaged_database_is_set_aside_not_deleted_and_a_fresh_store_starts(tmp_path: Path) -> None:
    from edge.store import SqliteStore
    from gascore.records import Lane, Reading

    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    store.append([Reading("d", "p", i, float(i)) for i in range(100)])
    store.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the header and first page overwritten: a torn write
    path.write_bytes(bytes(data))
    fresh = SqliteStore(path)
    try:
        assert fresh.set_aside is not None and fresh.set_aside.exists()
        assert fresh.set_aside.read_bytes() == bytes(data)  # kept exactly as found
        assert fresh.buffered(Lane.TELEMETRY) == 0
        (event,) = [e for e in fresh.read_all(Lane.EVENTS) if e[1] == "store.database_set_aside"]
        assert event[3] == "critical" and event[4]["file"] == fresh.set_aside.name
        fresh.append([Reading("d", "p", 1, 1.0)])  # and it works
    finally:
        fresh.close()
    assert SqliteStore(path).set_aside is None  # the fresh store opens cleanly next time


# ---- a real small filesystem filling up (tmpfs; root) -----------------------------------------


def cycle(n: int, points: int = 30) -> list[Reading]:
    return [Reading("dev", f"p{i}", n * 1000 + i, float(n)) for i in range(points)]


def drop_events(store: SqliteStore) -> list[dict[str, Any]]:
    return [e[4] for e in store.read_all(Lane.EVENTS) if e[1] == "store.telemetry_dropped"]


def test_a_full_filesystem_drops_the_oldest_telemetry_and_stores_every_cycle(tmp_path: Path) -> None:
    from support.tmpfs import free_bytes, small_filesystem

    with small_filesystem(tmp_path / "disk", "2m") as disk:
        store = SqliteStore(disk / "gateway.db", max_telemetry_rows=10**9)  # the bound is never reached
        try:
            assert store.reserve_path.stat().st_size == store.reserve_bytes > 0
            for n in range(3000):  # 90,000 readings: several times what 2 MB holds
                store.append(cycle(n))
            c = store.counters()
            assert c["telemetry_appended_total"] == 90_000
            assert c["telemetry_dropped_total"] > 20_000  # the filesystem, not the bound, decided
            assert store.buffered(Lane.TELEMETRY) == c["telemetry_appended_total"] - c["telemetry_dropped_total"]
            drops = drop_events(store)
            assert drops and all(d["reason"] == "disk_full" for d in drops)
            assert sum(d["count"] for d in drops) == c["telemetry_dropped_total"]
            # each drop names its range: consecutive, oldest first, never overlapping
            assert drops[0]["first_id"] == 1
            for before, after in itertools.pairwise(drops):
                assert after["first_id"] == before["last_id"] + 1
                assert after["first_ts_ms"] > before["last_ts_ms"]
            # what is left is the newest, in order, right after the last dropped row
            stamps = [r[2] for r in store.read_all(Lane.TELEMETRY)]
            assert stamps == sorted(stamps) and stamps[-1] == 2999 * 1000 + 29
            assert stamps[0] > drops[-1]["last_ts_ms"]
            # the WAL stayed within its room and the reserve was never needed
            wal = disk / "gateway.db-wal"
            assert wal.stat().st_size <= store.wal_max_bytes
            assert store.reserve_path.exists()
            assert free_bytes(disk) > 0
        finally:
            store.close()


def test_a_runaway_log_filling_the_filesystem_releases_the_reserve_and_nothing_is_lost(tmp_path: Path) -> None:
    from support.tmpfs import fill, small_filesystem

    with small_filesystem(tmp_path / "disk", "2m") as disk:
        store = SqliteStore(disk / "gateway.db", max_telemetry_rows=10**9)
        try:
            for n in range(200):
                store.append(cycle(n))
            fill(disk / "runaway.log")  # another program takes every free byte
            for n in range(200, 2000):
                store.append(cycle(n))  # never raises
            assert not store.reserve_path.exists()  # given back to let the store go on
            c = store.counters()
            assert c["telemetry_appended_total"] == 2000 * 30
            assert store.buffered(Lane.TELEMETRY) == c["telemetry_appended_total"] - c["telemetry_dropped_total"]
            assert sum(d["count"] for d in drop_events(store)) == c["telemetry_dropped_total"] > 0
            assert c.get("events_lost_total", 0) == 0
            # the log is removed: the store takes its reserve back (it looks again about once a second)
            (disk / "runaway.log").unlink()
            import time

            deadline = time.monotonic() + 10
            n = 2000
            while not store.reserve_path.exists() and time.monotonic() < deadline:
                store.append(cycle(n))
                n += 1
            assert store.reserve_path.exists()
        finally:
            store.close()


def test_cycles_that_find_no_room_at_all_are_counted_and_reported_once_room_returns(tmp_path: Path) -> None:
    from edge.store import StoreFull
    from support.tmpfs import fill, small_filesystem

    with small_filesystem(tmp_path / "disk", "2m") as disk:
        store = SqliteStore(disk / "gateway.db", max_telemetry_rows=10**9)
        try:
            store.append(cycle(0))
            refused = 0
            for n in range(1, 60):  # the log grabs whatever the store frees, every time
                fill(disk / "runaway.log")
                try:
                    store.append(cycle(n, points=300), [Event("dev", "tamper", n, EventLevel.MAJOR)])
                except StoreFull:
                    refused += 1
                    if refused == 3:
                        break
            assert refused == 3
            (disk / "runaway.log").unlink()
            store.append(cycle(100))
            c = store.counters()
            assert store.buffered(Lane.TELEMETRY) == c["telemetry_appended_total"] - c["telemetry_dropped_total"]
            (lost,) = [d for d in drop_events(store) if d.get("stage") == "not_stored"]
            assert lost["count"] == 3 * 300 and lost["events_lost"] == 3 and lost["reason"] == "disk_full"
            assert c["events_lost_total"] == 3
        finally:
            store.close()


def test_a_full_disk_at_open_is_not_damage(tmp_path: Path) -> None:
    """Before: any sqlite3.DatabaseError at open (SQLITE_FULL and 'database is locked' are
    ones) moved a good database aside as 'damaged'."""
    import sqlite3

    from support.tmpfs import fill, small_filesystem

    with small_filesystem(tmp_path / "disk", "2m") as disk:
        path = disk / "gateway.db"
        store = SqliteStore(path)
        store.append(cycle(0))
        store.close()
        with sqlite3.connect(path) as db:  # a database from an older release: one table to create at open
            db.execute("DROP TABLE quarantine")
        db.close()
        fill(disk / "runaway.log")
        again = SqliteStore(path)  # the reserve makes room to open
        try:
            assert again.set_aside is None and again.buffered(Lane.TELEMETRY) == 30
        finally:
            again.close()
        assert list(disk.glob("*.corrupt-*")) == []


# ---- damage found while running ---------------------------------------------------------------


def damage_pages(path: Path, first: int, last: int) -> None:
    """Overwrite pages ``first``..``last`` (1-based, 4 KiB) of the database file in place."""
    with path.open("r+b") as f:
        for page in range(first, last + 1):
            f.seek((page - 1) * 4096)
            f.write(bytes(range(256)) * 16)


def test_damage_found_while_running_sets_the_file_aside_and_the_store_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = SqliteStore(path, max_telemetry_rows=10**9)
    store.db.execute("PRAGMA cache_size=16")  # a page cache far smaller than the file, as on a big store
    for n in range(600):
        store.append(cycle(n), [Event("dev", "e", n, EventLevel.INFO)] if n % 100 == 0 else [])
    b = store.form_batch(Lane.EVENTS, 2, Builder())
    assert b is not None
    store.ack(Lane.EVENTS, b.seq)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = path.stat().st_size // 4096
    damage_pages(path, pages // 3, 2 * pages // 3)
    store.append(cycle(600))  # may or may not touch a damaged page: kept either way
    build = Builder()
    store.form_batch(Lane.TELEMETRY, 10**6, build)  # reads the oldest rows: damaged pages
    assert store.set_aside is not None and store.set_aside.exists()  # kept, never deleted
    assert store.set_aside.with_name(store.set_aside.name + "-wal").exists() or store.set_aside.stat().st_size > 0
    (event,) = [e for e in store.read_all(Lane.EVENTS) if e[1] == "store.database_set_aside"]
    assert event[3] == "critical" and event[4]["found"] == "while running"
    assert event[4]["unsent_events"] == 4  # 6 appended, 2 acknowledged
    assert event[4]["unsent_telemetry"] in (600 * 30, 601 * 30)
    c = store.counters()
    assert c["telemetry_set_aside_total"] == event[4]["unsent_telemetry"]
    assert c["telemetry_appended_total"] == 601 * 30  # the totals go on
    # the fresh store works: this cycle and the next are in it, the lanes start again
    store.append(cycle(601))
    assert store.buffered(Lane.TELEMETRY) == c["telemetry_appended_total"] + 30 - c["telemetry_set_aside_total"]
    assert store.lane_state(Lane.TELEMETRY).next_seq == 1
    store.close()
    assert SqliteStore(path).set_aside is None


def test_the_integrity_check_finds_damage_the_page_cache_hides(tmp_path: Path) -> None:
    from edge.store import IntegrityCheckFailed

    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    for n in range(300):
        store.append(cycle(n))
    assert store.integrity_problem() is None
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = path.stat().st_size // 4096
    damage_pages(path, pages // 3, 2 * pages // 3)
    store.append(cycle(300))  # the writer's cache still holds good copies: nothing noticed
    assert store.set_aside is None
    problem = store.integrity_problem()
    assert problem is not None
    assert store.heal(IntegrityCheckFailed(problem))
    assert store.set_aside is not None and store.set_aside.exists()
    assert store.buffered(Lane.TELEMETRY) == 0 and store.integrity_problem() is None
    store.close()


def test_inspecting_a_damaged_store_leaves_it_where_it_is(tmp_path: Path) -> None:
    from edge.store import StoreDamaged

    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    store.append(cycle(0))
    store.close()
    damage_pages(path, 1, 1)
    with pytest.raises(StoreDamaged):
        SqliteStore(path, inspect=True)
    assert path.exists() and list(tmp_path.glob("*.corrupt-*")) == []


def test_damage_twice_keeps_both_files_and_counts_both(tmp_path: Path) -> None:
    from edge.store import IntegrityCheckFailed

    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    try:
        for round_ in range(2):
            for n in range(10):
                store.append(cycle(100 * round_ + n), [Event("dev", "e", n, EventLevel.INFO)])
            assert store.heal(IntegrityCheckFailed(f"found in round {round_}"))
        kept = sorted(tmp_path.glob("gateway.db.corrupt-*"))
        assert len([p for p in kept if not p.name.endswith(("-wal", "-shm"))]) == 2  # same second: both kept
        c = store.counters()
        assert c["telemetry_set_aside_total"] == 2 * 10 * 30
        # each round's events: 10 appended, plus the first round's set-aside event in round two
        assert c["events_set_aside_total"] == 10 + 11
        events = store.read_all(Lane.EVENTS)
        assert [e[1] for e in events] == ["store.database_set_aside"]
        assert events[0][4]["unsent_events"] == 11 and events[0][4]["unsent_telemetry"] == 300
    finally:
        store.close()
