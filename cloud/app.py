"""The cloud HTTP API (aiohttp).  Every route is declared once in ``ROUTES`` with the role it
needs; one middleware enforces it, and the OpenAPI document is generated from the same table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud.access import PERMISSIONS, Principal
from cloud.alarm_view import AlarmView
from cloud.appkeys import (
    ALARMS,
    AUDIT,
    CA,
    CALIBRATION,
    CLOUD_SIGNER,
    CONFIGS,
    EXPORTS,
    FIRMWARE,
    IDENTITY,
    INGESTOR,
    LIMITER,
    LIVE,
    NOTIFIER,
    PRINCIPAL,
    REGISTRY,
    REPO,
    REQUIRE_CLIENT_CERT,
    WHO,
    now_ms,
    tls_gateway,
)
from cloud.audit import DEFAULT_RULES, AuditLog
from cloud.auth import TOKEN_PREFIX, new_secret, secret_hash
from cloud.bearer import bearer_token, principal_for
from cloud.ca import CertificateAuthority, CertificateRefused, CsrRefused, check_csr
from cloud.calibration import Calibration
from cloud.commands import (
    cloud_key_info,
    confirm_command,
    create_command,
    list_commands,
    poll_commands,
    renew_certificate,
)
from cloud.configs import ConfigStore
from cloud.exchange import EXCHANGE_ROUTES
from cloud.firmware import FIRMWARE_ROUTES
from cloud.firmware_store import FirmwareStore
from cloud.http import (
    AUTHENTICATED,
    ENROLL,
    GATEWAY_ID_RE,
    PUBLIC,
    SIGNED,
    BadRequest,
    Handler,
    Route,
    audit,
    gateway_or_404,
    json_body,
    json_error,
    required_param,
    sees_gateway,
    source,
    time_range,
)
from cloud.identity import IdentityStore
from cloud.ingest import Ingestor, IngestRefused
from cloud.key_wrap import PayloadKeyWrap
from cloud.live import LiveHub
from cloud.notify import Notifier, NotifierConfig
from cloud.push_export import PushExporter
from cloud.ratelimit import RateLimiter
from cloud.registry import Registry, announced_devices
from cloud.repository import GatewayRecord, Repository
from cloud.routes_alarms import ALARM_ROUTES
from cloud.routes_analytics import ANALYTICS_ROUTES
from cloud.routes_audit import AUDIT_ROUTES
from cloud.routes_config import CONFIG_ROUTES
from cloud.routes_console import CONSOLE_ROUTES
from cloud.routes_console_api import CONSOLE_API_ROUTES
from cloud.routes_exports import EXPORT_ROUTES
from cloud.routes_identity import IDENTITY_ROUTES
from cloud.routes_registry import REGISTRY_ROUTES
from cloud.sqldb import SqlDb, SqliteDb
from gascore.contract import MAX_FRAME_BYTES
from gascore.crypto import CryptoError, Signer, generate_signer, key_id_of, verifier_for
from gascore.records import Lane

log = logging.getLogger(__name__)

__all__ = ["AUTHENTICATED", "ENROLL", "PUBLIC", "ROUTES", "SIGNED", "Route", "check_routes", "create_app"]


# ---- handlers ----------------------------------------------------------------------------


async def post_batch(request: web.Request) -> web.Response:
    try:
        gateway = tls_gateway(request)
    except CertificateRefused as err:
        return json_error(403, "forbidden", str(err))
    data = await request.read()
    limited = request.app[LIMITER].allow("ingest.gateway", gateway or source(request))
    if limited:
        return json_error(429, "rate_limited", "too many batches", retry_after_s=round(limited, 2))
    try:
        ack = request.app[INGESTOR].ingest(data, now_ms(), tls_gateway=gateway)
    except IngestRefused as err:
        return web.json_response(err.body(), status=err.http_status)
    return web.json_response(ack.to_json())


async def create_enrollment_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    gateway_id = body.get("gateway_id")
    ttl_s = body.get("ttl_s", 3600)
    if not isinstance(gateway_id, str) or not GATEWAY_ID_RE.match(gateway_id):
        raise BadRequest("gateway_id: 1-64 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(ttl_s, int) or not 60 <= ttl_s <= 30 * 86400:
        raise BadRequest("ttl_s: integer seconds between 60 and 2592000")
    token = new_secret(TOKEN_PREFIX)
    expires = now_ms() + ttl_s * 1000
    request.app[REPO].add_enrollment_token(secret_hash(token), gateway_id, expires, now_ms())
    log.info("enrollment token created for gateway %s (expires in %ds)", gateway_id, ttl_s)
    audit(request, "gateway.enrollment_token", target=f"gateway:{gateway_id}", ttl_s=ttl_s)
    return web.json_response({"gateway_id": gateway_id, "token": token, "expires_ms": expires}, status=201)


async def enroll(request: web.Request) -> web.Response:
    body = await json_body(request)
    gateway_id, token, alg, pk_hex = (body.get(k) for k in ("gateway_id", "token", "alg", "public_key"))
    if not all(isinstance(v, str) for v in (gateway_id, token, alg, pk_hex)):
        raise BadRequest("gateway_id, token, alg and public_key (hex) are required strings")
    assert isinstance(gateway_id, str) and isinstance(token, str) and isinstance(alg, str) and isinstance(pk_hex, str)
    if alg not in ("sm2-sm3", "ed25519"):
        raise BadRequest("alg must be sm2-sm3 or ed25519")
    try:
        public_key = bytes.fromhex(pk_hex)
        verifier_for(alg, public_key)  # type: ignore[arg-type]
    except (ValueError, CryptoError) as err:
        raise BadRequest(f"public_key: not a valid {alg} public key") from err
    csr = body.get("csr")
    ca = request.app.get(CA)
    if csr is not None:
        if not isinstance(csr, str) or ca is None:
            raise BadRequest(
                "csr: this cloud issues no certificates (no CA configured)" if ca is None else "csr: a PEM string"
            )
        try:
            check_csr(csr.encode())  # before the token is spent
        except CsrRefused as err:
            raise BadRequest(f"csr: {err}") from err
    repo = request.app[REPO]
    if not repo.consume_enrollment_token(secret_hash(token), gateway_id, now_ms()):
        log.warning(
            "enrollment refused for gateway %s: token invalid, expired, used or for another gateway",
            gateway_id,
        )
        return json_error(
            401, "bad_token", "enrollment token is invalid, expired, already used or not for this gateway"
        )
    key_id = key_id_of(public_key)
    # A per-gateway SM4 key for encrypted batch bodies (links whose TLS ends at a proxy); it goes
    # back once, in this reply, which should itself travel over TLS.
    payload_key = secrets.token_bytes(16) if body.get("payload_encryption") is True else None
    wrapped = request.app[INGESTOR].key_wrap.wrap(gateway_id, payload_key) if payload_key is not None else None
    repo.register_gateway(GatewayRecord(gateway_id, alg, public_key, key_id, "active", now_ms(), wrapped))
    log.info("gateway %s enrolled with %s key %s", gateway_id, alg, key_id)
    reply: dict[str, Any] = {
        "gateway_id": gateway_id,
        "key_id": key_id,
        "status": "active",
        **cloud_key_info(request.app),
    }
    if payload_key is not None:
        reply["payload_key"] = payload_key.hex()
    if csr is not None and ca is not None:
        issued = ca.issue_client(csr.encode(), gateway_id)
        reply.update(
            {
                "certificate": issued.cert_pem.decode(),
                "ca_chain": ca.cert_pem.decode(),
                "serial": issued.serial,
                "not_after_ms": int(issued.not_after.timestamp() * 1000),
            }
        )
        log.info("gateway %s: TLS client certificate %s issued", gateway_id, issued.serial)
    return web.json_response(reply, status=201)


async def list_gateways(request: web.Request) -> web.Response:
    repo = request.app[REPO]
    ca = request.app.get(CA)
    visible = [g for g in repo.gateways() if sees_gateway(request, g.gateway_id)]
    return web.json_response({"gateways": [_placed(request, _gateway_status(repo, g, ca)) for g in visible]})


async def gateway_status(request: web.Request) -> web.Response:
    repo = request.app[REPO]
    gw = gateway_or_404(request)
    return web.json_response(_placed(request, _gateway_status(repo, gw, request.app.get(CA))))


def _placed(request: web.Request, status: dict[str, Any]) -> dict[str, Any]:
    """The gateway's station and lifecycle from the registry (None when it is not placed)."""
    placement = request.app[REGISTRY].placement(status["gateway_id"])
    status["station_id"] = placement.station_id if placement else None
    status["lifecycle"] = placement.lifecycle if placement else None
    # How far the gateway's clock is from the cloud's, from its recent batches (#8: clock skew).
    status["clock"] = request.app[INGESTOR].clock_offset(status["gateway_id"])
    return status


def _certificate_status(ca: CertificateAuthority | None, gateway_id: str) -> dict[str, Any] | None:
    """The gateway's newest valid TLS certificate: expiry and a warning 30 days ahead."""
    if ca is None:
        return None
    valid = [r for r in ca.issued(subject=gateway_id) if r.kind == "client" and r.revoked_at is None]
    if not valid:
        return {"valid": False, "expires_ms": None, "warning": "no valid certificate"}
    newest = max(valid, key=lambda r: r.not_after)
    days = (newest.not_after.timestamp() * 1000 - now_ms()) / 86_400_000
    return {
        "valid": days > 0,
        "serial": newest.serial,
        "expires_ms": int(newest.not_after.timestamp() * 1000),
        "warning": f"expires in {days:.0f} days" if days <= 30 else None,
    }


def _gateway_status(repo: Repository, gw: GatewayRecord, ca: CertificateAuthority | None = None) -> dict[str, Any]:
    certificate = _certificate_status(ca, gw.gateway_id)
    lanes = {}
    now = now_ms()
    for lane in Lane:
        rec = repo.lane(gw.gateway_id, lane)
        lanes[lane.value] = {
            "last_seq": rec.last_seq,
            "last_batch_ms": rec.last_batch_ms,
            "lag_ms": None if rec.last_batch_ms is None else now - rec.last_batch_ms,
            # How old the freshest data is: a gateway can sync every second and still deliver
            # hour-old readings (backlog after an outage).  Negative means the edge clock is ahead.
            "newest_ts_ms": rec.newest_ts_ms,
            "data_lag_ms": None if rec.newest_ts_ms is None else now - rec.newest_ts_ms,
        }
    return {
        "gateway_id": gw.gateway_id,
        "status": gw.status,
        "alg": gw.alg,
        "key_id": gw.key_id,
        "enrolled_ms": gw.enrolled_ms,
        "lanes": lanes,
        "counts": repo.counts(gw.gateway_id),
        "certificate": certificate,
    }


async def latest(request: web.Request) -> web.Response:
    gw = gateway_or_404(request)
    device = request.query.get("device")
    return web.json_response({"gateway_id": gw.gateway_id, "latest": request.app[REPO].latest(gw.gateway_id, device)})


async def series(request: web.Request) -> web.Response:
    gw = gateway_or_404(request)
    device = request.match_info["device"]
    point = required_param(request, "point")
    from_ms, to_ms, limit = time_range(request)
    rows = request.app[REPO].series(gw.gateway_id, device, point, from_ms, to_ms, limit)
    return web.json_response({"gateway_id": gw.gateway_id, "device": device, "point": point, "points": rows})


async def events(request: web.Request) -> web.Response:
    gw = gateway_or_404(request)
    from_ms, to_ms, limit = time_range(request)
    rows = request.app[REPO].events(gw.gateway_id, request.query.get("device"), from_ms, to_ms, limit)
    return web.json_response({"gateway_id": gw.gateway_id, "events": rows})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def health(request: web.Request) -> web.Response:
    # Public, so it says nothing but "alive": counters would tell outsiders about traffic.
    return web.json_response({"status": "ok"})


async def ingest_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[INGESTOR].stats.to_json())


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/batches", post_batch, SIGNED, "Ingest one signed, sequenced batch frame", body="binary"),
    Route(
        "POST",
        "/v1/enrollment-tokens",
        create_enrollment_token,
        "gateway.enroll",
        "Create a one-time enrollment token for a gateway id",
    ),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/commands",
        create_command,
        "command.create",
        "Queue a signed command for a gateway (alarm.ack, point.write; service.call needs command.service)",
    ),
    Route("GET", "/v1/gateways/{gateway_id}/commands", list_commands, "command.read", "Commands and their results"),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/commands/{command_id}/confirm",
        confirm_command,
        "command.create",
        "Confirm a dual-control command (service.call, config.apply) as a second person",
        body=None,
    ),
    Route("POST", "/v1/commands/poll", poll_commands, SIGNED, "A gateway fetches its commands (signed poll)"),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/certificate",
        renew_certificate,
        SIGNED,
        "A gateway renews its TLS client certificate (mutual TLS identifies it)",
    ),
    Route("POST", "/v1/enroll", enroll, ENROLL, "Enroll a gateway's public key with a one-time token"),
    Route("GET", "/v1/gateways", list_gateways, "gateway.read", "List gateways (in scope) with sync status"),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}",
        gateway_status,
        "gateway.read",
        "Gateway status: last batch, last seq per lane, lag",
    ),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/latest",
        latest,
        "data.read",
        "Latest value per device/property",
        ("device",),
    ),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/devices/{device}/series",
        series,
        "data.read",
        "Time series of one property",
        ("point", "from", "to", "limit"),
    ),
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/events",
        events,
        "data.read",
        "Events in a time range",
        ("device", "from", "to", "limit"),
    ),
    Route(
        "GET",
        "/v1/ingest/stats",
        ingest_stats,
        "platform.read",
        "Ingest counters: stored, ignored, duplicates, refused",
    ),
    Route("GET", "/openapi.json", openapi, PUBLIC, "This document"),
    Route("GET", "/healthz", health, PUBLIC, "Liveness"),
    *IDENTITY_ROUTES,
    *REGISTRY_ROUTES,
    *AUDIT_ROUTES,
    *CONFIG_ROUTES,
    *FIRMWARE_ROUTES,
    *ALARM_ROUTES,
    *ANALYTICS_ROUTES,
    *EXCHANGE_ROUTES,
    *EXPORT_ROUTES,
    *CONSOLE_API_ROUTES,
    *CONSOLE_ROUTES,
)


def _route_auth() -> dict[tuple[str, str], Route]:
    return {(r.method, r.path): r for r in ROUTES}


@web.middleware
async def auth_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _authorized(request, handler)
    except BadRequest as err:
        return json_error(400, "bad_request", str(err))
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "too_large", f"body exceeds {MAX_FRAME_BYTES} bytes")
    except web.HTTPException:
        raise  # a deliberate HTTP answer (404 with a JSON body, ...)
    except ConnectionResetError:
        # The client went away in the middle of its request (a cut field link): nothing broke here.
        log.info("%s %s: the client disconnected before its request was read", request.method, request.path)
        return json_error(400, "disconnected", "the connection was lost while the request was read")
    except Exception:  # last resort: the caller gets JSON, the log gets the traceback
        incident = secrets.token_hex(4)
        log.exception("unhandled error in %s %s (incident %s)", request.method, request.path, incident)
        return json_error(500, "internal", f"internal error, logged as incident {incident}")


async def _authorized(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info.route.resource
    canonical = info.canonical if info is not None else ""
    route = _route_auth().get((request.method, canonical))
    if route is None:
        return json_error(404, "not_found", f"no route {request.method} {request.path}")
    if route.auth in PERMISSIONS or route.auth == AUTHENTICATED:
        principal = _principal(request)
        if principal is None:
            return json_error(401, "unauthenticated", "send 'Authorization: Bearer <session or API token>'")
        request[WHO] = principal
        request[PRINCIPAL] = principal.id
        if route.auth != AUTHENTICATED and not principal.may(str(route.auth)):
            audit(
                request, "access.denied", target=f"{route.method} {route.path}", outcome="denied", role=principal.role
            )
            return json_error(403, "forbidden", f"role {principal.role!r} may not {route.method} {route.path}")
    return await handler(request)


def _principal(request: web.Request) -> Principal | None:
    return principal_for(request.app, bearer_token(request))


_BODY_CONTENT: dict[str, dict[str, Any]] = {
    "json": {"application/json": {"schema": {"type": "object"}}},
    "text": {"text/plain": {"schema": {"type": "string"}}},
    "binary": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "responses": {"200": {"description": "OK"}}}
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", r.path)
        ]
        params += [{"name": n, "in": "query", "required": n == "point", "schema": {"type": "string"}} for n in r.params]
        if params:
            op["parameters"] = params
        if r.auth in PERMISSIONS or r.auth == AUTHENTICATED:
            op["security"] = [{"apiKey": []}]
            op["x-required-permission"] = r.auth
            op["responses"].update(
                {
                    "401": {"description": "no, unknown or expired session or token"},
                    "403": {"description": "the role lacks this permission"},
                }
            )
        if r.auth == SIGNED:
            op["responses"].update(
                {
                    "400": {"description": "malformed"},
                    "401": {"description": "unauthenticated: unknown gateway, wrong key or bad signature"},
                    "409": {"description": "gap/conflict/chain: rewind to expected_seq"},
                    "413": {"description": "frame or decompressed body too large"},
                }
            )
        if r.body_type is not None:
            op["requestBody"] = {"required": True, "content": _BODY_CONTENT[r.body_type]}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "gasiot cloud API", "version": "1"},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def check_routes(routes: tuple[Route, ...]) -> None:
    """Fail closed: the middleware only checks permissions it knows, so a misspelt one would
    silently make a route public."""
    for r in routes:
        if r.auth not in PERMISSIONS and r.auth not in (SIGNED, ENROLL, AUTHENTICATED, PUBLIC):
            raise ValueError(f"route {r.method} {r.path}: unknown auth {r.auth!r}")


def create_app(
    repo: Repository,
    cloud_signer: Signer | None = None,
    *,
    ca: CertificateAuthority | None = None,
    require_client_cert: bool = False,
    key_wrap: PayloadKeyWrap | None = None,
    db: SqlDb | None = None,
    kdf_log2_n: int = 14,
    notifier_config: NotifierConfig | None = None,
) -> web.Application:
    """``cloud_signer`` signs downlink commands (an ephemeral key when not given: tests, demo);
    ``ca`` issues gateway certificates at enrollment and checks them on every gateway request;
    ``key_wrap`` wraps payload keys and TOTP seeds in the database (an ephemeral KEK when not
    given); ``db`` holds users, registry and audit (default: an in-memory SQLite database)."""
    check_routes(ROUTES)
    app = web.Application(middlewares=[auth_and_errors], client_max_size=MAX_FRAME_BYTES)
    key_wrap = key_wrap or PayloadKeyWrap.ephemeral()
    db = db or SqliteDb(Path(":memory:"))
    app[REPO] = repo
    app[INGESTOR] = Ingestor(repo, key_wrap)
    app[IDENTITY] = IdentityStore(db, now_ms, key_wrap, kdf_log2_n=kdf_log2_n)
    app[REGISTRY] = Registry(db, now_ms)
    app[AUDIT] = AuditLog(db, now_ms, rules=list(DEFAULT_RULES))
    app[LIMITER] = RateLimiter()
    app[CONFIGS] = ConfigStore(db, now_ms)
    app[FIRMWARE] = FirmwareStore(db, now_ms)
    app[ALARMS] = AlarmView(db)
    app[CALIBRATION] = Calibration(db, now_ms)
    app[NOTIFIER] = Notifier(db, app[ALARMS], app[REGISTRY], notifier_config or NotifierConfig(), now_ms)
    app[NOTIFIER].calibration = app[CALIBRATION]
    app[EXPORTS] = PushExporter(db, app[REGISTRY], now_ms)
    app[INGESTOR].reading_observers.append(app[EXPORTS].on_readings)
    app[INGESTOR].observers.append(app[EXPORTS].on_events)
    app[INGESTOR].observers += [
        announced_devices(app[REGISTRY]),
        app[CONFIGS].observer(),
        app[FIRMWARE].observer(),
        app[ALARMS].observe,
    ]

    async def notifications(app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(app[NOTIFIER].run(), name="notifier"),
            asyncio.create_task(app[EXPORTS].run(), name="push-export"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(notifications)
    app[LIVE] = LiveHub(lambda gateway_id: repo.latest(gateway_id, None))

    async def end_streams(app: web.Application) -> None:
        app[LIVE].close()  # open live streams must not hold up the shutdown

    app.on_shutdown.append(end_streams)
    app[CLOUD_SIGNER] = cloud_signer or generate_signer()
    if ca is not None:
        app[CA] = ca
    app[REQUIRE_CLIENT_CERT] = require_client_cert
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)

    async def close_repo(app: web.Application) -> None:
        app[REPO].close()
        db.close()

    app.on_cleanup.append(close_repo)
    return app
