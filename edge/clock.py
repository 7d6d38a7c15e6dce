"""The time the gateway stamps readings and events with: the system clock, except that it never
runs backwards.

When the system clock steps back (an NTP correction, a technician setting the time, a dead RTC
battery after a power cut), stamping with it would repeat timestamps the gateway has already
used — and the cloud keeps one reading per (device, point, timestamp), so readings would be lost
as "duplicates".  Instead this clock *slews*: it keeps advancing at half speed until the system
clock catches up with it (a one-hour step back is absorbed in two hours), so timestamps stay
increasing and unique, and end up on the corrected time.  Steps forward are followed at once.
Each step back over a second is logged and counted.

Protocol timestamps (poll signatures, command expiry) use the system clock itself: the cloud
compares them with its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STEP_REPORTED_MS = 1_000


class SlewingClock:
    def __init__(
        self, wall_ns: Callable[[], int] = time.time_ns, mono_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self._wall_ns = wall_ns
        self._mono_ns = mono_ns
        self._last_ms = float(wall_ns() // 1_000_000)
        self._last_mono = mono_ns()
        self._behind = False  # the system clock is behind what we have handed out
        self.steps_back = 0
        self.largest_step_back_ms = 0
        self._lock = threading.Lock()  # the store and the pollers may ask from worker threads

    def now_ms(self) -> int:
        with self._lock:
            wall = self._wall_ns() // 1_000_000
            mono = self._mono_ns()
            elapsed_ms = (mono - self._last_mono) / 1_000_000
            self._last_mono = mono
            if wall >= self._last_ms:
                if self._behind and wall <= int(self._last_ms):
                    wall = int(self._last_ms) + 1  # where slewing meets the system clock: no repeat
                self._last_ms = float(wall)
                self._behind = False
            else:
                gap = self._last_ms - wall
                if not self._behind and gap > STEP_REPORTED_MS:
                    self.steps_back += 1
                    self.largest_step_back_ms = max(self.largest_step_back_ms, int(gap))
                    log.warning(
                        "the system clock stepped back by %.1f s: slewing (timestamps stay increasing; "
                        "they meet the corrected time in %.1f s)",
                        gap / 1000,
                        2 * gap / 1000,
                    )
                self._behind = True
                self._last_ms += elapsed_ms / 2
            return int(self._last_ms)


CLOCK = SlewingClock()
