"""Users and credentials against the real HTTP API: password policy, login with TOTP (RFC 6238
vectors too), lockout, expiry, sessions and scoped tokens, scopes hiding other stations'
gateways, and every step in the audit log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud.appkeys import AUDIT, IDENTITY, REGISTRY
from cloud.identity import LOCK_AFTER, PolicyError, check_password_policy
from cloud.totp import code_at, matching_step

GOOD = "Kx9!pipeline-Valve"


def test_rfc6238_vectors() -> None:
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # b"12345678901234567890" in base32
    for t, expected in ((59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924")):
        assert code_at(secret, t // 30, digits=8) == expected
    code = code_at(secret, 1234567890 // 30)
    assert matching_step(secret, code, 1234567890, None) == 1234567890 // 30
    assert matching_step(secret, code, 1234567890 + 30, None) is not None  # one step of drift
    assert matching_step(secret, code, 1234567890 + 90, None) is None
    assert matching_step(secret, code, 1234567890, 1234567890 // 30) is None  # never twice


@pytest.mark.parametrize(
    ("password", "needs"),
    [
        ("short1!A", "at least 12"),
        ("alllowercaseletters", "at least 3 of"),
        ("Password@123456", "commonly used"),
        ("Alice-is-123-ok", "user name"),
    ],
)
def test_password_policy(password: str, needs: str) -> None:
    with pytest.raises(PolicyError, match=needs):
        check_password_policy(password, "alice")
    check_password_policy(GOOD, "alice")


async def login(http, cloud, name: str, password: str, totp: str | None = None) -> tuple[int, dict]:
    body = {"username": name, "password": password, **({"totp": totp} if totp else {})}
    async with http.post(f"{cloud.url}/v1/auth/login", json=body) as r:
        return r.status, await r.json()


async def test_login_mfa_lockout_and_audit(cloud, http) -> None:
    admin = cloud.auth(cloud.token("admin"))
    async with http.post(
        f"{cloud.url}/v1/users", json={"name": "alice", "role": "operator", "password": "weak"}, headers=admin
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "policy"
    async with http.post(
        f"{cloud.url}/v1/users", json={"name": "alice", "role": "operator", "password": GOOD}, headers=admin
    ) as r:
        assert r.status == 201
    status, body = await login(http, cloud, "alice", GOOD)
    assert status == 200 and body["role"] == "operator" and body["token"].startswith("gss_")
    session = {"Authorization": f"Bearer {body['token']}"}
    async with http.post(f"{cloud.url}/v1/auth/totp", headers=session) as r:
        uri = (await r.json())["otpauth_uri"]
    seed = uri.split("secret=")[1].split("&")[0]
    import time

    async with http.post(f"{cloud.url}/v1/auth/totp/confirm", json={"code": "000000"}, headers=session) as r:
        assert r.status == 400
    async with http.post(
        f"{cloud.url}/v1/auth/totp/confirm", json={"code": code_at(seed, int(time.time() // 30))}, headers=session
    ) as r:
        assert r.status == 200, await r.text()
    assert (await login(http, cloud, "alice", GOOD))[1]["error"] == "totp_required"
    status, _ = await login(http, cloud, "alice", GOOD, code_at(seed, int(time.time() // 30) + 1))
    assert status == 200
    # The TOTP seed is sealed at rest, never stored in the clear.
    (sealed,) = cloud.app[IDENTITY].db.one("SELECT totp_sealed FROM users WHERE name = 'alice'")
    assert seed.encode() not in bytes(sealed)
    # Wrong passwords lock the account; a locked account is refused even with the right password.
    for _ in range(LOCK_AFTER):
        assert (await login(http, cloud, "alice", "Wrong-password-1"))[0] == 401
    assert (await login(http, cloud, "alice", GOOD))[0] == 423
    # An unknown user gets the same answer as a wrong password.
    status, body = await login(http, cloud, "mallory", GOOD)
    assert (status, body["error"]) == (401, "bad_credentials")
    entries = cloud.app[AUDIT].entries(action_prefix="auth.login")
    outcomes = [(e.target, e.outcome) for e in entries]
    assert ("user:alice", "ok") in outcomes and outcomes.count(("user:alice", "denied")) >= LOCK_AFTER
    assert cloud.app[AUDIT].entries(action_prefix="security.repeated_login_failures")
    assert cloud.app[AUDIT].verify().ok


async def test_sessions_follow_role_changes_and_logout(cloud, http) -> None:
    admin = cloud.auth(cloud.token("admin"))
    async with http.post(
        f"{cloud.url}/v1/users", json={"name": "bob", "role": "viewer", "password": GOOD}, headers=admin
    ) as r:
        assert r.status == 201
    _, body = await login(http, cloud, "bob", GOOD)
    session = {"Authorization": f"Bearer {body['token']}"}
    async with http.get(f"{cloud.url}/v1/gateways", headers=session) as r:
        assert r.status == 200
    async with http.patch(f"{cloud.url}/v1/users/bob", json={"role": "auditor"}, headers=admin) as r:
        assert (await r.json())["changed"] == {"role": ["viewer", "auditor"]}
    async with http.get(f"{cloud.url}/v1/gateways", headers=session) as r:
        assert r.status == 401  # a changed role ends the sessions made under the old one
    _, body = await login(http, cloud, "bob", GOOD)
    session = {"Authorization": f"Bearer {body['token']}"}
    async with http.get(f"{cloud.url}/v1/gateways", headers=session) as r:
        assert r.status == 403
    async with http.get(f"{cloud.url}/v1/audit?action=user.", headers=session) as r:
        changes = [e for e in (await r.json())["entries"] if e["action"] == "user.permission_change"]
        assert changes[0]["target"] == "user:bob"
    async with http.post(f"{cloud.url}/v1/auth/logout", headers=session) as r:
        assert r.status == 200
    async with http.get(f"{cloud.url}/v1/audit", headers=session) as r:
        assert r.status == 401


async def test_tokens_cannot_exceed_their_creator_and_scopes_hide_gateways(cloud, http, enrolled) -> None:
    registry = cloud.app[REGISTRY]
    registry.add_org("north", "North district")
    registry.add_org("south", "South district")
    registry.add_station("gs-n1", "north", "North gate", "gate", 31.2, 121.4)
    registry.add_station("gs-s1", "south", "South gate", "gate")
    registry.provision_gateway("gw-sec", "gs-n1")
    north = cloud.auth(cloud.token("operator", "org:north"))
    south = cloud.auth(cloud.token("operator", "station:gs-s1"))
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec", headers=north) as r:
        assert r.status == 200
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec", headers=south) as r:
        assert r.status == 404  # outside the scope: as unknown as a missing gateway
    async with http.get(f"{cloud.url}/v1/gateways", headers=south) as r:
        assert (await r.json())["gateways"] == []
    command = {"type": "alarm.ack", "body": {"alarm_id": "x.y", "by": "op"}}
    async with http.post(f"{cloud.url}/v1/gateways/gw-sec/commands", json=command, headers=south) as r:
        assert r.status == 404
    async with http.post(f"{cloud.url}/v1/tokens", json={"label": "x", "role": "admin"}, headers=north) as r:
        assert r.status == 400 and "more rights" in (await r.json())["detail"]
    async with http.post(
        f"{cloud.url}/v1/tokens", json={"label": "y", "role": "viewer", "scopes": "*"}, headers=north
    ) as r:
        assert r.status == 400  # a wider scope than its creator
    async with http.post(
        f"{cloud.url}/v1/tokens",
        json={"label": "scada-link", "role": "viewer", "scopes": "station:gs-n1", "days": 30},
        headers=north,
    ) as r:
        assert r.status == 201
        token = (await r.json())["token"]
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec/latest", headers=cloud.auth(token)) as r:
        assert r.status == 200
    admin = cloud.auth(cloud.token("admin"))
    async with http.delete(f"{cloud.url}/v1/tokens/scada-link", headers=admin) as r:
        assert r.status == 200
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec/latest", headers=cloud.auth(token)) as r:
        assert r.status == 401


def test_cli_user_add_and_audit_verify(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cloud.db'}"

    def gasiot(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gasiot", *args], input=stdin, capture_output=True, text=True, timeout=60
        )

    weak = gasiot("cloud", "user-add", "root", "--role", "admin", "--db", db, "--password-stdin", stdin="password\n")
    assert weak.returncode == 1 and "at least 12" in weak.stderr
    ok = gasiot("cloud", "user-add", "root", "--role", "admin", "--db", db, "--password-stdin", stdin=GOOD + "\n")
    assert ok.returncode == 0, ok.stderr
    verified = gasiot("cloud", "audit-verify", "--db", db)
    assert verified.returncode == 0 and "1 entries" in verified.stdout
    head = verified.stdout.strip().rsplit(" ", 1)[1]
    import sqlite3

    with sqlite3.connect(tmp_path / "cloud.db") as conn:
        conn.execute("UPDATE audit SET actor = 'cli:someone-else'")
    broken = gasiot("cloud", "audit-verify", "--db", db, "--expect-head", head)
    assert broken.returncode == 1 and "entry 1 was altered" in broken.stderr
