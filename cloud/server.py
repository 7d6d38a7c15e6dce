"""Running the cloud service: open storage, bootstrap the first admin key, serve."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

from aiohttp import web

from cloud.app import create_app
from cloud.appkeys import now_ms
from cloud.auth import API_KEY_PREFIX, new_secret, secret_hash
from cloud.repository import Repository, Role, open_repository
from gascore.crypto import Signer, generate_signer, load_key_file, write_key_file

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


def load_or_create_cloud_key(path: Path) -> Signer:
    """The key the cloud signs downlink commands with (SM2), created on first start (mode 0600)."""
    if path.exists():
        return load_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = generate_signer("sm2-sm3")
    write_key_file(signer, path)
    log.info("cloud signing key %s written to %s", signer.key_id, path)
    return signer


async def serve(
    db_url: str,
    listen: str,
    *,
    admin_key_file: Path | None,
    cloud_key_file: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    host, port = parse_listen(listen)
    repo = open_repository(db_url)
    if admin_key_file is not None:
        ensure_admin_key(repo, admin_key_file)
    key_file = cloud_key_file or Path(db_url.removeprefix("sqlite:///")).with_suffix(".cloud.key")
    app = create_app(repo, load_or_create_cloud_key(key_file))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = bound_port(site)
    url = f"http://{host}:{bound}"
    log.info("cloud listening on %s (db %s)", url, db_url.split("?")[0])
    if on_ready:
        on_ready(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
