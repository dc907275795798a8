"""a per-run version, bumped by every change to a run or its histories

Polls answer `304 Not Modified` when a caller's ETag names the run's current version, and the
server keeps encoded bodies per (run, version, query): both need a number that changes whenever
anything a run's read endpoints show changes, and that costs one indexed read to check.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: no table rebuild, so SQLite keeps the runs table's AUTOINCREMENT (0007).
    op.add_column('runs', sa.Column('version', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('runs', recreate='always', table_kwargs={'sqlite_autoincrement': True}) as batch:
            batch.drop_column('version')
    else:
        op.drop_column('runs', 'version')
