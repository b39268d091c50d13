"""The XOS node agent: turns VO membership into local accounts on a compute node.

Runs on compute nodes, so it depends only on the standard library, cryptography, PyJWT
and ``xos_tokens`` (the command line adds click); never on the VO service's code.
Public names are exported here; the pipeline is ``client`` (the VO service) > ``model``
(validated snapshots and changes) > ``store`` (the snapshot on disk), driven by ``sync``.
"""

from xos_node.client import NodeClient
from xos_node.errors import (
    BadAnswer,
    CorruptSnapshot,
    NodeError,
    Refused,
    ResyncRequired,
    ServiceError,
    StaleAnswer,
    StoreError,
    SyncRefused,
    TLSFailure,
    Unreachable,
    UsageError,
)
from xos_node.model import DEFAULT_LIMITS, Group, Limits, Snapshot, User
from xos_node.store import SnapshotStore
from xos_node.sync import StepResult, SyncLoop

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
