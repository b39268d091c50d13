"""A Varlink server for io.systemd.UserDatabase on a UNIX socket in /run/systemd/userdb/.

Why this shape: glibc makes every lookup inside the calling process, and nss-systemd asks
every socket in /run/systemd/userdb/ and waits for all of them (up to 45 s) before it
gives up. So a stuck provider stalls every name lookup on the node. Hence:

- one thread runs an event loop (``selectors``/epoll) over non-blocking sockets; a client
  that sends garbage, too much or too slowly only ever costs itself its connection;
- a message is bounded (``max_message``, 64 KiB by default: a real request is < 200 bytes);
  a partial message must complete within ``io_timeout`` of its first byte; an idle
  connection is closed after ``idle_timeout``; at ``max_connections`` the least recently
  active connection is dropped to make room, so a flood of idle connections cannot lock
  lookups out;
- answers come from memory (an AccountView), never from the network; enumerations stream
  lazily in bounded chunks, interleaved with other clients.

Framing is Varlink's: each message is one JSON object followed by a NUL byte. A call with
``"more": true`` may get several replies, all but the last with ``"continues": true``. A
malformed message (not UTF-8 JSON, not an object, no method, oversized) gets the error
``io.xos.Varlink.ProtocolError`` and the connection is closed, because the framing can no
longer be trusted.

Socket naming (checked against systemd 252's userdb client): the client lists
/run/systemd/userdb/, skips hidden and backup-looking names (leading ".", "~", ".bak",
".old", ".new", ".swp", ".dpkg-*", ".rpm*", ".ucf-*"), connects to every other entry and
passes the entry's name as the ``service`` parameter. ``SYSTEMD_BYPASS_USERDB`` is a
":"-separated list, or a boolean that bypasses every service. So a service name is a
reverse-domain name with at least one dot, without ":" or "/", not looking like a backup
file, and not one of systemd's own (io.systemd.*).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .accounts import AccountView
from .errors import ServiceNameError
from .userdb import MAX_LISTED_MEMBERS, NO_RECORD_FOUND, UserDatabase, VarlinkError

log = logging.getLogger(__name__)

DEFAULT_SERVICE = "io.xos.Accounts"
DEFAULT_SOCKET_DIR = "/run/systemd/userdb"
PROTOCOL_ERROR = "io.xos.Varlink.ProtocolError"
MAX_MESSAGE = 64 * 1024
IO_TIMEOUT = 5.0
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 256
SOCKET_MODE = 0o666  # glibc resolves inside the caller: every user must be able to connect
OUT_CHUNK = 64 * 1024  # output buffered per connection before waiting for the client
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the final NUL

_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+")
_BACKUP_SUFFIXES = ("~", ".rpmnew", ".rpmsave", ".rpmorig", ".dpkg-old", ".dpkg-new",
                    ".dpkg-tmp", ".dpkg-dist", ".dpkg-bak", ".dpkg-backup", ".dpkg-remove",
                    ".ucf-new", ".ucf-old", ".ucf-dist", ".swp", ".bak", ".old", ".new")
_PEERCRED = struct.Struct("iII")  # struct ucred: pid_t pid, uid_t uid, gid_t gid


def check_service_name(service: str, socket_dir: str | os.PathLike[str] = DEFAULT_SOCKET_DIR
                       ) -> str:
    """Return ``service`` if userdb clients will find and address it; else raise.

    See the module docstring for the rules and why each exists.
    """
    if not isinstance(service, str) or not _SERVICE_NAME.fullmatch(service):
        raise ServiceNameError(f"service name {service!r} is not a reverse-domain name "
                               "(letters, digits, '_', '-', at least one '.')")
    if service.lower().startswith("io.systemd."):
        raise ServiceNameError(f"service name {service!r} is in systemd's own namespace")
    if service.endswith(_BACKUP_SUFFIXES):
        raise ServiceNameError(f"service name {service!r} looks like a backup file: "
                               "userdb clients skip it")
    path = os.fsencode(Path(socket_dir, f".{service}.{os.getpid()}.{'x' * 8}"))
    if len(path) > SUN_PATH_MAX:
        raise ServiceNameError(f"socket path under {socket_dir} is too long for AF_UNIX")
    return service


def bypass_self(service: str) -> None:
    """Add ``service`` to SYSTEMD_BYPASS_USERDB of this process.

    Why: any NSS lookup this process makes (logging, a library resolving a uid) would
    otherwise ask this very server, whose single event loop is busy making that lookup:
    a 45 s stall. Call before serving, in the process that serves.
    """
    current = os.environ.get("SYSTEMD_BYPASS_USERDB", "")
    names = [n for n in current.split(":") if n]
    if service not in names:
        os.environ["SYSTEMD_BYPASS_USERDB"] = ":".join([*names, service])


def encode(message: dict[str, Any]) -> bytes:
    """One Varlink message: compact UTF-8 JSON and the terminating NUL."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\0"


class _Connection:
    """The state of one client connection (touched only by the event loop thread)."""

    __slots__ = ("sock", "_peer_uid", "_peer_known", "inbuf", "scanned", "out", "stream", "eof",
                 "closing", "started", "active", "deadline", "events")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self._peer_uid: int | None = None
        self._peer_known = False
        self.inbuf = bytearray()
        self.scanned = 0  # bytes of inbuf known to hold no NUL
        self.out = bytearray()
        self.stream: Iterator[bytes] | None = None
        self.eof = False  # the client finished sending
        self.closing = False  # close once the output is flushed
        self.started = now  # when the partial message in inbuf began
        self.active = now  # last progress in either direction
        self.deadline = now
        self.events = 0

    @property
    def busy(self) -> bool:
        return bool(self.out) or self.stream is not None

    @property
    def peer_uid(self) -> int | None:
        """The client's uid (SO_PEERCRED), asked once, only when a request needs it."""
        if not self._peer_known:
            self._peer_uid, self._peer_known = _peer_uid(self.sock), True
        return self._peer_uid


class UserdbServer:
    """Serves an AccountView as the userdb service ``service`` on ``socket_dir/service``.

    Use as a context manager or ``start()``/``close()``. The socket appears atomically
    (bound under a hidden name, chmod 0666, then renamed into place), so a client never
    finds it half set up; a socket already there under that name (a crashed or previous
    provider) is replaced. ``close()`` removes it only if it is still ours. The process
    that serves must not resolve names through this service itself: see ``bypass_self``.
    """

    def __init__(
        self,
        view: AccountView | None = None,
        *,
        service: str = DEFAULT_SERVICE,
        socket_dir: str | os.PathLike[str] = DEFAULT_SOCKET_DIR,
        max_message: int = MAX_MESSAGE,
        io_timeout: float = IO_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        socket_mode: int = SOCKET_MODE,
        max_listed_members: int | None = MAX_LISTED_MEMBERS,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.service = check_service_name(service, socket_dir)
        self.socket_dir = Path(socket_dir)
        self.path = self.socket_dir / service
        self.database = UserDatabase(service, view, max_listed_members=max_listed_members)
        self.max_message = max_message
        self.io_timeout = io_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.socket_mode = socket_mode
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._conns: dict[int, _Connection] = {}
        self._next_expiry = float("inf")
        self._last_evict_log = float("-inf")
        self.on_failure = on_failure
        self.failure: BaseException | None = None

    # -- public ------------------------------------------------------------------------------
    def replace(self, view: AccountView) -> AccountView:
        """Serve ``view`` from the next request on (atomic); returns the previous view."""
        return self.database.replace(view)

    @property
    def view(self) -> AccountView:
        return self.database.view

    @property
    def connection_count(self) -> int:
        """Open client connections (for tests and health checks)."""
        return len(self._conns)

    def start(self) -> UserdbServer:
        """Bind the socket and serve in a background thread; returns once lookups work."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._bind()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        assert self._listener is not None
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"userdb:{self.service}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop every connection, remove the socket if it is still ours."""
        self._stopping = True
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for conn in list(self._conns.values()):
            self._close(conn)
        self._unlink()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def __enter__(self) -> UserdbServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the socket file -----------------------------------------------------------------------
    def _bind(self) -> None:
        self.socket_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        hidden = self.socket_dir / f".{self.service}.{os.getpid()}.{secrets.token_hex(4)}"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(os.fspath(hidden))
            try:
                os.chmod(hidden, self.socket_mode)  # not umask-dependent
                listener.listen(socket.SOMAXCONN)
                listener.setblocking(False)
                os.replace(hidden, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    hidden.unlink()
                raise
        except BaseException:
            listener.close()
            raise
        st = self.path.lstat()
        self._identity = (st.st_dev, st.st_ino)
        self._listener = listener

    def _unlink(self) -> None:
        if self._identity is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == self._identity:
                self.path.unlink()
        self._identity = None

    # -- the event loop --------------------------------------------------------------------------
    def _run(self) -> None:
        """The loop; if it ever dies, the socket goes with it.

        A listening socket that nobody serves is the worst failure: clients connect into
        the backlog and each lookup stalls 45 s. So an unexpected exit removes the
        socket (lookups then fail at once) and reports to ``on_failure``, whose owner
        should exit so that a supervisor restarts the provider.
        """
        try:
            self._loop()
        except BaseException as err:
            self.failure = err
            log.critical("userdb event loop died; removing %s", self.path, exc_info=True)
            self._unlink()
            if self._listener is not None and self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(self._listener)
                self._listener.close()
            for conn in list(self._conns.values()):  # their clients would wait 45 s too
                with contextlib.suppress(Exception):
                    self._close(conn)
            if self.on_failure is not None:
                self.on_failure(err)

    def _loop(self) -> None:
        assert self._selector is not None
        while not self._stopping:
            timeout = max(0.0, min(self._next_expiry - time.monotonic(), 1.0))
            for key, mask in self._selector.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)  # type: ignore[union-attr]
                else:
                    self._on_event(key.data, mask)
            if time.monotonic() >= self._next_expiry:
                self._expire()

    def _on_event(self, conn: _Connection, mask: int) -> None:
        # One client's failure (including a bug its request triggers) must never stop the
        # loop that every lookup on the node depends on: it costs that client only.
        try:
            if mask & selectors.EVENT_READ:
                self._read(conn)
            if conn.sock.fileno() >= 0:
                self._pump(conn)
        except Exception:
            log.exception("userdb connection failed; closing it")
            self._close(conn)

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        for _ in range(64):  # a batch, then let established clients progress
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: keep serving who we have
                log.warning("userdb accept failed: %s", err)
                return
            if len(self._conns) >= self.max_connections:
                self._evict()
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic())
            self._conns[sock.fileno()] = conn
            # Fast path: a client usually has its request (or its EOF) queued by the time
            # we accept, so answer right away, without a trip through epoll. This keeps
            # the cost of a connection low, which is what bounds a connect flood.
            self._on_event(conn, selectors.EVENT_READ)

    def _evict(self) -> None:
        """Drop the least recently active connection, preferring ones with nothing owed."""
        victim = min(self._conns.values(), key=lambda c: (c.busy, c.active))
        now = time.monotonic()
        if now - self._last_evict_log > 60:  # a flood must not flood the log as well
            self._last_evict_log = now
            log.warning("userdb: %d connections open, dropping the least active ones",
                        len(self._conns))
        self._close(victim)

    def _expire(self) -> None:
        now = time.monotonic()
        nearest = float("inf")
        for conn in list(self._conns.values()):
            if conn.deadline <= now:
                self._close(conn)
            else:
                nearest = min(nearest, conn.deadline)
        self._next_expiry = nearest

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        if conn.events and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        self._conns.pop(fd, None)
        conn.sock.close()
        conn.stream = None

    # -- one connection ----------------------------------------------------------------------
    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            conn.eof = True
            return
        if not conn.inbuf:
            conn.started = time.monotonic()
        conn.inbuf += data
        conn.active = time.monotonic()

    def _pump(self, conn: _Connection) -> None:
        """Answer complete messages in order, flush output, then decide what to wait for.

        Messages are answered one at a time: a pipelined request waits until the reply
        stream before it has been handed to the socket.
        """
        while not conn.busy and not conn.closing:
            end = conn.inbuf.find(b"\0", conn.scanned)
            if end < 0:
                conn.scanned = len(conn.inbuf)
                if len(conn.inbuf) > self.max_message:
                    self._protocol_error(conn, f"message exceeds {self.max_message} bytes")
                break
            raw = bytes(conn.inbuf[:end])
            del conn.inbuf[:end + 1]
            conn.scanned = 0
            conn.started = time.monotonic()
            if len(raw) > self.max_message:
                self._protocol_error(conn, f"message exceeds {self.max_message} bytes")
                break
            self._handle(conn, raw)
            self._fill(conn)
            self._flush(conn)
        self._fill(conn)
        self._flush(conn)
        if conn.sock.fileno() < 0:
            return
        if not conn.busy and (conn.closing or conn.eof):
            self._close(conn)  # done, or the client left (possibly mid-message)
            return
        self._arm(conn)

    def _handle(self, conn: _Connection, raw: bytes) -> None:
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._protocol_error(conn, "message is not UTF-8 JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            self._protocol_error(conn, "message is not an object with a method")
            return
        parameters = message.get("parameters")
        parameters = {} if parameters is None else parameters
        more, oneway = message.get("more", False), message.get("oneway", False)
        if not isinstance(more, bool) or not isinstance(oneway, bool):
            self._protocol_error(conn, "more and oneway must be booleans")
            return
        if not isinstance(parameters, dict):
            self._reply_error(conn, VarlinkError("org.varlink.service.InvalidParameter",
                                                 {"parameter": "parameters"}), oneway)
            return
        if message.get("upgrade"):
            self._reply_error(conn, VarlinkError("org.varlink.service.InvalidParameter",
                                                 {"parameter": "upgrade"}), oneway)
            return
        try:
            replies = self.database.call(message["method"], parameters, more=more,
                                         peer_uid=conn.peer_uid)
        except VarlinkError as err:
            self._reply_error(conn, err, oneway)
            return
        if not oneway:
            conn.stream = _frames(replies, more)

    def _reply_error(self, conn: _Connection, err: VarlinkError, oneway: bool) -> None:
        if not oneway:
            conn.out += encode({"error": err.error, "parameters": err.parameters})

    def _protocol_error(self, conn: _Connection, reason: str) -> None:
        log.debug("userdb protocol error: %s", reason)
        conn.out += encode({"error": PROTOCOL_ERROR, "parameters": {"reason": reason}})
        conn.inbuf.clear()
        conn.closing = True

    def _fill(self, conn: _Connection) -> None:
        while conn.stream is not None and len(conn.out) < OUT_CHUNK:
            frame = next(conn.stream, None)
            if frame is None:
                conn.stream = None
            else:
                conn.out += frame

    def _flush(self, conn: _Connection) -> None:
        """Send what the socket takes, up to a budget: a fast reader of a long enumeration
        must not keep the loop from everyone else."""
        budget = 4 * OUT_CHUNK
        while conn.out and budget > 0:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client is gone: nothing more to say to it
                conn.out.clear()
                conn.stream = None
                conn.closing = True
                return
            del conn.out[:sent]
            budget -= sent
            conn.active = time.monotonic()
            self._fill(conn)

    def _arm(self, conn: _Connection) -> None:
        """Register the events to wait for and set the connection's deadline."""
        assert self._selector is not None
        events = selectors.EVENT_WRITE if conn.busy else 0
        if not conn.eof and not conn.busy:
            events |= selectors.EVENT_READ
        if events != conn.events:
            if conn.events:
                self._selector.modify(conn.sock, events, conn)
            else:
                self._selector.register(conn.sock, events, conn)
            conn.events = events
        if conn.busy:
            conn.deadline = conn.active + self.io_timeout  # the client stopped reading
        elif conn.inbuf:
            conn.deadline = conn.started + self.io_timeout  # a message must arrive whole
        else:
            conn.deadline = conn.active + self.idle_timeout
        self._next_expiry = min(self._next_expiry, conn.deadline)


def _frames(replies: Iterator[dict[str, Any]], more: bool) -> Iterator[bytes]:
    """Encode replies lazily; all but the last carry ``continues`` (only if ``more``)."""
    previous = next(replies, None)
    if previous is None:  # UserDatabase never does this; keep the protocol whole anyway
        yield encode({"error": NO_RECORD_FOUND, "parameters": {}})
        return
    for reply in replies:
        if not more:
            break
        yield encode({"parameters": previous, "continues": True})
        previous = reply
    yield encode({"parameters": previous})


def _peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid (SO_PEERCRED), or None if the kernel will not say."""
    try:
        _pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return None
    return int(uid)

