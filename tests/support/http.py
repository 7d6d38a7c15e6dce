"""Small stand-in servers for the batch endpoint (lossy networks, lying or older clouds)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from cloud.server import bound_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_batches(handler: Handler, path: str = "/v1/batches") -> tuple[web.AppRunner, str]:
    """Serve ``POST path`` with ``handler`` on a free loopback port: (runner, base URL)."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{bound_port(site)}"
