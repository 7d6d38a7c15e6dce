"""`openssl s_client`, a TLS client nobody on this project wrote, against a gascore.tls server
with mutual TLS: it sees TLS 1.2+, an AEAD suite and the chain of the utility CA; TLS 1.1 and a
client without a certificate are refused by the server."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from peers._require import require_tool
from security_pki import Pki, error_text

from gascore.tls import server_context

pytestmark = pytest.mark.peer


@dataclass
class Listener:
    port: int
    server_errors: list[str] = field(default_factory=list)


@pytest.fixture
async def listener(pki: Pki) -> AsyncIterator[Listener]:
    server = pki.server()
    sctx = server_context(
        server.cert, server.key, client_ca=pki.ca.cert_path, require_client_cert=True, crl_file=pki.ca.crl_path
    )
    errors: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await writer.start_tls(sctx)
                writer.write(b"hello from gasiot\n")
                await writer.drain()
        except (OSError, TimeoutError) as err:
            errors.append(error_text(err))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield Listener(srv.sockets[0].getsockname()[1], errors)
    srv.close()
    await srv.wait_closed()


async def s_client(pki: Pki, port: int, *args: str, client_cert: bool = True) -> tuple[int, str, str]:
    openssl = require_tool("openssl")
    argv = [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca.cert_path),
        "-servername", "localhost", "-verify_hostname", "localhost", "-verify_return_error",
        "-ign_eof",  # wait for the server to close (it does after its line), not for stdin's EOF
    ]  # fmt: skip
    if client_cert:
        client = pki.client()
        argv += ["-cert", str(client.cert), "-key", str(client.key)]
    proc = await asyncio.create_subprocess_exec(
        *argv, *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_s_client_sees_tls13_and_the_verified_chain(pki: Pki, listener: Listener) -> None:
    rc, out, err = await s_client(pki, listener.port, "-brief")
    assert rc == 0, err
    assert "Protocol version: TLSv1.3" in err
    assert "Verification: OK" in err
    assert "Verified peername: localhost" in err
    assert "Peer certificate: CN = localhost" in err
    assert "hello from gasiot" in out  # the server accepted s_client's gateway certificate
    assert listener.server_errors == []


async def test_s_client_shows_the_chain_up_to_the_utility_ca(pki: Pki, listener: Listener) -> None:
    rc, out, err = await s_client(pki, listener.port)
    assert rc == 0, err
    chain = out.split("Certificate chain", 1)[1].split("---", 1)[0]
    assert re.search(r"^ 0 s:CN = localhost\n\s+i:CN = gasiot utility CA$", chain, re.MULTILINE), chain
    assert re.search(r"^ 1 s:CN = gasiot utility CA\n\s+i:CN = gasiot utility CA$", chain, re.MULTILINE), chain
    assert "Verify return code: 0 (ok)" in out


async def test_s_client_tls12_gets_ecdhe_with_an_aead_cipher(pki: Pki, listener: Listener) -> None:
    rc, _, err = await s_client(pki, listener.port, "-brief", "-tls1_2")
    assert rc == 0, err
    assert "Protocol version: TLSv1.2" in err
    suite = re.search(r"Ciphersuite: (\S+)", err)
    assert suite is not None
    assert re.fullmatch(r"ECDHE-ECDSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)", suite[1]), suite[1]


async def test_s_client_tls11_is_refused_by_the_server(pki: Pki, listener: Listener) -> None:
    rc, _, _ = await s_client(pki, listener.port, "-brief", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert len(listener.server_errors) == 1
    assert "UNSUPPORTED_PROTOCOL" in listener.server_errors[0]


async def test_s_client_without_a_certificate_is_refused_by_the_server(pki: Pki, listener: Listener) -> None:
    rc, out, _ = await s_client(pki, listener.port, "-brief", client_cert=False)
    assert "hello from gasiot" not in out
    assert len(listener.server_errors) == 1
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in listener.server_errors[0]
    del rc  # s_client's exit code for a post-handshake alert varies across OpenSSL versions
