"""The edge store: an SQLite (WAL) file holding every record until the cloud has acknowledged it.

* Two lanes, ``events`` and ``telemetry``, each a table whose AUTOINCREMENT id is the lane's
  gap-free record sequence.
* ``append`` writes one poll cycle in one transaction; nothing is reported as taken before the
  commit.
* The outbox is a view over id ranges: forming a batch records ``(lane, seq, last_id, frame)`` in
  ``pending`` (one in-flight batch per lane), so after a crash exactly the same bytes are sent
  again; ``ack`` deletes the batch's rows and advances the lane in one transaction.
* Disk bound: when telemetry exceeds ``max_telemetry_rows`` the oldest unbatched telemetry is
  dropped, never events; every drop is counted and itself recorded as an event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane, Reading

log = logging.getLogger(__name__)

GATEWAY_DEVICE = "_gateway"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry(
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, point TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, kind TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, level TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lane_state(
    lane TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, prev_digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending(
    lane TEXT PRIMARY KEY, seq INTEGER NOT NULL, last_id INTEGER NOT NULL, count INTEGER NOT NULL,
    digest TEXT NOT NULL, frame BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS device_status(device TEXT PRIMARY KEY, updated_ms INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lane_acks(lane TEXT PRIMARY KEY, seq INTEGER NOT NULL, acked_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine(id INTEGER PRIMARY KEY AUTOINCREMENT, lane TEXT NOT NULL, seq INTEGER NOT NULL,
    count INTEGER NOT NULL, frame BLOB NOT NULL, reason TEXT NOT NULL, quarantined_ms INTEGER NOT NULL);
"""

_TABLE = {Lane.EVENTS: "events", Lane.TELEMETRY: "telemetry"}


def _check_integrity(db: sqlite3.Connection) -> None:
    (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if verdict != "ok":
        raise sqlite3.DatabaseError(f"integrity check failed: {verdict}")


def _set_aside(path: Path, reason: str) -> Path:
    """Move a damaged database (and its WAL and shared-memory files) to ``<name>.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(target.with_name(target.name + suffix))
    log.critical("store %s is damaged (%s): moved to %s, starting a fresh store", path, reason, target)
    return target
# A batch's rows stay under this many bytes before compression, far inside the cloud's frame
# and decompression limits whatever max_batch_records is set to.
MAX_BATCH_RAW_BYTES = 2 * 1024 * 1024
_ROW_OVERHEAD = 32


@dataclass(frozen=True, slots=True)
class PendingBatch:
    lane: Lane
    seq: int
    last_id: int
    count: int
    digest: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class LaneState:
    next_seq: int
    prev_digest: str


class StoreError(Exception):
    """The store cannot do what was asked (e.g. an ack for a batch that is not pending)."""


class StoreFull(StoreError):
    """The disk is full and dropping old telemetry did not make room."""


FrameBuilder = Callable[[Lane, int, str, list[list[Any]]], tuple[bytes, str]]
"""(lane, seq, prev_digest, wire rows) -> (frame bytes, batch digest)"""


class Store(Protocol):
    """What the pollers and the sync client need from the edge store (DESIGN.md's interface)."""

    def append(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event] = (),
        *,
        counters: dict[str, int] | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None: ...
    def pending(self, lane: Lane) -> PendingBatch | None: ...
    def unbatched(self, lane: Lane, limit: int) -> tuple[int, int | None]: ...
    def form_batch(self, lane: Lane, max_records: int, build: FrameBuilder) -> PendingBatch | None: ...
    def ack(self, lane: Lane, seq: int, *, now_ms: int | None = None) -> None: ...
    def quarantine(self, lane: Lane, seq: int, reason: str, now_ms: int) -> int: ...
    def rewind(self, lane: Lane, expected_seq: int, last_digest: str, reason: str, now_ms: int) -> None: ...


class SqliteStore:
    def __init__(self, path: Path, *, max_telemetry_rows: int = 2_000_000, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_telemetry_rows = max_telemetry_rows
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.set_aside: Path | None = None  # a corrupt database moved away at open, if any
        try:
            self._db = self._open(path, synchronous)
        except sqlite3.DatabaseError as err:
            # A damaged file (a power cut on a card that lies about flushes, a bad sector): keep it
            # for forensics, never delete it, never crash-loop on it; start a fresh store and say so.
            self.set_aside = _set_aside(path, str(err))
            self._db = self._open(path, synchronous)
            self._insert_set_aside_event(str(err))
        self._counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        # Extensions: ``writers`` run inside every append's transaction (local history), and
        # ``listeners`` see what each append committed, after the commit (the OPC-UA server).
        self.writers: list[Callable[[sqlite3.Connection, Sequence[Reading], Sequence[Event]], None]] = []
        self.listeners: list[Callable[[Sequence[Reading], Sequence[Event]], None]] = []
        if "telemetry_rows" not in self._counters:
            (n,) = self._db.execute("SELECT count(*) FROM telemetry").fetchone()
            self._counters["telemetry_rows"] = n

    @staticmethod
    def _open(path: Path, synchronous: str) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each cycle is exactly one transaction.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            _check_integrity(db)
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _insert_set_aside_event(self, reason: str) -> None:
        assert self.set_aside is not None
        now = time.time_ns() // 1_000_000
        event = Event(
            GATEWAY_DEVICE,
            "store.database_set_aside",
            now,
            EventLevel.CRITICAL,
            {"file": self.set_aside.name, "reason": reason[:500]},
        )
        self._db.execute("BEGIN IMMEDIATE")
        self._insert_events([event])
        self._db.execute("COMMIT")

    @property
    def db(self) -> sqlite3.Connection:
        """The store's connection, for modules that keep their own tables in the same file
        (alarms) and must write inside the store's transactions (``append(..., also=...)``)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # ---- writing ------------------------------------------------------------------------

    def append(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event] = (),
        *,
        counters: dict[str, int] | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Commit one poll cycle (readings and events) in one transaction.

        ``counters`` are set to the given values and ``also`` runs its statements (alarm state,
        applied requests) inside the same transaction, so they commit — or not — with the cycle.
        On a full disk the oldest tenth of the buffered telemetry is dropped (and reported) and
        the cycle retried once; if the disk is still full, StoreFull is raised and nothing of
        this cycle is stored.
        """
        if not readings and not events and not counters and also is None:
            return
        try:
            self._append(readings, events, counters, also)
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
            now_ms = readings[-1].ts_ms if readings else events[-1].ts_ms if events else 0
            with self._transaction():
                self._drop_oldest(max(1, self._counters["telemetry_rows"] // 10), now_ms, "disk_full")
            try:
                self._append(readings, events, counters, also)
            except sqlite3.OperationalError as again:
                if again.sqlite_errorcode == sqlite3.SQLITE_FULL:
                    raise StoreFull(f"{self.path}: disk full even after dropping old telemetry") from again
                raise
        for listener in self.listeners:
            try:
                listener(readings, events)
            except Exception:  # a consumer's bug must not look like a failed commit
                log.exception("store listener %r failed", listener)

    def _append(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event],
        counters: dict[str, int] | None,
        also: Callable[[sqlite3.Connection], None] | None,
    ) -> None:
        db = self._db
        with self._transaction():
            if also is not None:
                also(db)
            if counters:
                self._counters.update(counters)
            if readings:
                db.executemany(
                    "INSERT INTO telemetry(device, point, ts_ms, value, vt, quality) VALUES (?,?,?,?,?,?)",
                    [
                        (
                            r.device,
                            r.point,
                            r.ts_ms,
                            r.value,
                            "b" if r.value.__class__ is bool else None,
                            r.quality,
                        )
                        for r in readings
                    ],
                )
            if events:
                self._insert_events(events)
            for writer in self.writers:
                writer(db, readings, events)
            self._bump("telemetry_rows", len(readings))
            self._bump("telemetry_appended_total", len(readings))
            self._bump("events_appended_total", len(events))
            if self._counters["telemetry_rows"] > self.max_telemetry_rows:
                self._enforce_bound(readings[-1].ts_ms if readings else 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; the in-memory counters are saved with it or restored."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._save_counters()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLITE_FULL and friends may have rolled back already
                self._db.execute("ROLLBACK")
            self._reload_counters()
            raise

    def _insert_events(self, events: Sequence[Event]) -> None:
        self._db.executemany(
            "INSERT INTO events(device, kind, ts_ms, level, data) VALUES (?,?,?,?,?)",
            [(e.device, e.kind, e.ts_ms, e.level.value, json.dumps(e.data, ensure_ascii=False)) for e in events],
        )

    def _enforce_bound(self, now_ms: int) -> None:
        # Drop down to a low-water mark, not just under the bound: drops (and their events and
        # log lines) then happen once per ~10 % of the bound, not once per poll cycle.
        low_water = self.max_telemetry_rows - max(1, self.max_telemetry_rows // 10)
        self._drop_oldest(self._counters["telemetry_rows"] - low_water, now_ms, "bound_rows")

    def _drop_oldest(self, excess: int, now_ms: int, reason: str) -> None:
        in_flight = self._db.execute("SELECT last_id FROM pending WHERE lane='telemetry'").fetchone()
        floor_id = in_flight[0] if in_flight else 0
        row = self._db.execute(
            "SELECT count(*), min(ts_ms), max(ts_ms), max(id) FROM"
            " (SELECT id, ts_ms FROM telemetry WHERE id > ? ORDER BY id LIMIT ?)",
            (floor_id, excess),
        ).fetchone()
        dropped, first_ts, last_ts, upto = row
        if not dropped:
            return
        self._db.execute("DELETE FROM telemetry WHERE id > ? AND id <= ?", (floor_id, upto))
        self._bump("telemetry_rows", -dropped)
        self._bump("telemetry_dropped_total", dropped)
        self._insert_events(
            [
                Event(
                    GATEWAY_DEVICE,
                    "store.telemetry_dropped",
                    now_ms,
                    EventLevel.WARNING,
                    {
                        "count": dropped,
                        "first_ts_ms": first_ts,
                        "last_ts_ms": last_ts,
                        "policy": "drop_oldest_telemetry",
                        "reason": reason,
                        "bound_rows": self.max_telemetry_rows,
                    },
                ),
            ]
        )
        self._bump("events_appended_total", 1)
        log.warning("store %s: dropped %d oldest telemetry rows", reason, dropped)

    def _bump(self, name: str, delta: int) -> None:
        self._counters[name] = self._counters.get(name, 0) + delta

    def _save_counters(self) -> None:
        self._db.executemany("INSERT OR REPLACE INTO counters(name, value) VALUES (?,?)", self._counters.items())

    def _reload_counters(self) -> None:
        self._counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        self._counters.setdefault("telemetry_rows", 0)

    # ---- outbox -------------------------------------------------------------------------

    def lane_state(self, lane: Lane) -> LaneState:
        row = self._db.execute("SELECT next_seq, prev_digest FROM lane_state WHERE lane=?", (lane.value,)).fetchone()
        return LaneState(row[0], row[1]) if row else LaneState(1, GENESIS_DIGEST)

    def pending(self, lane: Lane) -> PendingBatch | None:
        row = self._db.execute(
            "SELECT seq, last_id, count, digest, frame FROM pending WHERE lane=?", (lane.value,)
        ).fetchone()
        return PendingBatch(lane, row[0], row[1], row[2], row[3], bytes(row[4])) if row else None

    def unbatched(self, lane: Lane, limit: int) -> tuple[int, int | None]:
        """(rows waiting beyond the in-flight batch, capped at ``limit``; ts_ms of the oldest).

        Capped so that the check before every batch costs the same with 2 M rows buffered as
        with 20."""
        pend = self.pending(lane)
        floor_id = pend.last_id if pend else 0
        row = self._db.execute(
            f"SELECT count(*), min(ts_ms) FROM (SELECT ts_ms FROM {_TABLE[lane]}"  # noqa: S608 - fixed names
            " WHERE id > ? ORDER BY id LIMIT ?)",
            (floor_id, limit),
        ).fetchone()
        return int(row[0]), row[1]

    def drop_pending(self, lane: Lane) -> None:
        """Forget the in-flight batch (its rows stay and are batched again under the same seq).
        Used when the gateway key changed: the old frame's signature would never verify."""
        self._db.execute("DELETE FROM pending WHERE lane=?", (lane.value,))

    def form_batch(self, lane: Lane, max_records: int, build: FrameBuilder) -> PendingBatch | None:
        """Return the in-flight batch of ``lane``, or form the next one from the oldest rows."""
        existing = self.pending(lane)
        if existing is not None:
            return existing
        rows = self._read_rows(lane, max_records)
        if not rows:
            return None
        state = self.lane_state(lane)
        ids = [r[0] for r in rows]
        wire = [r[1] for r in rows]
        frame, digest = build(lane, state.next_seq, state.prev_digest, wire)
        batch = PendingBatch(lane, state.next_seq, ids[-1], len(ids), digest, frame)
        self._db.execute(
            "INSERT INTO pending(lane, seq, last_id, count, digest, frame) VALUES (?,?,?,?,?,?)",
            (lane.value, batch.seq, batch.last_id, batch.count, batch.digest, batch.frame),
        )
        return batch

    def _read_rows(self, lane: Lane, limit: int) -> list[tuple[int, list[Any]]]:
        """The oldest ``limit`` rows of ``lane`` in wire form, stopping early once their encoded
        size would pass MAX_BATCH_RAW_BYTES (a batch of large events must still fit a frame)."""
        out: list[tuple[int, list[Any]]] = []
        size = 0
        if lane is Lane.TELEMETRY:
            cur = self._db.execute(
                "SELECT id, device, point, ts_ms, value, vt, quality FROM telemetry ORDER BY id LIMIT ?",
                (limit,),
            )
            for i, d, p, ts, v, vt, q in cur:
                size += _ROW_OVERHEAD + len(d) + len(p) + (len(v) if v.__class__ is str else 9)
                if out and size > MAX_BATCH_RAW_BYTES:
                    break
                out.append((i, [d, p, ts, bool(v) if vt == "b" else v, q]))
            return out
        cur = self._db.execute("SELECT id, device, kind, ts_ms, level, data FROM events ORDER BY id LIMIT ?", (limit,))
        for i, d, k, ts, lvl, data in cur:
            size += _ROW_OVERHEAD + len(d) + len(k) + len(data)
            if out and size > MAX_BATCH_RAW_BYTES:
                break
            out.append((i, [d, k, ts, lvl, json.loads(data)]))
        return out

    def ack(self, lane: Lane, seq: int, *, now_ms: int | None = None) -> None:
        """The cloud has stored batch ``seq``: delete its rows and advance the lane, atomically.
        With ``now_ms``, also remember when (``last_acks``: sync lag for status and metrics)."""
        pend = self.pending(lane)
        if pend is None or pend.seq != seq:
            raise StoreError(f"ack for {lane.value} seq {seq}, but pending is {pend.seq if pend else None}")
        db = self._db
        with self._transaction():
            db.execute(f"DELETE FROM {_TABLE[lane]} WHERE id <= ?", (pend.last_id,))  # noqa: S608
            db.execute("DELETE FROM pending WHERE lane=?", (lane.value,))
            db.execute(
                "INSERT OR REPLACE INTO lane_state(lane, next_seq, prev_digest) VALUES (?,?,?)",
                (lane.value, seq + 1, pend.digest),
            )
            if now_ms is not None:
                db.execute(
                    "INSERT OR REPLACE INTO lane_acks(lane, seq, acked_ms) VALUES (?,?,?)", (lane.value, seq, now_ms)
                )
            if lane is Lane.TELEMETRY:
                self._bump("telemetry_rows", -pend.count)
            self._bump(f"{lane.value}_acked_total", pend.count)

    def quarantine(self, lane: Lane, seq: int, reason: str, now_ms: int) -> int:
        """The cloud refused batch ``seq`` as something no resend can fix (malformed, too large):
        keep its frame in ``quarantine`` (never deleted: an operator can inspect and re-send it),
        take its rows out of the lane and report it on the events lane, so the lane moves on
        instead of resending the same refused batch forever.  The seq is not advanced: the next
        batch takes it.  Returns how many records were set aside."""
        pend = self.pending(lane)
        if pend is None or pend.seq != seq:
            raise StoreError(f"quarantine of {lane.value} seq {seq}, but pending is {pend.seq if pend else None}")
        db = self._db
        with self._transaction():
            db.execute(
                "INSERT INTO quarantine(lane, seq, count, frame, reason, quarantined_ms) VALUES (?,?,?,?,?,?)",
                (lane.value, seq, pend.count, pend.frame, reason[:2000], now_ms),
            )
            db.execute(f"DELETE FROM {_TABLE[lane]} WHERE id <= ?", (pend.last_id,))  # noqa: S608
            db.execute("DELETE FROM pending WHERE lane=?", (lane.value,))
            if lane is Lane.TELEMETRY:
                self._bump("telemetry_rows", -pend.count)
            self._bump(f"{lane.value}_quarantined_total", pend.count)
            self._insert_events(
                [
                    Event(
                        GATEWAY_DEVICE,
                        "store.batch_quarantined",
                        now_ms,
                        EventLevel.MAJOR,
                        {"lane": lane.value, "seq": seq, "count": pend.count, "reason": reason[:500]},
                    )
                ]
            )
        log.error("%s batch %d (%d records) quarantined: %s", lane.value, seq, pend.count, reason)
        return pend.count

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, lane, seq, count, reason, quarantined_ms FROM quarantine ORDER BY id")
        keys = ("id", "lane", "seq", "count", "reason", "quarantined_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def rewind(self, lane: Lane, expected_seq: int, last_digest: str, reason: str, now_ms: int) -> None:
        """Adopt the cloud's view of the lane; unacknowledged rows stay and are re-batched."""
        db = self._db
        with self._transaction():
            db.execute("DELETE FROM pending WHERE lane=?", (lane.value,))
            db.execute(
                "INSERT OR REPLACE INTO lane_state(lane, next_seq, prev_digest) VALUES (?,?,?)",
                (lane.value, expected_seq, last_digest),
            )
            self._insert_events(
                [
                    Event(
                        GATEWAY_DEVICE,
                        "sync.rewound",
                        now_ms,
                        EventLevel.WARNING,
                        {"lane": lane.value, "expected_seq": expected_seq, "reason": reason},
                    ),
                ]
            )
            self._bump("sync_rewinds_total", 1)
        log.warning("lane %s rewound to seq %d (%s)", lane.value, expected_seq, reason)

    # ---- device status ------------------------------------------------------------------

    def save_status(self, statuses: dict[str, dict[str, Any]], now_ms: int) -> None:
        """Keep the latest status of every device (for `gasiot edge status`) and send it to the
        cloud as one ``device.status`` event per device, in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO device_status(device, updated_ms, data) VALUES (?,?,?)",
                [(d, now_ms, json.dumps(v)) for d, v in statuses.items()],
            )
            self._insert_events([Event(d, "device.status", now_ms, EventLevel.INFO, v) for d, v in statuses.items()])
            self._bump("events_appended_total", len(statuses))

    def device_statuses(self) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._db.execute("SELECT device, updated_ms, data FROM device_status ORDER BY device").fetchall()
        return {d: (ts, json.loads(data)) for d, ts, data in rows}

    # ---- inspection ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def buffered(self, lane: Lane) -> int:
        (n,) = self._db.execute(f"SELECT count(*) FROM {_TABLE[lane]}").fetchone()  # noqa: S608
        return int(n)

    def depth(self, lane: Lane) -> int:
        """The same number as ``buffered(lane)`` without counting rows (for metrics scraped while
        millions of rows wait): telemetry keeps a row counter, and event ids have no gaps
        (AUTOINCREMENT; only ``ack`` deletes events, from the front)."""
        if lane is Lane.TELEMETRY:
            return int(self._counters["telemetry_rows"])
        first, last = self._db.execute("SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)").fetchone()
        return 0 if first is None else int(last) - int(first) + 1

    def oldest_unsent_ms(self, lane: Lane) -> int | None:
        """ts_ms of the record first in line on ``lane`` (not yet acknowledged), None if empty."""
        row = self._db.execute(f"SELECT ts_ms FROM {_TABLE[lane]} ORDER BY id LIMIT 1").fetchone()  # noqa: S608
        return None if row is None else int(row[0])

    def last_acks(self) -> dict[Lane, int]:
        """When the cloud last acknowledged a batch of each lane (UTC epoch ms; lanes never acked
        since this was recorded are missing)."""
        rows = self._db.execute("SELECT lane, acked_ms FROM lane_acks").fetchall()
        return {Lane(lane): int(ms) for lane, ms in rows}

    def read_all(self, lane: Lane) -> list[list[Any]]:
        """Every buffered row in wire form (diagnostics and tests)."""
        return [row for _, row in self._read_rows(lane, -1)]
