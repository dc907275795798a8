"""Shared fixtures: a migrated database per backend (SQLite file, throwaway PostgreSQL database),
emptied between tests, and the real application in front of it."""

from __future__ import annotations

import os

# One intra-op thread for the tests and every process they start: OpenMP threads spin while they
# wait, so two of them on a busy 2-core machine make a tiny training step many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

import torch  # noqa: E402

from server import migrate
from server.db import make_engine
from server.models import Base
from server.settings import Settings

PG_ADMIN_URL = os.environ.get("SALA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # report why, below
        return f"{type(exc).__name__}: {exc}"


def create_pg_database() -> str:
    """A fresh PostgreSQL database; the caller drops it with drop_pg_database."""
    why = _pg_available()
    if why:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable in CI: {why}")
        pytest.skip(f"PostgreSQL unreachable: {why}")
    name = f"sala_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sala.db'}"
        migrate.upgrade(url)
        yield url
        return
    url = create_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(url)


def empty_tables(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def settings(database_url, tmp_path) -> Iterator[Settings]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    yield Settings(database_url=database_url, artifacts_url=f"file://{artifacts}", host="127.0.0.1")
    empty_tables(database_url)


@pytest.fixture
def app(settings):
    from server.app import create_app

    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    # the address a loopback server answers to (a made-up name like TestClient's own is refused)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as test_client:
        yield test_client
