"""The node's HTTPS client of the VO service: sync answers and the public CA material.

urllib only (a compute node carries no HTTP stack of ours), with:

- TLS verified, against the VO's CA bundle file once the node is enrolled (``ca_file``)
  and against the system's trust store before; plain http only to a loopback address,
  because the node API key would otherwise cross the network readable by anyone;
- a per-read timeout *and* an overall deadline (both stretched by a long-poll's
  ``wait``), so a service that trickles bytes cannot hold the sync loop forever;
- a bound on every answer's size, checked while reading, so a broken or hostile service
  cannot make the agent allocate without limit (snapshots get a larger bound);
- no redirects: the Authorization header goes exactly where the operator said; the
  environment's proxies are used, except for a loopback service;
- JSON objects with a repeated key refused (two readers could take different values).

Every failure is one of ``Unreachable`` (try later), ``Refused`` (the key or node is
wrong: an operator must act) or ``BadAnswer``; the API key never appears in a message.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

import xos_tokens
from xos_net import opener, service_url

from .errors import BadAnswer, Refused, TLSFailure, Unreachable, UsageError
from .model import NODE_NAME_RE

USER_AGENT = "xos-node/0.1"
TIMEOUT = 20.0
DEADLINE = 120.0
MAX_WAIT = 60  # the service's bound on ``wait`` (vo_service.api.schemas.ChangesQuery)
MAX_ANSWER = 16 * 1024 * 1024
MAX_SNAPSHOT = 1024 * 1024 * 1024
MAX_PUBLIC = 4 * 1024 * 1024
#: extra seconds before a snapshot's first byte: the service builds a big node's whole
#: view (tens of thousands of users) before it answers
SNAPSHOT_PATIENCE = 100.0
CHUNK = 256 * 1024
#: the service's node API keys (vo_service.apikeys): ``xos_<16 hex>_<43 url-safe>``
API_KEY_RE = re.compile(r"xos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
KRL_MAGIC = b"SSHKRL\n\x00"


def normalize_url(url: str) -> str:
    """The service's base URL without a trailing slash, or ``UsageError`` (``xos_net``'s
    rules: plain http only to this machine)."""
    try:
        return service_url(url, "the node's API key")
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_api_key(key: str) -> str:
    """The key itself, if it has the form of a node API key; the message never shows it."""
    key = key.strip()
    if not API_KEY_RE.fullmatch(key):
        raise UsageError("the API key does not look like an XOS API key (xos_<id>_<secret>)")
    return key


def _printable(text: str, limit: int = 300) -> str:
    """Service text goes to logs and terminals: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a JSON object repeats a key")
    return result


def parse_json(body: bytes) -> Any:
    """Strict JSON: repeated keys, NaN and Infinity refused (ValueError)."""
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(body, object_pairs_hook=_refuse_duplicates, parse_constant=no_constants)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


class NodeClient:
    """The VO service at ``url``, spoken to as the node ``node`` with its API key.

    ``ca_file`` is the VO's CA bundle written at enrolment; without it the system's
    trust store decides. Answers above ``max_answer`` bytes (``max_snapshot`` for the
    snapshot) are refused."""

    def __init__(self, url: str, node: str, api_key: str, *, ca_file: str | None = None,
                 timeout: float = TIMEOUT, deadline: float = DEADLINE,
                 max_answer: int = MAX_ANSWER, max_snapshot: int = MAX_SNAPSHOT) -> None:
        self.url = normalize_url(url)
        if not NODE_NAME_RE.fullmatch(node):
            raise UsageError(f"{node[:64]!r} is not a node (host) name")
        self.node = node
        self._key = check_api_key(api_key)
        self.timeout, self.deadline = timeout, deadline
        self.max_answer, self.max_snapshot = max_answer, max_snapshot
        try:
            self._opener = opener(self.url, ca_file)
        except (OSError, ssl.SSLError) as error:
            raise UsageError(f"cannot use the CA file {ca_file}: "
                             f"{getattr(error, 'strerror', None) or error}") from None

    def __repr__(self) -> str:
        return f"<NodeClient {self.node} at {self.url}>"  # never the key

    # -- sync ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The node's whole account view (unvalidated JSON: see ``model.Snapshot``)."""
        return self._json(f"/api/v1/nodes/{self.node}/snapshot", self.max_snapshot,
                          patience=SNAPSHOT_PATIENCE)

    def changes(self, since: int, wait: int = 0) -> dict[str, Any]:
        """What changed since revision ``since`` (unvalidated JSON). With ``wait`` the
        service holds the answer up to that many seconds until something changes (a
        long-poll): a revocation then reaches the node within a second."""
        if type(since) is not int or since < 0:
            raise UsageError(f"since must be a revision number, not {since!r}")
        if type(wait) is not int or not 0 <= wait <= MAX_WAIT:
            raise UsageError(f"wait must be 0..{MAX_WAIT} seconds, not {wait!r}")
        query = f"since={since}" + (f"&wait={wait}" if wait else "")
        return self._json(f"/api/v1/nodes/{self.node}/changes?{query}", self.max_answer,
                          patience=wait)

    # -- public material -------------------------------------------------------------
    def ca_chain(self) -> bytes:
        """The issuing CA chain (PEM), checked to hold at least one certificate."""
        answer = self._get("/ca/chain.pem", MAX_PUBLIC, authenticated=False)
        try:
            if x509.load_pem_x509_certificates(answer.body):
                return answer.body
        except ValueError:
            pass
        raise BadAnswer(f"{self.url}/ca/chain.pem is not a PEM certificate chain")

    def ssh_ca_keys(self) -> list[str]:
        """The SSH CA public keys sshd should trust (TrustedUserCAKeys), each checked."""
        answer = self._get("/ca/ssh-ca.pub", MAX_PUBLIC, authenticated=False)
        try:
            lines = [line.strip() for line in answer.body.decode("ascii").splitlines()
                     if line.strip()]
            for line in lines:
                load_ssh_public_key(line.encode())
        except (UnicodeDecodeError, ValueError, TypeError, UnsupportedAlgorithm):
            lines = []
        if not lines:
            raise BadAnswer(f"{self.url}/ca/ssh-ca.pub holds no usable SSH public key")
        return lines

    def ssh_krl(self) -> bytes:
        """The OpenSSH key revocation list (sshd's RevokedKeys), checked by its magic."""
        answer = self._get("/ca/ssh-krl", MAX_ANSWER, authenticated=False)
        if not answer.body.startswith(KRL_MAGIC):
            raise BadAnswer(f"{self.url}/ca/ssh-krl is not an OpenSSH KRL")
        return answer.body

    def jwks(self) -> dict[str, Any]:
        """The token signing keys, checked by ``xos_tokens`` (usable P-256 keys only)."""
        document = self._json("/oauth/jwks", MAX_PUBLIC, authenticated=False)
        try:
            xos_tokens.KeySet(document)
        except xos_tokens.TokenError as error:
            raise BadAnswer(f"{self.url}/oauth/jwks is not a usable JWKS: {error}") from None
        return document

    # -- the node's own certificate ----------------------------------------------------
    def renew_certificate(self, csr_pem: str) -> dict[str, Any]:
        """A new certificate for the node's CSR (unvalidated JSON: ``certificate``,
        ``chain``); the node's API key authorizes it."""
        return self._json(f"/api/v1/nodes/{self.node}/certificate", self.max_answer,
                          payload={"csr": csr_pem})

    # -- the transport ---------------------------------------------------------------
    def _json(self, path: str, limit: int, authenticated: bool = True,
              patience: float = 0, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self._get(path, limit, authenticated, patience, payload)
        if answer.content_type != "application/json":
            raise BadAnswer(f"{self.url}{path} answered {answer.content_type or 'no type'},"
                            " not JSON")
        try:
            value = parse_json(answer.body)
        except (ValueError, RecursionError) as error:
            raise BadAnswer(f"{self.url}{path} sent unreadable JSON ({error})") from None
        if not isinstance(value, dict):
            raise BadAnswer(f"{self.url}{path} sent JSON that is not an object")
        return value

    def _get(self, path: str, limit: int, authenticated: bool = True,
             patience: float = 0, payload: dict[str, Any] | None = None) -> Answer:
        """GET ``path`` (POST ``payload`` as JSON when given); ``patience`` seconds more for a
        service that holds the answer."""
        headers = {"Accept": "application/json, */*;q=0.5", "User-Agent": USER_AGENT}
        if authenticated:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        # normalize_url allowed http(s) only: no file: or custom schemes reach here
        request = urllib.request.Request(self.url + path, data=data,  # noqa: S310
                                         method="GET" if data is None else "POST",
                                         headers=headers)
        started = time.monotonic() + patience  # the deadline starts after the wait
        try:
            with self._opener.open(request, timeout=self.timeout + patience) as response:
                body = self._read(response, path, limit, started)
                answer = Answer(response.status, body, _media_type(response))
        except urllib.error.HTTPError as error:
            with error:
                try:
                    body = self._read(error, path, MAX_ANSWER, started)
                except (OSError, http.client.HTTPException, BadAnswer, Unreachable):
                    body = b""  # the status says enough
                answer = Answer(error.code, body, _media_type(error))
            raise self._refusal(path, answer) from None
        except urllib.error.URLError as error:
            raise self._network_failure(error.reason) from None
        except (OSError, http.client.HTTPException) as error:
            raise self._network_failure(error) from None
        if answer.status != (200 if data is None else 201):
            raise BadAnswer(f"{self.url}{path} answered HTTP {answer.status}, expected"
                            f" {200 if data is None else 201}")
        return answer

    def _read(self, response: Any, path: str, limit: int, started: float) -> bytes:
        """The body in chunks: refused beyond ``limit`` bytes or past the deadline."""
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadAnswer(f"{self.url}{path} announces {declared} bytes, more than the"
                            f" limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() - started > self.deadline:
                raise Unreachable(f"{self.url}{path} took longer than {self.deadline:.0f} s")
            chunk = response.read(min(CHUNK, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BadAnswer(f"{self.url}{path} sent more than the limit of {limit} bytes")

    def _refusal(self, path: str, answer: Answer) -> Exception:
        detail = _problem_detail(answer)
        where = f"{self.url}{path.split('?')[0]}"
        if 300 <= answer.status < 400:
            return BadAnswer(f"{where} redirects (HTTP {answer.status}); give the final"
                             " address with --url")
        if answer.status >= 500 or answer.status == 429:
            return Unreachable(f"the VO service at {self.url} failed (HTTP {answer.status}):"
                               f" {detail}")
        if answer.status in (401, 403):
            return Refused(f"the VO service refused node {self.node} (HTTP {answer.status}):"
                           f" {detail}; check the node's API key")
        if answer.status == 404:
            return Refused(f"{where}: not found ({detail}); is node {self.node} registered?")
        return Refused(f"{where} refused the request (HTTP {answer.status}): {detail}")

    def _network_failure(self, reason: object) -> Exception:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return TLSFailure(f"TLS failure talking to {self.url}: {reason.verify_message};"
                              " is the node's CA bundle (--ca-file) the VO's?")
        if isinstance(reason, ssl.SSLError):
            return TLSFailure(f"TLS failure talking to {self.url}: {reason.reason or reason}")
        if isinstance(reason, TimeoutError):
            text = "no answer (timed out)"
        elif isinstance(reason, OSError):
            text = reason.strerror or str(reason) or type(reason).__name__
        else:
            text = str(reason) or type(reason).__name__
        return Unreachable(f"cannot reach the VO service at {self.url}: {_printable(text)}")


def _media_type(response: Any) -> str:
    return str(response.headers.get("Content-Type", "")).split(";")[0].strip().lower()


def _problem_detail(answer: Answer) -> str:
    """The service's own words (RFC 9457 ``detail``), or the status."""
    try:
        body = parse_json(answer.body)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        for key in ("detail", "title", "error_description", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return _printable(body[key])
    return f"HTTP {answer.status}"
