"""A real mosquitto broker on a free loopback port, started per test (an independent peer)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from peers._require import require_tool

from support.wait import eventually


def mosquitto_path() -> str:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and Path(candidate).exists():
            return candidate
    return require_tool("mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_path(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await eventually(self._accepting, timeout=10, what=f"mosquitto on port {self.port}")

    async def _accepting(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited with {self.proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass(frozen=True)
class BrokerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = True


@contextlib.asynccontextmanager
async def running_broker(tmp: Path, tls: BrokerTls | None = None) -> AsyncIterator[Broker]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    text = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        "max_queued_messages 10000\n"
    )
    if tls is not None:
        # `user root`: as root, mosquitto would otherwise switch to its own user and fail to read
        # the 0600 key the test created.
        text = (
            "user root\n"
            + text
            + (
                f"cafile {tls.ca_file}\ncertfile {tls.cert_file}\nkeyfile {tls.key_file}\n"
                f"require_certificate {'true' if tls.require_certificate else 'false'}\ntls_version tlsv1.2\n"
            )
        )
    conf.write_text(text, encoding="utf-8")
    broker = Broker(port, conf)
    await broker.start()
    try:
        yield broker
    finally:
        broker.stop()
