"""Password hashes for people (cloud users, OPC-UA users of a gateway): scrypt, a memory-hard
KDF in the standard library.  Format (what ``gasiot edge hash-password`` prints)::

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>

Only hashes are ever stored; the comparison takes constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_FORMAT = re.compile(r"^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_DEFAULT_LOG2_N, _DEFAULT_R, _DEFAULT_P = 14, 8, 1
_HASH_BYTES = 32


def hash_password(password: str, *, log2_n: int = _DEFAULT_LOG2_N) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, log2_n, _DEFAULT_R, _DEFAULT_P)
    b64 = base64.b64encode
    return f"scrypt${log2_n}${_DEFAULT_R}${_DEFAULT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_hash_format(stored: str) -> str:
    """Raise ValueError unless ``stored`` looks like a hash from ``hash_password`` (a plain
    password pasted into the station file is caught here)."""
    m = _FORMAT.match(stored)
    if m is None:
        raise ValueError("password_hash must come from `gasiot edge hash-password` (scrypt$...)")
    log2_n, r, p = (int(x) for x in m.groups()[:3])
    if not 10 <= log2_n <= 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("password_hash has out-of-range scrypt parameters")
    return stored


def verify_password(password: str, stored: str) -> bool:
    m = _FORMAT.match(stored)
    if m is None:
        return False
    log2_n, r, p = (int(x) for x in m.groups()[:3])
    salt, expected = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p), expected)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=_HASH_BYTES
    )
