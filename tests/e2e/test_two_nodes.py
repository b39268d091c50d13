"""Two nodes, one VO service: the node side of XOS end to end, through the real software.

Each node is a NodeNamespace (its own network, mount, UTS and PID namespaces) with its
own nsswitch.conf, the shipped PAM files and sshd configuration, and a real sshd. Its
only way to the VO service is a relay to the service's port on the host loopback
(``relay_into``), the way a node reaches its service over the network. Each node is
enrolled with ``xos-node enroll`` and a one-time token, then runs ``xos-node run``: the
agent syncs (long-polling) and serves NSS through nss-systemd from its own process.

The story, in order (one test: each step needs the state the previous one left):
1. a user added through the API resolves with the same uid and groups on both nodes;
2. logs in with pamtester and a token typed as the password on both, and with the real
   ssh client and the SSH certificate ``xos-login cert`` fetched, getting a 0700 home;
3. a file a VO member writes through ``xos-run`` on one node is readable by another
   member of that VO on the other node, and not by a member of another VO;
4. removing the user from the VO denies new logins on both nodes within seconds;
5. with the VO service stopped, members still resolve and log in with valid tokens and
   certificates, even after the agent restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pam_module import pam_file, sshd_config
from vo_service.apikeys.services import ApiKeyService
from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.enrolment import EnrolmentService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

from .live import Live, live_service
from .nodens import SSH_TOOLS, NodeNamespace, keygen, missing_requirements

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pam"))
from pam_fixtures import PamNode, XosSshServer, install_pam, relay_into  # noqa: E402

_reason = missing_requirements(*SSH_TOOLS, "pamtester") or (
    None if os.geteuid() == 0 else "needs root for namespaces")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

BIN = Path(sys.executable).parent
XOS_NODE, XOS_RUN, XOS_LOGIN = (str(BIN / n) for n in ("xos-node", "xos-run", "xos-login"))
STATE = "/var/lib/xos-node"
SSH_PORT = 2222
PASSWORD = "correct horse battery"
NODES = ("wn1.grid.example", "wn2.grid.example")
NEWCOMER = "dave"
DEADLINE = 20.0  # generous for a loaded CI machine; the measured figure is in the bench


def seed(app: Flask) -> None:
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("pytest")
        atlas = VOService(ctx).create(system, "atlas")
        VOService(ctx).create_group(system, atlas, "/atlas/analysis")
        cms = VOService(ctx).create(system, "cms")
        for name, vo in (("alice", atlas), ("bob", atlas), ("carol", cms)):
            user = UserService(ctx).create(system, name, name.title())
            MembershipService(ctx).add(system, vo, user)
            PasswordService(ctx).set(system, user, PASSWORD)
        admin = UserService(ctx).create(system, "gridops", "Grid Ops", is_service_admin=True)
        app.config["TEST_ADMIN_KEY"] = ApiKeyService(ctx).issue(system, user=admin)[1]
        for name in NODES:
            node = NodeService(ctx).register(system, name, vos=["atlas", "cms"])
            app.config[f"TEST_TOKEN_{name}"] = EnrolmentService(ctx).issue(system, node, 1)[0]
        db.session.commit()


# -- talking to the service as an admin and as a user -------------------------------------
def api(live: Live, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{live.base}/api/v1{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {live.app.config['TEST_ADMIN_KEY']}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        data = answer.read()
    return json.loads(data) if data else None


def token(live: Live, user: str, node: str) -> str:
    """An access token for ``node``, by the password grant (what xos-login does)."""
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "xos-login",
                                   "username": user, "password": PASSWORD,
                                   "audience": node}).encode()
    with urllib.request.urlopen(f"{live.base}/oauth/token", form, timeout=30) as answer:  # noqa: S310
        return str(json.loads(answer.read())["access_token"])


@dataclass
class Laptop:
    """A researcher's home on the host, where xos-login keeps keys and certificates."""

    home: Path

    def run(self, live: Live, *args: str, stdin: str = "") -> str:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env |= {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XOS_URL": live.base, "NO_PROXY": "*"}
        done = subprocess.run([XOS_LOGIN, *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def ssh_credentials(self, live: Live, user: str) -> tuple[Path, Path]:
        """``xos-login login`` then ``xos-login cert``: the SSH key and its certificate."""
        self.run(live, "login", "--password", "--username", user, "--password-stdin",
                 stdin=PASSWORD + "\n")
        self.run(live, "cert")
        cert = next(self.home.rglob("*-cert.pub"))
        return Path(str(cert).removesuffix("-cert.pub")), cert


# -- a node -----------------------------------------------------------------------------
@dataclass
class Node:
    name: str
    ns: NodeNamespace
    pam: PamNode
    sshd: XosSshServer
    agent_log: Path
    agent: subprocess.Popen[Any] | None = None

    def start_agent(self) -> None:
        log = self.agent_log.open("ab")
        self.agent = self.ns.popen(
            [XOS_NODE, "-v", "run", "--state-dir", STATE, "--wait", "5", "--interval", "0.5",
             "--max-backoff", "2", "--upkeep", "30"], stdout=log, stderr=log)
        log.close()

    def stop_agent(self) -> None:
        assert self.agent is not None
        self.ns.stop(self.agent)
        self.agent = None

    def sh(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.ns.run(["env", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", script],
                           timeout=60)

    def id_of(self, user: str) -> str | None:
        """``id USER`` through glibc (NSS) on the node, None while it does not resolve."""
        done = self.ns.run(["id", user], timeout=30)
        return done.stdout.strip() if done.returncode == 0 else None

    def pam_login(self, user: str, secret: str) -> bool:
        """authenticate + acct_mgmt + open_session through the node's sshd PAM service."""
        done = self.pam.pamtester(user, "authenticate", "acct_mgmt", "open_session",
                                  secret=secret)
        return done.returncode == 0

    def ssh(self, user: str, key: Path, cert: Path) -> subprocess.CompletedProcess[str]:
        """The real ssh client with the SSH certificate; the host is pinned by the VO's
        SSH CA through the host certificate the node got at enrolment."""
        inside = self.ns.tmp / f"ssh-{user}"
        inside.mkdir(mode=0o700, exist_ok=True)
        for source in (key, cert):
            (inside / source.name).write_bytes(source.read_bytes())
            (inside / source.name).chmod(0o600)
        ca = self.ns.run(["cat", f"{STATE}/ssh_user_ca.pub"], check=True).stdout.split("\n")[0]
        known_hosts = inside / "known_hosts"
        known_hosts.write_text(f"@cert-authority {self.name} {ca}\n")
        return self.ns.run([
            "ssh", "-F", "/dev/null", "-T", "-p", str(SSH_PORT), "-l", user,
            "-i", str(inside / key.name), "-o", f"CertificateFile={inside / cert.name}",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={self.name}",
            "-o", "ConnectTimeout=5", "127.0.0.1", "--", "id -un; stat -c %a:%u $HOME"],
            timeout=60)

    def run_job(self, job_token: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.ns.run(["env", f"XOS_TOKEN={job_token}", XOS_RUN, "--state-dir", STATE,
                            "--", "sh", "-c", script], timeout=60)


@contextlib.contextmanager
def node(live: Live, name: str, shared: Path) -> Iterator[Node]:
    """A node from scratch: network to the service, nsswitch, PAM, enrolment, agent, sshd."""
    port = int(urllib.parse.urlsplit(live.base).port or 80)
    with NodeNamespace(name.split(".")[0]) as ns, relay_into(ns, port):
        ns.write_etc("nsswitch.conf", "passwd: files systemd\ngroup: files systemd\n"
                     "shadow: files\nhosts: files\n", 0o644)
        sshd = XosSshServer(ns, port=SSH_PORT)
        sshd.dir.mkdir(mode=0o700)
        keygen(ns, sshd.host_key, "host")
        token_file = ns.tmp / "enrolment-token"
        token_file.write_text(live.app.config[f"TEST_TOKEN_{name}"] + "\n")
        token_file.chmod(0o600)
        enrolled = ns.run([XOS_NODE, "enroll", "--url", live.base, "--token-file",
                           str(token_file), "--state-dir", STATE, "--ssh-host-key",
                           str(sshd.host_key_pub)], timeout=60)
        assert enrolled.returncode == 0, enrolled.stderr
        # the shipped PAM and sshd files, pointing at what enrolment wrote
        pam = install_pam(ns, Path(STATE))
        ns.write_etc("pam.d/sshd", pam_file("sshd", str(pam.helper)), 0o644)
        ns.write_etc("ssh/sshd_config.d/xos.conf", sshd_config(), 0o644)
        ns.run(["sh", "-c", f"mkdir -p /etc/ssh/xos && cd /etc/ssh/xos && "
                f"ln -s {STATE}/ssh_user_ca.pub user_ca.pub && "
                f"ln -s {STATE}/revoked_keys revoked_keys && "
                f"ln -s {STATE}/ssh_host_cert.pub ssh_host_ed25519_key-cert.pub"], check=True)
        ns.make_dir("/var/shared")
        ns.bind_dir(shared, "/var/shared")  # the cluster file system both nodes mount
        grid_node = Node(name, ns, pam, sshd, ns.tmp / "agent.log")
        grid_node.start_agent()
        with sshd:
            try:
                yield grid_node
            finally:
                if grid_node.agent is not None:
                    grid_node.stop_agent()


def until(condition: Callable[[], Any], what: str, limit: float = DEADLINE) -> float:
    """Seconds until ``condition()`` is true; fails the test after ``limit``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise AssertionError(f"not within {limit:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_two_nodes_one_vo_service(tmp_path: Path) -> None:
    # the cluster file system: outside /tmp and /var, which each node overlays privately
    shared = Path(tempfile.mkdtemp(prefix="xos-two-nodes-shared-", dir="/srv"))
    shared.chmod(0o755)
    service = live_service(seed, prefix="xos-two-nodes-")
    live = service.__enter__()
    try:
        with node(live, NODES[0], shared) as a, node(live, NODES[1], shared) as b:
            story(live, service, a, b, tmp_path)
    finally:
        service.__exit__(None, None, None)
        shutil.rmtree(shared)


def story(live: Live, service: Any, a: Node, b: Node, tmp_path: Path) -> None:
    nodes = (a, b)
    for n in nodes:
        until(lambda n=n: n.id_of("alice"), f"alice resolves on {n.name}: "
              + n.agent_log.read_text()[-2000:])

    # 1. a user added through the API resolves alike on both nodes
    api(live, "POST", "/users", {"username": NEWCOMER, "display_name": "Dave Newcomer"})
    api(live, "PUT", f"/users/{NEWCOMER}/password", {"password": PASSWORD})
    api(live, "POST", "/vos/atlas/members", {"user": NEWCOMER})
    for n in nodes:
        until(lambda n=n: n.id_of(NEWCOMER), f"{NEWCOMER} resolves on {n.name}")
    seen = {n.name: n.id_of(NEWCOMER) for n in nodes}
    assert seen[a.name] == seen[b.name], seen
    assert "(atlas)" in str(seen[a.name]) and "cms" not in str(seen[a.name])
    uid = int(a.ns.run(["id", "-u", NEWCOMER], check=True).stdout)
    assert uid >= 200000
    for n in nodes:
        entry = n.ns.run(["getent", "passwd", NEWCOMER], check=True).stdout
        assert entry.startswith(f"{NEWCOMER}:x:{uid}:{uid}:Dave Newcomer:/home/{NEWCOMER}:")

    # 2. pamtester with a token typed as the password; ssh with the SSH certificate
    dave_tokens = {n.name: token(live, NEWCOMER, n.name) for n in nodes}
    for n in nodes:
        assert n.pam_login(NEWCOMER, dave_tokens[n.name]), n.pam.helper_log()
        assert "may log in (agent at revision" in n.pam.helper_log()  # one lookup, in memory
        home = n.ns.run(["stat", "-c", "%a:%u", f"/home/{NEWCOMER}"], check=True).stdout
        assert home.strip() == f"700:{uid}"
    # a token for the other node is refused: the audience is checked
    assert not a.pam_login(NEWCOMER, dave_tokens[b.name])
    assert "wrong audience" in a.pam.helper_log()
    laptop = Laptop(tmp_path / "dave-laptop")
    key, cert = laptop.ssh_credentials(live, NEWCOMER)
    for n in nodes:
        n.ns.run(["rm", "-rf", f"/home/{NEWCOMER}"], check=True)  # ssh's own home this time
        result = n.ssh(NEWCOMER, key, cert)
        assert result.returncode == 0, result.stderr + n.sshd.log + n.pam.helper_log()
        assert result.stdout.split() == [NEWCOMER, f"700:{uid}"]

    # 3. files: written through xos-run on node A, read on node B by the same VO only
    laid = a.ns.run([XOS_NODE, "storage", "--state-dir", STATE, "/var/shared"], timeout=60)
    assert laid.returncode == 0, laid.stderr
    wrote = a.run_job(token(live, "alice", a.name),
                      "umask 027; echo 'atlas results' > /var/shared/atlas/results.txt")
    assert wrote.returncode == 0, wrote.stderr
    read = b.run_job(token(live, "bob", b.name), "cat /var/shared/atlas/results.txt")
    assert read.returncode == 0 and read.stdout == "atlas results\n", read.stderr
    other_vo = b.run_job(token(live, "carol", b.name), "cat /var/shared/atlas/results.txt")
    assert other_vo.returncode != 0 and "Permission denied" in other_vo.stderr
    # tokens taken before the service stops (step 5)
    alice_tokens = {n.name: token(live, "alice", n.name) for n in nodes}
    alice_key, alice_cert = Laptop(tmp_path / "alice-laptop").ssh_credentials(live, "alice")

    # 4. removal from the VO denies new logins on both nodes within seconds
    api(live, "POST", f"/vos/atlas/members/{NEWCOMER}/remove", {"reason": "left"})
    removed = time.monotonic()
    for n in nodes:
        until(lambda n=n: not n.pam_login(NEWCOMER, dave_tokens[n.name]),
              f"{NEWCOMER} refused on {n.name}")
    took = time.monotonic() - removed
    assert took < DEADLINE
    for n in nodes:
        assert "locked on this node" in n.pam.helper_log()
        assert n.ssh(NEWCOMER, key, cert).returncode != 0
        assert n.id_of(NEWCOMER) is not None  # files keep an owner's name

    # 5. the service stops: members still resolve and log in, even after an agent restart
    service.__exit__(None, None, None)
    b.stop_agent()
    b.start_agent()
    for n in nodes:
        until(lambda n=n: n.id_of("alice"), f"alice resolves on {n.name} without the service")
        assert n.pam_login("alice", alice_tokens[n.name]), n.pam.helper_log()
        login = n.ssh("alice", alice_key, alice_cert)
        assert login.returncode == 0, login.stderr + n.sshd.log
        assert n.id_of(NEWCOMER) is not None
        assert not n.pam_login(NEWCOMER, dave_tokens[n.name])
    assert "cannot reach" in b.agent_log.read_text().lower() or \
        "failed" in b.agent_log.read_text()
