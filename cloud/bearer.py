"""Who a bearer credential belongs to: an API key (``gsk_``), a user's session (``gss_``) or an API
token (``gst_``).  The auth middleware (cloud.app) asks once per request; a long-lived response
(the console's live stream, cloud.routes_live) asks again while it runs, so a logout, an expiry
or a changed scope ends it."""

from __future__ import annotations

from aiohttp import web

from cloud.access import Principal
from cloud.appkeys import IDENTITY, REPO
from cloud.auth import API_KEY_PREFIX, secret_hash


def bearer_token(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or an empty string."""
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def principal_for(app: web.Application, token: str) -> Principal | None:
    if not token:
        return None
    if token.startswith(API_KEY_PREFIX):  # the operator's bootstrap and service keys: unscoped
        role = app[REPO].api_key_role(secret_hash(token))
        return Principal(f"apikey:{role}:{secret_hash(token)[:8]}", role, frozenset({"*"})) if role else None
    return app[IDENTITY].principal_for(token)
