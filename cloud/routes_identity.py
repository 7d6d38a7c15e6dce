"""Login, sessions, passwords, TOTP, users and API tokens over HTTP; every decision audited."""

from __future__ import annotations

from aiohttp import web

from cloud.access import ScopeError
from cloud.appkeys import IDENTITY, LIMITER, REGISTRY, WHO
from cloud.http import AUTHENTICATED, PUBLIC, BadRequest, Route, audit, field, json_body, json_error, source, who
from cloud.identity import IdentityError, LoginResult, PolicyError

_LOGIN_STATUS = {
    LoginResult.OK: 200,
    LoginResult.BAD_CREDENTIALS: 401,
    LoginResult.BAD_TOTP: 401,
    LoginResult.TOTP_REQUIRED: 401,
    LoginResult.LOCKED: 423,
    LoginResult.DISABLED: 403,
    LoginResult.PASSWORD_EXPIRED: 403,
}


async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = field(body, "username", str)
    password = field(body, "password", str)
    totp = field(body, "totp", str, required=False)
    limiter = request.app[LIMITER]
    wait = max(limiter.allow("login.source", source(request)), limiter.allow("login.user", name))
    if wait:
        audit(request, "auth.login", target=f"user:{name}", outcome="denied", reason="rate_limited")
        return json_error(429, "rate_limited", "too many login attempts", retry_after_s=round(wait, 1))
    result = request.app[IDENTITY].login(name, password, totp, source(request))
    outcome = "ok" if result.result is LoginResult.OK else "denied"
    if result.result is not LoginResult.TOTP_REQUIRED:  # asking for the second factor is not a failure
        audit(request, "auth.login", target=f"user:{name}", outcome=outcome, result=result.result.value)
    if result.result is not LoginResult.OK:
        detail = {
            LoginResult.BAD_CREDENTIALS: "wrong user name or password",
            LoginResult.BAD_TOTP: "wrong or reused one-time code",
            LoginResult.TOTP_REQUIRED: "send the one-time code from your authenticator as 'totp'",
            LoginResult.LOCKED: "too many failures: locked for a while",
            LoginResult.DISABLED: "this account is disabled",
            LoginResult.PASSWORD_EXPIRED: "the password has expired: change it at /v1/auth/password",
        }[result.result]
        return json_error(_LOGIN_STATUS[result.result], result.result.value, detail)
    assert result.principal is not None
    return web.json_response(
        {"token": result.token, "expires_ms": result.expires_ms, "role": result.principal.role},
    )


async def logout(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    request.app[IDENTITY].logout(token)
    audit(request, "auth.logout", target=who(request).id)
    return web.json_response({"status": "logged out"})


async def change_password(request: web.Request) -> web.Response:
    """Public on purpose: an expired password cannot log in, so the old password is the credential."""
    body = await json_body(request)
    name = field(body, "username", str)
    wait = request.app[LIMITER].allow("login.user", name)
    if wait:
        return json_error(429, "rate_limited", "too many attempts", retry_after_s=round(wait, 1))
    try:
        request.app[IDENTITY].change_password(name, field(body, "old_password", str), field(body, "new_password", str))
    except PolicyError as err:
        audit(request, "auth.password_change", target=f"user:{name}", outcome="denied", reason="policy")
        return json_error(400, "policy", str(err))
    except IdentityError as err:
        audit(request, "auth.password_change", target=f"user:{name}", outcome="denied")
        return json_error(401, "bad_credentials", str(err))
    audit(request, "auth.password_change", target=f"user:{name}")
    return web.json_response({"status": "changed; log in again"})


def _user_name(request: web.Request) -> str:
    principal = who(request)
    if not principal.id.startswith("user:"):
        raise BadRequest("only a user's session can do this (not an API token)")
    return principal.id.removeprefix("user:")


async def totp_start(request: web.Request) -> web.Response:
    name = _user_name(request)
    uri = request.app[IDENTITY].start_totp(name)
    audit(request, "auth.totp_start", target=f"user:{name}")
    return web.json_response({"otpauth_uri": uri, "next": "confirm with a code at /v1/auth/totp/confirm"})


async def totp_confirm(request: web.Request) -> web.Response:
    name = _user_name(request)
    code = field(await json_body(request), "code", str)
    try:
        ok = request.app[IDENTITY].confirm_totp(name, code)
    except IdentityError as err:
        raise BadRequest(str(err)) from err
    audit(request, "auth.totp_confirm", target=f"user:{name}", outcome="ok" if ok else "denied")
    if not ok:
        return json_error(400, "bad_totp", "the code does not match: check the device's clock")
    return web.json_response({"status": "two-factor login is on"})


async def list_users(request: web.Request) -> web.Response:
    return web.json_response({"users": request.app[IDENTITY].users()})


async def create_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    name, role = field(body, "name", str), field(body, "role", str)
    scopes = field(body, "scopes", str, required=False) or "*"
    try:
        request.app[IDENTITY].create_user(
            name, role, field(body, "password", str), scopes=scopes, created_by=who(request).id
        )
    except (IdentityError, ScopeError) as err:
        return json_error(400, "policy" if isinstance(err, PolicyError) else "bad_request", str(err))
    audit(request, "user.create", target=f"user:{name}", role=role, scopes=scopes)
    return web.json_response({"name": name, "role": role, "scopes": scopes}, status=201)


async def update_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await json_body(request)
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise BadRequest("disabled: true or false")
    try:
        changes = request.app[IDENTITY].update_user(
            name,
            role=field(body, "role", str, required=False),
            scopes=field(body, "scopes", str, required=False),
            disabled=disabled,
        )
    except (IdentityError, ScopeError) as err:
        return json_error(400, "bad_request", str(err))
    if changes:
        audit(request, "user.permission_change", target=f"user:{name}", changes=changes)
    return web.json_response({"name": name, "changed": changes})


async def create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    label, role = field(body, "label", str), field(body, "role", str)
    scopes = field(body, "scopes", str, required=False) or "*"
    days = field(body, "days", int, required=False) or 90
    try:
        registry = request.app[REGISTRY]
        token, expires = request.app[IDENTITY].create_token(
            label, role, scopes, days, owner=request[WHO], org_of=lambda st: registry.station_org(st)
        )
    except (IdentityError, ScopeError) as err:
        audit(request, "token.create", target=f"token:{label}", outcome="denied", reason=str(err))
        return json_error(400, "bad_request", str(err))
    audit(request, "token.create", target=f"token:{label}", role=role, scopes=scopes, days=days)
    return web.json_response({"label": label, "token": token, "expires_ms": expires}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    return web.json_response({"tokens": request.app[IDENTITY].tokens()})


async def revoke_token(request: web.Request) -> web.Response:
    label = request.match_info["label"]
    if not request.app[IDENTITY].revoke_token(label):
        return json_error(404, "not_found", "no active token with that label")
    audit(request, "token.revoke", target=f"token:{label}")
    return web.json_response({"label": label, "status": "revoked"})


IDENTITY_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/auth/login", login, PUBLIC, "Log in (user name, password, TOTP code): a session token"),
    Route("POST", "/v1/auth/logout", logout, AUTHENTICATED, "End this session", body=None),
    Route("POST", "/v1/auth/password", change_password, PUBLIC, "Change one's password (old password required)"),
    Route(
        "POST", "/v1/auth/totp", totp_start, AUTHENTICATED, "Start TOTP two-factor enrolment (otpauth URI)", body=None
    ),
    Route("POST", "/v1/auth/totp/confirm", totp_confirm, AUTHENTICATED, "Confirm TOTP with a first code"),
    Route("GET", "/v1/users", list_users, "user.admin", "Users, roles, scopes, MFA and lock state"),
    Route("POST", "/v1/users", create_user, "user.admin", "Create a user (password policy applies)"),
    Route("PATCH", "/v1/users/{name}", update_user, "user.admin", "Change a user's role, scopes or disabled flag"),
    Route("POST", "/v1/tokens", create_token, AUTHENTICATED, "Create a scoped, expiring API token (≤ own rights)"),
    Route("GET", "/v1/tokens", list_tokens, "user.admin", "API tokens (never their values)"),
    Route("DELETE", "/v1/tokens/{label}", revoke_token, "user.admin", "Revoke an API token"),
)
