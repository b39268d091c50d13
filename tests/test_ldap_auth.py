"""Institutional LDAP logins against a real, throwaway slapd (see tests/e2e/slapd.py).

Why a real server: escaping, binds, StartTLS and certificate checks are only proven by
what the server sees. slapd's ``stats`` log is the witness: it shows every connection,
search filter and bind (with its TLS strength), so tests can assert that a refused
username never reached the server and that no password was sent without TLS.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e.slapd import Slapd, ThrowawayCA, free_port, ldif_record, missing_tools

from vo_service.auth.ldap import (
    WRONG,
    LdapDirectory,
    LdapError,
    LdapIdentity,
    clean_email,
    clean_text,
)
from vo_service.errors import AuthenticationRequired, ConfigurationError, InvalidInput

ALICE_PASSWORD = "correct horse ✓ pässwörd"
STAR_PASSWORD = "the star's own password"
TWIN_PASSWORD = "twin password"
EVIL_CN = "Mal\r\nlory\x1b[2J\x07\u202etxt.exe"
LONG_MAIL = "x" * 10_000 + "@example.org"
_BIND = re.compile(r'conn=(\d+) op=\d+ BIND dn="([^"]*)" mech=SIMPLE bind_ssf=\d+ ssf=(\d+)')


def new_slapd(**options: Any) -> Slapd:
    """A Slapd to enter, or a skip when this machine has no slapd."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"slapd is not installed (missing {', '.join(missing)})")
    return Slapd(**options)


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    """The directory most tests use: TLS, anonymous search allowed, a mixed population."""
    with new_slapd() as server:
        server.add_user("alice", ALICE_PASSWORD, "Alice Liddell", "alice@example.org")
        server.add_user("al*", STAR_PASSWORD, "A user literally named al*")
        server.add_user("starplayer", "irrelevant", "Star * Player")
        server.add_user("mallory", "mallory password", EVIL_CN,
                        [LONG_MAIL, "two words@example.org", "mallory@example.org"])
        server.add_user("longmail", "longmail password", "L" * 1000, LONG_MAIL)
        server.add_user("nomail", "nomail password", ["\x1b\x07", "No Mail"])
        server.add_user("dora", "dora password", "dora cn", displayName="Dora D.")
        server.add_user("twin", TWIN_PASSWORD, "Twin One")
        server.add_ldif(ldif_record(f"uid=twin,{server.groups_dn}", {
            "objectClass": "inetOrgPerson", "uid": "twin", "cn": "Twin Two", "sn": "Two"}))
        server.add_group("atlas", ["alice", "dora"])
        yield server


@pytest.fixture(scope="module")
def plain_slapd() -> Iterator[Slapd]:
    """A directory without any TLS: StartTLS must fail before a password is sent."""
    with new_slapd(tls=False) as server:
        yield server


@pytest.fixture(scope="module")
def private_slapd() -> Iterator[Slapd]:
    """A directory that shows nothing to anonymous searches: needs the service account."""
    with new_slapd(anonymous_read=False) as server:
        server.add_user("alice", ALICE_PASSWORD, "Alice Private", "alice@example.org")
        yield server


@pytest.fixture(scope="module")
def foreign_ca_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="xos-foreign-ca-") as folder:
        path = Path(folder, "ca.pem")
        path.write_bytes(ThrowawayCA("Some Other CA").cert_pem)
        yield str(path)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def settings(server: Slapd, url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"LDAP_URL": url or server.url, "LDAP_CA_FILE": server.ca_cert_path,
            "LDAP_BASE_DN": server.base_dn, "LDAP_TIMEOUT": 2, **extra}


def reader(server: Slapd) -> dict[str, str]:
    return {"LDAP_BIND_DN": server.reader_dn, "LDAP_BIND_PASSWORD": server.reader_password}


@contextmanager
def watching(server: Slapd) -> Iterator[list[str]]:
    """Collects the log lines slapd writes while the block runs."""
    start = len(server.log_text())
    lines: list[str] = []
    yield lines
    lines.extend(server.log_text()[start:].splitlines())


def binds(lines: list[str]) -> list[tuple[str, str, int]]:
    """(connection, DN, TLS strength) of every simple bind in ``lines``."""
    return [(m[1], m[2], int(m[3])) for m in map(_BIND.search, lines) if m]


# -- logging in ------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["starttls", "ldaps", "starttls-by-name"])
def test_right_password_gives_the_identity_over_tls(slapd: Slapd, how: str) -> None:
    url = {"starttls": slapd.url, "ldaps": slapd.ldaps_url,
           "starttls-by-name": slapd.url.replace("127.0.0.1", "localhost")}[how]
    with watching(slapd) as log:
        identity = LdapDirectory(settings(slapd, url)).authenticate("alice", ALICE_PASSWORD)
    assert identity == LdapIdentity(dn=slapd.user_dn("alice"), username="alice",
                                    display_name="Alice Liddell", email="alice@example.org")
    user_binds = [b for b in binds(log) if b[1] == slapd.user_dn("alice")]
    assert len(user_binds) == 1 and user_binds[0][2] >= 128  # the password went over TLS


def test_username_case_follows_the_directory(slapd: Slapd) -> None:
    identity = LdapDirectory(settings(slapd)).authenticate("ALICE", ALICE_PASSWORD)
    assert identity.username == "alice"


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong password"),
    ("alice", ALICE_PASSWORD.upper()),
    ("nobody", ALICE_PASSWORD),
    ("alice", ""),
    ("twin", TWIN_PASSWORD),  # two entries match: refused even with the right password
])
def test_refusals_all_say_the_same(slapd: Slapd, username: str, password: str) -> None:
    with pytest.raises(AuthenticationRequired, match=f"^{WRONG}$"):
        LdapDirectory(settings(slapd)).authenticate(username, password)


def test_empty_password_never_reaches_the_server(slapd: Slapd) -> None:
    """An empty password is an unauthenticated bind, which slapd would accept."""
    with watching(slapd) as log, pytest.raises(AuthenticationRequired, match=f"^{WRONG}$"):
        LdapDirectory(settings(slapd)).authenticate("alice", "")
    assert not [line for line in log if "ACCEPT" in line]


@pytest.mark.parametrize("username", [
    "*", "al*", "alice*", "alice)(uid=*", "*)(|(uid=*", "alice\x00", "alice\n", "",
    "a" * 65, "alice smith", "alice\\2a", "ålice",
])
def test_filter_injection_is_refused_without_contacting_the_server(
        slapd: Slapd, username: str) -> None:
    password = STAR_PASSWORD if username == "al*" else ALICE_PASSWORD
    with watching(slapd) as log, pytest.raises(AuthenticationRequired, match=f"^{WRONG}$"):
        LdapDirectory(settings(slapd)).authenticate(username, password)
    assert not [line for line in log if "ACCEPT" in line or "SRCH" in line]


def test_search_text_is_escaped_not_a_filter(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd))
    with watching(slapd) as log:
        found = directory.search("*")
    # Only the entry whose cn really holds a "*" ("al*" has no username of the allowed
    # shape and is left out); an unescaped "*" would have matched everyone.
    assert [i.username for i in found] == ["starplayer"]
    assert any("(cn=*\\2A*)" in line for line in log)
    assert directory.search(")(uid=*") == []
    assert [i.username for i in directory.search("lice")] == ["alice"]


def test_search_lists_with_a_limit_and_checks_its_input(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd))
    everyone = {i.username for i in directory.search()}
    assert {"alice", "starplayer", "mallory", "longmail", "nomail", "dora"} <= everyone
    assert "al*" not in everyone
    assert len(directory.search(limit=1)) == 1
    assert len(directory.search(limit=3)) <= 3  # "al*" counts, but is left out
    with pytest.raises(InvalidInput, match="limit"):
        directory.search(limit=0)
    with pytest.raises(InvalidInput, match="printable"):
        directory.search("a\x00b")


# -- what the directory says is hostile ------------------------------------------------
def test_hostile_attribute_values_come_back_sanitized(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd))
    mallory = directory.authenticate("mallory", "mallory password")
    assert mallory.display_name == "Mal lory[2Jtxt.exe"  # controls and RTL override gone
    assert mallory.email == "mallory@example.org"  # first *valid* of three values
    longmail = directory.authenticate("longmail", "longmail password")
    assert longmail.display_name == "L" * 128
    assert longmail.email is None  # a 10,000-character address is no address, never cut
    nomail = directory.authenticate("nomail", "nomail password")
    assert (nomail.display_name, nomail.email) == ("No Mail", None)


def test_attribute_names_are_configurable(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(
        slapd, LDAP_ATTRIBUTES={"display_name": "displayName"}))
    assert directory.authenticate("dora", "dora password").display_name == "Dora D."


@pytest.mark.parametrize(("raw", "expected"), [
    (b"Plain Name", "Plain Name"),
    (b"bad \xff\xfe utf-8", "bad \ufffd\ufffd utf-8"),
    (b"tab\tnew\nline\x00nul", "tab new linenul"),
    ("zero\u200bwidth \u202eRTL".encode(), "zerowidth RTL"),
    (b"  \x1b[31m  ", "[31m"),
    (b"\x01\x02", ""),
])
def test_clean_text(raw: bytes, expected: str) -> None:
    assert clean_text(raw, 128) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (b"a@example.org", "a@example.org"),
    (b"a@b@example.org", None),
    (b"a @example.org", None),
    (b"a@example.org\n", None),
    (b"\xff@example.org", None),
    (b"@example.org", None),
    (b"a@", None),
    (b"a@.example.org", None),
    (b"a" * 243 + b"@example.org", None),
    (b"a" * 242 + b"@example.org", "a" * 242 + "@example.org"),
])
def test_clean_email(raw: bytes, expected: str | None) -> None:
    assert clean_email(raw) == expected


# -- TLS is not optional ---------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_certificate_from_another_ca_is_refused(
        slapd: Slapd, foreign_ca_file: str, scheme: str,
        caplog: pytest.LogCaptureFixture) -> None:
    url = slapd.url if scheme == "ldap" else slapd.ldaps_url
    directory = LdapDirectory(settings(slapd, url, LDAP_CA_FILE=foreign_ca_file,
                                       **reader(slapd)))
    caplog.set_level("DEBUG", logger="vo_service.auth.ldap")
    with watching(slapd) as log, pytest.raises(LdapError, match="TLS"):
        directory.authenticate("alice", ALICE_PASSWORD)
    assert "certificate verify failed" in caplog.text
    assert binds(log) == []


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_certificate_for_another_name_is_refused(
        scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    with new_slapd(server_names=("other.example",)) as server:
        url = server.url if scheme == "ldap" else server.ldaps_url
        caplog.set_level("DEBUG", logger="vo_service.auth.ldap")
        with watching(server) as log, pytest.raises(LdapError, match="TLS"):
            LdapDirectory(settings(server, url, **reader(server))).authenticate(
                "alice", ALICE_PASSWORD)
        assert "IP address mismatch" in caplog.text
        assert binds(log) == []


@pytest.mark.parametrize("account", ["service", "anonymous"])
def test_starttls_refused_means_no_password_is_sent(plain_slapd: Slapd, account: str) -> None:
    extra = reader(plain_slapd) if account == "service" else {}
    with watching(plain_slapd) as log, pytest.raises(LdapError, match="TLS"):
        LdapDirectory(settings(plain_slapd, **extra)).authenticate("alice", ALICE_PASSWORD)
    assert any("EXT oid=1.3.6.1.4.1.1466.20037" in line for line in log)  # StartTLS asked
    assert not [line for line in log if " BIND " in line or " SRCH " in line]


# -- the directory is down or slow -----------------------------------------------------
def test_closed_port_fails_fast() -> None:
    directory = LdapDirectory({"LDAP_URL": f"ldap://127.0.0.1:{free_port()}",
                               "LDAP_BASE_DN": "dc=grid,dc=example"})
    started = time.monotonic()
    with pytest.raises(LdapError) as caught:
        directory.authenticate("alice", ALICE_PASSWORD)
    assert time.monotonic() - started < 1
    assert caught.value.status == 502 and caught.value.title == "Directory unavailable"


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_silent_server_times_out(silent_port: int, scheme: str) -> None:
    directory = LdapDirectory({"LDAP_URL": f"{scheme}://127.0.0.1:{silent_port}",
                               "LDAP_BASE_DN": "dc=grid,dc=example", "LDAP_TIMEOUT": 1})
    started = time.monotonic()
    with pytest.raises(LdapError):
        directory.authenticate("alice", ALICE_PASSWORD)
    assert 0.9 < time.monotonic() - started < 3


# -- who searches ----------------------------------------------------------------------
def test_anonymous_search_binds_only_as_the_user(slapd: Slapd) -> None:
    with watching(slapd) as log:
        LdapDirectory(settings(slapd)).authenticate("alice", ALICE_PASSWORD)
    searching = {line.split("conn=")[1].split()[0] for line in log if "(uid=alice)" in line}
    assert len(searching) == 1
    assert [(dn, ssf >= 128) for conn, dn, ssf in binds(log)] == \
        [(slapd.user_dn("alice"), True)]
    assert searching.isdisjoint(conn for conn, _, _ in binds(log))


def test_service_account_searches_over_tls(slapd: Slapd) -> None:
    with watching(slapd) as log:
        identity = LdapDirectory(settings(slapd, **reader(slapd))).authenticate(
            "alice", ALICE_PASSWORD)
    assert identity.username == "alice"
    assert [(dn, ssf >= 128) for _, dn, ssf in binds(log)] == \
        [(slapd.reader_dn, True), (slapd.user_dn("alice"), True)]


def test_private_directory_needs_the_service_account(private_slapd: Slapd) -> None:
    anonymous = LdapDirectory(settings(private_slapd))
    with pytest.raises(LdapError, match="LDAP_BASE_DN is not visible"):
        anonymous.authenticate("alice", ALICE_PASSWORD)
    with pytest.raises(LdapError, match="LDAP_BASE_DN is not visible"):
        anonymous.search()
    service = LdapDirectory(settings(private_slapd, **reader(private_slapd)))
    assert service.authenticate("alice", ALICE_PASSWORD).display_name == "Alice Private"
    assert [i.username for i in service.search()] == ["alice"]


def test_wrong_service_password_is_a_directory_error(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd, LDAP_BIND_DN=slapd.reader_dn,
                                       LDAP_BIND_PASSWORD="not the password"))
    with pytest.raises(LdapError, match="service account"):
        directory.authenticate("alice", ALICE_PASSWORD)


# -- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"LDAP_URL": None}, "LDAP_URL is not set"),
    ({"LDAP_URL": "http://ldap.example.org"}, "LDAP_URL must look like"),
    ({"LDAP_URL": "ldap://ldap.example.org/dc=x"}, "LDAP_URL must look like"),
    ({"LDAP_URL": "ldap://user@ldap.example.org"}, "LDAP_URL must look like"),
    ({"LDAP_URL": "ldap://ldap.example.org:99999"}, "bad port"),
    ({"LDAP_BASE_DN": None}, "LDAP_BASE_DN is not set"),
    ({"LDAP_BASE_DN": "not a dn"}, "is not a DN"),
    ({"LDAP_USER_FILTER": "(uid=alice)"}, "LDAP_USER_FILTER"),
    ({"LDAP_USER_FILTER": "uid={username}"}, "LDAP_USER_FILTER"),
    ({"LDAP_BIND_DN": "cn=reader,dc=grid,dc=example"}, "go together"),
    ({"LDAP_TIMEOUT": 0.5}, "LDAP_TIMEOUT"),
    ({"LDAP_TIMEOUT": 0}, "LDAP_TIMEOUT"),
    ({"LDAP_ATTRIBUTES": {"uid": "uid"}}, "LDAP_ATTRIBUTES"),
    ({"LDAP_ATTRIBUTES": {"email": "mail)(x"}}, "not an attribute name"),
    ({"LDAP_CA_FILE": "/nonexistent/ca.pem"}, "LDAP_CA_FILE cannot be loaded"),
])
def test_unusable_configuration_is_refused(changes: dict[str, Any], message: str) -> None:
    config = {"LDAP_URL": "ldaps://ldap.example.org", "LDAP_BASE_DN": "dc=grid,dc=example",
              **changes}
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        LdapDirectory(config)


# -- the harness itself ----------------------------------------------------------------
def test_slapd_leaves_no_process_and_no_file() -> None:
    with new_slapd(tls=False) as server:
        pid, folder = server.pid, server.dir
        assert folder is not None and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_slapd_dies_with_a_killed_pytest() -> None:
    """pytest SIGKILLed mid-test: slapd (pdeathsig) and its folder (guard) still go."""
    new_slapd()  # skips without slapd
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from e2e.slapd import Slapd; "
         "s = Slapd().__enter__(); print(s.pid, s.dir, flush=True); time.sleep(60)"],
        cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child.stdout:
        try:
            pid, folder = child.stdout.readline().split()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (Path(folder).exists() or _alive(int(pid))):
        time.sleep(0.02)
    assert not Path(folder).exists()
    assert not _alive(int(pid))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# -- through the service: a VO user linked to a directory account ------------------------
@pytest.fixture
def ldap_app(database_url: str, slapd: Slapd) -> Iterator[Any]:
    from support import make_app, rolled_back

    app = make_app(database_url, **settings(slapd))
    with rolled_back(app):
        yield app


def test_a_linked_user_logs_in_with_the_directory_password(ldap_app: Any) -> None:
    from vo_service.auth.passwords import PasswordService
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db
    from vo_service.memberships.services import MembershipService
    from vo_service.users.services import UserService
    from vo_service.vos.services import VOService

    ctx = ServiceContext.build(db.session, ldap_app.config)
    system = Actor.system("pytest")
    grid_alice = UserService(ctx).create(system, "galice", "Alice (grid)")
    MembershipService(ctx).add(system, VOService(ctx).create(system, "atlas"), grid_alice)
    PasswordService(ctx).link_ldap(system, grid_alice, "alice")
    db.session.commit()
    client = ldap_app.test_client()

    def login(password: str) -> tuple[int, dict[str, Any]]:
        response = client.post("/oauth/token", data={
            "grant_type": "password", "client_id": "xos-login", "username": "galice",
            "password": password})
        return response.status_code, response.get_json()

    status, body = login(ALICE_PASSWORD)
    assert status == 200 and body["access_token"], body
    status, body = login("not alice's password")
    assert (status, body["error_description"]) == (400, "wrong username or password")
    # the directory is only ever asked about the linked account, never the typed name
    response = client.post("/oauth/token", data={
        "grant_type": "password", "client_id": "xos-login", "username": "*)(uid=*",
        "password": ALICE_PASSWORD})
    assert response.get_json()["error_description"] == "wrong username or password"


@pytest.mark.parametrize("name", ["*", "alice)(uid=*", "alice smith", "", "a" * 65])
def test_links_only_to_directory_shaped_names(ldap_app: Any, name: str) -> None:
    from vo_service.auth.passwords import PasswordService
    from vo_service.authz import Actor
    from vo_service.context import ServiceContext
    from vo_service.db import db
    from vo_service.errors import InvalidInput
    from vo_service.users.services import UserService

    ctx = ServiceContext.build(db.session, ldap_app.config)
    user = UserService(ctx).create(Actor.system("pytest"), "linkme", "Link Me")
    with pytest.raises(InvalidInput, match="an LDAP username is"):
        PasswordService(ctx).link_ldap(Actor.system("pytest"), user, name)
