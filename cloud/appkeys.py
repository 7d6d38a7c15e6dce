"""Typed application state shared by the cloud's handlers (aiohttp AppKeys) and the clock."""

from __future__ import annotations

import time

from aiohttp import web

from cloud.access import Principal
from cloud.alarm_view import AlarmView
from cloud.audit import AuditLog
from cloud.ca import CertificateAuthority, CertificateRefused
from cloud.calibration import Calibration
from cloud.configs import ConfigStore
from cloud.firmware_store import FirmwareStore
from cloud.identity import IdentityStore
from cloud.ingest import Ingestor
from cloud.live import LiveHub
from cloud.notify import Notifier
from cloud.push_export import PushExporter
from cloud.ratelimit import RateLimiter
from cloud.registry import Registry
from cloud.repository import Repository
from gascore.crypto import Signer
from gascore.tls import peer_certificate

REPO = web.AppKey("repo", Repository)
INGESTOR = web.AppKey("ingestor", Ingestor)
CLOUD_SIGNER = web.AppKey("cloud_signer", Signer)
PRINCIPAL = web.RequestKey("principal", str)  # the principal's id, for logs and the audit trail
WHO = web.RequestKey("who", Principal)  # set on every route that needs a credential
IDENTITY = web.AppKey("identity", IdentityStore)
REGISTRY = web.AppKey("registry", Registry)
AUDIT = web.AppKey("audit", AuditLog)
LIMITER = web.AppKey("limiter", RateLimiter)
CONFIGS = web.AppKey("configs", ConfigStore)
FIRMWARE = web.AppKey("firmware", FirmwareStore)
ALARMS = web.AppKey("alarms", AlarmView)
NOTIFIER = web.AppKey("notifier", Notifier)
CALIBRATION = web.AppKey("calibration", Calibration)
EXPORTS = web.AppKey("exports", PushExporter)
LIVE = web.AppKey("live", LiveHub)  # live values for the console's streams
CA = web.AppKey("ca", CertificateAuthority)  # set when the cloud runs its utility CA
REQUIRE_CLIENT_CERT = web.AppKey("require_client_cert", bool)


def tls_gateway(request: web.Request) -> str | None:
    """The gateway id of the client certificate on this connection (None: no certificate, or no
    CA configured).  Checked on every request, so a revocation refuses the next batch even on a
    connection opened before it (TLS session resumption does not re-check certificates).
    Raises CertificateRefused (revoked, not ours) — the caller answers 403."""
    ca = request.app.get(CA)
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    cert = peer_certificate(ssl_object)
    if ca is None or cert is None:
        if request.app.get(REQUIRE_CLIENT_CERT, False):
            raise CertificateRefused("a client certificate issued by this cloud's CA is required")
        return None
    return ca.client_identity(cert)  # who made an API request, for the audit trail


def now_ms() -> int:
    return time.time_ns() // 1_000_000
