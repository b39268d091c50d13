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
