"""The API around ingest: every route's access rule, what is public, the status and statistics
endpoints, and what a caller sees when the server fails unexpectedly."""

from __future__ import annotations

import logging
import re

import pytest

from cloud.app import ENROLL, RANK, ROUTES, SIGNED, Route, check_routes, create_app
from cloud.repository import SqliteRepository
from cloud.server import create_api_key
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, Lane, Reading

# Deliberately public: adding a route to this set is a decision for review, not a default.
PUBLIC_PATHS = {("GET", "/openapi.json"), ("GET", "/healthz")}
ROLE_BY_RANK = {rank: role for role, rank in RANK.items()}


def concrete(path: str) -> str:
    return re.sub(r"{\w+}", "x", path)


def test_public_routes_are_exactly_the_allowlist() -> None:
    public = {(r.method, r.path) for r in ROUTES if r.auth not in RANK and r.auth not in (SIGNED, ENROLL)}
    assert public == PUBLIC_PATHS


def test_an_unknown_auth_value_is_refused_at_startup(tmp_path) -> None:
    typo = Route("GET", "/v1/oops", ROUTES[0].handler, "veiwer", "misspelt role")
    with pytest.raises(ValueError, match="unknown auth"):
        check_routes((*ROUTES, typo))
    repo = SqliteRepository(tmp_path / "c.db")
    try:
        create_app(repo)  # the real table passes
    finally:
        repo.close()


@pytest.mark.parametrize("route", [r for r in ROUTES if r.auth in RANK], ids=lambda r: f"{r.method} {r.path}")
async def test_every_role_route_refuses_missing_wrong_and_lower_keys(cloud, http, route: Route) -> None:
    url = cloud.url + concrete(route.path)
    for headers in ({}, cloud.auth("gsk_not-a-key"), {"Authorization": "Basic eA=="}):
        async with http.request(route.method, url, json={}, headers=headers) as r:
            assert r.status == 401, (route.path, headers)
            assert (await r.json())["error"] == "unauthenticated"
    required = RANK[str(route.auth)]
    for rank in range(1, required):
        key = create_api_key(cloud.repo, ROLE_BY_RANK[rank], "test")
        async with http.request(route.method, url, json={}, headers=cloud.auth(key)) as r:
            assert r.status == 403, (route.path, ROLE_BY_RANK[rank])
    # and the required role gets past the check (the dummy request may still be a 400 or 404)
    key = create_api_key(cloud.repo, ROLE_BY_RANK[required], "test")
    async with http.request(route.method, url, json={}, headers=cloud.auth(key)) as r:
        assert r.status not in (401, 403, 500), (route.path, await r.text())


async def test_healthz_says_only_ok(cloud, http) -> None:
    async with http.get(f"{cloud.url}/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})


async def test_ingest_stats_are_for_viewers(batches, http) -> None:
    cloud = batches.cloud
    await batches.post(batches.frame(1, GENESIS_DIGEST, [Reading("box", "p", 1, 1.0).to_wire()]))
    await batches.post(batches.frame(1, GENESIS_DIGEST, [Reading("box", "p", 1, 1.0).to_wire()], created_ms=2))
    async with http.get(f"{cloud.url}/v1/ingest/stats") as r:
        assert r.status == 401
    viewer = create_api_key(cloud.repo, "viewer", "test")
    async with http.get(f"{cloud.url}/v1/ingest/stats", headers=cloud.auth(viewer)) as r:
        assert r.status == 200
        stats = await r.json()
    assert stats == {
        "stored_batches": 1,
        "stored_records": 1,
        "ignored_records": 0,
        "duplicates": 0,
        "refused": {"conflict": 1},
    }


async def test_an_unexpected_error_is_a_json_500_that_leaks_nothing(batches, monkeypatch, caplog) -> None:
    def broken(data: bytes, now_ms: int, **_: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(batches.cloud.ingestor, "ingest", broken)
    with caplog.at_level(logging.ERROR, logger="cloud.app"):
        reply = await batches.post(batches.frame(1, GENESIS_DIGEST, []))
    assert (reply.status, reply.content_type, reply.body["error"]) == (500, "application/json", "internal")
    assert "hunter2" not in reply.body["detail"] and "RuntimeError" not in reply.body["detail"]
    incident = reply.body["detail"].rsplit(" ", 1)[-1]
    assert "hunter2" in caplog.text and incident in caplog.text  # the operator can find it
    monkeypatch.undo()
    assert (await batches.post(batches.frame(1, GENESIS_DIGEST, []))).status == 200


async def test_gateway_status_reports_how_old_the_newest_data_is(batches) -> None:
    from cloud.app import now_ms

    hour_ago = now_ms() - 3_600_000
    rows = [Reading("box", "p", hour_ago + i, float(i)).to_wire() for i in range(5)]
    f1 = batches.frame(1, GENESIS_DIGEST, rows)
    assert (await batches.post(f1)).status == 200
    # an older backlog arriving later does not make the data look older than it is
    older = [Reading("box", "p", hour_ago - 60_000, 0.0).to_wire()]
    assert (await batches.post(batches.frame(2, f1.header.digest(), older))).status == 200

    status = await batches.get(f"/v1/gateways/{batches.gateway_id}")
    telemetry = status["lanes"]["telemetry"]
    assert telemetry["newest_ts_ms"] == hour_ago + 4
    assert 3_600_000 - 4 <= telemetry["data_lag_ms"] < 3_600_000 + 60_000
    assert 0 <= telemetry["lag_ms"] < 60_000  # the batch itself arrived just now
    assert status["lanes"]["events"]["data_lag_ms"] is None  # nothing sent on that lane yet
    assert batches.cloud.repo.lane(batches.gateway_id, Lane.TELEMETRY).newest_ts_ms == hour_ago + 4

    ev = [Event("box", "device_online", hour_ago - 5_000).to_wire()]
    assert (await batches.post(batches.frame(1, GENESIS_DIGEST, ev, lane=Lane.EVENTS))).status == 200
    status = await batches.get(f"/v1/gateways/{batches.gateway_id}")
    assert status["lanes"]["events"]["newest_ts_ms"] == hour_ago - 5_000
