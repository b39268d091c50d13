"""Apply a plan through the domain services, audited as ``ldap-import:<who asked>``.

Each directory user's step (create, link, membership, groups) runs in a SAVEPOINT of its
own: a step that fails (a name taken since the preview) is rolled back whole and
reported, never half applied. Work is committed in batches, with a progress callback
after each step.

Why the import acts with a service admin's rights: a VO admin may import, and creating a
user is otherwise a service admin's act. The directory the operator configured vouches
for these people; the import creates only the users of the plan, and the caller must
administer the VO (checked here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from ..auth.passwords import PasswordService
from ..authz import Actor
from ..context import ServiceContext
from ..errors import XosError
from ..memberships.services import MembershipService
from ..users.models import User
from ..users.services import UserService
from ..vos.models import VO, Group
from ..vos.services import VOService
from .models import LdapManaged
from .plan import Plan, UserStep, chunks, plan_summary

BATCH = 200
LEFT_REASON = "no longer listed by the institutional directory"


@dataclass
class Outcome:
    """What applying did: the plan's counts for what succeeded, and each failed step."""

    applied: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    left: int = 0  # steps not attempted because of ``limit``


def import_actor(actor: Actor) -> Actor:
    """The actor the import's changes are recorded under."""
    return Actor(label=f"ldap-import:{actor.label}", user_id=actor.user_id,
                 is_service_admin=True, is_system=actor.is_system)


def work_size(plan: Plan) -> int:
    """How many progress steps applying ``plan`` reports."""
    return len(plan.steps) + len(plan.removals)


class _Applier:
    def __init__(self, ctx: ServiceContext, actor: Actor, vo: VO) -> None:
        self.ctx, self.vo = ctx, vo
        self.actor = import_actor(actor)
        self.vos = VOService(ctx)
        self.users = UserService(ctx)
        self.members = MembershipService(ctx)
        self.root = self.vos.root_group(vo)

    def manage(self, group: Group, user: User) -> None:
        if self.ctx.session.get(LdapManaged, (group.id, user.id)) is None:
            self.ctx.session.add(LdapManaged(group_id=group.id, user_id=user.id,
                                             vo_id=self.vo.id))
            self.ctx.session.flush()

    def step(self, step: UserStep) -> None:
        if step.create:
            user = self.users.create(self.actor, step.username, step.display_name, step.email)
        else:
            user = self.users.get(step.username)
        if step.create or step.link:
            PasswordService(self.ctx).link_ldap(self.actor, user, step.ldap_username)
        if step.membership == "add":
            self.members.add(self.actor, self.vo, user)
        elif step.membership == "approve":
            self.members.transition(self.actor, self.vo, user, "approve")
        if step.membership is not None:
            self.manage(self.root, user)
        for path in step.add_groups:
            group = self.vos.group(self.vo, path)
            self.members.add_to_group(self.actor, self.vo, group, user)
            self.manage(group, user)

    def remove(self, username: str, path: str) -> None:
        user = self.users.get(username)
        managed = LdapManaged.vo_id == self.vo.id, LdapManaged.user_id == user.id
        if path == self.root.path:
            self.members.transition(self.actor, self.vo, user, "remove", LEFT_REASON)
            self.ctx.session.execute(delete(LdapManaged).where(*managed))
            return
        group = self.vos.group(self.vo, path)
        self.members.remove_from_group(self.actor, self.vo, group, user)
        below = select(Group.id).where(Group.vo_id == self.vo.id, (Group.id == group.id)
                                       | Group.path.startswith(path + "/"))
        self.ctx.session.execute(delete(LdapManaged).where(*managed,
                                                           LdapManaged.group_id.in_(below)))


def apply_plan(ctx: ServiceContext, actor: Actor, plan: Plan, *,
               progress: Callable[[int], None] | None = None, batch: int = BATCH,
               limit: int | None = None) -> Outcome:
    """Apply ``plan`` (made by ``compute_plan``) and commit, batch by batch; with
    ``limit``, at most that many user steps and removals (the rest is in the next plan:
    an import is repeatable, so a caller bound by a request's time applies a plan in parts).

    Groups are created first; an error there stops the import before any user changes
    (the caller rolls back). PermissionDenied unless ``actor`` administers the VO."""
    vo = VOService(ctx).get(plan.vo)
    ctx.authz.require_vo_admin(actor, vo)
    applier = _Applier(ctx, actor, vo)
    outcome = Outcome()
    for path in plan.create_groups:
        applier.vos.create_group(applier.actor, vo, path,
                                 "members come from the institutional directory")
        outcome.applied += 1
    ctx.session.commit()
    work: list[tuple[str, UserStep | tuple[str, str]]] = [
        *(("step", s) for s in plan.steps), *(("remove", r) for r in plan.removals)]
    if limit is not None:
        work, outcome.left = work[:limit], max(0, len(work) - limit)
    for part in chunks(work, batch):
        for kind, item in part:
            name = item.username if isinstance(item, UserStep) else item[0]
            try:
                with ctx.session.begin_nested():
                    if isinstance(item, UserStep):
                        applier.step(item)
                    else:
                        applier.remove(*item)
                outcome.applied += 1
            except XosError as error:
                outcome.failed.append((name, f"{kind}: {error.detail}"))
            if progress is not None:
                progress(1)
        ctx.session.commit()
    if plan.changes:
        ctx.audit.append(applier.actor.label, "vo.ldap_import", "vo", vo.name, vo_id=vo.id,
                         after={**plan_summary(plan), "failed": len(outcome.failed)})
        ctx.session.commit()
    return outcome
