"""Fixtures for the transport-security tests: a utility CA with server and gateway certificate
files on disk, a second (foreign) CA, and ``handshake``, which runs one real TLS handshake on
127.0.0.1 and reports what each side saw (the refusing side's error included)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from security_pki import Handshake, Outcome, Pki

from cloud.ca import init_ca
from gascore.tls import peer_certificate


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, init_ca(tmp_path / "ca"))


@pytest.fixture
def foreign_pki(tmp_path: Path) -> Pki:
    (tmp_path / "foreign").mkdir()
    return Pki(tmp_path / "foreign", init_ca(tmp_path / "foreign" / "ca", name="some other utility CA"))


@pytest.fixture
async def handshake() -> AsyncIterator[Handshake]:
    """``await handshake(server_ctx, client_ctx, server_hostname="localhost")``: one TLS connection
    to a fresh asyncio server on 127.0.0.1 (port 0).  The server handshakes with
    ``StreamWriter.start_tls`` so its own error is caught and reported, not just logged."""
    servers: list[asyncio.Server] = []

    async def run(
        server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost"
    ) -> Outcome:
        outcome = Outcome()
        server_done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(5):
                    await writer.start_tls(server_ctx)
                obj = writer.get_extra_info("ssl_object")
                outcome.server_version = obj.version()
                outcome.server_cipher = obj.cipher()[0]
                outcome.client_cert = peer_certificate(obj)
                writer.write(b"hello\n")
                await writer.drain()
            except (OSError, TimeoutError) as err:
                outcome.server_error = err
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                server_done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
                )
                try:
                    # TLS 1.3: a client certificate is refused after the client's handshake ends,
                    # so the refusal shows here, on the first read.
                    outcome.client_read = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as err:
            outcome.client_error = err
        async with asyncio.timeout(5):
            await server_done.wait()
        return outcome

    yield run
    for server in servers:
        server.close()
        await server.wait_closed()
