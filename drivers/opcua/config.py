"""Configuration of an OPC-UA channel (one server endpoint) and of the nodes bound to points
(pydantic, validated at load)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.secrets import SECRET_FILE, Password

if TYPE_CHECKING:
    from asyncua import ua

SecurityPolicy = Literal["None", "Basic256Sha256"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
PointMode = Literal["subscribe", "poll"]
TimestampSource = Literal["source", "server"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadband(_Strict):
    """A DataChangeFilter deadband, applied by the server before it reports a change.

    ``absolute``: report when the value moved more than ``value`` (engineering units of the node).
    ``percent``: more than ``value`` % of the node's EURange (the server must know the EURange;
    many servers refuse or ignore percent deadbands).
    """

    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)

    @model_validator(mode="after")
    def _percent_range(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percent deadband is 0..100")
        return self


class OpcUaPoint(_Strict):
    """One node whose Value attribute becomes one point.

    The driver returns the raw value (numbers, bools and strings as the server sends them);
    scaling and the gateway-side ``deadband`` belong to the station file's binding.  The
    server-side deadband is ``server_deadband`` (a different thing: the server does not even
    send changes smaller than it).
    """

    node: str = Field(min_length=3, description="NodeId, e.g. ns=2;s=Inlet.Pressure or ns=2;i=1001")
    mode: PointMode = Field(
        default="subscribe", description="subscribe: the server reports changes; poll: read on the device's interval"
    )
    sampling_interval_ms: int = Field(
        default=1000, ge=0, le=3_600_000, description="also the publishing interval of the point's subscription"
    )
    queue_size: int = Field(default=1, ge=1, le=10_000, description="values the server keeps between publishes")
    server_deadband: Deadband | None = Field(default=None, description="DataChangeFilter applied by the server")
    timestamp: TimestampSource = Field(default="source", description="which OPC-UA timestamp becomes the sample time")

    @field_validator("node")
    @classmethod
    def _parses(cls, node: str) -> str:
        parse_node_id(node)
        return node

    @cached_property
    def node_id(self) -> ua.NodeId:
        """The parsed ``node`` (parsed once per point)."""
        return parse_node_id(self.node)


def parse_node_id(text: str) -> ua.NodeId:
    """The NodeId for ``text`` (``ns=2;s=Name``, ``ns=2;i=7``, ``i=85``, ``ns=3;g=…``, ``ns=3;b=…``).

    Raises ValueError naming the expected form.
    """
    # asyncua costs ~18 MB and ~0.4 s to import: only stations with OPC-UA points pay for it.
    from asyncua import ua
    from asyncua.ua.uaerrors import UaStringParsingError

    try:
        return ua.NodeId.from_string(text.strip())
    except (UaStringParsingError, ValueError) as err:
        raise ValueError(
            f"not an OPC-UA NodeId: {text!r} (expected e.g. ns=2;s=Inlet.Pressure or ns=2;i=1001)"
        ) from err


class OpcUaChannel(_Strict):
    """One OPC-UA server endpoint: one session, shared by every device bound to it."""

    # Validation errors must not echo inputs: they may hold a password (or one in the URL).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    driver: Literal["opcua"] = "opcua"
    endpoint: str = Field(description="opc.tcp://host:port[/path]")
    security_policy: SecurityPolicy = "None"
    security_mode: SecurityMode = "None"
    certificate: Path | None = Field(default=None, description="the gateway's certificate (.der or .pem)")
    private_key: Path | None = Field(
        default=None, description="the gateway's private key (.pem or .der)", json_schema_extra=SECRET_FILE
    )
    trusted_server_certificates: list[Path] = Field(
        default_factory=list, description="the server's certificate must be one of these"
    )
    trust_dir: Path | None = Field(
        default=None,
        description="a trust list directory (trusted/, rejected/, revoked/, crl/) managed with `gasiot keys trust`; "
        "a refused server's certificate is kept in rejected/",
    )
    accept_any_server_certificate: bool = Field(
        default=False, description="skip the server certificate check (closed test networks only)"
    )
    username: str | None = None
    password: Password | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=300, description="per request and per connection step")
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    application_uri: str = Field(default="urn:gasiot:edge", min_length=1)
    max_nodes_per_read: int = Field(default=1000, ge=1, le=100_000, description="nodes per Read request")

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, endpoint: str) -> str:
        url = urlsplit(endpoint)
        if "@" in url.netloc:
            # asyncua would take credentials from the URL, and the URL is logged: keep them apart
            # (and out of this message).
            raise ValueError("put credentials in `username`/`password`, not in the endpoint URL")
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"endpoint must look like opc.tcp://host:4840, not {endpoint!r}")
        try:
            _ = url.port
        except ValueError as err:
            raise ValueError(f"bad port in endpoint {endpoint!r}") from err
        return endpoint

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaChannel:
        if self.security_policy == "None":
            if self.security_mode != "None":
                raise ValueError(f"security_mode {self.security_mode} needs security_policy Basic256Sha256")
            if self.trusted_server_certificates or self.trust_dir:
                raise ValueError("trusted_server_certificates/trust_dir need security_policy Basic256Sha256")
        else:
            if self.security_mode == "None":
                raise ValueError(f"security_policy {self.security_policy} needs security_mode Sign or SignAndEncrypt")
            if self.certificate is None or self.private_key is None:
                raise ValueError(f"security_policy {self.security_policy} needs `certificate` and `private_key`")
            checks = bool(self.trusted_server_certificates) + (self.trust_dir is not None)
            if checks > 1:
                raise ValueError("give `trust_dir` or `trusted_server_certificates`, not both")
            if checks == 0 and not self.accept_any_server_certificate:
                raise ValueError(
                    f"security_policy {self.security_policy} needs `trust_dir` or `trusted_server_certificates` "
                    "(or `accept_any_server_certificate: true` on a closed test network): "
                    "an unchecked server certificate defeats the secure channel"
                )
            if checks and self.accept_any_server_certificate:
                raise ValueError("accept_any_server_certificate contradicts trust_dir/trusted_server_certificates")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both `username` and `password`, or neither")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    @property
    def secure(self) -> bool:
        return self.security_policy != "None"
