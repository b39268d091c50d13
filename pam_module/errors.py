"""What can go wrong in a PAM helper: one root, a few kinds, one exit code per kind.

pam_exec turns every non-zero exit into the same PAM failure, so the codes do not change
what PAM decides; they make the reason readable in pam_exec's log line ("failed: exit
code 67") and in tests. Messages never contain the typed secret: they are logged.
"""

from __future__ import annotations

import os


class PamHelperError(Exception):
    """Root of every refusal or failure a helper reports (exit code: a software bug)."""

    exit_code = os.EX_SOFTWARE


class UsageError(PamHelperError):
    """The helper was called wrongly: bad arguments, or run by the wrong PAM stage."""

    exit_code = os.EX_USAGE


class StateError(PamHelperError):
    """The node's state directory cannot be trusted or read: missing, unsafe, corrupt."""

    exit_code = os.EX_CONFIG


class Refused(PamHelperError):
    """A credential or an account was refused: bad token, wrong password, locked user."""

    exit_code = os.EX_NOPERM


class UnknownUser(Refused):
    """The user is not an XOS account of this node (PAM moves on to the local modules)."""

    exit_code = os.EX_NOUSER


class Unreachable(PamHelperError):
    """The VO service could not be asked in time (a VO password cannot be checked)."""

    exit_code = os.EX_UNAVAILABLE
