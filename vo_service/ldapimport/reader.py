"""Read the VO's members and the mapped groups from the directory, as VO users-to-be.

Everything here comes from another organisation's server and is untrusted: entries
without a usable DN or username, usernames that are not POSIX-safe or are reserved, and
usernames held by more than one entry are left out with a reason (a duplicate is left
out on every entry: which one is the real person cannot be known). Group members are
matched against the listed users only, never searched for one by one, so no directory
value ever becomes part of a filter."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ..auth.ldap import BAD_DN, LdapDirectory, LdapGroupEntry, LdapUserEntry, clean_text, dn_key
from ..errors import InvalidInput
from ..names import validate_email, validate_username
from .spec import ImportSpec

_GECOS_BREAKERS = re.compile(r"[:,]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Person:
    """A directory user as a VO user: every field already valid for the VO service."""

    username: str
    ldap_username: str
    dn: str
    display_name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry (or a group's member reference) left out, and why; shown to the operator."""

    dn: str
    name: str
    reason: str


@dataclass(frozen=True)
class DirectoryView:
    """The members (VO username -> person), each mapped VO group's members (usernames,
    all of them members), and everything left out. ``present``: per VO path (the VO's
    own path for its members) the directory usernames (case folded) that the directory
    lists there, usable or not: who has *left* is judged on this, so that an entry
    turned odd (a duplicate uid added by someone else) never removes a real member."""

    members: dict[str, Person]
    groups: dict[str, frozenset[str]]
    skipped: tuple[Skipped, ...]
    present: dict[str, frozenset[str]]


def display_name(text: str, fallback: str) -> str:
    """A directory display name as a GECOS-safe one: ``:`` and ``,`` separate GECOS
    fields, so they become spaces (control and bidi characters are gone already)."""
    cleaned = _SPACES.sub(" ", _GECOS_BREAKERS.sub(" ", text)).strip()
    return cleaned or fallback


class _Reader:
    def __init__(self, directory: LdapDirectory, reserved: frozenset[str]) -> None:
        self.directory = directory
        self.reserved = reserved
        self.skipped: dict[tuple[str, str], Skipped] = {}
        self.everyone = directory.list_users()
        self.by_dn: dict[object, LdapUserEntry] = {}
        self.by_uid: dict[str, list[LdapUserEntry]] = defaultdict(list)
        for entry in self.everyone:
            key = dn_key(entry.dn) if entry.reason != BAD_DN else None
            if key is not None:
                self.by_dn[key] = entry
            if entry.identity is not None:
                self.by_uid[entry.identity.username.casefold()].append(entry)

    def skip(self, dn: str, name: str, reason: str) -> None:
        shown = clean_text(dn.encode(), 256)
        self.skipped.setdefault((shown, reason), Skipped(shown, clean_text(name.encode(), 64),
                                                          reason))

    def group(self, dn: str) -> LdapGroupEntry:
        found = self.directory.read_group(dn)
        if found is None:
            raise InvalidInput(f"there is no directory group {dn[:200]!r} (a group entry "
                               "matching LDAP_GROUP_FILTER)")
        return found

    def resolve(self, group: LdapGroupEntry) -> list[LdapUserEntry]:
        """The listed users a group names, by member DN or by memberUid."""
        found: dict[int, LdapUserEntry] = {}
        for member in group.member_dns:
            key = dn_key(member)
            entry = self.by_dn.get(key) if key is not None else None
            if entry is None:
                self.skip(member, "", f"a member of {group.dn[:120]} that is not a user "
                          "under LDAP_BASE_DN (outside it, missing, or not a person)")
            else:
                found[id(entry)] = entry
        for uid in group.member_uids:
            entries = self.by_uid.get(uid.casefold(), [])
            if not entries:
                self.skip("", uid, f"a memberUid of {group.dn[:120]} that names no user")
            for entry in entries:
                found[id(entry)] = entry
        return list(found.values())

    def person(self, entry: LdapUserEntry) -> Person | None:
        """The entry as a VO user, or None (and a reason recorded)."""
        identity = entry.identity
        if identity is None:
            self.skip(entry.dn, entry.shown, entry.reason or "unusable entry")
            return None
        if len(self.by_uid[identity.username.casefold()]) > 1:
            self.skip(entry.dn, entry.shown, "the username is held by more than one "
                      "directory entry")
            return None
        try:
            username = validate_username(identity.username.lower(), self.reserved)
        except InvalidInput as error:
            self.skip(entry.dn, entry.shown, f"not usable as a VO username: {error.detail}")
            return None
        try:
            email = validate_email(identity.email) if identity.email else None
        except InvalidInput:
            email = None
        return Person(username, identity.username, identity.dn,
                      display_name(identity.display_name, username), email)

    def people(self, entries: Iterable[LdapUserEntry]) -> dict[str, Person]:
        out: dict[str, Person] = {}
        for entry in entries:
            person = self.person(entry)
            if person is not None:
                out[person.username] = person
        return out


def read_directory(directory: LdapDirectory, spec: ImportSpec,
                   reserved: frozenset[str] = frozenset()) -> DirectoryView:
    """What the directory says about the VO of ``spec``. LdapError when the directory
    cannot be read whole; InvalidInput when a named group does not exist."""
    reader = _Reader(directory, reserved)
    if spec.members_group:
        candidates = reader.resolve(reader.group(spec.members_group))
    else:
        candidates = directory.list_users(spec.members_filter)
    members = reader.people(sorted(candidates, key=lambda e: e.dn))
    present = {f"/{spec.vo}": _names(candidates)}
    groups: dict[str, set[str]] = defaultdict(set)
    for dn, path in spec.mapping:
        resolved = reader.resolve(reader.group(dn))
        present[path] = present.get(path, frozenset()) | _names(resolved)
        for person in reader.people(resolved).values():
            if person.username in members:
                groups[path].add(person.username)
            else:
                reader.skip(person.dn, person.ldap_username,
                            f"in the group for {path} but not one of the VO's members")
        groups.setdefault(path, set())
    return DirectoryView(members, {p: frozenset(u) for p, u in groups.items()},
                         tuple(sorted(reader.skipped.values(),
                                      key=lambda s: (s.dn, s.name, s.reason))), present)


def _names(entries: Iterable[LdapUserEntry]) -> frozenset[str]:
    return frozenset(e.identity.username.casefold() for e in entries if e.identity)
