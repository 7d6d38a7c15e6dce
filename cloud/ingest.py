"""Batch ingest: verify a frame against the enrolled key, apply the seq and chain rules, store.

Decisions, in order (each refusal stores nothing):
malformed → 400; unknown or inactive gateway, key or algorithm mismatch, bad signature → 401;
seq already stored with the same digest → duplicate ack; stored with another digest → 409
conflict; seq beyond last+1 → 409 gap; prev_digest not the last digest → 409 chain; otherwise
store in one transaction and ack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cloud.repository import Repository, SeqConflict
from gascore.contract import ContractError, decode_rows, parse_frame, rows_to_records, verify_frame
from gascore.crypto import CryptoError, verifier_for

log = logging.getLogger(__name__)


class IngestRefused(Exception):
    def __init__(self, http_status: int, error: str, detail: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{error}: {detail}")
        self.http_status = http_status
        self.error = error
        self.detail = detail
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


@dataclass
class IngestStats:
    stored_batches: int = 0
    stored_records: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, error: str) -> None:
        self.refused[error] = self.refused.get(error, 0) + 1


class Ingestor:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stats = IngestStats()
        self._verifiers: dict[tuple[str, str], Any] = {}

    def ingest(self, data: bytes, now_ms: int) -> dict[str, Any]:
        try:
            return self._ingest(data, now_ms)
        except IngestRefused as err:
            self.stats.refuse(err.error)
            raise

    def _verifier(self, gateway_id: str, alg: str, public_key: bytes) -> Any:
        key = (gateway_id, public_key.hex())
        if key not in self._verifiers:
            self._verifiers[key] = verifier_for(alg, public_key)  # type: ignore[arg-type]
        return self._verifiers[key]

    def _ingest(self, data: bytes, now_ms: int) -> dict[str, Any]:
        try:
            frame = parse_frame(data)
        except ContractError as err:
            raise IngestRefused(400, "malformed", str(err)) from err
        h = frame.header
        gw = self.repo.gateway(h.gateway_id)
        if gw is None:
            raise IngestRefused(401, "unknown_gateway", f"gateway {h.gateway_id!r} is not enrolled")
        if gw.status != "active":
            raise IngestRefused(403, "gateway_not_active", f"gateway is {gw.status}")
        if h.key_id != gw.key_id or h.sig_alg != gw.alg:
            raise IngestRefused(401, "bad_signature", "key id or algorithm does not match the enrolled key")
        try:
            verify_frame(frame, self._verifier(gw.gateway_id, gw.alg, gw.public_key))
        except CryptoError as err:
            log.warning("bad signature from gateway %s (%s seq %d)", h.gateway_id, h.lane.value, h.seq)
            raise IngestRefused(401, "bad_signature", "signature does not verify") from err

        digest = h.digest()
        lane = self.repo.lane(h.gateway_id, h.lane)
        if h.seq <= lane.last_seq:
            stored = self.repo.batch_digest(h.gateway_id, h.lane, h.seq)
            if stored == digest:
                self.stats.duplicates += 1
                return self._ack(h.lane.value, h.seq, digest, "duplicate")
            raise self._rewind("conflict", f"seq {h.seq} already stored with another digest", h.lane.value, lane)
        if h.seq > lane.last_seq + 1:
            raise self._rewind("gap", f"seq {h.seq} leaves a gap", h.lane.value, lane)
        if h.prev_digest != lane.last_digest:
            raise self._rewind("chain", "prev_digest does not match the last stored batch", h.lane.value, lane)

        try:
            rows = decode_rows(frame.body, h.codec)
            records = rows_to_records(h.lane, rows)
        except ContractError as err:
            raise IngestRefused(400, "malformed", str(err)) from err
        if len(records) != h.count:
            raise IngestRefused(400, "malformed", f"body has {len(records)} rows, header says {h.count}")
        try:
            self.repo.store_batch(h, digest, records, now_ms)
        except SeqConflict as err:
            raise IngestRefused(409, "conflict", str(err), {"retry": True}) from err
        self.stats.stored_batches += 1
        self.stats.stored_records += len(records)
        return self._ack(h.lane.value, h.seq, digest, "stored")

    @staticmethod
    def _ack(lane: str, seq: int, digest: str, status: str) -> dict[str, Any]:
        return {"status": status, "lane": lane, "seq": seq, "digest": digest}

    @staticmethod
    def _rewind(error: str, detail: str, lane_name: str, lane: Any) -> IngestRefused:
        return IngestRefused(
            409,
            error,
            detail,
            {"lane": lane_name, "expected_seq": lane.last_seq + 1, "last_digest": lane.last_digest},
        )
