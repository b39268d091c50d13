"""A directory for the LDAP import tests (tests/test_ldap_import*.py, tests/web): people
and groups of every kind, with hostile entries among them, loaded into a real slapd
(tests/e2e/slapd.py); and ``modify`` to change it during a test.

The VO ``atlas`` takes its members from ``cn=atlas-members``; the mapped groups are a
groupOfNames (analysis), a groupOfUniqueNames (prod) and a posixGroup (posix)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.slapd import Slapd, escape_rdn_value, ldif_record, missing_tools

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3

SCRIPT = '<script>alert("x")</script>'
RTL_CN = "Carol \u202eevil\u202c Jones"
LONG = "L" * 10_000
# uid -> (cn, mail); the good members of the VO, as the directory has them.
PEOPLE: dict[str, tuple[str, str | None]] = {
    "alice": ("Alice Liddell", "alice@example.org"),
    "bob": ("Builder, Bob: Esq.", "bob@example.org"),
    "carol": (RTL_CN, "carol@example.org"),
    "dave": (SCRIPT, "dave@example.org"),
    "erin": (LONG, LONG + "@example.org"),
    "Frank": ("Frank Upper", "frank@example.org"),
    "grace": ("Grace Hopper", "grace@example.org"),
}
# uid -> why the import must leave it out (checked against the plan's reasons)
HOSTILE: dict[str, str] = {
    "bad user": "the username is not",
    "star*": "the username is not",
    "x)(uid=*": "the username is not",
    "bell\x07uid": "not a user under LDAP_BASE_DN",
    "root": "reserved",
    "john.smith": "not POSIX-safe",
}
OUTSIDE = "uid=out,ou=people,dc=other,dc=example"
LONG_UID_RDN = "cn=Long Uid"  # its uid has 10,000 characters (too long for a DN of its own)


def group_dn(server: Slapd, cn: str) -> str:
    return f"cn={escape_rdn_value(cn)},{server.groups_dn}"


def settings(server: Slapd, **extra: Any) -> dict[str, Any]:
    """The service's LDAP_* configuration for ``server`` (StartTLS, verified CA)."""
    return {"LDAP_URL": server.url, "LDAP_CA_FILE": server.ca_cert_path,
            "LDAP_BASE_DN": server.base_dn, "LDAP_TIMEOUT": 5, **extra}


def mapping(server: Slapd) -> list[tuple[str, str]]:
    return [(group_dn(server, "atlas-analysis"), "/atlas/analysis"),
            (group_dn(server, "atlas-prod"), "/atlas/prod"),
            (group_dn(server, "atlas-posix"), "/atlas/posix")]


def load(server: Slapd) -> None:
    """The people, the hostile entries and the groups described in the module."""
    for uid, (cn, mail) in PEOPLE.items():
        server.add_user(uid, None, cn, mail)
    server.add_user("henry", None, "Henry Outsider")  # in analysis, not a VO member
    for uid in HOSTILE:
        server.add_user(uid, None, f"hostile {uid[:20]}")
    long_uid = f"{LONG_UID_RDN},{server.people_dn}"
    server.add_ldif(ldif_record(long_uid, {"objectClass": "inetOrgPerson", "uid": "u" * 10_000,
                                           "cn": "Long Uid", "sn": "Uid"}))
    # the same uid twice: neither entry can be trusted to be "the" twin
    server.add_user("twin", None, "Twin One")
    twin_two = f"cn=Twin Two,{server.people_dn}"
    server.add_ldif(ldif_record(twin_two, {"objectClass": "inetOrgPerson", "uid": "twin",
                                           "cn": "Twin Two", "sn": "Two"}))
    members = [server.user_dn(uid) for uid in [*PEOPLE, *HOSTILE, "twin"]]
    members += [twin_two, long_uid, OUTSIDE, server.user_dn("ghost")]
    server.add_ldif(
        ldif_record(group_dn(server, "atlas-members"),
                    {"objectClass": "groupOfNames", "cn": "atlas-members", "member": members})
        + ldif_record(group_dn(server, "atlas-analysis"), {
            "objectClass": "groupOfNames", "cn": "atlas-analysis",
            "member": [server.user_dn(u) for u in ("alice", "bob", "henry")]})
        + ldif_record(group_dn(server, "atlas-prod"), {
            "objectClass": "groupOfUniqueNames", "cn": "atlas-prod",
            "uniqueMember": [server.user_dn("alice") + "#'0101'B",
                             server.user_dn("carol")]})
        + ldif_record(group_dn(server, "atlas-posix"), {
            "objectClass": "posixGroup", "cn": "atlas-posix", "gidNumber": "5000",
            "memberUid": ["dave", "erin", "nobody-such"]})
        + ldif_record(group_dn(server, "Atlas Higgs!"), {
            "objectClass": "groupOfNames", "cn": "Atlas Higgs!",
            "member": [server.user_dn("frank")]}))


def modify(server: Slapd, dn: str, changes: dict[str, Any]) -> None:
    """Change an entry as the directory's root DN (ldap3 MODIFY_* changes)."""
    tls = ldap3.Tls(ca_certs_file=server.ca_cert_path)
    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=server.ldaps_port, use_ssl=True,
                                         tls=tls, get_info=ldap3.NONE),
                            server.bind_dn, server.bind_password, auto_bind=True)
    try:
        assert conn.modify(dn, changes), conn.result
    finally:
        conn.unbind()


@contextlib.contextmanager
def loaded_directory() -> Iterator[Slapd]:
    """A running slapd holding this module's directory; a skip where slapd is missing."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"slapd is not installed (missing {', '.join(missing)})")
    with Slapd() as server:
        load(server)
        yield server
