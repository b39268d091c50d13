"""io.systemd.UserDatabase semantics without sockets: which reply or error, and when."""

from __future__ import annotations

from typing import Any

import pytest
from nss_fixtures import atlas_snapshot, big_snapshot, local_accounts

from nss_plugin import AccountView, UserDatabase, VarlinkError

SERVICE = "io.xos.Accounts"
IFACE = "io.systemd.UserDatabase"


@pytest.fixture
def db() -> UserDatabase:
    return UserDatabase(SERVICE, AccountView(atlas_snapshot(), local_accounts()))


def call(db: UserDatabase, method: str, more: bool = False, peer_uid: int | None = 0,
         **params: Any) -> list[dict[str, Any]]:
    params.setdefault("service", SERVICE)
    return list(db.call(f"{IFACE}.{method}", params, more=more, peer_uid=peer_uid))


def error_of(db: UserDatabase, method: str, more: bool = False, **params: Any) -> str:
    with pytest.raises(VarlinkError) as info:
        call(db, method, more, **params)
    return info.value.error


# -- GetUserRecord ----------------------------------------------------------------------------
def test_user_by_name_and_by_uid(db: UserDatabase) -> None:
    [by_name] = call(db, "GetUserRecord", userName="alice")
    [by_uid] = call(db, "GetUserRecord", uid=200001)
    assert by_name == by_uid
    assert by_name["record"]["userName"] == "alice" and by_name["incomplete"] is False
    [both] = call(db, "GetUserRecord", userName="alice", uid=200001)
    assert both == by_name


def test_user_lookup_errors(db: UserDatabase) -> None:
    assert error_of(db, "GetUserRecord", userName="nosuch") == f"{IFACE}.NoRecordFound"
    assert error_of(db, "GetUserRecord", uid=0) == f"{IFACE}.NoRecordFound"
    assert error_of(db, "GetUserRecord", userName="x", uid=1) == f"{IFACE}.NoRecordFound"
    assert error_of(db, "GetUserRecord", userName="alice", uid=200002) == \
        f"{IFACE}.ConflictingRecordFound"
    assert error_of(db, "GetUserRecord", userName="nosuch", uid=200002) == \
        f"{IFACE}.ConflictingRecordFound"


def test_bad_service(db: UserDatabase) -> None:
    assert error_of(db, "GetUserRecord", userName="alice", service="io.systemd.Home") == \
        f"{IFACE}.BadService"
    with pytest.raises(VarlinkError, match="BadService"):
        list(db.call(f"{IFACE}.GetGroupRecord", {"groupName": "atlas"}))  # no service
    assert error_of(db, "GetMemberships", userName="alice", more=True, service=None) == \
        f"{IFACE}.BadService"


@pytest.mark.parametrize("params", [
    {"uid": "200001"}, {"uid": -1}, {"uid": 2**32}, {"uid": True}, {"userName": 5},
    {"fuzzyNames": "alice"}, {"dispositionMask": [1]}, {"uidMin": 1.5}, {"color": "red"},
])
def test_invalid_parameters(db: UserDatabase, params: dict[str, Any]) -> None:
    with pytest.raises(VarlinkError) as info:
        call(db, "GetUserRecord", **params)
    assert info.value.error == "org.varlink.service.InvalidParameter"
    assert info.value.parameters == {"parameter": next(iter(params))}


def test_privileged_section_for_root_and_self_only(db: UserDatabase) -> None:
    """Like /etc/shadow: root and the user see the shadow fields, others get incomplete."""
    for peer in (0, 200001):
        [reply] = call(db, "GetUserRecord", peer_uid=peer, userName="alice")
        assert reply["incomplete"] is False and "privileged" in reply["record"]
    for other in (200002, 65534, None):
        [reply] = call(db, "GetUserRecord", peer_uid=other, userName="alice")
        assert reply["incomplete"] is True and "privileged" not in reply["record"]


def test_secondary_filters(db: UserDatabase) -> None:
    assert call(db, "GetUserRecord", userName="alice", fuzzyNames=["LIDDELL"])
    assert call(db, "GetUserRecord", userName="alice", dispositionMask=["regular"])
    assert call(db, "GetUserRecord", userName="alice", uidMin=200001, uidMax=200001)
    for filters in ({"fuzzyNames": ["zzz"]}, {"dispositionMask": ["system"]},
                    {"uidMin": 200002}, {"uidMax": 1000}):
        assert error_of(db, "GetUserRecord", userName="alice", **filters) == \
            f"{IFACE}.NonMatchingRecordFound"
    names = [r["record"]["userName"]
             for r in call(db, "GetUserRecord", more=True, uidMin=200002)]
    assert names == ["bob", "carol"]
    assert error_of(db, "GetUserRecord", more=True, dispositionMask=["intrinsic"]) == \
        f"{IFACE}.NoRecordFound"


def test_user_enumeration_needs_more(db: UserDatabase) -> None:
    assert error_of(db, "GetUserRecord") == "org.varlink.service.ExpectedMore"
    names = [r["record"]["userName"] for r in call(db, "GetUserRecord", more=True)]
    assert sorted(names) == ["alice", "bob", "carol"]


# -- GetGroupRecord ---------------------------------------------------------------------------
def test_groups(db: UserDatabase) -> None:
    [reply] = call(db, "GetGroupRecord", groupName="atlas_analysis")
    assert reply == {"record": {"groupName": "atlas_analysis", "gid": 400001,
                                "disposition": "regular", "service": SERVICE},
                     "incomplete": False}
    assert call(db, "GetGroupRecord", gid=400001) == [reply]
    [private] = call(db, "GetGroupRecord", gid=200001)
    assert private["record"]["groupName"] == "alice"
    assert error_of(db, "GetGroupRecord", groupName="sudo") == f"{IFACE}.NoRecordFound"
    assert error_of(db, "GetGroupRecord", groupName="atlas", gid=400001) == \
        f"{IFACE}.ConflictingRecordFound"
    assert error_of(db, "GetGroupRecord", groupName="atlas", gidMax=100) == \
        f"{IFACE}.NonMatchingRecordFound"
    assert error_of(db, "GetGroupRecord", uid=1) == "org.varlink.service.InvalidParameter"
    names = sorted(r["record"]["groupName"] for r in call(db, "GetGroupRecord", more=True))
    assert names == ["alice", "atlas", "atlas_analysis", "bob", "carol"]


# -- GetMemberships ---------------------------------------------------------------------------
def pairs(replies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["userName"], r["groupName"]) for r in replies)


def test_memberships(db: UserDatabase) -> None:
    assert pairs(call(db, "GetMemberships", more=True, userName="alice")) == [
        ("alice", "atlas"), ("alice", "atlas_analysis")]
    assert pairs(call(db, "GetMemberships", more=True, groupName="atlas")) == [
        ("alice", "atlas"), ("bob", "atlas")]
    assert pairs(call(db, "GetMemberships", more=True)) == [
        ("alice", "atlas"), ("alice", "atlas_analysis"), ("bob", "atlas")]
    assert call(db, "GetMemberships", userName="bob", groupName="atlas") == [
        {"userName": "bob", "groupName": "atlas"}]


def test_membership_errors(db: UserDatabase) -> None:
    assert error_of(db, "GetMemberships", userName="bob", groupName="atlas_analysis") == \
        f"{IFACE}.NoRecordFound"
    assert error_of(db, "GetMemberships", more=True, userName="carol") == \
        f"{IFACE}.NoRecordFound"  # locked: a user without VO groups
    assert error_of(db, "GetMemberships", more=True, groupName="alice") == \
        f"{IFACE}.NoRecordFound"  # the private group has no listed members
    assert error_of(db, "GetMemberships", userName="alice") == \
        "org.varlink.service.ExpectedMore"
    assert error_of(db, "GetMemberships", more=True, uid=1) == \
        "org.varlink.service.InvalidParameter"


def test_big_groups_are_listed_without_members() -> None:
    """Above the cap, GetMemberships by group says nothing (glibc shows no members), but
    by user, and for a pair, it still tells the truth: initgroups and ``id`` stay right."""
    db = UserDatabase(SERVICE, AccountView(atlas_snapshot(), local_accounts()),
                      max_listed_members=1)
    assert error_of(db, "GetMemberships", more=True, groupName="atlas") == \
        f"{IFACE}.NoRecordFound"
    assert pairs(call(db, "GetMemberships", more=True, groupName="atlas_analysis")) == [
        ("alice", "atlas_analysis")]
    assert pairs(call(db, "GetMemberships", more=True, userName="bob")) == [("bob", "atlas")]
    assert call(db, "GetMemberships", userName="bob", groupName="atlas")
    assert len(call(db, "GetMemberships", more=True)) == 3
    unlimited = UserDatabase(SERVICE, AccountView(big_snapshot(1500), local_accounts()),
                             max_listed_members=None)
    assert len(call(unlimited, "GetMemberships", more=True, groupName="atlas")) == 1500
    default = UserDatabase(SERVICE, AccountView(big_snapshot(1500), local_accounts()))
    assert default.max_listed_members == 1000
    assert error_of(default, "GetMemberships", more=True, groupName="atlas") == \
        f"{IFACE}.NoRecordFound"
    assert len(call(default, "GetMemberships", more=True, groupName="atlas_prod")) == 150


# -- dispatch and swapping --------------------------------------------------------------------
def test_unknown_methods(db: UserDatabase) -> None:
    with pytest.raises(VarlinkError) as info:
        list(db.call(f"{IFACE}.DeleteUser", {}))
    assert (info.value.error, info.value.parameters) == (
        "org.varlink.service.MethodNotFound", {"method": f"{IFACE}.DeleteUser"})
    with pytest.raises(VarlinkError) as info:
        list(db.call("com.example.Thing.Do", {}))
    assert (info.value.error, info.value.parameters) == (
        "org.varlink.service.InterfaceNotFound", {"interface": "com.example.Thing"})


def test_introspection(db: UserDatabase) -> None:
    [info] = db.call("org.varlink.service.GetInfo", {})
    assert IFACE in info["interfaces"]
    [desc] = db.call("org.varlink.service.GetInterfaceDescription", {"interface": IFACE})
    assert desc["description"].startswith(f"interface {IFACE}\n")
    assert "method GetMemberships(" in desc["description"]
    with pytest.raises(VarlinkError, match="InterfaceNotFound"):
        db.call("org.varlink.service.GetInterfaceDescription", {"interface": "x.y"})


def test_replace_is_atomic_and_streams_keep_their_view(db: UserDatabase) -> None:
    stream = db.call(f"{IFACE}.GetUserRecord", {"service": SERVICE}, more=True, peer_uid=0)
    first = next(stream)
    old = db.replace(AccountView(big_snapshot(5), local_accounts()))
    assert old.user("alice") is not None
    rest = list(stream)
    assert sorted([first, *rest], key=lambda r: r["record"]["uid"])[0]["record"][
        "userName"] == "alice"
    assert len(rest) == 2  # the enumeration finished on the view it started with
    assert error_of(db, "GetUserRecord", userName="alice") == f"{IFACE}.NoRecordFound"
    assert call(db, "GetUserRecord", userName="u0000004")


# -- io.xos.Node: what the node's PAM helpers ask ----------------------------------------------
def test_login_state_for_root_only(db: UserDatabase) -> None:
    method = "io.xos.Node.GetLoginState"
    [state] = db.call(method, {"userName": "alice"}, peer_uid=0)
    assert (state["userName"], state["uid"], state["locked"], state["revision"]) == (
        "alice", 200001, False, 42)
    assert state["id"] == db.view.user("alice").id  # type: ignore[union-attr]
    for peer in (None, 1000, 200001):  # not even alice herself
        with pytest.raises(VarlinkError) as refused:
            list(db.call(method, {"userName": "alice"}, peer_uid=peer))
        assert refused.value.error == "io.xos.Node.PermissionDenied"
    for params in ({"userName": "nosuch"}, {}):
        with pytest.raises(VarlinkError) as unknown:
            list(db.call(method, params, peer_uid=0))
        assert unknown.value.error == "io.xos.Node.NoSuchUser"
    with pytest.raises(VarlinkError) as bad:
        list(db.call(method, {"userName": "alice", "uid": 1}, peer_uid=0))
    assert bad.value.error.endswith("InvalidParameter")
    with pytest.raises(VarlinkError) as missing:
        list(db.call("io.xos.Node.Nope", {}, peer_uid=0))
    assert missing.value.error == "org.varlink.service.MethodNotFound"
