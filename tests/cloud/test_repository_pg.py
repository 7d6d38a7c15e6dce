"""PostgresRepository beyond the shared contract suite: the same answers as SQLite for the same
history (values of every type, commands), monthly partitions, the seq rule between independent
repositories (as between processes), and the connection pool."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.repository import GatewayRecord, Repository, SeqConflict, SqliteRepository, open_repository
from cloud.repository_pg import PoolTimeout, PostgresRepository
from gascore.contract import GENESIS_DIGEST, PROTOCOL_VERSION, BatchHeader
from gascore.records import Event, EventLevel, Lane, Quality, Reading

GW = "gw-pg"
NOW = 1_764_000_000_000  # 2025-11-24T16:00Z
DAY = 86_400_000


def header(lane: Lane, seq: int, count: int) -> BatchHeader:
    return BatchHeader(
        v=PROTOCOL_VERSION,
        gateway_id=GW,
        lane=lane,
        seq=seq,
        prev_digest=GENESIS_DIGEST,
        created_ms=1,
        count=count,
        codec="json",
        key_id="00" * 8,
        sig_alg="ed25519",
        body_digest="0" * 64,
    )


def store(repo: Repository, seq: int, records: list[Reading] | list[Event], lane: Lane = Lane.TELEMETRY) -> int:
    return repo.store_batch(header(lane, seq, len(records)), f"{seq:064x}", records, now_ms=NOW)


@pytest.fixture
def pg(pg_url: str) -> PostgresRepository:
    repo = PostgresRepository(pg_url)
    repo.register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    return repo


def history(repo: Repository) -> dict[str, Any]:
    """One history of telemetry, events and commands; everything the repository answers."""
    values: list[Any] = [1.5, -0.0, 7, 2**53 + 1, -(2**63), 2**63 - 1, True, False, "", "开阀", None, 3.0]
    readings = [Reading("d", f"p{i}", NOW + i, v) for i, v in enumerate(values)]
    readings.append(Reading("d", "p0", NOW + 100, 9.5, Quality.UNCERTAIN_STALE))
    readings.append(Reading("d", "p0", NOW + 100, 1.0))  # same key again in the batch: the first wins
    readings += [Reading("d", "t", -(2**63), 1.0), Reading("d", "t", 2**63 - 1, 2.0)]  # any int64 time
    out: dict[str, Any] = {"ignored": [store(repo, 1, readings)]}
    out["ignored"].append(store(repo, 2, [Reading("d", "p0", NOW + 100, 2.0), Reading("d", "p0", NOW - 5, 0.5)]))
    cmd = repo.add_command(GW, "alarm.ack", {"alarm": "a1"}, "alice", NOW, expires_ms=NOW + 60_000)
    dual = repo.add_command(
        GW, "service.call", {"s": 1}, "alice", NOW, expires_ms=NOW + 60_000, needs_confirmation=True
    )
    out["confirm"] = [
        repo.confirm_command(GW, dual.id, "alice", NOW),
        repo.confirm_command(GW, dual.id, "bob", NOW),
        repo.confirm_command(GW, dual.id, "carol", NOW),
        repo.confirm_command(GW, 999, "bob", NOW),
    ]
    out["after"] = [(c.id, c.type, c.body, c.expires_ms) for c in repo.commands_after(GW, 0, 10, NOW + 1)]
    result = Event("gw", "command.result", NOW + 2, EventLevel.INFO, {"command_id": cmd.id, "status": "done"})
    events = [result, Event("d", "tamper", NOW, EventLevel.MAJOR, {"door": "open", "n": [1, 2]})]
    out["ignored"].append(store(repo, 1, events, Lane.EVENTS))
    out["ignored"].append(store(repo, 2, events[1:], Lane.EVENTS))
    out["latest"] = repo.latest(GW, None)
    out["series"] = {p: repo.series(GW, "d", p, 0, NOW + DAY, 100) for p in ("p0", "p3", "p6", "p9", "p10")}
    out["series"]["t"] = repo.series(GW, "d", "t", -(2**63), 2**63 - 1, 100)
    out["events"] = repo.events(GW, None, 0, NOW + DAY, 100)
    out["commands"] = [{k: v for k, v in c.items() if k != "nonce"} for c in repo.commands(GW, 10)]
    out["counts"] = repo.counts(GW)
    out["lanes"] = [repo.lane(GW, lane) for lane in Lane]
    return out


def test_same_history_same_answers_as_sqlite(pg: PostgresRepository, tmp_path: Path) -> None:
    sqlite = SqliteRepository(tmp_path / "cloud.db")
    sqlite.register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    expected, got = history(sqlite), history(pg)
    assert got == expected
    # `==` takes True for 1 and 7.0 for 7: the types must match too.
    assert [type(r["value"]) for r in got["latest"]] == [type(r["value"]) for r in expected["latest"]]
    assert {r["point"]: r["value"] for r in got["latest"]}["p3"] == 2**53 + 1
    sqlite.close()
    pg.close()


def test_readings_are_partitioned_by_month_within_a_window(pg: PostgresRepository, pg_url: str) -> None:
    store(pg, 1, [Reading("d", "p", NOW, 1.0), Reading("d", "p", NOW + 10 * DAY, 2.0)])  # Nov and Dec 2025
    store(pg, 2, [Reading("d", "p", 1, 3.0), Reading("d", "p", NOW + 400 * DAY, 4.0)])  # 1970, 2027: default
    with psycopg.connect(pg_url) as db:
        placed = db.execute("SELECT tableoid::regclass::text, ts_ms FROM readings ORDER BY ts_ms").fetchall()
    assert placed == [
        ("readings_default", 1),
        ("readings_p2025_11", NOW),
        ("readings_p2025_12", NOW + 10 * DAY),
        ("readings_default", NOW + 400 * DAY),
    ]
    assert [r["ts_ms"] for r in pg.series(GW, "d", "p", 0, 2**62, 10)] == [1, NOW, NOW + 10 * DAY, NOW + 400 * DAY]
    pg.close()
    again = PostgresRepository(pg_url)  # a second process knows the partitions and keeps going
    store(again, 3, [Reading("d", "p", NOW + 1, 5.0)])
    assert again.counts(GW)["readings"] == 5
    again.close()


def test_a_month_already_in_the_default_partition_stays_there(pg_url: str) -> None:
    early = PostgresRepository(pg_url, months_ahead=0)
    early.register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    store(early, 1, [Reading("d", "p", NOW + 10 * DAY, 1.0)])  # December, beyond the window: default
    late = PostgresRepository(pg_url, months_ahead=1)  # now December is in the window, but has rows
    store(late, 2, [Reading("d", "p", NOW + 11 * DAY, 2.0)])
    assert late.counts(GW)["readings"] == 2
    early.close()
    late.close()


def test_the_seq_rule_holds_between_independent_repositories(pg_url: str) -> None:
    """Two repositories (as two processes would have), eight writers, one seq: one wins."""
    repos = [PostgresRepository(pg_url), PostgresRepository(pg_url)]
    repos[0].register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    for seq in (1, 2, 3):
        start = threading.Barrier(8)
        outcomes: list[str] = []

        def write(n: int, seq: int = seq, start: threading.Barrier = start, outcomes: list[str] = outcomes) -> None:
            start.wait(timeout=10)
            try:
                store(repos[n % 2], seq, [Reading("d", "p", NOW + seq * 1000 + n, float(n))])
                outcomes.append("stored")
            except SeqConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["conflict"] * 7 + ["stored"]
    assert repos[1].lane(GW, Lane.TELEMETRY).last_seq == 3
    assert repos[1].counts(GW)["readings"] == 3  # the refused batches left nothing behind
    for r in repos:
        r.close()


def test_the_batches_key_backs_the_lane_check(pg: PostgresRepository, pg_url: str) -> None:
    """Should a lane row ever fall behind its batches, the unique (gateway, lane, seq) key still
    refuses a second batch 1, as a SeqConflict, and the connection stays usable."""
    store(pg, 1, [Reading("d", "p", NOW, 1.0)])
    with psycopg.connect(pg_url) as db:
        db.execute("UPDATE lanes SET last_seq = 0")
    with pytest.raises(SeqConflict):
        store(pg, 1, [Reading("d", "p", NOW + 1, 2.0)])
    assert pg.counts(GW)["readings"] == 1
    pg.close()


def test_the_pool_is_bounded_and_shared_by_threads(pg_url: str) -> None:
    repo = PostgresRepository(pg_url, pool_size=2, pool_timeout_s=0.2)
    errors: list[BaseException] = []

    def query() -> None:
        try:
            for _ in range(20):
                repo.count_api_keys()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=query) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    with repo._pool.connection(), repo._pool.connection(), pytest.raises(PoolTimeout):
        repo.count_api_keys()
    assert repo.count_api_keys() == 0  # the connections came back
    repo.close()


def test_open_repository_takes_postgresql_urls(pg_url: str) -> None:
    repo = open_repository(pg_url)
    assert isinstance(repo, PostgresRepository)
    repo.close()
