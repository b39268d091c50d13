"""xos-run and the shared storage layout, for real: jobs start with setuid/setgid and
exactly the user's VO groups, and a file written by one VO member is readable by a
member of the same VO and not by a member of another."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import xos_tokens
from xos_node.run import RunRefused, check, identity, run
from xos_node.storage import StorageError, lay_out

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")

ISSUER, NODE = "https://vo.example.org", "wn1.grid.example"
IDS = {name: str(uuid.uuid4()) for name in ("alice", "bob", "carol", "sid")}
SNAPSHOT: dict[str, Any] = {
    "node": NODE, "revision": 7, "vos": ["atlas", "cms"],
    "users": [
        {"id": IDS["alice"], "name": "alice", "uid": 260001, "gid": 260001, "locked": False},
        {"id": IDS["bob"], "name": "bob", "uid": 260002, "gid": 260002, "locked": False},
        {"id": IDS["carol"], "name": "carol", "uid": 260003, "gid": 260003, "locked": False},
        {"id": IDS["sid"], "name": "sid", "uid": 260004, "gid": 260004, "locked": True},
    ],
    "groups": [
        {"name": "atlas", "gid": 460000, "path": "/atlas", "vo": "atlas",
         "members": ["alice", "bob"]},
        {"name": "atlas_analysis", "gid": 460001, "path": "/atlas/analysis", "vo": "atlas",
         "members": ["alice", "bob"]},
        {"name": "cms", "gid": 460002, "path": "/cms", "vo": "cms", "members": ["carol"]},
    ],
}
KEY = xos_tokens.SigningKey.generate()
KEYS = xos_tokens.KeySet.from_keys([KEY])


def token(name: str, audience: str = NODE, **extra: Any) -> str:
    return xos_tokens.sign_access_token(
        KEY, issuer=ISSUER, subject=extra.pop("subject", IDS.get(name, str(uuid.uuid4()))),
        audience=audience, lifetime=dt.timedelta(minutes=5),
        claims={"preferred_username": name, **extra})


@pytest.fixture
def storage() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="xos-storage-"))
    os.chmod(root, 0o711)  # jobs of other users must traverse it
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_a_job_gets_exactly_the_users_vo_groups() -> None:
    who = check(token("alice"), SNAPSHOT, KEYS, node=NODE, issuer=ISSUER)
    assert who.groups == (460000, 460001) and who.vos == ("atlas",)
    assert run(who, ["sh", "-c", 'test "$(id -u)" = 260001 && test "$(id -G)" = '
                     '"260001 460000 460001" && test "$USER" = alice'], home="/nonexistent") == 0


def test_a_compact_node_token_runs_as_its_subject() -> None:
    """The VO service's tokens for a node carry no user name: ``sub`` decides."""
    compact = xos_tokens.sign_access_token(KEY, issuer=ISSUER, subject=IDS["carol"],
                                           audience=NODE, lifetime=dt.timedelta(minutes=5),
                                           claims={"client_id": "xos-login"})
    who = check(compact, SNAPSHOT, KEYS, node=NODE, issuer=ISSUER)
    assert (who.name, who.uid, who.groups) == ("carol", 260003, (460002,))


@pytest.mark.parametrize("presented, why", [
    (token("alice", audience="wn2.grid.example"), "not valid here"),
    (token("sid"), "no active membership"),
    (token("mallory"), "not a user of this node"),
    (token("alice", subject=str(uuid.uuid4())), "subject is not a user"),
    (token("alice", subject=IDS["carol"]), "user name is not its subject's"),
    ("not a token", "not valid here"),
])
def test_refused_jobs(presented: str, why: str) -> None:
    with pytest.raises(RunRefused, match=why):
        check(presented, SNAPSHOT, KEYS, node=NODE, issuer=ISSUER)


def test_node_policy_names_the_vos_that_may_run() -> None:
    with pytest.raises(RunRefused, match="no VO allowed"):
        check(token("carol"), SNAPSHOT, KEYS, node=NODE, issuer=ISSUER, allowed_vos=["atlas"])


def test_files_follow_vo_groups(storage: Path) -> None:
    made = lay_out(storage, SNAPSHOT["groups"])
    assert [str(d.path.relative_to(storage)) for d in made] == ["atlas", "cms",
                                                                 "atlas/analysis"]
    for directory in made:
        info = directory.path.stat()
        assert (info.st_uid, info.st_gid) == (0, directory.gid)
        assert stat.S_IMODE(info.st_mode) == 0o2770
    alice, bob, carol = (identity(SNAPSHOT, n) for n in ("alice", "bob", "carol"))
    target = storage / "atlas" / "analysis" / "result.txt"
    assert run(alice, ["sh", "-c", f"umask 007; echo higgs > {target}"]) == 0
    assert target.stat().st_gid == 460001  # setgid: the file keeps the group
    assert run(bob, ["sh", "-c", f"grep -q higgs {target}"]) == 0
    assert run(carol, ["sh", "-c", f"cat {target} 2>/dev/null"]) != 0
    assert run(carol, ["sh", "-c", f"ls {storage / 'atlas'} 2>/dev/null"]) != 0
    # laying out again repairs modes and changes nothing else
    os.chmod(storage / "cms", 0o777)
    again = lay_out(storage, SNAPSHOT["groups"])
    assert not any(d.created for d in again)
    assert stat.S_IMODE((storage / "cms").stat().st_mode) == 0o2770


@pytest.mark.parametrize("path", ["/../etc", "/atlas/../../etc", "atlas", "/Atlas", "/a/b\n"])
def test_hostile_paths_are_refused(storage: Path, path: str) -> None:
    with pytest.raises(StorageError):
        lay_out(storage, [{"path": path, "gid": 460000}])
    assert list(storage.iterdir()) == []


def test_a_symbolic_link_is_never_followed(storage: Path) -> None:
    outside = Path(tempfile.mkdtemp(prefix="xos-outside-"))
    try:
        (storage / "atlas").symlink_to(outside)
        with pytest.raises(StorageError, match="not a directory"):
            lay_out(storage, SNAPSHOT["groups"][:1])
        assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(outside)
