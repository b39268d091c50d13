"""Unit tests of vo_service.names: every name that ends up in a Unix record, and the
injective rule that maps VO paths to Unix group names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vo_service.errors import InvalidInput
from vo_service.names import (
    COMPONENT_RE,
    RESERVED_GROUP_NAMES,
    RESERVED_NAMES,
    UNIX_NAME_MAX,
    parse_group_path,
    unix_group_name,
    validate_component,
    validate_display_name,
    validate_email,
    validate_node_name,
    validate_role,
    validate_username,
    validate_vo_name,
)

# No example database in the repository; the properties are cheap enough to rerun.
props = settings(database=None, max_examples=300, deadline=None)

#: Characters that would corrupt a passwd/group line, an LDAP filter, HTML or SQL.
UNIX_HOSTILE = [":", ",", "\n", "\r", "\x00", "/", " ", "\t", "'", '"', "(", ")", "*", "<",
                ">", ";", "=", "\\", "$", "."]


# -- usernames ------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "a", "z", "alice", "a" * 32, "a" + "9" * 31, "alice-smith", "alice_smith", "a-", "a1",
    "x" + "0123456789abcdef" * 1 + "0123456789abcde",
])
def test_valid_usernames_are_returned_unchanged(name):
    assert validate_username(name) == name


def test_username_boundary_lengths():
    assert validate_username("a") == "a"
    assert validate_username("b" * UNIX_NAME_MAX) == "b" * UNIX_NAME_MAX
    with pytest.raises(InvalidInput, match=r"longer than 32 characters"):
        validate_username("b" * (UNIX_NAME_MAX + 1))
    with pytest.raises(InvalidInput, match=r"not POSIX-safe"):
        validate_username("")


@pytest.mark.parametrize("name", [
    "a:b", "a,b", "a\nb", "a\x00b", "a/b", "a b", "a\tb", "Alice", "ALICE", "aB", "1abc",
    "-abc", "0", "a.b", "a$", "a@b", "x' OR '1'='1", "robert');drop table users;--",
    "*)(uid=*", "<script>", "\u0430dmin", "adm\u0131n", "alice\u200b", "ａｌｉｃｅ", "a\\b",
    "a;b", "a=b", "a*", "a(b)",
])
def test_usernames_that_would_corrupt_a_record_are_refused(name):
    with pytest.raises(InvalidInput,
                       match=r"^username ['\"].*['\"] is not POSIX-safe: use lower-case"):
        validate_username(name)


@pytest.mark.parametrize("name", [None, 1, 1.5, b"alice", ["alice"], {"a": 1}, True])
def test_username_must_be_a_string(name):
    with pytest.raises(InvalidInput, match=r"^username must be a string$"):
        validate_username(name)


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES - {"_apt"}))
def test_every_reserved_name_is_refused(name):
    with pytest.raises(InvalidInput, match=rf"^username '{re.escape(name)}' is reserved"):
        validate_username(name)


@pytest.mark.parametrize("name", ["root", "daemon", "bin", "sys", "adm", "sudo", "wheel",
                                  "nobody", "nogroup", "sshd", "www-data", "postgres"])
def test_well_known_system_accounts_are_reserved(name):
    assert name in RESERVED_NAMES
    with pytest.raises(InvalidInput, match=r"is reserved for the system"):
        validate_username(name)


@pytest.mark.parametrize("name", ["systemd-foo", "systemd-network", "systemd-", "_apt", "_x",
                                  "_", "xos-node", "xos-anything"])
def test_reserved_prefixes_are_refused(name):
    with pytest.raises(InvalidInput, match=rf"^username '{re.escape(name)}' is reserved"):
        validate_username(name)


@pytest.mark.parametrize("name", ["systemd", "systemdx", "xos1", "xosuser", "rooty", "bins",
                                  "a_root", "nobody1"])
def test_names_that_merely_resemble_reserved_ones_are_allowed(name):
    assert validate_username(name) == name


def test_extra_reserved_names_from_configuration():
    assert validate_username("scratch") == "scratch"
    with pytest.raises(InvalidInput, match=r"username 'scratch' is reserved"):
        validate_username("scratch", frozenset({"scratch"}))
    with pytest.raises(InvalidInput, match=r"VO name 'scratch' is reserved"):
        validate_vo_name("scratch", frozenset({"scratch"}))


def test_long_hostile_username_is_truncated_in_the_message():
    with pytest.raises(InvalidInput) as info:
        validate_username("<script>" * 1250)
    assert len(info.value.detail) < 120
    assert "..." in info.value.detail


@props
@given(st.text(max_size=40))
def test_any_accepted_username_is_unix_safe(text):
    try:
        name = validate_username(text)
    except InvalidInput:
        return
    assert name == text
    assert 1 <= len(name) <= UNIX_NAME_MAX
    assert re.fullmatch(r"[a-z][a-z0-9_-]*", name, flags=re.ASCII)
    assert not any(c in name for c in UNIX_HOSTILE)
    assert name not in RESERVED_NAMES


# -- VO and group components ----------------------------------------------------------
@pytest.mark.parametrize("name", ["atlas", "cms", "a", "lhc-b", "a1", "x" * 31])
def test_valid_vo_names(name):
    assert validate_vo_name(name) == name


@pytest.mark.parametrize("name", [
    "ATLAS", "Atlas", "at_las", "at.las", "..", ".", "1atlas", "-atlas", "", "x" * 32,
    "at las", "at/las", "at:las", "<script>", "\u0430tlas", "atlas\n", "_atlas",
])
def test_invalid_vo_names(name):
    with pytest.raises(InvalidInput, match=r"^VO name '.*' is invalid: use lower-case letters,"
                                           r" digits and '-'"):
        validate_vo_name(name)


@pytest.mark.parametrize("name", ["root", "wheel", "users", "systemd-x", "xos-vo", "nobody"])
def test_reserved_vo_names(name):
    with pytest.raises(InvalidInput, match=rf"^VO name '{name}' is reserved for the system"):
        validate_vo_name(name)


def test_component_must_be_a_string():
    with pytest.raises(InvalidInput, match=r"^group name must be a string$"):
        validate_component(7, "group")


# -- group paths and the Unix group naming rule ---------------------------------------
@pytest.mark.parametrize(("path", "unix"), [
    ("/atlas", "atlas"),
    ("/atlas/analysis", "atlas_analysis"),
    ("/atlas/analysis/higgs", "atlas_analysis_higgs"),
    ("/lhc-b/x-y", "lhc-b_x-y"),
    ("/a/" + "b" * 30, "a_" + "b" * 30),
])
def test_unix_group_name(path, unix):
    assert unix_group_name(path) == unix
    assert parse_group_path(path) == unix.split("_")


def test_unix_group_name_length_boundary():
    assert len(unix_group_name("/atlas/" + "x" * 26)) == 32
    with pytest.raises(InvalidInput, match=r"maps to the Unix name 'atlas_x+', longer than 32"):
        unix_group_name("/atlas/" + "x" * 27)
    with pytest.raises(InvalidInput, match=r"longer than 32 characters"):
        unix_group_name("/" + "/".join(["abcdefgh"] * 4))


@pytest.mark.parametrize(("path", "message"), [
    ("atlas", r"a group path looks like /vo"),
    ("", r"a group path looks like /vo"),
    ("/" + "a/" * 300, r"a group path looks like /vo"),
    (None, r"a group path looks like /vo"),
    ("/", r"group name '' is invalid"),
    ("/atlas/", r"group name '' is invalid"),
    ("/atlas//x", r"group name '' is invalid"),
    ("/atlas/..", r"group name '\.\.' is invalid"),
    ("/atlas/./x", r"group name '\.' is invalid"),
    ("/atlas/Analysis", r"group name 'Analysis' is invalid"),
    ("/atlas/an_alysis", r"group name 'an_alysis' is invalid"),
    ("/atlas_x/y", r"group name 'atlas_x' is invalid"),
    ("/atlas/a b", r"group name 'a b' is invalid"),
    ("/atlas/a:b", r"group name 'a:b' is invalid"),
    ("/atlas/a\nb", r"group name 'a\\nb' is invalid"),
    ("/atlas/Role=production", r"group name 'Role=production' is invalid"),
    ("/atlas/members", r"group name 'members' is reserved"),
    ("/atlas/x/managers", r"group name 'managers' is reserved"),
])
def test_invalid_group_paths(path, message):
    with pytest.raises(InvalidInput, match=message):
        unix_group_name(path)


def test_reserved_group_names_apply_below_the_vo_only():
    assert {"members", "managers"} == RESERVED_GROUP_NAMES
    assert unix_group_name("/members") == "members"


def test_underscore_would_break_injectivity_and_is_refused():
    # If '_' were allowed inside a component, /a_b/c and /a/b_c would share a_b_c.
    with pytest.raises(InvalidInput):
        unix_group_name("/a_b/c")
    with pytest.raises(InvalidInput):
        unix_group_name("/a/b_c")
    assert unix_group_name("/a/b/c") == "a_b_c"


component = st.from_regex(COMPONENT_RE, fullmatch=True)
paths = st.lists(component, min_size=1, max_size=5).filter(
    lambda cs: len("_".join(cs)) <= UNIX_NAME_MAX
    and not RESERVED_GROUP_NAMES.intersection(cs[1:]))


@props
@given(paths)
def test_unix_name_splits_back_into_the_path(components):
    path = "/" + "/".join(components)
    unix = unix_group_name(path)
    assert unix.split("_") == components
    assert "/" + unix.replace("_", "/") == path
    assert len(unix) <= UNIX_NAME_MAX


@props
@given(paths, paths)
def test_unix_group_naming_is_injective(a, b):
    path_a, path_b = "/" + "/".join(a), "/" + "/".join(b)
    if path_a != path_b:
        assert unix_group_name(path_a) != unix_group_name(path_b)
    else:
        assert unix_group_name(path_a) == unix_group_name(path_b)


@props
@given(st.text(max_size=80))
def test_arbitrary_paths_either_map_safely_or_raise_invalid_input(text):
    try:
        unix = unix_group_name(text)
    except InvalidInput:
        return
    assert re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", unix, flags=re.ASCII)
    assert "/" + unix.replace("_", "/") == text


# -- roles ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["production", "Production", "VO-Admin", "lcg_admin",
                                  "R" * 64])
def test_valid_roles(name):
    assert validate_role(name) == name


@pytest.mark.parametrize("name", ["", "R" * 65, "Role=production", "1prod", "-prod",
                                  "_prod", "pro duction", "a:b", "a/b", "<script>", "a\n",
                                  None, 5])
def test_invalid_roles(name):
    with pytest.raises(InvalidInput, match=r"^role name '.*' is invalid: letters, digits"):
        validate_role(name)


# -- display names (the GECOS field) ---------------------------------------------------
@pytest.mark.parametrize(("name", "stored"), [
    ("Alice Smith", "Alice Smith"),
    ("  Alice  ", "Alice"),
    ("Élodie Müller-Łukasiewicz", "Élodie Müller-Łukasiewicz"),
    ("O'Brien (CERN)", "O'Brien (CERN)"),
    ("x" * 128, "x" * 128),
])
def test_valid_display_names(name, stored):
    assert validate_display_name(name) == stored


@pytest.mark.parametrize("name", [
    "Alice:x", "Alice,x", "Alice\nx", "Alice\rx", "Alice\tx", "Alice\x00", "Alice\x07",
    "Alice\x1b[31m", "Alice\x7f", "Alice\x85x", "Alice\x9bx", "Alice\u2028x", "Alice\u2029x",
    "alice:x:0:0:root:/root:/bin/sh",
])
def test_display_names_that_would_corrupt_gecos_are_refused(name):
    with pytest.raises(InvalidInput,
                       match=r"^display name may not contain ':', ',' or control characters$"):
        validate_display_name(name)


@pytest.mark.parametrize("name", ["", " ", "   ", "\u3000"])
def test_blank_display_names_are_refused(name):
    with pytest.raises(InvalidInput, match=r"^display name may not be blank$"):
        validate_display_name(name)


def test_display_name_length_and_type():
    with pytest.raises(InvalidInput, match=r"longer than 128 characters"):
        validate_display_name("x" * 129)
    with pytest.raises(InvalidInput, match=r"must be a string"):
        validate_display_name(["Alice"])


@props
@given(st.text(max_size=140))
def test_any_accepted_display_name_is_gecos_safe(text):
    try:
        name = validate_display_name(text)
    except InvalidInput:
        return
    assert name and name == name.strip()
    assert len(name) <= 128
    assert not set(name) & set(":,\n\r\x00\x85\u2028\u2029")
    assert all(ord(c) >= 32 and not 127 <= ord(c) <= 159 for c in name)
    assert name.splitlines() == [name]


# -- e-mail addresses -----------------------------------------------------------------
@pytest.mark.parametrize(("email", "stored"), [
    ("alice@example.org", "alice@example.org"),
    ("Alice.Smith+grid@Example.ORG", "alice.smith+grid@example.org"),
    ("a@b.c", "a@b.c"),
    ("a*b=c@x.org", "a*b=c@x.org"),
    ("élodie@example.org", "élodie@example.org"),
])
def test_valid_emails_are_lower_cased(email, stored):
    assert validate_email(email) == stored


@pytest.mark.parametrize("email", [
    "", "alice", "alice@", "@example.org", "alice@example", "alice@@example.org",
    "a b@example.org", "a:b@example.org", "a,b@example.org", "a;b@example.org",
    "a@b.org,c@d.org", "alice@example.org\n", "alice\n@example.org", "al\x00ice@x.org",
    "<script>@x.org", "alice@<script>.org", "x'--@example.org", 'x"y@example.org',
    "*)(uid=*)@example.org", "a(b)@example.org", "a[1]@example.org", "a\\b@example.org",
    "a\x1b@example.org", "a\x9b@example.org", "alice@exa mple.org", "alice@exam_ple.org",
    "a" * 65 + "@example.org", "a@" + "b" * 250 + ".org", "alice@example.org'; DROP TABLE x",
    None, 5,
])
def test_invalid_emails(email):
    with pytest.raises(InvalidInput, match=r"^e-mail address ['\"].*['\"] is invalid$"):
        validate_email(email)


def test_invalid_email_message_truncates():
    with pytest.raises(InvalidInput) as info:
        validate_email("<" * 10_000 + "@x.org")
    assert len(info.value.detail) < 80


# -- node names -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["n1", "n1.example", "node-01.grid.example.org",
                                  "a" * 63 + ".example", ".".join(["a" * 63] * 3) + ".b" * 30,
                                  "0node.example"])
def test_valid_node_names(name):
    assert len(name) <= 253
    assert validate_node_name(name) == name


@pytest.mark.parametrize("name", [
    "", "N1.example", "n1_example", "-n1.example", "n1-.example", "n1..example",
    "n1.example.", ".n1", "n1 example", "n1/x", "n1:22", "n1';--", "<script>",
    "a" * 64 + ".example", ".".join(["a" * 63] * 4) + ".bb", "n\u0131.example", "n1\n",
    None, 3,
])
def test_invalid_node_names(name):
    with pytest.raises(InvalidInput, match=r"^node name ['\"].*['\"] is not a valid host name$"):
        validate_node_name(name)
