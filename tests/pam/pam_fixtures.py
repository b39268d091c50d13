"""Shared helpers of the PAM tests: node state directories, tokens, and a PAM node.

Not a conftest (tests/ has its own; this folder must not shadow it): test files import
what they need. Two kinds of node:

- a state directory in pytest's tmp_path, for calling ``pam_module.main`` in-process;
- :class:`PamNode`, a NodeNamespace whose private /etc/pam.d holds the shipped snippets
  and example sshd service (the helper's path replaced by a wrapper in the namespace's
  temp folder), with the node's XOS users resolvable through NSS. The XOS NSS provider is
  stood in for by systemd-userdb drop-in records (/run/userdb/<name>.user, read by
  nss-systemd directly), so the users resolve without being local: pam_localuser must
  not see them in /etc/passwd.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from e2e.nodens import NodeNamespace, SshServer

from pam_module import main, pam_file
from pam_module.snippets import PAM_SNIPPETS
from xos_tokens import SigningKey, jwks, sign_access_token

NODE = "wn1.grid.example"
ISSUER = "https://vo.grid.example"
PYTHON = sys.executable  # the virtualenv's interpreter: the project is installed in it
SERVICE = "xos-test"  # the PAM service the end-to-end tests use (the example sshd file)
PAM_SUCCESS, PAM_PERM_DENIED = 0, 6  # Linux-PAM's values (security/_pam_types.h)
ALICE_ID = "5b0c8d27-1f7e-4a53-8f0e-6f1d2c3b4a51"


# -- state directories -------------------------------------------------------------------
def user_entry(name: str, uid: int, *, locked: bool = False, id: str | None = None,
               display_name: str | None = None) -> dict[str, Any]:
    """One user exactly as the VO service's snapshot lists it (gid = uid)."""
    return {"id": id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"xos:{name}")), "name": name,
            "uid": uid, "gid": uid, "display_name": display_name or name.capitalize(),
            "locked": locked}


ALICE = user_entry("alice", 200001, id=ALICE_ID, display_name="Alice")
BOB = user_entry("bob", 200002, locked=True)  # suspended: resolvable, never allowed in
CAROL = user_entry("carol", 200003)


def snapshot_doc(users: Iterable[Mapping[str, Any]], *, node: str = NODE,
                 revision: int = 42) -> dict[str, Any]:
    """The VO service's snapshot document for ``users`` in one VO, atlas."""
    users = list(users)
    return {"node": node, "revision": revision, "vos": ["atlas"], "users": users,
            "groups": [{"name": "atlas", "gid": 400000, "path": "/atlas", "vo": "atlas",
                        "members": sorted(u["name"] for u in users if not u["locked"])}]}


def write_state(directory: Path, *, keys: Sequence[SigningKey] | None = None,
                jwks_doc: Mapping[str, Any] | None = None,
                snapshot: Mapping[str, Any] | None = None,
                users: Iterable[Mapping[str, Any]] = (ALICE, BOB, CAROL),
                node: str = NODE, issuer: str = ISSUER) -> Path:
    """Write a node's state directory (0755, files 0644, owned by the caller: root)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    directory.chmod(0o755)
    documents = {
        "snapshot.json": snapshot if snapshot is not None else snapshot_doc(users, node=node),
        "jwks.json": jwks_doc if jwks_doc is not None else jwks(keys or ()),
        "node.json": {"node": node, "issuer": issuer},
    }
    for name, document in documents.items():
        path = directory / name
        path.write_text(json.dumps(document))
        path.chmod(0o644)
    return directory


def token_for(key: SigningKey, user: Mapping[str, Any], *, audience: str = NODE,
              issuer: str = ISSUER, lifetime: timedelta = timedelta(minutes=20),
              now: datetime | None = None, claims: Mapping[str, Any] | None = None) -> str:
    """An access token for ``user``: compact (only preferred_username beyond the registered
    claims), so that it fits through pam_exec's 511 bytes."""
    return sign_access_token(key, issuer=issuer, subject=user["id"], audience=audience,
                             lifetime=lifetime, now=now or datetime.now(UTC),
                             claims=claims if claims is not None else
                             {"preferred_username": user["name"]})


# -- a PAM node --------------------------------------------------------------------------
_WRAPPER = """#!/bin/sh
# What an installed /usr/sbin/xos-pam does, plus a record of each call for the tests.
echo "$PAM_TYPE $PAM_USER $*" >> {calls}
XOS_NODE_STATE={state}
export XOS_NODE_STATE
exec {python} -I -m pam_module "$@" 2>> {log}
"""


@dataclass
class PamNode:
    """A node with the shipped PAM files installed; see the module docstring."""

    ns: NodeNamespace
    state: Path
    helper: Path
    calls: Path
    log: Path
    userdb: Path
    users: list[dict[str, Any]] = field(default_factory=list)

    def helper_calls(self) -> list[str]:
        """One line per helper run: "<PAM_TYPE> <PAM_USER> <args>"."""
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def helper_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def pamtester(self, user: str, *operations: str, secret: str | None = None,
                  service: str = SERVICE, timeout: float = 30.0
                  ) -> subprocess.CompletedProcess[str]:
        """Run pamtester inside; ``secret`` is typed at the password prompt (stdin)."""
        return self.ns.run(["pamtester", service, user, *operations],
                           input=(secret or "") + "\n", timeout=timeout)

    def python_pam(self, user: str, secret: str, service: str = SERVICE) -> tuple[bool, int]:
        """python-pam's authenticate() inside: (answer, PAM code). It runs the auth stage,
        then the account stage, then pam_setcred, as an application would."""
        code = ("import json, pam, sys\n"
                "p = pam.pam()\n"
                "ok = p.authenticate(sys.argv[1], sys.stdin.read(), service=sys.argv[2])\n"
                "print(json.dumps([ok, p.code]))\n")
        result = self.ns.run([PYTHON, "-I", "-c", code, user, service], input=secret,
                             check=True)
        ok, pam_code = json.loads(result.stdout)
        return bool(ok), int(pam_code)

    def add_nss_users(self, users: Iterable[Mapping[str, Any]]) -> None:
        """Make users resolvable through NSS (nss-systemd's userdb drop-ins), not local."""
        for user in users:
            record = {"userName": user["name"], "uid": user["uid"], "gid": user["gid"],
                      "realName": user.get("display_name", ""),
                      "homeDirectory": f"/home/{user['name']}", "shell": "/bin/sh",
                      "disposition": "regular"}
            (self.userdb / f"{user['name']}.user").write_text(json.dumps(record))
            os.symlink(f"{user['name']}.user", self.userdb / f"{user['uid']}.user")
            group = {"groupName": user["name"], "gid": user["gid"]}
            (self.userdb / f"{user['name']}.group").write_text(json.dumps(group))
            os.symlink(f"{user['name']}.group", self.userdb / f"{user['gid']}.group")

    def set_local_password(self, user: str, password: str) -> None:
        """Give a local account a password in the node's private /etc/shadow."""
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                                capture_output=True, text=True, check=True).stdout.strip()
        lines = self.ns.read_etc("shadow").splitlines()
        fields = [line.split(":") for line in lines]
        if not any(f[0] == user for f in fields):
            raise ValueError(f"{user} has no shadow entry on the node")
        text = "\n".join(":".join([f[0], hashed, *f[2:]]) if f[0] == user else ":".join(f)
                         for f in fields) + "\n"
        shadow_gid = os.stat("/etc/shadow").st_gid
        copy = self.ns.write_etc("shadow", text, 0o640)
        os.chown(copy, 0, shadow_gid)


class XosSshServer(SshServer):
    """The harness's sshd, with the shipped xos.conf included first: for sshd the first
    value of a setting wins, so the shipped file decides UsePAM, the CA, the KRL, the host
    certificate and keyboard-interactive, as it does under Debian's sshd_config."""

    def config_text(self) -> str:
        return "Include /etc/ssh/sshd_config.d/xos.conf\n" + super().config_text()


def install_pam(ns: NodeNamespace, state: Path) -> PamNode:
    """Install the shipped PAM files in ``ns``: the snippets under their own names and the
    example sshd service as SERVICE, all calling a wrapper that runs this checkout's
    helper with XOS_NODE_STATE=state (pam_exec passes neither PATH nor PYTHONPATH)."""
    helper = ns.tmp / "xos-pam"
    node = PamNode(ns=ns, state=state, helper=helper, calls=ns.tmp / "helper-calls.log",
                   log=ns.tmp / "helper.log", userdb=ns.tmp / "userdb")
    helper.write_text(_WRAPPER.format(calls=node.calls, state=state, python=PYTHON,
                                      log=node.log))
    helper.chmod(0o755)
    for name in PAM_SNIPPETS:
        ns.write_etc(f"pam.d/{name}", pam_file(name, str(helper)), 0o644)
    ns.write_etc(f"pam.d/{SERVICE}", pam_file("sshd", str(helper)), 0o644)
    node.userdb.mkdir(mode=0o755)
    ns.make_dir("/run/userdb")
    ns.bind_dir(node.userdb, "/run/userdb")
    return node


@contextmanager
def pam_node(users: Sequence[Mapping[str, Any]] = (ALICE, BOB, CAROL),
             keys: Sequence[SigningKey] = (), issuer: str = ISSUER,
             hostname: str = "wn1") -> Iterator[PamNode]:
    """A namespace node whose XOS state lists ``users`` (resolvable through NSS)."""
    with NodeNamespace(hostname) as ns:
        state = write_state(ns.tmp / "state", keys=keys, users=users, issuer=issuer)
        node = install_pam(ns, state)
        node.add_nss_users(users)
        node.users = [dict(u) for u in users]
        yield node


# -- network stand-ins -------------------------------------------------------------------
@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections (the kernel completes them) and
    never answers: a VO service that hangs. Yields the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF or error, then tell the other side."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _handle(client: socket.socket, upstream: socket.socket) -> None:
    """Relay one connection both ways, then close both sockets."""
    with client, upstream:
        pumps = [threading.Thread(target=_pump, args=pair, daemon=True)
                 for pair in ((client, upstream), (upstream, client))]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()


def _serve(listener: socket.socket, connect: Callable[[], socket.socket],
           handlers: list[threading.Thread] | None = None) -> None:
    """Accept until the listener is shut down; each connection in its own thread."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        handler = threading.Thread(target=_handle, args=(client, upstream), daemon=True)
        handler.start()
        if handlers is not None:
            handlers.append(handler)


_INSIDE = "\n".join([
    "import contextlib, socket, sys, threading",
    "from collections.abc import Callable",
    inspect.getsource(_pump), inspect.getsource(_handle), inspect.getsource(_serve),
    "listener = socket.create_server(('127.0.0.1', int(sys.argv[1])))",
    "print('ready', flush=True)",
    "def connect():",
    "    s = socket.socket(socket.AF_UNIX)",
    "    s.connect(sys.argv[2])",
    "    return s",
    "_serve(listener, connect)",
])


@contextmanager
def relay_into(ns: NodeNamespace, port: int) -> Iterator[None]:
    """Make 127.0.0.1:port of the host reachable as 127.0.0.1:port inside ``ns``.

    The namespace has its own loopback, and a pathname Unix socket is the one door both
    sides share: inside, a relay listens on TCP and connects to the socket; here, a relay
    thread accepts on the socket and connects to the host's port. Both end with the block.
    """
    path = ns.new_path("relay.sock")
    handlers: list[threading.Thread] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(16)
        acceptor = threading.Thread(
            target=_serve, daemon=True,
            args=(listener, lambda: socket.create_connection(("127.0.0.1", port)), handlers))
        acceptor.start()
        proc = ns.popen([PYTHON, "-I", "-c", _INSIDE, str(port), str(path)],
                        stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            yield
        finally:
            ns.stop(proc)  # its connections close: our handlers see EOF and finish
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
            acceptor.join(5)
            for handler in handlers:
                handler.join(5)
            assert not acceptor.is_alive() and not any(h.is_alive() for h in handlers)


# -- the helper in-process ---------------------------------------------------------------
@dataclass
class HelperRun:
    """What one in-process run of ``pam_module.main`` returned and logged (stderr)."""

    code: int
    log: str
    seconds: float


class _Unreadable(io.RawIOBase):
    """A stdin that fails the test if the helper reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the helper read the secret although it had decided already")


UNREADABLE = cast(BinaryIO, _Unreadable())


def run_helper(stage: str, state: Path | None, *, user: str | None = "alice",
               secret: str | bytes | None = None, args: Sequence[str] = (),
               pam_type: str | None = None, stdin: BinaryIO | None = None,
               environ: Mapping[str, str] | None = None) -> HelperRun:
    """Run ``main([stage, *args])`` as pam_exec would: PAM_* environment, the secret on
    stdin (bytes as given; text as pam_exec 1.5.2 writes it, unterminated)."""
    env = {"PAM_SERVICE": SERVICE, "PAM_TYPE": pam_type or
           {"session": "open_session"}.get(stage, stage)}
    if user is not None:
        env["PAM_USER"] = user
    if state is not None:
        env["XOS_NODE_STATE"] = str(state)
    env.update(environ or {})
    if stdin is None:
        data = secret.encode() if isinstance(secret, str) else (secret or b"")
        stdin = io.BytesIO(data)
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err):
        code = main([stage, *args], environ=env, stdin=stdin)
    return HelperRun(code, err.getvalue(), time.monotonic() - started)
