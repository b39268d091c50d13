"""The agent's NSS view follows each change instead of being rebuilt: a view updated with
what a successor snapshot touched must equal a view built whole from that snapshot, for
any chain of changes, including entries that local accounts refuse."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from nss_plugin.accounts import AccountView, LocalAccounts
from xos_node.model import Snapshot

NODE = "wn1.grid.example"
# local accounts that some VO entries will collide with (and so be refused)
LOCAL = LocalAccounts(users_by_name={"root": 0, "zed": 1500, "ops": 1501},
                      users_by_uid={0: "root", 1500: "zed", 1501: "ops", 200777: "legacy"},
                      groups_by_name={"root": 0, "sudo": 27, "atlas_ops": 1600},
                      groups_by_gid={0: "root", 27: "sudo", 1600: "atlas_ops",
                                     400777: "legacy"})


def state(view: AccountView) -> dict[str, Any]:
    """Everything a lookup can see, in comparable form."""
    users = {u.name: u for u in view.users()}
    groups = {g.name: (g.gid, sorted(g.members), g.path, g.vo, g.private)
              for g in view.groups()}
    return {
        "revision": view.revision, "users": users, "groups": groups,
        "by_uid": {u.uid: view.user_by_uid(u.uid) for u in users.values()},
        "by_gid": {g: view.group_by_gid(t[0]).name for g, t in groups.items()},  # type: ignore[union-attr]
        "groups_of": {name: view.groups_of(name) for name in users},
        "memberships": sorted(view.memberships()),
        "conflicts": sorted((c.kind, c.name, c.number) for c in view.conflicts),
    }


class World:
    """A node's snapshot and a source of valid random changes to it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_uid, self.next_gid, self.revision = 200000, 400000, 10
        self.clashed = False
        users = [self.new_user() for _ in range(12)]
        groups = [{"name": "atlas", "gid": self.gid(), "path": "/atlas", "vo": "atlas",
                   "members": sorted(u["name"] for u in users)}]
        self.snapshot = Snapshot.from_json({"node": NODE, "revision": self.revision,
                                            "vos": ["atlas"], "users": users,
                                            "groups": groups})

    def gid(self) -> int:
        self.next_gid += 1
        return self.next_gid if self.next_gid != 400777 or self.rng.random() < 0.5 \
            else self.gid()

    def new_user(self, name: str | None = None) -> dict[str, Any]:
        self.next_uid += 1
        clash = self.rng.random() < 0.05 and not self.clashed  # a local uid, once
        self.clashed = self.clashed or clash
        uid = 200777 if clash else self.next_uid
        name = name or f"u{self.next_uid}"
        return {"id": str(uuid.uuid4()), "name": name, "uid": uid, "gid": uid,
                "display_name": name.title(), "locked": False}

    def changes(self) -> dict[str, Any]:
        rng, snap = self.rng, self.snapshot
        users: list[dict[str, Any]] = []
        for old in rng.sample(sorted(snap.users.values(), key=lambda u: u.name), 2):
            users.append({**old.to_json(), "locked": rng.random() < 0.5,
                          "display_name": f"{old.name} {rng.randrange(99)}"})
        taken = set(snap.users) | set(snap.groups)
        for name in ("zed", "ops", f"n{self.next_uid}"):
            if rng.random() < 0.4 and name not in taken:
                entry = self.new_user(name)
                if entry["uid"] not in {u.uid for u in snap.users.values()}:
                    users.append(entry)
                    taken.add(name)
        groups: list[dict[str, Any]] = []
        if rng.random() < 0.5:
            name = rng.choice(["atlas_ops", f"atlas_g{self.next_gid}"])
            if name not in taken:
                groups.append({"name": name, "gid": self.gid(),
                               "path": f"/atlas/{name.split('_')[1]}", "vo": "atlas"})
        removable = [g for g in snap.groups if g != "atlas"]
        removed = [rng.choice(removable)] if removable and rng.random() < 0.3 else []
        alive = [g for g in snap.groups if g not in removed] + [g["name"] for g in groups]
        everyone = list(snap.users) + [u["name"] for u in users if u["name"] not in snap.users]
        added, dropped = [], []
        for _ in range(3):
            user, group = rng.choice(everyone), rng.choice(alive)
            members = snap.groups[group].members if group in snap.groups else ()
            pair = {"user": user, "group": group}
            if user in members:
                if pair not in dropped:
                    dropped.append(pair)
            elif pair not in added:
                added.append(pair)
        self.revision += rng.randrange(1, 4)  # answers without changes move it on too
        return {"node": NODE, "since": snap.revision, "revision": self.revision,
                "resync_required": False, "users": users, "groups": groups,
                "removed_groups": removed, "members_added": added,
                "members_removed": dropped}


@pytest.mark.parametrize("seed", range(12))
def test_an_updated_view_equals_a_view_built_whole(seed: int) -> None:
    world = World(random.Random(seed))
    view = AccountView.from_snapshot(world.snapshot, LOCAL)
    assert state(view) == state(AccountView(world.snapshot.to_json(), LOCAL))
    for _ in range(25):
        world.snapshot = world.snapshot.apply_changes(world.changes())
        view = view.updated(world.snapshot)
        whole = AccountView(world.snapshot.to_json(), LOCAL)
        assert state(view) == state(whole)
    assert view.conflicts  # the chain did meet local accounts
