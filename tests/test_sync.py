"""The node account view: snapshot, changes since a revision, and a replica that applies
them must always equal a fresh snapshot."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from support import actor_for

from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.sync.revisions import RevisionLog
from vo_service.sync.services import SyncService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService


class Replica:
    """What a node keeps: users, groups and memberships, applied as upserts."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.revision = snapshot["revision"]
        self.users = {u["name"]: u for u in snapshot["users"]}
        self.groups = {g["name"]: {k: v for k, v in g.items() if k != "members"}
                       for g in snapshot["groups"]}
        self.members = {(m, g["name"]) for g in snapshot["groups"] for m in g["members"]}

    def apply(self, delta: dict[str, Any]) -> None:
        assert not delta["resync_required"]
        for u in delta["users"]:
            self.users[u["name"]] = u
        for g in delta["groups"]:
            self.groups[g["name"]] = g
        for name in delta["removed_groups"]:
            self.groups.pop(name, None)
            self.members = {(u, g) for u, g in self.members if g != name}
        for m in delta["members_added"]:
            self.members.add((m["user"], m["group"]))
        for m in delta["members_removed"]:
            self.members.discard((m["user"], m["group"]))
        self.revision = delta["revision"]

    def same_as(self, snapshot: dict[str, Any]) -> None:
        fresh = Replica(snapshot)
        assert self.users == fresh.users
        assert self.groups == fresh.groups
        assert sorted(self.members) == sorted(fresh.members)


@pytest.fixture
def world(ctx, system, users):
    """Two VOs, one node serving atlas only."""
    vos, ms = VOService(ctx), MembershipService(ctx)
    atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
    vos.create_group(system, atlas, "/atlas/analysis")
    vos.create_group(system, atlas, "/atlas/analysis/higgs")
    people = {n: users.make(n) for n in ("alice", "bob", "carol", "dave")}
    ms.add(system, atlas, people["alice"])
    ms.add(system, atlas, people["bob"])
    ms.add(system, cms, people["carol"])
    ms.add_to_group(system, atlas, vos.group(atlas, "/atlas/analysis"), people["alice"])
    node = NodeService(ctx).register(system, "n1.example", vos=["atlas"])
    db.session.commit()
    return {"atlas": atlas, "cms": cms, "node": node, **people}


def snapshot(ctx, system, node):
    return SyncService(ctx).snapshot(system, node)


def changes(ctx, system, node, since):
    return SyncService(ctx).changes(system, node, since)


def test_snapshot_holds_only_the_nodes_vos(ctx, system, world):
    snap = snapshot(ctx, system, world["node"])
    assert snap["vos"] == ["atlas"]
    assert [u["name"] for u in snap["users"]] == ["alice", "bob"]
    assert {g["path"] for g in snap["groups"]} == {"/atlas", "/atlas/analysis",
                                                   "/atlas/analysis/higgs"}
    groups = {g["path"]: g for g in snap["groups"]}
    assert groups["/atlas"]["members"] == ["alice", "bob"]
    assert groups["/atlas/analysis"]["members"] == ["alice"]
    assert groups["/atlas/analysis/higgs"]["members"] == []
    alice = next(u for u in snap["users"] if u["name"] == "alice")
    assert alice == {"id": str(world["alice"].id), "name": "alice", "uid": world["alice"].uid,
                     "gid": world["alice"].uid, "display_name": "Alice", "locked": False}


def test_members_who_are_not_active_stay_resolvable_but_locked(ctx, system, world):
    ms = MembershipService(ctx)
    ms.transition(system, world["atlas"], world["bob"], "suspend")
    ms.request(actor_for(world["dave"]), world["atlas"], world["dave"])
    db.session.commit()
    snap = snapshot(ctx, system, world["node"])
    locked = {u["name"]: u["locked"] for u in snap["users"]}
    assert locked == {"alice": False, "bob": True, "dave": True}
    assert next(g for g in snap["groups"] if g["path"] == "/atlas")["members"] == ["alice"]
    ms.transition(system, world["atlas"], world["bob"], "remove")
    UserService(ctx).set_status(system, world["alice"], "suspended")
    db.session.commit()
    snap = snapshot(ctx, system, world["node"])
    assert {u["name"]: u["locked"] for u in snap["users"]} == {
        "alice": True, "bob": True, "dave": True}
    assert all(g["members"] == [] for g in snap["groups"])


def test_changes_since_carry_only_what_changed(ctx, system, world, users):
    node = world["node"]
    start = snapshot(ctx, system, node)["revision"]
    assert changes(ctx, system, node, start)["users"] == []
    MembershipService(ctx).add(system, world["atlas"], world["dave"])
    db.session.commit()
    delta = changes(ctx, system, node, start)
    assert delta["revision"] == start + 1
    assert [u["name"] for u in delta["users"]] == ["dave"]
    assert delta["members_added"] == [{"user": "dave", "group": "atlas"}]
    assert delta["members_removed"] == [] and delta["groups"] == []


def test_changes_in_other_vos_never_reach_the_node(ctx, system, world, users):
    node = world["node"]
    start = snapshot(ctx, system, node)["revision"]
    vos, ms = VOService(ctx), MembershipService(ctx)
    vos.create_group(system, world["cms"], "/cms/secret")
    ms.add(system, world["cms"], world["dave"])
    ms.transition(system, world["cms"], world["carol"], "suspend")
    db.session.commit()
    assert RevisionLog(ctx.session).current() == start + 3
    delta = changes(ctx, system, node, start)
    assert delta["revision"] == start + 3
    assert (delta["users"], delta["groups"], delta["members_added"], delta["members_removed"]
            ) == ([], [], [], [])


def test_group_deletion_removes_group_and_its_members(ctx, system, world):
    node = world["node"]
    start = snapshot(ctx, system, node)["revision"]
    VOService(ctx).delete_group(system, world["atlas"], "/atlas/analysis")
    db.session.commit()
    delta = changes(ctx, system, node, start)
    assert sorted(delta["removed_groups"]) == ["atlas_analysis", "atlas_analysis_higgs"]
    assert delta["members_removed"] == [{"user": "alice", "group": "atlas_analysis"}]


def test_resync_required_when_vo_set_changes_or_node_is_ahead(ctx, system, world):
    node = world["node"]
    start = snapshot(ctx, system, node)["revision"]
    assert changes(ctx, system, node, start + 5)["resync_required"] is True
    NodeService(ctx).set_vos(system, node, ["atlas", "cms"])
    db.session.commit()
    assert changes(ctx, system, node, start)["resync_required"] is True
    snap = snapshot(ctx, system, node)
    assert [u["name"] for u in snap["users"]] == ["alice", "bob", "carol"]
    assert changes(ctx, system, node, snap["revision"])["resync_required"] is False


def test_delta_size_follows_the_change_not_the_population(ctx, system, world, users):
    ms = MembershipService(ctx)
    for i in range(60):
        ms.add(system, world["atlas"], users.make(f"bulk{i}"))
    db.session.commit()
    node = world["node"]
    start = snapshot(ctx, system, node)["revision"]
    ms.transition(system, world["atlas"], world["bob"], "suspend")
    db.session.commit()
    delta = changes(ctx, system, node, start)
    assert [u["name"] for u in delta["users"]] == ["bob"]
    assert delta["members_removed"] == [{"user": "bob", "group": "atlas"}]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replica_applying_deltas_equals_a_fresh_snapshot(ctx, system, world, users, seed):
    """Random operations; after each sync the node's replica equals a fresh snapshot."""
    rng = random.Random(seed)
    vos, ms, us = VOService(ctx), MembershipService(ctx), UserService(ctx)
    atlas, node = world["atlas"], world["node"]
    replica = Replica(snapshot(ctx, system, node))
    people = [world[n] for n in ("alice", "bob", "carol", "dave")]
    people += [users.make(f"p{seed}x{i}") for i in range(4)]
    group_paths = ["/atlas/analysis", "/atlas/analysis/higgs"]

    def op_add() -> None:
        ms.add(system, atlas, rng.choice(people))

    def op_transition() -> None:
        ms.transition(system, atlas, rng.choice(people),
                      rng.choice(["suspend", "reinstate", "remove", "approve"]))

    def op_group() -> None:
        ms.add_to_group(system, atlas, vos.group(atlas, rng.choice(group_paths)),
                        rng.choice(people))

    def op_ungroup() -> None:
        ms.remove_from_group(system, atlas, vos.group(atlas, rng.choice(group_paths)),
                             rng.choice(people))

    def op_new_group() -> None:
        path = f"/atlas/g{rng.randrange(1000)}"
        vos.create_group(system, atlas, path)
        group_paths.append(path)

    def op_delete_group() -> None:
        path = rng.choice(group_paths[2:] or ["/atlas/analysis/higgs"])
        vos.delete_group(system, atlas, path)
        group_paths[:] = [p for p in group_paths if not p.startswith(path)]

    def op_user_status() -> None:
        us.set_status(system, rng.choice(people), rng.choice(["suspended", "active"]))

    def op_rename() -> None:
        us.update(system, rng.choice(people), display_name=f"Name {rng.randrange(99)}")

    def op_expire() -> None:
        person = rng.choice(people)
        ms.set_expiry(system, atlas, person, dt.date.today() + dt.timedelta(days=1))
        ms.expire_due(system, on=dt.date.today() + dt.timedelta(days=2))

    operations = [op_add, op_transition, op_group, op_ungroup, op_new_group, op_delete_group,
                  op_user_status, op_rename, op_expire]
    from vo_service.errors import XosError

    applied = 0
    for step in range(60):
        try:
            rng.choice(operations)()
            db.session.commit()
            applied += 1
        except XosError:
            db.session.rollback()
        if step % 5 == 4:
            replica.apply(changes(ctx, system, node, replica.revision))
            replica.same_as(snapshot(ctx, system, node))
    assert applied >= 15  # the walk really changed things
