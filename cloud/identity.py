"""People and their credentials (N-6.4.2, O-8.2.1/2, S-7.4e): users created by an admin,
scrypt password hashes under a policy, TOTP second factor, lockout after repeated failures,
sessions and scoped API tokens with expiry.  Secrets are stored only as hashes (passwords,
session and token values) or sealed under the cloud's KEK (TOTP seeds).

Roles and what they may do: ``cloud.access``.  Every decision is written to the audit log by the
HTTP layer (``cloud.app``), which knows the client's address.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cloud.access import ROLES, Principal, parse_scopes
from cloud.auth import secret_hash
from cloud.key_wrap import PayloadKeyWrap
from cloud.sqldb import Dialect, SqlDb
from cloud.totp import matching_step, new_secret, provisioning_uri
from gascore.crypto.passwords import hash_password, verify_password

SESSION_PREFIX = "gss_"
TOKEN_PREFIX = "gst_"  # noqa: S105 - a prefix, not a secret

MIN_LENGTH = 12
MIN_CLASSES = 3
MAX_AGE_DAYS = 90
LOCK_AFTER = 5
LOCK_MS = 15 * 60_000
SESSION_MS = 8 * 3600_000
SESSION_IDLE_MS = 30 * 60_000
TOKEN_MAX_DAYS = 366

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS users(
            name TEXT PRIMARY KEY, role TEXT NOT NULL, scopes TEXT NOT NULL, password_hash TEXT NOT NULL,
            password_changed_ms INTEGER NOT NULL, totp_sealed BLOB, totp_enabled INTEGER NOT NULL DEFAULT 0,
            totp_last_step INTEGER, failures INTEGER NOT NULL DEFAULT 0, locked_until_ms INTEGER NOT NULL DEFAULT 0,
            disabled INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, created_by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS sessions(
            token_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, source TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS api_tokens(
            token_hash TEXT PRIMARY KEY, label TEXT NOT NULL, role TEXT NOT NULL, scopes TEXT NOT NULL,
            owner TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
            revoked_ms INTEGER);
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS users(
            name TEXT PRIMARY KEY, role TEXT NOT NULL, scopes TEXT NOT NULL, password_hash TEXT NOT NULL,
            password_changed_ms BIGINT NOT NULL, totp_sealed BYTEA, totp_enabled INTEGER NOT NULL DEFAULT 0,
            totp_last_step BIGINT, failures INTEGER NOT NULL DEFAULT 0, locked_until_ms BIGINT NOT NULL DEFAULT 0,
            disabled INTEGER NOT NULL DEFAULT 0, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS sessions(
            token_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL, source TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS api_tokens(
            token_hash TEXT PRIMARY KEY, label TEXT NOT NULL, role TEXT NOT NULL, scopes TEXT NOT NULL,
            owner TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
            revoked_ms BIGINT);
    """,
}


class IdentityError(Exception):
    """A request about users or credentials that cannot be done; the message says why."""


class PolicyError(IdentityError):
    """A password the policy refuses."""


class LoginResult(enum.StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"  # unknown user or wrong password: never said which
    LOCKED = "locked"
    TOTP_REQUIRED = "totp_required"
    BAD_TOTP = "bad_totp"
    PASSWORD_EXPIRED = "password_expired"  # noqa: S105 - a result name
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Login:
    result: LoginResult
    token: str | None = None
    expires_ms: int | None = None
    principal: Principal | None = None


def _common_passwords() -> frozenset[str]:
    text = resources.files("cloud").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


_COMMON = _common_passwords()


def check_password_policy(password: str, user_name: str) -> None:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"at least {MIN_LENGTH} characters")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < MIN_CLASSES:
        problems.append(f"at least {MIN_CLASSES} of: lower case, upper case, digits, symbols")
    lowered = password.lower()
    if lowered in _COMMON or any(lowered.startswith(w) for w in _COMMON if len(w) >= 6):
        problems.append("not a commonly used password")
    if user_name.lower() in lowered:
        problems.append("not containing the user name")
    if problems:
        raise PolicyError("the password needs " + "; ".join(problems))


class IdentityStore:
    def __init__(self, db: SqlDb, clock: Callable[[], int], key_wrap: PayloadKeyWrap, *, kdf_log2_n: int = 14) -> None:
        self.db = db
        self.clock = clock
        self.key_wrap = key_wrap
        self.kdf_log2_n = kdf_log2_n  # tests lower it; production keeps scrypt's 2^14
        # Checked against for unknown users, so a wrong name costs as much time as a wrong password.
        self._dummy_hash = hash_password(secrets.token_hex(8), log2_n=kdf_log2_n)
        db.script(DDL)

    # ---- users --------------------------------------------------------------------------------

    def create_user(self, name: str, role: str, password: str, *, scopes: str = "*", created_by: str) -> None:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            raise IdentityError("user name: 1-64 letters, digits or . _ - @")
        if role not in ROLES:
            raise IdentityError(f"role must be one of {', '.join(ROLES)}")
        parse_scopes(scopes)
        check_password_policy(password, name)
        now = self.clock()
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM users WHERE name = ?", (name,)):
                raise IdentityError(f"user {name!r} exists")
            tx.execute(
                "INSERT INTO users(name, role, scopes, password_hash, password_changed_ms, created_ms, created_by)"
                " VALUES (?,?,?,?,?,?,?)",
                (name, role, scopes, hash_password(password, log2_n=self.kdf_log2_n), now, now, created_by),
            )

    def users(self) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT name, role, scopes, totp_enabled, disabled, locked_until_ms, password_changed_ms, created_ms"
            " FROM users ORDER BY name"
        )
        now = self.clock()
        return [
            {
                "name": r[0],
                "role": r[1],
                "scopes": r[2],
                "mfa": bool(r[3]),
                "disabled": bool(r[4]),
                "locked": int(r[5]) > now,
                "password_age_days": round((now - int(r[6])) / 86_400_000, 1),
                "created_ms": int(r[7]),
            }
            for r in rows
        ]

    def update_user(
        self, name: str, *, role: str | None = None, scopes: str | None = None, disabled: bool | None = None
    ) -> dict[str, Any]:
        """Returns what changed (old → new) for the audit log."""
        if role is not None and role not in ROLES:
            raise IdentityError(f"role must be one of {', '.join(ROLES)}")
        if scopes is not None:
            parse_scopes(scopes)
        with self.db.transaction() as tx:
            row = tx.one("SELECT role, scopes, disabled FROM users WHERE name = ?", (name,))
            if row is None:
                raise IdentityError(f"no user {name!r}")
            changes: dict[str, Any] = {}
            for field, old, new in (("role", row[0], role), ("scopes", row[1], scopes)):
                if new is not None and new != old:
                    changes[field] = [old, new]
                    tx.execute(f"UPDATE users SET {field} = ? WHERE name = ?", (new, name))  # noqa: S608 - fixed names
            if disabled is not None and bool(row[2]) != disabled:
                changes["disabled"] = [bool(row[2]), disabled]
                tx.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if changes:  # a changed role or scope takes effect now, not at the next login
                tx.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
        return changes

    def change_password(self, name: str, old: str, new: str) -> None:
        row = self.db.one("SELECT password_hash FROM users WHERE name = ?", (name,))
        if row is None or not verify_password(old, str(row[0])):
            raise IdentityError("the current password is wrong")
        if old == new:
            raise PolicyError("the new password must differ from the current one")
        check_password_policy(new, name)
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE users SET password_hash = ?, password_changed_ms = ? WHERE name = ?",
                (hash_password(new, log2_n=self.kdf_log2_n), self.clock(), name),
            )
            tx.execute("DELETE FROM sessions WHERE user_name = ?", (name,))

    # ---- second factor -----------------------------------------------------------------------

    def start_totp(self, name: str) -> str:
        """A new TOTP seed for ``name`` (not active until confirmed); returns the otpauth:// URI."""
        seed = new_secret()
        sealed = self.key_wrap.seal("totp-seed", name, seed.encode())
        with self.db.transaction() as tx:
            if tx.execute("UPDATE users SET totp_sealed = ?, totp_enabled = 0 WHERE name = ?", (sealed, name)) != 1:
                raise IdentityError(f"no user {name!r}")
        return provisioning_uri(seed, name)

    def confirm_totp(self, name: str, code: str) -> bool:
        row = self.db.one("SELECT totp_sealed, totp_last_step FROM users WHERE name = ?", (name,))
        if row is None or row[0] is None:
            raise IdentityError("start TOTP enrolment first")
        seed = self.key_wrap.open("totp-seed", name, bytes(row[0])).decode()
        step = matching_step(seed, code, self.clock() / 1000, row[1])
        if step is None:
            return False
        with self.db.transaction() as tx:
            tx.execute("UPDATE users SET totp_enabled = 1, totp_last_step = ? WHERE name = ?", (step, name))
        return True

    # ---- login and sessions ------------------------------------------------------------------

    def login(self, name: str, password: str, totp: str | None, source: str) -> Login:
        now = self.clock()
        row = self.db.one(
            "SELECT password_hash, role, scopes, totp_sealed, totp_enabled, totp_last_step, failures,"
            " locked_until_ms, disabled, password_changed_ms FROM users WHERE name = ?",
            (name,),
        )
        if row is None:
            verify_password(password, self._dummy_hash)  # the same time as for a real user: no enumeration
            return Login(LoginResult.BAD_CREDENTIALS)
        pw_hash, role, scopes, sealed, totp_on, last_step, failures, locked_until, disabled, changed = row
        if int(locked_until) > now:
            return Login(LoginResult.LOCKED)
        if not verify_password(password, str(pw_hash)):
            self._failure(name, int(failures), now)
            return Login(LoginResult.BAD_CREDENTIALS)
        if disabled:
            return Login(LoginResult.DISABLED)
        if totp_on:
            if not totp:
                return Login(LoginResult.TOTP_REQUIRED)
            seed = self.key_wrap.open("totp-seed", name, bytes(sealed)).decode()
            step = matching_step(seed, totp, now / 1000, last_step)
            if step is None:
                self._failure(name, int(failures), now)
                return Login(LoginResult.BAD_TOTP)
            with self.db.transaction() as tx:
                tx.execute("UPDATE users SET totp_last_step = ? WHERE name = ?", (step, name))
        if now - int(changed) > MAX_AGE_DAYS * 86_400_000:
            return Login(LoginResult.PASSWORD_EXPIRED)
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires = now + SESSION_MS
        with self.db.transaction() as tx:
            tx.execute("UPDATE users SET failures = 0 WHERE name = ?", (name,))
            tx.execute(
                "INSERT INTO sessions(token_hash, user_name, created_ms, expires_ms, last_seen_ms, source)"
                " VALUES (?,?,?,?,?,?)",
                (secret_hash(token), name, now, expires, now, source),
            )
        return Login(LoginResult.OK, token, expires, Principal(f"user:{name}", role, parse_scopes(scopes)))

    def _failure(self, name: str, failures: int, now: int) -> None:
        failures += 1
        locked = now + LOCK_MS if failures >= LOCK_AFTER else 0
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE users SET failures = ?, locked_until_ms = ? WHERE name = ?",
                (0 if locked else failures, locked, name),
            )

    def logout(self, token: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM sessions WHERE token_hash = ?", (secret_hash(token),))

    def principal_for(self, token: str) -> Principal | None:
        """The principal of a session or API token, or None (unknown, expired, revoked, idle)."""
        now = self.clock()
        digest = secret_hash(token)
        if token.startswith(SESSION_PREFIX):
            row = self.db.one(
                "SELECT s.user_name, u.role, u.scopes, s.expires_ms, s.last_seen_ms, u.disabled FROM sessions s"
                " JOIN users u ON u.name = s.user_name WHERE s.token_hash = ?",
                (digest,),
            )
            if row is None or int(row[3]) <= now or now - int(row[4]) > SESSION_IDLE_MS or row[5]:
                return None
            with self.db.transaction() as tx:
                tx.execute("UPDATE sessions SET last_seen_ms = ? WHERE token_hash = ?", (now, digest))
            return Principal(f"user:{row[0]}", str(row[1]), parse_scopes(str(row[2])))
        if token.startswith(TOKEN_PREFIX):
            row = self.db.one(
                "SELECT label, role, scopes, expires_ms, revoked_ms, owner FROM api_tokens WHERE token_hash = ?",
                (digest,),
            )
            if row is None or int(row[3]) <= now or row[4] is not None:
                return None
            return Principal(f"token:{row[0]}", str(row[1]), parse_scopes(str(row[2])))
        return None

    # ---- API tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        label: str,
        role: str,
        scopes: str,
        days: int,
        *,
        owner: Principal,
        org_of: Callable[[str], str | None] = lambda station: None,
    ) -> tuple[str, int]:
        """A scoped API token for an integration; never more than its creator may do."""
        if role not in ROLES:
            raise IdentityError(f"role must be one of {', '.join(ROLES)}")
        if not 1 <= days <= TOKEN_MAX_DAYS:
            raise IdentityError(f"days: 1 to {TOKEN_MAX_DAYS}")
        wanted = Principal(f"token:{label}", role, parse_scopes(scopes))
        if not owner.covers(wanted, org_of):
            raise IdentityError("a token cannot have more rights or a wider scope than its creator")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + days * 86_400_000
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO api_tokens(token_hash, label, role, scopes, owner, created_ms, expires_ms)"
                " VALUES (?,?,?,?,?,?,?)",
                (secret_hash(token), label, role, scopes, owner.id, now, expires),
            )
        return token, expires

    def revoke_token(self, label: str) -> bool:
        with self.db.transaction() as tx:
            return (
                tx.execute(
                    "UPDATE api_tokens SET revoked_ms = ? WHERE label = ? AND revoked_ms IS NULL", (self.clock(), label)
                )
                > 0
            )

    def tokens(self) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT label, role, scopes, owner, created_ms, expires_ms, revoked_ms FROM api_tokens ORDER BY created_ms"
        )
        keys = ("label", "role", "scopes", "owner", "created_ms", "expires_ms", "revoked_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]
