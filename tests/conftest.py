from __future__ import annotations

from collections.abc import Iterator

import pytest

from gascore.crypto import Signer, generate_signer
from support.postgres import Postgres, fresh_database, running_postgres


@pytest.fixture(params=["sm2-sm3", "ed25519"])
def signer(request: pytest.FixtureRequest) -> Signer:
    return generate_signer(request.param)


@pytest.fixture
def sm2_signer() -> Signer:
    return generate_signer("sm2-sm3")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One real PostgreSQL server for the whole run (started on first use)."""
    with running_postgres(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


@pytest.fixture
def pg_url(postgres_server: Postgres) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return fresh_database(postgres_server)
