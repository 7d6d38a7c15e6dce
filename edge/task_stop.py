"""Stopping the gateway's tasks even when a library swallows a cancellation.

On Python 3.11, ``asyncio.wait_for`` returns the result instead of raising CancelledError when the
awaited future completes in the same loop iteration as the cancellation (fixed in 3.12); pymodbus
awaits every answer that way.  A poll task cancelled at the moment its answer arrived then carries
on polling as if nothing had happened, and the task group waiting for it never finishes: a reload
or a shutdown hung (tests/e2e/test_config_push.py, about one run in four here).  So a task still
running after its cancellation is cancelled again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, again_after_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has finished, cancelling any that is still running
    ``again_after_s`` later once more (and so on)."""
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
        rounds += 1
        if pending and rounds == 1:
            log.debug("cancelled again: %s", ", ".join(sorted(t.get_name() for t in pending)))
