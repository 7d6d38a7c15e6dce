"""The event loop the gateway daemon runs on: uvloop (libuv) when it is installed, asyncio's own
otherwise, or whichever the operator names (``gasiot edge run --event-loop``).

Measured side by side on the 100-box fleet (scripts/bench/ab_fleet.py, docs/performance.md):
uvloop cut the gateway's CPU per point by ~7 % at 1 s polling, for ~1.8 MiB more memory.  The
gateway uses nothing of the loop beyond the asyncio API (sockets, TLS, timers, signal handlers,
readers on serial ptys), so either loop runs it; ``asyncio`` is the way back if a platform's uvloop
misbehaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Choice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[Choice, ...] = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(RuntimeError):
    """The event loop asked for cannot be had here."""


def parse_choice(text: str) -> Choice:
    for choice in CHOICES:
        if text == choice:
            return choice
    raise EventLoopUnavailable(f"event loop {text!r}: choose one of {', '.join(CHOICES)}")


def loop_factory(choice: Choice) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(name of the loop, its factory; None for asyncio's default)."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError as err:
        if choice == "uvloop":
            raise EventLoopUnavailable(f"event loop 'uvloop': not installed here ({err})") from err
        return "asyncio", None
    return f"uvloop {getattr(uvloop, '__version__', '')}".rstrip(), uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: Choice = "auto") -> T:
    """``asyncio.run(main)`` on the chosen loop.  EventLoopUnavailable (``main`` not started) when
    the named loop cannot be had."""
    try:
        name, factory = loop_factory(choice)
    except EventLoopUnavailable:
        main.close()  # never awaited: say nothing about it
        raise
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
