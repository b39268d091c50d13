"""Long-polling for changes against the real service over HTTP: a node that waits
learns of a membership suspension within a second, and a wait with nothing to report
ends on time."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from vo_service.apikeys.services import ApiKeyService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from .live import Live, live_service


def seed(app: Flask) -> None:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        atlas = VOService(ctx).create(system, "atlas")
        VOService(ctx).create(system, "cms")
        for name in ("alice", "bob"):
            MembershipService(ctx).add(system, atlas, UserService(ctx).create(system, name,
                                                                              name.title()))
        node = NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        app.config["TEST_NODE_KEY"] = ApiKeyService(ctx).issue(system, node=node)[1]
        db.session.commit()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(seed, prefix="xos-longpoll-") as service:
        yield service


def changes(live: Live, since: int, wait: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{live.base}/api/v1/nodes/wn1.grid.example/changes?since={since}&wait={wait}",
        headers={"Authorization": f"Bearer {live.app.config['TEST_NODE_KEY']}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())  # type: ignore[no-any-return]


def change(live: Live, work: Any) -> None:
    with live.app.app_context():
        ctx = ServiceContext.build(db.session, live.app.config)
        work(ctx, Actor.system("pytest"))
        db.session.commit()
        db.session.remove()


def test_a_waiting_node_learns_of_a_suspension_within_a_second(live: Live) -> None:
    now = changes(live, 0, 0)["revision"]
    answers: list[tuple[float, dict[str, Any]]] = []
    started = time.monotonic()
    poller = threading.Thread(target=lambda: answers.append(
        (time.monotonic(), changes(live, now, 20))))
    poller.start()
    time.sleep(1.0)
    assert not answers  # nothing changed yet: the node is still waiting
    # a change to a VO the node does not serve does not wake it
    change(live, lambda ctx, actor: VOService(ctx).create_group(
        actor, VOService(ctx).get("cms"), "/cms/tracker"))
    time.sleep(0.6)
    assert not answers
    suspended_at = time.monotonic()
    change(live, lambda ctx, actor: MembershipService(ctx).transition(
        actor, VOService(ctx).get("atlas"), UserService(ctx).get("bob"), "suspend"))
    poller.join(10)
    assert answers, "the long poll did not answer"
    answered_at, answer = answers[0]
    assert answered_at - suspended_at < 1.0
    assert answered_at - started < 20
    assert [u["name"] for u in answer["users"]] == ["bob"] and answer["users"][0]["locked"]
    assert answer["revision"] > now


def test_a_wait_with_nothing_to_say_ends_on_time(live: Live) -> None:
    now = changes(live, 0, 0)["revision"]
    started = time.monotonic()
    answer = changes(live, now, 2)
    assert 1.9 <= time.monotonic() - started < 4
    assert answer["users"] == [] and answer["members_added"] == []


def test_waiting_nodes_share_one_watcher(live: Live) -> None:
    """Ten nodes waiting three seconds cost what one watcher's looks cost, not ten
    nodes' polls: the statements run stay near one request's worth per node plus the
    watcher's few looks (polling per node ran about 600 here)."""
    now = changes(live, 0, 0)["revision"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with live.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        waiting = [threading.Thread(target=changes, args=(live, now, 3)) for _ in range(10)]
        for thread in waiting:
            thread.start()
        for thread in waiting:
            thread.join(30)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    looks = [s for s in statements if s.startswith("SELECT counters.value")]
    # the watcher's looks (every 0.25 s) and each node's two answers (on arrival and at
    # the end of its wait): not one look per node every 0.25 s (about 120 here)
    assert len(looks) <= 3 / 0.25 + 2 + 10 * 2, len(looks)
    assert len(statements) < 250, len(statements)


def test_a_new_vo_set_wakes_the_waiting_node(live: Live) -> None:
    """A node's new VO set moves the revision without touching any VO's accounts: the
    watcher wakes every waiting node for it, and this one is told to take a snapshot."""
    now = changes(live, 0, 0)["revision"]
    answers: list[tuple[float, dict[str, Any]]] = []
    poller = threading.Thread(target=lambda: answers.append(
        (time.monotonic(), changes(live, now, 20))))
    poller.start()
    time.sleep(1.0)
    assert not answers
    changed_at = time.monotonic()
    change(live, lambda ctx, actor: NodeService(ctx).set_vos(
        actor, NodeService(ctx).get("wn1.grid.example"), ["atlas", "cms"]))
    poller.join(25)
    assert answers and answers[0][1]["resync_required"] is True
    assert answers[0][0] - changed_at < 2.0
