"""Institutional LDAP passwords: find the user's entry, then bind as that user over TLS.

Why a module of its own: the directory is another organisation's server. Everything it
answers is untrusted input (decoded leniently, stripped of control characters, capped),
and a user's password must never cross the network in clear: every connection is TLS
(StartTLS for ``ldap://``, implicit TLS for ``ldaps://``) with a verified certificate and
host name, and the password is sent only after the handshake has succeeded.

Configuration keys and defaults are in ``DEFAULTS``; the caller passes a plain Mapping.
"""

from __future__ import annotations

import logging
import re
import ssl
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import AuthenticationRequired, ConfigurationError, InvalidInput, XosError

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1's old names (tagMap, typeMap), deprecated since pyasn1
    # 0.5: a DeprecationWarning at import, an error under pytest's "-W error".
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError
    from ldap3.operation.search import parse_filter
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

log = logging.getLogger(__name__)

WRONG = "wrong username or password"
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
PASSWORD_MAX = 1024
DISPLAY_NAME_MAX = 128
EMAIL_MAX = 254
DN_MAX = 1024
SEARCH_TEXT_MAX = 128
SEARCH_LIMIT_MAX = 10_000
# Values of one attribute looked at: a directory may return any number of them.
VALUES_MAX = 16
# Member values of one group looked at (member, uniqueMember, memberUid together).
MEMBERS_MAX = 200_000
FILTER_MAX = 1024
PAGE_SIZE_MAX = 5000
LIST_MAX_MAX = 1_000_000
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_GROUP_ATTRIBUTES = ("cn", "member", "uniqueMember", "memberUid")
BAD_DN = "the DN is empty, too long or has control characters"
# Bind results that mean "these credentials do not log in" rather than a broken server.
_REFUSED = {48, 49, 50}  # inappropriateAuthentication, invalidCredentials, insufficientAccess
_SUCCESS, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT = 0, 4, 32

#: Configuration keys and their defaults. LDAP_URL unset means no directory logins.
DEFAULTS: dict[str, Any] = {
    "LDAP_URL": None,  # ldap://host[:389] (StartTLS) or ldaps://host[:636]; never plain
    "LDAP_CA_FILE": None,  # PEM bundle that must have signed the server; None: system CAs
    "LDAP_BASE_DN": None,  # where users are searched (subtree); required with LDAP_URL
    "LDAP_USER_FILTER": "(&(objectClass=inetOrgPerson)(uid={username}))",
    "LDAP_BIND_DN": None,  # service account for the search; unset: anonymous search
    "LDAP_BIND_PASSWORD": None,
    "LDAP_TIMEOUT": 5,  # seconds, whole number 1-60, for each connect, handshake and reply
    "LDAP_ATTRIBUTES": {"username": "uid", "display_name": "cn", "email": "mail"},
    # Listing users and groups (the VO import, vo_service/ldapimport):
    "LDAP_GROUP_BASE_DN": None,  # where groups are read (subtree); None: LDAP_BASE_DN
    "LDAP_GROUP_FILTER": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
                         "(objectClass=posixGroup))",
    "LDAP_PAGE_SIZE": 500,  # entries per page of a paged listing (RFC 2696), 1-5000
    "LDAP_LIST_MAX": 200_000,  # a listing with more entries is refused, not cut
}

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_SPACES = re.compile(r"\s+")


class LdapError(XosError):
    """The directory cannot be used: unreachable, TLS refused, timed out, or it failed."""

    status = 502
    title = "Directory unavailable"


@dataclass(frozen=True, slots=True)
class LdapIdentity:
    """A directory user, every field already sanitized for display and storage."""

    dn: str
    username: str
    display_name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class _Settings:
    host: str
    port: int
    ldaps: bool
    ca_file: str | None
    base_dn: str
    user_filter: str
    bind_dn: str | None
    bind_password: str | None
    timeout: int
    attributes: dict[str, str]
    group_base_dn: str
    group_filter: str
    page_size: int
    list_max: int


@dataclass(frozen=True, slots=True)
class LdapUserEntry:
    """One entry of a user listing. ``identity`` is None when the entry cannot be used,
    and ``reason`` says why. ``dn`` is the entry's DN, or (reason BAD_DN) a cleaned copy
    for display only; ``shown`` is its first username value, cleaned for display."""

    dn: str
    shown: str
    identity: LdapIdentity | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LdapGroupEntry:
    """A directory group: member DNs (member, uniqueMember) and memberUid values, as the
    directory gave them (undecodable bytes replaced; at most MEMBERS_MAX): untrusted,
    for matching against listed users and, cleaned, for display."""

    dn: str
    name: str
    member_dns: tuple[str, ...]
    member_uids: tuple[str, ...]


# -- configuration -------------------------------------------------------------------
def _settings(config: Mapping[str, Any]) -> _Settings:
    """Read and check the LDAP_* keys; ConfigurationError names the bad one."""
    merged = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    url = merged["LDAP_URL"]
    if not isinstance(url, str) or not url:
        raise ConfigurationError("LDAP_URL is not set")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"LDAP_URL has a bad port: {exc}") from None
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.username \
            or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError("LDAP_URL must look like ldap://host[:port] or "
                                 "ldaps://host[:port] (plain LDAP is always upgraded "
                                 "with StartTLS)")
    ldaps = parts.scheme == "ldaps"
    base_dn = merged["LDAP_BASE_DN"]
    if not isinstance(base_dn, str) or not base_dn:
        raise ConfigurationError("LDAP_BASE_DN is not set")
    try:
        parse_dn(base_dn)
    except LDAPInvalidDnError:
        raise ConfigurationError(f"LDAP_BASE_DN {base_dn!r} is not a DN") from None
    user_filter = merged["LDAP_USER_FILTER"]
    if not isinstance(user_filter, str) or "{username}" not in user_filter \
            or not (user_filter.startswith("(") and user_filter.endswith(")")) \
            or user_filter.count("(") != user_filter.count(")"):
        raise ConfigurationError("LDAP_USER_FILTER must be one parenthesised LDAP filter "
                                 "containing {username}")
    bind_dn, bind_password = merged["LDAP_BIND_DN"], merged["LDAP_BIND_PASSWORD"]
    if bool(bind_dn) != bool(bind_password) or not isinstance(bind_dn or "", str) \
            or not isinstance(bind_password or "", str):
        raise ConfigurationError("LDAP_BIND_DN and LDAP_BIND_PASSWORD go together "
                                 "(both unset: anonymous search)")
    timeout = merged["LDAP_TIMEOUT"]
    # A whole number: ldap3 packs the receive timeout into SO_RCVTIMEO with struct "LL",
    # and a float there fails every connection attempt.
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 60:
        raise ConfigurationError("LDAP_TIMEOUT must be a whole number of seconds, 1 to 60")
    attributes = dict(DEFAULTS["LDAP_ATTRIBUTES"])
    given = merged["LDAP_ATTRIBUTES"]
    if not isinstance(given, Mapping) or not set(given) <= set(attributes):
        raise ConfigurationError("LDAP_ATTRIBUTES maps username, display_name and email "
                                 "to attribute names")
    attributes.update(given)
    for key, name in attributes.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
            raise ConfigurationError(f"LDAP_ATTRIBUTES[{key!r}] is not an attribute name")
    ca_file = merged["LDAP_CA_FILE"] or None
    if ca_file is not None and not isinstance(ca_file, str):
        raise ConfigurationError("LDAP_CA_FILE must be a path")
    group_base_dn = merged["LDAP_GROUP_BASE_DN"] or base_dn
    if not isinstance(group_base_dn, str) or dn_key(group_base_dn) is None:
        raise ConfigurationError(f"LDAP_GROUP_BASE_DN {group_base_dn!r} is not a DN")
    group_filter = merged["LDAP_GROUP_FILTER"]
    if not isinstance(group_filter, str) or check_filter(group_filter) is None:
        raise ConfigurationError("LDAP_GROUP_FILTER must be one parenthesised LDAP filter")
    page_size, list_max = merged["LDAP_PAGE_SIZE"], merged["LDAP_LIST_MAX"]
    for key, value, most in (("LDAP_PAGE_SIZE", page_size, PAGE_SIZE_MAX),
                             ("LDAP_LIST_MAX", list_max, LIST_MAX_MAX)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise ConfigurationError(f"{key} must be a whole number from 1 to {most}")
    return _Settings(parts.hostname, port or (636 if ldaps else 389), ldaps, ca_file,
                     base_dn, user_filter, bind_dn or None, bind_password or None, timeout,
                     attributes, group_base_dn, group_filter, page_size, list_max)


def check_filter(text: object) -> str | None:
    """``text`` if it is one well-formed parenthesised LDAP filter of printable characters
    (at most FILTER_MAX), else None. Why parse: a filter given by an operator is pasted
    into a larger one, and ``a)(b`` would change what the larger one means."""
    if not isinstance(text, str) or not 3 <= len(text) <= FILTER_MAX \
            or not text.isprintable() or text != text.strip():
        return None
    try:
        parse_filter(text, None, False, False, None, False)
    except LDAPException:
        return None
    return text


def dn_key(dn: object) -> tuple[tuple[str, str], ...] | None:
    """A DN as a comparable key (attribute types and values folded to lower case), or
    None when it is not a DN. Values are compared without case: good enough for uid, cn,
    ou and dc, the attributes that name people and groups."""
    if not isinstance(dn, str) or not dn or len(dn) > DN_MAX or not dn.isprintable():
        return None
    try:
        parts = parse_dn(dn)
    except LDAPInvalidDnError:
        return None
    return tuple((kind.strip().casefold(), value.strip().casefold())
                 for kind, value, _ in parts)


def dn_under(dn: object, base: str) -> bool:
    """True when ``dn`` is ``base`` or below it."""
    key, top = dn_key(dn), dn_key(base)
    return key is not None and top is not None and len(key) >= len(top) \
        and key[len(key) - len(top):] == top


# -- sanitizing what the directory says ------------------------------------------------
def clean_text(value: bytes, most: int) -> str:
    """Printable text from an attribute value: undecodable bytes become U+FFFD, line
    breaks and tabs one space, other control and format characters (escape sequences,
    bidirectional overrides) vanish; at most ``most`` characters."""
    text = unicodedata.normalize("NFC", value[: most * 4].decode("utf-8", "replace"))
    kept = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    return _SPACES.sub(" ", kept).strip()[:most]


def clean_email(value: bytes) -> str | None:
    """The value as an address, or None: too long (never cut, a cut address is another
    address), not UTF-8, with spaces or control characters, or not one local@domain."""
    if len(value) > EMAIL_MAX:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or "@" in local or not domain or domain.startswith(".") \
            or domain.endswith(".") or ".." in domain:
        return None
    return text


def _values(raw: Any, name: str, most: int = VALUES_MAX) -> list[bytes]:
    """Every value of attribute ``name`` (any case; language options last), at most
    ``most``; an absent attribute gives []."""
    if not isinstance(raw, Mapping):
        return []
    exact: list[bytes] = []
    tagged: list[bytes] = []
    for key, values in raw.items():
        if not isinstance(key, str) or not isinstance(values, list | tuple):
            continue
        base, _, options = key.partition(";")
        if base.casefold() == name.casefold():
            (tagged if options else exact).extend(
                bytes(v) for v in values if isinstance(v, bytes | bytearray))
    return (exact + tagged)[:most]


def _username(values: Iterable[bytes], typed: str | None) -> str | None:
    """The value that matches what the user typed (LDAP compares uids without case),
    else the first value of the allowed shape; None when no value has that shape."""
    names: list[str] = []
    for value in values:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if USERNAME.fullmatch(text):
            names.append(text)
    if typed is not None:
        for name in names:
            if name.casefold() == typed.casefold():
                return name
    return names[0] if names else None


# -- the directory ---------------------------------------------------------------------
class _VerifiedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """ldap3's Tls, but the standard library checks the host name during the handshake.

    Why: ldap3 2.9.1 switches ``check_hostname`` off and checks the name afterwards with
    ``ssl.match_hostname``: deprecated (a DeprecationWarning on every connection) and
    gone in Python 3.12, where ldap3 falls back to a copy that refuses IP addresses."""

    def __init__(self, context: ssl.SSLContext, hostname: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._hostname = hostname

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=self._hostname)


def _discard(connection: Any) -> None:
    """Unbind and close. Why the extra close: when opening fails (refused, TLS handshake
    refused, timeout), ldap3 marks the connection closed but leaves its socket open."""
    try:
        connection.unbind()
    except LDAPException:
        pass
    finally:
        sock = getattr(connection, "socket", None)
        if sock is not None:
            sock.close()


class LdapDirectory:
    """Checks passwords against, and lists users of, one institutional directory.

    Stateless apart from its settings: each call opens its own connections and closes
    them, so one instance may serve many threads."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings = _settings(config)
        try:
            self._context = ssl.create_default_context(cafile=self.settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"LDAP_CA_FILE cannot be loaded: {exc}") from None
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2

    # -- public ------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> LdapIdentity:
        """The identity of ``username`` if ``password`` is theirs in the directory.

        AuthenticationRequired (one message for a wrong password, an unknown user and a
        refused username) or LdapError when the directory cannot answer. The username's
        shape is checked and an empty password refused before any connection: an empty
        password is an *unauthenticated bind*, which many servers answer with success."""
        if not isinstance(username, str) or not USERNAME.fullmatch(username) \
                or not isinstance(password, str) or not password \
                or len(password) > PASSWORD_MAX:
            raise AuthenticationRequired(WRONG)
        s = self.settings
        query = s.user_filter.replace("{username}", escape_filter_chars(username))
        entries = self._search(query, size_limit=2)
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("LDAP filter %s matches several entries; login refused", query)
            raise AuthenticationRequired(WRONG)
        identity = self._identity(entries[0], typed=username)
        if identity is None:
            log.warning("LDAP entry for %r has an unusable DN; login refused", username)
            raise AuthenticationRequired(WRONG)
        connection = self._open(identity.dn, password)
        try:
            if not self._bind(connection):
                code = connection.result.get("result")
                if code in _REFUSED:
                    raise AuthenticationRequired(WRONG)
                raise self._failed("the directory failed the bind", connection)
        finally:
            _discard(connection)
        return identity

    def search(self, filter_text: str | None = None, limit: int = 100) -> list[LdapIdentity]:
        """Users whose username, display name or mail contains ``filter_text`` (all users
        when None), at most ``limit``; the text is escaped, never a filter of its own.
        Entries without a usable username or DN are left out."""
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= SEARCH_LIMIT_MAX:
            raise InvalidInput(f"limit must be a whole number from 1 to {SEARCH_LIMIT_MAX}")
        query = self.settings.user_filter.replace("{username}", "*")
        if filter_text is not None:
            if not isinstance(filter_text, str) or not 1 <= len(filter_text) <= SEARCH_TEXT_MAX \
                    or not filter_text.isprintable():
                raise InvalidInput(f"the search text has 1 to {SEARCH_TEXT_MAX} printable "
                                   "characters")
            text = escape_filter_chars(filter_text)
            any_of = "".join(f"({name}=*{text}*)" for name in self.settings.attributes.values())
            query = f"(&{query}(|{any_of}))"
        found = (self._identity(entry, typed=None) for entry in self._search(query, limit))
        return [identity for identity in found if identity is not None]

    def list_users(self, extra_filter: str | None = None) -> list[LdapUserEntry]:
        """Every user under the base DN (LDAP_USER_FILTER with any username), or only
        those also matching ``extra_filter`` (one filter, checked by ``check_filter``),
        unusable entries included with their reason. Paged; a listing the server cuts
        short (size or time limit) is an LdapError, never a partial answer: a caller
        that removes who is missing must not act on half a directory."""
        query = self.settings.user_filter.replace("{username}", "*")
        if extra_filter is not None:
            if check_filter(extra_filter) is None:
                raise InvalidInput("the user filter must be one parenthesised LDAP filter of "
                                   f"at most {FILTER_MAX} printable characters")
            query = f"(&{query}{extra_filter})"
        attributes = sorted(set(self.settings.attributes.values()))
        return [self._listed(entry) for entry in
                self._paged(self.settings.base_dn, ldap3.SUBTREE, query, attributes)]

    def read_group(self, dn: str) -> LdapGroupEntry | None:
        """The group at ``dn`` (below LDAP_GROUP_BASE_DN, matching LDAP_GROUP_FILTER), or
        None when there is none. InvalidInput when ``dn`` is not a DN under that base."""
        s = self.settings
        if dn_key(dn) is None:
            raise InvalidInput(f"{dn[:200]!r} is not a DN" if isinstance(dn, str)
                               else "a group DN is text")
        if not dn_under(dn, s.group_base_dn):
            raise InvalidInput(f"the group {dn[:200]!r} is not under LDAP_GROUP_BASE_DN "
                               f"{s.group_base_dn!r}")
        entries = self._paged(dn, ldap3.BASE, s.group_filter, list(_GROUP_ATTRIBUTES),
                              missing_ok=True)
        return self._group(entries[0]) if entries else None

    def list_groups(self) -> list[LdapGroupEntry]:
        """Every group under LDAP_GROUP_BASE_DN (paged), for choosing a mapping."""
        s = self.settings
        found = (self._group(entry) for entry in
                 self._paged(s.group_base_dn, ldap3.SUBTREE, s.group_filter, ["cn"]))
        return [group for group in found if group is not None]

    # -- connections ---------------------------------------------------------------------
    def _open(self, user: str | None, password: str | None) -> Any:
        """An open connection over verified TLS, not yet bound. LdapError if TLS cannot
        be had: nothing that needs a password is ever sent on a plain connection."""
        s = self.settings
        server = ldap3.Server(s.host, port=s.port, use_ssl=s.ldaps,
                              tls=_VerifiedTls(self._context, s.host),
                              get_info=ldap3.NONE, connect_timeout=s.timeout)
        connection = ldap3.Connection(
            server, user=user, password=password,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            receive_timeout=s.timeout, raise_exceptions=False, read_only=True,
            auto_referrals=False,  # a referral would carry our bind to another server
            auto_range=False)
        try:
            connection.open(read_server_info=False)
            if not s.ldaps:
                connection.start_tls(read_server_info=False)
        except LDAPException as exc:
            _discard(connection)
            raise self._unavailable("cannot open a TLS connection to the directory",
                                    exc) from None
        if not isinstance(connection.socket, ssl.SSLSocket):  # never trust, check
            _discard(connection)
            raise LdapError("the directory connection is not encrypted")
        return connection

    def _bind(self, connection: Any) -> bool:
        """True when bound; False with ``connection.result`` saying why not."""
        try:
            return bool(connection.bind(read_server_info=False))
        except LDAPException as exc:
            raise self._unavailable("the directory did not answer the bind", exc) from None

    def _search(self, query: str, size_limit: int) -> list[dict[str, Any]]:
        """Entries matching ``query`` under the base DN, as the service account or
        anonymously. A size limit reached is not an error: the caller counts."""
        s = self.settings
        connection = self._open(s.bind_dn, s.bind_password)
        try:
            if s.bind_dn and not self._bind(connection):
                raise self._failed("the directory refused the service account", connection)
            try:
                connection.search(s.base_dn, query, search_scope=ldap3.SUBTREE,
                                  dereference_aliases=ldap3.DEREF_NEVER,
                                  attributes=sorted(set(s.attributes.values())),
                                  size_limit=size_limit, time_limit=s.timeout)
            except LDAPException as exc:
                raise self._unavailable("the directory search failed", exc) from None
            code = connection.result.get("result")
            if code == _NO_SUCH_OBJECT:  # also what slapd says when ACLs hide the base
                raise self._failed("LDAP_BASE_DN is not visible to the searching account "
                                   "(set LDAP_BIND_DN?)", connection)
            if code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
                raise self._failed("the directory search failed", connection)
            response = connection.response or []
        finally:
            _discard(connection)
        return [r for r in response
                if isinstance(r, dict) and r.get("type") == "searchResEntry"][:size_limit]

    def _paged(self, base: str, scope: Any, query: str, attributes: list[str], *,
               missing_ok: bool = False) -> list[dict[str, Any]]:
        """Every entry matching ``query`` (RFC 2696 paged results), at most LDAP_LIST_MAX.
        ``missing_ok``: a base that does not exist gives [] instead of an error."""
        s = self.settings
        connection = self._open(s.bind_dn, s.bind_password)
        found: list[dict[str, Any]] = []
        try:
            if s.bind_dn and not self._bind(connection):
                raise self._failed("the directory refused the service account", connection)
            cookie: bytes | None = None
            while True:
                try:
                    connection.search(base, query, search_scope=scope,
                                      dereference_aliases=ldap3.DEREF_NEVER,
                                      attributes=attributes, paged_size=s.page_size,
                                      paged_cookie=cookie, time_limit=s.timeout)
                except LDAPException as exc:
                    raise self._unavailable("the directory listing failed", exc) from None
                code = connection.result.get("result")
                if code == _NO_SUCH_OBJECT and missing_ok:
                    return []
                if code == _NO_SUCH_OBJECT:
                    raise self._failed(f"{base!r} is not visible to the searching account "
                                       "(set LDAP_BIND_DN?)", connection)
                if code == _SIZE_LIMIT_EXCEEDED:  # never act on part of a list
                    raise self._failed("the directory stopped the listing at its size limit "
                                       "(give LDAP_BIND_DN a higher one; OpenLDAP: olcLimits "
                                       "size.prtotal)", connection)
                if code != _SUCCESS:
                    raise self._failed("the directory did not list every entry", connection)
                found += [r for r in connection.response or []
                          if isinstance(r, dict) and r.get("type") == "searchResEntry"]
                if len(found) > s.list_max:
                    raise LdapError(f"the directory lists more than LDAP_LIST_MAX "
                                    f"({s.list_max}) entries")
                controls = connection.result.get("controls") or {}
                cookie = ((controls.get(_PAGED_RESULTS) or {}).get("value") or {}).get("cookie")
                if not cookie:
                    return found
        finally:
            _discard(connection)

    def _listed(self, entry: Mapping[str, Any]) -> LdapUserEntry:
        """A listed user entry with the reason it cannot be used, if any."""
        dn, raw = entry.get("dn"), entry.get("raw_attributes")
        values = _values(raw, self.settings.attributes["username"])
        shown = clean_text(values[0], 64) if values else ""
        if not isinstance(dn, str) or not dn or len(dn) > DN_MAX or not dn.isprintable():
            shown_dn = clean_text(dn.encode(), 256) if isinstance(dn, str) else ""
            return LdapUserEntry(shown_dn, shown, None, BAD_DN)
        identity = self._identity(entry, typed=None)
        if identity is None:
            why = "no username" if not values else \
                "the username is not 1 to 64 of A-Z a-z 0-9 . _ @ -"
            return LdapUserEntry(dn, shown, None, why)
        return LdapUserEntry(dn, shown, identity, None)

    def _group(self, entry: Mapping[str, Any]) -> LdapGroupEntry | None:
        dn, raw = entry.get("dn"), entry.get("raw_attributes")
        if dn_key(dn) is None:
            return None
        names = [clean_text(v, 128) for v in _values(raw, "cn")]
        dns: list[str] = []
        for name in ("member", "uniqueMember"):
            for value in _values(raw, name, MEMBERS_MAX):
                text = value.decode("utf-8", "replace")
                if name == "uniqueMember":  # an optional "#'0101'B" unique identifier
                    text = re.sub(r"#'[01]*'B$", "", text)
                dns.append(text[:DN_MAX + 1])
        uids = [v[:256].decode("utf-8", "replace")
                for v in _values(raw, "memberUid", MEMBERS_MAX)]
        return LdapGroupEntry(str(dn), next((n for n in names if n), ""),
                              tuple(dns[:MEMBERS_MAX]), tuple(uids))

    def _identity(self, entry: Mapping[str, Any], typed: str | None) -> LdapIdentity | None:
        """The entry as an identity, or None when its DN is empty or odd or (listing only)
        it has no username of the allowed shape."""
        dn = entry.get("dn")
        if not isinstance(dn, str) or not dn or len(dn) > DN_MAX or not dn.isprintable():
            return None
        names, raw = self.settings.attributes, entry.get("raw_attributes")
        username = _username(_values(raw, names["username"]), typed) or typed
        if username is None:
            return None
        display = next((text for text in (clean_text(v, DISPLAY_NAME_MAX)
                                          for v in _values(raw, names["display_name"]))
                        if text), username)
        email = next((a for a in map(clean_email, _values(raw, names["email"])) if a), None)
        return LdapIdentity(dn=dn, username=username, display_name=display, email=email)

    # -- errors --------------------------------------------------------------------------
    def _unavailable(self, what: str, exc: Exception) -> LdapError:
        log.warning("LDAP %s:%s: %s: %s", self.settings.host, self.settings.port, what,
                    type(exc).__name__)
        log.debug("LDAP error detail: %s", exc)
        return LdapError(what)

    def _failed(self, what: str, connection: Any) -> LdapError:
        result = connection.result or {}
        log.warning("LDAP %s:%s: %s: %s %s", self.settings.host, self.settings.port, what,
                    result.get("result"), result.get("description"))
        return LdapError(what)
