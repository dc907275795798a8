"""Engine and sessions. SQLite gets WAL, foreign keys and a busy timeout so that
the server and `sala up`'s workers can share one file without 'database is locked'."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Sync endpoints run on AnyIO's worker threads (THREADS, set in app.py). A request holds at most one
# connection at a time and at most IN_FLIGHT requests are admitted; the pool can grow past the thread
# count, so no request ever waits for a connection another waiting request holds.
THREADS = 32
# Few requests at once serve more: on 2 cores, 8 in flight gave 174 req/s with heartbeats at p50 58 ms,
# 40 in flight 140 req/s with heartbeats at p50 1.3 s (docs/RELIABILITY.md, Load).
IN_FLIGHT = 8  # requests admitted at once (server/limits.py); each holds one connection at most
POOL = {"pool_size": 10, "max_overflow": THREADS, "pool_timeout": 10}


# What a database that went away (restarted, unreachable, its pool exhausted) raises: requests
# answer 503 and retry-able callers (the reaper, the event stream) try again later.
DATABASE_AWAY = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def storage_full(exc: Exception) -> bool:
    """A write refused for want of space: SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or getattr(orig, "sqlstate", None) == "53100"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **({} if ":memory:" in url else POOL),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; issue BEGIN ourselves (SQLAlchemy docs recipe),
        # IMMEDIATE for writers so two writers queue on the busy timeout instead of deadlocking.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    _require_postgres_driver(url)
    return create_engine(url, pool_pre_ping=True, **POOL)


def _require_postgres_driver(url: str) -> None:
    """psycopg is an extra (SQLite needs no driver): say how to get it rather than fail on an import."""
    if url.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
        raise RuntimeError("PostgreSQL needs the psycopg driver: pip install 'sala[postgres]' "
                           "(make, the Docker image and CI install it)")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    options = conn.get_execution_options()
    if options.get("single_statement"):
        return  # one read statement is atomic on its own (server/reads.py); BEGIN would be a round of its own
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate", False) else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The engine for transactions that will write: takes SQLite's write lock up front."""
    return engine.execution_options(sqlite_immediate=True) if engine.dialect.name == "sqlite" else engine


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1] if "///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session and its transaction for work outside a request's (`deps.get_db` owns those):
    committed when the block ends, rolled back on an error. Each caller says why it needs one."""
    with factory() as session, session.begin():
        yield session
