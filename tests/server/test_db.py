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
