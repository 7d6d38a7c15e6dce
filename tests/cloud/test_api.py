"""The API around ingest: every route's access rule, what is public, the status and statistics
endpoints, and what a caller sees when the server fails unexpectedly."""

from __future__ import annotations

import logging
import re

import pytest

from cloud.access import PERMISSIONS, ROLE_PERMISSIONS, ROLES
from cloud.app import AUTHENTICATED, ENROLL, ROUTES, SIGNED, Route, check_routes, create_app
from cloud.repository import SqliteRepository
from cloud.server import create_api_key
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, Lane, Reading

# Deliberately public: adding a route to this set is a decision for review, not a default.
PUBLIC_PATHS = {
    ("GET", "/openapi.json"),
    ("GET", "/healthz"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/password"),  # the old password is the credential (an expired one cannot log in)
    # the web console: one page and its static files, no data (that comes from this API, with a session)
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/static/{name}"),
}
CREDENTIALED = [r for r in ROUTES if r.auth in PERMISSIONS or r.auth == AUTHENTICATED]


def concrete(path: str) -> str:
    return re.sub(r"{\w+}", "x", path)


def test_public_routes_are_exactly_the_allowlist() -> None:
    credentials = (SIGNED, ENROLL, AUTHENTICATED)
    public = {(r.method, r.path) for r in ROUTES if r.auth not in PERMISSIONS and r.auth not in credentials}
    assert public == PUBLIC_PATHS


def test_every_permission_is_checked_somewhere_and_the_auditor_sees_only_the_audit() -> None:
    used = {r.auth for r in ROUTES if r.auth in PERMISSIONS}
    # checked inside handlers rather than per route: service commands, unmasked customer fields
    in_handlers = {"command.service", "export.sensitive"}
    assert set(PERMISSIONS) - used <= in_handlers | {"config.write", "firmware.write"} - used
    assert ROLE_PERMISSIONS["auditor"] == frozenset({"audit.read"})


def test_an_unknown_auth_value_is_refused_at_startup(tmp_path) -> None:
    typo = Route("GET", "/v1/oops", ROUTES[0].handler, "data.raed", "misspelt permission")
    with pytest.raises(ValueError, match="unknown auth"):
        check_routes((*ROUTES, typo))
    repo = SqliteRepository(tmp_path / "c.db")
    try:
        create_app(repo)  # the real table passes
    finally:
        repo.close()


@pytest.mark.parametrize("route", CREDENTIALED, ids=lambda r: f"{r.method} {r.path}")
async def test_route_table_times_roles(cloud, http, route: Route) -> None:
    """Every credentialed route × every role: allowed exactly when the role has the route's
    permission; no credential or a wrong one is 401."""
    url = cloud.url + concrete(route.path)
    for headers in ({}, cloud.auth("gsk_not-a-key"), cloud.auth("gss_not-a-session"), {"Authorization": "Basic eA=="}):
        async with http.request(route.method, url, json={}, headers=headers) as r:
            assert r.status == 401, (route.path, headers)
            assert (await r.json())["error"] == "unauthenticated"
    for role in ROLES:
        allowed = route.auth == AUTHENTICATED or route.auth in ROLE_PERMISSIONS[role]
        async with http.request(route.method, url, json={}, headers=cloud.auth(cloud.token(role))) as r:
            if allowed:  # past the check (the dummy request may still be a 400 or 404)
                assert r.status not in (401, 403, 500), (route.path, role, await r.text())
            else:
                assert r.status == 403, (route.path, role, r.status)


async def test_healthz_says_only_ok(cloud, http) -> None:
    async with http.get(f"{cloud.url}/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})


async def test_ingest_stats_are_for_the_platform_team(batches, http) -> None:
    cloud = batches.cloud
    await batches.post(batches.frame(1, GENESIS_DIGEST, [Reading("box", "p", 1, 1.0).to_wire()]))
    await batches.post(batches.frame(1, GENESIS_DIGEST, [Reading("box", "p", 1, 1.0).to_wire()], created_ms=2))
    async with http.get(f"{cloud.url}/v1/ingest/stats") as r:
        assert r.status == 401
    viewer = create_api_key(cloud.repo, "viewer", "test")
    async with http.get(f"{cloud.url}/v1/ingest/stats", headers=cloud.auth(viewer)) as r:
        assert r.status == 403  # traffic across every utility is not a viewer's business
    async with http.get(f"{cloud.url}/v1/ingest/stats", headers=cloud.auth(cloud.token("maintainer"))) as r:
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


async def test_a_gateway_clock_ahead_is_flagged(batches, http) -> None:
    import time

    cloud = batches.cloud
    ahead = int(time.time() * 1000) + 3_600_000  # the gateway's clock an hour ahead
    frame = batches.frame(1, GENESIS_DIGEST, [Reading("box", "p", ahead, 1.0).to_wire()], created_ms=ahead)
    assert (await batches.post(frame)).status == 200
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec", headers=cloud.auth()) as r:
        clock = (await r.json())["clock"]
    assert 3_590_000 < clock["offset_ms"] <= 3_600_000
    assert "ahead" in clock["warning"]
