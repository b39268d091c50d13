"""Talking to the VO service: urllib with timeouts, TLS verified (optionally against a
private CA), no redirects followed, and every network failure turned into one sentence.

Why no redirects: a POST carrying a password or refresh token must go exactly where the
user said; a redirect is reported so that the user can fix ``--url`` instead.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from xos_net import opener, service_url

from .errors import BadAnswer, TLSFailure, Unreachable, UsageError

TIMEOUT = 20.0
MAX_ANSWER = 4 * 1024 * 1024
USER_AGENT = "xos-login/0.1"


def normalize_url(url: str) -> str:
    """The service's base URL without a trailing slash, or UsageError (``xos_net``'s
    rules: plain http only to this machine)."""
    try:
        return service_url(url, "passwords and tokens")
    except ValueError as error:
        raise UsageError(str(error)) from None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str | None = None

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is something else."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def error_text(self) -> str:
        """The service's own words: OAuth ``error_description`` or problem ``detail``."""
        body = self.json() or {}
        for key in ("error_description", "detail", "error", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return _printable(body[key])
        return f"HTTP {self.status}"


def _printable(text: str, limit: int = 300) -> str:
    """Server text goes to a terminal: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


class Service:
    """The VO service at ``url``; ``ca_file`` trusts a private CA for its TLS."""

    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = normalize_url(url)
        try:
            self._opener = opener(self.url, ca_file)
        except (OSError, ssl.SSLError) as error:
            raise UsageError(f"cannot use the CA file {ca_file}: "
                             f"{getattr(error, 'strerror', None) or error}") from None

    def post_form(self, path: str, fields: dict[str, str]) -> Answer:
        data = urllib.parse.urlencode(fields).encode()
        return self._send("POST", path, data, "application/x-www-form-urlencoded")

    def post_json(self, path: str, body: dict[str, Any], bearer: str) -> Answer:
        return self._send("POST", path, json.dumps(body).encode(), "application/json",
                          bearer)

    def get(self, path: str, bearer: str | None = None) -> Answer:
        return self._send("GET", path, None, None, bearer)

    def _send(self, method: str, path: str, data: bytes | None, content_type: str | None,
              bearer: str | None = None) -> Answer:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        # normalize_url allowed http(s) only: no file: or custom schemes reach here
        request = urllib.request.Request(self.url + path, data=data,  # noqa: S310
                                         method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                return Answer(response.status, response.read(MAX_ANSWER))
        except urllib.error.HTTPError as error:
            with error:
                answer = Answer(error.code, error.read(MAX_ANSWER),
                                error.headers.get("Location"))
        except urllib.error.URLError as error:
            raise self._network_failure(error.reason) from None
        except (OSError, http.client.HTTPException) as error:
            raise self._network_failure(error) from None
        if 300 <= answer.status < 400:
            raise BadAnswer(f"{self.url}{path} redirects to {answer.location or '?'};"
                            " give that address with --url")
        if answer.status >= 500:
            raise Unreachable(f"the VO service at {self.url} failed: {answer.error_text()}")
        return answer

    def _network_failure(self, reason: object) -> Exception:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return TLSFailure(f"TLS failure talking to {self.url}: {reason.verify_message};"
                              " if the service uses a private CA, pass --ca-file")
        if isinstance(reason, ssl.SSLError):
            return TLSFailure(f"TLS failure talking to {self.url}: "
                              f"{reason.reason or reason}")
        if isinstance(reason, TimeoutError):
            text = "no answer (timed out)"
        elif isinstance(reason, OSError):
            text = reason.strerror or str(reason) or type(reason).__name__
        else:
            text = str(reason) or type(reason).__name__
        return Unreachable(f"cannot reach the VO service at {self.url}: {_printable(text)}")

    def expect_json(self, answer: Answer, what: str) -> dict[str, Any]:
        body = answer.json()
        if body is None:
            raise BadAnswer(f"the VO service at {self.url} sent no JSON for {what}"
                            f" (HTTP {answer.status})")
        return body
