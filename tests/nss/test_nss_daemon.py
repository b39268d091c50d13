"""``python -m nss_plugin``: start-up checks, reloads (poll and SIGHUP), clean shutdown.

The provider runs as a real process, with its socket in a private temp folder and its
"local" passwd/group files there too: the host's /run/systemd/userdb is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nss_fixtures import (
    LOCAL_GROUP,
    LOCAL_PASSWD,
    USERDB,
    atlas_snapshot,
    private_tmp,
    provider_argv,
    provider_env,
    snapshot,
    user,
    userdb_call,
    wait_until,
    write_json_atomically,
)

from nss_plugin import DEFAULT_SERVICE

TIMEOUT = 10


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    tmp: Path
    log: Path

    @property
    def socket(self) -> Path:
        return self.tmp / "userdb" / DEFAULT_SERVICE

    def lookup(self, name: str) -> dict[str, object]:
        [reply] = userdb_call(self.socket, "GetUserRecord", userName=name)
        return reply

    def resolves(self, name: str) -> bool:
        return "error" not in self.lookup(name)

    def conflicts(self) -> list[str]:
        data = json.loads((self.tmp / "conflicts.json").read_text())
        return [c["name"] for c in data["conflicts"]]


def start(tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = (tmp / "daemon.log").open("ab")
    with log:
        return subprocess.Popen(
            provider_argv(tmp / "snapshot.json", str(tmp / "userdb"), "--passwd",
                          str(tmp / "passwd"), "--group", str(tmp / "group"),
                          "--conflicts", str(tmp / "conflicts.json"), *extra),
            env=provider_env(), stdout=log, stderr=log)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def files() -> Iterator[Path]:
    with private_tmp() as tmp:
        (tmp / "passwd").write_text(LOCAL_PASSWD)
        (tmp / "group").write_text(LOCAL_GROUP)
        write_json_atomically(tmp / "snapshot.json", atlas_snapshot())
        yield tmp


@contextlib.contextmanager
def running(files: Path, *extra: str) -> Iterator[Daemon]:
    proc = start(files, *extra)
    daemon = Daemon(proc, files, files / "daemon.log")
    try:
        wait_until(lambda: daemon.socket.exists() or proc.poll() is not None, TIMEOUT,
                   "the socket")
        assert proc.poll() is None, daemon.log.read_text()
        yield daemon
    finally:
        stop(proc)


@pytest.fixture
def daemon(files: Path) -> Iterator[Daemon]:
    with running(files, "--poll", "0.1") as d:
        yield d


@pytest.fixture
def hup_daemon(files: Path) -> Iterator[Daemon]:
    with running(files, "--poll", "0") as d:
        yield d


def test_serves_and_stops_cleanly(daemon: Daemon) -> None:
    assert daemon.resolves("alice") and daemon.resolves("carol")
    assert daemon.conflicts() == []
    assert "serving 3 users, 0 refused, revision 42" in daemon.log.read_text()
    assert stop(daemon.proc) == os.EX_OK
    assert not daemon.socket.exists()  # removed: lookups fail at once, never hang


def test_reloads_when_the_snapshot_changes(daemon: Daemon) -> None:
    data = atlas_snapshot(revision=43)
    data["users"].append(user("dave", 200004))
    write_json_atomically(daemon.tmp / "snapshot.json", data)
    wait_until(lambda: "revision 43" in daemon.log.read_text(), TIMEOUT, "the reload")
    assert daemon.resolves("dave")


def test_reloads_when_local_accounts_change(daemon: Daemon) -> None:
    """Local accounts always win, also when they appear after the snapshot did."""
    with (daemon.tmp / "passwd").open("a") as fh:  # in place, as useradd does
        fh.write("alice:x:1500:1500::/home/alice:/bin/sh\n")
    wait_until(lambda: "1 refused" in daemon.log.read_text(), TIMEOUT, "the reload")
    assert not daemon.resolves("alice")
    assert daemon.conflicts() == ["alice"]
    assert "user alice (200001) refused: name belongs to local user" in \
        daemon.log.read_text()


def test_a_bad_snapshot_keeps_the_previous_view(daemon: Daemon) -> None:
    bad = atlas_snapshot(revision=44)
    bad["users"].append({"name": "root", "uid": 0, "gid": 0})
    write_json_atomically(daemon.tmp / "snapshot.json", bad)
    wait_until(lambda: "reload refused" in daemon.log.read_text(), TIMEOUT, "the refusal")
    assert "still serving revision 42" in daemon.log.read_text()
    assert "uid 0 is outside" in daemon.log.read_text()
    assert daemon.resolves("alice")
    (daemon.tmp / "snapshot.json").write_text("{not json")
    wait_until(lambda: "not complete JSON" in daemon.log.read_text(), TIMEOUT,
               "the second refusal")
    assert daemon.resolves("alice") and daemon.proc.poll() is None


def test_sighup_reloads(hup_daemon: Daemon) -> None:
    write_json_atomically(hup_daemon.tmp / "snapshot.json",
                          snapshot([user("erin", 200005)], revision=50))
    assert hup_daemon.resolves("alice")  # no polling: nothing changes on its own
    hup_daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "revision 50" in hup_daemon.log.read_text(), TIMEOUT, "the reload")
    assert hup_daemon.resolves("erin") and not hup_daemon.resolves("alice")
    [reply] = userdb_call(hup_daemon.socket, "GetMemberships", more=True)
    assert reply == {"error": f"{USERDB}.NoRecordFound", "parameters": {}}


def store_file(body: dict[str, object], digest: str | None = None) -> str:
    """The node agent's snapshot file, built from its documented shape (xos_node.store)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = digest or hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps({"format": "xos-node-snapshot", "version": 1, "sha256": digest,
                       "snapshot": body})


def test_serves_the_node_agents_store_file(files: Path) -> None:
    data = atlas_snapshot()
    data["users"][0]["display_name"] = "Alïce"  # the checksum covers ASCII-escaped JSON
    (files / "snapshot.json").write_text(store_file(data))
    with running(files, "--poll", "0.1") as daemon:
        assert daemon.resolves("alice")


@pytest.mark.parametrize(("content", "code", "message"), [
    (None, os.EX_NOINPUT, "cannot read"),
    ("[]", os.EX_DATAERR, "is not a JSON object"),
    ("{", os.EX_DATAERR, "not complete JSON"),
    ('{"users": [{"name": "al:ice", "uid": 200001}], "groups": []}', os.EX_DATAERR,
     "name 'al:ice' is not a POSIX-safe name"),
    (store_file(atlas_snapshot(), digest="0" * 64), os.EX_DATAERR,
     "does not match its checksum"),
    (store_file(atlas_snapshot()).replace('"version": 1', '"version": 2'), os.EX_DATAERR,
     "format version 2"),
])
def test_refuses_to_start_on_a_bad_snapshot(files: Path, content: str | None, code: int,
                                            message: str) -> None:
    path = files / "snapshot.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    proc = start(files)
    try:
        assert proc.wait(TIMEOUT) == code
    finally:
        stop(proc)
    assert message in (files / "daemon.log").read_text()
    assert not (files / "userdb" / DEFAULT_SERVICE).exists()


def test_refuses_a_bad_service_name(files: Path) -> None:
    proc = start(files, "--service", "io.systemd.Accounts")
    try:
        assert proc.wait(TIMEOUT) == os.EX_OSERR
    finally:
        stop(proc)
    assert "systemd's own namespace" in (files / "daemon.log").read_text()


def test_the_agents_journal_is_read_with_its_snapshot(tmp_path: Path) -> None:
    """A change the agent journalled beside its snapshot file is served too."""
    from nss_plugin.daemon import load_snapshot
    from xos_node.model import Snapshot
    from xos_node.store import SnapshotStore

    data = {**atlas_snapshot(), "node": "wn1.grid.example", "vos": ["atlas"]}
    store = SnapshotStore(tmp_path / "state")
    store.save(Snapshot.from_json(data))
    current = store.load()
    assert current is not None
    alice = next(u for u in data["users"] if u["name"] == "alice")
    answer = {"node": "wn1.grid.example", "since": 42, "revision": 43,
              "resync_required": False, "users": [{**alice, "locked": True}], "groups": [],
              "removed_groups": [], "members_added": [], "members_removed": []}
    store.append(current.apply_changes(answer), answer)
    served = load_snapshot(store.path)
    assert served["revision"] == 43
    assert next(u for u in served["users"] if u["name"] == "alice")["locked"] is True
