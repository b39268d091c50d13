from __future__ import annotations

from typing import Any

from ..memberships.services import MembershipService
from ..users.services import UserService
from ..vos.services import VOService
from .registry import Call, operation
from .schemas import Expiry, MemberAdd, MemberQuery, MembershipRequest, MemberTransition
from .vos import group_path

TAG = "memberships"


@operation("POST", "/vos/<vo>/requests", summary="Ask to join a VO (the calling user)",
           tag=TAG, body=MembershipRequest, status=201)
def request_membership(call: Call, body: MembershipRequest, vo: str) -> dict[str, Any]:
    user_id = call.ctx.authz.require_user(call.actor)
    users, vos, ms = UserService(call.ctx), VOService(call.ctx), MembershipService(call.ctx)
    user, v = users.get(str(user_id)), vos.get(vo)
    ms.request(call.actor, v, user, body.reason)
    return ms.read(call.actor, v, user)


@operation("GET", "/vos/<vo>/members", summary="List or search a VO's members (VO admins,"
           " group managers)", tag=TAG, query=MemberQuery, paged=True)
def list_members(call: Call, vo: str) -> dict[str, Any]:
    q = call.query
    items, nxt = MembershipService(call.ctx).page(call.actor, VOService(call.ctx).get(vo),
                                                  q.status, q.q, q.after, q.limit)
    return {"items": items, "next": nxt}


@operation("POST", "/vos/<vo>/members", summary="Add a member directly (VO admin)", tag=TAG,
           body=MemberAdd, status=201)
def add_member(call: Call, body: MemberAdd, vo: str) -> dict[str, Any]:
    ms = MembershipService(call.ctx)
    v, user = VOService(call.ctx).get(vo), UserService(call.ctx).get(body.user)
    ms.add(call.actor, v, user, body.expires_on)
    return ms.read(call.actor, v, user)


@operation("GET", "/vos/<vo>/members/<user>", summary="Read one membership", tag=TAG)
def get_member(call: Call, vo: str, user: str) -> dict[str, Any]:
    return MembershipService(call.ctx).read(call.actor, VOService(call.ctx).get(vo),
                                            UserService(call.ctx).get(user))


def _transition_operation(action: str) -> None:
    def handler(call: Call, body: MemberTransition, vo: str, user: str) -> dict[str, Any]:
        ms = MembershipService(call.ctx)
        v, u = VOService(call.ctx).get(vo), UserService(call.ctx).get(user)
        ms.transition(call.actor, v, u, action, body.reason, body.expires_on)
        return ms.read(call.actor, v, u)

    handler.__name__ = f"{action}_member"
    operation("POST", f"/vos/<vo>/members/<user>/{action}",
              summary=f"{action.capitalize()} a membership (VO admin)", tag=TAG,
              body=MemberTransition)(handler)


for _action in ("approve", "reject", "suspend", "reinstate", "remove"):
    _transition_operation(_action)


@operation("PUT", "/vos/<vo>/members/<user>/expiry", summary="Set or clear the expiry date"
           " (VO admin)", tag=TAG, body=Expiry)
def set_expiry(call: Call, body: Expiry, vo: str, user: str) -> dict[str, Any]:
    ms = MembershipService(call.ctx)
    v, u = VOService(call.ctx).get(vo), UserService(call.ctx).get(user)
    ms.set_expiry(call.actor, v, u, body.expires_on)
    return ms.read(call.actor, v, u)


def _group_member(call: Call, vo: str, group: str, user: str, add: bool) -> None:
    vos, ms = VOService(call.ctx), MembershipService(call.ctx)
    v = vos.get(vo)
    g = vos.group(v, group_path(vo, group))
    u = UserService(call.ctx).get(user)
    (ms.add_to_group if add else ms.remove_from_group)(call.actor, v, g, u)


@operation("PUT", "/vos/<vo>/groups/<path:group>/members/<user>", summary="Put a member in a"
           " group and the groups above it (VO admin, group manager)", tag=TAG, status=204)
def add_group_member(call: Call, vo: str, group: str, user: str) -> None:
    _group_member(call, vo, group, user, True)


@operation("DELETE", "/vos/<vo>/groups/<path:group>/members/<user>", summary="Take a member"
           " out of a group and the groups below it (VO admin, group manager)", tag=TAG,
           status=204)
def remove_group_member(call: Call, vo: str, group: str, user: str) -> None:
    _group_member(call, vo, group, user, False)


def _role(call: Call, vo: str, user: str, role: str, held: bool) -> None:
    vos = VOService(call.ctx)
    v = vos.get(vo)
    MembershipService(call.ctx).set_role(call.actor, v, UserService(call.ctx).get(user),
                                         vos.role(v, role), held)


@operation("PUT", "/vos/<vo>/members/<user>/roles/<role>", summary="Assign a role (VO admin)",
           tag=TAG, status=204)
def assign_role(call: Call, vo: str, user: str, role: str) -> None:
    _role(call, vo, user, role, True)


@operation("DELETE", "/vos/<vo>/members/<user>/roles/<role>", summary="Revoke a role"
           " (VO admin)", tag=TAG, status=204)
def revoke_role(call: Call, vo: str, user: str, role: str) -> None:
    _role(call, vo, user, role, False)
