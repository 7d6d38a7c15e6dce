"""Analytics and calibration over HTTP: segment balance, meter anomalies, data quality,
calibration plans and records."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cloud.analytics import HOUR_MS, balance, data_quality, meter_anomalies
from cloud.appkeys import CALIBRATION, PRINCIPAL, REPO
from cloud.calibration import CalibrationError
from cloud.http import BadRequest, Route, audit, field, gateway_or_404, json_body, json_error, sees_gateway, time_range

MAX_SERIES_ROWS = 200_000


def _series(request: web.Request, ref: Any, from_ms: int, to_ms: int) -> list[tuple[int, float]]:
    if not isinstance(ref, dict) or not all(isinstance(ref.get(k), str) for k in ("gateway_id", "device", "point")):
        raise BadRequest("each meter: {gateway_id, device, point}")
    gateway_or_404(request, ref["gateway_id"])
    rows = request.app[REPO].series(ref["gateway_id"], ref["device"], ref["point"], from_ms, to_ms, MAX_SERIES_ROWS)
    return [
        (r["ts_ms"], float(r["value"])) for r in rows if r["quality"] == "good" and isinstance(r["value"], int | float)
    ]


async def segment_balance(request: web.Request) -> web.Response:
    body = await json_body(request)
    from_ms, to_ms = field(body, "from", int), field(body, "to", int)
    if not 0 < to_ms - from_ms <= 92 * 24 * HOUR_MS:
        raise BadRequest("from/to: up to 92 days")
    window_s = field(body, "window_s", int, required=False) or 3600
    alarm_rate = body.get("alarm_rate", 0.05)
    if not isinstance(alarm_rate, int | float) or not 0 < alarm_rate < 1:
        raise BadRequest("alarm_rate: a fraction, e.g. 0.05")
    inflows = [_series(request, m, from_ms, to_ms) for m in field(body, "inflows", list)]
    outflows = [_series(request, m, from_ms, to_ms) for m in field(body, "outflows", list)]
    windows = balance(inflows, outflows, from_ms, to_ms, window_ms=window_s * 1000, alarm_rate=float(alarm_rate))
    return web.json_response({"windows": [_as_dict(w) for w in windows]})


def _as_dict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


async def anomalies(request: web.Request) -> web.Response:
    gw = gateway_or_404(request)
    from_ms, to_ms, _ = time_range(request)
    try:
        rated = float(request.query.get("rated_flow", ""))
    except ValueError as err:
        raise BadRequest("rated_flow: the sum of the appliances' rated flows, m³/h") from err
    point = request.query.get("point", "flow")
    ref = {"gateway_id": gw.gateway_id, "device": request.match_info["device"], "point": point}
    found = meter_anomalies(_series(request, ref, from_ms, to_ms), rated_flow=rated, end_ms=to_ms)
    return web.json_response({"anomalies": [_as_dict(a) for a in found]})


async def quality(request: web.Request) -> web.Response:
    gw = gateway_or_404(request)
    from_ms, to_ms, _ = time_range(request)
    repo = request.app[REPO]
    rows: list[tuple[str, str, int, str]] = []
    for latest in repo.latest(gw.gateway_id, None):
        for r in repo.series(gw.gateway_id, latest["device"], latest["point"], from_ms, to_ms, MAX_SERIES_ROWS):
            rows.append((latest["device"], latest["point"], r["ts_ms"], r["quality"]))
    return web.json_response({"points": [_as_dict(q) for q in data_quality(rows, from_ms, to_ms)]})


async def plan_calibration(request: web.Request) -> web.Response:
    body = await json_body(request)
    gw = gateway_or_404(request, field(body, "gateway_id", str))
    device = field(body, "device_id", str)
    try:
        request.app[CALIBRATION].plan(
            gw.gateway_id, device, field(body, "interval_days", int), field(body, "last_ms", int, required=False)
        )
    except CalibrationError as err:
        return json_error(400, "bad_request", str(err))
    audit(request, "calibration.plan", target=f"device:{gw.gateway_id}/{device}", interval_days=body["interval_days"])
    return web.json_response({"gateway_id": gw.gateway_id, "device_id": device}, status=201)


async def record_calibration(request: web.Request) -> web.Response:
    body = await json_body(request)
    gw = gateway_or_404(request, field(body, "gateway_id", str))
    device = field(body, "device_id", str)
    try:
        request.app[CALIBRATION].record(
            gw.gateway_id,
            device,
            field(body, "calibrated_ms", int),
            field(body, "certificate", str),
            field(body, "result", str),
            request.get(PRINCIPAL, "api"),
        )
    except CalibrationError as err:
        return json_error(400, "bad_request", str(err))
    audit(request, "calibration.record", target=f"device:{gw.gateway_id}/{device}", certificate=body["certificate"])
    return web.json_response({"status": "recorded"}, status=201)


async def calibration_status(request: web.Request) -> web.Response:
    return web.json_response({"instruments": request.app[CALIBRATION].status(lambda g: sees_gateway(request, g))})


ANALYTICS_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/analytics/balance", segment_balance, "data.read", "Segment balance (供销差) over windows"),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/devices/{device}/anomalies",
        anomalies,
        "data.read",
        "Meter anomalies: large flow, micro flow, long use, no use",
        ("point", "rated_flow", "from", "to"),
    ),
    Route("GET", "/v1/gateways/{gateway_id}/quality", quality, "data.read", "Data quality per point", ("from", "to")),
    Route(
        "POST", "/v1/calibration/instruments", plan_calibration, "registry.write", "Plan an instrument's calibration"
    ),
    Route("POST", "/v1/calibration/records", record_calibration, "registry.write", "Record a calibration"),
    Route("GET", "/v1/calibration", calibration_status, "registry.read", "Calibration status: ok, due soon, overdue"),
)
