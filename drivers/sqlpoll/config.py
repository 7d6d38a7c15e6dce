"""Intermediate-database channels (A-4.1.4-scada: SCADA systems that only expose a database):
read-only polling of one table or view, incrementally by an id or a timestamp column."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.secrets import Password

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(text: str, *, dotted: bool = False) -> str:
    parts = text.split(".") if dotted else [text]
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ValueError(f"{text!r} is not a plain SQL identifier (letters, digits, _; schema.table allowed)")
    return text


def quote(identifier: str) -> str:
    """Quote a validated identifier (each dotted part) for SQLite and PostgreSQL alike."""
    return ".".join(f'"{part}"' for part in identifier.split("."))


class SqlPollChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["sql_poll"] = "sql_poll"
    url: str = Field(description="sqlite:///path/to/file.db or postgresql://user@host:5432/dbname")
    password: Password | None = Field(None, description="PostgreSQL password (kept out of the URL and logs)")
    table: str = Field(description="Table or view to read (schema.table allowed)")
    key_column: str = Field(description="Increasing id or timestamp column; rows are read in its order")
    device_column: str | None = Field(None, description="Column naming the device (matched to device ids)")
    timestamp_column: str | None = Field(None, description="Column with the measurement time")
    timestamp_unit: Literal["ms", "s"] = "ms"
    poll_interval_s: float = Field(5.0, gt=0, le=86_400)
    batch_limit: int = Field(1000, ge=1, le=100_000)
    start: Literal["latest", "all"] = Field("latest", description="latest: only rows added after start-up")
    timeout_s: float = Field(10.0, gt=0)
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
            raise ValueError("url must start with sqlite:/// or postgresql://")
        if url.startswith("postgres") and re.search(r"://[^/@]*:[^/@]*@", url):
            raise ValueError("put the password in `password`, not in the URL (URLs end up in logs)")
        return url

    @field_validator("table")
    @classmethod
    def _table(cls, text: str) -> str:
        return check_identifier(text, dotted=True)

    @field_validator("key_column", "device_column", "timestamp_column")
    @classmethod
    def _column(cls, text: str | None) -> str | None:
        return None if text is None else check_identifier(text)


class SqlPollPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str

    @field_validator("column")
    @classmethod
    def _column(cls, text: str) -> str:
        return check_identifier(text)
