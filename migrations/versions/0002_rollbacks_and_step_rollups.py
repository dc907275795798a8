"""rollbacks and step rollups

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rollbacks', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('step_scalars', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket', sa.Integer(), server_default='1', nullable=False))
        batch_op.create_index('ix_step_scalars_run_bucket_step', ['run_id', 'bucket', 'step'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('step_scalars', schema=None) as batch_op:
        batch_op.drop_index('ix_step_scalars_run_bucket_step')
        batch_op.drop_column('bucket')

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('rollbacks')
