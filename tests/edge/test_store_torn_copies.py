"""Power-loss style damage: the store's files copied while a writer commits poll cycles at full
speed (``cp gateway.db*`` in the middle of writes: the copies are torn), and single pages torn
by hand.  Every copy must open through SqliteStore without an exception: either intact
(quick_check ok; telemetry ids gap-free and in order; every row the one written; every cycle
whole; counters and the batch in flight agreeing with the rows) or set aside (the damaged file
kept, a fresh store with the event).  Before the store checked that it agrees with itself at
open, some torn copies passed quick_check with rows silently missing."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.store import SqliteStore
from gascore.records import Lane, Reading
from support.reliability import record

KILLS = int(os.environ.get("GASIOT_CHAOS_KILLS", "20"))  # scripts/chaos/reliability.py runs 200
COPIES = 300 if KILLS >= 200 else 30
POINTS = 20  # readings per cycle
BATCH = 10 * POINTS  # batches hold whole cycles, so acks delete whole cycles
SEED = int(os.environ.get("GASIOT_TEST_SEED", "20261126"))


def cycle(n: int) -> list[Reading]:
    return [Reading("dev", f"p{i:02d}", n * 1000 + i, float(n)) for i in range(POINTS)]


def build(lane: Lane, seq: int, prev: str, rows: list[list[Any]]) -> tuple[bytes, str]:
    return f"{lane.value}-{seq}-{rows[0][2]}-{rows[-1][2]}".encode(), f"{seq:064x}"


class Writer(threading.Thread):
    """The real store, appending cycles as fast as it can, forming and acknowledging batches
    now and then, until told to stop (or a bound on cycles)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.committed = 0  # cycles committed (set after each commit returns)
        self.error: BaseException | None = None

    def run(self) -> None:
        store = SqliteStore(self.path, max_telemetry_rows=10**9)
        # Checkpoints (and WAL restarts) every few cycles, as the store sizes its WAL on a small
        # filesystem: copies then also catch the main file while pages move into it.
        store.db.execute("PRAGMA wal_autocheckpoint=16")
        try:
            for n in range(1_000_000):
                if self.stop.is_set():
                    return
                store.append(cycle(n))
                self.committed = n + 1
                if n % 25 == 24:
                    batch = store.form_batch(Lane.TELEMETRY, BATCH, build)
                    if batch is not None and n % 50 == 49:
                        store.ack(Lane.TELEMETRY, batch.seq)
        except BaseException as err:  # reported by the test
            self.error = err
        finally:
            store.close()


def torn_copy(src: Path, dst: Path, rng: random.Random) -> None:
    """Copy ``gateway.db*`` as ``cp`` would, in chunks, the writer running meanwhile."""
    dst.mkdir(parents=True)
    for suffix in ("", "-shm", "-wal"):
        source = src.with_name(src.name + suffix)
        try:
            f = source.open("rb")
        except FileNotFoundError:
            continue
        with f, (dst / source.name).open("wb") as out:
            while chunk := f.read(rng.choice((4096, 16384, 65536))):
                out.write(chunk)
                if rng.random() < 0.3:
                    time.sleep(0)  # let the writer in between two chunks


@dataclass
class Outcome:
    intact: int = 0
    set_aside: int = 0
    lost: int = 0  # cycles committed before a copy began that an intact copy does not hold
    lane_moved: int = 0  # intact copies whose lane position is from another moment than their rows
    notes: list[str] = field(default_factory=list)


def verify(path: Path, committed_before: int | None, outcome: Outcome) -> None:
    """Open a copy through SqliteStore and check it is intact or set aside, nothing between."""
    store = SqliteStore(path, max_telemetry_rows=10**9)  # must not raise
    try:
        if store.set_aside is not None:
            outcome.set_aside += 1
            assert store.set_aside.exists(), "the damaged file is kept"
            assert store.buffered(Lane.TELEMETRY) == 0
            kinds = [e[1] for e in store.read_all(Lane.EVENTS)]
            assert kinds == ["store.database_set_aside"]
            return
        outcome.intact += 1
        assert store.integrity_problem() is None
        db = store.db
        rows = db.execute(
            "SELECT r.id, s.point, r.ts_ms, r.value FROM readings AS r"
            " JOIN series AS s ON s.id = r.series ORDER BY r.id"
        ).fetchall()
        c = store.counters()
        appended, acked = c.get("telemetry_appended_total", 0), c.get("telemetry_acked_total", 0)
        assert len(rows) == c["readings_rows"] == appended - acked
        assert appended % POINTS == 0 and acked % BATCH == 0, "cycles and acks are whole"
        if rows:
            ids = [r[0] for r in rows]
            assert ids == list(range(ids[0], ids[0] + len(ids))), "ids gap-free and in order"
            assert ids[0] == acked + 1 and ids[-1] == appended
            for k, (_, point, ts, value) in enumerate(rows):  # each row is the one written
                n = (acked + k) // POINTS
                assert (point, ts, value) == (f"p{k % POINTS:02d}", n * 1000 + k % POINTS, float(n))
        pending = store.pending(Lane.TELEMETRY)
        if pending is not None:  # the batch in flight is exactly the oldest rows
            assert pending.last_id == acked + pending.count <= appended
        # The lane's position can come from another moment than the rows (its page copied before
        # or after theirs) without the file disagreeing with itself.  Harmless: the cloud answers
        # the next batch with the seq it expects and the gateway rewinds to it; rows it already
        # holds are skipped by natural key.  Counted, so the figure shows how often.
        state = store.lane_state(Lane.TELEMETRY)
        expected = pending.seq if pending is not None else acked // BATCH + 1
        if state.next_seq != expected:
            outcome.lane_moved += 1
        if committed_before is not None and appended // POINTS < committed_before:
            outcome.lost += committed_before - appended // POINTS
    finally:
        store.close()


def test_copies_taken_while_the_store_writes_open_intact_or_are_set_aside(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    live = tmp_path / "live" / "gateway.db"
    writer = Writer(live)
    writer.start()
    outcome = Outcome()
    copies: list[tuple[Path, int]] = []
    deadline = time.monotonic() + 60
    try:
        while not live.with_name("gateway.db-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.001)  # the writer has not opened yet (bounded by the deadline)
        for i in range(COPIES):
            if time.monotonic() > deadline or writer.error is not None:
                break
            time.sleep(rng.uniform(0, 0.02))  # the copy moment, not a synchronisation
            before = writer.committed
            torn_copy(live, tmp_path / "copies" / f"{i:04d}", rng)
            copies.append((tmp_path / "copies" / f"{i:04d}" / "gateway.db", before))
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert len(copies) == COPIES, f"only {len(copies)} copies before the deadline"
    for path, before in copies:
        verify(path, before, outcome)
    assert outcome.intact + outcome.set_aside == COPIES
    record(
        "files copied mid-write (gateway.db, -shm, -wal in chunks while the store commits at full speed), "
        "each copy reopened",
        runs=COPIES,
        faults=COPIES,
        lost=0,
        duplicates=0,
        note=f"{outcome.intact} opened intact (whole cycles, ids gap-free, counters and batch in flight agreeing "
        f"with the rows; in {outcome.lane_moved} the lane position was from another moment: the cloud's rewind "
        f"corrects it), {outcome.set_aside} set aside as damaged; {outcome.lost} cycles committed before a copy "
        f"began were missing from it (a copy is not a snapshot); {writer.committed} cycles written",
    )


def test_torn_and_garbage_pages_open_intact_or_are_set_aside(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    path = tmp_path / "live" / "gateway.db"
    store = SqliteStore(path, max_telemetry_rows=10**9)
    older: bytes = b""
    for n in range(1500):
        store.append(cycle(n))
        if n == 700:  # an older version of the pages, for torn writes
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            older = path.read_bytes()
        if n % 25 == 24:
            batch = store.form_batch(Lane.TELEMETRY, BATCH, build)
            if batch is not None and n % 50 == 49:
                store.ack(Lane.TELEMETRY, batch.seq)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
    store.close()
    good = path.read_bytes()
    page = 4096
    pages = len(good) // page
    outcome = Outcome()
    runs = COPIES
    for i in range(runs):
        data = bytearray(good)
        p = rng.randrange(pages if i % 2 == 0 else len(older) // page)
        if i % 2 == 0:  # garbage over a whole page
            data[p * page : (p + 1) * page] = rng.randbytes(page)
        else:  # a torn write: the first half of the page from an older version
            old = older[p * page : p * page + page // 2]
            data[p * page : p * page + len(old)] = old
        copy = tmp_path / "pages" / f"{i:04d}" / "gateway.db"
        copy.parent.mkdir(parents=True)
        copy.write_bytes(bytes(data))
        try:
            verify(copy, None, outcome)
        except AssertionError as err:
            raise AssertionError(f"page {p} of {pages} ({'garbage' if i % 2 == 0 else 'torn'}): {err}") from err
    record(
        "single pages of the store file overwritten with garbage, or torn (first half from an older "
        "version), then reopened",
        runs=runs,
        faults=runs,
        lost=0,
        duplicates=0,
        note=f"{outcome.intact} opened intact, {outcome.set_aside} set aside as damaged"
        + (f" ({outcome.lane_moved} with the lane from another moment)" if outcome.lane_moved else ""),
    )


def test_a_copied_shm_file_is_not_trusted(tmp_path: Path) -> None:
    """The -shm of another moment (a copy) must not decide what the WAL holds: SQLite rebuilds
    the index from the WAL when the first connection opens."""
    live = tmp_path / "live" / "gateway.db"
    store = SqliteStore(live)
    store.append(cycle(0))
    stale_shm = live.with_name("gateway.db-shm").read_bytes()
    for n in range(1, 50):
        store.append(cycle(n))
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(live, copy / "gateway.db")
    shutil.copy(live.with_name("gateway.db-wal"), copy / "gateway.db-wal")
    (copy / "gateway.db-shm").write_bytes(stale_shm)
    store.close()
    again = SqliteStore(copy / "gateway.db")
    try:
        assert again.set_aside is None and again.buffered(Lane.TELEMETRY) == 50 * POINTS
    finally:
        again.close()
    with sqlite3.connect(copy / "gateway.db") as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    db.close()
