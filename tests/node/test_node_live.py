"""End to end: the node agent against the real VO service over HTTP on loopback.

The service is seeded and changed only through its domain services (as a VO admin's
requests would); the agent sees it only through ``NodeClient``. Each test registers its
own node and users, so the tests share the service but not their state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.live import Live, live_service
from node_fixtures import NODE, change, closed_port, register_node, seed_service

from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService
from xos_node import NodeClient, Refused, Snapshot, SnapshotStore, SyncLoop
from xos_node.sync import CHANGES, FAILED, SNAPSHOT, UNCHANGED


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed_service, prefix="xos-node-live-") as service:
        yield service


class Asking:
    """The real client, with a record of what the loop asked."""

    def __init__(self, client: NodeClient) -> None:
        self.client, self.node = client, client.node
        self.asked: list[str] = []

    def snapshot(self) -> dict[str, Any]:
        self.asked.append("snapshot")
        return self.client.snapshot()

    def changes(self, since: int, wait: int = 0) -> dict[str, Any]:
        self.asked.append(f"changes since {since}")
        return self.client.changes(since, wait)


def add_people(app: Any, vo: str, *names: str, member: bool = True) -> None:
    def work(ctx: Any, system: Any) -> None:
        for name in names:
            person = UserService(ctx).create(system, name, name.title())
            if member:
                MembershipService(ctx).add(system, VOService(ctx).get(vo), person)
    change(app, work)


def test_sync_deltas_outage_restart_and_resync(live: Live, tmp_path: Path) -> None:
    name = "wn-journey.grid.example"
    key = register_node(live.app, name, ["atlas"])
    add_people(live.app, "atlas", "erin")
    add_people(live.app, "atlas", "frank", member=False)
    store = SnapshotStore(tmp_path / "state")
    announced: list[Snapshot] = []
    source = Asking(NodeClient(live.base, name, key))
    loop = SyncLoop(source, store, announced.append)

    # 1. the first sync takes the snapshot
    first = loop.step()
    assert first.outcome == SNAPSHOT and first.error is None
    snap = loop.snapshot
    assert snap is not None and snap.vos == ("atlas",)
    assert {n: u.locked for n, u in snap.users.items()} == {
        "alice": False, "bob": False, "erin": False}
    assert snap.groups["atlas"].members == {"alice", "bob", "erin"}
    assert snap.groups["atlas_analysis"].members == {"alice"}
    assert snap.users["erin"].gid == snap.users["erin"].uid
    assert store.load() == snap and announced == [snap]

    # 2. a membership added (frank, also to a group) and another suspended (erin)
    def membership_changes(ctx: Any, system: Any) -> None:
        ms, vos, users = MembershipService(ctx), VOService(ctx), UserService(ctx)
        atlas = vos.get("atlas")
        ms.add(system, atlas, users.get("frank"))
        ms.add_to_group(system, atlas, vos.group(atlas, "/atlas/analysis"), users.get("frank"))
        ms.transition(system, atlas, users.get("erin"), "suspend")
    change(live.app, membership_changes)
    second = loop.step()
    assert second.outcome == CHANGES and second.revision is not None
    assert second.revision > snap.revision
    delta = loop.snapshot
    assert delta is not None and delta is not snap
    assert {n: u.locked for n, u in delta.users.items()} == {
        "alice": False, "bob": False, "erin": True, "frank": False}
    assert delta.groups["atlas"].members == {"alice", "bob", "frank"}
    assert delta.groups["atlas_analysis"].members == {"alice", "frank"}
    assert snap.groups["atlas"].members == {"alice", "bob", "erin"}  # the old one untouched
    assert store.load() == delta and announced[-1] is delta
    # what the deltas built is what a fresh snapshot says
    assert Snapshot.from_json(source.client.snapshot()).users == delta.users
    assert source.asked == ["snapshot", f"changes since {snap.revision}"]

    # 3. nothing new: the revision never goes back
    third = loop.step()
    assert third.outcome == UNCHANGED and third.revision >= second.revision  # type: ignore[operator]

    # 4. the service unreachable: the stored snapshot keeps serving, the failure is reported
    down = SyncLoop(NodeClient(f"http://127.0.0.1:{closed_port()}", name, key), store,
                    announced.append)
    assert down.snapshot == delta
    failed = down.step()
    assert failed.outcome == FAILED and "cannot reach the VO service" in (failed.error or "")
    assert failed.revision == delta.revision and down.snapshot == delta
    assert store.load() == delta

    # 5. the agent restarts on the same store: it continues from the stored revision
    change(live.app, lambda ctx, system: MembershipService(ctx).remove_from_group(
        system, VOService(ctx).get("atlas"),
        VOService(ctx).group(VOService(ctx).get("atlas"), "/atlas/analysis"),
        UserService(ctx).get("frank")))
    restarted_source = Asking(NodeClient(live.base, name, key))
    restarted = SyncLoop(restarted_source, store, announced.append)
    assert restarted.snapshot == delta
    fourth = restarted.step()
    assert fourth.outcome == CHANGES and fourth.revision > delta.revision  # type: ignore[operator]
    assert restarted_source.asked == [f"changes since {delta.revision}"]
    assert restarted.snapshot.groups["atlas_analysis"].members == {"alice"}  # type: ignore[union-attr]

    # 6. the node's VO set changes: resync_required, then a fresh snapshot in the same step
    change(live.app, lambda ctx, system: NodeService(ctx).set_vos(
        system, NodeService(ctx).get(name), ["atlas", "cms"]))
    fifth = restarted.step()
    assert fifth.outcome == SNAPSHOT
    assert restarted_source.asked[-2:] == [f"changes since {fourth.revision}", "snapshot"]
    widened = restarted.snapshot
    assert widened is not None and widened.vos == ("atlas", "cms")
    assert widened.groups["cms"].members == {"carol"} and not widened.users["carol"].locked
    assert widened.revision > fourth.revision  # type: ignore[operator]

    # 7. and when a VO is dropped, its users stay resolvable, locked (their files keep names)
    change(live.app, lambda ctx, system: NodeService(ctx).set_vos(
        system, NodeService(ctx).get(name), ["cms"]))
    assert restarted.step().outcome == SNAPSHOT
    narrowed = restarted.snapshot
    assert narrowed is not None and set(narrowed.groups) == {"cms"}
    assert {n for n, u in narrowed.users.items() if not u.locked} == {"carol"}
    assert {"alice", "bob", "erin", "frank"} <= set(narrowed.users)
    assert store.load() == narrowed


def test_a_long_polling_agent_learns_of_a_suspension_within_seconds(live: Live,
                                                                   tmp_path: Path) -> None:
    name = "wn-longpoll.grid.example"
    key = register_node(live.app, name, ["atlas"])
    add_people(live.app, "atlas", "gina")
    locked = threading.Event()

    def on_change(snapshot: Snapshot) -> None:
        if "gina" in snapshot.users and snapshot.users["gina"].locked:
            locked.set()

    loop = SyncLoop(NodeClient(live.base, name, key), SnapshotStore(tmp_path), on_change,
                    interval=0.2, wait=3)
    assert loop.step().outcome == SNAPSHOT
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), name="xos-node-longpoll-test")
    runner.start()
    try:
        time.sleep(0.5)  # the agent is now waiting in a long-poll
        suspended = time.monotonic()
        change(live.app, lambda ctx, system: UserService(ctx).set_status(
            system, UserService(ctx).get("gina"), "suspended"))
        assert locked.wait(10), "the suspension never arrived"
        assert time.monotonic() - suspended < 2.5
    finally:
        stop.set()
        runner.join(15)
    assert not runner.is_alive()


def test_the_stored_snapshot_outlives_the_service(instance_path: str, tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "state")
    with live_service(seed_service, prefix="xos-node-gone-") as service:
        client = NodeClient(service.base, NODE, service.app.config["TEST_NODE"].key)
        loop = SyncLoop(client, store, lambda s: None)
        assert loop.step().outcome == SNAPSHOT
        served = loop.snapshot
    # the service is gone: server stopped, database deleted, port closed
    result = loop.step()
    assert result.outcome == FAILED and "cannot reach" in (result.error or "")
    assert loop.snapshot is served
    announced: list[Snapshot] = []
    after_reboot = SyncLoop(client, store, announced.append)
    assert after_reboot.step().outcome == FAILED
    assert announced == [served]  # the node resolves its users before the service is back


def test_public_material(live: Live) -> None:
    client = NodeClient(live.base, NODE, live.app.config["TEST_NODE"].key)
    assert client.ca_chain().startswith(b"-----BEGIN CERTIFICATE-----")
    assert all(line.startswith(("ssh-ed25519 ", "ecdsa-sha2-")) for line in client.ssh_ca_keys())
    assert client.ssh_krl().startswith(b"SSHKRL\n\x00")
    assert client.jwks()["keys"]


def test_a_node_key_opens_only_its_own_node(live: Live) -> None:
    key = register_node(live.app, "wn-other.grid.example", ["atlas"])
    with pytest.raises(Refused, match="HTTP 403"):
        NodeClient(live.base, NODE, key).snapshot()
    with pytest.raises(Refused, match="HTTP 401"):
        NodeClient(live.base, NODE, "xos_0123456789abcdef_" + "A" * 43).changes(0)
    with pytest.raises(Refused, match="registered"):
        NodeClient(live.base, "wn-unknown.grid.example", key).snapshot()
