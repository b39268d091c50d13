"""AccountView: snapshot validation (refused whole) and local conflicts (refused per entry)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from nss_fixtures import (
    LOCAL_GROUP,
    LOCAL_PASSWD,
    atlas_snapshot,
    group,
    local_accounts,
    private_tmp,
    snapshot,
    user,
)

from nss_plugin import AccountView, Conflict, Limits, LocalAccounts, SnapshotError

LOCAL = local_accounts()


def view(data: dict[str, Any], local: LocalAccounts = LOCAL, **kw: Any) -> AccountView:
    return AccountView(data, local, **kw)


# -- a good snapshot ---------------------------------------------------------------------------
def test_lookups_by_name_and_number() -> None:
    v = view(atlas_snapshot())
    alice = v.user("alice")
    assert alice is not None and alice.uid == 200001 and alice.gid == 200001
    assert alice.display_name == "Alice Liddell" and not alice.locked
    assert v.user_by_uid(200001) is alice
    assert v.group("atlas_analysis") is v.group_by_gid(400001)
    assert v.user("nosuch") is None and v.user_by_uid(1) is None and v.group("x") is None
    assert (v.revision, v.node, len(v), v.conflicts) == (42, "wn1.grid.example", 3, ())


def test_private_group_is_the_primary_group_only() -> None:
    v = view(atlas_snapshot())
    private = v.group("alice")
    assert private is not None and private.private and private.gid == 200001
    assert private.members == ()  # primary gid, never listed as a membership
    assert "alice" not in v.groups_of("alice")


def test_memberships_both_ways() -> None:
    v = view(atlas_snapshot())
    assert v.groups_of("alice") == ("atlas", "atlas_analysis")
    assert v.groups_of("bob") == ("atlas",)
    assert v.groups_of("carol") == () and v.groups_of("nosuch") == ()
    assert v.members_of("atlas") == ("alice", "bob")
    assert v.members_of("atlas_analysis") == ("alice",)
    assert v.members_of("nosuch") == ()
    assert sorted(v.memberships()) == [("alice", "atlas"), ("alice", "atlas_analysis"),
                                       ("bob", "atlas")]
    vo_group = v.group("atlas")
    assert vo_group is not None and not vo_group.private
    assert (vo_group.path, vo_group.vo) == ("/atlas", "atlas")


def test_locked_users_stay_resolvable() -> None:
    """Suspended users keep a name for their files; only PAM decides who gets in."""
    carol = view(atlas_snapshot()).user("carol")
    assert carol is not None and carol.locked and carol.uid == 200003


def test_enumeration_and_empty_view() -> None:
    v = view(atlas_snapshot())
    assert sorted(u.name for u in v.users()) == ["alice", "bob", "carol"]
    assert sorted(g.name for g in v.groups()) == ["alice", "atlas", "atlas_analysis", "bob",
                                                  "carol"]
    empty = AccountView.empty()
    assert len(empty) == 0 and list(empty.groups()) == [] and list(empty.memberships()) == []


def test_display_name_is_cleaned_not_refused() -> None:
    """':' and newlines would corrupt passwd-format output; the name is cosmetic."""
    v = view(snapshot([user("alice", 200001, display_name="Dr: Alice\nLiddell\x07 ")]))
    alice = v.user("alice")
    assert alice is not None and alice.display_name == "Dr Alice Liddell"
    long = view(snapshot([user("bob", 200002, display_name="B" * 1000)])).user("bob")
    assert long is not None and len(long.display_name) == 256


def test_from_files_reads_the_local_accounts() -> None:
    with private_tmp() as tmp:
        (tmp / "passwd").write_text(LOCAL_PASSWD + "alice:x:1500:1500::/home/alice:/bin/sh\n")
        (tmp / "group").write_text(LOCAL_GROUP)
        v = AccountView.from_files(atlas_snapshot(), tmp / "passwd", tmp / "group")
    assert v.user("alice") is None
    assert [c.name for c in v.conflicts] == ["alice"]


def test_missing_local_files_refuse_to_build() -> None:
    """Without the local accounts nothing protects root: better not to serve at all."""
    with private_tmp() as tmp, pytest.raises(FileNotFoundError):
        AccountView.from_files(atlas_snapshot(), tmp / "passwd", tmp / "group")


def test_local_file_parsing_is_conservative() -> None:
    local = local_accounts(
        "# comment\n+nisuser::0:0:::\n\nbroken\nodd:x:notanumber:1::/:/bin/sh\n"
        "root:x:0:0::/root:/bin/sh\n", "staff:x:50:\n-nisgroup\n")
    assert set(local.users_by_name) == {"broken", "odd", "root"}
    assert local.users_by_uid == {0: "root"}
    assert local.groups_by_gid == {50: "staff"}


# -- refused whole ----------------------------------------------------------------------------
BAD_USERS = [
    ({"name": "Alice"}, r"users\[0\] \('Alice'\): name 'Alice' is not a POSIX-safe name"),
    ({"name": "ali:ce"}, r"name 'ali:ce' is not a POSIX-safe name"),
    ({"name": "alice\n"}, r"name 'alice\\n' is not a POSIX-safe name"),
    ({"name": "ali\nce"}, r"is not a POSIX-safe name"),
    ({"name": "9lives"}, r"is not a POSIX-safe name"),
    ({"name": "a" * 33}, r"is not a POSIX-safe name"),
    ({"name": ""}, r"is not a POSIX-safe name"),
    ({"name": None}, r"users\[0\]: name None is not a POSIX-safe name"),
    ({"uid": 0, "gid": 0}, r"uid 0 is outside 1000\.\.2147483647"),
    ({"uid": 27, "gid": 27}, r"uid 27 is outside"),
    ({"uid": 999, "gid": 999}, r"uid 999 is outside"),
    ({"uid": 2**31, "gid": 2**31}, r"uid 2147483648 is outside"),
    ({"uid": -1, "gid": -1}, r"uid -1 is outside"),
    ({"uid": 65535, "gid": 65535}, r"uid 65535 is outside .* \(invalid for systemd\)"),
    ({"uid": "200001"}, r"uid '200001' is not an integer"),
    ({"uid": 200001.0}, r"uid 200001.0 is not an integer"),
    ({"uid": True}, r"uid True is not an integer"),
    ({"gid": 200002}, r"gid 200002 differs from uid 200001"),
    ({"locked": "no"}, r"locked 'no' is not a boolean"),
    ({"id": "not-a-uuid"}, r"id 'not-a-uuid' is not a UUID"),
    ({"display_name": 7}, r"display_name 7 is not a string"),
]


@pytest.mark.parametrize(("change", "message"), BAD_USERS)
def test_bad_user_refuses_the_whole_snapshot(change: dict[str, Any], message: str) -> None:
    data = atlas_snapshot()
    data["users"] = [{**user("alice", 200001), **change}]
    data["groups"] = []
    with pytest.raises(SnapshotError, match=message):
        view(data)


def test_snapshot_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="users is missing or not a list"):
        view({"groups": []})


BAD_GROUPS = [
    ({"name": "at:las"}, r"groups\[0\] \('at:las'\): name 'at:las' is not a POSIX-safe"),
    ({"name": "atlas\n"}, r"name 'atlas\\n' is not a POSIX-safe name"),
    ({"gid": 27}, r"gid 27 is outside"),
    ({"gid": None}, r"gid None is not an integer"),
    ({"members": "alice"}, r"members is not a list"),
    ({"members": ["alice", "alice"]}, r"a member is listed twice"),
    ({"members": ["al:ice"]}, r"member 'al:ice' is not a POSIX-safe name"),
    ({"members": ["mallory"]}, r"group 'atlas': member 'mallory' is not a user of the snapshot"),
    ({"path": "/atlas\n"}, r"path '/atlas\\n' is not a printable string"),
    ({"vo": 3}, r"vo 3 is not a printable string"),
]


@pytest.mark.parametrize(("change", "message"), BAD_GROUPS)
def test_bad_group_refuses_the_whole_snapshot(change: dict[str, Any], message: str) -> None:
    data = snapshot([user("alice", 200001)], [{**group("atlas", 400000, ["alice"]), **change}])
    with pytest.raises(SnapshotError, match=message):
        view(data)


@pytest.mark.parametrize(("data", "message"), [
    (snapshot([user("alice", 200001), user("alice", 200002)]),
     r"user 'alice': name used twice"),
    (snapshot([user("alice", 200001), user("bob", 200001)]),
     r"user 'bob': uid 200001 already used by 'alice'"),
    (snapshot([user("alice", 200001)], [group("atlas", 400000), group("atlas", 400001)]),
     r"group 'atlas': name used twice"),
    (snapshot([user("alice", 200001)], [group("atlas", 400000), group("cms", 400000)]),
     r"group 'cms': gid 400000 already used by 'atlas'"),
    # A VO group may not take a private group's name or number: one namespace each.
    (snapshot([user("alice", 200001)], [group("alice", 400000)]),
     r"group 'alice': name used twice"),
    (snapshot([user("alice", 200001)], [group("atlas", 200001)]),
     r"group 'atlas': gid 200001 already used by 'alice'"),
])
def test_duplicates_refuse_the_whole_snapshot(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        view(data)


@pytest.mark.parametrize(("data", "message"), [
    ([], r"snapshot: not a JSON object"),
    ({"users": {}, "groups": []}, r"users is missing or not a list"),
    ({"users": [], "groups": None}, r"groups is missing or not a list"),
    ({"users": ["alice"], "groups": []}, r"users\[0\]: not an object"),
    ({"users": [], "groups": [7]}, r"groups\[0\]: not an object"),
    ({"users": [], "groups": [], "revision": -1}, r"revision -1"),
    ({"users": [], "groups": [], "revision": "42"}, r"revision '42'"),
    ({"users": [], "groups": [], "node": 5}, r"node 5 is not a string"),
])
def test_malformed_snapshot(data: Any, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        view(data)


def test_oversized_snapshot_is_refused() -> None:
    data = snapshot([user(f"u{i}", 200000 + i) for i in range(11)],
                    [group("atlas", 400000, [f"u{i}" for i in range(11)]),
                     group("cms", 400001, [f"u{i}" for i in range(11)])])
    with pytest.raises(SnapshotError, match=r"11 users exceed the limit of 10"):
        view(data, limits=Limits(max_users=10))
    with pytest.raises(SnapshotError, match=r"2 groups exceed the limit of 1"):
        view(data, limits=Limits(max_groups=1))
    with pytest.raises(SnapshotError, match=r"22 memberships exceed the limit of 20"):
        view(data, limits=Limits(max_memberships=20))
    assert len(view(data)) == 11  # the default limits follow the design's scale


def test_a_refused_snapshot_changes_nothing() -> None:
    data = atlas_snapshot()
    before = copy.deepcopy(data)
    data["users"].append({"name": "root", "uid": 0, "gid": 0})
    with pytest.raises(SnapshotError):
        view(data)
    data["users"].pop()
    assert data == before


# -- conflicts with local accounts (refused entry by entry) -----------------------------------
def conflicts(data: dict[str, Any], local: LocalAccounts = LOCAL) -> list[tuple[str, str]]:
    return [(c.kind, c.name) for c in view(data, local).conflicts]


def test_user_named_root_is_refused_rest_served() -> None:
    v = view(snapshot([user("root", 200005), user("alice", 200001)]))
    assert v.conflicts == (Conflict("user", "root", 200005,
                                    "name belongs to local user 'root'; "
                                    "private group name belongs to local group 'root'"),)
    assert v.user("root") is None and v.user_by_uid(200005) is None
    assert v.group("root") is None and v.group_by_gid(200005) is None
    alice = v.user("alice")
    assert alice is not None and alice.uid == 200001


def test_reserved_names_win_even_when_local_files_lack_them() -> None:
    """systemd synthesizes root and nobody when /etc lacks them."""
    empty = local_accounts("", "")
    assert conflicts(snapshot([user("root", 200005), user("nobody", 200006)],
                              [group("nogroup", 400000)]), empty) == [
        ("user", "root"), ("user", "nobody"), ("group", "nogroup")]


def test_local_user_name_wins() -> None:
    v = view(snapshot([user("admin", 200007)]))
    assert v.user("admin") is None
    assert "name belongs to local user 'admin'" in v.conflicts[0].reason


def test_local_uid_wins() -> None:
    v = view(snapshot([user("mallory", 1000)]))
    assert v.user_by_uid(1000) is None and v.user("mallory") is None
    assert v.conflicts[0].reason.startswith("uid 1000 belongs to local user 'admin'")


def test_user_named_like_a_local_group_is_refused() -> None:
    """Its private group would shadow the local group (here one with members)."""
    v = view(snapshot([user("hpcops", 200008)]))
    assert v.conflicts == (Conflict("user", "hpcops", 200008,
                                    "private group name belongs to local group 'hpcops'"),)


def test_group_named_like_a_local_group_is_refused() -> None:
    data = snapshot([user("alice", 200001)],
                    [group("sudo", 400000, ["alice"]), group("wheel", 400001, ["alice"]),
                     group("atlas", 400002, ["alice"])])
    v = view(data)
    assert conflicts(data) == [("group", "sudo"), ("group", "wheel")]
    assert v.group("sudo") is None and v.group_by_gid(400000) is None
    assert v.groups_of("alice") == ("atlas",)  # never a member of a refused group


def test_group_with_the_gid_of_a_local_admin_group_is_refused() -> None:
    """The gid of sudo or wheel: here a site admin group inside the VO number range."""
    data = snapshot([user("alice", 200001)], [group("atlas", 4000, ["alice"])])
    v = view(data)
    assert v.conflicts == (Conflict("group", "atlas", 4000,
                                    "gid 4000 belongs to local group 'hpcops'"),)
    assert v.group_by_gid(4000) is None and v.groups_of("alice") == ()


def test_private_gid_of_a_local_group_is_refused() -> None:
    local = local_accounts(LOCAL_PASSWD, LOCAL_GROUP + "projects:x:200009:\n")
    v = view(snapshot([user("dave", 200009)]), local)
    assert v.user("dave") is None
    assert v.conflicts[0].reason == "private group gid 200009 belongs to local group 'projects'"


def test_refused_user_loses_its_memberships() -> None:
    """A local account that shares a VO user's name must not gain that user's VO groups."""
    data = snapshot([user("admin", 200007), user("alice", 200001)],
                    [group("atlas", 400000, ["admin", "alice"])])
    v = view(data)
    assert v.members_of("atlas") == ("alice",)
    assert v.groups_of("admin") == ()
    assert ("admin", "atlas") not in set(v.memberships())


def test_every_refusal_is_reported() -> None:
    data = snapshot([user("root", 200005), user("admin", 200007), user("mallory", 1000),
                     user("alice", 200001)],
                    [group("sudo", 400000), group("atlas", 4000), group("cms", 400001)])
    v = view(data)
    assert [(c.kind, c.name, c.number) for c in v.conflicts] == [
        ("user", "root", 200005), ("user", "admin", 200007), ("user", "mallory", 1000),
        ("group", "sudo", 400000), ("group", "atlas", 4000)]
    assert str(v.conflicts[0]).startswith("user root (200005) refused: name belongs")
    assert sorted(u.name for u in v.users()) == ["alice"]
    assert v.group("cms") is not None
