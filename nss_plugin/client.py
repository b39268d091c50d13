"""A Varlink client for one call: how the node's PAM helpers ask the agent.

Kept apart from the server (``varlink``) and the account view (``accounts``) so that a
PAM helper, which starts afresh at every login, imports nothing but the standard library
to ask its question.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

#: The agent's own interface for the node's PAM helpers (root only), served beside
#: io.systemd.UserDatabase by ``userdb.UserDatabase``.
NODE_INTERFACE = "io.xos.Node"
GET_LOGIN_STATE = f"{NODE_INTERFACE}.GetLoginState"
NODE_NO_SUCH_USER = f"{NODE_INTERFACE}.NoSuchUser"
NODE_PERMISSION_DENIED = f"{NODE_INTERFACE}.PermissionDenied"
MAX_REPLY = 64 * 1024


class VarlinkReplyError(Exception):
    """The server answered with a Varlink error: ``error`` is its qualified name."""

    def __init__(self, error: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.parameters = parameters or {}


def call_once(path: str | os.PathLike[str], method: str, parameters: dict[str, Any],
              timeout: float = 2.0, max_message: int = MAX_REPLY) -> dict[str, Any]:
    """One Varlink call on a fresh connection: the reply's parameters. An error reply
    raises ``VarlinkReplyError``; a server that is not there, stalls (``timeout`` seconds
    in all) or does not speak Varlink raises OSError."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps({"method": method, "parameters": parameters}).encode()
                     + b"\0")
        buffer = b""
        while b"\0" not in buffer:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{path} closed the connection without an answer")
            buffer += chunk
            if len(buffer) > max_message:
                raise ConnectionError(f"{path} answered more than {max_message} bytes")
    try:
        reply = json.loads(buffer.partition(b"\0")[0])
    except (ValueError, RecursionError):
        raise ConnectionError(f"{path} answered something that is not JSON") from None
    if not isinstance(reply, dict):
        raise ConnectionError(f"{path} answered something that is not a Varlink reply")
    if isinstance(reply.get("error"), str):
        raise VarlinkReplyError(reply["error"], reply.get("parameters")
                           if isinstance(reply.get("parameters"), dict) else None)
    answer = reply.get("parameters", {})
    if not isinstance(answer, dict):
        raise ConnectionError(f"{path} answered parameters that are not an object")
    return answer
