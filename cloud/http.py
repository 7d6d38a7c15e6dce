"""What every route module shares: the Route declaration, JSON errors, request parsing, the
principal of a request, scope-checked lookups and the audit call."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from cloud.access import Principal
from cloud.appkeys import AUDIT, REGISTRY, REPO, WHO, now_ms
from cloud.repository import GatewayRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIGNED = "signed-batch"  # the batch (or poll) signature is the credential
ENROLL = "enrollment-token"  # a one-time enrollment token in the body
AUTHENTICATED = "authenticated"  # any valid session or token (one's own account)
PUBLIC = None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    auth: str | None  # a permission (cloud.access), or SIGNED / ENROLL / AUTHENTICATED / PUBLIC
    summary: str
    params: tuple[str, ...] = ()
    body: str | None = "auto"  # "json", "text", "binary", None; "auto": JSON for POST/PATCH

    @property
    def body_type(self) -> str | None:
        if self.body != "auto":
            return self.body
        return "json" if self.method in ("POST", "PATCH", "PUT") else None


class BadRequest(Exception):
    pass


def json_error(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "detail": detail, **extra}, status=status)


def not_found(detail: str) -> NoReturn:
    raise web.HTTPNotFound(text=f'{{"error":"not_found","detail":"{detail}"}}', content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as err:
        raise BadRequest("body must be a JSON object") from err
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"{name}: {'required ' if required else ''}{names}")
    return value


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise BadRequest(f"query parameter {name!r} must be an integer") from err
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def time_range(request: web.Request) -> tuple[int, int, int]:
    to_ms = int_param(request, "to", now_ms() + 1, 0, 2**53)
    from_ms = int_param(request, "from", to_ms - 3600_000, 0, 2**53)
    limit = int_param(request, "limit", 1000, 1, 100_000)
    if from_ms > to_ms:
        raise BadRequest("'from' must not be after 'to'")
    return from_ms, to_ms, limit


def required_param(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise BadRequest(f"query parameter {name!r} is required")
    return value


def who(request: web.Request) -> Principal:
    return request[WHO]


def source(request: web.Request) -> str:
    """The client's address, for the audit trail and rate limits."""
    return request.remote or "?"


def sees_gateway(request: web.Request, gateway_id: str) -> bool:
    """Whether the request's principal may see this gateway (its station or organisation is in
    scope; a gateway not placed at any station only for principals scoped ``*``)."""
    principal = who(request)
    if principal.everywhere:
        return True
    placement = request.app[REGISTRY].placement(gateway_id)
    return placement is not None and principal.sees(placement.station_id, placement.org_id)


def gateway_or_404(request: web.Request, gateway_id: str | None = None) -> GatewayRecord:
    """The gateway named in the path, if it exists and is in the principal's scope: an
    out-of-scope gateway is as unknown as a missing one (no enumeration across utilities)."""
    gid = gateway_id or request.match_info["gateway_id"]
    gw = request.app[REPO].gateway(gid)
    if gw is None or not sees_gateway(request, gid):
        not_found("no such gateway")
    return gw


def audit(request: web.Request, action: str, *, target: str = "", outcome: str = "ok", **detail: Any) -> None:
    principal = request.get(WHO)
    actor = principal.id if principal is not None else "anonymous"
    request.app[AUDIT].append(actor, action, target=target, outcome=outcome, detail=detail, source=source(request))


GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
