"""The error tree of the node's NSS provider: catch ``NssPluginError`` for all of them."""

from __future__ import annotations


class NssPluginError(Exception):
    """Root of every error this package raises on purpose."""


class SnapshotError(NssPluginError, ValueError):
    """The snapshot is malformed; it is refused whole and nothing it holds is served."""


class ServiceNameError(NssPluginError, ValueError):
    """The userdb service (socket) name would be ignored, shadowed or misread by clients."""
