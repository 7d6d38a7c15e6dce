"""TOTP (RFC 6238, HMAC-SHA1, 30 s steps, 6 digits): what authenticator apps implement.

Small enough to keep here with the RFC's own test vectors (tests/cloud/test_identity.py) rather
than add a dependency.  A code is accepted one step early or late (clock drift), and never twice:
the caller stores the last step used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import urllib.parse

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1


def new_secret() -> str:
    """A 160-bit secret, base32 as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret_b32: str) -> bytes:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded)


def code_at(secret_b32: str, step: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    mac = hmac.new(_key(secret_b32), struct.pack(">Q", step), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    value = (int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF) % 10**digits
    return str(value).zfill(digits)


def matching_step(secret_b32: str, code: str, now_s: float, last_used_step: int | None) -> int | None:
    """The step ``code`` belongs to (within the drift window, after ``last_used_step``), or None."""
    if not code.isdigit() or len(code) != DIGITS:
        return None
    current = int(now_s // STEP_S)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        if hmac.compare_digest(code_at(secret_b32, step), code):
            return step
    return None


def provisioning_uri(secret_b32: str, account: str, issuer: str = "gasiot") -> str:
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode({"secret": secret_b32, "issuer": issuer, "digits": DIGITS, "period": STEP_S})
    return f"otpauth://totp/{label}?{query}"
