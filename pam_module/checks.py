"""The decisions, without I/O beyond what is handed in: who may log in, which secret is what.

Kept apart from the command line so that each rule is one small function a test can call;
the network part (a VO password) lives in :mod:`pam_module.online`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

from .errors import Refused, UnknownUser
from .state import USERNAME, NodeState, SnapshotUser

if TYPE_CHECKING:
    from xos_tokens import Claims

#: What pam_exec hands to the helper at most (Linux-PAM 1.5.2, checked here): the secret
#: is cut to PAM_MAX_RESP_SIZE - 1 = 511 bytes, with no terminator. A longer access token
#: arrives truncated and cannot verify (see :func:`check_token`).
PAM_EXEC_MAX_SECRET = 511
#: More than anyone types; a larger input is refused unread (the helper may be run by hand).
MAX_SECRET_BYTES = 16 * 1024
# A compact JWS, or its beginning: base64url of '{"' opens every header, then a dot.
_TOKEN_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*")


def pam_user(value: str | None) -> str:
    """PAM_USER, if it can be an XOS account name at all; UnknownUser otherwise.

    The name is typed by whoever connects: it is checked before it reaches a log line or a
    path, and a name no XOS account can have ends the helper at once.
    """
    if not value:
        raise UnknownUser("no PAM_USER given")
    if not USERNAME.fullmatch(value):
        raise UnknownUser("not a possible XOS user name")
    return value


def account_user(state: NodeState, name: str) -> SnapshotUser:
    """The user if they may log in to this node now: listed in the snapshot and not locked.

    This is what refuses suspended or removed members even while their token or
    certificate is still valid: the snapshot follows the VO service within seconds.
    """
    user = state.users.get(name)
    if user is None:
        raise UnknownUser("not an XOS user of this node")
    if user.locked:
        raise Refused("locked on this node (suspended, or no longer in its VOs)")
    return user


def read_secret(stream: BinaryIO) -> str:
    """The secret pam_exec's ``expose_authtok`` writes to stdin.

    Linux-PAM 1.5.2 writes the bytes with no terminator; other versions and the man page
    speak of a NUL, and a person testing by hand ends with a newline: one trailing NUL,
    then one trailing newline, are dropped, nothing else (spaces may be part of it).
    """
    data = stream.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise Refused(f"the typed secret is longer than {MAX_SECRET_BYTES} bytes")
    data = data.removesuffix(b"\0")
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise Refused("no secret was typed")
    if b"\0" in data:
        raise Refused("the typed secret contains a NUL byte")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the typed secret is not UTF-8 text") from None


def looks_like_token(secret: str) -> bool:
    """Whether the secret is an access token (or what is left of one after pam_exec cut
    it), rather than a password. A token is never sent to the password endpoint."""
    return _TOKEN_SHAPE.fullmatch(secret) is not None


def check_token(state: NodeState, user: SnapshotUser, token: str,
                now: datetime | None = None) -> Claims:
    """Accept ``token`` as ``user``'s login to this node, or raise Refused.

    The one verifier of ``xos_tokens`` checks signature (keys from the node's JWKS),
    issuer, audience (this node) and times; then ``sub`` must be the snapshot's global id
    of the login name, so that a name given to someone else later never matches an old
    token. The VO service's tokens for a node carry no ``preferred_username`` (to fit
    through pam_exec); one that does must name this user too.
    """
    from xos_tokens import InvalidToken, verify_access_token  # only auth pays its import

    try:
        claims = verify_access_token(token, keys=state.keys, issuer=state.issuer,
                                     audience=state.node, now=now)
    except InvalidToken as error:
        hint = ""
        if len(token.encode()) >= PAM_EXEC_MAX_SECRET:
            hint = (f" (pam_exec passes at most {PAM_EXEC_MAX_SECRET} bytes: a longer token"
                    " arrives cut off)")
        raise Refused(f"token refused: {error}{hint}") from None
    if claims.preferred_username is not None and claims.preferred_username != user.name:
        raise Refused(f"token refused: it is for {str(claims.preferred_username)[:40]!r}, "
                      f"not {user.name}")
    if claims.subject != user.id:
        raise Refused(f"token refused: its subject is not {user.name}'s global id")
    return claims
