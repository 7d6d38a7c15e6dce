"""The registry over HTTP: organisations, stations, gateway placement and lifecycle, thing
models, devices (with sensitive fields masked unless the role may see them, S-7.4d) and
monitoring points with their history across device swaps."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from aiohttp import web

from cloud.appkeys import CA, REGISTRY, REPO, WHO
from cloud.http import (
    BadRequest,
    Route,
    audit,
    field,
    gateway_or_404,
    json_body,
    json_error,
    not_found,
    sees_gateway,
    time_range,
    who,
)
from cloud.registry import RegistryError

SENSITIVE = ("contact_name", "contact_phone", "address")


def mask(field_name: str, value: str | None) -> str | None:
    """What a role without ``export.sensitive`` sees of a customer's name, phone or address."""
    if not value:
        return value
    if field_name == "contact_phone":
        digits = value.strip()
        return digits[:3] + "*" * max(0, len(digits) - 7) + digits[-4:] if len(digits) > 7 else "*" * len(digits)
    if field_name == "contact_name":
        return value[0] + "*" * (len(value) - 1)
    return value[:6] + "…"


async def _registry_call(request: web.Request, action: str, target: str, fn: Any, *args: Any, **detail: Any) -> None:
    try:
        fn(*args)
    except RegistryError as err:
        raise BadRequest(str(err)) from err
    audit(request, action, target=target, **detail)


async def add_org(request: web.Request) -> web.Response:
    body = await json_body(request)
    org = field(body, "id", str)
    await _registry_call(
        request, "registry.org_add", f"org:{org}", request.app[REGISTRY].add_org, org, body.get("name") or org
    )
    return web.json_response({"id": org}, status=201)


async def add_station(request: web.Request) -> web.Response:
    body = await json_body(request)
    station, org = field(body, "id", str), field(body, "org_id", str)
    if not who(request).sees(None, org):
        return json_error(403, "forbidden", f"organisation {org} is outside your scope")
    await _registry_call(
        request,
        "registry.station_add",
        f"station:{station}",
        request.app[REGISTRY].add_station,
        station,
        org,
        field(body, "name", str, required=False) or station,
        field(body, "type", str),
        field(body, "lat", (int, float), required=False),
        field(body, "lon", (int, float), required=False),
        field(body, "address", str, required=False),
    )
    return web.json_response({"id": station}, status=201)


async def list_stations(request: web.Request) -> web.Response:
    registry, principal = request.app[REGISTRY], who(request)
    near = request.query.get("near")
    if near:
        try:
            lat, lon = (float(x) for x in near.split(","))
            radius = float(request.query.get("radius_km", "10"))
        except ValueError as err:
            raise BadRequest("near=LAT,LON and radius_km=KM") from err
        found = registry.stations_near(lat, lon, radius)
    else:
        found = registry.stations()
    return web.json_response({"stations": [s for s in found if principal.sees(s["id"], s["org_id"])]})


async def place_gateway(request: web.Request) -> web.Response:
    gateway_id = request.match_info["gateway_id"]
    station = field(await json_body(request), "station_id", str)
    registry = request.app[REGISTRY]
    org = next((s["org_id"] for s in registry.stations() if s["id"] == station), None)
    if org is None or not who(request).sees(station, org):
        return json_error(404, "not_found", "no such station")
    await _registry_call(
        request, "registry.gateway_provision", f"gateway:{gateway_id}", registry.provision_gateway, gateway_id, station
    )
    return web.json_response({"gateway_id": gateway_id, "station_id": station, "lifecycle": "provisioned"}, status=201)


async def gateway_lifecycle(request: web.Request) -> web.Response:
    """provisioned → active → suspended ⇄ active → retired.  Suspended and retired gateways'
    batches and polls are refused from this moment; retiring also revokes their certificates."""
    gateway_id = request.match_info["gateway_id"]
    if not sees_gateway(request, gateway_id):
        not_found("no such gateway")
    state = field(await json_body(request), "state", str)
    try:
        old = request.app[REGISTRY].set_gateway_lifecycle(gateway_id, state)
    except RegistryError as err:
        raise BadRequest(str(err)) from err
    repo = request.app[REPO]
    gw = repo.gateway(gateway_id)
    if gw is not None:
        repo.register_gateway(dataclasses.replace(gw, status=state))
    revoked: list[str] = []
    ca = request.app.get(CA)
    if state == "retired" and ca is not None:
        revoked = ca.revoke_gateway(gateway_id, "cessationOfOperation")
    audit(request, "registry.gateway_lifecycle", target=f"gateway:{gateway_id}", old=old, new=state, revoked=revoked)
    return web.json_response({"gateway_id": gateway_id, "lifecycle": state, "was": old, "revoked": revoked})


async def upload_model(request: web.Request) -> web.Response:
    text = await request.text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadRequest(f"not YAML or JSON: {err}") from err
    if not isinstance(document, dict):
        raise BadRequest("a thing model is a mapping (id, version, name, properties…)")
    try:
        model_id, version = request.app[REGISTRY].upload_model(document, request[WHO].id)
    except RegistryError as err:
        raise BadRequest(str(err)) from err
    audit(request, "registry.model_upload", target=f"model:{model_id}", version=version)
    return web.json_response({"id": model_id, "version": version}, status=201)


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"models": request.app[REGISTRY].models()})


async def list_devices(request: web.Request) -> web.Response:
    q = request.query
    devices = request.app[REGISTRY].devices(
        gateway_id=q.get("gateway_id"), station_id=q.get("station_id"), lifecycle=q.get("lifecycle")
    )
    visible = [d for d in devices if sees_gateway(request, d["gateway_id"])]
    if not who(request).may("export.sensitive"):
        visible = [{**d, **{k: mask(k, d[k]) for k in SENSITIVE}} for d in visible]
    return web.json_response({"devices": visible})


async def device_lifecycle(request: web.Request) -> web.Response:
    gateway_id, device = request.match_info["gateway_id"], request.match_info["device"]
    if not sees_gateway(request, gateway_id):
        not_found("no such gateway")
    state = field(await json_body(request), "state", str)
    try:
        old = request.app[REGISTRY].set_device_lifecycle(gateway_id, device, state)
    except RegistryError as err:
        raise BadRequest(str(err)) from err
    audit(request, "registry.device_lifecycle", target=f"device:{gateway_id}/{device}", old=old, new=state)
    return web.json_response({"device": device, "lifecycle": state, "was": old})


async def device_details(request: web.Request) -> web.Response:
    gateway_id, device = request.match_info["gateway_id"], request.match_info["device"]
    if not sees_gateway(request, gateway_id):
        not_found("no such gateway")
    body = await json_body(request)
    try:
        request.app[REGISTRY].set_device_details(gateway_id, device, body)
    except RegistryError as err:
        raise BadRequest(str(err)) from err
    # The audit names the fields changed, not customers' details.
    audit(request, "registry.device_details", target=f"device:{gateway_id}/{device}", fields=sorted(body))
    return web.json_response({"device": device, "updated": sorted(body)})


async def add_point(request: web.Request) -> web.Response:
    body = await json_body(request)
    point, station = field(body, "id", str), field(body, "station_id", str)
    await _registry_call(
        request,
        "registry.point_add",
        f"point:{point}",
        request.app[REGISTRY].add_point,
        point,
        station,
        field(body, "name", str),
        field(body, "unit", str, required=False),
    )
    return web.json_response({"id": point}, status=201)


def _point_or_404(request: web.Request) -> dict[str, Any]:
    point = request.app[REGISTRY].point(request.match_info["point_id"])
    if point is None or not who(request).sees(point["station_id"], point["org_id"]):
        not_found("no such point")
    return point


async def bind_point(request: web.Request) -> web.Response:
    point = _point_or_404(request)
    body = await json_body(request)
    gateway_id = field(body, "gateway_id", str)
    gateway_or_404(request, gateway_id)
    await _registry_call(
        request,
        "registry.point_bind",
        f"point:{point['id']}",
        request.app[REGISTRY].bind_point,
        point["id"],
        gateway_id,
        field(body, "device_id", str),
        field(body, "property", str),
        field(body, "from_ms", int),
    )
    return web.json_response(
        {"point": point["id"], "bindings": request.app[REGISTRY].bindings(point["id"])}, status=201
    )


async def point_series(request: web.Request) -> web.Response:
    """The point's history across device swaps: each binding's interval from its device."""
    point = _point_or_404(request)
    from_ms, to_ms, limit = time_range(request)
    repo = request.app[REPO]
    rows: list[dict[str, Any]] = []
    for b in request.app[REGISTRY].bindings(point["id"]):
        lo, hi = max(from_ms, b["valid_from_ms"]), min(to_ms, b["valid_to_ms"] or to_ms)
        if lo >= hi or len(rows) >= limit:
            continue
        for row in repo.series(b["gateway_id"], b["device_id"], b["property"], lo, hi, limit - len(rows)):
            rows.append({**row, "gateway_id": b["gateway_id"], "device": b["device_id"]})
    return web.json_response({"point": point["id"], "name": point["name"], "unit": point["unit"], "points": rows})


REGISTRY_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/orgs", add_org, "registry.write", "Add an organisation"),
    Route("POST", "/v1/stations", add_station, "registry.write", "Add a station (type, coordinates)"),
    Route(
        "GET", "/v1/stations", list_stations, "registry.read", "Stations in scope (near=LAT,LON)", ("near", "radius_km")
    ),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/placement",
        place_gateway,
        "registry.write",
        "Provision a gateway at a station",
    ),
    Route(
        "POST", "/v1/gateways/{gateway_id}/lifecycle", gateway_lifecycle, "registry.write", "Activate/suspend/retire"
    ),
    Route(
        "POST", "/v1/models", upload_model, "registry.write", "Upload a thing model version (YAML or JSON)", body="text"
    ),
    Route("GET", "/v1/models", list_models, "registry.read", "Thing models and versions"),
    Route(
        "GET",
        "/v1/devices",
        list_devices,
        "registry.read",
        "Devices (sensitive fields masked)",
        ("gateway_id", "station_id", "lifecycle"),
    ),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/devices/{device}/lifecycle",
        device_lifecycle,
        "registry.write",
        "Approve, suspend or retire a device",
    ),
    Route(
        "PATCH",
        "/v1/gateways/{gateway_id}/devices/{device}",
        device_details,
        "registry.write",
        "Device location and customer contact",
    ),
    Route("POST", "/v1/points", add_point, "registry.write", "Add a monitoring point (监测点) at a station"),
    Route(
        "POST", "/v1/points/{point_id}/bindings", bind_point, "registry.write", "Bind the point to a device property"
    ),
    Route(
        "GET",
        "/v1/points/{point_id}/series",
        point_series,
        "data.read",
        "A point's history across device swaps",
        ("from", "to", "limit"),
    ),
)
