from __future__ import annotations

from typing import Any

from flask import current_app

from ..audit.services import AuditService, event_record
from ..users.services import UserService, user_record
from ..vos.services import VOService, group_record, role_record, vo_record
from .registry import Call, operation
from .schemas import AuditQuery, GroupCreate, PageQuery, RoleCreate, VOCreate, VOUpdate

TAG = "vos"


def group_path(vo: str, group: str) -> str:
    return f"/{vo}/{group}"


@operation("POST", "/vos", summary="Create a VO (service admin)", tag=TAG, body=VOCreate,
           status=201)
def create_vo(call: Call, body: VOCreate) -> dict[str, Any]:
    vos = VOService(call.ctx)
    vo = vos.create(call.actor, body.name, body.description)
    return {**vo_record(vo), "group": group_record(vos.root_group(vo))}


@operation("GET", "/vos", summary="List VOs", tag=TAG, query=PageQuery, paged=True)
def list_vos(call: Call) -> dict[str, Any]:
    rows, nxt = VOService(call.ctx).page(call.query.after, call.query.limit)
    return {"items": [vo_record(v) for v in rows], "next": nxt}


@operation("GET", "/vos/<vo>", summary="Read a VO with its groups and roles", tag=TAG)
def get_vo(call: Call, vo: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    v = vos.get(vo)
    return {**vo_record(v), "groups": [group_record(g) for g in vos.groups(v)],
            "roles": [role_record(v, r) for r in vos.roles(v)],
            "admins": [u.username for u in vos.admins(v)]}


@operation("PATCH", "/vos/<vo>", summary="Change a VO's description or certificate lifetime"
           " policy (VO admin)", tag=TAG, body=VOUpdate)
def update_vo(call: Call, body: VOUpdate, vo: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    return vo_record(vos.update(call.actor, vos.get(vo), description=body.description,
                                cert_hours=body.cert_hours,
                                cert_hours_max=current_app.config["CERT_USER_MAX_HOURS"]))


@operation("POST", "/vos/<vo>/groups", summary="Create a group (VO admin)", tag=TAG,
           body=GroupCreate, status=201)
def create_group(call: Call, body: GroupCreate, vo: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    return group_record(vos.create_group(call.actor, vos.get(vo), body.path, body.description))


@operation("GET", "/vos/<vo>/groups", summary="List a VO's groups", tag=TAG)
def list_groups(call: Call, vo: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    return {"items": [group_record(g) for g in vos.groups(vos.get(vo))]}


@operation("DELETE", "/vos/<vo>/groups/<path:group>", summary="Delete a group and its"
           " subgroups (VO admin); gids stay retired", tag=TAG, status=204)
def delete_group(call: Call, vo: str, group: str) -> None:
    vos = VOService(call.ctx)
    vos.delete_group(call.actor, vos.get(vo), group_path(vo, group))


@operation("GET", "/vos/<vo>/groups/<path:group>/managers", summary="A group's managers"
           " (VO admins, group managers)", tag=TAG)
def list_managers(call: Call, vo: str, group: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    v = vos.get(vo)
    call.ctx.authz.require_vo_reader(call.actor, v)  # user records: not for everyone
    return {"items": [user_record(u) for u in vos.managers(vos.group(v, group_path(vo, group)))]}


def _set_manager(call: Call, vo: str, group: str, user: str, flag: bool) -> None:
    vos = VOService(call.ctx)
    v = vos.get(vo)
    vos.set_manager(call.actor, v, vos.group(v, group_path(vo, group)),
                    UserService(call.ctx).get(user), flag)


@operation("PUT", "/vos/<vo>/groups/<path:group>/managers/<user>",
           summary="Make a user a group manager (VO admin)", tag=TAG, status=204)
def add_manager(call: Call, vo: str, group: str, user: str) -> None:
    _set_manager(call, vo, group, user, True)


@operation("DELETE", "/vos/<vo>/groups/<path:group>/managers/<user>",
           summary="Withdraw a group manager (VO admin)", tag=TAG, status=204)
def remove_manager(call: Call, vo: str, group: str, user: str) -> None:
    _set_manager(call, vo, group, user, False)


@operation("POST", "/vos/<vo>/roles", summary="Create a role (VO admin)", tag=TAG,
           body=RoleCreate, status=201)
def create_role(call: Call, body: RoleCreate, vo: str) -> dict[str, Any]:
    vos = VOService(call.ctx)
    v = vos.get(vo)
    return role_record(v, vos.create_role(call.actor, v, body.name, body.description))


@operation("PUT", "/vos/<vo>/admins/<user>", summary="Name a VO admin (service admin)",
           tag=TAG, status=204)
def add_vo_admin(call: Call, vo: str, user: str) -> None:
    vos = VOService(call.ctx)
    vos.set_admin(call.actor, vos.get(vo), UserService(call.ctx).get(user), True)


@operation("DELETE", "/vos/<vo>/admins/<user>", summary="Withdraw a VO admin (service admin)",
           tag=TAG, status=204)
def remove_vo_admin(call: Call, vo: str, user: str) -> None:
    vos = VOService(call.ctx)
    vos.set_admin(call.actor, vos.get(vo), UserService(call.ctx).get(user), False)


@operation("GET", "/audit", summary="Audit events, newest first (service admin, or VO admin"
           " with ?vo=)", tag="audit", query=AuditQuery, paged=True)
def list_audit(call: Call) -> dict[str, Any]:
    q = call.query
    vo = VOService(call.ctx).get(q.vo) if q.vo else None
    rows, nxt = AuditService(call.ctx).page(call.actor, vo, q.after, q.limit)
    return {"items": [event_record(e) for e in rows], "next": nxt}
