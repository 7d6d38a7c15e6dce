"""Ed25519 (RFC 8032) keys through `cryptography`, with the same surface as the SM2 classes."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gascore.crypto.base import SigAlg, key_id_of
from gascore.crypto.errors import BadSignature, CryptoError

KEY_BYTES = 32
SIGNATURE_BYTES = 64

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_RAW = serialization.Encoding.Raw


def _decode_point(public_key: bytes) -> tuple[int, int]:
    """RFC 8032 §5.1.3 point decoding: OpenSSL accepts any 32 bytes as a key and only fails later,
    at every verification, so a garbled key would surface as a stream of bad signatures."""
    y = int.from_bytes(public_key, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        raise ValueError("y coordinate not reduced")
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
        if (x * x - x2) % _P:
            raise ValueError("not a point on edwards25519")
    if x == 0 and sign:
        raise ValueError("non-canonical encoding of x = 0")
    if x & 1 != sign:
        x = _P - x
    return x, y


def _has_small_order(point: tuple[int, int]) -> bool:
    """[8]A is the identity for the eight low-order points; with one of them as a public key some
    signatures verify for every message, so such keys are refused."""
    x, y = point
    for _ in range(3):
        # Complete affine doubling on -x² + y² = 1 + d·x²·y² (d is a non-square, no exceptions).
        dxy = _D * x * x * y * y % _P
        x, y = (2 * x * y * pow(1 + dxy, -1, _P) % _P, (y * y + x * x) * pow(1 - dxy, -1, _P) % _P)
    return x == 0 and y == 1


class Ed25519Signer:
    __slots__ = ("_key", "_public", "alg", "key_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.alg: SigAlg = "ed25519"
        self.key_id = key_id_of(self._public)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, private_key: bytes) -> Ed25519Signer:
        if len(private_key) != KEY_BYTES:
            raise CryptoError(f"Ed25519 private key must be {KEY_BYTES} bytes, got {len(private_key)}")
        return cls(Ed25519PrivateKey.from_private_bytes(private_key))

    def private_key_bytes(self) -> bytes:
        return self._key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    def public_key_bytes(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._public)

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self.key_id!r})"


class Ed25519Verifier:
    __slots__ = ("_key", "_public", "alg", "key_id")

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != KEY_BYTES:
            raise CryptoError(f"Ed25519 public key must be {KEY_BYTES} bytes, got {len(public_key)}")
        try:
            point = _decode_point(public_key)
        except ValueError as exc:
            raise CryptoError(f"invalid Ed25519 public key: {exc}") from exc
        if _has_small_order(point):
            raise CryptoError("invalid Ed25519 public key: point of small order")
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self._public = bytes(public_key)
        self.alg: SigAlg = "ed25519"
        self.key_id = key_id_of(self._public)

    def public_key_bytes(self) -> bytes:
        return self._public

    def verify(self, message: bytes, signature: bytes) -> None:
        if len(signature) != SIGNATURE_BYTES:
            raise BadSignature(f"Ed25519 signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise BadSignature(f"Ed25519 signature does not verify under key {self.key_id}") from None

    def __repr__(self) -> str:
        return f"Ed25519Verifier(key_id={self.key_id!r})"
