"""One suite every cloud Repository implementation must pass (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.repository import GatewayRecord, Repository, SeqConflict, SqliteRepository
from cloud.repository_pg import PostgresRepository
from gascore.contract import GENESIS_DIGEST, PROTOCOL_VERSION, BatchHeader
from gascore.records import Event, EventLevel, Lane, Quality, Reading

# Each factory gets the test's request and tmp_path (PostgreSQL asks for a fresh database).
IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], Repository]] = {
    "sqlite": lambda request, tmp: SqliteRepository(tmp / "cloud.db"),
    "postgresql": lambda request, tmp: PostgresRepository(request.getfixturevalue("pg_url")),
}
GW = "gw-contract"


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    r = IMPLEMENTATIONS[request.param](request, tmp_path)
    r.register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    yield r
    r.close()


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


def digest(n: int) -> str:
    return f"{n:064x}"


def store(repo: Repository, seq: int, records: list[Reading] | list[Event], lane: Lane = Lane.TELEMETRY) -> int:
    return repo.store_batch(header(lane, seq, len(records)), digest(seq), records, now_ms=1000 + seq)


def test_lanes_advance_one_seq_at_a_time(repo: Repository) -> None:
    assert repo.lane(GW, Lane.TELEMETRY).last_seq == 0
    store(repo, 1, [Reading("d", "p", 10, 1.0)])
    lane = repo.lane(GW, Lane.TELEMETRY)
    assert (lane.last_seq, lane.last_digest) == (1, digest(1))
    assert repo.batch_digest(GW, Lane.TELEMETRY, 1) == digest(1)
    with pytest.raises(SeqConflict):
        store(repo, 3, [Reading("d", "p", 11, 1.0)])
    with pytest.raises(SeqConflict):
        store(repo, 1, [Reading("d", "p", 12, 1.0)])
    assert repo.counts(GW)["readings"] == 1  # refused batches left nothing behind
    assert repo.lane(GW, Lane.EVENTS).last_seq == 0  # lanes are independent


def test_values_keep_types_and_quality(repo: Repository) -> None:
    store(
        repo,
        1,
        [
            Reading("d", "b", 1, True),
            Reading("d", "i", 1, 7),
            Reading("d", "f", 1, 2.5),
            Reading("d", "n", 1, None, Quality.BAD_COMM_FAILURE),
        ],
    )
    latest = {r["point"]: r for r in repo.latest(GW, "d")}
    assert latest["b"]["value"] is True and latest["i"]["value"] == 7 and type(latest["i"]["value"]) is int
    assert latest["f"]["value"] == 2.5 and latest["n"]["value"] is None
    assert latest["n"]["quality"] == "bad/comm_failure"


def test_a_record_already_held_is_not_stored_twice(repo: Repository) -> None:
    assert store(repo, 1, [Reading("d", "p", 10, 1.0), Reading("d", "p", 11, 2.0)]) == 0
    assert store(repo, 2, [Reading("d", "p", 11, 2.0), Reading("d", "p", 12, 3.0)]) == 1
    assert [r["ts_ms"] for r in repo.series(GW, "d", "p", 0, 100, 10)] == [10, 11, 12]
    event = Event("d", "tamper", 5, EventLevel.MAJOR, {"door": "open"})
    assert store(repo, 1, [event], Lane.EVENTS) == 0
    assert store(repo, 2, [event], Lane.EVENTS) == 1
    assert len(repo.events(GW, None, 0, 100, 10)) == 1


def test_latest_only_moves_forward_in_time(repo: Repository) -> None:
    store(repo, 1, [Reading("d", "p", 20, 2.0)])
    store(repo, 2, [Reading("d", "p", 10, 1.0)])  # late-arriving older reading
    (row,) = repo.latest(GW, "d")
    assert (row["ts_ms"], row["value"]) == (20, 2.0)


def test_series_and_events_respect_range_filter_and_limit(repo: Repository) -> None:
    store(repo, 1, [Reading("d", "p", ts, float(ts)) for ts in range(0, 100, 10)] + [Reading("e", "p", 50, -1.0)])
    assert [r["ts_ms"] for r in repo.series(GW, "d", "p", 20, 60, 100)] == [20, 30, 40, 50]
    assert len(repo.series(GW, "d", "p", 0, 1000, 3)) == 3
    store(repo, 1, [Event("d", "a", 5, EventLevel.INFO), Event("e", "b", 6, EventLevel.INFO)], Lane.EVENTS)
    assert [e["device"] for e in repo.events(GW, "e", 0, 100, 10)] == ["e"]
    assert repo.events(GW, None, 6, 7, 10)[0]["kind"] == "b"


def test_enrollment_tokens_are_single_use_bound_and_expire(repo: Repository) -> None:
    repo.add_enrollment_token("h1", "gw-a", expires_ms=100, now_ms=0)
    assert not repo.consume_enrollment_token("h1", "gw-b", now_ms=1)
    assert not repo.consume_enrollment_token("h1", "gw-a", now_ms=100)  # expired
    repo.add_enrollment_token("h2", "gw-a", expires_ms=100, now_ms=0)
    assert repo.consume_enrollment_token("h2", "gw-a", now_ms=1)
    assert not repo.consume_enrollment_token("h2", "gw-a", now_ms=2)


def test_api_keys_map_to_roles(repo: Repository) -> None:
    assert repo.api_key_role("nope") is None
    repo.add_api_key("hash", "operator", "t", 0)
    assert repo.api_key_role("hash") == "operator" and repo.count_api_keys() == 1
