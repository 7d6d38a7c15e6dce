"""The edge → cloud sync contract: batch header, frame, body codecs, hash chain and signature.

A frame on the wire (HTTP body or MQTT payload)::

    b"GSB1" | u32 header_len | header (canonical JSON) | u16 sig_len | signature | body

* ``header`` = ``{v, gateway_id, lane, seq, prev_digest, created_ms, count, codec, key_id,
  sig_alg, body_digest}``, serialised canonically (sorted keys, no spaces, UTF-8).
* The signature covers the canonical header bytes; the header carries the body's SM3 digest, so
  the signature covers the body too.
* ``digest(batch) = SM3(canonical header)``; each header's ``prev_digest`` is the digest of the
  batch before it in the same lane (``GENESIS_DIGEST`` for seq 1), so a missing, reordered or
  altered batch breaks the chain.
* ``seq`` counts batches per (gateway, lane) from 1, gap-free.  The cloud accepts ``last+1``,
  acks an already-stored seq with the same digest again (idempotent), refuses a gap or a
  different batch under a stored seq with the expected seq and digest, so the edge can rewind.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import cbor2
import zstandard

from gascore import crypto
from gascore.crypto import CryptoError, sm3_digest
from gascore.records import MAX_EVENT_DATA_BYTES, MAX_EVENT_DATA_DEPTH, Event, Lane, Reading

PROTOCOL_VERSION = 1
MAGIC = b"GSB1"
GENESIS_DIGEST = "0" * 64
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
MAX_RECORDS_PER_BATCH = 50_000
Codec = Literal["cbor+zstd", "json+zstd", "json", "cbor+zstd+sm4gcm", "json+zstd+sm4gcm"]
CODECS: tuple[Codec, ...] = ("cbor+zstd", "json+zstd", "json", "cbor+zstd+sm4gcm", "json+zstd+sm4gcm")
ENCRYPTED = "+sm4gcm"  # body = nonce(12) ‖ SM4-GCM(payload key, compressed rows, aad = gateway/lane/seq)


class ContractError(ValueError):
    """A frame or body does not follow the contract.  The message says which part."""


class _Signer(Protocol):
    @property
    def alg(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class _Verifier(Protocol):
    def verify(self, message: bytes, signature: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchHeader:
    v: int
    gateway_id: str
    lane: Lane
    seq: int
    prev_digest: str
    created_ms: int
    count: int
    codec: Codec
    key_id: str
    sig_alg: str
    body_digest: str

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    def digest(self) -> str:
        return sm3_digest(self.canonical()).hex()

    @classmethod
    def from_dict(cls, raw: Any) -> BatchHeader:
        if not isinstance(raw, dict):
            raise ContractError("header: not a JSON object")
        fields = set(cls.__dataclass_fields__)
        if set(raw) != fields:
            missing, extra = fields - set(raw), set(raw) - fields
            raise ContractError(f"header: missing {sorted(missing)} / unexpected {sorted(extra)}")
        try:
            header = cls(
                v=_int(raw["v"], "v"),
                gateway_id=_str(raw["gateway_id"], "gateway_id", 128),
                lane=Lane(raw["lane"]),
                seq=_int(raw["seq"], "seq"),
                prev_digest=_hex64(raw["prev_digest"], "prev_digest"),
                created_ms=_int(raw["created_ms"], "created_ms"),
                count=_int(raw["count"], "count"),
                codec=raw["codec"],
                key_id=_str(raw["key_id"], "key_id", 64),
                sig_alg=_str(raw["sig_alg"], "sig_alg", 32),
                body_digest=_hex64(raw["body_digest"], "body_digest"),
            )
        except ValueError as err:
            raise ContractError(f"header: {err}") from err
        if header.v != PROTOCOL_VERSION:
            raise ContractError(f"header: unsupported protocol version {header.v}")
        if header.codec not in CODECS:
            raise ContractError(f"header: unknown codec {header.codec!r}")
        if header.seq < 1 or header.count < 0 or header.count > MAX_RECORDS_PER_BATCH:
            raise ContractError("header: seq must be >= 1 and count within limits")
        return header


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")  # noqa: TRY004 - reported as ContractError
    return value


def _str(value: Any, name: str, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise ValueError(f"{name} must be a string of 1..{max_len} characters")
    return value


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _hex64(value: Any, name: str) -> str:
    # A regex, not int(value, 16): that also takes "0x", "_" and surrounding spaces.
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits")
    return value


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- body codecs -------------------------------------------------------------------------
#
# Decoding runs only after the signature verified, but a gateway's key can leak, so a signed
# body is still untrusted input.  Three bounds keep it from costing more than its header admits:
# the decompressed size (per row of the header's ``count``), the number of items (every decoded
# item is a Python object: an empty CBOR array is 1 byte on the wire and ~60 in memory), and the
# nesting depth.  All are checked before a single row object is built.

# The largest legitimate row, encoded: a telemetry row of two 128-character names and a
# 1024-character string value, every character taking 4 bytes of UTF-8 (or 6 as a JSON escape);
# an event row of 16 KiB of JSON data, which CBOR may encode up to 3x larger (1.0 → 9 bytes).
# A legitimate batch must never exceed these, or its lane would stall on a permanent refusal.
ROW_BYTES: dict[Lane, int] = {Lane.TELEMETRY: 8 * 1024, Lane.EVENTS: 3 * MAX_EVENT_DATA_BYTES + 4 * 1024}
# Items per row: a telemetry row is the array and its 5 scalars; an event's data adds fewer items
# than its JSON has bytes (and the JSON estimate below counts at most one per byte).
ROW_ITEMS: dict[Lane, int] = {Lane.TELEMETRY: 6, Lane.EVENTS: 6 + MAX_EVENT_DATA_BYTES}
MAX_ITEMS_PER_BATCH = 2_000_000
MAX_NESTING = 2 + MAX_EVENT_DATA_DEPTH  # batch array → row → event data
_READ_CHUNK = 1024 * 1024
# The decoder allocates the window a frame asks for before producing a byte; the edge compresses
# at level 3 (a window of at most 2 MiB), so a frame asking for more is refused, not served.
MAX_ZSTD_WINDOW = 8 * 1024 * 1024


class TooLarge(ContractError):
    """A frame or its decoded body exceeds a size limit (HTTP 413 rather than 400)."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int
    max_items: int

    @classmethod
    def for_batch(cls, lane: Lane, count: int) -> BodyLimits:
        return cls(
            min(MAX_DECOMPRESSED_BYTES, 1024 + count * ROW_BYTES[lane]),
            min(MAX_ITEMS_PER_BATCH, 1024 + count * ROW_ITEMS[lane]),
        )


def payload_aad(gateway_id: str, lane: Lane, seq: int) -> bytes:
    """Binds an encrypted body to its place: it cannot be moved to another gateway, lane or seq."""
    return f"{gateway_id}/{lane.value}/{seq}".encode()


def seal_body(body: bytes, key: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(12)  # random 96-bit nonces: far below the collision bound per key
    return nonce + crypto.sm4_gcm_encrypt(key, nonce, body, aad)  # SM4 loads on first use


def open_body(body: bytes, key: bytes, aad: bytes) -> bytes:
    if len(body) < 12 + 16:
        raise ContractError("body: too short for an encrypted payload")
    try:
        return crypto.sm4_gcm_decrypt(key, body[:12], body[12:], aad)
    except CryptoError as err:
        raise ContractError("body: the encrypted payload does not authenticate") from err


def encode_rows(rows: Sequence[list[Any]], codec: Codec) -> bytes:
    codec = codec.removesuffix(ENCRYPTED)  # type: ignore[assignment]
    if codec == "json":
        return canonical_json(rows)
    raw = cbor2.dumps(list(rows)) if codec == "cbor+zstd" else canonical_json(rows)
    return zstandard.ZstdCompressor(level=3).compress(raw)


def decode_rows(
    body: bytes, codec: Codec, lane: Lane, count: int, *, payload_key: bytes | None = None, aad: bytes = b""
) -> list[list[Any]]:
    """Decode a body that must hold exactly ``count`` rows of ``lane``, within ``BodyLimits``.
    An encrypted codec needs the gateway's ``payload_key`` and the frame's ``aad``."""
    if codec.endswith(ENCRYPTED):
        if payload_key is None:
            raise ContractError("body: encrypted, but this gateway has no payload key")
        body = open_body(body, payload_key, aad)
        codec = codec.removesuffix(ENCRYPTED)  # type: ignore[assignment]
    limits = BodyLimits.for_batch(lane, count)
    raw = body if codec == "json" else _decompress(body, limits.max_bytes)
    if len(raw) > limits.max_bytes:
        raise TooLarge(f"body: {len(raw)} bytes exceeds {limits.max_bytes} for {count} rows")
    if codec == "cbor+zstd":
        _check_cbor(raw, count, limits.max_items)
    else:
        _check_json_items(raw, limits.max_items)
    try:
        rows = cbor2.loads(raw) if codec == "cbor+zstd" else json.loads(raw)
    except (ValueError, TypeError, RecursionError) as err:  # CBORDecodeError and JSONDecodeError are ValueErrors
        raise ContractError(f"body: cannot decode {codec}: {type(err).__name__}: {err}") from err
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ContractError("body: expected a list of rows")
    if len(rows) != count:
        raise ContractError(f"body: {len(rows)} rows, header says {count}")
    return rows


def _decompress(body: bytes, max_bytes: int) -> bytearray:
    # A streaming read that stops one byte past the cap: ``decompress(max_output_size=...)``
    # trusts the content size a frame declares, and a frame may declare anything.
    out = bytearray()
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
        with dctx.stream_reader(body, read_across_frames=True) as reader:
            while chunk := reader.read(min(_READ_CHUNK, max_bytes + 1 - len(out))):
                out += chunk
                if len(out) > max_bytes:
                    raise TooLarge(f"body: decompresses to more than {max_bytes} bytes")
    except zstandard.ZstdError as err:
        raise ContractError(f"body: cannot decompress: {err}") from err
    return out


def _check_cbor(raw: bytes | bytearray, count: int, max_items: int) -> None:
    """Walk the CBOR item heads without building any object: a definite-length array of exactly
    ``count`` rows, nesting at most ``MAX_NESTING``, at most ``max_items`` items, nothing after it.
    Tags are refused outright: the contract uses none, and they are how CBOR smuggles in bignums,
    shared (cyclic) references and other types a row cannot hold."""
    major, length, pos = _cbor_head(raw, 0)
    if major != 4:
        raise ContractError("body: CBOR top level must be an array")
    if length != count:
        raise ContractError(f"body: {length} rows, header says {count}")
    items = 1 + length
    if items > max_items:
        raise TooLarge(f"body: more than {max_items} items")
    pending = [length]  # items still to read in each open container, innermost last
    while pending:
        if not pending[-1]:
            pending.pop()
            continue
        pending[-1] -= 1
        major, arg, pos = _cbor_head(raw, pos)
        if major in (2, 3):
            pos += arg
        elif major in (4, 5):
            size = arg if major == 4 else 2 * arg
            items += size
            if items > max_items:
                raise TooLarge(f"body: more than {max_items} items")
            if len(pending) >= MAX_NESTING:
                raise ContractError(f"body: nested deeper than {MAX_NESTING} levels")
            pending.append(size)
        elif major == 6:
            raise ContractError("body: CBOR tags are not allowed")
        if pos > len(raw):
            raise ContractError("body: CBOR truncated")
    if pos != len(raw):
        raise ContractError("body: trailing bytes after the rows")


_CBOR_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}
_CBOR_SIMPLE_OK = {20, 21, 22, 25, 26, 27}  # false, true, null, half/single/double float


def _cbor_head(raw: bytes | bytearray, pos: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head).  Refuses indefinite lengths (no bound
    known up front) and simple values other than false/true/null and floats."""
    if pos >= len(raw):
        raise ContractError("body: CBOR truncated")
    major, info = raw[pos] >> 5, raw[pos] & 0x1F
    pos += 1
    if major == 7:
        if info not in _CBOR_SIMPLE_OK:
            raise ContractError(f"body: CBOR simple value {info} is not allowed")
        return major, 0, pos + _CBOR_ARG_BYTES.get(info, 0)
    if info < 24:
        return major, info, pos
    size = _CBOR_ARG_BYTES.get(info)
    if size is None:
        raise ContractError("body: indefinite-length or reserved CBOR item")
    return major, int.from_bytes(raw[pos : pos + size], "big"), pos + size


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: linear, no backtracking


def _check_json_items(raw: bytes | bytearray, max_items: int) -> None:
    """Bound the number of JSON values before parsing: with strings blanked out, every value but
    the first follows a ``[``, ``{``, ``,`` or ``:``."""
    bare = _JSON_STRING.sub(b'""', raw)
    items = 1 + sum(bare.count(c) for c in (b"[", b"{", b",", b":"))
    if items > max_items:
        raise TooLarge(f"body: more than {max_items} items")


def rows_to_records(lane: Lane, rows: list[list[Any]]) -> list[Reading] | list[Event]:
    try:
        if lane is Lane.TELEMETRY:
            return [Reading.from_wire(r) for r in rows]
        return [Event.from_wire(r) for r in rows]
    except (ValueError, TypeError) as err:
        raise ContractError(f"body: malformed {lane.value} row: {err}") from err


# ---- frames ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    header: BatchHeader
    header_bytes: bytes
    signature: bytes
    body: bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                MAGIC,
                struct.pack(">I", len(self.header_bytes)),
                self.header_bytes,
                struct.pack(">H", len(self.signature)),
                self.signature,
                self.body,
            )
        )


def build_frame(
    *,
    signer: _Signer,
    gateway_id: str,
    lane: Lane,
    seq: int,
    prev_digest: str,
    created_ms: int,
    rows: Sequence[list[Any]],
    codec: Codec,
    payload_key: bytes | None = None,
) -> Frame:
    """Encode, optionally encrypt (an ``+sm4gcm`` codec), and sign: the signature covers the
    header, which carries the digest of the body as sent (the ciphertext, when encrypted)."""
    body = encode_rows(rows, codec)
    if codec.endswith(ENCRYPTED):
        if payload_key is None:
            raise ContractError(f"codec {codec} needs a payload key")
        body = seal_body(body, payload_key, payload_aad(gateway_id, lane, seq))
    header = BatchHeader(
        v=PROTOCOL_VERSION,
        gateway_id=gateway_id,
        lane=lane,
        seq=seq,
        prev_digest=prev_digest,
        created_ms=created_ms,
        count=len(rows),
        codec=codec,
        key_id=signer.key_id,
        sig_alg=signer.alg,
        body_digest=sm3_digest(body).hex(),
    )
    header_bytes = header.canonical()
    return Frame(header, header_bytes, signer.sign(header_bytes), body)


def parse_frame(data: bytes) -> Frame:
    """Split and structurally validate a frame.  Does NOT verify the signature."""
    if len(data) > MAX_FRAME_BYTES:
        raise TooLarge(f"frame: {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    if data[:4] != MAGIC or len(data) < 10:
        raise ContractError("frame: bad magic or truncated")
    (hlen,) = struct.unpack_from(">I", data, 4)
    if hlen > 4096 or 8 + hlen + 2 > len(data):
        raise ContractError("frame: header length out of bounds")
    header_bytes = data[8 : 8 + hlen]
    (slen,) = struct.unpack_from(">H", data, 8 + hlen)
    sig_start = 8 + hlen + 2
    if slen > 512 or sig_start + slen > len(data):
        raise ContractError("frame: signature length out of bounds")
    signature = data[sig_start : sig_start + slen]
    body = data[sig_start + slen :]
    try:
        raw = json.loads(header_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ContractError("frame: header is not JSON") from err
    header = BatchHeader.from_dict(raw)
    if header.canonical() != header_bytes:
        raise ContractError("frame: header is not in canonical form")
    if sm3_digest(body).hex() != header.body_digest:
        raise ContractError("frame: body digest mismatch")
    return Frame(header, header_bytes, signature, body)


def verify_frame(frame: Frame, verifier: _Verifier) -> None:
    """Raises the verifier's BadSignature if the signature does not cover this header."""
    verifier.verify(frame.header_bytes, frame.signature)


# ---- ack / refusal bodies ----------------------------------------------------------------
#
# The cloud builds its replies from these and the edge parses them back, so the JSON field names
# are part of the contract: an ack is ``{status, lane, seq, digest, ignored}``, a rewind (409)
# ``{error, detail, lane, expected_seq, last_digest}``.

AckStatus = Literal["stored", "duplicate"]
RewindReason = Literal["gap", "conflict", "chain"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The batch is held by the cloud; the edge may delete it.  ``ignored`` counts records the
    cloud already held from an earlier batch (an edge restored from a backup re-sends them)."""

    lane: Lane
    seq: int
    digest: str
    status: AckStatus
    ignored: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "lane": self.lane.value,
            "seq": self.seq,
            "digest": self.digest,
            "ignored": self.ignored,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Ack:
        body = _reply_object(raw, "ack")
        status = body.get("status")
        if status not in ("stored", "duplicate"):
            raise ContractError(f"ack: unknown status {status!r}")
        try:
            return cls(
                lane=Lane(_str(body.get("lane"), "lane", 16)),
                seq=_int(body.get("seq"), "seq"),
                digest=_hex64(body.get("digest"), "digest"),
                status=status,
                ignored=_int(body.get("ignored", 0), "ignored"),  # absent from older clouds
            )
        except ValueError as err:
            raise ContractError(f"ack: {err}") from err


@dataclass(frozen=True, slots=True)
class Rewind:
    """The cloud expects ``expected_seq`` chained to ``last_digest`` on this lane."""

    lane: Lane
    expected_seq: int
    last_digest: str
    reason: RewindReason
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.reason,
            "detail": self.detail,
            "lane": self.lane.value,
            "expected_seq": self.expected_seq,
            "last_digest": self.last_digest,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Rewind:
        body = _reply_object(raw, "rewind")
        reason = body.get("error")
        if reason not in ("gap", "conflict", "chain"):
            raise ContractError(f"rewind: unknown reason {reason!r}")
        try:
            rewind = cls(
                lane=Lane(_str(body.get("lane"), "lane", 16)),
                expected_seq=_int(body.get("expected_seq"), "expected_seq"),
                last_digest=_hex64(body.get("last_digest"), "last_digest"),
                reason=reason,
                detail=str(body.get("detail", "")),
            )
        except ValueError as err:
            raise ContractError(f"rewind: {err}") from err
        if rewind.expected_seq < 1:
            raise ContractError("rewind: expected_seq must be >= 1")
        return rewind


def _reply_object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ContractError(f"{what}: not a JSON object")
    return raw
