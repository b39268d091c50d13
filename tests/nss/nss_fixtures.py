"""Shared helpers of the nss_plugin tests: snapshots, local files, a Varlink client, nodes.

Not a conftest (tests/ has its own, and this folder must not shadow it); test files import
what they need. Everything here cleans up after itself: temp folders are removed, servers
and provider processes stopped, namespaces torn down, so nothing outlives a test.

The Varlink client is written from the protocol (JSON object + NUL, ``continues``), not
from the server's code, so that the two cannot share a misunderstanding.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nss_plugin import DEFAULT_SERVICE, AccountView, LocalAccounts, UserdbServer

REPO = Path(__file__).resolve().parents[2]
USERDB = "io.systemd.UserDatabase"
NSSWITCH = "passwd: files systemd\ngroup: files systemd\nshadow: files systemd\n"

LOCAL_PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
admin:x:1000:1000:Site admin:/home/admin:/bin/bash
"""
LOCAL_GROUP = """root:x:0:
sudo:x:27:admin
wheel:x:10:
nogroup:x:65534:
admin:x:1000:
hpcops:x:4000:admin
"""


# -- snapshots ---------------------------------------------------------------------------------
def user(name: str, uid: int, *, locked: bool = False, display_name: str | None = None,
         **extra: Any) -> dict[str, Any]:
    """One snapshot user as the VO service serves it (gid = uid)."""
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"xos:{name}")), "name": name,
            "uid": uid, "gid": uid, "display_name": display_name or name.title(),
            "locked": locked, **extra}


def group(name: str, gid: int, members: Sequence[str] = (), *, path: str | None = None,
          vo: str = "atlas") -> dict[str, Any]:
    """One snapshot VO group."""
    return {"name": name, "gid": gid, "path": path or f"/{name.replace('_', '/')}", "vo": vo,
            "members": list(members)}


def snapshot(users: Sequence[dict[str, Any]] = (), groups: Sequence[dict[str, Any]] = (),
             *, revision: int = 42) -> dict[str, Any]:
    return {"node": "wn1.grid.example", "revision": revision, "vos": ["atlas"],
            "users": list(users), "groups": list(groups)}


def atlas_snapshot(revision: int = 42) -> dict[str, Any]:
    """The brief's example plus a locked user and a second member."""
    return snapshot(
        [user("alice", 200001, display_name="Alice Liddell"), user("bob", 200002),
         user("carol", 200003, locked=True)],
        [group("atlas", 400000, ["alice", "bob"], path="/atlas"),
         group("atlas_analysis", 400001, ["alice"], path="/atlas/analysis")],
        revision=revision)


def big_snapshot(n_users: int, *, first_uid: int = 200000) -> dict[str, Any]:
    """``n_users`` users (u0000001...), all in atlas, every tenth in atlas_prod."""
    users = [user(f"u{i:07d}", first_uid + i) for i in range(n_users)]
    names = [u["name"] for u in users]
    return snapshot(users, [group("atlas", 400000, names, path="/atlas"),
                            group("atlas_prod", 400001, names[::10], path="/atlas/prod")])


def local_accounts(passwd: str = LOCAL_PASSWD, group_text: str = LOCAL_GROUP
                   ) -> LocalAccounts:
    """LocalAccounts parsed from passwd/group text through the real file parser."""
    with private_tmp() as tmp:
        (tmp / "passwd").write_text(passwd)
        (tmp / "group").write_text(group_text)
        return LocalAccounts.from_files(tmp / "passwd", tmp / "group")


# -- temp folders ------------------------------------------------------------------------------
@contextlib.contextmanager
def private_tmp(mode: int = 0o700) -> Iterator[Path]:
    """A short temp folder under /tmp (AF_UNIX paths are limited to 107 bytes), removed
    with everything in it when the block ends."""
    path = Path(tempfile.mkdtemp(prefix="xos-nss-", dir="/tmp"))
    try:
        path.chmod(mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_server(view: AccountView | None = None, **options: Any) -> Iterator[UserdbServer]:
    """A UserdbServer on a socket in a private temp folder (0755, so that an unprivileged
    client can reach it), closed and removed afterwards."""
    with private_tmp(0o755) as tmp, UserdbServer(view, socket_dir=tmp, **options) as server:
        yield server


# -- a Varlink client --------------------------------------------------------------------------
class VarlinkClient:
    """A minimal blocking Varlink client: one connection, calls answered in order."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(os.fspath(path))
        except BaseException:
            self.sock.close()
            raise
        self.buffer = b""

    def __enter__(self) -> VarlinkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\0")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the server closed the connection."""
        while b"\0" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        message = json.loads(raw)
        assert isinstance(message, dict)
        return message

    def call(self, method: str, parameters: dict[str, Any] | None = None, *,
             more: bool = False, **flags: Any) -> list[dict[str, Any]]:
        """Every reply to one call: one, or several when ``more`` (until no continues)."""
        message: dict[str, Any] = {"method": method, "parameters": parameters or {}}
        if more:
            message["more"] = True
        message.update(flags)
        self.send(message)
        replies = []
        while True:
            reply = self.receive()
            assert reply is not None, "server closed the connection mid-call"
            replies.append(reply)
            if not reply.get("continues"):
                return replies

    def closed_by_server(self) -> bool:
        """True once the server has closed the connection (reads until EOF or timeout)."""
        try:
            while chunk := self.sock.recv(65536):
                self.buffer += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True


def userdb_call(path: str | os.PathLike[str], method: str, service: str = DEFAULT_SERVICE,
                more: bool = False, **parameters: Any) -> list[dict[str, Any]]:
    """One io.systemd.UserDatabase call on a fresh connection, as nss-systemd makes it."""
    with VarlinkClient(path) as client:
        return client.call(f"{USERDB}.{method}", {**parameters, "service": service},
                           more=more)


# -- a node with the provider running ----------------------------------------------------------
@dataclass
class ProviderNode:
    """A NodeNamespace whose nss-systemd asks the provider serving ``snapshot_path``."""

    ns: Any  # e2e.nodens.NodeNamespace
    proc: subprocess.Popen[Any]
    snapshot_path: Path
    socket_path: Path  # host path of the socket (the bind-mounted private folder)
    log_path: Path

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return self.ns.run(list(argv), timeout=timeout)  # type: ignore[no-any-return]

    def as_nobody(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """``argv`` as an ordinary user: glibc resolves inside the caller's process."""
        return self.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                         *argv])

    def write_snapshot(self, data: dict[str, Any]) -> None:
        """Replace the snapshot as the node agent does: write aside, then rename."""
        write_json_atomically(self.snapshot_path, data)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def write_json_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def provider_argv(snapshot_path: Path, socket_dir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nss_plugin", "--snapshot", str(snapshot_path),
            "--socket-dir", socket_dir, *extra]


def provider_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


@contextlib.contextmanager
def provider_node(data: dict[str, Any], *, setup: Callable[[Any], None] | None = None,
                  extra_args: Sequence[str] = ("--poll", "0.2")) -> Iterator[ProviderNode]:
    """A private node: its own nsswitch.conf (files, then systemd), a private folder over
    /run/systemd/userdb, and ``python -m nss_plugin`` serving ``data`` there.

    ``setup(ns)`` runs before the provider starts (local accounts, say).
    """
    from e2e.nodens import NodeNamespace

    with NodeNamespace("wn1") as ns:
        if setup is not None:
            setup(ns)
        ns.write_etc("nsswitch.conf", NSSWITCH)
        userdb = ns.tmp / "userdb"
        userdb.mkdir(mode=0o755)
        ns.bind_dir(userdb, "/run/systemd/userdb")
        snapshot_path = ns.tmp / "snapshot.json"
        write_json_atomically(snapshot_path, data)
        log_path = ns.tmp / "provider.log"
        with log_path.open("wb") as log:
            proc = ns.popen(provider_argv(snapshot_path, "/run/systemd/userdb", *extra_args),
                            cwd=str(REPO), env=provider_env(), stdout=log, stderr=log)
        node = ProviderNode(ns, proc, snapshot_path, userdb / DEFAULT_SERVICE, log_path)
        try:
            wait_until(lambda: node.socket_path.exists() or proc.poll() is not None, 20,
                       "the provider's socket")
            if proc.poll() is not None:
                raise RuntimeError(f"provider exited ({proc.returncode}):\n{node.log}")
            yield node
        finally:
            if proc.poll() is None:
                ns.stop(proc)
