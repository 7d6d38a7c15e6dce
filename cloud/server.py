"""Running the cloud service: open storage, bootstrap the first admin key, serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from cloud.app import create_app
from cloud.appkeys import now_ms
from cloud.auth import API_KEY_PREFIX, new_secret, secret_hash
from cloud.ca import CertificateAuthority, load_ca
from cloud.key_wrap import PayloadKeyWrap
from cloud.repository import Repository, Role, open_repository
from cloud.sqldb import open_db
from gascore.crypto import Signer, generate_signer, load_key_file, write_key_file
from gascore.tls import reload_crl, server_context

log = logging.getLogger(__name__)


def ensure_admin_key(repo: Repository, key_file: Path) -> None:
    """Make ``key_file`` hold a working admin API key: reuse it if present, else create one.
    The key itself is never logged."""
    if key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
        if repo.api_key_role(secret_hash(key)) is None:
            repo.add_api_key(secret_hash(key), "admin", f"bootstrap:{key_file.name}", now_ms())
        return
    key = new_secret(API_KEY_PREFIX)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    repo.add_api_key(secret_hash(key), "admin", f"bootstrap:{key_file.name}", now_ms())
    log.info("admin API key written to %s", key_file)


def create_api_key(repo: Repository, role: Role, label: str) -> str:
    key = new_secret(API_KEY_PREFIX)
    repo.add_api_key(secret_hash(key), role, label, now_ms())
    return key


def bound_port(site: web.TCPSite) -> int:
    """The port a started site listens on (differs from the requested one when that was 0)."""
    server = cast("asyncio.Server | None", site._server)
    if server is None or not server.sockets:
        raise RuntimeError("site is not listening")
    return int(server.sockets[0].getsockname()[1])


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen must be HOST:PORT, not {listen!r}")
    return host, int(port)


def _crl_refresher(ca: CertificateAuthority, ctx: ssl.SSLContext) -> Callable[[web.Application], Any]:
    """Keep the CRL fresh and loaded: revocations made by the CLI in another process reach the
    TLS handshakes within a minute (and every gateway request at once, via the per-request check)."""

    async def refresher(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.to_thread(ca.crl_pem)
                reload_crl(ctx, ca.crl_path)
                await asyncio.sleep(60)  # the refresh period

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return refresher


def load_or_create_cloud_key(path: Path) -> Signer:
    """The key the cloud signs downlink commands with (SM2), created on first start (mode 0600)."""
    if path.exists():
        return load_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = generate_signer("sm2-sm3")
    write_key_file(signer, path)
    log.info("cloud signing key %s written to %s", signer.key_id, path)
    return signer


class ServeError(Exception):
    """The service cannot start as configured (the message says what to change)."""


async def serve(
    db_url: str,
    listen: str,
    *,
    admin_key_file: Path | None,
    cloud_key_file: Path | None = None,
    kek_file: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    ca_dir: Path | None = None,
    require_client_cert: bool = False,
    insecure_dev: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    host, port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise ServeError("--tls-cert and --tls-key go together")
    if tls_cert is None and not insecure_dev:
        raise ServeError("give --tls-cert and --tls-key (see `gasiot keys`), or --insecure-dev for plain HTTP")
    ca = load_ca(ca_dir) if ca_dir is not None else None
    ssl_context = None
    if tls_cert is not None and tls_key is not None:
        ssl_context = server_context(
            tls_cert,
            tls_key,
            client_ca=ca.cert_path if ca else None,
            crl_file=ca.crl_path if ca else None,
        )
    else:
        log.warning("PLAIN HTTP (--insecure-dev): batches are signed, but nothing is encrypted — never in production")
    if cloud_key_file is None and not db_url.startswith("sqlite:///"):
        # The default lives next to an SQLite file; a server database has no such place, and
        # every process serving it must sign and unwrap with the same keys.
        raise ServeError("with a PostgreSQL database give --cloud-key-file (the payload KEK defaults next to it)")
    repo = open_repository(db_url)
    if admin_key_file is not None:
        ensure_admin_key(repo, admin_key_file)
    key_file = cloud_key_file or Path(db_url.removeprefix("sqlite:///")).with_suffix(".cloud.key")
    key_wrap = PayloadKeyWrap.load_or_create(
        kek_file or key_file.with_name(key_file.name.replace(".cloud.key", "") + ".payload.kek")
    )
    key_wrap.rewrap_legacy(repo)
    app = create_app(
        repo,
        load_or_create_cloud_key(key_file),
        ca=ca,
        require_client_cert=require_client_cert,
        key_wrap=key_wrap,
        db=open_db(db_url),
    )
    if ca is not None and ssl_context is not None:
        app.cleanup_ctx.append(_crl_refresher(ca, ssl_context))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = bound_port(site)
    url = f"{'https' if ssl_context else 'http'}://{host}:{bound}"
    log.info("cloud listening on %s (db %s)", url, re.sub(r"://([^:/@]*):[^/]*@", r"://\1:***@", db_url.split("?")[0]))
    if on_ready:
        on_ready(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
