"""The agent's in-process NSS feed (``xos_node.agent.NssFeed``): each snapshot the sync
loop announces is served at once on the userdb socket, and a local account added to
/etc/passwd later takes its name back at the next look (local accounts always win)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nss_fixtures import LOCAL_GROUP, LOCAL_PASSWD, atlas_snapshot, private_tmp, userdb_call

from nss_plugin.varlink import DEFAULT_SERVICE
from xos_node.agent import NssFeed
from xos_node.model import Snapshot

BYPASS = "SYSTEMD_BYPASS_USERDB"


def _names(socket: Path) -> set[str]:
    replies = userdb_call(socket, "GetUserRecord", more=True)
    return {r["parameters"]["record"]["userName"] for r in replies
            if "record" in r.get("parameters", {})}


@pytest.fixture(autouse=True)
def _own_environment() -> Iterator[None]:
    """The feed sets SYSTEMD_BYPASS_USERDB for its process (right for the agent): keep it
    from reaching the lookups of later tests, which this process starts."""
    saved = os.environ.get(BYPASS)
    yield
    if saved is None:
        os.environ.pop(BYPASS, None)
    else:
        os.environ[BYPASS] = saved


def test_snapshots_are_served_and_local_accounts_win() -> None:
    with private_tmp(0o755) as tmp:
        passwd, group = tmp / "passwd", tmp / "group"
        passwd.write_text(LOCAL_PASSWD)
        group.write_text(LOCAL_GROUP)
        feed = NssFeed(socket_dir=str(tmp / "userdb"), service=DEFAULT_SERVICE,
                       passwd=passwd, group=group, conflicts=tmp / "conflicts.json")
        socket = tmp / "userdb" / DEFAULT_SERVICE
        try:
            assert _names(socket) == set()  # served from the start, empty
            data = atlas_snapshot()
            feed(Snapshot.from_json({**data, "node": "wn1.grid.example",
                                     "vos": ["atlas"]}))
            served = _names(socket)
            assert "alice" in served
            # a successor: the view follows what it touched (alice suspended, dave joins)
            first = Snapshot.from_json({**data, "node": "wn1.grid.example", "vos": ["atlas"]})
            alice = first.users["alice"].to_json()
            nxt = first.apply_changes({
                "node": "wn1.grid.example", "since": first.revision,
                "revision": first.revision + 3, "resync_required": False,
                "users": [{**alice, "locked": True},
                          {**alice, "id": str(uuid.uuid4()), "name": "dave",
                           "uid": 200099, "gid": 200099}],
                "groups": [], "removed_groups": [],
                "members_added": [{"user": "dave", "group": "atlas"}],
                "members_removed": []})
            feed(nxt)
            [locked] = userdb_call(socket, "GetUserRecord", userName="alice")
            assert locked["parameters"]["record"]["locked"] is True
            [dave] = userdb_call(socket, "GetMemberships", userName="dave", more=True)
            assert dave["parameters"]["groupName"] == "atlas"
            served = _names(socket)
            assert "dave" in served
            feed.check_local_files()  # nothing changed: nothing rebuilt, nothing refused
            assert json.loads((tmp / "conflicts.json").read_text())["conflicts"] == []
            with passwd.open("a") as fh:  # an operator adds a local alice, as useradd does
                fh.write("alice:x:1500:1500::/home/alice:/bin/sh\n")
            feed.check_local_files()
            assert _names(socket) == served - {"alice"}
            refused = json.loads((tmp / "conflicts.json").read_text())["conflicts"]
            assert [c["name"] for c in refused] == ["alice"]
        finally:
            feed.close()
        assert not socket.exists()
        assert DEFAULT_SERVICE in os.environ[BYPASS].split(":")  # its own lookups skip it
