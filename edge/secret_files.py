"""The startup check of every secret a station names (S-7.3.1b: keys and passwords only where the
gateway's own user can read them).

Secret files are the gateway's signing key, its TLS key and payload key in the data directory,
and every channel field marked ``SECRET_FILE`` (an OPC-UA private key, an MQTT client key…),
whatever the driver.  Each must be a regular file that neither group nor others can read or
write.  A password written inline in the station file makes the station file itself a secret:
then others must not be able to read it (group read is allowed, for a ``root:gasiot 0640``
layout); ``${env:NAME}`` keeps the password out of the file altogether.

``gasiot edge run`` refuses to start on any problem; ``gasiot edge check`` lists them.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from drivers.secrets import is_inline
from edge.config import Station
from edge.enroll import PAYLOAD_KEY_FILE
from edge.tls_files import TLS_KEY


@dataclass(frozen=True, slots=True)
class SecretProblem:
    path: Path
    where: str  # which setting names it: "channels.opc1.private_key", "gateway signing key"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class SecretFileError(Exception):
    """The station names secrets that others can read; the gateway does not start."""

    def __init__(self, problems: list[SecretProblem]) -> None:
        super().__init__("refusing to start:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


def require_private_secrets(station: Station) -> None:
    """Raise SecretFileError listing every problem of ``check_secret_files``."""
    problems = check_secret_files(station)
    if problems:
        raise SecretFileError(problems)


def _marked_secret_files(channel: BaseModel) -> Iterator[tuple[str, Path]]:
    for name, field in type(channel).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("secret_file"):
            value = getattr(channel, name)
            if isinstance(value, Path):
                yield name, value


def _inline_secrets(channel: BaseModel) -> Iterator[str]:
    for name in type(channel).model_fields:
        value: Any = getattr(channel, name)
        if isinstance(value, SecretStr) and is_inline(value):
            yield name


def secret_files(station: Station) -> list[tuple[str, Path, bool]]:
    """(where, path, required) for every secret file of the station; data-directory files are
    optional (they exist once the gateway is enrolled, and ``Gateway.build`` reports their absence)."""
    out: list[tuple[str, Path, bool]] = [
        ("gateway signing key", station.key_file, False),
        ("gateway TLS key", station.data_dir / TLS_KEY, False),
        ("batch payload key", station.data_dir / PAYLOAD_KEY_FILE, False),
    ]
    for channel_id, channel in station.channels.items():
        for name, path in _marked_secret_files(channel):
            out.append((f"channels.{channel_id}.{name}", path, True))
    return out


def check_secret_files(station: Station) -> list[SecretProblem]:
    problems: list[SecretProblem] = []
    for where, path, required in secret_files(station):
        try:
            st = path.stat()
        except FileNotFoundError:
            if required:
                problems.append(SecretProblem(path, where, f"{path} does not exist"))
            continue
        except OSError as err:
            problems.append(SecretProblem(path, where, f"cannot stat {path}: {err.strerror}"))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(SecretProblem(path, where, f"{path} is not a regular file"))
        elif st.st_mode & 0o077:
            problems.append(
                SecretProblem(
                    path,
                    where,
                    f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can read or change "
                    f"this key; run: chmod 600 {path}",
                )
            )
    inline = [f"channels.{cid}.{name}" for cid, ch in station.channels.items() for name in _inline_secrets(ch)]
    if inline:
        source = Path(station.source)
        mode = stat.S_IMODE(source.stat().st_mode)
        if mode & 0o007:
            problems.append(
                SecretProblem(
                    source,
                    ", ".join(inline),
                    f"the station file {source} holds this password inline and has mode {mode:04o} "
                    f"(readable by any user); run: chmod 640 {source}, or write the password as "
                    "${env:NAME} and set NAME in the gateway's environment",
                )
            )
    return problems
