"""What the web console needs beyond the query API: who is logged in (role, scope and
permissions, so the page offers only what the API will allow), live values as server-sent events
and downsampled history for trend charts.

``GET /v1/gateways/{id}/stream`` answers ``text/event-stream``: first an ``event: latest`` with
``full: true`` and every latest value, then one ``event: latest`` per change (only the changed
values), each with the server's ``now_ms`` so a client can show ages without trusting its own
clock.  A comment line every ``HEARTBEAT_S`` keeps proxies from closing an idle stream; before it
the credential and the scope are checked again, so a logout, an expired session or a narrowed
scope ends the stream with ``event: end``.  The credential is the usual ``Authorization: Bearer``
header (the console reads the stream with ``fetch``, which can send it; no token in the URL).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cloud.appkeys import LIVE, REPO, WHO, now_ms
from cloud.bearer import bearer_token, principal_for
from cloud.http import AUTHENTICATED, Route, gateway_or_404, int_param, required_param, sees_gateway, time_range, who

HEARTBEAT_S = 15.0
MAX_BUCKETS = 5000


async def me(request: web.Request) -> web.Response:
    principal = who(request)
    return web.json_response(
        {
            "id": principal.id,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
            "permissions": sorted(principal.permissions),
        }
    )


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _still_allowed(request: web.Request, token: str, gateway_id: str) -> str | None:
    """Why the stream must end now (None: it may go on)."""
    principal = principal_for(request.app, token)
    if principal is None:
        return "unauthenticated"
    request[WHO] = principal
    if not principal.may("data.read") or not sees_gateway(request, gateway_id):
        return "forbidden"
    return None


async def stream(request: web.Request) -> web.StreamResponse:
    gateway_id = gateway_or_404(request).gateway_id
    token = bearer_token(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must pass events on as they come
            "X-Content-Type-Options": "nosniff",
        }
    )
    # Subscribe first: a failure to read the snapshot is still an ordinary (JSON) error answer.
    async with request.app[LIVE].subscribe(gateway_id) as sub:
        await response.prepare(request)
        try:
            await response.write(_frame("latest", {"full": True, "rows": sub.snapshot, "now_ms": now_ms()}))
            while not sub.closed:
                rows = await sub.changes(HEARTBEAT_S)
                if rows is not None:
                    await response.write(_frame("latest", {"full": False, "rows": rows, "now_ms": now_ms()}))
                    continue
                if sub.closed:
                    await response.write(_frame("end", {"reason": "shutdown"}))
                    break
                reason = _still_allowed(request, token, gateway_id)
                if reason is not None:
                    await response.write(_frame("end", {"reason": reason}))
                    break
                await response.write(b": keepalive\n\n")
        except ConnectionResetError:  # the client went away: nothing to finish
            return response
    await response.write_eof()
    return response


async def trend(request: web.Request) -> web.Response:
    """min/max/avg per bucket: ``buckets`` equal buckets over [from, to)."""
    gw = gateway_or_404(request)
    device = request.match_info["device"]
    point = required_param(request, "point")
    from_ms, to_ms, _ = time_range(request)
    buckets = int_param(request, "buckets", 300, 1, MAX_BUCKETS)
    bucket_ms = max(1, -(-(to_ms - from_ms) // buckets))  # ceiling: never more than `buckets`
    rows = request.app[REPO].series_buckets(gw.gateway_id, device, point, from_ms, to_ms, bucket_ms)
    return web.json_response(
        {
            "gateway_id": gw.gateway_id,
            "device": device,
            "point": point,
            "from_ms": from_ms,
            "to_ms": to_ms,
            "bucket_ms": bucket_ms,
            "buckets": rows,
        }
    )


CONSOLE_API_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/auth/me", me, AUTHENTICATED, "Who this credential is: role, scopes, permissions"),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/stream",
        stream,
        "data.read",
        "Live latest values as server-sent events (a full snapshot, then changes)",
    ),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/devices/{device}/trend",
        trend,
        "data.read",
        "Downsampled history of one property: min, max, mean, count and bad readings per bucket",
        ("point", "from", "to", "buckets"),
    ),
)
