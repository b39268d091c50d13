"""The node's account view: a validated VO snapshot minus everything local accounts own.

Why a separate, I/O-free model: the Varlink server must answer from memory in
microseconds and never fail half-way, so every check happens once, here, when a snapshot
is loaded. A snapshot that is malformed anywhere is refused whole (``SnapshotError``, a
``ValueError``): serving part of a corrupted or hostile document could hand a uid or a
group to the wrong person. Entries that are well-formed but collide with a local account
are refused one by one and reported as ``Conflict``: local accounts always win, because
root, the node's admins and system daemons must never change identity or gain members
because of something a VO manager typed.

The private group of each user (name = user name, gid = uid) is the user's primary group
only; the VO groups are supplementary memberships (user -> groups, group -> members).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from immutables import Map

from .errors import SnapshotError

if TYPE_CHECKING:
    from xos_node.model import Snapshot as NodeSnapshot

NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # used with fullmatch: "$" allows "\n"
NUMBER_MIN = 1000
NUMBER_MAX = 2**31 - 1
# 65535 is (uid_t)-1 truncated to 16 bits: systemd's uid_is_valid() refuses it, so a lookup
# by that number can never reach us.
INVALID_NUMBERS = frozenset({65535})
# Names and numbers that belong to the system even where /etc lacks them: glibc callers and
# systemd synthesize root and nobody, and a VO must never be able to provide them.
RESERVED_NAMES = frozenset({"root", "nobody", "nogroup"})
RESERVED_NUMBERS = frozenset({0, 65534})
DISPLAY_NAME_MAX = 256
USERS_FILE = "/etc/passwd"
GROUPS_FILE = "/etc/group"


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on a snapshot, so that a hostile or broken one cannot exhaust memory.

    The defaults follow DESIGN.md's scale (1,000,000 users, 10,000 VOs with their groups).
    """

    max_users: int = 1_000_000
    max_groups: int = 200_000
    max_memberships: int = 10_000_000


@dataclass(frozen=True, slots=True)
class User:
    """A VO user as served on this node; ``locked`` users resolve but may not log in."""

    name: str
    uid: int
    gid: int
    display_name: str
    locked: bool
    id: str


@dataclass(frozen=True, slots=True)
class Group:
    """A Unix group: a VO group (with its VOMS ``path``) or a user's private group."""

    name: str
    gid: int
    members: Collection[str] = ()  # a tuple, or the agent's persistent set of names
    path: str | None = None
    vo: str | None = None
    private: bool = False  # the user's own group: primary gid, never a membership


@dataclass(frozen=True, slots=True)
class Conflict:
    """A snapshot entry refused because a local account owns its name or number."""

    kind: str  # "user" or "group"
    name: str
    number: int
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.number}) refused: {self.reason}"


@dataclass(frozen=True)
class LocalAccounts:
    """Names and numbers the node's own /etc/passwd and /etc/group define.

    Each map goes from a key to the local account that owns it, for conflict messages.
    """

    users_by_name: Mapping[str, int | None] = field(default_factory=dict)
    users_by_uid: Mapping[int, str] = field(default_factory=dict)
    groups_by_name: Mapping[str, int | None] = field(default_factory=dict)
    groups_by_gid: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def from_files(
        cls,
        passwd: str | PathLike[str] = USERS_FILE,
        group: str | PathLike[str] = GROUPS_FILE,
    ) -> LocalAccounts:
        """Parse the node's passwd and group files (read directly, never through NSS).

        Why not ``pwd.getpwall()``: NSS would ask this very provider (and every other
        source), while "local" means exactly what the files define. A missing file raises
        ``OSError``: running without knowing the local accounts could shadow root.
        """
        users_by_name, users_by_uid = _parse_db(Path(passwd).read_text(errors="replace"))
        groups_by_name, groups_by_gid = _parse_db(Path(group).read_text(errors="replace"))
        return cls(users_by_name, users_by_uid, groups_by_name, groups_by_gid)


def _parse_db(text: str) -> tuple[dict[str, int | None], dict[int, str]]:
    """Names and numbers of a passwd- or group-format file (field 3 is the number).

    Lines are taken conservatively: a name whose number does not parse still reserves the
    name. NIS compat lines (``+``/``-``) and comments are skipped: they name no account.
    """
    by_name: dict[str, int | None] = {}
    by_number: dict[int, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        name = fields[0].strip()
        if not name:
            continue
        number: int | None = None
        if len(fields) > 2 and fields[2].strip().isdigit():
            number = int(fields[2])
            by_number.setdefault(number, name)
        by_name.setdefault(name, number)
    return by_name, by_number


# -- snapshot validation ---------------------------------------------------------------------
def _where(kind: str, index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{kind}[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")


def _name(value: Any, where: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise SnapshotError(f"{where}: {what} {value!r} is not a POSIX-safe name "
                            f"(^[a-z_][a-z0-9_-]{{0,31}}$)")
    return value


def _number(value: Any, where: str, what: str) -> int:
    # bool is an int subclass: true must not become uid 1.
    if type(value) is not int:
        raise SnapshotError(f"{where}: {what} {value!r} is not an integer")
    if not NUMBER_MIN <= value <= NUMBER_MAX or value in INVALID_NUMBERS:
        raise SnapshotError(f"{where}: {what} {value} is outside {NUMBER_MIN}..{NUMBER_MAX}"
                            + (" (invalid for systemd)" if value in INVALID_NUMBERS else ""))
    return value


def _display_name(value: Any, where: str) -> str:
    """The GECOS field: cosmetic, so cleaned rather than refused.

    ':' and control characters would corrupt passwd-format output (``getent passwd``) and
    systemd refuses a realName holding them, so they become spaces; the length is bounded.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SnapshotError(f"{where}: display_name {value!r} is not a string")
    cleaned = "".join(" " if c == ":" or ord(c) < 32 or ord(c) == 127 else c for c in value)
    return " ".join(cleaned.split())[:DISPLAY_NAME_MAX]


def _parse_user(index: int, entry: Any) -> User:
    where = _where("users", index, entry)
    if not isinstance(entry, dict):
        raise SnapshotError(f"{where}: not an object")
    name = _name(entry.get("name"), where)
    uid = _number(entry.get("uid"), where, "uid")
    gid = _number(entry.get("gid", uid), where, "gid")
    if gid != uid:
        raise SnapshotError(f"{where}: gid {gid} differs from uid {uid} "
                            "(the primary group is the private group, gid = uid)")
    locked = entry.get("locked", False)
    if not isinstance(locked, bool):
        raise SnapshotError(f"{where}: locked {locked!r} is not a boolean")
    user_id = entry.get("id", "")
    if user_id != "":
        try:
            user_id = str(uuid.UUID(user_id)) if isinstance(user_id, str) else None
        except ValueError:
            user_id = None
        if user_id is None:
            raise SnapshotError(f"{where}: id {entry.get('id')!r} is not a UUID")
    return User(name, uid, gid, _display_name(entry.get("display_name"), where), locked,
                user_id)


def _parse_group(index: int, entry: Any) -> tuple[Group, list[str]]:
    where = _where("groups", index, entry)
    if not isinstance(entry, dict):
        raise SnapshotError(f"{where}: not an object")
    name = _name(entry.get("name"), where)
    gid = _number(entry.get("gid"), where, "gid")
    members = entry.get("members", [])
    if not isinstance(members, list):
        raise SnapshotError(f"{where}: members is not a list")
    for member in members:
        _name(member, where, "member")
    if len(set(members)) != len(members):
        raise SnapshotError(f"{where}: a member is listed twice")
    path, vo = entry.get("path", ""), entry.get("vo", "")
    for label, value in (("path", path), ("vo", vo)):
        if not isinstance(value, str) or len(value) > 1024 or not value.isprintable():
            raise SnapshotError(f"{where}: {label} {value!r} is not a printable string")
    return Group(name, gid, (), path or None, vo or None), members


def _list(snapshot: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = snapshot.get(key)
    if not isinstance(value, list):
        raise SnapshotError(f"snapshot: {key} is missing or not a list")
    if len(value) > limit:
        raise SnapshotError(f"snapshot: {len(value)} {key} exceed the limit of {limit}")
    return value


def _refuse_duplicates(kind: str, entries: Iterable[tuple[str, int]], what: str) -> None:
    names: dict[str, int] = {}
    numbers: dict[int, str] = {}
    for name, number in entries:
        if name in names:
            raise SnapshotError(f"{kind} {name!r}: name used twice in the snapshot")
        if number in numbers:
            raise SnapshotError(f"{kind} {name!r}: {what} {number} already used by "
                                f"{numbers[number]!r} in the snapshot")
        names[name] = number
        numbers[number] = name


# -- conflicts with local accounts -----------------------------------------------------------
def _user_clashes(user: User, local: LocalAccounts) -> list[str]:
    reasons = []
    if user.name in RESERVED_NAMES or user.name in local.users_by_name:
        reasons.append(f"name belongs to local user {user.name!r}")
    if user.uid in RESERVED_NUMBERS or user.uid in local.users_by_uid:
        owner = local.users_by_uid.get(user.uid, "a system account")
        reasons.append(f"uid {user.uid} belongs to local user {owner!r}")
    if user.name in local.groups_by_name:  # its private group would shadow a local group
        reasons.append(f"private group name belongs to local group {user.name!r}")
    if user.gid in RESERVED_NUMBERS or user.gid in local.groups_by_gid:
        owner = local.groups_by_gid.get(user.gid, "a system group")
        reasons.append(f"private group gid {user.gid} belongs to local group {owner!r}")
    return reasons


def _group_clashes(group: Group, local: LocalAccounts) -> list[str]:
    reasons = []
    if group.name in RESERVED_NAMES or group.name in local.groups_by_name:
        reasons.append(f"name belongs to local group {group.name!r}")
    if group.gid in RESERVED_NUMBERS or group.gid in local.groups_by_gid:
        owner = local.groups_by_gid.get(group.gid, "a system group")
        reasons.append(f"gid {group.gid} belongs to local group {owner!r}")
    return reasons


# -- the view ---------------------------------------------------------------------------------
class AccountView:
    """An immutable, indexed view of the accounts this node serves.

    Build it once per snapshot and swap it in whole: readers never see a half-updated
    view, and every lookup is a dict access. ``conflicts`` lists what local accounts
    refused; memberships of a refused user are dropped too, so a local account that
    shares a VO user's name never gains that user's VO groups.
    """

    def __init__(
        self,
        snapshot: Mapping[str, Any],
        local: LocalAccounts | None = None,
        *,
        limits: Limits = Limits(),  # noqa: B008 - frozen, never mutated
    ) -> None:
        if not isinstance(snapshot, Mapping):
            raise SnapshotError("snapshot: not a JSON object")
        local = local or LocalAccounts()
        revision = snapshot.get("revision", 0)
        if type(revision) is not int or revision < 0:
            raise SnapshotError(f"snapshot: revision {revision!r} is not a number >= 0")
        node = snapshot.get("node", "")
        if not isinstance(node, str):
            raise SnapshotError(f"snapshot: node {node!r} is not a string")
        self.revision: int = revision
        self.node: str = node

        users = [_parse_user(i, e) for i, e in enumerate(_list(snapshot, "users",
                                                                limits.max_users))]
        raw_groups = [_parse_group(i, e) for i, e in enumerate(_list(snapshot, "groups",
                                                                      limits.max_groups))]
        _refuse_duplicates("user", ((u.name, u.uid) for u in users), "uid")
        # Private groups and VO groups share one namespace of names and of numbers.
        _refuse_duplicates("group", [*((u.name, u.gid) for u in users),
                                     *((g.name, g.gid) for g, _ in raw_groups)], "gid")
        known = {u.name for u in users}
        total = 0
        for group, members in raw_groups:
            total += len(members)
            missing = next((m for m in members if m not in known), None)
            if missing is not None:
                raise SnapshotError(f"group {group.name!r}: member {missing!r} is not a user "
                                    "of the snapshot")
        if total > limits.max_memberships:
            raise SnapshotError(f"snapshot: {total} memberships exceed the limit of "
                                f"{limits.max_memberships}")

        conflicts: list[Conflict] = []
        users_by_name: dict[str, User] = {}
        users_by_uid: dict[int, User] = {}
        groups_by_name: dict[str, Group] = {}
        groups_by_gid: dict[int, Group] = {}

        def add_group(group: Group) -> None:
            groups_by_name[group.name] = groups_by_gid[group.gid] = group

        for user in users:
            if reasons := _user_clashes(user, local):
                conflicts.append(Conflict("user", user.name, user.uid, "; ".join(reasons)))
                continue
            users_by_name[user.name] = user
            users_by_uid[user.uid] = user
            add_group(Group(user.name, user.gid, private=True))
        groups_of: dict[str, list[str]] = {}
        for group, members in raw_groups:
            if reasons := _group_clashes(group, local):
                conflicts.append(Conflict("group", group.name, group.gid, "; ".join(reasons)))
                continue
            served = tuple(m for m in members if m in users_by_name)
            add_group(Group(group.name, group.gid, served, group.path, group.vo))
            for member in served:
                groups_of.setdefault(member, []).append(group.name)
        self._freeze(users_by_name, users_by_uid, groups_by_name, groups_by_gid,
                     {name: tuple(sorted(names)) for name, names in groups_of.items()},
                     conflicts, local)

    def _freeze(self, users_by_name: Mapping[str, User], users_by_uid: Mapping[int, User],
                groups_by_name: Mapping[str, Group], groups_by_gid: Mapping[int, Group],
                groups_of: Mapping[str, tuple[str, ...]], conflicts: Iterable[Conflict],
                local: LocalAccounts) -> None:
        """Keep the indexes as persistent maps: :meth:`updated` shares them with its
        successor and copies only what a change touches."""
        self._users_by_name: Map[str, User] = Map(users_by_name)
        self._users_by_uid: Map[int, User] = Map(users_by_uid)
        self._groups_by_name: Map[str, Group] = Map(groups_by_name)
        self._groups_by_gid: Map[int, Group] = Map(groups_by_gid)
        self._groups_of: Map[str, tuple[str, ...]] = Map(groups_of)
        self.conflicts: tuple[Conflict, ...] = tuple(conflicts)
        self._local = local

    # -- the node agent's snapshots: no second parse, and changes that cost their size ------
    @classmethod
    def from_snapshot(cls, snapshot: NodeSnapshot,
                      local: LocalAccounts | None = None) -> AccountView:
        """The view of the node agent's snapshot, which ``xos_node.model`` has validated
        (names, numbers, uniqueness, members): only the local accounts are checked here."""
        from xos_node.model import gc_paused

        with gc_paused():
            return cls._from_snapshot(snapshot, local or LocalAccounts())

    @classmethod
    def _from_snapshot(cls, snapshot: NodeSnapshot, local: LocalAccounts) -> AccountView:
        conflicts: list[Conflict] = []
        users_by_name: dict[str, User] = {}
        users_by_uid: dict[int, User] = {}
        groups_by_name: dict[str, Group] = {}
        groups_by_gid: dict[int, Group] = {}
        for name, entry in snapshot.users.items():
            user = User(name, entry.uid, entry.gid, entry.display_name, entry.locked, entry.id)
            if reasons := _user_clashes(user, local):
                conflicts.append(Conflict("user", name, user.uid, "; ".join(reasons)))
                continue
            users_by_name[name] = users_by_uid[user.uid] = user
            groups_by_name[name] = groups_by_gid[user.gid] = Group(name, user.gid,
                                                                    private=True)
        refused = [c.name for c in conflicts]
        groups_of: dict[str, list[str]] = {}
        for name, group_entry in snapshot.groups.items():
            members: Any = group_entry.members
            hidden = [user for user in refused if user in members]
            if hidden:  # a local account that shares a VO user's name gains nothing
                members = members.changed((), hidden)
            group = Group(name, group_entry.gid, members, group_entry.path, group_entry.vo)
            if reasons := _group_clashes(group, local):
                conflicts.append(Conflict("group", name, group.gid, "; ".join(reasons)))
                continue
            groups_by_name[name] = groups_by_gid[group.gid] = group
            for member in members:
                groups_of.setdefault(member, []).append(name)
        view = cls.__new__(cls)
        view.revision, view.node = snapshot.revision, snapshot.node
        view._freeze(users_by_name, users_by_uid, groups_by_name, groups_by_gid,
                     {user: tuple(sorted(names)) for user, names in groups_of.items()},
                     sorted(conflicts, key=lambda c: (c.kind, c.name)), local)
        return view

    def updated(self, snapshot: NodeSnapshot) -> AccountView:
        """The view of ``snapshot``, a successor of the one this view shows: only what it
        touched is redone (a whole build when it does not say what it touched, or was made
        from an older snapshot than this view's). The caller must have shown this view
        every snapshot that changed something since: answers without changes move the
        revision on in between, so a gap in revisions alone proves nothing missing."""
        touched = snapshot.touched
        if touched is None or touched.since < self.revision:
            return AccountView.from_snapshot(snapshot, self._local)
        return self._changed(snapshot, touched.users, touched.groups, touched.removed_groups,
                             touched.memberships)

    def _changed(self, snapshot: NodeSnapshot, users: Iterable[str], groups: Iterable[str],
                 removed_groups: Iterable[str],
                 pairs: Iterable[tuple[str, str]]) -> AccountView:
        by_name, by_uid = self._users_by_name.mutate(), self._users_by_uid.mutate()
        groups_by_name, by_gid = self._groups_by_name.mutate(), self._groups_by_gid.mutate()
        groups_of = self._groups_of.mutate()
        conflicts = {(c.kind, c.name): c for c in self.conflicts}
        local = self._local
        for name in users:
            entry = snapshot.users[name]
            user = User(name, entry.uid, entry.gid, entry.display_name, entry.locked, entry.id)
            conflicts.pop(("user", name), None)
            if reasons := _user_clashes(user, local):
                # names and numbers never change, so a refused user was never served
                conflicts[("user", name)] = Conflict("user", name, user.uid,
                                                     "; ".join(reasons))
                continue
            by_name[name] = by_uid[user.uid] = user
            groups_by_name[name] = by_gid[user.gid] = Group(name, user.gid, private=True)
        refused = [name for kind, name in conflicts if kind == "user"]

        def drop(group: Group) -> None:
            del groups_by_name[group.name]
            del by_gid[group.gid]
            for member in group.members:
                rest = tuple(g for g in groups_of.get(member, ()) if g != group.name)
                if rest:
                    groups_of[member] = rest
                else:
                    groups_of.pop(member, None)

        for name in removed_groups:
            conflicts.pop(("group", name), None)
            old = groups_by_name.get(name)
            if old is not None and not old.private:
                drop(old)
        for name in groups:
            group_entry = snapshot.groups[name]
            members: Any = group_entry.members
            hidden = [user for user in refused if user in members]
            if hidden:  # a local account that shares a VO user's name gains nothing
                members = members.changed((), hidden)
            group = Group(name, group_entry.gid, members, group_entry.path, group_entry.vo)
            conflicts.pop(("group", name), None)
            if reasons := _group_clashes(group, local):
                conflicts[("group", name)] = Conflict("group", name, group.gid,
                                                      "; ".join(reasons))
                old = groups_by_name.get(name)
                if old is not None and not old.private:
                    drop(old)
                continue
            groups_by_name[name] = by_gid[group.gid] = group
        for user_name, group_name in pairs:
            found = groups_by_name.get(group_name)
            served = user_name in by_name and found is not None and not found.private \
                and user_name in found.members
            current = groups_of.get(user_name, ())
            if served and group_name not in current:
                groups_of[user_name] = tuple(sorted((*current, group_name)))
            elif not served and group_name in current:
                rest = tuple(g for g in current if g != group_name)
                if rest:
                    groups_of[user_name] = rest
                else:
                    del groups_of[user_name]
        view = AccountView.__new__(AccountView)
        view.revision, view.node = snapshot.revision, snapshot.node
        view._users_by_name, view._users_by_uid = by_name.finish(), by_uid.finish()
        view._groups_by_name, view._groups_by_gid = groups_by_name.finish(), by_gid.finish()
        view._groups_of = groups_of.finish()
        view.conflicts = tuple(sorted(conflicts.values(), key=lambda c: (c.kind, c.name)))
        view._local = local
        return view

    @classmethod
    def empty(cls) -> AccountView:
        """A view that serves nothing (before the first snapshot, or in tests)."""
        return cls({"users": [], "groups": []})

    @classmethod
    def from_files(
        cls,
        snapshot: Mapping[str, Any],
        passwd: str | PathLike[str] = USERS_FILE,
        group: str | PathLike[str] = GROUPS_FILE,
        *,
        limits: Limits = Limits(),  # noqa: B008 - frozen, never mutated
    ) -> AccountView:
        """A view of ``snapshot`` against the local accounts in ``passwd`` and ``group``."""
        return cls(snapshot, LocalAccounts.from_files(passwd, group), limits=limits)

    # -- lookups (O(1)) --------------------------------------------------------------------
    def user(self, name: str) -> User | None:
        return self._users_by_name.get(name)

    def user_by_uid(self, uid: int) -> User | None:
        return self._users_by_uid.get(uid)

    def group(self, name: str) -> Group | None:
        return self._groups_by_name.get(name)

    def group_by_gid(self, gid: int) -> Group | None:
        return self._groups_by_gid.get(gid)

    def groups_of(self, user: str) -> tuple[str, ...]:
        """The VO groups ``user`` is a member of (not the private, primary group)."""
        return self._groups_of.get(user, ())

    def members_of(self, group: str) -> Collection[str]:
        found = self._groups_by_name.get(group)
        return found.members if found is not None else ()

    # -- enumeration -------------------------------------------------------------------------
    def users(self) -> Iterator[User]:
        """Every user, by name (enumeration: ``getent passwd``)."""
        return iter(sorted(self._users_by_name.values(), key=lambda u: u.name))

    def groups(self) -> Iterator[Group]:
        """The private groups by name, then the VO groups by name."""
        return iter(sorted(self._groups_by_name.values(), key=lambda g: (not g.private,
                                                                         g.name)))

    def memberships(self) -> Iterator[tuple[str, str]]:
        """Every (user, group) pair, grouped by group."""
        for group in self.groups():
            for member in sorted(group.members):
                yield member, group.name

    def __len__(self) -> int:
        return len(self._users_by_name)

    def __repr__(self) -> str:
        return (f"<AccountView revision={self.revision} users={len(self._users_by_name)} "
                f"groups={len(self._groups_by_name)} conflicts={len(self.conflicts)}>")
