"""The demo VO that the README's first command starts with."""

from __future__ import annotations

from sqlalchemy import select

from .apikeys.services import ApiKeyService
from .authz import Actor
from .context import ServiceContext
from .memberships.services import MembershipService
from .nodes.services import NodeService
from .users.models import User
from .users.services import UserService
from .vos.services import VOService

DEMO_ADMIN = "xosadmin"


def build_demo(ctx: ServiceContext, actor: Actor) -> str:
    """Create (once) an admin, the VO ``demo`` with groups, roles, members and a node;
    return a fresh API key for the admin each time."""
    users, vos, ms = UserService(ctx), VOService(ctx), MembershipService(ctx)
    admin = ctx.session.scalar(select(User).where(User.username == DEMO_ADMIN))
    if admin is None:
        admin = users.create(actor, DEMO_ADMIN, "Demo service admin", "admin@demo.example",
                             is_service_admin=True)
        vo = vos.create(actor, "demo", "Demonstration VO")
        for path in ("/demo/analysis", "/demo/analysis/higgs", "/demo/production"):
            vos.create_group(actor, vo, path)
        vos.create_role(actor, vo, "production")
        vos.set_admin(actor, vo, admin, True)
        for name, display in (("alice", "Alice Grid"), ("bob", "Bob Cluster")):
            user = users.create(actor, name, display, f"{name}@demo.example")
            ms.add(actor, vo, user)
        ms.add_to_group(actor, vo, vos.group(vo, "/demo/analysis/higgs"), users.get("alice"))
        carol = users.create(actor, "carol", "Carol Pending", "carol@demo.example")
        carol_actor = Actor(label="user:carol", user_id=carol.id)
        ms.request(carol_actor, vo, carol, "I would like to run jobs")
        NodeService(ctx).register(actor, "node1.demo.example", "demo compute node", ["demo"])
    _, key = ApiKeyService(ctx).issue(actor, user=admin, description="demo admin key")
    return key
