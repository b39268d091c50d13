"""How every XOS client reaches the VO service: ``xos-login`` on a laptop, the node agent
and the node's PAM helpers. One set of rules, so that none of them is laxer than another:

- the service's address is an http(s) URL with a host and nothing else (no user info,
  query, fragment or white space), and plain http only to this machine's loopback: a
  password, token or API key never crosses a network unencrypted;
- redirects are never followed: a POST carrying a secret goes exactly where it was
  addressed, and a redirect is reported so the address can be corrected;
- loopback is reached directly, never through a proxy from the environment;
- TLS is verified, against a private CA when one is given.

Errors are ``ValueError`` with a readable sentence; each client wraps them in its own
error type. Standard library only.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse
import urllib.request
from typing import Any


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_url(url: str, carries: str) -> str:
    """The service's base URL without a trailing slash; ValueError saying what is wrong.
    ``carries`` names the secret that would be exposed over plain http ("the node's API
    key", "passwords and tokens")."""
    url = url.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"not a usable service URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or any(c.isspace() for c in url):
        raise ValueError(f"not a usable service URL: {url!r} (expected https://host[:port])")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"refusing plain http to {parts.hostname}: {carries} would travel"
                         " unencrypted; use https://")
    return url


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def opener(url: str, ca_file: str | None = None) -> urllib.request.OpenerDirector:
    """A urllib opener for ``url`` (checked by :func:`service_url`) following the rules
    above; OSError or ssl.SSLError when ``ca_file`` cannot be used."""
    handlers: list[Any] = [NoRedirect()]
    if is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    if url.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=ca_file)))
    return urllib.request.build_opener(*handlers)
