"""Downlink commands (cloud → edge): operators queue them, gateways poll for them with a signed
request, each command goes out signed by the cloud key (gascore.downlink)."""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from cloud.appkeys import CA, CLOUD_SIGNER, PRINCIPAL, REPO, now_ms, tls_gateway
from cloud.ca import CertificateRefused, CsrRefused, check_csr
from cloud.http import audit, gateway_or_404, who
from gascore.contract import ContractError
from gascore.crypto import CryptoError, verifier_for
from gascore.downlink import (
    DUAL_CONTROL,
    MAX_COMMANDS_PER_POLL,
    POLL_MAX_SKEW_MS,
    PollRequest,
    check_command_body,
    signed_command,
)

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Gasiot-Signature"
_HEX = re.compile(r"^[0-9a-f]{2,512}$")


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


# What each command type needs beyond command.create.
EXTRA_PERMISSION = {
    "service.call": "command.service",
    "config.apply": "config.write",
    "firmware.apply": "firmware.write",
}
DEFAULT_EXPIRY_S = 600
MAX_EXPIRY_S = 7 * 86400


async def create_command(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "bad_request", "body must be a JSON object")
    if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not isinstance(body.get("body"), dict):
        return _error(400, "bad_request", "expected {type: str, body: object}")
    expires_s = body.get("expires_s", DEFAULT_EXPIRY_S)
    if not isinstance(expires_s, int) or isinstance(expires_s, bool) or not 10 <= expires_s <= MAX_EXPIRY_S:
        return _error(400, "bad_request", f"expires_s: whole seconds from 10 to {MAX_EXPIRY_S}")
    try:
        check_command_body(body["type"], body["body"])
    except ContractError as err:
        return _error(400, "bad_request", str(err))
    needed = EXTRA_PERMISSION.get(body["type"])
    if needed is not None and not who(request).may(needed):
        # A device service (reset a slam-shut, change a pressure setpoint) is an engineer's act.
        audit(request, "command.create", target=f"gateway:{gateway_id}", outcome="denied", type=body["type"])
        return _error(403, "forbidden", f"{body['type']} needs the {needed} permission")
    return queue_command(request, gateway_id, body["type"], body["body"], expires_s)


def queue_command(
    request: web.Request, gateway_id: str, type_: str, body: dict[str, Any], expires_s: int, **audit_detail: Any
) -> web.Response:
    """Queue a checked command (dual-control types wait for a second person) and audit it."""
    created_by = request.get(PRINCIPAL, "api")
    dual = type_ in DUAL_CONTROL
    now = now_ms()
    cmd = request.app[REPO].add_command(
        gateway_id, type_, body, created_by, now, expires_ms=now + expires_s * 1000, needs_confirmation=dual
    )
    detail = audit_detail or {"body": body}
    audit(request, "command.create", target=f"gateway:{gateway_id}", type=cmd.type, id=cmd.id, **detail)
    status = "awaiting_confirmation" if dual else "pending"
    log.info("command %d (%s) for gateway %s by %s: %s", cmd.id, cmd.type, gateway_id, created_by, status)
    return web.json_response({"id": cmd.id, "status": status, "expires_ms": cmd.expires_ms}, status=201)


async def confirm_command(request: web.Request) -> web.Response:
    """The second person of a dual-control command (not its author, with the same permissions)."""
    repo = request.app[REPO]
    gateway_id = gateway_or_404(request).gateway_id
    try:
        command_id = int(request.match_info["command_id"])
    except ValueError:
        return _error(404, "not_found", "no such command")
    pending = next((c for c in repo.commands(gateway_id, 1000) if c["id"] == command_id), None)
    if pending is None:
        return _error(404, "not_found", "no such command")
    needed = EXTRA_PERMISSION.get(pending["type"])
    if needed is not None and not who(request).may(needed):
        audit(request, "command.confirm", target=f"gateway:{gateway_id}", outcome="denied", id=command_id)
        return _error(403, "forbidden", f"confirming {pending['type']} needs the {needed} permission")
    refusal = repo.confirm_command(gateway_id, command_id, request.get(PRINCIPAL, "api"), now_ms())
    if refusal is not None:
        audit(request, "command.confirm", target=f"gateway:{gateway_id}", outcome="denied", id=command_id, why=refusal)
        return _error(409, "not_confirmed", refusal)
    audit(request, "command.confirm", target=f"gateway:{gateway_id}", id=command_id, type=pending["type"])
    return web.json_response({"id": command_id, "status": "pending"})


async def list_commands(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    return web.json_response({"gateway_id": gateway_id, "commands": request.app[REPO].commands(gateway_id, 200)})


async def poll_commands(request: web.Request) -> web.Response:
    """The gateway's signed poll: verified against its enrolled key, fresh within the skew."""
    repo = request.app[REPO]
    data = await request.read()
    signature = request.headers.get(SIGNATURE_HEADER, "")
    try:
        poll = PollRequest.parse(data)
    except ContractError as err:
        return _error(400, "malformed", str(err))
    refusal = authenticate_gateway(request, poll.gateway_id, poll.canonical(), poll.ts_ms, signature)
    if refusal is not None:
        return refusal
    commands = repo.commands_after(poll.gateway_id, poll.after, MAX_COMMANDS_PER_POLL, now_ms())
    signer = request.app[CLOUD_SIGNER]
    return web.json_response({"commands": [signed_command(c, signer) for c in commands]})


def authenticate_gateway(
    request: web.Request, gateway_id: str, canonical: bytes, ts_ms: int, signature: str
) -> web.Response | None:
    """A gateway's signed request (poll, firmware fetch): its certificate (when mutual TLS is on)
    names it, its enrolled key verifies the signature, it is active, and the request is fresh.
    Returns the refusal, or None."""
    try:
        cert_gateway = tls_gateway(request)
    except CertificateRefused as err:
        return _error(403, "forbidden", str(err))
    if cert_gateway is not None and cert_gateway != gateway_id:
        return _error(403, "forbidden", "the client certificate belongs to another gateway")
    gw = request.app[REPO].gateway(gateway_id)
    if gw is None or gw.status != "active" or not _HEX.match(signature):
        return _error(401, "unauthenticated", "signature or gateway not recognised")
    try:
        verifier_for(gw.alg, gw.public_key).verify(canonical, bytes.fromhex(signature))  # type: ignore[arg-type]
    except CryptoError:
        log.warning("signed request with a bad signature for gateway %s", gateway_id)
        return _error(401, "unauthenticated", "signature or gateway not recognised")
    if abs(now_ms() - ts_ms) > POLL_MAX_SKEW_MS:
        return _error(401, "stale", "timestamp too far from the cloud's clock (replay or clock drift)")
    return None


def cloud_key_info(app: web.Application) -> dict[str, Any]:
    signer = app[CLOUD_SIGNER]
    return {"cloud_alg": signer.alg, "cloud_public_key": signer.public_key_bytes().hex(), "cloud_key_id": signer.key_id}


async def renew_certificate(request: web.Request) -> web.Response:
    """A gateway renews its TLS client certificate over mutual TLS (the identity comes from the
    certificate it presents, never from the request)."""
    ca = request.app.get(CA)
    if ca is None:
        return _error(404, "not_found", "this cloud issues no certificates")
    try:
        gateway_id = tls_gateway(request)
    except CertificateRefused as err:
        return _error(403, "forbidden", str(err))
    if gateway_id is None or gateway_id != request.match_info["gateway_id"]:
        return _error(403, "forbidden", "renew over mutual TLS with this gateway's current certificate")
    try:
        body = await request.json()
        csr = body["csr"].encode()
        check_csr(csr)
    except (ValueError, KeyError, TypeError, AttributeError, CsrRefused) as err:
        return _error(400, "bad_request", f"csr: {err}")
    issued = ca.issue_client(csr, gateway_id)
    log.info("gateway %s renewed its TLS certificate: %s", gateway_id, issued.serial)
    return web.json_response(
        {
            "certificate": issued.cert_pem.decode(),
            "ca_chain": ca.cert_pem.decode(),
            "serial": issued.serial,
            "not_after_ms": int(issued.not_after.timestamp() * 1000),
        }
    )
