"""The tamper-evident audit log (O-8.4a/b): every login, configuration change, command, alarm
acknowledgement, export and permission change, appended to one hash chain.

Entry ``n`` stores ``hash_n = SM3(hash_{n-1} || canonical JSON of entry n)`` (``hash_0`` is
all zeros).  Changing, deleting or re-ordering any entry breaks every hash after it;
``verify()`` (``gasiot cloud audit verify``) recomputes the chain and names the first entry that
does not match.  Cutting entries off the end leaves a valid shorter chain, so the head
(sequence number and hash) is what an auditor writes down or exports: ``verify(expect_head=…)``
proves the log still extends it.

Security rules run on each append and add ``security.*`` entries (repeated login failures,
logins at odd hours, a command outside the operator's stations).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cloud.sqldb import Dialect, SqlDb, Tx
from gascore.contract import canonical_json
from gascore.crypto import sm3_digest

log = logging.getLogger(__name__)

GENESIS = "0" * 64

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS audit(
            seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS audit_by_actor ON audit(actor, ts_ms);
        CREATE INDEX IF NOT EXISTS audit_by_action ON audit(action, ts_ms);
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS audit(
            seq BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS audit_by_actor ON audit(actor, ts_ms);
        CREATE INDEX IF NOT EXISTS audit_by_action ON audit(action, ts_ms);
    """,
}

_COLUMNS = "seq, ts_ms, actor, action, target, outcome, detail, source, prev_hash, hash"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts_ms: int
    actor: str  # "user:alice", "apikey:admin:1a2b3c4d", "gateway:gw-1", "system"
    action: str  # "auth.login", "command.create", "user.role_change", "export.readings", "security.*"
    target: str  # what it was done to: "gateway:gw-1", "user:bob", ""
    outcome: str  # "ok", "denied", "failed"
    detail: dict[str, Any]
    source: str  # client address or "cli"
    prev_hash: str
    hash: str

    def body(self) -> bytes:
        return canonical_json(
            {
                "seq": self.seq,
                "ts_ms": self.ts_ms,
                "actor": self.actor,
                "action": self.action,
                "target": self.target,
                "outcome": self.outcome,
                "detail": self.detail,
                "source": self.source,
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "source": self.source,
            "hash": self.hash,
        }


def chain_hash(prev_hash: str, body: bytes) -> str:
    return sm3_digest(bytes.fromhex(prev_hash) + body).hex()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problem: str | None = None  # the first broken entry, in words


Rule = Callable[["AuditLog", Tx, AuditEntry], list[tuple[str, str, dict[str, Any]]]]
"""(log, transaction, new entry) → security findings (action suffix, target, detail)."""


@dataclass
class AuditLog:
    db: SqlDb
    clock: Callable[[], int]
    rules: list[Rule] = field(default_factory=list)
    utc_offset_h: float = 8.0  # odd hours are judged in the utility's local time (China: UTC+8)

    def __post_init__(self) -> None:
        self.db.script(DDL)

    def append(
        self,
        actor: str,
        action: str,
        *,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        source: str = "",
    ) -> AuditEntry:
        with self.db.transaction() as tx:
            entry = self._append(tx, actor, action, target, outcome, detail or {}, source)
            for rule in self.rules:
                for suffix, finding_target, finding in rule(self, tx, entry):
                    flagged = self._append(tx, "system", f"security.{suffix}", finding_target, "flagged", finding, "")
                    log.warning("security event %s: %s %s", flagged.action, finding_target, finding)
        return entry

    def _append(
        self, tx: Tx, actor: str, action: str, target: str, outcome: str, detail: dict[str, Any], source: str
    ) -> AuditEntry:
        if tx.dialect == "postgresql":
            # One chain: appenders in other processes wait here, so seq and prev_hash never fork.
            tx.execute("LOCK TABLE audit IN EXCLUSIVE MODE")
        head = tx.one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
        detail = json.loads(canonical_json(detail))  # stored exactly as hashed
        draft = AuditEntry(seq, self.clock(), actor, action, target, outcome, detail, source, prev, "")
        entry = AuditEntry(**{**_fields(draft), "hash": chain_hash(prev, draft.body())})
        tx.execute(
            f"INSERT INTO audit({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - constant columns
            (
                entry.seq,
                entry.ts_ms,
                entry.actor,
                entry.action,
                entry.target,
                entry.outcome,
                canonical_json(entry.detail).decode(),
                entry.source,
                entry.prev_hash,
                entry.hash,
            ),
        )
        return entry

    # ---- reading ------------------------------------------------------------------------------

    def entries(
        self,
        *,
        after_seq: int = 0,
        limit: int = 1000,
        actor: str | None = None,
        action_prefix: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > ?"  # noqa: S608 - constant columns
        args: list[Any] = [after_seq]
        if actor is not None:
            sql += " AND actor = ?"
            args.append(actor)
        if action_prefix is not None:
            sql += " AND action LIKE ?"
            args.append(action_prefix.replace("%", "").replace("_", "\\_") + "%")
            sql += " ESCAPE '\\'"
        if from_ms is not None:
            sql += " AND ts_ms >= ?"
            args.append(from_ms)
        if to_ms is not None:
            sql += " AND ts_ms < ?"
            args.append(to_ms)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [_entry(r) for r in self.db.query(sql, args)]

    def _all(self, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        after = 0
        while True:
            rows = self.db.query(
                f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                (after, batch),
            )
            yield from rows
            if len(rows) < batch:
                return
            after = int(rows[-1][0])

    def verify(self, *, expect_head: tuple[int, str] | None = None) -> Verification:
        prev, expected_seq, count = GENESIS, 1, 0
        for row in self._all():
            seq = int(row[0])
            if seq != expected_seq:
                return Verification(False, count, expected_seq - 1, prev, f"entry {expected_seq} is missing")
            try:
                entry = _entry(row)
            except ValueError:
                return Verification(False, count, seq - 1, prev, f"entry {seq}: its detail is not valid JSON")
            if entry.prev_hash != prev:
                problem = f"entry {seq}: prev_hash does not match entry {seq - 1}"
                return Verification(False, count, seq - 1, prev, problem)
            if chain_hash(prev, entry.body()) != entry.hash:
                return Verification(False, count, seq - 1, prev, f"entry {seq} was altered (its hash does not match)")
            prev, expected_seq, count = entry.hash, seq + 1, count + 1
        if expect_head is not None:
            head_seq, head_hash = expect_head
            if count < head_seq:
                return Verification(False, count, count, prev, f"the log ends at entry {count}, before {head_seq}")
            kept = self.db.one("SELECT hash FROM audit WHERE seq = ?", (head_seq,))
            if kept is None or str(kept[0]) != head_hash:
                return Verification(False, count, count, prev, f"entry {head_seq} is not the head written down")
        return Verification(True, count, count, prev)

    def local_hour(self, ts_ms: int) -> int:
        return (dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC) + dt.timedelta(hours=self.utc_offset_h)).hour


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in AuditEntry.__slots__}


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, ts, actor, action, target, outcome, detail, source, prev, digest = row
    return AuditEntry(
        int(seq), int(ts), actor, action, target, outcome, json.loads(detail), source, str(prev), str(digest)
    )


# ---- security rules ---------------------------------------------------------------------------

FAILURES_FLAGGED = 5
FAILURE_WINDOW_MS = 10 * 60_000
ODD_HOURS = range(0, 6)  # 00:00–05:59 local


def repeated_login_failures(log_: AuditLog, tx: Tx, entry: AuditEntry) -> list[tuple[str, str, dict[str, Any]]]:
    if entry.action != "auth.login" or entry.outcome != "denied":
        return []
    (n,) = tx.one(
        "SELECT count(*) FROM audit WHERE action = 'auth.login' AND outcome = 'denied' AND target = ? AND ts_ms >= ?",
        (entry.target, entry.ts_ms - FAILURE_WINDOW_MS),
    ) or (0,)
    if int(n) != FAILURES_FLAGGED:  # flag once per burst, at the threshold
        return []
    return [("repeated_login_failures", entry.target, {"failures": int(n), "window_s": FAILURE_WINDOW_MS // 1000})]


def login_at_odd_hours(log_: AuditLog, tx: Tx, entry: AuditEntry) -> list[tuple[str, str, dict[str, Any]]]:
    if entry.action != "auth.login" or entry.outcome != "ok":
        return []
    hour = log_.local_hour(entry.ts_ms)
    if hour not in ODD_HOURS:
        return []
    return [("login_odd_hours", entry.target, {"local_hour": hour, "source": entry.source})]


def command_outside_scope(log_: AuditLog, tx: Tx, entry: AuditEntry) -> list[tuple[str, str, dict[str, Any]]]:
    if entry.action != "command.create" or entry.outcome != "denied" or entry.detail.get("reason") != "scope":
        return []
    return [("command_outside_scope", entry.actor, {"target": entry.target, "type": entry.detail.get("type")})]


DEFAULT_RULES: list[Rule] = [repeated_login_failures, login_at_odd_hours, command_outside_scope]
