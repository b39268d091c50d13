"""The Varlink server over a real UNIX socket: framing, methods, errors, abuse, lifecycle.

The socket lives in a private temp folder, never in /run/systemd/userdb. Hostile clients
(garbage, 10 MB messages, half messages, idle floods, readers that stop reading) run
against the server while a well-behaved client keeps looking names up: every one of its
lookups must be answered within LOOKUP_BOUND, far below nss-systemd's 45 s stall.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nss_fixtures import (
    USERDB,
    VarlinkClient,
    atlas_snapshot,
    big_snapshot,
    local_accounts,
    private_tmp,
    running_server,
    userdb_call,
    wait_until,
)

from nss_plugin import (
    AccountView,
    ServiceNameError,
    UserdbServer,
    bypass_self,
    check_service_name,
)
from nss_plugin.varlink import PROTOCOL_ERROR

LOOKUP_BOUND = 1.0  # seconds; a real lookup takes well under a millisecond here
VIEW = AccountView(atlas_snapshot(), local_accounts())
SERVICE = "io.xos.Accounts"


@pytest.fixture
def server() -> Iterator[UserdbServer]:
    with running_server(VIEW, io_timeout=0.5, idle_timeout=2.0) as srv:
        yield srv


def timed_lookup(path: Path, name: str = "alice") -> float:
    start = time.monotonic()
    [reply] = userdb_call(path, "GetUserRecord", userName=name)
    elapsed = time.monotonic() - start
    assert reply["parameters"]["record"]["userName"] == name
    return elapsed


# -- the methods over the wire --------------------------------------------------------------
def test_lookup_replies(server: UserdbServer) -> None:
    [reply] = userdb_call(server.path, "GetUserRecord", userName="alice")
    assert set(reply) == {"parameters"}  # no "continues" on a plain call
    record = reply["parameters"]["record"]
    assert (record["uid"], record["service"]) == (200001, SERVICE)
    assert reply["parameters"]["incomplete"] is False  # we are root: privileged
    [by_uid] = userdb_call(server.path, "GetUserRecord", uid=200001)
    assert by_uid == reply
    [grp] = userdb_call(server.path, "GetGroupRecord", groupName="atlas_analysis")
    assert grp["parameters"]["record"]["groupName"] == "atlas_analysis"
    [grp_by_gid] = userdb_call(server.path, "GetGroupRecord", gid=400001)
    assert grp_by_gid == grp


def test_streams_mark_all_but_the_last_reply(server: UserdbServer) -> None:
    replies = userdb_call(server.path, "GetMemberships", more=True, userName="alice")
    assert [r.get("continues") for r in replies] == [True, None]
    assert [r["parameters"] for r in replies] == [
        {"userName": "alice", "groupName": "atlas"},
        {"userName": "alice", "groupName": "atlas_analysis"}]
    users = userdb_call(server.path, "GetUserRecord", more=True)
    assert [r.get("continues") for r in users] == [True, True, None]
    groups = userdb_call(server.path, "GetGroupRecord", more=True)
    assert len(groups) == 5
    members = userdb_call(server.path, "GetMemberships", more=True)
    assert len(members) == 3
    [single] = userdb_call(server.path, "GetMemberships", more=True, userName="bob")
    assert "continues" not in single  # a stream of one is one plain reply


def test_errors_on_the_wire(server: UserdbServer) -> None:
    assert userdb_call(server.path, "GetUserRecord", userName="nosuch") == [
        {"error": f"{USERDB}.NoRecordFound", "parameters": {}}]
    assert userdb_call(server.path, "GetUserRecord", service="io.systemd.Home",
                       userName="alice") == [{"error": f"{USERDB}.BadService",
                                              "parameters": {}}]
    assert userdb_call(server.path, "GetMemberships", userName="alice") == [
        {"error": "org.varlink.service.ExpectedMore", "parameters": {}}]
    assert userdb_call(server.path, "GetUserRecord", userName="alice", uid=200002) == [
        {"error": f"{USERDB}.ConflictingRecordFound", "parameters": {}}]


def test_one_connection_many_calls_in_order(server: UserdbServer) -> None:
    """Pipelined calls (several messages in one write) are answered one after the other."""
    with VarlinkClient(server.path) as client:
        calls = [{"method": f"{USERDB}.GetMemberships", "more": True,
                  "parameters": {"service": SERVICE}},
                 {"method": f"{USERDB}.GetUserRecord",
                  "parameters": {"service": SERVICE, "uid": 200002}},
                 {"method": f"{USERDB}.Nope", "parameters": {}},
                 {"method": f"{USERDB}.GetUserRecord", "oneway": True,
                  "parameters": {"service": SERVICE, "uid": 200002}},
                 {"method": f"{USERDB}.GetGroupRecord",
                  "parameters": {"service": SERVICE, "gid": 400000}}]
        client.send_raw(b"".join(json.dumps(c).encode() + b"\0" for c in calls))
        stream = [client.receive() for _ in range(3)]
        assert [m and m.get("continues") for m in stream] == [True, True, None]
        user = client.receive()
        assert user and user["parameters"]["record"]["userName"] == "bob"
        assert client.receive() == {"error": "org.varlink.service.MethodNotFound",
                                    "parameters": {"method": f"{USERDB}.Nope"}}
        grp = client.receive()  # the oneway call got no reply
        assert grp and grp["parameters"]["record"]["groupName"] == "atlas"
        assert client.call("org.varlink.service.GetInfo")[0]["parameters"]["interfaces"]


@pytest.mark.parametrize(("payload", "stays_open"), [
    (b'{"method": "io.systemd.UserDatabase.GetUserRecord", "parameters": [1]}', True),
    (b'{"method": "x", "parameters": {}, "upgrade": true}', True),
    (b"not json", False),
    (b"\xff\xfe{}", False),
    (b"[1, 2, 3]", False),
    (b'{"parameters": {}}', False),
    (b'{"method": 7}', False),
    (b'{"method": "io.systemd.UserDatabase.GetUserRecord", "more": "yes"}', False),
    (b"[" * 60000 + b"]" * 60000, False),  # deep nesting: RecursionError in a naive parser
    (b"", False),
])
def test_malformed_messages(server: UserdbServer, payload: bytes, stays_open: bool) -> None:
    with VarlinkClient(server.path) as client:
        client.send_raw(payload + b"\0")
        reply = client.receive()
        assert reply is not None
        if stays_open:
            assert reply["error"] == "org.varlink.service.InvalidParameter"
            assert client.call(f"{USERDB}.GetUserRecord",
                               {"service": SERVICE, "userName": "bob"})[0]["parameters"]
        else:
            assert reply["error"] == PROTOCOL_ERROR and reply["parameters"]["reason"]
            assert client.closed_by_server()
    assert timed_lookup(server.path) < LOOKUP_BOUND


def test_oversized_message_is_cut_off(server: UserdbServer) -> None:
    """A 10 MB message: refused once it passes 64 KiB, not read to its end."""
    with VarlinkClient(server.path) as client:
        with pytest.raises(OSError):  # EPIPE/ECONNRESET once the server has closed
            client.send_raw(b'{"method": "' + b"x" * 10_000_000)
        reply = client.receive()
        assert reply == {"error": PROTOCOL_ERROR,
                         "parameters": {"reason": "message exceeds 65536 bytes"}}
    with VarlinkClient(server.path) as client:  # a complete one, just too big
        client.send_raw(b'{"method": "' + b"x" * 70_000 + b'"}\0')
        assert client.receive() == reply
    assert timed_lookup(server.path) < LOOKUP_BOUND


def test_unfinished_message_times_out(server: UserdbServer) -> None:
    with VarlinkClient(server.path, timeout=5) as client:
        client.send_raw(b'{"method": "io.systemd.UserDatabase.GetUserRecord", "param')
        start = time.monotonic()
        assert timed_lookup(server.path) < LOOKUP_BOUND  # meanwhile others are answered
        assert client.closed_by_server()
        assert 0.3 < time.monotonic() - start < 3  # io_timeout is 0.5 s


def test_slow_drip_does_not_extend_the_deadline(server: UserdbServer) -> None:
    """A byte every 0.2 s keeps a connection busy, yet the message must finish in time."""
    with VarlinkClient(server.path, timeout=5) as client:
        start = time.monotonic()
        with pytest.raises(OSError):
            for byte in b'{"method": "io.systemd.UserDatabase.GetUserRecord"}':
                client.send_raw(bytes([byte]))
                time.sleep(0.2)
        assert time.monotonic() - start < 3


def test_idle_connections_are_closed(server: UserdbServer) -> None:
    with VarlinkClient(server.path, timeout=5) as client:
        assert client.call(f"{USERDB}.GetUserRecord",
                           {"service": SERVICE, "userName": "bob"})
        start = time.monotonic()
        assert client.closed_by_server()
        assert 1.5 < time.monotonic() - start < 5  # idle_timeout is 2 s
    wait_until(lambda: server.connection_count == 0, 2, "connections to close")


def test_connection_flood_does_not_lock_lookups_out() -> None:
    with running_server(VIEW, max_connections=8, idle_timeout=60) as srv:
        idle = [VarlinkClient(srv.path) for _ in range(20)]
        try:
            for _ in range(20):
                assert timed_lookup(srv.path) < LOOKUP_BOUND
            assert srv.connection_count <= 8
            assert idle[0].closed_by_server()  # the least active made room
        finally:
            for client in idle:
                client.close()


def test_a_reader_that_stops_reading_stalls_nobody() -> None:
    """A client asks for a long enumeration and never reads: output stays bounded, the
    connection is dropped after io_timeout, and lookups go on meanwhile."""
    big = AccountView(big_snapshot(20_000), local_accounts())
    with running_server(big, io_timeout=0.5) as srv:
        with VarlinkClient(srv.path) as stuck:
            stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.send({"method": f"{USERDB}.GetUserRecord", "more": True,
                        "parameters": {"service": SERVICE}})
            assert timed_lookup(srv.path, "u0000007") < LOOKUP_BOUND
            wait_until(lambda: srv.connection_count == 0, 5, "the stuck reader to be dropped")
        # A reader that does read gets every record, in chunks, among other clients.
        with VarlinkClient(srv.path, timeout=30) as reader:
            replies = reader.call(f"{USERDB}.GetUserRecord", {"service": SERVICE},
                                  more=True)
        assert len(replies) == 20_000
        assert len({r["parameters"]["record"]["uid"] for r in replies}) == 20_000


def test_abuse_all_at_once_while_lookups_go_on(server: UserdbServer) -> None:
    """Garbage, giant and unfinished messages and vanishing clients, from several threads,
    while one client does 100 lookups: each answered within the bound."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def hostile(action: Callable[[VarlinkClient], None]) -> Callable[[], None]:
        def loop() -> None:
            while not stop.is_set():
                try:
                    with VarlinkClient(server.path, timeout=2) as client:
                        action(client)
                except OSError:
                    pass
                except BaseException as err:  # surfaced below, in the test's thread
                    errors.append(err)
                    return
        return loop

    def garbage(c: VarlinkClient) -> None:
        c.send_raw(os.urandom(4096) + b"\0")
        c.receive()

    def giant(c: VarlinkClient) -> None:
        c.send_raw(b"{" + b" " * 10_000_000)

    def unfinished(c: VarlinkClient) -> None:
        c.send_raw(b'{"method": "io.systemd.UserDatabase.Get')
        time.sleep(0.3)

    def vanishing(c: VarlinkClient) -> None:
        c.send({"method": f"{USERDB}.GetUserRecord", "more": True,
                "parameters": {"service": SERVICE}})
        # Paced: a thread that connects in a tight loop shares the GIL with the server
        # and simply outruns it (test_connect_flood_fails_fast covers floods).
        time.sleep(0.002)

    threads = [threading.Thread(target=hostile(a)) for a in
               (garbage, giant, unfinished, unfinished, vanishing)]
    for t in threads:
        t.start()
    try:
        worst = max(timed_lookup(server.path, name) for name in ["alice", "bob"] * 50)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors
    assert worst < LOOKUP_BOUND


FLOODER = r"""
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])  # blocking: waits for room in the backlog, keeps it full
    except OSError:
        pass
    s.close()
"""


def test_connect_flood_fails_fast() -> None:
    """A local process that only connects and hangs up, as fast as it can.

    The kernel's accept backlog stays full, and a non-blocking connect (nss-systemd's, and
    this client's) then fails at once with EAGAIN: names fail to resolve during the flood,
    but nothing waits, and lookups work again as soon as it stops.
    """
    with running_server(VIEW) as srv:
        flooder = subprocess.Popen([shutil.which("python3", path="/usr/bin:/bin") or "python3",
                                    "-I", "-c", FLOODER, str(srv.path), "1.5"])
        try:
            attempts = 0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                start = time.monotonic()
                with contextlib.suppress(BlockingIOError):  # EAGAIN: backlog full
                    userdb_call(srv.path, "GetUserRecord", userName="alice")
                attempts += 1
                assert time.monotonic() - start < LOOKUP_BOUND
        finally:
            flooder.kill()
            flooder.wait()
        assert attempts > 10

        def answers() -> bool:
            try:
                return timed_lookup(srv.path) < LOOKUP_BOUND
            except BlockingIOError:  # the dead flooder's connections are still queued
                return False

        start = time.monotonic()
        wait_until(answers, 5, "lookups to work again")
        assert time.monotonic() - start < 2


def test_replace_swaps_the_view_at_run_time(server: UserdbServer) -> None:
    with VarlinkClient(server.path) as client:
        ask = {"service": SERVICE, "userName": "u0000001"}
        assert client.call(f"{USERDB}.GetUserRecord", ask)[0]["error"].endswith(
            "NoRecordFound")
        old = server.replace(AccountView(big_snapshot(3), local_accounts()))
        assert old is VIEW and server.view.user("u0000001") is not None
        assert client.call(f"{USERDB}.GetUserRecord", ask)[0]["parameters"]
        assert client.call(f"{USERDB}.GetUserRecord", {"service": SERVICE,
                                                       "userName": "alice"})[0]["error"]


def test_a_dying_loop_takes_its_socket_along(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket nobody serves stalls every lookup 45 s; one that is gone fails at once."""
    failures: list[BaseException] = []
    with running_server(VIEW, on_failure=failures.append) as srv, \
            VarlinkClient(srv.path) as waiting:

        def bug() -> None:
            raise RuntimeError("a bug in the loop itself")

        wait_until(lambda: srv.connection_count == 1, 5, "the connection")
        monkeypatch.setattr(srv, "_expire", bug)  # fault injection
        srv._next_expiry = 0.0
        wait_until(lambda: bool(failures), 5, "the loop to die")
        assert str(srv.failure) == "a bug in the loop itself"
        assert not srv.path.exists()
        assert waiting.closed_by_server()
        with pytest.raises(FileNotFoundError):
            VarlinkClient(srv.path)


# -- the socket file ------------------------------------------------------------------------
def test_socket_file_mode_and_cleanup() -> None:
    with private_tmp() as tmp:
        srv = UserdbServer(VIEW, socket_dir=tmp / "userdb").start()
        try:
            st = srv.path.stat()
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
            assert os.listdir(tmp / "userdb") == [SERVICE]  # no hidden leftovers
        finally:
            srv.close()
        assert os.listdir(tmp / "userdb") == []
        with pytest.raises(OSError):
            VarlinkClient(tmp / "userdb" / SERVICE)
        assert not [t for t in threading.enumerate() if t.name.startswith("userdb:")]


def test_stale_socket_is_replaced_and_a_successor_is_left_alone() -> None:
    with private_tmp() as tmp:
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(tmp / SERVICE))  # a crashed provider's socket: nobody listens
        stale.close()
        with UserdbServer(VIEW, socket_dir=tmp) as first:
            assert timed_lookup(first.path) < LOOKUP_BOUND
            with UserdbServer(VIEW, socket_dir=tmp) as second:  # a restart takes over
                assert timed_lookup(second.path) < LOOKUP_BOUND
                first.close()  # must not remove the successor's socket
                assert second.path.exists() and timed_lookup(second.path) < LOOKUP_BOUND
        assert os.listdir(tmp) == []


UNPRIVILEGED_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect": e.errno})); sys.exit(0)
s.sendall(json.dumps({"method": "io.systemd.UserDatabase.GetUserRecord",
                      "parameters": {"userName": "alice", "service": sys.argv[2]}}).encode()
          + b"\0")
data = b""
while not data.endswith(b"\0"):
    data += s.recv(65536)
print(data[:-1].decode())
"""


def as_nobody(path: Path) -> dict[str, object]:
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python
    out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          python, "-I", "-c", UNPRIVILEGED_CLIENT, str(path), SERVICE],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as another user")
def test_ordinary_users_connect_and_get_no_privileged_section() -> None:
    with running_server(VIEW) as srv:
        reply = as_nobody(srv.path)
        assert reply["parameters"]["incomplete"] is True  # type: ignore[index]
        assert "privileged" not in reply["parameters"]["record"]  # type: ignore[index]
    with running_server(VIEW, socket_mode=0o600) as srv:  # why the socket must be 0666
        assert as_nobody(srv.path) == {"connect": 13}  # EACCES: the name would vanish


# -- naming ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "message"), [
    ("Accounts", "not a reverse-domain name"),
    ("io.xos:Accounts", "not a reverse-domain name"),
    ("io/xos.Accounts", "not a reverse-domain name"),
    (".io.xos.Accounts", "not a reverse-domain name"),
    ("yes", "not a reverse-domain name"),  # SYSTEMD_BYPASS_USERDB=yes would bypass all
    ("io.systemd.Multiplexer", "systemd's own namespace"),
    ("io.xos.Accounts.bak", "looks like a backup file"),
    ("io.xos.Accounts~", "not a reverse-domain name"),
    ("io.xos." + "A" * 100, "too long for AF_UNIX"),
])
def test_service_names_clients_would_miss(name: str, message: str) -> None:
    with pytest.raises(ServiceNameError, match=message):
        check_service_name(name)
    assert check_service_name("io.xos.Accounts") == "io.xos.Accounts"
    assert check_service_name("org.example.grid-accounts_2") == "org.example.grid-accounts_2"


def test_bypass_self(monkeypatch: pytest.MonkeyPatch) -> None:
    # set first so that monkeypatch records the variable's state before the test and
    # restores it afterwards: bypass_self's own change must not reach later tests' lookups
    monkeypatch.setenv("SYSTEMD_BYPASS_USERDB", "")
    monkeypatch.delenv("SYSTEMD_BYPASS_USERDB")
    bypass_self(SERVICE)
    assert os.environ["SYSTEMD_BYPASS_USERDB"] == SERVICE
    monkeypatch.setenv("SYSTEMD_BYPASS_USERDB", "io.systemd.Home")
    bypass_self(SERVICE)
    bypass_self(SERVICE)
    assert os.environ["SYSTEMD_BYPASS_USERDB"] == f"io.systemd.Home:{SERVICE}"
