"""Helpers for the node agent's tests: answers shaped like the service's, a scripted
source for the sync loop, a tiny HTTP server for the client's edge cases, and the seeding
of a real VO service (``e2e.live``) with a node and its API key.

Everything that starts something (a server thread) is a context manager that stops and
joins it, so nothing outlives a test.
"""

from __future__ import annotations

import copy
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xos_node.errors import Unreachable

NODE = "wn1.grid.example"
REVISION = 10

# -- answers shaped like vo_service.sync.services ---------------------------------------


def user(name: str, uid: int, *, locked: bool = False, display_name: str | None = None,
         user_id: str | None = None) -> dict[str, Any]:
    return {"id": user_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name,
            "uid": uid, "gid": uid, "display_name": display_name or name.title(),
            "locked": locked}


def group(name: str, gid: int, path: str, members: list[str] | None = None
          ) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "gid": gid, "path": path,
                             "vo": path.split("/")[1]}
    if members is not None:
        entry["members"] = members
    return entry


def snapshot_answer(revision: int = REVISION, node: str = NODE) -> dict[str, Any]:
    """alice and bob in atlas, alice also in /atlas/analysis, carol locked."""
    return {
        "node": node, "revision": revision, "vos": ["atlas"],
        "users": [user("alice", 200000), user("bob", 200001),
                  user("carol", 200002, locked=True)],
        "groups": [group("atlas", 400000, "/atlas", ["alice", "bob"]),
                   group("atlas_analysis", 400001, "/atlas/analysis", ["alice"])],
    }


def changes_answer(since: int = REVISION, revision: int = REVISION + 1, node: str = NODE,
                   **lists: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"node": node, "since": since, "revision": revision,
                              "resync_required": False, "users": [], "groups": [],
                              "removed_groups": [], "members_added": [],
                              "members_removed": []}
    answer.update(lists)
    return answer


def resync_answer(since: int = REVISION, revision: int = REVISION + 1) -> dict[str, Any]:
    return {"node": NODE, "since": since, "revision": revision, "resync_required": True}


# -- a scripted service for the sync loop -------------------------------------------------
Reply = dict[str, Any] | Exception


@dataclass
class ScriptedSource:
    """Answers the loop's questions from queues (an Exception is raised instead), and
    records them. It raises the client's own error classes, so the loop sees exactly
    what ``NodeClient`` would give it."""

    snapshots: list[Reply] = field(default_factory=list)
    deltas: list[Reply] = field(default_factory=list)
    node: str = NODE
    asked: list[str] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        self.asked.append("snapshot")
        return self._next(self.snapshots)

    def changes(self, since: int, wait: int = 0) -> dict[str, Any]:
        self.asked.append(f"changes since {since}")
        return self._next(self.deltas)

    @staticmethod
    def _next(queue: list[Reply]) -> dict[str, Any]:
        if not queue:
            raise Unreachable("cannot reach the VO service at https://vo.example: test"
                              " script exhausted")
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return copy.deepcopy(reply)


# -- network helpers ----------------------------------------------------------------------
def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class TinyServer:
    base: str
    requests: list[dict[str, Any]]


@contextmanager
def tiny_server(handle: Handler, wrap: Callable[[socket.socket], socket.socket] | None = None
                ) -> Iterator[TinyServer]:
    """An HTTP server on 127.0.0.1 whose every GET is answered by ``handle``; records the
    path and headers of each request. ``wrap`` turns its socket into a TLS one."""
    seen: list[dict[str, Any]] = []

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- the stdlib's name
            seen.append({"path": self.path, "headers": dict(self.headers)})
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False  # server_close() joins the handler threads
    if wrap is not None:
        server.socket = wrap(server.socket)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              name="xos-node-tiny-http")
    thread.start()
    scheme = "https" if wrap is not None else "http"
    try:
        yield TinyServer(f"{scheme}://127.0.0.1:{server.server_port}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive()


def reply(status: int, body: bytes, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> Handler:
    """A handler that answers every request the same way."""
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(body)
    return handle


# -- the real service ---------------------------------------------------------------------
@dataclass
class Seeded:
    """What the live tests need to know of the seeded service."""

    node: str
    key: str


def seed_service(app: Any) -> None:
    """Users alice, bob, carol, dave; VOs atlas (alice, bob; alice in /atlas/analysis)
    and cms (carol); the node serves atlas and has an API key (in app.config)."""
    from vo_service.apikeys.services import ApiKeyService
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db
    from vo_service.memberships.services import MembershipService
    from vo_service.nodes.services import NodeService
    from vo_service.users.services import UserService
    from vo_service.vos.services import VOService

    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        users, vos, members = UserService(ctx), VOService(ctx), MembershipService(ctx)
        people = {n: users.create(system, n, n.title()) for n in ("alice", "bob", "carol",
                                                                   "dave")}
        atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        members.add(system, atlas, people["alice"])
        members.add(system, atlas, people["bob"])
        members.add(system, cms, people["carol"])
        members.add_to_group(system, atlas, analysis, people["alice"])
        node = NodeService(ctx).register(system, NODE, vos=["atlas"])
        app.config["TEST_NODE"] = Seeded(NODE, ApiKeyService(ctx).issue(system, node=node)[1])
        db.session.commit()


def change(app: Any, work: Callable[..., Any]) -> None:
    """Run ``work(ctx, system_actor)`` through the domain services and commit, as a VO
    admin's request would."""
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db

    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        work(ctx, Actor.system("pytest"))
        db.session.commit()
        db.session.remove()


def register_node(app: Any, name: str, vos: list[str]) -> str:
    """Register another node serving ``vos``; returns its API key."""
    from vo_service.apikeys.services import ApiKeyService
    from vo_service.nodes.services import NodeService

    keys: list[str] = []
    change(app, lambda ctx, system: keys.append(ApiKeyService(ctx).issue(
        system, node=NodeService(ctx).register(system, name, vos=vos))[1]))
    return keys[0]
