"""The node's state as the PAM helpers see it: the ONLY module that reads the state directory.

The node agent (``xos_node``) keeps these files in the state directory (``XOS_NODE_STATE``,
default ``/var/lib/xos-node``): ``snapshot.json`` (the agent's checksummed store file, read
by ``xos_node.store.read_store``; a bare snapshot document of the VO service is accepted
too) with ``snapshot.journal`` (the changes applied since, ``xos_node.journal``),
``jwks.json`` (the service's JWKS) and ``node.json`` (``{"node": ..., "issuer": ...}``,
plus an optional ``"ca_file"``: a PEM bundle for the service's TLS). When the agent's
layout changes, only this module changes.

Why so strict: these files decide who logs in as whom, and the helpers run as root. A file
that someone other than root could have written (not root-owned, group/world-writable, a
symlink, not a regular file) is refused, as is the directory holding it, and so is any
content that does not validate. Loading is all-or-nothing: a snapshot with one bad user is
refused whole, because a half-read snapshot is a snapshot nobody wrote.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

from xos_node.errors import CorruptSnapshot
from xos_node.journal import JOURNAL_NAME, read_entries
from xos_node.store import read_store

from .errors import StateError

if TYPE_CHECKING:
    from xos_tokens import KeySet

STATE_ENV = "XOS_NODE_STATE"
#: the node agent's socket (``xos-node run``), asked before the snapshot files are read
AGENT_SOCKET = Path("/run/systemd/userdb/io.xos.Accounts")
AGENT_TIMEOUT = 2.0
DEFAULT_STATE_DIR = Path("/var/lib/xos-node")
SNAPSHOT_FILE = "snapshot.json"
JWKS_FILE = "jwks.json"
NODE_FILE = "node.json"
JOURNAL_FILE = JOURNAL_NAME
#: Only root may have written what PAM trusts; the helpers run as root.
TRUSTED_OWNERS = frozenset({0})
#: Size limits, so that a runaway file cannot make every login slow or exhaust memory.
#: A node learns only the users of its VOs; 256 MiB is far beyond any real snapshot.
MAX_BYTES = {SNAPSHOT_FILE: 256 * 1024 * 1024, JOURNAL_FILE: 64 * 1024 * 1024,
             JWKS_FILE: 1024 * 1024, NODE_FILE: 64 * 1024}
USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # DESIGN's POSIX-safe name, fullmatch
#: Numbers PAM will hand to chown or trust as an identity: never root, never the
#: "nobody"/(uid_t)-1 family, never beyond 2^31 (signed 32-bit tools break there).
_UNUSABLE_IDS = frozenset({0, 65534, 65535})
_MAX_ID = 2**31 - 2


class SnapshotUser(NamedTuple):
    """One XOS account as the snapshot lists it (``locked``: suspended or gone from the
    node's VOs; still resolvable by NSS so files keep an owner, never allowed in).
    A named tuple: immutable, and cheap to make by the hundred thousand."""

    id: str
    name: str
    uid: int
    gid: int
    display_name: str
    locked: bool


@dataclass(frozen=True)
class NodeState:
    """Everything a PAM helper needs to decide: this node, whom to trust, who may log in.

    ``keys`` (the JWKS as a key set) is built on first use: only the auth stage verifies
    tokens, and the token library is most of a helper's start-up time."""

    directory: Path
    node: str
    issuer: str
    revision: int
    users: Mapping[str, SnapshotUser]
    jwks: Mapping[str, Any]
    ca_file: Path | None = None
    source: str = "snapshot"  # where the users came from: "agent" or "snapshot"

    @functools.cached_property
    def keys(self) -> KeySet:
        from xos_tokens import InvalidKey, KeySet

        try:
            return KeySet(self.jwks)
        except InvalidKey as error:
            raise StateError(f"{self.directory / JWKS_FILE}: {error}") from None


def state_directory(environ: Mapping[str, str], override: str | None = None) -> Path:
    """The state directory: ``override`` (the helper's ``--state``), else ``XOS_NODE_STATE``
    from the environment pam_exec passes (the PAM environment), else the default."""
    chosen = override or environ.get(STATE_ENV) or str(DEFAULT_STATE_DIR)
    path = Path(chosen)
    if not path.is_absolute():
        raise StateError(f"the state directory must be an absolute path, not {chosen!r}")
    return path


def load_state(directory: str | os.PathLike[str], user: str | None = None,
               agent: str | os.PathLike[str] | None = None) -> NodeState:
    """Read and validate the state directory; StateError saying what is wrong otherwise.

    The directory must be root-owned and not group/world-writable; each file must be a
    regular root-owned file (not a symlink), not group/world-writable, within its size
    limit. The snapshot must be for the node named in ``node.json``.

    With ``user``, the running agent is asked first, on its root-owned socket ``agent``
    (``io.xos.Node.GetLoginState``): one lookup in its memory, however many users the
    node has. The state then lists that user only (or nobody). When the agent cannot be
    asked (not running, not root's socket, no answer), the snapshot files decide.
    """
    path = Path(directory)
    with _open_directory(path) as dir_fd:
        node_doc = _read_json(dir_fd, path, NODE_FILE)
        jwks_doc = _read_json(dir_fd, path, JWKS_FILE)
        node, issuer, ca_file = _node_info(node_doc)
        asked = _ask_agent(Path(agent or AGENT_SOCKET), user, node) \
            if user is not None else None
        if asked is None:
            snapshot, entries = _read_snapshot(dir_fd, path)
    if asked is not None:
        return NodeState(directory=path, node=node, issuer=issuer, revision=asked[0],
                         users=MappingProxyType(asked[1]), jwks=jwks_doc, ca_file=ca_file,
                         source="agent")
    if snapshot.get("node") != node:
        raise StateError(f"{path / SNAPSHOT_FILE} is for node {_show(snapshot.get('node'))}, "
                         f"but this node is {node!r}")
    revision = snapshot.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise StateError(f"{path / SNAPSHOT_FILE}: 'revision' is not a revision number")
    users = _users(snapshot.get("users"), path / SNAPSHOT_FILE)
    revision = _replay_users(users, revision, entries, path / JOURNAL_FILE)
    return NodeState(directory=path, node=node, issuer=issuer, revision=revision,
                     users=MappingProxyType(users), jwks=jwks_doc, ca_file=ca_file)


# -- asking the running agent -----------------------------------------------------------
def _ask_agent(socket_path: Path, user: str, node: str
               ) -> tuple[int, dict[str, SnapshotUser]] | None:
    """The agent's word on ``user``: (revision, {user: entry} or {}); None when it cannot
    be asked. Only a socket that root made in a directory only root can write is asked:
    anyone else's socket could lie about who may log in."""
    if not USERNAME.fullmatch(user):
        return None
    try:
        st, parent = os.lstat(socket_path), os.stat(socket_path.parent)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode) or _unsafe(parent) or st.st_uid not in TRUSTED_OWNERS:
        return None
    from nss_plugin.client import (
        GET_LOGIN_STATE,
        NODE_NO_SUCH_USER,
        VarlinkReplyError,
        call_once,
    )

    try:
        answer = call_once(socket_path, GET_LOGIN_STATE, {"userName": user},
                           timeout=AGENT_TIMEOUT)
    except VarlinkReplyError as error:
        if error.error != NODE_NO_SUCH_USER:
            return None
        answer = {}
    except OSError:
        return None
    if answer and (answer.get("node") != node or answer.get("userName") != user):
        raise StateError(f"the agent on {socket_path} serves {_show(answer.get('node'))}"
                         f", not this node {node!r}")
    if not answer:
        return 0, {}
    revision = answer.get("revision")
    if type(revision) is not int or revision < 0:
        raise StateError(f"the agent on {socket_path} gave no revision number")
    entry = {"id": answer.get("id"), "name": user, "uid": answer.get("uid"),
             "gid": answer.get("gid"), "display_name": answer.get("realName", ""),
             "locked": answer.get("locked")}
    return revision, _users([entry], socket_path)


# -- reading files safely -------------------------------------------------------------
def _unsafe(st: os.stat_result) -> str | None:
    """Why a file or directory with this status cannot be trusted, or None."""
    if st.st_uid not in TRUSTED_OWNERS:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


@contextlib.contextmanager
def _open_directory(path: Path) -> Iterator[int]:
    """The directory opened once: the files are opened relative to this descriptor, so a
    directory swapped after the check cannot hand us other files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StateError(f"the state directory {path} does not exist") from None
    except OSError as error:
        raise StateError(f"cannot open the state directory {path}: {error.strerror}") from None
    try:
        problem = _unsafe(os.fstat(fd))
        if problem:
            raise StateError(f"refusing the state directory {path}: {problem}")
        yield fd
    finally:
        os.close(fd)


def _read_bytes(dir_fd: int, directory: Path, name: str) -> bytes:
    """One state file's bytes, checked on the opened descriptor (no race)."""
    data = _read_file(dir_fd, directory, name)
    if data is None:
        raise StateError(f"{directory / name} does not exist (is the node agent running?)")
    return data[0]


def _read_file(dir_fd: int, directory: Path, name: str) -> tuple[bytes, int] | None:
    """A state file's bytes and inode number, None if it does not exist."""
    where = directory / name
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: a symlink
        raise StateError(f"cannot open {where}: {error.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateError(f"refusing {where}: not a regular file")
        problem = _unsafe(st)
        if problem:
            raise StateError(f"refusing {where}: {problem}")
        limit = MAX_BYTES[name]
        if st.st_size > limit:
            raise StateError(f"refusing {where}: larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise StateError(f"refusing {where}: larger than {limit} bytes")
    return data, st.st_ino


def _read_json(dir_fd: int, directory: Path, name: str) -> dict[str, Any]:
    """One small state file as a JSON object."""
    where = directory / name
    try:
        document = json.loads(_read_bytes(dir_fd, directory, name))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise StateError(f"{where} is not valid JSON (truncated or corrupt)") from None
    if not isinstance(document, dict):
        raise StateError(f"{where} is not a JSON object")
    return document


def _read_snapshot(dir_fd: int, directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The snapshot the agent stored and the changes journalled since, checksums verified.

    The two files are read as one state: if the agent replaced the snapshot file (and
    started a new journal) in between, they are read again."""
    where = directory / SNAPSHOT_FILE
    for _ in range(3):
        found = _read_file(dir_fd, directory, SNAPSHOT_FILE)
        if found is None:
            raise StateError(f"{where} does not exist (is the node agent running?)")
        data, inode = found
        journal = _read_file(dir_fd, directory, JOURNAL_FILE)
        try:
            now = os.stat(SNAPSHOT_FILE, dir_fd=dir_fd, follow_symlinks=False).st_ino
        except FileNotFoundError:
            now = None
        if now == inode:
            break
    else:
        raise StateError(f"{where} kept changing while it was read")
    try:
        snapshot, base = read_store(data, where, bare_ok=True)
        entries = read_entries(journal[0], base, directory / JOURNAL_FILE) \
            if journal is not None and base else []
    except CorruptSnapshot as error:
        raise StateError(error.message) from None
    return snapshot, entries


def _replay_users(users: dict[str, SnapshotUser], revision: int,
                  entries: list[dict[str, Any]], where: Path) -> int:
    """Apply the journalled answers' users (what PAM decides by) in order; the revision
    they bring the snapshot to. Each answer must follow the one before."""
    for number, answer in enumerate(entries, 1):
        since, moved = answer.get("since"), answer.get("revision")
        if type(since) is not int or type(moved) is not int or not revision <= since < moved:
            raise StateError(f"{where}: entry {number} does not follow revision {revision}")
        changed = _users(answer.get("users"), where)
        for name, user in changed.items():
            old = users.get(name)
            if old is not None and (old.id, old.uid) != (user.id, user.uid):
                raise StateError(f"{where}: entry {number} gives {name} another id or uid")
            users[name] = user
        revision = moved
    return revision


# -- validating content ---------------------------------------------------------------
def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _node_info(document: Mapping[str, Any]) -> tuple[str, str, Path | None]:
    node, issuer, ca_file = document.get("node"), document.get("issuer"), \
        document.get("ca_file")
    if not isinstance(node, str) or not node or len(node) > 253 or not node.isprintable():
        raise StateError(f"{NODE_FILE}: 'node' must be the node's name, not {_show(node)}")
    if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")) or \
            len(issuer) > 2048 or not issuer.isprintable() or " " in issuer:
        raise StateError(f"{NODE_FILE}: 'issuer' must be the VO service's URL, "
                         f"not {_show(issuer)}")
    if ca_file is None:
        return node, issuer, None
    if not isinstance(ca_file, str) or not ca_file.startswith("/"):
        raise StateError(f"{NODE_FILE}: 'ca_file' must be an absolute path")
    return node, issuer, Path(ca_file)


def _number(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 < value <= _MAX_ID and value not in _UNUSABLE_IDS


def _users(entries: object, where: Path) -> dict[str, SnapshotUser]:
    """The users by name, all valid, or StateError naming the first bad one.

    One pass with one compact test per user (a node may list a hundred thousand users
    and this runs at every login); only a user that fails it is examined again, by
    :func:`_problem`, to say what is wrong.
    """
    if not isinstance(entries, list):
        raise StateError(f"{where}: 'users' is not a list")
    users: dict[str, SnapshotUser] = {}
    match = USERNAME.fullmatch
    for index, entry in enumerate(entries):
        if not (type(entry) is dict and type(name := entry.get("name")) is str
                and match(name) and name not in users
                and type(user_id := entry.get("id")) is str and 0 < len(user_id) <= 64
                and _number(uid := entry.get("uid")) and _number(gid := entry.get("gid"))
                and type(locked := entry.get("locked")) is bool
                and type(display := entry.get("display_name", "")) is str):
            raise StateError(f"{where}: {_problem(index, entry, users)}")
        users[name] = SnapshotUser(user_id, name, uid, gid, display, locked)
    return users


def _problem(index: int, entry: object, seen: Mapping[str, SnapshotUser]) -> str:
    """What is wrong with a user entry that failed the compact test in :func:`_users`."""
    if not isinstance(entry, dict):
        return f"user {index} is not an object"
    name = entry.get("name")
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        return f"user {index} has an unusable name {_show(name)}"
    if name in seen:
        return f"user {name!r} is listed twice"
    user_id = entry.get("id")
    if not isinstance(user_id, str) or not user_id or len(user_id) > 64:
        return f"user {name!r} has no usable global id"
    if not _number(entry.get("uid")) or not _number(entry.get("gid")):
        return f"user {name!r} has an unusable uid or gid"
    if not isinstance(entry.get("locked"), bool):
        return f"user {name!r} has no true/false 'locked'"
    return f"user {name!r} has a display name that is not text"
