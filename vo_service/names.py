"""Validation of every name that ends up in a Unix record, and the VO group naming rule.

Usernames follow DESIGN.md: ``^[a-z_][a-z0-9_-]{0,31}$``, minus reserved system names.

VO and group names are *components*: ``^[a-z][a-z0-9-]{0,30}$`` (no ``_``, no ``.``).
A VO ``atlas`` has the path ``/atlas``; a group ``analysis`` below it ``/atlas/analysis``.
The Unix group name of a path is its components joined with ``_``:

    /atlas                -> atlas
    /atlas/analysis       -> atlas_analysis
    /atlas/analysis/higgs -> atlas_analysis_higgs

Because ``_`` never occurs inside a component the rule is injective: splitting the Unix
name on ``_`` gives back the path. A path whose Unix name would pass 32 characters is
refused. User private groups share the group namespace, so the service keeps one
registry of Unix names (``unix_names``) across users and groups.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInput

USERNAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
COMPONENT_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
ROLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
NODE_NAME_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
EMAIL_RE = re.compile(r"[^@\s:,;<>()\[\]\"'\\\x00-\x1f\x7f-\x9f]{1,64}@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
UNIX_NAME_MAX = 32
DISPLAY_NAME_MAX = 128

#: Names no user or group may take, whatever the configuration adds.
RESERVED_NAMES = frozenset({
    "root", "daemon", "bin", "sys", "adm", "sync", "games", "man", "lp", "mail", "news",
    "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup",
    "sudo", "wheel", "admin", "administrator", "shadow", "staff", "users", "tty", "disk",
    "kmem", "dialout", "cdrom", "floppy", "tape", "audio", "video", "plugdev", "netdev",
    "operator", "utmp", "sasl", "src", "voice", "fax", "input", "kvm", "render", "sgx",
    "lpadmin", "ssh", "sshd", "messagebus", "polkitd", "halt", "shutdown", "ftp",
    "postgres", "mysql", "ldap", "openldap", "slapd", "redis", "xos", "xos-node", "_apt",
    "dbus", "avahi",
})
RESERVED_PREFIXES = ("systemd-", "_", "xos-")
#: Group names that would clash with sub-resources in API paths (/groups/<path>/members).
RESERVED_GROUP_NAMES = frozenset({"managers", "members"})


def _describe(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def validate_username(name: object, extra_reserved: frozenset[str] = frozenset()) -> str:
    """Return ``name`` if it is a POSIX-safe, unreserved username; raise InvalidInput."""
    if not isinstance(name, str):
        raise InvalidInput("username must be a string")
    if len(name) > UNIX_NAME_MAX:
        raise InvalidInput(f"username {_describe(name)} is longer than {UNIX_NAME_MAX} characters")
    if not USERNAME_RE.fullmatch(name):
        raise InvalidInput(
            f"username {_describe(name)} is not POSIX-safe: use lower-case letters, digits,"
            " '_' and '-', starting with a letter or '_'"
        )
    _refuse_reserved(name, "username", extra_reserved)
    return name


def _refuse_reserved(name: str, what: str, extra_reserved: frozenset[str]) -> None:
    if name in RESERVED_NAMES or name in extra_reserved or name.startswith(RESERVED_PREFIXES):
        raise InvalidInput(f"{what} {name!r} is reserved for the system")


def validate_component(name: object, what: str) -> str:
    """Validate a VO or group name (one path component)."""
    if not isinstance(name, str):
        raise InvalidInput(f"{what} name must be a string")
    if not COMPONENT_RE.fullmatch(name):
        raise InvalidInput(
            f"{what} name {_describe(name)} is invalid: use lower-case letters, digits and"
            " '-', starting with a letter, at most 31 characters"
        )
    return name


def validate_vo_name(name: object, extra_reserved: frozenset[str] = frozenset()) -> str:
    vo = validate_component(name, "VO")
    _refuse_reserved(vo, "VO name", extra_reserved)
    return vo


def unix_group_name(path: str) -> str:
    """Map a VO path (``/atlas/analysis``) to its Unix group name (``atlas_analysis``)."""
    components = parse_group_path(path)
    unix = "_".join(components)
    if len(unix) > UNIX_NAME_MAX:
        raise InvalidInput(
            f"group path {_describe(path)} maps to the Unix name {_describe(unix)}, longer"
            f" than {UNIX_NAME_MAX} characters; choose shorter names"
        )
    return unix


def parse_group_path(path: object) -> list[str]:
    """Split ``/vo/g1/g2`` into validated components."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 512:
        raise InvalidInput("a group path looks like /vo or /vo/group/subgroup")
    components = path[1:].split("/")
    for component in components:
        validate_component(component, "group")
    for component in components[1:]:
        if component in RESERVED_GROUP_NAMES:
            raise InvalidInput(f"group name {component!r} is reserved")
    return components


def validate_role(name: object) -> str:
    if not isinstance(name, str) or not ROLE_RE.fullmatch(name):
        raise InvalidInput(
            f"role name {_describe(str(name))} is invalid: letters, digits, '_' and '-',"
            " starting with a letter, at most 64 characters"
        )
    return name


def validate_display_name(name: object) -> str:
    """Display names become the GECOS field: no ':' ',' or control characters."""
    if not isinstance(name, str):
        raise InvalidInput("display name must be a string")
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidInput(f"display name is longer than {DISPLAY_NAME_MAX} characters")
    # Cc: C0 and C1 controls (U+0085 too); Zl, Zp: U+2028, U+2029 (line breaks to many tools);
    # bidi embeddings, overrides and isolates reorder what `ls -l` or `ps` shows.
    if any(c in ":," or c in BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Zl", "Zp")
           for c in name):
        raise InvalidInput("display name may not contain ':', ',' or control characters")
    if not name.strip():
        raise InvalidInput("display name may not be blank")
    return name.strip()


def validate_email(email: object) -> str:
    if not isinstance(email, str) or len(email) > 254 or not EMAIL_RE.fullmatch(email.lower()):
        raise InvalidInput(f"e-mail address {_describe(str(email))} is invalid")
    return email.lower()


def validate_node_name(name: object) -> str:
    """Nodes are named by their host name (lower-case DNS name)."""
    if not isinstance(name, str) or not NODE_NAME_RE.fullmatch(name):
        raise InvalidInput(f"node name {_describe(str(name))} is not a valid host name")
    return name
