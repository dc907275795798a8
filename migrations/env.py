"""Alembic environment: the URL comes from the caller or from Sala's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import event

from server.db import make_engine
from server.models import Base
from server.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _drop_empty_revisions(context_, revision, directives) -> None:
    if config.cmd_opts and getattr(config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []


def _render_item(type_, obj, autogen_context):
    """Render our UTC wrapper as a plain DateTime so revisions never import the models."""
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    if engine.dialect.name == "sqlite":
        # A batch migration rebuilds a table (copy, drop, rename); with foreign keys enforced the
        # drop would cascade into every table that references it (runs → events, epochs, ...).
        event.listen(engine, "connect", _sqlite_foreign_keys_off)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _sqlite_foreign_keys_off(dbapi_conn, _record) -> None:
    dbapi_conn.execute("PRAGMA foreign_keys=OFF")


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        process_revision_directives=_drop_empty_revisions,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
