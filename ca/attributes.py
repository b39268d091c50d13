"""The XOS VO attribute extensions: who a certificate holder is in which VOs.

Two non-critical X.509 extensions under the project's UUID arc (``2.25``, X.667),
DER encoded with pyasn1 so that ``openssl asn1parse`` shows their strings::

    XosVoAttributes ::= SEQUENCE {
        version      INTEGER (1),
        globalUserId UTF8String,            -- "urn:uuid:..."
        primaryVO    UTF8String,
        otherVOs     SEQUENCE OF UTF8String,
        primaryGroup UTF8String,            -- VOMS path "/atlas" or "/atlas/analysis"
        otherGroups  SEQUENCE OF UTF8String,
        roles        SEQUENCE OF UTF8String -- "/atlas/Role=production"
    }
    XosNodeAttributes ::= SEQUENCE {
        version INTEGER (1), hostname UTF8String, vos SEQUENCE OF UTF8String }

The dataclasses validate their values when built (PolicyError), and ``from_der``
refuses anything that is not exactly the canonical DER of a valid value
(MalformedInput): trailing bytes, another version, a bad name, non-minimal encoding.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, univ

from ._internal import names
from ._internal.inputs import MAX_INPUT_BYTES
from .errors import MalformedInput, PolicyError

#: The project's arc: 2.25 followed by the decimal value of a fixed UUID.
XOS_ARC = "2.25.91721424635292082939482028897620333380"
XOS_VO_ATTRIBUTES_OID = x509.ObjectIdentifier(XOS_ARC + ".1")
XOS_NODE_ATTRIBUTES_OID = x509.ObjectIdentifier(XOS_ARC + ".2")
VERSION = 1
URN_UUID = "urn:uuid:"


class _Strings(univ.SequenceOf):  # type: ignore[misc]
    componentType = char.UTF8String()


class _VoAttributesAsn1(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("globalUserId", char.UTF8String()),
        namedtype.NamedType("primaryVO", char.UTF8String()),
        namedtype.NamedType("otherVOs", _Strings()),
        namedtype.NamedType("primaryGroup", char.UTF8String()),
        namedtype.NamedType("otherGroups", _Strings()),
        namedtype.NamedType("roles", _Strings()),
    )


class _NodeAttributesAsn1(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("hostname", char.UTF8String()),
        namedtype.NamedType("vos", _Strings()),
    )


@dataclass(frozen=True)
class VOAttributes:
    """A user's global id, VOs, groups and roles, as carried in a user certificate.

    Every group and role must lie in the primary VO or one of the other VOs, and no
    value may be listed twice; PolicyError names the offending value.
    """

    global_user_id: uuid.UUID
    primary_vo: str
    other_vos: tuple[str, ...]
    primary_group: str
    other_groups: tuple[str, ...]
    roles: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.global_user_id, uuid.UUID):
            raise PolicyError("global_user_id must be a uuid.UUID")
        for field in ("other_vos", "other_groups", "roles"):
            object.__setattr__(self, field, _as_tuple(getattr(self, field), field))
        vos: tuple[str, ...] = (names.component(self.primary_vo, "primary VO"),)
        vos += tuple(names.component(vo, "other VO") for vo in self.other_vos)
        _no_duplicates(vos, "VO")
        groups = (self.primary_group, *self.other_groups)
        _no_duplicates(groups, "group")
        _no_duplicates(self.roles, "role")
        if names.group_path(self.primary_group, "primary group")[0] != self.primary_vo:
            raise PolicyError(
                f"primary group {names.describe(self.primary_group)} is not in the primary VO"
                f" {self.primary_vo!r}"
            )
        for group in self.other_groups:
            _in_vos(names.group_path(group, "group")[0], group, vos)
        for role in self.roles:
            _in_vos(names.role_path(role, "role")[0], role, vos)

    def to_der(self) -> bytes:
        """Encode as the DER of ``XosVoAttributes``."""
        value = _VoAttributesAsn1()
        value["version"] = VERSION
        value["globalUserId"] = URN_UUID + str(self.global_user_id)
        value["primaryVO"] = self.primary_vo
        value["otherVOs"] = _strings(self.other_vos)
        value["primaryGroup"] = self.primary_group
        value["otherGroups"] = _strings(self.other_groups)
        value["roles"] = _strings(self.roles)
        return bytes(encoder.encode(value))

    @classmethod
    def from_der(cls, der: bytes) -> Self:
        """Decode and validate ``XosVoAttributes``; MalformedInput on anything off."""
        value = _decode(der, _VoAttributesAsn1(), "XOS VO attributes")
        try:
            return cls(
                global_user_id=_parse_urn_uuid(str(value["globalUserId"])),
                primary_vo=str(value["primaryVO"]),
                other_vos=_from_strings(value["otherVOs"]),
                primary_group=str(value["primaryGroup"]),
                other_groups=_from_strings(value["otherGroups"]),
                roles=_from_strings(value["roles"]),
            )
        except PolicyError as exc:
            raise MalformedInput(f"invalid XOS VO attributes: {exc}") from None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> Self | None:
        """Return the attributes of a user certificate, or None if it carries none."""
        der = _extension_der(cert, XOS_VO_ATTRIBUTES_OID)
        return None if der is None else cls.from_der(der)


@dataclass(frozen=True)
class NodeAttributes:
    """A node's host name and the VOs it serves, as carried in a node certificate."""

    hostname: str
    vos: tuple[str, ...]

    def __post_init__(self) -> None:
        if names.dns_name(self.hostname, "hostname") != self.hostname:
            raise PolicyError(f"hostname {names.describe(self.hostname)} must be lower case")
        object.__setattr__(self, "vos", _as_tuple(self.vos, "vos"))
        for vo in self.vos:
            names.component(vo, "VO")
        _no_duplicates(self.vos, "VO")

    def to_der(self) -> bytes:
        """Encode as the DER of ``XosNodeAttributes``."""
        value = _NodeAttributesAsn1()
        value["version"] = VERSION
        value["hostname"] = self.hostname
        value["vos"] = _strings(self.vos)
        return bytes(encoder.encode(value))

    @classmethod
    def from_der(cls, der: bytes) -> Self:
        """Decode and validate ``XosNodeAttributes``; MalformedInput on anything off."""
        value = _decode(der, _NodeAttributesAsn1(), "XOS node attributes")
        try:
            return cls(hostname=str(value["hostname"]), vos=_from_strings(value["vos"]))
        except PolicyError as exc:
            raise MalformedInput(f"invalid XOS node attributes: {exc}") from None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> Self | None:
        """Return the attributes of a node certificate, or None if it carries none."""
        der = _extension_der(cert, XOS_NODE_ATTRIBUTES_OID)
        return None if der is None else cls.from_der(der)


def _as_tuple(values: Iterable[str], field: str) -> tuple[str, ...]:
    if isinstance(values, str | bytes):
        raise PolicyError(f"{field} must be a sequence of names, not a single string")
    return tuple(values)


def _no_duplicates(values: tuple[str, ...], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise PolicyError(f"{what} {names.describe(value)} is listed twice")
        seen.add(value)


def _in_vos(vo: str, path: str, vos: tuple[str, ...]) -> None:
    if vo not in vos:
        raise PolicyError(f"{names.describe(path)} is not in one of the user's VOs")


def _strings(values: tuple[str, ...]) -> _Strings:
    strings = _Strings()
    strings.extend(values)  # extend, even with nothing, makes an empty SEQUENCE OF a value
    return strings


def _from_strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value)


def _parse_urn_uuid(text: str) -> uuid.UUID:
    if not text.startswith(URN_UUID):
        raise PolicyError(f"global user id {names.describe(text)} is not a urn:uuid: URN")
    try:
        parsed = uuid.UUID(text[len(URN_UUID):])
    except ValueError:
        raise PolicyError(f"global user id {names.describe(text)} is not a UUID") from None
    if URN_UUID + str(parsed) != text:
        raise PolicyError(f"global user id {names.describe(text)} is not in canonical form")
    return parsed


def _decode(der: bytes, spec: univ.Sequence, what: str) -> Any:
    """Decode DER against ``spec``; only the exact canonical encoding of version 1 passes."""
    if not isinstance(der, bytes) or len(der) > MAX_INPUT_BYTES:
        raise MalformedInput(f"{what} must be at most {MAX_INPUT_BYTES} bytes of DER")
    try:
        value, rest = decoder.decode(der, asn1Spec=spec)
        canonical = bytes(encoder.encode(value))
        version = int(value["version"])
    except (PyAsn1Error, UnicodeError) as exc:
        raise MalformedInput(f"cannot decode {what}: {exc}") from None
    if rest:
        raise MalformedInput(f"{what} are followed by {len(rest)} trailing bytes")
    if canonical != der:
        raise MalformedInput(f"{what} are not in canonical DER")
    if version != VERSION:
        raise MalformedInput(f"{what} have version {version}; only {VERSION} is known")
    return value


def _extension_der(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        extension = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise MalformedInput(f"cannot parse the certificate's extensions: {exc}") from None
    return extension.value.public_bytes()
