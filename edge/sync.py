"""The sync client: drains the store's lanes to the cloud as signed, sequenced batches.

Events go first.  A batch is deleted only after the cloud's ack; a refusal with an expected seq
rewinds the lane; every other failure keeps the batch and retries with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from drivers.backoff import Backoff
from edge.store import PendingBatch, Store, StoreError
from edge.tls_files import session as session_for
from gascore.contract import Ack, Codec, ContractError, Rewind, build_frame
from gascore.crypto import Signer
from gascore.records import Lane

log = logging.getLogger(__name__)

FRAME_CONTENT_TYPE = "application/vnd.gasiot.batch"


# Refusals of the batch's content (not of the gateway, the link or the order): see store.quarantine.
UNFIXABLE = frozenset({"malformed", "too_large"})


class SyncRefused(Exception):
    """The cloud refused a batch for a reason that retrying as-is will not fix soon."""


BatchResult = Literal["acked", "rejected", "failed"]
"""acked: stored by the cloud (or already held); rejected: the cloud answered with a refusal
(including a rewind); failed: no usable answer (connection, timeout)."""

BatchObserver = Callable[[Lane, BatchResult, float], None]
"""Called after every upload attempt with (lane, result, seconds the attempt took): metrics."""


@dataclass
class SyncStats:
    batches_sent: int = 0
    records_acked: int = 0
    duplicates: int = 0
    rewinds: int = 0
    quarantined: int = 0  # records set aside because the cloud refused their batch as malformed
    failures: int = 0
    last_error: str | None = None
    last_ack_ms: int | None = None


class SyncClient:
    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        gateway_id: str,
        cloud_url: str,
        codec: Codec,
        max_batch_records: int,
        max_batch_age_s: float,
        timeout_s: float,
        backoff: Backoff,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        ssl_context: ssl.SSLContext | None = None,
        payload_key: bytes | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.on_batch = on_batch
        self.ssl_context = ssl_context
        self.payload_key = payload_key
        self.store = store
        self.signer = signer
        self.gateway_id = gateway_id
        self.url = cloud_url.rstrip("/") + "/v1/batches"
        self.codec = codec
        self.max_batch_records = max_batch_records
        self.max_batch_age_ms = int(max_batch_age_s * 1000)
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.clock_ms = clock_ms
        self.stats = SyncStats()
        self.wakeup = asyncio.Event()
        self._failing = False

    @property
    def failing(self) -> bool:
        """The last upload attempt failed (``stats.last_error`` says why)."""
        return self._failing

    def notify(self) -> None:
        """Called after each append: there may be enough for a full batch."""
        self.wakeup.set()

    def _build(self, lane: Lane, seq: int, prev_digest: str, rows: list[list[Any]]) -> tuple[bytes, str]:
        frame = build_frame(
            signer=self.signer,
            gateway_id=self.gateway_id,
            lane=lane,
            seq=seq,
            prev_digest=prev_digest,
            created_ms=self.clock_ms(),
            rows=rows,
            codec=self.codec,
            payload_key=self.payload_key,
        )
        return frame.to_bytes(), frame.header.digest()

    def _ready(self, lane: Lane, *, flush: bool) -> bool:
        if self.store.pending(lane) is not None:
            return True
        count, oldest = self.store.unbatched(lane, self.max_batch_records)
        if count == 0:
            return False
        if flush or lane is Lane.EVENTS or count >= self.max_batch_records:
            return True
        return oldest is not None and self.clock_ms() - oldest >= self.max_batch_age_ms

    async def run(self) -> None:
        async with session_for(self.ssl_context) as session:
            while True:
                progressed = await self.sync_once(session)
                if progressed:
                    continue
                self.wakeup.clear()
                try:
                    async with asyncio.timeout(self.max_batch_age_ms / 1000 / 2):
                        await self.wakeup.wait()
                except TimeoutError:
                    pass

    async def sync_once(self, session: aiohttp.ClientSession, *, flush: bool = False) -> bool:
        """Send at most one batch (events lane first).  Returns True if a batch was acknowledged."""
        for lane in (Lane.EVENTS, Lane.TELEMETRY):
            started = time.monotonic()
            try:
                # The store may fail too (a full disk, a damaged file it replaces by a fresh one):
                # the lane then waits and starts again from whatever the store holds.
                if not self._ready(lane, flush=flush):
                    continue
                batch = self.store.form_batch(lane, self.max_batch_records, self._build)
                if batch is None:
                    continue
                started = time.monotonic()
                await self._send(session, batch)
            except (aiohttp.ClientError, TimeoutError, SyncRefused, StoreError, sqlite3.Error) as err:
                self._observe(lane, "rejected" if isinstance(err, SyncRefused) else "failed", started)
                self._on_failure(err)
                await asyncio.sleep(self.backoff.next_delay())
                return False
            self._observe(lane, "acked", started)
            if self._failing:
                log.info("sync recovered")
                self._failing = False
            self.backoff.reset()
            return True
        return False

    async def drain(self, session: aiohttp.ClientSession, *, max_batches: int = 1_000_000) -> None:
        """Send everything buffered now (used on shutdown and by tools)."""
        for _ in range(max_batches):
            if not await self.sync_once(session, flush=True):
                return

    def _observe(self, lane: Lane, result: BatchResult, started: float) -> None:
        if self.on_batch is not None:
            self.on_batch(lane, result, time.monotonic() - started)

    def _on_failure(self, err: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(err) or type(err).__name__
        if not self._failing:
            log.warning("sync failing, keeping batches and retrying: %s", self.stats.last_error)
            self._failing = True

    async def _send(self, session: aiohttp.ClientSession, batch: PendingBatch) -> None:
        self.stats.batches_sent += 1
        async with (
            asyncio.timeout(self.timeout_s),
            session.post(self.url, data=batch.frame, headers={"Content-Type": FRAME_CONTENT_TYPE}) as resp,
        ):
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = {}
            status = resp.status
        if status == 200:
            try:
                ack = Ack.from_json(body)
            except ContractError as err:
                raise SyncRefused(f"unreadable ack for {batch.lane.value}/{batch.seq}: {err}") from err
            if (ack.lane, ack.seq, ack.digest) != (batch.lane, batch.seq, batch.digest):
                raise SyncRefused(f"ack does not match batch {batch.lane.value}/{batch.seq}: {body}")
            acked_ms = self.clock_ms()
            self.store.ack(batch.lane, batch.seq, now_ms=acked_ms)
            self.stats.records_acked += batch.count
            self.stats.last_ack_ms = acked_ms
            if ack.status == "duplicate":
                self.stats.duplicates += 1
            if ack.ignored:
                log.warning("cloud already held %d records of %s batch %d", ack.ignored, ack.lane.value, ack.seq)
            return
        if status == 409:
            try:
                rewind = Rewind.from_json(body)
            except ContractError:
                rewind = None  # e.g. a concurrent-writer conflict: just retry
            if rewind is not None and rewind.lane is batch.lane:
                self.stats.rewinds += 1
                self.store.rewind(batch.lane, rewind.expected_seq, rewind.last_digest, rewind.reason, self.clock_ms())
                raise SyncRefused(f"cloud expects {batch.lane.value} seq {rewind.expected_seq}: rewound")
        detail = body.get("detail", "") if isinstance(body, dict) else ""
        error = body.get("error", "") if isinstance(body, dict) else ""
        if status in (400, 413) and error in UNFIXABLE:
            # Resending the same bytes can only be refused again: set the batch aside (kept,
            # reported) so the data behind it flows.
            self.store.quarantine(batch.lane, batch.seq, f"HTTP {status} {error}: {detail}", self.clock_ms())
            self.stats.quarantined += batch.count
        raise SyncRefused(f"HTTP {status}: {error} {detail}".strip())
