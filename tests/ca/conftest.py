"""Fixtures for the CA tests: a root and issuing CA, an unrelated second CA, keys and CSRs.

Keys are made once per session (they are immutable); every test builds what it
changes. No database: ``ca`` is pure. Tool runners call the real openssl and ssh-keygen.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

import ca

CRL_URL = "http://ca.xos.example/issuing.crl"
OCSP_URL = "http://ca.xos.example/ocsp"

MakeCSR = Callable[..., x509.CertificateSigningRequest]


@pytest.fixture
def now() -> datetime:
    """The current instant to the second (certificates hold whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def root() -> tuple[ca.PrivateKey, x509.Certificate]:
    return ca.create_root("XOS Test Root CA")


@pytest.fixture(scope="session")
def issuing(root: tuple[ca.PrivateKey, x509.Certificate]) -> ca.IssuingCA:
    root_key, root_cert = root
    key, cert = ca.create_issuing(root_key, root_cert, "XOS Test Issuing CA")
    return ca.IssuingCA(key, cert, (cert, root_cert), crl_url=CRL_URL, ocsp_url=OCSP_URL)


@pytest.fixture(scope="session")
def other_ca() -> ca.IssuingCA:
    """A second hierarchy that shares nothing with ``issuing``."""
    root_key, root_cert = ca.create_root("Unrelated Root CA")
    key, cert = ca.create_issuing(root_key, root_cert, "Unrelated Issuing CA")
    return ca.IssuingCA(key, cert, (cert, root_cert))


@pytest.fixture(scope="session")
def user_key() -> ec.EllipticCurvePrivateKey:
    return ca.new_private_key()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def make_csr(user_key: ec.EllipticCurvePrivateKey) -> MakeCSR:
    """Build a CSR: ``make_csr(key=..., subject=[(oid, value)], extensions=[(ext, crit)])``."""

    def make(
        key: CertificateIssuerPrivateKeyTypes | None = None,
        subject: Sequence[tuple[x509.ObjectIdentifier, str]] = ((NameOID.COMMON_NAME, "ignored"),),
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> x509.CertificateSigningRequest:
        signer = user_key if key is None else key
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(oid, value) for oid, value in subject]))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        return builder.sign(signer, algorithm)

    return make


@pytest.fixture(scope="session")
def csr_pem(make_csr: MakeCSR) -> bytes:
    return make_csr().public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def attributes() -> ca.VOAttributes:
    return ca.VOAttributes(
        global_user_id=uuid.UUID("6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10"),
        primary_vo="atlas",
        other_vos=("cms",),
        primary_group="/atlas/analysis",
        other_groups=("/atlas", "/cms/higgs"),
        roles=("/atlas/Role=production", "/cms/Role=admin"),
    )


@pytest.fixture(scope="session")
def ssh_ca() -> ca.SSHCertificateAuthority:
    return ca.SSHCertificateAuthority(ed25519.Ed25519PrivateKey.generate())


@pytest.fixture
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a real tool; ``check=False`` to look at a failure. TZ=UTC for stable dates."""

    def run_tool(*args: str | Path, check: bool = True,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - fixed tools, arguments from the test
            [str(arg) for arg in args], capture_output=True, text=True, input=stdin,
            env={"PATH": "/usr/bin:/bin", "TZ": "UTC"}, timeout=30, check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    return run_tool


@pytest.fixture
def write_pem(tmp_path: Path) -> Callable[[str, object], Path]:
    """Write a certificate, CRL or CSR as PEM under tmp_path and return its path."""

    def write(name: str, item: object) -> Path:
        path = tmp_path / name
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
        return path

    return write
