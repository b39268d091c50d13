"""JSON user and group records in systemd's format (https://systemd.io/USER_RECORD/).

What nss-systemd (systemd 252, Debian 12) needs from a record, learned from its code and
proven by the end-to-end tests:

- ``service`` must be present, or the client refuses the record ("does not carry service
  information") and the user simply does not exist. systemd 252 checks only that it is
  there; we set it to the socket's name, as DESIGN.md and systemd's own services do.
- ``userName``/``uid``/``gid``, ``realName``, ``homeDirectory`` and ``shell`` become the
  passwd fields; ``pw_passwd`` is always ``x``; without ``realName`` the GECOS field
  shows the user name.
- The shadow entry (``getspnam``, read by pam_unix's account stage, and by sshd without
  PAM) is built from ``privileged.hashedPassword`` and the top-level ``locked``: an
  unlocked VO user gets ``*`` (no password, not locked: logins go by certificate or
  token); a locked user gets ``!*`` and, from ``locked``, an expiry date of day 1, i.e.
  an expired account. The privileged section is sent only to root or to the user
  itself; everyone else gets ``incomplete: true``, and then nss-systemd reports no shadow
  entry, just as /etc/shadow is unreadable to them.
- Group members: nss-systemd's getgrnam merges the record's ``members`` with
  GetMemberships(groupName), but initgroups (``id``, sshd, su, every login) fetches the
  whole record of each group the user is in just to learn its gid. A 10,000-member list
  in the record made ``id`` take ~290 ms instead of ~5 ms, so group records carry no
  members: GetMemberships, which the API calls authoritative, is their one source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .accounts import Group, User

HOME_ROOT = "/home"
SHELL = "/bin/bash"
DISPOSITION = "regular"
NO_HASH = "*"  # no password can match, yet the account is not locked
LOCKED_HASH = "!*"  # locked, no password: systemd's PASSWORD_LOCKED_AND_INVALID


def user_record(
    user: User,
    service: str,
    member_of: Sequence[str] = (),
    *,
    privileged: bool = False,
) -> dict[str, Any]:
    """The user record of ``user`` as served by ``service``.

    ``privileged`` adds the section only root and the user may see (the shadow answer).
    Locked users keep their name, home and shell so their files keep an owner's name;
    ``locked`` is what stops logins.
    """
    record: dict[str, Any] = {
        "userName": user.name,
        "uid": user.uid,
        "gid": user.gid,
        "homeDirectory": f"{HOME_ROOT}/{user.name}",
        "shell": SHELL,
        "disposition": DISPOSITION,
        "locked": user.locked,
        "service": service,
    }
    if user.display_name:
        record["realName"] = user.display_name
    if member_of:
        record["memberOf"] = list(member_of)
    if privileged:
        record["privileged"] = {
            "hashedPassword": [LOCKED_HASH if user.locked else NO_HASH]}
    return record


def group_record(group: Group, service: str) -> dict[str, Any]:
    """The group record of ``group``: no ``members`` (see the module docstring)."""
    return {
        "groupName": group.name,
        "gid": group.gid,
        "disposition": DISPOSITION,
        "service": service,
    }


def user_reply(
    user: User, service: str, member_of: Sequence[str], *, privileged: bool
) -> dict[str, Any]:
    """GetUserRecord's reply parameters; ``incomplete`` says the privileged part was cut."""
    return {"record": user_record(user, service, member_of, privileged=privileged),
            "incomplete": not privileged}


def group_reply(group: Group, service: str) -> dict[str, Any]:
    """GetGroupRecord's reply parameters (groups carry no privileged section here)."""
    return {"record": group_record(group, service), "incomplete": False}
