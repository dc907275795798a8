"""ids of runs, checkpoints and events are never reused (SQLite AUTOINCREMENT)

Without AUTOINCREMENT SQLite hands out the highest rowid + 1, so deleting the newest run gave
its id to the next one (a fork recorded against the old id resumed from another run's
checkpoint), and deleting the newest events made new events reuse ids an open event stream had
already passed. PostgreSQL's sequences never reuse ids: there this revision changes nothing.

Revision ID: 0007
Revises: 0006
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ('runs', 'checkpoints', 'control_events')


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    """SQLite sets AUTOINCREMENT only when a table is created: copy each table into a new one."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always',
                                  table_kwargs={'sqlite_autoincrement': autoincrement}):
            pass
