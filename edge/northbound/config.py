"""The ``opcua_server:`` section of a station file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.secrets import SECRET_FILE
from edge.northbound.users import check_hash_format

SecurityOption = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
_SECURE_DEFAULT: tuple[SecurityOption, ...] = ("Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign")
RoleName = Literal["viewer", "operator", "engineer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpcUaUserConfig(_Strict):
    # Validation errors must not echo a pasted password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    role: RoleName = Field(description="viewer: read; operator: + ack and writes; engineer: + services")
    password_hash: str = Field(description="from `gasiot edge hash-password` (never the password itself)")

    @field_validator("password_hash")
    @classmethod
    def _hashed(cls, value: str) -> str:
        return check_hash_format(value)


class HistoryConfig(_Strict):
    enabled: bool = True
    retention_days: float = Field(7.0, gt=0, le=3650, description="values older than this are deleted")
    max_values_per_read: int = Field(
        10_000, ge=10, le=1_000_000, description="per node and request; more comes with a continuation point"
    )


class OpcUaServerConfig(_Strict):
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/gasiot", description="opc.tcp://HOST:PORT/PATH; 0.0.0.0 to serve the SCADA LAN"
    )
    security: list[SecurityOption] = Field(
        default_factory=lambda: list(_SECURE_DEFAULT),
        min_length=1,
        description="offered endpoints; `None` (no security) only if listed",
    )
    application_uri: str | None = Field(None, description="default urn:gasiot:<gateway id>:server")
    certificate: Path | None = Field(
        None, description="default <data_dir>/pki/opcua-server-cert.der (made at first start)"
    )
    private_key: Path | None = Field(
        None, description="default <data_dir>/pki/opcua-server-key.pem", json_schema_extra=SECRET_FILE
    )
    trust_dir: Path | None = Field(
        None, description="trusted client certificates (gasiot keys trust); default <data_dir>/pki/opcua-clients"
    )
    allow_anonymous: bool = Field(False, description="anonymous sessions get the viewer role")
    users: list[OpcUaUserConfig] = Field(default_factory=list)
    history: HistoryConfig = Field(default_factory=HistoryConfig)

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, endpoint: str) -> str:
        url = urlsplit(endpoint)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"endpoint must look like opc.tcp://0.0.0.0:4840/gasiot, not {endpoint!r}")
        try:
            _ = url.port
        except ValueError as err:
            raise ValueError(f"bad port in endpoint {endpoint!r}") from err
        return endpoint

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaServerConfig:
        names = [u.name for u in self.users]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate user name(s): {', '.join(duplicates)}")
        if not self.users and not self.allow_anonymous:
            raise ValueError("no way to log in: add `users` or set `allow_anonymous: true`")
        if len(set(self.security)) != len(self.security):
            raise ValueError("security lists an option twice")
        return self
