"""The read-only queries behind the portal's group pages: a group's members a page at a
time (VO admins and the group's managers only), the active member count of each group,
and the groups a user manages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from portal_support import seeded_portal

from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import InvalidInput, PermissionDenied
from vo_service.memberships.services import MembershipService
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

SYSTEM = Actor.system("pytest")


def actor(user: User) -> Actor:
    return Actor(label=f"user:{user.username}", user_id=user.id)


@pytest.fixture
def ctx() -> Iterator[ServiceContext]:
    """atlas with /atlas/analysis and /atlas/analysis/higgs; alice, bob (approved) and
    mallory active members; bob and mallory in /atlas/analysis; bob suspended."""
    app: Flask
    with seeded_portal() as app, app.app_context():
        context = ServiceContext.build(db.session, app.config)
        vos, ms, users = VOService(context), MembershipService(context), UserService(context)
        atlas = vos.get("atlas")
        analysis = vos.create_group(SYSTEM, atlas, "/atlas/analysis")
        vos.create_group(SYSTEM, atlas, "/atlas/analysis/higgs")
        ms.transition(SYSTEM, atlas, users.get("bob"), "approve")
        ms.add(SYSTEM, atlas, users.get("mallory"))
        for name in ("bob", "mallory"):
            ms.add_to_group(SYSTEM, atlas, analysis, users.get(name))
        ms.transition(SYSTEM, atlas, users.get("bob"), "suspend")
        db.session.commit()
        yield context
        db.session.remove()


def test_a_groups_members_come_a_page_at_a_time(ctx: ServiceContext) -> None:
    vos, ms, users = VOService(ctx), MembershipService(ctx), UserService(ctx)
    atlas = vos.get("atlas")
    analysis = vos.group(atlas, "/atlas/analysis")
    rows, following = ms.group_page(SYSTEM, atlas, analysis, limit=1)
    assert [r["user"] for r in rows] == ["bob"] and following == "bob"
    assert rows[0]["status"] == "suspended"  # a subgroup lists every status
    rows, following = ms.group_page(SYSTEM, atlas, analysis, after=following, limit=1)
    assert [r["user"] for r in rows] == ["mallory"] and following is None
    # the root group: the active members only
    rows, _ = ms.group_page(SYSTEM, atlas, vos.root_group(atlas))
    assert [r["user"] for r in rows] == ["alice", "mallory"]
    assert ms.group_page(SYSTEM, atlas, vos.group(atlas, "/atlas/analysis/higgs")) == ([], None)
    with pytest.raises(InvalidInput, match="limit must be between"):
        ms.group_page(SYSTEM, atlas, analysis, limit=0)
    # a manager of the group may read it; another VO's admin and a plain member may not
    mallory = users.get("mallory")
    vos.set_manager(SYSTEM, atlas, analysis, mallory, True)
    rows, _ = ms.group_page(actor(mallory), atlas, vos.group(atlas, "/atlas/analysis/higgs"))
    assert rows == []
    for name in ("carol", "bob"):
        with pytest.raises(PermissionDenied, match="only an admin of VO 'atlas' or a manager"):
            ms.group_page(actor(users.get(name)), atlas, analysis)
    with pytest.raises(PermissionDenied):
        ms.group_page(actor(mallory), atlas, vos.root_group(atlas))


def test_active_member_counts_per_group(ctx: ServiceContext) -> None:
    vos = VOService(ctx)
    atlas = vos.get("atlas")
    counts = vos.active_member_counts(atlas)
    # root: alice and mallory (bob is suspended); /atlas/analysis: mallory
    assert counts == {vos.root_group(atlas).id: 2, vos.group(atlas, "/atlas/analysis").id: 1}
    assert vos.active_member_counts(vos.get("cms")) == {vos.root_group(vos.get("cms")).id: 0}


def test_the_groups_a_user_manages(ctx: ServiceContext) -> None:
    vos, users = VOService(ctx), UserService(ctx)
    atlas, cms = vos.get("atlas"), vos.get("cms")
    carol = users.get("carol")
    assert vos.managed_groups(carol) == []
    vos.set_manager(SYSTEM, atlas, vos.group(atlas, "/atlas/analysis/higgs"), carol, True)
    vos.set_manager(SYSTEM, cms, vos.root_group(cms), carol, True)
    assert [g.path for g in vos.managed_groups(carol)] == ["/atlas/analysis/higgs", "/cms"]
    vos.delete_group(SYSTEM, atlas, "/atlas/analysis")
    assert [g.path for g in vos.managed_groups(carol)] == ["/cms"]  # deleted groups go


def test_the_vos_a_user_administers(ctx: ServiceContext) -> None:
    vos, users = VOService(ctx), UserService(ctx)
    assert [vo.name for vo in vos.administered_by(users.get("alice"))] == ["atlas"]
    vos.set_admin(SYSTEM, vos.get("cms"), users.get("alice"), True)
    assert [vo.name for vo in vos.administered_by(users.get("alice"))] == ["atlas", "cms"]
    assert vos.administered_by(users.get("bob")) == []


def test_the_admins_of_a_page_of_vos(ctx: ServiceContext) -> None:
    vos, users = VOService(ctx), UserService(ctx)
    atlas, cms = vos.get("atlas"), vos.get("cms")
    vos.set_admin(SYSTEM, atlas, users.get("mallory"), True)
    found = vos.admins_of([atlas, cms])
    assert {vo_id: [u.username for u in admins] for vo_id, admins in found.items()} == {
        atlas.id: ["alice", "mallory"], cms.id: ["carol"]}
    assert found[atlas.id] == vos.admins(atlas) and vos.admins_of([]) == {}
