"""VOs, their groups (a tree under the VO's root group), roles, admins and managers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, func, select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AlreadyExists, InvalidInput, InvalidTransition, NotFound
from ..memberships.models import GroupMembership, Membership
from ..names import (
    parse_group_path,
    unix_group_name,
    validate_component,
    validate_role,
    validate_vo_name,
)
from ..sync.revisions import Change
from ..timeutil import iso, utcnow
from ..users.models import UnixName, User
from .models import VO, Group, GroupManager, Role, VOAdmin

DESCRIPTION_MAX = 1000


def vo_record(vo: VO) -> dict[str, Any]:
    return {"id": vo.id, "name": vo.name, "description": vo.description,
            "cert_hours": vo.cert_hours, "created_at": iso(vo.created_at)}


def group_record(group: Group) -> dict[str, Any]:
    return {"path": group.path, "unix_name": group.unix_name, "gid": group.gid,
            "description": group.description, "deleted": group.deleted_at is not None}


def role_record(vo: VO, role: Role) -> dict[str, Any]:
    return {"name": role.name, "fqan": f"/{vo.name}/Role={role.name}",
            "description": role.description}


def _description(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str) or len(text) > DESCRIPTION_MAX:
        raise InvalidInput(f"description must be text of at most {DESCRIPTION_MAX} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InvalidInput("description may not contain control characters")
    return text


class VOService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    # -- VOs -----------------------------------------------------------------------
    def get(self, name: str) -> VO:
        vo = self.session.scalar(select(VO).where(VO.name == name)) if len(name) <= 32 else None
        if vo is None:
            raise NotFound(f"no VO {name[:64]!r}")
        return vo

    def page(self, after: str | None = None, limit: int | None = None
             ) -> tuple[list[VO], str | None]:
        size = self.ctx.page_size(limit)
        stmt = select(VO).order_by(VO.name).limit(size + 1)
        if after:
            stmt = stmt.where(VO.name > after)
        rows = list(self.session.scalars(stmt))
        return rows[:size], (rows[size - 1].name if len(rows) > size else None)

    def create(self, actor: Actor, name: str, description: str = "") -> VO:
        self.ctx.authz.require_service_admin(actor)
        name = validate_vo_name(name, self.ctx.reserved_names)
        if self.session.scalar(select(exists().where(VO.name == name))):
            raise AlreadyExists(f"VO {name!r} already exists")
        vo = VO(name=name, description=_description(description))
        self.session.add(vo)
        self.session.flush()
        root = self._new_group(vo, None, name, "")
        self.ctx.audit.append(actor.label, "vo.create", "vo", name, vo_id=vo.id,
                              after={**vo_record(vo), "group": group_record(root)})
        self.ctx.revisions.publish([Change(vo.id, "group", group_id=root.id)])
        return vo

    def update(self, actor: Actor, vo: VO, *, description: str | None = None,
               cert_hours: int | None = None, cert_hours_max: int = 168) -> VO:
        """A VO admin changes the description or the certificate lifetime policy (up to
        the service's ``CERT_USER_MAX_HOURS``)."""
        self.ctx.authz.require_vo_admin(actor, vo)
        if cert_hours is not None and not (isinstance(cert_hours, int)
                                           and 1 <= cert_hours <= cert_hours_max):
            raise InvalidInput(f"cert_hours must be 1 to {cert_hours_max}")
        before = vo_record(vo)
        if description is not None:
            vo.description = _description(description)
        if cert_hours is not None:
            vo.cert_hours = cert_hours
        self.session.flush()
        self.ctx.audit.append(actor.label, "vo.update", "vo", vo.name, vo_id=vo.id,
                              before=before, after=vo_record(vo))
        return vo

    def root_group(self, vo: VO) -> Group:
        return self.session.scalars(
            select(Group).where(Group.vo_id == vo.id, Group.parent_id.is_(None))).one()

    # -- groups --------------------------------------------------------------------
    def _new_group(self, vo: VO, parent: Group | None, name: str, description: str) -> Group:
        path = f"{parent.path}/{name}" if parent else f"/{name}"
        unix = unix_group_name(path)
        if self.session.scalar(select(exists().where(Group.path == path))):
            raise AlreadyExists(f"group {path} already exists (or existed: paths are never"
                                " reused)")
        taken = self.session.get(UnixName, unix)
        if taken is not None:
            raise AlreadyExists(f"the Unix name {unix!r} of {path} is already taken by a"
                                f" {taken.kind}")
        group = Group(vo_id=vo.id, parent_id=parent.id if parent else None, name=name,
                      path=path, unix_name=unix, gid=self.ctx.numbers.allocate_gid(),
                      description=description)
        self.session.add(group)
        self.session.flush()
        self.session.add(UnixName(name=unix, kind="group", group_id=group.id))
        return group

    def group(self, vo: VO, path: str, *, include_deleted: bool = False) -> Group:
        components = parse_group_path(path)
        if components[0] != vo.name:
            raise NotFound(f"group {path[:200]} is not in VO {vo.name!r}")
        group = self.session.scalar(select(Group).where(Group.path == path))
        if group is None or (group.deleted_at is not None and not include_deleted):
            raise NotFound(f"no group {path[:200]}")
        return group

    def groups(self, vo: VO) -> list[Group]:
        return list(self.session.scalars(
            select(Group).where(Group.vo_id == vo.id, Group.deleted_at.is_(None))
            .order_by(Group.path)))

    def active_member_counts(self, vo: VO) -> dict[int, int]:
        """Group id -> how many active members it has (the root: every active member).

        Two aggregate queries over the VO's rows, whatever the number of groups."""
        active = (Membership.vo_id == vo.id) & (Membership.status == "active")
        counts: dict[int, int] = {group_id: n for group_id, n in self.session.execute(
            select(GroupMembership.group_id, func.count())
            .join(Membership, Membership.id == GroupMembership.membership_id)
            .where(active).group_by(GroupMembership.group_id))}
        counts[self.root_group(vo).id] = self.session.scalar(
            select(func.count()).select_from(Membership).where(active)) or 0
        return counts

    def admins_of(self, vos: list[VO]) -> dict[int, list[User]]:
        """Each VO's admins by name, keyed by VO id, in one query (a page of VOs)."""
        found: dict[int, list[User]] = {vo.id: [] for vo in vos}
        for vo_id, user in self.session.execute(
                select(VOAdmin.vo_id, User).join(User, VOAdmin.user_id == User.id)
                .where(VOAdmin.vo_id.in_(list(found))).order_by(User.username)):
            found[vo_id].append(user)
        return found

    def administered_by(self, user: User) -> list[VO]:
        """The VOs ``user`` administers, by name."""
        return list(self.session.scalars(
            select(VO).join(VOAdmin, VOAdmin.vo_id == VO.id)
            .where(VOAdmin.user_id == user.id).order_by(VO.name)))

    def managed_groups(self, user: User) -> list[Group]:
        """The live groups, in every VO, that ``user`` manages (by path)."""
        return list(self.session.scalars(
            select(Group).join(GroupManager, GroupManager.group_id == Group.id)
            .where(GroupManager.user_id == user.id, Group.deleted_at.is_(None))
            .order_by(Group.path)))

    def create_group(self, actor: Actor, vo: VO, path: str, description: str = "") -> Group:
        self.ctx.authz.require_vo_admin(actor, vo)
        components = parse_group_path(path)
        if len(components) < 2 or components[0] != vo.name:
            raise InvalidInput(f"a group of VO {vo.name!r} has a path like /{vo.name}/name")
        parent = self.group(vo, "/" + "/".join(components[:-1]))
        group = self._new_group(vo, parent, validate_component(components[-1], "group"),
                                _description(description))
        self.ctx.audit.append(actor.label, "group.create", "group", group.path, vo_id=vo.id,
                              after=group_record(group))
        self.ctx.revisions.publish([Change(vo.id, "group", group_id=group.id)])
        return group

    def delete_group(self, actor: Actor, vo: VO, path: str) -> Group:
        """Mark a group and the groups below it deleted; their gids stay retired."""
        self.ctx.authz.require_vo_admin(actor, vo)
        group = self.group(vo, path)
        if group.is_root:
            raise InvalidTransition("the VO's root group cannot be deleted")
        doomed = [g for g in self.groups(vo) if g.path == group.path
                  or g.path.startswith(group.path + "/")]
        changes = []
        now = utcnow()
        for g in doomed:
            g.deleted_at = now
            members = self.session.scalars(select(Membership.user_id).join(
                GroupMembership, GroupMembership.membership_id == Membership.id)
                .where(GroupMembership.group_id == g.id))
            changes += [Change(vo.id, "member", user_id=u, group_id=g.id) for u in members]
            changes.append(Change(vo.id, "group", group_id=g.id))
        self.session.flush()
        self.ctx.audit.append(actor.label, "group.delete", "group", group.path, vo_id=vo.id,
                              before={"paths": [g.path for g in doomed]})
        self.ctx.revisions.publish(changes)
        from ..pki.revocation import Revoker

        Revoker(self.ctx).for_fqans(actor, vo.id, {g.path for g in doomed},
                                    f"group {group.path} deleted")
        return group

    # -- roles ---------------------------------------------------------------------
    def roles(self, vo: VO) -> list[Role]:
        return list(self.session.scalars(select(Role).where(Role.vo_id == vo.id)
                                         .order_by(Role.name)))

    def role(self, vo: VO, name: str) -> Role:
        role = self.session.scalar(select(Role).where(Role.vo_id == vo.id, Role.name == name))
        if role is None:
            raise NotFound(f"VO {vo.name!r} has no role {name[:64]!r}")
        return role

    def create_role(self, actor: Actor, vo: VO, name: str, description: str = "") -> Role:
        self.ctx.authz.require_vo_admin(actor, vo)
        name = validate_role(name)
        if self.session.scalar(select(exists().where(Role.vo_id == vo.id, Role.name == name))):
            raise AlreadyExists(f"VO {vo.name!r} already has the role {name!r}")
        role = Role(vo_id=vo.id, name=name, description=_description(description))
        self.session.add(role)
        self.session.flush()
        self.ctx.audit.append(actor.label, "role.create", "role", f"/{vo.name}/Role={name}",
                              vo_id=vo.id, after=role_record(vo, role))
        return role

    # -- admins and managers -------------------------------------------------------
    def admins(self, vo: VO) -> list[User]:
        return list(self.session.scalars(select(User).join(VOAdmin, VOAdmin.user_id == User.id)
                                         .where(VOAdmin.vo_id == vo.id).order_by(User.username)))

    def set_admin(self, actor: Actor, vo: VO, user: User, admin: bool) -> None:
        self.ctx.authz.require_service_admin(actor)
        existing = self.session.get(VOAdmin, (vo.id, user.id))
        if admin and existing is None:
            if user.status != "active":
                raise InvalidTransition(f"user {user.username!r} is {user.status}")
            self.session.add(VOAdmin(vo_id=vo.id, user_id=user.id))
        elif not admin and existing is not None:
            self.session.delete(existing)
        else:
            raise InvalidTransition(f"{user.username!r} is {'already' if admin else 'not'}"
                                    f" an admin of VO {vo.name!r}")
        self.session.flush()
        self.ctx.audit.append(actor.label, "vo.admin.add" if admin else "vo.admin.remove",
                              "vo", vo.name, vo_id=vo.id, after={"user": user.username})

    def managers(self, group: Group) -> list[User]:
        return list(self.session.scalars(
            select(User).join(GroupManager, GroupManager.user_id == User.id)
            .where(GroupManager.group_id == group.id).order_by(User.username)))

    def set_manager(self, actor: Actor, vo: VO, group: Group, user: User, manager: bool) -> None:
        self.ctx.authz.require_vo_admin(actor, vo)
        existing = self.session.get(GroupManager, (group.id, user.id))
        if manager and existing is None:
            if user.status != "active":
                raise InvalidTransition(f"user {user.username!r} is {user.status}")
            self.session.add(GroupManager(group_id=group.id, user_id=user.id))
        elif not manager and existing is not None:
            self.session.delete(existing)
        else:
            raise InvalidTransition(f"{user.username!r} is {'already' if manager else 'not'}"
                                    f" a manager of {group.path}")
        self.session.flush()
        self.ctx.audit.append(actor.label, "group.manager.add" if manager
                              else "group.manager.remove", "group", group.path, vo_id=vo.id,
                              after={"user": user.username})
