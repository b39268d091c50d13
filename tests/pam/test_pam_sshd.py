"""A real sshd with the shipped sshd_config.d/xos.conf and pam.d/sshd, on a namespace node.

Why: DESIGN's promise for a node is that plain OpenSSH logs VO members in with their SSH
certificate and still runs the XOS account and session checks, and that a token can be
typed at the keyboard-interactive prompt. Both go through exactly the files we ship:
xos.conf is installed verbatim as /etc/ssh/sshd_config.d/xos.conf (the files it names
are placed where it names them, in the node's private /etc), and pam.d/sshd as
/etc/pam.d/sshd with the helper's path pointed at the test wrapper.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.nodens import (
    SSH_TOOLS,
    host_ca_known_hosts,
    keygen,
    missing_requirements,
    sign_key,
)
from pam_fixtures import ALICE, PamNode, XosSshServer, pam_node, token_for, write_state

from pam_module import pam_file, sshd_config
from xos_tokens import SigningKey

_reason = missing_requirements(*SSH_TOOLS, "pamtester")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

KEY = SigningKey.generate()
PORT = 2222


@dataclass
class SshNode:
    node: PamNode
    server: XosSshServer
    known_hosts: Path  # trusts only host certificates of the VO's host CA
    keys: dict[str, Path]

    def login(self, user: str, *, revoked: bool = False) -> subprocess.CompletedProcess[str]:
        """``ssh`` with the user's certificate; runs id -un and the home's mode."""
        key = self.keys[f"{user}-revoked" if revoked else user]
        return self.node.ns.run(self._ssh(user, [
            "-i", str(key), "-o", f"CertificateFile={key}-cert.pub",
            "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes"]),
            timeout=30)

    def type_password(self, user: str, secret: str) -> subprocess.CompletedProcess[str]:
        """``ssh`` by keyboard-interactive, the secret typed by an askpass program."""
        secret_file = self.node.ns.new_path("typed")
        secret_file.write_text(secret)
        askpass = self.node.ns.new_path("askpass")
        askpass.write_text(f"#!/bin/sh\ncat {secret_file}\n")
        askpass.chmod(0o700)
        argv = self._ssh(user, ["-o", "PreferredAuthentications=keyboard-interactive",
                                "-o", "PubkeyAuthentication=no",
                                "-o", "NumberOfPasswordPrompts=1", "-o", "BatchMode=no"])
        return self.node.ns.run(["env", f"SSH_ASKPASS={askpass}", "SSH_ASKPASS_REQUIRE=force",
                                 *argv], timeout=30)

    def _ssh(self, user: str, options: list[str]) -> list[str]:
        """The client pins the host by the host CA: proof that HostCertificate works."""
        return ["ssh", "-F", "/dev/null", "-T", "-p", str(PORT), "-l", user,
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
                *options, "127.0.0.1", "--", "id -un; stat -c %a:%u $HOME"]


@pytest.fixture
def ssh() -> Iterator[SshNode]:
    with pam_node(keys=[KEY]) as node:
        ns = node.ns
        ns.write_etc("pam.d/sshd", pam_file("sshd", str(node.helper)), 0o644)
        ns.write_etc("ssh/sshd_config.d/xos.conf", sshd_config(), 0o644)
        user_ca = ns.tmp / "user_ca"
        host_ca = ns.tmp / "host_ca"
        ns.write_etc("ssh/xos/user_ca.pub", keygen(ns, user_ca, "vo-user-ca").read_text())
        keygen(ns, host_ca, "vo-host-ca")
        keys = {}
        for name in ("alice", "bob", "carol", "alice-revoked"):
            keys[name] = ns.tmp / f"{name}_key"
            keygen(ns, keys[name], name)
            sign_key(ns, user_ca, Path(f"{keys[name]}.pub"), f"{name}@atlas",
                     [name.split("-")[0]])
        revoked = Path(f"{keys['alice-revoked']}.pub").read_text()
        ns.write_etc("ssh/xos/revoked_keys", revoked)
        server = XosSshServer(ns, port=PORT)
        server.dir.mkdir(mode=0o700)
        keygen(ns, server.host_key, "host")
        cert = sign_key(ns, host_ca, server.host_key_pub, "wn1", ["127.0.0.1"], "-5m:+1h",
                        host=True)
        ns.write_etc("ssh/xos/ssh_host_ed25519_key-cert.pub", cert.read_text())
        known_hosts = host_ca_known_hosts(ns, Path(f"{host_ca}.pub"), PORT)
        with server:
            yield SshNode(node, server, known_hosts, keys)


def test_a_certificate_login_runs_the_xos_account_and_session(ssh: SshNode) -> None:
    result = ssh.login("alice")
    assert result.returncode == 0, result.stderr + ssh.server.log
    assert result.stdout.split() == ["alice", f"700:{ALICE['uid']}"]
    # publickey: PAM's auth stage never ran; account did, and pam_mkhomedir made the home
    assert ssh.node.helper_calls() == ["account alice account"]
    assert "Accepted certificate ID \"alice@atlas\"" in ssh.server.log


def test_a_locked_member_with_a_valid_certificate_is_refused(ssh: SshNode) -> None:
    result = ssh.login("bob")
    assert result.returncode != 0
    assert "bob: refused: locked on this node" in ssh.node.helper_log()
    assert "Access denied for user bob by PAM account configuration" in ssh.server.log
    assert ssh.node.ns.run(["test", "-e", "/home/bob"]).returncode != 0


def test_a_removed_member_is_refused_at_the_next_login(ssh: SshNode) -> None:
    assert ssh.login("carol").returncode == 0
    write_state(ssh.node.state, keys=[KEY], users=[ALICE])  # carol left the node's VOs
    assert ssh.login("carol").returncode != 0


def test_a_revoked_key_is_refused_by_sshd(ssh: SshNode) -> None:
    result = ssh.login("alice", revoked=True)
    assert result.returncode != 0
    assert "revoked" in ssh.server.log.lower()
    assert ssh.node.helper_calls() == []  # sshd said no before PAM was asked


def test_a_token_typed_at_the_keyboard_interactive_prompt(ssh: SshNode) -> None:
    token = token_for(KEY, ALICE)
    result = ssh.type_password("alice", token)
    assert result.returncode == 0, result.stderr + ssh.server.log + ssh.node.helper_log()
    assert result.stdout.split() == ["alice", f"700:{ALICE['uid']}"]
    assert ssh.node.helper_calls()[:2] == ["auth alice auth", "account alice account"]
    wrong = ssh.type_password("alice", token_for(SigningKey.generate(), ALICE))
    assert wrong.returncode != 0


def test_a_local_account_logs_in_while_xos_is_broken(ssh: SshNode) -> None:
    """A local operator types their local password; XOS has no state at all, and the
    helper is never started."""
    ssh.node.ns.add_local_user("operator", 1001, 1001)
    ssh.node.set_local_password("operator", "local operator secret")
    for name in ("snapshot.json", "jwks.json", "node.json"):
        (ssh.node.state / name).unlink()
    result = ssh.type_password("operator", "local operator secret")
    assert result.returncode == 0, result.stderr + ssh.server.log
    assert result.stdout.split() == ["operator", "700:1001"]
    assert ssh.node.helper_calls() == []
