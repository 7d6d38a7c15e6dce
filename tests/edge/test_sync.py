"""The sync client against real HTTP servers: the real cloud, and small servers that answer the
way a broken network or an older cloud would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from drivers.backoff import Backoff
from edge.runtime import _retire_frames_of_other_keys
from edge.store import SqliteStore
from edge.sync import SyncClient
from gascore.contract import parse_frame
from gascore.crypto import Signer, generate_signer
from gascore.records import Event, EventLevel, Lane, Reading
from support.cloud import CloudHandle, running_cloud
from support.http import serve_batches
from support.reliability import record


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "edge.db")
    yield s  # type: ignore[misc]
    s.close()


def client(store: SqliteStore, signer: Signer, url: str) -> SyncClient:
    return SyncClient(
        store=store,
        signer=signer,
        gateway_id="gw-sync",
        cloud_url=url,
        codec="cbor+zstd",
        max_batch_records=10,
        max_batch_age_s=0.01,
        timeout_s=5,
        backoff=Backoff(0.01, 0.02),
    )


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudHandle]:
    async with running_cloud(tmp_path / "cloud.db") as handle:
        yield handle


async def enroll(cloud: CloudHandle, signer: Signer) -> None:
    async with aiohttp.ClientSession(headers=cloud.auth()) as http:
        async with http.post(f"{cloud.url}/v1/enrollment-tokens", json={"gateway_id": "gw-sync"}) as r:
            token = (await r.json())["token"]
        body = {
            "gateway_id": "gw-sync",
            "token": token,
            "alg": signer.alg,
            "public_key": signer.public_key_bytes().hex(),
        }
        async with http.post(f"{cloud.url}/v1/enroll", json=body) as r:
            assert r.status == 201


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading("dev", "p", 1_000 + i, float(i)) for i in range(start, start + n)]


async def test_events_go_first_then_telemetry_in_order(store, cloud, sm2_signer) -> None:
    await enroll(cloud, sm2_signer)
    store.append(readings(25), [Event("dev", "tamper", 5, EventLevel.MAJOR)])
    sync = client(store, sm2_signer, cloud.url)
    async with aiohttp.ClientSession() as http:
        assert await sync.sync_once(http, flush=True)
        assert cloud.rows("SELECT count(*) FROM events")[0][0] == 1
        assert cloud.rows("SELECT count(*) FROM readings")[0][0] == 0
        await sync.drain(http)
    assert [v for (v,) in cloud.rows("SELECT value FROM readings ORDER BY rowid")] == [float(i) for i in range(25)]
    assert store.buffered(Lane.TELEMETRY) == 0 and store.lane_state(Lane.TELEMETRY).next_seq == 4


async def test_an_ack_that_does_not_match_the_batch_deletes_nothing(store, sm2_signer) -> None:
    async def liar(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "stored", "lane": "telemetry", "seq": 1, "digest": "00" * 32})

    runner, url = await serve_batches(liar)
    try:
        store.append(readings(5))
        sync = client(store, sm2_signer, url)
        async with aiohttp.ClientSession() as http:
            assert not await sync.sync_once(http, flush=True)
        assert store.buffered(Lane.TELEMETRY) == 5 and store.pending(Lane.TELEMETRY) is not None
        assert "ack does not match" in (sync.stats.last_error or "")
    finally:
        await runner.cleanup()


async def test_a_gap_reply_rewinds_the_lane_without_losing_rows(store, sm2_signer) -> None:
    async def older_cloud(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"error": "gap", "detail": "", "lane": "telemetry", "expected_seq": 7, "last_digest": "ab" * 32},
            status=409,
        )

    runner, url = await serve_batches(older_cloud)
    try:
        store.append(readings(5))
        sync = client(store, sm2_signer, url)
        async with aiohttp.ClientSession() as http:
            assert not await sync.sync_once(http, flush=True)
        assert store.lane_state(Lane.TELEMETRY).next_seq == 7
        assert store.pending(Lane.TELEMETRY) is None and store.buffered(Lane.TELEMETRY) == 5
        assert any(e[1] == "sync.rewound" for e in store.read_all(Lane.EVENTS))
        assert sync.stats.rewinds == 1
    finally:
        await runner.cleanup()


async def test_lost_acks_are_resent_and_stored_exactly_once(store, cloud, sm2_signer) -> None:
    """A proxy forwards every batch to the cloud (which stores it) but loses the first reply of
    every batch: the edge resends, the cloud answers `duplicate`, nothing is stored twice."""
    await enroll(cloud, sm2_signer)
    seen: set[bytes] = set()

    async def lossy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with aiohttp.ClientSession() as http, http.post(f"{cloud.url}/v1/batches", data=body) as r:
            reply = await r.read()
            status = r.status
        if body not in seen:
            seen.add(body)
            raise web.HTTPBadGateway(text="reply lost")
        return web.Response(body=reply, status=status, content_type="application/json")

    runner, url = await serve_batches(lossy)
    try:
        store.append(readings(35))
        sync = client(store, sm2_signer, url)
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                await sync.sync_once(http, flush=True)
                if store.buffered(Lane.TELEMETRY) == 0:
                    break
        assert store.buffered(Lane.TELEMETRY) == 0
        assert cloud.rows("SELECT count(*) FROM readings")[0][0] == 35
        assert cloud.ingestor.stats.duplicates == 4 == sync.stats.duplicates  # 4 batches, each acked twice
        stored = int(cloud.rows("SELECT count(*) FROM readings")[0][0])
        distinct = int(cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0][0])
        record(
            "acks lost after the cloud committed (the retry must be idempotent)",
            runs=1,
            faults=4,
            lost=35 - stored,
            duplicates=stored - distinct,
            note="4 batches acked twice",
        )
    finally:
        await runner.cleanup()


async def test_a_frame_signed_by_a_previous_key_is_signed_again(store, cloud) -> None:
    old, new = generate_signer(), generate_signer()
    store.append(readings(5))
    frame = store.form_batch(Lane.TELEMETRY, 10, client(store, old, cloud.url)._build)
    assert frame is not None and parse_frame(frame.frame).header.key_id == old.key_id
    _retire_frames_of_other_keys(store, new)  # what Gateway.build does at start-up
    await enroll(cloud, new)
    sync = client(store, new, cloud.url)
    async with aiohttp.ClientSession() as http:
        await sync.drain(http)
    assert cloud.rows("SELECT count(*) FROM readings")[0][0] == 5


async def test_a_batch_refused_as_malformed_is_quarantined_and_the_lane_moves_on(store, cloud, sm2_signer) -> None:
    await enroll(cloud, sm2_signer)
    store.append(readings(5))
    # A row no batch may carry (the device sent NUL in a name: a bug upstream of the store).
    store.append([Reading("de\x00v", "p", 2000, 1.0)])
    store.append(readings(5, start=100))
    sync = client(store, sm2_signer, cloud.url)
    async with aiohttp.ClientSession() as http:
        for _ in range(10):  # bounded: the refused batch is set aside, the rest drains
            await sync.sync_once(http, flush=True)
            if store.buffered(Lane.TELEMETRY) == 0 and store.buffered(Lane.EVENTS) == 0:
                break
    (kept,) = store.quarantined()
    assert (kept["lane"], kept["count"]) == ("telemetry", 10) and "malformed" in kept["reason"]
    assert sync.stats.quarantined == 10
    assert store.counters()["telemetry_quarantined_total"] == 10
    # the other batch arrived, and the cloud was told what was set aside
    assert cloud.rows("SELECT count(*) FROM readings")[0][0] == 1
    (event,) = cloud.rows("SELECT data FROM events WHERE kind = 'store.batch_quarantined'")
    assert '"count":10' in event[0]
