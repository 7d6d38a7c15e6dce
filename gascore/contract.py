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
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import cbor2
import zstandard

from gascore.crypto import sm3_digest
from gascore.records import Event, Lane, Reading

PROTOCOL_VERSION = 1
MAGIC = b"GSB1"
GENESIS_DIGEST = "0" * 64
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
MAX_RECORDS_PER_BATCH = 50_000
Codec = Literal["cbor+zstd", "json+zstd", "json"]
CODECS: tuple[Codec, ...] = ("cbor+zstd", "json+zstd", "json")


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


def _hex64(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError(f"{name} must be 64 hex digits")
    int(value, 16)
    return value.lower()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- body codecs -------------------------------------------------------------------------


def encode_rows(rows: Sequence[list[Any]], codec: Codec) -> bytes:
    if codec == "json":
        return canonical_json(rows)
    raw = cbor2.dumps(list(rows)) if codec == "cbor+zstd" else canonical_json(rows)
    return zstandard.ZstdCompressor(level=3).compress(raw)


def decode_rows(body: bytes, codec: Codec) -> list[list[Any]]:
    try:
        if codec == "json":
            raw = body
        else:
            dctx = zstandard.ZstdDecompressor()
            raw = dctx.decompress(body, max_output_size=MAX_DECOMPRESSED_BYTES)
        rows = cbor2.loads(raw) if codec == "cbor+zstd" else json.loads(raw)
    except (zstandard.ZstdError, cbor2.CBORDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ContractError(f"body: cannot decode {codec}: {err}") from err
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ContractError("body: expected a list of rows")
    return rows


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
) -> Frame:
    body = encode_rows(rows, codec)
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
        raise ContractError(f"frame: {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
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

AckStatus = Literal["stored", "duplicate"]


@dataclass(frozen=True, slots=True)
class Ack:
    lane: Lane
    seq: int
    digest: str
    status: AckStatus


@dataclass(frozen=True, slots=True)
class Rewind:
    """The cloud expects ``expected_seq`` chained to ``last_digest`` on this lane."""

    lane: Lane
    expected_seq: int
    last_digest: str
    reason: Literal["gap", "conflict", "chain"]
