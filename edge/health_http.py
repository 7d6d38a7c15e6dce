"""The gateway's health endpoint: a small aiohttp server (loopback by default) with

* ``GET /metrics`` — Prometheus text format (or OpenMetrics when asked), ``edge.metrics``;
* ``GET /healthz`` — JSON (``edge.health.report``): 200 when ok, 503 when degraded.

``create_app`` builds the application (tests can serve it in-process); ``HealthServer`` runs it
for ``Gateway.run``.  Nothing here writes: every request reads state the gateway keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from edge.health import Observed, degraded_reasons, report, snapshot
from edge.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthContext:
    gateway_id: str
    gateway: Observed
    metrics: GatewayMetrics
    max_sync_silence_s: float
    clock_ms: Callable[[], int]


CONTEXT = web.AppKey("health", HealthContext)


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(ctx.metrics.registry), headers={"Content-Type": content_type})


async def _healthz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    snap = snapshot(ctx.gateway, ctx.clock_ms())
    reasons = degraded_reasons(snap, ctx.max_sync_silence_s)
    return web.json_response(report(snap, ctx.gateway_id, reasons), status=503 if reasons else 200)


def create_app(context: HealthContext) -> web.Application:
    app = web.Application()
    app[CONTEXT] = context
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


class HealthServer:
    """``start`` listens (raises OSError if it cannot), ``port`` is the bound port, ``stop``."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.host, self.requested_port = host, port
        self._runner = web.AppRunner(app, access_log=None)
        self._site: web.TCPSite | None = None
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self._site = site
        server = site._server  # aiohttp keeps the asyncio.Server here; the port is only known after start
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
        self._site = None
