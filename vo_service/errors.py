"""The one error root of the VO service and its layered tree.

Domain services raise these; the HTTP API maps them to RFC 9457 problem details in
exactly one place (``vo_service.api.problems``) and the CLI prints their message.
"""

from __future__ import annotations

from typing import Any


class XosError(Exception):
    """Root of every error the VO service raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(XosError):
    """The request is well-formed but a value breaks a rule (name, range, date)."""

    status = 422
    title = "Invalid input"


class MalformedRequest(XosError):
    """The request cannot be read at all (bad JSON, wrong content type)."""

    status = 400
    title = "Malformed request"


class NotFound(XosError):
    """The named user, VO, group, role, membership or node does not exist."""

    status = 404
    title = "Not found"


class Conflict(XosError):
    """The request clashes with the current state."""

    status = 409
    title = "Conflict"


class AlreadyExists(Conflict):
    """A name, number or membership is already taken (and is never reused)."""

    title = "Already exists"


class InvalidTransition(Conflict):
    """The membership or user status does not allow this operation."""

    title = "Invalid state transition"


class NumbersExhausted(XosError):
    """The configured UID or GID range has no free number left."""

    status = 507
    title = "Number range exhausted"


class AuthenticationRequired(XosError):
    """No credential, or one that is unknown, revoked or malformed."""

    status = 401
    title = "Authentication required"


class PermissionDenied(XosError):
    """The caller is known but may not do this."""

    status = 403
    title = "Permission denied"


class ConfigurationError(XosError):
    """The service configuration is unusable; raised at start-up."""

    title = "Configuration error"


class CAUnavailable(XosError):
    """The certificate authority is not set up, or its keys cannot be loaded."""

    status = 503
    title = "Certificate authority unavailable"


class TooManyAttempts(XosError):
    """Too many failed logins for this account or address; try again later."""

    status = 429
    title = "Too many attempts"
