"""Alembic is the only schema source: upgrade/downgrade both ways, and the models match it."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from server import migrate
from server.db import make_engine
from server.models import Base
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_upgrade_downgrade_upgrade(fresh_url):
    migrate.upgrade(fresh_url)
    engine = make_engine(fresh_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    assert migrate.at_head(engine)
    migrate.downgrade(fresh_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(fresh_url)
    assert migrate.at_head(engine)
    engine.dispose()


def test_models_match_migrated_schema(fresh_url):
    migrate.upgrade(fresh_url)
    engine = make_engine(fresh_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_readyz_reports_unmigrated_database(tmp_path):
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        answer = client.get("/readyz")
    app.state.engine.dispose()
    assert answer.status_code == 503 and "sala db upgrade" in answer.json()["error"]["message"]
