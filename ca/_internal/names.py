"""Validation of every name the CA writes into a certificate.

The rules match the VO service's (``DESIGN.md``): POSIX user names, VO and group
components ``[a-z][a-z0-9-]{0,30}``, VOMS paths and roles, DNS host names. The CA checks
them again because a name that reaches a certificate cannot be taken back.
"""

from __future__ import annotations

import re

from ..errors import PolicyError

POSIX_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
COMPONENT_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
ROLE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
DNS_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
KEY_ID_RE = re.compile(r"[\x20-\x7e]{1,256}")
DNS_NAME_MAX = 253


def describe(value: object) -> str:
    """Quote a value for an error message, cut at 40 characters, control bytes escaped."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def posix_name(value: object, what: str) -> str:
    """Return ``value`` if it is a POSIX-safe user name; raise PolicyError otherwise."""
    if not isinstance(value, str) or not POSIX_NAME_RE.fullmatch(value):
        raise PolicyError(
            f"{what} {describe(value)} is not a POSIX name: 1 to 32 of lower-case letters,"
            " digits, '_' and '-', starting with a letter or '_'"
        )
    return value


def component(value: object, what: str) -> str:
    """Return ``value`` if it is a VO or group name component."""
    if not isinstance(value, str) or not COMPONENT_RE.fullmatch(value):
        raise PolicyError(
            f"{what} {describe(value)} is not a VO/group name: 1 to 31 of lower-case letters,"
            " digits and '-', starting with a letter"
        )
    return value


def group_path(value: object, what: str) -> tuple[str, ...]:
    """Split a VOMS group path ``/vo[/group...]`` into its components."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise PolicyError(f"{what} {describe(value)} is not a group path like '/atlas/analysis'")
    parts = tuple(value[1:].split("/"))
    for part in parts:
        component(part, f"{what} {describe(value)} component")
    return parts


def role_path(value: object, what: str) -> tuple[str, ...]:
    """Split a VOMS role ``/vo[/group...]/Role=name`` into its group components."""
    group, sep, role = value.rpartition("/Role=") if isinstance(value, str) else ("", "", "")
    if not sep or not group or not ROLE_NAME_RE.fullmatch(role):
        raise PolicyError(
            f"{what} {describe(value)} is not a role like '/atlas/Role=production'"
        )
    return group_path(group, what)


def dns_name(value: object, what: str) -> str:
    """Return a host name in lower case if it is a valid DNS name (no wildcard, no IP)."""
    if not isinstance(value, str) or not value.isascii():
        raise PolicyError(f"{what} {describe(value)} is not an ASCII DNS name")
    name = value.lower()
    labels = name.split(".")
    if (
        len(name) > DNS_NAME_MAX
        or not all(DNS_LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise PolicyError(
            f"{what} {describe(value)} is not a DNS host name: dot-separated labels of"
            " letters, digits and '-', at most 253 characters, no wildcard, no IP address"
        )
    return name


def key_id(value: object) -> str:
    """Return an SSH key id if it is 1 to 256 printable ASCII characters."""
    if not isinstance(value, str) or not KEY_ID_RE.fullmatch(value):
        raise PolicyError(
            f"key id {describe(value)} must be 1 to 256 printable ASCII characters"
        )
    return value


def common_name(value: object, what: str) -> str:
    """Return ``value`` if it fits an X.509 CN/O/OU: 1 to 64 printable characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise PolicyError(f"{what} {describe(value)} must be 1 to 64 printable characters")
    return value
