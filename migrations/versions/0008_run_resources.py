"""runs.nodes and runs.processes_per_node: a run's recipe.resources, so a claim picks only runs
the worker can launch

Existing runs predate distributed training and train in one process: 1 × 1.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nodes', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('processes_per_node', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    # SQLite drops columns by rebuilding the table: keep its AUTOINCREMENT (0007) through the rebuild.
    sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('runs', table_kwargs={'sqlite_autoincrement': True} if sqlite else {}) as batch_op:
        batch_op.drop_column('processes_per_node')
        batch_op.drop_column('nodes')
