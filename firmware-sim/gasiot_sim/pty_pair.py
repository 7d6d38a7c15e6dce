"""A linked pair of pseudo-terminals (a null-modem cable in software), made by socat.

Bytes written to one end come out of the other.  Serve a simulated bus on end ``a`` and point the
master (our driver, mbpoll) at end ``b``::

    async with PtyPair(tmp_dir) as pair:
        await bus.start(pair.a)
        ...  # open pair.b as the serial port

Readiness is read from socat's own report on stderr (``-d -d``), not guessed with a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections import deque
from pathlib import Path

_log = logging.getLogger(__name__)

_READY = b"starting data transfer loop"


class PtyError(RuntimeError):
    """socat is missing or did not set up the pair."""


class PtyPair:
    """Two linked ptys at ``directory/a_name`` and ``directory/b_name`` while started."""

    def __init__(self, directory: Path, *, a_name: str = "ttyA", b_name: str = "ttyB", timeout_s: float = 5.0) -> None:
        self.a = str(directory / a_name)
        self.b = str(directory / b_name)
        self.timeout_s = timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._log_tail: deque[str] = deque(maxlen=20)  # socat's last lines, for error messages

    async def start(self) -> PtyPair:
        if self._proc is not None:
            raise RuntimeError("pty pair already started")
        socat = shutil.which("socat")
        if socat is None:
            raise PtyError("socat is not installed")
        ends = [f"pty,raw,echo=0,link={path}" for path in (self.a, self.b)]
        proc = await asyncio.create_subprocess_exec(
            socat, "-d", "-d", *ends, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        self._proc = proc
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._until_ready(proc)
        except (TimeoutError, PtyError) as err:
            await self.stop()
            raise PtyError(f"socat did not link {self.a} and {self.b}: {' | '.join(self._log_tail)}") from err
        # socat keeps logging (e.g. at exit); keep its pipe drained so it never blocks on stderr.
        self._drain = asyncio.create_task(self._drain_stderr(proc), name=f"socat-stderr:{proc.pid}")
        _log.info("pty pair %s <-> %s (socat pid %s)", self.a, self.b, proc.pid)
        return self

    async def _until_ready(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise PtyError("socat exited")
            self._log_tail.append(line.decode(errors="replace").strip())
            if _READY in line:
                return

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self._log_tail.append(line.decode(errors="replace").strip())

    async def stop(self) -> None:
        """Terminate socat (it removes the links); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(self.timeout_s):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain  # ends at EOF once socat has exited
            self._drain = None
        self._remove_links()  # socat removes them itself unless it was killed

    def _remove_links(self) -> None:
        for link in (self.a, self.b):
            Path(link).unlink(missing_ok=True)

    async def __aenter__(self) -> PtyPair:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
