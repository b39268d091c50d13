"""What can go wrong in the node agent: one root, a layered tree, one exit code per kind.

Callers catch the layer they can act on: the sync loop treats every ``ServiceError`` as
"try again later", every ``SyncRefused`` as "keep what we have", and ``ResyncRequired``
as the service's request for a fresh snapshot (a signal, not a failure). The CLI turns
any ``NodeError`` into one line on stderr and its ``exit_code``.
"""

from __future__ import annotations

import os


class NodeError(Exception):
    """Root of every failure the node agent reports."""

    exit_code = os.EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(NodeError):
    """The command line or the configuration cannot work as given."""

    exit_code = os.EX_USAGE


# -- the answers of the VO service ----------------------------------------------------
class SyncRefused(NodeError):
    """An answer failed validation; nothing of it was applied."""

    exit_code = os.EX_DATAERR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StaleAnswer(SyncRefused):
    """A changes answer that is not newer than what the node holds (a replay, or an answer
    to another question): harmless to drop, the next poll asks again."""


class ResyncRequired(NodeError):
    """The service cannot answer with changes (the node's VO set changed, or the node is
    ahead of the service): the caller must take a fresh snapshot."""

    exit_code = os.EX_TEMPFAIL


# -- talking to the service -----------------------------------------------------------
class ServiceError(NodeError):
    """The VO service could not be asked, or said no: the node keeps what it has."""

    exit_code = os.EX_UNAVAILABLE


class Unreachable(ServiceError):
    """No usable answer: network, DNS, refused connection, timeout, 5xx or 429."""


class TLSFailure(Unreachable):
    """The TLS handshake failed, usually a certificate the CA bundle does not vouch for."""

    exit_code = os.EX_PROTOCOL


class Refused(ServiceError):
    """The service refused the node: unknown or revoked API key, unknown node, 4xx."""

    exit_code = os.EX_NOPERM


class BadAnswer(ServiceError):
    """The service answered something the agent cannot read (not JSON, too large)."""

    exit_code = os.EX_PROTOCOL


# -- the state directory --------------------------------------------------------------
class StoreError(NodeError):
    """The state directory or the snapshot file cannot be used."""

    exit_code = os.EX_IOERR


class CorruptSnapshot(StoreError):
    """The stored snapshot is truncated, altered or invalid: it is refused whole."""

    exit_code = os.EX_DATAERR
