"""Typed application state shared by the cloud's handlers (aiohttp AppKeys) and the clock."""

from __future__ import annotations

import time

from aiohttp import web

from cloud.ingest import Ingestor
from cloud.repository import Repository
from gascore.crypto import Signer

REPO = web.AppKey("repo", Repository)
INGESTOR = web.AppKey("ingestor", Ingestor)
CLOUD_SIGNER = web.AppKey("cloud_signer", Signer)
PRINCIPAL = web.RequestKey("principal", str)  # who made an API request, for the audit trail


def now_ms() -> int:
    return time.time_ns() // 1_000_000
