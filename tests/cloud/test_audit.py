"""The audit log's hash chain on SQLite and on a real PostgreSQL: appends chain with SM3, verify
proves the chain and names the first altered, missing or re-ordered entry, a truncated tail is
caught against the head an auditor wrote down, and the security rules flag what they should."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.audit import DEFAULT_RULES, FAILURES_FLAGGED, GENESIS, AuditLog, chain_hash
from cloud.sqldb import SqlDb, open_db


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDb]:
    url = f"sqlite:///{tmp_path / 'cloud.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = open_db(url)
    yield database
    database.close()


class Clock:
    def __init__(self) -> None:
        # 10:00 in Beijing: not an odd hour
        self.ms = int(dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC).timestamp() * 1000)

    def __call__(self) -> int:
        self.ms += 1000
        return self.ms


def test_chain_appends_and_verifies(db: SqlDb) -> None:
    audit = AuditLog(db, Clock())
    first = audit.append("user:alice", "auth.login", target="user:alice", source="10.0.0.5")
    second = audit.append(
        "user:alice", "command.create", target="gateway:gw-1", detail={"type": "point.write", "值": 3.2}
    )
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert second.prev_hash == first.hash and second.hash == chain_hash(first.hash, second.body())
    result = audit.verify()
    assert result.ok and result.entries == 2 and result.head_hash == second.hash
    assert [e.action for e in audit.entries(action_prefix="command.")] == ["command.create"]
    assert audit.entries(actor="user:alice")[1].detail == {"type": "point.write", "值": 3.2}


def test_tampering_is_found(db: SqlDb) -> None:
    audit = AuditLog(db, Clock())
    for i in range(5):
        audit.append("user:bob", "config.change", target=f"station:s{i}", detail={"version": i})
    head = audit.verify()
    with db.transaction() as tx:
        tx.execute("UPDATE audit SET detail = ? WHERE seq = 3", ('{"version":99}',))
    result = audit.verify()
    assert not result.ok and result.problem == "entry 3 was altered (its hash does not match)"
    with db.transaction() as tx:
        tx.execute("UPDATE audit SET detail = ? WHERE seq = 3", ('{"version":2}',))
    assert audit.verify().ok
    with db.transaction() as tx:
        tx.execute("DELETE FROM audit WHERE seq = 2")
    assert audit.verify().problem == "entry 2 is missing"
    with db.transaction() as tx:
        tx.execute("DELETE FROM audit WHERE seq >= 2")
    short = audit.verify()
    assert short.ok and short.entries == 1  # a cut tail leaves a valid chain ...
    caught = audit.verify(expect_head=(head.head_seq, head.head_hash))
    assert not caught.ok and "before 5" in (caught.problem or "")  # ... which the written-down head exposes


def test_security_rules(db: SqlDb) -> None:
    clock = Clock()
    audit = AuditLog(db, clock, rules=DEFAULT_RULES)
    for _ in range(FAILURES_FLAGGED + 2):
        audit.append("anonymous", "auth.login", target="user:eve", outcome="denied", source="203.0.113.9")
    flagged = audit.entries(action_prefix="security.")
    assert [(e.action, e.target) for e in flagged] == [("security.repeated_login_failures", "user:eve")]
    clock.ms = int(dt.datetime(2026, 11, 26, 19, 30, tzinfo=dt.UTC).timestamp() * 1000)  # 03:30 in Beijing
    audit.append("user:alice", "auth.login", target="user:alice", source="10.0.0.5")
    assert audit.entries(action_prefix="security.login_odd_hours")[0].detail["local_hour"] == 3
    audit.append(
        "user:op",
        "command.create",
        target="gateway:gw-9",
        outcome="denied",
        detail={"reason": "scope", "type": "point.write"},
    )
    assert audit.entries(action_prefix="security.command_outside_scope")[0].target == "user:op"
    assert audit.verify().ok  # findings are chained like everything else
