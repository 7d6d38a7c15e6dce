"""Group commit: the poll cycles of many devices share one SQLite transaction.

With ``synchronous=FULL`` every commit waits for the disk (fsync), on the event loop.  One commit
per device per poll cycle made that wait the largest cost of a poll (0.36 of ~0.75 ms per cycle
at 100 boxes, docs/performance.md) and, at 100 ms polling, left the loop too little time to poll.
Here plain readings — no events, no alarm state — wait at most ``window_s`` in memory and are
committed together; anything else (an alarm, an event, an acknowledgement) commits at once and
takes the held readings with it, first, so order is kept.

What is held is not committed, so nothing downstream sees it: the sync client, the OPC-UA server
and the history read only what SQLite holds.  A crash loses at most one window of readings that
no one was ever told about — the same as a poll cycle in flight — never an acknowledged one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence

from edge.store import SqliteStore, StoreError
from gascore.records import Reading

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(
        self,
        store: SqliteStore,
        window_s: float,
        *,
        max_held: int = 20_000,
        on_failure: Callable[[BaseException], None] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.max_held = max_held
        self.on_failure = on_failure
        self.on_commit = on_commit  # after held readings were committed (wake the sync client)
        self._held: list[Reading] = []
        self._timer: asyncio.TimerHandle | None = None
        self.commits = 0  # transactions this committer issued (held readings flushed)
        self.cycles_held = 0  # cycles that waited for a shared commit

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, readings: Sequence[Reading]) -> bool:
        """Keep ``readings`` for the next commit.  False when grouping is off (window 0, or no
        running event loop): the caller commits them itself."""
        if self.window_s <= 0:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if not readings:  # a cycle whose values all stayed within their deadbands
            return True
        self._held.extend(readings)
        self.cycles_held += 1
        if len(self._held) >= self.max_held:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self._on_timer)
        return True

    def take(self) -> list[Reading]:
        """The held readings, for a commit the caller makes now (they go first in it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        return held

    def flush(self) -> None:
        """Commit what is held.  Failures go to ``on_failure`` (the store has already counted a
        cycle it could not keep at all); they are not raised into the event loop."""
        readings = self.take()
        if not readings:
            return
        try:
            self.store.append(readings)
        except (sqlite3.Error, StoreError) as err:
            if self.on_failure is None:
                raise
            self.on_failure(err)
            return
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit()

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception:  # a timer callback has no caller to tell
            log.exception("group commit failed")
