"""The web console (issue #7), served by the cloud itself: one HTML page and its static assets
(vanilla JavaScript modules, no build step) from the package directory ``cloud/console/static``.

These routes are public and carry no data: everything the console shows comes from the JSON API
with the user's session token, which the page keeps in ``sessionStorage`` (gone with the tab,
never in ``localStorage``) and sends as ``Authorization: Bearer``.  Every console response
carries a strict Content-Security-Policy (scripts and styles only from this origin, nothing
inline, no eval, no framing), so an injected string can never run as script.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from cloud.http import PUBLIC, Route, not_found

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release is picked up at once
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)$")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of the static directory, read once (a few tens of kilobytes)."""
    found: dict[str, Asset] = {}
    for item in resources.files("cloud.console").joinpath("static").iterdir():
        if item.is_file() and _NAME.match(item.name):
            body = item.read_bytes()
            suffix = item.name[item.name.rindex(".") :]
            found[item.name] = Asset(body, CONTENT_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:20]}"')
    return found


def _serve(request: web.Request, name: str) -> web.Response:
    asset = assets().get(name)
    if asset is None:
        not_found("no such console file")
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


async def console_root(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/console/", headers=SECURITY_HEADERS)


async def console_page(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


async def console_asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])


CONSOLE_ROUTES: tuple[Route, ...] = (
    Route("GET", "/console", console_root, PUBLIC, "The web console (redirects to /console/)"),
    Route("GET", "/console/", console_page, PUBLIC, "The web console: one page; its data comes from this API"),
    Route("GET", "/console/static/{name}", console_asset, PUBLIC, "The web console's scripts, styles and icons"),
)
