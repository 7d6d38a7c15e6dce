"""Batch ingest: verify a frame against the enrolled key, apply the seq and chain rules, store.

Decisions, in order (each refusal stores nothing):
malformed frame → 400; unknown gateway, key or algorithm mismatch, bad signature → 401, all with
the same public answer so an unauthenticated caller cannot tell which gateway ids exist (the log
and ``IngestStats`` keep the precise reason); inactive gateway → 403; seq already stored with the
same digest → duplicate ack; stored with another digest → 409 conflict; seq beyond last+1 → 409
gap; prev_digest not the last digest → 409 chain; malformed body → 400, oversized body → 413;
otherwise store in one transaction and ack.  Records the cloud already holds are skipped and
counted (``ignored``), so storage is exactly-once even when an edge restored from a backup
re-sends them under new seqs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.key_wrap import KeyWrapError, PayloadKeyWrap
from cloud.repository import GatewayRecord, LaneRecord, Repository, SeqConflict
from gascore.contract import (
    Ack,
    BatchHeader,
    ContractError,
    Frame,
    Rewind,
    RewindReason,
    TooLarge,
    decode_rows,
    parse_frame,
    payload_aad,
    rows_to_records,
    verify_frame,
)
from gascore.crypto import CryptoError, verifier_for
from gascore.records import Event, Lane, Reading

log = logging.getLogger(__name__)

CLOCK_WINDOW = 10  # batches
CLOCK_TOLERANCE_MS = 120_000

UNAUTHENTICATED = "unauthenticated"
UNAUTHENTICATED_DETAIL = "signature or gateway not recognised"


class IngestRefused(Exception):
    """A batch was refused; nothing was stored.  ``reason`` is the precise cause for the log and
    the statistics, which may be more than the caller is told (``error``/``detail``)."""

    def __init__(
        self,
        http_status: int,
        error: str,
        detail: str,
        extra: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"{error}: {detail}")
        self.http_status = http_status
        self.error = error
        self.detail = detail
        self.extra = extra or {}
        self.reason = reason or error

    @classmethod
    def rewind(cls, rewind: Rewind) -> IngestRefused:
        body = rewind.to_json()
        return cls(409, body.pop("error"), body.pop("detail"), body)

    @classmethod
    def unauthenticated(cls, reason: str) -> IngestRefused:
        return cls(401, UNAUTHENTICATED, UNAUTHENTICATED_DETAIL, reason=reason)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


@dataclass
class IngestStats:
    stored_batches: int = 0
    stored_records: int = 0
    ignored_records: int = 0  # already held from an earlier batch, skipped
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by precise reason

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "stored_batches": self.stored_batches,
            "stored_records": self.stored_records,
            "ignored_records": self.ignored_records,
            "duplicates": self.duplicates,
            "refused": dict(self.refused),
        }


class Ingestor:
    def __init__(self, repo: Repository, key_wrap: PayloadKeyWrap | None = None) -> None:
        self.repo = repo
        self.key_wrap = key_wrap or PayloadKeyWrap.ephemeral()
        # Called with each stored events batch (gateway id, events): registry, notifications.
        self.observers: list[Callable[[str, Sequence[Event]], None]] = []
        # Called with each stored telemetry batch (gateway id, readings): push export.
        self.reading_observers: list[Callable[[str, Sequence[Reading]], None]] = []
        self.stats = IngestStats()
        self._verifiers: dict[tuple[str, str], Any] = {}
        # cloud time − batch creation time of the last batches, per gateway: the smallest is
        # transfer time plus the clock difference (a resent old batch only makes it larger).
        self._offsets: dict[str, deque[int]] = {}

    def clock_offset(self, gateway_id: str) -> dict[str, Any] | None:
        """How far the gateway's clock seems from the cloud's (None before any batch)."""
        recent = self._offsets.get(gateway_id)
        if not recent:
            return None
        offset = min(recent)
        warning = None
        if offset < -CLOCK_TOLERANCE_MS:
            warning = f"the gateway's clock is {-offset / 1000:.0f} s ahead of the cloud's"
        elif offset > CLOCK_TOLERANCE_MS and len(recent) == recent.maxlen:
            late = offset / 1000
            warning = f"the gateway's clock is {late:.0f} s behind the cloud's (or every recent batch was late)"
        return {"offset_ms": -offset, "warning": warning}

    def ingest(self, data: bytes, now_ms: int, *, tls_gateway: str | None = None) -> Ack:
        """``tls_gateway``: the gateway id of the client certificate on this connection (mutual TLS);
        a batch for another gateway is refused."""
        try:
            return self._ingest(data, now_ms, tls_gateway)
        except IngestRefused as err:
            self.stats.refuse(err.reason)
            raise

    def _verifier(self, gateway_id: str, alg: str, public_key: bytes) -> Any:
        key = (gateway_id, public_key.hex())
        if key not in self._verifiers:
            self._verifiers[key] = verifier_for(alg, public_key)  # type: ignore[arg-type]
        return self._verifiers[key]

    def _ingest(self, data: bytes, now_ms: int, tls_gateway: str | None = None) -> Ack:
        try:
            frame = parse_frame(data)
        except TooLarge as err:
            raise IngestRefused(413, "too_large", str(err)) from err
        except ContractError as err:
            raise IngestRefused(400, "malformed", str(err)) from err
        h = frame.header
        if tls_gateway is not None and tls_gateway != h.gateway_id:
            raise IngestRefused(
                403, "forbidden", "the client certificate belongs to another gateway", reason="certificate_mismatch"
            )
        self._authenticate(frame)

        digest = h.digest()
        lane = self.repo.lane(h.gateway_id, h.lane)
        if h.seq <= lane.last_seq:
            if self.repo.batch_digest(h.gateway_id, h.lane, h.seq) == digest:
                self.stats.duplicates += 1
                return Ack(h.lane, h.seq, digest, "duplicate")
            raise self._rewind("conflict", f"seq {h.seq} already stored with another digest", h, lane)
        if h.seq > lane.last_seq + 1:
            raise self._rewind("gap", f"seq {h.seq} leaves a gap", h, lane)
        if h.prev_digest != lane.last_digest:
            raise self._rewind("chain", "prev_digest does not match the last stored batch", h, lane)

        records = self._records(frame)
        try:
            ignored = self.repo.store_batch(h, digest, records, now_ms)
        except SeqConflict as err:
            raise IngestRefused(409, "conflict", str(err), {"retry": True}) from err
        self.stats.stored_batches += 1
        self.stats.stored_records += len(records) - ignored
        self._offsets.setdefault(h.gateway_id, deque(maxlen=CLOCK_WINDOW)).append(now_ms - h.created_ms)
        if h.lane is Lane.TELEMETRY and self.reading_observers:
            readings = [r for r in records if isinstance(r, Reading)]
            for reading_observer in self.reading_observers:
                try:
                    reading_observer(h.gateway_id, readings)
                except Exception:  # the batch is stored and acked whatever an observer does
                    log.exception("readings observer %r failed", reading_observer)
        if h.lane is Lane.EVENTS and self.observers:
            stored = [r for r in records if isinstance(r, Event)]
            for observer in self.observers:
                try:
                    observer(h.gateway_id, stored)
                except Exception:  # the batch is stored and acked whatever an observer does
                    log.exception("events observer %r failed", observer)
        self.stats.ignored_records += ignored
        if ignored:
            # Expected after an edge database was restored from a backup; otherwise a sign the
            # edge re-sends what it should have deleted.
            log.warning(
                "gateway %s %s seq %d: %d of %d records were already stored, skipped",
                h.gateway_id,
                h.lane.value,
                h.seq,
                ignored,
                len(records),
            )
        return Ack(h.lane, h.seq, digest, "stored", ignored)

    def _authenticate(self, frame: Frame) -> None:
        """Refuse a frame whose signature is not the enrolled key's.  The caller hears the same
        answer whatever went wrong; the precise reason goes to the log and the statistics."""
        h = frame.header
        gw = self.repo.gateway(h.gateway_id)
        if gw is None:
            log.warning("batch refused: gateway %r is not enrolled", h.gateway_id)
            raise IngestRefused.unauthenticated("unknown_gateway")
        if h.key_id != gw.key_id or h.sig_alg != gw.alg:
            log.warning(
                "batch refused: gateway %s signed with key %r/%r, enrolled is %s/%s",
                h.gateway_id,
                h.key_id,
                h.sig_alg,
                gw.key_id,
                gw.alg,
            )
            raise IngestRefused.unauthenticated("bad_signature")
        try:
            verify_frame(frame, self._verifier(gw.gateway_id, gw.alg, gw.public_key))
        except CryptoError as err:
            log.warning("batch refused: bad signature from gateway %s (%s seq %d)", h.gateway_id, h.lane.value, h.seq)
            raise IngestRefused.unauthenticated("bad_signature") from err
        # Only after the signature: telling an unauthenticated caller that a gateway is
        # suspended would tell it that the gateway exists.
        if gw.status != "active":
            raise IngestRefused(403, "gateway_not_active", f"gateway is {gw.status}")

    def _payload_key(self, gw: GatewayRecord | None) -> bytes | None:
        if gw is None or gw.payload_key is None:
            return None
        try:
            return self.key_wrap.unwrap(gw.gateway_id, gw.payload_key)
        except KeyWrapError as err:
            log.error("%s", err)  # noqa: TRY400 - an operator problem (wrong --kek-file), not a bug
            raise IngestRefused(
                500, "payload_key_unavailable", "the cloud cannot decrypt this gateway's batches"
            ) from None

    def _records(self, frame: Frame) -> list[Reading] | list[Event]:
        h = frame.header
        gw = self.repo.gateway(h.gateway_id)
        try:
            rows = decode_rows(
                frame.body,
                h.codec,
                h.lane,
                h.count,
                payload_key=self._payload_key(gw),
                aad=payload_aad(h.gateway_id, h.lane, h.seq),
            )
            return rows_to_records(h.lane, rows)
        except TooLarge as err:
            raise IngestRefused(413, "too_large", str(err)) from err
        except ContractError as err:
            raise IngestRefused(400, "malformed", str(err)) from err

    @staticmethod
    def _rewind(reason: RewindReason, detail: str, header: BatchHeader, lane: LaneRecord) -> IngestRefused:
        return IngestRefused.rewind(Rewind(header.lane, lane.last_seq + 1, lane.last_digest, reason, detail))
