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
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.get("/readyz")
    app.state.engine.dispose()
    assert answer.status_code == 503 and "sala db upgrade" in answer.json()["error"]["message"]


def test_0003_moves_completion_to_a_column_and_counts_stored_stages_from_0(fresh_url):
    from sqlalchemy import MetaData, select

    from server.models import utcnow

    migrate.upgrade(fresh_url, "0002")
    engine = make_engine(fresh_url)
    meta = MetaData()
    meta.reflect(engine)
    runs, events = meta.tables["runs"], meta.tables["control_events"]
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(runs.insert().values(
            id=1, name="old", status="completed", recipe={}, tags=[], tag_text="", priority=0, max_restarts=3,
            attempt=1, restarts=0, stage_index=1, stage_held=False, epoch=9, step=18, base_lr=0.001,
            lr_override_scale=1.0, checkpoint_requested=False, recommendations=[], created_at=now, updated_at=now,
            latest_metrics={"val_cer": 0.1, "epoch": 9, "stage": 2, "curriculum_complete": True}))
        conn.execute(events.insert(), [
            {"id": 1, "run_id": 1, "kind": "stage_transition", "actor": "curriculum", "needs_worker": False,
             "created_at": now, "payload": {"from_stage": 1, "to_stage": 2, "reason": "threshold"}},
            {"id": 2, "run_id": 1, "kind": "lr_scale", "actor": "x", "needs_worker": True, "created_at": now,
             "payload": {"scale": 2}}])

    def stored() -> tuple[dict, bool | None, list[dict]]:
        """What the tables hold now, read with the columns of whatever revision they are at."""
        now_meta = MetaData()
        with engine.connect() as conn:
            now_meta.reflect(conn)
            run = conn.execute(select(now_meta.tables["runs"])).mappings().one()
            log = now_meta.tables["control_events"]
            payloads = [p for (p,) in conn.execute(select(log.c.payload).order_by(log.c.id))]
        return run["latest_metrics"], run.get("curriculum_complete"), payloads

    migrate.upgrade(fresh_url)
    latest, complete, payloads = stored()
    assert latest == {"val_cer": 0.1, "epoch": 9, "stage": 1} and complete is True
    assert payloads == [{"from_stage": 0, "to_stage": 1, "reason": "threshold"}, {"scale": 2}]
    migrate.downgrade(fresh_url, "0002")
    latest, complete, payloads = stored()
    assert latest == {"val_cer": 0.1, "epoch": 9, "stage": 2, "curriculum_complete": True} and complete is None
    assert payloads == [{"from_stage": 1, "to_stage": 2, "reason": "threshold"}, {"scale": 2}]
    engine.dispose()
