"""Importing a VO's users and groups from a real, throwaway slapd (tests/e2e/slapd.py),
loaded with good and hostile entries (tests/ldap_import_directory.py): the preview, the
import, the second run that changes nothing, removals on sync, conflicts with local
accounts, and filter injection through the operator's inputs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from e2e.slapd import Slapd, free_port, missing_tools
from ldap_import_directory import (
    HOSTILE,
    OUTSIDE,
    SCRIPT,
    group_dn,
    loaded_directory,
    mapping,
    modify,
    settings,
)

from vo_service.audit.models import AuditEvent
from vo_service.auth.ldap import LdapDirectory, LdapError
from vo_service.auth.models import LdapLink
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.errors import ConfigurationError, InvalidInput, PermissionDenied
from vo_service.ldapimport import (
    LdapManaged,
    Plan,
    apply_plan,
    build_spec,
    parse_mapping,
    preview,
)
from vo_service.memberships.services import MembershipService
from vo_service.users.models import User
from vo_service.users.services import UserService
from vo_service.vos.models import VO
from vo_service.vos.services import VOService

GOOD = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    """The shared, read-only directory."""
    with loaded_directory() as server:
        yield server


@pytest.fixture
def own_directory() -> Iterator[Slapd]:
    """A directory of this test's own, to change."""
    with loaded_directory() as server:
        yield server


@pytest.fixture
def atlas(ctx: ServiceContext, system: Actor) -> VO:
    vo = VOService(ctx).create(system, "atlas")
    db.session.commit()
    return vo


def spec_for(server: Slapd, **options: Any) -> Any:
    return build_spec("atlas", mapping(server),
                      members_group=group_dn(server, "atlas-members"), **options)


def plan_for(ctx: ServiceContext, actor: Actor, server: Slapd, **options: Any) -> Plan:
    config = settings(server, **options.pop("config", {}))
    return preview(ctx, actor, spec_for(server, **options), config)


def count(model: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def memberships(ctx: ServiceContext, system: Actor, vo: VO) -> dict[str, tuple[str, list[str]]]:
    rows, _ = MembershipService(ctx).page(system, vo, limit=500)
    return {r["user"]: (r["status"], r["groups"]) for r in rows}


# -- the preview -------------------------------------------------------------------------
def test_the_preview_lists_exactly_the_expected_plan_and_changes_nothing(
        ctx, system, atlas, directory):
    users, events = count(User), count(AuditEvent)
    plan = plan_for(ctx, system, directory)
    assert plan.create_groups == ("/atlas/analysis", "/atlas/posix", "/atlas/prod")
    steps = {s.username: s for s in plan.steps}
    assert sorted(steps) == GOOD
    assert all(s.create and s.membership == "add" and not s.link for s in steps.values())
    assert {n: s.add_groups for n, s in steps.items()} == {
        "alice": ("/atlas/analysis", "/atlas/prod"), "bob": ("/atlas/analysis",),
        "carol": ("/atlas/prod",), "dave": ("/atlas/posix",), "erin": ("/atlas/posix",),
        "frank": (), "grace": ()}
    # display names cleaned: GECOS separators, bidi override gone, 10,000 characters cut
    assert steps["bob"].display_name == "Builder Bob Esq."
    assert steps["carol"].display_name == "Carol evil Jones"
    assert steps["dave"].display_name == SCRIPT  # kept as text; pages escape it
    assert steps["erin"].display_name == "L" * 128 and steps["erin"].email is None
    assert steps["frank"].ldap_username == "Frank"  # the directory's spelling, for logins
    assert steps["alice"].email == "alice@example.org"
    # every hostile entry left out with its reason, and the odd member references
    reasons = {s.name or s.dn: s.reason for s in plan.skipped}
    for uid, why in HOSTILE.items():
        key = uid if "\x07" not in uid else directory.user_dn("belluid")
        assert why in reasons[key], (uid, reasons)
    assert [s.reason for s in plan.skipped if s.name == "twin"] == [
        "the username is held by more than one directory entry"] * 2
    assert "not a user under LDAP_BASE_DN" in reasons[OUTSIDE]
    assert "not a user under LDAP_BASE_DN" in reasons[directory.user_dn("ghost")]
    assert "not one of the VO's members" in reasons["henry"]
    assert "names no user" in reasons["nobody-such"]
    assert "the username is not" in reasons["u" * 64]  # the 10,000-character uid, cut
    assert all(s.reason and len(s.name) <= 64 and s.dn.isprintable() for s in plan.skipped)
    assert plan.conflicts == () and plan.left == () and plan.removals == ()
    assert plan.counts["users_created"] == 7 and plan.counts["group_memberships_added"] == 6
    assert (count(User), count(AuditEvent)) == (users, events)


def user_listings(server: Slapd, start: int) -> int:
    """How many user-listing searches (pages) slapd saw since ``start``."""
    return server.log_text()[start:].count('filter="(&(objectClass=inetOrgPerson)(uid=*))"')


def test_paging_gives_the_same_plan(ctx, system, atlas, directory):
    start = len(directory.log_text())
    whole = plan_for(ctx, system, directory)
    assert user_listings(directory, start) == 1
    start = len(directory.log_text())
    paged = plan_for(ctx, system, directory, config={"LDAP_PAGE_SIZE": 3})
    pages = user_listings(directory, start)
    assert paged.fingerprint() == whole.fingerprint() and paged.skipped == whole.skipped
    people = len(LdapDirectory(settings(directory)).list_users())
    assert people == 17 and pages == 6  # 17 entries, 3 a page


# -- importing ---------------------------------------------------------------------------
def test_import_creates_users_memberships_and_groups(ctx, system, atlas, directory, app):
    plan = plan_for(ctx, system, directory)
    ticks: list[int] = []
    outcome = apply_plan(ctx, system, plan, progress=ticks.append, batch=3)
    assert outcome.failed == [] and sum(ticks) == len(plan.steps) == 7
    users = UserService(ctx)
    for name in GOOD:
        user = users.get(name)
        assert app.config["UID_MIN"] <= user.uid <= app.config["UID_MAX"]
        assert db.session.get(LdapLink, user.id).ldap_username == (
            "Frank" if name == "frank" else name)
    assert users.get("carol").display_name == "Carol evil Jones"
    assert users.get("dave").display_name == SCRIPT
    assert users.get("erin").email is None and users.get("bob").email == "bob@example.org"
    assert memberships(ctx, system, atlas) == {
        "alice": ("active", ["/atlas", "/atlas/analysis", "/atlas/prod"]),
        "bob": ("active", ["/atlas", "/atlas/analysis"]),
        "carol": ("active", ["/atlas", "/atlas/prod"]),
        "dave": ("active", ["/atlas", "/atlas/posix"]),
        "erin": ("active", ["/atlas", "/atlas/posix"]),
        "frank": ("active", ["/atlas"]), "grace": ("active", ["/atlas"])}
    for uid in ("twin", "root", "henry", "john.smith"):
        assert db.session.scalar(sa.select(User).where(User.username == uid)) is None
    # audited as the import, on behalf of who asked
    actors = set(db.session.scalars(sa.select(AuditEvent.actor).where(
        AuditEvent.action.in_(["user.create", "membership.add", "group.create",
                               "group.member.add", "user.ldap_link", "vo.ldap_import"]))))
    assert actors == {"ldap-import:cli:pytest"}
    summary = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "vo.ldap_import"))
    assert summary.after["users_created"] == 7 and summary.after["failed"] == 0
    assert count(LdapManaged) == 7 + 6


def test_a_second_import_with_no_directory_change_changes_nothing(ctx, system, atlas,
                                                                  directory):
    apply_plan(ctx, system, plan_for(ctx, system, directory))
    events = count(AuditEvent)
    again = plan_for(ctx, system, directory)
    assert again.changes == 0 and again.steps == () and again.create_groups == ()
    assert again.counts["unchanged"] == 7
    outcome = apply_plan(ctx, system, again)
    assert outcome.applied == 0 and count(AuditEvent) == events


def test_a_limited_apply_does_a_part_and_the_next_plan_holds_the_rest(ctx, system, atlas,
                                                                      directory):
    plan = plan_for(ctx, system, directory)
    assert len(plan.steps) == 7
    first = apply_plan(ctx, system, plan, limit=3)
    assert first.applied == len(plan.create_groups) + 3 and first.left == 4
    rest = plan_for(ctx, system, directory)
    assert len(rest.steps) == 4 and rest.create_groups == ()
    assert {s.username for s in rest.steps} == {s.username for s in plan.steps[3:]}
    second = apply_plan(ctx, system, rest, limit=100)
    assert second.applied == 4 and second.left == 0
    assert plan_for(ctx, system, directory).changes == 0


def test_a_step_that_fails_is_rolled_back_whole_and_reported(ctx, system, atlas, directory):
    plan = plan_for(ctx, system, directory)
    UserService(ctx).create(system, "carol", "Carol Local")  # taken after the preview
    db.session.commit()
    outcome = apply_plan(ctx, system, plan)
    assert [name for name, _ in outcome.failed] == ["carol"]
    assert "already taken" in outcome.failed[0][1]
    carol = UserService(ctx).get("carol")
    assert carol.display_name == "Carol Local" and db.session.get(LdapLink, carol.id) is None
    assert "carol" not in memberships(ctx, system, atlas)
    assert len(memberships(ctx, system, atlas)) == 6


# -- sync: who left ----------------------------------------------------------------------
def test_members_who_left_are_removed_only_with_remove_missing_and_only_if_imported(
        ctx, system, atlas, own_directory):
    server = own_directory
    apply_plan(ctx, system, plan_for(ctx, system, server))
    # a member added by hand, not in the directory at all, and one in both
    local = UserService(ctx).create(system, "mallory", "Mallory Local")
    MembershipService(ctx).add(system, atlas, local)
    db.session.commit()
    modify(server, group_dn(server, "atlas-members"),
           {"member": [("MODIFY_DELETE", [server.user_dn("bob")])]})
    modify(server, group_dn(server, "atlas-analysis"),
           {"member": [("MODIFY_DELETE", [server.user_dn("alice")])]})

    plan = plan_for(ctx, system, server)
    assert plan.left == (("alice", "/atlas/analysis"), ("bob", "/atlas"))
    assert plan.removals == () and plan.changes == 0
    apply_plan(ctx, system, plan)
    assert memberships(ctx, system, atlas)["bob"][0] == "active"

    plan = plan_for(ctx, system, server, remove_missing=True)
    assert plan.removals == plan.left
    outcome = apply_plan(ctx, system, plan)
    assert outcome.failed == []
    now = memberships(ctx, system, atlas)
    assert now["bob"] == ("removed", [])
    assert now["alice"] == ("active", ["/atlas", "/atlas/prod"])
    assert now["mallory"] == ("active", ["/atlas"])  # never touched: not imported
    removed = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "membership.remove"))
    assert removed.actor == "ldap-import:cli:pytest"
    # and the sync is stable again
    assert plan_for(ctx, system, server, remove_missing=True).changes == 0


# -- local accounts --------------------------------------------------------------------
def test_a_local_user_with_the_same_name_is_a_conflict_not_taken_over(ctx, system, atlas,
                                                                      directory):
    grace = UserService(ctx).create(system, "grace", "Grace Local", "grace@local.example")
    db.session.commit()
    plan = plan_for(ctx, system, directory)
    assert [(c.username, c.dn) for c in plan.conflicts] == [
        ("grace", directory.user_dn("grace"))]
    assert "--link-existing" in plan.conflicts[0].reason
    assert "grace" not in {s.username for s in plan.steps}
    apply_plan(ctx, system, plan)
    assert db.session.get(LdapLink, grace.id) is None
    assert "grace" not in memberships(ctx, system, atlas)
    assert grace.display_name == "Grace Local"

    linked = plan_for(ctx, system, directory, link_existing=True)
    step = next(s for s in linked.steps if s.username == "grace")
    assert (step.create, step.link, step.membership) == (False, True, "add")
    apply_plan(ctx, system, linked)
    assert db.session.get(LdapLink, grace.id).ldap_username == "grace"
    assert grace.email == "grace@local.example"  # the local record is not rewritten


def test_a_user_linked_to_another_directory_name_stays_a_conflict(ctx, system, atlas,
                                                                   directory):
    from vo_service.auth.passwords import PasswordService

    grace = UserService(ctx).create(system, "grace", "Grace Local")
    PasswordService(ctx).link_ldap(system, grace, "ghopper")
    db.session.commit()
    plan = plan_for(ctx, system, directory, link_existing=True)
    assert [c.username for c in plan.conflicts] == ["grace"]
    assert "linked to the LDAP user 'ghopper'" in plan.conflicts[0].reason


def test_a_linked_user_is_used_whatever_its_vo_name(ctx, system, atlas, directory):
    from vo_service.auth.passwords import PasswordService

    hopper = UserService(ctx).create(system, "ghopper", "Grace H.")
    PasswordService(ctx).link_ldap(system, hopper, "grace")
    db.session.commit()
    plan = plan_for(ctx, system, directory)
    step = next(s for s in plan.steps if s.ldap_username == "grace")
    assert (step.username, step.create, step.link, step.membership) == (
        "ghopper", False, False, "add")


# -- the operator's inputs ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "(uid=*))(|(uid=*", "(uid=*)(", ")(uid=*", "uid=*", "(uid=a\x00)", "(" + "a" * 2000 + ")",
    "(&(uid=*)", ""])
def test_a_members_filter_that_is_not_one_filter_is_refused(bad):
    with pytest.raises(InvalidInput, match="members"):
        build_spec("atlas", [], members_filter=bad)


def test_a_members_filter_selects_members(ctx, system, atlas, directory):
    spec = build_spec("atlas", [], members_filter="(|(uid=alice)(uid=bob)(uid=star*))")
    plan = preview(ctx, system, spec, settings(directory))
    assert [s.username for s in plan.steps] == ["alice", "bob"]
    assert [s.name for s in plan.skipped] == ["star*"]


def test_a_group_dn_with_filter_characters_reads_nothing_else(ctx, system, atlas, directory):
    start = len(directory.log_text())
    with pytest.raises(InvalidInput, match="is not a DN"):  # refused before any connection
        build_spec("atlas", [], members_group=f"cn=x)(uid=*,{directory.groups_dn}")
    assert directory.log_text()[start:] == ""
    dn = f"cn=atlas-members)(uid\\=*,{directory.groups_dn}"  # a DN, filter characters inside
    with pytest.raises(InvalidInput, match="no directory group"):
        preview(ctx, system, build_spec("atlas", [], members_group=dn), settings(directory))
    log = directory.log_text()[start:]
    # what reached the server: a base search of that DN with the configured group
    # filter, never a filter made of the operator's text
    filters = re.findall(r'filter="([^"]*)"', log)
    assert set(filters) == {"(&(objectClass=inetOrgPerson)(uid=*))",
                            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
                            "(objectClass=posixGroup))"}
    assert "atlas-members)(uid" in log  # it went as a base DN


@pytest.mark.parametrize(("items", "message"), [
    (["cn=a,dc=x"], "a mapping looks like"),
    (["cn=a,dc=x=atlas/analysis"], "a mapping looks like"),
    (["not a dn=/atlas/analysis"], "is not a DN"),
    (["cn=a,dc=x=/atlas/Bad Name!"], "invalid"),
    (["cn=a,dc=x=/cms/analysis"], "not a group of VO 'atlas'"),
    (["cn=a,dc=x=/atlas"], "not a group of VO 'atlas'"),
    (["cn=a,dc=x=/atlas/a", "CN=A,DC=X=/atlas/b"], "mapped twice"),
])
def test_a_bad_mapping_is_refused(items, message):
    with pytest.raises(InvalidInput, match=message):
        build_spec("atlas", parse_mapping(items), members_group="cn=m,dc=x")


def test_a_group_whose_name_is_no_vo_path_maps_to_one(ctx, system, atlas, directory):
    spec = build_spec("atlas", [(group_dn(directory, "Atlas Higgs!"), "/atlas/higgs")],
                      members_group=group_dn(directory, "atlas-members"))
    plan = preview(ctx, system, spec, settings(directory))
    assert [s.add_groups for s in plan.steps if s.username == "frank"] == [("/atlas/higgs",)]


def test_groups_outside_the_group_base_are_refused(ctx, system, atlas, directory):
    with pytest.raises(InvalidInput, match="not under LDAP_GROUP_BASE_DN"):
        preview(ctx, system, build_spec("atlas", [], members_group="cn=x,dc=elsewhere"),
                settings(directory))


# -- who may, and a directory that cannot answer -----------------------------------------
def test_only_the_vos_admins_may_preview_or_apply(ctx, system, atlas, directory):
    plan = plan_for(ctx, system, directory)
    user = UserService(ctx).create(system, "zed", "Zed")
    db.session.commit()
    nobody = Actor(label="user:zed", user_id=user.id)
    start = len(directory.log_text())
    with pytest.raises(PermissionDenied):
        plan_for(ctx, nobody, directory)
    assert "SRCH" not in directory.log_text()[start:]  # refused before asking
    with pytest.raises(PermissionDenied):
        apply_plan(ctx, nobody, plan)
    VOService(ctx).set_admin(system, atlas, user, True)
    db.session.commit()
    assert plan_for(ctx, nobody, directory).fingerprint() == plan.fingerprint()


def test_no_directory_and_an_unreachable_one_are_clear_errors(ctx, system, atlas, directory):
    spec = spec_for(directory)
    with pytest.raises(ConfigurationError, match="LDAP_URL"):
        preview(ctx, system, spec, {})
    dead = settings(directory, LDAP_URL=f"ldap://127.0.0.1:{free_port()}", LDAP_TIMEOUT=1)
    with pytest.raises(LdapError, match="cannot open a TLS connection"):
        preview(ctx, system, spec, dead)


@pytest.mark.parametrize(("key", "value"), [
    ("LDAP_PAGE_SIZE", 0), ("LDAP_PAGE_SIZE", "500"), ("LDAP_LIST_MAX", True),
    ("LDAP_GROUP_FILTER", "objectClass=posixGroup"), ("LDAP_GROUP_FILTER", "(a=b))(c=d"),
    ("LDAP_GROUP_BASE_DN", "not a dn"),
])
def test_listing_settings_are_checked(key, value):
    config = {"LDAP_URL": "ldap://127.0.0.1", "LDAP_BASE_DN": "dc=grid,dc=example", key: value}
    with pytest.raises(ConfigurationError, match=key):
        LdapDirectory(config)


def test_a_listing_longer_than_the_limit_is_refused_not_cut(ctx, system, atlas, directory):
    with pytest.raises(LdapError, match="LDAP_LIST_MAX"):
        plan_for(ctx, system, directory, config={"LDAP_LIST_MAX": 5, "LDAP_PAGE_SIZE": 2})


def test_a_listing_the_server_cuts_at_its_size_limit_is_an_error_not_half_a_list(
        ctx, system, atlas):
    """slapd stops anonymous listings at 500 entries, paged or not: the import refuses
    (a sync acting on half the directory would remove the other half); an account
    without that limit gets every entry, page by page."""
    if missing_tools():
        pytest.skip("slapd is not installed")
    from e2e.slapd import ldif_record

    with Slapd() as server:
        for start in range(0, 600, 200):
            server.add_ldif("".join(ldif_record(server.user_dn(f"bulk{i:03d}"), {
                "objectClass": "inetOrgPerson", "uid": f"bulk{i:03d}", "cn": f"Bulk {i}",
                "sn": "B"}) for i in range(start, start + 200)))
        spec = build_spec("atlas", [], members_filter="(uid=bulk*)")
        with pytest.raises(LdapError, match="size limit"):
            preview(ctx, system, spec, settings(server))
        root = settings(server, LDAP_BIND_DN=server.bind_dn,
                        LDAP_BIND_PASSWORD=server.bind_password)
        plan = preview(ctx, system, spec, root)
        assert len(plan.steps) == 600 and plan.skipped == ()
