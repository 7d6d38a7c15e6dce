"""How the gateway asks Python's cyclic garbage collector to treat its heap.

A gateway is a few hundred thousand objects that live as long as the process (modules, the
station and thing-model configuration, pollers, and with an OPC-UA server an address space of
millions) and a stream of short-lived ones (samples, readings, wire rows) that almost never form
cycles.  With CPython's defaults every tenth young collection re-scans the middle generation and
every hundredth the whole heap: measured on the 100-box fleet (`scripts/bench/ab_fleet.py`, both
gateways polling at the same time), moving the long-lived heap out of those passes cut the
gateway's CPU per point by 12 %, and fewer, larger young collections by another ~5 %; with an
OPC-UA address space a full pass stalled the event loop for most of a second
(`scripts/bench/opcua_fanout.py`).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

# Young collections every 20,000 net allocations of container objects instead of 700: most of the
# gateway's short-lived objects are gone by then and never scanned.  Cyclic garbage waits longer
# for a pass; at the gateway's allocation rates that is about a second.
THRESHOLDS = (20_000, 20, 20)


def tune_collector() -> None:
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """After the gateway is (re)built: collect what exists, the previous gateway's garbage
    included (it was frozen with it), then freeze the rest, so the collector's passes no longer
    scan it.  Once per start and per reload: the full collection costs up to a second with a
    large OPC-UA address space."""
    started = time.monotonic()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("heap settled in %.3f s: %d objects frozen", time.monotonic() - started, gc.get_freeze_count())
