"""SM4 encryption (CBC, GCM per RFC 8998, and the raw block for the known-answer test) through
`cryptography` (OpenSSL): constant-time where OpenSSL is.  Imported only where payloads are
encrypted or keys wrapped, so a gateway that does neither does not load `cryptography`."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gascore.crypto.errors import CryptoError

SM4_KEY_BYTES = 16
SM4_BLOCK_BYTES = 16
SM4_GCM_NONCE_BYTES = 12
SM4_GCM_TAG_BYTES = 16


def _sm4(key: bytes) -> algorithms.SM4:
    if len(key) != SM4_KEY_BYTES:
        raise CryptoError(f"SM4 key must be {SM4_KEY_BYTES} bytes, got {len(key)}")
    return algorithms.SM4(key)


def _check_iv(iv: bytes) -> None:
    if len(iv) != SM4_BLOCK_BYTES:
        raise CryptoError(f"SM4-CBC IV must be {SM4_BLOCK_BYTES} bytes, got {len(iv)}")


def sm4_encrypt_cbc(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC with PKCS#7 padding; the caller supplies a fresh unpredictable IV per message."""
    _check_iv(iv)
    padder = padding.PKCS7(SM4_BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(_sm4(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def sm4_decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of sm4_encrypt_cbc.  CBC is not authenticated: prefer sm4_gcm_* for new formats."""
    _check_iv(iv)
    if not ciphertext or len(ciphertext) % SM4_BLOCK_BYTES:
        raise CryptoError("SM4-CBC ciphertext length is not a positive multiple of the block size")
    dec = Cipher(_sm4(key), modes.CBC(iv)).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    unpadder = padding.PKCS7(SM4_BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise CryptoError("SM4-CBC padding is invalid (wrong key or corrupted ciphertext)") from exc


def sm4_encrypt_block(key: bytes, block: bytes) -> bytes:
    """One raw SM4 block (ECB of a single block); exists for the GB/T 32907 known-answer test."""
    if len(block) != SM4_BLOCK_BYTES:
        raise CryptoError(f"SM4 block must be {SM4_BLOCK_BYTES} bytes, got {len(block)}")
    enc = Cipher(_sm4(key), modes.ECB()).encryptor()  # noqa: S305 - single block, KAT only
    return enc.update(block) + enc.finalize()


def _check_nonce(nonce: bytes) -> None:
    # GCM with a 96-bit nonce avoids the GHASH-derived counter path; other lengths are a mistake here.
    if len(nonce) != SM4_GCM_NONCE_BYTES:
        raise CryptoError(f"SM4-GCM nonce must be {SM4_GCM_NONCE_BYTES} bytes, got {len(nonce)}")


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """SM4-GCM (RFC 8998); returns ciphertext || 16-byte tag.  Never reuse a nonce under one key."""
    _check_nonce(nonce)
    enc = Cipher(_sm4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
    """Inverse of sm4_gcm_encrypt; raises CryptoError if the tag does not authenticate."""
    _check_nonce(nonce)
    if len(ciphertext) < SM4_GCM_TAG_BYTES:
        raise CryptoError("SM4-GCM ciphertext is shorter than its tag")
    body, tag = ciphertext[:-SM4_GCM_TAG_BYTES], ciphertext[-SM4_GCM_TAG_BYTES:]
    dec = Cipher(_sm4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag as exc:
        raise CryptoError("SM4-GCM authentication failed") from exc
