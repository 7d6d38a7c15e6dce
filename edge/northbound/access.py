"""Who may log in and what each role may do, checked by asyncua on every request.

Logins: users from the station file (scrypt hashes; failures throttled per user name so a
password guesser cannot keep the event loop busy hashing), and anonymous sessions only when
allowed (viewer).  Requests: reading, browsing, subscribing and history are for every role; a
Call is checked per method (acknowledge → operator, a property write → operator, a device
service → engineer, alarm refresh → viewer); Write, AddNodes and the like → nobody.

The user of the request being processed is kept in a context variable so that the method
handlers, which asyncua calls without the session, can audit who called them.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.server.user_managers import UserManager
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import struct_from_binary

from edge.northbound.config import OpcUaServerConfig
from edge.northbound.users import Role, verify_password

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
CURRENT_USER: contextvars.ContextVar[str] = contextvars.ContextVar("opcua_user", default="?")

_FAILURES_ALLOWED = 5
_FAILURE_WINDOW_S = 60.0

_READ_TYPES = frozenset(
    ua.NodeId(ua.Int32(i), ua.Int16(0))
    for i in (
        ObjectIds.CloseSessionRequest_Encoding_DefaultBinary,
        ObjectIds.ReadRequest_Encoding_DefaultBinary,
        ObjectIds.BrowseRequest_Encoding_DefaultBinary,
        ObjectIds.BrowseNextRequest_Encoding_DefaultBinary,
        ObjectIds.TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary,
        ObjectIds.RegisterNodesRequest_Encoding_DefaultBinary,
        ObjectIds.UnregisterNodesRequest_Encoding_DefaultBinary,
        ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary,
        ObjectIds.ModifySubscriptionRequest_Encoding_DefaultBinary,
        ObjectIds.DeleteSubscriptionsRequest_Encoding_DefaultBinary,
        ObjectIds.TransferSubscriptionsRequest_Encoding_DefaultBinary,
        ObjectIds.SetPublishingModeRequest_Encoding_DefaultBinary,
        ObjectIds.CreateMonitoredItemsRequest_Encoding_DefaultBinary,
        ObjectIds.ModifyMonitoredItemsRequest_Encoding_DefaultBinary,
        ObjectIds.DeleteMonitoredItemsRequest_Encoding_DefaultBinary,
        ObjectIds.SetMonitoringModeRequest_Encoding_DefaultBinary,
        ObjectIds.PublishRequest_Encoding_DefaultBinary,
        ObjectIds.RepublishRequest_Encoding_DefaultBinary,
        ObjectIds.HistoryReadRequest_Encoding_DefaultBinary,
        ObjectIds.CloseSecureChannelRequest_Encoding_DefaultBinary,
    )
)
_CALL = ua.NodeId(ua.Int32(ObjectIds.CallRequest_Encoding_DefaultBinary), ua.Int16(0))

# Standard methods every role may call (alarm display needs them), and the acknowledgement.
_VIEWER_METHODS = frozenset(
    ua.NodeId(ua.Int32(i), ua.Int16(0))
    for i in (
        ObjectIds.ConditionType_ConditionRefresh,
        ObjectIds.ConditionType_ConditionRefresh2,
        ObjectIds.Server_GetMonitoredItems,
    )
)
ACKNOWLEDGE = ua.NodeId(ua.Int32(ObjectIds.AcknowledgeableConditionType_Acknowledge), ua.Int16(0))


@dataclass
class Accounts:
    """The login table; replaced as a whole on a config reload."""

    users: dict[str, tuple[Role, str]]  # name → (role, password hash)
    allow_anonymous: bool

    @classmethod
    def from_config(cls, config: OpcUaServerConfig) -> Accounts:
        return cls({u.name: (Role[u.role.upper()], u.password_hash) for u in config.users}, config.allow_anonymous)

    def role_of(self, name: str | None) -> Role | None:
        if name == ANONYMOUS:
            return Role.VIEWER if self.allow_anonymous else None
        entry = self.users.get(name or "")
        return entry[0] if entry else None


class StationUsers(UserManager):
    def __init__(self, accounts: Accounts, clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = accounts
        self._failures: dict[str, deque[float]] = {}
        self._clock = clock

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            if self.accounts.allow_anonymous:
                return User(role=UserRole.User, name=ANONYMOUS)
            log.warning("opcua: anonymous login refused (allow_anonymous is off)")
            return None
        now = self._clock()
        recent = self._failures.setdefault(username, deque())
        while recent and now - recent[0] > _FAILURE_WINDOW_S:
            recent.popleft()
        if len(recent) >= _FAILURES_ALLOWED:
            log.warning("opcua: login of %r refused: %d failures in the last minute", username, len(recent))
            return None
        entry = self.accounts.users.get(username)
        if entry is not None and password is not None and verify_password(password, entry[1]):
            recent.clear()
            log.info("opcua: %s logged in (%s)", username, entry[0].name.lower())
            return User(role=UserRole.User, name=username)
        recent.append(now)
        log.warning("opcua: login of %r refused: unknown user or wrong password", username)
        return None


MethodRole = Callable[[ua.NodeId], Role | None]
"""The role a station method needs (None: not a station method)."""


class RolePermissions(PermissionRuleset):
    def __init__(self, accounts: Callable[[], Accounts], method_role: MethodRole) -> None:
        self._accounts = accounts
        self._method_role = method_role

    def check_validity(self, user: User | None, action_type_id: ua.NodeId, body: Any) -> bool:
        name = user.name if user is not None else None
        role = self._accounts().role_of(name)
        if role is None:
            return False
        CURRENT_USER.set(name or "?")
        if action_type_id in _READ_TYPES:
            return True
        if action_type_id == _CALL:
            try:  # asyncua hands over the undecoded request: decode a copy
                methods = struct_from_binary(ua.CallParameters, body.copy()).MethodsToCall or []
            except Exception:  # noqa: BLE001 - a request we cannot decode is refused, not crashed on
                log.warning("opcua: %s sent an undecodable Call request", name)
                return False
            for call in methods:
                needed = self.required_role(call.MethodId)
                if role < needed:
                    log.warning(
                        "opcua: %s (%s) may not call %s (needs %s)",
                        name,
                        role.name.lower(),
                        call.MethodId.to_string(),
                        needed.name.lower(),
                    )
                    return False
            return True
        log.warning("opcua: %s refused a %s request", name, action_type_id.to_string())
        return False

    def required_role(self, method: ua.NodeId) -> Role:
        if method in _VIEWER_METHODS:
            return Role.VIEWER
        if method == ACKNOWLEDGE:
            return Role.OPERATOR
        return self._method_role(method) or Role.ENGINEER
