"""The daemon's event loop (edge/event_loop.py): uvloop when installed, asyncio's own when asked
or when uvloop is missing, and a clear error when the named loop cannot be had."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
import uvloop

from edge import event_loop


async def running_loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_auto_runs_on_uvloop_when_it_is_installed() -> None:
    assert event_loop.run(running_loop_type(), "auto") is uvloop.Loop
    assert event_loop.run(running_loop_type(), "uvloop") is uvloop.Loop


def test_asyncio_runs_on_asyncios_own_loop() -> None:
    loop_type = event_loop.run(running_loop_type(), "asyncio")
    assert loop_type is not uvloop.Loop and issubclass(loop_type, asyncio.BaseEventLoop)


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` meets where it is not installed
    assert event_loop.run(running_loop_type(), "auto") is not uvloop.Loop
    main = running_loop_type()
    with pytest.raises(event_loop.EventLoopUnavailable, match="'uvloop': not installed"):
        event_loop.run(main, "uvloop")
    assert main.cr_frame is None, "the coroutine is closed, not left to warn"


def test_an_unknown_choice_is_named() -> None:
    with pytest.raises(event_loop.EventLoopUnavailable, match=r"'libev': choose one of auto, uvloop, asyncio"):
        event_loop.parse_choice("libev")


def test_signal_handlers_and_threads_work_on_uvloop() -> None:
    """What the daemon asks of its loop beyond sockets: signal handlers (SIGTERM, SIGHUP) and
    results from worker threads (station reloads, integrity checks)."""
    import os
    import signal

    async def main() -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, got.set)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.wait_for(got.wait(), 5)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
        name = await asyncio.to_thread(lambda: threading.current_thread().name)
        return got.is_set(), name

    fired, thread = event_loop.run(main(), "uvloop")
    assert fired and thread != threading.main_thread().name
