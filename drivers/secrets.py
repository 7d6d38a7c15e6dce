"""Secrets in channel configs: passwords that may come from the environment, and the marker for
fields naming a private-key file, so one startup check (``edge.secret_files``) finds every secret
a station names without knowing the drivers.

A password is written in the station file either inline (then the file itself must be readable
by its owner only) or as ``${env:NAME}``, read from the gateway's environment at load time (a
systemd ``EnvironmentFile=`` or credential); the value never appears in errors or logs.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr

_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


class EnvSecretStr(SecretStr):
    """A secret read from an environment variable (not stored in the station file)."""


def _from_environment(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("${"):
        m = _ENV_REF.match(value)
        if m is None:
            raise ValueError("write an environment reference as ${env:NAME}")
        name = m.group(1)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return EnvSecretStr(os.environ[name])
    return value


Password = Annotated[
    SecretStr,
    BeforeValidator(_from_environment),
    Field(description="inline (then keep the station file mode 0600/0640) or ${env:NAME}"),
]

SECRET_FILE: dict[str, Any] = {"secret_file": True}
"""``json_schema_extra`` of a field that names a private-key file: it must be readable by its owner only."""


def is_inline(secret: SecretStr | None) -> bool:
    """True for a secret written into the station file itself."""
    return secret is not None and not isinstance(secret, EnvSecretStr)
