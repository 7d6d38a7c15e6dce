"""The registry over the real API: stations and placement, gateway lifecycle enforced at ingest,
thing models uploaded and versioned, devices registering themselves from the gateway's events,
customer details masked by role, and a monitoring point's history across a device swap."""

from __future__ import annotations

from pathlib import Path

from cloud.appkeys import AUDIT
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane, Reading

MODEL = (Path(__file__).resolve().parents[2] / "configs" / "models" / "gas_detector.yaml").read_text(encoding="utf-8")


async def api(http, cloud, method: str, path: str, token: str, **kw) -> tuple[int, dict]:
    async with http.request(method, cloud.url + path, headers=cloud.auth(token), **kw) as r:
        return r.status, await r.json(content_type=None)


async def setup_station(http, cloud, token: str) -> None:
    assert (await api(http, cloud, "POST", "/v1/orgs", token, json={"id": "north", "name": "北区"}))[0] == 201
    body = {"id": "gs-01", "org_id": "north", "name": "1号门站", "type": "gate", "lat": 31.23, "lon": 121.47}
    assert (await api(http, cloud, "POST", "/v1/stations", token, json=body))[0] == 201
    status, reply = await api(http, cloud, "POST", "/v1/stations", token, json={**body, "id": "gs-02", "type": "pump"})
    assert status == 400 and "station type" in reply["detail"]


async def test_stations_placement_and_lifecycle_at_ingest(batches, http) -> None:
    cloud = batches.cloud
    maintainer = cloud.token("maintainer")
    await setup_station(http, cloud, maintainer)
    status, near = await api(http, cloud, "GET", "/v1/stations?near=31.24,121.48&radius_km=5", maintainer)
    assert [s["id"] for s in near["stations"]] == ["gs-01"] and near["stations"][0]["distance_km"] < 2
    assert (await api(http, cloud, "POST", "/v1/gateways/gw-sec/placement", maintainer, json={"station_id": "gs-01"}))[
        0
    ] == 201
    assert (await api(http, cloud, "POST", "/v1/gateways/gw-sec/lifecycle", maintainer, json={"state": "active"}))[
        0
    ] == 200
    first = batches.frame(1, GENESIS_DIGEST, [Reading("d1", "p", 1, 1.0).to_wire()])
    assert (await batches.post(first)).status == 200
    status, reply = await api(
        http, cloud, "POST", "/v1/gateways/gw-sec/lifecycle", maintainer, json={"state": "suspended"}
    )
    assert (status, reply["was"]) == (200, "active")
    second = batches.frame(2, first.header.digest(), [Reading("d1", "p", 2, 2.0).to_wire()])
    refused = await batches.post(second)
    assert refused.status == 403 and refused.body["error"] == "gateway_not_active"
    assert (await api(http, cloud, "POST", "/v1/gateways/gw-sec/lifecycle", maintainer, json={"state": "active"}))[
        0
    ] == 200
    assert (await batches.post(second)).status == 200
    assert (await api(http, cloud, "POST", "/v1/gateways/gw-sec/lifecycle", maintainer, json={"state": "retired"}))[
        0
    ] == 200
    status, reply = await api(
        http, cloud, "POST", "/v1/gateways/gw-sec/lifecycle", maintainer, json={"state": "active"}
    )
    assert status == 400 and "retired; it cannot become active" in reply["detail"]
    actions = [e.action for e in cloud.app[AUDIT].entries(action_prefix="registry.")]
    assert actions.count("registry.gateway_lifecycle") == 4


async def test_models_devices_and_masking(batches, http) -> None:
    cloud = batches.cloud
    maintainer, admin, viewer = cloud.token("maintainer"), cloud.token("admin"), cloud.token("viewer")
    await setup_station(http, cloud, maintainer)
    await api(http, cloud, "POST", "/v1/gateways/gw-sec/placement", maintainer, json={"station_id": "gs-01"})
    status, reply = await api(http, cloud, "POST", "/v1/models", maintainer, data=MODEL.encode())
    assert status == 201 and reply["id"] == "gas_detector"
    status, reply = await api(http, cloud, "POST", "/v1/models", maintainer, data=MODEL.encode())
    assert status == 400 and "exists; upload a new version" in reply["detail"]
    assert (await api(http, cloud, "POST", "/v1/models", maintainer, data=b"id: [broken"))[0] == 400
    announce = [
        Event(
            "det-1",
            "device.announce",
            10,
            EventLevel.INFO,
            {"model": "gas_detector", "model_version": 1, "serial": "SN1"},
        ),
        Event("box-9", "device.announce", 11, EventLevel.INFO, {"model": "unknown_model", "serial": "SN9"}),
    ]
    frame = batches.frame(1, GENESIS_DIGEST, [e.to_wire() for e in announce], lane=Lane.EVENTS)
    assert (await batches.post(frame)).status == 200
    _, listing = await api(http, cloud, "GET", "/v1/devices?gateway_id=gw-sec", maintainer)
    lifecycles = {d["device_id"]: d["lifecycle"] for d in listing["devices"]}
    assert lifecycles == {"det-1": "active", "box-9": "provisioned"}  # unknown model: held for approval
    assert (
        await api(
            http, cloud, "POST", "/v1/gateways/gw-sec/devices/box-9/lifecycle", maintainer, json={"state": "active"}
        )
    )[0] == 200
    details = {"contact_name": "王小明", "contact_phone": "13812345678", "address": "上海市黄浦区人民路100号"}
    assert (await api(http, cloud, "PATCH", "/v1/gateways/gw-sec/devices/det-1", maintainer, json=details))[0] == 200
    _, seen_by_viewer = await api(http, cloud, "GET", "/v1/devices?gateway_id=gw-sec", viewer)
    masked = next(d for d in seen_by_viewer["devices"] if d["device_id"] == "det-1")
    assert (masked["contact_name"], masked["contact_phone"]) == ("王**", "138****5678")
    assert masked["address"] == "上海市黄浦区…"  # the district, not the door
    _, seen_by_admin = await api(http, cloud, "GET", "/v1/devices?gateway_id=gw-sec", admin)
    assert next(d for d in seen_by_admin["devices"] if d["device_id"] == "det-1")["contact_phone"] == "13812345678"
    audit_text = str([e.detail for e in cloud.app[AUDIT].entries()])
    assert "13812345678" not in audit_text  # the audit names the fields changed, not the customer's data


async def test_point_history_across_a_device_swap(batches, http) -> None:
    cloud = batches.cloud
    maintainer, viewer = cloud.token("maintainer"), cloud.token("viewer")
    await setup_station(http, cloud, maintainer)
    await api(http, cloud, "POST", "/v1/gateways/gw-sec/placement", maintainer, json={"station_id": "gs-01"})
    rows = [Reading("old-meter", "flow", t, float(t)) for t in (100, 200)] + [
        Reading("new-meter", "flow", t, float(t)) for t in (150, 300, 400)
    ]
    assert (await batches.post(batches.frame(1, GENESIS_DIGEST, [r.to_wire() for r in rows]))).status == 200
    assert (
        await api(
            http,
            cloud,
            "POST",
            "/v1/points",
            maintainer,
            json={"id": "gs-01.flow", "station_id": "gs-01", "name": "出站流量", "unit": "Nm3/h"},
        )
    )[0] == 201
    bind = {"gateway_id": "gw-sec", "device_id": "old-meter", "property": "flow", "from_ms": 0}
    assert (await api(http, cloud, "POST", "/v1/points/gs-01.flow/bindings", maintainer, json=bind))[0] == 201
    swap = {**bind, "device_id": "new-meter", "from_ms": 250}
    assert (await api(http, cloud, "POST", "/v1/points/gs-01.flow/bindings", maintainer, json=swap))[0] == 201
    status, reply = await api(
        http, cloud, "POST", "/v1/points/gs-01.flow/bindings", maintainer, json={**bind, "from_ms": 10}
    )
    assert status == 400 and "must start later" in reply["detail"]  # a binding cannot start before the current one
    _, series = await api(http, cloud, "GET", "/v1/points/gs-01.flow/series?from=0&to=1000", viewer)
    assert [(p["device"], p["ts_ms"]) for p in series["points"]] == [
        ("old-meter", 100),
        ("old-meter", 200),
        ("new-meter", 300),
        ("new-meter", 400),
    ]
    other = cloud.token("viewer", "station:gs-99")
    assert (await api(http, cloud, "GET", "/v1/points/gs-01.flow/series", other))[0] == 404
