"""Memberships: the request-approve lifecycle, expiry, groups and roles of a member.

Status changes follow ``TRANSITIONS``; anything else is an InvalidTransition and
changes nothing. Only an *active* membership of an *active* user counts on nodes; every
other status keeps the user resolvable but locked there.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import delete, select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from ..pki.revocation import Revoker
from ..sync.revisions import Change
from ..timeutil import iso, today
from ..users.models import User
from ..users.services import prefix_upper_bound
from ..vos.models import VO, Group, Role, VOAdmin
from ..vos.services import VOService
from .models import GroupMembership, Membership, RoleAssignment

#: operation -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "approve": (frozenset({"pending"}), "active"),
    "reject": (frozenset({"pending"}), "removed"),
    "suspend": (frozenset({"active"}), "suspended"),
    "reinstate": (frozenset({"suspended", "expired"}), "active"),
    "remove": (frozenset({"pending", "active", "suspended", "expired"}), "removed"),
    "expire": (frozenset({"active"}), "expired"),
}
REASON_MAX = 512
#: why certificates that carried a membership are revoked when it stops being active
REVOCATION_REASONS = {
    "suspend": x509.ReasonFlags.privilege_withdrawn,
    "expire": x509.ReasonFlags.privilege_withdrawn,
    "remove": x509.ReasonFlags.affiliation_changed,
}


def _reason(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str) or len(text) > REASON_MAX:
        raise InvalidInput(f"reason must be text of at most {REASON_MAX} characters")
    return text


def _future_date(value: dt.date | None) -> dt.date | None:
    if value is not None and value <= today():
        raise InvalidInput(f"expiry date {value.isoformat()} is not in the future")
    return value


@dataclass(frozen=True)
class Holdings:
    """What a user holds now in their active VOs: VO -> its groups and role FQANs."""

    vos: dict[str, VO]
    groups: dict[str, list[str]]
    roles: dict[str, list[str]]


class MembershipService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.vos = VOService(ctx)

    # -- reading -------------------------------------------------------------------
    def find(self, vo: VO, user: User) -> Membership:
        m = self.session.scalar(select(Membership).where(
            Membership.vo_id == vo.id, Membership.user_id == user.id))
        if m is None:
            raise NotFound(f"{user.username!r} has no membership in VO {vo.name!r}")
        return m

    def read(self, actor: Actor, vo: VO, user: User) -> dict[str, Any]:
        if actor.user_id != user.id:
            self.ctx.authz.require_vo_reader(actor, vo)
        return self.records(vo, [(self.find(vo, user), user)])[0]

    def records(self, vo: VO, rows: list[tuple[Membership, User]]) -> list[dict[str, Any]]:
        """Render memberships with their groups and roles (two queries per page)."""
        ids = [m.id for m, _ in rows]
        groups: dict[int, list[str]] = defaultdict(list)
        for mid, path in self.session.execute(
                select(GroupMembership.membership_id, Group.path)
                .join(Group, Group.id == GroupMembership.group_id)
                .where(GroupMembership.membership_id.in_(ids), Group.vo_id == vo.id,
                       Group.deleted_at.is_(None))
                .order_by(Group.path)):
            groups[mid].append(path)
        roles: dict[int, list[str]] = defaultdict(list)
        for mid, name in self.session.execute(
                select(RoleAssignment.membership_id, Role.name)
                .join(Role, Role.id == RoleAssignment.role_id)
                .where(RoleAssignment.membership_id.in_(ids)).order_by(Role.name)):
            roles[mid].append(f"/{vo.name}/Role={name}")
        return [{
            "vo": vo.name,
            "user": u.username,
            "user_id": str(u.id),
            "status": m.status,
            "expires_on": iso(m.expires_on),
            "groups": [f"/{vo.name}", *groups[m.id]] if m.status == "active" else groups[m.id],
            "roles": roles[m.id],
            "reason": m.reason,
            "requested_at": iso(m.requested_at),
            "approved_by": str(m.approved_by) if m.approved_by else None,
        } for m, u in rows]

    def page(self, actor: Actor, vo: VO, status: str | None = None, q: str | None = None,
             after: str | None = None, limit: int | None = None
             ) -> tuple[list[dict[str, Any]], str | None]:
        self.ctx.authz.require_vo_reader(actor, vo)
        size = self.ctx.page_size(limit)
        stmt = (select(Membership, User).join(User, User.id == Membership.user_id)
                .where(Membership.vo_id == vo.id).order_by(Membership.username)
                .limit(size + 1))
        if status:
            if status not in {s for _, s in TRANSITIONS.values()} | {"pending"}:
                raise InvalidInput(f"unknown membership status {status[:20]!r}")
            stmt = stmt.where(Membership.status == status)
        if q:
            if len(q) > 32:
                raise InvalidInput("search text is longer than 32 characters")
            stmt = stmt.where(Membership.username >= q.lower(),
                              Membership.username < prefix_upper_bound(q.lower()))
        if after:
            stmt = stmt.where(Membership.username > after)
        rows = [(m, u) for m, u in self.session.execute(stmt)]
        more = len(rows) > size
        rows = rows[:size]
        return self.records(vo, rows), (rows[-1][1].username if more else None)

    def group_page(self, actor: Actor, vo: VO, group: Group, after: str | None = None,
                   limit: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The members of ``group`` by name, a page at a time (VO admins and the group's
        managers). The root group lists the VO's active members; a subgroup every
        membership listed in it, whatever its status."""
        self.ctx.authz.require_group_manager(actor, vo, group)
        size = self.ctx.page_size(limit)
        stmt = (select(Membership, User).join(User, User.id == Membership.user_id)
                .where(Membership.vo_id == vo.id).order_by(Membership.username)
                .limit(size + 1))
        if group.is_root:
            stmt = stmt.where(Membership.status == "active")
        else:
            stmt = stmt.join(GroupMembership, GroupMembership.membership_id == Membership.id
                             ).where(GroupMembership.group_id == group.id)
        if after:
            stmt = stmt.where(Membership.username > after[:32])
        rows = [(m, u) for m, u in self.session.execute(stmt)]
        more = len(rows) > size
        rows = rows[:size]
        return self.records(vo, rows), (rows[-1][1].username if more else None)

    def of_user(self, actor: Actor, user: User) -> list[dict[str, Any]]:
        self.ctx.authz.require_self_or_admin_of_user(actor, user.id)
        stmt = (select(Membership, VO).join(VO, VO.id == Membership.vo_id)
                .where(Membership.user_id == user.id).order_by(VO.name))
        if not actor.is_service_admin and actor.user_id != user.id:
            # A VO admin sees the user's memberships in the VOs they administer only.
            stmt = stmt.where(Membership.vo_id.in_(
                select(VOAdmin.vo_id).where(VOAdmin.user_id == actor.user_id)))
        out: list[dict[str, Any]] = []
        for m, vo in self.session.execute(stmt):
            out += self.records(vo, [(m, user)])
        return out

    # -- what a user holds now -------------------------------------------------------
    def holdings(self, user: User) -> Holdings:
        """The VOs, groups and role FQANs a user holds through active memberships: what
        certificates and tokens may carry."""
        vos = {vo.name: vo for vo in self.session.scalars(
            select(VO).join(Membership, Membership.vo_id == VO.id)
            .where(Membership.user_id == user.id, Membership.status == "active")
            .order_by(VO.name))}
        ids = [vo.id for vo in vos.values()]
        groups: dict[str, list[str]] = {name: [f"/{name}"] for name in vos}
        names = {vo.id: vo.name for vo in vos.values()}
        for vo_id, path in self.session.execute(
                select(Group.vo_id, Group.path)
                .join(GroupMembership, GroupMembership.group_id == Group.id)
                .join(Membership, Membership.id == GroupMembership.membership_id)
                .where(Membership.user_id == user.id, Membership.vo_id.in_(ids),
                       Group.deleted_at.is_(None)).order_by(Group.path)):
            groups[names[vo_id]].append(path)
        roles: dict[str, list[str]] = {name: [] for name in vos}
        for vo_id, role in self.session.execute(
                select(Role.vo_id, Role.name)
                .join(RoleAssignment, RoleAssignment.role_id == Role.id)
                .join(Membership, Membership.id == RoleAssignment.membership_id)
                .where(Membership.user_id == user.id, Membership.vo_id.in_(ids))
                .order_by(Role.name)):
            roles[names[vo_id]].append(f"/{names[vo_id]}/Role={role}")
        return Holdings(vos, groups, roles)

    # -- lifecycle -----------------------------------------------------------------
    def request(self, actor: Actor, vo: VO, user: User, reason: str | None = None) -> Membership:
        """A user asks to join; a removed (or rejected) user may ask again."""
        if actor.user_id != user.id:
            raise PermissionDenied("you may only request a membership for yourself")
        return self._open(actor, vo, user, "pending", _reason(reason), None)

    def add(self, actor: Actor, vo: VO, user: User, expires_on: dt.date | None = None
            ) -> Membership:
        """A VO admin adds a user directly (active at once)."""
        self.ctx.authz.require_vo_admin(actor, vo)
        return self._open(actor, vo, user, "active", "", _future_date(expires_on))

    def _open(self, actor: Actor, vo: VO, user: User, status: str, reason: str,
              expires_on: dt.date | None) -> Membership:
        if user.status != "active":
            raise InvalidTransition(f"user {user.username!r} is {user.status}")
        m = self.session.scalar(select(Membership).where(
            Membership.vo_id == vo.id, Membership.user_id == user.id))
        before = None
        if m is None:
            m = Membership(user_id=user.id, vo_id=vo.id, username=user.username)
            self.session.add(m)
        elif m.status != "removed":
            raise InvalidTransition(f"{user.username!r} already has a {m.status} membership"
                                    f" in VO {vo.name!r}")
        else:
            before = self._snapshot(vo, m, user)
        m.status, m.reason, m.expires_on = status, reason, expires_on
        m.approved_by = actor.user_id if status == "active" else None
        self.session.flush()
        self.ctx.audit.append(actor.label, "membership.request" if status == "pending"
                              else "membership.add", "membership", f"{vo.name}:{user.username}",
                              vo_id=vo.id, before=before, after=self._snapshot(vo, m, user))
        self._publish_status(vo, m, user)
        return m

    def transition(self, actor: Actor, vo: VO, user: User, operation: str,
                   reason: str | None = None, expires_on: dt.date | None = None) -> Membership:
        """approve, reject, suspend, reinstate or remove a membership (VO admins)."""
        if operation not in TRANSITIONS or operation == "expire":
            raise InvalidInput(f"unknown membership operation {operation[:20]!r}")
        self.ctx.authz.require_vo_admin(actor, vo)
        m = self.find(vo, user)
        return self._apply(actor, vo, user, m, operation, _reason(reason),
                           _future_date(expires_on))

    def _apply(self, actor: Actor, vo: VO, user: User, m: Membership, operation: str,
               reason: str, expires_on: dt.date | None) -> Membership:
        sources, target = TRANSITIONS[operation]
        if m.status not in sources:
            raise InvalidTransition(f"cannot {operation} the membership of {user.username!r} in"
                                    f" VO {vo.name!r}: it is {m.status}")
        if target == "active" and user.status != "active":
            raise InvalidTransition(f"user {user.username!r} is {user.status}")
        before = self._snapshot(vo, m, user)
        touched_groups = self._group_ids(m)
        was_active = m.status == "active"
        m.status, m.reason = target, reason
        if operation == "approve":
            m.approved_by = actor.user_id
        if target == "active":
            m.expires_on = expires_on if expires_on is not None else (
                m.expires_on if m.expires_on and m.expires_on > today() else None)
        if target == "removed":
            self.session.execute(delete(GroupMembership).where(
                GroupMembership.membership_id == m.id))
            self.session.execute(delete(RoleAssignment).where(
                RoleAssignment.membership_id == m.id))
        self.session.flush()
        self.ctx.audit.append(actor.label, f"membership.{operation}", "membership",
                              f"{vo.name}:{user.username}", vo_id=vo.id, before=before,
                              after=self._snapshot(vo, m, user))
        self._publish_status(vo, m, user, touched_groups)
        if was_active and target != "active":
            Revoker(self.ctx).for_membership(actor, user.id, vo.id, REVOCATION_REASONS[operation],
                                             f"membership in {vo.name} {target}")
        return m

    def set_expiry(self, actor: Actor, vo: VO, user: User, expires_on: dt.date | None
                   ) -> Membership:
        self.ctx.authz.require_vo_admin(actor, vo)
        m = self.find(vo, user)
        if m.status not in ("active", "pending"):
            raise InvalidTransition(f"the membership of {user.username!r} is {m.status}")
        before = self._snapshot(vo, m, user)
        m.expires_on = _future_date(expires_on)
        self.session.flush()
        self.ctx.audit.append(actor.label, "membership.expiry", "membership",
                              f"{vo.name}:{user.username}", vo_id=vo.id, before=before,
                              after=self._snapshot(vo, m, user))
        return m

    def expire_due(self, actor: Actor, on: dt.date | None = None) -> int:
        """Expire every active membership whose date has come (run it daily, cron)."""
        self.ctx.authz.require_service_admin(actor)
        on = on or today()
        due = self.session.execute(
            select(Membership, User, VO).join(User, User.id == Membership.user_id)
            .join(VO, VO.id == Membership.vo_id)
            .where(Membership.status == "active", Membership.expires_on.is_not(None),
                   Membership.expires_on <= on)).all()
        for m, user, vo in due:
            self._apply(actor, vo, user, m, "expire", "expired", None)
        return len(due)

    def remove_all_for_deleted_user(self, actor: Actor, user: User) -> None:
        for m, vo in self.session.execute(select(Membership, VO).join(VO, VO.id == Membership.vo_id)
                                          .where(Membership.user_id == user.id,
                                                 Membership.status != "removed")).all():
            self._apply(actor, vo, user, m, "remove", "user deleted", None)

    # -- groups and roles ----------------------------------------------------------
    def add_to_group(self, actor: Actor, vo: VO, group: Group, user: User) -> None:
        """Add an active member to a group and to every group above it."""
        self.ctx.authz.require_group_manager(actor, vo, group)
        if group.is_root:
            raise InvalidInput("every active member is in the VO's root group already")
        m = self._active(vo, user)
        chain: list[Group] = []
        node: Group | None = group
        while node is not None and not node.is_root:
            chain.append(node)
            node = self.session.get(Group, node.parent_id)
        have = self._group_ids(m)
        new = [g for g in reversed(chain) if g.id not in have]
        if not new:
            raise InvalidTransition(f"{user.username!r} is already in {group.path}")
        for g in new:
            self.session.add(GroupMembership(membership_id=m.id, group_id=g.id))
        self.session.flush()
        self.ctx.audit.append(actor.label, "group.member.add", "group", group.path, vo_id=vo.id,
                              after={"user": user.username, "added": [g.path for g in new]})
        self.ctx.revisions.publish(Change(vo.id, "member", user_id=user.id, group_id=g.id)
                                   for g in new)

    def remove_from_group(self, actor: Actor, vo: VO, group: Group, user: User) -> None:
        """Remove a member from a group and every group below it."""
        self.ctx.authz.require_group_manager(actor, vo, group)
        m = self.find(vo, user)
        gone = list(self.session.scalars(
            select(Group).join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.membership_id == m.id)
            .where((Group.id == group.id) | Group.path.startswith(group.path + "/"))))
        if group.id not in {g.id for g in gone}:
            raise InvalidTransition(f"{user.username!r} is not in {group.path}")
        self.session.execute(delete(GroupMembership).where(
            GroupMembership.membership_id == m.id,
            GroupMembership.group_id.in_([g.id for g in gone])))
        self.ctx.audit.append(actor.label, "group.member.remove", "group", group.path,
                              vo_id=vo.id, before={"user": user.username,
                                                   "removed": [g.path for g in gone]})
        self.ctx.revisions.publish(Change(vo.id, "member", user_id=user.id, group_id=g.id)
                                   for g in gone)
        Revoker(self.ctx).for_fqans(actor, vo.id, {g.path for g in gone}, f"left {group.path}",
                                    user.id)

    def set_role(self, actor: Actor, vo: VO, user: User, role: Role, held: bool) -> None:
        self.ctx.authz.require_vo_admin(actor, vo)
        m = self._active(vo, user)
        existing = self.session.get(RoleAssignment, (m.id, role.id))
        fqan = f"/{vo.name}/Role={role.name}"
        if held and existing is None:
            self.session.add(RoleAssignment(membership_id=m.id, role_id=role.id))
        elif not held and existing is not None:
            self.session.delete(existing)
        else:
            verb = "already holds" if held else "does not hold"
            raise InvalidTransition(f"{user.username!r} {verb} {fqan}")
        self.session.flush()
        self.ctx.audit.append(actor.label, "role.assign" if held else "role.revoke", "membership",
                              f"{vo.name}:{user.username}", vo_id=vo.id, after={"role": fqan})
        if not held:
            Revoker(self.ctx).for_fqans(actor, vo.id, {fqan}, f"lost {fqan}", user.id)

    # -- helpers -------------------------------------------------------------------
    def _active(self, vo: VO, user: User) -> Membership:
        m = self.find(vo, user)
        if m.status != "active":
            raise InvalidTransition(f"the membership of {user.username!r} in VO {vo.name!r} is"
                                    f" {m.status}, not active")
        return m

    def _group_ids(self, m: Membership) -> set[int]:
        return set(self.session.scalars(select(GroupMembership.group_id).where(
            GroupMembership.membership_id == m.id)))

    def _snapshot(self, vo: VO, m: Membership, user: User) -> dict[str, Any]:
        return {k: v for k, v in self.records(vo, [(m, user)])[0].items()
                if k in ("status", "expires_on", "groups", "roles", "reason")}

    def _publish_status(self, vo: VO, m: Membership, user: User,
                        extra_groups: set[int] | None = None) -> None:
        self.ctx.revisions.publish(self.status_changes(vo, m, user, extra_groups))

    def status_changes(self, vo: VO, m: Membership, user: User,
                       extra_groups: set[int] | None = None) -> list[Change]:
        """A status change touches the user's lock and every group they are listed in."""
        root = self.vos.root_group(vo)
        groups = {root.id} | self._group_ids(m) | (extra_groups or set())
        return ([Change(vo.id, "user", user_id=user.id)]
                + [Change(vo.id, "member", user_id=user.id, group_id=g) for g in sorted(groups)])


