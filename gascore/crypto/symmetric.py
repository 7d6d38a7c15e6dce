"""SM3 hashing: through hashlib when the OpenSSL Python is linked against has SM3 (OpenSSL 3's
default provider does), else through `cryptography` - both OpenSSL, about a thousand times faster
than the pure-Python gmssl equivalent.  hashlib first because `cryptography` costs ~10 MiB of
memory, which a gateway that neither encrypts payloads nor runs TLS client certificates should
not pay just to hash (docs/performance.md).  SM4 is in ``gascore.crypto.sm4``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def _hashlib_sm3() -> Callable[[bytes], bytes] | None:
    try:
        hashlib.new("sm3", b"abc")
    except ValueError:
        return None
    return lambda data: hashlib.new("sm3", data).digest()


def _cryptography_sm3(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


sm3_digest: Callable[[bytes], bytes] = _hashlib_sm3() or _cryptography_sm3
"""SM3 of ``data`` (32 bytes).  GB/T 32905 known answers: tests/test_crypto.py."""
