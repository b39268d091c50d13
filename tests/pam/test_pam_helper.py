"""The helper as pam_exec runs it (in-process): tokens, accounts, homes, exit codes.

Why in-process: each rule (audience, user, lock, secret framing, stage) is pinned here
quickly and precisely; tests/pam/test_pam_stack.py shows the same helper under real PAM.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pam_fixtures import (
    ALICE,
    CAROL,
    PYTHON,
    UNREADABLE,
    run_helper,
    token_for,
    user_entry,
    write_state,
)

from pam_module import Refused, main
from pam_module.checks import PAM_EXEC_MAX_SECRET
from pam_module.home import make_home
from pam_module.state import SnapshotUser
from xos_tokens import SigningKey

if os.geteuid() != 0:
    pytest.skip("state files must be root-owned: run as root", allow_module_level=True)

KEY = SigningKey.generate()
OTHER_KEY = SigningKey.generate()  # not in the node's JWKS: a forger's key
EX_OK, EX_USAGE, EX_NOUSER, EX_SOFTWARE, EX_NOPERM, EX_CONFIG = (
    os.EX_OK, os.EX_USAGE, os.EX_NOUSER, os.EX_SOFTWARE, os.EX_NOPERM, os.EX_CONFIG)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return write_state(tmp_path / "state", keys=[KEY])


# -- auth: tokens -----------------------------------------------------------------------
def test_a_valid_token_logs_alice_in(state: Path) -> None:
    token = token_for(KEY, ALICE)
    run = run_helper("auth", state, secret=token)
    assert run.code == EX_OK, run.log
    assert "accepted an access token" in run.log and token not in run.log


@pytest.mark.parametrize("framing", [b"", b"\0", b"\n", b"\r\n"])
def test_the_secret_may_end_with_nul_or_newline(state: Path, framing: bytes) -> None:
    """Linux-PAM 1.5.2 sends no terminator; the man page promises a NUL; people type a
    newline. All three reach the same verdict."""
    run = run_helper("auth", state, secret=token_for(KEY, ALICE).encode() + framing)
    assert run.code == EX_OK, run.log


def test_the_service_own_token_shape_verifies_when_not_cut(state: Path) -> None:
    """A token as the VO service issues it (client_id, scope, groups, roles) verifies
    when it arrives whole, as it does when the helper is run by hand."""
    token = token_for(KEY, ALICE, claims={
        "preferred_username": "alice", "client_id": "xos-login", "scope": "",
        "groups": ["/atlas", "/atlas/analysis"], "roles": []})
    assert len(token) > PAM_EXEC_MAX_SECRET
    assert run_helper("auth", state, secret=token).code == EX_OK


def test_a_compact_node_token_without_a_user_name_logs_in_by_its_subject(state: Path
                                                                        ) -> None:
    """The VO service's tokens for a node carry only RFC 9068's claims: ``sub`` decides."""
    token = token_for(KEY, ALICE, claims={"client_id": "xos-login"})
    assert run_helper("auth", state, secret=token).code == EX_OK
    assert run_helper("auth", state, user="carol", secret=token).code == EX_NOPERM


def test_a_token_cut_by_pam_exec_is_refused_with_the_reason(state: Path) -> None:
    token = token_for(KEY, ALICE, claims={
        "preferred_username": "alice", "client_id": "xos-login", "scope": "",
        "groups": ["/atlas", "/atlas/analysis"], "roles": []})
    run = run_helper("auth", state, secret=token[:PAM_EXEC_MAX_SECRET])
    assert run.code == EX_NOPERM
    assert f"pam_exec passes at most {PAM_EXEC_MAX_SECRET} bytes" in run.log


@pytest.mark.parametrize("case, token, reason", [
    ("expired", lambda: token_for(KEY, ALICE, now=datetime.now(UTC) - timedelta(hours=1)),
     "token expired"),
    ("forged", lambda: token_for(OTHER_KEY, ALICE), "unknown key id"),
    ("other audience", lambda: token_for(KEY, ALICE, audience="wn2.grid.example"),
     "wrong audience"),
    ("other issuer", lambda: token_for(KEY, ALICE, issuer="https://evil.example"),
     "wrong issuer"),
    ("carol's token", lambda: token_for(KEY, CAROL), "it is for 'carol', not alice"),
    ("alice's name, another id", lambda: token_for(KEY, {**ALICE, "id": CAROL["id"]}),
     "subject is not alice's global id"),
    ("no user name, carol's id", lambda: token_for(KEY, {**ALICE, "id": CAROL["id"]},
                                                   claims={}),
     "subject is not alice's global id"),
    ("mangled", lambda: token_for(KEY, ALICE)[:-4] + "AAAA", "bad signature"),
])
def test_tokens_that_must_not_log_alice_in(state: Path, case: str,
                                           token: Callable[[], str], reason: str) -> None:
    secret = token()
    run = run_helper("auth", state, secret=secret)
    assert run.code == EX_NOPERM, case
    assert reason in run.log
    assert secret not in run.log


def test_a_locked_user_is_refused_before_the_secret_is_read(state: Path) -> None:
    run = run_helper("auth", state, user="bob", stdin=UNREADABLE)
    assert run.code == EX_NOPERM and "locked on this node" in run.log


@pytest.mark.parametrize("user", ["dave", "root", "Alice", "a" * 40, "../alice", ""])
def test_users_outside_the_snapshot_end_at_once(state: Path, user: str) -> None:
    """Exit non-zero without reading the secret or asking anyone: the PAM stack then goes
    on to the local modules."""
    run = run_helper("auth", state, user=user, stdin=UNREADABLE)
    assert run.code == EX_NOUSER, run.log
    assert run.seconds < 1


def test_no_pam_user_at_all(state: Path) -> None:
    assert run_helper("account", state, user=None).code == EX_NOUSER


@pytest.mark.parametrize("secret, reason", [
    (b"", "no secret was typed"),
    (b"\n", "no secret was typed"),
    (b"abc\0def", "contains a NUL byte"),
    (b"\xff\xfepassword", "not UTF-8"),
    (b"x" * 20000, "longer than"),
])
def test_unusable_secrets(state: Path, secret: bytes, reason: str) -> None:
    run = run_helper("auth", state, secret=secret)
    assert run.code == EX_NOPERM and reason in run.log


def test_a_token_is_never_sent_as_a_password(state: Path) -> None:
    """A broken token is refused as a token; it never reaches the password endpoint (the
    issuer here does not even resolve: a network attempt would say so)."""
    run = run_helper("auth", state, secret="eyJhbGciOiJFUzI1NiJ9.broken")
    assert run.code == EX_NOPERM and "token refused" in run.log


def test_no_password_over_plain_http_to_another_host(tmp_path: Path) -> None:
    state = write_state(tmp_path / "state", keys=[KEY], issuer="http://vo.grid.example")
    run = run_helper("auth", state, secret="correct horse battery")
    assert run.code == EX_NOPERM
    assert "will not send a VO password over plain http" in run.log
    assert "correct horse" not in run.log


# -- account ------------------------------------------------------------------------------
def test_account_lets_in_active_members_only(state: Path) -> None:
    assert run_helper("account", state, user="alice").code == EX_OK
    assert run_helper("account", state, user="carol").code == EX_OK
    locked = run_helper("account", state, user="bob")
    assert locked.code == EX_NOPERM and "locked" in locked.log
    assert run_helper("account", state, user="dave").code == EX_NOUSER


def test_account_follows_the_snapshot(tmp_path: Path) -> None:
    """The token may still be valid: once the agent writes a snapshot where alice is
    locked (suspended) or gone (removed from the node's VOs), she is out."""
    state = write_state(tmp_path / "state", keys=[KEY])
    token = token_for(KEY, ALICE)
    assert run_helper("account", state).code == EX_OK
    write_state(state, keys=[KEY], users=[{**ALICE, "locked": True}, CAROL])
    assert run_helper("account", state).code == EX_NOPERM
    assert run_helper("auth", state, secret=token).code == EX_NOPERM
    write_state(state, keys=[KEY], users=[CAROL])
    assert run_helper("account", state).code == EX_NOUSER
    assert run_helper("auth", state, secret=token).code == EX_NOUSER


def test_a_missing_state_directory_refuses(tmp_path: Path) -> None:
    run = run_helper("account", tmp_path / "nowhere")
    assert run.code == EX_CONFIG and "does not exist" in run.log


def test_the_state_option_wins_over_the_environment(state: Path, tmp_path: Path) -> None:
    run = run_helper("account", tmp_path / "nowhere", args=["--state", str(state)])
    assert run.code == EX_OK, run.log


# -- the command line and the stage -----------------------------------------------------
@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["login"], ["auth", "--timeout", "0"],
                                  ["auth", "--timeout", "999"], ["auth", "--tim", "3"],
                                  ["session", "--home-base", "home"]])
def test_usage_errors_never_succeed(state: Path, argv: list[str]) -> None:
    """Not even --help exits 0: a mistyped pam_exec line must not let anyone in."""
    assert main(argv, environ={"PAM_USER": "alice"}, stdin=UNREADABLE) == EX_USAGE


@pytest.mark.parametrize("stage, pam_type", [("session", "account"), ("session", "auth"),
                                             ("account", "auth"), ("auth", "account"),
                                             ("account", "open_session")])
def test_a_helper_in_the_wrong_stage_refuses(state: Path, stage: str, pam_type: str) -> None:
    """E.g. "xos-pam session" on an account line would otherwise approve every XOS user."""
    run = run_helper(stage, state, pam_type=pam_type, secret=token_for(KEY, ALICE))
    assert run.code == EX_USAGE and "the pam_exec line must call" in run.log


def test_a_bug_fails_the_login_without_quoting_the_secret(state: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom with the secret hunter2 inside")

    monkeypatch.setattr("pam_module.online.check_password", broken)
    run = run_helper("auth", state, secret="hunter2")
    assert run.code == EX_SOFTWARE
    assert "internal error RuntimeError" in run.log and "hunter2" not in run.log


def test_the_watchdog_kills_a_stuck_helper(state: Path) -> None:
    """pam_exec waits for its child forever; the helper's own timer ends it (SIGALRM,
    default action: the kernel kills it even inside a blocking read)."""
    env = {"PATH": os.environ.get("PATH", ""), "PAM_USER": "alice", "PAM_TYPE": "auth",
           "XOS_NODE_STATE": str(state)}
    started = time.monotonic()
    proc = subprocess.Popen([PYTHON, "-I", "-m", "pam_module", "auth", "--timeout", "0.5"],
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        code = proc.wait(20)  # stdin stays open: the helper blocks reading the secret
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()
    assert code == -14  # SIGALRM
    assert time.monotonic() - started < 10


# -- session ------------------------------------------------------------------------------
def test_session_makes_a_private_home(state: Path, tmp_path: Path) -> None:
    homes = tmp_path / "home"
    homes.mkdir()
    old = os.umask(0o002)  # a lax umask: the home's mode must not depend on it
    try:
        run = run_helper("session", state, args=["--home-base", str(homes)])
    finally:
        os.umask(old)
    assert run.code == EX_OK, run.log
    st = (homes / "alice").stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (ALICE["uid"], ALICE["gid"])
    again = run_helper("session", state, args=["--home-base", str(homes)])
    assert again.code == EX_OK and "exists" in again.log


def test_session_close_does_nothing(tmp_path: Path) -> None:
    run = run_helper("session", tmp_path / "nowhere", pam_type="close_session")
    assert run.code == EX_OK


def test_session_refuses_locked_and_unknown_users(state: Path, tmp_path: Path) -> None:
    args = ["--home-base", str(tmp_path)]
    assert run_helper("session", state, user="bob", args=args).code == EX_NOPERM
    assert run_helper("session", state, user="dave", args=args).code == EX_NOUSER
    assert not (tmp_path / "bob").exists() and not (tmp_path / "dave").exists()


def test_session_never_adopts_a_foreign_home_or_a_symlink(state: Path, tmp_path: Path) -> None:
    args = ["--home-base", str(tmp_path)]
    (tmp_path / "alice").mkdir()  # owned by root, not by alice
    run = run_helper("session", state, args=args)
    assert run.code == EX_NOPERM and "not a directory owned by alice" in run.log
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "carol").symlink_to(target)
    assert run_helper("session", state, user="carol", args=args).code == EX_NOPERM
    assert target.stat().st_uid == 0


def test_make_home_checks_the_name_itself(tmp_path: Path) -> None:
    evil = SnapshotUser(id="x", name="../etc", uid=200009, gid=200009, display_name="",
                        locked=False)
    with pytest.raises(Refused, match="not a safe name"):
        make_home(evil, tmp_path)


def test_session_needs_a_home_base(state: Path, tmp_path: Path) -> None:
    run = run_helper("session", state, args=["--home-base", str(tmp_path / "missing")])
    assert run.code == EX_CONFIG


def test_snapshot_users_with_odd_but_valid_names(tmp_path: Path) -> None:
    users = [user_entry("_svc-1", 300000), user_entry("a" * 32, 300001)]
    state = write_state(tmp_path / "state", keys=[KEY], users=users)
    for user in users:
        run = run_helper("auth", state, user=user["name"], secret=token_for(KEY, user))
        assert run.code == EX_OK, run.log

