"""Per-device communication status (O-8.1.1, S-7.4c): online/offline with reason, last good
read, counters and latency percentiles.  Shared by the polled and the push paths."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gascore.records import Event, EventLevel

log = logging.getLogger(__name__)

LATENCY_WINDOW = 256  # recent request latencies kept for p50/p95


@dataclass
class DeviceStatus:
    device: str
    online: bool | None = None
    reason: str = ""
    since_ms: int | None = None
    last_good_ms: int | None = None
    polls: int = 0  # requests (polled) or deliveries (push)
    responses: int = 0
    failures: int = 0  # timeouts and transport errors
    device_errors: int = 0  # points the device answered with an error
    overruns: int = 0
    errors: int = 0  # unexpected faults in our own processing
    samples: int = 0  # values received (uplink messages)
    last_duration_s: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record_latency(self, seconds: float) -> None:
        self.last_duration_s = seconds
        self.latencies_ms.append(seconds * 1000.0)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def set_online(self, online: bool, ts_ms: int, reason: str) -> list[Event]:
        """Record a link state; returns the event to store when the state changed (else nothing)."""
        if self.online == online:
            return []
        was = self.online
        self.online, self.reason, self.since_ms = online, reason, ts_ms
        if online:
            if was is not None:
                log.info("device %s back online", self.device)
            return [Event(self.device, "device_online", ts_ms, EventLevel.INFO, {"reason": reason})]
        log.warning("device %s offline: %s", self.device, reason)
        return [Event(self.device, "device_offline", ts_ms, EventLevel.WARNING, {"reason": reason})]

    def snapshot(self) -> dict[str, Any]:
        p50, p95 = self.percentile(0.5), self.percentile(0.95)
        return {
            "online": self.online,
            "reason": self.reason,
            "since_ms": self.since_ms,
            "last_good_ms": self.last_good_ms,
            "polls": self.polls,
            "responses": self.responses,
            "failures": self.failures,
            "device_errors": self.device_errors,
            "overruns": self.overruns,
            "errors": self.errors,
            "samples": self.samples,
            "latency_p50_ms": None if p50 is None else round(p50, 2),
            "latency_p95_ms": None if p95 is None else round(p95, 2),
        }
