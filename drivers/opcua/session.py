"""One OPC-UA session: an asyncua client connected as the channel says (security, trust,
credentials), its Read/Write services under ``asyncio.timeout``, and a "lost" signal.

A session is used until it is lost, then thrown away: the driver opens a new one (new secure
channel, new session) rather than repairing it.  asyncua's own reconnect supervisor is off
(``auto_reconnect=False``); its connection watchdog stays on and probes the server every
``timeout_s``, so a silent network loss is noticed within about two timeouts, and a closed
socket at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from drivers.base import CommError, DeviceError
from drivers.opcua.config import OpcUaChannel
from drivers.opcua.errors import SecurityError
from drivers.opcua.security import (
    MODES,
    POLICIES,
    ServerTrust,
    check_own_certificate,
    leaf_der,
    pick_endpoint,
)
from drivers.opcua.status import status as status_code
from drivers.opcua.status import status_name

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_S = StatusCodes

SESSION_TIMEOUT_MS = 60_000  # the server drops our session this long after we vanish
CLIENT_NAME = "gasiot edge gateway"

# A service fault with one of these means the session or the channel is gone, not the request.
_SESSION_GONE: frozenset[int] = frozenset(
    {
        _S.BadSessionIdInvalid,
        _S.BadSessionClosed,
        _S.BadSessionNotActivated,
        _S.BadSecureChannelIdInvalid,
        _S.BadSecureChannelClosed,
        _S.BadSecureChannelTokenUnknown,
        _S.BadConnectionClosed,
        _S.BadServerHalted,
        _S.BadShutdown,
        _S.BadTimeout,
        _S.BadRequestTimeout,
        _S.BadCommunicationError,
        _S.BadNotConnected,
        _S.BadServerNotConnected,
        _S.BadNoCommunication,
    }
)

# Refusals while connecting that retrying cannot fix: certificates, policies, credentials.
_SECURITY_REFUSALS: frozenset[int] = frozenset(
    {
        _S.BadSecurityChecksFailed,
        _S.BadSecurityPolicyRejected,
        _S.BadSecurityModeRejected,
        _S.BadCertificateInvalid,
        _S.BadCertificateUntrusted,
        _S.BadCertificateUriInvalid,
        _S.BadCertificateHostNameInvalid,
        _S.BadCertificateTimeInvalid,
        _S.BadCertificateRevoked,
        _S.BadCertificateUseNotAllowed,
        _S.BadIdentityTokenInvalid,
        _S.BadIdentityTokenRejected,
        _S.BadUserAccessDenied,
    }
)

# What asyncua raises for a failed request or transport.
_TRANSPORT_ERRORS = (OSError, TimeoutError, UaError)


class _RedactIdentity(logging.Filter):
    """asyncua logs every request it sends at DEBUG, ActivateSession with the user's password
    in it (plain text whenever the token policy does not encrypt it): cut the identity token out.
    Filters run only for records that pass the level check, so this costs nothing above DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cut = message.find("UserIdentityToken=")
        if cut < 0:
            cut = message.find("Password=")
        if cut >= 0:
            record.msg, record.args = message[:cut] + "UserIdentityToken=<redacted>)", None
        return True


for _name in (
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_session.UaSession",
    "asyncua.client.client",
):
    logging.getLogger(_name).addFilter(_RedactIdentity())


class ServiceFault(DeviceError):
    """The server answered a whole request with a bad service result (not a session loss)."""

    def __init__(self, code: int) -> None:
        super().__init__(status_name(code))
        self.code = code


def _code_of(err: BaseException) -> int | None:
    code = getattr(err, "code", None)
    return int(code) if isinstance(code, int) else None


class OpcUaSession:
    """A connected session.  Create with :meth:`open`; once :attr:`alive` is False it stays so."""

    def __init__(self, channel: OpcUaChannel, client: Client) -> None:
        self.channel = channel
        self.client = client
        self._lost = asyncio.Event()
        self.lost_reason = ""
        client.connection_lost_callback = self._on_connection_lost

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, channel: OpcUaChannel, trust: ServerTrust) -> OpcUaSession:
        """Connect: secure channel, session, activation.  Raises SecurityError (configuration or
        trust problem) or CommError (anything else: refused, timed out, rejected)."""
        client = Client(channel.endpoint, timeout=channel.timeout_s, watchdog_intervall=channel.timeout_s)
        client.application_uri = channel.application_uri
        client.name = client.description = CLIENT_NAME
        client.session_timeout = SESSION_TIMEOUT_MS
        if channel.username is not None and channel.password is not None:
            client.set_user(channel.username)
            client.set_password(channel.password.get_secret_value())
        try:
            if channel.secure:
                await _secure(client, channel, trust)
            async with asyncio.timeout(channel.timeout_s):
                await client.connect(auto_reconnect=False)
        except SecurityError:
            _discard(client)
            raise
        except _TRANSPORT_ERRORS as err:
            _discard(client)
            code = _code_of(err)
            if code is not None and code & 0xFFFF0000 in _SECURITY_REFUSALS:
                raise SecurityError(f"{channel.endpoint} refused the session: {status_name(code)}") from err
            why = f"no answer within {channel.timeout_s} s" if isinstance(err, TimeoutError) else _describe(err)
            raise CommError(f"cannot connect to {channel.endpoint}: {why}") from err
        return cls(channel, client)

    @property
    def security(self) -> str:
        """The security actually in use, e.g. ``Basic256Sha256/SignAndEncrypt`` or ``None/None``."""
        policy = self.client.security_policy
        mode = ua.MessageSecurityMode(policy.Mode).name.rstrip("_")
        return f"{policy.URI.rpartition('#')[2]}/{mode}"

    @property
    def alive(self) -> bool:
        return not self._lost.is_set()

    def mark_lost(self, reason: str) -> None:
        """Declare the session unusable (first reason wins)."""
        if not self._lost.is_set():
            self.lost_reason = reason
            self._lost.set()

    async def wait_lost(self) -> str:
        await self._lost.wait()
        return self.lost_reason

    async def _on_connection_lost(self, exc: Exception) -> None:
        # asyncua's watchdog: the socket closed or the server stopped answering its probe.
        if isinstance(exc, TimeoutError):
            self.mark_lost(f"connection lost: no answer to the watchdog probe within {self.channel.timeout_s} s")
        else:
            self.mark_lost(f"connection lost: {_describe(exc)}")

    async def close(self) -> None:
        """Close the session (politely if the link still works) and free asyncua's tasks."""
        self.mark_lost("closed")
        try:
            async with asyncio.timeout(self.channel.timeout_s):
                await self.client.disconnect()
        except _TRANSPORT_ERRORS:
            pass
        finally:
            self.client.disconnect_socket()

    # ------------------------------------------------------------------ services

    async def call(self, what: str, request: Awaitable[_T]) -> _T:
        """Await one service request under the channel timeout.

        A transport failure, a timeout or a service fault that means the session is gone marks
        the session lost and raises CommError; any other service fault raises ServiceFault.
        """
        try:
            async with asyncio.timeout(self.channel.timeout_s):
                return await request
        except TimeoutError as err:
            reason = f"{what}: no answer within {self.channel.timeout_s} s"
            self.mark_lost(reason)
            raise CommError(f"{self.channel.endpoint}: {reason}") from err
        except _TRANSPORT_ERRORS as err:
            code = _code_of(err)
            if code is not None and code & 0xFFFF0000 not in _SESSION_GONE:
                raise ServiceFault(code) from err
            reason = f"{what}: {_describe(err)}"
            self.mark_lost(reason)
            raise CommError(f"{self.channel.endpoint}: {reason}") from err

    async def read(self, node_ids: Sequence[ua.NodeId]) -> list[ua.DataValue]:
        """The Value attribute of every node, in one Read request, with both timestamps."""
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.Value) for node_id in node_ids],
        )
        values = await self.call("read", self.client.uaclient.read(params))
        if len(values) != len(node_ids):
            raise DeviceError(f"server answered {len(values)} values for {len(node_ids)} nodes")
        return values

    async def write(self, node_id: ua.NodeId, variant: ua.Variant) -> None:
        """Write the Value attribute (no timestamps: many servers refuse writes that carry them)."""
        value = ua.WriteValue(NodeId=node_id, AttributeId=AttributeIds.Value, Value=ua.DataValue(Value=variant))
        results = await self.call("write", self.client.uaclient.write(ua.WriteParameters(NodesToWrite=[value])))
        status = results[0] if results else status_code(_S.BadUnexpectedError)
        if not status.is_good():
            raise DeviceError(status_name(status.value))

    async def variant_type(self, node_id: ua.NodeId) -> ua.VariantType:
        """The variant type to write a node's value with: its DataType attribute resolved to a
        built-in type; for abstract types (BaseDataType, Number) the type of the current value."""
        node = Node(self.client.uaclient.session, node_id)
        attr = await self.call("read DataType", node.read_attribute(AttributeIds.DataType, raise_on_bad_status=False))
        if attr.StatusCode is not None and not attr.StatusCode.is_good():
            raise DeviceError(status_name(attr.StatusCode.value))
        dtype = attr.Value.Value if attr.Value is not None else None
        if not isinstance(dtype, ua.NodeId):
            raise DeviceError(f"{node_id.to_string()} has no DataType")
        if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) and 1 <= dtype.Identifier <= 21:
            return ua.VariantType(dtype.Identifier)
        vtype = await self.call(
            "resolve DataType", data_type_to_variant_type(Node(self.client.uaclient.session, dtype))
        )
        if vtype is ua.VariantType.Variant:
            (current,) = await self.read([node_id])
            if current.Value is None or current.Value.VariantType is ua.VariantType.Null:
                raise DeviceError(f"{node_id.to_string()} has an abstract DataType and no value to take the type from")
            return ua.VariantType(current.Value.VariantType)
        return vtype


async def _secure(client: Client, channel: OpcUaChannel, trust: ServerTrust) -> None:
    """Fetch the server's endpoints over an unsecured channel, pick the configured policy/mode,
    check the server certificate against the trust list, then arm the client with our own pair."""
    assert channel.certificate is not None and channel.private_key is not None
    await check_own_certificate(channel)
    async with asyncio.timeout(channel.timeout_s):
        endpoints = await client.connect_and_get_server_endpoints()
    endpoint = pick_endpoint(endpoints, channel)
    if not endpoint.ServerCertificate:
        raise SecurityError(f"{channel.endpoint} sent no certificate with its {channel.security_policy} endpoint")
    server_der = leaf_der(endpoint.ServerCertificate)
    trust.check(channel.endpoint, server_der)
    try:
        await client.set_security(
            POLICIES[channel.security_policy],
            certificate=str(channel.certificate),
            private_key=str(channel.private_key),
            server_certificate=server_der,
            mode=MODES[channel.security_mode],
        )
    except (OSError, ValueError, TypeError) as err:
        raise SecurityError(f"cannot load the gateway certificate or key: {err}") from err


def _discard(client: Client) -> None:
    """Drop a client whose connect failed or timed out half-way.  asyncua closes the socket
    itself on an error, but not when the connect is cancelled by our timeout; the session was
    never activated, so there is nothing else to close."""
    client.disconnect_socket()


def _describe(err: BaseException) -> str:
    code = _code_of(err)
    if code is not None:
        return status_name(code)
    return str(err) or type(err).__name__
