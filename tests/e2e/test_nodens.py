"""Proof that the node harness isolates, cleans up, and drives a real sshd with SSH CAs.

Why: later end-to-end tests (NSS provider, PAM helpers, xos-run) trust this harness to keep
the host untouched and to give real OpenSSH behaviour; these tests pin both promises.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .nodens import (
    SSH_TOOLS,
    NodeNamespace,
    SshServer,
    fingerprint,
    host_ca_known_hosts,
    keygen,
    missing_requirements,
    namespace_members,
    pid_alive,
    sign_key,
    ssh_login,
    sweep_stale_tempdirs,
)

_reason = missing_requirements(*SSH_TOOLS)
if _reason:
    pytest.skip(_reason, allow_module_level=True)

USER, UID = "alice", 59990  # below 60000 and absent from the host (checked in the tests)
PORT = 2222


# -- host snapshots --------------------------------------------------------------------------
def _digest(path: str) -> str | None:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def _stat(path: str) -> tuple[int, int] | None:
    p = Path(path)
    return (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None


def host_snapshot() -> dict[str, object]:
    """The host state the harness promises never to change."""
    snap: dict[str, object] = {
        f: _digest(f) for f in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/hosts",
                                "/etc/hostname", "/etc/ssh/sshd_config")
    }
    snap.update({f: _stat(f) for f in ("/var/log/btmp", "/var/log/wtmp", "/var/log/lastlog")})
    snap.update({p: Path(p).exists() for p in ("/run/sshd", "/run/mount", "/root/.ssh",
                                              f"/home/{USER}")})
    snap["hostname"] = socket.gethostname()
    snap["netns"] = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                   check=True).stdout
    snap["links"] = sorted(os.listdir("/sys/class/net"))
    return snap


def assert_gone(ns_inodes: dict[str, int], pids: list[int], tmp: Path) -> None:
    """Nothing of a closed namespace survives: no process, no namespace, no temp folder."""
    assert [p for p in pids if pid_alive(p)] == []
    for kind, inode in ns_inodes.items():
        assert namespace_members(kind, inode) == [], kind
    assert not tmp.exists()


@pytest.fixture(autouse=True)
def host_untouched() -> Iterator[None]:
    """Every test here must leave the host exactly as it found it."""
    before = host_snapshot()
    yield
    assert host_snapshot() == before


# -- keys --------------------------------------------------------------------------------------
@dataclass
class Keys:
    """A throwaway user CA, a second CA, and alice's key (made inside the node)."""

    ca: Path
    other_ca: Path
    user_key: Path
    user_pub: Path

    def cert(self, ns: NodeNamespace, principal: str = USER, validity: str = "+5m",
             ca: Path | None = None, identity: str = "alice-key") -> Path:
        """A fresh copy of alice's key signed as asked (certs live next to their key)."""
        key = ns.new_path("userkey")
        key.write_bytes(self.user_key.read_bytes())
        key.chmod(0o600)
        pub = Path(f"{key}.pub")
        pub.write_bytes(self.user_pub.read_bytes())
        sign_key(ns, ca or self.ca, pub, identity, [principal], validity)
        return key


@pytest.fixture
def node() -> Iterator[NodeNamespace]:
    with NodeNamespace("xos-test-node") as ns:
        yield ns


@pytest.fixture
def keys(node: NodeNamespace) -> Keys:
    ca, other = node.tmp / "user_ca", node.tmp / "other_ca"
    keygen(node, ca, "user-ca")
    keygen(node, other, "other-ca")
    user_key = node.tmp / "alice_plain"
    pub = keygen(node, user_key, "alice")
    node.add_local_user(USER, UID, UID)
    return Keys(ca, other, user_key, pub)


@pytest.fixture
def sshd(node: NodeNamespace, keys: Keys) -> Iterator[SshServer]:
    with SshServer(node, port=PORT, trusted_user_ca_keys=Path(f"{keys.ca}.pub")) as server:
        yield server


def login(ns: NodeNamespace, key: Path, user: str = USER) -> subprocess.CompletedProcess[str]:
    return ssh_login(ns, user, key, Path(f"{key}-cert.pub"), ["id", "-un"], port=PORT)


# -- (a) isolation and cleanup -------------------------------------------------------------
def test_namespace_is_private_and_leaves_nothing_behind() -> None:
    assert subprocess.run(["getent", "passwd", USER]).returncode == 2, "alice exists on host"
    with NodeNamespace("xos-iso-node") as ns:
        links = ns.run(["ip", "-o", "link"], check=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        assert "UP" in links.split("<")[1].split(">")[0]
        assert ns.run(["hostname"], check=True).stdout.strip() == "xos-iso-node"

        ns.add_local_user(USER, UID, UID, groups=[("xosvo", 59980)])
        assert ns.getent("passwd", USER) == f"{USER}:x:{UID}:{UID}::/home/{USER}:/bin/sh"
        assert ns.getent("group", "xosvo") == f"xosvo:x:59980:{USER}"
        assert ns.run(["id", "-un", USER], check=True).stdout.strip() == USER
        assert subprocess.run(["getent", "passwd", USER]).returncode == 2
        assert ns.run(["stat", "-c", "%u %a", f"/home/{USER}"]).stdout.split() == [
            str(UID), "700"]
        stray = f"/tmp/xos-e2e-stray-{os.getpid()}"
        ns.run(["sh", "-c", f"echo x > /var/log/btmp; echo x > {stray}; mkdir -p /root/.ssh"],
               check=True)
        assert ns.run(["cat", stray]).stdout == "x\n" and not Path(stray).exists()

        sleeper = ns.popen(["sleep", "600"])
        pids = [*ns.holder_pids, sleeper.pid]
        inodes, tmp = dict(ns.ns_inodes), ns.tmp
        assert all(pid_alive(p) for p in pids) and namespace_members("net", inodes["net"])
        assert os.stat(tmp).st_mode & 0o777 == 0o700
    assert_gone(inodes, pids, tmp)


def test_cleanup_when_the_test_body_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), NodeNamespace() as ns:
        ns.popen(["sleep", "600"])
        pids, inodes, tmp = list(ns.holder_pids), dict(ns.ns_inodes), ns.tmp
        raise RuntimeError("boom")
    assert_gone(inodes, pids, tmp)


def test_run_timeout_kills_everything_it_started(node: NodeNamespace) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        node.run(["sh", "-c", "sleep 600 & sleep 600"], timeout=0.5)
    ps = node.run(["ps", "-eo", "comm="], check=True).stdout.split()
    assert "sleep" not in ps and "sh" not in ps


def test_namespace_dies_with_a_killed_pytest() -> None:
    """SIGKILL gives no chance to clean up: the holder's watchdogs must do it."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import nodens\n"
        "ns = nodens.NodeNamespace().__enter__(); ns.popen(['sleep', '600'])\n"
        "print(ns.ns_inodes['net'], ns.ns_inodes['pid'], ns.tmp, flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        net, pid_ns, tmp = child.stdout.readline().split()
        assert namespace_members("net", int(net))
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            assert stream is not None
            stream.close()
    deadline = time.monotonic() + 5
    while namespace_members("net", int(net)) or namespace_members("pid", int(pid_ns)):
        assert time.monotonic() < deadline, "namespace outlived its pytest process"
        time.sleep(0.02)
    assert Path(tmp) in sweep_stale_tempdirs()
    assert not Path(tmp).exists()


# -- (b) certificate login ---------------------------------------------------------------------
def test_user_certificate_logs_in(node: NodeNamespace, keys: Keys, sshd: SshServer) -> None:
    result = login(node, keys.cert(node))
    assert result.returncode == 0, result.stderr + sshd.log
    assert result.stdout == f"{USER}\n"
    sshd.wait_for_log(rf"Accepted publickey for {USER} .*ED25519-CERT .*ID alice-key")


# -- (c) refused certificates ------------------------------------------------------------------
def test_certificate_for_another_principal_is_refused(
    node: NodeNamespace, keys: Keys, sshd: SshServer
) -> None:
    result = login(node, keys.cert(node, principal="bob"))
    assert result.returncode == 255 and result.stdout == ""
    assert "Permission denied (publickey)" in result.stderr
    sshd.wait_for_log("Certificate invalid: name is not a listed principal")


def test_expired_certificate_is_refused(
    node: NodeNamespace, keys: Keys, sshd: SshServer
) -> None:
    result = login(node, keys.cert(node, validity="20200101:20200102"))
    assert result.returncode == 255 and result.stdout == ""
    sshd.wait_for_log("Certificate invalid: expired")


def test_plain_key_without_certificate_is_refused(
    node: NodeNamespace, keys: Keys, sshd: SshServer
) -> None:
    result = ssh_login(node, USER, keys.user_key, None, port=PORT)
    assert result.returncode == 255 and result.stdout == ""
    key_fp = fingerprint(node, keys.user_pub)
    sshd.wait_for_log(rf"Failed publickey for {USER} .*ssh2: ED25519 {re.escape(key_fp)}")


def test_certificate_from_an_untrusted_ca_is_refused(
    node: NodeNamespace, keys: Keys, sshd: SshServer
) -> None:
    result = login(node, keys.cert(node, ca=keys.other_ca))
    assert result.returncode == 255 and result.stdout == ""
    # sshd names the untrusted CA only at DEBUG2; VERBOSE shows which CA signed the cert.
    ca_fp = fingerprint(node, Path(f"{keys.other_ca}.pub"))
    sshd.wait_for_log(
        rf"Failed publickey for {USER} .*ED25519-CERT .*CA ED25519 {re.escape(ca_fp)}")
    assert "Accepted" not in sshd.log


# -- (d) host certificates ---------------------------------------------------------------------
def test_host_certificate_pins_the_server(node: NodeNamespace, keys: Keys) -> None:
    host_ca = node.tmp / "host_ca"
    host_ca_pub = keygen(node, host_ca, "host-ca")
    user_ca_pub = Path(f"{keys.ca}.pub")
    key = keys.cert(node)
    with SshServer(node, port=PORT, trusted_user_ca_keys=user_ca_pub, host_ca_key=host_ca), \
            SshServer(node, port=PORT + 1, trusted_user_ca_keys=user_ca_pub) as plain:
        good = ssh_login(node, USER, key, Path(f"{key}-cert.pub"), port=PORT,
                         host_ca_pub=host_ca_pub)
        assert good.returncode == 0, good.stderr
        assert good.stdout == f"{USER}\n"
        assert "Warning: Permanently added" not in good.stderr

        known = host_ca_known_hosts(node, host_ca_pub, PORT + 1)
        before = known.read_text()
        bad = ssh_login(node, USER, key, Path(f"{key}-cert.pub"), port=PORT + 1,
                        known_hosts=known, strict="yes")
        assert bad.returncode == 255 and bad.stdout == ""
        assert "Host key verification failed" in bad.stderr
        assert known.read_text() == before
        assert "Accepted" not in plain.log
