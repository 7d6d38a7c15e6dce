"""Cryptographic primitives shared by edge and cloud: SM3/SM4, SM2-with-SM3 and Ed25519 signing,
and key files.  Import from here; the submodules are implementation detail.

SM2 signatures are raw r || s (64 bytes) over SM3(Z_A || M) with the default signer ID; nonces
come from `secrets`.  SM2_BACKEND names the implementation chosen at import (see sm2_backends).

Ed25519 and SM4 load on first use (``__getattr__`` below): they need `cryptography`, ~10 MiB a
gateway signing with SM2 and not encrypting payloads should not carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gascore.crypto.base import SigAlg, Signer, Verifier, key_id_of
from gascore.crypto.errors import BadSignature, CryptoError, KeyFileError
from gascore.crypto.keys import (
    generate_signer,
    load_key_file,
    signer_from_private_bytes,
    verifier_for,
    write_key_file,
)
from gascore.crypto.sm2 import SM2_BACKEND, SM2_BACKENDS, SM2_DEFAULT_UID, Sm2Signer, Sm2Verifier
from gascore.crypto.symmetric import sm3_digest
from gascore.lazy import lazy_attribute

if TYPE_CHECKING:
    from gascore.crypto.ed25519 import Ed25519Signer, Ed25519Verifier
    from gascore.crypto.sm4 import (
        sm4_decrypt_cbc,
        sm4_encrypt_block,
        sm4_encrypt_cbc,
        sm4_gcm_decrypt,
        sm4_gcm_encrypt,
    )

_LAZY = {
    "Ed25519Signer": "ed25519",
    "Ed25519Verifier": "ed25519",
    "sm4_decrypt_cbc": "sm4",
    "sm4_encrypt_block": "sm4",
    "sm4_encrypt_cbc": "sm4",
    "sm4_gcm_decrypt": "sm4",
    "sm4_gcm_encrypt": "sm4",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


__all__ = [
    "SM2_BACKEND",
    "SM2_BACKENDS",
    "SM2_DEFAULT_UID",
    "BadSignature",
    "CryptoError",
    "Ed25519Signer",
    "Ed25519Verifier",
    "KeyFileError",
    "SigAlg",
    "Signer",
    "Sm2Signer",
    "Sm2Verifier",
    "Verifier",
    "generate_signer",
    "key_id_of",
    "load_key_file",
    "signer_from_private_bytes",
    "sm3_digest",
    "sm4_decrypt_cbc",
    "sm4_encrypt_block",
    "sm4_encrypt_cbc",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
    "verifier_for",
    "write_key_file",
]
