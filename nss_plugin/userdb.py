"""The io.systemd.UserDatabase methods over an AccountView, without any I/O.

Why apart from the socket code: the semantics (which error when, what streams, who sees
the privileged section) are the contract nss-systemd relies on, and are tested here
directly; ``varlink.py`` only moves bytes. See https://systemd.io/USER_GROUP_API/.

``call`` returns an iterator of reply parameter objects: one for a lookup, a lazy stream
for an enumeration (which the transport sends with ``"continues": true``). Every error is
raised as ``VarlinkError`` before the first item, never in the middle of a stream. A
stream keeps the view it started with, so a snapshot swapped in meanwhile cannot mix two
revisions into one enumeration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .accounts import AccountView, Group, User
from .client import GET_LOGIN_STATE, NODE_INTERFACE, NODE_NO_SUCH_USER, NODE_PERMISSION_DENIED
from .records import DISPOSITION, group_reply, user_reply

INTERFACE = "io.systemd.UserDatabase"
VARLINK_SERVICE = "org.varlink.service"

NO_RECORD_FOUND = f"{INTERFACE}.NoRecordFound"
BAD_SERVICE = f"{INTERFACE}.BadService"
CONFLICTING_RECORD_FOUND = f"{INTERFACE}.ConflictingRecordFound"
NON_MATCHING_RECORD_FOUND = f"{INTERFACE}.NonMatchingRecordFound"
INVALID_PARAMETER = f"{VARLINK_SERVICE}.InvalidParameter"
METHOD_NOT_FOUND = f"{VARLINK_SERVICE}.MethodNotFound"
INTERFACE_NOT_FOUND = f"{VARLINK_SERVICE}.InterfaceNotFound"
EXPECTED_MORE = f"{VARLINK_SERVICE}.ExpectedMore"

UID_MAX = 2**32 - 1
# nss-systemd 252 collects a group's members with a quadratic push-and-dedupe: getgrnam
# took 72 ms for 1,000 members, 2.6 s for 10,000 (minutes for 100,000), and every
# ``ls -l`` of a VO directory pays it. Larger groups are listed without members (as
# SSSD's ignore_group_members does); memberships by user (initgroups, ``id``) stay whole.
MAX_LISTED_MEMBERS = 1000

# The interface as documented by systemd (USER_GROUP_API.md), for introspection.
INTERFACE_DESCRIPTION = """interface io.systemd.UserDatabase

method GetUserRecord(
        uid : ?int,
        userName : ?string,
        fuzzyNames : ?[]string,
        dispositionMask : ?[]string,
        uidMin : ?int,
        uidMax : ?int,
        service : string
) -> (
        record : object,
        incomplete : bool
)

method GetGroupRecord(
        gid : ?int,
        groupName : ?string,
        fuzzyNames : ?[]string,
        dispositionMask : ?[]string,
        gidMin : ?int,
        gidMax : ?int,
        service : string
) -> (
        record : object,
        incomplete : bool
)

method GetMemberships(
        userName : ?string,
        groupName : ?string,
        service : string
) -> (
        userName : string,
        groupName : string
)

error NoRecordFound()
error BadService()
error ServiceNotAvailable()
error ConflictingRecordFound()
error NonMatchingRecordFound()
error EnumerationNotSupported()
"""


class VarlinkError(Exception):
    """A Varlink error reply: ``error`` is the qualified name, ``parameters`` its object."""

    def __init__(self, error: str, parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.parameters: dict[str, Any] = dict(parameters or {})


def _invalid(parameter: str) -> VarlinkError:
    return VarlinkError(INVALID_PARAMETER, {"parameter": parameter})


def _check_keys(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Unknown parameters are refused (as systemd's own services do), not ignored: a
    client asking for a filter we would silently drop would get wrong answers."""
    for key in params:
        if key not in allowed:
            raise _invalid(key)


def _opt_str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(key)
    return value


def _opt_number(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= UID_MAX:
        raise _invalid(key)
    return value


def _opt_strings(params: Mapping[str, Any], key: str) -> list[str] | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(key)
    return value


class _Filter:
    """The secondary search filters (fuzzyNames, dispositionMask, min/max number)."""

    def __init__(self, params: Mapping[str, Any], prefix: str) -> None:
        self.fuzzy = [f.lower() for f in _opt_strings(params, "fuzzyNames") or []]
        self.dispositions = _opt_strings(params, "dispositionMask")
        low = _opt_number(params, f"{prefix}Min")
        high = _opt_number(params, f"{prefix}Max")
        self.low = 0 if low is None else low
        self.high = UID_MAX if high is None else high

    def matches(self, number: int, *names: str) -> bool:
        if self.dispositions is not None and DISPOSITION not in self.dispositions:
            return False
        if not self.low <= number <= self.high:
            return False
        return not self.fuzzy or any(f in n.lower() for f in self.fuzzy for n in names if n)


def _nonempty(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``items``, or NoRecordFound when there are none (raised before any reply)."""
    first = next(items, None)
    if first is None:
        raise VarlinkError(NO_RECORD_FOUND)

    def chain() -> Iterator[dict[str, Any]]:
        yield first
        yield from items

    return chain()


def _lookup(by_name: Any, by_number: Any, name: str | None, number: int | None) -> Any:
    """Primary key lookup as the API defines it: both keys must name the same entry."""
    if name is not None and number is not None:
        if by_name is None and by_number is None:
            raise VarlinkError(NO_RECORD_FOUND)
        if by_name is not by_number:
            raise VarlinkError(CONFLICTING_RECORD_FOUND)
    found = by_name if name is not None else by_number
    if found is None:
        raise VarlinkError(NO_RECORD_FOUND)
    return found


class UserDatabase:
    """The userdb service ``service`` answering from an AccountView.

    ``replace()`` swaps the view atomically: each call reads the current view once.
    ``max_listed_members`` (None: no limit) caps GetMemberships by group name: a larger
    group answers NoRecordFound there, so glibc shows it without members, while
    GetMemberships by user name, and for one (user, group) pair, still tell the truth.
    Callers that read ``gr_mem`` (pam_succeed_if ``ingroup``, newgrp) then miss members
    of such groups; those that use getgrouplist/initgroups (sshd, sudo, id) do not.
    """

    USER_KEYS = frozenset({"uid", "userName", "fuzzyNames", "dispositionMask", "uidMin",
                           "uidMax", "service"})
    GROUP_KEYS = frozenset({"gid", "groupName", "fuzzyNames", "dispositionMask", "gidMin",
                            "gidMax", "service"})
    MEMBERSHIP_KEYS = frozenset({"userName", "groupName", "service"})

    def __init__(self, service: str, view: AccountView | None = None, *,
                 max_listed_members: int | None = MAX_LISTED_MEMBERS) -> None:
        self.service = service
        self.max_listed_members = max_listed_members
        self._view = view if view is not None else AccountView.empty()
        self._lock = threading.Lock()
        self._methods: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
            f"{INTERFACE}.GetUserRecord": self.get_user_record,
            f"{INTERFACE}.GetGroupRecord": self.get_group_record,
            f"{INTERFACE}.GetMemberships": self.get_memberships,
            GET_LOGIN_STATE: self.get_login_state,
            f"{VARLINK_SERVICE}.GetInfo": self.get_info,
            f"{VARLINK_SERVICE}.GetInterfaceDescription": self.get_interface_description,
        }

    @property
    def view(self) -> AccountView:
        return self._view

    def replace(self, view: AccountView) -> AccountView:
        """Serve ``view`` from now on; the previous view (streams in flight keep it)."""
        with self._lock:
            old, self._view = self._view, view
        return old

    # -- dispatch ----------------------------------------------------------------------------
    def call(
        self,
        method: str,
        parameters: Mapping[str, Any],
        *,
        more: bool = False,
        peer_uid: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run ``method``; an iterator of reply parameters (several only when ``more``).

        ``peer_uid`` is the caller's uid from SO_PEERCRED (None: unknown, treated as
        unprivileged).
        """
        handler = self._methods.get(method)
        if handler is None:
            interface = method.rpartition(".")[0]
            if interface in (INTERFACE, NODE_INTERFACE, VARLINK_SERVICE):
                raise VarlinkError(METHOD_NOT_FOUND, {"method": method})
            raise VarlinkError(INTERFACE_NOT_FOUND, {"interface": interface or method})
        return handler(parameters, more=more, peer_uid=peer_uid)

    def _check_service(self, params: Mapping[str, Any]) -> None:
        if params.get("service") != self.service:
            raise VarlinkError(BAD_SERVICE)

    @staticmethod
    def _need_more(more: bool) -> None:
        if not more:
            raise VarlinkError(EXPECTED_MORE)

    # -- io.systemd.UserDatabase -------------------------------------------------------------
    def get_user_record(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        _check_keys(params, self.USER_KEYS)
        uid = _opt_number(params, "uid")
        name = _opt_str(params, "userName")
        filt = _Filter(params, "uid")
        self._check_service(params)
        view = self._view

        def reply(user: User) -> dict[str, Any]:
            privileged = peer_uid is not None and peer_uid in (0, user.uid)
            return user_reply(user, self.service, view.groups_of(user.name),
                              privileged=privileged)

        if name is None and uid is None:
            self._need_more(more)
            return _nonempty(reply(u) for u in view.users()
                             if filt.matches(u.uid, u.name, u.display_name))
        by_name = view.user(name) if name is not None else None
        by_uid = view.user_by_uid(uid) if uid is not None else None
        user: User = _lookup(by_name, by_uid, name, uid)
        if not filt.matches(user.uid, user.name, user.display_name):
            raise VarlinkError(NON_MATCHING_RECORD_FOUND)
        return iter([reply(user)])

    def get_group_record(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        _check_keys(params, self.GROUP_KEYS)
        gid = _opt_number(params, "gid")
        name = _opt_str(params, "groupName")
        filt = _Filter(params, "gid")
        self._check_service(params)
        view = self._view
        if name is None and gid is None:
            self._need_more(more)
            return _nonempty(group_reply(g, self.service) for g in view.groups()
                             if filt.matches(g.gid, g.name))
        by_name = view.group(name) if name is not None else None
        by_gid = view.group_by_gid(gid) if gid is not None else None
        group: Group = _lookup(by_name, by_gid, name, gid)
        if not filt.matches(group.gid, group.name):
            raise VarlinkError(NON_MATCHING_RECORD_FOUND)
        return iter([group_reply(group, self.service)])

    def get_memberships(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        _check_keys(params, self.MEMBERSHIP_KEYS)
        user = _opt_str(params, "userName")
        group = _opt_str(params, "groupName")
        self._check_service(params)
        view = self._view
        if user is not None and group is not None:
            if user not in view.members_of(group):
                raise VarlinkError(NO_RECORD_FOUND)
            return iter([{"userName": user, "groupName": group}])
        self._need_more(more)
        if user is not None:
            pairs: Iterator[tuple[str, str]] = ((user, g) for g in view.groups_of(user))
        elif group is not None:
            members = view.members_of(group)
            if self.max_listed_members is not None and len(members) > self.max_listed_members:
                raise VarlinkError(NO_RECORD_FOUND)
            pairs = ((m, group) for m in members)
        else:
            pairs = view.memberships()
        return _nonempty({"userName": u, "groupName": g} for u, g in pairs)

    # -- io.xos.Node ---------------------------------------------------------------------------
    def get_login_state(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        """What the PAM helpers decide by: the user's numbers, global id and lock, and the
        revision and node of the view. Root only (the helpers run as root)."""
        _check_keys(params, frozenset({"userName"}))
        if peer_uid != 0:
            raise VarlinkError(NODE_PERMISSION_DENIED)
        name = _opt_str(params, "userName")
        view = self._view
        user = view.user(name) if name is not None else None
        if user is None:
            raise VarlinkError(NODE_NO_SUCH_USER)
        return iter([{"userName": user.name, "uid": user.uid, "gid": user.gid,
                      "realName": user.display_name, "id": user.id, "locked": user.locked,
                      "revision": view.revision, "node": view.node}])

    # -- org.varlink.service -------------------------------------------------------------------
    def get_info(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        _check_keys(params, frozenset())
        return iter([{"vendor": "XOS identity", "product": "xos-nss-provider",
                      "version": "1", "url": "https://systemd.io/USER_GROUP_API/",
                      "interfaces": [VARLINK_SERVICE, INTERFACE, NODE_INTERFACE]}])

    def get_interface_description(
        self, params: Mapping[str, Any], *, more: bool, peer_uid: int | None
    ) -> Iterator[dict[str, Any]]:
        _check_keys(params, frozenset({"interface"}))
        interface = params.get("interface")
        if interface != INTERFACE:
            raise VarlinkError(INTERFACE_NOT_FOUND, {"interface": interface})
        return iter([{"description": INTERFACE_DESCRIPTION}])
