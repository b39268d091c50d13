"""audit filters: a VO's log by seq, by action and by actor, each from an index (the
portal's audit page filtered by a rare action or actor walked the whole log)

Revision ID: 0007
Revises: 0006
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


# Plain index operations, not batch mode: a batch on SQLite may copy the table, and the
# copy would lose the triggers that refuse UPDATE and DELETE on the log.
def upgrade():
    op.create_index('ix_audit_events_vo_seq', 'audit_events', ['vo_id', 'seq'])
    op.create_index('ix_audit_events_vo_action_seq', 'audit_events', ['vo_id', 'action', 'seq'])
    op.create_index('ix_audit_events_vo_actor_seq', 'audit_events', ['vo_id', 'actor', 'seq'])
    op.drop_index('ix_audit_events_vo_id', table_name='audit_events')


def downgrade():
    op.create_index('ix_audit_events_vo_id', 'audit_events', ['vo_id'])
    op.drop_index('ix_audit_events_vo_actor_seq', table_name='audit_events')
    op.drop_index('ix_audit_events_vo_action_seq', table_name='audit_events')
    op.drop_index('ix_audit_events_vo_seq', table_name='audit_events')
