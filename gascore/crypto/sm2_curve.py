"""Arithmetic on the SM2 recommended curve sm2p256v1 (GB/T 32918.5), in plain Python integers.

Only what signing and verification need: point validation and encoding, a fixed-base multiply for
k·G and a two-scalar multiply for s·G + t·Q.  Jacobian coordinates keep modular inversions out of
the inner loops (one inversion per result instead of one per group operation); a = -3 allows the
cheaper doubling formula.  The curve has cofactor 1, so every affine point that satisfies the
equation is in the prime-order group.

This is variable-time code.  It is the fallback when the C backend is unavailable and the
reference the C backend is checked against, not a hardened implementation.
"""

from __future__ import annotations

import functools

P = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF
A = P - 3
B = 0x28E9FA9E_9D9F5E34_4D5A9E4B_CF6509A7_F39789F5_15AB8F92_DDBCBD41_4D940E93
N = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123
GX = 0x32C4AE2C_1F198119_5F990446_6A39C994_8FE30BBF_F2660BE1_715A4589_334C74C7
GY = 0xBC3736A2_F4F6779C_59BDCEE3_6B692153_D0A9877C_C62A4740_02DF32E5_2139F0A0

COORD_BYTES = 32
POINT_BYTES = 1 + 2 * COORD_BYTES

Affine = tuple[int, int]
# (X, Y, Z) stands for the affine point (X/Z², Y/Z³); Z == 0 is the point at infinity.
Jacobian = tuple[int, int, int]

_INFINITY: Jacobian = (1, 1, 0)
# Window widths: G's table is built once per process, so it can be wide; a public key's table is
# built per multiplication, where 5 balances table cost against additions for 256-bit scalars.
_BASE_WINDOW = 7
_POINT_WINDOW = 5
# Fixed-base comb for k·G: 2^_COMB_BITS - 1 precomputed points per window, no doublings at sign time.
_COMB_BITS = 6


def is_on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def encode_point(point: Affine) -> bytes:
    x, y = point
    return b"\x04" + x.to_bytes(COORD_BYTES, "big") + y.to_bytes(COORD_BYTES, "big")


def decode_point(data: bytes) -> Affine:
    """Parse an uncompressed point and check it is on the curve (so not infinity, cofactor 1).

    Compressed and hybrid encodings are refused on purpose: one key, one byte string, one key id.
    """
    if len(data) != POINT_BYTES or data[0] != 0x04:
        raise ValueError(f"SM2 public key must be {POINT_BYTES} bytes 0x04||X||Y, got {len(data)} bytes")
    x = int.from_bytes(data[1 : 1 + COORD_BYTES], "big")
    y = int.from_bytes(data[1 + COORD_BYTES :], "big")
    if not is_on_curve(x, y):
        raise ValueError("SM2 public key is not a point on sm2p256v1")
    return x, y


def _double(pt: Jacobian) -> Jacobian:
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    # dbl-2001-b (a = -3), from the Explicit-Formulas Database.
    delta = z1 * z1 % P
    gamma = y1 * y1 % P
    beta = x1 * gamma % P
    alpha = 3 * (x1 - delta) * (x1 + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y1 + z1) ** 2 - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add_affine(pt: Jacobian, x2: int, y2: int) -> Jacobian:
    """pt + (x2, y2) with the second point affine (Z = 1), which saves several multiplications."""
    x1, y1, z1 = pt
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % P
    h = (x2 * z1z1 - x1) % P
    r = (y2 * z1 * z1z1 - y1) % P
    if h == 0:
        # Same x: either the same point (the generic formula would divide by zero) or its negation.
        return _double(pt) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - y1 * hhh) % P
    return x3, y3, z1 * h % P


def _to_affine(pt: Jacobian) -> Affine | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _affine_add(p1: Affine | None, p2: Affine | None) -> Affine | None:
    """Textbook affine addition, used only while building tables."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        slope = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def _odd_multiples(point: Affine, window: int) -> list[Affine]:
    """[1·P, 3·P, 5·P, …, (2^(w-1) - 1)·P] in affine form, for wNAF digits."""
    twice = _affine_add(point, point)
    table = [point]
    for _ in range((1 << (window - 2)) - 1):
        nxt = _affine_add(table[-1], twice)
        if nxt is None:  # pragma: no cover - impossible for a point of prime order n > 2^w
            raise ValueError("point of small order")
        table.append(nxt)
    return table


def _wnaf(k: int, window: int) -> list[int]:
    """Width-w non-adjacent form, least significant digit first; digits are odd or zero."""
    digits: list[int] = []
    full = 1 << window
    half = full >> 1
    while k:
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    return digits


@functools.cache
def _base_odd_multiples() -> list[Affine]:
    return _odd_multiples((GX, GY), _BASE_WINDOW)


@functools.cache
def _base_comb() -> list[list[Affine]]:
    """comb[i][j - 1] = j · 2^(_COMB_BITS·i) · G for j in 1 .. 2^_COMB_BITS - 1."""
    comb: list[list[Affine]] = []
    base: Affine = (GX, GY)
    for _ in range(-(-N.bit_length() // _COMB_BITS)):
        row = [base]
        for _ in range((1 << _COMB_BITS) - 2):
            nxt = _affine_add(row[-1], base)
            assert nxt is not None  # j·base for j < 2^_COMB_BITS is never infinity: n is prime, huge
            row.append(nxt)
        comb.append(row)
        last = _affine_add(row[-1], base)
        assert last is not None
        base = last
    return comb


def base_mul(k: int) -> Affine | None:
    """k·G, the operation signing and key generation spend their time in."""
    k %= N
    acc = _INFINITY
    mask = (1 << _COMB_BITS) - 1
    for row in _base_comb():
        if not k:
            break
        j = k & mask
        if j:
            x, y = row[j - 1]
            acc = _add_affine(acc, x, y)
        k >>= _COMB_BITS
    return _to_affine(acc)


def mul_add_base(u: int, v: int, point: Affine) -> Affine | None:
    """u·G + v·Q with the doublings shared between the two scalars (Straus/Shamir)."""
    return _straus(
        [
            (u % N, _BASE_WINDOW, _base_odd_multiples()),
            (v % N, _POINT_WINDOW, _odd_multiples(point, _POINT_WINDOW)),
        ]
    )


def _straus(terms: list[tuple[int, int, list[Affine]]]) -> Affine | None:
    """Sum of k_i·Q_i, each k_i in wNAF of the window its odd-multiple table was built for."""
    expansions = [(_wnaf(k, window), table) for k, window, table in terms]
    length = max((len(d) for d, _ in expansions), default=0)
    acc = _INFINITY
    for i in range(length - 1, -1, -1):
        acc = _double(acc)
        for digits, table in expansions:
            if i < len(digits):
                d = digits[i]
                if d > 0:
                    x, y = table[d >> 1]
                    acc = _add_affine(acc, x, y)
                elif d < 0:
                    x, y = table[(-d) >> 1]
                    acc = _add_affine(acc, x, P - y)
    return _to_affine(acc)
