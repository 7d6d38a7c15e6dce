"""The SM2 signature scheme of GB/T 32918.2 over sm2p256v1, independent of any backend library.

Every backend produces and accepts the same bytes: the signature on message M is computed over
e = SM3(Z_A || M), Z_A binding the signer's identity (the default ID) and public key, and encoded
as raw r || s, 32 bytes each, big-endian (not DER: fixed length, no parser to get wrong).
"""

from __future__ import annotations

import secrets

from gascore.crypto.errors import BadSignature
from gascore.crypto.sm2_curve import COORD_BYTES, GX, GY, A, Affine, B, N, base_mul, mul_add_base
from gascore.crypto.symmetric import sm3_digest

# GM/T 0009 default signer ID; both ends must use the same one or Z_A, and every signature, differs.
SM2_DEFAULT_UID = b"1234567812345678"
SIGNATURE_BYTES = 2 * COORD_BYTES
PRIVATE_KEY_BYTES = COORD_BYTES
_MAX_UID_BYTES = 0xFFFF // 8  # ENTL is the ID length in bits, in two bytes


def _int32(value: int) -> bytes:
    return value.to_bytes(COORD_BYTES, "big")


def sm2_za(public: Affine, uid: bytes = SM2_DEFAULT_UID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    if len(uid) > _MAX_UID_BYTES:
        raise ValueError("SM2 signer ID too long")
    x, y = public
    entl = (8 * len(uid)).to_bytes(2, "big")
    return sm3_digest(entl + uid + _int32(A) + _int32(B) + _int32(GX) + _int32(GY) + _int32(x) + _int32(y))


def sm2_e(za: bytes, message: bytes) -> int:
    """e = SM3(Z_A || M) as an integer; it is used unreduced, as the standard specifies."""
    return int.from_bytes(sm3_digest(za + message), "big")


def random_nonce() -> int:
    """Per-signature k, uniform in [1, n-1] from the OS CSPRNG.

    A repeated or biased k discloses the private key, so no library RNG is trusted for it.
    """
    return secrets.randbelow(N - 1) + 1


def random_private_key() -> int:
    """d uniform in [1, n-2]: n-1 is excluded because signing divides by (1 + d)."""
    return secrets.randbelow(N - 2) + 1


def is_valid_private_key(d: int) -> bool:
    return 1 <= d <= N - 2


def encode_signature(r: int, s: int) -> bytes:
    return _int32(r) + _int32(s)


def decode_signature(signature: bytes) -> tuple[int, int]:
    """Split raw r || s and apply the range checks of GB/T 32918.2 §7.1 B1-B2 (and B5's t != 0)."""
    if len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"SM2 signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    r = int.from_bytes(signature[:COORD_BYTES], "big")
    s = int.from_bytes(signature[COORD_BYTES:], "big")
    if not (1 <= r <= N - 1 and 1 <= s <= N - 1):
        raise BadSignature("SM2 signature r or s out of range [1, n-1]")
    if (r + s) % N == 0:
        raise BadSignature("SM2 signature has r + s = 0 mod n")
    return r, s


def _sm2_sign_with_k(private_key: int, e: int, k: int) -> bytes | None:
    """Sign digest e with an explicit nonce k (GB/T 32918.2 §6.1 A3-A6).

    Production code draws k from random_nonce(); a caller-chosen k exists for the known-answer
    test.  Returns None when this k is unusable (r = 0, r + k = n or s = 0) and a new one is needed.
    """
    point = base_mul(k)
    if point is None:
        return None
    r = (e + point[0]) % N
    if r == 0 or r + k == N:
        return None
    # s = (1 + d)^-1 · (k - r·d), rewritten so that the inverse multiplies a single term.
    s = (pow(1 + private_key, -1, N) * (k + r) - r) % N
    if s == 0:
        return None
    return encode_signature(r, s)


def _sm2_verify_e(public: Affine, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2 §7.1 B5-B7 for an already range-checked (r, s)."""
    t = (r + s) % N
    point = mul_add_base(s, t, public)
    if point is None:
        return False
    return (e + point[0]) % N == r
