"""The node's NSS provider: VO accounts served to glibc through nss-systemd.

glibc asks nss-systemd (``passwd: files systemd`` in nsswitch.conf), which asks every
Varlink socket in /run/systemd/userdb/ for JSON user and group records. This package
serves the node's account snapshot there from memory:

- ``accounts``: the snapshot validated and indexed (``AccountView``), minus whatever
  collides with a local account (reported as ``Conflict``);
- ``records``: the user and group records in systemd's JSON format;
- ``userdb``: the io.systemd.UserDatabase methods, without I/O;
- ``varlink``: the socket server (``UserdbServer``);
- ``daemon``: ``python -m nss_plugin``, which serves a snapshot file and reloads it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: where each public name lives, loaded on first use (PEP 562): a PAM helper that only
#: asks the agent (``varlink.call_once``) must not pay for the whole provider.
_EXPORTS = {
    **dict.fromkeys(("AccountView", "Conflict", "Group", "Limits", "LocalAccounts", "User"),
                    "accounts"),
    **dict.fromkeys(("NssPluginError", "ServiceNameError", "SnapshotError"), "errors"),
    **dict.fromkeys(("group_record", "user_record"), "records"),
    **dict.fromkeys(("UserDatabase", "VarlinkError"), "userdb"),
    **dict.fromkeys(("DEFAULT_SERVICE", "DEFAULT_SOCKET_DIR", "UserdbServer", "bypass_self",
                     "check_service_name"), "varlink"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nss_plugin' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nss_plugin.{module}"), name)


__all__ = [
    "DEFAULT_SERVICE", "DEFAULT_SOCKET_DIR", "AccountView", "Conflict", "Group", "Limits",
    "LocalAccounts", "NssPluginError", "ServiceNameError", "SnapshotError", "User",
    "UserDatabase", "UserdbServer", "VarlinkError", "bypass_self", "check_service_name",
    "group_record", "user_record",
]
