"""SM2-with-SM3 signing keys and verifiers, on whichever backend sm2_backends selected."""

from __future__ import annotations

from gascore.crypto.base import SigAlg, key_id_of
from gascore.crypto.errors import BadSignature, CryptoError
from gascore.crypto.sm2_backends import SM2_BACKEND, SM2_BACKENDS, get_backend
from gascore.crypto.sm2_curve import decode_point, encode_point
from gascore.crypto.sm2_scheme import (
    PRIVATE_KEY_BYTES,
    SM2_DEFAULT_UID,
    decode_signature,
    is_valid_private_key,
    random_private_key,
)

__all__ = ["SM2_BACKEND", "SM2_BACKENDS", "SM2_DEFAULT_UID", "Sm2Signer", "Sm2Verifier"]


class Sm2Signer:
    """An SM2 private key.  Signs SM3(Z_A || M) with the default ID; output is raw r || s."""

    __slots__ = ("_d", "_public", "_sign", "alg", "backend", "key_id")

    def __init__(self, private_key: int, *, backend: str | None = None) -> None:
        if not is_valid_private_key(private_key):
            raise CryptoError("SM2 private key out of range [1, n-2]")
        impl = get_backend(backend)
        self._d = private_key
        point = impl.public_point(private_key)
        self._public = encode_point(point)
        self._sign = impl.signer(private_key, point)
        self.alg: SigAlg = "sm2-sm3"
        self.key_id = key_id_of(self._public)
        self.backend = impl.name

    @classmethod
    def generate(cls, *, backend: str | None = None) -> Sm2Signer:
        return cls(random_private_key(), backend=backend)

    @classmethod
    def from_private_bytes(cls, private_key: bytes, *, backend: str | None = None) -> Sm2Signer:
        if len(private_key) != PRIVATE_KEY_BYTES:
            raise CryptoError(f"SM2 private key must be {PRIVATE_KEY_BYTES} bytes, got {len(private_key)}")
        return cls(int.from_bytes(private_key, "big"), backend=backend)

    def private_key_bytes(self) -> bytes:
        return self._d.to_bytes(PRIVATE_KEY_BYTES, "big")

    def public_key_bytes(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._sign(message)

    def verifier(self, *, backend: str | None = None) -> Sm2Verifier:
        return Sm2Verifier(self._public, backend=backend)

    def __repr__(self) -> str:  # never show the private key, e.g. in tracebacks with locals
        return f"Sm2Signer(key_id={self.key_id!r}, backend={self.backend!r})"


class Sm2Verifier:
    """An SM2 public key, validated on construction (uncompressed, on the curve)."""

    __slots__ = ("_public", "_verify", "alg", "backend", "key_id")

    def __init__(self, public_key: bytes, *, backend: str | None = None) -> None:
        try:
            point = decode_point(public_key)
        except ValueError as exc:
            raise CryptoError(f"invalid SM2 public key: {exc}") from exc
        impl = get_backend(backend)
        self._public = bytes(public_key)
        self._verify = impl.verifier(point)
        self.alg: SigAlg = "sm2-sm3"
        self.key_id = key_id_of(self._public)
        self.backend = impl.name

    def public_key_bytes(self) -> bytes:
        return self._public

    def verify(self, message: bytes, signature: bytes) -> None:
        decode_signature(signature)  # length and range checks, identical for every backend
        if not self._verify(message, signature):
            raise BadSignature(f"SM2 signature does not verify under key {self.key_id}")

    def __repr__(self) -> str:
        return f"Sm2Verifier(key_id={self.key_id!r}, backend={self.backend!r})"
