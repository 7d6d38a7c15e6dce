"""API keys and enrollment tokens: random secrets shown once, stored only as SM3 hashes."""

from __future__ import annotations

import secrets

from gascore.crypto import sm3_digest

API_KEY_PREFIX = "gsk_"
TOKEN_PREFIX = "get_"  # noqa: S105 - a prefix, not a secret


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return sm3_digest(secret.encode()).hex()
