"""Batches formed from the rows kept in memory (edge/recent_rows.py) are exactly the batches read
back from SQLite would be, whatever happened in between: drops for the disk bound, rewinds,
quarantines, a damaged file replaced by a fresh one, a backlog larger than the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.recent_rows import RecentRows
from edge.store import IntegrityCheckFailed, SqliteStore
from gascore.records import Lane, Quality, Reading
from support.batches import Recorder, typed

# ---- the window itself ----------------------------------------------------------------------


def test_the_window_keeps_the_newest_rows_by_id() -> None:
    window = RecentRows(limit=5)
    window.add(10, [("a",), ("b",), ("c",)])
    window.add(13, [("d",), ("e",), ("f",)])  # contiguous: kept, oldest trimmed to the limit
    assert len(window) == 5
    assert window.since(10, 10) is None  # trimmed away
    assert window.since(11, 10) == [("b",), ("c",), ("d",), ("e",), ("f",)]
    assert window.since(14, 1) == [("e",)]
    assert window.since(16, 10) is None  # not committed yet
    window.forget_through(12)
    assert window.since(11, 10) is None
    assert window.since(13, 10) == [("d",), ("e",), ("f",)]


def test_a_gap_in_the_ids_starts_the_window_again() -> None:
    window = RecentRows(limit=100)
    window.add(1, [("a",), ("b",)])
    window.add(1, [("fresh",)])  # a fresh file: ids start again
    assert window.since(1, 10) == [("fresh",)]
    assert window.since(2, 10) is None
    window.forget_through(1)
    assert len(window) == 0
    window.add(2, [("next",)])
    assert window.since(2, 10) == [("next",)]


# ---- against the store reading every batch back ---------------------------------------------


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
readings = st.lists(
    st.tuples(st.sampled_from(["PT01", "PT02", "FT01"]), st.sampled_from(["p", "q"]), values, st.sampled_from(Quality)),
    min_size=0,
    max_size=40,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), readings),
        st.tuples(st.just("form"), st.integers(1, 60)),
        st.tuples(st.just("ack"), st.none()),
        st.tuples(st.just("drop_pending"), st.none()),
        st.tuples(st.just("quarantine"), st.none()),
        st.tuples(st.just("damage"), st.none()),
    ),
    max_size=40,
)


def apply(store: SqliteStore, build: Recorder, op: str, arg: Any, clock: list[int]) -> None:
    lane = Lane.TELEMETRY
    if op == "append":
        clock[0] += 1
        store.append([Reading(d, p, clock[0], v, q) for d, p, v, q in arg])
    elif op == "form":
        store.form_batch(lane, arg, build)
    elif (pending := store.pending(lane)) is not None and op == "ack":
        store.ack(lane, pending.seq)
    elif pending is not None and op == "drop_pending":
        store.drop_pending(lane)
    elif pending is not None and op == "quarantine":
        store.quarantine(lane, pending.seq, "test", clock[0])
    elif op == "damage":
        assert store.heal(IntegrityCheckFailed("test: damage found while running"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, window=st.sampled_from([1, 7, 64, 10_000]), bound=st.sampled_from([50, 200, 100_000]))
def test_batches_from_memory_equal_batches_read_back(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, Any]], window: int, bound: int
) -> None:
    base: Path = tmp_path_factory.mktemp("recent")
    cached = SqliteStore(base / "cached.db", max_telemetry_rows=bound, recent_rows=window)
    reread = SqliteStore(base / "reread.db", max_telemetry_rows=bound, recent_rows=0)
    built_cached, built_reread = Recorder(), Recorder()
    clocks = [0], [0]
    try:
        for op, arg in [*ops, ("form", 60)]:
            apply(cached, built_cached, op, arg, clocks[0])
            apply(reread, built_reread, op, arg, clocks[1])
            assert [(b[0], b[1], b[2], typed(b[3])) for b in built_cached.batches] == [
                (b[0], b[1], b[2], typed(b[3])) for b in built_reread.batches
            ]
            assert cached.counters() == reread.counters()
            assert cached.pending(Lane.TELEMETRY) == reread.pending(Lane.TELEMETRY)
    finally:
        cached.close()
        reread.close()


def test_a_batch_after_a_long_outage_is_read_back_then_the_window_takes_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", recent_rows=100)
    store.append([Reading("PT01", "p", i, float(i)) for i in range(250)])  # more than the window
    read_back: list[int] = []
    read_rows = store._read_rows

    def counting(lane: Lane, limit: int) -> list[tuple[int, list[Any]]]:
        rows = read_rows(lane, limit)
        read_back.append(len(rows))
        return rows

    store._read_rows = counting  # type: ignore[method-assign]
    build = Recorder()
    for seq in (1, 2, 3):
        batch = store.form_batch(Lane.TELEMETRY, 100, build)
        assert batch is not None
        store.ack(Lane.TELEMETRY, seq)
    assert read_back == [100, 100]
    assert [[r[3] for r in b[3]] for b in build.batches] == [
        [float(i) for i in range(0, 100)],  # read back: not in the window (150..249)
        [float(i) for i in range(100, 200)],  # read back: starts before the window
        [float(i) for i in range(200, 250)],  # from memory
    ]
    assert store.buffered(Lane.TELEMETRY) == 0
