"""Push export subscriptions over HTTP (cloud/push_export.py)."""

from __future__ import annotations

from aiohttp import web

from cloud.appkeys import EXPORTS
from cloud.http import AUTHENTICATED, Route, audit, json_body, json_error, not_found, who
from cloud.push_export import ExportError


async def subscribe(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        sub = request.app[EXPORTS].subscribe(body, who(request))
    except ExportError as err:
        return json_error(400, "bad_request", str(err))
    audit(
        request,
        "export.subscribe",
        target=f"gateway:{sub.gateway_id}",
        url=sub.url,
        points=sorted(".".join(p) for p in sub.points),
        alarms=sub.alarms,
        id=sub.id,
    )
    return web.json_response({"id": sub.id}, status=201)


async def export_log(request: web.Request) -> web.Response:
    try:
        sub_id = int(request.match_info["sub_id"])
    except ValueError:
        not_found("no such export")
    exporter = request.app[EXPORTS]
    sub = next((s for s in exporter.subscriptions() if s.id == sub_id), None)
    principal = who(request)
    if sub is None or (sub.owner.id != principal.id and not principal.may("user.admin")):
        not_found("no such export")
    return web.json_response({"id": sub_id, "deliveries": exporter.log_entries(sub_id)})


EXPORT_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/exports",
        subscribe,
        AUTHENTICATED,
        "Subscribe a webhook to chosen properties and/or alarms (the caller's own rights and scope)",
    ),
    Route("GET", "/v1/exports/{sub_id}/log", export_log, AUTHENTICATED, "Deliveries of one export"),
)
