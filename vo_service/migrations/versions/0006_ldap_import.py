"""ldap import: the memberships and group memberships the LDAP import added, so that a
sync removes only what it brought in

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ldap_import_managed',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('vo_id', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_ldap_import_managed_group_id_groups')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ldap_import_managed_user_id_users')),
    sa.ForeignKeyConstraint(['vo_id'], ['vos.id'], name=op.f('fk_ldap_import_managed_vo_id_vos')),
    sa.PrimaryKeyConstraint('group_id', 'user_id', name=op.f('pk_ldap_import_managed'))
    )
    with op.batch_alter_table('ldap_import_managed', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ldap_import_managed_vo_id'), ['vo_id'], unique=False)


def downgrade():
    with op.batch_alter_table('ldap_import_managed', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ldap_import_managed_vo_id'))

    op.drop_table('ldap_import_managed')
