"""The one reader of the node's state directory: what it trusts and what it refuses.

Why so many refusals: the helpers run as root and these files decide who logs in as
whom. Anything another user could have written, or that does not validate, is refused
whole, with a message that names the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pam_fixtures import ALICE, BOB, CAROL, ISSUER, NODE, run_helper, snapshot_doc, write_state

import pam_module.state as node_state
from pam_module import StateError, load_state
from pam_module.state import DEFAULT_STATE_DIR, state_directory
from xos_tokens import SigningKey

if os.geteuid() != 0:
    pytest.skip("state files must be root-owned: run as root", allow_module_level=True)

KEY = SigningKey.generate()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return write_state(tmp_path / "state", keys=[KEY])


def test_a_good_state_directory(state: Path) -> None:
    loaded = load_state(state)
    assert (loaded.node, loaded.issuer, loaded.revision) == (NODE, ISSUER, 42)
    assert set(loaded.users) == {"alice", "bob", "carol"}
    alice = loaded.users["alice"]
    assert (alice.id, alice.uid, alice.gid, alice.locked) == (ALICE["id"], 200001, 200001,
                                                              False)
    assert loaded.users["bob"].locked
    assert KEY.kid in loaded.keys
    assert loaded.ca_file is None
    with pytest.raises(TypeError):
        loaded.users["mallory"] = alice  # type: ignore[index]


def test_the_directory_comes_from_option_environment_or_default() -> None:
    assert state_directory({}) == DEFAULT_STATE_DIR
    assert state_directory({"XOS_NODE_STATE": "/srv/xos"}) == Path("/srv/xos")
    assert state_directory({"XOS_NODE_STATE": "/srv/xos"}, "/opt/x") == Path("/opt/x")
    with pytest.raises(StateError, match="absolute path"):
        state_directory({"XOS_NODE_STATE": "relative/dir"})


@pytest.mark.parametrize("name", ["snapshot.json", "jwks.json", "node.json"])
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o622])
def test_group_or_world_writable_files_are_refused(state: Path, name: str, mode: int) -> None:
    (state / name).chmod(mode)
    with pytest.raises(StateError, match=f"refusing .*{name}: writable by group or others"):
        load_state(state)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o400])
def test_stricter_modes_are_fine(state: Path, mode: int) -> None:
    for name in ("snapshot.json", "jwks.json", "node.json"):
        (state / name).chmod(mode)
    assert load_state(state).users


def test_files_not_owned_by_root_are_refused(state: Path) -> None:
    os.chown(state / "snapshot.json", 1234, 0)
    with pytest.raises(StateError, match="owned by uid 1234, not root"):
        load_state(state)


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_writable_directory_is_refused(state: Path, mode: int) -> None:
    """Whoever may write the directory may swap the files."""
    state.chmod(mode)
    with pytest.raises(StateError, match="refusing the state directory"):
        load_state(state)


def test_a_directory_owned_by_someone_else_is_refused(state: Path) -> None:
    os.chown(state, 1234, 1234)
    with pytest.raises(StateError, match="owned by uid 1234"):
        load_state(state)


def test_symlinks_and_special_files_are_refused(state: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    (state / "snapshot.json").rename(real)
    (state / "snapshot.json").symlink_to(real)
    with pytest.raises(StateError, match="cannot open .*snapshot.json"):
        load_state(state)
    (state / "snapshot.json").unlink()
    os.mkfifo(state / "snapshot.json", 0o644)  # a reader would block on a FIFO
    with pytest.raises(StateError, match="not a regular file"):
        load_state(state)


def test_missing_files_say_which(state: Path) -> None:
    (state / "jwks.json").unlink()
    with pytest.raises(StateError, match=r"jwks.json does not exist \(is the node agent"):
        load_state(state)


def test_a_bad_state_refuses_every_xos_login(state: Path) -> None:
    (state / "snapshot.json").chmod(0o666)
    run = run_helper("account", state)
    assert run.code == os.EX_CONFIG and "writable by group or others" in run.log


def _rewrite(state: Path, name: str, document: Any) -> None:
    path = state / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))


@pytest.mark.parametrize("name, document, message", [
    ("snapshot.json", '{"node": "wn1.grid.example", "users": [', "not complete JSON"),
    ("snapshot.json", "[]", "not a JSON object"),
    ("snapshot.json", {**snapshot_doc([ALICE]), "node": "wn2.grid.example"},
     "is for node 'wn2.grid.example', but this node is 'wn1.grid.example'"),
    ("snapshot.json", {**snapshot_doc([ALICE]), "revision": "42"}, "not a revision number"),
    ("snapshot.json", {**snapshot_doc([ALICE]), "users": {}}, "'users' is not a list"),
    ("snapshot.json", snapshot_doc([ALICE, ALICE]), "'alice' is listed twice"),
    ("snapshot.json", snapshot_doc([{**ALICE, "name": "Alice"}]), "unusable name 'Alice'"),
    ("snapshot.json", snapshot_doc([{**ALICE, "name": "al/ce"}]), "unusable name"),
    ("snapshot.json", snapshot_doc([{**ALICE, "uid": 0}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "gid": 0}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "uid": 65534}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "uid": 2**32}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "uid": True}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "uid": "200001"}]), "unusable uid or gid"),
    ("snapshot.json", snapshot_doc([{**ALICE, "locked": "no"}]), "no true/false 'locked'"),
    ("snapshot.json", snapshot_doc([{**ALICE, "id": ""}]), "no usable global id"),
    ("snapshot.json", snapshot_doc([{**ALICE, "display_name": 7}]), "display name"),
    ("snapshot.json", {**snapshot_doc([ALICE]), "users": ["alice"]}, "user 0 is not an object"),
    ("jwks.json", {"keys": []}, "no non-empty 'keys' list"),
    ("jwks.json", {"keys": [{**KEY.public_jwk(), "d": "secret"}]}, "jwks.json"),
    ("node.json", {"issuer": ISSUER}, "'node' must be the node's name"),
    ("node.json", {"node": NODE}, "'issuer' must be the VO service's URL"),
    ("node.json", {"node": NODE, "issuer": "ftp://vo"}, "'issuer' must be"),
    ("node.json", {"node": NODE, "issuer": ISSUER, "ca_file": "ca.pem"}, "absolute path"),
])
def test_content_that_does_not_validate_is_refused_whole(state: Path, name: str,
                                                          document: Any, message: str
                                                          ) -> None:
    _rewrite(state, name, document)
    with pytest.raises(StateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_state(state).keys  # noqa: B018 -- the key set is built when a token needs it


def test_oversized_files_are_refused_unread(state: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setitem(node_state.MAX_BYTES, "node.json", 10)
    with pytest.raises(StateError, match="node.json: larger than 10 bytes"):
        load_state(state)


def test_an_optional_ca_file(state: Path) -> None:
    _rewrite(state, "node.json", {"node": NODE, "issuer": ISSUER, "ca_file": "/etc/x/ca.pem"})
    assert load_state(state).ca_file == Path("/etc/x/ca.pem")


def test_groups_are_left_to_the_nss_side(state: Path) -> None:
    """PAM reads users only; a group list the NSS provider would refuse does not stop a
    login decision (the NSS provider reports it)."""
    doc = snapshot_doc([ALICE, BOB, CAROL])
    doc["groups"] = [{"name": "odd", "gid": "not a number"}]
    _rewrite(state, "snapshot.json", doc)
    assert load_state(state).users["alice"].uid == 200001


def _store_snapshot(state: Path) -> Path:
    """Replace the bare snapshot by the agent's own store file, written by the agent's code."""
    from xos_node.model import Snapshot
    from xos_node.store import SnapshotStore

    (state / "snapshot.json").unlink()
    state.chmod(0o700)  # the agent's store keeps its directory 0700
    SnapshotStore(state).save(Snapshot.from_json(snapshot_doc([ALICE, BOB, CAROL])))
    return state / "snapshot.json"


def test_the_agents_store_file_is_read(state: Path) -> None:
    path = _store_snapshot(state)
    assert path.read_bytes().startswith(b'{"format":"xos-node-snapshot"')
    loaded = load_state(state)
    assert (loaded.revision, sorted(loaded.users)) == (42, ["alice", "bob", "carol"])
    assert loaded.users["bob"].locked and not loaded.users["alice"].locked


def test_an_altered_store_file_is_refused_whole(state: Path) -> None:
    path = _store_snapshot(state)
    # unlocking bob in place, as an attacker with write access to the disk image might
    path.write_bytes(path.read_bytes().replace(b'"locked":true', b'"locked":false'))
    with pytest.raises(StateError, match="does not match its checksum"):
        load_state(state)
    path.write_bytes(path.read_bytes()[:-40])  # truncated by a crash
    with pytest.raises(StateError, match="snapshot.json"):
        load_state(state)


def test_the_agents_journal_is_applied(state: Path) -> None:
    """A suspension the agent journalled (without rewriting snapshot.json) counts at once."""
    from xos_node.store import SnapshotStore

    _store_snapshot(state)
    store = SnapshotStore(state)
    current = store.load()
    assert current is not None
    answer = {"node": NODE, "since": 42, "revision": 45, "resync_required": False,
              "users": [{**ALICE, "locked": True}], "groups": [], "removed_groups": [],
              "members_added": [], "members_removed": []}
    store.append(current.apply_changes(answer), answer)
    assert (state / "snapshot.journal").exists()
    loaded = load_state(state)
    assert loaded.users["alice"].locked and loaded.revision == 45
    journal = state / "snapshot.journal"
    journal.write_bytes(journal.read_bytes().replace(b'"locked":true', b'"locked":false'))
    with pytest.raises(StateError, match="does not match its checksum"):
        load_state(state)


# -- the running agent is asked first -----------------------------------------------------
@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Path]:
    """The agent's userdb server (as ``xos-node run`` serves it) where alice is locked,
    though the snapshot files still say otherwise: what the agent says must win."""
    from nss_plugin.accounts import AccountView
    from nss_plugin.varlink import UserdbServer

    view = AccountView(snapshot_doc([{**ALICE, "locked": True}, CAROL], revision=50))
    directory = tmp_path / "userdb"
    directory.mkdir(mode=0o755)
    with UserdbServer(view, socket_dir=str(directory)) as server:
        yield Path(server.path)


def test_the_agent_decides_in_one_lookup(state: Path, agent: Path) -> None:
    loaded = load_state(state, "alice", agent=agent)
    assert loaded.source == "agent" and loaded.revision == 50
    assert list(loaded.users) == ["alice"] and loaded.users["alice"].locked
    assert loaded.users["alice"].id == ALICE["id"]
    assert load_state(state, "bob", agent=agent).users == {}  # the agent does not know bob
    # without a user name, or without the agent, the snapshot files decide
    assert load_state(state).source == "snapshot"
    files = load_state(state, "alice", agent=agent.parent / "absent")
    assert files.source == "snapshot" and not files.users["alice"].locked


def test_an_agent_socket_that_root_did_not_make_is_not_asked(state: Path,
                                                             agent: Path) -> None:
    os.chown(agent, 1234, 1234, follow_symlinks=False)
    assert load_state(state, "alice", agent=agent).source == "snapshot"
    os.chown(agent, 0, 0, follow_symlinks=False)
    agent.parent.chmod(0o777)  # a directory anyone could have planted it in
    assert load_state(state, "alice", agent=agent).source == "snapshot"
    agent.parent.chmod(0o755)
    assert load_state(state, "alice", agent=agent).source == "agent"


def test_an_agent_for_another_node_is_refused(state: Path, agent: Path) -> None:
    node = json.loads((state / "node.json").read_text())
    (state / "node.json").write_text(json.dumps({**node, "node": "wn2.grid.example"}))
    with pytest.raises(StateError, match="serves 'wn1.grid.example'"):
        load_state(state, "alice", agent=agent)


def test_a_silent_agent_costs_its_timeout_then_the_files_decide(state: Path,
                                                                tmp_path: Path) -> None:
    import socket
    import time

    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)  # accepts (the kernel does), never answers
        started = time.monotonic()
        loaded = load_state(state, "alice", agent=path)
    assert loaded.source == "snapshot"
    assert time.monotonic() - started < node_state.AGENT_TIMEOUT + 1
