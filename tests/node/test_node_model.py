"""The snapshot model: answers are applied as new objects, and every bad input from the
network is refused whole, leaving the snapshot being served untouched."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from node_fixtures import (
    NODE,
    REVISION,
    changes_answer,
    group,
    resync_answer,
    snapshot_answer,
    user,
)

from xos_node import Limits, ResyncRequired, Snapshot, StaleAnswer, SyncRefused
from xos_node.model import carries_changes


@pytest.fixture
def snap() -> Snapshot:
    return Snapshot.from_json(snapshot_answer(), node=NODE)


# -- the good path -------------------------------------------------------------------------
def test_a_snapshot_answer_reads_and_writes_back_the_same(snap: Snapshot) -> None:
    assert snap.node == NODE and snap.revision == REVISION and snap.vos == ("atlas",)
    assert snap.users["alice"].uid == 200000 and snap.users["carol"].locked
    assert snap.groups["atlas"].members == {"alice", "bob"}
    assert snap.to_json() == snapshot_answer()
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap
    assert snap.summary() == {"node": NODE, "revision": REVISION, "vos": ["atlas"],
                              "users": 3, "locked_users": 1, "groups": 2}


def test_the_served_maps_cannot_be_changed(snap: Snapshot) -> None:
    with pytest.raises(TypeError):
        snap.users["mallory"] = snap.users["alice"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del snap.groups["atlas"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="immutable"):
        snap.revision = 99


def test_changes_make_a_new_snapshot_and_leave_the_old_one_serving(snap: Snapshot) -> None:
    before = copy.deepcopy(snap.to_json())
    delta = changes_answer(
        users=[user("dave", 200003), user("bob", 200001, locked=True),
               user("alice", 200000, display_name="Alice Liddell")],
        groups=[group("atlas_higgs", 400002, "/atlas/higgs")],
        removed_groups=["atlas_analysis"],
        members_added=[{"user": "dave", "group": "atlas"},
                       {"user": "dave", "group": "atlas_higgs"}],
        members_removed=[{"user": "bob", "group": "atlas"},
                         {"user": "alice", "group": "atlas_analysis"}])
    new = snap.apply_changes(delta)
    assert new is not snap and snap.to_json() == before
    assert new.revision == REVISION + 1
    assert set(new.users) == {"alice", "bob", "carol", "dave"}
    assert new.users["bob"].locked and not new.users["dave"].locked
    assert new.users["alice"].display_name == "Alice Liddell"
    assert new.groups["atlas"].members == {"alice", "dave"}
    assert new.groups["atlas_higgs"].members == {"dave"} and "atlas_analysis" not in new.groups
    # the successor is as consistent as a snapshot read whole
    assert Snapshot.from_json(new.to_json()) == new
    # and it says what it changed, so consumers follow the change instead of rebuilding
    assert snap.touched is None and new.touched is not None
    assert new.touched.users == {"alice", "bob", "dave"}
    assert new.touched.groups == {"atlas", "atlas_higgs"}
    assert new.touched.removed_groups == {"atlas_analysis"}


def test_a_group_upsert_keeps_its_members(snap: Snapshot) -> None:
    new = snap.apply_changes(changes_answer(groups=[group("atlas", 400000, "/atlas")]))
    assert new.groups["atlas"].members == {"alice", "bob"}


def test_an_answer_with_nothing_new_returns_the_same_snapshot(snap: Snapshot) -> None:
    assert snap.apply_changes(changes_answer(revision=REVISION)) is snap


def test_an_answer_that_only_moves_the_revision_on(snap: Snapshot) -> None:
    delta = changes_answer(revision=REVISION + 7)
    new = snap.apply_changes(delta)
    assert new.revision == REVISION + 7 and new.users == snap.users
    assert not carries_changes(delta)
    assert carries_changes(changes_answer(members_removed=[{"user": "bob", "group": "atlas"}]))


def test_removing_a_member_of_a_group_removed_in_the_same_answer(snap: Snapshot) -> None:
    """The service lists the members of a deleted group in members_removed too."""
    new = snap.apply_changes(changes_answer(
        removed_groups=["atlas_analysis", "atlas_gone"],
        members_removed=[{"user": "alice", "group": "atlas_analysis"},
                         {"user": "zed", "group": "atlas_gone"}]))
    assert set(new.groups) == {"atlas"}


def test_resync_required_is_signalled(snap: Snapshot) -> None:
    with pytest.raises(ResyncRequired, match="fresh snapshot"):
        snap.apply_changes(resync_answer())


def test_departed_users_stay_resolvable_and_locked(snap: Snapshot) -> None:
    answer = snapshot_answer(revision=REVISION + 5)
    answer["vos"] = ["cms"]
    answer["users"] = [user("erin", 200010)]
    answer["groups"] = [group("cms", 400100, "/cms", ["erin"])]
    fresh = Snapshot.from_json(answer).keeping_departed(snap)
    assert {n: u.locked for n, u in fresh.users.items()} == {
        "alice": True, "bob": True, "carol": True, "erin": False}
    assert set(fresh.groups) == {"cms"} and fresh.revision == REVISION + 5
    assert Snapshot.from_json(fresh.to_json()) == fresh
    # a departed user whose number is now someone else's is dropped, never merged
    answer["users"] = [user("erin", 200000)]
    assert "alice" not in Snapshot.from_json(answer).keeping_departed(snap).users


# -- bad snapshots -------------------------------------------------------------------------
Edit = Callable[[dict[str, Any]], Any]


def _users(answer: dict[str, Any]) -> list[Any]:
    return answer["users"]  # type: ignore[no-any-return]


BAD_SNAPSHOTS: dict[str, tuple[Edit, str]] = {
    "colon in a name": (lambda a: _users(a)[0].update(name="ali:ce"), "not a POSIX-safe"),
    "newline after a name": (lambda a: _users(a)[0].update(name="alice\n"), "not a POSIX"),
    "newline inside a name": (lambda a: _users(a)[0].update(name="al\nroot::0:0"), "POSIX"),
    "NUL in a name": (lambda a: _users(a)[0].update(name="alice\x00"), "not a POSIX-safe"),
    "upper case name": (lambda a: _users(a)[0].update(name="Alice"), "not a POSIX-safe"),
    "33 character name": (lambda a: _users(a)[0].update(name="a" * 33), "not a POSIX-safe"),
    "name as a number": (lambda a: _users(a)[0].update(name=7), "not a POSIX-safe"),
    "uid below 1000": (lambda a: _users(a)[0].update(uid=999, gid=999), "not a number in"),
    "uid 0": (lambda a: _users(a)[0].update(uid=0, gid=0), "not a number in"),
    "uid 2^31": (lambda a: _users(a)[0].update(uid=2**31, gid=2**31), "not a number in"),
    "uid as text": (lambda a: _users(a)[0].update(uid="200000"), "not a number in"),
    "uid as float": (lambda a: _users(a)[0].update(uid=200000.0), "not a number in"),
    "uid as bool": (lambda a: _users(a)[0].update(uid=True, gid=True), "not a number in"),
    "gid not uid": (lambda a: _users(a)[0].update(gid=400000), "private groups"),
    "two users one name": (lambda a: _users(a).append(user("alice", 200009)), "listed twice"),
    "two users one uid": (lambda a: _users(a).append(user("dave", 200000)), "share the uid"),
    "two users one id": (lambda a: _users(a).append(user("dave", 200009, user_id=_users(a)[0][
        "id"])), "share the id"),
    "id not a uuid": (lambda a: _users(a)[0].update(id="alice"), "not a user id"),
    "locked as text": (lambda a: _users(a)[0].update(locked="no"), "not true or false"),
    "colon in display name": (lambda a: _users(a)[0].update(display_name="A:B"), "':'"),
    "newline in display name": (lambda a: _users(a)[0].update(display_name="A\nB"), "control"),
    "bidi in display name": (lambda a: _users(a)[0].update(display_name="A\u202eB"), "control"),
    "long display name": (lambda a: _users(a)[0].update(display_name="A" * 129), "at most"),
    "missing uid": (lambda a: _users(a)[0].pop("uid"), "'uid' is missing"),
    "user not an object": (lambda a: _users(a).append(["dave"]), "expected a JSON object"),
    "group gid of a user": (lambda a: a["groups"].append(group("atlas_x", 200001, "/atlas/x",
                                                               [])), "has the gid 200001"),
    "group named like a user": (lambda a: a["groups"].append(group("bob", 400009, "/atlas/b",
                                                                   [])), "is taken"),
    "two groups one gid": (lambda a: a["groups"].append(group("atlas_x", 400001, "/atlas/x",
                                                              [])), "has the gid 400001"),
    "member not a user": (lambda a: a["groups"][0]["members"].append("mallory"),
                          "mallory is not a user"),
    "member twice": (lambda a: a["groups"][0]["members"].append("alice"), "listed twice"),
    "member with colon": (lambda a: a["groups"][0]["members"].append("a:b"), "POSIX-safe"),
    "group of another VO": (lambda a: a["groups"].append(group("cms", 400100, "/cms", [])),
                            "not one this node serves"),
    "path outside its VO": (lambda a: a["groups"][1].update(path="/cms/analysis"),
                            "not in the VO"),
    "bad path": (lambda a: a["groups"][1].update(path="/atlas/../etc"), "not a VO or group"),
    "VO twice": (lambda a: a["vos"].append("atlas"), "listed twice"),
    "another node": (lambda a: a.update(node="wn2.grid.example"), "not for wn1.grid.example"),
    "revision negative": (lambda a: a.update(revision=-1), "not a revision"),
    "revision as text": (lambda a: a.update(revision="10"), "not a revision"),
    "users not a list": (lambda a: a.update(users={"alice": {}}), "expected a JSON list"),
}


@pytest.mark.parametrize("case", sorted(BAD_SNAPSHOTS))
def test_a_bad_snapshot_is_refused(case: str) -> None:
    edit, message = BAD_SNAPSHOTS[case]
    answer = snapshot_answer()
    edit(answer)
    with pytest.raises(SyncRefused, match=message):
        Snapshot.from_json(answer, node=NODE)


def test_error_messages_show_hostile_values_escaped() -> None:
    answer = snapshot_answer()
    answer["users"][0]["name"] = "x\nroot::0:0::/:/bin/sh"
    with pytest.raises(SyncRefused) as caught:
        Snapshot.from_json(answer)
    assert "\n" not in caught.value.reason and "\\n" in caught.value.reason


@pytest.mark.parametrize("limits, message", [
    (Limits(users=2), "users: 3 entries, more than the limit of 2"),
    (Limits(groups=1), "groups: 2 entries, more than the limit of 1"),
    (Limits(members=1), "more than the limit of 1"),
    (Limits(vos=0), "vos: 1 entries, more than the limit of 0"),
])
def test_an_oversized_snapshot_is_refused(limits: Limits, message: str) -> None:
    with pytest.raises(SyncRefused, match=message):
        Snapshot.from_json(snapshot_answer(), limits=limits)


# -- bad changes ---------------------------------------------------------------------------
BAD_CHANGES: dict[str, tuple[dict[str, Any], type[SyncRefused], str]] = {
    "an older revision": (changes_answer(revision=REVISION - 1), StaleAnswer,
                          "older than"),
    "the same revision with changes (a replay)": (
        changes_answer(revision=REVISION, users=[user("dave", 200003)]), StaleAnswer,
        "a replay"),
    "an answer to another since": (changes_answer(since=REVISION - 3), StaleAnswer,
                                   "changes since 7"),
    "another node": (changes_answer(node="wn2.grid.example"), SyncRefused, "not for"),
    "resync flag as text": ({**changes_answer(), "resync_required": "no"}, SyncRefused,
                            "not true or false"),
    "revision as float": ({**changes_answer(), "revision": 11.0}, SyncRefused,
                          "not a revision"),
    "a list missing": ({k: v for k, v in changes_answer().items() if k != "members_added"},
                       SyncRefused, "'members_added' is missing"),
    "colon in a new user": (changes_answer(users=[user("da:ve", 200003)]), SyncRefused,
                            "POSIX-safe"),
    "newline in a removed group": (changes_answer(removed_groups=["atlas\n"]), SyncRefused,
                                   "POSIX-safe"),
    "NUL in a member": (changes_answer(members_added=[{"user": "bob\x00", "group": "atlas"}]),
                        SyncRefused, "POSIX-safe"),
    "a member who is not a user": (
        changes_answer(members_added=[{"user": "mallory", "group": "atlas"}]), SyncRefused,
        "mallory is not a user"),
    "a member of an unknown group": (
        changes_answer(members_added=[{"user": "bob", "group": "wheel"}]), SyncRefused,
        "wheel is not a group"),
    "a member added and removed": (
        changes_answer(members_added=[{"user": "bob", "group": "atlas_analysis"}],
                       members_removed=[{"user": "bob", "group": "atlas_analysis"}]),
        SyncRefused, "both added to and removed"),
    "a new user with a known uid": (changes_answer(users=[user("dave", 200001)]),
                                    SyncRefused, "takes the name, number or id of bob"),
    "a new user with a group's gid": (changes_answer(users=[user("dave", 400001)]),
                                      SyncRefused, "of atlas_analysis"),
    "a new user named like a group": (changes_answer(users=[user("atlas", 200005)]),
                                      SyncRefused, "takes the name"),
    "a new user with a known id": (
        changes_answer(users=[user("dave", 200005, user_id=user("alice", 1)["id"])]),
        SyncRefused, "of alice"),
    "a known name given another id": (
        changes_answer(users=[user("alice", 200000, user_id=user("eve", 1)["id"])]),
        SyncRefused, "names are never reused"),
    "a known user's uid changed": (changes_answer(users=[user("alice", 200099)]),
                                   SyncRefused, "numbers never change"),
    "a user listed twice": (changes_answer(users=[user("dave", 200003), user("dave", 200003)]),
                            SyncRefused, "listed twice"),
    "a known group's gid changed": (
        changes_answer(groups=[group("atlas_analysis", 400077, "/atlas/analysis")]),
        SyncRefused, "would change"),
    "a new group with a user's uid": (
        changes_answer(groups=[group("atlas_x", 200000, "/atlas/x")]), SyncRefused,
        "of alice"),
    "a new group with a known gid": (
        changes_answer(groups=[group("atlas_x", 400000, "/atlas/x")]), SyncRefused,
        "of atlas"),
    "a group of a VO the node does not serve": (
        changes_answer(groups=[group("cms_x", 400200, "/cms/x")]), SyncRefused,
        "not one this node serves"),
    "a group upserted and removed": (
        changes_answer(groups=[group("atlas_x", 400200, "/atlas/x")],
                       removed_groups=["atlas_x"]), SyncRefused, "also removed"),
    "a display name with a newline": (
        changes_answer(users=[user("alice", 200000, display_name="A\nB")]), SyncRefused,
        "control characters"),
    "a number as bool": (changes_answer(users=[{**user("dave", 200003), "uid": True}]),
                         SyncRefused, "not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHANGES))
def test_bad_changes_are_refused_and_change_nothing(snap: Snapshot, case: str) -> None:
    delta, error, message = BAD_CHANGES[case]
    before = copy.deepcopy(snap.to_json())
    with pytest.raises(error, match=message):
        snap.apply_changes(copy.deepcopy(delta))
    assert snap.to_json() == before


def test_a_refusal_late_in_the_answer_applies_nothing_of_it(snap: Snapshot) -> None:
    """Valid upserts first, then one bad member: not even the upserts take effect."""
    delta = changes_answer(users=[user("dave", 200003), user("bob", 200001, locked=True)],
                           members_added=[{"user": "mallory", "group": "atlas"}])
    with pytest.raises(SyncRefused):
        snap.apply_changes(delta)
    assert "dave" not in snap.users and not snap.users["bob"].locked


@pytest.mark.parametrize("limits, delta, message", [
    (Limits(changes=1), changes_answer(users=[user("dave", 200003), user("erin", 200004)]),
     "users: 2 entries, more than the limit of 1"),
    (Limits(users=3), changes_answer(users=[user("dave", 200003)]), "more than the limit"),
    (Limits(groups=2), changes_answer(groups=[group("atlas_x", 400005, "/atlas/x")]),
     "more than the limit"),
    (Limits(members=2), changes_answer(members_added=[{"user": "carol", "group": "atlas"}]),
     "more than 2 members"),
])
def test_oversized_changes_are_refused(snap: Snapshot, limits: Limits, delta: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(SyncRefused, match=message):
        snap.apply_changes(delta, limits)


def test_an_answer_that_is_not_an_object_is_refused(snap: Snapshot) -> None:
    with pytest.raises(SyncRefused, match="expected a JSON object"):
        snap.apply_changes([changes_answer()])
    with pytest.raises(SyncRefused, match="expected a JSON object"):
        Snapshot.from_json("snapshot")
