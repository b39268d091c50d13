"""The home directory policy: ``<base>/<name>``, mode 0700, owned by the user's uid and gid.

The shipped PAM snippet prefers the real ``pam_mkhomedir`` (``umask=0077``); this is the
helper for nodes that cannot use it (e.g. a user that NSS does not resolve yet during the
session stage). It runs as root on a path built from a login name, so: the name must be
POSIX-safe, the base is opened once and everything happens relative to that descriptor
without following symlinks, a new directory is chowned and chmodded through its own
descriptor, and an existing entry is accepted only if it is a real directory already
owned by the user (a home owned by someone else is never handed over).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import Refused, StateError
from .state import USERNAME, SnapshotUser

DEFAULT_HOME_BASE = Path("/home")
HOME_MODE = 0o700


def make_home(user: SnapshotUser, base: Path = DEFAULT_HOME_BASE) -> bool:
    """Create ``base/<name>`` for ``user`` unless it exists; True when it was created.

    Refused for an unsafe name, for an existing entry that is not a directory owned by
    the user; StateError when ``base`` cannot be opened as a directory.
    """
    if not USERNAME.fullmatch(user.name):
        raise Refused(f"{user.name[:40]!r} is not a safe name for a home directory")
    try:
        base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise StateError(f"cannot open the home base {base}: {error.strerror}") from None
    try:
        try:
            os.mkdir(user.name, HOME_MODE, dir_fd=base_fd)
        except FileExistsError:
            st = os.stat(user.name, dir_fd=base_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != user.uid:
                raise Refused(f"{base / user.name} exists and is not a directory owned by "
                              f"{user.name}: not using it") from None
            return False
        home_fd = os.open(user.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                          os.O_CLOEXEC, dir_fd=base_fd)
        try:
            os.fchown(home_fd, user.uid, user.gid)
            os.fchmod(home_fd, HOME_MODE)  # mkdir's mode went through the umask
        finally:
            os.close(home_fd)
        return True
    finally:
        os.close(base_fd)
