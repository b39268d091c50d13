"""The one error root of the certificate authority and its layered tree.

Callers catch :class:`CAError` (or :class:`InvalidRequest` for everything a requester
can cause) and map it once to their own answer; the message is safe to show to the
requester and names what was refused.
"""

from __future__ import annotations


class CAError(Exception):
    """Root of every error the CA library raises on purpose."""


class InvalidRequest(CAError):
    """A request the CA refuses to sign."""


class MalformedInput(InvalidRequest):
    """The PEM, DER or OpenSSH text cannot be parsed, or is larger than the input cap."""


class BadSignature(InvalidRequest):
    """The self-signature of a certificate signing request does not verify."""


class WeakKey(InvalidRequest):
    """The key is too small or of a type or curve the CA does not accept."""


class ForbiddenExtension(InvalidRequest):
    """The CSR asks for an extension; only the CA decides a certificate's extensions."""


class PolicyError(CAError):
    """A value breaks the CA's policy: lifetime above the cap, bad name, empty list."""


class KeyStoreError(CAError):
    """A key file is missing, undecryptable, too widely readable, or does not fit."""
