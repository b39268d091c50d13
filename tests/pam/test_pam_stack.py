"""The shipped PAM files under real Linux-PAM: pamtester and python-pam on a namespace node.

Each test gets a private node (tests/e2e/nodens.py) whose /etc/pam.d holds the shipped
snippets and the example sshd service (as service ``xos-test``), with pam_exec calling
this checkout's helper through a wrapper. Nothing here touches the host's /etc.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e.nodens import missing_requirements
from pam_fixtures import (
    ALICE,
    BOB,
    CAROL,
    PAM_SUCCESS,
    PamNode,
    closed_port,
    pam_node,
    token_for,
    write_state,
)

from pam_module import pam_file
from pam_module.checks import PAM_EXEC_MAX_SECRET
from xos_tokens import SigningKey

_reason = missing_requirements("pamtester", "openssl")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

KEY = SigningKey.generate()


@pytest.fixture
def node() -> Iterator[PamNode]:
    with pam_node(keys=[KEY]) as node:
        yield node


def test_alice_types_her_token_as_password(node: PamNode) -> None:
    token = token_for(KEY, ALICE)
    result = node.pamtester("alice", "authenticate", "acct_mgmt", secret=token)
    assert result.returncode == 0, result.stderr + node.helper_log()
    assert "successfully authenticated" in result.stdout
    assert node.helper_calls() == ["auth alice auth", "account alice account"]
    assert token not in node.helper_log()


@pytest.mark.parametrize("token", [
    lambda: token_for(SigningKey.generate(), ALICE),             # forged
    lambda: token_for(KEY, ALICE, audience="wn2.grid.example"),  # another node's
    lambda: token_for(KEY, CAROL),                               # carol's, typed as alice
    lambda: "not a token and no service to ask",                 # a password, service away
])
def test_wrong_tokens_do_not_authenticate(node: PamNode, token: Callable[[], str]) -> None:
    result = node.pamtester("alice", "authenticate", secret=token())
    assert result.returncode != 0 and "Authentication failure" in result.stderr


def test_account_lets_alice_in_and_keeps_locked_bob_out(node: PamNode) -> None:
    assert node.pamtester("alice", "acct_mgmt").returncode == 0
    bob = node.pamtester("bob", "acct_mgmt")
    assert bob.returncode != 0, bob.stdout
    # bob's token is still valid; it does not help him
    assert node.pamtester("bob", "authenticate", secret=token_for(KEY, BOB)).returncode != 0
    assert "bob: refused: locked on this node" in node.helper_log()


def test_a_member_removed_from_the_snapshot_is_out_at_once(node: PamNode) -> None:
    token = token_for(KEY, ALICE)
    assert node.pamtester("alice", "authenticate", "acct_mgmt", secret=token).returncode == 0
    write_state(node.state, keys=[KEY], users=[CAROL])  # the agent's next snapshot
    assert node.pamtester("alice", "acct_mgmt").returncode != 0
    assert node.pamtester("alice", "authenticate", secret=token).returncode != 0


def test_root_never_depends_on_xos(node: PamNode) -> None:
    """Root's local password works through pam_unix while XOS is broken (no state at
    all), and the helper is never even started for a local account."""
    node.set_local_password("root", "local root secret")
    for name in ("snapshot.json", "jwks.json", "node.json"):
        (node.state / name).unlink()
    result = node.pamtester("root", "authenticate", "acct_mgmt", "open_session",
                            "close_session", secret="local root secret")
    assert result.returncode == 0, result.stderr
    assert node.pamtester("root", "authenticate", secret="wrong").returncode != 0
    assert node.helper_calls() == []


def test_a_refused_xos_login_falls_through_to_pam_unix(node: PamNode) -> None:
    """dave is not local (pam_localuser says no) and not an XOS user: the helper refuses,
    the refusal is ignored, and pam_unix accepts his password, which NSS knows."""
    dave = {"name": "dave", "uid": 1500, "gid": 1500}
    node.add_nss_users([dave])
    hashed = node.ns.run(["openssl", "passwd", "-6", "-stdin"], input="daves password",
                         check=True).stdout.strip()
    (node.userdb / "dave.user-privileged").write_text(
        json.dumps({"privileged": {"hashedPassword": [hashed]}}))
    result = node.pamtester("dave", "authenticate", secret="daves password")
    assert result.returncode == 0, result.stderr
    assert node.helper_calls() == ["auth dave auth"]
    # By design the account stage belongs to XOS for every non-local user: other
    # non-local account sources need their own line before xos-account.
    assert node.pamtester("dave", "acct_mgmt").returncode != 0


def test_open_session_makes_a_private_home(node: PamNode) -> None:
    assert node.ns.run(["test", "-e", "/home/alice"]).returncode != 0
    result = node.pamtester("alice", "open_session", "close_session")
    assert result.returncode == 0, result.stderr
    listing = node.ns.run(["stat", "-c", "%a %u %g %F", "/home/alice"], check=True).stdout
    assert listing.split(maxsplit=3) == ["700", "200001", "200001", "directory\n"]
    skel = node.ns.run(["sh", "-c", "ls -A /etc/skel | head -1"], check=True).stdout.strip()
    if skel:  # files from /etc/skel, owned by alice and not readable by others
        copied = node.ns.run(["stat", "-c", "%a %u", f"/home/alice/{skel}"], check=True)
        mode, owner = copied.stdout.split()
        assert owner == "200001" and int(mode, 8) & 0o077 == 0


def test_the_session_helper_under_real_pam(node: PamNode) -> None:
    """The alternative to pam_mkhomedir, as the snippet describes it."""
    snippet = pam_file("xos-session", str(node.helper))
    lines = [line for line in snippet.splitlines() if not line.lstrip().startswith("#")]
    lines = [line for line in lines if "pam_mkhomedir" not in line] + [
        f"session required pam_exec.so quiet {node.helper} session"]
    node.ns.write_etc("pam.d/xos-session", "\n".join(lines) + "\n")
    assert node.pamtester("alice", "open_session", "close_session").returncode == 0
    listing = node.ns.run(["stat", "-c", "%a %u %g", "/home/alice"], check=True).stdout
    assert listing.split() == ["700", "200001", "200001"]
    assert node.helper_calls() == ["open_session alice session", "close_session alice session"]
    assert node.pamtester("bob", "open_session").returncode != 0


def test_python_pam_runs_auth_account_and_setcred(node: PamNode) -> None:
    assert node.python_pam("alice", token_for(KEY, ALICE)) == (True, PAM_SUCCESS)
    ok, code = node.python_pam("bob", token_for(KEY, BOB))
    assert not ok and code != PAM_SUCCESS


def test_python_pam_needs_more_than_an_auth_line(node: PamNode) -> None:
    """DESIGN's warning, pinned: a service with only the auth snippet satisfies pamtester's
    authenticate, but python-pam's authenticate() also runs account and setcred."""
    node.ns.write_etc("pam.d/xos-authonly", "@include xos-auth\n")
    token = token_for(KEY, ALICE)
    assert node.pamtester("alice", "authenticate", secret=token,
                          service="xos-authonly").returncode == 0
    assert node.python_pam("alice", token, service="xos-authonly")[0] is False


def test_a_token_longer_than_pam_exec_allows_is_cut_and_refused(node: PamNode) -> None:
    """pam_exec hands the helper at most 511 bytes. A token shaped like the VO service's
    (client_id, scope, groups, roles) is longer, so it cannot be typed as a password."""
    token = token_for(KEY, ALICE, claims={
        "preferred_username": "alice", "client_id": "xos-login", "scope": "",
        "groups": ["/atlas"], "roles": []})
    assert len(token) > PAM_EXEC_MAX_SECRET
    assert node.pamtester("alice", "authenticate", secret=token).returncode != 0
    assert f"pam_exec passes at most {PAM_EXEC_MAX_SECRET} bytes" in node.helper_log()


def test_an_unreachable_service_refuses_a_vo_password_quickly(node: PamNode) -> None:
    write_state(node.state, keys=[KEY], issuer=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    result = node.pamtester("alice", "authenticate", secret="her vo password")
    assert result.returncode != 0
    assert time.monotonic() - started < 6  # pam_unix adds its ~2 s failure delay
    assert "cannot be reached" in node.helper_log()
    assert "her vo password" not in node.helper_log()


def test_the_snippets_name_the_helper_only_through_pam_exec() -> None:
    """Every helper call in the shipped files is a pam_exec line of the stage it checks,
    preceded by the pam_localuser jump that keeps local accounts out of XOS."""
    for name, stage in (("xos-auth", "auth"), ("xos-account", "account")):
        lines = [ln.split() for ln in pam_file(name).splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        assert lines[0][:3] == [stage, "[success=1", "default=ignore]"]
        assert lines[0][3] == "pam_localuser.so"
        assert lines[1][0] == stage and "pam_exec.so" in lines[1]
        assert lines[1][-2:] == ["/usr/sbin/xos-pam", stage]


def test_state_files_need_root_only_permissions_inside_too(node: PamNode) -> None:
    (node.state / "snapshot.json").chmod(0o666)
    assert node.pamtester("alice", "acct_mgmt").returncode != 0
    assert "writable by group or others" in node.helper_log()
    (node.state / "snapshot.json").chmod(0o644)
    assert node.pamtester("alice", "acct_mgmt").returncode == 0
    assert stat.S_IMODE((node.state / "snapshot.json").stat().st_mode) == 0o644


def test_nothing_outlives_the_node() -> None:
    with pam_node(keys=[KEY]) as node:
        tmp = node.ns.tmp
        assert node.pamtester("alice", "acct_mgmt").returncode == 0
    assert not tmp.exists()
    assert not Path("/etc/pam.d/xos-test").exists()
    assert not Path("/run/userdb/alice.user").exists()
