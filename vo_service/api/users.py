from __future__ import annotations

from typing import Any

from ..apikeys.services import ApiKeyService
from ..auth.passwords import PasswordService
from ..memberships.services import MembershipService
from ..users.services import UserService, user_record
from .registry import Call, operation
from .schemas import (
    ApiKeyCreate,
    PasswordChange,
    ServiceAdminFlag,
    UserCreate,
    UserQuery,
    UserUpdate,
)

TAG = "users"


@operation("GET", "/me", summary="The calling user", tag=TAG)
def me(call: Call) -> dict[str, Any]:
    user_id = call.ctx.authz.require_user(call.actor)
    return user_record(UserService(call.ctx).get(str(user_id)))


@operation("POST", "/users", summary="Create a user (service admin)", tag=TAG, body=UserCreate,
           status=201)
def create_user(call: Call, body: UserCreate) -> dict[str, Any]:
    return user_record(UserService(call.ctx).create(call.actor, **body.model_dump()))


@operation("GET", "/users", summary="List or search users by username or e-mail prefix",
           tag=TAG, query=UserQuery, paged=True)
def list_users(call: Call) -> dict[str, Any]:
    q = call.query
    rows, nxt = UserService(call.ctx).search(call.actor, q.q, q.status, q.after, q.limit)
    return {"items": [user_record(u) for u in rows], "next": nxt}


@operation("GET", "/users/<user>", summary="Read a user by id or username", tag=TAG)
def get_user(call: Call, user: str) -> dict[str, Any]:
    return user_record(UserService(call.ctx).read(call.actor, user))


@operation("PATCH", "/users/<user>", summary="Change display name or e-mail", tag=TAG,
           body=UserUpdate)
def update_user(call: Call, body: UserUpdate, user: str) -> dict[str, Any]:
    users = UserService(call.ctx)
    return user_record(users.update(call.actor, users.get(user), **body.model_dump()))


def _status_operation(action: str, status: str) -> None:
    def handler(call: Call, user: str) -> dict[str, Any]:
        users = UserService(call.ctx)
        return user_record(users.set_status(call.actor, users.get(user), status))

    handler.__name__ = f"{action}_user"
    operation("POST", f"/users/<user>/{action}", summary=f"{action.capitalize()} a user"
              " (service admin)", tag=TAG)(handler)


for _action, _status in (("suspend", "suspended"), ("reinstate", "active"),
                         ("delete", "deleted")):
    _status_operation(_action, _status)


@operation("PUT", "/users/<user>/service-admin", summary="Grant or withdraw service admin",
           tag=TAG, body=ServiceAdminFlag)
def set_service_admin(call: Call, body: ServiceAdminFlag, user: str) -> dict[str, Any]:
    users = UserService(call.ctx)
    return user_record(users.set_service_admin(call.actor, users.get(user),
                                               body.is_service_admin))


@operation("PUT", "/users/<user>/password", summary="Set a VO password (the user, or a"
           " service admin)", tag=TAG, body=PasswordChange, status=204)
def set_password(call: Call, body: PasswordChange, user: str) -> None:
    PasswordService(call.ctx).set(call.actor, UserService(call.ctx).get(user), body.password)


@operation("GET", "/users/<user>/memberships", summary="A user's VO memberships", tag=TAG)
def user_memberships(call: Call, user: str) -> dict[str, Any]:
    target = UserService(call.ctx).get(user)
    return {"items": MembershipService(call.ctx).of_user(call.actor, target)}


@operation("POST", "/users/<user>/api-keys", summary="Issue an API key (shown once)", tag=TAG,
           body=ApiKeyCreate, status=201)
def issue_user_key(call: Call, body: ApiKeyCreate, user: str) -> dict[str, Any]:
    target = UserService(call.ctx).get(user)
    key, secret = ApiKeyService(call.ctx).issue(call.actor, user=target,
                                                description=body.description)
    return {"key_id": key.key_id, "api_key": secret}


@operation("DELETE", "/api-keys/<key_id>", summary="Revoke an API key", tag=TAG, status=204)
def revoke_key(call: Call, key_id: str) -> None:
    ApiKeyService(call.ctx).revoke(call.actor, key_id)
