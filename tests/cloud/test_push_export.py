"""Push export: an application's token subscribes a webhook to chosen properties and alarms of a
gateway in its scope; each stored batch's matching records are POSTed; a receiver that fails is
retried, then the failure recorded; out-of-scope gateways are refused; the subscription is
audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from cloud.appkeys import AUDIT, EXPORTS, REGISTRY
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane, Reading
from support.wait import eventually


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[dict[str, Any]], str, list[int]]]:
    received: list[dict[str, Any]] = []
    failures = [0]  # answer 503 this many times first

    async def hook(request: web.Request) -> web.Response:
        if failures[0]:
            failures[0] -= 1
            return web.Response(status=503)
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/in", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield received, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/in", failures  # type: ignore[union-attr]
    await runner.cleanup()


async def test_push_export(batches, http, receiver) -> None:
    cloud = batches.cloud
    received, url, failures = receiver
    registry = cloud.app[REGISTRY]
    registry.add_org("north", "北区")
    registry.add_station("gs-01", "north", "1号站", "gate")
    registry.provision_gateway("gw-sec", "gs-01")
    app_token = cloud.auth(cloud.token("integrator", "org:north"))
    body = {"url": url, "gateway_id": "gw-sec", "points": ["gate.flow"], "alarms": True}
    async with http.post(f"{cloud.url}/v1/exports", json=body, headers=app_token) as r:
        assert r.status == 201, await r.text()
        sub_id = (await r.json())["id"]
    other = cloud.auth(cloud.token("integrator", "org:south"))
    async with http.post(f"{cloud.url}/v1/exports", json=body, headers=other) as r:
        assert r.status == 400 and "outside" in (await r.json())["detail"]
    failures[0] = 2  # the receiver is briefly down: retried, then delivered
    rows = [Reading("gate", "flow", 1000, 812.5), Reading("gate", "temperature", 1000, 15.0)]
    first = batches.frame(1, GENESIS_DIGEST, [r.to_wire() for r in rows])
    assert (await batches.post(first)).status == 200
    await eventually(lambda: len(received) == 1, what="readings pushed")
    assert received[0]["records"] == [
        {"device": "gate", "point": "flow", "ts_ms": 1000, "value": 812.5, "quality": "good"}
    ]  # only the chosen property
    alarm = Event(
        "gate", "alarm.raised", 2000, EventLevel.MAJOR, {"alarm_id": "gate.flow.hi", "state": "active_unacked"}
    )
    events = batches.frame(1, GENESIS_DIGEST, [alarm.to_wire()], lane=Lane.EVENTS)
    assert (await batches.post(events)).status == 200
    await eventually(lambda: len(received) == 2, what="alarm pushed")
    assert received[1]["records"][0]["alarm_id"] == "gate.flow.hi"
    deliveries = cloud.app[EXPORTS].log_entries(sub_id)
    assert [d["status"] for d in deliveries] == ["delivered", "delivered"]
    assert [e.action for e in cloud.app[AUDIT].entries(action_prefix="export.subscribe")] == ["export.subscribe"]
    failures[0] = 100  # down for good: four attempts, then recorded as failed
    second = batches.frame(2, first.header.digest(), [Reading("gate", "flow", 3000, 800.0).to_wire()])
    assert (await batches.post(second)).status == 200
    await eventually(lambda: cloud.app[EXPORTS].log_entries(sub_id)[-1]["status"] == "failed", what="failure recorded")
    assert "503" in cloud.app[EXPORTS].log_entries(sub_id)[-1]["detail"]
