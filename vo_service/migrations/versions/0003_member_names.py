"""member names: memberships keep a copy of the user's name (names never change), so
that member lists page through an index of (vo, name) instead of sorting a whole VO

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

NAME = sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql')


def upgrade():
    # Plain ALTER TABLE statements: a batch rebuild of 'memberships' is refused by the
    # foreign keys of group_memberships and role_assignments once rows exist.
    op.add_column('memberships', sa.Column('username', NAME, server_default=sa.text("''"),
                                           nullable=False))
    op.execute("UPDATE memberships SET username = (SELECT users.username FROM users"
               " WHERE users.id = memberships.user_id)")
    op.drop_index('ix_memberships_vo_status', table_name='memberships')
    op.create_index('ix_memberships_vo_status_username', 'memberships',
                    ['vo_id', 'status', 'username'], unique=False)
    op.create_index('ix_memberships_vo_username', 'memberships', ['vo_id', 'username'],
                    unique=False)


def downgrade():
    op.drop_index('ix_memberships_vo_username', table_name='memberships')
    op.drop_index('ix_memberships_vo_status_username', table_name='memberships')
    op.create_index('ix_memberships_vo_status', 'memberships', ['vo_id', 'status'],
                    unique=False)
    op.drop_column('memberships', 'username')
