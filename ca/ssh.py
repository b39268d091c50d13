"""OpenSSH user and host certificates from the VO's SSH CA (an Ed25519 key).

A node that trusts the CA's public line (``TrustedUserCAKeys``) lets a user in as
the certificate's principal, so the principal must be exactly the user's Unix name:
it is checked against the POSIX rule, never taken from the key or its comment.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
    SSHCertPublicKeyTypes,
)

from ._internal import names
from ._internal.clock import CLOCK_SKEW, check_lifetime, utc
from ._internal.inputs import as_bytes
from .errors import KeyStoreError, MalformedInput, PolicyError, WeakKey
from .keys import check_public_key

USER_MAX_LIFETIME = timedelta(hours=24)
HOST_MAX_LIFETIME = timedelta(days=400)
MAX_PRINCIPALS = 256  # OpenSSH's own limit
CA_COMMENT = "xos-ssh-ca"
ACCEPTED_TYPES = frozenset({
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "ssh-rsa",
})
CERT_SUFFIX = "-cert-v01@openssh.com"
USER_EXTENSIONS = (
    b"permit-X11-forwarding", b"permit-agent-forwarding", b"permit-port-forwarding",
    b"permit-pty", b"permit-user-rc",
)
_KEY_TYPE_RE = re.compile(r"[a-z0-9@.-]{1,64}")
_LINE_RE = re.compile(r"[\x20-\x7e\t]+")

SSHKeyInput = SSHCertPublicKeyTypes | str | bytes


def load_ssh_public_key(text: str | bytes) -> SSHCertPublicKeyTypes:
    """Parse one OpenSSH public key line (``type base64 [comment]``).

    Refuses (MalformedInput) more than one line, control characters, oversized text,
    certificates and garbage; refuses (WeakKey) DSA, security-key and unknown types and
    keys that :func:`ca.keys.check_public_key` refuses.
    """
    raw = as_bytes(text, "SSH public key")
    line = raw.decode("ascii").removesuffix("\n").removesuffix("\r")
    if not _LINE_RE.fullmatch(line):
        raise MalformedInput("the SSH public key must be one line of printable text")
    key_type, *rest = line.split()
    if not rest or not _KEY_TYPE_RE.fullmatch(key_type):
        raise MalformedInput("not an OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    if key_type.endswith(CERT_SUFFIX):
        raise MalformedInput("this is an SSH certificate; send the plain public key line")
    if key_type not in ACCEPTED_TYPES:
        raise WeakKey(
            f"SSH key type {names.describe(key_type)} refused: use ssh-ed25519,"
            " ecdsa-sha2-nistp256/384/521 or ssh-rsa of at least 2048 bits"
        )
    try:
        key = serialization.load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedInput(f"cannot parse the SSH public key: {exc}") from None
    check_public_key(key)
    return cast(SSHCertPublicKeyTypes, key)  # check_public_key let only these through


def ssh_public_line(key: SSHCertPublicKeyTypes, comment: str = "") -> str:
    """Format ``key`` as an OpenSSH public key line, with an optional one-line comment."""
    if comment and not _LINE_RE.fullmatch(comment):
        raise PolicyError(f"comment {names.describe(comment)} must be printable text on one line")
    line = key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    return f"{line} {comment}" if comment else line


class SSHCertificateAuthority:
    """Signs OpenSSH user and host certificates with the VO's Ed25519 SSH CA key."""

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyStoreError("the SSH CA key must be an Ed25519 private key")
        self._key = key

    def public_line(self) -> str:
        """The CA line for ``TrustedUserCAKeys`` or ``@cert-authority`` in known_hosts."""
        return ssh_public_line(self._key.public_key(), CA_COMMENT)

    def issue_user(
        self,
        public_key: SSHKeyInput,
        *,
        principal: str,
        key_id: str,
        lifetime: timedelta,
        max_lifetime: timedelta = USER_MAX_LIFETIME,
        serial: int | None = None,
        now: datetime | None = None,
    ) -> SSHCertificate:
        """Certify ``public_key`` (key object or OpenSSH line) to log in as ``principal``.

        The principal must match ``^[a-z_][a-z0-9_-]{0,31}$`` (PolicyError): a ':' or a
        newline in it could name a second account. Grants pty, port, agent and X11
        forwarding and user rc, and nothing beyond the lifetime cap.
        """
        builder = self._builder(public_key, key_id, lifetime, max_lifetime, serial, now)
        builder = builder.type(SSHCertificateType.USER).valid_principals(
            [names.posix_name(principal, "principal").encode("ascii")])
        for extension in USER_EXTENSIONS:
            builder = builder.add_extension(extension, b"")
        return builder.sign(self._key)

    def issue_host(
        self,
        public_key: SSHKeyInput,
        *,
        hostnames: Sequence[str],
        key_id: str,
        lifetime: timedelta,
        max_lifetime: timedelta = HOST_MAX_LIFETIME,
        serial: int | None = None,
        now: datetime | None = None,
    ) -> SSHCertificate:
        """Certify a node's host key for ``hostnames`` (DNS names, lower-cased, 1 to 256)."""
        if isinstance(hostnames, str | bytes):
            raise PolicyError("hostnames must be a sequence of names, not a single string")
        hosts = [names.dns_name(host, "hostname") for host in hostnames]
        if not hosts:
            raise PolicyError("a host certificate needs at least one hostname")
        if len(hosts) > MAX_PRINCIPALS:
            raise PolicyError(f"at most {MAX_PRINCIPALS} hostnames fit in a certificate")
        if len(set(hosts)) != len(hosts):
            raise PolicyError("a hostname is listed twice")
        builder = self._builder(public_key, key_id, lifetime, max_lifetime, serial, now)
        builder = builder.type(SSHCertificateType.HOST).valid_principals(
            [host.encode("ascii") for host in hosts])
        return builder.sign(self._key)

    def _builder(
        self,
        public_key: SSHKeyInput,
        key_id: str,
        lifetime: timedelta,
        max_lifetime: timedelta,
        serial: int | None,
        now: datetime | None,
    ) -> SSHCertificateBuilder:
        if isinstance(public_key, str | bytes):
            key = load_ssh_public_key(public_key)
        else:
            check_public_key(public_key)
            key = public_key
        check_lifetime(lifetime, max_lifetime)
        moment = utc(now)
        return (
            SSHCertificateBuilder()
            .public_key(key)
            .serial(_serial(serial))
            .key_id(names.key_id(key_id).encode("ascii"))
            .valid_after(int((moment - CLOCK_SKEW).timestamp()))
            .valid_before(int((moment + lifetime).timestamp()))
        )


def _serial(serial: int | None) -> int:
    if serial is None:
        return secrets.randbits(64)
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial < 2**64:
        raise PolicyError("SSH certificate serial must be an integer in [0, 2**64)")
    return serial
