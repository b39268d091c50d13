"""The account view a node syncs: a snapshot at a revision, and the changes since one.

Both read the current revision *before* the data, so what they return is at least as
new as the revision they report. A node applies records as upserts, so seeing a change
again at its next sync is harmless, and nothing committed is ever skipped (revisions
commit in order, see ``Counter``). Change cost follows the number of touched subjects,
not the population: ``account_changes`` is indexed by (vo_id, revision).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import InvalidInput
from ..memberships.models import GroupMembership, Membership
from ..nodes.models import Node, NodeVO
from ..timeutil import utcnow
from ..users.models import User
from ..vos.models import VO, Group
from .models import AccountChange

LAST_CONTACT_GRANULARITY = dt.timedelta(seconds=30)


def _user_view(user_id: uuid.UUID, name: str, number: int, display_name: str,
               locked: bool) -> dict[str, Any]:
    """A user as a node sees it; gid = uid (the private group)."""
    return {"id": str(user_id), "name": name, "uid": number, "gid": number,
            "display_name": display_name, "locked": locked}


def _counts(membership_status: str, user_status: str) -> bool:
    """Whether a membership puts the user in the VO's groups on nodes."""
    return membership_status == "active" and user_status == "active"


def _group_view(group: Group, vo_name: str) -> dict[str, Any]:
    return {"name": group.unix_name, "gid": group.gid, "path": group.path, "vo": vo_name}


class SyncService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def _authorize(self, actor: Actor, node: Node) -> dict[int, str]:
        if actor.node_id != node.id:
            self.ctx.authz.require_service_admin(actor)
        else:
            self._touch(node)
        return dict(self.session.execute(select(VO.id, VO.name).join(
            NodeVO, NodeVO.vo_id == VO.id).where(NodeVO.node_id == node.id)).all())

    def _touch(self, node: Node) -> None:
        now = utcnow()
        last = node.last_contact
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        if last is None or now - last > LAST_CONTACT_GRANULARITY:
            node.last_contact = now

    def vo_ids(self, node: Node) -> frozenset[int]:
        """The ids of the VOs ``node`` serves (what its long-poll waits on)."""
        return frozenset(self.session.scalars(select(NodeVO.vo_id).where(
            NodeVO.node_id == node.id)))

    def snapshot(self, actor: Actor, node: Node) -> dict[str, Any]:
        revision = self.ctx.revisions.current()
        vos = self._authorize(actor, node)
        ids = list(vos)
        # Plain columns, not ORM objects: a big node has tens of thousands of users.
        # Statuses are filtered here, not in SQL: an indexed status column with a few
        # values lures SQLite's planner into walking every active row of the population.
        groups = list(self.session.scalars(select(Group).where(
            Group.vo_id.in_(ids), Group.deleted_at.is_(None)).order_by(Group.path)))
        roots = {g.vo_id: g.id for g in groups if g.parent_id is None}
        users: dict[uuid.UUID, dict[str, Any]] = {}
        members: dict[int, list[str]] = defaultdict(list)
        for uid_, name, number, display, user_status, vo_id, status in self.session.execute(
                select(User.id, User.username, User.uid, User.display_name, User.status,
                       Membership.vo_id, Membership.status)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.vo_id.in_(ids))):
            unlocked = _counts(status, user_status)
            if unlocked:
                members[roots[vo_id]].append(name)
            if uid_ in users:
                users[uid_]["locked"] = users[uid_]["locked"] and not unlocked
            else:
                users[uid_] = _user_view(uid_, name, number, display, not unlocked)
        # Driven by the groups' index: the node's groups are known, its VOs' members may
        # be many more than those listed in subgroups.
        subgroups = [g.id for g in groups if g.parent_id is not None]
        for group_id, name, status, user_status in self.session.execute(
                select(GroupMembership.group_id, User.username, Membership.status, User.status)
                .join(Membership, Membership.id == GroupMembership.membership_id)
                .join(User, User.id == Membership.user_id)
                .where(GroupMembership.group_id.in_(subgroups))):
            if _counts(status, user_status):
                members[group_id].append(name)
        for names in members.values():
            names.sort()  # in Python: ORDER BY lures SQLite into walking the username index
        return {
            "node": node.name,
            "revision": revision,
            "vos": sorted(vos.values()),
            "users": sorted(users.values(), key=lambda u: u["name"]),
            "groups": [{**_group_view(g, vos[g.vo_id]), "members": members.get(g.id, [])}
                       for g in groups],
        }

    def changes(self, actor: Actor, node: Node, since: int) -> dict[str, Any]:
        revision = self.ctx.revisions.current()
        vos = self._authorize(actor, node)
        if not isinstance(since, int) or since < 0:
            raise InvalidInput("since must be a revision number (0 or more)")
        if since > revision or since < node.vos_changed_revision:
            # The node is ahead of us (restored database) or its VO set changed.
            return {"node": node.name, "since": since, "revision": revision,
                    "resync_required": True}
        touched = self.session.execute(
            select(AccountChange.kind, AccountChange.user_id, AccountChange.group_id)
            .where(AccountChange.vo_id.in_(list(vos)), AccountChange.revision > since,
                   AccountChange.revision <= revision)
            .distinct()).all()
        user_ids = {u for kind, u, _ in touched if kind == "user" and u is not None}
        group_ids = {g for kind, _, g in touched if kind == "group" and g is not None}
        pairs = {(u, g) for kind, u, g in touched if kind == "member"}
        return {
            "node": node.name,
            "since": since,
            "revision": revision,
            "resync_required": False,
            "users": self._users(user_ids, list(vos)),
            **self._groups(group_ids, vos),
            **self._members(pairs),
        }

    def _users(self, user_ids: set[uuid.UUID], vo_ids: list[int]) -> list[dict[str, Any]]:
        if not user_ids:
            return []
        state: dict[uuid.UUID, tuple[User, bool]] = {}
        for user, status in self.session.execute(
                select(User, Membership.status).join(Membership, Membership.user_id == User.id)
                .where(User.id.in_(user_ids), Membership.vo_id.in_(vo_ids))):
            prior = state.get(user.id, (user, False))[1]
            state[user.id] = (user, prior or status == "active")
        return [_user_view(u.id, u.username, u.uid, u.display_name,
                           not (active and u.status == "active"))
                for u, active in sorted(state.values(), key=lambda p: p[0].username)]

    def _groups(self, group_ids: set[int], vos: dict[int, str]) -> dict[str, Any]:
        upserts, removed = [], []
        if group_ids:
            for g in self.session.scalars(select(Group).where(Group.id.in_(group_ids))
                                          .order_by(Group.path)):
                if g.deleted_at is None and g.vo_id in vos:
                    upserts.append(_group_view(g, vos[g.vo_id]))
                else:
                    removed.append(g.unix_name)
        return {"groups": upserts, "removed_groups": removed}

    def _members(self, pairs: set[tuple[Any, Any]]) -> dict[str, Any]:
        if not pairs:
            return {"members_added": [], "members_removed": []}
        user_ids = {u for u, _ in pairs}
        group_ids = {g for _, g in pairs}
        names = dict(self.session.execute(select(User.id, User.username)
                                          .where(User.id.in_(user_ids))).all())
        groups = {g.id: g for g in self.session.scalars(
            select(Group).where(Group.id.in_(group_ids)))}
        # Root groups: every active member of the VO.
        root_vo = {g.vo_id: g.id for g in groups.values() if g.parent_id is None}
        active = {(u, root_vo[v]) for u, v, status, user_status in self.session.execute(
            select(Membership.user_id, Membership.vo_id, Membership.status, User.status)
            .join(User, User.id == Membership.user_id)
            .where(Membership.user_id.in_(user_ids), Membership.vo_id.in_(list(root_vo))))
            if _counts(status, user_status)}
        # Plain IN lists on indexed columns, then the exact pairs and statuses in Python: a
        # row-value IN over (user, group) or a status filter defeats the indexes on SQLite.
        subgroups = [g for g in group_ids if groups[g].parent_id is not None]
        if subgroups:
            active |= {(u, g) for u, g, status, user_status in self.session.execute(
                select(Membership.user_id, GroupMembership.group_id, Membership.status,
                       User.status)
                .join(Membership, Membership.id == GroupMembership.membership_id)
                .join(User, User.id == Membership.user_id)
                .where(GroupMembership.group_id.in_(subgroups),
                       Membership.user_id.in_(user_ids)))
                if (u, g) in pairs and _counts(status, user_status)}
        added: list[dict[str, str]] = []
        removed: list[dict[str, str]] = []
        for u, g in sorted(pairs, key=lambda p: (names[p[0]], groups[p[1]].unix_name)):
            group = groups[g]
            entry = {"user": names[u], "group": group.unix_name}
            (added if (u, g) in active and group.deleted_at is None else removed).append(entry)
        return {"members_added": added, "members_removed": removed}
