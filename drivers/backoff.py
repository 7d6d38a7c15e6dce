"""Capped exponential backoff with jitter: every reconnect loop (drivers) and the edge's sync
client use this one policy.  It lives with the drivers because the edge imports drivers, never
the other way round."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_s: float, maximum_s: float, *, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or maximum_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= maximum_s")
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self) -> float:
        """Delay before the next attempt: the capped exponential step, jittered to 50–100 %
        so that many gateways recovering together do not retry in lockstep."""
        step = min(self.maximum_s, self.initial_s * float(2 ** min(self.failures, 30)))
        self.failures += 1
        return step * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.failures = 0
