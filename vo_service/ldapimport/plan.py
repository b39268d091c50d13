"""The preview: what an import would change, computed from the directory's view and the
VO service's rows, changing nothing.

Rules (why they are strict): an existing VO user whose name a directory user also has is
only used when already linked to that directory username, or when the operator asks for
linking (``link_existing``); otherwise it is a conflict, never a silent take-over of a
local account. Removals touch only what the import itself added (``LdapManaged``) and
only with ``remove_missing``. Suspended or expired memberships are an admin's decision and
are left as they are."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select

from ..auth.models import LdapLink
from ..authz import Actor
from ..context import ServiceContext
from ..errors import InvalidInput
from ..memberships.models import GroupMembership, Membership
from ..names import parse_group_path, unix_group_name
from ..users.models import UnixName, User
from ..vos.models import VO, Group
from ..vos.services import VOService
from .models import LdapManaged
from .reader import DirectoryView, Person, Skipped
from .spec import ImportSpec

T = TypeVar("T")
CHUNK = 500  # values in one IN (...) list


@dataclass(frozen=True, slots=True)
class UserStep:
    """Everything the import does for one directory user, applied all together or not at
    all. ``membership``: "add" (new or removed before) or "approve" (pending)."""

    username: str
    ldap_username: str
    dn: str
    display_name: str
    email: str | None
    create: bool = False
    link: bool = False
    membership: str | None = None
    add_groups: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Conflict:
    """A directory user the import will not touch, and why."""

    username: str
    dn: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """The preview of one import. ``left``: (username, VO path) the import added and the
    directory no longer lists (the VO's own path: the membership); ``removals``: the
    same when ``remove_missing`` was asked, else empty."""

    vo: str
    spec: ImportSpec
    create_groups: tuple[str, ...]
    steps: tuple[UserStep, ...]
    left: tuple[tuple[str, str], ...]
    removals: tuple[tuple[str, str], ...]
    conflicts: tuple[Conflict, ...]
    skipped: tuple[Skipped, ...]
    unchanged: int
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts.update({
            "groups_created": len(self.create_groups),
            "users_created": sum(s.create for s in self.steps),
            "users_linked": sum(s.link for s in self.steps),
            "memberships_added": sum(s.membership is not None for s in self.steps),
            "group_memberships_added": sum(len(s.add_groups) for s in self.steps),
            "memberships_removed": sum(p == f"/{self.vo}" for _, p in self.removals),
            "group_memberships_removed": sum(p != f"/{self.vo}" for _, p in self.removals),
            "left_not_removed": 0 if self.spec.remove_missing else len(self.left),
            "conflicts": len(self.conflicts),
            "skipped": len(self.skipped),
            "unchanged": self.unchanged,
        })

    @property
    def changes(self) -> int:
        """How many changes applying makes (0: the VO already matches the directory)."""
        return len(self.create_groups) + len(self.steps) + len(self.removals)

    def fingerprint(self) -> str:
        """A digest of every change: the portal applies a preview only if a fresh plan
        has the same one (the directory and the VO did not change in between)."""
        body = {"vo": self.vo, "groups": self.create_groups, "removals": self.removals,
                "steps": [asdict(s) for s in self.steps]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _State:
    """The rows of the VO service an import looks at, read in a few queries."""

    def __init__(self, ctx: ServiceContext, vo: VO, view: DirectoryView) -> None:
        s = ctx.session
        self.session = s
        names = sorted(view.members)
        ldap_names = sorted(p.ldap_username for p in view.members.values())
        self.users = {u.username: u for part in chunks(names)
                      for u in s.scalars(select(User).where(User.username.in_(part)))}
        self.link_of_ldap = {row.ldap_username: row for part in chunks(ldap_names)
                             for row in s.scalars(select(LdapLink).where(
                                 LdapLink.ldap_username.in_(part)))}
        self.managed = list(s.scalars(select(LdapManaged).where(LdapManaged.vo_id == vo.id)))
        ids = sorted({u.id for u in self.users.values()}
                     | {row.user_id for row in self.link_of_ldap.values()}
                     | {row.user_id for row in self.managed})
        self.by_id = {u.id: u for part in chunks(ids)
                      for u in s.scalars(select(User).where(User.id.in_(part)))}
        self.link_of_user = {row.user_id: row for part in chunks(ids)
                             for row in s.scalars(select(LdapLink).where(
                                 LdapLink.user_id.in_(part)))}
        self.unix_taken = {n for part in chunks(names) for n in s.scalars(
            select(UnixName.name).where(UnixName.name.in_(part)))}
        emails = sorted({p.email for p in view.members.values() if p.email})
        self.emails_taken = {e for part in chunks(emails) for e in s.scalars(
            select(User.email).where(User.email.in_(part)))}
        self.memberships = {m.user_id: m for m in s.scalars(
            select(Membership).where(Membership.vo_id == vo.id))}
        self.in_group = {(mid, gid) for mid, gid in s.execute(
            select(GroupMembership.membership_id, GroupMembership.group_id)
            .join(Membership, Membership.id == GroupMembership.membership_id)
            .where(Membership.vo_id == vo.id))}
        self.groups = {g.path: g for g in s.scalars(select(Group).where(Group.vo_id == vo.id))}


def _groups_to_create(ctx: ServiceContext, state: _State, paths: Iterable[str]) -> list[str]:
    """Mapped paths (and the groups above them) that do not exist yet, parents first.
    InvalidInput for a deleted path (never reused) or a taken Unix name."""
    wanted: list[str] = []
    for path in sorted(set(paths)):
        components = parse_group_path(path)
        for depth in range(2, len(components) + 1):
            prefix = "/" + "/".join(components[:depth])
            group = state.groups.get(prefix)
            if group is not None and group.deleted_at is not None:
                raise InvalidInput(f"the group {prefix} was deleted, and paths are never reused")
            if group is None and prefix not in wanted:
                unix = unix_group_name(prefix)
                if ctx.session.get(UnixName, unix) is not None:
                    raise InvalidInput(f"the Unix name {unix!r} of {prefix} is already taken")
                wanted.append(prefix)
    return wanted


def compute_plan(ctx: ServiceContext, actor: Actor, spec: ImportSpec,
                 view: DirectoryView) -> Plan:
    """The plan for ``spec`` given what the directory says (``view``); reads only.
    PermissionDenied unless ``actor`` administers the VO."""
    vos = VOService(ctx)
    vo = vos.get(spec.vo)
    ctx.authz.require_vo_admin(actor, vo)
    state = _State(ctx, vo, view)
    paths = [path for _, path in spec.mapping]
    create_groups = _groups_to_create(ctx, state, paths)
    steps: list[UserStep] = []
    conflicts: list[Conflict] = []
    planned_emails: set[str] = set()
    unchanged = 0
    for name in sorted(view.members):
        person = view.members[name]
        user, why = _resolve(state, spec, person)
        if why is not None:
            conflicts.append(Conflict(user.username if user else name, person.dn, why))
            continue
        step = _step(state, view, paths, person, user, planned_emails)
        if step is None:
            unchanged += 1
        else:
            steps.append(step)
    left = _left(state, view, vo)
    return Plan(vo.name, spec, tuple(create_groups), tuple(steps), tuple(left),
                tuple(left) if spec.remove_missing else (), tuple(conflicts), view.skipped,
                unchanged)


def _resolve(state: _State, spec: ImportSpec, person: Person
             ) -> tuple[User | None, str | None]:
    """(the VO user this person is, or None for a new one; a conflict reason or None)."""
    link = state.link_of_ldap.get(person.ldap_username)
    user: User | None
    if link is not None:
        user = state.by_id[link.user_id]
    else:
        user = state.users.get(person.username)
        if user is None:
            if person.username in state.unix_taken:
                return None, (f"the name {person.username!r} is taken by a group or a deleted "
                              "user (names are never reused)")
            return None, None
        own = state.link_of_user.get(user.id)
        if own is not None:
            return user, (f"the VO user {user.username!r} is linked to the LDAP user "
                          f"{own.ldap_username!r}")
        if not spec.link_existing:
            return user, (f"a VO user {user.username!r} exists and is not linked to this "
                          "directory entry (link it explicitly: --link-existing)")
    if user is not None and user.status != "active":
        return user, f"the VO user {user.username!r} is {user.status}"
    return user, None


def _step(state: _State, view: DirectoryView, paths: list[str], person: Person,
          user: User | None, planned_emails: set[str]) -> UserStep | None:
    notes: list[str] = []
    email = person.email
    if user is None and email is not None:
        if email in state.emails_taken or email in planned_emails:
            notes.append(f"e-mail {email} left out: another user has it")
            email = None
        else:
            planned_emails.add(email)
    m = state.memberships.get(user.id) if user else None
    membership = None
    if m is None or m.status == "removed":
        membership = "add"
    elif m.status == "pending":
        membership = "approve"
    elif m.status != "active":
        notes.append(f"the membership is {m.status}; left as it is")
    active = membership is not None or (m is not None and m.status == "active")
    add_groups: list[str] = []
    for path in dict.fromkeys(paths):
        if person.username not in view.groups.get(path, ()):
            continue
        group = state.groups.get(path)
        if not active:
            notes.append(f"not added to {path}: the membership is not active")
        elif group is None or m is None or m.status == "removed" \
                or (m.id, group.id) not in state.in_group:
            add_groups.append(path)
    link = user is not None and state.link_of_ldap.get(person.ldap_username) is None
    if user is not None and not link and membership is None and not add_groups:
        return None
    return UserStep(user.username if user else person.username, person.ldap_username,
                    person.dn, person.display_name, email if user is None else None,
                    create=user is None, link=link, membership=membership,
                    add_groups=tuple(add_groups), notes=tuple(notes))


def _left(state: _State, view: DirectoryView, vo: VO) -> list[tuple[str, str]]:
    """(username, path) the import added that the directory no longer lists there."""
    root = f"/{vo.name}"
    by_group_id = {g.id: g for g in state.groups.values()}
    out: list[tuple[str, str]] = []
    for row in state.managed:
        user, group = state.by_id.get(row.user_id), by_group_id.get(row.group_id)
        link = state.link_of_user.get(row.user_id)
        m = state.memberships.get(row.user_id)
        if user is None or group is None or m is None or m.status == "removed":
            continue
        if link is not None and link.ldap_username.casefold() in view.present.get(
                group.path, frozenset()):
            continue
        if group.path == root:
            out.append((user.username, root))
        elif group.deleted_at is None and (m.id, group.id) in state.in_group \
                and group.path in view.present:
            out.append((user.username, group.path))
    gone = {name for name, path in out if path == root}
    return sorted((n, p) for n, p in out if p == root or n not in gone)


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The counts and the VO, for the audit log and the command line."""
    return {"vo": plan.vo, **plan.counts}

