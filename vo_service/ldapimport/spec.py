"""What the operator asks for: which directory groups become which VO groups, and which
directory group (or filter) selects the VO's members. Checked before any connection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..auth.ldap import DN_MAX, FILTER_MAX, check_filter, dn_key
from ..errors import InvalidInput
from ..names import parse_group_path

MAPPINGS_MAX = 100


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One import of a VO. ``mapping``: (directory group DN, VO group path), sorted."""

    vo: str
    mapping: tuple[tuple[str, str], ...]
    members_group: str | None = None
    members_filter: str | None = None
    link_existing: bool = False
    remove_missing: bool = False


def _dn(text: object, what: str) -> str:
    if not isinstance(text, str) or dn_key(text.strip()) is None:
        shown = text[:80] if isinstance(text, str) else ""
        raise InvalidInput(f"{what} {shown!r} is not a DN (at most {DN_MAX} printable "
                           "characters, like cn=name,ou=groups,dc=example,dc=org)")
    return text.strip()


def parse_mapping(items: Iterable[str]) -> list[tuple[str, str]]:
    """``LDAPGROUP=/vo/path`` items as (DN, path) pairs (split at the last ``=``: a DN
    has ``=`` in it, a VO path never)."""
    pairs = []
    for item in items:
        dn, sep, path = item.rpartition("=") if isinstance(item, str) else ("", "", "")
        if not sep or not dn.strip() or not path.strip().startswith("/"):
            raise InvalidInput(f"a mapping looks like cn=group,ou=groups,dc=example=/vo/group, "
                               f"not {str(item)[:80]!r}")
        pairs.append((dn.strip(), path.strip()))
    return pairs


def build_spec(vo: str, mapping: Iterable[tuple[str, str]], *, members_group: str | None = None,
               members_filter: str | None = None, link_existing: bool = False,
               remove_missing: bool = False) -> ImportSpec:
    """A checked ImportSpec; InvalidInput names the first bad part."""
    if bool(members_group) == bool(members_filter):
        raise InvalidInput("name the VO's members by one directory group or one filter")
    group = _dn(members_group, "the members group") if members_group else None
    if members_filter and check_filter(members_filter) is None:
        raise InvalidInput("the members filter must be one parenthesised LDAP filter of at "
                           f"most {FILTER_MAX} printable characters, like (ou=physics)")
    pairs: dict[tuple[tuple[str, str], ...], tuple[str, str]] = {}
    for dn, path in mapping:
        dn = _dn(dn, "the directory group")
        components = parse_group_path(path)
        if components[0] != vo or len(components) < 2:
            raise InvalidInput(f"{path[:80]!r} is not a group of VO {vo!r}: use /{vo}/name "
                               "(the members group decides the VO's members)")
        key = dn_key(dn)
        assert key is not None
        if key in pairs:
            raise InvalidInput(f"the directory group {dn[:80]!r} is mapped twice")
        pairs[key] = (dn, path)
    if len(pairs) > MAPPINGS_MAX:
        raise InvalidInput(f"at most {MAPPINGS_MAX} group mappings")
    return ImportSpec(vo, tuple(sorted(pairs.values())), group, members_filter or None,
                      link_existing, remove_missing)
