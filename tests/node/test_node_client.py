"""The node's HTTP client against small local servers that misbehave on purpose: sizes,
redirects, statuses, slow answers, TLS. The real service is in test_node_live."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from node_fixtures import NODE, closed_port, reply, snapshot_answer, tiny_server

from xos_node import BadAnswer, NodeClient, Refused, TLSFailure, Unreachable, UsageError
from xos_node.client import normalize_url

KEY = "xos_0123456789abcdef_" + "A" * 43


def client(base: str, **options: object) -> NodeClient:
    return NodeClient(base, NODE, KEY, **options)  # type: ignore[arg-type]


# -- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["https://vo.example", "https://vo.example:8443/",
                                 "http://127.0.0.1:5000", "http://localhost:1",
                                 "http://[::1]:8080"])
def test_usable_urls(url: str) -> None:
    assert normalize_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url, message", [
    ("http://vo.example", "refusing plain http"),
    ("http://10.0.0.1:80", "refusing plain http"),
    ("ftp://vo.example", "not a usable"),
    ("https://user@vo.example", "not a usable"),
    ("https://vo.example/?x=1", "not a usable"),
    ("https://vo.example:99999", "not a usable"),
    ("vo.example", "not a usable"),
])
def test_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        normalize_url(url)


def test_the_key_must_look_like_a_node_key_and_never_shows() -> None:
    with pytest.raises(UsageError, match="does not look like") as caught:
        NodeClient("https://vo.example", NODE, "xos_secret-but-malformed")
    assert "secret-but-malformed" not in str(caught.value)
    assert KEY not in repr(client("https://vo.example"))
    with pytest.raises(UsageError, match="not a node"):
        NodeClient("https://vo.example", "wn1/../admin", KEY)


# -- what goes out ---------------------------------------------------------------------------
def test_the_key_goes_to_the_sync_api_and_not_to_public_material() -> None:
    body = json.dumps(snapshot_answer()).encode()
    with tiny_server(reply(200, body)) as server:
        node = client(server.base)
        assert node.snapshot()["node"] == NODE
        node.changes(7)
        node.changes(7, wait=3)
        with pytest.raises(BadAnswer):
            node.jwks()  # a snapshot is no JWKS; what matters is the header
    paths = [r["path"] for r in server.requests]
    assert paths == [f"/api/v1/nodes/{NODE}/snapshot", f"/api/v1/nodes/{NODE}/changes?since=7",
                     f"/api/v1/nodes/{NODE}/changes?since=7&wait=3", "/oauth/jwks"]
    auth = [r["headers"].get("Authorization") for r in server.requests]
    assert auth == [f"Bearer {KEY}"] * 3 + [None]


def test_wait_is_bounded_and_stretches_the_timeout() -> None:
    def slow(request: BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)  # a long-poll holding its answer
        reply(200, b'{"ok": true}')(request)

    with tiny_server(slow) as server:
        node = client(server.base, timeout=0.4)
        assert node.changes(1, wait=2) == {"ok": True}
        with pytest.raises(Unreachable, match="timed out"):
            node.changes(1)
    with pytest.raises(UsageError, match="wait must be"):
        client("https://vo.example").changes(1, wait=61)


# -- what comes back -------------------------------------------------------------------------
@pytest.mark.parametrize("status, error, message", [
    (500, Unreachable, r"failed \(HTTP 500\): boom"),
    (503, Unreachable, "HTTP 503"),
    (429, Unreachable, "HTTP 429"),
    (401, Refused, r"refused node wn1.grid.example \(HTTP 401\): boom; check the node's API"),
    (403, Refused, "HTTP 403"),
    (404, Refused, "is node wn1.grid.example registered"),
    (400, Refused, r"HTTP 400\): boom"),
    (204, BadAnswer, "HTTP 204, expected 200"),
])
def test_statuses_become_the_right_error(status: int, error: type[Exception],
                                         message: str) -> None:
    problem = json.dumps({"title": "x", "detail": "boom"}).encode()
    with tiny_server(reply(status, problem, "application/problem+json")) as server, \
            pytest.raises(error, match=message):
        client(server.base).snapshot()


def test_a_redirect_is_reported_not_followed() -> None:
    with tiny_server(reply(302, b"", headers={"Location": "http://127.0.0.1:1/steal"})
                     ) as server:
        with pytest.raises(BadAnswer, match="redirects"):
            client(server.base).snapshot()
        assert len(server.requests) == 1


@pytest.mark.parametrize("body, content_type, message", [
    (b"<html>login</html>", "text/html", "not JSON"),
    (b'{"node": "a", "node": "b"}', "application/json", "repeats a key"),
    (b'{"revision": NaN}', "application/json", "NaN is not JSON"),
    (b'{"users": [', "application/json", "unreadable JSON"),
    (b"[1, 2]", "application/json", "not an object"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "unreadable JSON"),
])
def test_unreadable_answers_are_refused(body: bytes, content_type: str, message: str) -> None:
    with tiny_server(reply(200, body, content_type)) as server, \
            pytest.raises(BadAnswer, match=message):
        client(server.base).snapshot()


def test_an_oversized_answer_is_refused_by_its_announced_length() -> None:
    with tiny_server(reply(200, b'{"x": "' + b"a" * 5000 + b'"}')) as server:
        with pytest.raises(BadAnswer, match="announces 5009 bytes, more than the limit of"
                                            " 1000"):
            client(server.base, max_snapshot=1000).snapshot()
        with pytest.raises(BadAnswer, match="limit of 1000"):
            client(server.base, max_answer=1000).changes(1)
        assert client(server.base, max_answer=1000).snapshot()["x"]  # the snapshot's own bound


def test_an_oversized_answer_without_a_length_is_cut_off() -> None:
    def endless(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()  # HTTP/1.0 without Content-Length: the body ends at close
        try:
            for _ in range(200):
                request.wfile.write(b" " * 4096)
        except OSError:
            pass  # the client hung up, as it should

    with tiny_server(endless) as server, \
            pytest.raises(BadAnswer, match="sent more than the limit of 10000 bytes"):
        client(server.base, max_snapshot=10_000).snapshot()


def test_a_trickling_answer_meets_the_deadline() -> None:
    def trickle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        try:
            for _ in range(30):
                request.wfile.write(b" ")
                request.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    with tiny_server(trickle) as server, pytest.raises(Unreachable, match="took longer"):
        client(server.base, deadline=0.5, timeout=5).changes(3)


def test_a_closed_port_is_unreachable() -> None:
    with pytest.raises(Unreachable, match="cannot reach the VO service"):
        client(f"http://127.0.0.1:{closed_port()}").snapshot()


# -- public material -------------------------------------------------------------------------
@pytest.mark.parametrize("path, method", [
    ("/ca/chain.pem", "ca_chain"), ("/ca/ssh-ca.pub", "ssh_ca_keys"),
    ("/ca/ssh-krl", "ssh_krl"), ("/oauth/jwks", "jwks")])
def test_public_material_is_checked(path: str, method: str) -> None:
    garbage = b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'
    with tiny_server(reply(200, garbage)) as server, pytest.raises(BadAnswer, match=path):
        getattr(client(server.base), method)()


# -- TLS -----------------------------------------------------------------------------------
def _certificate(subject: str, key: ec.EllipticCurvePrivateKey,
                 issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
                 ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0] if issuer else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A VO CA, a server certificate for 127.0.0.1 from it, and an unrelated CA."""
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    ca_cert = _certificate("Test VO CA", ca_key, ca=True)
    other = _certificate("Another CA", other_key, ca=True)
    server = _certificate("127.0.0.1", server_key, (ca_cert.subject, ca_key))
    files = {"ca": tmp_path / "ca.pem", "other": tmp_path / "other.pem",
             "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["other"].write_bytes(other.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files


def test_tls_is_verified_against_the_vos_ca_bundle(tls_files: dict[str, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])

    def wrap(sock: object) -> object:
        return context.wrap_socket(sock, server_side=True)  # type: ignore[arg-type]

    body = json.dumps(snapshot_answer()).encode()
    with tiny_server(reply(200, body), wrap=wrap) as server:  # type: ignore[arg-type]
        assert server.base.startswith("https://")
        assert client(server.base, ca_file=str(tls_files["ca"])).snapshot()["node"] == NODE
        with pytest.raises(TLSFailure, match="certificate verify failed|unable to get"):
            client(server.base, ca_file=str(tls_files["other"])).snapshot()
        with pytest.raises(TLSFailure):
            client(server.base).snapshot()  # the system's trust store knows no test CA
    with pytest.raises(UsageError, match="cannot use the CA file"):
        client("https://vo.example", ca_file=str(tls_files["ca"].with_name("missing.pem")))
