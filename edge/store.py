"""The edge store: an SQLite (WAL) file holding every record until the cloud has acknowledged it.

* Two lanes: ``events``, a table whose AUTOINCREMENT id is the lane's gap-free record sequence,
  and telemetry, the ``readings`` table: one row per reading holding its series (a device and
  point, named once in ``series``), time, value and a small integer for quality and type, in id
  order (store format 2, ADR 0009; a format-1 ``telemetry`` table is moved into it at open).
* ``append`` writes one poll cycle in one transaction; nothing is reported as taken before the
  commit.
* The outbox is a view over id ranges: forming a batch records ``(lane, seq, last_id, frame)`` in
  ``pending`` (one in-flight batch per lane), so after a crash exactly the same bytes are sent
  again; ``ack`` deletes the batch's rows and advances the lane in one transaction.
* Disk bound: when telemetry exceeds ``max_telemetry_rows`` the oldest unbatched telemetry is
  dropped, never events; every drop is counted and itself recorded as an event.
* Disk full (ADR 0006): the database may only grow into what the filesystem has free less room
  for the WAL (``PRAGMA max_page_count``, recomputed as the free space changes), so a full disk
  shows up as SQLITE_FULL inside SQLite, where dropping the oldest tenth of the telemetry makes
  room, not as a WAL that cannot grow.  A preallocated ``<name>.reserve`` file holds space that
  nothing else on the filesystem can take; it is released when the filesystem fills anyway (a
  runaway log) so that the store can still checkpoint, drop and record why.  A cycle that cannot
  be stored even then is counted as dropped and reported as soon as a commit succeeds.
* Damage: a database that SQLite reports as corrupt (SQLITE_CORRUPT, SQLITE_NOTADB), at open or
  while running, is moved aside to ``<name>.corrupt-<time>`` (never deleted) and a fresh store
  starts with a CRITICAL ``store.database_set_aside`` event saying what was unsent in it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edge.recent_rows import RecentRows
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane, Quality, Reading

log = logging.getLogger(__name__)

GATEWAY_DEVICE = "_gateway"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, point TEXT NOT NULL, UNIQUE(device, point));
CREATE TABLE IF NOT EXISTS readings(
    id INTEGER PRIMARY KEY, series INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value, flags INTEGER NOT NULL);
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

# A lane's table; also the key of its row in ``pending``: format 1 kept telemetry's batch in flight
# under "telemetry", and a release of format 1 started again after a roll-back must not find one
# there that covers rows it cannot see (ADR 0009).
_TABLE = {Lane.EVENTS: "events", Lane.TELEMETRY: "readings"}
STORE_FORMAT = 2  # PRAGMA user_version

# A reading's ``flags``: its quality's code times two, plus one for a boolean value (SQLite stores
# True as 1).  The codes are part of the file format: never renumber, only add.
_QUALITY_CODE = {
    Quality.GOOD: 0,
    Quality.UNCERTAIN_STALE: 1,
    Quality.UNCERTAIN_SUBSTITUTED: 2,
    Quality.BAD_COMM_FAILURE: 3,
    Quality.BAD_OUT_OF_RANGE: 4,
    Quality.BAD_SENSOR_FAULT: 5,
    Quality.BAD_DEVICE_ERROR: 6,
}
assert set(_QUALITY_CODE) == set(Quality), "every quality needs a stored code"
_FLAGS = {quality: code << 1 for quality, code in _QUALITY_CODE.items()}
_QUALITY_OF_FLAGS: list[str] = [""] * (2 * len(_QUALITY_CODE))
for _quality, _code in _QUALITY_CODE.items():
    _QUALITY_OF_FLAGS[_code << 1] = _QUALITY_OF_FLAGS[(_code << 1) | 1] = _quality.value

T = TypeVar("T")
# (id of the first, the rows as inserted, the series named in the same transaction)
_Inserted = tuple[int, list[tuple[Any, ...]], dict[int, tuple[str, str]]]

_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_MAX_PAGES = 4_294_967_294  # SQLite's own ceiling for max_page_count
_BUDGET_INTERVAL_S = 1.0  # how often the filesystem's free space is looked at again
_MARGIN_BYTES = 64 * 1024  # for the -shm file growing and whatever else SQLite writes


class IntegrityCheckFailed(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` did not answer ``ok``."""


def is_damage(err: BaseException) -> bool:
    """The database file itself is damaged (not full, not locked, not an I/O hiccup)."""
    if isinstance(err, IntegrityCheckFailed):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(err, sqlite3.DatabaseError) and code is not None and code & 0xFF in _DAMAGE_CODES


def _is_full(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and err.sqlite_errorcode == sqlite3.SQLITE_FULL


def _check_integrity(db: sqlite3.Connection) -> None:
    problem = _damage_in(db)
    if problem is not None:
        raise IntegrityCheckFailed(problem)


def _damage_in(db: sqlite3.Connection) -> str | None:
    """What is wrong with the file: SQLite's own structural check, then whether the store agrees
    with itself.  A file whose pages come from different moments (copied while being written,
    or from a card that reorders writes) can be well-formed page by page and still hold an older
    version of some pages than of others; the row counter, written in the same transaction as
    the rows, then disagrees with the rows."""
    (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if verdict != "ok":
        return f"integrity check failed: {verdict}"
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"readings", "events", "counters", "pending"} <= tables:
        return None  # a store being created, or a format-1 store about to be moved to format 2
    row = db.execute("SELECT value FROM counters WHERE name='readings_rows'").fetchone()
    (rows,) = db.execute("SELECT count(*) FROM readings").fetchone()
    if row is not None and row[0] != rows:
        return f"inconsistent store: {rows} telemetry rows, the counter says {row[0]}"
    # Events leave only from the front (acknowledged, quarantined): their ids have no gaps.
    count, first, last = db.execute("SELECT count(*), min(id), max(id) FROM events").fetchone()
    if count and last - first + 1 != count:
        return f"inconsistent store: {count} events with ids {first}..{last}"
    for lane, table in _TABLE.items():
        pend = db.execute("SELECT last_id, count FROM pending WHERE lane=?", (table,)).fetchone()
        if pend is not None:
            (held,) = db.execute(f"SELECT count(*) FROM {table} WHERE id <= ?", (pend[0],)).fetchone()  # noqa: S608
            if held != pend[1]:
                return f"inconsistent store: the {lane.value} batch in flight has {pend[1]} rows, {held} are there"
    return None


def _set_aside(path: Path, reason: str) -> Path:
    """Move a damaged database (and its WAL and shared-memory files) to ``<name>.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():  # a second one within the same second: never overwrite the first
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(target.with_name(target.name + suffix))
    log.critical("store %s is damaged (%s): moved to %s, starting a fresh store", path, reason, target)
    return target


_MIGRATION_QUALITY = " ".join(f"WHEN '{q.value}' THEN {code}" for q, code in _QUALITY_CODE.items())


def _move_format_1(db: sqlite3.Connection, path: Path) -> None:
    """Move the readings of a format-1 ``telemetry`` table (a row per reading with its device,
    point and quality as text) into ``readings`` and drop it, in one transaction.  The ids are
    kept, so the batch in flight — same rows, same frame bytes — is still the one to resend.  When
    ``readings`` already holds rows (a format-1 release ran after a roll-back and buffered more),
    the moved rows follow them and a format-1 batch in flight is forgotten: its rows are batched
    again after the older ones, and the cloud's answer to its seq rewinds the lane (ADR 0009)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(telemetry)")}
    if not columns:
        db.execute(f"PRAGMA user_version={STORE_FORMAT}")
        return
    expected = {"id", "device", "point", "ts_ms", "value", "vt", "quality"}
    if columns != expected:
        raise StoreError(f"{path}: a telemetry table with columns {sorted(columns)}, not store format 1's")
    started = time.monotonic()
    db.execute("BEGIN IMMEDIATE")
    try:
        (moving, low) = db.execute("SELECT count(*), min(id) FROM telemetry").fetchone()
        (held, top) = db.execute("SELECT count(*), coalesce(max(id), 0) FROM readings").fetchone()
        shift = 0 if low is None or low > top else top - low + 1
        db.execute("INSERT OR IGNORE INTO series(device, point) SELECT DISTINCT device, point FROM telemetry")
        flags = f"(CASE t.quality {_MIGRATION_QUALITY} END) * 2 + (t.vt IS 'b')"
        db.execute(
            f"INSERT INTO readings(id, series, ts_ms, value, flags) SELECT t.id + ?, s.id, t.ts_ms, t.value, {flags}"  # noqa: S608 - fixed text
            " FROM telemetry AS t JOIN series AS s ON s.device = t.device AND s.point = t.point",
            (shift,),
        )
        if held:
            db.execute("DELETE FROM pending WHERE lane='telemetry'")
        else:
            db.execute("UPDATE pending SET lane='readings' WHERE lane='telemetry'")
        # Ids are never reused in a file (ADR 0008): the next one follows format 1's sequence too.
        (sequence,) = db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name='telemetry'").fetchone()
        db.execute(
            "INSERT OR REPLACE INTO counters(name, value) SELECT 'readings_last_id', max(?,"
            " (SELECT coalesce(max(id), 0) FROM readings),"
            " (SELECT coalesce(max(value), 0) FROM counters WHERE name='readings_last_id'))",
            (sequence + shift,),
        )
        db.execute("DROP TABLE telemetry")
        db.execute("DELETE FROM counters WHERE name IN ('telemetry_rows', 'readings_rows')")  # counted at load
        db.execute(f"PRAGMA user_version={STORE_FORMAT}")
        db.execute("COMMIT")
    except sqlite3.IntegrityError as err:
        db.execute("ROLLBACK")
        raise StoreError(f"{path}: cannot move the buffered readings to store format {STORE_FORMAT}: {err}") from err
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    log.info(
        "store %s: moved %d buffered readings to store format %d in %.1f s%s",
        path,
        moving,
        STORE_FORMAT,
        time.monotonic() - started,
        f" (after {held} already there)" if held else "",
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# A batch's rows stay under this many bytes before compression, far inside the cloud's frame
# and decompression limits whatever max_batch_records is set to.
MAX_BATCH_RAW_BYTES = 2 * 1024 * 1024
_ROW_OVERHEAD = 32
_RECENT_ROWS = 8_192  # committed telemetry rows kept in memory to form batches from (edge/recent_rows.py)


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


class StoreDamaged(StoreError):
    """The database is damaged and this store was opened only to look (``inspect=True``)."""


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


def _heals(method: Callable[..., T]) -> Callable[..., T]:
    """A store method that, when SQLite reports the file damaged, sets the file aside, starts a
    fresh one and runs once more on it (a poll cycle is then kept, in the fresh file)."""

    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as err:
            if not self.heal(err):
                raise
        return method(self, *args, **kwargs)

    return wrapper


@dataclass
class _Unstored:
    """Poll cycles the store could not commit at all (a full disk with nothing left to drop):
    reported, and counted as dropped, with the next commit that succeeds."""

    readings: int = 0
    events: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None

    def add(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        self.readings += len(readings)
        self.events += len(events)
        stamps = [r.ts_ms for r in readings] + [e.ts_ms for e in events]
        if stamps:
            low, high = min(stamps), max(stamps)
            self.first_ts_ms = low if self.first_ts_ms is None else min(self.first_ts_ms, low)
            self.last_ts_ms = high if self.last_ts_ms is None else max(self.last_ts_ms, high)


class SqliteStore:
    def __init__(
        self,
        path: Path,
        *,
        max_telemetry_rows: int = 2_000_000,
        synchronous: str = "FULL",
        inspect: bool = False,
        recent_rows: int = _RECENT_ROWS,
    ) -> None:
        """``inspect``: only look (the ``gasiot edge status`` CLI beside a running gateway): no
        reserve file, no disk budget, and a damaged file raises StoreDamaged instead of being
        set aside under the running gateway's feet.  ``recent_rows``: how many of the newest
        telemetry rows to keep in memory to form batches from (0: always read them back)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_telemetry_rows = max_telemetry_rows
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.synchronous = synchronous
        self.inspect = inspect
        self.set_aside: Path | None = None  # the last damaged database moved away, if any
        self.set_aside_count = 0  # how many times since this object was made (at open or running)
        # Extensions: ``writers`` run inside every append's transaction (local history),
        # ``listeners`` see what each append committed, after the commit (the OPC-UA server), and
        # ``on_fresh_file`` recreate their tables (and state) in a fresh file that replaced a
        # damaged one while running, inside the transaction that records the replacement.
        self.writers: list[Callable[[sqlite3.Connection, Sequence[Reading], Sequence[Event]], None]] = []
        self.listeners: list[Callable[[Sequence[Reading], Sequence[Event]], None]] = []
        self.on_fresh_file: list[Callable[[sqlite3.Connection], None]] = []
        # The disk budget (ADR 0006).  ``max_db_pages`` can lower the ceiling further (tests).
        self._max_db_pages = _MAX_PAGES
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.wal_max_bytes = self.reserve_bytes = 0  # set from the filesystem's size at open
        self._drop_chunk_rows = 10_000
        self._budget_checked = -1e9
        self._unstored = _Unstored()
        self._drops: list[tuple[str, int]] = []  # (reason, rows) dropped in the open transaction
        self._counters: dict[str, int] = {}
        self._save_all_counters = True  # until a transaction on this file has saved them all
        self._recent = RecentRows(recent_rows)
        # Series ids both ways, as committed: device -> point -> id, and id -> (device, point).
        self._series_ids: dict[str, dict[str, int]] = {}
        self._series_names: dict[int, tuple[str, str, int]] = {}  # with the wire row's size but its value
        try:
            try:
                self._db = self._open(path, synchronous, migrate=not inspect)
            except sqlite3.OperationalError as err:
                # Not even room to open (the WAL index, a table to create: SQLITE_FULL or an
                # I/O error): the reserve is for exactly this.
                no_room = _is_full(err) or err.sqlite_errorcode & 0xFF == sqlite3.SQLITE_IOERR
                if inspect or not no_room or not self._release_reserve():
                    raise
                self._db = self._open(path, synchronous, migrate=not inspect)
        except sqlite3.DatabaseError as err:
            if not is_damage(err):
                raise  # full, locked, read-only, an I/O error: not a reason to move a good file away
            if inspect:
                raise StoreDamaged(f"{path}: {err}") from err
            # A damaged file (a power cut on a card that lies about flushes, a bad sector): keep it
            # for forensics, never delete it, never crash-loop on it; start a fresh store and say so.
            reason = str(err)
            self.set_aside = _set_aside(path, reason)
            self.set_aside_count += 1
            self._db = self._open(path, synchronous, migrate=not inspect)
            self._reload_counters()
            self._prepare_disk()
            self._write(lambda: self._record_set_aside(reason, "at open", None))
        else:
            self._reload_counters()
            self._prepare_disk()
        if "readings_rows" not in self._counters or self._counters["readings_rows"] < 0:
            (n,) = self._db.execute("SELECT count(*) FROM readings").fetchone()
            self._counters["readings_rows"] = n
        # Readings take their ids from this counter, saved with each transaction: an id is never
        # used twice in one file, even once every row before it is gone (ADR 0008).
        (top,) = self._db.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()
        self._counters["readings_last_id"] = max(self._counters.get("readings_last_id", 0), top)
        self._load_series()

    @staticmethod
    def _open(path: Path, synchronous: str, *, migrate: bool) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each cycle is exactly one transaction.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            _check_integrity(db)
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
            if migrate:
                _move_format_1(db, path)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _load_series(self) -> None:
        self._series_ids = {}
        self._series_names = {}
        for series, device, point in self._db.execute("SELECT id, device, point FROM series"):
            self._remember_series(series, device, point)

    def _remember_series(self, series: int, device: str, point: str) -> None:
        self._series_ids.setdefault(device, {})[point] = series
        self._series_names[series] = (device, point, _ROW_OVERHEAD + len(device) + len(point))

    def _series_name(self, series: int) -> tuple[str, str, int]:
        """(device, point) of a series id; looked up again when another connection (the gateway
        beside ``inspect``) named it after this store was opened."""
        name = self._series_names.get(series)
        if name is None:
            self._load_series()
            name = self._series_names[series]
        return name

    @property
    def db(self) -> sqlite3.Connection:
        """The store's connection, for modules that keep their own tables in the same file
        (alarms) and must write inside the store's transactions (``append(..., also=...)``).
        Ask for it each time: a damaged file is replaced by a fresh one with a new connection."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # ---- damage -------------------------------------------------------------------------

    def heal(self, err: BaseException) -> bool:
        """If ``err`` says the database is damaged: move it aside (never deleted), continue in a
        fresh file with a CRITICAL ``store.database_set_aside`` event that says what was unsent
        in the old one, and return True.  Any other error: False, nothing done.  For callers that
        run their own statements on ``db`` (alarm requests, history)."""
        if self.inspect or not is_damage(err):
            return False
        c = self._counters
        unsent = {
            "unsent_telemetry": c.get("readings_rows", 0),
            "unsent_events": c.get("events_appended_total", 0)
            - c.get("events_acked_total", 0)
            - c.get("events_quarantined_total", 0)
            - c.get("events_set_aside_total", 0),
        }
        log.critical("store %s: damage found while running (%s); unsent in it: %s", self.path, err, unsent)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()  # SQLite finishes with the old file (its WAL) before it moves
        self.set_aside = _set_aside(self.path, str(err))
        self.set_aside_count += 1
        self._recent.clear()
        self._save_all_counters = True
        self._db = self._open(self.path, self.synchronous, migrate=True)
        self._load_series()
        # The counters continue (the totals stay true for the whole life of the gateway, and the
        # last executed command id must survive: commands are never executed twice); what was
        # unsent stays in the set-aside file and is counted as such.
        counters = dict(c)
        counters["readings_rows"] = 0
        counters["telemetry_set_aside_total"] = c.get("telemetry_set_aside_total", 0) + unsent["unsent_telemetry"]
        counters["events_set_aside_total"] = c.get("events_set_aside_total", 0) + unsent["unsent_events"]
        self._counters = counters
        self._prepare_disk()

        def fresh() -> None:
            for hook in self.on_fresh_file:
                hook(self._db)
            self._record_set_aside(str(err), "while running", unsent)

        self._write(fresh)
        return True

    def integrity_problem(self) -> str | None:
        """What is wrong with the file (``quick_check``, then whether the store agrees with
        itself), or None.  On a connection of its own (its own page cache: what is on disk now,
        through the WAL), read-only, so it can run in a worker thread beside the writer.  The
        writer's cache can hide a damaged page for as long as it stays cached; this reads every
        page from the file."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        except sqlite3.Error:
            return None  # not there (being replaced) or busy: the next check will tell
        try:
            with contextlib.closing(db):
                db.execute("BEGIN")  # one snapshot for all the checks
                return _damage_in(db)
        except sqlite3.DatabaseError as err:
            return str(err) if is_damage(err) else None

    def count_unstored(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """A cycle that never reached the store (its commit failed for a reason found outside
        it): counted as dropped and reported with the next commit that succeeds."""
        self._unstored.add(readings, events)

    def _record_set_aside(self, reason: str, when: str, unsent: dict[str, int] | None) -> None:
        assert self.set_aside is not None
        data: dict[str, Any] = {"file": self.set_aside.name, "reason": reason[:500], "found": when}
        if unsent is not None:
            data.update(unsent)
        self._insert_events([Event(GATEWAY_DEVICE, "store.database_set_aside", _now_ms(), EventLevel.CRITICAL, data)])
        self._bump("events_appended_total", 1)

    # ---- disk budget --------------------------------------------------------------------

    @property
    def max_db_pages(self) -> int:
        """A ceiling on the database's pages below what the filesystem allows (tests)."""
        return self._max_db_pages

    @max_db_pages.setter
    def max_db_pages(self, pages: int) -> None:
        self._max_db_pages = pages
        self._budget_checked = -1e9  # applies from the next write

    def _prepare_disk(self) -> None:
        """Size the WAL to the filesystem, keep the reserve file and set the first page budget."""
        (self._page_size,) = self._db.execute("PRAGMA page_size").fetchone()
        if self.inspect:
            return
        vfs = os.statvfs(self.path.parent)
        total = vfs.f_blocks * vfs.f_frsize
        # A WAL that checkpoints every 1/64 of the filesystem (SQLite's 1000 pages on anything
        # over 256 MB), and may hold one large transaction (16 pages) beyond that.
        wal_pages = max(16, min(1000, total // 64 // self._page_size))
        self.wal_max_bytes = (wal_pages + 16) * (self._page_size + 24) + 32
        # The reserve covers what recovering from a filesystem filled by someone else writes: a
        # checkpoint that grows the database by up to a WAL, then the drops (in transactions
        # of a bounded size) and their events.
        self.reserve_bytes = self.wal_max_bytes + 16 * self._page_size
        self._drop_chunk_rows = max(100, wal_pages * self._page_size // 64)  # rows of 64 bytes at most
        self._db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        self._db.execute(f"PRAGMA journal_size_limit={self.wal_max_bytes}")
        self._apply_budget(force=True)

    def _apply_budget(self, *, force: bool = False) -> None:
        """Let the database grow only into what the filesystem has free, less the WAL's room
        and a margin; keep (or take back) the reserve file when there is space for it."""
        if self.inspect:
            return
        now = time.monotonic()
        if not force and now - self._budget_checked < _BUDGET_INTERVAL_S:
            return
        self._budget_checked = now
        vfs = os.statvfs(self.path.parent)
        free = vfs.f_bavail * vfs.f_frsize
        if not self.reserve_path.exists() and free >= 2 * self.reserve_bytes + self.wal_max_bytes + _MARGIN_BYTES:
            self._take_reserve()
            free = os.statvfs(self.path.parent).f_bavail * vfs.f_frsize
        ours = _size(self.path) + _size(self.path.with_name(self.path.name + "-wal"))
        pages = (ours + free - self.wal_max_bytes - _MARGIN_BYTES) // self._page_size
        cap = max(1, min(pages, self._max_db_pages, _MAX_PAGES))
        self._db.execute(f"PRAGMA max_page_count={cap}")

    def _take_reserve(self) -> None:
        tmp = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            with tmp.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.reserve_bytes)
            tmp.replace(self.reserve_path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.warning("store %s: no room for the %d byte reserve file (%s)", self.path, self.reserve_bytes, err)
        else:
            log.info("store %s: %d bytes reserved in %s", self.path, self.reserve_bytes, self.reserve_path.name)

    def _release_reserve(self) -> bool:
        if not self.reserve_path.exists():
            return False
        self.reserve_path.unlink()
        log.warning("store %s: filesystem full; released the %d byte reserve", self.path, self.reserve_bytes)
        return True

    def _use_reserve(self) -> bool:
        """Give the reserve back to the filesystem and use it to fold the WAL into the database."""
        if not self._release_reserve():
            return False
        self._checkpoint()
        return True

    def _checkpoint(self) -> None:
        """Fold the WAL into the database and cut it to nothing (best effort)."""
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def _at_page_budget(self) -> bool:
        (count,) = self._db.execute("PRAGMA page_count").fetchone()
        (cap,) = self._db.execute("PRAGMA max_page_count").fetchone()
        return bool(count + 8 >= cap)

    # ---- writing ------------------------------------------------------------------------

    def _write(self, body: Callable[[], T]) -> T:
        """Run ``body`` in one write transaction.  On SQLITE_FULL make room and run it again:
        when the filesystem (not the page budget) ran out, first by folding the WAL back into the
        database, then by releasing the reserve; in either case then by dropping the oldest tenth
        of the buffered telemetry.  StoreFull when none of that helped."""
        self._apply_budget()
        try:
            return self._run(body)
        except sqlite3.OperationalError as err:
            if not _is_full(err):
                raise
            first = err
        by_budget = self._at_page_budget()
        self._apply_budget(force=True)  # the free space has just changed under us
        remedies: list[Callable[[], object]] = [] if by_budget else [self._checkpoint, self._use_reserve]
        remedies.append(self._drop_for_room)
        for remedy in remedies:
            if remedy() is False:
                continue  # nothing released: no point in trying again
            self._apply_budget(force=True)
            try:
                return self._run(body)
            except sqlite3.OperationalError as err:
                if not _is_full(err):
                    raise
        raise StoreFull(f"{self.path}: disk full even after dropping old telemetry ({first})") from first

    def _drop_for_room(self) -> bool:
        """Drop the oldest tenth of the buffered telemetry, in transactions small enough for the
        WAL's room (a deleted row's page goes through the WAL too: one transaction for a tenth
        of a full disk would need a WAL that size), each with its own event."""
        left = max(1, self._counters.get("readings_rows", 0) // 10)
        total = 0
        while left > 0:
            chunk = min(left, self._drop_chunk_rows)
            for attempt in range(2):
                try:
                    dropped = self._run(functools.partial(self._drop_oldest, chunk, _now_ms(), "disk_full"))
                except sqlite3.OperationalError as err:
                    if not _is_full(err):
                        raise
                    if attempt:
                        return total > 0  # no room even to delete
                    self._checkpoint()
                    self._use_reserve()
                    self._apply_budget(force=True)
                else:
                    break
            if not dropped:
                break
            total += dropped
            left -= dropped
        self._checkpoint()  # the WAL that held the drops goes back to the filesystem
        if total:
            log.warning("store %s: disk full: dropped the oldest %d telemetry rows", self.path, total)
        return total > 0

    def _run(self, body: Callable[[], T]) -> T:
        with self._transaction():
            return body()

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
        On a full disk room is made (see ``_write``: in the end the oldest tenth of the buffered
        telemetry is dropped and reported) and the cycle retried; if there is still no room,
        StoreFull is raised, nothing of this cycle is stored, and it is counted as dropped and
        reported with the next commit that succeeds.
        """
        if not readings and not events and not counters and also is None:
            return
        try:
            inserted = self._heal_append(readings, events, counters, also)
        except StoreFull:
            if not self._unstored.readings and not self._unstored.events:
                log.error(  # noqa: TRY400 - the state change is the message; the traceback says nothing more
                    "store %s: disk full and nothing left to drop; poll cycles are not stored", self.path
                )
            self._unstored.add(readings, events)
            raise
        if inserted is not None:
            first_id, rows, named = inserted
            self._recent.add(first_id, rows)
            for series, (device, point) in named.items():
                self._remember_series(series, device, point)
        if self._unstored.readings or self._unstored.events:
            log.warning("store %s: commits succeed again", self.path)
            self._unstored = _Unstored()
        if self._counters["readings_rows"] > self.max_telemetry_rows:
            self._enforce_bound(readings[-1].ts_ms if readings else _now_ms())
        for listener in self.listeners:
            try:
                listener(readings, events)
            except Exception:  # a consumer's bug must not look like a failed commit
                log.exception("store listener %r failed", listener)

    @_heals
    def _heal_append(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event],
        counters: dict[str, int] | None,
        also: Callable[[sqlite3.Connection], None] | None,
    ) -> _Inserted | None:
        return self._write(lambda: self._append(readings, events, counters, also))

    def _append(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event],
        counters: dict[str, int] | None,
        also: Callable[[sqlite3.Connection], None] | None,
    ) -> _Inserted | None:
        """The cycle's statements; returns the telemetry rows inserted and the id of the first."""
        db = self._db
        inserted = None
        if also is not None:
            also(db)
        if counters:
            self._counters.update(counters)
        if readings:
            named: dict[int, tuple[str, str]] = {}
            first_id = self._counters["readings_last_id"] + 1
            rows = self._rows_of(readings, first_id, named)
            db.executemany("INSERT INTO readings(id, series, ts_ms, value, flags) VALUES (?,?,?,?,?)", rows)
            self._counters["readings_last_id"] = first_id + len(rows) - 1
            inserted = (first_id, rows, named)
        if events:
            self._insert_events(events)
        for writer in self.writers:
            writer(db, readings, events)
        self._bump("readings_rows", len(readings))
        self._bump("telemetry_appended_total", len(readings))
        self._bump("events_appended_total", len(events))
        if self._unstored.readings or self._unstored.events:
            self._report_unstored()
        return inserted

    def _rows_of(
        self, readings: Sequence[Reading], first_id: int, named: dict[int, tuple[str, str]]
    ) -> list[tuple[Any, ...]]:
        """The insert tuples ``(id, series, ts_ms, value, flags)``: plain atomic values (rows kept
        for batches are then untracked by the garbage collector after its first look).  A series
        not seen before is named in this transaction; ``named`` collects it for after the commit."""
        ids = self._series_ids
        flags_of = _FLAGS
        rows = []
        row_id = first_id
        for r in readings:
            points = ids.get(r.device)
            series = points.get(r.point) if points is not None else None
            if series is None:
                series = self._name_series(r.device, r.point, named)
            value = r.value
            flags = flags_of[r.quality]
            rows.append((row_id, series, r.ts_ms, value, flags | 1 if value.__class__ is bool else flags))
            row_id += 1
        return rows

    def _name_series(self, device: str, point: str, named: dict[int, tuple[str, str]]) -> int:
        for series, name in named.items():
            if name == (device, point):
                return series
        row = self._db.execute("SELECT id FROM series WHERE device=? AND point=?", (device, point)).fetchone()
        if row is None:
            row = self._db.execute(
                "INSERT INTO series(device, point) VALUES (?,?) RETURNING id", (device, point)
            ).fetchone()
        named[row[0]] = (device, point)
        return int(row[0])

    def _report_unstored(self) -> None:
        lost = self._unstored
        self._bump("telemetry_appended_total", lost.readings)
        self._bump("telemetry_dropped_total", lost.readings)
        self._bump("events_lost_total", lost.events)
        self._insert_events(
            [
                Event(
                    GATEWAY_DEVICE,
                    "store.telemetry_dropped",
                    _now_ms(),
                    EventLevel.WARNING,
                    {
                        "count": lost.readings,
                        "events_lost": lost.events,
                        "first_ts_ms": lost.first_ts_ms,
                        "last_ts_ms": lost.last_ts_ms,
                        "policy": "drop_oldest_telemetry",
                        "reason": "disk_full",
                        "stage": "not_stored",
                    },
                )
            ]
        )
        self._bump("events_appended_total", 1)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; the in-memory counters are saved with it or restored."""
        saved = dict(self._counters)
        self._drops = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._save_counters(saved)
            self._db.execute("COMMIT")
            self._save_all_counters = False
        except BaseException:
            self._counters = saved
            if self._db.in_transaction:  # SQLITE_FULL and friends may have rolled back already
                with contextlib.suppress(sqlite3.Error):  # the error that matters is the first
                    self._db.execute("ROLLBACK")
            raise
        for reason, rows in self._drops:  # said once they are really gone
            log.warning("store %s: dropped %d oldest telemetry rows (%s)", self.path, rows, reason)

    def _insert_events(self, events: Sequence[Event]) -> None:
        self._db.executemany(
            "INSERT INTO events(device, kind, ts_ms, level, data) VALUES (?,?,?,?,?)",
            [(e.device, e.kind, e.ts_ms, e.level.value, json.dumps(e.data, ensure_ascii=False)) for e in events],
        )

    def _enforce_bound(self, now_ms: int) -> None:
        """Drop down to a low-water mark, not just under the bound: drops (and their events and
        log lines) then happen once per ~10 % of the bound, not once per poll cycle.  After the
        cycle's commit, in transactions of a bounded size (a poll cycle never waits for a delete
        of 10 % of the store, and the WAL stays within its room); if it fails (a full disk), the
        next cycle tries again."""
        low_water = self.max_telemetry_rows - max(1, self.max_telemetry_rows // 10)
        left = self._counters["readings_rows"] - low_water
        try:
            while left > 0:
                dropped = self._write(
                    functools.partial(self._drop_oldest, min(left, self._drop_chunk_rows), now_ms, "bound_rows")
                )
                if not dropped:
                    return  # only the batch in flight is left
                left -= dropped
        except (sqlite3.Error, StoreError) as err:
            log.warning("store %s: over its bound, dropping failed (%s); the next cycle tries again", self.path, err)

    def _drop_oldest(self, excess: int, now_ms: int, reason: str) -> int:
        in_flight = self._db.execute("SELECT last_id FROM pending WHERE lane='readings'").fetchone()
        floor_id = in_flight[0] if in_flight else 0
        row = self._db.execute(
            "SELECT count(*), min(ts_ms), max(ts_ms), min(id), max(id) FROM"
            " (SELECT id, ts_ms FROM readings WHERE id > ? ORDER BY id LIMIT ?)",
            (floor_id, excess),
        ).fetchone()
        dropped, first_ts, last_ts, first_id, upto = row
        if not dropped:
            return 0
        self._db.execute("DELETE FROM readings WHERE id > ? AND id <= ?", (floor_id, upto))
        self._bump("readings_rows", -dropped)
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
                        "first_id": first_id,
                        "last_id": upto,
                        "policy": "drop_oldest_telemetry",
                        "reason": reason,
                        "bound_rows": self.max_telemetry_rows,
                    },
                ),
            ]
        )
        self._bump("events_appended_total", 1)
        if reason != "disk_full":  # (those are said once for all their transactions)
            self._drops.append((reason, dropped))
        return int(dropped)

    def _bump(self, name: str, delta: int) -> None:
        self._counters[name] = self._counters.get(name, 0) + delta

    def _save_counters(self, before: dict[str, int]) -> None:
        """Write the counters this transaction changed (all of them in the first transaction on a
        file: counted at open or carried over to a fresh one)."""
        counters = self._counters
        if self._save_all_counters:
            changed: Iterable[tuple[str, int]] = counters.items()
        else:
            changed = [(name, value) for name, value in counters.items() if before.get(name) != value]
        if changed:
            self._db.executemany("INSERT OR REPLACE INTO counters(name, value) VALUES (?,?)", changed)

    def _reload_counters(self) -> None:
        self._counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    # ---- outbox -------------------------------------------------------------------------

    @_heals
    def lane_state(self, lane: Lane) -> LaneState:
        row = self._db.execute("SELECT next_seq, prev_digest FROM lane_state WHERE lane=?", (lane.value,)).fetchone()
        return LaneState(row[0], row[1]) if row else LaneState(1, GENESIS_DIGEST)

    @_heals
    def pending(self, lane: Lane) -> PendingBatch | None:
        row = self._db.execute(
            "SELECT seq, last_id, count, digest, frame FROM pending WHERE lane=?", (_TABLE[lane],)
        ).fetchone()
        return PendingBatch(lane, row[0], row[1], row[2], row[3], bytes(row[4])) if row else None

    @_heals
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

    @_heals
    def drop_pending(self, lane: Lane) -> None:
        """Forget the in-flight batch (its rows stay and are batched again under the same seq).
        Used when the gateway key changed: the old frame's signature would never verify."""
        self._write(lambda: self._db.execute("DELETE FROM pending WHERE lane=?", (_TABLE[lane],)))

    @_heals
    def form_batch(self, lane: Lane, max_records: int, build: FrameBuilder) -> PendingBatch | None:
        """Return the in-flight batch of ``lane``, or form the next one from the oldest rows."""
        for _ in range(3):
            existing = self.pending(lane)
            if existing is not None:
                return existing
            taken = self._rows_for_batch(lane, max_records)
            if taken is None:
                return None
            wire, last_id = taken
            state = self.lane_state(lane)
            frame, digest = build(lane, state.next_seq, state.prev_digest, wire)
            batch = PendingBatch(lane, state.next_seq, last_id, len(wire), digest, frame)
            if self._write(functools.partial(self._record_pending, batch)):
                if lane is Lane.TELEMETRY:
                    self._recent.forget_through(last_id)
                return batch
            # the frame's rows were dropped to make room for the frame itself: form it again
        raise StoreFull(f"{self.path}: no room for the next {lane.value} batch")

    def _record_pending(self, batch: PendingBatch) -> bool:
        """Record the in-flight batch, unless rows it covers were dropped (to make room for it,
        on a retry of this transaction): then False."""
        (count,) = self._db.execute(
            f"SELECT count(*) FROM {_TABLE[batch.lane]} WHERE id <= ?",  # noqa: S608 - fixed names
            (batch.last_id,),
        ).fetchone()
        if count != batch.count:
            return False
        self._db.execute(
            "INSERT INTO pending(lane, seq, last_id, count, digest, frame) VALUES (?,?,?,?,?,?)",
            (_TABLE[batch.lane], batch.seq, batch.last_id, batch.count, batch.digest, batch.frame),
        )
        return True

    def _rows_for_batch(self, lane: Lane, limit: int) -> tuple[list[list[Any]], int] | None:
        """(wire rows, id of the last) for the next batch of ``lane``; None when it has none."""
        if lane is Lane.TELEMETRY:
            recent = self._recent_rows(limit)
            if recent is not None:
                return recent
        rows = self._read_rows(lane, limit)
        if not rows:
            return None
        return [row for _, row in rows], rows[-1][0]

    def _recent_rows(self, limit: int) -> tuple[list[list[Any]], int] | None:
        """The next telemetry batch from the rows kept in memory, when they start where the store
        does (``_record_pending`` then checks the store holds exactly these ids)."""
        if not len(self._recent):
            return None
        (first_id,) = self._db.execute("SELECT min(id) FROM readings").fetchone()
        rows = None if first_id is None else self._recent.since(first_id, limit)
        if not rows:
            return None
        wire = self._wire_readings(rows)
        return wire, first_id + len(wire) - 1

    def _wire_readings(self, rows: Iterable[tuple[Any, ...]], max_bytes: int = MAX_BATCH_RAW_BYTES) -> list[list[Any]]:
        """Stored readings ``(id, series, ts_ms, value, flags)`` in wire form, stopping early once
        their encoded size would pass ``max_bytes``.  A boolean read back from SQLite is an
        integer again: its flag turns it back."""
        names = self._series_names
        quality_of = _QUALITY_OF_FLAGS
        wire: list[list[Any]] = []
        size = 0
        for _, series, ts, v, flags in rows:
            name = names.get(series)
            device, point, row_bytes = name if name is not None else self._series_name(series)
            size += row_bytes + len(v) if v.__class__ is str else row_bytes + 9
            if wire and size > max_bytes:
                break
            wire.append([device, point, ts, bool(v) if flags & 1 else v, quality_of[flags]])
        return wire

    def _read_rows(self, lane: Lane, limit: int, max_bytes: int = MAX_BATCH_RAW_BYTES) -> list[tuple[int, list[Any]]]:
        """The oldest ``limit`` rows of ``lane`` in wire form, stopping early once their encoded
        size would pass ``max_bytes`` (a batch of large events must still fit a frame)."""
        if lane is Lane.TELEMETRY:
            stored = self._db.execute(
                "SELECT id, series, ts_ms, value, flags FROM readings ORDER BY id LIMIT ?", (limit,)
            )
            rows = stored.fetchall()
            return [(row[0], wire) for row, wire in zip(rows, self._wire_readings(rows, max_bytes), strict=False)]
        out: list[tuple[int, list[Any]]] = []
        size = 0
        cur = self._db.execute("SELECT id, device, kind, ts_ms, level, data FROM events ORDER BY id LIMIT ?", (limit,))
        for i, d, k, ts, lvl, data in cur:
            size += _ROW_OVERHEAD + len(d) + len(k) + len(data)
            if out and size > max_bytes:
                break
            out.append((i, [d, k, ts, lvl, json.loads(data)]))
        return out

    @_heals
    @_heals
    def ack(self, lane: Lane, seq: int, *, now_ms: int | None = None) -> None:
        """The cloud has stored batch ``seq``: delete its rows and advance the lane, atomically.
        With ``now_ms``, also remember when (``last_acks``: sync lag for status and metrics)."""
        pend = self.pending(lane)
        if pend is None or pend.seq != seq:
            raise StoreError(f"ack for {lane.value} seq {seq}, but pending is {pend.seq if pend else None}")

        def body() -> None:
            db = self._db
            db.execute(f"DELETE FROM {_TABLE[lane]} WHERE id <= ?", (pend.last_id,))  # noqa: S608
            db.execute("DELETE FROM pending WHERE lane=?", (_TABLE[lane],))
            db.execute(
                "INSERT OR REPLACE INTO lane_state(lane, next_seq, prev_digest) VALUES (?,?,?)",
                (lane.value, seq + 1, pend.digest),
            )
            if now_ms is not None:
                db.execute(
                    "INSERT OR REPLACE INTO lane_acks(lane, seq, acked_ms) VALUES (?,?,?)", (lane.value, seq, now_ms)
                )
            if lane is Lane.TELEMETRY:
                self._bump("readings_rows", -pend.count)
            self._bump(f"{lane.value}_acked_total", pend.count)

        self._write(body)

    @_heals
    @_heals
    def quarantine(self, lane: Lane, seq: int, reason: str, now_ms: int) -> int:
        """The cloud refused batch ``seq`` as something no resend can fix (malformed, too large):
        keep its frame in ``quarantine`` (never deleted: an operator can inspect and re-send it),
        take its rows out of the lane and report it on the events lane, so the lane moves on
        instead of resending the same refused batch forever.  The seq is not advanced: the next
        batch takes it.  Returns how many records were set aside."""
        pend = self.pending(lane)
        if pend is None or pend.seq != seq:
            raise StoreError(f"quarantine of {lane.value} seq {seq}, but pending is {pend.seq if pend else None}")

        def body() -> None:
            db = self._db
            db.execute(
                "INSERT INTO quarantine(lane, seq, count, frame, reason, quarantined_ms) VALUES (?,?,?,?,?,?)",
                (lane.value, seq, pend.count, pend.frame, reason[:2000], now_ms),
            )
            db.execute(f"DELETE FROM {_TABLE[lane]} WHERE id <= ?", (pend.last_id,))  # noqa: S608
            db.execute("DELETE FROM pending WHERE lane=?", (_TABLE[lane],))
            if lane is Lane.TELEMETRY:
                self._bump("readings_rows", -pend.count)
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
            self._bump("events_appended_total", 1)

        self._write(body)
        log.error("%s batch %d (%d records) quarantined: %s", lane.value, seq, pend.count, reason)
        return pend.count

    @_heals
    def quarantined(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, lane, seq, count, reason, quarantined_ms FROM quarantine ORDER BY id")
        keys = ("id", "lane", "seq", "count", "reason", "quarantined_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @_heals
    def rewind(self, lane: Lane, expected_seq: int, last_digest: str, reason: str, now_ms: int) -> None:
        """Adopt the cloud's view of the lane; unacknowledged rows stay and are re-batched."""

        def body() -> None:
            db = self._db
            db.execute("DELETE FROM pending WHERE lane=?", (_TABLE[lane],))
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
            self._bump("events_appended_total", 1)

        self._write(body)
        log.warning("lane %s rewound to seq %d (%s)", lane.value, expected_seq, reason)

    # ---- device status ------------------------------------------------------------------

    @_heals
    def save_status(self, statuses: dict[str, dict[str, Any]], now_ms: int) -> None:
        """Keep the latest status of every device (for `gasiot edge status`) and send it to the
        cloud as one ``device.status`` event per device, in one transaction."""

        def body() -> None:
            self._db.executemany(
                "INSERT OR REPLACE INTO device_status(device, updated_ms, data) VALUES (?,?,?)",
                [(d, now_ms, json.dumps(v)) for d, v in statuses.items()],
            )
            self._insert_events([Event(d, "device.status", now_ms, EventLevel.INFO, v) for d, v in statuses.items()])
            self._bump("events_appended_total", len(statuses))

        self._write(body)

    @_heals
    def device_statuses(self) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._db.execute("SELECT device, updated_ms, data FROM device_status ORDER BY device").fetchall()
        return {d: (ts, json.loads(data)) for d, ts, data in rows}

    # ---- inspection ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    @_heals
    def buffered(self, lane: Lane) -> int:
        (n,) = self._db.execute(f"SELECT count(*) FROM {_TABLE[lane]}").fetchone()  # noqa: S608
        return int(n)

    @_heals
    def depth(self, lane: Lane) -> int:
        """The same number as ``buffered(lane)`` without counting rows (for metrics scraped while
        millions of rows wait): telemetry keeps a row counter, and event ids have no gaps
        (AUTOINCREMENT; only ``ack`` deletes events, from the front)."""
        if lane is Lane.TELEMETRY:
            return int(self._counters["readings_rows"])
        first, last = self._db.execute("SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)").fetchone()
        return 0 if first is None else int(last) - int(first) + 1

    @_heals
    def oldest_unsent_ms(self, lane: Lane) -> int | None:
        """ts_ms of the record first in line on ``lane`` (not yet acknowledged), None if empty."""
        row = self._db.execute(f"SELECT ts_ms FROM {_TABLE[lane]} ORDER BY id LIMIT 1").fetchone()  # noqa: S608
        return None if row is None else int(row[0])

    @_heals
    def last_acks(self) -> dict[Lane, int]:
        """When the cloud last acknowledged a batch of each lane (UTC epoch ms; lanes never acked
        since this was recorded are missing)."""
        rows = self._db.execute("SELECT lane, acked_ms FROM lane_acks").fetchall()
        return {Lane(lane): int(ms) for lane, ms in rows}

    @_heals
    def read_all(self, lane: Lane) -> list[list[Any]]:
        """Every buffered row in wire form (diagnostics and tests)."""
        return [row for _, row in self._read_rows(lane, -1, max_bytes=2**62)]
