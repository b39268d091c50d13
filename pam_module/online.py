"""A VO password, checked online: the VO service's OAuth password grant, within a deadline.

Why a token request and not a "check password" call: the service has exactly one place
that judges passwords (throttling, LDAP links, account status, VO membership), its token
endpoint. The helper asks for a token *for this node* (``audience``) and verifies the
answer with the node's own keys and rules (:func:`pam_module.checks.check_token`), so a
forged "200 OK" from something that is not the service cannot log anyone in, and the
service itself confirms that the user's VOs may use this node. The refresh token that
comes with the answer is revoked at once (best effort): a PAM login keeps nothing.

Everything is bounded by one deadline (connect, send, each read), no redirect is
followed (the password goes exactly to the issuer), no proxy is used, and plain http is
refused except to this machine. DNS resolution cannot be bounded from Python; the
helper's watchdog (``pam_module.cli``) kills the process when it overruns.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import time
import urllib.parse
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xos_tokens import Claims

from xos_net import is_loopback

from .checks import check_token
from .errors import Refused, Unreachable
from .state import NodeState, SnapshotUser

TOKEN_PATH = "/oauth/token"  # noqa: S105 -- a URL path, not a secret
REVOKE_PATH = "/oauth/revoke"
LOGIN_CLIENT = "xos-login"  # the service's public client for command-line logins
MAX_ANSWER_BYTES = 256 * 1024
USER_AGENT = "xos-pam/0.1"


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; Unreachable once the time is up."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise Unreachable("the VO service did not answer in time")
        return remaining


def _endpoint(issuer: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(issuer.rstrip("/"))
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise Unreachable(f"the issuer {issuer[:80]!r} is not a usable URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unreachable(f"the issuer {issuer[:80]!r} is not a usable URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise Refused(f"will not send a VO password over plain http to {parts.hostname}")
    return parts


def _post(parts: urllib.parse.SplitResult, path: str, fields: dict[str, str],
          deadline: _Deadline, ca_file: str | None) -> tuple[int, bytes]:
    """POST a form; (status, body). Unreachable for every network or protocol failure."""
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            connection = http.client.HTTPSConnection(host, parts.port, timeout=deadline.left(),
                                                     context=context)
        else:
            connection = http.client.HTTPConnection(host, parts.port, timeout=deadline.left())
    except (OSError, ssl.SSLError) as error:
        raise Unreachable(f"cannot set up TLS for the VO service: {error}") from None
    try:
        connection.connect()
        sock = connection.sock  # getresponse() may hand it to the response and forget it
        assert sock is not None
        sock.settimeout(deadline.left())
        connection.request("POST", parts.path + path, urllib.parse.urlencode(fields),
                           {"Content-Type": "application/x-www-form-urlencoded",
                            "Accept": "application/json", "User-Agent": USER_AGENT})
        sock.settimeout(deadline.left())
        response = connection.getresponse()
        sock.settimeout(deadline.left())
        body = response.read(MAX_ANSWER_BYTES + 1)
        response.close()
        return response.status, body
    except (OSError, http.client.HTTPException) as error:  # timeouts and TLS are OSErrors
        reason = "timed out" if isinstance(error, TimeoutError) else \
            (getattr(error, "strerror", None) or type(error).__name__)
        raise Unreachable(f"the VO service at {host} cannot be reached: {reason}") from None
    finally:
        connection.close()


def _json(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_ANSWER_BYTES:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _printable(value: object, limit: int = 200) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit] + "..."


def check_password(state: NodeState, user: SnapshotUser, password: str, *,
                   timeout: float = 5.0, now: datetime | None = None) -> Claims:
    """Accept ``password`` as ``user``'s VO password, asking the VO service; or raise.

    Refused when the service says no (wrong password, suspended, throttled, node not in
    the user's VOs) or its answer does not verify; Unreachable when it cannot be asked
    within ``timeout`` seconds (no answer, refused connection, TLS failure, 5xx). The
    password travels only in the POST body, and no message ever contains it.
    """
    parts = _endpoint(state.issuer)
    deadline = _Deadline(timeout)
    ca_file = str(state.ca_file) if state.ca_file else None
    status, body = _post(parts, TOKEN_PATH, {
        "grant_type": "password", "client_id": LOGIN_CLIENT, "username": user.name,
        "password": password, "audience": state.node}, deadline, ca_file)
    answer = _json(body)
    if status != 200:
        said = answer.get("error_description") or answer.get("error") or f"HTTP {status}"
        if 400 <= status < 500:
            raise Refused(f"the VO service refused the password: {_printable(said)}")
        raise Unreachable(f"the VO service cannot check passwords now: {_printable(said)}")
    refresh = answer.get("refresh_token")
    try:
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise Unreachable("the VO service's answer holds no access token")
        try:
            return check_token(state, user, token, now=now)
        except Refused as error:
            raise Refused(f"the VO service's answer does not verify: {error}") from None
    finally:
        if isinstance(refresh, str):
            _revoke(parts, refresh, deadline, ca_file)


def _revoke(parts: urllib.parse.SplitResult, refresh: str, deadline: _Deadline,
            ca_file: str | None) -> None:
    """Revoke the refresh token the login brought (RFC 7009); failures change nothing:
    the token never left this process and expires on its own."""
    with contextlib.suppress(Unreachable):
        _post(parts, REVOKE_PATH, {"token": refresh, "token_type_hint": "refresh_token",
                                   "client_id": LOGIN_CLIENT}, deadline, ca_file)
