"""Engines: a PostgreSQL URL without its driver (an extra) says how to get it."""

from __future__ import annotations

import importlib.util

import pytest

from server.db import make_engine


def test_postgres_without_psycopg_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(RuntimeError, match=r"pip install 'sala\[postgres\]'"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/sala")
    make_engine("sqlite:///:memory:").dispose()  # SQLite needs no driver


def test_the_event_stream_cursor_sends_an_event_that_committed_after_a_later_one(tmp_path):
    """Ids are drawn at insert and seen at commit: id 6 may become visible after 7 was streamed.
    The cursor asks for the missing id again until it comes (late, but sent)."""
    from server import events, migrate
    from server.db import make_sessionmaker
    from server.models import ControlEvent

    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        db.add_all([ControlEvent(id=i, run_id=None, kind="k", actor="a", payload={}) for i in (5, 7)])
        db.commit()
        cursor = events.Cursor(4)
        assert [e.id for e in cursor.poll(db)] == [5, 7] and set(cursor.gaps) == {6}
        assert cursor.poll(db) == []
        db.add(ControlEvent(id=6, run_id=None, kind="k", actor="a", payload={}))
        db.commit()
        assert [e.id for e in cursor.poll(db)] == [6] and not cursor.gaps
        assert cursor.poll(db) == [] and cursor.after == 7
    engine.dispose()
