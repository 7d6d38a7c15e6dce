"""The signing interface shared by the SM2 and Ed25519 implementations."""

from __future__ import annotations

from typing import Literal, Protocol

from gascore.crypto.symmetric import sm3_digest

SigAlg = Literal["sm2-sm3", "ed25519"]
SIG_ALGS: tuple[SigAlg, ...] = ("sm2-sm3", "ed25519")

KEY_ID_BYTES = 8


class Signer(Protocol):
    alg: SigAlg
    key_id: str

    def public_key_bytes(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    alg: SigAlg
    key_id: str

    def verify(self, message: bytes, signature: bytes) -> None: ...


def key_id_of(public_key: bytes) -> str:
    """Short stable name for a public key, the same on edge and cloud for either algorithm."""
    return sm3_digest(public_key)[:KEY_ID_BYTES].hex()
