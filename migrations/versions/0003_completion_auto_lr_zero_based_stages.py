"""curriculum completion and the automatic lr scale as run columns; stored stage numbers from 0

Completion was a key in runs.latest_metrics ("curriculum_complete"); it becomes a column. The
automatic lr scale (rollbacks, auto-applied advice) gets its own column, apart from a person's
scale. Stage numbers kept in JSON (runs.latest_metrics["stage"] and the stage keys of stage
events' payloads) were counted from 1; like every stage column they now count from 0, and only
the API adds 1. Old rows are converted both ways.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

STAGE_EVENT_KINDS = ('stage_set', 'stage_advance', 'stage_transition', 'auto_action')
STAGE_KEYS = ('stage', 'from_stage', 'to_stage')

runs = sa.table('runs', sa.column('id', sa.Integer), sa.column('latest_metrics', sa.JSON),
                sa.column('curriculum_complete', sa.Boolean))
events = sa.table('control_events', sa.column('id', sa.Integer), sa.column('kind', sa.String),
                  sa.column('payload', sa.JSON))


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('curriculum_complete', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('lr_auto_scale', sa.Float(), server_default='1.0', nullable=False))
    _convert(-1)


def downgrade() -> None:
    _convert(+1)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('lr_auto_scale')
        batch_op.drop_column('curriculum_complete')


def _convert(shift: int) -> None:
    """Shift stored stage numbers by `shift` and move completion between the key and the column."""
    bind = op.get_bind()
    for row in bind.execute(sa.select(runs.c.id, runs.c.latest_metrics, runs.c.curriculum_complete)).all():
        latest = dict(row.latest_metrics or {})
        complete = bool(latest.pop('curriculum_complete', False)) if shift < 0 else bool(row.curriculum_complete)
        if shift > 0 and complete:
            latest['curriculum_complete'] = True
        bind.execute(runs.update().where(runs.c.id == row.id)
                     .values(latest_metrics=_shifted(latest, shift), curriculum_complete=complete))
    query = sa.select(events.c.id, events.c.payload).where(events.c.kind.in_(STAGE_EVENT_KINDS))
    for row in bind.execute(query).all():
        bind.execute(events.update().where(events.c.id == row.id).values(payload=_shifted(row.payload or {}, shift)))


def _shifted(payload: dict, shift: int) -> dict:
    return {k: v + shift if k in STAGE_KEYS and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in payload.items()}
