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

from .accounts import AccountView, Conflict, Group, Limits, LocalAccounts, User
from .errors import NssPluginError, ServiceNameError, SnapshotError
from .records import group_record, user_record
from .userdb import UserDatabase, VarlinkError
from .varlink import (
    DEFAULT_SERVICE,
    DEFAULT_SOCKET_DIR,
    UserdbServer,
    bypass_self,
    check_service_name,
)

__all__ = [
    "DEFAULT_SERVICE", "DEFAULT_SOCKET_DIR", "AccountView", "Conflict", "Group", "Limits",
    "LocalAccounts", "NssPluginError", "ServiceNameError", "SnapshotError", "User",
    "UserDatabase", "UserdbServer", "VarlinkError", "bypass_self", "check_service_name",
    "group_record", "user_record",
]
