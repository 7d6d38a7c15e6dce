"""Interchangeable SM2 implementations, and the choice among them made once at import.

* ``gmalglib`` - C extension, ~0.1 ms sign / ~0.4 ms verify.  Its ``rnd_fn`` hook lets us supply
  the nonce: it reads the bytes as a little-endian k.  That mapping is not documented, so the
  backend is only used after signing the GB/T 32918.5 example with the example's k through that
  hook reproduces the published (r, s) exactly.
* ``python`` - this package's own curve arithmetic (0.17 ms sign, 1 ms verify): the fallback.
* ``gmssl`` - third-party pure Python, kept as an independent cross-check and never chosen
  automatically (slowest, and its own nonce source is ``random.choice``).

All three sign over SM3(Z_A || M) with the default ID, take k from ``random_nonce`` (the
``secrets`` module) and produce raw r || s, so any one verifies any other's signatures.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any, Protocol

from gascore.crypto.errors import CryptoError
from gascore.crypto.sm2_curve import COORD_BYTES, Affine, base_mul, decode_point, encode_point
from gascore.crypto.sm2_scheme import (
    SM2_DEFAULT_UID,
    _sm2_sign_with_k,
    _sm2_verify_e,
    decode_signature,
    random_nonce,
    sm2_e,
    sm2_za,
)

_log = logging.getLogger(__name__)

SignFn = Callable[[bytes], bytes]
# Receives a signature that already passed length and range checks; answers whether it is valid.
VerifyFn = Callable[[bytes, bytes], bool]
NonceFn = Callable[[], int]

# A real nonce gives an unusable k with probability ~2^-255; a fixed one (tests) could loop forever.
_MAX_NONCE_ATTEMPTS = 64


class Sm2Backend(Protocol):
    name: str

    def public_point(self, private_key: int) -> Affine: ...

    def signer(self, private_key: int, public: Affine, nonce: NonceFn = random_nonce) -> SignFn: ...

    def verifier(self, public: Affine) -> VerifyFn: ...


class PythonBackend:
    name = "python"

    def public_point(self, private_key: int) -> Affine:
        point = base_mul(private_key)
        if point is None:
            raise CryptoError("SM2 private key is zero mod n")
        return point

    def signer(self, private_key: int, public: Affine, nonce: NonceFn = random_nonce) -> SignFn:
        za = sm2_za(public)

        def sign(message: bytes) -> bytes:
            e = sm2_e(za, message)
            for _ in range(_MAX_NONCE_ATTEMPTS):
                signature = _sm2_sign_with_k(private_key, e, nonce())
                if signature is not None:
                    return signature
            raise CryptoError("SM2 nonce source keeps producing unusable k")

        return sign

    def verifier(self, public: Affine) -> VerifyFn:
        za = sm2_za(public)

        def verify(message: bytes, signature: bytes) -> bool:
            r, s = decode_signature(signature)
            return _sm2_verify_e(public, sm2_e(za, message), r, s)

        return verify


class GmsslBackend:
    name = "gmssl"

    def __init__(self, crypt_sm2: Any = None) -> None:
        self._crypt_sm2 = crypt_sm2

    def _context(self, private_key: int | None, public: Affine) -> Any:
        if self._crypt_sm2 is None:  # the cross-check backend loads when first used, not at start
            from gmssl.sm2 import CryptSM2

            self._crypt_sm2 = CryptSM2
        public_hex = encode_point(public)[1:].hex()
        ctx = self._crypt_sm2(private_key=f"{private_key or 0:064x}", public_key=public_hex)
        # CryptSM2.__init__ drops a leading "04" with str.lstrip("04"), which also eats leading
        # 0/4 digits of X (the standard's own example key starts 09F9...): set the field directly.
        ctx.public_key = public_hex
        return ctx

    def public_point(self, private_key: int) -> Affine:
        return PythonBackend().public_point(private_key)

    def signer(self, private_key: int, public: Affine, nonce: NonceFn = random_nonce) -> SignFn:
        ctx = self._context(private_key, public)
        za = sm2_za(public)

        def sign(message: bytes) -> bytes:
            # gmssl's own sign_with_sm3 hashes with a slow pure-Python SM3 and, without an
            # explicit k, draws it from random.choice; hand it e and a secrets-based k instead.
            e = sm2_e(za, message).to_bytes(COORD_BYTES, "big")
            for _ in range(_MAX_NONCE_ATTEMPTS):
                out = ctx.sign(e, f"{nonce():064x}")
                if out is not None:
                    return bytes.fromhex(out)
            raise CryptoError("SM2 nonce source keeps producing unusable k")

        return sign

    def verifier(self, public: Affine) -> VerifyFn:
        ctx = self._context(None, public)
        za = sm2_za(public)

        def verify(message: bytes, signature: bytes) -> bool:
            e = sm2_e(za, message).to_bytes(COORD_BYTES, "big")
            return bool(ctx.verify(signature.hex(), e))

        return verify


class GmalglibBackend:
    name = "gmalglib"

    def __init__(self, sm2_class: Any) -> None:
        self._sm2 = sm2_class

    def public_point(self, private_key: int) -> Affine:
        return decode_point(bytes(self._sm2.get_pk(private_key.to_bytes(COORD_BYTES, "big"))))

    def signer(self, private_key: int, public: Affine, nonce: NonceFn = random_nonce) -> SignFn:
        def rnd_fn(size: int) -> bytes:
            # gmalglib asks for 32 bytes, reads them little-endian as k and redraws if k is not in
            # [1, n-1] (checked at import by _self_check); nonce() is already in that range.
            return nonce().to_bytes(size, "little")

        ctx = self._sm2(sk=private_key.to_bytes(COORD_BYTES, "big"), uid=SM2_DEFAULT_UID, rnd_fn=rnd_fn)

        def sign(message: bytes) -> bytes:
            return bytes(ctx.sign(message))

        return sign

    def verifier(self, public: Affine) -> VerifyFn:
        # The message-level call computes Z_A itself from uid and key: an independent Z_A path.
        ctx = self._sm2(pk=encode_point(public), uid=SM2_DEFAULT_UID)

        def verify(message: bytes, signature: bytes) -> bool:
            return bool(ctx.verify(message, signature))

        return verify


# GB/T 32918.5-2017 Annex A (signature on the recommended curve).
_KAT_D = 0x3945208F_7B2144B1_3F36E38A_C6D39F95_88939369_2860B51A_42FB81EF_4DF7C5B8
_KAT_PUBLIC = (
    0x09F9DF31_1E5421A1_50DD7D16_1E4BC5C6_72179FAD_1833FC07_6BB08FF3_56F35020,
    0xCCEA490C_E26775A5_2DC6EA71_8CC1AA60_0AED05FB_F35E084A_6632F607_2DA9AD13,
)
_KAT_K = 0x59276E27_D506861A_16680F3A_D9C02DCC_EF3CC1FA_3CDBE4CE_6D54B80D_EAC1BC21
_KAT_MESSAGE = b"message digest"
_KAT_SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


def _self_check(backend: Sm2Backend) -> None:
    """Raise unless the backend reproduces the standard's example exactly, nonce path included."""
    if backend.public_point(_KAT_D) != _KAT_PUBLIC:
        raise CryptoError(f"{backend.name}: public key of the GB/T 32918.5 example differs")
    signature = backend.signer(_KAT_D, _KAT_PUBLIC, nonce=lambda: _KAT_K)(_KAT_MESSAGE)
    if signature != _KAT_SIGNATURE:
        raise CryptoError(f"{backend.name}: signature with the example's k differs from the standard")
    verify = backend.verifier(_KAT_PUBLIC)
    if not verify(_KAT_MESSAGE, _KAT_SIGNATURE) or verify(_KAT_MESSAGE + b".", _KAT_SIGNATURE):
        raise CryptoError(f"{backend.name}: verification of the GB/T 32918.5 example is wrong")


def _load_gmalglib() -> Sm2Backend | None:
    try:
        from gmalglib.core import SM2
    except ImportError as exc:
        _log.info("SM2 backend gmalglib not importable: %s", exc)
        return None
    backend = GmalglibBackend(SM2)
    try:
        _self_check(backend)
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party extension disqualifies it
        _log.warning("SM2 backend gmalglib failed its self-check, not used: %s", exc)
        return None
    return backend


def _load_gmssl() -> Sm2Backend | None:
    if importlib.util.find_spec("gmssl") is None:
        _log.info("SM2 backend gmssl not installed")
        return None
    return GmsslBackend()


def _discover() -> dict[str, Sm2Backend]:
    found: dict[str, Sm2Backend] = {}
    fast = _load_gmalglib()
    if fast is not None:
        found[fast.name] = fast
    found[PythonBackend.name] = PythonBackend()
    slow = _load_gmssl()
    if slow is not None:
        found[slow.name] = slow
    return found


_BACKENDS = _discover()
# Usable backends, preferred first; SM2_BACKEND is what Sm2Signer/Sm2Verifier use by default.
SM2_BACKENDS: tuple[str, ...] = tuple(_BACKENDS)
SM2_BACKEND: str = SM2_BACKENDS[0]


def get_backend(name: str | None = None) -> Sm2Backend:
    if name is None:
        name = SM2_BACKEND
    try:
        return _BACKENDS[name]
    except KeyError:
        raise CryptoError(f"SM2 backend {name!r} is not available (have {', '.join(SM2_BACKENDS)})") from None
