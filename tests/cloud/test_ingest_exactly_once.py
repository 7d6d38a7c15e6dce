"""Storage is exactly-once by the records' natural keys, not only by seq and digest: an edge whose
database went back in time (restored from a backup) re-sends rows the cloud holds under new
seqs, and they must not be stored twice."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from cloud.repository import SqliteRepository
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane, Reading

T0 = 1_700_000_000_000


def readings(ts: range, value: float = 1.0) -> list[list[object]]:
    return [Reading("box", "outlet_pressure", T0 + i, value + i).to_wire() for i in ts]


async def test_readings_repeated_under_a_new_seq_are_stored_once(batches, caplog) -> None:
    f1 = batches.frame(1, GENESIS_DIGEST, readings(range(5)))
    assert (await batches.post(f1)).body["ignored"] == 0
    with caplog.at_level(logging.WARNING, logger="cloud.ingest"):
        reply = await batches.post(batches.frame(2, f1.header.digest(), readings(range(3, 8))))
    assert (reply.status, reply.body["status"], reply.body["seq"], reply.body["ignored"]) == (200, "stored", 2, 2)
    assert batches.count("readings") == 8
    series = await batches.get(f"/v1/gateways/{batches.gateway_id}/devices/box/series?point=outlet_pressure&from=0")
    assert [p["ts_ms"] - T0 for p in series["points"]] == list(range(8))
    stats = batches.cloud.ingestor.stats
    assert (stats.stored_records, stats.ignored_records, stats.stored_batches) == (8, 2, 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 5 records were already stored" in warnings[0].getMessage()


async def test_an_edge_restored_from_a_backup_does_not_duplicate(batches) -> None:
    f1 = batches.frame(1, GENESIS_DIGEST, readings(range(5)))
    f2 = batches.frame(2, f1.header.digest(), readings(range(5, 8)))
    for f in (f1, f2):
        assert (await batches.post(f)).status == 200
    # The restored edge still holds rows 5..7 unacknowledged, polls 8..9 and batches them as seq 2.
    restored = batches.frame(2, f1.header.digest(), readings(range(5, 10)), created_ms=T0 + 99)
    reply = await batches.post(restored)
    assert (reply.status, reply.body["error"], reply.body["expected_seq"]) == (409, "conflict", 3)
    # It rewinds to the cloud's view and re-sends the same rows as seq 3.
    rewound = batches.frame(3, reply.body["last_digest"], readings(range(5, 10)))
    reply = await batches.post(rewound)
    assert (reply.status, reply.body["ignored"]) == (200, 3)
    assert batches.count("readings") == 10
    assert batches.count("(SELECT DISTINCT device, point, ts_ms FROM readings)") == 10


async def test_a_resent_reading_never_overwrites_the_stored_one(batches) -> None:
    f1 = batches.frame(1, GENESIS_DIGEST, readings(range(3), value=1.0))
    await batches.post(f1)
    await batches.post(batches.frame(2, f1.header.digest(), readings(range(3), value=50.0)))
    latest = await batches.get(f"/v1/gateways/{batches.gateway_id}/latest")
    assert [(p["ts_ms"] - T0, p["value"]) for p in latest["latest"]] == [(2, 3.0)]
    assert [v for (v,) in batches.cloud.rows("SELECT value FROM readings ORDER BY ts_ms")] == [1.0, 2.0, 3.0]


async def test_events_repeated_under_a_new_seq_are_stored_once(batches) -> None:
    def ev(ts: int, data: dict[str, object]) -> list[object]:
        return Event("box", "device_offline", T0 + ts, EventLevel.WARNING, data).to_wire()

    f1 = batches.frame(1, GENESIS_DIGEST, [ev(1, {"a": 1, "b": "x"}), ev(2, {})], lane=Lane.EVENTS)
    assert (await batches.post(f1)).status == 200
    again = [
        ev(1, {"b": "x", "a": 1}),  # the same data in another key order is the same event
        ev(1, {"a": 2, "b": "x"}),  # other data at the same time is another event
        ev(3, {}),
    ]
    reply = await batches.post(batches.frame(2, f1.header.digest(), again, lane=Lane.EVENTS, codec="json"))
    assert (reply.status, reply.body["ignored"]) == (200, 1)
    assert batches.count("events") == 4


async def test_a_database_from_before_the_unique_keys_is_deduplicated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteRepository(path).close()
    db = sqlite3.connect(path)
    with db:  # the old schema: no unique indexes, no newest_ts_ms, duplicates stored
        db.execute("DROP INDEX readings_once")
        db.execute("DROP INDEX events_once")
        db.execute("ALTER TABLE lanes DROP COLUMN newest_ts_ms")
        db.execute("INSERT INTO lanes VALUES ('gw', 'telemetry', 2, ?, 5)", (GENESIS_DIGEST,))
        for seq in (1, 2):
            db.execute("INSERT INTO readings VALUES ('gw', 'box', 'p', 1, 1.5, NULL, 'good', ?)", (seq,))
            db.execute("INSERT INTO events VALUES ('gw', 'box', 'k', 1, 'info', '{}', ?)", (seq,))
    db.close()

    repo = SqliteRepository(path)
    try:
        assert repo.counts("gw") == {"readings": 1, "events": 1}
        assert repo.lane("gw", Lane.TELEMETRY).last_seq == 2
        assert repo.lane("gw", Lane.TELEMETRY).newest_ts_ms is None
    finally:
        repo.close()
