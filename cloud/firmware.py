"""Gateway releases (S-7.2.1e): packages uploaded by an administrator, pushed to a gateway as a
signed ``firmware.apply`` command carrying the package's SHA-256 (dual control), fetched by the
gateway with a signed request, and reported back (``firmware.*`` events) — committed after its
health check, or rolled back by the gateway's launcher."""

from __future__ import annotations

import re

from aiohttp import web

from cloud.appkeys import FIRMWARE, PRINCIPAL
from cloud.commands import SIGNATURE_HEADER, authenticate_gateway, queue_command
from cloud.firmware_store import MAX_PACKAGE_BYTES
from cloud.http import SIGNED, Route, audit, gateway_or_404, json_error, not_found
from gascore.contract import ContractError
from gascore.downlink import FirmwareRequest

_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_-]{0,63}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.whl$")


async def upload(request: web.Request) -> web.Response:
    version, filename = request.query.get("version", ""), request.query.get("filename", "")
    if not _VERSION.match(version) or not _FILENAME.match(filename):
        return json_error(400, "bad_request", "query: version=1.2.3&filename=gasiot-1.2.3-py3-none-any.whl")
    data = await request.read()
    if not data or len(data) > MAX_PACKAGE_BYTES:
        return json_error(400, "bad_request", f"the package is 1 byte to {MAX_PACKAGE_BYTES // 2**20} MiB")
    if not data.startswith(b"PK\x03\x04"):
        return json_error(400, "bad_request", "a wheel is a zip archive")
    try:
        digest = request.app[FIRMWARE].add(version, filename, data, request.get(PRINCIPAL, "api"))
    except ValueError as err:
        return json_error(409, "exists", str(err))
    audit(request, "firmware.upload", target=f"release:{version}", sha256=digest, size=len(data))
    return web.json_response({"version": version, "sha256": digest, "size": len(data)}, status=201)


async def list_releases(request: web.Request) -> web.Response:
    return web.json_response({"releases": request.app[FIRMWARE].releases()})


async def push(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    meta = request.app[FIRMWARE].meta(request.match_info["version"])
    if meta is None:
        not_found("no such release")
    body = {"version": meta["version"], "sha256": meta["sha256"], "filename": meta["filename"], "size": meta["size"]}
    reply = queue_command(request, gateway_id, "firmware.apply", body, 24 * 3600, **body)
    request.app[FIRMWARE].set_state(gateway_id, meta["version"], "pushed")
    return reply


async def gateway_states(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    return web.json_response({"gateway_id": gateway_id, "releases": request.app[FIRMWARE].states(gateway_id)})


async def fetch(request: web.Request) -> web.StreamResponse:
    """A gateway downloads a package (signed request; the package's digest is in its command)."""
    data = await request.read()
    try:
        req = FirmwareRequest.parse(data)
    except ContractError as err:
        return json_error(400, "malformed", str(err))
    refusal = authenticate_gateway(
        request, req.gateway_id, req.canonical(), req.ts_ms, request.headers.get(SIGNATURE_HEADER, "")
    )
    if refusal is not None:
        return refusal
    package = request.app[FIRMWARE].data(req.version)
    if package is None:
        return json_error(404, "not_found", "no such release")
    return web.Response(body=package, content_type="application/octet-stream")


FIRMWARE_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/firmware",
        upload,
        "firmware.write",
        "Upload a gateway release (a gasiot wheel)",
        ("version", "filename"),
        body="binary",
    ),
    Route("GET", "/v1/firmware", list_releases, "gateway.read", "Gateway releases"),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/firmware/{version}/push",
        push,
        "firmware.write",
        "Push a release to a gateway (firmware.apply; dual control)",
        body=None,
    ),
    Route(
        "GET", "/v1/gateways/{gateway_id}/firmware", gateway_states, "gateway.read", "Releases pushed and their states"
    ),
    Route("POST", "/v1/firmware/fetch", fetch, SIGNED, "A gateway downloads a release (signed request)"),
)
