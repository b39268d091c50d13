"""End to end: real glibc lookups through nss-systemd, answered by ``python -m nss_plugin``.

Each test gets a private node (NodeNamespace): its own nsswitch.conf (``files systemd``)
and a private folder bind-mounted over /run/systemd/userdb, so the host's /etc and
/run/systemd/userdb are never touched. Every lookup runs inside the node with a timeout:
a provider that hangs would show up as a failure here, not as a stalled test run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from e2e.nodens import NodeNamespace, missing_requirements
from nss_fixtures import ProviderNode, atlas_snapshot, provider_node, user, wait_until

pytestmark = pytest.mark.skipif(
    bool(missing_requirements("setpriv", "id")),
    reason=str(missing_requirements("setpriv", "id")))

BOUND = 2.0  # seconds for a lookup that misses: nss-systemd stalls 45 s on a hung provider

PYTHON_LOOKUPS = r"""
import grp, json, pwd
alice = pwd.getpwnam("alice")
print(json.dumps({
    "pw": [alice.pw_name, alice.pw_uid, alice.pw_gid, alice.pw_gecos, alice.pw_dir,
           alice.pw_shell],
    "by_uid": pwd.getpwuid(200001).pw_name,
    "gr": [grp.getgrnam("atlas_analysis").gr_gid, grp.getgrnam("atlas").gr_mem],
    "by_gid": grp.getgrgid(400001).gr_name,
    "carol": pwd.getpwnam("carol").pw_uid,
}))
"""


def children_of(pid: int) -> list[int]:
    """Host PIDs whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def ok(node: ProviderNode, *argv: str) -> str:
    result = node.run(argv)
    assert result.returncode == 0, f"{argv}: {result.returncode} {result.stderr}\n{node.log}"
    return result.stdout.strip()


def missing(node: ProviderNode, *argv: str) -> None:
    """The lookup finds nothing (getent exits 2), promptly."""
    start = time.monotonic()
    result = node.run(argv)
    assert result.returncode == 2, f"{argv}: {result.returncode} {result.stdout}"
    assert time.monotonic() - start < BOUND


def test_vo_accounts_resolve_through_glibc() -> None:
    with provider_node(atlas_snapshot()) as node:
        alice = "alice:x:200001:200001:Alice Liddell:/home/alice:/bin/bash"
        assert ok(node, "getent", "passwd", "alice") == alice
        assert ok(node, "getent", "passwd", "200001") == alice
        assert ok(node, "getent", "group", "atlas_analysis") == "atlas_analysis:x:400001:alice"
        assert ok(node, "getent", "group", "400000") == "atlas:x:400000:alice,bob"
        assert ok(node, "getent", "group", "alice") == "alice:x:200001:"  # private group
        assert ok(node, "id", "alice") == ("uid=200001(alice) gid=200001(alice) "
                                           "groups=200001(alice),400000(atlas),"
                                           "400001(atlas_analysis)")
        assert ok(node, "id", "-Gn", "bob") == "bob atlas"
        missing(node, "getent", "passwd", "nosuch")
        missing(node, "getent", "group", "400999")


def test_python_lookups_inside_the_node() -> None:
    with provider_node(atlas_snapshot()) as node:
        result = json.loads(ok(node, "/usr/bin/python3", "-I", "-c", PYTHON_LOOKUPS))
    assert result == {
        "pw": ["alice", 200001, 200001, "Alice Liddell", "/home/alice", "/bin/bash"],
        "by_uid": "alice", "gr": [400001, ["alice", "bob"]], "by_gid": "atlas_analysis",
        "carol": 200003}


def test_locked_user_still_resolves_but_is_expired_for_pam() -> None:
    """Suspended users keep an owner's name for their files; the shadow answer (what
    pam_unix's account stage reads) says expired, and "*" means no password, not locked."""
    with provider_node(atlas_snapshot()) as node:
        assert ok(node, "getent", "passwd", "carol") == \
            "carol:x:200003:200003:Carol:/home/carol:/bin/bash"
        assert ok(node, "id", "carol") == "uid=200003(carol) gid=200003(carol) " \
                                          "groups=200003(carol)"
        assert ok(node, "getent", "shadow", "carol") == "carol:!*::::::1:"
        assert ok(node, "getent", "shadow", "alice") == "alice:*:::::::"


def test_ordinary_users_resolve_too() -> None:
    """glibc looks up inside the calling process: the socket must be open to everyone."""
    with provider_node(atlas_snapshot()) as node:
        result = node.as_nobody(["getent", "passwd", "alice"])
        assert result.stdout.startswith("alice:x:200001:200001:"), result.stderr
        assert node.as_nobody(["id", "-Gn", "alice"]).stdout.strip() == \
            "alice atlas atlas_analysis"
        assert node.as_nobody(["getent", "group", "atlas"]).stdout.strip() == \
            "atlas:x:400000:alice,bob"
        shadow = node.as_nobody(["getent", "shadow", "alice"])  # like /etc/shadow: hidden
        assert (shadow.returncode, shadow.stdout) == (2, "")


def local_accounts_first(ns: NodeNamespace) -> None:
    ns.add_local_user("bob", 5000, 5000, create_home=False)
    ns.add_local_user("opsadm", 5001, 5001, groups=[("projects", 400001)], create_home=False)


def test_local_accounts_win() -> None:
    with provider_node(atlas_snapshot(), setup=local_accounts_first) as node:
        assert ok(node, "getent", "passwd", "bob") == "bob:x:5000:5000::/home/bob:/bin/sh"
        missing(node, "getent", "passwd", "200002")  # the VO's bob is refused, not renamed
        assert ok(node, "id", "bob") == "uid=5000(bob) gid=5000(bob) groups=5000(bob)"
        # The VO group with the local group's gid is refused; the local one resolves.
        assert ok(node, "getent", "group", "400001") == "projects:x:400001:opsadm"
        missing(node, "getent", "group", "atlas_analysis")
        assert ok(node, "getent", "group", "atlas") == "atlas:x:400000:alice"
        assert ok(node, "id", "-Gn", "alice") == "alice atlas"
        log = node.log
        assert "user bob (200002) refused: name belongs to local user 'bob'" in log
        assert "group atlas_analysis (400001) refused: gid 400001 belongs to local group " \
               "'projects'" in log


def test_big_groups_resolve_without_members() -> None:
    """Above --max-listed-members, getgrnam lists no members (nss-systemd 252 merges them
    in quadratic time), yet every member still gets the group at login (initgroups)."""
    with provider_node(atlas_snapshot(), extra_args=("--max-listed-members", "1")) as node:
        assert ok(node, "getent", "group", "atlas") == "atlas:x:400000:"
        assert ok(node, "getent", "group", "atlas_analysis") == "atlas_analysis:x:400001:alice"
        assert ok(node, "id", "-Gn", "alice") == "alice atlas atlas_analysis"
        assert ok(node, "id", "-Gn", "bob") == "bob atlas"


def test_enumeration_lists_vo_accounts_after_local_ones() -> None:
    with provider_node(atlas_snapshot()) as node:
        passwd = ok(node, "getent", "passwd").splitlines()
        group = ok(node, "getent", "group").splitlines()
    names = [line.split(":")[0] for line in passwd]
    assert names[0] == "root" and names[-3:] == ["alice", "bob", "carol"]
    assert "atlas_analysis:x:400001:alice" in group


def test_a_new_snapshot_reaches_glibc() -> None:
    with provider_node(atlas_snapshot()) as node:
        data = atlas_snapshot(revision=43)
        data["users"].append(user("dave", 200004, display_name="Dave"))
        data["groups"][0]["members"].append("dave")
        node.write_snapshot(data)
        wait_until(lambda: node.run(["getent", "passwd", "dave"]).returncode == 0, 10,
                   "dave to resolve")
        assert ok(node, "id", "-Gn", "dave") == "dave atlas"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_nothing_resolves_after_the_provider_stops(how: str) -> None:
    """Stopped cleanly the socket is gone; killed, a stale socket refuses connections.
    Either way lookups answer "not found" at once, and local accounts still resolve."""
    with provider_node(atlas_snapshot()) as node:
        assert ok(node, "getent", "passwd", "alice")
        if how == "SIGTERM":
            node.ns.stop(node.proc)
            assert not node.socket_path.exists()
        else:
            # The provider is nsenter's child (nsenter forks to enter the PID namespace).
            for pid in children_of(node.proc.pid):
                os.kill(pid, signal.SIGKILL)
            node.proc.wait(10)
            assert node.socket_path.exists()  # stale
        missing(node, "getent", "passwd", "alice")
        missing(node, "getent", "passwd", "200001")
        missing(node, "getent", "group", "atlas")
        assert ok(node, "id", "-un", "root") == "root"
