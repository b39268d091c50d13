"""End to end: the real ``xos-login`` console script against the real VO service.

Why: the SSO tests drive the endpoints through Flask's test client; only a separate
process that speaks HTTP to a running service shows that a researcher's command really
logs in (password and device flow approved on the /device page), keeps its credentials
private (0600 in 0700, atomic writes), refreshes with rotation, fetches certificates
that openssl and ssh-keygen accept, logs out for good, and says in one line what went
wrong instead of printing a traceback.

One module-scoped service as in ``test_ca_service``: a migrated SQLite file, the app
served by werkzeug on a free port of 127.0.0.1, seeded through the domain services.
Every command runs as ``.venv/bin/xos-login`` with its own HOME and XDG_CONFIG_HOME.
Everything (server threads, database, homes, processes) is gone at the end of the module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.cookiejar
import ipaddress
import json
import os
import queue
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

import xos_tokens
from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService
from xos_login import http as client
from xos_login import oauth
from xos_login.errors import LoginError

from .live import live_service

XOS_LOGIN = Path(sys.executable).with_name("xos-login")
PASSWORD = "correct horse battery"
NODE = "wn1.grid.example"
TIMEOUT = 30
# The commands must talk to 127.0.0.1 directly, whatever proxy the environment names.
BASE_ENV = {k: v for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith("XOS_")}
BASE_ENV |= {"TZ": "UTC", "LC_ALL": "C.UTF-8", "no_proxy": "*", "NO_PROXY": "*"}
JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
USER_CODE = re.compile(r"\b([B-Z]{4}-[B-Z]{4})\b")


# -- the service ---------------------------------------------------------------------------
@dataclass
class Service:
    base: str
    work: Path
    app: Any

    def call(self, method: str, path: str, form: dict[str, str] | None = None,
             bearer: str | None = None,
             opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
        """One plain HTTP request (no proxy): status and body text."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers)
        opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, text = self.call(method, path, **kw)
        return status, json.loads(text)

    def keys(self) -> xos_tokens.KeySet:
        status, document = self.json("GET", "/oauth/jwks")
        assert status == 200
        return xos_tokens.KeySet(document)

    def verify(self, token: str, audience: str | None = None) -> xos_tokens.Claims:
        return xos_tokens.verify_access_token(token, keys=self.keys(), issuer=self.base,
                                              audience=audience or self.base)

    def refresh(self, refresh_token: str) -> tuple[int, Any]:
        return self.json("POST", "/oauth/token", form={
            "grant_type": "refresh_token", "client_id": "xos-login",
            "refresh_token": refresh_token})


def _seed(app: Any) -> None:
    """alice: active in atlas, group /atlas/analysis, role production; pete: pending in
    cms; node wn1 serves atlas."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("e2e-login")
        users = UserService(ctx)
        alice = users.create(system, "alice", "Alice")
        pete = users.create(system, "pete", "Pete")
        vos, members = VOService(ctx), MembershipService(ctx)
        atlas, cms = vos.create(system, "atlas"), vos.create(system, "cms")
        analysis = vos.create_group(system, atlas, "/atlas/analysis")
        production = vos.create_role(system, atlas, "production")
        members.add(system, atlas, alice)
        members.add_to_group(system, atlas, analysis, alice)
        members.set_role(system, atlas, alice, production, True)
        members.request(Actor(label="user:pete", user_id=pete.id, is_service_admin=False),
                        cms, pete)
        for user in (alice, pete):
            PasswordService(ctx).set(system, user, PASSWORD)
        NodeService(ctx).register(system, NODE, vos=["atlas"])
        db.session.commit()
        db.session.remove()


def _stop(server: Any, thread: threading.Thread | None) -> None:
    if thread is not None:
        server.shutdown()
        thread.join(10)
    server.server_close()


@pytest.fixture(scope="module")
def service(instance_path: str) -> Iterator[Service]:
    """The real VO service on 127.0.0.1:<free port>, stopped and wiped at module end."""
    with live_service(_seed, prefix="xos-login-e2e-", DEVICE_POLL_SECONDS=1) as live:
        yield Service(live.base, live.work, live.app)
    # live_service checked the server and its folder are gone; and no xos-login process
    # is left (each was waited for; a leftover would still be our child).
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if children.exists():
        for pid in children.read_text().split():
            with contextlib.suppress(FileNotFoundError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert b"xos-login" not in cmdline, cmdline


# -- a researcher's machine ----------------------------------------------------------------
@dataclass
class Laptop:
    """A home directory and the environment xos-login runs in."""

    service: Service
    home: Path

    @property
    def config(self) -> Path:
        return self.home / ".config" / "xos"

    @property
    def credentials_path(self) -> Path:
        return self.config / "credentials.json"

    def env(self, **extra: str | None) -> dict[str, str]:
        env = BASE_ENV | {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                          "XOS_URL": self.service.base}
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, stdin: str | None = None, ok: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(XOS_LOGIN), *args], input=stdin or "",
                                capture_output=True, text=True, timeout=TIMEOUT,
                                env=env or self.env(), check=False)
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def fail(self, *args: str, **kw: Any) -> str:
        """Run a command that must fail: non-zero exit, exactly one line on stderr."""
        result = self.run(*args, ok=False, **kw)
        assert result.returncode != 0, (args, result.stdout)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("xos-login: "), result.stderr
        return lines[0]

    def login(self, username: str = "alice", password: str = PASSWORD,
              **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("login", "--password", "--username", username, "--password-stdin",
                        stdin=password + "\n", **kw)

    def stored(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.credentials_path.read_text())
        return data

    def store(self, **changes: str) -> None:
        self.credentials_path.write_text(json.dumps(self.stored() | changes))

    def expire_access_token(self) -> None:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        self.store(access_token_expires_at=past.isoformat())


@pytest.fixture
def laptop(service: Service) -> Iterator[Laptop]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=service.work))
    yield Laptop(service, home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def alice(laptop: Laptop) -> Laptop:
    laptop.login()
    return laptop


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def closed_port() -> socket.socket:
    """A bound port nobody listens on: connecting to it is refused, reliably."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# -- the package stays client-only ---------------------------------------------------------
def test_xos_login_imports_no_server_code() -> None:
    code = ("import sys, xos_login.cli; bad = sorted(m for m in sys.modules"
            " if m.split('.')[0] in ('vo_service', 'flask', 'sqlalchemy', 'werkzeug'));"
            " print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- password login, token, status, files --------------------------------------------------
def test_password_login_token_and_status(service: Service, laptop: Laptop) -> None:
    assert laptop.run("status", ok=False).stdout.strip() == "not logged in"
    out = laptop.login().stdout
    assert f"Logged in as alice at {service.base}" in out

    token = laptop.run("token").stdout
    assert JWT.match(token.strip()) and token.count("\n") == 1  # the token, nothing else
    claims = service.verify(token.strip())
    assert claims.preferred_username == "alice"
    assert claims.groups == ["/atlas", "/atlas/analysis"]

    status = laptop.run("status").stdout
    assert f"logged in as alice at {service.base}" in status
    assert "groups: /atlas, /atlas/analysis" in status
    assert "roles: /atlas/Role=production" in status
    assert re.search(r"access token expires \S+ \S+ UTC \(in (9|10) min\)", status), status

    # Private: 0600 in a 0700 directory, no temporary files left behind.
    assert mode(laptop.config) == 0o700 and mode(laptop.credentials_path) == 0o600
    assert sorted(p.name for p in laptop.config.iterdir()) == [
        ".credentials.lock", "config.json", "credentials.json"]
    stored = laptop.stored()
    assert stored["username"] == "alice" and stored["url"] == service.base
    assert stored["refresh_token"].startswith("xrt_")
    assert stored["access_token"] == token.strip()
    # A valid cached token is reused: no refresh, the refresh token stays.
    assert laptop.run("token").stdout == token
    assert laptop.stored()["refresh_token"] == stored["refresh_token"]


def test_a_new_login_replaces_and_ends_the_old_one(service: Service, alice: Laptop) -> None:
    old = alice.stored()["refresh_token"]
    alice.login()
    assert alice.stored()["refresh_token"] != old
    status, body = service.refresh(old)
    assert status == 400 and "revoked" in body["error_description"]
    alice.expire_access_token()
    alice.run("token")


def test_an_expired_access_token_is_refreshed_and_rotated(service: Service,
                                                          alice: Laptop) -> None:
    before = alice.stored()
    alice.expire_access_token()
    token = alice.run("token").stdout.strip()
    after = alice.stored()
    assert token == after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert dt.datetime.fromisoformat(after["access_token_expires_at"]) > \
        dt.datetime.now(dt.UTC) + dt.timedelta(minutes=9)
    assert service.verify(token).preferred_username == "alice"

    # The replaced refresh token is spent: showing it again is taken as theft, and the
    # service ends the whole login, which xos-login then reports and forgets.
    status, body = service.refresh(before["refresh_token"])
    assert status == 400 and "already used" in body["error_description"]
    alice.expire_access_token()
    line = alice.fail("token")
    assert line.startswith("xos-login: your login has ended (")
    assert line.endswith("; run 'xos-login login'")
    assert not alice.credentials_path.exists()
    assert alice.fail("token") == "xos-login: not logged in: run 'xos-login login'"


def test_parallel_token_commands_refresh_once(service: Service, alice: Laptop) -> None:
    """Four scripts asking at once must not redeem one refresh token twice (which would
    end the login): the store's lock makes the first refresh and the rest reuse it."""
    alice.expire_access_token()
    procs = [subprocess.Popen([str(XOS_LOGIN), "token"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=alice.env())
             for _ in range(4)]
    outputs = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, err
            outputs.append(out)
    assert len(set(outputs)) == 1
    alice.expire_access_token()
    alice.run("token")  # the login lives on


def test_a_token_for_a_node(service: Service, alice: Laptop) -> None:
    before = alice.stored()
    run = alice.run("token", "--audience", NODE)
    node_token = run.stdout.strip()
    claims = service.verify(node_token, audience=NODE)
    assert claims.audience == [NODE]
    assert claims.subject == service.verify(before["access_token"]).subject
    assert claims.preferred_username is None  # compact: it must fit through pam_exec
    assert len(node_token) <= 511 and "warning" not in run.stderr
    after = alice.stored()
    assert after["access_token"] == before["access_token"]  # not cached as the main one
    assert after["refresh_token"] != before["refresh_token"]  # but the rotation is kept
    assert alice.run("token").stdout.strip() == before["access_token"]
    alice.expire_access_token()
    assert service.verify(alice.run("token").stdout.strip()).audience == [service.base]


# -- the device flow -----------------------------------------------------------------------
def approve_on_the_page(service: Service, user_code: str, decision: str = "approve") -> str:
    """What the user does in the browser: open the page, sign in, press the button."""
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    status, page = service.call("GET", f"/device?user_code={user_code}", opener=browser)
    assert status == 200
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, page
    status, page = service.call("POST", "/device", opener=browser, form={
        "csrf_token": match.group(1), "user_code": user_code, "username": "alice",
        "password": PASSWORD, "decision": decision})
    assert status == 200, page
    return page


def device_login(service: Service, laptop: Laptop, decision: str
                 ) -> tuple[int, str, str, str]:
    """Run ``xos-login login``, approve (or deny) the code it prints, wait for it."""
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen([str(XOS_LOGIN), "login"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                          env=laptop.env()) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        stdout = proc.stdout

        def read_lines() -> None:  # the command sleeps between polls: read as it prints
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        try:
            shown: list[str] = []
            code = None
            while code is None:
                shown.append(lines.get(timeout=TIMEOUT))
                found = USER_CODE.search(shown[-1])
                code = found.group(1) if found else None
            page = approve_on_the_page(service, code, decision)
            proc.wait(timeout=TIMEOUT)
            error = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(TIMEOUT)
    while not lines.empty():
        shown.append(lines.get())
    assert "Traceback" not in error, error
    assert f"open {service.base}/device and enter the code" in shown[0]
    assert any(f"{service.base}/device?user_code={code}" in line for line in shown)
    return proc.returncode, "".join(shown), error, page


class ScriptedService(client.Service):
    """The token endpoint's answers in order, without a network: for the polling rules
    (interval, slow_down, expiry) that would take minutes against the real service."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        super().__init__("http://127.0.0.1:1")
        self.answers = list(answers)

    def post_form(self, path: str, fields: dict[str, str]) -> client.Answer:
        assert path == "/oauth/token" and fields["grant_type"] == oauth.DEVICE_GRANT
        status, body = self.answers.pop(0)
        return client.Answer(status, json.dumps(body).encode())


def pending(error: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": error, "error_description": error.replace("_", " ")}


def test_device_polling_honours_interval_and_slow_down() -> None:
    start = oauth.DeviceStart("dc", "BCDF-GHJK", "https://vo/device", None, interval=2,
                              expires_in=600)
    naps: list[float] = []
    scripted = ScriptedService(pending("authorization_pending"), pending("slow_down"),
                               pending("authorization_pending"),
                               (200, {"access_token": "a.b.c", "expires_in": 600,
                                      "refresh_token": "xrt_x", "token_type": "Bearer"}))
    tokens = oauth.wait_for_approval(scripted, start, sleep=naps.append, clock=lambda: 0.0)
    assert naps == [2, 2, 7, 7] and tokens.refresh_token == "xrt_x"

    for answer, message in ((pending("expired_token"), "the code expired; run xos-login"
                             " login again"),
                            ((400, {"error": "access_denied",
                                    "error_description": "you said no"}), "you said no")):
        with pytest.raises(LoginError, match=f"^{message}$"):
            oauth.wait_for_approval(ScriptedService(answer), start, sleep=naps.append,
                                    clock=lambda: 0.0)
    # The client stops by itself when the code's lifetime is over.
    clock = iter(range(0, 10_000, 300))
    with pytest.raises(LoginError, match="the code expired"):
        oauth.wait_for_approval(ScriptedService(*[pending("authorization_pending")] * 9),
                                start, sleep=naps.append, clock=lambda: float(next(clock)))


def test_device_login_approved_in_the_browser(service: Service, laptop: Laptop) -> None:
    code, out, err, page = device_login(service, laptop, "approve")
    assert "Approved" in page
    assert code == 0, out + err
    assert "Logged in as alice" in out
    assert mode(laptop.credentials_path) == 0o600
    token = laptop.run("token").stdout.strip()
    assert service.verify(token).preferred_username == "alice"


def test_device_login_denied_in_the_browser(service: Service, laptop: Laptop) -> None:
    code, out, err, page = device_login(service, laptop, "deny")
    assert "Denied" in page
    assert code == os.EX_NOPERM
    assert err.startswith("xos-login: ") and err.count("\n") == 1 and "denied" in err
    assert not laptop.credentials_path.exists()


# -- certificates --------------------------------------------------------------------------
def tool(*argv: str | Path) -> str:
    result = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True,
                            timeout=TIMEOUT, env=BASE_ENV, check=False)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("ssh-keygen")),
                    reason="needs openssl and ssh-keygen")
def test_cert_makes_keys_here_and_fetches_certificates(service: Service,
                                                       alice: Laptop) -> None:
    out = alice.run("cert", "--vo", "atlas", "--role", "/atlas/Role=production",
                    "--hours", "2").stdout
    config = alice.config
    assert "ssh -i ~/.config/xos/id_xos_ed25519 alice@NODE" in out
    for name in ("xos.pem", "xos-chain.pem", "xos.key", "id_xos_ed25519",
                 "id_xos_ed25519.pub", "id_xos_ed25519-cert.pub"):
        assert f"~/.config/xos/{name}" in out
    assert mode(config / "xos.key") == mode(config / "id_xos_ed25519") == 0o600

    # openssl: the certificate chains to the service's root and certifies our key.
    status, root = service.call("GET", "/ca/root.pem")
    assert status == 200
    (service.work / "root.pem").write_text(root)
    verified = tool("openssl", "verify", "-CAfile", service.work / "root.pem",
                    "-untrusted", config / "xos-chain.pem", config / "xos.pem")
    assert verified.strip() == f"{config / 'xos.pem'}: OK"
    assert tool("openssl", "pkey", "-in", config / "xos.key", "-pubout") == \
        tool("openssl", "x509", "-in", config / "xos.pem", "-noout", "-pubkey")
    text = tool("openssl", "x509", "-in", config / "xos.pem", "-noout", "-subject", "-enddate")
    assert "CN = alice" in text
    end = dt.datetime.strptime(text.split("notAfter=")[1].strip(), "%b %d %H:%M:%S %Y %Z")
    assert end.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=2)

    # ssh-keygen: a user certificate for alice on our ed25519 key.
    listing = tool("ssh-keygen", "-L", "-f", config / "id_xos_ed25519-cert.pub")
    assert "user certificate" in listing
    assert re.search(r"Principals: *\n\s+alice\n", listing), listing
    public = tool("ssh-keygen", "-y", "-f", config / "id_xos_ed25519").split()[:2]
    assert (config / "id_xos_ed25519.pub").read_text().split()[:2] == public

    alice.run("logout", "--all")
    assert sorted(p.name for p in config.iterdir()) == [".credentials.lock", "config.json"]


# -- logout --------------------------------------------------------------------------------
def test_logout_revokes_at_the_service(service: Service, alice: Laptop) -> None:
    stored = alice.stored()
    out = alice.run("logout").stdout
    assert f"Logged out alice from {service.base}" in out
    assert not alice.credentials_path.exists()
    status, body = service.refresh(stored["refresh_token"])
    assert status == 400 and "revoked" in body["error_description"]
    status, body = service.json("GET", "/oauth/userinfo", bearer=stored["access_token"])
    assert status == 401 and "revoked" in body["error_description"]
    assert alice.fail("token") == "xos-login: not logged in: run 'xos-login login'"
    assert alice.run("status", ok=False).stdout.strip() == "not logged in"


def test_logout_works_without_the_service(service: Service, alice: Laptop) -> None:
    with closed_port() as sock:
        alice.store(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
        result = alice.run("logout", env=alice.env(XOS_URL=None))
    assert "warning: could not revoke" in result.stderr
    assert "cannot reach the VO service" in result.stderr
    assert not alice.credentials_path.exists()


# -- what users get wrong, and what goes wrong ---------------------------------------------
def test_wrong_password(laptop: Laptop) -> None:
    line = laptop.fail("login", "--password", "--username", "alice", "--password-stdin",
                       stdin="wrong password!\n")
    assert line == "xos-login: wrong username or password"
    assert not laptop.credentials_path.exists()


def test_a_pending_member_hears_why(laptop: Laptop) -> None:
    result = laptop.login("pete", ok=False)
    assert result.returncode == os.EX_NOPERM
    assert result.stderr == ("xos-login: your membership of VO cms is still pending"
                             " approval\n")


def test_an_unreachable_service(laptop: Laptop) -> None:
    with closed_port() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = laptop.login(ok=False, env=laptop.env(XOS_URL=url))
    assert result.returncode == os.EX_UNAVAILABLE
    assert result.stderr == f"xos-login: cannot reach the VO service at {url}:" \
        " Connection refused\n"


def test_a_login_revoked_at_the_service_has_ended(service: Service, alice: Laptop) -> None:
    status, _ = service.call("POST", "/oauth/revoke", form={
        "token": alice.stored()["refresh_token"], "client_id": "xos-login"})
    assert status == 200
    alice.run("token")  # the cached access token still serves its last minutes
    alice.expire_access_token()
    line = alice.fail("token")
    assert line == ("xos-login: your login has ended (the refresh token was revoked; log in"
                    " again); run 'xos-login login'")
    assert alice.run("status", ok=False).stdout.strip() == "not logged in"


def test_a_refused_node_keeps_the_login(service: Service, alice: Laptop) -> None:
    """Asking for a node outside one's VOs is refused, and must not cost the login."""
    line = alice.fail("token", "--audience", "wn9.grid.example")
    assert "no token for audience 'wn9.grid.example'" in line
    alice.expire_access_token()
    alice.run("token")


def test_usage_mistakes(laptop: Laptop) -> None:
    assert laptop.fail("login", "--password-stdin", stdin=PASSWORD) == \
        "xos-login: --password-stdin needs --username"
    line = laptop.fail("--url", "http://vo.example.org", "login")
    assert "refusing plain http to vo.example.org" in line
    assert laptop.fail("login", env=laptop.env(XOS_URL=None)).startswith(
        "xos-login: which VO service?")
    assert laptop.fail("--url", "ftp://x", "token").startswith(
        "xos-login: not a usable service URL")


# -- TLS -----------------------------------------------------------------------------------
def _tls_files(work: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TLS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = work / "tls-ca.pem", work / "tls.pem", work / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_base(service: Service) -> Iterator[tuple[str, Path]]:
    """The same app also served over HTTPS, with a certificate from a private CA."""
    ca_file, cert, key = _tls_files(service.work)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = make_server("127.0.0.1", 0, service.app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="xos-login-e2e-https",
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", ca_file
    finally:
        _stop(server, thread)
    assert not thread.is_alive()


def test_tls_with_a_private_ca(service: Service, laptop: Laptop,
                               tls_base: tuple[str, Path]) -> None:
    base, ca_file = tls_base
    env = laptop.env(XOS_URL=base)
    result = laptop.login(ok=False, env=env)
    assert result.returncode == os.EX_PROTOCOL
    assert result.stderr.startswith(f"xos-login: TLS failure talking to {base}: ")
    assert "certificate" in result.stderr and "--ca-file" in result.stderr
    assert result.stderr.count("\n") == 1

    laptop.run("--ca-file", str(ca_file), "login", "--password", "--username", "alice",
               "--password-stdin", stdin=PASSWORD + "\n", env=env)
    laptop.expire_access_token()  # the CA file is remembered for the refresh
    token = laptop.run("token", env=env).stdout.strip()
    assert service.verify(token).preferred_username == "alice"
    # Another CA does not vouch for the service.
    other, _, _ = _tls_files(Path(tempfile.mkdtemp(dir=service.work)))
    laptop.expire_access_token()
    assert laptop.fail("--ca-file", str(other), "token", env=env).startswith(
        f"xos-login: TLS failure talking to {base}: ")
