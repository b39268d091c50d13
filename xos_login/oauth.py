"""The OAuth 2.0 client side of xos-login: password grant, device flow (RFC 8628),
refresh with rotation, revocation (RFC 7009). No state here: callers store the tokens.

The service's refusals arrive as ``{"error", "error_description"}``; the description is
written for people ("wrong username or password", "your membership of VO cms is still
pending approval"), so it is what the user sees.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import BadAnswer, LoginEnded, LoginError, Refused, TryLater
from .http import Answer, Service

CLIENT_ID = "xos-login"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_PATH = "/oauth/token"  # noqa: S105 -- a path, not a secret
SLOW_DOWN_SECONDS = 5  # RFC 8628 3.5


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_at: dt.datetime
    refresh_token: str | None
    audience: str | None


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    expires_in: int


def unverified_claims(token: str) -> dict[str, Any]:
    """The token's payload WITHOUT checking its signature: for display and labels only
    (who is logged in, groups, expiry). Never decide access on it; the service and the
    nodes verify tokens against the JWKS."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _tokens(service: Service, answer: Answer) -> Tokens:
    body = service.expect_json(answer, "a token")
    access, expires_in = body.get("access_token"), body.get("expires_in")
    refresh, audience = body.get("refresh_token"), body.get("audience")
    if not isinstance(access, str) or not access or not isinstance(expires_in, int) \
            or isinstance(expires_in, bool) or expires_in <= 0 \
            or not isinstance(refresh, str | None) or not isinstance(audience, str | None):
        raise BadAnswer(f"the VO service at {service.url} sent a token answer without a"
                        " usable access_token and expires_in")
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
    return Tokens(access, expires_at, refresh or None, audience)


def _oauth_error(service: Service, answer: Answer) -> tuple[str, str]:
    body = answer.json() or {}
    error = body.get("error")
    if not isinstance(error, str):
        raise BadAnswer(f"unexpected answer from the VO service at {service.url}:"
                        f" {answer.error_text()}")
    return error, answer.error_text()


def _refusal(service: Service, answer: Answer) -> LoginError:
    """A token-endpoint refusal as the error the user should see."""
    error, text = _oauth_error(service, answer)
    if error == "slow_down":
        return TryLater(text)
    if error in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
        return Refused(f"the VO service at {service.url} does not accept xos-login"
                       f" this way ({error}: {text})")
    return Refused(text)


# -- the password grant -------------------------------------------------------------------
def password_login(service: Service, username: str, password: str) -> Tokens:
    answer = service.post_form(TOKEN_PATH, {
        "grant_type": "password", "client_id": CLIENT_ID,
        "username": username, "password": password})
    if answer.status != 200:
        raise _refusal(service, answer)
    return _tokens(service, answer)


# -- the device flow ------------------------------------------------------------------------
def start_device_login(service: Service) -> DeviceStart:
    answer = service.post_form("/oauth/device_authorization", {"client_id": CLIENT_ID})
    if answer.status != 200:
        raise _refusal(service, answer)
    body = service.expect_json(answer, "the device login")
    try:
        start = DeviceStart(
            device_code=str(body["device_code"]), user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=(str(body["verification_uri_complete"])
                                       if body.get("verification_uri_complete") else None),
            interval=max(1, int(body.get("interval") or 5)),
            expires_in=int(body["expires_in"]))
    except (KeyError, TypeError, ValueError):
        raise BadAnswer(f"the VO service at {service.url} sent an incomplete device"
                        " login answer") from None
    return start


def wait_for_approval(service: Service, start: DeviceStart,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> Tokens:
    """Poll the token endpoint until the user approves or denies on the device page,
    never faster than the server's interval (which ``slow_down`` raises by 5 s)."""
    interval = start.interval
    deadline = clock() + start.expires_in
    form = {"grant_type": DEVICE_GRANT, "client_id": CLIENT_ID,
            "device_code": start.device_code}
    while True:
        if clock() + interval > deadline:
            raise Refused("the code expired; run xos-login login again")
        sleep(interval)
        answer = service.post_form(TOKEN_PATH, form)
        if answer.status == 200:
            return _tokens(service, answer)
        error, text = _oauth_error(service, answer)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_SECONDS
            continue
        if error == "expired_token":
            raise Refused("the code expired; run xos-login login again")
        if error == "access_denied":
            raise Refused(text if text != error else "the login was denied")
        raise _refusal(service, answer)


# -- refresh and revocation ---------------------------------------------------------------
def refresh(service: Service, refresh_token: str, audience: str | None = None) -> Tokens:
    """Redeem ``refresh_token`` (it is used up: store the new one the answer carries).

    A refusal that concerns the refresh token itself (expired, revoked, replayed, or the
    user no longer an active member) is LoginEnded; a refused ``audience`` is Refused."""
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID,
            "refresh_token": refresh_token}
    if audience:
        form["audience"] = audience
    answer = service.post_form(TOKEN_PATH, form)
    if answer.status == 200:
        return _tokens(service, answer)
    error, text = _oauth_error(service, answer)
    if error in ("invalid_grant", "access_denied") and not (
            audience and "audience" in text):
        raise LoginEnded(f"your login has ended ({text}); run 'xos-login login'")
    raise _refusal(service, answer)


def revoke(service: Service, token: str, hint: str) -> str | None:
    """Revoke one token (RFC 7009); None on success, else the service's words."""
    answer = service.post_form("/oauth/revoke", {"token": token, "token_type_hint": hint,
                                                 "client_id": CLIENT_ID})
    return None if answer.status == 200 else answer.error_text()
