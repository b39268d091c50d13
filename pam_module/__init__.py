"""The node's PAM side of XOS: helpers run by ``pam_exec``, and the PAM snippets that run them.

``xos-pam auth`` accepts an access token typed as the password (verified offline against
the node's JWKS, audience = this node) or a VO password (checked online with the VO
service's password grant); ``xos-pam account`` lets in only users listed unlocked in the
node's snapshot, which is what shuts out suspended or removed members whose token or SSH
certificate is still valid; ``xos-pam session`` makes a 0700 home where pam_mkhomedir is
not used. ``pam.d/`` holds the snippets (``@include xos-auth`` ...) and an example sshd
service, ``sshd_config.d/xos.conf`` the matching sshd settings. Local accounts, root
included, never reach the helpers: the snippets jump over them with pam_localuser.

Public: :func:`main` (the command), :func:`load_state` and its types (the one reader of
the node agent's state directory), the snippets' text, and the error tree. Everything
else is implementation.
"""

from pam_module.cli import main
from pam_module.errors import (
    PamHelperError,
    Refused,
    StateError,
    UnknownUser,
    Unreachable,
    UsageError,
)
from pam_module.snippets import HELPER, PAM_FILES, PAM_SNIPPETS, pam_file, sshd_config
from pam_module.state import (
    DEFAULT_STATE_DIR,
    STATE_ENV,
    NodeState,
    SnapshotUser,
    load_state,
)

__all__ = [
    "DEFAULT_STATE_DIR",
    "HELPER",
    "PAM_FILES",
    "PAM_SNIPPETS",
    "STATE_ENV",
    "NodeState",
    "PamHelperError",
    "Refused",
    "SnapshotUser",
    "StateError",
    "UnknownUser",
    "Unreachable",
    "UsageError",
    "load_state",
    "main",
    "pam_file",
    "sshd_config",
]
