"""Start the real cloud app in-process on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cloud.app import INGESTOR, create_app
from cloud.ingest import Ingestor
from cloud.repository import SqliteRepository
from cloud.server import bound_port, create_api_key


@dataclass
class CloudHandle:
    url: str
    port: int
    repo: SqliteRepository
    app: web.Application
    admin_key: str
    runner: web.AppRunner
    _tokens: int = 0

    @property
    def ingestor(self) -> Ingestor:
        return self.app[INGESTOR]

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def token(self, role: str, scopes: str = "*", label: str | None = None) -> str:
        """An API token of any role (made by a root principal, as an admin would)."""
        from cloud.access import Principal
        from cloud.appkeys import IDENTITY

        root = Principal("user:root", "admin", frozenset({"*"}))
        self._tokens += 1
        token, _ = self.app[IDENTITY].create_token(label or f"t{self._tokens}-{role}", role, scopes, 30, owner=root)
        return token

    def rows(self, sql: str, *args: object) -> list[tuple]:
        return self.repo._db.execute(sql, args).fetchall()


async def start_cloud(db_path: Path, port: int = 0) -> CloudHandle:
    repo = SqliteRepository(db_path)
    admin_key = create_api_key(repo, "admin", "tests") if repo.count_api_keys() == 0 else ""
    app = create_app(repo, kdf_log2_n=10)  # cheap password hashing: tests create many users
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = bound_port(site)
    return CloudHandle(f"http://127.0.0.1:{bound}", bound, repo, app, admin_key, runner)


@contextlib.asynccontextmanager
async def running_cloud(db_path: Path, port: int = 0) -> AsyncIterator[CloudHandle]:
    handle = await start_cloud(db_path, port)
    try:
        yield handle
    finally:
        await handle.runner.cleanup()


@contextlib.contextmanager
def cloud_process(
    tmp: Path, db_url: str | None = None, *, name: str = "cloud", extra: Sequence[str] = ()
) -> Iterator[tuple[str, str, Path]]:
    """A real `gasiot cloud serve --insecure-dev` process on a free loopback port (its own
    SQLite file unless ``db_url``): yields (URL, admin API key, log file).  On exit it is
    stopped; the log must show no unhandled error ("incident")."""
    import subprocess
    import sys

    key_file, log_path = tmp / "admin.key", tmp / f"{name}.log"
    command = [
        sys.executable, "-m", "gasiot", "cloud", "serve", "--db", db_url or f"sqlite:///{tmp / f'{name}.db'}",
        "--listen", "127.0.0.1:0", "--admin-key-file", str(key_file), "--insecure-dev", *extra,
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until the server reports its address (or exits)
            assert line.startswith("gasiot cloud listening on "), (line, log_path.read_text())
            yield line.split()[-1], key_file.read_text().strip(), log_path
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            if proc.stdout:
                proc.stdout.close()
    assert "incident" not in log_path.read_text(), log_path.read_text()[-3000:]
