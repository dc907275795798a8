"""Run Alembic from code: `sala db upgrade`, server start-up and tests all come through here."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def _migrations_dir() -> Path:
    """A checkout keeps the revisions in the top-level migrations/ directory; the wheel maps that
    directory into this package (pyproject.toml), so an installed server migrates too."""
    installed = Path(__file__).resolve().parent / "migrations"
    return installed if (installed / "env.py").is_file() else Path(__file__).resolve().parents[1] / "migrations"


MIGRATIONS = _migrations_dir()


def alembic_config(url: str) -> Config:
    """Built in code, not from alembic.ini, so an installed wheel migrates as well as a checkout."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(str(engine.url))
