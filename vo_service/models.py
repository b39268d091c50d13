"""Every table, imported in one place so that Alembic sees the whole metadata."""

from .apikeys.models import ApiKey
from .audit.models import AuditEvent, AuditHead
from .memberships.models import GroupMembership, Membership, RoleAssignment
from .nodes.models import Node, NodeVO
from .sync.models import AccountChange, Counter
from .users.models import UnixName, User
from .vos.models import VO, Group, GroupManager, Role, VOAdmin

__all__ = [
    "VO", "AccountChange", "ApiKey", "AuditEvent", "AuditHead", "Counter", "Group",
    "GroupManager", "GroupMembership", "Membership", "Node", "NodeVO", "Role",
    "RoleAssignment", "UnixName", "User", "VOAdmin",
]
