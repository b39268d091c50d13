"""The XOS node agent: turns VO membership into local accounts on a compute node.

Runs on compute nodes, so it depends only on the standard library, cryptography, PyJWT
and ``xos_tokens`` (the command line adds click); never on the VO service's code.
Public names are exported here; the pipeline is ``client`` (the VO service) > ``model``
(validated snapshots and changes) > ``store`` (the snapshot on disk), driven by ``sync``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: where each public name lives. Loaded on first use (PEP 562): the PAM helpers import
#: ``xos_node.store`` at every login and must not pay for the HTTP client and the token
#: library they do not use.
_EXPORTS = {
    "NodeClient": "client",
    **dict.fromkeys(("BadAnswer", "CorruptSnapshot", "NodeError", "Refused",
                     "ResyncRequired", "ServiceError", "StaleAnswer", "StoreError",
                     "SyncRefused", "TLSFailure", "Unreachable", "UsageError"), "errors"),
    **dict.fromkeys(("DEFAULT_LIMITS", "Group", "Limits", "Snapshot", "User"), "model"),
    "SnapshotStore": "store",
    **dict.fromkeys(("StepResult", "SyncLoop"), "sync"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xos_node' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xos_node.{module}"), name)


__all__ = [
    "DEFAULT_LIMITS",
    "BadAnswer",
    "CorruptSnapshot",
    "Group",
    "Limits",
    "NodeClient",
    "NodeError",
    "Refused",
    "ResyncRequired",
    "ServiceError",
    "Snapshot",
    "SnapshotStore",
    "StaleAnswer",
    "StepResult",
    "StoreError",
    "SyncLoop",
    "SyncRefused",
    "TLSFailure",
    "Unreachable",
    "UsageError",
    "User",
]
