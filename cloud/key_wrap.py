"""Per-gateway payload keys are kept in the database wrapped under the cloud's key-encryption key
(KEK), so a copied database or backup does not decrypt anybody's batches.

Wrapped form: ``0x01 || nonce(12) || SM4-GCM(KEK, nonce, key, aad)``, where the AAD binds the key
to its gateway: a wrapped key moved to another gateway's row does not unwrap.  The KEK is 16
random bytes (hex) in a file readable by the service's user only, created at first start.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from pathlib import Path

from cloud.repository import Repository
from gascore.crypto import CryptoError, sm4_gcm_decrypt, sm4_gcm_encrypt
from gascore.tls import read_private_pem, write_private_pem

log = logging.getLogger(__name__)

_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_BYTES = 16


class KeyWrapError(Exception):
    """A wrapped key that does not unwrap (another KEK, a tampered row, a key moved between gateways)."""


def _aad(gateway_id: str, purpose: str = "payload-key") -> bytes:
    return f"gasiot/{purpose}/v1|".encode() + gateway_id.encode()


class PayloadKeyWrap:
    def __init__(self, kek: bytes) -> None:
        if len(kek) != _KEY_BYTES:
            raise ValueError("the KEK is 16 bytes")
        self._kek = kek

    def __repr__(self) -> str:  # never show the KEK
        return "PayloadKeyWrap(<kek>)"

    @classmethod
    def ephemeral(cls) -> PayloadKeyWrap:
        """A KEK that lives as long as the process (tests, the demo)."""
        return cls(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def load_or_create(cls, path: Path) -> PayloadKeyWrap:
        """Read the KEK file (refusing one others can read), or create it (mode 0600)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private_pem(path, secrets.token_bytes(_KEY_BYTES).hex().encode() + b"\n")
            log.info("payload key-encryption key written to %s", path)
        try:
            kek = bytes.fromhex(read_private_pem(path).decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as err:
            raise CryptoError(f"{path} does not hold a hex KEK") from err
        return cls(kek)

    def wrap(self, gateway_id: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + sm4_gcm_encrypt(self._kek, nonce, key, _aad(gateway_id))

    def unwrap(self, gateway_id: str, blob: bytes) -> bytes:
        if len(blob) == _KEY_BYTES:
            return blob  # stored before wrapping existed; rewrap_legacy() converts it at start
        if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE_BYTES + _KEY_BYTES:
            raise KeyWrapError(f"the payload key of gateway {gateway_id} is not in a known wrapped form")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return sm4_gcm_decrypt(self._kek, nonce, sealed, _aad(gateway_id))
        except CryptoError as err:
            raise KeyWrapError(
                f"the payload key of gateway {gateway_id} does not unwrap (another KEK, or the row was altered)"
            ) from err

    def seal(self, purpose: str, owner: str, secret: bytes) -> bytes:
        """Wrap another secret kept in the database (a user's TOTP seed…), bound to its purpose
        and owner: a sealed value copied to another row or used for another purpose does not open."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + sm4_gcm_encrypt(self._kek, nonce, secret, _aad(owner, purpose))

    def open(self, purpose: str, owner: str, blob: bytes) -> bytes:
        if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE_BYTES + 16:
            raise KeyWrapError(f"the {purpose} of {owner} is not in a known sealed form")
        try:
            return sm4_gcm_decrypt(
                self._kek, blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :], _aad(owner, purpose)
            )
        except CryptoError as err:
            raise KeyWrapError(f"the {purpose} of {owner} does not open (another KEK, or the row was altered)") from err

    def rewrap_legacy(self, repo: Repository) -> int:
        """Wrap payload keys stored in the clear by earlier versions; returns how many."""
        done = 0
        for gw in repo.gateways():
            if gw.payload_key is not None and len(gw.payload_key) == _KEY_BYTES:
                repo.register_gateway(replace(gw, payload_key=self.wrap(gw.gateway_id, gw.payload_key)))
                done += 1
        if done:
            log.info("wrapped %d payload key(s) stored in the clear under the KEK", done)
        return done
