"""The node's account view: a snapshot at a revision, and how a changes answer moves it on.

Everything here comes from the network and ends up in NSS records, ``/etc/group``-like
listings and file ownership, so nothing is used before it is validated:

- names match ``^[a-z_][a-z0-9_-]{0,31}$`` (no ':', newline or NUL can reach a record);
- numbers are ints (not bools, not floats) in 1000..2^31-1, and a user's gid is its uid
  (the private group), so an answer cannot hand a user's files to a VO group;
- names, numbers and user ids are unique across users and groups (users' private groups
  share the group namespace), and they never change hands: an answer that gives a known
  name another id or number is refused, because files on shared storage would change
  owner;
- every group member is a known user, every group belongs to one of the node's VOs;
- a changes answer must answer the question asked (``since`` = our revision) and be
  newer than what we hold: an older or equal one is a replay (``StaleAnswer``).

A violation raises ``SyncRefused`` and changes nothing: ``apply_changes`` builds a *new*
``Snapshot`` and the old one keeps serving until the caller swaps. Refusing entries that
shadow local accounts is not this module's job (``nss_plugin`` knows the local files).

The wire shapes are those of ``vo_service.sync.services`` (``snapshot`` and ``changes``);
``Snapshot.to_json`` writes the snapshot shape back, so the store reuses the same checks.
"""

from __future__ import annotations

import contextlib
import gc
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from immutables import Map

from .errors import ResyncRequired, StaleAnswer, SyncRefused

NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
COMPONENT_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
NODE_NAME_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
MIN_NUMBER = 1000
MAX_NUMBER = 2**31 - 1
MAX_REVISION = 2**62
#: Refused in display names (the GECOS field): its separators ':' and ','; C0 and C1
#: controls (exactly Unicode's Cc); line and paragraph separators (Zl, Zp: line breaks to
#: many tools); bidi embeddings, overrides and isolates (they reorder what ``ls -l`` or
#: ``ps`` shows). The same set as the service's ``validate_display_name``.
GECOS_FORBIDDEN = re.compile("[:,\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
CHANGE_LISTS = ("users", "groups", "removed_groups", "members_added", "members_removed")


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one answer may hold; beyond them the answer is refused.

    The defaults follow DESIGN.md's scale (1,000,000 users, at most 1000 VOs per node);
    they stop a broken or hostile service from making the agent build unbounded state."""

    users: int = 1_000_000
    groups: int = 200_000
    vos: int = 1000
    members: int = 1_000_000
    changes: int = 1_000_000
    display_name: int = 128
    path: int = 512


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class User:
    """A VO user as the node serves it; ``locked`` users resolve but may not log in."""

    id: str
    name: str
    uid: int
    gid: int
    display_name: str
    locked: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "uid": self.uid, "gid": self.gid,
                "display_name": self.display_name, "locked": self.locked}


class Members(AbstractSet[str]):
    """A group's member names: an immutable set that a change copies in the size of the
    change (a persistent map underneath), not of the group: VO groups of 50,000 members
    take a new member in microseconds. Compares equal to any set of the same names."""

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: Map[str, bool] = names._names if isinstance(names, Members) \
            else Map(dict.fromkeys(names, True))

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return f"Members({sorted(self._names)!r})"

    def changed(self, added: Iterable[str], removed: Iterable[str]) -> Members:
        """These members without ``removed``, with ``added``."""
        mutation = self._names.mutate()
        for name in removed:
            mutation.pop(name, None)
        for name in added:
            mutation[name] = True
        new = Members()
        new._names = mutation.finish()
        return new


@dataclass(frozen=True)
class Group:
    """A VO or VO group as a Unix group; ``members`` are user names."""

    name: str
    gid: int
    path: str
    vo: str
    members: Members

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "gid": self.gid, "path": self.path, "vo": self.vo,
                "members": sorted(self.members)}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a whole view is built.

    Why: building a hundred thousand small objects that all stay alive makes Python's
    collector walk the growing heap again and again (it counts allocations, not garbage);
    pausing it halves the time of a whole snapshot or NSS view. Nothing built here forms
    cycles, so nothing is left for the collector to find afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- validation of single values ------------------------------------------------------
def _show(value: object, limit: int = 40) -> str:
    """A bad value for an error message: repr (so newlines and NULs show as escapes),
    bounded, whatever its type."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _field(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise SyncRefused(f"{where}: {key!r} is missing")
    return entry[key]


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SyncRefused(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: object, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise SyncRefused(f"{where}: expected a JSON list, got {type(value).__name__}")
    if len(value) > limit:
        raise SyncRefused(f"{where}: {len(value)} entries, more than the limit of {limit}")
    return value


def check_name(value: object, where: str) -> str:
    """A user or group name safe for every Unix record: ``^[a-z_][a-z0-9_-]{0,31}$``."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise SyncRefused(f"{where}: {_show(value)} is not a POSIX-safe name")
    return value


def check_number(value: object, where: str) -> int:
    """A uid or gid: a real int (JSON true is not 1) in 1000..2^31-1."""
    if type(value) is not int or not MIN_NUMBER <= value <= MAX_NUMBER:
        raise SyncRefused(f"{where}: {_show(value)} is not a number in"
                          f" {MIN_NUMBER}..{MAX_NUMBER}")
    return value


def check_revision(value: object, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_REVISION:
        raise SyncRefused(f"{where}: {_show(value)} is not a revision number")
    return value


def check_node_name(value: object, where: str = "node") -> str:
    if not isinstance(value, str) or not NODE_NAME_RE.fullmatch(value):
        raise SyncRefused(f"{where}: {_show(value)} is not a node (host) name")
    return value


def _component(value: object, where: str) -> str:
    if not isinstance(value, str) or not COMPONENT_RE.fullmatch(value):
        raise SyncRefused(f"{where}: {_show(value)} is not a VO or group name")
    return value


def _user_id(value: object, where: str) -> str:
    """The global id: a UUID in its canonical text form, so one user has one spelling."""
    try:
        canonical = str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        canonical = None
    if canonical is None or canonical != value:
        raise SyncRefused(f"{where}: {_show(value)} is not a user id (UUID)")
    return canonical


def _display_name(value: object, where: str, limits: Limits) -> str:
    """The GECOS field: no ':' or ',' (its separators), no control or bidi characters."""
    if not isinstance(value, str) or len(value) > limits.display_name:
        raise SyncRefused(f"{where}: not a display name of at most {limits.display_name}"
                          " characters")
    if GECOS_FORBIDDEN.search(value):
        raise SyncRefused(f"{where}: {_show(value)} holds ':', ',' or control characters")
    return value


def _path(value: object, where: str, limits: Limits) -> list[str]:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > limits.path:
        raise SyncRefused(f"{where}: {_show(value)} is not a VO group path (/vo/group)")
    return [_component(c, where) for c in value[1:].split("/")]


def parse_user(raw: object, where: str, limits: Limits = DEFAULT_LIMITS) -> User:
    entry = _mapping(raw, where)
    uid = check_number(_field(entry, "uid", where), f"{where}.uid")
    gid = check_number(_field(entry, "gid", where), f"{where}.gid")
    if gid != uid:
        raise SyncRefused(f"{where}: gid {gid} is not the uid {uid} (users' private groups"
                          " have gid = uid)")
    locked = _field(entry, "locked", where)
    if not isinstance(locked, bool):
        raise SyncRefused(f"{where}.locked: {_show(locked)} is not true or false")
    return User(id=_user_id(_field(entry, "id", where), f"{where}.id"),
                name=check_name(_field(entry, "name", where), f"{where}.name"),
                uid=uid, gid=gid,
                display_name=_display_name(_field(entry, "display_name", where),
                                           f"{where}.display_name", limits),
                locked=locked)


def parse_group(raw: object, where: str, vos: Iterable[str], limits: Limits = DEFAULT_LIMITS,
                *, with_members: bool) -> Group:
    """A group entry; ``with_members`` for snapshots (changes answers carry membership
    apart, in ``members_added`` and ``members_removed``)."""
    entry = _mapping(raw, where)
    name = check_name(_field(entry, "name", where), f"{where}.name")
    path = _field(entry, "path", where)
    components = _path(path, f"{where}.path", limits)
    vo = _component(_field(entry, "vo", where), f"{where}.vo")
    if vo != components[0]:
        raise SyncRefused(f"{where}: the path {path} is not in the VO {vo}")
    if vo not in vos:
        raise SyncRefused(f"{where}: the VO {vo} is not one this node serves")
    members = Members()
    if with_members:
        listed = _list(_field(entry, "members", where), f"{where}.members", limits.members)
        members = Members(check_name(m, f"{where}.members") for m in listed)
        if len(members) != len(listed):
            raise SyncRefused(f"{where}.members: a member is listed twice")
    return Group(name=name, gid=check_number(_field(entry, "gid", where), f"{where}.gid"),
                 path=path, vo=vo, members=members)


def _pair(raw: object, where: str) -> tuple[str, str]:
    entry = _mapping(raw, where)
    return (check_name(_field(entry, "user", where), f"{where}.user"),
            check_name(_field(entry, "group", where), f"{where}.group"))


# -- the snapshot ---------------------------------------------------------------------
class _Index:
    """Plain dicts for building a whole snapshot (the fastest way), checked entry by
    entry: unique names, numbers and ids across users and groups."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.uid_owner: dict[int, str] = {}
        self.gid_owner: dict[int, str] = {}
        self.id_owner: dict[str, str] = {}

    def add_user(self, user: User) -> None:
        if user.name in self.users:
            raise SyncRefused(f"user {user.name} is listed twice")
        if user.uid in self.uid_owner:
            raise SyncRefused(f"users {self.uid_owner[user.uid]} and {user.name} share the"
                              f" uid {user.uid}")
        if user.id in self.id_owner:
            raise SyncRefused(f"users {self.id_owner[user.id]} and {user.name} share the id"
                              f" {user.id}")
        self.users[user.name] = user
        self.uid_owner[user.uid] = user.name
        self.id_owner[user.id] = user.name

    def add_group(self, group: Group) -> None:
        if group.name in self.groups or group.name in self.users:
            raise SyncRefused(f"the group name {group.name} is taken (by a"
                              f" {'group' if group.name in self.groups else 'user'})")
        owner = self.gid_owner.get(group.gid) or self.uid_owner.get(group.gid)
        if owner is not None:
            raise SyncRefused(f"the group {group.name} has the gid {group.gid} of {owner}")
        self.groups[group.name] = group
        self.gid_owner[group.gid] = group.name


class Snapshot:
    """An immutable, validated account view of one node at one revision.

    Build one with ``from_json`` (an answer or a stored file: everything is checked) or
    get the next one from ``apply_changes``. The indexes are persistent maps
    (``immutables.Map``, a hash array mapped trie): a successor shares all but the entries
    a change touched, so applying ten changes costs ten entries, not a copy of a hundred
    thousand, and a snapshot being served can never change under a reader.

    ``touched`` names the users and groups that differ from the predecessor
    (``apply_changes`` sets it; None for a snapshot built whole), so that consumers such
    as the NSS view can follow the change instead of rebuilding."""

    __slots__ = ("node", "revision", "vos", "touched", "_users", "_groups", "_uid_owner",
                 "_gid_owner", "_id_owner")

    node: str
    revision: int
    vos: tuple[str, ...]
    touched: Touched | None
    _users: Map[str, User]
    _groups: Map[str, Group]
    _uid_owner: Map[int, str]
    _gid_owner: Map[int, str]
    _id_owner: Map[str, str]

    def __init__(self, node: str, revision: int, vos: Iterable[str], users: Iterable[User],
                 groups: Iterable[Group], limits: Limits = DEFAULT_LIMITS) -> None:
        """Check the whole view: unique names, numbers and ids across users and groups,
        members that are users, groups of the node's VOs."""
        self._set(node=check_node_name(node), revision=check_revision(revision, "revision"),
                  vos=tuple(vos), touched=None)
        if len(self.vos) > limits.vos:
            raise SyncRefused(f"vos: {len(self.vos)} VOs, more than the limit of {limits.vos}")
        for vo in self.vos:
            _component(vo, "vos")
        if len(set(self.vos)) != len(self.vos):
            raise SyncRefused("vos: a VO is listed twice")
        index = _Index()
        for user in users:
            index.add_user(user)
            if len(index.users) > limits.users:
                raise SyncRefused(f"users: more than the limit of {limits.users}")
        for group in groups:
            if group.vo not in self.vos:
                raise SyncRefused(f"group {group.name}: the VO {group.vo} is not one this"
                                  " node serves")
            index.add_group(group)
            if len(index.groups) > limits.groups:
                raise SyncRefused(f"groups: more than the limit of {limits.groups}")
            if len(group.members) > limits.members:
                raise SyncRefused(f"group {group.name}: more than {limits.members} members")
            strangers = [m for m in group.members if m not in index.users]
            if strangers:
                raise SyncRefused(f"group {group.name}: the member {min(strangers)} is not a"
                                  " user of this node")
        self._set(_users=Map(index.users), _groups=Map(index.groups),
                  _uid_owner=Map(index.uid_owner), _gid_owner=Map(index.gid_owner),
                  _id_owner=Map(index.id_owner))

    @classmethod
    def _assemble(cls, source: Snapshot, revision: int, users: Map[str, User],
                  groups: Map[str, Group], uid_owner: Map[int, str],
                  gid_owner: Map[int, str], id_owner: Map[str, str],
                  touched: Touched | None) -> Snapshot:
        """A successor whose parts the caller has checked (``apply_changes``): checking
        them again would cost the whole population for every small change."""
        new = cls.__new__(cls)
        new._set(node=source.node, revision=revision, vos=source.vos, touched=touched,
                 _users=users, _groups=groups, _uid_owner=uid_owner, _gid_owner=gid_owner,
                 _id_owner=id_owner)
        return new

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Snapshot is immutable; {name} cannot be set")

    @classmethod
    def from_json(cls, data: object, node: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> Snapshot:
        """A snapshot answer (or a stored one), validated whole; ``node`` is the name the
        answer must be for (an answer meant for another node is refused)."""
        with gc_paused():
            return cls._from_json(data, node, limits)

    @classmethod
    def _from_json(cls, data: object, node: str | None, limits: Limits) -> Snapshot:
        body = _mapping(data, "snapshot")
        name = check_node_name(_field(body, "node", "snapshot"))
        if node is not None and name != node:
            raise SyncRefused(f"the snapshot is for the node {name}, not for {node}")
        vos = [_component(v, "vos") for v in
               _list(_field(body, "vos", "snapshot"), "vos", limits.vos)]
        users = [parse_user(u, f"users[{i}]", limits) for i, u in
                 enumerate(_list(_field(body, "users", "snapshot"), "users", limits.users))]
        groups = [parse_group(g, f"groups[{i}]", vos, limits, with_members=True)
                  for i, g in enumerate(_list(_field(body, "groups", "snapshot"), "groups",
                                              limits.groups))]
        return cls(name, check_revision(_field(body, "revision", "snapshot"), "revision"),
                   vos, users, groups, limits)

    def to_json(self) -> dict[str, Any]:
        """The snapshot answer's shape, in a stable order (users by name, groups by path)."""
        return {"node": self.node, "revision": self.revision, "vos": sorted(self.vos),
                "users": [u.to_json() for _, u in sorted(self._users.items())],
                "groups": [g.to_json() for g in sorted(self._groups.values(),
                                                        key=lambda g: g.path)]}

    @property
    def users(self) -> Mapping[str, User]:
        return self._users

    @property
    def groups(self) -> Mapping[str, Group]:
        return self._groups

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (self.node, self.revision, sorted(self.vos), self._users, self._groups) == (
            other.node, other.revision, sorted(other.vos), other._users, other._groups)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<Snapshot {self.node} revision {self.revision}: {len(self._users)} users,"
                f" {len(self._groups)} groups>")

    def summary(self) -> dict[str, Any]:
        locked = sum(1 for u in self._users.values() if u.locked)
        return {"node": self.node, "revision": self.revision, "vos": sorted(self.vos),
                "users": len(self._users), "locked_users": locked,
                "groups": len(self._groups)}

    # -- moving on ---------------------------------------------------------------------
    def apply_changes(self, delta: object, limits: Limits = DEFAULT_LIMITS) -> Snapshot:
        """The snapshot after a changes answer, as a new object; ``self`` is untouched.

        Returns ``self`` when the answer carries nothing new (same revision, no change).
        Raises ``ResyncRequired`` when the service asks for a fresh snapshot,
        ``StaleAnswer`` for an answer that is not newer than this snapshot or answers
        another ``since``, and ``SyncRefused`` for anything invalid."""
        body = _mapping(delta, "changes")
        name = check_node_name(_field(body, "node", "changes"))
        if name != self.node:
            raise SyncRefused(f"the changes are for the node {name}, not for {self.node}")
        resync = _field(body, "resync_required", "changes")
        if not isinstance(resync, bool):
            raise SyncRefused(f"resync_required: {_show(resync)} is not true or false")
        since = check_revision(_field(body, "since", "changes"), "since")
        revision = check_revision(_field(body, "revision", "changes"), "revision")
        if resync:
            raise ResyncRequired(f"the service asks node {self.node} for a fresh snapshot"
                                 f" (node at {self.revision}, service at {revision})")
        if since != self.revision:
            raise StaleAnswer(f"an answer for changes since {since}, but the node holds"
                              f" revision {self.revision}")
        lists = {key: _list(_field(body, key, "changes"), key, limits.changes)
                 for key in CHANGE_LISTS}
        if revision < self.revision:
            raise StaleAnswer(f"revision {revision} is older than the node's {self.revision}")
        if revision == self.revision:
            if any(lists.values()):
                raise StaleAnswer(f"changes at revision {revision}, which the node already"
                                  " holds (a replay)")
            return self
        return _Successor(self, limits).build(revision, lists)

    def keeping_departed(self, previous: Snapshot | None) -> Snapshot:
        """This (fresh) snapshot plus, locked and in no group, the users of ``previous``
        that it no longer lists.

        Why: after the node's VO set changes, the service's fresh snapshot forgets the
        users of VOs the node stopped serving, but their files stay on the node's disks;
        DESIGN.md wants them resolvable (locked) so the files keep an owner's name. A
        departed user whose name, number or id is now taken is dropped, never merged."""
        if previous is None:
            return self
        users = self._users.mutate()
        uid_owner, id_owner = self._uid_owner.mutate(), self._id_owner.mutate()
        for user in previous._users.values():
            if user.name in users or user.name in self._groups or user.uid in uid_owner \
                    or user.uid in self._gid_owner or user.id in id_owner:
                continue
            users[user.name] = User(user.id, user.name, user.uid, user.gid,
                                    user.display_name, locked=True)
            uid_owner[user.uid], id_owner[user.id] = user.name, user.name
        if len(users) == len(self._users):
            return self
        return Snapshot._assemble(self, self.revision, users.finish(), self._groups,
                                  uid_owner.finish(), self._gid_owner, id_owner.finish(),
                                  None)


def carries_changes(delta: Mapping[str, Any]) -> bool:
    """Whether a (validated) changes answer changes the view, not only the revision."""
    return any(delta.get(key) for key in CHANGE_LISTS)


@dataclass(frozen=True)
class Touched:
    """The names a successor changed: users added or changed, groups added or changed
    (members included), groups removed."""

    users: frozenset[str]
    groups: frozenset[str]
    removed_groups: frozenset[str]
    #: (user, group) pairs whose membership may have changed (added or removed)
    memberships: frozenset[tuple[str, str]] = frozenset()
    #: the revision of the snapshot these changes were applied to
    since: int = 0


class _Successor:
    """The work of one ``apply_changes``: mutations of the current persistent maps (the
    base stays as it was), changed and checked entry by entry against the indexes, so
    the cost follows the change."""

    def __init__(self, base: Snapshot, limits: Limits) -> None:
        self.base, self.limits = base, limits
        self.users = base._users.mutate()
        self.groups = base._groups.mutate()
        self.uid_owner = base._uid_owner.mutate()
        self.gid_owner = base._gid_owner.mutate()
        self.id_owner = base._id_owner.mutate()
        self.touched_users: set[str] = set()
        self.touched_groups: set[str] = set()
        self.touched_pairs: set[tuple[str, str]] = set()

    def build(self, revision: int, lists: dict[str, list[Any]]) -> Snapshot:
        self._upsert_users(lists["users"])
        removed = {check_name(n, "removed_groups") for n in lists["removed_groups"]}
        self._upsert_groups(lists["groups"], removed)
        for name in removed:
            group = self.groups.get(name)
            if group is not None:
                del self.groups[name]
                del self.gid_owner[group.gid]
        self._members(lists["members_added"], lists["members_removed"])
        if len(self.users) > self.limits.users:
            raise SyncRefused(f"users: more than the limit of {self.limits.users}")
        if len(self.groups) > self.limits.groups:
            raise SyncRefused(f"groups: more than the limit of {self.limits.groups}")
        touched = Touched(frozenset(self.touched_users),
                          frozenset(self.touched_groups - removed), frozenset(removed),
                          frozenset(self.touched_pairs), self.base.revision)
        return Snapshot._assemble(self.base, revision, self.users.finish(),
                                  self.groups.finish(), self.uid_owner.finish(),
                                  self.gid_owner.finish(), self.id_owner.finish(), touched)

    def _upsert_users(self, entries: list[Any]) -> None:
        seen: set[str] = set()
        for i, raw in enumerate(entries):
            user = parse_user(raw, f"users[{i}]", self.limits)
            if user.name in seen:
                raise SyncRefused(f"users: {user.name} is listed twice")
            seen.add(user.name)
            old = self.users.get(user.name)
            if old is not None:
                if old.id != user.id:
                    raise SyncRefused(f"users[{i}]: the name {user.name} belongs to the user"
                                      f" {old.id}, not {user.id} (names are never reused)")
                if old.uid != user.uid:
                    raise SyncRefused(f"users[{i}]: the uid of {user.name} would change from"
                                      f" {old.uid} to {user.uid} (numbers never change)")
            else:
                holder = self.id_owner.get(user.id) or self.uid_owner.get(user.uid) \
                    or self.gid_owner.get(user.uid)
                if holder is not None or user.name in self.groups:
                    raise SyncRefused(f"users[{i}]: the new user {user.name} takes the name,"
                                      f" number or id of {holder or user.name}")
                self.uid_owner[user.uid] = self.id_owner[user.id] = user.name
            self.users[user.name] = user
            self.touched_users.add(user.name)

    def _upsert_groups(self, entries: list[Any], removed: set[str]) -> None:
        seen: set[str] = set()
        for i, raw in enumerate(entries):
            group = parse_group(raw, f"groups[{i}]", self.base.vos, self.limits,
                                with_members=False)
            if group.name in seen or group.name in removed:
                raise SyncRefused(f"groups: {group.name} is listed twice (or also removed)")
            seen.add(group.name)
            old = self.groups.get(group.name)
            if old is not None:
                if (old.gid, old.path) != (group.gid, group.path):
                    raise SyncRefused(f"groups[{i}]: the group {group.name} would change from"
                                      f" {old.path} ({old.gid}) to {group.path} ({group.gid})")
                group = Group(group.name, group.gid, group.path, group.vo, old.members)
            else:
                holder = self.gid_owner.get(group.gid) or self.uid_owner.get(group.gid)
                if holder is not None or group.name in self.users:
                    raise SyncRefused(f"groups[{i}]: the new group {group.name} takes the name"
                                      f" or number of {holder or group.name}")
                self.gid_owner[group.gid] = group.name
            self.groups[group.name] = group
            self.touched_groups.add(group.name)

    def _members(self, added_raw: list[Any], removed_raw: list[Any]) -> None:
        added = [_pair(raw, f"members_added[{i}]") for i, raw in enumerate(added_raw)]
        removed = {_pair(raw, f"members_removed[{i}]") for i, raw in enumerate(removed_raw)}
        changes: dict[str, tuple[set[str], set[str]]] = {}
        for i, (user, group) in enumerate(added):
            if group not in self.groups:
                raise SyncRefused(f"members_added[{i}]: {group} is not a group of this node")
            if user not in self.users:
                raise SyncRefused(f"members_added[{i}]: {user} is not a user of this node")
            if (user, group) in removed:
                raise SyncRefused(f"members_added[{i}]: {user} is both added to and removed"
                                  f" from {group}")
            changes.setdefault(group, (set(), set()))[0].add(user)
        for user, group in removed:
            if group in self.groups:  # a group removed in this answer lists its members too
                changes.setdefault(group, (set(), set()))[1].add(user)
        for name, (plus, minus) in changes.items():
            old = self.groups[name]
            members = old.members.changed(plus, minus)
            self.touched_pairs.update((user, name) for user in plus | minus)
            if len(members) > self.limits.members:
                raise SyncRefused(f"group {name}: more than {self.limits.members} members")
            self.groups[name] = Group(old.name, old.gid, old.path, old.vo, members)
            self.touched_groups.add(name)
