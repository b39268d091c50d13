"""Who may do what. Every service operation names the rule it needs, here.

Roles: *service admin* (everything), *VO admin* (one VO's members, groups, roles and
group managers), *group manager* (adds and removes VO members in a group and the groups
below it), *member* (requests memberships, reads their own record), *node* (reads its
own account view), *system* (the ``xos-vo`` command run by the operator on the server).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from .errors import PermissionDenied
from .memberships.models import Membership
from .vos.models import VO, Group, GroupManager, VOAdmin


@dataclass(frozen=True)
class Actor:
    label: str  # as written into the audit log: "user:alice", "node:n1", "cli:root"
    user_id: uuid.UUID | None = None
    node_id: int | None = None
    is_service_admin: bool = False
    is_system: bool = False

    @classmethod
    def system(cls, who: str) -> Actor:
        return cls(label=f"cli:{who}", is_service_admin=True, is_system=True)


class Authorizer:
    def __init__(self, session: Session) -> None:
        self.session = session

    def require_service_admin(self, actor: Actor) -> None:
        if not actor.is_service_admin:
            raise PermissionDenied("only a service admin may do this")

    def require_user(self, actor: Actor) -> uuid.UUID:
        if actor.user_id is None and not actor.is_system:
            raise PermissionDenied("this operation needs a user's credential")
        return actor.user_id  # type: ignore[return-value]

    def is_vo_admin(self, actor: Actor, vo: VO) -> bool:
        if actor.is_service_admin:
            return True
        if actor.user_id is None:
            return False
        return bool(self.session.scalar(select(exists().where(
            VOAdmin.vo_id == vo.id, VOAdmin.user_id == actor.user_id))))

    def require_vo_admin(self, actor: Actor, vo: VO) -> None:
        if not self.is_vo_admin(actor, vo):
            raise PermissionDenied(f"only an admin of VO {vo.name!r} may do this")

    def managed_group_ids(self, actor: Actor, vo: VO) -> set[int]:
        if actor.user_id is None:
            return set()
        return set(self.session.scalars(
            select(GroupManager.group_id).join(Group, Group.id == GroupManager.group_id)
            .where(GroupManager.user_id == actor.user_id, Group.vo_id == vo.id)))

    def can_manage_group(self, actor: Actor, vo: VO, group: Group) -> bool:
        if self.is_vo_admin(actor, vo):
            return True
        managed = self.managed_group_ids(actor, vo)
        node: Group | None = group
        while node is not None:
            if node.id in managed:
                return True
            node = self.session.get(Group, node.parent_id) if node.parent_id else None
        return False

    def require_group_manager(self, actor: Actor, vo: VO, group: Group) -> None:
        if not self.can_manage_group(actor, vo, group):
            raise PermissionDenied(f"only an admin of VO {vo.name!r} or a manager of"
                                   f" {group.path} may do this")

    def require_vo_reader(self, actor: Actor, vo: VO) -> None:
        """VO admins and group managers may read the VO's member list."""
        if not (self.is_vo_admin(actor, vo) or self.managed_group_ids(actor, vo)):
            raise PermissionDenied(f"only admins and group managers of VO {vo.name!r} may"
                                   " read its members")

    def require_self_or_admin_of_user(self, actor: Actor, user_id: uuid.UUID) -> None:
        """The user, a service admin, or an admin of a VO the user belongs to or asked to."""
        if actor.is_service_admin or actor.user_id == user_id:
            return
        if actor.user_id is not None and self.session.scalar(select(exists().where(
                Membership.user_id == user_id, Membership.vo_id == VOAdmin.vo_id,
                VOAdmin.user_id == actor.user_id))):
            return
        raise PermissionDenied("you may only read your own record or your VO members'")
