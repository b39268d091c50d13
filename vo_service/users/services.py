"""Users: create, read, search, update, suspend, reinstate, delete."""

from __future__ import annotations

import uuid
from typing import Any

from cryptography import x509
from sqlalchemy import delete, or_, select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AlreadyExists, InvalidInput, InvalidTransition, NotFound
from ..memberships.models import Membership
from ..names import validate_display_name, validate_email, validate_username
from ..sync.revisions import Change
from ..timeutil import iso
from .models import UnixName, User


def user_record(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "uid": user.uid,
        "gid": user.gid,
        "display_name": user.display_name,
        "email": user.email,
        "status": user.status,
        "is_service_admin": user.is_service_admin,
        "created_at": iso(user.created_at),
    }


STATUS_ACTIONS = {"active": "user.reinstate", "suspended": "user.suspend", "deleted": "user.delete"}


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    for i in range(len(prefix) - 1, -1, -1):
        if ord(prefix[i]) < 0x10FFFF:
            return prefix[:i] + chr(ord(prefix[i]) + 1)
    return "\U0010ffff" * (len(prefix) + 1)


class UserService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    # -- reading -------------------------------------------------------------------
    def get(self, ref: str) -> User:
        """Find a user by global id or username (a 32-hex-digit username is both)."""
        user: User | None = None
        if len(ref) == 36:
            try:
                user = self.session.get(User, uuid.UUID(ref))
            except ValueError:
                user = None
        if user is None and len(ref) <= 32:
            user = self.session.scalar(select(User).where(User.username == ref))
        if user is None:
            raise NotFound(f"no user {ref[:64]!r}")
        return user

    def read(self, actor: Actor, ref: str) -> User:
        user = self.get(ref)
        self.ctx.authz.require_self_or_admin_of_user(actor, user.id)
        return user

    def search(self, actor: Actor, q: str | None = None, status: str | None = None,
               after: str | None = None, limit: int | None = None) -> tuple[list[User], str | None]:
        """Page through users ordered by username; ``q`` is a username or e-mail prefix."""
        self.ctx.authz.require_service_admin(actor)
        size = self.ctx.page_size(limit)
        stmt = select(User).order_by(User.username).limit(size + 1)
        if q:
            q = q.lower()
            if len(q) > 254:
                raise InvalidInput("search text is longer than 254 characters")
            high = prefix_upper_bound(q)
            stmt = stmt.where(or_(
                (User.username >= q) & (User.username < high),
                (User.email >= q) & (User.email < high),
            ))
        if status:
            if status not in ("active", "suspended", "deleted"):
                raise InvalidInput(f"unknown user status {status[:20]!r}")
            stmt = stmt.where(User.status == status)
        if after:
            stmt = stmt.where(User.username > after)
        rows = list(self.session.scalars(stmt))
        more = len(rows) > size
        rows = rows[:size]
        return rows, (rows[-1].username if more else None)

    # -- writing -------------------------------------------------------------------
    def create(self, actor: Actor, username: str, display_name: str, email: str | None = None,
               uid: int | None = None, is_service_admin: bool = False) -> User:
        self.ctx.authz.require_service_admin(actor)
        username = validate_username(username, self.ctx.reserved_names)
        display_name = validate_display_name(display_name)
        email = validate_email(email) if email is not None else None
        self._claim_name(username)
        if email and self.session.scalar(select(User.id).where(User.email == email)):
            raise AlreadyExists(f"e-mail address {email!r} is already used by another user")
        number = self.ctx.numbers.claim_uid(uid) if uid is not None \
            else self.ctx.numbers.allocate_uid()
        user = User(id=uuid.uuid4(), username=username, uid=number, display_name=display_name,
                    email=email, status="active", is_service_admin=is_service_admin)
        self.session.add(user)
        self.session.flush()
        self.session.add(UnixName(name=username, kind="user", user_id=user.id))
        self.ctx.audit.append(actor.label, "user.create", "user", str(user.id),
                              after=user_record(user))
        return user

    def _claim_name(self, name: str) -> None:
        taken = self.session.get(UnixName, name)
        if taken is not None:
            raise AlreadyExists(f"the name {name!r} is already taken by a {taken.kind}"
                                " (names are never reused)")

    def update(self, actor: Actor, user: User, display_name: str | None = None,
               email: str | None = None) -> User:
        if actor.user_id != user.id:
            self.ctx.authz.require_service_admin(actor)
        before = user_record(user)
        if display_name is not None:
            user.display_name = validate_display_name(display_name)
        if email is not None:
            email = validate_email(email)
            other = self.session.scalar(select(User.id).where(User.email == email))
            if other is not None and other != user.id:
                raise AlreadyExists(f"e-mail address {email!r} is already used by another user")
            user.email = email
        self.session.flush()
        after = user_record(user)
        if after != before:
            self.ctx.audit.append(actor.label, "user.update", "user", str(user.id),
                                  before=before, after=after)
            self._publish_user(user)
        return user

    def set_status(self, actor: Actor, user: User, status: str) -> User:
        """suspend (active -> suspended), reinstate (suspended -> active) or delete.

        Deleting keeps the row, name and uid forever and removes every membership."""
        self.ctx.authz.require_service_admin(actor)
        allowed = {"suspended": ("active",), "active": ("suspended",),
                   "deleted": ("active", "suspended")}
        if status not in allowed:
            raise InvalidInput(f"unknown user status {status[:20]!r}")
        if user.status not in allowed[status]:
            raise InvalidTransition(f"user {user.username!r} is {user.status}; cannot become"
                                    f" {status}")
        if actor.user_id == user.id:
            raise InvalidTransition("you may not suspend or delete yourself")
        before = user_record(user)
        user.status = status
        if status == "deleted":
            user.is_service_admin = False
            from ..memberships.services import MembershipService

            MembershipService(self.ctx).remove_all_for_deleted_user(actor, user)
            withdrawn = self._withdraw_management_rights(user)
        self.session.flush()
        after = user_record(user)
        if status == "deleted":
            after["rights_withdrawn"] = withdrawn
        self.ctx.audit.append(actor.label, STATUS_ACTIONS[status], "user", str(user.id),
                              before=before, after=after)
        self._publish_user(user)
        if status != "active":
            from ..pki.revocation import Revoker

            Revoker(self.ctx).for_user(actor, user.id, x509.ReasonFlags.privilege_withdrawn
                                       if status == "suspended"
                                       else x509.ReasonFlags.cessation_of_operation,
                                       f"user {status}")
        return user

    def _withdraw_management_rights(self, user: User) -> list[str]:
        """A deleted user administers and manages nothing any more; say what was held."""
        from ..vos.models import VO, Group, GroupManager, VOAdmin

        held = [f"admin of {name}" for name in self.session.scalars(
            select(VO.name).join(VOAdmin, VOAdmin.vo_id == VO.id)
            .where(VOAdmin.user_id == user.id))]
        held += [f"manager of {path}" for path in self.session.scalars(
            select(Group.path).join(GroupManager, GroupManager.group_id == Group.id)
            .where(GroupManager.user_id == user.id))]
        for model in (VOAdmin, GroupManager):
            self.session.execute(delete(model).where(model.user_id == user.id))
        return held

    def set_service_admin(self, actor: Actor, user: User, flag: bool) -> User:
        self.ctx.authz.require_service_admin(actor)
        if user.status != "active" and flag:
            raise InvalidTransition(f"user {user.username!r} is {user.status}")
        before = user_record(user)
        user.is_service_admin = flag
        self.session.flush()
        self.ctx.audit.append(actor.label, "user.service_admin", "user", str(user.id),
                              before=before, after=user_record(user))
        return user

    def _publish_user(self, user: User) -> None:
        """The user's record, lock and group listings change on every node of their VOs."""
        from ..memberships.services import MembershipService
        from ..vos.models import VO

        memberships = MembershipService(self.ctx)
        changes: list[Change] = []
        for m, vo in self.session.execute(select(Membership, VO).join(VO, VO.id == Membership.vo_id)
                                          .where(Membership.user_id == user.id)).all():
            changes += memberships.status_changes(vo, m, user)
        self.ctx.revisions.publish(changes)
