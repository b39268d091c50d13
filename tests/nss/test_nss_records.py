"""The JSON user and group records, field by field (systemd.io/USER_RECORD, GROUP_RECORD)."""

from __future__ import annotations

import json

from nss_fixtures import atlas_snapshot, local_accounts, snapshot, user

from nss_plugin import AccountView, group_record, user_record
from nss_plugin.records import group_reply, user_reply

SERVICE = "io.xos.Accounts"
VIEW = AccountView(atlas_snapshot(), local_accounts())


def get_user(name: str):  # type: ignore[no-untyped-def]
    found = VIEW.user(name)
    assert found is not None
    return found


def test_user_record_fields() -> None:
    record = user_record(get_user("alice"), SERVICE, VIEW.groups_of("alice"))
    assert record == {
        "userName": "alice", "uid": 200001, "gid": 200001, "realName": "Alice Liddell",
        "homeDirectory": "/home/alice", "shell": "/bin/bash", "disposition": "regular",
        "locked": False, "memberOf": ["atlas", "atlas_analysis"], "service": SERVICE,
    }


def test_every_record_names_the_service() -> None:
    """nss-systemd refuses a record without "service" (the user simply does not exist)."""
    for u in VIEW.users():
        assert user_record(u, SERVICE)["service"] == SERVICE
    for g in VIEW.groups():
        assert group_record(g, SERVICE)["service"] == SERVICE


def test_locked_user_keeps_shell_and_home() -> None:
    record = user_record(get_user("carol"), SERVICE, privileged=True)
    assert record["locked"] is True and record["shell"] == "/bin/bash"
    assert record["homeDirectory"] == "/home/carol"
    assert record["privileged"] == {"hashedPassword": ["!*"]}
    assert "memberOf" not in record


def test_privileged_section_only_when_asked() -> None:
    alice = get_user("alice")
    assert "privileged" not in user_record(alice, SERVICE)
    assert user_record(alice, SERVICE, privileged=True)["privileged"] == {
        "hashedPassword": ["*"]}  # no password, not locked: logins go by certificate/token
    assert user_reply(alice, SERVICE, (), privileged=False)["incomplete"] is True
    assert user_reply(alice, SERVICE, (), privileged=True)["incomplete"] is False


def test_empty_display_name_is_left_out() -> None:
    v = AccountView(snapshot([{"name": "dave", "uid": 200004, "gid": 200004}]))
    dave = v.user("dave")
    assert dave is not None and "realName" not in user_record(dave, SERVICE)


def test_group_records_carry_no_members() -> None:
    """Members come from GetMemberships only: initgroups fetches the record of every group
    a user is in, and a member list there made each login pay for the whole group."""
    vo_group = VIEW.group("atlas")
    private = VIEW.group("alice")
    assert vo_group is not None and private is not None
    assert group_record(vo_group, SERVICE) == {
        "groupName": "atlas", "gid": 400000, "disposition": "regular", "service": SERVICE}
    assert group_record(private, SERVICE) == {
        "groupName": "alice", "gid": 200001, "disposition": "regular", "service": SERVICE}
    assert group_reply(vo_group, SERVICE) == {"record": group_record(vo_group, SERVICE),
                                              "incomplete": False}
    assert not any("members" in group_record(g, SERVICE) for g in VIEW.groups())


def test_records_are_plain_json() -> None:
    """No sets, tuples or objects that json would refuse or reshape."""
    v = AccountView(snapshot([user("eve", 200005, display_name="Ève Ünïcödé")]))
    eve = v.user("eve")
    assert eve is not None
    record = user_record(eve, SERVICE, ("atlas",), privileged=True)
    assert json.loads(json.dumps(record)) == record
    assert record["realName"] == "Ève Ünïcödé"
