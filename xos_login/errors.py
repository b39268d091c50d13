"""What can go wrong for a user of xos-login: one root, one exit code per kind.

The CLI turns every LoginError into one line on stderr and its ``exit_code``; the
messages are written for the researcher who reads them, never as a traceback.
"""

from __future__ import annotations

import os


class LoginError(Exception):
    """Root of every failure xos-login reports to its user."""

    exit_code = os.EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(LoginError):
    """The command line or the configuration cannot work as given."""

    exit_code = os.EX_USAGE


class NotLoggedIn(LoginError):
    """No stored login: the user must run ``xos-login login``."""

    exit_code = os.EX_NOPERM


class Refused(LoginError):
    """The service said no: wrong password, pending membership, a refused device login."""

    exit_code = os.EX_NOPERM


class LoginEnded(Refused):
    """The refresh token is expired, revoked or replayed: the login is over."""


class TryLater(LoginError):
    """The service throttles us (too many failed logins): waiting helps."""

    exit_code = os.EX_TEMPFAIL


class Unreachable(LoginError):
    """No answer from the service: network, DNS, refused connection or a 5xx."""

    exit_code = os.EX_UNAVAILABLE


class TLSFailure(LoginError):
    """The TLS handshake failed, usually an untrusted certificate (see --ca-file)."""

    exit_code = os.EX_PROTOCOL


class BadAnswer(LoginError):
    """The service answered something xos-login cannot understand."""

    exit_code = os.EX_PROTOCOL


class LocalFileError(LoginError):
    """A file under the configuration directory cannot be read or written."""

    exit_code = os.EX_CANTCREAT
