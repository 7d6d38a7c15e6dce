"""Roles, permissions and scopes of the cloud API (O-8.2.2, O-8.3.1).

Every route declares one permission; a role is a set of permissions; a principal (a user's
session, an API token) has one role and a scope: ``*`` or a list of organisations and stations
(``org:north,station:gs-01``).  A gateway is visible to a principal whose scope holds its station
or the station's organisation.

| role        | for                               | may                                                  |
|-------------|-----------------------------------|------------------------------------------------------|
| viewer      | anyone who watches                | read data, gateways, alarms                          |
| integrator  | other systems reading the API     | + read commands and their results                    |
| operator    | dispatchers                       | + send commands (writes, acks)                       |
| maintainer  | field engineering                 | + registry and station configuration                 |
| auditor     | the security auditor              | the audit log only (and nothing else)                |
| admin       | the platform's administrators     | everything                                           |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ROLES: tuple[str, ...] = ("viewer", "integrator", "operator", "maintainer", "auditor", "admin")

_READ = frozenset({"data.read", "gateway.read", "registry.read"})
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": _READ,
    "integrator": _READ | {"command.read"},
    "operator": _READ | {"command.read", "command.create"},
    "maintainer": _READ | {"command.read", "registry.write", "config.write", "platform.read"},
    "auditor": frozenset({"audit.read"}),
    "admin": frozenset(
        {
            *_READ,
            "command.read",
            "command.create",
            "command.service",
            "registry.write",
            "config.write",
            "firmware.write",
            "gateway.enroll",
            "user.admin",
            "audit.read",
            "export.sensitive",
            "platform.read",
        }
    ),
}
PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values())


class ScopeError(ValueError):
    pass


def parse_scopes(text: str) -> frozenset[str]:
    """``*`` or a comma list of ``org:<id>`` / ``station:<id>``."""
    text = text.strip()
    if text == "*":
        return frozenset({"*"})
    items = frozenset(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ScopeError("scopes: '*' or a list like 'org:north,station:gs-01'")
    for item in items:
        kind, _, ident = item.partition(":")
        if kind not in ("org", "station") or not ident:
            raise ScopeError(f"scope {item!r}: expected org:<id> or station:<id>")
    return items


@dataclass(frozen=True, slots=True)
class Principal:
    id: str  # "user:alice", "token:scada-link", "apikey:admin:1a2b3c4d"
    role: str
    scopes: frozenset[str]

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def everywhere(self) -> bool:
        return "*" in self.scopes

    def sees(self, station: str | None, org: str | None) -> bool:
        """Whether a thing at ``station`` (of ``org``) is in scope; unplaced things only for ``*``."""
        if self.everywhere:
            return True
        return (station is not None and f"station:{station}" in self.scopes) or (
            org is not None and f"org:{org}" in self.scopes
        )

    def covers(self, other: Principal, org_of: Callable[[str], str | None] = lambda station: None) -> bool:
        """``other`` can do nothing this principal cannot (for tokens made by a user): no
        permission it lacks, and each scope item inside its own (a station inside an organisation
        it holds counts; ``org_of`` names a station's organisation)."""
        if not other.permissions <= self.permissions:
            return False
        if self.everywhere:
            return True
        if other.everywhere:
            return False
        for item in other.scopes:
            kind, _, ident = item.partition(":")
            if item in self.scopes:
                continue
            if kind == "station" and f"org:{org_of(ident)}" in self.scopes:
                continue
            return False
        return True
