"""Rate limits (token buckets, per process): logins per client address and per user name, batch
ingest per gateway.  What exceeds them gets 429 with Retry-After; nothing is queued."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    # kind → (burst, refill per second)
    limits: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "login.source": (20.0, 20 / 60),  # 20 attempts, then one every 3 s, per client address
            "login.user": (10.0, 10 / 60),
            "ingest.gateway": (200.0, 50.0),  # a backlog drains in bursts; 50 batches/s sustained
        }
    )
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def allow(self, kind: str, key: str) -> float:
        """0.0 if allowed (and counted); else seconds until the next attempt would be."""
        burst, rate = self.limits[kind]
        now = self.clock()
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            if len(self._buckets) >= self.max_keys:  # bounded memory under a spray of keys
                self._buckets.clear()
            bucket = self._buckets[(kind, key)] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate
