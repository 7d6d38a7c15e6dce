"""Station configuration versions over HTTP: upload, list, read, push to the gateway."""

from __future__ import annotations

from aiohttp import web

from cloud.appkeys import CONFIGS, PRINCIPAL
from cloud.commands import queue_command
from cloud.configs import ConfigStoreError
from cloud.http import Route, audit, gateway_or_404, json_error, not_found

PUSH_EXPIRY_S = 24 * 3600


def _version(request: web.Request) -> int:
    try:
        return int(request.match_info["version"])
    except ValueError:
        not_found("no such version")


async def upload_config(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    text = await request.text()
    comment = request.query.get("comment", "")
    try:
        version, digest = request.app[CONFIGS].add(gateway_id, text, comment, request.get(PRINCIPAL, "api"))
    except ConfigStoreError as err:
        return json_error(400, "bad_request", str(err))
    audit(request, "config.upload", target=f"gateway:{gateway_id}", version=version, sha256=digest, comment=comment)
    return web.json_response({"gateway_id": gateway_id, "version": version, "sha256": digest}, status=201)


async def list_configs(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    return web.json_response({"gateway_id": gateway_id, "versions": request.app[CONFIGS].versions(gateway_id)})


async def get_config(request: web.Request) -> web.Response:
    gateway_id = gateway_or_404(request).gateway_id
    config = request.app[CONFIGS].get(gateway_id, _version(request))
    if config is None:
        not_found("no such version")
    return web.json_response(config)


async def push_config(request: web.Request) -> web.Response:
    """A signed config.apply command carrying the file; a second person confirms it."""
    gateway_id = gateway_or_404(request).gateway_id
    configs = request.app[CONFIGS]
    config = configs.get(gateway_id, _version(request))
    if config is None:
        not_found("no such version")
    body = {"version": config["version"], "sha256": config["sha256"], "yaml": config["text"]}
    reply = queue_command(
        request, gateway_id, "config.apply", body, PUSH_EXPIRY_S, version=config["version"], sha256=config["sha256"]
    )
    configs.set_state(gateway_id, config["version"], "pushed")
    return reply


CONFIG_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/configs",
        upload_config,
        "config.write",
        "Upload a station file version",
        ("comment",),
        body="text",
    ),
    Route("GET", "/v1/gateways/{gateway_id}/configs", list_configs, "gateway.read", "Station file versions and states"),
    Route("GET", "/v1/gateways/{gateway_id}/configs/{version}", get_config, "config.write", "One station file version"),
    Route(
        "POST",
        "/v1/gateways/{gateway_id}/configs/{version}/push",
        push_config,
        "config.write",
        "Push a version to the gateway (config.apply; dual control)",
        body=None,
    ),
)
